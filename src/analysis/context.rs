//! What a check may know beyond the file it analyses: which files the change touches, which paths the
//! repository has at the revision under review, and the contents of the few files rules asked for.
//!
//! Rules say which other files they read ([`super::checks::Check::needs`]); the caller (local git today, the
//! GitHub API later) fetches only those.

use super::language::{self, FileKind};
use super::nodes::PyNode;
use super::nodes::{NodeIndex, Nodes};
use super::semantic::dockerfile::{self, Dockerfile};
use super::semantic::yaml::{self, YamlFile};
use crate::diff::LineSet;
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::OnceLock;

/// The repository around the files being analysed.
#[derive(Debug, Default, Clone)]
pub struct RepoContext {
    /// Paths the change adds or modifies (in `--all-lines` mode: every analysed file).
    pub changed: BTreeSet<String>,
    /// Every path of the tree under review, sorted; empty when unknown.
    pub paths: Vec<String>,
    /// Contents of the files some check needs, by path.
    pub files: HashMap<String, String>,
    /// Names of reverse proxies the repository configures (`infra.reverse_proxies`), besides the built-in ones
    /// (caddy, nginx, traefik, envoy, haproxy, …); lower-case.
    pub reverse_proxies: Vec<String>,
    /// The migration folders the tree's `alembic.ini` files configure, worked out on first use from
    /// [`RepoContext::files`]; leave it to its default.
    pub alembic_dirs: OnceLock<Vec<String>>,
    /// [`RepoContext::has_alembic_tree`], worked out on first use (every model file asks); leave it to its default.
    pub alembic_tree: OnceLock<Option<bool>>,
    /// [`RepoContext::changes_a_migration`], worked out on first use; leave it to its default.
    pub migration_changed: OnceLock<bool>,
    /// More tenant/owner column names from the repository configuration (`tenancy.columns`).
    pub tenant_columns: Vec<String>,
    /// [`RepoContext::tenant_models`], worked out on first use; leave it to its default.
    pub tenant_index: OnceLock<super::semantic::tenancy::TenantModels>,
    /// [`RepoContext::id_loaders`], worked out on first use; leave it to its default.
    pub loader_index: OnceLock<super::semantic::loaders::IdLoaders>,
    /// [`RepoContext::healthchecked_dockerfiles`], worked out on first use; leave it to its default.
    pub healthchecked: OnceLock<std::collections::HashSet<String>>,
    /// [`RepoContext::app_wide_rate_limit`], worked out on first use; leave it to its default.
    pub rate_limited: OnceLock<bool>,
    /// [`RepoContext::limited_services`], worked out on first use; leave it to its default.
    pub limited: OnceLock<Vec<(String, std::collections::HashSet<String>)>>,
    /// [`RepoContext::orm_criteria`] without a repository model, worked out on first use; leave it to its default.
    pub orm_index: OnceLock<Vec<super::semantic::tenancy::OrmCriterion>>,
    /// The classes of the Python files at hand, for [`RepoContext::session_attrs`] without a repository model,
    /// read on first use; leave it to its default.
    pub session_index: OnceLock<Vec<super::semantic::sessions::ClassSessions>>,
    /// Which Python modules the service's entry points reach (the repository model); `None` when it was not
    /// built (then every module is judged as the service).
    pub reach: Option<std::sync::Arc<super::semantic::reach::Reach>>,
}

impl RepoContext {
    /// Does the tree under review have this path? Unknown trees answer `None`.
    pub fn exists(&self, path: &str) -> Option<bool> {
        if self.paths.is_empty() {
            return None;
        }
        Some(
            self.paths
                .binary_search_by(|p| p.as_str().cmp(path))
                .is_ok(),
        )
    }

    /// How a Python module stands with the service, by the repository model (always `Service` without one).
    pub fn standing(&self, path: &str) -> super::semantic::reach::Standing {
        self.reach
            .as_ref()
            .map_or(super::semantic::reach::Standing::Service, |r| {
                r.standing(path)
            })
    }

    /// A fact of the repository model (`None`: no model, or it cannot tell).
    pub fn fact(&self, fact: crate::analysis::rules::RepoFact, path: &str) -> Option<bool> {
        let reach = self.reach.as_ref()?;
        match fact {
            crate::analysis::rules::RepoFact::Cookies => reach.cookies_at(path),
            crate::analysis::rules::RepoFact::Http500DetailReplaced => {
                reach.http_500_detail_replaced
            }
        }
    }

    /// The texts of the Python files at hand, by path (the same order every run).
    fn python_texts(&self) -> impl Iterator<Item = &str> {
        let mut python: Vec<(&String, &String)> = self
            .files
            .iter()
            .filter(|(p, _)| p.ends_with(".py"))
            .collect();
        python.sort();
        python.into_iter().map(|(_, text)| text.as_str())
    }

    /// Criteria the service adds to every ORM statement (`do_orm_execute` listeners): the repository model's,
    /// read from every module of the service; without a model, those of the Python files at hand.
    pub fn orm_criteria(&self) -> &[super::semantic::tenancy::OrmCriterion] {
        match &self.reach {
            Some(r) => r.orm_criteria.as_slice(),
            None => self.orm_index.get_or_init(|| {
                self.python_texts()
                    .flat_map(super::semantic::tenancy::orm_criteria)
                    .collect()
            }),
        }
    }

    /// The attributes of class `class` (and of its bases) that hold a synchronous SQLAlchemy session: the
    /// repository model's answer, read from every module; without a model, from `own` (the classes of the file
    /// under analysis) and the Python files at hand.
    pub fn session_attrs(
        &self,
        own: &[super::semantic::sessions::ClassSessions],
        class: &str,
    ) -> Vec<String> {
        use super::semantic::sessions::{class_sessions, inherited_session_attrs};
        if let Some(r) = &self.reach {
            return r.session_attrs.get(class).cloned().unwrap_or_default();
        }
        let others = self
            .session_index
            .get_or_init(|| self.python_texts().flat_map(class_sessions).collect());
        inherited_session_attrs(own.iter().chain(others))
            .remove(class)
            .unwrap_or_default()
    }

    /// The functions of a Python module that nothing in the service calls (the repository model; none without one):
    /// `(name, 1-based line of the def)`.
    pub fn dead_functions(&self, path: &str) -> &[(String, usize)] {
        self.reach.as_ref().map_or(&[], |r| r.dead_functions(path))
    }

    /// Functions of `path` that only start-up or shutdown hooks call (the repository model's; none without it).
    pub fn startup_only_functions(&self, path: &str) -> &[(String, usize)] {
        self.reach
            .as_ref()
            .map_or(&[], |r| r.startup_only_functions(path))
    }

    /// The text of a file a check asked for.
    pub fn read(&self, path: &str) -> Option<&str> {
        self.files.get(path).map(String::as_str)
    }

    /// A file's kind with the repository in view: a Python file under `versions/` is an Alembic migration
    /// only when the folder above `versions/` has an `env.py` (when the tree is unknown, the folder name
    /// decides, as [`language::detect`] does).
    ///
    /// A Python file directly in a folder an `alembic.ini` of the tree configures (`script_location` + `/versions`,
    /// or `version_locations`) is a migration whatever the folder is called; the `alembic.ini` files must be among
    /// [`RepoContext::files`] (the Alembic checks ask for them).
    pub fn kind_of(&self, path: &str, text: Option<&str>) -> Option<FileKind> {
        let kind = language::detect(path, text)?;
        if matches!(kind, FileKind::Python | FileKind::Alembic) {
            let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
            if self.alembic_version_dirs().iter().any(|d| d == dir) {
                return Some(FileKind::Alembic);
            }
        }
        if kind == FileKind::Alembic && self.exists(&alembic_env_path(path)) == Some(false) {
            return Some(FileKind::Python);
        }
        Some(kind)
    }

    /// The migration folders (repository-relative) that the `alembic.ini` files among [`RepoContext::files`]
    /// configure.
    pub fn alembic_version_dirs(&self) -> &[String] {
        self.alembic_dirs.get_or_init(|| {
            let mut dirs: Vec<String> = self
                .files
                .iter()
                .filter(|(p, _)| p.rsplit('/').next() == Some("alembic.ini"))
                .flat_map(|(p, text)| alembic_ini_version_dirs(p, text))
                .collect();
            dirs.sort();
            dirs.dedup();
            dirs
        })
    }

    /// Does the tree have an Alembic migrations folder (a `versions/` folder beside an `env.py`)? `None`
    /// when the tree is unknown.
    pub fn has_alembic_tree(&self) -> Option<bool> {
        *self.alembic_tree.get_or_init(|| {
            if self.paths.is_empty() {
                return None;
            }
            Some(
                self.paths
                    .iter()
                    .any(|p| self.kind_of(p, None) == Some(FileKind::Alembic)),
            )
        })
    }

    /// The ORM models of the model files among [`RepoContext::files`] that carry a tenant or owner column.
    pub fn tenant_models(&self) -> &super::semantic::tenancy::TenantModels {
        self.tenant_index.get_or_init(|| {
            use super::semantic::tenancy::{TenantModels, model_file_texts};
            TenantModels::build(model_file_texts(&self.files), &self.tenant_columns)
        })
    }

    /// The data-access functions among [`RepoContext::files`] that load a scoped model by an id alone.
    /// The Dockerfiles a production Compose service builds and gives a health check (read once per audit, not once
    /// per Dockerfile).
    pub fn healthchecked_dockerfiles(&self) -> &std::collections::HashSet<String> {
        self.healthchecked
            .get_or_init(|| super::semantic::yaml::compose::healthchecked_dockerfiles(&self.files))
    }

    /// The Compose files (not development variants) and the services each gives memory/CPU limits (read once per
    /// audit).
    pub fn limited_services(&self) -> &[(String, std::collections::HashSet<String>)] {
        self.limited
            .get_or_init(|| super::semantic::yaml::compose::limited_services(&self.files))
    }

    /// Is `service` given limits by another Compose file of the folder of `compose_path` (an overlay such as
    /// `docker-compose.resources.yml`)?
    pub fn limited_by_overlay(&self, compose_path: &str, service: &str) -> bool {
        let dir = compose_path.rsplit_once('/').map_or("", |(d, _)| d);
        self.limited_services().iter().any(|(path, names)| {
            path != compose_path
                && path.rsplit_once('/').map_or("", |(d, _)| d) == dir
                && names.contains(service)
        })
    }

    /// Does the application add a rate-limiting middleware for every route (read once per audit)?
    pub fn app_wide_rate_limit(&self) -> bool {
        *self
            .rate_limited
            .get_or_init(|| super::semantic::ratelimit::app_wide_rate_limit(&self.files))
    }

    pub fn id_loaders(&self) -> &super::semantic::loaders::IdLoaders {
        self.loader_index.get_or_init(|| {
            use super::semantic::loaders::{IdLoaders, ownership_file_texts};
            // Data-access modules and the model files (DAO classmethods often live on the model), each read once.
            let loaders = IdLoaders::build(ownership_file_texts(&self.files), self.tenant_models());
            tracing::debug!(
                loaders = loaders.len(),
                "data-access functions that load a scoped model by an id alone"
            );
            loaders
        })
    }

    /// Does the change add or modify an Alembic migration?
    pub fn changes_a_migration(&self) -> bool {
        *self.migration_changed.get_or_init(|| {
            self.changed
                .iter()
                .any(|p| self.kind_of(p, None) == Some(FileKind::Alembic))
        })
    }

    /// Does a service name, image or label name one of the repository's configured reverse proxies? A name
    /// counts where it stands as a word: at the start or after `/ _ - . : @` or a blank, and at the end or before
    /// one of them (`myproxy`, `myproxy-eu`, `registry.local/team/myproxy:1.4`, not `notmyproxyd`).
    pub fn is_configured_proxy(&self, text: &str) -> bool {
        let lower = text.to_ascii_lowercase();
        let sep = |c: char| matches!(c, '/' | '_' | '-' | '.' | ':' | '@') || c.is_whitespace();
        self.reverse_proxies.iter().any(|name| {
            !name.is_empty()
                && lower.match_indices(name.as_str()).any(|(at, m)| {
                    let before = lower[..at].chars().next_back();
                    let after = lower[at + m.len()..].chars().next();
                    before.is_none_or(sep) && after.is_none_or(sep)
                })
        })
    }

    /// Paths of the tree matching a glob set.
    pub fn matching<'a>(&'a self, globs: &'a GlobSet) -> impl Iterator<Item = &'a str> + 'a {
        self.paths
            .iter()
            .map(String::as_str)
            .filter(move |p| globs.is_match(p))
    }
}

/// Build one glob set from the `needs` of several checks; bad globs are a programming error reported as such.
pub fn needs_globset(globs: &[&str]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        b.add(Glob::new(g)?);
    }
    b.build()
}

/// The folders of migration scripts an `alembic.ini` at `ini_path` configures: for `[alembic]` and every other
/// section naming a `script_location` (the configurations `alembic -n NAME` selects; `[DEFAULT]` values are
/// inherited), each of `version_locations`, else `script_location` + `/versions`. Paths are resolved from the file's
/// folder (`%(here)s` is that folder, as for Alembic run beside its ini file); package locations
/// (`myapp:migrations`), other interpolations and paths that leave the repository are skipped.
pub fn alembic_ini_version_dirs(ini_path: &str, text: &str) -> Vec<String> {
    let here = ini_path.rsplit_once('/').map_or("", |(d, _)| d);
    // section → key → value, in file order
    let mut sections: Vec<(String, HashMap<String, String>)> = Vec::new();
    let mut last_key: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            let name = trimmed[1..trimmed.len() - 1].trim().to_string();
            sections.push((name, HashMap::new()));
            last_key = None;
            continue;
        }
        let Some((_, values)) = sections.last_mut() else {
            continue;
        };
        // An indented line continues the value above (multi-line `version_locations`).
        if line.starts_with([' ', '\t'])
            && let Some(k) = &last_key
        {
            if let Some(v) = values.get_mut(k) {
                v.push('\n');
                v.push_str(trimmed);
            }
            continue;
        }
        let Some((k, v)) = trimmed.split_once(['=', ':']) else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        // `version_path_separator = os  # Use os.pathsep.` (Alembic's own template)
        let v = v.split(" #").next().unwrap_or(v);
        values.insert(k.clone(), v.trim().to_string());
        last_key = Some(k);
    }
    let defaults: HashMap<String, String> = sections
        .iter()
        .filter(|(n, _)| n == "DEFAULT")
        .flat_map(|(_, v)| v.clone())
        .collect();
    let mut out = Vec::new();
    for (name, own) in &sections {
        if name == "DEFAULT" {
            continue;
        }
        let get = |k: &str| own.get(k).or_else(|| defaults.get(k));
        // Other sections (loggers, hooks) inherit `[DEFAULT]` too: only `[alembic]` and sections of their own
        // with a script location are Alembic configurations.
        if name != "alembic" && !own.contains_key("script_location") {
            continue;
        }
        let Some(script_location) = get("script_location") else {
            continue;
        };
        let resolve = |v: &str| -> Option<String> {
            let v = v
                .replace("%(script_location)s", script_location)
                .replace("%(here)s", "");
            if v.contains("%(") || v.contains(':') || v.contains('$') {
                return None;
            }
            // Relative to the ini file's folder (`%(here)s/…` leaves a leading `/`).
            let v = v.replace('\\', "/");
            super::semantic::paths::join_path(here, v.trim_start_matches('/'))
        };
        if let Some(locations) = get("version_locations") {
            let os = get("path_separator")
                .or_else(|| get("version_path_separator"))
                .is_some_and(|s| s == "os");
            out.extend(
                locations
                    .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || (os && c == ':'))
                    .filter(|l| !l.is_empty())
                    .filter_map(resolve),
            );
        } else if let Some(s) = resolve(script_location) {
            out.push(if s.is_empty() {
                "versions".to_string()
            } else {
                format!("{s}/versions")
            });
        }
    }
    out
}

/// `alembic/env.py` for `alembic/versions/0001_x.py`.
fn alembic_env_path(path: &str) -> String {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let parent = dir.rsplit_once('/').map_or("", |(p, _)| p);
    if parent.is_empty() {
        "env.py".to_string()
    } else {
        format!("{parent}/env.py")
    }
}

/// Where a check is running.
pub struct FileContext<'a> {
    pub path: &'a str,
    pub kind: FileKind,
    pub repo: &'a RepoContext,
    /// The lines findings are kept on (`None`: every line), for checks that report once per change.
    pub lines: Option<&'a LineSet>,
    /// The file's nodes by kind, built once for all detectors (`None` outside the engine).
    pub nodes: Option<&'a NodeIndex<'a>>,
}

impl<'a> FileContext<'a> {
    /// A context for a tree analysed on its own: no path, no repository, no index.
    pub fn detached() -> Self {
        static EMPTY: std::sync::LazyLock<RepoContext> =
            std::sync::LazyLock::new(RepoContext::default);
        FileContext {
            path: "",
            kind: FileKind::Python,
            repo: &EMPTY,
            lines: None,
            nodes: None,
        }
    }

    /// A context for one file, without a node index.
    pub fn new(path: &'a str, kind: FileKind, repo: &'a RepoContext) -> Self {
        FileContext {
            path,
            kind,
            repo,
            lines: None,
            nodes: None,
        }
    }

    /// The nodes of `kind` in `root`'s tree, in document order: from the shared index when `root` is the
    /// root it indexed, else by walking `root`.
    pub fn of_kind(&self, root: &PyNode<'a>, kind: &str) -> Nodes<'_, 'a> {
        match self.nodes {
            Some(index) if index.is_of(root) => index.of_kind(kind),
            _ => Nodes::Owned(root.dfs().filter(|n| n.kind() == kind).collect()),
        }
    }

    /// The YAML model (documents, anchors and merges resolved) of the file whose tree `root` is: parsed once per
    /// file when `root` is the indexed root (the engine parses it before any check runs, to tell whether the
    /// file can be analysed at all, and hands that parse to the index), else parsed for this call.
    pub fn yaml(&self, root: &PyNode<'_>) -> Rc<YamlFile> {
        let parse = || yaml::parse(&root.get_doc().src);
        match self.nodes {
            Some(index) if index.is_of(root) => index.memo(parse),
            _ => Rc::new(parse()),
        }
    }

    /// The Dockerfile model (stages, instructions, ARGs) of the file whose tree `root` is: parsed once per file
    /// when `root` is the indexed root, else parsed for this call.
    pub fn dockerfile(&self, root: &PyNode<'_>) -> Rc<Dockerfile> {
        let parse = || dockerfile::parse(&root.get_doc().src);
        match self.nodes {
            Some(index) if index.is_of(root) => index.memo(parse),
            _ => Rc::new(parse()),
        }
    }

    /// The file's imports (local names -> qualified names), read once per file when `root` is the indexed root.
    pub fn imports(
        &self,
        root: &PyNode<'a>,
    ) -> std::rc::Rc<super::semantic::python::imports::Imports> {
        self.memo(root, || {
            super::semantic::python::imports::Imports::of_file(self, root)
        })
    }

    /// The callee of `call` (`h.get` in `h.get(url)`) by its qualified name (`httpx.get` after `import httpx as
    /// h`): its first segment resolved through the file's imports; as written when no import binds it.
    pub fn qualified_callee(&self, root: &PyNode<'a>, call: &PyNode<'a>) -> Option<String> {
        let written = super::semantic::python::syntax::callee(call)?;
        Some(self.imports(root).resolve(&written))
    }

    /// A per-file analysis of `root`'s tree shared by several detectors: computed once per file when `root` is
    /// the indexed root, else computed for this call only.
    pub fn memo<T: std::any::Any>(
        &self,
        root: &PyNode<'a>,
        compute: impl FnOnce() -> T,
    ) -> std::rc::Rc<T> {
        match self.nodes {
            Some(index) if index.is_of(root) => index.memo(compute),
            _ => std::rc::Rc::new(compute()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exists_and_matching() {
        let ctx = RepoContext {
            paths: vec![
                ".env.example".into(),
                "app/main.py".into(),
                "migrations/versions/a1.py".into(),
            ],
            ..Default::default()
        };
        assert_eq!(ctx.exists("app/main.py"), Some(true));
        assert_eq!(ctx.exists("app/other.py"), Some(false));
        assert_eq!(RepoContext::default().exists("x"), None);
        let globs = match needs_globset(&["**/versions/*.py"]) {
            Ok(g) => g,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            ctx.matching(&globs).collect::<Vec<_>>(),
            vec!["migrations/versions/a1.py"]
        );
    }

    #[test]
    fn alembic_needs_an_env_py_beside_versions_when_the_tree_is_known() {
        let with_env = RepoContext {
            paths: vec![
                "backend/alembic/env.py".into(),
                "backend/alembic/versions/a1.py".into(),
                "lib/versions/v2.py".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            with_env.kind_of("backend/alembic/versions/a1.py", None),
            Some(FileKind::Alembic)
        );
        assert_eq!(
            with_env.kind_of("lib/versions/v2.py", None),
            Some(FileKind::Python)
        );
        assert_eq!(with_env.has_alembic_tree(), Some(true));
        let unknown = RepoContext::default();
        assert_eq!(
            unknown.kind_of("lib/versions/v2.py", None),
            Some(FileKind::Alembic)
        );
        assert_eq!(unknown.has_alembic_tree(), None);
        let without = RepoContext {
            paths: vec!["lib/versions/v2.py".into(), "app/models.py".into()],
            ..Default::default()
        };
        assert_eq!(without.has_alembic_tree(), Some(false));
        assert_eq!(alembic_env_path("versions/a.py"), "env.py");
    }

    #[test]
    fn alembic_ini_locations() {
        let ini = "[alembic]\n# where the scripts are\nscript_location = %(here)s/db/migrations\nsqlalchemy.url = driver://user:pass@localhost/dbname\n\n[loggers]\nkeys = root\n";
        assert_eq!(
            alembic_ini_version_dirs("backend/alembic.ini", ini),
            vec!["backend/db/migrations/versions"]
        );
        assert_eq!(
            alembic_ini_version_dirs("alembic.ini", "[alembic]\nscript_location = migrations\n"),
            vec!["migrations/versions"]
        );
        let many = "[alembic]\nscript_location = db\nversion_locations = %(here)s/db/revisions\n    %(here)s/plugins/billing/revisions\n";
        assert_eq!(
            alembic_ini_version_dirs("svc/alembic.ini", many),
            vec!["svc/db/revisions", "svc/plugins/billing/revisions"]
        );
        // Onyx's form: `[DEFAULT]`, an interpolated script location, Alembic's template comment after a value, and
        // a second configuration for `alembic -n schema_private`.
        assert_eq!(
            alembic_ini_version_dirs(
                "backend/alembic.ini",
                "[DEFAULT]\nscript_location = alembic\nversion_path_separator = os  # Use os.pathsep.\n[loggers]\nkeys = root\n[alembic]\nscript_location = alembic\nversion_locations = %(script_location)s/versions\n[schema_private]\nscript_location = alembic_tenants\nversion_locations = %(script_location)s/versions\n"
            ),
            vec![
                "backend/alembic/versions",
                "backend/alembic_tenants/versions"
            ]
        );
        // Package locations and paths leaving the repository are not guessed.
        assert!(
            alembic_ini_version_dirs(
                "alembic.ini",
                "[alembic]\nscript_location = myapp:migrations\n"
            )
            .is_empty()
        );
        assert!(
            alembic_ini_version_dirs("alembic.ini", "[alembic]\nscript_location = ../shared\n")
                .is_empty()
        );
        // `[DEFAULT]` alone configures nothing: sections such as `[loggers]` inherit it without being Alembic's.
        assert!(
            alembic_ini_version_dirs(
                "alembic.ini",
                "[DEFAULT]\nscript_location = x\n[loggers]\nkeys = root\n"
            )
            .is_empty()
        );
    }

    #[test]
    fn alembic_ini_makes_its_folders_migrations() {
        let ctx = RepoContext {
            paths: vec![
                "db/alembic.ini".into(),
                "db/revisions/0001_init.py".into(),
                "db/schema/env.py".into(),
                "lib/versions/v2.py".into(),
            ],
            files: [(
                "db/alembic.ini".to_string(),
                "[alembic]\nscript_location = schema\nversion_locations = %(here)s/revisions\n"
                    .to_string(),
            )]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        assert_eq!(
            ctx.kind_of("db/revisions/0001_init.py", None),
            Some(FileKind::Alembic)
        );
        assert_eq!(
            ctx.kind_of("lib/versions/v2.py", None),
            Some(FileKind::Python)
        );
        assert_eq!(ctx.has_alembic_tree(), Some(true));
        // Without the ini's text, the folder name alone does not make a migration.
        let unread = RepoContext {
            files: HashMap::new(),
            paths: ctx.paths.clone(),
            ..Default::default()
        };
        assert_eq!(
            unread.kind_of("db/revisions/0001_init.py", None),
            Some(FileKind::Python)
        );
    }

    #[test]
    fn configured_proxies_match_as_words() {
        let ctx = RepoContext {
            reverse_proxies: vec!["myproxy".into(), "edge-router".into()],
            ..Default::default()
        };
        for t in [
            "myproxy",
            "MyProxy",
            "myproxy-eu",
            "registry.local/team/myproxy:1.4",
            "app edge-router",
        ] {
            assert!(ctx.is_configured_proxy(t), "{t}");
        }
        for t in ["notmyproxyd", "myproxy2", "api", "edge"] {
            assert!(!ctx.is_configured_proxy(t), "{t}");
        }
        assert!(!RepoContext::default().is_configured_proxy("myproxy"));
    }
}
