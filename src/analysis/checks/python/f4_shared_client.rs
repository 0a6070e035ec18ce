//! F4: one module-level HTTP client used for a slow LLM/provider and for other services alike.
//!
//! `httpx.AsyncClient` and `aiohttp.ClientSession` have one connection pool (httpx: 100 connections, 20
//! keep-alive by default). When the same module-level client calls an LLM provider (tens of seconds per
//! request) and internal services (milliseconds), a burst of slow completions holds every connection and the
//! fast calls queue behind them for a pool slot: the slow dependency takes the unrelated traffic down with it.
//! The check only fires when the file itself shows both kinds of URL on the same client.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::scopes::is_module_level;
use crate::analysis::semantic::python::syntax::{callee, has_error, keyword_arg};
use crate::analysis::semantic::python::text::words;

const CLIENT_CLASSES: &[&str] = &[
    "httpx.AsyncClient",
    "AsyncClient",
    "httpx.Client",
    "aiohttp.ClientSession",
    "ClientSession",
    "requests.Session",
];

const CALL_METHODS: &[&str] = &[
    "get", "post", "put", "patch", "delete", "request", "stream", "send",
];

/// Is this URL expression (literal, f-string or name) an LLM / model provider endpoint?
fn llm_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "openai",
        "anthropic",
        "/chat/completions",
        "/completions",
        "/embeddings",
        "/v1/messages",
        "ollama",
        "/api/generate",
        "/api/chat",
        "generativelanguage",
        "bedrock",
        "mistral.ai",
        "cohere",
        "groq",
        "together.xyz",
        "huggingface",
        "/v1/models",
        "llm",
        "inference",
        "vllm",
        "openrouter",
    ]
    .iter()
    .any(|m| lower.contains(m))
}

/// Is the URL clearly something identifiable that is not an LLM (a path or host of another service)?
fn other_url(node: &PyNode<'_>) -> bool {
    matches!(node.kind().as_ref(), "string" | "concatenated_string")
        || (node.kind() == "identifier"
            && words(&node.text())
                .iter()
                .any(|w| matches!(w.as_str(), "url" | "endpoint" | "uri")))
}

pub struct SharedClientMixedDeps;

impl Check for SharedClientMixedDeps {
    fn id(&self) -> &'static str {
        "f4-shared-client-mixed"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["Client", "ClientSession", "Session("]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        // Module-level clients: `http = httpx.AsyncClient(timeout=30)` (also `h.AsyncClient(…)` after `import
        // httpx as h`: callees are read with the alias undone).
        let imports = ctx.imports(root);
        let clients: Vec<(String, PyNode<'_>)> = ctx
            .of_kind(root, "assignment")
            .iter()
            .filter_map(|a| {
                let right = a.field("right")?;
                if right.kind() != "call" {
                    return None;
                }
                let f = imports.callee(&right)?;
                if !CLIENT_CLASSES.contains(&f.as_str()) || !is_module_level(a) {
                    return None;
                }
                // A client bound to one base URL talks to one dependency.
                if keyword_arg(&right, "base_url").is_some() {
                    return None;
                }
                let left = a.field("left")?;
                (left.kind() == "identifier").then(|| (left.text().to_string(), right))
            })
            .collect();
        for (name, ctor) in clients {
            let mut llm: Option<String> = None;
            let mut other: Option<String> = None;
            for call in ctx.of_kind(root, "call").iter() {
                let Some(f) = callee(call) else { continue };
                let Some((recv, method)) = f.rsplit_once('.') else {
                    continue;
                };
                if recv != name || !CALL_METHODS.contains(&method) {
                    continue;
                }
                let Some(args) = call.field("arguments") else {
                    continue;
                };
                let named: Vec<PyNode<'_>> = args.children().filter(|a| a.is_named()).collect();
                // `request("POST", url)` has the URL second.
                let url = if method == "request" {
                    named.get(1)
                } else {
                    named.first()
                };
                let Some(url) = url else { continue };
                if url.kind() == "keyword_argument" {
                    continue;
                }
                let t = url.text().to_string();
                if llm_url(&t) {
                    llm.get_or_insert(t);
                } else if other_url(url) {
                    other.get_or_insert(t);
                }
            }
            if let (Some(slow), Some(fast)) = (llm, other) {
                let short = |s: &str| s.chars().take(40).collect::<String>();
                // Code the parser could not make sense of yields no findings: precision first.
                if has_error(&ctor) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: ctor.range(),
                    message: Some(format!(
                        "`{name}` is one connection pool for an LLM/provider endpoint ({}) and other services ({}): slow model calls can hold every connection and stall the fast calls (low confidence: no evidence of load here)",
                        short(&slow),
                        short(&fast)
                    )),
                });
            }
        }
    }
}
