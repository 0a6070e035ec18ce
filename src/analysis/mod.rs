//! The analysis engine: languages, rule loading, suppressions, and Rust checks.

pub mod checks;
pub mod engine;
pub mod examples;
pub mod language;
pub mod rules;
pub mod suppress;

pub use engine::{Engine, FileOutcome, Overrides};
pub use rules::{RuleError, RuleSet};
