//! Output formats: human text (default), a JSON document, SARIF 2.1.0 for code scanning, and GitHub Actions
//! workflow-command annotations.
//!
//! Every renderer is total: whatever a [`Report`] holds (empty strings, zero or huge line numbers, control
//! characters in messages), rendering returns a string and never panics.

mod github;
mod json;
mod sarif;
mod text;

use super::finding::{FailOn, Finding, Report, RuleMeta, Severity, Skipped};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

/// An output format of `prodaudit audit --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human-readable text grouped by file, with code frames (the default).
    #[default]
    Text,
    /// One JSON document: `{"version": 1, "findings": [...], "summary": {...}}`.
    Json,
    /// SARIF 2.1.0, as GitHub code scanning accepts it.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=…,line=…::…`).
    Github,
}

impl Format {
    /// Every format, in the order they are documented.
    pub const ALL: [Format; 4] = [Format::Text, Format::Json, Format::Sarif, Format::Github];

    /// The name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Sarif => "sarif",
            Format::Github => "github",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown format `{s}` (expected text, json, sarif or github)"))
    }
}

/// How to render a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// Use ANSI colours (text format only). When false the output holds no escape bytes at all.
    pub color: bool,
    /// The level at or above which the run fails; reported in the summary.
    pub fail_on: FailOn,
    /// The tool's version, for SARIF's `tool.driver.version`.
    pub tool_version: &'static str,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            color: false,
            fail_on: FailOn::At(Severity::High),
            tool_version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Render the whole report to a string in `format`.
///
/// `rules` gives the metadata used for SARIF's `tool.driver.rules`; the other formats ignore it. Findings are
/// written in the order `report.findings` holds them. The result always ends with a newline.
pub fn render(report: &Report, rules: &[RuleMeta], format: Format, opts: &RenderOptions) -> String {
    let summary = summary(report, opts.fail_on);
    match format {
        Format::Text => text::render(report, &summary, opts.color),
        Format::Json => json::render(report, &summary),
        Format::Sarif => sarif::render(report, rules, opts.tool_version),
        Format::Github => github::render(report, &summary),
    }
}

/// Finding counts per severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SeverityCounts {
    /// Findings of severity critical.
    pub critical: usize,
    /// Findings of severity high.
    pub high: usize,
    /// Findings of severity medium.
    pub medium: usize,
    /// Findings of severity low.
    pub low: usize,
}

impl SeverityCounts {
    /// The count for one severity.
    pub fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
        }
    }

    fn bump(&mut self, severity: Severity) {
        let slot = match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
        };
        *slot = slot.saturating_add(1);
    }
}

/// The summary of one audit: the `summary` object of the JSON document and the last line of the text output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Number of findings reported.
    pub findings: usize,
    /// Findings per severity.
    pub by_severity: SeverityCounts,
    /// Findings per rubric rule id, keys sorted.
    pub by_rule: BTreeMap<String, usize>,
    /// Files that were analysed.
    pub files_analyzed: usize,
    /// Files that were not analysed.
    pub files_skipped: usize,
    /// The files that were not analysed, and why.
    pub skipped: Vec<Skipped>,
    /// Files with more findings than the per-file cap: how many were reported and left out (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<super::Capped>,
    /// Findings silenced by inline suppressions.
    pub suppressed: usize,
    /// Critical/high findings held back because their file is not the running service (scripts, examples,
    /// tests, development Compose files …).
    pub not_service: usize,
    /// Findings held back because the change moved their code (the same problem, reported the same way, was on
    /// lines the change removed).
    pub moved: usize,
    /// The fail-on level the run was judged against.
    #[serde(serialize_with = "serialize_display")]
    pub fail_on: FailOn,
    /// Whether any finding is at or above `fail_on`.
    pub failed: bool,
    /// Number of distinct files with at least one finding (not part of the JSON contract).
    #[serde(skip)]
    pub files_with_findings: usize,
}

fn serialize_display<T: fmt::Display, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// Summarise `report`, judging failure against `fail_on`.
pub fn summary(report: &Report, fail_on: FailOn) -> Summary {
    let mut by_severity = SeverityCounts::default();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut paths: HashSet<&str> = HashSet::new();
    let mut failed = false;
    for finding in &report.findings {
        by_severity.bump(finding.severity);
        let count = by_rule.entry(finding.rule.clone()).or_insert(0);
        *count = count.saturating_add(1);
        paths.insert(finding.path.as_str());
        failed |= fail_on.fails(finding.severity);
    }
    Summary {
        findings: report.findings.len(),
        by_severity,
        by_rule,
        files_analyzed: report.files_analyzed,
        files_skipped: report.skipped.len(),
        skipped: report.skipped.clone(),
        capped: report.capped.clone(),
        suppressed: report.suppressed,
        not_service: report.not_service,
        moved: report.moved,
        fail_on,
        failed,
        files_with_findings: paths.len(),
    }
}

impl Summary {
    /// The one-line summary without colour, e.g.
    /// `3 findings (1 critical, 2 high) in 2 files · 12 files analysed · 1 suppressed · fail-on high: FAILED`.
    pub fn line(&self) -> String {
        summary_line(self, false)
    }
}

/// `1 finding`, `2 findings`.
fn plural(count: usize, singular: &str, plural: &str) -> String {
    if count == 1 {
        format!("{count} {singular}")
    } else {
        format!("{count} {plural}")
    }
}

/// The one-line summary, coloured when `color` is set.
fn summary_line(summary: &Summary, color: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    if summary.findings == 0 {
        parts.push("No findings".to_string());
    } else {
        let counts: Vec<String> = Severity::ALL
            .into_iter()
            .filter(|&severity| summary.by_severity.get(severity) > 0)
            .map(|severity| {
                let words = format!(
                    "{} {}",
                    summary.by_severity.get(severity),
                    severity.as_str()
                );
                ansi::paint(&words, ansi::severity(severity), color)
            })
            .collect();
        let mut head = plural(summary.findings, "finding", "findings");
        if !counts.is_empty() {
            head.push_str(&format!(" ({})", counts.join(", ")));
        }
        head.push_str(&format!(
            " in {}",
            plural(summary.files_with_findings, "file", "files")
        ));
        parts.push(head);
    }
    parts.push(format!(
        "{} analysed",
        plural(summary.files_analyzed, "file", "files")
    ));
    if summary.suppressed > 0 {
        parts.push(format!("{} suppressed", summary.suppressed));
    }
    if summary.not_service > 0 {
        parts.push(format!(
            "{} held back (not the service)",
            summary.not_service
        ));
    }
    if summary.moved > 0 {
        parts.push(format!("{} held back (moved, not written)", summary.moved));
    }
    let verdict = if summary.failed {
        ansi::paint("FAILED", ansi::BOLD_RED, color)
    } else {
        ansi::paint("passed", ansi::GREEN, color)
    };
    parts.push(format!("fail-on {}: {verdict}", summary.fail_on));
    parts.join(" · ")
}

/// Findings grouped by path, groups in order of each path's first finding, findings in their original order.
fn group_by_path(findings: &[Finding]) -> Vec<(&str, Vec<&Finding>)> {
    let mut groups: Vec<(&str, Vec<&Finding>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for finding in findings {
        let path = finding.path.as_str();
        match index.get(path) {
            Some(&at) => {
                if let Some(group) = groups.get_mut(at) {
                    group.1.push(finding);
                }
            }
            None => {
                index.insert(path, groups.len());
                groups.push((path, vec![finding]));
            }
        }
    }
    groups
}

/// Replace characters that could drive a terminal (escape sequences, carriage returns, …) so that text output
/// holds only what it means to. Line breaks and tabs become spaces; other control characters become U+FFFD.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// ANSI styling for the text format.
mod ansi {
    use super::Severity;

    pub const RESET: &str = "\x1b[0m";
    pub const BOLD: &str = "\x1b[1m";
    pub const BOLD_RED: &str = "\x1b[1;31m";
    pub const RED: &str = "\x1b[31m";
    pub const GREEN: &str = "\x1b[32m";
    pub const YELLOW: &str = "\x1b[33m";
    pub const BLUE: &str = "\x1b[34m";
    pub const DIM: &str = "\x1b[2m";

    /// The colour of a severity: critical bold red, high red, medium yellow, low blue.
    pub fn severity(severity: Severity) -> &'static str {
        match severity {
            Severity::Critical => BOLD_RED,
            Severity::High => RED,
            Severity::Medium => YELLOW,
            Severity::Low => BLUE,
        }
    }

    /// `text` wrapped in `style` when `color` is set, else `text` unchanged.
    pub fn paint(text: &str, style: &str, color: bool) -> String {
        if color && !text.is_empty() {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }
}

#[cfg(test)]
mod test_support {
    use super::super::finding::{CheckMeta, Finding, Fix, Report, RuleMeta, Severity, Skipped};

    /// A finding with the given place and severity; other fields derived from `rule`.
    #[allow(clippy::too_many_arguments)]
    pub fn finding(
        path: &str,
        line: usize,
        column: usize,
        end_line: usize,
        end_column: usize,
        severity: Severity,
        rule: &str,
        check: &str,
    ) -> Finding {
        Finding {
            rule: rule.to_string(),
            check: check.to_string(),
            severity,
            path: path.to_string(),
            line,
            end_line,
            column,
            end_column,
            message: format!("{check} message"),
            standard: format!("{rule} standard title"),
            conforming: format!("Use the {rule} pattern."),
            fingerprint: format!("fp-{check}-{path}-{line}"),
            fix: None,
            code: Vec::new(),
            code_cut: None,
        }
    }

    /// A fix replacing a range.
    pub fn fix(
        line: usize,
        column: usize,
        end_line: usize,
        end_column: usize,
        replacement: &str,
    ) -> Fix {
        Fix {
            line,
            column,
            end_line,
            end_column,
            replacement: replacement.to_string(),
        }
    }

    /// A report over two files with four findings of every severity, one fix, two skipped files, one
    /// suppression.
    pub fn sample_report() -> Report {
        let mut a = finding(
            "app/main.py",
            3,
            5,
            3,
            18,
            Severity::Critical,
            "C5",
            "C5-blocking-sleep",
        );
        a.code = vec!["    time.sleep(1)".to_string()];
        a.fix = Some(fix(3, 5, 3, 18, "await asyncio.sleep(1)"));
        let mut b = finding(
            "app/main.py",
            10,
            1,
            12,
            2,
            Severity::High,
            "F1",
            "F1-no-timeout",
        );
        b.code = vec![
            "httpx.get(".to_string(),
            "    url,".to_string(),
            ")".to_string(),
        ];
        let c = finding(
            "app/worker.py",
            7,
            9,
            7,
            20,
            Severity::Medium,
            "O1",
            "O1-print-log",
        );
        let d = finding(
            "app/worker.py",
            9,
            1,
            9,
            4,
            Severity::Low,
            "I4",
            "I4-unpinned",
        );
        Report {
            findings: vec![a, b, c, d],
            files_analyzed: 12,
            skipped: vec![
                Skipped {
                    path: "assets/logo.png".to_string(),
                    reason: "binary".to_string(),
                },
                Skipped {
                    path: "data/dump.sql".to_string(),
                    reason: "too large (> 1 MiB)".to_string(),
                },
                Skipped {
                    path: "assets/icon.ico".to_string(),
                    reason: "binary".to_string(),
                },
            ],
            suppressed: 1,
            not_service: 0,
            moved: 0,
            capped: Vec::new(),
        }
    }

    /// Rule metadata for C5 (two checks) and F1 (one check).
    pub fn sample_rules() -> Vec<RuleMeta> {
        vec![
            RuleMeta {
                id: "C5".to_string(),
                title: "No blocking calls in async code".to_string(),
                severity: Severity::Critical,
                standard: "Async handlers never call blocking functions.".to_string(),
                why: "A blocking call stalls the event loop.".to_string(),
                conforming: "`await asyncio.sleep(1)`".to_string(),
                checks: vec![
                    CheckMeta {
                        id: "C5-blocking-io".to_string(),
                        severity: Severity::High,
                        message: "blocking I/O".to_string(),
                    },
                    CheckMeta {
                        id: "C5-blocking-sleep".to_string(),
                        severity: Severity::Critical,
                        message: "time.sleep in async def".to_string(),
                    },
                ],
            },
            RuleMeta {
                id: "F1".to_string(),
                title: "Timeouts on outbound calls".to_string(),
                severity: Severity::High,
                standard: "Every outbound call has a timeout.".to_string(),
                why: "A call without a timeout can hang forever.".to_string(),
                conforming: "`httpx.get(url, timeout=5)`".to_string(),
                checks: vec![CheckMeta {
                    id: "F1-no-timeout".to_string(),
                    severity: Severity::High,
                    message: "no timeout".to_string(),
                }],
            },
        ]
    }

    /// Findings with hostile values: zeros, huge numbers, empty strings, control characters.
    pub fn hostile_report() -> Report {
        let mut zero = finding("", 0, 0, 0, 0, Severity::Low, "", "");
        zero.message = String::new();
        zero.code = vec![String::new()];
        zero.fix = Some(fix(0, 0, 0, 0, ""));
        let mut huge = finding(
            "a b:c,d%e\n.py",
            usize::MAX,
            usize::MAX,
            0,
            usize::MAX,
            Severity::Critical,
            "X\u{1b}[31m",
            "x,y:z%",
        );
        huge.message = "line1\r\nline2 \u{1b}[2J%".to_string();
        huge.code = vec!["\u{1b}[31mred\r".to_string(), "é\ttab".to_string()];
        huge.fix = Some(fix(usize::MAX, usize::MAX, 1, 1, "x\ny"));
        let mut backwards = finding("b.py", 5, 9, 5, 2, Severity::High, "F8", "F8-x");
        backwards.code = vec!["short".to_string()];
        Report {
            findings: vec![zero, huge, backwards],
            files_analyzed: usize::MAX,
            skipped: vec![Skipped {
                path: "\u{1b}]0;x\u{7}".to_string(),
                reason: "\u{1b}[1m".to_string(),
            }],
            suppressed: usize::MAX,
            not_service: usize::MAX,
            moved: usize::MAX,
            capped: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{hostile_report, sample_report, sample_rules};
    use super::*;

    #[test]
    fn format_parses_every_name_and_error_lists_valid_values() {
        assert_eq!("text".parse::<Format>(), Ok(Format::Text));
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!("SARIF".parse::<Format>(), Ok(Format::Sarif));
        assert_eq!("github".parse::<Format>(), Ok(Format::Github));
        for format in Format::ALL {
            assert_eq!(format.to_string().parse::<Format>(), Ok(format));
        }
        let err = "xml".parse::<Format>().unwrap_err();
        assert!(err.contains("xml"), "{err}");
        for name in ["text", "json", "sarif", "github"] {
            assert!(err.contains(name), "{err} should list {name}");
        }
        assert_eq!(Format::default(), Format::Text);
    }

    #[test]
    fn summary_counts_and_failed_per_fail_on() {
        let report = sample_report();
        let s = summary(&report, FailOn::At(Severity::High));
        assert_eq!(s.findings, 4);
        assert_eq!(
            s.by_severity,
            SeverityCounts {
                critical: 1,
                high: 1,
                medium: 1,
                low: 1
            }
        );
        assert_eq!(
            s.by_rule.keys().collect::<Vec<_>>(),
            ["C5", "F1", "I4", "O1"]
        );
        assert_eq!(s.files_analyzed, 12);
        assert_eq!(s.files_skipped, 3);
        assert_eq!(s.suppressed, 1);
        assert_eq!(s.files_with_findings, 2);
        assert!(s.failed);

        let mut low_only = sample_report();
        low_only.findings.retain(|f| f.severity == Severity::Low);
        assert!(!summary(&low_only, FailOn::At(Severity::Medium)).failed);
        assert!(summary(&low_only, FailOn::At(Severity::Low)).failed);
        assert!(!summary(&report, FailOn::Never).failed);
    }

    #[test]
    fn summary_line_wording() {
        let report = sample_report();
        let s = summary(&report, FailOn::At(Severity::High));
        assert_eq!(
            s.line(),
            "4 findings (1 critical, 1 high, 1 medium, 1 low) in 2 files · 12 files analysed · 1 suppressed · \
             fail-on high: FAILED"
        );
        let empty = Report {
            files_analyzed: 1,
            ..Report::default()
        };
        assert_eq!(
            summary(&empty, FailOn::At(Severity::High)).line(),
            "No findings · 1 file analysed · fail-on high: passed"
        );
        let mut one = sample_report();
        one.findings.truncate(1);
        one.suppressed = 0;
        assert_eq!(
            summary(&one, FailOn::Never).line(),
            "1 finding (1 critical) in 1 file · 12 files analysed · fail-on never: passed"
        );
    }

    #[test]
    fn every_format_renders_hostile_input_without_panicking() {
        let report = hostile_report();
        let rules = sample_rules();
        for format in Format::ALL {
            for color in [false, true] {
                let opts = RenderOptions {
                    color,
                    ..RenderOptions::default()
                };
                let out = render(&report, &rules, format, &opts);
                assert!(
                    out.ends_with('\n'),
                    "{format} output should end with a newline"
                );
                if !color {
                    assert!(
                        !out.contains('\u{1b}'),
                        "{format} output holds an escape byte"
                    );
                }
            }
        }
    }

    #[test]
    fn group_by_path_keeps_first_appearance_order() {
        let mut report = sample_report();
        // Move a worker.py finding first and a main.py finding last: groups follow first appearance.
        report.findings.swap(0, 3);
        let groups = group_by_path(&report.findings);
        let paths: Vec<&str> = groups.iter().map(|g| g.0).collect();
        assert_eq!(paths, ["app/worker.py", "app/main.py"]);
        assert_eq!(groups[0].1.len(), 2);
        assert_eq!(groups[1].1[0].check, "F1-no-timeout");
        assert_eq!(groups[1].1[1].check, "C5-blocking-sleep");
    }
}
