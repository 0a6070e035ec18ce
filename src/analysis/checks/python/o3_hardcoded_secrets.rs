//! O3: secrets written into the code.
//!
//! * [`KnownFormatSecret`]: a string literal that is a credential in a provider's documented format (`sk-…`,
//!   `sk-ant-…`, `ghp_…`, `github_pat_…`, `xoxb-…`, `AKIA…`, `AIza…`, `sk_live_…`, `hf_…`, `glpat-…`, `lsv2_…`, a PEM
//!   private key).
//! * [`NamedSecretLiteral`]: a long, random-looking literal assigned to or passed as something named like a secret
//!   (`OPENAI_API_KEY = "…"`, `api_key="…"`, `{"client_secret": "…"}`, `os.getenv("JWT_SECRET", "…")`).
//! * [`CredentialsInUrl`]: a database/broker URL literal with a real-looking password (`postgresql://app:…@db/app`).
//!
//! Placeholders (`"changeme"`, `"your-api-key"`, `"sk-xxxx…"`, `"<token>"`, `"${VAR}"`, env var names, values
//! with `example`/`test`/`dummy`/`fake`), f-strings, docstrings and tests are not reported.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::environ::is_env_get;
use crate::analysis::semantic::python::syntax::{
    callee, keyword_arg, positional_arg, string_value,
};
use crate::analysis::semantic::secrets::{
    KNOWN_FORMAT_TOKENS, SECRET_NAME_TOKENS, known_format_secret, known_formats, looks_generated,
    placeholder_password, secret_name, strip_auth_prefix, url_re,
};

fn is_docstring(node: &PyNode<'_>) -> bool {
    node.parent().is_some_and(|p| {
        p.kind() == "expression_statement" && p.children().filter(|c| c.is_named()).count() == 1
    })
}

pub struct KnownFormatSecret;

impl Check for KnownFormatSecret {
    fn id(&self) -> &'static str {
        "known-format-secret"
    }

    fn tokens(&self) -> &'static [&'static str] {
        KNOWN_FORMAT_TOKENS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for node in ctx.of_kind(root, "string").iter() {
            if node
                .parent()
                .is_some_and(|p| p.kind() == "concatenated_string")
                || is_docstring(node)
            {
                continue;
            }
            let Some(value) = string_value(node) else {
                continue;
            };
            if let Some(provider) = known_format_secret(&value) {
                out.push(CheckMatch {
                    fix: None,
                    range: node.range(),
                    message: Some(format!(
                        "this string is a {provider} committed to the code: everyone with read access to the repository, its forks, CI logs and built images holds it; revoke it and load it from the environment or a secret store"
                    )),
                });
            }
        }
    }
}

pub struct NamedSecretLiteral;

/// Where a literal is bound to a name: (the name, the literal node).
fn named_literals<'r>(ctx: &FileContext<'r>, root: &PyNode<'r>) -> Vec<(String, PyNode<'r>)> {
    let mut out = Vec::new();
    let imports = ctx.imports(root);
    let kinds = [
        "assignment",
        "keyword_argument",
        "default_parameter",
        "typed_default_parameter",
        "pair",
        "call",
    ];
    let nodes = kinds.iter().flat_map(|k| ctx.of_kind(root, k).to_vec());
    for node in nodes {
        match node.kind().as_ref() {
            "assignment" => {
                let (Some(left), Some(right)) = (node.field("left"), node.field("right")) else {
                    continue;
                };
                let name = match left.kind().as_ref() {
                    "identifier" => left.text().to_string(),
                    "attribute" => match left.field("attribute") {
                        Some(a) => a.text().to_string(),
                        None => continue,
                    },
                    _ => continue,
                };
                if let Some(lit) = literal_or_default(&right) {
                    out.push((name, lit));
                }
            }
            "keyword_argument" => {
                let (Some(n), Some(v)) = (node.field("name"), node.field("value")) else {
                    continue;
                };
                if is_string(&v) {
                    out.push((n.text().to_string(), v));
                }
            }
            "default_parameter" | "typed_default_parameter" => {
                let (Some(n), Some(v)) = (node.field("name"), node.field("value")) else {
                    continue;
                };
                if is_string(&v) {
                    out.push((n.text().to_string(), v));
                }
            }
            "pair" => {
                let (Some(k), Some(v)) = (node.field("key"), node.field("value")) else {
                    continue;
                };
                if let Some(key) = string_value(&k)
                    && is_string(&v)
                {
                    out.push((key, v));
                }
            }
            "call" => {
                // os.getenv("OPENAI_API_KEY", "sk-…") / os.environ.get(...): a literal fallback for a secret.
                if is_env_get(&node, &imports)
                    && let Some(name) = positional_arg(&node, 0).and_then(|a| string_value(&a))
                    && let Some(default) =
                        positional_arg(&node, 1).or_else(|| keyword_arg(&node, "default"))
                    && is_string(&default)
                {
                    out.push((name, default));
                }
            }
            _ => {}
        }
    }
    out
}

fn is_string(n: &PyNode<'_>) -> bool {
    matches!(n.kind().as_ref(), "string" | "concatenated_string") && string_value(n).is_some()
}

/// The literal on the right of an assignment: the string itself, or `Field(default="…")` / `Field("…")`.
fn literal_or_default<'r>(right: &PyNode<'r>) -> Option<PyNode<'r>> {
    if is_string(right) {
        return Some(right.clone());
    }
    if right.kind() == "call" {
        let f = callee(right)?;
        if f == "Field" || f.ends_with(".Field") || f == "SecretStr" {
            let v = keyword_arg(right, "default").or_else(|| positional_arg(right, 0))?;
            return is_string(&v).then_some(v);
        }
    }
    None
}

impl Check for NamedSecretLiteral {
    fn id(&self) -> &'static str {
        "named-secret-literal"
    }

    fn tokens(&self) -> &'static [&'static str] {
        SECRET_NAME_TOKENS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for (name, lit) in named_literals(ctx, root) {
            if !secret_name(&name) {
                continue;
            }
            let Some(value) = string_value(&lit) else {
                continue;
            };
            let v = strip_auth_prefix(value.trim());
            let password = name.to_ascii_lowercase().contains("passw");
            if !looks_generated(v, password) {
                continue;
            }
            // Known formats are reported by the critical detector.
            if known_formats().iter().any(|(f, _)| f.is_match(v)) {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: lit.range(),
                message: Some(format!(
                    "`{name}` is given a hard-coded secret value: it ships with every copy of the code and cannot be rotated without a deploy; read it from the environment through the settings object"
                )),
            });
        }
    }
}

pub struct CredentialsInUrl;

impl Check for CredentialsInUrl {
    fn id(&self) -> &'static str {
        "credentials-in-url"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["://"]
    }

    /// `user:password@host`.
    fn also_requires(&self) -> &'static [&'static [&'static str]] {
        &[&["@"]]
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        for node in ctx.of_kind(root, "string").iter() {
            // The URL's `@` and `/` are literal characters of the string (escapes are not decoded): most
            // strings have neither, and are dropped before the costlier parent and docstring lookups.
            let raw = node.text();
            if !(raw.contains('@') && raw.contains('/')) {
                continue;
            }
            if node
                .parent()
                .is_some_and(|p| p.kind() == "concatenated_string")
                || is_docstring(node)
            {
                continue;
            }
            let Some(value) = string_value(node) else {
                continue;
            };
            let Some(c) = url_re().captures(&value) else {
                continue;
            };
            let user = c.get(3).map_or("", |m| m.as_str());
            let pw = c.get(4).map_or("", |m| m.as_str());
            let host = c.get(5).map_or("", |m| m.as_str()).to_ascii_lowercase();
            if placeholder_password(user, pw)
                || host.contains("example")
                || host.starts_with('{')
                || host.starts_with('$')
            {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: node.range(),
                message: Some(format!(
                    "this `{}://` URL carries a literal password for user `{user}`: the credential is in the code and every copy of it; build the URL from settings (`PostgresDsn`, `SecretStr`) read from the environment",
                    c.get(1).map_or("", |m| m.as_str())
                )),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::semantic::secrets::{pem_body_real, readable_words};

    #[test]
    fn generated_values() {
        assert!(looks_generated("9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c", false));
        assert!(looks_generated("q8Zr2LkT0vWm5YxN3pHs7JdC", false));
        assert!(!looks_generated("changeme", false));
        assert!(!looks_generated("your-api-key-goes-here-1234", false));
        assert!(!looks_generated("OPENAI_API_KEY", false));
        assert!(!looks_generated("supersecretkey1234567890", false));
        assert!(!looks_generated("a-very-long-but-readable-value-1", false));
        assert!(looks_generated("Tr0ub4dor&3xQ", true));
        assert!(!looks_generated("hunter2", true));
        assert!(!looks_generated("ExponentPushToken[token1]", false));
        assert_eq!(readable_words("VERY-SECRET-OPENAI-API-KEY-DO-NOT-LEAK"), 7);
        assert!(readable_words("proj-4fQm9ZkR2tVx7LbN0pWc3HsJ8dYe5GaU1iTo6KqMzBr") < 3);
        assert!(!pem_body_real(
            "-----BEGIN PRIVATE KEY-----\\nMIIB\\n-----END PRIVATE KEY-----"
        ));
    }

    #[test]
    fn names() {
        for n in [
            "OPENAI_API_KEY",
            "api_key",
            "client_secret",
            "JWT_SECRET",
            "password",
            "slack_bot_token",
            "SECRET_KEY",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in [
            "next_page_token",
            "max_tokens",
            "api_key_header",
            "token_type",
            "has_api_key",
            "secret_name",
        ] {
            assert!(!secret_name(n), "{n}");
        }
    }

    #[test]
    fn url_passwords() {
        assert!(placeholder_password("postgres", "postgres"));
        assert!(placeholder_password("app", "changethis"));
        assert!(placeholder_password("app", "${DB_PASSWORD}"));
        assert!(!placeholder_password("app", "Zq81kL0pMx"));
    }
}
