//! C3: one database session per request/task.
//!
//! A SQLAlchemy `Session`/`AsyncSession` is a unit of work bound to one connection at a time; it is not safe for
//! concurrent use. Handing the same session to coroutines that run concurrently (`asyncio.gather`, tasks), creating
//! one session at import time that every request then shares, or keeping one on a long-lived object, makes
//! requests interleave statements in one transaction: `InvalidRequestError`/`IllegalStateChangeError` under load,
//! one request's rollback discarding another's writes, and identity-map data leaking between requests.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::{Imports, squash};
use crate::analysis::semantic::python::persistence::{FuncFacts, is_session_name};
use crate::analysis::semantic::python::scopes::{enclosing_function, in_main_guard};
use crate::analysis::semantic::python::syntax::{function_name, has_error};
use crate::analysis::semantic::python::text::{Cut, shorten};

pub struct SessionSharedAcrossTasks;
pub struct SessionPassedToTask;
pub struct ModuleLevelSession;
pub struct SessionOnInstance;

/// Methods only a database session has (an HTTP `ClientSession` has none of them).
const DB_METHODS: &[&str] = &[
    "execute",
    "scalars",
    "scalar",
    "commit",
    "flush",
    "refresh",
    "rollback",
    "add_all",
    "merge",
    "exec",
    "query",
    "begin_nested",
    "expunge",
];

/// Annotations naming a database session type.
fn is_db_session_type(annotation: &str) -> bool {
    let inner = crate::analysis::semantic::sessions::annotated_type(annotation);
    let last = inner.rsplit('.').next().unwrap_or(&inner);
    matches!(
        last,
        "Session" | "AsyncSession" | "DbSession" | "DBSession" | "AsyncDbSession"
    ) || last.ends_with("SessionDep")
        || (last.ends_with("DbSession") && !last.contains("Client"))
}

/// The expressions (identifiers, or `self.x`) in this function that hold a database session.
fn session_vars(facts: &FuncFacts<'_>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if let Some(params) = facts.func.field("parameters") {
        for p in params.children() {
            let name = match p.kind().as_ref() {
                "typed_parameter" => p.children().find(|c| c.kind() == "identifier"),
                "typed_default_parameter" | "default_parameter" => p.field("name"),
                _ => None,
            };
            let Some(name) = name else { continue };
            let typed = p
                .field("type")
                .is_some_and(|t| is_db_session_type(&t.text()));
            let injected = p.field("value").is_some_and(|v| {
                let t = v.text().to_ascii_lowercase();
                t.starts_with("depends(")
                    && (t.contains("db") || t.contains("session"))
                    && !t.contains("maker")
                    && !t.contains("factory")
                    && !t.contains("client")
            });
            if typed || injected {
                out.push(name.text().to_string());
            }
        }
    }
    // Used as the receiver of a method only a database session has.
    for n in facts.nodes.iter().filter(|n| n.kind() == "attribute") {
        let (Some(obj), Some(method)) = (n.field("object"), n.field("attribute")) else {
            continue;
        };
        let text = obj.text().to_string();
        if !DB_METHODS.contains(&method.text().as_ref()) || !is_session_name(&text) {
            continue;
        }
        let plain = obj.kind() == "identifier"
            || (obj.kind() == "attribute"
                && obj.field("object").is_some_and(|o| o.text() == "self"));
        if plain && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

/// The session expressions passed directly as arguments to `call`.
fn session_args(call: &PyNode<'_>, sessions: &[String]) -> Vec<String> {
    let Some(args) = call.field("arguments") else {
        return Vec::new();
    };
    args.children()
        .filter_map(|a| {
            if a.kind() == "keyword_argument" {
                a.field("value")
            } else {
                Some(a)
            }
        })
        .map(|v| v.text().to_string())
        .filter(|t| sessions.iter().any(|s| s == t))
        .collect()
}

/// The last name of `call`'s callee with any import alias undone (`g` after `from asyncio import gather as g`).
fn last_segment(call: &PyNode<'_>, imports: &Imports) -> String {
    call.field("function")
        .map(|f| {
            let t = imports.unalias(&squash(&f.text()));
            t.rsplit('.').next().unwrap_or(&t).to_string()
        })
        .unwrap_or_default()
}

/// `create_task(coro)` / `ensure_future(coro)`: the coroutine call inside, else the node itself.
fn unwrap_task<'r>(node: &PyNode<'r>, imports: &Imports) -> PyNode<'r> {
    if node.kind() == "call"
        && matches!(
            last_segment(node, imports).as_str(),
            "create_task" | "ensure_future"
        )
        && let Some(first) = node
            .field("arguments")
            .and_then(|a| a.children().find(|c| c.is_named()))
    {
        return first;
    }
    node.clone()
}

/// The coroutine calls a `gather(...)` / `wait([...])` runs, each with a weight (2 for a comprehension: many).
fn gathered<'r>(call: &PyNode<'r>, imports: &Imports) -> Vec<(PyNode<'r>, usize)> {
    let mut out = Vec::new();
    let Some(args) = call.field("arguments") else {
        return out;
    };
    let push_container =
        |c: &PyNode<'r>, out: &mut Vec<(PyNode<'r>, usize)>| match c.kind().as_ref() {
            "list_comprehension" | "generator_expression" | "set_comprehension" => {
                if let Some(body) = c.field("body") {
                    let body = unwrap_task(&body, imports);
                    if body.kind() == "call" {
                        out.push((body, 2));
                    }
                }
            }
            "list" | "tuple" | "set" => {
                for e in c.children().filter(|e| e.is_named()) {
                    let e = unwrap_task(&e, imports);
                    if e.kind() == "call" {
                        out.push((e, 1));
                    }
                }
            }
            _ => {}
        };
    for a in args.children().filter(|a| a.is_named()) {
        match a.kind().as_ref() {
            "call" => out.push((unwrap_task(&a, imports), 1)),
            "list_splat" => {
                if let Some(inner) = a.children().find(|c| c.is_named()) {
                    push_container(&inner, &mut out);
                }
            }
            "generator_expression" | "list_comprehension" | "list" | "tuple" | "set" => {
                push_container(&a, &mut out)
            }
            _ => {}
        }
    }
    out
}

/// Is the node inside a loop or comprehension of the function starting at `func_start`?
fn in_loop(node: &PyNode<'_>, func_start: usize) -> bool {
    node.ancestors()
        .take_while(|a| a.range().start >= func_start)
        .any(|a| {
            matches!(
                a.kind().as_ref(),
                "for_statement"
                    | "while_statement"
                    | "list_comprehension"
                    | "generator_expression"
                    | "set_comprehension"
                    | "dictionary_comprehension"
            )
        })
}

/// One finding of the two task checks.
struct TaskHit {
    range: std::ops::Range<usize>,
    shared: bool,
    message: String,
}

/// The calls `task_hits` looks at, by their last name segment: a function naming none has no hit.
const TASK_CALLS: &[&str] = &[
    "gather",
    "wait",
    "as_completed",
    "create_task",
    "ensure_future",
    "start_soon",
    "add_task",
    "submit",
];

/// The file's task hits (once per file: both C3 task detectors read them).
struct TaskHits(Vec<TaskHit>);

fn task_hits<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> std::rc::Rc<TaskHits> {
    ctx.memo(root, || TaskHits(task_hits_of(ctx, root)))
}

fn task_hits_of<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<TaskHit> {
    let mut hits = Vec::new();
    let imports = ctx.imports(root);
    for func in ctx.of_kind(root, "function_definition").iter() {
        // The facts walk the whole body: only for functions that make one of the calls looked at.
        let text = func.text();
        if !TASK_CALLS.iter().any(|c| text.contains(c)) {
            continue;
        }
        let facts = FuncFacts::new(func);
        let sessions = session_vars(&facts);
        if sessions.is_empty() {
            continue;
        }
        let func_start = func.range().start;
        let mut spawned: Vec<(PyNode<'_>, String, bool)> = Vec::new();
        for call in facts.nodes.iter().filter(|n| n.kind() == "call") {
            if has_error(call) {
                continue;
            }
            let callee = last_segment(call, &imports);
            match callee.as_str() {
                "gather" | "wait" | "as_completed" => {
                    let coros = gathered(call, &imports);
                    for s in &sessions {
                        let n: usize = coros
                            .iter()
                            .filter(|(c, _)| session_args(c, &sessions).contains(s))
                            .map(|(_, w)| w)
                            .sum();
                        if n >= 2 {
                            hits.push(TaskHit {
                                range: call.range(),
                                shared: true,
                                message: format!(
                                    "`{}` runs coroutines concurrently that all use the same database session `{s}`: \
                                     a session is not safe for concurrent use (interleaved statements in one \
                                     transaction, `This session is provisioning a new connection; concurrent operations \
                                     are not permitted`); give each coroutine its own session from the sessionmaker",
                                    shorten(&call.text(), Cut::STATEMENT)
                                ),
                            });
                            break;
                        }
                    }
                }
                "create_task" | "ensure_future" | "start_soon" => {
                    // A task started inside gather(...) is reported with the gather.
                    if call.parent().and_then(|p| p.parent()).is_some_and(|pp| {
                        pp.kind() == "call" && last_segment(&pp, &imports) == "gather"
                    }) {
                        continue;
                    }
                    let Some(coro) = call
                        .field("arguments")
                        .and_then(|a| a.children().find(|c| c.is_named()))
                    else {
                        continue;
                    };
                    let used = if coro.kind() == "call" {
                        session_args(&coro, &sessions)
                    } else {
                        // `tg.start_soon(fn, session, ...)`
                        session_args(call, &sessions)
                    };
                    if let Some(s) = used.into_iter().next() {
                        spawned.push((call.clone(), s, in_loop(call, func_start)));
                    }
                }
                "add_task" => {
                    if let Some(s) = session_args(call, &sessions).into_iter().next() {
                        hits.push(TaskHit {
                            range: call.range(),
                            shared: false,
                            message: format!(
                                "`{}` hands the request's database session `{s}` to a background task that runs after \
                                 the response, when the request's session scope has ended; open a new session inside \
                                 the task",
                                shorten(&call.text(), Cut::STATEMENT)
                            ),
                        });
                    }
                }
                "submit" => {
                    if in_loop(call, func_start)
                        && let Some(s) = session_args(call, &sessions).into_iter().next()
                    {
                        hits.push(TaskHit {
                            range: call.range(),
                            shared: true,
                            message: format!(
                                "`{}` submits work in a loop that all shares the database session `{s}` across \
                                 threads: a session is not thread-safe; open one per worker",
                                shorten(&call.text(), Cut::STATEMENT)
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        for (call, s, looped) in &spawned {
            let same = spawned.iter().filter(|(_, o, _)| o == s).count();
            let shared = *looped || same >= 2;
            let message = if shared {
                format!(
                    "`{}` starts tasks that run concurrently and all use the same database session `{s}`: a session \
                     is not safe for concurrent use; give each task its own session from the sessionmaker",
                    shorten(&call.text(), Cut::STATEMENT)
                )
            } else {
                format!(
                    "`{}` gives the database session `{s}` to a task that runs concurrently with this coroutine and \
                     may outlive the request that owns the session; open a new session inside the task",
                    shorten(&call.text(), Cut::STATEMENT)
                )
            };
            hits.push(TaskHit {
                range: call.range(),
                shared,
                message,
            });
        }
    }
    hits
}

impl Check for SessionSharedAcrossTasks {
    fn id(&self) -> &'static str {
        "c3-session-shared-across-tasks"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &[
            "gather",
            "create_task",
            "ensure_future",
            "start_soon",
            "asyncio.wait",
            "as_completed",
            "submit",
        ]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        out.extend(
            task_hits(ctx, root)
                .0
                .iter()
                .filter(|h| h.shared)
                .map(|h| CheckMatch {
                    fix: None,
                    range: h.range.clone(),
                    message: Some(h.message.clone()),
                }),
        );
    }
}

impl Check for SessionPassedToTask {
    fn id(&self) -> &'static str {
        "c3-session-passed-to-task"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["create_task", "ensure_future", "start_soon", "add_task"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        out.extend(
            task_hits(ctx, root)
                .0
                .iter()
                .filter(|h| !h.shared)
                .map(|h| CheckMatch {
                    fix: None,
                    range: h.range.clone(),
                    message: Some(h.message.clone()),
                }),
        );
    }
}

/// Does the file import `Session`/`AsyncSession` from SQLAlchemy or SQLModel (so a bare `Session(...)` is one)?
/// (`from sqlalchemy.orm import Session as DbSession` counts: callees are read with the alias undone.)
fn imports_orm_session(imports: &Imports) -> bool {
    imports.bindings().iter().any(|b| {
        (b.module.starts_with("sqlalchemy") || b.module.starts_with("sqlmodel"))
            && matches!(b.name.as_deref(), Some("Session" | "AsyncSession"))
    })
}

/// Is this call one that opens a database session (rather than a factory or an HTTP session)?
fn opens_session(call: &PyNode<'_>, imports: &Imports, orm_session_imported: bool) -> bool {
    let Some(f) = call.field("function") else {
        return false;
    };
    let callee = imports.unalias(&squash(&f.text()));
    // `sessionmaker(bind=engine)()`
    if f.kind() == "call" {
        return callee.starts_with("sessionmaker(") || callee.starts_with("async_sessionmaker(");
    }
    // `next(get_db())`
    if callee == "next" {
        return call
            .field("arguments")
            .and_then(|a| a.children().find(|c| c.is_named()))
            .is_some_and(|inner| {
                inner.kind() == "call" && {
                    let l = last_segment(&inner, imports).to_ascii_lowercase();
                    l == "get_db" || l == "get_session" || l == "get_db_session"
                }
            });
    }
    let (prefix, last) = match callee.rsplit_once('.') {
        Some((p, l)) => (p.to_string(), l.to_string()),
        None => (String::new(), callee.clone()),
    };
    let has_args = call
        .field("arguments")
        .is_some_and(|a| a.children().any(|c| c.is_named()));
    match last.as_str() {
        "SessionLocal"
        | "AsyncSessionLocal"
        | "async_session"
        | "async_session_maker"
        | "async_session_factory"
        | "session_factory"
        | "SessionFactory"
        | "session_local"
        | "async_session_local" => !has_args,
        "Session" | "AsyncSession" => {
            if prefix.is_empty() {
                orm_session_imported
            } else {
                matches!(
                    prefix.as_str(),
                    "orm"
                        | "sa.orm"
                        | "sqlalchemy.orm"
                        | "sqlmodel"
                        | "asyncio"
                        | "sqlalchemy.ext.asyncio"
                )
            }
        }
        _ => false,
    }
}

impl Check for ModuleLevelSession {
    fn id(&self) -> &'static str {
        "c3-module-level-session"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["Session", "session", "get_db"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        let imported = imports_orm_session(&imports);
        for a in ctx.of_kind(root, "assignment").iter() {
            if enclosing_function(a).is_some() || in_main_guard(a) {
                continue;
            }
            let Some(right) = a.field("right") else {
                continue;
            };
            if right.kind() != "call" || !opens_session(&right, &imports, imported) || has_error(a)
            {
                continue;
            }
            let target = a
                .field("left")
                .map(|l| l.text().to_string())
                .unwrap_or_default();
            out.push(CheckMatch {
                fix: None,
                range: a.range(),
                message: Some(format!(
                    "`{}` opens one database session at import time that every request and task of this process then \
                     shares: concurrent requests interleave statements in one transaction, one request's rollback \
                     discards another's writes; open a session per request (`Depends(get_db)`) or per task instead of \
                     using `{target}`",
                    shorten(&a.text(), Cut::STATEMENT)
                )),
            });
        }
    }
}

impl Check for SessionOnInstance {
    fn id(&self) -> &'static str {
        "c3-session-on-instance"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["__init__"]
    }
    /// Every way `opens_session` recognises names a session (`Session`, `SessionLocal`, `async_session…`,
    /// `sessionmaker`) or `get_db`.
    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[&["ession", "get_db"]]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        let imported = imports_orm_session(&imports);
        for func in ctx
            .of_kind(root, "function_definition")
            .iter()
            .filter(|f| function_name(f).as_deref() == Some("__init__"))
        {
            // Only an `__init__` that names a session can open one (`opens_session`).
            let text = func.text();
            if !(text.contains("ession") || text.contains("get_db")) {
                continue;
            }
            let facts = FuncFacts::new(func);
            for a in facts.nodes.iter().filter(|n| n.kind() == "assignment") {
                let (Some(left), Some(right)) = (a.field("left"), a.field("right")) else {
                    continue;
                };
                if left.kind() != "attribute"
                    || left.field("object").is_none_or(|o| o.text() != "self")
                    || right.kind() != "call"
                    || !opens_session(&right, &imports, imported)
                {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: a.range(),
                    message: Some(format!(
                        "`{}` opens a database session when the object is constructed and keeps it for the object's \
                         lifetime: if the instance is shared (a module-level service, a cached dependency) every \
                         request uses this one session (lower confidence: fine if each instance serves one request \
                         and closes it)",
                        shorten(&a.text(), Cut::STATEMENT)
                    )),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_session_types() {
        assert!(is_db_session_type("AsyncSession"));
        assert!(is_db_session_type(
            "Annotated[AsyncSession, Depends(get_db)]"
        ));
        assert!(is_db_session_type("SessionDep"));
        assert!(is_db_session_type("DbSession"));
        assert!(!is_db_session_type("ClientSession"));
        assert!(!is_db_session_type("aiohttp.ClientSession"));
        assert!(!is_db_session_type("ChatSession"));
        assert!(!is_db_session_type("async_sessionmaker[AsyncSession]"));
    }
}
