//! `prodaudit action`: the GitHub Action. It reads the run's event (`pull_request`, or an `issue_comment` with
//! `/audit`), audits the pull request from the local checkout with git (as `prodaudit audit` does, fetching
//! the commits a shallow checkout lacks), and publishes what the App publishes through the App's own
//! publishing code ([`Publisher`]): the check run, one review with inline comments and suggestions, deduped
//! by fingerprint, and resolved threads. It also writes SARIF when asked and a job summary.
//!
//! A token that may not create check runs or reviews (pull requests from forks get a read-only
//! `GITHUB_TOKEN`) is not an error: the findings become workflow-command annotations, the summary says why,
//! and the exit status is decided by `fail-on` alone.

use crate::analysis::{Engine, RuleSet};
use crate::audit::{self, AuditError, AuditRequest};
use crate::diff::LineSet;
use crate::git::{GitError, Repo};
use crate::github::GitHub;
use crate::github::api::{ReviewThread, THREADS_FIELDS, parse_threads};
use crate::github::client::{ClientOptions, GitHubError};
use crate::github::events::{self, Command, Intake};
use crate::github::review::{self, Publisher, ReviewError, command_refusal};
use crate::repo_config::{ConfigError, RepoConfig};
use crate::report::markdown::{self, CHECK_NAME};
use crate::report::output::{self, Format, RenderOptions};
use crate::report::{FailOn, Finding, Report, Severity};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// GitHub sends no webhook payload above 25 MB; an event file larger than that is not GitHub's.
const MAX_EVENT_BYTES: u64 = 25 * 1024 * 1024;
/// GitHub accepts at most 1 MiB of job summary per step; ours stays well under it.
pub const MAX_JOB_SUMMARY: usize = 256 * 1024;
/// Findings listed one by one in the job summary (the rest are counted).
const SUMMARY_ROWS: usize = 200;
/// The installation id the calls are made as: a client with a plain token ignores it.
const TOKEN_INSTALLATION: i64 = 1;

/// `prodaudit action`'s arguments (action.yml passes its inputs here; an empty value means "not given").
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ActionArgs {
    /// Exit 1 when a finding is at or above this severity: critical, high, medium, low or never (default:
    /// the repository configuration's `fail_on`, else high).
    #[arg(long)]
    pub fail_on: Option<String>,
    /// Also write the findings as SARIF to this file (relative to the workspace), for
    /// github/codeql-action/upload-sarif.
    #[arg(long)]
    pub sarif: Option<String>,
    /// Repository configuration file (default: .github/prodaudit.yml of the pull request's base).
    #[arg(long)]
    pub config: Option<String>,
    /// Report on every line of the changed files, not only the changed lines (`/audit full` does too).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value = "false")]
    pub full: String,
    /// A folder of additional rule files (may be repeated).
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0} is not set: `prodaudit action` runs inside a GitHub Actions job")]
    MissingEnv(&'static str),
    #[error(
        "no token: give the action `token: ${{{{ github.token }}}}` (the default) or set GITHUB_TOKEN"
    )]
    NoToken,
    #[error("cannot read the event file {}: {detail}", path.display())]
    Event { path: PathBuf, detail: String },
    #[error("invalid input: {0}")]
    Input(String),
    #[error("the event cannot be audited: {0}")]
    InvalidEvent(String),
    #[error(
        "commit {sha} is not in the checkout and cannot be fetched from origin: {detail} (check out with \
         actions/checkout and its default persist-credentials, or fetch-depth: 0)"
    )]
    MissingCommit { sha: String, detail: String },
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Review(#[from] ReviewError),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the Actions runner tells the job.
#[derive(Debug, Clone)]
pub struct ActionEnv {
    pub event_name: String,
    pub event_path: PathBuf,
    /// `owner/name` (GITHUB_REPOSITORY); the event's own repository takes precedence.
    pub repository: Option<String>,
    pub token: String,
    pub api_url: String,
    pub workspace: PathBuf,
    pub step_summary: Option<PathBuf>,
}

impl ActionEnv {
    /// From the environment: the `token` input (INPUT_TOKEN, which action.yml defaults to the workflow's
    /// token) else GITHUB_TOKEN.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<ActionEnv, ActionError> {
        let set = |k: &'static str| get(k).filter(|v| !v.trim().is_empty());
        let token = set("INPUT_TOKEN")
            .or_else(|| set("GITHUB_TOKEN"))
            .ok_or(ActionError::NoToken)?;
        Ok(ActionEnv {
            event_name: set("GITHUB_EVENT_NAME")
                .ok_or(ActionError::MissingEnv("GITHUB_EVENT_NAME"))?,
            event_path: set("GITHUB_EVENT_PATH")
                .map(PathBuf::from)
                .ok_or(ActionError::MissingEnv("GITHUB_EVENT_PATH"))?,
            repository: set("GITHUB_REPOSITORY"),
            token,
            api_url: set("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".to_string()),
            workspace: set("GITHUB_WORKSPACE")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(".")),
            step_summary: set("GITHUB_STEP_SUMMARY").map(PathBuf::from),
        })
    }
}

/// The inputs, checked.
struct Inputs {
    fail_on: Option<FailOn>,
    sarif: Option<PathBuf>,
    config: Option<PathBuf>,
    full: bool,
}

fn inputs(args: &ActionArgs, workspace: &Path) -> Result<Inputs, ActionError> {
    let given = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let path = |p: &Option<String>| {
        given(p).map(PathBuf::from).map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace.join(p)
            }
        })
    };
    let fail_on = given(&args.fail_on)
        .map(|s| s.parse::<FailOn>())
        .transpose()
        .map_err(ActionError::Input)?;
    let full = match args.full.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" => false,
        "true" | "1" | "yes" => true,
        other => {
            return Err(ActionError::Input(format!(
                "full: `{other}` is not true or false"
            )));
        }
    };
    Ok(Inputs {
        fail_on,
        sarif: path(&args.sarif),
        config: path(&args.config),
        full,
    })
}

/// The pull request to audit.
#[derive(Debug, Clone)]
struct Target {
    repo: String,
    pr_number: i64,
    head: String,
    base: String,
    draft: bool,
    /// Asked for by a person (`/audit`): a new check run, drafts audited too.
    explicit: bool,
    full: bool,
}

/// Run the Action; returns the exit status (0, or 1 when a finding is at or above `fail-on`). `out` gets
/// what the job log shows (workflow commands and messages).
pub async fn run(
    env: &ActionEnv,
    args: &ActionArgs,
    rules: RuleSet,
    out: &mut dyn Write,
) -> Result<u8, ActionError> {
    let inputs = inputs(args, &env.workspace)?;
    let payload = read_event(&env.event_path)?;
    let gh = GitHub::with_token(
        &env.api_url,
        &env.token,
        ClientOptions::default(),
        Arc::new(crate::server::metrics::Metrics::new()),
    )?;
    let Some(target) = target_of(env, &payload, &gh, &inputs, out).await? else {
        return Ok(0);
    };
    tracing::info!(repo = %target.repo, pr = target.pr_number, head = %target.head, "auditing");
    let publisher = Publisher {
        gh: &gh,
        store: None,
        installation: TOKEN_INSTALLATION,
        repo: &target.repo,
        pr_number: target.pr_number,
    };
    // One GraphQL request, as the App's: is the pull request still open at this head, and its review threads
    // (fingerprints already commented, threads to resolve).
    let now = pull_now(&gh, &target.repo, target.pr_number).await?;
    if let Some((title, why)) =
        review::not_auditable(now.state.as_deref(), now.head.as_deref(), &target.head)
    {
        let summary = format!("prodaudit did not audit this commit: {why}.");
        neutral_check(&publisher, &target, title, &summary, out).await?;
        say(
            out,
            &format!(
                "::notice title=prodaudit::not audited: {}",
                escape_command(&why)
            ),
        );
        return Ok(0);
    }

    let repo = Repo::open(&env.workspace)?;
    ensure_commits(
        &repo,
        &env.token,
        target.pr_number,
        &target.head,
        &target.base,
    )?;
    let known: Vec<String> = rules
        .rules
        .iter()
        .map(|r| r.id.clone())
        .chain(rules.detectors.iter().map(|d| d.id.clone()))
        .collect();
    // The configuration of the base (a pull request cannot switch its own checks off), as the App reads it.
    let change = AuditRequest {
        repo: repo.root.clone(),
        base: Some(target.base.clone()),
        head: Some(target.head.clone()),
        ..Default::default()
    };
    let config = audit::load_config(&change, inputs.config.as_deref(), &known)?;
    let fail_on = inputs
        .fail_on
        .or(config.fail_on)
        .unwrap_or(FailOn::At(Severity::High));
    if target.draft && !config.audit_drafts && !target.explicit {
        neutral_check(&publisher, &target, "Draft: not audited", "This pull request is a draft. Mark it ready for review, comment `/audit`, or set `review.drafts: true` in `.github/prodaudit.yml`.", out).await?;
        say(
            out,
            "::notice title=prodaudit::This pull request is a draft: not audited (comment `/audit`, or set `review.drafts: true` in .github/prodaudit.yml).",
        );
        return Ok(0);
    }

    // The diff GitHub shows: merge-base(base, head) to head; comments go on its hunks' lines.
    let merge_base = repo.merge_base(&target.base, &target.head)?;
    let diffs = repo.diff(&merge_base, &target.head, &[])?;
    let mut commentable: BTreeMap<String, LineSet> = BTreeMap::new();
    let mut changed: Vec<String> = Vec::new();
    for d in &diffs {
        if let Some(path) = &d.new_path {
            commentable.insert(path.clone(), d.commentable_lines());
            changed.push(path.clone());
        }
    }
    let req = if target.full && !changed.is_empty() {
        // Every line of the changed files, at the head.
        AuditRequest {
            repo: repo.root.clone(),
            head: Some(target.head.clone()),
            all_lines: true,
            paths: changed.iter().map(|p| repo.root.join(p)).collect(),
            ..Default::default()
        }
    } else {
        change
    };
    let meta = rules.metadata();
    let engine = Engine::new(rules, config.overrides.clone());
    let report = audit::run(&engine, &config, &req)?;
    let notes = notes_of(&report);
    let failed = report.findings.iter().any(|f| fail_on.fails(f.severity));

    if let Some(path) = &inputs.sarif {
        let opts = RenderOptions {
            color: false,
            fail_on,
            tool_version: env!("CARGO_PKG_VERSION"),
        };
        let sarif = output::render(&report, &meta, Format::Sarif, &opts);
        std::fs::write(path, sarif).map_err(|source| ActionError::Write {
            path: path.clone(),
            source,
        })?;
    }

    let published = publish(
        &publisher,
        &target,
        &report,
        &notes,
        &config,
        failed,
        &commentable,
        &now.threads,
    )
    .await;
    let (published, error) = match published {
        Ok(p) => (p, None),
        Err(e) => (Published::default(), Some(e)),
    };
    if !published.denied.is_empty() || error.is_some() {
        for d in &published.denied {
            say(
                out,
                &format!(
                    "::warning title=prodaudit: missing permission::{}",
                    escape_command(d)
                ),
            );
        }
        // What the check run would have shown, as workflow-command annotations.
        let opts = RenderOptions {
            color: false,
            fail_on,
            tool_version: env!("CARGO_PKG_VERSION"),
        };
        say(
            out,
            output::render(&report, &meta, Format::Github, &opts).trim_end(),
        );
    } else {
        say(
            out,
            &format!(
                "prodaudit: {} on the changed lines; check run `{CHECK_NAME}` {}, {} new review comment(s), {} thread(s) resolved.",
                markdown::counts(&report.findings.iter().collect::<Vec<_>>()),
                if failed { "failed" } else { "passed" },
                published.new_comments,
                published.resolved
            ),
        );
    }
    if let Some(path) = &env.step_summary {
        let text = job_summary(&report, fail_on, &notes, &published, error.as_ref());
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = appended {
            say(
                out,
                &format!(
                    "::warning title=prodaudit::cannot write the job summary: {}",
                    escape_command(&e.to_string())
                ),
            );
        }
    }
    if let Some(e) = error {
        return Err(e);
    }
    Ok(u8::from(failed))
}

/// What publishing did.
#[derive(Debug, Default)]
struct Published {
    check_run: Option<i64>,
    new_comments: usize,
    resolved: usize,
    /// What the token was not allowed to do, one sentence each.
    denied: Vec<String>,
}

/// The check run, the review and the thread resolution, through the App's publishing code. A call GitHub
/// refuses for lack of permission is recorded in `denied` and the rest goes on.
#[allow(clippy::too_many_arguments)]
async fn publish(
    publisher: &Publisher<'_>,
    target: &Target,
    report: &Report,
    notes: &[String],
    config: &RepoConfig,
    failed: bool,
    commentable: &BTreeMap<String, LineSet>,
    threads: &[ReviewThread],
) -> Result<Published, ActionError> {
    let mut p = Published::default();
    let refs: Vec<&Finding> = report.findings.iter().collect();
    p.check_run = permitted(
        publisher.start_check(&target.head, target.explicit).await,
        "create the check run (it needs `checks: write`)",
        &mut p.denied,
    )?;
    if let Some(id) = p.check_run {
        let conclusion = if failed { "failure" } else { "success" };
        permitted(
            publisher
                .finish_check(
                    &target.head,
                    id,
                    conclusion,
                    &markdown::check_title(&refs),
                    &markdown::check_summary(&refs, notes),
                    &refs,
                )
                .await,
            "complete the check run (it needs `checks: write`)",
            &mut p.denied,
        )?;
    }
    let lines: BTreeMap<&str, &LineSet> =
        commentable.iter().map(|(k, v)| (k.as_str(), v)).collect();
    p.new_comments = permitted(
        publisher
            .post_review(
                &target.head,
                &report.findings,
                &lines,
                config.max_inline_comments,
                threads,
                true,
            )
            .await,
        "post the review (it needs `pull-requests: write`)",
        &mut p.denied,
    )?
    .unwrap_or(0);
    p.resolved = permitted(
        publisher.resolve_gone(&report.findings, threads).await,
        "resolve review threads (it needs `pull-requests: write`)",
        &mut p.denied,
    )?
    .unwrap_or(0);
    Ok(p)
}

/// A check run completed `neutral` with a reason (a draft, a closed or moved-on pull request), as the App
/// reports it; a token that may not create it is said in the log.
async fn neutral_check(
    publisher: &Publisher<'_>,
    target: &Target,
    title: &str,
    summary: &str,
    out: &mut dyn Write,
) -> Result<(), ActionError> {
    let mut denied = Vec::new();
    if let Some(id) = permitted(
        publisher.start_check(&target.head, target.explicit).await,
        "create the check run (it needs `checks: write`)",
        &mut denied,
    )? {
        permitted(
            publisher
                .finish_check(&target.head, id, "neutral", title, summary, &[])
                .await,
            "complete the check run (it needs `checks: write`)",
            &mut denied,
        )?;
    }
    for d in &denied {
        say(
            out,
            &format!(
                "::warning title=prodaudit: missing permission::{}",
                escape_command(d)
            ),
        );
    }
    Ok(())
}

/// The pull request as GraphQL reports it now.
#[derive(Debug, Default)]
struct PullNow {
    /// OPEN, CLOSED or MERGED.
    state: Option<String>,
    head: Option<String>,
    threads: Vec<ReviewThread>,
}

/// State, head and review threads of a pull request, in one GraphQL request.
async fn pull_now(gh: &GitHub, repo: &str, number: i64) -> Result<PullNow, GitHubError> {
    let (owner, name) = repo.split_once('/').unwrap_or((repo, ""));
    let query = format!(
        "query($owner:String!,$name:String!,$number:Int!){{repository(owner:$owner,name:$name){{pullRequest(number:$number){{state headRefOid {THREADS_FIELDS}}}}}}}"
    );
    let data = gh
        .graphql_query(
            TOKEN_INSTALLATION,
            &query,
            json!({"owner": owner, "name": name, "number": number}),
        )
        .await?;
    let pr = &data["repository"]["pullRequest"];
    Ok(PullNow {
        state: pr["state"].as_str().map(str::to_string),
        head: pr["headRefOid"].as_str().map(str::to_string),
        threads: parse_threads(&pr["reviewThreads"]),
    })
}

/// A 403 that is not a rate limit: the token lacks a permission (a fork's read-only token).
fn lacks_permission(e: &ReviewError) -> bool {
    matches!(e, ReviewError::GitHub(g) if g.status() == Some(403) && !g.is_transient())
}

/// `Ok(Some(v))` on success; `Ok(None)` when the token may not do `what` (said in `denied`); other errors.
fn permitted<T>(
    result: Result<T, ReviewError>,
    what: &str,
    denied: &mut Vec<String>,
) -> Result<Option<T>, ActionError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if lacks_permission(&e) => {
            let detail = match &e {
                ReviewError::GitHub(GitHubError::Status { message, .. }) => message.clone(),
                other => other.to_string(),
            };
            denied.push(format!(
                "the token may not {what}: GitHub answered 403 ({}). Pull requests from forks get a read-only \
                 GITHUB_TOKEN; the findings are reported as annotations and in the job summary instead.",
                detail.chars().take(200).collect::<String>()
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// What the event asks for: the pull request to audit, or `None` when there is nothing to do (said in `out`).
async fn target_of(
    env: &ActionEnv,
    payload: &Value,
    gh: &GitHub,
    inputs: &Inputs,
    out: &mut dyn Write,
) -> Result<Option<Target>, ActionError> {
    // The App's reading of the event. An Actions event has no installation; the repository is the run's.
    let mut p = payload.clone();
    if !p.is_object() {
        return Err(ActionError::InvalidEvent(
            "the event is not a JSON object".into(),
        ));
    }
    p["installation"] = json!({"id": TOKEN_INSTALLATION});
    if p["repository"]["full_name"].as_str().is_none()
        && let Some(r) = &env.repository
    {
        p["repository"] = json!({"full_name": r});
    }
    let event = match env.event_name.as_str() {
        "pull_request" | "pull_request_target" => "pull_request",
        other => other,
    };
    match events::classify(event, &p, 0) {
        Intake::Audit {
            repo,
            pr_number,
            head_sha,
            base_sha,
            draft,
            ..
        } => {
            let base = match base_sha {
                Some(b) => b,
                None => {
                    gh.get_pull(TOKEN_INSTALLATION, &repo, pr_number)
                        .await?
                        .base
                        .sha
                }
            };
            // It goes on git's command line.
            if !events::is_commit_sha(&base) {
                return Err(ActionError::InvalidEvent(
                    "the pull request's base is not a commit SHA".into(),
                ));
            }
            Ok(Some(Target {
                repo,
                pr_number,
                head: head_sha,
                base,
                draft,
                explicit: false,
                full: inputs.full,
            }))
        }
        Intake::Command {
            repo,
            pr_number,
            comment_id,
            user,
            command,
            ..
        } => {
            // The App's rule: only people with write access run commands.
            if let Some(reply) = command_refusal(gh, TOKEN_INSTALLATION, &repo, &user).await? {
                if let Err(e) = gh
                    .create_issue_comment(TOKEN_INSTALLATION, &repo, pr_number, &reply)
                    .await
                {
                    tracing::warn!(error = %e, "cannot answer the comment");
                }
                say(
                    out,
                    &format!(
                        "::notice title=prodaudit::`/audit` by @{user} refused: only people with write access to the repository can run prodaudit commands."
                    ),
                );
                return Ok(None);
            }
            if let Err(e) = gh
                .add_reaction(TOKEN_INSTALLATION, &repo, comment_id, "eyes")
                .await
            {
                tracing::warn!(error = %e, "cannot react to the comment");
            }
            if command == Command::Help {
                gh.create_issue_comment(
                    TOKEN_INSTALLATION,
                    &repo,
                    pr_number,
                    &markdown::help_text(),
                )
                .await?;
                return Ok(None);
            }
            let pull = gh.get_pull(TOKEN_INSTALLATION, &repo, pr_number).await?;
            if pull.state != "open" {
                say(
                    out,
                    "::notice title=prodaudit::the pull request is closed: not audited.",
                );
                return Ok(None);
            }
            if !events::is_commit_sha(&pull.head.sha) || !events::is_commit_sha(&pull.base.sha) {
                return Err(ActionError::InvalidEvent(
                    "the pull request's head or base is not a commit SHA".into(),
                ));
            }
            Ok(Some(Target {
                repo,
                pr_number,
                head: pull.head.sha,
                base: pull.base.sha,
                draft: pull.draft,
                explicit: true,
                full: command == Command::Full || inputs.full,
            }))
        }
        Intake::Ignore { reason } => {
            say(
                out,
                &format!(
                    "prodaudit: nothing to audit ({reason}). The action handles `pull_request` and `issue_comment` events."
                ),
            );
            Ok(None)
        }
        Intake::Rerun { .. } => {
            say(
                out,
                "prodaudit: nothing to audit (check re-runs start a new workflow run).",
            );
            Ok(None)
        }
        Intake::Invalid { reason } => Err(ActionError::InvalidEvent(reason)),
    }
}

fn read_event(path: &Path) -> Result<Value, ActionError> {
    let err = |detail: String| ActionError::Event {
        path: path.to_path_buf(),
        detail,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.len() > MAX_EVENT_BYTES {
        return Err(err(format!(
            "{} bytes, more than GitHub ever sends",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))
}

/// Fetches from origin with the checkout's own credentials (actions/checkout persists them by default), and,
/// when that fails, once more with the Action's token as an HTTP header, as actions/checkout sends it (a checkout
/// with `persist-credentials: false`, or whose credentials the container cannot see). The header reaches git
/// through its environment, never its command line.
struct Fetcher<'a> {
    repo: &'a Repo,
    header: String,
    /// The checkout's credentials failed and the token worked: use the token from now on.
    with_token: std::cell::Cell<bool>,
}

impl<'a> Fetcher<'a> {
    fn new(repo: &'a Repo, token: &str) -> Fetcher<'a> {
        Fetcher {
            repo,
            header: format!(
                "AUTHORIZATION: basic {}",
                base64(format!("x-access-token:{token}").as_bytes())
            ),
            with_token: std::cell::Cell::new(false),
        }
    }

    fn fetch(&self, options: &[&str], refspecs: &[&str]) -> Result<(), GitError> {
        if !self.with_token.get() {
            match self.repo.fetch("origin", options, refspecs, &[]) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!(error = %e, "fetch failed; trying again with the token"),
            }
        }
        self.repo.fetch(
            "origin",
            options,
            refspecs,
            &[("http.extraheader", self.header.as_str())],
        )?;
        self.with_token.set(true);
        Ok(())
    }
}

/// Standard base64 with padding (RFC 4648), for an HTTP basic credential.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Make sure head, base and a merge-base of them are in the checkout. `actions/checkout` fetches one commit
/// by default (for `pull_request`, the merge commit; for `issue_comment`, the default branch): the missing
/// commits are fetched from origin (by SHA, else the pull request's `refs/pull/N/head`), and a shallow history
/// is deepened step by step until the two meet.
fn ensure_commits(
    repo: &Repo,
    token: &str,
    pr: i64,
    head: &str,
    base: &str,
) -> Result<(), ActionError> {
    let fetcher = Fetcher::new(repo, token);
    let depth: &[&str] = if repo.is_shallow() {
        &["--depth=50"]
    } else {
        &[]
    };
    let missing: Vec<&str> = [head, base]
        .into_iter()
        .filter(|sha| repo.resolve(sha).is_err())
        .collect();
    if !missing.is_empty() {
        tracing::info!(?missing, "fetching commits the checkout lacks");
        if let Err(first) = fetcher.fetch(depth, &missing) {
            tracing::warn!(error = %first, "fetching by SHA failed; trying the pull request's refs");
            let pull_ref = format!("+refs/pull/{pr}/head:refs/remotes/prodaudit/pull/{pr}");
            if let Err(e) = fetcher.fetch(depth, &[pull_ref.as_str()]) {
                tracing::warn!(error = %e, "fetching refs/pull/{pr}/head failed");
            }
            for sha in [head, base] {
                if repo.resolve(sha).is_err() {
                    return Err(ActionError::MissingCommit {
                        sha: sha.to_string(),
                        detail: first.to_string(),
                    });
                }
            }
        }
    }
    for step in [
        "--deepen=50",
        "--deepen=200",
        "--deepen=1000",
        "--unshallow",
    ] {
        match repo.merge_base(base, head) {
            Err(GitError::NoMergeBase { .. }) if repo.is_shallow() => {
                tracing::info!(
                    step,
                    "no merge-base in the shallow history yet; deepening it"
                );
                fetcher.fetch(&[step], &[head, base])?;
            }
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    repo.merge_base(base, head)?;
    Ok(())
}

/// The check summary's notes, as the App writes them.
fn notes_of(report: &Report) -> Vec<String> {
    let mut notes: Vec<String> = report
        .skipped
        .iter()
        .map(|s| format!("Skipped `{}`: {}.", s.path, s.reason.trim_end_matches('.')))
        .collect();
    for c in &report.capped {
        notes.push(format!(
            "`{}`: {} findings reported, {} more left out (at most {} per file).",
            c.path,
            c.reported,
            c.left_out,
            crate::analysis::limits::MAX_FINDINGS_PER_FILE
        ));
    }
    if report.not_service > 0 {
        notes.push(format!(
            "{} finding(s) held back in code that is not the running service (scripts, examples, tests, development Compose files, modules no entry point imports, functions nothing calls); `paths.report_not_service: true` in `.github/prodaudit.yml` reports them.",
            report.not_service
        ));
    }
    notes
}

/// Text for a table cell or a line of the job summary: one line, no HTML, no table breaks.
fn cell(s: &str, max_chars: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    let mut out = one_line
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('`', "'");
    if s.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// The job summary: counts by severity, the findings (at most [`SUMMARY_ROWS`]), notes, and what was
/// published or why not; at most [`MAX_JOB_SUMMARY`] bytes.
fn job_summary(
    report: &Report,
    fail_on: FailOn,
    notes: &[String],
    published: &Published,
    error: Option<&ActionError>,
) -> String {
    let refs: Vec<&Finding> = report.findings.iter().collect();
    let failed = refs.iter().any(|f| fail_on.fails(f.severity));
    let mut s = format!(
        "## prodaudit: {}\n\n",
        if refs.is_empty() {
            "no findings on the changed lines".to_string()
        } else {
            format!("{} finding(s) on the changed lines", refs.len())
        }
    );
    s.push_str("| critical | high | medium | low |\n|---|---|---|---|\n");
    let n = |sev: Severity| refs.iter().filter(|f| f.severity == sev).count();
    s.push_str(&format!(
        "| {} | {} | {} | {} |\n\n",
        n(Severity::Critical),
        n(Severity::High),
        n(Severity::Medium),
        n(Severity::Low)
    ));
    s.push_str(&match fail_on {
        FailOn::At(level) => format!(
            "Fails at `{level}` and above: **{}**.\n\n",
            if failed { "failed" } else { "passed" }
        ),
        FailOn::Never => "`fail-on: never`: the run never fails on findings.\n\n".to_string(),
    });
    if !refs.is_empty() {
        s.push_str("| severity | rule | where | finding |\n|---|---|---|---|\n");
        for f in refs.iter().take(SUMMARY_ROWS) {
            s.push_str(&format!(
                "| {} | {} | `{}:{}` | {} |\n",
                f.severity,
                cell(&f.rule, 16),
                cell(&f.path, 200),
                f.line,
                cell(&f.message, 300)
            ));
        }
        if refs.len() > SUMMARY_ROWS {
            s.push_str(&format!(
                "\n… and {} more finding(s): see the check run or the annotations.\n",
                markdown::thousands(refs.len() - SUMMARY_ROWS)
            ));
        }
        s.push('\n');
    }
    for note in notes.iter().take(50) {
        s.push_str(&format!("- {}\n", cell(note, 500)));
    }
    if notes.len() > 50 {
        s.push_str(&format!("- … and {} more note(s).\n", notes.len() - 50));
    }
    if let Some(id) = published.check_run {
        s.push_str(&format!(
            "\nCheck run `{CHECK_NAME}` ({id}) completed; {} new review comment(s), {} thread(s) resolved.\n",
            published.new_comments, published.resolved
        ));
    }
    for d in &published.denied {
        s.push_str(&format!("\n> **Missing permission**: {}\n", cell(d, 600)));
    }
    if let Some(e) = error {
        s.push_str(&format!(
            "\n> **Not published**: {}\n",
            cell(&e.to_string(), 600)
        ));
    }
    markdown::truncate(s, MAX_JOB_SUMMARY)
}

/// Escape a workflow command's message (`%`, CR, LF).
fn escape_command(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn say(out: &mut dyn Write, line: &str) {
    let _ = writeln!(out, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_treat_empty_values_as_unset() {
        let ws = Path::new("/ws");
        let args = ActionArgs {
            fail_on: Some(String::new()),
            sarif: Some(String::new()),
            config: Some("conf.yml".into()),
            full: String::new(),
            rules: Vec::new(),
        };
        let i = match inputs(&args, ws) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(i.fail_on, None);
        assert_eq!(i.sarif, None);
        assert_eq!(i.config, Some(PathBuf::from("/ws/conf.yml")));
        assert!(!i.full);
        let args = ActionArgs {
            fail_on: Some("medium".into()),
            full: "true".into(),
            ..Default::default()
        };
        let i = match inputs(&args, ws) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(i.fail_on, Some(FailOn::At(Severity::Medium)));
        assert!(i.full);
        let bad = ActionArgs {
            fail_on: Some("severe".into()),
            ..Default::default()
        };
        assert!(matches!(inputs(&bad, ws), Err(ActionError::Input(_))));
    }

    fn finding(i: usize) -> Finding {
        Finding {
            rule: "C5".into(),
            check: "C5-blocking-sleep".into(),
            severity: Severity::High,
            path: format!("app/m{i}.py"),
            line: i + 1,
            end_line: i + 1,
            column: 1,
            end_column: 2,
            message: "x".repeat(2_000),
            standard: "Never block the event loop".into(),
            conforming: String::new(),
            fingerprint: format!("fp{i}"),
            fix: None,
            code: Vec::new(),
            code_cut: None,
        }
    }

    #[test]
    fn the_job_summary_is_bounded() {
        let report = Report {
            findings: (0..5_000).map(finding).collect(),
            ..Default::default()
        };
        let notes: Vec<String> = (0..1_000)
            .map(|i| format!("Skipped `f{i}`: too large."))
            .collect();
        let published = Published {
            denied: vec!["the token may not post the review".into()],
            ..Default::default()
        };
        let s = job_summary(
            &report,
            FailOn::At(Severity::High),
            &notes,
            &published,
            None,
        );
        assert!(s.len() <= MAX_JOB_SUMMARY, "{}", s.len());
        assert!(s.contains("| 0 | 5000 | 0 | 0 |"), "counts by severity");
        assert!(s.contains("… and 4,800 more finding(s)"));
        assert_eq!(s.matches("| high | C5 |").count(), SUMMARY_ROWS);
        assert!(s.contains("… and 950 more note(s)."));
        assert!(s.contains("**Missing permission**"));
        assert!(s.contains("**failed**"));
    }

    #[test]
    fn base64_follows_rfc_4648() {
        // RFC 4648, section 10.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn summary_cells_cannot_break_the_table_or_inject_html() {
        let c = cell("a|b\n<script>`x`</script>", 100);
        assert!(!c.contains('\n') && !c.contains('<') && !c.contains('`'));
        assert!(c.contains("\\|"));
        assert!(cell(&"x".repeat(50), 10).ends_with('…'));
    }
}
