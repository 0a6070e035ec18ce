//! Against real `git diff` output, when `git` is on PATH.

use crate::diff::{FileDiff, FileStatus, LineSet, diff_texts, parse_git_diff};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// A scratch repository, removed on drop.
struct Repo(PathBuf);

impl Drop for Repo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Repo {
    fn git(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("git")
            .current_dir(&self.0)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("HOME", &self.0)
            .env("LC_ALL", "C")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@example.invalid",
                "-c",
                "core.autocrlf=false",
                "-c",
                "core.quotePath=true",
                "-c",
                "commit.gpgSign=false",
                "-c",
                "core.fileMode=true",
            ])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("git {args:?}: {e}"));
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn write(&self, path: &str, content: &[u8]) {
        let full = self.0.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(full, content).unwrap();
    }

    fn remove(&self, path: &str) {
        std::fs::remove_file(self.0.join(path)).unwrap();
    }

    /// Commits what is staged (`stage_all` first adds the whole work tree).
    fn commit(&self, stage_all: bool) -> String {
        if stage_all {
            self.git(&["add", "-A"]);
        }
        self.git(&["commit", "-q", "-m", "c", "--allow-empty"]);
        String::from_utf8_lossy(&self.git(&["rev-parse", "HEAD"]))
            .trim()
            .to_string()
    }
}

fn git_available() -> bool {
    Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn numbered(n: usize, prefix: &str) -> String {
    (1..=n).map(|i| format!("{prefix} line {i}\n")).collect()
}

fn with_line(text: &str, index: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
    lines[index] = replacement;
    lines.concat()
}

/// New-side ranges of the hunk headers of `git diff -U0`, per file in output order, read with a scan
/// independent of the parser under test (the fixture has no content line starting with "@@" or "diff").
fn u0_added(output: &[u8]) -> Vec<LineSet> {
    let mut files: Vec<LineSet> = Vec::new();
    for line in String::from_utf8_lossy(output).lines() {
        if line.starts_with("diff --git ") {
            files.push(LineSet::new());
        } else if let Some(rest) = line.strip_prefix("@@ -") {
            let new_range = rest
                .split(' ')
                .nth(1)
                .and_then(|r| r.strip_prefix('+'))
                .unwrap();
            let (start, count) = match new_range.split_once(',') {
                Some((s, c)) => (s.parse::<usize>().unwrap(), c.parse::<usize>().unwrap()),
                None => (new_range.parse::<usize>().unwrap(), 1),
            };
            if count > 0 {
                files
                    .last_mut()
                    .unwrap()
                    .insert_range(start, start + count - 1);
            }
        }
    }
    files
}

#[test]
fn real_git_diff_matches_unified_zero_headers() {
    if !git_available() {
        eprintln!("git is not on PATH: skipping");
        return;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "prodaudit-diff-test-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let repo = Repo(dir);
    repo.git(&["init", "-q"]);

    let service = numbered(30, "service");
    let renamed = numbered(10, "renamed");
    let unicode = numbered(5, "unicode");
    let crlf = numbered(6, "crlf").replace('\n', "\r\n");
    repo.write("app/service.py", service.as_bytes());
    repo.write("gone.py", b"x\ny\n");
    repo.write("old name.py", renamed.as_bytes());
    repo.write("sp\u{e4}ce dir/\u{fc}n\u{ef}.py", unicode.as_bytes());
    repo.write("run.sh", b"echo hi\n");
    repo.write("blob.bin", b"\x00\x01\x02binary\x00");
    repo.write("crlf.txt", crlf.as_bytes());
    repo.write("tail.txt", b"a\nb");
    let base = repo.commit(true);

    let mut service2 = with_line(&service, 1, "service line 2 changed\n");
    service2 = with_line(
        &service2,
        14,
        "service line 15\ninserted one\ninserted two\n",
    );
    service2 = with_line(&service2, 24, "");
    repo.write("app/service.py", service2.as_bytes());
    repo.remove("gone.py");
    repo.remove("old name.py");
    repo.write(
        "new name.py",
        with_line(&renamed, 4, "renamed line 5 changed\n").as_bytes(),
    );
    repo.write(
        "sp\u{e4}ce dir/\u{fc}n\u{ef}.py",
        format!("{unicode}appended\n").as_bytes(),
    );
    repo.write("blob.bin", b"\x00\x03\x04binary\x00");
    repo.write(
        "crlf.txt",
        with_line(&crlf, 2, "crlf line 3 changed\r\n").as_bytes(),
    );
    repo.write("tail.txt", b"a\nb\nc");
    repo.write("added.py", b"one\ntwo\nthree\n");
    repo.write("empty.txt", b"");
    repo.git(&["add", "-A"]);
    repo.git(&["update-index", "--chmod=+x", "run.sh"]);
    let head = repo.commit(false);

    let flags = [
        "diff",
        "--no-color",
        "--no-ext-diff",
        "-M",
        "--src-prefix=a/",
        "--dst-prefix=b/",
    ];
    let diff = |context: &str| {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend([context, base.as_str(), head.as_str()]);
        repo.git(&args)
    };
    let u3 = diff("-U3");
    let u0 = diff("-U0");
    let files =
        parse_git_diff(&u3).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&u3)));
    super::check_invariants(&files);
    let expected = u0_added(&u0);
    assert_eq!(
        files.len(),
        expected.len(),
        "{}",
        String::from_utf8_lossy(&u3)
    );
    for (f, want) in files.iter().zip(&expected) {
        assert_eq!(&f.added_lines(), want, "{}", f.path());
    }

    let by_path = |p: &str| -> &FileDiff {
        files
            .iter()
            .find(|f| f.path() == p)
            .unwrap_or_else(|| panic!("no {p} in {files:#?}"))
    };
    assert_eq!(
        by_path("app/service.py").added_lines().ranges(),
        &[(2, 2), (16, 17)]
    );
    assert_eq!(by_path("gone.py").status, FileStatus::Deleted);
    let moved = by_path("new name.py");
    assert_eq!(moved.status, FileStatus::Renamed);
    assert_eq!(moved.old_path.as_deref(), Some("old name.py"));
    assert_eq!(moved.added_lines().ranges(), &[(5, 5)]);
    let uni = by_path("sp\u{e4}ce dir/\u{fc}n\u{ef}.py");
    assert_eq!(uni.added_lines().ranges(), &[(6, 6)]);
    assert!(by_path("run.sh").mode_only());
    assert!(by_path("blob.bin").binary);
    assert_eq!(by_path("crlf.txt").added_lines().ranges(), &[(3, 3)]);
    assert_eq!(by_path("tail.txt").added_lines().ranges(), &[(2, 3)]);
    assert_eq!(by_path("added.py").status, FileStatus::Added);
    assert_eq!(by_path("empty.txt").status, FileStatus::Added);
    assert!(by_path("empty.txt").hunks.is_empty());

    // diff_texts on the two blobs gives git's hunks for these unambiguous edits.
    for f in &files {
        if f.binary || f.status == FileStatus::Deleted {
            continue;
        }
        let show = |rev: &str, path: Option<&str>| -> String {
            match path {
                Some(p) => String::from_utf8(repo.git(&["show", &format!("{rev}:{p}")])).unwrap(),
                None => String::new(),
            }
        };
        let old = show(&base, f.old_path.as_deref());
        let new = show(&head, f.new_path.as_deref());
        assert_eq!(diff_texts(&old, &new, 3), f.hunks, "{}", f.path());
    }
    assert!(Path::new(&repo.0).exists());
}
