//! Logs (LOG_FORMAT=json): every line a job writes carries its delivery id, repository, pull request and
//! installation; no token, JWT, private key or webhook secret ever appears.

mod fake_github;

use fake_github::Fault;
use fake_github::harness::{
    App, Options, SECRET, completed_check, deliver, pr_event, sample_world, settle,
};
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_logs_carry_their_context_and_no_secrets() {
    let mut world = sample_world();
    // A retried call and a slash command make the job log warnings and more lines.
    world
        .faults
        .push_back(Fault::new("GET", "/pulls/7/files", 502));
    let (api, w) = fake_github::start(world).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let log = dir.path().join("serve.log");
    let mut app = App::start_with(
        &api,
        &dir.path().join("q.db"),
        Options {
            env: vec![
                ("LOG_FORMAT".into(), "json".into()),
                ("LOG_LEVEL".into(), "debug".into()),
            ],
            log: Some(log),
            ..Default::default()
        },
    );
    assert_eq!(
        deliver(
            &app,
            "pull_request",
            "log-d1",
            &pr_event("opened", 7, "4ead100000000000000000000000000000000000")
        ),
        202
    );
    completed_check(&w, "4ead100000000000000000000000000000000000").await;
    settle(&w, Duration::from_millis(500)).await;
    let cmd = json!({
        "action": "created",
        "installation": {"id": 99},
        "repository": {"full_name": "acme/api"},
        "issue": {"number": 7, "pull_request": {"url": "x"}},
        "comment": {"id": 77, "body": "/audit help", "user": {"login": "reader", "type": "User"}},
    });
    assert_eq!(deliver(&app, "issue_comment", "log-d2", &cmd), 202);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake_github::lock_pub(&w).issue_comments.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the command was not answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    settle(&w, Duration::from_millis(500)).await;
    app.terminate();
    let text = app.log_text();

    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    // Lines written while a job runs: in the job span, or from the code that only runs inside jobs.
    let in_job = |l: &Value| {
        let target = l["target"].as_str().unwrap_or("");
        l["span"]["name"] == "job"
            || target.starts_with("prodaudit::github")
            || (target == "prodaudit::worker"
                && !l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("claim") || m.contains("shutdown")))
    };
    let job_lines: Vec<&Value> = lines.iter().filter(|l| in_job(l)).collect();
    assert!(
        job_lines.len() >= 4,
        "too few job lines to mean anything: {job_lines:#?}"
    );
    assert!(
        job_lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("retrying GitHub call"))),
        "the retried call was logged"
    );
    let mut deliveries = std::collections::BTreeSet::new();
    for l in &job_lines {
        let span = &l["span"];
        assert_eq!(span["name"], "job", "line outside a job span: {l}");
        assert_eq!(span["repo"], "acme/api", "{l}");
        assert_eq!(span["pr"], 7, "{l}");
        assert_eq!(span["installation"], 99, "{l}");
        let d = span["delivery"].as_str().unwrap_or_default();
        assert!(d == "log-d1" || d == "log-d2", "{l}");
        deliveries.insert(d.to_string());
    }
    assert_eq!(deliveries.len(), 2, "both jobs logged");

    // No secrets, anywhere in the log.
    let world = fake_github::lock_pub(&w);
    assert!(world.tokens_issued >= 1);
    for n in 1..=world.tokens_issued {
        assert!(
            !text.contains(&format!("ghs_test{n}")),
            "an installation token was logged"
        );
    }
    let jwts: Vec<&str> = world
        .requests
        .iter()
        .filter_map(|r| r.authorization.strip_prefix("Bearer ey"))
        .collect();
    assert!(!jwts.is_empty());
    for j in jwts {
        assert!(!text.contains(j), "the App JWT was logged");
    }
    assert!(
        !text.contains("Bearer"),
        "an Authorization header was logged"
    );
    let key = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/test-app-key.pem"
    ))
    .unwrap_or_default();
    assert!(!text.contains("PRIVATE KEY"));
    for line in key
        .lines()
        .filter(|l| l.len() > 20 && !l.starts_with("-----"))
    {
        assert!(!text.contains(line), "part of the private key was logged");
    }
    assert!(!text.contains(SECRET), "the webhook secret was logged");
}
