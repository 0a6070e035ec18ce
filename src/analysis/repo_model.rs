//! The repository model as the CLI and the App both build it: which files of the tree it reads, what each Python
//! file contributes ([`python_facts`]), and the reachability ([`Reach`]) made of them ([`build`]).
//!
//! The callers differ only in how they read files: the CLI from git or the working tree (every file, on all
//! cores), the App through the GitHub API (one tree listing, batched blob reads, and per-file facts kept by blob
//! so that the next pull request reads only what it has not seen). Everything that decides the answer is here.

use super::plan;
use super::semantic::reach::{self, ModuleFacts, Reach};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most bytes of the service's Python (tests and scripts aside) whose words are read to find the functions
/// nothing calls: about a quarter of a second on two cores. Larger trees (a vendored standard library) go without.
pub const NAME_SCAN_BYTES: usize = 32 * 1024 * 1024;

/// A deployment file whose commands may name entry points: Dockerfiles, Compose files, Procfiles, shell
/// scripts, `pyproject.toml`.
pub fn is_command_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let lower = name.to_ascii_lowercase();
    let yaml = lower.ends_with(".yml") || lower.ends_with(".yaml");
    // Kubernetes manifests and Helm templates run processes too (`command: ["python", "bot/listener.py"]`).
    let manifest_dir = || {
        path.split('/').rev().skip(1).any(|d| {
            matches!(
                d.to_ascii_lowercase().as_str(),
                "templates" | "k8s" | "kubernetes" | "manifests" | "helm" | "charts"
            )
        })
    };
    lower.starts_with("dockerfile")
        || lower.ends_with(".dockerfile")
        || (lower.contains("compose") && yaml)
        || (yaml && manifest_dir())
        || lower == "procfile"
        || lower.ends_with(".sh")
        || lower == "pyproject.toml"
        // supervisord programs (`command=python bot/listener.py`)
        || (lower.contains("supervisor") && (lower.ends_with(".conf") || lower.ends_with(".ini")))
}

/// A Python file of the tree the model reads (vendored code aside).
pub fn wants_python(path: &str) -> bool {
    path.ends_with(".py") && !plan::is_vendored(path)
}

/// A deployment file of the tree the model reads (vendored code aside).
pub fn wants_command(path: &str) -> bool {
    is_command_file(path) && !plan::is_vendored(path)
}

/// More Python files than the model judges ([`reach::MAX_MODULES`]): build nothing.
pub fn too_many_modules(python_files: usize) -> bool {
    python_files > reach::MAX_MODULES
}

/// The model of a tree too large to judge: nothing is decided, every module is judged.
pub fn undecided() -> Reach {
    Reach::build(&BTreeMap::<String, ModuleFacts>::new(), &[], |_| true)
}

/// The bytes of the service's Python whose names were read, against [`NAME_SCAN_BYTES`]. Shared by the files
/// of one build (read on all cores): past the budget no more names are read, and [`build`] forgets the
/// functions nothing calls, whatever order the files came in.
#[derive(Debug)]
pub struct NameBudget {
    counted: AtomicUsize,
    limit: usize,
}

impl Default for NameBudget {
    fn default() -> Self {
        NameBudget::new()
    }
}

impl NameBudget {
    /// The budget of one build: [`NAME_SCAN_BYTES`].
    pub fn new() -> Self {
        NameBudget {
            counted: AtomicUsize::new(0),
            limit: NAME_SCAN_BYTES,
        }
    }

    /// No limit: every service file's names are read (for facts kept beyond one build, which must be whole;
    /// the caller adds up [`NameBudget::counted`] and passes the sum to [`build`]).
    pub fn unlimited() -> Self {
        NameBudget {
            counted: AtomicUsize::new(0),
            limit: usize::MAX,
        }
    }

    /// Bytes of service Python counted so far.
    pub fn counted(&self) -> usize {
        self.counted.load(Ordering::Relaxed)
    }
}

/// What one Python file contributes to the model, from its bytes (`None`: it could not be read). A file that
/// cannot be read whole counts as importing modules named at run time, so what only it imports is never called
/// unreached. Its names (for the functions nothing calls) are read only when it is the service and `budget`
/// allows; its size then counts against the budget.
pub fn python_facts(path: &str, bytes: Option<&[u8]>, budget: &NameBudget) -> ModuleFacts {
    match bytes.filter(|b| b.len() <= plan::MAX_FILE_BYTES) {
        Some(b) => {
            let text = String::from_utf8_lossy(b);
            let not_service =
                super::semantic::paths::not_service_reason(path, Some(&text)).is_some();
            // Names are read only where they count: tests and scripts neither use nor define a
            // function of the service (most of the cost of this scan is reading every word).
            let names = if not_service {
                Default::default()
            } else {
                let total = budget.counted.fetch_add(b.len(), Ordering::Relaxed) + b.len();
                if total > budget.limit {
                    Default::default()
                } else {
                    super::semantic::uses::name_facts(&text)
                }
            };
            ModuleFacts {
                not_service,
                names,
                ..reach::module_facts(&text)
            }
        }
        None => ModuleFacts {
            dynamic_unknown: true,
            unread: true,
            ..Default::default()
        },
    }
}

/// A deployment file's text as the model reads it (`None`: too large or binary, left out).
pub fn command_text(bytes: &[u8]) -> Option<String> {
    plan::context_file_wanted(bytes).then(|| String::from_utf8_lossy(bytes).into_owned())
}

/// The model: reachability from the facts of every Python file of the tree (by path), the texts of its
/// deployment files (see [`command_text`]), and the bytes of service Python whose names were counted (the
/// [`NameBudget`]'s sum; past [`NAME_SCAN_BYTES`] no function is held back as unused).
pub fn build<F: Borrow<ModuleFacts>>(
    python: &BTreeMap<String, F>,
    commands: &[(String, String)],
    service_bytes: usize,
) -> Reach {
    // Python files by what their text says too (a package's own `setup.py` is a module), other files by path.
    let mut reach = Reach::build(python, commands, |p| {
        python.get(p).map_or_else(
            || super::semantic::paths::not_service_reason(p, None).is_some(),
            |f| f.borrow().not_service,
        )
    });
    // The same answer whatever order the files were read in: over the budget, no file's names count.
    if service_bytes > NAME_SCAN_BYTES {
        reach.forget_unused_functions();
        tracing::info!(
            service_python_mib = service_bytes / (1024 * 1024),
            budget_mib = NAME_SCAN_BYTES / (1024 * 1024),
            "functions nothing calls: not worked out (more service Python than the name scan's budget)"
        );
    }
    reach
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::semantic::reach::Standing;
    use std::sync::Arc;

    const FILES: &[(&str, &str)] = &[
        ("app/__init__.py", ""),
        (
            "app/main.py",
            "from fastapi import FastAPI\nfrom app import api\n\napp = FastAPI()\napp.include_router(api.router)\n",
        ),
        (
            "app/api.py",
            "import requests\n\n\n@router.get('/x')\ndef proxy(u):\n    return requests.get(u)\n\n\ndef old(u):\n    return requests.get(u)\n",
        ),
        ("tools/bench.py", "import requests\n"),
        ("tests/test_api.py", "from app.api import old\nold('u')\n"),
    ];

    fn facts_of(budget: &NameBudget) -> BTreeMap<String, ModuleFacts> {
        FILES
            .iter()
            .map(|(p, t)| (p.to_string(), python_facts(p, Some(t.as_bytes()), budget)))
            .collect()
    }

    /// Facts kept whole (an unlimited budget, as the App's cache keeps them) and shared give the same model as
    /// facts read within one build's budget.
    #[test]
    fn cached_facts_build_the_same_model() {
        let budget = NameBudget::new();
        let owned = facts_of(&budget);
        let reach = build(&owned, &[], budget.counted());
        assert_eq!(reach.standing("tools/bench.py"), Standing::Unreached);
        assert_eq!(reach.standing("app/api.py"), Standing::Service);
        assert_eq!(
            reach.dead_functions("app/api.py"),
            &[("old".to_string(), 9)],
            "a test's call does not count"
        );
        let mut service_bytes = 0;
        let shared: BTreeMap<String, Arc<ModuleFacts>> = FILES
            .iter()
            .map(|(p, t)| {
                let b = NameBudget::unlimited();
                let f = python_facts(p, Some(t.as_bytes()), &b);
                service_bytes += b.counted();
                (p.to_string(), Arc::new(f))
            })
            .collect();
        assert_eq!(service_bytes, budget.counted());
        assert_eq!(build(&shared, &[], service_bytes), reach);
        // Past the budget the functions nothing calls are forgotten; reachability stays.
        let over = build(&shared, &[], NAME_SCAN_BYTES + 1);
        assert!(over.dead_functions("app/api.py").is_empty());
        assert_eq!(over.standing("tools/bench.py"), Standing::Unreached);
    }

    #[test]
    fn unreadable_files_and_selection() {
        let f = python_facts("app/x.py", None, &NameBudget::new());
        assert!(f.dynamic_unknown && !f.not_service);
        let big = vec![b'a'; plan::MAX_FILE_BYTES + 1];
        assert!(python_facts("app/x.py", Some(&big), &NameBudget::new()).dynamic_unknown);
        assert!(wants_python("app/x.py") && !wants_python("vendor/x.py"));
        assert!(wants_command("deploy/Dockerfile.prod") && wants_command("run.sh"));
        assert!(!wants_command("node_modules/x/run.sh") && !wants_command("app/x.py"));
        // Processes started by supervisord, Kubernetes manifests and Helm templates.
        assert!(wants_command("backend/supervisord.conf"));
        assert!(wants_command(
            "deployment/helm/charts/app/templates/slackbot.yaml"
        ));
        assert!(wants_command("k8s/worker.yml"));
        assert!(!wants_command("app/config/settings.yaml") && !wants_command("backend/nginx.conf"));
        assert!(command_text(b"a\0b").is_none());
        assert!(too_many_modules(reach::MAX_MODULES + 1) && !too_many_modules(reach::MAX_MODULES));
        assert_eq!(
            undecided().undecided.as_deref(),
            Some("no entry point found")
        );
    }
}
