//! The fake GitHub's request validation itself: it must accept what GitHub documents and flag what GitHub
//! would refuse (so "zero violations" in the end-to-end tests means something).

mod fake_github;

use fake_github::openapi;
use serde_json::json;

fn spec() -> Option<openapi::Spec> {
    match openapi::load() {
        Ok(s) => Some(s),
        Err(why) => {
            eprintln!("skipping: {why}");
            None
        }
    }
}

fn body(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[test]
fn accepts_documented_requests() {
    let Some(s) = spec() else { return };
    let ok = |m: &str, p: &str, q: &str, b: &[u8]| {
        if let Err(e) = s.check(m, p, q, b) {
            panic!("{e}");
        }
    };
    ok("GET", "/repos/acme/api/pulls/7", "", b"");
    ok(
        "GET",
        "/api/v3/repos/acme/api/pulls/7/files",
        "per_page=100&page=2",
        b"",
    );
    ok(
        "GET",
        "/repos/acme/api/contents/app/new%20name%20%C3%A9.py",
        "ref=abc",
        b"",
    );
    ok(
        "POST",
        "/repos/acme/api/check-runs",
        "",
        &body(
            json!({"name": "production-standards", "head_sha": "abc", "status": "in_progress",
            "started_at": "2026-01-01T00:00:00Z", "output": {"title": "t", "summary": "s"}}),
        ),
    );
    ok(
        "PATCH",
        "/repos/acme/api/check-runs/5",
        "",
        &body(json!({"status": "completed", "conclusion": "success"})),
    );
    ok(
        "POST",
        "/repos/acme/api/pulls/7/reviews",
        "",
        &body(json!({"commit_id": "abc", "body": "b", "event": "COMMENT",
            "comments": [{"path": "a.py", "line": 3, "side": "RIGHT", "body": "x"}]})),
    );
    ok("GET", "/repos/acme/api/git/trees/abc", "recursive=1", b"");
    ok(
        "POST",
        "/graphql",
        "",
        &body(json!({"query": "query($id:ID!){node(id:$id){id}}", "variables": {"id": "x"}})),
    );
}

#[test]
fn flags_what_github_would_refuse() {
    let Some(s) = spec() else { return };
    let bad = |m: &str, p: &str, q: &str, b: &[u8]| {
        assert!(s.check(m, p, q, b).is_err(), "{m} {p}?{q} passed");
    };
    bad("GET", "/repos/acme/api/pulls/seven", "", b"");
    bad("DELETE", "/repos/acme/api/pulls/7", "", b"");
    bad("GET", "/repos/acme/api/pullz/7", "", b"");
    bad("GET", "/repos/acme/api/pulls/7/files", "per_page=500", b"");
    bad("GET", "/repos/acme/api/pulls/7/files", "bogus=1", b"");
    // Completed without a conclusion (the oneOf on status).
    bad(
        "POST",
        "/repos/acme/api/check-runs",
        "",
        &body(json!({"name": "n", "head_sha": "abc", "status": "completed"})),
    );
    // More than 50 annotations in one request.
    let ann: Vec<_> = (0..51)
        .map(|i| {
            json!({"path": "a.py", "start_line": i + 1, "end_line": i + 1,
            "annotation_level": "warning", "message": "m"})
        })
        .collect();
    bad(
        "PATCH",
        "/repos/acme/api/check-runs/5",
        "",
        &body(json!({"output": {"title": "t", "summary": "s", "annotations": ann}})),
    );
    // A summary over 65535 characters.
    bad(
        "PATCH",
        "/repos/acme/api/check-runs/5",
        "",
        &body(json!({"output": {"title": "t", "summary": "x".repeat(65536)}})),
    );
    // An unknown review event.
    bad(
        "POST",
        "/repos/acme/api/pulls/7/reviews",
        "",
        &body(json!({"event": "SHOUT"})),
    );
    bad("POST", "/graphql", "", &body(json!({"variables": {}})));
    bad(
        "POST",
        "/graphql",
        "",
        &body(json!({"query": "query($id:ID!){node(id:$id){id}}", "variables": {}})),
    );
}
