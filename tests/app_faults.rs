//! Faults GitHub and the database throw at the App (issue 6, item 4), each against the fake GitHub and the
//! real binary.

mod fake_github;

use fake_github::harness::{
    App, Options, completed_check, count, deliver, get_status, pr_event, sample_world, settle,
    wait_for,
};
use fake_github::{Fault, assert_no_violations, lock_pub};
use std::time::Duration;

fn opts(env: &[(&str, &str)]) -> Options {
    Options {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

/// 500, 502, 503 and a dropped connection, each once on a different call (reads and writes): retried, the
/// audit completes, and nothing is posted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_connection_resets_are_retried() {
    let mut world = sample_world();
    world.faults.extend([
        Fault::new("GET", "/pulls/7/files", 500),
        Fault::new("POST", "/graphql", 503),
        Fault::new("PATCH", "/check-runs/", 502),
        Fault::new("POST", "/pulls/7/reviews", 0).reset(),
        Fault::new("POST", "/check-runs", 0).reset(),
    ]);
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "f-1",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    wait_for(&w, "the review", |world| !world.reviews.is_empty()).await;
    settle(&w, Duration::from_millis(700)).await;
    let world = lock_pub(&w);
    assert_eq!(world.reviews.len(), 1, "one review despite the reset");
    assert_eq!(world.check_runs.len(), 1, "one check run despite the reset");
    assert!(
        world.faults.is_empty(),
        "every fault was hit: {:?}",
        world.faults
    );
    let dropped = world.requests.iter().filter(|r| r.status == 0).count();
    assert_eq!(dropped, 2, "two connections were dropped");
    for (m, p) in [
        ("GET", "/pulls/7/files"),
        ("POST", "/pulls/7/reviews"),
        ("POST", "/graphql"),
    ] {
        let n = world
            .requests
            .iter()
            .filter(|r| r.method == m && r.path.ends_with(p))
            .count();
        assert_eq!(n, 2, "{m} {p}: one failure, one retry");
    }
    drop(world);
    assert_no_violations(&w);
}

/// A GitHub that keeps failing: every call is tried a bounded number of times, the job a bounded number of
/// times, and the check run then ends with a clear message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_failures_are_bounded_and_reported() {
    let mut world = sample_world();
    world
        .faults
        .push_back(Fault::new("GET", "/pulls/7/files", 502).times(1000));
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[("MAX_ATTEMPTS", "2")]),
    );
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "f-2",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = fake_github::harness::completed_check_within(
        &w,
        "4ead100000000000000000000000000000000000",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(run["output"]["title"], "The audit could not be completed");
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("502") && summary.contains("Re-run"),
        "{summary}"
    );
    settle(&w, Duration::from_millis(700)).await;
    // 4 attempts per call (the client's bound) × 2 attempts of the job (MAX_ATTEMPTS).
    assert_eq!(count(&w, "GET", "/pulls/7/files"), 8);
    assert!(lock_pub(&w).reviews.is_empty());
    assert_eq!(
        app.metric("prodaudit_audits_total", "outcome=\"dead\""),
        1.0
    );
    assert_no_violations(&w);
}

/// Secondary rate limits: a 403 with Retry-After and a 429 with x-ratelimit-reset are waited out, then the
/// calls succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_rate_limits_are_waited_out() {
    let mut world = sample_world();
    let reset = (chrono::Utc::now().timestamp() + 2).to_string();
    world.faults.extend([
        Fault::new("POST", "/graphql", 403)
            .header("retry-after", "1")
            .header("x-ratelimit-remaining", "0"),
        Fault::new("GET", "/pulls/7/files", 429)
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &reset),
    ]);
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "f-3",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    settle(&w, Duration::from_millis(500)).await;
    let world = lock_pub(&w);
    let times = |m: &str, p: &str| -> Vec<std::time::Instant> {
        world
            .requests
            .iter()
            .filter(|r| r.method == m && r.path.ends_with(p))
            .map(|r| r.at)
            .collect()
    };
    let gql = times("POST", "/graphql");
    assert!(gql.len() >= 2);
    // Waited at least what Retry-After asked (a lower bound: cannot flake).
    assert!(
        gql[1] - gql[0] >= Duration::from_millis(950),
        "{:?}",
        gql[1] - gql[0]
    );
    let files = times("GET", "/pulls/7/files");
    assert_eq!(files.len(), 2, "the rate-limited call, then its retry");
    assert!(
        files[1] - files[0] >= Duration::from_millis(900),
        "{:?}",
        files[1] - files[0]
    );
    assert_eq!(world.reviews.len(), 1);
    drop(world);
    assert_no_violations(&w);
}

/// An installation token GitHub no longer accepts (401): refreshed once, then the audit succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_installation_token_is_refreshed_once() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "t-1",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    completed_check(&w, "4ead100000000000000000000000000000000000").await;
    settle(&w, Duration::from_millis(500)).await;
    {
        let mut world = lock_pub(&w);
        assert_eq!(world.tokens_issued, 1, "the token is cached");
        world.revoked_tokens.insert("ghs_test1".into());
        let mut head2 = world.trees["4ead100000000000000000000000000000000000"].clone();
        head2.insert(
            "app/other.py".into(),
            "import time\n\n\nasync def c():\n    time.sleep(3)\n".into(),
        );
        world
            .trees
            .insert("4ead200000000000000000000000000000000000".into(), head2);
        world.head_sha = "4ead200000000000000000000000000000000000".into();
    }
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "t-2",
            &pr_event("synchronize", 7, "4ead200000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead200000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    settle(&w, Duration::from_millis(500)).await;
    let world = lock_pub(&w);
    assert_eq!(world.tokens_issued, 2, "one refresh");
    let refused = world.requests.iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 1, "one call refused, then the new token is used");
    assert!(
        world
            .requests
            .iter()
            .skip_while(|r| r.status != 401)
            .skip(1)
            .filter(|r| !r.path.contains("access_tokens"))
            .all(|r| r.authorization == "Bearer ghs_test2")
    );
    assert_eq!(world.reviews.len(), 2);
    drop(world);
    assert_no_violations(&w);
}

/// A pull request or repository that is gone (404): the job is dropped with a log line, after a handful of
/// requests (no retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_pull_requests_and_repositories_are_dropped() {
    let mut world = sample_world();
    world
        .faults
        .push_back(Fault::new("POST", "/repos/acme/gone/", 404).times(1000));
    world
        .faults
        .push_back(Fault::new("GET", "/repos/acme/gone/", 404).times(1000));
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("serve.log");
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        Options {
            log: Some(log),
            ..Default::default()
        },
    );
    // Pull request #8 does not exist.
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "g-1",
            &pr_event("opened", 8, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let mut gone_repo = pr_event("opened", 3, "4ead300000000000000000000000000000000000");
    gone_repo["repository"]["full_name"] = "acme/gone".into();
    assert_eq!(deliver(&app, "pull_request", "g-2", &gone_repo), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.metric("prodaudit_audits_total", "outcome=\"gone\"") < 2.0 {
        assert!(std::time::Instant::now() < deadline, "jobs not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&w, Duration::from_secs(2)).await;
    let log = app.log_text();
    assert_eq!(log.matches("job dropped").count(), 2, "{log}");
    let world = lock_pub(&w);
    let on_8 = world
        .requests
        .iter()
        .filter(|r| r.path.contains("/pulls/8"))
        .count();
    assert_eq!(on_8, 1, "one 404, no retry");
    let on_gone = world
        .requests
        .iter()
        .filter(|r| r.path.contains("/acme/gone/"))
        .count();
    assert_eq!(on_gone, 1, "one 404, no retry");
    assert!(world.reviews.is_empty());
    drop(world);
    assert_no_violations(&w);
}

/// A GitHub that hangs: the per-call timeout fires (GITHUB_TIMEOUT_SECS=1), the call is retried, then the
/// job; the audit completes once GitHub answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_github_times_out_and_the_job_is_retried() {
    let mut world = sample_world();
    // The client tries a call 4 times: all four hang, so the job itself must be retried.
    world.faults.push_back(
        Fault::new("GET", "/pulls/7/files", 0)
            .delay(30_000)
            .times(4),
    );
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        opts(&[("GITHUB_TIMEOUT_SECS", "1")]),
    );
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "h-1",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = fake_github::harness::completed_check_within(
        &w,
        "4ead100000000000000000000000000000000000",
        Duration::from_secs(90),
    )
    .await;
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(
        count(&w, "GET", "/pulls/7/files"),
        5,
        "4 timeouts, then an answer"
    );
    assert!(
        app.metric("prodaudit_audits_total", "outcome=\"retry\"") >= 1.0,
        "the job was retried"
    );
    assert!(
        app.metric("prodaudit_github_requests_total", "status=\"0\"") >= 4.0,
        "calls without an answer (timeouts) are counted as status 0"
    );
    settle(&w, Duration::from_millis(500)).await;
    assert_eq!(lock_pub(&w).reviews.len(), 1);
    assert_no_violations(&w);
}

/// The database is unavailable at start: the server listens, is not ready, answers 503 (never 2xx) to
/// webhooks, keeps retrying, and once the database can be opened it is ready and audits a redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_database_means_not_ready_and_503() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let missing = dir.path().join("not-yet");
    let app = App::start_with(
        &api,
        &missing.join("q.db"),
        Options {
            no_wait: true,
            ..Default::default()
        },
    );
    app.wait_listening();
    assert_eq!(
        get_status(&format!("{}/healthz", app.url)).unwrap_or(0),
        200
    );
    assert_eq!(get_status(&format!("{}/readyz", app.url)).unwrap_or(0), 503);
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "db-1",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        503
    );
    assert_eq!(
        deliver(
            &app,
            "ping",
            "db-2",
            &serde_json::json!({"zen": "z", "hook_id": 1})
        ),
        202,
        "nothing to store: acknowledged"
    );
    // A PostgreSQL URL to a closed port behaves the same.
    let pg = App::start_with(
        &api,
        &missing.join("unused.db"),
        Options {
            no_wait: true,
            env: vec![(
                "DATABASE_URL".into(),
                "postgres://prodaudit@127.0.0.1:1/prodaudit".into(),
            )],
            ..Default::default()
        },
    );
    pg.wait_listening();
    assert_eq!(get_status(&format!("{}/readyz", pg.url)).unwrap_or(0), 503);
    assert_eq!(
        deliver(
            &pg,
            "pull_request",
            "db-3",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        503
    );
    drop(pg);
    // The database becomes available: the App notices, becomes ready, and the redelivery is audited.
    std::fs::create_dir_all(&missing).unwrap_or_else(|e| panic!("{e}"));
    app.wait_ready();
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "db-1",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    assert_no_violations(&w);
}
