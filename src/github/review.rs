//! The App's audit of one pull request: read what changed (few, batched API calls), run the engine, publish a
//! check run and one review with the new findings, and resolve threads whose finding is gone. The publishing
//! half is [`Publisher`], which the GitHub Action (`crate::action`) calls too; so are the rules on who may run
//! slash commands ([`command_refusal`]) and on what is no longer worth auditing ([`not_auditable`]).

use super::api::{NewComment, PrFile, ReviewThread};
use super::client::{GitHub, GitHubError};
use crate::analysis::{Engine, RepoContext, RuleSet, moved};
use crate::diff::{self, LineSet};
use crate::queue::JobStore;
use crate::repo_config::{self, RepoConfig};
use crate::report::markdown::{self, CHECK_NAME};
use crate::report::{FailOn, Finding, Severity};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Files larger than this are not fetched (the shared planning policy's limit).
pub const MAX_FILE_BYTES: u64 = crate::analysis::plan::MAX_FILE_BYTES as u64;
/// Files per GraphQL contents query.
pub(super) const GRAPHQL_BATCH: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("the analysis task failed: {0}")]
    Analysis(String),
    /// The analysis process crashed or hit a limit: a failed attempt, retried up to the attempts cap.
    #[error("{0}")]
    AnalysisStopped(String),
}

impl ReviewError {
    pub fn is_transient(&self) -> bool {
        match self {
            ReviewError::GitHub(e) => e.is_transient(),
            ReviewError::Queue(_) => true,
            ReviewError::Analysis(_) => false,
            ReviewError::AnalysisStopped(_) => true,
        }
    }
}

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditTarget {
    pub installation: i64,
    pub repo: String,
    pub pr_number: i64,
    /// The head the job was queued for; `None` audits the pull request's current head.
    pub head_sha: Option<String>,
    /// What the webhook said of the pull request (with `head_sha`): the audit need not fetch it.
    pub known: Option<KnownPull>,
    /// Every line of the changed files (`/audit full`).
    pub full: bool,
    /// Started by a person (slash command, re-run): drafts are audited too.
    pub explicit: bool,
}

/// The pull request as its `pull_request` webhook described it.
#[derive(Debug, Clone)]
pub struct KnownPull {
    pub base_sha: String,
    pub draft: bool,
}

/// What an audit did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AuditOutcome {
    pub skipped: Option<String>,
    pub findings: usize,
    pub new_comments: usize,
    pub resolved: usize,
    pub conclusion: String,
    pub head_sha: String,
}

/// One file of the pull request as the audit sees it.
struct ChangedFile {
    path: String,
    previous: Option<String>,
    patch: Option<String>,
    added: LineSet,
    commentable: LineSet,
}

/// A file the pull request removed lines from: its base path and those lines (old-side numbers).
type OldFile = (String, LineSet);

pub struct Reviewer {
    pub gh: Arc<GitHub>,
    pub rules: Arc<RuleSet>,
    pub store: Arc<dyn JobStore>,
    /// Where the analysis runs (a child process under `serve`).
    pub runner: crate::sandbox::AnalysisRunner,
    /// What the repository model keeps of each file, by blob (see [`super::model`]).
    pub model_cache: super::model::FactCache,
}

fn split(repo: &str) -> (&str, &str) {
    repo.split_once('/').unwrap_or((repo, ""))
}

impl Reviewer {
    /// Run the whole audit of one pull request.
    pub async fn audit(
        &self,
        t: &AuditTarget,
        job: Option<&crate::queue::Job>,
    ) -> Result<AuditOutcome, ReviewError> {
        let gh = &self.gh;
        // A pull_request webhook gave head, base and draft: one request fewer. A newer push is caught by the
        // queue (coalescing, and `is_superseded` before anything is posted). Otherwise ask GitHub.
        let (head, base_sha, draft) = match (&t.head_sha, &t.known) {
            (Some(head), Some(k)) => (head.clone(), k.base_sha.clone(), k.draft),
            _ => {
                let pull = gh.get_pull(t.installation, &t.repo, t.pr_number).await?;
                let head = pull.head.sha.clone();
                if pull.state != "open" {
                    return Ok(AuditOutcome {
                        head_sha: head,
                        skipped: Some("pull request is closed".into()),
                        ..Default::default()
                    });
                }
                if let Some(queued) = &t.head_sha
                    && *queued != head
                {
                    return Ok(AuditOutcome {
                        skipped: Some(format!(
                            "head moved on from {queued} to {head}; the newer push is audited"
                        )),
                        head_sha: head,
                        ..Default::default()
                    });
                }
                (head, pull.base.sha, pull.draft)
            }
        };
        let mut outcome = AuditOutcome {
            head_sha: head.clone(),
            ..Default::default()
        };
        let check_id = self.start_check(t, &head).await?;

        let files = gh
            .list_pr_files(t.installation, &t.repo, t.pr_number)
            .await?;
        let mut notes = Vec::new();
        // Everything the pull request adds or modifies, also files no rule reads or the configuration
        // excludes: a migration in an excluded folder is still part of the change.
        let touched: std::collections::BTreeSet<String> = files
            .iter()
            .filter(|f| f.status != "removed")
            .map(|f| f.filename.clone())
            .collect();
        let (mut changed, skipped, mut olds) = changed_files(&files);
        for (path, why) in &skipped {
            notes.push(format!("Skipped `{path}`: {why}."));
        }

        // One GraphQL request: the base branch's config, the head version of every file worth reading, and
        // the review threads (for fingerprints already commented and threads to resolve).
        let mut wanted: Vec<(String, String)> =
            vec![(base_sha.clone(), repo_config::DEFAULT_PATH.to_string())];
        wanted.extend(changed.iter().map(|f| (head.clone(), f.path.clone())));
        let (mut contents, pr_now) = self.fetch_blobs_and_threads(t, &wanted, true).await?;
        let pr_now = pr_now.unwrap_or_default();
        // The same request says whether the pull request is still open at this head (what `GET pull`
        // said before): a closed or moved-on pull request is not audited, and its check run says why.
        let gone_by = not_auditable(pr_now.state.as_deref(), pr_now.head.as_deref(), &head);
        if let Some((title, why)) = gone_by {
            self.finish_check(
                t,
                &head,
                check_id,
                "neutral",
                title,
                &format!("prodaudit did not audit this commit: {why}."),
                &[],
            )
            .await?;
            outcome.skipped = Some(why);
            outcome.conclusion = "neutral".into();
            return Ok(outcome);
        }
        let threads = pr_now.threads;
        let config_text =
            contents.remove(&(base_sha.clone(), repo_config::DEFAULT_PATH.to_string()));
        let known: Vec<String> = self
            .rules
            .rules
            .iter()
            .map(|r| r.id.clone())
            .chain(self.rules.detectors.iter().map(|d| d.id.clone()))
            .collect();
        let config = match config_text.flatten() {
            Some(text) => match RepoConfig::parse(
                repo_config::DEFAULT_PATH,
                &String::from_utf8_lossy(&text),
                &known,
            ) {
                Ok(c) => c,
                Err(e) => {
                    notes.push(format!("**Configuration ignored**: {e}. The defaults apply until it is fixed on the base branch."));
                    RepoConfig::default()
                }
            },
            None => RepoConfig::default(),
        };
        if draft && !config.audit_drafts && !t.explicit {
            self.finish_check(t, &head, check_id, "neutral", "Draft: not audited", "This pull request is a draft. Mark it ready for review, comment `/audit`, or set `review.drafts: true` in `.github/prodaudit.yml`.", &[]).await?;
            outcome.skipped = Some("draft".into());
            outcome.conclusion = "neutral".into();
            return Ok(outcome);
        }
        changed.retain(|f| config.wants_path(&f.path));

        // Files without a patch (large diffs): hunks from both versions.
        let need_base: Vec<(String, String)> = changed
            .iter()
            .filter(|f| f.patch.is_none())
            .map(|f| {
                (
                    base_sha.clone(),
                    f.previous.clone().unwrap_or_else(|| f.path.clone()),
                )
            })
            .collect();
        let base_versions = if need_base.is_empty() {
            Default::default()
        } else {
            self.fetch_blobs(t, &need_base).await?
        };
        let mut inputs = Vec::new();
        for f in &mut changed {
            let Some(Some(bytes)) = contents.remove(&(head.clone(), f.path.clone())) else {
                notes.push(format!(
                    "Skipped `{}`: not readable at the head commit.",
                    f.path
                ));
                continue;
            };
            if f.patch.is_none() {
                let base_path = f.previous.clone().unwrap_or_else(|| f.path.clone());
                let old = base_versions
                    .get(&(base_sha.clone(), base_path.clone()))
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let hunks = diff::diff_texts(&old, &String::from_utf8_lossy(&bytes), 3);
                let deleted: LineSet = hunks
                    .iter()
                    .flat_map(|h| h.deleted.iter().copied())
                    .collect();
                if !deleted.is_empty() {
                    olds.push((base_path, deleted));
                }
                for h in &hunks {
                    for &l in &h.added {
                        f.added.insert(l);
                    }
                    if h.new_lines > 0 {
                        f.commentable
                            .insert_range(h.new_start, h.new_start + h.new_lines - 1);
                    }
                }
            }
            inputs.push((
                f.path.clone(),
                bytes,
                if t.full { None } else { Some(f.added.clone()) },
            ));
        }

        // The repository around the files, only when a rule reads beyond its file.
        let engine = Engine::new(self.rules.clone(), config.overrides.clone());
        let needs = engine.needed_files();
        let mut repo_ctx = RepoContext {
            changed: touched,
            reverse_proxies: config.reverse_proxies.clone(),
            tenant_columns: config.tenant_columns.clone(),
            ..Default::default()
        };
        let want_context = !needs.is_empty() && context_may_matter(&self.rules, &inputs);
        // The repository model (which modules the service runs, which functions nothing calls) holds back
        // critical/high findings, as in the CLI: worth reading when a Python file is audited and the repository
        // does not ask for everything to be reported.
        let want_model = !engine.overrides.report_not_service
            && inputs.iter().any(|(p, _, _)| p.ends_with(".py"));
        // One tree listing serves both; without it the model is left out, never the audit.
        let tree = if want_context || want_model {
            match gh.get_tree(t.installation, &t.repo, &head).await {
                Ok(tree) => Some(tree),
                Err(e) if !want_context => {
                    tracing::warn!(repo = %t.repo, error = %e, "repository model not built: the tree could not be listed; every module is judged");
                    None
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        if want_context && let Some(tree) = &tree {
            if let Ok(globs) = crate::analysis::context::needs_globset(&needs) {
                let want: Vec<(String, String)> = tree
                    .files
                    .iter()
                    .filter(|f| globs.is_match(f.path.as_str()))
                    .map(|f| (head.clone(), f.path.clone()))
                    .collect();
                for ((_, path), text) in self.fetch_blobs(t, &want).await? {
                    if let Some(text) =
                        text.filter(|t| crate::analysis::plan::context_file_wanted(t))
                    {
                        repo_ctx
                            .files
                            .insert(path, String::from_utf8_lossy(&text).into_owned());
                    }
                }
            }
            repo_ctx.paths = tree.paths();
            repo_ctx.paths.sort();
        }
        if want_model && let Some(tree) = &tree {
            repo_ctx.reach = self
                .repo_model(t, &head, tree, &inputs, &repo_ctx.files)
                .await
                .map(Arc::new);
        }

        let paths: Vec<String> = inputs.iter().map(|(p, _, _)| p.clone()).collect();
        // What the old side needs to tell code the change moved from code it wrote (only when it removed lines).
        let moved_ctx = (!olds.is_empty()).then(|| {
            let texts: HashMap<String, String> = inputs
                .iter()
                .map(|(p, b, _)| (p.clone(), String::from_utf8_lossy(b).into_owned()))
                .collect();
            (engine.for_old_side(), repo_ctx.clone(), texts)
        });
        // In a child process under `serve` (a crash, memory or time limit ends the child, not the server).
        let analysed = self
            .runner
            .analyze(engine, inputs, repo_ctx, job.map(|j| j.id))
            .await
            .map_err(|e| ReviewError::AnalysisStopped(e.to_string()))?;
        let mut findings: Vec<Finding> = Vec::new();
        let mut not_service = 0;
        for (i, o) in analysed.into_iter().enumerate() {
            let path = paths.get(i).map_or("a file", String::as_str);
            if let Some(reason) = o.skipped {
                notes.push(format!("Skipped `{path}`: {reason}."));
            }
            if o.left_out > 0 {
                notes.push(format!(
                    "`{path}`: {} findings reported, {} more left out (at most {} per file).",
                    o.findings.len(),
                    o.left_out,
                    crate::analysis::limits::MAX_FINDINGS_PER_FILE
                ));
            }
            not_service += o.not_service;
            findings.extend(o.findings);
        }
        if not_service > 0 {
            notes.push(format!(
                "{not_service} finding(s) held back in code that is not the running service (scripts, examples, tests, development Compose files, modules no entry point imports, functions nothing calls); `paths.report_not_service: true` in `.github/prodaudit.yml` reports them."
            ));
        }
        if let Some((old_engine, old_ctx, texts)) = moved_ctx
            && !findings.is_empty()
        {
            let moved = self
                .drop_moved(
                    t,
                    &base_sha,
                    &olds,
                    &texts,
                    (old_engine, old_ctx),
                    job.map(|j| j.id),
                    &mut findings,
                )
                .await;
            if moved > 0 {
                notes.push(format!(
                    "{moved} finding(s) held back: this pull request moved their code rather than wrote it (the same problem was reported on lines it removed)."
                ));
            }
        }
        findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        outcome.findings = findings.len();

        let fail_on = config.fail_on.unwrap_or(FailOn::At(Severity::High));
        let failed = findings.iter().any(|f| fail_on.fails(f.severity));
        let conclusion = if failed { "failure" } else { "success" };
        outcome.conclusion = conclusion.into();
        let refs: Vec<&Finding> = findings.iter().collect();
        if let Some(job) = job
            && self.store.is_superseded(job).await?
        {
            outcome.skipped = Some("superseded by a newer push".into());
            return Ok(outcome);
        }
        self.finish_check(
            t,
            &head,
            check_id,
            conclusion,
            &markdown::check_title(&refs),
            &markdown::check_summary(&refs, &notes),
            &refs,
        )
        .await?;

        // The review: findings not commented before, inline where GitHub accepts a comment; then our threads
        // whose finding is gone are resolved.
        let commentable: BTreeMap<&str, &LineSet> = changed
            .iter()
            .map(|f| (f.path.as_str(), &f.commentable))
            .collect();
        let publisher = self.publisher(t);
        // An earlier attempt of this job may have created a review GitHub did not confirm (a timeout after the
        // request was sent): only then are the reviews read (a job's first attempt costs nothing more; a
        // slash command's audit cannot tell, so it looks).
        let look_at_reviews = job.is_none_or(|j| j.attempts > 1);
        outcome.new_comments = publisher
            .post_review(
                &head,
                &findings,
                &commentable,
                config.max_inline_comments,
                &threads,
                look_at_reviews,
            )
            .await?;
        outcome.resolved = publisher.resolve_gone(&findings, &threads).await?;
        Ok(outcome)
    }

    /// Drops the findings whose code the pull request moved rather than wrote ([`crate::analysis::moved`]): the
    /// base version of the files whose removed lines hold a finding's first line is read (one batched request)
    /// and analysed on those lines. Returns how many were dropped; when the old side cannot be read or analysed,
    /// every finding stays.
    #[allow(clippy::too_many_arguments)]
    async fn drop_moved(
        &self,
        t: &AuditTarget,
        base_sha: &str,
        olds: &[OldFile],
        head_texts: &HashMap<String, String>,
        (old_engine, old_ctx): (Engine, RepoContext),
        job: Option<i64>,
        findings: &mut Vec<Finding>,
    ) -> usize {
        let wanted: Vec<(String, String)> = olds
            .iter()
            .map(|(p, _)| (base_sha.to_string(), p.clone()))
            .collect();
        let blobs = match self.fetch_blobs(t, &wanted).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(repo = %t.repo, error = %e, "old side not read: findings of moved code are kept");
                return 0;
            }
        };
        let old_texts: Vec<String> = wanted
            .iter()
            .map(|k| {
                blobs
                    .get(k)
                    .cloned()
                    .flatten()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default()
            })
            .collect();
        let head_text = |p: &str| head_texts.get(p).map(String::as_str);
        let picked = moved::candidates_of(findings, head_text, olds, &old_texts);
        if picked.is_empty() {
            return 0;
        }
        let inputs: Vec<crate::sandbox::AnalysisFile> = picked
            .iter()
            .map(|&i| {
                (
                    olds[i].0.clone(),
                    old_texts[i].clone().into_bytes(),
                    Some(olds[i].1.clone()),
                )
            })
            .collect();
        let outcomes = match self.runner.analyze(old_engine, inputs, old_ctx, job).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(repo = %t.repo, error = %e, "old side not analysed: findings of moved code are kept");
                return 0;
            }
        };
        let before: Vec<(Finding, &str)> = outcomes
            .into_iter()
            .zip(&picked)
            .flat_map(|(o, &i)| {
                let text = old_texts[i].as_str();
                o.findings.into_iter().map(move |f| (f, text))
            })
            .collect();
        moved::drop_moved(findings, head_text, &before)
    }

    /// The publishing half of this audit (see [`Publisher`]).
    fn publisher<'a>(&'a self, t: &'a AuditTarget) -> Publisher<'a> {
        Publisher {
            gh: &self.gh,
            store: Some(self.store.as_ref()),
            installation: t.installation,
            repo: &t.repo,
            pr_number: t.pr_number,
        }
    }

    async fn start_check(&self, t: &AuditTarget, head: &str) -> Result<i64, ReviewError> {
        self.publisher(t).start_check(head, t.explicit).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish_check(
        &self,
        t: &AuditTarget,
        head: &str,
        id: i64,
        conclusion: &str,
        title: &str,
        summary: &str,
        findings: &[&Finding],
    ) -> Result<(), ReviewError> {
        self.publisher(t)
            .finish_check(head, id, conclusion, title, summary, findings)
            .await
    }

    /// Mark the head's check run failed after the last attempt, with a message saying what happened. A run
    /// already completed (the audit finished, and what failed came after, e.g. posting the review) keeps its
    /// result: it is never overwritten with "could not be completed".
    pub async fn fail_check(
        &self,
        t: &AuditTarget,
        head: &str,
        error: &str,
    ) -> Result<(), ReviewError> {
        let pending = self
            .store
            .check_run(&t.repo, &explicit_key(head))
            .await?
            .filter(|id| *id > 0);
        let known = match pending {
            Some(id) => Some(id),
            None => self.store.check_run(&t.repo, head).await?,
        };
        let id = match known {
            Some(id) => {
                let runs = self
                    .gh
                    .list_check_runs(t.installation, &t.repo, head, CHECK_NAME)
                    .await?;
                if runs
                    .iter()
                    .any(|r| r["id"].as_i64() == Some(id) && r["status"] == "completed")
                {
                    tracing::warn!(
                        check_run = id,
                        error,
                        "the audit's check run is complete; leaving its result as it is"
                    );
                    return Ok(());
                }
                id
            }
            None => self.new_check_run(t, head).await?,
        };
        let summary = format!(
            "prodaudit could not finish this audit after several attempts:\n\n> {}\n\nPress **Re-run** (or comment `/audit`) to try again.",
            error.replace('\n', " ")
        );
        self.finish_check(
            t,
            head,
            id,
            "failure",
            "The audit could not be completed",
            &markdown::truncate(summary, markdown::MAX_SUMMARY),
            &[],
        )
        .await
    }

    async fn new_check_run(&self, t: &AuditTarget, head: &str) -> Result<i64, ReviewError> {
        self.publisher(t).new_check_run(head).await
    }

    /// Complete the head's check run as neutral when the pull request cannot be audited at all (e.g. its
    /// audit stopped the worker on every attempt): "this pull request could not be audited: <reason>".
    pub async fn abandon_check(
        &self,
        t: &AuditTarget,
        head: &str,
        reason: &str,
    ) -> Result<(), ReviewError> {
        let id = match self.store.check_run(&t.repo, head).await? {
            Some(id) => id,
            None => self.new_check_run(t, head).await?,
        };
        let summary = format!(
            "This pull request could not be audited: {}.\n\nPress **Re-run** (or comment `/audit`) to try again.",
            reason.replace('\n', " ").trim_end_matches('.')
        );
        self.finish_check(
            t,
            head,
            id,
            "neutral",
            "This pull request could not be audited",
            &markdown::truncate(summary, markdown::MAX_SUMMARY),
            &[],
        )
        .await
    }

    /// Head versions of files in one (or a few) GraphQL requests: `(rev, path) → bytes` (`None`: absent,
    /// binary or too large). Text GraphQL leaves out is fetched over REST.
    pub(super) async fn fetch_blobs(
        &self,
        t: &AuditTarget,
        wanted: &[(String, String)],
    ) -> Result<BTreeMap<(String, String), Option<Vec<u8>>>, ReviewError> {
        Ok(self.fetch_blobs_and_threads(t, wanted, false).await?.0)
    }

    /// [`Reviewer::fetch_blobs`], with the pull request's review threads in the first request when asked.
    async fn fetch_blobs_and_threads(
        &self,
        t: &AuditTarget,
        wanted: &[(String, String)],
        with_threads: bool,
    ) -> Result<Blobs, ReviewError> {
        let (owner, name) = split(&t.repo);
        let mut out = BTreeMap::new();
        let mut threads = None;
        let mut batches: Vec<&[(String, String)]> = wanted.chunks(GRAPHQL_BATCH).collect();
        if batches.is_empty() && with_threads {
            batches.push(&[]);
        }
        for batch in batches {
            let mut decl = String::from("$owner:String!,$name:String!");
            let mut fields = String::new();
            let mut vars = serde_json::Map::new();
            vars.insert("owner".into(), owner.into());
            vars.insert("name".into(), name.into());
            if with_threads && threads.is_none() {
                decl.push_str(",$number:Int!");
                fields.push_str(&format!(
                    "pullRequest(number:$number){{state headRefOid {}}} ",
                    super::api::THREADS_FIELDS
                ));
                vars.insert("number".into(), t.pr_number.into());
            }
            for (i, (rev, path)) in batch.iter().enumerate() {
                decl.push_str(&format!(",$e{i}:String!"));
                fields.push_str(&format!(
                    "f{i}:object(expression:$e{i}){{... on Blob{{text isBinary byteSize}}}} "
                ));
                vars.insert(format!("e{i}"), format!("{rev}:{path}").into());
            }
            let query = format!("query({decl}){{repository(owner:$owner,name:$name){{{fields}}}}}");
            let data = self
                .gh
                .graphql_query(t.installation, &query, Value::Object(vars))
                .await?;
            if with_threads && threads.is_none() {
                let pr = &data["repository"]["pullRequest"];
                threads = Some(PullNow {
                    state: pr["state"].as_str().map(str::to_string),
                    head: pr["headRefOid"].as_str().map(str::to_string),
                    threads: super::api::parse_threads(&pr["reviewThreads"]),
                });
            }
            for (i, (rev, path)) in batch.iter().enumerate() {
                let blob = &data["repository"][format!("f{i}")];
                let bytes = if blob.is_null() || blob["isBinary"] == true {
                    None
                } else if let Some(text) = blob["text"].as_str() {
                    Some(text.as_bytes().to_vec())
                } else if blob["byteSize"]
                    .as_u64()
                    .is_some_and(|n| n <= MAX_FILE_BYTES)
                {
                    self.gh.get_file(t.installation, &t.repo, path, rev).await?
                } else {
                    None
                };
                out.insert((rev.clone(), path.clone()), bytes);
            }
        }
        Ok((out, threads))
    }
}

/// The publishing half of an audit, shared by the App and the Action: the check run (started, then completed
/// with its summary and annotations), one review with the findings not commented before (inline where GitHub
/// accepts a comment, the rest in its body; fingerprints in hidden markers), and the resolution of our threads
/// whose finding is gone.
///
/// Its memory of what was published is GitHub's own (review threads and review bodies carry the fingerprint
/// markers), plus the App's job store when there is one: the check run of a head and the fingerprints posted.
/// The Action has no store: it finds the head's check run by name.
pub struct Publisher<'a> {
    pub gh: &'a GitHub,
    /// The App's store; `None` for the Action.
    pub store: Option<&'a dyn JobStore>,
    /// The installation the calls are made as (ignored by a client with a plain token).
    pub installation: i64,
    pub repo: &'a str,
    pub pr_number: i64,
}

impl Publisher<'_> {
    /// The check run of this audit, in progress. An audit a person asked for (`/audit`, Re-run) starts a new
    /// run, as GitHub's own Re-run does (the old one stays as history), unless an earlier attempt of it
    /// created one that was not completed: that one is reused, so a retry never makes duplicates. Other
    /// audits reuse the head's run (a redelivery, a retry; for the Action, a second run on the same head).
    pub async fn start_check(&self, head: &str, explicit: bool) -> Result<i64, ReviewError> {
        let body = json!({
            "name": CHECK_NAME,
            "head_sha": head,
            "status": "in_progress",
            "started_at": chrono::Utc::now().to_rfc3339(),
            "output": {"title": "Auditing…", "summary": "prodaudit is reviewing the changed lines."},
        });
        let reuse = match (self.store, explicit) {
            (Some(store), true) => store
                .check_run(self.repo, &explicit_key(head))
                .await?
                .filter(|id| *id > 0),
            (Some(store), false) => store.check_run(self.repo, head).await?,
            (None, true) => None,
            // Without a store, GitHub says which run the head has (newest first).
            (None, false) => self
                .gh
                .list_check_runs(self.installation, self.repo, head, CHECK_NAME)
                .await?
                .first()
                .and_then(|r| r["id"].as_i64()),
        };
        if let Some(id) = reuse {
            let update = json!({"status": "in_progress", "output": body["output"]});
            self.gh
                .update_check_run(self.installation, self.repo, id, &update)
                .await?;
            return Ok(id);
        }
        let id = self
            .gh
            .create_check_run(self.installation, self.repo, &body)
            .await?;
        if let Some(store) = self.store {
            if explicit {
                // Pending until completed (see finish_check): a retry of this audit finds it.
                store
                    .set_check_run(self.repo, &explicit_key(head), id)
                    .await?;
            }
            store.set_check_run(self.repo, head, id).await?;
        }
        Ok(id)
    }

    /// Complete the check run; annotations go 50 per request (GitHub's limit; later requests append).
    pub async fn finish_check(
        &self,
        head: &str,
        id: i64,
        conclusion: &str,
        title: &str,
        summary: &str,
        findings: &[&Finding],
    ) -> Result<(), ReviewError> {
        let annotations: Vec<Value> = findings.iter().map(|f| markdown::annotation(f)).collect();
        let mut chunks = annotations.chunks(50);
        let first: Vec<Value> = chunks.next().map(<[Value]>::to_vec).unwrap_or_default();
        let body = json!({
            "status": "completed",
            "conclusion": conclusion,
            "completed_at": chrono::Utc::now().to_rfc3339(),
            "output": {"title": title, "summary": summary, "annotations": first},
            "actions": [{"label": "Re-audit", "description": "Audit this pull request again", "identifier": "reaudit"}],
        });
        self.gh
            .update_check_run(self.installation, self.repo, id, &body)
            .await?;
        for chunk in chunks {
            let more =
                json!({"output": {"title": title, "summary": summary, "annotations": chunk}});
            self.gh
                .update_check_run(self.installation, self.repo, id, &more)
                .await?;
        }
        // This head's explicit run (if it was this one) is done: the next `/audit` starts a new one.
        if let Some(store) = self.store
            && store.check_run(self.repo, &explicit_key(head)).await? == Some(id)
        {
            store
                .set_check_run(self.repo, &explicit_key(head), 0)
                .await?;
        }
        Ok(())
    }

    /// Create the head's check run in progress and remember it (for an outcome reported without an audit).
    pub async fn new_check_run(&self, head: &str) -> Result<i64, ReviewError> {
        let body = json!({"name": CHECK_NAME, "head_sha": head, "status": "in_progress"});
        let id = self
            .gh
            .create_check_run(self.installation, self.repo, &body)
            .await?;
        if let Some(store) = self.store {
            store.set_check_run(self.repo, head, id).await?;
        }
        Ok(id)
    }

    /// One review with the findings not commented before: inline where the line is in the diff
    /// (`commentable`, at most `max_inline`), the rest listed in its body. Fingerprints already in a thread,
    /// in the store, or (with `look_at_reviews`, or always without a store) in an earlier review's body are
    /// not posted again. Returns how many findings the review shows; nothing is posted when none is new.
    pub async fn post_review(
        &self,
        head: &str,
        findings: &[Finding],
        commentable: &BTreeMap<&str, &LineSet>,
        max_inline: usize,
        threads: &[ReviewThread],
        look_at_reviews: bool,
    ) -> Result<usize, ReviewError> {
        let gh = self.gh;
        let mut already: HashSet<String> = match self.store {
            Some(store) => store
                .posted_comments(self.repo, self.pr_number)
                .await?
                .into_iter()
                .map(|(fp, _)| fp)
                .collect(),
            None => HashSet::new(),
        };
        for th in threads {
            for (_, _, body) in &th.comments {
                already.extend(markdown::markers_in(body));
            }
        }
        // Findings listed in a review's body (not inline) are only there: read the reviews when they may
        // hold some, and only when there is something to post.
        if (look_at_reviews || self.store.is_none())
            && findings.iter().any(|f| !already.contains(&f.fingerprint))
        {
            for r in gh
                .list_reviews(self.installation, self.repo, self.pr_number)
                .await?
            {
                if let Some(body) = &r.body {
                    already.extend(markdown::markers_in(body));
                }
            }
        }
        let new: Vec<&Finding> = findings
            .iter()
            .filter(|f| !already.contains(&f.fingerprint))
            .collect();
        if new.is_empty() {
            return Ok(0);
        }
        let mut inline: Vec<&Finding> = Vec::new();
        let mut overflow: Vec<&Finding> = Vec::new();
        for f in &new {
            let ok = commentable
                .get(f.path.as_str())
                .is_some_and(|c| c.contains(f.line));
            if ok && inline.len() < max_inline {
                inline.push(f);
            } else {
                overflow.push(f);
            }
        }
        let comments: Vec<NewComment> = inline
            .iter()
            .map(|f| NewComment {
                path: f.path.clone(),
                line: f.line,
                side: "RIGHT",
                body: markdown::comment_body(f),
            })
            .collect();
        let (body, listed) = markdown::review_body(inline.len(), &overflow);
        // What this review shows (findings it leaves out are posted by a later audit).
        let mut posted: Vec<&Finding> = inline.clone();
        posted.extend(overflow.iter().take(listed).copied());
        let (inst, repo, pr) = (self.installation, self.repo, self.pr_number);
        match gh
            .create_review(inst, repo, pr, head, &body, &comments)
            .await
        {
            Ok(_) => {}
            Err(e) if e.status() == Some(422) => {
                // GitHub refused a comment's position: never lose the audit, put everything in the body.
                tracing::warn!(error = %e, "review refused; posting all findings in the review body");
                let (body, listed) = markdown::review_body(0, &new);
                gh.create_review(inst, repo, pr, head, &body, &[]).await?;
                posted = new.iter().take(listed).copied().collect();
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(store) = self.store {
            let recorded: Vec<(String, i64)> =
                posted.iter().map(|f| (f.fingerprint.clone(), 0)).collect();
            store.record_comments(repo, pr, &recorded).await?;
        }
        Ok(posted.len())
    }

    /// Resolve our threads whose finding is gone, unless a person replied. Returns how many.
    pub async fn resolve_gone(
        &self,
        findings: &[Finding],
        threads: &[ReviewThread],
    ) -> Result<usize, ReviewError> {
        let current: HashSet<&str> = findings.iter().map(|f| f.fingerprint.as_str()).collect();
        let mut resolved = 0;
        for th in threads.iter().filter(|th| !th.resolved) {
            let Some((_, _, first)) = th.comments.first() else {
                continue;
            };
            let fps = markdown::markers_in(first);
            if fps.is_empty() || fps.iter().any(|fp| current.contains(fp.as_str())) {
                continue;
            }
            let replied = th
                .comments
                .iter()
                .skip(1)
                .any(|(_, _, body)| markdown::markers_in(body).is_empty());
            if replied {
                continue;
            }
            self.gh.resolve_thread(self.installation, &th.id).await?;
            if let Some(store) = self.store {
                for fp in fps {
                    store.forget_comment(self.repo, self.pr_number, &fp).await?;
                }
            }
            resolved += 1;
        }
        Ok(resolved)
    }
}

/// Why a pull request is not audited at `head` although it was asked for (the App and the Action): it is
/// closed (`state` as GraphQL says it: OPEN, CLOSED, MERGED), or its head moved on to `now`. The check run's
/// title, and the reason.
pub fn not_auditable(
    state: Option<&str>,
    now: Option<&str>,
    head: &str,
) -> Option<(&'static str, String)> {
    match (state, now) {
        (Some(state), _) if !state.eq_ignore_ascii_case("open") => Some((
            "Pull request closed: not audited",
            "pull request is closed".to_string(),
        )),
        (_, Some(now)) if now != head => Some((
            "Superseded: a newer push is audited",
            format!("head moved on from {head} to {now}; the newer push is audited"),
        )),
        _ => None,
    }
}

/// Only people with write, maintain or admin permission may run slash commands (the App and the Action).
/// `Ok(None)`: allowed; `Ok(Some(reply))`: refused, with the reply to post.
pub async fn command_refusal(
    gh: &GitHub,
    installation: i64,
    repo: &str,
    user: &str,
) -> Result<Option<String>, GitHubError> {
    let permission = gh.collaborator_permission(installation, repo, user).await?;
    if matches!(permission.as_str(), "admin" | "maintain" | "write") {
        return Ok(None);
    }
    Ok(Some(format!(
        "@{user} only people with write access to this repository can run prodaudit commands (you have `{permission}`)."
    )))
}

/// The store's key for the check run of an explicit re-audit of `head` still in progress (0: none).
fn explicit_key(head: &str) -> String {
    format!("{head}/explicit")
}

/// Blobs by (rev, path), and the review threads when they were asked for.
type Blobs = (BTreeMap<(String, String), Option<Vec<u8>>>, Option<PullNow>);

/// The pull request as GraphQL reports it now.
#[derive(Debug, Default)]
struct PullNow {
    /// OPEN, CLOSED or MERGED.
    state: Option<String>,
    /// The head commit now.
    head: Option<String>,
    threads: Vec<super::api::ReviewThread>,
}

/// Could a check that reads files beyond its own find anything in these inputs? Only if one of its tokens
/// is in a file it analyses (a check's tokens are necessary for a match): otherwise the tree listing and
/// the extra contents are not fetched.
fn context_may_matter(rules: &RuleSet, inputs: &[(String, Vec<u8>, Option<LineSet>)]) -> bool {
    let mut tokens: Vec<&'static str> = Vec::new();
    for d in &rules.detectors {
        if let crate::analysis::rules::Matcher::Check(c) = &d.matcher
            && !c.needs().is_empty()
        {
            if c.tokens().is_empty() {
                return true;
            }
            tokens.extend(c.tokens());
        }
    }
    if tokens.is_empty() {
        return false;
    }
    match aho_corasick::AhoCorasick::new(&tokens) {
        Ok(ac) => inputs.iter().any(|(_, bytes, _)| ac.is_match(bytes)),
        Err(_) => true,
    }
}

/// Which files of the pull request to read, with their changed and commentable lines from the patch; and the
/// files skipped with the reason.
/// Also the files it removed lines from, by their base path, with the lines of their patch (removed files
/// included).
fn changed_files(files: &[PrFile]) -> (Vec<ChangedFile>, Vec<(String, String)>, Vec<OldFile>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut olds = Vec::new();
    for f in files {
        let old_path = f.previous_filename.as_ref().unwrap_or(&f.filename);
        if f.status != "added"
            && let Some(Ok(hunks)) = f.patch.as_deref().map(diff::parse_patch)
            && matches!(
                crate::analysis::plan::path_policy(old_path),
                crate::analysis::plan::PathPolicy::Analyse
            )
        {
            let deleted: LineSet = hunks
                .iter()
                .flat_map(|h| h.deleted.iter().copied())
                .collect();
            if !deleted.is_empty() {
                olds.push((old_path.clone(), deleted));
            }
        }
        if f.status == "removed" {
            continue;
        }
        let path = f.filename.clone();
        match crate::analysis::plan::path_policy(&path) {
            crate::analysis::plan::PathPolicy::Analyse => {}
            crate::analysis::plan::PathPolicy::Ignore => continue,
            crate::analysis::plan::PathPolicy::Skip(why) => {
                skipped.push((path, why.to_string()));
                continue;
            }
        }
        let (added, commentable) = match &f.patch {
            Some(p) => match diff::parse_patch(p) {
                Ok(hunks) => {
                    let mut added = LineSet::new();
                    let mut commentable = LineSet::new();
                    for h in &hunks {
                        for &l in &h.added {
                            added.insert(l);
                        }
                        if h.new_lines > 0 {
                            commentable.insert_range(h.new_start, h.new_start + h.new_lines - 1);
                        }
                    }
                    (added, commentable)
                }
                Err(e) => {
                    skipped.push((path, format!("unreadable patch ({e})")));
                    continue;
                }
            },
            None => (LineSet::new(), LineSet::new()),
        };
        if f.patch.is_some() && added.is_empty() {
            continue;
        }
        out.push(ChangedFile {
            path,
            previous: f.previous_filename.clone(),
            patch: f.patch.clone(),
            added,
            commentable,
        });
    }
    (out, skipped, olds)
}

pub use crate::analysis::plan::is_vendored;
