//! I2: resource isolation — no tenant may exhaust what the others share.
//!
//! - `public-router-without-rate-limit`: an `APIRouter(prefix="/public…")` (or `/mcp/v1`, or an
//!   `include_router(…, prefix="/public…")`) with no rate-limit dependency on it, no limiter anywhere in the file,
//!   and no rate-limiting middleware the application applies to every route.
//! - `upload-read-without-size-limit`: a handler that reads a whole `UploadFile` into memory (`await file.read()`,
//!   `file.file.read()`) with no size check anywhere in the handler.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::is_route_handler;
use crate::analysis::semantic::python::scopes::{OwnNodes, own_nodes};
use crate::analysis::semantic::python::syntax::{
    callee, decorators, function_name, has_error, has_kwargs_splat, keyword_arg, plain_string,
};
use crate::analysis::semantic::ratelimit::APP_FILE_GLOBS;

/// Words that show a rate limit or quota is applied.
fn mentions_rate_limit(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "ratelimit",
        "rate_limit",
        "rate-limit",
        "limiter",
        "throttl",
        "quota",
        "slowapi",
        "usage_limit",
        "request_limit",
        "check_limit",
        "enforce_limit",
        "limits",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Is this URL prefix a public or MCP API (`/public`, `/public/v1`, `/api/public/v1`, `/v1/public`, `/mcp/v1`)?
fn is_public_prefix(prefix: &str, file_serves_mcp: bool) -> bool {
    let segs: Vec<&str> = prefix.split('/').filter(|s| !s.is_empty()).collect();
    let is_version =
        |s: &str| s.len() >= 2 && s.starts_with('v') && s[1..].chars().all(|c| c.is_ascii_digit());
    // Skip leading `api` and version segments.
    let mut i = 0;
    while i < segs.len() && (segs[i] == "api" || is_version(segs[i])) {
        i += 1;
    }
    match segs.get(i) {
        Some(&"public") => true,
        Some(&"mcp") => segs.get(i + 1).is_some_and(|s| is_version(s)) || file_serves_mcp,
        _ => false,
    }
}

/// Does the file implement an MCP server (rather than manage MCP clients)?
fn serves_mcp(text: &str) -> bool {
    text.contains("FastMCP")
        || text.contains("fastapi_mcp")
        || text.contains("from mcp.server")
        || text.contains("import mcp.server")
        || text.contains("FastApiMCP")
}

pub struct PublicRouterWithoutRateLimit;

impl Check for PublicRouterWithoutRateLimit {
    fn id(&self) -> &'static str {
        "public-router-without-rate-limit"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["/public", "/mcp"]
    }

    fn needs(&self) -> &'static [&'static str] {
        APP_FILE_GLOBS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let text = root.text();
        // A limiter in the file, or one the application applies to every route.
        if mentions_rate_limit(&text) || ctx.repo.app_wide_rate_limit() {
            return;
        }
        let mcp = serves_mcp(&text);
        let imports = ctx.imports(root);
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = imports.callee(call) else {
                continue;
            };
            let last = f.rsplit('.').next().unwrap_or(&f);
            if !matches!(last, "APIRouter" | "include_router") {
                continue;
            }
            let Some(prefix_node) = keyword_arg(call, "prefix") else {
                continue;
            };
            let Some(prefix) = plain_string(&prefix_node) else {
                continue;
            };
            if !is_public_prefix(&prefix, mcp) || has_error(call) || has_kwargs_splat(call) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{last}(prefix=\"{prefix}\")` exposes a public API with no rate-limit dependency on it and no limiter in this file: one caller (or one app's users) can exhaust the workers and upstream quotas for every tenant"
                )),
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// I2-upload-read-without-size-limit
// ---------------------------------------------------------------------------------------------------------

/// Is this annotation an `UploadFile` (or a list/optional/Annotated of it)? Returns (is upload, is a list).
fn upload_annotation(ty: &str) -> Option<bool> {
    let t: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    if !t.contains("UploadFile") {
        return None;
    }
    let list = t.starts_with("list[")
        || t.starts_with("List[")
        || t.starts_with("typing.List[")
        || t.starts_with("Sequence[")
        || t.contains("[list[")
        || t.contains("[List[");
    Some(list)
}

/// Text in a handler that shows the upload's size is bounded.
fn mentions_size_check(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "size",
        "length",
        "max_",
        "limit",
        "too_large",
        "too large",
        "413",
        "entity_too_large",
        "chunk",
        "spooled",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Does code bound an upload's size: a comparison that mentions a size or a length (`if len(data) > MAX_BYTES`,
/// `file.size > limit`), a call or keyword whose name says it limits or chunks (`validate_file_size(f)`,
/// `read_chunks(f)`, `max_size=…`)? A size that is only logged (`logger.info(f"size {len(data)}")`) or written in
/// a string is no bound.
fn bounds_size(body: &PyNode<'_>) -> bool {
    body.dfs().any(|n| match n.kind().as_ref() {
        "comparison_operator" => {
            let t = n.text();
            t.contains("len(") || mentions_size_check(&t)
        }
        "call" => {
            let callee = callee(&n).unwrap_or_default().to_ascii_lowercase();
            let logging = ["log", "print", "warn", "info", "debug", "error"]
                .iter()
                .any(|w| callee.contains(w));
            !logging && mentions_size_check(&callee)
        }
        "keyword_argument" => n
            .field("name")
            .is_some_and(|k| mentions_size_check(&k.text())),
        "identifier" => {
            let t = n.text().to_ascii_lowercase();
            t.contains("spooled") || t.contains("chunk")
        }
        _ => false,
    })
}

/// Does the handler require an administrator (a trusted caller, not a tenant's user)?
fn admin_only(func: &PyNode<'_>) -> bool {
    let params = func
        .field("parameters")
        .map(|p| p.text().to_ascii_lowercase())
        .unwrap_or_default();
    let decos: String = decorators(func)
        .iter()
        .map(|d| d.text().to_ascii_lowercase())
        .collect();
    [
        "admin",
        "superuser",
        "permission.",
        "require_permission",
        "staff",
    ]
    .iter()
    .any(|w| params.contains(w) || decos.contains(w))
}

fn upload_reads<'r>(
    ctx: &FileContext<'r>,
    root: &PyNode<'r>,
    handlers: bool,
    out: &mut Vec<CheckMatch>,
) {
    for func in ctx.of_kind(root, "function_definition").iter() {
        if is_route_handler(func) != handlers || admin_only(func) {
            continue;
        }
        let Some(params) = func.field("parameters") else {
            continue;
        };
        // Upload parameters (name, is-a-list), not those validated by a dependency.
        let mut uploads: Vec<(String, bool)> = Vec::new();
        for p in params.children() {
            if !matches!(
                p.kind().as_ref(),
                "typed_parameter" | "typed_default_parameter"
            ) {
                continue;
            }
            let Some(ty) = p.field("type") else { continue };
            let Some(list) = upload_annotation(&ty.text()) else {
                continue;
            };
            if p.field("value")
                .is_some_and(|v| v.text().starts_with("Depends"))
                || ty.text().contains("Depends(")
            {
                continue;
            }
            let name = p
                .field("name")
                .or_else(|| p.children().find(|c| c.kind() == "identifier"));
            if let Some(n) = name {
                uploads.push((n.text().to_string(), list));
            }
        }
        if uploads.is_empty() {
            continue;
        }
        let Some(body) = func.field("body") else {
            continue;
        };
        // Size evidence anywhere in the handler (including nested helpers): skip it.
        if bounds_size(&body) {
            continue;
        }
        // Loop variables over list-of-uploads parameters are uploads too.
        let nodes = own_nodes(&body, OwnNodes::Below);
        let mut names: Vec<String> = uploads.iter().map(|(n, _)| n.clone()).collect();
        for n in &nodes {
            if matches!(n.kind().as_ref(), "for_statement" | "for_in_clause")
                && let (Some(l), Some(r)) = (n.field("left"), n.field("right"))
                && l.kind() == "identifier"
                && uploads
                    .iter()
                    .any(|(u, list)| *list && r.text() == u.as_str())
            {
                names.push(l.text().to_string());
            }
        }
        let mut sorted = nodes;
        sorted.sort_by_key(|n| n.range().start);
        for n in sorted.iter().filter(|n| n.kind() == "call") {
            let Some(f) = callee(n) else { continue };
            let Some(obj) = f.strip_suffix(".read") else {
                continue;
            };
            let obj = obj.strip_suffix(".file").unwrap_or(obj);
            if !names.iter().any(|u| u == obj) {
                continue;
            }
            let no_args = n
                .field("arguments")
                .is_some_and(|a| a.children().all(|c| !c.is_named()));
            if !no_args || has_error(n) {
                continue;
            }
            let fname = function_name(func).unwrap_or_default();
            let message = if handlers {
                format!(
                    "`{f}()` in `{fname}` reads the whole upload into memory with no size limit: one large file (or a few concurrent ones) can exhaust the worker's memory for every tenant"
                )
            } else {
                format!(
                    "`{f}()` in `{fname}` reads a whole `UploadFile` into memory and nothing here bounds its size (medium confidence: the calling handler may check it)"
                )
            };
            out.push(CheckMatch {
                fix: None,
                range: n.range(),
                message: Some(message),
            });
            break;
        }
    }
}

pub struct UploadReadWithoutSizeLimit;

impl Check for UploadReadWithoutSizeLimit {
    fn id(&self) -> &'static str {
        "upload-read-without-size-limit"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["UploadFile"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        upload_reads(ctx, root, true, out);
    }
}

pub struct UploadReadInHelper;

impl Check for UploadReadInHelper {
    fn id(&self) -> &'static str {
        "upload-read-in-helper"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["UploadFile"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        upload_reads(ctx, root, false, out);
    }
}
