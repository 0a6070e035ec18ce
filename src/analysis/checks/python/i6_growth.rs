//! I6: unbounded in-memory growth.
//!
//! - `unbounded-module-collection`: a module-level list/dict/set that functions only ever add to: nothing in the
//!   file removes entries, clears it or watches its size, so it grows for as long as the process lives (one
//!   entry per request, user or document) until the container hits its memory limit.
//! - `unbounded-memoization`: `@lru_cache(maxsize=None)` / `@cache` on a function whose arguments look
//!   request-dependent (ids, queries, texts, URLs): one cache entry per distinct request, never evicted.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::state::{
    MODULE_COLLECTION_TOKENS, analyze_collections, grows_without_bound, is_growth, unbounded_key,
};
use crate::analysis::semantic::python::syntax::{
    decorator_name, decorators, function_name, has_error, keyword_arg,
};
use crate::analysis::semantic::python::text::{Cut, shorten};
use std::collections::HashSet;

pub struct UnboundedModuleCollection;

impl Check for UnboundedModuleCollection {
    fn id(&self) -> &'static str {
        "unbounded-module-collection"
    }

    fn tokens(&self) -> &'static [&'static str] {
        MODULE_COLLECTION_TOKENS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for c in analyze_collections(ctx, root).iter() {
            if grows_without_bound(c).is_none() {
                continue;
            }
            let mut seen_funcs: HashSet<(usize, usize)> = HashSet::new();
            for u in c
                .uses
                .iter()
                .filter(|u| !u.startup && is_growth(c, u) && unbounded_key(c, u))
            {
                let fkey = u.func.as_ref().map_or((0, 0), |r| (r.start, r.end));
                if !seen_funcs.insert(fkey) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: u.range.clone(),
                    message: Some(format!(
                        "`{}` adds to module-level `{}` (a {}) and nothing ever removes entries or caps its size: it grows for the life of the process (and is per-replica state)",
                        shorten(&u.text, Cut::EXPRESSION),
                        c.name,
                        c.kind.describe()
                    )),
                });
            }
        }
    }
}

/// Parameter names whose values come from requests (so each call is likely a new cache key).
fn is_request_dependent(name: &str) -> bool {
    let n = name.trim_start_matches('_').to_ascii_lowercase();
    let last = n.rsplit('_').next().unwrap_or(&n);
    matches!(
        last,
        "id" | "ids"
            | "query"
            | "question"
            | "prompt"
            | "text"
            | "texts"
            | "message"
            | "messages"
            | "content"
            | "url"
            | "uri"
            | "token"
            | "email"
            | "username"
            | "input"
            | "body"
            | "payload"
            | "request"
            | "req"
            | "filename"
            | "q"
            | "term"
            | "search"
            | "sql"
            | "html"
            | "markdown"
            | "document"
            | "doc"
            | "docs"
            | "chunk"
            | "chunks"
            | "sentence"
    ) || matches!(
        n.as_str(),
        "user" | "path" | "key" | "data" | "value" | "s" | "string"
    )
}

pub struct UnboundedMemoization;

impl Check for UnboundedMemoization {
    fn id(&self) -> &'static str {
        "unbounded-memoization"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["lru_cache", "@cache", "functools.cache"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        if !root.text().contains("functools") {
            return;
        }
        for func in ctx.of_kind(root, "function_definition").iter() {
            let Some(dec) = decorators(func)
                .into_iter()
                .find(|d| unbounded_cache_decorator(d))
            else {
                continue;
            };
            if has_error(&dec) {
                continue;
            }
            let name = function_name(func).unwrap_or_default();
            let lname = name.to_ascii_lowercase();
            // Warn-once / log-once helpers: one entry per distinct message is the point.
            if ["warn", "once", "log", "deprecat"]
                .iter()
                .any(|w| lname.contains(w))
            {
                continue;
            }
            let keyed: Vec<String> = small_domain_params(func)
                .into_iter()
                .filter(|p| p.as_str() != "self" && p.as_str() != "cls")
                .filter(|p| is_request_dependent(p))
                .collect();
            if keyed.is_empty() {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: dec.range(),
                message: Some(format!(
                    "`{}` keeps one result per distinct `{}` of `{name}`, forever (no `maxsize`): memory grows with every new value it is called with",
                    dec.text().trim(),
                    keyed.join("`/`")
                )),
            });
        }
    }
}

/// Parameter names, minus those whose annotation limits them to a few values (`bool`, `Literal[...]`, an enum).
fn small_domain_params(func: &PyNode<'_>) -> Vec<String> {
    let Some(params) = func.field("parameters") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in params.children() {
        if let Some(ty) = p.field("type") {
            let t = ty.text();
            if t == "bool" || t.starts_with("Literal[") || t.ends_with("Enum") || t.contains("Type")
            {
                continue;
            }
        }
        out.extend(param_names_of(&p));
    }
    out
}

/// The name a single parameter node binds.
fn param_names_of(p: &PyNode<'_>) -> Option<String> {
    match p.kind().as_ref() {
        "identifier" => Some(p.text().to_string()),
        "default_parameter" | "typed_default_parameter" => {
            p.field("name").map(|n| n.text().to_string())
        }
        "typed_parameter" => p
            .children()
            .find(|c| c.kind() == "identifier")
            .map(|n| n.text().to_string()),
        _ => None,
    }
}

/// `@cache`, `@functools.cache`, `@lru_cache(maxsize=None)`, `@functools.lru_cache(None)`.
fn unbounded_cache_decorator(dec: &PyNode<'_>) -> bool {
    let name = decorator_name(dec);
    let Some(expr) = dec.children().find(|c| c.is_named()) else {
        return false;
    };
    match name.as_str() {
        "cache" | "functools.cache" => expr.kind() != "call",
        "lru_cache" | "functools.lru_cache" => {
            if expr.kind() != "call" {
                return false;
            }
            if let Some(v) = keyword_arg(&expr, "maxsize") {
                return v.text() == "None";
            }
            expr.field("arguments")
                .and_then(|a| a.children().find(|c| c.is_named()))
                .is_some_and(|a| a.text() == "None")
        }
        _ => false,
    }
}
