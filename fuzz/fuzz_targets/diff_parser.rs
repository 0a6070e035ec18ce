//! The unified-diff parsers: `git diff` output (whole files, headers, binary and mode changes) and GitHub's
//! per-file `patch` hunks. Neither may panic, and every added line a hunk reports lies inside its new range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prodaudit::diff::{parse_git_diff, parse_patch};

fuzz_target!(|data: &[u8]| {
    if let Ok(files) = parse_git_diff(data) {
        for file in &files {
            let _ = file.path();
            let added = file.added_lines();
            let commentable = file.commentable_lines();
            for line in added.iter() {
                assert!(commentable.contains(line), "an added line is commentable");
            }
            let _ = file.mode_only();
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(hunks) = parse_patch(text)
    {
        for hunk in &hunks {
            for &line in &hunk.added {
                // Subtraction, not `new_start + new_lines`: a header may carry numbers near usize::MAX.
                assert!(
                    line >= hunk.new_start && line - hunk.new_start < hunk.new_lines,
                    "added line {line} outside the hunk's new range {hunk:?}"
                );
            }
        }
    }
});
