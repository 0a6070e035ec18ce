//! F3: a LangChain chat model built and invoked on the chat path with no `.with_fallbacks(...)`.
//!
//! The check works on one file. It finds the chat-model constructions (`ChatOpenAI(...)`, `init_chat_model(...)`
//! ...), follows them through assignments in the file (`llm = ChatOpenAI(...)`, `chain = prompt | llm`,
//! `agent = create_react_agent(llm, tools)`, `self.llm = ...`, a factory `def get_llm(): return ChatOpenAI(...)`)
//! and looks for an invocation (`ainvoke`, `astream`, `invoke`, ...) of one of them inside a route handler
//! (`@router.post(...)`, high) or a function named like the chat path (`chat`, `answer`, `respond`, `reply`, ...,
//! medium). A file that mentions `with_fallbacks` or any `fallback` name is taken to handle provider failure, and
//! so is an invocation whose `except` handler calls another model.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::scopes::same_scope_descendants;
use crate::analysis::semantic::python::syntax::{callee_tail, function_name, keyword_arg};
use crate::analysis::semantic::python::text::{Cut, shorten};
use std::collections::HashSet;

/// LangChain chat model classes and factories whose construction starts a provider dependency.
const CHAT_MODELS: &[&str] = &[
    "ChatOpenAI",
    "AzureChatOpenAI",
    "ChatAnthropic",
    "ChatAnthropicVertex",
    "ChatGoogleGenerativeAI",
    "ChatVertexAI",
    "ChatBedrock",
    "ChatBedrockConverse",
    "ChatMistralAI",
    "ChatGroq",
    "ChatOllama",
    "ChatFireworks",
    "ChatCohere",
    "ChatDeepSeek",
    "ChatXAI",
    "ChatTogether",
    "ChatPerplexity",
    "ChatNVIDIA",
    "ChatDatabricks",
    "ChatWatsonx",
    "ChatHuggingFace",
    "ChatLiteLLM",
    "ChatOpenRouter",
    "init_chat_model",
];

/// Runnable methods that call the model.
const INVOKE: &[&str] = &[
    "invoke",
    "ainvoke",
    "stream",
    "astream",
    "astream_events",
    "astream_log",
    "batch",
    "abatch",
    "generate",
    "agenerate",
    "predict",
    "apredict",
    "predict_messages",
    "apredict_messages",
    "run",
    "arun",
];

/// Substrings of function names on the chat path.
const CHAT_NAMES: &[&str] = &[
    "chat",
    "answer",
    "respond",
    "response",
    "reply",
    "convers",
    "ask",
    "message",
    "completion",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Invoked from a route handler.
    Route,
    /// Invoked from a function named like the chat path.
    ChatNamed,
}

pub struct ChatNoFallbackRoute;
pub struct ChatNoFallbackChat;

const TOKENS: &[&str] = &["Chat", "init_chat_model"];

impl Check for ChatNoFallbackRoute {
    fn id(&self) -> &'static str {
        "chat-model-no-fallback-route"
    }
    fn tokens(&self) -> &'static [&'static str] {
        TOKENS
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        run(root, &ctx.imports(root), Tier::Route, out);
    }
}

impl Check for ChatNoFallbackChat {
    fn id(&self) -> &'static str {
        "chat-model-no-fallback-chat"
    }
    fn tokens(&self) -> &'static [&'static str] {
        TOKENS
    }
    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        run(root, &ctx.imports(root), Tier::ChatNamed, out);
    }
}

/// A chat model construction, also under an import alias (`from langchain_openai import ChatOpenAI as LLM`).
fn is_chat_model_call(call: &PyNode<'_>, imports: &Imports) -> bool {
    call.kind() == "call"
        && imports
            .callee_tail(call)
            .is_some_and(|t| CHAT_MODELS.contains(&t.as_str()))
}

/// Identifiers and dotted names (`llm`, `self.llm`, `get_llm`) appearing in an expression, itself included.
fn names_in(expr: &PyNode<'_>) -> HashSet<String> {
    std::iter::once(expr.clone())
        .chain(expr.dfs())
        .filter(|n| matches!(n.kind().as_ref(), "identifier" | "attribute"))
        .map(|n| n.text().split_whitespace().collect::<String>())
        .collect()
}

/// A name a model flows into, and where it is visible: a local variable of a function only inside that function
/// (byte range), module globals, attributes (`self.llm`) and factory function names everywhere (`None`).
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bound {
    name: String,
    scope: Option<std::ops::Range<usize>>,
}

fn binding_of(node: &PyNode<'_>) -> Vec<Bound> {
    let names = binding_names(node);
    let is_return = node
        .ancestors()
        .take_while(|a| {
            !matches!(
                a.kind().as_ref(),
                "function_definition" | "block" | "module"
            )
        })
        .any(|a| a.kind() == "return_statement");
    let func = node.ancestors().find(|a| a.kind() == "function_definition");
    let root_text = node.root().root().text().to_string();
    names
        .into_iter()
        .map(|name| {
            let local =
                !is_return && !name.contains('.') && !root_text.contains(&format!("global {name}"));
            let scope = if local {
                func.as_ref().map(|f| f.range())
            } else {
                None
            };
            Bound { name, scope }
        })
        .collect()
}

/// Is `name`, used at byte `pos`, one of the derived bindings?
fn is_derived(derived: &HashSet<Bound>, names: &HashSet<String>, pos: usize) -> bool {
    derived.iter().any(|b| {
        names.contains(&b.name)
            && b.scope
                .as_ref()
                .is_none_or(|r| r.start <= pos && pos < r.end)
    })
}

/// Where an expression's value ends up: climbing through calls, operators and containers to the statement that
/// binds it. Returns the bound names (assignment targets) or, for a `return`, the enclosing function's name.
fn binding_names(node: &PyNode<'_>) -> Vec<String> {
    let mut cur = node.clone();
    while let Some(p) = cur.parent() {
        match p.kind().as_ref() {
            "call"
            | "attribute"
            | "argument_list"
            | "keyword_argument"
            | "binary_operator"
            | "parenthesized_expression"
            | "list"
            | "tuple"
            | "dictionary"
            | "pair"
            | "conditional_expression"
            | "await"
            | "expression_list"
            | "boolean_operator" => {
                cur = p;
            }
            "assignment" => {
                // Only the right-hand side binds; `x: T = v` has `right`.
                if p.field("right")
                    .is_some_and(|r| r.node_id() == cur.node_id())
                    && let Some(l) = p.field("left")
                {
                    return match l.kind().as_ref() {
                        "pattern_list" | "tuple_pattern" => l
                            .children()
                            .filter(|c| c.is_named())
                            .map(|c| c.text().to_string())
                            .collect(),
                        "subscript" => l
                            .field("value")
                            .map(|v| v.text().split_whitespace().collect())
                            .into_iter()
                            .collect(),
                        _ => vec![l.text().split_whitespace().collect()],
                    };
                }
                return Vec::new();
            }
            "return_statement" => {
                return p
                    .ancestors()
                    .find(|a| a.kind() == "function_definition")
                    .and_then(|f| function_name(&f))
                    .into_iter()
                    .collect();
            }
            _ => return Vec::new(),
        }
    }
    Vec::new()
}

/// The route handler's method and path if `func` is decorated with `@x.get("/path")`, `@router.post(...)`, ...
fn route_of(func: &PyNode<'_>) -> Option<String> {
    let decorated = func
        .parent()
        .filter(|p| p.kind() == "decorated_definition")?;
    decorated
        .children()
        .filter(|d| d.kind() == "decorator")
        .find_map(|d| {
            let call = d.children().find(|c| c.kind() == "call")?;
            let f = call.field("function")?;
            if f.kind() != "attribute" {
                return None;
            }
            let method = f.field("attribute")?.text().to_string();
            if !matches!(
                method.as_str(),
                "get" | "post" | "put" | "patch" | "delete" | "websocket" | "api_route" | "route"
            ) {
                return None;
            }
            let path = call
                .field("arguments")
                .and_then(|a| a.children().find(|c| c.kind() == "string"))
                .map(|s| s.text().to_string())
                .unwrap_or_default();
            Some(
                format!("{} {}", method.to_uppercase(), path)
                    .trim()
                    .to_string(),
            )
        })
}

fn chat_named(func: &PyNode<'_>) -> bool {
    function_name(func).is_some_and(|n| {
        let n = n.to_ascii_lowercase();
        CHAT_NAMES.iter().any(|c| n.contains(c))
    })
}

/// Names of functions registered as LangGraph nodes in this file (`builder.add_node("agent", call_model)`).
fn graph_node_names(root: &PyNode<'_>) -> Vec<String> {
    root.dfs()
        .filter(|n| n.kind() == "call" && callee_tail(n).as_deref() == Some("add_node"))
        .filter_map(|c| c.field("arguments"))
        .flat_map(|a| a.children().collect::<Vec<_>>())
        .filter(|a| matches!(a.kind().as_ref(), "identifier" | "attribute"))
        .map(|a| {
            let t = a.text().to_string();
            t.rsplit('.').next().unwrap_or(&t).to_string()
        })
        .collect()
}

/// A LangGraph node: registered with `add_node`, or taking a `...State` annotated first parameter.
fn is_graph_node(func: &PyNode<'_>, registered: &[String]) -> bool {
    let Some(name) = function_name(func) else {
        return false;
    };
    if registered.contains(&name) {
        return true;
    }
    func.field("parameters").is_some_and(|ps| {
        ps.children()
            .filter(|p| p.kind() == "typed_parameter")
            .filter_map(|p| p.field("type"))
            .any(|t| {
                let t = t.text();
                t == "MessagesState" || t.ends_with("AgentState") || t == "State"
            })
    })
}

/// Does an `except` handler around this call invoke something else (a hand-written fallback)?
fn has_manual_fallback(call: &PyNode<'_>) -> bool {
    call.ancestors()
        .take_while(|a| !matches!(a.kind().as_ref(), "function_definition" | "lambda"))
        .filter(|a| a.kind() == "try_statement")
        .any(|t| {
            t.children()
                .filter(|c| c.kind() == "except_clause")
                .any(|h| {
                    same_scope_descendants(&h).iter().any(|n| {
                        n.kind() == "call"
                            && callee_tail(n).is_some_and(|m| INVOKE.contains(&m.as_str()))
                    })
                })
        })
}

fn run(root: &PyNode<'_>, imports: &Imports, tier: Tier, out: &mut Vec<CheckMatch>) {
    let text = root.text();
    if !text.contains("langchain") {
        return;
    }
    // `with_fallbacks`, or any name (not comment) mentioning a fallback: provider failure is handled here.
    if root
        .dfs()
        .any(|n| n.kind() == "identifier" && n.text().to_ascii_lowercase().contains("fallback"))
    {
        return;
    }
    let graph_nodes = graph_node_names(root);
    let constructions: Vec<PyNode<'_>> = root
        .dfs()
        .filter(|c| is_chat_model_call(c, imports))
        .collect();
    if constructions.is_empty() {
        return;
    }
    // Names derived from each construction, followed through the file's assignments and returns.
    let assignments: Vec<PyNode<'_>> = root
        .dfs()
        .filter(|n| n.kind() == "assignment" || n.kind() == "return_statement")
        .collect();
    let mut best: Vec<(usize, Tier, String)> = Vec::new();
    for (ci, c) in constructions.iter().enumerate() {
        let mut derived: HashSet<Bound> = binding_of(c).into_iter().collect();
        for _ in 0..4 {
            let before = derived.len();
            for a in &assignments {
                let value = if a.kind() == "assignment" {
                    a.field("right")
                } else {
                    a.children().find(|x| x.is_named())
                };
                let Some(value) = value else { continue };
                if is_derived(&derived, &names_in(&value), value.range().start) {
                    derived.extend(binding_of(&value));
                }
            }
            if derived.len() == before {
                break;
            }
        }
        // LangServe: `add_routes(app, chain, path="/chat")` serves the runnable as a route.
        for call in root.dfs().filter(|n| n.kind() == "call") {
            if callee_tail(&call).as_deref() != Some("add_routes") {
                continue;
            }
            let Some(args) = call.field("arguments") else {
                continue;
            };
            let positional: Vec<PyNode<'_>> = args
                .children()
                .filter(|a| a.is_named() && a.kind() != "keyword_argument" && a.kind() != "comment")
                .collect();
            let Some(runnable) = positional.get(1) else {
                continue;
            };
            let inside =
                runnable.range().start <= c.range().start && c.range().end <= runnable.range().end;
            if !inside && !is_derived(&derived, &names_in(runnable), runnable.range().start) {
                continue;
            }
            let path = keyword_arg(&call, "path")
                .map(|p| p.text().to_string())
                .unwrap_or_default();
            let desc = format!("the LangServe route `add_routes(…, path={path})`");
            best.retain(|b| b.0 != ci);
            best.push((ci, Tier::Route, desc));
        }
        // Invocations of the model or of something built from it.
        for call in root.dfs().filter(|n| n.kind() == "call") {
            let Some(method) = callee_tail(&call) else {
                continue;
            };
            if !INVOKE.contains(&method.as_str()) {
                continue;
            }
            let Some(obj) = call.field("function").and_then(|f| f.field("object")) else {
                continue;
            };
            let direct = obj.range().start <= c.range().start && c.range().end <= obj.range().end;
            if !direct && !is_derived(&derived, &names_in(&obj), obj.range().start) {
                continue;
            }
            if has_manual_fallback(&call) {
                continue;
            }
            let Some(func) = call.ancestors().find(|a| a.kind() == "function_definition") else {
                continue;
            };
            let outer: Vec<PyNode<'_>> = std::iter::once(func.clone())
                .chain(
                    func.ancestors()
                        .filter(|a| a.kind() == "function_definition"),
                )
                .collect();
            let route = outer.iter().find_map(route_of);
            let found = if let Some(r) = route {
                Some((Tier::Route, format!("the `{r}` route handler")))
            } else if outer.iter().any(chat_named) {
                let name = function_name(&func).unwrap_or_default();
                Some((Tier::ChatNamed, format!("`{name}()`")))
            } else if let Some(node) = outer.iter().find(|f| is_graph_node(f, &graph_nodes)) {
                let name = function_name(node).unwrap_or_default();
                Some((Tier::ChatNamed, format!("the LangGraph node `{name}()`")))
            } else {
                None
            };
            let Some((t, where_)) = found else { continue };
            let obj_text = shorten(&obj.text(), Cut::NAME);
            let desc = format!("{where_} (`{obj_text}.{method}(…)`)");
            match best.iter_mut().find(|b| b.0 == ci) {
                Some(b) if b.1 == Tier::ChatNamed && t == Tier::Route => *b = (ci, t, desc),
                Some(_) => {}
                None => best.push((ci, t, desc)),
            }
        }
    }
    for (ci, t, desc) in best {
        if t != tier {
            continue;
        }
        let c = &constructions[ci];
        let name = callee_tail(c).unwrap_or_default();
        let impact = match tier {
            Tier::Route => {
                "when the provider is down or rate-limits, every request to this endpoint fails"
            }
            Tier::ChatNamed if desc.starts_with("the LangGraph node") => {
                "when the provider is down or rate-limits, the agent run fails instead of degrading (medium \
                 confidence: a graph node is taken to be on the chat path)"
            }
            Tier::ChatNamed => {
                "when the provider is down or rate-limits, the chat fails instead of degrading (medium confidence: \
                 this looks like the chat path from its name)"
            }
        };
        out.push(CheckMatch {
            fix: None,
            range: c.range(),
            message: Some(format!(
                "`{name}(…)` is invoked by {desc} with no `.with_fallbacks(…)` to another model or provider: {impact}"
            )),
        });
    }
}
