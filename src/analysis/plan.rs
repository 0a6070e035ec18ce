//! One planning policy for the CLI (`prodaudit audit`) and the App: which paths are analysed, which are skipped
//! and why, which contents are refused, and how large a context file may be. Both callers ask these functions, so
//! they cannot drift apart again.

/// Files larger than this are not analysed (minified bundles, generated code, data dumps); the App does not
/// fetch them either.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;

/// Files the checks read besides the analysed ones (e.g. `.env.example`, `alembic.ini`) larger than this are
/// not read.
pub const MAX_CONTEXT_FILE_BYTES: usize = MAX_FILE_BYTES;

/// The reason given for vendored or generated files.
pub const VENDORED: &str = "vendored or generated";

/// What becomes of a path of a change or a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathPolicy {
    /// Some rule could be about it: read and analyse it.
    Analyse,
    /// No rule reads files of this kind: not read, not reported.
    Ignore,
    /// Not analysed, and reported as skipped with this reason.
    Skip(&'static str),
}

/// The policy for one repository-relative path (forward slashes), before the repository's own include/exclude
/// configuration, which both callers apply as well.
pub fn path_policy(path: &str) -> PathPolicy {
    if !worth_reading(path) {
        PathPolicy::Ignore
    } else if is_vendored(path) {
        PathPolicy::Skip(VENDORED)
    } else {
        PathPolicy::Analyse
    }
}

/// Only files some rule could be about are read at all; prodaudit's own configuration is not one of them.
pub fn worth_reading(path: &str) -> bool {
    path != crate::repo_config::DEFAULT_PATH
        && (super::language::detect(path, None).is_some()
            || path.ends_with(".yml")
            || path.ends_with(".yaml"))
}

/// Vendored or generated code is not the team's to fix.
pub fn is_vendored(path: &str) -> bool {
    path.split('/').any(|c| {
        matches!(
            c,
            "vendor" | "vendored" | "third_party" | "node_modules" | "site-packages" | ".venv"
        )
    }) || path.ends_with("_pb2.py")
        || path.ends_with("_pb2_grpc.py")
}

/// Why these contents are not analysed, if they are not: larger than `max_bytes`, or binary (a NUL byte
/// anywhere in the file, not only near its start).
pub fn content_skip(bytes: &[u8], max_bytes: usize) -> Option<String> {
    if bytes.len() > max_bytes {
        return Some(format!(
            "too large ({} KiB > {} KiB)",
            bytes.len() / 1024,
            max_bytes / 1024
        ));
    }
    // `contains` on bytes is a memchr scan: the whole file costs microseconds.
    if bytes.contains(&0) {
        return Some("binary".into());
    }
    None
}

/// Is a context file with these contents read? Not when it is larger than [`MAX_CONTEXT_FILE_BYTES`] or binary.
pub fn context_file_wanted(bytes: &[u8]) -> bool {
    content_skip(bytes, MAX_CONTEXT_FILE_BYTES).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_analysed_ignored_or_skipped() {
        assert_eq!(path_policy("app/main.py"), PathPolicy::Analyse);
        assert_eq!(
            path_policy("deploy/docker-compose.yml"),
            PathPolicy::Analyse
        );
        assert_eq!(path_policy("README.md"), PathPolicy::Ignore);
        assert_eq!(path_policy("vendor/lib/x.py"), PathPolicy::Skip(VENDORED));
        assert_eq!(path_policy("app/api_pb2.py"), PathPolicy::Skip(VENDORED));
        assert_eq!(path_policy(".venv/lib/site.py"), PathPolicy::Skip(VENDORED));
        assert_eq!(path_policy("node_modules/x/README.md"), PathPolicy::Ignore);
        assert_eq!(path_policy("app/vendors.py"), PathPolicy::Analyse);
    }

    #[test]
    fn a_nul_byte_anywhere_makes_a_file_binary() {
        let mut bytes = vec![b'a'; 20_000];
        assert_eq!(content_skip(&bytes, MAX_FILE_BYTES), None);
        bytes[9_000] = 0;
        assert_eq!(
            content_skip(&bytes, MAX_FILE_BYTES).as_deref(),
            Some("binary")
        );
        assert!(!context_file_wanted(&bytes));
    }

    #[test]
    fn one_size_limit_for_analysed_and_context_files() {
        let big = vec![b'a'; MAX_FILE_BYTES + 1];
        assert!(content_skip(&big, MAX_FILE_BYTES).is_some_and(|r| r.starts_with("too large")));
        assert!(!context_file_wanted(&big));
        assert!(context_file_wanted(&big[..MAX_FILE_BYTES]));
    }
}
