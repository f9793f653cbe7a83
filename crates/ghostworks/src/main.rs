//! `ghostworks`: every role of the platform behind one binary. This file only dispatches:
//! it parses the command line, loads the command's configuration, sets up its telemetry and
//! calls the role; the operator's commands are `ghostworks_ops::cli`.

mod dev;
mod probe;
mod roles;
mod seed;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ghostworks_config::{Config, ConfigErrors, OpsConfig, WebConfig, WorkerConfig};

#[derive(Parser)]
#[command(name = "ghostworks", version, about = "Ghostworks: a multi-tenant artifact catalog", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (configuration from the environment; see .env.example). Like
    /// `worker` and `web`, refuses to start without GHOSTWORKS_ENV.
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
    /// worker and the web app, with GHOSTWORKS_ENV=development. Each role listens where
    /// GHOSTWORKS_BIND / WORKER_BIND / WEB_BIND say, else on 127.0.0.1:8000 / 8001 / 3000 when
    /// free, else on a free port; it prints them. Ctrl-C stops it all; data persists.
    Dev {
        /// Where the private servers keep their data.
        #[arg(long, default_value = ".data")]
        data_dir: PathBuf,
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

/// An operator's command, with its logs.
async fn ops(
    command: ghostworks_ops::cli::Command,
    settings: &OpsConfig,
) -> anyhow::Result<ExitCode> {
    let _telemetry = command
        .service()
        .map(|service| telemetry::tool(service, &settings.common()));
    command.run(settings).await
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = OpsConfig::from_env();
    match cli.command {
        Command::Serve => {
            let config = load(Config::from_env())?;
            let _telemetry = telemetry::role("ghostworks-api", &config.common);
            roles::serve(config).await?;
        }
        Command::Worker => {
            let config = load(WorkerConfig::from_env())?;
            let _telemetry = telemetry::role("ghostworks-worker", &config.common);
            roles::worker(config).await?;
        }
        Command::Web => {
            let config = load(WebConfig::from_env())?;
            let _telemetry = telemetry::role("ghostworks-web", &config.common);
            ghostworks_web::run(config, roles::shutdown_signal()).await?;
        }
        Command::Jobs { command } => {
            let _telemetry = telemetry::tool("ghostworks-jobs", &settings.common());
            roles::jobs(&settings, command).await?;
        }
        Command::Ops(command) => return ops(*command, &settings).await,
        Command::Seed { demo: _ } => {
            let _telemetry = telemetry::tool("ghostworks-seed", &settings.common());
            seed::refuse_in_production(settings.common().environment)?;
            let admin = load(settings.admin_database_url())?;
            let pool = ghostworks_db::connect(admin.expose(), 2, "ghostworks-seed").await?;
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
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| settings.api_health_url());
            return Ok(if probe::get_ok(&url).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Dev { data_dir } => dev::run(&data_dir).await?,
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
