//! Runs every detector's `invalid` and `valid` examples: each invalid example must produce the detector's
//! finding, each valid one none. Used by `prodaudit rules test` and by `cargo test`.

use super::engine::{Engine, Overrides};
use super::rules::RuleSet;

/// The outcome of one example.
#[derive(Debug, Clone)]
pub struct ExampleResult {
    pub rule: String,
    pub detector: String,
    /// `invalid` or `valid`, and its position in the list (1-based).
    pub kind: &'static str,
    pub index: usize,
    pub passed: bool,
    /// What went wrong, when it failed.
    pub problem: Option<String>,
}

/// Run the examples of every detector in `rules`.
pub fn run_all(rules: RuleSet) -> Vec<ExampleResult> {
    let engine = Engine::new(rules, Overrides::default());
    let mut results = Vec::new();
    for (i, d) in engine.rules.detectors.iter().enumerate() {
        let rule = engine.rules.rule_of(d).id.clone();
        for (kind, examples) in [("invalid", &d.invalid), ("valid", &d.valid)] {
            for (n, ex) in examples.iter().enumerate() {
                let outcome = engine.analyze_in(&ex.path, &ex.code, None, &ex.repo, Some(i));
                let hits: Vec<_> = outcome
                    .findings
                    .iter()
                    .filter(|f| f.check == d.id)
                    .collect();
                let problem = match (kind, hits.is_empty()) {
                    ("invalid", true) => Some(format!(
                        "expected a `{}` finding in {}, got none",
                        d.id, ex.path
                    )),
                    ("valid", false) => Some(format!(
                        "expected no finding, got {} at line(s) {}",
                        hits.len(),
                        hits.iter()
                            .map(|f| f.line.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    _ => None,
                };
                results.push(ExampleResult {
                    rule: rule.clone(),
                    detector: d.id.clone(),
                    kind,
                    index: n + 1,
                    passed: problem.is_none(),
                    problem,
                });
            }
        }
    }
    results
}
