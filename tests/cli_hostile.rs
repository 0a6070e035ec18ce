//! `prodaudit audit` on hostile files (issue 15): nesting deep enough to overflow a parser or a walk, a 2 MB
//! line full of findings, NUL bytes past the first 8 KiB, vendored files. Every input is built here. Each audit
//! must end normally (exit 0 or 1), list the file as skipped with the reason or cap its findings with a note,
//! and still analyse the ordinary file beside it.

mod common;
use common::{TestRepo, run, run_json};
use serde_json::Value;

const N: usize = 10_000;

/// An ordinary file with one finding, so every audit shows that analysis went on around the hostile file.
const ORDINARY: &str = "import time\n\n\nasync def handler():\n    time.sleep(1)\n";

fn repo_with(files: &[(&str, String)]) -> TestRepo {
    let repo = TestRepo::new();
    repo.write("app/ordinary.py", ORDINARY);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo
}

/// Audit every line; the exit status must be a verdict (0 or 1), not a crash or an error.
fn audit(repo: &TestRepo, env: &[(&str, &str)]) -> Value {
    let mut cmd = std::process::Command::new(common::bin());
    cmd.current_dir(repo.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("LOG_LEVEL")
        .env_remove("PRODAUDIT_FILE_TIME_LIMIT_SECS")
        .args(["audit", "--all-lines", "--no-progress", "--format", "json"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run prodaudit: {e}"),
    };
    let code = out.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "exit {code:?} (a signal or an error); stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e})"),
    }
}

fn skip_reason(report: &Value, path: &str) -> Option<String> {
    report["summary"]["skipped"]
        .as_array()?
        .iter()
        .find(|s| s["path"] == path)
        .and_then(|s| s["reason"].as_str())
        .map(str::to_string)
}

/// The ordinary file was analysed and its finding reported.
fn ordinary_analysed(report: &Value) {
    let found = report["findings"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["path"] == "app/ordinary.py"));
    assert!(found, "the ordinary file's finding is missing: {report}");
}

#[test]
fn compose_nested_ten_thousand_deep_is_skipped_not_a_crash() {
    let flow = format!(
        "services:\n  web:\n    image: app:1\n    environment: {}a{}\n",
        "[".repeat(N),
        "]".repeat(N)
    );
    // Flow mappings over many lines (no line is long), and compact block sequences on one line.
    let maps = format!(
        "services:\n  web:\n    image: app:1\n    labels:\n{}      x{}\n",
        "      {a:\n".repeat(N),
        "}".repeat(N)
    );
    let block = format!(
        "services:\n  web:\n    image: app:1\n    command:\n      {}a\n",
        "- ".repeat(N)
    );
    let repo = repo_with(&[
        ("flow/docker-compose.yml", flow),
        ("maps/docker-compose.yml", maps),
        ("block/docker-compose.yml", block),
    ]);
    let report = audit(&repo, &[]);
    for path in [
        "flow/docker-compose.yml",
        "maps/docker-compose.yml",
        "block/docker-compose.yml",
    ] {
        let reason = skip_reason(&report, path);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("nested deeper than 100 levels")),
            "{path}: {reason:?}"
        );
    }
    ordinary_analysed(&report);
}

#[test]
fn kubernetes_manifest_nested_ten_thousand_deep_is_skipped_not_a_crash() {
    let head = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n";
    let flow = format!(
        "{head}  template:\n{}    x{}\n",
        "    {a:\n".repeat(N),
        "}".repeat(N)
    );
    let block = format!(
        "{head}  template:\n    spec:\n      containers:\n        - name: web\n          args:\n            {}a\n",
        "- ".repeat(N)
    );
    // Indented block mappings: the YAML parser itself aborts past ~250 of these, so they must be turned away
    // before it sees them (10,000 would need 50 MB of indentation; 300 show the same).
    let indented: String = (0..300)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i + 2)))
        .collect();
    let indented = format!("{head}{indented}");
    let repo = repo_with(&[
        ("k8s/flow.yaml", flow),
        ("k8s/block.yaml", block),
        ("k8s/indented.yaml", indented),
    ]);
    let report = audit(&repo, &[]);
    for path in ["k8s/flow.yaml", "k8s/block.yaml", "k8s/indented.yaml"] {
        let reason = skip_reason(&report, path);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("nested deeper")),
            "{path}: {reason:?}"
        );
    }
    ordinary_analysed(&report);

    // The text summary names the reason too.
    let out = run(repo.path(), &["audit", "--all-lines", "--no-progress"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("nested deeper than 100 levels"), "{text}");
}

#[test]
fn deeply_nested_python_does_not_crash() {
    let parens = format!("x = {}1{}\n", "(".repeat(5_000), ")".repeat(5_000));
    let lists = format!("y = {}1{}\n", "[".repeat(5_000), "]".repeat(5_000));
    let deep_ifs: String = (0..1_000)
        .map(|i| format!("{}if x:\n", " ".repeat(i)))
        .chain(std::iter::once(format!("{}pass\n", " ".repeat(1_000))))
        .collect();
    // Chains whose depth no bracket limit bounds: attribute, call and operator chains make syntax trees as
    // deep as they are long (turned away past 2,000 levels); shorter ones are analysed.
    let chain = |links: usize| {
        format!(
            "import requests\n\n\nasync def f(a):\n    a{}\n    a{}\n    return 1{}\n",
            ".b".repeat(links),
            ".c()".repeat(links),
            " + 1".repeat(links)
        )
    };
    let repo = repo_with(&[
        ("deep/parens.py", parens),
        ("deep/lists.py", lists),
        ("deep/deep_ifs.py", deep_ifs),
        ("deep/chains.py", chain(50_000)),
        ("deep/short_chains.py", chain(500)),
    ]);
    // Enough time for an unoptimised build on a busy machine: this test is about the stack, not speed.
    let report = audit(&repo, &[("PRODAUDIT_FILE_TIME_LIMIT_SECS", "600")]);
    for path in ["deep/parens.py", "deep/lists.py"] {
        let reason = skip_reason(&report, path);
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.contains("more than 200 open brackets")),
            "{path}: {reason:?}"
        );
    }
    let reason = skip_reason(&report, "deep/deep_ifs.py");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("more than 100 indentation levels")),
        "{reason:?}"
    );
    let reason = skip_reason(&report, "deep/chains.py");
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("syntax tree is nested deeper than 2000 levels")),
        "{reason:?}"
    );
    // Not over a limit: analysed like any file.
    assert_eq!(skip_reason(&report, "deep/short_chains.py"), None);
    ordinary_analysed(&report);
}

#[test]
fn two_megabyte_line_of_findings_is_capped_with_a_note() {
    let call = "requests.get(u), ";
    let n = (2_000_000 - 6) / call.len();
    let line = format!("x = [{}]\n", call.repeat(n));
    let repo = repo_with(&[("app/huge.py", line)]);
    // An unoptimised test build needs more than the default 10 s for this file on a busy machine.
    let report = audit(&repo, &[("PRODAUDIT_FILE_TIME_LIMIT_SECS", "600")]);
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    let huge: Vec<&Value> = findings
        .iter()
        .filter(|f| f["path"] == "app/huge.py")
        .collect();
    assert_eq!(huge.len(), 1_000, "findings per file are capped at 1,000");
    for f in &huge {
        let message = f["message"].as_str().unwrap_or_default();
        assert!(message.chars().count() <= 1_001, "{message}");
        assert!(f["fingerprint"].as_str().is_some_and(|p| p.len() == 16));
    }
    let capped = &report["summary"]["capped"];
    assert_eq!(capped[0]["path"], "app/huge.py", "{capped}");
    assert_eq!(capped[0]["reported"], 1_000);
    // One finding per call and detector: all the rest are counted as left out, none silently dropped.
    let left_out = capped[0]["left_out"].as_u64().unwrap_or(0);
    assert!(left_out >= (n as u64) - 1_000, "{left_out} of {n}");
    assert_eq!(skip_reason(&report, "app/huge.py"), None);
    ordinary_analysed(&report);
}

#[test]
fn code_frames_of_a_long_line_are_a_window() {
    let call = "requests.get(u), ";
    let line = format!("x = [{}]\n", call.repeat(12_000));
    let repo = repo_with(&[("app/long.py", line)]);
    let out = run(
        repo.path(),
        &["audit", "--all-lines", "--no-progress", "app/long.py"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("findings capped in app/long.py: 1000 reported"),
        "{}",
        &text[text.len().saturating_sub(500)..]
    );
    let longest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    assert!(longest < 400, "an output line of {longest} characters");
    // Each frame is a code line and a caret line; the carets sit under the match inside the window, also far
    // along the line where the window starts with `…`.
    let frame: Vec<&str> = text.lines().filter(|l| l.contains(" |")).collect();
    assert_eq!(frame.len(), 2_000);
    let mut windowed = 0;
    for pair in frame.chunks(2) {
        let (code, carets) = (pair[0], pair[1]);
        let at = carets.chars().position(|c| c == '^').unwrap_or(0);
        let under: String = code.chars().skip(at).take(12).collect();
        assert_eq!(under, "requests.get", "{code}\n{carets}");
        windowed += usize::from(code.contains("| …"));
    }
    assert!(windowed > 900, "{windowed}");
}

#[test]
fn nul_byte_after_eight_kib_skips_the_file() {
    let repo = TestRepo::new();
    repo.write("app/ordinary.py", ORDINARY);
    let mut bytes = b"import time\n".to_vec();
    bytes.extend(std::iter::repeat_n(b'#', 10_000));
    bytes.extend(b"\n\0\ntime.sleep(1)\n");
    repo.write_bytes("app/late_nul.py", &bytes);
    let report = audit(&repo, &[]);
    assert_eq!(
        skip_reason(&report, "app/late_nul.py").as_deref(),
        Some("binary")
    );
    ordinary_analysed(&report);
}

#[test]
fn time_limit_skips_every_file_when_zero() {
    let repo = repo_with(&[]);
    let report = audit(&repo, &[("PRODAUDIT_FILE_TIME_LIMIT_SECS", "0")]);
    assert_eq!(
        skip_reason(&report, "app/ordinary.py").as_deref(),
        Some("analysis took longer than the 0 s limit")
    );
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(0));
}

#[test]
fn vendored_files_are_skipped_by_the_cli_as_by_the_app() {
    let repo = repo_with(&[
        ("vendor/lib/client.py", ORDINARY.to_string()),
        ("app/api_pb2.py", ORDINARY.to_string()),
    ]);
    let report = audit(&repo, &[]);
    for path in ["vendor/lib/client.py", "app/api_pb2.py"] {
        assert_eq!(
            skip_reason(&report, path).as_deref(),
            Some("vendored or generated"),
            "{path}"
        );
    }
    ordinary_analysed(&report);

    // A pull request's view too.
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("vendor/lib/more.py", ORDINARY);
    repo.commit("vendored change");
    let (code, report) = run_json(repo.path(), &["audit", "--base", "main"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        skip_reason(&report, "vendor/lib/more.py").as_deref(),
        Some("vendored or generated")
    );
}
