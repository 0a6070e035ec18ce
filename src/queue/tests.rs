//! One test suite, run against SQLite (a temporary file) and PostgreSQL (a fresh database per test, when the
//! server at `PROD_AUDIT_TEST_PG` or `postgres://postgres@127.0.0.1:5432/test` answers).

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tokio::task::JoinSet;

use super::sqlite::INLINE_BOUND_MAX_QUEUED;
use super::*;
use std::sync::atomic::Ordering;

const LEASE: Duration = Duration::from_secs(60);
/// Long enough that a loaded 2-core machine (four PostgreSQL claims in a row, other test binaries running)
/// cannot let it lapse before the test's next step; 150 ms did lapse once.
const SHORT_LEASE: Duration = Duration::from_millis(1500);
const PAST_SHORT_LEASE: Duration = Duration::from_millis(2000);
const NO_CAP: usize = 1000;

type TestResult = Result<(), QueueError>;

/// A database for one test on one backend.
#[derive(Debug, Clone)]
struct TestDb {
    backend: &'static str,
    url: String,
}

impl TestDb {
    async fn open(&self) -> Result<Arc<dyn JobStore>, QueueError> {
        let options = QueueOptions {
            max_connections: 10,
            ..QueueOptions::default()
        };
        open_with(&self.url, &options).await
    }
}

/// Runs `body` on SQLite, then on PostgreSQL if reachable.
async fn on_each_backend<F, Fut>(test: &str, body: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: Future<Output = TestResult> + Send + 'static,
{
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("{test}: cannot create a temporary directory: {e}"),
    };
    let sqlite = TestDb {
        backend: "sqlite",
        url: dir.path().join("queue.db").display().to_string(),
    };
    if let Err(e) = body(sqlite).await {
        panic!("{test} on SQLite: {e}");
    }
    let pg = match PgTestDatabase::create().await {
        Ok(pg) => pg,
        Err(reason) => {
            eprintln!("skipping PostgreSQL queue tests: {reason}");
            return;
        }
    };
    let outcome = tokio::spawn(body(TestDb {
        backend: "postgres",
        url: pg.url.clone(),
    }))
    .await;
    pg.drop_database().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{test} on PostgreSQL: {e}"),
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => panic!("{test} on PostgreSQL: {join}"),
    }
}

/// `CREATE DATABASE pa_test_<random>` on the test server, dropped afterwards.
struct PgTestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgTestDatabase {
    fn admin_url() -> String {
        std::env::var("PROD_AUDIT_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
    }

    async fn connect_admin(admin_url: &str) -> Result<PgConnection, String> {
        match tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(admin_url)).await {
            Err(_) => Err(format!(
                "{} did not answer within 3 s",
                redact_url(admin_url)
            )),
            Ok(Err(e)) => Err(format!("cannot connect to {}: {e}", redact_url(admin_url))),
            Ok(Ok(conn)) => Ok(conn),
        }
    }

    async fn create() -> Result<Self, String> {
        let admin_url = Self::admin_url();
        let mut conn = Self::connect_admin(&admin_url).await?;
        let name = format!("pa_test_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        let _ = conn.close().await;
        let (base, query) = match admin_url.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (admin_url.as_str(), None),
        };
        let server = match base.split_once("://") {
            Some((scheme, rest)) => match rest.split_once('/') {
                Some((authority, _)) => format!("{scheme}://{authority}"),
                None => base.to_string(),
            },
            None => return Err(format!("{} is not a URL", redact_url(&admin_url))),
        };
        let url = match query {
            Some(query) => format!("{server}/{name}?{query}"),
            None => format!("{server}/{name}"),
        };
        Ok(PgTestDatabase {
            admin_url,
            name,
            url,
        })
    }

    async fn drop_database(self) {
        match Self::connect_admin(&self.admin_url).await {
            Ok(mut conn) => {
                let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
                if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await {
                    eprintln!("cannot drop test database {}: {e}", self.name);
                }
                let _ = conn.close().await;
            }
            Err(e) => eprintln!("cannot drop test database {}: {e}", self.name),
        }
    }
}

fn new_job(
    delivery: &str,
    installation: i64,
    repo: &str,
    pr: Option<i64>,
    head: Option<&str>,
    payload: serde_json::Value,
) -> NewJob {
    NewJob {
        delivery_id: delivery.to_string(),
        event: "pull_request".to_string(),
        installation_id: installation,
        repo: repo.to_string(),
        pr_number: pr,
        head_sha: head.map(str::to_string),
        payload,
    }
}

/// A plain audit of `o/r` pull request `pr` at `head`, for installation 1.
fn audit(delivery: &str, pr: i64, head: &str) -> NewJob {
    new_job(
        delivery,
        1,
        "o/r",
        Some(pr),
        Some(head),
        json!({"kind": "audit", "full": false}),
    )
}

fn full_audit(delivery: &str, pr: i64, head: &str) -> NewJob {
    new_job(
        delivery,
        1,
        "o/r",
        Some(pr),
        Some(head),
        json!({"kind": "audit", "full": true, "comment_id": 42}),
    )
}

fn new_id(e: Enqueued) -> i64 {
    match e {
        Enqueued::New(id) => id,
        other => panic!("expected a new job, got {other:?}"),
    }
}

async fn must_job(s: &Arc<dyn JobStore>, id: i64) -> Result<Job, QueueError> {
    match s.job(id).await? {
        Some(job) => Ok(job),
        None => panic!("job {id} is missing"),
    }
}

async fn must_claim(s: &Arc<dyn JobStore>, worker: &str) -> Result<Job, QueueError> {
    match s.claim(worker, LEASE, NO_CAP).await? {
        Some(job) => Ok(job),
        None => panic!("nothing to claim for {worker}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dedup_by_delivery_id() {
    on_each_backend("dedup", |db| async move {
        let s = db.open().await?;
        let id = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        assert_eq!(s.enqueue(audit("d1", 1, "aaa")).await?, Enqueued::Duplicate);
        // A redelivery is a duplicate whatever it carries.
        assert_eq!(s.enqueue(audit("d1", 2, "bbb")).await?, Enqueued::Duplicate);
        assert_eq!(s.depth().await?.queued, 1);
        assert_eq!(must_job(&s, id).await?.head_sha.as_deref(), Some("aaa"));

        // Eight concurrent redeliveries of one id store one job.
        let mut tasks = JoinSet::new();
        for _ in 0..8 {
            let s = Arc::clone(&s);
            tasks.spawn(async move {
                s.enqueue(new_job(
                    "d2",
                    1,
                    "o/other",
                    None,
                    None,
                    json!({"kind": "audit"}),
                ))
                .await
            });
        }
        let mut new = 0;
        let mut duplicate = 0;
        for outcome in tasks.join_all().await {
            match outcome? {
                Enqueued::New(_) => new += 1,
                Enqueued::Duplicate => duplicate += 1,
                Enqueued::Coalesced(id) => panic!("{} coalesced into {id}", db.backend),
            }
        }
        assert_eq!((new, duplicate), (1, 7), "{}", db.backend);
        assert_eq!(s.depth().await?.queued, 2);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn coalescing_per_pull_request() {
    on_each_backend("coalescing", |db| async move {
        let s = db.open().await?;
        let first = new_id(s.enqueue(audit("d1", 7, "aaa")).await?);
        assert_eq!(
            s.enqueue(audit("d2", 7, "bbb")).await?,
            Enqueued::Coalesced(first)
        );
        let job = must_job(&s, first).await?;
        assert_eq!(job.head_sha.as_deref(), Some("bbb"));
        assert_eq!(job.delivery_id, "d2");
        assert_eq!(s.depth().await?.queued, 1);

        // Another pull request, jobs without one, and other kinds of work stay separate.
        new_id(s.enqueue(audit("d3", 8, "ccc")).await?);
        new_id(
            s.enqueue(new_job("d4", 1, "o/r", None, None, json!({})))
                .await?,
        );
        new_id(
            s.enqueue(new_job("d5", 1, "o/r", None, None, json!({})))
                .await?,
        );
        let help = json!({"kind": "help", "comment_id": 5});
        new_id(
            s.enqueue(new_job("d6", 1, "o/r", Some(7), Some("bbb"), help))
                .await?,
        );
        // Same number in another repository.
        let other_repo = new_job("d6b", 1, "o/r2", Some(7), Some("bbb"), json!({}));
        new_id(s.enqueue(other_repo).await?);
        assert_eq!(s.depth().await?.queued, 6);

        // A running job is not coalesced into: the next push makes a new job.
        let running = must_claim(&s, "w1").await?;
        assert_eq!(running.id, first);
        let second = new_id(s.enqueue(audit("d7", 7, "ddd")).await?);
        assert_ne!(second, first);
        assert_eq!(
            s.enqueue(audit("d8", 7, "eee")).await?,
            Enqueued::Coalesced(second)
        );
        // A delivery without a head keeps the known head.
        let headless = new_job("d9", 1, "o/r", Some(7), None, json!({"kind": "audit"}));
        assert_eq!(s.enqueue(headless).await?, Enqueued::Coalesced(second));
        assert_eq!(must_job(&s, second).await?.head_sha.as_deref(), Some("eee"));
        assert_eq!(must_job(&s, first).await?.head_sha.as_deref(), Some("bbb"));
        assert_eq!(must_job(&s, first).await?.state, JobState::Running);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_audit_is_never_weakened() {
    on_each_backend("full precedence", |db| async move {
        let s = db.open().await?;
        // Full, then a plain push: one job, full, at the newer head.
        let id = new_id(s.enqueue(full_audit("d1", 1, "aaa")).await?);
        assert_eq!(
            s.enqueue(audit("d2", 1, "bbb")).await?,
            Enqueued::Coalesced(id)
        );
        let job = must_job(&s, id).await?;
        assert_eq!(job.payload["full"], json!(true));
        assert_eq!(job.payload["comment_id"], json!(42));
        assert_eq!(job.head_sha.as_deref(), Some("bbb"));

        // Plain, then full: full.
        let id = new_id(s.enqueue(audit("d3", 2, "ccc")).await?);
        assert_eq!(
            s.enqueue(full_audit("d4", 2, "ccc")).await?,
            Enqueued::Coalesced(id)
        );
        assert_eq!(must_job(&s, id).await?.payload["full"], json!(true));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_audit_per_pull_request_at_a_time() {
    on_each_backend("per-PR serialization", |db| async move {
        let s = db.open().await?;
        let first = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        let other = new_id(s.enqueue(audit("d2", 2, "xxx")).await?);
        assert_eq!(must_claim(&s, "w1").await?.id, first);
        let second = new_id(s.enqueue(audit("d3", 1, "bbb")).await?);
        // The newer head waits while the older audit of the same pull request runs.
        assert_eq!(must_claim(&s, "w2").await?.id, other);
        assert!(s.claim("w2", LEASE, NO_CAP).await?.is_none());
        assert!(s.complete(first, "w1").await?);
        assert_eq!(must_claim(&s, "w2").await?.id, second);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_fairness_and_cap() {
    on_each_backend("fairness", |db| async move {
        let s = db.open().await?;
        for i in 0..10 {
            let job = new_job(&format!("a{i}"), 100, "a/a", Some(i), Some("h"), json!({}));
            new_id(s.enqueue(job).await?);
        }
        new_id(
            s.enqueue(new_job("b0", 200, "b/b", Some(1), Some("h"), json!({})))
                .await?,
        );
        let c1 = s.claim("w", LEASE, 2).await?;
        let c2 = s.claim("w", LEASE, 2).await?;
        let installations: BTreeSet<i64> = [c1, c2]
            .iter()
            .flatten()
            .map(|job| job.installation_id)
            .collect();
        assert_eq!(installations, BTreeSet::from([100, 200]), "{}", db.backend);

        // Cap 2: A gets one more, then nothing until one of A's jobs finishes.
        let c3 = s.claim("w", LEASE, 2).await?;
        let Some(c3) = c3 else {
            panic!("third claim found nothing")
        };
        assert_eq!(c3.installation_id, 100);
        assert!(s.claim("w", LEASE, 2).await?.is_none(), "{}", db.backend);
        assert!(s.complete(c3.id, "w").await?);
        let c4 = s.claim("w", LEASE, 2).await?;
        assert_eq!(c4.map(|job| job.installation_id), Some(100));

        // Round robin: three more installations with three jobs each. Never-claimed installations go
        // first, then every three consecutive claims serve three different installations (A included).
        for inst in [300, 400, 500] {
            for i in 0..3 {
                let delivery = format!("rr{inst}-{i}");
                let job = new_job(
                    &delivery,
                    inst,
                    "c/c",
                    Some(inst * 10 + i),
                    Some("h"),
                    json!({}),
                );
                new_id(s.enqueue(job).await?);
            }
        }
        for round in 0..4 {
            let mut seen = BTreeSet::new();
            for _ in 0..3 {
                seen.insert(must_claim(&s, "rr").await?.installation_id);
            }
            if round == 0 {
                assert_eq!(seen, BTreeSet::from([300, 400, 500]), "{}", db.backend);
            }
            assert_eq!(
                seen.len(),
                3,
                "{}: round {round} served {seen:?}",
                db.backend
            );
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_lease_is_reclaimable() {
    on_each_backend("lease expiry", |db| async move {
        let s = db.open().await?;
        let id = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        let first = s.claim("w1", SHORT_LEASE, NO_CAP).await?;
        assert_eq!(first.as_ref().map(|j| (j.id, j.attempts)), Some((id, 1)));
        assert!(s.claim("w2", LEASE, NO_CAP).await?.is_none());
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        let second = must_claim(&s, "w2").await?;
        assert_eq!((second.id, second.attempts), (id, 2));
        assert_eq!(second.lease_owner.as_deref(), Some("w2"));
        assert!(second.lease_expires_at.is_some_and(|t| t > Utc::now()));
        // The first worker lost its lease.
        assert!(!s.extend_lease(id, "w1", LEASE).await?);
        assert!(!s.complete(id, "w1").await?);
        assert!(!s.retry(id, "w1", "late", Utc::now()).await?);
        assert!(!s.give_up(id, "w1", "late").await?);
        assert!(s.extend_lease(id, "w2", LEASE).await?);
        assert!(s.complete(id, "w2").await?);
        assert_eq!(must_job(&s, id).await?.state, JobState::Done);
        assert!(!s.extend_lease(id, "w2", LEASE).await?);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_waits_for_run_after() {
    on_each_backend("retry", |db| async move {
        let s = db.open().await?;
        let id = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        must_claim(&s, "w1").await?;
        let later = Utc::now() + chrono::Duration::milliseconds(400);
        assert!(s.retry(id, "w1", "GitHub answered 502", later).await?);
        let job = must_job(&s, id).await?;
        assert_eq!(job.state, JobState::Queued);
        assert_eq!(job.last_error.as_deref(), Some("GitHub answered 502"));
        assert_eq!(job.lease_owner, None);
        assert!(s.claim("w1", LEASE, NO_CAP).await?.is_none());
        tokio::time::sleep(Duration::from_millis(600)).await;
        let again = must_claim(&s, "w1").await?;
        assert_eq!((again.id, again.attempts), (id, 2));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn give_up_keeps_the_job_dead() {
    on_each_backend("give up", |db| async move {
        let s = db.open().await?;
        let id = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        must_claim(&s, "w1").await?;
        assert!(s.give_up(id, "w1", "5 attempts failed").await?);
        let job = must_job(&s, id).await?;
        assert_eq!(job.state, JobState::Dead);
        assert_eq!(job.last_error.as_deref(), Some("5 attempts failed"));
        let depth = s.depth().await?;
        assert_eq!((depth.queued, depth.running, depth.dead), (0, 0, 1));
        assert!(s.claim("w1", LEASE, NO_CAP).await?.is_none());
        // Still there after pruning.
        s.prune(Duration::ZERO).await?;
        assert_eq!(must_job(&s, id).await?.state, JobState::Dead);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requeue_running_on_shutdown() {
    on_each_backend("requeue running", |db| async move {
        let s = db.open().await?;
        let a = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        let b = new_id(s.enqueue(audit("d2", 2, "bbb")).await?);
        let c = new_id(s.enqueue(audit("d3", 3, "ccc")).await?);
        assert_eq!(must_claim(&s, "w1").await?.id, a);
        assert_eq!(must_claim(&s, "w1").await?.id, b);
        assert_eq!(must_claim(&s, "w2").await?.id, c);
        assert_eq!(s.requeue_running("w1").await?, 2);
        for id in [a, b] {
            let job = must_job(&s, id).await?;
            assert_eq!(
                (job.state, job.attempts, job.lease_owner),
                (JobState::Queued, 0, None)
            );
        }
        assert_eq!(must_job(&s, c).await?.state, JobState::Running);
        assert_eq!(s.requeue_running("w1").await?, 0);
        let again = must_claim(&s, "w3").await?;
        assert_eq!((again.id, again.attempts), (a, 1));

        // A running full audit requeued while a newer plain push waits merges into it (full wins).
        let full = new_id(s.enqueue(full_audit("d4", 4, "old")).await?);
        assert_eq!(must_claim(&s, "w4").await?.id, b);
        assert_eq!(must_claim(&s, "w4").await?.id, full);
        let newer = new_id(s.enqueue(audit("d5", 4, "new")).await?);
        assert_eq!(s.requeue_running("w4").await?, 2);
        let merged = must_job(&s, full).await?;
        assert_eq!(merged.state, JobState::Done);
        assert!(merged.last_error.is_some_and(|e| e.contains("merged into")));
        let newer = must_job(&s, newer).await?;
        assert_eq!(newer.state, JobState::Queued);
        assert_eq!(newer.payload["full"], json!(true));
        assert_eq!(newer.head_sha.as_deref(), Some("new"));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn superseded_heads() {
    on_each_backend("is_superseded", |db| async move {
        let s = db.open().await?;
        new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        let old = must_claim(&s, "w1").await?;
        assert!(!s.is_superseded(&old).await?);
        // /audit on the same head does not supersede.
        let same = new_id(s.enqueue(audit("d2", 1, "aaa")).await?);
        assert!(!s.is_superseded(&old).await?);
        // Another pull request does not either.
        new_id(s.enqueue(audit("d3", 2, "zzz")).await?);
        assert!(!s.is_superseded(&old).await?);
        // A newer head does, while queued and after it is done.
        assert_eq!(
            s.enqueue(audit("d4", 1, "bbb")).await?,
            Enqueued::Coalesced(same)
        );
        assert!(s.is_superseded(&old).await?);
        let newer = must_job(&s, same).await?;
        assert!(!s.is_superseded(&newer).await?);
        assert!(s.complete(old.id, "w1").await?);
        let newer = must_claim(&s, "w2").await?;
        assert_eq!(newer.id, same);
        assert!(s.complete(newer.id, "w2").await?);
        assert!(s.is_superseded(&old).await?);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survives_a_restart() {
    on_each_backend("crash durability", |db| async move {
        let s = db.open().await?;
        let a = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        let b = new_id(s.enqueue(audit("d2", 2, "bbb")).await?);
        // A worker takes `a` and dies with it.
        assert_eq!(
            s.claim("doomed", Duration::from_secs(3), NO_CAP)
                .await?
                .map(|j| j.id),
            Some(a)
        );
        drop(s);

        let s = db.open().await?;
        assert_eq!(s.enqueue(audit("d1", 1, "aaa")).await?, Enqueued::Duplicate);
        assert_eq!(must_job(&s, b).await?.state, JobState::Queued);
        assert_eq!(must_claim(&s, "w").await?.id, b);
        // A lease long enough that a loaded machine cannot let it lapse before `b` is claimed.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let resumed = must_claim(&s, "w").await?;
        assert_eq!((resumed.id, resumed.attempts), (a, 2));
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_take_each_job_once() {
    on_each_backend("concurrent claims", |db| async move {
        let s = db.open().await?;
        // 100 jobs enqueued from 8 tasks at once, over 4 installations.
        let mut enqueuers = JoinSet::new();
        for t in 0..8i64 {
            let s = Arc::clone(&s);
            enqueuers.spawn(async move {
                let mut ids = Vec::new();
                for i in (t..100).step_by(8) {
                    let job = new_job(
                        &format!("d{i}"),
                        i % 4,
                        "o/r",
                        Some(i),
                        Some("h"),
                        json!({}),
                    );
                    ids.push(new_id(s.enqueue(job).await?));
                }
                Ok::<_, QueueError>(ids)
            });
        }
        let mut all = BTreeSet::new();
        for ids in enqueuers.join_all().await {
            all.extend(ids?);
        }
        assert_eq!(all.len(), 100);

        let claimed = Arc::new(Mutex::new(Vec::new()));
        let mut workers = JoinSet::new();
        for w in 0..8 {
            let s = Arc::clone(&s);
            let claimed = Arc::clone(&claimed);
            workers.spawn(async move {
                let worker = format!("w{w}");
                loop {
                    match s.claim(&worker, LEASE, NO_CAP).await? {
                        Some(job) => {
                            if let Ok(mut claimed) = claimed.lock() {
                                claimed.push((job.id, job.attempts));
                            }
                            assert!(s.complete(job.id, &worker).await?);
                        }
                        None => {
                            let depth = s.depth().await?;
                            if depth.queued == 0 && depth.running == 0 {
                                return Ok::<_, QueueError>(());
                            }
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }
            });
        }
        // A claim that wrongly finds nothing would spin forever: fail instead.
        let Ok(outcomes) = tokio::time::timeout(Duration::from_secs(60), workers.join_all()).await
        else {
            panic!(
                "{}: workers did not drain the queue within 60 s",
                db.backend
            );
        };
        for outcome in outcomes {
            outcome?;
        }
        let claimed = match claimed.lock() {
            Ok(claimed) => claimed.clone(),
            Err(_) => panic!("a worker panicked"),
        };
        assert_eq!(claimed.len(), 100, "{}: {claimed:?}", db.backend);
        let ids: HashSet<i64> = claimed.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), 100, "{}: a job was claimed twice", db.backend);
        assert!(claimed.iter().all(|(_, attempts)| *attempts == 1));
        assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), all);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn comment_fingerprints_and_check_runs() {
    on_each_backend("fingerprints", |db| async move {
        let s = db.open().await?;
        assert!(s.posted_comments("o/r", 1).await?.is_empty());
        let comments = vec![("fp-b".to_string(), 2), ("fp-a".to_string(), 1)];
        s.record_comments("o/r", 1, &comments).await?;
        s.record_comments("o/r", 2, &[("fp-a".to_string(), 9)])
            .await?;
        s.record_comments("o/r", 1, &[]).await?;
        assert_eq!(
            s.posted_comments("o/r", 1).await?,
            vec![("fp-a".to_string(), 1), ("fp-b".to_string(), 2)]
        );
        // Recording a fingerprint again keeps one row with the newer comment.
        s.record_comments("o/r", 1, &[("fp-a".to_string(), 3)])
            .await?;
        assert_eq!(
            s.posted_comments("o/r", 1).await?,
            vec![("fp-a".to_string(), 3), ("fp-b".to_string(), 2)]
        );
        assert!(s.forget_comment("o/r", 1, "fp-a").await?);
        assert!(!s.forget_comment("o/r", 1, "fp-a").await?);
        assert_eq!(
            s.posted_comments("o/r", 1).await?,
            vec![("fp-b".to_string(), 2)]
        );
        assert_eq!(
            s.posted_comments("o/r", 2).await?,
            vec![("fp-a".to_string(), 9)]
        );

        assert_eq!(s.check_run("o/r", "aaa").await?, None);
        s.set_check_run("o/r", "aaa", 1001).await?;
        s.set_check_run("o/r", "bbb", 1002).await?;
        assert_eq!(s.check_run("o/r", "aaa").await?, Some(1001));
        s.set_check_run("o/r", "aaa", 1003).await?;
        assert_eq!(s.check_run("o/r", "aaa").await?, Some(1003));
        assert_eq!(s.check_run("o/x", "aaa").await?, None);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bounded_queue_drops_superseded_first() {
    on_each_backend("bounded queue", |db| async move {
        let s = db.open().await?;
        // A slow worker's audit of head aaa outlives its lease; the newer head bbb is claimed meanwhile.
        let old = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        assert_eq!(
            s.claim("slow", SHORT_LEASE, NO_CAP).await?.map(|j| j.id),
            Some(old)
        );
        let newer = new_id(s.enqueue(audit("d2", 1, "bbb")).await?);
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        assert_eq!(must_claim(&s, "fast").await?.id, newer);
        // The slow worker retries: its superseded audit is queued again.
        assert!(s.retry(old, "slow", "timeout", Utc::now()).await?);
        assert_eq!(s.depth().await?.queued, 1);

        // Within bounds nothing is dropped.
        let first = s.enqueue_bounded(audit("d3", 2, "ccc"), 2).await?;
        assert!(matches!(first.enqueued, Enqueued::New(_)));
        assert_eq!((first.dropped, first.over_capacity), (0, false));
        // Over the bound: the superseded audit goes first, the new job is stored.
        let second = s.enqueue_bounded(audit("d4", 3, "ddd"), 2).await?;
        let kept = new_id(second.enqueued);
        assert_eq!(
            (second.dropped, second.over_capacity),
            (1, false),
            "{}",
            db.backend
        );
        assert_eq!(must_job(&s, old).await?.state, JobState::Dropped);
        assert_eq!(must_job(&s, kept).await?.state, JobState::Queued);
        // Still over with nothing superseded: stored anyway, reported over capacity, nothing dropped.
        let third = s.enqueue_bounded(audit("d5", 4, "eee"), 2).await?;
        new_id(third.enqueued);
        assert_eq!((third.dropped, third.over_capacity), (0, true));
        assert_eq!(s.depth().await?.queued, 3);
        // A redelivery stays a duplicate.
        let again = s.enqueue_bounded(audit("d5", 4, "eee"), 2).await?;
        assert_eq!(again.enqueued, Enqueued::Duplicate);
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_forgets_old_work() {
    on_each_backend("prune", |db| async move {
        let s = db.open().await?;
        let id = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        let queued = new_id(s.enqueue(audit("d2", 2, "bbb")).await?);
        must_claim(&s, "w").await?;
        assert!(s.complete(id, "w").await?);
        s.set_check_run("o/r", "aaa", 7).await?;
        s.record_comments("o/r", 1, &[("fp".to_string(), 1)])
            .await?;
        assert_eq!(s.prune(DEFAULT_RETENTION).await?, Pruned::default());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pruned = s.prune(Duration::ZERO).await?;
        assert_eq!(
            (pruned.jobs, pruned.deliveries, pruned.check_runs),
            (1, 2, 1)
        );
        assert!(s.job(id).await?.is_none());
        assert_eq!(must_job(&s, queued).await?.state, JobState::Queued);
        assert_eq!(s.posted_comments("o/r", 1).await?.len(), 1);
        // A forgotten delivery id is accepted again.
        assert!(matches!(
            s.enqueue(audit("d1", 1, "aaa")).await?,
            Enqueued::New(_)
        ));
        s.ping().await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_replicas_migrate_at_once() {
    let pg = match PgTestDatabase::create().await {
        Ok(pg) => pg,
        Err(reason) => {
            eprintln!("skipping PostgreSQL queue tests: {reason}");
            return;
        }
    };
    // Eight replicas start on the empty database at once: one migrates, the others wait for the advisory
    // lock, find the schema current, and all of them serve.
    let mut replicas = JoinSet::new();
    for _ in 0..8 {
        let db = TestDb {
            backend: "postgres",
            url: pg.url.clone(),
        };
        replicas.spawn(async move {
            let s = db.open().await?;
            s.ping().await?;
            s.close().await;
            Ok::<_, QueueError>(())
        });
    }
    let outcomes = replicas.join_all().await;
    pg.drop_database().await;
    for outcome in outcomes {
        if let Err(e) = outcome {
            panic!("a replica could not start: {e}");
        }
    }
}

#[tokio::test]
async fn sqlite_url_forms() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let path = dir.path().join("nested.db");
    let url = format!("sqlite://{}?mode=rwc&synchronous=normal", path.display());
    for target in [url.as_str(), "sqlite::memory:"] {
        let s = match open(target).await {
            Ok(s) => s,
            Err(e) => panic!("{target}: {e}"),
        };
        assert_eq!(s.backend(), "sqlite");
        let enqueued = s.enqueue(audit("d1", 1, "aaa")).await;
        assert!(
            matches!(enqueued, Ok(Enqueued::New(_))),
            "{target}: {enqueued:?}"
        );
        assert!(
            matches!(s.claim("w", LEASE, 1).await, Ok(Some(_))),
            "{target}"
        );
        s.close().await;
        assert!(s.ping().await.is_err());
    }
    assert!(path.exists());
    let bad = format!("sqlite://{}?synchronous=sometimes", path.display());
    assert!(matches!(open(&bad).await, Err(QueueError::Connect { .. })));
    match open("mysql://root:hunter2@db/x").await {
        Err(QueueError::UnsupportedUrl { url }) => assert_eq!(url, "mysql://root:***@db/x"),
        other => panic!("expected UnsupportedUrl, got {other:?}"),
    }
}

#[test]
fn backoff_is_bounded_and_jittered() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(5);
    for attempt in 0..=40u32 {
        let ceiling = base
            .checked_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .unwrap_or(max)
            .min(max);
        for _ in 0..200 {
            assert!(backoff(attempt, base, max) <= ceiling, "attempt {attempt}");
        }
    }
    assert!(backoff(u32::MAX, base, max) <= max);
    assert_eq!(backoff(3, Duration::ZERO, max), Duration::ZERO);
    // Full jitter: spread over [0, ceiling], mean near half of it.
    let samples: Vec<Duration> = (0..2000).map(|_| backoff(4, base, max)).collect();
    let distinct: HashSet<Duration> = samples.iter().copied().collect();
    assert!(distinct.len() > 1000, "{} distinct delays", distinct.len());
    let mean = samples.iter().sum::<Duration>() / 2000;
    assert!(
        mean > Duration::from_millis(320) && mean < Duration::from_millis(480),
        "mean {mean:?} for a ceiling of 800ms"
    );
    assert!(samples.iter().any(|d| *d < Duration::from_millis(200)));
    assert!(samples.iter().any(|d| *d > Duration::from_millis(600)));
}

#[test]
fn urls_are_redacted() {
    assert_eq!(
        redact_url("postgres://u:secret@h:5432/db?sslmode=require"),
        "postgres://u:***@h:5432/db?sslmode=require"
    );
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    // Query-string credentials are hidden too (queue errors quote the database URL).
    let shown = redact_url("postgres://u@h/db?password=hunter2&sslpassword=s3cret&sslmode=require");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert!(shown.contains("sslmode=require"), "{shown}");
    assert_eq!(
        redact_url("/var/lib/prodaudit/queue.db"),
        "/var/lib/prodaudit/queue.db"
    );
}

/// Throughput of the intake path and of claims over a deep queue (run with
/// `cargo test --release --lib queue::tests::throughput -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn throughput() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let relaxed = TestDb {
        backend: "sqlite (synchronous=normal)",
        url: format!(
            "sqlite://{}?mode=rwc&synchronous=normal",
            dir.path().join("relaxed.db").display()
        ),
    };
    if let Err(e) = bench(relaxed).await {
        panic!("throughput: {e}");
    }
    on_each_backend("throughput", bench).await;
}

async fn bench(db: TestDb) -> TestResult {
    const JOBS: usize = 20_000;
    const CLIENTS: usize = 64;
    let s = db.open().await?;
    let started = std::time::Instant::now();
    let mut clients = JoinSet::new();
    for c in 0..CLIENTS {
        let s = Arc::clone(&s);
        clients.spawn(async move {
            let mut latencies = Vec::new();
            for i in (c..JOBS).step_by(CLIENTS) {
                let pr = i64::try_from(i % 5000).unwrap_or(0);
                let inst = i64::try_from(i % 50).unwrap_or(0);
                let head = format!("h{i}");
                let job = new_job(
                    &format!("d{i}"),
                    inst,
                    "o/r",
                    Some(pr),
                    Some(&head),
                    json!({"kind": "audit"}),
                );
                let t = std::time::Instant::now();
                s.enqueue_bounded(job, DEFAULT_MAX_DEPTH).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, QueueError>(latencies)
        });
    }
    let mut latencies = Vec::new();
    for outcome in clients.join_all().await {
        latencies.extend(outcome?);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: usize| {
        latencies
            .get(latencies.len() * p / 100)
            .copied()
            .unwrap_or_default()
    };
    eprintln!(
        "{}: {JOBS} enqueues from {CLIENTS} tasks in {elapsed:?} = {:.0}/s, p50 {:?}, p99 {:?}, depth {:?}",
        db.backend,
        JOBS as f64 / elapsed.as_secs_f64(),
        pct(50),
        pct(99),
        s.depth().await?
    );
    let started = std::time::Instant::now();
    for _ in 0..200 {
        if let Some(job) = s.claim("bench", LEASE, 4).await? {
            s.complete(job.id, "bench").await?;
        }
    }
    eprintln!(
        "{}: 200 claim+complete over a deep queue in {:?}",
        db.backend,
        started.elapsed()
    );
    Ok(())
}

#[test]
fn depth_gauge_counts_only_when_needed() {
    let gauge = DepthGauge::default();
    assert_eq!(gauge.check(1, 10), BoundCheck::Count, "never counted");
    gauge.counted(5, false);
    let under = BoundCheck::Skip {
        over_capacity: false,
    };
    assert_eq!(gauge.check(1, 10), under);
    assert_eq!(gauge.check(5, 10), BoundCheck::Count, "estimate 11 > 10");
    gauge.counted(11, true);
    let over = BoundCheck::Skip {
        over_capacity: true,
    };
    assert_eq!(gauge.check(1, 10), over, "over capacity, counted just now");
    std::thread::sleep(GAUGE_OVER_CAPACITY_RECHECK);
    assert_eq!(gauge.check(0, 10), BoundCheck::Count);
    gauge.counted(3, false);
    gauge.add(20);
    assert_eq!(
        gauge.check(0, 10),
        BoundCheck::Count,
        "unbounded enqueues count too"
    );
}

/// One installation's burst of 50 audits cannot starve another installation's single job: it is claimed
/// within the first two claims whether it arrives before the burst is served or in the middle of it, and
/// later jobs of the quiet installation are served within one round too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_does_not_starve_another_installation() {
    on_each_backend("burst fairness", |db| async move {
        let s = db.open().await?;
        for i in 0..50 {
            let job = new_job(
                &format!("burst{i}"),
                100,
                "big/repo",
                Some(i),
                Some("h"),
                json!({}),
            );
            new_id(s.enqueue(job).await?);
        }
        // The burst is being served when the quiet installation's job arrives.
        for _ in 0..5 {
            let job = must_claim(&s, "w").await?;
            assert_eq!(job.installation_id, 100);
            assert!(s.complete(job.id, "w").await?);
        }
        let quiet = new_id(
            s.enqueue(new_job(
                "quiet0",
                200,
                "small/repo",
                Some(1),
                Some("h"),
                json!({}),
            ))
            .await?,
        );
        let mut order = Vec::new();
        for _ in 0..2 {
            let job = must_claim(&s, "w").await?;
            order.push(job.id);
            assert!(s.complete(job.id, "w").await?);
        }
        assert!(
            order.contains(&quiet),
            "{}: the quiet installation's job waited behind the burst: {order:?}",
            db.backend
        );
        // Once served, the quiet installation is behind the burst in the rotation, but only by one claim.
        for round in 0..3 {
            let next = new_id(
                s.enqueue(new_job(
                    &format!("quiet{}", round + 1),
                    200,
                    "small/repo",
                    Some(10 + round),
                    Some("h"),
                    json!({}),
                ))
                .await?,
            );
            let first = must_claim(&s, "w").await?;
            let second = if first.id == next {
                first.clone()
            } else {
                must_claim(&s, "w").await?
            };
            assert_eq!(second.id, next, "{}: round {round}", db.backend);
            assert!(s.complete(first.id, "w").await?);
            if second.id != first.id {
                assert!(s.complete(second.id, "w").await?);
            }
        }
        Ok(())
    })
    .await;
}

/// The per-installation cap holds under concurrent claimers on separate connections pools (as separate
/// replicas would have): with a burst of one installation and a cap of 3, never more than 3 of its jobs run
/// at once, while another installation's jobs still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_installation_cap_holds_across_claimers() {
    on_each_backend("cap across claimers", |db| async move {
        const CAP: usize = 3;
        let s = db.open().await?;
        for i in 0..40 {
            let job = new_job(
                &format!("b{i}"),
                7,
                "big/repo",
                Some(i),
                Some("h"),
                json!({}),
            );
            new_id(s.enqueue(job).await?);
        }
        for i in 0..4 {
            let job = new_job(
                &format!("q{i}"),
                8,
                "small/repo",
                Some(i),
                Some("h"),
                json!({}),
            );
            new_id(s.enqueue(job).await?);
        }
        // Two "replicas" (two stores on one database) with four claimers each.
        let stores = [Arc::clone(&s), db.open().await?];
        let running: Arc<Mutex<std::collections::HashMap<i64, usize>>> = Arc::default();
        let peak: Arc<Mutex<std::collections::HashMap<i64, usize>>> = Arc::default();
        let mut workers = JoinSet::new();
        for w in 0..8 {
            let store = Arc::clone(&stores[w % 2]);
            let (running, peak) = (Arc::clone(&running), Arc::clone(&peak));
            workers.spawn(async move {
                let worker = format!("w{w}");
                let mut idle = 0;
                while idle < 50 {
                    let Some(job) = store.claim(&worker, LEASE, CAP).await? else {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    idle = 0;
                    let inst = job.installation_id;
                    if let (Ok(mut running), Ok(mut peak)) = (running.lock(), peak.lock()) {
                        let n = running.entry(inst).or_default();
                        *n += 1;
                        let p = peak.entry(inst).or_default();
                        *p = (*p).max(*n);
                    }
                    // Hold the job long enough for claims to overlap (a PostgreSQL claim takes a few ms).
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    if let Ok(mut running) = running.lock() {
                        *running.entry(inst).or_default() -= 1;
                    }
                    assert!(store.complete(job.id, &worker).await?);
                }
                Ok::<_, QueueError>(())
            });
        }
        let Ok(outcomes) = tokio::time::timeout(Duration::from_secs(120), workers.join_all()).await
        else {
            panic!("{}: claimers did not finish within 120 s", db.backend);
        };
        for outcome in outcomes {
            outcome?;
        }
        let depth = s.depth().await?;
        assert_eq!((depth.queued, depth.running), (0, 0), "{}", db.backend);
        let peak = match peak.lock() {
            Ok(p) => p.clone(),
            Err(_) => panic!("a claimer panicked"),
        };
        assert!(
            peak.get(&7).is_some_and(|p| *p <= CAP),
            "{}: cap exceeded: {peak:?}",
            db.backend
        );
        assert!(
            peak.get(&7).is_some_and(|p| *p >= 2),
            "{}: the burst never ran concurrently, the test proves nothing: {peak:?}",
            db.backend
        );
        assert!(peak.contains_key(&8), "{}", db.backend);
        Ok(())
    })
    .await;
}

/// Past `INLINE_BOUND_MAX_QUEUED` queued jobs, SQLite looks for superseded audits on a read connection
/// beside the writer instead of scanning the queue inside the commit every webhook waits for; what it finds
/// is dropped (re-checked) in a later group commit and reported there. The superseded audit still goes,
/// nothing else does.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_deep_queue_drops_superseded_beside_the_writer() {
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => panic!("cannot create a temporary directory: {e}"),
    };
    let path = dir.path().join("queue.db").display().to_string();
    let outcome = async {
        let store = Arc::new(SqliteStore::open(&path, &QueueOptions::default()).await?);
        let s: Arc<dyn JobStore> = store.clone();
        // A superseded audit, queued again: as in bounded_queue_drops_superseded_first.
        let old = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        assert_eq!(
            s.claim("slow", SHORT_LEASE, NO_CAP).await?.map(|j| j.id),
            Some(old)
        );
        let newer = new_id(s.enqueue(audit("d2", 1, "bbb")).await?);
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        assert_eq!(must_claim(&s, "fast").await?.id, newer);
        assert!(s.retry(old, "slow", "timeout", Utc::now()).await?);

        // A deep queue of audits of other pull requests (none superseded).
        let deep = INLINE_BOUND_MAX_QUEUED + 100;
        let mut tasks = JoinSet::new();
        for i in 0..deep {
            let s = Arc::clone(&s);
            tasks.spawn(async move {
                let pr = i64::try_from(i).unwrap_or(0) + 1000;
                s.enqueue(audit(&format!("deep{i}"), pr, "ccc")).await
            });
        }
        for enqueued in tasks.join_all().await {
            new_id(enqueued?);
        }

        // Over the bound: the first bounded enqueue starts the search and does not wait for it.
        let max_depth = 10;
        let first = s.enqueue_bounded(audit("b0", 10, "ddd"), max_depth).await?;
        new_id(first.enqueued);
        assert_eq!((first.dropped, first.over_capacity), (0, true));
        assert_eq!(must_job(&s, old).await?.state, JobState::Queued);
        assert_eq!(store.bound_stats().searches.load(Ordering::Relaxed), 1);

        // A later bounded enqueue drops what the search found and reports it.
        let mut dropped = 0;
        let mut bounded = 1;
        while dropped == 0 && bounded < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let next = s
                .enqueue_bounded(
                    audit(&format!("b{bounded}"), 10 + bounded, "ddd"),
                    max_depth,
                )
                .await?;
            new_id(next.enqueued);
            assert!(next.over_capacity);
            dropped += next.dropped;
            bounded += 1;
        }
        assert_eq!(dropped, 1, "the superseded audit is dropped, and only it");
        assert_eq!(must_job(&s, old).await?.state, JobState::Dropped);
        assert_eq!(must_job(&s, newer).await?.state, JobState::Running);
        assert_eq!(store.bound_stats().dropped.load(Ordering::Relaxed), 1);
        let expected = deep + u64::try_from(bounded).unwrap_or(0);
        assert_eq!(s.depth().await?.queued, expected);
        s.close().await;
        Ok::<_, QueueError>(())
    }
    .await;
    if let Err(e) = outcome {
        panic!("deep queue on SQLite: {e}");
    }
}

/// A job whose claims used up its attempts without an outcome (the worker died or was killed each time) is
/// given up by the next claim instead of being run again, and the claim goes on to other work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claim_after_exhausted_attempts_gives_the_job_up() {
    on_each_backend("exhausted attempts", |db| async move {
        let s = db.open().await?;
        let poison = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        let other = new_id(s.enqueue(audit("d2", 2, "bbb")).await?);
        // Attempt 1 records an error and is retried at once.
        let first = s.claim_within("w1", LEASE, NO_CAP, 2).await?;
        assert!(
            matches!(&first, Some(Claimed::Run(j)) if j.id == poison && j.attempts == 1),
            "{}: {first:?}",
            db.backend
        );
        assert!(
            s.retry(poison, "w1", "GitHub answered 502", Utc::now())
                .await?
        );
        // Attempt 2 takes the worker down: no outcome, only an expiring lease.
        let second = s.claim_within("w1", SHORT_LEASE, NO_CAP, 2).await?;
        assert!(
            matches!(&second, Some(Claimed::Run(j)) if j.id == poison && j.attempts == 2),
            "{}: {second:?}",
            db.backend
        );
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        // The restarted worker's claim gives it up: dead, not run a third time.
        let third = s.claim_within("w2", LEASE, NO_CAP, 2).await?;
        let Some(Claimed::Exhausted(dead)) = third else {
            panic!("{}: expected the exhausted job, got {third:?}", db.backend);
        };
        assert_eq!((dead.id, dead.attempts), (poison, 2), "{}", db.backend);
        assert_eq!(dead.state, JobState::Dead);
        let reason = dead.last_error.clone().unwrap_or_default();
        assert!(
            reason.contains("stopped the worker") && reason.contains("GitHub answered 502"),
            "{}: {reason}",
            db.backend
        );
        let stored = must_job(&s, poison).await?;
        assert_eq!(
            (stored.state, stored.attempts, stored.lease_expires_at),
            (JobState::Dead, 2, None),
            "{}",
            db.backend
        );
        assert_eq!(stored.last_error.as_deref(), Some(reason.as_str()));
        assert_eq!(s.depth().await?.dead, 1);
        // The next claim runs the other job; the dead one is never claimed again.
        let next = s.claim_within("w2", LEASE, NO_CAP, 2).await?;
        assert!(
            matches!(&next, Some(Claimed::Run(j)) if j.id == other && j.attempts == 1),
            "{}: {next:?}",
            db.backend
        );
        assert!(s.claim_within("w3", LEASE, NO_CAP, 2).await?.is_none());
        Ok(())
    })
    .await;
}

/// A full disk (SQLite's page limit on the writer, as SQLITE_FULL from a commit) fails the writes that hit
/// it, and the writes after space comes back succeed: webhooks and claims are not wedged by one failed
/// commit. The writer reports that it cannot write meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_recovers_after_a_full_disk() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = dir.path().join("full.db").display().to_string();
    let store = match SqliteStore::open(&url, &QueueOptions::default()).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let s: &dyn JobStore = &store;
    let result: TestResult = async {
        new_id(s.enqueue(audit("d0", 1, "aaa")).await?);
        let pages = store.page_count().await?;
        store.set_max_page_count(pages).await?;
        // Payloads of 64 KiB need new pages: the disk is full.
        let big = |d: &str, pr: i64| {
            new_job(
                d,
                1,
                "o/r",
                Some(pr),
                Some("bbb"),
                json!({"kind": "audit", "pad": "x".repeat(64 * 1024)}),
            )
        };
        let mut failed = 0;
        for i in 0..4 {
            if s.enqueue(big(&format!("full-{i}"), 10 + i)).await.is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 4, "the page limit did not fill the database");
        assert!(
            s.writable().await.is_err(),
            "a full writer says it cannot write"
        );
        // Space comes back.
        store.set_max_page_count(1_000_000).await?;
        let id = new_id(s.enqueue(big("after", 99)).await?);
        assert!(s.job(id).await?.is_some());
        let claimed = s.claim("w", LEASE, NO_CAP).await?;
        assert!(claimed.is_some(), "claims work again");
        tokio::time::sleep(Duration::from_millis(1100)).await; // past the probe's cached answer
        s.writable().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Past `INLINE_BOUND_MAX_QUEUED` queued jobs, both backends bound the queue beside intake (PostgreSQL in a
/// background task): the webhook that finds the queue over its depth is stored and answered without the
/// drop, and the superseded audit, and only it, is dropped and reported once by a later bounded enqueue.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deep_queue_is_bounded_beside_intake() {
    on_each_backend("deep queue", |db| async move {
        let s = db.open().await?;
        let old = new_id(s.enqueue(audit("d1", 1, "aaa")).await?);
        assert_eq!(
            s.claim("slow", SHORT_LEASE, NO_CAP).await?.map(|j| j.id),
            Some(old)
        );
        let newer = new_id(s.enqueue(audit("d2", 1, "bbb")).await?);
        tokio::time::sleep(PAST_SHORT_LEASE).await;
        assert_eq!(must_claim(&s, "fast").await?.id, newer);
        assert!(s.retry(old, "slow", "timeout", Utc::now()).await?);
        let deep = INLINE_BOUND_MAX_QUEUED + 100;
        let mut tasks = JoinSet::new();
        for i in 0..deep {
            let s = Arc::clone(&s);
            tasks.spawn(async move {
                let pr = i64::try_from(i).unwrap_or(0) + 1000;
                s.enqueue(audit(&format!("deep{i}"), pr, "ccc")).await
            });
        }
        for enqueued in tasks.join_all().await {
            new_id(enqueued?);
        }
        let max_depth = 10;
        let mut dropped = 0;
        let mut bounded = 0;
        while bounded < 200 && (dropped == 0 || bounded < 5) {
            let next = s
                .enqueue_bounded(
                    audit(&format!("b{bounded}"), 10 + bounded, "ddd"),
                    max_depth,
                )
                .await?;
            new_id(next.enqueued);
            assert!(next.over_capacity, "{}", db.backend);
            dropped += next.dropped;
            bounded += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dropped, 1, "{}: the superseded audit, once", db.backend);
        assert_eq!(must_job(&s, old).await?.state, JobState::Dropped);
        assert_eq!(must_job(&s, newer).await?.state, JobState::Running);
        let expected = deep + u64::try_from(bounded).unwrap_or(0);
        assert_eq!(s.depth().await?.queued, expected, "{}", db.backend);
        Ok(())
    })
    .await;
}
