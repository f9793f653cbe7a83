//! `ghostworks`: every role of the platform behind one binary. This file only dispatches:
//! it parses the command line, loads the command's configuration, sets up its telemetry and
//! calls the role; the operator's commands are `ghostworks_ops::cli`.

mod dev;
mod probe;
mod roles;
mod score;
mod seed;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ghostworks_config::{Config, ConfigErrors, WebConfig, WorkerConfig};
use ghostworks_ops::cli::AdminUrl;

#[derive(Parser)]
#[command(name = "ghostworks", version, about = "Ghostworks: a multi-tenant artifact catalog", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (configuration from the environment; see .env.example).
    Serve,
    /// Serve the web application: server-rendered pages over the API at API_URL, on WEB_BIND
    /// (default 0.0.0.0:3000; see docs/web.md).
    Web,
    /// Run background jobs (e-mail, scheduled maintenance) until SIGTERM, which finishes the
    /// jobs in flight; /metrics and /health on WORKER_BIND. Logs in with its own DATABASE_URL
    /// (a member of ghostworks_worker) and needs SMTP_URL; see docs/worker.md.
    Worker,
    /// Inspect and repair the job queue (with the worker's DATABASE_URL).
    Jobs {
        #[command(subcommand)]
        command: roles::JobsCommand,
    },
    #[command(flatten)]
    Ops(Box<ghostworks_ops::cli::Command>),
    /// Load data into the database (as the schema owner).
    Seed {
        /// The demo workspaces (Acme, Umbrella), their accounts (password demo123) and
        /// artifacts. Idempotent. Refused in production.
        #[arg(long, required = true)]
        demo: bool,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Exit 0 when the local server's /health answers 200 (for container health checks).
    Healthcheck {
        /// The URL to probe; default: /health on the port of GHOSTWORKS_BIND (8000). For the
        /// worker: --url http://127.0.0.1:8001/health.
        #[arg(long)]
        url: Option<String>,
    },
    /// Run everything locally: private PostgreSQL and Redis (when DATABASE_URL / REDIS_URL
    /// are unset), an SMTP sink (when SMTP_URL is unset), migrations, demo data, the API, a
    /// worker and the web app (WEB_BIND, default 127.0.0.1:3000). Ctrl-C stops it all; data
    /// persists.
    Dev {
        /// Where the private servers keep their data.
        #[arg(long, default_value = ".data")]
        data_dir: PathBuf,
    },
    /// Write the CI score report (kiro_score.json) from the CI outputs in a directory.
    ///
    /// Reads test-output.log (cargo test / tarpaulin output), cobertura.xml and
    /// coverage-frontend.xml (Cobertura), load.json (load benchmark), playwright.json
    /// (Playwright JSON reporter), deny.json (`cargo deny --format json check`),
    /// schemathesis.xml (JUnit) and build.json. Every file is optional, but a component
    /// without its file scores 0 and is reported as not measured. Prints a summary; exit
    /// status 1 when the grade blocks deployment, 2 when it needs an override, else 0.
    Score {
        /// The directory holding the CI outputs.
        #[arg(long, default_value = "target/ci")]
        dir: PathBuf,
        /// Where to write the report.
        #[arg(long, default_value = "kiro_score.json")]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted; exits 1 with one line
    /// per problem.
    Check {
        /// Check this env file (KEY=VALUE lines) instead of the process environment.
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Check the worker's configuration (`ghostworks worker`) instead of the API's.
        #[arg(long, conflicts_with = "web")]
        worker: bool,
        /// Check the web app's configuration (`ghostworks web`) instead of the API's.
        #[arg(long)]
        web: bool,
    },
}

/// The configuration of a role, or every problem with it.
fn load<T>(config: Result<T, ConfigErrors>) -> anyhow::Result<T> {
    config.context("invalid configuration")
}

fn admin_url() -> anyhow::Result<String> {
    load(Config::admin_database_url(&std::env::vars().collect())).map(|s| s.expose().to_string())
}

/// The schema owner's URL when one is configured: a compose deploy needs it only to back up.
fn optional_admin_url() -> anyhow::Result<Option<String>> {
    let set = [
        "DATABASE_ADMIN_URL",
        "DATABASE_ADMIN_URL_FILE",
        "DATABASE_URL",
        "DATABASE_URL_FILE",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    set.then(admin_url).transpose()
}

/// `config check`: the configuration with secrets redacted, or one line per problem.
fn config_check(env_file: Option<PathBuf>, worker: bool, web: bool) -> ExitCode {
    let f = env_file.as_deref();
    let result = match (worker, web) {
        (true, _) => f
            .map_or_else(WorkerConfig::from_env, WorkerConfig::from_env_file)
            .map(|c| c.redacted()),
        (_, true) => f
            .map_or_else(WebConfig::from_env, WebConfig::from_env_file)
            .map(|c| c.redacted()),
        _ => f
            .map_or_else(Config::from_env, Config::from_env_file)
            .map(|c| c.redacted()),
    };
    match result {
        Ok(lines) => {
            for (k, v) in lines {
                println!("{k}={v}");
            }
            ExitCode::SUCCESS
        }
        Err(ConfigErrors(lines)) => {
            for l in lines {
                eprintln!("{l}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn healthcheck(url: Option<String>) -> ExitCode {
    let url = url.unwrap_or_else(|| {
        let port = std::env::var("GHOSTWORKS_BIND")
            .ok()
            .and_then(|b| b.rsplit(':').next().map(String::from))
            .unwrap_or_else(|| "8000".into());
        format!("http://127.0.0.1:{port}/health")
    });
    if probe::get_ok(&url).await {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// An operator's command, with the schema owner's URL it asks for and its logs.
async fn ops(command: ghostworks_ops::cli::Command) -> anyhow::Result<ExitCode> {
    let _telemetry = command.service().map(telemetry::logs_from_env);
    let admin = match command.admin_url() {
        AdminUrl::Unused => None,
        AdminUrl::Optional => optional_admin_url()?,
        AdminUrl::Required => Some(admin_url()?),
    };
    command.run(admin).await
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => {
            let config = load(Config::from_env())?;
            let _telemetry = telemetry::api(&config);
            roles::serve(config).await?;
        }
        Command::Worker => {
            let config = load(WorkerConfig::from_env())?;
            let _telemetry = telemetry::worker(&config);
            roles::worker(config).await?;
        }
        Command::Web => {
            let config = load(WebConfig::from_env())?;
            let _telemetry = telemetry::web(&config);
            ghostworks_web::run(config, roles::shutdown_signal()).await?;
        }
        Command::Jobs { command } => {
            let _telemetry = telemetry::logs_from_env("ghostworks-jobs");
            roles::jobs(command).await?;
        }
        Command::Ops(command) => return ops(*command).await,
        Command::Seed { demo: _ } => {
            let _telemetry = telemetry::logs_from_env("ghostworks-seed");
            seed::refuse_in_production()?;
            let pool = ghostworks_db::connect(&admin_url()?, 2, "ghostworks-seed").await?;
            println!("{}", seed::demo(&pool).await?);
        }
        Command::Config {
            command:
                ConfigCommand::Check {
                    env_file,
                    worker,
                    web,
                },
        } => return Ok(config_check(env_file, worker, web)),
        Command::Healthcheck { url } => return Ok(healthcheck(url).await),
        Command::Dev { data_dir } => dev::run(&data_dir).await?,
        Command::Score { dir, output } => return score::run(&dir, &output),
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
