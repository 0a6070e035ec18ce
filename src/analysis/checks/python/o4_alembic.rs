//! O4 on Alembic migrations (files under a `versions/` folder beside an `env.py`):
//!
//! - a schema-changing `upgrade()` whose `downgrade()` is missing, empty (`pass`, a docstring, `...`) or only
//!   raises: the release cannot be rolled back;
//! - a destructive step in `upgrade()` (`drop_column`, `drop_table`, a narrowing `alter_column(type_=…)`, a
//!   column made or added `NOT NULL` without a server default or a backfill) in a migration that records no
//!   plan. The convention: a comment or docstring of the migration that mentions a backup, a backfill, the
//!   expand/contract phases, that the step is irreversible or accepts data loss, or that the data is unused or
//!   deprecated (see [`PLAN_WORDS`]);
//! - a data migration that reads a whole table into memory (`.fetchall()`, `.all()` on an unfiltered
//!   `select`/`query`) with no batching (`yield_per`, `fetchmany`, `LIMIT`, `partitions`) in the function.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::scopes::same_scope_descendants;
use crate::analysis::semantic::python::syntax::{
    callee, callee_tail, keyword_arg, positional_arg, string_value,
};

/// Operations of `op` / `batch_op` that change the schema.
const SCHEMA_OPS: &[&str] = &[
    "add_column",
    "drop_column",
    "alter_column",
    "create_table",
    "drop_table",
    "rename_table",
    "create_index",
    "drop_index",
    "create_unique_constraint",
    "create_foreign_key",
    "create_primary_key",
    "create_check_constraint",
    "create_exclude_constraint",
    "drop_constraint",
    "create_table_comment",
    "drop_table_comment",
    "batch_alter_table",
];

/// Words in a migration's comments or docstrings that record a plan for a destructive step.
pub const PLAN_WORDS: &[&str] = &[
    "backup",
    "backed up",
    "back up",
    "backfill",
    "irreversible",
    "data loss",
    "expand/contract",
    "expand-contract",
    "expand and contract",
    "contract phase",
    "safe to drop",
    "no longer used",
    "not used",
    "unused",
    "deprecated",
    "plan:",
];

/// Module-level `def name(...)`.
fn module_function<'r>(root: &PyNode<'r>, name: &str) -> Option<PyNode<'r>> {
    root.children()
        .filter_map(|c| match c.kind().as_ref() {
            "function_definition" => Some(c),
            "decorated_definition" => c.field("definition"),
            _ => None,
        })
        .find(|f| f.field("name").is_some_and(|n| n.text() == name))
}

/// Is this call an Alembic operation (`op.x(…)`, `batch_op.x(…)`) named `x`?
fn is_op_call(call: &PyNode<'_>) -> Option<String> {
    let f = call.field("function")?;
    if f.kind() != "attribute" {
        return None;
    }
    let obj = f.field("object")?;
    let o = obj.text();
    let receiver_ok =
        o == "op" || o.ends_with("_op") || o.starts_with("batch") || o == "operations";
    if !receiver_ok {
        return None;
    }
    callee_tail(call)
}

/// Literal SQL passed to `op.execute(...)` (or `sa.text(...)` inside it).
fn execute_sql(call: &PyNode<'_>) -> Option<String> {
    let arg = positional_arg(call, 0)?;
    if let Some(s) = string_value(&arg) {
        return Some(s);
    }
    if arg.kind() == "call" {
        return positional_arg(&arg, 0).and_then(|a| string_value(&a));
    }
    None
}

fn is_schema_sql(sql: &str) -> bool {
    let s = sql.trim_start().to_ascii_uppercase();
    ["CREATE ", "ALTER ", "DROP ", "COMMENT ON", "RENAME "]
        .iter()
        .any(|k| s.starts_with(k))
}

/// Does the function change the schema?
fn changes_schema(func: &PyNode<'_>) -> bool {
    func.dfs().filter(|n| n.kind() == "call").any(|c| {
        let Some(name) = is_op_call(&c) else {
            return false;
        };
        SCHEMA_OPS.contains(&name.as_str())
            || (name == "execute" && execute_sql(&c).is_some_and(|s| is_schema_sql(&s)))
    })
}

/// A body that does nothing: `pass`, `...`, docstrings and comments only.
fn is_trivial_body(func: &PyNode<'_>) -> bool {
    let Some(body) = func.field("body") else {
        return true;
    };
    body.children().all(|s| match s.kind().as_ref() {
        "pass_statement" | "comment" => true,
        "expression_statement" => s
            .child(0)
            .is_some_and(|e| matches!(e.kind().as_ref(), "string" | "ellipsis")),
        _ => false,
    })
}

/// A body whose own statements include a `raise` (outside any branch) and no schema operation.
fn only_raises(func: &PyNode<'_>) -> bool {
    let Some(body) = func.field("body") else {
        return false;
    };
    body.children().any(|s| s.kind() == "raise_statement") && !changes_schema(func)
}

/// The name node of a function definition, where findings about it are anchored.
fn name_range(func: &PyNode<'_>) -> std::ops::Range<usize> {
    let start = func.range().start;
    let end = func.field("name").map_or(start + 3, |n| n.range().end);
    start..end
}

pub struct AlembicNoDowngrade;

impl Check for AlembicNoDowngrade {
    fn id(&self) -> &'static str {
        "alembic-no-downgrade"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["upgrade"]
    }

    fn needs(&self) -> &'static [&'static str] {
        // Where `alembic.ini` puts the migrations (`script_location`, `version_locations`).
        &["**/alembic.ini"]
    }

    fn run(&self, root: &PyNode<'_>, _ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let Some(up) = module_function(root, "upgrade") else {
            return;
        };
        if !changes_schema(&up) {
            return;
        }
        match module_function(root, "downgrade") {
            None => out.push(CheckMatch {
                fix: None,
                range: name_range(&up),
                message: Some(
                    "this `upgrade()` changes the schema and the migration has no `downgrade()`: the release \
                     cannot be rolled back with `alembic downgrade`"
                        .into(),
                ),
            }),
            Some(down) if explains_no_way_back(&down) => {}
            Some(down) if is_trivial_body(&down) => out.push(CheckMatch {
                fix: None,
                range: name_range(&down),
                message: Some(
                    "this `downgrade()` does nothing while `upgrade()` changes the schema: rolling back leaves \
                     the new schema behind for the old code"
                        .into(),
                ),
            }),
            Some(down) if only_raises(&down) => out.push(CheckMatch {
                fix: None,
                range: name_range(&down),
                message: Some(
                    "this `downgrade()` only raises while `upgrade()` changes the schema: the release cannot be \
                     rolled back"
                        .into(),
                ),
            }),
            Some(_) => {}
        }
    }
}

/// Does `upgrade()` call a function of this migration before `offset` (e.g. `_migrate_files_to_s3()`)? The
/// data may be moved there: precision first.
fn helper_before(root: &PyNode<'_>, up: &PyNode<'_>, offset: usize) -> bool {
    let helpers: Vec<String> = root
        .children()
        .filter(|c| c.kind() == "function_definition")
        .filter_map(|f| f.field("name").map(|n| n.text().to_string()))
        .filter(|n| n != "upgrade" && n != "downgrade")
        .collect();
    up.dfs()
        .filter(|n| n.kind() == "call" && n.range().start < offset)
        .filter_map(|c| c.field("function"))
        .any(|f| f.kind() == "identifier" && helpers.iter().any(|h| *h == f.text()))
}

/// The column (`drop_column`) or table (`drop_table`) a drop removes.
fn dropped_name(call: &PyNode<'_>, op: &str) -> Option<String> {
    let args: Vec<String> = (0..3)
        .filter_map(|i| positional_arg(call, i).and_then(|a| string_value(&a)))
        .collect();
    match op {
        "drop_table" => args.first().cloned(),
        // `op.drop_column(table, column)`, `batch_op.drop_column(column)`.
        _ => args.last().cloned(),
    }
}

/// Words in a `downgrade()`'s comments that say, on purpose, why there is no way back.
const NO_WAY_BACK: &[&str] = &[
    "no downgrade",
    "not reversible",
    "cannot be reversed",
    "cannot be undone",
    "can't be undone",
    "one-way",
    "forward-only",
    "irreversible",
];

/// Does the downgrade's own prose record why it does not undo the upgrade? Any comment or docstring of an
/// otherwise empty `downgrade()` written by a person (not Alembic's `### commands auto generated` markers)
/// counts: the decision was made on purpose and written down.
fn explains_no_way_back(down: &PyNode<'_>) -> bool {
    let notes = prose(down);
    NO_WAY_BACK.iter().any(|w| notes.contains(w))
        || notes.lines().any(|l| {
            let l = l.trim_start_matches(['#', ' ', '"', '\'']).trim();
            !l.is_empty() && !l.contains("auto generated") && !l.contains("alembic commands")
        })
}

/// Comments and docstrings of the file, lower-cased, joined.
fn prose(root: &PyNode<'_>) -> String {
    let mut out = String::new();
    for n in root.dfs() {
        let is_doc = n.kind() == "string"
            && n.parent().is_some_and(|p| {
                p.kind() == "expression_statement"
                    && p.children().filter(|c| c.is_named()).count() == 1
            });
        if n.kind() == "comment" || is_doc {
            out.push_str(&n.text().to_lowercase());
            out.push('\n');
        }
    }
    out
}

/// A type expression as `(name, first integer argument)`: `sa.String(length=50)` → `("string", Some(50))`.
fn type_shape(node: &PyNode<'_>) -> (String, Option<u64>) {
    let (head, call) = if node.kind() == "call" {
        (node.field("function"), Some(node))
    } else {
        (Some(node.clone()), None)
    };
    let name = head
        .map(|h| {
            h.text()
                .rsplit('.')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let len = call.and_then(|c| {
        positional_arg(c, 0)
            .or_else(|| keyword_arg(c, "length"))
            .and_then(|a| a.text().parse::<u64>().ok())
    });
    (name, len)
}

/// Does `alter_column` narrow `existing_type` to `type_`? Only shapes we are sure of count.
fn narrows(existing: &PyNode<'_>, new: &PyNode<'_>) -> bool {
    let (old, old_len) = type_shape(existing);
    let (new, new_len) = type_shape(new);
    let is_str = |n: &str| matches!(n, "string" | "varchar" | "unicode" | "char" | "nvarchar");
    let is_text = |n: &str| matches!(n, "text" | "unicodetext");
    let int_rank = |n: &str| match n {
        "smallinteger" | "smallint" => Some(1),
        "integer" | "int" => Some(2),
        "biginteger" | "bigint" => Some(3),
        _ => None,
    };
    if is_str(&new) && new_len.is_some() {
        // `Text` → `String(5_000_000)` is a bound nobody reaches.
        if is_text(&old) || (is_str(&old) && old_len.is_none()) {
            return new_len.is_some_and(|n| n < 65_536);
        }
        if is_str(&old)
            && let (Some(a), Some(b)) = (old_len, new_len)
        {
            return b < a;
        }
    }
    matches!((int_rank(&old), int_rank(&new)), (Some(a), Some(b)) if b < a)
}

fn is_true(n: Option<PyNode<'_>>) -> bool {
    n.is_some_and(|v| v.text() == "True")
}

fn is_false(n: Option<PyNode<'_>>) -> bool {
    n.is_some_and(|v| v.text() == "False")
}

/// Tables `upgrade()` creates itself (adding a NOT NULL column to them is fine).
fn created_tables(up: &PyNode<'_>) -> Vec<String> {
    up.dfs()
        .filter(|n| n.kind() == "call")
        .filter(|c| is_op_call(c).as_deref() == Some("create_table"))
        .filter_map(|c| positional_arg(&c, 0).and_then(|a| string_value(&a)))
        .collect()
}

/// Does `upgrade()` fill rows in before `offset` (an `UPDATE`, `INSERT` or `update(...)` run earlier)?
fn backfills_before(up: &PyNode<'_>, offset: usize) -> bool {
    up.dfs()
        .filter(|n| n.kind() == "call" && n.range().start < offset)
        .any(|c| {
            let t = callee_tail(&c).unwrap_or_default();
            if t == "update" || t == "bulk_update_mappings" {
                return true;
            }
            if t == "execute" {
                let text = c.text().to_ascii_uppercase();
                return text.contains("UPDATE")
                    || text.contains("INSERT")
                    || text.contains("DELETE");
            }
            false
        })
}

/// Does `upgrade()` read or copy `name` (a column or table) with SQL before `offset`? Then its data is carried
/// over by the migration itself.
fn read_before(up: &PyNode<'_>, offset: usize, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    up.dfs()
        .filter(|n| n.kind() == "call" && n.range().start < offset)
        .filter(|c| callee_tail(c).as_deref() == Some("execute"))
        .any(|c| contains_word(&c.text().to_ascii_lowercase(), &name))
}

/// Does `text` contain `word` with no identifier character on either side?
fn contains_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

pub struct AlembicDestructiveWithoutPlan;

impl Check for AlembicDestructiveWithoutPlan {
    fn id(&self) -> &'static str {
        "alembic-destructive-without-plan"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "drop_column",
            "drop_table",
            "alter_column",
            "nullable=False",
        ]
    }

    fn run(&self, root: &PyNode<'_>, _ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let Some(up) = module_function(root, "upgrade") else {
            return;
        };
        let notes = prose(root);
        if PLAN_WORDS.iter().any(|w| notes.contains(w)) {
            return;
        }
        let created = created_tables(&up);
        for call in same_scope_descendants(&up)
            .into_iter()
            .filter(|n| n.kind() == "call")
        {
            let Some(op) = is_op_call(&call) else {
                continue;
            };
            let message = match op.as_str() {
                // Data copied elsewhere first (`UPDATE … SET new_id = …`, then drop the old column), or read by
                // the migration before the drop.
                "drop_column" | "drop_table"
                    if backfills_before(&up, call.range().start)
                        || helper_before(root, &up, call.range().start)
                        || dropped_name(&call, &op)
                            .is_some_and(|n| read_before(&up, call.range().start, &n)) =>
                {
                    None
                }
                "drop_column" => Some(
                    "`drop_column` deletes this column's data for good and the migration records no plan \
                     (backup, backfill or expand/contract)",
                ),
                "drop_table" => {
                    let name = positional_arg(&call, 0).and_then(|a| string_value(&a));
                    if name.is_some_and(|n| created.contains(&n)) {
                        None
                    } else {
                        Some(
                            "`drop_table` deletes the table's rows for good and the migration records no plan \
                             (backup, or why the data is no longer needed)",
                        )
                    }
                }
                "alter_column" => {
                    let narrowing = match (
                        keyword_arg(&call, "existing_type"),
                        keyword_arg(&call, "type_"),
                    ) {
                        (Some(old), Some(new)) => narrows(&old, &new),
                        _ => false,
                    };
                    if narrowing {
                        Some(
                            "this `alter_column` narrows the column's type: longer values fail the migration or \
                             are truncated, and the migration records no plan",
                        )
                    } else if is_false(keyword_arg(&call, "nullable"))
                        // Only a plain "make it NOT NULL" step: with a new type or name it is a column the
                        // migration rebuilds, usually filled just before.
                        && keyword_arg(&call, "type_").is_none()
                        && keyword_arg(&call, "new_column_name").is_none()
                        && keyword_arg(&call, "server_default").is_none()
                        && keyword_arg(&call, "existing_server_default").is_none()
                        && !is_false(keyword_arg(&call, "existing_nullable"))
                        && !backfills_before(&up, call.range().start)
                    {
                        Some(
                            "this `alter_column(nullable=False)` fails on existing NULL rows: backfill them first \
                             (an `UPDATE` before it) or give a `server_default`",
                        )
                    } else {
                        None
                    }
                }
                "add_column" => {
                    let table = positional_arg(&call, 0).and_then(|a| string_value(&a));
                    let column = positional_arg(&call, 1)
                        .or_else(|| positional_arg(&call, 0).filter(|a| a.kind() == "call"));
                    let column = column.filter(|c| {
                        c.kind() == "call" && callee_tail(c).as_deref() == Some("Column")
                    });
                    match column {
                        Some(col)
                            if is_false(keyword_arg(&col, "nullable"))
                                && keyword_arg(&col, "server_default").is_none()
                                && !is_true(keyword_arg(&col, "primary_key"))
                                && !col.text().contains("Computed(")
                                && !col.text().contains("Identity(")
                                && !table.is_some_and(|t| created.contains(&t))
                                && !backfills_before(&up, call.range().start) =>
                        {
                            Some(
                                "this NOT NULL column has no `server_default`: adding it fails on a table that \
                                 already has rows; add it nullable, backfill, then set NOT NULL",
                            )
                        }
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(m) = message {
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(m.to_string()),
                });
            }
        }
    }
}

/// Text in a function that shows rows are read in batches.
const BATCHING: &[&str] = &[
    "yield_per",
    "fetchmany",
    "partitions(",
    "stream_results",
    "limit(",
    "limit ",
    "offset",
    "batch_size",
    "chunk",
    "server_side_cursors",
];

/// Queries that read catalogues or aggregates, not a table's rows.
const SMALL_RESULTS: &[&str] = &[
    "pg_",
    "information_schema",
    "sqlite_master",
    "count(",
    "max(",
    "min(",
    "distinct",
    "group by",
    "where",
    ".filter(",
    ".filter_by(",
    ".where(",
    "alembic_version",
];

pub struct AlembicLoadsWholeTable;

impl Check for AlembicLoadsWholeTable {
    fn id(&self) -> &'static str {
        "alembic-loads-whole-table"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["fetchall", ".all()"]
    }

    fn run(&self, root: &PyNode<'_>, _ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        for name in ["upgrade", "downgrade"] {
            let Some(func) = module_function(root, name) else {
                continue;
            };
            let body = func.text().to_lowercase();
            if BATCHING.iter().any(|b| body.contains(b)) {
                continue;
            }
            for call in func.dfs().filter(|n| n.kind() == "call") {
                let tail = callee_tail(&call).unwrap_or_default();
                if tail != "fetchall" && tail != "all" {
                    continue;
                }
                // The query this reads: the receiver chain, e.g. `conn.execute(sa.text("SELECT …"))`.
                let Some(recv) = call.field("function").and_then(|f| f.field("object")) else {
                    continue;
                };
                let chain = recv.text().to_lowercase();
                let full = callee(&call).unwrap_or_default();
                let reads_rows = chain.contains("select")
                    || chain.contains(".query(")
                    || (chain.contains("execute(") && chain.contains("table"));
                if !reads_rows || full.contains("__") {
                    continue;
                }
                if SMALL_RESULTS.iter().any(|s| chain.contains(s)) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "`.{tail}()` loads every row of the table into memory in `{name}()`: on a large table \
                         the migration runs out of memory or holds its locks for minutes; read in batches \
                         (`yield_per`, `LIMIT`/keyset pages) or do it in SQL"
                    )),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn shape(src: &str) -> (String, Option<u64>) {
        let doc = Lang::Python.ast_grep(src);
        let root = doc.root();
        let Some(e) = root
            .dfs()
            .find(|n| n.kind() == "call" || n.kind() == "attribute")
        else {
            panic!("no expression")
        };
        type_shape(&e)
    }

    #[test]
    fn type_shapes() {
        assert_eq!(shape("sa.String(length=50)\n"), ("string".into(), Some(50)));
        assert_eq!(shape("sa.VARCHAR(20)\n"), ("varchar".into(), Some(20)));
        assert_eq!(shape("sa.Text()\n"), ("text".into(), None));
    }
}
