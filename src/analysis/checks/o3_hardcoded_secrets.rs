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

use super::{Check, CheckMatch, PyNode, callee, keyword_arg, positional_arg, string_value};
use crate::analysis::context::FileContext;
use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

/// Provider formats: (regex over the whole literal, provider name).
fn known_formats() -> &'static [(Regex, &'static str)] {
    static F: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    F.get_or_init(|| {
        [
            (
                r"^sk-ant-(api|admin)\d{2}-[A-Za-z0-9_-]{32,}$",
                "Anthropic API key",
            ),
            (r"^sk-lf-[0-9a-f-]{32,}$", "Langfuse secret key"),
            (
                r"^sk-(proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}$",
                "OpenAI API key",
            ),
            (r"^gh[pousr]_[A-Za-z0-9]{36,}$", "GitHub token"),
            (
                r"^github_pat_[A-Za-z0-9_]{50,}$",
                "GitHub fine-grained token",
            ),
            (r"^xox[bpaors]-\d{6,}-[A-Za-z0-9-]{10,}$", "Slack token"),
            (r"^(AKIA|ASIA)[0-9A-Z]{16}$", "AWS access key id"),
            (r"^AIza[0-9A-Za-z_-]{35}$", "Google API key"),
            (r"^(sk|rk)_live_[0-9A-Za-z]{24,}$", "Stripe live secret key"),
            (r"^hf_[A-Za-z0-9]{34,}$", "Hugging Face token"),
            (r"^glpat-[A-Za-z0-9_-]{20,}$", "GitLab token"),
            (
                r"^lsv2_(pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}$",
                "LangSmith API key",
            ),
            (r"^gsk_[A-Za-z0-9]{40,}$", "Groq API key"),
            (
                r"-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----",
                "private key",
            ),
        ]
        .into_iter()
        .map(|(p, n)| (Regex::new(p).expect("valid regex"), n))
        .collect()
    })
}

/// Names that hold a secret value.
pub(super) fn secret_name(name: &str) -> bool {
    static NAME: OnceLock<Regex> = OnceLock::new();
    static NOT: OnceLock<Regex> = OnceLock::new();
    re(
        &NAME,
        r"(?i)^_*(\w+_)?(api_?key|apikey|secret|secret_?key|client_?secret|password|passwd|private_?key|secret_?access_?key|signing_?key|encryption_?key|webhook_?secret|jwt_?secret|token|access_?token|refresh_?token|auth_?token|api_?token|bot_?token|bearer_?token|session_?token|app_?token)$",
    )
    .is_match(name)
        && !re(
            &NOT,
            r"(?i)(page|next|continuation|cursor|sync|pagination|stop|eos|bos|pad|unk|sep|cls|mask|special|csrf|xsrf|start|end|max|min)_?tokens?$|^_*(is|has|use|uses|requires?)_",
        )
        .is_match(name)
}

/// Values that are obviously not real: templates, examples, env var names, paths, URLs, prose.
pub(super) fn is_placeholder(v: &str) -> bool {
    static PH: OnceLock<Regex> = OnceLock::new();
    let lower = v.to_ascii_lowercase();
    re(
        &PH,
        r"(?i)your|xxx|example|change|placeholder|dummy|fake|sample|test|todo|replace|insert|redacted|mock|demo|default|secret|password|<|>|\{|\}|\$|%s|%\(|\*\*\*|\.\.\.|…",
    )
    .is_match(&lower)
        || v.chars().all(|c| v.starts_with(c))
        || v.chars().any(char::is_whitespace)
        || v.contains("://")
        || v.starts_with('/')
        || v.starts_with("./")
        // an environment variable or constant name
        || v.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn shannon_entropy(s: &str) -> f64 {
    let mut counts: HashMap<char, usize> = HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0) += 1;
    }
    let n = s.chars().count() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Does the variable part of a known-format token look random (not `sk-xxxx…` or `sk-1234567890…`)?
fn random_enough(s: &str) -> bool {
    let distinct = s.chars().collect::<std::collections::HashSet<_>>().len();
    distinct >= 10 && shannon_entropy(s) >= 3.0 && !is_sequential(s)
}

fn is_sequential(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    ["0123456789", "123456789", "abcdefgh", "qwerty"]
        .iter()
        .any(|p| lower.contains(p))
}

/// A literal that looks like a generated secret: long, no spaces, letters and digits, high entropy, no long words.
pub(super) fn looks_generated(v: &str, password: bool) -> bool {
    if is_placeholder(v) {
        return false;
    }
    let len = v.chars().count();
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_lower = v.chars().any(|c| c.is_ascii_lowercase());
    let has_upper = v.chars().any(|c| c.is_ascii_uppercase());
    let has_symbol = v.chars().any(|c| !c.is_ascii_alphanumeric());
    let classes = [has_digit, has_lower, has_upper, has_symbol]
        .iter()
        .filter(|b| **b)
        .count();
    let min_len = if password { 12 } else { 20 };
    len >= min_len
        && has_digit
        && (has_lower || has_upper)
        && (classes >= 3 || !password)
        && readable_words(v) < 3
        && shannon_entropy(v) >= if password { 3.0 } else { 3.5 }
        && !is_sequential(v)
}

/// Words a person wrote (`VERY-SECRET-KEY`, `ExponentPushToken`, `updated-key-12345`): generated strings rarely
/// contain them. Two words between separators, or three counting camel-case pieces of four or more letters.
fn readable_words(v: &str) -> usize {
    let vowel = |w: &str| w.chars().any(|c| "aeiouAEIOU".contains(c));
    let (mut separated, mut camel) = (0, 0);
    for seg in v.split(|c: char| !c.is_ascii_alphanumeric()) {
        if seg.len() >= 3
            && seg.chars().all(|c| c.is_ascii_alphabetic())
            && (seg.chars().all(|c| c.is_ascii_lowercase())
                || seg.chars().all(|c| c.is_ascii_uppercase()))
            && vowel(seg)
        {
            separated += 1;
            continue;
        }
        // camel-case pieces: an optional capital followed by lowercase letters
        let chars: Vec<char> = seg.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let start = i;
            if chars[i].is_ascii_uppercase() {
                i += 1;
            }
            while i < chars.len() && chars[i].is_ascii_lowercase() {
                i += 1;
            }
            let piece: String = chars[start..i].iter().collect();
            if piece.len() >= 4 && vowel(&piece) {
                camel += 1;
            }
            if i == start {
                i += 1;
            }
        }
    }
    // scaled so that "readable" is >= 3: two separated words, or three words in all
    if separated >= 2 {
        3.max(separated + camel)
    } else {
        separated + camel
    }
}

fn is_docstring(node: &PyNode<'_>) -> bool {
    node.parent().is_some_and(|p| {
        p.kind() == "expression_statement" && p.children().filter(|c| c.is_named()).count() == 1
    })
}

fn strip_auth_prefix(v: &str) -> &str {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .or_else(|| v.strip_prefix("Token "))
        .unwrap_or(v)
}

/// A PEM private key with a real body: at least 200 base64 characters between the markers.
fn pem_body_real(v: &str) -> bool {
    let Some((_, rest)) = v.split_once("PRIVATE KEY-----") else {
        return false;
    };
    let body = rest
        .split("-----END")
        .next()
        .unwrap_or(rest)
        .replace("\\n", "");
    let b64: String = body
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/' || *c == '=')
        .collect();
    b64.len() >= 200 && random_enough(&b64)
}

/// The provider of a value that is a real-looking credential in a documented format (`sk-…`, `ghp_…`, `AKIA…`, a PEM
/// private key with a real body), after an optional `Bearer `/`Token ` prefix; `None` for other values and for
/// placeholders (`sk-xxxx…`, `sk-...`, values naming `example`/`your`/`dummy`/`test`, sequential or low-entropy
/// bodies).
pub(super) fn known_format_secret(value: &str) -> Option<&'static str> {
    let v = strip_auth_prefix(value.trim());
    let lower = v.to_ascii_lowercase();
    if [
        "example",
        "xxxx",
        "your",
        "dummy",
        "fake",
        "placeholder",
        "redacted",
        "test",
    ]
    .iter()
    .any(|w| lower.contains(w))
    {
        return None;
    }
    let (_, provider) = known_formats().iter().find(|(f, _)| f.is_match(v))?;
    if *provider == "private key" {
        return pem_body_real(v).then_some(*provider);
    }
    let body = v.split_once(['-', '_']).map_or(v, |(_, rest)| rest);
    (random_enough(body) && readable_words(body) < 3).then_some(*provider)
}

pub struct KnownFormatSecret;

impl Check for KnownFormatSecret {
    fn id(&self) -> &'static str {
        "known-format-secret"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &[
            "sk-",
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "xox",
            "AKIA",
            "ASIA",
            "AIza",
            "_live_",
            "hf_",
            "glpat-",
            "lsv2_",
            "gsk_",
            "PRIVATE KEY",
        ]
    }

    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
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
                let f = callee(&node).unwrap_or_default();
                if matches!(
                    f.as_str(),
                    "os.getenv" | "getenv" | "os.environ.get" | "environ.get"
                ) && let Some(name) = positional_arg(&node, 0).and_then(|a| string_value(&a))
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

    /// The endings `secret_name` accepts, in the casings names are written in (`api_key`, `API_KEY`, `apiKey`,
    /// `ApiKey`; first letters dropped so `Api`/`api`/`API` all match). A bare `key` is not one of them.
    fn tokens(&self) -> &'static [&'static str] {
        &[
            "ecret",
            "ECRET",
            "oken",
            "OKEN",
            "assw",
            "ASSW",
            "pi_key",
            "PI_KEY",
            "pikey",
            "piKey",
            "PIKEY",
            "pi_Key",
            "PIKey",
            "PI_Key",
            "rivate_key",
            "RIVATE_KEY",
            "rivatekey",
            "rivateKey",
            "RIVATEKEY",
            "igning_key",
            "IGNING_KEY",
            "igningkey",
            "igningKey",
            "IGNINGKEY",
            "ncryption_key",
            "NCRYPTION_KEY",
            "ncryptionkey",
            "ncryptionKey",
            "NCRYPTIONKEY",
        ]
    }

    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
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
                range: lit.range(),
                message: Some(format!(
                    "`{name}` is given a hard-coded secret value: it ships with every copy of the code and cannot be rotated without a deploy; read it from the environment through the settings object"
                )),
            });
        }
    }
}

pub struct CredentialsInUrl;

/// The password of a database/broker URL with credentials (`postgresql://app:s3cr3t@db/app`), unless it is
/// a well-known placeholder.
pub(super) fn url_password(value: &str) -> Option<String> {
    let c = url_re().captures(value)?;
    let user = c.get(3).map_or("", |m| m.as_str());
    let pw = c.get(4).map_or("", |m| m.as_str());
    (!placeholder_password(user, pw)).then(|| pw.to_string())
}

fn url_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    re(
        &RE,
        r"(?i)\b(postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|oracle|clickhouse)(\+\w+)?://([^:/@\s]*):([^@/\s]+)@([^/:?\s]+)",
    )
}

pub(super) fn placeholder_password(user: &str, pw: &str) -> bool {
    let p = pw.to_ascii_lowercase();
    p == user.to_ascii_lowercase()
        || pw.len() < 6
        || matches!(
            p.as_str(),
            "postgres"
                | "postgresql"
                | "root"
                | "admin"
                | "guest"
                | "user"
                | "username"
                | "mysql"
                | "redis"
                | "mongo"
                | "rabbitmq"
                | "qwerty"
                | "letmein"
        )
        || [
            "pass",
            "pwd",
            "secret",
            "change",
            "example",
            "test",
            "xxx",
            "your",
            "dummy",
            "fake",
            "placeholder",
            "sample",
            "default",
            "local",
            "dev",
            "demo",
        ]
        .iter()
        .any(|w| p.contains(w))
        || pw.starts_with(['$', '{', '<', '%', '[', '*'])
}

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

    fn run_in<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
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
