//! Inline suppressions: `# prodaudit: ignore[C5] reason` (several ids comma-separated) on the line of a finding
//! or on the line above it; and, on the finding's own line, another linter's suppression of the very same concern
//! (`# noqa: ASYNC251`, `# nosec B113`, `# type: ignore[ASYNC101]`): the team has already looked at that line
//! for that problem and decided, so saying it again is a comment nobody wants.

use std::collections::HashMap;

/// Suppression comments of one file: line → the ids they name (upper-cased for rubric ids, as written for checks).
#[derive(Debug, Default)]
pub struct Suppressions {
    by_line: HashMap<usize, Vec<String>>,
    /// Line → the codes of other linters' suppressions on it (`noqa`, `nosec`, `type: ignore[...]`), upper-cased.
    foreign: HashMap<usize, Vec<String>>,
}

/// Other linters' codes that name exactly one of our checks' concerns, and those checks: ruff's and
/// flake8-async's blocking-call-in-async rules, ruff's/bandit's request-without-timeout. A bare `# noqa` (no
/// codes) is not taken: it is written for many unrelated reasons.
const FOREIGN_CODES: &[(&str, &[&str])] = &[
    (
        "ASYNC101",
        &[
            "C5-blocking-sleep",
            "C5-blocking-file-io",
            "C5-blocking-subprocess",
        ],
    ),
    ("ASYNC210", &["C5-blocking-http"]),
    ("ASYNC212", &["C5-blocking-http"]),
    ("ASYNC220", &["C5-blocking-subprocess"]),
    ("ASYNC221", &["C5-blocking-subprocess"]),
    ("ASYNC222", &["C5-blocking-subprocess"]),
    ("ASYNC230", &["C5-blocking-file-io"]),
    ("ASYNC251", &["C5-blocking-sleep"]),
    ("S113", &["F1-requests-no-timeout"]),
    ("B113", &["F1-requests-no-timeout"]),
];

/// The codes of another linter's suppression comment on one line: after `noqa:`, after `nosec`, or inside
/// `type: ignore[...]`; upper-cased. Only the comment part of the line is read (after its first `#`).
pub fn foreign_codes(line: &str) -> Vec<String> {
    let Some(hash) = line.find('#') else {
        return Vec::new();
    };
    let comment = &line[hash..];
    let lower = comment.to_ascii_lowercase();
    let mut codes = Vec::new();
    for marker in ["noqa:", "nosec", "type: ignore["] {
        let mut from = 0;
        while let Some(at) = lower[from..].find(marker) {
            let start = from + at + marker.len();
            // The codes run until the next comment marker or the closing bracket.
            let tail = &comment[start..];
            let end = tail.find(['#', ']']).unwrap_or(tail.len());
            codes.extend(
                tail[..end]
                    .split(|c: char| c == ',' || c == ':' || c.is_whitespace())
                    .map(|s| s.trim().to_ascii_uppercase())
                    .filter(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric())),
            );
            from = start;
        }
    }
    codes
}

/// Parse one line's suppression comment, if any: the ids inside `ignore[...]`.
pub fn parse_comment(line: &str) -> Option<Vec<String>> {
    let hash = line.find('#')?;
    let mut rest = line[hash..].trim_start_matches('#').trim_start();
    // Allow the marker after other comment text: `# noqa: E501  # prodaudit: ignore[C5]`.
    loop {
        if let Some(after) = rest.strip_prefix("prodaudit:") {
            let after = after.trim_start();
            let inner = after.strip_prefix("ignore[")?;
            let close = inner.find(']')?;
            let ids: Vec<String> = inner[..close]
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            return (!ids.is_empty()).then_some(ids);
        }
        let next = rest.find('#')?;
        rest = rest[next..].trim_start_matches('#').trim_start();
    }
}

impl Suppressions {
    /// Collect the suppressions of a file's text.
    pub fn scan(text: &str) -> Self {
        let mut by_line = HashMap::new();
        let mut foreign = HashMap::new();
        let ours = text.contains("prodaudit:");
        let theirs = ["noqa", "nosec", "type: ignore["]
            .iter()
            .any(|m| text.contains(m));
        if !ours && !theirs {
            return Suppressions { by_line, foreign };
        }
        for (i, line) in text.lines().enumerate() {
            if ours
                && line.contains("prodaudit:")
                && let Some(ids) = parse_comment(line)
            {
                by_line.insert(i + 1, ids);
            }
            if theirs && line.contains('#') {
                let codes = foreign_codes(line);
                if !codes.is_empty() {
                    foreign.insert(i + 1, codes);
                }
            }
        }
        Suppressions { by_line, foreign }
    }

    /// Is a finding of `rule`/`check` starting on `line` suppressed?
    pub fn covers(&self, line: usize, rule: &str, check: &str) -> bool {
        let by_foreign = self.foreign.get(&line).is_some_and(|codes| {
            codes.iter().any(|code| {
                FOREIGN_CODES
                    .iter()
                    .any(|(c, checks)| c == code && checks.contains(&check))
            })
        });
        by_foreign
            || [line, line.saturating_sub(1)].iter().any(|l| {
                self.by_line.get(l).is_some_and(|ids| {
                    ids.iter()
                        .any(|id| id.eq_ignore_ascii_case(rule) || id == check || id == "*")
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_reason() {
        assert_eq!(
            parse_comment("x = 1  # prodaudit: ignore[C5, F1] legacy client"),
            Some(vec!["C5".to_string(), "F1".to_string()])
        );
        assert_eq!(
            parse_comment("# noqa: E501 # prodaudit: ignore[O1]"),
            Some(vec!["O1".to_string()])
        );
        assert_eq!(parse_comment("# prodaudit: ignore[]"), None);
        assert_eq!(parse_comment("# prodaudit: ignore C5"), None);
        assert_eq!(parse_comment("no comment here"), None);
        assert_eq!(parse_comment("# prodaudit: ignore[C5"), None);
    }

    #[test]
    fn covers_same_line_and_line_above_only() {
        let s = Suppressions::scan(
            "# prodaudit: ignore[C5] ok\ntime.sleep(1)\n\ntime.sleep(2)  # prodaudit: ignore[c5]\n",
        );
        assert!(s.covers(2, "C5", "C5-blocking-sleep"));
        assert!(s.covers(1, "C5", "x"));
        assert!(!s.covers(3, "C5", "x"));
        assert!(
            s.covers(4, "C5", "x"),
            "rubric ids match case-insensitively"
        );
        assert!(!s.covers(2, "F1", "F1-requests-no-timeout"));
        let by_check = Suppressions::scan("a()  # prodaudit: ignore[C5-blocking-sleep]\n");
        assert!(by_check.covers(1, "C5", "C5-blocking-sleep"));
        assert!(!by_check.covers(1, "C5", "C5-blocking-http"));
    }

    #[test]
    fn other_linters_suppressions_of_the_same_concern() {
        let s = Suppressions::scan(
            "time.sleep(1)  # type: ignore[ASYNC101]\n\
             requests.get(u)  # noqa: S113, E501\n\
             requests.get(u)  # nosec B113\n\
             requests.get(u)  # noqa\n\
             requests.get(u)  # noqa: ASYNC210\n\
             # noqa: S113\n\
             requests.get(u)\n",
        );
        assert!(s.covers(1, "C5", "C5-blocking-sleep"));
        assert!(s.covers(2, "F1", "F1-requests-no-timeout"));
        assert!(s.covers(3, "F1", "F1-requests-no-timeout"));
        assert!(
            !s.covers(4, "F1", "F1-requests-no-timeout"),
            "a bare noqa names no concern"
        );
        assert!(s.covers(5, "C5", "C5-blocking-http"));
        assert!(
            !s.covers(5, "F1", "F1-requests-no-timeout"),
            "a code silences only its own concern"
        );
        assert!(
            !s.covers(7, "F1", "F1-requests-no-timeout"),
            "another linter's code covers its own line only"
        );
        assert_eq!(
            foreign_codes("x  # noqa: e501,s113 # why"),
            ["E501", "S113"]
        );
    }
}
