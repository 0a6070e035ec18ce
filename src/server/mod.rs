//! The App's HTTP side: webhook intake, health, readiness and metrics; graceful shutdown.

pub mod metrics;
pub mod signature;

use crate::github::events::{self, Intake};
use crate::queue::{JobStore, NewJob};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::Metrics;
use std::sync::Arc;
use tokio::sync::Notify;

/// GitHub does not send payloads above 25 MB; neither do we accept them.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// What the handlers share.
pub struct AppState {
    pub webhook_secret: String,
    pub app_id: u64,
    pub max_queue_depth: u64,
    /// The job store, once the database could be opened: until then the server answers, but not ready and
    /// 503 to webhooks (never a 2xx for work it could not store).
    pub store: tokio::sync::OnceCell<Arc<dyn JobStore>>,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    /// The App's key parsed (readiness).
    pub credentials_ok: bool,
}

/// The router: `POST {webhook_path}`, `GET /healthz`, `GET /readyz`, `GET /metrics`.
pub fn router(state: Arc<AppState>, webhook_path: &str) -> Router {
    Router::new()
        .route(webhook_path, post(webhook))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn reply(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    if !s.credentials_ok {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "App credentials not usable",
        );
    }
    let Some(store) = s.store.get() else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "database not available yet",
        );
    };
    if let Err(e) = store.ping().await {
        tracing::warn!(error = %e, "readiness: database unavailable");
        return reply(StatusCode::SERVICE_UNAVAILABLE, "database unavailable");
    }
    // Intake needs writes: a full disk or a read-only database file is not ready.
    match store.writable().await {
        Ok(()) => reply(StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database not writable");
            reply(StatusCode::SERVICE_UNAVAILABLE, "database not writable")
        }
    }
}

async fn metrics_text(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// Verify, classify, store durably, then answer: 202 once the job is in the database (or when there is
/// nothing to do), 401 bad signature, 415 not JSON, 400 malformed, 413 too large (by the body limit), 503 when
/// the database cannot store it (GitHub records a failed delivery that can be redelivered).
async fn webhook(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let event = headers
        .get("x-github-event")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let sig = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !signature::verify(s.webhook_secret.as_bytes(), &body, sig) {
        s.metrics.webhook(&event, "bad_signature");
        return reply(
            StatusCode::UNAUTHORIZED,
            "missing or invalid X-Hub-Signature-256",
        );
    }
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_type {
        s.metrics.webhook(&event, "unsupported_media_type");
        return reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "set the webhook content type to application/json",
        );
    }
    let Some(delivery) = headers
        .get("x-github-delivery")
        .and_then(|v| v.to_str().ok())
        .filter(|d| !d.is_empty() && d.len() <= 128)
    else {
        s.metrics.webhook(&event, "malformed");
        return reply(StatusCode::BAD_REQUEST, "missing X-GitHub-Delivery");
    };
    if event.is_empty() || event.len() > 64 {
        s.metrics.webhook("", "malformed");
        return reply(StatusCode::BAD_REQUEST, "missing X-GitHub-Event");
    }
    let payload: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            s.metrics.webhook(&event, "malformed");
            return reply(StatusCode::BAD_REQUEST, &format!("malformed JSON: {e}"));
        }
    };
    let intake = events::classify(&event, &payload, s.app_id);
    let Some(fields) = intake.job_fields() else {
        if let Intake::Ignore { reason } = &intake {
            tracing::info!(delivery, event = %event, reason = %reason, "webhook acknowledged, nothing to do");
        }
        s.metrics.webhook(&event, "ignored");
        return reply(StatusCode::ACCEPTED, "nothing to do");
    };
    let Some(store) = s.store.get() else {
        tracing::error!(delivery, event = %event, "database not available yet; answering 503 so GitHub can redeliver");
        s.metrics.webhook(&event, "store_failed");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "cannot store the delivery; redeliver later",
        );
    };
    let job = NewJob {
        delivery_id: delivery.to_string(),
        event: event.clone(),
        installation_id: fields.installation_id,
        repo: fields.repo,
        pr_number: fields.pr_number,
        head_sha: fields.head_sha,
        payload: fields.payload,
    };
    match store.enqueue_bounded(job, s.max_queue_depth).await {
        Ok(done) => {
            let outcome = match done.enqueued {
                crate::queue::Enqueued::New(_) => "queued",
                crate::queue::Enqueued::Coalesced(_) => "coalesced",
                crate::queue::Enqueued::Duplicate => "duplicate",
            };
            tracing::info!(delivery, event = %event, outcome, dropped = done.dropped, "webhook stored");
            s.metrics.webhook(&event, outcome);
            // notify_one keeps a permit when the worker loop is not waiting at this instant (claiming,
            // reading the queue depth), so a new job never waits for the next poll.
            s.wake.notify_one();
            reply(StatusCode::ACCEPTED, outcome)
        }
        Err(e) => {
            tracing::error!(delivery, error = %e, "cannot store the webhook; answering 503 so GitHub can redeliver");
            s.metrics.webhook(&event, "store_failed");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot store the delivery; redeliver later",
            )
        }
    }
}
