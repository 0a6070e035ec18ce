//! The analysis engine: languages, rule loading, suppressions, and Rust checks.

pub mod checks;
pub mod context;
pub mod engine;
pub mod examples;
pub mod language;
pub mod limits;
pub mod moved;
pub mod nodes;
pub mod plan;
pub mod repo_model;
pub mod rules;
pub mod semantic;
pub mod suppress;
pub mod timings;

pub use context::{FileContext, RepoContext};
pub use engine::{Engine, FileOutcome, Overrides};
pub use rules::{RuleError, RuleSet};
