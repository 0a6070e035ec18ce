//! An in-process fake GitHub for the App's tests: serves the endpoints the App calls from a scenario (a
//! repository's files at base and head, the pull request, collaborators), records every request, keeps the
//! check runs, reviews and threads the App creates, and injects faults on request.

#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, patch, post};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub authorization: String,
    pub body: Value,
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
    pub reactions: Vec<(i64, String)>,
    pub tokens_issued: usize,
    pub next_id: i64,
}

impl World {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

pub type Shared = Arc<Mutex<World>>;

/// Start the fake on a free loopback port; returns its base URL and the shared world.
pub async fn start(world: World) -> (String, Shared) {
    let shared: Shared = Arc::new(Mutex::new(world));
    let app = Router::new()
        .route("/app/installations/{id}/access_tokens", post(token))
        .route("/repos/{o}/{r}/pulls/{n}", get(pull))
        .route("/repos/{o}/{r}/pulls/{n}/files", get(files))
        .route("/repos/{o}/{r}/pulls/{n}/reviews", post(review))
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
        .route("/repos/{o}/{r}/issues/{n}/comments", post(issue_comment))
        .route("/repos/{o}/{r}/commits/{sha}/pulls", get(commit_pulls))
        .route("/graphql", post(graphql))
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

async fn record_and_fault(
    State(w): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        authorization: parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let fault = {
        let mut world = match w.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        world.requests.push(rec.clone());
        let pos = world.faults.iter().position(|f| {
            rec.path.contains(&f.path_part) && f.method.as_deref().is_none_or(|m| m == rec.method)
        });
        match pos {
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
        }
    };
    if let Some(f) = fault {
        if f.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(f.delay_ms)).await;
        }
        if f.status != 0 {
            let mut resp = (
                StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                axum::Json(json!({"message": "injected fault"})),
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
            return resp;
        }
    }
    let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
    next.run(req).await
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

async fn token(State(w): State<Shared>, headers: HeaderMap) -> Response {
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
    if n != world.pr_number {
        return not_found();
    }
    axum::Json(pull_json(&world)).into_response()
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

async fn files(
    State(w): State<Shared>,
    Path((_o, _r, n)): Path<(String, String, i64)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let world = lock(&w);
    if n != world.pr_number {
        return not_found();
    }
    let per_page: usize = q.get("per_page").and_then(|v| v.parse().ok()).unwrap_or(30);
    let page: usize = q.get("page").and_then(|v| v.parse().ok()).unwrap_or(1);
    let empty = BTreeMap::new();
    let base = world.trees.get(&world.base_sha).unwrap_or(&empty);
    let head = world.trees.get(&world.head_sha).unwrap_or(&empty);
    let mut all = Vec::new();
    for (path, text) in head {
        let old = base.get(path);
        if old == Some(text) {
            continue;
        }
        let mut f = json!({
            "filename": path,
            "status": if old.is_some() { "modified" } else { "added" },
            "changes": 1,
        });
        if !world.no_patch.contains(path) {
            f["patch"] = unified_patch(old.map(String::as_str).unwrap_or(""), text).into();
        }
        all.push(f);
    }
    for path in base.keys().filter(|p| !head.contains_key(*p)) {
        all.push(json!({"filename": path, "status": "removed", "changes": 1}));
    }
    let page_items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    axum::Json(Value::Array(page_items)).into_response()
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
    match world.trees.get(&rev).and_then(|t| t.get(&path)) {
        Some(text) => text.clone().into_response(),
        None => not_found(),
    }
}

async fn tree(
    State(w): State<Shared>,
    Path((_o, _r, sha)): Path<(String, String, String)>,
) -> Response {
    let world = lock(&w);
    let Some(t) = world.trees.get(&sha) else {
        return not_found();
    };
    let entries: Vec<Value> = t
        .keys()
        .map(|p| json!({"path": p, "type": "blob"}))
        .collect();
    axum::Json(json!({"sha": sha, "tree": entries, "truncated": false})).into_response()
}

async fn create_check(State(w): State<Shared>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut world = lock(&w);
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
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut world = lock(&w);
    // Reject comments outside the diff as GitHub does: the whole review fails with 422.
    let empty = BTreeMap::new();
    let head = world.trees.get(&world.head_sha).unwrap_or(&empty).clone();
    for c in v["comments"].as_array().cloned().unwrap_or_default() {
        let path = c["path"].as_str().unwrap_or("");
        let line = c["line"].as_u64().unwrap_or(0);
        let lines = head
            .get(path)
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0);
        if line == 0 || line > lines {
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
    world.reviews.push(v);
    axum::Json(json!({"id": id})).into_response()
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
    lock(&w)
        .issue_comments
        .push(v["body"].as_str().unwrap_or("").to_string());
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
    if query.contains("reviewThreads") {
        let nodes: Vec<Value> = world
            .threads
            .iter()
            .map(|t| {
                json!({"id": t.id, "isResolved": t.resolved, "comments": {"nodes": t.comments.iter().map(|(id, a, b)| json!({"databaseId": id, "body": b, "author": {"login": a}})).collect::<Vec<_>>()}})
            })
            .collect();
        return axum::Json(
            json!({"data": {"repository": {"pullRequest": {"reviewThreads": {"nodes": nodes}}}}}),
        )
        .into_response();
    }
    // Blob lookups: f{i}: object(expression: $e{i}).
    let mut repo = serde_json::Map::new();
    if let Some(obj) = vars.as_object() {
        for (k, expr) in obj {
            let Some(i) = k.strip_prefix('e') else {
                continue;
            };
            let expr = expr.as_str().unwrap_or("");
            let (rev, path) = expr.split_once(':').unwrap_or((expr, ""));
            let blob = world
                .trees
                .get(rev)
                .and_then(|t| t.get(path))
                .map(|text| json!({"text": text, "isBinary": false, "byteSize": text.len()}))
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
