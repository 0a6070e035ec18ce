//! Module state: the module-level collections of a file (dicts, lists, sets, caches) and how each function uses
//! them (grows, shrinks, reads, rebinds), with whether the function runs per request or once at startup.

use super::roles::{is_route_handler, is_startup_name, is_startup_or_cli_decorated};
use super::scopes::{OwnNodes, enclosing_functions, in_main_guard, own_nodes};
use super::syntax::*;
use crate::analysis::context::FileContext;
use crate::analysis::nodes::PyNode;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// What sort of collection a module-level name holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollKind {
    Dict,
    List,
    Set,
    DefaultDict,
    Counter,
    OrderedDict,
    Deque,
}

impl CollKind {
    pub fn describe(self) -> &'static str {
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
pub enum Op {
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
pub struct Use {
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
    /// The statement stores, drops or counts a live object of this process — a name the same function starts,
    /// closes or stops (`await session.start()`, `session.close()`) — under a key that is no request's id (a
    /// process setting, or the object itself). See [`Collection::holds_live_objects`].
    pub live: bool,
}

#[derive(Debug, Clone)]
pub struct Collection {
    pub name: String,
    pub kind: CollKind,
    /// `deque(maxlen=…)`, `TTLCache`… are bounded.
    pub bounded: bool,
    pub uses: Vec<Use>,
}

impl Collection {
    /// Does it hold live objects of this process — browsers, sockets, subprocesses, clients the code starts and
    /// closes — rather than data? Such handles cannot live anywhere but in the process that opened them: keeping
    /// them per process is no state that replicas should share.
    pub fn holds_live_objects(&self) -> bool {
        self.uses.iter().any(|u| u.live)
    }
}

/// Methods that start or end a live object's life (a browser, a socket, a subprocess, a client).
const LIFECYCLE_METHODS: &[&str] = &[
    "start",
    "close",
    "aclose",
    "stop",
    "terminate",
    "kill",
    "shutdown",
    "quit",
    "disconnect",
];

/// The names of the statement around `node` that `func` starts or closes (`x.close()`): live objects.
fn live_names(func: &PyNode<'_>, node: &PyNode<'_>, collection: &str) -> HashSet<String> {
    // The whole statement: `session = X.pop(k)` names `session` outside the call.
    let mut stmt = node.clone();
    for _ in 0..4 {
        match stmt.parent() {
            // Up to the simple statement, never into a block or a compound statement's other parts.
            Some(p)
                if !matches!(
                    p.kind().as_ref(),
                    "block"
                        | "module"
                        | "if_statement"
                        | "elif_clause"
                        | "while_statement"
                        | "for_statement"
                        | "with_statement"
                        | "with_clause"
                        | "try_statement"
                ) =>
            {
                stmt = p
            }
            _ => break,
        }
    }
    let names: HashSet<String> = stmt
        .dfs()
        .filter(|n| n.kind() == "identifier")
        .map(|n| n.text().to_string())
        .filter(|n| n != collection)
        .collect();
    let Some(body) = func.field("body").filter(|_| !names.is_empty()) else {
        return HashSet::new();
    };
    own_nodes(&body, OwnNodes::Below)
        .iter()
        .filter(|n| n.kind() == "call")
        .filter_map(callee)
        .filter_map(|f| {
            let (object, method) = f.rsplit_once('.')?;
            (LIFECYCLE_METHODS.contains(&method) && names.contains(object))
                .then(|| object.to_string())
        })
        .collect()
}

pub const GROW_METHODS: &[&str] = &[
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
pub const SHRINK_METHODS: &[&str] = &[
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
pub const READ_METHODS: &[&str] = &[
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
pub fn collection_kind(value: &PyNode<'_>) -> Option<(CollKind, bool)> {
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
pub const MODULE_COLLECTION_TOKENS: &[&str] = &[
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
pub fn module_collection_defs(root: &PyNode<'_>) -> Vec<(String, CollKind, bool)> {
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
pub fn local_names(func: &PyNode<'_>) -> (HashSet<String>, HashSet<String>) {
    let mut locals: HashSet<String> = param_names(func).into_iter().collect();
    let mut globals: HashSet<String> = HashSet::new();
    let Some(body) = func.field("body") else {
        return (locals, globals);
    };
    if func.kind() == "lambda" {
        return (locals, globals);
    }
    for n in own_nodes(&body, OwnNodes::Below) {
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

pub fn collect_targets(target: &PyNode<'_>, out: &mut HashSet<String>) {
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
pub struct FuncInfo {
    pub locals: HashSet<String>,
    pub globals: HashSet<String>,
    pub startup: bool,
    pub request_path: bool,
}

/// The names of the file's functions that run once per process.
pub struct StartupFunctions(pub HashSet<String>);

/// Functions that run once per process: registration decorators and import-time helpers (once per file).
pub fn startup_functions<'r>(
    ctx: &FileContext<'r>,
    root: &PyNode<'r>,
) -> std::rc::Rc<StartupFunctions> {
    ctx.memo(root, || StartupFunctions(startup_functions_of(ctx, root)))
}

pub fn startup_functions_of<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> HashSet<String> {
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
pub fn returns_a_parameter(func: &PyNode<'_>) -> bool {
    let params: HashSet<String> = param_names(func).into_iter().collect();
    let Some(body) = func.field("body") else {
        return false;
    };
    own_nodes(&body, OwnNodes::Below).iter().any(|n| {
        n.kind() == "return_statement"
            && n.children()
                .find(|c| c.is_named())
                .is_some_and(|v| v.kind() == "identifier" && params.contains(v.text().as_ref()))
    })
}

pub fn func_info(func: &PyNode<'_>, startup_names: &HashSet<String>) -> FuncInfo {
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
pub fn classify<'r>(id: &PyNode<'r>) -> Option<(Op, PyNode<'r>, Option<String>)> {
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
pub fn analyze_collections<'r>(
    ctx: &FileContext<'r>,
    root: &PyNode<'r>,
) -> std::rc::Rc<Vec<Collection>> {
    ctx.memo(root, || collections_of(ctx, root))
}

pub fn collections_of<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<Collection> {
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
        let live_here = live_names(&funcs[0], &node, text.as_ref());
        // A live object kept under a request's id (`sockets[conversation_id] = websocket`) is routing state other
        // requests look up: that breaks across replicas. Under a process setting or itself, it is a resource cache.
        let live = !live_here.is_empty()
            && key
                .as_ref()
                .is_none_or(|k| live_here.contains(k.trim()) || !request_ish_key(k));
        let key = key.map(|k| resolve_local(&funcs[0], &k, node.range().start));
        out[ci].uses.push(Use {
            live,
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
pub fn resolve_local(func: &PyNode<'_>, name: &str, before: usize) -> String {
    let is_ident = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !is_ident {
        return name.to_string();
    }
    let Some(body) = func.field("body") else {
        return name.to_string();
    };
    let mut best: Option<String> = None;
    for n in own_nodes(&body, OwnNodes::Below) {
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
pub fn request_ish_key(key: &str) -> bool {
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

/// Does this use add entries (or grow an entry's inner collection)?
pub fn is_growth(c: &Collection, u: &Use) -> bool {
    match u.op {
        Op::Grow => true,
        Op::Mutate => {
            matches!(c.kind, CollKind::DefaultDict | CollKind::Counter)
                || [
                    ".append(",
                    ".add(",
                    ".extend(",
                    ".update(",
                    ".setdefault(",
                    ".insert(",
                ]
                .iter()
                .any(|m| u.text.contains(m))
        }
        _ => false,
    }
}

/// If the collection is only ever added to at run time, the first growing use outside start-up code.
pub fn grows_without_bound(c: &Collection) -> Option<&Use> {
    if c.bounded {
        return None;
    }
    // Anything that removes entries, resets, measures or hands the collection elsewhere means it is managed (or
    // may be, where we cannot see).
    if c.uses.iter().any(|u| {
        matches!(u.op, Op::Shrink | Op::Escape | Op::Measure)
            || (u.op == Op::Mutate && u.text.contains(".pop"))
    }) {
        return None;
    }
    c.uses
        .iter()
        .find(|u| !u.startup && is_growth(c, u) && unbounded_key(c, u))
}

/// Lists and sets grow per call; dicts only when their keys come from an unbounded space (ids, users, texts):
/// a dict keyed by provider name or config URL stays small.
pub fn unbounded_key(c: &Collection, u: &Use) -> bool {
    match c.kind {
        CollKind::List | CollKind::Deque | CollKind::Set => {
            u.request_path || u.key.as_deref().is_some_and(request_ish_key)
        }
        _ => match &u.key {
            // `X["listeners"].append(…)`: a fixed slot whose inner collection grows; per request or not?
            Some(k) if k.starts_with('"') || k.starts_with('\'') => u.request_path,
            Some(k) => request_ish_key(k),
            // `.update(...)` / `X[k].append(v)` without a visible key: the inner growth of a keyed value.
            None => u.op == Op::Mutate,
        },
    }
}
