//! I1 `tenant-id-unchecked` with the repository model: a tenant id from the request handed, with the caller, to a
//! function of the repository that only signs what it is given (an OAuth state) is reported; handed to one that
//! can decide (it branches or queries) it is not; without the model, any such function counts as a check.

use prodaudit::analysis::context::RepoContext;
use prodaudit::analysis::repo_model::{NameBudget, build, python_facts};
use prodaudit::analysis::{Engine, Overrides, RuleSet};
use std::collections::BTreeMap;
use std::sync::Arc;

const ROUTE: &str = "\
from fastapi import APIRouter, Depends

from app.auth import require_session
from app.oauth_state import state_manager

router = APIRouter()


@router.get(\"/auth/drive/connector/add\")
async def connect_drive(space_id: int, auth: AuthContext = Depends(require_session)):
    user = auth.user
    state = state_manager.generate_secure_state(space_id, user.id)
    return {\"auth_url\": f\"https://accounts.example.com/o/oauth2/auth?state={state}\"}
";

const MAIN: &str = "\
from fastapi import FastAPI

from app.routes import router

app = FastAPI()
app.include_router(router)
";

const SIGNS: &str = "\
import base64
import hmac
import json


class StateManager:
    def generate_secure_state(self, space_id: int, user_id: str) -> str:
        \"\"\"Sign the state; the callback checks the signature, if anything, in the state.\"\"\"
        payload = json.dumps({\"space_id\": space_id, \"user_id\": user_id})
        sig = hmac.new(b\"k\", payload.encode(), \"sha256\").hexdigest()
        return base64.urlsafe_b64encode(f\"{payload}.{sig}\".encode()).decode()


state_manager = StateManager()
";

const CHECKS: &str = "\
class StateManager:
    async def generate_secure_state(self, space_id: int, user_id: str) -> str:
        if not await is_member(user_id, space_id):
            raise PermissionError(space_id)
        return f\"{space_id}:{user_id}\"


state_manager = StateManager()
";

fn engine() -> Engine {
    match RuleSet::builtin() {
        Ok(r) => Engine::new(r, Overrides::default()),
        Err(e) => panic!("built-in rules do not load: {e}"),
    }
}

fn repo(state_module: &str, with_model: bool) -> RepoContext {
    let files = [
        ("app/main.py", MAIN),
        ("app/routes.py", ROUTE),
        ("app/oauth_state.py", state_module),
    ];
    let budget = NameBudget::new();
    let python: BTreeMap<String, _> = files
        .iter()
        .map(|(p, t)| (p.to_string(), python_facts(p, Some(t.as_bytes()), &budget)))
        .collect();
    let reach = build(&python, &[], budget.counted());
    RepoContext {
        paths: files.iter().map(|(p, _)| p.to_string()).collect(),
        reach: with_model.then(|| Arc::new(reach)),
        ..Default::default()
    }
}

fn tenant_findings(repo: &RepoContext) -> Vec<usize> {
    engine()
        .analyze_in("app/routes.py", ROUTE, None, repo, None)
        .findings
        .iter()
        .filter(|f| f.check == "I1-tenant-id-unchecked")
        .map(|f| f.line)
        .collect()
}

#[test]
fn a_tenant_id_signed_into_an_oauth_state_unchecked_is_reported() {
    assert_eq!(tenant_findings(&repo(SIGNS, true)), [12]);
}

#[test]
fn a_function_that_can_decide_counts_as_the_check() {
    assert!(tenant_findings(&repo(CHECKS, true)).is_empty());
}

#[test]
fn without_the_repository_model_every_function_given_both_counts_as_a_check() {
    assert!(tenant_findings(&repo(SIGNS, false)).is_empty());
}
