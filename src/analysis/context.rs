//! What a check may know beyond the file it analyses: which files the change touches, which paths the
//! repository has at the revision under review, and the contents of the few files rules asked for.
//!
//! Rules say which other files they read ([`super::checks::Check::needs`]); the caller (local git today, the
//! GitHub API later) fetches only those.

use super::language::FileKind;
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

/// Where a check is running.
pub struct FileContext<'a> {
    pub path: &'a str,
    pub kind: FileKind,
    pub repo: &'a RepoContext,
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
}
