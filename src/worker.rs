//! Runs jobs from the durable queue: bounded concurrency, per-installation fairness (the queue's claim), a
//! lease kept alive while a job runs, a time limit per job, transient failures retried with backoff and
//! jitter, and a clear failed check run after the last attempt.

use crate::github::GitHub;
use crate::github::events::Command;
use crate::github::review::{AuditTarget, Reviewer};
use crate::queue::{Claimed, Job, JobStore, backoff};
use crate::report::markdown;
use crate::server::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore, watch};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub id: String,
    pub concurrency: usize,
    pub per_installation: usize,
    pub job_timeout: Duration,
    pub max_attempts: u32,
    pub lease: Duration,
    pub poll: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl WorkerOptions {
    pub fn new(
        id: String,
        concurrency: usize,
        per_installation: usize,
        job_timeout: Duration,
        max_attempts: u32,
    ) -> Self {
        WorkerOptions {
            id,
            concurrency,
            per_installation,
            job_timeout,
            max_attempts,
            // The lease outlives the job's time limit, and is renewed while the job runs.
            lease: Duration::from_secs(60),
            poll: Duration::from_millis(500),
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
        }
    }
}

pub struct Worker {
    pub store: Arc<dyn JobStore>,
    pub reviewer: Arc<Reviewer>,
    pub gh: Arc<GitHub>,
    pub metrics: Arc<Metrics>,
    pub opts: WorkerOptions,
    /// Woken by intake when a job is stored, so idle workers need not wait for the next poll.
    pub wake: Arc<Notify>,
}

/// Why a job failed.
struct JobFailure {
    message: String,
    transient: bool,
    retry_after: Option<Duration>,
    /// Gone (404): drop without retrying or reporting.
    gone: bool,
    /// The audit itself could not run (analysis crashed, hit its memory limit, or the job its time
    /// limit): after the last attempt the check run is completed neutral, "could not be audited".
    stopped: bool,
}

/// Jobs running in this process (job id → how many runs of it, normally one), for the panic hook.
static RUNNING: std::sync::Mutex<std::collections::BTreeMap<i64, u32>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// The ids of the jobs this process is running now.
pub fn running_jobs() -> Vec<i64> {
    RUNNING
        .lock()
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default()
}

/// Registers a running job until dropped (also while a panic unwinds, after the hook has named it).
struct RunningGuard(i64);

impl RunningGuard {
    fn new(id: i64) -> Self {
        if let Ok(mut m) = RUNNING.lock() {
            *m.entry(id).or_default() += 1;
        }
        RunningGuard(id)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Ok(mut m) = RUNNING.lock()
            && let Some(n) = m.get_mut(&self.0)
        {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.0);
            }
        }
    }
}

/// Makes a panic anywhere in the process leave one JSON line on stderr naming the jobs running (`serve`
/// installs it; its logs are JSON too). A panic in a job's task fails that attempt only (the task ends, the
/// lease expires, the attempt was counted at its claim).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let (message, location) = crate::sandbox::panic_fields(info);
        let line = serde_json::json!({
            "timestamp": chrono::Utc::now().to_rfc3339(),
            "level": "ERROR",
            "message": "panic",
            "panic": message,
            "location": location,
            "thread": std::thread::current().name().unwrap_or("unnamed"),
            "running_jobs": running_jobs(),
        });
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{line}");
    }));
}

impl Worker {
    /// Claim and run jobs until `shutdown` turns true; then wait for running jobs up to `grace` and put
    /// unfinished ones back in the queue.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>, grace: Duration) {
        let slots = Arc::new(Semaphore::new(self.opts.concurrency));
        loop {
            if *shutdown.borrow() {
                break;
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                _ = shutdown.changed() => break,
            };
            let claimed = self
                .store
                .claim_within(
                    &self.opts.id,
                    self.opts.lease,
                    self.opts.per_installation,
                    self.opts.max_attempts,
                )
                .await;
            match claimed {
                Ok(Some(Claimed::Run(job))) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.run_job(job).await;
                        drop(permit);
                    });
                }
                Ok(Some(Claimed::Exhausted(job))) => {
                    // Given up by the claim (dead): its earlier attempts stopped the worker. Report, never run.
                    let me = self.clone();
                    tokio::spawn(async move {
                        me.report_exhausted(job).await;
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.opts.poll) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "cannot claim a job; retrying");
                    tokio::time::sleep(self.opts.poll * 4).await;
                }
            }
            if let Ok(d) = self.store.depth().await {
                self.metrics.queue_queued.set(d.queued as i64);
                self.metrics.queue_running.set(d.running as i64);
                self.metrics.queue_dead.set(d.dead as i64);
            }
        }
        // Drain: running jobs finish within the grace period; the rest go back to the queue for any replica.
        let deadline = Instant::now() + grace;
        while slots.available_permits() < self.opts.concurrency && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match self.store.requeue_running(&self.opts.id).await {
            Ok(n) if n > 0 => {
                tracing::warn!(jobs = n, "shutdown: unfinished jobs returned to the queue")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "shutdown: cannot requeue running jobs; their leases will expire")
            }
        }
    }

    async fn run_job(&self, job: Job) {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "job",
            job = job.id,
            delivery = %job.delivery_id,
            repo = %job.repo,
            pr = job.pr_number.unwrap_or_default(),
            installation = job.installation_id,
        );
        self.run_job_in_span(job).instrument(span).await;
    }

    /// A job the claim gave up: complete its check run (neutral, with the reason); no review is posted.
    async fn report_exhausted(&self, job: Job) {
        let reason = job
            .last_error
            .clone()
            .unwrap_or_else(|| crate::queue::exhausted_reason(job.attempts, None));
        tracing::error!(
            job = job.id,
            repo = %job.repo,
            pr = job.pr_number.unwrap_or_default(),
            attempts = job.attempts,
            error = %reason,
            "job given up: its attempts stopped the worker"
        );
        self.abandon(&job, &reason).await;
        self.metrics
            .audits
            .get_or_create(&vec![("outcome", "dead".to_string())])
            .inc();
    }

    /// Completes the check run of the job's head as neutral, "could not be audited: <reason>".
    async fn abandon(&self, job: &Job, reason: &str) {
        let Some(target) = target_of(job) else {
            return;
        };
        let head = match job.head_sha.clone() {
            Some(head) => head,
            None => match self
                .gh
                .get_pull(job.installation_id, &job.repo, target.pr_number)
                .await
            {
                Ok(pull) => pull.head.sha,
                Err(e) => {
                    tracing::error!(job = job.id, error = %e, "cannot find the head to complete its check run");
                    return;
                }
            },
        };
        if let Err(e) = self.reviewer.abandon_check(&target, &head, reason).await {
            tracing::error!(job = job.id, error = %e, "cannot complete the check run");
        }
    }

    async fn run_job_in_span(&self, job: Job) {
        let _running = RunningGuard::new(job.id);
        // Said before the audit runs, so that a crash can be tied to its job.
        tracing::info!(
            job = job.id,
            repo = %job.repo,
            pr = job.pr_number.unwrap_or_default(),
            head = job.head_sha.as_deref().unwrap_or_default(),
            attempt = job.attempts,
            max_attempts = self.opts.max_attempts,
            "job started"
        );
        let started = Instant::now();
        // Keep the lease while the job runs.
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let heartbeat = {
            let store = self.store.clone();
            let (id, worker, lease) = (job.id, self.opts.id.clone(), self.opts.lease);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(lease / 3) => {}
                        _ = stop_rx.changed() => break,
                    }
                    match store.extend_lease(id, &worker, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::warn!("lease lost: another worker took the job over");
                            break;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot extend the lease"),
                    }
                }
            })
        };
        let result = match tokio::time::timeout(self.opts.job_timeout, self.execute(&job)).await {
            Ok(r) => r,
            // Dropping the audit kills its analysis process, if one runs.
            Err(_) => Err(JobFailure {
                message: format!("the audit took longer than {:?}", self.opts.job_timeout),
                transient: true,
                retry_after: None,
                gone: false,
                stopped: true,
            }),
        };
        let _ = stop_tx.send(true);
        let _ = heartbeat.await;
        self.metrics
            .audit_seconds
            .observe(started.elapsed().as_secs_f64());
        let (id, worker) = (job.id, self.opts.id.as_str());
        let outcome = match result {
            Ok(()) => {
                tracing::info!(ms = started.elapsed().as_millis() as u64, "job done");
                self.store.complete(id, worker).await.map(|_| "done")
            }
            Err(f) if f.gone => {
                tracing::warn!(error = %f.message, "pull request or repository is gone; job dropped");
                self.store
                    .give_up(id, worker, &f.message)
                    .await
                    .map(|_| "gone")
            }
            Err(f) if f.transient && job.attempts < self.opts.max_attempts => {
                let wait = f.retry_after.unwrap_or_else(|| {
                    backoff(job.attempts, self.opts.backoff_base, self.opts.backoff_max)
                });
                let run_after =
                    chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                tracing::warn!(error = %f.message, attempt = job.attempts, wait_s = wait.as_secs(), "job failed; retrying");
                self.store
                    .retry(id, worker, &f.message, run_after)
                    .await
                    .map(|_| "retry")
            }
            Err(f) if f.stopped => {
                tracing::error!(error = %f.message, attempt = job.attempts, "job failed for good");
                let reason = format!(
                    "{} (attempt {} of {})",
                    f.message, job.attempts, self.opts.max_attempts
                );
                self.abandon(&job, &reason).await;
                self.store
                    .give_up(id, worker, &reason)
                    .await
                    .map(|_| "dead")
            }
            Err(f) => {
                tracing::error!(error = %f.message, attempt = job.attempts, "job failed for good");
                if let Some(target) = target_of(&job)
                    && let Some(head) = job.head_sha.clone()
                    && let Err(e) = self.reviewer.fail_check(&target, &head, &f.message).await
                {
                    tracing::error!(error = %e, "cannot mark the check run failed");
                }
                self.store
                    .give_up(id, worker, &f.message)
                    .await
                    .map(|_| "dead")
            }
        };
        match outcome {
            Ok(label) => self
                .metrics
                .audits
                .get_or_create(&vec![("outcome", label.to_string())])
                .inc(),
            Err(e) => {
                tracing::error!(error = %e, "cannot record the job's outcome");
                0
            }
        };
    }

    async fn execute(&self, job: &Job) -> Result<(), JobFailure> {
        let kind = job.payload["kind"].as_str().unwrap_or("audit");
        match kind {
            "command" => self.command(job).await,
            "rerun" => {
                let mut prs: Vec<i64> = job.payload["pr_numbers"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_i64()).collect())
                    .unwrap_or_default();
                if prs.is_empty()
                    && let Some(head) = &job.head_sha
                {
                    // Re-runs from fork pushes arrive without pull requests: ask which ones have this head.
                    prs = self
                        .gh
                        .pulls_for_commit(job.installation_id, &job.repo, head)
                        .await
                        .map_err(fail)?;
                }
                for pr in prs {
                    let t = AuditTarget {
                        installation: job.installation_id,
                        repo: job.repo.clone(),
                        pr_number: pr,
                        head_sha: job.head_sha.clone(),
                        known: None,
                        full: false,
                        explicit: true,
                    };
                    self.reviewer
                        .audit(&t, Some(job))
                        .await
                        .map_err(fail_review)?;
                }
                Ok(())
            }
            _ => {
                let Some(t) = target_of(job) else {
                    return Err(JobFailure {
                        message: "job without a pull request".into(),
                        transient: false,
                        retry_after: None,
                        gone: false,
                        stopped: false,
                    });
                };
                let out = self
                    .reviewer
                    .audit(&t, Some(job))
                    .await
                    .map_err(fail_review)?;
                tracing::info!(findings = out.findings, new_comments = out.new_comments, resolved = out.resolved, conclusion = %out.conclusion, skipped = ?out.skipped, "audited");
                Ok(())
            }
        }
    }

    /// A slash command: only users with write, maintain or admin permission may run it.
    async fn command(&self, job: &Job) -> Result<(), JobFailure> {
        let (inst, repo) = (job.installation_id, job.repo.as_str());
        let Some(pr) = job.pr_number else {
            return Ok(());
        };
        let user = job.payload["user"].as_str().unwrap_or_default();
        let comment_id = job.payload["comment_id"].as_i64().unwrap_or_default();
        let command = match job.payload["command"].as_str() {
            Some("full") => Command::Full,
            Some("help") => Command::Help,
            _ => Command::Audit,
        };
        if let Some(body) = crate::github::review::command_refusal(&self.gh, inst, repo, user)
            .await
            .map_err(fail)?
        {
            self.gh
                .create_issue_comment(inst, repo, pr, &body)
                .await
                .map_err(fail)?;
            return Ok(());
        }
        self.gh
            .add_reaction(inst, repo, comment_id, "eyes")
            .await
            .map_err(fail)?;
        if command == Command::Help {
            self.gh
                .create_issue_comment(inst, repo, pr, &markdown::help_text())
                .await
                .map_err(fail)?;
            return Ok(());
        }
        let t = AuditTarget {
            installation: inst,
            repo: repo.to_string(),
            pr_number: pr,
            head_sha: None,
            known: None,
            full: command == Command::Full,
            explicit: true,
        };
        self.reviewer.audit(&t, None).await.map_err(fail_review)?;
        Ok(())
    }
}

fn target_of(job: &Job) -> Option<AuditTarget> {
    Some(AuditTarget {
        installation: job.installation_id,
        repo: job.repo.clone(),
        pr_number: job.pr_number?,
        head_sha: job.head_sha.clone(),
        // A pull_request webhook said what the pull request looks like: no need to ask GitHub again.
        known: job
            .payload
            .get("base_sha")
            .and_then(serde_json::Value::as_str)
            .filter(|_| job.head_sha.is_some())
            .map(|base| crate::github::review::KnownPull {
                base_sha: base.to_string(),
                draft: job.payload["draft"].as_bool().unwrap_or(false),
            }),
        full: job.payload["full"].as_bool().unwrap_or(false),
        explicit: false,
    })
}

fn fail(e: crate::github::GitHubError) -> JobFailure {
    JobFailure {
        gone: e.status() == Some(404),
        transient: e.is_transient(),
        retry_after: e.retry_after(),
        message: e.to_string(),
        stopped: false,
    }
}

fn fail_review(e: crate::github::review::ReviewError) -> JobFailure {
    match e {
        crate::github::review::ReviewError::GitHub(g) => fail(g),
        other => JobFailure {
            transient: other.is_transient(),
            retry_after: None,
            gone: false,
            stopped: matches!(
                other,
                crate::github::review::ReviewError::AnalysisStopped(_)
            ),
            message: other.to_string(),
        },
    }
}
