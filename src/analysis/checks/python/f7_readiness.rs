//! F7 across files: a FastAPI app is created here, the repository deploys it (Compose files, Kubernetes
//! manifests, Helm charts or Dockerfiles), and nothing it can see is a readiness signal: no health route in this
//! file, no module named for health or readiness anywhere in the tree, no probe or `healthcheck` in any deployment
//! file.
//!
//! Complements `fastapi-app-no-health` (F7-fastapi-no-health-route), which judges apps whose whole route table is
//! in their file: this one judges the apps that one leaves alone (they include routers or mount sub-apps), by
//! looking at the repository. A repository without deployment files is not judged.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::semantic::python::roles::is_fastapi_app;
use crate::analysis::semantic::python::syntax::callee_tail;

pub struct FastApiNoReadinessAnywhere;

/// Words that show a health or readiness route, or a probe, in code or deployment files (lower-case).
const SIGNALS: &[&str] = &[
    "health",
    "readyz",
    "livez",
    "/ready",
    "/live",
    "/ping",
    "heartbeat",
    "readinessprobe",
    "livenessprobe",
    "startupprobe",
];

/// Words in a file name that suggest a health module (`health.py`, `probes.py`, `readiness.py`).
const NAMES: &[&str] = &[
    "health",
    "ready",
    "readiness",
    "liveness",
    "probe",
    "heartbeat",
];

const NEEDS: &[&str] = &[
    "**/docker-compose*.yml",
    "**/docker-compose*.yaml",
    "**/compose.yml",
    "**/compose.yaml",
    "**/compose.*.yml",
    "**/compose.*.yaml",
    "**/Dockerfile",
    "**/Dockerfile.*",
    "**/*.Dockerfile",
    "**/templates/**/*.yaml",
    "**/templates/**/*.yml",
    "**/k8s/**/*.yaml",
    "**/k8s/**/*.yml",
    "**/kubernetes/**/*.yaml",
    "**/kubernetes/**/*.yml",
    "**/manifests/**/*.yaml",
    "**/manifests/**/*.yml",
];

/// Does the file hand its routes to routers or sub-apps defined elsewhere?
fn routes_elsewhere(root: &PyNode<'_>) -> bool {
    root.dfs().filter(|n| n.kind() == "call").any(|c| {
        callee_tail(&c).is_some_and(|t| {
            matches!(
                t.as_str(),
                "include_router" | "mount" | "host" | "add_routes"
            ) || t.starts_with("include_router")
        })
    })
}

fn file_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase()
}

impl Check for FastApiNoReadinessAnywhere {
    fn id(&self) -> &'static str {
        "fastapi-no-readiness-anywhere"
    }

    fn tokens(&self) -> &'static [&'static str] {
        &["FastAPI"]
    }

    fn needs(&self) -> &'static [&'static str] {
        NEEDS
    }

    fn run<'r>(&self, root: &PyNode<'r>, ctx: &FileContext<'r>, out: &mut Vec<CheckMatch>) {
        let imports = ctx.imports(root);
        let ctors: Vec<PyNode<'_>> = root.dfs().filter(|c| is_fastapi_app(c, &imports)).collect();
        if ctors.is_empty() || !routes_elsewhere(root) {
            return;
        }
        let lower = root.text().to_ascii_lowercase();
        if SIGNALS.iter().any(|w| lower.contains(w)) {
            return;
        }
        // Health modules anywhere in the tree.
        if ctx.repo.paths.iter().any(|p| {
            let name = file_name(p);
            name.ends_with(".py") && NAMES.iter().any(|w| name.contains(w))
        }) {
            return;
        }
        // The deployment files: none at all → not judged; any probe or health check → fine.
        let Ok(globs) = crate::analysis::context::needs_globset(NEEDS) else {
            return;
        };
        let deploy: Vec<&str> = ctx.repo.matching(&globs).collect();
        if deploy.is_empty() {
            return;
        }
        let probed = deploy.iter().any(|p| {
            ctx.repo.read(p).is_some_and(|t| {
                let t = t.to_ascii_lowercase();
                SIGNALS.iter().any(|w| t.contains(w)) || t.contains("healthcheck")
            })
        });
        if probed || deploy.iter().any(|p| ctx.repo.read(p).is_none()) {
            // A deployment file we could not read may hold the probe: precision first.
            return;
        }
        for call in ctors {
            out.push(CheckMatch {
                fix: None,
                range: call.range(),
                message: Some(format!(
                    "this FastAPI app has no readiness signal anywhere the change can see: no health route here, \
                     no health module in the repository, and none of its {} deployment file{} ({}) has a probe or \
                     health check; Kubernetes/Compose will send traffic to replicas that cannot serve it",
                    deploy.len(),
                    if deploy.len() == 1 { "" } else { "s" },
                    deploy.iter().take(3).copied().collect::<Vec<_>>().join(", ")
                )),
            });
        }
    }
}
