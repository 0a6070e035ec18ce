//! Function roles: request handlers (routes, MCP tools), startup/lifespan and command-line entry points.

use super::imports::Imports;
use super::syntax::{callee, decorator_name, decorators, function_name, param_names};
use crate::analysis::nodes::PyNode;
use crate::analysis::rules::Role;

/// Tokens one of which a route handler's decorator contains (`@router.get(`, `@bp.route(`, `@mcp.tool(`: see
/// [`is_route_handler`]), for checks that only look at route handlers.
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
    ".route(",
    ".tool(",
    ".resource(",
    ".prompt(",
];

/// Callee words (lower-case) of a helper that checks access (`check_permission`, `verify_access`,
/// `ensure_owner`, `require_member`): I1's checks and the repository model's deciding functions read them.
pub const ACCESS_CHECK_WORDS: &[&str] = &[
    "check",
    "verify",
    "ensure",
    "assert",
    "authoriz",
    "authoris",
    "permission",
    "access",
    "owner",
    "allowed",
    "can_",
    "require",
    "guard",
    "validate",
];

/// Is `call` the construction of a FastAPI application: `FastAPI(…)`, `fastapi.FastAPI(…)`, also under an import
/// alias (`from fastapi import FastAPI as App`, `import fastapi as fa`)?
pub fn is_fastapi_app(call: &PyNode<'_>, imports: &Imports) -> bool {
    call.kind() == "call"
        && imports
            .callee(call)
            .is_some_and(|c| c == "FastAPI" || c == "fastapi.FastAPI")
}

/// Is this `def`/`async def` a request handler: a web route (`@router.get(…)`, `@app.post(…)`,
/// `@router.api_route(…)`, `@app.websocket(…)`, `@bp.route(…)` for Flask/Quart) or an MCP tool (`@mcp.tool(…)`,
/// `.resource(…)`, `.prompt(…)` on an object named like `mcp`)? The one definition every check reads.
pub fn is_route_handler(func: &PyNode<'_>) -> bool {
    is_web_or_mcp_handler(func)
}

/// Does the function's name contain one of `name_words`, or one of its decorators (its route) one of
/// `route_words` (all lower-case)?
fn named_or_routed(func: &PyNode<'_>, name_words: &[&str], route_words: &[&str]) -> bool {
    let named = function_name(func)
        .map(|n| n.to_ascii_lowercase())
        .is_some_and(|n| name_words.iter().any(|w| n.contains(w)));
    named
        || decorators(func).iter().any(|d| {
            let t = d.text().to_ascii_lowercase();
            route_words.iter().any(|w| t.contains(w))
        })
}

/// Is this route handler a step of a sign-in or connection flow (an OAuth callback, a login, an app install), which
/// each user runs once per sign-in or connection rather than per request of their work? By the function's name
/// (`…_callback`, `oauth_…`, `login`, `authorize`, `install`) or its route's path (`/callback`, `/oauth`, `/login`).
pub fn is_auth_flow_handler(func: &PyNode<'_>) -> bool {
    if !is_route_handler(func) {
        return false;
    }
    const WORDS: &[&str] = &[
        "callback",
        "oauth",
        "login",
        "logout",
        "signin",
        "sign_in",
        "signup",
        "sign_up",
        "authorize",
        "install",
    ];
    named_or_routed(
        func,
        WORDS,
        &[
            "/callback",
            "/oauth",
            "/login",
            "/authorize",
            "/install",
            "/sso",
        ],
    )
}

/// Is this route handler for administrators only: its name or its route says `admin`, or a parameter's dependency
/// does (`Depends(current_admin_user)`, `Depends(require_permission(Permission.FULL_ADMIN_PANEL_ACCESS))`,
/// `Depends(get_superuser)`)? Operators' pages: no tenant boundary, and rarely called.
pub fn is_admin_handler(func: &PyNode<'_>) -> bool {
    if !is_route_handler(func) {
        return false;
    }
    let gated = func.field("parameters").is_some_and(|ps| {
        ps.children().any(|p| {
            p.field("value").is_some_and(|v| {
                let t = v.text().to_ascii_lowercase();
                (t.contains("depends(") || t.contains("security("))
                    && ["admin", "superuser"].iter().any(|w| t.contains(w))
            })
        })
    });
    named_or_routed(func, &["admin"], &["admin"]) || gated
}

/// Is this route handler public by design, so that taking no caller is its contract rather than an omission: a
/// sign-in or connection step ([`is_auth_flow_handler`]), a webhook or callback from another service, a health or
/// status probe, a public/shared/embed page, a sign-up, invitation, verification or password reset? By the
/// function's name or its route's path.
pub fn is_public_by_design(func: &PyNode<'_>) -> bool {
    if is_auth_flow_handler(func) {
        return true;
    }
    const WORDS: &[&str] = &[
        "webhook",
        "hook",
        "public",
        "share",
        "embed",
        "health",
        "ready",
        "alive",
        "status",
        "ping",
        "version",
        "register",
        "invite",
        "invitation",
        "verify",
        "reset",
        "forgot",
        "token",
        "anonymous",
        "guest",
        "demo",
        "marketplace",
        "internal",
    ];
    named_or_routed(func, WORDS, WORDS)
}

/// Functions that run once, before the server takes traffic or after it stops: blocking there delays start-up,
/// not requests. The one startup/lifespan definition: named `lifespan`/`*_lifespan`/`startup`/`on_startup`/
/// `shutdown`/`on_shutdown`/`startup_event`/`shutdown_event`, or a lifespan or event hook by its decorator
/// (`@asynccontextmanager` on a function taking the app, `@app.on_event(…)`) whatever its name.
pub fn is_startup_function(func: &PyNode<'_>) -> bool {
    function_name(func).is_some_and(|name| is_startup_hook_name(&name))
        || is_lifespan_or_event_hook(func)
}

/// The names of [`is_startup_function`]'s hooks: `lifespan`/`*_lifespan`/`startup`/`on_startup`/`shutdown`/
/// `on_shutdown`/`startup_event`/`shutdown_event` (leading underscores ignored).
pub fn is_startup_hook_name(name: &str) -> bool {
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

/// Is this function a lifespan context (the code around `yield` runs at start-up and at shutdown): an
/// `@asynccontextmanager` function that is a startup function ([`is_startup_function`]: named `lifespan`/
/// `*_lifespan`, or taking the app), that has `lifespan` in its name, or that the file passes as `lifespan=…`
/// (`file_squashed` is the file's text with whitespace removed)?
pub fn is_lifespan(func: &PyNode<'_>, file_squashed: &str) -> bool {
    let acm = decorators(func).iter().any(|d| {
        let name = decorator_name(d);
        name.rsplit('.').next().unwrap_or(&name) == "asynccontextmanager"
    });
    if !acm {
        return false;
    }
    let name = function_name(func).unwrap_or_default();
    is_startup_function(func)
        || name.contains("lifespan")
        || file_squashed.contains(&format!("lifespan={name}"))
}

/// Does the function play this role (what a rule file's `except_in` names)?
pub fn plays(func: &PyNode<'_>, role: Role) -> bool {
    match role {
        Role::Startup => is_startup_function(func),
        Role::SignIn => is_auth_flow_handler(func),
        Role::Admin => is_admin_handler(func),
    }
}

/// Is `node` inside a function playing one of `roles` ([`plays`]), at any depth of nesting?
pub fn inside_role(node: &PyNode<'_>, roles: &[Role]) -> bool {
    !roles.is_empty()
        && node
            .ancestors()
            .filter(|a| a.kind() == "function_definition")
            .any(|f| roles.iter().any(|&r| plays(&f, r)))
}

/// `@asynccontextmanager` on a function whose first parameter is the app (a FastAPI lifespan), or
/// `@<app>.on_event(…)`.
fn is_lifespan_or_event_hook(func: &PyNode<'_>) -> bool {
    decorators(func).iter().any(|d| {
        let name = decorator_name(d);
        match name.rsplit('.').next().unwrap_or(&name) {
            "asynccontextmanager" => param_names(func).first().is_some_and(|p| {
                matches!(
                    p.trim_start_matches('_'),
                    "app" | "application" | "fastapi_app"
                )
            }),
            "on_event" => true,
            _ => false,
        }
    })
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
        // `run_arq_worker`, `start_grpc_server`: starts a worker or server process.
        || ((n.starts_with("run_") || n.starts_with("start_"))
            && (n.ends_with("worker") || n.ends_with("server")))
        || n == "__init_subclass__"
}

/// Is the function a startup hook by its decorators ([`is_startup_function`]'s lifespan and `on_event`) or a
/// command-line/test entry point (`@click.command`, `@app.command`, `@…group`, `@…callback`, `@pytest.fixture`)?
pub fn is_startup_or_cli_decorated(func: &PyNode<'_>) -> bool {
    is_lifespan_or_event_hook(func)
        || decorators(func).iter().any(|d| {
            let name = decorator_name(d);
            matches!(
                name.rsplit('.').next().unwrap_or(&name),
                "command" | "group" | "fixture" | "callback"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    /// Which functions of `code` are request handlers, by name.
    fn handlers(code: &str) -> Vec<String> {
        let doc = Lang::Python.ast_grep(code);
        doc.root()
            .dfs()
            .filter(|n| n.kind() == "function_definition" && is_route_handler(n))
            .filter_map(|n| function_name(&n))
            .collect()
    }

    #[test]
    fn one_route_handler_definition_for_web_routes_and_mcp_tools() {
        let code = "\
@router.get('/items/{id}')
async def fastapi_route(id: int): ...

@app.api_route('/x', methods=['GET', 'HEAD'])
def any_method(): ...

@bp.route('/legacy')
def flask_route(): ...

@mcp.tool()
async def mcp_tool(q: str): ...

@cache.tool
def not_called(): ...

@registry.tool()
def tool_of_something_else(): ...

@functools.lru_cache()
def cached(): ...

def plain(): ...
";
        assert_eq!(
            handlers(code),
            ["fastapi_route", "any_method", "flask_route", "mcp_tool"]
        );
    }

    #[test]
    fn one_startup_definition_by_name_or_by_hook() {
        let doc = Lang::Python.ast_grep(
            "\
@asynccontextmanager
async def app_context(app: FastAPI): ...

@app.on_event('startup')
async def connect_db(): ...

async def lifespan(app): ...

@asynccontextmanager
async def session_scope(db): ...

@click.command()
def serve(): ...
",
        );
        let startup: Vec<String> = doc
            .root()
            .dfs()
            .filter(|n| n.kind() == "function_definition" && is_startup_function(n))
            .filter_map(|n| function_name(&n))
            .collect();
        assert_eq!(startup, ["app_context", "connect_db", "lifespan"]);
        let cli: Vec<String> = doc
            .root()
            .dfs()
            .filter(|n| n.kind() == "function_definition" && is_startup_or_cli_decorated(n))
            .filter_map(|n| function_name(&n))
            .collect();
        assert_eq!(cli, ["app_context", "connect_db", "serve"]);
    }

    #[test]
    fn lifespans_by_decorator_and_name_app_parameter_or_use() {
        let src = "\
@asynccontextmanager
async def lifespan_ctx(a): yield

@asynccontextmanager
async def resources(app: FastAPI): yield

@contextlib.asynccontextmanager
async def ctx(x): yield

@asynccontextmanager
async def db_scope(engine): yield

async def lifespan(app): yield

app = FastAPI(lifespan=ctx)
";
        let doc = Lang::Python.ast_grep(src);
        let squashed: String = src.split_whitespace().collect();
        let lifespans: Vec<String> = doc
            .root()
            .dfs()
            .filter(|n| n.kind() == "function_definition" && is_lifespan(n, &squashed))
            .filter_map(|n| function_name(&n))
            .collect();
        assert_eq!(lifespans, ["lifespan_ctx", "resources", "ctx"]);
    }

    #[test]
    fn inside_a_startup_function_at_any_depth() {
        let doc = Lang::Python.ast_grep(
            "\
@app.on_event('startup')
async def warm():
    def load():
        time.sleep(1)
    load()

async def handler():
    time.sleep(2)
",
        );
        let inside: Vec<bool> = doc
            .root()
            .dfs()
            .filter(|n| n.kind() == "call" && n.text().starts_with("time.sleep"))
            .map(|c| inside_role(&c, &[Role::Startup]))
            .collect();
        assert_eq!(inside, [true, false]);
        let none: Vec<bool> = doc
            .root()
            .dfs()
            .filter(|n| n.kind() == "call" && n.text().starts_with("time.sleep"))
            .map(|c| inside_role(&c, &[Role::SignIn, Role::Admin]))
            .collect();
        assert_eq!(none, [false, false]);
    }
}
