//! Which ORM models belong to a tenant or an owner: the SQLAlchemy / SQLModel classes of the repository with a
//! tenant or owner column (`tenant_id`, `org_id`, `workspace_id`, `group_id`, `owner_id`, `user_id`, … and the
//! columns the repository configuration adds), including columns inherited from base classes and mixins declared
//! in other modules.
//!
//! The model files are read as text, line by line: a class header at the start of a line, then its indented body.
//! A class is a model when its body declares `__tablename__`, a `Column(…)` / `mapped_column(…)` / `Mapped[…]`
//! attribute or a SQLModel `Field(…)` with `table=True` among its bases, or when it inherits from a model.

use super::python::text::header_of;
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

/// Files that may declare models: what the App fetches and the CLI reads for [`TenantModels`].
pub const MODEL_FILE_GLOBS: &[&str] = &[
    "**/models.py",
    "**/model.py",
    "**/models/**/*.py",
    "**/model/**/*.py",
    "**/*_model.py",
    "**/*_models.py",
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

#[derive(Debug, Default, Clone)]
struct ClassFacts {
    bases: Vec<String>,
    columns: HashSet<String>,
    model: bool,
}

/// The models with a tenant or owner column, by class name.
#[derive(Debug, Default, Clone)]
pub struct TenantModels {
    models: HashMap<String, Vec<String>>,
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
        }
        TenantModels { models }
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

    /// Is `model` one of the models with a tenant or owner column?
    pub fn contains(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }
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
            let bases_text = header
                .trim_start()
                .strip_prefix('(')
                .and_then(|b| b.rsplit_once(')').map(|(b, _)| b))
                .unwrap_or("");
            let mut facts = ClassFacts::default();
            for base in bases_text.split(',') {
                let base = base.trim();
                if base.replace(' ', "") == "table=True" {
                    facts.model = true;
                    continue;
                }
                if base.contains('=') {
                    continue; // metaclass=…, other keywords
                }
                // `sa.orm.DeclarativeBase` → `DeclarativeBase`; `Generic[T]` → `Generic`.
                let last = base.rsplit('.').next().unwrap_or(base);
                let last = last.split('[').next().unwrap_or(last).trim();
                if !last.is_empty() {
                    facts.bases.push(last.to_string());
                }
            }
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
        if trimmed.starts_with("__tablename__") {
            if let Some(f) = classes.get_mut(class) {
                f.model = true;
            }
            continue;
        }
        let Some((column, declared)) = column_declaration(trimmed) else {
            continue;
        };
        if let Some(f) = classes.get_mut(class) {
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
