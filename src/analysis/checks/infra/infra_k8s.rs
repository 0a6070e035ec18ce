//! Kubernetes manifest and Helm checks over the [`semantic::yaml`](crate::analysis::semantic::yaml) model.
//!
//! Helm templates are read with their `{{ … }}` actions blanked: values that came from an action are never
//! judged, and checks that report something *missing* (resources, probes) stay quiet in templated files, whose
//! missing parts are usually included by an action; `values.yaml` is checked where the values are defined.
//!
//! * [`NoResources`] (I6): a container without cpu and memory `requests` and `limits`.
//! * [`NoProbes`] (F7): a Deployment/StatefulSet/DaemonSet container that serves traffic (it declares ports, or its
//!   `command`/`args` start a web server such as uvicorn or gunicorn) without `readinessProbe` or `livenessProbe`.
//! * [`ImageUnpinned`] (O5): a container image without tag, `latest` or another moving tag.
//! * [`ServiceExposed`] / [`DatastoreExposed`] (I4): a `Service` of type `LoadBalancer`/`NodePort` that is not the
//!   ingress/proxy; datastores separately (high).
//! * [`SingleReplica`] (I3): `replicas: 1` on a Deployment that serves traffic (low).
//! * [`EnvSecret`] (O3): a literal secret as `env[].value`.
//! * [`ValuesNoResources`] (I6) and [`ValuesImageUnpinned`] (O5): the same in Helm values files.

use crate::analysis::checks::{Check, CheckMatch, PyNode};
use crate::analysis::context::FileContext;
use crate::analysis::language::FileKind;
use crate::analysis::semantic::container::{datastore_re, image_ref, moving_tag, serves_http};
use crate::analysis::semantic::secrets::literal_secret;
use crate::analysis::semantic::yaml::{YKind, YNode, YamlDoc};
use regex::Regex;
use std::ops::Range;
use std::sync::OnceLock;

/// Manifests of test and load-test setups (`tests/`, `e2e/`, `loadtest/`): missing probes, limits and replicas
/// are not worth a review comment there.
fn test_setup(path: &str) -> bool {
    path.to_ascii_lowercase().split('/').any(|d| {
        matches!(
            d,
            "test" | "tests" | "e2e" | "loadtest" | "load-test" | "testdata"
        )
    })
}

/// A workload's pod spec and containers.
struct Workload<'a> {
    kind: &'a str,
    name: &'a str,
    spec: &'a YNode,
    pod: &'a YNode,
}

fn scalar<'a>(doc: &'a YamlDoc, node: &'a YNode, keys: &[&str]) -> Option<&'a str> {
    let n = doc.path(node, keys)?;
    if n.templated {
        return None;
    }
    doc.str(n)
}

fn workloads(doc: &YamlDoc) -> Option<Workload<'_>> {
    let kind = scalar(doc, &doc.root, &["kind"])?;
    let name = scalar(doc, &doc.root, &["metadata", "name"]).unwrap_or("");
    let spec = doc.get(&doc.root, "spec")?;
    let pod = match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            doc.path(spec, &["template", "spec"])?
        }
        "CronJob" => doc.path(spec, &["jobTemplate", "spec", "template", "spec"])?,
        "Pod" => spec,
        _ => return None,
    };
    Some(Workload {
        kind,
        name,
        spec,
        pod,
    })
}

fn containers<'a>(doc: &'a YamlDoc, pod: &'a YNode, key: &str) -> Vec<&'a YNode> {
    doc.get(pod, key)
        .map(|c| doc.items(c))
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.is_map())
        .collect()
}

fn container_name<'a>(doc: &'a YamlDoc, c: &'a YNode) -> &'a str {
    scalar(doc, c, &["name"]).unwrap_or("?")
}

/// The range of a container's first key (its `- name:` line in the usual layout).
fn container_anchor(doc: &YamlDoc, c: &YNode) -> Range<usize> {
    match doc.entry(c, "name") {
        Some(e) => e.key_range.clone(),
        None => match &c.kind {
            YKind::Map(e) if !e.is_empty() => e[0].key_range.clone(),
            _ => c.range.clone(),
        },
    }
}

/// What of cpu/memory requests and limits a `resources` mapping lacks (a request defaults to its limit).
fn missing_resources(doc: &YamlDoc, res: Option<&YNode>) -> Vec<&'static str> {
    let mut missing = Vec::new();
    for (part, key, label) in [
        ("requests", "cpu", "requests.cpu"),
        ("requests", "memory", "requests.memory"),
        ("limits", "cpu", "limits.cpu"),
        ("limits", "memory", "limits.memory"),
    ] {
        let has = |p: &str| res.and_then(|r| doc.path(r, &[p, key])).is_some();
        // Kubernetes defaults a missing request to the limit.
        let present = has(part) || (part == "requests" && has("limits"));
        if !present {
            missing.push(label);
        }
    }
    missing
}

pub struct NoResources;

impl Check for NoResources {
    fn id(&self) -> &'static str {
        "k8s-no-resources"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["containers"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if !test_setup(ctx.path) {
            self.find_all(root, ctx, out);
        }
    }
}

impl NoResources {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        if file.templated {
            return;
        }
        for doc in &file.docs {
            let Some(w) = workloads(doc) else { continue };
            for c in containers(doc, w.pod, "containers") {
                if doc.incomplete(c) {
                    continue;
                }
                let entry = doc.entry(c, "resources");
                let res = entry.map(|e| doc.resolve(&e.value));
                if res.is_some_and(|r| doc.incomplete(r)) {
                    continue;
                }
                let missing = missing_resources(doc, res);
                if missing.is_empty() {
                    continue;
                }
                let range = match entry {
                    Some(e) => e.key_range.clone(),
                    None => container_anchor(doc, c),
                };
                out.push(CheckMatch {
                    fix: None,
                    range,
                    message: Some(format!(
                        "container `{}` of {} `{}` has no `resources.{}`: without requests the scheduler packs pods blindly, and without limits one pod can take the node's memory or CPU from its neighbours; set cpu and memory requests and limits",
                        container_name(doc, c),
                        w.kind,
                        w.name,
                        missing.join("`, `resources.")
                    )),
                });
            }
        }
    }
}

pub struct NoProbes;

impl Check for NoProbes {
    fn id(&self) -> &'static str {
        "k8s-no-probes"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["containers"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if !test_setup(ctx.path) {
            self.find_all(root, ctx, out);
        }
    }
}

impl NoProbes {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        if file.templated {
            return;
        }
        for doc in &file.docs {
            let Some(w) = workloads(doc) else { continue };
            if !matches!(w.kind, "Deployment" | "StatefulSet" | "DaemonSet") {
                continue;
            }
            for c in containers(doc, w.pod, "containers") {
                if doc.incomplete(c) {
                    continue;
                }
                let mut missing = Vec::new();
                // Workers without ports get no traffic to gate; their liveness is a weaker case, left alone. A
                // container whose command starts a web server serves even when its ports are not declared.
                let command: Vec<&str> = ["command", "args"]
                    .iter()
                    .filter_map(|k| doc.get(c, k))
                    .flat_map(|n| match doc.str(n) {
                        Some(s) => vec![s],
                        None => doc
                            .items(n)
                            .into_iter()
                            .filter_map(|i| doc.str(i))
                            .collect(),
                    })
                    .collect();
                let serves = doc.get(c, "ports").is_some_and(|p| !p.is_empty())
                    || serves_http(&command.join(" "));
                if !serves {
                    continue;
                }
                if doc.get(c, "readinessProbe").is_none() {
                    missing.push("readinessProbe");
                }
                if doc.get(c, "livenessProbe").is_none() {
                    missing.push("livenessProbe");
                }
                if missing.is_empty() {
                    continue;
                }
                out.push(CheckMatch {
                    fix: None,
                    range: container_anchor(doc, c),
                    message: Some(format!(
                        "container `{}` of {} `{}` has no `{}`: Kubernetes {} ; probe the app's readiness endpoint (DB/vector store checked) and a cheap liveness endpoint",
                        container_name(doc, c),
                        w.kind,
                        w.name,
                        missing.join("` or `"),
                        if missing.contains(&"readinessProbe") {
                            "sends traffic to it before it can serve and keeps sending while its dependencies are down, and restarts nothing when it hangs"
                        } else {
                            "cannot tell a hung process from a working one and never restarts it"
                        }
                    )),
                });
            }
        }
    }
}

pub struct ImageUnpinned;

/// A finding about one `image:` (and `imagePullPolicy`) of a container or values block, if it moves.
fn judge_image(image: &str, pull_always: bool) -> Option<String> {
    if image.contains('$') || image.is_empty() {
        return None;
    }
    let r = image_ref(image);
    if r.digest {
        return None;
    }
    let always = if pull_always {
        " with `imagePullPolicy: Always`, so every pod start may pull a different image"
    } else {
        ""
    };
    match r.tag {
        None => Some(format!("has no tag (it means `latest`){always}")),
        Some(t) if moving_tag(t) => Some(format!("uses the moving tag `{t}`{always}")),
        _ => None,
    }
}

/// Does the repository rewrite image names at deploy time (Skaffold, Kustomize `images:`)? Then a bare name
/// like `image: frontend` is a placeholder.
fn images_rewritten(ctx: &FileContext<'_>) -> bool {
    ctx.repo.paths.iter().any(|p| {
        let name = p.rsplit('/').next().unwrap_or(p);
        matches!(
            name,
            "skaffold.yaml" | "skaffold.yml" | "kustomization.yaml" | "kustomization.yml"
        )
    })
}

impl Check for ImageUnpinned {
    fn id(&self) -> &'static str {
        "k8s-image-unpinned"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["image"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let mut found = Vec::new();
        self.find_all(root, ctx, &mut found);
        let text = &root.get_doc().src;
        let rewritten = images_rewritten(ctx);
        out.extend(found.into_iter().filter(|m| {
            // `image: frontend`: no registry, no tag
            let bare = text
                .get(m.range.clone())
                .and_then(|t| t.split_once(':'))
                .map(|(_, v)| v.trim().trim_matches(['"', '\'']))
                .is_some_and(|v| !v.contains('/') && !v.contains(':'));
            !(rewritten && bare)
        }));
    }
}

impl ImageUnpinned {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let Some(w) = workloads(doc) else { continue };
            for key in ["initContainers", "containers"] {
                for c in containers(doc, w.pod, key) {
                    let Some(entry) = doc.entry(c, "image") else {
                        continue;
                    };
                    if entry.value.templated {
                        continue;
                    }
                    let Some(image) = doc.str(&entry.value) else {
                        continue;
                    };
                    let always = scalar(doc, c, &["imagePullPolicy"]) == Some("Always");
                    let Some(what) = judge_image(image, always) else {
                        continue;
                    };
                    out.push(CheckMatch {
                        fix: None,
                        range: entry.key_range.start..entry.value.range.end,
                        message: Some(format!(
                            "container `{}` of {} `{}`: `image: {image}` {what}; replicas can run different versions and a rollback redeploys whatever the tag points to now; pin a version tag or a digest",
                            container_name(doc, c),
                            w.kind,
                            w.name
                        )),
                    });
                }
            }
        }
    }
}

fn proxy_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)ingress|proxy|gateway|caddy|nginx|traefik|envoy|haproxy|istio|kong|contour|ambassador|emissary|frontend|loadbalancer|\blb\b")
            .expect("valid regex")
    })
}

/// `type: LoadBalancer|NodePort` of a Service that is not the entry point, with whether it is a datastore.
fn exposed_services(
    root: &PyNode<'_>,
    ctx: &FileContext<'_>,
) -> Vec<(Range<usize>, String, String, bool)> {
    let repo = ctx.repo;
    let file = ctx.yaml(root);
    let mut out = Vec::new();
    // In a Helm template the type is chosen by values (`{{- if eq .Values.service.type "NodePort" }}`).
    if file.templated {
        return out;
    }
    for doc in &file.docs {
        if scalar(doc, &doc.root, &["kind"]) != Some("Service") {
            continue;
        }
        let Some(spec) = doc.get(&doc.root, "spec") else {
            continue;
        };
        let Some(t) = doc.entry(spec, "type") else {
            continue;
        };
        if t.value.templated {
            continue;
        }
        let Some(ty) = doc.str(&t.value) else {
            continue;
        };
        if ty != "LoadBalancer" && ty != "NodePort" {
            continue;
        }
        let name = scalar(doc, &doc.root, &["metadata", "name"]).unwrap_or("");
        // Names, labels and selector values say what the Service fronts.
        let mut words = vec![name.to_string()];
        for path in [&["metadata", "labels"][..], &["spec", "selector"][..]] {
            if let Some(m) = doc.path(&doc.root, path) {
                for e in doc.entries(m) {
                    if let Some(v) = doc.str(&e.value) {
                        words.push(v.to_string());
                    }
                }
            }
        }
        let text = words.join(" ");
        if proxy_re().is_match(&text) || repo.is_configured_proxy(&text) {
            continue;
        }
        let datastore = words.iter().any(|w| datastore_re().is_match(w));
        out.push((
            t.key_range.start..t.value.range.end,
            name.to_string(),
            ty.to_string(),
            datastore,
        ));
    }
    out
}

pub struct ServiceExposed;

impl Check for ServiceExposed {
    fn id(&self) -> &'static str {
        "k8s-service-exposed"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["LoadBalancer", "NodePort"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        self.exposed(root, ctx, out);
    }
}

impl ServiceExposed {
    fn exposed(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        for (range, name, ty, datastore) in exposed_services(root, ctx) {
            if datastore {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range,
                message: Some(format!(
                    "Service `{name}` is `type: {ty}`: it is reachable from outside the cluster without the ingress/proxy (TLS, auth, rate limits); make it `ClusterIP` and route to it through the Ingress"
                )),
            });
        }
    }
}

pub struct DatastoreExposed;

impl Check for DatastoreExposed {
    fn id(&self) -> &'static str {
        "k8s-datastore-exposed"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["LoadBalancer", "NodePort"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        self.exposed(root, ctx, out);
    }
}

impl DatastoreExposed {
    fn exposed(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        for (range, name, ty, datastore) in exposed_services(root, ctx) {
            if !datastore {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range,
                message: Some(format!(
                    "Service `{name}` exposes a datastore as `type: {ty}`: the database/cache/vector store is reachable from outside the cluster, protected only by its password; make it `ClusterIP`"
                )),
            });
        }
    }
}

fn singleton_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"(?i)postgres|mysql|mariadb|mongo|redis|valkey|etcd|zookeeper|nfs|master|primary|leader|locust|scheduler|beat|controller|operator|cockroach|cassandra|elasticsearch|opensearch|minio|qdrant|kafka|rabbitmq")
            .expect("valid regex")
    })
}

pub struct SingleReplica;

impl Check for SingleReplica {
    fn id(&self) -> &'static str {
        "k8s-single-replica"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["replicas"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if !test_setup(ctx.path) {
            self.find_all(root, ctx, out);
        }
    }
}

impl SingleReplica {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let Some(w) = workloads(doc) else { continue };
            if w.kind != "Deployment" {
                continue;
            }
            let Some(r) = doc.entry(w.spec, "replicas") else {
                continue;
            };
            if r.value.templated || doc.str(&r.value) != Some("1") {
                continue;
            }
            let cs = containers(doc, w.pod, "containers");
            let serves = cs
                .iter()
                .any(|c| doc.get(c, "ports").is_some_and(|p| !p.is_empty()));
            // Datastores and singletons (a primary, an NFS server, a load-test driver) run one replica on purpose.
            let singleton = singleton_re().is_match(w.name)
                || cs.iter().any(|c| {
                    let image = scalar(doc, c, &["image"]).unwrap_or("");
                    datastore_re().is_match(image) || singleton_re().is_match(image)
                });
            if !serves || singleton {
                continue;
            }
            out.push(CheckMatch {
                fix: None,
                range: r.key_range.start..r.value.range.end,
                message: Some(format!(
                    "Deployment `{}` runs `replicas: 1`: a crash, node drain or rollout leaves no pod serving; run at least 2 replicas (with a PodDisruptionBudget) for a stateless web service",
                    w.name
                )),
            });
        }
    }
}

pub struct EnvSecret;

impl Check for EnvSecret {
    fn id(&self) -> &'static str {
        "k8s-env-secret"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["env"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let Some(w) = workloads(doc) else { continue };
            for key in ["initContainers", "containers"] {
                for c in containers(doc, w.pod, key) {
                    let Some(env) = doc.get(c, "env") else {
                        continue;
                    };
                    for item in doc.items(env) {
                        let Some(name) = scalar(doc, item, &["name"]) else {
                            continue;
                        };
                        let Some(v) = doc.entry(item, "value") else {
                            continue;
                        };
                        if v.value.templated {
                            continue;
                        }
                        let Some(value) = doc.str(&v.value) else {
                            continue;
                        };
                        if !literal_secret(name, value) {
                            continue;
                        }
                        out.push(CheckMatch {
                            fix: None,
                            range: v.key_range.start..v.value.range.end,
                            message: Some(format!(
                                "container `{}` sets `{name}` to a literal secret in the manifest: it is in the repository and readable by anyone who can read the Deployment; use `valueFrom.secretKeyRef` to a Secret managed outside git (Sealed/External Secrets)",
                                container_name(doc, c)
                            )),
                        });
                    }
                }
            }
        }
    }
}

/// Helm values files: `values.yaml`, `values-prod.yaml`, `values.prod.yaml`.
fn values_file(ctx: &FileContext<'_>) -> bool {
    let name = ctx
        .path
        .rsplit('/')
        .next()
        .unwrap_or(ctx.path)
        .to_ascii_lowercase();
    ctx.kind == FileKind::Helm
        && name.starts_with("values")
        && ![
            "schema", "ci", "dev", "test", "local", "example", "sample", "kind", "minikube",
        ]
        .iter()
        .any(|w| name.contains(w))
}

/// Every mapping of a document, depth first, with the entries that hold it.
fn walk_maps<'a>(node: &'a YNode, out: &mut Vec<&'a YNode>, depth: usize) {
    if depth > 40 {
        return;
    }
    match &node.kind {
        YKind::Map(entries) => {
            out.push(node);
            for e in entries {
                walk_maps(&e.value, out, depth + 1);
            }
        }
        YKind::Seq(items) => {
            for i in items {
                walk_maps(i, out, depth + 1);
            }
        }
        _ => {}
    }
}

pub struct ValuesNoResources;

impl Check for ValuesNoResources {
    fn id(&self) -> &'static str {
        "helm-values-no-resources"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["resources"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if values_file(ctx) {
            self.find_all(root, ctx, out);
        }
    }
}

impl ValuesNoResources {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let mut maps = Vec::new();
            walk_maps(&doc.root, &mut maps, 0);
            for m in maps {
                let YKind::Map(entries) = &m.kind else {
                    continue;
                };
                for e in entries.iter().filter(|e| e.key == "resources") {
                    let v = doc.resolve(&e.value);
                    if v.templated || doc.incomplete(v) {
                        continue;
                    }
                    // `resources: {}` next to a preset (`resourcesPreset: small`) is sized by the chart.
                    let preset = doc
                        .get(m, "resourcesPreset")
                        .and_then(|p| doc.str(p))
                        .is_some_and(|p| !p.is_empty() && p != "none");
                    if preset {
                        continue;
                    }
                    let missing = if v.is_empty() {
                        vec!["requests", "limits"]
                    } else if v.is_map() {
                        let miss = missing_resources(doc, Some(v));
                        // Only a mapping shaped like container resources (requests/limits) is judged.
                        if doc.get(v, "requests").is_none() && doc.get(v, "limits").is_none() {
                            continue;
                        }
                        // volume claims: `requests.storage`
                        if doc.path(v, &["requests", "storage"]).is_some()
                            || doc.path(v, &["limits", "storage"]).is_some()
                        {
                            continue;
                        }
                        if miss.is_empty() {
                            continue;
                        }
                        miss
                    } else {
                        continue;
                    };
                    out.push(CheckMatch {
                        fix: None,
                        range: e.key_range.clone(),
                        message: Some(format!(
                            "`resources:` in the chart values has no {}: the pods are deployed without cpu/memory requests and limits unless every environment overrides it; set defaults here",
                            missing.join(", ")
                        )),
                    });
                }
            }
        }
    }
}

pub struct ValuesImageUnpinned;

impl Check for ValuesImageUnpinned {
    fn id(&self) -> &'static str {
        "helm-values-image-unpinned"
    }
    fn tokens(&self) -> &'static [&'static str] {
        &["tag", "image"]
    }
    fn run(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        if values_file(ctx) {
            self.find_all(root, ctx, out);
        }
    }
}

impl ValuesImageUnpinned {
    /// The matches in the file, before the file-level guard of [`Check::run`].
    fn find_all(&self, root: &PyNode<'_>, ctx: &FileContext<'_>, out: &mut Vec<CheckMatch>) {
        let file = ctx.yaml(root);
        for doc in &file.docs {
            let mut maps = Vec::new();
            walk_maps(&doc.root, &mut maps, 0);
            for m in maps {
                if m.templated {
                    continue;
                }
                let always = doc.get(m, "pullPolicy").and_then(|p| doc.str(p)) == Some("Always");
                // `image: {repository: …, tag: latest}`
                if doc.get(m, "repository").is_some()
                    && let Some(t) = doc.entry(m, "tag")
                    && let Some(tag) = doc.str(&t.value)
                    && moving_tag(tag)
                    && doc
                        .get(m, "digest")
                        .and_then(|d| doc.str(d))
                        .is_none_or(str::is_empty)
                {
                    out.push(CheckMatch {
                        fix: None,
                        range: t.key_range.start..t.value.range.end,
                        message: Some(format!(
                            "`tag: {tag}` in the chart values is a moving tag{}: each deploy may run a different version and `helm rollback` cannot bring the old image back; pin a version (or leave it empty to use the chart's `appVersion`)",
                            if always { " pulled `Always`" } else { "" }
                        )),
                    });
                }
                // `image: repo/app:latest`
                // an untagged `image:` next to `tag:`/`version:` is tagged by it
                let sibling_tag = ["tag", "imageTag", "version", "digest"].iter().any(|k| {
                    doc.get(m, k)
                        .and_then(|t| doc.str(t))
                        .is_some_and(|t| !t.is_empty())
                });
                if let Some(e) = doc.entry(m, "image")
                    && let Some(image) = doc.str(&e.value)
                    && image.contains('/')
                    && !(sibling_tag && image_ref(image).tag.is_none())
                    && let Some(what) = judge_image(image, always)
                {
                    out.push(CheckMatch {
                        fix: None,
                        range: e.key_range.start..e.value.range.end,
                        message: Some(format!(
                            "`image: {image}` in the chart values {what}; pin a version tag or a digest so a rollback restores the old image"
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
    use crate::analysis::language::Lang;
    use crate::analysis::semantic::yaml;
    use ast_grep_core::tree_sitter::LanguageExt;

    fn lines_of(check: &dyn Check, path: &str, text: &str) -> Vec<usize> {
        let doc = Lang::Yaml.ast_grep(text);
        let repo = RepoContext::default();
        let kind =
            crate::analysis::language::detect(path, Some(text)).unwrap_or(FileKind::Kubernetes);
        let ctx = FileContext {
            path,
            kind,
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

    const DEPLOY: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\nspec:\n  type: LoadBalancer\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n        - name: api\n          image: ghcr.io/acme/api:latest\n          ports: [{containerPort: 8000}]\n          env:\n            - name: OPENAI_API_KEY\n              value: sk-proj-Zq81kL0pMx3Tn7Rb2Wy5Hc9aQ\n          resources:\n            requests: {cpu: 100m, memory: 256Mi}\n";

    #[test]
    fn multi_document_manifest_lines() {
        let p = "k8s/api.yaml";
        assert_eq!(lines_of(&ServiceExposed, p, DEPLOY), vec![6]);
        assert_eq!(lines_of(&SingleReplica, p, DEPLOY), vec![13]);
        assert_eq!(lines_of(&ImageUnpinned, p, DEPLOY), vec![18]);
        assert_eq!(lines_of(&EnvSecret, p, DEPLOY), vec![22]);
        assert_eq!(lines_of(&NoResources, p, DEPLOY), vec![23]);
        assert_eq!(lines_of(&NoProbes, p, DEPLOY), vec![17]);
    }

    #[test]
    fn helm_templates_yield_no_false_findings() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ include \"app.fullname\" . }}\nspec:\n  replicas: {{ .Values.replicaCount }}\n  template:\n    spec:\n      containers:\n        - name: {{ .Chart.Name }}\n          image: \"{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}\"\n          ports:\n            - containerPort: 8000\n          {{- with .Values.resources }}\n          resources:\n            {{- toYaml . | nindent 12 }}\n          {{- end }}\n";
        let p = "charts/api/templates/deployment.yaml";
        for c in [
            &NoResources as &dyn Check,
            &NoProbes,
            &ImageUnpinned,
            &SingleReplica,
            &EnvSecret,
        ] {
            assert!(lines_of(c, p, text).is_empty(), "{}", c.id());
        }
    }

    #[test]
    fn values_files() {
        let text = "image:\n  repository: ghcr.io/acme/api\n  tag: latest\n  pullPolicy: Always\nresources: {}\nworker:\n  resources:\n    limits: {memory: 1Gi}\nmetrics:\n  resourcesPreset: small\n  resources: {}\nrbac:\n  rules:\n    - resources: [pods]\n";
        let p = "charts/api/values.yaml";
        assert_eq!(lines_of(&ValuesImageUnpinned, p, text), vec![3]);
        assert_eq!(lines_of(&ValuesNoResources, p, text), vec![5, 7]);
        let limits_only = "resources:\n  limits: {cpu: 500m, memory: 512Mi}\n";
        assert!(
            lines_of(&ValuesNoResources, p, limits_only).is_empty(),
            "requests default to limits"
        );
        assert!(lines_of(&ValuesNoResources, "charts/api/templates/x.yaml", text).is_empty());
    }
}
