//! C8: scheduled work started inside the web app, with no distributed lock or leader election in sight.
//!
//! Code started from FastAPI's startup (a `lifespan` function, `@app.on_event("startup")`, `on_startup=[…]`)
//! runs once per process: with N replicas and W Uvicorn workers each, every job runs N×W times. The checks:
//!
//! * `c8-in-process-scheduler`: an APScheduler-style scheduler `.start()`ed from startup code (or at module
//!   level of the app module).
//! * `c8-repeat-every`: `@repeat_every(…)` / `@repeat_at(…)` (fastapi-utils and its forks).
//! * `c8-startup-loop-task`: `asyncio.create_task(job())` in startup code, where `job` is a `while` loop with a
//!   sleep that does shared work (cleanup, sync, crawl, sending…).
//! * `c8-celery-beat-embedded`: a Celery worker started with an embedded beat (`beat=True`, `-B`).
//!
//! "In sight" is the file: a Postgres advisory lock, a Redis lock, a `Lock(…)` that is not asyncio's or
//! threading's, `SKIP LOCKED`, `nx=True`, or anything named leader anywhere in it silences the checks.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::scopes::is_module_level;
use crate::analysis::semantic::python::syntax::{callee, has_error, keyword_arg};
use crate::analysis::semantic::python::text::words;

/// Is some form of distributed lock or leader election mentioned in the file?
pub(super) fn lock_in_sight(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let mut cleaned = lower.clone();
    for local in [
        "asyncio.lock(",
        "asyncio.semaphore(",
        "threading.lock(",
        "threading.rlock(",
        "anyio.lock(",
        "multiprocessing.lock(",
    ] {
        cleaned = cleaned.replace(local, " ");
    }
    if cleaned.contains("nx=true") || cleaned.contains("setnx") || cleaned.contains("skip_locked") {
        return true;
    }
    // Identifier-ish tokens of the text (comments and strings included: `pg_try_advisory_lock` lives in SQL).
    text_tokens(&cleaned).any(|tok| {
        words(tok).iter().any(|w| {
            matches!(
                w.as_str(),
                "lock" | "locks" | "redlock" | "leader" | "leaders" | "advisory" | "mutex"
            )
        })
    })
}

fn text_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
}

/// Names of functions in the file that run at application startup: lifespan functions, startup event
/// handlers, and the functions of this file they call (transitively).
pub(super) fn startup_function_names<'r>(
    ctx: &FileContext<'r>,
    root: &PyNode<'r>,
) -> std::rc::Rc<StartupNames> {
    ctx.memo(root, || StartupNames(startup_names_of(ctx, root)))
}

/// The file's startup function names (one analysis for both C8 checks).
pub(super) struct StartupNames(pub Vec<String>);

fn startup_names_of<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let defs = ctx.of_kind(root, "function_definition");
    for call in ctx.of_kind(root, "call").iter() {
        for kw in ["lifespan", "on_startup"] {
            if let Some(v) = keyword_arg(call, kw) {
                names.extend(
                    v.dfs()
                        .filter(|n| n.kind() == "identifier")
                        .map(|n| n.text().to_string()),
                );
            }
        }
        // app.add_event_handler("startup", handler)
        if callee(call).is_some_and(|f| f.ends_with("add_event_handler"))
            && let Some(args) = call.field("arguments")
        {
            let pos: Vec<PyNode<'_>> = args.children().filter(|a| a.is_named()).collect();
            if pos.len() >= 2 && pos[0].text().contains("startup") {
                names.push(pos[1].text().to_string());
            }
        }
    }
    for def in &defs {
        let Some(name) = def.field("name").map(|n| n.text().to_string()) else {
            continue;
        };
        let by_name = words(&name)
            .iter()
            .any(|w| w == "lifespan" || w == "startup");
        let by_decorator = def.parent().is_some_and(|p| {
            p.kind() == "decorated_definition"
                && p.children().any(|d| {
                    d.kind() == "decorator" && {
                        let t = d.text();
                        t.contains("on_event") && t.contains("startup")
                    }
                })
        });
        if by_name || by_decorator {
            names.push(name);
        }
    }
    // Functions of this file called from startup functions run at startup too (a few levels deep).
    for _ in 0..3 {
        let mut added = false;
        for def in &defs {
            let Some(name) = def.field("name").map(|n| n.text().to_string()) else {
                continue;
            };
            if !names.contains(&name) {
                continue;
            }
            for call in def.dfs().filter(|n| n.kind() == "call") {
                let Some(f) = callee(&call) else { continue };
                let last = f.rsplit('.').next().unwrap_or(&f).to_string();
                if !names.contains(&last)
                    && defs
                        .iter()
                        .any(|d| d.field("name").is_some_and(|n| n.text() == last))
                {
                    names.push(last);
                    added = true;
                }
            }
        }
        if !added {
            break;
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Is the node inside one of the named startup functions (at any depth of nesting)?
fn in_startup(node: &PyNode<'_>, startup: &[String]) -> bool {
    node.ancestors()
        .filter(|a| a.kind() == "function_definition")
        .any(|f| {
            f.field("name")
                .is_some_and(|n| startup.iter().any(|s| *s == n.text()))
        })
}

const SCHEDULER_CLASSES: &[&str] = &[
    "AsyncIOScheduler",
    "BackgroundScheduler",
    "AsyncScheduler",
    "TornadoScheduler",
    "GeventScheduler",
    "TwistedScheduler",
    "QtScheduler",
];

/// Names assigned from a scheduler constructor in the file (`sched = AsyncIOScheduler(…)`).
fn scheduler_variables(root: &PyNode<'_>, imports: &Imports) -> Vec<String> {
    root.dfs()
        .filter(|n| n.kind() == "assignment")
        .filter(|a| {
            a.field("right").is_some_and(|r| {
                r.kind() == "call"
                    && imports.callee(&r).is_some_and(|f| {
                        SCHEDULER_CLASSES.contains(&f.rsplit('.').next().unwrap_or(&f))
                    })
            })
        })
        .filter_map(|a| a.field("left").map(|l| l.text().to_string()))
        .collect()
}

pub struct InProcessScheduler;

impl Check for InProcessScheduler {
    fn id(&self) -> &'static str {
        "c8-in-process-scheduler"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["cheduler", "sched"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let text = root.text();
        if lock_in_sight(&text) || text.contains("BlockingScheduler") {
            return;
        }
        let startup_names = startup_function_names(ctx, root);
        let startup = &startup_names.0;
        let imports = ctx.imports(root);
        let vars = scheduler_variables(root, &imports);
        let app_module = text.contains("FastAPI(") || text.contains("Starlette(");
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = callee(call) else { continue };
            let Some((receiver, method)) = f.rsplit_once('.') else {
                continue;
            };
            if method != "start" && method != "start_in_background" {
                continue;
            }
            let last = receiver.rsplit('.').next().unwrap_or(receiver);
            let is_scheduler = vars.iter().any(|v| v == receiver)
                || words(last)
                    .iter()
                    .any(|w| w == "scheduler" || w == "sched" || w == "apscheduler");
            if !is_scheduler {
                continue;
            }
            let where_ = if in_startup(call, startup) {
                "at application startup"
            } else if is_module_level(call) && app_module {
                "when the app module is imported"
            } else {
                continue;
            };
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(call) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{f}()` starts an in-process scheduler {where_}: every replica and every worker process runs every job, and no distributed lock or leader election is in sight in this file"
                )),
            });
        }
    }
}

pub struct RepeatEvery;

impl Check for RepeatEvery {
    fn id(&self) -> &'static str {
        "c8-repeat-every"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["repeat_every", "repeat_at"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        if lock_in_sight(&root.text()) {
            return;
        }
        let imports = ctx.imports(root);
        for dec in ctx.of_kind(root, "decorator").iter() {
            let Some(expr) = dec.children().find(|c| c.is_named()) else {
                continue;
            };
            // `@repeat_every(…)`, also when imported under another name.
            let f = if expr.kind() == "call" {
                imports.callee(&expr)
            } else {
                Some(imports.unalias(&expr.text()))
            };
            let Some(f) = f else { continue };
            let last = f.rsplit('.').next().unwrap_or(&f);
            if last != "repeat_every" && last != "repeat_at" {
                continue;
            }
            let job = dec
                .parent()
                .and_then(|p| p.field("definition"))
                .and_then(|d| d.field("name"))
                .map(|n| n.text().to_string())
                .unwrap_or_else(|| "the job".into());
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(dec) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: dec.range(),
                message: Some(format!(
                    "`@{last}(…)` runs `{job}` on a timer inside every app process: with several replicas or workers it runs once per process, and no distributed lock or leader election is in sight in this file"
                )),
            });
        }
    }
}

/// Words that say a loop does work that must happen once per cluster, not once per process.
const SHARED_WORK: &[&str] = &[
    "delete",
    "cleanup",
    "clean",
    "purge",
    "expire",
    "expired",
    "sync",
    "crawl",
    "scrape",
    "send",
    "email",
    "notify",
    "reindex",
    "index",
    "ingest",
    "commit",
    "insert",
    "update",
    "job",
    "jobs",
    "cron",
    "billing",
    "charge",
    "reset",
    "archive",
    "backup",
    "digest",
    "report",
    "schedule",
    "scheduled",
    "prune",
    "rotate",
    "renew",
    "dispatch",
    "enqueue",
];

/// Words that say a loop is per-process by design (its own cache, heartbeat, metrics, consuming a queue).
const PER_PROCESS: &[&str] = &[
    "heartbeat",
    "metric",
    "metrics",
    "health",
    "refresh",
    "reload",
    "watch",
    "watcher",
    "listen",
    "listener",
    "consume",
    "consumer",
    "subscribe",
    "subscriber",
    "monitor",
    "ping",
    "keepalive",
    "log",
    "logs",
    "flush",
    "stats",
    "telemetry",
    "warm",
    "warmup",
    "cache",
    "pubsub",
    "queue",
    "worker",
    "poll",
    "poller",
    "drain",
];

fn has_any_word(name: &str, set: &[&str]) -> bool {
    words(name).iter().any(|w| set.contains(&w.as_str()))
}

/// Does this function body run a periodic `while` loop with a sleep in it?
fn periodic_loop<'r>(def: &PyNode<'r>, imports: &Imports) -> Option<PyNode<'r>> {
    def.field("body")?.dfs().find(|n| {
        n.kind() == "while_statement"
            && n.field("body").is_some_and(|b| {
                b.dfs().any(|c| {
                    c.kind() == "call"
                        && imports
                            .callee(&c)
                            .is_some_and(|f| f.ends_with("sleep") || f.ends_with("wait_for"))
                })
            })
    })
}

pub struct StartupLoopTask;

impl Check for StartupLoopTask {
    fn id(&self) -> &'static str {
        "c8-startup-loop-task"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["create_task", "ensure_future", "start_soon"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        if lock_in_sight(&root.text()) {
            return;
        }
        let startup_names = startup_function_names(ctx, root);
        let startup = &startup_names.0;
        if startup.is_empty() {
            return;
        }
        let defs: Vec<PyNode<'_>> = root
            .dfs()
            .filter(|n| n.kind() == "function_definition")
            .collect();
        let imports = ctx.imports(root);
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = imports.callee(call) else {
                continue;
            };
            let last = f.rsplit('.').next().unwrap_or(&f);
            if !matches!(last, "create_task" | "ensure_future" | "start_soon") {
                continue;
            }
            if !in_startup(call, startup) {
                continue;
            }
            let Some(arg) = call
                .field("arguments")
                .and_then(|a| a.children().find(|c| c.is_named()))
            else {
                continue;
            };
            // `create_task(job())` or `start_soon(job)`.
            let target = if arg.kind() == "call" {
                imports.callee(&arg)
            } else {
                Some(arg.text().to_string())
            };
            let Some(target) = target else { continue };
            let job = target.rsplit('.').next().unwrap_or(&target).to_string();
            if has_any_word(&job, PER_PROCESS) {
                continue;
            }
            let def = defs
                .iter()
                .find(|d| d.field("name").is_some_and(|n| n.text() == job));
            let shared = match def {
                // Defined here: it must loop with a sleep and its body must do shared work.
                Some(d) => {
                    let Some(lp) = periodic_loop(d, &imports) else {
                        continue;
                    };
                    lp.dfs()
                        .filter(|n| n.kind() == "identifier")
                        .any(|n| has_any_word(&n.text(), SHARED_WORK))
                }
                // Defined elsewhere: only a name that says it is a scheduled job.
                None => words(&job).iter().any(|w| {
                    matches!(
                        w.as_str(),
                        "cleanup"
                            | "purge"
                            | "expire"
                            | "crawl"
                            | "crawler"
                            | "scrape"
                            | "cron"
                            | "reindex"
                            | "digest"
                            | "billing"
                            | "backup"
                            | "scheduler"
                            | "periodic"
                            | "sync"
                    )
                }),
            };
            if !shared {
                continue;
            }
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(call) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{f}({job}…)` starts a periodic job from application startup: every replica and every worker process runs its own copy of the loop, and no distributed lock or leader election is in sight in this file"
                )),
            });
        }
    }
}

pub struct CeleryBeatEmbedded;

impl Check for CeleryBeatEmbedded {
    fn id(&self) -> &'static str {
        "c8-celery-beat-embedded"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["beat", "worker_main"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let text = root.text();
        if !text.contains("celery") && !text.contains("Celery") {
            return;
        }
        if lock_in_sight(&text) {
            return;
        }
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = callee(call) else { continue };
            let embedded_kw = keyword_arg(call, "beat").is_some_and(|v| v.text() == "True");
            // worker_main(["worker", "-B", …]) / start(argv=[…, "--beat"])
            let embedded_argv = matches!(
                f.rsplit('.').next().unwrap_or(&f),
                "worker_main" | "start" | "Popen" | "run" | "main"
            ) && call.field("arguments").is_some_and(|args| {
                let strings: Vec<String> = args
                    .dfs()
                    .filter(|n| n.kind() == "string_content")
                    .map(|n| n.text().to_string())
                    .collect();
                strings.iter().any(|s| s == "worker")
                    && strings.iter().any(|s| s == "-B" || s == "--beat")
            });
            if !(embedded_kw || embedded_argv) {
                continue;
            }
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(call) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{f}(…)` embeds Celery beat in a worker: every replica of this worker runs its own beat and every periodic task fires once per replica, with no lock (e.g. RedBeat) in sight"
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_tokens() {
        assert!(lock_in_sight("SELECT pg_try_advisory_lock(42)"));
        assert!(lock_in_sight("async with redis.lock('jobs', timeout=60):"));
        assert!(lock_in_sight("if not await elect_leader(): return"));
        assert!(lock_in_sight("await r.set(key, 1, nx=True, ex=60)"));
        assert!(!lock_in_sight(
            "guard = asyncio.Lock()\nsched = BlockingScheduler()"
        ));
        assert!(!lock_in_sight("clock = time.monotonic(); block = 1"));
    }
}
