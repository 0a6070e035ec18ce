//! Facts about code, computed in one place and read by every detector and by the engine. Nothing here imports
//! a detector.

pub mod container;
pub mod dockerfile;
pub mod loaders;
pub mod paths;
pub mod python;
pub mod ratelimit;
pub mod reach;
pub mod secrets;
pub mod sessions;
pub mod tenancy;
pub mod uses;
pub mod yaml;
