//! The CLI's result cache: what the engine found in each file, kept in `.prodaudit_cache/` at the repository
//! root so that a second audit of unchanged files does not analyse them again.
//!
//! # What a cached result is keyed by
//! One entry per analysed file, named by the SHA-256 of:
//! - the *base key*: this program (its version and the identity of its executable: size and modification
//!   time, so a rebuilt binary of the same version does not reuse old results), the rule set (the contents of
//!   every rule file of each `--rules` folder; the built-in rules are part of the executable), and every engine
//!   setting and repository-configuration choice that changes what the engine reports;
//! - the file: its path (findings and fingerprints name it), its kind (which can depend on the tree around it,
//!   e.g. a Python file under an Alembic `versions/` folder), its exact bytes, and the lines the audit reports on
//!   (`None` for `--all-lines`).
//!
//! # Cross-file rules
//! Some detectors written in Rust read the repository around the file (the other files they asked for, the
//! tree's paths, which files the change touches: [`RepoContext`]) or the lines under review; they are listed in
//! [`LOOKS_BEYOND_FILE`] (a test reads the checks' sources to keep the list complete). When one of them ran on a
//! file, the entry also records a hash of the whole repository context, and is used only while that hash is
//! unchanged. Every other file depends on nothing outside itself (its kind, which can depend on the tree, is part
//! of the key) and keeps its entry whatever else changes: adding a module re-analyses only the files on which a
//! cross-file check ran.
//!
//! # Storage
//! One small JSON file per entry, `.prodaudit_cache/v1/<2 hex>/<64 hex>.json`, written to a temporary file and
//! renamed into place (atomic: a reader sees the old entry, the new one, or none). One file per entry rather than
//! one database file, because: a warm run reads only the entries of the files it audits (a pre-commit run on
//! three files reads three, not the whole store), reads run in parallel with the analysis threads, a run writes
//! only what it analysed (a database file would be rewritten whole), concurrent runs cannot lose each other's
//! results, and a damaged entry costs one file's re-analysis, not the cache.
//!
//! # Bounds and failures
//! An entry is at most [`MAX_ENTRY_BYTES`] (larger results are not cached, larger files are not read); after a
//! run that wrote entries, the store is cut back to 3/4 of [`MAX_ENTRIES`] when it holds more, oldest first,
//! never an entry this run used. A cache folder that cannot be created, read or written, a damaged entry, or a
//! folder that is a symbolic link or tracked by git (a committed cache could hide findings) is reported with one
//! warning per run and otherwise ignored: the audit's result never depends on the cache being usable.

use crate::analysis::rules::Matcher;
use crate::analysis::{Engine, FileOutcome, Overrides, RepoContext};
use crate::diff::LineSet;
use crate::report::Finding;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// The cache folder's name, at the repository root.
pub const DIR_NAME: &str = ".prodaudit_cache";
/// The layout inside it; a new layout gets a new folder and leaves the old one alone.
const LAYOUT: &str = "v1";
/// Entries kept (after a run that wrote entries, the store is cut back to 3/4 of this, oldest first).
pub const MAX_ENTRIES: usize = 20_000;
/// Largest entry written or read.
pub const MAX_ENTRY_BYTES: u64 = 512 * 1024;
/// Temporary files older than this are left-overs of a killed run and removed when the store is pruned.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(3600);
/// The Cache Directory Tagging Specification's signature (backup tools skip folders holding it).
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by prodaudit.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

type Hash = [u8; 32];

/// The parts of the key that are the same for every file of an audit (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseKey(Hash);

impl BaseKey {
    /// The base key for `engine`, whose rules came from the built-in set and `rule_dirs`. A rule folder that
    /// cannot be read makes a key no other run will have (no cache hits), never an error.
    pub fn new(engine: &Engine, rule_dirs: &[PathBuf]) -> BaseKey {
        let mut h = Sha256::new();
        field(&mut h, b"prodaudit result cache");
        field(&mut h, binary_identity().as_bytes());
        // Every engine setting that changes results. Destructured without `..` so that a new field cannot be
        // added to `Engine` or `Overrides` without deciding here whether it belongs to the key.
        let Engine {
            rules: _, // the built-in rules are in the executable; the others are hashed from their files below
            overrides,
            max_file_bytes,
            time_limit: _, // only decides skips, which are never cached
            max_findings,
            timings: _,
        } = engine;
        field(&mut h, &(*max_file_bytes as u64).to_le_bytes());
        field(&mut h, &(*max_findings as u64).to_le_bytes());
        let Overrides {
            disabled,
            severity,
            enabled,
            service: _,     // built from service_globs
            not_service: _, // built from not_service_globs
            report_not_service,
            service_globs,
            not_service_globs,
        } = overrides;
        sorted_field(&mut h, disabled.iter().map(String::as_str));
        sorted_field(&mut h, enabled.iter().map(String::as_str));
        let mut sev: Vec<String> = severity
            .iter()
            .map(|(id, s)| format!("{id}={}", s.as_str()))
            .collect();
        sev.sort();
        list_field(&mut h, sev.iter().map(String::as_str));
        field(&mut h, &[u8::from(*report_not_service)]);
        list_field(&mut h, service_globs.iter().map(String::as_str));
        list_field(&mut h, not_service_globs.iter().map(String::as_str));
        for dir in rule_dirs {
            field(&mut h, dir.to_string_lossy().as_bytes());
            hash_rule_dir(&mut h, dir);
        }
        BaseKey(h.finalize().into())
    }
}

/// This program's version and its executable's identity. In debug builds (the tests) `PRODAUDIT_CACHE_VERSION`
/// stands in for the version, so a test can play a new release.
fn binary_identity() -> String {
    #[allow(unused_mut)]
    let mut version = env!("CARGO_PKG_VERSION").to_string();
    #[cfg(debug_assertions)]
    if let Ok(v) = std::env::var("PRODAUDIT_CACHE_VERSION") {
        version = v;
    }
    let exe = std::env::current_exe()
        .and_then(std::fs::metadata)
        .map(|m| {
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} bytes, modified {mtime}", m.len())
        })
        .unwrap_or_default();
    format!("{version} ({exe})")
}

/// The rule files `RuleSet::load` reads from `dir` (every `*.yml`/`*.yaml` file in it), names and contents.
fn hash_rule_dir(h: &mut Sha256, dir: &Path) {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "yml" || e == "yaml")
            })
            .collect(),
        Err(e) => {
            // `RuleSet::load` fails on such a folder before any lookup; hash the error all the same.
            field(h, format!("unreadable: {e}").as_bytes());
            return;
        }
    };
    files.sort();
    for f in files {
        field(h, f.to_string_lossy().as_bytes());
        match std::fs::read(&f) {
            Ok(bytes) => field(h, &bytes),
            Err(e) => field(h, format!("unreadable: {e}").as_bytes()),
        }
    }
}

/// A hash of everything in the repository context that a cross-file detector can read. Destructured without
/// `..` for the same reason as [`BaseKey::new`].
pub fn context_hash(repo: &RepoContext) -> Hash {
    let RepoContext {
        changed,
        paths,
        files,
        reverse_proxies,
        alembic_dirs: _,      // derived from `files`
        alembic_tree: _,      // derived from `paths`
        migration_changed: _, // derived from `changed`
        tenant_columns,
        tenant_index: _,  // derived from `files` and `tenant_columns`
        loader_index: _,  // derived from `files` and `tenant_index`
        healthchecked: _, // derived from `files`
        rate_limited: _,  // derived from `files`
        limited: _,       // derived from `files`
        orm_index: _,     // derived from `files`
        session_index: _, // derived from `files`
        reach, // each file's standing enters its own key (`file_key`); the deciding functions and ORM criteria here
    } = repo;
    let mut h = Sha256::new();
    list_field(&mut h, changed.iter().map(String::as_str));
    sorted_field(&mut h, paths.iter().map(String::as_str));
    let mut names: Vec<&String> = files.keys().collect();
    names.sort();
    field(&mut h, &(names.len() as u64).to_le_bytes());
    for name in names {
        field(&mut h, name.as_bytes());
        field(&mut h, files.get(name).map_or(&b""[..], |t| t.as_bytes()));
    }
    list_field(&mut h, reverse_proxies.iter().map(String::as_str));
    list_field(&mut h, tenant_columns.iter().map(String::as_str));
    // Which functions may decide access (I1 reads it for the calls a tenant id goes to).
    match reach.as_ref().and_then(|r| r.deciding_names()) {
        Some(names) => list_field(&mut h, names.into_iter()),
        None => field(&mut h, b"not known"),
    }
    // Criteria the session adds to every ORM statement (I1's tenant queries read them), and the classes whose
    // attributes hold a synchronous session (C5 reads them).
    if let Some(r) = reach {
        let mut classes: Vec<(&String, &Vec<String>)> = r.session_attrs.iter().collect();
        classes.sort();
        field(&mut h, &(classes.len() as u64).to_le_bytes());
        for (class, attrs) in classes {
            field(&mut h, class.as_bytes());
            list_field(&mut h, attrs.iter().map(String::as_str));
        }
        field(&mut h, &(r.orm_criteria.len() as u64).to_le_bytes());
        for c in &r.orm_criteria {
            field(&mut h, c.target.as_bytes());
            list_field(&mut h, c.columns.iter().map(String::as_str));
            field(
                &mut h,
                &[u8::from(c.select), u8::from(c.update), u8::from(c.delete)],
            );
        }
    }
    h.finalize().into()
}

/// Length-prefixed, so that no two different sequences of fields hash the same bytes.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn list_field<'a>(h: &mut Sha256, items: impl Iterator<Item = &'a str>) {
    let items: Vec<&str> = items.collect();
    field(h, &(items.len() as u64).to_le_bytes());
    for i in items {
        field(h, i.as_bytes());
    }
}

fn sorted_field<'a>(h: &mut Sha256, items: impl Iterator<Item = &'a str>) {
    let mut items: Vec<&str> = items.collect();
    items.sort_unstable();
    list_field(h, items.into_iter());
}

/// The key of one file's result.
/// What the repository model says about one file, as far as its findings depend on it.
pub struct ModelView<'a> {
    pub standing: crate::analysis::semantic::reach::Standing,
    pub dead: &'a [(String, usize)],
    /// The functions of the module only start-up or shutdown hooks call.
    pub startup_only: &'a [(String, usize)],
    /// The repository-wide facts detectors' severities and silences read (`lower_without`, `silent_with`,
    /// `silent_without`).
    pub facts: &'a [Option<bool>],
}

pub fn file_key(
    base: BaseKey,
    path: &str,
    kind: Option<crate::analysis::language::FileKind>,
    lines: Option<&LineSet>,
    bytes: &[u8],
    model: &ModelView<'_>,
) -> Hash {
    let ModelView {
        standing,
        dead,
        startup_only,
        facts,
    } = *model;
    let mut h = Sha256::new();
    h.update(base.0);
    field(&mut h, path.as_bytes());
    field(&mut h, format!("{kind:?}").as_bytes());
    // Whether the repository model counts the module as the service decides which findings are held back, and
    // so do the functions of the module nothing calls (a call added in another file revives one).
    field(&mut h, format!("{standing:?}").as_bytes());
    // So do the functions only start-up calls (a request handler that starts calling one brings its findings
    // back).
    for list in [dead, startup_only] {
        field(&mut h, &(list.len() as u64).to_le_bytes());
        for (name, line) in list {
            field(&mut h, name.as_bytes());
            field(&mut h, &(*line as u64).to_le_bytes());
        }
    }
    // The repository-wide facts detectors' severities read (`lower_without`): a cookie read added anywhere
    // raises a CORS finding again.
    field(&mut h, format!("{facts:?}").as_bytes());
    match lines {
        None => field(&mut h, b"all lines"),
        Some(set) => {
            let ranges = set.ranges();
            field(&mut h, &(ranges.len() as u64).to_le_bytes());
            for &(a, b) in ranges {
                h.update((a as u64).to_le_bytes());
                h.update((b as u64).to_le_bytes());
            }
        }
    }
    field(&mut h, bytes);
    h.finalize().into()
}

/// The Rust checks (by `Check::id`) that read the repository around their file (`FileContext::repo`) or the lines
/// under review (`FileContext::lines`). Every other detector's findings depend on the file alone. The test
/// `every_check_that_looks_beyond_its_file_is_listed` fails when a check's source reads either and is not here.
pub const LOOKS_BEYOND_FILE: &[&str] = &[
    // O3: the settings a file reads against `.env.example`.
    "setting-not-in-env-example",
    "optional-setting-not-in-env-example",
    // F1: whether the repository's dependencies name a PostgreSQL driver.
    "db-engine-no-statement-timeout",
    // C5: the classes of other modules whose attributes hold a synchronous session.
    "sync-session-in-async",
    // I1: the repository's model files.
    "object-by-id-without-owner-check",
    // I1: the repository's model files and its passive functions (the file's other check shares its code).
    "tenant-id-unchecked",
    "stream-by-id-without-owner-check",
    "webhook-tenant-unverified",
    "route-lists-every-tenant",
    // I1: the configured tenant columns (`tenancy.columns`); the file's other checks share its code.
    "tenant-query-ignores-tenant",
    "tenant-query-unscoped",
    "cache-key-without-tenant",
    "vector-collection-not-scoped",
    // F7: probes and health checks anywhere in the deployment files.
    "fastapi-no-readiness-anywhere",
    // Kubernetes and Helm: image rewriting (Skaffold, Kustomize), configured proxies.
    "k8s-no-resources",
    "k8s-no-probes",
    "k8s-image-unpinned",
    "k8s-service-exposed",
    "k8s-datastore-exposed",
    "k8s-single-replica",
    "k8s-env-secret",
    "helm-values-no-resources",
    "helm-values-image-unpinned",
    // O4: the migrations, the change set and the changed lines.
    "model-change-without-migration",
    // Compose: the Dockerfiles it builds, configured proxies.
    "compose-published-port",
    "compose-dependency-without-healthcheck",
    "compose-app-no-healthcheck",
    "compose-depends-on-not-healthy",
    "compose-no-limits",
    "compose-image-unpinned",
    "compose-literal-secret",
    // O3 in example env files: whether a deployment's Compose file reads the file (the file's other check
    // shares its code).
    "env-example-named-secret",
    "env-example-named-secret-local",
    "env-example-known-format-secret",
    // I2: a rate-limiting middleware in the application's files (the file's other check shares its code).
    "public-router-without-rate-limit",
    "upload-read-without-size-limit",
    "upload-read-in-helper",
    // F7 in Dockerfiles: a Compose service that builds the image with a health check (the file's other checks
    // share its code).
    "dockerfile-no-healthcheck",
    "dockerfile-from-unpinned",
    "dockerfile-shell-form-cmd",
    "dockerfile-runs-as-root",
    "dockerfile-secret-in-env",
];

/// Did a detector that reads the repository around the file run on it? The same conditions the engine applies
/// before running a detector (kind, path globs, tokens), less its on/off settings: a superset.
pub fn reads_context(
    engine: &Engine,
    path: &str,
    kind: crate::analysis::language::FileKind,
    text: &str,
) -> bool {
    let checks: Vec<&crate::analysis::rules::Detector> = engine
        .rules
        .detectors
        .iter()
        .filter(|d| {
            matches!(d.matcher, Matcher::Check(c) if LOOKS_BEYOND_FILE.contains(&c.id()))
                && d.applies_to(path, kind)
        })
        .collect();
    if checks.is_empty() {
        return false;
    }
    let seen = engine.rules.scan_tokens(text);
    checks.iter().any(|d| d.wanted(&seen))
}

/// One file's result as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The entry's own key (hex): an entry found under another name is damaged.
    key: String,
    /// The hash of the repository context (hex) when a cross-file detector ran on the file.
    context: Option<String>,
    kind: Option<crate::analysis::language::FileKind>,
    findings: Vec<Finding>,
    /// `Finding::code` and `Finding::code_cut` of each finding (its JSON leaves them out), in the same order.
    code: Vec<Vec<String>>,
    code_cut: Vec<Option<usize>>,
    suppressed: usize,
    not_service: usize,
    left_out: usize,
}

/// What the cache did in one audit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Files whose result came from the cache.
    pub hits: usize,
    /// Files analysed (and, where possible, stored).
    pub analysed: usize,
    /// Entries written.
    pub written: usize,
    /// Entries removed to keep the store within bounds.
    pub evicted: usize,
}

/// An open cache (possibly unusable: then every lookup misses and nothing is written).
pub struct Cache {
    /// `.prodaudit_cache/v1`, or `None` when the cache cannot be used this run.
    store: Option<PathBuf>,
    base: BaseKey,
    context: OnceLock<String>,
    /// Still trying to write.
    writable: AtomicBool,
    warned: AtomicBool,
    hits: AtomicUsize,
    analysed: AtomicUsize,
    written: AtomicUsize,
    temp_counter: AtomicUsize,
    /// Entries this run read or wrote (never evicted by it).
    used: Mutex<HashSet<Hash>>,
}

impl Cache {
    /// The cache of the repository whose root is `root`. `git`: the root is a git work tree (then a cache
    /// folder git tracks is refused). Never fails: an unusable cache warns once and is left out.
    pub fn open(root: &Path, git: bool, base: BaseKey) -> Cache {
        let mut cache = Cache {
            store: None,
            base,
            context: OnceLock::new(),
            writable: AtomicBool::new(true),
            warned: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            analysed: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            temp_counter: AtomicUsize::new(0),
            used: Mutex::new(HashSet::new()),
        };
        match prepare(root, git) {
            Ok(store) => cache.store = Some(store),
            Err(problem) => cache.warn(&problem),
        }
        cache
    }

    /// The folder entries live in, when the cache is usable.
    pub fn store_dir(&self) -> Option<&Path> {
        self.store.as_deref()
    }

    /// One warning per run, whatever goes wrong and however often.
    fn warn(&self, problem: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!("the result cache is not used: {problem}; files are analysed instead");
        }
    }

    fn entry_path(&self, key: &Hash) -> Option<PathBuf> {
        let hex = hex::encode(key);
        Some(
            self.store
                .as_ref()?
                .join(&hex[..2])
                .join(format!("{hex}.json")),
        )
    }

    fn mark_used(&self, key: &Hash) {
        if let Ok(mut used) = self.used.lock() {
            used.insert(*key);
        }
    }

    /// Analyse one file through the cache: its stored result when there is a valid one, else the engine's
    /// (stored for next time).
    pub fn analyze(
        &self,
        engine: &Engine,
        path: &str,
        bytes: &[u8],
        lines: Option<&LineSet>,
        repo: &RepoContext,
    ) -> FileOutcome {
        // Files the engine turns away unread (too large, binary) cost nothing to turn away again.
        if self.store.is_none()
            || crate::analysis::plan::content_skip(bytes, engine.max_file_bytes).is_some()
        {
            self.analysed.fetch_add(1, Ordering::Relaxed);
            return engine.analyze_bytes(path, bytes, lines, repo);
        }
        let text = String::from_utf8_lossy(bytes);
        let kind = repo.kind_of(path, Some(&text));
        let standing = repo.standing(path);
        let dead = repo.dead_functions(path);
        let startup_only = repo.startup_only_functions(path);
        let facts = [
            repo.fact(crate::analysis::rules::RepoFact::Cookies, path),
            repo.fact(
                crate::analysis::rules::RepoFact::Http500DetailReplaced,
                path,
            ),
        ];
        let model = ModelView {
            standing,
            dead,
            startup_only,
            facts: &facts,
        };
        let key = file_key(self.base, path, kind, lines, bytes, &model);
        self.mark_used(&key);
        let context = || self.context.get_or_init(|| hex::encode(context_hash(repo)));
        if let Some((outcome, _)) = self.load(&key, context) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return outcome;
        }
        // A pull request's view of a file whose every-line result is known: when no detector that looks beyond
        // the file (at the repository or at the lines under review) ran on it and it had nothing to report but
        // suppressed findings, its changed lines have nothing either (the same matches, each suppressed;
        // suppressions are counted before lines are looked at).
        if let Some(set) = lines
            && !set.is_empty()
        {
            let all = file_key(self.base, path, kind, None, bytes, &model);
            if let Some((outcome, false)) = self.load(&all, context)
                && outcome.findings.is_empty()
                && outcome.not_service == 0
                && outcome.left_out == 0
            {
                self.mark_used(&all);
                self.hits.fetch_add(1, Ordering::Relaxed);
                return outcome;
            }
        }
        self.analysed.fetch_add(1, Ordering::Relaxed);
        let outcome = engine.analyze_bytes(path, bytes, lines, repo);
        // Skips are not stored: a time limit is not a property of the file, and the others are cheap to find.
        if outcome.skipped.is_none() {
            let depends = outcome
                .kind
                .is_some_and(|k| reads_context(engine, path, k, &text));
            self.save(&key, &outcome, depends.then(context).map(String::as_str));
        }
        outcome
    }

    fn read_entry(&self, key: &Hash) -> Option<Entry> {
        let path = self.entry_path(key)?;
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.warn(&format!("cannot read {}: {e}", path.display()));
                return None;
            }
        };
        let mut bytes = Vec::new();
        if let Err(e) = (&mut file)
            .take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut bytes)
        {
            self.warn(&format!("cannot read {}: {e}", path.display()));
            return None;
        }
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            self.warn(&format!(
                "{} is larger than {MAX_ENTRY_BYTES} bytes (damaged)",
                path.display()
            ));
            return None;
        }
        match serde_json::from_slice::<Entry>(&bytes) {
            Ok(entry) if entry.key == hex::encode(key) => Some(entry),
            Ok(_) => {
                self.warn(&format!("{} holds another entry (damaged)", path.display()));
                None
            }
            Err(e) => {
                self.warn(&format!("{} is damaged: {e}", path.display()));
                None
            }
        }
    }

    /// The stored result under `key`, when its context (if it has one) is the current one; and whether it has one.
    fn load<'c>(
        &self,
        key: &Hash,
        context: impl FnOnce() -> &'c String,
    ) -> Option<(FileOutcome, bool)> {
        let entry = self.read_entry(key)?;
        if let Some(c) = &entry.context
            && c != context()
        {
            return None;
        }
        if entry.code.len() != entry.findings.len() || entry.code_cut.len() != entry.findings.len()
        {
            self.warn("a cache entry is damaged (code frames do not match its findings)");
            return None;
        }
        let findings = entry
            .findings
            .into_iter()
            .zip(entry.code)
            .zip(entry.code_cut)
            .map(|((mut f, code), cut)| {
                f.code = code;
                f.code_cut = cut;
                f
            })
            .collect();
        let outcome = FileOutcome {
            findings,
            suppressed: entry.suppressed,
            kind: entry.kind,
            skipped: None,
            not_service: entry.not_service,
            left_out: entry.left_out,
        };
        Some((outcome, entry.context.is_some()))
    }

    fn save(&self, key: &Hash, outcome: &FileOutcome, context: Option<&str>) {
        if !self.writable.load(Ordering::Relaxed) {
            return;
        }
        let Some(path) = self.entry_path(key) else {
            return;
        };
        let entry = Entry {
            key: hex::encode(key),
            context: context.map(str::to_string),
            kind: outcome.kind,
            findings: outcome.findings.clone(),
            code: outcome.findings.iter().map(|f| f.code.clone()).collect(),
            code_cut: outcome.findings.iter().map(|f| f.code_cut).collect(),
            suppressed: outcome.suppressed,
            not_service: outcome.not_service,
            left_out: outcome.left_out,
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else {
            return;
        };
        if bytes.len() as u64 > MAX_ENTRY_BYTES {
            return; // a result this large is cheaper to compute again than to keep
        }
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        match write_atomic(&path, &bytes, n) {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.writable.store(false, Ordering::Relaxed);
                self.warn(&format!("cannot write {}: {e}", path.display()));
            }
        }
    }

    /// Keep the store within [`MAX_ENTRIES`] and report what the cache did.
    pub fn finish(self) -> CacheStats {
        let mut stats = CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            analysed: self.analysed.load(Ordering::Relaxed),
            written: self.written.load(Ordering::Relaxed),
            evicted: 0,
        };
        if stats.written > 0
            && let Some(store) = &self.store
        {
            let used = self.used.lock().map(|u| u.clone()).unwrap_or_default();
            stats.evicted = prune(store, &used, MAX_ENTRIES);
        }
        stats
    }
}

/// Make sure `root/.prodaudit_cache/v1` can be used: a real folder (created with its `.gitignore` and
/// `CACHEDIR.TAG` when missing), not a symbolic link, not tracked by git.
fn prepare(root: &Path, git: bool) -> Result<PathBuf, String> {
    let top = root.join(DIR_NAME);
    match std::fs::symlink_metadata(&top) {
        Ok(m) if m.file_type().is_dir() => {}
        Ok(_) => {
            return Err(format!(
                "{} is not a folder (a file or a symbolic link)",
                top.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&top)
                .map_err(|e| format!("cannot create {}: {e}", top.display()))?;
        }
        Err(e) => return Err(format!("cannot read {}: {e}", top.display())),
    }
    if git && tracked_by_git(root)? {
        return Err(format!(
            "git tracks files in {} (a cache that comes with the repository could hide findings)",
            top.display()
        ));
    }
    for (name, text) in [
        (
            ".gitignore",
            "# Created by prodaudit: this folder is a cache.\n*\n",
        ),
        ("CACHEDIR.TAG", CACHEDIR_TAG),
    ] {
        let path = top.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            write_atomic(&path, text.as_bytes(), 0)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    let store = top.join(LAYOUT);
    match std::fs::symlink_metadata(&store) {
        Ok(m) if m.file_type().is_dir() => Ok(store),
        Ok(_) => Err(format!("{} is not a folder", store.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&store)
                .map_err(|e| format!("cannot create {}: {e}", store.display()))?;
            Ok(store)
        }
        Err(e) => Err(format!("cannot read {}: {e}", store.display())),
    }
}

/// Does git track anything under the cache folder of the work tree at `root`?
fn tracked_by_git(root: &Path) -> Result<bool, String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z", "--", DIR_NAME])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if !out.status.success() {
        return Err("git ls-files failed".into());
    }
    Ok(!out.stdout.is_empty())
}

/// Write `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, bytes: &[u8], n: usize) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("no parent folder"))?;
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let temp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(bytes)?;
        drop(f);
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Is `name` one of our entry files (`<64 hex>.json`)?
fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(".json")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Remove left-over temporary files, and, when the store holds more than `max` entries, the oldest ones (by
/// modification time) not in `keep` until 3/4 of `max` remain. Only our own file names in our own two-hex-digit
/// folders are ever removed. Returns the number of entries removed.
fn prune(store: &Path, keep: &HashSet<Hash>, max: usize) -> usize {
    let Ok(shards) = std::fs::read_dir(store) else {
        return 0;
    };
    let mut entries: Vec<PathBuf> = Vec::new();
    for shard in shards.flatten() {
        let name = shard.file_name();
        let name = name.to_string_lossy();
        if name.len() != 2
            || !name.bytes().all(|b| b.is_ascii_hexdigit())
            || !shard.file_type().is_ok_and(|t| t.is_dir())
        {
            continue;
        }
        let Ok(files) = std::fs::read_dir(shard.path()) else {
            continue;
        };
        for f in files.flatten() {
            let fname = f.file_name();
            let fname = fname.to_string_lossy();
            if is_entry_name(&fname) {
                entries.push(f.path());
            } else if fname.starts_with(".tmp-")
                && f.metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > STALE_TEMP)
            {
                let _ = std::fs::remove_file(f.path());
            }
        }
    }
    if entries.len() <= max {
        return 0;
    }
    let target = max / 4 * 3;
    let total = entries.len();
    let mut aged: Vec<(std::time::SystemTime, PathBuf)> = entries
        .into_iter()
        .filter(|p| {
            let key = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| hex::decode(s).ok())
                .and_then(|v| Hash::try_from(v).ok());
            key.is_none_or(|k| !keep.contains(&k))
        })
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    let excess = total.saturating_sub(target);
    aged.sort();
    let mut removed = 0;
    for (_, p) in aged.into_iter().take(excess) {
        if std::fs::remove_file(&p).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the analysis sources: a file in which a check reads `ctx.repo` (or any `.repo`) or the lines under
    /// review (`ctx.lines`) must have all its checks in [`LOOKS_BEYOND_FILE`], and define checks at all (a helper
    /// file reading them could serve any check).
    #[test]
    fn every_check_that_looks_beyond_its_file_is_listed() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/analysis");
        // The engine, the repository context itself, rule loading and the rule examples build or hand over the
        // context; they define no checks.
        let skip = [
            "context.rs",
            "engine.rs",
            "rules.rs",
            "examples.rs",
            "mod.rs",
        ];
        let looks = regex::Regex::new(r"\.repo\b|\.lines\b([^(]|$)");
        let literal = regex::Regex::new(r#""([^"\\]+)""#);
        let (Ok(looks), Ok(literal)) = (looks, literal) else {
            panic!("bad test regex");
        };
        let mut stack = vec![root.clone()];
        let mut files = Vec::new();
        while let Some(dir) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    files.push(p);
                }
            }
        }
        assert!(files.len() > 20, "the analysis sources were not found");
        let mut checked = 0;
        let mut listed_seen = 0;
        for f in files {
            let rel = f
                .strip_prefix(&root)
                .unwrap_or(&f)
                .to_string_lossy()
                .into_owned();
            if skip.contains(&rel.as_str()) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&f) else {
                panic!("cannot read {}", f.display());
            };
            // Only code: not comments, not the test module.
            let code: Vec<&str> = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            let impls = code.iter().filter(|l| l.contains("impl Check for")).count();
            checked += impls;
            let reading: Vec<&str> = code.iter().copied().filter(|l| looks.is_match(l)).collect();
            if reading.is_empty() {
                continue;
            }
            assert!(
                impls > 0,
                "{rel} reads the repository context or the lines under review but defines no check: \
                 the cache cannot tell which checks depend on it ({reading:?})"
            );
            // Every string an `id()` of this file can return: the lines of each `fn id` up to its end.
            let mut ids = Vec::new();
            let mut in_id = false;
            for l in &code {
                if l.contains("fn id(&self)") {
                    in_id = true;
                }
                if in_id {
                    ids.extend(
                        literal
                            .captures_iter(l)
                            .filter_map(|c| c.get(1))
                            .map(|m| m.as_str()),
                    );
                    if l.trim() == "}" {
                        in_id = false;
                    }
                }
            }
            assert!(
                ids.len() >= impls,
                "{rel}: the checks' ids must be readable here"
            );
            for i in ids {
                assert!(
                    LOOKS_BEYOND_FILE.contains(&i),
                    "{rel}: check `{i}` reads {reading:?}: add it to cache::LOOKS_BEYOND_FILE"
                );
                listed_seen += 1;
            }
        }
        assert_eq!(
            listed_seen,
            LOOKS_BEYOND_FILE.len(),
            "every listed check was found reading"
        );
        assert!(checked > 50, "only {checked} checks found");
    }

    #[test]
    fn entry_names() {
        assert!(is_entry_name(&format!("{}.json", "ab".repeat(32))));
        assert!(!is_entry_name(&format!("{}.json", "ab".repeat(31))));
        assert!(!is_entry_name(&format!("{}.json", "zz".repeat(32))));
        assert!(!is_entry_name("notes.txt"));
    }

    #[test]
    fn prune_keeps_the_newest_and_the_used_and_touches_nothing_else() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string());
        let Ok(dir) = dir else {
            panic!("no temp dir");
        };
        let store = dir.path();
        let shard = store.join("ab");
        std::fs::create_dir(&shard).ok();
        let mut keys = Vec::new();
        for i in 0..12u8 {
            let mut key = [0u8; 32];
            key[0] = 0xab;
            key[31] = i;
            let path = shard.join(format!("{}.json", hex::encode(key)));
            std::fs::write(&path, b"{}").ok();
            // Distinct, increasing modification times: entry i is older than entry i + 1.
            let t =
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + u64::from(i));
            if let Ok(f) = std::fs::File::options().write(true).open(&path) {
                f.set_modified(t).ok();
            }
            keys.push(key);
        }
        // Not ours: must survive.
        std::fs::write(shard.join("README"), b"x").ok();
        std::fs::write(store.join("other.json"), b"x").ok();
        let keep: HashSet<Hash> = [keys[0]].into_iter().collect();
        let removed = prune(store, &keep, 8);
        // 8 / 4 * 3 = 6 kept: the used (oldest) one and the five newest.
        assert_eq!(removed, 6);
        let left: Vec<bool> = keys
            .iter()
            .map(|k| shard.join(format!("{}.json", hex::encode(k))).exists())
            .collect();
        assert!(left[0], "an entry this run used is never evicted");
        assert_eq!(left[1..7], [false; 6]);
        assert_eq!(left[7..], [true; 5]);
        assert!(shard.join("README").exists());
        assert!(store.join("other.json").exists());
        // Within bounds: nothing removed.
        assert_eq!(prune(store, &keep, 8), 0);
    }

    #[test]
    fn keys_tell_lines_paths_and_contents_apart() {
        let base = BaseKey([7; 32]);
        let k = |path: &str, lines: Option<&LineSet>, bytes: &[u8]| {
            file_key(
                base,
                path,
                None,
                lines,
                bytes,
                &ModelView {
                    standing: crate::analysis::semantic::reach::Standing::Service,
                    dead: &[],
                    startup_only: &[],
                    facts: &[],
                },
            )
        };
        let mut one = LineSet::new();
        one.insert_range(1, 1);
        let mut two = LineSet::new();
        two.insert_range(1, 2);
        let all = k("a.py", None, b"x");
        assert_ne!(all, k("b.py", None, b"x"));
        assert_ne!(all, k("a.py", None, b"y"));
        assert_ne!(all, k("a.py", Some(&one), b"x"));
        assert_ne!(k("a.py", Some(&one), b"x"), k("a.py", Some(&two), b"x"));
        assert_eq!(all, k("a.py", None, b"x"));
        // Field boundaries count: "ab" + "c" is not "a" + "bc".
        assert_ne!(k("ab", None, b"c"), k("a", None, b"bc"));
    }
}
