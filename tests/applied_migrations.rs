//! Applied Alembic migrations: in a whole-file audit, a migration that a later migration builds on is history
//! (it has run wherever the later one has) and its findings are held back; the newest migration is reported, and a
//! change that edits an old migration is reviewed as usual.

use prodaudit::analysis::context::RepoContext;
use prodaudit::analysis::repo_model::{NameBudget, build, python_facts};
use prodaudit::analysis::{Engine, Overrides, RuleSet};
use prodaudit::diff::LineSet;
use std::collections::BTreeMap;
use std::sync::Arc;

const ENV: &str = "from alembic import context\n\ncontext.configure(url=URL)\n";

const OLD: &str = "\
\"\"\"drop legacy column\"\"\"
from alembic import op

revision = \"a1b2c3\"
down_revision = None


def upgrade():
    op.drop_column(\"user\", \"legacy_flags\")


def downgrade():
    pass
";

const NEW: &str = "\
\"\"\"drop another column\"\"\"
from alembic import op

revision: str = \"d4e5f6\"
down_revision: str | None = \"a1b2c3\"


def upgrade():
    op.drop_column(\"user\", \"nickname\")


def downgrade():
    pass
";

fn engine() -> Engine {
    match RuleSet::builtin() {
        Ok(r) => Engine::new(r, Overrides::default()),
        Err(e) => panic!("built-in rules do not load: {e}"),
    }
}

fn repo() -> RepoContext {
    let files = [
        ("migrations/env.py", ENV),
        ("migrations/versions/a1b2c3_drop_legacy.py", OLD),
        ("migrations/versions/d4e5f6_drop_nickname.py", NEW),
    ];
    let budget = NameBudget::new();
    let python: BTreeMap<String, _> = files
        .iter()
        .map(|(p, t)| (p.to_string(), python_facts(p, Some(t.as_bytes()), &budget)))
        .collect();
    RepoContext {
        paths: files.iter().map(|(p, _)| p.to_string()).collect(),
        reach: Some(Arc::new(build(&python, &[], budget.counted()))),
        ..Default::default()
    }
}

fn o4(path: &str, text: &str, changed: Option<&LineSet>) -> (usize, usize) {
    let out = engine().analyze_in(path, text, changed, &repo(), None);
    let found = out.findings.iter().filter(|f| f.rule == "O4").count();
    (found, out.not_service)
}

#[test]
fn an_applied_migration_is_held_back_in_a_whole_file_audit() {
    let (found, held) = o4("migrations/versions/a1b2c3_drop_legacy.py", OLD, None);
    assert_eq!(found, 0);
    assert!(
        held > 0,
        "the old migration's findings are counted as held back"
    );
    // The newest migration is reported.
    let (found, _) = o4("migrations/versions/d4e5f6_drop_nickname.py", NEW, None);
    assert!(found > 0);
}

#[test]
fn a_change_that_edits_an_applied_migration_is_reviewed() {
    let mut lines = LineSet::default();
    lines.insert(9);
    let (found, _) = o4(
        "migrations/versions/a1b2c3_drop_legacy.py",
        OLD,
        Some(&lines),
    );
    assert!(found > 0);
}
