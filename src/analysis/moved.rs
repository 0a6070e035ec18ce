//! Findings of code a change moved rather than wrote.
//!
//! A function moved to another module, a block reordered, a call re-wrapped onto one line: the diff shows the
//! code as added, but its problem was there before the change, and a review comment on it blames the author of a
//! refactoring for old code. A finding of the change is *moved* when the same detector reports the same code
//! (whitespace aside) on lines the same change removed — in the old version of any file it touched — and
//! reports it as often there (a function's "also on" list included). The old side is analysed with the same
//! engine and repository, so a line moved into a new context (a blocking call moved from a `def` into an
//! `async def`) is not moved: nothing reported it before.
//!
//! A finding on a line the change only renamed something in is held back the same way: the same detector reported
//! the same code on a removed line of the same file, but for one identifier, renamed consistently
//! (`get_config_by_id(self.alt_id, db)` → `get_config(self.alt_id, db)`). Two different renames, or anything but
//! identifiers changed, and the finding stays.
//!
//! Both the CLI and the App use it: [`candidates`] says which old files are worth analysing (their removed lines
//! hold the first line of some finding, or a finding's file is the one the lines were removed from),
//! [`drop_moved`] removes the matched findings.

use crate::report::Finding;
use std::collections::HashMap;

/// Bytes of a finding's code compared (longer code is compared on this prefix).
const MAX_KEY_BYTES: usize = 16 * 1024;

/// Bytes of one old file's removed lines searched for findings' first lines (the rest is not searched: a
/// finding there stays).
const MAX_REMOVED_BYTES: usize = 4 * 1024 * 1024;

/// The old side of one file the change removed lines from.
pub struct OldSide<'a> {
    /// The file's text before the change.
    pub text: &'a str,
    /// 1-based line numbers of the removed lines, ascending.
    pub removed: &'a [usize],
}

/// `s` without whitespace, appended to `out` (at most [`MAX_KEY_BYTES`] in all).
fn push_compact(out: &mut String, s: &str, max: usize) {
    for c in s.chars().filter(|c| !c.is_whitespace()) {
        if out.len() + c.len_utf8() > max {
            return;
        }
        out.push(c);
    }
}

/// The text of lines `first..=last` (1-based) of `text`, whitespace removed.
fn lines_key(text: &str, first: usize, last: usize) -> String {
    let mut key = String::new();
    for line in text
        .lines()
        .skip(first.saturating_sub(1))
        .take(last.saturating_sub(first) + 1)
    {
        push_compact(&mut key, line, MAX_KEY_BYTES);
        if key.len() >= MAX_KEY_BYTES {
            break;
        }
    }
    key
}

/// What identifies a finding's problem across a move: its detector, its code without whitespace, and how many
/// lines its message says it also covers.
fn finding_key(f: &Finding, text: &str) -> (String, String, usize) {
    (
        f.check.clone(),
        lines_key(text, f.line, f.end_line.max(f.line)),
        super::engine::also_count(&f.message),
    )
}

/// The removed lines of one old file, whitespace removed: runs of consecutive lines joined (so a call the
/// change re-wrapped onto one line is found), runs separated by a newline.
fn removed_text(old: &OldSide<'_>) -> String {
    let lines: Vec<&str> = old.text.lines().collect();
    let mut out = String::new();
    let mut prev: Option<usize> = None;
    for &n in old.removed {
        let Some(line) = n.checked_sub(1).and_then(|i| lines.get(i)) else {
            continue;
        };
        if prev.is_some_and(|p| p + 1 != n) {
            out.push('\n');
        }
        push_compact(&mut out, line, MAX_REMOVED_BYTES);
        prev = Some(n);
        if out.len() >= MAX_REMOVED_BYTES {
            break;
        }
    }
    out
}

/// Python keywords and constants: never a renamed identifier.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// The tokens of lines `first..=last` (1-based) of `text`: names and numbers, string literals (to the line's end
/// when unterminated) and single punctuation characters; at most [`MAX_KEY_BYTES`] of them.
fn tokens(text: &str, first: usize, last: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for line in text
        .lines()
        .skip(first.saturating_sub(1))
        .take(last.saturating_sub(first) + 1)
    {
        let mut rest = line;
        while let Some(c) = rest.chars().next() {
            if bytes >= MAX_KEY_BYTES {
                return out;
            }
            let len = if c.is_whitespace() {
                rest = &rest[c.len_utf8()..];
                continue;
            } else if c.is_alphanumeric() || c == '_' {
                rest.find(|x: char| !(x.is_alphanumeric() || x == '_'))
                    .unwrap_or(rest.len())
            } else if c == '"' || c == '\'' {
                rest[1..].find(c).map_or(rest.len(), |i| i + 2)
            } else {
                c.len_utf8()
            };
            out.push(&rest[..len]);
            bytes += len;
            rest = &rest[len..];
        }
    }
    out
}

fn is_name(t: &str) -> bool {
    t.starts_with(|c: char| c.is_alphabetic() || c == '_') && !KEYWORDS.contains(&t)
}

/// Do two token sequences differ only by one identifier renamed consistently (and differ at all)?
fn renamed(old: &[&str], new: &[&str]) -> bool {
    if old.len() != new.len() {
        return false;
    }
    let mut rename: Option<(&str, &str)> = None;
    for (a, b) in old.iter().zip(new) {
        if a == b {
            continue;
        }
        if !is_name(a) || !is_name(b) {
            return false;
        }
        match rename {
            None => rename = Some((a, b)),
            Some(r) if r == (*a, *b) => {}
            Some(_) => return false,
        }
    }
    rename.is_some()
}

/// Which old files (indices into `old`) may hold a finding's code among their removed lines: those whose
/// removed text contains the first line of some finding. `head_text` gives the new text of a finding's file.
pub fn candidates<'t>(
    findings: &[Finding],
    head_text: impl Fn(&str) -> Option<&'t str>,
    old: &[OldSide<'_>],
) -> Vec<usize> {
    let firsts: Vec<String> = findings
        .iter()
        .filter_map(|f| head_text(&f.path).map(|t| lines_key(t, f.line, f.line)))
        .filter(|k| !k.is_empty())
        .collect();
    if firsts.is_empty() {
        return Vec::new();
    }
    // One pass over each file's removed text for all first lines at once: a hostile change may hold many findings
    // and megabytes of removed lines.
    let Ok(searcher) = aho_corasick::AhoCorasick::new(&firsts) else {
        return Vec::new();
    };
    old.iter()
        .enumerate()
        .filter(|(_, o)| {
            let removed = removed_text(o);
            !removed.is_empty() && searcher.is_match(&removed)
        })
        .map(|(i, _)| i)
        .collect()
}

/// [`candidates`] for old files given as `(path, removed lines)` with their texts, in the same order (what the CLI
/// and the App both hold).
pub fn candidates_of<'t>(
    findings: &[Finding],
    head_text: impl Fn(&str) -> Option<&'t str>,
    old_files: &[(String, crate::diff::LineSet)],
    old_texts: &[String],
) -> Vec<usize> {
    let removed: Vec<Vec<usize>> = old_files.iter().map(|(_, l)| l.iter().collect()).collect();
    let sides: Vec<OldSide<'_>> = old_texts
        .iter()
        .zip(&removed)
        .map(|(text, removed)| OldSide { text, removed })
        .collect();
    let mut out = candidates(findings, head_text, &sides);
    // A finding's own file, where the change removed lines: a line there may have been renamed.
    for (i, (path, lines)) in old_files.iter().enumerate() {
        if !out.contains(&i) && !lines.is_empty() && findings.iter().any(|f| &f.path == path) {
            out.push(i);
        }
    }
    out.sort_unstable();
    out
}

/// Removes from `findings` those the old side reported on removed lines (`old_findings`, each with its old
/// file's text), one old finding per new one; returns how many were removed.
pub fn drop_moved<'t>(
    findings: &mut Vec<Finding>,
    head_text: impl Fn(&str) -> Option<&'t str>,
    old_findings: &[(Finding, &str)],
) -> usize {
    if old_findings.is_empty() {
        return 0;
    }
    let mut before: HashMap<(String, String, usize), Vec<usize>> = HashMap::new();
    for (i, (f, text)) in old_findings.iter().enumerate() {
        before.entry(finding_key(f, text)).or_default().push(i);
    }
    let mut used = vec![false; old_findings.len()];
    let count = findings.len();
    // Moved code first: the same code, anywhere the change removed it.
    findings.retain(|f| {
        let Some(text) = head_text(&f.path) else {
            return true;
        };
        match before.get_mut(&finding_key(f, text)).and_then(Vec::pop) {
            Some(i) => {
                used[i] = true;
                false
            }
            None => true,
        }
    });
    // Then renamed code: one identifier renamed on a removed line of the same file, same detector and count.
    let pairs = findings.len().saturating_mul(old_findings.len());
    if pairs <= MAX_RENAME_PAIRS && !findings.is_empty() {
        // Each old finding's tokens once, not once per new finding.
        let old_tokens: Vec<Vec<&str>> = old_findings
            .iter()
            .map(|(o, old_text)| tokens(old_text, o.line, o.end_line.max(o.line)))
            .collect();
        findings.retain(|f| {
            let Some(text) = head_text(&f.path) else {
                return true;
            };
            let new = tokens(text, f.line, f.end_line.max(f.line));
            let also = super::engine::also_count(&f.message);
            let hit = old_findings.iter().enumerate().position(|(i, (o, _))| {
                !used[i]
                    && o.check == f.check
                    && o.path == f.path
                    && super::engine::also_count(&o.message) == also
                    && renamed(&old_tokens[i], &new)
            });
            match hit {
                Some(i) => {
                    used[i] = true;
                    false
                }
                None => true,
            }
        });
    }
    count - findings.len()
}

/// Pairs of (new finding, old finding) compared for renames; a change past this keeps its findings.
const MAX_RENAME_PAIRS: usize = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Severity;

    fn finding(check: &str, path: &str, line: usize, end_line: usize, message: &str) -> Finding {
        Finding {
            rule: "C5".into(),
            check: check.into(),
            severity: Severity::High,
            path: path.into(),
            line,
            end_line,
            column: 1,
            end_column: 1,
            message: message.into(),
            standard: String::new(),
            conforming: String::new(),
            fingerprint: String::new(),
            fix: None,
            code: Vec::new(),
            code_cut: None,
        }
    }

    const OLD: &str =
        "import requests\n\ndef fetch(url):\n    return requests.get(\n        url\n    )\n";
    const NEW: &str = "import requests\n\n\nasync def fetch(url):\n    return requests.get(url)\n";

    #[test]
    fn rewrapped_code_is_a_candidate_and_matches() {
        let old = [OldSide {
            text: OLD,
            removed: &[3, 4, 5, 6],
        }];
        let head = |p: &str| (p == "b.py").then_some(NEW);
        let new = vec![finding("F1-http-no-timeout", "b.py", 5, 5, "m")];
        assert_eq!(candidates(&new, head, &old), vec![0]);
        // The old side reported the same code over three lines: the same problem, moved.
        let mut kept = new.clone();
        let old_found = [(finding("F1-http-no-timeout", "a.py", 4, 6, "m"), OLD)];
        assert_eq!(drop_moved(&mut kept, head, &old_found), 1);
        assert!(kept.is_empty());
    }

    #[test]
    fn only_a_removed_line_makes_a_candidate() {
        // The code is in the old file, but on a line the change kept: not a move.
        let old = [OldSide {
            text: OLD,
            removed: &[1],
        }];
        let head = |_: &str| Some(NEW);
        let new = vec![finding("F1-http-no-timeout", "b.py", 5, 5, "m")];
        assert!(candidates(&new, head, &old).is_empty());
    }

    #[test]
    fn a_new_problem_on_moved_code_stays() {
        let head = |_: &str| Some(NEW);
        // Another detector reported the old code (a new context gives a new problem): kept.
        let mut kept = vec![finding("C5-blocking-http", "b.py", 5, 5, "m")];
        let old_found = [(finding("F1-http-no-timeout", "a.py", 4, 6, "m"), OLD)];
        assert_eq!(drop_moved(&mut kept, head, &old_found), 0);
        assert_eq!(kept.len(), 1);
        // One old finding answers for one new one: a copy of the code is a new instance.
        let mut two = vec![
            finding("F1-http-no-timeout", "b.py", 5, 5, "m"),
            finding("F1-http-no-timeout", "c.py", 5, 5, "m"),
        ];
        let old_found = [(finding("F1-http-no-timeout", "a.py", 4, 6, "m"), OLD)];
        assert_eq!(drop_moved(&mut two, head, &old_found), 1);
        assert_eq!(two.len(), 1);
    }

    #[test]
    fn a_line_that_only_renamed_one_name_is_held_back() {
        let old_text = "async def connect(self, db):\n    cfg = get_config_by_id(self.alt_id, db)\n    return cfg\n";
        let new_text =
            "async def connect(self, db):\n    cfg = get_config(self.alt_id, db)\n    return cfg\n";
        let head = |_: &str| Some(new_text);
        let old_found = [(
            finding("C5-sync-session-in-async", "a.py", 2, 2, "m"),
            old_text,
        )];
        let mut kept = vec![finding("C5-sync-session-in-async", "a.py", 2, 2, "m")];
        assert_eq!(drop_moved(&mut kept, head, &old_found), 1);
        // Two names changed: another statement, kept.
        let two = "async def connect(self, db):\n    cfg = get_config(self.other_id, db)\n    return cfg\n";
        let mut kept = vec![finding("C5-sync-session-in-async", "a.py", 2, 2, "m")];
        assert_eq!(drop_moved(&mut kept, |_: &str| Some(two), &old_found), 0);
        // A keyword is no name: `def` made `async def`-only changes are not renames.
        assert!(!renamed(
            &tokens("x = await f(y)", 1, 1),
            &tokens("x = yield f(y)", 1, 1)
        ));
        // The same code in another file is no rename of this one.
        let mut kept = vec![finding("C5-sync-session-in-async", "b.py", 2, 2, "m")];
        assert_eq!(drop_moved(&mut kept, head, &old_found), 0);
        // The finding's own file is a candidate when the change removed lines there.
        let mut lines = crate::diff::LineSet::default();
        lines.insert(2);
        let olds = vec![("a.py".to_string(), lines)];
        let texts = vec![old_text.to_string()];
        let finding_a = vec![finding("C5-sync-session-in-async", "a.py", 2, 2, "m")];
        assert_eq!(candidates_of(&finding_a, head, &olds, &texts), vec![0]);
    }

    #[test]
    fn a_function_with_more_instances_than_before_stays() {
        let head = |_: &str| Some(NEW);
        let mut kept = vec![finding(
            "F1-http-no-timeout",
            "b.py",
            5,
            5,
            "m (also on line 9 of this function)",
        )];
        let old_found = [(finding("F1-http-no-timeout", "a.py", 4, 6, "m"), OLD)];
        assert_eq!(drop_moved(&mut kept, head, &old_found), 0);
        let old_found = [(
            finding(
                "F1-http-no-timeout",
                "a.py",
                4,
                6,
                "m (also on line 12 of this function)",
            ),
            OLD,
        )];
        assert_eq!(drop_moved(&mut kept, head, &old_found), 1);
    }
}
