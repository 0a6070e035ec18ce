//! F1: a SQLAlchemy engine for PostgreSQL created without a statement timeout.
//!
//! PostgreSQL runs a statement for as long as it takes unless `statement_timeout` is set, and neither asyncpg nor
//! psycopg put a bound on waiting for the answer by default. A query stuck behind a lock or a plan gone wrong
//! then holds its pooled connection and the request until the pool is exhausted. The bound is set where the
//! engine is built: `connect_args={"server_settings": {"statement_timeout": "30000"}}` or
//! `connect_args={"command_timeout": 30}` for asyncpg, `connect_args={"options": "-c statement_timeout=30000"}`
//! for psycopg.
//!
//! Reported only when the engine is clearly PostgreSQL (a `postgres…://` URL, or a URL from elsewhere in a file or
//! repository that uses asyncpg/psycopg) and nothing in the file mentions a statement or command timeout.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::syntax::{
    callee, has_kwargs_splat, keyword_arg, positional_arg, string_value,
};
use regex::Regex;
use std::sync::OnceLock;

pub struct DbEngineNoStatementTimeout;

fn postgres_evidence_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)postgres|asyncpg|psycopg").expect("valid regex"))
}

fn pg_dependency_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)\b(asyncpg|psycopg)").expect("valid regex"))
}

/// Is `name` (a callee) SQLAlchemy's or SQLModel's engine constructor, given the file's imports? `Some(true)` for
/// the async one. Read by qualified name, so `sa.create_engine` after `import sqlalchemy as sa` and `make_engine`
/// after `from sqlalchemy import create_engine as make_engine` count; a name no import binds does not.
fn engine_constructor(name: &str, imports: &Imports) -> Option<bool> {
    let first = name.split('.').next().unwrap_or(name);
    if !imports.binds(first) {
        return None;
    }
    let qualified = imports.resolve(name);
    let (module, func) = qualified.rsplit_once('.')?;
    let is_async = match func {
        "create_engine" => false,
        "create_async_engine" => true,
        _ => return None,
    };
    matches!(module, "sqlalchemy" | "sqlalchemy.ext.asyncio" | "sqlmodel").then_some(is_async)
}

impl Check for DbEngineNoStatementTimeout {
    fn id(&self) -> &'static str {
        "db-engine-no-statement-timeout"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["create_engine", "create_async_engine"]
    }
    fn needs(&self) -> &'static [&'static str] {
        &[
            "**/pyproject.toml",
            "**/requirements*.txt",
            "**/requirements/*.txt",
            "**/requirements*.in",
            "**/Pipfile",
            "**/setup.cfg",
        ]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let repo_uses_pg = ctx
            .repo
            .files
            .values()
            .any(|t| pg_dependency_re().is_match(t));
        self.find(root, ctx, repo_uses_pg, out);
    }
}

impl DbEngineNoStatementTimeout {
    fn find<'r>(
        &self,
        root: &PyNode<'r>,
        ctx: &FileContext<'r>,
        repo_uses_pg: bool,
        out: &mut Vec<CheckMatch>,
    ) {
        let file = root.text();
        // A timeout set anywhere in the file (connect_args built apart, an event listener running
        // `SET statement_timeout`, a helper): trust it.
        if file.contains("statement_timeout") || file.contains("command_timeout") {
            return;
        }
        let file_mentions_pg = postgres_evidence_re().is_match(&file);
        let file_mentions_other = file.contains("sqlite") || file.contains("mysql");
        let imports = ctx.imports(root);
        for call in root.dfs().filter(|n| n.kind() == "call") {
            let Some(name) = callee(&call) else { continue };
            let Some(is_async) = engine_constructor(&name, &imports) else {
                continue;
            };
            if has_kwargs_splat(&call) {
                continue;
            }
            let Some(url) = keyword_arg(&call, "url").or_else(|| positional_arg(&call, 0)) else {
                continue;
            };
            let url_text = url.text().to_ascii_lowercase();
            if [
                "sqlite", "mysql", "mssql", "oracle", "duckdb", "timeout", "options",
            ]
            .iter()
            .any(|w| url_text.contains(w))
            {
                continue;
            }
            let is_pg = match string_value(&url) {
                Some(v) => v.to_ascii_lowercase().starts_with("postgres"),
                None if url.kind() == "string" => url_text.contains("postgres"),
                None => !file_mentions_other && (file_mentions_pg || repo_uses_pg),
            };
            if !is_pg {
                continue;
            }
            // connect_args built somewhere we cannot see: trust it.
            if let Some(ca) = keyword_arg(&call, "connect_args")
                && ca.kind() != "dictionary"
            {
                continue;
            }
            let fix = if is_async {
                "pass `connect_args={\"server_settings\": {\"statement_timeout\": \"30000\"}}` (asyncpg; or `{\"command_timeout\": 30}`)"
            } else {
                "pass `connect_args={\"options\": \"-c statement_timeout=30000\"}` (psycopg)"
            };
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{name}(…)` sets no statement timeout: a slow or lock-blocked query holds its connection and the request until PostgreSQL finishes it; {fix} (not visible here: a timeout set on the database role or in the URL's environment value)"
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn ctor(src: &str, name: &str) -> Option<bool> {
        let doc = Lang::Python.ast_grep(src);
        engine_constructor(
            name,
            &Imports::of_file(&FileContext::detached(), &doc.root()),
        )
    }

    #[test]
    fn recognises_engine_imports() {
        let f = "from sqlalchemy.ext.asyncio import (\n    AsyncSession,\n    create_async_engine,\n)\n";
        assert_eq!(ctor(f, "create_async_engine"), Some(true));
        assert_eq!(ctor(f, "create_engine"), None);
        assert_eq!(
            ctor(
                "from sqlmodel import Session, create_engine\n",
                "create_engine"
            ),
            Some(false)
        );
        assert_eq!(
            ctor(
                "from polar.kit.db.postgres import create_async_engine\n",
                "create_async_engine"
            ),
            None
        );
        assert_eq!(
            ctor("import sqlalchemy as sa\n", "sa.create_engine"),
            Some(false)
        );
        assert_eq!(
            ctor("import sqlalchemy\n", "sqlalchemy.create_engine"),
            Some(false)
        );
        assert_eq!(ctor("import sqlalchemy as sa\n", "db.create_engine"), None);
        assert_eq!(
            ctor(
                "from sqlalchemy import create_engine as make_engine\n",
                "make_engine"
            ),
            Some(false)
        );
        assert_eq!(
            ctor(
                "import sqlalchemy.ext.asyncio as sa_async\n",
                "sa_async.create_async_engine"
            ),
            Some(true)
        );
    }
}
