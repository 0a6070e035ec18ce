//! C4: pools sized for concurrency, with a checkout timeout.
//!
//! - `create_engine`/`create_async_engine` left on the default pool (5 connections + 10 overflow, 30 s checkout
//!   wait) — tuning, reported low;
//! - `pool_timeout=None`: a request waits forever for a connection when the pool is exhausted;
//! - `poolclass=NullPool` in code that serves requests: a new connection per checkout (fine behind PgBouncer);
//! - an HTTP/vector-store/LLM client constructed inside a route handler: a new connection pool per request, no
//!   keep-alive, no shared connection limit.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::is_route_handler;
use crate::analysis::semantic::python::scopes::{enclosing_function, in_main_guard};
use crate::analysis::semantic::python::syntax::{
    function_name, has_error, has_kwargs_splat, keyword_arg,
};

pub struct EnginePoolDefaults;
pub struct EnginePoolTimeoutNone;
pub struct EngineNullPool;
pub struct ClientPerRequest;

/// A qualified callee's library (its first segment) and its own name (its last): `("httpx", "AsyncClient")`.
fn library_and_name(qualified: &str) -> (&str, &str) {
    let lib = qualified.split('.').next().unwrap_or(qualified);
    let name = qualified.rsplit('.').next().unwrap_or(qualified);
    (lib, name)
}

fn callee_text(call: &PyNode<'_>) -> String {
    call.field("function")
        .map(|f| f.text().split_whitespace().collect())
        .unwrap_or_default()
}

/// SQLAlchemy / SQLModel engine constructors in this file.
fn engine_calls<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let imports = ctx.imports(root);
    ctx.of_kind(root, "call")
        .iter()
        .filter(|call| {
            // By qualified name: `create_engine` imported from SQLAlchemy or SQLModel, `sa.create_engine` after
            // `import sqlalchemy as sa`, `make_engine` after `from sqlalchemy import create_engine as make_engine`.
            let qualified = imports.resolve(&callee_text(call));
            let (lib, name) = library_and_name(&qualified);
            qualified.contains('.')
                && matches!(lib, "sqlalchemy" | "sqlmodel")
                && matches!(name, "create_engine" | "create_async_engine")
        })
        .filter(|call| !has_error(call) && !in_main_guard(call))
        .cloned()
        .collect()
}

/// Is the engine for SQLite (a file or memory database: no server-side connection limit to size for)?
fn is_sqlite(call: &PyNode<'_>) -> bool {
    let url = keyword_arg(call, "url").or_else(|| {
        call.field("arguments").and_then(|a| {
            a.children()
                .find(|c| c.is_named() && c.kind() != "keyword_argument")
        })
    });
    let url_sqlite = url.is_some_and(|u| u.text().to_ascii_lowercase().contains("sqlite"));
    url_sqlite
        || keyword_arg(call, "connect_args").is_some_and(|c| c.text().contains("check_same_thread"))
}

fn is_null_pool(value: &PyNode<'_>) -> bool {
    let t = value.text();
    t == "NullPool" || t.ends_with(".NullPool")
}

impl Check for EnginePoolDefaults {
    fn id(&self) -> &'static str {
        "c4-engine-pool-defaults"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["create_engine", "create_async_engine"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for call in engine_calls(ctx, root) {
            if has_kwargs_splat(&call)
                || is_sqlite(&call)
                || keyword_arg(&call, "poolclass").is_some()
            {
                continue;
            }
            let missing: Vec<&str> = ["pool_size", "max_overflow", "pool_timeout"]
                .into_iter()
                .filter(|k| keyword_arg(&call, k).is_none())
                .collect();
            if missing.is_empty() {
                continue;
            }
            let defaults: Vec<&str> = missing
                .iter()
                .map(|k| match *k {
                    "pool_size" => "pool_size=5",
                    "max_overflow" => "max_overflow=10",
                    _ => "pool_timeout=30 s",
                })
                .collect();
            let name = callee_text(&call);
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{name}(…)` leaves {} at SQLAlchemy's default ({}): size the pool for this replica's concurrent \
                     requests (threadpool and workers) and set a short checkout timeout so pool exhaustion fails fast \
                     instead of queueing requests",
                    missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
                    defaults.join(", ")
                )),
            });
        }
    }
}

impl Check for EnginePoolTimeoutNone {
    fn id(&self) -> &'static str {
        "c4-engine-pool-timeout-none"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["pool_timeout"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for call in engine_calls(ctx, root) {
            if let Some(v) = keyword_arg(&call, "pool_timeout")
                && v.text() == "None"
            {
                let kw = v.parent().unwrap_or(v.clone());
                out.push(CheckMatch {
                    fix: None,
                    range: kw.range(),
                    message: Some(format!(
                        "`pool_timeout=None` on `{}(…)`: when the pool is exhausted a request waits for a connection \
                         forever instead of failing fast; set a few seconds and surface the timeout",
                        callee_text(&call)
                    )),
                });
            }
        }
    }
}

impl Check for EngineNullPool {
    fn id(&self) -> &'static str {
        "c4-engine-nullpool"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["NullPool"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for call in engine_calls(ctx, root) {
            // A branch chosen by configuration (`if settings.DISABLE_POOL: NullPool`) is a deliberate option.
            let conditional = call.ancestors().any(|a| {
                matches!(
                    a.kind().as_ref(),
                    "if_statement" | "conditional_expression" | "else_clause" | "elif_clause"
                )
            });
            if is_sqlite(&call) || conditional {
                continue;
            }
            if let Some(v) = keyword_arg(&call, "poolclass")
                && is_null_pool(&v)
            {
                let kw = v.parent().unwrap_or(v.clone());
                out.push(CheckMatch {
                    fix: None,
                    range: kw.range(),
                    message: Some(format!(
                        "`poolclass=NullPool` on `{}(…)` opens and closes a database connection for every checkout, \
                         with no cap on concurrent connections (low confidence: intended when an external pooler such \
                         as PgBouncer or RDS Proxy sits in front of the database)",
                        callee_text(&call)
                    )),
                });
            }
        }
    }
}

/// A FastAPI-style dependency (`def get_http_client(): async with httpx.AsyncClient() as c: yield c`): an
/// undecorated `get_*` generator that yields the client it opened.
fn yields_per_request_client(call: &PyNode<'_>, func: &PyNode<'_>) -> bool {
    let named_get = function_name(func).is_some_and(|n| n.starts_with("get_"));
    let decorated = func
        .parent()
        .is_some_and(|p| p.kind() == "decorated_definition");
    if !named_get || decorated {
        return false;
    }
    // `async with <call> as alias` → alias
    let alias = call
        .parent()
        .filter(|p| p.kind() == "as_pattern")
        .and_then(|p| p.children().find(|c| c.kind() == "as_pattern_target"))
        .map(|t| t.text().to_string())
        .or_else(|| {
            // `client = <call>`
            call.parent()
                .filter(|p| p.kind() == "assignment")
                .and_then(|p| p.field("left"))
                .map(|l| l.text().to_string())
        });
    let Some(alias) = alias else {
        return false;
    };
    func.dfs().any(|n| {
        n.kind() == "yield"
            && n.children()
                .any(|c| c.is_named() && c.text() == alias.as_str())
    })
}

/// A client with its own connection pool, by the callee's qualified name (`httpx.AsyncClient`, also written
/// `AsyncClient` after `from httpx import AsyncClient` or `h.AsyncClient` after `import httpx as h`).
fn client_kind(qualified: &str) -> Option<&'static str> {
    if !qualified.contains('.') {
        return None;
    }
    match library_and_name(qualified) {
        ("httpx", "AsyncClient" | "Client") => Some("an httpx client"),
        ("aiohttp", "ClientSession") => Some("an aiohttp session"),
        ("qdrant_client", "QdrantClient" | "AsyncQdrantClient") => Some("a Qdrant client"),
        ("openai", "AsyncOpenAI" | "OpenAI" | "AsyncAzureOpenAI" | "AzureOpenAI") => {
            Some("an OpenAI client")
        }
        _ => None,
    }
}

impl Check for ClientPerRequest {
    fn id(&self) -> &'static str {
        "c4-client-per-request"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["Client", "ClientSession", "OpenAI"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        for call in ctx.of_kind(root, "call").iter() {
            let callee = callee_text(call);
            let Some(kind) = client_kind(&imports.resolve(&callee)) else {
                continue;
            };
            if has_error(call) {
                continue;
            }
            let Some(func) = enclosing_function(call) else {
                continue;
            };
            if func.kind() != "function_definition" {
                continue;
            }
            let dependency = yields_per_request_client(call, &func);
            if !is_route_handler(&func) && !dependency {
                continue;
            }
            // A client built only on a cache miss (`global _key_cache`) is not built per request.
            let body = func.text();
            if body.contains("global ") || body.to_ascii_lowercase().contains("cache") {
                continue;
            }
            if dependency {
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "`{callee}(…)` in the dependency `{}` creates {kind} with its own connection pool for every \
                         request that depends on it: no connection reuse and no shared connection limit; create one \
                         client at startup (lifespan) and have the dependency return it",
                        function_name(&func).unwrap_or_default()
                    )),
                });
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{callee}(…)` creates {kind} with its own connection pool on every request of this endpoint: no \
                     connection reuse (a new TCP/TLS handshake per request) and no shared connection limit across \
                     concurrent requests; create one client at startup (lifespan) with explicit limits and timeouts \
                     and reuse it"
                )),
            });
        }
    }
}
