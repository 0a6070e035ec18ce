//! `prodaudit setup` end to end: the real binary, driven over HTTP as a browser and GitHub would, against the fake
//! GitHub's manifest conversion endpoint; the `.env` it writes must be one `prodaudit serve` starts with.

mod fake_github;

use fake_github::harness::{free_port, get_status, http_request};
use fake_github::{ManifestApp, World, assert_no_violations};
use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOOK: &str = "https://prodaudit.example.com/api/github/webhooks";

struct Setup {
    child: Child,
    /// The rest of its stdout.
    out: std::io::BufReader<std::process::ChildStdout>,
    /// The page's address, e.g. `http://127.0.0.1:PORT/`.
    url: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn test_key() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/test-app-key.pem");
    match std::fs::read_to_string(&path) {
        Ok(k) => k,
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    }
}

fn world() -> World {
    World {
        manifest_codes: [(
            "good-code-1".to_string(),
            ManifestApp {
                id: 4242,
                slug: "acme-prodaudit".into(),
                pem: test_key(),
                webhook_secret: Some("6d1f0f5c2a9b4e7d8c3b2a1f0e9d8c7b6a5f4e3d".into()),
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// Start `prodaudit setup` in `dir` against the fake GitHub at `api` and wait for its page's address.
fn start(dir: &Path, api: &str, extra: &[&str]) -> Setup {
    let mut child = match Command::new(env!("CARGO_BIN_EXE_prodaudit"))
        .current_dir(dir)
        .args(["setup", "--port", "0", "--webhook-url", HOOK])
        .args(extra)
        .env("GITHUB_URL", "https://github.example")
        .env("GITHUB_API_URL", api)
        .env_remove("LOG_LEVEL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot start prodaudit setup: {e}"),
    };
    let Some(stdout) = child.stdout.take() else {
        panic!("no stdout");
    };
    let mut out = std::io::BufReader::new(stdout);
    let mut first = String::new();
    let _ = out.read_line(&mut first);
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .map(str::to_string);
    let Some(url) = url else {
        let _ = child.kill();
        let out = child.wait_with_output().ok();
        panic!(
            "no page address in {first:?}; stderr: {}",
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default()
        );
    };
    Setup { child, out, url }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The form's action and the manifest JSON of the setup page.
fn form(page: &str) -> (String, serde_json::Value) {
    let attr = |name: &str| -> String {
        let key = format!("{name}=\"");
        page.split(&key)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(unescape)
            .unwrap_or_default()
    };
    let action = attr("action");
    let manifest = attr("value");
    match serde_json::from_str(&manifest) {
        Ok(m) => (action, m),
        Err(e) => panic!("the manifest is not JSON ({e}): {manifest}"),
    }
}

/// GET `path` from `addr` with the given `Host` header; the status.
fn get_with_host(addr: &str, path: &str, host: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The status of the process once it has exited (within `limit`), else `None`.
fn exited(setup: &mut Setup, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(Some(status)) = setup.child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manifest_flow_writes_an_env_that_serve_starts_with() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut setup = start(dir.path(), &api, &["--org", "octo-org"]);

    // The page: a form posting the manifest to the organisation's new-App page with a state.
    let (status, page) =
        http_request("GET", &setup.url, &[], b"").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{page}");
    let (action, manifest) = form(&page);
    let prefix = "https://github.example/organizations/octo-org/settings/apps/new?state=";
    assert!(action.starts_with(prefix), "{action}");
    let state = action.trim_start_matches(prefix).to_string();
    assert!(state.len() >= 32, "a random state: {state}");
    assert_eq!(manifest["hook_attributes"]["url"], HOOK);
    let redirect = manifest["redirect_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(redirect, format!("{}callback", setup.url));
    assert_eq!(manifest["default_permissions"]["checks"], "write");
    assert_eq!(manifest["default_permissions"]["pull_requests"], "write");
    assert_eq!(manifest["default_events"][0], "pull_request");

    // Only this server's own address is answered (a rebound name cannot read the state or send a code).
    let addr = setup
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    assert_eq!(get_with_host(&addr, "/", "evil.example"), 421);
    assert_eq!(
        get_with_host(
            &addr,
            &format!("/callback?code=good-code-1&state={state}"),
            "evil.example"
        ),
        421
    );

    // A redirect with another state is refused, and nothing is exchanged or written.
    let (status, _) = http_request(
        "GET",
        &format!("{redirect}?code=good-code-1&state=forged"),
        &[],
        b"",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 400);
    assert!(!dir.path().join(".env").exists());
    assert!(
        fake_github::lock_pub(&w).requests.is_empty(),
        "no code exchanged for a wrong state"
    );

    // GitHub's redirect: the code is exchanged and .env written.
    let (status, done) = http_request(
        "GET",
        &format!("{redirect}?code=good-code-1&state={state}"),
        &[],
        b"",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200, "{done}");
    assert!(
        done.contains("https://github.example/apps/acme-prodaudit/installations/new"),
        "the install URL: {done}"
    );
    let status = exited(&mut setup, Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "setup exits when done"
    );
    let mut printed = String::new();
    {
        use std::io::Read as _;
        let _ = setup.out.read_to_string(&mut printed);
    }
    {
        let world = fake_github::lock_pub(&w);
        let routes = world.counts_by_route();
        assert_eq!(
            routes.get("POST /app-manifests/{code}/conversions"),
            Some(&1),
            "{routes:?}"
        );
    }
    assert_no_violations(&w);

    let env = dir.path().join(".env");
    let text = std::fs::read_to_string(&env).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.contains("APP_ID=4242\n"), "{text}");
    assert!(
        text.contains("WEBHOOK_SECRET=6d1f0f5c2a9b4e7d8c3b2a1f0e9d8c7b6a5f4e3d\n"),
        "{text}"
    );
    assert!(text.contains(&format!("GITHUB_API_URL={api}\n")), "{text}");
    let key_path = dir
        .path()
        .canonicalize()
        .unwrap_or_else(|e| panic!("{e}"))
        .join("acme-prodaudit-4242.private-key.pem");
    assert!(
        text.contains(&format!("PRIVATE_KEY_PATH={}\n", key_path.display())),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key_path).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o600), "the key is private");
    assert_eq!(std::fs::read_to_string(&key_path).ok(), Some(test_key()));

    // The project's settings loader accepts it …
    let settings = match prodaudit::setup::check_env_file(&env) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(settings.app_id, 4242);
    assert_eq!(settings.github_api_url, api);

    // … and `prodaudit serve` starts with it (from the folder holding .env, nothing else set).
    let port = free_port();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_prodaudit"))
        .current_dir(dir.path())
        .arg("serve")
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("q.db").display()),
        )
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env_remove("APP_ID")
        .env_remove("PRIVATE_KEY")
        .env_remove("PRIVATE_KEY_PATH")
        .env_remove("WEBHOOK_SECRET")
        .env_remove("GITHUB_API_URL")
        .env_remove("WEBHOOK_PATH")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let until = Instant::now() + Duration::from_secs(30);
    let mut healthy = false;
    while Instant::now() < until {
        if get_status(&format!("http://127.0.0.1:{port}/healthz")).ok() == Some(200) {
            healthy = true;
            break;
        }
        if let Ok(Some(_)) = serve.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = serve.kill();
    let out = serve.wait_with_output().ok();
    assert!(
        healthy,
        "serve did not start with the written .env: {}",
        out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    );
    assert!(
        printed.contains("https://github.example/apps/acme-prodaudit/installations/new"),
        "the install URL is printed: {printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_code_says_so_and_writes_nothing() {
    let (api, w) = fake_github::start(world()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut setup = start(dir.path(), &api, &[]);
    let (_, page) = http_request("GET", &setup.url, &[], b"").unwrap_or_else(|e| panic!("{e}"));
    let (action, manifest) = form(&page);
    let prefix = "https://github.example/settings/apps/new?state=";
    assert!(
        action.starts_with(prefix),
        "the user's page without --org: {action}"
    );
    let state = action.trim_start_matches(prefix);
    let redirect = manifest["redirect_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (status, body) = http_request(
        "GET",
        &format!("{redirect}?code=expired-code&state={state}"),
        &[],
        b"",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 502);
    assert!(body.contains("did not accept the code"), "{body}");
    assert!(body.contains("404"), "{body}");
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "nothing written: {files:?}");
    // Still serving: the user can start again; then the right code completes it.
    assert!(exited(&mut setup, Duration::from_millis(300)).is_none());
    let (status, _) = http_request(
        "GET",
        &format!("{redirect}?code=good-code-1&state={state}"),
        &[],
        b"",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    assert!(dir.path().join(".env").exists());
    assert_eq!(
        exited(&mut setup, Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    assert_no_violations(&w);
}

#[test]
fn an_existing_env_is_not_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(dir.path().join(".env"), "APP_ID=1\n").ok();
    let out = Command::new(env!("CARGO_BIN_EXE_prodaudit"))
        .current_dir(dir.path())
        .args(["setup", "--port", "0", "--webhook-url", HOOK])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".env exists already") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join(".env"))
            .ok()
            .as_deref(),
        Some("APP_ID=1\n")
    );
}
