//! F6: graceful lifecycle.
//!
//! `lifespan-resource-not-closed`: a FastAPI lifespan (an `@asynccontextmanager` named like a lifespan, or passed
//! as `lifespan=`) opens a client or pool before `yield` (`httpx.AsyncClient`, `create_async_engine`,
//! `AsyncQdrantClient`, a redis client, an asyncpg pool, ...) and nothing after `yield` closes it. Resources
//! opened with `async with` / an exit stack are closed; a resource whose name is mentioned after `yield`, or any
//! helper call after `yield` that looks like a shutdown (`close_clients()`, `await shutdown(app)`), is taken as
//! closed.
//!
//! `sigterm-exits-immediately`: a SIGTERM handler that only (logs and) calls `sys.exit` / `os._exit`: in-flight
//! requests are cut, checkpoints are not flushed and pools are not closed.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::roles::is_lifespan;
use crate::analysis::semantic::python::scopes::same_scope_descendants;
use crate::analysis::semantic::python::syntax::{callee, callee_tail, function_name};

pub struct LifespanResourceNotClosed;
pub struct SigtermExitsImmediately;

/// Constructors of clients and pools that hold connections, by the last segment of the callee, with the module
/// prefixes that make a generic name (`Client`, `Redis`, `from_url`) specific enough. Import aliases are undone
/// (`from redis.asyncio import Redis as Cache` makes `Cache(…)` read `Redis(…)`).
fn opens_resource(call: &PyNode<'_>, imports: &Imports) -> bool {
    let Some(c) = imports.callee(call) else {
        return false;
    };
    let tail = c.rsplit('.').next().unwrap_or(&c);
    match tail {
        "AsyncClient"
        | "create_async_engine"
        | "AsyncQdrantClient"
        | "AsyncIOMotorClient"
        | "AsyncMongoClient"
        | "AsyncElasticsearch"
        | "AsyncConnectionPool"
        | "AsyncRedis"
        | "ClientSession"
        | "create_pool"
        | "AsyncOpenSearch"
        | "AsyncWeaviateClient" => true,
        "QdrantClient" | "create_engine" | "ConnectionPool" => true,
        "Client" => c == "httpx.Client",
        "Redis" | "StrictRedis" => c.contains("redis") || c == "Redis",
        "from_url" => c.contains("redis") || c.contains("Redis"),
        _ => false,
    }
}

/// Is the call's value handed to something that closes it (`async with`, `enter_async_context`)?
fn managed(call: &PyNode<'_>) -> bool {
    call.ancestors()
        .take_while(|a| !matches!(a.kind().as_ref(), "function_definition" | "block"))
        .any(|a| {
            a.kind() == "with_item"
                || (a.kind() == "call"
                    && callee_tail(&a).is_some_and(|t| {
                        matches!(
                            t.as_str(),
                            "enter_async_context"
                                | "enter_context"
                                | "push_async_callback"
                                | "callback"
                        )
                    }))
        })
}

fn bound_name(call: &PyNode<'_>) -> Option<String> {
    let mut cur = call.clone();
    while let Some(p) = cur.parent() {
        match p.kind().as_ref() {
            "await" | "parenthesized_expression" => cur = p,
            "assignment" => {
                return p
                    .field("left")
                    .map(|l| l.text().split_whitespace().collect());
            }
            _ => return None,
        }
    }
    None
}

fn closes(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "close",
        "dispose",
        "shutdown",
        "stop",
        "disconnect",
        "terminate",
        "cleanup",
        "teardown",
        "release",
        "__aexit__",
        "exit",
    ]
    .iter()
    .any(|w| n.contains(w))
}

impl Check for LifespanResourceNotClosed {
    fn id(&self) -> &'static str {
        "lifespan-resource-not-closed"
    }

    fn tokens(&self) -> &'static [&'static str] {
        // A lifespan is an `@asynccontextmanager`, named or not like one (`async def resources(app)`).
        &["lifespan", "asynccontextmanager"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let root_text: String = root.text().split_whitespace().collect();
        let imports = ctx.imports(root);
        for func in ctx.of_kind(root, "function_definition").iter() {
            if !is_lifespan(func, &root_text) {
                continue;
            }
            let Some(body) = func.field("body") else {
                continue;
            };
            let nodes = same_scope_descendants(&body);
            let Some(y) = nodes.iter().find(|n| n.kind() == "yield") else {
                continue;
            };
            let yield_end = y.range().end;
            let yield_start = y.range().start;
            // What runs after the yield: later code, and `finally:` blocks of a try around it.
            let after: Vec<&PyNode<'_>> = nodes
                .iter()
                .filter(|n| {
                    n.range().start >= yield_end
                        || (n.kind() == "finally_clause" && n.range().start > yield_start)
                })
                .collect();
            let after_text: String = after
                .iter()
                .filter(|n| n.kind() == "expression_statement" || n.kind() == "finally_clause")
                .map(|n| n.text().split_whitespace().collect::<String>())
                .collect::<Vec<_>>()
                .join("\n");
            // Calls after yield that look like a shutdown and are not on a known resource.
            let resources: Vec<(&PyNode<'_>, String)> = nodes
                .iter()
                .filter(|n| n.kind() == "call" && n.range().end <= yield_start)
                .filter(|c| opens_resource(c, &imports) && !managed(c))
                .filter_map(|c| bound_name(c).map(|b| (c, b)))
                .collect();
            if resources.is_empty() {
                continue;
            }
            let generic_shutdown = after.iter().any(|n| {
                n.kind() == "call"
                    && callee_tail(n).is_some_and(|t| closes(&t))
                    && n.field("function").is_some_and(|f| {
                        f.kind() == "identifier"
                            || f.field("object").is_some_and(|o| {
                                let o: String = o.text().split_whitespace().collect();
                                !resources.iter().any(|(_, r)| *r == o)
                            })
                    })
            });
            if generic_shutdown {
                continue;
            }
            for (call, name) in &resources {
                if after_text.contains(name.as_str()) {
                    continue;
                }
                // `app.state.http = client = AsyncClient()` or an alias: the last segment mentioned after yield.
                let last = name.rsplit('.').next().unwrap_or(name);
                if after_text.contains(&format!(".{last}")) {
                    continue;
                }
                let what = callee(call).unwrap_or_default();
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "`{what}(…)` is opened in the lifespan before `yield` (as `{name}`) but nothing after `yield` \
                         closes it: on shutdown its connections are dropped instead of drained; close it after `yield` \
                         (in a `finally:`) or open it with `async with`"
                    )),
                });
            }
        }
    }
}

fn is_sigterm(arg: &PyNode<'_>) -> bool {
    let t = arg.text();
    t == "SIGTERM" || t.ends_with(".SIGTERM")
}

/// Does this call end the process?
fn is_exit(node: &PyNode<'_>) -> bool {
    match node.kind().as_ref() {
        "call" => callee(node).is_some_and(|c| {
            matches!(
                c.as_str(),
                "sys.exit" | "os._exit" | "exit" | "quit" | "_exit"
            )
        }),
        "raise_statement" => node.text().contains("SystemExit"),
        _ => false,
    }
}

fn is_logging_stmt(stmt: &PyNode<'_>) -> bool {
    if stmt.kind() != "expression_statement" {
        return false;
    }
    let Some(e) = stmt.children().find(|c| c.is_named()) else {
        return false;
    };
    if e.kind() == "string" {
        return true;
    }
    e.kind() == "call"
        && callee(&e).is_some_and(|c| {
            let head = c.split('.').next().unwrap_or("").to_ascii_lowercase();
            c == "print"
                || head.contains("log")
                || c.starts_with("self.log")
                || c.starts_with("self._log")
        })
}

/// True if the function body does nothing but log and exit.
fn exits_at_once(body: &PyNode<'_>) -> bool {
    let stmts: Vec<PyNode<'_>> = body
        .children()
        .filter(|c| c.is_named() && c.kind() != "comment")
        .collect();
    let mut saw_exit = false;
    for s in &stmts {
        let exit_stmt =
            (s.kind() == "expression_statement" && s.children().any(|c| is_exit(&c))) || is_exit(s);
        if exit_stmt {
            saw_exit = true;
            continue;
        }
        if is_logging_stmt(s) {
            continue;
        }
        return false;
    }
    saw_exit
}

/// Find the handler function for `handler` (a name, `self.method` or a lambda).
fn handler_exits<'r>(root: &PyNode<'r>, call: &PyNode<'r>, handler: &PyNode<'r>) -> Option<String> {
    match handler.kind().as_ref() {
        "lambda" => {
            let body = handler.field("body")?;
            (std::iter::once(body.clone())
                .chain(body.dfs())
                .any(|n| is_exit(&n)))
            .then(|| "the lambda".to_string())
        }
        "identifier" | "attribute" => {
            let text = handler.text().to_string();
            let name = text.rsplit('.').next().unwrap_or(&text).to_string();
            // A method: look in the enclosing class first.
            let scope = if text.starts_with("self.") {
                call.ancestors().find(|a| a.kind() == "class_definition")?
            } else {
                root.clone()
            };
            let func = scope.dfs().find(|n| {
                n.kind() == "function_definition"
                    && function_name(n).as_deref() == Some(name.as_str())
            })?;
            let body = func.field("body")?;
            exits_at_once(&body).then(|| format!("`{name}()`"))
        }
        _ => None,
    }
}

impl Check for SigtermExitsImmediately {
    fn id(&self) -> &'static str {
        "sigterm-exits-immediately"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["SIGTERM"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for call in ctx.of_kind(root, "call").iter() {
            let Some(tail) = callee_tail(call) else {
                continue;
            };
            if tail != "signal" && tail != "add_signal_handler" {
                continue;
            }
            let Some(args) = call.field("arguments") else {
                continue;
            };
            let pos: Vec<PyNode<'_>> = args
                .children()
                .filter(|c| c.is_named() && c.kind() != "keyword_argument" && c.kind() != "comment")
                .collect();
            if pos.len() < 2 || !is_sigterm(&pos[0]) {
                continue;
            }
            if let Some(h) = handler_exits(root, call, &pos[1]) {
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "The SIGTERM handler {h} exits the process at once: in-flight requests are cut off, checkpoints \
                         are not flushed and pools are not closed; let the server drain (uvicorn handles SIGTERM) or \
                         set a flag that stops new work and exit after cleanup"
                    )),
                });
            }
        }
    }
}
