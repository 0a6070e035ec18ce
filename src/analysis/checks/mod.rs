//! Detectors that need more than a pattern: Rust code over the parsed tree, referenced from a rule file by
//! `check: <id>`.

use super::context::FileContext;
use super::language::FileKind;
use std::ops::Range;

mod c1_counter;
mod c2_contended_row;
mod c3_session_sharing;
mod c4_pools;
mod c5_blocking;
mod c5_sync_driver;
mod c6_fanout;
mod c7_idempotency;
mod c8_scheduler;
mod c9_checkpointer;
mod f1_db_statement_timeout;
mod f2_retry_loop;
mod f3_no_fallback;
mod f4_shared_client;
mod f5_partial_failure;
mod f6_lifecycle;
mod f7_health;
mod f7_readiness;
mod i1_ownership;
mod i1_tenant;
mod i2_limits;
mod i3_fault;
mod i4_compose_ports;
mod i4_secret_in_response;
mod i5_state;
mod i6_growth;
mod infra_compose;
mod infra_dockerfile;
mod infra_k8s;
mod o1_signed_url_log;
mod o2_untraced_invocation;
mod o3_dotenv;
mod o3_env_example;
mod o3_hardcoded_secrets;
mod o4_alembic;
mod o4_model_migration;
mod sync_session;

pub use super::nodes::PyNode;

/// A place a check found, by byte range, with an optional message replacing the detector's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckMatch {
    pub range: Range<usize>,
    pub message: Option<String>,
}

/// A detector written in Rust.
pub trait Check: Sync + Send {
    /// The id rule files use in `check:`.
    fn id(&self) -> &'static str;
    /// Literal tokens one of which a file must contain for the check to find anything (empty: always run).
    fn tokens(&self) -> &'static [&'static str];
    /// Find matches in a parsed file, with no repository around it. Every check overrides this or
    /// [`Check::run_in`] (each one's default calls the other).
    fn run(&self, root: &PyNode<'_>, out: &mut Vec<CheckMatch>) {
        self.run_in(root, &FileContext::detached(), out);
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
    /// Find matches with the repository around the file in view. Checks that look beyond their own file
    /// override this; the default is [`Check::run`].
    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let _ = ctx;
        self.run(root, out);
    }
    /// Find matches, each with a safe fix where the check can offer one. Checks with fixes override this; the
    /// default is [`Check::run_in`] without fixes.
    fn run_fixing<'r>(
        &self,
        root: &PyNode<'r>,
        ctx: &FileContext<'r>,
        out: &mut Vec<(CheckMatch, Option<CheckFix>)>,
    ) {
        let mut found = Vec::new();
        self.run_in(root, ctx, &mut found);
        out.extend(found.into_iter().map(|m| (m, None)));
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
    &sync_session::SyncSessionInAsync,
    &c7_idempotency::PublicWriteNoIdempotency,
    &c9_checkpointer::UnserializedThreadRun,
    &f4_shared_client::SharedClientMixedDeps,
    &f2_retry_loop::RetryLoopUnbounded,
    &f3_no_fallback::ChatNoFallbackRoute,
    &f3_no_fallback::ChatNoFallbackChat,
    &f6_lifecycle::LifespanResourceNotClosed,
    &f6_lifecycle::SigtermExitsImmediately,
    &f7_health::FastApiNoHealth,
    &i1_tenant::TenantQueryIgnoresTenant,
    &i1_tenant::TenantQueryUnscoped,
    &i1_tenant::CacheKeyWithoutTenant,
    &i1_tenant::VectorCollectionNotScoped,
    &i1_ownership::ObjectByIdWithoutOwnerCheck,
    &i2_limits::PublicRouterWithoutRateLimit,
    &i2_limits::UploadReadWithoutSizeLimit,
    &i2_limits::UploadReadInHelper,
    &i3_fault::ProcessExitInApp,
    &i3_fault::TenantLoopWithoutIsolation,
    &i5_state::ModuleMutableState,
    &i5_state::GlobalRebindOnRequestPath,
    &i5_state::EnvironMutationOnRequestPath,
    &i6_growth::UnboundedModuleCollection,
    &i6_growth::UnboundedMemoization,
    &c5_sync_driver::SyncDriverInAsync,
    &c5_blocking::BLOCKING_HELPER,
    &c5_blocking::BLOCKING_HELPER_MEDIUM,
    &c6_fanout::UNBOUNDED_FANOUT_REQUEST,
    &c6_fanout::UNBOUNDED_FANOUT,
    &c8_scheduler::InProcessScheduler,
    &c8_scheduler::RepeatEvery,
    &c8_scheduler::StartupLoopTask,
    &c8_scheduler::CeleryBeatEmbedded,
    &f5_partial_failure::ItemLoopNoTry,
    &f5_partial_failure::SwallowedException,
    &c1_counter::CounterReadModifyWrite,
    &c1_counter::QuotaCheckThenAct,
    &c1_counter::CounterRmwLoadedElsewhere,
    &c1_counter::CountThenInsert,
    &c2_contended_row::UnlockedStatusTransition,
    &c2_contended_row::UnlockedBalanceUpdate,
    &c3_session_sharing::SessionSharedAcrossTasks,
    &c3_session_sharing::SessionPassedToTask,
    &c3_session_sharing::ModuleLevelSession,
    &c3_session_sharing::SessionOnInstance,
    &c4_pools::EnginePoolDefaults,
    &c4_pools::EnginePoolTimeoutNone,
    &c4_pools::EngineNullPool,
    &c4_pools::ClientPerRequest,
    &f1_db_statement_timeout::DbEngineNoStatementTimeout,
    &i4_compose_ports::ComposeDatastorePort,
    &i4_secret_in_response::SecretInResponse,
    &i4_secret_in_response::SecretFieldInResponseModel,
    &o1_signed_url_log::SignedUrlInLog,
    &o2_untraced_invocation::UntracedInvocation,
    &o3_hardcoded_secrets::KnownFormatSecret,
    &o3_hardcoded_secrets::NamedSecretLiteral,
    &o3_hardcoded_secrets::CredentialsInUrl,
    &infra_dockerfile::FromUnpinned,
    &infra_dockerfile::ShellFormCmd,
    &infra_dockerfile::NoHealthcheck,
    &infra_dockerfile::RunsAsRoot,
    &infra_dockerfile::SecretInEnv,
    &infra_compose::PublishedPort,
    &infra_compose::DependencyWithoutHealthcheck,
    &infra_compose::DependsOnNotHealthy,
    &infra_compose::NoLimits,
    &infra_compose::ImageUnpinned,
    &infra_compose::LiteralSecret,
    &infra_k8s::NoResources,
    &infra_k8s::NoProbes,
    &infra_k8s::ImageUnpinned,
    &infra_k8s::ServiceExposed,
    &infra_k8s::DatastoreExposed,
    &infra_k8s::SingleReplica,
    &infra_k8s::EnvSecret,
    &infra_k8s::ValuesNoResources,
    &infra_k8s::ValuesImageUnpinned,
    &o4_alembic::AlembicNoDowngrade,
    &o4_alembic::AlembicDestructiveWithoutPlan,
    &o4_alembic::AlembicLoadsWholeTable,
    &o4_model_migration::ModelChangeWithoutMigration,
    &o3_env_example::SettingNotInEnvExample,
    &o3_env_example::OptionalSettingNotInEnvExample,
    &f7_readiness::FastApiNoReadinessAnywhere,
    &o3_dotenv::EnvExampleKnownSecret,
    &o3_dotenv::EnvExampleNamedSecret,
    &infra_compose::AppWithoutHealthcheck,
];

/// Why a file of this kind cannot be analysed at all, if it cannot. Only infrastructure files: Python with
/// syntax errors is still analysed around them.
pub fn unparseable(kind: FileKind, text: &str) -> Option<String> {
    match kind {
        FileKind::Compose | FileKind::Kubernetes | FileKind::Helm => {
            crate::analysis::semantic::yaml::unparseable(text)
        }
        FileKind::Dockerfile => crate::analysis::semantic::dockerfile::unparseable(text),
        _ => None,
    }
}

/// The check with this id.
pub fn lookup(id: &str) -> Option<&'static dyn Check> {
    CHECKS.iter().copied().find(|c| c.id() == id)
}

/// Every known check id.
pub fn ids() -> Vec<&'static str> {
    CHECKS.iter().map(|c| c.id()).collect()
}
