//! The human text format: findings grouped by file, each with a code frame, then the skipped files and a
//! one-line summary.

use super::super::finding::{Finding, Report, Skipped};
use super::{Summary, ansi, group_by_path, one_line, plural, summary_line};

/// Code frames show at most this many lines of a finding.
const MAX_FRAME_LINES: usize = 6;

/// Render `report` as text; ANSI colours only when `color` is set.
pub(super) fn render(report: &Report, summary: &Summary, color: bool) -> String {
    let mut out = String::new();
    for (path, findings) in group_by_path(&report.findings) {
        out.push_str(&ansi::paint(&one_line(path), ansi::BOLD, color));
        out.push('\n');
        let loc_width = findings
            .iter()
            .map(|f| location(f).chars().count())
            .max()
            .unwrap_or(0);
        let rule_width = findings
            .iter()
            .map(|f| one_line(&f.rule).chars().count())
            .max()
            .unwrap_or(0);
        for finding in findings {
            render_finding(&mut out, finding, loc_width, rule_width, color);
        }
        out.push('\n');
    }
    if let Some(line) = skipped_line(&report.skipped) {
        out.push_str(&line);
        out.push('\n');
    }
    for c in &report.capped {
        out.push_str(&format!(
            "findings capped in {}: {} reported, {} left out\n",
            one_line(&c.path),
            c.reported,
            c.left_out
        ));
    }
    out.push_str(&summary_line(summary, color));
    out.push('\n');
    out
}

/// `LINE:COL` of a finding.
fn location(finding: &Finding) -> String {
    format!("{}:{}", finding.line, finding.column)
}

/// Left-justify `text` to `width` characters.
fn pad(text: &str, width: usize) -> String {
    let len = text.chars().count();
    let mut padded = text.to_string();
    padded.extend(std::iter::repeat_n(' ', width.saturating_sub(len)));
    padded
}

/// One finding: its headline, code frame and fix.
fn render_finding(
    out: &mut String,
    finding: &Finding,
    loc_width: usize,
    rule_width: usize,
    color: bool,
) {
    let style = ansi::severity(finding.severity);
    let severity = ansi::paint(&pad(finding.severity.as_str(), 8), style, color);
    let rule = pad(&one_line(&finding.rule), rule_width);
    let check = ansi::paint(&format!("[{}]", one_line(&finding.check)), ansi::DIM, color);
    out.push_str(&format!(
        "  {}  {severity}  {rule}  {}  {check}\n",
        pad(&location(finding), loc_width),
        one_line(&finding.message),
    ));
    render_frame(out, finding, style, color);
    if let Some(fix) = &finding.fix {
        let mut lines = fix.replacement.lines();
        let first = lines.next().unwrap_or("");
        let more = if lines.next().is_some() { " …" } else { "" };
        let shown = if fix.replacement.is_empty() {
            "(delete)".to_string()
        } else {
            format!("{}{more}", one_line(first))
        };
        out.push_str(&format!("  fix: {shown}\n"));
    }
}

/// The code frame: numbered source lines behind a `|` gutter and a caret line under the first one.
fn render_frame(out: &mut String, finding: &Finding, caret_style: &str, color: bool) {
    if finding.code.is_empty() {
        return;
    }
    let shown = finding.code.len().min(MAX_FRAME_LINES);
    let last_number = finding.line.saturating_add(shown.saturating_sub(1));
    let width = last_number.to_string().len();
    let gutter = |text: &str| ansi::paint(text, ansi::DIM, color);
    for (offset, raw) in finding.code.iter().take(shown).enumerate() {
        let code = code_line(raw);
        let number = finding.line.saturating_add(offset);
        out.push_str(&gutter(&format!("    {number:>width$} |")));
        if !code.is_empty() {
            out.push(' ');
            out.push_str(&code);
        }
        out.push('\n');
        if offset == 0 {
            let single_line = finding.end_line <= finding.line;
            // A window of a long line: columns count from the window's start (after its `…`).
            let shift = |c: usize| match finding.code_cut {
                Some(cut) if cut > 0 => c.saturating_sub(cut).saturating_add(1),
                _ => c,
            };
            let (lead, carets) = caret_line(
                &code,
                shift(finding.column),
                shift(finding.end_column),
                single_line,
            );
            out.push_str(&gutter(&format!("    {:>width$} |", "")));
            out.push(' ');
            out.push_str(&lead);
            out.push_str(&ansi::paint(&carets, caret_style, color));
            out.push('\n');
        }
    }
    if finding.code.len() > shown {
        let hidden = finding.code.len() - shown;
        out.push_str(&gutter(&format!("    {:>width$} |", "")));
        out.push_str(&format!(
            " … {}\n",
            plural(hidden, "more line", "more lines")
        ));
    }
}

/// A source line made safe to print: trailing line breaks removed, tabs kept, other control characters
/// replaced one for one (so columns still line up).
fn code_line(raw: &str) -> String {
    raw.trim_end_matches(['\n', '\r'])
        .chars()
        .map(|c| {
            if c != '\t' && c.is_control() {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// The caret line under `line`: the lead (spaces, with the line's tabs kept so widths match) and the carets.
///
/// Columns count characters, 1-based, end exclusive. On a single-line finding the carets run from `column` to
/// `end_column`; otherwise to the end of the line. Columns past the line are clamped to just after its end, and
/// there is always at least one caret.
fn caret_line(line: &str, column: usize, end_column: usize, single_line: bool) -> (String, String) {
    let chars: Vec<char> = line.chars().collect();
    let past_end = chars.len().saturating_add(1);
    let start = column.clamp(1, past_end);
    let end = if single_line {
        end_column.min(past_end)
    } else {
        past_end
    };
    let count = end.saturating_sub(start).max(1);
    let lead: String = chars
        .iter()
        .take(start - 1)
        .map(|&c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    (lead, "^".repeat(count))
}

/// `skipped 3 files: 2 binary, 1 too large (> 1 MiB)`; reasons by count, most common first.
fn skipped_line(skipped: &[Skipped]) -> Option<String> {
    if skipped.is_empty() {
        return None;
    }
    let mut reasons: Vec<(String, usize)> = Vec::new();
    for entry in skipped {
        let reason = one_line(&entry.reason);
        let reason = if reason.trim().is_empty() {
            "unknown reason".to_string()
        } else {
            reason
        };
        match reasons.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, count)) => *count += 1,
            None => reasons.push((reason, 1)),
        }
    }
    // Stable sort: equal counts keep their first-appearance order.
    reasons.sort_by_key(|entry| std::cmp::Reverse(entry.1));
    let parts: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    Some(format!(
        "skipped {}: {}",
        plural(skipped.len(), "file", "files"),
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::super::super::finding::{FailOn, Report, Severity};
    use super::super::test_support::{finding, sample_report};
    use super::super::{Format, RenderOptions, render as render_any};
    use super::*;

    fn text(report: &Report, color: bool) -> String {
        let opts = RenderOptions {
            color,
            fail_on: FailOn::At(Severity::High),
            tool_version: "1.2.3",
        };
        render_any(report, &[], Format::Text, &opts)
    }

    #[test]
    fn no_ansi_without_color() {
        let out = text(&sample_report(), false);
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(out.contains("critical"));
    }

    #[test]
    fn ansi_with_color() {
        let out = text(&sample_report(), true);
        assert!(
            out.contains("\x1b[1mapp/main.py\x1b[0m"),
            "path bold: {out}"
        );
        assert!(
            out.contains("\x1b[1;31mcritical"),
            "critical bold red: {out}"
        );
        assert!(out.contains("\x1b[31mhigh"), "high red: {out}");
        assert!(out.contains("\x1b[33mmedium"), "medium yellow: {out}");
        assert!(out.contains("\x1b[34mlow"), "low blue: {out}");
    }

    #[test]
    fn control_characters_in_input_never_reach_plain_output() {
        let mut report = sample_report();
        report.findings[0].message = "evil \u{1b}[2J message\nsecond".to_string();
        report.findings[0].code = vec!["\u{1b}[31mx = 1\r".to_string()];
        let out = text(&report, false);
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(out.contains("evil \u{FFFD}[2J message second"), "{out}");
        assert!(!out.contains('\r'));
    }

    #[test]
    fn grouped_by_file_in_order_with_blank_line_between() {
        let out = text(&sample_report(), false);
        let lines: Vec<&str> = out.lines().collect();
        let main = lines.iter().position(|l| *l == "app/main.py").unwrap();
        let worker = lines.iter().position(|l| *l == "app/worker.py").unwrap();
        assert!(main < worker);
        assert_eq!(lines[worker - 1], "", "blank line between files");
        let c5 = lines
            .iter()
            .position(|l| l.contains("[C5-blocking-sleep]"))
            .unwrap();
        let f1 = lines
            .iter()
            .position(|l| l.contains("[F1-no-timeout]"))
            .unwrap();
        let o1 = lines
            .iter()
            .position(|l| l.contains("[O1-print-log]"))
            .unwrap();
        let i4 = lines
            .iter()
            .position(|l| l.contains("[I4-unpinned]"))
            .unwrap();
        assert!(main < c5 && c5 < f1 && f1 < worker && worker < o1 && o1 < i4);
        // Header line shape: location, severity, rule, message, check.
        assert_eq!(
            lines[c5],
            "  3:5   critical  C5  C5-blocking-sleep message  [C5-blocking-sleep]"
        );
        // Only one header per file even though each has two findings.
        assert_eq!(lines.iter().filter(|l| **l == "app/main.py").count(), 1);
    }

    #[test]
    fn code_frame_and_fix_line() {
        let out = text(&sample_report(), false);
        let lines: Vec<&str> = out.lines().collect();
        let code = lines
            .iter()
            .position(|l| *l == "    3 |     time.sleep(1)")
            .unwrap();
        assert_eq!(lines[code + 1], "      |     ^^^^^^^^^^^^^");
        assert_eq!(lines[code + 2], "  fix: await asyncio.sleep(1)");
        // Multi-line finding: numbered lines, carets to the end of the first line.
        let first = lines
            .iter()
            .position(|l| *l == "    10 | httpx.get(")
            .unwrap();
        assert_eq!(lines[first + 1], "       | ^^^^^^^^^^");
        assert_eq!(lines[first + 2], "    11 |     url,");
        assert_eq!(lines[first + 3], "    12 | )");
    }

    #[test]
    fn caret_under_multibyte_line_counts_characters() {
        // "é" and "—" are multi-byte; the call starts at character 12.
        let line = "x = \"é—ü\"; call()";
        let start = line.chars().position(|c| c == 'c').unwrap() + 1;
        let mut f = finding("m.py", 1, start, 1, start + 6, Severity::High, "C5", "C5-x");
        f.code = vec![line.to_string()];
        let report = Report {
            findings: vec![f],
            ..Report::default()
        };
        let out = text(&report, false);
        let lines: Vec<&str> = out.lines().collect();
        let at = lines.iter().position(|l| l.ends_with(line)).unwrap();
        let caret_row = lines[at + 1];
        let code_chars: Vec<char> = lines[at].chars().collect();
        let caret_chars: Vec<char> = caret_row.chars().collect();
        let first_caret = caret_chars.iter().position(|&c| c == '^').unwrap();
        let caret_count = caret_chars.iter().filter(|&&c| c == '^').count();
        assert_eq!(caret_count, 6);
        let underlined: String = code_chars[first_caret..first_caret + 6].iter().collect();
        assert_eq!(underlined, "call()");
    }

    #[test]
    fn caret_keeps_tabs_and_clamps_columns() {
        assert_eq!(
            caret_line("\tx\ty = 1", 5, 6, true),
            ("\t \t ".to_string(), "^".to_string())
        );
        // Past the end: one caret just after the line.
        assert_eq!(
            caret_line("ab", 40, 90, true),
            ("  ".to_string(), "^".to_string())
        );
        // Backwards or zero columns: still one caret at a valid place.
        assert_eq!(
            caret_line("abc", 3, 1, true),
            ("  ".to_string(), "^".to_string())
        );
        assert_eq!(
            caret_line("abc", 0, 0, true),
            (String::new(), "^".to_string())
        );
        // Multi-line: to the end of the first line.
        assert_eq!(
            caret_line("abcdef", 3, 1, false),
            ("  ".to_string(), "^^^^".to_string())
        );
        assert_eq!(
            caret_line("", 1, 1, false),
            (String::new(), "^".to_string())
        );
    }

    #[test]
    fn skipped_reasons_grouped_and_summary_last() {
        let out = text(&sample_report(), false);
        let lines: Vec<&str> = out.lines().collect();
        let n = lines.len();
        assert_eq!(
            lines[n - 2],
            "skipped 3 files: 2 binary, 1 too large (> 1 MiB)"
        );
        assert_eq!(
            lines[n - 1],
            "4 findings (1 critical, 1 high, 1 medium, 1 low) in 2 files · 12 files analysed · 1 suppressed \
             · fail-on high: FAILED"
        );
    }

    #[test]
    fn empty_report_prints_only_the_summary() {
        let report = Report {
            files_analyzed: 12,
            ..Report::default()
        };
        assert_eq!(
            text(&report, false),
            "No findings · 12 files analysed · fail-on high: passed\n"
        );
    }

    #[test]
    fn long_frames_are_cut() {
        let mut f = finding("m.py", 1, 1, 9, 2, Severity::Low, "O1", "O1-x");
        f.code = (1..=9).map(|i| format!("line{i}")).collect();
        let report = Report {
            findings: vec![f],
            ..Report::default()
        };
        let out = text(&report, false);
        assert!(out.contains("    6 | line6\n"), "{out}");
        assert!(!out.contains("line7"), "{out}");
        assert!(out.contains("… 3 more lines"), "{out}");
    }
}
