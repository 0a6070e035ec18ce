//! Bad input ends with exit status 2 and one line saying what is wrong and how to fix it.

mod common;
use common::{TestRepo, run};

fn assert_error(out: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line of error, got: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "`{n}` missing from: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn repo_with_commit() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("app/a.py", "x = 1\n");
    repo.commit("base");
    repo
}

#[test]
fn not_a_git_repository() {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let out = run(dir.path(), &["audit"]);
    assert_error(&out, &["not a git repository", "--all-lines"]);
}

#[test]
fn unknown_revision() {
    let repo = repo_with_commit();
    let out = run(repo.path(), &["audit", "--base", "nope-branch"]);
    assert_error(&out, &["unknown revision `nope-branch`"]);
    let out = run(
        repo.path(),
        &["audit", "--base", "main", "--head", "deadbeef"],
    );
    assert_error(&out, &["unknown revision `deadbeef`"]);
}

#[test]
fn no_merge_base() {
    let repo = repo_with_commit();
    repo.git(&["checkout", "-q", "--orphan", "island"]);
    repo.write("app/b.py", "y = 2\n");
    repo.commit("unrelated history");
    let out = run(repo.path(), &["audit", "--base", "main"]);
    assert_error(&out, &["no common ancestor", "--base"]);
}

#[test]
fn no_default_branch() {
    let repo = TestRepo::new();
    repo.git(&["checkout", "-q", "-b", "trunk"]);
    repo.write("app/a.py", "x = 1\n");
    repo.commit("base");
    assert_eq!(
        repo.git(&["branch", "--list"]),
        "* trunk",
        "main was never born"
    );
    let out = run(repo.path(), &["audit"]);
    assert_error(&out, &["default branch", "--base"]);
}

#[test]
fn unknown_format_and_fail_on() {
    let repo = repo_with_commit();
    let out = run(repo.path(), &["audit", "--format", "xml"]);
    assert_error(&out, &["xml", "json"]);
    let out = run(repo.path(), &["audit", "--fail-on", "sometimes"]);
    assert_error(&out, &["sometimes", "never"]);
}

#[test]
fn unreadable_rules_folder() {
    let repo = repo_with_commit();
    let out = run(repo.path(), &["audit", "--rules", "no/such/folder"]);
    assert_error(&out, &["no/such/folder", "--rules"]);
}

#[test]
fn broken_rule_files_name_the_file_rule_and_problem() {
    let repo = repo_with_commit();
    let rules = repo.path().join("myrules");
    std::fs::create_dir_all(&rules).ok();
    let write = |text: &str| std::fs::write(rules.join("ACME1.yml"), text).ok();

    write("id: ACME1\ntitle: [unclosed\n");
    assert_error(
        &run(repo.path(), &["rules", "list", "--rules", "myrules"]),
        &["ACME1.yml", "invalid YAML"],
    );

    let head =
        "id: ACME1\ntitle: t\nseverity: low\nstandard: s\nwhy: w\nconforming: c\ndetectors:\n";
    write(&format!(
        "{head}  - id: ACME1-x\n    message: m\n    check: no-such-check\n    invalid: ['a']\n    valid: ['b']\n"
    ));
    assert_error(
        &run(repo.path(), &["rules", "list", "--rules", "myrules"]),
        &["ACME1.yml", "ACME1-x", "unknown check id `no-such-check`"],
    );

    write(&format!(
        "{head}  - id: ACME1-y\n    message: m\n    rule: {{ pattern: 'foo(', kind: nonsense_kind }}\n    invalid: ['a']\n    valid: ['b']\n"
    ));
    assert_error(
        &run(repo.path(), &["audit", "--rules", "myrules"]),
        &["ACME1.yml", "ACME1-y", "invalid ast-grep rule"],
    );

    write(&format!(
        "{head}  - id: ACME1-z\n    message: m\n    colour: blue\n    rule: {{ pattern: 'foo()' }}\n    invalid: ['a']\n    valid: ['b']\n"
    ));
    assert_error(
        &run(repo.path(), &["rules", "list", "--rules", "myrules"]),
        &["ACME1-z", "colour"],
    );

    write(
        "id: C5\ntitle: t\nseverity: low\nstandard: s\nwhy: w\nconforming: c\ndetectors:\n  - id: mine\n    message: m\n    rule: { pattern: 'foo()' }\n    invalid: ['foo()']\n    valid: ['bar()']\n",
    );
    assert_error(
        &run(repo.path(), &["rules", "list", "--rules", "myrules"]),
        &["C5", "already defined"],
    );
}

#[test]
fn invalid_repository_config() {
    let repo = repo_with_commit();
    std::fs::write(repo.path().join("cfg.yml"), "rules:\n  disable: [Z9]\n").ok();
    let out = run(repo.path(), &["audit", "--config", "cfg.yml"]);
    assert_error(&out, &["cfg.yml", "Z9"]);
    let out = run(repo.path(), &["audit", "--config", "missing.yml"]);
    assert_error(&out, &["missing.yml"]);
}
