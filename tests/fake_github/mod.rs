//! An in-process fake GitHub for the App's tests: serves the endpoints the App calls from a scenario (a
//! repository's files at base and head, the pull request, collaborators), records every request, keeps the
//! check runs, reviews and threads the App creates, and injects faults on request.

#![allow(dead_code)]

pub mod harness;
pub mod openapi;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: String,
    pub body: Value,
    /// The path template of GitHub's description the request matched (else the path).
    pub route: String,
    /// The status answered; 0 when the connection was dropped.
    pub status: u16,
    /// When it arrived.
    pub at: std::time::Instant,
}

/// A fault to inject on the next request whose path contains `path_part` (and method matches, if set).
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: Option<String>,
    pub path_part: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub delay_ms: u64,
    pub times: usize,
    /// Drop the connection without an answer (a connection reset).
    pub reset: bool,
    /// The `message` of the injected error (GitHub's text matters: "secondary rate limit").
    pub message: Option<String>,
    /// Carry the request out, then wait this long before answering (a slow answer to a request that
    /// succeeded: the client may give up although the thing was created).
    pub answer_after_ms: u64,
    /// Only requests whose body contains this (e.g. one GraphQL query among others).
    pub body_part: Option<String>,
}

impl Fault {
    /// `status` on the next request whose path contains `path_part` (0: answer normally, after any delay).
    pub fn new(method: &str, path_part: &str, status: u16) -> Fault {
        Fault {
            method: Some(method.to_string()),
            path_part: path_part.to_string(),
            status,
            headers: Vec::new(),
            delay_ms: 0,
            times: 1,
            reset: false,
            message: None,
            answer_after_ms: 0,
            body_part: None,
        }
    }
    /// Only on requests whose body contains `part`.
    pub fn body_contains(mut self, part: &str) -> Fault {
        self.body_part = Some(part.to_string());
        self
    }
    pub fn message(mut self, m: &str) -> Fault {
        self.message = Some(m.to_string());
        self
    }
    /// Handle the request normally, then hold the answer `ms` milliseconds.
    pub fn answer_after(mut self, ms: u64) -> Fault {
        self.answer_after_ms = ms;
        self
    }
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }
    pub fn delay(mut self, ms: u64) -> Fault {
        self.delay_ms = ms;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Fault {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn reset(mut self) -> Fault {
        self.reset = true;
        self
    }
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub id: String,
    pub resolved: bool,
    pub path: String,
    pub line: u64,
    /// (database id, author, body)
    pub comments: Vec<(i64, String, String)>,
}

#[derive(Default)]
pub struct World {
    pub repo: String,
    pub base_sha: String,
    pub head_sha: String,
    pub pr_number: i64,
    pub draft: bool,
    pub state: String,
    /// Files by commit sha.
    pub trees: HashMap<String, BTreeMap<String, String>>,
    /// Leave `patch` out for these paths (large diffs).
    pub no_patch: Vec<String>,
    pub permissions: HashMap<String, String>,
    pub requests: Vec<Recorded>,
    pub faults: VecDeque<Fault>,
    pub check_runs: BTreeMap<i64, Value>,
    pub reviews: Vec<Value>,
    pub threads: Vec<Thread>,
    pub issue_comments: Vec<String>,
    /// Bodies GitHub refused as too long (with what was too long).
    pub refused_bodies: Vec<String>,
    pub reactions: Vec<(i64, String)>,
    pub tokens_issued: usize,
    pub next_id: i64,
    /// File contents as bytes (binary, non-UTF-8), by commit sha; they take precedence over `trees`.
    pub raw: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// Latency added to every answer (benchmarks).
    pub latency_ms: u64,
    /// Installation tokens GitHub no longer accepts (answered 401, as for an expired token).
    pub revoked_tokens: HashSet<String>,
    /// Requests that do not match GitHub's REST description (or are not well-formed GraphQL).
    pub violations: Vec<String>,
    /// Installations that are not this App's: GitHub answers 404 to their token requests.
    pub foreign_installations: HashSet<i64>,
    /// GitHub's REST description, when `../shared` is present.
    pub spec: Option<Arc<openapi::Spec>>,
    /// More open pull requests of the repository: number → (base sha, head sha) (read-only views: the
    /// main pull request above is the one tests change).
    pub other_pulls: BTreeMap<i64, (String, String)>,
    /// App-manifest codes GitHub would accept (`prodaudit setup`): code → the App it creates. A code works once.
    pub manifest_codes: HashMap<String, ManifestApp>,
}

/// The App a manifest code creates (`POST /app-manifests/{code}/conversions`).
#[derive(Debug, Clone)]
pub struct ManifestApp {
    pub id: i64,
    pub slug: String,
    pub pem: String,
    pub webhook_secret: Option<String>,
}

impl World {
    /// (base, head) of pull request `n`, if the repository has it.
    fn shas_of(&self, n: i64) -> Option<(String, String)> {
        if n == self.pr_number {
            return Some((self.base_sha.clone(), self.head_sha.clone()));
        }
        self.other_pulls.get(&n).cloned()
    }

    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    /// Every file of a commit as bytes.
    pub fn files_at(&self, sha: &str) -> BTreeMap<String, Vec<u8>> {
        let mut out: BTreeMap<String, Vec<u8>> = self
            .trees
            .get(sha)
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(raw) = self.raw.get(sha) {
            out.extend(raw.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }

    /// One file at a commit.
    pub fn file_at(&self, sha: &str, path: &str) -> Option<Vec<u8>> {
        if let Some(b) = self.raw.get(sha).and_then(|t| t.get(path)) {
            return Some(b.clone());
        }
        self.trees
            .get(sha)
            .and_then(|t| t.get(path))
            .map(|s| s.clone().into_bytes())
    }

    /// Requests by route (method and path template).
    pub fn counts_by_route(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in &self.requests {
            *out.entry(format!("{} {}", r.method, r.route)).or_default() += 1;
        }
        out
    }
}

static SPEC: std::sync::OnceLock<Option<Arc<openapi::Spec>>> = std::sync::OnceLock::new();

/// GitHub's REST description, loaded once; `None` (with the reason printed) without `../shared`.
pub fn spec() -> Option<Arc<openapi::Spec>> {
    SPEC.get_or_init(|| match openapi::load() {
        Ok(s) => Some(Arc::new(s)),
        Err(why) => {
            eprintln!("skipping OpenAPI validation of the App's requests: {why}");
            None
        }
    })
    .clone()
}

/// Assert that every request the App sent matched GitHub's description (when it is present).
pub fn assert_no_violations(w: &Shared) {
    let world = lock(w);
    if world.spec.is_none() {
        eprintln!("OpenAPI validation skipped: ../shared/github/openapi is not present");
        return;
    }
    assert!(
        world.violations.is_empty(),
        "requests that do not match GitHub's REST description:\n{}",
        world.violations.join("\n")
    );
}

pub type Shared = Arc<Mutex<World>>;

/// Start the fake on a free loopback port; returns its base URL and the shared world.
pub async fn start(mut world: World) -> (String, Shared) {
    world.spec = spec();
    let shared: Shared = Arc::new(Mutex::new(world));
    // GitHub Enterprise Server serves REST under /api/v3 and GraphQL at /api/graphql.
    let app = Router::new()
        .nest("/api/v3", routes())
        .route("/api/graphql", post(graphql))
        .merge(routes())
        .fallback(any(unknown))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            record_and_fault,
        ))
        .with_state(shared.clone());
    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
        Ok(l) => l,
        Err(e) => panic!("cannot bind the fake GitHub: {e}"),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    };
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), shared)
}

fn routes() -> Router<Shared> {
    Router::new()
        .route("/app/installations/{id}/access_tokens", post(token))
        .route("/repos/{o}/{r}/pulls/{n}", get(pull))
        .route("/repos/{o}/{r}/pulls/{n}/files", get(files))
        .route(
            "/repos/{o}/{r}/pulls/{n}/reviews",
            post(review).get(list_reviews),
        )
        .route("/repos/{o}/{r}/pulls/{n}/comments", get(review_comments))
        .route("/repos/{o}/{r}/check-runs", post(create_check))
        .route("/repos/{o}/{r}/check-runs/{id}", patch(update_check))
        .route("/repos/{o}/{r}/contents/{*path}", get(contents))
        .route("/repos/{o}/{r}/git/trees/{sha}", get(tree))
        .route(
            "/repos/{o}/{r}/collaborators/{u}/permission",
            get(permission),
        )
        .route(
            "/repos/{o}/{r}/issues/comments/{id}/reactions",
            post(reaction),
        )
        .route(
            "/repos/{o}/{r}/issues/{n}/comments",
            post(issue_comment).get(list_issue_comments),
        )
        .route("/repos/{o}/{r}/commits/{sha}/pulls", get(commit_pulls))
        .route("/repos/{o}/{r}/commits/{sha}/check-runs", get(list_checks))
        .route("/graphql", post(graphql))
        .route(
            "/app-manifests/{code}/conversions",
            post(manifest_conversion),
        )
}

async fn record_and_fault(
    State(w): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let authorization = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (fault, idx, latency, revoked) = {
        let mut world = lock(&w);
        let route = match &world.spec {
            Some(_) if openapi::is_graphql(&path) => "/graphql".to_string(),
            Some(spec) => spec
                .route(&method, &path)
                .unwrap_or_else(|| openapi::rest_path(&path).to_string()),
            None => openapi::rest_path(&path).to_string(),
        };
        if let Some(spec) = world.spec.clone()
            && let Err(v) = spec.check(&method, &path, &query, &bytes)
        {
            world.violations.push(v);
        }
        // The manifest conversion carries no credentials: its code is one.
        if !path.contains("/access_tokens")
            && !path.contains("/app-manifests/")
            && !authorization.starts_with("Bearer ghs_")
        {
            world.violations.push(format!(
                "{method} {path}: not sent with an installation token"
            ));
        }
        let rec = Recorded {
            method: method.clone(),
            path: path.clone(),
            query,
            authorization: authorization.clone(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            route,
            status: 0,
            at: std::time::Instant::now(),
        };
        world.requests.push(rec);
        let idx = world.requests.len() - 1;
        let pos = world.faults.iter().position(|f| {
            path.contains(&f.path_part)
                && f.method.as_deref().is_none_or(|m| m == method)
                && f.body_part.as_ref().is_none_or(|part| {
                    bytes
                        .windows(part.len().max(1))
                        .any(|w| w == part.as_bytes())
                })
        });
        let fault = match pos {
            Some(i) => {
                let f = world.faults[i].clone();
                if f.times <= 1 {
                    world.faults.remove(i);
                } else {
                    world.faults[i].times -= 1;
                }
                Some(f)
            }
            None => None,
        };
        let revoked = authorization
            .strip_prefix("Bearer ")
            .is_some_and(|t| world.revoked_tokens.contains(t));
        (fault, idx, world.latency_ms, revoked)
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let answer_after = fault.as_ref().map_or(0, |f| f.answer_after_ms);
    let fault = fault.filter(|f| f.answer_after_ms == 0);
    let resp = if let Some(f) = fault {
        if f.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms)).await;
        }
        if f.reset {
            // Unwinding the connection's task drops the connection with no answer (and no panic message).
            std::panic::resume_unwind(Box::new("injected connection reset"));
        }
        if f.status != 0 {
            let message = f.message.clone().unwrap_or_else(|| "injected fault".into());
            let mut resp = (
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"message": message})),
            )
                .into_response();
            for (k, v) in f.headers {
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_bytes()),
                    axum::http::HeaderValue::from_str(&v),
                ) {
                    resp.headers_mut().insert(k, v);
                }
            }
            Some(resp)
        } else {
            None
        }
    } else {
        None
    };
    let resp = match resp {
        Some(r) => r,
        None if revoked => (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "Bad credentials"})),
        )
            .into_response(),
        None => {
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(req).await
        }
    };
    lock(&w).requests[idx].status = resp.status().as_u16();
    if answer_after > 0 {
        // Done (and recorded) already; the answer comes late, or never if the client gave up.
        tokio::time::sleep(std::time::Duration::from_millis(answer_after)).await;
    }
    resp
}

fn lock(w: &Shared) -> std::sync::MutexGuard<'_, World> {
    match w.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"message": "Not Found"})),
    )
        .into_response()
}

async fn unknown(method: Method, uri: Uri) -> Response {
    (
        StatusCode::NOT_IMPLEMENTED,
        axum::Json(json!({"message": format!("fake GitHub has no {method} {uri}")})),
    )
        .into_response()
}

async fn token(
    State(w): State<Shared>,
    Path(installation): Path<i64>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !auth.starts_with("Bearer ey") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"message": "JWT required"})),
        )
            .into_response();
    }
    let mut world = lock(&w);
    if world.foreign_installations.contains(&installation) {
        return not_found();
    }
    world.tokens_issued += 1;
    let n = world.tokens_issued;
    let expires = chrono::Utc::now() + chrono::Duration::minutes(60);
    (
        StatusCode::CREATED,
        axum::Json(json!({"token": format!("ghs_test{n}"), "expires_at": expires.to_rfc3339()})),
    )
        .into_response()
}

fn pull_json(world: &World) -> Value {
    json!({
        "number": world.pr_number,
        "state": if world.state.is_empty() { "open" } else { world.state.as_str() },
        "draft": world.draft,
        "head": {"sha": world.head_sha, "ref": "feature", "repo": {"full_name": world.repo}},
        "base": {"sha": world.base_sha, "ref": "main", "repo": {"full_name": world.repo}},
    })
}

async fn pull(State(w): State<Shared>, Path((_o, _r, n)): Path<(String, String, i64)>) -> Response {
    let world = lock(&w);
    let Some((base, head)) = world.shas_of(n) else {
        return not_found();
    };
    let mut pull = pull_json(&world);
    pull["number"] = n.into();
    pull["head"]["sha"] = head.into();
    pull["base"]["sha"] = base.into();
    axum::Json(pull).into_response()
}

/// GitHub's `patch`: the hunks of a unified diff with three lines of context, no file header.
fn unified_patch(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff.unified_diff().context_radius(3).to_string();
    text.lines()
        .skip_while(|l| !l.starts_with("@@"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The new-side line ranges of the hunks of a diff (the lines a review comment may be on).
pub fn right_lines(old: &str, new: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for line in unified_patch(old, new).lines() {
        let Some(rest) = line.strip_prefix("@@ -") else {
            continue;
        };
        let Some(plus) = rest.split(' ').nth(1).and_then(|p| p.strip_prefix('+')) else {
            continue;
        };
        let (start, len) = match plus.split_once(',') {
            Some((s, l)) => (s.parse().unwrap_or(0), l.parse().unwrap_or(0)),
            None => (plus.parse().unwrap_or(0), 1),
        };
        if len > 0 {
            out.push((start, start + len - 1));
        }
    }
    out
}

fn is_binary(b: &[u8]) -> bool {
    b[..b.len().min(8000)].contains(&0)
}

async fn files(
    State(w): State<Shared>,
    Path((_o, _r, n)): Path<(String, String, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let world = lock(&w);
    let Some((base_sha, head_sha)) = world.shas_of(n) else {
        return not_found();
    };
    let per_page: usize = q
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = q
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let base = world.files_at(&base_sha);
    let head = world.files_at(&head_sha);
    let mut all = Vec::new();
    for (path, bytes) in &head {
        let old = base.get(path);
        if old == Some(bytes) {
            continue;
        }
        all.push((path.clone(), old.is_some(), Some(bytes)));
    }
    for path in base.keys().filter(|p| !head.contains_key(*p)) {
        all.push((path.clone(), true, None));
    }
    // GitHub lists at most 3000 files.
    all.truncate(3000);
    let last_page = all.len().div_ceil(per_page).max(1);
    let page_items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(|(path, existed, new)| {
            let Some(new) = new else {
                // A removed file's patch is every line removed (when it is text).
                let mut f = json!({"filename": path, "status": "removed", "changes": 1});
                if let Some(old) = base.get(&path)
                    && !world.no_patch.contains(&path)
                    && !is_binary(old)
                {
                    f["patch"] = unified_patch(&String::from_utf8_lossy(old), "").into();
                }
                return f;
            };
            let mut f = json!({
                "filename": path,
                "status": if existed { "modified" } else { "added" },
                "changes": 1,
            });
            let old = base.get(&path).cloned().unwrap_or_default();
            if !world.no_patch.contains(&path) && !is_binary(new) && !is_binary(&old) {
                f["patch"] = unified_patch(
                    &String::from_utf8_lossy(&old),
                    &String::from_utf8_lossy(new),
                )
                .into();
            }
            f
        })
        .collect();
    // GitHub's pagination links (absolute URLs; the App must not follow them blindly, see DESIGN.md).
    let mut links = Vec::new();
    let url = |p: usize| {
        format!(
            "<https://api.github.com/repositories/1/pulls/{n}/files?per_page={per_page}&page={p}>"
        )
    };
    if page < last_page {
        links.push(format!("{}; rel=\"next\"", url(page + 1)));
        links.push(format!("{}; rel=\"last\"", url(last_page)));
    }
    if page > 1 {
        links.push(format!("{}; rel=\"prev\"", url(page - 1)));
        links.push(format!("{}; rel=\"first\"", url(1)));
    }
    let mut resp = axum::Json(Value::Array(page_items)).into_response();
    if !links.is_empty()
        && let Ok(v) = axum::http::HeaderValue::from_str(&links.join(", "))
    {
        resp.headers_mut().insert(axum::http::header::LINK, v);
    }
    resp
}

async fn contents(
    State(w): State<Shared>,
    Path((_o, _r, path)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let world = lock(&w);
    let rev = q
        .get("ref")
        .cloned()
        .unwrap_or_else(|| world.head_sha.clone());
    match world.file_at(&rev, &path) {
        Some(bytes) => bytes.into_response(),
        None => not_found(),
    }
}

async fn tree(
    State(w): State<Shared>,
    Path((_o, _r, sha)): Path<(String, String, String)>,
) -> Response {
    let world = lock(&w);
    if !world.trees.contains_key(&sha) && !world.raw.contains_key(&sha) {
        return not_found();
    }
    let entries: Vec<Value> = world
        .files_at(&sha)
        .iter()
        .map(|(p, bytes)| {
            json!({"path": p, "mode": "100644", "type": "blob", "sha": blob_sha(bytes), "size": bytes.len()})
        })
        .collect();
    axum::Json(json!({"sha": sha, "tree": entries, "truncated": false})).into_response()
}

/// A blob's id from its contents, as git's is (the same contents, the same id; SHA-256 cut to 40 hex digits
/// stands in for git's SHA-1).
pub fn blob_sha(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    let digest: [u8; 32] = h.finalize().into();
    hex::encode(&digest[..20])
}

async fn create_check(State(w): State<Shared>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut world = lock(&w);
    if let Some(refused) = output_too_long(&v) {
        world.refused_bodies.push(refused.clone());
        return unprocessable(&refused);
    }
    let id = world.id();
    world.check_runs.insert(id, v);
    (StatusCode::CREATED, axum::Json(json!({"id": id}))).into_response()
}

async fn update_check(
    State(w): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, i64)>,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut world = lock(&w);
    if let Some(refused) = output_too_long(&v) {
        world.refused_bodies.push(refused.clone());
        return unprocessable(&refused);
    }
    let Some(run) = world.check_runs.get_mut(&id) else {
        return not_found();
    };
    // Later updates append annotations, as GitHub does.
    let mut annotations = run["output"]["annotations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(more) = v["output"]["annotations"].as_array() {
        annotations.extend(more.iter().cloned());
    }
    if let (Some(run), Some(upd)) = (run.as_object_mut(), v.as_object()) {
        for (k, val) in upd {
            run.insert(k.clone(), val.clone());
        }
    }
    run["output"]["annotations"] = Value::Array(annotations);
    axum::Json(json!({"id": id})).into_response()
}

async fn review(State(w): State<Shared>, body: Bytes) -> Response {
    let mut v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut world = lock(&w);
    // GitHub refuses bodies over 65,536 characters.
    let too_long = std::iter::once(("review body", v["body"].as_str().unwrap_or("")))
        .chain(
            v["comments"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| ("comment body", c["body"].as_str().unwrap_or(""))),
        )
        .find(|(_, b)| b.chars().count() > MAX_BODY_CHARS)
        .map(|(what, b)| format!("{what}: {} characters", b.chars().count()));
    if let Some(refused) = too_long {
        world.refused_bodies.push(refused.clone());
        return unprocessable(&refused);
    }
    // Reject comments outside the diff as GitHub does: the whole review fails with 422.
    for c in v["comments"].as_array().cloned().unwrap_or_default() {
        let path = c["path"].as_str().unwrap_or("");
        let line = c["line"].as_u64().unwrap_or(0);
        let old = world.file_at(&world.base_sha, path).unwrap_or_default();
        let new = world.file_at(&world.head_sha, path).unwrap_or_default();
        let in_diff = right_lines(
            &String::from_utf8_lossy(&old),
            &String::from_utf8_lossy(&new),
        )
        .iter()
        .any(|(a, b)| (*a..=*b).contains(&line));
        if !in_diff || c["side"] != "RIGHT" {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({"message": "Unprocessable Entity", "errors": ["Line could not be resolved"]})),
            )
                .into_response();
        }
    }
    let id = world.id();
    for c in v["comments"].as_array().cloned().unwrap_or_default() {
        let cid = world.id();
        let tid = format!("T{cid}");
        world.threads.push(Thread {
            id: tid,
            resolved: false,
            path: c["path"].as_str().unwrap_or("").to_string(),
            line: c["line"].as_u64().unwrap_or(0),
            comments: vec![(
                cid,
                "prodaudit".into(),
                c["body"].as_str().unwrap_or("").to_string(),
            )],
        });
    }
    v["id"] = id.into();
    world.reviews.push(v);
    axum::Json(json!({"id": id})).into_response()
}

/// GitHub's limit on review, comment and issue-comment bodies.
pub const MAX_BODY_CHARS: usize = 65_536;

fn unprocessable(why: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({"message": "Validation Failed", "errors": [why]})),
    )
        .into_response()
}

/// A check run's output over GitHub's limits: summary and text 65,535 characters, annotation titles 255,
/// messages and raw details 64 KB.
fn output_too_long(v: &Value) -> Option<String> {
    let out = &v["output"];
    for k in ["summary", "text"] {
        let n = out[k].as_str().map_or(0, |s| s.chars().count());
        if n > 65_535 {
            return Some(format!("output.{k}: {n} characters"));
        }
    }
    for a in out["annotations"].as_array().into_iter().flatten() {
        let title = a["title"].as_str().map_or(0, |s| s.chars().count());
        if title > 255 {
            return Some(format!("annotation title: {title} characters"));
        }
        for k in ["message", "raw_details"] {
            let n = a[k].as_str().map_or(0, str::len);
            if n > 64 * 1024 {
                return Some(format!("annotation {k}: {n} bytes"));
            }
        }
    }
    None
}

async fn list_reviews(State(w): State<Shared>) -> Response {
    let world = lock(&w);
    let all: Vec<Value> = world
        .reviews
        .iter()
        .map(|r| json!({"id": r["id"], "body": r["body"], "commit_id": r["commit_id"], "state": "COMMENTED"}))
        .collect();
    axum::Json(Value::Array(all)).into_response()
}

async fn list_issue_comments(State(w): State<Shared>) -> Response {
    let world = lock(&w);
    let all: Vec<Value> = world
        .issue_comments
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"id": i + 1, "body": b}))
        .collect();
    axum::Json(Value::Array(all)).into_response()
}

async fn list_checks(
    State(w): State<Shared>,
    Path((_o, _r, sha)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let world = lock(&w);
    let runs: Vec<Value> = world
        .check_runs
        .iter()
        .rev()
        .filter(|(_, r)| r["head_sha"] == sha.as_str())
        .filter(|(_, r)| q.get("check_name").is_none_or(|n| r["name"] == n.as_str()))
        .map(|(id, r)| {
            json!({"id": id, "name": r["name"], "head_sha": r["head_sha"], "status": r["status"],
                   "conclusion": r["conclusion"], "external_id": r["external_id"]})
        })
        .collect();
    axum::Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response()
}

async fn review_comments(State(w): State<Shared>) -> Response {
    let world = lock(&w);
    let all: Vec<Value> = world
        .threads
        .iter()
        .flat_map(|t| {
            t.comments
                .iter()
                .map(|(id, _, body)| json!({"id": id, "body": body}))
        })
        .collect();
    axum::Json(Value::Array(all)).into_response()
}

async fn permission(
    State(w): State<Shared>,
    Path((_o, _r, u)): Path<(String, String, String)>,
) -> Response {
    let world = lock(&w);
    match world.permissions.get(&u) {
        Some(p) => axum::Json(json!({"permission": p, "role_name": p})).into_response(),
        None => not_found(),
    }
}

async fn reaction(
    State(w): State<Shared>,
    Path((_o, _r, id)): Path<(String, String, i64)>,
    body: Bytes,
) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    lock(&w)
        .reactions
        .push((id, v["content"].as_str().unwrap_or("").to_string()));
    (StatusCode::CREATED, axum::Json(json!({"id": 1}))).into_response()
}

async fn issue_comment(State(w): State<Shared>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = v["body"].as_str().unwrap_or("").to_string();
    let mut world = lock(&w);
    if text.chars().count() > MAX_BODY_CHARS {
        let refused = format!("issue comment: {} characters", text.chars().count());
        world.refused_bodies.push(refused.clone());
        return unprocessable(&refused);
    }
    world.issue_comments.push(text);
    (StatusCode::CREATED, axum::Json(json!({"id": 1}))).into_response()
}

async fn commit_pulls(
    State(w): State<Shared>,
    Path((_o, _r, sha)): Path<(String, String, String)>,
) -> Response {
    let world = lock(&w);
    if sha == world.head_sha {
        axum::Json(json!([pull_json(&world)])).into_response()
    } else {
        axum::Json(json!([])).into_response()
    }
}

async fn graphql(State(w): State<Shared>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let query = v["query"].as_str().unwrap_or("");
    let vars = &v["variables"];
    let mut world = lock(&w);
    if query.contains("resolveReviewThread") {
        let id = vars["id"].as_str().unwrap_or("");
        return match world.threads.iter_mut().find(|t| t.id == id) {
            Some(t) => {
                t.resolved = true;
                axum::Json(
                    json!({"data": {"resolveReviewThread": {"thread": {"isResolved": true}}}}),
                )
                .into_response()
            }
            None => axum::Json(json!({"errors": [{"message": "no such thread"}]})).into_response(),
        };
    }
    let mut repo = serde_json::Map::new();
    if query.contains("pullRequest(") {
        let Some((_, head_sha)) = vars["number"].as_i64().and_then(|n| world.shas_of(n)) else {
            return axum::Json(json!({"data": {"repository": {"pullRequest": null}}, "errors": [{"type": "NOT_FOUND", "message": "Could not resolve to a PullRequest"}]}))
                .into_response();
        };
        let mut pr = serde_json::Map::new();
        if query.contains("headRefOid") {
            pr.insert("headRefOid".into(), head_sha.into());
        }
        if query.contains("state") {
            let state = if world.state.is_empty() {
                "open"
            } else {
                world.state.as_str()
            };
            pr.insert("state".into(), state.to_ascii_uppercase().into());
        }
        if query.contains("reviewThreads") {
            let nodes: Vec<Value> = world
                .threads
                .iter()
                .map(|t| {
                    json!({"id": t.id, "isResolved": t.resolved, "comments": {"nodes": t.comments.iter().map(|(id, a, b)| json!({"databaseId": id, "body": b, "author": {"login": a}})).collect::<Vec<_>>()}})
                })
                .collect();
            pr.insert("reviewThreads".into(), json!({"nodes": nodes}));
        }
        repo.insert("pullRequest".into(), Value::Object(pr));
    }
    // Blob lookups: f{i}: object(expression: $e{i}).
    if let Some(obj) = vars.as_object() {
        for (k, expr) in obj {
            let Some(i) = k.strip_prefix('e') else {
                continue;
            };
            let expr = expr.as_str().unwrap_or("");
            let (rev, path) = expr.split_once(':').unwrap_or((expr, ""));
            let blob = world
                .file_at(rev, path)
                .map(|bytes| {
                    let binary = is_binary(&bytes);
                    let text = if binary {
                        Value::Null
                    } else {
                        std::str::from_utf8(&bytes).map_or(Value::Null, Value::from)
                    };
                    json!({"text": text, "isBinary": binary, "byteSize": bytes.len()})
                })
                .unwrap_or(Value::Null);
            repo.insert(format!("f{i}"), blob);
        }
    }
    axum::Json(json!({"data": {"repository": repo}})).into_response()
}

/// The world, locked (for tests).
pub fn lock_pub(w: &Shared) -> std::sync::MutexGuard<'_, World> {
    lock(w)
}

/// `POST /app-manifests/{code}/conversions`: the App a known code creates (201, in the shape of GitHub's
/// description: the `integration` fields plus `client_id`, `client_secret`, `webhook_secret`, `pem`), once; an
/// unknown or used code is 404 as on GitHub.
async fn manifest_conversion(
    State(w): State<Shared>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut world = lock(&w);
    if headers.get("authorization").is_some() {
        world
            .violations
            .push("POST /app-manifests/{code}/conversions: sent with credentials".into());
    }
    let Some(app) = world.manifest_codes.remove(&code) else {
        return not_found();
    };
    let html_url = format!("https://github.example/apps/{}", app.slug);
    let body = json!({
        "id": app.id,
        "slug": app.slug,
        "node_id": format!("A_{}", app.id),
        "owner": {"login": "octo-org", "id": 1, "node_id": "O_1", "type": "Organization",
                  "html_url": "https://github.example/octo-org", "url": "https://api.github.example/orgs/octo-org",
                  "avatar_url": "", "gravatar_id": "", "site_admin": false},
        "name": app.slug,
        "description": "",
        "external_url": "https://github.com/prodaudit/prodaudit",
        "html_url": html_url,
        "created_at": "2026-12-06T00:00:00Z",
        "updated_at": "2026-12-06T00:00:00Z",
        "permissions": {"checks": "write", "pull_requests": "write", "contents": "read", "issues": "write",
                        "metadata": "read"},
        "events": ["pull_request", "issue_comment", "check_run", "check_suite"],
        "client_id": format!("Iv1.{:016x}", app.id),
        "client_secret": "0123456789abcdef0123456789abcdef01234567",
        "webhook_secret": app.webhook_secret,
        "pem": app.pem,
    });
    (StatusCode::CREATED, axum::Json(body)).into_response()
}
