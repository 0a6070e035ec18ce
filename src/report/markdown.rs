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

/// Hidden marker naming one review (see `GitHub::create_review`): found after an uncertain failure, it says
/// the review was created. Not a fingerprint marker: [`markers_in`] does not read it.
pub fn review_marker(key: &str) -> String {
    format!("<!-- prodaudit:review={key} -->")
}

/// Hidden marker naming one conversation comment (see `GitHub::create_issue_comment`).
pub fn comment_marker(key: &str) -> String {
    format!("<!-- prodaudit:comment={key} -->")
}

/// GitHub refuses review and comment bodies over 65,536 characters. Bodies are kept under this many bytes
/// (never fewer bytes than characters), which leaves room for the review's own marker.
pub const MAX_BODY: usize = 65_000;

/// GitHub's limit on an annotation's title (characters).
pub const MAX_ANNOTATION_TITLE: usize = 255;

/// GitHub's limit on an annotation's message and raw details (64 KB).
pub const MAX_ANNOTATION_MESSAGE: usize = 64 * 1024 - 1;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// `text` cut to fit `max` bytes together with `tail` (kept whole: a marker is never cut), saying it was cut,
/// and closing a code fence the cut left open.
pub fn fit(text: &str, tail: &str, max: usize) -> String {
    if text.len() + tail.len() <= max {
        return format!("{text}{tail}");
    }
    const NOTE: &str = "\n```\n\n… (cut: too long for GitHub)\n";
    let keep = prefix(text, max.saturating_sub(tail.len() + NOTE.len()));
    let fences = keep
        .lines()
        .filter(|l| l.trim_start().starts_with("```"))
        .count();
    let note = if fences % 2 == 1 { NOTE } else { &NOTE[4..] };
    format!("{keep}{note}{tail}")
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
    let full = comment_text(f, true);
    let tail = format!("\n{}", marker(&f.fingerprint));
    if full.len() + tail.len() <= MAX_BODY {
        return format!("{full}{tail}");
    }
    // Too long (a suggestion splices a very long line): without the suggestion, then cut.
    fit(&comment_text(f, false), &tail, MAX_BODY)
}

fn comment_text(f: &Finding, with_suggestion: bool) -> String {
    let mut s = format!(
        "**{} · {} · {}**\n\n{}\n",
        severity_label(f.severity),
        f.rule,
        f.standard,
        f.message
    );
    if with_suggestion && let Some(suggestion) = suggestion(f) {
        s.push_str(&format!("\n```suggestion\n{suggestion}\n```\n"));
    }
    s.push_str(&format!(
        "\n<details><summary>Conforming pattern ({})</summary>\n\n{}\n\n</details>\n\n<sub>`{}` · suppress with `# prodaudit: ignore[{}] reason`</sub>",
        f.rule, f.conforming, f.check, f.rule,
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

/// The body of the review: a one-line count, and the findings that did not become inline comments, each with
/// its marker, as many as fit in [`MAX_BODY`]; the rest are counted ("… and 2,345 more findings: see the check
/// run"). Returns the body and how many of `overflow` it lists.
pub fn review_body(inline: usize, overflow: &[&Finding]) -> (String, usize) {
    let mut s = format!(
        "**prodaudit** found {} new finding(s) on the changed lines",
        thousands(inline + overflow.len())
    );
    if overflow.is_empty() {
        s.push('.');
        return (s, 0);
    }
    s.push_str(&format!(
        "; {} are listed here rather than inline:\n\n",
        thousands(overflow.len())
    ));
    // Room for the note about the rest (and the review marker the client adds).
    const RESERVE: usize = 200;
    let mut markers = String::new();
    let mut listed = 0;
    for f in overflow {
        let item = format!(
            "- `{}:{}` **{} · {}** {}\n",
            f.path,
            f.line,
            severity_label(f.severity),
            f.rule,
            f.message
        );
        // One item may not take more than a tenth of the body.
        let item = if item.len() > MAX_BODY / 10 {
            format!("{}…\n", prefix(&item, MAX_BODY / 10))
        } else {
            item
        };
        let m = marker(&f.fingerprint);
        if s.len() + item.len() + markers.len() + m.len() + RESERVE > MAX_BODY {
            break;
        }
        s.push_str(&item);
        markers.push_str(&m);
        listed += 1;
    }
    if listed < overflow.len() {
        s.push_str(&format!(
            "\n… and {} more finding(s): see the check run.\n",
            thousands(overflow.len() - listed)
        ));
    }
    s.push_str(&markers);
    (s, listed)
}

/// 2345 → "2,345".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
    // Notes (one per skipped file: up to thousands) as many as fit, then how many were left out.
    let mut shown = 0;
    for n in notes {
        let item = format!("\n{}\n", prefix(n, 2_000));
        if s.len() + item.len() + 100 > MAX_SUMMARY {
            break;
        }
        s.push_str(&item);
        shown += 1;
    }
    if shown < notes.len() {
        s.push_str(&format!(
            "\n… and {} more note(s) left out (GitHub's limit on a summary).\n",
            thousands(notes.len() - shown)
        ));
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

/// At most `max` characters, the last one "…" when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
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
        "title": truncate_chars(&format!("{} · {} ({})", f.rule, f.standard, f.severity), MAX_ANNOTATION_TITLE),
        "message": truncate(f.message.clone(), MAX_ANNOTATION_MESSAGE),
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

    /// Item 9 of issue 15: a suggestion splicing a very long line, a very long message: the comment stays
    /// within GitHub's limit, says it was cut, and its marker is whole.
    #[test]
    fn long_lines_do_not_make_long_comments() {
        let mut f = finding();
        f.code = vec![format!("    time.sleep(1)  # {}", "é".repeat(100_000))];
        f.message = format!("`time.sleep` blocks {}", "x".repeat(80_000));
        let body = comment_body(&f);
        assert!(body.len() <= MAX_BODY, "{}", body.len());
        assert_eq!(markers_in(&body), vec!["0123456789abcdef".to_string()]);
        assert!(body.contains("cut: too long"), "says it was cut");
        // A short one is whole.
        let short = comment_body(&finding());
        assert!(!short.contains("cut: too long"));
    }

    #[test]
    fn review_body_lists_what_fits_and_counts_the_rest() {
        let many: Vec<Finding> = (0..3000)
            .map(|i| {
                let mut f = finding();
                f.fingerprint = format!("{i:016x}");
                f.message = format!("finding {i} {}", "m".repeat(100));
                f
            })
            .collect();
        let refs: Vec<&Finding> = many.iter().collect();
        let (body, listed) = review_body(25, &refs);
        assert!(body.len() <= MAX_BODY, "{}", body.len());
        assert!(listed > 100 && listed < 3000, "{listed}");
        assert!(
            body.contains(&format!(
                "… and {} more finding(s): see the check run.",
                thousands(3000 - listed)
            )),
            "{}",
            &body[body.len().saturating_sub(300)..]
        );
        assert_eq!(
            markers_in(&body).len(),
            listed,
            "one whole marker per listed finding"
        );
        assert!(body.starts_with("**prodaudit** found 3,025 new finding(s)"));
        let (small, n) = review_body(1, &refs[..2]);
        assert_eq!(n, 2);
        assert!(!small.contains("more finding"));
        assert_eq!(thousands(2345), "2,345");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }

    #[test]
    fn summaries_and_annotations_are_bounded() {
        let notes: Vec<String> = (0..5000)
            .map(|i| format!("Skipped `vendor/pkg/file_{i}.py`: vendored or generated."))
            .collect();
        let s = check_summary(&[], &notes);
        assert!(s.chars().count() <= MAX_SUMMARY);
        assert!(
            s.contains("more note(s) left out"),
            "{}",
            &s[s.len() - 200..]
        );
        let mut f = finding();
        f.standard = "s".repeat(1000);
        f.message = "m".repeat(100_000);
        let a = annotation(&f);
        assert!(a["title"].as_str().unwrap_or_default().chars().count() <= MAX_ANNOTATION_TITLE);
        assert!(a["message"].as_str().unwrap_or_default().len() <= MAX_ANNOTATION_MESSAGE);
    }
}
