//! The secret vocabulary shared by the Python, `.env`, Compose, Kubernetes and Dockerfile checks: provider key
//! formats, names that hold a secret, placeholders, randomness, and passwords inside connection URLs.

use regex::Regex;
use std::collections::HashMap;
use std::sync::OnceLock;

pub fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).expect("valid regex"))
}

/// Provider formats: (regex over the whole literal, provider name).
pub fn known_formats() -> &'static [(Regex, &'static str)] {
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
pub fn secret_name(name: &str) -> bool {
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
pub fn is_placeholder(v: &str) -> bool {
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

pub fn shannon_entropy(s: &str) -> f64 {
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
pub fn random_enough(s: &str) -> bool {
    let distinct = s.chars().collect::<std::collections::HashSet<_>>().len();
    distinct >= 10 && shannon_entropy(s) >= 3.0 && !is_sequential(s)
}

pub fn is_sequential(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    ["0123456789", "123456789", "abcdefgh", "qwerty"]
        .iter()
        .any(|p| lower.contains(p))
}

/// Keys their vendors publish as safe to ship in client code: they only send data in (PostHog project keys
/// `phc_…`, Stripe publishable keys `pk_live_…`/`pk_test_…`, Mapbox public tokens `pk.eyJ…`). Not secrets.
pub fn is_public_client_key(v: &str) -> bool {
    ["phc_", "pk_live_", "pk_test_", "pk.eyJ"]
        .iter()
        .any(|p| v.starts_with(p))
}

/// A literal that looks like a generated secret: long, no spaces, letters and digits, high entropy, no long words.
pub fn looks_generated(v: &str, password: bool) -> bool {
    if is_placeholder(v) || is_public_client_key(v) {
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
pub fn readable_words(v: &str) -> usize {
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

pub fn strip_auth_prefix(v: &str) -> &str {
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .or_else(|| v.strip_prefix("Token "))
        .unwrap_or(v)
}

/// A PEM private key with a real body: at least 200 base64 characters between the markers.
pub fn pem_body_real(v: &str) -> bool {
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
pub fn known_format_secret(value: &str) -> Option<&'static str> {
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

/// The password of a database/broker URL with credentials (`postgresql://app:s3cr3t@db/app`), unless it is
/// a well-known placeholder.
pub fn url_password(value: &str) -> Option<String> {
    let c = url_re().captures(value)?;
    let user = c.get(3).map_or("", |m| m.as_str());
    let pw = c.get(4).map_or("", |m| m.as_str());
    (!placeholder_password(user, pw)).then(|| pw.to_string())
}

pub fn url_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    re(
        &RE,
        r"(?i)\b(postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|oracle|clickhouse)(\+\w+)?://([^:/@\s]*):([^@/\s]+)@([^/:?\s]+)",
    )
}

pub fn placeholder_password(user: &str, pw: &str) -> bool {
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

/// A literal value that is a real secret rather than a placeholder, for a name that holds a secret.
pub fn literal_secret(name: &str, value: &str) -> bool {
    let v = value.trim();
    if v.is_empty() || v.contains('$') || !secret_name(name) || is_placeholder(v) {
        return false;
    }
    let password = name.to_ascii_lowercase().contains("pass");
    // A password that is a plain word (`wordpress`, `nextcloud`) is a demo value; a real one mixes classes.
    let mixed =
        v.chars().any(|c| c.is_ascii_alphabetic()) && v.chars().any(|c| !c.is_ascii_alphabetic());
    looks_generated(v, password)
        || (password && v.len() >= 8 && mixed && !placeholder_password("", v))
}

/// Literal tokens one of which a file must contain to hold a known-format secret (the prefixes of
/// [`known_format_secret`]'s formats).
pub const KNOWN_FORMAT_TOKENS: &[&str] = &[
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
];

/// The endings [`secret_name`] accepts, in the casings names are written in (`api_key`, `API_KEY`, `apiKey`,
/// `ApiKey`; first letters dropped so `Api`/`api`/`API` all match). A bare `key` is not one of them.
pub const SECRET_NAME_TOKENS: &[&str] = &[
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
];
