//! O3 across files: a setting read (`os.getenv("X")`, `os.environ["X"]`, `os.environ.get("X")`, a field of a
//! pydantic `BaseSettings` class) whose variable the repository's `.env.example` does not mention.
//!
//! The example file is the nearest one up the directory tree from the Python file (`.env.example`,
//! `.env.sample`, `example.env`, `.env.template`, `env.example`, `sample.env`, `.env.dist`; several in one folder
//! are read together). No example file: nothing to compare with, no finding. A variable counts as mentioned when
//! its name appears anywhere in the file as a word, case-insensitively (a commented-out `# X=` line documents it
//! too), or as the prefix of a nested key (`X__…`). Settings fields honour `env_prefix` (from `model_config` or
//! `class Config`) and aliases (`alias`, `validation_alias`, `AliasChoices`); pydantic matches them
//! case-insensitively, and so does this check.
//!
//! Two detectors share the logic: required reads (`os.environ["X"]`, a settings field without a default: the app
//! fails without the variable) and optional ones (`os.getenv`, `os.environ.get`, fields with a default). Settings
//! classes built with explicit values in their own file (`Settings(**kwargs)`), and classes that read settings from
//! more than the environment (`settings_customise_sources`, `toml_file=`/`yaml_file=`/`json_file=`), are not
//! judged.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::environ::is_env_get;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::syntax::{
    callee, keyword_arg, positional_arg, string_value,
};
use std::collections::HashSet;

/// Names of example environment files, in order of preference within one folder.
pub const ENV_EXAMPLE_NAMES: &[&str] = &[
    ".env.example",
    ".env.sample",
    "example.env",
    ".env.template",
    "env.example",
    "sample.env",
    ".env.dist",
];

const NEEDS: &[&str] = &[
    "**/.env.example",
    "**/.env.sample",
    "**/example.env",
    "**/.env.template",
    "**/env.example",
    "**/sample.env",
    "**/.env.dist",
];

/// Variables of the process or the platform, never documented in an app's `.env.example`.
fn is_process_var(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "USERNAME",
        "PWD",
        "SHELL",
        "TERM",
        "HOSTNAME",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "CI",
        "DISPLAY",
        "LANG",
        "DYNO",
        "RENDER",
        "VERCEL",
        "K_SERVICE",
        "K_REVISION",
        "AWS_EXECUTION_ENV",
        "NODE_NAME",
        "PORT",
        "WEB_CONCURRENCY",
    ];
    const PREFIXES: &[&str] = &[
        "LC_",
        "PYTEST_",
        "GITHUB_",
        "KUBERNETES_",
        "XDG_",
        "RENDER_",
        "FLY_",
        "HEROKU_",
        "VERCEL_",
        "AWS_LAMBDA_",
        "POD_",
        "RUNNER_",
        "CELERY_WORKER_",
        "OTEL_",
    ];
    EXACT.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The words of an example file, upper-cased.
fn words(text: &str) -> HashSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The example environment file that documents `path`: its path(s) and words.
fn example_for(ctx: &FileContext<'_>) -> Option<(String, HashSet<String>)> {
    let mut dir = ctx.path.rsplit_once('/').map_or("", |(d, _)| d);
    loop {
        let mut found: Option<(String, HashSet<String>)> = None;
        for name in ENV_EXAMPLE_NAMES {
            let p = if dir.is_empty() {
                (*name).to_string()
            } else {
                format!("{dir}/{name}")
            };
            if let Some(text) = ctx.repo.read(&p) {
                match &mut found {
                    Some((_, w)) => w.extend(words(text)),
                    None => found = Some((p, words(text))),
                }
            }
        }
        if found.is_some() {
            return found;
        }
        if dir.is_empty() {
            return None;
        }
        dir = dir.rsplit_once('/').map_or("", |(d, _)| d);
    }
}

fn mentioned(words: &HashSet<String>, name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    if words.contains(&up) {
        return true;
    }
    let nested = format!("{up}__");
    words.iter().any(|w| w.starts_with(&nested))
}

/// One setting read: the node to report on, the candidate variable names, whether it has a default.
struct Read<'r> {
    node: PyNode<'r>,
    names: Vec<String>,
    has_default: bool,
}

/// Is `os`'s `getenv`/`environ` what this name refers to?
fn from_os(root: &PyNode<'_>, bare: &str) -> bool {
    root.children().any(|s| {
        s.kind() == "import_from_statement"
            && s.field("module_name").is_some_and(|m| m.text() == "os")
            && s.text().contains(bare)
    })
}

fn env_reads<'r>(root: &PyNode<'r>, imports: &Imports) -> Vec<Read<'r>> {
    let environ_bare = from_os(root, "environ");
    let mut out = Vec::new();
    for n in root.dfs() {
        match n.kind().as_ref() {
            "call" => {
                if !is_env_get(&n, imports) {
                    continue;
                }
                let Some(name) = positional_arg(&n, 0).and_then(|a| string_value(&a)) else {
                    continue;
                };
                // `getenv("X")` without a default still runs without X (it returns None): optional.
                let has_default = true;
                out.push(Read {
                    node: n.clone(),
                    names: vec![name],
                    has_default,
                });
            }
            "subscript" => {
                let value = n.field("value").map(|v| v.text().to_string());
                let ok = value.as_deref() == Some("os.environ")
                    || (environ_bare && value.as_deref() == Some("environ"));
                if !ok {
                    continue;
                }
                // Writes and deletes are not reads.
                let written = n.parent().is_some_and(|p| {
                    (matches!(p.kind().as_ref(), "assignment" | "augmented_assignment")
                        && p.field("left").is_some_and(|l| l.range() == n.range()))
                        || p.kind() == "delete_statement"
                });
                if written {
                    continue;
                }
                let Some(name) = n.field("subscript").and_then(|s| string_value(&s)) else {
                    continue;
                };
                let has_default = guarded_read(&n, &name);
                out.push(Read {
                    node: n.clone(),
                    names: vec![name],
                    has_default,
                });
            }
            _ => {}
        }
    }
    out
}

/// Does the code around an `os.environ["X"]` read run without X: under `if "X" in os.environ:` (or the
/// conditional expression's test), or in a `try:` whose handler catches the `KeyError`? Looked for up to the
/// enclosing function.
fn guarded_read(read: &PyNode<'_>, name: &str) -> bool {
    let tests = [
        format!("\"{name}\"inos.environ"),
        format!("'{name}'inos.environ"),
        format!("\"{name}\"inenviron"),
        format!("'{name}'inenviron"),
    ];
    let mentions = |t: &str| {
        let t: String = t.split_whitespace().collect();
        tests.iter().any(|p| t.contains(p.as_str()))
    };
    let mut child = read.clone();
    for a in read.ancestors() {
        match a.kind().as_ref() {
            "function_definition" | "lambda" | "class_definition" => return false,
            "if_statement" | "elif_clause"
                if a.field("condition").is_some_and(|c| mentions(&c.text()))
                    && a.field("consequence")
                        .is_some_and(|b| b.range() == child.range()) =>
            {
                return true;
            }
            // `os.environ["X"] if "X" in os.environ else d`: the test is the second named child.
            "conditional_expression"
                if a.children()
                    .filter(|c| c.is_named())
                    .nth(1)
                    .is_some_and(|c| mentions(&c.text())) =>
            {
                return true;
            }
            "try_statement" => {
                let in_body = a.field("body").is_some_and(|b| b.range() == child.range());
                // A handler that raises again (`raise RuntimeError("set X")`) still needs X.
                let catches = a
                    .children()
                    .filter(|c| c.kind() == "except_clause")
                    .any(|c| {
                        let head = c.text();
                        let head = head.split(':').next().unwrap_or("");
                        let head: String = head.split_whitespace().collect();
                        let raises = c
                            .children()
                            .filter(|b| b.kind() == "block")
                            .any(|b| b.children().any(|st| st.kind() == "raise_statement"));
                        !raises
                            && (head == "except"
                                || ["KeyError", "LookupError", "Exception", "BaseException"]
                                    .iter()
                                    .any(|e| head.contains(e)))
                    });
                if in_body && catches {
                    return true;
                }
            }
            _ => {}
        }
        child = a;
    }
    false
}

/// `env_prefix` of a settings class, from `model_config = SettingsConfigDict(env_prefix=…)` (or a dict) or
/// `class Config: env_prefix = …`.
fn env_prefix(class: &PyNode<'_>) -> Option<String> {
    for n in class.dfs() {
        if n.kind() == "keyword_argument"
            && n.field("name").is_some_and(|k| k.text() == "env_prefix")
        {
            return n.field("value").and_then(|v| string_value(&v));
        }
        if n.kind() == "pair"
            && n.field("key")
                .and_then(|k| string_value(&k))
                .is_some_and(|k| k == "env_prefix")
        {
            return n.field("value").and_then(|v| string_value(&v));
        }
        if n.kind() == "assignment" && n.field("left").is_some_and(|l| l.text() == "env_prefix") {
            return n.field("right").and_then(|v| string_value(&v));
        }
    }
    None
}

/// Does a field's annotation admit `None` (`Optional[str]`, `str | None`, `Union[str, None]`)?
fn admits_none(annotation: &str) -> bool {
    let t: String = annotation.chars().filter(|c| !c.is_whitespace()).collect();
    let t = t.strip_prefix("typing.").unwrap_or(&t);
    t.starts_with("Optional[")
        || t.split('|').any(|p| p == "None")
        || (t.starts_with("Union[")
            && t.trim_end_matches(']')
                .split([',', '['])
                .any(|p| p == "None"))
}

fn settings_reads<'r>(root: &PyNode<'r>, imports: &Imports) -> Vec<Read<'r>> {
    // Pydantic 1 (`BaseSettings` from `pydantic` or `pydantic.v1`; pydantic 2 moved it to `pydantic_settings`)
    // gives a field annotated `Optional[…]` / `… | None` an implicit default of `None`: the app runs without it.
    let v1 = |bases: &str| {
        bases
            .split([',', '(', ')', ' '])
            .filter(|b| b.ends_with("BaseSettings"))
            .any(|b| {
                let full = imports.resolve(b);
                full == "pydantic.BaseSettings" || full == "pydantic.v1.BaseSettings"
            })
    };
    let mut out = Vec::new();
    for class in root.dfs().filter(|n| n.kind() == "class_definition") {
        let bases: String = class
            .field("superclasses")
            .map(|s| s.text().to_string())
            .unwrap_or_default();
        if !bases
            .split([',', '(', ')', ' ', '.'])
            .any(|b| b == "BaseSettings")
        {
            continue;
        }
        let text = class.text();
        if text.contains("case_sensitive=True") && text.contains("env_prefix") {
            // Rare and exact: leave it to people.
            continue;
        }
        let prefix = env_prefix(&class).unwrap_or_default();
        let implicit_none = v1(&bases);
        // Built with explicit values in this file (`Settings(**kwargs)`, `Settings(auth_type=…)`): its fields
        // need not come from the environment.
        let class_name = class.field("name").map(|n| n.text().to_string());
        let built_with_values = root.dfs().filter(|n| n.kind() == "call").any(|c| {
            callee(&c).is_some_and(|f| Some(&f) == class_name.as_ref())
                && c.field("arguments")
                    .is_some_and(|a| a.children().any(|x| x.is_named() && x.kind() != "comment"))
        });
        if built_with_values {
            continue;
        }
        // Values read from more than the environment: a settings source of the class's own
        // (`settings_customise_sources` returning `PluginSettingsSource(…)`), or a TOML/YAML/JSON file
        // (`model_config = SettingsConfigDict(toml_file=…)`): a field may be set there, not in `.env`.
        if [
            "settings_customise_sources",
            "toml_file",
            "yaml_file",
            "json_file",
        ]
        .iter()
        .any(|w| text.contains(w))
        {
            continue;
        }
        let Some(body) = class.field("body") else {
            continue;
        };
        for stmt in body
            .children()
            .filter(|s| s.kind() == "expression_statement")
        {
            let Some(a) = stmt.child(0).filter(|a| a.kind() == "assignment") else {
                continue;
            };
            let Some(ty) = a.field("type") else {
                continue;
            };
            let field = a
                .field("left")
                .map(|l| l.text().to_string())
                .unwrap_or_default();
            if field.starts_with('_')
                || field == "model_config"
                || ty.text().starts_with("ClassVar")
            {
                continue;
            }
            // Shown as it is usually written in an env file; matched case-insensitively.
            let mut names = vec![format!("{prefix}{field}").to_ascii_uppercase()];
            let mut has_default = implicit_none && admits_none(&ty.text());
            if let Some(v) = a.field("right") {
                has_default = true;
                if v.kind() == "call" && callee(&v).is_some_and(|c| c.ends_with("Field")) {
                    has_default = positional_arg(&v, 0).is_some_and(|d| d.text() != "...")
                        || keyword_arg(&v, "default").is_some()
                        || keyword_arg(&v, "default_factory").is_some();
                    for key in ["alias", "validation_alias", "env"] {
                        if let Some(al) = keyword_arg(&v, key) {
                            if let Some(s) = string_value(&al) {
                                names.push(s);
                            } else {
                                // AliasChoices("A", "B"), AliasPath(…), a list: every literal counts.
                                names.extend(
                                    al.dfs()
                                        .filter(|x| x.kind() == "string")
                                        .filter_map(|x| string_value(&x)),
                                );
                            }
                        }
                    }
                }
            }
            out.push(Read {
                node: a,
                names,
                has_default,
            });
        }
    }
    out
}

fn run_env<'r>(
    root: &PyNode<'r>,
    ctx: &FileContext<'r>,
    defaulted: bool,
    out: &mut Vec<CheckMatch>,
) {
    let Some((example, words)) = example_for(ctx) else {
        return;
    };
    let mut reads = env_reads(root, &ctx.imports(root));
    reads.extend(settings_reads(root, &ctx.imports(root)));
    for r in reads {
        if r.has_default != defaulted {
            continue;
        }
        if r.names.iter().any(|n| is_process_var(n) || n.is_empty()) {
            continue;
        }
        if r.names.iter().any(|n| mentioned(&words, n)) {
            continue;
        }
        let name = &r.names[0];
        let what = if defaulted {
            "its default is used silently wherever it is not set"
        } else {
            "a deployment without it fails"
        };
        out.push(CheckMatch {
            fix: None,
            range: r.node.range(),
            message: Some(format!(
                "`{name}` is read here but `{example}` does not mention it: whoever deploys from the example \
                 does not know to set it, and {what}"
            )),
        });
    }
}

pub struct SettingNotInEnvExample;

impl Check for SettingNotInEnvExample {
    fn id(&self) -> &'static str {
        "setting-not-in-env-example"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["getenv", "environ", "BaseSettings"]
    }

    fn needs(&self) -> &'static [&'static str] {
        NEEDS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        run_env(root, ctx, false, out);
    }
}

pub struct OptionalSettingNotInEnvExample;

impl Check for OptionalSettingNotInEnvExample {
    fn id(&self) -> &'static str {
        "optional-setting-not-in-env-example"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["getenv", "environ", "BaseSettings"]
    }

    fn needs(&self) -> &'static [&'static str] {
        NEEDS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        run_env(root, ctx, true, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_mentions() {
        let w = words(
            "# Database\nDATABASE_URL=postgres://x\n# export openai_api_key=\nQDRANT__URL=x\n",
        );
        assert!(mentioned(&w, "DATABASE_URL"));
        assert!(mentioned(&w, "OPENAI_API_KEY"));
        assert!(mentioned(&w, "qdrant"));
        assert!(!mentioned(&w, "REDIS_URL"));
        assert!(!mentioned(&w, "QDRANT_URL"));
    }

    #[test]
    fn needs_match_examples_at_the_root_and_below() {
        let g = match crate::analysis::context::needs_globset(NEEDS) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        };
        assert!(g.is_match(".env.example"));
        assert!(g.is_match("backend/.env.sample"));
        assert!(!g.is_match(".env"));
    }
}
