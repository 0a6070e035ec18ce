//! Server settings: from the environment (or a `.env` file), validated once at start. Names follow Probot's
//! where Probot has one.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(
        "WEBHOOK_SECRET is not set: the server refuses to start without it. Set it to the webhook secret of \
         your GitHub App (Settings → Developer settings → GitHub Apps → your app → Webhook secret)"
    )]
    NoWebhookSecret,
    #[error(
        "no GitHub App credentials: {missing}. Register the App from app.yml (see README, \"Register the App\"), \
         then set APP_ID and PRIVATE_KEY (the PEM text) or PRIVATE_KEY_PATH (a file holding it)"
    )]
    NoCredentials { missing: String },
    #[error("{name}={value:?} is not valid: {problem}")]
    Invalid {
        name: &'static str,
        value: String,
        problem: String,
    },
    #[error("cannot read PRIVATE_KEY_PATH {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Every setting of `prodaudit serve`.
#[derive(Clone)]
pub struct Settings {
    pub app_id: u64,
    /// The App's private key, PEM.
    pub private_key: String,
    pub webhook_secret: String,
    pub webhook_path: String,
    pub host: IpAddr,
    pub port: u16,
    pub database_url: String,
    pub github_api_url: String,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Audits run at once by this process (WORKER_CONCURRENCY, default 4).
    pub workers: usize,
    /// Audits of one installation running at once (PER_INSTALLATION_CONCURRENCY, default 2).
    pub per_installation: usize,
    /// A job's time limit (JOB_TIMEOUT_SECS, default 600).
    pub job_timeout: Duration,
    /// Attempts before a job is given up (MAX_ATTEMPTS, default 5).
    pub max_attempts: u32,
    /// Queued jobs beyond which superseded audits are dropped first (MAX_QUEUE_DEPTH, default 10000).
    pub max_queue_depth: u64,
    /// How long SIGTERM waits for running audits (SHUTDOWN_GRACE_SECS, default 30).
    pub shutdown_grace: Duration,
    /// Timeout of every GitHub API call (GITHUB_TIMEOUT_SECS, default 20).
    pub github_timeout: Duration,
    /// How long a claimed job stays leased without a heartbeat before another worker may take it over
    /// (JOB_LEASE_SECS, default 60; renewed every third of it while the job runs).
    pub job_lease: Duration,
    /// Limits and timeouts of the HTTP server.
    pub http: HttpLimits,
    /// The first wait after a secondary rate limit that gives no Retry-After (GITHUB_SECONDARY_RATE_LIMIT_SECS,
    /// default 60 as GitHub asks; doubled for each further one in a row).
    pub secondary_rate_limit_wait: Duration,
}

impl std::fmt::Debug for Settings {
    /// Never prints the key or the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("app_id", &self.app_id)
            .field("private_key", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("webhook_path", &self.webhook_path)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database_url", &redact_url(&self.database_url))
            .field("github_api_url", &redact_url(&self.github_api_url))
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// A URL with every credential replaced by `***`: the password of the userinfo (`user:pw@host`), and the value
/// of every query parameter whose name says it holds a secret (`password`, `sslpassword`, any name containing
/// "pass", "secret" or "token", compared case-insensitively). Anything that is not a URL is returned as it is.
/// Use it wherever a URL is logged or shown in an error.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return redact_query(url);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// Does a query parameter of this name carry a credential?
fn is_secret_param(name: &str) -> bool {
    let n = percent_decode(name).to_ascii_lowercase();
    n.contains("pass") || n.contains("secret") || n.contains("token")
}

/// `path?a=1&password=x#f` → `path?a=1&password=***#f`.
fn redact_query(s: &str) -> String {
    let Some((path, query)) = s.split_once('?') else {
        return s.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let parts: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect();
    let mut out = format!("{path}?{}", parts.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// The credentials a URL carries (userinfo password, secret query values), as written and percent-decoded.
pub fn url_secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if let Some((userinfo, _)) = rest[..authority_end].rsplit_once('@')
        && let Some((_, pw)) = userinfo.split_once(':')
    {
        out.push(pw.to_string());
    }
    if let Some((_, query)) = url.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=')
                && is_secret_param(k)
            {
                out.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    // Very short values would blank out ordinary words of a message; they are not worth hiding there.
    out.retain(|s| s.len() >= 3);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` (an error message that may quote the URL or parts of it) with the URL's credentials replaced.
pub fn redact_text(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &redact_url(url));
    for secret in url_secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The default embedded database: an SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://prodaudit.db";

impl Settings {
    /// Read the settings from the process environment, after loading `.env` if present (existing variables win).
    pub fn from_env() -> Result<Settings, SettingsError> {
        let _ = dotenvy::dotenv();
        Settings::from_lookup(|k| std::env::var(k).ok())
    }

    /// Read the settings through `get` (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, SettingsError> {
        let get_raw = |k: &str| get(k);
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        // The secret is used exactly as given (GitHub signs with every character of it, spaces included);
        // only an empty one is refused. See [`Settings::warnings`].
        let raw = get_raw("WEBHOOK_SECRET");
        let webhook_secret = raw
            .filter(|v| !v.trim().is_empty())
            .ok_or(SettingsError::NoWebhookSecret)?;
        let mut missing = Vec::new();
        let app_id = get("APP_ID");
        if app_id.is_none() {
            missing.push("APP_ID is not set");
        }
        let private_key = match (get("PRIVATE_KEY"), get("PRIVATE_KEY_PATH")) {
            (Some(k), _) => Some(k.replace("\\n", "\n")),
            (None, Some(p)) => {
                let path = PathBuf::from(p);
                Some(
                    std::fs::read_to_string(&path)
                        .map_err(|source| SettingsError::KeyFile { path, source })?,
                )
            }
            (None, None) => {
                missing.push("neither PRIVATE_KEY nor PRIVATE_KEY_PATH is set");
                None
            }
        };
        let (Some(app_id), Some(private_key)) = (app_id, private_key) else {
            return Err(SettingsError::NoCredentials {
                missing: missing.join(", "),
            });
        };
        let app_id: u64 = parse("APP_ID", &app_id)?;
        if !private_key.contains("PRIVATE KEY-----") {
            return Err(SettingsError::Invalid {
                name: "PRIVATE_KEY",
                value: "<redacted>".into(),
                problem: "not a PEM private key (expected -----BEGIN RSA PRIVATE KEY-----)".into(),
            });
        }
        jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|e| {
            SettingsError::Invalid {
                name: "PRIVATE_KEY",
                value: "<redacted>".into(),
                problem: format!("not a usable RSA key: {e}"),
            }
        })?;
        let webhook_path = get("WEBHOOK_PATH").unwrap_or_else(|| "/api/github/webhooks".into());
        if !webhook_path.starts_with('/') {
            return Err(SettingsError::Invalid {
                name: "WEBHOOK_PATH",
                value: webhook_path,
                problem: "must start with /".into(),
            });
        }
        let github_api_url = get("GITHUB_API_URL")
            .unwrap_or_else(|| "https://api.github.com".into())
            .trim_end_matches('/')
            .to_string();
        if !(github_api_url.starts_with("https://") || github_api_url.starts_with("http://")) {
            return Err(SettingsError::Invalid {
                name: "GITHUB_API_URL",
                value: redact_url(&github_api_url),
                problem: "must be an http(s) URL, e.g. https://api.github.com or https://ghe.example.com/api/v3".into(),
            });
        }
        let log_format = match get("LOG_FORMAT").as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    name: "LOG_FORMAT",
                    value: other.into(),
                    problem: "expected json or pretty".into(),
                });
            }
        };
        let secs = |name: &'static str, default: u64| -> Result<Duration, SettingsError> {
            let v = get(name)
                .map(|v| parse::<u64>(name, &v))
                .transpose()?
                .unwrap_or(default);
            if v == 0 {
                return Err(SettingsError::Invalid {
                    name,
                    value: "0".into(),
                    problem: "must be at least 1".into(),
                });
            }
            Ok(Duration::from_secs(v))
        };
        let count = |name: &'static str, default: u64| -> Result<u64, SettingsError> {
            let v = get(name)
                .map(|v| parse::<u64>(name, &v))
                .transpose()?
                .unwrap_or(default);
            if v == 0 {
                return Err(SettingsError::Invalid {
                    name,
                    value: "0".into(),
                    problem: "must be at least 1".into(),
                });
            }
            Ok(v)
        };
        Ok(Settings {
            app_id,
            private_key,
            webhook_secret,
            webhook_path,
            host: get("HOST")
                .map(|h| parse("HOST", &h))
                .transpose()?
                .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            port: get("PORT")
                .map(|p| parse("PORT", &p))
                .transpose()?
                .unwrap_or(3000),
            database_url: get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            github_api_url,
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_format,
            workers: count("WORKER_CONCURRENCY", 4)? as usize,
            per_installation: count("PER_INSTALLATION_CONCURRENCY", 2)? as usize,
            job_timeout: secs("JOB_TIMEOUT_SECS", 600)?,
            max_attempts: count("MAX_ATTEMPTS", 5)? as u32,
            max_queue_depth: count("MAX_QUEUE_DEPTH", 10_000)?,
            shutdown_grace: secs("SHUTDOWN_GRACE_SECS", 30)?,
            github_timeout: secs("GITHUB_TIMEOUT_SECS", 20)?,
            job_lease: secs("JOB_LEASE_SECS", 60)?,
            http: HttpLimits {
                max_connections: count("HTTP_MAX_CONNECTIONS", default_max_connections() as u64)?
                    as usize,
                header_timeout: secs("HTTP_HEADER_TIMEOUT_SECS", 10)?,
                body_timeout: secs("HTTP_BODY_TIMEOUT_SECS", 30)?,
                request_timeout: secs("HTTP_REQUEST_TIMEOUT_SECS", 60)?,
            },
            secondary_rate_limit_wait: secs("GITHUB_SECONDARY_RATE_LIMIT_SECS", 60)?,
        })
    }

    /// Things worth a warning at start: a webhook secret with surrounding whitespace (used as given, so it
    /// must be the same in the App's settings on GitHub) or a short one.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let s = &self.webhook_secret;
        if s.trim() != s {
            out.push(
                "WEBHOOK_SECRET has leading or trailing whitespace; it is used as given, so the App's webhook \
                 secret on GitHub must have the same whitespace (deliveries signed without it get 401)"
                    .to_string(),
            );
        }
        if s.chars().count() < 16 {
            out.push(format!(
                "WEBHOOK_SECRET is {} characters long; use a random secret of at least 16 characters",
                s.chars().count()
            ));
        }
        out
    }
}

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Connections served at once (HTTP_MAX_CONNECTIONS; default 1024, or half the process's open-file limit
    /// when that is lower). Further connections wait in the listen backlog.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and how long a kept-alive connection may
    /// stay idle before its next request (HTTP_HEADER_TIMEOUT_SECS, default 10).
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive (HTTP_BODY_TIMEOUT_SECS, default 30).
    pub body_timeout: Duration,
    /// The longest a request may take, answer included (HTTP_REQUEST_TIMEOUT_SECS, default 60).
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: default_max_connections(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// 1024, or half the soft limit on open files when that is lower (the rest is for the database, GitHub
/// connections and the files of an audit).
pub fn default_max_connections() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<usize>().ok())
        });
    match soft {
        Some(n) => (n / 2).clamp(8, 1024),
        None => 1024,
    }
}

fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, SettingsError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| SettingsError::Invalid {
        name,
        value: value.to_string(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:s3cret@db:5432/app"),
            "postgres://u:***@db:5432/app"
        );
        assert_eq!(redact_url("postgres://u@db/app"), "postgres://u@db/app");
        // An `@` in the password itself (unencoded): the last one ends the userinfo.
        assert_eq!(
            redact_url("postgres://u:p@ss@db/app"),
            "postgres://u:***@db/app"
        );
        assert_eq!(
            redact_url("postgres://u:@db/app"),
            "postgres://u:***@db/app"
        );
    }

    #[test]
    fn query_credentials_are_redacted() {
        let r = redact_url(
            "postgres://u@db/app?sslmode=require&password=hunter22&sslpassword=k3y&application_name=x",
        );
        assert_eq!(
            r,
            "postgres://u@db/app?sslmode=require&password=***&sslpassword=***&application_name=x"
        );
        let r =
            redact_url("postgresql:///app?host=/run&PassWord=aa1&x_secret=bb2&auth_token=cc3#frag");
        assert!(
            !r.contains("aa1") && !r.contains("bb2") && !r.contains("cc3"),
            "{r}"
        );
        assert!(r.ends_with("#frag"), "{r}");
        // Percent-encoded names are recognised too.
        assert!(!redact_url("postgres://db/app?pass%77ord=zz9").contains("zz9"));
        // SQLite paths and plain paths: no credentials, unchanged.
        assert_eq!(
            redact_url("sqlite://x.db?mode=rwc"),
            "sqlite://x.db?mode=rwc"
        );
        assert_eq!(redact_url("/var/lib/q.db"), "/var/lib/q.db");
        assert_eq!(redact_url("q.db?password=abc1"), "q.db?password=***");
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let url = "postgres://u:p%40ss-word@db/app?password=other-one";
        let msg = format!(
            "cannot connect to {url}: password authentication failed (tried p@ss-word and other-one)"
        );
        let clean = redact_text(&msg, url);
        assert!(!clean.contains("p@ss-word"), "{clean}");
        assert!(!clean.contains("p%40ss-word"), "{clean}");
        assert!(!clean.contains("other-one"), "{clean}");
        assert!(
            clean.contains("postgres://u:***@db/app?password=***"),
            "{clean}"
        );
    }

    fn lookup(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let key = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/test-app-key.pem"
        ))
        .unwrap_or_default();
        let mut map: std::collections::HashMap<String, String> = [
            ("APP_ID".to_string(), "1".to_string()),
            ("PRIVATE_KEY".to_string(), key),
        ]
        .into_iter()
        .collect();
        for (k, v) in extra {
            map.insert(k.to_string(), v.to_string());
        }
        move |k| map.get(k).cloned()
    }

    #[test]
    fn webhook_secret_is_used_as_given_with_warnings() {
        let s = match Settings::from_lookup(lookup(&[("WEBHOOK_SECRET", "  spaced secret  ")])) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(s.webhook_secret, "  spaced secret  ");
        let w = s.warnings();
        assert!(w.iter().any(|w| w.contains("whitespace")), "{w:?}");
        assert!(!w.iter().any(|w| w.contains("characters long")), "{w:?}");
        let s = match Settings::from_lookup(lookup(&[("WEBHOOK_SECRET", "short")])) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.warnings().iter().any(|w| w.contains("at least 16")));
        let s = match Settings::from_lookup(lookup(&[("WEBHOOK_SECRET", "0123456789abcdef-long")]))
        {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert!(s.warnings().is_empty());
        assert!(matches!(
            Settings::from_lookup(lookup(&[("WEBHOOK_SECRET", "   ")])),
            Err(SettingsError::NoWebhookSecret)
        ));
    }
}
