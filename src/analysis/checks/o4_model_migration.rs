//! O4 across files: the change edits a SQLAlchemy/SQLModel table definition (a column, `__table_args__`, or a
//! `Column` of a `Table(...)`) and adds or modifies no Alembic migration, in a repository that has an Alembic
//! tree (a `versions/` folder beside an `env.py`).
//!
//! Only judged when the tree is known and the change set is known: never on a file analysed alone. Relationships
//! (`relationship(…)`, `Relationship(…)`) do not change the schema and are not counted. One finding per class:
//! on its first column line the change touches.

use super::{Check, CheckMatch, PyNode, callee_tail};
use crate::analysis::context::FileContext;
use crate::analysis::language::FileKind;

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
    if tail
        .as_deref()
        .is_some_and(|t| NOT_COLUMNS.contains(&t))
    {
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

impl Check for ModelChangeWithoutMigration {
    fn id(&self) -> &'static str {
        "model-change-without-migration"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["Column", "mapped_column", "Mapped[", "table=True", "__tablename__"]
    }

    fn needs(&self) -> &'static [&'static str] {
        // Only the tree is read (to find the Alembic folders); these tiny files are fetched with it.
        &["**/alembic.ini"]
    }

    fn run(&self, _root: &PyNode<'_>, _out: &mut Vec<CheckMatch>) {}

    fn run_in(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if ctx.kind != FileKind::Python || ctx.repo.has_alembic_tree() != Some(true) {
            return;
        }
        let migrated = ctx
            .repo
            .changed
            .iter()
            .any(|p| ctx.repo.kind_of(p, None) == Some(FileKind::Alembic));
        if migrated {
            return;
        }
        let touched = |n: &PyNode<'_>| {
            ctx.lines.is_none_or(|l| {
                l.intersects(n.start_pos().line() + 1, n.end_pos().line() + 1)
            })
        };
        for class in root.dfs().filter(|n| n.kind() == "class_definition") {
            let Some(sqlmodel_table) = table_class(&class) else {
                continue;
            };
            let first = body_statements(&class)
                .into_iter()
                .filter(|a| is_schema_statement(a, sqlmodel_table))
                .find(|a| touched(a));
            if let Some(stmt) = first {
                let name = class
                    .field("name")
                    .map(|n| n.text().to_string())
                    .unwrap_or_default();
                out.push(CheckMatch {
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
            let first = args
                .children()
                .filter(|a| a.kind() == "call" && callee_tail(a).as_deref() == Some("Column"))
                .find(|a| touched(a));
            if let Some(col) = first {
                out.push(CheckMatch {
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
