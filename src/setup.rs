//! `prodaudit setup`: register the GitHub App in one step with GitHub's App manifest flow.
//!
//! 1. A page on `http://127.0.0.1:PORT/` holds a form that posts the manifest (built from `app.yml`: name,
//!    description, home page, permissions, events; the webhook URL given with `--webhook-url`; the redirect back
//!    to this page) to GitHub's "new App" page of the user or the organisation, with a random `state`.
//! 2. GitHub creates the App and redirects the browser to `/callback?code=…&state=…`. A `state` other than ours is
//!    refused (another site cannot complete someone's setup with its own code).
//! 3. The code is exchanged once through `POST {GITHUB_API_URL}/app-manifests/{code}/conversions`, which answers the
//!    App's id, private key (PEM) and webhook secret (GitHub generates the secret; the manifest has no field for
//!    one).
//! 4. The key is saved with mode 0600 beside the `.env` file, `.env` gets `APP_ID`, `PRIVATE_KEY_PATH` and
//!    `WEBHOOK_SECRET` (and `GITHUB_API_URL` / `WEBHOOK_PATH` where they are not the defaults), checked with the
//!    settings loader `prodaudit serve` uses, and the install URL is printed.
//!
//! `GITHUB_URL` (default `https://github.com`) and `GITHUB_API_URL` (default `https://api.github.com`, or
//! `GITHUB_URL/api/v3` when only `GITHUB_URL` is set) point it at GitHub Enterprise Server.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The App manifest of this repository (Probot's `app.yml` format), compiled in.
const APP_YML: &str = include_str!("../app.yml");
const USER_AGENT: &str = concat!("prodaudit/", env!("CARGO_PKG_VERSION"));
/// Time limit of the code exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from GitHub.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// The default webhook path of `prodaudit serve`.
const DEFAULT_WEBHOOK_PATH: &str = "/api/github/webhooks";

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{} exists already: pass --force to replace it", .0.display())]
    EnvExists(PathBuf),
    #[error("--webhook-url {0:?} is not valid: {1}")]
    WebhookUrl(String, String),
    #[error("{name}={value:?} is not valid: {problem}")]
    Setting {
        name: &'static str,
        value: String,
        problem: String,
    },
    #[error("app.yml compiled into this program is not valid: {0}")]
    AppYml(String),
    #[error("cannot listen on 127.0.0.1:{port}: {source} (choose another with --port)")]
    Bind { port: u16, source: std::io::Error },
    #[error("the local setup server failed: {0}")]
    Serve(std::io::Error),
    #[error(
        "GitHub did not accept the code (HTTP {status}: {message}). A code works once and for an hour: \
         run `prodaudit setup` again"
    )]
    Refused { status: u16, message: String },
    #[error("cannot reach GitHub at {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("GitHub's answer is not what was expected: {0}")]
    Answer(String),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the settings written to {} do not work: {problem}", path.display())]
    Invalid { path: PathBuf, problem: String },
}

/// What `prodaudit setup` was asked.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The local port (0: any free one).
    pub port: u16,
    /// Where GitHub sends webhooks: `prodaudit serve`'s public URL and webhook path.
    pub webhook_url: String,
    /// Register the App for this organisation (else for the signed-in user).
    pub org: Option<String>,
    /// The App's name (default: app.yml's); GitHub's page lets the user change it.
    pub name: Option<String>,
    /// The `.env` file to write.
    pub env_file: PathBuf,
    /// Replace an existing `.env` (and key file).
    pub force: bool,
    /// GitHub's web address (`GITHUB_URL`).
    pub github_url: String,
    /// GitHub's REST API (`GITHUB_API_URL`).
    pub api_url: String,
}

impl SetupOptions {
    /// GitHub's addresses from `GITHUB_URL` / `GITHUB_API_URL` read through `get`.
    pub fn github_urls(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(String, String), SetupError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().trim_end_matches('/').to_string())
                .filter(|v| !v.is_empty())
        };
        let web = get("GITHUB_URL");
        let api = match (get("GITHUB_API_URL"), &web) {
            (Some(api), _) => api,
            (None, Some(web)) if web != "https://github.com" => format!("{web}/api/v3"),
            (None, _) => "https://api.github.com".to_string(),
        };
        let web = web.unwrap_or_else(|| "https://github.com".to_string());
        for (name, value) in [("GITHUB_URL", &web), ("GITHUB_API_URL", &api)] {
            if !(value.starts_with("https://") || value.starts_with("http://")) {
                return Err(SetupError::Setting {
                    name,
                    value: crate::config::redact_url(value),
                    problem: "must be an http(s) URL".into(),
                });
            }
        }
        Ok((web, api))
    }
}

/// What a finished setup produced.
#[derive(Debug, Clone)]
pub struct SetupResult {
    pub app_id: u64,
    pub env_file: PathBuf,
    pub key_file: PathBuf,
    /// Where to install the App (`html_url` + `/installations/new`).
    pub install_url: String,
}

/// The subset of `app.yml` the manifest is built from.
#[derive(Debug, Deserialize)]
struct AppYml {
    name: String,
    #[serde(default)]
    description: String,
    url: String,
    #[serde(default)]
    public: bool,
    default_events: Vec<String>,
    default_permissions: serde_json::Map<String, serde_json::Value>,
}

/// The manifest posted to GitHub (see GitHub's "Registering a GitHub App from a manifest").
pub fn manifest(opts: &SetupOptions, redirect_url: &str) -> Result<serde_json::Value, SetupError> {
    let app: AppYml =
        serde_saphyr::from_str(APP_YML).map_err(|e| SetupError::AppYml(e.to_string()))?;
    Ok(serde_json::json!({
        "name": opts.name.clone().unwrap_or(app.name),
        "url": app.url,
        "description": app.description,
        "public": app.public,
        "hook_attributes": {"url": opts.webhook_url, "active": true},
        "redirect_url": redirect_url,
        "default_events": app.default_events,
        "default_permissions": app.default_permissions,
    }))
}

/// Where the manifest form posts: the organisation's or the user's "new GitHub App" page, with our `state`.
pub fn new_app_url(github_url: &str, org: Option<&str>, state: &str) -> String {
    match org {
        Some(org) => format!(
            "{github_url}/organizations/{}/settings/apps/new?state={state}",
            percent_encode(org)
        ),
        None => format!("{github_url}/settings/apps/new?state={state}"),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Check the webhook URL: absolute http(s), with a host. Returns its path.
fn webhook_path(url: &str) -> Result<String, SetupError> {
    let bad = |why: &str| SetupError::WebhookUrl(url.to_string(), why.to_string());
    let uri: http::Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) {
        return Err(bad(
            "it must start with https:// (GitHub delivers webhooks to it)",
        ));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    let path = uri.path();
    Ok(if path.is_empty() || path == "/" {
        "/".to_string()
    } else {
        path.to_string()
    })
}

struct Flow {
    opts: SetupOptions,
    /// `127.0.0.1:PORT`: the only `Host` answered (a page elsewhere that rebinds its own name to 127.0.0.1 could
    /// otherwise read the state and send its own code).
    host: String,
    state: String,
    redirect_url: String,
    /// Set once the App has been created; later callbacks are turned away.
    done: Mutex<Option<SetupResult>>,
    /// The exchange in progress (a second callback must not exchange a second code at the same time).
    busy: tokio::sync::Mutex<()>,
    finished: tokio::sync::Notify,
}

/// Run the flow: serve the page until GitHub's redirect has been handled, then return what was written.
/// `listening` is called with the page's address once the server accepts connections.
pub async fn run(
    opts: SetupOptions,
    listening: impl FnOnce(&str),
) -> Result<SetupResult, SetupError> {
    if opts.env_file.exists() && !opts.force {
        return Err(SetupError::EnvExists(opts.env_file.clone()));
    }
    webhook_path(&opts.webhook_url)?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port)))
        .await
        .map_err(|source| SetupError::Bind {
            port: opts.port,
            source,
        })?;
    let addr = listener.local_addr().map_err(SetupError::Serve)?;
    let base = format!("http://{addr}");
    let flow = Arc::new(Flow {
        state: hex::encode(rand::random::<[u8; 16]>()),
        redirect_url: format!("{base}/callback"),
        host: addr.to_string(),
        opts,
        done: Mutex::new(None),
        busy: tokio::sync::Mutex::new(()),
        finished: tokio::sync::Notify::new(),
    });
    // Fails early, before anyone clicks, if app.yml cannot make a manifest.
    manifest(&flow.opts, &flow.redirect_url)?;
    let app = Router::new()
        .route("/", get(start_page))
        .route("/callback", get(callback))
        .with_state(flow.clone());
    listening(&format!("{base}/"));
    let wait = flow.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { wait.finished.notified().await })
        .await
        .map_err(SetupError::Serve)?;
    let result = flow.done.lock().map(|d| d.clone()).unwrap_or_default();
    result.ok_or_else(|| SetupError::Answer("the setup ended before GitHub's redirect".into()))
}

/// Is the request addressed to this server by its own address?
fn own_host(flow: &Flow, headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h == flow.host)
}

fn wrong_host() -> Response {
    page(
        StatusCode::MISDIRECTED_REQUEST,
        "Wrong address",
        "<p>Open this page by its address, as printed by <code>prodaudit setup</code>.</p>",
    )
}

async fn start_page(State(flow): State<Arc<Flow>>, headers: axum::http::HeaderMap) -> Response {
    if !own_host(&flow, &headers) {
        return wrong_host();
    }
    let manifest = match manifest(&flow.opts, &flow.redirect_url) {
        Ok(m) => m.to_string(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let action = new_app_url(&flow.opts.github_url, flow.opts.org.as_deref(), &flow.state);
    let owner = match &flow.opts.org {
        Some(org) => format!("the organisation <b>{}</b>", html_escape(org)),
        None => "your user account".to_string(),
    };
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>prodaudit setup</title></head><body>\n\
         <h1>Register the prodaudit GitHub App</h1>\n\
         <p>The button below opens GitHub with the App's settings filled in, for {owner}. GitHub asks you to \
         confirm (you may change the name there), then sends you back here and this program writes \
         <code>{env}</code>.</p>\n\
         <p>Webhook URL: <code>{hook}</code></p>\n\
         <form id=\"manifest-form\" action=\"{action}\" method=\"post\">\n\
         <input type=\"hidden\" name=\"manifest\" value=\"{manifest}\">\n\
         <button type=\"submit\">Create the GitHub App on GitHub</button>\n</form>\n</body></html>\n",
        env = html_escape(&flow.opts.env_file.display().to_string()),
        hook = html_escape(&flow.opts.webhook_url),
        action = html_escape(&action),
        manifest = html_escape(&manifest),
    ))
    .into_response()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    (
        status,
        Html(format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head><body>\n<h1>{t}</h1>\n{body}\n</body></html>\n",
            t = html_escape(title)
        )),
    )
        .into_response()
}

async fn callback(
    State(flow): State<Arc<Flow>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if !own_host(&flow, &headers) {
        return wrong_host();
    }
    let _busy = flow.busy.lock().await;
    if flow.done.lock().map(|d| d.is_some()).unwrap_or(false) {
        return page(
            StatusCode::CONFLICT,
            "Already done",
            "<p>The App has been created and the settings written already.</p>",
        );
    }
    if query.get("state").map(String::as_str) != Some(flow.state.as_str()) {
        tracing::warn!("a redirect with a wrong state was refused");
        eprintln!(
            "refused a redirect whose state is not this setup's (nothing was exchanged or written)"
        );
        return page(
            StatusCode::BAD_REQUEST,
            "Wrong state",
            "<p>This redirect does not belong to this setup (its <code>state</code> differs). Nothing was \
             done. Start again from the setup page.</p>",
        );
    }
    let Some(code) = query.get("code").filter(|c| {
        !c.is_empty()
            && c.len() <= 256
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }) else {
        return page(
            StatusCode::BAD_REQUEST,
            "No code",
            "<p>GitHub's redirect carries no usable <code>code</code>. Start again from the setup page.</p>",
        );
    };
    match finish(&flow.opts, code).await {
        Ok(result) => {
            let body = format!(
                "<p>The App (id {}) has been created; its settings are in <code>{}</code> and its private key in \
                 <code>{}</code>.</p>\n<p>Now install it on your repositories: <a href=\"{u}\">{u}</a></p>\n\
                 <p>Then start it: <code>prodaudit serve</code>.</p>",
                result.app_id,
                html_escape(&result.env_file.display().to_string()),
                html_escape(&result.key_file.display().to_string()),
                u = html_escape(&result.install_url),
            );
            if let Ok(mut done) = flow.done.lock() {
                *done = Some(result);
            }
            flow.finished.notify_one();
            page(StatusCode::OK, "The GitHub App is registered", &body)
        }
        Err(e) => {
            eprintln!("error: {e}");
            page(
                StatusCode::BAD_GATEWAY,
                "The App could not be set up",
                &format!(
                    "<p>{}</p><p>Nothing was written. <a href=\"/\">Start again</a>.</p>",
                    html_escape(&e.to_string())
                ),
            )
        }
    }
}

/// What the conversion answers (the fields used).
#[derive(Deserialize)]
struct Conversion {
    id: u64,
    pem: String,
    webhook_secret: Option<String>,
    html_url: String,
    #[serde(default)]
    slug: Option<String>,
}

/// Exchange the code and write the key and `.env`.
async fn finish(opts: &SetupOptions, code: &str) -> Result<SetupResult, SetupError> {
    if opts.env_file.exists() && !opts.force {
        return Err(SetupError::EnvExists(opts.env_file.clone()));
    }
    let conv = exchange(&opts.api_url, code).await?;
    if !conv.pem.contains("PRIVATE KEY-----") {
        return Err(SetupError::Answer("`pem` is not a PEM private key".into()));
    }
    let Some(secret) = conv.webhook_secret.filter(|s| !s.trim().is_empty()) else {
        return Err(SetupError::Answer(
            "GitHub returned no webhook secret; set one in the App's settings and write WEBHOOK_SECRET, APP_ID \
             and the key by hand (README, \"Register the App\")"
                .into(),
        ));
    };
    if !(conv.html_url.starts_with("https://") || conv.html_url.starts_with("http://")) {
        return Err(SetupError::Answer(format!(
            "`html_url` {:?} is not a URL",
            conv.html_url
        )));
    }
    let dir = opts
        .env_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let dir = dir.canonicalize().map_err(|source| SetupError::Write {
        path: dir.clone(),
        source,
    })?;
    let slug: String = conv
        .slug
        .as_deref()
        .unwrap_or("prodaudit")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(64)
        .collect();
    let key_file = dir.join(format!("{slug}-{}.private-key.pem", conv.id));
    let env_file = dir.join(
        opts.env_file
            .file_name()
            .map_or_else(|| ".env".into(), |n| n.to_os_string()),
    );
    let mut lines = vec![
        "# Written by `prodaudit setup`: the GitHub App's credentials for `prodaudit serve`."
            .to_string(),
        format!("APP_ID={}", conv.id),
        format!(
            "PRIVATE_KEY_PATH={}",
            env_value(&key_file.display().to_string())?
        ),
        format!("WEBHOOK_SECRET={}", env_value(&secret)?),
    ];
    if opts.api_url != "https://api.github.com" {
        lines.push(format!("GITHUB_API_URL={}", env_value(&opts.api_url)?));
    }
    let hook_path = webhook_path(&opts.webhook_url)?;
    if hook_path != DEFAULT_WEBHOOK_PATH {
        lines.push(format!("WEBHOOK_PATH={}", env_value(&hook_path)?));
    }
    let env_text = lines.join("\n") + "\n";
    write_private(&key_file, conv.pem.as_bytes(), opts.force)?;
    if let Err(e) = write_private(&env_file, env_text.as_bytes(), opts.force) {
        let _ = std::fs::remove_file(&key_file);
        return Err(e);
    }
    // The file must be one `prodaudit serve` starts with.
    if let Err(problem) = check_env_file(&env_file) {
        let _ = std::fs::remove_file(&env_file);
        let _ = std::fs::remove_file(&key_file);
        return Err(SetupError::Invalid {
            path: env_file,
            problem,
        });
    }
    Ok(SetupResult {
        app_id: conv.id,
        env_file,
        key_file,
        install_url: format!("{}/installations/new", conv.html_url.trim_end_matches('/')),
    })
}

/// Load a `.env` file and validate it with the settings loader of `prodaudit serve` (only its own variables: the
/// process environment is not consulted).
pub fn check_env_file(path: &Path) -> Result<crate::config::Settings, String> {
    let vars: HashMap<String, String> = dotenvy::from_path_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    crate::config::Settings::from_lookup(|k| vars.get(k).cloned()).map_err(|e| e.to_string())
}

/// A value as `.env` syntax: bare when it is plain, else in single quotes (taken literally by dotenv parsers).
fn env_value(v: &str) -> Result<String, SetupError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:+=@,~".contains(c);
    if !v.is_empty() && v.chars().all(plain) {
        Ok(v.to_string())
    } else if !v.contains('\'') && !v.contains('\n') && !v.contains('\r') {
        Ok(format!("'{v}'"))
    } else {
        Err(SetupError::Answer(format!(
            "a value cannot be written to .env safely: {:?}",
            v.chars().take(40).collect::<String>()
        )))
    }
}

/// Write a file only its owner can read, atomically (temporary file + rename); refuse to replace one unless
/// `force`.
fn write_private(path: &Path, bytes: &[u8], force: bool) -> Result<(), SetupError> {
    use std::io::Write as _;
    let err = |source| SetupError::Write {
        path: path.to_path_buf(),
        source,
    };
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "it exists already (pass --force to replace it)",
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(err)
}

/// `POST {api}/app-manifests/{code}/conversions` (no credentials: the code is the credential). Not retried: a
/// code works once.
async fn exchange(api_url: &str, code: &str) -> Result<Conversion, SetupError> {
    let shown = format!("{api_url}/app-manifests/…/conversions");
    let transport = |detail: String| SetupError::Transport {
        url: crate::config::redact_url(&shown),
        detail,
    };
    let uri: http::Uri = api_url.parse().map_err(|e| transport(format!("{e}")))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(transport("no scheme or host".into()));
    };
    let origin = format!("{scheme}://{authority}");
    let octo = octocrab::Octocrab::builder()
        .base_uri(origin.as_str())
        .map_err(|e| transport(e.to_string()))?
        .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
        .set_connect_timeout(Some(EXCHANGE_TIMEOUT))
        .set_read_timeout(Some(EXCHANGE_TIMEOUT))
        .set_write_timeout(Some(EXCHANGE_TIMEOUT))
        .build()
        .map_err(|e| transport(e.to_string()))?;
    let path = format!(
        "{}/app-manifests/{code}/conversions",
        uri.path().trim_end_matches('/')
    );
    let request = http::Request::builder()
        .method(http::Method::POST)
        .uri(path.as_str())
        .header(http::header::USER_AGENT, USER_AGENT)
        .header(http::header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .body(octocrab::OctoBody::from(Vec::new()))
        .map_err(|e| transport(e.to_string()))?;
    let fut = async {
        let response = octo
            .execute(request)
            .await
            .map_err(|e| transport(e.to_string()))?;
        let (parts, body) = response.into_parts();
        let mut bytes = Vec::new();
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| transport(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                bytes.extend_from_slice(data);
                if bytes.len() > MAX_ANSWER_BYTES {
                    return Err(SetupError::Answer(format!(
                        "more than {MAX_ANSWER_BYTES} bytes"
                    )));
                }
            }
        }
        Ok::<_, SetupError>((parts.status.as_u16(), bytes))
    };
    let (status, bytes) = tokio::time::timeout(EXCHANGE_TIMEOUT, fut)
        .await
        .map_err(|_| transport(format!("no answer within {} s", EXCHANGE_TIMEOUT.as_secs())))??;
    if status != 201 && status != 200 {
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("message")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect());
        return Err(SetupError::Refused { status, message });
    }
    serde_json::from_slice(&bytes).map_err(|e| SetupError::Answer(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SetupOptions {
        SetupOptions {
            port: 0,
            webhook_url: "https://hooks.example.com/api/github/webhooks".into(),
            org: None,
            name: None,
            env_file: ".env".into(),
            force: false,
            github_url: "https://github.com".into(),
            api_url: "https://api.github.com".into(),
        }
    }

    #[test]
    fn the_manifest_carries_app_yml_and_the_flags() {
        let m = match manifest(&opts(), "http://127.0.0.1:3000/callback") {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            m["hook_attributes"]["url"],
            "https://hooks.example.com/api/github/webhooks"
        );
        assert_eq!(m["redirect_url"], "http://127.0.0.1:3000/callback");
        assert_eq!(m["default_permissions"]["checks"], "write");
        assert_eq!(m["default_permissions"]["contents"], "read");
        let events: Vec<&str> = m["default_events"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            events,
            ["pull_request", "issue_comment", "check_run", "check_suite"]
        );
        assert_eq!(m["name"], "prodaudit");
        let named = SetupOptions {
            name: Some("acme-prodaudit".into()),
            ..opts()
        };
        assert_eq!(
            manifest(&named, "x").map(|m| m["name"].clone()).ok(),
            Some(serde_json::json!("acme-prodaudit"))
        );
    }

    #[test]
    fn new_app_pages_for_users_organisations_and_enterprise_servers() {
        assert_eq!(
            new_app_url("https://github.com", None, "s1"),
            "https://github.com/settings/apps/new?state=s1"
        );
        assert_eq!(
            new_app_url("https://ghe.example.com", Some("my org"), "s1"),
            "https://ghe.example.com/organizations/my%20org/settings/apps/new?state=s1"
        );
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            SetupOptions::github_urls(env(&[])).ok(),
            Some(("https://github.com".into(), "https://api.github.com".into()))
        );
        assert_eq!(
            SetupOptions::github_urls(env(&[("GITHUB_URL", "https://ghe.example.com/")])).ok(),
            Some((
                "https://ghe.example.com".into(),
                "https://ghe.example.com/api/v3".into()
            ))
        );
        assert!(SetupOptions::github_urls(env(&[("GITHUB_API_URL", "ftp://x")])).is_err());
    }

    #[test]
    fn env_values_are_quoted_when_needed_and_refused_when_unsafe() {
        assert_eq!(env_value("abc123").ok(), Some("abc123".into()));
        assert_eq!(
            env_value("/a b/key.pem").ok(),
            Some("'/a b/key.pem'".into())
        );
        assert!(env_value("it's").is_err());
        assert!(env_value("a\nb").is_err());
    }

    #[test]
    fn webhook_urls_are_checked() {
        assert_eq!(
            webhook_path("https://h.example.com/hooks/gh").ok(),
            Some("/hooks/gh".into())
        );
        assert!(webhook_path("h.example.com/hooks").is_err());
        assert!(webhook_path("ftp://h.example.com/").is_err());
    }
}
