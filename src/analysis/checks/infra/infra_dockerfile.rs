//! Dockerfile checks:
//!
//! * [`FromUnpinned`] (O5): `FROM` an image without a tag, with `latest` or another moving tag. Digests are
//!   pinned; `scratch` and earlier stages are not images; `FROM ${BASE}` is judged by the ARG's default.
//! * [`ShellFormCmd`] (F6): the effective `CMD`/`ENTRYPOINT` of the final stage in shell form: `/bin/sh -c` is PID 1
//!   and does not forward SIGTERM, so the app is killed without draining. Fix to the exec form when the command
//!   is a plain list of words.
//! * [`NoHealthcheck`] (F7): a server image (it `EXPOSE`s a port or runs a web server) whose final stage has no
//!   `HEALTHCHECK`.
//! * [`RunsAsRoot`] (I4): the final stage runs as root: no `USER` in it (or the stages it builds on), or
//!   `USER root`/`USER 0`.
//! * [`SecretInEnv`] (O3): `ENV`/`ARG` with a secret-looking name and a literal value: it is stored in the
//!   image's layers and history.

use crate::analysis::checks::{Check, CheckFix, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::container::{image_ref, moving_tag, serves_http};
use crate::analysis::semantic::dockerfile::{
    self, Dockerfile, Instruction, base_image, minimal_base, stage_chain,
};
use crate::analysis::semantic::secrets::literal_secret;

/// Only the first line of an instruction, so findings do not span a whole `RUN` block.
fn first_line(text: &str, ins: &Instruction) -> std::ops::Range<usize> {
    let r = ins.range.clone();
    match text.get(r.clone()).and_then(|t| t.find('\n')) {
        Some(nl) => r.start..r.start + nl,
        None => r,
    }
}

pub struct FromUnpinned;

impl Check for FromUnpinned {
    fn id(&self) -> &'static str {
        "dockerfile-from-unpinned"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &[]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let text = &root.get_doc().src;
        let df = ctx.dockerfile(root);
        for (idx, stage) in df.stages.iter().enumerate() {
            let written = stage.image.as_str();
            if written.is_empty()
                || written.eq_ignore_ascii_case("scratch")
                || df.is_stage_ref(idx, written)
            {
                continue;
            }
            let Some(image) = df.substitute(written) else {
                continue; // a variable without a default: set by the build, not judged here
            };
            if image.contains('$') || df.is_stage_ref(idx, &image) || image == "scratch" {
                continue;
            }
            let r = image_ref(&image);
            if r.digest {
                continue;
            }
            let what = match r.tag {
                None => "has no tag (it means `latest`)".to_string(),
                Some(t) if moving_tag(t) => format!("uses the moving tag `{t}`"),
                _ => continue,
            };
            let via = if written != image {
                format!(" (`{written}` defaults to `{image}`)")
            } else {
                String::new()
            };
            out.push(CheckMatch {
                fix: None,
                range: first_line(text, &stage.from),
                message: Some(format!(
                    "`FROM {image}`{via} {what}: every build may get a different base image, and rolling back does not bring the old one back; pin a version tag (and ideally `@sha256:` digest)"
                )),
            });
        }
    }
}

pub struct ShellFormCmd;

/// Characters that make a shell-form command need a shell.
fn needs_shell(cmd: &str) -> bool {
    cmd.chars().any(|c| {
        matches!(
            c,
            '$' | '&'
                | '|'
                | ';'
                | '<'
                | '>'
                | '('
                | ')'
                | '`'
                | '*'
                | '?'
                | '['
                | ']'
                | '~'
                | '{'
                | '}'
                | '!'
                | '#'
                | '"'
                | '\''
                | '\\'
                | '='
        )
    })
}

fn exec_form(keyword: &str, cmd: &str) -> String {
    let words: Vec<String> = cmd.split_whitespace().map(|w| format!("\"{w}\"")).collect();
    format!("{keyword} [{}]", words.join(", "))
}

impl ShellFormCmd {
    fn find(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let text = &root.get_doc().src;
        let df = ctx.dockerfile(root);
        let Some(stage) = df.final_stage() else {
            return;
        };
        let last = |kw: &str| stage.instructions.iter().rev().find(|i| i.keyword == kw);
        let entrypoint = last("ENTRYPOINT");
        let cmd = last("CMD");
        // A shell-form ENTRYPOINT ignores CMD, so only it is reported then.
        let mut targets: Vec<&Instruction> = Vec::new();
        match entrypoint {
            Some(e) if !e.args.trim_start().starts_with('[') => targets.push(e),
            Some(_) => {}
            None => {}
        }
        if targets.is_empty()
            && let Some(c) = cmd
        {
            targets.push(c);
        }
        for ins in targets {
            let args = ins.args.trim();
            if args.is_empty() || args.starts_with('[') {
                continue;
            }
            // `exec app …` replaces the shell: signals reach the app.
            if args.starts_with("exec ") {
                continue;
            }
            let fix = (ins.single_line && !needs_shell(args)).then(|| CheckFix {
                range: ins.range.clone(),
                replacement: exec_form(&ins.keyword, args),
            });
            let shown: String = args.chars().take(60).collect();
            out.push(CheckMatch {
                    fix,
                    range: first_line(text, ins),
                    message: Some(format!(
                        "`{} {shown}` is in shell form: `/bin/sh -c` runs as PID 1 and does not pass SIGTERM on, so the app is killed after the grace period instead of draining; use the exec form `{} [\"…\", \"…\"]`{}",
                        ins.keyword,
                        ins.keyword,
                        if needs_shell(args) {
                            " (or start the command with `exec`)"
                        } else {
                            ""
                        }
                    )),
                });
        }
    }
}

impl Check for ShellFormCmd {
    fn id(&self) -> &'static str {
        "dockerfile-shell-form-cmd"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["CMD", "ENTRYPOINT", "cmd", "entrypoint"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        self.find(root, ctx, out);
    }
}

/// The final stage is a development, debug or test target (`FROM builder AS dev-envs`), or the file is one.
fn dev_target(path: &str, df: &Dockerfile) -> bool {
    let lower = path.to_ascii_lowercase();
    let dev = |s: &str| ["dev", "debug", "test"].iter().any(|w| s.contains(w));
    lower.contains(".devcontainer/")
        || lower.split('/').any(|d| {
            matches!(
                d,
                "test" | "tests" | "e2e" | "loadtest" | "mocks" | "examples"
            )
        })
        || dev(lower.rsplit('/').next().unwrap_or(&lower))
        || df
            .final_stage()
            .and_then(|s| s.alias.as_deref())
            .is_some_and(dev)
}

pub struct NoHealthcheck;

impl Check for NoHealthcheck {
    fn id(&self) -> &'static str {
        "dockerfile-no-healthcheck"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &[]
    }
    fn needs(&self) -> &'static [&'static str] {
        crate::analysis::semantic::paths::COMPOSE_FILE_GLOBS
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        // Compose probes the container of a service that builds this image with a `healthcheck:`.
        if dev_target(ctx.path, &ctx.dockerfile(root))
            || ctx.repo.healthchecked_dockerfiles().contains(ctx.path)
        {
            return;
        }
        self.find_all(root, ctx, out);
    }
}

impl NoHealthcheck {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let text = &root.get_doc().src;
        let df = ctx.dockerfile(root);
        let chain = stage_chain(&df);
        let Some(last) = chain.first() else {
            return;
        };
        let all = || chain.iter().flat_map(|s| s.instructions.iter());
        if all().any(|i| i.keyword == "HEALTHCHECK") || minimal_base(&base_image(&df, &chain)) {
            return;
        }
        let exposes = all().any(|i| i.keyword == "EXPOSE");
        let cmds: String = all()
            .filter(|i| i.keyword == "CMD" || i.keyword == "ENTRYPOINT")
            .map(|i| i.args.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if !(exposes || serves_http(&cmds)) {
            return;
        }
        out.push(CheckMatch {
            fix: None,
            range: first_line(text, &last.from),
            message: Some(format!(
                "the final stage (`FROM {}`) serves traffic but has no `HEALTHCHECK`: `docker ps`, Compose `depends_on: condition: service_healthy` and Swarm cannot tell a hung server from a healthy one; add `HEALTHCHECK CMD` against the readiness endpoint (Kubernetes uses its own probes)",
                last.image
            )),
        });
    }
}

pub struct RunsAsRoot;

/// Base images that already run as an unprivileged user, or proxies whose workers drop root themselves.
/// The image's own name, lower-case, without registry, namespace or tag (`docker.io/library/mysql:8` → `mysql`).
fn image_name(image: &str) -> String {
    let l = image.to_ascii_lowercase();
    image_ref(&l)
        .name
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string()
}

fn nonroot_base(image: &str) -> bool {
    let l = image.to_ascii_lowercase();
    let name = image_name(image);
    matches!(
        name.as_str(),
        "nginx" | "httpd" | "caddy" | "traefik" | "haproxy" | "envoy"
    ) || l.contains("nonroot")
        || l.contains("unprivileged")
        || l.contains("rootless")
        || l.starts_with("bitnami/")
        || l.starts_with("docker.io/bitnami/")
        || l.starts_with("cgr.dev/chainguard/")
}

/// Official datastore images whose own entrypoint starts the server as its own user (`exec gosu mysql …`,
/// `su-exec redis …`).
fn datastore_base(image: &str) -> bool {
    let name = image_name(image);
    matches!(
        name.as_str(),
        "mysql"
            | "mariadb"
            | "postgres"
            | "postgis"
            | "pgvector"
            | "redis"
            | "mongo"
            | "rabbitmq"
            | "elasticsearch"
            | "opensearch"
    )
}

fn root_user(user: &str) -> bool {
    let u = user.split(':').next().unwrap_or("").trim();
    u == "root" || u == "0"
}

impl Check for RunsAsRoot {
    fn id(&self) -> &'static str {
        "dockerfile-runs-as-root"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &[]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if dev_target(ctx.path, &ctx.dockerfile(root)) {
            return;
        }
        self.find_all(root, ctx, out);
    }
}

impl RunsAsRoot {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let text = &root.get_doc().src;
        let df = ctx.dockerfile(root);
        let chain = stage_chain(&df);
        let Some(last) = chain.first() else {
            return;
        };
        // The last USER in the chain, the final stage's own instructions first.
        let user = chain
            .iter()
            .find_map(|s| s.instructions.iter().rev().find(|i| i.keyword == "USER"));
        match user {
            Some(u) => {
                let name = u.args.split_whitespace().next().unwrap_or("");
                let resolved = df.substitute(name).unwrap_or_else(|| name.to_string());
                if root_user(&resolved) {
                    out.push(CheckMatch {
                        fix: None,
                        range: first_line(text, u),
                        message: Some(format!(
                            "`USER {name}` is the last user of the final stage: the app runs as root, so a compromised process owns the container and any mounted volume; create an unprivileged user and switch to it (`USER app`)"
                        )),
                    });
                }
            }
            None => {
                let base = chain
                    .last()
                    .map_or(last.image.as_str(), |s| s.image.as_str());
                let base = df.substitute(base).unwrap_or_else(|| base.to_string());
                // A base image whose own entrypoint drops root: only while the file keeps that entrypoint.
                let own_entrypoint = chain
                    .iter()
                    .any(|s| s.instructions.iter().any(|i| i.keyword == "ENTRYPOINT"));
                if nonroot_base(&base)
                    || (datastore_base(&base) && !own_entrypoint)
                    || base.eq_ignore_ascii_case("scratch")
                {
                    return;
                }
                // The entrypoint drops root itself (`ENTRYPOINT ["gosu", "app", …]`, `exec su-exec app …`).
                if text.lines().any(|l| {
                    let l = l.trim_start();
                    !l.starts_with('#')
                        && ["gosu ", "su-exec ", "setpriv ", "runuser "]
                            .iter()
                            .any(|w| l.contains(w) || l.contains(&format!("\"{}\"", w.trim_end())))
                        && (l.starts_with("ENTRYPOINT")
                            || l.starts_with("CMD")
                            || l.contains("exec "))
                }) {
                    return;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: first_line(text, &last.from),
                    message: Some(format!(
                        "the final stage (`FROM {}`) never sets `USER`: the app runs as root, so a compromised process owns the container and any mounted volume; add `RUN useradd --system app` and `USER app` (or use a `nonroot` base image)",
                        last.image
                    )),
                });
            }
        }
    }
}

pub struct SecretInEnv;

impl Check for SecretInEnv {
    fn id(&self) -> &'static str {
        "dockerfile-secret-in-env"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["ENV", "ARG", "env", "arg"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let text = &root.get_doc().src;
        for ins in text_instructions(&ctx.dockerfile(root), text) {
            if ins.keyword != "ENV" && ins.keyword != "ARG" {
                continue;
            }
            for (name, value) in dockerfile::arg_pairs(&ins.args) {
                let Some(value) = value else { continue };
                if literal_secret(&name, &value) {
                    out.push(CheckMatch {
                        fix: None,
                        range: first_line(text, &ins),
                        message: Some(format!(
                            "`{} {name}=…` writes a literal secret into the image: every layer and `docker history` keep it, and anyone who can pull the image can read it; pass it at run time (environment, a secrets manager) or with `RUN --mount=type=secret` at build time",
                            ins.keyword
                        )),
                    });
                }
            }
        }
    }
}

/// Every instruction of the file (`df` is its model, `text` its text), global ARGs included.
fn text_instructions(df: &Dockerfile, text: &str) -> Vec<Instruction> {
    let mut out: Vec<Instruction> = Vec::new();
    // Global ARGs are not kept as instructions; re-read them from the text before the first FROM.
    let first_from = df.stages.first().map_or(text.len(), |s| s.from.range.start);
    for s in &df.stages {
        out.extend(s.instructions.iter().cloned());
    }
    // Global ARG lines, by text.
    let mut start = 0;
    for line in text[..first_from].split_inclusive('\n') {
        let t = line.trim_start();
        if t.get(..4).is_some_and(|k| k.eq_ignore_ascii_case("ARG ")) {
            let indent = line.len() - t.len();
            out.push(Instruction {
                keyword: "ARG".into(),
                args: t[4..].trim().to_string(),
                range: start + indent..start + line.trim_end().len(),
                single_line: true,
            });
        }
        start += line.len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::language::Lang;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn lines_of(check: &dyn Check, text: &str) -> Vec<usize> {
        let doc = Lang::Dockerfile.ast_grep(text);
        let mut out = Vec::new();
        check.run(&doc.root(), &FileContext::detached(), &mut out);
        let mut lines: Vec<usize> = out
            .iter()
            .map(|m| text[..m.range.start].matches('\n').count() + 1)
            .collect();
        lines.sort_unstable();
        lines
    }

    #[test]
    fn from_lines_and_arg_defaults() {
        let text = "ARG BASE=python:latest\nARG PINNED=node:20.11-alpine\nFROM ${BASE} AS build\nFROM $PINNED AS web\nFROM build\nFROM redis@sha256:abc\nFROM ubuntu\n";
        assert_eq!(lines_of(&FromUnpinned, text), vec![3, 7]);
    }

    #[test]
    fn shell_form_fix_only_when_safe() {
        let text = "FROM python:3.12-slim\nCMD uvicorn app.main:app --host 0.0.0.0\n";
        let doc = Lang::Dockerfile.ast_grep(text);
        let mut out = Vec::new();
        ShellFormCmd.find(&doc.root(), &FileContext::detached(), &mut out);
        assert_eq!(out.len(), 1);
        let fix = out[0].fix.clone().map(|f| f.replacement);
        assert_eq!(
            fix.as_deref(),
            Some("CMD [\"uvicorn\", \"app.main:app\", \"--host\", \"0.0.0.0\"]")
        );
        let text = "FROM python:3.12-slim\nCMD uvicorn app.main:app --port $PORT\n";
        let doc = Lang::Dockerfile.ast_grep(text);
        let mut out = Vec::new();
        ShellFormCmd.find(&doc.root(), &FileContext::detached(), &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].fix.is_none(), "a variable needs the shell");
        let text = "FROM python:3.12-slim\nHEALTHCHECK CMD curl -f http://localhost/\nCMD [\"python\", \"-m\", \"app\"]\n";
        assert!(lines_of(&ShellFormCmd, text).is_empty());
    }

    #[test]
    fn root_user_in_multi_stage_builds() {
        let text =
            "FROM python:3.12 AS base\nRUN useradd app\nUSER app\nFROM base AS final\nCOPY . .\n";
        assert!(
            lines_of(&RunsAsRoot, text).is_empty(),
            "USER inherited from the base stage"
        );
        let text =
            "FROM python:3.12 AS build\nUSER app\nFROM python:3.12-slim\nCOPY --from=build /a /a\n";
        assert_eq!(lines_of(&RunsAsRoot, text), vec![3]);
        let text = "FROM python:3.12-slim\nUSER app\nRUN x\nUSER 0:0\n";
        assert_eq!(lines_of(&RunsAsRoot, text), vec![4]);
    }

    #[test]
    fn secrets_in_env_and_global_args() {
        let text = "ARG GITHUB_TOKEN=ghp_R8x2Kq9ZL0mVbT4nW7pYc1sD3fG5hJ6kA9zX\nFROM alpine:3.20\nENV DB_PASSWORD=changeme API_KEY=\"\"\nENV JWT_SECRET Zx81kLq0pMv3Tn7Rb2Wy5Hc9\nARG NPM_TOKEN\n";
        assert_eq!(lines_of(&SecretInEnv, text), vec![1, 4]);
    }
}
