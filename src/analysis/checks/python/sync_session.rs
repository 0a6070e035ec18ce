//! C5: a synchronous SQLAlchemy `Session` used inside `async def`.
//!
//! `db: Session = Depends(get_db)` in an `async def` endpoint runs every query on the event loop thread: while
//! the database answers, no other request of this worker makes progress. A method call on the session
//! (`db.query(...)`, `db.execute(...)`, `db.commit()`) or handing it to a helper (`crud.get_user(db, ...)`)
//! both block. So does a session opened with a plain `with` in the coroutine (`with Session(engine) as db:`,
//! `with SessionLocal() as db:`): a plain `with` cannot open an `AsyncSession`. In-memory session methods
//! (`add`, `expunge`, `expire`) are not reported, nor is start-up code (`lifespan`).

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::scopes::{OwnNodes, is_module_level, own_nodes};
use crate::analysis::semantic::python::syntax::{dotted, has_error, is_async_def, is_awaited};
use crate::analysis::semantic::sessions::{class_sessions, is_sync_session_type};

pub struct SyncSessionInAsync;

/// Names of the parameters of `func` annotated as a sync `Session`.
fn session_params(func: &PyNode<'_>) -> Vec<String> {
    let Some(params) = func.field("parameters") else {
        return Vec::new();
    };
    params
        .children()
        .filter(|p| {
            matches!(
                p.kind().as_ref(),
                "typed_parameter" | "typed_default_parameter"
            )
        })
        .filter_map(|p| {
            let ty = p.field("type")?;
            if !is_sync_session_type(&ty.text()) {
                return None;
            }
            // typed_parameter has its name as the first child; typed_default_parameter in `name`.
            let name = p.field("name").or_else(|| p.child(0))?;
            (name.kind() == "identifier").then(|| name.text().to_string())
        })
        .collect()
}

/// Session methods that never talk to the database: staging and bookkeeping in memory.
fn is_in_memory_method(m: &str) -> bool {
    matches!(
        m,
        "add"
            | "add_all"
            | "expunge"
            | "expunge_all"
            | "expire"
            | "expire_all"
            | "is_modified"
            | "in_transaction"
            | "in_nested_transaction"
            | "get_bind"
            | "get_transaction"
            | "get_nested_transaction"
            | "enable_relationship_loading"
    )
}

/// Does a plain (not `async`) `with <call> as name:` open a synchronous SQLAlchemy session? `Session(engine)`,
/// `SessionLocal()`, a module-level `sessionmaker(...)` of this file, or a factory named like one
/// (`get_session_with_tenant()`, `get_db_session()`, `session_scope()`). A plain `with` cannot open an
/// `AsyncSession`, so what it opens is synchronous; the name says it is a database session.
fn opens_sync_session(value: &PyNode<'_>, imports: &Imports, makers: &[String]) -> bool {
    if value.kind() != "call" {
        return false;
    }
    let Some(name) = value.field("function").and_then(|f| dotted(&f)) else {
        return false;
    };
    let resolved = imports.resolve(&name);
    let first = resolved.split('.').next().unwrap_or("");
    if matches!(
        first,
        "requests" | "httpx" | "aiohttp" | "neo4j" | "tensorflow" | "boto3" | "botocore"
    ) {
        return false;
    }
    if makers.contains(&name) {
        return true;
    }
    let last = name.rsplit('.').next().unwrap_or("");
    if last.to_ascii_lowercase().contains("async") {
        return false;
    }
    last == "Session"
        || last.ends_with("SessionLocal")
        || last == "session_scope"
        || (last.starts_with("get_") && last.contains("session"))
        || last.contains("db_session")
}

/// Module-level names bound to a synchronous `sessionmaker(...)`.
fn sync_session_makers<'r>(
    ctx: &FileContext<'r>,
    root: &PyNode<'r>,
    imports: &Imports,
) -> Vec<String> {
    ctx.of_kind(root, "assignment")
        .iter()
        .filter(|n| is_module_level(n))
        .filter_map(|a| {
            let left = a.field("left")?;
            let right = a.field("right")?;
            if right.kind() != "call" {
                return None;
            }
            let callee = imports.resolve(&dotted(&right.field("function")?)?);
            let sync = callee.ends_with("orm.sessionmaker") || callee == "sessionmaker";
            let to_async = right.text().contains("AsyncSession");
            (sync && !to_async && left.kind() == "identifier").then(|| left.text().to_string())
        })
        .collect()
}

/// Names bound by `with <sync session> as name:` in the function's own body.
fn with_sessions(func: &PyNode<'_>, imports: &Imports, makers: &[String]) -> Vec<String> {
    own_nodes(func, OwnNodes::BodyNamed)
        .into_iter()
        .filter(|n| n.kind() == "with_statement" && !n.children().any(|c| c.kind() == "async"))
        .flat_map(|w| {
            w.dfs()
                .filter(|n| n.kind() == "as_pattern")
                .filter_map(|p| {
                    let value = p.child(0)?;
                    if !opens_sync_session(&value, imports, makers) {
                        return None;
                    }
                    let target = p.field("alias")?.child(0)?;
                    (target.kind() == "identifier").then(|| target.text().to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

impl Check for SyncSessionInAsync {
    fn id(&self) -> &'static str {
        "sync-session-in-async"
    }

    fn tokens(&self) -> &'static [&'static str] {
        // `self`: a method may use a session its base class, in another module, keeps on `self`.
        &["Session", "session", "self"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = Imports::of_file(ctx, root);
        let makers = sync_session_makers(ctx, root, &imports);
        // The file's classes, read only when some `async def` method uses an attribute of `self`.
        let mut own_classes = None;
        // Parameters and `with` blocks can hold a session only where the file names one.
        let names_session = {
            let text = root.text();
            text.contains("Session") || text.contains("session")
        };
        for func in ctx
            .of_kind(root, "function_definition")
            .iter()
            .filter(|n| is_async_def(n))
        {
            let (params, opened) = if names_session {
                (session_params(func), with_sessions(func, &imports, &makers))
            } else {
                (Vec::new(), Vec::new())
            };
            // `self.db` of a method whose class, or a base class in any module, keeps a synchronous session there.
            let held: Vec<String> = match method_class(func) {
                Some(class) if func.text().contains("self.") => {
                    let own = own_classes.get_or_insert_with(|| class_sessions(&root.text()));
                    ctx.repo
                        .session_attrs(own, &class)
                        .into_iter()
                        .map(|a| format!("self.{a}"))
                        .collect()
                }
                _ => Vec::new(),
            };
            if params.is_empty() && opened.is_empty() && held.is_empty() {
                continue;
            }
            for node in own_nodes(func, OwnNodes::BodyNamed) {
                if node.kind() != "call" || has_error(&node) {
                    continue;
                }
                if let Some(hit) = session_use(&node, &params, "")
                    .or_else(|| session_use(&node, &opened, " opened with `with`"))
                    .or_else(|| {
                        session_use(
                            &node,
                            &held,
                            " that the class or a base class keeps on `self`",
                        )
                    })
                {
                    out.push(CheckMatch {
                        fix: None,
                        range: node.range(),
                        message: Some(hit),
                    });
                }
            }
        }
    }
}

/// The class whose body defines `func` directly (a method), by name.
fn method_class(func: &PyNode<'_>) -> Option<String> {
    let mut up = func.parent()?;
    if up.kind() == "decorated_definition" {
        up = up.parent()?;
    }
    if up.kind() != "block" {
        return None;
    }
    let class = up.parent()?;
    if class.kind() != "class_definition" {
        return None;
    }
    Some(class.field("name")?.text().to_string())
}

/// If this call uses one of the session names, say how.
fn session_use(call: &PyNode<'_>, names: &[String], how: &str) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    // An awaited call means it is not the sync Session after all (e.g. a mis-annotated AsyncSession).
    if is_awaited(call) {
        return None;
    }
    let func = call.field("function")?;
    if func.kind() == "attribute"
        && let Some(obj) = func.field("object")
        && matches!(obj.kind().as_ref(), "identifier" | "attribute")
        && names.iter().any(|n| *n == obj.text())
    {
        let attr = func
            .field("attribute")
            .map(|a| a.text().to_string())
            .unwrap_or_default();
        if is_in_memory_method(&attr) {
            return None;
        }
        return Some(format!(
            "`{}.{attr}(…)` runs a blocking database call on the event loop: `{}` is a synchronous SQLAlchemy `Session`{how} inside `async def` (medium: each query holds the loop for its round trip; high on a hot path)",
            obj.text(),
            obj.text()
        ));
    }
    let args = call.field("arguments")?;
    for arg in args.children() {
        let value = if arg.kind() == "keyword_argument" {
            arg.field("value")
        } else {
            Some(arg)
        };
        if let Some(v) = value
            && matches!(v.kind().as_ref(), "identifier" | "attribute")
            && names.iter().any(|n| *n == v.text())
        {
            // Handed to a thread, not called here.
            let callee = dotted(&func).unwrap_or_default();
            let last = callee.rsplit('.').next().unwrap_or("");
            if matches!(
                last,
                "to_thread" | "run_in_executor" | "run_in_threadpool" | "run_sync" | "submit"
            ) {
                return None;
            }
            return Some(format!(
                "`{}(…)` is handed the synchronous SQLAlchemy `Session` `{}`{how} inside `async def`: its queries block the event loop (medium: each query holds the loop for its round trip; high on a hot path)",
                func.text(),
                v.text()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_session_annotations() {
        assert!(is_sync_session_type("Session"));
        assert!(is_sync_session_type("Annotated[Session, Depends(get_db)]"));
        assert!(is_sync_session_type("orm.Session"));
        assert!(is_sync_session_type("Optional[Session]"));
        assert!(!is_sync_session_type("AsyncSession"));
        assert!(!is_sync_session_type(
            "Annotated[AsyncSession, Depends(get_db)]"
        ));
        assert!(!is_sync_session_type("ClientSession"));
    }
}
