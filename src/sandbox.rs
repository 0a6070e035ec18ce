//! Where the App runs the analysis of an audit: in this process (the CLI, library tests) or in a child
//! process (`prodaudit serve`).
//!
//! The child is the same binary started as `prodaudit __analyze` (a hidden subcommand): it caps its own
//! memory (`RLIMIT_DATA`), reads the files, changed lines, repository context and configuration overrides
//! from stdin, and writes what it found as JSON to stdout. A stack overflow, an allocation past the limit or
//! a panic in the analysis then ends the child, not the server, and the job's time limit really stops the
//! analysis: the child is killed (SIGKILL) when the audit's future is dropped at the deadline. Why a child
//! and not a guarded thread: a thread cannot be stopped from outside (a timed-out `spawn_blocking` runs on
//! and keeps its memory), a stack overflow or a failed allocation aborts the whole process whatever thread
//! it happens on, and a memory limit can only be set per process.
//!
//! Wire format (stdin): one line of JSON ([`Request`]), then the bytes of each file, back to back, in the
//! order and of the lengths the JSON gives. Stdout: one JSON array of [`FileResult`], one per file.

use crate::analysis::semantic::reach::Reach;
use crate::analysis::{Engine, FileOutcome, Overrides, RepoContext, RuleSet};
use crate::diff::LineSet;
use crate::report::{Finding, Severity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The hidden subcommand the child runs.
pub const SUBCOMMAND: &str = "__analyze";
/// Default memory limit of an analysis child (ANALYSIS_MEMORY_MIB).
pub const DEFAULT_MEMORY_MIB: u64 = 2048;
/// Most of a child's stderr kept to explain its death.
const STDERR_KEPT: u64 = 64 * 1024;

/// One file to analyse: path, bytes at the head, and the lines to report on (`None`: every line).
pub type AnalysisFile = (String, Vec<u8>, Option<LineSet>);

/// How the analysis of an audit runs.
#[derive(Debug, Clone, Default)]
pub enum AnalysisRunner {
    /// On this process's blocking threads (no isolation: for the CLI and tests without a binary).
    #[default]
    InProcess,
    /// In a child process per audit.
    Child(ChildRunner),
}

/// Settings of the analysis child.
#[derive(Debug, Clone)]
pub struct ChildRunner {
    /// The `prodaudit` binary (`std::env::current_exe()` in `serve`).
    pub exe: PathBuf,
    /// Rule folders given to `serve --rules`, loaded again by the child.
    pub rule_dirs: Vec<PathBuf>,
    /// The child's memory limit (its data segment and private writable mappings), MiB.
    pub memory_limit_mib: u64,
}

impl ChildRunner {
    /// The child settings of `serve`: this binary, the same rule folders, and `ANALYSIS_MEMORY_MIB` (default
    /// [`DEFAULT_MEMORY_MIB`], at least 16) read through `get`.
    pub fn for_serve(
        rule_dirs: &[PathBuf],
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<ChildRunner, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program's path to run analyses: {e}"))?;
        let memory_limit_mib = match get("ANALYSIS_MEMORY_MIB").map(|v| v.trim().to_string()) {
            None => DEFAULT_MEMORY_MIB,
            Some(v) if v.is_empty() => DEFAULT_MEMORY_MIB,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 16 => n,
                _ => {
                    return Err(format!(
                        "ANALYSIS_MEMORY_MIB={v:?} is not valid: expected a number of MiB, at least 16"
                    ));
                }
            },
        };
        Ok(ChildRunner {
            exe,
            rule_dirs: rule_dirs.to_vec(),
            memory_limit_mib,
        })
    }
}

/// Why an analysis gave no result.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the analysis process {exe}: {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("cannot talk to the analysis process: {0}")]
    Pipe(std::io::Error),
    #[error("the analysis exceeded the memory limit of {mib} MiB")]
    MemoryLimit { mib: u64 },
    #[error("the analysis overflowed its stack ({signal})")]
    StackOverflow { signal: String },
    #[error("the analysis panicked: {0}")]
    Panicked(String),
    #[error("the analysis process was killed by {signal}{detail}")]
    Signal { signal: String, detail: String },
    #[error("the analysis process exited with status {code}{detail}")]
    Exit { code: i32, detail: String },
    #[error("the analysis process answered something unreadable: {0}")]
    Protocol(String),
    #[error("the analysis task failed: {0}")]
    Task(String),
}

impl AnalysisRunner {
    /// Analyses every file with `engine` and `repo` around them; results in the order of `files`.
    /// `job` names the queue job in logs.
    pub async fn analyze(
        &self,
        engine: Engine,
        files: Vec<AnalysisFile>,
        repo: RepoContext,
        job: Option<i64>,
    ) -> Result<Vec<FileOutcome>, SandboxError> {
        match self {
            AnalysisRunner::InProcess => tokio::task::spawn_blocking(move || {
                use rayon::prelude::*;
                files
                    .par_iter()
                    .map(|(path, bytes, lines)| {
                        engine.analyze_bytes(path, bytes, lines.as_ref(), &repo)
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| SandboxError::Task(e.to_string())),
            AnalysisRunner::Child(child) => {
                if files.is_empty() {
                    return Ok(Vec::new());
                }
                let result = run_child(child, &engine, &files, &repo).await;
                if let Err(e) = &result {
                    // One JSON line (in `serve`'s JSON logs) naming the job whose analysis died.
                    tracing::error!(job = job.unwrap_or_default(), files = files.len(), error = %e, "analysis process failed");
                }
                result
            }
        }
    }
}

/// What the parent sends (before the files' bytes).
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub files: Vec<RequestFile>,
    pub changed: BTreeSet<String>,
    pub paths: Vec<String>,
    pub context_files: HashMap<String, String>,
    pub reverse_proxies: Vec<String>,
    pub disabled: HashSet<String>,
    pub severity: HashMap<String, Severity>,
    #[serde(default)]
    pub enabled: HashSet<String>,
    #[serde(default)]
    pub service_globs: Vec<String>,
    #[serde(default)]
    pub not_service_globs: Vec<String>,
    #[serde(default)]
    pub report_not_service: bool,
    #[serde(default)]
    pub tenant_columns: Vec<String>,
    pub max_file_bytes: usize,
    /// The repository model (which modules the service's entry points reach, the functions nothing calls), when
    /// the parent built one.
    #[serde(default)]
    pub reach: Option<Reach>,
}

impl Request {
    /// The repository around the files, as the parent had it (the model included), taken out of the request.
    pub fn take_repo_context(&mut self) -> RepoContext {
        RepoContext {
            changed: std::mem::take(&mut self.changed),
            paths: std::mem::take(&mut self.paths),
            files: std::mem::take(&mut self.context_files),
            reverse_proxies: std::mem::take(&mut self.reverse_proxies),
            tenant_columns: std::mem::take(&mut self.tenant_columns),
            reach: self.reach.take().map(Arc::new),
            ..Default::default()
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RequestFile {
    pub path: String,
    pub len: usize,
    /// Inclusive line ranges to report on; `None`: every line.
    pub lines: Option<Vec<(usize, usize)>>,
}

/// What the child answers per file.
#[derive(Debug, Serialize, Deserialize)]
pub struct FileResult {
    pub findings: Vec<Finding>,
    /// Each finding's code frame (`Finding::code`, which its JSON leaves out), in the same order.
    pub code: Vec<Vec<String>>,
    /// Each finding's `Finding::code_cut` (also left out of its JSON), in the same order.
    #[serde(default)]
    pub code_cut: Vec<Option<usize>>,
    pub suppressed: usize,
    /// Findings left out by the per-file cap.
    #[serde(default)]
    pub left_out: usize,
    #[serde(default)]
    pub not_service: usize,
    pub skipped: Option<String>,
}

async fn run_child(
    runner: &ChildRunner,
    engine: &Engine,
    files: &[AnalysisFile],
    repo: &RepoContext,
) -> Result<Vec<FileOutcome>, SandboxError> {
    let request = Request {
        files: files
            .iter()
            .map(|(path, bytes, lines)| RequestFile {
                path: path.clone(),
                len: bytes.len(),
                lines: lines.as_ref().map(|l| l.ranges().to_vec()),
            })
            .collect(),
        changed: repo.changed.clone(),
        paths: repo.paths.clone(),
        context_files: repo.files.clone(),
        reverse_proxies: repo.reverse_proxies.clone(),
        disabled: engine.overrides.disabled.clone(),
        severity: engine.overrides.severity.clone(),
        enabled: engine.overrides.enabled.clone(),
        service_globs: engine.overrides.service_globs.clone(),
        not_service_globs: engine.overrides.not_service_globs.clone(),
        report_not_service: engine.overrides.report_not_service,
        tenant_columns: repo.tenant_columns.clone(),
        max_file_bytes: engine.max_file_bytes,
        reach: repo.reach.as_deref().cloned(),
    };
    let mut header =
        serde_json::to_vec(&request).map_err(|e| SandboxError::Protocol(e.to_string()))?;
    header.push(b'\n');

    let mut cmd = tokio::process::Command::new(&runner.exe);
    cmd.arg(SUBCOMMAND)
        .arg("--memory-limit-mib")
        .arg(runner.memory_limit_mib.to_string());
    for dir in &runner.rule_dirs {
        cmd.arg("--rules").arg(dir);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // The job's deadline drops this future: the child must not outlive it.
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
        exe: runner.exe.display().to_string(),
        source,
    })?;
    let (Some(mut stdin), Some(mut stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(SandboxError::Protocol("the child has no pipes".into()));
    };
    let write = async {
        stdin.write_all(&header).await?;
        for (_, bytes, _) in files {
            stdin.write_all(bytes).await?;
        }
        stdin.shutdown().await?;
        drop(stdin);
        Ok::<_, std::io::Error>(())
    };
    let read_out = async {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await.map(|_| out)
    };
    let read_err = async {
        let mut err = Vec::new();
        let mut limited = stderr.take(STDERR_KEPT);
        limited.read_to_end(&mut err).await.map(|_| err)
    };
    let (written, out, err) = tokio::join!(write, read_out, read_err);
    let status = child.wait().await.map_err(SandboxError::Pipe)?;
    let err = String::from_utf8_lossy(&err.unwrap_or_default()).into_owned();
    if !status.success() {
        return Err(explain_death(status, &err, runner.memory_limit_mib));
    }
    // A child that exited 0 read everything; a write error then is a real pipe fault.
    written.map_err(SandboxError::Pipe)?;
    let out = out.map_err(SandboxError::Pipe)?;
    let results: Vec<FileResult> =
        serde_json::from_slice(&out).map_err(|e| SandboxError::Protocol(e.to_string()))?;
    if results.len() != files.len() {
        return Err(SandboxError::Protocol(format!(
            "{} results for {} files",
            results.len(),
            files.len()
        )));
    }
    Ok(results
        .into_iter()
        .map(|r| FileOutcome {
            findings: r
                .findings
                .into_iter()
                .zip(r.code.into_iter().chain(std::iter::repeat_with(Vec::new)))
                .zip(r.code_cut.into_iter().chain(std::iter::repeat(None)))
                .map(|((mut f, code), cut)| {
                    f.code = code;
                    f.code_cut = cut;
                    f
                })
                .collect(),
            left_out: r.left_out,
            suppressed: r.suppressed,
            not_service: r.not_service,
            kind: None,
            skipped: r.skipped,
        })
        .collect())
}

/// Why the child ended badly, from its exit status and what it wrote to stderr.
fn explain_death(status: std::process::ExitStatus, stderr: &str, mib: u64) -> SandboxError {
    #[cfg(unix)]
    let signal = {
        use std::os::unix::process::ExitStatusExt as _;
        status.signal()
    };
    #[cfg(not(unix))]
    let signal: Option<i32> = None;
    let signal_name = signal.map(signal_name);
    if stderr.contains("has overflowed its stack") {
        return SandboxError::StackOverflow {
            signal: signal_name.unwrap_or_else(|| "exit".into()),
        };
    }
    if stderr.contains("memory allocation of")
        || stderr.contains("failed to allocate")
        || stderr.contains("capacity overflow")
    {
        return SandboxError::MemoryLimit { mib };
    }
    if let Some(message) = stderr.lines().find_map(panic_message) {
        return SandboxError::Panicked(message);
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.chars().take(300).collect::<String>()))
        .unwrap_or_default();
    match (signal_name, status.code()) {
        (Some(signal), _) => SandboxError::Signal {
            signal,
            detail: last,
        },
        (None, Some(code)) => SandboxError::Exit { code, detail: last },
        (None, None) => SandboxError::Exit {
            code: -1,
            detail: last,
        },
    }
}

/// The message of a panic line the child's hook wrote (`{"panic": …}`).
fn panic_message(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    let message = value.get("panic")?.as_str()?;
    let location = value
        .get("location")
        .and_then(serde_json::Value::as_str)
        .map(|l| format!(" at {l}"))
        .unwrap_or_default();
    Some(format!("{message}{location}"))
}

/// A signal's name, e.g. `SIGKILL`.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// The panic's message and location as one JSON object (for the child's and `serve`'s panic hooks).
pub fn panic_fields(info: &std::panic::PanicHookInfo<'_>) -> (String, String) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    (message, location)
}

/// Caps this process's memory (data segment and private writable mappings) at `mib` MiB.
#[cfg(unix)]
fn limit_memory(mib: u64) -> std::io::Result<()> {
    let bytes = mib.saturating_mul(1024 * 1024);
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn limit_memory(_mib: u64) -> std::io::Result<()> {
    Ok(())
}

/// The child's side (`prodaudit __analyze`): limit memory, read the request from stdin, analyse, answer on
/// stdout. Errors are for stderr; a crash is the parent's to explain.
pub fn child_main(memory_limit_mib: u64, rule_dirs: &[PathBuf]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    std::panic::set_hook(Box::new(|info| {
        let (message, location) = panic_fields(info);
        let line = serde_json::json!({"level": "ERROR", "panic": message, "location": location, "process": "analysis"});
        let _ = writeln!(std::io::stderr(), "{line}");
    }));
    limit_memory(memory_limit_mib).context("cannot set the analysis memory limit")?;
    let mut input = std::io::stdin().lock();
    let mut header = Vec::new();
    {
        let mut byte = [0u8; 1];
        loop {
            input.read_exact(&mut byte).context("reading the request")?;
            if byte[0] == b'\n' {
                break;
            }
            header.push(byte[0]);
        }
    }
    let mut request: Request = serde_json::from_slice(&header).context("parsing the request")?;
    let repo = request.take_repo_context();
    let mut files = Vec::with_capacity(request.files.len());
    for f in &request.files {
        let mut bytes = vec![0u8; f.len];
        input
            .read_exact(&mut bytes)
            .with_context(|| format!("reading {}", f.path))?;
        let lines = f.lines.as_ref().map(|ranges| {
            let mut set = LineSet::new();
            for &(first, last) in ranges {
                set.insert_range(first, last);
            }
            set
        });
        files.push((f.path.clone(), bytes, lines));
    }
    let rules = RuleSet::load(rule_dirs, true).context("loading the rules")?;
    let mut engine = Engine::new(
        Arc::new(rules),
        Overrides {
            disabled: request.disabled,
            severity: request.severity,
            enabled: request.enabled,
            service: crate::analysis::engine::glob_set(&request.service_globs)
                .context("paths.service")?,
            not_service: crate::analysis::engine::glob_set(&request.not_service_globs)
                .context("paths.not_service")?,
            report_not_service: request.report_not_service,
            service_globs: request.service_globs,
            not_service_globs: request.not_service_globs,
        },
    );
    engine.max_file_bytes = request.max_file_bytes;
    let results: Vec<FileResult> = {
        use rayon::prelude::*;
        files
            .par_iter()
            .map(|(path, bytes, lines)| {
                let o = engine.analyze_bytes(path, bytes, lines.as_ref(), &repo);
                FileResult {
                    code: o.findings.iter().map(|f| f.code.clone()).collect(),
                    code_cut: o.findings.iter().map(|f| f.code_cut).collect(),
                    left_out: o.left_out,
                    findings: o.findings,
                    suppressed: o.suppressed,
                    not_service: o.not_service,
                    skipped: o.skipped,
                }
            })
            .collect()
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &results).context("writing the findings")?;
    out.flush().context("writing the findings")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(6), "SIGABRT");
        assert_eq!(signal_name(64), "signal 64");
    }

    #[cfg(unix)]
    fn status_of(raw: i32) -> std::process::ExitStatus {
        use std::os::unix::process::ExitStatusExt as _;
        std::process::ExitStatus::from_raw(raw)
    }

    #[cfg(unix)]
    #[test]
    fn deaths_are_explained() {
        // Killed by signal 6 (raw wait status = signal number).
        let abort = status_of(6);
        let e = explain_death(abort, "memory allocation of 1048576 bytes failed\n", 64);
        assert_eq!(
            e.to_string(),
            "the analysis exceeded the memory limit of 64 MiB"
        );
        let e = explain_death(
            abort,
            "\nthread 'x' has overflowed its stack\nfatal runtime error: stack overflow\n",
            64,
        );
        assert_eq!(e.to_string(), "the analysis overflowed its stack (SIGABRT)");
        let e = explain_death(
            status_of(101 << 8),
            "{\"panic\":\"index out of bounds\",\"location\":\"src/x.rs:1:2\"}\n",
            64,
        );
        assert_eq!(
            e.to_string(),
            "the analysis panicked: index out of bounds at src/x.rs:1:2"
        );
        let e = explain_death(status_of(9), "", 64);
        assert_eq!(e.to_string(), "the analysis process was killed by SIGKILL");
        let e = explain_death(status_of(2 << 8), "error: bad rules\n", 64);
        assert_eq!(
            e.to_string(),
            "the analysis process exited with status 2: error: bad rules"
        );
    }

    /// The repository model crosses to the child: a request with a model that holds an unreached module reads
    /// back into a repository context that says so.
    #[test]
    fn the_request_carries_the_repository_model() {
        use crate::analysis::repo_model::{self, NameBudget};
        use crate::analysis::semantic::reach::Standing;
        let budget = NameBudget::new();
        let facts: std::collections::BTreeMap<String, _> = [
            (
                "app/main.py",
                "from fastapi import FastAPI\napp = FastAPI()\n",
            ),
            ("tools/bench.py", "import requests\n"),
        ]
        .iter()
        .map(|(p, t)| {
            (
                p.to_string(),
                repo_model::python_facts(p, Some(t.as_bytes()), &budget),
            )
        })
        .collect();
        let reach = repo_model::build(&facts, &[], budget.counted());
        assert_eq!(reach.standing("tools/bench.py"), Standing::Unreached);
        let request = Request {
            files: Vec::new(),
            changed: BTreeSet::new(),
            paths: vec!["app/main.py".into(), "tools/bench.py".into()],
            context_files: HashMap::new(),
            reverse_proxies: Vec::new(),
            disabled: HashSet::new(),
            severity: HashMap::new(),
            enabled: HashSet::new(),
            service_globs: Vec::new(),
            not_service_globs: Vec::new(),
            report_not_service: false,
            tenant_columns: Vec::new(),
            max_file_bytes: 1,
            reach: Some(reach.clone()),
        };
        let wire = serde_json::to_vec(&request).unwrap_or_default();
        let mut back: Request = match serde_json::from_slice(&wire) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(back.reach.as_ref(), Some(&reach));
        let repo = back.take_repo_context();
        assert_eq!(repo.standing("tools/bench.py"), Standing::Unreached);
        assert_eq!(repo.standing("app/main.py"), Standing::Service);
        // A parent without a model (an older one, or none built) sends none: every module is the service.
        let mut old: serde_json::Value = serde_json::from_slice(&wire).unwrap_or_default();
        if let Some(o) = old.as_object_mut() {
            o.remove("reach");
        }
        let mut back: Request = match serde_json::from_value(old) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert!(back.take_repo_context().reach.is_none());
    }

    #[test]
    fn memory_setting() {
        let r = ChildRunner::for_serve(&[], |_| None);
        assert_eq!(r.map(|r| r.memory_limit_mib), Ok(DEFAULT_MEMORY_MIB));
        let r = ChildRunner::for_serve(&[], |_| Some("64".into()));
        assert_eq!(r.map(|r| r.memory_limit_mib), Ok(64));
        assert!(ChildRunner::for_serve(&[], |_| Some("8".into())).is_err());
        assert!(ChildRunner::for_serve(&[], |_| Some("lots".into())).is_err());
    }
}
