//! Webhook replay: every real payload in `../shared/github/webhooks/` (GitHub's own examples, see
//! ../shared/github/SOURCES.md), re-signed with the test secret and delivered to the real binary. Handled
//! events must produce a job, everything else a 202 with nothing queued. Hand-written payloads in
//! `tests/fixtures/webhooks/` keep the same checks running without `../shared`.

mod fake_github;

use fake_github::World;
use fake_github::harness::{APP_ID, App, SECRET, completed_check, http_request, settle, wait_for};
use prodaudit::server::signature::sign;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn shared_dir() -> Option<PathBuf> {
    let d = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/github/webhooks"
    ));
    if d.is_dir() {
        Some(d)
    } else {
        eprintln!(
            "skipping the replay of GitHub's payload examples: {} is not present",
            d.display()
        );
        None
    }
}

/// (event, file name, payload) of every `*.json` under `dir/<event>/`.
fn payloads(dir: &Path) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let Ok(events) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut events: Vec<_> = events.flatten().map(|e| e.path()).collect();
    events.sort();
    for ev in events.iter().filter(|p| p.is_dir()) {
        let event = ev
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files: Vec<_> = std::fs::read_dir(ev)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|x| x == "json"))
        {
            let text =
                std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((event.clone(), name, v));
        }
    }
    out
}

/// POST the exact bytes, signed; returns (status, body).
fn post(app: &App, event: &str, delivery: &str, body: &[u8]) -> (u16, String) {
    let headers = vec![
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery.to_string()),
        ("X-Hub-Signature-256", sign(SECRET.as_bytes(), body)),
        ("Content-Type", "application/json".to_string()),
    ];
    http_request(
        "POST",
        &format!("{}/api/github/webhooks", app.url),
        &headers,
        body,
    )
    .unwrap_or_else(|e| panic!("cannot deliver: {e}"))
}

/// What a delivery must lead to.
#[derive(Debug, PartialEq, Clone, Copy)]
enum Want {
    Job,
    Nothing,
}

/// What prodaudit must do with a payload as GitHub delivers it to an App installed on the repository.
fn expected(event: &str, p: &Value) -> Want {
    let action = p["action"].as_str().unwrap_or("");
    let has = p["installation"]["id"].is_i64() && p["repository"]["full_name"].is_string();
    if !has {
        return Want::Nothing;
    }
    let job = match event {
        "pull_request" => {
            matches!(
                action,
                "opened" | "synchronize" | "reopened" | "ready_for_review"
            ) && p["pull_request"]["state"] == "open"
        }
        "issue_comment" => {
            action == "created"
                && !p["issue"]["pull_request"].is_null()
                && p["comment"]["body"]
                    .as_str()
                    .is_some_and(|b| b.trim_start().starts_with("/audit"))
                && p["comment"]["user"]["type"] != "Bot"
        }
        "check_run" => {
            (action == "rerequested"
                || action == "requested_action" && p["requested_action"]["identifier"] == "reaudit")
                && p["check_run"]["app"]["id"] == APP_ID
        }
        "check_suite" => action == "rerequested" && p["check_suite"]["app"]["id"] == APP_ID,
        _ => false,
    };
    if job { Want::Job } else { Want::Nothing }
}

/// The variants of a payload that exercise prodaudit's handling: as delivered to an App (with an
/// installation), as our own check's re-run, a `/audit` comment on a pull request, our "Re-audit" button.
fn variants(event: &str, name: &str, p: &Value) -> Vec<(String, Value)> {
    let mut out = vec![(format!("{name} as-is"), p.clone())];
    let mut app = p.clone();
    if app["installation"]["id"].is_null() && app["repository"].is_object() {
        app["installation"] =
            json!({"id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="});
        out.push((format!("{name} with an installation"), app.clone()));
    }
    match event {
        "check_run" | "check_suite" if app[event].is_object() => {
            let mut ours = app.clone();
            ours[event]["app"]["id"] = json!(APP_ID);
            if ours["requested_action"].is_object() {
                ours["requested_action"]["identifier"] = json!("reaudit");
            }
            out.push((format!("{name} for our app"), ours));
        }
        "issue_comment" if app["comment"].is_object() => {
            let mut cmd = app.clone();
            cmd["comment"]["body"] = json!("/audit");
            out.push((format!("{name} /audit on an issue"), cmd.clone()));
            cmd["issue"]["pull_request"] =
                json!({"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"});
            out.push((format!("{name} /audit on a pull request"), cmd));
        }
        _ => {}
    }
    out
}

fn check_intake(app: &App, all: &[(String, String, Value)]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut n = 0;
    for (event, name, payload) in all {
        for (label, v) in variants(event, name, payload) {
            n += 1;
            let want = expected(event, &v);
            let body = serde_json::to_vec(&v).unwrap_or_default();
            let (status, text) = post(app, event, &format!("replay-{n}"), &body);
            assert_eq!(status, 202, "{event} {label}: {text}");
            let got = match text.trim() {
                "queued" | "coalesced" => Want::Job,
                "nothing to do" => Want::Nothing,
                other => panic!("{event} {label}: unexpected answer {other:?}"),
            };
            assert_eq!(got, want, "{event} {label} ({})", v["action"]);
            *seen
                .entry(format!(
                    "{event}.{} → {want:?}",
                    v["action"].as_str().unwrap_or("-")
                ))
                .or_default() += 1;
        }
    }
    seen
}

fn fixtures() -> Vec<(String, String, Value)> {
    payloads(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks"
    )))
}

/// A world where nothing exists: the jobs the replay queues end as "gone" without side effects.
fn empty_world() -> World {
    World {
        repo: "nobody/nothing".into(),
        pr_number: -1,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_payload_examples_are_classified() {
    let Some(dir) = shared_dir() else { return };
    let all = payloads(&dir);
    assert!(
        all.len() >= 40,
        "expected GitHub's examples, found {}",
        all.len()
    );
    let (api, w) = fake_github::start(empty_world()).await;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &tmp.path().join("q.db"));
    let seen = check_intake(&app, &all);
    eprintln!("replayed: {seen:#?}");
    // Every handled kind was seen at least once.
    for kind in [
        "pull_request.opened → Job",
        "pull_request.synchronize → Job",
        "pull_request.reopened → Job",
        "pull_request.ready_for_review → Job",
        "pull_request.closed → Nothing",
        "issue_comment.created → Job",
        "check_run.rerequested → Job",
        "check_run.requested_action → Job",
        "check_suite.rerequested → Job",
        "installation.created → Nothing",
        "installation_repositories.added → Nothing",
        "ping.- → Nothing",
    ] {
        assert!(seen.contains_key(kind), "{kind} not exercised: {seen:#?}");
    }
    settle(&w, Duration::from_millis(500)).await;
    fake_github::assert_no_violations(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_payloads_are_classified() {
    let all = fixtures();
    assert!(
        all.len() >= 8,
        "tests/fixtures/webhooks has {} payloads",
        all.len()
    );
    let (api, w) = fake_github::start(empty_world()).await;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &tmp.path().join("q.db"));
    let seen = check_intake(&app, &all);
    assert!(seen.keys().any(|k| k.ends_with("Job")), "{seen:#?}");
    assert!(seen.keys().any(|k| k.ends_with("Nothing")), "{seen:#?}");
    settle(&w, Duration::from_millis(500)).await;
    fake_github::assert_no_violations(&w);
}

const PY_BASE: &str = "import time\n\n\nasync def handler():\n    return 1\n";
const PY_HEAD: &str = "import time\n\n\nasync def handler():\n    time.sleep(1)\n    return 1\n";

/// A world holding the pull request of GitHub's example payloads (Codertocat/Hello-World#2).
fn hello_world(head: &str, base: &str, number: i64) -> World {
    let mut trees = std::collections::HashMap::new();
    trees.insert(
        base.to_string(),
        BTreeMap::from([("app.py".to_string(), PY_BASE.to_string())]),
    );
    trees.insert(
        head.to_string(),
        BTreeMap::from([("app.py".to_string(), PY_HEAD.to_string())]),
    );
    World {
        repo: "Codertocat/Hello-World".into(),
        base_sha: base.into(),
        head_sha: head.into(),
        pr_number: number,
        trees,
        ..Default::default()
    }
}

/// The real `pull_request.opened` example, as delivered: audited end to end (check run completed, review on
/// the right line); then the real `check_suite.rerequested` for our app audits the same head again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_payloads_drive_whole_audits() {
    let (opened, rerequested) = match shared_dir() {
        Some(dir) => {
            let read = |f: &str| -> Value {
                let t = std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("{f}: {e}"))
            };
            (
                read("pull_request/opened.payload.json"),
                read("check_suite/rerequested.payload.json"),
            )
        }
        None => {
            let read = |f: &str| -> Value {
                let p = Path::new(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/fixtures/webhooks"
                ))
                .join(f);
                let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{f}: {e}"));
                serde_json::from_str(&t).unwrap_or_else(|e| panic!("{f}: {e}"))
            };
            (
                read("pull_request/opened.json"),
                read("check_suite/rerequested.json"),
            )
        }
    };
    let head = opened["pull_request"]["head"]["sha"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let base = opened["pull_request"]["base"]["sha"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (api, w) = fake_github::start(hello_world(
        &head,
        &base,
        opened["number"].as_i64().unwrap_or(2),
    ))
    .await;
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &tmp.path().join("q.db"));
    let body = serde_json::to_vec(&opened).unwrap_or_default();
    assert_eq!(
        post(&app, "pull_request", "real-1", &body).1.trim(),
        "queued"
    );
    let run = completed_check(&w, &head).await;
    assert_eq!(run["conclusion"], "failure", "{run}");
    wait_for(&w, "the review", |world| world.reviews.len() == 1).await;
    {
        let world = fake_github::lock_pub(&w);
        assert_eq!(world.reviews[0]["comments"][0]["path"], "app.py");
        assert_eq!(world.reviews[0]["comments"][0]["line"], 5);
    }
    let mut ours = rerequested.clone();
    ours["check_suite"]["app"]["id"] = json!(APP_ID);
    let body = serde_json::to_vec(&ours).unwrap_or_default();
    assert_eq!(
        post(&app, "check_suite", "real-2", &body).1.trim(),
        "queued"
    );
    // A re-run starts a new check run (issue 15), completed like the first; the first stays as history.
    wait_for(
        &w,
        "a second check run, completed, for the re-run",
        |world| {
            world.check_runs.len() == 2
                && world
                    .check_runs
                    .values()
                    .all(|r| r["status"] == "completed")
        },
    )
    .await;
    settle(&w, Duration::from_millis(500)).await;
    let world = fake_github::lock_pub(&w);
    assert_eq!(world.reviews.len(), 1, "the re-run repeats no comment");
    drop(world);
    fake_github::assert_no_violations(&w);
}
