//! C7: public / MCP write endpoints that create resources with no idempotency key and no natural key.
//!
//! A client of a public API or an MCP tool caller retries when a response is lost (timeout, dropped
//! connection, a 502 from the proxy). If the handler inserts a new row, uploads a document or calls a
//! provider's `create` on every call, each retry makes a duplicate. The check flags POST/PUT handlers of routers
//! that are public or MCP (by prefix, route path or folder) and MCP tools, whose body creates something
//! (`db.add(Model(…))`, `insert(…)`, `x.create(…)`, `create_*(…)`) with no idempotency key in the handler or
//! file and no natural key (an upsert, `merge`, a get-or-create lookup, a 409 on an existing row).

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::roles::route_of;
use crate::analysis::semantic::python::syntax::{has_error, keyword_arg};
use crate::analysis::semantic::python::text::words;

/// Is this function an MCP tool (`@mcp.tool`, `@mcp.tool()`, `@server.tool(...)` on an MCP server)?
fn is_mcp_tool(def: &PyNode<'_>, imports: &Imports, file_mentions_mcp: bool) -> bool {
    let Some(parent) = def.parent().filter(|p| p.kind() == "decorated_definition") else {
        return false;
    };
    parent
        .children()
        .filter(|d| d.kind() == "decorator")
        .any(|d| {
            let Some(expr) = d.children().find(|c| c.is_named()) else {
                return false;
            };
            let f = if expr.kind() == "call" {
                imports.callee(&expr).unwrap_or_default()
            } else {
                expr.text().to_string()
            };
            let Some((obj, method)) = f.rsplit_once('.') else {
                return false;
            };
            method == "tool"
                && (words(obj).iter().any(|w| w == "mcp")
                    || (file_mentions_mcp && obj.contains("server")))
        })
}

/// Does a path or prefix name a public or MCP surface (`/public/v1/…`, `/mcp`, `/api/v1/public`)?
fn public_path(path: &str) -> bool {
    path.split('/').any(|seg| {
        seg == "public" || seg == "mcp" || seg.starts_with("public-") || seg.starts_with("mcp-")
    })
}

/// The routers of this file with their `APIRouter(prefix=…)` text (empty when none).
fn router_prefixes<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<(String, String)> {
    let imports = ctx.imports(root);
    ctx.of_kind(root, "assignment")
        .iter()
        .cloned()
        .filter_map(|a| {
            let r = a.field("right")?;
            if r.kind() != "call" || !imports.callee(&r).is_some_and(|f| f.ends_with("APIRouter")) {
                return None;
            }
            let prefix = keyword_arg(&r, "prefix")
                .map(|p| p.text().replace(['"', '\''], ""))
                .unwrap_or_default();
            Some((a.field("left")?.text().to_string(), prefix))
        })
        .collect()
}

/// Admin and internal surfaces are called by the operator's UI, not by retrying API clients.
fn admin_surface(text: &str) -> bool {
    words(text)
        .iter()
        .any(|w| matches!(w.as_str(), "admin" | "internal" | "backoffice"))
}

/// Is the file itself on the public / MCP surface by its folders or name (`routers/public/chat.py`,
/// `mcp/tools.py`, `public_api.py`)?
fn public_file(path: &str) -> bool {
    path.split('/').any(|part| {
        let stem = part.trim_end_matches(".py");
        words(stem).iter().any(|w| w == "public" || w == "mcp")
    })
}

/// Calls named `create…` that do not create a resource of this service: LLM calls (`client.chat.completions
/// .create`), tasks, engines, tokens, agents, the app factory…
fn non_resource_create(f: &str) -> bool {
    let (receiver, name) = f.rsplit_once('.').unwrap_or(("", f));
    const LLM_NAMESPACES: &[&str] = &[
        "completions",
        "completion",
        "messages",
        "embeddings",
        "responses",
        "chat",
        "images",
        "audio",
        "moderations",
        "beta",
        "asyncio",
        "loop",
        "openai",
        "anthropic",
        "litellm",
        "llm",
        "transcriptions",
        "speech",
    ];
    const NOT_RESOURCES: &[&str] = &[
        "task",
        "engine",
        "token",
        "agent",
        "chain",
        "graph",
        "client",
        "pool",
        "connection",
        "subprocess",
        "tool",
        "tools",
        "llm",
        "prompt",
        "schema",
        "app",
        "router",
        "parser",
        "retriever",
        "signature",
        "jwt",
        "hash",
        "url",
        "presigned",
        "response",
        "exception",
        "error",
        "loop",
        "payload",
        "request",
        "context",
        "stream",
        "session",
        "access",
        "refresh",
        "embedding",
        "embeddings",
        "model",
        "span",
        "trace",
        "logger",
        "table",
        "tables",
        "all",
        "view",
        "dir",
        "directory",
        "folder",
        "temp",
        "tmp",
        "memory",
        "state",
        "config",
        "settings",
        "headers",
        "message_chunk",
        "worker",
        "thread",
        "queue",
        "lock",
        "timer",
    ];
    let recv_words: Vec<String> = receiver.split('.').flat_map(words).collect();
    if recv_words
        .iter()
        .any(|w| LLM_NAMESPACES.contains(&w.as_str()))
    {
        return true;
    }
    words(name)
        .iter()
        .skip(1)
        .any(|w| NOT_RESOURCES.contains(&w.as_str()))
}

/// Is the expression a freshly constructed object (`Doc(...)`, `models.Doc(...)`, `Doc.model_validate(x)`)?
fn is_new_object(expr: &PyNode<'_>, imports: &Imports) -> bool {
    if expr.kind() != "call" {
        return false;
    }
    let Some(f) = imports.callee(expr) else {
        return false;
    };
    let parts: Vec<&str> = f.split('.').collect();
    let last = parts.last().copied().unwrap_or("");
    let starts_upper = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_uppercase());
    starts_upper(last)
        || (parts.len() >= 2
            && starts_upper(parts[parts.len() - 2])
            && matches!(
                last,
                "model_validate" | "from_orm" | "parse_obj" | "from_dict" | "from_schema"
            ))
}

/// What the handler creates, if anything: the first creating call of its body.
fn creating_call<'r>(body: &PyNode<'r>, imports: &Imports) -> Option<(PyNode<'r>, String)> {
    // Names bound to new objects in the body (`doc = Document(...)`).
    let new_names: Vec<String> = body
        .dfs()
        .filter(|n| n.kind() == "assignment")
        .filter(|a| a.field("right").is_some_and(|r| is_new_object(&r, imports)))
        .filter_map(|a| {
            a.field("left")
                .filter(|l| l.kind() == "identifier")
                .map(|l| l.text().to_string())
        })
        .collect();
    let mut stack: Vec<PyNode<'r>> = body.children().collect();
    stack.reverse();
    while let Some(node) = stack.pop() {
        if matches!(
            node.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition"
        ) {
            continue;
        }
        if node.kind() == "call"
            && let Some(f) = imports.callee(&node)
        {
            let (receiver, name) = f.rsplit_once('.').unwrap_or(("", f.as_str()));
            let recv_last = receiver.rsplit('.').next().unwrap_or(receiver);
            let session_like = words(recv_last)
                .iter()
                .any(|w| matches!(w.as_str(), "db" | "session" | "sess" | "uow"));
            let first_arg = node
                .field("arguments")
                .and_then(|a| a.children().find(|c| c.is_named()));
            let hit = match name {
                "add" if session_like => first_arg.is_some_and(|a| {
                    is_new_object(&a, imports)
                        || (a.kind() == "identifier" && new_names.iter().any(|n| *n == a.text()))
                }),
                "add_all" if session_like => true,
                "insert" => {
                    receiver.is_empty()
                        || matches!(receiver, "sa" | "sqlalchemy" | "postgresql" | "sqlite")
                        || recv_last == "__table__"
                        || recv_last
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_uppercase())
                }
                "pg_insert" | "sqlite_insert" | "mysql_insert" | "insert_one" | "insert_many" => {
                    true
                }
                // Raw SQL: `await db.execute("INSERT INTO …")`.
                "execute" | "exec_driver_sql" | "fetch" | "fetchrow" | "fetchval" | "query" => {
                    first_arg.is_some_and(|a| {
                        let t = a
                            .text()
                            .trim_start_matches(['f', 'r', 'b', '"', '\'', ' ', '\n'])
                            .to_ascii_uppercase();
                        let t = t
                            .trim_start_matches("TEXT(")
                            .trim_start_matches(['"', '\'', ' ', '\n']);
                        t.starts_with("INSERT INTO") && !t.contains("ON CONFLICT")
                    })
                }
                _ => {
                    (name == "create"
                        || name.starts_with("create_")
                        || name.starts_with("acreate_"))
                        && !non_resource_create(&f)
                }
            };
            if hit {
                return Some((node.clone(), f));
            }
        }
        let mut kids: Vec<PyNode<'r>> = node.children().collect();
        kids.reverse();
        stack.extend(kids);
    }
    None
}

/// Markers of natural idempotency in the handler: upserts, merges, get-or-create, a 409 on conflicts.
fn naturally_idempotent(func_text: &str) -> bool {
    let lower = func_text.to_ascii_lowercase();
    [
        "on_conflict_do_nothing",
        "on_conflict_do_update",
        "on conflict",
        ".merge(",
        "get_or_create",
        "upsert",
        "409",
        "http_409",
        "conflict",
        "already exist",
        "integrityerror",
        "unique",
    ]
    .iter()
    .any(|m| lower.contains(m))
}

/// Is there, before `at`, a get-or-create / natural-key check: `if existing: return existing` or
/// `if existing: raise HTTPException(409)`, where `existing` was looked up earlier in the handler?
fn lookup_check_before(body: &PyNode<'_>, at: usize) -> bool {
    let assigned: Vec<String> = body
        .dfs()
        .filter(|n| n.kind() == "assignment" && n.range().end <= at)
        .filter(|a| {
            a.field("right")
                .is_some_and(|r| matches!(r.kind().as_ref(), "await" | "call"))
        })
        .filter_map(|a| {
            a.field("left")
                .filter(|l| l.kind() == "identifier")
                .map(|l| l.text().to_string())
        })
        .collect();
    body.dfs()
        .filter(|n| n.kind() == "if_statement" && n.range().end <= at)
        .any(|n| {
            let cond = n
                .field("condition")
                .map(|c| c.text().split_whitespace().collect::<Vec<_>>().join(" "))
                .unwrap_or_default();
            let subject = cond.strip_suffix(" is not None").unwrap_or(&cond);
            let looked_up = assigned.iter().any(|a| a == subject);
            looked_up
                && n.field("consequence").is_some_and(|c| {
                    c.children().any(|s| {
                        matches!(s.kind().as_ref(), "return_statement" | "raise_statement")
                    })
                })
        })
}

pub struct PublicWriteNoIdempotency;

impl Check for PublicWriteNoIdempotency {
    fn id(&self) -> &'static str {
        "c7-public-write-no-idempotency"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[".post(", ".put(", ".tool"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let text = root.text();
        let lower = text.to_ascii_lowercase();
        // An idempotency key handled anywhere in the file (a dependency, a header, a field).
        if lower.contains("idempotency") || lower.contains("idempotent") {
            return;
        }
        let file_public = public_file(ctx.path);
        let mentions_mcp = lower.contains("mcp");
        let routers = router_prefixes(ctx, root);
        let imports = ctx.imports(root);
        for def in ctx.of_kind(root, "function_definition").iter() {
            let surface = if let Some(route) = route_of(def) {
                if route.method != "post" && route.method != "put" {
                    continue;
                }
                let prefix = routers
                    .iter()
                    .find(|(name, _)| *name == route.router)
                    .map(|(_, p)| p.as_str())
                    .unwrap_or("");
                let public = file_public || public_path(&route.path) || public_path(prefix);
                if !public
                    || admin_surface(&route.router)
                    || admin_surface(prefix)
                    || admin_surface(&route.path)
                {
                    continue;
                }
                format!(
                    "{} {}",
                    route.method.to_ascii_uppercase(),
                    if route.path.is_empty() {
                        "…"
                    } else {
                        &route.path
                    }
                )
            } else if is_mcp_tool(def, &imports, mentions_mcp) {
                "MCP tool".to_string()
            } else {
                continue;
            };
            let Some(body) = def.field("body") else {
                continue;
            };
            let func_text = def
                .parent()
                .map(|p| p.text().to_string())
                .unwrap_or_default();
            if naturally_idempotent(&func_text) {
                continue;
            }
            let Some((call, what)) = creating_call(&body, &imports) else {
                continue;
            };
            if lookup_check_before(&body, call.range().start) {
                continue;
            }
            let name = def
                .field("name")
                .map(|n| n.text().to_string())
                .unwrap_or_default();
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(def) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{what}(…)` in `{name}` ({surface}) creates a resource on every call, with no idempotency key and no natural key in sight: a client retry after a timeout creates a duplicate (low confidence: a middleware or a unique constraint may handle it elsewhere)"
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_surfaces() {
        assert!(public_path("/public/v1/apps/{app_id}/chat"));
        assert!(public_path("/mcp/v1"));
        assert!(public_path("/api/v1/public"));
        assert!(!public_path("/publication"));
        assert!(public_file("backend/routers/public/v1/chat.py"));
        assert!(public_file("app/mcp_server.py"));
        assert!(!public_file("app/routers/publications.py"));
    }

    #[test]
    fn resource_creates() {
        assert!(non_resource_create("client.chat.completions.create"));
        assert!(non_resource_create("asyncio.create_task"));
        assert!(!non_resource_create("crud.create_item"));
        assert!(!non_resource_create(
            "ConversationService.create_conversation"
        ));
    }
}
