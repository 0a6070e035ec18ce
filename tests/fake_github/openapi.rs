//! Checks the requests the App sends against GitHub's own REST description (the subset in
//! `../shared/github/openapi/api.github.com.subset.json`): method and path against the path templates, path
//! and query parameters against their schemas, and the JSON body against the request body schema with `$ref`s
//! resolved. A small validator of the keywords the OpenAPI 3.0 schema dialect of that file uses (type,
//! nullable, enum, properties, required, additionalProperties, items, min/maxItems, min/maxLength,
//! minimum/maximum, pattern, format date-time, oneOf, anyOf, allOf); annotations (description, example,
//! discriminator, deprecated) are ignored, as a validator must. GraphQL requests are checked for shape.

use serde_json::{Map, Value};
use std::path::PathBuf;

/// Documented GitHub REST routes the App uses that the shared subset does not include: their method and path
/// template are checked, their bodies cannot be.
const OUTSIDE_SUBSET: &[(&str, &str, &[&str])] = &[
    (
        "GET",
        "/repos/{owner}/{repo}/git/trees/{tree_sha}",
        &["recursive"],
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/commits/{commit_sha}/pulls",
        &["per_page", "page"],
    ),
];

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    Param(String),
    /// A parameter that takes the rest of the path (`x-multi-segment`).
    Rest(String),
}

#[derive(Debug)]
struct Op {
    method: String,
    template: String,
    segs: Vec<Seg>,
    /// The operation object; `None` for the documented routes outside the subset.
    op: Option<Value>,
    extra_query: Vec<String>,
}

/// The loaded description.
#[derive(Debug)]
pub struct Spec {
    doc: Value,
    ops: Vec<Op>,
}

/// Where the shared description lives.
pub fn spec_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/github/openapi/api.github.com.subset.json"
    ))
}

/// Load the description, or say why validation is skipped.
pub fn load() -> Result<Spec, String> {
    let path = spec_path();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{} not readable ({e})", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut ops = Vec::new();
    let paths = doc["paths"]
        .as_object()
        .ok_or_else(|| "no paths in the description".to_string())?;
    for (template, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (method, op) in item {
            if method == "parameters" {
                continue;
            }
            let params = resolved_params(&doc, op);
            let segs = segments(template, |name| {
                params
                    .iter()
                    .any(|p| p["name"] == name && p["x-multi-segment"] == true)
            });
            ops.push(Op {
                method: method.to_ascii_uppercase(),
                template: template.clone(),
                segs,
                op: Some(op.clone()),
                extra_query: Vec::new(),
            });
        }
    }
    for (method, template, query) in OUTSIDE_SUBSET {
        ops.push(Op {
            method: (*method).to_string(),
            template: (*template).to_string(),
            segs: segments(template, |_| false),
            op: None,
            extra_query: query.iter().map(|q| (*q).to_string()).collect(),
        });
    }
    Ok(Spec { doc, ops })
}

fn segments(template: &str, multi: impl Fn(&str) -> bool) -> Vec<Seg> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if multi(name) => Seg::Rest(name.to_string()),
                Some(name) => Seg::Param(name.to_string()),
                None => Seg::Lit(s.to_string()),
            },
        )
        .collect()
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..32 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return v;
        };
        let Some(pointer) = r.strip_prefix('#') else {
            return v;
        };
        match doc.pointer(pointer) {
            Some(t) => v = t,
            None => return v,
        }
    }
    v
}

fn resolved_params(doc: &Value, op: &Value) -> Vec<Value> {
    op["parameters"]
        .as_array()
        .map(|a| a.iter().map(|p| resolve(doc, p).clone()).collect())
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(h) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(h, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is this request a GraphQL call (`/graphql` on github.com, `/api/graphql` on Enterprise Server)?
pub fn is_graphql(path: &str) -> bool {
    path == "/graphql" || path == "/api/graphql"
}

/// The REST path without the GitHub Enterprise Server prefix.
pub fn rest_path(path: &str) -> &str {
    path.strip_prefix("/api/v3").unwrap_or(path)
}

impl Spec {
    /// The path template a request matches, if any (for per-route counts).
    pub fn route(&self, method: &str, path: &str) -> Option<String> {
        let path = rest_path(path);
        self.ops
            .iter()
            .find(|o| o.method == method && self.match_path(o, path).is_some())
            .map(|o| o.template.clone())
    }

    fn match_path(&self, op: &Op, path: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let mut out = Vec::new();
        for (i, seg) in op.segs.iter().enumerate() {
            match seg {
                Seg::Lit(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Seg::Param(name) => {
                    let p = parts.get(i).filter(|p| !p.is_empty())?;
                    out.push((name.clone(), percent_decode(p)));
                }
                Seg::Rest(name) => {
                    if i >= parts.len() {
                        return None;
                    }
                    let rest = parts[i..].join("/");
                    if rest.is_empty() {
                        return None;
                    }
                    out.push((name.clone(), percent_decode(&rest)));
                    return Some(out);
                }
            }
        }
        (parts.len() == op.segs.len()).then_some(out)
    }

    /// Check one request; `Err` lists what does not match GitHub's description.
    pub fn check(&self, method: &str, path: &str, query: &str, body: &[u8]) -> Result<(), String> {
        if is_graphql(path) {
            return check_graphql(method, body);
        }
        let rest = rest_path(path);
        let candidates: Vec<&Op> = self
            .ops
            .iter()
            .filter(|o| self.match_path(o, rest).is_some())
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "{method} {path}: no such path in GitHub's REST description"
            ));
        }
        let Some(op) = candidates.iter().find(|o| o.method == method) else {
            return Err(format!(
                "{method} {path}: method not allowed (the path takes {})",
                candidates
                    .iter()
                    .map(|o| o.method.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let mut errors = Vec::new();
        let path_params = self.match_path(op, rest).unwrap_or_default();
        let query: Vec<(String, String)> = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let Some(opv) = &op.op else {
            for (k, _) in &query {
                if !op.extra_query.contains(k) {
                    errors.push(format!("unknown query parameter {k}"));
                }
            }
            return finish(method, path, errors);
        };
        let params = resolved_params(&self.doc, opv);
        for p in &params {
            let name = p["name"].as_str().unwrap_or_default();
            let schema = &p["schema"];
            match p["in"].as_str() {
                Some("path") => match path_params.iter().find(|(n, _)| n == name) {
                    Some((_, v)) => self.check_param(name, v, schema, &mut errors),
                    None => errors.push(format!("path parameter {name} missing")),
                },
                Some("query") => {
                    let vals: Vec<&String> = query
                        .iter()
                        .filter(|(k, _)| k == name)
                        .map(|(_, v)| v)
                        .collect();
                    if vals.is_empty() && p["required"] == true {
                        errors.push(format!("required query parameter {name} missing"));
                    }
                    for v in vals {
                        self.check_param(name, v, schema, &mut errors);
                        // Documented in the parameter's description rather than its schema.
                        if name == "per_page" && v.parse::<u64>().is_ok_and(|n| n > 100) {
                            errors.push(format!("per_page={v} is above GitHub's maximum of 100"));
                        }
                    }
                }
                _ => {}
            }
        }
        for (k, _) in &query {
            if !params
                .iter()
                .any(|p| p["in"] == "query" && p["name"] == k.as_str())
            {
                errors.push(format!("unknown query parameter {k}"));
            }
        }
        let rb = resolve(&self.doc, &opv["requestBody"]);
        if rb.is_null() {
            if !body.is_empty() {
                errors.push("a body was sent to an operation that takes none".into());
            }
        } else if body.is_empty() {
            if rb["required"] == true {
                errors.push("request body required".into());
            }
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(v) => {
                    let schema = &rb["content"]["application/json"]["schema"];
                    self.validate(schema, &v, "body", &mut errors);
                }
                Err(e) => errors.push(format!("body is not JSON: {e}")),
            }
        }
        finish(method, path, errors)
    }

    fn check_param(&self, name: &str, raw: &str, schema: &Value, errors: &mut Vec<String>) {
        let schema = resolve(&self.doc, schema);
        let v = match schema["type"].as_str() {
            Some("integer") => match raw.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    errors.push(format!("parameter {name}={raw:?} is not an integer"));
                    return;
                }
            },
            Some("boolean") => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => {
                    errors.push(format!("parameter {name}={raw:?} is not a boolean"));
                    return;
                }
            },
            _ => Value::String(raw.to_string()),
        };
        self.validate(schema, &v, &format!("parameter {name}"), errors);
    }

    /// Validate `v` against an OpenAPI 3.0 schema object.
    pub fn validate(&self, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = resolve(&self.doc, schema);
        let Some(s) = schema.as_object() else {
            return;
        };
        if v.is_null() && s.get("nullable") == Some(&Value::Bool(true)) {
            return;
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                "object" => v.is_object(),
                "array" => v.is_array(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: expected {t}, got {}", short(v)));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            errors.push(format!(
                "{at}: {} is not one of {}",
                short(v),
                Value::Array(e.clone())
            ));
        }
        if let Some(text) = v.as_str() {
            let n = text.chars().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && n > max
            {
                errors.push(format!("{at}: {n} characters, more than maxLength {max}"));
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && n < min
            {
                errors.push(format!("{at}: {n} characters, fewer than minLength {min}"));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str)
                && let Ok(re) = regex::Regex::new(p)
                && !re.is_match(text)
            {
                errors.push(format!("{at}: {text:?} does not match /{p}/"));
            }
            if s.get("format").and_then(Value::as_str) == Some("date-time")
                && chrono::DateTime::parse_from_rfc3339(text).is_err()
            {
                errors.push(format!("{at}: {text:?} is not an RFC 3339 date-time"));
            }
        }
        if let Some(n) = v.as_f64() {
            if let Some(max) = s.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errors.push(format!("{at}: {n} above maximum {max}"));
            }
            if let Some(min) = s.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errors.push(format!("{at}: {n} below minimum {min}"));
            }
        }
        if let Some(items) = v.as_array() {
            let n = items.len() as u64;
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && n > max
            {
                errors.push(format!("{at}: {n} items, more than maxItems {max}"));
            }
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && n < min
            {
                errors.push(format!("{at}: {n} items, fewer than minItems {min}"));
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.validate(item_schema, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        if let Some(obj) = v.as_object() {
            self.validate_object(s, obj, at, errors);
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.validate(sub, v, at, errors);
            }
        }
        if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
            let passing = any.iter().filter(|sub| self.passes(sub, v)).count();
            if passing == 0 {
                errors.push(format!("{at}: matches none of the anyOf alternatives"));
            }
        }
        if let Some(one) = s.get("oneOf").and_then(Value::as_array) {
            let passing = one.iter().filter(|sub| self.passes(sub, v)).count();
            if passing != 1 {
                errors.push(format!(
                    "{at}: matches {passing} of the oneOf alternatives (exactly one required)"
                ));
            }
        }
    }

    fn validate_object(
        &self,
        s: &Map<String, Value>,
        obj: &Map<String, Value>,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    errors.push(format!("{at}: required property {r} missing"));
                }
            }
        }
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => self.validate(ps, val, &format!("{at}.{k}"), errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{at}: property {k} is not allowed"))
                    }
                    Some(extra @ Value::Object(_)) => {
                        self.validate(extra, val, &format!("{at}.{k}"), errors)
                    }
                    _ => {}
                },
            }
        }
    }

    fn passes(&self, schema: &Value, v: &Value) -> bool {
        let mut e = Vec::new();
        self.validate(schema, v, "", &mut e);
        e.is_empty()
    }
}

fn finish(method: &str, path: &str, errors: Vec<String>) -> Result<(), String> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{method} {path}: {}", errors.join("; ")))
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// A GraphQL request: POST, a JSON object with a non-empty `query` string, `variables` an object when
/// present, and every non-null variable the query declares given.
fn check_graphql(method: &str, body: &[u8]) -> Result<(), String> {
    let err = |m: String| Err(format!("{method} graphql: {m}"));
    if method != "POST" {
        return err("GraphQL takes POST".into());
    }
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return err(format!("body is not JSON: {e}")),
    };
    let Some(obj) = v.as_object() else {
        return err("body is not an object".into());
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "query" | "variables" | "operationName") {
            return err(format!("unknown key {k}"));
        }
    }
    let Some(query) = obj
        .get("query")
        .and_then(Value::as_str)
        .filter(|q| !q.trim().is_empty())
    else {
        return err("no query string".into());
    };
    let vars = match obj.get("variables") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => return err(format!("variables is not an object: {}", short(other))),
    };
    // Declared variables: `($a:String!,$b:Int)` before the first `{`.
    let head = query.split('{').next().unwrap_or_default();
    let mut declared = Vec::new();
    if let Ok(re) = regex::Regex::new(r"\$(\w+)\s*:\s*([\w\[\]!]+)") {
        for c in re.captures_iter(head) {
            let (name, ty) = (c[1].to_string(), c[2].to_string());
            if ty.ends_with('!') && vars.get(&name).is_none_or(Value::is_null) {
                return err(format!("non-null variable ${name} not given"));
            }
            declared.push(name);
        }
    }
    for k in vars.keys() {
        if !declared.contains(k) {
            return err(format!("variable {k} is not declared by the query"));
        }
    }
    let opens = query.matches('{').count();
    let closes = query.matches('}').count();
    if opens != closes || opens == 0 {
        return err("unbalanced braces in the query".into());
    }
    Ok(())
}
