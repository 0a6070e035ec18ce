//! O3 in example environment files (`.env.example`, `.env.sample`, `example.env`, `.env.prod.template`, …): a value
//! that looks like a real secret. The file is committed so that people copy it; a real credential in it is public,
//! and a generated-looking one ends up running in every deployment that copied the file unchanged.
//!
//! * [`EnvExampleKnownSecret`]: a value in a provider's documented credential format (`sk-…`, `ghp_…`,
//!   `github_pat_…`, `AKIA…`, `xoxb-…`, a PEM private key, …), judged by
//!   [`known_format_secret`](crate::analysis::semantic::secrets::known_format_secret) as in Python code.
//! * [`EnvExampleNamedSecret`]: a long, random-looking value under a secret-ish name (`*_API_KEY`, `*SECRET*`,
//!   `*_TOKEN`, `*PASSWORD`), judged by the same name and shape rules as Python literals.
//!
//! The files have no grammar: they are read line by line ([`Check::run_text`]). `NAME=value`, `export NAME=value`,
//! single- and double-quoted values (double-quoted ones may span lines, as PEM keys do), inline ` # comments`, and
//! commented-out assignments (`# OPENAI_API_KEY=sk-…`: a key in a comment is just as public) are understood.
//! Placeholders are never reported: empty values, `changeme`, `your-key-here`, `<token>`, `xxx`, `...`, `${VAR}`,
//! `sk-...`, values naming `example`/`dummy`/`test`, and anything short, sequential or low in entropy.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::paths::{COMPOSE_FILE_GLOBS, env_example_deployed};
use crate::analysis::semantic::secrets::{
    KNOWN_FORMAT_TOKENS, SECRET_NAME_TOKENS, is_placeholder, known_format_secret, looks_generated,
    secret_name, url_password,
};
use regex::Regex;
use std::ops::Range;
use std::sync::OnceLock;

/// One `NAME=value` assignment of an env file.
#[derive(Debug, PartialEq, Eq)]
struct Assignment {
    name: String,
    value: String,
    /// From the name to the end of the value (closing quote included).
    range: Range<usize>,
}

fn assignment_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=[ \t]*").expect("valid regex")
    })
}

/// Commented-out assignments are taken only in the strict form `# NAME=value` (upper-case name, no spaces around
/// `=`), so prose in comments (`# set token = …`) is not read as one.
fn commented_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^#+[ \t]*(?:export\s+)?([A-Z_][A-Z0-9_]*)=").expect("valid regex")
    })
}

/// The assignments of an env file, with byte ranges into `text`.
fn assignments(text: &str) -> Vec<Assignment> {
    let mut out = Vec::new();
    let mut offset = 0;
    // Lines with their start offsets; a double-quoted value may run over several.
    let lines: Vec<(usize, &str)> = text
        .split_inclusive('\n')
        .map(|l| {
            let start = offset;
            offset += l.len();
            (start, l)
        })
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let (start, raw) = lines[i];
        i += 1;
        let line = raw.trim_end_matches(['\n', '\r']);
        let indent = line.len() - line.trim_start().len();
        let body = &line[indent..];
        let caps = if body.starts_with('#') {
            commented_re().captures(body)
        } else {
            assignment_re().captures(body)
        };
        let Some(caps) = caps else { continue };
        let (Some(all), Some(name)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        let name_start = start + indent + name.start();
        let value_start = start + indent + all.end();
        let rest = &text[value_start..start + line.len()];
        let (value, end) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                // Up to the closing quote, on this line or (double quotes only) a later one.
                let search_from = value_start + 1;
                let close = if q == '"' {
                    closing_double_quote(&text[search_from..])
                } else {
                    rest[1..].find('\'')
                };
                let Some(close) = close else { continue };
                let end = search_from + close;
                // A quote left open swallows the assignments after it: not a value.
                if text[search_from..end]
                    .lines()
                    .skip(1)
                    .any(|l| assignment_re().is_match(l.trim_start()))
                {
                    continue;
                }
                if q == '"' {
                    // Skip the lines the value spans.
                    while i < lines.len() && lines[i].0 <= end {
                        i += 1;
                    }
                }
                (text[search_from..end].to_string(), end + 1)
            }
            _ => {
                // Unquoted: up to an inline comment (whitespace then `#`).
                let spaced = text[..value_start].ends_with([' ', '\t']);
                let cut = rest
                    .char_indices()
                    .find(|&(k, c)| {
                        c == '#'
                            && if k == 0 {
                                spaced
                            } else {
                                rest[..k].ends_with(char::is_whitespace)
                            }
                    })
                    .map_or(rest.len(), |(k, _)| k);
                let v = rest[..cut].trim_end();
                // An empty value ends at its `=`, not at the blanks after it.
                let end = value_start + v.len();
                let end = end
                    - text[..end]
                        .len()
                        .saturating_sub(text[..end].trim_end().len());
                (v.to_string(), end)
            }
        };
        out.push(Assignment {
            name: name.as_str().to_string(),
            value,
            range: name_start..end,
        });
    }
    out
}

/// The offset of the `"` that closes a double-quoted value (backslash escapes honoured).
fn closing_double_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (k, c) in s.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => return Some(k),
            _ => escaped = false,
        }
    }
    None
}

/// Credentials their vendors publish for local emulators: in every copy of the emulator's documentation, not
/// secrets (Azurite's and the Azure Storage Emulator's account key).
const PUBLIC_EMULATOR_CREDENTIALS: &[&str] =
    &["Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="];

/// Prefixes under which front-end build tools (Next.js, Vite, Create React App, Expo, SvelteKit, Nuxt, Gatsby,
/// Vue CLI) compile a variable into the JavaScript every visitor downloads: such a value is public by design (an
/// analytics or chat widget id), never a server secret, wherever its example sits.
const BROWSER_PUBLIC_PREFIXES: &[&str] = &[
    "NEXT_PUBLIC_",
    "VITE_",
    "REACT_APP_",
    "EXPO_PUBLIC_",
    "PUBLIC_",
    "NUXT_PUBLIC_",
    "GATSBY_",
    "VUE_APP_",
];

/// A value under a secret-ish name that is random-looking enough to be a real secret, not a placeholder.
fn named_secret(name: &str, value: &str) -> bool {
    let v = value.trim();
    if v.is_empty()
        || BROWSER_PUBLIC_PREFIXES
            .iter()
            .any(|p| name.to_ascii_uppercase().starts_with(p))
        || !secret_name(name)
        || is_placeholder(v)
        || PUBLIC_EMULATOR_CREDENTIALS.contains(&v)
    {
        return false;
    }
    let password = name.to_ascii_lowercase().contains("passw");
    looks_generated(v, password)
}

/// A database or broker URL whose password is random-looking (not `postgres`, `changethis`, `${PASSWORD}`).
fn url_with_secret(value: &str) -> bool {
    url_password(value.trim()).is_some_and(|pw| {
        !is_placeholder(&pw)
            && !pw.starts_with('$')
            && !pw.starts_with('<')
            && looks_generated(&pw, true)
    })
}

pub struct EnvExampleKnownSecret;

impl Check for EnvExampleKnownSecret {
    fn id(&self) -> &'static str {
        "env-example-known-format-secret"
    }
    fn tokens(&self) -> &'static [&'static str] {
        KNOWN_FORMAT_TOKENS
    }
    fn run(&self, _root: &PyNode<'_>, _ctx: &FileContext<'_>, _out: &mut Vec<CheckMatch>) {}
    fn run_text(&self, text: &str, _ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        for a in assignments(text) {
            let Some(provider) = known_format_secret(&a.value) else {
                continue;
            };
            out.push(CheckMatch {
                fix: None,
                range: a.range,
                message: Some(format!(
                    "`{}` in this example environment file is a real-looking {provider}: the file is committed and copied, so the credential is public; revoke it at the provider and leave a placeholder (`{}=` or `{}=<your key>`)",
                    a.name, a.name, a.name
                )),
            });
        }
    }
}

/// The named-secret check, in one of its two halves: example files a deployment reads (or that cannot be told
/// apart: the high detector), and example files no deployment reads (`local`: the template for running one
/// service from source, whose secret reaches developers' machines rather than deployments; the tree's Compose
/// files neither sit beside it nor name it).
pub struct EnvExampleNamedSecret {
    pub local: bool,
}

impl Check for EnvExampleNamedSecret {
    fn id(&self) -> &'static str {
        if self.local {
            "env-example-named-secret-local"
        } else {
            "env-example-named-secret"
        }
    }
    fn tokens(&self) -> &'static [&'static str] {
        SECRET_NAME_TOKENS
    }
    fn needs(&self) -> &'static [&'static str] {
        COMPOSE_FILE_GLOBS
    }
    fn run(&self, _root: &PyNode<'_>, _ctx: &FileContext<'_>, _out: &mut Vec<CheckMatch>) {}
    fn run_text(&self, text: &str, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if (deployed(ctx) == Some(false)) == self.local {
            named_secrets(text, self.local, out);
        }
    }
}

fn deployed(ctx: &FileContext<'_>) -> Option<bool> {
    env_example_deployed(ctx.path, &ctx.repo.paths, |p| ctx.repo.read(p))
}

/// The secret-named values of an example file. `local`: no deployment reads it (the consequence differs).
fn named_secrets(text: &str, local: bool, out: &mut Vec<CheckMatch>) {
    let who = if local {
        "everyone who runs the service from source with the file unchanged"
    } else {
        "every deployment that copies the file"
    };
    for a in assignments(text) {
        // Known formats are reported by the critical detector.
        if known_format_secret(&a.value).is_some() {
            continue;
        }
        if url_with_secret(&a.value) {
            out.push(CheckMatch {
                fix: None,
                range: a.range,
                message: Some(format!(
                    "`{}` in this example environment file is a URL with a real-looking password: it is public in the repository, and {who} uses it; put a placeholder in the URL (`user:changeme@`) or build the URL from a separate password setting",
                    a.name
                )),
            });
            continue;
        }
        if !named_secret(&a.name, &a.value) {
            continue;
        }
        out.push(CheckMatch {
            fix: None,
            range: a.range,
            message: Some(format!(
                "`{}` has a real-looking secret value in this example environment file: it is public in the repository, and {who} runs with the same secret; leave it empty or a placeholder (`{}=changeme`) and generate one per deployment (`openssl rand -hex 32`)",
                a.name, a.name
            )),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<(String, String, String)> {
        assignments(text)
            .into_iter()
            .map(|a| (a.name, a.value, text[a.range].to_string()))
            .collect()
    }

    fn t(n: &str, v: &str, span: &str) -> (String, String, String) {
        (n.to_string(), v.to_string(), span.to_string())
    }

    #[test]
    fn reads_the_forms_of_an_env_file() {
        let text = "# comment line\nA=1\nexport B=two  # inline\n  C = 'single # not a comment'\nD=\"multi\nline\\\" quoted\"\nE=\n# F_KEY=abc\n# set token = x\nG=x#y\n";
        assert_eq!(
            parsed(text),
            vec![
                t("A", "1", "A=1"),
                t("B", "two", "B=two"),
                t(
                    "C",
                    "single # not a comment",
                    "C = 'single # not a comment'"
                ),
                t(
                    "D",
                    "multi\nline\\\" quoted",
                    "D=\"multi\nline\\\" quoted\""
                ),
                t("E", "", "E="),
                t("F_KEY", "abc", "F_KEY=abc"),
                t("G", "x#y", "G=x#y"),
            ]
        );
        // An unterminated quote is not a value; the lines after it are still read.
        assert_eq!(parsed("A=\"open\nB=2\n"), vec![t("B", "2", "B=2")]);
        assert_eq!(parsed("A=\"open\nB=\"2\"\n"), vec![t("B", "2", "B=\"2\"")]);
        assert_eq!(
            parsed("A= # empty\nB=#x\n"),
            vec![t("A", "", "A="), t("B", "#x", "B=#x")]
        );
    }

    #[test]
    fn placeholders_are_not_secrets() {
        for v in [
            "",
            "changeme",
            "your-key-here",
            "<your-openai-key>",
            "xxx",
            "...",
            "${OPENAI_API_KEY}",
            "sk-...",
            "sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "example-secret-key-1234567890abcdef",
            "dummy9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c",
            "test_4fQm9ZkR2tVx7LbN0pWc3HsJ8dYe5GaU",
        ] {
            assert!(!named_secret("OPENAI_API_KEY", v), "{v}");
            assert!(known_format_secret(v).is_none(), "{v}");
        }
        assert!(named_secret(
            "JWT_SECRET",
            "9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a"
        ));
        assert!(!named_secret(
            "AZURE_STORAGE_SECRET_KEY",
            PUBLIC_EMULATOR_CREDENTIALS[0]
        ));
        // Compiled into the browser bundle by the front-end build: public by design.
        assert!(!named_secret(
            "NEXT_PUBLIC_MIXPANEL_TOKEN",
            "04a81d58ade99299e19e5a89fe84c670"
        ));
        assert!(named_secret(
            "MIXPANEL_TOKEN",
            "04a81d58ade99299e19e5a89fe84c670"
        ));
        assert!(!named_secret(
            "BUILD_ID",
            "9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a"
        ));
    }
}
