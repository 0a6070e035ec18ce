//! F2: a hand-written `while True:` retry loop with no attempt limit and no pause.
//!
//! The shape it looks for is the classic retry: the `try` body ends by leaving the loop on success (`return` /
//! `break`, or a `break` in the `try`'s `else:`), and an `except` handler swallows the error so the loop goes round
//! again. When nothing in the loop can stop it (no `raise`/`return`/`break` outside the success path) and nothing
//! pauses it (no `sleep`/`wait`/`backoff`-like call), a persistent failure turns it into a tight loop that hammers the
//! dependency and never returns. Consumer loops (`while True: try: msg = await ws.receive() ... except ...:
//! continue`) do not leave the loop on success and are not reported.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::scopes::same_scope_descendants;
use crate::analysis::semantic::python::syntax::{callee, callee_tail};

pub struct RetryLoopUnbounded;

/// `raise` / `return` anywhere in `node`'s own scope, or a `break` that leaves the loop `node` is in (not a
/// `break` of a loop nested inside `node`).
fn can_leave_loop(node: &PyNode<'_>) -> bool {
    if matches!(
        node.kind().as_ref(),
        "raise_statement" | "return_statement" | "break_statement"
    ) {
        return true;
    }
    same_scope_descendants(node)
        .iter()
        .any(|n| match n.kind().as_ref() {
            "raise_statement" | "return_statement" => true,
            "break_statement" => !n
                .ancestors()
                .take_while(|a| a.node_id() != node.node_id())
                .any(|a| matches!(a.kind().as_ref(), "for_statement" | "while_statement")),
            // `sys.exit(...)` / `os._exit(...)` leave too.
            "call" => callee(n)
                .is_some_and(|c| matches!(c.as_str(), "sys.exit" | "os._exit" | "exit" | "quit")),
            _ => false,
        })
}

/// Statements of a block (its named children, comments excluded).
fn statements<'r>(block: &PyNode<'r>) -> Vec<PyNode<'r>> {
    block
        .children()
        .filter(|c| c.is_named() && c.kind() != "comment")
        .collect()
}

fn ends_with_exit(block: Option<PyNode<'_>>) -> bool {
    block
        .and_then(|b| statements(&b).pop())
        .is_some_and(|s| matches!(s.kind().as_ref(), "return_statement" | "break_statement"))
}

/// Does the try statement leave the loop when its body succeeds?
fn exits_on_success(try_stmt: &PyNode<'_>) -> bool {
    if ends_with_exit(try_stmt.field("body")) {
        return true;
    }
    try_stmt
        .children()
        .find(|c| c.kind() == "else_clause")
        .is_some_and(|e| ends_with_exit(e.field("body")))
}

/// Is there a call that pauses (sleep, wait, backoff, delay, throttle) anywhere in the loop's own scope?
fn pauses(loop_node: &PyNode<'_>) -> bool {
    same_scope_descendants(loop_node)
        .iter()
        .filter(|n| n.kind() == "call")
        .filter_map(callee_tail)
        .any(|t| {
            let t = t.to_ascii_lowercase();
            ["sleep", "wait", "backoff", "delay", "throttle", "pause"]
                .iter()
                .any(|w| t.contains(w))
        })
}

/// A handler for timeouts (or an empty queue) is a poll: each turn already waited for the timeout. Handlers for
/// control flow (`KeyboardInterrupt`, `CancelledError`, `StopIteration`) or for bad input (`ValueError`, `KeyError`)
/// belong to interactive and iteration loops, not to retries of a failing dependency.
fn catches_only_timeouts(handler: &PyNode<'_>) -> bool {
    handler.field("value").is_some_and(|v| {
        let t = v.text();
        let t = t.split(" as ").next().unwrap_or(&t);
        t.split([',', '(', ')'])
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .all(|x| {
                x.contains("Timeout")
                    || x.ends_with("Empty")
                    || x == "timeout"
                    || x.ends_with("BlockingIOError")
                    || x.ends_with("InterruptedError")
                    || x.contains("SSLWant")
                    // control flow and lookups/validation: not a failing dependency being retried
                    || matches!(
                        x.rsplit('.').next().unwrap_or(x),
                        "KeyboardInterrupt"
                            | "CancelledError"
                            | "StopIteration"
                            | "StopAsyncIteration"
                            | "GeneratorExit"
                            | "SystemExit"
                            | "KeyError"
                            | "IndexError"
                            | "LookupError"
                            | "AttributeError"
                            | "ValueError"
                            | "TypeError"
                            | "UnicodeDecodeError"
                            | "JSONDecodeError"
                            | "ValidationError"
                    )
            })
    })
}

/// A handler that awaits something (waits for the socket to become readable, for a future) paces the loop; one that
/// hands the caught exception to a helper (`self._convert_socket_error(exc)`) may re-raise it.
fn handler_waits_or_delegates(handler: &PyNode<'_>) -> bool {
    let alias = handler
        .field("alias")
        .map(|a| a.text().to_string())
        .or_else(|| {
            // tree-sitter-python < 0.23 puts `E as e` in an `as_pattern` value.
            handler.field("value").and_then(|v| {
                (v.kind() == "as_pattern")
                    .then(|| v.field("alias").map(|a| a.text().trim().to_string()))
                    .flatten()
            })
        });
    same_scope_descendants(handler).iter().any(|n| {
        if n.kind() == "await" {
            return true;
        }
        let Some(alias) = alias.as_deref() else {
            return false;
        };
        n.kind() == "call"
            && !callee(n).is_some_and(|c| {
                let head = c.split('.').next().unwrap_or("").to_ascii_lowercase();
                c == "print"
                    || head.contains("log")
                    || c.contains(".log")
                    || c == "str"
                    || c == "repr"
            })
            && n.field("arguments").is_some_and(|a| {
                a.children()
                    .any(|x| x.kind() == "identifier" && x.text() == alias)
            })
    })
}

/// Names a statement binds (assignment targets, augmented assignments, `for` targets), in its own scope.
fn bound_names(node: &PyNode<'_>, out: &mut Vec<String>) {
    let mut nodes = same_scope_descendants(node);
    nodes.push(node.clone());
    for n in nodes {
        let target = match n.kind().as_ref() {
            "assignment" | "augmented_assignment" => n.field("left"),
            "for_statement" => n.field("left"),
            "named_expression" => n.field("name"),
            _ => None,
        };
        if let Some(t) = target {
            for id in std::iter::once(t.clone()).chain(t.dfs()) {
                if id.kind() == "identifier" {
                    out.push(id.text().to_string());
                }
            }
        }
    }
}

/// Does the loop change what the next attempt does? A handler that picks a new value (`new_email = f"{u}_{n}"`)
/// or a loop that asks again (`name = prompt(...)`) is a search, not a retry of the same call.
fn attempt_changes(
    try_stmt: &PyNode<'_>,
    stmts: &[PyNode<'_>],
    try_index: usize,
    handlers: &[PyNode<'_>],
) -> bool {
    let mut names = Vec::new();
    for h in handlers {
        bound_names(h, &mut names);
    }
    for (j, s) in stmts.iter().enumerate() {
        if j != try_index {
            bound_names(s, &mut names);
        }
    }
    if names.is_empty() {
        return false;
    }
    let Some(body) = try_stmt.field("body") else {
        return false;
    };
    same_scope_descendants(&body)
        .iter()
        .any(|n| n.kind() == "identifier" && names.iter().any(|x| *x == n.text()))
}

/// Does the try body ask a person (`input()`, `prompt()`, `getpass()`)? Then each attempt is new input.
fn interactive(try_stmt: &PyNode<'_>) -> bool {
    try_stmt.field("body").is_some_and(|b| {
        same_scope_descendants(&b).iter().any(|n| {
            n.kind() == "call"
                && callee_tail(n).is_some_and(|t| {
                    matches!(
                        t.as_str(),
                        "input" | "prompt" | "getpass" | "ask" | "confirm"
                    )
                })
        })
    })
}

/// The first call of the try body, to name what is retried.
fn retried_call(try_stmt: &PyNode<'_>) -> Option<String> {
    let body = try_stmt.field("body")?;
    same_scope_descendants(&body)
        .into_iter()
        .find(|n| n.kind() == "call")
        .and_then(|c| callee(&c))
}

fn is_always_true(cond: &str) -> bool {
    matches!(cond.trim(), "True" | "1" | "(True)")
}

impl Check for RetryLoopUnbounded {
    fn id(&self) -> &'static str {
        "retry-loop-unbounded"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["while"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for w in ctx.of_kind(root, "while_statement").iter() {
            if !w
                .field("condition")
                .is_some_and(|c| is_always_true(&c.text()))
            {
                continue;
            }
            if w.field("alternative").is_some() {
                continue;
            }
            let Some(body) = w.field("body") else {
                continue;
            };
            let stmts = statements(&body);
            for (i, t) in stmts.iter().enumerate() {
                if t.kind() != "try_statement" || !exits_on_success(t) {
                    continue;
                }
                let handlers: Vec<PyNode<'_>> = t
                    .children()
                    .filter(|c| c.kind() == "except_clause")
                    .collect();
                let Some(swallow) = handlers.iter().find(|h| !can_leave_loop(h)) else {
                    continue;
                };
                // A `finally:` that can leave, or any other statement of the loop that can, bounds it.
                if t.children()
                    .any(|c| c.kind() == "finally_clause" && can_leave_loop(&c))
                {
                    continue;
                }
                if stmts
                    .iter()
                    .enumerate()
                    .any(|(j, s)| j != i && can_leave_loop(s))
                {
                    continue;
                }
                if pauses(w)
                    || catches_only_timeouts(swallow)
                    || handler_waits_or_delegates(swallow)
                    || interactive(t)
                    || attempt_changes(t, &stmts, i, &handlers)
                {
                    continue;
                }
                let exc = swallow
                    .field("value")
                    .map(|v| {
                        let t: String = v.text().split_whitespace().collect::<Vec<_>>().join(" ");
                        format!("`{t}`")
                    })
                    .unwrap_or_else(|| "any exception".to_string());
                let what = retried_call(t)
                    .map(|c| format!("`{c}(…)`"))
                    .unwrap_or_else(|| "the `try` body".to_string());
                out.push(CheckMatch {
                    fix: None,
                    range: w.range().start..swallow.range().end,
                    message: Some(format!(
                        "This `while True` loop retries {what} after {exc} with no attempt limit and no sleep/backoff: \
                         while the dependency keeps failing it spins at full speed, hammering it, and never returns"
                    )),
                });
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn count(src: &str) -> usize {
        let doc = Lang::Python.ast_grep(src);
        let mut out = Vec::new();
        RetryLoopUnbounded.run(&doc.root(), &FileContext::detached(), &mut out);
        out.len()
    }

    #[test]
    fn nested_loop_break_does_not_bound_the_outer_loop() {
        let src = "def f():\n    while True:\n        try:\n            return g()\n        except E:\n            for x in y:\n                break\n";
        assert_eq!(count(src), 1);
    }

    #[test]
    fn conditional_raise_bounds_it() {
        let src = "def f():\n    n = 0\n    while True:\n        try:\n            return g()\n        except E:\n            n += 1\n            if n > 3:\n                raise\n";
        assert_eq!(count(src), 0);
    }

    #[test]
    fn counter_check_outside_try_bounds_it() {
        let src = "def f():\n    n = 0\n    while True:\n        n += 1\n        if n > 3:\n            break\n        try:\n            return g()\n        except E:\n            pass\n";
        assert_eq!(count(src), 0);
    }

    #[test]
    fn a_changing_attempt_is_a_search_not_a_retry() {
        let src = "def f(conn, u):\n    email = u\n    n = 1\n    while True:\n        try:\n            conn.execute(q, {'e': email})\n            break\n        except IntegrityError:\n            email = f'{u}_{n}'\n            n += 1\n";
        assert_eq!(count(src), 0);
        let prompt = "async def f(client):\n    while True:\n        name = prompt('name')\n        try:\n            await client.create(name=name)\n            break\n        except Exists:\n            print('taken')\n";
        assert_eq!(count(prompt), 0);
    }

    #[test]
    fn timeouts_are_polls() {
        let src = "def f(fut):\n    while True:\n        try:\n            return fut.result(timeout=1)\n        except concurrent.futures.TimeoutError:\n            check()\n";
        assert_eq!(count(src), 0);
    }
}
