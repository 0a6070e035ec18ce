//! C5: what a blocking call looks like, shared by the C5 Rust checks (and the C6 ones, for import aliases),
//! and the check for a synchronous helper of the same file that blocks, called from `async def`.
//!
//! The lists here mirror the pattern detectors of `rules/C5.yml` (blocking HTTP, `time.sleep`, subprocesses,
//! DNS, file and file-system I/O, deliberately slow hashing, dataframe parsing) plus the sync database drivers
//! of `c5_sync_driver.rs`, with callee names resolved through the file's imports (`from time import sleep`).

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::drivers::DriverTracker;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::roles::is_startup_function;
use crate::analysis::semantic::python::scopes::{
    OwnNodes, Owner, def_owner, own_nodes, under_memoising_guard,
};
use crate::analysis::semantic::python::syntax::{
    decorators, dotted, function_name, has_error, is_async_def, is_awaited,
};
use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// How bad a blocking call is on the event loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// File and file-system I/O, CPU-heavy work: depends on sizes we cannot see.
    Medium,
    /// Network round trips, sleeps, subprocesses: always blocks for the whole wait.
    High,
}

/// A blocking call: what it is (`requests.get`) and how bad.
#[derive(Debug, Clone)]
pub struct Blocking {
    pub what: String,
    pub level: Level,
}

const HTTP_VERBS: &[&str] = &[
    "get", "post", "put", "patch", "delete", "head", "options", "request",
];

/// Classify a resolved callee name (module functions only; methods are handled by [`classify`]).
fn classify_name(name: &str) -> Option<Level> {
    let (module, func) = name.rsplit_once('.').unwrap_or(("", name));
    let high = match module {
        "requests" => HTTP_VERBS.contains(&func),
        "httpx" => HTTP_VERBS.contains(&func) || func == "stream",
        "urllib.request" => func == "urlopen",
        "time" => func == "sleep",
        "subprocess" => matches!(
            func,
            "run" | "call" | "check_call" | "check_output" | "getoutput" | "getstatusoutput"
        ),
        "os" => func == "system",
        "socket" => matches!(
            func,
            "getaddrinfo"
                | "gethostbyname"
                | "gethostbyname_ex"
                | "gethostbyaddr"
                | "getfqdn"
                | "create_connection"
        ),
        "psycopg2" | "psycopg" | "pymysql" => func == "connect",
        _ => false,
    };
    if high {
        return Some(Level::High);
    }
    let medium = match module {
        "" => func == "open",
        "io" => func == "open",
        "os" => matches!(func, "listdir" | "walk" | "scandir"),
        "shutil" => matches!(
            func,
            "copy"
                | "copy2"
                | "copyfile"
                | "copyfileobj"
                | "copytree"
                | "rmtree"
                | "move"
                | "make_archive"
                | "unpack_archive"
        ),
        "glob" => matches!(func, "glob" | "iglob"),
        "bcrypt" => matches!(func, "hashpw" | "checkpw" | "kdf"),
        "hashlib" => matches!(func, "pbkdf2_hmac" | "scrypt"),
        "pandas" => matches!(
            func,
            "read_csv" | "read_excel" | "read_parquet" | "read_json" | "read_table"
        ),
        _ => false,
    };
    medium.then_some(Level::Medium)
}

/// Is this call one of the blocking calls C5 knows (outside of the sync database drivers)?
/// `langchain`: the file imports LangChain/LangGraph, so `.invoke(...)`/`.batch(...)` are model calls.
pub fn classify(call: &PyNode<'_>, imports: &Imports, langchain: bool) -> Option<Blocking> {
    if is_awaited(call) {
        return None;
    }
    let func = call.field("function")?;
    let text = dotted(&func)?;
    let resolved = imports.resolve(&text);
    if let Some(level) = classify_name(&resolved) {
        return Some(Blocking { what: text, level });
    }
    if func.kind() == "attribute" {
        let attr = func.field("attribute")?.text().to_string();
        if matches!(
            attr.as_str(),
            "read_text" | "read_bytes" | "write_text" | "write_bytes"
        ) {
            return Some(Blocking {
                what: text,
                level: Level::Medium,
            });
        }
        if langchain && matches!(attr.as_str(), "invoke" | "batch") {
            return Some(Blocking {
                what: text,
                level: Level::High,
            });
        }
    }
    None
}

/// Does the file import LangChain or LangGraph?
pub fn imports_langchain(imports: &Imports) -> bool {
    imports.uses_any(&["langchain", "langgraph"])
}

/// A sync function of the file that blocks: its first (strongest) blocking call.
struct Helper {
    blocking: Blocking,
    line: usize,
}

/// Decorators that make a helper block only on its first call (or not at all when called).
fn cached_or_special(def: &PyNode<'_>) -> bool {
    decorators(def).into_iter().any(|d| {
        let t = d.text();
        t.contains("cache") || t.contains("memoize") || t.contains("property")
    })
}

/// Is the def decorated with `@contextmanager`?
fn is_context_manager(def: &PyNode<'_>) -> bool {
    def.parent().is_some_and(|p| {
        p.kind() == "decorated_definition"
            && p.children()
                .filter(|c| c.kind() == "decorator")
                .any(|d| d.text().contains("contextmanager"))
    })
}

/// The strongest blocking call in a sync function's own body, if any.
fn helper_blocking(
    def: &PyNode<'_>,
    imports: &Imports,
    langchain: bool,
    drivers: &DriverTracker,
) -> Option<Helper> {
    let mut best: Option<Helper> = None;
    let mut consider = |b: Blocking, node: &PyNode<'_>| {
        if best.as_ref().is_none_or(|h| b.level > h.blocking.level) {
            best = Some(Helper {
                blocking: b,
                line: node.start_pos().line() + 1,
            });
        }
    };
    // A call under a memoising guard (`if self._x is None: self._x = load()`) blocks once, on first use.
    for node in own_nodes(def, OwnNodes::BodyNamed) {
        if node.kind() == "call"
            && let Some(b) = classify(&node, imports, langchain)
            && !under_memoising_guard(&node, def)
        {
            consider(b, &node);
        }
    }
    for u in drivers.blocking_uses(def, false) {
        if under_memoising_guard(&u.call, def) {
            continue;
        }
        consider(
            Blocking {
                what: u.what,
                level: Level::High,
            },
            &u.call,
        );
    }
    best
}

/// Names assigned or bound as parameters in a function (they shadow module-level helpers).
fn local_names(func: &PyNode<'_>) -> HashSet<String> {
    let mut out = HashSet::new();
    if let Some(params) = func.field("parameters") {
        for p in params.children() {
            let name = match p.kind().as_ref() {
                "identifier" => Some(p.clone()),
                "typed_parameter" => p.child(0),
                "default_parameter" | "typed_default_parameter" => p.field("name"),
                _ => None,
            };
            if let Some(n) = name
                && n.kind() == "identifier"
            {
                out.insert(n.text().to_string());
            }
        }
    }
    for node in own_nodes(func, OwnNodes::BodyNamed) {
        let target = match node.kind().as_ref() {
            "assignment" | "for_statement" => node.field("left"),
            "as_pattern_target" => Some(node.clone()),
            _ => None,
        };
        if let Some(t) = target {
            for id in t.dfs().filter(|n| n.kind() == "identifier") {
                out.insert(id.text().to_string());
            }
        }
    }
    out
}

/// A sync function defined in this file that makes a blocking call, called from `async def`.
pub struct BlockingHelper {
    /// Report helpers whose strongest blocking call is at this level.
    pub level: Level,
}

pub static BLOCKING_HELPER: BlockingHelper = BlockingHelper { level: Level::High };
pub static BLOCKING_HELPER_MEDIUM: BlockingHelper = BlockingHelper {
    level: Level::Medium,
};

impl Check for BlockingHelper {
    fn id(&self) -> &'static str {
        match self.level {
            Level::High => "blocking-helper-in-async",
            Level::Medium => "blocking-helper-file-io-in-async",
        }
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["async"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let all = ctx.memo(root, || HelperCalls(helper_calls(root, ctx)));
        out.extend(
            all.0
                .iter()
                .filter(|(level, _)| *level == self.level)
                .map(|(_, m)| m.clone()),
        );
    }
}

/// The file's calls to blocking helpers from `async def`, at each helper's level (one analysis for both
/// detectors).
struct HelperCalls(Vec<(Level, CheckMatch)>);

fn helper_calls<'r>(root: &PyNode<'r>, ctx: &FileContext<'r>) -> Vec<(Level, CheckMatch)> {
    let mut out = Vec::new();
    // Nothing to report without an `async def` to call a helper from.
    if !ctx
        .of_kind(root, "function_definition")
        .iter()
        .any(is_async_def)
    {
        return out;
    }
    let imports = ctx.imports(root);
    let langchain = imports_langchain(&imports);
    // Built on first use (and shared with the driver checks): most files' async functions call no helper of
    // their own.
    let drivers: OnceCell<Rc<DriverTracker>> = OnceCell::new();
    // Module-level functions by name (a name defined twice, or also async, is ambiguous: skipped), and
    // sync methods by (class node id, name).
    let mut module_defs: HashMap<String, Vec<PyNode<'_>>> = HashMap::new();
    let mut methods: HashMap<(usize, String), Vec<PyNode<'_>>> = HashMap::new();
    for def in ctx.of_kind(root, "function_definition").iter().cloned() {
        let Some(name) = function_name(&def) else {
            continue;
        };
        match def_owner(&def) {
            Owner::Module => module_defs.entry(name).or_default().push(def),
            Owner::Class(id) => methods.entry((id, name)).or_default().push(def),
            Owner::Function => {}
        }
    }
    let pick = |defs: &Vec<PyNode<'_>>| -> Option<Rc<Helper>> {
        if defs.len() != 1 || is_async_def(&defs[0]) || cached_or_special(&defs[0]) {
            return None;
        }
        // Calling a generator runs none of its body; `StreamingResponse(gen())` iterates it in a thread.
        // A `@contextmanager` runs up to its `yield` on entering `with`, so it still counts.
        if own_nodes(&defs[0], OwnNodes::BodyNamed)
            .iter()
            .any(|n| n.kind() == "yield")
            && !is_context_manager(&defs[0])
        {
            return None;
        }
        let drivers = drivers.get_or_init(|| DriverTracker::of_file(ctx, root));
        helper_blocking(&defs[0], &imports, langchain, drivers).map(Rc::new)
    };
    // Whether a def is a blocking helper is worked out when an async function first calls it.
    let mut module_helpers: HashMap<String, Option<Rc<Helper>>> = HashMap::new();
    let mut module_helper = |name: &str| -> Option<Rc<Helper>> {
        if let Some(known) = module_helpers.get(name) {
            return known.clone();
        }
        let found = if imports.binds(name) {
            None
        } else {
            module_defs.get(name).and_then(&pick)
        };
        module_helpers.insert(name.to_string(), found.clone());
        found
    };
    let mut method_helpers: HashMap<(usize, String), Option<Rc<Helper>>> = HashMap::new();
    let mut method_helper = |key: (usize, String)| -> Option<Rc<Helper>> {
        if let Some(known) = method_helpers.get(&key) {
            return known.clone();
        }
        let found = methods.get(&key).and_then(&pick);
        method_helpers.insert(key, found.clone());
        found
    };
    if module_defs.is_empty() && methods.is_empty() {
        return out;
    }
    for func in ctx
        .of_kind(root, "function_definition")
        .iter()
        .filter(|n| is_async_def(n))
    {
        if is_startup_function(func) {
            continue;
        }
        let locals = local_names(func);
        let class_id = match def_owner(func) {
            Owner::Class(id) => Some(id),
            _ => None,
        };
        for call in own_nodes(func, OwnNodes::BodyNamed)
            .into_iter()
            .filter(|n| n.kind() == "call")
        {
            if is_awaited(&call) || has_error(&call) {
                continue;
            }
            let Some(f) = call.field("function") else {
                continue;
            };
            let helper = match f.kind().as_ref() {
                "identifier" => {
                    let name = f.text();
                    if locals.contains(name.as_ref()) {
                        continue;
                    }
                    module_helper(name.as_ref())
                }
                "attribute" => {
                    let (Some(obj), Some(attr), Some(cid)) =
                        (f.field("object"), f.field("attribute"), class_id)
                    else {
                        continue;
                    };
                    if !matches!(obj.text().as_ref(), "self" | "cls") {
                        continue;
                    }
                    method_helper((cid, attr.text().to_string()))
                }
                _ => None,
            };
            let Some(h) = helper else { continue };
            // `self.invoke(...)` in a LangChain file is already C5-sync-llm-call's finding.
            if langchain && (f.text().ends_with(".invoke") || f.text().ends_with(".batch")) {
                continue;
            }
            let what = match h.blocking.level {
                Level::High => "makes a blocking call",
                Level::Medium => "does blocking file or CPU-heavy work",
            };
            out.push((
                h.blocking.level,
                CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "`{}(…)` is a synchronous function of this file that {what} (`{}(…)`, line {}): called from `async def` it blocks the event loop; use `await asyncio.to_thread({}, …)`",
                        f.text(),
                        h.blocking.what,
                        h.line,
                        f.text()
                    )),
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    #[test]
    fn imports_resolve_aliases() {
        let doc = Lang::Python.ast_grep(
            "import numpy as np\nimport os.path\nfrom time import sleep as nap\nfrom redis import asyncio as aioredis\n",
        );
        let imports = Imports::of_file(&FileContext::detached(), &doc.root());
        assert_eq!(imports.resolve("np.array"), "numpy.array");
        assert_eq!(imports.resolve("nap"), "time.sleep");
        assert_eq!(imports.resolve("os.path.join"), "os.path.join");
        assert_eq!(imports.resolve("aioredis.Redis"), "redis.asyncio.Redis");
        assert_eq!(imports.resolve("other.x"), "other.x");
        assert!(imports.uses_any(&["redis"]));
        assert!(!imports.uses_any(&["langchain"]));
    }

    #[test]
    fn classifies_calls() {
        assert_eq!(classify_name("requests.get"), Some(Level::High));
        assert_eq!(classify_name("time.sleep"), Some(Level::High));
        assert_eq!(classify_name("shutil.rmtree"), Some(Level::Medium));
        assert_eq!(classify_name("open"), Some(Level::Medium));
        assert_eq!(classify_name("asyncio.sleep"), None);
        assert_eq!(classify_name("json.loads"), None);
    }
}
