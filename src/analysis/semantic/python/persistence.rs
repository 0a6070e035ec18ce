//! Persistence facts: database sessions, queries, counter writes on loaded rows, and the sync database drivers
//! a file uses.

use super::scopes::{OwnNodes, own_nodes};
use super::syntax::{function_name, strip_parens, var_attr};
use super::text::{Cut, shorten};
use crate::analysis::nodes::PyNode;

/// An update of `var.attr` computed from its own current value.
pub struct CounterWrite {
    pub var: String,
    pub attr: String,
    /// The statement, on one line and shortened.
    pub text: String,
}

/// `x.n += d`, `x.n -= d`, `x.n = x.n + d`, `x.n = (x.n or 0) + d` on a plain variable `x` (not `self`/`cls`).
pub fn counter_write(node: &PyNode<'_>) -> Option<CounterWrite> {
    let (left, right) = match node.kind().as_ref() {
        "augmented_assignment" => {
            let op = node.field("operator")?;
            if !matches!(op.text().as_ref(), "+=" | "-=") {
                return None;
            }
            (node.field("left")?, node.field("right")?)
        }
        "assignment" => (node.field("left")?, node.field("right")?),
        _ => return None,
    };
    let (var, attr) = var_attr(&left)?;
    if var == "self" || var == "cls" {
        return None;
    }
    if has_string(&right) {
        return None;
    }
    if node.kind() == "assignment" {
        let rhs = strip_parens(&right);
        if rhs.kind() != "binary_operator" {
            return None;
        }
        let op = rhs.field("operator")?;
        if !matches!(op.text().as_ref(), "+" | "-") {
            return None;
        }
        let target = left.text();
        let refers = |side: Option<PyNode<'_>>| {
            side.is_some_and(|s| {
                let s = strip_parens(&s);
                if s.text() == target {
                    return true;
                }
                // `(x.n or 0)`
                s.kind() == "boolean_operator"
                    && s.field("left").is_some_and(|l| l.text() == target)
            })
        };
        if !refers(rhs.field("left")) && !refers(rhs.field("right")) {
            return None;
        }
    }
    Some(CounterWrite {
        var,
        attr,
        text: shorten(&node.text(), Cut::STATEMENT),
    })
}

/// Strings and containers: `+=` on those is concatenation, not a counter.
pub fn has_string(node: &PyNode<'_>) -> bool {
    node.dfs().any(|n| {
        matches!(
            n.kind().as_ref(),
            "string"
                | "concatenated_string"
                | "list"
                | "tuple"
                | "dictionary"
                | "set"
                | "list_comprehension"
                | "dictionary_comprehension"
                | "set_comprehension"
        )
    })
}

/// Where a variable's object came from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A query in this function (`session.get(M, id)`, `….scalar_one()`, `session.query(M)….first()`, a loop
    /// over `….scalars()`): the text of the loading expression.
    Query(String),
    /// A function parameter.
    Param,
    /// A call we cannot see into (a helper or repository method): its callee.
    Helper(String),
    /// A constructor, a literal, or unknown.
    Other,
}

/// Lower-case name of a variable or the last segment of an attribute chain looks like a database session.
pub fn is_session_name(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
    if [
        "maker", "factory", "client", "http", "chat", "user", "browser", "ws",
    ]
    .iter()
    .any(|w| last.contains(w))
    {
        return false;
    }
    last == "db"
        || last == "sess"
        || last == "uow"
        || last.ends_with("session")
        || last.starts_with("db_")
        || last.ends_with("_db")
}

/// Methods whose result is rows or ORM objects loaded from the database.
pub const QUERY_METHODS: &[&str] = &[
    "scalar_one",
    "scalar_one_or_none",
    "scalar",
    "scalars",
    "one",
    "one_or_none",
    "first",
    "get_one",
    "query",
];

/// Is this expression a database load whose text we can see (rather than a helper call)?
pub fn is_query_expr(expr: &PyNode<'_>) -> bool {
    expr.dfs().filter(|n| n.kind() == "call").any(|call| {
        let Some(f) = call.field("function") else {
            return false;
        };
        if f.kind() != "attribute" {
            return false;
        }
        let method = f
            .field("attribute")
            .map(|a| a.text().to_string())
            .unwrap_or_default();
        if QUERY_METHODS.contains(&method.as_str()) {
            return true;
        }
        // Flask-SQLAlchemy: `Model.query.get(id)`, `Model.query.get_or_404(id)`, `db.get_or_404(Model, id)`
        if matches!(
            method.as_str(),
            "get" | "get_or_404" | "first_or_404" | "one_or_404"
        ) && f
            .field("object")
            .is_some_and(|o| o.text().ends_with(".query"))
        {
            return true;
        }
        if matches!(method.as_str(), "first_or_404" | "one_or_404") {
            return true;
        }
        // `session.get(Model, id)`: the first argument is a mapped class.
        matches!(method.as_str(), "get" | "get_or_404")
            && f.field("object")
                .is_some_and(|o| is_session_name(&o.text()))
            && call
                .field("arguments")
                .and_then(|a| a.children().find(|c| c.is_named()))
                .is_some_and(|first| {
                    first
                        .text()
                        .rsplit('.')
                        .next()
                        .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
                })
    })
}

/// Facts about one function body (nested functions, lambdas and classes excluded).
pub struct FuncFacts<'r> {
    pub func: PyNode<'r>,
    /// The function's own nodes, in source order.
    pub nodes: Vec<PyNode<'r>>,
    /// Byte offsets and 1-based lines of `.commit()` / `.flush()` calls on a session-like receiver.
    pub commits: Vec<(usize, usize)>,
    params: Vec<String>,
}

impl<'r> FuncFacts<'r> {
    pub fn new(func: &PyNode<'r>) -> Self {
        let nodes = own_nodes(func, OwnNodes::BodyInOrder);
        let commits = nodes
            .iter()
            .filter(|n| n.kind() == "call")
            .filter_map(|call| {
                let f = call.field("function")?;
                let method = f.field("attribute")?;
                let obj = f.field("object")?;
                (f.kind() == "attribute"
                    && matches!(method.text().as_ref(), "commit" | "flush")
                    && is_session_name(&obj.text()))
                .then(|| (call.range().start, call.start_pos().line() + 1))
            })
            .collect();
        let params = func
            .field("parameters")
            .map(|ps| {
                ps.children()
                    .filter_map(|p| match p.kind().as_ref() {
                        "identifier" => Some(p.text().to_string()),
                        "typed_parameter" => p
                            .children()
                            .find(|c| c.kind() == "identifier")
                            .map(|c| c.text().to_string()),
                        "default_parameter" | "typed_default_parameter" => {
                            p.field("name").map(|c| c.text().to_string())
                        }
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        FuncFacts {
            func: func.clone(),
            nodes,
            commits,
            params,
        }
    }

    /// Does the function take a row lock or an advisory lock somewhere (so its author serialised the update)?
    pub fn locks_rows(&self) -> bool {
        let t = self.func.text();
        t.contains("for_update")
            || t.contains("FOR UPDATE")
            || t.contains("advisory")
            || t.contains("skip_locked")
            || function_name(&self.func).is_some_and(|n| n.contains("locked"))
    }

    /// Is the node inside a `with`/`async with` whose context manager is a lock?
    pub fn inside_lock(&self, node: &PyNode<'_>) -> bool {
        let end = self.func.range().start;
        node.ancestors()
            .take_while(|a| a.range().start >= end)
            .filter(|a| a.kind() == "with_statement")
            .any(|w| {
                w.children()
                    .find(|c| c.kind() == "with_clause")
                    .is_some_and(|c| c.text().to_ascii_lowercase().contains("lock"))
            })
    }

    /// The line of the first commit/flush after byte offset `pos`.
    pub fn commit_after(&self, pos: usize) -> Option<usize> {
        self.commits
            .iter()
            .find(|(off, _)| *off > pos)
            .map(|(_, line)| *line)
    }

    /// Like [`Self::commit_after`], also counting the active-record `var.save()` of Flask-SQLAlchemy-style models.
    pub fn commit_after_for(&self, var: &str, pos: usize) -> Option<usize> {
        let save = self
            .nodes
            .iter()
            .filter(|n| n.kind() == "call" && n.range().start > pos)
            .find(|call| {
                call.field("function").is_some_and(|f| {
                    f.kind() == "attribute"
                        && f.field("attribute").is_some_and(|a| a.text() == "save")
                        && f.field("object").is_some_and(|o| o.text() == var)
                })
            })
            .map(|c| (c.range().start, c.start_pos().line() + 1));
        let commit = self.commits.iter().find(|(off, _)| *off > pos).copied();
        match (save, commit) {
            (Some(a), Some(b)) => Some(if a.0 < b.0 { a.1 } else { b.1 }),
            (a, b) => a.or(b).map(|x| x.1),
        }
    }

    /// Where the object in `var`, as used at `at`, came from.
    pub fn source_of(&self, var: &str, at: &PyNode<'_>) -> Source {
        let pos = at.range().start;
        // A loop variable: the innermost enclosing `for var in …` of this function.
        let func_start = self.func.range().start;
        for a in at.ancestors().take_while(|a| a.range().start >= func_start) {
            if a.kind() == "for_statement"
                && a.field("left").is_some_and(|l| l.text() == var)
                && let Some(iter) = a.field("right")
            {
                return classify(&iter);
            }
        }
        // The assignments before `at`: a query in any branch wins (`x = q.first()` then `if x is None: x = M()`).
        let sources: Vec<Source> = self
            .nodes
            .iter()
            .filter(|n| n.kind() == "assignment" && n.range().start < pos)
            .filter(|n| n.field("left").is_some_and(|l| l.text() == var))
            .filter_map(|n| n.field("right"))
            .map(|rhs| classify(&rhs))
            .collect();
        if let Some(q) = sources.iter().find(|s| matches!(s, Source::Query(_))) {
            return q.clone();
        }
        if let Some(h) = sources.iter().find(|s| matches!(s, Source::Helper(_))) {
            return h.clone();
        }
        if !sources.is_empty() {
            return Source::Other;
        }
        if self.params.iter().any(|p| p == var) {
            return Source::Param;
        }
        Source::Other
    }

    /// For an object not loaded here: is there evidence it is a persisted ORM object (the function adds it to
    /// a session, or the helper that returned it was handed the session)?
    pub fn orm_evidence(&self, var: &str, source: &Source) -> bool {
        let added = self
            .nodes
            .iter()
            .filter(|n| n.kind() == "call")
            .any(|call| {
                let Some(f) = call.field("function") else {
                    return false;
                };
                f.kind() == "attribute"
                    && f.field("attribute").is_some_and(|m| m.text() == "add")
                    && f.field("object")
                        .is_some_and(|o| is_session_name(&o.text()))
                    && call.field("arguments").is_some_and(|args| {
                        args.children()
                            .filter(|c| c.is_named())
                            .any(|c| c.text() == var)
                    })
            });
        if added {
            return true;
        }
        match source {
            Source::Helper(h) => {
                let recv = h.rsplit_once('.').map(|(r, _)| r.to_string());
                // `repository.get_by_id(...)`, or a model classmethod `Topic.get_topic(...)`
                recv.as_deref().is_some_and(|r| {
                    let lower = r.to_ascii_lowercase();
                    let last = r.rsplit('.').next().unwrap_or(r);
                    lower.ends_with("repository")
                        || lower.ends_with("repo")
                        || last.starts_with(|c: char| c.is_ascii_uppercase())
                }) || self.helper_given_session(var)
            }
            _ => false,
        }
    }

    /// Was `var` assigned from a call that was handed a session (`usage = get_usage(db, app_id)`)?
    fn helper_given_session(&self, var: &str) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.kind() == "assignment")
            .filter(|n| n.field("left").is_some_and(|l| l.text() == var))
            .filter_map(|n| n.field("right"))
            .any(|rhs| {
                rhs.dfs()
                    .filter(|c| c.kind() == "argument_list")
                    .flat_map(|args| args.children().collect::<Vec<_>>())
                    .any(|a| {
                        let v = if a.kind() == "keyword_argument" {
                            a.field("value")
                        } else {
                            Some(a)
                        };
                        v.is_some_and(|v| v.kind() == "identifier" && is_session_name(&v.text()))
                    })
            })
    }

    /// Is `var.attr` compared with `<`, `<=`, `>`, `>=` anywhere in the function (a limit check)?
    pub fn compared_with_limit(&self, var: &str, attr: &str) -> bool {
        let target = format!("{var}.{attr}");
        self.nodes
            .iter()
            .filter(|n| n.kind() == "comparison_operator")
            .any(|cmp| {
                let ops = cmp
                    .children()
                    .any(|c| matches!(c.kind().as_ref(), "<" | "<=" | ">" | ">="));
                ops && cmp.children().any(|c| {
                    let c = strip_parens(&c);
                    c.text() == target.as_str()
                        || (c.kind() == "binary_operator"
                            && c.children().any(|x| x.text() == target.as_str()))
                })
            })
    }
}

/// Classify the expression an object was obtained from.
pub fn classify(expr: &PyNode<'_>) -> Source {
    if is_query_expr(expr) {
        return Source::Query(shorten(&expr.text(), Cut::STATEMENT));
    }
    let inner = if expr.kind() == "await" {
        expr.children()
            .find(|c| c.is_named())
            .unwrap_or(expr.clone())
    } else {
        expr.clone()
    };
    if inner.kind() == "call"
        && let Some(f) = inner.field("function")
    {
        let callee: String = f.text().split_whitespace().collect();
        let last = callee.rsplit('.').next().unwrap_or(&callee);
        if last.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Source::Other; // a constructor: a new object, nobody else sees it yet
        }
        return Source::Helper(callee);
    }
    Source::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn writes(src: &str) -> Vec<String> {
        let doc = Lang::Python.ast_grep(src);
        let root = doc.root();
        root.dfs()
            .filter_map(|n| counter_write(&n))
            .map(|w| format!("{}.{}", w.var, w.attr))
            .collect()
    }

    #[test]
    fn recognises_counter_writes() {
        assert_eq!(writes("u.n += 1\n"), ["u.n"]);
        assert_eq!(writes("u.n -= amount\n"), ["u.n"]);
        assert_eq!(writes("u.n = u.n + 1\n"), ["u.n"]);
        assert_eq!(writes("u.n = (u.n or 0) + d\n"), ["u.n"]);
        assert!(writes("self.n += 1\n").is_empty());
        assert!(writes("m.text += 'x'\n").is_empty());
        assert!(writes("u.n = 5\n").is_empty());
        assert!(writes("u.n *= 2\n").is_empty());
        assert!(writes("u.n = v.n + 1\n").is_empty());
    }

    #[test]
    fn session_names() {
        for n in [
            "db",
            "session",
            "db_session",
            "self.session",
            "async_session",
            "sess",
        ] {
            assert!(is_session_name(n), "{n}");
        }
        for n in [
            "sessionmaker",
            "client_session",
            "http_session",
            "chat_session",
            "user",
            "obj",
        ] {
            assert!(!is_session_name(n), "{n}");
        }
    }
}
