//! GitHub Actions workflow commands: one `::error|warning|notice file=…::message` line per finding, then the
//! plain one-line summary.

use super::super::finding::{Finding, Report, Severity};
use super::{Summary, summary_line};

/// Render `report` as workflow commands followed by the summary line.
pub(super) fn render(report: &Report, summary: &Summary) -> String {
    let mut out = String::new();
    for finding in &report.findings {
        out.push_str(&command(finding));
        out.push('\n');
    }
    out.push_str(&summary_line(summary, false));
    out.push('\n');
    out
}

/// The workflow command for one finding.
fn command(finding: &Finding) -> String {
    let line = finding.line.max(1);
    let end_line = finding.end_line.max(line);
    let mut properties = vec![
        format!("file={}", escape_property(&finding.path)),
        format!("line={line}"),
        format!("endLine={end_line}"),
    ];
    // GitHub only honours columns when the annotation starts and ends on the same line.
    if end_line == line {
        let column = finding.column.max(1);
        let end_column = finding.end_column.max(column);
        properties.push(format!("col={column}"));
        properties.push(format!("endColumn={end_column}"));
    }
    let title = format!(
        "{} {} ({})",
        finding.rule,
        finding.check,
        finding.severity.as_str()
    );
    properties.push(format!("title={}", escape_property(&title)));
    format!(
        "::{} {}::{}",
        level(finding.severity),
        properties.join(","),
        escape_data(&finding.message)
    )
}

/// error for critical and high, warning for medium, notice for low.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "notice",
    }
}

/// Escape a command's message: `%`, `\r`, `\n`. Other control characters (which the runner would pass to the
/// log as they are, terminal escapes included) become U+FFFD.
fn escape_data(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            '\t' => out.push('\t'),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escape a property value: as [`escape_data`], plus `:` and `,`.
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::super::super::finding::{FailOn, Report, Severity};
    use super::super::test_support::{finding, sample_report};
    use super::super::{Format, RenderOptions, render as render_any, summary};
    use super::*;

    fn github(report: &Report) -> String {
        let opts = RenderOptions {
            color: true,
            fail_on: FailOn::At(Severity::High),
            tool_version: "1.2.3",
        };
        render_any(report, &[], Format::Github, &opts)
    }

    #[test]
    fn escapes_properties_and_message() {
        let mut f = finding(
            "dir,with:odd%/a.py",
            4,
            2,
            4,
            9,
            Severity::High,
            "C5",
            "C5:x,y%",
        );
        f.message = "50% of calls: a, b\r\nnext line".to_string();
        assert_eq!(
            command(&f),
            "::error file=dir%2Cwith%3Aodd%25/a.py,line=4,endLine=4,col=2,endColumn=9,\
             title=C5 C5%3Ax%2Cy%25 (high)::50%25 of calls: a, b%0D%0Anext line"
        );
        assert_eq!(escape_property("a\nb\rc"), "a%0Ab%0Dc");
        assert_eq!(escape_data("a:b,c%"), "a:b,c%25");
        assert_eq!(escape_data("\u{1b}[31m"), "\u{FFFD}[31m");
    }

    #[test]
    fn columns_only_on_single_line_findings() {
        let single = finding("a.py", 3, 5, 3, 18, Severity::Critical, "C5", "C5-x");
        let multi = finding("a.py", 10, 1, 12, 2, Severity::High, "F1", "F1-x");
        let single = command(&single);
        let multi = command(&multi);
        assert!(single.contains(",col=5,endColumn=18,"), "{single}");
        assert!(multi.contains("line=10,endLine=12,title="), "{multi}");
        assert!(!multi.contains("col="), "{multi}");
        assert!(!multi.contains("endColumn="), "{multi}");
    }

    #[test]
    fn levels_one_line_per_finding_and_plain_summary_last() {
        let report = sample_report();
        let out = github(&report);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), report.findings.len() + 1);
        assert!(lines[0].starts_with("::error file=app/main.py,line=3,"));
        assert!(lines[1].starts_with("::error "));
        assert!(lines[2].starts_with("::warning "));
        assert!(lines[3].starts_with("::notice "));
        let expected = summary(&report, FailOn::At(Severity::High)).line();
        assert_eq!(lines[4], expected);
        assert!(!out.contains('\u{1b}'), "no colour even when asked");
        assert!(!out.contains("::notice::"));
    }

    #[test]
    fn zero_positions_are_made_valid() {
        let f = finding("a.py", 0, 0, 0, 0, Severity::Medium, "O1", "O1-x");
        assert_eq!(
            command(&f),
            "::warning file=a.py,line=1,endLine=1,col=1,endColumn=1,title=O1 O1-x (medium)::O1-x message"
        );
    }
}
