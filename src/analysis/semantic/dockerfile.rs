//! Dockerfile instructions and build stages, read from the text: line continuations (`\`, or the character of
//! an `# escape=` directive), comments inside continued instructions, heredocs (`RUN <<EOT … EOT`), global
//! `ARG`s before the first `FROM`, and stages (`FROM image AS name`).

use std::collections::HashMap;
use std::ops::Range;

/// One instruction, continuation lines joined.
#[derive(Debug, Clone)]
pub struct Instruction {
    /// Upper-cased keyword: `FROM`, `RUN`, `CMD`, ...
    pub keyword: String,
    /// The arguments, continuations joined with a space; heredoc bodies not included.
    pub args: String,
    /// From the keyword to the end of the instruction's last line (heredoc bodies not included).
    pub range: Range<usize>,
    /// The instruction was written on one line (its text is `text[range]`).
    pub single_line: bool,
}

/// A build stage: its `FROM` and the instructions after it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub from: Instruction,
    /// The image (or earlier stage) built upon, as written.
    pub image: String,
    /// `AS name`, lower-cased.
    pub alias: Option<String>,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, Default)]
pub struct Dockerfile {
    /// `ARG`s before the first `FROM`: name → default.
    pub global_args: HashMap<String, Option<String>>,
    pub stages: Vec<Stage>,
}

impl Dockerfile {
    pub fn final_stage(&self) -> Option<&Stage> {
        self.stages.last()
    }

    /// Is `name` an earlier stage's alias (or index) for stage `idx`?
    pub fn is_stage_ref(&self, idx: usize, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        self.stages[..idx.min(self.stages.len())]
            .iter()
            .enumerate()
            .any(|(i, s)| s.alias.as_deref() == Some(lower.as_str()) || lower == i.to_string())
    }

    /// Substitute `$NAME` / `${NAME}` / `${NAME:-default}` with global ARG defaults; `None` when a variable has
    /// no known value.
    pub fn substitute(&self, s: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (name, default, len) = if let Some(inner) = after.strip_prefix('{') {
                let end = inner.find('}')?;
                let body = &inner[..end];
                let (n, d) = match body.split_once(":-").or_else(|| body.split_once('-')) {
                    Some((n, d)) => (n, Some(d.to_string())),
                    None => (body, None),
                };
                (n.to_string(), d, end + 2)
            } else {
                let n: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let l = n.len();
                (n, None, l)
            };
            if name.is_empty() {
                return None;
            }
            let value = self
                .global_args
                .get(&name)
                .cloned()
                .flatten()
                .filter(|v| !v.is_empty())
                .or(default)?;
            out.push_str(&value);
            rest = &after[len..];
        }
        out.push_str(rest);
        Some(out)
    }
}

/// Parse a Dockerfile's text.
pub fn parse(text: &str) -> Dockerfile {
    let escape = escape_char(text);
    let mut df = Dockerfile::default();
    // Line starts.
    let lines: Vec<(usize, &str)> = {
        let mut v = Vec::new();
        let mut start = 0;
        for l in text.split_inclusive('\n') {
            v.push((start, l));
            start += l.len();
        }
        v
    };
    let mut i = 0;
    while i < lines.len() {
        let (start, line) = lines[i];
        let trimmed = line.trim_start();
        if trimmed.trim().is_empty() || trimmed.starts_with('#') {
            i += 1;
            continue;
        }
        let indent = line.len() - trimmed.len();
        let kw_len = trimmed
            .find(|c: char| c.is_whitespace())
            .unwrap_or(trimmed.trim_end().len());
        let keyword = trimmed[..kw_len].to_ascii_uppercase();
        let mut args = String::new();
        let mut end;
        let mut single_line = true;
        // Join continuation lines.
        let mut cur = &line[indent + kw_len..];
        let mut heredocs: Vec<String> = Vec::new();
        loop {
            let body = cur.trim_end_matches(['\n', '\r']);
            let continued = body.trim_end().ends_with(escape);
            let piece = if continued {
                let t = body.trim_end();
                &t[..t.len() - escape.len_utf8()]
            } else {
                body
            };
            heredocs.extend(heredoc_markers(piece));
            if !args.is_empty() {
                args.push(' ');
            }
            args.push_str(piece.trim());
            end = lines[i].0 + lines[i].1.trim_end_matches(['\n', '\r']).len();
            i += 1;
            if !continued {
                break;
            }
            // Skip comment and empty lines inside a continuation.
            while i < lines.len() && {
                let t = lines[i].1.trim_start();
                t.starts_with('#') || t.trim().is_empty()
            } {
                i += 1;
            }
            if i >= lines.len() {
                break;
            }
            single_line = false;
            cur = lines[i].1;
        }
        // Skip heredoc bodies.
        for marker in heredocs {
            while i < lines.len() {
                let l = lines[i].1.trim_end_matches(['\n', '\r']);
                i += 1;
                if l == marker || l.trim_start_matches('\t') == marker {
                    break;
                }
            }
        }
        let ins = Instruction {
            keyword,
            args: args.trim().to_string(),
            range: start + indent..end,
            single_line,
        };
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let image = words.first().map(|s| s.to_string()).unwrap_or_default();
            let alias = match words.as_slice() {
                [_, as_kw, name, ..] if as_kw.eq_ignore_ascii_case("as") => {
                    Some(name.to_ascii_lowercase())
                }
                _ => None,
            };
            df.stages.push(Stage {
                from: ins,
                image,
                alias,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = df.stages.last_mut() {
            stage.instructions.push(ins);
        } else if ins.keyword == "ARG" {
            for (name, value) in arg_pairs(&ins.args) {
                df.global_args.insert(name, value);
            }
        }
    }
    df
}

const KEYWORDS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "MAINTAINER",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

/// Why a Dockerfile cannot be analysed: its first instruction is not a Dockerfile instruction.
pub fn unparseable(text: &str) -> Option<String> {
    let df_lines = text.lines().enumerate().find(|(_, l)| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    let (n, line) = df_lines?;
    let word = line.split_whitespace().next().unwrap_or("");
    if KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word)) {
        return None;
    }
    let shown: String = word.chars().take(20).collect();
    Some(format!(
        "cannot be parsed as a Dockerfile (line {} starts with `{shown}`, not an instruction)",
        n + 1
    ))
}

/// `# escape=`` ` parser directive at the top of the file.
fn escape_char(text: &str) -> char {
    for line in text.lines() {
        let t = line.trim();
        let Some(d) = t.strip_prefix('#') else {
            break;
        };
        let d = d.trim();
        if let Some(v) = d.to_ascii_lowercase().strip_prefix("escape") {
            let v = v.trim_start().trim_start_matches('=').trim();
            if let Some(c) = v.chars().next() {
                return c;
            }
        } else if !d.contains('=') {
            break;
        }
    }
    '\\'
}

/// Heredoc terminators started on a line: `<<EOF`, `<<-EOF`, `<<"EOF"`.
fn heredoc_markers(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(pos) = rest.find("<<") {
        let after = rest[pos + 2..].trim_start_matches('-');
        let after = after.trim_start_matches(['"', '\'']);
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
        rest = &rest[pos + 2..];
    }
    out
}

/// `ARG`/`ENV` arguments as name/value pairs: `NAME=value NAME2="v 2"`, `NAME value` (old ENV form), `NAME`.
pub fn arg_pairs(args: &str) -> Vec<(String, Option<String>)> {
    let args = args.trim();
    let first_word = args.split_whitespace().next().unwrap_or("");
    if !first_word.contains('=') {
        // `ENV NAME value with spaces` or `ARG NAME`
        let mut it = args.splitn(2, char::is_whitespace);
        let name = it.next().unwrap_or("").to_string();
        let value = it.next().map(|v| unquote(v.trim()));
        return if name.is_empty() {
            Vec::new()
        } else {
            vec![(name, value)]
        };
    }
    let mut out = Vec::new();
    let chars: Vec<char> = args.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if name.is_empty() {
            break;
        }
        if i < chars.len() && chars[i] == '=' {
            i += 1;
            let mut value = String::new();
            let mut quote: Option<char> = None;
            while i < chars.len() {
                let c = chars[i];
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => value.push(c),
                    None if c == '"' || c == '\'' => quote = Some(c),
                    None if c.is_whitespace() => break,
                    None if c == '\\' && i + 1 < chars.len() => {
                        i += 1;
                        value.push(chars[i]);
                    }
                    None => value.push(c),
                }
                i += 1;
            }
            out.push((name, Some(value)));
        } else {
            out.push((name, None));
        }
    }
    out
}

fn unquote(v: &str) -> String {
    let t = v.trim();
    if t.len() >= 2
        && ((t.starts_with('"') && t.ends_with('"')) || (t.starts_with('\'') && t.ends_with('\'')))
    {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

/// Does the image a Dockerfile builds carry a health check Compose would use (a `HEALTHCHECK` other than
/// `HEALTHCHECK NONE` in any stage: a `build.target` may pick any), or is it built on a minimal base that has nothing
/// to run one with?
pub fn image_health_covered(text: &str) -> bool {
    let df = parse(text);
    let chain = stage_chain(&df);
    df.stages
        .iter()
        .flat_map(|s| s.instructions.iter())
        .any(|i| i.keyword == "HEALTHCHECK" && !i.args.trim().eq_ignore_ascii_case("none"))
        || (!chain.is_empty() && minimal_base(&base_image(&df, &chain)))
}

/// Base images with no shell or tools to run a `HEALTHCHECK` with, made for orchestrators' probes.
pub fn minimal_base(image: &str) -> bool {
    let l = image.to_ascii_lowercase();
    l == "scratch" || l.contains("distroless") || l.contains("chiseled")
}

/// The image the stage chain finally builds on.
pub fn base_image(df: &Dockerfile, chain: &[&Stage]) -> String {
    let base = chain.last().map_or("", |s| s.image.as_str());
    df.substitute(base).unwrap_or_else(|| base.to_string())
}

/// The final stage and the earlier stages it builds on (`FROM build AS final`), final stage first.
pub fn stage_chain(df: &Dockerfile) -> Vec<&Stage> {
    let mut chain = Vec::new();
    let mut idx = match df.stages.len() {
        0 => return chain,
        n => n - 1,
    };
    for _ in 0..df.stages.len() {
        let stage = &df.stages[idx];
        chain.push(stage);
        let parent = df.stages[..idx]
            .iter()
            .rposition(|s| s.alias.as_deref() == Some(stage.image.to_ascii_lowercase().as_str()));
        match parent {
            Some(p) => idx = p,
            None => break,
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_aliases_and_global_args() {
        let text = "# syntax=docker/dockerfile:1\nARG BASE=python:3.12-slim\nFROM ${BASE} AS build\nRUN pip wheel .\nFROM --platform=$BUILDPLATFORM build as test\nFROM gcr.io/distroless/python3\nCOPY --from=build /w /w\nUSER nonroot\n";
        let df = parse(text);
        assert_eq!(df.stages.len(), 3);
        assert_eq!(df.stages[0].alias.as_deref(), Some("build"));
        assert_eq!(
            df.substitute(&df.stages[0].image).as_deref(),
            Some("python:3.12-slim")
        );
        assert!(df.is_stage_ref(1, "build"));
        assert!(!df.is_stage_ref(0, "build"));
        assert_eq!(df.stages[1].alias.as_deref(), Some("test"));
        let last = match df.final_stage() {
            Some(s) => s,
            None => panic!("no stage"),
        };
        assert_eq!(last.instructions.len(), 2);
        assert_eq!(last.instructions[1].keyword, "USER");
        assert_eq!(
            &text[last.from.range.clone()],
            "FROM gcr.io/distroless/python3"
        );
    }

    #[test]
    fn continuations_comments_and_heredocs() {
        let text = "FROM alpine:3.20\nRUN apk add \\\n    # a comment inside\n    curl \\\n    jq\nRUN <<EOT bash\nset -e\nCMD this is not an instruction\nEOT\nCMD python \\\n  -m app\n";
        let df = parse(text);
        let ins = &df.stages[0].instructions;
        assert_eq!(ins.len(), 3, "{ins:?}");
        assert_eq!(ins[0].args, "apk add curl jq");
        assert!(!ins[0].single_line);
        assert_eq!(ins[1].keyword, "RUN");
        assert_eq!(ins[2].keyword, "CMD");
        assert_eq!(ins[2].args, "python -m app");
        assert!(text[ins[2].range.clone()].starts_with("CMD python"));
    }

    #[test]
    fn escape_directive_and_arg_pairs() {
        let text = "# escape=`\nFROM mcr.microsoft.com/windows/servercore:ltsc2022\nRUN dir `\n  c:\\\nENV A=1 B=\"two words\" C=x\\ y\n";
        let df = parse(text);
        let ins = &df.stages[0].instructions;
        assert_eq!(ins.len(), 2);
        assert_eq!(ins[0].args, "dir c:\\");
        assert_eq!(
            arg_pairs(&ins[1].args),
            vec![
                ("A".into(), Some("1".into())),
                ("B".into(), Some("two words".into())),
                ("C".into(), Some("x y".into()))
            ]
        );
        assert_eq!(
            arg_pairs("GPG_KEY  A035C8C1"),
            vec![("GPG_KEY".into(), Some("A035C8C1".into()))]
        );
        assert_eq!(arg_pairs("TOKEN"), vec![("TOKEN".into(), None)]);
    }
}
