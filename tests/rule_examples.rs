//! Every detector's `invalid` examples produce its finding and its `valid` examples none.

use prodaudit::analysis::RuleSet;
use prodaudit::analysis::examples::run_all;

#[test]
fn every_builtin_rule_example_holds() {
    let rules = match RuleSet::builtin() {
        Ok(r) => r,
        Err(e) => panic!("built-in rules do not load: {e}"),
    };
    let detectors = rules.detectors.len();
    assert!(
        detectors >= 6,
        "expected the built-in detectors, found {detectors}"
    );
    let results = run_all(rules);
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| {
            format!(
                "{} {} {} #{}: {}",
                r.rule,
                r.detector,
                r.kind,
                r.index,
                r.problem.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "failing rule examples:\n{}",
        failed.join("\n")
    );
    assert!(results.len() >= detectors * 2);
}

#[test]
fn every_rubric_rule_file_has_its_metadata() {
    let rules = match RuleSet::builtin() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    for r in &rules.rules {
        assert!(
            !r.title.is_empty() && !r.standard.is_empty() && !r.why.is_empty(),
            "{}",
            r.id
        );
        assert!(
            r.conforming.contains("```"),
            "{}: conforming pattern has a code block",
            r.id
        );
        assert!(
            r.source.ends_with(&format!("{}.yml", r.id)),
            "{} is defined in {} (one file per standard, named by id)",
            r.id,
            r.source
        );
        for &i in &r.detectors {
            let d = &rules.detectors[i];
            assert!(
                d.id.starts_with(&format!("{}-", r.id)),
                "detector {} of {}",
                d.id,
                r.id
            );
        }
    }
}

#[test]
fn every_detector_has_three_invalid_and_three_valid_examples() {
    let rules = match RuleSet::builtin() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let short: Vec<String> = rules
        .detectors
        .iter()
        .filter(|d| d.invalid.len() < 3 || d.valid.len() < 3)
        .map(|d| {
            format!(
                "{}: {} invalid, {} valid",
                d.id,
                d.invalid.len(),
                d.valid.len()
            )
        })
        .collect();
    assert!(
        short.is_empty(),
        "detectors with fewer than 3 invalid or 3 valid examples:\n{}",
        short.join("\n")
    );
}

/// README's coverage table names every rubric standard and every built-in detector, so the table users read
/// cannot fall behind the rule files.
#[test]
fn readme_coverage_table_lists_every_detector() {
    let readme_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = match std::fs::read_to_string(&readme_path) {
        Ok(t) => t,
        Err(e) => panic!("{}: {e}", readme_path.display()),
    };
    let rules = match RuleSet::builtin() {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let mut missing = Vec::new();
    for r in &rules.rules {
        let prefix = format!("| {} ", r.id);
        let Some(row) = readme.lines().find(|l| l.starts_with(&prefix)) else {
            missing.push(format!("{}: no row", r.id));
            continue;
        };
        let listed: Vec<&str> = row
            .split('|')
            .nth(2)
            .unwrap_or("")
            .split(',')
            .map(|s| s.split_whitespace().next().unwrap_or(""))
            .collect();
        for &i in &r.detectors {
            let d = &rules.detectors[i];
            let short = d.id.trim_start_matches(&format!("{}-", r.id));
            if !listed.contains(&short) {
                missing.push(format!("{}: {} not in its row", r.id, d.id));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README coverage table is out of date:\n{}",
        missing.join("\n")
    );
}
