//! Facts about container images and the services they run, shared by the Dockerfile, Compose and Kubernetes
//! checks: image references and moving tags, datastore images, images that bring their own health check, and
//! commands that serve HTTP.

use regex::Regex;
use std::sync::OnceLock;

/// A Compose-style or Kubernetes image reference split into name, tag and digest.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub name: &'a str,
    pub tag: Option<&'a str>,
    pub digest: bool,
}

/// Split `registry:5000/org/name:tag@sha256:…`.
pub fn image_ref(image: &str) -> ImageRef<'_> {
    let (rest, digest) = match image.split_once('@') {
        Some((r, _)) => (r, true),
        None => (image, false),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[last_slash..].rfind(':') {
        Some(c) => ImageRef {
            name: &rest[..last_slash + c],
            tag: Some(&rest[last_slash + c + 1..]),
            digest,
        },
        None => ImageRef {
            name: rest,
            tag: None,
            digest,
        },
    }
}

/// Tags that move: a rollback to "the previous version" is impossible when the tag names no version.
pub fn moving_tag(tag: &str) -> bool {
    matches!(
        tag.to_ascii_lowercase().as_str(),
        "latest"
            | "main"
            | "master"
            | "develop"
            | "dev"
            | "edge"
            | "nightly"
            | "stable"
            | "head"
            | "trunk"
            | "unstable"
            | "canary"
    )
}

pub fn datastore_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)(^|/)(postgres|postgis|pgvector|timescaledb\w*|qdrant|redis(-stack\w*)?|valkey|mongo|mysql|mariadb|elasticsearch|opensearch|rabbitmq|minio|memcached|weaviate|milvus|chroma|vespa|neo4j|clickhouse\w*|nats|kafka)([:@]|$)")
            .expect("valid regex")
    })
}

/// A command or entrypoint that starts a web server (ASGI/WSGI servers, dev servers, proxies).
pub fn serves_http(stage_cmds: &str) -> bool {
    let l = stage_cmds.to_ascii_lowercase();
    [
        "uvicorn",
        "gunicorn",
        "hypercorn",
        "granian",
        "daphne",
        "fastapi run",
        "flask run",
        "manage.py runserver",
        "nginx",
        "caddy",
        "httpd",
    ]
    .iter()
    .any(|w| l.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        assert_eq!(
            image_ref("ghcr.io:443/org/app:1.2@sha256:ab"),
            ImageRef {
                name: "ghcr.io:443/org/app",
                tag: Some("1.2"),
                digest: true
            }
        );
        assert_eq!(image_ref("localhost:5000/app").tag, None);
        assert_eq!(image_ref("redis").tag, None);
        assert!(moving_tag("Latest"));
        assert!(!moving_tag("1.27-alpine"));
    }
}
