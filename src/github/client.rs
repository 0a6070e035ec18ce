//! The GitHub API client: octocrab as transport on relative routes (so `GITHUB_API_URL` is honoured and the
//! installation token is sent to GitHub Enterprise Server and test servers alike), a timeout on every call,
//! retries with exponential backoff and jitter for 5xx, timeouts and connection errors, secondary rate limits
//! waited out, one token refresh on 401, no retry on other 4xx, and writes of one installation sent one at a
//! time.

use super::auth::{AppAuth, AuthError, CachedToken};
use crate::server::metrics::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, Request};
use http_body_util::BodyExt;
use octocrab::Octocrab;
use rand::RngExt;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub answered {status} to {method} {route}: {message}")]
    Status {
        status: u16,
        method: String,
        route: String,
        message: String,
        retry_after: Option<Duration>,
    },
    #[error("GitHub did not answer {method} {route} within {timeout:?}")]
    Timeout {
        method: String,
        route: String,
        timeout: Duration,
    },
    #[error("cannot reach GitHub for {method} {route}: {detail}")]
    Transport {
        method: String,
        route: String,
        detail: String,
    },
    #[error("unexpected answer from GitHub to {route}: {detail}")]
    Decode { route: String, detail: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("invalid request path {0}")]
    Path(String),
    #[error("the token to authenticate with is empty")]
    EmptyToken,
}

impl GitHubError {
    /// Worth trying again later (the job is retried with backoff).
    pub fn is_transient(&self) -> bool {
        match self {
            GitHubError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 403 && self.retry_after().is_some()
            }
            GitHubError::Timeout { .. } | GitHubError::Transport { .. } => true,
            GitHubError::Decode { .. }
            | GitHubError::Auth(_)
            | GitHubError::Path(_)
            | GitHubError::EmptyToken => false,
        }
    }

    /// Might GitHub have carried the request out although we got no success (no answer in time, a connection
    /// lost, a 5xx)? A non-idempotent call that fails so must look for what it created before trying again.
    pub fn maybe_applied(&self) -> bool {
        match self {
            GitHubError::Status { status, .. } => *status >= 500,
            GitHubError::Timeout { .. } | GitHubError::Transport { .. } => true,
            GitHubError::Decode { .. }
            | GitHubError::Auth(_)
            | GitHubError::Path(_)
            | GitHubError::EmptyToken => false,
        }
    }

    /// How long GitHub asked us to wait, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A GitHub answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json<T: DeserializeOwned>(&self, route: &str) -> Result<T, GitHubError> {
        serde_json::from_slice(&self.body).map_err(|e| GitHubError::Decode {
            route: route.to_string(),
            detail: e.to_string(),
        })
    }
}

/// Tunables of the client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub timeout: Duration,
    /// Attempts per call for transient failures.
    pub attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The longest rate-limit wait done inside a call; longer waits fail the call as transient, and the job
    /// is retried after the reset.
    pub max_rate_limit_wait: Duration,
    /// The first wait after a secondary rate limit that says nothing of when to come back (no Retry-After,
    /// requests remaining): GitHub asks for at least a minute, then exponentially longer.
    pub secondary_rate_limit_wait: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(20),
            attempts: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(20),
            max_rate_limit_wait: Duration::from_secs(60),
            secondary_rate_limit_wait: Duration::from_secs(60),
        }
    }
}

/// How the client authenticates.
enum Credentials {
    /// The App: a JWT exchanged for installation tokens (cached, refreshed on 401).
    App(AppAuth),
    /// A plain token used as it is (the Action's `GITHUB_TOKEN`): the installation argument of the calls is
    /// ignored, and a 401 is final (there is nothing to refresh).
    Token(String),
}

/// The API client of the App (installation tokens) and of the Action (a plain token).
pub struct GitHub {
    octo: Octocrab,
    /// The path of the REST API under its host: empty on api.github.com, `/api/v3` on GitHub Enterprise Server.
    base_path: String,
    auth: Credentials,
    opts: ClientOptions,
    metrics: Arc<Metrics>,
    write_locks: Mutex<HashMap<i64, Arc<Mutex<()>>>>,
    /// Secondary rate limits without a hint in a row (reset by the next success): each doubles the wait.
    secondary_streak: std::sync::atomic::AtomicU32,
}

/// Exponential backoff with full jitter: a random wait in [0, min(max, base·2^attempt)].
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let cap = exp.min(max);
    let millis = cap.as_millis().min(u128::from(u64::MAX)) as u64;
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

const USER_AGENT: &str = concat!("prodaudit/", env!("CARGO_PKG_VERSION"));

impl GitHub {
    /// The App's client: calls are made with installation tokens obtained with the App's JWT.
    pub fn new(
        api_url: &str,
        auth: AppAuth,
        opts: ClientOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GitHubError> {
        Self::build(api_url, Credentials::App(auth), opts, metrics)
    }

    /// A client that sends `Authorization: Bearer <token>` as it is (GitHub Actions' `GITHUB_TOKEN`, a
    /// personal access token): the same timeouts, retries and rate-limit handling as the App's.
    pub fn with_token(
        api_url: &str,
        token: &str,
        opts: ClientOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GitHubError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(GitHubError::EmptyToken);
        }
        Self::build(
            api_url,
            Credentials::Token(token.to_string()),
            opts,
            metrics,
        )
    }

    /// The App's identity, when this client is the App's.
    pub fn app_auth(&self) -> Option<&AppAuth> {
        match &self.auth {
            Credentials::App(a) => Some(a),
            Credentials::Token(_) => None,
        }
    }

    fn build(
        api_url: &str,
        auth: Credentials,
        opts: ClientOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Self, GitHubError> {
        // octocrab gets only scheme and host; we prefix the base path ourselves, so that GraphQL on GitHub
        // Enterprise Server (`/api/graphql`, beside `/api/v3`) is reachable on a relative route too.
        let uri: http::Uri = api_url.trim_end_matches('/').parse().map_err(|e| {
            GitHubError::Path(format!(
                "GITHUB_API_URL {}: {e}",
                crate::config::redact_url(api_url)
            ))
        })?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(GitHubError::Path(format!(
                "GITHUB_API_URL {} has no scheme or host",
                crate::config::redact_url(api_url)
            )));
        };
        let origin = format!("{scheme}://{authority}");
        let base_path = uri.path().trim_end_matches('/').to_string();
        let octo = Octocrab::builder()
            .base_uri(origin.as_str())
            .map_err(|e| GitHubError::Path(format!("{}: {e}", crate::config::redact_url(api_url))))?
            // Our own retries (backoff with jitter, Retry-After honoured, bounded) are the only ones:
            // octocrab's default retries 5xx, 429 and transport errors three more times at once, which
            // multiplied every bounded retry by four and ignored rate-limit waits.
            .add_retry_config(octocrab::service::middleware::retry::RetryConfig::None)
            .set_connect_timeout(Some(opts.timeout))
            .set_read_timeout(Some(opts.timeout))
            .set_write_timeout(Some(opts.timeout))
            .build()
            .map_err(|e| GitHubError::Path(e.to_string()))?;
        Ok(GitHub {
            octo,
            base_path,
            auth,
            opts,
            metrics,
            write_locks: Mutex::new(HashMap::new()),
            secondary_streak: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// The GraphQL endpoint: `/graphql` on api.github.com and test servers, `/api/graphql` on GitHub Enterprise
    /// Server (whose REST base is `/api/v3`). Absolute, so the REST base path is not prefixed.
    pub fn graphql_url(&self) -> String {
        match self.base_path.strip_suffix("/v3") {
            Some(api) => format!("{api}/graphql"),
            None => format!("{}/graphql", self.base_path),
        }
    }

    /// An installation token, from the cache or fresh from GitHub (a plain token: that token).
    pub async fn installation_token(&self, installation: i64) -> Result<String, GitHubError> {
        let auth = match &self.auth {
            Credentials::App(a) => a,
            Credentials::Token(t) => return Ok(t.clone()),
        };
        let now = Utc::now();
        if let Some(t) = auth.cached(installation, now).await {
            return Ok(t);
        }
        #[derive(serde::Deserialize)]
        struct TokenResp {
            token: String,
            expires_at: DateTime<Utc>,
        }
        let jwt = auth.jwt(now)?;
        let route = "/app/installations/{installation_id}/access_tokens";
        let path = format!("/app/installations/{installation}/access_tokens");
        // (send_with_retries adds the REST base path.)
        let resp = self
            .send_with_retries(
                Method::POST,
                &path,
                route,
                &format!("Bearer {jwt}"),
                None,
                None,
                true,
            )
            .await?;
        let t: TokenResp = resp.json(route)?;
        auth.store(
            installation,
            CachedToken {
                token: t.token.clone(),
                expires_at: t.expires_at,
            },
        )
        .await;
        Ok(t.token)
    }

    /// A call as the installation. `route` is the path template, for metrics and errors.
    pub async fn call(
        &self,
        installation: i64,
        method: Method,
        path: &str,
        route: &str,
        body: Option<&serde_json::Value>,
        accept: Option<&str>,
    ) -> Result<Resp, GitHubError> {
        self.call_with(installation, method, path, route, body, accept, true)
            .await
    }

    /// A call that creates something (a review, a comment, a check run): retried here only after answers
    /// that say GitHub did nothing (rate limits, an expired token). After a timeout, a lost connection or a
    /// 5xx it fails at once ([`GitHubError::maybe_applied`]): the caller looks for what the attempt may have
    /// created before sending it again.
    pub async fn call_creating(
        &self,
        installation: i64,
        method: Method,
        path: &str,
        route: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Resp, GitHubError> {
        self.call_with(installation, method, path, route, body, None, false)
            .await
    }

    /// The wait before attempt `attempt + 1` of a call that failed transiently.
    pub fn retry_wait(&self, attempt: u32) -> Duration {
        backoff(attempt, self.opts.backoff_base, self.opts.backoff_max)
    }

    /// Attempts per call.
    pub fn attempts(&self) -> u32 {
        self.opts.attempts
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_with(
        &self,
        installation: i64,
        method: Method,
        path: &str,
        route: &str,
        body: Option<&serde_json::Value>,
        accept: Option<&str>,
        retry_maybe_applied: bool,
    ) -> Result<Resp, GitHubError> {
        let is_write = method != Method::GET && method != Method::HEAD;
        let lock = if is_write {
            let mut locks = self.write_locks.lock().await;
            Some(locks.entry(installation).or_default().clone())
        } else {
            None
        };
        let _guard = match &lock {
            Some(l) => Some(l.lock().await),
            None => None,
        };
        let token = self.installation_token(installation).await?;
        match self
            .send_with_retries(
                method.clone(),
                path,
                route,
                &format!("Bearer {token}"),
                body,
                accept,
                retry_maybe_applied,
            )
            .await
        {
            Err(GitHubError::Status { status: 401, .. })
                if matches!(self.auth, Credentials::App(_)) =>
            {
                // An expired or revoked installation token: refresh once.
                if let Credentials::App(auth) = &self.auth {
                    auth.invalidate(installation).await;
                }
                let token = self.installation_token(installation).await?;
                self.send_with_retries(
                    method,
                    path,
                    route,
                    &format!("Bearer {token}"),
                    body,
                    accept,
                    retry_maybe_applied,
                )
                .await
            }
            other => other,
        }
    }

    /// GET a JSON document as the installation.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        installation: i64,
        path: &str,
        route: &str,
    ) -> Result<T, GitHubError> {
        self.call(installation, Method::GET, path, route, None, None)
            .await?
            .json(route)
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_with_retries(
        &self,
        method: Method,
        path: &str,
        route: &str,
        authorization: &str,
        body: Option<&serde_json::Value>,
        accept: Option<&str>,
        retry_maybe_applied: bool,
    ) -> Result<Resp, GitHubError> {
        let mut attempt = 0;
        loop {
            let result = self
                .send_once(method.clone(), path, route, authorization, body, accept)
                .await;
            attempt += 1;
            let err = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            if attempt >= self.opts.attempts
                || !err.is_transient()
                || (!retry_maybe_applied && err.maybe_applied())
            {
                return Err(err);
            }
            let wait = match err.retry_after() {
                Some(w) if w > self.opts.max_rate_limit_wait => return Err(err),
                Some(w) => w,
                None => backoff(attempt, self.opts.backoff_base, self.opts.backoff_max),
            };
            tracing::warn!(route, attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying GitHub call");
            tokio::time::sleep(wait).await;
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        route: &str,
        authorization: &str,
        body: Option<&serde_json::Value>,
        accept: Option<&str>,
    ) -> Result<Resp, GitHubError> {
        let m = method.to_string();
        // GraphQL paths come complete (see graphql_url); REST paths get the base path.
        let full = if route == "/graphql" {
            path.to_string()
        } else {
            format!("{}{path}", self.base_path)
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(full.as_str())
            .header(http::header::USER_AGENT, USER_AGENT)
            .header(
                http::header::ACCEPT,
                accept.unwrap_or("application/vnd.github+json"),
            )
            .header("X-GitHub-Api-Version", "2022-11-28");
        let mut auth =
            HeaderValue::from_str(authorization).map_err(|e| GitHubError::Path(e.to_string()))?;
        auth.set_sensitive(true);
        builder = builder.header(http::header::AUTHORIZATION, auth);
        let bytes = match body {
            Some(b) => {
                builder = builder.header(http::header::CONTENT_TYPE, "application/json");
                serde_json::to_vec(b).map_err(|e| GitHubError::Path(e.to_string()))?
            }
            None => Vec::new(),
        };
        let request = builder
            .body(octocrab::OctoBody::from(bytes))
            .map_err(|e| GitHubError::Path(format!("{path}: {e}")))?;
        let timeout = self.opts.timeout;
        let fut = async {
            let response =
                self.octo
                    .execute(request)
                    .await
                    .map_err(|e| GitHubError::Transport {
                        method: m.clone(),
                        route: route.to_string(),
                        detail: e.to_string(),
                    })?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|e| GitHubError::Transport {
                method: m.clone(),
                route: route.to_string(),
                detail: e.to_string(),
            })?;
            Ok::<_, GitHubError>((parts, body.to_bytes()))
        };
        let (parts, body) = match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                // No answer (connection refused or reset, octocrab's own read timeout): counted as status 0.
                self.metrics.github_request(route, 0);
                return Err(e);
            }
            Err(_) => {
                self.metrics.github_request(route, 0);
                return Err(GitHubError::Timeout {
                    method: m,
                    route: route.to_string(),
                    timeout,
                });
            }
        };
        let status = parts.status.as_u16();
        self.metrics.github_request(route, status);
        if (200..300).contains(&status) {
            self.secondary_streak
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(remaining) = header_i64(&parts.headers, "x-ratelimit-remaining") {
            self.metrics.rate_limit_remaining.set(remaining);
        }
        if (200..300).contains(&status) || status == 304 {
            return Ok(Resp {
                status,
                headers: parts.headers,
                body,
            });
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        let retry_after = rate_limit_wait(status, &parts.headers, Utc::now()).or_else(|| {
            is_secondary_rate_limit(status, &message).then(|| {
                let streak = self
                    .secondary_streak
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                secondary_wait(self.opts.secondary_rate_limit_wait, streak)
            })
        });
        Err(GitHubError::Status {
            status,
            method: m,
            route: route.to_string(),
            message,
            retry_after,
        })
    }
}

fn header_i64(h: &HeaderMap, name: &str) -> Option<i64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// A secondary rate limit that gives no hint of when to come back: a 429 without headers, or a 403 whose
/// message says so (GitHub: "You have exceeded a secondary rate limit…"). A 403 without that text is a
/// permission problem, not worth retrying.
pub fn is_secondary_rate_limit(status: u16, message: &str) -> bool {
    status == 429
        || status == 403
            && message
                .to_ascii_lowercase()
                .contains("secondary rate limit")
}

/// GitHub: wait at least a minute, and exponentially longer while the limit persists (capped at an hour).
pub fn secondary_wait(first: Duration, streak: u32) -> Duration {
    first
        .saturating_mul(1u32.checked_shl(streak.min(16)).unwrap_or(u32::MAX))
        .min(Duration::from_secs(3600).max(first))
}

/// For 403/429 answers that say when to come back: Retry-After, else until x-ratelimit-reset when nothing
/// remains. `None` otherwise (see [`is_secondary_rate_limit`] for limits without a hint, and a 403 that is a
/// permission problem).
pub fn rate_limit_wait(status: u16, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    if let Some(secs) = header_i64(headers, "retry-after") {
        return Some(Duration::from_secs(secs.max(0) as u64));
    }
    if header_i64(headers, "x-ratelimit-remaining") == Some(0)
        && let Some(reset) = header_i64(headers, "x-ratelimit-reset")
    {
        let wait = reset - now.timestamp();
        return Some(Duration::from_secs(wait.max(1) as u64));
    }
    None
}

/// Percent-encode a repository path for use in a URL path (keeps `/`).
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 0..40 {
            assert!(backoff(attempt, base, max) <= max);
        }
        let samples: Vec<Duration> = (0..50).map(|_| backoff(5, base, max)).collect();
        assert!(
            samples.iter().any(|s| *s != samples[0]),
            "jitter varies the waits"
        );
        assert!(backoff(0, base, max) <= base);
    }

    #[test]
    fn rate_limits_are_recognised() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_wait(403, &h, now), Some(Duration::from_secs(7)));
        assert_eq!(rate_limit_wait(500, &h, now), None);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = (now.timestamp() + 30).to_string();
        h.insert(
            "x-ratelimit-reset",
            HeaderValue::from_str(&reset).unwrap_or(HeaderValue::from_static("0")),
        );
        assert_eq!(rate_limit_wait(403, &h, now), Some(Duration::from_secs(30)));
        assert_eq!(
            rate_limit_wait(403, &HeaderMap::new(), now),
            None,
            "a permission 403 is not a rate limit"
        );
        assert_eq!(rate_limit_wait(429, &HeaderMap::new(), now), None);
        assert!(is_secondary_rate_limit(429, ""));
        assert!(is_secondary_rate_limit(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
        ));
        assert!(!is_secondary_rate_limit(
            403,
            "Resource not accessible by integration"
        ));
        assert!(!is_secondary_rate_limit(500, "secondary rate limit"));
        let m = Duration::from_secs(60);
        assert_eq!(secondary_wait(m, 0), m);
        assert_eq!(secondary_wait(m, 1), 2 * m);
        assert_eq!(secondary_wait(m, 3), 8 * m);
        assert_eq!(secondary_wait(m, 40), Duration::from_secs(3600));
    }

    #[test]
    fn paths_are_percent_encoded() {
        assert_eq!(
            encode_path("app/new name é.py"),
            "app/new%20name%20%C3%A9.py"
        );
        assert_eq!(encode_path("a/b_c-d.e~f"), "a/b_c-d.e~f");
        assert_eq!(encode_path("x?y#z"), "x%3Fy%23z");
    }
}
