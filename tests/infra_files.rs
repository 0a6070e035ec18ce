//! Infrastructure files through the whole engine: parse failures become skipped files with a reason, Helm
//! templates, heredocs, multi-document manifests and Compose `extends`/`profiles` are read without error, and
//! findings point at the offending key's line.

use prodaudit::analysis::{Engine, Overrides, RuleSet};

fn engine() -> Engine {
    match RuleSet::builtin() {
        Ok(r) => Engine::new(r, Overrides::default()),
        Err(e) => panic!("built-in rules do not load: {e}"),
    }
}

fn checks_at(outcome: &prodaudit::analysis::FileOutcome) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = outcome
        .findings
        .iter()
        .map(|f| (f.check.clone(), f.line))
        .collect();
    v.sort();
    v
}

#[test]
fn unparseable_infra_files_are_skipped_with_a_reason() {
    let e = engine();
    let yaml = e.analyze("docker-compose.yml", "]]] not: [yaml\n- x: }\n", None);
    let reason = yaml.skipped.unwrap_or_default();
    assert!(reason.contains("cannot be parsed as YAML"), "{reason}");
    assert!(yaml.findings.is_empty());

    let docker = e.analyze(
        "Dockerfile",
        "<html><body>not a dockerfile</body></html>\n",
        None,
    );
    let reason = docker.skipped.unwrap_or_default();
    assert!(
        reason.contains("cannot be parsed as a Dockerfile"),
        "{reason}"
    );

    // A stream whose first document parses is analysed, not skipped; the broken part yields nothing.
    let partial = e.analyze(
        "k8s/db.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: postgres\nspec:\n  type: NodePort\n---\n]]] {\n",
        None,
    );
    assert!(partial.skipped.is_none(), "{:?}", partial.skipped);
    assert_eq!(
        checks_at(&partial),
        vec![("I4-k8s-datastore-exposed".to_string(), 6)]
    );
}

#[test]
fn helm_templates_are_read_and_judged_only_where_literal() {
    let text = r#"{{- /*
Copyright header
*/}}
{{- if .Values.enabled }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "api.fullname" . }}
  labels: {{- include "api.labels" . | nindent 4 }}
    app.kubernetes.io/component: api
spec:
  replicas: {{ .Values.replicaCount }}
  template:
    spec:
      containers:
        - name: api
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          ports:
            - containerPort: 8000
          {{- with .Values.resources }}
          resources: {{- toYaml . | nindent 12 }}
          {{- end }}
        - name: sidecar
          image: busybox:latest
{{- end }}
"#;
    let out = engine().analyze("charts/api/templates/deployment.yaml", text, None);
    assert!(out.skipped.is_none(), "{:?}", out.skipped);
    assert_eq!(
        checks_at(&out),
        vec![("O5-k8s-image-unpinned".to_string(), 24)],
        "only the literal moving tag; resources/probes come from values"
    );
}

#[test]
fn dockerfile_heredocs_continuations_and_stages() {
    let text = "# syntax=docker/dockerfile:1.7\nARG BASE=python:3.12-slim\nFROM ${BASE} AS build\nRUN <<EOT bash\nset -e\nCMD not an instruction\nUSER root\nEOT\nRUN pip install \\\n    uvicorn \\\n    # comment inside a continuation\n    fastapi\nFROM build AS runtime\nUSER app\nEXPOSE 8000\nCMD uvicorn app.main:app --host 0.0.0.0\n";
    // The health-check detector is opt-in: switched on to see the final stage's `FROM` line it points at.
    let with_healthcheck = match RuleSet::builtin() {
        Ok(r) => Engine::new(
            r,
            Overrides {
                enabled: ["F7-dockerfile-no-healthcheck".to_string()]
                    .into_iter()
                    .collect(),
                ..Overrides::default()
            },
        ),
        Err(e) => panic!("built-in rules do not load: {e}"),
    };
    let out = with_healthcheck.analyze("Dockerfile", text, None);
    assert!(out.skipped.is_none());
    assert_eq!(
        checks_at(&out),
        vec![
            ("F6-dockerfile-shell-form-cmd".to_string(), 16),
            ("F7-dockerfile-no-healthcheck".to_string(), 13),
        ]
    );
    // Off by default.
    assert_eq!(
        checks_at(&engine().analyze("Dockerfile", text, None)),
        vec![("F6-dockerfile-shell-form-cmd".to_string(), 16)]
    );
    let fix = out
        .findings
        .iter()
        .find(|f| f.check == "F6-dockerfile-shell-form-cmd")
        .and_then(|f| f.fix.clone());
    let fix = match fix {
        Some(f) => f,
        None => panic!("the plain command gets the exec-form fix"),
    };
    assert_eq!(
        fix.replacement,
        r#"CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0"]"#
    );
    assert_eq!((fix.line, fix.end_line), (16, 16));
}

#[test]
fn multi_document_manifests_point_at_keys() {
    let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: postgres\nspec:\n  type: LoadBalancer\n  selector: {app: postgres}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n        - name: api\n          image: ghcr.io/acme/api\n          ports: [{containerPort: 8000}]\n          resources:\n            requests: {cpu: 100m, memory: 128Mi}\n          readinessProbe: {httpGet: {path: /readyz, port: 8000}}\n          livenessProbe: {httpGet: {path: /healthz, port: 8000}}\n";
    let out = engine().analyze("k8s/stack.yaml", text, None);
    assert_eq!(
        checks_at(&out),
        vec![
            ("I3-k8s-single-replica".to_string(), 14),
            ("I4-k8s-datastore-exposed".to_string(), 6),
            ("I6-k8s-no-resources".to_string(), 21),
            ("O5-k8s-image-unpinned".to_string(), 19),
        ]
    );
}

#[test]
fn compose_extends_profiles_and_anchors() {
    let text = "x-base: &base\n  restart: unless-stopped\n  healthcheck:\n    test: [\"CMD\", \"true\"]\n  deploy:\n    resources:\n      limits: {memory: 512M}\nservices:\n  db:\n    <<: *base\n    image: postgres:16.4\n    profiles: [\"prod\"]\n  api:\n    extends:\n      file: compose.base.yaml\n      service: api\n    depends_on:\n      db:\n        condition: service_healthy\n  worker:\n    <<: *base\n    image: ghcr.io/acme/worker:1.0.0\n    depends_on: [db]\n";
    let out = engine().analyze("deploy/compose.prod.yaml", text, None);
    assert!(out.skipped.is_none());
    // The worker takes its health check, limits and restart policy from the anchor: a worker that restarts on
    // failure may start before the database is healthy.
    assert_eq!(checks_at(&out), vec![]);
    // Without the restart policy in the anchor, its plain `depends_on` is reported.
    let no_restart = text.replace("  restart: unless-stopped\n", "");
    let out = engine().analyze("deploy/compose.prod.yaml", &no_restart, None);
    assert_eq!(
        checks_at(&out),
        vec![("F7-compose-depends-on-not-healthy".to_string(), 22)]
    );
}

#[test]
fn non_ascii_text_in_templates_and_dockerfiles_does_not_panic() {
    let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: café\n  {{ \"ñandú\" }}: x\n  note: \"{{ \"€€€\" }}\"\nspec:\n  template:\n    spec:\n      containers:\n        - name: {{ \"ü\" }}\n          image: ghcr.io/äcme/app:latest\n";
    let out = engine().analyze("charts/app/templates/deployment.yaml", text, None);
    assert!(out.skipped.is_none(), "{:?}", out.skipped);
    assert_eq!(
        checks_at(&out),
        vec![("O5-k8s-image-unpinned".to_string(), 12)]
    );
    let docker = engine().analyze(
        "Dockerfile",
        "# ü\nARG NAMÉ=1\nARGÄ=1\nFROM python:3.12-slim\nENV GRÜSSE=hallo\nUSER app\nCMD [\"python\"]\n",
        None,
    );
    assert!(docker.skipped.is_none(), "{:?}", docker.skipped);
    assert!(docker.findings.is_empty(), "{:?}", checks_at(&docker));
}

/// `infra.reverse_proxies` of the repository config reaches the Compose and Kubernetes checks through the
/// repository context: a configured proxy may publish ports and be exposed; everything else is judged as before.
#[test]
fn configured_reverse_proxies_may_publish_ports_and_be_exposed() {
    use prodaudit::analysis::RepoContext;
    let e = engine();
    let compose = "\
services:
  myproxy:
    image: registry.local/edge/myproxy:2.1
    ports:
      - \"443:443\"
  api:
    build: .
    ports:
      - \"8000:8000\"
";
    let service = "\
apiVersion: v1
kind: Service
metadata:
  name: myedge
spec:
  type: LoadBalancer
  selector:
    app: myedge
";
    let published = |repo: &RepoContext| -> Vec<(String, usize)> {
        checks_at(&e.analyze_in("deploy/docker-compose.prod.yml", compose, None, repo, None))
            .into_iter()
            .filter(|(c, _)| c == "I4-compose-published-port")
            .collect()
    };
    let exposed = |repo: &RepoContext| -> Vec<(String, usize)> {
        checks_at(&e.analyze_in("k8s/edge-service.yaml", service, None, repo, None))
            .into_iter()
            .filter(|(c, _)| c == "I4-k8s-service-exposed")
            .collect()
    };
    // No service known as the proxy: the stack is reached through the service it builds (`api`, not reported);
    // the unknown image publishing beside it is reported.
    let default = RepoContext::default();
    assert_eq!(
        published(&default),
        vec![("I4-compose-published-port".to_string(), 4)]
    );
    assert_eq!(
        exposed(&default),
        vec![("I4-k8s-service-exposed".to_string(), 6)]
    );
    let configured = RepoContext {
        reverse_proxies: vec!["myproxy".to_string(), "myedge".to_string()],
        ..Default::default()
    };
    assert_eq!(
        published(&configured),
        vec![("I4-compose-published-port".to_string(), 8)],
        "only `api` is left"
    );
    assert_eq!(exposed(&configured), vec![]);
    // A configured proxy depending on its upstream: start order is not judged (it resolves upstreams per request).
    let ordered = "\
services:
  myproxy:
    image: registry.local/edge/myproxy:2.1
    depends_on: [api]
  api:
    image: ghcr.io/acme/api:1.0.0
";
    let start_order = |repo: &RepoContext| -> Vec<(String, usize)> {
        checks_at(&e.analyze_in("deploy/docker-compose.prod.yml", ordered, None, repo, None))
            .into_iter()
            .filter(|(c, _)| c == "F7-compose-dependency-without-healthcheck")
            .collect()
    };
    assert_eq!(
        start_order(&RepoContext::default()),
        vec![("F7-compose-dependency-without-healthcheck".to_string(), 5)]
    );
    assert_eq!(start_order(&configured), vec![]);
}
