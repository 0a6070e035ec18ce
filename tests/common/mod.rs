//! Helpers for integration tests: real git repositories in temporary folders, and the real binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestRepo {
    pub dir: tempfile::TempDir,
}

impl TestRepo {
    /// A new repository whose first branch is `main`.
    pub fn new() -> TestRepo {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("cannot create a temp dir: {e}"),
        };
        let repo = TestRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Run git in the repository with a fixed identity and no user configuration; panics on failure.
    pub fn git(&self, args: &[&str]) -> String {
        let out = git_cmd(self.path()).args(args).output();
        let out = match out {
            Ok(o) => o,
            Err(e) => panic!("cannot run git: {e}"),
        };
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn write(&self, path: &str, text: &str) {
        self.write_bytes(path, text.as_bytes());
    }

    pub fn write_bytes(&self, path: &str, bytes: &[u8]) {
        let full = self.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).ok();
        }
        if let Err(e) = std::fs::write(&full, bytes) {
            panic!("cannot write {}: {e}", full.display());
        }
    }

    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com");
    c
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_prodaudit"))
}

/// Run `prodaudit` with `args` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin())
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("LOG_LEVEL")
        .args(args)
        .output();
    match out {
        Ok(o) => o,
        Err(e) => panic!("cannot run prodaudit: {e}"),
    }
}

/// Run and parse `--format json` output.
pub fn run_json(dir: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--format", "json"]);
    let out = run(dir, &all);
    let code = out.status.code().unwrap_or(-1);
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str(&text) {
        Ok(v) => (code, v),
        Err(e) => panic!(
            "not JSON ({e}); exit {code}; stdout: {text}; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Where one detector reported in a JSON report, as (path, line) pairs.
pub fn places_of(report: &serde_json::Value, check: &str) -> Vec<(String, u64)> {
    triples(report)
        .into_iter()
        .filter(|(c, _, _)| c == check)
        .map(|(_, p, l)| (p, l))
        .collect()
}

/// The findings of a JSON report as (check, path, line) triples.
pub fn triples(report: &serde_json::Value) -> Vec<(String, String, u64)> {
    report["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["check"].as_str().unwrap_or_default().to_string(),
                        f["path"].as_str().unwrap_or_default().to_string(),
                        f["line"].as_u64().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
