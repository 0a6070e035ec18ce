//! GitHub: App authentication, the API client, and the events the App acts on.

pub mod api;
pub mod auth;
pub mod client;
pub mod events;
pub mod model;
pub mod review;

pub use client::{GitHub, GitHubError};
