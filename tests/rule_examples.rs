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
