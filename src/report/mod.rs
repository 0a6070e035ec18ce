//! Findings and their outputs: text, json, sarif and GitHub workflow annotations.

pub mod finding;
pub mod markdown;
pub mod output;

pub use finding::{Capped, CheckMeta, FailOn, Finding, Fix, Report, RuleMeta, Severity, Skipped};
