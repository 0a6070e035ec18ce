//! What keeps comments trustworthy on code nobody here wrote: findings blamed on the change only through their
//! anchor line, findings held back in code that is not the service, opt-in style detectors.

mod common;
use common::{TestRepo, places_of, run, run_json, triples};

/// An HTTP call without a timeout (F1-requests-no-timeout, high) spread over several lines.
const OLD_CALL: &str = "\
import requests


def fetch(url):
    return requests.get(
        url,
        params={\"q\": \"old prompt\"},
    )
";

#[test]
fn editing_inside_an_old_call_does_not_blame_the_change_for_it() {
    let repo = TestRepo::new();
    repo.write("app/client.py", OLD_CALL);
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    // Only the argument on line 7 changes: the call (anchored at line 5) is older than the change.
    repo.write(
        "app/client.py",
        &OLD_CALL.replace("old prompt", "new prompt"),
    );
    repo.commit("reword the prompt");
    let (_, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(triples(&report), vec![], "{report}");

    // The same call written by the change is the change's.
    repo.write(
        "app/client.py",
        &format!(
            "{OLD_CALL}\n\ndef fetch_again(url):\n    return requests.get(\n        url,\n    )\n"
        ),
    );
    repo.commit("another call");
    let (code, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(code, 1);
    assert_eq!(
        triples(&report),
        vec![(
            "F1-requests-no-timeout".to_string(),
            "app/client.py".to_string(),
            12
        )]
    );
}

/// A high finding (C5-blocking-sleep) and a medium one (C5-blocking-file-io).
const BLOCKING: &str = "import time\n\n\nasync def seed():\n    time.sleep(1)\n\n\nasync def load(path):\n    with open(path) as f:\n        return f.read()\n";

fn held_back_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("dev/seed.py", BLOCKING);
    repo.write("tools/sync.py", BLOCKING);
    repo.write("app/client.py", BLOCKING);
    repo.commit("base");
    repo
}

fn checks_by_path(report: &serde_json::Value) -> Vec<String> {
    triples(report).into_iter().map(|(_, p, _)| p).collect()
}

#[test]
fn findings_in_code_that_is_not_the_service_are_held_back_and_counted() {
    let repo = held_back_repo();
    let (code, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(code, 1, "{report}");
    // Both the high and the medium finding of `dev/seed.py` are held back; the others' are reported.
    assert_eq!(
        checks_by_path(&report),
        vec![
            "app/client.py".to_string(),
            "app/client.py".to_string(),
            "tools/sync.py".to_string(),
            "tools/sync.py".to_string()
        ]
    );
    assert_eq!(report["summary"]["not_service"], 2, "{report}");
    // The text summary says so too.
    let out = run(repo.path(), &["audit", "--all-lines", "--no-progress"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 held back (not the service)"), "{text}");
}

#[test]
fn the_repository_config_says_what_is_and_is_not_the_service() {
    let repo = held_back_repo();
    repo.write(
        ".github/prodaudit.yml",
        "paths:\n  service: [\"dev/seed.py\"]\n  not_service: [\"tools/**\"]\n",
    );
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(
        checks_by_path(&report),
        vec![
            "app/client.py".to_string(),
            "app/client.py".to_string(),
            "dev/seed.py".to_string(),
            "dev/seed.py".to_string()
        ]
    );
    assert_eq!(report["summary"]["not_service"], 2);

    repo.write(
        ".github/prodaudit.yml",
        "paths:\n  report_not_service: true\n",
    );
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(checks_by_path(&report).len(), 6, "{report}");
    assert_eq!(report["summary"]["not_service"], 0);
}

const FSTRING_LOG: &str = "\
import logging

logger = logging.getLogger(__name__)


def greet(name):
    logger.info(f\"hello {name}\")
";

#[test]
fn fstring_log_is_opt_in() {
    let repo = TestRepo::new();
    repo.write("app/greet.py", FSTRING_LOG);
    repo.commit("base");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(triples(&report), vec![], "{report}");

    repo.write(
        ".github/prodaudit.yml",
        "rules:\n  enable: [O1-fstring-log]\n",
    );
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(
        triples(&report),
        vec![("O1-fstring-log".to_string(), "app/greet.py".to_string(), 7)]
    );

    // A rule id enables its opt-in detectors; a misspelt id is an error naming the key.
    repo.write(".github/prodaudit.yml", "rules:\n  enable: [o1]\n");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(triples(&report).len(), 1);
    repo.write(
        ".github/prodaudit.yml",
        "rules:\n  enable: [O1-fstring-logs]\n",
    );
    let out = run(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rules.enable: unknown rule or check `O1-fstring-logs`"),
        "{err}"
    );

    // `rules list` says it is opt-in.
    let out = run(repo.path(), &["rules", "list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("O1-fstring-log") && l.contains("opt-in")),
        "{text}"
    );
}

/// A module no entry point imports: its critical/high findings are held back (the repository model), while the
/// same code reached from the FastAPI app is reported; a shadowed `tools.py` beside `tools/` is never run.
#[test]
fn unreached_and_shadowed_modules_hold_back_critical_and_high() {
    const CALL: &str = "import requests\n\n\ndef fetch(url):\n    return requests.get(url)\n";
    let repo = TestRepo::new();
    repo.write("app/__init__.py", "");
    repo.write(
        "app/main.py",
        "from fastapi import FastAPI\nfrom app import client\n\napp = FastAPI()\nclient.fetch(\"https://x\")\n",
    );
    repo.write("app/client.py", CALL);
    repo.write("app/legacy.py", CALL);
    repo.write("app/tools.py", CALL);
    repo.write("app/tools/__init__.py", "");
    repo.commit("base");
    let (code, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        triples(&report),
        vec![(
            "F1-requests-no-timeout".to_string(),
            "app/client.py".to_string(),
            5
        )],
        "{report}"
    );
    assert_eq!(report["summary"]["not_service"], 2, "{report}");

    // Imported by the app but its function never called: `client.fetch` is another module's `fetch`.
    repo.write(
        "app/main.py",
        "from fastapi import FastAPI\nfrom app import client, legacy\n\napp = FastAPI()\nclient.fetch(\"https://x\")\n",
    );
    repo.commit("import legacy");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    let paths: Vec<String> = triples(&report).into_iter().map(|(_, p, _)| p).collect();
    assert_eq!(paths, vec!["app/client.py"], "{report}");

    // Called by the app, the legacy module's function is the service again.
    repo.write(
        "app/main.py",
        "from fastapi import FastAPI\nfrom app import client, legacy\n\napp = FastAPI()\nclient.fetch(\"https://x\")\nlegacy.fetch(\"https://y\")\n",
    );
    repo.commit("use legacy");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    let paths: Vec<String> = triples(&report).into_iter().map(|(_, p, _)| p).collect();
    assert_eq!(paths, vec!["app/client.py", "app/legacy.py"], "{report}");

    // The repository can ask for everything to be reported.
    repo.write(
        ".github/prodaudit.yml",
        "paths:\n  report_not_service: true\n",
    );
    repo.commit("report all");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(triples(&report).len(), 3, "{report}");
}

/// A function nothing in the service calls (only a test, or a commented-out line): its critical/high findings are
/// held back; a call added in another file brings them back, through the cache too.
#[test]
fn functions_nothing_calls_hold_back_critical_and_high() {
    let repo = TestRepo::new();
    repo.write("app/__init__.py", "");
    repo.write(
        "app/main.py",
        "from fastapi import FastAPI\nfrom app.helper import Helper\n\napp = FastAPI()\n# Helper().check(\"x\")\nHelper().live(\"y\")\n",
    );
    repo.write(
        "app/helper.py",
        "import requests\n\n\nclass Helper:\n    def check(self, url):\n        return requests.get(url)\n\n    def live(self, url):\n        return requests.get(url)\n",
    );
    repo.write(
        "tests/test_helper.py",
        "from app.helper import Helper\n\n\ndef test_check():\n    Helper().check(\"u\")\n",
    );
    repo.commit("base");
    for _ in 0..2 {
        // The second run answers from the cache: the same report.
        let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
        assert_eq!(
            triples(&report),
            vec![(
                "F1-requests-no-timeout".to_string(),
                "app/helper.py".to_string(),
                9
            )],
            "{report}"
        );
        assert_eq!(report["summary"]["not_service"], 1, "{report}");
    }
    // Called from the app, it is the service: reported, though helper.py did not change.
    repo.write(
        "app/main.py",
        "from fastapi import FastAPI\nfrom app.helper import Helper\n\napp = FastAPI()\nHelper().check(\"x\")\nHelper().live(\"y\")\n",
    );
    repo.commit("call check");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    let lines: Vec<u64> = triples(&report).into_iter().map(|(_, _, l)| l).collect();
    assert_eq!(lines, vec![6, 9], "{report}");
}

#[test]
fn blocking_code_only_start_up_runs_is_left_alone() {
    let repo = TestRepo::new();
    repo.write("app/__init__.py", "");
    let main = |route_calls_it: bool| {
        format!(
            "from contextlib import asynccontextmanager\n\nfrom fastapi import FastAPI\n\nfrom app.bootstrap import load_fixtures\n\n\n@asynccontextmanager\nasync def lifespan(app):\n    await load_fixtures()\n    yield\n\n\napp = FastAPI(lifespan=lifespan)\n\n\n@app.post(\"/reload\")\nasync def reload():\n    {}\n",
            if route_calls_it {
                "await load_fixtures()"
            } else {
                "return {}"
            }
        )
    };
    repo.write("app/main.py", &main(false));
    repo.write(
        "app/bootstrap.py",
        "import json\n\nFEATURES = {}\n\n\nasync def load_fixtures():\n    with open(\"fixtures.json\") as f:\n        FEATURES.update(json.load(f))\n",
    );
    repo.commit("base");
    for _ in 0..2 {
        // The second run answers from the cache: the same report.
        let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
        assert!(
            places_of(&report, "C5-blocking-file-io").is_empty(),
            "{report}"
        );
    }
    // A route calls it too: it blocks requests, reported though bootstrap.py did not change.
    repo.write("app/main.py", &main(true));
    repo.commit("route calls it");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(
        places_of(&report, "C5-blocking-file-io"),
        vec![("app/bootstrap.py".to_string(), 7)],
        "{report}"
    );
}

/// A FastAPI app with wildcard origins and credentials (I4-cors-wildcard-credentials, critical).
const CORS_APP: &str = "\
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.auth import router

app = FastAPI()
app.add_middleware(CORSMiddleware, allow_origins=[\"*\"], allow_credentials=True)
app.include_router(router)
";

#[test]
fn wildcard_cors_with_credentials_is_reported_only_where_the_service_knows_cookies() {
    let severity_of = |report: &serde_json::Value| -> Vec<(String, String)> {
        report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["check"] == "I4-cors-wildcard-credentials")
            .map(|f| {
                (
                    f["severity"].as_str().unwrap_or_default().to_string(),
                    f["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let repo = TestRepo::new();
    repo.write("app/__init__.py", "");
    repo.write("app/main.py", CORS_APP);
    // Bearer tokens only: browsers attach nothing cross-site.
    repo.write(
        "app/auth.py",
        "from fastapi import APIRouter, Header\n\nrouter = APIRouter()\n\n\n@router.get(\"/me\")\nasync def me(authorization: str = Header()):\n    return {\"ok\": True}\n",
    );
    repo.commit("base");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines", "--fail-on", "never"]);
    assert_eq!(severity_of(&report), vec![], "{report}");

    // A session cookie read anywhere in the service: critical again, with the detector's own message.
    repo.write(
        "app/auth.py",
        "from fastapi import APIRouter, Request\n\nrouter = APIRouter()\n\n\n@router.get(\"/me\")\nasync def me(request: Request):\n    return {\"session\": request.cookies.get(\"session\")}\n",
    );
    repo.commit("cookie login");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines", "--fail-on", "never"]);
    let found = severity_of(&report);
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(found[0].0, "critical");
    assert!(!found[0].1.contains("mentions cookies"));

    // A severity the repository configuration sets asks for the finding even without cookies.
    repo.write(
        "app/auth.py",
        "from fastapi import APIRouter\n\nrouter = APIRouter()\n",
    );
    repo.write(
        ".github/prodaudit.yml",
        "rules:\n  severity:\n    I4-cors-wildcard-credentials: high\n",
    );
    repo.commit("no cookies, severity pinned");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines", "--fail-on", "never"]);
    let found = severity_of(&report);
    assert_eq!(found.len(), 1, "{report}");
    assert_eq!(found[0].0, "high");
}

#[test]
fn a_detector_with_its_own_conforming_pattern_shows_it_instead_of_the_rules() {
    let repo = TestRepo::new();
    repo.write(
        "Dockerfile",
        "FROM python:3.12-slim\nWORKDIR /app\nCOPY . .\nCMD [\"uvicorn\", \"app.main:app\"]\n",
    );
    repo.commit("base");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines", "--fail-on", "never"]);
    let root = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["check"] == "I4-dockerfile-runs-as-root")
        .unwrap_or_else(|| panic!("no root finding: {report}"));
    let conforming = root["conforming"].as_str().unwrap_or_default();
    assert!(conforming.contains("USER app"), "{conforming}");
    assert!(!conforming.contains("CORSMiddleware"), "{conforming}");
    // Another detector of the same rule keeps the rule's pattern.
    repo.write(
        "app/main.py",
        "from fastapi import FastAPI\nfrom fastapi.middleware.cors import CORSMiddleware\n\napp = FastAPI()\napp.add_middleware(CORSMiddleware, allow_origins=[\"*\"])\n",
    );
    repo.commit("cors");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines", "--fail-on", "never"]);
    let cors = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["check"] == "I4-cors-wildcard")
        .unwrap_or_else(|| panic!("no CORS finding: {report}"));
    assert!(
        cors["conforming"]
            .as_str()
            .unwrap_or_default()
            .contains("CORSMiddleware")
    );
}

/// An async route with a blocking call (C5-blocking-sleep, high) and a sync helper with the same call.
const ROUTES: &str = "import time\n\n\nasync def slow():\n    time.sleep(1)\n    return 1\n\n\ndef helper():\n    time.sleep(2)\n    return 2\n";

#[test]
fn code_the_change_moved_is_not_blamed_on_it_but_a_new_context_is() {
    let repo = TestRepo::new();
    repo.write("app/routes.py", ROUTES);
    repo.write("app/other.py", "X = 1\n");
    repo.commit("base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    // `slow` moves to another module, re-wrapped (the same code, whitespace aside): its old problem is not the
    // change's.
    repo.write(
        "app/routes.py",
        "import time\n\n\ndef helper():\n    time.sleep(2)\n    return 2\n",
    );
    repo.write(
        "app/other.py",
        "import time\n\nX = 1\n\n\nasync def slow():\n    time.sleep( 1 )\n    return 1\n",
    );
    repo.commit("move slow");
    let (code, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(triples(&report), vec![], "{report}");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["summary"]["moved"], 1, "{report}");

    // The sync helper's call moved into an `async def`: a new problem, the change's.
    repo.write("app/routes.py", "import time\n");
    repo.write(
        "app/other.py",
        "import time\n\nX = 1\n\n\nasync def slow():\n    time.sleep( 1 )\n    return 1\n\n\nasync def helper():\n    time.sleep(2)\n    return 2\n",
    );
    repo.commit("helper becomes async");
    let (code, report) = run_json(
        repo.path(),
        &["audit", "--base", "main", "--head", "feature"],
    );
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        triples(&report),
        vec![(
            "C5-blocking-sleep".to_string(),
            "app/other.py".to_string(),
            12
        )],
        "{report}"
    );
    assert_eq!(report["summary"]["moved"], 1, "{report}");
}

/// A session listener that adds the tenant to every ORM SELECT (`do_orm_execute` + `with_loader_criteria`) scopes
/// the SELECTs I1-unscoped-tenant-query would report, in whichever module it is registered; a DELETE stays reported
/// until the listener scopes every statement. The cached results of the unchanged query module follow the listener.
#[test]
fn a_session_that_scopes_every_statement_to_the_tenant_silences_unscoped_queries() {
    const DAO: &str = "\
from sqlalchemy import delete, select
from sqlalchemy.orm import Mapped, mapped_column


class Document(Base):
    __tablename__ = \"documents\"
    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(index=True)


async def get_document(db, doc_id: int):
    return (await db.execute(select(Document).where(Document.id == doc_id))).scalar_one_or_none()


async def delete_document(db, doc_id: int) -> None:
    await db.execute(delete(Document).where(Document.id == doc_id))
";
    const LISTENER: &str = "\
from sqlalchemy import event
from sqlalchemy.orm import Session, with_loader_criteria

from app.context import current_tenant


@event.listens_for(Session, \"do_orm_execute\")
def scope_to_tenant(state):
    if state.is_select:
        state.statement = state.statement.options(
            with_loader_criteria(Document, lambda cls: cls.tenant_id == current_tenant.get())
        )
";
    let repo = TestRepo::new();
    repo.write("app/__init__.py", "");
    repo.write("app/core/__init__.py", "");
    repo.write(
        "app/main.py",
        "from fastapi import FastAPI\n\nfrom app import dao\nfrom app.core import tenancy\n\napp = FastAPI()\n\n\n@app.get(\"/docs/{doc_id}\")\nasync def read(doc_id: int):\n    return await dao.get_document(None, doc_id)\n\n\n@app.delete(\"/docs/{doc_id}\")\nasync def remove(doc_id: int):\n    await dao.delete_document(None, doc_id)\n",
    );
    repo.write("app/dao.py", DAO);
    repo.write("app/core/tenancy.py", "TENANCY = 'by hand'\n");
    repo.commit("base");
    let unscoped = |report: &serde_json::Value| -> Vec<u64> {
        places_of(report, "I1-unscoped-tenant-query")
            .into_iter()
            .filter(|(p, _)| p == "app/dao.py")
            .map(|(_, l)| l)
            .collect()
    };
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(unscoped(&report), vec![12, 16], "{report}");

    // The listener scopes SELECTs: the DELETE is still every tenant's.
    repo.write("app/core/tenancy.py", LISTENER);
    repo.commit("scope selects");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(unscoped(&report), vec![16], "{report}");

    // Testing no statement kind, it scopes the DELETE too.
    repo.write(
        "app/core/tenancy.py",
        &LISTENER.replace("    if state.is_select:\n", "    if True:\n"),
    );
    repo.commit("scope everything");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(unscoped(&report), Vec::<u64>::new(), "{report}");
}

/// A controller's `async def` method querying through `self.db`, a synchronous `Session` its base class keeps in
/// another module: reported through the repository model; once the base keeps an `AsyncSession`, not (the cached
/// result of the unchanged controller module follows the base class).
#[test]
fn a_sync_session_kept_by_a_base_class_in_another_module_blocks_async_methods() {
    const BASE: &str = "\
from sqlalchemy.orm import Session


class BaseController:
    def __init__(self, db: Session, user_id: int):
        self.db = db
        self.user_id = user_id
";
    let repo = TestRepo::new();
    repo.write("app/__init__.py", "");
    repo.write("app/controllers/__init__.py", "");
    repo.write(
        "app/main.py",
        "from fastapi import Depends, FastAPI\n\nfrom app.controllers.chat import ChatController\n\napp = FastAPI()\n\n\n@app.get(\"/chats\")\nasync def chats(db=Depends(get_db)):\n    return await ChatController(db, 1).list_chats()\n",
    );
    repo.write("app/controllers/base.py", BASE);
    repo.write(
        "app/controllers/chat.py",
        "from app.controllers.base import BaseController\n\n\nclass ChatController(BaseController):\n    async def list_chats(self):\n        return self.db.query(Chat).filter(Chat.user_id == self.user_id).all()\n",
    );
    repo.commit("base");
    let blocking = |report: &serde_json::Value| places_of(report, "C5-sync-session-in-async");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(
        blocking(&report),
        vec![("app/controllers/chat.py".to_string(), 6)],
        "{report}"
    );
    repo.write(
        "app/controllers/base.py",
        &BASE
            .replace(
                "from sqlalchemy.orm import Session",
                "from sqlalchemy.ext.asyncio import AsyncSession",
            )
            .replace("db: Session", "db: AsyncSession"),
    );
    repo.commit("async session");
    let (_, report) = run_json(repo.path(), &["audit", "--all-lines"]);
    assert_eq!(blocking(&report), Vec::<(String, u64)>::new(), "{report}");
}
