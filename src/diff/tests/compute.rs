use super::Lcg;
use crate::diff::{FileDiff, FileStatus, Hunk, LineSet, diff_texts, parse_patch};
use similar::{ChangeTag, TextDiff};

fn as_file(hunks: Vec<Hunk>) -> FileDiff {
    FileDiff {
        old_path: Some("f".into()),
        new_path: Some("f".into()),
        status: FileStatus::Modified,
        binary: false,
        submodule: false,
        old_mode: None,
        new_mode: None,
        hunks,
    }
}

fn letters(s: &str) -> String {
    s.chars().map(|c| format!("{c}\n")).collect()
}

#[test]
fn diff_texts_groups_like_git() {
    let old = letters("abcdefghijk");
    let new = letters("aBcdefghijK");
    assert_eq!(
        diff_texts(&old, &new, 3),
        vec![
            Hunk {
                old_start: 1,
                old_lines: 5,
                new_start: 1,
                new_lines: 5,
                added: vec![2],
                deleted: vec![2]
            },
            Hunk {
                old_start: 8,
                old_lines: 4,
                new_start: 8,
                new_lines: 4,
                added: vec![11],
                deleted: vec![11]
            },
        ]
    );
    // Eight unchanged lines between the changes: one hunk once 2 * context >= 8.
    assert_eq!(
        diff_texts(&old, &new, 4),
        vec![Hunk {
            old_start: 1,
            old_lines: 11,
            new_start: 1,
            new_lines: 11,
            added: vec![2, 11],
            deleted: vec![2, 11]
        }]
    );
    assert_eq!(
        diff_texts(&old, &new, 0),
        vec![
            Hunk {
                old_start: 2,
                old_lines: 1,
                new_start: 2,
                new_lines: 1,
                added: vec![2],
                deleted: vec![2]
            },
            Hunk {
                old_start: 11,
                old_lines: 1,
                new_start: 11,
                new_lines: 1,
                added: vec![11],
                deleted: vec![11]
            },
        ]
    );
    // Pure insertion and deletion with no context: the empty side names the line before.
    assert_eq!(
        diff_texts(&letters("abc"), &letters("abXc"), 0),
        vec![Hunk {
            old_start: 2,
            old_lines: 0,
            new_start: 3,
            new_lines: 1,
            added: vec![3],
            deleted: vec![]
        }]
    );
    assert_eq!(
        diff_texts(&letters("abXc"), &letters("abc"), 0),
        vec![Hunk {
            old_start: 3,
            old_lines: 1,
            new_start: 2,
            new_lines: 0,
            added: vec![],
            deleted: vec![3]
        }]
    );
}

#[test]
fn diff_texts_edge_cases() {
    assert_eq!(diff_texts("", "", 3), vec![]);
    assert_eq!(diff_texts("same\n", "same\n", 3), vec![]);
    assert_eq!(
        diff_texts("", "a\nb\n", 3),
        vec![Hunk {
            old_start: 0,
            old_lines: 0,
            new_start: 1,
            new_lines: 2,
            added: vec![1, 2],
            deleted: vec![]
        }]
    );
    assert_eq!(
        diff_texts("a\nb\n", "", 3),
        vec![Hunk {
            old_start: 1,
            old_lines: 2,
            new_start: 0,
            new_lines: 0,
            added: vec![],
            deleted: vec![1, 2]
        }]
    );
    // A missing final newline is a change of that line, as in git.
    assert_eq!(
        diff_texts("x\na", "x\na\n", 3),
        vec![Hunk {
            old_start: 1,
            old_lines: 2,
            new_start: 1,
            new_lines: 2,
            added: vec![2],
            deleted: vec![2]
        }]
    );
    // Only '\n' ends a line (git's rule); a lone '\r' does not.
    assert_eq!(
        diff_texts("a\rb\n", "a\rc\n", 3),
        vec![Hunk {
            old_start: 1,
            old_lines: 1,
            new_start: 1,
            new_lines: 1,
            added: vec![1],
            deleted: vec![1]
        }]
    );
    // CRLF lines are lines.
    assert_eq!(diff_texts("a\r\nb\r\n", "a\r\nc\r\n", 3)[0].added, vec![2]);
}

/// A random text over a tiny alphabet, so that edits collide.
fn random_text(rng: &mut Lcg) -> String {
    const LINES: &[&str] = &["a", "b", "c", "d", "a b", ""];
    let n = rng.below(25);
    let mut out = String::new();
    for i in 0..n {
        out.push_str(LINES[rng.below(LINES.len())]);
        if i + 1 < n || rng.below(4) != 0 {
            out.push('\n');
        }
    }
    out
}

/// A new version made by a few random edits of `old`.
fn edit(rng: &mut Lcg, old: &str) -> String {
    let mut lines: Vec<String> = old.split_inclusive('\n').map(str::to_string).collect();
    for _ in 0..rng.below(5) {
        let at = rng.below(lines.len() + 1);
        let new_line = ["a\n", "b\n", "x\n", "c\n", "z"][rng.below(5)].to_string();
        match rng.below(3) {
            0 if at < lines.len() => {
                lines.remove(at);
            }
            1 if at < lines.len() => lines[at] = new_line,
            _ => lines.insert(at, new_line),
        }
    }
    lines.concat()
}

#[test]
fn diff_texts_agrees_with_similar_unified_output() {
    let mut rng = Lcg::new(42);
    let mut compared = 0;
    for round in 0..600 {
        let old = random_text(&mut rng);
        let new = if rng.below(3) == 0 {
            random_text(&mut rng)
        } else {
            edit(&mut rng, &old)
        };
        // Keep to texts whose lines git and `from_lines` split alike (no lone '\r'; ours have none).
        let oracle = TextDiff::from_lines(old.as_str(), new.as_str());
        for context in [0usize, 1, 2, 3, 5] {
            let ours = diff_texts(&old, &new, context);
            let label = format!(
                "round {round}, context {context}\nold={old:?}\nnew={new:?}\nours={ours:?}"
            );

            // 1. Same hunks as parsing the unified diff `similar` writes.
            if context > 0 {
                let unified = oracle.unified_diff().context_radius(context).to_string();
                let parsed =
                    parse_patch(&unified).unwrap_or_else(|e| panic!("{e}\n{unified}\n{label}"));
                assert_eq!(ours, parsed, "{label}\n{unified}");
                compared += 1;
            }

            // 2. Added lines are exactly the new-side lines outside the LCS-equal positions.
            let file = as_file(ours);
            let mut equal_pairs = Vec::new();
            let mut inserted = LineSet::new();
            for change in oracle.iter_all_changes() {
                match (change.tag(), change.old_index(), change.new_index()) {
                    (ChangeTag::Equal, Some(o), Some(n)) => equal_pairs.push((o, n)),
                    (ChangeTag::Insert, _, Some(n)) => inserted.insert(n + 1),
                    _ => {}
                }
            }
            let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
            let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
            assert!(
                equal_pairs
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
                "{label}"
            );
            assert!(
                equal_pairs
                    .iter()
                    .all(|&(o, n)| old_lines[o] == new_lines[n]),
                "{label}"
            );
            let not_equal: LineSet = (1..=new_lines.len())
                .filter(|&l| !equal_pairs.iter().any(|&(_, n)| n + 1 == l))
                .collect();
            assert_eq!(file.added_lines(), not_equal, "{label}");
            assert_eq!(file.added_lines(), inserted, "{label}");
            let not_kept: LineSet = (1..=old_lines.len())
                .filter(|&l| !equal_pairs.iter().any(|&(o, _)| o + 1 == l))
                .collect();
            assert_eq!(file.deleted_lines(), not_kept, "{label}");

            // 3. Commentable lines: every new-side line within `context` lines of a change.
            let mut window = LineSet::new();
            for op in oracle.ops() {
                if op.tag() == similar::DiffTag::Equal {
                    continue;
                }
                let r = op.new_range();
                let first = r.start.saturating_sub(context) + 1;
                let last = (r.end + context).min(new_lines.len());
                window.insert_range(first, last);
            }
            assert_eq!(file.commentable_lines(), window, "{label}");
        }
    }
    assert!(compared >= 2000);
}
