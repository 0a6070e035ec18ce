//! `prodaudit audit` on real git repositories: only the lines a change adds are reported.

mod common;
use common::{TestRepo, run, run_json, triples};

const BASE: &str = "\
import asyncio
import time


async def old_handler():
    time.sleep(1)
    return 1


async def other():
    return 2
";

/// The head adds one blocking call (line 11) and edits nothing around the old one.
const HEAD: &str = "\
import asyncio
import time


async def old_handler():
    time.sleep(1)
    return 1


async def other():
    time.sleep(2)
    return 2
";

fn two_commit_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("app/handlers.py", BASE);
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("app/handlers.py", HEAD);
    repo.commit("add a blocking sleep");
    repo
}

#[test]
fn reports_only_the_added_line() {
    let repo = two_commit_repo();
    let (code, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(
        triples(&report),
        vec![(
            "C5-blocking-sleep".to_string(),
            "app/handlers.py".to_string(),
            11
        )]
    );
    assert_eq!(code, 1, "a high finding fails at the default fail-on level");
    let f = &report["findings"][0];
    assert_eq!(report["version"], 1);
    assert_eq!(f["rule"], "C5");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["column"], 5);
    assert_eq!(f["end_line"], 11);
    assert_eq!(f["standard"], "Never block the event loop");
    assert!(
        f["conforming"]
            .as_str()
            .is_some_and(|c| c.contains("asyncio.sleep"))
    );
    assert_eq!(f["fix"]["replacement"], "await asyncio.sleep(2)");
    assert_eq!(f["fingerprint"].as_str().map(str::len), Some(16));
}

#[test]
fn default_base_is_the_default_branch_and_head_is_head() {
    let repo = two_commit_repo();
    let (_, report) = run_json(repo.path(), &["audit"]);
    assert_eq!(triples(&report).len(), 1);
    assert_eq!(triples(&report)[0].2, 11);
}

#[test]
fn all_lines_reports_both() {
    let repo = two_commit_repo();
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    let lines: Vec<u64> = triples(&report).into_iter().map(|t| t.2).collect();
    assert_eq!(lines, vec![6, 11]);
    // --all-lines at a revision reads that revision's tree, not the working tree.
    let (_, at_main) = run_json(repo.path(), &["audit", "--all-lines", "--head", "main"]);
    let lines: Vec<u64> = triples(&at_main).into_iter().map(|t| t.2).collect();
    assert_eq!(lines, vec![6]);
}

#[test]
fn merge_base_view_ignores_what_main_did_since() {
    let repo = two_commit_repo();
    repo.git(&["checkout", "-q", "main"]);
    repo.write(
        "app/later.py",
        "import time\n\nasync def f():\n    time.sleep(3)\n",
    );
    repo.commit("main moves on");
    let (_, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(
        triples(&report).len(),
        1,
        "main's own later change is not the PR's"
    );
    assert_eq!(triples(&report)[0].1, "app/handlers.py");
}

#[test]
fn exit_status_follows_fail_on() {
    let repo = two_commit_repo();
    let code = |args: &[&str]| run(repo.path(), args).status.code();
    assert_eq!(code(&["audit", "--fail-on", "never"]), Some(0));
    assert_eq!(code(&["audit", "--fail-on", "critical"]), Some(0));
    assert_eq!(code(&["audit", "--fail-on", "high"]), Some(1));
    assert_eq!(code(&["audit", "--fail-on", "low"]), Some(1));
    assert_eq!(code(&["audit"]), Some(1));
}

#[test]
fn fingerprint_survives_unrelated_lines_moving() {
    let repo = two_commit_repo();
    let (_, before) = run_json(repo.path(), &["audit"]);
    let shifted = format!("\"\"\"Handlers.\"\"\"\n\n\n{HEAD}");
    repo.write("app/handlers.py", &shifted);
    repo.commit("docstring on top");
    let (_, after) = run_json(repo.path(), &["audit"]);
    assert_eq!(triples(&after)[0].2, 14, "the line moved by three");
    assert_eq!(
        before["findings"][0]["fingerprint"],
        after["findings"][0]["fingerprint"]
    );
}

#[test]
fn inline_suppression_silences_the_named_rule() {
    let repo = TestRepo::new();
    repo.write("app/a.py", "x = 1\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "f"]);
    repo.write(
        "app/a.py",
        "import time\n\nasync def f():\n    # prodaudit: ignore[C5] startup only, before serving\n    time.sleep(1)\n    time.sleep(2)  # prodaudit: ignore[F1]\n",
    );
    repo.commit("sleep");
    let (_, report) = run_json(repo.path(), &["audit"]);
    assert_eq!(
        triples(&report),
        vec![("C5-blocking-sleep".to_string(), "app/a.py".to_string(), 6)],
        "the other rule's suppression does not cover C5"
    );
    assert_eq!(report["summary"]["suppressed"], 1);
}

#[test]
fn renames_use_the_new_path_and_only_new_lines() {
    let repo = TestRepo::new();
    repo.write("app/old_name.py", BASE);
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "f"]);
    repo.git(&["mv", "app/old_name.py", "app/new name é.py"]);
    repo.write("app/new name é.py", HEAD);
    repo.commit("rename and add");
    let (_, report) = run_json(repo.path(), &["audit"]);
    assert_eq!(
        triples(&report),
        vec![(
            "C5-blocking-sleep".to_string(),
            "app/new name é.py".to_string(),
            11
        )]
    );
}

#[test]
fn odd_files_in_a_change_are_handled_without_error() {
    let repo = TestRepo::new();
    repo.write(
        "app/gone.py",
        // Not the code crlf.py adds (that would be a move, held back).
        "import time\nasync def f():\n    time.sleep(3)\n",
    );
    repo.write("app/mode.py", "x = 1\n");
    repo.write("app/crlf.py", "x = 1\r\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "f"]);
    repo.git(&["rm", "-q", "app/gone.py"]);
    repo.git(&["update-index", "--chmod=+x", "app/mode.py"]);
    repo.write(
        "app/crlf.py",
        "import time\r\n\r\nasync def f():\r\n    time.sleep(1)\r\n",
    );
    repo.write_bytes(
        "app/latin1.py",
        b"# caf\xe9\nimport time\nasync def g():\n    time.sleep(5)\n",
    );
    repo.write_bytes("app/blob.py", b"\x00\x01\x02binary\x00");
    repo.write_bytes("assets/logo.png", b"\x89PNG\r\n\x1a\n\x00\x00");
    repo.commit("odd files");
    let (code, report) = run_json(repo.path(), &["audit"]);
    assert_eq!(code, 1);
    assert_eq!(
        triples(&report),
        vec![
            (
                "C5-blocking-sleep".to_string(),
                "app/crlf.py".to_string(),
                4
            ),
            (
                "C5-blocking-sleep".to_string(),
                "app/latin1.py".to_string(),
                4
            ),
        ]
    );
    let skipped = report["summary"]["skipped"].to_string();
    assert!(
        skipped.contains("app/blob.py"),
        "binary python file listed as skipped: {skipped}"
    );
}

#[test]
fn submodules_are_skipped() {
    let sub = TestRepo::new();
    sub.write("lib.py", "x = 1\n");
    sub.commit("sub");
    let repo = TestRepo::new();
    repo.write("app/a.py", "x = 1\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "f"]);
    let sub_path = sub.path().to_string_lossy().to_string();
    repo.git(&[
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        &sub_path,
        "vendor/lib",
    ]);
    repo.write(
        "app/a.py",
        "import time\nasync def f():\n    time.sleep(1)\n",
    );
    repo.commit("submodule");
    let (code, report) = run_json(repo.path(), &["audit"]);
    assert_eq!(code, 1);
    assert_eq!(triples(&report).len(), 1);
}

#[test]
fn syntax_errors_keep_the_findings_that_parse() {
    let repo = TestRepo::new();
    repo.write("app/a.py", "x = 1\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "f"]);
    repo.write(
        "app/a.py",
        "import time\n\nasync def ok():\n    time.sleep(1)\n\ndef broken(:\n    time.sleep(2\n",
    );
    repo.commit("half broken");
    let (_, report) = run_json(repo.path(), &["audit"]);
    let lines: Vec<u64> = triples(&report).into_iter().map(|t| t.2).collect();
    assert_eq!(lines, vec![4]);
}

#[test]
fn paths_limit_the_audit() {
    let repo = TestRepo::new();
    repo.write("app/a.py", "x = 1\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "f"]);
    let bad = "import time\nasync def f():\n    time.sleep(1)\n";
    repo.write("app/a.py", bad);
    repo.write("svc/b.py", bad);
    repo.commit("two");
    let (_, report) = run_json(repo.path(), &["audit", "svc"]);
    assert_eq!(triples(&report).len(), 1);
    assert_eq!(triples(&report)[0].1, "svc/b.py");
    let (_, all) = run_json(repo.path(), &["audit", "--all-lines", "app/a.py"]);
    assert_eq!(triples(&all).len(), 1);
    assert_eq!(triples(&all)[0].1, "app/a.py");
}

#[test]
fn all_lines_honours_gitignore_and_works_outside_git() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let bad = "import time\nasync def f():\n    time.sleep(1)\n";
    std::fs::create_dir_all(dir.path().join("app")).ok();
    std::fs::create_dir_all(dir.path().join("build")).ok();
    std::fs::write(dir.path().join("app/a.py"), bad).ok();
    std::fs::write(dir.path().join("build/gen.py"), bad).ok();
    std::fs::write(dir.path().join(".gitignore"), "build/\n").ok();
    let (_, report) = run_json(dir.path(), &["audit", "--all-lines"]);
    assert_eq!(
        triples(&report),
        vec![("C5-blocking-sleep".to_string(), "app/a.py".to_string(), 3)]
    );
    assert_eq!(report["summary"]["files_analyzed"], 1);
}

#[test]
fn repository_config_from_the_base_branch() {
    let repo = TestRepo::new();
    repo.write(
        ".github/prodaudit.yml",
        "rules:\n  severity:\n    C5-blocking-sleep: low\n",
    );
    repo.write("app/a.py", "x = 1\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "f"]);
    // The pull request tries to switch the rule off: the base branch's config applies.
    repo.write(".github/prodaudit.yml", "rules:\n  disable: [C5]\n");
    repo.write(
        "app/a.py",
        "import time\nasync def f():\n    time.sleep(1)\n",
    );
    repo.commit("try to disable");
    let (code, report) = run_json(repo.path(), &["audit"]);
    assert_eq!(triples(&report).len(), 1);
    assert_eq!(report["findings"][0]["severity"], "low");
    assert_eq!(code, 0, "low is below the default fail-on level");
    // An explicit --config wins.
    let cfg = repo.path().join("cfg.yml");
    std::fs::write(&cfg, "fail_on: low\n").ok();
    let (code, _) = run_json(repo.path(), &["audit", "--config", "cfg.yml"]);
    assert_eq!(code, 1);
}

#[test]
fn sarif_and_github_formats() {
    let repo = two_commit_repo();
    let out = run(repo.path(), &["audit", "--format", "sarif"]);
    let sarif: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("SARIF is not JSON: {e}"),
    };
    assert_eq!(sarif["version"], "2.1.0");
    let result = &sarif["runs"][0]["results"][0];
    assert_eq!(result["ruleId"], "C5-blocking-sleep");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        11
    );
    let out = run(repo.path(), &["audit", "--format", "github"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("::error file=app/handlers.py,line=11,")),
        "{text}"
    );
}

#[test]
fn text_format_has_a_code_frame_and_summary() {
    let repo = two_commit_repo();
    let out = run(repo.path(), &["audit"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("app/handlers.py"), "{text}");
    assert!(text.contains("time.sleep(2)"), "code frame: {text}");
    assert!(!text.contains('\u{1b}'), "no colour when not a terminal");
    assert!(text.contains("1 finding"), "{text}");
}

#[test]
fn timings_go_to_stderr_and_leave_the_report_alone() {
    let repo = two_commit_repo();
    let out = run(
        repo.path(),
        &["audit", "--all-lines", "--format", "json", "--timings"],
    );
    let report: serde_json::Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("stdout is not the JSON report: {e}"),
    };
    let lines: Vec<u64> = triples(&report).into_iter().map(|t| t.2).collect();
    assert_eq!(lines, vec![6, 11]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("timings (CPU seconds"), "{err}");
    // One Python file was parsed; the detector that found the sleep ran and is listed.
    let parse = err
        .lines()
        .find(|l| l.starts_with("parse "))
        .unwrap_or_else(|| panic!("no parse line: {err}"));
    assert!(parse.trim_end().ends_with(" 1"), "{parse}");
    assert!(err.contains("C5-blocking-sleep"), "{err}");
}
