//! Docker Compose checks over the [`semantic::yaml`](crate::analysis::semantic::yaml) model (anchors, merge keys and multi-document
//! files handled there). Services using `extends` or merging an anchor we cannot see are treated as incomplete:
//! nothing is reported about keys they might inherit.
//!
//! * [`PublishedPort`] (I4): a service other than the reverse proxy (caddy, nginx, traefik, envoy, haproxy, or a
//!   name the repository lists in `infra.reverse_proxies`) publishes ports on every interface, in a production
//!   Compose file. Datastores are left to `compose-datastore-port`.
//! * [`DependencyWithoutHealthcheck`] (F7): a service others `depends_on` has no `healthcheck:`.
//! * [`AppWithoutHealthcheck`] (F7, across files): a service that runs the Python app (it builds the repository's
//!   code, serves a port, and its Dockerfile or command starts uvicorn/gunicorn/…; or its command starts one) has no
//!   `healthcheck:`, and the Dockerfile it builds (read from the repository) has no `HEALTHCHECK` either. Services others depend on
//!   are left to the check above, so one line never gets both findings.
//! * [`DependsOnNotHealthy`] (F7): `depends_on` a service that has a health check, without
//!   `condition: service_healthy` (the list form never waits for health).
//! * [`NoLimits`] (I6): a service without `deploy.resources.limits`, `mem_limit` or `cpus`, in a production file.
//! * [`ImageUnpinned`] (O5): `image:` untagged, `latest`, or defaulting to a moving tag (`${TAG:-latest}`).
//! * [`LiteralSecret`] (O3): a literal secret in `environment:` (map or list form), outside dev/test files.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::{FileContext, RepoContext};
use crate::analysis::semantic::container::{datastore_re, image_ref, moving_tag};
use crate::analysis::semantic::dockerfile::image_health_covered;
use crate::analysis::semantic::paths::{
    COMPOSE_FILE_GLOBS, is_dev_infra_file, is_production_infra_file,
};
use crate::analysis::semantic::secrets::literal_secret;
use crate::analysis::semantic::yaml::compose::{
    BuildFile, Interpolated, Service, build_file, has_limits, published_everywhere, services,
};
use crate::analysis::semantic::yaml::{YKind, YNode, YamlDoc};
use regex::Regex;
use std::sync::OnceLock;

/// Nothing can be said about what a service lacks: it extends another, or merges keys we cannot see.
/// A service with neither `image` nor `build` is a fragment merged over another file's definition
/// (`docker compose -f base.yml -f override.yml`).
fn incomplete(doc: &YamlDoc, s: &Service<'_>) -> bool {
    !s.body.is_map()
        || doc.incomplete(s.body)
        || doc.get(s.body, "extends").is_some()
        || (doc.get(s.body, "image").is_none() && doc.get(s.body, "build").is_none())
}

fn proxy_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)(^|[/_-])(caddy|nginx|traefik|envoy|haproxy|proxy|ingress|gateway|openresty|kong)([:@/_-]|$)")
            .expect("valid regex")
    })
}

/// Does a service's `entrypoint`/`command` start a reverse proxy (`nginx -g "daemon off;"`, `caddy run`)? A
/// service built from the repository (`web` with a Dockerfile of its own) is the proxy when it runs one.
fn runs_proxy(command: &str) -> bool {
    command
        .split_whitespace()
        .next()
        .map(|w| w.rsplit('/').next().unwrap_or(w))
        .is_some_and(|w| {
            matches!(
                w,
                "nginx" | "caddy" | "traefik" | "haproxy" | "envoy" | "openresty"
            )
        })
}

fn image_of<'a>(doc: &'a YamlDoc, body: &'a YNode) -> &'a str {
    doc.get(body, "image")
        .and_then(|n| doc.str(n))
        .unwrap_or("")
}

pub struct PublishedPort;

impl Check for PublishedPort {
    fn id(&self) -> &'static str {
        "compose-published-port"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["ports"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if is_production_infra_file(ctx.path) {
            self.published(root, ctx, out);
        }
    }
}

impl PublishedPort {
    /// Services publishing ports that are neither a built-in nor a configured reverse proxy.
    fn published(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let repo = ctx.repo;
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let all = services(doc);
            let is_proxy = |s: &Service<'_>| is_proxy_service(doc, s, repo);
            // Services other than proxies and datastores (those are reported by compose-datastore-port) that
            // publish ports on every interface, with those ports.
            let publishing: Vec<(&Service<'_>, &std::ops::Range<usize>, Vec<String>)> = all
                .iter()
                .filter(|s| {
                    s.body.is_map()
                        && !is_proxy(s)
                        && !datastore_re().is_match(image_of(doc, s.body))
                })
                .filter_map(|s| {
                    let ports = doc.entry(s.body, "ports")?;
                    let open: Vec<String> = doc
                        .items(&ports.value)
                        .into_iter()
                        .filter(|i| {
                            !i.templated && published_everywhere(doc, i, Interpolated::Trust)
                        })
                        .map(|i| match doc.str(i) {
                            Some(s) => s.to_string(),
                            None => "long-form port".to_string(),
                        })
                        .collect();
                    (!open.is_empty()).then_some((s, &ports.key_range, open))
                })
                .collect();
            // A stack with no reverse proxy is reached through the port its app publishes: "let the proxy reach
            // it" has nothing to point at (judged: one FP, one debatable). The app is the one service publishing,
            // or among several the ones the repository builds (`build:`); a third-party server beside it (a model
            // server, a vector store's console) is still reported.
            let no_proxy = !all.iter().any(|s| s.body.is_map() && is_proxy(s));
            let built = |s: &Service<'_>| doc.get(s.body, "build").is_some();
            let entry = |s: &Service<'_>| no_proxy && (publishing.len() == 1 || built(s));
            for (s, range, open) in &publishing {
                if entry(s) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: (*range).clone(),
                    message: Some(format!(
                        "service `{}` publishes `{}` on every interface of the host: in production only the reverse proxy publishes ports; let the proxy reach `{}` over the Compose network by service name (use `expose:`), or bind to `127.0.0.1`",
                        s.name,
                        open.join("`, `"),
                        s.name
                    )),
                });
            }
        }
    }
}

/// A usable health check: present, not `disable: true`, not `test: ["NONE"]`.
fn has_healthcheck(doc: &YamlDoc, body: &YNode) -> bool {
    let Some(h) = doc.get(body, "healthcheck") else {
        return false;
    };
    if doc.get(h, "disable").and_then(|n| doc.str(n)) == Some("true") {
        return false;
    }
    if let Some(t) = doc.get(h, "test") {
        let first = doc
            .items(t)
            .first()
            .and_then(|i| doc.str(i))
            .or_else(|| doc.str(t));
        if first == Some("NONE") {
            return false;
        }
    }
    true
}

/// `depends_on` of a service: (target name, the entry's anchor range, its condition).
fn depends_on<'a>(
    doc: &'a YamlDoc,
    body: &'a YNode,
) -> Vec<(String, std::ops::Range<usize>, Option<&'a str>)> {
    let Some(d) = doc.get(body, "depends_on") else {
        return Vec::new();
    };
    match &d.kind {
        YKind::Seq(items) => items
            .iter()
            .filter_map(|i| doc.str(i).map(|n| (n.to_string(), i.range.clone(), None)))
            .collect(),
        YKind::Map(_) => doc
            .entries(d)
            .into_iter()
            .map(|e| {
                let cond = doc.get(&e.value, "condition").and_then(|c| doc.str(c));
                (e.key.clone(), e.key_range.clone(), cond)
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Admin web UIs for a datastore (`adminer`, `dpage/pgadmin4`, …): they connect when a person logs in, not at
/// start-up.
fn admin_ui_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)(^|[/_-])(adminer|pgadmin4?|phpmyadmin|redis-?commander|redisinsight|mongo-express)([:@/_-]|$)")
            .expect("valid regex")
    })
}

/// Is the service a reverse proxy: by name or image (the built-in list), by the command it runs, or named in the
/// repository config's `infra.reverse_proxies`? The one definition every Compose check reads.
fn is_proxy_service(doc: &YamlDoc, s: &Service<'_>, repo: &RepoContext) -> bool {
    let image = image_of(doc, s.body);
    proxy_re().is_match(s.name)
        || proxy_re().is_match(image)
        || runs_proxy(&command_text(doc, s.body))
        || repo.is_configured_proxy(s.name)
        || repo.is_configured_proxy(image)
}

/// Does the start order matter between `dependent` and `target`? Not when nothing connects to the target at
/// start-up — a reverse proxy, or a Celery worker or beat (it consumes from the broker; nothing calls it) — nor when
/// the dependent does not connect at start-up: a reverse proxy resolves its upstreams per request, and a
/// datastore's admin UI connects when someone logs in (the judged findings of these shapes, calibration's adminer
/// and celery beat, were both FP).
fn start_order_matters(
    doc: &YamlDoc,
    dependent: &Service<'_>,
    target: &Service<'_>,
    repo: &RepoContext,
) -> bool {
    let target_command = command_text(doc, target.body).to_ascii_lowercase();
    // A Celery consumer by its command (`celery -A app worker`) or its name (`celery_worker`, `celery-beat`); a
    // service only named `*worker` may serve calls (DB-GPT's model workers do).
    let consumes = |t: &str| t.contains("celery") && (t.contains("worker") || t.contains("beat"));
    let celery_consumer = consumes(&target_command) || consumes(&target.name.to_ascii_lowercase());
    // An authenticating proxy (`oauth2-proxy`) fetches its identity provider's discovery document at start-up.
    let authenticating = |s: &Service<'_>| {
        let words = format!("{} {}", s.name, image_of(doc, s.body)).to_ascii_lowercase();
        words.contains("oauth2-proxy") || words.contains("oauth2proxy")
    };
    !(is_proxy_service(doc, target, repo)
        || celery_consumer
        || (is_proxy_service(doc, dependent, repo) && !authenticating(dependent))
        || admin_ui_re().is_match(image_of(doc, dependent.body)))
}

pub struct DependencyWithoutHealthcheck;

impl Check for DependencyWithoutHealthcheck {
    fn id(&self) -> &'static str {
        "compose-dependency-without-healthcheck"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["depends_on"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let all = services(doc);
            for target in &all {
                if incomplete(doc, target) || has_healthcheck(doc, target.body) {
                    continue;
                }
                let dependents: Vec<&str> = all
                    .iter()
                    .filter(|s| {
                        depends_on(doc, s.body).iter().any(|(n, _, cond)| {
                            n == target.name && *cond != Some("service_completed_successfully")
                        }) && start_order_matters(doc, s, target, ctx.repo)
                    })
                    .map(|s| s.name)
                    .collect();
                if dependents.is_empty() {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: target.entry.key_range.clone(),
                    message: Some(format!(
                        "service `{}` is a dependency of `{}` but has no `healthcheck:`: Compose starts the dependents as soon as its container runs, before it accepts connections; add a `healthcheck:` and `condition: service_healthy`",
                        target.name,
                        dependents.join("`, `")
                    )),
                });
            }
        }
    }
}

pub struct AppWithoutHealthcheck;

/// Where the repository's Dockerfiles are (the ones a `build:` may point at).
const DOCKERFILES: &[&str] = &[
    "**/Dockerfile",
    "**/Dockerfile.*",
    "**/*.Dockerfile",
    "**/*.dockerfile",
    "**/Containerfile",
];

/// `rel` taken from the folder `dir` (both repository-relative, forward slashes), normalised; `None` for URLs,
/// absolute paths and paths that leave the repository.
/// A command (or a Dockerfile) that starts a Python web app server (not a proxy, a worker or a Node/Java server).
fn runs_app_server(command: &str) -> bool {
    // Exec-form lists (`["fastapi", "run", …]`) read as words.
    let l = command
        .to_ascii_lowercase()
        .split(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '[' | ']'))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    [
        "uvicorn",
        "gunicorn",
        "hypercorn",
        "granian",
        "daphne",
        "fastapi run",
        "flask run",
        "manage.py runserver",
    ]
    .iter()
    .any(|w| l.contains(w))
}

/// A service's `command` and `entrypoint`, as one string (list items joined).
fn command_text(doc: &YamlDoc, body: &YNode) -> String {
    ["entrypoint", "command"]
        .iter()
        .filter_map(|k| doc.get(body, k))
        .flat_map(|n| match doc.str(n) {
            Some(s) => vec![s.to_string()],
            None => doc
                .items(n)
                .into_iter()
                .filter_map(|i| doc.str(i).map(str::to_string))
                .collect(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Check for AppWithoutHealthcheck {
    fn id(&self) -> &'static str {
        "compose-app-no-healthcheck"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &[
            "build:",
            "uvicorn",
            "gunicorn",
            "hypercorn",
            "granian",
            "daphne",
            "fastapi run",
            "flask run",
            "runserver",
        ]
    }
    fn needs(&self) -> &'static [&'static str] {
        DOCKERFILES
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if is_dev_infra_file(ctx.path) {
            return;
        }
        let compose_dir = ctx.path.rsplit_once('/').map_or("", |(d, _)| d);
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let all = services(doc);
            for s in &all {
                if incomplete(doc, s) || doc.get(s.body, "healthcheck").is_some() {
                    continue;
                }
                let image = image_of(doc, s.body);
                if is_proxy_service(doc, s, ctx.repo)
                    || datastore_re().is_match(image)
                    || datastore_re().is_match(s.name)
                {
                    continue;
                }
                // A dependency without a health check is compose-dependency-without-healthcheck's finding.
                let depended_on = all.iter().any(|o| {
                    depends_on(doc, o.body).iter().any(|(n, _, cond)| {
                        n == s.name && *cond != Some("service_completed_successfully")
                    })
                });
                if depended_on {
                    continue;
                }
                let command = command_text(doc, s.body);
                let listed = |key: &str| doc.get(s.body, key).is_some_and(|p| !p.is_empty());
                let why = match doc.get(s.body, "build") {
                    // The repository's own code: the app when it serves a port or runs an app server, and the
                    // image is a Python web app (its Dockerfile or the command names an app server).
                    Some(build) => {
                        if !(listed("ports") || listed("expose") || runs_app_server(&command)) {
                            continue;
                        }
                        // The image's own HEALTHCHECK counts; a Dockerfile we cannot read may have one.
                        let (text, name) = match build_file(doc, build, compose_dir) {
                            Some(BuildFile::Inline(t)) => (t, "`dockerfile_inline`".to_string()),
                            Some(BuildFile::Path(p)) => match ctx.repo.read(&p) {
                                Some(t) => (t.to_string(), format!("`{p}`")),
                                None => continue,
                            },
                            None => continue,
                        };
                        if image_health_covered(&text)
                            || !(runs_app_server(&command) || runs_app_server(&text))
                        {
                            continue;
                        }
                        format!(
                            "it builds the app, and its Dockerfile ({name}) has no `HEALTHCHECK` either"
                        )
                    }
                    // A published image: an app only when its command starts one.
                    None => {
                        if !runs_app_server(&command) {
                            continue;
                        }
                        // The image may be built from a Dockerfile of this repository that has a HEALTHCHECK.
                        let Ok(globs) = crate::analysis::context::needs_globset(DOCKERFILES) else {
                            continue;
                        };
                        if ctx.repo.paths.is_empty() {
                            continue;
                        }
                        let dockerfiles: Vec<&str> = ctx.repo.matching(&globs).collect();
                        if dockerfiles
                            .iter()
                            .any(|p| ctx.repo.read(p).is_none_or(image_health_covered))
                        {
                            continue;
                        }
                        "it runs the app server, and no Dockerfile of the repository has a `HEALTHCHECK`"
                            .to_string()
                    }
                };
                out.push(CheckMatch {
                    fix: None,
                    range: s.entry.key_range.clone(),
                    message: Some(format!(
                        "service `{}` has no `healthcheck:` and {why}: nothing tells Compose (`up --wait`, `depends_on: service_healthy`), Swarm's rolling updates or a proxy such as Traefik whether it is ready or hung; add a `healthcheck:` that calls the app's readiness endpoint",
                        s.name
                    )),
                });
            }
        }
    }
}

pub struct DependsOnNotHealthy;

impl Check for DependsOnNotHealthy {
    fn id(&self) -> &'static str {
        "compose-depends-on-not-healthy"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["depends_on"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let all = services(doc);
            for s in &all {
                for (name, range, cond) in depends_on(doc, s.body) {
                    // `service_started` written out is the authors' choice (the dependent retries on its own).
                    if matches!(
                        cond,
                        Some("service_healthy")
                            | Some("service_completed_successfully")
                            | Some("service_started")
                    ) {
                        continue;
                    }
                    // A dependent that restarts when it fails costs one restart if it starts too early.
                    let restarts = doc
                        .get(s.body, "restart")
                        .and_then(|r| doc.str(r))
                        .is_some_and(|r| {
                            matches!(
                                r.trim_matches(['"', '\'']),
                                "always" | "unless-stopped" | "on-failure"
                            ) || r.starts_with("on-failure:")
                        })
                        || doc.path(s.body, &["deploy", "restart_policy"]).is_some();
                    if restarts {
                        continue;
                    }
                    // Only where the target has a health check to wait for (else the other check reports it).
                    let Some(target) = all.iter().find(|t| t.name == name) else {
                        continue;
                    };
                    if !has_healthcheck(doc, target.body)
                        || !start_order_matters(doc, s, target, ctx.repo)
                    {
                        continue;
                    }
                    out.push(CheckMatch {
                        fix: None,
                        range,
                        message: Some(format!(
                            "`{}` depends on `{name}` without `condition: service_healthy`: it is started as soon as `{name}`'s container runs, not when its health check passes; use `depends_on: {{{name}: {{condition: service_healthy}}}}`",
                            s.name
                        )),
                    });
                }
            }
        }
    }
}

pub struct NoLimits;

impl Check for NoLimits {
    fn id(&self) -> &'static str {
        "compose-no-limits"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["services"]
    }
    fn needs(&self) -> &'static [&'static str] {
        COMPOSE_FILE_GLOBS
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if is_production_infra_file(ctx.path) {
            self.find_all(root, ctx, out);
        }
    }
}

impl NoLimits {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        if file.templated {
            return;
        }
        for doc in &file.docs {
            // `x-…` extension fields shared by every service (`deploy` set through an anchor) are resolved by merges.
            for s in services(doc) {
                if incomplete(doc, &s) {
                    continue;
                }
                // Its own limits, or those another Compose file of the folder gives it (an overlay applied with
                // `-f`, such as `docker-compose.resources.yml`).
                if has_limits(doc, s.body) || ctx.repo.limited_by_overlay(ctx.path, s.name) {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: s.entry.key_range.clone(),
                    message: Some(format!(
                        "service `{}` has no memory/CPU limit (`deploy.resources.limits` or `mem_limit`/`cpus`): one leaking or busy container can starve every other service on the host; set limits sized from its observed use",
                        s.name
                    )),
                });
            }
        }
    }
}

pub struct ImageUnpinned;

/// Stands for a variable without a default.
const UNSET: &str = "\u{1}";

/// Resolve `${VAR:-default}`, `${VAR-default}` to their defaults; variables without one (`${VAR}`,
/// `${VAR:?error}`) become [`UNSET`]. Returns the text and whether a default was used.
fn with_defaults(s: &str) -> Option<(String, bool)> {
    let mut out = String::new();
    let mut rest = s;
    let mut defaulted = false;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let inner = &rest[pos + 2..];
        let end = inner.find('}')?;
        let body = &inner[..end];
        let name_len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        let op = &body[name_len..];
        let default = op.strip_prefix(":-").or_else(|| op.strip_prefix('-'));
        match default {
            Some(d) if !d.contains('$') => {
                out.push_str(d);
                defaulted = true;
            }
            _ => out.push_str(UNSET),
        }
        rest = &inner[end + 1..];
    }
    if rest.contains('$') {
        return None;
    }
    out.push_str(rest);
    Some((out, defaulted))
}

impl Check for ImageUnpinned {
    fn id(&self) -> &'static str {
        "compose-image-unpinned"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["image"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            for s in services(doc) {
                if !s.body.is_map() || doc.get(s.body, "build").is_some() {
                    continue; // the image names what `build:` produces
                }
                let Some(entry) = doc.entry(s.body, "image") else {
                    continue;
                };
                if entry.value.templated {
                    continue;
                }
                let Some(written) = doc.str(&entry.value) else {
                    continue;
                };
                let Some((image, defaulted)) = with_defaults(written) else {
                    continue;
                };
                if image.is_empty() {
                    continue;
                }
                let r = image_ref(&image);
                if r.digest || r.name.is_empty() {
                    continue;
                }
                let what = match r.tag {
                    // `${IMAGE}` may carry its own tag
                    None if r.name.contains(UNSET) => continue,
                    Some(t) if t.contains(UNSET) => continue,
                    None => "has no tag (it means `latest`)".to_string(),
                    Some(t) if moving_tag(t) => {
                        if defaulted {
                            format!("defaults to the moving tag `{t}`")
                        } else {
                            format!("uses the moving tag `{t}`")
                        }
                    }
                    _ => continue,
                };
                out.push(CheckMatch {
                    fix: None,
                    range: entry.key_range.start..entry.value.range.end,
                    message: Some(format!(
                        "service `{}`: `image: {written}` {what}: each `docker compose pull` may run a different version and there is no previous version to roll back to; pin a version tag (or a digest)",
                        s.name
                    )),
                });
            }
        }
    }
}

pub struct LiteralSecret;

impl Check for LiteralSecret {
    fn id(&self) -> &'static str {
        "compose-literal-secret"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["environment"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if !is_dev_infra_file(ctx.path) {
            self.find_all(root, ctx, out);
        }
    }
}

impl LiteralSecret {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            for s in services(doc) {
                if !s.body.is_map() {
                    continue;
                }
                let Some(env) = doc.get(s.body, "environment") else {
                    continue;
                };
                let mut found: Vec<(String, std::ops::Range<usize>)> = Vec::new();
                match &env.kind {
                    YKind::Map(_) => {
                        for e in doc.entries(env) {
                            if let Some(v) = doc.str(&e.value)
                                && !e.value.templated
                                && literal_secret(&e.key, v)
                            {
                                found.push((e.key.clone(), e.key_range.start..e.value.range.end));
                            }
                        }
                    }
                    YKind::Seq(items) => {
                        for i in items {
                            if let Some(t) = doc.str(i)
                                && !i.templated
                                && let Some((k, v)) = t.split_once('=')
                                && literal_secret(k.trim(), v)
                            {
                                found.push((k.trim().to_string(), i.range.clone()));
                            }
                        }
                    }
                    _ => {}
                }
                for (name, range) in found {
                    out.push(CheckMatch {
                        fix: None,
                        range,
                        message: Some(format!(
                            "service `{}` sets `{name}` to a literal secret in the Compose file: it is in the repository history and every clone; reference it as `{name}: ${{{name}}}` from an untracked `.env`, or use Compose `secrets:`",
                            s.name
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
    use crate::analysis::context::RepoContext;
    use crate::analysis::language::{FileKind, Lang};
    use crate::analysis::semantic::paths::join_path;
    use crate::analysis::semantic::yaml;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn lines_of(check: &dyn Check, text: &str) -> Vec<usize> {
        let doc = Lang::Yaml.ast_grep(text);
        let mut out = Vec::new();
        check.run(&doc.root(), &FileContext::detached(), &mut out);
        out.iter()
            .map(|m| yaml::line_of(text, m.range.start))
            .collect()
    }

    fn lines_in(check: &dyn Check, path: &str, text: &str) -> Vec<usize> {
        let doc = Lang::Yaml.ast_grep(text);
        let repo = RepoContext::default();
        let ctx = FileContext {
            path,
            kind: FileKind::Compose,
            repo: &repo,
            lines: None,
            nodes: None,
        };
        let mut out = Vec::new();
        check.run(&doc.root(), &ctx, &mut out);
        out.iter()
            .map(|m| yaml::line_of(text, m.range.start))
            .collect()
    }

    #[test]
    fn defaults_of_image_variables() {
        assert_eq!(
            with_defaults("app:${TAG:-latest}"),
            Some(("app:latest".into(), true))
        );
        assert_eq!(
            with_defaults("app:${TAG-1.2}"),
            Some(("app:1.2".into(), true))
        );
        assert_eq!(with_defaults("${IMAGE}"), Some((UNSET.into(), false)));
        assert_eq!(
            with_defaults("${REG?must-be-set}/app:${TAG-latest}"),
            Some((format!("{UNSET}/app:latest"), true))
        );
    }

    #[test]
    fn findings_point_at_keys() {
        let text = "services:\n  api:\n    image: ghcr.io/acme/api:${TAG:-latest}\n    depends_on:\n      - db\n  db:\n    image: postgres:16\n    healthcheck:\n      test: [\"CMD\", \"pg_isready\"]\n  worker:\n    image: ghcr.io/acme/worker\n    depends_on: [cache]\n  cache:\n    image: redis:7\n";
        assert_eq!(lines_of(&ImageUnpinned, text), vec![3, 11]);
        assert_eq!(lines_of(&DependsOnNotHealthy, text), vec![5]);
        assert_eq!(lines_of(&DependencyWithoutHealthcheck, text), vec![13]);
    }

    #[test]
    fn extends_and_anchors_are_not_reported() {
        let text = "x-hc: &hc\n  healthcheck:\n    test: [\"CMD\", \"true\"]\n  deploy:\n    resources:\n      limits: {memory: 1g}\nservices:\n  db:\n    <<: *hc\n    image: postgres:16\n    profiles: [prod]\n  cache:\n    extends:\n      file: common.yml\n      service: cache\n  api:\n    <<: *hc\n    image: ghcr.io/acme/api:1.0\n    depends_on:\n      db: {condition: service_healthy}\n      cache: {condition: service_started}\n";
        assert!(lines_of(&DependencyWithoutHealthcheck, text).is_empty());
        assert!(lines_of(&NoLimits, text).is_empty());
        assert!(lines_of(&DependsOnNotHealthy, text).is_empty());
    }

    #[test]
    fn secrets_in_both_environment_forms() {
        let text = "services:\n  api:\n    image: a:1\n    environment:\n      OPENAI_API_KEY: sk-proj-Zq81kL0pMx3Tn7Rb2Wy5Hc9aQ\n      DB_PASSWORD: ${DB_PASSWORD}\n  worker:\n    image: a:1\n    environment:\n      - JWT_SECRET=Zx81kLq0pMv3Tn7Rb2Wy5Hc9\n      - POSTGRES_PASSWORD=postgres\n";
        assert_eq!(lines_of(&LiteralSecret, text), vec![5, 10]);
    }

    #[test]
    fn ports_of_backends_not_proxies() {
        let text = "services:\n  caddy:\n    image: caddy:2\n    ports: [\"80:80\"]\n  api:\n    image: a:1\n    ports:\n      - \"8000:8000\"\n  admin:\n    image: a:1\n    ports: [\"127.0.0.1:9000:9000\"]\n  db:\n    image: postgres:16\n    ports: [\"5432:5432\"]\n";
        // Published ports are judged in production files only.
        assert_eq!(
            lines_in(&PublishedPort, "deploy/docker-compose.prod.yml", text),
            vec![7]
        );
        assert!(lines_in(&PublishedPort, "docker-compose.yml", text).is_empty());
        assert!(lines_in(&PublishedPort, "docker-compose.dev.yml", text).is_empty());
        assert!(lines_in(&PublishedPort, "compose.override.yaml", text).is_empty());
    }

    #[test]
    fn build_paths_and_app_servers() {
        assert_eq!(
            join_path("deploy", "../backend/Dockerfile").as_deref(),
            Some("backend/Dockerfile")
        );
        assert_eq!(join_path("", "./Dockerfile").as_deref(), Some("Dockerfile"));
        assert_eq!(join_path("", "../x"), None);
        assert_eq!(join_path("", "https://github.com/acme/api.git"), None);
        assert_eq!(join_path("", "${CTX}/Dockerfile"), None);
        let file = yaml::parse(
            "services:\n  a:\n    build: ./api\n  b:\n    build:\n      context: ../svc\n      dockerfile: docker/b.Dockerfile\n  c:\n    build:\n      dockerfile_inline: |\n        FROM python:3.12\n",
        );
        let doc = &file.docs[0];
        let path_of = |svc: &str| {
            let body = doc.path(&doc.root, &["services", svc, "build"])?;
            match build_file(doc, body, "deploy")? {
                BuildFile::Path(p) => Some(p),
                BuildFile::Inline(t) => Some(format!("inline:{}", t.trim())),
            }
        };
        assert_eq!(path_of("a").as_deref(), Some("deploy/api/Dockerfile"));
        assert_eq!(path_of("b").as_deref(), Some("svc/docker/b.Dockerfile"));
        // Block scalars come as written; the words are what is read.
        assert!(
            path_of("c")
                .is_some_and(|t| t.starts_with("inline:") && t.contains("FROM python:3.12"))
        );
        assert!(runs_app_server(
            "CMD [\"fastapi\", \"run\", \"app/main.py\"]"
        ));
        assert!(runs_app_server(
            "gunicorn -k uvicorn.workers.UvicornWorker app:app"
        ));
        assert!(!runs_app_server("celery -A app.worker worker"));
        assert!(!runs_app_server("npm start"));
    }
}
