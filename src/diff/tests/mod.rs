//! Tests of the diff module, and helpers they share.

mod compute;
mod git_parse;
mod line_set;
mod patch;
mod real_git;
mod robustness;

use super::{FileDiff, FileStatus, LineSet};

/// A small deterministic pseudo-random generator (64-bit LCG, high bits).
pub(super) struct Lcg(u64);

impl Lcg {
    pub(super) fn new(seed: u64) -> Self {
        Lcg(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(super) fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 32) as u32
    }

    /// A number in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.next_u32() as usize % n
    }
}

/// Joins lines with `\n` and ends the text with one.
pub(super) fn text(lines: &[&str]) -> String {
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// A set of the lines `first..=last`.
pub(super) fn range(first: usize, last: usize) -> LineSet {
    let mut set = LineSet::new();
    set.insert_range(first, last);
    set
}

/// Properties every successfully parsed file must have, whatever the input was.
pub(super) fn check_invariants(files: &[FileDiff]) {
    for f in files {
        assert!(!f.path().is_empty(), "empty path in {f:?}");
        match f.status {
            FileStatus::Added => assert!(f.old_path.is_none(), "{f:?}"),
            FileStatus::Deleted => assert!(f.new_path.is_none(), "{f:?}"),
            _ => assert!(f.old_path.is_some() && f.new_path.is_some(), "{f:?}"),
        }
        for h in &f.hunks {
            assert!(h.added.len() <= h.new_lines, "{h:?}");
            assert!(h.deleted.len() <= h.old_lines, "{h:?}");
            assert_eq!(
                h.old_lines - h.deleted.len(),
                h.new_lines - h.added.len(),
                "{h:?}"
            );
            assert!(h.added.windows(2).all(|w| w[0] < w[1]), "{h:?}");
            assert!(h.deleted.windows(2).all(|w| w[0] < w[1]), "{h:?}");
            assert!(
                h.deleted
                    .iter()
                    .all(|&l| l >= h.old_start && l < h.old_start + h.old_lines),
                "{h:?}"
            );
            assert!(
                h.added
                    .iter()
                    .all(|&l| l >= h.new_start && l < h.new_start + h.new_lines),
                "{h:?}"
            );
        }
        let commentable = f.commentable_lines();
        for line in f.added_lines().iter() {
            assert!(
                commentable.contains(line),
                "added line {line} not commentable in {f:?}"
            );
        }
    }
}
