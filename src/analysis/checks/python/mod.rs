//! Detectors over Python code: each a leaf that reads facts from `semantic::python`.

pub mod c1_counter;
pub mod c2_contended_row;
pub mod c3_session_sharing;
pub mod c4_pools;
pub mod c5_blocking;
pub mod c5_sync_driver;
pub mod c6_fanout;
pub mod c7_idempotency;
pub mod c8_scheduler;
pub mod c9_checkpointer;
#[cfg(test)]
mod example_check;
pub mod f1_db_statement_timeout;
pub mod f2_retry_loop;
pub mod f3_no_fallback;
pub mod f4_shared_client;
pub mod f5_partial_failure;
pub mod f6_lifecycle;
pub mod f7_health;
pub mod f7_readiness;
pub mod i1_ownership;
pub mod i1_tenant;
pub mod i2_limits;
pub mod i3_fault;
pub mod i4_secret_in_response;
pub mod i5_state;
pub mod i6_growth;
pub mod o1_signed_url_log;
pub mod o2_untraced_invocation;
pub mod o3_env_example;
pub mod o3_hardcoded_secrets;
pub mod o4_alembic;
pub mod o4_model_migration;
pub mod sync_session;
