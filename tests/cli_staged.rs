//! `prodaudit audit --staged`: the staged changes against `HEAD`, as a pre-commit hook sees them.

mod common;
use common::{TestRepo, run, run_json, triples};

const BASE: &str = "\
import time


async def old():
    time.sleep(1)
";

#[test]
fn staged_lines_are_reported_unstaged_and_committed_ones_are_not() {
    let repo = TestRepo::new();
    repo.write("app/jobs.py", BASE);
    repo.commit("base: one old blocking sleep on line 5");

    // Staged: a new blocking sleep on line 9.
    let staged = format!("{BASE}\n\nasync def staged():\n    time.sleep(2)\n");
    repo.write("app/jobs.py", &staged);
    repo.git(&["add", "app/jobs.py"]);
    // Not staged: another one on line 13, only in the working tree.
    repo.write(
        "app/jobs.py",
        &format!("{staged}\n\nasync def unstaged():\n    time.sleep(3)\n"),
    );
    // A new file, staged whole.
    repo.write(
        "app/new.py",
        "import time\n\n\nasync def fresh():\n    time.sleep(4)\n",
    );
    repo.git(&["add", "app/new.py"]);

    let (code, report) = run_json(repo.path(), &["audit", "--staged"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        triples(&report),
        vec![
            (
                "C5-blocking-sleep".to_string(),
                "app/jobs.py".to_string(),
                9
            ),
            ("C5-blocking-sleep".to_string(), "app/new.py".to_string(), 5),
        ]
    );

    // Nothing staged: nothing to report, whatever the working tree holds.
    repo.commit("commit what was staged");
    let (code, report) = run_json(repo.path(), &["audit", "--staged"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(triples(&report), vec![]);
}

#[test]
fn staged_works_before_the_first_commit() {
    let repo = TestRepo::new();
    repo.write("app/jobs.py", BASE);
    repo.git(&["add", "app/jobs.py"]);
    let (_, report) = run_json(repo.path(), &["audit", "--staged"]);
    assert_eq!(
        triples(&report),
        vec![(
            "C5-blocking-sleep".to_string(),
            "app/jobs.py".to_string(),
            5
        )]
    );
}

#[test]
fn staged_reads_the_configuration_from_head() {
    let repo = TestRepo::new();
    repo.write("app/jobs.py", BASE);
    repo.write(".github/prodaudit.yml", "rules:\n  disable: [C5]\n");
    repo.commit("base with C5 off");
    repo.write(
        "app/jobs.py",
        &format!("{BASE}\n\nasync def more():\n    time.sleep(2)\n"),
    );
    // The staged change also tries to switch C5 back on: HEAD's configuration still applies.
    repo.write(".github/prodaudit.yml", "rules:\n  disable: []\n");
    repo.git(&["add", "-A"]);
    let (_, report) = run_json(repo.path(), &["audit", "--staged"]);
    assert_eq!(triples(&report), vec![], "{report}");
}

#[test]
fn staged_conflicts_with_other_revisions_and_all_lines() {
    let repo = TestRepo::new();
    repo.write("app/jobs.py", BASE);
    repo.commit("base");
    for extra in [["--all-lines"], ["--base=HEAD"], ["--head=HEAD"]] {
        let mut args = vec!["audit", "--staged"];
        args.extend(extra);
        let out = run(repo.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot be used with"), "{err}");
    }
}
