//! The JSON format: `{"version": 1, "findings": [...], "summary": {...}}`, pretty-printed.

use super::super::finding::{Finding, Report};
use super::Summary;
use serde::Serialize;

/// The version of the JSON document's shape.
const JSON_VERSION: u32 = 1;

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    findings: &'a [Finding],
    summary: &'a Summary,
}

/// Render `report` as one pretty-printed JSON document with a trailing newline.
pub(super) fn render(report: &Report, summary: &Summary) -> String {
    let document = Document {
        version: JSON_VERSION,
        findings: &report.findings,
        summary,
    };
    let mut out = serde_json::to_string_pretty(&document).unwrap_or_else(|err| {
        // Unreachable with these types (string keys only), but never panic: emit a valid document saying so.
        serde_json::json!({ "version": JSON_VERSION, "error": err.to_string() }).to_string()
    });
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::super::finding::{FailOn, Report, Severity};
    use super::super::test_support::sample_report;
    use super::super::{Format, RenderOptions, render as render_any};
    use serde_json::Value;

    fn json(report: &Report, fail_on: FailOn) -> Value {
        let opts = RenderOptions {
            color: true,
            fail_on,
            tool_version: "1.2.3",
        };
        let out = render_any(report, &[], Format::Json, &opts);
        assert!(out.ends_with("}\n"), "trailing newline");
        assert!(out.contains("\n  \"findings\""), "pretty-printed");
        assert!(!out.contains('\u{1b}'), "no colour in JSON");
        serde_json::from_str(&out).expect("valid JSON")
    }

    #[test]
    fn document_has_version_and_every_finding_field() {
        let doc = json(&sample_report(), FailOn::At(Severity::High));
        assert_eq!(doc["version"], 1);
        let findings = doc["findings"].as_array().unwrap();
        assert_eq!(findings.len(), 4);
        let first = &findings[0];
        assert_eq!(first["rule"], "C5");
        assert_eq!(first["check"], "C5-blocking-sleep");
        assert_eq!(first["severity"], "critical");
        assert_eq!(first["path"], "app/main.py");
        assert_eq!(first["line"], 3);
        assert_eq!(first["end_line"], 3);
        assert_eq!(first["column"], 5);
        assert_eq!(first["end_column"], 18);
        assert_eq!(first["message"], "C5-blocking-sleep message");
        assert_eq!(first["standard"], "C5 standard title");
        assert_eq!(first["conforming"], "Use the C5 pattern.");
        assert_eq!(first["fingerprint"], "fp-C5-blocking-sleep-app/main.py-3");
        assert_eq!(first["fix"]["replacement"], "await asyncio.sleep(1)");
        assert_eq!(first["fix"]["line"], 3);
        assert_eq!(first["fix"]["column"], 5);
        assert_eq!(first["fix"]["end_line"], 3);
        assert_eq!(first["fix"]["end_column"], 18);
        assert!(
            first.get("code").is_none(),
            "code frames are not part of the contract"
        );
        assert!(findings[1].get("fix").is_none(), "fix only when present");
        // Order kept.
        let checks: Vec<&str> = findings
            .iter()
            .map(|f| f["check"].as_str().unwrap())
            .collect();
        assert_eq!(
            checks,
            [
                "C5-blocking-sleep",
                "F1-no-timeout",
                "O1-print-log",
                "I4-unpinned"
            ]
        );
    }

    #[test]
    fn summary_counts() {
        let doc = json(&sample_report(), FailOn::At(Severity::High));
        let s = &doc["summary"];
        assert_eq!(s["findings"], 4);
        assert_eq!(
            s["by_severity"],
            serde_json::json!({"critical": 1, "high": 1, "medium": 1, "low": 1})
        );
        assert_eq!(
            s["by_rule"],
            serde_json::json!({"C5": 1, "F1": 1, "I4": 1, "O1": 1})
        );
        let keys: Vec<&String> = s["by_rule"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["C5", "F1", "I4", "O1"], "sorted keys");
        assert_eq!(s["files_analyzed"], 12);
        assert_eq!(s["files_skipped"], 3);
        assert_eq!(
            s["skipped"][0],
            serde_json::json!({"path": "assets/logo.png", "reason": "binary"})
        );
        assert_eq!(s["skipped"].as_array().unwrap().len(), 3);
        assert_eq!(s["suppressed"], 1);
        assert_eq!(s["fail_on"], "high");
        assert!(s.get("files_with_findings").is_none());
    }

    #[test]
    fn failed_follows_fail_on() {
        let mut report = sample_report();
        report.findings.retain(|f| f.severity <= Severity::Medium);
        let cases = [
            (FailOn::At(Severity::Critical), "critical", false),
            (FailOn::At(Severity::High), "high", false),
            (FailOn::At(Severity::Medium), "medium", true),
            (FailOn::At(Severity::Low), "low", true),
            (FailOn::Never, "never", false),
        ];
        for (fail_on, name, failed) in cases {
            let doc = json(&report, fail_on);
            assert_eq!(doc["summary"]["fail_on"], name);
            assert_eq!(doc["summary"]["failed"], failed, "fail_on {name}");
        }
        let doc = json(&sample_report(), FailOn::At(Severity::Critical));
        assert_eq!(doc["summary"]["failed"], true);
    }

    #[test]
    fn empty_report() {
        let doc = json(&Report::default(), FailOn::At(Severity::High));
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["findings"], serde_json::json!([]));
        assert_eq!(doc["summary"]["findings"], 0);
        assert_eq!(doc["summary"]["by_rule"], serde_json::json!({}));
        assert_eq!(doc["summary"]["failed"], false);
    }
}
