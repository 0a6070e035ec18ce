//! `F8-exception-detail` with the repository model: where the application's `HTTPException` handler replaces the
//! detail of status-500 errors with a fixed text, a 500 carrying `str(e)` leaks nothing and is not reported; a 409
//! still is, and so is every status when the handler passes the detail through.

use prodaudit::analysis::context::RepoContext;
use prodaudit::analysis::repo_model::{NameBudget, build, python_facts};
use prodaudit::analysis::{Engine, Overrides, RuleSet};
use std::collections::BTreeMap;
use std::sync::Arc;

const ROUTES: &str = "\
from fastapi import APIRouter, HTTPException

router = APIRouter()


@router.post(\"/connectors\")
async def create_connector(body: ConnectorIn):
    try:
        return await save(body)
    except IntegrityError as e:
        raise HTTPException(status_code=409, detail=str(e)) from e


@router.post(\"/connectors/{connector_id}/sync\")
async def sync_connector(connector_id: int):
    try:
        return await sync(connector_id)
    except Exception as e:
        raise HTTPException(status_code=500, detail=f\"Failed to sync connector: {e!s}\") from e
";

const SANITIZES: &str = "\
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from app.routes import router

GENERIC_5XX_MESSAGE = \"Something went wrong.\"


def _http_exception_handler(request, exc: HTTPException) -> JSONResponse:
    should_sanitize = exc.status_code == 500
    detail = exc.detail
    if should_sanitize:
        detail = GENERIC_5XX_MESSAGE
    return JSONResponse(status_code=exc.status_code, content={\"detail\": detail})


app = FastAPI()
app.include_router(router)
app.add_exception_handler(HTTPException, _http_exception_handler)
";

const PASSES_THROUGH: &str = "\
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from app.routes import router


def _http_exception_handler(request, exc: HTTPException) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content={\"detail\": exc.detail})


app = FastAPI()
app.include_router(router)
app.add_exception_handler(HTTPException, _http_exception_handler)
";

fn engine() -> Engine {
    match RuleSet::builtin() {
        Ok(r) => Engine::new(r, Overrides::default()),
        Err(e) => panic!("built-in rules do not load: {e}"),
    }
}

fn detail_findings(main: &str) -> Vec<usize> {
    let files = [("app/main.py", main), ("app/routes.py", ROUTES)];
    let budget = NameBudget::new();
    let python: BTreeMap<String, _> = files
        .iter()
        .map(|(p, t)| (p.to_string(), python_facts(p, Some(t.as_bytes()), &budget)))
        .collect();
    let repo = RepoContext {
        paths: files.iter().map(|(p, _)| p.to_string()).collect(),
        reach: Some(Arc::new(build(&python, &[], budget.counted()))),
        ..Default::default()
    };
    let mut lines: Vec<usize> = engine()
        .analyze_in("app/routes.py", ROUTES, None, &repo, None)
        .findings
        .iter()
        .filter(|f| f.check == "F8-exception-detail")
        .map(|f| f.line)
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_500_whose_detail_the_handler_replaces_is_not_reported() {
    assert_eq!(detail_findings(SANITIZES), [11]);
}

#[test]
fn a_handler_that_passes_the_detail_through_sanitizes_nothing() {
    assert_eq!(detail_findings(PASSES_THROUGH), [11, 19]);
}
