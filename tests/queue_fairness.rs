//! Back-pressure at the HTTP intake: past `MAX_QUEUE_DEPTH` every signed delivery is still acknowledged with
//! 202 and stored (GitHub must not see failures for load it caused), and only audits whose head was
//! superseded are dropped. Runs on SQLite, then on PostgreSQL when `PROD_AUDIT_TEST_PG` (default
//! `postgres://postgres@127.0.0.1:5432/test`) answers (a fresh database, dropped afterwards).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use prodaudit::queue::{JobState, JobStore, QueueOptions, open_with};
use prodaudit::server::metrics::Metrics;
use prodaudit::server::signature::sign;
use prodaudit::server::{AppState, router};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt as _;

const SECRET: &str = "depth-secret";
const PATH: &str = "/api/github/webhooks";
const MAX_DEPTH: u64 = 5;

fn app(store: Arc<dyn JobStore>) -> axum::Router {
    let state = Arc::new(AppState {
        webhook_secret: SECRET.into(),
        app_id: 1,
        max_queue_depth: MAX_DEPTH,
        store: store.into(),
        metrics: Arc::new(Metrics::new()),
        wake: Arc::new(tokio::sync::Notify::new()),
        credentials_ok: true,
    });
    router(state, PATH)
}

/// Delivers a signed `pull_request synchronize`; returns (status, body).
async fn deliver(app: &axum::Router, delivery: &str, pr: i64, head: &str) -> (StatusCode, String) {
    let body = json!({
        "action": "synchronize",
        "installation": {"id": 5},
        "repository": {"full_name": "acme/api"},
        "pull_request": {"number": pr, "state": "open", "draft": false,
                         "head": {"sha": head}, "base": {"sha": "base", "ref": "main"}},
    })
    .to_string();
    let request = Request::post(PATH)
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            sign(SECRET.as_bytes(), body.as_bytes()),
        )
        .header("content-type", "application/json")
        .body(Body::from(body));
    let request = request.unwrap_or_else(|e| panic!("{e}"));
    let response = app
        .clone()
        .oneshot(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).trim().to_string())
}

async fn past_max_depth_intake_acknowledges_and_drops_superseded_first(url: &str, backend: &str) {
    let store = open_with(url, &QueueOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{backend}: {e}"));
    let app = app(Arc::clone(&store));

    // A slow worker audits head aaa of pull request 1 and outlives its lease; head bbb arrives and is claimed
    // by another worker: the audit of aaa is superseded.
    assert_eq!(
        deliver(&app, "d-old", 1, "aaa0000000000000000000000000000000000000")
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let old = store
        .claim("slow", Duration::from_millis(1500), 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{backend}: nothing to claim"));
    assert_eq!(
        deliver(&app, "d-new", 1, "bbb0000000000000000000000000000000000000").await,
        (StatusCode::ACCEPTED, "queued".to_string())
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let newer = store
        .claim("fast", Duration::from_secs(60), 100)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{backend}: the newer head was not claimable"));
    assert_eq!(
        newer.head_sha.as_deref(),
        Some("bbb0000000000000000000000000000000000000")
    );

    // Twice the depth of new work: every delivery is acknowledged and stored.
    let mut ids = Vec::new();
    for pr in 2..(2 + 2 * MAX_DEPTH as i64) {
        let (status, body) = deliver(
            &app,
            &format!("d-{pr}"),
            pr,
            "4ead000000000000000000000000000000000000",
        )
        .await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::ACCEPTED, "queued"),
            "{backend}"
        );
        ids.push(pr);
    }
    let depth = store.depth().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        depth.queued,
        2 * MAX_DEPTH,
        "{backend}: every acknowledged delivery is queued"
    );
    let old = store
        .job(old.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{backend}: the old job vanished"));
    assert_eq!(
        old.state,
        JobState::Dropped,
        "{backend}: the superseded audit goes first"
    );
    let newer = store
        .job(newer.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("{backend}: the newer job vanished"));
    assert_eq!(newer.state, JobState::Running, "{backend}");
    // Nothing else was dropped: a redelivery is still recognised, a new delivery still stored.
    assert_eq!(
        deliver(&app, "d-2", 2, "4ead000000000000000000000000000000000000").await,
        (StatusCode::ACCEPTED, "duplicate".to_string())
    );
    assert_eq!(
        deliver(
            &app,
            "d-extra",
            99,
            "4ead000000000000000000000000000000000000"
        )
        .await,
        (StatusCode::ACCEPTED, "queued".to_string())
    );
    assert_eq!(
        store.depth().await.unwrap_or_else(|e| panic!("{e}")).queued,
        2 * MAX_DEPTH + 1,
        "{backend}"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_depth_intake_still_acknowledges_and_stores() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("q.db").display());
    past_max_depth_intake_acknowledges_and_drops_superseded_first(&sqlite, "sqlite").await;

    let admin = std::env::var("PROD_AUDIT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let conn = tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(&admin)).await;
    let mut conn = match conn {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            eprintln!("skipping the PostgreSQL run: cannot connect to {admin}: {e}");
            return;
        }
        Err(_) => {
            eprintln!("skipping the PostgreSQL run: {admin} did not answer within 3 s");
            return;
        }
    };
    let name = format!("pa_depth_{:016x}", rand::random::<u64>());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create {name}: {e}"));
    let Some((server, _)) = admin.rsplit_once('/') else {
        panic!("{admin} is not a database URL")
    };
    let url = format!("{server}/{name}");
    let outcome = tokio::spawn(async move {
        past_max_depth_intake_acknowledges_and_drops_superseded_first(&url, "postgres").await;
    })
    .await;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    if let Err(e) = sqlx::query(AssertSqlSafe(drop)).execute(&mut conn).await {
        eprintln!("cannot drop {name}: {e}");
    }
    if let Err(join) = outcome {
        std::panic::resume_unwind(join.into_panic());
    }
}
