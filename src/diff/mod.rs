//! Unified-diff parsing and changed-line sets.
//!
//! prodaudit reports findings only on lines a pull request changed. This module turns a change into
//! per-file sets of new-side line numbers:
//!
//! - [`parse_git_diff`] reads the output of `git diff` (several files, raw bytes);
//! - [`parse_patch`] reads GitHub's per-file `patch` text from the pull-request files API (hunks only);
//! - [`diff_texts`] computes the hunks from the two full versions of a file when no patch is available.
//!
//! All three yield [`Hunk`]s (the first two through one shared hunk parser); [`FileDiff::added_lines`] and
//! [`FileDiff::commentable_lines`] turn them into [`LineSet`]s.

mod compute;
mod gitdiff;
mod hunk;
mod line_set;

#[cfg(test)]
mod tests;

pub use compute::diff_texts;
pub use gitdiff::parse_git_diff;
pub use hunk::parse_patch;
pub use line_set::LineSet;

/// How a file changed between the two sides of a diff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStatus {
    /// The file is new (`new file mode`, or `--- /dev/null`).
    Added,
    /// The file exists on both sides under the same name.
    Modified,
    /// The file was removed (`deleted file mode`, or `+++ /dev/null`).
    Deleted,
    /// The file was renamed (`rename from`/`rename to`), with or without content changes.
    Renamed,
    /// The file was copied (`copy from`/`copy to`), with or without content changes.
    Copied,
}

/// One `@@ -old_start,old_lines +new_start,new_lines @@` hunk of a unified diff.
///
/// Line numbers are 1-based, as in the hunk header: when a side's count is 0, its start is the line
/// *before* the (empty) range, as git writes it (`+0,0` for a deleted file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// First old-side line of the hunk (as written in the header).
    pub old_start: usize,
    /// Number of old-side lines (context and `-` lines).
    pub old_lines: usize,
    /// First new-side line of the hunk (as written in the header).
    pub new_start: usize,
    /// Number of new-side lines (context and `+` lines).
    pub new_lines: usize,
    /// New-side line numbers of the `+` lines in this hunk, ascending.
    pub added: Vec<usize>,
    /// Old-side line numbers of the `-` lines in this hunk, ascending.
    pub deleted: Vec<usize>,
}

/// The diff of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiff {
    /// Path on the old side, without the `a/` prefix; `None` when the file is new (`/dev/null`).
    pub old_path: Option<String>,
    /// Path on the new side, without the `b/` prefix; `None` when the file is deleted.
    pub new_path: Option<String>,
    /// How the file changed.
    pub status: FileStatus,
    /// `Binary files ... differ` or a `GIT binary patch` block: no hunks are available.
    pub binary: bool,
    /// A submodule (gitlink): mode 160000 on either side, or `Subproject commit` lines in a hunk.
    pub submodule: bool,
    /// Old-side mode (`old mode`, `deleted file mode`, or the mode of the `index` line).
    pub old_mode: Option<String>,
    /// New-side mode (`new mode`, `new file mode`, or the mode of the `index` line).
    pub new_mode: Option<String>,
    /// The hunks, in the order they appear.
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    /// The path findings use: the new path, else the old path.
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }

    /// New-side lines added or modified (the `+` lines).
    pub fn added_lines(&self) -> LineSet {
        self.hunks
            .iter()
            .flat_map(|h| h.added.iter().copied())
            .collect()
    }

    /// Old-side lines removed or modified (the `-` lines).
    pub fn deleted_lines(&self) -> LineSet {
        self.hunks
            .iter()
            .flat_map(|h| h.deleted.iter().copied())
            .collect()
    }

    /// New-side lines GitHub accepts a review comment on: every new-side line inside a hunk (context and
    /// `+` lines), i.e. `new_start..=new_start + new_lines - 1` for each hunk.
    pub fn commentable_lines(&self) -> LineSet {
        let mut set = LineSet::new();
        for h in &self.hunks {
            if h.new_lines > 0 {
                let last = h.new_start.saturating_add(h.new_lines - 1);
                set.insert_range(h.new_start, last);
            }
        }
        set
    }

    /// True when only the mode changed: a modified, non-binary file with no hunks whose two modes differ.
    pub fn mode_only(&self) -> bool {
        self.hunks.is_empty()
            && !self.binary
            && self.status == FileStatus::Modified
            && matches!((&self.old_mode, &self.new_mode), (Some(a), Some(b)) if a != b)
    }
}

/// Why a diff could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    /// The input is not a well-formed unified diff at `line` (1-based line of the diff text).
    #[error("malformed diff at line {line}: {reason}")]
    Malformed {
        /// 1-based line number in the diff text (one past the last line when the input ended early).
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// A combined diff (`diff --cc` / `diff --combined`, as git shows merge commits).
    #[error(
        "combined diffs (`diff --cc`/`diff --combined`, line {line}) are not supported: diff against one parent"
    )]
    CombinedDiff {
        /// 1-based line number of the `diff --cc` header.
        line: usize,
    },
}
