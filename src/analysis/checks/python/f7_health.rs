//! F7: a FastAPI application whose whole route table is in this file and has no liveness/readiness route.
//!
//! Only apps whose routes are all visible are judged: a file that includes routers (`include_router`), mounts
//! sub-applications (`mount`, `host`) or copies routes from elsewhere (`.routes`) may get its health endpoint
//! there, and a file that defines no route on the app at all is not where its routes live. Any mention of
//! `health`, `ready`, `live`, `ping`, `status` paths, `heartbeat` or `probe` in the file counts as a health signal
//! (a middleware answering `/health` is fine too).

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::is_fastapi_app;
use crate::analysis::semantic::python::syntax::callee_tail;

pub struct FastApiNoHealth;

const HEALTH_WORDS: &[&str] = &[
    "health",
    "readyz",
    "livez",
    "/ready",
    "/live",
    "/ping",
    "/status",
    "heartbeat",
    "probe",
];

/// The name the app is bound to (`app = FastAPI(...)`, `app: FastAPI = FastAPI(...)`).
fn app_name(call: &PyNode<'_>) -> Option<String> {
    let p = call.parent()?;
    if p.kind() != "assignment" {
        return None;
    }
    let l = p.field("left")?;
    (matches!(l.kind().as_ref(), "identifier" | "attribute")).then(|| l.text().to_string())
}

/// Routes the file defines on `app`: `@app.get(...)` decorators and `app.add_api_route(...)` calls.
fn route_count<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>, app: &str) -> usize {
    ctx.of_kind(root, "call")
        .iter()
        .filter(|&c| {
            let Some(f) = c.field("function") else {
                return false;
            };
            if f.kind() != "attribute" || f.field("object").is_none_or(|o| o.text() != app) {
                return false;
            }
            let m = f
                .field("attribute")
                .map(|a| a.text().to_string())
                .unwrap_or_default();
            matches!(
                m.as_str(),
                "get"
                    | "post"
                    | "put"
                    | "patch"
                    | "delete"
                    | "api_route"
                    | "route"
                    | "websocket"
                    | "add_api_route"
                    | "add_route"
                    | "add_api_websocket_route"
            )
        })
        .count()
}

impl Check for FastApiNoHealth {
    fn id(&self) -> &'static str {
        "fastapi-app-no-health"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["FastAPI"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        let ctors: Vec<PyNode<'_>> = root.dfs().filter(|c| is_fastapi_app(c, &imports)).collect();
        if ctors.is_empty() {
            return;
        }
        let lower = root.text().to_ascii_lowercase();
        if HEALTH_WORDS.iter().any(|w| lower.contains(w)) || lower.contains(".routes") {
            return;
        }
        let elsewhere = ctx.of_kind(root, "call").iter().any(|c| {
            callee_tail(c).is_some_and(|t| {
                matches!(
                    t.as_str(),
                    "include_router" | "mount" | "host" | "include_app" | "add_routes"
                ) || t.starts_with("include_router")
            })
        });
        if elsewhere {
            return;
        }
        for call in ctors {
            let Some(app) = app_name(&call) else {
                continue;
            };
            let routes = route_count(ctx, root, &app);
            if routes == 0 {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{app} = FastAPI(…)` defines {routes} route{} in this file and none is a liveness/readiness probe \
                     (`/health`, `/healthz`, `/readyz`): the orchestrator cannot tell a hung replica, or one whose \
                     database is unreachable, from a healthy one",
                    if routes == 1 { "" } else { "s" }
                )),
            });
        }
    }
}
