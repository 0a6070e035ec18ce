//! The `prodaudit` command line: `audit` and `rules`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use prodaudit::analysis::examples;
use prodaudit::analysis::rules::rule_order;
use prodaudit::analysis::{Engine, RuleSet};
use prodaudit::audit::{self, AuditRequest};
use prodaudit::report::output::{self, Format, RenderOptions};
use prodaudit::report::{FailOn, Severity};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "prodaudit",
    version,
    about = "Reviews changes to async Python services against the production-standards rubric"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Audit a change (the lines added between merge-base(base, head) and head) or, with --all-lines, whole files.
    Audit(AuditArgs),
    /// List, explain and test the rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Review the pull request of a GitHub Actions run (pull_request, or an issue_comment `/audit`): check run,
    /// review, annotations, job summary (see action.yml).
    Action(prodaudit::action::ActionArgs),
    /// Run the GitHub App: webhooks in, check runs and reviews out (settings from the environment or .env).
    Serve {
        /// Additional rule folders, as for `audit --rules`.
        #[arg(long = "rules")]
        rules: Vec<PathBuf>,
    },
    /// Register the GitHub App in one step (GitHub's App manifest flow): serves a page on localhost, and writes
    /// .env (APP_ID, PRIVATE_KEY_PATH, WEBHOOK_SECRET) when GitHub sends the browser back.
    Setup(SetupArgs),
    /// Internal: the analysis child of `serve` (request on stdin, findings as JSON on stdout).
    #[command(name = "__analyze", hide = true)]
    Analyze {
        #[arg(long = "memory-limit-mib")]
        memory_limit_mib: u64,
        #[arg(long = "rules")]
        rules: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct AuditArgs {
    /// A directory inside the repository to audit.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The revision the change is compared against (default: the repository's default branch).
    #[arg(long)]
    base: Option<String>,
    /// The revision under review (default: HEAD; with --all-lines, the working tree).
    #[arg(long)]
    head: Option<String>,
    /// Report on every line of the files, not only the changed ones.
    #[arg(long)]
    all_lines: bool,
    /// Audit the staged changes against HEAD (what `git commit` would record), as a pre-commit hook does.
    #[arg(long, conflicts_with_all = ["all_lines", "base", "head"])]
    staged: bool,
    /// Output format: text, json, sarif or github.
    #[arg(long, default_value = "text")]
    format: String,
    /// Exit 1 when a finding is at or above this severity: critical, high, medium, low or never.
    #[arg(long)]
    fail_on: Option<String>,
    /// Repository configuration file (default: .github/prodaudit.yml of the base revision).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A folder of additional rule files (may be repeated).
    #[arg(long = "rules")]
    rules: Vec<PathBuf>,
    /// Never draw a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// After the report, print to stderr where analysis time went: prefilter, parsing and the slowest detectors
    /// (analyses every file: the result cache is not used).
    #[arg(long)]
    timings: bool,
    /// Analyse every file again instead of reusing results kept in .prodaudit_cache/ (also PRODAUDIT_NO_CACHE=1).
    #[arg(long, env = "PRODAUDIT_NO_CACHE", value_parser = clap::builder::BoolishValueParser::new())]
    no_cache: bool,
    /// Limit the audit to these files or folders.
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct SetupArgs {
    /// Where GitHub delivers webhooks: the public URL of `prodaudit serve` and its webhook path, e.g.
    /// https://prodaudit.example.com/api/github/webhooks.
    #[arg(long)]
    webhook_url: String,
    /// The local port of the setup page (on 127.0.0.1; 0: any free port).
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Register the App for this organisation (default: for your user account).
    #[arg(long)]
    org: Option<String>,
    /// The App's name (default: app.yml's; names are unique on GitHub, and GitHub's page lets you change it).
    #[arg(long)]
    name: Option<String>,
    /// The settings file to write (the private key is saved beside it).
    #[arg(long, default_value = ".env")]
    env_file: PathBuf,
    /// Replace an existing settings file.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum RulesCommand {
    /// One line per rule and its detectors.
    List {
        #[arg(long = "rules")]
        rules: Vec<PathBuf>,
    },
    /// The standard, why it matters, the conforming pattern and the detectors of one rule.
    Explain {
        /// A rubric id such as C5, or a detector id.
        id: String,
        #[arg(long = "rules")]
        rules: Vec<PathBuf>,
    },
    /// Run every detector's invalid/valid examples (the built-in rules plus DIR's).
    Test {
        /// A folder of rule files to test beside the built-in ones.
        dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve { rules } = cli.command {
        return run_serve(&rules);
    }
    if let Command::Analyze {
        memory_limit_mib,
        rules,
    } = &cli.command
    {
        return match prodaudit::sandbox::child_main(*memory_limit_mib, rules) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let result = match cli.command {
        Command::Audit(args) => run_audit(args),
        Command::Rules { command } => run_rules(command),
        Command::Action(args) => run_action(&args),
        Command::Setup(args) => run_setup(args),
        Command::Serve { .. } | Command::Analyze { .. } => Ok(ExitCode::from(2)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let mut msg = format!("error: {e}");
            // Our error types already quote their cause; add only what the message does not say yet.
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !msg.contains(&cause) {
                    msg.push_str(&format!(": {cause}"));
                }
            }
            let msg = msg.lines().next().unwrap_or_default().to_string();
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}

fn run_serve(rules_dirs: &[PathBuf]) -> ExitCode {
    let settings = match prodaudit::config::Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    prodaudit::serve::init_logging(&settings);
    let rules = match load_rules(rules_dirs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Each audit's analysis runs in a child process of this binary (see `prodaudit::sandbox`).
    let runner =
        match prodaudit::sandbox::ChildRunner::for_serve(rules_dirs, |k| std::env::var(k).ok()) {
            Ok(r) => prodaudit::sandbox::AnalysisRunner::Child(r),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(prodaudit::serve::serve(settings, rules, runner)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "fatal");
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run_action(args: &prodaudit::action::ActionArgs) -> anyhow::Result<ExitCode> {
    let env = prodaudit::action::ActionEnv::from_vars(|k| std::env::var(k).ok())?;
    let rules = load_rules(&args.rules)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let mut out = std::io::stdout().lock();
    let code = runtime.block_on(prodaudit::action::run(&env, args, rules, &mut out))?;
    Ok(ExitCode::from(code))
}

fn load_rules(dirs: &[PathBuf]) -> anyhow::Result<RuleSet> {
    Ok(RuleSet::load(dirs, true)?)
}

fn run_audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let format: Format = args
        .format
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let fail_on_flag: Option<FailOn> = args
        .fail_on
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let rules = load_rules(&args.rules)?;
    let mut known: Vec<String> = rules.rules.iter().map(|r| r.id.clone()).collect();
    known.extend(rules.detectors.iter().map(|d| d.id.clone()));
    let req = AuditRequest {
        repo: args.repo.clone(),
        base: args.base.clone(),
        head: args.head.clone(),
        all_lines: args.all_lines,
        staged: args.staged,
        paths: args.paths.clone(),
        progress: !args.no_progress && std::io::stderr().is_terminal(),
    };
    let config = audit::load_config(&req, args.config.as_deref(), &known)?;
    let fail_on = fail_on_flag
        .or(config.fail_on)
        .unwrap_or(FailOn::At(Severity::High));
    let meta = rules.metadata();
    let mut engine = Engine::new(rules, config.overrides.clone());
    if args.timings {
        engine = engine.with_timings();
    }
    let cache = (!args.no_cache && !args.timings).then(|| audit::CacheOptions {
        rule_dirs: args.rules.clone(),
    });
    let (report, cache_stats) = audit::run_cached(&engine, &config, &req, cache.as_ref())?;
    if let Some(s) = cache_stats {
        tracing::info!(
            from_cache = s.hits,
            analysed = s.analysed,
            written = s.written,
            evicted = s.evicted,
            "{} files from cache, {} analysed",
            s.hits,
            s.analysed
        );
    }
    if let Some(t) = &engine.timings {
        let names: Vec<&str> = engine
            .rules
            .detectors
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        eprint!("{}", t.render(&names, 25));
    }
    let opts = RenderOptions {
        color: format == Format::Text
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none(),
        fail_on,
        tool_version: env!("CARGO_PKG_VERSION"),
    };
    let text = output::render(&report, &meta, format, &opts);
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("cannot write the report")?;
    out.flush().ok();
    let failed = report.findings.iter().any(|f| fail_on.fails(f.severity));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_setup(args: SetupArgs) -> anyhow::Result<ExitCode> {
    use prodaudit::setup::{self, SetupOptions};
    let (github_url, api_url) = SetupOptions::github_urls(|k| std::env::var(k).ok())?;
    let opts = SetupOptions {
        port: args.port,
        webhook_url: args.webhook_url,
        org: args.org,
        name: args.name,
        env_file: args.env_file,
        force: args.force,
        github_url,
        api_url,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // Written without panicking when stdout has gone away: the files are written by then, whoever reads.
    let say = |text: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    };
    let result = runtime.block_on(setup::run(opts, |url| {
        say(format!(
            "Open {url} in a browser to register the GitHub App (Ctrl-C to stop)."
        ));
    }))?;
    say(format!(
        "The App (id {}) is registered: settings in {}, private key in {} (mode 0600).",
        result.app_id,
        result.env_file.display(),
        result.key_file.display()
    ));
    say(format!(
        "Install it on your repositories: {}",
        result.install_url
    ));
    say("Then run: prodaudit serve".to_string());
    Ok(ExitCode::SUCCESS)
}

fn run_rules(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    match cmd {
        RulesCommand::List { rules } => {
            let set = load_rules(&rules)?;
            let mut meta = set.metadata();
            meta.sort_by_key(|m| rule_order(&m.id));
            for m in &meta {
                out.push_str(&format!(
                    "{:<4} {:<8} {}\n",
                    m.id,
                    m.severity.as_str(),
                    m.title
                ));
                for c in &m.checks {
                    let opt_in = set.detectors.iter().any(|d| d.id == c.id && d.opt_in);
                    out.push_str(&format!(
                        "       {:<8} {}{}\n",
                        c.severity.as_str(),
                        c.id,
                        if opt_in {
                            "  (opt-in: rules.enable)"
                        } else {
                            ""
                        }
                    ));
                }
            }
            out.push_str(&format!(
                "{} rules, {} detectors. `prodaudit rules explain ID` for one rule.\n",
                meta.len(),
                set.detectors.len()
            ));
        }
        RulesCommand::Explain { id, rules } => {
            let set = load_rules(&rules)?;
            let rule = set
                .find_rule(&id)
                .or_else(|| {
                    set.detectors
                        .iter()
                        .find(|d| d.id.eq_ignore_ascii_case(&id))
                        .map(|d| set.rule_of(d))
                })
                .ok_or_else(|| {
                    anyhow::anyhow!("no rule or detector `{id}` (see `prodaudit rules list`)")
                })?;
            out.push_str(&format!(
                "{} · {} ({})\n\n",
                rule.id, rule.title, rule.severity
            ));
            out.push_str(&format!(
                "Standard:\n  {}\n\n",
                rule.standard.replace('\n', "\n  ")
            ));
            out.push_str(&format!(
                "Why it matters:\n  {}\n\n",
                rule.why.replace('\n', "\n  ")
            ));
            out.push_str(&format!(
                "Conforming pattern:\n  {}\n\n",
                rule.conforming.replace('\n', "\n  ")
            ));
            out.push_str("Detectors:\n");
            for &i in &rule.detectors {
                let d = &set.detectors[i];
                let opt_in = if d.opt_in {
                    ", opt-in: `rules: {enable: [ID]}` in the repository config"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "  {} ({}{opt_in})\n    {}\n",
                    d.id, d.severity, d.message
                ));
                if let Some(note) = &d.note {
                    out.push_str(&format!("    {}\n", note.trim().replace('\n', "\n    ")));
                }
                if let Some(own) = &d.conforming {
                    out.push_str(&format!(
                        "    Conforming pattern of this detector:\n      {}\n",
                        own.replace('\n', "\n      ")
                    ));
                }
            }
            out.push_str(&format!("\nDefined in {}\n", rule.source));
        }
        RulesCommand::Test { dir } => {
            let dirs: Vec<PathBuf> = dir.into_iter().collect();
            let set = load_rules(&dirs)?;
            let results = examples::run_all(set);
            let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
            for r in &failed {
                out.push_str(&format!(
                    "FAIL {} {} {} example #{}: {}\n",
                    r.rule,
                    r.detector,
                    r.kind,
                    r.index,
                    r.problem.as_deref().unwrap_or("")
                ));
            }
            out.push_str(&format!(
                "rule examples: {} passed, {} failed\n",
                results.len() - failed.len(),
                failed.len()
            ));
            print!("{out}");
            return Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}
