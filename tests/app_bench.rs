//! Request-count benchmark (issue 5): pull requests of 1, 10, 50 and 300 changed Python files against the
//! fake GitHub with 50 ms added to every answer. Measures GitHub requests per audit (by route) and the wall
//! time from the webhook to the completed check run. Ignored by default; run with
//! `bench/app_requests.sh` (release build) or
//! `cargo test --release --test app_bench -- --ignored --nocapture`.

mod fake_github;

use fake_github::harness::{App, completed_check_within, deliver, pr_event, settle};
use fake_github::{World, lock_pub};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LATENCY_MS: u64 = 50;

/// A realistic small FastAPI module; every tenth file also blocks the event loop on one added line.
fn module(i: usize, finding: bool) -> String {
    let mut s = format!(
        "from fastapi import APIRouter\n\nrouter = APIRouter()\n\n\n@router.get(\"/items/{i}\")\nasync def item_{i}(limit: int = 10) -> dict:\n    items = [n for n in range(limit)]\n    return {{\"id\": {i}, \"items\": items}}\n"
    );
    if finding {
        s.push_str(&format!(
            "\n\n@router.post(\"/items/{i}/refresh\")\nasync def refresh_{i}() -> dict:\n    import time\n    time.sleep(0.1)\n    return {{\"ok\": True}}\n"
        ));
    }
    s
}

fn world(n: usize, head: &str) -> World {
    let mut base = BTreeMap::new();
    let mut head_tree = BTreeMap::new();
    for i in 0..n {
        let path = format!("app/routes/r{i:03}.py");
        base.insert(
            path.clone(),
            module(i, false).replace("range(limit)", "range(limit or 1)"),
        );
        head_tree.insert(path, module(i, i % 10 == 0));
    }
    // An unchanged file and the base config, as in a real repository.
    base.insert("app/main.py".into(), "app = None\n".into());
    head_tree.insert("app/main.py".into(), "app = None\n".into());
    base.insert(".github/prodaudit.yml".into(), "fail_on: high\n".into());
    head_tree.insert(".github/prodaudit.yml".into(), "fail_on: high\n".into());
    let mut trees = std::collections::HashMap::new();
    trees.insert("base1".to_string(), base);
    trees.insert(head.to_string(), head_tree);
    World {
        repo: "acme/api".into(),
        base_sha: "base1".into(),
        head_sha: head.into(),
        pr_number: 7,
        trees,
        latency_ms: LATENCY_MS,
        ..Default::default()
    }
}

struct Row {
    files: usize,
    run: &'static str,
    requests: usize,
    to_check: usize,
    by_route: BTreeMap<String, usize>,
    wall: Duration,
}

async fn measure(
    app: &App,
    w: &fake_github::Shared,
    n: usize,
    head: &str,
    delivery: &str,
    action: &str,
    run: &'static str,
) -> Row {
    let before = lock_pub(w).requests.len();
    let t0 = Instant::now();
    assert_eq!(
        deliver(app, "pull_request", delivery, &pr_event(action, 7, head)),
        202
    );
    completed_check_within(w, head, Duration::from_secs(600)).await;
    settle(w, Duration::from_millis(1500)).await;
    let world = lock_pub(w);
    // The check run is complete once GitHub has taken the PATCH that completes it (it answers after the
    // injected latency); the review may follow it.
    let reqs = &world.requests[before..];
    let done = reqs
        .iter()
        .position(|r| r.method == "PATCH" && r.body["status"] == "completed")
        .unwrap_or(reqs.len().saturating_sub(1));
    let to_check = done + 1;
    let wall = reqs
        .get(done)
        .map(|r| r.at + Duration::from_millis(LATENCY_MS) - t0)
        .unwrap_or_else(|| t0.elapsed());
    let mut by_route = BTreeMap::new();
    for r in &world.requests[before..] {
        *by_route
            .entry(format!("{} {}", r.method, r.route))
            .or_default() += 1;
    }
    Row {
        files: n,
        run,
        requests: world.requests.len() - before,
        to_check,
        by_route,
        wall,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored (bench/app_requests.sh)"]
async fn bench_requests_per_audit() {
    let mut rows = Vec::new();
    for n in [1usize, 10, 50, 300] {
        let (api, w) =
            fake_github::start(world(n, "4ead100000000000000000000000000000000000")).await;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let app = App::start(&api, &dir.path().join("q.db"));
        rows.push(
            measure(
                &app,
                &w,
                n,
                "4ead100000000000000000000000000000000000",
                &format!("b{n}-1"),
                "opened",
                "first push (token fetched)",
            )
            .await,
        );
        {
            // A second push changes every file again: the token is cached, earlier comments exist.
            let mut world = lock_pub(&w);
            let mut tree = world.trees["4ead100000000000000000000000000000000000"].clone();
            for (p, t) in tree.iter_mut() {
                if p.ends_with(".py") && p.contains("/r") {
                    t.push_str("\n\nVERSION = 2\n");
                }
            }
            world
                .trees
                .insert("4ead200000000000000000000000000000000000".into(), tree);
            world.head_sha = "4ead200000000000000000000000000000000000".into();
        }
        rows.push(
            measure(
                &app,
                &w,
                n,
                "4ead200000000000000000000000000000000000",
                &format!("b{n}-2"),
                "synchronize",
                "next push (token cached)",
            )
            .await,
        );
        fake_github::assert_no_violations(&w);
    }
    println!(
        "\n| changed files | audit | GitHub requests | of which before the check completed | wall time webhook → check completed | round trips of {LATENCY_MS} ms | requests by route |"
    );
    println!("|---:|---|---:|---:|---:|---:|---|");
    for r in &rows {
        let routes: Vec<String> = r
            .by_route
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        println!(
            "| {} | {} | {} | {} | {} ms | {:.1} | {} |",
            r.files,
            r.run,
            r.requests,
            r.to_check,
            r.wall.as_millis(),
            r.wall.as_secs_f64() * 1000.0 / LATENCY_MS as f64,
            routes.join("<br>")
        );
    }
}
