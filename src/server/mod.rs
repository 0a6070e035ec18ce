//! The App's HTTP side: webhook intake, health, readiness and metrics.

pub mod metrics;
pub mod signature;
