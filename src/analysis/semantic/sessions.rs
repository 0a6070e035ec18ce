//! Which attributes of a class hold a synchronous SQLAlchemy `Session`, across the repository's modules: a
//! controller or service whose base class (often in another module) keeps the request's session on `self`
//! (`def __init__(self, db: Session): self.db = db`, or a class-level `db: Session`). Read from each file's text
//! line by line (the repository model reads every Python file once); the check of `async def` methods then knows
//! that `self.db.query(…)` blocks the event loop.

use super::python::text::class_bases;
use std::collections::{HashMap, HashSet};

/// Classes read per file, at most.
const MAX_CLASSES_PER_FILE: usize = 1_000;
/// Lines of a class header or an `__init__` signature joined, at most.
const MAX_HEADER_LINES: usize = 20;
/// Levels of base classes followed.
const MAX_BASE_DEPTH: usize = 8;

/// One class of a file: its bases (as written, last dotted part) and the attributes it declares that hold a
/// synchronous session.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClassSessions {
    pub class: String,
    pub bases: Vec<String>,
    pub attrs: Vec<String>,
}

/// The type an annotation names, without `Annotated[…, …]`, `Optional[…]`, `| None` or spaces:
/// `Annotated[Session, Depends(get_db)]` → `Session`, `orm.Session | None` → `orm.Session`.
pub fn annotated_type(annotation: &str) -> String {
    let t: String = annotation.chars().filter(|c| !c.is_whitespace()).collect();
    let inner = t
        .strip_prefix("Annotated[")
        .and_then(|rest| rest.split(',').next())
        .unwrap_or(&t);
    let inner = inner.trim_start_matches("Optional[").trim_end_matches(']');
    inner.split('|').next().unwrap_or(inner).to_string()
}

/// Annotation texts that name the synchronous SQLAlchemy session class (`Session`, `Optional[Session]`,
/// `Annotated[Session, Depends(get_db)]`, `Session | None`, `orm.Session`).
pub fn is_sync_session_type(annotation: &str) -> bool {
    matches!(
        annotated_type(annotation).as_str(),
        "Session" | "orm.Session" | "sqlalchemy.orm.Session" | "sa.orm.Session"
    )
}

/// The classes of one file, with the attributes that hold a synchronous session (see the module doc). Only files
/// that name `Session` can declare one; every class is kept (with its bases) so that a subclass elsewhere can
/// inherit through it.
pub fn class_sessions(text: &str) -> Vec<ClassSessions> {
    let mut out: Vec<ClassSessions> = Vec::new();
    if !text.contains("class ") {
        return out;
    }
    let names_session = text.contains("Session");
    let lines: Vec<&str> = text.lines().collect();
    // The class being read: its index in `out`, its indentation and its body's (set by the first body line).
    let mut current: Option<(usize, usize, Option<usize>)> = None;
    // Inside the class's `__init__`: the def's indentation and its session parameters.
    let mut init: Option<(usize, Vec<String>)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = line.len() - t.len();
        if init.as_ref().is_some_and(|(d, _)| indent <= *d) {
            init = None;
        }
        if current.is_some_and(|(_, d, _)| indent <= d) {
            current = None;
        }
        if let Some(rest) = t.strip_prefix("class ") {
            if out.len() >= MAX_CLASSES_PER_FILE {
                break;
            }
            let mut header = rest.to_string();
            let mut extra = 0;
            while balance(&header) > 0 && extra < MAX_HEADER_LINES && i < lines.len() {
                header.push(' ');
                header.push_str(lines[i].trim());
                i += 1;
                extra += 1;
            }
            let name: String = header
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name.is_empty() {
                continue;
            }
            let bases = class_bases(&header[name.len()..])
                .into_iter()
                .map(|b| b.rsplit('.').next().unwrap_or(&b).to_string())
                .filter(|b| b != "object")
                .collect();
            out.push(ClassSessions {
                class: name,
                bases,
                attrs: Vec::new(),
            });
            current = Some((out.len() - 1, indent, None));
            init = None;
            continue;
        }
        let Some((k, _, body)) = current.as_mut().map(|(k, d, b)| (*k, *d, b)) else {
            continue;
        };
        let body_indent = *body.get_or_insert(indent);
        if !names_session {
            continue;
        }
        // A class-level annotation: `db: Session` / `session: Session = None`.
        if indent == body_indent
            && let Some((name, ann)) = t.split_once(':')
            && is_identifier(name.trim())
            && !t.starts_with("def ")
            && !t.starts_with("async def ")
        {
            let ann = ann.split('=').next().unwrap_or("");
            if is_sync_session_type(ann) {
                push_attr(&mut out[k].attrs, name.trim());
            }
            continue;
        }
        if indent == body_indent
            && let Some(sig) = t.strip_prefix("def __init__(")
        {
            let mut sig = sig.to_string();
            let mut extra = 0;
            while balance(&format!("({sig}")) > 0 && extra < MAX_HEADER_LINES && i < lines.len() {
                sig.push(' ');
                sig.push_str(lines[i].trim());
                i += 1;
                extra += 1;
            }
            let params: Vec<String> = split_top_level(&sig)
                .into_iter()
                .filter_map(|p| {
                    let (name, ann) = p.split_once(':')?;
                    let ann = ann.split('=').next().unwrap_or("");
                    (is_identifier(name.trim()) && is_sync_session_type(ann))
                        .then(|| name.trim().to_string())
                })
                .collect();
            init = Some((indent, params));
            continue;
        }
        // In `__init__`: `self.db = db` for a session parameter, or `self.db: Session = …`.
        if let Some((_, params)) = &init
            && let Some(rest) = t.strip_prefix("self.")
        {
            let attr: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let after = rest[attr.len()..].trim_start();
            let holds = if let Some(value) = after.strip_prefix('=') {
                let value = value.trim();
                !value.starts_with('=') && params.iter().any(|p| p == value)
            } else if let Some(ann) = after.strip_prefix(':') {
                is_sync_session_type(ann.split('=').next().unwrap_or(""))
            } else {
                false
            };
            if holds && !attr.is_empty() {
                push_attr(&mut out[k].attrs, &attr);
            }
        }
    }
    out
}

/// Every class's session attributes, its own and those its bases declare (by class name, up to
/// [`MAX_BASE_DEPTH`] levels; classes of the same name in several modules are taken together). Only classes with
/// at least one are kept.
pub fn inherited_session_attrs<'a>(
    classes: impl IntoIterator<Item = &'a ClassSessions>,
) -> HashMap<String, Vec<String>> {
    let mut by_name: HashMap<&str, Vec<&ClassSessions>> = HashMap::new();
    for c in classes {
        by_name.entry(c.class.as_str()).or_default().push(c);
    }
    let mut out = HashMap::new();
    for name in by_name.keys() {
        let mut attrs: Vec<String> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        let mut frontier: Vec<&str> = vec![name];
        for _ in 0..=MAX_BASE_DEPTH {
            let mut next = Vec::new();
            for n in frontier {
                if !seen.insert(n) {
                    continue;
                }
                for c in by_name.get(n).into_iter().flatten() {
                    for a in &c.attrs {
                        push_attr(&mut attrs, a);
                    }
                    next.extend(c.bases.iter().map(String::as_str));
                }
            }
            if next.is_empty() {
                break;
            }
            frontier = next;
        }
        if !attrs.is_empty() {
            attrs.sort();
            out.insert(name.to_string(), attrs);
        }
    }
    out
}

fn push_attr(attrs: &mut Vec<String>, a: &str) {
    if !attrs.iter().any(|x| x == a) {
        attrs.push(a.to_string());
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Opening minus closing brackets (strings are not told apart: an estimate).
fn balance(s: &str) -> i32 {
    s.chars().fold(0, |n, c| match c {
        '(' | '[' => n + 1,
        ')' | ']' => n - 1,
        _ => n,
    })
}

/// The parameters of a signature (the text after `(`), split at top-level commas, up to the closing parenthesis.
fn split_top_level(sig: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (at, c) in sig.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ']' | '}' => depth -= 1,
            ')' if depth == 0 => {
                parts.push(&sig[start..at]);
                return parts;
            }
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&sig[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&sig[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_attributes_of_classes_and_their_bases() {
        let base = "from sqlalchemy.orm import Session\n\n\nclass BaseController:\n    def __init__(\n        self,\n        db: Session,\n        user_id: int | None = None,\n    ):\n        self.db = db\n        self.user_id = user_id\n\n\nclass Repo:\n    session: Session\n\n    def __init__(self, other):\n        self.other = other\n";
        let child = "from app.base import BaseController\n\n\nclass ChatController(base.BaseController):\n    async def list(self):\n        return self.db.query(Chat).all()\n\n\nclass Plain:\n    def __init__(self, db):\n        self.db = db\n";
        let b = class_sessions(base);
        assert_eq!(b[0].class, "BaseController");
        assert_eq!(b[0].attrs, ["db"]);
        assert_eq!(b[1].attrs, ["session"]);
        let c = class_sessions(child);
        assert_eq!(c[0].bases, ["BaseController"]);
        assert!(c[0].attrs.is_empty() && c[1].attrs.is_empty(), "{c:?}");
        let all: Vec<ClassSessions> = b.into_iter().chain(c).collect();
        let inherited = inherited_session_attrs(&all);
        assert_eq!(inherited["ChatController"], ["db"]);
        assert_eq!(inherited["Repo"], ["session"]);
        assert!(
            !inherited.contains_key("Plain"),
            "an unannotated parameter says nothing"
        );
        // A local annotated inside a method is not the class's.
        let local =
            "class Svc:\n    def run(self):\n        db: Session = make()\n        return db\n";
        assert!(class_sessions(local)[0].attrs.is_empty());
        // An AsyncSession is not one; a cycle of bases ends.
        let asynchronous = "class A(B):\n    def __init__(self, db: AsyncSession):\n        self.db = db\n\nclass B(A):\n    pass\n";
        assert!(inherited_session_attrs(&class_sessions(asynchronous)).is_empty());
        // Hostile input: an unclosed header at the end of the file.
        assert_eq!(class_sessions("class X(Session,\n").len(), 1);
        assert!(
            class_sessions("class Y:\n    def __init__(self, db: Session")
                .iter()
                .all(|c| c.attrs.is_empty())
        );
    }
}
