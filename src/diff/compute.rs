//! Hunks computed from two full versions of a file, for when no patch is available.

use super::Hunk;
use similar::{Algorithm, DiffTag, TextDiff};
use std::ops::Range;

/// Computes the hunks of a unified diff from `old` to `new` with `context` lines of context (GitHub uses
/// 3), with the `similar` crate (Myers, line-based).
///
/// Lines are split after each `\n` as git does (a lone `\r` does not end a line; a last line without
/// `\n` differs from the same line with one). Hunks are grouped like `git diff -U<context>`: two changes
/// share a hunk when at most `2 * context` unchanged lines separate them. The result is what
/// [`parse_patch`](super::parse_patch) returns for the equivalent unified diff.
pub fn diff_texts(old: &str, new: &str, context: usize) -> Vec<Hunk> {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    let diff = TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .diff_slices(&old_lines, &new_lines);
    let changes: Vec<(Range<usize>, Range<usize>)> = diff
        .ops()
        .iter()
        .filter(|op| op.tag() != DiffTag::Equal)
        .map(|op| (op.old_range(), op.new_range()))
        .collect();
    group_changes(&changes, old_lines.len(), context)
}

/// Groups changed ranges (0-based, ascending, separated by equal runs) into hunks.
fn group_changes(
    changes: &[(Range<usize>, Range<usize>)],
    old_len: usize,
    context: usize,
) -> Vec<Hunk> {
    let mut hunks = Vec::new();
    let mut first = 0;
    while first < changes.len() {
        let mut last = first;
        while let (Some(cur), Some(next)) = (changes.get(last), changes.get(last + 1)) {
            if next.0.start.saturating_sub(cur.0.end) > context.saturating_mul(2) {
                break;
            }
            last += 1;
        }
        let (Some((first_old, first_new)), Some((last_old, last_new))) =
            (changes.get(first), changes.get(last))
        else {
            break;
        };
        // Unchanged lines before/after the group: the same count on both sides.
        let before_gap = match first.checked_sub(1).and_then(|i| changes.get(i)) {
            Some(prev) => first_old.start.saturating_sub(prev.0.end),
            None => first_old.start,
        };
        let after_gap = match changes.get(last + 1) {
            Some(next) => next.0.start.saturating_sub(last_old.end),
            None => old_len.saturating_sub(last_old.end),
        };
        let lead = context.min(before_gap);
        let trail = context.min(after_gap);
        let old_from = first_old.start.saturating_sub(lead);
        let old_lines = last_old.end.saturating_add(trail).saturating_sub(old_from);
        let new_from = first_new.start.saturating_sub(lead);
        let new_lines = last_new.end.saturating_add(trail).saturating_sub(new_from);
        let group = changes.get(first..=last).unwrap_or_default();
        hunks.push(Hunk {
            old_start: header_start(old_from, old_lines),
            old_lines,
            new_start: header_start(new_from, new_lines),
            new_lines,
            added: group
                .iter()
                .flat_map(|(_, n)| n.clone())
                .map(|i| i + 1)
                .collect(),
            deleted: group
                .iter()
                .flat_map(|(o, _)| o.clone())
                .map(|i| i + 1)
                .collect(),
        });
        first = last + 1;
    }
    hunks
}

/// The start a hunk header shows for a 0-based range start: 1-based, or the line before an empty range.
fn header_start(from: usize, count: usize) -> usize {
    if count == 0 { from } else { from + 1 }
}
