//! Scopes: which function a node runs in, whether that is a coroutine, module level, the `__main__` guard, and
//! the nodes that run in a function itself (its "own nodes", nested definitions left out).

use super::syntax::is_async_def;
use crate::analysis::nodes::PyNode;

/// The nearest enclosing function (`def`, `async def` or `lambda`) of a node, not counting the node itself.
pub fn enclosing_function<'r>(node: &PyNode<'r>) -> Option<PyNode<'r>> {
    node.ancestors()
        .find(|a| matches!(a.kind().as_ref(), "function_definition" | "lambda"))
}

/// Is the node's code run on the event loop, i.e. is its nearest enclosing function an `async def`?
pub fn in_async_context(node: &PyNode<'_>) -> bool {
    enclosing_function(node).is_some_and(|f| is_async_def(&f))
}

/// Every descendant of `node` (not `node` itself) that runs in the same function body: nested `def`, `lambda`
/// and `class` bodies are not entered (the nested definition node itself is included).
pub fn same_scope_descendants<'r>(node: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let mut out = Vec::new();
    let mut stack: Vec<PyNode<'r>> = node.children().collect();
    while let Some(n) = stack.pop() {
        let nested = matches!(
            n.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition"
        );
        if !nested {
            stack.extend(n.children());
        }
        out.push(n);
    }
    out.sort_by_key(|n| n.range().start);
    out
}

/// Locals of a function body bound to an object built with one of `names` (`service = WorkspaceService(session,
/// role=role)`, `repo = await Repo.create(db, user)`): a method called on such an object has those values in view
/// (`own` as [`same_scope_descendants`] gives it). Only a call's direct result counts, not an attribute of it.
pub fn locals_built_with(own: &[PyNode<'_>], names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in own.iter().filter(|n| n.kind() == "assignment") {
        let (Some(left), Some(right)) = (n.field("left"), n.field("right")) else {
            continue;
        };
        if left.kind() != "identifier" {
            continue;
        }
        let inner = (right.kind() == "await")
            .then(|| right.children().find(|c| c.kind() != "await"))
            .flatten();
        let value = inner.unwrap_or(right);
        if value.kind() != "call" {
            continue;
        }
        let Some(args) = value.field("arguments") else {
            continue;
        };
        let args = args.text();
        let name = left.text().to_string();
        if names.iter().any(|w| super::text::has_word(&args, w)) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Is the node at module level (no enclosing function or class)?
pub fn is_module_level(node: &PyNode<'_>) -> bool {
    !node.ancestors().any(|a| {
        matches!(
            a.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition"
        )
    })
}

/// Where a `def` is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Module,
    /// Directly in a class body (the class node's id).
    Class(usize),
    Function,
}

/// Where a `def` is defined: at module level, as a method of a class, or inside another function or lambda.
pub fn def_owner(def: &PyNode<'_>) -> Owner {
    for a in def.ancestors() {
        match a.kind().as_ref() {
            "function_definition" | "lambda" => return Owner::Function,
            "class_definition" => return Owner::Class(a.node_id()),
            _ => {}
        }
    }
    Owner::Module
}

/// Is the node inside an `if __name__ == "__main__":` block?
pub fn in_main_guard(node: &PyNode<'_>) -> bool {
    node.ancestors().any(|a| {
        a.kind() == "if_statement"
            && a.field("condition").is_some_and(|c| {
                let t: String = c.text().split_whitespace().collect();
                t == "__name__==\"__main__\"" || t == "__name__=='__main__'"
            })
    })
}

/// The byte ranges of the module-level `if __name__ == "__main__":` blocks of a Python file, read from its text:
/// from the guard line (at column 0) to the next line at column 0 that is neither blank nor a comment, or to the
/// end. Code there runs when the module is executed as a script (a demo, a manual test, a launcher), never when
/// the service imports it. A line at column 0 inside a multi-line string ends a block early: the ranges can only
/// be too short, never too long.
pub fn main_guard_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    if !text.contains("__main__") {
        return out;
    }
    let mut open: Option<usize> = None;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let top_level = !line.starts_with([' ', '\t', '#', '\r', '\n']) && !line.trim().is_empty();
        if !top_level {
            continue;
        }
        if let Some(begin) = open.take() {
            out.push(begin..start);
        }
        let squashed: String = line
            .split('#')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if squashed == "if__name__==\"__main__\":" || squashed == "if__name__=='__main__':" {
            open = Some(start);
        }
    }
    if let Some(begin) = open {
        out.push(begin..text.len());
    }
    out
}

/// The byte ranges of the `if` blocks (at any depth) that run only outside production: the condition compares
/// an environment setting with a development value (`if settings.ENVIRONMENT == "dev":`, `if os.getenv("ENV") in
/// ("local", "test"):`) or reads a debug/development flag of the settings or a module constant (`if
/// settings.DEBUG:`, `if config.is_dev:`, `if DEBUG:`; not a bare lower-case `debug`, maybe a request's), alone or
/// joined with `and`. A block runs from its `if` line to the next line, neither blank nor a comment, indented no
/// deeper than the `if` (its `elif`/`else` included: those run in production). Read from the text: a condition
/// over several lines, or a body on the `if` line, is not recognised (the block is then judged as usual).
pub fn dev_only_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    // (indent, start) of the dev-only blocks still open.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let body = line.trim_start_matches([' ', '\t']);
        if body.trim().is_empty() || body.starts_with('#') {
            continue;
        }
        let indent = line.len() - body.len();
        while open.last().is_some_and(|(i, _)| indent <= *i) {
            if let Some((_, begin)) = open.pop() {
                out.push(begin..start);
            }
        }
        let Some(cond) = body.strip_prefix("if ") else {
            continue;
        };
        let cond = cond.split('#').next().unwrap_or("").trim_end();
        let Some(cond) = cond.strip_suffix(':') else {
            continue;
        };
        if is_dev_condition(cond) {
            open.push((indent, start));
        }
    }
    out.extend(open.into_iter().map(|(_, begin)| begin..text.len()));
    out.sort_by_key(|r| r.start);
    out
}

/// Values of an environment setting that mean "not production".
const DEV_VALUES: &[&str] = &[
    "dev",
    "develop",
    "development",
    "local",
    "debug",
    "test",
    "testing",
];

/// Flags that mean "not production" when true (`DEBUG`, `settings.is_dev`, `config.is_development()`).
const DEV_FLAGS: &[&str] = &[
    "debug",
    "is_debug",
    "debug_mode",
    "dev_mode",
    "is_dev",
    "is_development",
    "is_local",
    "is_test",
    "is_testing",
];

fn is_dev_condition(cond: &str) -> bool {
    let cond = cond.trim();
    if cond.contains(" or ") || cond.contains(" not ") || cond.starts_with("not ") {
        return false;
    }
    let cond = cond
        .strip_prefix('(')
        .and_then(|c| c.strip_suffix(')'))
        .unwrap_or(cond);
    cond.split(" and ").any(|c| is_dev_test(c.trim()))
}

fn is_dev_test(c: &str) -> bool {
    let literal = |s: &str| {
        let s = s.trim();
        (s.len() >= 2
            && ((s.starts_with('"') && s.ends_with('"'))
                || (s.starts_with('\'') && s.ends_with('\''))))
        .then(|| s[1..s.len() - 1].to_ascii_lowercase())
    };
    // A name for the deployment environment: `ENVIRONMENT`, `settings.app_env`, `os.getenv("ENV")`, `STAGE`.
    let names_environment = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        // The reader of the variable is not its name: `os.getenv("STORAGE")` names storage.
        let s = [
            "os.environ.get(",
            "environ.get(",
            "os.getenv(",
            "getenv(",
            "os.environ[",
            "environ[",
        ]
        .iter()
        .fold(s, |acc, f| acc.replace(f, "("));
        let plain = s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '(' | ')' | '"' | '\'' | '[' | ']')
        });
        plain && (s.contains("env") || s.contains("stage"))
    };
    if let Some((l, r)) = c.split_once("==") {
        return match (literal(l), literal(r)) {
            (None, Some(v)) => DEV_VALUES.contains(&v.as_str()) && names_environment(l),
            (Some(v), None) => DEV_VALUES.contains(&v.as_str()) && names_environment(r),
            _ => false,
        };
    }
    if c.contains("!=") || c.contains('<') || c.contains('>') {
        return false;
    }
    if let Some((l, r)) = c.split_once(" in ") {
        let items: Vec<&str> = r
            .trim()
            .trim_start_matches(['(', '[', '{'])
            .trim_end_matches([')', ']', '}'])
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        return !items.is_empty()
            && items
                .iter()
                .all(|i| literal(i).is_some_and(|v| DEV_VALUES.contains(&v.as_str())))
            && names_environment(l);
    }
    // A flag: a setting's attribute (`settings.DEBUG`, `config.is_dev()`) or a module constant (`DEBUG`); a bare
    // lower-case `debug` may be a request's parameter (`?debug=true` asking for a traceback), not the deployment.
    let flag = c.strip_suffix("()").unwrap_or(c);
    let setting = flag.contains('.') || !flag.chars().any(|ch| ch.is_ascii_lowercase());
    setting
        && flag
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
        && flag
            .rsplit('.')
            .next()
            .is_some_and(|last| DEV_FLAGS.contains(&last.to_ascii_lowercase().as_str()))
}

/// Does `node` run at most once per object or process, because it sits under a memoising guard of `def`:
/// `if self._client is None:` (or `if not self._client:`, or a module global `if _CACHE is None:`) whose body
/// assigns that same name? A blocking call there is paid once, on first use, not on every call.
pub fn under_memoising_guard(node: &PyNode<'_>, def: &PyNode<'_>) -> bool {
    let stop = def.range();
    node.ancestors()
        .take_while(|a| a.range() != stop)
        .filter(|a| a.kind() == "if_statement")
        .any(|guard| {
            let Some(cond) = guard.field("condition") else {
                return false;
            };
            let cond: String = cond.text().split_whitespace().collect::<Vec<_>>().join(" ");
            let target = cond
                .strip_suffix(" is None")
                .or_else(|| cond.strip_prefix("not "))
                .map(str::trim)
                .filter(|t| {
                    !t.is_empty()
                        && t.chars()
                            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
                });
            let Some(target) = target else {
                return false;
            };
            guard.field("consequence").is_some_and(|body| {
                body.dfs().any(|n| {
                    n.kind() == "assignment"
                        && n.field("left").is_some_and(|l| {
                            let l: String = l.text().split_whitespace().collect();
                            l == target
                        })
                })
            })
        })
}

/// All `def`/`async def`/`lambda` ancestors of a node, innermost first.
pub fn enclosing_functions<'r>(node: &PyNode<'r>) -> Vec<PyNode<'r>> {
    node.ancestors()
        .filter(|a| matches!(a.kind().as_ref(), "function_definition" | "lambda"))
        .collect()
}

/// Which walk [`own_nodes`] makes. They differ in what they include and in their order, and the reports
/// depend on both (one finding per function is the first match found), so each is kept and named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnNodes {
    /// Of a `def`: the named nodes of its `body`, nested `def`/`lambda`/`class` and decorated definitions left
    /// out, in walk order (a stack: not source order).
    BodyNamed,
    /// Every node (named or not) under the given node, the same definitions left out, in walk order.
    Below,
    /// Of a `def`: its `body` and every node under it in source (pre-)order, nested `def`/`lambda`/`class`
    /// bodies left out (a decorated nested definition's decorators are included).
    BodyInOrder,
}

/// The nodes that run in `node`'s own scope, as `walk` defines them.
pub fn own_nodes<'r>(node: &PyNode<'r>, walk: OwnNodes) -> Vec<PyNode<'r>> {
    match walk {
        OwnNodes::BodyNamed => body_named(node),
        OwnNodes::Below => all_below(node),
        OwnNodes::BodyInOrder => body_in_order(node),
    }
}

/// The named nodes of a function body that run in that function: nested `def`, `lambda` and `class` bodies are
/// left out (they run when and where they are called or handed to).
fn body_named<'r>(func: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let mut out = Vec::new();
    let Some(body) = func.field("body") else {
        return out;
    };
    let mut stack: Vec<PyNode<'r>> = body.children().collect();
    while let Some(node) = stack.pop() {
        if matches!(
            node.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition" | "decorated_definition"
        ) {
            // A decorated nested def: its decorators run here, but they are rarely blocking; skip it all.
            continue;
        }
        stack.extend(node.children());
        // Named nodes only: punctuation and keywords are never asked for, and are 40% of a large body.
        if node.is_named() {
            out.push(node);
        }
    }
    out
}

/// Walk a subtree without descending into nested functions, lambdas or classes (their code runs elsewhere).
fn all_below<'r>(body: &PyNode<'r>) -> Vec<PyNode<'r>> {
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

/// See [`OwnNodes::BodyInOrder`].
fn body_in_order<'r>(func: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let mut nodes = Vec::new();
    if let Some(body) = func.field("body") {
        let mut stack: Vec<PyNode<'r>> = vec![body];
        while let Some(n) = stack.pop() {
            if matches!(
                n.kind().as_ref(),
                "function_definition" | "lambda" | "class_definition"
            ) {
                continue;
            }
            let kids: Vec<PyNode<'r>> = n.children().collect();
            nodes.push(n);
            stack.extend(kids.into_iter().rev());
        }
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    #[test]
    fn dev_only_blocks() {
        let code = "\
app = FastAPI()
if settings.ENVIRONMENT == \"dev\":  # local UI
    app.add_middleware(CORSMiddleware, allow_origins=[\"*\"])

    app.debug = True
else:
    prod()
def create():
    if os.getenv('ENV') in ('local', 'test'):
        seed()
    if settings.DEBUG and verbose:
        print(1)
    if not settings.DEBUG:
        harden()
    if settings.ENV != 'dev':
        harden()
    if STORAGE == 'local':
        write()
    if os.getenv(\"STORAGE_MODE\") == \"local\":
        write()
    if settings.DEBUG or force:
        print(2)
    if debug:
        return traceback()
    if config.is_development():
        print(3)
    tail()
";
        let blocks: Vec<&str> = dev_only_ranges(code)
            .into_iter()
            .map(|r| &code[r])
            .collect();
        assert_eq!(blocks.len(), 4, "{blocks:#?}");
        assert!(blocks[0].starts_with("if settings.ENVIRONMENT") && blocks[0].ends_with("True\n"));
        assert!(!blocks[0].contains("prod()"));
        assert!(blocks[1].contains("seed()") && !blocks[1].contains("DEBUG"));
        assert!(blocks[2].contains("print(1)") && !blocks[2].contains("harden"));
        assert!(blocks[3].contains("print(3)") && !blocks[3].contains("tail"));
    }

    #[test]
    fn locals_built_with_the_caller() {
        let code = "\
async def route(workspace_id, role, session):
    service = WorkspaceService(session, role=role)
    repo = await Repo.create(session, role)
    other = Other(session)
    name = role.name
    return await service.get(workspace_id)
";
        let doc = Lang::Python.ast_grep(code);
        let func = doc
            .root()
            .dfs()
            .find(|n| n.kind() == "function_definition")
            .expect("the test code has a function");
        let body = func.field("body").expect("a function has a body");
        let own = same_scope_descendants(&body);
        assert_eq!(locals_built_with(&own, &["role"]), ["service", "repo"]);
        assert!(locals_built_with(&own, &["user"]).is_empty());
    }
}
