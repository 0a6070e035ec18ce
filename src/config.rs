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
            .field("github_api_url", &self.github_api_url)
            .field("workers", &self.workers)
            .finish_non_exhaustive()
    }
}

/// A database URL with any password replaced.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let webhook_secret = get("WEBHOOK_SECRET").ok_or(SettingsError::NoWebhookSecret)?;
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
                value: github_api_url,
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
        })
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
