//! Local git as the source of a change: revisions, merge-base, the diff, and file contents at a revision.
//! The `git` command is used (as the user's own git, with their credentials and object store) rather than a
//! library: it is on every machine that has a repository, and it reads every repository format git does.

use crate::diff::{self, FileDiff};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0} (is git installed and on PATH?)")]
    Spawn(std::io::Error),
    #[error("{} is not a git repository (pass --repo DIR, or use --all-lines to scan files without git)", .0.display())]
    NotARepo(PathBuf),
    #[error("unknown revision `{0}` (check the name with `git rev-parse {0}`, or fetch it first)")]
    UnknownRevision(String),
    #[error(
        "`{base}` and `{head}` have no common ancestor (no merge-base); pass a --base that shares history with --head"
    )]
    NoMergeBase { base: String, head: String },
    #[error(
        "cannot find the repository's default branch to compare against: no origin/HEAD, main or master. \
         Pass --base REV (e.g. --base origin/main), or run `git remote set-head origin --auto`"
    )]
    NoDefaultBranch,
    #[error("git {args} failed: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("cannot parse git diff output: {0}")]
    Diff(#[from] diff::DiffError),
    #[error("unexpected output from git cat-file: {0}")]
    CatFile(String),
}

/// A git repository on disk.
pub struct Repo {
    pub root: PathBuf,
}

impl Repo {
    /// Open the repository containing `dir`.
    pub fn open(dir: &Path) -> Result<Repo, GitError> {
        if !dir.exists() {
            return Err(GitError::NotARepo(dir.to_path_buf()));
        }
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "--show-toplevel"])
            .stderr(Stdio::piped())
            .output()
            .map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::NotARepo(dir.to_path_buf()));
        }
        let root = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Repo {
            root: PathBuf::from(root),
        })
    }

    fn git(&self) -> Command {
        let mut c = Command::new("git");
        c.arg("-C").arg(&self.root);
        // Our parsing depends on these; the user's configuration must not change them.
        c.args([
            "-c",
            "core.quotePath=true",
            "-c",
            "diff.noprefix=false",
            "-c",
            "color.ui=false",
        ]);
        c.env("GIT_PAGER", "cat").env("LC_ALL", "C");
        c
    }

    fn run(&self, args: &[&str]) -> Result<Vec<u8>, GitError> {
        let out = self
            .git()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::Failed {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(out.stdout)
    }

    /// Resolve a revision to a commit id.
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        let spec = format!("{rev}^{{commit}}");
        let out = self
            .git()
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &spec,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::UnknownRevision(rev.to_string()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// The staged state as a tree object (`git write-tree`): what a commit made now would hold. Fails, saying
    /// so, while the index has unmerged paths.
    pub fn write_index_tree(&self) -> Result<String, GitError> {
        let out = self.run(&["write-tree"]).map_err(|e| match e {
            GitError::Failed { stderr, .. } => GitError::Failed {
                args: "write-tree (the staged changes)".into(),
                stderr: format!("{stderr} (resolve the conflicts and stage the result first)"),
            },
            other => other,
        })?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// What staged changes are compared with: `HEAD`'s commit, or the empty tree before the first commit.
    pub fn staged_base(&self) -> Result<String, GitError> {
        if let Ok(head) = self.resolve("HEAD") {
            return Ok(head);
        }
        let out = self.run(&["hash-object", "-t", "tree", "/dev/null"])?;
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    /// The branch a pull request would target: origin's HEAD, else main/master (remote or local).
    pub fn default_base(&self) -> Result<String, GitError> {
        if let Ok(out) = self.run(&["symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"]) {
            let r = String::from_utf8_lossy(&out).trim().to_string();
            if !r.is_empty() {
                return Ok(r.trim_start_matches("refs/remotes/").to_string());
            }
        }
        for candidate in ["origin/main", "origin/master", "main", "master"] {
            if self.resolve(candidate).is_ok() {
                return Ok(candidate.to_string());
            }
        }
        Err(GitError::NoDefaultBranch)
    }

    /// Is this a shallow clone (CI checkouts usually are)?
    pub fn is_shallow(&self) -> bool {
        self.run(&["rev-parse", "--is-shallow-repository"])
            .is_ok_and(|out| String::from_utf8_lossy(&out).trim() == "true")
    }

    /// `git fetch --no-tags [OPTIONS] REMOTE REFSPEC…` (for commits a CI checkout lacks), with the user's
    /// credentials; never prompts for them. `config` entries are added for this command only, through the
    /// environment (after any `GIT_CONFIG_COUNT` entries already there), so that a secret in one never shows
    /// on a command line.
    pub fn fetch(
        &self,
        remote: &str,
        options: &[&str],
        refspecs: &[&str],
        config: &[(&str, &str)],
    ) -> Result<(), GitError> {
        let mut args: Vec<&str> = vec!["fetch", "--no-tags", "--quiet", "--no-write-fetch-head"];
        args.extend_from_slice(options);
        args.push("--end-of-options");
        args.push(remote);
        args.extend_from_slice(refspecs);
        let mut cmd = self.git();
        if !config.is_empty() {
            let first = std::env::var("GIT_CONFIG_COUNT")
                .ok()
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            for (i, (key, value)) in config.iter().enumerate() {
                cmd.env(format!("GIT_CONFIG_KEY_{}", first + i), key)
                    .env(format!("GIT_CONFIG_VALUE_{}", first + i), value);
            }
            cmd.env("GIT_CONFIG_COUNT", (first + config.len()).to_string());
        }
        let out = cmd
            .args(&args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .output()
            .map_err(GitError::Spawn)?;
        if !out.status.success() {
            return Err(GitError::Failed {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(())
    }

    /// The best common ancestor of two commits.
    pub fn merge_base(&self, base: &str, head: &str) -> Result<String, GitError> {
        let out = self
            .git()
            .args(["merge-base", base, head])
            .stdin(Stdio::null())
            .output()
            .map_err(GitError::Spawn)?;
        match out.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
            Some(1) => Err(GitError::NoMergeBase {
                base: base.to_string(),
                head: head.to_string(),
            }),
            _ => Err(GitError::Failed {
                args: format!("merge-base {base} {head}"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            }),
        }
    }

    /// The per-file diff from `from` to `to` (commit ids), with 3 lines of context as GitHub shows it, limited
    /// to `paths` when given.
    pub fn diff(&self, from: &str, to: &str, paths: &[String]) -> Result<Vec<FileDiff>, GitError> {
        let mut args: Vec<&str> = vec![
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "-M",
            "-U3",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            "--ignore-submodules=none",
            from,
            to,
            "--",
        ];
        args.extend(paths.iter().map(String::as_str));
        let out = self.run(&args)?;
        Ok(diff::parse_git_diff(&out)?)
    }

    /// Every file path in the tree of `rev` (for whole-repository scans at a revision).
    pub fn list_files(&self, rev: &str) -> Result<Vec<String>, GitError> {
        let out = self.run(&["ls-tree", "-r", "-z", "--name-only", rev])?;
        Ok(out
            .split(|&b| b == 0)
            .filter(|p| !p.is_empty())
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect())
    }

    /// Contents of `paths` at `rev`, in one `git cat-file --batch` process. A path that is not a blob at
    /// that revision (a submodule, or missing) yields `None`.
    pub fn read_files(
        &self,
        rev: &str,
        paths: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, GitError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        // Object ids first (ls-tree handles any file name, including newlines), then one batch read.
        let mut ids: Vec<Option<String>> = Vec::with_capacity(paths.len());
        let mut args: Vec<&str> = vec!["ls-tree", "-z", "--full-tree", rev, "--"];
        let mut by_path = std::collections::HashMap::new();
        for chunk in paths.chunks(500) {
            args.truncate(5);
            args.extend(chunk.iter().map(String::as_str));
            let out = self.run(&args)?;
            for entry in out.split(|&b| b == 0).filter(|e| !e.is_empty()) {
                // "<mode> SP <type> SP <object> TAB <path>"
                let Some(tab) = entry.iter().position(|&b| b == b'\t') else {
                    continue;
                };
                let meta = String::from_utf8_lossy(&entry[..tab]);
                let path = String::from_utf8_lossy(&entry[tab + 1..]).into_owned();
                let mut parts = meta.split(' ');
                let (_mode, kind, oid) = (parts.next(), parts.next(), parts.next());
                if kind == Some("blob")
                    && let Some(oid) = oid
                {
                    by_path.insert(path, oid.to_string());
                }
            }
        }
        for p in paths {
            ids.push(by_path.get(p).cloned());
        }
        let wanted: Vec<&String> = ids.iter().flatten().collect();
        let mut child = self
            .git()
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(GitError::Spawn)?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| GitError::CatFile("no stdin".into()))?;
        let request: String = wanted.iter().map(|id| format!("{id}\n")).collect();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(request.as_bytes());
        });
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| GitError::CatFile("no stdout".into()))?;
        let mut reader = BufReader::new(stdout);
        let mut blobs = std::collections::HashMap::new();
        for id in &wanted {
            let mut header = String::new();
            reader
                .read_line(&mut header)
                .map_err(|e| GitError::CatFile(e.to_string()))?;
            let mut parts = header.split_whitespace();
            let (_oid, kind, size) = (parts.next(), parts.next(), parts.next());
            if kind == Some("missing") || kind.is_none() {
                continue;
            }
            let size: usize = size
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| GitError::CatFile(header.trim().to_string()))?;
            let mut buf = vec![0u8; size + 1];
            reader
                .read_exact(&mut buf)
                .map_err(|e| GitError::CatFile(e.to_string()))?;
            buf.pop();
            blobs.insert((*id).clone(), buf);
        }
        let _ = writer.join();
        let _ = child.wait();
        Ok(ids
            .into_iter()
            .map(|id| id.and_then(|id| blobs.get(&id).cloned()))
            .collect())
    }
}
