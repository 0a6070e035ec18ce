//! The result cache on real git repositories: the same report with and without it, and each thing its key is
//! made of (a file's bytes, the rule files, the repository configuration, the program's version, the files a
//! cross-file rule reads) making the files it concerns analysed again. Which files were analysed is read from the
//! `N files from cache, M analysed` line the CLI logs at `LOG_LEVEL=info`.

mod common;
use common::{TestRepo, bin, triples};
use std::path::Path;
use std::process::{Command, Output};

const BLOCKING: &str = "import time\n\nasync def f():\n    time.sleep(1)\n";
const CLEAN: &str = "def g():\n    return 1\n";
const CONFIG: &str =
    "import os\n\nDATABASE_URL = os.environ[\"DATABASE_URL\"]\nNEW_X = os.getenv(\"NEW_X\")\n";

/// Run prodaudit in `dir` with extra environment variables; logs at info level without colour.
fn run_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LOG_LEVEL", "info")
        .env("NO_COLOR", "1")
        .env_remove("PRODAUDIT_NO_CACHE")
        .env_remove("PRODAUDIT_CACHE_VERSION")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run prodaudit: {e}"),
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    run_env(dir, args, &[])
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {}; stderr: {}", stdout(out), stderr(out)),
    }
}

/// (files from the cache, files analysed) from the run's log line.
fn counts(out: &Output) -> (usize, usize) {
    let err = stderr(out);
    let Some(line) = err.lines().find(|l| l.contains("files from cache")) else {
        panic!("no cache line in stderr: {err}");
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "files")
        .filter(|&i| i > 0 && words.get(i + 1) == Some(&"from"));
    let hits = at.and_then(|i| words[i - 1].parse().ok());
    let analysed = words
        .iter()
        .position(|w| w.starts_with("analysed"))
        .filter(|&i| i > 0)
        .and_then(|i| words[i - 1].parse().ok());
    match (hits, analysed) {
        (Some(h), Some(a)) => (h, a),
        _ => panic!("cannot read the cache line: {line}"),
    }
}

fn warnings(out: &Output) -> Vec<String> {
    stderr(out)
        .lines()
        .filter(|l| l.contains("WARN"))
        .map(str::to_string)
        .collect()
}

/// A repository with a C5 finding, two clean files, and a setting that `.env.example` lacks (a cross-file rule).
fn repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("app/blocking.py", BLOCKING);
    repo.write("app/clean.py", CLEAN);
    repo.write("app/other.py", "def h():\n    return 2\n");
    repo.write("app/core/config.py", CONFIG);
    repo.write(".env.example", "DATABASE_URL=postgresql://localhost/app\n");
    // The undocumented-setting detector (the cross-file rule these tests watch) is opt-in.
    repo.write(
        ".github/prodaudit.yml",
        "rules:\n  enable: [O3-optional-setting-not-in-env-example]\n",
    );
    repo.commit("base");
    repo
}

const ALL_JSON: &[&str] = &["audit", "--all-lines", "--format", "json"];

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(dir.join(".prodaudit_cache/v1")) else {
        return out;
    };
    for s in shards.flatten() {
        if let Ok(files) = std::fs::read_dir(s.path()) {
            out.extend(files.flatten().map(|f| f.path()));
        }
    }
    out.sort();
    out
}

#[test]
fn the_same_report_with_and_without_the_cache_and_the_second_run_reads_it() {
    let repo = repo();
    let uncached = run(
        repo.path(),
        &["audit", "--all-lines", "--format", "json", "--no-cache"],
    );
    assert!(
        !stderr(&uncached).contains("files from cache"),
        "--no-cache uses no cache: {}",
        stderr(&uncached)
    );
    assert!(
        !repo.path().join(".prodaudit_cache").exists(),
        "--no-cache creates nothing"
    );
    let cold = run(repo.path(), ALL_JSON);
    assert_eq!(counts(&cold), (0, 5));
    let warm = run(repo.path(), ALL_JSON);
    assert_eq!(counts(&warm), (5, 0), "{}", stderr(&warm));
    assert_eq!(stdout(&uncached), stdout(&cold));
    assert_eq!(stdout(&cold), stdout(&warm), "byte-identical JSON");
    assert_eq!(cold.status.code(), warm.status.code());
    let found = triples(&json(&warm));
    assert!(
        found.contains(&("C5-blocking-sleep".into(), "app/blocking.py".into(), 4)),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(c, p, _)| c.contains("env-example") && p == "app/core/config.py"),
        "the cross-file finding comes from the cache too: {found:?}"
    );
    // The text format's code frames (not part of the JSON) survive the cache.
    let text_uncached = run(repo.path(), &["audit", "--all-lines", "--no-cache"]);
    let text_warm = run(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(counts(&text_warm), (5, 0));
    assert_eq!(stdout(&text_uncached), stdout(&text_warm));
    assert!(stdout(&text_warm).contains("time.sleep(1)"));
    // PRODAUDIT_NO_CACHE does what --no-cache does.
    let env_off = run_env(repo.path(), ALL_JSON, &[("PRODAUDIT_NO_CACHE", "1")]);
    assert!(!stderr(&env_off).contains("files from cache"));
    assert_eq!(stdout(&env_off), stdout(&warm));
    // The folder keeps itself out of git and out of the audit.
    let ignore = std::fs::read_to_string(repo.path().join(".prodaudit_cache/.gitignore"));
    assert!(ignore.is_ok_and(|t| t.lines().any(|l| l == "*")));
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}

#[test]
fn an_edited_file_is_analysed_again_and_only_it() {
    let repo = repo();
    let cold = run(repo.path(), ALL_JSON);
    assert_eq!(counts(&cold), (0, 5));
    repo.write(
        "app/clean.py",
        "import time\n\nasync def g():\n    time.sleep(2)\n",
    );
    let after = run(repo.path(), ALL_JSON);
    assert_eq!(counts(&after), (4, 1), "{}", stderr(&after));
    assert!(
        triples(&json(&after)).contains(&("C5-blocking-sleep".into(), "app/clean.py".into(), 4)),
        "the new finding appears"
    );
    repo.write("app/clean.py", CLEAN);
    let back = run(repo.path(), ALL_JSON);
    assert_eq!(
        counts(&back),
        (5, 0),
        "the earlier contents' entry is still there"
    );
    assert_eq!(stdout(&back), stdout(&cold));
    // A new module changes the tree: the new file and config.py (its O3 check reads the repository) are
    // analysed; the files on which no cross-file check ran keep their entries.
    repo.write("app/added.py", "def a():\n    return 4\n");
    let added = run(repo.path(), ALL_JSON);
    assert_eq!(counts(&added), (4, 2), "{}", stderr(&added));
    let uncached = run(
        repo.path(),
        &["audit", "--all-lines", "--format", "json", "--no-cache"],
    );
    assert_eq!(stdout(&added), stdout(&uncached));
}

#[test]
fn a_file_a_cross_file_rule_reads_invalidates_the_files_that_read_it() {
    let repo = repo();
    let cold = run(repo.path(), ALL_JSON);
    let undocumented = |out: &Output| {
        triples(&json(out))
            .into_iter()
            .filter(|(c, p, _)| c.contains("env-example") && p == "app/core/config.py")
            .count()
    };
    assert_eq!(undocumented(&cold), 1, "{}", stdout(&cold));
    // `.env.example` is not analysed itself here, but the O3 check on config.py reads it.
    repo.write(
        ".env.example",
        "DATABASE_URL=postgresql://localhost/app\n# NEW_X=\n",
    );
    let after = run(repo.path(), ALL_JSON);
    assert_eq!(undocumented(&after), 0, "{}", stdout(&after));
    let uncached = run(
        repo.path(),
        &["audit", "--all-lines", "--format", "json", "--no-cache"],
    );
    assert_eq!(stdout(&after), stdout(&uncached));
    let (hits, analysed) = counts(&after);
    assert!(analysed >= 1, "config.py was analysed again");
    assert_eq!(hits + analysed, 5);
    assert!(
        hits >= 1,
        "files on which no cross-file check runs keep their entries: {}",
        stderr(&after)
    );
}

#[test]
fn a_changed_rule_file_invalidates_every_result() {
    let repo = repo();
    repo.write("app/foo.py", "def k():\n    foo()\n");
    let rules = tempfile::tempdir().map_err(|e| e.to_string());
    let Ok(rules) = rules else {
        panic!("no temp dir");
    };
    let rule = |pattern: &str| {
        format!(
            "id: ACME1\ntitle: t\nseverity: low\nstandard: s\nwhy: w\nconforming: c\ndetectors:\n  - id: ACME1-call\n    message: m\n    rule: {{ pattern: '{pattern}()' }}\n    invalid: ['{pattern}()']\n    valid: ['other()']\n"
        )
    };
    let write = |text: String| std::fs::write(rules.path().join("ACME1.yml"), text).ok();
    let dir = rules.path().to_string_lossy().into_owned();
    let args = [
        "audit",
        "--all-lines",
        "--format",
        "json",
        "--rules",
        dir.as_str(),
    ];
    let acme = |out: &Output| {
        triples(&json(out))
            .into_iter()
            .filter(|(c, _, _)| c == "ACME1-call")
            .map(|(_, p, l)| (p, l))
            .collect::<Vec<_>>()
    };
    write(rule("foo"));
    let first = run(repo.path(), &args);
    assert_eq!(acme(&first), vec![("app/foo.py".to_string(), 2)]);
    assert_eq!(counts(&run(repo.path(), &args)), (6, 0));
    write(rule("bar"));
    let changed = run(repo.path(), &args);
    assert_eq!(counts(&changed), (0, 6), "{}", stderr(&changed));
    assert_eq!(
        acme(&changed),
        vec![],
        "the finding of the old rule is gone"
    );
    // Without the folder, the built-in rules alone: another key again.
    assert_eq!(counts(&run(repo.path(), ALL_JSON)), (0, 6));
}

#[test]
fn a_changed_repository_config_invalidates_every_result() {
    let repo = repo();
    let before = run(repo.path(), ALL_JSON);
    assert!(
        triples(&json(&before))
            .iter()
            .any(|(c, _, _)| c == "C5-blocking-sleep")
    );
    repo.write(
        ".github/prodaudit.yml",
        "rules:\n  enable: [O3-optional-setting-not-in-env-example]\n  disable: [C5]\n",
    );
    let after = run(repo.path(), ALL_JSON);
    // Every result again (prodaudit's own configuration is not audited: the same five files).
    assert_eq!(counts(&after), (0, 5), "{}", stderr(&after));
    assert!(
        !triples(&json(&after))
            .iter()
            .any(|(c, _, _)| c == "C5-blocking-sleep"),
        "{}",
        stdout(&after)
    );
    assert_eq!(counts(&run(repo.path(), ALL_JSON)), (5, 0));
    // Only what changes results is in the key: the same choices written differently keep every entry.
    repo.write(
        ".github/prodaudit.yml",
        "# the same choices\nrules:\n  enable:\n    - O3-optional-setting-not-in-env-example\n  disable:\n    - C5\n",
    );
    assert_eq!(counts(&run(repo.path(), ALL_JSON)), (5, 0));
}

#[test]
fn a_new_program_version_invalidates_every_result() {
    let repo = repo();
    let v1 = [("PRODAUDIT_CACHE_VERSION", "1.0.0")];
    let v2 = [("PRODAUDIT_CACHE_VERSION", "2.0.0")];
    assert_eq!(counts(&run_env(repo.path(), ALL_JSON, &v1)), (0, 5));
    assert_eq!(counts(&run_env(repo.path(), ALL_JSON, &v1)), (5, 0));
    let new = run_env(repo.path(), ALL_JSON, &v2);
    assert_eq!(counts(&new), (0, 5));
    assert_eq!(
        stdout(&new),
        stdout(&run(
            repo.path(),
            &["audit", "--all-lines", "--format", "json", "--no-cache"]
        ))
    );
}

#[test]
fn a_pull_request_view_is_cached_by_its_changed_lines() {
    let repo = repo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write(
        "app/clean.py",
        "def g():\n    return 1\n\n\nasync def h():\n    import time\n    time.sleep(3)\n",
    );
    repo.write("app/new.py", "def n():\n    return 3\n");
    repo.commit("feature");
    let args = ["audit", "--base", "main", "--format", "json"];
    let cold = run(repo.path(), &args);
    assert_eq!(counts(&cold), (0, 2));
    let warm = run(repo.path(), &args);
    assert_eq!(counts(&warm), (2, 0));
    assert_eq!(stdout(&cold), stdout(&warm));
    assert_eq!(
        triples(&json(&warm)),
        vec![(
            "C5-blocking-sleep".to_string(),
            "app/clean.py".to_string(),
            7
        )]
    );
    let uncached = run(
        repo.path(),
        &["audit", "--base", "main", "--format", "json", "--no-cache"],
    );
    assert_eq!(stdout(&uncached), stdout(&warm));
    // A file with nothing to report on any line, on which no cross-file check ran, has nothing on its changed
    // lines either: an --all-lines run's entry serves the pull request's view.
    let repo = self::repo();
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("app/new.py", "def n():\n    return 3\n");
    repo.commit("feature");
    assert_eq!(counts(&run(repo.path(), ALL_JSON)), (0, 6));
    let pr = run(repo.path(), &args);
    assert_eq!(counts(&pr), (1, 0), "{}", stderr(&pr));
    assert_eq!(triples(&json(&pr)), vec![]);
}

#[test]
fn a_damaged_entry_is_ignored_with_one_warning() {
    let repo = repo();
    let good = run(repo.path(), ALL_JSON);
    let files = entries(repo.path());
    assert_eq!(files.len(), 5);
    for (i, f) in files.iter().enumerate() {
        let damage: &[u8] = match i % 3 {
            0 => b"{\"key\": \"not json",
            1 => b"\x00\x01\x02",
            // Valid JSON of another entry: found under the wrong name.
            _ => br#"{"key":"00","context":null,"kind":"python","findings":[],"code":[],"code_cut":[],"suppressed":0,"not_service":0,"left_out":0}"#,
        };
        std::fs::write(f, damage).ok();
    }
    let after = run(repo.path(), ALL_JSON);
    assert_eq!(after.status.code(), good.status.code());
    assert_eq!(stdout(&after), stdout(&good));
    let warned = warnings(&after);
    assert_eq!(warned.len(), 1, "one warning: {warned:?}");
    assert!(warned[0].contains("result cache"), "{warned:?}");
    assert_eq!(counts(&after), (0, 5));
    // The damaged entries were replaced.
    let again = run(repo.path(), ALL_JSON);
    assert_eq!(counts(&again), (5, 0));
    assert_eq!(warnings(&again), Vec::<String>::new());
}

#[test]
fn an_unusable_cache_folder_is_ignored_with_one_warning() {
    let repo = repo();
    let good = run(
        repo.path(),
        &["audit", "--all-lines", "--format", "json", "--no-cache"],
    );
    // A file where the folder should be.
    std::fs::write(repo.path().join(".prodaudit_cache"), "not a folder").ok();
    let out = run(repo.path(), ALL_JSON);
    assert_eq!(stdout(&out), stdout(&good));
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains(".prodaudit_cache"), "{warned:?}");
    assert_eq!(counts(&out), (0, 5));
    std::fs::remove_file(repo.path().join(".prodaudit_cache")).ok();

    // A folder this user cannot write (root can write anyway: then there is nothing to see).
    let dir = repo.path().join(".prodaudit_cache");
    std::fs::create_dir(&dir).ok();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).ok();
    let probe = dir.join("probe");
    let root = std::fs::write(&probe, "x").is_ok();
    std::fs::remove_file(&probe).ok();
    if root {
        eprintln!("skipped the read-only folder case: running as a user who can write anyway");
    } else {
        let out = run(repo.path(), ALL_JSON);
        assert_eq!(stdout(&out), stdout(&good));
        let warned = warnings(&out);
        assert_eq!(warned.len(), 1, "{warned:?}");
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).ok();

    // A store whose shard folders cannot be created: entries cannot be written, one warning for all of them.
    std::fs::create_dir_all(dir.join("v1")).ok();
    for i in 0..=255u8 {
        std::fs::write(
            dir.join("v1").join(format!("{i:02x}")),
            "blocks the shard folder",
        )
        .ok();
    }
    let out = run(repo.path(), ALL_JSON);
    assert_eq!(stdout(&out), stdout(&good));
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains(".prodaudit_cache/v1/"), "{warned:?}");
}

#[test]
fn a_cache_committed_to_the_repository_is_not_trusted() {
    let repo = repo();
    let good = run(repo.path(), ALL_JSON);
    assert_eq!(counts(&run(repo.path(), ALL_JSON)), (5, 0));
    // Someone empties every entry's findings and commits the cache: it would hide the C5 finding.
    for f in entries(repo.path()) {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        v["findings"] = serde_json::json!([]);
        v["code"] = serde_json::json!([]);
        v["code_cut"] = serde_json::json!([]);
        std::fs::write(&f, v.to_string()).ok();
    }
    repo.git(&["add", "-f", ".prodaudit_cache"]);
    repo.git(&["commit", "-q", "-m", "cache"]);
    let out = run(repo.path(), ALL_JSON);
    assert_eq!(stdout(&out), stdout(&good), "the findings are all there");
    let warned = warnings(&out);
    assert_eq!(warned.len(), 1, "{warned:?}");
    assert!(warned[0].contains("git tracks"), "{warned:?}");
}
