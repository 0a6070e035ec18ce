//! Syntax facts about Python nodes: callees, arguments, literals, names, decorators, parameters, and whether
//! the parser could read a piece of code.

use crate::analysis::nodes::PyNode;

/// Links of a chain (`a.b.c`, `a.b().c()`) that recursive helpers follow before giving up: far more than real
/// code has, few enough that a chain as long as the file cannot exhaust the stack.
pub const MAX_CHAIN: usize = 64;

/// True for `async def` function definitions.
pub fn is_async_def(node: &PyNode<'_>) -> bool {
    node.kind() == "function_definition" && node.child(0).is_some_and(|c| c.kind() == "async")
}

/// The callee text of a `call` node, e.g. `requests.get` or `db.query` (whitespace removed).
pub fn callee(call: &PyNode<'_>) -> Option<String> {
    let f = call.field("function")?;
    Some(f.text().split_whitespace().collect())
}

/// The value of keyword argument `name` of a `call` node.
pub fn keyword_arg<'r>(call: &PyNode<'r>, name: &str) -> Option<PyNode<'r>> {
    let args = call.field("arguments")?;
    args.children()
        .filter(|a| a.kind() == "keyword_argument")
        .find(|a| a.field("name").is_some_and(|n| n.text() == name))
        .and_then(|a| a.field("value"))
}

/// The `n`-th (0-based) positional argument of a `call` node.
pub fn positional_arg<'r>(call: &PyNode<'r>, n: usize) -> Option<PyNode<'r>> {
    let args = call.field("arguments")?;
    args.children()
        .filter(|a| {
            a.is_named()
                && !matches!(
                    a.kind().as_ref(),
                    "keyword_argument" | "dictionary_splat" | "list_splat" | "comment"
                )
        })
        .nth(n)
}

/// The value of a string literal (`string` or `concatenated_string` node) without prefix and quotes, escapes
/// left as written; `None` for f-strings with interpolations and for other nodes.
pub fn string_value(node: &PyNode<'_>) -> Option<String> {
    match node.kind().as_ref() {
        "string" => {
            let mut out = String::new();
            for c in node.children() {
                match c.kind().as_ref() {
                    "interpolation" => return None,
                    "string_content" => out.push_str(&c.text()),
                    _ => {}
                }
            }
            Some(out)
        }
        "concatenated_string" => {
            let mut out = String::new();
            for c in node.children().filter(|c| c.kind() == "string") {
                out.push_str(&string_value(&c)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// The last dotted segment of a call's callee: `sleep` for `asyncio.sleep(…)`, `AsyncClient` for
/// `httpx.AsyncClient(…)`.
pub fn callee_tail(call: &PyNode<'_>) -> Option<String> {
    let f = call.field("function")?;
    match f.kind().as_ref() {
        "identifier" => Some(f.text().to_string()),
        "attribute" => f.field("attribute").map(|a| a.text().to_string()),
        _ => None,
    }
}

/// Does a `call` pass `**kwargs` (so any keyword may be set where we cannot see it)?
pub fn has_kwargs_splat(call: &PyNode<'_>) -> bool {
    call.field("arguments")
        .is_some_and(|args| args.children().any(|a| a.kind() == "dictionary_splat"))
}

/// The name of a `def`/`async def` node.
pub fn function_name(func: &PyNode<'_>) -> Option<String> {
    func.field("name").map(|n| n.text().to_string())
}

/// The dotted text of an identifier or attribute chain (`a.b.c`), else `None`.
pub fn dotted(node: &PyNode<'_>) -> Option<String> {
    // Down the chain without recursion: an attribute chain can be as long as the file.
    let mut attrs = Vec::new();
    let mut cur = node.clone();
    loop {
        match cur.kind().as_ref() {
            "identifier" => break,
            "attribute" if attrs.len() < MAX_CHAIN => {
                attrs.push(cur.field("attribute")?);
                cur = cur.field("object")?;
            }
            _ => return None,
        }
    }
    let mut out = cur.text().to_string();
    for attr in attrs.iter().rev() {
        out.push('.');
        out.push_str(&attr.text());
    }
    Some(out)
}

/// Is this call awaited (`await f(...)`)?
pub fn is_awaited(call: &PyNode<'_>) -> bool {
    call.parent().is_some_and(|p| p.kind() == "await")
}

/// Does the node (or anything under it) contain a parse error? The one guard for "skip code the parser could
/// not read": code it could not make sense of yields no findings.
pub fn has_error(node: &PyNode<'_>) -> bool {
    node.get_inner_node().has_error()
}

/// The decorators of a function or class (empty when it is not decorated).
pub fn decorators<'r>(def: &PyNode<'r>) -> Vec<PyNode<'r>> {
    match def.parent() {
        Some(p) if p.kind() == "decorated_definition" => {
            p.children().filter(|c| c.kind() == "decorator").collect()
        }
        _ => Vec::new(),
    }
}

/// The decorator's expression without `@` and without its call arguments: `router.get`, `lru_cache`.
pub fn decorator_name(dec: &PyNode<'_>) -> String {
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

/// Names of a function's (or lambda's) parameters.
pub fn param_names(func: &PyNode<'_>) -> Vec<String> {
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

/// `x.attr` with `x` an identifier.
pub fn var_attr(node: &PyNode<'_>) -> Option<(String, String)> {
    if node.kind() != "attribute" {
        return None;
    }
    let obj = node.field("object")?;
    if obj.kind() != "identifier" {
        return None;
    }
    let attr = node.field("attribute")?;
    Some((obj.text().to_string(), attr.text().to_string()))
}

pub fn strip_parens<'r>(node: &PyNode<'r>) -> PyNode<'r> {
    let mut n = node.clone();
    while n.kind() == "parenthesized_expression" {
        let inner = n.children().find(|c| c.is_named());
        match inner {
            Some(inner) => n = inner,
            None => break,
        }
    }
    n
}

/// The text of a string literal without quotes and prefixes, when it has no interpolation.
pub fn plain_string(node: &PyNode<'_>) -> Option<String> {
    if node.kind() != "string" || node.children().any(|c| c.kind() == "interpolation") {
        return None;
    }
    Some(
        node.children()
            .filter(|c| c.kind() == "string_content")
            .map(|c| c.text().to_string())
            .collect(),
    )
}
