//! Issue 15, the GitHub side and the HTTP server: what an attack on `prodaudit serve` found, each against the
//! real binary and the fake GitHub. The hostile inputs are built here.

mod fake_github;

use fake_github::harness::{
    App, Options, REPO, SECRET, completed_check, count, deliver, deliver_bytes, http_request,
    pr_event, sample_world, settle, wait_for,
};
use fake_github::{Fault, assert_no_violations, lock_pub};
use prodaudit::server::signature::sign;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const HEAD: &str = "4ead100000000000000000000000000000000000";

fn opts(env: &[(&str, &str)]) -> Options {
    Options {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn metrics_text(app: &App) -> String {
    match http_request("GET", &format!("{}/metrics", app.url), &[], b"") {
        Ok((200, body)) => body,
        other => panic!("/metrics: {other:?}"),
    }
}

/// Item 5: 3,000 deliveries with bad signatures and distinct event names, and 300 signed ones with unknown
/// event names: /metrics keeps a handful of series and stays small, and never shows a name a request made
/// up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signature_flood_does_not_grow_metrics() {
    let (api, _w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let before = metrics_text(&app);
    let url = format!("{}/api/github/webhooks", app.url);
    for i in 0..3000 {
        let headers = vec![
            (
                "X-GitHub-Event",
                format!("made_up_event_{i}_{}", "x".repeat(40)),
            ),
            ("X-GitHub-Delivery", format!("bad-{i}")),
            ("X-Hub-Signature-256", format!("sha256={}", "0".repeat(64))),
            ("Content-Type", "application/json".to_string()),
        ];
        let status = http_request("POST", &url, &headers, b"{}").map(|(s, _)| s);
        assert_eq!(status.ok(), Some(401), "delivery {i}");
    }
    for i in 0..300 {
        let status = deliver_bytes(
            &app,
            &format!("signed_unknown_{i}"),
            &format!("u-{i}"),
            b"{}",
        );
        assert_eq!(status, 202, "signed delivery {i}");
    }
    let after = metrics_text(&app);
    eprintln!(
        "/metrics: {} bytes before, {} bytes after 3,300 deliveries with made-up event names",
        before.len(),
        after.len()
    );
    assert!(!after.contains("made_up_event"), "{after}");
    assert!(!after.contains("signed_unknown"), "{after}");
    let series = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        series(&after) <= series(&before) + 4,
        "{} series before, {} after:\n{after}",
        series(&before),
        series(&after)
    );
    assert!(after.len() < 8 * 1024, "/metrics is {} bytes", after.len());
    assert_eq!(
        app.metric(
            "prodaudit_webhooks_total",
            "event=\"unverified\",outcome=\"bad_signature\""
        ),
        3000.0
    );
    assert_eq!(
        app.metric(
            "prodaudit_webhooks_total",
            "event=\"other\",outcome=\"ignored\""
        ),
        300.0
    );
}

/// Item 6: a review POST that GitHub carries out but answers after the client's timeout: the App looks for
/// the review it may have created before sending it again, and there is exactly one review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_review_post_is_not_posted_twice() {
    let mut world = sample_world();
    world
        .faults
        .push_back(Fault::new("POST", "/pulls/7/reviews", 0).answer_after(4_000));
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[("GITHUB_TIMEOUT_SECS", "1")]),
    );
    assert_eq!(
        deliver(&app, "pull_request", "s-1", &pr_event("opened", 7, HEAD)),
        202
    );
    completed_check(&w, HEAD).await;
    wait_for(&w, "the review", |world| !world.reviews.is_empty()).await;
    wait_for(&w, "the look for the review", |world| {
        world
            .requests
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/pulls/7/reviews"))
    })
    .await;
    settle(&w, Duration::from_millis(1500)).await;
    let world = lock_pub(&w);
    assert_eq!(world.reviews.len(), 1, "exactly one review");
    assert_eq!(world.threads.len(), 1, "one inline comment");
    assert!(world.faults.is_empty(), "the slow answer was served");
    drop(world);
    assert_eq!(count(&w, "POST", "/pulls/7/reviews"), 1, "not sent again");
    assert_eq!(
        app.metric("prodaudit_audits_total", "outcome=\"done\""),
        1.0
    );
    assert_no_violations(&w);
}

/// Item 6, the same for a conversation comment (`/audit help`): found by its marker, not posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_issue_comment_is_not_posted_twice() {
    let mut world = sample_world();
    world
        .faults
        .push_back(Fault::new("POST", "/issues/7/comments", 0).answer_after(4_000));
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[("GITHUB_TIMEOUT_SECS", "1")]),
    );
    let mut help = audit_comment(701);
    help["comment"]["body"] = json!("/audit help");
    assert_eq!(deliver(&app, "issue_comment", "h-1", &help), 202);
    wait_for(&w, "the look for the comment", |world| {
        world
            .requests
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/issues/7/comments"))
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metric("prodaudit_audits_total", "outcome=\"done\"") < 1.0 {
        assert!(Instant::now() < deadline, "the command did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&w, Duration::from_millis(1500)).await;
    let world = lock_pub(&w);
    assert_eq!(world.issue_comments.len(), 1, "{:?}", world.issue_comments);
    assert!(world.issue_comments[0].contains("/audit full"));
    drop(world);
    assert_eq!(count(&w, "POST", "/issues/7/comments"), 1);
    assert_no_violations(&w);
}

/// Item 6, the same for a slow check-run creation: found by its external id, not created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_check_run_creation_is_not_repeated() {
    let mut world = sample_world();
    world
        .faults
        .push_back(Fault::new("POST", "/repos/acme/api/check-runs", 0).answer_after(4_000));
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[("GITHUB_TIMEOUT_SECS", "1")]),
    );
    assert_eq!(
        deliver(&app, "pull_request", "s-2", &pr_event("opened", 7, HEAD)),
        202
    );
    completed_check(&w, HEAD).await;
    wait_for(&w, "the review", |world| !world.reviews.is_empty()).await;
    settle(&w, Duration::from_millis(1500)).await;
    let world = lock_pub(&w);
    assert_eq!(world.check_runs.len(), 1, "one check run");
    assert_eq!(world.reviews.len(), 1);
    drop(world);
    assert_eq!(count(&w, "POST", "/repos/acme/api/check-runs"), 1);
    assert_eq!(count(&w, "GET", "/check-runs"), 1, "one look for it");
    drop(app);
    assert_no_violations(&w);
}

const SECONDARY: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.";

/// Item 7: 403s that are secondary rate limits without Retry-After are waited out (the minimum wait is
/// injectable; it doubles while the limit lasts) and the review is posted; the check run is never marked
/// "could not be completed" on the way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_rate_limit_403_without_retry_after_is_retried() {
    let mut world = sample_world();
    world.faults.push_back(
        Fault::new("POST", "/pulls/7/reviews", 403)
            .message(SECONDARY)
            .header("x-ratelimit-remaining", "4000")
            .times(2),
    );
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[
            ("GITHUB_SECONDARY_RATE_LIMIT_SECS", "1"),
            ("MAX_ATTEMPTS", "1"),
        ]),
    );
    assert_eq!(
        deliver(&app, "pull_request", "r-1", &pr_event("opened", 7, HEAD)),
        202
    );
    wait_for(&w, "the review", |world| !world.reviews.is_empty()).await;
    settle(&w, Duration::from_millis(700)).await;
    let world = lock_pub(&w);
    assert_eq!(world.reviews.len(), 1);
    let posts: Vec<Instant> = world
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/pulls/7/reviews"))
        .map(|r| r.at)
        .collect();
    assert_eq!(posts.len(), 3, "two limited, then posted");
    // Lower bounds only: at least the minimum wait, then at least twice it.
    assert!(posts[1] - posts[0] >= Duration::from_millis(950));
    assert!(posts[2] - posts[1] >= Duration::from_millis(1950));
    for r in world.requests.iter().filter(|r| r.method == "PATCH") {
        assert_ne!(
            r.body["output"]["title"], "The audit could not be completed",
            "the check run was marked failed on the way"
        );
    }
    let run = world
        .check_runs
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    assert_eq!(run["status"], "completed");
    assert_eq!(run["conclusion"], "failure", "the audit's own result");
    drop(world);
    assert_eq!(
        app.metric("prodaudit_audits_total", "outcome=\"dead\""),
        0.0
    );
    assert_eq!(
        app.metric("prodaudit_audits_total", "outcome=\"done\""),
        1.0
    );
    assert_no_violations(&w);
}

/// Item 7: a 403 that is a permission problem (no rate-limit headers, no such text) is still not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_403_is_not_retried() {
    let mut world = sample_world();
    world.faults.push_back(
        Fault::new("POST", "/pulls/7/reviews", 403)
            .message("Resource not accessible by integration")
            .times(10),
    );
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[("GITHUB_SECONDARY_RATE_LIMIT_SECS", "1")]),
    );
    assert_eq!(
        deliver(&app, "pull_request", "r-2", &pr_event("opened", 7, HEAD)),
        202
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.metric("prodaudit_audits_total", "outcome=\"dead\"") < 1.0 {
        assert!(Instant::now() < deadline, "the job was not given up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(&w, "POST", "/pulls/7/reviews"), 1);
    // The check run had completed with the audit's result: it keeps it.
    let world = lock_pub(&w);
    let run = world
        .check_runs
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    assert_eq!(run["status"], "completed");
    assert_ne!(run["output"]["title"], "The audit could not be completed");
}

/// Connects and sends nothing.
fn idle_connection(addr: &str) -> TcpStream {
    match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => panic!("connect {addr}: {e}"),
    }
}

/// Did the server close this connection (EOF or reset) within `limit`?
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    let _ = s.set_read_timeout(Some(limit));
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // An answer (408, 400) before closing is fine: read on.
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Item 8: more idle connections than the server takes at once: `/healthz` still answers, and the idle
/// sockets (no request, a kept-alive connection after a request, a request whose body never comes) are
/// closed by the server after their timeouts. Bounds are generous: nothing here is a timing measurement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_take_the_server_down() {
    let (api, _w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[
            ("HTTP_MAX_CONNECTIONS", "8"),
            ("HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("HTTP_BODY_TIMEOUT_SECS", "1"),
        ]),
    );
    let addr = app.url.trim_start_matches("http://").to_string();
    let mut idle: Vec<TcpStream> = (0..40).map(|_| idle_connection(&addr)).collect();
    // A request's headers, then silence: a kept-alive connection left idle.
    let mut kept = idle_connection(&addr);
    let _ = kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    // A body announced and never sent.
    let mut no_body = idle_connection(&addr);
    let _ = no_body.write_all(
        b"POST /api/github/webhooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    );
    // Meanwhile, health checks answer.
    let started = Instant::now();
    let status = tokio::task::spawn_blocking({
        let url = format!("{}/healthz", app.url);
        move || http_request("GET", &url, &[], b"").map(|(s, _)| s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.ok(), Some(200), "/healthz with 42 idle connections");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "/healthz took {:?}",
        started.elapsed()
    );
    // Every idle socket is closed by the server (1 s timeouts; 20 s is the generous bound).
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(20)),
            "idle connection {i} still open"
        );
    }
    assert!(
        closed_by_server(&mut kept, Duration::from_secs(20)),
        "kept-alive connection still open"
    );
    assert!(
        closed_by_server(&mut no_body, Duration::from_secs(20)),
        "connection with a missing body still open"
    );
    assert_eq!(
        fake_github::harness::get_status(&format!("{}/healthz", app.url)).ok(),
        Some(200)
    );
}

/// A pull request with `files` Python files of `per_file` blocking calls each, all on added lines.
fn many_findings_world(files: usize, per_file: usize) -> fake_github::World {
    let mut world = sample_world();
    let mut base = world.trees.remove("base1").unwrap_or_default();
    let mut head = world.trees.remove(HEAD).unwrap_or_default();
    for f in 0..files {
        let path = format!("app/many_{f}.py");
        // One blocking call per function: findings of one detector in one function are one finding.
        let mut text = String::from("import time\n");
        for i in 0..per_file {
            text.push_str(&format!(
                "\n\nasync def handler_{i}():\n    time.sleep({i})\n"
            ));
        }
        base.insert(path.clone(), "import time\n".to_string());
        head.insert(path, text);
    }
    world.trees.insert("base1".into(), base);
    world.trees.insert(HEAD.into(), head);
    world
}

/// Item 9: a 3,000-finding pull request: every body posted is within GitHub's limits (the fake refuses
/// longer ones as GitHub does), and the review says how many findings it left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_findings_fit_githubs_limits() {
    let (api, w) = fake_github::start(many_findings_world(10, 300)).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(&app, "pull_request", "m-1", &pr_event("opened", 7, HEAD)),
        202
    );
    fake_github::harness::completed_check_within(&w, HEAD, Duration::from_secs(120)).await;
    wait_for(&w, "the review", |world| !world.reviews.is_empty()).await;
    settle(&w, Duration::from_millis(1000)).await;
    let world = lock_pub(&w);
    // (Read after the audit settled: annotations beyond the first 50 are appended by later updates.)
    let run = world
        .check_runs
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    assert!(
        world.refused_bodies.is_empty(),
        "{:?}",
        world.refused_bodies
    );
    assert_eq!(world.reviews.len(), 1);
    let review = &world.reviews[0];
    let body = review["body"].as_str().unwrap_or_default();
    assert!(
        body.chars().count() <= 65_536,
        "{} characters",
        body.chars().count()
    );
    assert!(
        body.contains("more finding(s): see the check run"),
        "{}",
        &body[..300.min(body.len())]
    );
    assert!(
        body.contains(" new finding(s)"),
        "{}",
        &body[..300.min(body.len())]
    );
    for c in review["comments"].as_array().into_iter().flatten() {
        assert!(c["body"].as_str().unwrap_or_default().chars().count() <= 65_536);
    }
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(summary.chars().count() <= 65_535);
    let annotations = run["output"]["annotations"].as_array().map_or(0, Vec::len);
    assert!(annotations >= 3000, "{annotations} annotations");
    drop(world);
    assert_no_violations(&w);
}

/// Items 10 and 11 at start: the database URL's credentials (userinfo and query) never reach the log, and a
/// secret with surrounding spaces is used as given (with a warning).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_not_logged_and_the_secret_is_used_as_given() {
    let (api, _w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("serve.log");
    // A PostgreSQL server that is not there: the App retries and logs why.
    let mut app = App::start_with(
        &api,
        &dir.path().join("unused.db"),
        Options {
            env: vec![
                (
                    "DATABASE_URL".into(),
                    "postgres://audit:userinfo-pw-1@127.0.0.1:9/app?sslmode=disable&password=query-pw-2&sslpassword=ssl-pw-3".into(),
                ),
                ("LOG_LEVEL".into(), "info".into()),
                ("WEBHOOK_SECRET".into(), "  spaced secret  ".into()),
            ],
            log: Some(log.clone()),
            no_wait: true,
        },
    );
    app.wait_listening();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !app.log_text().contains("database not available yet") {
        assert!(
            Instant::now() < deadline,
            "no retry logged:\n{}",
            app.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A delivery signed with the secret as given passes the signature check (503: no database yet); one
    // signed with the trimmed secret does not.
    let body = pr_event("opened", 7, HEAD).to_string();
    let post = |secret: &str| {
        let headers = vec![
            ("X-GitHub-Event", "pull_request".to_string()),
            ("X-GitHub-Delivery", "sp-1".to_string()),
            (
                "X-Hub-Signature-256",
                sign(secret.as_bytes(), body.as_bytes()),
            ),
            ("Content-Type", "application/json".to_string()),
        ];
        http_request(
            "POST",
            &format!("{}/api/github/webhooks", app.url),
            &headers,
            body.as_bytes(),
        )
        .map(|(s, _)| s)
        .ok()
    };
    assert_eq!(post("  spaced secret  "), Some(503));
    assert_eq!(post("spaced secret"), Some(401));
    app.terminate();
    let text = app.log_text();
    for secret in ["userinfo-pw-1", "query-pw-2", "ssl-pw-3", "spaced secret"] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
    assert!(text.contains("leading or trailing whitespace"), "{text}");
}

/// Item 14: signed payloads with impossible values are refused with a 422 that says why, and nothing is
/// stored or audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_values_are_refused_at_intake() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let mut cases: Vec<(Value, &str)> = Vec::new();
    cases.push((pr_event("opened", -1, HEAD), "pull request number -1"));
    cases.push((pr_event("opened", 0, HEAD), "pull request number 0"));
    cases.push((pr_event("opened", 7, "abc"), "head sha"));
    cases.push((pr_event("opened", 7, &format!("{HEAD}ff")), "head sha"));
    let mut p = pr_event("opened", 7, HEAD);
    p["installation"]["id"] = json!(0);
    cases.push((p, "installation id 0"));
    let mut p = pr_event("opened", 7, HEAD);
    p["installation"]["id"] = json!(-3);
    cases.push((p, "installation id -3"));
    let mut p = pr_event("opened", 7, HEAD);
    p["repository"]["full_name"] = json!("acme");
    cases.push((p, "owner/name"));
    let mut p = pr_event("opened", 7, HEAD);
    p["repository"]["full_name"] = json!("acme/api/../x");
    cases.push((p, "owner/name"));
    for (i, (payload, why)) in cases.iter().enumerate() {
        let body = payload.to_string();
        let headers = vec![
            ("X-GitHub-Event", "pull_request".to_string()),
            ("X-GitHub-Delivery", format!("bad-values-{i}")),
            (
                "X-Hub-Signature-256",
                sign(SECRET.as_bytes(), body.as_bytes()),
            ),
            ("Content-Type", "application/json".to_string()),
        ];
        let (status, text) = http_request(
            "POST",
            &format!("{}/api/github/webhooks", app.url),
            &headers,
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, 422, "{payload}: {text}");
        assert!(text.contains(why), "{why} not in {text:?}");
    }
    // A valid delivery afterwards is the only work done.
    assert_eq!(
        deliver(&app, "pull_request", "good", &pr_event("opened", 7, HEAD)),
        202
    );
    completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(700)).await;
    assert_eq!(lock_pub(&w).check_runs.len(), 1);
    assert_eq!(
        app.metric("prodaudit_webhooks_total", "outcome=\"invalid\""),
        cases.len() as f64
    );
    assert_eq!(
        app.metric("prodaudit_webhooks_total", "outcome=\"queued\""),
        1.0
    );
}

fn audit_comment(id: i64) -> Value {
    json!({
        "action": "created",
        "installation": {"id": 99},
        "repository": {"full_name": REPO},
        "issue": {"number": 7, "pull_request": {"url": "x"}},
        "comment": {"id": id, "body": "/audit", "user": {"login": "writer", "type": "User"}},
    })
}

fn completed_runs(w: &fake_github::Shared) -> usize {
    lock_pub(w)
        .check_runs
        .values()
        .filter(|r| r["head_sha"] == HEAD && r["status"] == "completed")
        .count()
}

/// "Also": each `/audit` on a head that already has a check run starts a new run (in progress, then
/// completed); the earlier runs stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_audit_command_starts_a_new_check_run() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(&app, "pull_request", "a-0", &pr_event("opened", 7, HEAD)),
        202
    );
    completed_check(&w, HEAD).await;
    for (n, id) in [(2usize, 601i64), (3, 602)] {
        assert_eq!(
            deliver(
                &app,
                "issue_comment",
                &format!("a-{id}"),
                &audit_comment(id)
            ),
            202
        );
        wait_for(&w, "a new completed check run", |world| {
            world
                .check_runs
                .values()
                .filter(|r| r["head_sha"] == HEAD && r["status"] == "completed")
                .count()
                == n
        })
        .await;
    }
    settle(&w, Duration::from_millis(700)).await;
    assert_eq!(completed_runs(&w), 3);
    let world = lock_pub(&w);
    assert_eq!(world.check_runs.len(), 3, "one run per audit");
    // Each new run was created in progress.
    let created: Vec<&Value> = world
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/check-runs"))
        .map(|r| &r.body)
        .collect();
    assert_eq!(created.len(), 3);
    assert!(created.iter().all(|b| b["status"] == "in_progress"));
    drop(world);
    assert_no_violations(&w);
}

/// "Also": a re-run (explicit) whose first attempt fails after creating its check run is retried by the queue,
/// and the retry reuses that run: one new run for the re-run, not one per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_rerun_reuses_the_run_its_failed_attempt_created() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(&app, "pull_request", "rr-0", &pr_event("opened", 7, HEAD)),
        202
    );
    completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(500)).await;
    // The re-run's first attempt: every try of the file list fails (the client's 4), after its run exists.
    lock_pub(&w)
        .faults
        .push_back(Fault::new("GET", "/pulls/7/files", 500).times(4));
    let rerun = json!({
        "action": "rerequested",
        "installation": {"id": 99},
        "repository": {"full_name": REPO},
        "check_run": {"head_sha": HEAD, "app": {"id": fake_github::harness::APP_ID},
                      "pull_requests": [{"number": 7}]},
    });
    assert_eq!(deliver(&app, "check_run", "rr-1", &rerun), 202);
    wait_for(&w, "the re-run's run, completed after a retry", |world| {
        world.faults.is_empty()
            && world.check_runs.len() >= 2
            && world
                .check_runs
                .values()
                .all(|r| r["status"] == "completed")
    })
    .await;
    settle(&w, Duration::from_millis(700)).await;
    assert_eq!(
        lock_pub(&w).check_runs.len(),
        2,
        "the first audit's run and one for the re-run"
    );
    assert_eq!(count(&w, "POST", "/repos/acme/api/check-runs"), 2);
    assert_eq!(
        app.metric("prodaudit_audits_total", "outcome=\"retry\""),
        1.0
    );
    assert_no_violations(&w);
}

/// Item 8: at the connection cap, idle connections make room for new ones: with a long header timeout (60 s)
/// and 40 idle sockets against a cap of 8, `/healthz` still answers well before any timeout could have freed
/// a slot (the bound, 30 s, is half that timeout; the answer normally takes milliseconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_idle_connections_make_room() {
    let (api, _w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[
            ("HTTP_MAX_CONNECTIONS", "8"),
            ("HTTP_HEADER_TIMEOUT_SECS", "60"),
        ]),
    );
    let addr = app.url.trim_start_matches("http://").to_string();
    let _idle: Vec<TcpStream> = (0..40).map(|_| idle_connection(&addr)).collect();
    let started = Instant::now();
    let status = tokio::task::spawn_blocking({
        let url = format!("{}/healthz", app.url);
        move || http_request("GET", &url, &[], b"").map(|(s, _)| s)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.ok(), Some(200));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "/healthz waited {:?} behind idle connections",
        started.elapsed()
    );
}
