//! `ghostworks`: every role of the platform behind one binary.

mod dev;
mod probe;
mod score;
mod seed;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ghostworks_config::{Config, ConfigErrors};

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
    /// Apply the embedded database migrations as the schema owner (DATABASE_ADMIN_URL, else
    /// DATABASE_URL). Idempotent; creates the `ghostworks_app` role the API logs in through.
    Migrate {
        /// List applied and pending migrations instead of applying them.
        #[arg(long)]
        status: bool,
    },
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
        /// The URL to probe; default: /health on the port of GHOSTWORKS_BIND (8000).
        #[arg(long)]
        url: Option<String>,
    },
    /// Run everything locally: private PostgreSQL and Redis (when DATABASE_URL / REDIS_URL
    /// are unset), migrations, demo data and the API. Ctrl-C stops it all; data persists.
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
    },
}

fn load_config() -> anyhow::Result<Config> {
    Config::from_env().map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

fn admin_url() -> anyhow::Result<String> {
    Config::admin_database_url(&std::env::vars().collect())
        .map(|s| s.expose().to_string())
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let bind = config.bind;
    let state = ghostworks_api::AppState::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("GHOSTWORKS_BIND: cannot listen on {bind}"))?;
    tracing::info!(%bind, "serving the API");
    ghostworks_api::serve(state, listener, shutdown_signal()).await
}

pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let pool = ghostworks_db::connect(url, 2, "ghostworks-migrate")
        .await
        .context("cannot connect as the schema owner")?;
    ghostworks_db::migrate(&pool).await?;
    for (version, description, applied) in ghostworks_db::migration_status(&pool).await? {
        tracing::info!(version, description, applied, "migration");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => {
            let config = load_config()?;
            telemetry::init(&config.log_level, config.log_format);
            serve(config).await?;
        }
        Command::Migrate { status } => {
            telemetry::init_from_env();
            let url = admin_url()?;
            if status {
                let pool = ghostworks_db::connect(&url, 1, "ghostworks-migrate").await?;
                for (version, description, applied) in
                    ghostworks_db::migration_status(&pool).await?
                {
                    println!(
                        "{version:>4}  {:<8} {description}",
                        if applied { "applied" } else { "pending" }
                    );
                }
            } else {
                migrate(&url).await?;
                println!("migrations applied");
            }
        }
        Command::Seed { demo: _ } => {
            telemetry::init_from_env();
            seed::refuse_in_production()?;
            let pool = ghostworks_db::connect(&admin_url()?, 2, "ghostworks-seed").await?;
            let report = seed::demo(&pool).await?;
            println!("{report}");
        }
        Command::Config {
            command: ConfigCommand::Check { env_file },
        } => {
            let result = match &env_file {
                Some(f) => Config::from_env_file(f),
                None => Config::from_env(),
            };
            return Ok(match result {
                Ok(c) => {
                    for (k, v) in c.redacted() {
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
            });
        }
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| {
                let port = std::env::var("GHOSTWORKS_BIND")
                    .ok()
                    .and_then(|b| b.rsplit(':').next().map(String::from))
                    .unwrap_or_else(|| "8000".into());
                format!("http://127.0.0.1:{port}/health")
            });
            return Ok(if probe::get_ok(&url).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
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
