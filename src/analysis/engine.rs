//! The analysis engine: one file in, findings out. Each file is parsed once; every detector that the file's
//! tokens make worth running is dispatched in a single walk of the tree by node kind.

use super::checks::CheckMatch;
use super::context::{FileContext, RepoContext};
use super::language::{self, FileKind, Lang};
use super::limits::{self, Deadline, DeadlineGuard};
use super::nodes::NodeIndex;
use super::rules::{Detector, Matcher, Role, RuleSet, Scope};
use super::semantic;
use super::semantic::dockerfile;
use super::semantic::python::text::{Cut, shorten};
use super::semantic::yaml::{self, YamlFile};
use super::suppress::Suppressions;
use super::timings::Timings;
use crate::diff::LineSet;
use crate::report::{Finding, Fix, Severity};
use ast_grep_core::matcher::{Matcher as _, MatcherExt as _};
use ast_grep_core::tree_sitter::LanguageExt;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Files larger than this are skipped (minified bundles, generated code, data dumps).
pub const DEFAULT_MAX_FILE_BYTES: usize = super::plan::MAX_FILE_BYTES;

/// Per-repository choices that change what the engine reports.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Rule ids (`C5`) or check ids switched off.
    pub disabled: HashSet<String>,
    /// Severity by rule id or check id; a check id wins over its rule id.
    pub severity: HashMap<String, Severity>,
    /// Opt-in detectors (and rules whose opt-in detectors) switched on.
    pub enabled: HashSet<String>,
    /// Paths that are the service even where their path class says otherwise (`paths.service`).
    pub service: Option<globset::GlobSet>,
    /// More paths that are not the running service (`paths.not_service`).
    pub not_service: Option<globset::GlobSet>,
    /// Report findings in code that is not the service as well (`paths.report_not_service`).
    pub report_not_service: bool,
    /// The globs `service` and `not_service` were built from, as written (to hand them to another process).
    pub service_globs: Vec<String>,
    pub not_service_globs: Vec<String>,
}

/// A glob set from patterns; `None` for none.
pub fn glob_set(patterns: &[String]) -> Result<Option<globset::GlobSet>, globset::Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = globset::GlobSetBuilder::new();
    for g in patterns {
        b.add(globset::Glob::new(g)?);
    }
    b.build().map(Some)
}

impl Overrides {
    /// Why findings of this file are held back, when the file is not the running service.
    /// The repository model says it too, for a Python module no entry point reaches or that a package shadows, and
    /// in a whole-file audit (`whole_file`) for an applied migration (a change that edits one is reviewed).
    pub fn not_service_reason(
        &self,
        path: &str,
        text: &str,
        repo: &RepoContext,
        whole_file: bool,
    ) -> Option<&'static str> {
        if self.report_not_service || self.service.as_ref().is_some_and(|g| g.is_match(path)) {
            return None;
        }
        if self.not_service.as_ref().is_some_and(|g| g.is_match(path)) {
            return Some("named in paths.not_service");
        }
        semantic::paths::not_service_reason(path, Some(text)).or_else(|| {
            match repo.standing(path) {
                semantic::reach::Standing::Applied if !whole_file => None,
                standing => standing.reason(),
            }
        })
    }
}

/// What became of one file.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub findings: Vec<Finding>,
    pub suppressed: usize,
    /// The file's kind, when prodaudit knows it.
    pub kind: Option<FileKind>,
    /// Why it was not analysed, if it was not.
    pub skipped: Option<String>,
    /// Findings held back because the file (or the function) is not the running service (a script, an
    /// example, a test, a development Compose file, a module no entry point reaches, a function nothing calls …);
    /// `paths.report_not_service: true` reports them.
    pub not_service: usize,
    /// Findings left out because the file had more than [`limits::MAX_FINDINGS_PER_FILE`].
    pub left_out: usize,
}

impl FileOutcome {
    fn skipped(kind: Option<FileKind>, reason: String) -> Self {
        FileOutcome {
            kind,
            skipped: Some(reason),
            ..Default::default()
        }
    }
}

pub struct Engine {
    pub rules: Arc<RuleSet>,
    pub overrides: Overrides,
    pub max_file_bytes: usize,
    /// Analysis time per file ([`limits::file_time_limit`]); a file that runs over is skipped.
    pub time_limit: Duration,
    /// Findings reported per file ([`limits::MAX_FINDINGS_PER_FILE`]); the rest are counted in
    /// [`FileOutcome::left_out`].
    pub max_findings: usize,
    /// Where analysis time goes, when asked for (`--timings`).
    pub timings: Option<Arc<Timings>>,
}

/// A match before it becomes a finding.
struct RawMatch {
    detector: usize,
    range: Range<usize>,
    /// `None`: the detector's own message (most matches; not copied per match). Equal messages of one
    /// detector share one allocation: a file can have a hundred thousand matches.
    message: Option<Arc<str>>,
    fix: Option<(Range<usize>, String)>,
}

impl Engine {
    pub fn new(rules: impl Into<Arc<RuleSet>>, overrides: Overrides) -> Self {
        Engine {
            rules: rules.into(),
            overrides,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            time_limit: limits::file_time_limit(),
            max_findings: limits::MAX_FINDINGS_PER_FILE,
            timings: None,
        }
    }

    /// The engine for the old side of a change ([`super::moved`]): the same rules and choices, but every finding
    /// reported, the service or not (a function moved out of a module no entry point reaches is still moved).
    pub fn for_old_side(&self) -> Engine {
        let mut overrides = self.overrides.clone();
        overrides.report_not_service = true;
        Engine {
            rules: self.rules.clone(),
            overrides,
            max_file_bytes: self.max_file_bytes,
            time_limit: self.time_limit,
            max_findings: self.max_findings,
            timings: None,
        }
    }

    /// Count where analysis time goes from now on; read it back from [`Engine::timings`].
    pub fn with_timings(mut self) -> Self {
        self.timings = Some(Arc::new(Timings::new(self.rules.detectors.len())));
        self
    }

    /// Start a clock when timings are on.
    fn clock(&self) -> Option<Instant> {
        self.timings.as_ref().map(|_| Instant::now())
    }

    fn record(&self, started: Option<Instant>, what: impl FnOnce(&Timings, std::time::Duration)) {
        if let (Some(t), Some(s)) = (&self.timings, started) {
            what(t, s.elapsed());
        }
    }

    fn enabled(&self, d: &Detector) -> bool {
        let rule = &self.rules.rule_of(d).id;
        if d.opt_in
            && !(self.overrides.enabled.contains(&d.id) || self.overrides.enabled.contains(rule))
        {
            return false;
        }
        !(self.overrides.disabled.contains(&d.id) || self.overrides.disabled.contains(rule))
    }

    fn severity(&self, d: &Detector) -> Severity {
        let rule = &self.rules.rule_of(d).id;
        self.overrides
            .severity
            .get(&d.id)
            .or_else(|| self.overrides.severity.get(rule))
            .copied()
            .unwrap_or(d.severity)
    }

    /// Analyse a file given as bytes. `changed` limits findings to those touching these lines (a pull
    /// request's view); `None` reports every line.
    pub fn analyze_bytes(
        &self,
        path: &str,
        bytes: &[u8],
        changed: Option<&LineSet>,
        repo: &RepoContext,
    ) -> FileOutcome {
        let kind = language::detect(path, None);
        // YAML kinds need the text to be recognised; other unknown files are not ours.
        let maybe_yaml = path.ends_with(".yml") || path.ends_with(".yaml");
        if kind.is_none() && !maybe_yaml {
            return FileOutcome::default();
        }
        if let Some(reason) = super::plan::content_skip(bytes, self.max_file_bytes) {
            return FileOutcome::skipped(kind, reason);
        }
        let text = String::from_utf8_lossy(bytes);
        self.analyze_in(path, &text, changed, repo, None)
    }

    /// Analyse one file's text on its own (no repository around it).
    pub fn analyze(&self, path: &str, text: &str, changed: Option<&LineSet>) -> FileOutcome {
        self.analyze_in(path, text, changed, &RepoContext::default(), None)
    }

    /// Globs of the repository files the enabled checks read besides the analysed files.
    pub fn needed_files(&self) -> Vec<&'static str> {
        let mut globs: Vec<&'static str> = self
            .rules
            .detectors
            .iter()
            .filter(|d| self.enabled(d))
            .filter_map(|d| match &d.matcher {
                Matcher::Check(c) => Some(c.needs()),
                Matcher::Pattern(_) => None,
            })
            .flatten()
            .copied()
            .collect();
        globs.sort_unstable();
        globs.dedup();
        globs
    }

    /// Analyse with every enabled detector, or with one detector only (examples and rule tests), with the
    /// repository around the file. A file over a limit (nesting, time) is skipped with the reason, and a
    /// detector that panics skips its file instead of taking the process down.
    pub fn analyze_in(
        &self,
        path: &str,
        text: &str,
        changed: Option<&LineSet>,
        repo: &RepoContext,
        only: Option<usize>,
    ) -> FileOutcome {
        let Some(kind) = repo.kind_of(path, Some(text)) else {
            return FileOutcome::default();
        };
        if changed.is_some_and(|c| c.is_empty()) {
            return FileOutcome {
                kind: Some(kind),
                ..Default::default()
            };
        }
        if let Some(reason) = too_deep(kind, text) {
            return FileOutcome::skipped(Some(kind), reason);
        }
        let deadline = Deadline::after(self.time_limit);
        let _current = DeadlineGuard::set(&deadline);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.analyze_kind(path, kind, text, changed, repo, only, &deadline)
        }));
        match run {
            Ok(_) if deadline.passed() => FileOutcome::skipped(
                Some(kind),
                format!(
                    "analysis took longer than the {} s limit",
                    self.time_limit.as_secs_f64()
                ),
            ),
            Ok(outcome) => outcome,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(path, panic = %what, "a detector panicked; the file is skipped");
                FileOutcome::skipped(
                    Some(kind),
                    format!(
                        "internal error while analysing ({}); please report it",
                        limits::cut_chars(&what, 200)
                    ),
                )
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn analyze_kind(
        &self,
        path: &str,
        kind: FileKind,
        text: &str,
        changed: Option<&LineSet>,
        repo: &RepoContext,
        only: Option<usize>,
        deadline: &Deadline,
    ) -> FileOutcome {
        let mut outcome = FileOutcome {
            kind: Some(kind),
            ..Default::default()
        };
        // The YAML model is parsed here, once: it says whether the file can be analysed at all, and the checks
        // read the same parse (seeded into the file's index).
        let yaml_model = matches!(
            kind,
            FileKind::Compose | FileKind::Kubernetes | FileKind::Helm
        )
        .then(|| yaml::parse(text));
        let unparseable = match &yaml_model {
            Some(model) => yaml::unparseable_model(model, text),
            None if kind == FileKind::Dockerfile => dockerfile::unparseable(text),
            None => None,
        };
        if let Some(reason) = unparseable {
            outcome.skipped = Some(reason);
            return outcome;
        }
        let started = self.clock();
        let seen = self.rules.scan_tokens(text);
        self.record(started, Timings::scanned);
        let wanted: Vec<usize> = self
            .rules
            .detectors
            .iter()
            .enumerate()
            .filter(|(i, d)| {
                // Cheapest first: token lookups, then the path globs, then the detector's regex.
                // One detector asked for by name (its examples) runs even when it is opt-in.
                only.map_or_else(
                    || self.enabled(d),
                    |o| o == *i && (d.opt_in || self.enabled(d)),
                ) && d.wanted(&seen)
                    && d.applies_to(path, kind)
                    && d.wanted_in(&seen, text)
            })
            .map(|(i, _)| i)
            .collect();
        if wanted.is_empty() {
            return outcome;
        }
        let ctx = FileContext {
            path,
            kind,
            repo,
            lines: changed,
            nodes: None,
        };
        let raw = match kind.lang() {
            Some(lang) => match self.run_detectors(lang, text, &wanted, &ctx, yaml_model, deadline)
            {
                Ok(raw) => raw,
                Err(reason) => {
                    outcome.skipped = Some(reason);
                    return outcome;
                }
            },
            None => self.run_text_checks(text, &wanted, &ctx, deadline),
        };
        if raw.is_empty() || deadline.passed() {
            return outcome;
        }
        let lines = LineIndex::new(text);
        let suppressions = Suppressions::scan(text);
        let not_service = self
            .overrides
            .not_service_reason(path, text, repo, changed.is_none());
        // A Python module's `if __name__ == "__main__":` block is not the service either (a demo, a manual
        // test, a launcher), nor is a function nothing in the service calls (the repository model says which);
        // worked out only when a finding needs it, and not when the repository asks for findings in code that
        // is not the service. Every severity is held back: a comment there is wrong however true.
        // Held-back ranges, each with the least severity it holds back.
        let mut held_blocks: Option<Vec<(std::ops::Range<usize>, Severity)>> = None;
        let mut startup_blocks: Option<Vec<std::ops::Range<usize>>> = None;
        let report_scripts = self.overrides.report_not_service;
        let mut occurrences: HashMap<(usize, [u8; 32]), usize> = HashMap::new();
        let mut raw = raw;
        raw.sort_by_key(|m| (m.range.start, m.detector));
        raw.dedup_by_key(|m| (m.range.clone(), m.detector));
        // Positions are counted on from the previous match (matches come sorted by start), so a line with
        // thousands of matches is walked once, not once per match.
        let mut prev = None;
        for (k, m) in raw.into_iter().enumerate() {
            if k % POLL_EVERY == 0 && deadline.passed() {
                return outcome;
            }
            let d = &self.rules.detectors[m.detector];
            let rule = self.rules.rule_of(d);
            let start = lines.position_near(text, prev, m.range.start);
            prev = Some(start);
            let (_, line, column) = start;
            let (_, end_line, end_column) = lines.position_near(text, prev, m.range.end);
            // Fingerprint from the detector, path and the matched code, numbered among identical code, so
            // moving unrelated lines does not change it. The code is hashed where it lies, never copied: a
            // match can be a whole megabyte-long line.
            let code = &text[m.range.clone()];
            let n = occurrences
                .entry((m.detector, normalized_digest(code)))
                .or_insert(0);
            *n += 1;
            let occurrence = *n;
            if suppressions.covers(line, &rule.id, &d.id) {
                outcome.suppressed += 1;
                continue;
            }
            // A finding is the change's only when its anchor — the first line of what it names (the call's
            // callee, the statement's first line) — was added or modified: editing the prompt text inside an
            // old multi-line call does not make the call's old problem the change's.
            if let Some(changed) = changed
                && !changed.contains(line)
            {
                continue;
            }
            // Silent where the application itself removes the harm (its error handler replaces a 500's detail).
            if let Some(w) = &d.silent_with
                && repo.fact(w.fact, path) == Some(true)
                && text
                    .get(m.range.clone())
                    .is_some_and(|t| w.matching.is_match(t))
            {
                continue;
            }
            // Silent where the harm needs something the repository model knows the service lacks, unless the
            // configuration set the detector's severity (it asked for the finding).
            if d.silent_without
                .is_some_and(|f| repo.fact(f, path) == Some(false))
                && !self.overrides.severity.contains_key(&d.id)
                && !self.overrides.severity.contains_key(&rule.id)
            {
                continue;
            }
            let mut severity = self.severity(d);
            // Lower where the repository model says the harm cannot happen, unless the configuration set it.
            let lowered = d.lower_without.as_ref().filter(|l| {
                !self.overrides.severity.contains_key(&d.id)
                    && !self.overrides.severity.contains_key(&rule.id)
                    && repo.fact(l.fact, path) == Some(false)
                    && l.severity < severity
            });
            if let Some(l) = lowered {
                severity = l.severity;
            }
            if not_service.is_some() {
                outcome.not_service += 1;
                continue;
            }
            // Functions nothing calls and development-only branches hold back every finding; a `__main__` block
            // only critical/high ones (it is also how `python main.py` launches a service, which the launcher's
            // own detectors are about).
            if !report_scripts
                && path.ends_with(".py")
                && held_blocks
                    .get_or_insert_with(|| {
                        let main_guards =
                            crate::analysis::semantic::python::scopes::main_guard_ranges(text)
                                .into_iter()
                                .map(|b| (b, Severity::High));
                        let dead = repo
                            .dead_functions(path)
                            .iter()
                            .filter_map(|(_, l)| semantic::uses::block_at_line(text, *l))
                            .map(|b| (b, Severity::Low));
                        // Blocks that run only outside production (`if settings.ENV == "dev":`) hold
                        // back every finding: production never runs them.
                        let dev_only =
                            crate::analysis::semantic::python::scopes::dev_only_ranges(text)
                                .into_iter()
                                .map(|b| (b, Severity::Low));
                        main_guards.chain(dead).chain(dev_only).collect()
                    })
                    .iter()
                    .any(|(b, from)| severity >= *from && b.contains(&m.range.start))
            {
                outcome.not_service += 1;
                continue;
            }
            // A detector that leaves start-up alone (`except_in: [startup]`) leaves alone what only start-up
            // calls, in any module (the repository model's call graph by names).
            if d.except_in.contains(&Role::Startup)
                && path.ends_with(".py")
                && startup_blocks
                    .get_or_insert_with(|| {
                        repo.startup_only_functions(path)
                            .iter()
                            .filter_map(|(_, l)| semantic::uses::block_at_line(text, *l))
                            .collect()
                    })
                    .iter()
                    .any(|b| b.contains(&m.range.start))
            {
                continue;
            }
            if outcome.findings.len() >= self.max_findings {
                outcome.left_out += 1;
                continue;
            }
            let fingerprint = fingerprint_of(&d.id, path, code, occurrence);
            let fix = m.fix.map(|(r, replacement)| {
                let (_, fl, fc) = lines.position_near(text, prev, r.start);
                let (_, el, ec) = lines.position_near(text, prev, r.end);
                Fix {
                    line: fl,
                    column: fc,
                    end_line: el,
                    end_column: ec,
                    replacement,
                }
            });
            let mut code_cut = None;
            let code = (line..=end_line.min(line + 4))
                .filter_map(|l| lines.line_text(text, l).zip(lines.start_of(l)))
                .enumerate()
                .map(|(i, (l, at))| {
                    let from = if i == 0 {
                        (m.range.start.saturating_sub(at), column)
                    } else {
                        (0, 1)
                    };
                    let (shown, cut) = frame_line(l, from);
                    if i == 0 {
                        code_cut = cut;
                    }
                    shown
                })
                .collect();
            outcome.findings.push(Finding {
                rule: rule.id.clone(),
                check: d.id.clone(),
                severity,
                path: path.to_string(),
                line,
                end_line,
                column,
                end_column,
                message: {
                    let message = match m.message {
                        None => d.message.clone(),
                        Some(own) => {
                            limits::cut_chars(&own, limits::MAX_MESSAGE_CHARS).into_owned()
                        }
                    };
                    match lowered {
                        Some(l) => format!("{message} ({})", l.note),
                        None => message,
                    }
                },
                standard: rule.title.clone(),
                conforming: d
                    .conforming
                    .clone()
                    .unwrap_or_else(|| rule.conforming.clone()),
                fingerprint,
                fix,
                code,
                code_cut,
            });
        }
        if kind.lang() == Some(Lang::Python) {
            outcome.findings = one_per_cause(std::mem::take(&mut outcome.findings), text, &lines);
        }
        outcome
    }

    /// Parse once and run the wanted detectors: ast-grep rules in one walk dispatched by node kind, then the
    /// Rust checks over the same tree.
    fn run_detectors(
        &self,
        lang: Lang,
        text: &str,
        wanted: &[usize],
        ctx: &FileContext<'_>,
        yaml_model: Option<YamlFile>,
        deadline: &Deadline,
    ) -> Result<Vec<RawMatch>, String> {
        let started = self.clock();
        let root = lang.ast_grep(text);
        self.record(started, Timings::parsed);
        let started = self.clock();
        let tree = root.root();
        // Chains (`a.b().c()…`, `1 + 1 + …`) make trees as deep as the file without nesting a bracket;
        // walks that go up a tree cost its depth per step. Turned away here, before any detector walks it.
        let index = NodeIndex::build_within_depth(&root, limits::MAX_TREE_DEPTH).map_err(|at| {
            format!(
                "its syntax tree is nested deeper than {} levels (at line {})",
                limits::MAX_TREE_DEPTH,
                at + 1
            )
        })?;
        self.record(started, Timings::indexed);
        if let Some(model) = yaml_model {
            index.memo(move || model);
        }
        let ctx = &FileContext {
            path: ctx.path,
            kind: ctx.kind,
            repo: ctx.repo,
            lines: ctx.lines,
            nodes: Some(&index),
        };
        let mut by_kind: Vec<Vec<usize>> = Vec::new();
        let mut out = Vec::new();
        for &i in wanted {
            match &self.rules.detectors[i].matcher {
                Matcher::Pattern(config) => {
                    if let Some(kinds) = config.matcher.potential_kinds() {
                        for k in kinds.iter() {
                            if by_kind.len() <= k {
                                by_kind.resize(k + 1, Vec::new());
                            }
                            by_kind[k].push(i);
                        }
                    }
                }
                Matcher::Check(check) => {
                    if deadline.passed() {
                        return Ok(out);
                    }
                    let mut found = Vec::new();
                    let started = self.clock();
                    check.run(&tree, ctx, &mut found);
                    except_in(&self.rules.detectors[i].except_in, &tree, ctx, &mut found);
                    self.record(started, |t, d| t.detector(i, d));
                    self.check_matches(i, text, found, &mut out);
                }
            }
        }
        if by_kind.is_empty() {
            return Ok(out);
        }
        let dispatch = by_kind
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_empty())
            .flat_map(|(k, candidates)| {
                let nodes = u16::try_from(k).map_or(&[][..], |k| index.of_kind_id(k));
                nodes.iter().map(move |n| (n, candidates))
            });
        let mut gates: HashMap<usize, bool> = HashMap::new();
        let mut imports: Option<std::rc::Rc<crate::analysis::semantic::python::imports::Imports>> =
            None;
        let mut last_message: HashMap<usize, Arc<str>> = HashMap::new();
        for (k, (node, candidates)) in dispatch.enumerate() {
            if k % POLL_EVERY == 0 && deadline.passed() {
                return Ok(out);
            }
            for &i in candidates {
                let d = &self.rules.detectors[i];
                let Matcher::Pattern(config) = &d.matcher else {
                    continue;
                };
                if let Some(tokens) = &d.node_tokens
                    && let Some(own) = text.get(node.range())
                    && !tokens.iter().any(|t| own.contains(t.as_str()))
                {
                    continue;
                }
                let started = self.clock();
                let matched = config.matcher.match_node(node.clone());
                self.record(started, |t, d| t.detector(i, d));
                let Some(nm) = matched else {
                    continue;
                };
                // The rule's conditions on the whole file: once per file, when a node first matches the rest.
                if !d.file_gates.is_empty() {
                    let passes = *gates.entry(i).or_insert_with(|| {
                        let started = self.clock();
                        let passes = d.file_gates.iter().all(|g| g.passes(&tree));
                        self.record(started, |t, d| t.detector(i, d));
                        passes
                    });
                    if !passes {
                        continue;
                    }
                }
                // Names the rule asks for by their qualified name (`qualified`): resolved through the imports.
                if !d.qualified.is_empty() {
                    let imports = imports.get_or_insert_with(|| ctx.imports(&tree));
                    let env = nm.get_env();
                    let all = d.qualified.iter().all(|(var, re)| {
                        env.get_match(var).is_some_and(|n| {
                            re.is_match(&imports.resolve(
                                &crate::analysis::semantic::python::imports::squash(&n.text()),
                            ))
                        })
                    });
                    if !all {
                        continue;
                    }
                }
                // Code the parser could not make sense of yields no findings: precision first.
                if nm.get_node().get_inner_node().has_error() {
                    continue;
                }
                if d.scope == Scope::Async
                    && !crate::analysis::semantic::python::in_async_context(nm.get_node())
                {
                    continue;
                }
                // Roles of the enclosing functions the detector leaves alone (`except_in`), from the semantic model.
                if crate::analysis::semantic::python::roles::inside_role(
                    nm.get_node(),
                    &d.except_in,
                ) {
                    continue;
                }
                let message = d.message.contains('$').then(|| {
                    let text = interpolate(&d.message, &nm);
                    match last_message.get(&i) {
                        Some(last) if **last == *text => last.clone(),
                        _ => {
                            let shared: Arc<str> = text.into();
                            last_message.insert(i, shared.clone());
                            shared
                        }
                    }
                });
                let fix = config.fixer.first().and_then(|fixer| {
                    if let Some(needle) = &d.fix_if_file_contains
                        && !text.contains(needle.as_str())
                    {
                        return None;
                    }
                    let edit = nm.make_edit(&config.matcher, fixer);
                    let replacement = String::from_utf8(edit.inserted_text).ok()?;
                    let end = edit.position.checked_add(edit.deleted_length)?;
                    (end <= text.len()).then_some((edit.position..end, replacement))
                });
                out.push(RawMatch {
                    detector: i,
                    range: nm.get_node().range(),
                    message,
                    fix,
                });
            }
        }
        Ok(out)
    }
}

impl Engine {
    /// Run the wanted checks over a file no grammar parses (e.g. `.env.example`), as text.
    fn run_text_checks(
        &self,
        text: &str,
        wanted: &[usize],
        ctx: &FileContext<'_>,
        deadline: &Deadline,
    ) -> Vec<RawMatch> {
        let mut out = Vec::new();
        for &i in wanted {
            if deadline.passed() {
                return out;
            }
            let Matcher::Check(check) = &self.rules.detectors[i].matcher else {
                continue;
            };
            let mut found = Vec::new();
            let started = self.clock();
            check.run_text(text, ctx, &mut found);
            self.record(started, |t, d| t.detector(i, d));
            self.check_matches(i, text, found, &mut out);
        }
        out
    }

    /// A Rust check's matches as raw matches of detector `i`: its own message (else the detector's), and only ranges
    /// that cut the text at characters (checks over rewritten text could miss).
    fn check_matches(&self, i: usize, text: &str, found: Vec<CheckMatch>, out: &mut Vec<RawMatch>) {
        let on_chars = |r: &Range<usize>| {
            r.start <= r.end && text.is_char_boundary(r.start) && text.is_char_boundary(r.end)
        };
        out.extend(
            found
                .into_iter()
                .filter(|c| on_chars(&c.range) && c.fix.as_ref().is_none_or(|f| on_chars(&f.range)))
                .map(|c| RawMatch {
                    detector: i,
                    range: c.range,
                    message: c.message.map(Arc::from),
                    fix: c.fix.map(|f| (f.range, f.replacement)),
                }),
        );
    }
}

/// Drops a Rust check's matches that start inside a function playing one of `roles` (the rule file's `except_in`),
/// as the engine drops an ast-grep rule's: the roles are the semantic model's.
fn except_in<'r>(
    roles: &[Role],
    tree: &crate::analysis::nodes::PyNode<'r>,
    ctx: &FileContext<'r>,
    found: &mut Vec<CheckMatch>,
) {
    if roles.is_empty() || found.is_empty() {
        return;
    }
    let left_alone: Vec<Range<usize>> = ctx
        .of_kind(tree, "function_definition")
        .iter()
        .filter(|f| {
            roles
                .iter()
                .any(|&r| crate::analysis::semantic::python::roles::plays(f, r))
        })
        .map(|f| f.range())
        .collect();
    if !left_alone.is_empty() {
        found.retain(|m| !left_alone.iter().any(|r| r.contains(&m.range.start)));
    }
}

/// Replace `$VAR` and `$$$VAR` in a message with the matched code (one line, shortened).
fn interpolate<D: ast_grep_core::Doc>(
    message: &str,
    nm: &ast_grep_core::NodeMatch<'_, D>,
) -> String {
    if !message.contains('$') {
        return message.to_string();
    }
    let env = nm.get_env();
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        let dollars = after.chars().take_while(|&c| c == '$').count();
        let name_len = after[dollars..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .count();
        if name_len == 0 {
            out.push_str(&after[..dollars]);
            rest = &after[dollars..];
            continue;
        }
        let name = &after[dollars..dollars + name_len];
        // Only the start of the code is shown: a capture can be a whole megabyte-long line, not copied whole.
        let value = if dollars >= 3 {
            let mut joined = String::new();
            for (k, n) in env.get_multiple_matches(name).iter().enumerate() {
                if joined.len() > SHOWN_BYTES {
                    break;
                }
                if k > 0 {
                    joined.push_str(", ");
                }
                joined.push_str(prefix(&n.text(), SHOWN_BYTES));
            }
            joined
        } else {
            env.get_match(name)
                .map(|n| prefix(&n.text(), SHOWN_BYTES).to_string())
                .unwrap_or_default()
        };
        out.push_str(&shorten(&value, Cut::EXPRESSION));
        rest = &after[dollars + name_len..];
    }
    out.push_str(rest);
    out
}

/// Bytes of a captured piece of code looked at for a message (far more than the 60 characters shown).
const SHOWN_BYTES: usize = 4096;

/// At most `max` bytes of `s`, cut on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// 16 hex digits of SHA-256 over the detector, path, normalised code and occurrence number.
pub fn fingerprint(check: &str, path: &str, code: &str, occurrence: usize) -> String {
    let mut h = Sha256::new();
    for part in [check, path, code, &occurrence.to_string()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    let digest = h.finalize();
    hex::encode(&digest[..8])
}

/// [`fingerprint`] of `code` as written (its whitespace normalised while hashing, without a copy).
fn fingerprint_of(check: &str, path: &str, code: &str, occurrence: usize) -> String {
    let mut h = Sha256::new();
    for part in [check, path] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hash_normalized(&mut h, code);
    h.update([0u8]);
    h.update(occurrence.to_string().as_bytes());
    h.update([0u8]);
    let digest = h.finalize();
    hex::encode(&digest[..8])
}

/// Feed `code` with each run of whitespace as one space and none at the ends (what
/// `split_whitespace().join(" ")` gives), piece by piece.
fn hash_normalized(h: &mut Sha256, code: &str) {
    for (i, word) in code.split_whitespace().enumerate() {
        if i > 0 {
            h.update(b" ");
        }
        h.update(word.as_bytes());
    }
}

/// Identity of a match's normalised code, for numbering identical code.
fn normalized_digest(code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    hash_normalized(&mut h, code);
    h.finalize().into()
}

/// How often loops over nodes or matches look at the clock.
const POLL_EVERY: usize = 256;

/// Why a file is nested too deeply for the parsers and walks, checked on its text before any parse.
fn too_deep(kind: FileKind, text: &str) -> Option<String> {
    match kind.lang() {
        Some(Lang::Python) => limits::python_too_deep(text),
        Some(Lang::Yaml) => limits::yaml_too_deep(text),
        _ => None,
    }
}

/// A source line for a code frame: whole when it is short, else a window of about
/// [`limits::FRAME_WINDOW_CHARS`] characters around the match, marked with `…` where cut, and the number of
/// characters left out before the window. `at` is the match's start on the line as (byte offset, 1-based
/// character column).
fn frame_line(line: &str, at: (usize, usize)) -> (String, Option<usize>) {
    const MAX: usize = limits::MAX_FRAME_LINE_CHARS;
    // Bytes first: counting the characters of a megabyte-long line for each finding would be quadratic.
    if line.len() <= MAX || (line.len() <= 4 * MAX && line.chars().count() <= MAX) {
        return (line.to_string(), None);
    }
    let (byte, column) = at;
    let mut start = byte
        .min(line.len())
        .saturating_sub(limits::FRAME_WINDOW_CHARS / 4);
    while !line.is_char_boundary(start) {
        start -= 1;
    }
    let before = line.get(start..byte).map_or(0, |s| s.chars().count());
    let from = column.saturating_sub(1).saturating_sub(before);
    let end = line[start..]
        .char_indices()
        .nth(limits::FRAME_WINDOW_CHARS)
        .map_or(line.len(), |(e, _)| start + e);
    let lead = if start > 0 { "…" } else { "" };
    let tail = if end < line.len() { "…" } else { "" };
    (format!("{lead}{}{tail}", &line[start..end]), Some(from))
}

/// Most lines of one finding's `also on` list.
const MAX_ALSO_LINES: usize = 10;

/// One finding per cause: on one line, the most severe finding of each rubric rule (detectors of one rule that
/// fire together describe one problem); in one Python function, one finding per detector, its message listing the
/// other lines ("also on lines 12, 15") — a reviewer fixes the cause once, and four comments for it read as noise.
fn one_per_cause(findings: Vec<Finding>, text: &str, lines: &LineIndex) -> Vec<Finding> {
    // Same line, same rule, several detectors: only the most severe detector's findings stay (the first of
    // equals, findings being in source order). One detector's several matches on a line are distinct calls.
    let mut best: HashMap<(usize, &str), usize> = HashMap::new();
    for (i, f) in findings.iter().enumerate() {
        best.entry((f.line, f.rule.as_str()))
            .and_modify(|b| {
                if f.severity > findings[*b].severity {
                    *b = i;
                }
            })
            .or_insert(i);
    }
    let keep: HashSet<usize> = findings
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            best.get(&(f.line, f.rule.as_str()))
                .is_some_and(|&b| findings[b].check == f.check)
        })
        .map(|(i, _)| i)
        .collect();
    // Same detector, same function: the first keeps the others' lines.
    let scopes = if findings.len() > 1 {
        def_lines(text, lines)
    } else {
        Vec::new()
    };
    let mut first_of: HashMap<(String, usize), usize> = HashMap::new();
    let mut out: Vec<Finding> = Vec::new();
    let mut also: Vec<Vec<usize>> = Vec::new();
    for (i, f) in findings.into_iter().enumerate() {
        if !keep.contains(&i) {
            continue;
        }
        if let Some(&Some(def)) = scopes.get(f.line) {
            match first_of.get(&(f.check.clone(), def)) {
                Some(&at) => {
                    if out[at].line != f.line && also[at].last() != Some(&f.line) {
                        also[at].push(f.line);
                    }
                    continue;
                }
                None => {
                    first_of.insert((f.check.clone(), def), out.len());
                }
            }
        }
        out.push(f);
        also.push(Vec::new());
    }
    for (f, more) in out.iter_mut().zip(also) {
        if more.is_empty() {
            continue;
        }
        let mut shown: Vec<String> = more
            .iter()
            .take(MAX_ALSO_LINES)
            .map(usize::to_string)
            .collect();
        if more.len() > MAX_ALSO_LINES {
            shown.push(format!("{} more", more.len() - MAX_ALSO_LINES));
        }
        let word = if more.len() == 1 { "line" } else { "lines" };
        f.message = format!(
            "{} (also on {word} {} of this function)",
            f.message,
            shown.join(", ")
        );
    }
    out
}

/// How many other lines a finding's message says it also covers (the `also on` list [`one_per_cause`] writes);
/// 0 for a finding of one line.
pub fn also_count(message: &str) -> usize {
    let Some(list) = message
        .strip_suffix(" of this function)")
        .and_then(|m| m.rsplit_once(" (also on "))
        .map(|(_, list)| list)
    else {
        return 0;
    };
    let list = list
        .strip_prefix("lines ")
        .or_else(|| list.strip_prefix("line "))
        .unwrap_or(list);
    list.split(", ")
        .map(|part| match part.strip_suffix(" more") {
            Some(n) => n.parse().unwrap_or(0),
            None => usize::from(part.parse::<usize>().is_ok()),
        })
        .sum()
}

/// For every line (1-based index; `[0]` unused), the line of the `def` it belongs to: the innermost function
/// whose `def`/`async def` line is indented less than every line between. `None` at module level, in a class
/// body, and after a line at a lower indentation that is no `def` (a string's line at column 0 ends every
/// open function: nothing is merged into a wrong one). One pass over the file, from the text alone.
fn def_lines(text: &str, lines: &LineIndex) -> Vec<Option<usize>> {
    let mut out = vec![None];
    // Open functions: (indentation of the `def` line, its line number).
    let mut open: Vec<(usize, usize)> = Vec::new();
    // Brackets still open in a `def` header that spans lines (`) -> Response:` at the `def`'s own indentation
    // closes the header, not the function), and the lines left to read it.
    let mut header_depth = 0i32;
    let mut header_budget = 0usize;
    let mut l = 1;
    while let Some(t) = lines.line_text(text, l) {
        let trimmed = t.trim_start();
        if header_depth > 0 && header_budget > 0 {
            header_depth += bracket_balance(trimmed);
            header_budget -= 1;
            out.push(open.last().map(|&(_, d)| d));
        } else if !(trimmed.is_empty() || trimmed.starts_with('#')) {
            header_depth = 0;
            let indent = t.len() - trimmed.len();
            while open.last().is_some_and(|&(i, _)| i >= indent) {
                open.pop();
            }
            out.push(open.last().map(|&(_, d)| d));
            if trimmed.starts_with("def ") || trimmed.starts_with("async def ") {
                open.push((indent, l));
                header_depth = bracket_balance(trimmed);
                header_budget = MAX_HEADER_LINES;
            }
        } else {
            out.push(open.last().map(|&(_, d)| d));
        }
        l += 1;
    }
    out
}

/// Lines of a `def` header read as its continuation (parameters one per line).
const MAX_HEADER_LINES: usize = 64;

/// Opening minus closing brackets on one line, outside quoted strings and after no `#`.
fn bracket_balance(line: &str) -> i32 {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in line.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '#' => break,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    depth
}

/// Byte offsets of line starts, for 1-based line/column positions (columns in characters).
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn position(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line0 = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let start = self.starts[line0];
        let col = text.get(start..offset).map_or(0, |s| s.chars().count());
        (line0 + 1, col + 1)
    }

    /// [`LineIndex::position`] as (offset, line, column), counted on from an earlier position when `offset` is
    /// after it on the same line.
    fn position_near(
        &self,
        text: &str,
        near: Option<(usize, usize, usize)>,
        offset: usize,
    ) -> (usize, usize, usize) {
        let offset = offset.min(text.len());
        if let Some((at, line, column)) = near
            && at <= offset
            && self.starts.get(line).is_none_or(|&next| offset < next)
            && let Some(between) = text.get(at..offset)
        {
            return (offset, line, column + between.chars().count());
        }
        let (line, column) = self.position(text, offset);
        (offset, line, column)
    }

    /// Byte offset where a 1-based line starts.
    fn start_of(&self, line: usize) -> Option<usize> {
        self.starts.get(line.checked_sub(1)?).copied()
    }

    fn line_text<'t>(&self, text: &'t str, line: usize) -> Option<&'t str> {
        let start = *self.starts.get(line.checked_sub(1)?)?;
        let end = self.starts.get(line).map_or(text.len(), |&e| e);
        text.get(start..end)
            .map(|l| l.trim_end_matches('\n').trim_end_matches('\r'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::RuleSet;

    #[test]
    fn positions_count_characters_not_bytes() {
        let text = "a = 1\nµx = 'é'; f()\n";
        let idx = LineIndex::new(text);
        let off = text.find("f()").unwrap_or(0);
        assert_eq!(idx.position(text, off), (2, 11));
        assert_eq!(idx.position(text, 0), (1, 1));
        assert_eq!(idx.line_text(text, 2), Some("µx = 'é'; f()"));
        assert_eq!(idx.line_text(text, 9), None);
    }

    fn engine() -> Engine {
        match RuleSet::builtin() {
            Ok(rules) => Engine::new(rules, Overrides::default()),
            Err(e) => panic!("built-in rules: {e}"),
        }
    }

    const BLOCKING: &str = "import time\n\n\nasync def f():\n    time.sleep(1)\n";

    #[test]
    fn a_file_over_its_time_limit_is_skipped_with_the_reason() {
        let mut engine = engine();
        assert_eq!(engine.analyze("app/a.py", BLOCKING, None).findings.len(), 1);
        engine.time_limit = Duration::ZERO;
        let outcome = engine.analyze("app/a.py", BLOCKING, None);
        assert!(outcome.findings.is_empty());
        assert_eq!(
            outcome.skipped.as_deref(),
            Some("analysis took longer than the 0 s limit")
        );
    }

    #[test]
    fn findings_are_capped_and_the_rest_counted() {
        let mut engine = engine();
        engine.max_findings = 3;
        let text = format!(
            "import time\n\n\n{}",
            (0..10)
                .map(|i| format!("async def f{i}():\n    time.sleep(1)\n\n\n"))
                .collect::<String>()
        );
        let outcome = engine.analyze("app/a.py", &text, None);
        assert_eq!(outcome.findings.len(), 3);
        assert_eq!(outcome.left_out, 7);
        assert_eq!(outcome.skipped, None);
    }

    #[test]
    fn one_finding_per_cause_in_a_function() {
        let engine = engine();
        let text = "import time\n\n\nasync def f(flag):\n    time.sleep(1)\n    if flag:\n        time.sleep(2)\n    time.sleep(3)\n\n\nasync def g():\n    time.sleep(4)\n\n\ntime.sleep(5)\ntime.sleep(6)\n";
        let outcome = engine.analyze("app/a.py", text, None);
        let got: Vec<(usize, &str)> = outcome
            .findings
            .iter()
            .filter(|f| f.check == "C5-blocking-sleep")
            .map(|f| (f.line, f.message.as_str()))
            .collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, 5);
        assert!(
            got[0].1.ends_with("(also on lines 7, 8 of this function)"),
            "{}",
            got[0].1
        );
        assert_eq!(also_count(got[0].1), 2);
        assert_eq!(got[1].0, 12);
        assert!(!got[1].1.contains("also on"), "{}", got[1].1);
        assert_eq!(also_count(got[1].1), 0);
    }

    #[test]
    fn enclosing_def_lines() {
        let text = "x = 1\nclass A:\n    def m(self):\n        if x:\n            y = 2\n        return y\n    z = 3\n\nasync def f():\n    '''doc\nunindented\n    '''\n    return 1\n";
        let scopes = def_lines(text, &LineIndex::new(text));
        let def = |l: usize| scopes.get(l).copied().flatten();
        assert_eq!(def(1), None);
        assert_eq!(def(3), None, "a def line belongs to what encloses it");
        assert_eq!(def(5), Some(3));
        assert_eq!(def(6), Some(3));
        assert_eq!(def(7), None);
        assert_eq!(def(10), Some(9));
        // A string's line at column 0 hides the function from the lines below it and belongs to none itself:
        // such findings are never merged (conservative), never merged into the wrong function.
        assert_eq!(def(11), None);
        assert_eq!(def(13), None);
    }

    #[test]
    fn a_def_header_over_several_lines_keeps_its_function_open() {
        // black's layout: one parameter per line, `) -> T:` back at the `def`'s own indentation.
        let text = "async def f(\n    db: Session,\n    name: str = \"a)\",  # )\n) -> dict[str, int]:\n    x = 1\n    return x\n\n\ndef g(\n    a,\n):\n    pass\ny = 2\n";
        let scopes = def_lines(text, &LineIndex::new(text));
        let def = |l: usize| scopes.get(l).copied().flatten();
        assert_eq!(def(2), Some(1));
        assert_eq!(def(4), Some(1), "the header's closing line");
        assert_eq!(def(5), Some(1), "the body after the header");
        assert_eq!(def(6), Some(1));
        assert_eq!(def(11), Some(9));
        assert_eq!(def(12), Some(9));
        assert_eq!(def(13), None);
        assert_eq!(bracket_balance("f(a, \"(\", b[0]  # ("), 1);
    }

    #[test]
    fn streamed_fingerprint_equals_the_joined_one() {
        let code = "  requests.get(\n      u,\ttimeout=1 )  ";
        let joined: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
        for n in [1, 7] {
            assert_eq!(
                fingerprint_of("F1-x", "a.py", code, n),
                fingerprint("F1-x", "a.py", &joined, n)
            );
        }
        assert_eq!(normalized_digest("a  b"), normalized_digest(" a\nb "));
        assert_ne!(normalized_digest("a b"), normalized_digest("ab"));
    }

    #[test]
    fn code_frames_keep_short_lines_and_cut_long_ones_to_a_window() {
        assert_eq!(
            frame_line("x = f(1)", (4, 5)),
            ("x = f(1)".to_string(), None)
        );
        let long = format!("{}é target {}", "a".repeat(10_000), "b".repeat(10_000));
        let byte = long.find("target").unwrap_or(0);
        let column = long[..byte].chars().count() + 1;
        let (shown, cut) = frame_line(&long, (byte, column));
        assert!(shown.starts_with('…') && shown.ends_with('…'), "{shown}");
        assert!(shown.chars().count() <= limits::FRAME_WINDOW_CHARS + 2);
        let cut = cut.unwrap_or(0);
        // The match is at the same place in the window as on the line, after the leading `…`.
        let in_window: String = shown.chars().skip(column - cut).take(6).collect();
        assert_eq!(in_window, "target");
    }

    #[test]
    fn long_captures_are_shortened_without_copying_them_whole() {
        let short = shorten(&format!("f({})", "x, ".repeat(100_000)), Cut::EXPRESSION);
        assert_eq!(short.chars().count(), 58);
        assert!(short.ends_with('…'));
        assert_eq!(shorten("requests.get", Cut::EXPRESSION), "requests.get");
        assert_eq!(prefix("éé", 3), "é");
    }

    #[test]
    fn fingerprint_depends_on_code_not_position() {
        let a = fingerprint("C5-x", "app/a.py", "time.sleep(1)", 1);
        assert_eq!(a, fingerprint("C5-x", "app/a.py", "time.sleep(1)", 1));
        assert_ne!(a, fingerprint("C5-x", "app/a.py", "time.sleep(1)", 2));
        assert_ne!(a, fingerprint("C5-x", "app/b.py", "time.sleep(1)", 1));
        assert_eq!(a.len(), 16);
    }
}
