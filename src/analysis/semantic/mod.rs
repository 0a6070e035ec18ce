//! Facts about code, computed in one place and read by every detector and by the engine. Nothing here imports
//! a detector.

pub mod paths;
pub mod tenancy;
