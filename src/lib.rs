//! prodaudit: reviews pull requests of async Python services against the production-standards rubric.

pub mod action;
pub mod analysis;
pub mod audit;
pub mod cache;
pub mod config;
pub mod diff;
pub mod git;
pub mod github;
pub mod queue;
pub mod repo_config;
pub mod report;
pub mod sandbox;
pub mod serve;
pub mod server;
pub mod setup;
pub mod worker;
