//! Poison jobs: a pull request whose analysis kills its process (here: exhausts the analysis child's memory
//! limit, or takes the whole server down mid-audit) is given up after `MAX_ATTEMPTS`, its check run is
//! completed neutral with the reason, no review is posted, and other pull requests in the queue are audited.

mod fake_github;

use fake_github::World;
use fake_github::harness::{App, Options, completed_check_within, deliver};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const REPO: &str = "acme/api";
const CLEAN_PY: &str =
    "import asyncio\n\n\nasync def a():\n    await asyncio.sleep(1)\n    return 1\n";

/// About 1.9 MB of ordinary Python (under the 2 MiB file limit): its syntax tree alone needs far more than
/// the 100 MiB the tests give the analysis child, while a small file needs less than half of it.
fn heavy_python() -> String {
    let mut text = String::from("import time\nimport requests\n\n");
    let mut i = 0;
    while text.len() < 1_900_000 {
        text.push_str(&format!(
            "async def f{i}(u):\n    x = [requests.get(u) for _ in range(3)]\n    time.sleep(1)\n    return {{'a': [1, 2, 3], 'b': (4, 5)}}\n\n"
        ));
        i += 1;
    }
    text
}

/// Heads are commit SHAs: intake refuses anything else.
const POISON: &str = "0000000000000000000000000000000000000bad";
const CLEAN: &str = "00000000000000000000000000000000000000c1";

fn world() -> World {
    let mut trees = std::collections::HashMap::new();
    trees.insert(
        "base1".to_string(),
        BTreeMap::from([("README.md".to_string(), "# api\n".to_string())]),
    );
    trees.insert(
        POISON.to_string(),
        BTreeMap::from([
            ("README.md".to_string(), "# api\n".to_string()),
            ("app/heavy.py".to_string(), heavy_python()),
        ]),
    );
    trees.insert(
        CLEAN.to_string(),
        BTreeMap::from([
            ("README.md".to_string(), "# api\n".to_string()),
            ("app/ok.py".to_string(), CLEAN_PY.to_string()),
        ]),
    );
    World {
        repo: REPO.into(),
        base_sha: "base1".into(),
        head_sha: POISON.into(),
        pr_number: 7,
        trees,
        other_pulls: BTreeMap::from([(8, ("base1".to_string(), CLEAN.to_string()))]),
        ..Default::default()
    }
}

fn pr_payload(number: i64, head: &str) -> Value {
    json!({
        "action": "opened",
        "installation": {"id": 99},
        "repository": {"full_name": REPO},
        "pull_request": {"number": number, "state": "open", "draft": false, "head": {"sha": head}, "base": {"sha": "base1", "ref": "main"}},
    })
}

/// The job rows of the queue (id, state, attempts, last error), read with the sqlite3-free library API.
async fn jobs(db: &std::path::Path) -> Vec<(i64, String, u32, String)> {
    let store = match prodaudit::queue::open(&db.display().to_string()).await {
        Ok(s) => s,
        Err(e) => panic!("cannot open the queue: {e}"),
    };
    let mut out = Vec::new();
    for id in 1..=10 {
        if let Ok(Some(j)) = store.job(id).await {
            out.push((
                j.id,
                j.state.as_str().to_string(),
                j.attempts,
                j.last_error.unwrap_or_default(),
            ));
        }
    }
    store.close().await;
    out
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysis_that_exhausts_its_child_is_given_up_and_the_queue_goes_on() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("q.db");
    let log = dir.path().join("serve.log");
    let app = App::start_with(
        &api,
        &db,
        Options {
            env: vec![
                ("ANALYSIS_MEMORY_MIB".into(), "100".into()),
                ("MAX_ATTEMPTS".into(), "2".into()),
                ("LOG_FORMAT".into(), "json".into()),
                ("LOG_LEVEL".into(), "info".into()),
            ],
            log: Some(log.clone()),
            ..Default::default()
        },
    );
    assert_eq!(
        deliver(&app, "pull_request", "d-7", &pr_payload(7, POISON)),
        202
    );
    assert_eq!(
        deliver(&app, "pull_request", "d-8", &pr_payload(8, CLEAN)),
        202
    );

    // The other pull request is audited while (or after) the poison one fails.
    let clean = completed_check_within(&w, CLEAN, Duration::from_secs(120)).await;
    assert_eq!(clean["conclusion"], "success", "{clean}");

    let poison = completed_check_within(&w, POISON, Duration::from_secs(120)).await;
    assert_eq!(poison["conclusion"], "neutral", "{poison}");
    let summary = poison["output"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("This pull request could not be audited")
            && summary.contains("exceeded the memory limit of 100 MiB")
            && summary.contains("attempt 2 of 2"),
        "{summary}"
    );
    assert!(
        fake_github::lock_pub(&w).reviews.is_empty(),
        "no review for either"
    );

    // The server is still up, and the job is dead after exactly MAX_ATTEMPTS claims.
    assert_eq!(
        fake_github::harness::get_status(&format!("{}/healthz", app.url)).ok(),
        Some(200)
    );
    let rows = jobs(&db).await;
    let poison_job = rows
        .iter()
        .find(|r| r.1 == "dead")
        .unwrap_or_else(|| panic!("no dead job: {rows:?}"));
    assert_eq!(poison_job.2, 2, "{rows:?}");
    assert!(poison_job.3.contains("memory limit"), "{rows:?}");
    assert!(rows.iter().any(|r| r.1 == "done"), "{rows:?}");

    // The log says which job started before its analysis ran, and names the job whose analysis died.
    let lines = json_lines(&app.log_text());
    let id = poison_job.0;
    let started: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "job started" && l["job"] == id)
        .collect();
    assert_eq!(started.len(), 2, "one line per attempt");
    assert!(
        started
            .iter()
            .any(|l| l["attempt"] == 1 && l["head"] == POISON)
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "analysis process failed"
                && l["job"] == id
                && l["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("memory limit"))),
        "{}",
        app.log_text()
    );
}

/// The server itself dies during the audit (SIGKILL, as an abort or the OOM killer would): after the
/// restart, the claim that finds the attempts used up gives the job up and completes its check run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_took_the_server_down_is_given_up_at_its_next_claim() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = dir.path().join("q.db");
    let log = dir.path().join("serve.log");
    let opts = Options {
        env: vec![
            ("MAX_ATTEMPTS".into(), "1".into()),
            ("LOG_FORMAT".into(), "json".into()),
            ("LOG_LEVEL".into(), "info".into()),
        ],
        log: Some(log.clone()),
        ..Default::default()
    };
    let mut app = App::start_with(&api, &db, opts.clone());
    assert_eq!(
        deliver(&app, "pull_request", "d-7", &pr_payload(7, POISON)),
        202
    );
    // Kill the server once the audit has started (its check run is in progress).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = fake_github::lock_pub(&w)
            .check_runs
            .values()
            .any(|r| r["head_sha"] == POISON);
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "the audit never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.kill();
    assert!(
        fake_github::lock_pub(&w)
            .check_runs
            .values()
            .all(|r| r["status"] != "completed"),
        "the audit finished before the kill; the test proves nothing"
    );

    let restarted = App::start_with(
        &api,
        &db,
        Options {
            log: Some(dir.path().join("serve2.log")),
            ..opts
        },
    );
    let run = completed_check_within(&w, POISON, Duration::from_secs(60)).await;
    assert_eq!(run["conclusion"], "neutral", "{run}");
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("could not be audited")
            && summary.contains("stopped the worker")
            && summary.contains("after 1 attempt"),
        "{summary}"
    );
    assert!(fake_github::lock_pub(&w).reviews.is_empty());
    let rows = jobs(&db).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].1.as_str(), rows[0].2), ("dead", 1), "{rows:?}");
    // The restarted server never started the audit again.
    let lines = json_lines(&restarted.log_text());
    assert!(
        !lines.iter().any(|l| l["message"] == "job started"),
        "{}",
        restarted.log_text()
    );
    assert!(
        lines.iter().any(
            |l| l["message"] == "job given up: its attempts stopped the worker" && l["job"] == 1
        )
    );
}
