//! The layering of the analysis code, checked on the source text (issue 12):
//! - a detector file in `src/analysis/checks/` names no other detector module: it reads shared facts from
//!   `semantic/`, and from `checks` only the trait and the registry's items (`Check`, `CheckMatch`, `CheckFix`,
//!   `PyNode`, `lookup`, `ids`, `unparseable`);
//! - nothing in `src/analysis/semantic/` names `checks`.
//!
//! The scanner is a plain text scan (no parser), tested below on planted violations so that a silent scanner
//! cannot pass.

use std::fs;
use std::path::{Path, PathBuf};

/// What a detector may name under `checks::`.
const ALLOWED_FROM_CHECKS: &[&str] = &[
    "Check",
    "CheckMatch",
    "CheckFix",
    "PyNode",
    "lookup",
    "ids",
    "unparseable",
];

/// Every `.rs` file under `dir`, recursively (the tree is ours: depth is small, but bounded anyway).
fn rust_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, depth + 1, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The identifiers that follow each occurrence of `prefix` in `text` (`checks::` → `Check`, `c5_blocking`, …;
/// `checks::{A, b}` gives both).
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + prefix.len()..];
        rest = after;
        // `prodaudit_checks::` or `mychecks::` is another name.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let ident: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !ident.is_empty() {
                    out.push(ident);
                }
            }
        } else {
            let ident: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(ident);
        }
    }
    out
}

/// The layering violations of one detector file (`siblings`: the module names of the check files).
fn detector_violations(text: &str, siblings: &[String]) -> Vec<String> {
    let mut v = Vec::new();
    for name in names_after(text, "checks::") {
        if !ALLOWED_FROM_CHECKS.contains(&name.as_str()) {
            v.push(format!("names checks::{name}"));
        }
    }
    for name in names_after(text, "super::") {
        if name == "super" || siblings.contains(&name) {
            v.push(format!("names super::{name}"));
        }
    }
    v
}

/// The layering violations of one semantic file.
fn semantic_violations(text: &str) -> Vec<String> {
    names_after(text, "checks::")
        .into_iter()
        .map(|n| format!("names checks::{n}"))
        .collect()
}

fn analysis_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/analysis")
}

#[test]
fn detectors_name_no_sibling_detector() {
    let mut files = Vec::new();
    rust_files(&analysis_dir().join("checks"), 0, &mut files);
    assert!(files.len() > 30, "the detector files were not found");
    let siblings: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .chain(["python".to_string(), "infra".to_string()])
        .filter(|s| s != "mod")
        .collect();
    let mut bad = Vec::new();
    for f in &files {
        // The registries (`mod.rs`) declare and list the detectors: that is their job.
        if f.file_name().is_some_and(|n| n == "mod.rs") {
            continue;
        }
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for v in detector_violations(&text, &siblings) {
            bad.push(format!("{}: {v}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "detectors that name other detectors:\n{}",
        bad.join("\n")
    );
}

#[test]
fn semantic_names_no_check() {
    let mut files = Vec::new();
    rust_files(&analysis_dir().join("semantic"), 0, &mut files);
    assert!(files.len() > 5, "the semantic files were not found");
    let mut bad = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for v in semantic_violations(&text) {
            bad.push(format!("{}: {v}", f.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "semantic files that name checks:\n{}",
        bad.join("\n")
    );
}

#[test]
fn scanner_catches_planted_violations() {
    let siblings = vec!["c5_blocking".to_string(), "i5_state".to_string()];
    // Allowed: the trait and registry items, the file's own test module.
    let ok = "use crate::analysis::checks::{Check, CheckMatch, PyNode};\nmod tests {\n    use super::*;\n}\n";
    assert!(detector_violations(ok, &siblings).is_empty());
    // A sibling through `super::`, through `checks::`, through `super::super::`, inside a group, in a path.
    for bad in [
        "use super::c5_blocking::Imports;",
        "use crate::analysis::checks::i5_state::own_nodes;",
        "use super::super::checks::Check;",
        "use crate::analysis::checks::{Check, c5_blocking};",
        "if super::i5_state::has_error(n) {}",
    ] {
        assert!(
            !detector_violations(bad, &siblings).is_empty(),
            "not caught: {bad}"
        );
    }
    assert!(!semantic_violations("use crate::analysis::checks::PyNode;").is_empty());
    assert!(
        semantic_violations("use crate::analysis::nodes::PyNode; // the checks read it").is_empty()
    );
    // Another crate's name ending in `checks` is not ours.
    assert!(semantic_violations("use health_checks::probe;").is_empty());
}
