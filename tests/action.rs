//! `prodaudit action` end to end: the real binary, run as a GitHub Actions step would run it, on a real git
//! checkout (shallow, without the pull request's head, as actions/checkout leaves it) against the fake GitHub.

mod common;
mod fake_github;

use common::{TestRepo, git_cmd};
use fake_github::{Fault, Shared, World, assert_no_violations, lock_pub};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = "acme/api";
const PR: i64 = 7;
const TOKEN: &str = "ghs_actionsworkflowtoken";

const BASE_PY: &str = "import asyncio\nimport time\n\n\nasync def a():\n    return 1\n\n\nasync def b():\n    return 2\n";
const HEAD_PY: &str = "import asyncio\nimport time\n\n\nasync def a():\n    time.sleep(1)\n    return 1\n\n\nasync def b():\n    return 2\n";

/// An origin with `main` (moved on by one commit after the branch point) and the pull request's branch, a
/// workspace cloned from it with depth 1 (only main's tip: the head and the branch point are missing), and
/// a fake GitHub that knows the same commits.
struct Setup {
    _tmp: tempfile::TempDir,
    workspace: PathBuf,
    base: String,
    head: String,
    trees: HashMap<String, BTreeMap<String, String>>,
}

impl Setup {
    /// A fake GitHub's world with this repository's commits and two commenters.
    fn world(&self) -> World {
        World {
            repo: REPO.into(),
            base_sha: self.base.clone(),
            head_sha: self.head.clone(),
            pr_number: PR,
            trees: self.trees.clone(),
            permissions: [
                ("writer".to_string(), "write".to_string()),
                ("reader".to_string(), "read".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        }
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = match git_cmd(dir).args(args).output() {
        Ok(o) => o,
        Err(e) => panic!("cannot run git: {e}"),
    };
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn setup() -> Setup {
    let src = TestRepo::new();
    src.write("app/svc.py", BASE_PY);
    src.write("README.md", "service\n");
    let fork_point = src.commit("base");
    src.git(&["checkout", "-q", "-b", "feature"]);
    src.write("app/svc.py", HEAD_PY);
    let head = src.commit("sleep in a coroutine");
    src.git(&["checkout", "-q", "main"]);
    src.write("README.md", "service\n\nmore words\n");
    let base = src.commit("docs");
    assert_ne!(base, fork_point);

    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let origin = tmp.path().join("origin.git");
    let origin_s = origin.display().to_string();
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            &src.path().display().to_string(),
            &origin_s,
        ],
    );
    // GitHub serves any reachable commit by SHA, and every pull request's head as refs/pull/N/head.
    git(
        &origin,
        &["config", "uploadpack.allowReachableSHA1InWant", "true"],
    );
    git(
        &origin,
        &["update-ref", &format!("refs/pull/{PR}/head"), &head],
    );
    let workspace = tmp.path().join("workspace");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--depth",
            "1",
            "--branch",
            "main",
            &format!("file://{origin_s}"),
            &workspace.display().to_string(),
        ],
    );
    assert!(
        !git_cmd(&workspace)
            .args(["cat-file", "-e", &format!("{head}^{{commit}}")])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "the checkout must lack the head for this test"
    );

    let mut trees = HashMap::new();
    trees.insert(
        base.clone(),
        BTreeMap::from([
            ("app/svc.py".to_string(), BASE_PY.to_string()),
            (
                "README.md".to_string(),
                "service\n\nmore words\n".to_string(),
            ),
        ]),
    );
    trees.insert(
        head.clone(),
        BTreeMap::from([
            ("app/svc.py".to_string(), HEAD_PY.to_string()),
            ("README.md".to_string(), "service\n".to_string()),
        ]),
    );
    Setup {
        _tmp: tmp,
        workspace,
        base,
        head,
        trees,
    }
}

/// A `pull_request` event as Actions writes it: GitHub's example payload (from ../shared when present) with
/// this test's pull request, and no `installation` (workflow events have none).
fn pull_request_event(s: &Setup) -> Value {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/github/webhooks/pull_request/opened.payload.json");
    let mut event = match std::fs::read(&shared)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    {
        Some(v) => v,
        None => {
            eprintln!(
                "{} is absent: using a minimal pull_request event built here",
                shared.display()
            );
            json!({"action": "opened", "pull_request": {"state": "open", "draft": false, "head": {}, "base": {}}, "repository": {}})
        }
    };
    if let Some(o) = event.as_object_mut() {
        o.remove("installation");
    }
    event["number"] = PR.into();
    event["pull_request"]["number"] = PR.into();
    event["pull_request"]["head"]["sha"] = s.head.clone().into();
    event["pull_request"]["base"]["sha"] = s.base.clone().into();
    event["pull_request"]["base"]["ref"] = "main".into();
    event["pull_request"]["draft"] = false.into();
    event["repository"]["full_name"] = REPO.into();
    event
}

fn comment_event(user: &str, id: i64, body: &str) -> Value {
    json!({
        "action": "created",
        "repository": {"full_name": REPO},
        "issue": {"number": PR, "pull_request": {"url": "x"}},
        "comment": {"id": id, "body": body, "user": {"login": user, "type": "User"}},
    })
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    summary: String,
}

/// Run `prodaudit action ARGS` as the runner would: the event in a file, the GITHUB_* environment.
fn run_action(s: &Setup, api: &str, event_name: &str, event: &Value, args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let event_path = dir.path().join("event.json");
    let summary_path = dir.path().join("summary.md");
    std::fs::write(&event_path, event.to_string()).unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(env!("CARGO_BIN_EXE_prodaudit"))
        .arg("action")
        .args(args)
        .current_dir(&s.workspace)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_EVENT_NAME", event_name)
        .env("GITHUB_EVENT_PATH", &event_path)
        .env("GITHUB_REPOSITORY", REPO)
        .env("GITHUB_API_URL", api)
        .env("GITHUB_WORKSPACE", &s.workspace)
        .env("GITHUB_STEP_SUMMARY", &summary_path)
        .env("INPUT_TOKEN", TOKEN)
        .env(
            "LOG_LEVEL",
            std::env::var("ACTION_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .output()
        .unwrap_or_else(|e| panic!("cannot run prodaudit action: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        summary: std::fs::read_to_string(&summary_path).unwrap_or_default(),
    }
}

/// The arguments action.yml gives the container (`runs.args`, after its `action` subcommand), with
/// `${{ inputs.NAME }}` replaced by `given` values, else the input's default, as the runner does.
fn action_yml_args(given: &[(&str, &str)]) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("action.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let yml: Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("action.yml: {e}"));
    assert_eq!(yml["runs"]["using"], "docker");
    assert_eq!(
        yml["runs"]["image"], "Dockerfile",
        "the project's own image"
    );
    let args: Vec<String> = yml["runs"]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let a = a.as_str().unwrap_or_default();
            match a
                .strip_prefix("${{ inputs.")
                .and_then(|r| r.strip_suffix(" }}"))
            {
                Some(name) => given
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_else(|| {
                        assert!(yml["inputs"][name].is_object(), "undeclared input {name}");
                        yml["inputs"][name]["default"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string()
                    }),
                None => a.to_string(),
            }
        })
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("action"));
    args[1..].to_vec()
}

fn posts(w: &Shared, suffix: &str) -> usize {
    lock_pub(w)
        .requests
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(suffix))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_gets_one_check_run_and_one_review_and_a_second_run_posts_nothing() {
    let s = setup();
    let (api, w) = fake_github::start(s.world()).await;
    let event = pull_request_event(&s);
    // The arguments action.yml passes (the unset inputs as empty strings).
    let args = action_yml_args(&[("sarif", "results.sarif")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = run_action(&s, &api, "pull_request", &event, &args);
    assert_eq!(
        first.code, 1,
        "a high finding fails at the default fail-on\nstdout: {}\nstderr: {}",
        first.stdout, first.stderr
    );
    {
        let world = lock_pub(&w);
        assert_eq!(world.check_runs.len(), 1, "one check run");
        let run = world
            .check_runs
            .values()
            .next()
            .cloned()
            .unwrap_or_default();
        assert_eq!(run["name"], "production-standards");
        assert_eq!(run["head_sha"], s.head.as_str());
        assert_eq!(run["status"], "completed");
        assert_eq!(run["conclusion"], "failure");
        let annotations = run["output"]["annotations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(annotations.len(), 1, "{run}");
        assert_eq!(annotations[0]["path"], "app/svc.py");
        assert_eq!(annotations[0]["start_line"], 6);
        assert_eq!(world.reviews.len(), 1, "one review");
        let comments = world.reviews[0]["comments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(comments.len(), 1);
        assert_eq!(comments[0]["path"], "app/svc.py");
        assert_eq!(comments[0]["line"], 6, "on the line the pull request added");
        assert_eq!(world.reviews[0]["commit_id"], s.head.as_str());
        let body = comments[0]["body"].as_str().unwrap_or("");
        assert!(
            body.starts_with("**HIGH · C5 · Never block the event loop**"),
            "{body}"
        );
        assert!(body.contains("<!-- prodaudit:fp="));
        // Every call carried the workflow's token as it is.
        assert!(
            world
                .requests
                .iter()
                .all(|r| r.authorization == format!("Bearer {TOKEN}")),
            "{:?}",
            world
                .requests
                .iter()
                .map(|r| &r.authorization)
                .collect::<Vec<_>>()
        );
        assert_eq!(world.tokens_issued, 0, "no App token exchange");
    }
    assert!(
        first.summary.contains("## prodaudit: 1 finding(s)"),
        "{}",
        first.summary
    );
    assert!(
        first.summary.contains("| high | C5 | `app/svc.py:6` |"),
        "{}",
        first.summary
    );
    assert!(first.summary.contains("**failed**"), "{}", first.summary);
    let sarif: Value = serde_json::from_str(
        &std::fs::read_to_string(s.workspace.join("results.sarif")).unwrap_or_default(),
    )
    .unwrap_or(Value::Null);
    let results = sarif["runs"][0]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(results.len(), 1, "{sarif}");
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"],
        6
    );
    assert!(
        !first.stdout.contains("::error"),
        "no annotations when the check run carries them"
    );

    // The same head again (a re-run of the workflow): the check run is reused, nothing new is posted.
    let second = run_action(&s, &api, "pull_request", &event, &[]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert_eq!(posts(&w, "/check-runs"), 1, "no second check run");
    assert_eq!(posts(&w, "/reviews"), 1, "no second review");
    {
        let world = lock_pub(&w);
        assert_eq!(world.check_runs.len(), 1);
        assert_eq!(world.threads.len(), 1);
        assert!(world.threads.iter().all(|t| !t.resolved));
    }
    assert_no_violations(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_token_gets_annotations_and_a_summary_and_fails_only_by_fail_on() {
    let s = setup();
    let mut world = s.world();
    for path in ["/check-runs", "/reviews"] {
        world.faults.push_back(
            Fault::new("POST", path, 403)
                .message("Resource not accessible by integration")
                .times(20),
        );
    }
    let (api, w) = fake_github::start(world).await;
    let event = pull_request_event(&s);
    let args = action_yml_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_action(&s, &api, "pull_request", &event, &args);
    assert_eq!(
        run.code, 1,
        "the high finding fails at `high`, not the permission\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("::error file=app/svc.py,line=6"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("::warning title=prodaudit: missing permission::"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("checks: write"), "{}", run.stdout);
    assert!(
        run.summary.contains("| high | C5 | `app/svc.py:6` |"),
        "{}",
        run.summary
    );
    assert!(
        run.summary.contains("**Missing permission**"),
        "{}",
        run.summary
    );
    {
        let world = lock_pub(&w);
        assert!(world.check_runs.is_empty());
        assert!(world.reviews.is_empty());
    }
    // fail-on decides the exit status: nothing at or above critical, so the step passes.
    let args = action_yml_args(&[("fail-on", "critical")]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let lenient = run_action(&s, &api, "pull_request", &event, &args);
    assert_eq!(lenient.code, 0, "{}\n{}", lenient.stdout, lenient.stderr);
    assert!(lenient.stdout.contains("::error file=app/svc.py,line=6"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_audit_follows_the_apps_permission_rule() {
    let s = setup();
    let (api, w) = fake_github::start(s.world()).await;
    let refused = run_action(
        &s,
        &api,
        "issue_comment",
        &comment_event("reader", 501, "/audit"),
        &[],
    );
    assert_eq!(refused.code, 0, "{}\n{}", refused.stdout, refused.stderr);
    {
        let world = lock_pub(&w);
        assert!(
            world
                .issue_comments
                .iter()
                .any(|c| c.contains("@reader only people with write access")),
            "{:?}",
            world.issue_comments
        );
        assert!(
            world.check_runs.is_empty(),
            "a reader's command audits nothing"
        );
        assert!(world.reviews.is_empty());
    }
    let allowed = run_action(
        &s,
        &api,
        "issue_comment",
        &comment_event("writer", 502, "/audit"),
        &[],
    );
    assert_eq!(allowed.code, 1, "{}\n{}", allowed.stdout, allowed.stderr);
    let world = lock_pub(&w);
    assert!(world.reactions.contains(&(502, "eyes".to_string())));
    assert_eq!(world.check_runs.len(), 1);
    let run = world
        .check_runs
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        run["head_sha"],
        s.head.as_str(),
        "the pull request's head, fetched"
    );
    assert_eq!(run["conclusion"], "failure");
    assert_eq!(world.reviews.len(), 1);
    drop(world);
    assert_no_violations(&w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_or_moved_on_pull_request_gets_a_neutral_check_and_no_review() {
    let s = setup();
    let event = pull_request_event(&s);
    // A newer push by the time the step runs: that push's own run audits it.
    let mut moved = s.world();
    moved.head_sha = "f".repeat(40);
    let (api, w) = fake_github::start(moved).await;
    let run = run_action(&s, &api, "pull_request", &event, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    {
        let world = lock_pub(&w);
        let check = world
            .check_runs
            .values()
            .next()
            .cloned()
            .unwrap_or_default();
        assert_eq!(check["conclusion"], "neutral", "{check}");
        assert_eq!(
            check["output"]["title"],
            "Superseded: a newer push is audited"
        );
        assert_eq!(check["head_sha"], s.head.as_str());
        assert!(world.reviews.is_empty());
    }
    let mut closed = s.world();
    closed.state = "closed".into();
    let (api, w) = fake_github::start(closed).await;
    let run = run_action(&s, &api, "pull_request", &event, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let world = lock_pub(&w);
    let check = world
        .check_runs
        .values()
        .next()
        .cloned()
        .unwrap_or_default();
    assert_eq!(check["output"]["title"], "Pull request closed: not audited");
    assert!(world.reviews.is_empty());
}

/// Configuration given to a fetch (the token's header, when the checkout's credentials fail) reaches git
/// through its environment: here a URL rewrite is the observable stand-in for the header.
#[test]
fn a_fetch_gets_its_configuration_through_the_environment() {
    let s = setup();
    let origin = s.workspace.with_file_name("origin.git");
    let real = format!("file://{}", origin.display());
    let bogus = "file:///nonexistent/prodaudit-origin.git";
    git(&s.workspace, &["remote", "set-url", "origin", bogus]);
    let repo = prodaudit::git::Repo::open(&s.workspace).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        repo.fetch("origin", &[], &[s.head.as_str()], &[]).is_err(),
        "the bogus origin cannot be fetched from"
    );
    let key = format!("url.{real}.insteadOf");
    if let Err(e) = repo.fetch("origin", &[], &[s.head.as_str()], &[(key.as_str(), bogus)]) {
        panic!("the configuration did not reach git: {e}");
    }
    assert!(repo.resolve(&s.head).is_ok());
}
