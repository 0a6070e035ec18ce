//! Starting the real `prodaudit serve` binary against the fake, delivering signed webhooks to it, and
//! waiting for what it does.

use super::Shared;
use prodaudit::server::signature::sign;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "e2e-secret-of-the-tests";
pub const APP_ID: u64 = 4242;

pub struct App {
    child: Child,
    pub url: String,
    /// Where the process's stderr (its logs) goes, when captured.
    pub log: Option<PathBuf>,
}

pub fn free_port() -> u16 {
    match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => panic!("no free port: {e}"),
    }
}

/// How to start the App.
#[derive(Default, Clone)]
pub struct Options {
    /// Overrides of the environment (e.g. GITHUB_TIMEOUT_SECS, LOG_FORMAT, DATABASE_URL).
    pub env: Vec<(String, String)>,
    /// Write the process's stderr to this file instead of the test's.
    pub log: Option<PathBuf>,
    /// Do not wait for /readyz.
    pub no_wait: bool,
}

impl App {
    pub fn start(api: &str, db: &Path) -> App {
        App::start_with(api, db, Options::default())
    }

    pub fn start_with(api: &str, db: &Path, opts: Options) -> App {
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
            .env(
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", db.display()),
            )
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("LOG_LEVEL", "warn")
            .env("GITHUB_TIMEOUT_SECS", "5")
            .env("JOB_LEASE_SECS", "3")
            .stdout(Stdio::null());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        match &opts.log {
            Some(path) => match std::fs::File::create(path) {
                Ok(f) => {
                    cmd.stderr(Stdio::from(f));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            },
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => panic!("cannot start prodaudit serve: {e}"),
        };
        let app = App {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log: opts.log.clone(),
        };
        if !opts.no_wait {
            app.wait_ready();
        }
        app
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = get_status(&format!("{}/readyz", self.url))
                && r == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prodaudit serve did not become ready");
    }

    /// Wait until the server answers at all (any status).
    pub fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if get_status(&format!("{}/healthz", self.url)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("prodaudit serve did not start listening");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop with SIGTERM and wait (so the logs are complete).
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// The captured log so far.
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// A counter or gauge from /metrics (the sum over label sets whose text contains `labels`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let (_, text) =
            http_request("GET", &format!("{}/metrics", self.url), &[], b"").unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
            })
            .filter(|l| l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn get_status(url: &str) -> std::io::Result<u16> {
    http_request("GET", url, &[], b"").map(|(s, _)| s)
}

/// A tiny blocking HTTP/1.1 client over std, to keep test dependencies small.
pub fn http_request(
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
    // A server refusing an oversized body may answer and close before reading it all.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if status == 0 {
        return Err(std::io::Error::other("no HTTP answer"));
    }
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// POST raw bytes as a webhook, signed with the test secret.
pub fn deliver_bytes(app: &App, event: &str, delivery: &str, body: &[u8]) -> u16 {
    let headers = vec![
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        ("X-Hub-Signature-256", sign(SECRET.as_bytes(), body)),
        ("Content-Type", "application/json".to_string()),
    ];
    match http_request(
        "POST",
        &format!("{}/api/github/webhooks", app.url),
        &headers,
        body,
    ) {
        Ok((s, _)) => s,
        Err(e) => panic!("cannot deliver: {e}"),
    }
}

pub fn deliver(app: &App, event: &str, delivery: &str, payload: &Value) -> u16 {
    deliver_bytes(app, event, delivery, payload.to_string().as_bytes())
}

/// Wait until the check run of `head` is completed; returns it.
pub async fn completed_check(w: &Shared, head: &str) -> Value {
    completed_check_within(w, head, Duration::from_secs(60)).await
}

pub async fn completed_check_within(w: &Shared, head: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        {
            let world = super::lock_pub(w);
            if let Some(run) = world
                .check_runs
                .values()
                .find(|r| r["head_sha"] == head && r["status"] == "completed")
            {
                return run.clone();
            }
        }
        if Instant::now() > deadline {
            let world = super::lock_pub(w);
            panic!(
                "no completed check run for {head}; requests: {:?}",
                world
                    .requests
                    .iter()
                    .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait until `cond` holds on the world, or panic with `what`.
pub async fn wait_for(w: &Shared, what: &str, cond: impl Fn(&super::World) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if cond(&super::lock_pub(w)) {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Let the App settle (it has nothing in flight any more: no request for `quiet`).
pub async fn settle(w: &Shared, quiet: Duration) {
    let mut last = usize::MAX;
    loop {
        let n = super::lock_pub(w).requests.len();
        if n == last {
            return;
        }
        last = n;
        tokio::time::sleep(quiet).await;
    }
}

pub const REPO: &str = "acme/api";
pub const BASE_PY: &str = "import asyncio\nimport time\n\n\nasync def a():\n    return 1\n\n\nasync def b():\n    return 2\n";
pub const HEAD_PY: &str = "import asyncio\nimport time\n\n\nasync def a():\n    time.sleep(1)\n    return 1\n\n\nasync def b():\n    return 2\n";

/// acme/api#7: one Python file whose head blocks the event loop on line 6.
pub fn sample_world() -> super::World {
    let mut trees = std::collections::HashMap::new();
    trees.insert(
        "base1".to_string(),
        std::collections::BTreeMap::from([("app/svc.py".to_string(), BASE_PY.to_string())]),
    );
    trees.insert(
        "4ead100000000000000000000000000000000000".to_string(),
        std::collections::BTreeMap::from([("app/svc.py".to_string(), HEAD_PY.to_string())]),
    );
    super::World {
        repo: REPO.into(),
        base_sha: "base1".into(),
        head_sha: "4ead100000000000000000000000000000000000".into(),
        pr_number: 7,
        trees,
        permissions: [
            ("writer".to_string(), "write".to_string()),
            ("reader".to_string(), "read".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// A `pull_request` webhook for acme/api#`number` at `head` (base `base1`).
pub fn pr_event(action: &str, number: i64, head: &str) -> Value {
    serde_json::json!({
        "action": action,
        "number": number,
        "installation": {"id": 99},
        "repository": {"full_name": REPO},
        "pull_request": {"number": number, "state": "open", "draft": false,
            "head": {"sha": head}, "base": {"sha": "base1", "ref": "main"}},
    })
}

/// Requests whose path contains `part` (and method is `method`).
pub fn count(w: &Shared, method: &str, part: &str) -> usize {
    super::lock_pub(w)
        .requests
        .iter()
        .filter(|r| r.method == method && r.path.contains(part))
        .count()
}

/// A tree of text files by path, for [`super::World::trees`].
pub fn files(list: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect()
}

/// A `pull_request` `opened` webhook payload (installation 99, not a draft).
pub fn pull_request_opened(repo: &str, number: u64, head: &str, base: &str) -> Value {
    serde_json::json!({
        "action": "opened",
        "installation": {"id": 99},
        "repository": {"full_name": repo},
        "pull_request": {"number": number, "state": "open", "draft": false, "head": {"sha": head}, "base": {"sha": base, "ref": "main"}},
    })
}

/// (path, line, body) of every inline comment the App posted, in order.
pub fn inline_comments(w: &Shared) -> Vec<(String, u64, String)> {
    let world = super::lock_pub(w);
    world
        .reviews
        .iter()
        .flat_map(|r| r["comments"].as_array().cloned().unwrap_or_default())
        .map(|c| {
            (
                c["path"].as_str().unwrap_or("").to_string(),
                c["line"].as_u64().unwrap_or(0),
                c["body"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}
