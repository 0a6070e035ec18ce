//! `prodaudit serve`: settings, database, GitHub client, workers and the HTTP server, with graceful shutdown.

use crate::analysis::RuleSet;
use crate::config::{LogFormat, Settings};
use crate::github::GitHub;
use crate::github::auth::AppAuth;
use crate::github::client::ClientOptions;
use crate::github::review::Reviewer;
use crate::server::metrics::Metrics;
use crate::server::{AppState, router};
use crate::worker::{Worker, WorkerOptions};
use anyhow::Context as _;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

/// The log directive that keeps sqlx's connect-option parser (which quotes values) out of the log.
const QUIET_SQLX_OPTIONS: &str = "sqlx_postgres::options=error";

/// Start logging as the settings say (JSON by default), never printing secrets.
pub fn init_logging(settings: &Settings) {
    let mut filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // sqlx logs the value of a connect parameter it does not know (`sslpassword=…` in DATABASE_URL) at warn
    // level: never let it.
    if let Ok(quiet) = QUIET_SQLX_OPTIONS.parse() {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Run the App until SIGTERM or SIGINT.
pub async fn serve(
    settings: Settings,
    rules: RuleSet,
    runner: crate::sandbox::AnalysisRunner,
) -> anyhow::Result<()> {
    tracing::info!(settings = ?settings, "starting");
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    crate::worker::install_panic_hook();
    let metrics = Arc::new(Metrics::new());
    let auth = AppAuth::new(settings.app_id, &settings.private_key)?;
    let opts = ClientOptions {
        timeout: settings.github_timeout,
        secondary_rate_limit_wait: settings.secondary_rate_limit_wait,
        ..Default::default()
    };
    let gh = Arc::new(GitHub::new(
        &settings.github_api_url,
        auth,
        opts,
        metrics.clone(),
    )?);
    let wake = Arc::new(Notify::new());
    let state = Arc::new(AppState {
        webhook_secret: settings.webhook_secret.clone(),
        app_id: settings.app_id,
        max_queue_depth: settings.max_queue_depth,
        store: tokio::sync::OnceCell::new(),
        metrics: metrics.clone(),
        wake: wake.clone(),
        credentials_ok: true,
    });
    let app = router(state.clone(), &settings.webhook_path);
    let addr = std::net::SocketAddr::new(settings.host, settings.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, path = %settings.webhook_path, "listening");

    // Listen before the database is open: probes see "not ready" and webhooks get 503 (GitHub records a
    // failed delivery that can be redelivered) instead of connection errors or a crash loop.
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let limits = settings.http.clone();
    tracing::info!(
        max_connections = limits.max_connections,
        header_timeout_s = limits.header_timeout.as_secs(),
        body_timeout_s = limits.body_timeout.as_secs(),
        request_timeout_s = limits.request_timeout.as_secs(),
        "HTTP limits"
    );
    let server = tokio::spawn(async move {
        crate::server::serve_http(listener, app, &limits, async move {
            shutdown_signal().await;
            tracing::info!("shutting down: intake closed, draining running audits");
            let _ = stop_tx.send(true);
        })
        .await
    });
    // The database may not be up yet (a container starting beside it): retry with capped backoff until it
    // answers or the process is told to stop.
    let store = {
        let mut attempt = 0u32;
        loop {
            match crate::queue::open(&settings.database_url).await {
                Ok(s) => break Some(s),
                Err(e @ crate::queue::QueueError::UnsupportedUrl { .. }) => {
                    server.abort();
                    // The message quotes the URL: never with its credentials.
                    return Err(anyhow::anyhow!(crate::config::redact_text(
                        &e.to_string(),
                        &settings.database_url
                    )))
                    .context("DATABASE_URL");
                }
                Err(e) => {
                    let e = crate::config::redact_text(&e.to_string(), &settings.database_url);
                    attempt = attempt.saturating_add(1);
                    let wait = crate::queue::backoff(
                        attempt,
                        std::time::Duration::from_millis(500),
                        std::time::Duration::from_secs(10),
                    );
                    tracing::warn!(error = %e, attempt, "database not available yet; not ready, retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop_rx.changed() => break None,
                    }
                }
            }
        }
    };
    let Some(store) = store else {
        let _ = server.await;
        tracing::info!("stopped before the database was available");
        return Ok(());
    };
    let _ = state.store.set(store.clone());
    tracing::info!("database open; ready");
    let rules = Arc::new(rules);
    let reviewer = Arc::new(Reviewer {
        gh: gh.clone(),
        rules,
        store: store.clone(),
        runner,
        model_cache: Default::default(),
    });
    let worker_id = format!("{}-{}", hostname(), std::process::id());
    let worker = Arc::new(Worker {
        store: store.clone(),
        reviewer,
        gh,
        metrics,
        opts: WorkerOptions {
            lease: settings.job_lease,
            ..WorkerOptions::new(
                worker_id,
                settings.workers,
                settings.per_installation,
                settings.job_timeout,
                settings.max_attempts,
            )
        },
        wake,
    });
    let workers = tokio::spawn(worker.run(stop_rx, settings.shutdown_grace));
    let served = server.await;
    let _ = workers.await;
    store.close().await;
    tracing::info!("stopped");
    match served {
        Ok(r) => r.context("HTTP server failed"),
        Err(e) => Err(anyhow::anyhow!("HTTP server task failed: {e}")),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "prodaudit".into())
}
