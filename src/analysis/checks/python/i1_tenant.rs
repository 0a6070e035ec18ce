//! I1: tenant data isolation — every read and write of a tenant's data is scoped to that tenant.
//!
//! - `tenant-query-ignores-tenant` / `tenant-query-unscoped`: a query on a model that this file declares with a
//!   tenant column (`app_id`, `tenant_id`, `org_id`, `organization_id`, `workspace_id`), with no filter on that
//!   column in the statement and no check of it anywhere in the function. The first reports functions that are
//!   handed the tenant (an `app_id` parameter) and do not use it for the query: the classic cross-tenant read.
//! - `cache-key-without-tenant`: a Redis/cache key built from request data in a function that receives the
//!   tenant, but without the tenant in the key: two tenants share the entry.
//! - `vector-collection-not-scoped`: a Qdrant call on a fixed collection name in a module that handles several
//!   apps, with no tenant filter: every app's vectors in one collection, searched unfiltered.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::scopes::{OwnNodes, enclosing_functions, own_nodes};
use crate::analysis::semantic::python::syntax::{
    callee, function_name, has_error, keyword_arg, param_names, plain_string,
};
use crate::analysis::semantic::python::text::{Cut, shorten};
use crate::analysis::semantic::tenancy::{
    MODEL_FILE_GLOBS, StatementKind, TENANT_SCOPE_COLUMNS as TENANT_COLUMNS, TenantModels,
    globally_scoped, tenant_in_view,
};
use std::collections::{HashMap, HashSet};

/// Models declared in this file with a tenant column ([`TENANT_COLUMNS`] or the repository configuration's), read
/// by the semantic model's one definition of a tenant-scoped model.
/// Built once per file for both tenant-query checks (`ctx.memo`).
fn tenant_models(root: &PyNode<'_>, extra: &[String]) -> FileTenantModels {
    let text = root.text();
    FileTenantModels(TenantModels::build_with([text.as_ref()], |c| {
        TENANT_COLUMNS.contains(&c) || extra.iter().any(|e| e == c)
    }))
}

/// The file's own tenant-scoped models (a distinct type: the per-file memo is keyed by type).
struct FileTenantModels(TenantModels);

/// If this call starts a query on a model (`select(M)`, `select(M.x)`, `db.query(M)`, `db.get(M, id)`,
/// `update(M)`, `delete(M)`), the model's name. Import aliases are undone (`from sqlalchemy import select as
/// sa_select`).
fn queried_model(call: &PyNode<'_>, imports: &Imports, models: &TenantModels) -> Option<String> {
    let f = imports.callee(call)?;
    let last = f.rsplit('.').next().unwrap_or(&f);
    let args = call.field("arguments")?;
    let positional: Vec<PyNode<'_>> = args
        .children()
        .filter(|a| a.is_named() && a.kind() != "keyword_argument")
        .collect();
    let model_of = |n: &PyNode<'_>| -> Option<String> {
        let t = match n.kind().as_ref() {
            "identifier" => n.text().to_string(),
            "attribute" => n
                .field("object")
                .filter(|o| o.kind() == "identifier")?
                .text()
                .to_string(),
            _ => return None,
        };
        models.contains(&t).then_some(t)
    };
    match last {
        "select" | "update" | "delete"
            if matches!(f.as_str(), "select" | "update" | "delete")
                || f.starts_with("sa.")
                || f.starts_with("sqlalchemy.")
                || f.starts_with("sqlmodel.") =>
        {
            positional.iter().find_map(model_of)
        }
        "query" if f.contains('.') => positional.first().and_then(model_of),
        "get" if f.contains('.') && positional.len() >= 2 => {
            let first = positional.first()?;
            (first.kind() == "identifier")
                .then(|| first.text().to_string())
                .filter(|t| models.contains(t))
        }
        _ => None,
    }
}

/// What a query call runs: `update(M)` / `delete(M)`, `db.query(M)….update(…)` / `.delete()`, else a SELECT.
fn statement_kind(call: &PyNode<'_>, top: &PyNode<'_>, imports: &Imports) -> StatementKind {
    let f = imports.callee(call).unwrap_or_default();
    match f.rsplit('.').next().unwrap_or(&f) {
        "update" => StatementKind::Update,
        "delete" => StatementKind::Delete,
        "query" => {
            let chain = top.text();
            if chain.contains(".delete(") {
                StatementKind::Delete
            } else if chain.contains(".update(") {
                StatementKind::Update
            } else {
                StatementKind::Select
            }
        }
        _ => StatementKind::Select,
    }
}

/// The top of the method chain a node is part of: `select(M).where(...).limit(1)` from `select(M)`.
fn chain_top<'r>(node: &PyNode<'r>) -> PyNode<'r> {
    let mut cur = node.clone();
    while let Some(p) = cur.parent() {
        let up = match p.kind().as_ref() {
            "attribute" => p.field("object").is_some_and(|o| o.range() == cur.range()),
            "call" => p
                .field("function")
                .is_some_and(|f| f.range() == cur.range()),
            _ => false,
        };
        if !up {
            break;
        }
        cur = p;
    }
    cur
}

/// Does the code under `node` touch one of the tenant columns: `X.app_id`, `app_id=…` as a keyword, `"app_id"`?
fn touches_columns(node: &PyNode<'_>, cols: &[String]) -> bool {
    node.dfs().any(|n| match n.kind().as_ref() {
        "attribute" => n
            .field("attribute")
            .is_some_and(|a| cols.iter().any(|c| a.text() == c.as_str())),
        "keyword_argument" => n
            .field("name")
            .is_some_and(|a| cols.iter().any(|c| a.text() == c.as_str())),
        "string" => plain_string(&n).is_some_and(|s| cols.contains(&s)),
        // `**filters`/`*conditions`: filters we cannot see.
        "dictionary_splat" | "list_splat" => true,
        _ => false,
    })
}

fn tenant_query_matches<'r>(
    root: &PyNode<'r>,
    ctx: &FileContext<'r>,
    with_param: bool,
    out: &mut Vec<CheckMatch>,
) {
    let memo = ctx.memo(root, || tenant_models(root, &ctx.repo.tenant_columns));
    let models = &memo.0;
    // A function handed the tenant is judged on the repository's models too (model files anywhere); a query with
    // no tenant in view only on this file's own (which models the caller scoped is not known).
    let repo_models = ctx.repo.tenant_models();
    let cross_file = with_param && !repo_models.is_empty();
    if models.is_empty() && !cross_file {
        return;
    }
    let scope_column =
        |c: &str| TENANT_COLUMNS.contains(&c) || ctx.repo.tenant_columns.iter().any(|e| e == c);
    let imports = ctx.imports(root);
    let imports = &*imports;
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    for call in root.dfs().filter(|n| n.kind() == "call") {
        let own = queried_model(&call, imports, models).and_then(|m| {
            let cols = models.columns(&m)?.to_vec();
            Some((m, cols))
        });
        let found = own.or_else(|| {
            if !cross_file {
                return None;
            }
            let m = queried_model(&call, imports, repo_models)?;
            let cols: Vec<String> = repo_models
                .columns(&m)?
                .iter()
                .filter(|c| scope_column(c))
                .cloned()
                .collect();
            (!cols.is_empty()).then_some((m, cols))
        });
        let Some((model, cols)) = found else {
            continue;
        };
        let cols = &cols[..];
        let funcs = enclosing_functions(&call);
        let Some(func) = funcs.iter().find(|f| f.kind() == "function_definition") else {
            continue;
        };
        // The model's own classmethods and properties (`select(cls)`) are not this; nor is code the parser
        // could not read.
        if has_error(&call) {
            continue;
        }
        let top = chain_top(&call);
        // The query may be the argument of an outer call (`db.execute(select(M).where(...))`): one statement.
        if touches_columns(&top, cols) {
            continue;
        }
        // The session adds the tenant to every statement of this kind (a `do_orm_execute` listener).
        let criteria = ctx.repo.orm_criteria();
        if !criteria.is_empty()
            && globally_scoped(
                criteria,
                &[models, repo_models],
                &model,
                cols,
                statement_kind(&call, &top, imports),
            )
        {
            continue;
        }
        // Anywhere in the function (including a check after the fetch: `if doc.app_id != app_id`).
        if funcs.iter().any(|f| touches_columns(f, cols)) {
            continue;
        }
        // The statement may be built in steps: `stmt = select(M)` … `stmt = stmt.where(...)`; covered above.
        let tenant_param = funcs
            .iter()
            .flat_map(param_names)
            .find(|p| cols.contains(p) || is_tenant_object_param(p));
        if tenant_param.is_some() != with_param {
            continue;
        }
        // The statement uses the tenant it was given (`db.get(Domain, (tenant_id, key))`: a composite key).
        if let Some(p) = &tenant_param
            && top
                .dfs()
                .any(|n| n.kind() == "identifier" && n.text() == p.as_str())
        {
            continue;
        }
        let fname = function_name(func).unwrap_or_default();
        // The fetched row handed to a check together with the tenant (`ensure_same_app(doc, app_id)`).
        if let Some(p) = &tenant_param
            && let Some(var) = assigned_name(&call)
            && checked_together(func, &var, p)
        {
            continue;
        }
        // Look-ups that find the tenant rather than serve it: API keys, tokens, logins, webhooks.
        if tenant_param.is_none() && is_tenant_discovery(&fname) {
            continue;
        }
        if !seen.insert((call.range().start, call.range().end)) {
            continue;
        }
        let col = &cols[0];
        let q = shorten(&call.text(), Cut::EXPRESSION);
        let message = match tenant_param {
            Some(p) => format!(
                "`{q}` queries `{model}` (tenant column `{col}`) without filtering by the tenant: `{fname}` is given `{p}`, but this statement reaches the rows of every tenant"
            ),
            None => format!(
                "`{q}` queries `{model}` (tenant column `{col}`) with no `{col}` filter and no `{col}` check in `{fname}`: it reaches every tenant's rows unless the caller already scoped the id (medium confidence)"
            ),
        };
        out.push(CheckMatch {
            fix: None,
            range: call.range(),
            message: Some(message),
        });
    }
}

/// The local a query's result is assigned to (`doc = await db.get(Doc, id)`, `row = (await db.execute(q)).scalar()`).
fn assigned_name(call: &PyNode<'_>) -> Option<String> {
    for a in call.ancestors() {
        match a.kind().as_ref() {
            "assignment" => {
                let left = a.field("left")?;
                return (left.kind() == "identifier").then(|| left.text().to_string());
            }
            "expression_statement" | "block" | "function_definition" => return None,
            _ => {}
        }
    }
    None
}

/// Is some call in the function handed both `var` and the tenant parameter (an ownership check)?
fn checked_together(func: &PyNode<'_>, var: &str, tenant: &str) -> bool {
    func.dfs().filter(|n| n.kind() == "call").any(|c| {
        c.field("arguments").is_some_and(|a| {
            let ids: Vec<String> = a
                .dfs()
                .filter(|n| n.kind() == "identifier")
                .map(|n| n.text().to_string())
                .collect();
            ids.iter().any(|i| i == var) && ids.iter().any(|i| i == tenant)
        })
    })
}

/// Function names of look-ups that identify the tenant from a credential (they must search every tenant).
fn is_tenant_discovery(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "auth", "login", "api_key", "apikey", "token", "email", "verify", "webhook", "by_key",
        "signup", "register", "invite", "callback", "password", "session", "admin", "migrat",
        "cleanup", "purge", "all_",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A parameter that carries the tenant object (`app`, `tenant`, `organization`, `workspace`).
fn is_tenant_object_param(p: &str) -> bool {
    matches!(
        p,
        "app" | "tenant" | "org" | "organization" | "workspace" | "current_app" | "current_tenant"
    )
}

pub struct TenantQueryIgnoresTenant;

impl Check for TenantQueryIgnoresTenant {
    fn id(&self) -> &'static str {
        "tenant-query-ignores-tenant"
    }

    fn tokens(&self) -> &'static [&'static str] {
        TENANT_COLUMNS
    }

    fn needs(&self) -> &'static [&'static str] {
        MODEL_FILE_GLOBS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        tenant_query_matches(root, ctx, true, out);
    }
}

pub struct TenantQueryUnscoped;

impl Check for TenantQueryUnscoped {
    fn id(&self) -> &'static str {
        "tenant-query-unscoped"
    }

    fn tokens(&self) -> &'static [&'static str] {
        TENANT_COLUMNS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        tenant_query_matches(root, ctx, false, out);
    }
}

// ---------------------------------------------------------------------------------------------------------
// I1-cache-key-without-tenant
// ---------------------------------------------------------------------------------------------------------

const CACHE_METHODS: &[&str] = &[
    "get",
    "set",
    "setex",
    "setnx",
    "psetex",
    "getex",
    "getdel",
    "getset",
    "delete",
    "incr",
    "incrby",
    "decr",
    "decrby",
    "expire",
    "hget",
    "hset",
    "hgetall",
    "hdel",
    "hincrby",
    "hmset",
    "hmget",
    "sadd",
    "smembers",
    "srem",
    "sismember",
    "lpush",
    "rpush",
    "lrange",
    "ltrim",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zrem",
    "exists",
    "ttl",
    "json_get",
    "json_set",
];

/// Is the receiver a Redis client or a cache (`redis`, `self.redis`, `redis_client`, `cache`, `r`)?
fn is_cache_receiver(recv: &str) -> bool {
    let r = recv.to_ascii_lowercase();
    let last = r.rsplit('.').next().unwrap_or(&r);
    r.contains("redis")
        || r.contains("cache")
        || r.contains("valkey")
        || r.contains("memcache")
        || last == "r"
        || last == "rds"
        || last == "kv"
}

/// Words in an interpolation that mean the key is scoped to a tenant.
fn scoped_word(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "app",
        "tenant",
        "org",
        "workspace",
        "silo",
        "namespace",
        "prefix",
        "scope",
        "account",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// The f-string a key argument is built from: the argument itself or the local it was assigned from.
fn key_fstring<'r>(func: &PyNode<'r>, arg: &PyNode<'r>) -> Option<PyNode<'r>> {
    let is_fstring =
        |n: &PyNode<'_>| n.kind() == "string" && n.children().any(|c| c.kind() == "interpolation");
    if is_fstring(arg) {
        return Some(arg.clone());
    }
    if arg.kind() != "identifier" {
        return None;
    }
    let body = func.field("body")?;
    let mut found: Option<PyNode<'r>> = None;
    let mut nodes = own_nodes(&body, OwnNodes::Below);
    nodes.sort_by_key(|n| n.range().start);
    for n in nodes {
        if n.kind() == "assignment"
            && n.range().start < arg.range().start
            && n.field("left").is_some_and(|l| l.text() == arg.text())
        {
            // The last assignment before the use wins; anything that is not an f-string ends the trail.
            found = n.field("right").filter(|r| is_fstring(r));
            if found.is_none() {
                // Keep looking for a later assignment.
                continue;
            }
        }
    }
    found
}

/// Interpolations of random, unguessable values (an OAuth state, a nonce, a token hash): such keys cannot collide
/// across tenants.
fn unguessable(interp: &str) -> bool {
    let t = interp.to_ascii_lowercase();
    [
        "uuid", "nonce", "state", "token", "otp", "code", "hash", "digest", "random", "secret",
        "sha",
    ]
    .iter()
    .any(|w| t.contains(w))
}

/// Was the receiver built for the tenant in this function (`r = get_redis_client(tenant_id=tenant_id)`)?
fn receiver_scoped(func: &PyNode<'_>, recv: &str, tenant: &str) -> bool {
    let Some(body) = func.field("body") else {
        return false;
    };
    own_nodes(&body, OwnNodes::Below).iter().any(|n| {
        n.kind() == "assignment"
            && n.field("left").is_some_and(|l| l.text() == recv)
            && n.field("right").is_some_and(|r| {
                let t = r.text();
                t.contains(tenant) || scoped_word(&t)
            })
    })
}

pub struct CacheKeyWithoutTenant;

impl Check for CacheKeyWithoutTenant {
    fn id(&self) -> &'static str {
        "cache-key-without-tenant"
    }

    fn tokens(&self) -> &'static [&'static str] {
        TENANT_COLUMNS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let text = root.text().to_ascii_lowercase();
        if !["redis", "cache", "valkey", "memcache"]
            .iter()
            .any(|w| text.contains(w))
        {
            return;
        }
        for func in ctx.of_kind(root, "function_definition").iter() {
            // The tenant it is given, or reads from the caller (`auth.app_id`).
            let Some(tenant) = tenant_in_view(func, |c| TENANT_COLUMNS.contains(&c)) else {
                continue;
            };
            let tenant = &tenant;
            let Some(body) = func.field("body") else {
                continue;
            };
            let mut nodes = own_nodes(&body, OwnNodes::Below);
            nodes.sort_by_key(|n| n.range().start);
            for call in nodes.iter().filter(|n| n.kind() == "call") {
                let Some(f) = callee(call) else { continue };
                let Some((recv, method)) = f.rsplit_once('.') else {
                    continue;
                };
                if !CACHE_METHODS.contains(&method) || !is_cache_receiver(recv) {
                    continue;
                }
                let Some(args) = call.field("arguments") else {
                    continue;
                };
                let key = keyword_arg(call, "name")
                    .or_else(|| keyword_arg(call, "key"))
                    .or_else(|| {
                        args.children()
                            .find(|a| a.is_named() && a.kind() != "keyword_argument")
                    });
                let Some(key) = key else { continue };
                let Some(fs) = key_fstring(func, &key) else {
                    continue;
                };
                // A client built for the tenant (`r = get_redis_client(tenant_id=tenant_id)`) prefixes its keys.
                if receiver_scoped(func, recv, tenant) {
                    continue;
                }
                let interps: Vec<String> = fs
                    .children()
                    .filter(|c| c.kind() == "interpolation")
                    .map(|c| c.text().to_string())
                    .collect();
                if interps.is_empty()
                    || interps
                        .iter()
                        .any(|i| scoped_word(i) || i.contains(tenant.as_str()))
                    || interps.iter().all(|i| unguessable(i))
                {
                    continue;
                }
                // A literal prefix naming the tenant scope (`f"app:{...}"` with the tenant elsewhere) is not ours
                // to judge; the key must simply not contain the tenant.
                if fs.text().contains(tenant.as_str()) || has_error(call) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: call.range(),
                    message: Some(format!(
                        "`{}`: the key `{}` leaves out `{tenant}`, the tenant `{}` works for, so two tenants share this entry and one reads (or overwrites) the other's data",
                        shorten(&call.text(), Cut::EXPRESSION),
                        shorten(&fs.text(), Cut::EXPRESSION),
                        function_name(func).unwrap_or_default()
                    )),
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// I1-vector-collection-not-scoped
// ---------------------------------------------------------------------------------------------------------

const QDRANT_METHODS: &[&str] = &[
    "search",
    "query_points",
    "upsert",
    "delete",
    "scroll",
    "retrieve",
    "count",
    "query",
    "search_batch",
    "query_batch_points",
    "set_payload",
    "overwrite_payload",
    "delete_payload",
    "update_vectors",
    "recommend",
    "discover",
    "search_groups",
    "query_points_groups",
    "upload_points",
    "upload_collection",
    "add",
    "query_batch",
];

/// Module-level names bound to a plain string: `COLLECTION = "documents"`.
fn module_strings(root: &PyNode<'_>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for stmt in root
        .children()
        .filter(|c| c.kind() == "expression_statement")
    {
        for a in stmt.children().filter(|c| c.kind() == "assignment") {
            if let (Some(l), Some(r)) = (a.field("left"), a.field("right"))
                && l.kind() == "identifier"
                && let Some(s) = plain_string(&r)
            {
                out.insert(l.text().to_string(), s);
            }
        }
    }
    out
}

/// Does the module handle several tenants (mentions a tenant column or a silo)?
fn module_is_multi_tenant(text: &str) -> bool {
    TENANT_COLUMNS.iter().any(|c| text.contains(c)) || text.contains("silo")
}

pub struct VectorCollectionNotScoped;

impl Check for VectorCollectionNotScoped {
    fn id(&self) -> &'static str {
        "vector-collection-not-scoped"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["collection_name"]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let text = root.text();
        if !module_is_multi_tenant(&text) || !text.contains("qdrant") && !text.contains("Qdrant") {
            return;
        }
        let consts = module_strings(root);
        let imports = ctx.imports(root);
        for call in ctx.of_kind(root, "call").iter() {
            let Some(f) = imports.callee(call) else {
                continue;
            };
            let last = f.rsplit('.').next().unwrap_or(&f);
            let is_store = matches!(
                last,
                "QdrantVectorStore"
                    | "Qdrant"
                    | "from_documents"
                    | "from_texts"
                    | "from_existing_collection"
                    | "afrom_documents"
                    | "afrom_texts"
            ) && (f.contains("Qdrant") || last.starts_with("Qdrant"));
            let is_client_call = f.contains('.') && QDRANT_METHODS.contains(&last);
            if !(is_store || is_client_call) {
                continue;
            }
            let Some(value) = keyword_arg(call, "collection_name") else {
                continue;
            };
            let name = match value.kind().as_ref() {
                "string" => plain_string(&value),
                "identifier" => consts.get(value.text().as_ref()).cloned(),
                _ => None,
            };
            let Some(name) = name else { continue };
            if scoped_word(&name) || has_error(call) {
                continue;
            }
            // A tenant filter on the call (payload-based multitenancy) or tenant handling in the function.
            let filtered = [
                "query_filter",
                "filter",
                "scroll_filter",
                "points_selector",
                "count_filter",
            ]
            .iter()
            .filter_map(|k| keyword_arg(call, k))
            .any(|v| {
                let t = v.text().to_ascii_lowercase();
                TENANT_COLUMNS.iter().any(|c| t.contains(c))
                    || scoped_word(&t)
                    || t.contains("group_id")
            });
            if filtered {
                continue;
            }
            let funcs = enclosing_functions(call);
            if funcs.iter().any(|fun| {
                let t = fun.text();
                TENANT_COLUMNS.iter().any(|c| t.contains(c))
                    || t.contains("silo")
                    || t.contains("group_id")
            }) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "`{}` uses the fixed collection `\"{name}\"` in a module that serves several apps, with no tenant filter: every app's vectors share it and this call reaches all of them (use `silo_{{id}}`-style collections or a tenant payload filter)",
                    shorten(&call.text(), Cut::EXPRESSION)
                )),
            });
        }
    }
}
