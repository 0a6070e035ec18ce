//! SQLite backend: one database file in WAL mode with `synchronous=FULL` (`?synchronous=normal` in an
//! `sqlite:` URL trades power-loss durability for latency; a process crash loses nothing either way).
//!
//! Every write of this process goes through a single connection (`writer`), so writers queue in the pool
//! instead of spinning on SQLite's busy handler; other processes on the same file wait up to
//! `busy_timeout`. Multi-statement writes use `BEGIN IMMEDIATE`, so they take the write lock up front.
//! Enqueues are group-committed: a task drains the pending enqueues into one transaction (one savepoint
//! each, so one bad job fails alone) and answers every caller after the commit, i.e. after the fsync.
//! Reads go through a separate pool of connections. Times are stored as microseconds since the epoch.
//!
//! Nothing that scans the queue runs inside an intake commit once the queue is deep: the bounded queue's
//! search for superseded audits then runs on a read connection and its finds are dropped by id in a later
//! commit (see `INLINE_BOUND_MAX_QUEUED`). WAL checkpoints stay SQLite's automatic ones (every 1000 pages,
//! inside the commit that crosses them): they cost about 1–3 ms and keep the WAL small; a background
//! checkpoint task was measured and was worse (BENCHMARKS.md, "Webhook intake under load").

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Decode, Row, Sqlite, SqliteConnection, Type};
use tokio::sync::{mpsc, oneshot};

use super::{
    BoundCheck, BoundedEnqueue, Claimed, DepthGauge, Enqueued, Job, JobState, JobStore, NewJob,
    Pruned, QueueDepth, QueueError, QueueOptions, attempts_u32, cap_i64, count_u64,
    exhausted_reason, is_coalescible, is_full, micros, redact_url, state_from_str,
};

const BACKEND: &str = "sqlite";
/// Most enqueues committed together.
const MAX_BATCH: usize = 256;
/// Enqueues waiting for the writer before callers wait to hand theirs over.
const INTAKE_CAPACITY: usize = 4096;
/// Installations considered per claim.
const CLAIM_CANDIDATES: i64 = 64;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

macro_rules! job_columns {
    () => {
        "id, delivery_id, event, installation_id, repo, pr_number, head_sha, payload, attempts, \
         lease_owner, lease_expires_at, created_at, state, run_after, last_error"
    };
}

const SELECT_JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = ?1");

const ENQUEUE: &str = "\
INSERT INTO jobs (delivery_id, event, installation_id, repo, pr_number, head_sha, payload, full_audit,
                  coalescible, state, attempts, coalesced, run_after, created_at, updated_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', 0, 0, ?10, ?10, ?10)
ON CONFLICT (repo, pr_number) WHERE state = 'queued' AND coalescible = 1 DO UPDATE SET
    delivery_id = excluded.delivery_id,
    event = excluded.event,
    head_sha = COALESCE(excluded.head_sha, jobs.head_sha),
    payload = CASE WHEN jobs.full_audit = 1 AND excluded.full_audit = 0
                   THEN jobs.payload ELSE excluded.payload END,
    full_audit = MAX(jobs.full_audit, excluded.full_audit),
    attempts = CASE WHEN COALESCE(excluded.head_sha, jobs.head_sha) IS jobs.head_sha
                    THEN jobs.attempts ELSE 0 END,
    run_after = MIN(jobs.run_after, excluded.run_after),
    coalesced = jobs.coalesced + 1,
    updated_at = excluded.updated_at
RETURNING id, coalesced";

/// A runnable audit (of table `jobs`) whose head a newer audit of the same pull request replaced; `?1` is now.
/// Checking it costs one index probe per queued job.
macro_rules! superseded {
    () => {
        "jobs.coalescible = 1 AND jobs.head_sha IS NOT NULL
  AND (jobs.state = 'queued' OR (jobs.state = 'running' AND jobs.lease_expires_at <= ?1))
  AND EXISTS (SELECT 1 FROM jobs n
              WHERE n.repo = jobs.repo AND n.pr_number = jobs.pr_number AND n.coalescible = 1
                AND n.id > jobs.id AND n.head_sha IS NOT NULL AND n.head_sha <> jobs.head_sha
                AND n.state IN ('queued', 'running', 'done'))"
    };
}

macro_rules! drop_superseded {
    () => {
        "UPDATE jobs SET state = 'dropped', lease_expires_at = NULL, finished_at = ?1, updated_at = ?1,
    last_error = 'dropped: the queue was over its maximum depth and a newer head of this pull request is queued or audited'
WHERE "
    };
}

/// Drops every superseded audit (a scan of the queued jobs).
const DROP_SUPERSEDED: &str = concat!(drop_superseded!(), superseded!());

/// Drops the listed jobs (`?2`, a JSON array of ids) that are still superseded.
const DROP_LISTED: &str = concat!(
    drop_superseded!(),
    "jobs.id IN (SELECT value FROM json_each(?2)) AND ",
    superseded!()
);

/// Finds superseded audits, on a read connection.
const FIND_SUPERSEDED: &str = concat!("SELECT jobs.id FROM jobs WHERE ", superseded!());

const COUNT_QUEUED: &str = "SELECT COUNT(*) FROM jobs WHERE state = 'queued'";

/// Up to this many queued jobs (by the depth gauge's over-estimate), a bounded enqueue that finds the queue
/// over its depth looks for superseded audits inside its own transaction (about 2 ms at 1,000 queued jobs).
/// Past it, the count and the search run on a read connection beside the writer (WAL readers do not block
/// it), and the jobs found are dropped by id, each re-checked, in a later group commit: the scan (about
/// 35 ms at 20,000 queued jobs on the benchmark machine) no longer holds the write lock that every webhook's
/// commit waits for.
pub(super) const INLINE_BOUND_MAX_QUEUED: u64 = 1_000;
/// After a background search that found nothing to drop, the next one waits at least this long (the queue
/// is over its depth with nothing superseded: searching again every recheck would only burn CPU).
const EMPTY_SEARCH_BACKOFF: Duration = Duration::from_secs(1);

const ANY_RUNNABLE: &str = "\
SELECT EXISTS (SELECT 1 FROM jobs
               WHERE (state = 'queued' AND run_after <= ?1)
                  OR (state = 'running' AND lease_expires_at <= ?1))";

/// Installations with runnable work and room under the cap, the one claimed longest ago first.
const CLAIM_INSTALLATIONS: &str = "\
SELECT i.installation_id
FROM installations i
WHERE (EXISTS (SELECT 1 FROM jobs j
               WHERE j.installation_id = i.installation_id
                 AND j.state = 'queued' AND j.run_after <= ?1)
    OR EXISTS (SELECT 1 FROM jobs j
               WHERE j.installation_id = i.installation_id
                 AND j.state = 'running' AND j.lease_expires_at <= ?1))
  AND (SELECT COUNT(*) FROM jobs r
       WHERE r.installation_id = i.installation_id
         AND r.state = 'running' AND r.lease_expires_at > ?1) < ?2
ORDER BY i.last_claim_seq IS NOT NULL, i.last_claim_seq, i.installation_id
LIMIT ?3";

/// An audit may start only if no audit of its pull request runs and no newer audit of it is runnable.
macro_rules! audit_may_start {
    () => {
        "(j.coalescible = 0 OR (
        NOT EXISTS (SELECT 1 FROM jobs r
                    WHERE r.repo = j.repo AND r.pr_number = j.pr_number AND r.coalescible = 1
                      AND r.state = 'running' AND r.id <> j.id AND r.lease_expires_at > ?2)
    AND NOT EXISTS (SELECT 1 FROM jobs n
                    WHERE n.repo = j.repo AND n.pr_number = j.pr_number AND n.coalescible = 1
                      AND n.id > j.id
                      AND ((n.state = 'queued' AND n.run_after <= ?2)
                        OR (n.state = 'running' AND n.lease_expires_at <= ?2)))))"
    };
}

/// The oldest runnable job of an installation: the first queued one or the first with an expired lease,
/// each found in id order on the (installation_id, state, id) index.
const CLAIM_PICK: &str = concat!(
    "SELECT MIN(id) FROM (
    SELECT id FROM (SELECT j.id FROM jobs j
                    WHERE j.installation_id = ?1 AND j.state = 'queued' AND j.run_after <= ?2 AND ",
    audit_may_start!(),
    "
                    ORDER BY j.id LIMIT 1)
    UNION ALL
    SELECT id FROM (SELECT j.id FROM jobs j
                    WHERE j.installation_id = ?1 AND j.state = 'running' AND j.lease_expires_at <= ?2 AND ",
    audit_may_start!(),
    "
                    ORDER BY j.id LIMIT 1))"
);

/// Leases the picked job, counting an attempt; a job already claimed `?5` times is marked dead instead
/// (every expression reads the row as it was before this update).
const CLAIM_UPDATE: &str = concat!(
    "UPDATE jobs SET state = CASE WHEN attempts >= ?5 THEN 'dead' ELSE 'running' END, lease_owner = ?2, ",
    "lease_expires_at = CASE WHEN attempts >= ?5 THEN NULL ELSE ?3 END, ",
    "finished_at = CASE WHEN attempts >= ?5 THEN ?4 ELSE finished_at END, ",
    "attempts = CASE WHEN attempts >= ?5 THEN attempts ELSE attempts + 1 END, updated_at = ?4 ",
    "WHERE id = ?1 RETURNING ",
    job_columns!()
);

const IS_SUPERSEDED: &str = "\
SELECT EXISTS (SELECT 1 FROM jobs n
               WHERE n.repo = ?1 AND n.pr_number = ?2 AND n.coalescible = 1 AND n.id > ?3
                 AND n.head_sha IS NOT NULL AND n.head_sha <> ?4
                 AND n.state IN ('queued', 'running', 'done'))";

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
    move |source| QueueError::Database {
        backend: BACKEND,
        op,
        source: Arc::new(source),
    }
}

fn now_micros() -> i64 {
    Utc::now().timestamp_micros()
}

fn time_from_micros(id: i64, field: &'static str, v: i64) -> Result<DateTime<Utc>, QueueError> {
    DateTime::from_timestamp_micros(v).ok_or_else(|| QueueError::Corrupt {
        id,
        field,
        problem: format!("{v} is not a valid time"),
    })
}

fn col<'r, T>(row: &'r SqliteRow, id: i64, field: &'static str) -> Result<T, QueueError>
where
    T: Decode<'r, Sqlite> + Type<Sqlite>,
{
    row.try_get(field).map_err(|e| QueueError::Corrupt {
        id,
        field,
        problem: e.to_string(),
    })
}

fn job_from_row(row: &SqliteRow) -> Result<Job, QueueError> {
    let id: i64 = col(row, 0, "id")?;
    let payload: String = col(row, id, "payload")?;
    let payload = serde_json::from_str(&payload).map_err(|e| QueueError::Corrupt {
        id,
        field: "payload",
        problem: e.to_string(),
    })?;
    let attempts: i64 = col(row, id, "attempts")?;
    let lease_expires_at: Option<i64> = col(row, id, "lease_expires_at")?;
    let state: String = col(row, id, "state")?;
    Ok(Job {
        id,
        delivery_id: col(row, id, "delivery_id")?,
        event: col(row, id, "event")?,
        installation_id: col(row, id, "installation_id")?,
        repo: col(row, id, "repo")?,
        pr_number: col(row, id, "pr_number")?,
        head_sha: col(row, id, "head_sha")?,
        payload,
        attempts: attempts_u32(id, attempts)?,
        lease_owner: col(row, id, "lease_owner")?,
        lease_expires_at: lease_expires_at
            .map(|t| time_from_micros(id, "lease_expires_at", t))
            .transpose()?,
        created_at: time_from_micros(id, "created_at", col(row, id, "created_at")?)?,
        state: state_from_str(id, &state)?,
        run_after: time_from_micros(id, "run_after", col(row, id, "run_after")?)?,
        last_error: col(row, id, "last_error")?,
    })
}

/// Takes our own `synchronous=full|normal` parameter out of an `sqlite:` URL (sqlx rejects unknown ones).
/// `full` (the default) fsyncs every commit; `normal` survives a crash of the process but may lose the
/// last commits on power loss or an OS crash, for much lower enqueue latency on slow disks.
fn split_synchronous(url: &str) -> Result<(String, SqliteSynchronous), sqlx::Error> {
    let Some((base, query)) = url.split_once('?').filter(|_| url.starts_with("sqlite:")) else {
        return Ok((url.to_string(), SqliteSynchronous::Full));
    };
    let mut synchronous = SqliteSynchronous::Full;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous", value)) => {
                synchronous = match value.to_ascii_lowercase().as_str() {
                    "full" => SqliteSynchronous::Full,
                    "normal" => SqliteSynchronous::Normal,
                    other => {
                        return Err(sqlx::Error::Configuration(
                            format!("synchronous={other} is not supported: use full or normal")
                                .into(),
                        ));
                    }
                };
            }
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, synchronous))
}

/// Creates the database file, readable and writable by its owner only (0600), if it does not exist yet.
/// SQLite would create it 0644 (less the umask); it creates the `-wal` and `-shm` files with the database
/// file's mode, so they are 0600 too. Created empty before SQLite opens it, there is no moment when the
/// file is readable by others. An existing file keeps its mode.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// One enqueue handed to the group-commit task.
struct Intake {
    job: NewJob,
    max_depth: u64,
    reply: oneshot::Sender<Result<BoundedEnqueue, QueueError>>,
}

/// The SQLite job store.
#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    intake: mpsc::Sender<Intake>,
    bound_stats: Arc<BoundStats>,
    /// The last write probe of [`JobStore::writable`]: when, and its error if it failed.
    write_probe: tokio::sync::Mutex<Option<(Instant, Option<Arc<sqlx::Error>>)>>,
}

/// How long a write probe's answer is reused (readiness probes may come often).
const WRITE_PROBE_TTL: Duration = Duration::from_secs(1);
/// The delivery id the write probe inserts and deletes in one transaction; it is padded past a page
/// (`WRITE_PROBE_PAD` bytes), so that the probe needs pages a full database does not have.
const WRITE_PROBE_ID: &str = "prodaudit:write-probe:";
const WRITE_PROBE_PAD: usize = 6000;

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url`: `sqlite:PATH`, `sqlite://PATH?…`,
    /// `sqlite::memory:` or a plain file path.
    pub async fn open(url: &str, options: &QueueOptions) -> Result<Self, QueueError> {
        let connect = |source| QueueError::Connect {
            backend: BACKEND,
            target: redact_url(url),
            source,
        };
        let (url, synchronous) = split_synchronous(url).map_err(connect)?;
        let url = url.as_str();
        let base = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url).map_err(connect)?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let base = base
            .create_if_missing(true)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(true);
        if !in_memory && !url.contains("mode=ro") {
            create_private(base.get_filename()).map_err(|e| connect(sqlx::Error::Io(e)))?;
        }
        let base = if in_memory {
            base
        } else {
            base.journal_mode(SqliteJournalMode::Wal)
                .synchronous(synchronous)
        };
        // One long-lived writer connection (an in-memory database lives as long as it does).
        let mut writer_options = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout);
        if !in_memory {
            // A failed COMMIT (a full disk, an I/O error) can leave the connection inside a transaction,
            // as SQLite or sqlx sees it, and every later BEGIN then fails: intake and claims would stay
            // wedged after the disk has room again. Each time the writer comes back to the pool, check
            // that a transaction can start; if not, close it (the pool opens a fresh one for the next
            // write). An in-memory database would not survive a reopen, so it is left alone.
            writer_options = writer_options.after_release(|conn, _meta| {
                Box::pin(async move {
                    match sqlx::Connection::begin_with(&mut *conn, "BEGIN DEFERRED").await {
                        Ok(tx) => {
                            tx.rollback().await?;
                            Ok(true)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the SQLite writer was left inside a failed transaction; reopening it");
                            Ok(false)
                        }
                    }
                })
            });
        }
        let writer = writer_options
            .connect_with(base.clone())
            .await
            .map_err(connect)?;
        let mut conn = writer.acquire().await.map_err(connect)?;
        // `run_direct` on a connection, because `Migrator::run`'s `Acquire` bound makes this future
        // not `Send` for every lifetime.
        MIGRATOR
            .run_direct(None, &mut *conn, false)
            .await
            .map_err(|source| QueueError::Migrate {
                backend: BACKEND,
                source,
            })?;
        drop(conn);
        let reader = if in_memory {
            writer.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base)
                .await
                .map_err(connect)?
        };
        let (intake, rx) = mpsc::channel(INTAKE_CAPACITY);
        let bound_stats = Arc::new(BoundStats::default());
        tokio::spawn(intake_loop(
            writer.clone(),
            reader.clone(),
            Arc::clone(&bound_stats),
            rx,
        ));
        Ok(SqliteStore {
            writer,
            reader,
            intake,
            bound_stats,
            write_probe: tokio::sync::Mutex::new(None),
        })
    }

    /// Caps the database at `pages` pages on the writer connection (`PRAGMA max_page_count`): a full disk
    /// as SQLite sees it, for tests. The cap lasts as long as the connection.
    #[cfg(test)]
    pub(super) async fn set_max_page_count(&self, pages: i64) -> Result<i64, QueueError> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .fetch_one(&self.writer)
        .await
        .map_err(db("max_page_count"))
    }

    #[cfg(test)]
    pub(super) async fn page_count(&self) -> Result<i64, QueueError> {
        sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&self.writer)
            .await
            .map_err(db("page_count"))
    }

    /// What the bounded queue's background searches have done so far.
    pub fn bound_stats(&self) -> &BoundStats {
        &self.bound_stats
    }

    async fn begin_immediate(
        &self,
        op: &'static str,
    ) -> Result<sqlx::Transaction<'static, Sqlite>, QueueError> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db(op))
    }
}

/// What a background search for superseded audits found.
#[derive(Debug)]
struct SupersededFound {
    /// Queued jobs when it looked.
    queued: u64,
    ids: Vec<i64>,
}

/// State kept by the group-commit task between batches.
#[derive(Debug)]
struct IntakeState {
    gauge: DepthGauge,
    /// Installations known to have their row (rows are never deleted).
    installations: HashSet<i64>,
    /// Where background searches for superseded audits run.
    reader: SqlitePool,
    /// The background search in flight, if any.
    search: Option<oneshot::Receiver<Result<SupersededFound, sqlx::Error>>>,
    /// When the last background search found nothing to drop.
    empty_search_at: Option<Instant>,
    stats: Arc<BoundStats>,
}

/// Counts of the bounded queue's background searches (for tests and debugging).
#[derive(Debug, Default)]
pub struct BoundStats {
    /// Background searches started.
    pub searches: AtomicU64,
    /// Jobs they found that were dropped.
    pub dropped: AtomicU64,
}

impl IntakeState {
    /// Starts a background search unless one runs or the last one found nothing just now.
    fn start_search(&mut self) {
        if self.search.is_some()
            || self
                .empty_search_at
                .is_some_and(|at| at.elapsed() < EMPTY_SEARCH_BACKOFF)
        {
            return;
        }
        self.stats.searches.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let reader = self.reader.clone();
        tokio::spawn(async move {
            let found = async {
                let mut conn = reader.acquire().await?;
                let queued: i64 = sqlx::query_scalar(COUNT_QUEUED)
                    .fetch_one(&mut *conn)
                    .await?;
                let ids: Vec<i64> = sqlx::query_scalar(FIND_SUPERSEDED)
                    .bind(now_micros())
                    .fetch_all(&mut *conn)
                    .await?;
                Ok(SupersededFound {
                    queued: count_u64(queued),
                    ids,
                })
            }
            .await;
            let _ = tx.send(found);
        });
        self.search = Some(rx);
    }

    /// The background search's result, if it has finished.
    fn finished_search(&mut self) -> Option<SupersededFound> {
        let rx = self.search.as_mut()?;
        match rx.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => {
                self.search = None;
                None
            }
            Ok(result) => {
                self.search = None;
                match result {
                    Ok(found) => {
                        if found.ids.is_empty() {
                            self.empty_search_at = Some(Instant::now());
                        }
                        Some(found)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot look for superseded audits; trying again later");
                        None
                    }
                }
            }
        }
    }
}

async fn intake_loop(
    pool: SqlitePool,
    reader: SqlitePool,
    stats: Arc<BoundStats>,
    mut rx: mpsc::Receiver<Intake>,
) {
    let mut buffer = Vec::with_capacity(MAX_BATCH);
    let mut state = IntakeState {
        gauge: DepthGauge::default(),
        installations: HashSet::new(),
        reader,
        search: None,
        empty_search_at: None,
        stats,
    };
    while rx.recv_many(&mut buffer, MAX_BATCH).await > 0 {
        write_batch(&pool, &mut buffer, &mut state).await;
    }
}

/// Stores and answers the enqueues in `batch`, leaving it empty (its capacity is reused).
async fn write_batch(pool: &SqlitePool, batch: &mut Vec<Intake>, state: &mut IntakeState) {
    let mut requests = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for intake in batch.drain(..) {
        requests.push((intake.job, intake.max_depth));
        replies.push(intake.reply);
    }
    let results = match store_batch(pool, &requests, state).await {
        Ok(Some(results)) => results,
        Ok(None) => store_one_by_one(pool, &requests).await,
        Err(source) => {
            tracing::error!(error = %source, jobs = replies.len(), "cannot store a batch of queue jobs");
            let source = Arc::new(source);
            replies
                .iter()
                .map(|_| {
                    Err(QueueError::Database {
                        backend: BACKEND,
                        op: "enqueue (commit)",
                        source: Arc::clone(&source),
                    })
                })
                .collect()
        }
    };
    for (reply, result) in replies.into_iter().zip(results) {
        // The caller may have gone away (its request was cancelled); the job is stored regardless.
        let _ = reply.send(result);
    }
}

/// Stores a whole batch in one transaction (one fsync). `Ok(None)`: one job failed and nothing was stored;
/// the caller then stores them one by one so that the others still succeed.
async fn store_batch(
    pool: &SqlitePool,
    requests: &[(NewJob, u64)],
    state: &mut IntakeState,
) -> Result<Option<Vec<Result<BoundedEnqueue, QueueError>>>, sqlx::Error> {
    let started = Instant::now();
    let now = now_micros();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let mut stored = Vec::with_capacity(requests.len());
    let mut new_installations = Vec::new();
    for (job, _) in requests {
        let known = state.installations.contains(&job.installation_id)
            || new_installations.contains(&job.installation_id);
        match enqueue_one(&mut tx, job, now, !known).await {
            Ok(enqueued) => {
                if !known {
                    new_installations.push(job.installation_id);
                }
                stored.push(enqueued);
            }
            Err(e) => {
                tracing::warn!(error = %e, delivery = %job.delivery_id, "enqueue failed; storing this batch one job at a time");
                tx.rollback().await?;
                return Ok(None);
            }
        }
    }
    let added = stored
        .iter()
        .filter(|e| matches!(e, Enqueued::New(_)))
        .count();
    let added = u64::try_from(added).unwrap_or(u64::MAX);
    let bound = requests
        .iter()
        .map(|(_, max_depth)| *max_depth)
        .filter(|max_depth| *max_depth != u64::MAX)
        .min();
    let mut counted = None;
    let (mut dropped, over_capacity) = match bound {
        None => {
            state.gauge.add(added);
            (0, false)
        }
        Some(max_depth) => match state.finished_search() {
            // A background search finished: drop what it found (each re-checked) in this commit.
            Some(found) => {
                let dropped = if found.ids.is_empty() {
                    0
                } else {
                    let ids = serde_json::to_string(&found.ids).unwrap_or_else(|_| "[]".into());
                    sqlx::query(DROP_LISTED)
                        .bind(now)
                        .bind(ids)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                };
                state.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
                let queued = found.queued.saturating_sub(dropped).saturating_add(added);
                counted = Some((queued, queued > max_depth));
                (dropped, queued > max_depth)
            }
            None => match state.gauge.check(added, max_depth) {
                BoundCheck::Skip { over_capacity } => (0, over_capacity),
                BoundCheck::Count if state.gauge.estimate() > INLINE_BOUND_MAX_QUEUED => {
                    // Too many queued jobs to scan while holding the write lock.
                    state.start_search();
                    let estimate = state.gauge.estimate();
                    counted = Some((estimate, estimate > max_depth));
                    (0, estimate > max_depth)
                }
                BoundCheck::Count => {
                    let (dropped, queued) = enforce_bound(&mut tx, max_depth, now).await?;
                    counted = Some((queued, queued > max_depth));
                    (dropped, queued > max_depth)
                }
            },
        },
    };
    let committing = Instant::now();
    tx.commit().await?;
    tracing::debug!(
        jobs = requests.len(),
        write_ms = (committing - started).as_secs_f64() * 1000.0,
        commit_ms = committing.elapsed().as_secs_f64() * 1000.0,
        "group commit"
    );
    state.installations.extend(new_installations);
    if let Some((queued, over)) = counted {
        state.gauge.counted(queued, over);
    }
    Ok(Some(
        stored
            .into_iter()
            .zip(requests)
            .map(|(enqueued, (_, max_depth))| {
                let bounded = *max_depth != u64::MAX;
                Ok(BoundedEnqueue {
                    enqueued,
                    dropped: if bounded {
                        std::mem::take(&mut dropped)
                    } else {
                        0
                    },
                    over_capacity: bounded && over_capacity,
                })
            })
            .collect(),
    ))
}

/// The slow path after a failed batch: each job in its own transaction.
async fn store_one_by_one(
    pool: &SqlitePool,
    requests: &[(NewJob, u64)],
) -> Vec<Result<BoundedEnqueue, QueueError>> {
    let mut results = Vec::with_capacity(requests.len());
    for (job, max_depth) in requests {
        let result = async {
            let now = now_micros();
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            let enqueued = enqueue_one(&mut tx, job, now, true).await?;
            let (dropped, queued) = if *max_depth == u64::MAX {
                (0, 0)
            } else {
                enforce_bound(&mut tx, *max_depth, now).await?
            };
            tx.commit().await?;
            Ok::<_, sqlx::Error>(BoundedEnqueue {
                enqueued,
                dropped,
                over_capacity: queued > *max_depth,
            })
        }
        .await;
        results.push(result.map_err(db("enqueue")));
    }
    results
}

async fn enqueue_one(
    conn: &mut SqliteConnection,
    job: &NewJob,
    now: i64,
    ensure_installation: bool,
) -> Result<Enqueued, sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO deliveries (delivery_id, received_at) VALUES (?1, ?2) \
         ON CONFLICT (delivery_id) DO NOTHING",
    )
    .bind(&job.delivery_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if fresh.rows_affected() == 0 {
        return Ok(Enqueued::Duplicate);
    }
    if ensure_installation {
        sqlx::query(
            "INSERT INTO installations (installation_id) VALUES (?1) \
             ON CONFLICT (installation_id) DO NOTHING",
        )
        .bind(job.installation_id)
        .execute(&mut *conn)
        .await?;
    }
    let row = sqlx::query(ENQUEUE)
        .bind(&job.delivery_id)
        .bind(&job.event)
        .bind(job.installation_id)
        .bind(&job.repo)
        .bind(job.pr_number)
        .bind(&job.head_sha)
        .bind(job.payload.to_string())
        .bind(is_full(&job.payload))
        .bind(is_coalescible(job))
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
    let id: i64 = row.try_get("id")?;
    let coalesced: i64 = row.try_get("coalesced")?;
    Ok(if coalesced == 0 {
        Enqueued::New(id)
    } else {
        Enqueued::Coalesced(id)
    })
}

/// Drops superseded audits if more than `max_depth` jobs are queued: (dropped, queued after).
async fn enforce_bound(
    conn: &mut SqliteConnection,
    max_depth: u64,
    now: i64,
) -> Result<(u64, u64), sqlx::Error> {
    let queued: i64 = sqlx::query_scalar(COUNT_QUEUED)
        .fetch_one(&mut *conn)
        .await?;
    if count_u64(queued) <= max_depth {
        return Ok((0, count_u64(queued)));
    }
    let dropped = sqlx::query(DROP_SUPERSEDED)
        .bind(now)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let queued: i64 = sqlx::query_scalar(COUNT_QUEUED)
        .fetch_one(&mut *conn)
        .await?;
    Ok((dropped, count_u64(queued)))
}

/// Puts a running job back in the queue, or merges it into the queued audit of its pull request.
async fn release(
    conn: &mut SqliteConnection,
    id: i64,
    run_after: i64,
    error: Option<&str>,
    uncount_attempt: bool,
    now: i64,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "SELECT repo, pr_number, coalescible, full_audit, payload, head_sha FROM jobs WHERE id = ?1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let coalescible: bool = row.try_get("coalescible")?;
    if coalescible {
        let repo: String = row.try_get("repo")?;
        let pr_number: Option<i64> = row.try_get("pr_number")?;
        let sibling: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE repo = ?1 AND pr_number = ?2 AND coalescible = 1 \
             AND state = 'queued'",
        )
        .bind(&repo)
        .bind(pr_number)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(sibling) = sibling {
            let full: bool = row.try_get("full_audit")?;
            let payload: String = row.try_get("payload")?;
            let head_sha: Option<String> = row.try_get("head_sha")?;
            sqlx::query(
                "UPDATE jobs SET payload = CASE WHEN full_audit = 0 AND ?2 = 1 THEN ?3 ELSE payload END, \
                 full_audit = MAX(full_audit, ?2), head_sha = COALESCE(head_sha, ?4), updated_at = ?5 \
                 WHERE id = ?1",
            )
            .bind(sibling)
            .bind(full)
            .bind(payload)
            .bind(head_sha)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            let note = match error {
                Some(error) => {
                    format!("{error}; merged into queued job {sibling} of the same pull request")
                }
                None => format!("merged into queued job {sibling} of the same pull request"),
            };
            sqlx::query(
                "UPDATE jobs SET state = 'done', lease_expires_at = NULL, finished_at = ?2, updated_at = ?2, \
                 last_error = ?3, attempts = CASE WHEN ?4 = 1 THEN MAX(attempts - 1, 0) ELSE attempts END \
                 WHERE id = ?1",
            )
            .bind(id)
            .bind(now)
            .bind(note)
            .bind(uncount_attempt)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
    }
    sqlx::query(
        "UPDATE jobs SET state = 'queued', run_after = ?2, lease_owner = NULL, lease_expires_at = NULL, \
         updated_at = ?3, last_error = COALESCE(?4, last_error), \
         attempts = CASE WHEN ?5 = 1 THEN MAX(attempts - 1, 0) ELSE attempts END \
         WHERE id = ?1",
    )
    .bind(id)
    .bind(run_after)
    .bind(now)
    .bind(error)
    .bind(uncount_attempt)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl JobStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn enqueue_bounded(
        &self,
        job: NewJob,
        max_depth: u64,
    ) -> Result<BoundedEnqueue, QueueError> {
        let (reply, answer) = oneshot::channel();
        self.intake
            .send(Intake {
                job,
                max_depth,
                reply,
            })
            .await
            .map_err(|_| QueueError::WriterStopped)?;
        answer.await.map_err(|_| QueueError::WriterStopped)?
    }

    async fn claim_within(
        &self,
        worker_id: &str,
        lease: Duration,
        per_installation_cap: usize,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, QueueError> {
        // Idle polling stays off the write lock.
        let any: bool = sqlx::query_scalar(ANY_RUNNABLE)
            .bind(now_micros())
            .fetch_one(&self.reader)
            .await
            .map_err(db("claim (probe)"))?;
        if !any {
            return Ok(None);
        }
        let mut tx = self.begin_immediate("claim").await?;
        let now = now_micros();
        let installations: Vec<i64> = sqlx::query_scalar(CLAIM_INSTALLATIONS)
            .bind(now)
            .bind(cap_i64(per_installation_cap))
            .bind(CLAIM_CANDIDATES)
            .fetch_all(&mut *tx)
            .await
            .map_err(db("claim (installations)"))?;
        let mut claimed = None;
        for installation in installations {
            let pick: Option<i64> = sqlx::query_scalar(CLAIM_PICK)
                .bind(installation)
                .bind(now)
                .fetch_one(&mut *tx)
                .await
                .map_err(db("claim (pick)"))?;
            let Some(id) = pick else { continue };
            let row = sqlx::query(CLAIM_UPDATE)
                .bind(id)
                .bind(worker_id)
                .bind(now.saturating_add(micros(lease)))
                .bind(now)
                .bind(i64::from(max_attempts))
                .fetch_one(&mut *tx)
                .await
                .map_err(db("claim (update)"))?;
            let mut job = job_from_row(&row)?;
            if job.state == JobState::Dead {
                let reason = exhausted_reason(job.attempts, job.last_error.as_deref());
                sqlx::query("UPDATE jobs SET last_error = ?2 WHERE id = ?1")
                    .bind(id)
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("claim (give up)"))?;
                job.last_error = Some(reason);
                claimed = Some(Claimed::Exhausted(job));
                break;
            }
            sqlx::query(
                "UPDATE installations SET last_claim_seq = \
                 (SELECT COALESCE(MAX(last_claim_seq), 0) + 1 FROM installations) \
                 WHERE installation_id = ?1",
            )
            .bind(installation)
            .execute(&mut *tx)
            .await
            .map_err(db("claim (round robin)"))?;
            claimed = Some(Claimed::Run(job));
            break;
        }
        tx.commit().await.map_err(db("claim (commit)"))?;
        Ok(claimed)
    }

    async fn extend_lease(
        &self,
        id: i64,
        worker_id: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        let now = now_micros();
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = ?3, updated_at = ?4 \
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(id)
        .bind(worker_id)
        .bind(now.saturating_add(micros(lease)))
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(db("extend lease"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete(&self, id: i64, worker_id: &str) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_expires_at = NULL, finished_at = ?3, updated_at = ?3 \
             WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(id)
        .bind(worker_id)
        .bind(now_micros())
        .execute(&self.writer)
        .await
        .map_err(db("complete"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn retry(
        &self,
        id: i64,
        worker_id: &str,
        error: &str,
        run_after: DateTime<Utc>,
    ) -> Result<bool, QueueError> {
        let mut tx = self.begin_immediate("retry").await?;
        let owned: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(id)
        .bind(worker_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("retry"))?;
        if owned.is_none() {
            return Ok(false);
        }
        release(
            &mut tx,
            id,
            run_after.timestamp_micros(),
            Some(error),
            false,
            now_micros(),
        )
        .await
        .map_err(db("retry"))?;
        tx.commit().await.map_err(db("retry (commit)"))?;
        Ok(true)
    }

    async fn give_up(&self, id: i64, worker_id: &str, error: &str) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'dead', lease_expires_at = NULL, finished_at = ?3, updated_at = ?3, \
             last_error = ?4 WHERE id = ?1 AND state = 'running' AND lease_owner = ?2",
        )
        .bind(id)
        .bind(worker_id)
        .bind(now_micros())
        .bind(error)
        .execute(&self.writer)
        .await
        .map_err(db("give up"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue_running(&self, worker_id: &str) -> Result<u64, QueueError> {
        let mut tx = self.begin_immediate("requeue running jobs").await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND lease_owner = ?1 ORDER BY id",
        )
        .bind(worker_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("requeue running jobs"))?;
        let now = now_micros();
        for &id in &ids {
            release(&mut tx, id, now, None, true, now)
                .await
                .map_err(db("requeue running jobs"))?;
        }
        tx.commit()
            .await
            .map_err(db("requeue running jobs (commit)"))?;
        Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
    }

    async fn is_superseded(&self, job: &Job) -> Result<bool, QueueError> {
        let (Some(pr_number), Some(head_sha)) = (job.pr_number, job.head_sha.as_deref()) else {
            return Ok(false);
        };
        sqlx::query_scalar(IS_SUPERSEDED)
            .bind(&job.repo)
            .bind(pr_number)
            .bind(job.id)
            .bind(head_sha)
            .fetch_one(&self.reader)
            .await
            .map_err(db("check for a newer head"))
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, QueueError> {
        let row = sqlx::query(SELECT_JOB)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db("read job"))?;
        row.map(|row| job_from_row(&row)).transpose()
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued', 'running', 'dead') \
             GROUP BY state",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db("queue depth"))?;
        let mut depth = QueueDepth::default();
        for (state, n) in rows {
            match state.as_str() {
                "queued" => depth.queued = count_u64(n),
                "running" => depth.running = count_u64(n),
                "dead" => depth.dead = count_u64(n),
                _ => {}
            }
        }
        Ok(depth)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(db("ping"))?;
        Ok(())
    }

    /// A real write through the writer (insert and delete a row, committed: pages reach the WAL and its
    /// fsync), at most once per [`WRITE_PROBE_TTL`]. Fails on a full disk, a read-only file or a writer that
    /// cannot start a transaction.
    async fn writable(&self) -> Result<(), QueueError> {
        let mut last = self.write_probe.lock().await;
        let error = match &*last {
            Some((at, error)) if at.elapsed() < WRITE_PROBE_TTL => error.clone(),
            _ => {
                let probe_id = format!("{WRITE_PROBE_ID}{}", "-".repeat(WRITE_PROBE_PAD));
                let probe = async {
                    let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
                    sqlx::query(
                        "INSERT INTO deliveries (delivery_id, received_at) VALUES (?1, ?2) \
                         ON CONFLICT (delivery_id) DO UPDATE SET received_at = excluded.received_at",
                    )
                    .bind(&probe_id)
                    .bind(now_micros())
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM deliveries WHERE delivery_id = ?1")
                        .bind(&probe_id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                }
                .await;
                let error = probe.err().map(Arc::new);
                *last = Some((Instant::now(), error.clone()));
                error
            }
        };
        match error {
            None => Ok(()),
            Some(source) => Err(QueueError::Database {
                backend: BACKEND,
                op: "write probe",
                source,
            }),
        }
    }

    async fn prune(&self, older_than: Duration) -> Result<Pruned, QueueError> {
        let cutoff = now_micros().saturating_sub(micros(older_than));
        let mut tx = self.begin_immediate("prune").await?;
        let jobs = sqlx::query(
            "DELETE FROM jobs WHERE state IN ('done', 'dropped') AND finished_at <= ?1",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(db("prune jobs"))?
        .rows_affected();
        let deliveries = sqlx::query("DELETE FROM deliveries WHERE received_at <= ?1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(db("prune deliveries"))?
            .rows_affected();
        let check_runs = sqlx::query("DELETE FROM check_runs WHERE updated_at <= ?1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(db("prune check runs"))?
            .rows_affected();
        tx.commit().await.map_err(db("prune (commit)"))?;
        Ok(Pruned {
            jobs,
            deliveries,
            check_runs,
        })
    }

    async fn record_comments(
        &self,
        repo: &str,
        pr_number: i64,
        comments: &[(String, i64)],
    ) -> Result<(), QueueError> {
        if comments.is_empty() {
            return Ok(());
        }
        let now = now_micros();
        let mut tx = self.begin_immediate("record comments").await?;
        for (fingerprint, comment_id) in comments {
            sqlx::query(
                "INSERT INTO posted_comments (repo, pr_number, fingerprint, comment_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (repo, pr_number, fingerprint) \
                 DO UPDATE SET comment_id = excluded.comment_id, created_at = excluded.created_at",
            )
            .bind(repo)
            .bind(pr_number)
            .bind(fingerprint)
            .bind(comment_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("record comments"))?;
        }
        tx.commit().await.map_err(db("record comments (commit)"))
    }

    async fn posted_comments(
        &self,
        repo: &str,
        pr_number: i64,
    ) -> Result<Vec<(String, i64)>, QueueError> {
        sqlx::query_as(
            "SELECT fingerprint, comment_id FROM posted_comments \
             WHERE repo = ?1 AND pr_number = ?2 ORDER BY fingerprint",
        )
        .bind(repo)
        .bind(pr_number)
        .fetch_all(&self.reader)
        .await
        .map_err(db("read posted comments"))
    }

    async fn forget_comment(
        &self,
        repo: &str,
        pr_number: i64,
        fingerprint: &str,
    ) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "DELETE FROM posted_comments WHERE repo = ?1 AND pr_number = ?2 AND fingerprint = ?3",
        )
        .bind(repo)
        .bind(pr_number)
        .bind(fingerprint)
        .execute(&self.writer)
        .await
        .map_err(db("forget comment"))?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_check_run(
        &self,
        repo: &str,
        head_sha: &str,
        check_run_id: i64,
    ) -> Result<(), QueueError> {
        sqlx::query(
            "INSERT INTO check_runs (repo, head_sha, check_run_id, updated_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (repo, head_sha) DO UPDATE SET check_run_id = excluded.check_run_id, \
             updated_at = excluded.updated_at",
        )
        .bind(repo)
        .bind(head_sha)
        .bind(check_run_id)
        .bind(now_micros())
        .execute(&self.writer)
        .await
        .map_err(db("record check run"))?;
        Ok(())
    }

    async fn check_run(&self, repo: &str, head_sha: &str) -> Result<Option<i64>, QueueError> {
        sqlx::query_scalar("SELECT check_run_id FROM check_runs WHERE repo = ?1 AND head_sha = ?2")
            .bind(repo)
            .bind(head_sha)
            .fetch_optional(&self.reader)
            .await
            .map_err(db("read check run"))
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}
