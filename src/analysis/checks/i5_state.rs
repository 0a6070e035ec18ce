//! I5: in-process mutable state that breaks when the service runs as several replicas or workers.
//!
//! Three checks live here:
//! - `module-mutable-state`: a module-level dict/list/set (or `defaultdict`, `Counter`, …) written to from inside
//!   functions. Each worker process has its own copy, so counters, rate-limit windows, sessions or job status kept
//!   there differ between replicas and vanish on restart.
//! - `global-rebind-on-request-path`: a `global` name rebound inside a route handler or other `async def` on the
//!   request path (`global counter; counter += 1`).
//! - `environ-mutation-at-runtime`: `os.environ[...] = …` (and friends) inside a function: the environment is
//!   shared by every concurrent request of the process.
//!
//! The module-level collection analysis is shared with I6 (`unbounded-module-collection`).

use super::{Check, CheckMatch, PyNode, callee, function_name, in_main_guard, is_async_def};
use crate::analysis::context::FileContext;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

// ---------------------------------------------------------------------------------------------------------
// Shared helpers (also used by the I1, I2, I3 and I6 checks).
// ---------------------------------------------------------------------------------------------------------

/// Does the node (or anything under it) contain a parse error?
pub(super) fn has_error(node: &PyNode<'_>) -> bool {
    node.get_inner_node().has_error()
}

/// The decorators of a function or class (empty when it is not decorated).
pub(super) fn decorators<'r>(def: &PyNode<'r>) -> Vec<PyNode<'r>> {
    match def.parent() {
        Some(p) if p.kind() == "decorated_definition" => {
            p.children().filter(|c| c.kind() == "decorator").collect()
        }
        _ => Vec::new(),
    }
}

/// The decorator's expression without `@` and without its call arguments: `router.get`, `lru_cache`.
pub(super) fn decorator_name(dec: &PyNode<'_>) -> String {
    let Some(expr) = dec.children().find(|c| c.is_named()) else {
        return String::new();
    };
    let target = if expr.kind() == "call" {
        expr.field("function").unwrap_or(expr)
    } else {
        expr
    };
    target.text().split_whitespace().collect()
}

/// Is the function a web or MCP request handler: decorated with `@router.get(…)`, `@app.post(…)`,
/// `@router.api_route(…)`, `@app.websocket(…)`, `@bp.route(…)` or `@mcp.tool(…)`?
pub(super) fn is_route_handler(func: &PyNode<'_>) -> bool {
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

/// Names of a function's (or lambda's) parameters.
pub(super) fn param_names(func: &PyNode<'_>) -> Vec<String> {
    let Some(params) = func.field("parameters") else {
        return Vec::new();
    };
    params
        .children()
        .filter_map(|p| match p.kind().as_ref() {
            "identifier" => Some(p.text().to_string()),
            "default_parameter" | "typed_default_parameter" => {
                p.field("name").map(|n| n.text().to_string())
            }
            "typed_parameter" | "list_splat_pattern" | "dictionary_splat_pattern" => p
                .dfs()
                .find(|c| c.kind() == "identifier")
                .map(|n| n.text().to_string()),
            _ => None,
        })
        .collect()
}

/// All `def`/`async def`/`lambda` ancestors of a node, innermost first.
pub(super) fn enclosing_functions<'r>(node: &PyNode<'r>) -> Vec<PyNode<'r>> {
    node.ancestors()
        .filter(|a| matches!(a.kind().as_ref(), "function_definition" | "lambda"))
        .collect()
}

/// Walk a subtree without descending into nested functions, lambdas or classes (their code runs elsewhere).
pub(super) fn own_nodes<'r>(body: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let mut out = Vec::new();
    let mut stack: Vec<PyNode<'r>> = body.children().collect();
    while let Some(n) = stack.pop() {
        if matches!(
            n.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition" | "decorated_definition"
        ) {
            continue;
        }
        stack.extend(n.children());
        out.push(n);
    }
    out
}

/// Is this the name of an entry point that runs once per process (startup, CLI), not per request?
pub(super) fn is_startup_name(name: &str) -> bool {
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
pub(super) fn is_startup_or_cli_decorated(func: &PyNode<'_>) -> bool {
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

// ---------------------------------------------------------------------------------------------------------
// Module-level collections and how functions use them.
// ---------------------------------------------------------------------------------------------------------

/// What sort of collection a module-level name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CollKind {
    Dict,
    List,
    Set,
    DefaultDict,
    Counter,
    OrderedDict,
    Deque,
}

impl CollKind {
    pub(super) fn describe(self) -> &'static str {
        match self {
            CollKind::Dict => "dict",
            CollKind::List => "list",
            CollKind::Set => "set",
            CollKind::DefaultDict => "defaultdict",
            CollKind::Counter => "Counter",
            CollKind::OrderedDict => "OrderedDict",
            CollKind::Deque => "deque",
        }
    }
}

/// How a use changes the collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    /// Adds an entry: `X[k] = v`, `.append`, `.add`, `.update`, `.setdefault`, `.extend`, `.insert`.
    Grow,
    /// Changes an existing entry in place: `X[k] += 1`, `X[k].append(v)`.
    Mutate,
    /// Removes entries or resets: `.pop`, `.clear`, `del X[k]`, `global X; X = {}`.
    Shrink,
    /// Hands the collection elsewhere (an argument, a return value, an alias): anything may happen to it.
    Escape,
    /// `len(X)`: someone watches its size.
    Measure,
}

#[derive(Debug, Clone)]
pub(super) struct Use {
    pub op: Op,
    /// The statement (or expression) doing it, for the report.
    pub range: Range<usize>,
    pub text: String,
    /// The innermost enclosing function, by its range; `None` at module level.
    pub func: Option<Range<usize>>,
    /// True when the function runs once per process (registration, startup, import-time helpers).
    pub startup: bool,
    /// Is the innermost enclosing function an `async def` or a route handler?
    pub request_path: bool,
    /// The subscript key text for `X[k] = v`, when there is one.
    pub key: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Collection {
    pub name: String,
    pub kind: CollKind,
    /// `deque(maxlen=…)`, `TTLCache`… are bounded.
    pub bounded: bool,
    pub uses: Vec<Use>,
}

const GROW_METHODS: &[&str] = &[
    "append",
    "appendleft",
    "extend",
    "extendleft",
    "insert",
    "add",
    "update",
    "setdefault",
    "__setitem__",
];
const SHRINK_METHODS: &[&str] = &[
    "pop",
    "popleft",
    "popitem",
    "remove",
    "discard",
    "clear",
    "__delitem__",
    "difference_update",
    "intersection_update",
];
const READ_METHODS: &[&str] = &[
    "get",
    "keys",
    "values",
    "items",
    "copy",
    "count",
    "index",
    "most_common",
    "__contains__",
    "__getitem__",
    "issubset",
    "issuperset",
    "union",
    "difference",
    "intersection",
    "elements",
    "total",
];

/// The collection a module-level assignment's value creates, if any (and whether it is bounded).
fn collection_kind(value: &PyNode<'_>) -> Option<(CollKind, bool)> {
    match value.kind().as_ref() {
        "dictionary" => Some((CollKind::Dict, false)),
        "list" => Some((CollKind::List, false)),
        "set" => Some((CollKind::Set, false)),
        "call" => {
            let f = callee(value)?;
            let last = f.rsplit('.').next().unwrap_or(&f);
            let kind = match last {
                "dict" => CollKind::Dict,
                "list" => CollKind::List,
                "set" => CollKind::Set,
                "defaultdict" => CollKind::DefaultDict,
                "Counter" => CollKind::Counter,
                "OrderedDict" => CollKind::OrderedDict,
                "deque" => CollKind::Deque,
                _ => return None,
            };
            // prometheus_client's `Counter("name", "doc")` is a metric, not `collections.Counter`.
            if kind == CollKind::Counter
                && value
                    .field("arguments")
                    .and_then(|a| a.children().find(|c| c.is_named()))
                    .is_some_and(|a| a.kind() == "string" || a.kind() == "keyword_argument")
            {
                return None;
            }
            let bounded = kind == CollKind::Deque
                && (super::keyword_arg(value, "maxlen").is_some_and(|v| v.text() != "None")
                    || value
                        .field("arguments")
                        .is_some_and(|a| a.children().filter(|c| c.is_named()).count() >= 2));
            Some((kind, bounded))
        }
        _ => None,
    }
}

/// Text one of which a file must contain to define a module-level collection this analysis understands.
pub(super) const MODULE_COLLECTION_TOKENS: &[&str] = &[
    "= {}",
    "= []",
    "= set()",
    "= dict()",
    "= list()",
    "defaultdict(",
    "Counter(",
    "OrderedDict(",
    "deque(",
    "= {\n",
    "= [\n",
];

/// Module-level names bound to a mutable collection (direct children of the module, or of a top-level `try`/`if`).
fn module_collection_defs(root: &PyNode<'_>) -> Vec<(String, CollKind, bool)> {
    let mut out: Vec<(String, CollKind, bool)> = Vec::new();
    let mut stmts: Vec<PyNode<'_>> = root.children().collect();
    let mut i = 0;
    while i < stmts.len() {
        let s = stmts[i].clone();
        i += 1;
        match s.kind().as_ref() {
            "expression_statement" => {
                for a in s.children().filter(|c| c.kind() == "assignment") {
                    let (Some(left), Some(right)) = (a.field("left"), a.field("right")) else {
                        continue;
                    };
                    if left.kind() != "identifier" {
                        continue;
                    }
                    let name = left.text().to_string();
                    if name.starts_with("__") && name.ends_with("__") {
                        continue;
                    }
                    if let Some((kind, bounded)) = collection_kind(&right) {
                        out.retain(|(n, _, _)| *n != name);
                        out.push((name, kind, bounded));
                    } else {
                        // Rebound to something else at module level: not (only) a collection.
                        out.retain(|(n, _, _)| *n != name);
                    }
                }
            }
            "if_statement" | "try_statement" => {
                if in_main_guard(&s)
                    || s.field("condition")
                        .is_some_and(|c| c.text().contains("__main__"))
                {
                    continue;
                }
                for c in s.children() {
                    if c.kind() == "block" {
                        stmts.extend(c.children());
                    } else if matches!(
                        c.kind().as_ref(),
                        "else_clause" | "except_clause" | "finally_clause" | "elif_clause"
                    ) {
                        for b in c.children().filter(|b| b.kind() == "block") {
                            stmts.extend(b.children());
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Names a function binds locally (parameters, assignments, loop targets, `with … as`, imports), minus those it
/// declares `global`.
fn local_names(func: &PyNode<'_>) -> (HashSet<String>, HashSet<String>) {
    let mut locals: HashSet<String> = param_names(func).into_iter().collect();
    let mut globals: HashSet<String> = HashSet::new();
    let Some(body) = func.field("body") else {
        return (locals, globals);
    };
    if func.kind() == "lambda" {
        return (locals, globals);
    }
    for n in own_nodes(&body) {
        match n.kind().as_ref() {
            "global_statement" | "nonlocal_statement" => {
                for id in n.children().filter(|c| c.kind() == "identifier") {
                    globals.insert(id.text().to_string());
                }
            }
            "assignment" | "augmented_assignment" | "for_statement" | "for_in_clause" => {
                if let Some(left) = n.field("left") {
                    collect_targets(&left, &mut locals);
                }
            }
            "as_pattern_target" => collect_targets(&n, &mut locals),
            "named_expression" => {
                if let Some(name) = n.field("name") {
                    locals.insert(name.text().to_string());
                }
            }
            "import_statement" | "import_from_statement" => {
                for id in n.dfs().filter(|c| c.kind() == "identifier") {
                    locals.insert(id.text().to_string());
                }
            }
            _ => {}
        }
    }
    // Nested defs and classes bind their names too.
    for c in body.children() {
        let def = if c.kind() == "decorated_definition" {
            c.field("definition")
        } else {
            Some(c)
        };
        if let Some(d) = def
            && matches!(
                d.kind().as_ref(),
                "function_definition" | "class_definition"
            )
            && let Some(n) = d.field("name")
        {
            locals.insert(n.text().to_string());
        }
    }
    for g in &globals {
        locals.remove(g);
    }
    (locals, globals)
}

fn collect_targets(target: &PyNode<'_>, out: &mut HashSet<String>) {
    match target.kind().as_ref() {
        "identifier" => {
            out.insert(target.text().to_string());
        }
        "pattern_list"
        | "tuple_pattern"
        | "list_pattern"
        | "expression_list"
        | "tuple"
        | "list"
        | "as_pattern_target"
        | "list_splat_pattern"
        | "parenthesized_expression" => {
            for c in target.children() {
                collect_targets(&c, out);
            }
        }
        _ => {}
    }
}

/// Per function (by range): its local names, its `global` names, and whether it runs once per process.
struct FuncInfo {
    locals: HashSet<String>,
    globals: HashSet<String>,
    startup: bool,
    request_path: bool,
}

/// The names of the file's functions that run once per process.
struct StartupFunctions(HashSet<String>);

/// Functions that run once per process: registration decorators and import-time helpers (once per file).
fn startup_functions<'r>(
    ctx: &FileContext<'r>,
    root: &PyNode<'r>,
) -> std::rc::Rc<StartupFunctions> {
    ctx.memo(root, || StartupFunctions(startup_functions_of(ctx, root)))
}

fn startup_functions_of<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> HashSet<String> {
    let mut names: HashSet<String> = HashSet::new();
    // Decorators used anywhere in this file (`@name` / `@name(...)`).
    for d in ctx.of_kind(root, "decorator").iter() {
        let name = decorator_name(d);
        names.insert(name.rsplit('.').next().unwrap_or(&name).to_string());
    }
    // Calls made at import time: outside any `def`, `lambda` or class body, and outside
    // `if __name__ == "__main__":`.
    let mut stack: Vec<PyNode<'_>> = root.children().collect();
    while let Some(n) = stack.pop() {
        let kind = n.kind();
        if kind == "call"
            && let Some(f) = callee(&n)
        {
            names.insert(f.rsplit('.').next().unwrap_or(&f).to_string());
        }
        let main_guard = kind == "if_statement"
            && n.field("condition")
                .is_some_and(|c| c.text().contains("__main__"));
        if main_guard
            || matches!(
                kind.as_ref(),
                "function_definition" | "lambda" | "class_definition"
            )
        {
            continue;
        }
        stack.extend(n.children());
    }
    names
}

/// Does the function hand back one of its own parameters (`return fn`): the shape of a registration decorator?
fn returns_a_parameter(func: &PyNode<'_>) -> bool {
    let params: HashSet<String> = param_names(func).into_iter().collect();
    let Some(body) = func.field("body") else {
        return false;
    };
    own_nodes(&body).iter().any(|n| {
        n.kind() == "return_statement"
            && n.children()
                .find(|c| c.is_named())
                .is_some_and(|v| v.kind() == "identifier" && params.contains(v.text().as_ref()))
    })
}

fn func_info(func: &PyNode<'_>, startup_names: &HashSet<String>) -> FuncInfo {
    let (locals, globals) = local_names(func);
    let name = function_name(func).unwrap_or_default();
    let lname = name.to_ascii_lowercase();
    let startup = func.kind() == "function_definition"
        && (is_startup_name(&name)
            || lname.contains("warn")
            || lname.contains("_once")
            || lname.contains("deprecat")
            || startup_names.contains(&name)
            || returns_a_parameter(func)
            || is_startup_or_cli_decorated(func)
            || in_main_guard(func));
    let request_path = func.kind() == "function_definition"
        && (is_async_def(func) || is_route_handler(func))
        && !startup;
    FuncInfo {
        locals,
        globals,
        startup,
        request_path,
    }
}

/// Classify one identifier occurrence of a module-level collection name.
fn classify<'r>(id: &PyNode<'r>) -> Option<(Op, PyNode<'r>, Option<String>)> {
    let parent = id.parent()?;
    match parent.kind().as_ref() {
        "subscript"
            if parent
                .field("value")
                .is_some_and(|v| v.range() == id.range()) =>
        {
            let key = parent.field("subscript").map(|k| k.text().to_string());
            let gp = parent.parent()?;
            match gp.kind().as_ref() {
                "assignment"
                    if gp
                        .field("left")
                        .is_some_and(|l| l.range() == parent.range()) =>
                {
                    Some((Op::Grow, gp, key))
                }
                "augmented_assignment"
                    if gp
                        .field("left")
                        .is_some_and(|l| l.range() == parent.range()) =>
                {
                    Some((Op::Mutate, gp, key))
                }
                "delete_statement" => Some((Op::Shrink, gp, key)),
                "expression_list"
                    if gp.parent().is_some_and(|g| g.kind() == "delete_statement") =>
                {
                    Some((Op::Shrink, gp.parent()?, key))
                }
                "attribute"
                    if gp
                        .field("object")
                        .is_some_and(|o| o.range() == parent.range()) =>
                {
                    let call = gp.parent()?;
                    let method = gp.field("attribute")?.text().to_string();
                    if call.kind() == "call"
                        && (GROW_METHODS.contains(&method.as_str())
                            || SHRINK_METHODS.contains(&method.as_str()))
                    {
                        Some((Op::Mutate, call, key))
                    } else {
                        None
                    }
                }
                _ => None,
            }
        }
        "attribute"
            if parent
                .field("object")
                .is_some_and(|o| o.range() == id.range()) =>
        {
            let method = parent.field("attribute")?.text().to_string();
            let call = parent.parent()?;
            if call.kind() != "call"
                || call
                    .field("function")
                    .is_none_or(|f| f.range() != parent.range())
            {
                // A bound remover handed elsewhere (`task.add_done_callback(X.discard)`) still removes entries.
                if SHRINK_METHODS.contains(&method.as_str()) {
                    return Some((Op::Shrink, parent, None));
                }
                return None;
            }
            if GROW_METHODS.contains(&method.as_str()) {
                // The key (`setdefault`) or the element added (`append`, `add`, `insert`'s second argument).
                let nth = usize::from(method == "insert");
                let key = (method != "update")
                    .then(|| {
                        call.field("arguments")
                            .and_then(|a| a.children().filter(|c| c.is_named()).nth(nth))
                            .map(|k| k.text().to_string())
                    })
                    .flatten();
                Some((Op::Grow, call, key))
            } else if SHRINK_METHODS.contains(&method.as_str()) {
                Some((Op::Shrink, call, None))
            } else if READ_METHODS.contains(&method.as_str()) {
                None
            } else {
                // An unknown method (a subclass, `.sort()`, `.reverse()`): treat as a change of unknown effect.
                Some((Op::Escape, call, None))
            }
        }
        "argument_list" => {
            let call = parent.parent()?;
            if callee(&call).as_deref() == Some("len") {
                Some((Op::Measure, call, None))
            } else if callee(&call).is_some_and(|f| {
                matches!(
                    f.as_str(),
                    "list"
                        | "dict"
                        | "set"
                        | "sorted"
                        | "tuple"
                        | "iter"
                        | "any"
                        | "all"
                        | "sum"
                        | "min"
                        | "max"
                        | "print"
                        | "repr"
                        | "str"
                        | "bool"
                        | "enumerate"
                        | "isinstance"
                        | "json.dumps"
                        | "copy.copy"
                        | "copy.deepcopy"
                        | "reversed"
                ) || f.starts_with("logger.")
                    || f.starts_with("logging.")
                    || f.starts_with("log.")
            }) {
                None
            } else {
                Some((Op::Escape, call, None))
            }
        }
        "keyword_argument" => Some((Op::Escape, parent, None)),
        "return_statement" | "yield" => Some((Op::Escape, parent, None)),
        "assignment"
            if parent
                .field("right")
                .is_some_and(|r| r.range() == id.range()) =>
        {
            Some((Op::Escape, parent, None))
        }
        "assignment" | "augmented_assignment"
            if parent
                .field("left")
                .is_some_and(|l| l.range() == id.range()) =>
        {
            // Rebinding the global (`global X; X = {}` or `X |= …`).
            if parent.kind() == "augmented_assignment" {
                Some((Op::Grow, parent, None))
            } else {
                Some((Op::Shrink, parent, None))
            }
        }
        _ => None,
    }
}

/// Find every module-level collection and classify its uses inside functions (once per file: I5 and I6 both
/// read it).
pub(super) fn analyze_collections<'r>(
    ctx: &FileContext<'r>,
    root: &PyNode<'r>,
) -> std::rc::Rc<Vec<Collection>> {
    ctx.memo(root, || collections_of(ctx, root))
}

fn collections_of<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<Collection> {
    let defs = module_collection_defs(root);
    if defs.is_empty() {
        return Vec::new();
    }
    let names: HashMap<&str, usize> = defs
        .iter()
        .enumerate()
        .map(|(i, (n, _, _))| (n.as_str(), i))
        .collect();
    let mut out: Vec<Collection> = defs
        .iter()
        .map(|(name, kind, bounded)| Collection {
            name: name.clone(),
            kind: *kind,
            bounded: *bounded,
            uses: Vec::new(),
        })
        .collect();
    // Which functions run once per process needs a walk of the whole file: only when a name is used in one.
    let startup_names: std::cell::OnceCell<std::rc::Rc<StartupFunctions>> =
        std::cell::OnceCell::new();
    let mut infos: HashMap<(usize, usize), FuncInfo> = HashMap::new();
    for id in ctx.of_kind(root, "identifier").iter() {
        let text = id.text();
        let Some(&ci) = names.get(text.as_ref()) else {
            continue;
        };
        let funcs = enclosing_functions(id);
        if funcs.is_empty() {
            // Module level or class body: runs at import time.
            continue;
        }
        // Shadowed by a local of this function or of an enclosing one: not the module-level name.
        let mut shadowed = false;
        let mut startup = false;
        let mut request_path = false;
        for (depth, f) in funcs.iter().enumerate() {
            let key = (f.range().start, f.range().end);
            let info = infos.entry(key).or_insert_with(|| {
                func_info(
                    f,
                    &startup_names.get_or_init(|| startup_functions(ctx, root)).0,
                )
            });
            if info.locals.contains(text.as_ref()) && !info.globals.contains(text.as_ref()) {
                shadowed = true;
                break;
            }
            if info.startup {
                startup = true;
            }
            if depth == 0 {
                request_path = info.request_path;
            }
        }
        // Also the parameter list of a lambda/def naming it.
        if shadowed {
            continue;
        }
        let Some((op, node, key)) = classify(id) else {
            continue;
        };
        let key = key.map(|k| resolve_local(&funcs[0], &k, node.range().start));
        out[ci].uses.push(Use {
            op,
            range: node.range(),
            text: node.text().split_whitespace().collect::<Vec<_>>().join(" "),
            func: funcs.first().map(|f| f.range()),
            startup,
            request_path,
            key,
        });
    }
    out
}

/// If `name` is a local assigned earlier in `func` (`key = (url, user_id)`), its value's text joined to the name;
/// otherwise the name itself.
fn resolve_local(func: &PyNode<'_>, name: &str, before: usize) -> String {
    let is_ident = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !is_ident {
        return name.to_string();
    }
    let Some(body) = func.field("body") else {
        return name.to_string();
    };
    let mut best: Option<String> = None;
    for n in own_nodes(&body) {
        if n.kind() == "assignment"
            && n.range().start < before
            && n.field("left").is_some_and(|l| l.text() == name)
            && let Some(r) = n.field("right")
        {
            best = Some(r.text().to_string());
        }
    }
    best.unwrap_or_else(|| name.to_string())
}

/// Does a key expression look like it comes from requests or users (so the key space is unbounded)?
pub(super) fn request_ish_key(key: &str) -> bool {
    const WORDS: &[&str] = &[
        "user",
        "users",
        "username",
        "session",
        "thread",
        "conversation",
        "chat",
        "message",
        "messages",
        "request",
        "req",
        "query",
        "question",
        "prompt",
        "doc",
        "docs",
        "document",
        "file",
        "filename",
        "folder",
        "drive",
        "page",
        "email",
        "ip",
        "uuid",
        "run",
        "job",
        "task",
        "trace",
        "order",
        "customer",
        "upload",
        "event",
        "text",
        "content",
        "sid",
        "account",
        "member",
        "visitor",
        "correlation",
        "response",
        "result",
        "chunk",
        "record",
    ];
    let mut word = String::new();
    let mut segs: Vec<String> = Vec::new();
    for ch in key.chars().chain(std::iter::once(' ')) {
        if ch.is_alphanumeric() || ch == '_' {
            word.push(ch.to_ascii_lowercase());
        } else if !word.is_empty() {
            segs.extend(
                word.split('_')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            );
            word.clear();
        }
    }
    segs.iter().any(|s| WORDS.contains(&s.as_str()))
}

// ---------------------------------------------------------------------------------------------------------
// I5-module-mutable-state
// ---------------------------------------------------------------------------------------------------------

/// Names that say the collection memoises a resource (clients, compiled graphs, models, locks): per-process copies
/// of those are expected, not shared application state.
pub(super) fn is_resource_cache_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "client",
        "engine",
        "pool",
        "driver",
        "connection",
        "conn",
        "session_factory",
        "sessionmaker",
        "model",
        "encoder",
        "tokenizer",
        "embedder",
        "embedding",
        "graph",
        "agent",
        "chain",
        "llm",
        "registry",
        "handler",
        "plugin",
        "factory",
        "factories",
        "loader",
        "parser",
        "schema",
        "regex",
        "pattern",
        "compiled",
        "template",
        "module",
        "import",
        "logger",
        "provider",
        "tool",
        "classes",
        "types",
        "config",
        "settings",
        "instance",
        "singleton",
        "callback",
        "hook",
        "listener",
        "subscriber",
        "signal",
        "metric",
        "gauge",
        "histogram",
        "counter_vec",
        "cache",
        "memo",
        "lock",
        "semaphore",
        "mutex",
        "guard",
        "task",
        "future",
        "background",
    ]
    .iter()
    .any(|w| n.contains(w))
}

pub struct ModuleMutableState;

impl Check for ModuleMutableState {
    fn id(&self) -> &'static str {
        "module-mutable-state"
    }

    fn tokens(&self) -> &'static [&'static str] {
        MODULE_COLLECTION_TOKENS
    }

    /// Only changes on the request path count: an `async def` or a route handler.
    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        const REQUEST_PATH: &[&str] = &[
            "async",
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
        &[REQUEST_PATH]
    }

    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for c in analyze_collections(ctx, root).iter() {
            if super::i6_growth::grows_without_bound(c).is_some() {
                continue; // I6 reports it, with the memory angle.
            }
            if is_resource_cache_name(&c.name) {
                continue;
            }
            let changes: Vec<&Use> = c
                .uses
                .iter()
                .filter(|u| matches!(u.op, Op::Grow | Op::Mutate | Op::Shrink) && !u.startup)
                .collect();
            // Only state changed on the request path (an `async def` or a route handler) is clearly per-request.
            if !changes.iter().any(|u| u.request_path) {
                continue;
            }
            let mut seen_funcs: HashSet<(usize, usize)> = HashSet::new();
            for u in changes {
                let fkey = u.func.as_ref().map_or((0, 0), |r| (r.start, r.end));
                if !seen_funcs.insert(fkey) {
                    continue;
                }
                out.push(CheckMatch {
                    range: u.range.clone(),
                    message: Some(format!(
                        "`{}` changes module-level `{}` (a {}): every worker process and replica keeps its own copy, so this state differs between replicas and is lost on restart",
                        shorten(&u.text),
                        c.name,
                        c.kind.describe()
                    )),
                });
            }
        }
    }
}

pub(super) fn shorten(code: &str) -> String {
    let one: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > 60 {
        let cut: String = one.chars().take(57).collect();
        format!("{cut}…")
    } else {
        one
    }
}

// ---------------------------------------------------------------------------------------------------------
// I5-global-rebind-on-request-path
// ---------------------------------------------------------------------------------------------------------

pub struct GlobalRebindOnRequestPath;

/// Is every read of `name` in the file an argument of a logging call (a diagnostic counter)?
fn only_logged(root: &PyNode<'_>, name: &str) -> bool {
    root.dfs()
        .filter(|n| n.kind() == "identifier" && n.text() == name)
        .filter(|n| {
            // Skip the declaration, the increment and the module-level initialisation.
            let p = n.parent();
            !p.as_ref().is_some_and(|p| {
                matches!(p.kind().as_ref(), "global_statement")
                    || (matches!(p.kind().as_ref(), "assignment" | "augmented_assignment")
                        && p.field("left").is_some_and(|l| l.range() == n.range()))
            })
        })
        .all(|n| {
            n.ancestors().any(|a| {
                a.kind() == "call"
                    && callee(&a).is_some_and(|f| {
                        f.starts_with("logger.")
                            || f.starts_with("logging.")
                            || f.starts_with("log.")
                            || f.starts_with("_logger.")
                            || f.starts_with("LOGGER.")
                            || f == "print"
                    })
            })
        })
}

/// Global names that hold a lazily built resource or a cache: rebinding them per process is expected.
fn is_cache_or_resource_global(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    is_resource_cache_name(name)
        || [
            "cache",
            "cached",
            "latch",
            "ready",
            "readiness",
            "healthy",
            "health",
            "redis",
            "httpx",
            "http",
            "session",
            "key",
            "token",
            "secret",
            "loaded",
            "initialized",
            "initialised",
            "started",
            "warned",
            "_once",
            "last_",
            "since",
            "expires",
            "expiry",
            "ttl",
            "memo",
            "default",
            "current_app",
            "app",
            "executor",
            "loop",
            "thread",
            "process",
            "db",
            "vectorstore",
            "store",
            "index",
            "retriever",
            "embeddings",
            "credentials",
            "bucket",
            "s3",
            "bot",
        ]
        .iter()
        .any(|w| n.contains(w))
}

/// Function names of lifecycle and health code, where per-process state is the point.
fn is_lifecycle_name(name: &str) -> bool {
    let n = name.trim_start_matches('_').to_ascii_lowercase();
    is_startup_name(&n)
        || [
            "close",
            "dispose",
            "reset",
            "cleanup",
            "clean_up",
            "teardown",
            "tear_down",
            "connect",
            "disconnect",
            "health",
            "ready",
            "readiness",
            "liveness",
            "live",
            "ping",
            "warm",
            "reload",
            "refresh",
            "get_",
            "create_",
            "build_",
            "make_",
            "ensure_",
            "lazy",
            "cached",
        ]
        .iter()
        .any(|w| n.starts_with(w) || n.ends_with(w.trim_end_matches('_')))
}

impl Check for GlobalRebindOnRequestPath {
    fn id(&self) -> &'static str {
        "global-rebind-on-request-path"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["global "]
    }

    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        // Cheap pre-check: a line that starts with `global ` (the token also matches comments and prose).
        if !root
            .text()
            .lines()
            .any(|l| l.trim_start().starts_with("global "))
        {
            return;
        }
        let startup_names = startup_functions(ctx, root);
        let startup_names = &startup_names.0;
        for g in ctx.of_kind(root, "global_statement").iter() {
            if has_error(g) {
                continue;
            }
            let Some(func) = super::enclosing_function(g) else {
                continue;
            };
            if func.kind() != "function_definition" || in_main_guard(&func) {
                continue;
            }
            let fname = function_name(&func).unwrap_or_default();
            let info = func_info(&func, startup_names);
            if info.startup {
                continue;
            }
            let handler = is_route_handler(&func) && !is_lifecycle_name(&fname);
            let Some(body) = func.field("body") else {
                continue;
            };
            let declared: Vec<String> = g
                .children()
                .filter(|c| c.kind() == "identifier")
                .map(|c| c.text().to_string())
                .collect();
            // Counters (`X += 1`) anywhere outside start-up code; plain rebinding only in route handlers, and
            // not of caches or lazily built resources.
            let mut counters: Vec<String> = Vec::new();
            let mut rebound: Vec<String> = Vec::new();
            for n in own_nodes(&body) {
                let kind = n.kind();
                if !matches!(kind.as_ref(), "assignment" | "augmented_assignment") {
                    continue;
                }
                let Some(left) = n.field("left") else {
                    continue;
                };
                let mut t = HashSet::new();
                collect_targets(&left, &mut t);
                for d in &declared {
                    if !t.contains(d) {
                        continue;
                    }
                    let counter = kind == "augmented_assignment"
                        && n.field("operator")
                            .is_some_and(|o| matches!(o.text().as_ref(), "+=" | "-="));
                    if counter {
                        let n = d.to_ascii_lowercase();
                        let f = fname.to_ascii_lowercase();
                        let limit_like = [
                            "limit", "quota", "rate", "throttl", "budget", "requests", "calls",
                            "attempt",
                        ]
                        .iter()
                        .any(|w| n.contains(w) || f.contains(w));
                        if [
                            "generation",
                            "version",
                            "epoch",
                            "_gen",
                            "in_process",
                            "per_process",
                        ]
                        .iter()
                        .any(|w| n.contains(w))
                            || !(limit_like || info.request_path)
                            || only_logged(root, d)
                        {
                            continue;
                        }
                        if !counters.contains(d) {
                            counters.push(d.clone());
                        }
                    } else if handler && !is_cache_or_resource_global(d) && !rebound.contains(d) {
                        rebound.push(d.clone());
                    }
                }
            }
            let message = if !counters.is_empty() {
                format!(
                    "`{}` counts in a process-global (`global {}` in `{fname}`): each worker and replica keeps its own count, so limits or totals built on it are wrong as soon as there is more than one process",
                    counters
                        .iter()
                        .map(|c| format!("{c} += …"))
                        .collect::<Vec<_>>()
                        .join("`, `"),
                    counters.join(", "),
                )
            } else if !rebound.is_empty() {
                format!(
                    "`global {}` in route handler `{fname}` keeps request state in the process: another replica (or worker) does not see it, and concurrent requests overwrite each other's",
                    rebound.join(", "),
                )
            } else {
                continue;
            };
            out.push(CheckMatch {
                range: g.range(),
                message: Some(message),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// I5-environ-mutation
// ---------------------------------------------------------------------------------------------------------

/// If this node changes `os.environ` (or calls `os.putenv`/`os.unsetenv`), a short description of how.
fn environ_change(node: &PyNode<'_>, bare_ok: bool) -> Option<String> {
    let is_environ = |n: &PyNode<'_>| {
        let t: String = n.text().split_whitespace().collect();
        t == "os.environ" || (bare_ok && t == "environ")
    };
    match node.kind().as_ref() {
        "assignment" | "augmented_assignment" => {
            let left = node.field("left")?;
            (left.kind() == "subscript" && left.field("value").is_some_and(|v| is_environ(&v)))
                .then(|| format!("{} = …", left.text()))
        }
        "delete_statement" => {
            let target = node.children().find(|c| c.is_named())?;
            (target.kind() == "subscript" && target.field("value").is_some_and(|v| is_environ(&v)))
                .then(|| format!("del {}", target.text()))
        }
        "call" => {
            let f = callee(node)?;
            if matches!(
                f.as_str(),
                "os.putenv" | "os.unsetenv" | "putenv" | "unsetenv"
            ) {
                return Some(format!("{f}(…)"));
            }
            let (obj, method) = f.rsplit_once('.')?;
            (matches!(obj, "os.environ" | "environ")
                && matches!(
                    method,
                    "pop"
                        | "update"
                        | "setdefault"
                        | "clear"
                        | "popitem"
                        | "__setitem__"
                        | "__delitem__"
                ))
            .then(|| format!("{f}(…)"))
        }
        _ => None,
    }
}

/// Is the node inside a `with …lock…:` block (the team serialises the change)?
fn under_lock(node: &PyNode<'_>) -> bool {
    node.ancestors().any(|a| {
        a.kind() == "with_statement"
            && a.children()
                .find(|c| c.kind() == "with_clause")
                .is_some_and(|c| c.text().to_ascii_lowercase().contains("lock"))
    })
}

/// Parameter names that carry a tenant's or a request's data.
fn is_tenant_or_request_param(name: &str) -> bool {
    let n = name.trim_start_matches('_').to_ascii_lowercase();
    matches!(
        n.as_str(),
        "app"
            | "application"
            | "tenant"
            | "org"
            | "organization"
            | "workspace"
            | "agent"
            | "user"
            | "request"
            | "req"
            | "api_key"
            | "apikey"
            | "token"
            | "access_token"
            | "credentials"
            | "creds"
            | "secret"
            | "langsmith_api_key"
            | "project"
            | "project_name"
            | "customer"
            | "account"
    ) || n.starts_with("app_")
        || n.starts_with("tenant")
        || n.starts_with("org_")
        || n.starts_with("organization")
        || n.starts_with("workspace")
        || n.starts_with("agent_")
        || n.starts_with("user_")
        || n.ends_with("_api_key")
        || n.ends_with("_token")
}

/// Identifiers used in a node's text.
fn identifiers_in(node: &PyNode<'_>) -> HashSet<String> {
    node.dfs()
        .filter(|n| n.kind() == "identifier")
        .map(|n| n.text().to_string())
        .collect()
}

/// Where an environment change runs: `Some((function name, why it is per request))`, or `None` when it runs at
/// import, in a `__main__` block, under a lock, or in start-up code with no per-call data.
fn environ_context(node: &PyNode<'_>, startup_names: &HashSet<String>) -> Option<(String, String)> {
    let funcs = enclosing_functions(node);
    let inner = funcs.first()?;
    if in_main_guard(node) || under_lock(node) {
        return None;
    }
    let name = if inner.kind() == "lambda" {
        "lambda".to_string()
    } else {
        function_name(inner).unwrap_or_default()
    };
    // A value taken from a tenant's or request's parameter makes it per call, whatever the function is called.
    let used = identifiers_in(node);
    for f in &funcs {
        if let Some(p) = param_names(f)
            .into_iter()
            .find(|p| used.contains(p) && is_tenant_or_request_param(p))
        {
            return Some((name, format!("it writes per-call data (`{p}`)")));
        }
    }
    let mut request_path = false;
    for (i, f) in funcs.iter().enumerate() {
        if f.kind() != "function_definition" {
            continue;
        }
        let info = func_info(f, startup_names);
        if info.startup {
            return None;
        }
        if i == 0 {
            request_path = info.request_path;
        }
    }
    if !request_path {
        return None;
    }
    let why = if is_route_handler(inner) {
        "it runs in a route handler".to_string()
    } else {
        "it runs inside `async def`, on the request path".to_string()
    };
    Some((name, why))
}

pub struct EnvironMutationOnRequestPath;

impl Check for EnvironMutationOnRequestPath {
    fn id(&self) -> &'static str {
        "environ-mutation-on-request-path"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "environ[",
            "environ.pop",
            "environ.update",
            "environ.setdefault",
            "environ.clear",
            "environ.popitem",
            "putenv",
            "unsetenv",
        ]
    }

    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let startup_names = startup_functions(ctx, root);
        let startup_names = &startup_names.0;
        // A bare `environ` is the process environment only when imported from `os`.
        let bare_ok = root.text().contains("from os import");
        for n in root.dfs() {
            if !matches!(
                n.kind().as_ref(),
                "assignment" | "augmented_assignment" | "delete_statement" | "call"
            ) {
                continue;
            }
            let Some(how) = environ_change(&n, bare_ok) else {
                continue;
            };
            if has_error(&n) {
                continue;
            }
            let Some((fname, why)) = environ_context(&n, startup_names) else {
                continue;
            };
            out.push(CheckMatch {
                range: n.range(),
                message: Some(format!(
                    "`{}` in `{fname}` changes the environment of the whole process and {why}: concurrent requests of other tenants read and overwrite the same variable",
                    shorten(&how)
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

    #[test]
    fn collections_and_uses() {
        let src = "CACHE = {}\nSEEN: set[str] = set()\nQ = deque(maxlen=10)\n\nasync def f(k):\n    CACHE[k] = 1\n    SEEN.add(k)\n    Q.append(k)\n\ndef g(CACHE):\n    CACHE[1] = 2\n";
        let doc = Lang::Python.ast_grep(src);
        let cs = analyze_collections(&FileContext::detached(), &doc.root());
        assert_eq!(cs.len(), 3);
        assert_eq!(cs[0].name, "CACHE");
        assert_eq!(cs[0].uses.len(), 1, "the parameter shadows the global in g");
        assert_eq!(cs[0].uses[0].op, Op::Grow);
        assert!(cs[2].bounded);
    }

    #[test]
    fn registration_decorators_are_startup() {
        let src = "HANDLERS = {}\n\ndef handler(name):\n    def deco(fn):\n        HANDLERS[name] = fn\n        return fn\n    return deco\n";
        let doc = Lang::Python.ast_grep(src);
        let cs = analyze_collections(&FileContext::detached(), &doc.root());
        assert!(cs[0].uses.iter().all(|u| u.startup));
    }
}
