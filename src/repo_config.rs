//! `.github/prodaudit.yml`: what a repository asks of the reviewer. Read from the base branch of a pull request
//! (a pull request cannot switch its own checks off), or given with `--config FILE`.

use crate::analysis::Overrides;
use crate::report::{FailOn, Severity};
use globset::GlobSet;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The default location in a repository.
pub const DEFAULT_PATH: &str = ".github/prodaudit.yml";

/// Config files larger than this are refused.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{source_name}: {problem}")]
    Invalid {
        source_name: String,
        problem: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigSer {
    fail_on: Option<String>,
    #[serde(default)]
    rules: RulesSer,
    #[serde(default)]
    paths: PathsSer,
    #[serde(default)]
    review: ReviewSer,
    #[serde(default)]
    infra: InfraSer,
    #[serde(default)]
    tenancy: TenancySer,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenancySer {
    #[serde(default)]
    columns: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesSer {
    #[serde(default)]
    disable: Vec<String>,
    #[serde(default)]
    enable: Vec<String>,
    #[serde(default)]
    severity: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsSer {
    #[serde(default)]
    include: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    service: Vec<String>,
    #[serde(default)]
    not_service: Vec<String>,
    #[serde(default)]
    report_not_service: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewSer {
    max_inline_comments: Option<usize>,
    drafts: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InfraSer {
    /// Checked by hand so that a wrong shape gets an error naming the key.
    reverse_proxies: Option<serde_json::Value>,
}

/// A validated repository configuration.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    pub fail_on: Option<FailOn>,
    pub overrides: Overrides,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    /// Inline review comments per audit before the rest go to the review body (the App; default 25).
    pub max_inline_comments: usize,
    /// Audit draft pull requests too (the App; default false).
    pub audit_drafts: bool,
    /// Service or image names that are reverse proxies, besides the built-in ones (`infra.reverse_proxies`);
    /// lower-case. They may publish ports (Compose) and be exposed (Kubernetes Services).
    pub reverse_proxies: Vec<String>,
    /// More tenant/owner column names (`tenancy.columns`), besides the built-in ones.
    pub tenant_columns: Vec<String>,
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig {
            fail_on: None,
            overrides: Overrides::default(),
            include: None,
            exclude: None,
            max_inline_comments: 25,
            audit_drafts: false,
            reverse_proxies: Vec::new(),
            tenant_columns: Vec::new(),
        }
    }
}

impl RepoConfig {
    /// Parse and validate a config file's text. `known_ids` are the rule and check ids that exist, so a
    /// misspelt id is an error rather than a silent no-op.
    pub fn parse(source_name: &str, text: &str, known_ids: &[String]) -> Result<Self, ConfigError> {
        let err = |problem: String| ConfigError::Invalid {
            source_name: source_name.to_string(),
            problem,
        };
        if text.len() > MAX_CONFIG_BYTES {
            return Err(err(format!(
                "config is {} bytes; at most {} are read",
                text.len(),
                MAX_CONFIG_BYTES
            )));
        }
        let ser: ConfigSer = if text.trim().is_empty() {
            ConfigSer::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| err(crate::analysis::rules::yaml_error(&e)))?
        };
        let known = |id: &str| known_ids.iter().any(|k| k.eq_ignore_ascii_case(id));
        let canonical = |id: &str| {
            known_ids
                .iter()
                .find(|k| k.eq_ignore_ascii_case(id))
                .cloned()
                .unwrap_or_else(|| id.to_string())
        };
        let mut overrides = Overrides::default();
        for id in &ser.rules.disable {
            if !known(id) {
                return Err(err(format!("rules.disable: unknown rule or check `{id}`")));
            }
            overrides.disabled.insert(canonical(id));
        }
        for id in &ser.rules.enable {
            if !known(id) {
                return Err(err(format!("rules.enable: unknown rule or check `{id}`")));
            }
            overrides.enabled.insert(canonical(id));
        }
        for (id, sev) in &ser.rules.severity {
            if !known(id) {
                return Err(err(format!("rules.severity: unknown rule or check `{id}`")));
            }
            let sev: Severity = sev
                .parse()
                .map_err(|e: String| err(format!("rules.severity.{id}: {e}")))?;
            overrides.severity.insert(canonical(id), sev);
        }
        let fail_on = ser
            .fail_on
            .as_deref()
            .map(str::parse::<FailOn>)
            .transpose()
            .map_err(|e| err(format!("fail_on: {e}")))?;
        let globs = |list: &[String], key: &str| -> Result<Option<GlobSet>, ConfigError> {
            crate::analysis::engine::glob_set(list).map_err(|e| err(format!("{key}: {e}")))
        };
        if ser.review.max_inline_comments.is_some_and(|n| n > 1000) {
            return Err(err("review.max_inline_comments: at most 1000".into()));
        }
        let mut reverse_proxies = Vec::new();
        let names = match &ser.infra.reverse_proxies {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => Ok(s.clone()),
                    other => Err(err(format!(
                        "infra.reverse_proxies: `{other}` is not a name; give service or image names as strings"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(err(format!(
                    "infra.reverse_proxies: expected a list of service or image names such as `[caddy, edge-proxy]`, got `{other}`"
                )));
            }
        };
        for name in &names {
            let n = name.trim();
            if n.is_empty()
                || !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(err(format!(
                    "infra.reverse_proxies: `{name}` is not a service or image name (letters, digits, `.`, `_`, `-`)"
                )));
            }
            reverse_proxies.push(n.to_ascii_lowercase());
        }
        let mut tenant_columns = Vec::new();
        for c in &ser.tenancy.columns {
            let c = c.trim();
            if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                return Err(err(format!(
                    "tenancy.columns: `{c}` is not a column name (letters, digits, `_`)"
                )));
            }
            tenant_columns.push(c.to_string());
        }
        overrides.service = globs(&ser.paths.service, "paths.service")?;
        overrides.not_service = globs(&ser.paths.not_service, "paths.not_service")?;
        overrides.report_not_service = ser.paths.report_not_service;
        overrides.service_globs = ser.paths.service.clone();
        overrides.not_service_globs = ser.paths.not_service.clone();
        Ok(RepoConfig {
            tenant_columns,
            reverse_proxies,
            fail_on,
            overrides,
            include: globs(&ser.paths.include, "paths.include")?,
            exclude: globs(&ser.paths.exclude, "paths.exclude")?,
            max_inline_comments: ser.review.max_inline_comments.unwrap_or(25),
            audit_drafts: ser.review.drafts.unwrap_or(false),
        })
    }

    /// Is this repository-relative path to be audited?
    pub fn wants_path(&self, path: &str) -> bool {
        if let Some(include) = &self.include
            && !include.is_match(path)
        {
            return false;
        }
        !self.exclude.as_ref().is_some_and(|e| e.is_match(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        ["C5", "C5-blocking-sleep", "O1"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn parses_a_full_config() {
        let c = RepoConfig::parse(
            "cfg",
            "fail_on: medium\nrules:\n  disable: [o1]\n  severity: {C5-blocking-sleep: low}\npaths:\n  exclude: ['scripts/**']\nreview:\n  max_inline_comments: 10\n  drafts: true\n",
            &ids(),
        );
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.fail_on, Some(FailOn::At(Severity::Medium)));
        assert!(c.overrides.disabled.contains("O1"));
        assert_eq!(
            c.overrides.severity.get("C5-blocking-sleep"),
            Some(&Severity::Low)
        );
        assert!(!c.wants_path("scripts/x.py"));
        assert!(c.wants_path("app/x.py"));
        assert_eq!(c.max_inline_comments, 10);
        assert!(c.audit_drafts);
        assert!(c.reverse_proxies.is_empty());
    }

    #[test]
    fn tenancy_columns_and_path_classes() {
        let c = RepoConfig::parse(
            "x.yml",
            "tenancy:\n  columns: [project_id, space_id]\npaths:\n  service: [\"scripts/**\"]\n  not_service: [\"tools/**\"]\n  report_not_service: true\nrules:\n  enable: [c5]\n",
            &ids(),
        );
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.tenant_columns, vec!["project_id", "space_id"]);
        assert!(c.overrides.report_not_service);
        assert!(c.overrides.enabled.contains("C5"));
        assert!(
            c.overrides
                .service
                .as_ref()
                .is_some_and(|g| g.is_match("scripts/x.py"))
        );
        assert!(
            c.overrides
                .not_service
                .as_ref()
                .is_some_and(|g| g.is_match("tools/x.py"))
        );
        for (text, want) in [
            (
                "tenancy:\n  columns: [\"a b\"]\n",
                "tenancy.columns: `a b` is not a column name",
            ),
            ("tenancy:\n  cols: [a]\n", "cols"),
            ("paths:\n  service: [\"[\"]\n", "paths.service"),
        ] {
            match RepoConfig::parse("x.yml", text, &ids()) {
                Ok(_) => panic!("accepted {text}"),
                Err(e) => assert!(e.to_string().contains(want), "{e}"),
            }
        }
    }

    #[test]
    fn reverse_proxies_are_names() {
        let c = match RepoConfig::parse(
            "cfg",
            "infra:\n  reverse_proxies: [MyProxy, edge-router]\n",
            &ids(),
        ) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.reverse_proxies, vec!["myproxy", "edge-router"]);
    }

    #[test]
    fn rejects_unknown_keys_ids_and_levels() {
        for (text, needle) in [
            ("fail_on: sometimes\n", "fail_on"),
            ("rules:\n  disable: [Z9]\n", "unknown rule or check `Z9`"),
            ("rulez: {}\n", "rulez"),
            ("rules:\n  severity: {C5: huge}\n", "rules.severity.C5"),
            ("paths:\n  include: ['[']\n", "paths.include"),
            ("- a\n- b\n", "cfg"),
            ("infra:\n  proxies: [x]\n", "proxies"),
            (
                "infra:\n  reverse_proxies: caddy\n",
                "infra.reverse_proxies: expected a list",
            ),
            ("infra:\n  reverse_proxies: [1]\n", "infra.reverse_proxies"),
            (
                "infra:\n  reverse_proxies: ['my proxy']\n",
                "infra.reverse_proxies",
            ),
            (
                "infra:\n  reverse_proxies: ['(nginx|api)']\n",
                "infra.reverse_proxies",
            ),
        ] {
            match RepoConfig::parse("cfg", text, &ids()) {
                Ok(_) => panic!("accepted {text:?}"),
                Err(e) => assert!(e.to_string().contains(needle), "{e} lacks {needle}"),
            }
        }
    }
}
