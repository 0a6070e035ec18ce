//! Code a pull request moved rather than wrote, in the App (`prodaudit serve` against the in-process fake GitHub):
//! a function moved out of a removed module keeps its old problem uncommented, a problem the move creates is
//! commented, and the check run's summary counts what was held back.

mod fake_github;

use fake_github::harness::{
    App, completed_check, deliver, files, inline_comments, pull_request_opened, settle,
};
use fake_github::{World, assert_no_violations};
use std::time::Duration;

const REPO: &str = "acme/api";
const HEAD: &str = "40de200000000000000000000000000000000000";

const ENTRY: &str = "from fastapi import FastAPI\nfrom app import api\n\napp = FastAPI()\napp.include_router(api.router)\n";
const API_BASE: &str = "import time\nfrom fastapi import APIRouter\n\nrouter = APIRouter()\n";
/// Removed by the pull request: a route with a blocking sleep (C5-blocking-sleep, high) and a sync helper.
const LEGACY: &str = "import time\nfrom fastapi import APIRouter\n\nrouter = APIRouter()\n\n\n@router.get(\"/slow\")\nasync def slow():\n    time.sleep(1)\n    return 1\n\n\ndef nap():\n    time.sleep(2)\n";
/// Both moved here: `slow` as it was (line 9), `nap` made `async` and routed (line 15: a new problem).
const API_HEAD: &str = "import time\nfrom fastapi import APIRouter\n\nrouter = APIRouter()\n\n\n@router.get(\"/slow\")\nasync def slow():\n    time.sleep(1)\n    return 1\n\n\n@router.get(\"/nap\")\nasync def nap():\n    time.sleep(2)\n";

fn world() -> World {
    let mut trees = std::collections::HashMap::new();
    trees.insert(
        "base2".to_string(),
        files(&[
            ("app/__init__.py", ""),
            ("app/entry.py", ENTRY),
            ("app/api.py", API_BASE),
            ("app/legacy.py", LEGACY),
        ]),
    );
    trees.insert(
        HEAD.to_string(),
        files(&[
            ("app/__init__.py", ""),
            ("app/entry.py", ENTRY),
            ("app/api.py", API_HEAD),
        ]),
    );
    World {
        repo: REPO.into(),
        base_sha: "base2".into(),
        head_sha: HEAD.into(),
        pr_number: 8,
        trees,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_function_keeps_its_old_problem_uncommented() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let app = App::start(&api, &dir.path().join("q.db"));
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "mv-1",
            &pull_request_opened(REPO, 8, HEAD, "base2")
        ),
        202
    );
    let run = completed_check(&w, HEAD).await;
    settle(&w, Duration::from_millis(700)).await;
    let posted = inline_comments(&w);
    let at: Vec<(&str, u64)> = posted.iter().map(|(p, l, _)| (p.as_str(), *l)).collect();
    assert_eq!(at, vec![("app/api.py", 15)], "{posted:?} {run}");
    assert!(posted[0].2.contains("C5"), "{posted:?}");
    let summary = run["output"]["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("1 finding(s) held back: this pull request moved their code"),
        "{summary}"
    );
    assert_no_violations(&w);
}
