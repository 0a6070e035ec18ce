//! I5: in-process mutable state that breaks when the service runs as several replicas or workers.
//!
//! Three checks live here:
//! - `module-mutable-state`: a module-level dict/list/set (or `defaultdict`, `Counter`, …) written to from inside
//!   functions. Each worker process has its own copy, so counters, rate-limit windows, sessions or job status kept
//!   there differ between replicas and vanish on restart.
//! - `global-rebind-on-request-path`: a `global` name rebound inside a route handler or other `async def` on the
//!   request path (`global counter; counter += 1`).
//! - `environ-mutation-at-runtime`: `os.environ[...] = …` (and friends) inside a function: the environment is
//!   shared by every concurrent request of the process.
//!
//! The module-level collection analysis (shared with I6) is `semantic::python::state`.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::{is_route_handler, is_startup_name};
use crate::analysis::semantic::python::scopes::{
    OwnNodes, enclosing_function, enclosing_functions, in_main_guard, own_nodes,
};
use crate::analysis::semantic::python::state::{
    MODULE_COLLECTION_TOKENS, Op, Use, analyze_collections, collect_targets, func_info,
    grows_without_bound, startup_functions,
};
use crate::analysis::semantic::python::syntax::{callee, function_name, has_error, param_names};
use crate::analysis::semantic::python::text::{Cut, shorten};
use std::collections::HashSet;

// ---------------------------------------------------------------------------------------------------------
// I5-module-mutable-state
// ---------------------------------------------------------------------------------------------------------

/// Names that say the collection memoises a resource (clients, compiled graphs, models, locks): per-process copies
/// of those are expected, not shared application state.
pub(super) fn is_resource_cache_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "client",
        "engine",
        "pool",
        "driver",
        "connection",
        "conn",
        "session_factory",
        "sessionmaker",
        "model",
        "encoder",
        "tokenizer",
        "embedder",
        "embedding",
        "graph",
        "agent",
        "chain",
        "llm",
        "registry",
        "handler",
        "plugin",
        "factory",
        "factories",
        "loader",
        "parser",
        "schema",
        "regex",
        "pattern",
        "compiled",
        "template",
        "module",
        "import",
        "logger",
        "provider",
        "tool",
        "classes",
        "types",
        "config",
        "settings",
        "instance",
        "singleton",
        "callback",
        "hook",
        "listener",
        "subscriber",
        "signal",
        "metric",
        "gauge",
        "histogram",
        "counter_vec",
        "cache",
        "memo",
        "lock",
        "semaphore",
        "mutex",
        "guard",
        "task",
        "future",
        "background",
    ]
    .iter()
    .any(|w| n.contains(w))
}

pub struct ModuleMutableState;

impl Check for ModuleMutableState {
    fn id(&self) -> &'static str {
        "module-mutable-state"
    }

    fn tokens(&self) -> &'static [&'static str] {
        MODULE_COLLECTION_TOKENS
    }

    /// Only changes on the request path count: an `async def` or a route handler.
    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        const REQUEST_PATH: &[&str] = &[
            "async",
            ".get(",
            ".post(",
            ".put(",
            ".patch(",
            ".delete(",
            ".head(",
            ".options(",
            ".api_route(",
            ".websocket(",
        ];
        &[REQUEST_PATH]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for c in analyze_collections(ctx, root).iter() {
            if grows_without_bound(c).is_some() {
                continue; // I6 reports it, with the memory angle.
            }
            if is_resource_cache_name(&c.name) || c.holds_live_objects() {
                continue;
            }
            let changes: Vec<&Use> = c
                .uses
                .iter()
                .filter(|u| matches!(u.op, Op::Grow | Op::Mutate | Op::Shrink) && !u.startup)
                .collect();
            // Only state changed on the request path (an `async def` or a route handler) is clearly per-request.
            if !changes.iter().any(|u| u.request_path) {
                continue;
            }
            let mut seen_funcs: HashSet<(usize, usize)> = HashSet::new();
            for u in changes {
                let fkey = u.func.as_ref().map_or((0, 0), |r| (r.start, r.end));
                if !seen_funcs.insert(fkey) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: u.range.clone(),
                    message: Some(format!(
                        "`{}` changes module-level `{}` (a {}): every worker process and replica keeps its own copy, so this state differs between replicas and is lost on restart",
                        shorten(&u.text, Cut::EXPRESSION),
                        c.name,
                        c.kind.describe()
                    )),
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// I5-global-rebind-on-request-path
// ---------------------------------------------------------------------------------------------------------

pub struct GlobalRebindOnRequestPath;

/// Is every read of `name` in the file an argument of a logging call (a diagnostic counter)?
fn only_logged(root: &PyNode<'_>, name: &str) -> bool {
    root.dfs()
        .filter(|n| n.kind() == "identifier" && n.text() == name)
        .filter(|n| {
            // Skip the declaration, the increment and the module-level initialisation.
            let p = n.parent();
            !p.as_ref().is_some_and(|p| {
                matches!(p.kind().as_ref(), "global_statement")
                    || (matches!(p.kind().as_ref(), "assignment" | "augmented_assignment")
                        && p.field("left").is_some_and(|l| l.range() == n.range()))
            })
        })
        .all(|n| {
            n.ancestors().any(|a| {
                a.kind() == "call"
                    && callee(&a).is_some_and(|f| {
                        f.starts_with("logger.")
                            || f.starts_with("logging.")
                            || f.starts_with("log.")
                            || f.starts_with("_logger.")
                            || f.starts_with("LOGGER.")
                            || f == "print"
                    })
            })
        })
}

/// Global names that hold a lazily built resource or a cache: rebinding them per process is expected.
fn is_cache_or_resource_global(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    is_resource_cache_name(name)
        || [
            "cache",
            "cached",
            "latch",
            "ready",
            "readiness",
            "healthy",
            "health",
            "redis",
            "httpx",
            "http",
            "session",
            "key",
            "token",
            "secret",
            "loaded",
            "initialized",
            "initialised",
            "started",
            "warned",
            "_once",
            "last_",
            "since",
            "expires",
            "expiry",
            "ttl",
            "memo",
            "default",
            "current_app",
            "app",
            "executor",
            "loop",
            "thread",
            "process",
            "db",
            "vectorstore",
            "store",
            "index",
            "retriever",
            "embeddings",
            "credentials",
            "bucket",
            "s3",
            "bot",
        ]
        .iter()
        .any(|w| n.contains(w))
}

/// Function names of lifecycle and health code, where per-process state is the point.
fn is_lifecycle_name(name: &str) -> bool {
    let n = name.trim_start_matches('_').to_ascii_lowercase();
    is_startup_name(&n)
        || [
            "close",
            "dispose",
            "reset",
            "cleanup",
            "clean_up",
            "teardown",
            "tear_down",
            "connect",
            "disconnect",
            "health",
            "ready",
            "readiness",
            "liveness",
            "live",
            "ping",
            "warm",
            "reload",
            "refresh",
            "get_",
            "create_",
            "build_",
            "make_",
            "ensure_",
            "lazy",
            "cached",
        ]
        .iter()
        .any(|w| n.starts_with(w) || n.ends_with(w.trim_end_matches('_')))
}

impl Check for GlobalRebindOnRequestPath {
    fn id(&self) -> &'static str {
        "global-rebind-on-request-path"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["global "]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        // Cheap pre-check: a line that starts with `global ` (the token also matches comments and prose).
        if !root
            .text()
            .lines()
            .any(|l| l.trim_start().starts_with("global "))
        {
            return;
        }
        let startup_names = startup_functions(ctx, root);
        let startup_names = &startup_names.0;
        for g in ctx.of_kind(root, "global_statement").iter() {
            if has_error(g) {
                continue;
            }
            let Some(func) = enclosing_function(g) else {
                continue;
            };
            if func.kind() != "function_definition" || in_main_guard(&func) {
                continue;
            }
            let fname = function_name(&func).unwrap_or_default();
            let info = func_info(&func, startup_names);
            if info.startup {
                continue;
            }
            let handler = is_route_handler(&func) && !is_lifecycle_name(&fname);
            let Some(body) = func.field("body") else {
                continue;
            };
            let declared: Vec<String> = g
                .children()
                .filter(|c| c.kind() == "identifier")
                .map(|c| c.text().to_string())
                .collect();
            // Counters (`X += 1`) anywhere outside start-up code; plain rebinding only in route handlers, and
            // not of caches or lazily built resources.
            let mut counters: Vec<String> = Vec::new();
            let mut rebound: Vec<String> = Vec::new();
            for n in own_nodes(&body, OwnNodes::Below) {
                let kind = n.kind();
                if !matches!(kind.as_ref(), "assignment" | "augmented_assignment") {
                    continue;
                }
                let Some(left) = n.field("left") else {
                    continue;
                };
                let mut t = HashSet::new();
                collect_targets(&left, &mut t);
                for d in &declared {
                    if !t.contains(d) {
                        continue;
                    }
                    let counter = kind == "augmented_assignment"
                        && n.field("operator")
                            .is_some_and(|o| matches!(o.text().as_ref(), "+=" | "-="));
                    if counter {
                        let n = d.to_ascii_lowercase();
                        let f = fname.to_ascii_lowercase();
                        let limit_like = [
                            "limit", "quota", "rate", "throttl", "budget", "requests", "calls",
                            "attempt",
                        ]
                        .iter()
                        .any(|w| n.contains(w) || f.contains(w));
                        if [
                            "generation",
                            "version",
                            "epoch",
                            "_gen",
                            "in_process",
                            "per_process",
                        ]
                        .iter()
                        .any(|w| n.contains(w))
                            || !(limit_like || info.request_path)
                            || only_logged(root, d)
                        {
                            continue;
                        }
                        if !counters.contains(d) {
                            counters.push(d.clone());
                        }
                    } else if handler && !is_cache_or_resource_global(d) && !rebound.contains(d) {
                        rebound.push(d.clone());
                    }
                }
            }
            let message = if !counters.is_empty() {
                format!(
                    "`{}` counts in a process-global (`global {}` in `{fname}`): each worker and replica keeps its own count, so limits or totals built on it are wrong as soon as there is more than one process",
                    counters
                        .iter()
                        .map(|c| format!("{c} += …"))
                        .collect::<Vec<_>>()
                        .join("`, `"),
                    counters.join(", "),
                )
            } else if !rebound.is_empty() {
                format!(
                    "`global {}` in route handler `{fname}` keeps request state in the process: another replica (or worker) does not see it, and concurrent requests overwrite each other's",
                    rebound.join(", "),
                )
            } else {
                continue;
            };
            out.push(CheckMatch {
                fix: None,
                range: g.range(),
                message: Some(message),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// I5-environ-mutation
// ---------------------------------------------------------------------------------------------------------

/// If this node changes `os.environ` (or calls `os.putenv`/`os.unsetenv`), a short description of how.
fn environ_change(node: &PyNode<'_>, bare_ok: bool) -> Option<String> {
    let is_environ = |n: &PyNode<'_>| {
        let t: String = n.text().split_whitespace().collect();
        t == "os.environ" || (bare_ok && t == "environ")
    };
    match node.kind().as_ref() {
        "assignment" | "augmented_assignment" => {
            let left = node.field("left")?;
            (left.kind() == "subscript" && left.field("value").is_some_and(|v| is_environ(&v)))
                .then(|| format!("{} = …", left.text()))
        }
        "delete_statement" => {
            let target = node.children().find(|c| c.is_named())?;
            (target.kind() == "subscript" && target.field("value").is_some_and(|v| is_environ(&v)))
                .then(|| format!("del {}", target.text()))
        }
        "call" => {
            let f = callee(node)?;
            if matches!(
                f.as_str(),
                "os.putenv" | "os.unsetenv" | "putenv" | "unsetenv"
            ) {
                return Some(format!("{f}(…)"));
            }
            let (obj, method) = f.rsplit_once('.')?;
            (matches!(obj, "os.environ" | "environ")
                && matches!(
                    method,
                    "pop"
                        | "update"
                        | "setdefault"
                        | "clear"
                        | "popitem"
                        | "__setitem__"
                        | "__delitem__"
                ))
            .then(|| format!("{f}(…)"))
        }
        _ => None,
    }
}

/// Is the node inside a `with …lock…:` block (the team serialises the change)?
fn under_lock(node: &PyNode<'_>) -> bool {
    node.ancestors().any(|a| {
        a.kind() == "with_statement"
            && a.children()
                .find(|c| c.kind() == "with_clause")
                .is_some_and(|c| c.text().to_ascii_lowercase().contains("lock"))
    })
}

/// Parameter names that carry a tenant's or a request's data.
fn is_tenant_or_request_param(name: &str) -> bool {
    let n = name.trim_start_matches('_').to_ascii_lowercase();
    matches!(
        n.as_str(),
        "app"
            | "application"
            | "tenant"
            | "org"
            | "organization"
            | "workspace"
            | "agent"
            | "user"
            | "request"
            | "req"
            | "api_key"
            | "apikey"
            | "token"
            | "access_token"
            | "credentials"
            | "creds"
            | "secret"
            | "langsmith_api_key"
            | "project"
            | "project_name"
            | "customer"
            | "account"
    ) || n.starts_with("app_")
        || n.starts_with("tenant")
        || n.starts_with("org_")
        || n.starts_with("organization")
        || n.starts_with("workspace")
        || n.starts_with("agent_")
        || n.starts_with("user_")
        || n.ends_with("_api_key")
        || n.ends_with("_token")
}

/// Identifiers used in a node's text.
fn identifiers_in(node: &PyNode<'_>) -> HashSet<String> {
    node.dfs()
        .filter(|n| n.kind() == "identifier")
        .map(|n| n.text().to_string())
        .collect()
}

/// Where an environment change runs: `Some((function name, why it is per request))`, or `None` when it runs at
/// import, in a `__main__` block, under a lock, or in start-up code with no per-call data.
fn environ_context(node: &PyNode<'_>, startup_names: &HashSet<String>) -> Option<(String, String)> {
    let funcs = enclosing_functions(node);
    let inner = funcs.first()?;
    if in_main_guard(node) || under_lock(node) {
        return None;
    }
    let name = if inner.kind() == "lambda" {
        "lambda".to_string()
    } else {
        function_name(inner).unwrap_or_default()
    };
    // A value taken from a tenant's or request's parameter makes it per call, whatever the function is called.
    let used = identifiers_in(node);
    for f in &funcs {
        if let Some(p) = param_names(f)
            .into_iter()
            .find(|p| used.contains(p) && is_tenant_or_request_param(p))
        {
            return Some((name, format!("it writes per-call data (`{p}`)")));
        }
    }
    let mut request_path = false;
    for (i, f) in funcs.iter().enumerate() {
        if f.kind() != "function_definition" {
            continue;
        }
        let info = func_info(f, startup_names);
        if info.startup {
            return None;
        }
        if i == 0 {
            request_path = info.request_path;
        }
    }
    if !request_path {
        return None;
    }
    let why = if is_route_handler(inner) {
        "it runs in a route handler".to_string()
    } else {
        "it runs inside `async def`, on the request path".to_string()
    };
    Some((name, why))
}

pub struct EnvironMutationOnRequestPath;

impl Check for EnvironMutationOnRequestPath {
    fn id(&self) -> &'static str {
        "environ-mutation-on-request-path"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "environ[",
            "environ.pop",
            "environ.update",
            "environ.setdefault",
            "environ.clear",
            "environ.popitem",
            "putenv",
            "unsetenv",
        ]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let startup_names = startup_functions(ctx, root);
        let startup_names = &startup_names.0;
        // A bare `environ` is the process environment only when imported from `os`.
        let bare_ok = root.text().contains("from os import");
        for n in root.dfs() {
            if !matches!(
                n.kind().as_ref(),
                "assignment" | "augmented_assignment" | "delete_statement" | "call"
            ) {
                continue;
            }
            let Some(how) = environ_change(&n, bare_ok) else {
                continue;
            };
            if has_error(&n) {
                continue;
            }
            let Some((fname, why)) = environ_context(&n, startup_names) else {
                continue;
            };
            out.push(CheckMatch {
                fix: None,
                range: n.range(),
                message: Some(format!(
                    "`{}` in `{fname}` changes the environment of the whole process and {why}: concurrent requests of other tenants read and overwrite the same variable",
                    shorten(&how, Cut::EXPRESSION)
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    #[test]
    fn collections_and_uses() {
        let src = "CACHE = {}\nSEEN: set[str] = set()\nQ = deque(maxlen=10)\n\nasync def f(k):\n    CACHE[k] = 1\n    SEEN.add(k)\n    Q.append(k)\n\ndef g(CACHE):\n    CACHE[1] = 2\n";
        let doc = Lang::Python.ast_grep(src);
        let cs = analyze_collections(&FileContext::detached(), &doc.root());
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0].name, "CACHE");
        assert_eq!(cs[0].uses.len(), 1, "the parameter shadows the global in g");
        assert_eq!(cs[0].uses[0].op, Op::Grow);
        assert!(cs[2].bounded);
    }

    #[test]
    fn registration_decorators_are_startup() {
        let src = "HANDLERS = {}\n\ndef handler(name):\n    def deco(fn):\n        HANDLERS[name] = fn\n        return fn\n    return deco\n";
        let doc = Lang::Python.ast_grep(src);
        let cs = analyze_collections(&FileContext::detached(), &doc.root());
        assert!(cs[0].uses.iter().all(|u| u.startup));
    }
}
