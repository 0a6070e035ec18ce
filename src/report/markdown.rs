//! Markdown for GitHub: inline review comments with a hidden fingerprint marker, the review body, and the
//! check run's title, summary and annotations.

use super::finding::{Finding, Severity};
use std::collections::BTreeMap;

/// The stable name of the check run (branch protection requires it by name).
pub const CHECK_NAME: &str = "production-standards";

/// Hidden marker carrying a finding's fingerprint in a comment body.
pub fn marker(fingerprint: &str) -> String {
    format!("<!-- prodaudit:fp={fingerprint} -->")
}

/// The fingerprints of the markers in a comment body.
pub fn markers_in(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<!-- prodaudit:fp=") {
        let after = &rest[i + "<!-- prodaudit:fp=".len()..];
        match after.find(" -->") {
            Some(end) => {
                let fp = &after[..end];
                if !fp.is_empty() && fp.len() <= 64 && fp.chars().all(|c| c.is_ascii_alphanumeric())
                {
                    out.push(fp.to_string());
                }
                rest = &after[end..];
            }
            None => break,
        }
    }
    out
}

fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
    }
}

/// An inline review comment: `**HIGH · C5 · Never block the event loop**`, what is wrong on this line, the
/// conforming pattern (folded), a suggestion block when the fix covers whole lines, and the marker.
pub fn comment_body(f: &Finding) -> String {
    let mut s = format!(
        "**{} · {} · {}**\n\n{}\n",
        severity_label(f.severity),
        f.rule,
        f.standard,
        f.message
    );
    if let Some(suggestion) = suggestion(f) {
        s.push_str(&format!("\n```suggestion\n{suggestion}\n```\n"));
    }
    s.push_str(&format!(
        "\n<details><summary>Conforming pattern ({})</summary>\n\n{}\n\n</details>\n\n<sub>`{}` · suppress with `# prodaudit: ignore[{}] reason`</sub>\n{}",
        f.rule,
        f.conforming,
        f.check,
        f.rule,
        marker(&f.fingerprint)
    ));
    s
}

/// The replacement of the finding's line when its fix is on that one line: GitHub's suggestion replaces whole
/// lines, so the fix is spliced into the original line.
pub fn suggestion(f: &Finding) -> Option<String> {
    let fix = f.fix.as_ref()?;
    if fix.line != fix.end_line || fix.line != f.line || fix.replacement.contains('\n') {
        return None;
    }
    if f.code_cut.is_some() {
        return None; // only a window of the line is at hand
    }
    let line = f.code.first()?;
    let chars: Vec<char> = line.chars().collect();
    let start = fix.column.checked_sub(1)?;
    let end = fix.end_column.checked_sub(1)?;
    if start > end || end > chars.len() {
        return None;
    }
    let before: String = chars[..start].iter().collect();
    let after: String = chars[end..].iter().collect();
    Some(format!("{before}{}{after}", fix.replacement))
}

/// Counts by severity, most severe first, e.g. "1 critical, 2 high".
pub fn counts(findings: &[&Finding]) -> String {
    let parts: Vec<String> = Severity::ALL
        .iter()
        .filter_map(|s| {
            let n = findings.iter().filter(|f| f.severity == *s).count();
            (n > 0).then(|| format!("{n} {s}"))
        })
        .collect();
    if parts.is_empty() {
        "no findings".into()
    } else {
        parts.join(", ")
    }
}

/// The body of the review: a one-line count, and the findings that did not become inline comments.
pub fn review_body(inline: usize, overflow: &[&Finding]) -> String {
    let mut s = format!(
        "**prodaudit** found {} new finding(s) on the changed lines",
        inline + overflow.len()
    );
    if overflow.is_empty() {
        s.push('.');
        return s;
    }
    s.push_str(&format!(
        "; {} are listed here rather than inline:\n\n",
        overflow.len()
    ));
    for f in overflow {
        s.push_str(&format!(
            "- `{}:{}` **{} · {}** {}\n",
            f.path,
            f.line,
            severity_label(f.severity),
            f.rule,
            f.message
        ));
    }
    for f in overflow {
        s.push_str(&marker(&f.fingerprint));
    }
    s
}

/// Check-run title, e.g. "3 findings: 1 critical, 2 high" or "No findings on the changed lines".
pub fn check_title(findings: &[&Finding]) -> String {
    if findings.is_empty() {
        return "No findings on the changed lines".into();
    }
    format!("{} finding(s): {}", findings.len(), counts(findings))
}

/// GitHub's limit on a check run's summary and text.
pub const MAX_SUMMARY: usize = 65_535;

/// Check-run summary: a table by severity and rule, and notes (skipped files, config problems).
pub fn check_summary(findings: &[&Finding], notes: &[String]) -> String {
    let mut s = String::new();
    if findings.is_empty() {
        s.push_str("prodaudit found nothing to report on the lines this pull request changes.\n");
    } else {
        let mut by_rule: BTreeMap<(&str, &str), [usize; 4]> = BTreeMap::new();
        for f in findings {
            let row = by_rule
                .entry((f.rule.as_str(), f.standard.as_str()))
                .or_default();
            let i = match f.severity {
                Severity::Critical => 0,
                Severity::High => 1,
                Severity::Medium => 2,
                Severity::Low => 3,
            };
            row[i] += 1;
        }
        s.push_str(
            "| rule | standard | critical | high | medium | low |\n|---|---|---|---|---|---|\n",
        );
        for ((rule, standard), n) in &by_rule {
            s.push_str(&format!(
                "| {rule} | {standard} | {} | {} | {} | {} |\n",
                n[0], n[1], n[2], n[3]
            ));
        }
    }
    for n in notes {
        s.push_str(&format!("\n{n}\n"));
    }
    truncate(s, MAX_SUMMARY)
}

/// Cut text to GitHub's limit on a character boundary.
pub fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let mut cut = max.saturating_sub(20);
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str("\n\n… (truncated)");
    s
}

/// One check-run annotation.
pub fn annotation(f: &Finding) -> serde_json::Value {
    let level = match f.severity {
        Severity::Critical | Severity::High => "failure",
        Severity::Medium => "warning",
        Severity::Low => "notice",
    };
    let mut a = serde_json::json!({
        "path": f.path,
        "start_line": f.line,
        "end_line": f.end_line.max(f.line),
        "annotation_level": level,
        "title": format!("{} · {} ({})", f.rule, f.standard, f.severity),
        "message": truncate(f.message.clone(), 64 * 1024),
    });
    // Columns only when the annotation is on one line.
    if f.line == f.end_line && f.end_column >= f.column {
        a["start_column"] = f.column.into();
        a["end_column"] = f.end_column.into();
    }
    a
}

/// `/audit help`.
pub fn help_text() -> String {
    "**prodaudit** commands (from users with write access):\n\n\
     - `/audit` — re-audit the lines this pull request changes\n\
     - `/audit full` — audit every line of the changed files\n\
     - `/audit help` — this message\n\n\
     Configure it in `.github/prodaudit.yml` on the base branch: `fail_on` (critical|high|medium|low|never), \
     `rules.disable` (rule or detector ids), `rules.severity` (id → severity), `paths.include` / `paths.exclude` \
     (globs), `review.max_inline_comments` (default 25), `review.drafts` (audit drafts, default false). \
     Suppress one finding with `# prodaudit: ignore[C5] reason` on its line or the line above."
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Fix;

    fn finding() -> Finding {
        Finding {
            rule: "C5".into(),
            check: "C5-blocking-sleep".into(),
            severity: Severity::High,
            path: "app/a.py".into(),
            line: 4,
            end_line: 4,
            column: 5,
            end_column: 18,
            message: "`time.sleep(…)` blocks".into(),
            standard: "Never block the event loop".into(),
            conforming: "use `await asyncio.sleep`".into(),
            fingerprint: "0123456789abcdef".into(),
            fix: Some(Fix {
                line: 4,
                column: 5,
                end_line: 4,
                end_column: 18,
                replacement: "await asyncio.sleep(1)".into(),
            }),
            code: vec!["    time.sleep(1)  # wait".into()],
            code_cut: None,
        }
    }

    #[test]
    fn comment_has_heading_suggestion_and_marker() {
        let body = comment_body(&finding());
        assert!(body.starts_with("**HIGH · C5 · Never block the event loop**"));
        assert!(
            body.contains("```suggestion\n    await asyncio.sleep(1)  # wait\n```"),
            "{body}"
        );
        assert_eq!(markers_in(&body), vec!["0123456789abcdef".to_string()]);
    }

    #[test]
    fn markers_ignore_garbage() {
        assert!(markers_in("<!-- prodaudit:fp=abc").is_empty());
        assert!(markers_in("<!-- prodaudit:fp=a b -->").is_empty());
        assert_eq!(
            markers_in("x <!-- prodaudit:fp=aa --> y <!-- prodaudit:fp=bb -->"),
            vec!["aa", "bb"]
        );
    }

    #[test]
    fn annotations_and_titles() {
        let f = finding();
        let a = annotation(&f);
        assert_eq!(a["annotation_level"], "failure");
        assert_eq!(a["start_column"], 5);
        let mut multi = f.clone();
        multi.end_line = 6;
        assert!(annotation(&multi).get("start_column").is_none());
        assert_eq!(check_title(&[&f, &f]), "2 finding(s): 2 high");
        assert_eq!(check_title(&[]), "No findings on the changed lines");
        assert!(
            check_summary(&[&f], &[])
                .contains("| C5 | Never block the event loop | 0 | 1 | 0 | 0 |")
        );
        let long = "é".repeat(40_000);
        assert!(truncate(long, MAX_SUMMARY).len() <= MAX_SUMMARY);
    }
}
