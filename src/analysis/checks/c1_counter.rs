//! C1: read→modify→write of persisted counters and quotas.
//!
//! `usage.count += 1` on a row loaded from the database, followed by `commit()`/`flush()`, compiles to
//! `SELECT count` … `UPDATE … SET count = <value computed in Python>`. Two requests that read the same value
//! both write value+1: one increment is lost, and a quota check made on the stale value lets both through.
//!
//! This module also holds the per-function facts the C2 check reuses (where a variable was loaded from, which
//! session commits, whether the function locks rows).

use super::{Check, CheckMatch, PyNode, function_name};
use crate::analysis::context::FileContext;
use std::collections::HashSet;

pub struct CounterReadModifyWrite;
pub struct QuotaCheckThenAct;
pub struct CounterRmwLoadedElsewhere;

/// Which of the three C1 detectors a write belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Loaded by a query in this function, mutated, committed.
    Loaded,
    /// Same, and the counter is compared with a limit in the function: check-then-act.
    CheckThenAct,
    /// The object comes from a parameter, a helper or a repository: we cannot see how it was loaded.
    Elsewhere,
}

impl Check for CounterReadModifyWrite {
    fn id(&self) -> &'static str {
        "c1-counter-read-modify-write"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["commit", "flush"]
    }
    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        run_kind(root, ctx, Kind::Loaded, out);
    }
}

impl Check for QuotaCheckThenAct {
    fn id(&self) -> &'static str {
        "c1-quota-check-then-act"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["commit", "flush"]
    }
    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        run_kind(root, ctx, Kind::CheckThenAct, out);
    }
}

impl Check for CounterRmwLoadedElsewhere {
    fn id(&self) -> &'static str {
        "c1-counter-rmw-loaded-elsewhere"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["commit", "flush", ".save("]
    }
    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        run_kind(root, ctx, Kind::Elsewhere, out);
    }
}

/// The file's counter writes, each with the detector it belongs to.
struct CounterWrites(Vec<(Kind, CheckMatch)>);

/// One analysis of the file serves all three C1 counter detectors; each keeps its own kind.
fn run_kind<'r>(root: &PyNode<'r>, ctx: &FileContext<'r>, want: Kind, out: &mut Vec<CheckMatch>) {
    let all = ctx.memo(root, || CounterWrites(counter_writes(root, ctx)));
    out.extend(
        all.0
            .iter()
            .filter(|(kind, _)| *kind == want)
            .map(|(_, m)| m.clone()),
    );
}

fn counter_writes<'r>(root: &PyNode<'r>, ctx: &FileContext<'r>) -> Vec<(Kind, CheckMatch)> {
    let mut out = Vec::new();
    let file_text = root.text();
    // An optimistic version column declared in this file makes stale writes fail instead of being lost.
    if file_text.contains("version_id_col") {
        return out;
    }
    for func in ctx.of_kind(root, "function_definition").iter() {
        // Facts walk the whole body: only for functions that could commit or save at all.
        let text = func.text();
        if !(text.contains("commit") || text.contains("flush") || text.contains(".save(")) {
            continue;
        }
        let facts = FuncFacts::new(func);
        if facts.locks_rows() || (facts.commits.is_empty() && !text.contains(".save(")) {
            continue;
        }
        // One finding per object and function: several counters bumped on the same row are one problem.
        let mut seen: HashSet<String> = HashSet::new();
        for node in &facts.nodes {
            let Some(w) = counter_write(node) else {
                continue;
            };
            if seen.contains(&w.var) || is_worker_bookkeeping(&w.var, &w.attr) {
                continue;
            }
            if node.get_inner_node().has_error() || facts.inside_lock(node) {
                continue;
            }
            let start = node.range().start;
            let Some(commit_line) = facts.commit_after_for(&w.var, start) else {
                continue;
            };
            let source = facts.source_of(&w.var, node);
            let kind = match source {
                Source::Query(_) => {
                    if facts.compared_with_limit(&w.var, &w.attr) {
                        Kind::CheckThenAct
                    } else {
                        Kind::Loaded
                    }
                }
                Source::Param | Source::Helper(_) if facts.orm_evidence(&w.var, &source) => {
                    // A visible limit check on the counter makes the race plain even if we cannot see the load.
                    if facts.compared_with_limit(&w.var, &w.attr) {
                        Kind::Loaded
                    } else {
                        Kind::Elsewhere
                    }
                }
                _ => continue,
            };
            seen.insert(w.var.clone());
            let target = format!("{}.{}", w.var, w.attr);
            let message = match (kind, &source) {
                (Kind::CheckThenAct, Source::Query(q)) => format!(
                    "check-then-act on a persisted counter: `{target}` is compared with a limit and then updated in Python \
                     (`{}`), on a row loaded by `{q}` without a lock and committed at line {commit_line}; concurrent \
                     requests all pass the check on the same stale value, so the quota is overrun and increments are lost",
                    w.text
                ),
                (_, Source::Query(q)) => format!(
                    "`{}` is a read→modify→write of a persisted counter: `{}` was loaded by `{q}` and the Python-computed \
                     value is committed at line {commit_line}, so concurrent requests overwrite each other's updates (lost update)",
                    w.text, w.var
                ),
                (Kind::Loaded, Source::Param | Source::Helper(_)) => format!(
                    "check-then-act on a persisted counter: `{target}` is compared with a limit and then updated in \
                     Python (`{}`) and committed at line {commit_line}; concurrent requests all pass the check on the \
                     same stale value and overwrite each other's updates (fine only if `{}` was loaded with \
                     `with_for_update()` where it comes from)",
                    w.text, w.var
                ),
                (_, Source::Param) => format!(
                    "`{}` updates a persisted counter in Python and flushes/commits it at line {commit_line}: concurrent \
                     requests overwrite each other's updates (lower confidence: `{}` is a parameter; fine if the caller \
                     loaded it with `with_for_update()`)",
                    w.text, w.var
                ),
                (_, Source::Helper(h)) => format!(
                    "`{}` updates a persisted counter in Python and flushes/commits it at line {commit_line}: concurrent \
                     requests overwrite each other's updates (lower confidence: `{}` comes from `{h}`; fine if that query \
                     locks the row with `with_for_update()`)",
                    w.text, w.var
                ),
                _ => continue,
            };
            out.push((
                kind,
                CheckMatch {
                    range: node.range(),
                    message: Some(message),
                },
            ));
        }
    }
    out
}

pub struct CountThenInsert;

impl Check for CountThenInsert {
    fn id(&self) -> &'static str {
        "c1-count-then-insert"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["count"]
    }
    /// The insert must be committed (`session.commit()`/`flush()`) in the same function.
    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[&["commit", "flush"]]
    }
    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for func in ctx.of_kind(root, "function_definition").iter() {
            // Facts walk the whole body: only for functions that count and could commit at all.
            let text = func.text();
            if !(text.contains("count") && (text.contains("commit") || text.contains("flush"))) {
                continue;
            }
            let facts = FuncFacts::new(func);
            if facts.locks_rows() || facts.commits.is_empty() {
                continue;
            }
            if let Some(m) = count_then_insert(&facts) {
                out.push(m);
            }
        }
    }
}

/// Is this expression a row count from the database (`func.count(...)`, `query(...).count()`)?
fn is_count_query(expr: &PyNode<'_>) -> bool {
    let t = expr.text();
    if t.contains("func.count(") {
        return true;
    }
    expr.dfs().filter(|n| n.kind() == "call").any(|call| {
        call.field("function").is_some_and(|f| {
            f.kind() == "attribute"
                && f.field("attribute").is_some_and(|a| a.text() == "count")
                && f.field("object").is_some_and(|o| {
                    let ot = o.text();
                    ot.contains(".query(") || ot.contains(".filter(") || ot.contains(".filter_by(")
                })
        }) && call
            .field("arguments")
            .is_some_and(|a| a.children().all(|c| !c.is_named()))
    })
}

fn count_then_insert(facts: &FuncFacts<'_>) -> Option<CheckMatch> {
    let count_vars: Vec<String> = facts
        .nodes
        .iter()
        .filter(|n| n.kind() == "assignment")
        .filter(|n| n.field("left").is_some_and(|l| l.kind() == "identifier"))
        .filter(|n| n.field("right").is_some_and(|r| is_count_query(&r)))
        .filter_map(|n| n.field("left").map(|l| l.text().to_string()))
        .collect();
    for cmp in facts
        .nodes
        .iter()
        .filter(|n| n.kind() == "comparison_operator")
    {
        if !cmp
            .children()
            .any(|c| matches!(c.kind().as_ref(), "<" | "<=" | ">" | ">="))
        {
            continue;
        }
        let operands: Vec<PyNode<'_>> = cmp.children().filter(|c| c.is_named()).collect();
        let is_count = |o: &PyNode<'_>| {
            let o = strip_parens(o);
            (o.kind() == "identifier" && count_vars.iter().any(|v| *v == o.text()))
                || (o.kind() != "identifier" && is_count_query(&o))
        };
        let Some(counted) = operands.iter().position(is_count) else {
            continue;
        };
        // `if n > 0` / `if n >= 1` is an existence check (a unique constraint's job), not a limit.
        if operands
            .iter()
            .enumerate()
            .any(|(i, o)| i != counted && matches!(o.text().as_ref(), "0" | "1"))
        {
            continue;
        }
        // The comparison guards an `if` that rejects (raise/return).
        let Some(guard) = cmp.ancestors().find(|a| a.kind() == "if_statement") else {
            continue;
        };
        let in_condition = guard.field("condition").is_some_and(|c| {
            c.range().start <= cmp.range().start && cmp.range().end <= c.range().end
        });
        let rejects = guard.field("consequence").is_some_and(|b| {
            b.dfs()
                .any(|n| matches!(n.kind().as_ref(), "raise_statement" | "return_statement"))
        });
        if !in_condition || !rejects {
            continue;
        }
        let after = guard.range().end;
        let add = facts.nodes.iter().find(|n| {
            n.kind() == "call"
                && n.range().start >= after
                && n.field("function").is_some_and(|f| {
                    f.kind() == "attribute"
                        && f.field("attribute")
                            .is_some_and(|a| matches!(a.text().as_ref(), "add" | "add_all"))
                        && f.field("object")
                            .is_some_and(|o| is_session_name(&o.text()))
                })
        })?;
        let add_line = add.start_pos().line() + 1;
        let commit_line = facts.commit_after(add.range().start)?;
        return Some(CheckMatch {
            range: cmp.range(),
            message: Some(format!(
                "check-then-act on a quota: `{}` counts rows and the new row is inserted at line {add_line} and \
                 committed at line {commit_line} without a lock, so concurrent requests all see the same count and \
                 all insert, overrunning the limit",
                short(&cmp.text())
            )),
        });
    }
    None
}

/// Progress and retry bookkeeping on a row one worker owns (`job.retry_count += 1`,
/// `attempt.total_docs_indexed += n`): not the shared counters this rule is about.
fn is_worker_bookkeeping(var: &str, attr: &str) -> bool {
    let v = var.to_ascii_lowercase();
    let a = attr.to_ascii_lowercase();
    let owned = [
        "job",
        "task",
        "attempt",
        "run",
        "migration",
        "batch",
        "checkpoint",
        "progress",
    ];
    let progress = [
        "retry",
        "retries",
        "attempt",
        "migrated",
        "processed",
        "errored",
        "observed",
        "fail",
        "skipped",
        "indexed",
        "synced",
        "batches",
        "progress",
        "elapsed",
        "duration",
    ];
    owned
        .iter()
        .any(|o| v == *o || v.ends_with(&format!("_{o}")) || v.starts_with(&format!("{o}_")))
        || progress.iter().any(|p| a.contains(p))
}

/// An update of `var.attr` computed from its own current value.
pub(super) struct CounterWrite {
    pub var: String,
    pub attr: String,
    /// The statement, on one line and shortened.
    pub text: String,
}

/// `x.n += d`, `x.n -= d`, `x.n = x.n + d`, `x.n = (x.n or 0) + d` on a plain variable `x` (not `self`/`cls`).
pub(super) fn counter_write(node: &PyNode<'_>) -> Option<CounterWrite> {
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
        text: short(&node.text()),
    })
}

/// `x.attr` with `x` an identifier.
pub(super) fn var_attr(node: &PyNode<'_>) -> Option<(String, String)> {
    if node.kind() != "attribute" {
        return None;
    }
    let obj = node.field("object")?;
    if obj.kind() != "identifier" {
        return None;
    }
    let attr = node.field("attribute")?;
    Some((obj.text().to_string(), attr.text().to_string()))
}

/// Strings and containers: `+=` on those is concatenation, not a counter.
fn has_string(node: &PyNode<'_>) -> bool {
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

pub(super) fn strip_parens<'r>(node: &PyNode<'r>) -> PyNode<'r> {
    let mut n = node.clone();
    while n.kind() == "parenthesized_expression" {
        let inner = n.children().find(|c| c.is_named());
        match inner {
            Some(inner) => n = inner,
            None => break,
        }
    }
    n
}

/// Code on one line, cut to a readable length.
pub(super) fn short(code: &str) -> String {
    let one: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 70 {
        let cut: String = one.chars().take(67).collect();
        format!("{cut}…")
    } else {
        one
    }
}

/// Where a variable's object came from.
#[derive(Debug, Clone)]
pub(super) enum Source {
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
pub(super) fn is_session_name(name: &str) -> bool {
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
const QUERY_METHODS: &[&str] = &[
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
pub(super) fn is_query_expr(expr: &PyNode<'_>) -> bool {
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
pub(super) struct FuncFacts<'r> {
    pub func: PyNode<'r>,
    /// The function's own nodes, in source order.
    pub nodes: Vec<PyNode<'r>>,
    /// Byte offsets and 1-based lines of `.commit()` / `.flush()` calls on a session-like receiver.
    pub commits: Vec<(usize, usize)>,
    params: Vec<String>,
}

impl<'r> FuncFacts<'r> {
    pub fn new(func: &PyNode<'r>) -> Self {
        let mut nodes = Vec::new();
        if let Some(body) = func.field("body") {
            let mut stack: Vec<PyNode<'r>> = vec![body];
            while let Some(n) = stack.pop() {
                if matches!(
                    n.kind().as_ref(),
                    "function_definition" | "lambda" | "class_definition"
                ) {
                    continue;
                }
                let kids: Vec<PyNode<'r>> = n.children().collect();
                nodes.push(n);
                stack.extend(kids.into_iter().rev());
            }
        }
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
fn classify(expr: &PyNode<'_>) -> Source {
    if is_query_expr(expr) {
        return Source::Query(short(&expr.text()));
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
