//! I4: secrets sent to clients.
//!
//! Two checks over route handlers (functions decorated with `@router.get(...)` and friends):
//!
//! * [`SecretInResponse`]: a handler returns a stored secret itself: `return {"api_key": app.api_key}`,
//!   `return settings.OPENAI_API_KEY`, `JSONResponse({"secret": cfg.client_secret.get_secret_value()})`.
//! * [`SecretFieldInResponseModel`]: a pydantic class used as a route's `response_model` (or return annotation)
//!   in the same file declares a plain-`str` field named like a secret (`api_key`, `password`, `client_secret`...),
//!   so whatever the handler fills in is serialised to the client.
//!
//! Endpoints that create or rotate a credential legitimately show it once; they are recognised by the handler's
//! name (`create_…`, `generate_…`, `rotate_…`, `regenerate_…`, `issue_…`) and by response classes named that way.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::environ::is_env_get;
use crate::analysis::semantic::python::imports::Imports;
use crate::analysis::semantic::python::roles::{ROUTE_DECORATOR_TOKENS, is_route_handler};
use crate::analysis::semantic::python::scopes::{OwnNodes, own_nodes};
use crate::analysis::semantic::python::syntax::{
    callee, function_name, keyword_arg, positional_arg, string_value,
};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

/// Names of attributes/fields that hold a secret value.
fn secret_name_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?i)^_*((\w+_)?(api_?key|apikey|secret_?key|client_?secret|password|passwd|hashed_?password|password_?hash|private_?key|secret_?access_?key|signing_?key|encryption_?key|webhook_?secret|api_?token|bot_?token|service_?token|personal_?access_?token)|\w+_secret)$",
        )
        .expect("valid regex")
    })
}

/// Secret-looking names that describe the secret rather than hold it.
fn not_a_value_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)mask|redact|hint|preview|prefix|suffix|last_?4|^_*(is|has|use|uses|requires?|needs?)_|_(set|configured|present|exists|required|enabled)$|obfuscat|display|(^|_)(invalid|missing|wrong|incorrect|mismatch|mismatched|expired|errors?|already|unknown|too_short|too_weak|weak)(_|$)")
            .expect("valid regex")
    })
}

fn is_secret_name(name: &str) -> bool {
    secret_name_re().is_match(name) && !not_a_value_re().is_match(name)
}

/// Handler or class names of endpoints that legitimately reveal a credential once.
fn reveals_once_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)creat|generat|rotat|regenerat|issue|reveal|reset|register|signup|sign_up|new|provision|onboard|exchange|oauth|callback|token")
            .expect("valid regex")
    })
}

/// Is this expression the value of a stored secret (not a flag, mask or fresh value)?
fn secret_value(expr: &PyNode<'_>, imports: &Imports) -> Option<String> {
    match expr.kind().as_ref() {
        "attribute" => {
            let attr = expr.field("attribute")?;
            // A member of an error-code or message enum (`APIErrorCode.USER_UPDATE_INVALID_PASSWORD`) names a
            // condition, it holds no secret.
            let object = expr.field("object")?.text();
            let owner = object
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if [
                "code", "codes", "error", "errors", "message", "messages", "reason", "status",
            ]
            .iter()
            .any(|w| owner.ends_with(w))
            {
                return None;
            }
            is_secret_name(&attr.text()).then(|| expr.text().split_whitespace().collect())
        }
        "call" => {
            let f = callee(expr)?;
            // `x.api_key.get_secret_value()`
            if let Some(obj) = f.strip_suffix(".get_secret_value") {
                let last = obj.rsplit('.').next().unwrap_or(obj);
                return is_secret_name(last).then(|| expr.text().split_whitespace().collect());
            }
            // `os.getenv("OPENAI_API_KEY")`, `os.environ.get("JWT_SECRET")`
            if is_env_get(expr, imports) {
                let name = string_value(&positional_arg(expr, 0)?)?;
                return is_secret_name(&name).then(|| expr.text().split_whitespace().collect());
            }
            None
        }
        "subscript" => {
            let value: String = expr.field("value")?.text().split_whitespace().collect();
            if value != "os.environ" && value != "environ" {
                return None;
            }
            let name = string_value(&expr.field("subscript")?)?;
            is_secret_name(&name).then(|| expr.text().split_whitespace().collect())
        }
        _ => None,
    }
}

/// Secret values inside a returned expression: the expression itself, dict values (nested dicts too), and the
/// content of a `JSONResponse(...)`.
fn secrets_in<'r>(expr: &PyNode<'r>, imports: &Imports, out: &mut Vec<(PyNode<'r>, String)>) {
    if let Some(s) = secret_value(expr, imports) {
        out.push((expr.clone(), s));
        return;
    }
    match expr.kind().as_ref() {
        "dictionary" => {
            for pair in expr.children().filter(|p| p.kind() == "pair") {
                if let Some(v) = pair.field("value") {
                    secrets_in(&v, imports, out);
                }
            }
        }
        "call" => {
            let f = imports.callee(expr).unwrap_or_default();
            let last = f.rsplit('.').next().unwrap_or(&f);
            if matches!(
                last,
                "JSONResponse" | "ORJSONResponse" | "UJSONResponse" | "PlainTextResponse" | "dict"
            ) {
                if let Some(c) = keyword_arg(expr, "content").or_else(|| positional_arg(expr, 0)) {
                    secrets_in(&c, imports, out);
                }
                if last == "dict"
                    && let Some(args) = expr.field("arguments")
                {
                    for kw in args.children().filter(|a| a.kind() == "keyword_argument") {
                        if let Some(v) = kw.field("value") {
                            secrets_in(&v, imports, out);
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn route_handlers<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<PyNode<'r>> {
    ctx.of_kind(root, "function_definition")
        .iter()
        .filter(|n| is_route_handler(n))
        .cloned()
        .collect()
}

pub struct SecretInResponse;

impl Check for SecretInResponse {
    fn id(&self) -> &'static str {
        "secret-in-response"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "key", "secret", "password", "passw", "token", "KEY", "SECRET", "PASSWORD", "TOKEN",
        ]
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[ROUTE_DECORATOR_TOKENS]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        for func in route_handlers(ctx, root) {
            let name = function_name(&func).unwrap_or_default();
            if reveals_once_re().is_match(&name) {
                continue;
            }
            for node in func
                .field("body")
                .map(|b| own_nodes(&b, OwnNodes::Below))
                .unwrap_or_default()
            {
                if node.kind() != "return_statement" {
                    continue;
                }
                let Some(value) = node.children().find(|c| c.is_named()) else {
                    continue;
                };
                let mut found = Vec::new();
                secrets_in(&value, &imports, &mut found);
                for (expr, text) in found {
                    out.push(CheckMatch {
                        fix: None,
                        range: expr.range(),
                        message: Some(format!(
                            "route `{name}` returns `{text}` to the client: a stored secret leaves the server, and anyone who can call this route (or read its responses in a browser, proxy log or cache) holds the credential"
                        )),
                    });
                }
            }
        }
    }
}

pub struct SecretFieldInResponseModel;

/// Class names a route uses as its response: `response_model=X`, `response_model=list[X]`, `-> X`.
fn response_classes<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for func in route_handlers(ctx, root) {
        let name = function_name(&func).unwrap_or_default();
        let mut exprs: Vec<PyNode<'_>> = Vec::new();
        if let Some(dd) = func.parent() {
            for dec in dd.children().filter(|d| d.kind() == "decorator") {
                for call in dec.dfs().filter(|n| n.kind() == "call") {
                    if let Some(rm) = keyword_arg(&call, "response_model") {
                        exprs.push(rm);
                    }
                }
            }
        }
        if let Some(rt) = func.field("return_type") {
            exprs.push(rt);
        }
        for e in exprs {
            for id in e.dfs().filter(|n| n.kind() == "identifier") {
                out.entry(id.text().to_string())
                    .or_default()
                    .push(name.clone());
            }
        }
    }
    out
}

impl Check for SecretFieldInResponseModel {
    fn id(&self) -> &'static str {
        "secret-field-in-response-model"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["response_model", "->"]
    }

    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[
            ROUTE_DECORATOR_TOKENS,
            &[
                "key", "secret", "password", "passw", "token", "KEY", "SECRET", "PASSWORD",
                "TOKEN", "Key", "Secret", "Password", "Passw", "PASSW", "Token",
            ],
        ]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let used = response_classes(ctx, root);
        if used.is_empty() {
            return;
        }
        let classes: HashMap<String, PyNode<'_>> = ctx
            .of_kind(root, "class_definition")
            .iter()
            .cloned()
            .filter_map(|c| Some((c.field("name")?.text().to_string(), c)))
            .collect();
        let mut reported: HashSet<usize> = HashSet::new();
        for (class_name, routes) in &used {
            if reveals_once_re().is_match(class_name)
                || routes.iter().all(|r| reveals_once_re().is_match(r))
            {
                continue;
            }
            // The class and its bases defined in this file.
            let mut todo = vec![class_name.clone()];
            let mut seen: HashSet<String> = HashSet::new();
            while let Some(c) = todo.pop() {
                if !seen.insert(c.clone()) {
                    continue;
                }
                let Some(class) = classes.get(&c) else {
                    continue;
                };
                let body_text = class.text();
                if body_text.contains("mask")
                    || body_text.contains("exclude=True")
                    || body_text.contains("field_serializer")
                    || body_text.contains("model_serializer")
                {
                    continue;
                }
                if let Some(bases) = class.field("superclasses") {
                    todo.extend(
                        bases
                            .children()
                            .filter(|b| b.kind() == "identifier")
                            .map(|b| b.text().to_string()),
                    );
                }
                let Some(body) = class.field("body") else {
                    continue;
                };
                for stmt in body
                    .children()
                    .filter(|s| s.kind() == "expression_statement")
                {
                    let Some(assign) = stmt.child(0).filter(|a| a.kind() == "assignment") else {
                        continue;
                    };
                    let (Some(left), Some(ty)) = (assign.field("left"), assign.field("type"))
                    else {
                        continue;
                    };
                    if left.kind() != "identifier" || !is_secret_name(&left.text()) {
                        continue;
                    }
                    let ty_text = ty.text();
                    if ty_text.contains("Secret")
                        || ty_text.contains("bool")
                        || ty_text.contains("int")
                    {
                        continue;
                    }
                    if !reported.insert(left.range().start) {
                        continue;
                    }
                    let via = routes.first().cloned().unwrap_or_default();
                    out.push(CheckMatch {
                        fix: None,
                        range: assign.range(),
                        message: Some(format!(
                            "response model `{class_name}` (returned by `{via}`) has the field `{}: {}`: whatever the handler puts there is sent to the client; drop it, mask it, or type it `SecretStr` (low confidence: the value may already be masked elsewhere)",
                            left.text(),
                            ty_text.split_whitespace().collect::<Vec<_>>().join(" ")
                        )),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for n in [
            "api_key",
            "OPENAI_API_KEY",
            "client_secret",
            "password",
            "hashed_password",
            "langsmith_api_key",
            "bot_token",
        ] {
            assert!(is_secret_name(n), "{n}");
        }
        for n in [
            "masked_api_key",
            "has_api_key",
            "api_key_id",
            "api_key_set",
            "access_token",
            "token",
            "secret_name",
            "password_hint",
            "USER_UPDATE_INVALID_PASSWORD",
            "PASSWORD_MISMATCH",
        ] {
            assert!(!is_secret_name(n), "{n}");
        }
    }
}
