//! PostgreSQL backend, for several replicas sharing one database.
//!
//! Times come from the database clock (`now()`), so replicas with skewed clocks agree on leases. A claim
//! locks the chosen installation's row (`FOR UPDATE SKIP LOCKED`, then a short blocking wait when every
//! candidate is busy) and then a job row (`FOR UPDATE SKIP LOCKED`): claims for one installation are
//! serialized, which keeps its concurrency cap exact across replicas, while claims for different
//! installations run in parallel. Schema migrations run under a session advisory lock.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Decode, Postgres, Row, Type};

use super::sqlite::INLINE_BOUND_MAX_QUEUED;
use super::{
    BoundCheck, BoundedEnqueue, Claimed, DepthGauge, Enqueued, Job, JobState, JobStore, NewJob,
    Pruned, QueueDepth, QueueError, QueueOptions, attempts_u32, cap_i64, count_u64,
    exhausted_reason, is_coalescible, is_full, micros, redact_url, state_from_str,
};

const BACKEND: &str = "postgres";
/// `pg_advisory_lock` key held while migrating ("prodaudi").
const MIGRATION_LOCK_KEY: i64 = 0x7072_6f64_6175_6469;
/// Installations tried per claim before answering "nothing to do".
const CLAIM_ROUNDS: usize = 16;
/// Attempts of a transition that lost a race with a concurrent enqueue (unique violation).
const RACE_RETRIES: usize = 3;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

macro_rules! job_columns {
    () => {
        "id, delivery_id, event, installation_id, repo, pr_number, head_sha, payload, attempts, \
         lease_owner, lease_expires_at, created_at, state, run_after, last_error"
    };
}

const SELECT_JOB: &str = concat!("SELECT ", job_columns!(), " FROM jobs WHERE id = $1");

/// Stores a job in one statement: the delivery id's dedup, the installation's row (`$10`: insert it), and
/// the job, merged into the queued audit of its pull request if there is one. No row back when the delivery
/// id was already stored.
const ENQUEUE_ONE_STATEMENT: &str = "\
WITH fresh AS (
    INSERT INTO deliveries (delivery_id, received_at) VALUES ($1, now())
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING delivery_id
), installation AS (
    INSERT INTO installations (installation_id)
    SELECT $3 WHERE $10 AND EXISTS (SELECT 1 FROM fresh)
    ON CONFLICT (installation_id) DO NOTHING
)
INSERT INTO jobs (delivery_id, event, installation_id, repo, pr_number, head_sha, payload, full_audit,
                  coalescible, state, attempts, coalesced, run_after, created_at, updated_at)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, 0, now(), now(), now() FROM fresh
ON CONFLICT (repo, pr_number) WHERE state = 'queued' AND coalescible DO UPDATE SET
    delivery_id = EXCLUDED.delivery_id,
    event = EXCLUDED.event,
    head_sha = COALESCE(EXCLUDED.head_sha, jobs.head_sha),
    payload = CASE WHEN jobs.full_audit AND NOT EXCLUDED.full_audit
                   THEN jobs.payload ELSE EXCLUDED.payload END,
    full_audit = jobs.full_audit OR EXCLUDED.full_audit,
    attempts = CASE WHEN COALESCE(EXCLUDED.head_sha, jobs.head_sha) IS NOT DISTINCT FROM jobs.head_sha
                    THEN jobs.attempts ELSE 0 END,
    run_after = LEAST(jobs.run_after, EXCLUDED.run_after),
    coalesced = jobs.coalesced + 1,
    updated_at = EXCLUDED.updated_at
RETURNING id, coalesced";

const DROP_SUPERSEDED: &str = "\
UPDATE jobs SET state = 'dropped', lease_expires_at = NULL, finished_at = now(), updated_at = now(),
    last_error = 'dropped: the queue was over its maximum depth and a newer head of this pull request is queued or audited'
WHERE coalescible AND head_sha IS NOT NULL
  AND (state = 'queued' OR (state = 'running' AND lease_expires_at <= now()))
  AND EXISTS (SELECT 1 FROM jobs n
              WHERE n.repo = jobs.repo AND n.pr_number = jobs.pr_number AND n.coalescible
                AND n.id > jobs.id AND n.head_sha IS NOT NULL AND n.head_sha <> jobs.head_sha
                AND n.state IN ('queued', 'running', 'done'))";

const ANY_RUNNABLE: &str = "\
SELECT EXISTS (SELECT 1 FROM jobs
               WHERE (state = 'queued' AND run_after <= now())
                  OR (state = 'running' AND lease_expires_at <= now()))";

macro_rules! claim_installation {
    ($lock:literal) => {
        concat!(
            "SELECT i.installation_id
FROM installations i
WHERE i.installation_id <> ALL($2)
  AND (EXISTS (SELECT 1 FROM jobs j
               WHERE j.installation_id = i.installation_id
                 AND j.state = 'queued' AND j.run_after <= now())
    OR EXISTS (SELECT 1 FROM jobs j
               WHERE j.installation_id = i.installation_id
                 AND j.state = 'running' AND j.lease_expires_at <= now()))
  AND (SELECT count(*) FROM jobs r
       WHERE r.installation_id = i.installation_id
         AND r.state = 'running' AND r.lease_expires_at > now()) < $1
ORDER BY i.last_claim_seq ASC NULLS FIRST, i.installation_id
LIMIT 1
FOR UPDATE OF i ",
            $lock
        )
    };
}

/// The installation to serve next, skipping those another claimer holds.
const CLAIM_INSTALLATION: &str = claim_installation!("SKIP LOCKED");
/// The same, waiting for a busy one (used when every candidate is held).
const CLAIM_INSTALLATION_WAIT: &str = claim_installation!("");

/// An audit may start only if no audit of its pull request runs and no newer audit of it is runnable.
macro_rules! audit_may_start {
    () => {
        "(NOT j.coalescible OR (
            NOT EXISTS (SELECT 1 FROM jobs r
                        WHERE r.repo = j.repo AND r.pr_number = j.pr_number AND r.coalescible
                          AND r.state = 'running' AND r.id <> j.id AND r.lease_expires_at > now())
        AND NOT EXISTS (SELECT 1 FROM jobs n
                        WHERE n.repo = j.repo AND n.pr_number = j.pr_number AND n.coalescible
                          AND n.id > j.id
                          AND ((n.state = 'queued' AND n.run_after <= now())
                            OR (n.state = 'running' AND n.lease_expires_at <= now())))))"
    };
}

/// Claims the oldest runnable job (the first queued one or the first with an expired lease, each found in
/// id order) of a locked installation, re-checking its cap with this statement's fresh snapshot. A job
/// already claimed `$5` times is marked dead instead (its attempts unchanged).
const CLAIM_JOB: &str = concat!(
    "WITH room AS (
    SELECT count(*) < $4 AS ok FROM jobs r
    WHERE r.installation_id = $1 AND r.state = 'running' AND r.lease_expires_at > now()
), queued AS (
    SELECT j.id FROM jobs j
    WHERE j.installation_id = $1 AND j.state = 'queued' AND j.run_after <= now() AND ",
    audit_may_start!(),
    "
    ORDER BY j.id LIMIT 1
    FOR UPDATE OF j SKIP LOCKED
), expired AS (
    SELECT j.id FROM jobs j
    WHERE j.installation_id = $1 AND j.state = 'running' AND j.lease_expires_at <= now() AND ",
    audit_may_start!(),
    "
    ORDER BY j.id LIMIT 1
    FOR UPDATE OF j SKIP LOCKED
), pick AS (
    SELECT min(c.id) AS pick_id FROM (SELECT id FROM queued UNION ALL SELECT id FROM expired) c
    WHERE (SELECT ok FROM room)
)
UPDATE jobs SET state = CASE WHEN jobs.attempts >= $5 THEN 'dead' ELSE 'running' END, lease_owner = $2,
    lease_expires_at = CASE WHEN jobs.attempts >= $5 THEN NULL
                            ELSE now() + $3::float8 * interval '1 microsecond' END,
    finished_at = CASE WHEN jobs.attempts >= $5 THEN now() ELSE jobs.finished_at END,
    attempts = CASE WHEN jobs.attempts >= $5 THEN jobs.attempts ELSE jobs.attempts + 1 END,
    updated_at = now()
FROM pick WHERE jobs.id = pick.pick_id
RETURNING ",
    job_columns!()
);

const IS_SUPERSEDED: &str = "\
SELECT EXISTS (SELECT 1 FROM jobs n
               WHERE n.repo = $1 AND n.pr_number = $2 AND n.coalescible AND n.id > $3
                 AND n.head_sha IS NOT NULL AND n.head_sha <> $4
                 AND n.state IN ('queued', 'running', 'done'))";

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> QueueError {
    move |source| QueueError::Database {
        backend: BACKEND,
        op,
        source: Arc::new(source),
    }
}

fn has_code(e: &sqlx::Error, code: &str) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == code)
}

/// 23505: a concurrent write took the unique slot first.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    has_code(e, "23505")
}

/// 55P03: `lock_timeout` expired.
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    has_code(e, "55P03")
}

fn col<'r, T>(row: &'r PgRow, id: i64, field: &'static str) -> Result<T, QueueError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(field).map_err(|e| QueueError::Corrupt {
        id,
        field,
        problem: e.to_string(),
    })
}

fn job_from_row(row: &PgRow) -> Result<Job, QueueError> {
    let id: i64 = col(row, 0, "id")?;
    let attempts: i32 = col(row, id, "attempts")?;
    let state: String = col(row, id, "state")?;
    Ok(Job {
        id,
        delivery_id: col(row, id, "delivery_id")?,
        event: col(row, id, "event")?,
        installation_id: col(row, id, "installation_id")?,
        repo: col(row, id, "repo")?,
        pr_number: col(row, id, "pr_number")?,
        head_sha: col(row, id, "head_sha")?,
        payload: col(row, id, "payload")?,
        attempts: attempts_u32(id, i64::from(attempts))?,
        lease_owner: col(row, id, "lease_owner")?,
        lease_expires_at: col(row, id, "lease_expires_at")?,
        created_at: col(row, id, "created_at")?,
        state: state_from_str(id, &state)?,
        run_after: col(row, id, "run_after")?,
        last_error: col(row, id, "last_error")?,
    })
}

/// The PostgreSQL job store.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    gauge: Arc<DepthGauge>,
    /// Installations known to have their row (rows are never deleted).
    installations: Mutex<HashSet<i64>>,
    /// A background bounding of the queue is running (see `enqueue_bounded`).
    bounding: Arc<AtomicBool>,
    /// Jobs dropped by background boundings, not yet reported by a bounded enqueue.
    unreported_drops: Arc<AtomicU64>,
    /// When the last background bounding dropped nothing (the next waits [`EMPTY_BOUND_BACKOFF`]).
    empty_bound_at: Arc<Mutex<Option<Instant>>>,
}

/// After a background bounding that dropped nothing, the next one waits at least this long (over its depth
/// with nothing superseded, bounding again at every recheck would only load the database).
const EMPTY_BOUND_BACKOFF: Duration = Duration::from_secs(1);

impl PostgresStore {
    /// Connects to `url` (`postgres://…`) and migrates the schema under an advisory lock.
    pub async fn open(url: &str, options: &QueueOptions) -> Result<Self, QueueError> {
        let connect = |source| QueueError::Connect {
            backend: BACKEND,
            target: redact_url(url),
            source,
        };
        let statement_timeout = format!("{}", options.statement_timeout.as_millis());
        let connect_options = PgConnectOptions::from_str(url)
            .map_err(connect)?
            .application_name("prodaudit")
            .options([("statement_timeout", statement_timeout.as_str())]);
        migrate(&connect_options, options.migration_lock_timeout)
            .await
            .map_err(|e| match e {
                MigrateFailure::Connect(source) => connect(source),
                MigrateFailure::Queue(e) => e,
            })?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options)
            .await
            .map_err(connect)?;
        Ok(PostgresStore {
            pool,
            gauge: Arc::new(DepthGauge::default()),
            bounding: Arc::new(AtomicBool::new(false)),
            unreported_drops: Arc::new(AtomicU64::new(0)),
            empty_bound_at: Arc::new(Mutex::new(None)),
            installations: Mutex::new(HashSet::new()),
        })
    }

    /// One claim round: lock an installation (not in `excluded`) and claim its next job.
    /// `Ok(Err(installation))`: that installation had nothing claimable after all.
    async fn claim_round(
        &self,
        worker_id: &str,
        lease: i64,
        cap: i64,
        max_attempts: i64,
        excluded: &[i64],
    ) -> Result<Option<Result<PgRow, i64>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let mut installation: Option<i64> = sqlx::query_scalar(CLAIM_INSTALLATION)
            .bind(cap)
            .bind(excluded)
            .fetch_optional(&mut *tx)
            .await?;
        if installation.is_none() {
            sqlx::query("SET LOCAL lock_timeout = '5s'")
                .execute(&mut *tx)
                .await?;
            installation = match sqlx::query_scalar(CLAIM_INSTALLATION_WAIT)
                .bind(cap)
                .bind(excluded)
                .fetch_optional(&mut *tx)
                .await
            {
                Ok(found) => found,
                Err(e) if is_lock_timeout(&e) => None,
                Err(e) => return Err(e),
            };
        }
        let Some(installation) = installation else {
            tx.rollback().await?;
            return Ok(None);
        };
        let row = sqlx::query(CLAIM_JOB)
            .bind(installation)
            .bind(worker_id)
            .bind(lease)
            .bind(cap)
            .bind(max_attempts)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(Some(Err(installation)));
        };
        let state: String = row.try_get("state")?;
        if state == JobState::Dead.as_str() {
            let id: i64 = row.try_get("id")?;
            let attempts: i32 = row.try_get("attempts")?;
            let last_error: Option<String> = row.try_get("last_error")?;
            let reason = exhausted_reason(
                u32::try_from(attempts).unwrap_or(u32::MAX),
                last_error.as_deref(),
            );
            let row = sqlx::query(concat!(
                "UPDATE jobs SET last_error = $2 WHERE id = $1 RETURNING ",
                job_columns!()
            ))
            .bind(id)
            .bind(reason)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Some(Ok(row)));
        }
        sqlx::query(
            "UPDATE installations SET last_claim_seq = nextval('installation_claim_seq') \
             WHERE installation_id = $1",
        )
        .bind(installation)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Ok(row)))
    }

    /// Runs `release` in its own transaction, retrying when a concurrent enqueue wins the unique slot.
    async fn release_owned(
        &self,
        id: i64,
        worker_id: &str,
        run_after: Option<DateTime<Utc>>,
        error: Option<&str>,
        uncount_attempt: bool,
        op: &'static str,
    ) -> Result<bool, QueueError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = self.pool.begin().await?;
                let owned: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM jobs WHERE id = $1 AND state = 'running' AND lease_owner = $2 \
                     FOR UPDATE",
                )
                .bind(id)
                .bind(worker_id)
                .fetch_optional(&mut *tx)
                .await?;
                if owned.is_none() {
                    return Ok(false);
                }
                release(&mut tx, id, run_after, error, uncount_attempt).await?;
                tx.commit().await?;
                Ok(true)
            }
            .await;
            match result {
                Err(e) if is_unique_violation(&e) && attempt < RACE_RETRIES => continue,
                other => return other.map_err(db(op)),
            }
        }
    }
}

enum MigrateFailure {
    Connect(sqlx::Error),
    Queue(QueueError),
}

/// Migrates on a dedicated connection holding `MIGRATION_LOCK_KEY`, so replicas starting together take
/// turns. Closing the connection releases the lock even if the migration fails.
async fn migrate(options: &PgConnectOptions, lock_timeout: Duration) -> Result<(), MigrateFailure> {
    let mut conn = PgConnection::connect_with(options)
        .await
        .map_err(MigrateFailure::Connect)?;
    let deadline = tokio::time::Instant::now() + lock_timeout;
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| MigrateFailure::Queue(db("take the migration lock")(e)))?;
        if locked {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            if let Err(e) = conn.close().await {
                tracing::debug!(error = %e, "closing the migration connection");
            }
            return Err(MigrateFailure::Queue(QueueError::MigrationLockTimeout(
                lock_timeout,
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `run_direct`, because `Migrator::run`'s `Acquire` bound makes this future not `Send` for every lifetime.
    let migrated = MIGRATOR.run_direct(None, &mut conn, false).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut conn)
        .await;
    if let Err(e) = conn.close().await {
        tracing::debug!(error = %e, "closing the migration connection");
    }
    migrated.map_err(|source| {
        MigrateFailure::Queue(QueueError::Migrate {
            backend: BACKEND,
            source,
        })
    })?;
    unlocked.map_err(|e| MigrateFailure::Queue(db("release the migration lock")(e)))?;
    Ok(())
}

/// Drops superseded audits if more than `max_depth` jobs are queued: (dropped, queued after).
async fn enforce_bound(conn: &mut PgConnection, max_depth: u64) -> Result<(u64, u64), sqlx::Error> {
    let count = "SELECT count(*) FROM jobs WHERE state = 'queued'";
    let queued: i64 = sqlx::query_scalar(count).fetch_one(&mut *conn).await?;
    if count_u64(queued) <= max_depth {
        return Ok((0, count_u64(queued)));
    }
    let dropped = sqlx::query(DROP_SUPERSEDED)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let queued: i64 = sqlx::query_scalar(count).fetch_one(&mut *conn).await?;
    Ok((dropped, count_u64(queued)))
}

/// [`enforce_bound`] in its own transaction: (dropped, queued after).
async fn bound_queue(pool: &PgPool, max_depth: u64) -> Result<(u64, u64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let counted = enforce_bound(&mut tx, max_depth).await?;
    tx.commit().await?;
    Ok(counted)
}

impl PostgresStore {
    /// Starts bounding the queue in a task of its own unless one is running.
    fn bound_in_background(&self, max_depth: u64) {
        let recent_empty = self
            .empty_bound_at
            .lock()
            .is_ok_and(|at| at.is_some_and(|at| at.elapsed() < EMPTY_BOUND_BACKOFF));
        if recent_empty || self.bounding.swap(true, Ordering::AcqRel) {
            return;
        }
        let (pool, gauge, bounding, drops, empty_at) = (
            self.pool.clone(),
            Arc::clone(&self.gauge),
            Arc::clone(&self.bounding),
            Arc::clone(&self.unreported_drops),
            Arc::clone(&self.empty_bound_at),
        );
        tokio::spawn(async move {
            match bound_queue(&pool, max_depth).await {
                Ok((dropped, queued)) => {
                    drops.fetch_add(dropped, Ordering::Relaxed);
                    gauge.counted(queued, queued > max_depth);
                    if let Ok(mut at) = empty_at.lock() {
                        *at = (dropped == 0).then(Instant::now);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot bound the queue; trying again later")
                }
            }
            bounding.store(false, Ordering::Release);
        });
    }
}

/// Puts a running job (locked by the caller) back in the queue, runnable from `run_after` (now if `None`),
/// or merges it into the queued audit of its pull request.
async fn release(
    conn: &mut PgConnection,
    id: i64,
    run_after: Option<DateTime<Utc>>,
    error: Option<&str>,
    uncount_attempt: bool,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "SELECT repo, pr_number, coalescible, full_audit, payload, head_sha FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let coalescible: bool = row.try_get("coalescible")?;
    if coalescible {
        let repo: String = row.try_get("repo")?;
        let pr_number: Option<i64> = row.try_get("pr_number")?;
        let sibling: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE repo = $1 AND pr_number = $2 AND coalescible \
             AND state = 'queued' FOR UPDATE",
        )
        .bind(&repo)
        .bind(pr_number)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(sibling) = sibling {
            let full: bool = row.try_get("full_audit")?;
            let payload: serde_json::Value = row.try_get("payload")?;
            let head_sha: Option<String> = row.try_get("head_sha")?;
            sqlx::query(
                "UPDATE jobs SET payload = CASE WHEN NOT full_audit AND $2 THEN $3 ELSE payload END, \
                 full_audit = full_audit OR $2, head_sha = COALESCE(head_sha, $4), updated_at = now() \
                 WHERE id = $1",
            )
            .bind(sibling)
            .bind(full)
            .bind(payload)
            .bind(head_sha)
            .execute(&mut *conn)
            .await?;
            let note = match error {
                Some(error) => {
                    format!("{error}; merged into queued job {sibling} of the same pull request")
                }
                None => format!("merged into queued job {sibling} of the same pull request"),
            };
            sqlx::query(
                "UPDATE jobs SET state = 'done', lease_expires_at = NULL, finished_at = now(), \
                 updated_at = now(), last_error = $2, \
                 attempts = CASE WHEN $3 THEN GREATEST(attempts - 1, 0) ELSE attempts END \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(note)
            .bind(uncount_attempt)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
    }
    sqlx::query(
        "UPDATE jobs SET state = 'queued', run_after = COALESCE($2, now()), lease_owner = NULL, \
         lease_expires_at = NULL, updated_at = now(), last_error = COALESCE($3, last_error), \
         attempts = CASE WHEN $4 THEN GREATEST(attempts - 1, 0) ELSE attempts END \
         WHERE id = $1",
    )
    .bind(id)
    .bind(run_after)
    .bind(error)
    .bind(uncount_attempt)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[async_trait]
impl JobStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn enqueue_bounded(
        &self,
        job: NewJob,
        max_depth: u64,
    ) -> Result<BoundedEnqueue, QueueError> {
        let op = "enqueue";
        let known = self
            .installations
            .lock()
            .is_ok_and(|known| known.contains(&job.installation_id));
        // One statement, one round trip, committed on its own (its fsync is the commit's): the delivery id,
        // the installation row if new, and the job (or its merge into the queued audit of the pull request).
        let row = sqlx::query(ENQUEUE_ONE_STATEMENT)
            .bind(&job.delivery_id)
            .bind(&job.event)
            .bind(job.installation_id)
            .bind(&job.repo)
            .bind(job.pr_number)
            .bind(&job.head_sha)
            .bind(&job.payload)
            .bind(is_full(&job.payload))
            .bind(is_coalescible(&job))
            .bind(!known)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(op))?;
        let Some(row) = row else {
            // The delivery id was already stored: nothing was written.
            return Ok(BoundedEnqueue {
                enqueued: Enqueued::Duplicate,
                dropped: 0,
                over_capacity: false,
            });
        };
        let id: i64 = row.try_get("id").map_err(db(op))?;
        let coalesced: i32 = row.try_get("coalesced").map_err(db(op))?;
        if !known && let Ok(mut known) = self.installations.lock() {
            known.insert(job.installation_id);
        }
        let added = u64::from(coalesced == 0);
        let (dropped, over_capacity) = if max_depth == u64::MAX {
            self.gauge.add(added);
            (0, false)
        } else {
            match self.gauge.check(added, max_depth) {
                BoundCheck::Skip { over_capacity } => (0, over_capacity),
                BoundCheck::Count if self.gauge.estimate() > INLINE_BOUND_MAX_QUEUED => {
                    // A deep queue: counting it and looking for superseded audits takes long (hundreds of
                    // ms at 10,000 queued jobs), so it runs beside intake, one at a time, and what it drops
                    // is reported by a later bounded enqueue. The job is stored either way.
                    self.bound_in_background(max_depth);
                    (0, self.gauge.estimate() > max_depth)
                }
                BoundCheck::Count => {
                    // The job is stored; bounding the queue is its own transaction.
                    let (dropped, queued) = bound_queue(&self.pool, max_depth)
                        .await
                        .map_err(db("enqueue (bound the queue)"))?;
                    self.gauge.counted(queued, queued > max_depth);
                    (dropped, queued > max_depth)
                }
            }
        };
        let dropped = if max_depth == u64::MAX {
            dropped
        } else {
            dropped.saturating_add(self.unreported_drops.swap(0, Ordering::Relaxed))
        };
        Ok(BoundedEnqueue {
            enqueued: if coalesced == 0 {
                Enqueued::New(id)
            } else {
                Enqueued::Coalesced(id)
            },
            dropped,
            over_capacity,
        })
    }

    async fn claim_within(
        &self,
        worker_id: &str,
        lease: Duration,
        per_installation_cap: usize,
        max_attempts: u32,
    ) -> Result<Option<Claimed>, QueueError> {
        let any: bool = sqlx::query_scalar(ANY_RUNNABLE)
            .fetch_one(&self.pool)
            .await
            .map_err(db("claim (probe)"))?;
        if !any {
            return Ok(None);
        }
        let lease = micros(lease);
        let cap = cap_i64(per_installation_cap);
        let mut excluded: Vec<i64> = Vec::new();
        for _ in 0..CLAIM_ROUNDS {
            match self
                .claim_round(worker_id, lease, cap, i64::from(max_attempts), &excluded)
                .await
                .map_err(db("claim"))?
            {
                None => return Ok(None),
                Some(Ok(row)) => {
                    let job = job_from_row(&row)?;
                    return Ok(Some(if job.state == JobState::Dead {
                        Claimed::Exhausted(job)
                    } else {
                        Claimed::Run(job)
                    }));
                }
                Some(Err(installation)) => excluded.push(installation),
            }
        }
        Ok(None)
    }

    async fn extend_lease(
        &self,
        id: i64,
        worker_id: &str,
        lease: Duration,
    ) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_expires_at = now() + $3::float8 * interval '1 microsecond', \
             updated_at = now() WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker_id)
        .bind(micros(lease))
        .execute(&self.pool)
        .await
        .map_err(db("extend lease"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete(&self, id: i64, worker_id: &str) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', lease_expires_at = NULL, finished_at = now(), \
             updated_at = now() WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker_id)
        .execute(&self.pool)
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
        self.release_owned(id, worker_id, Some(run_after), Some(error), false, "retry")
            .await
    }

    async fn give_up(&self, id: i64, worker_id: &str, error: &str) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'dead', lease_expires_at = NULL, finished_at = now(), \
             updated_at = now(), last_error = $3 \
             WHERE id = $1 AND state = 'running' AND lease_owner = $2",
        )
        .bind(id)
        .bind(worker_id)
        .bind(error)
        .execute(&self.pool)
        .await
        .map_err(db("give up"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue_running(&self, worker_id: &str) -> Result<u64, QueueError> {
        let op = "requeue running jobs";
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'running' AND lease_owner = $1 ORDER BY id",
        )
        .bind(worker_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db(op))?;
        let mut requeued = 0;
        for id in ids {
            if self
                .release_owned(id, worker_id, None, None, true, op)
                .await?
            {
                requeued += 1;
            }
        }
        Ok(requeued)
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
            .fetch_one(&self.pool)
            .await
            .map_err(db("check for a newer head"))
    }

    async fn job(&self, id: i64) -> Result<Option<Job>, QueueError> {
        let row = sqlx::query(SELECT_JOB)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read job"))?;
        row.map(|row| job_from_row(&row)).transpose()
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM jobs WHERE state IN ('queued', 'running', 'dead') \
             GROUP BY state",
        )
        .fetch_all(&self.pool)
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
            .execute(&self.pool)
            .await
            .map_err(db("ping"))?;
        Ok(())
    }

    async fn prune(&self, older_than: Duration) -> Result<Pruned, QueueError> {
        let age = micros(older_than);
        let mut tx = self.pool.begin().await.map_err(db("prune"))?;
        let jobs = sqlx::query(
            "DELETE FROM jobs WHERE state IN ('done', 'dropped') \
             AND finished_at <= now() - $1::float8 * interval '1 microsecond'",
        )
        .bind(age)
        .execute(&mut *tx)
        .await
        .map_err(db("prune jobs"))?
        .rows_affected();
        let deliveries = sqlx::query(
            "DELETE FROM deliveries WHERE received_at <= now() - $1::float8 * interval '1 microsecond'",
        )
        .bind(age)
        .execute(&mut *tx)
        .await
        .map_err(db("prune deliveries"))?
        .rows_affected();
        let check_runs = sqlx::query(
            "DELETE FROM check_runs WHERE updated_at <= now() - $1::float8 * interval '1 microsecond'",
        )
        .bind(age)
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
        let fingerprints: Vec<&str> = comments.iter().map(|(f, _)| f.as_str()).collect();
        let ids: Vec<i64> = comments.iter().map(|(_, id)| *id).collect();
        sqlx::query(
            "INSERT INTO posted_comments (repo, pr_number, fingerprint, comment_id, created_at) \
             SELECT $1, $2, f, c, now() FROM unnest($3::text[], $4::bigint[]) AS t(f, c) \
             ON CONFLICT (repo, pr_number, fingerprint) \
             DO UPDATE SET comment_id = EXCLUDED.comment_id, created_at = EXCLUDED.created_at",
        )
        .bind(repo)
        .bind(pr_number)
        .bind(&fingerprints)
        .bind(&ids)
        .execute(&self.pool)
        .await
        .map_err(db("record comments"))?;
        Ok(())
    }

    async fn posted_comments(
        &self,
        repo: &str,
        pr_number: i64,
    ) -> Result<Vec<(String, i64)>, QueueError> {
        sqlx::query_as(
            "SELECT fingerprint, comment_id FROM posted_comments \
             WHERE repo = $1 AND pr_number = $2 ORDER BY fingerprint",
        )
        .bind(repo)
        .bind(pr_number)
        .fetch_all(&self.pool)
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
            "DELETE FROM posted_comments WHERE repo = $1 AND pr_number = $2 AND fingerprint = $3",
        )
        .bind(repo)
        .bind(pr_number)
        .bind(fingerprint)
        .execute(&self.pool)
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
            "INSERT INTO check_runs (repo, head_sha, check_run_id, updated_at) VALUES ($1, $2, $3, now()) \
             ON CONFLICT (repo, head_sha) DO UPDATE SET check_run_id = EXCLUDED.check_run_id, \
             updated_at = EXCLUDED.updated_at",
        )
        .bind(repo)
        .bind(head_sha)
        .bind(check_run_id)
        .execute(&self.pool)
        .await
        .map_err(db("record check run"))?;
        Ok(())
    }

    async fn check_run(&self, repo: &str, head_sha: &str) -> Result<Option<i64>, QueueError> {
        sqlx::query_scalar("SELECT check_run_id FROM check_runs WHERE repo = $1 AND head_sha = $2")
            .bind(repo)
            .bind(head_sha)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read check run"))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
