//! The repository model's answer to "is this module part of the running service?": which Python modules the
//! service's entry points reach through the import graph, and which modules can never be imported at all
//! (a `foo.py` beside a package `foo/` with an `__init__.py`: the package always wins).
//!
//! Built once per repository from the tree's paths and a few facts per Python file ([`ModuleFacts`], taken from
//! the file's text without a parser: import lines, dotted names in string literals, what the file constructs),
//! plus the commands of Dockerfiles, Compose files, Procfiles, shell scripts and `pyproject.toml`.
//!
//! Entry points: modules that build a `FastAPI`/`Starlette`/`Celery`/`Quart` application or call `uvicorn.run`,
//! and modules named by a deployment command (`uvicorn pkg.main:app`, `gunicorn …`, `celery -A pkg.worker`,
//! `python -m pkg`, `python pkg/main.py`, `[project.scripts]`). Every module they import is reached, and so on;
//! importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`. A dotted module name written in a string
//! literal of a reached module (Celery `include=[…]`, settings that name plugins, `import_module("a.b")`) counts as
//! an import, and `import_module(f"pkg.plugins.{name}")` reaches everything under `pkg.plugins`.
//!
//! The model answers only what it can decide. With no entry point, or when a reached module imports something
//! named at run time (a variable passed to `import_module`, `spec_from_file_location`, entry points), nothing is
//! called unreached; a shadowed module is dead either way.
//!
//! Costs are bounded: at most [`MAX_MODULES`] Python files (a larger tree is not judged), at most
//! [`MAX_FACT_BYTES`] of each file are scanned, and the walk is a worklist (no recursion).

use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Trees with more Python files than this are not judged (everything stays "unknown").
pub const MAX_MODULES: usize = 20_000;
/// Only this much of each file is scanned for imports.
pub const MAX_FACT_BYTES: usize = 1024 * 1024;
/// Import targets kept per file.
const MAX_IMPORTS_PER_FILE: usize = 2_000;

/// What one Python file says about the import graph.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModuleFacts {
    /// Imports, as written: `(level, dotted, names)` — `from ..a.b import c, d` is `(2, "a.b", ["c", "d"])`,
    /// `import a.b` is `(0, "a.b", [])`.
    pub imports: Vec<Import>,
    /// Dotted names in string literals (`"pkg.tasks.email"`, `"pkg.main:app"` without the attribute).
    pub dotted_strings: Vec<String>,
    /// Relative folder paths in string literals (`"superagi/tools"`, `"plugins/external"`): where a loader by
    /// file location may look.
    pub folder_strings: Vec<String>,
    /// Prefixes of modules imported by a formatted name (`import_module(f"pkg.plugins.{x}")` → `pkg.plugins`).
    pub dynamic_prefixes: Vec<String>,
    /// A module imported by a name only known at run time (a variable, a file location, entry points).
    pub dynamic_unknown: bool,
    /// Loads modules from file locations (`spec_from_file_location`, `load_module`): plugins outside the import
    /// graph, never decided by the names the file holds.
    pub loads_by_location: bool,
    /// Lists files or packages (`os.listdir`, `iterdir`, `glob`, `walk_packages`, `entry_points`): a run-time
    /// name may come from the file system or an installed distribution rather than from a literal.
    pub lists_files: bool,
    /// Imports every module of its own package by a listed name (`pkgutil.walk_packages`/`iter_modules` over
    /// its folder, then `import_module(name)`): reaches everything under the file's folder.
    pub loads_own_package: bool,
    /// Builds a web or worker application, or starts a server: an entry point.
    pub is_entry: bool,
    /// The functions it defines and the names it uses (for the functions nothing calls).
    pub names: super::uses::NameFacts,
    /// Not the service, by its path and text ([`super::paths::not_service_reason`]).
    pub not_service: bool,
    /// Mentions cookies anywhere (`request.cookies`, `set_cookie`, `APIKeyCookie`, a session middleware's cookie):
    /// the service may authenticate browsers by cookie.
    pub mentions_cookies: bool,
    /// Functions it registers as the handler of `HTTPException` (`app.add_exception_handler(HTTPException, f)`,
    /// `@app.exception_handler(StarletteHTTPException)`).
    pub http_error_handlers: Vec<String>,
    /// Functions it defines that replace the detail of a status-500 error with a fixed text (the body compares
    /// `status_code` with 500 and sets `detail`/`message` to a constant or a literal).
    pub detail_sanitizers: Vec<String>,
    /// An Alembic revision file's `revision` id, when it declares one.
    pub alembic_revision: Option<String>,
    /// The revisions it builds on (`down_revision`, a tuple for a merge).
    pub alembic_down_revisions: Vec<String>,
    /// Criteria it adds to every ORM statement through a `do_orm_execute` listener (tenant scoping applied by the
    /// session itself; see [`super::tenancy::orm_criteria`]).
    pub orm_criteria: Vec<super::tenancy::OrmCriterion>,
    /// Its classes, with their bases and the attributes that hold a synchronous session
    /// ([`super::sessions::class_sessions`]).
    pub class_sessions: Vec<super::sessions::ClassSessions>,
    /// Could not be read: nothing is known of what it says.
    pub unread: bool,
}

/// How a module stands with the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Reached from an entry point, or undecidable: judge it as today.
    Service,
    /// No entry point reaches it (and reachability could be decided).
    Unreached,
    /// A package of the same name beside it wins every import: the file is never run.
    Shadowed,
    /// An Alembic migration a later migration builds on: it has been applied wherever the later one has, and is
    /// history nobody rewrites. Held back in whole-file audits only (a change that edits it is reviewed).
    Applied,
    /// A Compose file inside a Python package (`keep/providers/kafka_provider/docker-compose.yml`): the stack a
    /// module's integration is developed or tested against, not how the service is deployed.
    PackageFixture,
}

impl Standing {
    /// The reason given when critical/high findings are held back.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Standing::Service => None,
            Standing::Unreached => Some("not imported by any of the service's entry points"),
            Standing::Shadowed => Some("shadowed by a package of the same name (never imported)"),
            Standing::Applied => Some("an applied migration (a later migration builds on it)"),
            Standing::PackageFixture => Some(
                "a Compose file inside a Python package (a stack for developing that module, not the deployment)",
            ),
        }
    }
}

/// The repository's reachability, once per repository. Serializable: the App builds it and sends it to the
/// analysis child process with the files.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reach {
    /// Paths of Python files no entry point reaches (only filled when reachability could be decided).
    unreached: HashSet<String>,
    /// Python files shadowed by a package.
    shadowed: HashSet<String>,
    /// Why reachability was not decided, when it was not (for `--verbose` and tests).
    pub undecided: Option<String>,
    /// The entry points found (paths), for explanations and tests.
    pub entries: Vec<String>,
    /// Top-level folders in which a reached module imports modules by a run-time name: every module there
    /// counts as reached.
    pub open_folders: Vec<String>,
    /// Functions nothing in the service calls, by path: `(name, line of the def)`.
    dead: HashMap<String, Vec<(String, usize)>>,
    /// Functions only start-up or shutdown hooks call, by path: `(name, line of the def)`.
    #[serde(default)]
    startup_only: HashMap<String, Vec<(String, usize)>>,
    /// Does any module of the service mention cookies? `None` when a module of the service could not be read.
    #[serde(default)]
    pub cookies: Option<bool>,
    /// For each module that builds an application and whose static imports decide what it runs, whether a
    /// module of that application mentions cookies: a repository holding several applications (a plugin server
    /// beside the main API) has one answer per application.
    #[serde(default)]
    app_cookies: HashMap<String, bool>,
    /// Does the application's `HTTPException` handler replace the detail of status-500 errors with a fixed text
    /// (so `HTTPException(500, detail=str(e))` never shows the exception)? `None` when a module could not be read.
    #[serde(default)]
    pub http_500_detail_replaced: Option<bool>,
    /// The functions and methods the repository defines of which some definition may decide access (is not
    /// [`super::uses::DefFact::passive`]); given a tenant id and the caller, any other function decides nothing.
    #[serde(default)]
    deciding: HashSet<String>,
    /// Alembic migrations that a later migration builds on (their `revision` is another's `down_revision`).
    #[serde(default)]
    applied: HashSet<String>,
    /// Compose files inside a Python package (a folder, or one above it, holds an `__init__.py`).
    #[serde(default)]
    package_fixtures: HashSet<String>,
    /// Were the definitions of every file read (so `deciding` is the whole repository's)?
    #[serde(default)]
    definitions_read: bool,
    /// Criteria the service's modules add to every ORM statement (`do_orm_execute` listeners).
    #[serde(default)]
    pub orm_criteria: Vec<super::tenancy::OrmCriterion>,
    /// The attributes of each class that hold a synchronous SQLAlchemy session, its own and its bases' (across
    /// modules): `self.db` of a controller whose base class keeps the request's `Session`.
    #[serde(default)]
    pub session_attrs: HashMap<String, Vec<String>>,
}

impl Reach {
    pub fn standing(&self, path: &str) -> Standing {
        if self.shadowed.contains(path) {
            Standing::Shadowed
        } else if self.unreached.contains(path) {
            Standing::Unreached
        } else if self.applied.contains(path) {
            Standing::Applied
        } else if self.package_fixtures.contains(path) {
            Standing::PackageFixture
        } else {
            Standing::Service
        }
    }

    /// May the function `name` decide access (a branch, a comparison, a query, a checking call in some
    /// definition of it in the repository)? False for the repository's passive functions and for names it does not
    /// define (a library's: a logger, a response class); true for every name when the definitions were not all read.
    pub fn may_decide(&self, name: &str) -> bool {
        !self.definitions_read || self.deciding.contains(name)
    }

    /// The possibly deciding functions' names, sorted, or `None` when the definitions were not all read (for the
    /// result cache's key).
    pub fn deciding_names(&self) -> Option<Vec<&str>> {
        if !self.definitions_read {
            return None;
        }
        let mut names: Vec<&str> = self.deciding.iter().map(String::as_str).collect();
        names.sort_unstable();
        Some(names)
    }

    /// Drop the functions nothing calls, and the passive ones (their names could not all be read).
    pub fn forget_unused_functions(&mut self) {
        self.dead.clear();
        self.startup_only.clear();
        self.deciding.clear();
        self.definitions_read = false;
    }

    /// The functions of `path` that nothing in the service calls: `(name, 1-based line of the def)`.
    pub fn dead_functions(&self, path: &str) -> &[(String, usize)] {
        self.dead.get(path).map_or(&[], Vec::as_slice)
    }

    /// The functions of `path` that only start-up or shutdown hooks call: `(name, 1-based line of the def)`.
    pub fn startup_only_functions(&self, path: &str) -> &[(String, usize)] {
        self.startup_only.get(path).map_or(&[], Vec::as_slice)
    }

    /// Whether the application `path` builds mentions cookies (see `app_cookies`), else the service's answer.
    pub fn cookies_at(&self, path: &str) -> Option<bool> {
        self.app_cookies.get(path).copied().or(self.cookies)
    }

    pub fn unreached_count(&self) -> usize {
        self.unreached.len()
    }

    /// Build the model. `py` holds the facts of the tree's Python files (by path: owned, or shared as the App's
    /// cache keeps them); `commands` the texts of deployment files (Dockerfiles, Compose files, Procfiles, shell
    /// scripts, `pyproject.toml`); `not_service` says which paths are not the service anyway (tests, scripts …:
    /// never entry points).
    pub fn build<F: Borrow<ModuleFacts>>(
        py: &BTreeMap<String, F>,
        commands: &[(String, String)],
        not_service: impl Fn(&str) -> bool,
    ) -> Reach {
        fn as_facts<F: Borrow<ModuleFacts>>(f: &F) -> &ModuleFacts {
            f.borrow()
        }
        let mut reach = Reach::default();
        // Whether the service may authenticate by cookie: any of its modules mentions cookies (unknown when one
        // could not be read).
        let service = || py.iter().filter(|(p, _)| !not_service(p));
        reach.cookies = if service().any(|(_, f)| as_facts(f).mentions_cookies) {
            Some(true)
        } else if service().any(|(_, f)| as_facts(f).unread) {
            None
        } else {
            Some(false)
        };
        // Classes of the service's modules only, like the criteria below: a test double of the same name says
        // nothing of the service's class.
        reach.session_attrs = super::sessions::inherited_session_attrs(
            service().flat_map(|(_, f)| as_facts(f).class_sessions.iter()),
        );
        reach.orm_criteria = service()
            .flat_map(|(_, f)| as_facts(f).orm_criteria.iter().cloned())
            .collect();
        // Functions some definition of which may decide access (a file that could not be read may define any
        // name: then every function may).
        if !py.values().any(|f| as_facts(f).unread) {
            reach.deciding = py
                .values()
                .flat_map(|f| as_facts(f).names.defs.iter())
                .filter(|d| !d.passive)
                .map(|d| d.name.clone())
                .collect();
            reach.definitions_read = true;
        }
        reach.http_500_detail_replaced = if py.values().any(|f| {
            let f = as_facts(f);
            f.http_error_handlers.iter().any(|h| {
                py.values()
                    .any(|g| as_facts(g).detail_sanitizers.iter().any(|s| s == h))
            })
        }) {
            Some(true)
        } else if service().any(|(_, f)| as_facts(f).unread) {
            None
        } else {
            Some(false)
        };
        // Migrations some other migration builds on.
        let built_on: HashSet<&str> = py
            .values()
            .flat_map(|f| {
                as_facts(f)
                    .alembic_down_revisions
                    .iter()
                    .map(String::as_str)
            })
            .collect();
        reach.applied = py
            .iter()
            .filter(|(_, f)| {
                as_facts(*f)
                    .alembic_revision
                    .as_deref()
                    .is_some_and(|r| built_on.contains(r))
            })
            .map(|(p, _)| p.clone())
            .collect();
        let paths: HashSet<&str> = py.keys().map(String::as_str).collect();
        reach.package_fixtures = commands
            .iter()
            .map(|(p, _)| p)
            .filter(|p| super::paths::is_compose_path(p))
            .filter(|p| {
                let mut dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                // Up to the top of the tree, a bounded number of folders.
                for _ in 0..32 {
                    if dir.is_empty() {
                        return false;
                    }
                    if paths.contains(format!("{dir}/__init__.py").as_str()) {
                        return true;
                    }
                    dir = dir.rsplit_once('/').map_or("", |(d, _)| d);
                }
                false
            })
            .cloned()
            .collect();
        for p in py.keys() {
            if let Some(stem) = p.strip_suffix(".py")
                && !p.ends_with("__init__.py")
                && paths.contains(format!("{stem}/__init__.py").as_str())
            {
                reach.shadowed.insert(p.clone());
            }
        }
        if py.len() > MAX_MODULES {
            reach.undecided = Some(format!("more than {MAX_MODULES} Python files"));
            return reach;
        }
        let index = ModuleIndex::new(py.keys().map(String::as_str));
        let mut roots: Vec<&str> = py
            .iter()
            .filter(|(p, f)| {
                as_facts(*f).is_entry && !not_service(p) && !reach.shadowed.contains(*p)
            })
            .map(|(p, _)| p.as_str())
            .collect();
        for (path, text) in commands {
            // A development set-up (`full-dev-setup.sh`, `docker-compose.dev.yml`) starts developer tools beside
            // the service; the service's own modules are entry points by what they build, or named elsewhere.
            if not_service(path) || super::paths::is_dev_infra_file(path) {
                continue;
            }
            let sources = copied_sources(path, text);
            for target in command_targets(&process_lines(path, text)) {
                let found = index.resolve_target(&target, path);
                roots.extend(narrow_targets(found, &sources, |p| {
                    py.get(p).is_some_and(|f| as_facts(f).is_entry)
                }));
            }
        }
        roots.sort_unstable();
        roots.dedup();
        if roots.is_empty() {
            reach.undecided = Some("no entry point found".into());
            return reach;
        }
        reach.entries = roots.iter().map(|s| s.to_string()).collect();
        for r in &roots {
            if py.get(*r).is_some_and(|f| as_facts(f).is_entry)
                && let Some(c) = app_mentions_cookies(r, py, &index)
            {
                reach.app_cookies.insert(r.to_string(), c);
            }
        }

        let mut seen: HashSet<&str> = HashSet::new();
        let mut work: Vec<&str> = Vec::new();
        // Whether the modules named by the service's string literals were added (once, for the first loader of
        // run-time names whose names can only come from literals).
        let mut literal_names_added = false;
        for r in &roots {
            index.with_parents(r, |p| {
                if seen.insert(p) {
                    work.push(p);
                }
            });
        }
        while let Some(path) = work.pop() {
            let Some(facts) = py.get(path).map(as_facts) else {
                continue;
            };
            let mut targets: Vec<&str> = Vec::new();
            // A loader whose names are the file's own registry (`"pkg.llms.openai.OpenAILLM"` strings in a
            // factory): its dotted strings reach the modules it can load, nothing else is opened.
            let registry = !facts.loads_by_location
                && facts
                    .dotted_strings
                    .iter()
                    .filter(|s| index.exact_or_parent(s).next().is_some())
                    .take(REGISTRY_MIN_MODULES)
                    .count()
                    >= REGISTRY_MIN_MODULES;
            // A name known only at run time that can only come from a literal (no file locations, no listings):
            // it reaches the modules named by string literals anywhere in the service, not a whole folder.
            let from_literals = !facts.loads_by_location && !facts.lists_files;
            if facts.dynamic_unknown && !registry && from_literals {
                if !literal_names_added {
                    literal_names_added = true;
                    for (p, f) in py.iter() {
                        if not_service(p) {
                            continue;
                        }
                        // Exact module names only: elsewhere `"pkg.mod.attr"` is as often a logger name or a
                        // setting's path as a module to load.
                        for s in &as_facts(f).dotted_strings {
                            targets.extend(index.exact(s));
                        }
                    }
                    // And names a deployment sets (`PLUGIN: pkg.plugins.x` in a Compose environment).
                    for (p, text) in commands {
                        if not_service(p) {
                            continue;
                        }
                        for word in text
                            .split(|c: char| c.is_whitespace() || "\"'=:,[]{}()".contains(c))
                            .filter(|w| w.contains('.') && valid_dotted(w))
                            .take(MAX_IMPORTS_PER_FILE)
                        {
                            targets.extend(index.exact_or_parent(word));
                        }
                    }
                }
            } else if facts.dynamic_unknown && !registry {
                // A module loaded by location or from a listing may be any module of the loader's top-level
                // folder (`backend/…`, `superagi/…`): all of them count as reached. Outside it the imports still
                // decide (an offline harness or a scripts folder beside the service). A loader at the top of the
                // tree could reach anything: then nothing is decided.
                // A loader by file location that names the folders it loads from (`"superagi/tools"`, as the
                // tree's folder or one ending with it) opens only those.
                let named: Vec<String> = if facts.loads_by_location {
                    index.folders_named(&facts.folder_strings)
                } else {
                    Vec::new()
                };
                for f in &named {
                    if !reach.open_folders.contains(f) {
                        targets.extend(index.in_folder(f));
                        reach.open_folders.push(f.clone());
                    }
                }
                if named.is_empty() {
                    let Some(top) = loader_folder(path) else {
                        reach.undecided =
                            Some(format!("`{path}` imports modules named at run time"));
                        reach.unreached.clear();
                        reach.dead.clear();
                        return reach;
                    };
                    if !reach.open_folders.iter().any(|f| f == top) {
                        reach.open_folders.push(top.to_string());
                        targets.extend(index.in_folder(top));
                    }
                }
            }
            for (level, dotted, names) in &facts.imports {
                index.resolve_import(path, *level, dotted, names, &mut targets);
            }
            // `"pkg.mod.Class"` names its module only where the file loads modules by run-time names (a
            // factory's registry); elsewhere such a string is as often a logger name or a setting's path.
            for s in &facts.dotted_strings {
                if facts.dynamic_unknown {
                    targets.extend(index.exact_or_parent(s));
                } else {
                    targets.extend(index.exact(s));
                }
            }
            for prefix in &facts.dynamic_prefixes {
                targets.extend(index.under(prefix));
            }
            if facts.loads_own_package {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                targets.extend(index.in_folder(dir));
            }
            for t in targets {
                index.with_parents(t, |p| {
                    if seen.insert(p) {
                        work.push(p);
                    }
                });
            }
        }
        for p in py.keys() {
            if !seen.contains(p.as_str()) && !reach.shadowed.contains(p) && !run_by_a_tool(p) {
                reach.unreached.insert(p.clone());
            }
        }
        // Functions nothing calls, by names: only in a repository whose service could be found (a library or a
        // snippet without an entry point is called from outside). A call from a module the service never runs
        // (unreached, shadowed) does not count either.
        let unused = super::uses::unused_functions(
            py.iter().map(|(p, f)| (p, as_facts(f))),
            |p| !not_service(p) && !reach.unreached.contains(p) && !reach.shadowed.contains(p),
            commands,
        );
        reach.dead = unused.dead;
        reach.startup_only = unused.startup_only;
        reach
    }
}

/// Folders that hold several projects of a monorepo side by side (`packages/dbgpt-core/…`).
const MONOREPO_FOLDERS: &[&str] = &["packages", "libs", "apps", "services", "projects"];

/// The folder a module that loads modules by run-time names may load from: its top-level folder (`backend/`,
/// `superagi/`), or in a monorepo its own project (`packages/dbgpt-core/`; with a `src/` layout,
/// `packages/dbgpt-core/src/dbgpt/`), since a name imported at run time resolves in the loader's own
/// installed package. `None` for a module at the top of the tree (it could load anything).
fn loader_folder(path: &str) -> Option<&str> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 2 {
        return None;
    }
    // Folders only (the last part is the file).
    let dirs = &parts[..parts.len() - 1];
    let keep = if MONOREPO_FOLDERS.contains(&dirs[0]) && dirs.len() >= 2 {
        if dirs.len() >= 4 && dirs[2] == "src" {
            4
        } else {
            2
        }
    } else {
        1
    };
    let len: usize = dirs[..keep].iter().map(|d| d.len()).sum::<usize>() + keep - 1;
    path.get(..len)
}

/// Most modules followed from one application's entry module for [`app_mentions_cookies`].
const MAX_APP_MODULES: usize = 5_000;

/// Does the application built in `entry` mention cookies in any module its static imports reach? `None` when
/// that cannot be decided: a module it reaches imports by run-time names, could not be read, or the closure is
/// larger than [`MAX_APP_MODULES`].
fn app_mentions_cookies<F: Borrow<ModuleFacts>>(
    entry: &str,
    py: &BTreeMap<String, F>,
    index: &ModuleIndex<'_>,
) -> Option<bool> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut work: Vec<&str> = Vec::new();
    index.with_parents(py.get_key_value(entry).map(|(k, _)| k.as_str())?, |p| {
        if seen.insert(p) {
            work.push(p);
        }
    });
    let mut cookies = false;
    while let Some(path) = work.pop() {
        let facts: &ModuleFacts = py.get(path)?.borrow();
        if facts.unread
            || facts.dynamic_unknown
            || facts.loads_by_location
            || facts.loads_own_package
            || !facts.dynamic_prefixes.is_empty()
            || seen.len() > MAX_APP_MODULES
        {
            return None;
        }
        cookies |= facts.mentions_cookies;
        let mut targets = Vec::new();
        for (level, dotted, names) in &facts.imports {
            index.resolve_import(path, *level, dotted, names, &mut targets);
        }
        for s in &facts.dotted_strings {
            targets.extend(index.exact(s));
        }
        for t in targets {
            index.with_parents(t, |p| {
                if seen.insert(p) {
                    work.push(p);
                }
            });
        }
    }
    Some(cookies)
}

/// Files another tool runs without any import from the service: Alembic's `env.py` and its revisions, Django-
/// style `migrations/`. They stay judged as the service.
fn run_by_a_tool(path: &str) -> bool {
    path.rsplit('/').next() == Some("env.py")
        || path
            .split('/')
            .any(|d| matches!(d, "alembic" | "migrations" | "versions"))
}

/// Python files by every dotted name they could be imported as. The import root is not known (the repository
/// root, `src/`, `backend/`, a namespace package …), so each file is indexed under every suffix of its dotted
/// path: `backend/app/api/routes.py` answers to `backend.app.api.routes`, `app.api.routes`, `api.routes` and
/// `routes`. An ambiguous name reaches all its files: erring towards "reached" only keeps findings.
struct ModuleIndex<'a> {
    by_name: HashMap<String, Vec<&'a str>>,
    /// Every Python file of the tree, for relative imports and file targets.
    by_path: HashMap<&'a str, ()>,
}

impl<'a> ModuleIndex<'a> {
    fn new(paths: impl Iterator<Item = &'a str>) -> Self {
        let mut by_name: HashMap<String, Vec<&'a str>> = HashMap::new();
        let mut by_path = HashMap::new();
        for p in paths {
            by_path.insert(p, ());
            let Some(stem) = p.strip_suffix(".py") else {
                continue;
            };
            let stem = stem.strip_suffix("/__init__").unwrap_or(stem);
            if stem == "__init__" {
                continue;
            }
            let parts: Vec<&str> = stem.split('/').collect();
            for i in 0..parts.len() {
                by_name.entry(parts[i..].join(".")).or_default().push(p);
            }
        }
        ModuleIndex { by_name, by_path }
    }

    fn exact(&self, dotted: &str) -> impl Iterator<Item = &'a str> + '_ {
        self.by_name.get(dotted).into_iter().flatten().copied()
    }

    /// The module named `dotted`, or else the module of the attribute it names (`"pkg.llms.openai.OpenAILLM"`).
    fn exact_or_parent(&self, dotted: &str) -> impl Iterator<Item = &'a str> + '_ {
        let own = self.by_name.get(dotted);
        let parent = own
            .is_none()
            .then(|| {
                dotted
                    .rsplit_once('.')
                    .and_then(|(m, _)| self.by_name.get(m))
            })
            .flatten();
        own.or(parent).into_iter().flatten().copied()
    }

    /// Every module whose dotted name starts with `prefix.` (or is `prefix`).
    fn under(&self, prefix: &str) -> Vec<&'a str> {
        let dotted = format!("{prefix}.");
        self.by_name
            .iter()
            .filter(|(n, _)| *n == prefix || n.starts_with(&dotted))
            .flat_map(|(_, v)| v.iter().copied())
            .collect()
    }

    /// Every Python file under a folder (`""`: the whole tree).
    /// The folders of the tree holding Python modules that the relative paths `names` name: the folder itself or
    /// one whose path ends with it (`"plugins/x"` run from `backend/` is `backend/plugins/x`).
    fn folders_named(&self, names: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let inner = format!("/{name}/");
            let start = format!("{name}/");
            for p in self.by_path.keys() {
                let folder = if p.starts_with(&start) {
                    Some(name.clone())
                } else {
                    p.find(&inner)
                        .map(|at| p[..at + inner.len() - 1].to_string())
                };
                if let Some(f) = folder
                    && !out.contains(&f)
                {
                    out.push(f);
                }
            }
        }
        out
    }

    fn in_folder(&self, dir: &str) -> Vec<&'a str> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.by_path
            .keys()
            .filter(|p| p.starts_with(&prefix))
            .copied()
            .collect()
    }

    fn file(&self, path: &str) -> Option<&'a str> {
        self.by_path.get_key_value(path).map(|(k, _)| *k)
    }

    /// `dir/x.py` or `dir/x/__init__.py`.
    fn at(&self, dir: &str, rel: &str) -> Option<&'a str> {
        let base = if dir.is_empty() {
            rel.to_string()
        } else {
            format!("{dir}/{rel}")
        };
        self.file(&format!("{base}.py"))
            .or_else(|| self.file(&format!("{base}/__init__.py")))
    }

    fn resolve_import(
        &self,
        from: &str,
        level: usize,
        dotted: &str,
        names: &[String],
        out: &mut Vec<&'a str>,
    ) {
        if level == 0 {
            out.extend(self.exact(dotted));
            for n in names {
                out.extend(self.exact(&format!("{dotted}.{n}")));
            }
            return;
        }
        // The package the relative import starts from: the file's folder, then one folder up per extra dot.
        let mut dir: Vec<&str> = from.split('/').collect();
        dir.pop();
        for _ in 1..level {
            if dir.pop().is_none() {
                return;
            }
        }
        let dir = dir.join("/");
        let rel = dotted.replace('.', "/");
        let base = if rel.is_empty() {
            dir.clone()
        } else if dir.is_empty() {
            rel.clone()
        } else {
            format!("{dir}/{rel}")
        };
        if !rel.is_empty() {
            out.extend(self.at(&dir, &rel));
        } else if let Some(init) = self.file(&format!(
            "{}__init__.py",
            if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            }
        )) {
            out.push(init);
        }
        for n in names {
            out.extend(self.at(&base, n));
        }
    }

    /// A file and the `__init__.py` of every package above it (importing `a.b.c` runs them all).
    fn with_parents(&self, path: &'a str, mut f: impl FnMut(&'a str)) {
        f(path);
        let mut dir = path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            match self.file(&format!("{parent}/__init__.py")) {
                Some(init) => f(init),
                None => break,
            }
            dir = parent;
        }
    }

    /// A command's target (`pkg.main`, `pkg/main.py`) from a deployment file at `from`.
    fn resolve_target(&self, target: &str, from: &str) -> Vec<&'a str> {
        if let Some(file) = target.strip_suffix(".py") {
            let file = file.trim_start_matches("./");
            // Relative to the repository root, the deployment file's folder, or any folder (a WORKDIR).
            let dir = from.rsplit_once('/').map_or("", |(d, _)| d);
            let candidates = [format!("{file}.py"), format!("{dir}/{file}.py")];
            let found: Vec<&'a str> = candidates.iter().filter_map(|c| self.file(c)).collect();
            if !found.is_empty() {
                return found;
            }
            return self.exact(&file.replace('/', ".")).collect();
        }
        self.exact(target).collect()
    }
}

/// When a command's bare target names several modules of the tree (`uvicorn main:app`, `python3 __main__.py`
/// from a Dockerfile in another folder), the ones the deployment file copies into its image (`COPY
/// ./inference/worker/*.py .`), else the ones that build an application; else all of them.
fn narrow_targets<'a>(
    found: Vec<&'a str>,
    sources: &[String],
    is_entry: impl Fn(&str) -> bool,
) -> Vec<&'a str> {
    if found.len() < 2 {
        return found;
    }
    let copied: Vec<&'a str> = found
        .iter()
        .copied()
        .filter(|c| {
            sources.iter().any(|s| {
                *c == s.as_str()
                    || c.strip_prefix(s.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
        })
        .collect();
    if !copied.is_empty() {
        return copied;
    }
    let entries: Vec<&'a str> = found.iter().copied().filter(|c| is_entry(c)).collect();
    if entries.is_empty() { found } else { entries }
}

/// Most `ARG`/`ENV` defaults and `COPY` sources read from one Dockerfile.
const MAX_DOCKERFILE_NAMES: usize = 200;

/// The repository paths a Dockerfile copies into its image (`COPY ./${APP_RELATIVE_PATH}/main.py .` with
/// `ARG APP_RELATIVE_PATH="inference/server"`), each relative to the repository root and to the Dockerfile's
/// folder (the build context is one of them, most often), a glob cut to its folder. Copies from another stage
/// and the whole context (`.`) say nothing. Empty for other files.
pub fn copied_sources(path: &str, text: &str) -> Vec<String> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if !(name.starts_with("dockerfile") || name.ends_with(".dockerfile")) {
        return Vec::new();
    }
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let mut vars: HashMap<String, String> = HashMap::new();
    let expand = |s: &str, vars: &HashMap<String, String>| {
        let mut out = s.to_string();
        // Nested defaults (`APP_RELATIVE_PATH="${MODULE}/${SERVICE}"`) take a few rounds.
        for _ in 0..4 {
            if !out.contains('$') {
                break;
            }
            for (k, v) in vars {
                out = out.replace(&format!("${{{k}}}"), v);
            }
        }
        out
    };
    let mut out: Vec<String> = Vec::new();
    for line in text.lines().take(100_000) {
        let t = line.trim();
        let mut words = t.split_whitespace();
        let keyword = words.next().unwrap_or("").to_ascii_uppercase();
        match keyword.as_str() {
            "ARG" | "ENV" if vars.len() < MAX_DOCKERFILE_NAMES => {
                for w in words {
                    if let Some((k, v)) = w.split_once('=') {
                        let v = expand(v.trim_matches('"').trim_matches('\''), &vars);
                        if !k.is_empty() && !v.contains('$') {
                            vars.insert(k.to_string(), v);
                        }
                    }
                }
            }
            "COPY" | "ADD" if out.len() < MAX_DOCKERFILE_NAMES => {
                let args: Vec<&str> = words.collect();
                if args.iter().any(|a| a.starts_with("--from")) {
                    continue;
                }
                let paths: Vec<&str> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
                let Some((_, srcs)) = paths.split_last() else {
                    continue;
                };
                for src in srcs {
                    let src = expand(
                        src.trim_matches(|c| c == '"' || c == '[' || c == ']' || c == ','),
                        &vars,
                    );
                    if src.contains('$') {
                        continue;
                    }
                    let mut src = src
                        .trim_start_matches("./")
                        .trim_end_matches('/')
                        .to_string();
                    if let Some(g) = src.find(['*', '?', '[']) {
                        src = src[..g]
                            .rsplit_once('/')
                            .map_or(String::new(), |(d, _)| d.to_string());
                    }
                    if src.is_empty() || src == "." || src.starts_with("..") {
                        continue;
                    }
                    if !dir.is_empty() {
                        out.push(format!("{dir}/{src}"));
                    }
                    out.push(src);
                }
            }
            _ => {}
        }
    }
    out
}

/// The lines of a deployment file that start the processes of the service, not build or boot steps: in a
/// Dockerfile the `CMD`/`ENTRYPOINT` instructions (a `RUN python tools/fetch.py` runs at build time); in a shell
/// script, the lines from the last one that starts a server or worker on (`exec uvicorn …`, `celery … worker`),
/// where there is one, plus any command sent to the background (`… &`) — a `python tools/fetch.py` before that is
/// a boot step. Other files are read whole.
pub fn process_lines<'t>(path: &str, text: &'t str) -> std::borrow::Cow<'t, str> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    if name.starts_with("dockerfile") || name.ends_with(".dockerfile") {
        let mut out = String::new();
        let mut continuing = false;
        for line in text.lines() {
            let t = line.trim_start();
            let keyword = t
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            if !continuing && keyword != "CMD" && keyword != "ENTRYPOINT" {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            continuing = t.trim_end().ends_with('\\');
        }
        return out.into();
    }
    if name.ends_with(".sh") {
        let lines: Vec<&str> = text.lines().collect();
        let starts_server = |l: &str| {
            let t = l.trim_start();
            !t.starts_with('#')
                && (t.starts_with("exec ")
                    || [
                        "uvicorn",
                        "gunicorn",
                        "hypercorn",
                        "granian",
                        "daphne",
                        "celery",
                        "arq ",
                    ]
                    .iter()
                    .any(|w| t.contains(w)))
        };
        if let Some(last) = lines.iter().rposition(|l| starts_server(l)) {
            let mut out = String::new();
            for (i, l) in lines.iter().enumerate() {
                if i >= last || l.trim_end().ends_with('&') {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            return out.into();
        }
    }
    text.into()
}

/// Module targets in a deployment command text: `uvicorn a.b:app`, `gunicorn a.b:app`, `hypercorn`, `granian`,
/// `celery -A a.b`, `python -m a.b`, `python a/b.py`, `arq a.b.Worker`, `fastapi run a/b.py`, and
/// `name = "a.b:func"` lines (`[project.scripts]`).
pub fn command_targets(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().take(100_000) {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '[' | ']' | '='))
            .filter(|w| !w.is_empty())
            .collect();
        for (i, w) in words.iter().enumerate() {
            let next = words.get(i + 1).copied();
            let base = w.rsplit('/').next().unwrap_or(w);
            match base {
                "uvicorn" | "gunicorn" | "hypercorn" | "granian" | "daphne" => {
                    // The first later word shaped like `module:attr` (or a file): not an option's value such
                    // as `-k uvicorn.workers.UvicornWorker`.
                    if let Some(t) = words[i + 1..]
                        .iter()
                        .filter(|x| x.contains(':') || x.ends_with(".py"))
                        .find_map(|x| module_of_target(x))
                    {
                        out.push(t);
                    }
                }
                "-A" | "--app" => {
                    if let Some(n) = next.and_then(module_of_target) {
                        out.push(n);
                    }
                }
                "-m" if i > 0 && words[i - 1].contains("python") => {
                    if let Some(n) = next.and_then(module_of_target) {
                        out.push(n);
                    }
                }
                _ if base.starts_with("python") && !base.contains(':') => {
                    if let Some(n) = next.filter(|n| n.ends_with(".py")) {
                        out.push(n.to_string());
                    }
                }
                "arq" | "run" | "dev" => {
                    if let Some(n) = next.filter(|n| n.ends_with(".py")) {
                        out.push(n.to_string());
                    } else if base == "arq"
                        && let Some(n) = next.and_then(module_of_target)
                    {
                        // `arq pkg.worker.WorkerSettings`: the module is everything but the class.
                        out.push(n.rsplit_once('.').map_or(n.clone(), |(m, _)| m.to_string()));
                    }
                }
                _ => {}
            }
        }
        // pyproject scripts: `name = "pkg.mod:func"`.
        if let Some((_, rhs)) = line.split_once('=') {
            let rhs = rhs.trim().trim_matches(|c| c == '"' || c == '\'');
            if rhs.contains(':')
                && !rhs.contains(' ')
                && let Some(m) = module_of_target(rhs)
            {
                out.push(m);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `a.b:app` → `a.b`; `a.b` → `a.b`; `a/b.py` stays as it is; anything else (flags, URLs) → `None`.
fn module_of_target(w: &str) -> Option<String> {
    let w = w.trim_matches(|c: char| c == '"' || c == '\'' || c == ',');
    if w.starts_with('-') || w.contains("://") || w.starts_with('$') {
        return None;
    }
    if w.ends_with(".py") && !w.contains(':') {
        return Some(w.to_string());
    }
    let module = w.split_once(':').map_or(w, |(m, _)| m);
    let module = module.split('(').next().unwrap_or(module);
    let ok = !module.is_empty()
        && module
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        && module.chars().next().is_some_and(|c| !c.is_ascii_digit());
    ok.then(|| module.to_string())
}

/// One import as written: `(level, dotted, names)` (see [`ModuleFacts::imports`]).
pub type Import = (usize, String, Vec<String>);

/// The imports of one `import …` / `from … import …` statement starting with `first` (trimmed); the lines after it
/// are taken from `more` while parentheses stay open or a line ends with a backslash (at most 200). Names are the
/// names as written before any `as`; a star import keeps `*`. Anything else: nothing.
pub fn import_statement<'t>(first: &str, more: &mut impl Iterator<Item = &'t str>) -> Vec<Import> {
    let mut out = Vec::new();
    if let Some(rest) = first.strip_prefix("import ") {
        let rest = rest.split('#').next().unwrap_or("");
        for part in rest.split(',') {
            let name = part.split_whitespace().next().unwrap_or("");
            if valid_dotted(name) {
                out.push((0, name.to_string(), Vec::new()));
            }
        }
    } else if let Some(rest) = first.strip_prefix("from ") {
        let Some((module, names)) = rest.split_once(" import") else {
            return out;
        };
        let module = module.trim();
        let level = module.chars().take_while(|c| *c == '.').count();
        let dotted = &module[level..];
        let relative_package = dotted.is_empty() && level > 0;
        if !relative_package && !valid_dotted(dotted) {
            return out;
        }
        // Names, following parentheses and backslashes over a bounded number of lines.
        let mut all = names.to_string();
        let mut extra = 0;
        while extra < 200
            && ((all.contains('(') && !all.contains(')')) || all.trim_end().ends_with('\\'))
        {
            match more.next() {
                Some(line) => {
                    all.push(' ');
                    all.push_str(line.split('#').next().unwrap_or(""));
                }
                None => break,
            }
            extra += 1;
        }
        let names: Vec<String> = all
            .split('#')
            .next()
            .unwrap_or("")
            .split([',', '(', ')', '\\'])
            .filter_map(|n| n.split_whitespace().next())
            .filter(|n| *n == "*" || (valid_dotted(n) && !n.contains('.')))
            .map(str::to_string)
            .collect();
        out.push((level, dotted.to_string(), names));
    }
    out
}

/// The facts of one Python file, from its text (the first [`MAX_FACT_BYTES`]).
pub fn module_facts(text: &str) -> ModuleFacts {
    let text = match text.get(..MAX_FACT_BYTES) {
        Some(t) => t,
        None => {
            let mut end = MAX_FACT_BYTES.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            &text[..end]
        }
    };
    let mut facts = ModuleFacts::default();
    // What to look for on each line is decided once for the file: most files name no entry point and load
    // nothing by a run-time name, and these scans of every line are most of the cost of the repository model.
    let scan = LineScan {
        entry: ENTRY.iter().any(|e| text.contains(e)),
        dynamic: DYNAMIC.iter().any(|d| text.contains(d)),
    };
    // Module-level string constants that name modules (`_BASE = "app.handlers.tools"`), for formatted names
    // that start with one (`import_module(f"{_BASE}.{name}.emission")`).
    let constants = if scan.dynamic {
        module_constants(text)
    } else {
        HashMap::new()
    };
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if facts.imports.len() >= MAX_IMPORTS_PER_FILE {
            break;
        }
        if t.starts_with("import ") {
            facts.imports.extend(import_statement(t, &mut lines));
        } else if t.starts_with("from ") {
            let found = import_statement(t, &mut lines);
            if found.is_empty() {
                continue;
            }
            facts.imports.extend(found);
        }
        // `import_module(` / `__import__(` with its argument on the next line: read them as one.
        let joined;
        let t = if scan.dynamic
            && (t.ends_with("import_module(") || t.ends_with("__import__("))
            && let Some(next) = lines.next()
        {
            joined = format!("{t}{}", next.trim_start());
            joined.as_str()
        } else {
            t
        };
        if scan.entry || scan.dynamic {
            entry_and_dynamic(t, &constants, &mut facts);
        }
        if t.contains(['"', '\'']) {
            strings_in(t, &mut facts);
        }
    }
    facts.mentions_cookies = mentions_cookies(text);
    if text.contains("down_revision") {
        alembic_revisions(text, &mut facts);
    }
    if text.contains("HTTPException") && text.contains("exception_handler") {
        http_error_handlers(text, &mut facts);
    }
    facts.orm_criteria = super::tenancy::orm_criteria(text);
    facts.class_sessions = super::sessions::class_sessions(text);
    facts.lists_files = scan.dynamic
        && [
            "listdir(",
            "iterdir(",
            "scandir(",
            "os.walk(",
            "glob(",
            "walk_packages(",
            "iter_modules(",
            "entry_points(",
        ]
        .iter()
        .any(|w| text.contains(w));
    facts.dotted_strings.sort();
    facts.dotted_strings.dedup();
    // A loader that lists its own package's modules and imports each one by name: decidable after all, when
    // the run-time names can only come from that listing (no file locations, no names from elsewhere).
    if facts.dynamic_unknown
        && !text.contains("spec_from_file_location(")
        && !text.contains("load_module(")
        && (text.contains("walk_packages(") || text.contains("iter_modules("))
        && (text.contains("__path__") || text.contains("__file__"))
    {
        facts.dynamic_unknown = false;
        facts.loads_own_package = true;
    }
    facts
}

/// The `HTTPException` handlers a module registers, and the functions it defines that replace a status-500 error's
/// detail with a fixed text (see [`ModuleFacts::detail_sanitizers`]). Read as text, bounded by the file's size.
fn http_error_handlers(text: &str, facts: &mut ModuleFacts) {
    let is_http = |arg: &str| {
        let a = arg.trim();
        a == "HTTPException" || a.ends_with(".HTTPException") || a == "StarletteHTTPException"
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut decorated_http = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        // `app.add_exception_handler(HTTPException, handler)`
        if let Some(at) = t.find("add_exception_handler(") {
            let args = &t[at + "add_exception_handler(".len()..];
            let args = args.split(')').next().unwrap_or("");
            let mut parts = args.split(',');
            if let (Some(exc), Some(handler)) = (parts.next(), parts.next())
                && is_http(exc)
            {
                let name = handler.trim();
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    facts.http_error_handlers.push(name.to_string());
                }
            }
            continue;
        }
        // `@app.exception_handler(HTTPException)` above a `def`
        if t.starts_with('@')
            && let Some(at) = t.find("exception_handler(")
        {
            let arg = t[at + "exception_handler(".len()..]
                .split(')')
                .next()
                .unwrap_or("");
            decorated_http |= is_http(arg);
            continue;
        }
        let def = t
            .strip_prefix("async def ")
            .or_else(|| t.strip_prefix("def "));
        let Some(rest) = def else {
            if !t.starts_with('@') && !t.is_empty() {
                decorated_http = false;
            }
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if std::mem::take(&mut decorated_http) && !name.is_empty() {
            facts.http_error_handlers.push(name.clone());
        }
        // The body: the lines indented deeper than the `def` (bounded).
        let indent = line.len() - t.len();
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take(400)
            .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
            .copied()
            .collect();
        let compares_500 = body.iter().any(|l| {
            l.contains("status_code")
                && (l.contains("== 500") || l.contains(">= 500") || l.contains("HTTP_500"))
        });
        let fixed_detail = body.iter().any(|l| {
            let l = l.trim_start();
            ["detail", "message", "msg"].iter().any(|v| {
                l.strip_prefix(v)
                    .and_then(|r| r.trim_start().strip_prefix('='))
                    .filter(|r| !r.starts_with('='))
                    .map(str::trim_start)
                    .is_some_and(|r| {
                        r.starts_with(['"', '\''])
                            || (r.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                                && r.chars()
                                    .take_while(|c| !c.is_whitespace() && *c != '#')
                                    .all(|c| {
                                        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
                                    }))
                    })
            })
        });
        if compares_500 && fixed_detail && !name.is_empty() {
            facts.detail_sanitizers.push(name);
        }
    }
}

/// `revision = "ab12"` and `down_revision = "cd34"` (or a tuple, annotated or not) at the top level of an Alembic
/// revision file.
fn alembic_revisions(text: &str, facts: &mut ModuleFacts) {
    let ids = |value: &str| -> Vec<String> {
        value
            .split(['"', '\''])
            .skip(1)
            .step_by(2)
            .filter(|id| {
                !id.is_empty()
                    && id.len() < 100
                    && id.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
            .map(str::to_string)
            .collect()
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        // `revision: str = "x"`, `down_revision: Union[str, None] = "y"`.
        let key = key.split(':').next().unwrap_or("").trim_end();
        match key {
            "revision" if facts.alembic_revision.is_none() => {
                facts.alembic_revision = ids(value).into_iter().next();
            }
            "down_revision" => facts.alembic_down_revisions.extend(ids(value)),
            _ => {}
        }
    }
}

/// `cookie`/`Cookie`/`COOKIE` anywhere in the text.
fn mentions_cookies(text: &str) -> bool {
    let bytes = text.as_bytes();
    ["ookie", "OOKIE"].iter().any(|w| {
        text.match_indices(w)
            .any(|(at, _)| at > 0 && matches!(bytes[at - 1], b'c' | b'C'))
    })
}

fn valid_dotted(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        })
}

/// Dotted strings naming modules of the tree that make a file's own strings a registry of what it loads.
const REGISTRY_MIN_MODULES: usize = 3;

/// Entry-point constructions and dynamic imports on one line.
/// Calls that make a module an entry point of the service.
const ENTRY: &[&str] = &[
    "FastAPI(",
    "Starlette(",
    "Celery(",
    "Quart(",
    "uvicorn.run(",
    "Flask(__name__",
];

/// Calls that import or load modules by a name known only at run time.
const DYNAMIC: &[&str] = &[
    "import_module(",
    "__import__(",
    "spec_from_file_location(",
    "load_module(",
];

/// Which per-line scans a file needs (see [`module_facts`]).
struct LineScan {
    entry: bool,
    dynamic: bool,
}

/// Most module-level constants read per file.
const MAX_CONSTANTS: usize = 1_000;

/// `NAME = "dotted.name"` (or `NAME: str = …`) at the top level of a module.
fn module_constants(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if out.len() >= MAX_CONSTANTS {
            break;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((left, right)) = line.split_once('=') else {
            continue;
        };
        let name = left.split(':').next().unwrap_or("").trim();
        let value = right.trim().trim_end_matches(';');
        let unquoted = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
        if let Some(v) = unquoted
            && !name.is_empty()
            && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            && valid_dotted(v)
        {
            out.insert(name.to_string(), v.to_string());
        }
    }
    out
}

fn entry_and_dynamic(t: &str, constants: &HashMap<String, String>, facts: &mut ModuleFacts) {
    if !t.starts_with('#') && ENTRY.iter().any(|e| t.contains(e)) && !t.contains("class ") {
        facts.is_entry = true;
    }
    for call in ["import_module(", "__import__("] {
        let Some(at) = t.find(call) else { continue };
        let arg = t[at + call.len()..].trim_start();
        let quoted = arg.starts_with(['"', '\'']);
        let formatted = arg.starts_with("f\"") || arg.starts_with("f'");
        if quoted {
            // A literal name: `strings_in` sees it as a dotted string.
            continue;
        }
        if formatted {
            let body = &arg[2..];
            // A leading `{CONSTANT}` naming a module is part of the known prefix.
            let (known, body) = match body
                .strip_prefix('{')
                .and_then(|b| b.split_once('}'))
                .and_then(|(name, rest)| constants.get(name.trim()).map(|c| (c.as_str(), rest)))
            {
                Some((c, rest)) => (c, rest),
                None => ("", body),
            };
            let rest: String = body
                .chars()
                .take_while(|c| *c != '{' && *c != '"' && *c != '\'')
                .collect();
            let prefix = format!("{known}{rest}");
            let prefix = prefix.trim_end_matches('.');
            if valid_dotted(prefix) {
                facts.dynamic_prefixes.push(prefix.to_string());
                continue;
            }
        }
        // A relative name with an explicit package, `import_module("." + x, package=…)`, or a variable.
        facts.dynamic_unknown = true;
    }
    if t.contains("spec_from_file_location(") || t.contains("load_module(") {
        facts.dynamic_unknown = true;
        facts.loads_by_location = true;
    }
}

/// Dotted names (two parts or more) in string literals on one line.
fn strings_in(t: &str, facts: &mut ModuleFacts) {
    if facts.dotted_strings.len() >= MAX_IMPORTS_PER_FILE {
        return;
    }
    for quote in ['"', '\''] {
        let mut parts = t.split(quote);
        parts.next();
        while let Some(inside) = parts.next() {
            let name = inside.split_once(':').map_or(inside, |(m, _)| m);
            if name.contains('.') && name.len() < 200 && valid_dotted(name) {
                facts.dotted_strings.push(name.to_string());
            }
            // `"superagi/tools"`, `"./plugins/"`: identifier segments only (no file names, no URLs).
            // A single segment only written as a folder (`"./plugins/"`, `"plugins/"`).
            let folder = inside.trim_start_matches("./").trim_end_matches('/');
            if (folder.contains('/') || folder.len() < inside.len())
                && folder.len() < 200
                && folder.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                })
                && facts.folder_strings.len() < MAX_IMPORTS_PER_FILE
            {
                facts.folder_strings.push(folder.to_string());
            }
            // Skip the text between this literal and the next.
            parts.next();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_statements_as_written() {
        let none = &mut std::iter::empty();
        assert_eq!(
            import_statement("import a.b, c as d  # x", none),
            vec![(0, "a.b".to_string(), vec![]), (0, "c".to_string(), vec![])]
        );
        assert_eq!(
            import_statement("from ..pkg.mod import x as y, z", none),
            vec![(
                2,
                "pkg.mod".to_string(),
                vec!["x".to_string(), "z".to_string()]
            )]
        );
        assert_eq!(
            import_statement("from app.cli.api import *", none),
            vec![(0, "app.cli.api".to_string(), vec!["*".to_string()])]
        );
        let mut more = ["    b,  # the second", "    c as d,", ")", "after = 1"].into_iter();
        assert_eq!(
            import_statement("from . import (a,", &mut more),
            vec![(1, String::new(), vec!["a".into(), "b".into(), "c".into()])]
        );
        assert_eq!(
            more.next(),
            Some("after = 1"),
            "stops at the closing parenthesis"
        );
        assert!(import_statement("from the database import rows", none).is_empty());
        assert!(import_statement("from x", none).is_empty());
    }

    #[test]
    fn a_call_from_a_module_the_service_never_runs_does_not_count() {
        let files = [
            (
                "svc/main.py",
                "app = FastAPI()\nfrom svc import history\nhistory.fetch_recent()\n",
            ),
            ("svc/__init__.py", ""),
            (
                "svc/history.py",
                "def fetch_recent():\n    return 1\n\ndef fetch_by_range(a, b):\n    time.sleep(3)\n",
            ),
            // Imported by nothing: its call of `fetch_by_range` is never made.
            (
                "svc/indexer.py",
                "from svc.history import fetch_by_range\nfetch_by_range(1, 2)\n",
            ),
        ];
        let py: BTreeMap<String, ModuleFacts> = files
            .iter()
            .map(|(p, t)| {
                (
                    p.to_string(),
                    ModuleFacts {
                        names: super::super::uses::name_facts(t),
                        ..module_facts(t)
                    },
                )
            })
            .collect();
        let r = Reach::build(&py, &[], |_| false);
        assert_eq!(r.standing("svc/indexer.py"), Standing::Unreached);
        let dead: Vec<&str> = r
            .dead_functions("svc/history.py")
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(dead, ["fetch_by_range"]);
    }

    fn build(files: &[(&str, &str)], commands: &[(&str, &str)]) -> Reach {
        let py: BTreeMap<String, ModuleFacts> = files
            .iter()
            .map(|(p, t)| (p.to_string(), module_facts(t)))
            .collect();
        let commands: Vec<(String, String)> = commands
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        Reach::build(&py, &commands, |p| p.starts_with("tests/"))
    }

    #[test]
    fn a_run_time_loader_opens_its_own_project_of_a_monorepo() {
        assert_eq!(loader_folder("backend/app/plugins.py"), Some("backend"));
        assert_eq!(
            loader_folder("packages/dbgpt-core/src/dbgpt/component.py"),
            Some("packages/dbgpt-core/src/dbgpt")
        );
        assert_eq!(
            loader_folder("packages/tools/loader.py"),
            Some("packages/tools")
        );
        assert_eq!(loader_folder("packages/loader.py"), Some("packages"));
        assert_eq!(loader_folder("loader.py"), None);
    }

    #[test]
    fn cookies_are_answered_per_application() {
        let r = build(
            &[
                (
                    "api/main.py",
                    "from fastapi import FastAPI\nfrom api import auth\napp = FastAPI()\n",
                ),
                ("api/__init__.py", ""),
                (
                    "api/auth.py",
                    "def login(response):\n    response.set_cookie('session', 'x')\n",
                ),
                (
                    "plugins/echo/main.py",
                    "from fastapi import FastAPI\nfrom plugins.echo import util\napp = FastAPI()\n",
                ),
                ("plugins/__init__.py", ""),
                ("plugins/echo/__init__.py", ""),
                (
                    "plugins/echo/util.py",
                    "def shout(x):\n    return x.upper()\n",
                ),
                (
                    "loader/main.py",
                    "import importlib\nfrom fastapi import FastAPI\napp = FastAPI()\nm = importlib.import_module(name)\n",
                ),
            ],
            &[],
        );
        assert_eq!(r.cookies, Some(true));
        assert_eq!(r.cookies_at("api/main.py"), Some(true));
        assert_eq!(r.cookies_at("plugins/echo/main.py"), Some(false));
        // Imports by run-time names: the application is not decided, the service's answer stands.
        assert_eq!(r.cookies_at("loader/main.py"), Some(true));
        assert_eq!(r.cookies_at("plugins/echo/util.py"), Some(true));
    }

    #[test]
    fn http_exception_handlers_that_replace_a_500s_detail() {
        let f = module_facts(
            "from starlette.exceptions import HTTPException as StarletteHTTPException\n\n@app.exception_handler(StarletteHTTPException)\nasync def on_http_error(request, exc):\n    if exc.status_code >= 500:\n        message = \"Internal error\"\n    return JSONResponse({\"detail\": message})\n\ndef other(request, exc):\n    detail = exc.detail\n    return detail\n",
        );
        assert_eq!(f.http_error_handlers, ["on_http_error"]);
        assert_eq!(f.detail_sanitizers, ["on_http_error"]);
        // Registered, but the detail goes through untouched: no sanitizer.
        let g = module_facts(
            "app.add_exception_handler(HTTPException, handler)\n\ndef handler(request, exc):\n    if exc.status_code == 500:\n        log(exc)\n    detail = exc.detail\n    return JSONResponse({\"detail\": detail})\n",
        );
        assert_eq!(g.http_error_handlers, ["handler"]);
        assert!(g.detail_sanitizers.is_empty());
    }

    #[test]
    fn alembic_revisions_and_what_they_build_on() {
        let f = module_facts(
            "revision = 'ab12'\ndown_revision = ('cd34', 'ef56')\nbranch_labels = None\n\ndef upgrade():\n    revision = 'not-top-level'\n",
        );
        assert_eq!(f.alembic_revision.as_deref(), Some("ab12"));
        assert_eq!(f.alembic_down_revisions, ["cd34", "ef56"]);
        let g = module_facts("revision: str = \"cd34\"\ndown_revision: Union[str, None] = None\n");
        assert_eq!(g.alembic_revision.as_deref(), Some("cd34"));
        assert!(g.alembic_down_revisions.is_empty());
        let py: BTreeMap<String, ModuleFacts> = [
            ("m/versions/ab12_new.py".to_string(), f),
            ("m/versions/cd34_old.py".to_string(), g),
        ]
        .into_iter()
        .collect();
        let r = Reach::build(&py, &[], |_| false);
        assert_eq!(r.standing("m/versions/cd34_old.py"), Standing::Applied);
        assert_eq!(r.standing("m/versions/ab12_new.py"), Standing::Service);
    }

    #[test]
    fn compose_file_inside_a_python_package_is_a_fixture() {
        let r = build(
            &[
                ("keep/__init__.py", ""),
                ("keep/providers/__init__.py", ""),
                ("keep/providers/kafka_provider/kafka.py", "import os\n"),
                (
                    "keep/api/main.py",
                    "from fastapi import FastAPI\napp = FastAPI()\n",
                ),
            ],
            &[
                (
                    "keep/providers/kafka_provider/docker-compose.yml",
                    "services: {}\n",
                ),
                ("docker-compose.yml", "services: {}\n"),
                ("deploy/compose.yaml", "services: {}\n"),
            ],
        );
        assert_eq!(
            r.standing("keep/providers/kafka_provider/docker-compose.yml"),
            Standing::PackageFixture
        );
        assert_eq!(r.standing("docker-compose.yml"), Standing::Service);
        assert_eq!(r.standing("deploy/compose.yaml"), Standing::Service);
    }

    #[test]
    fn facts_of_imports() {
        let f = module_facts(
            "import os, a.b as c\nfrom ..x.y import (\n  p,\n  q as r,  # note\n)\nfrom . import z\n    from m import n\n",
        );
        assert_eq!(
            f.imports,
            vec![
                (0, "os".into(), vec![]),
                (0, "a.b".into(), vec![]),
                (2, "x.y".into(), vec!["p".into(), "q".into()]),
                (1, "".into(), vec!["z".into()]),
                (0, "m".into(), vec!["n".into()]),
            ]
        );
        assert!(!f.is_entry);
        let g = module_facts(
            "app = FastAPI(title='x')\nmods = ['pkg.tasks.email', 'not a module']\nimport_module(f\"pkg.plugins.{n}\")\n",
        );
        assert!(g.is_entry);
        assert_eq!(g.dotted_strings, vec!["pkg.tasks.email".to_string()]);
        assert_eq!(g.dynamic_prefixes, vec!["pkg.plugins".to_string()]);
        assert!(!g.dynamic_unknown);
        assert!(module_facts("m = importlib.import_module(name)\n").dynamic_unknown);
    }

    #[test]
    fn reached_through_imports_and_parents() {
        let r = build(
            &[
                ("backend/app/__init__.py", ""),
                (
                    "backend/app/main.py",
                    "from fastapi import FastAPI\nfrom app.api import routes\napp = FastAPI()\n",
                ),
                ("backend/app/api/__init__.py", ""),
                (
                    "backend/app/api/routes.py",
                    "from ..services.chat import answer\n",
                ),
                ("backend/app/services/__init__.py", ""),
                ("backend/app/services/chat.py", "import requests\n"),
                ("backend/app/legacy/agent.py", "import requests\n"),
                (
                    "backend/alembic/versions/001_x.py",
                    "op.add_column('t', c)\n",
                ),
                (
                    "tests/test_x.py",
                    "from app.legacy.agent import x\napp = FastAPI()\n",
                ),
            ],
            &[],
        );
        assert_eq!(r.undecided, None);
        assert_eq!(r.entries, vec!["backend/app/main.py".to_string()]);
        for p in [
            "backend/app/main.py",
            "backend/app/api/routes.py",
            "backend/app/api/__init__.py",
            "backend/app/services/chat.py",
            "backend/app/services/__init__.py",
        ] {
            assert_eq!(r.standing(p), Standing::Service, "{p}");
        }
        assert_eq!(
            r.standing("backend/app/legacy/agent.py"),
            Standing::Unreached
        );
        assert_eq!(
            r.standing("backend/alembic/versions/001_x.py"),
            Standing::Service
        );
        assert_eq!(r.unreached_count(), 2, "the legacy module and the test");
    }

    #[test]
    fn a_bare_target_is_the_module_the_dockerfile_copies() {
        let dockerfile = "ARG MODULE=\"inference\"\nARG SERVICE=\"server\"\nARG APP_RELATIVE_PATH=\"${MODULE}/${SERVICE}\"\nFROM python:3.11 AS build\nCOPY ./${APP_RELATIVE_PATH}/requirements.txt .\nFROM python:3.11\nCOPY --from=build /build/lib /lib\nCOPY --chown=app:app ./${APP_RELATIVE_PATH}/main.py .\nCOPY ./shared/*.py /shared/\nCMD uvicorn main:app --host 0.0.0.0\n";
        let sources = copied_sources("docker/Dockerfile.server", dockerfile);
        assert!(
            sources.contains(&"inference/server/main.py".to_string()),
            "{sources:?}"
        );
        assert!(sources.contains(&"shared".to_string()), "{sources:?}");
        assert!(
            !sources
                .iter()
                .any(|s| s.contains('$') || s.starts_with("/")),
            "{sources:?}"
        );
        let found = vec![
            "data/scraper/main.py",
            "inference/safety/main.py",
            "inference/server/main.py",
        ];
        assert_eq!(
            narrow_targets(found.clone(), &sources, |_| true),
            ["inference/server/main.py"]
        );
        // Nothing copied: the modules that build an application; none: all of them.
        assert_eq!(
            narrow_targets(found.clone(), &[], |p| p.starts_with("inference/")),
            ["inference/safety/main.py", "inference/server/main.py"]
        );
        assert_eq!(narrow_targets(found.clone(), &[], |_| false), found);
        assert!(copied_sources("deploy/start.sh", dockerfile).is_empty());
    }

    #[test]
    fn commands_strings_and_dynamic_imports() {
        let files = [
            ("pkg/__init__.py", ""),
            (
                "pkg/worker.py",
                "app = make()\napp.conf.include = ['pkg.tasks']\n",
            ),
            ("pkg/tasks.py", "import time\n"),
            ("pkg/plugins/__init__.py", ""),
            ("pkg/plugins/a.py", ""),
            (
                "pkg/loader.py",
                "importlib.import_module(f'pkg.plugins.{x}')\n",
            ),
            ("pkg/api.py", "from pkg import loader\n"),
            ("pkg/orphan.py", ""),
        ];
        let r = build(
            &files,
            &[
                (
                    "Dockerfile",
                    "CMD [\"uvicorn\", \"pkg.api:app\", \"--port\", \"80\"]\n",
                ),
                (
                    "docker-compose.yml",
                    "    command: celery -A pkg.worker worker\n",
                ),
            ],
        );
        assert_eq!(r.standing("pkg/tasks.py"), Standing::Service);
        assert_eq!(r.standing("pkg/plugins/a.py"), Standing::Service);
        assert_eq!(r.standing("pkg/orphan.py"), Standing::Unreached);
        // Build and boot steps are not the service: a Dockerfile `RUN`, and a shell script's foreground commands
        // before the line that starts the server; a command sent to the background is a process of the service.
        let r = build(
            &[
                ("app/main.py", ""),
                ("tools/fetch_models.py", "import requests\n"),
                ("boot/setup_tools.py", "import requests\n"),
                ("jobs/poller.py", "import requests\n"),
            ],
            &[
                (
                    "Dockerfile",
                    "FROM python:3.12\nRUN python tools/fetch_models.py && \\\n    pip install x\nCMD [\"uvicorn\", \\\n     \"app.main:app\"]\n",
                ),
                (
                    "entrypoint.sh",
                    "#!/bin/bash\npython boot/setup_tools.py\npython jobs/poller.py &\nalembic upgrade head\nexec uvicorn app.main:app --port 8000\n",
                ),
            ],
        );
        assert_eq!(r.standing("app/main.py"), Standing::Service);
        assert_eq!(r.standing("jobs/poller.py"), Standing::Service);
        assert_eq!(r.standing("tools/fetch_models.py"), Standing::Unreached);
        assert_eq!(r.standing("boot/setup_tools.py"), Standing::Unreached);
        // A script that starts no server runs its commands as the processes they are.
        let r = build(
            &[("app/main.py", "app = FastAPI()\n"), ("jobs/sync.py", "")],
            &[("run_sync.sh", "#!/bin/sh\npython jobs/sync.py\n")],
        );
        assert_eq!(r.standing("jobs/sync.py"), Standing::Service);
        // A supervisord program is an entry point too.
        let r = build(
            &[
                ("backend/app/main.py", "app = FastAPI()\n"),
                ("backend/app/bot/listener.py", "import requests\n"),
                ("backend/app/legacy.py", ""),
            ],
            &[(
                "backend/supervisord.conf",
                "[program:slack_bot]\ncommand=python app/bot/listener.py\n",
            )],
        );
        assert_eq!(r.standing("backend/app/bot/listener.py"), Standing::Service);
        assert_eq!(r.standing("backend/app/legacy.py"), Standing::Unreached);
        // Without the commands, no entry point: nothing is called unreached.
        let r = build(&files, &[]);
        assert_eq!(r.undecided.as_deref(), Some("no entry point found"));
        assert_eq!(r.standing("pkg/orphan.py"), Standing::Service);
        // A module named at run time from a file listing, at the top of the tree: undecided.
        let r = build(
            &[
                ("main.py", "app = FastAPI()\nimport plug\n"),
                (
                    "plug.py",
                    "for f in os.listdir(here):\n    m = importlib.import_module(f[:-3])\n",
                ),
                ("other.py", ""),
            ],
            &[],
        );
        assert!(r.undecided.is_some());
        assert_eq!(r.standing("other.py"), Standing::Service);
        // A name that can only come from a literal (no listing, no file location): the modules that string
        // literals of the service name are reached (here one in a settings default), nothing else.
        let r = build(
            &[
                ("main.py", "app = FastAPI()\nimport plug\nimport settings\n"),
                ("plug.py", "m = importlib.import_module(settings.BACKEND)\n"),
                (
                    "settings.py",
                    "BACKEND = os.getenv(\"BACKEND\", \"backends.redis_store\")\n",
                ),
                ("backends/__init__.py", ""),
                ("backends/redis_store.py", ""),
                ("backends/memcache_store.py", ""),
                ("other.py", ""),
            ],
            &[(
                "docker-compose.yml",
                "    environment:\n      BACKEND: backends.memcache_store\n",
            )],
        );
        assert_eq!(r.undecided, None);
        assert!(r.open_folders.is_empty());
        assert_eq!(r.standing("backends/redis_store.py"), Standing::Service);
        // Named only in a deployment file's environment: reached too.
        assert_eq!(r.standing("backends/memcache_store.py"), Standing::Service);
        assert_eq!(r.standing("other.py"), Standing::Unreached);
        // A run-time import from a listing inside a top-level folder: every module of that folder counts as
        // reached, and the rest of the tree is still decided by the imports (a benchmark harness beside it).
        let r = build(
            &[
                (
                    "svc/main.py",
                    "app = FastAPI()
from svc import plug
",
                ),
                ("svc/__init__.py", ""),
                (
                    "svc/plug.py",
                    "for p in Path(here).glob('*.py'):
    m = importlib.import_module(p.stem)
",
                ),
                (
                    "svc/tools/web.py",
                    "import requests
",
                ),
                (
                    "evaluation/harness.py",
                    "import requests
",
                ),
            ],
            &[],
        );
        assert_eq!(r.undecided, None);
        assert_eq!(r.open_folders, ["svc"]);
        assert_eq!(r.standing("svc/tools/web.py"), Standing::Service);
        assert_eq!(r.standing("evaluation/harness.py"), Standing::Unreached);
        // A factory whose run-time names are its own registry of `module.Class` strings: those modules are
        // reached, and the folder is not opened (an SDK client beside them stays unreached).
        let factory = "import importlib\n\ndef load_class(path):\n    module, name = path.rsplit('.', 1)\n    return getattr(importlib.import_module(module), name)\n\nPROVIDERS = {\n    'openai': 'svc.llms.openai.OpenAILLM',\n    'ollama': 'svc.llms.ollama.OllamaLLM',\n    'groq': 'svc.llms.groq.GroqLLM',\n}\n";
        let files = [
            ("svc/main.py", "app = FastAPI()\nfrom svc import factory\n"),
            ("svc/__init__.py", ""),
            ("svc/factory.py", factory),
            ("svc/llms/__init__.py", ""),
            ("svc/llms/openai.py", ""),
            ("svc/llms/ollama.py", ""),
            ("svc/llms/groq.py", ""),
            ("svc/client/main.py", "import requests\n"),
        ];
        let r = build(&files, &[]);
        assert!(r.open_folders.is_empty(), "{:?}", r.open_folders);
        assert_eq!(r.standing("svc/llms/groq.py"), Standing::Service);
        assert_eq!(r.standing("svc/client/main.py"), Standing::Unreached);
        // The same strings beside a loader of file locations decide nothing: the folder is opened.
        let by_location =
            format!("{factory}spec = importlib.util.spec_from_file_location('plugin', path)\n");
        let mut files = files.to_vec();
        files[2] = ("svc/factory.py", by_location.as_str());
        let r = build(&files, &[]);
        assert_eq!(r.open_folders, ["svc"]);
        assert_eq!(r.standing("svc/client/main.py"), Standing::Service);
        // A loader by file location that names the folder it loads from opens only that folder (the tree's
        // folder, or one ending with the name when the service runs from a subfolder).
        let named = "import importlib.util\nimport os\n\nTOOL_PATHS = [\"tools/external\", \"./plugins/\"]\n\ndef load(path):\n    spec = importlib.util.spec_from_file_location('tool', path)\n";
        let files = [
            ("svc/main.py", "app = FastAPI()\nfrom svc import loader\n"),
            ("svc/__init__.py", ""),
            ("svc/loader.py", named),
            ("svc/tools/external/web.py", "import requests\n"),
            ("svc/plugins/mail.py", "import smtplib\n"),
            ("svc/boot_script.py", "import requests\n"),
        ];
        let r = build(&files, &[]);
        assert_eq!(r.open_folders, ["svc/tools/external", "svc/plugins"]);
        assert_eq!(r.standing("svc/tools/external/web.py"), Standing::Service);
        assert_eq!(r.standing("svc/plugins/mail.py"), Standing::Service);
        assert_eq!(r.standing("svc/boot_script.py"), Standing::Unreached);
        // The argument of `__import__(` on the next line is read with it: a formatted prefix, not a variable.
        let f = module_facts(
            "module = __import__(\n    f\"svc.configs.stores.{provider}\",\n    fromlist=[name],\n)\n",
        );
        assert!(!f.dynamic_unknown);
        assert_eq!(f.dynamic_prefixes, ["svc.configs.stores"]);
        // A formatted name that starts with a module-level constant naming a package.
        let f = module_facts(
            "import importlib\n\n_BASE = \"svc.handlers.tools\"\n\ndef load(name):\n    return importlib.import_module(\n        f\"{_BASE}.{name}.emission\"\n    )\n",
        );
        assert!(!f.dynamic_unknown);
        assert_eq!(f.dynamic_prefixes, ["svc.handlers.tools"]);
        // A constant that is not a dotted name, or a local variable, decides nothing.
        let f = module_facts(
            "_BASE = \"not a module\"\nm = importlib.import_module(f\"{_BASE}.x\")\nn = importlib.import_module(f\"{base}.x\")\n",
        );
        assert!(f.dynamic_unknown);
        // A loader of its own package's modules (AgentGPT's models package): those modules are reached, and
        // reachability is still decided for the rest.
        let loader = "import pkgutil\nfrom pathlib import Path\n\ndef load_all():\n    package_dir = Path(__file__).parent\n    for m in pkgutil.walk_packages(path=[str(package_dir)], prefix='app.models.'):\n        __import__(m.name)\n";
        let r = build(
            &[
                (
                    "main.py",
                    "app = FastAPI()\nfrom app.models import load_all\n",
                ),
                ("app/__init__.py", ""),
                ("app/models/__init__.py", loader),
                ("app/models/chat.py", ""),
                ("app/legacy.py", ""),
            ],
            &[],
        );
        assert_eq!(r.undecided, None);
        assert_eq!(r.standing("app/models/chat.py"), Standing::Service);
        assert_eq!(r.standing("app/legacy.py"), Standing::Unreached);
        // The same listing next to a file-location import stays undecided.
        let f = module_facts(&format!("{loader}spec_from_file_location('x', p)\n"));
        assert!(f.dynamic_unknown && !f.loads_own_package);
    }

    #[test]
    fn shadowed_module() {
        let r = build(
            &[
                ("app/tools.py", "import requests\n"),
                ("app/tools/__init__.py", ""),
                ("app/main.py", "app = FastAPI()\nfrom app import tools\n"),
                ("app/__init__.py", ""),
            ],
            &[],
        );
        assert_eq!(r.standing("app/tools.py"), Standing::Shadowed);
        assert_eq!(r.standing("app/tools/__init__.py"), Standing::Service);
        // Shadowed even when nothing could be decided about reachability.
        let r = build(&[("x.py", ""), ("x/__init__.py", "")], &[]);
        assert_eq!(r.standing("x.py"), Standing::Shadowed);
    }

    #[test]
    fn command_target_shapes() {
        let t = command_targets(
            "CMD [\"gunicorn\", \"-k\", \"uvicorn.workers.UvicornWorker\", \"app.main:app\"]\n\
             web: python -m pkg.server --port 8000\n\
             python scripts/run.py\n\
             arq app.worker.WorkerSettings\n\
             serve = \"pkg.cli:main\"\n\
             fastapi run app/main.py\n",
        );
        for want in [
            "app.main",
            "pkg.server",
            "scripts/run.py",
            "app.worker",
            "pkg.cli",
            "app/main.py",
        ] {
            assert!(t.contains(&want.to_string()), "{want} in {t:?}");
        }
        assert!(!t.iter().any(|x| x.starts_with('-')));
    }
}
