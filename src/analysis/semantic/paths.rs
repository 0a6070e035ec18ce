//! Path classes: one place that says, from a repository-relative path (and, where the path cannot tell, the
//! file's text), whether a file is test code, a development/CI variant of an infrastructure file, or code that is
//! not the running service at all (scripts, examples, demos, docs, notebooks, benchmarks).
//!
//! Detectors and the engine read these facts; none keeps a word list of its own.

/// Directory names whose contents are not the running service.
const NOT_SERVICE_DIRS: &[(&str, &str)] = &[
    ("scripts", "a script"),
    ("script", "a script"),
    ("examples", "an example"),
    ("example", "an example"),
    ("samples", "an example"),
    ("sample", "an example"),
    ("demo", "a demo"),
    ("demos", "a demo"),
    ("cookbook", "an example"),
    ("cookbooks", "an example"),
    ("notebooks", "a notebook"),
    ("dev", "a development tool"),
    // Kubernetes-style projects keep their developers' scripts and quick-install manifests in `hack/`.
    ("hack", "a development tool"),
    // kind (Kubernetes in Docker) clusters are for local development and CI.
    ("kind", "a local development cluster"),
    ("docs", "documentation"),
    ("doc", "documentation"),
    ("benchmarks", "a benchmark"),
    ("benchmark", "a benchmark"),
    ("evals", "an evaluation harness"),
    ("eval", "an evaluation harness"),
    ("tests", "test code"),
    ("test", "test code"),
    ("e2e", "test code"),
];

/// Words that, in an infrastructure file's name, mark a development, test, CI or example variant
/// (`docker-compose.dev.yml`, `compose.override.yaml`, `Dockerfile.test`, `k8s-local.yaml`).
const DEV_INFRA_WORDS: &[&str] = &[
    "dev",
    "devel",
    "development",
    "test",
    "tests",
    "testing",
    "local",
    "override",
    "debug",
    "example",
    "examples",
    "sample",
    "samples",
    "e2e",
    "ci",
    "demo",
    // `docker-compose.integration-mysql.yml`: a database for integration tests.
    "integration",
    // `docker-compose.deps-only.yml`: the databases for a server run on the host.
    "deps",
];

/// Globs of the Compose files a deployment may be described by (what [`env_example_deployed`] reads).
pub const COMPOSE_FILE_GLOBS: &[&str] = &[
    "**/docker-compose*.yml",
    "**/docker-compose*.yaml",
    "**/compose.yml",
    "**/compose.yaml",
    "**/compose.*.yml",
    "**/compose.*.yaml",
];

/// A Compose file, by its name (the one definition: [`crate::analysis::language::detect`]).
pub fn is_compose_path(path: &str) -> bool {
    crate::analysis::language::detect(path, None)
        == Some(crate::analysis::language::FileKind::Compose)
}

/// A repository path joined to a relative one (`deploy` + `../backend/Dockerfile` → `backend/Dockerfile`); `None` for
/// URLs, absolute paths, variables and paths above the root.
pub fn join_path(dir: &str, rel: &str) -> Option<String> {
    if rel.contains("://") || rel.starts_with('/') || rel.starts_with("git@") || rel.contains('$') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for p in rel.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// Does a deployment read the environment file this example is copied to? `Some(true)` when a Compose file that
/// is not a development variant sits in the same folder (Compose reads `.env` from there) or names that folder's
/// `.env` (`env_file: ../backend/.env`); `Some(false)` when the tree has such Compose files and none does (the
/// example is for running one service from source); `None` when the tree or its Compose files are unknown.
/// `tree` is the sorted list of the tree's paths, `read` gives a file's text.
pub fn env_example_deployed<'a>(
    path: &str,
    tree: &[String],
    read: impl Fn(&str) -> Option<&'a str>,
) -> Option<bool> {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let composes: Vec<&String> = tree
        .iter()
        .filter(|p| is_compose_path(p) && !is_dev_infra_file(p))
        .collect();
    if composes.is_empty() {
        return None;
    }
    let mut unread = false;
    for c in &composes {
        let cdir = c.rsplit_once('/').map_or("", |(d, _)| d);
        if cdir == dir {
            return Some(true);
        }
        let Some(text) = read(c) else {
            unread = true;
            continue;
        };
        let named = if dir.is_empty() {
            text.contains("../.env")
        } else {
            let last = dir.rsplit('/').next().unwrap_or(dir);
            text.contains(&format!("{last}/.env"))
        };
        if named {
            return Some(true);
        }
    }
    if unread { None } else { Some(false) }
}

/// True for test code: a `tests`/`test` folder, `test_*.py`, `*_test.py`, `conftest.py`.
pub fn is_test_path(path: &str) -> bool {
    let mut parts = path.split('/').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_some() {
            if part == "tests" || part == "test" {
                return true;
            }
        } else {
            return part.starts_with("test_")
                || part.ends_with("_test.py")
                || part == "conftest.py";
        }
    }
    false
}

/// The words of a file name, split at `.`, `-` and `_`, lower-cased.
fn name_words(name: &str) -> impl Iterator<Item = String> + '_ {
    name.split(['.', '-', '_'])
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
}

/// An infrastructure file (Compose, Kubernetes, Dockerfile) meant for development, tests, CI or examples: its
/// file name has one of those words (`docker-compose.dev.yml`, `compose.override.yaml`, `Dockerfile.test`,
/// `docker-compose-local.yml`, `values-ci.yaml`), or it lives in a dev container, test or example folder.
/// Everything else is judged as production.
pub fn is_dev_infra_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    if name_words(name).any(|w| DEV_INFRA_WORDS.contains(&w.as_str())) {
        return true;
    }
    let mut dirs: Vec<&str> = lower.split('/').collect();
    dirs.pop();
    dirs.iter().any(|d| {
        *d == ".devcontainer"
            || NOT_SERVICE_DIRS
                .iter()
                .any(|(n, _)| n == d && *n != "docs" && *n != "doc")
    })
}

/// A name (a Compose profile, `frontend-dev`, `ci`) one of whose words marks a development, test, CI or example
/// variant, as in infrastructure file names.
pub fn names_dev_variant(name: &str) -> bool {
    name_words(&name.to_ascii_lowercase()).any(|w| DEV_INFRA_WORDS.contains(&w.as_str()))
}

/// An infrastructure file whose path says it is for production or deployment (`docker-compose.prod.yml`,
/// `deploy/compose.yaml`, `*release*`, `*staging*`) and whose name does not say it is a development variant.
///
/// The checks that report a high finding about how a Compose file is exposed or sized read this rather than "any
/// file but a development variant": in most repositories the plain `docker-compose.yml` is the developer's stack
/// (a Vite dev server, pgAdmin, a database port for local tools). Measured on the calibration apps, judging every
/// non-development Compose file added 6 high findings, none of them a problem in production (RULES.md).
pub fn is_production_infra_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    !is_dev_infra_file(&lower)
        && ["prod", "deploy", "release", "staging"]
            .iter()
            .any(|w| lower.contains(w))
}

/// Why this file is not part of the running service, when its path or text says so: scripts, examples, demos,
/// notebooks, development tools, documentation, benchmarks, tests, development variants of infrastructure files,
/// and Python front-ends for demos (a module importing Streamlit or Chainlit). `None`: it may be the service.
pub fn not_service_reason(path: &str, text: Option<&str>) -> Option<&'static str> {
    let lower = path.to_ascii_lowercase();
    let mut parts: Vec<&str> = lower.split('/').collect();
    let name = parts.pop().unwrap_or("");
    for dir in &parts {
        if let Some((_, why)) = NOT_SERVICE_DIRS.iter().find(|(n, _)| n == dir) {
            return Some(why);
        }
        // A command-line tool's code (`cli/`, `knowledge/_cli/`): run by a person, never by a request. Only its
        // Python: deployment files a CLI ships are the deployment.
        if matches!(*dir, "cli" | "_cli") && name.ends_with(".py") {
            return Some("a command-line tool");
        }
        // A project's own evaluation or benchmark package (`surfsense_evals/`, `eval_framework/`,
        // `rag-benchmarks/`).
        if [
            "_evals",
            "-evals",
            "_benchmarks",
            "-benchmarks",
            "_benchmark",
            "-benchmark",
        ]
        .iter()
        .any(|s| dir.ends_with(s))
            || ["eval_", "evals_", "benchmark_", "benchmark-"]
                .iter()
                .any(|p| dir.starts_with(p))
        {
            return Some("an evaluation harness");
        }
        // `.vscode/`, `.github/`, `.circleci/`: editor and CI helpers.
        if dir.len() > 1 && dir.starts_with('.') && *dir != ".." {
            return Some("an editor or CI helper");
        }
    }
    if is_test_path(&lower) {
        return Some("test code");
    }
    if name.ends_with(".ipynb") {
        return Some("a notebook");
    }
    if let Some(tool) = match name {
        "setup.py" => Some(&["setuptools", "distutils"][..]),
        "noxfile.py" => Some(&["nox"][..]),
        "tasks.py" => Some(&["invoke"][..]),
        "fabfile.py" => Some(&["fabric"][..]),
        _ => None,
    } {
        // At the repository's root, or importing its build tool; a package's own `setup.py` / Celery `tasks.py`
        // is a module of the service.
        let builds = parts.is_empty()
            || text.is_some_and(|t| {
                t.lines().any(|l| {
                    let l = l.trim_start();
                    tool.iter().any(|m| {
                        [format!("import {m}"), format!("from {m}")]
                            .iter()
                            .any(|p| l.starts_with(p.as_str()))
                    })
                })
            });
        if builds {
            return Some("a build or task script");
        }
    }
    let infra = name.starts_with("dockerfile")
        || name.ends_with(".dockerfile")
        || ((name.ends_with(".yml") || name.ends_with(".yaml"))
            && (name.contains("compose") || parts.iter().any(|d| is_k8s_dir(d))));
    if infra && is_dev_infra_file(&lower) {
        return Some("a development variant of an infrastructure file");
    }
    if infra
        && name.contains("compose")
        && let Some(text) = text
        && compose_is_dev_stack(text)
    {
        return Some(
            "a development Compose stack (a reloading server, or the source mounted over the image)",
        );
    }
    if name.starts_with("dockerfile")
        && let Some(text) = text
        && dockerfile_runs_dev_server(text)
    {
        return Some("a development image (its command starts a reloading or development server)");
    }
    if name.ends_with(".py") && is_test_double(name, &parts) {
        return Some("a test double (mock or fake)");
    }
    if name.ends_with(".py")
        && let Some(text) = text
        && imports_demo_ui(text)
    {
        return Some("a demo front-end (Streamlit/Chainlit)");
    }
    None
}

/// Words that, in a Python module's name or a folder's, mark a test double (`mock_agent_service.py`,
/// `fake_llm.py`, `mocks/`).
const TEST_DOUBLE_WORDS: &[&str] = &["mock", "mocks", "fake", "fakes"];

/// A Python module named as a mock or a fake, or living in a `mocks`/`fakes` folder: a stand-in for the real
/// thing, switched on in tests or demos.
fn is_test_double(name: &str, dirs: &[&str]) -> bool {
    let stem = name.strip_suffix(".py").unwrap_or(name);
    name_words(stem).any(|w| TEST_DOUBLE_WORDS.contains(&w.as_str()))
        || dirs.iter().any(|d| TEST_DOUBLE_WORDS.contains(d))
}

/// Most lines a Compose file is read for the development-stack markers.
const MAX_COMPOSE_LINES: usize = 20_000;

/// A Compose file that is the developer's stack whatever its name says: a service runs a reloading or
/// development server (`--reload`, `npm run dev`, `NODE_ENV=development`), or bind-mounts its own build context
/// over the image (`build: ./backend` with `- ./backend:/app`), so the container runs the working tree.
/// Development-server commands (`uvicorn … --reload`, `npm run dev`), in a Compose `command:` or a Dockerfile's
/// `CMD`/`ENTRYPOINT` (exec form read as words).
const DEV_SERVER_COMMANDS: &[&str] = &[
    "--reload",
    "npm run dev",
    "yarn dev",
    "yarn run dev",
    "pnpm dev",
    "pnpm run dev",
    "next dev",
];

/// Does the Dockerfile's `CMD` or `ENTRYPOINT` start a JavaScript development server (`npm run dev`)?
fn dockerfile_runs_dev_server(text: &str) -> bool {
    text.lines().take(MAX_COMPOSE_LINES).any(|l| {
        let t = l.trim_start();
        let upper = t.get(..11).unwrap_or(t).to_ascii_uppercase();
        if !(upper.starts_with("CMD") || upper.starts_with("ENTRYPOINT")) {
            return false;
        }
        let words: String = t
            .chars()
            .map(|c| if "[],\"'".contains(c) { ' ' } else { c })
            .collect();
        let words = words.split_whitespace().collect::<Vec<_>>().join(" ");
        // A Python server with `--reload` is sometimes the image a project publishes (mem0's API server): only
        // the JavaScript development servers mark a development image.
        DEV_SERVER_COMMANDS
            .iter()
            .filter(|m| **m != "--reload")
            .any(|m| words.contains(m))
    })
}

/// `ENV=local`, `ENVIRONMENT: development`, `APP_ENV: "dev"`: a service told it runs in development.
fn sets_dev_environment(line: &str) -> bool {
    let t = line.trim_start_matches("- ").trim();
    let Some((key, value)) = t.split_once(['=', ':']) else {
        return false;
    };
    let key = key.trim().trim_matches(['"', '\'']).to_ascii_uppercase();
    let value = value.trim().trim_matches(['"', '\'']).to_ascii_lowercase();
    matches!(
        key.as_str(),
        "ENV" | "ENVIRONMENT" | "APP_ENV" | "APP_ENVIRONMENT" | "STAGE"
    ) && matches!(value.as_str(), "local" | "dev" | "development")
}

pub fn compose_is_dev_stack(text: &str) -> bool {
    const DEV_NODE_ENV: &[&str] = &[
        "NODE_ENV=development",
        "NODE_ENV: development",
        "NODE_ENV: \"development\"",
        "NODE_ENV: 'development'",
    ];
    let norm = |p: &str| -> String {
        let p = p.trim().trim_matches(['"', '\'']);
        let p = p.strip_prefix("./").unwrap_or(p);
        let p = p.trim_end_matches('/');
        if p.is_empty() {
            ".".to_string()
        } else {
            p.to_string()
        }
    };
    let mut contexts = Vec::new();
    let mut mounts = Vec::new();
    for line in text.lines().take(MAX_COMPOSE_LINES) {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        if DEV_SERVER_COMMANDS
            .iter()
            .chain(DEV_NODE_ENV)
            .any(|m| t.contains(m))
            || sets_dev_environment(t)
        {
            return true;
        }
        // Local emulators of cloud services (`localstack/localstack`, `tinybirdco/tinybird-local`).
        if let Some(image) = t.strip_prefix("image:") {
            let image = image.trim().trim_matches(['"', '\'']);
            let name = image.split(':').next().unwrap_or(image);
            if name.contains("localstack") || name.ends_with("-local") {
                return true;
            }
        }
        let value = t
            .strip_prefix("context:")
            .or_else(|| t.strip_prefix("build:"))
            .map(str::trim)
            .filter(|v| !v.is_empty() && !v.starts_with(['{', '#']));
        if let Some(v) = value {
            contexts.push(norm(v));
        }
        // `- ./backend:/app`, `- .:/app:cached` (a relative source: a bind mount, not a named volume).
        if let Some(item) = t.strip_prefix("- ") {
            let item = item.trim().trim_matches(['"', '\'']);
            if item.starts_with('.')
                && let Some((source, _)) = item.split_once(':')
            {
                mounts.push(norm(source));
            }
        }
    }
    mounts.iter().any(|m| contexts.contains(m))
}

fn is_k8s_dir(d: &str) -> bool {
    matches!(
        d,
        "k8s" | "kubernetes" | "helm" | "charts" | "chart" | "manifests" | "deploy" | "deployment"
    )
}

/// A Python module that imports Streamlit or Chainlit at its top level: a demo or internal UI, not the API.
fn imports_demo_ui(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_end();
        ["streamlit", "chainlit"].iter().any(|m| {
            l.strip_prefix("import ")
                .or_else(|| l.strip_prefix("from "))
                .is_some_and(|rest| {
                    rest.strip_prefix(m)
                        .is_some_and(|after| after.is_empty() || after.starts_with([' ', '.', ',']))
                })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_env_examples_a_deployment_reads() {
        let tree: Vec<String> = [
            "backend/.env.example",
            "docker/.env.example",
            "docker/docker-compose.yml",
            "docker/docker-compose.dev.yml",
            "plugin/.env.example",
            "worker/.env.example",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let compose = "services:\n  worker:\n    env_file: ../worker/.env\n";
        let read = |p: &str| (p == "docker/docker-compose.yml").then_some(compose);
        // Beside the production Compose file, or named by it.
        assert_eq!(
            env_example_deployed("docker/.env.example", &tree, read),
            Some(true)
        );
        assert_eq!(
            env_example_deployed("worker/.env.example", &tree, read),
            Some(true)
        );
        // For running one service from source.
        assert_eq!(
            env_example_deployed("backend/.env.example", &tree, read),
            Some(false)
        );
        assert_eq!(
            env_example_deployed("plugin/.env.example", &tree, read),
            Some(false)
        );
        // A Compose file that could not be read, or none at all (only a development stack): not known.
        assert_eq!(
            env_example_deployed("backend/.env.example", &tree, |_| None),
            None
        );
        let dev_only: Vec<String> = vec!["docker-compose.dev.yml".into(), ".env.example".into()];
        assert_eq!(env_example_deployed(".env.example", &dev_only, read), None);
    }

    #[test]
    fn test_paths() {
        assert!(is_test_path("tests/test_api.py"));
        assert!(is_test_path("app/tests/helpers.py"));
        assert!(is_test_path("test_x.py"));
        assert!(is_test_path("pkg/x_test.py"));
        assert!(is_test_path("conftest.py"));
        assert!(!is_test_path("app/testing_utils.py"));
        assert!(!is_test_path("app/main.py"));
        assert!(!is_test_path("tests"));
    }

    #[test]
    fn a_projects_own_evaluation_packages_are_not_the_service() {
        for p in [
            "surfsense_evals/src/surfsense_evals/suites/runner.py",
            "cognee/eval_framework/runner.py",
            "tools/rag-benchmarks/run.py",
            "packages/tracecat-benchmark/tracecat_benchmark/kubernetes.py",
        ] {
            assert_eq!(
                not_service_reason(p, None),
                Some("an evaluation harness"),
                "{p}"
            );
        }
        for p in [
            "app/services/evaluations/run.py",
            "app/evaluators/judge.py",
            "app/medieval/x.py",
        ] {
            assert_eq!(not_service_reason(p, None), None, "{p}");
        }
    }

    #[test]
    fn compose_dev_stacks_by_content() {
        let reload =
            "services:\n  api:\n    command: uvicorn app.main:app --host 0.0.0.0 --reload\n";
        let mounted = "services:\n  api:\n    build:\n      context: ./backend\n    volumes:\n      - ./backend/:/app\n      - ./data:/var/lib/data\n";
        let dot = "services:\n  api:\n    build: .\n    volumes:\n      - .:/app:cached\n";
        let local_env =
            "services:\n  api:\n    image: acme/api:1.2\n    environment:\n      - ENV=local\n";
        let env_map = "services:\n  api:\n    image: acme/api:1.2\n    environment:\n      ENVIRONMENT: \"development\"\n";
        let emulator = "services:\n  s3:\n    image: localstack/localstack:4.4.0\n  tb:\n    image: tinybirdco/tinybird-local:latest\n";
        for dev in [reload, mounted, dot, local_env, env_map, emulator] {
            assert!(compose_is_dev_stack(dev), "{dev}");
            assert_eq!(
                not_service_reason("docker-compose.yml", Some(dev)),
                Some(
                    "a development Compose stack (a reloading server, or the source mounted over the image)"
                )
            );
        }
        // Data and config mounts, a named volume, a commented-out reload: a deployable stack.
        let prod = "services:\n  api:\n    build:\n      context: ./backend\n    # command: uvicorn app:app --reload\n    environment:\n      ENVIRONMENT: production\n      LOCAL_CACHE: dev\n    volumes:\n      - ./backend/.env:/app/.env\n      - ./data:/var/lib/data\n      - pgdata:/var/lib/postgresql/data\n";
        assert!(!compose_is_dev_stack(prod));
        assert_eq!(not_service_reason("docker-compose.yml", Some(prod)), None);
        // Only Compose files are read this way.
        assert_eq!(not_service_reason("app/main.py", Some(reload)), None);
        // A Dockerfile whose command starts a JavaScript development server is a development image; a Python
        // server with `--reload` may be the image a project publishes.
        let next_dev = "FROM node:20\nCOPY . .\nCMD [\"npm\", \"run\", \"dev\"]\n";
        assert!(not_service_reason("gui/Dockerfile", Some(next_dev)).is_some());
        let reload_image = "FROM python:3.12\nCMD [\"uvicorn\", \"main:app\", \"--reload\"]\n";
        assert_eq!(
            not_service_reason("server/Dockerfile", Some(reload_image)),
            None
        );
        let prod = "FROM node:20\nRUN npm run build\nCMD [\"npm\", \"start\"]\n";
        assert_eq!(not_service_reason("web/Dockerfile", Some(prod)), None);
    }

    #[test]
    fn test_doubles_are_not_the_service() {
        for double in [
            "platform/api/agent_service/mock_agent_service.py",
            "app/llm/fake_llm.py",
            "app/mocks/openai.py",
            "app/services/openai_mock.py",
        ] {
            assert_eq!(
                not_service_reason(double, None),
                Some("a test double (mock or fake)"),
                "{double}"
            );
        }
        for real in [
            "app/services/mockingbird.py",
            "app/fakeroot/x.md",
            "app/models/fake_news.md",
        ] {
            assert_eq!(not_service_reason(real, None), None, "{real}");
        }
    }

    #[test]
    fn dev_infra_files() {
        for dev in [
            "docker-compose.dev.yml",
            "docker-compose.override.yml",
            "compose.test.yaml",
            "docker-compose-local.yml",
            "docker-compose.ci.yml",
            "deploy/values-ci.yaml",
            "Dockerfile.dev",
            "Dockerfile.test",
            ".devcontainer/docker-compose.yml",
            "examples/docker-compose.yml",
            "tests/e2e/compose.yaml",
            "docker-compose.development.yml",
            "docker/docker-compose.integration-mssql.yml",
        ] {
            assert!(is_dev_infra_file(dev), "{dev}");
        }
        for prod in [
            "docker-compose.yml",
            "compose.yaml",
            "docker-compose.prod.yml",
            "deploy/compose.yaml",
            "docker/docker-compose.yml",
            "Dockerfile",
            "k8s/deployment.yaml",
            // Words inside other words are not dev markers.
            "docker-compose.devices.yml",
            "docker-compose.citadel.yml",
            "docker-compose.integrations.yml",
        ] {
            assert!(!is_dev_infra_file(prod), "{prod}");
        }
    }

    #[test]
    fn production_infra_files() {
        assert!(is_production_infra_file("docker-compose.prod.yml"));
        assert!(is_production_infra_file("deploy/compose.yaml"));
        assert!(is_production_infra_file("docker-compose-production.yml"));
        assert!(!is_production_infra_file(
            "deployment/docker_compose/docker-compose.multitenant-dev.yml"
        ));
        assert!(!is_production_infra_file(
            "deployment/docker_compose/docker-compose.search-testing.yml"
        ));
        assert!(!is_production_infra_file("docker/docker-compose.yml"));
        assert!(!is_production_infra_file("docker-compose.yml"));
        assert!(!is_production_infra_file("compose.override.yml"));
    }

    #[test]
    fn not_service() {
        for (path, text) in [
            ("scripts/seed.py", None),
            ("backend/scripts/migrate_data.py", None),
            ("examples/chat/app.py", None),
            ("demo/main.py", None),
            ("dev/generate_client.py", None),
            ("hack/local/mlrun-local.yaml", None),
            ("kind/manifests/nginx.yaml", None),
            ("docs/snippets/app.py", None),
            ("tests/e2e/test_flow.py", None),
            ("backend/tests/conftest.py", None),
            ("notebooks/explore.py", None),
            ("backend/evals/eval_cli.py", None),
            ("pkg/eval/run_eval.py", None),
            (".vscode/run_worker_reload.py", None),
            (".github/scripts/release_notes.py", None),
            ("setup.py", None),
            (
                "sdk/setup.py",
                Some("from setuptools import setup\nsetup(name='x')\n"),
            ),
            ("docker-compose.dev.yml", None),
            ("Dockerfile.test", None),
            ("keep/cli/cli.py", None),
            ("app/knowledge/_cli/knowledge_client.py", None),
            ("ui/app.py", Some("import streamlit as st\n")),
            (
                "frontend/chat.py",
                Some("from chainlit.types import X\nimport os\n"),
            ),
        ] {
            assert!(not_service_reason(path, text).is_some(), "{path}");
        }
        for (path, text) in [
            (
                "backend/onyx/setup.py",
                Some("from onyx.db import x\ndef setup_onyx():\n    pass\n"),
            ),
            ("backend/onyx/setup.py", None),
            (
                "app/worker/tasks.py",
                Some("from app.celery import celery_app\n"),
            ),
            ("app/main.py", Some("from fastapi import FastAPI\n")),
            ("app/tools/search.py", None),
            ("backend/app/api/routes/items.py", None),
            ("app/devices.py", None),
            ("app/streamlit_helpers.py", Some("import streamlitish\n")),
            ("docker-compose.yml", None),
            ("Dockerfile", None),
            ("k8s/deployment.yaml", None),
            ("app/scripts.py", None),
            ("app/evaluator.py", None),
            ("app/cli.py", None),
            ("cli/deploy/docker-compose.prod.yml", None),
            ("app/services/eval_service.py", None),
        ] {
            assert!(not_service_reason(path, text).is_none(), "{path}");
        }
    }
}
