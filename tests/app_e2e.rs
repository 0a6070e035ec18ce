//! End to end: the real `prodaudit serve` binary against the in-process fake GitHub.

mod fake_github;

use fake_github::harness::{
    APP_ID, App, SECRET, completed_check, deliver, get_status as ureq_get, http_request,
    inline_comments,
};
use fake_github::{Fault, World, assert_no_violations};
use prodaudit::server::signature::sign;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const REPO: &str = "acme/api";

const BASE_PY: &str = "import asyncio\nimport time\n\n\nasync def a():\n    return 1\n\n\nasync def b():\n    return 2\n";
const HEAD_PY: &str = "import asyncio\nimport time\n\n\nasync def a():\n    time.sleep(1)\n    return 1\n\n\nasync def b():\n    return 2\n";

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
        permissions: [
            ("writer".to_string(), "write".to_string()),
            ("reader".to_string(), "read".to_string()),
        ]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

fn pr_payload(action: &str, head: &str) -> Value {
    json!({
        "action": action,
        "installation": {"id": 99},
        "repository": {"full_name": REPO},
        "pull_request": {"number": 7, "state": "open", "draft": false, "head": {"sha": head}, "base": {"sha": "base1", "ref": "main"}},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_request_opened_gets_a_check_run_and_one_review() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    // The same delivery again (an operator's redelivery) creates no second audit.
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(run["name"], "production-standards");
    assert!(
        run["output"]["title"]
            .as_str()
            .is_some_and(|t| t.contains("1 high")),
        "{run}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_no_violations(&w);
    let world = fake_github::lock_pub(&w);
    assert_eq!(world.reviews.len(), 1, "one review");
    let comments = world.reviews[0]["comments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0]["path"], "app/svc.py");
    assert_eq!(comments[0]["line"], 6);
    assert_eq!(comments[0]["side"], "RIGHT");
    let body = comments[0]["body"].as_str().unwrap_or("");
    assert!(
        body.starts_with("**HIGH · C5 · Never block the event loop**"),
        "{body}"
    );
    assert!(body.contains("<!-- prodaudit:fp="));
    let creates = world
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/check-runs"))
        .count();
    assert_eq!(
        creates, 1,
        "the duplicate delivery did not start a second audit"
    );
    // Installation calls carry the installation token, not the JWT.
    assert!(
        world
            .requests
            .iter()
            .filter(|r| r.path.starts_with("/repos/"))
            .all(|r| r.authorization.starts_with("Bearer ghs_"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_fixes_one_and_adds_another_resolves_and_comments_once() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    completed_check(&w, "4ead100000000000000000000000000000000000").await;
    {
        let mut world = fake_github::lock_pub(&w);
        let fixed = HEAD_PY
            .replace("    time.sleep(1)\n", "    await asyncio.sleep(1)\n")
            .replace("    return 2\n", "    time.sleep(2)\n    return 2\n");
        world.trees.insert(
            "4ead200000000000000000000000000000000000".into(),
            BTreeMap::from([("app/svc.py".to_string(), fixed)]),
        );
        world.head_sha = "4ead200000000000000000000000000000000000".into();
    }
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "d-2",
            &pr_payload("synchronize", "4ead200000000000000000000000000000000000")
        ),
        202
    );
    completed_check(&w, "4ead200000000000000000000000000000000000").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_no_violations(&w);
    let world = fake_github::lock_pub(&w);
    assert_eq!(world.reviews.len(), 2);
    let second = world.reviews[1]["comments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(second.len(), 1, "only the new finding is commented");
    assert_eq!(second[0]["line"], 11);
    let resolved = world.threads.iter().filter(|t| t.resolved).count();
    assert_eq!(resolved, 1, "the fixed finding's thread is resolved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_need_write_access() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let comment = |user: &str, id: i64| {
        json!({
            "action": "created",
            "installation": {"id": 99},
            "repository": {"full_name": REPO},
            "issue": {"number": 7, "pull_request": {"url": "x"}},
            "comment": {"id": id, "body": "/audit", "user": {"login": user, "type": "User"}},
        })
    };
    assert_eq!(
        deliver(&app, "issue_comment", "c-1", &comment("reader", 501)),
        202
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake_github::lock_pub(&w).issue_comments.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let world = fake_github::lock_pub(&w);
        assert!(
            world
                .issue_comments
                .iter()
                .any(|c| c.contains("write access")),
            "{:?}",
            world.issue_comments
        );
        assert!(
            world.check_runs.is_empty(),
            "a reader's command audits nothing"
        );
    }
    assert_eq!(
        deliver(&app, "issue_comment", "c-2", &comment("writer", 502)),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    assert!(
        fake_github::lock_pub(&w)
            .reactions
            .contains(&(502, "eyes".to_string()))
    );
    assert_no_violations(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_without_pull_requests_and_a_diff_without_patch() {
    let mut wd = world();
    wd.no_patch = vec!["app/svc.py".into()];
    let (api, w) = fake_github::start(wd).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let payload = json!({
        "action": "rerequested",
        "installation": {"id": 99},
        "repository": {"full_name": REPO},
        "check_run": {"head_sha": "4ead100000000000000000000000000000000000", "app": {"id": APP_ID}, "pull_requests": []},
    });
    assert_eq!(deliver(&app, "check_run", "r-1", &payload), 202);
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(
        run["conclusion"], "failure",
        "the finding is found from the two versions"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_no_violations(&w);
    let world = fake_github::lock_pub(&w);
    assert!(
        world.requests.iter().any(|r| r
            .path
            .ends_with("/commits/4ead100000000000000000000000000000000000/pulls")),
        "head mapped to its pull request"
    );
    assert_eq!(world.reviews[0]["comments"][0]["line"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_and_a_killed_server_resumes() {
    let (api, w) = fake_github::start(world()).await;
    {
        let mut world = fake_github::lock_pub(&w);
        world
            .faults
            .push_back(Fault::new("GET", "/pulls/7/files", 502).times(2));
        world
            .faults
            .push_back(Fault::new("POST", "/check-runs", 429).header("retry-after", "1"));
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("q.db");
    let mut app = App::start(&api, &db);
    // Accepted, then the process dies before (or while) it works.
    {
        let mut world = fake_github::lock_pub(&w);
        world
            .faults
            .push_back(Fault::new("POST", "/access_tokens", 0).delay(3000));
    }
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "k-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.kill();
    let app2 = App::start(&api, &db);
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_no_violations(&w);
    let world = fake_github::lock_pub(&w);
    assert_eq!(
        world.reviews.len(),
        1,
        "no duplicate review after the restart"
    );
    drop(app2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_answers() {
    let (api, _w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    let url = format!("{}/api/github/webhooks", app.url);
    let body = br#"{"zen":"hi"}"#.to_vec();
    let h = |sig: String, ct: &str| {
        vec![
            ("X-GitHub-Event", "ping".to_string()),
            ("X-GitHub-Delivery", "p-1".to_string()),
            ("X-Hub-Signature-256", sig),
            ("Content-Type", ct.to_string()),
        ]
    };
    let status = |headers: Vec<(&str, String)>, body: &[u8]| match http_request(
        "POST", &url, &headers, body,
    ) {
        Ok((s, _)) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        status(h(sign(SECRET.as_bytes(), &body), "application/json"), &body),
        202
    );
    assert_eq!(
        status(h(sign(b"wrong", &body), "application/json"), &body),
        401
    );
    assert_eq!(status(h(String::new(), "application/json"), &body), 401);
    assert_eq!(
        status(h(sign(SECRET.as_bytes(), b"{}"), "application/json"), &body),
        401,
        "signature of another body"
    );
    assert_eq!(
        status(
            h(
                sign(SECRET.as_bytes(), &body),
                "application/x-www-form-urlencoded"
            ),
            &body
        ),
        415
    );
    let bad = b"{not json".to_vec();
    assert_eq!(
        status(h(sign(SECRET.as_bytes(), &bad), "application/json"), &bad),
        400
    );
    let huge = vec![b' '; 26 * 1024 * 1024];
    assert_eq!(
        status(h(sign(SECRET.as_bytes(), &huge), "application/json"), &huge),
        413
    );
    assert_eq!(ureq_get(&format!("{}/healthz", app.url)).unwrap_or(0), 200);
    let (_, metrics) =
        http_request("GET", &format!("{}/metrics", app.url), &[], b"").unwrap_or_default();
    assert!(
        metrics.contains("prodaudit_webhooks_total{event=\"ping\",outcome=\"ignored\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("outcome=\"bad_signature\""));
}

/// Cross-file rules in the App: the tree and the files rules need (`.env.example`, the migrations) come from the
/// API; a migration in a folder the configuration excludes still counts as part of the change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_file_rules_read_the_repository_through_the_api() {
    const MODELS_BASE: &str = "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n\n\nclass Base(DeclarativeBase):\n    pass\n\n\nclass User(Base):\n    __tablename__ = \"users\"\n\n    id: Mapped[int] = mapped_column(primary_key=True)\n";
    const MODELS_HEAD: &str = "from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column\n\n\nclass Base(DeclarativeBase):\n    pass\n\n\nclass User(Base):\n    __tablename__ = \"users\"\n\n    id: Mapped[int] = mapped_column(primary_key=True)\n    locale: Mapped[str] = mapped_column(default=\"en\")\n";
    const CONFIG_BASE: &str = "import os\n\nDATABASE_URL = os.environ[\"DATABASE_URL\"]\n";
    const CONFIG_HEAD: &str =
        "import os\n\nDATABASE_URL = os.environ[\"DATABASE_URL\"]\nNEW_X = os.environ[\"NEW_X\"]\n";
    let common = [
        ("alembic/env.py", "from alembic import context\n"),
        (
            "alembic/versions/0001_initial.py",
            "def upgrade():\n    op.create_table(\"users\", sa.Column(\"id\", sa.Integer()))\n\n\ndef downgrade():\n    op.drop_table(\"users\")\n",
        ),
        (
            ".env.example",
            "DATABASE_URL=postgresql://app:changethis@db/app\n",
        ),
        (
            ".github/prodaudit.yml",
            "paths:\n  exclude: ['alembic/**']\n",
        ),
    ];
    let tree = |extra: &[(&str, &str)]| -> BTreeMap<String, String> {
        common
            .iter()
            .chain(extra.iter())
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect()
    };
    let mut w = world();
    w.trees.insert(
        "base1".into(),
        tree(&[
            ("app/models.py", MODELS_BASE),
            ("app/core/config.py", CONFIG_BASE),
        ]),
    );
    w.trees.insert(
        "4ead100000000000000000000000000000000000".into(),
        tree(&[
            ("app/models.py", MODELS_HEAD),
            ("app/core/config.py", CONFIG_HEAD),
            (
                "alembic/versions/0002_users_locale.py",
                // Raw SQL: only the change set tells that this migration goes with the model change.
                "def upgrade():\n    op.execute(\"ALTER TABLE users ADD COLUMN locale varchar DEFAULT 'en'\")\n\n\ndef downgrade():\n    op.execute(\"ALTER TABLE users DROP COLUMN locale\")\n",
            ),
        ]),
    );
    let (api, w) = fake_github::start(w).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "x-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let comments = inline_comments(&w);
    let world = fake_github::lock_pub(&w);
    assert_eq!(comments.len(), 1, "{comments:?} {run}");
    assert_eq!(
        (comments[0].0.as_str(), comments[0].1),
        ("app/core/config.py", 4)
    );
    assert!(comments[0].2.contains("NEW_X"), "{}", comments[0].2);
    // The example file came through the GraphQL blob batch.
    assert!(world.requests.iter().any(|r| {
        r.path
            .contains("/git/trees/4ead100000000000000000000000000000000000")
    }));
}

/// The App passes the repository config's `infra.reverse_proxies` (read from the base) to the Compose check: the
/// configured proxy may publish ports, the app service may not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_reverse_proxies_reach_the_compose_check() {
    const COMPOSE: &str = "services:\n  myproxy:\n    image: registry.local/edge/myproxy:2.1\n    ports:\n      - \"443:443\"\n  api:\n    build: .\n    ports:\n      - \"8000:8000\"\n";
    let config = (
        ".github/prodaudit.yml".to_string(),
        "infra:\n  reverse_proxies: [myproxy]\n".to_string(),
    );
    let mut w = world();
    w.trees
        .insert("base1".into(), BTreeMap::from([config.clone()]));
    w.trees.insert(
        "4ead100000000000000000000000000000000000".into(),
        BTreeMap::from([
            config,
            (
                "deploy/docker-compose.prod.yml".to_string(),
                COMPOSE.to_string(),
            ),
        ]),
    );
    let (api, w) = fake_github::start(w).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "p-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let published: Vec<u64> = inline_comments(&w)
        .into_iter()
        .filter(|(_, _, body)| body.contains("publishes"))
        .map(|(_, line, _)| line)
        .collect();
    assert_eq!(published, vec![8], "only `api` publishes: {run}");
}

/// The webhook said "open at head X", but by the time the job runs the pull request was closed, or moved
/// on to a newer head: no review, and the check run of that commit says why (neutral).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_or_moved_on_pull_requests_are_not_audited() {
    let mut wd = world();
    wd.state = "closed".into();
    let (api, w) = fake_github::start(wd).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "cl-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "neutral");
    assert_eq!(run["output"]["title"], "Pull request closed: not audited");
    {
        let mut world = fake_github::lock_pub(&w);
        world.state = "open".into();
        let tree = world.trees["4ead100000000000000000000000000000000000"].clone();
        world
            .trees
            .insert("4ead000000000000000000000000000000000000".into(), tree);
    }
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "cl-2",
            &pr_payload("synchronize", "4ead000000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead000000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "neutral");
    assert_eq!(
        run["output"]["title"],
        "Superseded: a newer push is audited"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fake_github::lock_pub(&w).reviews.is_empty());
    assert_no_violations(&w);
}

/// GitHub Enterprise Server: GITHUB_API_URL ending in /api/v3; REST goes under it, GraphQL to /api/graphql,
/// and every request still matches GitHub's description.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_enterprise_server_paths() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        fake_github::harness::Options {
            env: vec![("GITHUB_API_URL".into(), format!("{api}/api/v3"))],
            ..Default::default()
        },
    );
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "ghes-1",
            &pr_payload("opened", "4ead100000000000000000000000000000000000")
        ),
        202
    );
    let run = completed_check(&w, "4ead100000000000000000000000000000000000").await;
    assert_eq!(run["conclusion"], "failure");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let world = fake_github::lock_pub(&w);
    assert_eq!(world.reviews.len(), 1);
    assert!(
        world
            .requests
            .iter()
            .all(|r| r.path.starts_with("/api/v3/") || r.path == "/api/graphql"),
        "{:?}",
        world.requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    drop(world);
    assert_no_violations(&w);
}
