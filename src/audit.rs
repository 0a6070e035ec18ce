//! Local audits: the engine fed from git (a pull request's view) or from the files on disk (`--all-lines`).

use crate::analysis::context::needs_globset;
use crate::analysis::moved;
use crate::analysis::plan::{self, PathPolicy};
use crate::analysis::semantic::reach::Reach;
use crate::analysis::{Engine, FileOutcome, RepoContext};
use crate::cache::{BaseKey, Cache, CacheStats};
use crate::diff::LineSet;
use crate::git::{GitError, Repo};
use crate::repo_config::{self, ConfigError, RepoConfig};
use crate::report::{Capped, Report, Skipped};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} does not exist", .0.display())]
    NoSuchPath(PathBuf),
    #[error("a rule's file globs are invalid: {0}")]
    Rules(String),
}

/// What to audit.
#[derive(Debug, Clone, Default)]
pub struct AuditRequest {
    /// A directory inside the repository (default: the current directory).
    pub repo: PathBuf,
    pub base: Option<String>,
    pub head: Option<String>,
    pub all_lines: bool,
    /// The staged changes against `HEAD` (what `git commit` would record), read from the index.
    pub staged: bool,
    /// Limit to these files or folders.
    pub paths: Vec<PathBuf>,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

/// The files of one audit, each with the lines findings are kept on (`None`: every line).
struct Plan {
    root: PathBuf,
    files: Vec<(String, Option<LineSet>)>,
    /// Every path of the tree under review.
    tree: Vec<String>,
    /// Paths the change adds or modifies, including those the configuration leaves out of the audit (a
    /// migration in an excluded folder still counts as part of the change); `None`: the audited files.
    changed: Option<Vec<String>>,
    source: Source,
    skipped: Vec<Skipped>,
    /// The root is a git work tree.
    git: bool,
    /// A change's old side: the revision and the files it removed lines from, with those lines (for findings of
    /// code the change moved, [`crate::analysis::moved`]).
    old_side: Option<(String, Vec<(String, LineSet)>)>,
}

enum Source {
    WorkTree,
    Revision { repo: Repo, rev: String },
}

/// The repository configuration for this audit: `--config FILE`, else `.github/prodaudit.yml` from the base
/// revision (pull-request view) or from the working tree (`--all-lines`), else the defaults.
pub fn load_config(
    req: &AuditRequest,
    explicit: Option<&Path>,
    known_ids: &[String],
) -> Result<RepoConfig, AuditError> {
    if let Some(path) = explicit {
        let text = std::fs::read_to_string(path).map_err(|source| AuditError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(RepoConfig::parse(
            &path.display().to_string(),
            &text,
            known_ids,
        )?);
    }
    let repo = Repo::open(&req.repo).ok();
    if !req.all_lines
        && let Some(repo) = &repo
    {
        let (base, rev) = if req.staged {
            ("HEAD".to_string(), repo.staged_base()?)
        } else {
            let base = match &req.base {
                Some(b) => b.clone(),
                None => repo.default_base()?,
            };
            let rev = repo.resolve(&base)?;
            (base, rev)
        };
        let found = repo.read_files(&rev, &[repo_config::DEFAULT_PATH.to_string()])?;
        if let Some(Some(bytes)) = found.into_iter().next() {
            let text = String::from_utf8_lossy(&bytes);
            let name = format!("{} (at {base})", repo_config::DEFAULT_PATH);
            return Ok(RepoConfig::parse(&name, &text, known_ids)?);
        }
        return Ok(RepoConfig::default());
    }
    let root = repo.map(|r| r.root).unwrap_or_else(|| req.repo.clone());
    let path = root.join(repo_config::DEFAULT_PATH);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(RepoConfig::parse(
            &path.display().to_string(),
            &text,
            known_ids,
        )?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RepoConfig::default()),
        Err(source) => Err(AuditError::Read { path, source }),
    }
}

/// How an audit uses the result cache (`.prodaudit_cache/` at the repository root; see [`crate::cache`]).
#[derive(Debug, Clone, Default)]
pub struct CacheOptions {
    /// The `--rules` folders the engine's rules came from (their files are part of the cache key).
    pub rule_dirs: Vec<PathBuf>,
}

/// Run an audit and collect its report, without the result cache.
pub fn run(engine: &Engine, config: &RepoConfig, req: &AuditRequest) -> Result<Report, AuditError> {
    run_cached(engine, config, req, None).map(|(report, _)| report)
}

/// Run an audit and collect its report, taking each file's result from the cache when `cache` is given and it
/// holds a valid one (the report is the same either way), and what the cache did.
pub fn run_cached(
    engine: &Engine,
    config: &RepoConfig,
    req: &AuditRequest,
    cache: Option<&CacheOptions>,
) -> Result<(Report, Option<CacheStats>), AuditError> {
    let plan = if req.all_lines {
        plan_all_lines(req, config)?
    } else if req.staged {
        plan_staged(req, config)?
    } else {
        plan_change(req, config)?
    };
    let Plan {
        root,
        files,
        tree,
        changed,
        source,
        mut skipped,
        git,
        old_side,
    } = plan;
    let changed =
        changed.unwrap_or_else(|| files.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>());
    let mut repo_ctx = repo_context(engine, &root, &source, changed, tree)?;
    repo_ctx.reverse_proxies = config.reverse_proxies.clone();
    repo_ctx.tenant_columns = config.tenant_columns.clone();
    let cache = cache.map(|c| Cache::open(&root, git, BaseKey::new(engine, &c.rule_dirs)));
    let analyse = |path: &str, bytes: &[u8], lines: Option<&LineSet>| match &cache {
        Some(cache) => cache.analyze(engine, path, bytes, lines, &repo_ctx),
        None => engine.analyze_bytes(path, bytes, lines, &repo_ctx),
    };

    let bar = if req.progress && files.len() > 1 {
        let bar =
            ProgressBar::with_draw_target(Some(files.len() as u64), ProgressDrawTarget::stderr());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };

    let outcomes: Vec<(String, Result<FileOutcome, String>)> = match &source {
        Source::WorkTree => files
            .par_iter()
            .map(|(path, lines)| {
                let full = root.join(path);
                let result = std::fs::read(&full)
                    .map(|bytes| analyse(path, &bytes, lines.as_ref()))
                    .map_err(|e| format!("unreadable: {e}"));
                if let Some(b) = &bar {
                    b.inc(1);
                }
                (path.clone(), result)
            })
            .collect(),
        Source::Revision { repo, rev } => {
            let names: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
            let contents = repo.read_files(rev, &names)?;
            files
                .par_iter()
                .zip(contents.into_par_iter())
                .map(|((path, lines), bytes)| {
                    let result = match bytes {
                        Some(bytes) => Ok(analyse(path, &bytes, lines.as_ref())),
                        None => Err("not a file at the head revision".to_string()),
                    };
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                    (path.clone(), result)
                })
                .collect()
        }
    };
    if let Some(b) = bar {
        b.finish_and_clear();
    }

    let mut report = Report::default();
    for (path, result) in outcomes {
        match result {
            Ok(outcome) => {
                if let Some(reason) = outcome.skipped {
                    skipped.push(Skipped { path, reason });
                } else if outcome.kind.is_some() {
                    report.files_analyzed += 1;
                    report.suppressed += outcome.suppressed;
                    report.not_service += outcome.not_service;
                    if outcome.left_out > 0 {
                        report.capped.push(Capped {
                            path,
                            reported: outcome.findings.len(),
                            left_out: outcome.left_out,
                        });
                    }
                    report.findings.extend(outcome.findings);
                }
            }
            Err(reason) => skipped.push(Skipped { path, reason }),
        }
    }
    if let (Source::Revision { repo, rev }, Some((old_rev, old_files))) = (&source, &old_side) {
        report.moved = drop_moved(
            engine,
            repo,
            rev,
            old_rev,
            old_files,
            &repo_ctx,
            &mut report.findings,
        )?;
    }
    report
        .findings
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    report.skipped = skipped;
    report.capped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((report, cache.map(Cache::finish)))
}

/// Drops the findings whose code the change moved rather than wrote ([`crate::analysis::moved`]): the old side of
/// the files whose removed lines hold a finding's first line is analysed on those lines. Returns how many.
fn drop_moved(
    engine: &Engine,
    repo: &Repo,
    head: &str,
    old_rev: &str,
    old_files: &[(String, LineSet)],
    repo_ctx: &RepoContext,
    findings: &mut Vec<crate::report::Finding>,
) -> Result<usize, AuditError> {
    if findings.is_empty() || old_files.is_empty() {
        return Ok(0);
    }
    let mut paths: Vec<String> = findings.iter().map(|f| f.path.clone()).collect();
    paths.sort();
    paths.dedup();
    let head_texts: std::collections::HashMap<String, String> = paths
        .iter()
        .cloned()
        .zip(repo.read_files(head, &paths)?)
        .filter_map(|(p, b)| b.map(|b| (p, String::from_utf8_lossy(&b).into_owned())))
        .collect();
    let head_text = |p: &str| head_texts.get(p).map(String::as_str);
    let old_names: Vec<String> = old_files.iter().map(|(p, _)| p.clone()).collect();
    let old_texts: Vec<String> = repo
        .read_files(old_rev, &old_names)?
        .into_iter()
        .map(|b| {
            b.map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        })
        .collect();
    let wanted = moved::candidates_of(findings, head_text, old_files, &old_texts);
    if wanted.is_empty() {
        return Ok(0);
    }
    let old_engine = engine.for_old_side();
    let before: Vec<(crate::report::Finding, &str)> = wanted
        .par_iter()
        .flat_map_iter(|&i| {
            let (path, lines) = &old_files[i];
            let text = old_texts[i].as_str();
            old_engine
                .analyze_bytes(path, text.as_bytes(), Some(lines), repo_ctx)
                .findings
                .into_iter()
                .map(move |f| (f, text))
        })
        .collect();
    let n = moved::drop_moved(findings, head_text, &before);
    tracing::info!(
        moved = n,
        old_files = wanted.len(),
        "findings of code the change moved"
    );
    Ok(n)
}

/// The repository around the audited files: what changed, the tree's paths, and the contents of the files
/// the enabled checks read (only those are fetched).
fn repo_context(
    engine: &Engine,
    root: &Path,
    source: &Source,
    changed: Vec<String>,
    mut tree: Vec<String>,
) -> Result<RepoContext, AuditError> {
    tree.sort();
    let needs = engine.needed_files();
    let mut contents = std::collections::HashMap::new();
    if !needs.is_empty() {
        let globs = needs_globset(&needs).map_err(|e| AuditError::Rules(e.to_string()))?;
        let wanted: Vec<String> = tree
            .iter()
            .filter(|p| globs.is_match(p.as_str()))
            .cloned()
            .collect();
        let texts: Vec<Option<Vec<u8>>> = match source {
            Source::Revision { repo, rev } => repo.read_files(rev, &wanted)?,
            Source::WorkTree => wanted
                .iter()
                .map(|p| std::fs::read(root.join(p)).ok())
                .collect(),
        };
        for (path, bytes) in wanted.into_iter().zip(texts) {
            if let Some(bytes) = bytes.filter(|b| plan::context_file_wanted(b)) {
                contents.insert(path, String::from_utf8_lossy(&bytes).into_owned());
            }
        }
    }
    let reach = build_reach(root, source, &tree)?;
    match &reach.undecided {
        Some(why) => tracing::info!(why = %why, "reachability not decided: every module is judged"),
        None => tracing::info!(
            entries = reach.entries.len(),
            unreached = reach.unreached_count(),
            open_folders = ?reach.open_folders,
            "reachability from the service's entry points"
        ),
    }
    if reach.undecided.is_none() {
        tracing::debug!(entries = ?reach.entries, "entry points");
    }
    Ok(RepoContext {
        changed: changed.into_iter().collect(),
        paths: tree,
        files: contents,
        reach: Some(std::sync::Arc::new(reach)),
        ..Default::default()
    })
}

/// The repository model's reachability ([`repo_model`], shared with the App): the import facts of every Python
/// file of the tree (vendored code aside) and the commands of its deployment files, read on all cores.
fn build_reach(root: &Path, source: &Source, tree: &[String]) -> Result<Reach, AuditError> {
    use crate::analysis::repo_model::{self, NameBudget};
    let py: Vec<String> = tree
        .iter()
        .filter(|p| repo_model::wants_python(p))
        .cloned()
        .collect();
    if repo_model::too_many_modules(py.len()) {
        return Ok(repo_model::undecided());
    }
    let commands: Vec<String> = tree
        .iter()
        .filter(|p| repo_model::wants_command(p))
        .cloned()
        .collect();
    let read = |names: &[String]| -> Result<Vec<Option<Vec<u8>>>, AuditError> {
        Ok(match source {
            Source::Revision { repo, rev } => repo.read_files(rev, names)?,
            Source::WorkTree => names
                .par_iter()
                .map(|p| std::fs::read(root.join(p)).ok())
                .collect(),
        })
    };
    // Every Python file is read and scanned: on all cores (a warm cached run is mostly this).
    let budget = NameBudget::new();
    let facts: std::collections::BTreeMap<String, _> = py
        .par_iter()
        .cloned()
        .zip(read(&py)?)
        .map(|(p, bytes)| {
            let facts = repo_model::python_facts(&p, bytes.as_deref(), &budget);
            (p, facts)
        })
        .collect();
    let texts: Vec<(String, String)> = commands
        .iter()
        .cloned()
        .zip(read(&commands)?)
        .filter_map(|(p, b)| b.and_then(|b| repo_model::command_text(&b)).map(|t| (p, t)))
        .collect();
    Ok(repo_model::build(&facts, &texts, budget.counted()))
}

/// A pull request's view: the files changed between merge-base(base, head) and head, and their added lines.
fn plan_change(req: &AuditRequest, config: &RepoConfig) -> Result<Plan, AuditError> {
    let repo = Repo::open(&req.repo)?;
    let head_name = req.head.clone().unwrap_or_else(|| "HEAD".to_string());
    let head = repo.resolve(&head_name)?;
    let base_name = match &req.base {
        Some(b) => b.clone(),
        None => repo.default_base()?,
    };
    let base = repo.resolve(&base_name)?;
    let merge_base = repo.merge_base(&base, &head)?;
    plan_diff(req, config, repo, merge_base, head)
}

/// The staged changes against `HEAD`: the index written as a tree is the revision under review.
fn plan_staged(req: &AuditRequest, config: &RepoConfig) -> Result<Plan, AuditError> {
    let repo = Repo::open(&req.repo)?;
    let head = repo.write_index_tree()?;
    let base = repo.staged_base()?;
    plan_diff(req, config, repo, base, head)
}

/// The files changed from `from` to `head` and their added lines.
fn plan_diff(
    req: &AuditRequest,
    config: &RepoConfig,
    repo: Repo,
    merge_base: String,
    head: String,
) -> Result<Plan, AuditError> {
    let pathspecs = pathspecs(&repo.root, &req.paths)?;
    let diffs = repo.diff(&merge_base, &head, &pathspecs)?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut changed = Vec::new();
    let mut old_files = Vec::new();
    for d in diffs {
        if let Some(old) = &d.old_path
            && !d.binary
            && !d.submodule
            && matches!(plan::path_policy(old), PathPolicy::Analyse)
        {
            let lines = d.deleted_lines();
            if !lines.is_empty() {
                old_files.push((old.clone(), lines));
            }
        }
        let Some(path) = d.new_path.clone() else {
            continue; // deleted: nothing left to review
        };
        changed.push(path.clone());
        if !config.wants_path(&path) || d.submodule {
            continue;
        }
        match plan::path_policy(&path) {
            PathPolicy::Analyse => {}
            PathPolicy::Ignore => continue,
            PathPolicy::Skip(reason) => {
                skipped.push(Skipped {
                    path,
                    reason: reason.into(),
                });
                continue;
            }
        }
        if d.binary {
            skipped.push(Skipped {
                path,
                reason: "binary".into(),
            });
            continue;
        }
        let added = d.added_lines();
        if added.is_empty() {
            continue; // pure rename or mode change: no new lines to review
        }
        files.push((path, Some(added)));
    }
    let tree = repo.list_files(&head)?;
    Ok(Plan {
        root: repo.root.clone(),
        files,
        tree,
        changed: Some(changed),
        source: Source::Revision { repo, rev: head },
        skipped,
        git: true,
        old_side: Some((merge_base, old_files)),
    })
}

/// Every line of the given paths (or the whole tree): the working tree honouring `.gitignore`, or the tree of
/// `--head` when one is given.
fn plan_all_lines(req: &AuditRequest, config: &RepoConfig) -> Result<Plan, AuditError> {
    if let Some(head) = &req.head {
        let repo = Repo::open(&req.repo)?;
        let rev = repo.resolve(head)?;
        let specs = pathspecs(&repo.root, &req.paths)?;
        let tree = repo.list_files(&rev)?;
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        for p in tree.iter().filter(|p| {
            specs.is_empty()
                || specs
                    .iter()
                    .any(|s| *p == s || p.starts_with(&format!("{}/", s.trim_end_matches('/'))))
        }) {
            plan_path(config, p, &mut files, &mut skipped);
        }
        return Ok(Plan {
            root: repo.root.clone(),
            files,
            tree,
            changed: None,
            source: Source::Revision { repo, rev },
            skipped,
            git: true,
            old_side: None,
        });
    }
    let (root, git) = match Repo::open(&req.repo) {
        Ok(repo) => (repo.root, true),
        Err(GitError::NotARepo(_)) => {
            if !req.repo.exists() {
                return Err(AuditError::NoSuchPath(req.repo.clone()));
            }
            (req.repo.clone(), false)
        }
        Err(e) => return Err(e.into()),
    };
    let root = root.canonicalize().unwrap_or(root);
    let starts: Vec<PathBuf> = if req.paths.is_empty() {
        vec![root.clone()]
    } else {
        req.paths.clone()
    };
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    let mut tree = Vec::new();
    for start in &starts {
        let Ok(start) = start.canonicalize() else {
            return Err(AuditError::NoSuchPath(start.clone()));
        };
        let walker = ignore::WalkBuilder::new(&start)
            .require_git(false)
            .hidden(false)
            .filter_entry(not_ours)
            .build();
        for entry in walker.flatten() {
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            let rel = relative(&root, entry.path());
            plan_path(config, &rel, &mut files, &mut skipped);
            tree.push(rel);
        }
    }
    // Cross-file rules see the whole tree even when only some paths are audited.
    if !req.paths.is_empty() {
        let walker = ignore::WalkBuilder::new(&root)
            .require_git(false)
            .hidden(false)
            .filter_entry(not_ours)
            .build();
        tree.extend(
            walker
                .flatten()
                .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
                .map(|e| relative(&root, e.path())),
        );
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    skipped.dedup_by(|a, b| a.path == b.path);
    tree.sort();
    tree.dedup();
    Ok(Plan {
        root,
        files,
        tree,
        changed: None,
        source: Source::WorkTree,
        skipped,
        git,
        old_side: None,
    })
}

/// Folders a walk of the working tree never enters: git's own, and the result cache (its files would otherwise
/// change the tree that cross-file rules see from one run to the next).
fn not_ours(e: &ignore::DirEntry) -> bool {
    e.file_name() != ".git" && e.file_name() != crate::cache::DIR_NAME
}

/// One path of an `--all-lines` audit, by the configuration and the shared planning policy: analysed (every
/// line), skipped with the reason, or not read.
fn plan_path(
    config: &RepoConfig,
    path: &str,
    files: &mut Vec<(String, Option<LineSet>)>,
    skipped: &mut Vec<Skipped>,
) {
    if !config.wants_path(path) {
        return;
    }
    match plan::path_policy(path) {
        PathPolicy::Analyse => files.push((path.to_string(), None)),
        PathPolicy::Ignore => {}
        PathPolicy::Skip(reason) => skipped.push(Skipped {
            path: path.to_string(),
            reason: reason.into(),
        }),
    }
}

/// A path as the report shows it: relative to the root, forward slashes.
fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let rel = rel.strip_prefix(".").unwrap_or(rel);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// PATH arguments as git pathspecs relative to the repository root.
fn pathspecs(root: &Path, paths: &[PathBuf]) -> Result<Vec<String>, AuditError> {
    let cwd = std::env::current_dir().map_err(|source| AuditError::Read {
        path: PathBuf::from("."),
        source,
    })?;
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    paths
        .iter()
        .map(|p| -> Result<String, AuditError> {
            let abs = if p.is_absolute() {
                p.clone()
            } else {
                cwd.join(p)
            };
            // A path deleted by the change no longer exists; git still understands it relative to the root.
            let abs = abs.canonicalize().unwrap_or(abs);
            Ok(relative(&root, &abs))
        })
        .collect()
}
