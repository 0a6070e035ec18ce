//! I3: fault isolation — one tenant's or one request's failure must not take down the process or the others.
//!
//! - `process-exit-in-app`: `sys.exit()`, `os._exit()`, `exit()`, `quit()` or `raise SystemExit` in a route
//!   handler or an `async def` of the application: the worker dies (or, for `SystemExit` inside a handler, the
//!   server machinery sees an exception it was never meant to handle) and every in-flight request of every tenant
//!   on it fails.
//! - `tenant-loop-without-isolation`: a loop over tenants/apps/organisations whose body does work with no
//!   `try`/`except` inside it: the first tenant that raises stops the job for all the tenants after it.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::{
    is_route_handler, is_startup_name, is_startup_or_cli_decorated,
};
use crate::analysis::semantic::python::scopes::{
    OwnNodes, enclosing_functions, in_main_guard, own_nodes,
};
use crate::analysis::semantic::python::syntax::{
    callee, decorator_name, decorators, function_name, has_error, is_async_def,
};
use crate::analysis::semantic::python::text::{Cut, shorten};

/// Does the file look like a command-line program (argparse, click, typer)?
fn is_cli_module(root: &PyNode<'_>) -> bool {
    let text = root.text();
    text.contains("import argparse")
        || text.contains("import click")
        || text.contains("from click")
        || text.contains("import typer")
        || text.contains("from typer")
        || text.contains("import fire")
}

/// Names of functions installed as signal or exit handlers (`signal.signal(SIGTERM, handler)`,
/// `loop.add_signal_handler(…, handler)`, `atexit.register(handler)`).
fn signal_handlers<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<String> {
    let imports = ctx.imports(root);
    ctx.of_kind(root, "call")
        .iter()
        .filter(|c| {
            imports.callee(c).is_some_and(|f| {
                f.ends_with("signal.signal")
                    || f == "signal"
                    || f.ends_with("add_signal_handler")
                    || f.ends_with("atexit.register")
            })
        })
        .filter_map(|c| c.field("arguments"))
        .flat_map(|a| {
            a.children()
                .filter(|x| x.is_named())
                .map(|x| {
                    let t = x.text().to_string();
                    t.rsplit('.').next().unwrap_or(&t).to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// If the node ends the process, a short name for how.
fn process_exit(node: &PyNode<'_>) -> Option<String> {
    match node.kind().as_ref() {
        "call" => {
            let f = callee(node)?;
            matches!(
                f.as_str(),
                "sys.exit" | "os._exit" | "exit" | "quit" | "os.abort"
            )
            .then(|| format!("{f}(…)"))
        }
        "raise_statement" => {
            let v = node.children().find(|c| c.is_named())?;
            let name = if v.kind() == "call" {
                callee(&v)?
            } else {
                v.text().to_string()
            };
            (name == "SystemExit" || name == "KeyboardInterrupt").then(|| format!("raise {name}"))
        }
        _ => None,
    }
}

pub struct ProcessExitInApp;

impl Check for ProcessExitInApp {
    fn id(&self) -> &'static str {
        "process-exit-in-app"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["exit(", "quit(", "SystemExit", "abort("]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        if is_cli_module(root) {
            return;
        }
        let handlers = signal_handlers(ctx, root);
        let calls = ctx.of_kind(root, "call");
        let raises = ctx.of_kind(root, "raise_statement");
        // Document order, as one walk would visit them (an outer node before the nodes it holds).
        let mut nodes: Vec<&PyNode<'r>> = calls.iter().chain(raises.iter()).collect();
        nodes.sort_by_key(|n| (n.range().start, std::cmp::Reverse(n.range().end)));
        for n in nodes {
            let Some(how) = process_exit(n) else {
                continue;
            };
            if has_error(n) || in_main_guard(n) {
                continue;
            }
            let funcs = enclosing_functions(n);
            let Some(inner) = funcs.first() else {
                continue;
            };
            // Start-up, CLI and signal-handling code may end the process on purpose.
            let excluded = funcs.iter().any(|f| {
                f.kind() == "function_definition"
                    && (function_name(f).is_some_and(|name| {
                        is_startup_name(&name)
                            || handlers.contains(&name)
                            || name.contains("signal")
                            || name.contains("sigterm")
                            || name.contains("shutdown")
                            || name.contains("exit")
                    }) || is_startup_or_cli_decorated(f)
                        || decorators(f).iter().any(|d| {
                            let dn = decorator_name(d);
                            dn.ends_with("command") || dn.ends_with("main")
                        }))
            });
            if excluded {
                continue;
            }
            let handler = funcs
                .iter()
                .find(|f| f.kind() == "function_definition" && is_route_handler(f));
            let fname = function_name(inner).unwrap_or_else(|| "lambda".into());
            let message = if let Some(h) = handler {
                format!(
                    "`{how}` in route handler `{}` ends the worker process: every in-flight request of every tenant on it fails; raise an `HTTPException` instead",
                    function_name(h).unwrap_or_default()
                )
            } else if inner.kind() == "function_definition" && is_async_def(inner) {
                format!(
                    "`{how}` in `async def {fname}` ends the whole server process from application code: every in-flight request on this worker fails; raise an exception the caller can handle"
                )
            } else {
                continue;
            };
            out.push(CheckMatch {
                fix: None,
                range: n.range(),
                message: Some(message),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// I3-tenant-loop-without-isolation
// ---------------------------------------------------------------------------------------------------------

/// Loop variables that name one tenant.
fn is_tenant_var(name: &str) -> bool {
    matches!(
        name,
        "app"
            | "app_id"
            | "tenant"
            | "tenant_id"
            | "org"
            | "org_id"
            | "organization"
            | "organization_id"
            | "workspace"
            | "workspace_id"
            | "silo"
            | "silo_id"
    )
}

/// Does the iterable name several tenants (`apps`, `tenant_ids`, `get_all_tenant_ids()`, `self.tenants`)?
fn is_tenant_collection(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "apps",
        "tenant",
        "orgs",
        "organizations",
        "workspaces",
        "silos",
        "app_ids",
        "org_ids",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Calls that do no I/O and are not worth isolating.
fn is_trivial_call(f: &str) -> bool {
    let last = f.rsplit('.').next().unwrap_or(f);
    matches!(
        last,
        "append"
            | "extend"
            | "add"
            | "update"
            | "get"
            | "setdefault"
            | "items"
            | "keys"
            | "values"
            | "len"
            | "str"
            | "int"
            | "float"
            | "bool"
            | "list"
            | "dict"
            | "set"
            | "tuple"
            | "sorted"
            | "format"
            | "join"
            | "split"
            | "strip"
            | "lower"
            | "upper"
            | "startswith"
            | "endswith"
            | "isinstance"
            | "print"
            | "debug"
            | "info"
            | "warning"
            | "warn"
            | "error"
            | "exception"
            | "critical"
            | "log"
            | "min"
            | "max"
            | "sum"
            | "any"
            | "all"
            | "range"
            | "enumerate"
            | "zip"
            | "replace"
            | "copy"
            | "discard"
            | "remove"
            | "pop"
            | "inc"
            | "labels"
            | "observe"
            | "set_"
            | "getattr"
            | "hasattr"
            | "repr"
            | "model_dump"
            | "dict_"
            | "count"
            | "index"
    ) || f.starts_with("logger.")
        || f.starts_with("logging.")
        || f.starts_with("log.")
}

/// Is the node inside something that contains each iteration's failure: `try:` inside the loop body, or
/// `with suppress(...)`/`contextlib.suppress(...)`?
fn has_isolation(body: &PyNode<'_>) -> bool {
    own_nodes(body, OwnNodes::Below).iter().any(|n| {
        n.kind() == "try_statement"
            && n.children()
                .any(|c| c.kind() == "except_clause" || c.kind() == "except_group_clause")
            || (n.kind() == "with_statement"
                && n.children()
                    .find(|c| c.kind() == "with_clause")
                    .is_some_and(|c| c.text().contains("suppress(")))
    })
}

/// Calls that hand the tenant's work to someone else (a queue, a broker, a cache): their failure is not the
/// tenant's and is contained elsewhere.
fn is_dispatch_call(f: &str) -> bool {
    let l = f.to_ascii_lowercase();
    let last = l.rsplit('.').next().unwrap_or(&l);
    last.starts_with("send_task")
        || last.starts_with("apply_async")
        || last == "delay"
        || last.starts_with("enqueue")
        || last.starts_with("publish")
        || last.starts_with("schedule")
        || last.starts_with("put")
        || last == "create_task"
        || last == "submit"
        || l.contains("redis")
        || l.contains("pipe")
        || l.contains("cache")
        || l.contains("lock")
        || l.contains("metric")
        || l.contains("gauge")
        || l.contains("counter")
        || l.starts_with("self.app.")
}

/// Does the call pass the tenant (`f(app)`, `f(app.id)`, `f(tenant_id=tenant_id)`) or act on it (`app.sync()`)?
fn uses_var(call: &PyNode<'_>, var: &str) -> bool {
    let in_args = call
        .field("arguments")
        .is_some_and(|a| a.dfs().any(|n| n.kind() == "identifier" && n.text() == var));
    let on_var = call.field("function").is_some_and(|f| {
        f.kind() == "attribute"
            && f.field("object")
                .is_some_and(|o| o.kind() == "identifier" && o.text() == var)
    });
    in_args || on_var
}

/// Top-level `def`s of the file (and methods), by name: do they catch everything themselves?
fn catches_broadly(root: &PyNode<'_>, name: &str) -> Option<bool> {
    let def = root.dfs().find(|n| {
        n.kind() == "function_definition" && function_name(n).is_some_and(|f| f == name)
    })?;
    let body = def.field("body")?;
    Some(body.children().any(|stmt| {
        stmt.kind() == "try_statement"
            && stmt.children().any(|c| {
                c.kind() == "except_clause" && {
                    let t = c.text();
                    let head = t.split(':').next().unwrap_or("");
                    let head: String = head.split_whitespace().collect::<Vec<_>>().join(" ");
                    head == "except" || head.contains("Exception") || head.contains("BaseException")
                }
            })
    }))
}

/// The tenant's work in the loop body: calls that take the tenant, do I/O, and are not dispatch to a queue.
/// `None` when there is none, or when every one of them is a function of this file that catches everything.
fn tenant_work<'r>(root: &PyNode<'r>, body: &PyNode<'r>, var: &str) -> Option<PyNode<'r>> {
    let mut nodes = own_nodes(body, OwnNodes::Below);
    nodes.sort_by_key(|n| n.range().start);
    let calls: Vec<PyNode<'r>> = nodes
        .into_iter()
        .filter(|n| n.kind() == "call")
        .filter(|c| {
            callee(c).is_some_and(|f| !is_trivial_call(&f) && !is_dispatch_call(&f))
                && uses_var(c, var)
        })
        .collect();
    calls
        .iter()
        .find(|c| {
            let f = callee(c).unwrap_or_default();
            let local = f.strip_prefix("self.").unwrap_or(&f);
            let simple = local.chars().all(|ch| ch.is_alphanumeric() || ch == '_');
            // Same-file helpers that wrap their whole body in `try/except Exception` isolate each tenant.
            !(simple && catches_broadly(root, local) == Some(true))
        })
        .cloned()
}

/// Task decorators of job frameworks (Celery, Dramatiq, APScheduler, fastapi-utils, arq, …).
fn is_job_function(func: &PyNode<'_>) -> bool {
    let decorated = decorators(func).iter().any(|d| {
        let n = decorator_name(d);
        let last = n.rsplit('.').next().unwrap_or(&n);
        matches!(
            last,
            "task"
                | "shared_task"
                | "actor"
                | "scheduled_job"
                | "repeat_every"
                | "cron"
                | "periodic_task"
                | "job"
                | "scheduled"
                | "periodic"
        )
    });
    let name = function_name(func).unwrap_or_default().to_ascii_lowercase();
    decorated
        || [
            "task",
            "job",
            "cron",
            "beat",
            "periodic",
            "schedule",
            "sync",
            "refresh",
            "cleanup",
            "clean_up",
            "prune",
            "monitor",
            "poll",
            "reindex",
            "backfill",
            "worker",
            "loop",
            "for_all",
            "all_tenants",
            "all_apps",
            "each_tenant",
            "nightly",
            "hourly",
            "daily",
            "rotate",
            "reconcile",
            "sweep",
            "purge",
            "expire",
            "recompute",
            "recalculate",
        ]
        .iter()
        .any(|w| name.contains(w))
}

/// Does the iterable (or the local it was assigned from) say "all tenants" rather than "the tenants of X"?
fn iterates_all_tenants(func: &PyNode<'_>, right: &PyNode<'_>) -> bool {
    let mut text = right.text().to_string();
    if right.kind() == "identifier"
        && let Some(body) = func.field("body")
    {
        for n in own_nodes(&body, OwnNodes::Below) {
            if n.kind() == "assignment"
                && n.field("left").is_some_and(|l| l.text() == right.text())
                && let Some(r) = n.field("right")
            {
                text.push(' ');
                text.push_str(&r.text());
            }
        }
    }
    let t = text.to_ascii_lowercase();
    (t.contains("all") || t.contains("active") || t.contains("enabled"))
        && !t.contains("_by_")
        && !t.contains("by_")
}

pub struct TenantLoopWithoutIsolation;

impl Check for TenantLoopWithoutIsolation {
    fn id(&self) -> &'static str {
        "tenant-loop-without-isolation"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "for app",
            "for tenant",
            "for org",
            "for workspace",
            "for silo",
        ]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        if is_cli_module(root) {
            return;
        }
        for lp in ctx.of_kind(root, "for_statement").iter() {
            let (Some(left), Some(right), Some(body)) =
                (lp.field("left"), lp.field("right"), lp.field("body"))
            else {
                continue;
            };
            if left.kind() != "identifier" || !is_tenant_var(&left.text()) {
                continue;
            }
            if !is_tenant_collection(&right.text()) {
                continue;
            }
            if has_error(lp) || in_main_guard(lp) {
                continue;
            }
            // A job over all tenants: inside a function that is not a CLI entry point or a request handler.
            let funcs = enclosing_functions(lp);
            let Some(func) = funcs.iter().find(|f| f.kind() == "function_definition") else {
                continue;
            };
            if function_name(func).is_some_and(|n| n == "main" || n == "cli")
                || is_route_handler(func)
            {
                continue;
            }
            if !(is_job_function(func) || iterates_all_tenants(func, &right)) {
                continue;
            }
            if has_isolation(&body) {
                continue;
            }
            let Some(work) = tenant_work(root, &body, &left.text()) else {
                continue;
            };
            let header = lp.range().start..right.range().end;
            let work_text: String = work.text().split_whitespace().collect::<Vec<_>>().join(" ");
            let work_text = shorten(&work_text, Cut::EXPRESSION);
            out.push(CheckMatch {
                fix: None,
                range: header,
                message: Some(format!(
                    "`for {} in {}` has no `try`/`except` around each iteration: if `{work_text}` raises for one tenant, every tenant after it is skipped (and the same tenant fails first again on the next run)",
                    left.text(),
                    shorten(&right.text(), Cut::EXPRESSION)
                )),
            });
        }
    }
}
