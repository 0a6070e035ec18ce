//! C9: runs of a LangGraph graph on a client-chosen `thread_id` from request handlers, with nothing that
//! serializes concurrent runs of the same thread.
//!
//! LangGraph (used as a library) does not serialize two runs on the same thread: both load the same latest
//! checkpoint, both append their messages, and the later write wins or the checkpoints interleave. A double
//! click, a client retry or two browser tabs are enough. The check flags `graph.ainvoke/astream/astream_events/
//! invoke/stream(…)` inside a route handler (or a helper of this file a handler calls) of a file that uses
//! `thread_id`, when no lock (`asyncio.Lock` per thread, a Redis/advisory lock) appears in the file.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::route_of;
use crate::analysis::semantic::python::syntax::{callee, has_error};
use crate::analysis::semantic::python::text::words;

const RUN_METHODS: &[&str] = &["ainvoke", "astream", "astream_events", "invoke", "stream"];

/// Receivers that are graphs / agents rather than bare models.
fn graph_like(receiver: &str) -> bool {
    let last = receiver.rsplit('.').next().unwrap_or(receiver);
    let ws = words(last);
    ws.iter().any(|w| {
        matches!(
            w.as_str(),
            "agent"
                | "graph"
                | "workflow"
                | "runnable"
                | "executor"
                | "supervisor"
                | "assistant"
                | "bot"
                | "compiled"
                | "app"
                | "orchestrator"
                | "pipeline"
        )
    }) && !ws.iter().any(|w| {
        matches!(
            w.as_str(),
            "llm" | "model" | "chat" | "embeddings" | "retriever" | "fastapi" | "client"
        )
    })
}

/// Anything that serializes runs: a lock of any kind, a mutex, an advisory lock.
fn serialization_in_sight(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .any(|t| {
            words(t).iter().any(|w| {
                matches!(
                    w.as_str(),
                    "lock"
                        | "locks"
                        | "mutex"
                        | "advisory"
                        | "redlock"
                        | "serialize"
                        | "serialized"
                )
            })
        })
}

pub struct UnserializedThreadRun;

impl Check for UnserializedThreadRun {
    fn id(&self) -> &'static str {
        "c9-unserialized-thread-run"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["thread_id"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let text = root.text();
        if !text.contains("thread_id") || serialization_in_sight(&text) {
            return;
        }
        let defs: Vec<PyNode<'_>> = root
            .dfs()
            .filter(|n| n.kind() == "function_definition")
            .collect();
        let handlers: Vec<&PyNode<'_>> = defs.iter().filter(|d| route_of(d).is_some()).collect();
        if handlers.is_empty() {
            return;
        }
        // Helpers of this file a handler calls (`StreamingResponse(event_stream(...))`, `await run_agent(...)`).
        let mut helper_names: Vec<String> = Vec::new();
        for h in &handlers {
            for call in h.dfs().filter(|n| n.kind() == "call") {
                let mut names: Vec<String> = Vec::new();
                if let Some(f) = callee(&call) {
                    names.push(f.rsplit('.').next().unwrap_or(&f).to_string());
                }
                if let Some(args) = call.field("arguments") {
                    for a in args.children().filter(|a| a.kind() == "call") {
                        if let Some(f) = callee(&a) {
                            names.push(f.rsplit('.').next().unwrap_or(&f).to_string());
                        }
                    }
                }
                for n in names {
                    if defs
                        .iter()
                        .any(|d| d.field("name").is_some_and(|x| x.text() == n))
                    {
                        helper_names.push(n);
                    }
                }
            }
        }
        let in_scope = |node: &PyNode<'_>| -> Option<String> {
            let f = node
                .ancestors()
                .find(|a| a.kind() == "function_definition")?;
            // The handler itself, or a function nested in it, or a helper it calls.
            let mut cur = Some(f);
            while let Some(func) = cur {
                let name = func.field("name").map(|n| n.text().to_string())?;
                if route_of(&func).is_some() || helper_names.contains(&name) {
                    return Some(name);
                }
                cur = func.ancestors().find(|a| a.kind() == "function_definition");
            }
            None
        };
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = callee(call) else { continue };
            let Some((receiver, method)) = f.rsplit_once('.') else {
                continue;
            };
            if !RUN_METHODS.contains(&method) || !graph_like(receiver) {
                continue;
            }
            // The run must carry a config (where the thread id travels).
            let args = call
                .field("arguments")
                .map(|a| a.text().to_string())
                .unwrap_or_default();
            if !(args.contains("config") || args.contains("thread_id") || args.contains("**")) {
                continue;
            }
            let Some(handler) = in_scope(call) else {
                continue;
            };
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(call) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{f}(…)` in `{handler}` runs the graph on a request's `thread_id` with no per-thread lock in this file: two concurrent messages on the same thread interleave their checkpoint writes (low confidence: the client or a queue may already serialize them)"
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_receivers() {
        assert!(graph_like("graph"));
        assert!(graph_like("self.agent"));
        assert!(graph_like("compiled_graph"));
        assert!(!graph_like("llm"));
        assert!(!graph_like("chat_model"));
        assert!(serialization_in_sight("locks[thread_id] = asyncio.Lock()"));
        assert!(!serialization_in_sight("block = 1"));
    }
}
