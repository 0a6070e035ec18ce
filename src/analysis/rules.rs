//! Rule files: one YAML file per rubric standard, each with its detectors and their examples.
//!
//! A detector is either an ast-grep rule (the `rule`, `constraints`, `utils`, `transform` and `fix` keys of
//! ast-grep's YAML rule syntax) or a Rust check referenced by `check: <id>`.

use super::checks::{self, Check};
use super::context::RepoContext;
use super::language::{FileKind, Lang};
use crate::report::{CheckMeta, RuleMeta, Severity};
use aho_corasick::AhoCorasick;
use ast_grep_config::{GlobalRules, RuleConfig, SerializableRuleConfig};
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A rule file or rules folder that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read rules folder {}: {source} (check the --rules path)", path.display())]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rules folder {} contains no rule files (*.yml or *.yaml)", path.display())]
    EmptyDir { path: PathBuf },
    #[error("{file}: {problem}")]
    File { file: String, problem: String },
    #[error("{file}: detector `{detector}`: {problem}")]
    Detector {
        file: String,
        detector: String,
        problem: String,
    },
}

/// A role of a function, from the semantic model, that a Python detector (an ast-grep rule or a Rust check) can
/// exclude (`except_in`): its matches inside such a function, at any depth of nesting, are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A function that runs once around serving (`semantic::python::roles::is_startup_function`: a lifespan, a
    /// startup/shutdown hook by name or by `@app.on_event(…)`).
    Startup,
    /// A sign-in step: an OAuth/OIDC/SAML callback or a login route (`roles::is_auth_flow_handler`), run once per
    /// sign-in or connection.
    SignIn,
    /// An administrators' route (`roles::is_admin_handler`), run rarely by a few people.
    Admin,
}

/// Where a detector applies within a Python file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Anywhere.
    #[default]
    Any,
    /// Only where the nearest enclosing function is an `async def` (a `lambda` or plain `def` in between
    /// ends the async context: that code runs wherever it is handed, e.g. `run_in_executor`).
    Async,
}

/// A code example of a detector: the code, the path it is analysed under, and the repository around it.
#[derive(Debug, Clone)]
pub struct Example {
    pub path: String,
    pub code: String,
    pub repo: RepoContext,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ExampleSer {
    Code(String),
    WithPath {
        path: String,
        code: String,
        /// Other files of the repository (path → text), for checks that read beyond their file.
        #[serde(default)]
        files: BTreeMap<String, String>,
        /// Other paths the change touches besides the example's own file (they join the tree too).
        #[serde(default)]
        changed: Vec<String>,
    },
}

impl Example {
    fn from_ser(e: ExampleSer, default_path: &str) -> Self {
        let (path, code, files, also_changed) = match e {
            ExampleSer::Code(code) => (default_path.to_string(), code, BTreeMap::new(), Vec::new()),
            ExampleSer::WithPath {
                path,
                code,
                files,
                changed,
            } => (path, code, files, changed),
        };
        // The example's repository: its own file (changed) plus the files it lists.
        let mut paths: Vec<String> = files.keys().cloned().collect();
        paths.extend(also_changed.iter().cloned());
        paths.push(path.clone());
        paths.sort();
        paths.dedup();
        let repo = RepoContext {
            changed: [path.clone()].into_iter().chain(also_changed).collect(),
            paths,
            files: files.into_iter().collect(),
            ..Default::default()
        };
        Example { path, code, repo }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFileSer {
    id: String,
    title: String,
    severity: Severity,
    standard: String,
    why: String,
    conforming: String,
    #[serde(default)]
    detectors: Vec<serde_json::Value>,
}

/// A fact of the repository model a detector's severity depends on (see [`LowerWithout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoFact {
    /// Some module of the service mentions cookies (it may authenticate browsers by cookie).
    Cookies,
    /// The application's `HTTPException` handler replaces the detail of status-500 errors with a fixed text.
    #[serde(rename = "http-500-detail-replaced")]
    Http500DetailReplaced,
}

/// `silent_with: {fact: http-500-detail-replaced, matching: "status_code\\s*=\\s*500"}`: when the repository model
/// knows the fact holds, findings whose matched text matches the regular expression are not reported (the
/// application itself removes the harm there). Unknown: reported as usual.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilentWithSer {
    pub fact: RepoFact,
    pub matching: String,
}

/// A compiled [`SilentWithSer`].
#[derive(Debug, Clone)]
pub struct SilentWith {
    pub fact: RepoFact,
    pub matching: regex::Regex,
}

/// `lower_without: {fact: cookies, severity: medium, note: …}`: when the repository model knows the fact is
/// absent, findings get this severity and the note is added to their message. Unknown (no model, or a module
/// that could not be read): the detector's own severity. A severity the repository configuration sets wins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowerWithout {
    pub fact: RepoFact,
    pub severity: Severity,
    pub note: String,
}

/// The prodaudit-specific keys of a detector; everything else goes to ast-grep.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorSer {
    id: String,
    #[serde(default = "default_lang")]
    language: Lang,
    message: String,
    severity: Option<Severity>,
    #[serde(default)]
    scope: Scope,
    #[serde(default)]
    skip_tests: bool,
    /// Off unless the repository configuration enables it (`rules.enable`).
    #[serde(default)]
    opt_in: bool,
    file_kinds: Option<Vec<FileKind>>,
    files: Option<Vec<String>>,
    ignores: Option<Vec<String>>,
    check: Option<String>,
    fix_if_file_contains: Option<String>,
    prefilter: Option<Vec<String>>,
    /// Python ast-grep rules: metavariable -> regular expression over the captured name with its first segment
    /// resolved through the file's imports (`fetch` of `from requests import get as fetch` is `requests.get`).
    qualified: Option<BTreeMap<String, String>>,
    /// Python ast-grep rules: matches inside a function of one of these roles are not reported.
    #[serde(default)]
    except_in: Vec<Role>,
    /// A lower severity when a fact of the repository model says the harm cannot happen there.
    lower_without: Option<LowerWithout>,
    /// Silent where a fact of the repository model says the application removes the harm.
    silent_with: Option<SilentWithSer>,
    /// Silent where the repository model knows a fact the harm needs is absent (`silent_without: cookies`).
    silent_without: Option<RepoFact>,
    /// The conforming pattern of this detector, when the rule's own is about something else (a rule's
    /// pattern for CORS says nothing about a Dockerfile's `USER`).
    conforming: Option<String>,
    note: Option<String>,
    #[serde(default)]
    invalid: Vec<ExampleSer>,
    #[serde(default)]
    valid: Vec<ExampleSer>,
    // ast-grep keys, validated by ast-grep itself.
    rule: Option<serde_json::Value>,
    constraints: Option<serde_json::Value>,
    utils: Option<serde_json::Value>,
    transform: Option<serde_json::Value>,
    fix: Option<serde_json::Value>,
}

fn default_lang() -> Lang {
    Lang::Python
}

/// A condition on the whole file split off an ast-grep rule: the module must (or must not) match `rule`.
pub struct FileGate {
    pub must_match: bool,
    pub rule: Box<RuleConfig<Lang>>,
}

impl FileGate {
    /// Does the file whose root is `root` pass the gate?
    pub fn passes(&self, root: &crate::analysis::checks::PyNode<'_>) -> bool {
        use ast_grep_core::matcher::MatcherExt;
        self.rule.matcher.match_node(root.clone()).is_some() == self.must_match
    }
}

/// How a detector finds its matches.
pub enum Matcher {
    Pattern(Box<RuleConfig<Lang>>),
    Check(&'static dyn Check),
}

/// One detector of a rule.
pub struct Detector {
    pub id: String,
    /// Index of its rule in [`RuleSet::rules`].
    pub rule: usize,
    pub language: Lang,
    pub message: String,
    pub note: Option<String>,
    pub severity: Severity,
    pub scope: Scope,
    pub skip_tests: bool,
    /// Off by default: runs only when the repository configuration names it (or its rule) in `rules.enable`.
    pub opt_in: bool,
    /// The kinds of file the detector reads (default: every kind parsed with its language).
    pub file_kinds: Option<Vec<FileKind>>,
    pub files: Option<GlobSet>,
    pub ignores: Option<GlobSet>,
    pub matcher: Matcher,
    pub fix_if_file_contains: Option<String>,
    /// Literal tokens the file must contain before the detector is worth running: every group must have at
    /// least one of its tokens present (indices into the rule set's token table). Empty: always run.
    pub requires: Vec<Vec<usize>>,
    /// A regular expression the file must also match (see [`checks::Check::requires_regex`]).
    pub requires_regex: Option<regex::Regex>,
    /// For ast-grep rules: literal tokens of which every node the rule matches holds one in its own text
    /// (from its pattern or `has`), so a candidate node without any is skipped before the matcher runs.
    pub node_tokens: Option<Vec<String>>,
    /// For ast-grep rules: the parts of the rule that only ask about the whole file (`inside` the module with
    /// `stopBy: end`, or `not` that), evaluated once per file on its root instead of once per candidate node.
    pub file_gates: Vec<FileGate>,
    /// For ast-grep rules: metavariables whose captured dotted name, resolved through the file's imports to its
    /// qualified name, must match the regular expression (the `qualified` key).
    pub qualified: Vec<(String, regex::Regex)>,
    /// For Python ast-grep rules: matches inside a function of one of these roles are dropped (`except_in`).
    pub except_in: Vec<Role>,
    /// A lower severity where the repository model says the harm cannot happen (`lower_without`).
    pub lower_without: Option<LowerWithout>,
    /// Silent where the repository model says the application removes the harm (`silent_with`).
    pub silent_with: Option<SilentWith>,
    /// Silent where the repository model knows a fact the harm needs is absent (`silent_without`). Unknown
    /// (no model, or a module that could not be read): reported.
    pub silent_without: Option<RepoFact>,
    /// Its own conforming pattern, shown instead of the rule's (`conforming`).
    pub conforming: Option<String>,
    pub invalid: Vec<Example>,
    pub valid: Vec<Example>,
}

impl Detector {
    /// Does this detector apply to the file at `path`, of this kind, at all?
    pub fn applies_to(&self, path: &str, kind: FileKind) -> bool {
        match kind.lang() {
            Some(lang) if lang != self.language => return false,
            // Files no grammar parses are read only by checks that name their kind.
            None if !self
                .file_kinds
                .as_ref()
                .is_some_and(|kinds| kinds.contains(&kind)) =>
            {
                return false;
            }
            _ => {}
        }
        if let Some(kinds) = &self.file_kinds
            && !kinds.contains(&kind)
        {
            return false;
        }
        if self.skip_tests && is_test_path(path) {
            return false;
        }
        if let Some(files) = &self.files
            && !files.is_match(path)
        {
            return false;
        }
        if let Some(ignores) = &self.ignores
            && ignores.is_match(path)
        {
            return false;
        }
        true
    }

    /// Is the detector worth running on a file in which these tokens were seen?
    pub fn wanted(&self, seen: &[bool]) -> bool {
        self.requires
            .iter()
            .all(|group| group.iter().any(|&t| seen.get(t).copied().unwrap_or(false)))
    }

    /// [`Detector::wanted`], then the detector's regular expression, if it has one, over the text.
    pub fn wanted_in(&self, seen: &[bool], text: &str) -> bool {
        self.wanted(seen)
            && self
                .requires_regex
                .as_ref()
                .is_none_or(|re| re.is_match(text))
    }
}

pub use super::semantic::paths::is_test_path;

/// A rubric standard and its detectors.
pub struct Rule {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub standard: String,
    pub why: String,
    pub conforming: String,
    /// The file it came from (`builtin:C5.yml` for rules compiled in).
    pub source: String,
    pub detectors: Vec<usize>,
}

/// All loaded rules, with the prefilter over their literal tokens.
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub detectors: Vec<Detector>,
    tokens: Vec<String>,
    token_index: HashMap<String, usize>,
    scanner: Option<AhoCorasick>,
}

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));
}

impl RuleSet {
    /// The rules compiled into the binary (the repository's `rules/` folder).
    pub fn builtin() -> Result<Self, RuleError> {
        let mut set = RuleSet::empty();
        for (name, text) in builtin::RULES {
            set.add_file(&format!("builtin:{name}"), text)?;
        }
        set.finish()?;
        Ok(set)
    }

    /// The built-in rules plus every `*.yml`/`*.yaml` file of each folder in `dirs`.
    pub fn load(dirs: &[PathBuf], with_builtin: bool) -> Result<Self, RuleError> {
        let mut set = RuleSet::empty();
        if with_builtin {
            for (name, text) in builtin::RULES {
                set.add_file(&format!("builtin:{name}"), text)?;
            }
        }
        for dir in dirs {
            for path in rule_files(dir)? {
                let text = std::fs::read_to_string(&path).map_err(|e| RuleError::File {
                    file: path.display().to_string(),
                    problem: format!("cannot read: {e}"),
                })?;
                set.add_file(&path.display().to_string(), &text)?;
            }
        }
        set.finish()?;
        Ok(set)
    }

    fn empty() -> Self {
        RuleSet {
            rules: Vec::new(),
            detectors: Vec::new(),
            tokens: Vec::new(),
            token_index: HashMap::new(),
            scanner: None,
        }
    }

    /// Parse one rule file and add its rule and detectors.
    pub fn add_file(&mut self, file: &str, text: &str) -> Result<(), RuleError> {
        let file_err = |problem: String| RuleError::File {
            file: file.to_string(),
            problem,
        };
        let value: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| file_err(format!("invalid YAML: {}", yaml_error(&e))))?;
        let ser: RuleFileSer =
            serde_json::from_value(value).map_err(|e| file_err(format!("not a rule file: {e}")))?;
        if ser.id.trim().is_empty() || ser.id.contains(char::is_whitespace) {
            return Err(file_err(format!(
                "rule id `{}` must be a non-empty word such as C5",
                ser.id
            )));
        }
        if let Some(other) = self.rules.iter().find(|r| r.id == ser.id) {
            return Err(file_err(format!(
                "rule id `{}` is already defined by {}; give your rule its own id",
                ser.id, other.source
            )));
        }
        if ser.detectors.is_empty() {
            return Err(file_err(format!("rule `{}` has no detectors", ser.id)));
        }
        let rule_index = self.rules.len();
        let mut detector_indices = Vec::new();
        for raw in ser.detectors {
            let name = raw
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or("<no id>")
                .to_string();
            let det_err = |problem: String| RuleError::Detector {
                file: file.to_string(),
                detector: name.clone(),
                problem,
            };
            let d: DetectorSer = serde_json::from_value(raw).map_err(|e| det_err(e.to_string()))?;
            if self.detectors.iter().any(|x| x.id == d.id) {
                return Err(det_err(
                    "detector id is used twice; ids must be unique".into(),
                ));
            }
            let detector = self
                .build_detector(d, rule_index, ser.severity)
                .map_err(det_err)?;
            detector_indices.push(self.detectors.len());
            self.detectors.push(detector);
        }
        self.rules.push(Rule {
            id: ser.id,
            title: ser.title,
            severity: ser.severity,
            standard: ser.standard.trim().to_string(),
            why: ser.why.trim().to_string(),
            conforming: ser.conforming.trim().to_string(),
            source: file.to_string(),
            detectors: detector_indices,
        });
        Ok(())
    }

    fn build_detector(
        &mut self,
        d: DetectorSer,
        rule: usize,
        rule_severity: Severity,
    ) -> Result<Detector, String> {
        let mut extra_groups: Vec<Vec<String>> = Vec::new();
        let mut node_tokens_of_rule: Option<Vec<String>> = None;
        let mut file_gates: Vec<FileGate> = Vec::new();
        let mut requires_regex: Option<regex::Regex> = None;
        let (matcher, derived) = match (&d.check, &d.rule) {
            (Some(_), Some(_)) => {
                return Err("has both `check` and `rule`; a detector is one or the other".into());
            }
            (None, None) => {
                return Err("needs either an ast-grep `rule` or a Rust `check`".into());
            }
            (Some(id), None) => {
                if d.constraints.is_some()
                    || d.utils.is_some()
                    || d.transform.is_some()
                    || d.fix.is_some()
                    || d.qualified.is_some()
                {
                    return Err("`constraints`, `qualified`, `utils`, `transform` and `fix` belong to ast-grep rules, not to a `check`".into());
                }
                let check = checks::lookup(id).ok_or_else(|| {
                    format!(
                        "unknown check id `{id}` (known checks: {})",
                        checks::ids().join(", ")
                    )
                })?;
                let tokens: Vec<String> = check.tokens().iter().map(|s| s.to_string()).collect();
                requires_regex = check
                    .requires_regex()
                    .map(regex::Regex::new)
                    .transpose()
                    .map_err(|e| format!("check `{id}` has a bad prefilter regex: {e}"))?;
                extra_groups = check
                    .also_requires()
                    .iter()
                    .map(|g| g.iter().map(|s| s.to_string()).collect())
                    .collect();
                (
                    Matcher::Check(check),
                    (!tokens.is_empty()).then_some(tokens),
                )
            }
            (None, Some(rule_value)) => {
                let compile = |rule: &serde_json::Value, with_extras: bool| {
                    let mut obj = serde_json::Map::new();
                    obj.insert("id".into(), d.id.clone().into());
                    obj.insert("language".into(), d.language.name().into());
                    obj.insert("message".into(), d.message.clone().into());
                    obj.insert("rule".into(), rule.clone());
                    for (k, v) in [
                        ("constraints", &d.constraints),
                        ("utils", &d.utils),
                        ("transform", &d.transform),
                        ("fix", &d.fix),
                    ] {
                        if let Some(v) = v
                            && with_extras
                        {
                            obj.insert(k.into(), v.clone());
                        }
                    }
                    let ser: SerializableRuleConfig<Lang> =
                        serde_json::from_value(serde_json::Value::Object(obj))
                            .map_err(|e| format!("invalid ast-grep rule: {e}"))?;
                    RuleConfig::try_from(ser, &GlobalRules::default())
                        .map_err(|e| format!("invalid ast-grep rule: {}", error_chain(&e)))
                };
                let derived = if d.language.pattern_words_are_literal() {
                    node_tokens_of_rule = node_tokens(rule_value);
                    required_tokens(rule_value)
                } else {
                    None
                };
                // The rule as written is checked whole (its errors are the user's), then run split.
                let whole = compile(rule_value, true)?;
                let config = match split_file_gates(rule_value) {
                    Some((rest, gates)) => {
                        for (must_match, gate) in gates {
                            file_gates.push(FileGate {
                                must_match,
                                rule: Box::new(compile(&gate, false)?),
                            });
                        }
                        compile(&rest, true)?
                    }
                    None => whole,
                };
                (Matcher::Pattern(Box::new(config)), derived)
            }
        };
        let mut qualified = Vec::new();
        if let Some(map) = &d.qualified {
            if d.language != Lang::Python {
                return Err(
                    "`qualified` resolves Python imports: it needs `language: python`".into(),
                );
            }
            let rule_text = format!(
                "{} {}",
                d.rule.as_ref().map(|r| r.to_string()).unwrap_or_default(),
                d.utils.as_ref().map(|u| u.to_string()).unwrap_or_default()
            );
            for (var, re) in map {
                let wanted = format!("${var}");
                let named = rule_text.match_indices(&wanted).any(|(at, _)| {
                    !rule_text[at + wanted.len()..].starts_with(|c: char| {
                        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
                    })
                });
                if !named {
                    return Err(format!(
                        "`qualified` names `{var}`, which the rule does not capture as `${var}`"
                    ));
                }
                let re = regex::Regex::new(re).map_err(|e| {
                    format!("bad regular expression for `{var}` in `qualified`: {e}")
                })?;
                qualified.push((var.clone(), re));
            }
        }
        let silent_with = match &d.silent_with {
            Some(w) => Some(SilentWith {
                fact: w.fact,
                matching: regex::Regex::new(&w.matching).map_err(|e| {
                    format!("bad regular expression in `silent_with.matching`: {e}")
                })?,
            }),
            None => None,
        };
        let mut requires = Vec::new();
        let group = d.prefilter.clone().or(derived);
        for group in group.into_iter().chain(extra_groups) {
            if group.is_empty() || group.iter().any(|t| t.is_empty()) {
                return Err("`prefilter` tokens must not be empty".into());
            }
            requires.push(group.iter().map(|t| self.token(t)).collect());
        }
        if d.scope == Scope::Async {
            requires.push(vec![self.token("async")]);
        }
        if !d.except_in.is_empty() && d.language != Lang::Python {
            return Err(
                "`except_in` names roles of Python functions: it needs `language: python`".into(),
            );
        }
        let globs = |list: &Option<Vec<String>>, key: &str| -> Result<Option<GlobSet>, String> {
            let Some(list) = list else { return Ok(None) };
            let mut b = GlobSetBuilder::new();
            for g in list {
                b.add(Glob::new(g).map_err(|e| format!("bad glob in `{key}`: {e}"))?);
            }
            b.build().map(Some).map_err(|e| format!("bad `{key}`: {e}"))
        };
        if let Some(kinds) = &d.file_kinds
            && let Some(k) = kinds
                .iter()
                .find(|k| k.lang().is_some_and(|l| l != d.language))
        {
            return Err(format!(
                "file kind `{}` is not parsed as {}; set `language` to match",
                k.name(),
                d.language.name()
            ));
        }
        // Kinds without a grammar are read as text, which only Rust checks do.
        let textual = d
            .file_kinds
            .as_ref()
            .and_then(|kinds| kinds.iter().find(|k| k.lang().is_none()));
        if let Some(k) = textual
            && d.check.is_none()
        {
            return Err(format!(
                "file kind `{}` has no grammar: only a `check` can read it, not an ast-grep `rule`",
                k.name()
            ));
        }
        let default_path = match (textual, d.language) {
            (Some(_), _) => ".env.example",
            (None, Lang::Python) => "app/example.py",
            (None, Lang::Dockerfile) => "Dockerfile",
            (None, Lang::Yaml) => "deploy/example.yaml",
        };
        let invalid: Vec<Example> = d
            .invalid
            .into_iter()
            .map(|e| Example::from_ser(e, default_path))
            .collect();
        let valid: Vec<Example> = d
            .valid
            .into_iter()
            .map(|e| Example::from_ser(e, default_path))
            .collect();
        if invalid.is_empty() || valid.is_empty() {
            return Err("needs at least one `invalid` and one `valid` example".into());
        }
        Ok(Detector {
            severity: d.severity.unwrap_or(rule_severity),
            files: globs(&d.files, "files")?,
            ignores: globs(&d.ignores, "ignores")?,
            id: d.id,
            rule,
            language: d.language,
            message: d.message,
            note: d.note,
            scope: d.scope,
            skip_tests: d.skip_tests,
            opt_in: d.opt_in,
            file_kinds: d.file_kinds,
            matcher,
            fix_if_file_contains: d.fix_if_file_contains,
            requires,
            requires_regex,
            node_tokens: node_tokens_of_rule,
            file_gates,
            qualified,
            except_in: d.except_in,
            lower_without: d.lower_without,
            silent_with,
            silent_without: d.silent_without,
            conforming: d.conforming.map(|c| c.trim().to_string()),
            invalid,
            valid,
        })
    }

    fn token(&mut self, t: &str) -> usize {
        if let Some(&i) = self.token_index.get(t) {
            return i;
        }
        self.tokens.push(t.to_string());
        self.token_index
            .insert(t.to_string(), self.tokens.len() - 1);
        self.tokens.len() - 1
    }

    fn finish(&mut self) -> Result<(), RuleError> {
        if self.tokens.is_empty() {
            self.scanner = None;
            return Ok(());
        }
        // A DFA scans every file of a run (a third faster than the default NFA on the bench corpus, for well
        // under 1 MiB with the built-in tokens); a token set too large for one falls back to the default.
        let scanner = aho_corasick::AhoCorasickBuilder::new()
            .kind(Some(aho_corasick::AhoCorasickKind::DFA))
            .build(&self.tokens)
            .or_else(|_| AhoCorasick::new(&self.tokens))
            .map_err(|e| RuleError::File {
                file: "<rules>".into(),
                problem: format!("cannot build the token prefilter: {e}"),
            })?;
        self.scanner = Some(scanner);
        Ok(())
    }

    /// Which prefilter tokens occur in `text` (indexed like the token table).
    pub fn scan_tokens(&self, text: &str) -> Vec<bool> {
        let mut seen = vec![false; self.tokens.len()];
        if let Some(scanner) = &self.scanner {
            let mut remaining = self.tokens.len();
            for m in scanner.find_overlapping_iter(text) {
                let i = m.pattern().as_usize();
                if !seen[i] {
                    seen[i] = true;
                    remaining -= 1;
                    if remaining == 0 {
                        break;
                    }
                }
            }
        }
        seen
    }

    pub fn rule_of(&self, d: &Detector) -> &Rule {
        &self.rules[d.rule]
    }

    pub fn find_rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id.eq_ignore_ascii_case(id))
    }

    /// Rule metadata for reports, sorted by rule id.
    pub fn metadata(&self) -> Vec<RuleMeta> {
        let mut out: Vec<RuleMeta> = self
            .rules
            .iter()
            .map(|r| RuleMeta {
                id: r.id.clone(),
                title: r.title.clone(),
                severity: r.severity,
                standard: r.standard.clone(),
                why: r.why.clone(),
                conforming: r.conforming.clone(),
                checks: r
                    .detectors
                    .iter()
                    .map(|&i| {
                        let d = &self.detectors[i];
                        CheckMeta {
                            id: d.id.clone(),
                            severity: d.severity,
                            message: d.message.clone(),
                        }
                    })
                    .collect(),
            })
            .collect();
        out.sort_by_key(|m| rule_order(&m.id));
        out
    }
}

/// Rubric order: C, F, I, O, then anything else; numbers numerically.
pub fn rule_order(id: &str) -> (usize, u32, String) {
    let letter = id.chars().next().unwrap_or(' ');
    let group = "CFIO".find(letter).unwrap_or(4);
    let num: u32 = id
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or(u32::MAX);
    (group, num, id.to_string())
}

fn rule_files(dir: &Path) -> Result<Vec<PathBuf>, RuleError> {
    let read = std::fs::read_dir(dir).map_err(|source| RuleError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in read {
        let entry = entry.map_err(|source| RuleError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if (ext == "yml" || ext == "yaml") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(RuleError::EmptyDir {
            path: dir.to_path_buf(),
        });
    }
    files.sort();
    Ok(files)
}

/// A YAML error in one line: the parser's message carries a multi-line source excerpt.
pub fn yaml_error(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    first.trim().trim_start_matches("error: ").to_string()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

/// Literal tokens one of which any file matching `rule` (ast-grep rule syntax, as data) must contain, when
/// that can be told from the rule: patterns give their longest identifier, `has`/`inside`/`all` add conditions,
/// `any` unions its branches. `kind`, `regex`, `matches` and `not` tell nothing.
/// Split the file-level conditions off a rule: the top-level conjuncts (items of its `all`, or its own
/// `inside`/`not` key) of the form `inside: {stopBy: end, kind: module, ...}` or `not: {inside: ...}` that.
/// Every node of a file is inside its module, so such a conjunct holds for every candidate node or for none:
/// one evaluation on the root decides it. Conjuncts that name metavariables (`$X` in a pattern) or `matches`
/// stay in the rule, since they may share bindings with the rest. Returns `None` when nothing splits off or
/// nothing would be left.
fn split_file_gates(
    rule: &serde_json::Value,
) -> Option<(serde_json::Value, Vec<(bool, serde_json::Value)>)> {
    fn module_inside(v: &serde_json::Value) -> Option<serde_json::Value> {
        let item = v.as_object()?;
        if item.len() != 1 {
            return None;
        }
        let inside = item.get("inside")?.as_object()?;
        if inside.get("stopBy").and_then(|s| s.as_str()) != Some("end")
            || inside.get("kind").and_then(|k| k.as_str()) != Some("module")
            || inside.contains_key("field")
        {
            return None;
        }
        let mut gate = inside.clone();
        gate.remove("stopBy");
        let gate = serde_json::Value::Object(gate);
        (!binds_or_refers(&gate)).then_some(gate)
    }
    fn binds_or_refers(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| {
                k == "matches"
                    || (k == "pattern" && v.as_str().is_none_or(|p| p.contains('$')))
                    || binds_or_refers(v)
            }),
            serde_json::Value::Array(a) => a.iter().any(binds_or_refers),
            _ => false,
        }
    }
    fn as_gate(item: &serde_json::Value) -> Option<(bool, serde_json::Value)> {
        if let Some(g) = module_inside(item) {
            return Some((true, g));
        }
        let negated = item.as_object().filter(|o| o.len() == 1)?.get("not")?;
        module_inside(negated).map(|g| (false, g))
    }
    let obj = rule.as_object()?;
    let mut rest = obj.clone();
    let mut gates = Vec::new();
    for key in ["inside", "not"] {
        if let Some(v) = obj.get(key) {
            let single = serde_json::json!({ key: v });
            if let Some(g) = as_gate(&single) {
                gates.push(g);
                rest.remove(key);
            }
        }
    }
    if let Some(all) = obj.get("all").and_then(|a| a.as_array()) {
        let mut kept = Vec::new();
        for item in all {
            match as_gate(item) {
                Some(g) => gates.push(g),
                None => kept.push(item.clone()),
            }
        }
        if kept.is_empty() {
            rest.remove("all");
        } else {
            rest.insert("all".into(), serde_json::Value::Array(kept));
        }
    }
    // Something must be left to match nodes with.
    if gates.is_empty() || rest.is_empty() {
        return None;
    }
    Some((serde_json::Value::Object(rest), gates))
}

fn required_tokens(rule: &serde_json::Value) -> Option<Vec<String>> {
    tokens_of(rule, true)
}

/// Tokens of which a matched node's own text must hold one: like [`required_tokens`], but only from what
/// lies inside the node (its pattern, `has`), never from `inside` (an ancestor's text).
fn node_tokens(rule: &serde_json::Value) -> Option<Vec<String>> {
    tokens_of(rule, false)
}

fn tokens_of(rule: &serde_json::Value, with_inside: bool) -> Option<Vec<String>> {
    let obj = rule.as_object()?;
    let mut candidates: Vec<Vec<String>> = Vec::new();
    if let Some(p) = obj.get("pattern").and_then(|p| p.as_str())
        && let Some(t) = pattern_token(p)
    {
        candidates.push(vec![t]);
    }
    let keys: &[&str] = if with_inside {
        &["has", "inside"]
    } else {
        &["has"]
    };
    for key in keys {
        if let Some(t) = obj.get(*key).and_then(|r| tokens_of(r, with_inside)) {
            candidates.push(t);
        }
    }
    if let Some(all) = obj.get("all").and_then(|a| a.as_array()) {
        candidates.extend(all.iter().filter_map(|r| tokens_of(r, with_inside)));
    }
    if let Some(any) = obj.get("any").and_then(|a| a.as_array()) {
        let mut union = Vec::new();
        let mut ok = !any.is_empty();
        for r in any {
            match tokens_of(r, with_inside) {
                Some(t) => union.extend(t),
                None => ok = false,
            }
        }
        if ok {
            union.sort();
            union.dedup();
            candidates.push(union);
        }
    }
    // The best group is the one whose shortest token is longest (rarer text, fewer false passes).
    candidates.into_iter().max_by_key(|g| {
        (
            g.iter().map(|t| t.len()).min().unwrap_or(0),
            usize::MAX - g.len(),
        )
    })
}

/// The longest identifier in a pattern that is not a metavariable and not inside a string literal.
fn pattern_token(pattern: &str) -> Option<String> {
    let mut best: Option<&str> = None;
    let bytes = pattern.as_bytes();
    let mut i = 0;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' {
            quote = Some(c);
            i += 1;
            continue;
        }
        if c == b'$' {
            while i < bytes.len()
                && (bytes[i] == b'$' || bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
            {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &pattern[start..i];
            if word.len() >= 3 && best.is_none_or(|b| word.len() > b.len()) {
                best = Some(word);
            }
            continue;
        }
        i += 1;
    }
    best.map(str::to_string)
}

/// Group rule metadata by id, for look-ups by the outputs.
pub fn by_id(meta: &[RuleMeta]) -> BTreeMap<&str, &RuleMeta> {
    meta.iter().map(|m| (m.id.as_str(), m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_tokens_skip_metavariables_and_strings() {
        assert_eq!(pattern_token("time.sleep($X)").as_deref(), Some("sleep"));
        assert_eq!(
            pattern_token("requests.$M($$$ARGS)").as_deref(),
            Some("requests")
        );
        assert_eq!(
            pattern_token("print('hello_world_long')").as_deref(),
            Some("print")
        );
        assert_eq!(pattern_token("$A($B)"), None);
    }

    #[test]
    fn node_tokens_come_only_from_inside_the_node() {
        let rule: serde_json::Value = serde_json::json!({
            "all": [
                {"pattern": "print($$$A)"},
                {"not": {"inside": {"pattern": "if __name__ == '__main__': $$$B"}}}
            ]
        });
        assert_eq!(node_tokens(&rule), Some(vec!["print".to_string()]));
        // An ancestor's token tells whether the file is worth parsing, not whether a node can match.
        let inside_only =
            serde_json::json!({"kind": "call", "inside": {"pattern": "async def $F($$$P): $$$B"}});
        assert_eq!(node_tokens(&inside_only), None);
        assert!(required_tokens(&inside_only).is_some());
        let has = serde_json::json!({"kind": "call", "has": {"pattern": "timeout=None"}});
        assert_eq!(node_tokens(&has), Some(vec!["timeout".to_string()]));
    }

    #[test]
    fn file_level_conjuncts_split_off_and_the_rest_stays() {
        let rule = serde_json::json!({
            "all": [
                {"pattern": "print($$$A)"},
                {"not": {"inside": {"stopBy": "end", "kind": "module", "regex": "click"}}},
                {"inside": {"stopBy": "end", "kind": "module", "has": {"stopBy": "end", "kind": "import_statement"}}},
                {"not": {"inside": {"stopBy": "end", "kind": "function_definition"}}},
                // Shares a metavariable with the pattern: must stay in the rule.
                {"not": {"inside": {"stopBy": "end", "kind": "module", "has": {"pattern": "$A = 1"}}}},
                // Only the direct parent: not a question about the file.
                {"inside": {"kind": "module"}}
            ]
        });
        let Some((rest, gates)) = split_file_gates(&rule) else {
            panic!("nothing split off");
        };
        assert_eq!(gates.len(), 2);
        assert_eq!(
            gates[0],
            (
                false,
                serde_json::json!({"kind": "module", "regex": "click"})
            )
        );
        assert!(gates[1].0);
        assert_eq!(rest["all"].as_array().map(Vec::len), Some(4));
        // A rule made only of file conditions keeps them (something must match nodes).
        let only = serde_json::json!({"inside": {"stopBy": "end", "kind": "module"}});
        assert!(split_file_gates(&only).is_none());
        let own_key = serde_json::json!({"pattern": "f()", "not": {"inside": {"stopBy": "end", "kind": "module", "regex": "x"}}});
        let Some((rest, gates)) = split_file_gates(&own_key) else {
            panic!("own `not` key not split off");
        };
        assert_eq!(rest, serde_json::json!({"pattern": "f()"}));
        assert_eq!(gates.len(), 1);
    }

    #[test]
    fn a_split_rule_finds_what_the_whole_rule_finds() {
        use crate::analysis::engine::Engine;
        let file = |gate: &str| {
            format!(
                "id: X1\ntitle: t\nseverity: low\nstandard: s\nwhy: w\nconforming: c\ndetectors:\n  - id: X1-print\n    message: m\n    rule:\n      all:\n        - pattern: print($$$A)\n        - not:\n            inside:\n              stopBy: end\n              kind: module\n              {gate}\n    invalid:\n      - print(1)\n    valid:\n      - x = 1\n"
            )
        };
        let mut set = RuleSet::empty();
        if let Err(e) = set.add_file("x.yml", &file("regex: import click")) {
            panic!("{e}");
        }
        if let Err(e) = set.finish() {
            panic!("{e}");
        }
        let Some(d) = set.detectors.iter().find(|d| d.id == "X1-print") else {
            panic!("no detector");
        };
        assert_eq!(d.file_gates.len(), 1);
        let engine = Engine::new(set, Default::default());
        let found = |text: &str| engine.analyze("app/x.py", text, None).findings.len();
        assert_eq!(found("def f():\n    print(1)\nprint(2)\n"), 2);
        assert_eq!(found("import click\n\ndef f():\n    print(1)\n"), 0);
    }

    #[test]
    fn a_dockerfile_pattern_finds_keywords_in_any_case() {
        use crate::analysis::engine::Engine;
        let mut set = RuleSet::empty();
        let file = "id: X9\ntitle: t\nseverity: low\nstandard: s\nwhy: w\nconforming: c\ndetectors:\n  - id: X9-from\n    language: dockerfile\n    message: m\n    rule:\n      pattern: FROM $IMG\n    invalid:\n      - FROM python:3.11\n    valid:\n      - RUN echo hi\n";
        if let Err(e) = set.add_file("x.yml", file) {
            panic!("{e}");
        }
        if let Err(e) = set.finish() {
            panic!("{e}");
        }
        let engine = Engine::new(set, Default::default());
        let found = |text: &str| engine.analyze("Dockerfile", text, None).findings.len();
        assert_eq!(found("FROM python:3.11\n"), 1);
        assert_eq!(found("from python:3.11\nRUN echo hi\n"), 1);
    }

    #[test]
    fn builtin_pattern_rules_know_their_node_tokens() {
        let set = match RuleSet::builtin() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let Some(d) = set.detectors.iter().find(|d| d.id == "O1-print") else {
            panic!("no O1-print detector");
        };
        assert_eq!(d.node_tokens.as_deref(), Some(&["print".to_string()][..]));
    }

    #[test]
    fn a_checks_extra_token_groups_must_all_be_present() {
        let set = match RuleSet::builtin() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let Some(d) = set.detectors.iter().find(|d| d.id == "F5-item-loop-no-try") else {
            panic!("no F5-item-loop-no-try detector");
        };
        assert_eq!(
            d.requires.len(),
            3,
            "`for `, an item word, a word for external work"
        );
        let wanted = |text: &str| d.wanted_in(&set.scan_tokens(text), text);
        assert!(wanted("for doc in docs:\n    await index(doc)\n"));
        // Loops over things that are not items, or with nothing external in them, do not need parsing for it.
        assert!(!wanted("for i in range(3):\n    await step(i)\n"));
        assert!(!wanted("for doc in docs:\n    total += len(doc)\n"));
        assert!(!wanted("x = [file]\n"));
        // The item word must be on the `for` line itself (the check reads the target and the iterable).
        assert!(!wanted("for i in range(3):\n    await upload(doc)\n"));
        assert!(wanted(
            "    async for (name, file) in items:\n        await store(file)\n"
        ));
    }

    #[test]
    fn qualified_names_must_be_captured_and_compile() {
        let file = |qualified: &str| {
            format!(
                "id: X1\ntitle: t\nseverity: high\nstandard: s\nwhy: w\nconforming: c\ndetectors:\n  - id: X1-a\n    message: m\n    rule:\n      pattern: $F($$$ARGS)\n    qualified:\n{qualified}\n    invalid: [\"import requests as r\\nr.get(u)\\n\"]\n    valid: [\"get(u)\\n\"]\n"
            )
        };
        let load = |text: String| {
            let mut set = RuleSet::empty();
            set.add_file("x.yml", &text).map_err(|e| e.to_string())
        };
        assert!(load(file("      F: '^requests\\.get$'")).is_ok());
        let missing = load(file("      G: '^requests\\.get$'"))
            .err()
            .unwrap_or_default();
        assert!(missing.contains("does not capture as `$G`"), "{missing}");
        // `$F` must not be taken for `$FN`.
        let prefix = load(file("      FN: 'x'")).err().unwrap_or_default();
        assert!(prefix.contains("`$FN`"), "{prefix}");
        let bad = load(file("      F: '('")).err().unwrap_or_default();
        assert!(bad.contains("bad regular expression"), "{bad}");
    }

    #[test]
    fn except_in_names_known_roles_of_python_detectors() {
        let file = |body: &str| {
            format!(
                "id: X1\ntitle: t\nseverity: high\nstandard: s\nwhy: w\nconforming: c\ndetectors:\n  - id: X1-a\n    message: m\n{body}\n    invalid: [\"import time\\nasync def f():\\n    time.sleep(1)\\n\"]\n    valid: [\"import time\\nasync def lifespan(app):\\n    time.sleep(1)\\n\"]\n"
            )
        };
        let load = |text: String| {
            let mut set = RuleSet::empty();
            set.add_file("x.yml", &text)
                .map(|_| set)
                .map_err(|e| e.to_string())
        };
        let set = match load(file(
            "    except_in: [startup, sign_in, admin]\n    rule:\n      pattern: time.sleep($S)",
        )) {
            Ok(set) => set,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            set.detectors[0].except_in,
            vec![Role::Startup, Role::SignIn, Role::Admin]
        );
        let unknown = load(file(
            "    except_in: [request]\n    rule:\n      pattern: time.sleep($S)",
        ))
        .err()
        .unwrap_or_default();
        assert!(unknown.contains("request"), "{unknown}");
        // A Rust check takes roles too.
        let on_check = match load(file(
            "    except_in: [admin]\n    check: sync-session-in-async",
        )) {
            Ok(set) => set,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(on_check.detectors[0].except_in, vec![Role::Admin]);
        // Roles are those of Python functions.
        let on_dockerfile = load(file(
            "    language: dockerfile\n    except_in: [startup]\n    rule:\n      kind: user_instruction",
        ))
        .err()
        .unwrap_or_default();
        assert!(
            on_dockerfile.contains("`language: python`"),
            "{on_dockerfile}"
        );
    }

    #[test]
    fn secret_literal_prefilter_follows_the_names_the_check_accepts() {
        let set = match RuleSet::builtin() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let Some(d) = set.detectors.iter().find(|d| d.id == "O3-hardcoded-secret") else {
            panic!("no O3-hardcoded-secret detector");
        };
        let wanted = |text: &str| d.wanted_in(&set.scan_tokens(text), text);
        for text in [
            "Password = 'x'\n",
            "OPENAI_API_KEY = 'x'\n",
            "openaiApiKey = 'x'\n",
            "client = Client(ApiKey='x')\n",
            "signing_key = 'x'\n",
            "auth_token = 'x'\n",
        ] {
            assert!(wanted(text), "{text}");
        }
        // `key` alone is no secret name (`secret_name` needs `api_key`, `private_key`, …).
        assert!(!wanted("for key in sorted(d):\n    print(key)\n"));
    }
}
