//! The finding: one rubric violation at one place in one file.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Severity of a finding, ordered from least to most serious.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity `{other}` (expected critical, high, medium or low)"
            )),
        }
    }
}

/// The level at or above which a run fails; `Never` never fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOn {
    At(Severity),
    Never,
}

impl FailOn {
    pub fn fails(self, severity: Severity) -> bool {
        match self {
            FailOn::At(level) => severity >= level,
            FailOn::Never => false,
        }
    }
}

impl FromStr for FailOn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("never") {
            return Ok(FailOn::Never);
        }
        s.parse::<Severity>().map(FailOn::At).map_err(|_| {
            format!("unknown fail-on level `{s}` (expected critical, high, medium, low or never)")
        })
    }
}

impl fmt::Display for FailOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailOn::At(s) => s.fmt(f),
            FailOn::Never => f.write_str("never"),
        }
    }
}

/// A machine-applicable replacement of a source range (1-based lines and columns, end exclusive column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fix {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub replacement: String,
}

/// One rubric violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Rubric id, e.g. "C5".
    pub rule: String,
    /// The detector's own id, e.g. "C5-blocking-sleep".
    pub check: String,
    pub severity: Severity,
    /// Repository-relative path with forward slashes.
    pub path: String,
    /// 1-based first line.
    pub line: usize,
    /// 1-based last line (inclusive).
    pub end_line: usize,
    /// 1-based column (in characters) on `line`.
    pub column: usize,
    /// 1-based column (in characters) just past the end on `end_line`.
    pub end_column: usize,
    pub message: String,
    /// The rubric standard's title.
    pub standard: String,
    /// The conforming pattern, markdown.
    pub conforming: String,
    /// Stable identity: does not change when unrelated lines above move.
    pub fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fix: Option<Fix>,
    /// Source lines `line..=end_line` (at most a few), for code frames. Not part of the JSON contract.
    #[serde(skip)]
    pub code: Vec<String>,
    /// `Some(n)` when `code`'s lines were too long to keep whole and hold a window of each (marked `…` where cut):
    /// `n` characters of the first line are left out before its window. `None`: `code` holds whole lines. Not
    /// part of the JSON contract.
    #[serde(skip)]
    pub code_cut: Option<usize>,
}

impl Finding {
    /// Stable ordering: path, line, column, rule, check.
    pub fn sort_key(&self) -> (&str, usize, usize, &str, &str) {
        (&self.path, self.line, self.column, &self.rule, &self.check)
    }
}

/// A file that was not analysed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// A file with more findings than the per-file cap: how many are reported and how many were left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capped {
    pub path: String,
    pub reported: usize,
    pub left_out: usize,
}

/// Everything one audit produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub files_analyzed: usize,
    pub skipped: Vec<Skipped>,
    pub suppressed: usize,
    /// Critical/high findings held back because their file is not the running service.
    #[serde(default)]
    pub not_service: usize,
    /// Findings held back because the change moved their code rather than wrote it ([`crate::analysis::moved`]).
    #[serde(default)]
    pub moved: usize,
    /// Files whose findings were capped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<Capped>,
}

/// What a rule says about itself, for SARIF rule metadata and `rules explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleMeta {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub standard: String,
    pub why: String,
    pub conforming: String,
    /// (check id, message template, severity) for each detector.
    pub checks: Vec<CheckMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckMeta {
    pub id: String,
    pub severity: Severity,
    pub message: String,
}
