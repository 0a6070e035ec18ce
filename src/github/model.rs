//! The App's repository model: the same model the CLI builds ([`repo_model`]), read through the API at the head
//! of a pull request — the tree listing (one request, shared with the rules that read other files), then the
//! Python and deployment files the model needs, in batched GraphQL blob reads. What each file contributes
//! depends only on its contents and its path, so it is kept in a bounded in-memory cache ([`FactCache`]) keyed
//! by the blob's sha and the path: a second pull request of the repository (or a re-audit) reads only the files
//! it has not seen.
//!
//! The model is an aid, never a condition: a failed read, a truncated tree listing or a repository over the
//! bounds leaves it out (every module is then judged as the service), with the reason in the log.

use super::api::{GitTree, TreeFile};
use super::review::{AuditTarget, GRAPHQL_BATCH, Reviewer};
use crate::analysis::plan;
use crate::analysis::repo_model::{self, NameBudget};
use crate::analysis::semantic::reach::{ModuleFacts, Reach};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Most bytes of blobs read for the model in one audit (what the cache or the audited files already hold is
/// not read again). Past it no model is built.
pub const MAX_FETCH_BYTES: u64 = 64 * 1024 * 1024;
/// Most bytes asked for in one GraphQL request (and at most [`GRAPHQL_BATCH`] blobs).
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
/// The cache's bounds: entries, and (estimated) bytes of what they hold.
pub const CACHE_ENTRIES: usize = 300_000;
pub const CACHE_BYTES: usize = 256 * 1024 * 1024;

/// A cached file: (blob sha, path, what it was read as). The path belongs in the key because a Python file's
/// facts depend on it too (the same text under `tests/` is not the service, and its names are then not read);
/// the kind because a file can be both (`dockerfile_gen.py` is a module and, by its name, a deployment file).
type Key = (String, String, Kind);

/// What the model keeps of one file.
#[derive(Debug, Clone)]
enum Kept {
    /// A Python file's facts, and the bytes of service Python whose names they hold (for the name budget).
    Python {
        facts: Arc<ModuleFacts>,
        service_bytes: usize,
    },
    /// A deployment file's text (`None`: too large or binary, left out).
    Command(Option<Arc<str>>),
}

impl Kept {
    /// About how many bytes the entry holds (with its key), for the cache's byte bound.
    fn weight(&self, key: &Key) -> usize {
        let strings = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        let held = match self {
            Kept::Command(text) => text.as_ref().map_or(0, |t| t.len()),
            Kept::Python { facts, .. } => {
                facts
                    .imports
                    .iter()
                    .map(|(_, d, names)| d.len() + 56 + strings(names))
                    .sum::<usize>()
                    + strings(&facts.dotted_strings)
                    + strings(&facts.dynamic_prefixes)
                    + facts
                        .names
                        .defs
                        .iter()
                        .map(|d| d.name.len() + 80 + d.class_bases.as_deref().map_or(0, strings))
                        .sum::<usize>()
                    + facts.names.uses.len() * 8
                    + strings(&facts.names.classes)
                    + 256
            }
        };
        held + key.0.len() + key.1.len() + 104
    }
}

/// A bounded map from (blob sha, path) to what the model keeps of the file, shared by the audits of every
/// repository (the same blob at the same path says the same wherever it is). Two generations approximate
/// least-recently-used eviction at O(1): entries go into the young map, a hit in the old one moves the entry
/// back to the young one, and when the young map reaches half of a bound the old one is dropped and the young
/// one becomes old. At most [`CACHE_ENTRIES`] entries and about [`CACHE_BYTES`] are held.
#[derive(Debug)]
pub struct FactCache {
    inner: Mutex<Generations>,
    max_entries: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Generations {
    young: HashMap<Key, (Kept, usize)>,
    young_bytes: usize,
    old: HashMap<Key, (Kept, usize)>,
}

impl Default for FactCache {
    fn default() -> Self {
        FactCache::with_bounds(CACHE_ENTRIES, CACHE_BYTES)
    }
}

impl FactCache {
    /// A cache of at most `max_entries` entries and about `max_bytes`.
    pub fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        FactCache {
            inner: Mutex::new(Generations::default()),
            max_entries: max_entries.max(2),
            max_bytes: max_bytes.max(2),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic while holding the lock cannot leave the maps half-changed in a way that matters: use them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: &Key) -> Option<Kept> {
        let mut g = self.lock();
        if let Some((kept, _)) = g.young.get(key) {
            return Some(kept.clone());
        }
        let (kept, weight) = g.old.remove(key)?;
        let out = kept.clone();
        self.put(&mut g, key.clone(), kept, weight);
        Some(out)
    }

    fn insert(&self, entries: Vec<(Key, Kept)>) {
        let mut g = self.lock();
        for (key, kept) in entries {
            let weight = kept.weight(&key);
            g.old.remove(&key);
            self.put(&mut g, key, kept, weight);
        }
    }

    fn put(&self, g: &mut Generations, key: Key, kept: Kept, weight: usize) {
        if let Some((_, before)) = g.young.insert(key, (kept, weight)) {
            g.young_bytes -= before;
        }
        g.young_bytes += weight;
        if g.young.len() >= self.max_entries / 2 || g.young_bytes >= self.max_bytes / 2 {
            g.old = std::mem::take(&mut g.young);
            g.young_bytes = 0;
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What kind of file the model reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Python,
    Command,
}

/// Files of the tree with the same blob, read once.
struct Group {
    sha: String,
    files: Vec<(String, Kind)>,
    bytes: Option<Vec<u8>>,
}

impl Reviewer {
    /// The repository model at `head` from its tree listing: facts of the Python files and texts of the
    /// deployment files from the cache, from what this audit has read already (`audited`: the files under
    /// review; `context`: the files the rules read besides them), or read in batches. `None` (with the reason logged) when the listing is truncated, the tree has too many Python
    /// files, the files to read exceed [`MAX_FETCH_BYTES`], or a read fails: every module is then judged.
    pub(super) async fn repo_model(
        &self,
        t: &AuditTarget,
        head: &str,
        tree: &GitTree,
        audited: &[crate::sandbox::AnalysisFile],
        context: &HashMap<String, String>,
    ) -> Option<Reach> {
        let repo = t.repo.as_str();
        if tree.truncated {
            tracing::info!(
                repo,
                "repository model not built: GitHub truncated the tree listing; every module is judged"
            );
            return None;
        }
        let python: Vec<&TreeFile> = tree
            .files
            .iter()
            .filter(|f| repo_model::wants_python(&f.path))
            .collect();
        if repo_model::too_many_modules(python.len()) {
            tracing::info!(
                repo,
                python_files = python.len(),
                "repository model not built: too many Python files; every module is judged"
            );
            return None;
        }
        let commands = tree
            .files
            .iter()
            .filter(|f| repo_model::wants_command(&f.path));
        let have: HashMap<&str, &[u8]> = context
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_bytes()))
            .chain(audited.iter().map(|(p, b, _)| (p.as_str(), b.as_slice())))
            .collect();

        let mut known: Vec<(String, Kept)> = Vec::new();
        // Files to work out, by blob (a file without a sha has a group of its own).
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        let mut hits = 0usize;
        for (f, kind) in python
            .iter()
            .map(|f| (*f, Kind::Python))
            .chain(commands.map(|f| (f, Kind::Command)))
        {
            let limit = match kind {
                Kind::Python => plan::MAX_FILE_BYTES,
                Kind::Command => plan::MAX_CONTEXT_FILE_BYTES,
            } as u64;
            if f.size.is_some_and(|s| s > limit) {
                // Not read, as the CLI reads it: too large.
                let kept = match kind {
                    Kind::Python => Kept::Python {
                        facts: Arc::new(repo_model::python_facts(
                            &f.path,
                            None,
                            &NameBudget::unlimited(),
                        )),
                        service_bytes: 0,
                    },
                    Kind::Command => Kept::Command(None),
                };
                known.push((f.path.clone(), kept));
                continue;
            }
            if !f.sha.is_empty()
                && let Some(kept) = self.model_cache.get(&(f.sha.clone(), f.path.clone(), kind))
            {
                hits += 1;
                known.push((f.path.clone(), kept));
                continue;
            }
            let group_key = if f.sha.is_empty() {
                format!("path:{}", f.path)
            } else {
                f.sha.clone()
            };
            let group = groups.entry(group_key).or_insert_with(|| Group {
                sha: f.sha.clone(),
                files: Vec::new(),
                bytes: None,
            });
            // Only the blob's own bytes (a context file's text was made valid UTF-8, which may change it).
            if group.bytes.is_none()
                && let Some(b) = have.get(f.path.as_str())
                && f.size.is_none_or(|s| s == b.len() as u64)
            {
                group.bytes = Some(b.to_vec());
            }
            group.files.push((f.path.clone(), kind));
        }

        // The blobs neither the cache nor the audited files hold: within the bound, in batches.
        let size_of: HashMap<&str, u64> = tree
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.size.unwrap_or(0)))
            .collect();
        let missing: Vec<(&String, u64)> = groups
            .iter()
            .filter(|(_, g)| g.bytes.is_none())
            .filter_map(|(k, g)| {
                let (path, _) = g.files.first()?;
                Some((k, size_of.get(path.as_str()).copied().unwrap_or(0)))
            })
            .collect();
        let to_read: u64 = missing.iter().map(|(_, s)| s).sum();
        if to_read > MAX_FETCH_BYTES {
            tracing::info!(
                repo,
                files = missing.len(),
                mib = to_read / (1024 * 1024),
                bound_mib = MAX_FETCH_BYTES / (1024 * 1024),
                "repository model not built: more to read than the bound; every module is judged"
            );
            return None;
        }
        let mut batches: Vec<Vec<String>> = Vec::new();
        let mut batch_bytes = 0u64;
        for (key, size) in &missing {
            let full = batches
                .last()
                .is_none_or(|b| b.len() >= GRAPHQL_BATCH || batch_bytes + size > BATCH_BYTES);
            if full {
                batches.push(Vec::new());
                batch_bytes = 0;
            }
            batch_bytes += size;
            if let Some(b) = batches.last_mut() {
                b.push((*key).clone());
            }
        }
        let mut read_bytes = 0u64;
        let blobs_read = missing.len();
        for batch in batches {
            let wanted: Vec<(String, String)> = batch
                .iter()
                .filter_map(|k| groups.get(k)?.files.first())
                .map(|(path, _)| (head.to_string(), path.clone()))
                .collect();
            let mut got = match self.fetch_blobs(t, &wanted).await {
                Ok(got) => got,
                Err(e) => {
                    tracing::warn!(repo, error = %e, "repository model not built: reading the files failed; every module is judged");
                    return None;
                }
            };
            for k in &batch {
                let Some(group) = groups.get_mut(k) else {
                    continue;
                };
                let Some((path, _)) = group.files.first() else {
                    continue;
                };
                group.bytes = got.remove(&(head.to_string(), path.clone())).flatten();
                read_bytes += group.bytes.as_ref().map_or(0, |b| b.len() as u64);
            }
            if read_bytes > MAX_FETCH_BYTES {
                tracing::info!(
                    repo,
                    mib = read_bytes / (1024 * 1024),
                    "repository model not built: the files read exceed the bound; every module is judged"
                );
                return None;
            }
        }

        // The facts of what was read, and the model: on a blocking thread (a scan of every line).
        let groups: Vec<Group> = groups.into_values().collect();
        let built = tokio::task::spawn_blocking(move || work_out(known, groups)).await;
        let (reach, fresh) = match built {
            Ok(built) => built,
            Err(e) => {
                tracing::warn!(repo, error = %e, "repository model not built: working it out failed; every module is judged");
                return None;
            }
        };
        let stored = fresh.len();
        self.model_cache.insert(fresh);
        match &reach.undecided {
            Some(why) => tracing::info!(
                repo,
                why = %why,
                cached = hits,
                blobs_read,
                "reachability not decided: every module is judged"
            ),
            None => tracing::info!(
                repo,
                entries = reach.entries.len(),
                unreached = reach.unreached_count(),
                open_folders = ?reach.open_folders,
                cached = hits,
                blobs_read,
                kib_read = read_bytes / 1024,
                stored,
                "reachability from the service's entry points"
            ),
        }
        Some(reach)
    }
}

/// The model from what the cache had (`known`, by path) and the files read (`groups`); with the entries to
/// keep (files whose bytes were read: a file that could not be read is worked out again next time).
fn work_out(known: Vec<(String, Kept)>, groups: Vec<Group>) -> (Reach, Vec<(Key, Kept)>) {
    use rayon::prelude::*;
    let fresh: Vec<(Key, Kept, bool)> = groups
        .par_iter()
        .flat_map_iter(|g| {
            g.files.iter().map(move |(path, kind)| {
                let kept = match kind {
                    Kind::Python => {
                        // Whole facts (every service file's names): a kept entry serves later builds.
                        let budget = NameBudget::unlimited();
                        let facts = repo_model::python_facts(path, g.bytes.as_deref(), &budget);
                        Kept::Python {
                            facts: Arc::new(facts),
                            service_bytes: budget.counted(),
                        }
                    }
                    Kind::Command => Kept::Command(
                        g.bytes
                            .as_deref()
                            .and_then(repo_model::command_text)
                            .map(Arc::from),
                    ),
                };
                let keep = g.bytes.is_some() && !g.sha.is_empty();
                ((g.sha.clone(), path.clone(), *kind), kept, keep)
            })
        })
        .collect();
    let mut python: BTreeMap<String, Arc<ModuleFacts>> = BTreeMap::new();
    let mut commands: Vec<(String, String)> = Vec::new();
    let mut service_bytes = 0usize;
    let all = known
        .iter()
        .map(|(p, k)| (p, k))
        .chain(fresh.iter().map(|((_, p, _), k, _)| (p, k)));
    for (path, kept) in all {
        match kept {
            Kept::Python {
                facts,
                service_bytes: n,
            } => {
                service_bytes += n;
                python.insert(path.clone(), facts.clone());
            }
            Kept::Command(Some(text)) => commands.push((path.clone(), text.to_string())),
            Kept::Command(None) => {}
        }
    }
    // In the tree's order, as the CLI has them.
    commands.sort();
    let reach = repo_model::build(&python, &commands, service_bytes);
    let keep = fresh
        .into_iter()
        .filter(|(_, _, keep)| *keep)
        .map(|(key, kept, _)| (key, kept))
        .collect();
    (reach, keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python(text: &str) -> Kept {
        Kept::Python {
            facts: Arc::new(repo_model::python_facts(
                "app/x.py",
                Some(text.as_bytes()),
                &NameBudget::unlimited(),
            )),
            service_bytes: text.len(),
        }
    }

    fn key(i: usize) -> Key {
        (format!("{i:040x}"), format!("app/m{i}.py"), Kind::Python)
    }

    #[test]
    fn the_cache_is_bounded_and_keeps_what_is_used() {
        let cache = FactCache::with_bounds(10, usize::MAX);
        cache.insert(vec![(key(0), python("import os\n"))]);
        for i in 1..100 {
            cache.insert(vec![(key(i), python("import os\n"))]);
            // Used all along: never evicted.
            assert!(cache.get(&key(0)).is_some(), "after {i}");
            assert!(cache.len() <= 10, "{}", cache.len());
        }
        assert!(cache.get(&key(1)).is_none(), "the oldest unused entry went");
        assert!(cache.get(&key(99)).is_some());
        // The byte bound holds too.
        let cache = FactCache::with_bounds(usize::MAX, 64 * 1024);
        let big = Kept::Command(Some(Arc::from("x".repeat(10_000).as_str())));
        for i in 0..100 {
            cache.insert(vec![(key(i), big.clone())]);
        }
        assert!(cache.len() <= 12, "{}", cache.len());
        // The path is part of the key: the same blob elsewhere is another entry.
        let cache = FactCache::default();
        cache.insert(vec![(key(1), python("import os\n"))]);
        assert!(
            cache
                .get(&(key(1).0, "tests/m1.py".into(), Kind::Python))
                .is_none()
        );
        assert!(cache.get(&(key(1).0, key(1).1, Kind::Command)).is_none());
        assert!(cache.get(&key(1)).is_some());
    }

    #[test]
    fn worked_out_from_kept_and_read_files() {
        let main = "from fastapi import FastAPI\nfrom app import api\napp = FastAPI()\n";
        let known = vec![("app/main.py".to_string(), python(main))];
        let groups = vec![
            Group {
                sha: "a".repeat(40),
                files: vec![("app/api.py".into(), Kind::Python)],
                bytes: Some(b"import requests\n".to_vec()),
            },
            Group {
                sha: "b".repeat(40),
                files: vec![("tools/bench.py".into(), Kind::Python)],
                bytes: Some(b"import requests\n".to_vec()),
            },
            Group {
                sha: "c".repeat(40),
                files: vec![("app/gone.py".into(), Kind::Python)],
                bytes: None,
            },
        ];
        let (reach, keep) = work_out(known, groups);
        use crate::analysis::semantic::reach::Standing;
        assert_eq!(reach.entries, vec!["app/main.py".to_string()]);
        assert_eq!(reach.standing("app/api.py"), Standing::Service);
        assert_eq!(reach.standing("tools/bench.py"), Standing::Unreached);
        let kept: Vec<&str> = keep.iter().map(|((_, p, _), _)| p.as_str()).collect();
        assert_eq!(
            kept,
            vec!["app/api.py", "tools/bench.py"],
            "an unread file is not kept"
        );
    }
}
