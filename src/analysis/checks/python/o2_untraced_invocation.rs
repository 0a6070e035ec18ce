//! O2: a LangChain/LangGraph run started without the tracing callbacks the file sets up.
//!
//! Tracing switched on through the environment (`LANGSMITH_TRACING`/`LANGCHAIN_TRACING_V2`) reaches every run by
//! itself, so a bare `chain.ainvoke(x)` is traced there and is not reported. Per-app tracing (a `LangChainTracer`
//! built for the app's own LangSmith project, a Langfuse `CallbackHandler`) only reaches runs that are handed the
//! handler in `config={"callbacks": [...]}`: in a file that builds such a handler, a top-level run started without
//! any `config` is missing from that trace.
//!
//! Not reported: calls inside a function that receives `config`/`callbacks`/`run_manager` (a graph node or tool:
//! child runs inherit the parent's callbacks), inside `with tracing_context(...)`/`tracing_v2_enabled(...)`/
//! `collect_runs()`, inside functions decorated with `@traceable`/`@observe`, receivers bound with
//! `.with_config(...)`, and calls passing `**kwargs`.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::syntax::{
    callee, has_kwargs_splat, keyword_arg, positional_arg,
};
use regex::Regex;
use std::sync::OnceLock;

pub struct UntracedInvocation;

fn tracer_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"\bLangChainTracer\s*\(|\bLangfuseCallbackHandler\s*\(|\bCallbackHandler\s*\(")
            .expect("valid regex")
    })
}

fn method_of(f: &str) -> Option<(&str, &str)> {
    let (recv, m) = f.rsplit_once('.')?;
    matches!(
        m,
        "ainvoke"
            | "invoke"
            | "astream"
            | "stream"
            | "astream_events"
            | "astream_log"
            | "abatch"
            | "batch"
    )
    .then_some((recv, m))
}

/// Does the function take the run's config (a node, tool or runnable body: child runs inherit callbacks)?
fn takes_config(func: &PyNode<'_>) -> bool {
    let Some(params) = func.field("parameters") else {
        return false;
    };
    params
        .dfs()
        .filter(|n| n.kind() == "identifier")
        .any(|n| matches!(n.text().as_ref(), "config" | "callbacks" | "run_manager"))
}

fn traced_decorator(func: &PyNode<'_>) -> bool {
    func.parent().is_some_and(|p| {
        p.kind() == "decorated_definition"
            && p.children().filter(|d| d.kind() == "decorator").any(|d| {
                let t = d.text();
                t.contains("traceable") || t.contains("observe")
            })
    })
}

fn in_tracing_with(node: &PyNode<'_>) -> bool {
    node.ancestors().any(|a| {
        a.kind() == "with_statement"
            && a.children().any(|c| {
                c.kind() == "with_clause" && {
                    let t = c.text();
                    t.contains("tracing_context")
                        || t.contains("tracing_v2_enabled")
                        || t.contains("collect_runs")
                        || t.contains("trace(")
                        || t.contains("langfuse")
                        || t.contains("callbacks")
                }
            })
    })
}

/// Is the receiver bound with `.with_config(...)` / callbacks somewhere in the file?
fn receiver_configured(root: &PyNode<'_>, recv: &str) -> bool {
    if recv.contains("with_config(") || recv.contains("callbacks") {
        return true;
    }
    let last = recv.rsplit('.').next().unwrap_or(recv);
    root.dfs().filter(|n| n.kind() == "assignment").any(|a| {
        let Some(left) = a.field("left") else {
            return false;
        };
        let lt = left.text();
        let lname = lt.rsplit('.').next().unwrap_or(&lt);
        lname == last
            && a.field("right").is_some_and(|r| {
                let t = r.text();
                t.contains("with_config") || t.contains("callbacks")
            })
    })
}

impl Check for UntracedInvocation {
    fn id(&self) -> &'static str {
        "untraced-invocation"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["LangChainTracer", "CallbackHandler"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let file = root.text();
        if !tracer_re().is_match(&file) {
            return;
        }
        // A Langfuse/LangChain callback handler, not some other `CallbackHandler`.
        if !file.contains("LangChainTracer") && !file.contains("langfuse") {
            return;
        }
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = callee(call) else { continue };
            let Some((recv, method)) = method_of(&f) else {
                continue;
            };
            if has_kwargs_splat(call)
                || positional_arg(call, 1).is_some()
                || keyword_arg(call, "config").is_some()
                || keyword_arg(call, "callbacks").is_some()
            {
                continue;
            }
            if positional_arg(call, 0).is_none() && keyword_arg(call, "input").is_none() {
                continue;
            }
            if let Some(args) = call.field("arguments")
                && args.children().any(|a| a.kind() == "list_splat")
            {
                continue;
            }
            let funcs: Vec<PyNode<'_>> = call
                .ancestors()
                .filter(|a| a.kind() == "function_definition")
                .collect();
            if funcs.iter().any(|f| takes_config(f) || traced_decorator(f)) {
                continue;
            }
            if in_tracing_with(call) || receiver_configured(root, recv) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{f}(…)` starts a run without `config`: this file builds a tracing callback handler, but this `{method}` is not given it, so the run is missing from the app's trace; pass `config={{\"callbacks\": [tracer], \"run_name\": …, \"metadata\": {{\"app_id\": …}}}}` (low confidence: the handler may be attached in a way not visible here)"
                )),
            });
        }
    }
}
