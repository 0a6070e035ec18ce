//! What a check may know beyond the file it analyses: which files the change touches, which paths the
//! repository has at the revision under review, and the contents of the few files rules asked for.
//!
//! Rules say which other files they read ([`super::checks::Check::needs`]); the caller (local git today, the
//! GitHub API later) fetches only those.

use super::language::{self, FileKind};
use crate::diff::LineSet;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::{BTreeSet, HashMap};

/// The repository around the files being analysed.
#[derive(Debug, Default, Clone)]
pub struct RepoContext {
    /// Paths the change adds or modifies (in `--all-lines` mode: every analysed file).
    pub changed: BTreeSet<String>,
    /// Every path of the tree under review, sorted; empty when unknown.
    pub paths: Vec<String>,
    /// Contents of the files some check needs, by path.
    pub files: HashMap<String, String>,
    /// Names of reverse proxies the repository configures (`infra.reverse_proxies`), besides the built-in ones
    /// (caddy, nginx, traefik, envoy, haproxy, …); lower-case.
    pub reverse_proxies: Vec<String>,
}

impl RepoContext {
    /// Does the tree under review have this path? Unknown trees answer `None`.
    pub fn exists(&self, path: &str) -> Option<bool> {
        if self.paths.is_empty() {
            return None;
        }
        Some(
            self.paths
                .binary_search_by(|p| p.as_str().cmp(path))
                .is_ok(),
        )
    }

    /// The text of a file a check asked for.
    pub fn read(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// A file's kind with the repository in view: a Python file under `versions/` is an Alembic migration
    /// only when the folder above `versions/` has an `env.py` (when the tree is unknown, the folder name
    /// decides, as [`language::detect`] does).
    pub fn kind_of(&self, path: &str, text: Option<&str>) -> Option<FileKind> {
        let kind = language::detect(path, text)?;
        if kind == FileKind::Alembic && self.exists(&alembic_env_path(path)) == Some(false) {
            return Some(FileKind::Python);
        }
        Some(kind)
    }

    /// Does the tree have an Alembic migrations folder (a `versions/` folder beside an `env.py`)? `None`
    /// when the tree is unknown.
    pub fn has_alembic_tree(&self) -> Option<bool> {
        if self.paths.is_empty() {
            return None;
        }
        Some(
            self.paths
                .iter()
                .any(|p| self.kind_of(p, None) == Some(FileKind::Alembic)),
        )
    }

    /// Does a service name, image or label name one of the repository's configured reverse proxies? A name
    /// counts where it stands as a word: at the start or after `/ _ - . : @` or a blank, and at the end or before
    /// one of them (`myproxy`, `myproxy-eu`, `registry.local/team/myproxy:1.4`, not `notmyproxyd`).
    pub fn is_configured_proxy(&self, text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        let sep = |c: char| matches!(c, '/' | '_' | '-' | '.' | ':' | '@') || c.is_whitespace();
        self.reverse_proxies.iter().any(|name| {
            !name.is_empty()
                && lower.match_indices(name.as_str()).any(|(at, m)| {
                    let before = lower[..at].chars().next_back();
                    let after = lower[at + m.len()..].chars().next();
                    before.is_none_or(sep) && after.is_none_or(sep)
                })
        })
    }

    /// Paths of the tree matching a glob set.
    pub fn matching<'a>(&'a self, globs: &'a GlobSet) -> impl Iterator<Item = &'a str> + 'a {
        self.paths
            .iter()
            .map(String::as_str)
            .filter(move |p| globs.is_match(p))
    }
}

/// Build one glob set from the `needs` of several checks; bad globs are a programming error reported as such.
pub fn needs_globset(globs: &[&str]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g)?);
    }
    b.build()
}

/// `alembic/env.py` for `alembic/versions/0001_x.py`.
fn alembic_env_path(path: &str) -> String {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let parent = dir.rsplit_once('/').map_or("", |(p, _)| p);
    if parent.is_empty() {
        "env.py".to_string()
    } else {
        format!("{parent}/env.py")
    }
}

/// Where a check is running.
pub struct FileContext<'a> {
    pub path: &'a str,
    pub kind: FileKind,
    pub repo: &'a RepoContext,
    /// The lines findings are kept on (`None`: every line), for checks that report once per change.
    pub lines: Option<&'a LineSet>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exists_and_matching() {
        let ctx = RepoContext {
            paths: vec![
                ".env.example".into(),
                "app/main.py".into(),
                "migrations/versions/a1.py".into(),
            ],
            ..Default::default()
        };
        assert_eq!(ctx.exists("app/main.py"), Some(true));
        assert_eq!(ctx.exists("app/other.py"), Some(false));
        assert_eq!(RepoContext::default().exists("x"), None);
        let globs = match needs_globset(&["**/versions/*.py"]) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            ctx.matching(&globs).collect::<Vec<_>>(),
            vec!["migrations/versions/a1.py"]
        );
    }

    #[test]
    fn alembic_needs_an_env_py_beside_versions_when_the_tree_is_known() {
        let with_env = RepoContext {
            paths: vec![
                "backend/alembic/env.py".into(),
                "backend/alembic/versions/a1.py".into(),
                "lib/versions/v2.py".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            with_env.kind_of("backend/alembic/versions/a1.py", None),
            Some(FileKind::Alembic)
        );
        assert_eq!(
            with_env.kind_of("lib/versions/v2.py", None),
            Some(FileKind::Python)
        );
        assert_eq!(with_env.has_alembic_tree(), Some(true));
        let unknown = RepoContext::default();
        assert_eq!(
            unknown.kind_of("lib/versions/v2.py", None),
            Some(FileKind::Alembic)
        );
        assert_eq!(unknown.has_alembic_tree(), None);
        let without = RepoContext {
            paths: vec!["lib/versions/v2.py".into(), "app/models.py".into()],
            ..Default::default()
        };
        assert_eq!(without.has_alembic_tree(), Some(false));
        assert_eq!(alembic_env_path("versions/a.py"), "env.py");
    }

    #[test]
    fn configured_proxies_match_as_words() {
        let ctx = RepoContext {
            reverse_proxies: vec!["myproxy".into(), "edge-router".into()],
            ..Default::default()
        };
        for t in [
            "myproxy",
            "MyProxy",
            "myproxy-eu",
            "registry.local/team/myproxy:1.4",
            "app edge-router",
        ] {
            assert!(ctx.is_configured_proxy(t), "{t}");
        }
        for t in ["notmyproxyd", "myproxy2", "api", "edge"] {
            assert!(!ctx.is_configured_proxy(t), "{t}");
        }
        assert!(!RepoContext::default().is_configured_proxy("myproxy"));
    }
}
