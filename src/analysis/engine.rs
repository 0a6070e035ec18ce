//! The analysis engine: one file in, findings out. Each file is parsed once; every detector that the file's
//! tokens make worth running is dispatched in a single walk of the tree by node kind.

use super::checks::{self, CheckFix, CheckMatch};
use super::context::{FileContext, RepoContext};
use super::language::{self, FileKind, Lang};
use super::nodes::NodeIndex;
use super::rules::{Detector, Matcher, RuleSet, Scope};
use super::semantic;
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
use std::time::Instant;

/// Files larger than this are skipped (minified bundles, generated code, data dumps).
pub const DEFAULT_MAX_FILE_BYTES: usize = 2 * 1024 * 1024;

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
    /// Report critical/high findings in code that is not the service as well (`paths.report_not_service`).
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
    /// Why findings of this file are held back at critical/high, when the file is not the running service.
    pub fn not_service_reason(&self, path: &str, text: &str) -> Option<&'static str> {
        if self.report_not_service || self.service.as_ref().is_some_and(|g| g.is_match(path)) {
            return None;
        }
        if self.not_service.as_ref().is_some_and(|g| g.is_match(path)) {
            return Some("named in paths.not_service");
        }
        semantic::paths::not_service_reason(path, Some(text))
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
    /// Critical/high findings held back because the file is not the running service (a script, an example,
    /// a test, a development Compose file …); `paths.report_not_service: true` reports them.
    pub not_service: usize,
}

pub struct Engine {
    pub rules: Arc<RuleSet>,
    pub overrides: Overrides,
    pub max_file_bytes: usize,
    /// Where analysis time goes, when asked for (`--timings`).
    pub timings: Option<Arc<Timings>>,
}

/// A match before it becomes a finding.
struct RawMatch {
    detector: usize,
    range: Range<usize>,
    message: String,
    fix: Option<(Range<usize>, String)>,
}

impl Engine {
    pub fn new(rules: impl Into<Arc<RuleSet>>, overrides: Overrides) -> Self {
        Engine {
            rules: rules.into(),
            overrides,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
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
        if bytes.len() > self.max_file_bytes {
            return FileOutcome {
                kind,
                skipped: Some(format!(
                    "too large ({} KiB > {} KiB)",
                    bytes.len() / 1024,
                    self.max_file_bytes / 1024
                )),
                ..Default::default()
            };
        }
        if bytes[..bytes.len().min(8192)].contains(&0) {
            return FileOutcome {
                kind,
                skipped: Some("binary".into()),
                ..Default::default()
            };
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
    /// repository around the file.
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
        let mut outcome = FileOutcome {
            kind: Some(kind),
            ..Default::default()
        };
        if changed.is_some_and(|c| c.is_empty()) {
            return outcome;
        }
        if let Some(reason) = checks::unparseable(kind, text) {
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
            Some(lang) => self.run_detectors(lang, text, &wanted, &ctx),
            None => self.run_text_checks(text, &wanted, &ctx),
        };
        if raw.is_empty() {
            return outcome;
        }
        let lines = LineIndex::new(text);
        let suppressions = Suppressions::scan(text);
        let not_service = self.overrides.not_service_reason(path, text);
        let mut occurrences: HashMap<(usize, String), usize> = HashMap::new();
        let mut raw = raw;
        raw.sort_by_key(|m| (m.range.start, m.detector));
        raw.dedup_by_key(|m| (m.range.clone(), m.detector));
        for m in raw {
            let d = &self.rules.detectors[m.detector];
            let rule = self.rules.rule_of(d);
            let (line, column) = lines.position(text, m.range.start);
            let (end_line, end_column) = lines.position(text, m.range.end);
            // Fingerprint from the detector, path and the matched code, numbered among identical code, so
            // moving unrelated lines does not change it.
            let normalized: String = text[m.range.clone()]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let n = occurrences
                .entry((m.detector, normalized.clone()))
                .or_insert(0);
            *n += 1;
            let fingerprint = fingerprint(&d.id, path, &normalized, *n);
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
            let severity = self.severity(d);
            if severity >= Severity::High && not_service.is_some() {
                outcome.not_service += 1;
                continue;
            }
            let fix = m.fix.map(|(r, replacement)| {
                let (fl, fc) = lines.position(text, r.start);
                let (el, ec) = lines.position(text, r.end);
                Fix {
                    line: fl,
                    column: fc,
                    end_line: el,
                    end_column: ec,
                    replacement,
                }
            });
            let code = (line..=end_line.min(line + 4))
                .filter_map(|l| lines.line_text(text, l).map(str::to_string))
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
                message: m.message,
                standard: rule.title.clone(),
                conforming: rule.conforming.clone(),
                fingerprint,
                fix,
                code,
            });
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
    ) -> Vec<RawMatch> {
        let started = self.clock();
        let root = lang.ast_grep(text);
        self.record(started, Timings::parsed);
        let started = self.clock();
        let tree = root.root();
        let index = NodeIndex::build(&tree);
        self.record(started, Timings::indexed);
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
                    let mut found: Vec<(CheckMatch, Option<CheckFix>)> = Vec::new();
                    let started = self.clock();
                    check.run_fixing(&tree, ctx, &mut found);
                    self.record(started, |t, d| t.detector(i, d));
                    self.check_matches(i, text, found, &mut out);
                }
            }
        }
        if by_kind.is_empty() {
            return out;
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
        for (node, candidates) in dispatch {
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
                // Code the parser could not make sense of yields no findings: precision first.
                if nm.get_node().get_inner_node().has_error() {
                    continue;
                }
                if d.scope == Scope::Async && !checks::in_async_context(nm.get_node()) {
                    continue;
                }
                let message = interpolate(&d.message, &nm);
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
        out
    }
}

impl Engine {
    /// Run the wanted checks over a file no grammar parses (e.g. `.env.example`), as text.
    fn run_text_checks(
        &self,
        text: &str,
        wanted: &[usize],
        ctx: &FileContext<'_>,
    ) -> Vec<RawMatch> {
        let mut out = Vec::new();
        for &i in wanted {
            let Matcher::Check(check) = &self.rules.detectors[i].matcher else {
                continue;
            };
            let mut found = Vec::new();
            let started = self.clock();
            check.run_text(text, ctx, &mut found);
            self.record(started, |t, d| t.detector(i, d));
            let found = found.into_iter().map(|c| (c, None)).collect();
            self.check_matches(i, text, found, &mut out);
        }
        out
    }

    /// A Rust check's matches as raw matches of detector `i`: its own message or the detector's, and only ranges
    /// that cut the text at characters (checks over rewritten text could miss).
    fn check_matches(
        &self,
        i: usize,
        text: &str,
        found: Vec<(CheckMatch, Option<CheckFix>)>,
        out: &mut Vec<RawMatch>,
    ) {
        let d = &self.rules.detectors[i];
        let on_chars = |r: &Range<usize>| {
            r.start <= r.end && text.is_char_boundary(r.start) && text.is_char_boundary(r.end)
        };
        out.extend(
            found
                .into_iter()
                .filter(|(c, fix)| {
                    on_chars(&c.range) && fix.as_ref().is_none_or(|f| on_chars(&f.range))
                })
                .map(|(c, fix)| RawMatch {
                    detector: i,
                    range: c.range,
                    message: c.message.unwrap_or_else(|| d.message.clone()),
                    fix: fix.map(|f| (f.range, f.replacement)),
                }),
        );
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
        let value = if dollars >= 3 {
            env.get_multiple_matches(name)
                .iter()
                .map(|n| n.text().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            env.get_match(name)
                .map(|n| n.text().to_string())
                .unwrap_or_default()
        };
        out.push_str(&shorten(&value));
        rest = &after[dollars + name_len..];
    }
    out.push_str(rest);
    out
}

fn shorten(code: &str) -> String {
    let one_line: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 60 {
        let cut: String = one_line.chars().take(57).collect();
        format!("{cut}…")
    } else {
        one_line
    }
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

    #[test]
    fn fingerprint_depends_on_code_not_position() {
        let a = fingerprint("C5-x", "app/a.py", "time.sleep(1)", 1);
        assert_eq!(a, fingerprint("C5-x", "app/a.py", "time.sleep(1)", 1));
        assert_ne!(a, fingerprint("C5-x", "app/a.py", "time.sleep(1)", 2));
        assert_ne!(a, fingerprint("C5-x", "app/b.py", "time.sleep(1)", 1));
        assert_eq!(a.len(), 16);
    }
}
