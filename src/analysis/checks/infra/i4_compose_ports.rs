//! I4: a database, cache, queue or vector store publishing its port in a production Compose file.
//!
//! `ports: ["5432:5432"]` binds the host's port on every interface: the datastore is reachable from wherever the
//! host is, protected only by its password (Qdrant and Redis often by none). In production only the reverse proxy
//! publishes ports; the backend reaches the datastores over the Compose network by service name.
//!
//! Reported for services whose image is a known datastore, for `ports` entries not bound to a loopback address.
//! The rule file limits it to Compose files named for production (`*prod*`, `*deploy*`, ...): development files
//! publish ports for local tools on purpose.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::container::datastore_re;
use crate::analysis::semantic::paths::is_production_infra_file;

pub struct ComposeDatastorePort;

/// The text of a scalar node without quotes.
fn scalar(node: &PyNode<'_>) -> String {
    let t = node.text();
    t.trim().trim_matches('"').trim_matches('\'').to_string()
}

/// The pairs of a mapping node (`block_node > block_mapping`, or the mapping itself).
fn pairs<'r>(node: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let mapping = if node.kind() == "block_mapping" {
        Some(node.clone())
    } else {
        node.children().find(|c| c.kind() == "block_mapping")
    };
    mapping
        .map(|m| {
            m.children()
                .filter(|c| c.kind() == "block_mapping_pair")
                .collect()
        })
        .unwrap_or_default()
}

fn key_of(pair: &PyNode<'_>) -> Option<String> {
    pair.field("key").map(|k| scalar(&k))
}

/// The items of a sequence value (block or flow).
fn items<'r>(value: &PyNode<'r>) -> Vec<PyNode<'r>> {
    let mut out = Vec::new();
    for n in value.dfs() {
        match n.kind().as_ref() {
            "block_sequence_item" => {
                if let Some(v) = n.children().find(|c| c.is_named()) {
                    out.push(v);
                }
            }
            "flow_sequence" => out.extend(n.children().filter(|c| c.kind() == "flow_node")),
            _ => {}
        }
    }
    out
}

/// Is a `ports` entry published on all interfaces? Short syntax `"[HOST_IP:]HOST:CONTAINER"` or a bare container
/// port; long syntax with `host_ip`.
fn published_everywhere(item: &PyNode<'_>) -> bool {
    let loopback =
        |ip: &str| ip.starts_with("127.") || ip == "localhost" || ip == "::1" || ip == "[::1]";
    let long = pairs(item);
    if !long.is_empty() {
        let host_ip = long
            .iter()
            .find(|p| key_of(p).as_deref() == Some("host_ip"))
            .and_then(|p| p.field("value"))
            .map(|v| scalar(&v));
        let published = long
            .iter()
            .any(|p| key_of(p).as_deref() == Some("published"));
        return published && !host_ip.is_some_and(|ip| loopback(&ip));
    }
    let s = scalar(item);
    // `${DB_BIND:-127.0.0.1}:5432:5432`: a variable address may be loopback: trust it.
    if s.starts_with("${") && s.matches(':').count() >= 3 {
        return false;
    }
    let first = s.split(':').next().unwrap_or("");
    !(loopback(first) || first.starts_with("[::1]"))
}

impl Check for ComposeDatastorePort {
    fn id(&self) -> &'static str {
        "compose-datastore-port"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["ports"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if is_production_infra_file(ctx.path) {
            self.find_all(root, out);
        }
    }
}

impl ComposeDatastorePort {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, out: &mut Vec<CheckMatch>) {
        for services in root.dfs().filter(|n| {
            n.kind() == "block_mapping_pair" && key_of(n).as_deref() == Some("services")
        }) {
            let Some(value) = services.field("value") else {
                continue;
            };
            for svc in pairs(&value) {
                let name = key_of(&svc).unwrap_or_default();
                let Some(body) = svc.field("value") else {
                    continue;
                };
                let fields = pairs(&body);
                let image = fields
                    .iter()
                    .find(|p| key_of(p).as_deref() == Some("image"))
                    .and_then(|p| p.field("value"))
                    .map(|v| scalar(&v))
                    .unwrap_or_default();
                if !datastore_re().is_match(&image) {
                    continue;
                }
                let Some(ports) = fields
                    .iter()
                    .find(|p| key_of(p).as_deref() == Some("ports"))
                    .and_then(|p| p.field("value"))
                else {
                    continue;
                };
                for item in items(&ports) {
                    if !published_everywhere(&item) {
                        continue;
                    }
                    out.push(CheckMatch {
                        fix: None,
                        range: item.range(),
                        message: Some(format!(
                            "service `{name}` (`{image}`) publishes `{}` on every interface of the host: the datastore is reachable from outside the Compose network; drop `ports:` (the backend connects by service name) or bind it to `127.0.0.1`",
                            scalar(&item).lines().next().unwrap_or("")
                        )),
                    });
                }
            }
        }
    }
}
