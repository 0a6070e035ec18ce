//! O4 across files: the change edits a SQLAlchemy/SQLModel table definition (a column, `__table_args__`, or a
//! `Column` of a `Table(...)`) and adds or modifies no Alembic migration, in a repository that has an Alembic
//! tree (a `versions/` folder beside an `env.py`).
//!
//! Only judged when the tree is known and the change set is known: never on a file analysed alone. Relationships
//! (`relationship(…)`, `Relationship(…)`) do not change the schema and are not counted. One finding per class:
//! on its first column line the change touches.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::language::FileKind;
use crate::analysis::semantic::python::syntax::{callee_tail, positional_arg, string_value};

pub struct ModelChangeWithoutMigration;

/// Class-level values that are not columns.
const NOT_COLUMNS: &[&str] = &[
    "relationship",
    "Relationship",
    "association_proxy",
    "column_property",
    "synonym",
    "query_expression",
    "deferred",
    "hybrid_property",
    "declared_attr",
    "composite",
];

fn bases_text(class: &PyNode<'_>) -> String {
    class
        .field("superclasses")
        .map(|s| s.text().split_whitespace().collect())
        .unwrap_or_default()
}

/// Statements directly in the class body (expression statements unwrapped).
fn body_statements<'r>(class: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let Some(body) = class.field("body") else {
        return Vec::new();
    };
    body.children()
        .filter(|s| s.kind() == "expression_statement")
        .filter_map(|s| s.child(0))
        .filter(|e| e.kind() == "assignment")
        .collect()
}

fn target_name(assign: &PyNode<'_>) -> String {
    assign
        .field("left")
        .map(|l| l.text().to_string())
        .unwrap_or_default()
}

fn value_call_tail(assign: &PyNode<'_>) -> Option<String> {
    let v = assign.field("right")?;
    (v.kind() == "call").then(|| callee_tail(&v)).flatten()
}

/// Is this class-level assignment a schema element of a table class?
fn is_schema_statement(assign: &PyNode<'_>, sqlmodel_table: bool) -> bool {
    let name = target_name(assign);
    if name == "__table_args__" {
        return true;
    }
    if name.starts_with('_') || name == "model_config" {
        return false;
    }
    let tail = value_call_tail(assign);
    if tail.as_deref().is_some_and(|t| NOT_COLUMNS.contains(&t)) {
        return false;
    }
    if tail
        .as_deref()
        .is_some_and(|t| t == "Column" || t == "mapped_column")
    {
        return true;
    }
    let ann = assign
        .field("type")
        .map(|t| t.text().split_whitespace().collect::<String>())
        .unwrap_or_default();
    if ann.starts_with("ClassVar") || ann.contains("relationship") {
        return false;
    }
    if ann.starts_with("Mapped[") {
        // `x: Mapped[int]` is a column in SQLAlchemy 2.0; a relationship's annotation names a class.
        let inner = ann.trim_start_matches("Mapped[").trim_end_matches(']');
        let looks_like_model = inner
            .trim_start_matches("Optional[")
            .trim_start_matches("list[")
            .trim_start_matches("List[")
            .trim_start_matches("set[")
            .trim_matches(|c| c == '"' || c == '\'')
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase())
            && !is_plain_type(inner);
        return assign.field("right").is_none() && !looks_like_model;
    }
    sqlmodel_table && !ann.is_empty()
}

/// Capitalised types that are plain column types, not model classes.
fn is_plain_type(inner: &str) -> bool {
    let head = inner
        .trim_start_matches("Optional[")
        .split(['[', '|', ']', ' '])
        .next()
        .unwrap_or("");
    matches!(
        head,
        "Decimal"
            | "UUID"
            | "Any"
            | "Enum"
            | "Literal"
            | "Optional"
            | "datetime"
            | "date"
            | "Dict"
            | "List"
            | "JSON"
            | "JSONB"
            | "Text"
    ) || head.ends_with("Enum")
        || head.ends_with("Type")
        || head.ends_with("Status")
}

/// Is the class a mapped table (or a mixin of columns)?
fn table_class(class: &PyNode<'_>) -> Option<bool> {
    let bases = bases_text(class);
    let sqlmodel_table = bases.contains("table=True");
    let stmts = body_statements(class);
    let has_tablename = stmts.iter().any(|a| {
        let n = target_name(a);
        n == "__tablename__" || n == "__table__"
    });
    let has_columns = stmts.iter().any(|a| {
        value_call_tail(a)
            .as_deref()
            .is_some_and(|t| t == "Column" || t == "mapped_column")
    });
    if sqlmodel_table || has_tablename || has_columns {
        return Some(sqlmodel_table);
    }
    None
}

/// The class's `__tablename__` literal.
fn tablename(class: &PyNode<'_>) -> Option<String> {
    body_statements(class)
        .into_iter()
        .find(|a| target_name(a) == "__tablename__")
        .and_then(|a| a.field("right"))
        .and_then(|v| string_value(&v))
}

/// The database name of a column statement: `mapped_column("db_name", …)` / `Column("db_name", …)`, else the
/// attribute name. Empty for `__table_args__`.
fn column_name(assign: &PyNode<'_>) -> String {
    let attr = target_name(assign);
    if attr.starts_with("__") {
        return String::new();
    }
    assign
        .field("right")
        .filter(|v| v.kind() == "call")
        .and_then(|v| positional_arg(&v, 0))
        .and_then(|a| string_value(&a))
        .unwrap_or(attr)
}

/// Does an Alembic migration of the tree already name this column (in a migration that names the table, when
/// the table is known)? Then the change moved, reformatted or re-declared an existing column, or edited one
/// whose history we cannot judge: precision first, no finding. Unknown contents count as migrated.
fn column_migrated(ctx: &FileContext<'_>, table: Option<&str>, column: &str) -> bool {
    if column.is_empty() {
        return false;
    }
    let quoted = |text: &str, word: &str| {
        text.contains(&format!("\"{word}\"")) || text.contains(&format!("'{word}'"))
    };
    let mut any = false;
    for p in ctx
        .repo
        .paths
        .iter()
        .filter(|p| ctx.repo.kind_of(p, None) == Some(FileKind::Alembic))
    {
        let Some(text) = ctx.repo.read(p) else {
            return true;
        };
        any = true;
        if table.is_none_or(|t| quoted(text, t)) && quoted(text, column) {
            return true;
        }
    }
    !any
}

impl Check for ModelChangeWithoutMigration {
    fn id(&self) -> &'static str {
        "model-change-without-migration"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "Column",
            "mapped_column",
            "Mapped[",
            "table=True",
            "__tablename__",
        ]
    }

    fn needs(&self) -> &'static [&'static str] {
        // The migrations, to tell a new column from one that already has its migration (moved or reformatted).
        &["**/versions/*.py", "**/alembic.ini"]
    }

    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if ctx.kind != FileKind::Python || ctx.repo.has_alembic_tree() != Some(true) {
            return;
        }
        if ctx.repo.changes_a_migration() {
            return;
        }
        let touched = |n: &PyNode<'_>| {
            ctx.lines
                .is_none_or(|l| l.intersects(n.start_pos().line() + 1, n.end_pos().line() + 1))
        };
        for class in root.dfs().filter(|n| n.kind() == "class_definition") {
            let Some(sqlmodel_table) = table_class(&class) else {
                continue;
            };
            let table = tablename(&class);
            let first = body_statements(&class)
                .into_iter()
                .filter(|a| is_schema_statement(a, sqlmodel_table))
                .filter(|a| !a.text().contains("use_existing_column"))
                .filter(|a| touched(a))
                .find(|a| !column_migrated(ctx, table.as_deref(), &column_name(a)));
            if let Some(stmt) = first {
                let name = class
                    .field("name")
                    .map(|n| n.text().to_string())
                    .unwrap_or_default();
                out.push(CheckMatch {
                    fix: None,
                    range: stmt.range(),
                    message: Some(format!(
                        "this change edits the table of `{name}` and adds no Alembic migration: the database \
                         and the model disagree after deploy (run `alembic revision --autogenerate` and commit \
                         the migration with its downgrade)"
                    )),
                });
            }
        }
        // Imperative tables: `Table("name", metadata, Column(...), ...)`.
        for call in root.dfs().filter(|n| n.kind() == "call") {
            if callee_tail(&call).as_deref() != Some("Table") {
                continue;
            }
            let Some(args) = call.field("arguments") else {
                continue;
            };
            let table = positional_arg(&call, 0).and_then(|a| string_value(&a));
            let first = args
                .children()
                .filter(|a| a.kind() == "call" && callee_tail(a).as_deref() == Some("Column"))
                .filter(|a| touched(a))
                .find(|a| {
                    let name = positional_arg(a, 0)
                        .and_then(|n| string_value(&n))
                        .unwrap_or_default();
                    !column_migrated(ctx, table.as_deref(), &name)
                });
            if let Some(col) = first {
                out.push(CheckMatch {
                    fix: None,
                    range: col.range(),
                    message: Some(
                        "this change edits a `Table(…)` column and adds no Alembic migration: the database and \
                         the code disagree after deploy"
                            .into(),
                    ),
                });
            }
        }
    }
}
