use super::git_parse::TWO_HUNKS;
use super::text;
use crate::diff::{DiffError, Hunk, parse_git_diff, parse_patch};

/// The shape of the `patch` field of GitHub's pull-request files API.
const GITHUB_PATCH: &str = "@@ -10,7 +10,8 @@ class Service:\n     async def run(self):\n-        data = requests.get(url)\n+        async with httpx.AsyncClient() as c:\n+            data = await c.get(url)\n         return data\n \n \n def helper():\n     pass\n@@ -40,3 +41,4 @@ def tail():\n     a\n     b\n     c\n+    d\n\\ No newline at end of file";

#[test]
fn parse_patch_reads_a_github_patch() {
    let hunks = parse_patch(GITHUB_PATCH).unwrap();
    assert_eq!(
        hunks,
        vec![
            Hunk {
                old_start: 10,
                old_lines: 7,
                new_start: 10,
                new_lines: 8,
                added: vec![11, 12],
                deleted: vec![11]
            },
            Hunk {
                old_start: 40,
                old_lines: 3,
                new_start: 41,
                new_lines: 4,
                added: vec![44],
                deleted: vec![]
            },
        ]
    );
}

#[test]
fn parse_patch_and_parse_git_diff_share_the_hunk_parser() {
    let body = text(&TWO_HUNKS[4..]);
    let from_patch = parse_patch(&body).unwrap();
    let from_git = parse_git_diff(text(TWO_HUNKS).as_bytes()).unwrap();
    assert_eq!(from_patch, from_git[0].hunks);
    // The same content rules apply: "+++"-looking lines are content, CRLF works.
    let tricky = "@@ -1,2 +1,3 @@\r\n--- a/x\r\n+++ b/x\r\n+@@ -1 +1 @@\r\n \r\n";
    assert_eq!(
        parse_patch(tricky).unwrap(),
        vec![Hunk {
            old_start: 1,
            old_lines: 2,
            new_start: 1,
            new_lines: 3,
            added: vec![1, 2],
            deleted: vec![1]
        }]
    );
}

#[test]
fn parse_patch_errors() {
    assert_eq!(parse_patch("").unwrap(), vec![]);
    assert_eq!(parse_patch("\n").unwrap(), vec![]);
    let line_of = |p: &str| match parse_patch(p) {
        Err(DiffError::Malformed { line, .. }) => line,
        other => panic!("expected an error for {p:?}, got {other:?}"),
    };
    assert_eq!(line_of("diff --git a/x b/x\n@@ -1 +1 @@\n-a\n+b\n"), 1);
    assert_eq!(line_of("@@ -1,3 +1,3 @@\n a\n-b\n+c\n"), 5,);
    assert_eq!(line_of("@@ -1 +1 @@\n-a\n+b\n+c\n"), 4);
    assert_eq!(line_of("@@ -1 +1 @@\n-a\n+b\n\ngarbage\n"), 5);
    assert_eq!(line_of("@@ -1 +1\n-a\n+b\n"), 1);
    assert_eq!(line_of("@@ -1 +1 @@\n-a\nzzz\n"), 3);
}
