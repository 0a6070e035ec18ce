//! Hostile and broken input (issue 6, item 5, the HTTP side): what arrives at the webhook, and what a
//! pull request may contain. The server must answer, store nothing it should not, never crash, and keep
//! comment positions right.

mod fake_github;

use fake_github::harness::{
    App, SECRET, completed_check, completed_check_within, count, deliver, deliver_bytes,
    get_status, http_request, pr_event, sample_world, settle,
};
use fake_github::{World, assert_no_violations, lock_pub};
use prodaudit::server::signature::sign;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

fn post_raw(app: &App, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    http_request(
        "POST",
        &format!("{}/api/github/webhooks", app.url),
        headers,
        body,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn signed(event: &str, delivery: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        ("X-Hub-Signature-256", sign(SECRET.as_bytes(), body)),
        ("Content-Type", "application/json".to_string()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_webhooks_are_refused_or_ignored_and_nothing_is_queued() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let good = pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        .to_string()
        .into_bytes();

    // Signatures: missing, wrong secret, another body's, wrong algorithm, not hex, upper-case prefix tricks.
    let mut h = signed("pull_request", "s-1", &good);
    h.retain(|(k, _)| *k != "X-Hub-Signature-256");
    assert_eq!(post_raw(&app, &h, &good).0, 401, "missing signature");
    for bad in [
        prodaudit::server::signature::sign(b"not-the-secret", &good),
        sign(SECRET.as_bytes(), b"{}"),
        "sha1=0123456789abcdef0123456789abcdef01234567".to_string(),
        "sha256=zz".to_string(),
        "sha256=".to_string(),
        sign(SECRET.as_bytes(), &good).replace("sha256=", "SHA256="),
        format!("{}00", sign(SECRET.as_bytes(), &good)),
    ] {
        let mut h = signed("pull_request", "s-2", &good);
        h[2].1 = bad.clone();
        assert_eq!(post_raw(&app, &h, &good).0, 401, "signature {bad}");
    }
    // A valid signature, but the body was changed in transit (one byte).
    let mut tampered = good.clone();
    if let Some(b) = tampered.iter_mut().find(|b| **b == b'7') {
        *b = b'8';
    }
    assert_eq!(
        post_raw(&app, &signed("pull_request", "s-3", &good), &tampered).0,
        401
    );

    // Deeply nested JSON: no stack overflow, 400.
    let deep: Vec<u8> = std::iter::repeat_n(b'[', 100_000)
        .chain(std::iter::repeat_n(b']', 100_000))
        .collect();
    assert_eq!(deliver_bytes(&app, "pull_request", "n-1", &deep), 400);
    let deep_obj: String = "{\"a\":".repeat(50_000) + "1" + &"}".repeat(50_000);
    assert_eq!(
        deliver_bytes(&app, "pull_request", "n-2", deep_obj.as_bytes()),
        400
    );
    // Truncated JSON.
    assert_eq!(
        deliver_bytes(&app, "pull_request", "t-1", &good[..good.len() / 2]),
        400
    );
    assert_eq!(deliver_bytes(&app, "pull_request", "t-2", b""), 400);
    // JSON that is not an object, or has the wrong types: acknowledged, nothing to do.
    for (i, body) in [
        "[]",
        "null",
        "\"pull_request\"",
        "42",
        r#"{"action": 5, "installation": {"id": "99"}, "repository": {"full_name": 7}}"#,
        r#"{"action": "opened", "installation": {"id": 99}, "repository": {"full_name": "acme/api"}, "pull_request": {"number": "7", "head": {"sha": null}}}"#,
        r#"{"action": "opened", "installation": {"id": 99}, "repository": {"full_name": "acme/api"}, "pull_request": []}"#,
    ]
    .iter()
    .enumerate()
    {
        let (status, text) = post_raw(
            &app,
            &signed("pull_request", &format!("w-{i}"), body.as_bytes()),
            body.as_bytes(),
        );
        assert_eq!((status, text.trim()), (202, "nothing to do"), "{body}");
    }
    // Unknown events and unknown actions of known events.
    for (i, (event, action)) in [
        ("deployment", "created"),
        ("pull_request", "teleported"),
        ("issue_comment", "pinned"),
        ("check_run", "exploded"),
        ("x".repeat(64).as_str(), "opened"),
    ]
    .iter()
    .map(|(e, a)| (e.to_string(), *a))
    .enumerate()
    {
        let mut p = pr_event(action, 7, "4ead100000000000000000000000000000000000");
        p["action"] = json!(action);
        let body = p.to_string().into_bytes();
        let (status, text) = post_raw(&app, &signed(&event, &format!("u-{i}"), &body), &body);
        assert_eq!(
            (status, text.trim()),
            (202, "nothing to do"),
            "{event}.{action}"
        );
    }
    // Headers: no delivery id, an absurd delivery id, no event, an event name too long.
    let mut h = signed("pull_request", "", &good);
    h.retain(|(k, _)| *k != "X-GitHub-Delivery");
    assert_eq!(post_raw(&app, &h, &good).0, 400);
    assert_eq!(
        post_raw(
            &app,
            &signed("pull_request", &"d".repeat(500), &good),
            &good
        )
        .0,
        400
    );
    let mut h = signed("", "e-1", &good);
    h.retain(|(k, _)| *k != "X-GitHub-Event");
    assert_eq!(post_raw(&app, &h, &good).0, 400);
    assert_eq!(
        post_raw(&app, &signed(&"e".repeat(65), "e-2", &good), &good).0,
        400
    );
    // Oversized (over GitHub's 25 MB): 413, even when signed.
    let huge = vec![b' '; 26 * 1024 * 1024];
    assert_eq!(deliver_bytes(&app, "pull_request", "big-1", &huge), 413);

    // Still alive, and nothing was queued or audited.
    assert_eq!(
        get_status(&format!("{}/healthz", app.url)).unwrap_or(0),
        200
    );
    assert_eq!(
        app.metric("prodaudit_webhooks_total", "outcome=\"queued\""),
        0.0
    );
    settle(&w, Duration::from_millis(700)).await;
    assert!(lock_pub(&w).requests.is_empty(), "GitHub was never called");
}

/// The same delivery id many times, concurrently (an operator's redelivery racing GitHub's): one job, one
/// audit, one review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_deliveries_create_one_job() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = std::sync::Arc::new(App::start(&api, &dir.path().join("q.db")));
    let body = pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        .to_string()
        .into_bytes();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (app, body) = (app.clone(), body.clone());
            std::thread::spawn(move || {
                post_raw(&app, &signed("pull_request", "same-1", &body), &body)
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = threads
        .into_iter()
        .map(|t| t.join().unwrap_or_else(|_| panic!("delivery thread")))
        .collect();
    assert!(answers.iter().all(|(s, _)| *s == 202), "{answers:?}");
    let queued = answers.iter().filter(|(_, t)| t.trim() == "queued").count();
    let dup = answers
        .iter()
        .filter(|(_, t)| t.trim() == "duplicate")
        .count();
    assert_eq!((queued, dup), (1, 7), "{answers:?}");
    completed_check(&w, "4ead100000000000000000000000000000000000").await;
    settle(&w, Duration::from_millis(700)).await;
    // And once more after the audit finished.
    assert_eq!(
        post_raw(&app, &signed("pull_request", "same-1", &body), &body)
            .1
            .trim(),
        "duplicate"
    );
    settle(&w, Duration::from_millis(700)).await;
    assert_eq!(count(&w, "POST", "/check-runs"), 1);
    assert_eq!(lock_pub(&w).reviews.len(), 1);
    assert_no_violations(&w);
}

/// A payload naming an installation that is not ours: GitHub refuses its token (404); the job is dropped
/// after one request, nothing is posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_installations_payload_is_dropped() {
    let mut world = sample_world();
    world.foreign_installations.insert(31337);
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let mut p = pr_event("opened", 7, "4ead100000000000000000000000000000000000");
    p["installation"]["id"] = json!(31337);
    assert_eq!(deliver(&app, "pull_request", "x-1", &p), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.metric("prodaudit_audits_total", "outcome=\"gone\"") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "job not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&w, Duration::from_secs(1)).await;
    let world = lock_pub(&w);
    assert_eq!(world.requests.len(), 1, "only the refused token request");
    assert!(world.check_runs.is_empty() && world.reviews.is_empty());
}

/// `.github/prodaudit.yml` invalid, huge, or pointing at another repository: the check run says so and the
/// defaults apply; and the head's own config never switches checks off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_repository_configs_are_reported_and_defaults_apply() {
    let (api, w) = fake_github::start(sample_world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "invalid",
            "fail_on: [high\nrules: {".to_string(),
            "Configuration ignored",
        ),
        (
            "unknown rule",
            "rules:\n  disable: [C5, NOPE42]\n".to_string(),
            "NOPE42",
        ),
        (
            "huge",
            format!("fail_on: never\n# {}\n", "x".repeat(5 * 1024 * 1024)),
            "at most",
        ),
        (
            "elsewhere",
            "extends: other-org/other-repo/.github/prodaudit.yml\nfail_on: never\n".to_string(),
            "extends",
        ),
        (
            "include elsewhere",
            "include: https://evil.example/prodaudit.yml\nrules:\n  disable: [C5]\n".to_string(),
            "include",
        ),
    ];
    for (i, (what, config, says)) in cases.iter().enumerate() {
        let head = format!("cf{i:038x}");
        {
            let mut world = lock_pub(&w);
            world
                .trees
                .get_mut("base1")
                .map(|t| t.insert(".github/prodaudit.yml".into(), config.clone()));
            let mut tree = world.trees["4ead100000000000000000000000000000000000"].clone();
            // The pull request's own config tries to switch the check off: ignored (read from the base).
            tree.insert(
                ".github/prodaudit.yml".into(),
                "fail_on: never\nrules:\n  disable: [C5]\n".into(),
            );
            tree.insert(format!("app/c{i}.py"), format!("x = {i}\n"));
            world.trees.insert(head.clone(), tree);
            world.head_sha = head.clone();
        }
        let action = if i == 0 { "opened" } else { "synchronize" };
        assert_eq!(
            deliver(
                &app,
                "pull_request",
                &format!("cfg-{i}"),
                &pr_event(action, 7, &head)
            ),
            202
        );
        let run = completed_check(&w, &head).await;
        let summary = run["output"]["summary"].as_str().unwrap_or_default();
        assert!(
            summary.contains("Configuration ignored") && summary.contains(says),
            "{what}: {summary}"
        );
        assert_eq!(run["conclusion"], "failure", "{what}: the defaults apply");
        settle(&w, Duration::from_millis(300)).await;
    }
    assert_no_violations(&w);
}

const FINDING: &str = "import time\n\n\nasync def handler():\n    time.sleep(1)\n    return 1\n";

fn world_with(head: BTreeMap<String, String>, raw: BTreeMap<String, Vec<u8>>) -> World {
    let mut w = sample_world();
    w.trees
        .insert("b19b000000000000000000000000000000000000".into(), head);
    w.raw
        .insert("b19b000000000000000000000000000000000000".into(), raw);
    w.trees.insert("base1".into(), BTreeMap::new());
    w.head_sha = "b19b000000000000000000000000000000000000".into();
    w
}

/// 3000 files (GitHub's listing limit; 3,100 changed), 2,000 of them vendored: listed 100 per page,
/// contents batched, the audit completes in a bounded number of requests with the comments on the right
/// lines, and the summary stays within GitHub's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_with_3000_files_completes_in_bounded_requests() {
    let mut head = BTreeMap::new();
    for i in 0..3100 {
        let dir = if i % 3 == 0 { "app" } else { "vendor/lib" };
        head.insert(format!("{dir}/m{i:04}.py"), format!("x = {i}\n"));
    }
    // Sorted first, so inside GitHub's 3000: findings on known lines.
    head.insert("a/first file é.py".into(), FINDING.into());
    head.insert("a/second.py".into(), format!("# pad\n{FINDING}"));
    let (api, w) = fake_github::start(world_with(head, BTreeMap::new())).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "big-1",
            &pr_event("opened", 7, "b19b000000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check_within(
        &w,
        "b19b000000000000000000000000000000000000",
        Duration::from_secs(240),
    )
    .await;
    assert_eq!(run["conclusion"], "failure");
    settle(&w, Duration::from_millis(700)).await;
    let world = lock_pub(&w);
    let files = world
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/pulls/7/files"))
        .count();
    assert_eq!(files, 30, "3000 files, 100 per page");
    let total = world.requests.len();
    // 30 pages + 1,001 files to read (1 config + ~1,000 not vendored) in batches of 50 + a handful.
    assert!(
        total <= 30 + 21 + 8,
        "{total} requests: {:?}",
        world.counts_by_route()
    );
    let comments = world.reviews[0]["comments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let at: Vec<(String, u64)> = comments
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or("").to_string(),
                c["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        at,
        vec![
            ("a/first file é.py".to_string(), 5),
            ("a/second.py".to_string(), 6)
        ]
    );
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(summary.chars().count() <= 65_535);
    drop(world);
    assert_no_violations(&w);
}

/// Files that are huge, minified, binary, not UTF-8, not valid Python, or have spaces and unicode in their
/// paths: the audit completes, skips what it cannot read with a note, and comments on the right lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_files_are_audited_or_skipped_and_positions_stay_right() {
    let mut head = BTreeMap::new();
    head.insert(
        "src/with space/ünïcødé 名前.py".to_string(),
        format!("\n\n{FINDING}"),
    );
    head.insert(
        "src/broken.py".to_string(),
        "async def h(:\n    time.sleep(1\n  )))\n".to_string(),
    );
    head.insert(
        "src/minified.py".to_string(),
        (0..20_000).map(|i| format!("v{i}=1;")).collect::<String>() + "\n",
    );
    let mut big = String::new();
    while big.len() < 3 * 1024 * 1024 {
        big.push_str("def f():\n    return 1\n");
    }
    head.insert("src/huge.py".to_string(), big);
    let mut raw = BTreeMap::new();
    let mut latin1 =
        b"# caf\xe9 cr\xe8me\nimport time\n\n\nasync def h():\n    time.sleep(2)\n".to_vec();
    latin1.extend_from_slice(b"    return 1\n");
    raw.insert("src/latin1.py".to_string(), latin1);
    raw.insert(
        "src/nul.py".to_string(),
        b"import time\x00\x00\x01\x02".to_vec(),
    );
    raw.insert(
        "assets/logo.png".to_string(),
        vec![0x89, b'P', b'N', b'G', 0, 0, 0, 13],
    );
    let (api, w) = fake_github::start(world_with(head, raw)).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "odd-1",
            &pr_event("opened", 7, "b19b000000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check_within(
        &w,
        "b19b000000000000000000000000000000000000",
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(run["conclusion"], "failure");
    settle(&w, Duration::from_millis(700)).await;
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("too large"), "{summary}");
    let world = lock_pub(&w);
    let comments = world.reviews[0]["comments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let at: Vec<(String, u64)> = comments
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap_or("").to_string(),
                c["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        at.contains(&("src/with space/ünïcødé 名前.py".to_string(), 7)),
        "{at:?}"
    );
    assert!(at.contains(&("src/latin1.py".to_string(), 6)), "{at:?}");
    drop(world);
    assert_no_violations(&w);
}
