//! C1: read→modify→write of persisted counters and quotas.
//!
//! `usage.count += 1` on a row loaded from the database, followed by `commit()`/`flush()`, compiles to
//! `SELECT count` … `UPDATE … SET count = <value computed in Python>`. Two requests that read the same value
//! both write value+1: one increment is lost, and a quota check made on the stale value lets both through.
//!
//! This module also holds the per-function facts the C2 check reuses (where a variable was loaded from, which
//! session commits, whether the function locks rows).

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::persistence::{
    FuncFacts, Source, counter_write, is_session_name,
};
use crate::analysis::semantic::python::syntax::{has_error, strip_parens};
use crate::analysis::semantic::python::text::{Cut, shorten};
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
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
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
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
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
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
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
            if has_error(node) || facts.inside_lock(node) {
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
                    fix: None,
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
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
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
        // `found < len(ids)` against a count of `….in_(ids)`: every requested row exists, not a limit.
        let counted_text = {
            let o = strip_parens(&operands[counted]);
            if o.kind() == "identifier" {
                facts
                    .nodes
                    .iter()
                    .filter(|n| n.kind() == "assignment" && n.range().end <= cmp.range().start)
                    .filter(|n| n.field("left").is_some_and(|l| l.text() == o.text()))
                    .filter_map(|n| n.field("right").map(|r| r.text().to_string()))
                    .next_back()
                    .unwrap_or_default()
            } else {
                o.text().to_string()
            }
        };
        let compact: String = counted_text.split_whitespace().collect();
        if operands.iter().enumerate().any(|(i, o)| {
            let t: String = o.text().split_whitespace().collect();
            i != counted
                && t.strip_prefix("len(")
                    .and_then(|r| r.strip_suffix(')'))
                    .is_some_and(|x| compact.contains(&format!(".in_({x})")))
        }) {
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
            fix: None,
            range: cmp.range(),
            message: Some(format!(
                "check-then-act on a quota: `{}` counts rows and the new row is inserted at line {add_line} and \
                 committed at line {commit_line} without a lock, so concurrent requests all see the same count and \
                 all insert, overrunning the limit",
                shorten(&cmp.text(), Cut::STATEMENT)
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
