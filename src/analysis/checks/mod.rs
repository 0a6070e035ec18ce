//! Detectors that need more than a pattern: Rust code over the parsed tree, referenced from a rule file by
//! `check: <id>`.

use super::context::FileContext;
use std::ops::Range;

mod infra;
mod python;

pub use super::nodes::PyNode;

/// A place a check found, by byte range, with an optional message replacing the detector's own and an
/// optional safe fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMatch {
    pub range: Range<usize>,
    pub message: Option<String>,
    pub fix: Option<CheckFix>,
}

/// A detector written in Rust. It has one method that finds anything, [`Check::run`]; the others are
/// metadata the engine reads before parsing (which files can match, which other files the check reads), and
/// [`Check::run_text`] for the few checks over files no grammar parses. None of them calls another.
pub trait Check: Sync + Send {
    /// The id rule files use in `check:`.
    fn id(&self) -> &'static str;
    /// Find matches in a parsed file, with the file's context (its path, the repository around it, the node
    /// index and the memoised semantic models) in `ctx`.
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>);
    /// Literal tokens one of which a file must contain for the check to find anything (empty: always run).
    fn tokens(&self) -> &'static [&'static str] {
        &[]
    }
    /// Further token groups, each of which must also have one token in the file (an AND of ORs with
    /// [`Check::tokens`]): what the check needs besides its main token, so that files that cannot match are
    /// not parsed for it. Each group must be a necessary condition of every finding.
    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[]
    }
    /// A regular expression the file must match, checked after the tokens (a necessary condition of every
    /// finding that tokens cannot express, such as "an item word in a `for` line").
    fn requires_regex(&self) -> Option<&'static str> {
        None
    }
    /// Globs of other repository files whose contents the check reads (e.g. `**/.env.example`); the caller
    /// fetches only these.
    fn needs(&self) -> &'static [&'static str] {
        &[]
    }
    /// Find matches in a file no grammar parses (a kind whose `lang()` is `None`, e.g. `.env.example`), read as
    /// text. Only checks whose rule names such a kind in `file_kinds` are asked; the default finds nothing.
    fn run_text(&self, text: &str, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let _ = (text, ctx, out);
    }
}

/// A replacement a check proposes for a byte range of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckFix {
    pub range: Range<usize>,
    pub replacement: String,
}

static CHECKS: &[&dyn Check] = &[
    &python::sync_session::SyncSessionInAsync,
    &python::c7_idempotency::PublicWriteNoIdempotency,
    &python::c9_checkpointer::UnserializedThreadRun,
    &python::f4_shared_client::SharedClientMixedDeps,
    &python::f2_retry_loop::RetryLoopUnbounded,
    &python::f3_no_fallback::ChatNoFallbackRoute,
    &python::f3_no_fallback::ChatNoFallbackChat,
    &python::f6_lifecycle::LifespanResourceNotClosed,
    &python::f6_lifecycle::SigtermExitsImmediately,
    &python::f7_health::FastApiNoHealth,
    &python::i1_tenant::TenantQueryIgnoresTenant,
    &python::i1_tenant::TenantQueryUnscoped,
    &python::i1_tenant::CacheKeyWithoutTenant,
    &python::i1_tenant::VectorCollectionNotScoped,
    &python::i1_ownership::ObjectByIdWithoutOwnerCheck,
    &python::i1_ownership::TenantIdUnchecked,
    &python::i1_ownership::StreamByIdWithoutOwnerCheck,
    &python::i1_ownership::WebhookTenantUnverified,
    &python::i1_ownership::RouteListsEveryTenant,
    &python::i2_limits::PublicRouterWithoutRateLimit,
    &python::i2_limits::UploadReadWithoutSizeLimit,
    &python::i2_limits::UploadReadInHelper,
    &python::i3_fault::ProcessExitInApp,
    &python::i3_fault::TenantLoopWithoutIsolation,
    &python::i5_state::ModuleMutableState,
    &python::i5_state::GlobalRebindOnRequestPath,
    &python::i5_state::EnvironMutationOnRequestPath,
    &python::i6_growth::UnboundedModuleCollection,
    &python::i6_growth::UnboundedMemoization,
    &python::c5_sync_driver::SYNC_DB_DRIVER,
    &python::c5_sync_driver::SYNC_SDK_CLIENT,
    &python::c5_blocking::BLOCKING_HELPER,
    &python::c5_blocking::BLOCKING_HELPER_MEDIUM,
    &python::c6_fanout::UNBOUNDED_FANOUT_REQUEST,
    &python::c6_fanout::UNBOUNDED_FANOUT,
    &python::c8_scheduler::InProcessScheduler,
    &python::c8_scheduler::RepeatEvery,
    &python::c8_scheduler::StartupLoopTask,
    &python::c8_scheduler::CeleryBeatEmbedded,
    &python::f5_partial_failure::ItemLoopNoTry,
    &python::f5_partial_failure::SwallowedException,
    &python::c1_counter::CounterReadModifyWrite,
    &python::c1_counter::QuotaCheckThenAct,
    &python::c1_counter::CounterRmwLoadedElsewhere,
    &python::c1_counter::CountThenInsert,
    &python::c2_contended_row::UnlockedStatusTransition,
    &python::c2_contended_row::UnlockedBalanceUpdate,
    &python::c3_session_sharing::SessionSharedAcrossTasks,
    &python::c3_session_sharing::SessionPassedToTask,
    &python::c3_session_sharing::ModuleLevelSession,
    &python::c3_session_sharing::SessionOnInstance,
    &python::c4_pools::EnginePoolDefaults,
    &python::c4_pools::EnginePoolTimeoutNone,
    &python::c4_pools::EngineNullPool,
    &python::c4_pools::ClientPerRequest,
    &python::f1_db_statement_timeout::DbEngineNoStatementTimeout,
    &infra::i4_compose_ports::ComposeDatastorePort,
    &python::i4_secret_in_response::SecretInResponse,
    &python::i4_secret_in_response::SecretFieldInResponseModel,
    &python::o1_signed_url_log::SignedUrlInLog,
    &python::o2_untraced_invocation::UntracedInvocation,
    &python::o3_hardcoded_secrets::KnownFormatSecret,
    &python::o3_hardcoded_secrets::NamedSecretLiteral,
    &python::o3_hardcoded_secrets::CredentialsInUrl,
    &infra::infra_dockerfile::FromUnpinned,
    &infra::infra_dockerfile::ShellFormCmd,
    &infra::infra_dockerfile::NoHealthcheck,
    &infra::infra_dockerfile::RunsAsRoot,
    &infra::infra_dockerfile::SecretInEnv,
    &infra::infra_compose::PublishedPort,
    &infra::infra_compose::DependencyWithoutHealthcheck,
    &infra::infra_compose::DependsOnNotHealthy,
    &infra::infra_compose::NoLimits,
    &infra::infra_compose::ImageUnpinned,
    &infra::infra_compose::LiteralSecret,
    &infra::infra_k8s::NoResources,
    &infra::infra_k8s::NoProbes,
    &infra::infra_k8s::ImageUnpinned,
    &infra::infra_k8s::ServiceExposed,
    &infra::infra_k8s::DatastoreExposed,
    &infra::infra_k8s::SingleReplica,
    &infra::infra_k8s::EnvSecret,
    &infra::infra_k8s::ValuesNoResources,
    &infra::infra_k8s::ValuesImageUnpinned,
    &python::o4_alembic::AlembicNoDowngrade,
    &python::o4_alembic::AlembicDestructiveWithoutPlan,
    &python::o4_alembic::AlembicLoadsWholeTable,
    &python::o4_model_migration::ModelChangeWithoutMigration,
    &python::o3_env_example::SettingNotInEnvExample,
    &python::o3_env_example::OptionalSettingNotInEnvExample,
    &python::f7_readiness::FastApiNoReadinessAnywhere,
    &infra::o3_dotenv::EnvExampleKnownSecret,
    &infra::o3_dotenv::EnvExampleNamedSecret { local: false },
    &infra::o3_dotenv::EnvExampleNamedSecret { local: true },
    &infra::infra_compose::AppWithoutHealthcheck,
];

/// The check with this id.
pub fn lookup(id: &str) -> Option<&'static dyn Check> {
    CHECKS.iter().copied().find(|c| c.id() == id)
}

/// Every known check id.
pub fn ids() -> Vec<&'static str> {
    CHECKS.iter().map(|c| c.id()).collect()
}
