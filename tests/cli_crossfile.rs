//! Cross-file rules on real git repositories: a model change needs a migration, a new setting needs its line
//! in `.env.example`; findings land on the changed line that caused them, and only there.

mod common;
use common::{TestRepo, run_json, triples};

const MODELS_BASE: &str = "\
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = \"users\"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
";

/// The head adds `locale` on line 14.
const MODELS_HEAD: &str = "\
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = \"users\"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    locale: Mapped[str] = mapped_column(String(16), default=\"en\")
";

const CONFIG_BASE: &str = "\
import os

DATABASE_URL = os.environ[\"DATABASE_URL\"]
LEGACY_FLAG = os.getenv(\"LEGACY_FLAG\", \"0\")
";

/// The head reads `NEW_X` (line 5), which `.env.example` does not list.
const CONFIG_HEAD: &str = "\
import os

DATABASE_URL = os.environ[\"DATABASE_URL\"]
LEGACY_FLAG = os.getenv(\"LEGACY_FLAG\", \"0\")
NEW_X = os.getenv(\"NEW_X\")
";

const ENV_PY: &str = "\
from alembic import context

from app.models import Base

target_metadata = Base.metadata
";

const INITIAL: &str = "\
\"\"\"initial\"\"\"
import sqlalchemy as sa
from alembic import op

revision = \"0001\"
down_revision = None


def upgrade() -> None:
    op.create_table(
        \"users\",
        sa.Column(\"id\", sa.Integer(), primary_key=True),
        sa.Column(\"email\", sa.String(320), unique=True),
    )


def downgrade() -> None:
    op.drop_table(\"users\")
";

/// The same migration in raw SQL: no quoted column name, so only the change set ties it to the model change.
const LOCALE_SQL: &str = "\
\"\"\"users.locale\"\"\"
from alembic import op

revision = \"0002\"
down_revision = \"0001\"


def upgrade() -> None:
    op.execute(\"ALTER TABLE users ADD COLUMN locale varchar(16)\")


def downgrade() -> None:
    op.execute(\"ALTER TABLE users DROP COLUMN locale\")
";

const LOCALE: &str = "\
\"\"\"users.locale\"\"\"
import sqlalchemy as sa
from alembic import op

revision = \"0002\"
down_revision = \"0001\"


def upgrade() -> None:
    op.add_column(\"users\", sa.Column(\"locale\", sa.String(16), nullable=True))


def downgrade() -> None:
    op.drop_column(\"users\", \"locale\")
";

fn base_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("app/models.py", MODELS_BASE);
    repo.write("app/core/config.py", CONFIG_BASE);
    repo.write("alembic/env.py", ENV_PY);
    repo.write("alembic/versions/0001_initial.py", INITIAL);
    repo.write(
        ".env.example",
        "DATABASE_URL=postgresql://app:changethis@localhost/app\n",
    );
    // The undocumented-setting detector is opt-in.
    repo.write(
        ".github/prodaudit.yml",
        "rules:\n  enable: [O3-optional-setting-not-in-env-example]\n",
    );
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo
}

fn cross_file(report: &serde_json::Value) -> Vec<(String, String, u64)> {
    triples(report)
        .into_iter()
        .filter(|(c, _, _)| c.starts_with("O4-") || c.contains("env-example"))
        .collect()
}

#[test]
fn a_column_without_migration_and_an_undocumented_setting_are_reported_on_their_lines() {
    let repo = base_repo();
    repo.write("app/models.py", MODELS_HEAD);
    repo.write("app/core/config.py", CONFIG_HEAD);
    repo.commit("add locale and NEW_X");
    let (code, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(
        triples(&report),
        vec![
            (
                "O3-optional-setting-not-in-env-example".to_string(),
                "app/core/config.py".to_string(),
                5
            ),
            (
                "O4-model-change-without-migration".to_string(),
                "app/models.py".to_string(),
                14
            ),
        ]
    );
    assert_eq!(code, 1, "the model change is high");
    let o3 = &report["findings"][0];
    assert!(
        o3["message"]
            .as_str()
            .is_some_and(|m| m.contains("NEW_X") && m.contains(".env.example")),
        "{o3}"
    );
    assert!(
        report["findings"][1]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`User`"))
    );
}

#[test]
fn a_change_with_its_migration_and_documented_setting_is_clean() {
    let repo = base_repo();
    repo.write("app/models.py", MODELS_HEAD);
    repo.write("app/core/config.py", CONFIG_HEAD);
    repo.write("alembic/versions/0002_users_locale.py", LOCALE);
    repo.write(
        ".env.example",
        "DATABASE_URL=postgresql://app:changethis@localhost/app\n# NEW_X=\n",
    );
    repo.commit("add locale with its migration, document NEW_X");
    let (code, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(cross_file(&report), vec![], "{report}");
    assert_eq!(code, 0);
}

#[test]
fn a_migration_in_a_folder_the_configuration_excludes_still_counts() {
    let repo = base_repo();
    repo.write(
        ".github/prodaudit.yml",
        "paths:\n  exclude: ['alembic/**']\n",
    );
    repo.commit("exclude migrations from the audit");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["merge", "-q", "--ff-only", "feature"]);
    repo.git(&["checkout", "-q", "-b", "feature2"]);
    repo.write("app/models.py", MODELS_HEAD);
    repo.write("alembic/versions/0002_users_locale.py", LOCALE_SQL);
    repo.commit("add locale with its migration");
    let (_, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature2"],
    );
    assert_eq!(cross_file(&report), vec![], "{report}");
}

#[test]
fn unchanged_lines_are_left_alone_though_all_lines_sees_them() {
    let repo = base_repo();
    repo.write("app/core/config.py", CONFIG_HEAD);
    repo.commit("add NEW_X");
    let (_, change) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(
        cross_file(&change),
        vec![(
            "O3-optional-setting-not-in-env-example".to_string(),
            "app/core/config.py".to_string(),
            5
        )]
    );
    // Every line of the tree: the old undocumented LEGACY_FLAG (line 4) shows up too, and no migration
    // finding, since every file counts as changed there.
    let (_, all) = run_json(repo.path(), &["audit", "--all-lines", "--fail-on", "never"]);
    assert_eq!(
        cross_file(&all),
        vec![
            (
                "O3-optional-setting-not-in-env-example".to_string(),
                "app/core/config.py".to_string(),
                4
            ),
            (
                "O3-optional-setting-not-in-env-example".to_string(),
                "app/core/config.py".to_string(),
                5
            ),
        ]
    );
}

#[test]
fn real_looking_secrets_in_env_example_are_reported_on_changed_lines_only() {
    let repo = TestRepo::new();
    // An old real-looking key (line 1) that the change does not touch.
    repo.write(
        ".env.example",
        "JWT_SECRET=q8Zr2LkT0vWm5YxN3pHs7JdC6FgB1aEu\nOPENAI_API_KEY=sk-...\n",
    );
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write(
        ".env.example",
        "JWT_SECRET=q8Zr2LkT0vWm5YxN3pHs7JdC6FgB1aEu\n\
         OPENAI_API_KEY=sk-proj-4fQm9ZkR2tVx7LbN0pWc3HsJ8dYe5GaU1iTo6KqMzBr\n\
         SECRET_KEY=9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a\n\
         # prodaudit: ignore[O3] the emulator's published key\n\
         STORAGE_API_KEY=Tk3w9QzR7mLp2XvB8nYc4HsJ6dFg1aEu\n\
         ANTHROPIC_API_KEY=sk-ant-...\n",
    );
    repo.commit("real values in the example file");
    let (code, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(
        triples(&report),
        vec![
            (
                "O3-env-example-provider-key".to_string(),
                ".env.example".to_string(),
                2
            ),
            (
                "O3-env-example-secret-value".to_string(),
                ".env.example".to_string(),
                3
            ),
        ],
        "{report}"
    );
    assert_eq!(code, 1, "a provider key is critical");
    assert_eq!(report["summary"]["suppressed"], 1, "{report}");
    assert_eq!(report["findings"][0]["severity"], "critical");
    assert!(
        report["findings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("OPENAI_API_KEY") && m.contains("OpenAI API key")),
        "{report}"
    );
    // Every line: the untouched JWT_SECRET on line 1 shows up too.
    let (_, all) = run_json(repo.path(), &["audit", "--all-lines", "--fail-on", "never"]);
    let lines: Vec<u64> = triples(&all).into_iter().map(|(_, _, l)| l).collect();
    assert_eq!(lines, vec![1, 2, 3], "{all}");
}

const COMPOSE_PROD: &str = "\
services:
  myproxy:
    image: registry.local/edge/myproxy:2.1
    ports:
      - \"443:443\"
  api:
    build: .
    ports:
      - \"8000:8000\"
";

fn published_ports(report: &serde_json::Value) -> Vec<(String, String, u64)> {
    triples(report)
        .into_iter()
        .filter(|(c, _, _)| c == "I4-compose-published-port")
        .collect()
}

/// A pull request adding a production Compose file, on a base that has `config` as `.github/prodaudit.yml`.
fn compose_change(config: Option<&str>) -> TestRepo {
    let repo = TestRepo::new();
    repo.write("README.md", "x\n");
    if let Some(config) = config {
        repo.write(".github/prodaudit.yml", config);
    }
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("deploy/docker-compose.prod.yml", COMPOSE_PROD);
    repo.commit("compose");
    repo
}

#[test]
fn reverse_proxies_from_the_repository_config_may_publish_ports() {
    let path = "deploy/docker-compose.prod.yml".to_string();
    let audit = &[
        "audit",
        "--base",
        "main",
        "--head",
        "feature",
        "--fail-on",
        "never",
    ];
    // Without the config no service is known as the proxy: the stack is reached through the service it builds
    // (`api`, not reported), and the unknown image publishing beside it is reported.
    let (_, default) = run_json(compose_change(None).path(), audit);
    assert_eq!(
        published_ports(&default),
        vec![("I4-compose-published-port".to_string(), path.clone(), 4)],
        "{default}"
    );
    let configured = compose_change(Some("infra:\n  reverse_proxies: [myproxy]\n"));
    let (_, report) = run_json(configured.path(), audit);
    assert_eq!(
        published_ports(&report),
        vec![("I4-compose-published-port".to_string(), path, 8)],
        "only `api` is left: {report}"
    );
    // A bad value is a clear error naming the key.
    let bad = compose_change(Some("infra:\n  reverse_proxies: caddy\n"));
    let out = common::run(bad.path(), audit);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("infra.reverse_proxies: expected a list"),
        "{stderr}"
    );
}

const API_DOCKERFILE: &str = "\
FROM python:3.12-slim
WORKDIR /app
COPY . .
CMD [\"uvicorn\", \"app.main:app\", \"--host\", \"0.0.0.0\", \"--port\", \"8000\"]
";

/// The head adds the `api` service (line 4, it publishes a port) and a `worker` (no port, not an app server).
const COMPOSE_BASE: &str = "\
services:
  db:
    image: postgres:16.4
";
const COMPOSE_HEAD: &str = "\
services:
  db:
    image: postgres:16.4
  api:
    build: ./backend
    ports:
      - \"127.0.0.1:8000:8000\"
  worker:
    build: ./backend
    command: celery -A app.worker worker
";

const K8S_HEAD: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  template:
    spec:
      containers:
        - name: api
          image: ghcr.io/acme/api:1.8.0
          command: [\"gunicorn\", \"app.main:app\", \"-k\", \"uvicorn.workers.UvicornWorker\"]
          resources:
            requests: {cpu: 250m, memory: 256Mi}
            limits: {cpu: \"1\", memory: 512Mi}
";

fn f7(report: &serde_json::Value) -> Vec<(String, String, u64)> {
    triples(report)
        .into_iter()
        .filter(|(c, _, _)| c.starts_with("F7-"))
        .collect()
}

fn deploy_change(dockerfile: &str) -> TestRepo {
    let repo = TestRepo::new();
    repo.write("backend/Dockerfile", dockerfile);
    repo.write("docker-compose.yml", COMPOSE_BASE);
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("docker-compose.yml", COMPOSE_HEAD);
    repo.write("k8s/api.yaml", K8S_HEAD);
    repo.commit("deploy the api");
    repo
}

#[test]
fn a_deployment_added_for_the_app_without_a_readiness_signal_is_reported_on_its_line() {
    let audit = &[
        "audit",
        "--base",
        "main",
        "--head",
        "feature",
        "--fail-on",
        "never",
    ];
    let (_, report) = run_json(deploy_change(API_DOCKERFILE).path(), audit);
    assert_eq!(
        f7(&report),
        vec![
            (
                "F7-compose-app-no-healthcheck".to_string(),
                "docker-compose.yml".to_string(),
                4
            ),
            (
                "F7-k8s-no-probes".to_string(),
                "k8s/api.yaml".to_string(),
                10
            ),
        ],
        "{report}"
    );
    let compose = report["findings"]
        .as_array()
        .and_then(|f| {
            f.iter()
                .find(|f| f["check"] == "F7-compose-app-no-healthcheck")
        })
        .cloned()
        .unwrap_or_default();
    assert!(
        compose["message"]
            .as_str()
            .is_some_and(|m| m.contains("`backend/Dockerfile`")),
        "{compose}"
    );
    // The Dockerfile the service builds has a HEALTHCHECK: Compose uses it, nothing to report there.
    let with_check = API_DOCKERFILE.replace(
        "CMD [",
        "HEALTHCHECK CMD python -c \"import urllib.request as u; u.urlopen('http://localhost:8000/readyz')\"\nCMD [",
    );
    let (_, report) = run_json(deploy_change(&with_check).path(), audit);
    assert_eq!(
        f7(&report),
        vec![(
            "F7-k8s-no-probes".to_string(),
            "k8s/api.yaml".to_string(),
            10
        )],
        "{report}"
    );
}

#[test]
fn a_service_others_depend_on_gets_one_health_finding_not_two() {
    let repo = TestRepo::new();
    repo.write("backend/Dockerfile", API_DOCKERFILE);
    repo.write("docker-compose.yml", COMPOSE_BASE);
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write(
        "docker-compose.yml",
        &format!(
            "{COMPOSE_HEAD}  web:\n    image: ghcr.io/acme/web:2.0.0\n    depends_on: [api]\n"
        ),
    );
    repo.commit("deploy the api and a web app using it");
    let (_, report) = run_json(
        repo.path(),
        &[
            "audit",
            "--base",
            "main",
            "--head",
            "feature",
            "--fail-on",
            "never",
        ],
    );
    assert_eq!(
        f7(&report),
        vec![(
            "F7-compose-dependency-without-healthcheck".to_string(),
            "docker-compose.yml".to_string(),
            4
        )],
        "{report}"
    );
}

const DUE_DATE: &str = "\
\"\"\"add invoices.due_date\"\"\"
import sqlalchemy as sa
from alembic import op

revision = \"0002\"
down_revision = \"0001\"


def upgrade() -> None:
    op.add_column(\"invoices\", sa.Column(\"due_date\", sa.Date(), nullable=True))


def downgrade() -> None:
    pass
";

#[test]
fn migrations_are_found_where_alembic_ini_puts_them() {
    let repo = TestRepo::new();
    repo.write(
        "billing/alembic.ini",
        "[alembic]\nscript_location = %(here)s/schema\nversion_locations = %(here)s/revisions\n",
    );
    repo.write("billing/schema/env.py", ENV_PY);
    repo.write("billing/revisions/0001_initial.py", INITIAL);
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("billing/revisions/0002_due_date.py", DUE_DATE);
    repo.commit("add due_date");
    let audit = &[
        "audit",
        "--base",
        "main",
        "--head",
        "feature",
        "--fail-on",
        "never",
    ];
    let (_, report) = run_json(repo.path(), audit);
    assert_eq!(
        cross_file(&report),
        vec![(
            "O4-alembic-no-downgrade".to_string(),
            "billing/revisions/0002_due_date.py".to_string(),
            13
        )],
        "{report}"
    );
    // The same file where no alembic.ini says so is plain Python.
    let other = TestRepo::new();
    other.write("README.md", "x\n");
    other.commit("base");
    other.git(&["checkout", "-q", "-b", "feature"]);
    other.write("billing/revisions/0002_due_date.py", DUE_DATE);
    other.commit("add due_date");
    let (_, report) = run_json(other.path(), audit);
    assert_eq!(cross_file(&report), vec![], "{report}");
}
