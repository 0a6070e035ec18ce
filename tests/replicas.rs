//! Several `prodaudit serve` replicas (the real binary) sharing one PostgreSQL database, against the in-process
//! fake GitHub: each head is audited once in effect, a replica killed mid-audit has its job finished by another
//! after the lease expires, and a SIGTERM'd replica drains (finishes or releases its job) and exits 0.
//!
//! Needs PostgreSQL at `PROD_AUDIT_TEST_PG` (default `postgres://postgres@127.0.0.1:5432/test`); every test
//! creates its own database and drops it afterwards, and skips with a printed reason when no server answers.

mod fake_github;

use fake_github::{Fault, World};
use prodaudit::server::signature::sign;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "replica-secret";
const APP_ID: u64 = 4242;
const REPO: &str = "acme/api";
const INSTALLATION: i64 = 99;

const BASE_PY: &str = "import asyncio\nimport time\n\n\nasync def a():\n    return 1\n";
const HEAD_PY: &str =
    "import asyncio\nimport time\n\n\nasync def a():\n    time.sleep(1)\n    return 1\n";

fn world() -> World {
    let mut trees = std::collections::HashMap::new();
    trees.insert(
        "base1".to_string(),
        BTreeMap::from([("app/svc.py".to_string(), BASE_PY.to_string())]),
    );
    trees.insert(
        "4ead100000000000000000000000000000000000".to_string(),
        BTreeMap::from([("app/svc.py".to_string(), HEAD_PY.to_string())]),
    );
    World {
        repo: REPO.into(),
        base_sha: "base1".into(),
        head_sha: "4ead100000000000000000000000000000000000".into(),
        pr_number: 7,
        trees,
        ..Default::default()
    }
}

/// A fresh database on the test server, dropped by [`PgDb::drop_database`].
struct PgDb {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> Result<PgDb, String> {
        let admin_url = std::env::var("PROD_AUDIT_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let mut conn = connect(&admin_url).await?;
        let name = format!("pa_replicas_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        let _ = conn.close().await;
        let Some((server, _db)) = admin_url.rsplit_once('/') else {
            return Err(format!("{admin_url} is not a database URL"));
        };
        let url = format!("{server}/{name}");
        Ok(PgDb {
            admin_url,
            name,
            url,
        })
    }

    async fn drop_database(&self) {
        match connect(&self.admin_url).await {
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

async fn connect(url: &str) -> Result<PgConnection, String> {
    match tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(url)).await {
        Err(_) => Err(format!("PostgreSQL at {url} did not answer within 3 s")),
        Ok(Err(e)) => Err(format!("cannot connect to PostgreSQL at {url}: {e}")),
        Ok(Ok(conn)) => Ok(conn),
    }
}

/// The database, or `None` (and a printed reason) when PostgreSQL is unreachable.
async fn database(test: &str) -> Option<PgDb> {
    match PgDb::create().await {
        Ok(db) => Some(db),
        Err(reason) => {
            eprintln!("skipping {test}: {reason}");
            None
        }
    }
}

fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// One `prodaudit serve` process.
struct Replica {
    child: Child,
    url: String,
}

impl Replica {
    fn start(api: &str, database_url: &str, env: &[(&str, &str)]) -> Replica {
        let port = free_port();
        let key = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/test-app-key.pem"
        );
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_prodaudit"));
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_ID", APP_ID.to_string())
            .env("PRIVATE_KEY_PATH", key)
            .env("WEBHOOK_SECRET", SECRET)
            .env("GITHUB_API_URL", api)
            .env("DATABASE_URL", database_url)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("GITHUB_TIMEOUT_SECS", "30")
            .env("WORKER_CONCURRENCY", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start prodaudit serve: {e}"),
        };
        let replica = Replica {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        replica.wait_ready();
        replica
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok((200, _)) = http_request("GET", &format!("{}/readyz", self.url), &[], b"") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prodaudit serve did not become ready");
    }

    fn deliver(&self, delivery: &str, payload: &Value) -> u16 {
        let body = payload.to_string().into_bytes();
        let headers = vec![
            ("X-GitHub-Event", "pull_request".to_string()),
            ("X-GitHub-Delivery", delivery.to_string()),
            ("X-Hub-Signature-256", sign(SECRET.as_bytes(), &body)),
            ("Content-Type", "application/json".to_string()),
        ];
        let url = format!("{}/api/github/webhooks", self.url);
        match http_request("POST", &url, &headers, &body) {
            Ok((status, _)) => status,
            Err(e) => panic!("cannot deliver {delivery}: {e}"),
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!("kill {signal} {} failed: {other:?}", self.pid()),
        }
    }

    /// Waits for the process to exit, up to `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("cannot wait for the replica: {e}"),
            }
        }
        None
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tiny blocking HTTP/1.1 client over std: (status, body).
fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

fn pr_payload(action: &str, head: &str) -> Value {
    json!({
        "action": action,
        "installation": {"id": INSTALLATION},
        "repository": {"full_name": REPO},
        "pull_request": {"number": 7, "state": "open", "draft": false, "head": {"sha": head}, "base": {"sha": "base1", "ref": "main"}},
    })
}

/// A job row as the test sees it.
#[derive(Debug, Clone)]
struct JobRow {
    id: i64,
    state: String,
    lease_owner: Option<String>,
    attempts: i32,
}

async fn jobs(pool: &PgPool) -> Vec<JobRow> {
    let rows = sqlx::query("SELECT id, state, lease_owner, attempts FROM jobs ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("cannot read jobs: {e}"));
    rows.iter()
        .map(|r| JobRow {
            id: r.get("id"),
            state: r.get("state"),
            lease_owner: r.get("lease_owner"),
            attempts: r.get("attempts"),
        })
        .collect()
}

/// Polls the jobs until `done` says so, up to `limit`.
async fn wait_jobs(
    pool: &PgPool,
    limit: Duration,
    what: &str,
    done: impl Fn(&[JobRow]) -> bool,
) -> Vec<JobRow> {
    let deadline = Instant::now() + limit;
    loop {
        let rows = jobs(pool).await;
        if done(&rows) {
            return rows;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; jobs: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The running job (one expected) and the replica owning its lease.
async fn running_job(pool: &PgPool) -> JobRow {
    let rows = wait_jobs(pool, Duration::from_secs(30), "a running job", |rows| {
        rows.iter()
            .any(|j| j.state == "running" && j.lease_owner.is_some())
    })
    .await;
    rows.into_iter()
        .find(|j| j.state == "running")
        .unwrap_or_else(|| panic!("no running job"))
}

fn owner_pid(job: &JobRow) -> u32 {
    job.lease_owner
        .as_deref()
        .and_then(|o| o.rsplit('-').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("lease owner {:?} has no pid", job.lease_owner))
}

/// Reviews posted for `head`, once every job is finished and nothing more is posted.
async fn settled_reviews(w: &fake_github::Shared, pool: &PgPool, head: &str) -> usize {
    wait_jobs(
        pool,
        Duration::from_secs(60),
        "every job to finish",
        |rows| {
            !rows.is_empty()
                && rows
                    .iter()
                    .all(|j| j.state != "queued" && j.state != "running")
        },
    )
    .await;
    // A late writer (a replica that lost its lease) would post within its request time; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let world = fake_github::lock_pub(w);
    world
        .reviews
        .iter()
        .filter(|r| r["commit_id"] == head)
        .count()
}

fn completed_checks(w: &fake_github::Shared, head: &str) -> usize {
    let world = fake_github::lock_pub(w);
    world
        .check_runs
        .values()
        .filter(|r| r["head_sha"] == head && r["status"] == "completed")
        .count()
}

fn slow_files(delay_ms: u64) -> Fault {
    Fault::new("GET", "/pulls/7/files", 0).delay(delay_ms)
}

async fn pool(db: &PgDb) -> PgPool {
    PgPool::connect(&db.url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", db.url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_audit_each_head_once() {
    let Some(db) = database("two_replicas_audit_each_head_once").await else {
        return;
    };
    let (api, w) = fake_github::start(world()).await;
    // Both start on an empty database at once: migrations take turns under the advisory lock.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Replica::start(&api, &db.url, &[]));
        let b = s.spawn(|| Replica::start(&api, &db.url, &[]));
        match (a.join(), b.join()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => panic!("a replica did not start"),
        }
    });
    let replicas = [&a, &b];
    // Ten deliveries of the same head, alternating replicas, each redelivered to the other replica.
    for i in 0..10 {
        let payload = pr_payload(
            if i == 0 { "opened" } else { "synchronize" },
            "4ead100000000000000000000000000000000000",
        );
        let delivery = format!("d-{i}");
        assert_eq!(replicas[i % 2].deliver(&delivery, &payload), 202);
        assert_eq!(replicas[(i + 1) % 2].deliver(&delivery, &payload), 202);
    }
    let pool = pool(&db).await;
    let delivered: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(&pool)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(delivered, 10, "redeliveries are stored once");
    let reviews = settled_reviews(&w, &pool, "4ead100000000000000000000000000000000000").await;
    assert_eq!(reviews, 1, "one review for the head across both replicas");
    assert_eq!(
        completed_checks(&w, "4ead100000000000000000000000000000000000"),
        1
    );
    let rows = jobs(&pool).await;
    assert!(
        rows.iter().all(|j| j.state == "done"),
        "every job done: {rows:?}"
    );
    pool.close().await;
    drop((a, b));
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_audit_is_taken_over() {
    let Some(db) = database("a_replica_killed_mid_audit_is_taken_over").await else {
        return;
    };
    let (api, w) = fake_github::start(world()).await;
    // The first request for the pull request's files hangs, so the audit is in flight when its replica dies.
    fake_github::lock_pub(&w)
        .faults
        .push_back(slow_files(60_000));
    let lease = [("JOB_LEASE_SECS", "2")];
    let a = Replica::start(&api, &db.url, &lease);
    let b = Replica::start(&api, &db.url, &lease);
    assert_eq!(
        a.deliver(
            "k-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let pool = pool(&db).await;
    let running = running_job(&pool).await;
    // Wait until the audit is inside the slow request.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fake_github::lock_pub(&w)
        .requests
        .iter()
        .any(|r| r.path.ends_with("/pulls/7/files"))
    {
        assert!(
            Instant::now() < deadline,
            "the audit never asked for the files"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let victim_pid = owner_pid(&running);
    let (mut victim, survivor) = if victim_pid == a.pid() {
        (a, b)
    } else {
        assert_eq!(
            victim_pid,
            b.pid(),
            "the lease owner is one of the replicas"
        );
        (b, a)
    };
    victim.signal("-KILL");
    assert!(
        victim.wait_exit(Duration::from_secs(10)).await.is_some(),
        "SIGKILL ends the replica"
    );
    let reviews = settled_reviews(&w, &pool, "4ead100000000000000000000000000000000000").await;
    assert_eq!(reviews, 1, "the survivor finished the audit once");
    assert_eq!(
        completed_checks(&w, "4ead100000000000000000000000000000000000"),
        1
    );
    let rows = jobs(&pool).await;
    let job = rows
        .iter()
        .find(|j| j.id == running.id)
        .unwrap_or_else(|| panic!("job {} vanished", running.id));
    assert_eq!(job.state, "done");
    assert_eq!(job.attempts, 2, "claimed again after the lease expired");
    assert!(
        job.lease_owner
            .as_deref()
            .is_some_and(|o| o.ends_with(&format!("-{}", survivor.pid()))),
        "the survivor owns the finished job: {job:?}"
    );
    pool.close().await;
    drop(survivor);
    db.drop_database().await;
}

/// SIGTERM while an audit runs: within the grace the audit finishes on the same replica, which exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigtermed_replica_finishes_its_audit_and_exits_0() {
    let Some(db) = database("a_sigtermed_replica_finishes_its_audit_and_exits_0").await else {
        return;
    };
    let (api, w) = fake_github::start(world()).await;
    fake_github::lock_pub(&w)
        .faults
        .push_back(slow_files(2_000));
    let env = [("SHUTDOWN_GRACE_SECS", "30")];
    let a = Replica::start(&api, &db.url, &env);
    let b = Replica::start(&api, &db.url, &env);
    assert_eq!(
        a.deliver(
            "t-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let pool = pool(&db).await;
    let running = running_job(&pool).await;
    let owner = owner_pid(&running);
    let (mut draining, other) = if owner == a.pid() { (a, b) } else { (b, a) };
    draining.signal("-TERM");
    let status = draining.wait_exit(Duration::from_secs(40)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "a SIGTERM'd replica exits 0 within its grace: {status:?}"
    );
    let rows = jobs(&pool).await;
    let job = rows
        .iter()
        .find(|j| j.id == running.id)
        .unwrap_or_else(|| panic!("job {} vanished", running.id));
    assert_eq!(job.state, "done", "finished before exiting: {job:?}");
    assert_eq!(job.lease_owner, running.lease_owner);
    assert_eq!(
        settled_reviews(&w, &pool, "4ead100000000000000000000000000000000000").await,
        1
    );
    pool.close().await;
    drop(other);
    db.drop_database().await;
}

/// SIGTERM while an audit runs longer than the grace: the job goes back to the queue (the attempt is not
/// counted), the replica exits 0, and the other replica finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigtermed_replica_past_its_grace_releases_its_job() {
    let Some(db) = database("a_sigtermed_replica_past_its_grace_releases_its_job").await else {
        return;
    };
    let (api, w) = fake_github::start(world()).await;
    fake_github::lock_pub(&w)
        .faults
        .push_back(slow_files(60_000));
    // A long lease: only the release on shutdown lets the other replica take the job soon.
    let env = [("SHUTDOWN_GRACE_SECS", "1"), ("JOB_LEASE_SECS", "300")];
    let a = Replica::start(&api, &db.url, &env);
    let b = Replica::start(&api, &db.url, &env);
    assert_eq!(
        a.deliver(
            "g-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let pool = pool(&db).await;
    let running = running_job(&pool).await;
    let owner = owner_pid(&running);
    let (mut draining, other) = if owner == a.pid() { (a, b) } else { (b, a) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fake_github::lock_pub(&w)
        .requests
        .iter()
        .any(|r| r.path.ends_with("/pulls/7/files"))
    {
        assert!(
            Instant::now() < deadline,
            "the audit never asked for the files"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    draining.signal("-TERM");
    let status = draining.wait_exit(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "a SIGTERM'd replica exits 0 after its grace: {status:?}"
    );
    let reviews = settled_reviews(&w, &pool, "4ead100000000000000000000000000000000000").await;
    assert_eq!(reviews, 1, "the other replica finished the released job");
    let rows = jobs(&pool).await;
    let job = rows
        .iter()
        .find(|j| j.id == running.id)
        .unwrap_or_else(|| panic!("job {} vanished", running.id));
    assert_eq!(job.state, "done");
    assert_eq!(
        job.attempts, 1,
        "a graceful release does not count an attempt"
    );
    assert!(
        job.lease_owner
            .as_deref()
            .is_some_and(|o| o.ends_with(&format!("-{}", other.pid()))),
        "the other replica finished it: {job:?}"
    );
    pool.close().await;
    drop(other);
    db.drop_database().await;
}
