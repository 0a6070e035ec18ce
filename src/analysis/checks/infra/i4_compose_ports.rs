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
use crate::analysis::semantic::yaml::compose::{Interpolated, published_everywhere, services};

pub struct ComposeDatastorePort;

impl Check for ComposeDatastorePort {
    fn id(&self) -> &'static str {
        "compose-datastore-port"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["ports"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if !is_production_infra_file(ctx.path) {
            return;
        }
        let text = root.text();
        let file = ctx.yaml(root);
        for doc in &file.docs {
            for s in services(doc) {
                let image = doc
                    .get(s.body, "image")
                    .and_then(|n| doc.str(n))
                    .unwrap_or("");
                if !datastore_re().is_match(image) {
                    continue;
                }
                let Some(ports) = doc.get(s.body, "ports") else {
                    continue;
                };
                for item in doc.items(ports) {
                    if item.templated || !published_everywhere(doc, item, Interpolated::AddressOnly)
                    {
                        continue;
                    }
                    let shown = text
                        .get(item.range.clone())
                        .unwrap_or("")
                        .trim()
                        .trim_matches('"')
                        .trim_matches('\'');
                    out.push(CheckMatch {
                        fix: None,
                        range: item.range.clone(),
                        message: Some(format!(
                            "service `{}` (`{image}`) publishes `{}` on every interface of the host: the datastore is reachable from outside the Compose network; drop `ports:` (the backend connects by service name) or bind it to `127.0.0.1`",
                            s.name,
                            shown.lines().next().unwrap_or("")
                        )),
                    });
                }
            }
        }
    }
}
