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

pub use crate::config::HttpLimits;

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
/// nothing to do), 401 bad signature, 415 not JSON, 400 malformed, 422 impossible values (a pull request
/// number ≤ 0, a head that is not a commit SHA, …), 413 too large (by the body limit), 503 when
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
        // Nothing the request says is trusted yet: not even its event name becomes a label.
        s.metrics.webhook_unverified();
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
    if let Intake::Invalid { reason } = &intake {
        tracing::warn!(delivery, event = %event, reason = %reason, "webhook refused: impossible values");
        s.metrics.webhook(&event, "invalid");
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("invalid payload: {reason}"),
        );
    }
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

/// Serve `app` on `listener` until `shutdown` completes, within `limits`: at most `max_connections` connections
/// at once (so the process keeps file descriptors for its own work); at the cap, the oldest connection is asked
/// to close (at once when it is idle or has sent nothing, after its answer when a request is in flight) to
/// make room, so idle sockets cannot keep `/healthz` or GitHub out. A deadline for each request's headers
/// (which also closes kept-alive connections left idle), one for each request's body, and one for the whole
/// request. On shutdown, stop accepting and let open connections finish their requests.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: &HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use std::collections::VecDeque;
    use tower::ServiceExt as _;
    type Open = Arc<std::sync::Mutex<VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>>>;
    fn open_lock(
        o: &Open,
    ) -> std::sync::MutexGuard<'_, VecDeque<(u64, tokio::sync::oneshot::Sender<()>)>> {
        match o.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
    let app = app
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
            limits.body_timeout,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ));
    let max = limits
        .max_connections
        .clamp(1, tokio::sync::Semaphore::MAX_PERMITS);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    // Connections in the order they were accepted, each with the way to ask it to close.
    let open: Open = Arc::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // At the cap: make room by closing the oldest connection (gracefully).
                if let Some((_, close)) = open_lock(&open).pop_front() {
                    let _ = close.send(());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a little rather than spin; the slot goes back.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    drop(permit);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let (close_tx, mut close_rx) = tokio::sync::oneshot::channel();
        open_lock(&open).push_back((id, close_tx));
        let service = hyper::service::service_fn({
            let app = app.clone();
            move |req: http::Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { app.oneshot(req.map(axum::body::Body::new)).await }
            }
        });
        let builder = builder.clone();
        let open = open.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            let mut closing = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = &mut close_rx, if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = stop.changed(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            open_lock(&open).retain(|(i, _)| *i != id);
            drop(permit);
        });
    }
    drop(listener);
    // Every connection finishes its request in flight and closes; wait for them (bounded).
    let _ = stop_tx.send(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(
        limits.request_timeout + std::time::Duration::from_secs(5),
        slots.acquire_many(all),
    )
    .await;
    Ok(())
}
