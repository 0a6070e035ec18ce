//! I1 `object-by-id-without-owner-check`: a route handler that knows who is calling (a current-user / auth
//! parameter) loads, updates or deletes a row of a tenant- or owner-scoped model by an id from the request, and never
//! compares the row's tenant/owner column with the caller — any signed-in user can read or change another tenant's
//! row by guessing its id (the "IDOR" of OWASP's API1: broken object level authorisation).
//!
//! Which models are scoped comes from [`crate::analysis::semantic::tenancy`] (model files anywhere in the
//! repository, columns inherited from mixins). Silent when the handler has no caller parameter (the route may be
//! protected by a router-level dependency we cannot see), when it names the tenant/owner column anywhere, when it
//! compares the loaded row with the caller, or when it hands the row, the id or the caller to a helper whose name says
//! it checks access (`check_…`, `verify_…`, `ensure_…`, `authorize…`, `…permission…`, `…access…`, `…owner…`).

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::loaders::{IdLoaders, is_id_name, ownership_file_globs};
use crate::analysis::semantic::python::roles::{
    ACCESS_CHECK_WORDS, ROUTE_DECORATOR_TOKENS, is_admin_handler, is_public_by_design,
    is_route_handler,
};
use crate::analysis::semantic::python::scopes::{locals_built_with, same_scope_descendants};
use crate::analysis::semantic::python::syntax::{
    callee, callee_tail, function_name, positional_arg,
};
use crate::analysis::semantic::python::text::has_word;
use crate::analysis::semantic::tenancy::{Owner, TENANT_COLUMNS, TenantModels, model_file_texts};

/// Is `column` compared with, or set to, one of the request's ids in `text` (`Resource.agent_id == agent_id`,
/// `filter_by(agent_id=agent_id)`)? Such a filter selects by the request, it does not scope to the caller.
fn column_takes_request_id(text: &str, column: &str, ids: &[&str]) -> bool {
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let word_at = |hay: &str, at: usize, len: usize| {
        let before = hay[..at].chars().next_back();
        let after = hay[at + len..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    ids.iter().any(|id| {
        [
            format!("{column}=={id}"),
            format!("{column}={id}"),
            format!("{id}=="),
        ]
        .iter()
        .any(|pat| {
            flat.match_indices(pat.as_str()).any(|(at, m)| {
                if m.ends_with("==") {
                    // `agent_id == Resource.agent_id`
                    let rest = &flat[at + m.len()..];
                    let operand: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
                        .collect();
                    word_at(&flat, at, id.len())
                        && (operand == column || operand.ends_with(&format!(".{column}")))
                } else {
                    word_at(&flat, at, column.len())
                        && word_at(&flat, at + m.len() - id.len(), id.len())
                }
            })
        })
    })
}

pub struct ObjectByIdWithoutOwnerCheck;

/// The file's route handlers (cheap to find first: most files that pass a token filter have none).
fn route_handlers<'r>(root: &PyNode<'r>, ctx: &FileContext<'r>) -> Vec<PyNode<'r>> {
    ctx.of_kind(root, "function_definition")
        .iter()
        .filter(|f| is_route_handler(f))
        .cloned()
        .collect()
}

/// A handler's name and its decorators' text, lower-case (`@router.get("/admin/…")`).
fn name_and_decorators(func: &PyNode<'_>) -> (String, String) {
    let decorated = func
        .parent()
        .map(|p| p.text().to_string())
        .unwrap_or_default();
    let head = decorated
        .split("def ")
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    (function_name(func).unwrap_or_default(), head)
}

/// Parameter names (lower-case substrings) that carry the caller's identity.
const IDENTITY_WORDS: &[&str] = &[
    "user",
    "principal",
    "account",
    "auth",
    "identity",
    "caller",
    "member",
    "claims",
    "token",
    "viewer",
];

struct Param {
    name: String,
    identity: bool,
    id: bool,
    /// The caller must be an administrator (`admin: User = Depends(get_admin)`, `Depends(current_superuser)`).
    admin: bool,
    /// A request body (`api_key_in: ApiKeyIn`): its id-named attributes are ids from the request.
    body: bool,
    /// The dependency it is resolved by, lower-case (`depends(require_workspace_member)`), when it is one.
    depends: Option<String>,
}

fn params(func: &PyNode<'_>) -> Vec<Param> {
    let Some(list) = func.field("parameters") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in list.children() {
        let (name, annotation, default) = match p.kind().as_ref() {
            "identifier" => (p.text().to_string(), String::new(), String::new()),
            "typed_parameter" => (
                p.children()
                    .find(|c| c.kind() == "identifier")
                    .map(|n| n.text().to_string())
                    .unwrap_or_default(),
                p.field("type")
                    .map(|t| t.text().to_string())
                    .unwrap_or_default(),
                String::new(),
            ),
            "default_parameter" | "typed_default_parameter" => (
                p.field("name")
                    .map(|n| n.text().to_string())
                    .unwrap_or_default(),
                p.field("type")
                    .map(|t| t.text().to_string())
                    .unwrap_or_default(),
                p.field("value")
                    .map(|v| v.text().to_string())
                    .unwrap_or_default(),
            ),
            _ => continue,
        };
        if name.is_empty() || name == "self" || name == "cls" {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        let dependency = default.contains("Depends(") || default.contains("Security(");
        let annotation_lower = annotation.to_ascii_lowercase();
        let default_lower = default.to_ascii_lowercase();
        let session_like = [
            "db",
            "session",
            "sess",
            "conn",
            "request",
            "background_tasks",
        ]
        .contains(&lower.as_str());
        let id_like = is_id_name(&name);
        // A request body (`user: UserUpdate`, `member: MemberIn`, `body: PresetDto`) is data, not the caller; a
        // transfer object a dependency resolves (`user: UserDto = Depends(current_user)`) may be the caller.
        let last = annotation.rsplit(['.', ' ', '|']).find(|w| !w.is_empty());
        let body_schema = last.is_some_and(|t| {
            [
                "Base", "In", "Create", "Update", "Schema", "Request", "Body", "Payload", "Input",
                "Data", "Patch",
            ]
            .iter()
            .any(|s| t.ends_with(s) && t.len() > s.len())
                || (!dependency
                    && ["Dto", "DTO"]
                        .iter()
                        .any(|s| t.ends_with(s) && t.len() > s.len()))
        });
        let identity = !session_like
            && !body_schema
            && (!id_like || dependency)
            && (IDENTITY_WORDS.iter().any(|w| lower.contains(w))
                || (annotation_lower.contains("user") && !annotation_lower.contains("create"))
                || (dependency
                    && [
                        "user",
                        "auth",
                        "token",
                        "principal",
                        "jwt",
                        "login",
                        "member",
                        // `ctx: ApiContext = Depends(get_context)`: an API context carries the caller.
                        "context",
                    ]
                    .iter()
                    .any(|w| default_lower.contains(w))));
        let id = !identity && !dependency && id_like;
        let admin = identity
            && ["admin", "superuser", "staff"].iter().any(|w| {
                lower.contains(w) || annotation_lower.contains(w) || default_lower.contains(w)
            });
        out.push(Param {
            name,
            identity,
            id,
            admin,
            body: body_schema && !dependency,
            depends: dependency.then_some(default_lower),
        });
    }
    out
}

/// A load, update or delete of a scoped model by a request id: (the node to report, the model, the variable the
/// result is bound to, if any).
struct Load<'r> {
    node: PyNode<'r>,
    model: String,
    bound_to: Option<String>,
    /// The data-access function of another module the load goes through (`crud.get_chat(db, chat_id)`).
    via: Option<String>,
    /// Rows listed by their parent's id from the request (`Resource.agent_id == agent_id`), not one row by its id.
    by_parent: bool,
}

/// The outermost call of a method chain that starts at `call` (`select(M).where(…).limit(1)`).
fn chain_top<'r>(call: &PyNode<'r>) -> PyNode<'r> {
    let mut top = call.clone();
    for _ in 0..32 {
        let Some(attr) = top.parent().filter(|p| p.kind() == "attribute") else {
            break;
        };
        let Some(outer) = attr.parent().filter(|p| p.kind() == "call") else {
            break;
        };
        top = outer;
    }
    top
}

/// The name a statement binds the value of `node` to (`chat = await session.get(…)`, `x = (…).first()`).
fn bound_name(node: &PyNode<'_>) -> Option<String> {
    let mut cur = node.clone();
    for _ in 0..8 {
        let parent = cur.parent()?;
        match parent.kind().as_ref() {
            "assignment" => {
                let left = parent.field("left")?;
                return (left.kind() == "identifier").then(|| left.text().to_string());
            }
            "await" | "parenthesized_expression" | "call" | "attribute" | "argument_list" => {
                cur = parent
            }
            _ => return None,
        }
    }
    None
}

/// Does a statement's text name the column `col` (`Chat.user_id`, `filter_by(user_id=…)`, or a bare `user_id`
/// that is not one of the request's ids)?
fn names_column(text: &str, col: &str, ids: &[&str]) -> bool {
    if !ids.contains(&col) {
        return has_word(text, col);
    }
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    flat.match_indices(col).any(|(at, _)| {
        let before = flat[..at].chars().next_back();
        let rest = &flat[at + col.len()..];
        let after = rest.chars().next();
        if after.is_some_and(ident) || before.is_some_and(ident) {
            return false;
        }
        before == Some('.') || (rest.starts_with('=') && !rest.starts_with("=="))
    })
}

fn loads<'r>(models: &TenantModels, ids: &[&str], own: &[PyNode<'r>]) -> Vec<Load<'r>> {
    let mut out = Vec::new();
    let mentions_id = |text: &str| ids.iter().any(|id| has_word(text, id));
    for call in own.iter().filter(|n| n.kind() == "call") {
        let Some(tail) = callee_tail(call) else {
            continue;
        };
        let Some(first) = positional_arg(call, 0) else {
            continue;
        };
        let model = first.text().to_string();
        let Some(owner) = models.owner(&model) else {
            continue;
        };
        match tail.as_str() {
            // session.get(Model, chat_id)
            "get" => {
                let Some(key) = positional_arg(call, 1) else {
                    continue;
                };
                if mentions_id(&key.text()) {
                    out.push(Load {
                        node: call.clone(),
                        model,
                        bound_to: bound_name(call),
                        via: None,
                        by_parent: false,
                    });
                }
            }
            // db.query(Model).filter(Model.id == chat_id).first(), select(Model).where(…), delete(Model).where(…)
            "query" | "select" | "delete" | "update" => {
                let top = chain_top(call);
                let text = top.text();
                if top.range() == call.range() || !mentions_id(&text) {
                    continue;
                }
                // A filter on the tenant/owner column in the statement scopes it; a request id of the column's
                // name (`User.id == user_id`) is no filter on it.
                if owner.scope.iter().any(|c| names_column(&text, c, ids)) {
                    continue;
                }
                // A filter on a parent's key scopes it to a parent loaded (and checked) before, unless the key is
                // the request's own id: then the statement lists the children of whatever parent was asked for.
                let mut by_parent = false;
                let mut scoped = false;
                for (k, hop) in owner.hops.iter().enumerate() {
                    if !has_word(&text, hop) {
                        continue;
                    }
                    if column_takes_request_id(&text, hop, ids) {
                        by_parent |= k == 0;
                    } else {
                        scoped = true;
                    }
                }
                if scoped {
                    continue;
                }
                let by_id = text.contains(".get(")
                    || text.contains("filter_by(id=")
                    || text.contains(&format!("{model}.id"))
                    || text.contains(&format!("{model}.uuid"))
                    || (owner.hops.is_empty() && text.contains("filter_by("));
                if by_id || by_parent {
                    out.push(Load {
                        node: call.clone(),
                        model,
                        bound_to: bound_name(&top),
                        via: None,
                        by_parent: by_parent && !by_id,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// Calls that hand a request id, and not the caller, to a data-access function of another module that loads a
/// scoped model by the id alone ([`IdLoaders`]).
fn loads_through_helpers<'r>(
    imports: &crate::analysis::semantic::python::imports::Imports,
    loaders: &IdLoaders,
    models: &TenantModels,
    ids: &[&str],
    who: &[&str],
    own: &[PyNode<'r>],
) -> Vec<Load<'r>> {
    let mut out = Vec::new();
    // Objects built with the caller (`repo = ChatRepository(db, user)`): their methods have the caller in view.
    let carriers = locals_built_with(own, who);
    for call in own.iter().filter(|n| n.kind() == "call") {
        // Import aliases undone: `from app.methods import get_config as method_get_config` calls `get_config`.
        let Some(tail) = imports.callee_tail(call) else {
            continue;
        };
        // `ApiKey.get_by_id(…)` by its class, `crud.get_chat(…)` / `repo.fetch(…)` by the function's name.
        let written = imports.callee(call).unwrap_or_default();
        let class_method = written
            .rsplit('.')
            .nth(1)
            .map(|class| format!("{class}.{tail}"));
        let Some((loader, via)) = class_method
            .and_then(|k| loaders.get(&k).map(|l| (l, k)))
            .or_else(|| loaders.get(&tail).map(|l| (l, tail.clone())))
        else {
            continue;
        };
        if models.owner(&loader.model).is_none() {
            continue;
        }
        let Some(args) = call.field("arguments") else {
            continue;
        };
        let args = args.text();
        // Handing the caller over checks nothing when the function never reads it; a method of an object built
        // with the caller may read it from the object.
        let receiver = written.split('.').next().unwrap_or_default();
        let hands_caller = who.iter().any(|w| has_word(&args, w))
            || (written.contains('.') && carriers.iter().any(|c| c == receiver));
        if !ids.iter().any(|id| has_word(&args, id)) || (!loader.ignores_caller && hands_caller) {
            continue;
        }
        out.push(Load {
            node: call.clone(),
            model: loader.model.clone(),
            bound_to: bound_name(call),
            via: Some(via),
            by_parent: false,
        });
    }
    out
}

/// Is this keyword argument given to a model's constructor (`Tag(name=…, tenant_id=…)`: a new row)?
fn builds_model_row(keyword: &PyNode<'_>, models: &TenantModels) -> bool {
    keyword
        .parent()
        .and_then(|list| list.parent())
        .filter(|call| call.kind() == "call")
        .and_then(|call| callee_tail(&call))
        .is_some_and(|tail| models.contains(&tail))
}

/// Does the handler check the caller's right to the row anywhere?
fn guarded(
    own: &[PyNode<'_>],
    models: &TenantModels,
    owner: &Owner,
    load: &Load<'_>,
    who: &[&str],
    ids: &[&str],
) -> bool {
    // The columns a check may name: the tenant/owner columns, and the parent keys unless they are set from the
    // request's own id (`Resource.agent_id == agent_id` selects, it does not check).
    let columns = owner.columns();
    let checks_column = |text: &str| {
        owner.scope.iter().any(|c| names_column(text, c, ids))
            || owner
                .hops
                .iter()
                .any(|c| has_word(text, c) && !column_takes_request_id(text, c, ids))
    };
    let mentions = |text: &str| {
        who.iter().any(|w| has_word(text, w))
            || ids.iter().any(|w| has_word(text, w))
            || load.bound_to.as_deref().is_some_and(|b| has_word(text, b))
    };
    for n in own {
        match n.kind().as_ref() {
            // The tenant/owner column given as a keyword (`filter_by(user_id=…)`, `get_chat(…, owner_id=…)`);
            // not when it is set on a new row (`Tag(name=…, tenant_id=tenant_id)`): that checks no loaded one.
            "keyword_argument"
                if n.field("name")
                    .is_some_and(|k| columns.iter().any(|c| k.text() == c.as_str()))
                    && checks_column(&n.text())
                    && !builds_model_row(n, models) =>
            {
                return true;
            }
            // The column compared (`chat.user_id != user.id`), or the row compared with the caller
            // (`chat.creator != user.id`). A mere read of the column (`if body.org_id:`) is no check.
            "comparison_operator" => {
                let t = n.text();
                // A filter of another model's statement (`Preset.tenant_id == tenant_id` while the load is a
                // `Tag`) scopes that statement, not this row.
                let other_model = n.dfs().any(|a| {
                    a.kind() == "attribute"
                        && a.field("object").is_some_and(|o| {
                            let o = o.text();
                            o.as_ref() != load.model && models.contains(&o)
                        })
                }) && !has_word(&t, &load.model)
                    && !load.bound_to.as_deref().is_some_and(|b| has_word(&t, b));
                if checks_column(&t) && !other_model {
                    return true;
                }
                if who.iter().any(|w| has_word(&t, w))
                    && (load.bound_to.as_deref().is_some_and(|b| has_word(&t, b))
                        || has_word(&t, &load.model))
                {
                    return true;
                }
            }
            // A helper that says it checks access, given the row, its id or the caller.
            "call" => {
                let name = callee_tail(n).unwrap_or_default().to_ascii_lowercase();
                // A check the caller object makes itself (`current_user.is_owner(org)`,
                // `login_user.check_group_admin(row.group_id)`).
                let receiver = callee(n)
                    .and_then(|c| c.split_once('.').map(|(r, _)| r.to_string()))
                    .unwrap_or_default();
                if who.contains(&receiver.as_str())
                    && (ACCESS_CHECK_WORDS.iter().any(|g| name.contains(g))
                        || ["is_", "has_", "can_"].iter().any(|p| name.starts_with(p)))
                {
                    return true;
                }
                let Some(args) = n.field("arguments") else {
                    continue;
                };
                let args = args.text();
                if ACCESS_CHECK_WORDS.iter().any(|g| name.contains(g)) && mentions(&args) {
                    return true;
                }
                // The column and the caller handed on together (`authorize(chat.org_id, user)`).
                if columns.iter().any(|c| has_word(&args, c))
                    && who.iter().any(|w| has_word(&args, w))
                {
                    return true;
                }
                // The loaded row and the caller handed on together (`_may_view_tool(tool, user, …)`): whatever
                // its name, a function given both can decide; silence rather than a wrong HIGH comment.
                if load.bound_to.as_deref().is_some_and(|b| has_word(&args, b))
                    && who.iter().any(|w| has_word(&args, w))
                {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// `current_user.department_id`: an id-named column the caller object carries (not its own `id`), read from one of
/// the caller parameters `who`.
fn caller_column(n: &PyNode<'_>, who: &[&str]) -> Option<String> {
    if n.kind() != "attribute" {
        return None;
    }
    let object = n.field("object")?;
    let attr = n.field("attribute")?.text().to_string();
    (object.kind() == "identifier"
        && who.contains(&object.text().as_ref())
        && is_id_name(&attr)
        && !attr.eq_ignore_ascii_case("id"))
    .then_some(attr)
}

/// The columns the file's route handlers scope by with the caller's own value, each with the handler that does and
/// the expression it reads (`list_with_department(…, department_id=current_user.department_id)`,
/// `Doc.org_id == user.org_id`): the application's tenant boundary as its own code draws it, administrators' routes
/// included.
fn caller_scopes(handlers: &[PyNode<'_>]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for h in handlers {
        let ps = params(h);
        let who: Vec<&str> = ps
            .iter()
            .filter(|p| p.identity && !p.name.starts_with('_'))
            .map(|p| p.name.as_str())
            .collect();
        let (Some(body), Some(name)) = (h.field("body"), function_name(h)) else {
            continue;
        };
        if who.is_empty() {
            continue;
        }
        for n in same_scope_descendants(&body) {
            let Some(col) = caller_column(&n, &who) else {
                continue;
            };
            // Used to select or compare, not merely read (`log(user.org_id)`).
            let scoping = n.parent().is_some_and(|p| {
                matches!(
                    p.kind().as_ref(),
                    "keyword_argument" | "comparison_operator"
                )
            });
            if scoping && !out.iter().any(|(c, h, _)| *c == col && *h == name) {
                out.push((col, name.clone(), n.text().to_string()));
            }
        }
    }
    out
}

/// Does the handler scope by the caller's column itself (`current_user.department_id` read anywhere), or hand the
/// caller to a function that says it checks?
fn scoped_like_siblings(own: &[PyNode<'_>], who: &[&str], cols: &[&str]) -> bool {
    own.iter().any(|n| {
        caller_column(n, who).is_some_and(|c| cols.contains(&c.as_str()))
            || (n.kind() == "call"
                && ACCESS_CHECK_WORDS.iter().any(|g| {
                    callee_tail(n)
                        .unwrap_or_default()
                        .to_ascii_lowercase()
                        .contains(g)
                })
                && n.field("arguments")
                    .is_some_and(|a| who.iter().any(|w| has_word(&a.text(), w))))
    })
}

impl Check for ObjectByIdWithoutOwnerCheck {
    fn id(&self) -> &'static str {
        "object-by-id-without-owner-check"
    }

    fn tokens(&self) -> &'static [&'static str] {
        // A load in the handler, or an id handed to a data-access function of another module.
        &["get(", "query(", "select(", "delete(", "update(", "_id"]
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[ROUTE_DECORATOR_TOKENS]
    }

    fn needs(&self) -> &'static [&'static str] {
        ownership_file_globs()
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        // Route handlers first (cheap): most files that pass the token filter have none.
        let handlers = route_handlers(root, ctx);
        if handlers.is_empty() {
            return;
        }
        // The repository's models (worked out once per audit), plus this file's own when it declares models and
        // is not among the model files read.
        let own_models;
        let text = root.text();
        let declares_models = ["__tablename__", "Column(", "mapped_column(", "table=True"]
            .iter()
            .any(|w| text.contains(w));
        // The columns this file's routes scope by with the caller's value; one the tenancy model does not know
        // (`department_id`) makes the models that have it scoped here too.
        let scopes = caller_scopes(&handlers);
        let learned: Vec<String> = scopes
            .iter()
            .map(|(c, _, _)| c.clone())
            .filter(|c| {
                !TENANT_COLUMNS.contains(&c.as_str()) && !ctx.repo.tenant_columns.contains(c)
            })
            .fold(Vec::new(), |mut acc, c| {
                if !acc.contains(&c) {
                    acc.push(c);
                }
                acc
            });
        let own_file = declares_models && !ctx.repo.files.contains_key(ctx.path);
        let models = if own_file || !learned.is_empty() {
            let columns: Vec<String> = ctx
                .repo
                .tenant_columns
                .iter()
                .chain(&learned)
                .cloned()
                .collect();
            let texts = model_file_texts(&ctx.repo.files).chain(own_file.then_some(text.as_ref()));
            own_models = TenantModels::build(texts, &columns);
            &own_models
        } else {
            ctx.repo.tenant_models()
        };
        if models.is_empty() {
            return;
        }
        // The routes of this file that take the caller: where the others do, a route that takes none has lost its
        // authentication rather than being public (a router declared with `dependencies=` may check either).
        let router_dependencies = router_declares_dependencies(root);
        let siblings_with_caller: Vec<String> = handlers
            .iter()
            .filter(|h| params(h).iter().any(|p| p.identity))
            .filter_map(function_name)
            .collect();
        for func in &handlers {
            let (name, head) = name_and_decorators(func);
            let ps = params(func);
            // The other routes of this file that scope by the caller's column.
            let siblings: Vec<&(String, String, String)> =
                scopes.iter().filter(|(_, h, _)| *h != name).collect();
            // Only administrators reach it (its name, route or a dependency says so): not a tenant boundary,
            // unless the other routes of the file scope administrators too (`department_id=current_user.…`).
            let admin = is_admin_handler(func) || ps.iter().any(|p| p.admin);
            // A super-administrator (`Depends(get_superadmin_user)`, `current_superuser`) spans every tenant.
            let super_admin = ps.iter().any(|p| {
                p.depends
                    .as_deref()
                    .is_some_and(|d| d.contains("super") || d.contains("platform"))
            }) || name.to_ascii_lowercase().contains("super");
            if admin && (siblings.is_empty() || super_admin) {
                continue;
            }
            let who: Vec<&str> = ps
                .iter()
                .filter(|p| p.identity)
                .map(|p| p.name.as_str())
                .collect();
            let mut ids: Vec<String> = ps.iter().filter(|p| p.id).map(|p| p.name.clone()).collect();
            let Some(body) = func.field("body") else {
                continue;
            };
            let own = same_scope_descendants(&body);
            // The items of a list in the request body (`for tag in body.tags:`): their ids are the request's too.
            let body_items: Vec<String> = own
                .iter()
                .filter(|n| n.kind() == "for_statement")
                .filter_map(|n| {
                    let (left, right) = (n.field("left")?, n.field("right")?);
                    let object = right.field("object")?;
                    (left.kind() == "identifier"
                        && right.kind() == "attribute"
                        && object.kind() == "identifier"
                        && ps.iter().any(|p| p.body && p.name == object.text()))
                    .then(|| left.text().to_string())
                })
                .collect();
            // An id carried in the request body (`api_key_in.id`, `body.chat_id`, `tag.id` of a body's item).
            for n in own.iter().filter(|n| n.kind() == "attribute") {
                let (Some(object), Some(attr)) = (n.field("object"), n.field("attribute")) else {
                    continue;
                };
                let text = n.text().to_string();
                // The body's tenant/owner column is data being written, not the row's id.
                let attr = attr.text();
                if object.kind() == "identifier"
                    && (ps.iter().any(|p| p.body && p.name == object.text())
                        || body_items.iter().any(|b| b == object.text().as_ref()))
                    && is_id_name(&attr)
                    && !TENANT_COLUMNS.contains(&attr.as_ref())
                    && !ctx.repo.tenant_columns.iter().any(|c| c == attr.as_ref())
                    && !ids.contains(&text)
                {
                    ids.push(text);
                }
            }
            if ids.is_empty() {
                continue;
            }
            // No caller: reported only where its siblings take one and nothing else could stand for it (a
            // dependency, `request.state.user`, a router or decorator `dependencies=`), on a web route that is not
            // public by design.
            let callerless = who.is_empty();
            if callerless {
                let body_text = body.text();
                let web = head.contains(".get(")
                    || head.contains(".post(")
                    || head.contains(".put(")
                    || head.contains(".patch(")
                    || head.contains(".delete(")
                    || head.contains(".api_route(");
                if siblings_with_caller.is_empty()
                    || router_dependencies
                    || head.contains("dependencies=")
                    || !web
                    || is_public_by_design(func)
                    || ps.iter().any(|p| p.depends.is_some())
                    || [
                        "request.state",
                        "request.user",
                        "request.scope",
                        "request.session",
                    ]
                    .iter()
                    .any(|w| body_text.contains(w))
                {
                    continue;
                }
            }
            // An id-named local computed from a request id is the request's id too (`persona_id = int(assistant_id)`).
            for n in own.iter().filter(|n| n.kind() == "assignment") {
                let (Some(left), Some(right)) = (n.field("left"), n.field("right")) else {
                    continue;
                };
                let name = left.text().to_string();
                let right = right.text();
                if left.kind() == "identifier"
                    && is_id_name(&name)
                    && !ids.contains(&name)
                    && ids.iter().any(|id| has_word(&right, id))
                {
                    ids.push(name);
                }
            }
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            let mut found = loads(models, &ids, &own);
            found.extend(loads_through_helpers(
                &ctx.imports(root),
                ctx.repo.id_loaders(),
                models,
                &ids,
                &who,
                &own,
            ));
            // An administrator's route: only a model the siblings scope, by a column they scope by, and only the
            // caller's own column (or a checking function given the caller) is a check; comparing the row with the
            // caller (`user.id == current_user.id`) asks who it is, not which tenant.
            let sibling_cols: Vec<&str> = siblings.iter().map(|(c, _, _)| c.as_str()).collect();
            let unguarded: Vec<&Load<'_>> = found
                .iter()
                .filter(|l| {
                    models.owner(&l.model).is_some_and(|owner| {
                        if admin {
                            owner
                                .columns()
                                .iter()
                                .any(|c| sibling_cols.contains(&c.as_str()))
                                && !scoped_like_siblings(&own, &who, &sibling_cols)
                        } else {
                            !guarded(&own, models, &owner, l, &who, &ids)
                        }
                    })
                })
                .collect();
            let Some(first) = unguarded.first() else {
                continue;
            };
            let Some(owner) = models.owner(&first.model) else {
                continue;
            };
            let more = if unguarded.len() > 1 {
                format!(" ({} more such loads in this handler)", unguarded.len() - 1)
            } else {
                String::new()
            };
            let through = first
                .via
                .as_deref()
                .map(|v| format!(" through `{v}()`, which looks it up by the id alone,"))
                .unwrap_or_default();
            let (what, reach) = if first.by_parent {
                (
                    format!(
                        "lists `{}` rows by the parent id `{}`",
                        first.model,
                        ids.join("`/`")
                    ),
                    "rows by their parent's id",
                )
            } else {
                (
                    format!("loads `{}` by `{}`", first.model, ids.join("`/`")),
                    "row by its id",
                )
            };
            let sibling = siblings
                .iter()
                .find(|(c, _, _)| owner.columns().contains(c))
                .filter(|_| admin);
            let message = if let Some((col, other, expr)) = sibling {
                format!(
                    "administrators' route `{name}` {what} from the request{through} and never compares its `{col}` with the caller's (`{who}.{col}`), while `{other}` in this file scopes by `{expr}`: an administrator of one tenant can reach another tenant's {reach}{more}; compare the row's `{col}` with the caller's, as `{other}` does",
                    who = who.first().copied().unwrap_or("caller"),
                    reach = reach,
                )
            } else if callerless {
                let shown: Vec<&str> = siblings_with_caller
                    .iter()
                    .take(3)
                    .map(String::as_str)
                    .collect();
                format!(
                    "route `{name}` {what} from the request{through} but takes no caller, while the other routes of this file do (`{}`): nothing can compare the row's {} with who is asking, so any client reaches another tenant's {reach}{more}; add the caller dependency and filter by the owner",
                    shown.join("`, `"),
                    owner.describe,
                    reach = reach,
                )
            } else {
                format!(
                    "route `{name}` {what} from the request{through} and never compares its {} with the caller (`{}`): any signed-in user can reach another tenant's {reach}{more}; filter by the owner in the query or check it before use",
                    owner.describe,
                    who.join("`, `"),
                    reach = reach,
                )
            };
            out.push(CheckMatch {
                fix: None,
                range: first.node.range(),
                message: Some(message),
            });
        }
    }
}

/// I1 `tenant-id-unchecked`: a route handler that knows who is calling takes a tenant id from the request (a path,
/// query or body field named like the tenant: `workspace_id`, `space_id`, `org_id`, `tenant_id`, `team_id`,
/// `project_id`, or a configured tenant column) and hands it on — to a query, a constructor, a signed OAuth state, a
/// job — without anything that could check the caller's right to that tenant: any signed-in user can act in, or read
/// from, another tenant by naming its id.
///
/// Checked, and so silent: the id given to a helper whose name says it checks (`check_permission(…, workspace_id)`);
/// compared with anything but a literal (`if thread.workspace_id != body.workspace_id`); given, together with the
/// caller, to any function the repository does not show to be passive (one with no branch, comparison, `raise`,
/// `await` or query: it signs or formats what it is given — [`crate::analysis::semantic::uses::DefFact::passive`]);
/// a dependency or decorator `dependencies=` that names a tenant, membership or permission; admin routes; callers
/// that are only a role gate (`_: User = Depends(current_admin)`). A tenant id that is also the key of a scoped row
/// loaded by id is left to `object-by-id-without-owner-check`.
pub struct TenantIdUnchecked;

/// Tenant words of a request id (`workspace_id`, `target_org_id`), besides the configured tenant columns.
const TENANT_ID_WORDS: &[&str] = &[
    "tenant_id",
    "org_id",
    "organization_id",
    "organisation_id",
    "workspace_id",
    "space_id",
    "team_id",
    "project_id",
];

/// Words of a dependency that may check the caller's right to a tenant named in the path.
const TENANT_DEPENDENCY_WORDS: &[&str] = &[
    "workspace",
    "tenant",
    "org",
    "team",
    "project",
    "space",
    "member",
];

/// Words of a dependency that checks something: the caller's right to a tenant named in the path when it is a
/// function FastAPI calls with the request (`Depends(verify_access)`), only a role when it is a factory given
/// constants (`Depends(require_permission(Permission.BASIC_ACCESS))`).
const GATE_DEPENDENCY_WORDS: &[&str] = &[
    "permission",
    "access",
    "role",
    "check",
    "verify",
    "authoriz",
    "guard",
];

/// Query-building methods: given the tenant id and the caller, the statement scopes by both.
const QUERY_METHODS: &[&str] = &[
    "where",
    "filter",
    "filter_by",
    "select",
    "get",
    "execute",
    "scalar",
    "scalars",
    "query",
    "find",
    "find_one",
    "count",
    "exists",
    "get_or_none",
    "first",
];

/// Calls a tenant id may go into without being used for anything (logs, errors, conversions).
const NOT_SINKS: &[&str] = &[
    "debug",
    "info",
    "warning",
    "warn",
    "error",
    "exception",
    "critical",
    "log",
    "print",
    "format",
    "HTTPException",
    "str",
    "int",
    "len",
    "isinstance",
    "repr",
    "bool",
    "UUID",
];

fn tenant_like(name: &str, configured: &[String]) -> bool {
    let lower = name.to_ascii_lowercase();
    TENANT_ID_WORDS
        .iter()
        .copied()
        .chain(configured.iter().map(String::as_str))
        .filter(|w| {
            !matches!(
                *w,
                "user_id" | "owner_id" | "group_id" | "app_id" | "account_id"
            )
        })
        .any(|w| lower == w || lower.ends_with(&format!("_{w}")))
}

/// Does `text` mention the request expression `expr` (`space_id` as a whole name, not `thread.space_id`;
/// `body.workspace_id` as a whole)?
fn mentions_expr(text: &str, expr: &str) -> bool {
    let bytes = text.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    text.match_indices(expr).any(|(at, _)| {
        let before = at == 0 || !(ident(bytes[at - 1]) || bytes[at - 1] == b'.');
        let end = at + expr.len();
        let after = end >= bytes.len() || !ident(bytes[end]);
        before && after
    })
}

/// Is this node a literal (`None`, a number, a string, `True`)?
fn is_literal(n: &PyNode<'_>) -> bool {
    matches!(
        n.kind().as_ref(),
        "none" | "true" | "false" | "integer" | "float" | "string" | "concatenated_string"
    )
}

/// `Workspace.id` / `Model.uuid`: a class's key column (loading the tenant's own row by its id checks nothing).
fn is_class_key(n: &PyNode<'_>) -> bool {
    n.kind() == "attribute"
        && n.field("attribute")
            .is_some_and(|a| matches!(a.text().as_ref(), "id" | "uuid" | "pk"))
        && n.field("object").is_some_and(|o| {
            o.kind() == "identifier" && o.text().chars().next().is_some_and(char::is_uppercase)
        })
}

/// Could a function given a request id and the caller decide on them? A query scoping by both can; a function of
/// the repository can unless the model shows it cannot ([`crate::analysis::semantic::reach::Reach::may_decide`]);
/// a library's (a logger, a response) cannot. Without the repository model, assume it can.
fn may_decide(repo: &crate::analysis::context::RepoContext, tail: &str) -> bool {
    QUERY_METHODS.contains(&tail) || repo.reach.as_ref().is_none_or(|r| r.may_decide(tail))
}

/// Does a callee's name (lower-case) say it checks access or membership (`check_permission`, `require_member`,
/// `has_role`)?
fn checking_name(lower: &str) -> bool {
    ACCESS_CHECK_WORDS
        .iter()
        .chain(&["member", "role"])
        .any(|g| lower.contains(g))
}

/// Does the file declare a router with `dependencies=[…]`? Those may check the tenant or the caller of every route
/// (we cannot tell which).
fn router_declares_dependencies(root: &PyNode<'_>) -> bool {
    let squashed: String = root.text().chars().filter(|c| !c.is_whitespace()).collect();
    squashed.contains("APIRouter(") && squashed.contains("dependencies=[")
}

/// A call an id may go into without being used for anything: a log, an error, a conversion
/// ([`NOT_SINKS`]), or a call on a logger or `print`.
fn not_a_sink(tail: &str, call: &PyNode<'_>) -> bool {
    let receiver = callee(call).unwrap_or_default();
    NOT_SINKS.contains(&tail)
        || receiver
            .split('.')
            .next()
            .is_some_and(|r| r.to_ascii_lowercase().contains("log") || r == "print")
}

/// A route the I1 route checks leave alone: for administrators only (by its name, its route, or a dependency of
/// a parameter), or declaring decorator `dependencies=` that may check anything.
fn left_alone(func: &PyNode<'_>, head: &str, ps: &[Param]) -> bool {
    is_admin_handler(func) || head.contains("dependencies=") || ps.iter().any(|p| p.admin)
}

/// The caller's parameters as the handler can use them (`_: User = Depends(…)` is only a gate).
fn callers(ps: &[Param]) -> Vec<String> {
    ps.iter()
        .filter(|p| p.identity && !p.name.starts_with('_'))
        .map(|p| p.name.clone())
        .collect()
}

/// The operands of a comparison other than those mentioning `expr`, when one mentions it (`None` otherwise).
fn compared_with<'r>(n: &PyNode<'r>, expr: &str) -> Option<Vec<PyNode<'r>>> {
    let operands: Vec<PyNode<'r>> = n.children().filter(|c| c.is_named()).collect();
    if !operands.iter().any(|o| mentions_expr(&o.text(), expr)) {
        return None;
    }
    Some(
        operands
            .into_iter()
            .filter(|o| !mentions_expr(&o.text(), expr))
            .collect(),
    )
}

impl Check for TenantIdUnchecked {
    fn id(&self) -> &'static str {
        "tenant-id-unchecked"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["_id"]
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[ROUTE_DECORATOR_TOKENS]
    }

    fn needs(&self) -> &'static [&'static str] {
        ownership_file_globs()
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let handlers = route_handlers(root, ctx);
        if handlers.is_empty() {
            return;
        }
        // A router declared here with dependencies may check the tenant of every route (we cannot tell which).
        if router_declares_dependencies(root) {
            return;
        }
        let imports = ctx.imports(root);
        let models = ctx.repo.tenant_models();
        for func in &handlers {
            let (name, head) = name_and_decorators(func);
            let ps = params(func);
            if left_alone(func, &head, &ps)
                || ps.iter().any(|p| {
                    p.depends.as_deref().is_some_and(|d| {
                        let factory = d.matches('(').count() >= 2;
                        TENANT_DEPENDENCY_WORDS.iter().any(|w| d.contains(w))
                            || (!factory && GATE_DEPENDENCY_WORDS.iter().any(|w| d.contains(w)))
                    })
                })
            {
                continue;
            }
            let mut who = callers(&ps);
            if who.is_empty() {
                continue;
            }
            let Some(body) = func.field("body") else {
                continue;
            };
            let own = same_scope_descendants(&body);
            // Tenant ids from the request: parameters, and tenant fields of a request body.
            let mut tenants: Vec<String> = ps
                .iter()
                .filter(|p| {
                    !p.identity
                        && p.depends.is_none()
                        && tenant_like(&p.name, &ctx.repo.tenant_columns)
                })
                .map(|p| p.name.clone())
                .collect();
            for n in own.iter().filter(|n| n.kind() == "attribute") {
                let (Some(object), Some(attr)) = (n.field("object"), n.field("attribute")) else {
                    continue;
                };
                let text = n.text().to_string();
                if object.kind() == "identifier"
                    && ps.iter().any(|p| p.body && p.name == object.text())
                    && tenant_like(&attr.text(), &ctx.repo.tenant_columns)
                    && !tenants.contains(&text)
                {
                    tenants.push(text);
                }
            }
            if tenants.is_empty() {
                continue;
            }
            // Locals that hold the caller (`user = auth.user`, `user_id = user.id`) or a tenant id
            // (`ws_id = body.workspace_id`).
            for _ in 0..3 {
                for n in own.iter().filter(|n| n.kind() == "assignment") {
                    let (Some(left), Some(right)) = (n.field("left"), n.field("right")) else {
                        continue;
                    };
                    if left.kind() != "identifier" {
                        continue;
                    }
                    let l = left.text().to_string();
                    let r = right.text();
                    // Only plain reads: `user = auth.user`, `ws_id = body.workspace_id` (a call's result is
                    // something else).
                    if !matches!(right.kind().as_ref(), "identifier" | "attribute") {
                        continue;
                    }
                    if !who.contains(&l) && who.iter().any(|w| has_word(&r, w)) {
                        who.push(l);
                    } else if !tenants.contains(&l)
                        && !who.contains(&l)
                        && tenants.iter().any(|t| r.as_ref() == t.as_str())
                    {
                        tenants.push(l);
                    }
                }
            }
            let who_refs: Vec<&str> = who.iter().map(String::as_str).collect();
            let mentions_caller = |text: &str| who_refs.iter().any(|w| has_word(text, w));
            // Objects built with the caller (`service = WorkspaceService(session, role=role)`): their methods have
            // the caller in view, as a function handed it does.
            let carriers = locals_built_with(&own, &who_refs);
            let on_carrier = |call: &PyNode<'_>| {
                callee(call).is_some_and(|c| {
                    c.split_once('.')
                        .is_some_and(|(r, _)| carriers.iter().any(|k| k == r))
                })
            };
            // The tenant columns whose value on some other object the handler hands to a checking helper
            // (`check_permission(…, thread.workspace_id, …)`): it checks the tenant there, so a request field of
            // the same name is that check's to pass, not any function's it later reaches.
            let guarded_columns: Vec<String> = own
                .iter()
                .filter(|n| n.kind() == "call")
                .filter(|n| {
                    let name = imports
                        .callee_tail(n)
                        .unwrap_or_default()
                        .to_ascii_lowercase();
                    ACCESS_CHECK_WORDS.iter().any(|g| name.contains(g))
                })
                .filter_map(|n| n.field("arguments"))
                .flat_map(|args| {
                    args.dfs()
                        .filter(|a| a.kind() == "attribute")
                        .filter_map(|a| a.field("attribute").map(|x| x.text().to_string()))
                        .collect::<Vec<_>>()
                })
                .collect();
            // The caller handed, with a policy, an action or a resource, to a function that says it checks
            // (`authorize(current_user, WorkspacePolicy.delete)`, `check_permission(user, "workspace:write")`): what
            // the check covers is not in view, and may be the tenant; silence rather than a wrong HIGH comment.
            let policy_checked = own.iter().filter(|n| n.kind() == "call").any(|n| {
                let lower = imports
                    .callee_tail(n)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let Some(args) = n.field("arguments") else {
                    return false;
                };
                let named: Vec<PyNode<'_>> = args.children().filter(|a| a.is_named()).collect();
                // A check naming some object's tenant (`check_permission(s, user, thread.workspace_id, …)`) covers
                // that tenant, not the one the request names.
                let names_tenant = args.dfs().any(|a| {
                    a.kind() == "attribute"
                        && a.field("attribute")
                            .is_some_and(|x| tenant_like(&x.text(), &ctx.repo.tenant_columns))
                });
                // Besides the caller and a session, only a policy, an action or a permission: a class's member
                // or call (`WorkspacePolicy.delete`, `Policy.get(x)`) or a string. A check given a loaded object
                // (`check_thread_access(session, thread, user)`) covers that object, not the request's tenant.
                let policy_like = |a: &PyNode<'_>| {
                    matches!(a.kind().as_ref(), "string" | "concatenated_string")
                        || (matches!(a.kind().as_ref(), "attribute" | "call")
                            && a.text().chars().next().is_some_and(char::is_uppercase))
                };
                let values: Vec<PyNode<'_>> = named
                    .iter()
                    .map(|a| {
                        if a.kind() == "keyword_argument" {
                            a.field("value").unwrap_or_else(|| a.clone())
                        } else {
                            a.clone()
                        }
                    })
                    .collect();
                let caller_given = values.iter().any(|a| mentions_caller(&a.text()));
                let others_ok = values.iter().all(|a| {
                    mentions_caller(&a.text())
                        || policy_like(a)
                        || (a.kind() == "identifier"
                            && ["db", "session", "sess", "conn", "s"].contains(&a.text().as_ref()))
                });
                checking_name(&lower)
                    && values.iter().any(policy_like)
                    && caller_given
                    && others_ok
                    && !names_tenant
            });
            if policy_checked {
                continue;
            }
            let mut unchecked: Vec<(String, PyNode<'r>, String)> = Vec::new();
            for t in &tenants {
                let mut sink: Option<(PyNode<'r>, String)> = None;
                let mut checked = false;
                // A body field whose column the handler checks on another object: only a comparison or a check of
                // the field itself counts.
                let second_tenant = t
                    .split_once('.')
                    .is_some_and(|(_, col)| guarded_columns.iter().any(|c| c == col));
                let mut scoped_load = false;
                for n in &own {
                    match n.kind().as_ref() {
                        "comparison_operator" => {
                            let Some(others) = compared_with(n, t) else {
                                continue;
                            };
                            // `Workspace.id == space_id` loads the tenant's row; `Doc.id == doc_id` a scoped
                            // row (the other check's); `space_id is None` checks nothing.
                            if let Some(key) = others.iter().find(|o| is_class_key(o)) {
                                let model = key
                                    .field("object")
                                    .map(|o| o.text().to_string())
                                    .unwrap_or_default();
                                scoped_load |= models.owner(&model).is_some();
                                continue;
                            }
                            if !others.is_empty() && others.iter().all(|o| !is_literal(o)) {
                                checked = true;
                            }
                        }
                        // `chat.project_id = project_id`: the id written into a row.
                        "assignment" => {
                            let (Some(left), Some(right)) = (n.field("left"), n.field("right"))
                            else {
                                continue;
                            };
                            if left.kind() == "attribute"
                                && mentions_expr(&right.text(), t)
                                && sink
                                    .as_ref()
                                    .is_none_or(|(s, _)| n.range().start < s.range().start)
                            {
                                sink = Some((n.clone(), format!("{} =", left.text())));
                            }
                        }
                        "call" => {
                            let Some(args) = n.field("arguments") else {
                                continue;
                            };
                            let args_text = args.text();
                            if !mentions_expr(&args_text, t) {
                                continue;
                            }
                            // Import aliases undone (`get_users as method_get_users`).
                            let tail = imports.callee_tail(n).unwrap_or_default();
                            let lower = tail.to_ascii_lowercase();
                            if checking_name(&lower) {
                                checked = true;
                                continue;
                            }
                            // `session.get(Chat, space_id)` of a scoped model: the other check's.
                            if tail == "get"
                                && positional_arg(n, 0)
                                    .is_some_and(|m| models.owner(&m.text()).is_some())
                            {
                                scoped_load = true;
                                continue;
                            }
                            if (mentions_caller(&args_text) || on_carrier(n))
                                && may_decide(ctx.repo, &tail)
                                && !second_tenant
                            {
                                checked = true;
                                continue;
                            }
                            if not_a_sink(&tail, n) {
                                continue;
                            }
                            // The first call the id goes into (in the source's order) is the one to name.
                            if sink
                                .as_ref()
                                .is_none_or(|(s, _)| n.range().start < s.range().start)
                            {
                                sink = Some((n.clone(), tail));
                            }
                        }
                        _ => {}
                    }
                }
                if checked || scoped_load {
                    continue;
                }
                if let Some((node, tail)) = sink {
                    unchecked.push((t.clone(), node, tail));
                }
            }
            let Some((t, node, tail)) = unchecked.first() else {
                continue;
            };
            // `generate_state()`, or `chat.project_id =` for a write into a row.
            let target = if tail.ends_with(" =") {
                format!("writes it (`{tail} {t}`)")
            } else {
                format!("hands it to `{tail}()`")
            };
            let more = if unchecked.len() > 1 {
                format!(
                    " (also `{}`)",
                    unchecked[1..]
                        .iter()
                        .map(|(t, _, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join("`, `")
                )
            } else {
                String::new()
            };
            out.push(CheckMatch {
                fix: None,
                range: node.range(),
                message: Some(format!(
                    "route `{name}` takes the tenant id `{t}` from the request{more} and {target} without checking that the caller (`{}`) belongs to that tenant: any signed-in user can act in another tenant by naming its id; check the caller's membership or permission for `{t}` before using it",
                    who[..who.len().min(2)].join("`, `"),
                )),
            });
        }
    }
}

/// I1 `stream-by-id-without-owner-check`: a route handler that knows who is calling subscribes to a pub/sub channel
/// (`pubsub.subscribe("sync_job", job_id)`, `redis.psubscribe(f"job:{job_id}")`) keyed by an id from the request, and
/// nothing in the handler could check that the object is the caller's: any signed-in user can stream another
/// tenant's live events by naming the id. Silent when the id is compared with anything but a literal, handed to a
/// checking helper, or handed with the caller to a query or to a function of the repository that may decide.
pub struct StreamByIdWithoutOwnerCheck;

impl Check for StreamByIdWithoutOwnerCheck {
    fn id(&self) -> &'static str {
        "stream-by-id-without-owner-check"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["subscribe("]
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[ROUTE_DECORATOR_TOKENS]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        for func in &route_handlers(root, ctx) {
            let (name, head) = name_and_decorators(func);
            let ps = params(func);
            if left_alone(func, &head, &ps) {
                continue;
            }
            let who = callers(&ps);
            let ids: Vec<&str> = ps
                .iter()
                .filter(|p| p.id)
                .map(|p| p.name.as_str())
                .collect();
            if who.is_empty() || ids.is_empty() {
                continue;
            }
            let Some(body) = func.field("body") else {
                continue;
            };
            let own = same_scope_descendants(&body);
            for id in &ids {
                let mut stream: Option<PyNode<'r>> = None;
                let mut checked = false;
                for n in &own {
                    match n.kind().as_ref() {
                        "comparison_operator" => {
                            let on_id = compared_with(n, id).is_some_and(|others| {
                                !others.is_empty() && others.iter().all(|o| !is_literal(o))
                            });
                            // Something compared with the caller (`run.owner_id != user.id`): an owner check.
                            let on_caller = who.iter().any(|w| has_word(&n.text(), w));
                            if on_id || on_caller {
                                checked = true;
                            }
                        }
                        "call" => {
                            let Some(args) = n.field("arguments") else {
                                continue;
                            };
                            let args = args.text();
                            if !mentions_expr(&args, id) {
                                continue;
                            }
                            let tail = imports.callee_tail(n).unwrap_or_default();
                            let lower = tail.to_ascii_lowercase();
                            if matches!(tail.as_str(), "subscribe" | "psubscribe") {
                                if stream.is_none() {
                                    stream = Some(n.clone());
                                }
                                continue;
                            }
                            if checking_name(&lower)
                                || (who.iter().any(|w| has_word(&args, w))
                                    && may_decide(ctx.repo, &tail))
                            {
                                checked = true;
                            }
                        }
                        _ => {}
                    }
                }
                if checked {
                    continue;
                }
                if let Some(node) = stream {
                    out.push(CheckMatch {
                        fix: None,
                        range: node.range(),
                        message: Some(format!(
                            "route `{name}` subscribes to the live events of `{id}` from the request and never checks that the object is the caller's (`{}`): any signed-in user can stream another tenant's events by naming the id; load it scoped to the caller's organisation (or check its owner) before subscribing",
                            who.join("`, `")
                        )),
                    });
                    break;
                }
            }
        }
    }
}

/// The text of `node` without its comments and docstrings (what the code does, not what its prose says).
fn code_text(node: &PyNode<'_>) -> String {
    let text = node.text();
    let base = node.range().start;
    let mut out = String::with_capacity(text.len());
    // One pass: nodes come in source order, so the text between the prose nodes is copied as it is met.
    let mut at = 0;
    for n in node.dfs() {
        let prose = n.kind() == "comment"
            || (n.kind() == "string"
                && n.parent()
                    .is_some_and(|p| p.kind() == "expression_statement"));
        if !prose {
            continue;
        }
        let r = n.range();
        let (start, end) = (r.start - base, r.end - base);
        if start < at {
            continue;
        }
        out.push_str(text.get(at..start).unwrap_or(""));
        at = end;
    }
    out.push_str(text.get(at..).unwrap_or(""));
    out
}

/// I1 `route-lists-every-tenant`: a route handler takes the caller and never uses it, yet queries a tenant- or
/// owner-scoped model with no filter on its tenant/owner column (`select(Data.owner_id, func.max(…)).group_by(…)`,
/// `db.query(Workspace).all()`): nothing can limit the rows to the caller's, so any signed-in user reads every
/// tenant's. Loads by id are `object-by-id-without-owner-check`'s. Silent for admin routes, public-by-design
/// routes, routes with `dependencies=`, handlers that read `request.state`, and `_`-named gates.
pub struct RouteListsEveryTenant;

impl Check for RouteListsEveryTenant {
    fn id(&self) -> &'static str {
        "route-lists-every-tenant"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["select(", "query("]
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[ROUTE_DECORATOR_TOKENS]
    }

    fn needs(&self) -> &'static [&'static str] {
        ownership_file_globs()
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let handlers = route_handlers(root, ctx);
        let models = ctx.repo.tenant_models();
        if handlers.is_empty() || models.is_empty() {
            return;
        }
        if router_declares_dependencies(root) {
            return;
        }
        let imports = ctx.imports(root);
        for func in &handlers {
            let (name, head) = name_and_decorators(func);
            let ps = params(func);
            // A listing: a handler given a request id loads or lists by it (the other checks').
            if left_alone(func, &head, &ps) || is_public_by_design(func) || ps.iter().any(|p| p.id)
            {
                continue;
            }
            let who = callers(&ps);
            let Some(body) = func.field("body") else {
                continue;
            };
            let body_text = code_text(&body);
            // The caller used anywhere (a filter, a check, a helper given it) may scope the rows.
            if who.is_empty()
                || who.iter().any(|w| has_word(&body_text, w))
                || body_text.contains("request.state")
            {
                continue;
            }
            let own = same_scope_descendants(&body);
            let listing = own.iter().filter(|n| n.kind() == "call").find_map(|call| {
                let tail = imports.callee_tail(call)?;
                if !matches!(tail.as_str(), "select" | "query") {
                    return None;
                }
                let first = positional_arg(call, 0)?;
                let model = match first.kind().as_ref() {
                    "identifier" => first.text().to_string(),
                    "attribute" => first.field("object")?.text().to_string(),
                    _ => return None,
                };
                let owner = models.owner(&model)?;
                let top = chain_top(call);
                let text = top.text();
                // What the statement filters or joins on (`group_by(Data.owner_id)` selects by the column, it
                // does not scope by it).
                let filters: String = top
                    .dfs()
                    .filter(|n| n.kind() == "call")
                    .filter(|n| {
                        callee_tail(n).is_some_and(|t| {
                            matches!(
                                t.as_str(),
                                "where" | "filter" | "filter_by" | "join" | "having" | "get"
                            )
                        })
                    })
                    .filter_map(|n| n.field("arguments").map(|a| a.text().to_string()))
                    .collect::<Vec<_>>()
                    .join(" ");
                // A filter on the tenant/owner column or a parent key, or a load by id (the other check's).
                let scoped = owner.columns().iter().any(|c| has_word(&filters, c))
                    || text.contains(".get(")
                    || filters.contains(&format!("{model}.id"))
                    || filters.contains("id=");
                (!scoped).then(|| (call.clone(), model, owner.describe.clone()))
            });
            let Some((node, model, describe)) = listing else {
                continue;
            };
            out.push(CheckMatch {
                fix: None,
                range: node.range(),
                message: Some(format!(
                    "route `{name}` takes the caller (`{}`) but never uses it, and queries `{model}` with no filter on its {describe}: any signed-in user reads every tenant's rows; filter by the caller's tenant or owner",
                    who.join("`, `")
                )),
            });
        }
    }
}

/// I1 `webhook-tenant-unverified`: a webhook route (its name or path says `webhook`/`hook`) takes a tenant id from
/// the URL or the query (`/webhooks/circleback/{workspace_id}`), takes no caller, verifies no signature or shared
/// secret, and hands the id to a write or a job: anyone who learns or guesses the id writes into that tenant's data.
/// Only in repositories whose models have tenant columns. Silent when anything could authenticate the sender: a
/// parameter or dependency other than the database session, a router or decorator `dependencies=`, a header,
/// signature, HMAC, secret, token or key read in the handler, or a call whose name says it checks or verifies.
pub struct WebhookTenantUnverified;

/// Words of a handler that reads something that could authenticate a webhook's sender.
const SENDER_PROOF_WORDS: &[&str] = &[
    "signature",
    "hmac",
    "secret",
    "token",
    "header",
    "authorization",
    "api_key",
    "apikey",
    "compare_digest",
    "password",
];

impl Check for WebhookTenantUnverified {
    fn id(&self) -> &'static str {
        "webhook-tenant-unverified"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["hook"]
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[ROUTE_DECORATOR_TOKENS]
    }

    fn needs(&self) -> &'static [&'static str] {
        ownership_file_globs()
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let handlers = route_handlers(root, ctx);
        if handlers.is_empty() || ctx.repo.tenant_models().is_empty() {
            return;
        }
        if router_declares_dependencies(root) {
            return;
        }
        let imports = ctx.imports(root);
        for func in &handlers {
            let (name, head) = name_and_decorators(func);
            let writes = [".post(", ".put(", ".patch(", ".api_route("]
                .iter()
                .any(|w| head.contains(w));
            if !writes
                || !(name.to_ascii_lowercase().contains("hook") || head.contains("hook"))
                || head.contains("dependencies=")
            {
                continue;
            }
            let ps = params(func);
            // Only the database session may be injected: any other dependency could verify the sender.
            let injected_other = ps.iter().any(|p| {
                p.depends.as_deref().is_some_and(|d| {
                    !(d.contains("session") || d.contains("db") || d.contains("database"))
                })
            });
            if injected_other || ps.iter().any(|p| p.identity) {
                continue;
            }
            let Some(body) = func.field("body") else {
                continue;
            };
            // The code's own words: docstrings and comments say what it does not do ("signature verification can
            // be added later").
            let whole = code_text(func).to_ascii_lowercase();
            if SENDER_PROOF_WORDS.iter().any(|w| whole.contains(w)) {
                continue;
            }
            let own = same_scope_descendants(&body);
            let verifies = own.iter().filter(|n| n.kind() == "call").any(|n| {
                let lower = imports
                    .callee_tail(n)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                checking_name(&lower) || lower.contains("auth")
            });
            if verifies {
                continue;
            }
            let tenants: Vec<&str> = ps
                .iter()
                .filter(|p| {
                    !p.body && p.depends.is_none() && tenant_like(&p.name, &ctx.repo.tenant_columns)
                })
                .map(|p| p.name.as_str())
                .collect();
            // The first write or job the tenant id goes into, in the source's order (queries only select by it).
            let sink = own
                .iter()
                .filter(|n| n.kind() == "call")
                .filter_map(|n| {
                    let args = n.field("arguments")?.text().to_string();
                    let t = tenants.iter().find(|t| mentions_expr(&args, t))?;
                    let tail = imports.callee_tail(n).unwrap_or_default();
                    let quiet = not_a_sink(&tail, n) || QUERY_METHODS.contains(&tail.as_str());
                    (!quiet).then(|| (n.clone(), (*t).to_string(), tail))
                })
                .min_by_key(|(n, _, _)| n.range().start);
            let Some((node, t, tail)) = sink else {
                continue;
            };
            out.push(CheckMatch {
                fix: None,
                range: node.range(),
                message: Some(format!(
                    "webhook `{name}` takes the tenant id `{t}` from the URL and hands it to `{tail}()` with no signature, shared secret or caller checked: anyone who learns or guesses the id writes into that tenant's data; verify the sender (an HMAC of the body with a per-tenant secret, checked with `hmac.compare_digest`) before using the id"
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn handler_params(code: &str) -> Vec<(String, bool, bool)> {
        let root = Lang::Python.ast_grep(code);
        let tree = root.root();
        let Some(func) = tree.dfs().find(|n| n.kind() == "function_definition") else {
            panic!("no function");
        };
        params(&func)
            .into_iter()
            .map(|p| (p.name, p.identity, p.id))
            .collect()
    }

    #[test]
    fn code_text_leaves_out_comments_and_docstrings() {
        let root = Lang::Python.ast_grep(
            "def f(user):\n    \"\"\"Checks the user signature.\"\"\"\n    x = 1  # per user\n    return g(x, 'user')\n",
        );
        let tree = root.root();
        let Some(func) = tree.dfs().find(|n| n.kind() == "function_definition") else {
            panic!("no function");
        };
        let Some(body) = func.field("body") else {
            panic!("no body");
        };
        let code = code_text(&body);
        assert!(!code.contains("signature"), "{code}");
        assert!(!code.contains("per user"), "{code}");
        assert!(code.contains("x = 1"), "{code}");
        assert!(code.contains("'user'"), "a string argument is code: {code}");
    }

    #[test]
    fn callers_ids_and_request_bodies_are_told_apart() {
        let ps = handler_params(
            "def f(chat_id: int, user: UserUpdate, db: Session = Depends(get_db), me: User = Depends(get_current_user), account_id: int = 0, current_user_id: int = Depends(get_current_user_id), Authorize: AuthJWT = Depends(check_auth)):\n    pass\n",
        );
        let want = [
            ("chat_id", false, true),
            ("user", false, false),
            ("db", false, false),
            ("me", true, false),
            ("account_id", false, true),
            ("current_user_id", true, false),
            ("Authorize", true, false),
        ];
        assert_eq!(
            ps,
            want.iter()
                .map(|(n, i, d)| (n.to_string(), *i, *d))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_administrator_dependency_marks_an_admin_route() {
        let root = Lang::Python.ast_grep(
            "def f(admin_session: UserSession = Depends(get_admin), user_id: str = Form(), me: User = Depends(get_current_user)):\n    pass\n",
        );
        let tree = root.root();
        let Some(func) = tree.dfs().find(|n| n.kind() == "function_definition") else {
            panic!("no function");
        };
        let admin: Vec<(String, bool)> = params(&func)
            .into_iter()
            .map(|p| (p.name, p.admin))
            .collect();
        assert_eq!(
            admin,
            [
                ("admin_session".to_string(), true),
                ("user_id".to_string(), false),
                ("me".to_string(), false)
            ]
        );
    }

    #[test]
    fn words_are_whole_identifiers() {
        assert!(has_word("chat.user_id != me.id", "user_id"));
        assert!(!has_word("chat.user_ids", "user_id"));
        assert!(!has_word("other_user_id", "user_id"));
    }
}
