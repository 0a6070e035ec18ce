//! Detectors that need more than a pattern: Rust code over the parsed tree, referenced from a rule file by
//! `check: <id>`.

use super::context::FileContext;
use super::language::{FileKind, Lang};
use ast_grep_core::Node;
use ast_grep_core::tree_sitter::StrDoc;
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
mod dockerfile_util;
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
pub(crate) mod yaml_util;

/// A node of a parsed file (Python, Dockerfile or YAML: the grammar is the file's).
pub type PyNode<'r> = Node<'r, StrDoc<Lang>>;

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

/// Tokens one of which a route handler's decorator contains (`@router.get(`, `@app.post(`: see
/// [`is_route_handler`]), for checks that only look at route handlers.
pub const ROUTE_DECORATOR_TOKENS: &[&str] = &[
    ".get(",
    ".post(",
    ".put(",
    ".patch(",
    ".delete(",
    ".head(",
    ".options(",
    ".api_route(",
    ".websocket(",
];

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

/// Links of a chain (`a.b.c`, `a.b().c()`) that recursive helpers follow before giving up: far more than real
/// code has, few enough that a chain as long as the file cannot exhaust the stack.
pub const MAX_CHAIN: usize = 64;

/// Why a file of this kind cannot be analysed at all, if it cannot. Only infrastructure files: Python with
/// syntax errors is still analysed around them.
pub fn unparseable(kind: FileKind, text: &str) -> Option<String> {
    match kind {
        FileKind::Compose | FileKind::Kubernetes | FileKind::Helm => yaml_util::unparseable(text),
        FileKind::Dockerfile => dockerfile_util::unparseable(text),
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

/// True for `async def` function definitions.
pub fn is_async_def(node: &PyNode<'_>) -> bool {
    node.kind() == "function_definition" && node.child(0).is_some_and(|c| c.kind() == "async")
}

/// The nearest enclosing function (`def`, `async def` or `lambda`) of a node, not counting the node itself.
pub fn enclosing_function<'r>(node: &PyNode<'r>) -> Option<PyNode<'r>> {
    node.ancestors()
        .find(|a| matches!(a.kind().as_ref(), "function_definition" | "lambda"))
}

/// Is the node's code run on the event loop, i.e. is its nearest enclosing function an `async def`?
pub fn in_async_context(node: &PyNode<'_>) -> bool {
    enclosing_function(node).is_some_and(|f| is_async_def(&f))
}

/// The callee text of a `call` node, e.g. `requests.get` or `db.query` (whitespace removed).
pub fn callee(call: &PyNode<'_>) -> Option<String> {
    let f = call.field("function")?;
    Some(f.text().split_whitespace().collect())
}

/// The value of keyword argument `name` of a `call` node.
pub fn keyword_arg<'r>(call: &PyNode<'r>, name: &str) -> Option<PyNode<'r>> {
    let args = call.field("arguments")?;
    args.children()
        .filter(|a| a.kind() == "keyword_argument")
        .find(|a| a.field("name").is_some_and(|n| n.text() == name))
        .and_then(|a| a.field("value"))
}

/// The `n`-th (0-based) positional argument of a `call` node.
pub fn positional_arg<'r>(call: &PyNode<'r>, n: usize) -> Option<PyNode<'r>> {
    let args = call.field("arguments")?;
    args.children()
        .filter(|a| {
            a.is_named()
                && !matches!(
                    a.kind().as_ref(),
                    "keyword_argument" | "dictionary_splat" | "list_splat" | "comment"
                )
        })
        .nth(n)
}

/// The value of a string literal (`string` or `concatenated_string` node) without prefix and quotes, escapes
/// left as written; `None` for f-strings with interpolations and for other nodes.
pub fn string_value(node: &PyNode<'_>) -> Option<String> {
    match node.kind().as_ref() {
        "string" => {
            let mut out = String::new();
            for c in node.children() {
                match c.kind().as_ref() {
                    "interpolation" => return None,
                    "string_content" => out.push_str(&c.text()),
                    _ => {}
                }
            }
            Some(out)
        }
        "concatenated_string" => {
            let mut out = String::new();
            for c in node.children().filter(|c| c.kind() == "string") {
                out.push_str(&string_value(&c)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Is this `def`/`async def` a web route handler, i.e. decorated with `@<router or app>.get/post/put/patch/
/// delete/head/options/api_route/websocket(...)`?
pub fn is_route_handler(func: &PyNode<'_>) -> bool {
    let Some(parent) = func.parent() else {
        return false;
    };
    if parent.kind() != "decorated_definition" {
        return false;
    }
    parent
        .children()
        .filter(|d| d.kind() == "decorator")
        .any(|d| {
            let t: String = d.text().split_whitespace().collect();
            let t = t.trim_start_matches('@');
            let head = t.split('(').next().unwrap_or("");
            t.contains('(')
                && head.contains('.')
                && matches!(
                    head.rsplit('.').next(),
                    Some(
                        "get"
                            | "post"
                            | "put"
                            | "patch"
                            | "delete"
                            | "head"
                            | "options"
                            | "api_route"
                            | "websocket"
                    )
                )
        })
}

/// The last dotted segment of a call's callee: `sleep` for `asyncio.sleep(…)`, `AsyncClient` for
/// `httpx.AsyncClient(…)`.
pub fn callee_tail(call: &PyNode<'_>) -> Option<String> {
    let f = call.field("function")?;
    match f.kind().as_ref() {
        "identifier" => Some(f.text().to_string()),
        "attribute" => f.field("attribute").map(|a| a.text().to_string()),
        _ => None,
    }
}

/// Every descendant of `node` (not `node` itself) that runs in the same function body: nested `def`, `lambda`
/// and `class` bodies are not entered (the nested definition node itself is included).
pub fn same_scope_descendants<'r>(node: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let mut out = Vec::new();
    let mut stack: Vec<PyNode<'r>> = node.children().collect();
    while let Some(n) = stack.pop() {
        let nested = matches!(
            n.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition"
        );
        if !nested {
            stack.extend(n.children());
        }
        out.push(n);
    }
    out.sort_by_key(|n| n.range().start);
    out
}

/// Does a `call` pass `**kwargs` (so any keyword may be set where we cannot see it)?
pub fn has_kwargs_splat(call: &PyNode<'_>) -> bool {
    call.field("arguments")
        .is_some_and(|args| args.children().any(|a| a.kind() == "dictionary_splat"))
}

/// The name of a `def`/`async def` node.
pub fn function_name(func: &PyNode<'_>) -> Option<String> {
    func.field("name").map(|n| n.text().to_string())
}

/// Is the node at module level (no enclosing function or class)?
pub fn is_module_level(node: &PyNode<'_>) -> bool {
    !node.ancestors().any(|a| {
        matches!(
            a.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition"
        )
    })
}

/// Is the node inside an `if __name__ == "__main__":` block?
pub fn in_main_guard(node: &PyNode<'_>) -> bool {
    node.ancestors().any(|a| {
        a.kind() == "if_statement"
            && a.field("condition").is_some_and(|c| {
                let t: String = c.text().split_whitespace().collect();
                t == "__name__==\"__main__\"" || t == "__name__=='__main__'"
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn first_call<'r>(root: &PyNode<'r>) -> PyNode<'r> {
        match root.dfs().find(|n| n.kind() == "call") {
            Some(c) => c,
            None => panic!("no call in the snippet"),
        }
    }

    #[test]
    fn call_helpers() {
        let doc = Lang::Python.ast_grep("requests.get(url, timeout=None, **extra)\n");
        let root = doc.root();
        let call = first_call(&root);
        assert_eq!(callee(&call).as_deref(), Some("requests.get"));
        assert_eq!(
            keyword_arg(&call, "timeout")
                .map(|v| v.text().to_string())
                .as_deref(),
            Some("None")
        );
        assert!(keyword_arg(&call, "verify").is_none());
        assert!(has_kwargs_splat(&call));
        assert!(is_module_level(&call));
        assert!(!in_main_guard(&call));
    }

    #[test]
    fn scope_helpers() {
        let src = "async def a():\n    f()\n    def b():\n        g()\n    h(lambda: k())\nif __name__ == '__main__':\n    m()\n";
        let doc = Lang::Python.ast_grep(src);
        let root = doc.root();
        let call = |name: &str| match root
            .dfs()
            .find(|n| n.kind() == "call" && callee(n).as_deref() == Some(name))
        {
            Some(c) => c,
            None => panic!("no call {name}"),
        };
        assert!(in_async_context(&call("f")));
        assert!(
            !in_async_context(&call("g")),
            "nested def is not the coroutine"
        );
        assert!(
            !in_async_context(&call("k")),
            "lambda runs wherever it is handed"
        );
        assert!(in_async_context(&call("h")));
        assert!(in_main_guard(&call("m")));
        assert!(!is_module_level(&call("f")));
        assert_eq!(
            enclosing_function(&call("g"))
                .and_then(|f| function_name(&f))
                .as_deref(),
            Some("b")
        );
    }
}
