//! C6: unbounded fan-out — one concurrent task per item of a collection whose size the code does not fix.
//!
//! Reported: `asyncio.gather(*(f(x) for x in xs))`, `gather(*[...])`, `gather(*tasks)` where `tasks` is a
//! comprehension or a list appended to in a loop, `asyncio.as_completed([...for x in xs])`, and
//! `asyncio.create_task(...)` / `loop.create_task` / `tg.create_task` / `tg.start_soon` inside a `for` loop
//! or comprehension over a collection. Not reported: fixed-size gathers (`gather(a(), b())`), collections fixed by
//! the code (literals, `range(N)` worker pools, `self.<attr>` registries, module constants, lists appended to
//! outside loops), batches (the loop variable of an enclosing `for`, a slice `xs[i:i + n]`), and fan-out bounded
//! by a semaphore or limiter in the function, in the coroutine it starts, or passed to it.
//!
//! The collection's origin sets the detector: a parameter of a route handler (request input) or anything else.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::roles::is_route_handler;
use crate::analysis::semantic::python::scopes::{OwnNodes, own_nodes};
use crate::analysis::semantic::python::syntax::{dotted, has_error};
use crate::analysis::semantic::python::text::{Cut, shorten};
use regex::Regex;
use std::sync::OnceLock;

/// How big a collection can get.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Size {
    /// Fixed by the code, a batch, or unknown: not reported.
    Fixed,
    /// Sized by data (a parameter of a helper, a query result, an awaited call).
    Data(String),
    /// Sized by the request of a route handler.
    Request(String),
}

impl Size {
    fn max(self, other: Size) -> Size {
        if other > self { other } else { self }
    }
}

/// A fan-out found: the collection it iterates and the expression started per item.
struct Fanout<'r> {
    iterable: PyNode<'r>,
    element: Option<PyNode<'r>>,
    /// The list the tasks are collected in, when there is one (`tasks`).
    list: Option<String>,
}

/// Unbounded fan-out; `request` selects the findings whose collection is request input.
pub struct UnboundedFanout {
    pub request: bool,
}

pub static UNBOUNDED_FANOUT_REQUEST: UnboundedFanout = UnboundedFanout { request: true };
pub static UNBOUNDED_FANOUT: UnboundedFanout = UnboundedFanout { request: false };

fn limiter_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)semaphore|capacitylimiter|limiter|throttl|bulkhead|\bsem\b|_sem\b|\bsem_|aiometer")
            .unwrap_or_else(|e| panic!("limiter regex: {e}"))
    })
}

/// The parameter node of `func` named `name`.
fn param<'r>(func: &PyNode<'r>, name: &str) -> Option<PyNode<'r>> {
    let params = func.field("parameters")?;
    params.children().find(|p| {
        let n = match p.kind().as_ref() {
            "identifier" => Some(p.clone()),
            "typed_parameter" => p.child(0),
            "default_parameter" | "typed_default_parameter" => p.field("name"),
            "list_splat_pattern" | "dictionary_splat_pattern" => p.child(1),
            _ => None,
        };
        n.is_some_and(|n| n.text() == name)
    })
}

/// The outermost function containing `node` (or `func` itself).
fn outermost<'r>(func: &PyNode<'r>) -> PyNode<'r> {
    func.ancestors()
        .filter(|a| a.kind() == "function_definition")
        .last()
        .unwrap_or_else(|| func.clone())
}

/// The class `func` is a method of, if any.
fn owning_class<'r>(func: &PyNode<'r>) -> Option<PyNode<'r>> {
    for a in func.ancestors() {
        match a.kind().as_ref() {
            "function_definition" | "lambda" => return None,
            "class_definition" => return Some(a),
            _ => {}
        }
    }
    None
}

/// The first `for_in_clause` iterable and the body of a comprehension.
fn comprehension<'r>(node: &PyNode<'r>) -> Option<Fanout<'r>> {
    if !matches!(
        node.kind().as_ref(),
        "list_comprehension" | "generator_expression" | "set_comprehension"
    ) {
        return None;
    }
    let clause = node.children().find(|c| c.kind() == "for_in_clause")?;
    Some(Fanout {
        iterable: clause.field("right")?,
        element: node.field("body"),
        list: None,
    })
}

/// Is `node` inside the loop body of an enclosing `for` of `func` (not in its iterable)? The loop, if so.
fn enclosing_for<'r>(node: &PyNode<'r>, func: &PyNode<'r>) -> Option<PyNode<'r>> {
    let mut prev = node.clone();
    for a in node.ancestors() {
        if a.node_id() == func.node_id() {
            return None;
        }
        match a.kind().as_ref() {
            "function_definition" | "lambda" | "class_definition" => return None,
            "for_statement"
                if a.field("body")
                    .is_some_and(|b| b.node_id() == prev.node_id()) =>
            {
                return Some(a);
            }
            _ => {}
        }
        prev = a;
    }
    None
}

/// The comprehension whose element (`body`) contains `node`, within `func`.
fn enclosing_comprehension<'r>(node: &PyNode<'r>, func: &PyNode<'r>) -> Option<PyNode<'r>> {
    let mut prev = node.clone();
    for a in node.ancestors() {
        if a.node_id() == func.node_id() {
            return None;
        }
        match a.kind().as_ref() {
            "function_definition" | "lambda" | "class_definition" => return None,
            "list_comprehension" | "generator_expression" | "set_comprehension"
                if a.field("body")
                    .is_some_and(|b| b.node_id() == prev.node_id()) =>
            {
                return Some(a);
            }
            _ => {}
        }
        prev = a;
    }
    None
}

/// Is `name` a loop variable of a `for` or comprehension around `node` within `func`?
fn is_loop_variable(node: &PyNode<'_>, func: &PyNode<'_>, name: &str) -> bool {
    for a in node.ancestors() {
        if a.node_id() == func.node_id() {
            return false;
        }
        let targets: Vec<PyNode<'_>> = match a.kind().as_ref() {
            "for_statement" => a.field("left").into_iter().collect(),
            "list_comprehension"
            | "generator_expression"
            | "set_comprehension"
            | "dictionary_comprehension" => a
                .children()
                .filter(|c| c.kind() == "for_in_clause")
                .filter_map(|c| c.field("left"))
                .collect(),
            _ => Vec::new(),
        };
        if targets.iter().any(|t| {
            t.dfs()
                .any(|n| n.kind() == "identifier" && n.text() == name)
        }) {
            return true;
        }
    }
    false
}

struct Ctx<'a, 'r> {
    func: PyNode<'r>,
    nodes: &'a [PyNode<'r>],
    route: bool,
}

impl<'r> Ctx<'_, 'r> {
    /// Values assigned to `name` in the function (`name = v`, `name: T = v`).
    fn assigned(&self, name: &str) -> Vec<PyNode<'r>> {
        self.nodes
            .iter()
            .filter(|n| n.kind() == "assignment")
            .filter(|n| {
                n.field("left")
                    .is_some_and(|l| l.kind() == "identifier" && l.text() == name)
            })
            .filter_map(|n| n.field("right"))
            .collect()
    }

    /// Calls `name.append(x)` / `name.add(x)` / `name.extend(xs)` in the function.
    fn appends(&self, name: &str) -> Vec<(PyNode<'r>, String)> {
        self.nodes
            .iter()
            .filter(|n| n.kind() == "call")
            .filter_map(|c| {
                let f = c.field("function")?;
                if f.kind() != "attribute" || f.field("object")?.text() != name {
                    return None;
                }
                let m = f.field("attribute")?.text().to_string();
                matches!(m.as_str(), "append" | "add" | "extend" | "insert").then(|| (c.clone(), m))
            })
            .collect()
    }

    /// Where the tasks of a `*name` splat come from.
    fn fanout_of(&self, expr: &PyNode<'r>, depth: usize) -> Option<Fanout<'r>> {
        if depth > 4 {
            return None;
        }
        if let Some(f) = comprehension(expr) {
            return Some(f);
        }
        match expr.kind().as_ref() {
            "call" => {
                let callee = dotted(&expr.field("function")?)?;
                let args: Vec<PyNode<'r>> = expr
                    .field("arguments")?
                    .children()
                    .filter(|a| a.is_named() && a.kind() != "comment")
                    .collect();
                match callee.as_str() {
                    "map" if args.len() >= 2 => Some(Fanout {
                        iterable: args[1].clone(),
                        element: None,
                        list: None,
                    }),
                    "list" | "tuple" | "set" if args.len() == 1 => {
                        self.fanout_of(&args[0], depth + 1)
                    }
                    _ => None,
                }
            }
            "identifier" => {
                let name = expr.text().to_string();
                for v in self.assigned(&name) {
                    if let Some(mut f) = self.fanout_of(&v, depth + 1) {
                        f.list = Some(name.clone());
                        return Some(f);
                    }
                }
                // A list built by appending inside a loop over a collection.
                for (call, m) in self.appends(&name) {
                    let arg = call
                        .field("arguments")
                        .and_then(|a| a.children().filter(|c| c.is_named()).last());
                    if m == "extend" {
                        if let Some(a) = arg
                            && let Some(mut f) = self.fanout_of(&a, depth + 1)
                        {
                            f.list = Some(name.clone());
                            return Some(f);
                        }
                        continue;
                    }
                    if let Some(l) = enclosing_for(&call, &self.func)
                        && let Some(it) = l.field("right")
                    {
                        return Some(Fanout {
                            iterable: it,
                            element: arg,
                            list: Some(name.clone()),
                        });
                    }
                }
                None
            }
            "parenthesized_expression" => self.fanout_of(&expr.child(1)?, depth + 1),
            _ => None,
        }
    }

    /// How big the collection `expr` (evaluated at `at`) can get.
    fn size(&self, expr: &PyNode<'r>, at: &PyNode<'r>, depth: usize) -> Size {
        if depth > 6 {
            return Size::Fixed;
        }
        let kind = expr.kind();
        match kind.as_ref() {
            "identifier" => {
                let name = expr.text().to_string();
                if matches!(name.as_str(), "self" | "cls") {
                    return Size::Fixed;
                }
                if is_loop_variable(at, &self.func, &name) {
                    // An item of an enclosing loop: a batch, or a per-item sub-collection.
                    return Size::Fixed;
                }
                if let Some(p) = param(&self.func, &name) {
                    let injected = p.text().contains("Depends(");
                    return if self.route && !injected {
                        Size::Request(name)
                    } else {
                        Size::Data(name)
                    };
                }
                let mut size = Size::Fixed;
                for v in self.assigned(&name) {
                    let s = match v.kind().as_ref() {
                        "list" | "set" | "tuple" | "dictionary"
                            if v.named_children().count() == 0 =>
                        {
                            self.appended_size(&name, depth)
                        }
                        _ => self.size(&v, &v, depth + 1),
                    };
                    size = size.max(rename(s, &name));
                }
                size
            }
            "attribute" => match expr.field("object") {
                Some(obj) => rename(
                    self.size(&obj, at, depth + 1),
                    &shorten(&expr.text(), Cut::NAME),
                ),
                None => Size::Fixed,
            },
            "subscript" => {
                if expr.field("subscript").is_some_and(|s| s.kind() == "slice")
                    || expr.children().any(|c| c.kind() == "slice")
                {
                    return Size::Fixed;
                }
                match expr.field("value") {
                    Some(v) => rename(
                        self.size(&v, at, depth + 1),
                        &shorten(&expr.text(), Cut::NAME),
                    ),
                    None => Size::Fixed,
                }
            }
            "await" => {
                let inner = expr.child(1);
                let from_request = inner.as_ref().is_some_and(|c| {
                    c.kind() == "call"
                        && c.field("function")
                            .and_then(|f| dotted(&f))
                            .and_then(|d| d.split('.').next().map(str::to_string))
                            .is_some_and(|root| {
                                self.route
                                    && param(&self.func, &root)
                                        .is_some_and(|p| !p.text().contains("Depends("))
                            })
                });
                let text = shorten(&expr.text(), Cut::NAME);
                if from_request {
                    Size::Request(text)
                } else if inner.as_ref().is_some_and(|c| loads_data(c, true)) {
                    Size::Data(text)
                } else {
                    // An awaited call that does not read data (an LLM plan, a config look-up): its size is
                    // not one we can tell.
                    Size::Fixed
                }
            }
            "call" => {
                let Some(f) = expr.field("function") else {
                    return Size::Fixed;
                };
                let args: Vec<PyNode<'r>> = expr
                    .field("arguments")
                    .map(|a| {
                        a.children()
                            .filter(|c| c.is_named() && c.kind() != "comment")
                            .collect()
                    })
                    .unwrap_or_default();
                let callee = dotted(&f).unwrap_or_default();
                match callee.as_str() {
                    "range" => {
                        // `range(min(concurrency, len(jobs)))`: a worker pool capped by a limit, whatever the
                        // data's size (the smallest of the sizes).
                        if let Some(m) = args.first().filter(|a| {
                            a.kind() == "call"
                                && a.field("function").is_some_and(|f| f.text() == "min")
                        }) {
                            let sizes: Vec<Size> = m
                                .field("arguments")
                                .map(|a| {
                                    a.children()
                                        .filter(|c| c.is_named() && c.kind() != "comment")
                                        .map(|c| {
                                            // `concurrency`, `max_workers`, `settings.POOL_SIZE`: a limit.
                                            let t = c.text().to_ascii_lowercase();
                                            let limit = matches!(
                                                c.kind().as_ref(),
                                                "identifier" | "attribute"
                                            ) && [
                                                "concurren",
                                                "limit",
                                                "max",
                                                "worker",
                                                "pool",
                                                "parallel",
                                                "batch",
                                            ]
                                            .iter()
                                            .any(|w| t.contains(w));
                                            if limit {
                                                Size::Fixed
                                            } else {
                                                self.size(&c, at, depth + 1)
                                            }
                                        })
                                        .collect()
                                })
                                .unwrap_or_default();
                            return sizes.into_iter().min().unwrap_or(Size::Fixed);
                        }
                        // `range(N)`: a fixed worker count; `range(len(xs))` follows `xs`.
                        for a in &args {
                            for c in a.dfs().filter(|n| n.kind() == "call") {
                                if c.field("function").is_some_and(|f| f.text() == "len")
                                    && let Some(x) = c
                                        .field("arguments")
                                        .and_then(|a| a.children().find(|c| c.is_named()))
                                {
                                    return self.size(&x, at, depth + 1);
                                }
                            }
                        }
                        Size::Fixed
                    }
                    "filter" | "map" if args.len() >= 2 => self.size(&args[1], at, depth + 1),
                    "enumerate" | "zip" | "sorted" | "reversed" | "list" | "set" | "tuple"
                    | "iter" | "dict" => match args.first() {
                        Some(a) if a.kind() != "keyword_argument" => self.size(a, at, depth + 1),
                        _ => Size::Fixed,
                    },
                    _ => {
                        if f.kind() == "attribute"
                            && let Some(obj) = f.field("object")
                        {
                            // `xs.items()`, `body.urls.copy()`, `(await db.execute(q)).scalars().all()`.
                            let s = self.size(&obj, at, depth + 1);
                            if s != Size::Fixed {
                                return rename(s, &shorten(&expr.text(), Cut::NAME));
                            }
                        }
                        let s = match args.first() {
                            Some(a) if a.kind() != "keyword_argument" => {
                                self.size(a, at, depth + 1)
                            }
                            _ => Size::Fixed,
                        };
                        if s == Size::Fixed && loads_data(expr, false) {
                            return Size::Data(shorten(&expr.text(), Cut::NAME));
                        }
                        s
                    }
                }
            }
            "parenthesized_expression" => match expr.child(1) {
                Some(c) => self.size(&c, at, depth + 1),
                None => Size::Fixed,
            },
            "conditional_expression" | "boolean_operator" => {
                let mut s = Size::Fixed;
                for c in expr.named_children() {
                    s = s.max(self.size(&c, at, depth + 1));
                }
                s
            }
            "list_comprehension" | "generator_expression" | "set_comprehension" => {
                match comprehension(expr) {
                    Some(f) => self.size(&f.iterable, &f.iterable, depth + 1),
                    None => Size::Fixed,
                }
            }
            _ => Size::Fixed,
        }
    }

    /// The size of a list that starts empty: what is appended to it inside loops.
    fn appended_size(&self, name: &str, depth: usize) -> Size {
        let mut size = Size::Fixed;
        for (call, m) in self.appends(name) {
            if m == "extend" {
                if let Some(a) = call
                    .field("arguments")
                    .and_then(|a| a.children().find(|c| c.is_named()))
                {
                    size = size.max(self.size(&a, &call, depth + 1));
                }
            } else if let Some(l) = enclosing_for(&call, &self.func)
                && let Some(it) = l.field("right")
            {
                size = size.max(self.size(&it, &l, depth + 1));
            }
        }
        size
    }
}

/// Is the task list kept to a fixed size by hand, e.g. `if len(tasks) >= 128: await asyncio.gather(*tasks)` or
/// `while len(pending) >= limit: done, pending = await asyncio.wait(...)`?
fn windowed(func: &PyNode<'_>, list: &str) -> bool {
    let needle = format!("len({list})");
    func.dfs().any(|n| {
        n.kind() == "comparison_operator" && {
            let t: String = n.text().chars().filter(|c| !c.is_whitespace()).collect();
            t.contains(&needle)
        }
    })
}

/// Does the call read a data-sized collection (a query, a listing, a search, a load, a split into chunks)?
/// `awaited`: also count `get_<plural>` look-ups, which are I/O when awaited.
fn loads_data(call: &PyNode<'_>, awaited: bool) -> bool {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?i)^_*a?(execute|scalars|all|fetch\w*|list\w*|find\w*|search\w*|query\w*|load\w*|read\w*|get_all\w*|split\w*|chunk\w*|scan\w*|scroll\w*|iter\w*|select\w*|stream\w*|retrieve\w*|similarity_search\w*|get_relevant_documents|crawl\w*|parse\w*|extract\w*)$")
            .unwrap_or_else(|e| panic!("data regex: {e}"))
    });
    static PLURAL: OnceLock<Regex> = OnceLock::new();
    let plural = PLURAL.get_or_init(|| {
        Regex::new(r"(?i)(batches|chunks|documents|docs|ids|files|urls|links|pages|items|records|rows|messages|nodes|results|pairs|entries|users|records|texts|passages|sentences|images|attachments)(_\w*)?$")
            .unwrap_or_else(|e| panic!("plural regex: {e}"))
    });
    if call.kind() != "call" {
        return false;
    }
    let Some(mut f) = call.field("function") else {
        return false;
    };
    // `await asyncio.to_thread(fn, ...)` / `run_in_executor(None, fn, ...)`: what `fn` is named.
    let callee = dotted(&f).unwrap_or_default();
    if callee.ends_with("to_thread")
        || callee.ends_with("run_in_executor")
        || callee.ends_with("run_in_threadpool")
    {
        let skip = usize::from(callee.ends_with("run_in_executor"));
        if let Some(target) = call
            .field("arguments")
            .and_then(|a| a.children().filter(|c| c.is_named()).nth(skip))
            && matches!(target.kind().as_ref(), "identifier" | "attribute")
        {
            f = target;
        }
    }
    let last = match f.kind().as_ref() {
        "identifier" => f.text().to_string(),
        "attribute" => f
            .field("attribute")
            .map(|a| a.text().to_string())
            .unwrap_or_default(),
        _ => return false,
    };
    re.is_match(&last)
        || (awaited
            && (plural.is_match(&last) || (last.starts_with("get_") && last.ends_with('s'))))
}

fn rename(s: Size, name: &str) -> Size {
    match s {
        Size::Fixed => Size::Fixed,
        Size::Data(_) => Size::Data(name.to_string()),
        Size::Request(_) => Size::Request(name.to_string()),
    }
}

/// Is the fan-out bounded by a semaphore or limiter we can see: in the function (or the functions around it),
/// in the element expression (a semaphore handed to the coroutine), or in the coroutine function it calls
/// (defined in this file, or a method of the same class)?
fn bounded<'r>(
    func: &PyNode<'r>,
    element: Option<&PyNode<'r>>,
    root: &PyNode<'r>,
    limiters: &[String],
) -> bool {
    let re = limiter_re();
    let limited = |text: &str| re.is_match(text) || limiters.iter().any(|l| mentions(text, l));
    if limited(&outermost(func).text()) {
        return true;
    }
    let Some(element) = element else {
        return false;
    };
    if limited(&element.text()) {
        return true;
    }
    // The coroutine function started per item.
    let mut e = element.clone();
    loop {
        match e.kind().as_ref() {
            "await" | "parenthesized_expression" => match e.child(1) {
                Some(c) => e = c,
                None => break,
            },
            "call" => {
                let Some(f) = e.field("function") else { break };
                let name = dotted(&f).unwrap_or_default();
                let last = name.rsplit('.').next().unwrap_or("").to_string();
                if matches!(
                    last.as_str(),
                    "create_task" | "ensure_future" | "shield" | "wait_for" | "start_soon"
                ) && let Some(a) = e
                    .field("arguments")
                    .and_then(|a| a.children().find(|c| c.is_named()))
                {
                    e = a;
                    continue;
                }
                break;
            }
            _ => break,
        }
    }
    let target = match e.kind().as_ref() {
        "call" => e.field("function"),
        "identifier" | "attribute" => Some(e.clone()),
        _ => None,
    };
    let Some(target) = target.and_then(|t| dotted(&t)) else {
        return false;
    };
    let (scope, name) = match target.split_once('.') {
        Some(("self" | "cls", m)) if !m.contains('.') => (owning_class(func), m.to_string()),
        Some(_) => return false,
        None => (None, target),
    };
    let search_root = scope.unwrap_or_else(|| root.clone());
    search_root
        .dfs()
        .filter(|n| n.kind() == "function_definition")
        .filter(|d| d.field("name").is_some_and(|n| n.text() == name))
        .any(|d| {
            let text = match d.parent() {
                Some(p) if p.kind() == "decorated_definition" => p.text().to_string(),
                _ => d.text().to_string(),
            };
            limited(&text)
        })
}

/// Fan-out that does no I/O worth bounding: notifying callback handlers, cancelling or closing tasks and
/// streams, advancing iterators. Told by the collection's name (`handlers`, `run_managers`, `pending`) or the
/// method started per item (`on_chain_end`, `aclose`, `cancel`).
fn in_process(collection: &str, element: Option<&PyNode<'_>>) -> bool {
    static COLLECTION: OnceLock<Regex> = OnceLock::new();
    static METHOD: OnceLock<Regex> = OnceLock::new();
    let collection_re = COLLECTION.get_or_init(|| {
        Regex::new(r"(?i)(handler|callback|listener|subscriber|hook|manager|observer|iterator|waiter|future|pending|task|worker)s?$")
            .unwrap_or_else(|e| panic!("collection regex: {e}"))
    });
    let method_re = METHOD.get_or_init(|| {
        Regex::new(r"^(on_\w+|cancel\w*|close|aclose|wait|wait_closed|anext|__anext__|py_anext|shutdown|stop|put|put_nowait|set_result)$")
            .unwrap_or_else(|e| panic!("method regex: {e}"))
    });
    static EVENT: OnceLock<Regex> = OnceLock::new();
    let event_re = EVENT.get_or_init(|| {
        Regex::new(r"(?i)^_*a?(handle_event|emit|dispatch_event|fire_event|trigger_event)")
            .unwrap_or_else(|e| panic!("event regex: {e}"))
    });
    let last = collection
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .find(|s| !s.is_empty())
        .unwrap_or(collection);
    // A `batch` is bounded by whoever made it (`top_k=BATCH_SIZE`, `xs[i:i + n]`).
    if collection_re.is_match(last) || last == "batch" || last.ends_with("_batch") {
        return true;
    }
    let Some(mut e) = element.cloned() else {
        return false;
    };
    loop {
        match e.kind().as_ref() {
            "await" | "parenthesized_expression" => match e.child(1) {
                Some(c) => e = c,
                None => return false,
            },
            "call" => {
                let Some(name) = e.field("function").and_then(|f| dotted(&f)) else {
                    return false;
                };
                let last = name.rsplit('.').next().unwrap_or("");
                if matches!(
                    last,
                    "create_task" | "ensure_future" | "shield" | "wait_for"
                ) && let Some(a) = e
                    .field("arguments")
                    .and_then(|a| a.children().find(|c| c.is_named()))
                {
                    e = a;
                    continue;
                }
                return method_re.is_match(last) || event_re.is_match(last);
            }
            "identifier" | "attribute" => {
                let name = dotted(&e).unwrap_or_default();
                return method_re.is_match(name.rsplit('.').next().unwrap_or(""));
            }
            _ => return false,
        }
    }
}

/// Names (`SEM`, `self._limit`) assigned a semaphore or limiter anywhere in the file.
fn limiter_names<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<String> {
    ctx.of_kind(root, "assignment")
        .iter()
        .cloned()
        .filter_map(|a| {
            let right = a.field("right")?.text().to_string();
            let is_limiter = ["Semaphore(", "CapacityLimiter(", "Limiter("]
                .iter()
                .any(|k| right.contains(k));
            if !is_limiter {
                return None;
            }
            let left = dotted(&a.field("left")?)?;
            Some(left.rsplit('.').next().unwrap_or(&left).to_string())
        })
        .collect()
}

/// Does `text` mention the identifier `name` (not as part of a longer identifier)?
fn mentions(text: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + name.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// Names splatted into a gather (`gather(*name)`) or passed to `as_completed`/`wait` in the function.
fn gathered_names(nodes: &[PyNode<'_>], imports: &Imports) -> Vec<String> {
    let mut out = Vec::new();
    for c in nodes.iter().filter(|n| n.kind() == "call") {
        let Some(name) = c.field("function").and_then(|f| dotted(&f)) else {
            continue;
        };
        let resolved = imports.resolve(&name);
        if !matches!(
            resolved.as_str(),
            "asyncio.gather" | "asyncio.as_completed" | "asyncio.wait"
        ) {
            continue;
        }
        let Some(args) = c.field("arguments") else {
            continue;
        };
        for a in args.children() {
            let inner = if a.kind() == "list_splat" {
                a.child(1)
            } else {
                Some(a)
            };
            if let Some(i) = inner
                && i.kind() == "identifier"
            {
                out.push(i.text().to_string());
            }
        }
    }
    out
}

/// The names of the calls that start tasks; a file or function without one cannot fan out.
const FANOUT_TOKENS: &[&str] = &[
    "gather",
    "create_task",
    "ensure_future",
    "as_completed",
    "start_soon",
];

impl Check for UnboundedFanout {
    fn id(&self) -> &'static str {
        if self.request {
            "unbounded-fanout-request-input"
        } else {
            "unbounded-fanout"
        }
    }

    fn tokens(&self) -> &'static [&'static str] {
        FANOUT_TOKENS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        let limiters = limiter_names(ctx, root);
        // Local names for the task starters under another name (`from asyncio import gather as g`).
        let renamed = imports.names_bound_to(|target| {
            let last = target.rsplit('.').next().unwrap_or(target);
            FANOUT_TOKENS.contains(&last)
        });
        for func in ctx.of_kind(root, "function_definition").iter() {
            // A function whose text starts no task has nothing to report (its facts walk the whole body).
            let text = func.text();
            if !FANOUT_TOKENS
                .iter()
                .chain(renamed.iter())
                .any(|t| text.contains(t))
            {
                continue;
            }
            let nodes = own_nodes(func, OwnNodes::BodyNamed);
            let ctx = Ctx {
                func: func.clone(),
                nodes: &nodes,
                route: is_route_handler(func),
            };
            let gathered = gathered_names(&nodes, &imports);
            for call in nodes.iter().filter(|n| n.kind() == "call") {
                if has_error(call) {
                    continue;
                }
                let Some(f) = call.field("function") else {
                    continue;
                };
                let Some(callee) = dotted(&f) else { continue };
                let resolved = imports.resolve(&callee);
                let Some(args) = call.field("arguments") else {
                    continue;
                };
                let (fanout, what) = match resolved.as_str() {
                    "asyncio.gather" => {
                        let found = args
                            .children()
                            .filter(|a| a.kind() == "list_splat")
                            .filter_map(|a| a.child(1))
                            .find_map(|e| ctx.fanout_of(&e, 0));
                        (found, format!("`{callee}(*…)` starts one task per item"))
                    }
                    "asyncio.as_completed" => {
                        let found = args
                            .children()
                            .find(|c| c.is_named())
                            .and_then(|e| ctx.fanout_of(&e, 0));
                        (found, format!("`{callee}(…)` schedules one task per item"))
                    }
                    _ => {
                        let last = callee.rsplit('.').next().unwrap_or("");
                        let spawn = matches!(
                            resolved.as_str(),
                            "asyncio.create_task" | "asyncio.ensure_future"
                        ) || (f.kind() == "attribute"
                            && matches!(last, "create_task" | "start_soon" | "ensure_future"));
                        if !spawn {
                            continue;
                        }
                        (
                            self.spawn_fanout(call, &ctx, &gathered, &imports),
                            format!("`{callee}(…)` in a loop starts one task per item"),
                        )
                    }
                };
                let Some(fanout) = fanout else { continue };
                let size = ctx.size(&fanout.iterable, &fanout.iterable, 0);
                let (origin, name) = match &size {
                    Size::Fixed => continue,
                    Size::Request(n) => ("request input of this endpoint", n),
                    Size::Data(n) => ("sized by data, not by the code", n),
                };
                if matches!(size, Size::Request(_)) != self.request {
                    continue;
                }
                if fanout.list.as_deref().is_some_and(|l| windowed(func, l))
                    || bounded(func, fanout.element.as_ref(), root, &limiters)
                    || in_process(name, fanout.element.as_ref())
                {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "{what} of `{name}` ({origin}) all at once, with no `asyncio.Semaphore` or batching: a large input opens that many concurrent calls and exhausts connection pools and provider rate limits"
                    )),
                });
            }
        }
    }
}

impl UnboundedFanout {
    /// A task spawn inside a loop or comprehension over a collection (unless the tasks go to a gather in the
    /// same function, which is reported there).
    fn spawn_fanout<'r>(
        &self,
        call: &PyNode<'r>,
        ctx: &Ctx<'_, 'r>,
        gathered: &[String],
        imports: &Imports,
    ) -> Option<Fanout<'r>> {
        let element = call
            .field("arguments")
            .and_then(|a| a.children().find(|c| c.is_named()));
        if let Some(comp) = enclosing_comprehension(call, &ctx.func) {
            // The comprehension handed to gather, or bound to a name that is gathered.
            let mut up = comp.parent();
            while let Some(p) = up.clone() {
                if p.kind() == "parenthesized_expression" {
                    up = p.parent();
                } else {
                    break;
                }
            }
            if let Some(p) = up {
                if p.kind() == "list_splat" || p.kind() == "argument_list" {
                    let gather = p.ancestors().find(|a| a.kind() == "call");
                    if gather.is_some_and(|g| {
                        g.field("function")
                            .and_then(|f| dotted(&f))
                            .is_some_and(|n| {
                                matches!(
                                    imports.resolve(&n).as_str(),
                                    "asyncio.gather" | "asyncio.as_completed"
                                )
                            })
                    }) {
                        return None;
                    }
                }
                if p.kind() == "assignment"
                    && let Some(l) = p.field("left")
                    && gathered.iter().any(|g| *g == l.text())
                    && !gathered_by_wait_only(&l.text(), ctx, imports)
                {
                    return None;
                }
            }
            let f = comprehension(&comp)?;
            return Some(Fanout {
                iterable: f.iterable,
                element,
                list: None,
            });
        }
        let l = enclosing_for(call, &ctx.func)?;
        // `tasks.append(create_task(...))` with `gather(*tasks)` later: reported at the gather.
        if let Some(p) = call.parent().and_then(|p| p.parent())
            && p.kind() == "call"
            && let Some(f) = p.field("function")
            && f.kind() == "attribute"
            && let Some(obj) = f.field("object")
            && gathered.iter().any(|g| *g == obj.text())
            && !gathered_by_wait_only(&obj.text(), ctx, imports)
        {
            return None;
        }
        // A task awaited in the same iteration is sequential, not fan-out.
        if let Some(body) = l.field("body")
            && let Some(p) = call.parent()
            && p.kind() == "assignment"
            && let Some(name) = p.field("left").map(|n| n.text().to_string())
            && body.dfs().any(|n| {
                n.kind() == "await" && n.child(1).is_some_and(|c| c.text() == name.as_str())
            })
        {
            return None;
        }
        // `tasks.add(create_task(...))`: the container, for the sliding-window check.
        let list = call
            .parent()
            .and_then(|p| p.parent())
            .filter(|p| p.kind() == "call")
            .and_then(|p| p.field("function"))
            .filter(|f| f.kind() == "attribute")
            .and_then(|f| f.field("object"))
            .map(|o| o.text().to_string());
        Some(Fanout {
            iterable: l.field("right")?,
            element,
            list,
        })
    }
}

/// Is `name` only ever passed to `asyncio.wait` (which does not start tasks) rather than gathered?
fn gathered_by_wait_only(name: &str, ctx: &Ctx<'_, '_>, imports: &Imports) -> bool {
    !ctx.nodes.iter().filter(|n| n.kind() == "call").any(|c| {
        let is_gather = c
            .field("function")
            .and_then(|f| dotted(&f))
            .is_some_and(|n| {
                matches!(
                    imports.resolve(&n).as_str(),
                    "asyncio.gather" | "asyncio.as_completed"
                )
            });
        is_gather
            && c.field("arguments").is_some_and(|a| {
                a.children().any(|x| {
                    let inner = if x.kind() == "list_splat" {
                        x.child(1)
                    } else {
                        Some(x)
                    };
                    inner.is_some_and(|i| i.text() == name)
                })
            })
    })
}
