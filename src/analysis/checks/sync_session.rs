//! C5: a synchronous SQLAlchemy `Session` used inside `async def`.
//!
//! `db: Session = Depends(get_db)` in an `async def` endpoint runs every query on the event loop thread: while
//! the database answers, no other request of this worker makes progress. A method call on the session
//! (`db.query(...)`, `db.execute(...)`, `db.commit()`) or handing it to a helper (`crud.get_user(db, ...)`)
//! both block.

use super::{Check, CheckMatch, PyNode, is_async_def};

pub struct SyncSessionInAsync;

/// Annotation texts that name the synchronous session class.
fn is_sync_session_type(annotation: &str) -> bool {
    let t: String = annotation.chars().filter(|c| !c.is_whitespace()).collect();
    let inner = t
        .strip_prefix("Annotated[")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or(&t);
    let inner = inner.trim_start_matches("Optional[").trim_end_matches(']');
    let inner = inner.split('|').next().unwrap_or(inner);
    matches!(
        inner,
        "Session" | "orm.Session" | "sqlalchemy.orm.Session" | "sa.orm.Session"
    )
}

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

impl Check for SyncSessionInAsync {
    fn id(&self) -> &'static str {
        "sync-session-in-async"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["Session"]
    }

    fn run(&self, root: &PyNode<'_>, out: &mut Vec<CheckMatch>) {
        for func in root.dfs().filter(is_async_def) {
            let names = session_params(&func);
            if names.is_empty() {
                continue;
            }
            let Some(body) = func.field("body") else {
                continue;
            };
            let mut stack: Vec<PyNode<'_>> = body.children().collect();
            while let Some(node) = stack.pop() {
                let kind = node.kind();
                // Nested functions and lambdas run elsewhere (often in a thread): not this coroutine's body.
                if matches!(
                    kind.as_ref(),
                    "function_definition" | "lambda" | "class_definition"
                ) {
                    continue;
                }
                if kind == "call"
                    && let Some(hit) = session_use(&node, &names)
                {
                    out.push(CheckMatch {
                        range: node.range(),
                        message: Some(hit),
                    });
                }
                stack.extend(node.children());
            }
        }
    }
}

/// If this call uses one of the session names, say how.
fn session_use(call: &PyNode<'_>, names: &[String]) -> Option<String> {
    let func = call.field("function")?;
    if func.kind() == "attribute"
        && let Some(obj) = func.field("object")
        && obj.kind() == "identifier"
        && names.iter().any(|n| *n == obj.text())
    {
        // An awaited call on it means it is not the sync Session after all (e.g. a mis-annotated AsyncSession).
        if call.parent().is_some_and(|p| p.kind() == "await") {
            return None;
        }
        let attr = func
            .field("attribute")
            .map(|a| a.text().to_string())
            .unwrap_or_default();
        return Some(format!(
            "`{}.{attr}(…)` runs a blocking database call on the event loop: `{}` is a synchronous SQLAlchemy `Session` inside `async def`",
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
            && v.kind() == "identifier"
            && names.iter().any(|n| *n == v.text())
        {
            if call.parent().is_some_and(|p| p.kind() == "await") {
                return None;
            }
            return Some(format!(
                "`{}(…)` is handed the synchronous SQLAlchemy `Session` `{}` inside `async def`: its queries block the event loop",
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
