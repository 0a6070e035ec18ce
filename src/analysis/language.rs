//! Which language a file is in, and the tree-sitter grammars behind ast-grep.

use ast_grep_core::Language;
use ast_grep_core::matcher::{Pattern, PatternBuilder, PatternError};
use ast_grep_core::tree_sitter::{LanguageExt, StrDoc, TSLanguage};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::OnceLock;

/// A grammar prodaudit parses with tree-sitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Python,
    Dockerfile,
    Yaml,
}

impl Lang {
    /// Does a word of an ast-grep pattern appear as written in the code it matches? Not in a Dockerfile, whose
    /// keywords match in any case (`from` matches a `FROM` pattern); so only these languages' patterns give
    /// prefilter tokens.
    pub fn pattern_words_are_literal(self) -> bool {
        match self {
            Lang::Python | Lang::Yaml => true,
            Lang::Dockerfile => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Dockerfile => "dockerfile",
            Lang::Yaml => "yaml",
        }
    }

    fn ts(self) -> &'static TSLanguage {
        static PY: OnceLock<TSLanguage> = OnceLock::new();
        static DOCKER: OnceLock<TSLanguage> = OnceLock::new();
        static YAML: OnceLock<TSLanguage> = OnceLock::new();
        match self {
            Lang::Python => PY.get_or_init(|| tree_sitter_python::LANGUAGE.into()),
            Lang::Dockerfile => DOCKER.get_or_init(|| tree_sitter_containerfile::LANGUAGE.into()),
            Lang::Yaml => YAML.get_or_init(|| tree_sitter_yaml::LANGUAGE.into()),
        }
    }
}

/// Python identifiers cannot start with `$` (and in Dockerfiles and YAML `$` starts a variable), so
/// metavariables in patterns are rewritten to this character (a letter to the grammars) before parsing.
const PY_EXPANDO: char = 'µ';

impl Language for Lang {
    fn pre_process_pattern<'q>(&self, query: &'q str) -> Cow<'q, str> {
        if !query.contains('$') {
            return Cow::Borrowed(query);
        }
        // Replace a `$` that starts a metavariable (`$X`, `$_`, `$$$ARGS`) with the expando character.
        let chars: Vec<char> = query.chars().collect();
        let mut out = String::with_capacity(query.len());
        for (i, &c) in chars.iter().enumerate() {
            if c == '$' {
                let next = chars.get(i + 1).copied().unwrap_or(' ');
                if next == '$' || next == '_' || next.is_ascii_uppercase() {
                    out.push(PY_EXPANDO);
                    continue;
                }
            }
            out.push(c);
        }
        Cow::Owned(out)
    }

    fn expando_char(&self) -> char {
        PY_EXPANDO
    }

    fn kind_to_id(&self, kind: &str) -> u16 {
        self.ts().id_for_node_kind(kind, true)
    }

    fn field_to_id(&self, field: &str) -> Option<u16> {
        self.ts().field_id_for_name(field).map(|f| f.get())
    }

    fn build_pattern(&self, builder: &PatternBuilder) -> Result<Pattern, PatternError> {
        builder.build(|src| StrDoc::try_new(src, *self))
    }
}

impl LanguageExt for Lang {
    fn get_ts_language(&self) -> TSLanguage {
        self.ts().clone()
    }
}

/// What a file is, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Python,
    /// Python under a `versions/` folder of an Alembic migrations tree.
    Alembic,
    Dockerfile,
    Compose,
    Kubernetes,
    Helm,
    /// An example environment file (`.env.example`, `.env.sample`, `example.env`, `.env.prod.template`, …): no
    /// grammar, read line by line.
    Dotenv,
}

impl FileKind {
    /// The grammar this kind of file is parsed with.
    pub fn lang(self) -> Option<Lang> {
        match self {
            FileKind::Python | FileKind::Alembic => Some(Lang::Python),
            FileKind::Dockerfile => Some(Lang::Dockerfile),
            FileKind::Compose | FileKind::Kubernetes | FileKind::Helm => Some(Lang::Yaml),
            FileKind::Dotenv => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FileKind::Python => "python",
            FileKind::Alembic => "alembic",
            FileKind::Dockerfile => "dockerfile",
            FileKind::Compose => "compose",
            FileKind::Kubernetes => "kubernetes",
            FileKind::Helm => "helm",
            FileKind::Dotenv => "dotenv",
        }
    }
}

/// Detect a file's kind from its repository-relative path (forward slashes) and, for YAML, its text.
/// Returns `None` for files no rule is about.
pub fn detect(path: &str, text: Option<&str>) -> Option<FileKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    let dirs: Vec<&str> = path.split('/').collect();
    let dirs = &dirs[..dirs.len().saturating_sub(1)];

    if lower.ends_with(".py") || lower.ends_with(".pyi") {
        if dirs.last().is_some_and(|d| *d == "versions") {
            return Some(FileKind::Alembic);
        }
        return Some(FileKind::Python);
    }
    if lower == "dockerfile"
        || lower == "containerfile"
        || lower.starts_with("dockerfile.")
        || lower.ends_with(".dockerfile")
    {
        return Some(FileKind::Dockerfile);
    }
    if is_env_example(&lower) {
        return Some(FileKind::Dotenv);
    }
    if !(lower.ends_with(".yml") || lower.ends_with(".yaml")) {
        return None;
    }
    let stem = lower.trim_end_matches(".yaml").trim_end_matches(".yml");
    if stem.starts_with("docker-compose") || stem == "compose" || stem.starts_with("compose.") {
        return Some(FileKind::Compose);
    }
    if lower == "chart.yaml"
        || stem == "values"
        || stem.starts_with("values.")
        || stem.starts_with("values-")
        || dirs.contains(&"templates") && dirs.contains(&"charts")
    {
        return Some(FileKind::Helm);
    }
    if let Some(text) = text {
        let has_key = |key: &str| text.lines().any(|l| l.starts_with(key));
        if has_key("apiVersion:") && has_key("kind:") {
            return Some(FileKind::Kubernetes);
        }
    }
    None
}

/// An example environment file, by its lower-cased name: `env` among its dot-separated parts and an
/// `example`/`sample`/`template`/`dist` suffix (`.env.example`, `env.example`, `.env.prod.template`,
/// `secrets.env.template`), or `example.env`/`sample.env`. Not the real `.env`, and not other formats named after
/// it (`.env.gcp.yaml.example`).
fn is_env_example(lower: &str) -> bool {
    let parts: Vec<&str> = lower.trim_start_matches('.').split('.').collect();
    if parts.len() < 2 || !parts.contains(&"env") {
        return false;
    }
    if parts.iter().any(|p| {
        matches!(
            *p,
            "yaml" | "yml" | "json" | "toml" | "py" | "sh" | "js" | "ts"
        )
    }) {
        return false;
    }
    let last = parts[parts.len() - 1];
    matches!(last, "example" | "sample" | "template" | "dist")
        || (parts.len() == 2 && last == "env" && matches!(parts[0], "example" | "sample"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_kinds_by_path_and_content() {
        assert_eq!(detect("app/main.py", None), Some(FileKind::Python));
        assert_eq!(detect("stubs/x.pyi", None), Some(FileKind::Python));
        assert_eq!(
            detect("migrations/versions/1a2b_add.py", None),
            Some(FileKind::Alembic)
        );
        assert_eq!(detect("Dockerfile", None), Some(FileKind::Dockerfile));
        assert_eq!(
            detect("deploy/api.Dockerfile", None),
            Some(FileKind::Dockerfile)
        );
        assert_eq!(detect("Dockerfile.prod", None), Some(FileKind::Dockerfile));
        assert_eq!(detect("docker-compose.yml", None), Some(FileKind::Compose));
        assert_eq!(detect("compose.prod.yaml", None), Some(FileKind::Compose));
        assert_eq!(detect("charts/api/values.yaml", None), Some(FileKind::Helm));
        assert_eq!(
            detect("charts/api/templates/deploy.yaml", None),
            Some(FileKind::Helm)
        );
        assert_eq!(
            detect(
                "k8s/deploy.yaml",
                Some("apiVersion: apps/v1\nkind: Deployment\n")
            ),
            Some(FileKind::Kubernetes)
        );
        assert_eq!(detect(".github/workflows/ci.yml", Some("on: push\n")), None);
        assert_eq!(detect("README.md", None), None);
        for p in [
            ".env.example",
            "backend/.env.sample",
            "example.env",
            "env.example",
            ".env.template",
            ".env.dist",
            ".env.prod.example",
            "deploy/env.prod.template",
            "dev/secrets.env.template",
        ] {
            assert_eq!(detect(p, None), Some(FileKind::Dotenv), "{p}");
        }
        for p in [
            ".env",
            "app/.env",
            ".env.gcp.yaml.example",
            "environment.example",
            "envs/x.txt",
        ] {
            assert_eq!(detect(p, None), None, "{p}");
        }
    }

    #[test]
    fn infrastructure_grammars_parse_without_errors() {
        use ast_grep_core::tree_sitter::LanguageExt;
        let docker = Lang::Dockerfile.ast_grep(
            "FROM python:3.12-slim AS build\nRUN <<EOT\npip install x\nEOT\nCMD [\"python\", \"-m\", \"app\"]\n",
        );
        assert!(!docker.root().get_inner_node().has_error());
        assert!(docker.root().dfs().any(|n| n.kind() == "from_instruction"));
        let yaml = Lang::Yaml.ast_grep("a: &x {b: 1}\nc: *x\n---\nkind: Deployment\n");
        assert!(!yaml.root().get_inner_node().has_error());
        assert_eq!(
            yaml.root().dfs().filter(|n| n.kind() == "document").count(),
            2
        );
    }

    #[test]
    fn metavariables_are_rewritten_only_where_they_start_a_variable() {
        let l = Lang::Python;
        assert_eq!(l.pre_process_pattern("f($X, $$$A, $_)"), "f(µX, µµµA, µ_)");
        assert_eq!(l.pre_process_pattern("print('$5')"), "print('$5')");
    }
}
