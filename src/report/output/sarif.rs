//! SARIF 2.1.0 output, in the shape GitHub code scanning accepts.
//!
//! One run; one `reportingDescriptor` per check (a rule's detector), results pointing at them by `ruleId` and
//! `ruleIndex`. Columns are 1-based character counts, so the run declares `columnKind: unicodeCodePoints`.

use super::super::finding::{Finding, Fix, Report, RuleMeta, Severity};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";
const INFORMATION_URI: &str = "https://github.com/prodaudit/prodaudit";
const SRCROOT: &str = "%SRCROOT%";
const FINGERPRINT_KEY: &str = "prodaudit/v1";

/// Render `report` as a pretty-printed SARIF log with a trailing newline.
pub(super) fn render(report: &Report, rules: &[RuleMeta], tool_version: &str) -> String {
    let mut catalogue = Catalogue::from_rules(rules);
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|finding| {
            let index = catalogue.index_for(finding);
            result(finding, index)
        })
        .collect();
    let log = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "prodaudit",
                    "informationUri": INFORMATION_URI,
                    "version": tool_version,
                    "semanticVersion": tool_version,
                    "rules": catalogue.descriptors,
                }
            },
            "originalUriBaseIds": {
                SRCROOT: {
                    "description": { "text": "The root of the repository that was audited." }
                }
            },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    let mut out = serde_json::to_string_pretty(&log).unwrap_or_else(|_| log.to_string());
    out.push('\n');
    out
}

/// The run's rule descriptors, with an index from check id to position.
struct Catalogue {
    descriptors: Vec<Value>,
    index: HashMap<String, usize>,
}

impl Catalogue {
    /// One descriptor per check of every rule; a check id seen twice keeps its first descriptor.
    fn from_rules(rules: &[RuleMeta]) -> Self {
        let mut catalogue = Catalogue {
            descriptors: Vec::new(),
            index: HashMap::new(),
        };
        for rule in rules {
            for check in &rule.checks {
                if catalogue.index.contains_key(&check.id) {
                    continue;
                }
                let descriptor = descriptor(
                    &check.id,
                    &rule.id,
                    &rule.title,
                    &rule.standard,
                    &help_text(rule),
                    &help_markdown(rule),
                    check.severity,
                );
                catalogue.push(&check.id, descriptor);
            }
        }
        catalogue
    }

    fn push(&mut self, id: &str, descriptor: Value) -> usize {
        let index = self.descriptors.len();
        self.descriptors.push(descriptor);
        self.index.insert(id.to_string(), index);
        index
    }

    /// The index of the finding's check, adding a minimal descriptor when the rules did not list it.
    fn index_for(&mut self, finding: &Finding) -> usize {
        if let Some(&index) = self.index.get(&finding.check) {
            return index;
        }
        let descriptor = descriptor(
            &finding.check,
            &finding.rule,
            &finding.standard,
            &finding.standard,
            &finding.conforming,
            &finding.conforming,
            finding.severity,
        );
        self.push(&finding.check, descriptor)
    }
}

/// A `reportingDescriptor`. Empty texts fall back to the check id (SARIF messages must say something).
fn descriptor(
    check: &str,
    rule: &str,
    title: &str,
    standard: &str,
    help_text: &str,
    help_markdown: &str,
    severity: Severity,
) -> Value {
    let short = non_empty(title, check);
    let full = non_empty(standard, short);
    let mut value = json!({
        "id": check,
        "name": pascal_case(check),
        "shortDescription": { "text": short },
        "fullDescription": { "text": full },
        "defaultConfiguration": { "level": level(severity) },
        "properties": {
            "tags": ["production-standards", rule],
            "security-severity": security_severity(severity),
            "precision": "high",
            "problem.severity": problem_severity(severity),
        }
    });
    if !help_text.trim().is_empty()
        && let Some(object) = value.as_object_mut()
    {
        object.insert(
            "help".to_string(),
            json!({ "text": help_text, "markdown": non_empty(help_markdown, help_text) }),
        );
    }
    value
}

fn non_empty<'a>(text: &'a str, fallback: &'a str) -> &'a str {
    if text.trim().is_empty() {
        fallback
    } else {
        text
    }
}

/// Plain help: why the standard matters, then the conforming pattern.
fn help_text(rule: &RuleMeta) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !rule.standard.trim().is_empty() {
        parts.push(format!("{} ({}): {}", rule.title, rule.id, rule.standard));
    }
    if !rule.why.trim().is_empty() {
        parts.push(format!("Why: {}", rule.why));
    }
    if !rule.conforming.trim().is_empty() {
        parts.push(format!("Conforming pattern:\n{}", rule.conforming));
    }
    parts.join("\n\n")
}

/// Markdown help: the same as [`help_text`] with headings.
fn help_markdown(rule: &RuleMeta) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !rule.standard.trim().is_empty() {
        parts.push(format!(
            "**{}: {}**\n\n{}",
            rule.id, rule.title, rule.standard
        ));
    }
    if !rule.why.trim().is_empty() {
        parts.push(format!("**Why it matters**\n\n{}", rule.why));
    }
    if !rule.conforming.trim().is_empty() {
        parts.push(format!("**Conforming pattern**\n\n{}", rule.conforming));
    }
    parts.join("\n\n")
}

/// `C5-blocking-sleep` → `C5BlockingSleep`; the id itself when it has no letters or digits.
fn pascal_case(id: &str) -> String {
    let mut name = String::new();
    for word in id.split(|c: char| !c.is_alphanumeric()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            name.extend(first.to_uppercase());
            name.push_str(chars.as_str());
        }
    }
    if name.is_empty() {
        id.to_string()
    } else {
        name
    }
}

/// SARIF level: critical and high are errors, medium warnings, low notes.
fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "note",
    }
}

/// GitHub's `problem.severity` property.
fn problem_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "recommendation",
    }
}

/// GitHub's `security-severity` property (a CVSS-like score as a string).
fn security_severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "9.0",
        Severity::High => "7.0",
        Severity::Medium => "5.0",
        Severity::Low => "3.0",
    }
}

/// A region SARIF accepts: lines and columns at least 1, the end not before the start.
fn region(line: usize, column: usize, end_line: usize, end_column: usize) -> Value {
    let line = line.max(1);
    let column = column.max(1);
    let end_line = end_line.max(line);
    let end_column = if end_line == line {
        end_column.max(column)
    } else {
        end_column.max(1)
    };
    json!({
        "startLine": line,
        "startColumn": column,
        "endLine": end_line,
        "endColumn": end_column,
    })
}

/// Percent-encode a repository-relative path into a relative URI reference (slashes kept).
fn path_uri(path: &str) -> String {
    let mut uri = String::with_capacity(path.len());
    for byte in path.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(
                byte,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'/'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'@'
            );
        if keep {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

fn artifact_location(path: &str) -> Value {
    json!({ "uri": path_uri(path), "uriBaseId": SRCROOT })
}

/// One result.
fn result(finding: &Finding, rule_index: usize) -> Value {
    let mut message = finding.message.clone();
    if message.trim().is_empty() {
        message = finding.check.clone();
    }
    if finding.standard.trim().is_empty() {
        message.push_str(&format!(" (rubric {})", finding.rule));
    } else {
        message.push_str(&format!(" (rubric {}: {})", finding.rule, finding.standard));
    }
    let mut physical = Map::new();
    physical.insert(
        "artifactLocation".to_string(),
        artifact_location(&finding.path),
    );
    let region = region(
        finding.line,
        finding.column,
        finding.end_line,
        finding.end_column,
    );
    if let Some(context) = context_region(finding, &region) {
        physical.insert("contextRegion".to_string(), context);
    }
    physical.insert("region".to_string(), region);

    let mut value = json!({
        "ruleId": finding.check,
        "ruleIndex": rule_index,
        "level": level(finding.severity),
        "message": { "text": message },
        "locations": [{ "physicalLocation": physical }],
        "properties": {
            "rubric": finding.rule,
            "severity": finding.severity.as_str(),
        }
    });
    if let Some(object) = value.as_object_mut() {
        if !finding.fingerprint.is_empty() {
            object.insert(
                "partialFingerprints".to_string(),
                json!({ FINGERPRINT_KEY: finding.fingerprint }),
            );
        }
        if let Some(fix) = finding.fix.as_ref().and_then(|fix| sarif_fix(finding, fix)) {
            object.insert("fixes".to_string(), json!([fix]));
        }
    }
    value
}

/// The whole source lines of the finding as a context region, when `code` covers exactly its lines.
fn context_region(finding: &Finding, region: &Value) -> Option<Value> {
    if finding.code_cut.is_some() {
        return None; // only windows of long lines are at hand, not their text
    }
    let start = region.get("startLine")?.as_u64()?;
    let end = region.get("endLine")?.as_u64()?;
    let lines = u64::try_from(finding.code.len()).ok()?;
    if lines == 0 || end.checked_sub(start)?.checked_add(1)? != lines {
        return None;
    }
    let text: Vec<&str> = finding
        .code
        .iter()
        .map(|line| line.trim_end_matches(['\n', '\r']))
        .collect();
    Some(json!({
        "startLine": start,
        "endLine": end,
        "snippet": { "text": text.join("\n") },
    }))
}

/// The fix as a SARIF `fix`, only when its range is well formed (1-based, end not before start).
fn sarif_fix(finding: &Finding, fix: &Fix) -> Option<Value> {
    let valid = fix.line >= 1
        && fix.column >= 1
        && fix.end_line >= fix.line
        && fix.end_column >= 1
        && (fix.end_line > fix.line || fix.end_column >= fix.column);
    if !valid {
        return None;
    }
    Some(json!({
        "description": { "text": format!("Apply the conforming pattern for rubric {}", finding.rule) },
        "artifactChanges": [{
            "artifactLocation": artifact_location(&finding.path),
            "replacements": [{
                "deletedRegion": region(fix.line, fix.column, fix.end_line, fix.end_column),
                "insertedContent": { "text": fix.replacement },
            }]
        }]
    }))
}

#[cfg(test)]
mod tests {
    use super::super::super::finding::{Report, Severity};
    use super::super::test_support::{finding, fix, hostile_report, sample_report, sample_rules};
    use super::super::{Format, RenderOptions, render as render_any};
    use super::*;

    fn sarif(report: &Report) -> Value {
        let opts = RenderOptions {
            tool_version: "1.2.3",
            ..RenderOptions::default()
        };
        let out = render_any(report, &sample_rules(), Format::Sarif, &opts);
        assert!(out.ends_with("}\n"));
        serde_json::from_str(&out).expect("valid JSON")
    }

    /// Every result's ruleIndex is in range and names the descriptor whose id is its ruleId.
    fn assert_indices_consistent(doc: &Value) {
        let run = &doc["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        for result in run["results"].as_array().unwrap() {
            let index = result["ruleIndex"].as_u64().unwrap() as usize;
            assert!(index < rules.len(), "ruleIndex {index} out of range");
            assert_eq!(rules[index]["id"], result["ruleId"]);
        }
    }

    #[test]
    fn structure_and_tool_driver() {
        let doc = sarif(&sample_report());
        assert_eq!(doc["version"], "2.1.0");
        assert_eq!(doc["$schema"], SCHEMA);
        let runs = doc["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        let driver = &runs[0]["tool"]["driver"];
        assert_eq!(driver["name"], "prodaudit");
        assert_eq!(driver["informationUri"], INFORMATION_URI);
        assert_eq!(driver["version"], "1.2.3");
        assert_eq!(driver["semanticVersion"], "1.2.3");
        assert!(runs[0]["originalUriBaseIds"]["%SRCROOT%"].is_object());
        let rules = driver["rules"].as_array().unwrap();
        // Three known checks, then F1-no-timeout known; O1 and I4 unknown and appended.
        let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(
            ids,
            [
                "C5-blocking-io",
                "C5-blocking-sleep",
                "F1-no-timeout",
                "O1-print-log",
                "I4-unpinned"
            ]
        );
        let sleep = &rules[1];
        assert_eq!(sleep["name"], "C5BlockingSleep");
        assert_eq!(
            sleep["shortDescription"]["text"],
            "No blocking calls in async code"
        );
        assert_eq!(
            sleep["fullDescription"]["text"],
            "Async handlers never call blocking functions."
        );
        assert!(
            sleep["help"]["text"]
                .as_str()
                .unwrap()
                .contains("stalls the event loop")
        );
        assert!(
            sleep["help"]["markdown"]
                .as_str()
                .unwrap()
                .contains("`await asyncio.sleep(1)`")
        );
        assert_eq!(sleep["defaultConfiguration"]["level"], "error");
        assert_eq!(
            sleep["properties"]["tags"],
            json!(["production-standards", "C5"])
        );
        assert_eq!(sleep["properties"]["security-severity"], "9.0");
        assert_eq!(sleep["properties"]["precision"], "high");
        assert_eq!(sleep["properties"]["problem.severity"], "error");
        assert_eq!(rules[0]["properties"]["security-severity"], "7.0");
    }

    #[test]
    fn rule_index_points_at_rule_with_same_id() {
        let doc = sarif(&sample_report());
        assert_indices_consistent(&doc);
        let results = doc["runs"][0]["results"].as_array().unwrap();
        assert_eq!(results.len(), 4);
        assert_eq!(results[0]["ruleId"], "C5-blocking-sleep");
        assert_eq!(results[0]["ruleIndex"], 1);
        assert_eq!(results[1]["ruleIndex"], 2);
    }

    #[test]
    fn unknown_checks_get_descriptors_in_range() {
        let mut report = sample_report();
        let again = finding("z.py", 1, 1, 1, 2, Severity::Medium, "O1", "O1-print-log");
        report.findings.push(again);
        let doc = sarif(&report);
        assert_indices_consistent(&doc);
        let rules = doc["runs"][0]["tool"]["driver"]["rules"]
            .as_array()
            .unwrap();
        let o1: Vec<&Value> = rules.iter().filter(|r| r["id"] == "O1-print-log").collect();
        assert_eq!(o1.len(), 1, "one descriptor per unknown check");
        assert_eq!(o1[0]["shortDescription"]["text"], "O1 standard title");
        assert_eq!(o1[0]["defaultConfiguration"]["level"], "warning");
        assert_eq!(
            o1[0]["properties"]["tags"],
            json!(["production-standards", "O1"])
        );
        // Works without any rule metadata at all, and for hostile input.
        let out = render_any(&report, &[], Format::Sarif, &RenderOptions::default());
        assert_indices_consistent(&serde_json::from_str(&out).unwrap());
        assert_indices_consistent(&sarif(&hostile_report()));
    }

    #[test]
    fn levels_message_fingerprints_and_region() {
        let doc = sarif(&sample_report());
        let results = doc["runs"][0]["results"].as_array().unwrap();
        let levels: Vec<&str> = results
            .iter()
            .map(|r| r["level"].as_str().unwrap())
            .collect();
        assert_eq!(levels, ["error", "error", "warning", "note"]);
        let first = &results[0];
        assert_eq!(
            first["message"]["text"],
            "C5-blocking-sleep message (rubric C5: C5 standard title)"
        );
        assert_eq!(
            first["partialFingerprints"]["prodaudit/v1"],
            "fp-C5-blocking-sleep-app/main.py-3"
        );
        let physical = &first["locations"][0]["physicalLocation"];
        assert_eq!(physical["artifactLocation"]["uri"], "app/main.py");
        assert_eq!(physical["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert_eq!(
            physical["region"],
            json!({"startLine": 3, "startColumn": 5, "endLine": 3, "endColumn": 18})
        );
        assert_eq!(
            physical["contextRegion"]["snippet"]["text"],
            "    time.sleep(1)"
        );
        let multi = &results[1]["locations"][0]["physicalLocation"];
        assert_eq!(
            multi["region"],
            json!({"startLine": 10, "startColumn": 1, "endLine": 12, "endColumn": 2})
        );
        assert_eq!(multi["contextRegion"]["endLine"], 12);
        // No code: no context region.
        assert!(
            results[2]["locations"][0]["physicalLocation"]
                .get("contextRegion")
                .is_none()
        );
    }

    #[test]
    fn regions_are_always_valid() {
        let doc = sarif(&hostile_report());
        for result in doc["runs"][0]["results"].as_array().unwrap() {
            let r = &result["locations"][0]["physicalLocation"]["region"];
            let (sl, sc, el, ec) = (
                r["startLine"].as_u64().unwrap(),
                r["startColumn"].as_u64().unwrap(),
                r["endLine"].as_u64().unwrap(),
                r["endColumn"].as_u64().unwrap(),
            );
            assert!(sl >= 1 && sc >= 1 && el >= sl && ec >= 1);
            if el == sl {
                assert!(ec >= sc);
            }
        }
    }

    #[test]
    fn fixes_only_when_well_formed() {
        let mut report = sample_report();
        report.findings[1].fix = Some(fix(12, 3, 11, 1, "bad"));
        let doc = sarif(&report);
        let results = doc["runs"][0]["results"].as_array().unwrap();
        let change = &results[0]["fixes"][0]["artifactChanges"][0];
        assert_eq!(change["artifactLocation"]["uri"], "app/main.py");
        let replacement = &change["replacements"][0];
        assert_eq!(
            replacement["deletedRegion"],
            json!({"startLine": 3, "startColumn": 5, "endLine": 3, "endColumn": 18})
        );
        assert_eq!(
            replacement["insertedContent"]["text"],
            "await asyncio.sleep(1)"
        );
        assert!(
            results[1].get("fixes").is_none(),
            "backwards fix range dropped"
        );
        assert!(results[2].get("fixes").is_none(), "no fix, no fixes");
    }

    #[test]
    fn uris_are_percent_encoded() {
        assert_eq!(path_uri("src/app.py"), "src/app.py");
        assert_eq!(path_uri("my dir/a:b%.py"), "my%20dir/a%3Ab%25.py");
        assert_eq!(path_uri("é.py"), "%C3%A9.py");
        assert_eq!(pascal_case("C5-blocking-sleep"), "C5BlockingSleep");
        assert_eq!(pascal_case("--"), "--");
    }
}
