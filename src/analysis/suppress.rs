//! Inline suppressions: `# prodaudit: ignore[C5] reason` (several ids comma-separated) on the line of a finding
//! or on the line above it.

use std::collections::HashMap;

/// Suppression comments of one file: line → the ids they name (upper-cased for rubric ids, as written for checks).
#[derive(Debug, Default)]
pub struct Suppressions {
    by_line: HashMap<usize, Vec<String>>,
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
        if !text.contains("prodaudit:") {
            return Suppressions { by_line };
        }
        for (i, line) in text.lines().enumerate() {
            if line.contains("prodaudit:")
                && let Some(ids) = parse_comment(line)
            {
                by_line.insert(i + 1, ids);
            }
        }
        Suppressions { by_line }
    }

    /// Is a finding of `rule`/`check` starting on `line` suppressed?
    pub fn covers(&self, line: usize, rule: &str, check: &str) -> bool {
        [line, line.saturating_sub(1)].iter().any(|l| {
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
}
