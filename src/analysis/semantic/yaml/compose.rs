//! The Compose view of a YAML document: its services, and what a `ports:` entry publishes. One definition for
//! every Compose check.

use super::{Entry, YKind, YNode, YamlDoc};
use crate::analysis::semantic::paths::{join_path, names_dev_variant};
use std::collections::{HashMap, HashSet};

/// A service: its name, its key and its body (aliases resolved).
pub struct Service<'a> {
    pub name: &'a str,
    pub entry: &'a Entry,
    pub body: &'a YNode,
}

/// The services of a Compose document (`services:` at the top; a merge key `<<` is not a service) that a
/// deployment runs: a service started only under development profiles (`profiles: ["frontend-dev", "ci"]`) or
/// scaled to nothing (`deploy: {replicas: 0}`, `scale: 0`) is left out.
pub fn services<'a>(doc: &'a YamlDoc) -> Vec<Service<'a>> {
    let Some(s) = doc.get(&doc.root, "services") else {
        return Vec::new();
    };
    let YKind::Map(entries) = &s.kind else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|e| e.key != "<<")
        .map(|e| Service {
            name: &e.key,
            entry: e,
            body: doc.resolve(&e.value),
        })
        .filter(|s| !never_deployed(doc, s.body))
        .collect()
}

/// Is a service body started only under development/test profiles, or scaled to zero replicas?
fn never_deployed(doc: &YamlDoc, body: &YNode) -> bool {
    let dev_profiles = doc.get(body, "profiles").is_some_and(|p| {
        let names: Vec<&str> = doc
            .items(p)
            .into_iter()
            .filter_map(|i| doc.str(i))
            .collect();
        !names.is_empty() && names.iter().all(|n| names_dev_variant(n))
    });
    let zero = |n: Option<&YNode>| n.and_then(|n| doc.str(n)).is_some_and(|v| v.trim() == "0");
    let replicas = doc.get(body, "deploy").and_then(|d| doc.get(d, "replicas"));
    dev_profiles || zero(replicas) || zero(doc.get(body, "scale"))
}

/// How a short-syntax `ports` entry that interpolates a variable (`${…}`) is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolated {
    /// An entry that starts with a variable (`${API_PORT}:8000`, `${BIND}:8000:8000`): the operator chooses the
    /// address or the port, so it is not taken as published on every interface (for services that may
    /// legitimately face clients).
    Trust,
    /// Only a variable address (`${BIND}:5432:5432`) is trusted; a variable host port (`${PG_PORT}:5432`) still
    /// binds every interface (for datastores, which never should).
    AddressOnly,
}

/// Is a `ports` entry published on every interface of the host? Short syntax `[HOST_IP:]HOST:CONTAINER` or a
/// bare container port (Docker picks a host port on every interface); long syntax with `published` and no
/// loopback `host_ip`.
pub fn published_everywhere(doc: &YamlDoc, item: &YNode, interpolated: Interpolated) -> bool {
    let loopback = |ip: &str| {
        ip.starts_with("127.") || ip == "localhost" || ip == "::1" || ip.starts_with("[::1]")
    };
    if item.is_map() {
        let published = doc.get(item, "published").is_some();
        let host_ip = doc.get(item, "host_ip").and_then(|n| doc.str(n));
        return published && !host_ip.is_some_and(|ip| loopback(ip) || ip.contains("${"));
    }
    let Some(s) = doc.str(item) else {
        return false;
    };
    let s = s.trim();
    if s.starts_with("${") && interpolated == Interpolated::Trust {
        return false;
    }
    if s.starts_with("[::1]") {
        return false;
    }
    // Variables may hold colons (`${BIND:-127.0.0.1}`): read the entry with each one as a single `$`.
    let plain = without_variables(s);
    let parts: Vec<&str> = plain.split(':').collect();
    if parts.len() >= 3 {
        let address = parts[0];
        // `${BIND}:5432:5432`: the address is the operator's choice.
        return !(address.contains('$') || loopback(address));
    }
    true
}

/// `s` with each `${…}` replaced by one `$` (an unclosed one runs to the end).
fn without_variables(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        out.push('$');
        match rest[i..].find('}') {
            Some(j) => rest = &rest[i + j + 1..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The Dockerfile a service's `build:` uses: a repository path, or the inline text (`dockerfile_inline`).
pub enum BuildFile {
    Path(String),
    Inline(String),
}

pub fn build_file(doc: &YamlDoc, build: &YNode, compose_dir: &str) -> Option<BuildFile> {
    if build.templated {
        return None;
    }
    if let Some(context) = doc.str(build) {
        return join_path(compose_dir, &format!("{context}/Dockerfile")).map(BuildFile::Path);
    }
    if !build.is_map() || doc.incomplete(build) {
        return None;
    }
    let scalar = |key: &str| {
        doc.get(build, key)
            .filter(|n| !n.templated)
            .and_then(|n| doc.str(n))
    };
    if let Some(inline) = scalar("dockerfile_inline") {
        return Some(BuildFile::Inline(inline.to_string()));
    }
    let context = scalar("context").unwrap_or(".");
    let dockerfile = scalar("dockerfile").unwrap_or("Dockerfile");
    let context = join_path(compose_dir, context)?;
    join_path(&context, dockerfile).map(BuildFile::Path)
}

/// The Dockerfiles whose image a Compose service builds and gives a health check (`healthcheck:` with a test, not
/// `disable: true` or `NONE`): Compose probes those containers whatever the Dockerfile says. Read from the
/// Compose files among `files` that are not development variants.
pub fn healthchecked_dockerfiles(files: &HashMap<String, String>) -> HashSet<String> {
    let mut out = HashSet::new();
    for (path, text) in files {
        if !crate::analysis::semantic::paths::is_compose_path(path)
            || crate::analysis::semantic::paths::is_dev_infra_file(path)
        {
            continue;
        }
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        for doc in &super::parse(text).docs {
            for service in services(doc) {
                let Some(check) = doc.get(service.body, "healthcheck") else {
                    continue;
                };
                let disabled = doc
                    .get(check, "disable")
                    .and_then(|n| doc.str(n))
                    .is_some_and(|v| v == "true");
                let none = doc
                    .get(check, "test")
                    .map(|t| doc.resolve(t))
                    .and_then(|t| match &t.kind {
                        YKind::Seq(items) => items.first().and_then(|i| doc.str(i)),
                        _ => doc.str(t),
                    })
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
                if disabled || none || doc.get(check, "test").is_none() {
                    continue;
                }
                if let Some(build) = doc.get(service.body, "build")
                    && let Some(BuildFile::Path(p)) = build_file(doc, build, dir)
                {
                    out.insert(p);
                }
            }
        }
    }
    out
}

/// Does this service body set a memory/CPU limit (`deploy.resources.limits`, or the legacy `mem_limit`/`cpus`)?
pub fn has_limits(doc: &YamlDoc, body: &YNode) -> bool {
    let limits = doc
        .path(body, &["deploy", "resources", "limits"])
        .is_some_and(|l| !l.is_empty());
    limits
        || ["mem_limit", "cpus", "memory"]
            .iter()
            .any(|k| doc.get(body, k).is_some())
}

/// Per Compose file among `files` that is not a development variant: its path and the services it gives limits.
/// A file that only sets limits (`docker-compose.resources.yml`, applied with `-f`) is how a project ships them
/// for the services of the other files of its folder.
pub fn limited_services(files: &HashMap<String, String>) -> Vec<(String, HashSet<String>)> {
    let mut out = Vec::new();
    for (path, text) in files {
        if !crate::analysis::semantic::paths::is_compose_path(path)
            || crate::analysis::semantic::paths::is_dev_infra_file(path)
        {
            continue;
        }
        let mut names = HashSet::new();
        for doc in &super::parse(text).docs {
            for service in services(doc) {
                if has_limits(doc, service.body) {
                    names.insert(service.name.to_string());
                }
            }
        }
        if !names.is_empty() {
            out.push((path.clone(), names));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn services_never_deployed_are_left_out() {
        let text = "services:\n  api:\n    image: acme/api:1\n  web:\n    image: acme/web:1\n    profiles: [\"frontend-dev\", \"ci\"]\n  gpu:\n    image: acme/gpu:1\n    profiles: [\"gpu\", \"ci\"]\n  old:\n    image: acme/old:1\n    deploy:\n      replicas: 0\n  spare:\n    image: acme/spare:1\n    scale: 0\n";
        let file = parse(text);
        let names: Vec<&str> = services(&file.docs[0]).iter().map(|s| s.name).collect();
        assert_eq!(names, ["api", "gpu"]);
    }

    fn everywhere(entries: &str, interpolated: Interpolated) -> Vec<bool> {
        let text = format!("services:\n  db:\n    image: postgres:16\n    ports:\n{entries}");
        let file = parse(&text);
        let doc = &file.docs[0];
        let svc = &services(doc)[0];
        let Some(ports) = doc.get(svc.body, "ports") else {
            panic!("no ports");
        };
        doc.items(ports)
            .into_iter()
            .map(|i| published_everywhere(doc, i, interpolated))
            .collect()
    }

    #[test]
    fn one_reading_of_ports_with_named_treatment_of_variables() {
        let entries = "      - \"5432:5432\"\n      - \"127.0.0.1:5432:5432\"\n      - \"[::1]:6379:6379\"\n      - \"8000\"\n      - \"${PG_PORT:-5432}:5432\"\n      - \"${BIND:-127.0.0.1}:5432:5432\"\n      - \"0.0.0.0:6333:6333\"\n      - target: 5432\n        published: 5432\n      - target: 5432\n        published: 5432\n        host_ip: 127.0.0.1\n";
        assert_eq!(
            everywhere(entries, Interpolated::AddressOnly),
            [true, false, false, true, true, false, true, true, false]
        );
        assert_eq!(
            everywhere(entries, Interpolated::Trust),
            [true, false, false, true, false, false, true, true, false]
        );
    }

    #[test]
    fn variables_are_read_as_one_token() {
        assert_eq!(without_variables("${A:-1:2}:80"), "$:80");
        assert_eq!(without_variables("${A"), "$");
        assert_eq!(without_variables("80:80"), "80:80");
    }
}

#[cfg(test)]
mod healthcheck_tests {
    use super::*;

    #[test]
    fn dockerfiles_a_compose_service_builds_with_a_health_check() {
        let mut files = HashMap::new();
        files.insert(
            "deploy/docker-compose.yml".to_string(),
            "services:\n  api:\n    build: ../api\n    healthcheck:\n      test: [\"CMD\", \"curl\", \"-f\", \"http://localhost/health\"]\n  worker:\n    build:\n      context: ../worker\n      dockerfile: Dockerfile.prod\n    healthcheck:\n      disable: true\n  ui:\n    build: ../ui\n    healthcheck:\n      test: [\"NONE\"]\n  bare:\n    build: ../bare\n".to_string(),
        );
        // A development variant's health check says nothing about production.
        files.insert(
            "docker-compose.dev.yml".to_string(),
            "services:\n  dev:\n    build: ./dev\n    healthcheck:\n      test: curl -f http://localhost\n".to_string(),
        );
        let got = healthchecked_dockerfiles(&files);
        assert_eq!(got, HashSet::from(["api/Dockerfile".to_string()]));
    }

    #[test]
    fn services_a_compose_file_gives_limits() {
        let mut files = HashMap::new();
        files.insert(
            "deploy/docker-compose.resources.yml".to_string(),
            "services:\n  api:\n    deploy:\n      resources:\n        limits: {memory: 4G}\n  db:\n    mem_limit: 2g\n  cache:\n    deploy:\n      resources:\n        reservations: {memory: 1G}\n".to_string(),
        );
        // A development variant's limits say nothing about production.
        files.insert(
            "deploy/docker-compose.dev.yml".to_string(),
            "services:\n  search:\n    mem_limit: 1g\n".to_string(),
        );
        let got = limited_services(&files);
        assert_eq!(
            got,
            vec![(
                "deploy/docker-compose.resources.yml".to_string(),
                HashSet::from(["api".to_string(), "db".to_string()])
            )]
        );
    }
}
