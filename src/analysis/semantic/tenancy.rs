//! Which ORM models belong to a tenant or an owner: the SQLAlchemy / SQLModel classes of the repository with a
//! tenant or owner column (`tenant_id`, `org_id`, `workspace_id`, `group_id`, `owner_id`, `user_id`, … and the
//! columns the repository configuration adds), including columns inherited from base classes and mixins declared
//! in other modules.
//!
//! The model files are read as text, line by line: a class header at the start of a line, then its indented body.
//! A class is a model when its body declares `__tablename__`, a `Column(…)` / `mapped_column(…)` / `Mapped[…]`
//! attribute or a SQLModel `Field(…)` with `table=True` among its bases, or when it inherits from a model.

use super::python::text::{class_bases, header_of};
use std::collections::{HashMap, HashSet};

/// Column names that carry the tenant or the owner of a row, built in.
pub const TENANT_COLUMNS: &[&str] = &[
    "tenant_id",
    "app_id",
    "org_id",
    "organization_id",
    "organisation_id",
    "workspace_id",
    "group_id",
    "team_id",
    "account_id",
    "owner_id",
    "user_id",
];

/// The narrower set: columns that name the tenant a row belongs to (an app, an organisation, a workspace), not its
/// owner. Queries that must be scoped to the tenant (`tenant-query-*`, tenant-keyed caches and collections) look
/// for these; the ownership checks use all of [`TENANT_COLUMNS`].
pub const TENANT_SCOPE_COLUMNS: &[&str] = &[
    "app_id",
    "tenant_id",
    "org_id",
    "organization_id",
    "workspace_id",
];

/// The tenant a Python function has in view, as code: a parameter named like one of the columns `is_col` accepts
/// (`app_id`), else the first such column read from a parameter's object in its body (`auth.app_id`,
/// `current_user.org_id`: the caller's tenant, handed in by a dependency). `None` when the function sees no tenant.
pub fn tenant_in_view(
    func: &crate::analysis::nodes::PyNode<'_>,
    is_col: impl Fn(&str) -> bool,
) -> Option<String> {
    let params = super::python::syntax::param_names(func);
    if let Some(p) = params.iter().find(|p| is_col(p)) {
        return Some(p.clone());
    }
    let body = func.field("body")?;
    let mut reads: Vec<_> =
        super::python::scopes::own_nodes(&body, super::python::scopes::OwnNodes::Below)
            .into_iter()
            .filter(|n| n.kind() == "attribute")
            .collect();
    reads.sort_by_key(|n| n.range().start);
    reads.into_iter().find_map(|n| {
        let object = n.field("object")?;
        let attr = n.field("attribute")?;
        (object.kind() == "identifier"
            && params.iter().any(|p| *p == object.text())
            && is_col(&attr.text()))
        .then(|| n.text().to_string())
    })
}

/// Files that may declare models: what the App fetches and the CLI reads for [`TenantModels`].
pub const MODEL_FILE_GLOBS: &[&str] = &[
    "**/models.py",
    "**/model.py",
    "**/models/**/*.py",
    "**/model/**/*.py",
    "**/*_model.py",
    "**/*_models.py",
    "**/models_*.py",
    "**/db/**/*.py",
    "**/database/**/*.py",
    "**/entities/**/*.py",
    "**/tables.py",
    "**/schema.py",
    "**/orm.py",
];

/// The texts of the model files among a repository's files (see [`MODEL_FILE_GLOBS`]).
pub fn model_file_texts(
    files: &std::collections::HashMap<String, String>,
) -> impl Iterator<Item = &str> {
    static GLOBS: std::sync::OnceLock<Option<globset::GlobSet>> = std::sync::OnceLock::new();
    python_texts_matching(files, &GLOBS, MODEL_FILE_GLOBS)
}

/// The texts of the Python files among `files` whose path matches `globs` (compiled once into `compiled`).
pub fn python_texts_matching<'a>(
    files: &'a std::collections::HashMap<String, String>,
    compiled: &'static std::sync::OnceLock<Option<globset::GlobSet>>,
    globs: &[&str],
) -> impl Iterator<Item = &'a str> {
    let globs = compiled.get_or_init(|| crate::analysis::context::needs_globset(globs).ok());
    files
        .iter()
        .filter(move |(p, _)| {
            p.ends_with(".py") && globs.as_ref().is_some_and(|g| g.is_match(p.as_str()))
        })
        .map(|(_, t)| t.as_str())
}

/// How deep base classes are followed (a chain longer than this is cut: hostile input cannot loop or recurse).
const MAX_BASE_DEPTH: usize = 8;
/// Lines of a class header that may be joined to find its bases.
const MAX_HEADER_LINES: usize = 6;

/// How many foreign-key hops are followed from a model to the model that carries the tenant column
/// (`AgentExecution.agent_id` → `Agent.project_id` → `Project.organisation_id` is two).
const MAX_PARENT_HOPS: usize = 3;

/// A `…_id` column and the table its foreign key names, if it names one.
type Reference = (String, Option<String>);

#[derive(Debug, Default, Clone)]
struct ClassFacts {
    bases: Vec<String>,
    columns: HashSet<String>,
    /// `…_id` columns, with the table a `ForeignKey("table.id")` / `foreign_key="table.id"` names, if any.
    references: Vec<Reference>,
    table: Option<String>,
    model: bool,
}

/// A model without a tenant column of its own that belongs to a tenant through its parent rows: the foreign-key
/// columns followed (each with the model it points to) and the tenant/owner columns of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentOwner {
    pub hops: Vec<(String, String)>,
    pub columns: Vec<String>,
}

impl ParentOwner {
    /// `agent_id` → `Agent.project_id` → `Project.organisation_id`, for messages.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let mut column = None::<&str>;
        for (col, parent) in &self.hops {
            match column {
                None => out.push_str(&format!("`{col}`")),
                Some(_) => out.push_str(&format!(".{col}`")),
            }
            out.push_str(&format!(" → `{parent}"));
            column = Some(col);
        }
        out.push_str(&format!(".{}`", self.columns.join("`/`")));
        out
    }

    /// The foreign-key columns of the chain (the first is the model's own).
    pub fn hop_columns(&self) -> impl Iterator<Item = &str> {
        self.hops.iter().map(|(c, _)| c.as_str())
    }
}

/// Who owns a model's rows: its own tenant/owner columns, or those of a parent reached through foreign keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Tenant/owner columns that scope a query or decide a check (the model's own, or the last parent's).
    pub scope: Vec<String>,
    /// The foreign-key columns followed to the parent (empty when the model has its own column).
    pub hops: Vec<String>,
    /// How the owner is reached, for messages: `` `user_id` `` or `owner (through `agent_id` → …)`.
    pub describe: String,
}

impl Owner {
    /// Every column that names the owner: the scope columns, then the parent keys.
    pub fn columns(&self) -> Vec<String> {
        self.scope.iter().chain(&self.hops).cloned().collect()
    }
}

/// The models with a tenant or owner column, by class name, and the models that reach one through foreign keys.
#[derive(Debug, Default, Clone)]
pub struct TenantModels {
    models: HashMap<String, Vec<String>>,
    parents: HashMap<String, ParentOwner>,
    /// The base classes of each model with a tenant column, followed up to [`MAX_BASE_DEPTH`] levels.
    ancestors: HashMap<String, HashSet<String>>,
}

impl TenantModels {
    /// Build from model files' texts; `extra` names more tenant columns (the repository configuration).
    pub fn build<'a>(texts: impl IntoIterator<Item = &'a str>, extra: &[String]) -> Self {
        Self::build_with(texts, |c| {
            TENANT_COLUMNS.contains(&c) || extra.iter().any(|e| e == c)
        })
    }

    /// Build from model files' texts, keeping the columns `tenant` accepts (e.g. [`TENANT_SCOPE_COLUMNS`] and the
    /// repository configuration's).
    pub fn build_with<'a>(
        texts: impl IntoIterator<Item = &'a str>,
        tenant: impl Fn(&str) -> bool,
    ) -> Self {
        let mut classes: HashMap<String, ClassFacts> = HashMap::new();
        for text in texts {
            scan(text, &mut classes);
        }
        let mut models = HashMap::new();
        let mut ancestors = HashMap::new();
        for (name, facts) in &classes {
            let (is_model, mut cols) = resolve(name, &classes);
            if !(facts.model || is_model) {
                continue;
            }
            cols.retain(|c| tenant(c));
            if cols.is_empty() {
                continue;
            }
            let mut cols: Vec<String> = cols.into_iter().collect();
            cols.sort();
            models.insert(name.clone(), cols);
            ancestors.insert(name.clone(), bases_of(name, &classes));
        }
        let parents = parent_owners(&classes, &models);
        TenantModels {
            models,
            parents,
            ancestors,
        }
    }

    /// How a model without a tenant column of its own belongs to a tenant through its parents (foreign keys
    /// declared or named after the parent: `project_id` → `Project`), up to [`MAX_PARENT_HOPS`] hops.
    pub fn parent_owner(&self, model: &str) -> Option<&ParentOwner> {
        self.parents.get(model)
    }

    /// The tenant/owner columns of a model, if it has any.
    pub fn columns(&self, model: &str) -> Option<&[String]> {
        self.models.get(model).map(Vec::as_slice)
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Every model with its tenant/owner columns, by name (sorted: the same order every run).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        let mut all: Vec<(&str, &[String])> = self
            .models
            .iter()
            .map(|(m, c)| (m.as_str(), c.as_slice()))
            .collect();
        all.sort_unstable_by_key(|(m, _)| *m);
        all.into_iter()
    }

    /// Who owns a model's rows, directly or through its parents; `None` for a model without an owner.
    pub fn owner(&self, model: &str) -> Option<Owner> {
        if let Some(cols) = self.models.get(model) {
            return Some(Owner {
                scope: cols.clone(),
                hops: Vec::new(),
                describe: format!("`{}`", cols.join("`/`")),
            });
        }
        let parent = self.parents.get(model)?;
        Some(Owner {
            scope: parent.columns.clone(),
            hops: parent.hop_columns().map(str::to_string).collect(),
            describe: format!("owner (through {})", parent.describe()),
        })
    }

    /// Every model whose rows have an owner, with the columns that scope it ([`Owner::columns`]), sorted by name.
    pub fn owned(&self) -> impl Iterator<Item = (&str, Vec<String>)> {
        let mut all: Vec<(&str, Vec<String>)> = self
            .models
            .keys()
            .chain(self.parents.keys())
            .filter_map(|m| self.owner(m).map(|o| (m.as_str(), o.columns())))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }

    /// Is `model` one of the models with a tenant or owner column?
    pub fn contains(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// Does the model with a tenant column `model` inherit from `base` (directly or through its bases)?
    pub fn inherits(&self, model: &str, base: &str) -> bool {
        self.ancestors.get(model).is_some_and(|a| a.contains(base))
    }
}

/// Does a criterion the repository adds to every ORM statement of the `kind` scope queries of `model` on one of its
/// tenant columns `cols`? The criterion's entity must be the model or one of its bases in `known` (the models with
/// a tenant column, each set read from different files), or else no model with a tenant column in `known` at all
/// (a mixin declared elsewhere, a variable naming models from a list): then it applies to every model that has the
/// column it reads.
pub fn globally_scoped(
    criteria: &[OrmCriterion],
    known: &[&TenantModels],
    model: &str,
    cols: &[String],
    kind: StatementKind,
) -> bool {
    criteria.iter().any(|c| {
        c.covers(kind)
            && c.columns.iter().any(|col| cols.contains(col))
            && (c.target == model
                || known.iter().any(|k| k.inherits(model, &c.target))
                || !known.iter().any(|k| k.contains(&c.target)))
    })
}

/// The base classes of `name`, followed up to [`MAX_BASE_DEPTH`] levels.
fn bases_of(name: &str, classes: &HashMap<String, ClassFacts>) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut frontier: Vec<String> = classes
        .get(name)
        .map(|f| f.bases.clone())
        .unwrap_or_default();
    for _ in 0..MAX_BASE_DEPTH {
        let mut next = Vec::new();
        for n in frontier {
            if seen.insert(n.clone())
                && let Some(f) = classes.get(&n)
            {
                next.extend(f.bases.iter().cloned());
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    seen
}

/// The kind of an ORM statement, for [`OrmCriterion::covers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    Select,
    Update,
    Delete,
}

/// Criteria a repository adds to every ORM statement a session runs: a `do_orm_execute` event listener that
/// attaches `with_loader_criteria(Entity, lambda cls: cls.tenant_id == …)` (SQLAlchemy's recipe for scoping every
/// query to the current tenant). Read from the text of the module that registers the listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrmCriterion {
    /// The entity named first: a model, a base class or mixin (covering its subclasses), or a variable; empty for
    /// a listener that adds the column by its own code (every model that has it).
    pub target: String,
    /// The attributes the criterion reads (`tenant_id` of `cls.tenant_id == current_tenant()`).
    pub columns: Vec<String>,
    /// The statements the listener scopes: it tests `is_select` / `is_update` / `is_delete`, or (testing none of
    /// them) every ORM statement.
    pub select: bool,
    pub update: bool,
    pub delete: bool,
}

impl OrmCriterion {
    pub fn covers(&self, kind: StatementKind) -> bool {
        match kind {
            StatementKind::Select => self.select,
            StatementKind::Update => self.update,
            StatementKind::Delete => self.delete,
        }
    }
}

/// Criteria read per file, at most.
const MAX_CRITERIA: usize = 32;
/// Bytes of one `with_loader_criteria(…)` call read, at most.
const MAX_CRITERION_BYTES: usize = 4_000;
/// Lines of a listener's body read, at most.
const MAX_LISTENER_LINES: usize = 400;

/// The criteria a module adds to every ORM statement (see [`OrmCriterion`]): the `with_loader_criteria(…)` calls of
/// a file that registers a `do_orm_execute` listener (`@event.listens_for(Session, "do_orm_execute")` or
/// `event.listen(…, "do_orm_execute", fn)`), with the statements the listeners' bodies test for; or, when the file
/// has no such call, the `…_id` columns its listeners (and the functions they call) name, for every model that has
/// them. A file without a listener adds nothing: a criterion on one query scopes only that query.
pub fn orm_criteria(text: &str) -> Vec<OrmCriterion> {
    if !text.contains("do_orm_execute") {
        return Vec::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    // The listeners, by name.
    let mut listeners: Vec<String> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.contains("do_orm_execute") {
            continue;
        }
        let t = line.trim_start();
        if t.starts_with('@') {
            // The decorated function: the next `def` below the decorators.
            let def = lines[i + 1..]
                .iter()
                .take(10)
                .map(|l| l.trim_start())
                .find(|l| !l.starts_with('@'));
            if let Some(name) = def.and_then(def_name) {
                listeners.push(name);
            }
        } else if let Some(at) = t.find("listen(") {
            // `event.listen(Session, "do_orm_execute", add_tenant_criteria)`: the last argument.
            let args = t[at + "listen(".len()..].split(')').next().unwrap_or("");
            if let Some(last) = args.rsplit(',').next() {
                let name = last.trim();
                if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                    listeners.push(name.to_string());
                }
            }
        }
    }
    if listeners.is_empty() {
        return Vec::new();
    }
    listeners.truncate(MAX_CRITERIA);
    // The listeners' bodies, and those of the file's functions they call (one level).
    let body_of = |name: &str| -> String {
        let mut body = String::new();
        let Some(start) = lines
            .iter()
            .position(|l| def_name(l.trim_start()).as_deref() == Some(name))
        else {
            return body;
        };
        let indent = lines[start].len() - lines[start].trim_start().len();
        for l in lines[start + 1..].iter().take(MAX_LISTENER_LINES) {
            let t = l.trim_start();
            if !t.is_empty() && l.len() - t.len() <= indent {
                break;
            }
            body.push_str(t);
            body.push('\n');
        }
        body
    };
    let mut tests: String = listeners.iter().map(|n| body_of(n)).collect();
    // The names the listeners call (`add_filter(` → `add_filter`), then the file's functions of those names.
    let called: HashSet<&str> = tests
        .match_indices('(')
        .filter_map(|(at, _)| {
            let before = &tests[..at];
            let start = before
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |k| k + 1);
            (start < at).then(|| &tests[start..at])
        })
        .collect();
    let helpers: Vec<String> = lines
        .iter()
        .filter_map(|l| def_name(l.trim_start()))
        .filter(|d| !listeners.contains(d) && called.contains(d.as_str()))
        .take(MAX_CRITERIA)
        .collect();
    for h in helpers {
        tests.push_str(&body_of(&h));
    }
    let tested: Vec<bool> = ["is_select", "is_update", "is_delete"]
        .iter()
        .map(|w| tests.contains(w))
        .collect();
    let any_test = tested.iter().any(|t| *t);
    let mut out = Vec::new();
    for (at, m) in text.match_indices("with_loader_criteria(") {
        if out.len() >= MAX_CRITERIA {
            break;
        }
        // An import line names the function without calling it.
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line = text[line_start..].trim_start();
        if line.starts_with("from ") || line.starts_with("import ") {
            continue;
        }
        let rest = &text[at + m.len()..];
        let mut end = rest.len().min(MAX_CRITERION_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let rest = &rest[..end];
        // The arguments, to the parenthesis that closes the call.
        let mut depth = 1i32;
        let mut close = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[..close];
        let Some((first, criterion)) = args.split_once(',') else {
            continue;
        };
        let target = first
            .trim()
            .rsplit('.')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if target.is_empty() || !target.chars().all(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let mut columns: Vec<String> = criterion
            .split('.')
            .skip(1)
            .filter_map(|after| {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                (!name.is_empty()).then_some(name)
            })
            .collect();
        columns.sort();
        columns.dedup();
        out.push(OrmCriterion {
            target,
            columns,
            select: !any_test || tested[0],
            update: !any_test || tested[1],
            delete: !any_test || tested[2],
        });
    }
    // A listener that adds the tenant by its own code (`statement.where(entity.tenant_id == …)` for each entity
    // that has the column): the `…_id` columns its bodies name, on every model that has them.
    if out.is_empty() {
        let mut columns: Vec<String> = Vec::new();
        for (i, _) in tests.match_indices("_id") {
            let before = &tests[..i];
            let start = before
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(0, |k| k + 1);
            let opener = tests[..start].chars().next_back();
            let after = tests[i + 3..].chars().next();
            let word_ends = !after.is_some_and(|c| c.is_alphanumeric() || c == '_');
            if start < i && word_ends && matches!(opener, Some('.' | '"' | '\'')) {
                columns.push(tests[start..i + 3].to_string());
            }
        }
        columns.sort();
        columns.dedup();
        columns.truncate(MAX_CRITERIA);
        if !columns.is_empty() {
            out.push(OrmCriterion {
                target: String::new(),
                columns,
                select: !any_test || tested[0],
                update: !any_test || tested[1],
                delete: !any_test || tested[2],
            });
        }
    }
    out
}

/// The name a `def` / `async def` line defines.
fn def_name(line: &str) -> Option<String> {
    let rest = line
        .strip_prefix("async def ")
        .or_else(|| line.strip_prefix("def "))?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The snake-case form of a class name (`AgentExecution` → `agent_execution`).
fn snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The models reached through foreign keys, for each model class that has no tenant column itself.
fn parent_owners(
    classes: &HashMap<String, ClassFacts>,
    direct: &HashMap<String, Vec<String>>,
) -> HashMap<String, ParentOwner> {
    // Model classes with their own and inherited references, sorted: the same links every run.
    let mut model_classes: Vec<(&String, &[Reference])> = Vec::new();
    let mut by_table: HashMap<String, &String> = HashMap::new();
    let mut by_snake: HashMap<String, &String> = HashMap::new();
    for (name, facts) in classes {
        let (is_model, _) = resolve(name, classes);
        if !(facts.model || is_model) {
            continue;
        }
        if let Some(t) = &facts.table {
            by_table.insert(t.clone(), name);
        }
        by_snake.insert(snake(name), name);
        model_classes.push((name, facts.references.as_slice()));
    }
    model_classes.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let target = |column: &str, table: &Option<String>| -> Option<String> {
        if let Some(t) = table {
            return by_table
                .get(t)
                .or_else(|| by_snake.get(t))
                .map(|c| c.to_string());
        }
        let stem = column.strip_suffix("_id")?;
        by_snake
            .get(stem)
            .or_else(|| by_table.get(stem))
            .or_else(|| by_table.get(&format!("{stem}s")))
            .or_else(|| by_table.get(&format!("{stem}es")))
            .map(|c| c.to_string())
    };
    let mut parents: HashMap<String, ParentOwner> = HashMap::new();
    for _ in 0..MAX_PARENT_HOPS {
        let mut found = Vec::new();
        for (name, references) in &model_classes {
            if direct.contains_key(*name) || parents.contains_key(*name) {
                continue;
            }
            for (column, table) in references.iter() {
                let Some(parent) = target(column, table) else {
                    continue;
                };
                if &parent == *name {
                    continue;
                }
                let owner = if let Some(cols) = direct.get(&parent) {
                    ParentOwner {
                        hops: vec![(column.clone(), parent)],
                        columns: cols.clone(),
                    }
                } else if let Some(up) = parents.get(&parent) {
                    let mut hops = vec![(column.clone(), parent)];
                    hops.extend(up.hops.iter().cloned());
                    ParentOwner {
                        hops,
                        columns: up.columns.clone(),
                    }
                } else {
                    continue;
                };
                found.push(((*name).clone(), owner));
                break;
            }
        }
        if found.is_empty() {
            break;
        }
        for (name, owner) in found {
            parents.entry(name).or_insert(owner);
        }
    }
    parents
}

/// The table a foreign-key declaration points to (`ForeignKey("projects.id")`, `foreign_key="project.id"`).
fn foreign_table(stmt: &str) -> Option<String> {
    let at = stmt
        .find("ForeignKey(")
        .map(|i| i + "ForeignKey(".len())
        .or_else(|| stmt.find("foreign_key=").map(|i| i + "foreign_key=".len()))?;
    let rest = stmt[at..].trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = &rest[1..];
    let end = inner.find(quote)?;
    let target = &inner[..end];
    let (table, _) = target.rsplit_once('.')?;
    // `schema.table.id` → `table`.
    Some(table.rsplit('.').next().unwrap_or(table).to_string())
}

/// Is the class (through its bases, up to [`MAX_BASE_DEPTH`]) a model, and which columns does it have?
fn resolve(name: &str, classes: &HashMap<String, ClassFacts>) -> (bool, HashSet<String>) {
    let mut model = false;
    let mut cols = HashSet::new();
    let mut seen = HashSet::new();
    let mut frontier = vec![name.to_string()];
    for _ in 0..=MAX_BASE_DEPTH {
        let mut next = Vec::new();
        for n in frontier {
            if !seen.insert(n.clone()) {
                continue;
            }
            let Some(f) = classes.get(&n) else {
                continue;
            };
            model |= f.model;
            cols.extend(f.columns.iter().cloned());
            next.extend(f.bases.iter().cloned());
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    (model, cols)
}

/// Record the classes of one file.
fn scan(text: &str, classes: &mut HashMap<String, ClassFacts>) {
    let lines: Vec<&str> = text.lines().collect();
    // The class being read, and the indentation of its body's own statements (set by its first body line).
    let mut current: Option<String> = None;
    let mut body_indent: Option<usize> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = line.len() != trimmed.len();
        if !indented {
            current = None;
            body_indent = None;
            let Some(rest) = trimmed.strip_prefix("class ") else {
                continue;
            };
            // The bases, possibly over several lines.
            let Some((name, header)) =
                header_of(rest, &lines, &mut i, MAX_HEADER_LINES, |h| h.contains(':'))
            else {
                continue;
            };
            let facts = ClassFacts {
                // SQLModel's `class Item(SQLModel, table=True)`.
                model: header.replace(' ', "").contains("table=True"),
                bases: class_bases(&header),
                ..Default::default()
            };
            let entry = classes.entry(name.clone()).or_default();
            entry.model |= facts.model;
            entry.bases.extend(facts.bases);
            current = Some(name);
            continue;
        }
        let Some(class) = &current else {
            continue;
        };
        // Only the class body's own statements declare columns; a method's locals are deeper.
        let depth = line.len() - trimmed.len();
        if *body_indent.get_or_insert(depth) != depth {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("__tablename__") {
            let table = rest
                .trim_start()
                .strip_prefix('=')
                .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
                .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_alphanumeric() || c == '_'));
            if let Some(f) = classes.get_mut(class) {
                f.model = true;
                if table.is_some() {
                    f.table = table;
                }
            }
            continue;
        }
        let Some((column, declared)) = column_declaration(trimmed) else {
            continue;
        };
        if let Some(f) = classes.get_mut(class) {
            if column.ends_with("_id") {
                f.references.push((column.clone(), foreign_table(trimmed)));
            }
            f.columns.insert(column);
            f.model |= declared;
        }
    }
}

/// `name = Column(…)`, `name = mapped_column(…)`, `name: Mapped[…] = …`, `name: int = Field(…)`: the attribute's
/// name, and whether the declaration alone makes the class an ORM model (`Column`, `mapped_column`, `Mapped`).
fn column_declaration(stmt: &str) -> Option<(String, bool)> {
    let name: String = stmt
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if name.is_empty() || name.starts_with("__") {
        return None;
    }
    let rest = stmt[name.len()..].trim_start();
    let (annotation, value) = if let Some(r) = rest.strip_prefix(':') {
        match r.split_once('=') {
            Some((a, v)) if !v.starts_with('=') => (a.trim(), v.trim()),
            _ => (r.trim(), ""),
        }
    } else if let Some(v) = rest.strip_prefix('=') {
        if v.starts_with('=') {
            return None;
        }
        ("", v.trim())
    } else {
        return None;
    };
    let callee = value.split('(').next().unwrap_or("").trim();
    let callee_tail = callee.rsplit('.').next().unwrap_or(callee);
    let orm = annotation.starts_with("Mapped[")
        || annotation.contains(".Mapped[")
        || matches!(callee_tail, "Column" | "mapped_column");
    let field = callee_tail == "Field" || callee_tail == "relationship";
    if orm {
        Some((name, true))
    } else if field {
        Some((name, false))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_added_by_orm_listeners() {
        let decorated = "from sqlalchemy import event\nfrom sqlalchemy.orm import Session, with_loader_criteria\n\n\n@event.listens_for(Session, \"do_orm_execute\")\ndef scope(state):\n    if state.is_select and not state.is_relationship_load:\n        state.statement = state.statement.options(\n            with_loader_criteria(\n                models.TenantMixin,\n                lambda cls: cls.tenant_id == current.get(),\n                include_aliases=True,\n            )\n        )\n";
        let c = orm_criteria(decorated);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(c[0].target, "TenantMixin");
        assert!(c[0].columns.contains(&"tenant_id".to_string()));
        assert!(c[0].covers(StatementKind::Select));
        assert!(!c[0].covers(StatementKind::Update) && !c[0].covers(StatementKind::Delete));
        // Registered with `event.listen`, testing no statement kind: every ORM statement.
        let listened = "def add(state):\n    state.statement = state.statement.options(with_loader_criteria(Doc, lambda cls: cls.org_id == g()))\n\nevent.listen(Session, \"do_orm_execute\", add)\n";
        let c = orm_criteria(listened);
        assert_eq!(c.len(), 1);
        assert!(c[0].covers(StatementKind::Delete) && c[0].covers(StatementKind::Update));
        assert_eq!(c[0].columns, ["org_id"]);
        // A listener that adds the column itself, through a helper: every model with a column it names.
        let own = "@event.listens_for(Session, \"do_orm_execute\")\ndef scope(state):\n    if state.is_select:\n        state.statement = add_filter(state.statement)\n\n\ndef add_filter(stmt):\n    for d in stmt.column_descriptions:\n        if hasattr(d[\"entity\"], \"tenant_id\"):\n            stmt = stmt.where(d[\"entity\"].tenant_id == current())\n    return stmt\n\n\ndef unrelated(user_id):\n    return user_id\n";
        let c = orm_criteria(own);
        assert_eq!(c.len(), 1, "{c:?}");
        assert_eq!(
            (c[0].target.as_str(), c[0].columns.as_slice()),
            ("", &["tenant_id".to_string()][..])
        );
        assert!(c[0].covers(StatementKind::Select) && !c[0].covers(StatementKind::Delete));
        // A listener naming no `…_id` column (soft deletion) scopes nothing to a tenant.
        assert!(orm_criteria(&own.replace("tenant_id", "deleted_at")).is_empty());
        // A criterion on one query, with no listener, scopes that query only.
        assert!(orm_criteria("rows = s.execute(select(Doc).options(with_loader_criteria(Doc, lambda c: c.org_id == 1)))\n# do_orm_execute\n").is_empty());
        // Hostile input: thousands of listeners, each calling the next (read up to the bounds, not all).
        let many: String = (0..3000)
            .map(|i| format!("@event.listens_for(S, \"do_orm_execute\")\ndef f{i}(s):\n    f{}(s.tenant_id)\n", i + 1))
            .collect();
        let c = orm_criteria(&many);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].columns, ["tenant_id"]);
        // Hostile input: unclosed call, a listener line at the end of the file.
        assert!(orm_criteria("@event.listens_for(S, \"do_orm_execute\")").is_empty());
        let open = "@event.listens_for(S, \"do_orm_execute\")\ndef f(s):\n    with_loader_criteria(X, lambda c: c.tenant_id == (";
        assert_eq!(orm_criteria(open).len(), 1);

        // Which models a criterion covers: its entity, the entity's subclasses, or (an entity that is no model
        // with a tenant column here) every model with the column it reads.
        let models = TenantModels::build(
            [
                "class Base(DeclarativeBase):\n    pass\n\nclass Owned(Base):\n    __abstract__ = True\n    tenant_id: Mapped[int] = mapped_column()\n\nclass Doc(Owned):\n    __tablename__ = \"docs\"\n\nclass Note(Base):\n    __tablename__ = \"notes\"\n    tenant_id: Mapped[int] = mapped_column()\n",
            ],
            &[],
        );
        let cols = ["tenant_id".to_string()];
        let on = |target: &str, kind| OrmCriterion {
            target: target.into(),
            columns: cols.to_vec(),
            select: true,
            update: false,
            delete: kind,
        };
        let scoped = |c: OrmCriterion, model: &str, kind| {
            globally_scoped(&[c], &[&models], model, &cols, kind)
        };
        assert!(scoped(on("Doc", false), "Doc", StatementKind::Select));
        assert!(scoped(on("Owned", false), "Doc", StatementKind::Select));
        assert!(
            !scoped(on("Owned", false), "Note", StatementKind::Select),
            "Note is no Owned"
        );
        assert!(
            scoped(on("model", false), "Note", StatementKind::Select),
            "a variable: every model with the column"
        );
        assert!(!scoped(on("Doc", false), "Doc", StatementKind::Delete));
        assert!(scoped(on("Doc", true), "Doc", StatementKind::Delete));
        let other_column = OrmCriterion {
            columns: vec!["deleted_at".into()],
            ..on("Doc", true)
        };
        assert!(!scoped(other_column, "Doc", StatementKind::Select));
    }

    #[test]
    fn tenant_scope_columns_leave_owner_only_models_out() {
        let text = "\
class Chat(Base):
    __tablename__ = \"chats\"
    user_id = Column(Integer)

class Doc(Base):
    __tablename__ = \"docs\"
    workspace_id: Mapped[int] = mapped_column()
    owner_id: Mapped[int] = mapped_column()
";
        let all = TenantModels::build([text], &[]);
        assert_eq!(all.columns("Chat"), Some(&["user_id".to_string()][..]));
        let scope = TenantModels::build_with([text], |c| TENANT_SCOPE_COLUMNS.contains(&c));
        assert!(!scope.contains("Chat"));
        assert_eq!(
            scope.columns("Doc"),
            Some(&["workspace_id".to_string()][..])
        );
    }

    #[test]
    fn models_with_tenant_columns_across_files_and_bases() {
        let base = "\
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TenantMixin:
    tenant_id: Mapped[int] = mapped_column(index=True)
";
        let models = "\
import sqlalchemy as sa
from sqlmodel import Field, SQLModel
from app.db.base import Base, TenantMixin


class Chat(Base, TenantMixin):
    __tablename__ = \"chats\"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]


class Item(SQLModel, table=True):
    id: int = Field(primary_key=True)
    owner_id: int = Field(foreign_key=\"user.id\")


class ItemCreate(SQLModel):
    owner_id: int = Field()


class Tag(Base):
    __tablename__ = \"tags\"
    id = sa.Column(sa.Integer, primary_key=True)
    name = sa.Column(sa.String)


class Agent(
    Base,
):
    __tablename__ = \"agents\"
    id = sa.Column(sa.Integer, primary_key=True)
    project_id = sa.Column(sa.Integer)

    def helper(self):
        user_id = 3
        return user_id
";
        let t = TenantModels::build([base, models], &[]);
        assert_eq!(t.columns("Chat"), Some(&["tenant_id".to_string()][..]));
        assert_eq!(t.columns("Item"), Some(&["owner_id".to_string()][..]));
        // A SQLModel schema without table=True is no table.
        assert_eq!(t.columns("ItemCreate"), None);
        assert_eq!(t.columns("Tag"), None);
        // project_id is a tenant only when the repository says so; a method's local is no column.
        assert_eq!(t.columns("Agent"), None);
        let t = TenantModels::build([base, models], &["project_id".to_string()]);
        assert_eq!(t.columns("Agent"), Some(&["project_id".to_string()][..]));
    }

    #[test]
    fn parents_reached_through_foreign_keys() {
        let text = "\
class Project(Base):
    __tablename__ = 'projects'
    id = Column(Integer, primary_key=True)
    organisation_id = Column(Integer)

class Agent(Base):
    __tablename__ = 'agents'
    id = Column(Integer, primary_key=True)
    project_id = Column(Integer)
    agent_workflow_id = Column(Integer)

class AgentExecution(Base):
    __tablename__ = 'agent_executions'
    id = Column(Integer, primary_key=True)
    agent_id = Column(Integer)

class Feed(Base):
    __tablename__ = 'feeds'
    run_id: Mapped[int] = mapped_column(ForeignKey(\"agent_executions.id\"))
    parent_id = Column(Integer)

class Step(Base):
    __tablename__ = 'steps'
    feed_id = Column(Integer)

class Deeper(Base):
    __tablename__ = 'deeper'
    step_id = Column(Integer)

class Workflow(Base):
    __tablename__ = 'agent_workflows'
    id = Column(Integer, primary_key=True)
";
        let t = TenantModels::build([text], &[]);
        assert!(t.parent_owner("Project").is_none(), "has its own column");
        let agent = t.parent_owner("Agent").expect("Agent through project_id");
        assert_eq!(
            agent.hops,
            vec![("project_id".to_string(), "Project".to_string())]
        );
        assert_eq!(agent.columns, vec!["organisation_id".to_string()]);
        let run = t.parent_owner("AgentExecution").expect("two hops");
        assert_eq!(
            run.describe(),
            "`agent_id` → `Agent.project_id` → `Project.organisation_id`"
        );
        // A declared foreign key names the table, whatever the column is called.
        let feed = t
            .parent_owner("Feed")
            .expect("ForeignKey(\"agent_executions.id\")");
        assert_eq!(
            feed.hops[0],
            ("run_id".to_string(), "AgentExecution".to_string())
        );
        assert_eq!(feed.hops.len(), 3);
        // Four hops away: beyond the bound.
        assert!(t.parent_owner("Step").is_none());
        assert!(t.parent_owner("Deeper").is_none());
        // A parent without a tenant: no owner.
        assert!(t.parent_owner("Workflow").is_none());
        // The direct-column view is unchanged.
        assert!(!t.contains("Agent"));
    }

    #[test]
    fn cyclic_and_deep_bases_terminate() {
        let mut text = String::from(
            "class A(B):\n    __tablename__ = 'a'\nclass B(A):\n    owner_id = Column(Integer)\n",
        );
        for i in 0..50 {
            text.push_str(&format!("class C{i}(C{}):\n    pass\n", i + 1));
        }
        text.push_str("class C50(Base):\n    user_id = Column(Integer)\n    __tablename__ = 'c'\n");
        let t = TenantModels::build([text.as_str()], &[]);
        assert_eq!(t.columns("A"), Some(&["owner_id".to_string()][..]));
        assert_eq!(t.columns("C50"), Some(&["user_id".to_string()][..]));
        // Too far from the column: not followed (bounded walk).
        assert_eq!(t.columns("C0"), None);
    }
}
