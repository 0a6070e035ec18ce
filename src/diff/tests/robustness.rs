//! Arbitrary input gives `Ok` or `Err`, never a panic or a hang.

use super::{Lcg, check_invariants};
use crate::diff::{parse_git_diff, parse_patch};

fn parse_all(input: &[u8]) -> bool {
    let result = parse_git_diff(input);
    if let Ok(files) = &result {
        check_invariants(files);
    }
    if let Ok(hunks) = parse_patch(&String::from_utf8_lossy(input)) {
        for h in &hunks {
            assert_eq!(
                h.old_lines - h.deleted.len(),
                h.new_lines - h.added.len(),
                "{h:?}"
            );
        }
    }
    result.is_ok()
}

/// A diff with most features; each line says whether cutting the input right after it leaves a hunk
/// incomplete (then parsing must fail).
const SAMPLE: &[(&str, bool)] = &[
    ("diff --git a/app/main.py b/app/main.py", false),
    ("index 1111111..2222222 100644", false),
    ("--- a/app/main.py", false),
    ("+++ b/app/main.py", false),
    ("@@ -1,4 +1,5 @@ def f():", true),
    (" import os", true),
    ("-import sys", true),
    ("\\ No newline at end of file", true),
    ("+import sys, json", true),
    ("++++ looks like a header", true),
    (" x", true),
    (" y", false),
    ("@@ -9 +10,0 @@", true),
    ("-gone", false),
    (
        "diff --git \"a/sp\\303\\244ce name.py\" \"b/sp\\303\\244ce name.py\"",
        false,
    ),
    ("new file mode 100644", false),
    ("index 0000000..3333333", false),
    ("--- /dev/null", false),
    ("+++ \"b/sp\\303\\244ce name.py\"", false),
    ("@@ -0,0 +1,2 @@", true),
    ("+a\r", true),
    ("+b", false),
    ("\\ No newline at end of file", false),
    ("diff --git a/img.png b/img.png", false),
    ("index 7777777..8888888 100644", false),
    ("Binary files a/img.png and b/img.png differ", false),
    ("diff --git a/old name.py b/new name.py", false),
    ("similarity index 90%", false),
    ("rename from old name.py", false),
    ("rename to new name.py", false),
    ("--- a/old name.py\t", false),
    ("+++ b/new name.py\t", false),
    ("@@ -1,2 +1,2 @@", true),
    ("-q", true),
    ("+r", true),
    (" s", false),
    ("diff --git a/run.sh b/run.sh", false),
    ("old mode 100644", false),
    ("new mode 100755", false),
];

fn sample() -> Vec<u8> {
    let mut out = Vec::new();
    for (line, _) in SAMPLE {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out
}

#[test]
fn sample_parses() {
    let files = parse_git_diff(&sample()).unwrap();
    check_invariants(&files);
    let paths: Vec<&str> = files.iter().map(|f| f.path()).collect();
    assert_eq!(
        paths,
        [
            "app/main.py",
            "späce name.py",
            "img.png",
            "new name.py",
            "run.sh"
        ]
    );
}

#[test]
fn truncation_at_every_byte_offset() {
    let input = sample();
    let mut line_ends = Vec::new();
    let mut offset = 0;
    for (line, incomplete) in SAMPLE {
        offset += line.len() + 1;
        line_ends.push((offset, *incomplete));
    }
    for cut in 0..=input.len() {
        let ok = parse_all(&input[..cut]);
        // A cut right after a line (with or without its '\n') that leaves a hunk incomplete must fail.
        for &(end, incomplete) in &line_ends {
            if incomplete && (cut == end || cut + 1 == end) {
                assert!(!ok, "cut at byte {cut} leaves a hunk incomplete but parsed");
            }
        }
    }
}

#[test]
fn byte_mutations_at_every_offset() {
    let input = sample();
    let mut oks = 0;
    let mut errs = 0;
    for at in 0..input.len() {
        for replacement in [
            b'\n', b'\r', b'+', b'-', b' ', b'@', b'"', b'\\', b'\t', b'0', b'9', 0xff,
        ] {
            let mut mutated = input.clone();
            mutated[at] = replacement;
            if parse_all(&mutated) {
                oks += 1;
            } else {
                errs += 1;
            }
        }
        let mut deleted = input.clone();
        deleted.remove(at);
        parse_all(&deleted);
    }
    assert!(
        oks > 0 && errs > 0,
        "mutations should exercise both outcomes ({oks} ok, {errs} errors)"
    );
}

#[test]
fn pseudo_random_bytes_never_panic() {
    let mut rng = Lcg::new(2024);
    for _ in 0..2000 {
        let len = rng.below(300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
        parse_all(&bytes);
    }
}

#[test]
fn pseudo_random_diff_tokens_never_panic() {
    const TOKENS: &[&str] = &[
        "diff --git a/x b/x\n",
        "diff --git \"a/q\\303\\251\" \"b/q\\303\\251\"\n",
        "diff --cc x\n",
        "--- a/x\n",
        "+++ b/x\n",
        "--- /dev/null\n",
        "+++ /dev/null\n",
        "@@ -1,2 +1,3 @@\n",
        "@@ -1 +1 @@\n",
        "@@ -0,0 +1 @@\n",
        "@@ -1 +0,0 @@\n",
        "+a\n",
        "-b\n",
        " c\n",
        "\n",
        "\r\n",
        "\\ No newline at end of file\n",
        "new file mode 100644\n",
        "deleted file mode 100644\n",
        "old mode 100644\n",
        "new mode 160000\n",
        "rename from \"x\\ty\"\n",
        "rename to y\n",
        "copy from \"bad\n",
        "index 1..2 100644\n",
        "Binary files a/x and b/x differ\n",
        "GIT binary patch\n",
        "literal 0\n",
        "+Subproject commit 1234\n",
        "\"",
        "\\",
        "\t",
        "\u{e9}",
    ];
    let mut rng = Lcg::new(99);
    let mut oks = 0;
    for _ in 0..2000 {
        let mut input = Vec::new();
        for _ in 0..rng.below(14) {
            if rng.below(10) == 0 {
                input.push(rng.next_u32() as u8);
            } else {
                input.extend_from_slice(TOKENS[rng.below(TOKENS.len())].as_bytes());
            }
        }
        if parse_all(&input) {
            oks += 1;
        }
    }
    assert!(
        oks > 50,
        "token soup should often be a valid diff ({oks} were)"
    );
}

#[test]
fn huge_counts_and_long_lines_finish() {
    let huge = b"diff --git a/x b/x\n--- a/x\n+++ b/x\n@@ -1,4000000000 +1,4000000000 @@\n a\n";
    assert!(parse_git_diff(huge).is_err());
    // Header splitting must not be quadratic in the length of the line.
    let mut long = b"diff --git a/".to_vec();
    long.extend(std::iter::repeat_n(b" b/ \"", 60_000).flatten());
    long.extend_from_slice(b"\nold mode 100644\nnew mode 100755\n");
    parse_all(&long);
    let mut long_quoted = b"diff --git \"a/".to_vec();
    long_quoted.extend(std::iter::repeat_n(b"\\303\\244 ", 60_000).flatten());
    long_quoted.extend_from_slice(b"\" b/x\nold mode 100644\nnew mode 100755\n");
    parse_all(&long_quoted);
}
