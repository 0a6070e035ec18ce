//! The analysis child process (`prodaudit __analyze`) as `serve` runs it: the same findings as in-process
//! analysis, its memory limit, and its death when the job's deadline drops the audit.

use prodaudit::analysis::{Engine, Overrides, RepoContext, RuleSet};
use prodaudit::diff::LineSet;
use prodaudit::sandbox::{AnalysisRunner, ChildRunner, SandboxError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn rules() -> Arc<RuleSet> {
    Arc::new(RuleSet::builtin().unwrap_or_else(|e| panic!("{e}")))
}

fn child(memory_limit_mib: u64) -> AnalysisRunner {
    AnalysisRunner::Child(ChildRunner {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_prodaudit")),
        rule_dirs: Vec::new(),
        memory_limit_mib,
    })
}

/// About 1.9 MB of Python: slow to analyse in a debug build, and its syntax tree needs far more than 100 MiB.
fn heavy_python() -> Vec<u8> {
    let mut text = String::from("import time\nimport requests\n\n");
    let mut i = 0;
    while text.len() < 1_900_000 {
        text.push_str(&format!(
            "async def f{i}(u):\n    x = [requests.get(u) for _ in range(3)]\n    time.sleep(1)\n    return 1\n\n"
        ));
        i += 1;
    }
    text.into_bytes()
}

/// Analysis children of this test process still alive.
fn live_children() -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // pid (comm) state ppid …
        let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
        let mut fields = after.split(' ');
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if ppid == me && state != "Z" && String::from_utf8_lossy(&cmdline).contains("__analyze") {
            out.push(pid);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_finds_what_in_process_analysis_finds() {
    let py = b"import time\nimport requests\n\n\nasync def a(u):\n    time.sleep(1)\n    return requests.get(u)\n".to_vec();
    let mut changed = LineSet::new();
    changed.insert_range(6, 7);
    let files = vec![
        ("app/svc.py".to_string(), py.clone(), Some(changed)),
        ("app/all.py".to_string(), py, None),
        ("README.md".to_string(), b"# hi\n".to_vec(), None),
    ];
    let repo = || RepoContext {
        changed: ["app/svc.py".to_string(), "app/all.py".to_string()]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let mut overrides = Overrides::default();
    overrides
        .severity
        .insert("C5".into(), prodaudit::report::Severity::Low);
    let engine = || Engine::new(rules(), overrides.clone());
    let inside = AnalysisRunner::InProcess
        .analyze(engine(), files.clone(), repo(), Some(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let outside = child(512)
        .analyze(engine(), files, repo(), Some(1))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inside.len(), 3);
    assert_eq!(outside.len(), 3);
    let findings =
        |o: &[prodaudit::analysis::FileOutcome]| -> Vec<Vec<prodaudit::report::Finding>> {
            o.iter().map(|f| f.findings.clone()).collect()
        };
    assert_eq!(findings(&inside), findings(&outside));
    assert!(!inside[0].findings.is_empty(), "the test file has findings");
    assert!(
        outside[0]
            .findings
            .iter()
            .filter(|f| f.rule == "C5")
            .all(|f| f.severity == prodaudit::report::Severity::Low)
            && outside[0].findings.iter().any(|f| f.rule == "C5"),
        "overrides reach the child"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_over_its_memory_limit_fails_with_the_reason() {
    let files = vec![("app/heavy.py".to_string(), heavy_python(), None)];
    let result = child(100)
        .analyze(
            Engine::new(rules(), Overrides::default()),
            files,
            RepoContext::default(),
            Some(7),
        )
        .await;
    match result {
        Err(e @ SandboxError::MemoryLimit { mib: 100 }) => {
            assert_eq!(
                e.to_string(),
                "the analysis exceeded the memory limit of 100 MiB"
            )
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

/// The job's time limit drops the audit's future: the child is killed then, not left running (a timed-out
/// `spawn_blocking` kept analysing and holding its memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_past_the_deadline_is_killed() {
    assert!(live_children().is_empty(), "no child before the test");
    let files = vec![("app/heavy.py".to_string(), heavy_python(), None)];
    let runner = child(4096);
    let analysis = runner.analyze(
        Engine::new(rules(), Overrides::default()),
        files,
        RepoContext::default(),
        Some(7),
    );
    let started = tokio::time::timeout(Duration::from_millis(1500), analysis).await;
    assert!(
        started.is_err(),
        "the analysis of 1.9 MB finished within 1.5 s; the test proves nothing"
    );
    // SIGKILL is immediate, the reaping is not: wait (bounded) for the child to be gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !live_children().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the analysis child outlived the deadline: {:?}",
            live_children()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The repository configuration's opt-in detectors, path classes and tenant columns reach the child as they
/// reach in-process analysis (they are carried field by field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_honours_the_repository_configuration() {
    let config = prodaudit::repo_config::RepoConfig::parse(
        ".github/prodaudit.yml",
        "rules:\n  enable: [O1-fstring-log]\npaths:\n  not_service: [\"tools/**\"]\ntenancy:\n  columns: [space_id]\n",
        &rules()
            .detectors
            .iter()
            .map(|d| d.id.clone())
            .chain(rules().rules.iter().map(|r| r.id.clone()))
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let log = b"import logging\nlog = logging.getLogger(__name__)\n\n\ndef f(n):\n    log.info(f\"n={n}\")\n".to_vec();
    let blocking = b"import time\n\n\nasync def a():\n    time.sleep(1)\n".to_vec();
    let models = "class Note(Base):\n    __tablename__ = \"notes\"\n    id = Column(Integer, primary_key=True)\n    space_id = Column(Integer)\n";
    let route = b"@router.get(\"/notes/{note_id}\")\nasync def read(note_id: int, db: Session = Depends(get_db), user: User = Depends(get_current_user)):\n    return db.get(Note, note_id)\n".to_vec();
    let files = vec![
        ("app/log.py".to_string(), log, None),
        ("tools/sync.py".to_string(), blocking, None),
        ("app/routes.py".to_string(), route, None),
    ];
    let repo = || RepoContext {
        files: [("app/models.py".to_string(), models.to_string())]
            .into_iter()
            .collect(),
        tenant_columns: config.tenant_columns.clone(),
        ..Default::default()
    };
    let engine = || Engine::new(rules(), config.overrides.clone());
    for runner in [AnalysisRunner::InProcess, child(512)] {
        let out = runner
            .analyze(engine(), files.clone(), repo(), Some(3))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let checks: Vec<Vec<String>> = out
            .iter()
            .map(|o| o.findings.iter().map(|f| f.check.clone()).collect())
            .collect();
        assert_eq!(checks[0], vec!["O1-fstring-log"], "opt-in enabled");
        assert!(checks[1].is_empty(), "{checks:?}");
        assert_eq!(out[1].not_service, 1, "held back as not the service");
        assert!(
            checks[2]
                .iter()
                .any(|c| c == "I1-object-by-id-without-owner-check"),
            "tenant column from the configuration: {checks:?}"
        );
    }
}

/// The repository model reaches the child as it reaches in-process analysis: a module no entry point imports
/// and a function nothing calls have their critical/high findings held back; without the model, both report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_holds_back_what_the_repository_model_says() {
    use prodaudit::analysis::repo_model::{self, NameBudget};
    use prodaudit::analysis::semantic::reach::Standing;
    let main = "from fastapi import FastAPI\nfrom app import api\n\napp = FastAPI()\n";
    let api = "import requests\n\n\n@router.get('/x')\ndef proxy(u):\n    return requests.get(u)\n\n\ndef old(u):\n    return requests.get(u)\n";
    let bench = "import requests\n\n\ndef run(u):\n    return requests.get(u)\n\n\nrun('x')\n";
    let tree = [
        ("app/__init__.py", ""),
        ("app/main.py", main),
        ("app/api.py", api),
        ("tools/bench.py", bench),
    ];
    let budget = NameBudget::new();
    let facts: std::collections::BTreeMap<String, _> = tree
        .iter()
        .map(|(p, t)| {
            (
                p.to_string(),
                repo_model::python_facts(p, Some(t.as_bytes()), &budget),
            )
        })
        .collect();
    let reach = Arc::new(repo_model::build(&facts, &[], budget.counted()));
    assert_eq!(reach.standing("tools/bench.py"), Standing::Unreached);
    let files = vec![
        ("app/api.py".to_string(), api.as_bytes().to_vec(), None),
        (
            "tools/bench.py".to_string(),
            bench.as_bytes().to_vec(),
            None,
        ),
    ];
    let lines = |out: &[prodaudit::analysis::FileOutcome]| -> Vec<Vec<usize>> {
        out.iter()
            .map(|o| o.findings.iter().map(|f| f.line).collect())
            .collect()
    };
    for runner in [AnalysisRunner::InProcess, child(512)] {
        let with = RepoContext {
            reach: Some(reach.clone()),
            ..Default::default()
        };
        let out = runner
            .analyze(
                Engine::new(rules(), Overrides::default()),
                files.clone(),
                with,
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(lines(&out), vec![vec![6], vec![]], "{runner:?}");
        assert_eq!(
            (out[0].not_service, out[1].not_service),
            (1, 1),
            "{runner:?}: the unused function and the unreached module"
        );
        let out = runner
            .analyze(
                Engine::new(rules(), Overrides::default()),
                files.clone(),
                RepoContext::default(),
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            lines(&out),
            vec![vec![6, 10], vec![5]],
            "{runner:?}: no model"
        );
    }
}
