//! C2: rows several requests mutate, loaded without `with_for_update()` and committed.
//!
//! Two shapes a reviewer flags:
//! - a status transition guarded by a check on the same row (`if order.status == PENDING: order.status = PAID`):
//!   two concurrent requests both see PENDING and both apply the transition (double refund, double approval);
//! - a balance-like column written from a value computed from its own loaded value through a local variable or
//!   a function (`new = acct.balance - cost; acct.balance = max(new, 0)`): a lost update on money or quota.
//!
//! The plain `x.n += d` / `x.n = x.n + d` forms belong to C1 and are not repeated here.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::persistence::{FuncFacts, Source, counter_write};
use crate::analysis::semantic::python::syntax::{has_error, strip_parens, var_attr};
use crate::analysis::semantic::python::text::{Cut, shorten};

pub struct UnlockedStatusTransition;
pub struct UnlockedBalanceUpdate;

/// Column names of a status / state machine.
fn is_status_attr(attr: &str) -> bool {
    let a = attr.to_ascii_lowercase();
    matches!(a.as_str(), "status" | "state" | "stage" | "phase")
        || a.ends_with("_status")
        || a.ends_with("_state")
}

/// Column names of a shared, consumable resource.
fn is_resource_attr(attr: &str) -> bool {
    let a = attr.to_ascii_lowercase();
    [
        "balance",
        "credit",
        "quota",
        "remaining",
        "stock",
        "inventory",
        "available",
        "seats",
        "tokens",
        "usage",
        "used",
        "spent",
        "allowance",
        "points",
    ]
    .iter()
    .any(|w| a.contains(w))
}

impl Check for UnlockedStatusTransition {
    fn id(&self) -> &'static str {
        "c2-unlocked-status-transition"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["commit", "flush"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        if root.text().contains("version_id_col") {
            return;
        }
        for func in ctx.of_kind(root, "function_definition").iter() {
            // Facts walk the whole body: only for functions that could commit at all.
            let text = func.text();
            if !(text.contains("commit") || text.contains("flush")) {
                continue;
            }
            let facts = FuncFacts::new(func);
            if facts.locks_rows() || facts.commits.is_empty() {
                continue;
            }
            let mut reported: Vec<String> = Vec::new();
            for cond in facts
                .nodes
                .iter()
                .filter(|n| matches!(n.kind().as_ref(), "if_statement" | "elif_clause"))
                .filter_map(|n| n.field("condition"))
            {
                for (var, attr) in status_checks(&cond) {
                    let key = format!("{var}.{attr}");
                    if reported.contains(&key) {
                        continue;
                    }
                    let Some(write) = facts.nodes.iter().find(|n| {
                        n.kind() == "assignment"
                            && n.range().start > cond.range().start
                            && n.field("left")
                                .and_then(|l| var_attr(&l))
                                .is_some_and(|(v, a)| v == var && a == attr)
                    }) else {
                        continue;
                    };
                    if has_error(write) || facts.inside_lock(write) {
                        continue;
                    }
                    let Some(commit_line) = facts.commit_after(write.range().start) else {
                        continue;
                    };
                    // The check and the write must see the same loaded object (no reload in between).
                    let reloaded = facts.nodes.iter().any(|n| {
                        n.kind() == "assignment"
                            && n.range().start > cond.range().start
                            && n.range().start < write.range().start
                            && n.field("left").is_some_and(|l| l.text() == var)
                    });
                    if reloaded {
                        continue;
                    }
                    let Source::Query(q) = facts.source_of(&var, write) else {
                        continue;
                    };
                    reported.push(key.clone());
                    out.push(CheckMatch {
                        fix: None,
                        range: write.range(),
                        message: Some(format!(
                            "`{}` is a status transition guarded by a check of `{key}` on a row loaded by `{q}` without \
                             `with_for_update()` (committed at line {commit_line}): two concurrent requests can both pass \
                             the check and both apply the transition (lower confidence: fine if this row is never \
                             changed by concurrent requests)",
                            shorten(&write.text(), Cut::STATEMENT)
                        )),
                    });
                }
            }
        }
    }
}

/// `(var, attr)` of every `var.attr` a condition compares for (in)equality or membership, where attr is a status.
fn status_checks(cond: &PyNode<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for cmp in cond.dfs().filter(|n| n.kind() == "comparison_operator") {
        let eq = cmp.children().any(|c| {
            matches!(
                c.kind().as_ref(),
                "==" | "!=" | "in" | "not in" | "is" | "is not" | "not" | "is_not" | "not_in"
            )
        });
        if !eq {
            continue;
        }
        for c in cmp.children().filter(|c| c.is_named()) {
            let c = strip_parens(&c);
            if let Some((v, a)) = var_attr(&c)
                && v != "self"
                && v != "cls"
                && is_status_attr(&a)
            {
                out.push((v, a));
            }
        }
    }
    out
}

impl Check for UnlockedBalanceUpdate {
    fn id(&self) -> &'static str {
        "c2-unlocked-balance-update"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["commit", "flush"]
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        if root.text().contains("version_id_col") {
            return;
        }
        for func in ctx.of_kind(root, "function_definition").iter() {
            // Facts walk the whole body: only for functions that could commit at all.
            let text = func.text();
            if !(text.contains("commit") || text.contains("flush")) {
                continue;
            }
            let facts = FuncFacts::new(func);
            if facts.locks_rows() || facts.commits.is_empty() {
                continue;
            }
            for write in facts.nodes.iter().filter(|n| n.kind() == "assignment") {
                let (Some(left), Some(right)) = (write.field("left"), write.field("right")) else {
                    continue;
                };
                let Some((var, attr)) = var_attr(&left) else {
                    continue;
                };
                if var == "self" || var == "cls" || !is_resource_attr(&attr) {
                    continue;
                }
                if counter_write(write).is_some() || has_error(write) {
                    continue; // C1's finding
                }
                let target = format!("{var}.{attr}");
                // `row.tokens = new_value or row.tokens` keeps the old value when no new one came: nothing is
                // computed from it, so a concurrent write is replaced, not lost.
                if fallback_only(&right, &target, 0) {
                    continue;
                }
                let derived = refers_to(&right, &target)
                    || right
                        .dfs()
                        .filter(|n| n.kind() == "identifier")
                        .any(|id| local_derived_from(&facts, &id.text(), &target, write));
                if !derived || facts.inside_lock(write) {
                    continue;
                }
                let Some(commit_line) = facts.commit_after(write.range().start) else {
                    continue;
                };
                let Source::Query(q) = facts.source_of(&var, write) else {
                    continue;
                };
                out.push(CheckMatch {
                    fix: None,
                    range: write.range(),
                    message: Some(format!(
                        "`{}` writes back a value computed from the loaded `{target}` on a row loaded by `{q}` without \
                         `with_for_update()` (committed at line {commit_line}): concurrent requests overwrite each \
                         other's change to this shared balance (lost update)",
                        shorten(&write.text(), Cut::STATEMENT)
                    )),
                });
            }
        }
    }
}

/// Does `target` appear in `expr` only as a whole operand of `or`/`and` or as a whole branch of `x if c else y`
/// (a fallback to the old value), and nowhere in a computation? `false` when it does not appear at all.
fn fallback_only(expr: &PyNode<'_>, target: &str, depth: usize) -> bool {
    if depth > 16 {
        return false;
    }
    match expr.kind().as_ref() {
        "parenthesized_expression" => expr
            .child(1)
            .is_some_and(|inner| fallback_only(&inner, target, depth + 1)),
        "boolean_operator" | "conditional_expression" => {
            let mut seen = false;
            for part in expr.children().filter(|c| c.is_named()) {
                if part.kind() == "attribute" && part.text() == target {
                    seen = true;
                } else if refers_to(&part, target) {
                    // Mentioned inside an operand: only a nested fallback keeps it a fallback (a condition such
                    // as `row.tokens > 0` is a read, not a computed write, and counts as one too).
                    let nested = matches!(
                        part.kind().as_ref(),
                        "boolean_operator" | "conditional_expression" | "parenthesized_expression"
                    );
                    let kept = (nested && fallback_only(&part, target, depth + 1))
                        || (expr.kind() == "conditional_expression" && is_condition(expr, &part));
                    if !kept {
                        return false;
                    }
                    seen = true;
                }
            }
            seen
        }
        _ => false,
    }
}

/// Is `part` the condition of the conditional expression `cond` (`a if part else b`)?
fn is_condition(cond: &PyNode<'_>, part: &PyNode<'_>) -> bool {
    let named: Vec<_> = cond.children().filter(|c| c.is_named()).collect();
    named.len() == 3 && named[1].range() == part.range()
}

/// Does the expression mention `target` (`acct.balance`) as an attribute?
fn refers_to(expr: &PyNode<'_>, target: &str) -> bool {
    expr.dfs()
        .any(|n| n.kind() == "attribute" && n.text() == target)
}

/// Was local `name` assigned, before `at`, from an expression mentioning `target`?
fn local_derived_from(facts: &FuncFacts<'_>, name: &str, target: &str, at: &PyNode<'_>) -> bool {
    facts.nodes.iter().any(|n| {
        matches!(n.kind().as_ref(), "assignment" | "augmented_assignment")
            && n.range().start < at.range().start
            && n.field("left")
                .is_some_and(|l| l.kind() == "identifier" && l.text() == name)
            && n.field("right").is_some_and(|r| refers_to(&r, target))
    })
}
