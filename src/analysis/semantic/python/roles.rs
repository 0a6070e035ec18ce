//! Function roles: request handlers (routes, MCP tools), startup/lifespan and command-line entry points.

use super::syntax::{callee, decorator_name, decorators, function_name, param_names};
use crate::analysis::nodes::PyNode;
use regex::Regex;
use std::sync::OnceLock;

/// Which decorators make a function a request handler. The checks disagree today (a Flask `@bp.route(…)` and an
/// MCP `@mcp.tool(…)` are request handlers for C4, C6, I2, I3 and I5 but not for I4, I1 and C6's own helpers):
/// each definition is named here so the difference is visible in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteStyle {
    /// `@<router or app>.get/post/put/patch/delete/head/options/api_route/websocket(…)`: FastAPI/Starlette
    /// style routes only.
    FastApi,
    /// Those, and `@<x>.route(…)` (Flask, Quart) and `@<…mcp…>.tool/resource/prompt(…)` (MCP servers).
    WebOrMcp,
    /// `@<obj>.get/…/websocket/route(…)` where the decorator's object is named like a router or an app
    /// (`router`, `app`, `api`, `bp`, `blueprint` in its last segment), HEAD and OPTIONS included (C4).
    NamedRouter,
    /// The decorator's text matches `@<dotted>.get|post|put|patch|delete|api_route|websocket|route(`: no HEAD
    /// or OPTIONS, any object (C6).
    DecoratorText,
}

/// Tokens one of which a route handler's decorator contains (`@router.get(`, `@app.post(`: see
/// [`is_route_handler`] with [`RouteStyle::FastApi`]), for checks that only look at route handlers.
pub const ROUTE_DECORATOR_TOKENS: &[&str] = &[
    ".get(",
    ".post(",
    ".put(",
    ".patch(",
    ".delete(",
    ".head(",
    ".options(",
    ".api_route(",
    ".websocket(",
];

/// Is this `def`/`async def` a request handler in the sense of `style`?
pub fn is_route_handler(func: &PyNode<'_>, style: RouteStyle) -> bool {
    match style {
        RouteStyle::FastApi => is_fastapi_route(func),
        RouteStyle::WebOrMcp => is_web_or_mcp_handler(func),
        RouteStyle::NamedRouter => is_named_router_route(func),
        RouteStyle::DecoratorText => matches_route_re(func),
    }
}

/// Is this `def`/`async def` a web route handler, i.e. decorated with `@<router or app>.get/post/put/patch/
/// delete/head/options/api_route/websocket(...)`?
fn is_fastapi_route(func: &PyNode<'_>) -> bool {
    decorators(func).into_iter().any(|d| {
        let t: String = d.text().split_whitespace().collect();
        let t = t.trim_start_matches('@');
        let head = t.split('(').next().unwrap_or("");
        t.contains('(')
            && head.contains('.')
            && matches!(
                head.rsplit('.').next(),
                Some(
                    "get"
                        | "post"
                        | "put"
                        | "patch"
                        | "delete"
                        | "head"
                        | "options"
                        | "api_route"
                        | "websocket"
                )
            )
    })
}

/// Functions that run once, before the server takes traffic or after it stops (FastAPI `lifespan`, startup
/// and shutdown handlers): blocking there delays start-up, not requests.
pub fn is_startup_function(func: &PyNode<'_>) -> bool {
    let Some(name) = function_name(func) else {
        return false;
    };
    let n = name.trim_start_matches('_');
    n == "lifespan"
        || n.ends_with("_lifespan")
        || matches!(
            n,
            "startup"
                | "on_startup"
                | "shutdown"
                | "on_shutdown"
                | "startup_event"
                | "shutdown_event"
        )
}

/// Is the function a web or MCP request handler: decorated with `@router.get(…)`, `@app.post(…)`,
/// `@router.api_route(…)`, `@app.websocket(…)`, `@bp.route(…)` or `@mcp.tool(…)`?
fn is_web_or_mcp_handler(func: &PyNode<'_>) -> bool {
    decorators(func).iter().any(|d| {
        let name = decorator_name(d);
        let Some((obj, method)) = name.rsplit_once('.') else {
            return false;
        };
        let has_call = d.children().any(|c| c.kind() == "call");
        if !has_call {
            return false;
        }
        match method {
            "get" | "post" | "put" | "patch" | "delete" | "head" | "options" | "api_route"
            | "websocket" | "route" => true,
            "tool" | "resource" | "prompt" => obj.to_ascii_lowercase().contains("mcp"),
            _ => false,
        }
    })
}

/// Is this the name of an entry point that runs once per process (startup, CLI), not per request?
pub fn is_startup_name(name: &str) -> bool {
    let n = name.trim_start_matches('_').to_ascii_lowercase();
    n == "main"
        || n == "cli"
        || n == "run"
        || n == "serve"
        || n == "lifespan"
        || n == "app_lifespan"
        || n.starts_with("startup")
        || n.starts_with("shutdown")
        || n.starts_with("on_startup")
        || n.starts_with("on_shutdown")
        || n.starts_with("init")
        || n.starts_with("setup")
        || n.starts_with("set_up")
        || n.starts_with("configure")
        || n.starts_with("bootstrap")
        || n.starts_with("register")
        || n.starts_with("install")
        || n.starts_with("load_")
        || n.starts_with("populate")
        || n.starts_with("instrument")
        || n.starts_with("patch")
        || n.ends_with("_lifespan")
        || n.ends_with("_startup")
        || n.ends_with("_shutdown")
        || n.ends_with("_main")
        || n == "__init_subclass__"
}

/// Is the function a lifespan/startup hook by its decorators (`@asynccontextmanager` taking the app, `@app.on_event(...)`,
/// `@click.command`, `@app.command`, `@pytest.fixture`)?
pub fn is_startup_or_cli_decorated(func: &PyNode<'_>) -> bool {
    decorators(func).iter().any(|d| {
        let name = decorator_name(d);
        let last = name.rsplit('.').next().unwrap_or(&name);
        if last == "asynccontextmanager" {
            // A lifespan: `async def lifespan(app: FastAPI)`.
            return param_names(func).first().is_some_and(|p| {
                matches!(
                    p.trim_start_matches('_'),
                    "app" | "application" | "fastapi_app"
                )
            });
        }
        matches!(
            last,
            "on_event" | "command" | "group" | "fixture" | "callback"
        )
    })
}

/// A route decorator of a `def`: its HTTP method (lower case) and path literal, if any.
pub struct Route {
    pub method: String,
    pub path: String,
    pub router: String,
}

pub const ROUTE_METHODS: &[&str] = &[
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "websocket",
    "api_route",
];

/// The route of a function definition (`@router.post("/x")` above it), if it has one.
pub fn route_of(def: &PyNode<'_>) -> Option<Route> {
    for dec in decorators(def) {
        let Some(call) = dec.children().find(|c| c.kind() == "call") else {
            continue;
        };
        let Some(f) = callee(&call) else { continue };
        let Some((router, method)) = f.rsplit_once('.') else {
            continue;
        };
        if !ROUTE_METHODS.contains(&method) {
            continue;
        }
        let path = call
            .field("arguments")
            .and_then(|a| a.children().find(|c| c.is_named()))
            .filter(|a| a.kind() == "string")
            .map(|s| {
                s.dfs()
                    .filter(|n| n.kind() == "string_content")
                    .map(|n| n.text().to_string())
                    .collect::<String>()
            })
            .unwrap_or_default();
        return Some(Route {
            method: method.to_string(),
            path,
            router: router.to_string(),
        });
    }
    None
}

/// Route decorators: `@router.get(...)`, `@app.post(...)`, `@api_router.api_route(...)`, `@bp.route(...)`.
fn is_named_router_route(func: &PyNode<'_>) -> bool {
    decorators(func)
        .into_iter()
        .filter_map(|d| d.children().find(|c| c.kind() == "call"))
        .filter_map(|call| call.field("function"))
        .any(|f| {
            let t: String = f.text().split_whitespace().collect();
            let Some((obj, method)) = t.rsplit_once('.') else {
                return false;
            };
            let obj = obj.rsplit('.').next().unwrap_or(obj).to_ascii_lowercase();
            matches!(
                method,
                "get"
                    | "post"
                    | "put"
                    | "patch"
                    | "delete"
                    | "head"
                    | "options"
                    | "api_route"
                    | "websocket"
                    | "route"
            ) && (obj.contains("router")
                || obj.contains("app")
                || obj.contains("api")
                || obj == "bp"
                || obj.contains("blueprint"))
        })
}

fn route_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^@\s*[\w.]+\.(get|post|put|patch|delete|api_route|websocket|route)\s*\(")
            .unwrap_or_else(|e| panic!("route regex: {e}"))
    })
}

/// Is `func` a route handler (`@router.post(...)`, `@app.get(...)`)?
fn matches_route_re(func: &PyNode<'_>) -> bool {
    func.parent().is_some_and(|p| {
        p.kind() == "decorated_definition"
            && p.children()
                .filter(|c| c.kind() == "decorator")
                .any(|d| route_re().is_match(&d.text()))
    })
}
