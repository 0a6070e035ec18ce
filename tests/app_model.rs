//! The repository model in the App (`prodaudit serve` against the in-process fake GitHub): critical/high
//! findings in a module no entry point imports, or in a function nothing calls, are held back as the CLI holds
//! them back; the files the model reads are read once per blob; and a model that cannot be read never fails
//! the audit.

mod fake_github;

use fake_github::harness::{
    App, Options, completed_check, deliver, files, inline_comments, pull_request_opened, settle,
    wait_for,
};
use fake_github::{Fault, World, assert_no_violations};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

const REPO: &str = "acme/api";
const HEAD: &str = "40de100000000000000000000000000000000000";

const ENTRY: &str = "from fastapi import FastAPI\nfrom app import api\n\napp = FastAPI()\napp.include_router(api.router)\n";
const API_BASE: &str = "import requests\nfrom fastapi import APIRouter\n\nrouter = APIRouter()\n";
/// Line 9: a route (reached, decorated): reported. Line 13: a function nothing calls: held back.
const API_HEAD: &str = "import requests\nfrom fastapi import APIRouter\n\nrouter = APIRouter()\n\n\n@router.get(\"/proxy\")\ndef proxy(url: str):\n    return requests.get(url).text\n\n\ndef legacy_fetch(url):\n    return requests.get(url).text\n";
const BENCH_BASE: &str = "import requests\n";
/// Line 5: in a module nothing imports (its function is called, so only reachability holds it back).
const BENCH_HEAD: &str = "import requests\n\n\ndef run(url):\n    return requests.get(url).text\n\n\nrun(\"http://localhost:8000\")\n";

/// acme/api#7: `app/entry.py` builds the FastAPI app and imports `app.api` (not `main.py`: rules read files of
/// that name besides the audited ones, and these tests count what the model alone reads); the pull request changes
/// `app/api.py` and `tools/bench.py` (imported by nothing), each with a `requests.get` without a timeout.
fn world() -> World {
    let mut trees = std::collections::HashMap::new();
    let common = [("app/__init__.py", ""), ("app/entry.py", ENTRY)];
    let mut base = files(&common);
    base.extend(files(&[
        ("app/api.py", API_BASE),
        ("tools/bench.py", BENCH_BASE),
    ]));
    let mut head = files(&common);
    head.extend(files(&[
        ("app/api.py", API_HEAD),
        ("tools/bench.py", BENCH_HEAD),
    ]));
    trees.insert("base1".to_string(), base);
    trees.insert(HEAD.to_string(), head);
    World {
        repo: REPO.into(),
        base_sha: "base1".into(),
        head_sha: HEAD.into(),
        pr_number: 7,
        trees,
        permissions: [("writer".to_string(), "write".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn pr_payload() -> Value {
    pull_request_opened(REPO, 7, HEAD, "base1")
}

/// (path, line, first line of the body: `**HIGH · F1 · …**`) of every inline comment posted.
fn comments(w: &fake_github::Shared) -> Vec<(String, u64, String)> {
    inline_comments(w)
        .into_iter()
        .map(|(p, l, b)| (p, l, b.lines().next().unwrap_or("").to_string()))
        .collect()
}

/// The `.py` paths read through GraphQL blob lookups (`f{i}: object(expression: "rev:path")`) in the
/// requests from `from` on.
fn python_blobs_read(w: &fake_github::Shared, from: usize) -> Vec<String> {
    let world = fake_github::lock_pub(w);
    let mut out = Vec::new();
    for r in world.requests.iter().skip(from) {
        if !(r.method == "POST" && r.path.ends_with("/graphql")) {
            continue;
        }
        for (k, v) in r.body["variables"].as_object().into_iter().flatten() {
            if k.starts_with('e')
                && let Some(path) = v.as_str().and_then(|e| e.split_once(':')).map(|(_, p)| p)
                && path.ends_with(".py")
            {
                out.push(path.to_string());
            }
        }
    }
    out.sort();
    out
}

/// The reached route is commented; the module nothing imports and the function nothing calls are not, and the
/// check run's summary counts what was held back. Without the model the App would comment all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreached_modules_and_unused_functions_are_held_back_in_the_app() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(deliver(&app, "pull_request", "m-1", &pr_payload()), 202);
    let run = completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(700)).await;
    let posted = comments(&w);
    let at: Vec<(&str, u64)> = posted.iter().map(|(p, l, _)| (p.as_str(), *l)).collect();
    assert_eq!(
        at,
        vec![("app/api.py", 9)],
        "only the reached route is commented: {posted:?} {run}"
    );
    assert!(posted[0].2.starts_with("**HIGH · F1 "), "{posted:?}");
    assert_eq!(run["conclusion"], "failure", "{run}");
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("2 finding(s) held back"), "{summary}");
    // The entry point was read for the model although the pull request does not change it.
    let read = python_blobs_read(&w, 0);
    assert!(read.contains(&"app/entry.py".to_string()), "{read:?}");
    assert!(read.contains(&"app/__init__.py".to_string()), "{read:?}");
    assert_no_violations(&w);
}

/// A second audit of the same head (`/audit`) reads no Python blob for the model again: every file's facts come
/// from the cache (the changed files are read again for their analysis, as always).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_audit_reads_no_python_blob_for_the_model_again() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(deliver(&app, "pull_request", "m-1", &pr_payload()), 202);
    completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(700)).await;
    let first = python_blobs_read(&w, 0);
    let unchanged = ["app/__init__.py", "app/entry.py"];
    for p in unchanged {
        assert!(first.contains(&p.to_string()), "{p} read once: {first:?}");
    }
    let before = fake_github::lock_pub(&w).requests.len();
    let comment = json!({
        "action": "created",
        "installation": {"id": 99},
        "repository": {"full_name": REPO},
        "issue": {"number": 7, "pull_request": {"url": "x"}},
        "comment": {"id": 801, "body": "/audit", "user": {"login": "writer", "type": "User"}},
    });
    assert_eq!(deliver(&app, "issue_comment", "m-2", &comment), 202);
    wait_for(&w, "a second completed check run", |world| {
        world
            .check_runs
            .values()
            .filter(|r| r["head_sha"] == HEAD && r["status"] == "completed")
            .count()
            >= 2
    })
    .await;
    settle(&w, Duration::from_millis(700)).await;
    let second: BTreeSet<String> = python_blobs_read(&w, before).into_iter().collect();
    let changed: BTreeSet<String> = ["app/api.py", "tools/bench.py"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(second, changed, "only the audited files are read again");
    let world = fake_github::lock_pub(&w);
    let run = world
        .check_runs
        .values()
        .rfind(|r| r["head_sha"] == HEAD && r["status"] == "completed")
        .cloned()
        .unwrap_or_default();
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("2 finding(s) held back"),
        "the cached model holds the same findings back: {summary}"
    );
    drop(world);
    assert_no_violations(&w);
}

/// The model's blob reads fail (GitHub keeps answering 502 to the batch that reads the unchanged entry point):
/// the audit completes without the model, judging every module, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_cannot_be_read_never_fails_the_audit() {
    let mut wd = world();
    wd.faults.push_back(
        Fault::new("POST", "/graphql", 502)
            .body_contains("app/entry.py")
            .times(100),
    );
    let (api, w) = fake_github::start(wd).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        Options {
            log: Some(dir.path().join("app.log")),
            ..Default::default()
        },
    );
    assert_eq!(deliver(&app, "pull_request", "m-1", &pr_payload()), 202);
    let run = completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(700)).await;
    assert_eq!(run["conclusion"], "failure", "{run}");
    let paths: BTreeSet<(String, u64)> = comments(&w).into_iter().map(|(p, l, _)| (p, l)).collect();
    let want: BTreeSet<(String, u64)> = [
        ("app/api.py".to_string(), 9),
        ("app/api.py".to_string(), 13),
        ("tools/bench.py".to_string(), 5),
    ]
    .into_iter()
    .collect();
    assert_eq!(paths, want, "every module judged: {run}");
    let failed = fake_github::lock_pub(&w)
        .requests
        .iter()
        .filter(|r| r.path.ends_with("/graphql") && r.status == 502)
        .count();
    assert!(failed >= 1, "the model's blob batch was refused");
    let log = app.log_text();
    assert!(
        log.contains("repository model not built: reading the files failed"),
        "{log}"
    );
}

/// More than 64 MiB of Python to read for the model (sizes from the tree listing): no blob is read for it, the
/// audit judges every module, and the log says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_read_bound_no_model_is_built() {
    let mut wd = world();
    // 34 unchanged modules of about 2,000,000 bytes (each under the 2 MiB file limit), each its own blob (the
    // same contents would be read once): 68 MB in all.
    let big = "x = 1\n".repeat(2_000_000 / 6);
    for sha in ["base1", HEAD] {
        if let Some(t) = wd.trees.get_mut(sha) {
            for i in 0..34 {
                t.insert(format!("lib/m{i:02}.py"), format!("# {i}\n{big}"));
            }
        }
    }
    let (api, w) = fake_github::start(wd).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        Options {
            log: Some(dir.path().join("app.log")),
            env: vec![("LOG_LEVEL".into(), "info".into())],
            ..Default::default()
        },
    );
    assert_eq!(deliver(&app, "pull_request", "m-1", &pr_payload()), 202);
    let run = completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(700)).await;
    let at: BTreeSet<(String, u64)> = comments(&w).into_iter().map(|(p, l, _)| (p, l)).collect();
    assert!(
        at.contains(&("tools/bench.py".to_string(), 5)),
        "no model: the unreached module is judged: {at:?} {run}"
    );
    let read = python_blobs_read(&w, 0);
    assert!(
        !read
            .iter()
            .any(|p| p.starts_with("lib/") || p == "app/entry.py"),
        "nothing read for the model: {read:?}"
    );
    let log = app.log_text();
    assert!(
        log.contains("repository model not built: more to read than the bound"),
        "{log}"
    );
}

/// A file both the rules and the model read (`app/main.py`: the rate-limit check reads the application files
/// besides the audited ones) is read once in an audit, and the model still finds the entry point in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_the_rules_read_is_not_read_again_for_the_model() {
    let mut wd = world();
    for t in wd.trees.values_mut() {
        if let Some(entry) = t.remove("app/entry.py") {
            t.insert("app/main.py".into(), entry);
        }
    }
    let (api, w) = fake_github::start(wd).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(deliver(&app, "pull_request", "m-1", &pr_payload()), 202);
    let run = completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(700)).await;
    let at: Vec<(String, u64)> = comments(&w).into_iter().map(|(p, l, _)| (p, l)).collect();
    assert_eq!(at, vec![("app/api.py".to_string(), 9)], "{run}");
    let read = python_blobs_read(&w, 0);
    assert_eq!(
        read.iter().filter(|p| *p == "app/main.py").count(),
        1,
        "{read:?}"
    );
    assert_no_violations(&w);
}
