//! F5: partial failure in batches.
//!
//! * `f5-item-loop-no-try`: a loop over files / URLs / documents / chunks / pages whose body does I/O that can
//!   raise (an awaited client call, `open`, `requests`, parsing, a per-item commit, a vector upsert) with no
//!   `try` around it inside the loop: the first bad item aborts the rest of the batch.
//! * `f5-swallowed-exception`: `except Exception: pass` / `continue` (or a bare `except:`) that drops a failure
//!   without logging or recording it.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::scopes::{in_main_guard, is_module_level};
use crate::analysis::semantic::python::syntax::{callee, has_error};
use crate::analysis::semantic::python::text::words;

/// Words that name the items of a batch (singular: loop targets; plural: iterables).
const ITEM_WORDS: &[&str] = &[
    "file",
    "files",
    "url",
    "urls",
    "doc",
    "docs",
    "document",
    "documents",
    "chunk",
    "chunks",
    "page",
    "pages",
    "attachment",
    "attachments",
    "upload",
    "uploads",
    "link",
    "links",
];

const PLURAL_ITEM_WORDS: &[&str] = &[
    "files",
    "urls",
    "docs",
    "documents",
    "chunks",
    "pages",
    "attachments",
    "uploads",
    "links",
];

fn has_word(ident: &str, set: &[&str]) -> bool {
    words(ident).iter().any(|w| set.contains(&w.as_str()))
}

/// The last name of a dotted callee: `self.client.upsert` → `upsert`.
fn last_name(callee: &str) -> &str {
    callee.rsplit('.').next().unwrap_or(callee)
}

/// Identifiers bound by a `for` target (`doc`, `i, doc`, `(name, file)`).
fn target_names(left: &PyNode<'_>) -> Vec<String> {
    if left.kind() == "identifier" {
        return vec![left.text().to_string()];
    }
    left.dfs()
        .filter(|n| n.kind() == "identifier")
        .map(|n| n.text().to_string())
        .collect()
}

/// The collection a loop walks, seen through `enumerate(…)`, `zip(…)`, `sorted(…)`, `tqdm(…)` and the like;
/// `None` when it is a counter (`range`), a literal, or a stream of chunks rather than a batch of items.
fn iterable_name(right: &PyNode<'_>) -> Option<String> {
    match right.kind().as_ref() {
        "identifier" => Some(right.text().to_string()),
        "attribute" => right.field("attribute").map(|a| a.text().to_string()),
        "call" => {
            let f = callee(right)?;
            let name = last_name(&f).to_string();
            if matches!(
                name.as_str(),
                "enumerate" | "zip" | "sorted" | "reversed" | "list" | "tqdm" | "tuple" | "set"
            ) {
                let first = right
                    .field("arguments")?
                    .children()
                    .find(|a| a.is_named() && a.kind() != "comment")?;
                return iterable_name(&first);
            }
            if name == "range" {
                return None;
            }
            let lower = name.to_ascii_lowercase();
            // `resp.iter_bytes()`, `llm.astream(…)`, `f.read(…)`: chunks of one stream, not items of a batch.
            if lower.contains("iter") || lower.contains("stream") || lower.starts_with("read") {
                return None;
            }
            if name == "items" || name == "values" || name == "keys" {
                // `files.items()`: the dict's name says what it holds.
                let obj = right.field("function")?.field("object")?;
                return iterable_name(&obj);
            }
            Some(name)
        }
        _ => None,
    }
}

/// Does this loop walk a batch of files / URLs / documents / chunks / pages?
fn is_item_loop(for_stmt: &PyNode<'_>) -> Option<String> {
    let left = for_stmt.field("left")?;
    let right = for_stmt.field("right")?;
    // Literal lists and tuples are a fixed handful of things chosen by the programmer.
    if matches!(
        right.kind().as_ref(),
        "list" | "tuple" | "set" | "string" | "list_comprehension"
    ) {
        return None;
    }
    let iter = iterable_name(&right);
    // A stream of chunks or a counter: not a batch, whatever the target is called.
    if right.kind() == "call" && iter.is_none() {
        return None;
    }
    let names = target_names(&left);
    const NOT_ITEMS: &[&str] = &[
        "line", "lines", "type", "types", "size", "count", "num", "number", "idx", "index", "key",
        "keys", "token", "tokens",
    ];
    if let Some(t) = names
        .iter()
        .rev()
        .find(|n| has_word(n, ITEM_WORDS) && !has_word(n, NOT_ITEMS))
    {
        return Some(t.clone());
    }
    let iter = iter?;
    if has_word(&iter, PLURAL_ITEM_WORDS)
        && !has_word(&iter, &["ids", "names", "paths", "count", "lines"])
    {
        return Some(iter);
    }
    None
}

/// Names of functions defined in this file whose body handles its own errors (a top-level `try`).
fn self_guarded_functions<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<String> {
    ctx.of_kind(root, "function_definition")
        .iter()
        .filter(|f| {
            f.field("body").is_some_and(|b| {
                b.children()
                    .filter(|s| s.is_named() && s.kind() != "comment")
                    .any(|s| s.kind() == "try_statement")
            })
        })
        .filter_map(|f| f.field("name").map(|n| n.text().to_string()))
        .collect()
}

/// Verbs of per-item work against something outside the process (by any word of the callee's name).
const EXTERNAL_WORK: &[&str] = &[
    "ingest",
    "index",
    "vectorize",
    "vectorise",
    "embed",
    "crawl",
    "scrape",
    "upload",
    "download",
    "fetch",
    "extract",
    "parse",
    "convert",
    "transcribe",
    "ocr",
    "import",
    "sync",
    "publish",
    "notify",
    "webhook",
    "summarize",
    "summarise",
    "process",
    "partition",
];

/// Words in a function's name that say it runs a batch job.
const BATCH_CONTEXT: &[&str] = &[
    "ingest",
    "ingestion",
    "index",
    "indexing",
    "vectorize",
    "vectorise",
    "embed",
    "crawl",
    "scrape",
    "upload",
    "uploads",
    "import",
    "sync",
    "load",
    "loader",
    "process",
    "batch",
    "bulk",
    "extract",
    "parse",
    "convert",
    "publish",
    "notify",
    "download",
    "fetch",
    "reindex",
];

const HTTP_VERBS: &[&str] = &[
    "get", "post", "put", "patch", "delete", "head", "request", "send", "fetch",
];

/// Vector-store and embedding calls whose failure is per item.
const VECTOR_CALLS: &[&str] = &[
    "upsert",
    "add_documents",
    "aadd_documents",
    "add_texts",
    "aadd_texts",
    "upload_points",
    "upload_collection",
    "add_embeddings",
    "embed_documents",
    "aembed_documents",
    "embed_query",
    "aembed_query",
    "from_documents",
    "afrom_documents",
];

/// If this call is per-item work that can fail on its own (HTTP, vector store, embeddings, loaders and
/// parsers of the item, or a helper whose name says it ingests/crawls/uploads…), describe it.
/// `batch` says the enclosing function is a batch job, which makes plain file reads and per-item commits count.
fn external_work(call: &PyNode<'_>, awaited: bool, batch: bool) -> Option<String> {
    let f = callee(call)?;
    let name = last_name(&f);
    let receiver = f.rsplit_once('.').map(|(r, _)| r).unwrap_or("");
    let recv_words = words(receiver.rsplit('.').next().unwrap_or(""));
    let shown = if awaited {
        format!("await {f}(…)")
    } else {
        format!("{f}(…)")
    };
    let http_module = (receiver == "requests" || receiver == "httpx")
        && (HTTP_VERBS.contains(&name) || name == "request");
    let http_client = awaited
        && HTTP_VERBS.contains(&name)
        && recv_words.iter().any(|w| {
            matches!(
                w.as_str(),
                "client" | "http" | "httpx" | "aiohttp" | "transport"
            )
        })
        && !recv_words
            .iter()
            .any(|w| w == "db" || w == "redis" || w == "cache");
    let loader = matches!(name, "load" | "aload" | "lazy_load" | "load_and_split")
        && recv_words.iter().any(|w| w == "loader");
    let llm = matches!(name, "ainvoke" | "invoke" | "agenerate" | "apredict")
        && recv_words.iter().any(|w| {
            matches!(
                w.as_str(),
                "llm" | "chain" | "model" | "chat" | "summarizer"
            )
        });
    // A helper is trusted to do I/O only when it is awaited: sync `extract_*`/`parse_*`/`index_*` helpers are
    // as often pure functions (measured on real code).
    let named_work = awaited
        && words(name)
            .iter()
            .any(|w| EXTERNAL_WORK.contains(&w.as_str()))
        && !words(name).first().is_some_and(|w| {
            matches!(w.as_str(), "get" | "read" | "is" | "has" | "should" | "can")
        });
    let parse = matches!(
        f.as_str(),
        "json.load"
            | "json.loads"
            | "yaml.safe_load"
            | "yaml.load"
            | "ET.parse"
            | "etree.parse"
            | "ElementTree.parse"
            | "pypdf.PdfReader"
            | "PdfReader"
            | "fitz.open"
            | "docx.Document"
    );
    let commit = name == "commit"
        && call
            .field("arguments")
            .is_some_and(|a| a.children().all(|c| !c.is_named()));
    let hit = http_module
        || f.ends_with("urlopen")
        || http_client
        || VECTOR_CALLS.contains(&name)
        || loader
        || llm
        || named_work
        || (batch && (parse || commit));
    hit.then_some(shown)
}

/// If this node is per-item I/O that can raise, describe it.
fn io_description(node: &PyNode<'_>, guarded: &[String], batch: bool) -> Option<String> {
    let (call, awaited) = match node.kind().as_ref() {
        "await" => (node.children().find(|c| c.is_named())?, true),
        // Awaited calls are reported through their `await`.
        "call" if node.parent().is_none_or(|p| p.kind() != "await") => (node.clone(), false),
        _ => return None,
    };
    if call.kind() != "call" {
        return None;
    }
    let f = callee(&call)?;
    if guarded.iter().any(|g| g == last_name(&f)) {
        return None;
    }
    external_work(&call, awaited, batch)
}

/// Is the function around this node a batch job by its name (`ingest_files`, `crawl_site`, `sync_documents`)?
fn in_batch_function(node: &PyNode<'_>) -> bool {
    node.ancestors()
        .find(|a| a.kind() == "function_definition")
        .and_then(|f| f.field("name"))
        .is_some_and(|n| {
            words(&n.text())
                .iter()
                .any(|w| BATCH_CONTEXT.contains(&w.as_str()))
        })
}

/// The first unprotected I/O of a loop body: not inside a nested function, and not inside a `try` of the
/// loop body (that `try` is the per-item guard).
fn first_unprotected_io<'r>(
    body: &PyNode<'r>,
    guarded: &[String],
    batch: bool,
) -> Option<(PyNode<'r>, String)> {
    let mut stack: Vec<PyNode<'r>> = body.children().collect();
    stack.reverse();
    while let Some(node) = stack.pop() {
        let kind = node.kind();
        if matches!(
            kind.as_ref(),
            "function_definition" | "lambda" | "class_definition" | "try_statement"
        ) {
            continue;
        }
        // A nested loop of its own items is judged by itself.
        if kind == "for_statement" && is_item_loop(&node).is_some() {
            continue;
        }
        if let Some(desc) = io_description(&node, guarded, batch) {
            return Some((node, desc));
        }
        let mut kids: Vec<PyNode<'r>> = node.children().collect();
        kids.reverse();
        stack.extend(kids);
    }
    None
}

/// Is the loop already inside a per-item `try` of an enclosing loop (a failure of this inner loop is then
/// recorded for the outer item)? Stops at the enclosing function.
fn inside_outer_item_guard(for_stmt: &PyNode<'_>) -> bool {
    let mut in_try = false;
    for a in for_stmt.ancestors() {
        match a.kind().as_ref() {
            "function_definition" | "lambda" | "class_definition" => return false,
            "try_statement" => in_try = true,
            "for_statement" | "while_statement" if in_try => return true,
            _ => {}
        }
    }
    false
}

/// Does the loop body stop the batch on purpose (`raise`, `break`, `return`)? Then aborting is the design.
fn body_ends_batch(body: &PyNode<'_>) -> bool {
    body.dfs().any(|n| {
        matches!(
            n.kind().as_ref(),
            "raise_statement" | "return_statement" | "yield"
        ) && !n
            .ancestors()
            .take_while(|a| a.range() != body.range())
            .any(|a| matches!(a.kind().as_ref(), "function_definition" | "lambda"))
    })
}

pub struct ItemLoopNoTry;

impl Check for ItemLoopNoTry {
    fn id(&self) -> &'static str {
        "f5-item-loop-no-try"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["for "]
    }

    /// The item word is in the loop's target or iterable, on its `for` line (`is_item_loop`).
    fn requires_regex(&self) -> Option<&'static str> {
        Some(
            r"(?m)^[ \t]*(async[ \t]+)?for[ \t][^\n]*(?i:file|url|doc|chunk|page|attachment|upload|link)",
        )
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[
            // An item word in the loop target or iterable (`ITEM_WORDS`, `PLURAL_ITEM_WORDS`), in any case.
            &[
                "file",
                "File",
                "FILE",
                "url",
                "Url",
                "URL",
                "doc",
                "Doc",
                "DOC",
                "chunk",
                "Chunk",
                "CHUNK",
                "page",
                "Page",
                "PAGE",
                "ttachment",
                "TTACHMENT",
                "pload",
                "PLOAD",
                "link",
                "Link",
                "LINK",
            ],
            // External work in the body (`external_work`): awaited calls, HTTP modules, vector stores,
            // loaders, LLM calls, and the parsers and commits of batch jobs.
            &[
                "await",
                "requests",
                "httpx",
                "urlopen",
                "upsert",
                "add_documents",
                "add_texts",
                "upload_",
                "embed",
                "from_documents",
                "load",
                "invoke",
                "generate",
                "predict",
                "parse",
                "PdfReader",
                "fitz",
                "docx",
                "commit",
            ],
        ]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let mut guarded: Option<Vec<String>> = None;
        for node in ctx.of_kind(root, "for_statement").iter() {
            // `async for` walks a stream (LLM tokens, pages of a cursor): its failure is the caller's.
            if node.child(0).is_some_and(|c| c.kind() == "async") {
                continue;
            }
            let Some(item) = is_item_loop(node) else {
                continue;
            };
            if has_error(node) || inside_outer_item_guard(node) {
                continue;
            }
            let Some(body) = node.field("body") else {
                continue;
            };
            if body_ends_batch(&body) {
                continue;
            }
            let batch = in_batch_function(node);
            let guarded = guarded.get_or_insert_with(|| self_guarded_functions(ctx, root));
            let Some((io, desc)) = first_unprotected_io(&body, guarded, batch) else {
                continue;
            };
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(node) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: io.range(),
                message: Some(format!(
                    "`{desc}` runs once per `{item}` with no `try` inside the loop: the first item that fails aborts the rest of the batch and the failure is not recorded per item"
                )),
            });
        }
    }
}

/// The exception types an `except` clause catches, as written (`None`: a bare `except:`).
fn caught_types(clause: &PyNode<'_>) -> Option<Vec<String>> {
    let value = clause
        .children()
        .skip(1)
        .find(|c| c.is_named() && c.kind() != "block" && c.kind() != "comment")?;
    let value = if value.kind() == "as_pattern" {
        value.child(0)?
    } else {
        value
    };
    let names = match value.kind().as_ref() {
        "tuple" | "parenthesized_expression" => value
            .children()
            .filter(|c| c.is_named())
            .map(|c| c.text().to_string())
            .collect(),
        _ => vec![value.text().to_string()],
    };
    Some(names)
}

/// Calls that only tidy up (by any word of their name: `delete_block`, `close_session`, `clear_cache`);
/// failing to tidy up is routinely ignored.
fn cleanup_call(name: &str) -> bool {
    const TIDY: &[&str] = &[
        "close",
        "aclose",
        "cancel",
        "unlink",
        "remove",
        "rmtree",
        "rmdir",
        "kill",
        "terminate",
        "disconnect",
        "shutdown",
        "stop",
        "rollback",
        "release",
        "flush",
        "cleanup",
        "dispose",
        "join",
        "unregister",
        "detach",
        "discard",
        "delete",
        "clear",
        "evict",
        "invalidate",
        "purge",
        "signal",
        "killpg",
        "wait",
        "closed",
        "setsockopt",
        "set",
        "setattr",
        "delattr",
        "pop",
        "callback",
        "unsubscribe",
        "unlock",
        "expire",
    ];
    words(name).iter().any(|w| TIDY.contains(&w.as_str()))
}

/// Calls that persist something (by any word of their name), as opposed to reads with a fallback, messages
/// to a socket, or bookkeeping (config, caches, telemetry) that is fine to lose.
fn write_call(name: &str) -> bool {
    const WRITE: &[&str] = &[
        "add",
        "insert",
        "update",
        "upsert",
        "save",
        "commit",
        "create",
        "store",
        "index",
        "persist",
        "ingest",
        "vectorize",
        "embed",
        "upload",
        "enqueue",
        "record",
        "flush_to_db",
    ];
    const BOOKKEEPING: &[&str] = &[
        "config",
        "settings",
        "cache",
        "telemetry",
        "metric",
        "metrics",
        "analytics",
        "stats",
        "log",
        "logs",
        "trace",
        "span",
        "progress",
        "status_bar",
        "ui",
        "preferences",
        "prefs",
        "llm",
        "call",
    ];
    let ws = words(name);
    ws.iter().any(|w| WRITE.contains(&w.as_str()))
        && !ws.iter().any(|w| BOOKKEEPING.contains(&w.as_str()))
}

/// The first write-like call in a `try` body (nested functions excluded).
fn first_write(body: &PyNode<'_>) -> Option<String> {
    let mut stack: Vec<PyNode<'_>> = body.children().collect();
    stack.reverse();
    while let Some(node) = stack.pop() {
        if matches!(
            node.kind().as_ref(),
            "function_definition" | "lambda" | "class_definition"
        ) {
            continue;
        }
        if node.kind() == "call"
            && let Some(f) = callee(&node)
        {
            let name = last_name(&f);
            // `results.append(x)` and `seen.add(x)` on local collections are not writes anywhere.
            let local = matches!(name, "append" | "add" | "update" | "extend" | "insert")
                && node
                    .field("function")
                    .and_then(|f| f.field("object"))
                    .is_some_and(|o| {
                        o.kind() == "identifier"
                            && !o.text().contains("session")
                            && o.text() != "db"
                    });
            if write_call(name) && !cleanup_call(name) && !local {
                return Some(format!("{f}(…)"));
            }
        }
        let mut kids: Vec<PyNode<'_>> = node.children().collect();
        kids.reverse();
        stack.extend(kids);
    }
    None
}

/// Is the `try` body best-effort tidying (closing, deleting, cancelling), an optional import, or a
/// conversion attempt (`int(x)`, `float(x)`)?
fn try_body_is_best_effort(body: &PyNode<'_>) -> bool {
    let stmts: Vec<PyNode<'_>> = body
        .children()
        .filter(|s| s.is_named() && s.kind() != "comment")
        .collect();
    !stmts.is_empty()
        && stmts.iter().all(|s| match s.kind().as_ref() {
            "import_statement"
            | "import_from_statement"
            | "delete_statement"
            | "pass_statement" => true,
            "expression_statement" => {
                let e = s.child(0);
                let call = match e {
                    Some(e) if e.kind() == "await" => e.children().find(|c| c.is_named()),
                    other => other,
                };
                call.is_some_and(|c| {
                    c.kind() == "call" && callee(&c).is_some_and(|f| cleanup_call(last_name(&f)))
                })
            }
            _ => false,
        })
}

/// Functions whose job is tidying up or which run during interpreter shutdown.
fn in_cleanup_function(node: &PyNode<'_>) -> bool {
    node.ancestors()
        .filter(|a| a.kind() == "function_definition")
        .take(1)
        .any(|f| {
            let name = f
                .field("name")
                .map(|n| n.text().to_string())
                .unwrap_or_default();
            matches!(
                name.as_str(),
                "__del__"
                    | "__exit__"
                    | "__aexit__"
                    | "close"
                    | "aclose"
                    | "cleanup"
                    | "shutdown"
                    | "teardown"
                    | "dispose"
                    | "stop"
                    | "terminate"
            ) || words(&name).iter().any(|w| {
                matches!(
                    w.as_str(),
                    "cleanup"
                        | "close"
                        | "shutdown"
                        | "teardown"
                        | "dispose"
                        | "stop"
                        | "cancel"
                        | "kill"
                )
            })
        })
}

/// The item-loop variable of the nearest enclosing loop within the function, if that loop walks a batch.
fn enclosing_item_loop(node: &PyNode<'_>) -> Option<String> {
    node.ancestors()
        .take_while(|a| {
            !matches!(
                a.kind().as_ref(),
                "function_definition" | "lambda" | "class_definition"
            )
        })
        .find(|a| a.kind() == "for_statement")
        .filter(|f| f.child(0).is_none_or(|c| c.kind() != "async"))
        .and_then(|f| is_item_loop(&f))
}

/// Is the node inside a `finally:` block or another `except` handler (tidying up on an error path)?
fn in_error_path(node: &PyNode<'_>) -> bool {
    node.ancestors()
        .skip(1)
        .take_while(|a| !matches!(a.kind().as_ref(), "function_definition" | "lambda"))
        .any(|a| matches!(a.kind().as_ref(), "finally_clause" | "except_clause"))
}

pub struct SwallowedException;

impl Check for SwallowedException {
    fn id(&self) -> &'static str {
        "f5-swallowed-exception"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["except"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for clause in ctx.of_kind(root, "except_clause").iter() {
            let types = caught_types(clause);
            let broad = match &types {
                None => true,
                Some(list) => list.iter().any(|t| {
                    matches!(
                        t.as_str(),
                        "Exception" | "BaseException" | "builtins.Exception"
                    )
                }),
            };
            if !broad {
                continue;
            }
            let Some(block) = clause.children().find(|c| c.kind() == "block") else {
                continue;
            };
            let stmts: Vec<PyNode<'_>> = block
                .children()
                .filter(|s| s.is_named() && s.kind() != "comment")
                .collect();
            let silent = !stmts.is_empty()
                && stmts.iter().all(|s| {
                    matches!(s.kind().as_ref(), "pass_statement" | "continue_statement")
                        || (s.kind() == "expression_statement"
                            && s.child(0).is_some_and(|e| e.kind() == "ellipsis"))
                });
            if !silent {
                continue;
            }
            let Some(try_stmt) = clause.parent().filter(|p| p.kind() == "try_statement") else {
                continue;
            };
            let Some(try_body) = try_stmt.field("body") else {
                continue;
            };
            // A comment in the handler says the author chose to ignore it; module-level code is configuration
            // parsing; a `return` in the `try` is a "fall back to the default below" lookup.
            if clause.dfs().any(|c| c.kind() == "comment")
                || is_module_level(clause)
                || in_main_guard(clause)
                || try_body_is_best_effort(&try_body)
                || in_cleanup_function(clause)
                || in_error_path(&try_stmt)
                || try_body.dfs().any(|n| n.kind() == "return_statement")
            {
                continue;
            }
            // Only where a failure means lost work: an item of a batch, or I/O whose result is dropped.
            let item = enclosing_item_loop(clause);
            let io = first_write(&try_body);
            if item.is_none() && io.is_none() {
                continue;
            }
            let what = match &types {
                None => "except:".to_string(),
                Some(list) if list.len() == 1 => format!("except {}:", list[0]),
                Some(list) => format!("except ({}):", list.join(", ")),
            };
            let action = if stmts.iter().any(|s| s.kind() == "continue_statement") {
                "continue"
            } else {
                "pass"
            };
            let consequence = match (&item, &io) {
                (Some(item), _) => format!(
                    "a `{item}` that fails silently drops out of the batch and nobody can tell which one or why"
                ),
                (None, Some(io)) => {
                    format!("a failed `{io}` is lost without a log line or a recorded error")
                }
                (None, None) => String::new(),
            };
            // Code the parser could not make sense of yields no findings: precision first.
            if has_error(clause) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: clause.range(),
                message: Some(format!(
                    "`{what} {action}` swallows every error with no log or error record: {consequence}"
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_words() {
        assert_eq!(words("uploaded_files"), vec!["uploaded", "files"]);
        assert_eq!(words("docUrls"), vec!["doc", "urls"]);
        assert_eq!(words("URL"), vec!["url"]);
        assert!(has_word("file_path", ITEM_WORDS));
        assert!(!has_word("profile", ITEM_WORDS));
    }
}
