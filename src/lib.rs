//! prodaudit: reviews pull requests of async Python services against the production-standards rubric.

pub mod analysis;
pub mod audit;
pub mod diff;
pub mod git;
pub mod repo_config;
pub mod report;
