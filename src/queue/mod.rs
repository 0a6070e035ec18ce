//! Durable job queue of the GitHub App: webhooks are stored here before they are acknowledged, and workers
//! claim them from here.
//!
//! One interface ([`JobStore`]), two backends chosen by the database URL ([`open`]):
//! - SQLite (the embedded default): one file in WAL mode, `synchronous=FULL`. All writes of this process go
//!   through one connection, and enqueues are group-committed (a batch of concurrent enqueues shares one
//!   transaction and one fsync), so each enqueue is on disk before it returns. `sqlite:PATH?synchronous=normal`
//!   skips the fsync (still safe against a crash of the process, not against power loss).
//! - PostgreSQL (several replicas): claims lock rows with `FOR UPDATE SKIP LOCKED`; migrations run under a
//!   PostgreSQL advisory lock, so replicas may start at the same time.
//!
//! Semantics shared by both backends:
//! - **Dedup**: every delivery id is remembered (until [`JobStore::prune`]); a redelivery stores nothing.
//! - **Coalescing**: an *audit of a pull request* (`pr_number` set and `payload.kind` absent or `"audit"`)
//!   merges into the queued (not running) audit of the same `(repo, pr_number)` if there is one: the newer
//!   delivery, event and head replace the older ones (a `None` head keeps the known head), and a full audit
//!   (`payload.full == true`) is never weakened into a plain one (the full payload is kept, at the newer head).
//!   Other jobs (no pull request, or another `kind`) are never coalesced.
//! - **Claiming**: round-robin over installations (the one claimed longest ago first), skipping installations
//!   that already have `per_installation_cap` jobs running under a live lease; oldest job first within an
//!   installation (installations never claimed before go first, by installation id). Audits of one pull request never run at the same time (the next waits for the running one),
//!   and when a pull request has several runnable audits the newest is taken first. A running job whose lease
//!   expired (crashed worker) is claimable again; each claim counts an attempt.
//! - **Bounded queue** ([`JobStore::enqueue_bounded`]): the job is always stored (a webhook is never lost).
//!   Then, if more than `max_depth` jobs are queued, runnable audits whose head was superseded by a newer
//!   audit of the same pull request are dropped (state `dropped`). Nothing else is dropped: if the queue is
//!   still over its depth, [`BoundedEnqueue::over_capacity`] says so (for logs and metrics). Past 1,000
//!   queued jobs, both backends look for them beside intake (SQLite beside its single writer, dropping them
//!   in a later enqueue's commit; PostgreSQL in a task of its own, one at a time) and report the drops on a
//!   later bounded enqueue, so that a deep queue does not slow the webhook that found it over its depth.

mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Default for the bounded queue: queued jobs above this make enqueue drop superseded audits.
pub const DEFAULT_MAX_DEPTH: u64 = 10_000;
/// Default retention of delivery ids and finished jobs for [`JobStore::prune`].
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Work to store, built from one webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// `X-GitHub-Event`.
    pub event: String,
    pub installation_id: i64,
    /// `owner/name`.
    pub repo: String,
    pub pr_number: Option<i64>,
    pub head_sha: Option<String>,
    /// What the worker needs, e.g. `{"kind":"audit","full":false,"comment_id":1}`.
    pub payload: serde_json::Value,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    Queued,
    Running,
    Done,
    /// Given up after its last attempt; kept for inspection.
    Dead,
    /// Dropped by the bounded queue (its head was superseded).
    Dropped,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Dead => "dead",
            JobState::Dropped => "dropped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "dead" => JobState::Dead,
            "dropped" => JobState::Dropped,
            _ => return None,
        })
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: i64,
    /// The newest delivery merged into this job.
    pub delivery_id: String,
    pub event: String,
    pub installation_id: i64,
    pub repo: String,
    pub pr_number: Option<i64>,
    pub head_sha: Option<String>,
    pub payload: serde_json::Value,
    /// Claims so far, this one included (a graceful requeue does not count).
    pub attempts: u32,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub state: JobState,
    pub run_after: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// What [`JobStore::claim_within`] took.
#[derive(Debug, Clone, PartialEq)]
pub enum Claimed {
    /// Leased to the caller, to run (state running, one more attempt counted).
    Run(Job),
    /// Its attempts were used up before this claim: now dead, not to be run; its check run is the
    /// caller's to complete.
    Exhausted(Job),
}

/// Why a job whose attempts were used up by claims without an outcome is given up (stored as its
/// `last_error`); `last_error` is the error its earlier attempts recorded, if any.
pub fn exhausted_reason(attempts: u32, last_error: Option<&str>) -> String {
    let mut reason = format!(
        "the audit stopped the worker (crash or time-out) and was given up after {attempts} attempt{}",
        if attempts == 1 { "" } else { "s" }
    );
    if let Some(error) = last_error.filter(|e| !e.is_empty()) {
        reason.push_str("; last recorded error: ");
        reason.push_str(error);
    }
    reason
}

/// What [`JobStore::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new job with this id.
    New(i64),
    /// The delivery id was already stored; nothing was written.
    Duplicate,
    /// Merged into this queued job of the same pull request.
    Coalesced(i64),
}

impl Enqueued {
    /// The job that will do the work, if any.
    pub fn job_id(self) -> Option<i64> {
        match self {
            Enqueued::New(id) | Enqueued::Coalesced(id) => Some(id),
            Enqueued::Duplicate => None,
        }
    }
}

/// What [`JobStore::enqueue_bounded`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundedEnqueue {
    pub enqueued: Enqueued,
    /// Superseded audits dropped to make room (SQLite group-commits concurrent enqueues: the drops of one
    /// batch are reported on its first bounded enqueue; with a deep queue, on both backends, on a later
    /// enqueue than the one that found the queue over its depth).
    pub dropped: u64,
    /// More than `max_depth` jobs are still queued after dropping (the job is stored all the same).
    pub over_capacity: bool,
}

/// Jobs by state, for metrics and readiness.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub queued: u64,
    /// Including jobs whose lease expired and that wait to be claimed again.
    pub running: u64,
    pub dead: u64,
}

/// What [`JobStore::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Done and dropped jobs (dead jobs are kept).
    pub jobs: u64,
    pub deliveries: u64,
    pub check_runs: u64,
}

/// Connection settings; [`open`] uses the defaults.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// PostgreSQL pool size (concurrent enqueues wait for their commit's fsync on a connection, so this
    /// bounds PostgreSQL intake throughput); SQLite reader pool size (SQLite writes use one connection).
    pub max_connections: u32,
    /// Longest wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// SQLite: longest wait for another process's write lock.
    pub busy_timeout: Duration,
    /// PostgreSQL `statement_timeout`.
    pub statement_timeout: Duration,
    /// PostgreSQL: longest wait for another replica's migration.
    pub migration_lock_timeout: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            migration_lock_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(
        "DATABASE_URL {url:?} is not supported: use an SQLite file path, sqlite://PATH?mode=rwc, or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl { url: String },
    #[error("cannot open the {backend} database {target}: {source}")]
    Connect {
        backend: &'static str,
        target: String,
        source: sqlx::Error,
    },
    #[error("cannot migrate the {backend} queue schema: {source}")]
    Migrate {
        backend: &'static str,
        source: sqlx::migrate::MigrateError,
    },
    #[error(
        "another replica held the PostgreSQL migration lock for more than {0:?}; is a migration stuck?"
    )]
    MigrationLockTimeout(Duration),
    #[error("{backend} queue: {op} failed: {source}")]
    Database {
        backend: &'static str,
        op: &'static str,
        source: Arc<sqlx::Error>,
    },
    #[error("stored job {id} has an invalid {field}: {problem}")]
    Corrupt {
        id: i64,
        field: &'static str,
        problem: String,
    },
    #[error("{what} is out of range: {problem}")]
    InvalidInput { what: &'static str, problem: String },
    #[error("the SQLite queue writer has stopped (the store was closed)")]
    WriterStopped,
}

/// The durable job store; the server and workers hold an `Arc<dyn JobStore>` from [`open`].
///
/// Lease-guarded calls (`extend_lease`, `complete`, `retry`, `give_up`) answer `false` when the job is not
/// running under `worker_id` any more (its lease was taken over after expiry): the worker must then stop
/// without reporting.
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug {
    /// "sqlite" or "postgres".
    fn backend(&self) -> &'static str;

    /// Stores a job durably (dedup by delivery id, coalescing per pull request) before returning.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        Ok(self.enqueue_bounded(job, u64::MAX).await?.enqueued)
    }

    /// [`JobStore::enqueue`], then drops superseded audits while more than `max_depth` jobs are queued (see
    /// the module documentation). `u64::MAX` means unbounded.
    async fn enqueue_bounded(
        &self,
        job: NewJob,
        max_depth: u64,
    ) -> Result<BoundedEnqueue, QueueError>;

    /// Atomically takes the next runnable job for `worker_id`, leased for `lease`, with no bound on its
    /// attempts (see [`JobStore::claim_within`]).
    async fn claim(
        &self,
        worker_id: &str,
        lease: Duration,
        per_installation_cap: usize,
    ) -> Result<Option<Job>, QueueError> {
        match self
            .claim_within(worker_id, lease, per_installation_cap, u32::MAX)
            .await?
        {
            Some(Claimed::Run(job)) => Ok(Some(job)),
            // Not reachable with `u32::MAX` attempts (the count saturates below it); nothing to run.
            Some(Claimed::Exhausted(_)) | None => Ok(None),
        }
    }

    /// Atomically takes the next runnable job for `worker_id`, leased for `lease`; the claim counts an
    /// attempt. A job already claimed `max_attempts` times (its earlier attempts stopped the worker: a crash
    /// or a kill leaves no outcome, only an expired lease) is not run again: the same statement marks it
    /// dead, its attempts unchanged and `last_error` saying why ([`exhausted_reason`]), and it is returned
    /// as [`Claimed::Exhausted`] so that the caller can report it.
    async fn claim_within(
        &self,
        worker_id: &str,
        lease: Duration,
        per_installation_cap: usize,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, QueueError>;

    /// Renews the lease from now; `false` if the lease was lost.
    async fn extend_lease(
        &self,
        id: i64,
        worker_id: &str,
        lease: Duration,
    ) -> Result<bool, QueueError>;

    /// Marks the job done; `false` if the lease was lost.
    async fn complete(&self, id: i64, worker_id: &str) -> Result<bool, QueueError>;

    /// Puts the job back in the queue, runnable from `run_after`; `false` if the lease was lost. If a newer
    /// audit of the same pull request is queued meanwhile, the job is merged into it instead (state done).
    async fn retry(
        &self,
        id: i64,
        worker_id: &str,
        error: &str,
        run_after: DateTime<Utc>,
    ) -> Result<bool, QueueError>;

    /// Marks the job dead (kept for inspection); `false` if the lease was lost.
    async fn give_up(&self, id: i64, worker_id: &str, error: &str) -> Result<bool, QueueError>;

    /// Graceful shutdown: this worker's running jobs go back to the queue, runnable now, and the attempt is
    /// not counted. Returns how many.
    async fn requeue_running(&self, worker_id: &str) -> Result<u64, QueueError>;

    /// True when a newer audit (greater id) of the same pull request, queued, running or done, has another
    /// head: an audit of this job's head must not post. False when either head is unknown.
    async fn is_superseded(&self, job: &Job) -> Result<bool, QueueError>;

    /// One job by id, in any state.
    async fn job(&self, id: i64) -> Result<Option<Job>, QueueError>;

    async fn depth(&self) -> Result<QueueDepth, QueueError>;

    /// Readiness: the database answers.
    async fn ping(&self) -> Result<(), QueueError>;

    /// Readiness of intake: this process can write to the database (SQLite: the writer connection's last
    /// write succeeded, or a probe write does now — a full disk or a read-only file fails it).
    async fn writable(&self) -> Result<(), QueueError> {
        self.ping().await
    }

    /// Removes done and dropped jobs finished, delivery ids received and check-run records written more than
    /// `older_than` ago. Dead jobs and comment fingerprints are kept.
    async fn prune(&self, older_than: Duration) -> Result<Pruned, QueueError>;

    /// Remembers posted review comments by finding fingerprint (a fingerprint seen again takes the new id).
    async fn record_comments(
        &self,
        repo: &str,
        pr_number: i64,
        comments: &[(String, i64)],
    ) -> Result<(), QueueError>;

    /// The comments recorded for a pull request, by fingerprint.
    async fn posted_comments(
        &self,
        repo: &str,
        pr_number: i64,
    ) -> Result<Vec<(String, i64)>, QueueError>;

    /// Forgets one fingerprint (its comment was resolved or deleted); `false` if it was not recorded.
    async fn forget_comment(
        &self,
        repo: &str,
        pr_number: i64,
        fingerprint: &str,
    ) -> Result<bool, QueueError>;

    /// Remembers the check run of a head.
    async fn set_check_run(
        &self,
        repo: &str,
        head_sha: &str,
        check_run_id: i64,
    ) -> Result<(), QueueError>;

    async fn check_run(&self, repo: &str, head_sha: &str) -> Result<Option<i64>, QueueError>;

    /// Closes the connections (after in-flight calls finish). Later calls fail.
    async fn close(&self);
}

/// Opens the store named by `database_url` with default [`QueueOptions`].
///
/// `postgres://…` / `postgresql://…` select PostgreSQL; `sqlite:…` or a plain file path select SQLite (the
/// file is created if missing). The schema is migrated before this returns.
pub async fn open(database_url: &str) -> Result<Arc<dyn JobStore>, QueueError> {
    open_with(database_url, &QueueOptions::default()).await
}

/// [`open`] with explicit connection settings.
pub async fn open_with(
    database_url: &str,
    options: &QueueOptions,
) -> Result<Arc<dyn JobStore>, QueueError> {
    let url = database_url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url, options).await?))
    } else if url.starts_with("sqlite:") || (!url.is_empty() && !url.contains("://")) {
        Ok(Arc::new(SqliteStore::open(url, options).await?))
    } else {
        Err(QueueError::UnsupportedUrl {
            url: redact_url(url),
        })
    }
}

/// Exponential backoff with full jitter: a uniformly random delay in `[0, min(max, base * 2^(attempt-1))]`.
/// `attempt` counts from 1 (the delay after the first failure); 0 is treated as 1.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1);
    let factor = 1u32.checked_shl(exponent).unwrap_or(u32::MAX);
    let ceiling = base.checked_mul(factor).unwrap_or(max).min(max);
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::random_range(0..=micros))
}

/// How often the real queued count is taken at least, and at most while the queue stays over capacity.
const GAUGE_REFRESH: Duration = Duration::from_secs(1);
const GAUGE_OVER_CAPACITY_RECHECK: Duration = Duration::from_millis(100);

/// Keeps bounded enqueues cheap: the queued count (a scan of the queued jobs) is taken only when an
/// over-estimate (last count plus jobs added since) exceeds the bound, when the last count is older than
/// [`GAUGE_REFRESH`] (other replicas enqueue too), and at most every [`GAUGE_OVER_CAPACITY_RECHECK`] while
/// the queue stays over capacity with nothing to drop.
#[derive(Debug, Default)]
struct DepthGauge {
    state: std::sync::Mutex<GaugeState>,
}

#[derive(Debug, Default)]
struct GaugeState {
    estimate: u64,
    counted_at: Option<std::time::Instant>,
    over_capacity: bool,
}

/// What a bounded enqueue must do after storing its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BoundCheck {
    /// Count the queued jobs and drop superseded ones if over.
    Count,
    /// No count needed; the queue is (still) over capacity or not.
    Skip { over_capacity: bool },
}

impl DepthGauge {
    /// `added` jobs were just queued by an unbounded enqueue.
    fn add(&self, added: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.estimate = state.estimate.saturating_add(added);
        }
    }

    /// `added` jobs were just queued; decides whether the bound must be checked against `max_depth`.
    fn check(&self, added: u64, max_depth: u64) -> BoundCheck {
        let Ok(mut state) = self.state.lock() else {
            return BoundCheck::Count;
        };
        state.estimate = state.estimate.saturating_add(added);
        let since = state.counted_at.map(|t| t.elapsed());
        match since {
            Some(since) if state.estimate <= max_depth && since < GAUGE_REFRESH => {
                BoundCheck::Skip {
                    over_capacity: false,
                }
            }
            Some(since) if state.over_capacity && since < GAUGE_OVER_CAPACITY_RECHECK => {
                BoundCheck::Skip {
                    over_capacity: true,
                }
            }
            _ => BoundCheck::Count,
        }
    }

    /// The current over-estimate of queued jobs.
    fn estimate(&self) -> u64 {
        self.state.lock().map(|s| s.estimate).unwrap_or(u64::MAX)
    }

    /// Records a real count (after dropping) and whether it is over capacity.
    fn counted(&self, queued: u64, over_capacity: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.estimate = queued;
            state.counted_at = Some(std::time::Instant::now());
            state.over_capacity = over_capacity;
        }
    }
}

/// `payload.full == true`.
fn is_full(payload: &serde_json::Value) -> bool {
    payload
        .get("full")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

/// An audit of a pull request: the only jobs that coalesce and supersede each other.
fn is_coalescible(job: &NewJob) -> bool {
    job.pr_number.is_some()
        && match job.payload.get("kind") {
            None => true,
            Some(kind) => kind.as_str() == Some("audit"),
        }
}

/// A duration as microseconds for SQL, saturating.
fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `usize` cap as a SQL integer, saturating.
fn cap_i64(cap: usize) -> i64 {
    i64::try_from(cap).unwrap_or(i64::MAX)
}

fn attempts_u32(id: i64, attempts: i64) -> Result<u32, QueueError> {
    u32::try_from(attempts).map_err(|_| QueueError::Corrupt {
        id,
        field: "attempts",
        problem: format!("{attempts} is not a valid attempt count"),
    })
}

fn state_from_str(id: i64, s: &str) -> Result<JobState, QueueError> {
    JobState::parse(s).ok_or_else(|| QueueError::Corrupt {
        id,
        field: "state",
        problem: format!("unknown state {s:?}"),
    })
}

fn count_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The URL without its password, for messages and logs.
fn redact_url(url: &str) -> String {
    // One redaction for every URL the App logs or shows: userinfo passwords and secret query parameters.
    crate::config::redact_url(url)
}
