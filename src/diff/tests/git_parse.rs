use super::{check_invariants, range, text};
use crate::diff::{DiffError, FileDiff, FileStatus, Hunk, LineSet, parse_git_diff};

fn parse_ok(input: &str) -> Vec<FileDiff> {
    let files = parse_git_diff(input.as_bytes()).unwrap_or_else(|e| panic!("{e}\n---\n{input}"));
    check_invariants(&files);
    files
}

fn parse_one(input: &str) -> FileDiff {
    let mut files = parse_ok(input);
    assert_eq!(files.len(), 1, "{files:?}");
    files.remove(0)
}

fn set(lines: &[usize]) -> LineSet {
    lines.iter().copied().collect()
}

fn malformed_line(result: Result<Vec<FileDiff>, DiffError>) -> (usize, String) {
    match result {
        Err(DiffError::Malformed { line, reason }) => (line, reason),
        other => panic!("expected a Malformed error, got {other:?}"),
    }
}

pub(super) const TWO_HUNKS: &[&str] = &[
    "diff --git a/app/main.py b/app/main.py",
    "index 1111111..2222222 100644",
    "--- a/app/main.py",
    "+++ b/app/main.py",
    "@@ -1,6 +1,7 @@ import os",
    " import os",
    "-import sys",
    "+import sys, json",
    "+import re",
    " ",
    " def f():",
    "     pass",
    "     return 1",
    "@@ -20,4 +21,5 @@ def g():",
    " a",
    " b",
    "+c",
    " d",
    " e",
];

#[test]
fn modification_with_two_hunks() {
    let f = parse_one(&text(TWO_HUNKS));
    assert_eq!(f.status, FileStatus::Modified);
    assert_eq!(f.old_path.as_deref(), Some("app/main.py"));
    assert_eq!(f.new_path.as_deref(), Some("app/main.py"));
    assert_eq!(f.path(), "app/main.py");
    assert_eq!(
        (f.old_mode.as_deref(), f.new_mode.as_deref()),
        (Some("100644"), Some("100644"))
    );
    assert!(!f.binary && !f.submodule && !f.mode_only());
    assert_eq!(
        f.hunks,
        vec![
            Hunk {
                old_start: 1,
                old_lines: 6,
                new_start: 1,
                new_lines: 7,
                added: vec![2, 3],
                deleted: vec![2]
            },
            Hunk {
                old_start: 20,
                old_lines: 4,
                new_start: 21,
                new_lines: 5,
                added: vec![23],
                deleted: vec![]
            },
        ]
    );
    assert_eq!(f.added_lines(), set(&[2, 3, 23]));
    assert_eq!(f.added_lines().ranges(), &[(2, 3), (23, 23)]);
    assert_eq!(f.commentable_lines().ranges(), &[(1, 7), (21, 25)]);
}

#[test]
fn added_file() {
    let f = parse_one(&text(&[
        "diff --git a/pkg/new.py b/pkg/new.py",
        "new file mode 100644",
        "index 0000000..3333333",
        "--- /dev/null",
        "+++ b/pkg/new.py",
        "@@ -0,0 +1,3 @@",
        "+a",
        "+b",
        "+c",
    ]));
    assert_eq!(f.status, FileStatus::Added);
    assert_eq!(f.old_path, None);
    assert_eq!(f.new_path.as_deref(), Some("pkg/new.py"));
    assert_eq!(
        (f.old_mode.as_deref(), f.new_mode.as_deref()),
        (None, Some("100644"))
    );
    assert_eq!(f.added_lines(), range(1, 3));
    assert_eq!(f.commentable_lines(), range(1, 3));
    assert!(!f.mode_only());
}

#[test]
fn added_empty_file_takes_its_path_from_the_header() {
    let f = parse_one(&text(&[
        "diff --git a/empty name.txt b/empty name.txt",
        "new file mode 100644",
        "index 0000000..e69de29",
    ]));
    assert_eq!(f.status, FileStatus::Added);
    assert_eq!(f.old_path, None);
    assert_eq!(f.new_path.as_deref(), Some("empty name.txt"));
    assert!(f.hunks.is_empty() && f.added_lines().is_empty());
}

#[test]
fn deleted_file() {
    let f = parse_one(&text(&[
        "diff --git a/old.py b/old.py",
        "deleted file mode 100644",
        "index 4444444..0000000",
        "--- a/old.py",
        "+++ /dev/null",
        "@@ -1,2 +0,0 @@",
        "-x",
        "-y",
    ]));
    assert_eq!(f.status, FileStatus::Deleted);
    assert_eq!(f.old_path.as_deref(), Some("old.py"));
    assert_eq!(f.new_path, None);
    assert_eq!(f.path(), "old.py");
    assert_eq!(f.old_mode.as_deref(), Some("100644"));
    assert_eq!(
        f.hunks,
        vec![Hunk {
            old_start: 1,
            old_lines: 2,
            new_start: 0,
            new_lines: 0,
            added: vec![],
            deleted: vec![1, 2]
        }]
    );
    assert!(f.added_lines().is_empty());
    assert!(f.commentable_lines().is_empty());
    assert_eq!(f.deleted_lines(), set(&[1, 2]));
}

#[test]
fn rename_without_change_uses_rename_lines_for_paths_with_spaces() {
    let f = parse_one(&text(&[
        "diff --git a/dir one/old name.py b/dir two/new name.py",
        "similarity index 100%",
        "rename from dir one/old name.py",
        "rename to dir two/new name.py",
    ]));
    assert_eq!(f.status, FileStatus::Renamed);
    assert_eq!(f.old_path.as_deref(), Some("dir one/old name.py"));
    assert_eq!(f.new_path.as_deref(), Some("dir two/new name.py"));
    assert_eq!(f.path(), "dir two/new name.py");
    assert!(f.hunks.is_empty());
    assert!(!f.mode_only());
}

#[test]
fn rename_with_change() {
    let f = parse_one(&text(&[
        "diff --git a/src/a.py b/src/b.py",
        "similarity index 80%",
        "rename from src/a.py",
        "rename to src/b.py",
        "index 5555555..6666666 100644",
        "--- a/src/a.py",
        "+++ b/src/b.py",
        "@@ -1,3 +1,3 @@",
        " a",
        "-b",
        "+B",
        " c",
    ]));
    assert_eq!(f.status, FileStatus::Renamed);
    assert_eq!(f.old_path.as_deref(), Some("src/a.py"));
    assert_eq!(f.new_path.as_deref(), Some("src/b.py"));
    assert_eq!(f.added_lines(), set(&[2]));
    assert_eq!(f.commentable_lines(), range(1, 3));
}

#[test]
fn dev_null_decides_over_rename_lines() {
    let f = parse_one(&text(&[
        "diff --git a/x b/y",
        "rename from x",
        "rename to y",
        "--- /dev/null",
        "+++ b/y",
        "@@ -0,0 +1 @@",
        "+a",
    ]));
    assert_eq!(f.status, FileStatus::Added);
    assert_eq!(
        (f.old_path.as_deref(), f.new_path.as_deref()),
        (None, Some("y"))
    );
}

#[test]
fn copy_with_change() {
    let f = parse_one(&text(&[
        "diff --git a/lib/x.py b/lib/y.py",
        "similarity index 90%",
        "copy from lib/x.py",
        "copy to lib/y.py",
        "index 5555555..7777777 100644",
        "--- a/lib/x.py",
        "+++ b/lib/y.py",
        "@@ -1,2 +1,3 @@",
        " a",
        " b",
        "+c",
    ]));
    assert_eq!(f.status, FileStatus::Copied);
    assert_eq!(f.old_path.as_deref(), Some("lib/x.py"));
    assert_eq!(f.new_path.as_deref(), Some("lib/y.py"));
    assert_eq!(f.added_lines(), set(&[3]));
}

#[test]
fn binary_files_and_git_binary_patch_are_skipped() {
    let files = parse_ok(&text(&[
        "diff --git a/img.png b/img.png",
        "index 7777777..8888888 100644",
        "Binary files a/img.png and b/img.png differ",
        "diff --git a/logo.bin b/logo.bin",
        "new file mode 100644",
        "index 0000000..9999999",
        "GIT binary patch",
        "literal 12",
        "TcmZ?wbhEHbRA6vpVE_OC5(NPO",
        "",
        "literal 0",
        "HcmV?d00001",
        "",
        "diff --git a/after.py b/after.py",
        "index 1234567..7654321 100644",
        "--- a/after.py",
        "+++ b/after.py",
        "@@ -1 +1 @@",
        "-a",
        "+b",
    ]));
    assert_eq!(files.len(), 3);
    assert!(files[0].binary && files[0].hunks.is_empty());
    assert_eq!(files[0].status, FileStatus::Modified);
    assert_eq!(files[0].path(), "img.png");
    assert!(!files[0].mode_only());
    assert!(files[1].binary && files[1].hunks.is_empty());
    assert_eq!(files[1].status, FileStatus::Added);
    assert_eq!(files[1].path(), "logo.bin");
    assert!(!files[2].binary);
    assert_eq!(files[2].path(), "after.py");
    assert_eq!(files[2].added_lines(), set(&[1]));
}

#[test]
fn submodules_are_marked() {
    let files = parse_ok(&text(&[
        "diff --git a/vendor/lib b/vendor/lib",
        "index abc1234..def5678 160000",
        "--- a/vendor/lib",
        "+++ b/vendor/lib",
        "@@ -1 +1 @@",
        "-Subproject commit abc1234abc1234abc1234abc1234abc1234abc12",
        "+Subproject commit def5678def5678def5678def5678def5678def56",
        "diff --git a/ext/new b/ext/new",
        "new file mode 160000",
        "index 0000000..def5678",
        "--- /dev/null",
        "+++ b/ext/new",
        "@@ -0,0 +1 @@",
        "+Subproject commit def5678def5678def5678def5678def5678def56",
        // No mode anywhere: only the content says it is a submodule.
        "diff --git a/ext/other b/ext/other",
        "index 1111111..2222222",
        "--- a/ext/other",
        "+++ b/ext/other",
        "@@ -1 +1 @@",
        "-Subproject commit 1111111111111111111111111111111111111111",
        "+Subproject commit 2222222222222222222222222222222222222222",
        "diff --git a/plain.txt b/plain.txt",
        "index 1111111..2222222 100644",
        "--- a/plain.txt",
        "+++ b/plain.txt",
        "@@ -1 +1 @@",
        "-x",
        "+Subproject is the topic",
    ]));
    assert_eq!(files.len(), 4);
    assert!(files[0].submodule);
    assert_eq!(files[0].new_mode.as_deref(), Some("160000"));
    assert!(files[1].submodule);
    assert_eq!(files[1].status, FileStatus::Added);
    assert!(files[2].submodule);
    assert!(!files[3].submodule);
}

#[test]
fn mode_only_change() {
    let files = parse_ok(&text(&[
        "diff --git a/run.sh b/run.sh",
        "old mode 100644",
        "new mode 100755",
        "diff --git a/my tools/x b/y.sh b/my tools/x b/y.sh",
        "old mode 100755",
        "new mode 100644",
        "diff --git a/both.sh b/both.sh",
        "old mode 100644",
        "new mode 100755",
        "index 1111111..2222222",
        "--- a/both.sh",
        "+++ b/both.sh",
        "@@ -1 +1 @@",
        "-a",
        "+b",
        "diff --git a/a.sh b/b.sh",
        "old mode 100644",
        "new mode 100755",
        "similarity index 100%",
        "rename from a.sh",
        "rename to b.sh",
        "diff --git a/pic.png b/pic.png",
        "old mode 100644",
        "new mode 100755",
        "index 1111111..2222222",
        "Binary files a/pic.png and b/pic.png differ",
    ]));
    assert_eq!(files.len(), 5);
    let f = &files[0];
    assert!(f.mode_only());
    assert_eq!(f.status, FileStatus::Modified);
    assert_eq!(f.path(), "run.sh");
    assert_eq!(
        (f.old_mode.as_deref(), f.new_mode.as_deref()),
        (Some("100644"), Some("100755"))
    );
    assert!(f.hunks.is_empty());
    // The header is split where both halves name the same path, even though the name holds " b/".
    assert!(files[1].mode_only());
    assert_eq!(files[1].old_path.as_deref(), Some("my tools/x b/y.sh"));
    assert_eq!(files[1].new_path.as_deref(), Some("my tools/x b/y.sh"));
    assert!(!files[2].mode_only(), "content changed too");
    assert_eq!(files[3].status, FileStatus::Renamed);
    assert!(!files[3].mode_only(), "renamed too");
    assert!(
        files[4].binary && !files[4].mode_only(),
        "binary content changed too"
    );
}

#[test]
fn crlf_line_endings() {
    let lf = text(TWO_HUNKS);
    let crlf = lf.replace('\n', "\r\n");
    assert_eq!(parse_ok(&crlf), parse_ok(&lf));
    let f = parse_one(&text(&[
        "diff --git a/w.txt b/w.txt\r",
        "index 1111111..2222222 100644\r",
        "--- a/w.txt\r",
        "+++ b/w.txt\r",
        "@@ -1,3 +1,3 @@\r",
        " one\r",
        "\r", // an empty context line whose leading space was stripped
        "-two\r",
        "+TWO\r",
    ]));
    assert_eq!(f.path(), "w.txt");
    assert_eq!(f.added_lines(), set(&[3]));
    assert_eq!(f.commentable_lines(), range(1, 3));
}

#[test]
fn no_newline_markers_are_not_lines() {
    let files = parse_ok(&text(&[
        "diff --git a/t.txt b/t.txt",
        "index 1111111..2222222 100644",
        "--- a/t.txt",
        "+++ b/t.txt",
        "@@ -1,2 +1,3 @@",
        " a",
        "-b",
        "\\ No newline at end of file",
        "+b",
        "+c",
        "\\ No newline at end of file",
        "diff --git a/u.txt b/u.txt",
        "index 1111111..2222222 100644",
        "--- a/u.txt",
        "+++ b/u.txt",
        "@@ -1 +1 @@",
        "-x",
        "+y",
        "\\ No newline at end of file",
    ]));
    assert_eq!(files.len(), 2);
    assert_eq!(
        files[0].hunks,
        vec![Hunk {
            old_start: 1,
            old_lines: 2,
            new_start: 1,
            new_lines: 3,
            added: vec![2, 3],
            deleted: vec![2]
        }]
    );
    assert_eq!(files[1].added_lines(), set(&[1]));
}

#[test]
fn quoted_paths_are_decoded() {
    let files = parse_ok(&text(&[
        r#"diff --git "a/sp\303\244ce name.py" "b/sp\303\244ce name.py""#,
        "index 1111111..2222222 100644",
        // git puts a tab after a quoted name that holds a space.
        concat!(r#"--- "a/sp\303\244ce name.py""#, "\t"),
        concat!(r#"+++ "b/sp\303\244ce name.py""#, "\t"),
        "@@ -1 +1,2 @@",
        " x",
        "+y",
        // Mode-only: the path comes from the quoted header.
        r#"diff --git "a/tab\there \"q\" back\\slash" "b/tab\there \"q\" back\\slash""#,
        "old mode 100644",
        "new mode 100755",
        // Rename: quoted rename lines.
        r#"diff --git "a/caf\303\251.py" "b/na\303\257ve\n.py""#,
        "similarity index 100%",
        r#"rename from "caf\303\251.py""#,
        r#"rename to "na\303\257ve\n.py""#,
        // Only one side quoted (new empty file).
        r#"diff --git a/x "b/y\303\251""#,
        "new file mode 100644",
        "index 0000000..e69de29",
        // An invalid UTF-8 byte decodes lossily.
        r#"diff --git "a/bad\377.txt" "b/bad\377.txt""#,
        "old mode 100644",
        "new mode 100755",
    ]));
    assert_eq!(files.len(), 5);
    assert_eq!(files[0].path(), "späce name.py");
    assert_eq!(files[0].old_path.as_deref(), Some("späce name.py"));
    assert_eq!(files[0].added_lines(), set(&[2]));
    assert_eq!(files[1].path(), "tab\there \"q\" back\\slash");
    assert!(files[1].mode_only());
    assert_eq!(files[2].status, FileStatus::Renamed);
    assert_eq!(files[2].old_path.as_deref(), Some("café.py"));
    assert_eq!(files[2].new_path.as_deref(), Some("naïve\n.py"));
    assert_eq!(files[3].path(), "yé");
    assert_eq!(files[4].path(), "bad\u{FFFD}.txt");
}

#[test]
fn bad_quoting_is_an_error() {
    for bad in [
        r#"rename from "unterminated"#,
        r#"rename from "bad \q escape""#,
        r#"rename from "octal \400 too big""#,
    ] {
        let input = text(&["diff --git a/x b/y", bad, "rename to y"]);
        let (line, reason) = malformed_line(parse_git_diff(input.as_bytes()));
        assert_eq!(line, 2, "{reason}");
    }
}

#[test]
fn paths_with_spaces_tabs_and_timestamps() {
    let files = parse_ok(&text(&[
        "diff --git a/dir with space/file name.py b/dir with space/file name.py",
        "index 1111111..2222222 100644",
        "--- a/dir with space/file name.py\t",
        "+++ b/dir with space/file name.py\t",
        "@@ -1 +1 @@",
        "-a",
        "+b",
        "diff --git a/ünï/ß.py b/ünï/ß.py",
        "index 1111111..2222222 100644",
        "--- a/ünï/ß.py\t2024-01-01 10:00:00.000000000 +0000",
        "+++ b/ünï/ß.py\t2024-01-02 10:00:00.000000000 +0000",
        "@@ -1 +1 @@",
        "-a",
        "+b",
    ]));
    assert_eq!(
        files[0].old_path.as_deref(),
        Some("dir with space/file name.py")
    );
    assert_eq!(
        files[0].new_path.as_deref(),
        Some("dir with space/file name.py")
    );
    assert_eq!(files[1].path(), "ünï/ß.py");
    assert_eq!(files[1].old_path.as_deref(), Some("ünï/ß.py"));
}

#[test]
fn content_lines_that_look_like_headers_are_content() {
    let files = parse_ok(&text(&[
        "diff --git a/notes.md b/notes.md",
        "index 1111111..2222222 100644",
        "--- a/notes.md",
        "+++ b/notes.md",
        "@@ -1,3 +1,4 @@",
        "--- a/old",
        "+++ b/new",
        "+@@ -1 +1 @@",
        " context",
        "-x",
        "+y",
        "diff --git a/next.md b/next.md",
        "index 1111111..2222222 100644",
        "--- a/next.md",
        "+++ b/next.md",
        "@@ -1 +1 @@",
        "----",
        "++++",
    ]));
    assert_eq!(files.len(), 2);
    assert_eq!(
        files[0].hunks,
        vec![Hunk {
            old_start: 1,
            old_lines: 3,
            new_start: 1,
            new_lines: 4,
            added: vec![1, 2, 4],
            deleted: vec![1, 3]
        }]
    );
    assert_eq!(files[1].added_lines(), set(&[1]));
}

#[test]
fn truncated_hunk_is_an_error_naming_the_line() {
    // Cut after "     pass": the first hunk still misses one line of each side.
    let cut: Vec<&str> = TWO_HUNKS[..12].to_vec();
    let (line, reason) = malformed_line(parse_git_diff(text(&cut).as_bytes()));
    assert_eq!(line, 13, "{reason}");
    assert!(
        reason.contains("unexpected end of input") && reason.contains("line 5"),
        "{reason}"
    );
    let err = parse_git_diff(text(&cut).as_bytes()).unwrap_err();
    assert!(err.to_string().contains("line 13"), "{err}");

    // A short hunk followed by the next file: the error names the line that does not fit.
    let mut short = cut.clone();
    short.extend(["diff --git a/b b/b", "old mode 100644", "new mode 100755"]);
    let (line, reason) = malformed_line(parse_git_diff(text(&short).as_bytes()));
    assert_eq!(line, 13, "{reason}");
    assert!(reason.contains("ends early"), "{reason}");

    // More '+' lines than the header says: the extra line is outside any hunk.
    let long = text(&[
        "diff --git a/c b/c",
        "--- a/c",
        "+++ b/c",
        "@@ -1 +1 @@",
        "-a",
        "+b",
        "+extra",
    ]);
    let (line, _) = malformed_line(parse_git_diff(long.as_bytes()));
    assert_eq!(line, 7);

    // More context than the old side allows.
    let ctx = text(&[
        "diff --git a/c b/c",
        "--- a/c",
        "+++ b/c",
        "@@ -1 +1,2 @@",
        " a",
        " b",
    ]);
    let (line, reason) = malformed_line(parse_git_diff(ctx.as_bytes()));
    assert_eq!(line, 6, "{reason}");

    // A "---" line as the last line.
    let (line, _) = malformed_line(parse_git_diff(b"diff --git a/c b/c\n--- a/c\n"));
    assert_eq!(line, 3);
}

#[test]
fn hunk_header_forms() {
    let f = parse_one(&text(&[
        "diff --git a/h b/h",
        "--- a/h",
        "+++ b/h",
        "@@ -3 +3 @@",
        "-a",
        "+b",
        "@@ -10,0 +11,2 @@ section text @@ with at signs",
        "+c",
        "+d",
        "@@ -20,2 +21,0 @@",
        "-e",
        "-f",
    ]));
    assert_eq!(
        f.hunks,
        vec![
            Hunk {
                old_start: 3,
                old_lines: 1,
                new_start: 3,
                new_lines: 1,
                added: vec![3],
                deleted: vec![3]
            },
            Hunk {
                old_start: 10,
                old_lines: 0,
                new_start: 11,
                new_lines: 2,
                added: vec![11, 12],
                deleted: vec![]
            },
            Hunk {
                old_start: 20,
                old_lines: 2,
                new_start: 21,
                new_lines: 0,
                added: vec![],
                deleted: vec![20, 21]
            },
        ]
    );
    assert_eq!(f.commentable_lines().ranges(), &[(3, 3), (11, 12)]);
    for bad in [
        "@@ -x +1 @@",
        "@@ -1 +1",
        "@@ -1 +1 @",
        "@@ -1,+2 +1 @@",
        "@@ -0,2 +1 @@",
        "@@ -1 +0,1 @@",
        "@@ -1, +1 @@",
        "@@ -99999999999999999999999 +1 @@",
        "@@ -1 +18446744073709551615,2 @@",
        "@@@ -1 -1 +1 @@@",
        "@@  -1 +1 @@",
    ] {
        let input = text(&["diff --git a/h b/h", "--- a/h", "+++ b/h", bad, " a"]);
        let (line, reason) = malformed_line(parse_git_diff(input.as_bytes()));
        assert_eq!(line, 4, "{bad}: {reason}");
        assert!(reason.contains("hunk header"), "{reason}");
    }
}

#[test]
fn empty_input_and_trailing_empty_lines() {
    assert_eq!(parse_git_diff(b"").unwrap(), vec![]);
    assert_eq!(parse_git_diff(b"\n\n\r\n").unwrap(), vec![]);
    let mut input = text(TWO_HUNKS);
    input.push_str("\n\n");
    assert_eq!(parse_ok(&input).len(), 1);
    input.push_str("trailing garbage\n");
    let (line, reason) = malformed_line(parse_git_diff(input.as_bytes()));
    assert_eq!(line, TWO_HUNKS.len() + 3, "{reason}");
    let (line, _) = malformed_line(parse_git_diff(b"hello\n"));
    assert_eq!(line, 1);
    let (line, reason) = malformed_line(parse_git_diff(b"diff --git a/x b/x\nwhat is this\n"));
    assert_eq!(line, 2, "{reason}");
}

#[test]
fn combined_diffs_are_rejected() {
    let input = text(&[
        "diff --cc conflicted.py",
        "index 1111111,2222222..3333333",
        "--- a/conflicted.py",
        "+++ b/conflicted.py",
        "@@@ -1,1 -1,1 +1,1 @@@",
        "- a",
        " -b",
        "++c",
    ]);
    let err = parse_git_diff(input.as_bytes()).unwrap_err();
    assert_eq!(err, DiffError::CombinedDiff { line: 1 });
    assert!(err.to_string().contains("combined diffs"), "{err}");
    let mut later = text(TWO_HUNKS);
    later.push_str("diff --combined x.py\n");
    assert_eq!(
        parse_git_diff(later.as_bytes()).unwrap_err(),
        DiffError::CombinedDiff {
            line: TWO_HUNKS.len() + 1
        }
    );
}

#[test]
fn non_utf8_content_and_paths() {
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(
        b"diff --git a/caf\xe9.py b/caf\xe9.py\nindex 1111111..2222222 100644\n",
    );
    input.extend_from_slice(b"--- a/caf\xe9.py\n+++ b/caf\xe9.py\n@@ -1,3 +1,4 @@\n");
    input.extend_from_slice(
        b" \x80\x81 latin-1 context\n-\xff\xfe old\n+\xff\xfe new\n+\xc3\n \xe9t\xe9\n",
    );
    let files = parse_git_diff(&input).unwrap();
    check_invariants(&files);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].path(), "caf\u{FFFD}.py");
    assert_eq!(files[0].added_lines(), set(&[2, 3]));
    assert_eq!(files[0].commentable_lines(), range(1, 4));
}

#[test]
fn plain_unified_diff_without_git_header() {
    let files = parse_ok(&text(&[
        "--- a/x.py\t2024-01-01 00:00:00",
        "+++ b/x.py\t2024-01-02 00:00:00",
        "@@ -1,2 +1,2 @@",
        " a",
        "-b",
        "+c",
        "--- /dev/null",
        "+++ b/y.py",
        "@@ -0,0 +1 @@",
        "+z",
    ]));
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].status, FileStatus::Modified);
    assert_eq!(files[0].path(), "x.py");
    assert_eq!(files[0].added_lines(), set(&[2]));
    assert_eq!(files[1].status, FileStatus::Added);
    assert_eq!(files[1].path(), "y.py");
}
