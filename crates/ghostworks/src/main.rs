//! `ghostworks`: every role of the platform behind one binary.

mod dev;
mod ops;
mod probe;
mod seed;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ghostworks_config::{Config, ConfigErrors, OpsConfig, WorkerConfig};
use ghostworks_worker::Status;
use uuid::Uuid;

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
        command: JobsCommand,
    },
    /// Apply the embedded database migrations as the schema owner (DATABASE_ADMIN_URL, else
    /// DATABASE_URL). Idempotent; creates the `ghostworks_app` role the API logs in through.
    /// Holds a lock so two deploys never migrate at once.
    Migrate {
        #[command(subcommand)]
        command: Option<ops::MigrateCommand>,
        /// List applied and pending migrations instead of applying them.
        #[arg(long)]
        status: bool,
        /// How long a migration statement may wait for a table lock before it gives up (and
        /// the migration rolls back), so traffic never queues behind it for long.
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        lock_timeout: u64,
    },
    /// Write a compressed, checksummed logical backup (pg_dump custom format) and its manifest
    /// of the DATABASE_ADMIN_URL database, then apply the retention policy.
    Backup(ops::BackupArgs),
    /// Restore a backup into the (empty) DATABASE_ADMIN_URL database, recreate the group roles,
    /// and verify counts, checksums and row-level security.
    Restore {
        /// A manifest, its .dump, or a backup directory or s3://BUCKET/PREFIX (its newest
        /// backup). A backup on S3 is downloaded to TMPDIR and its sha256 checked first; the
        /// credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
        /// AWS_ENDPOINT_URL, as for `backup --dir`.
        #[arg(long)]
        from: String,
        /// Replace the contents of a non-empty database.
        #[arg(long)]
        force: bool,
    },
    /// Blue/green release of the api, worker and web behind nginx: check, back up, migrate, start
    /// the new colour, wait for readiness, switch nginx, bake while watching the new colour's
    /// error ratio and p95, then drain and stop the old colour. Any failure switches back and
    /// exits non-zero naming the step. See docs/operations.md.
    Deploy {
        #[command(subcommand)]
        command: Option<ops::DeployCommand>,
        /// The release: the path of its ghostworks binary (process runtime), or its image tag
        /// (compose runtime).
        #[arg(long)]
        release: Option<String>,
        #[command(flatten)]
        args: ops::ReleaseArgs,
    },
    /// Redeploy an earlier succeeded release through the same gated path as `deploy`. Refused
    /// when a contract migration newer than the schema version the release last ran on has
    /// been applied (it may have removed a column or table the release uses).
    Rollback {
        /// The release's version (or binary path) from `deploy history`; default: the newest
        /// succeeded release other than the live one.
        #[arg(long)]
        to: Option<String>,
        /// Roll back even past applied contract migrations, when you know the release does not
        /// use what they removed.
        #[arg(long)]
        force_past_contract: bool,
        #[command(flatten)]
        args: ops::ReleaseArgs,
    },
    /// Run a command (after `--`) and start it again whenever it fails: exits non-zero or is
    /// killed by a signal. Waits 0.5 s before a restart, doubling with each rapid failure up
    /// to 30 s; gives up after --max-failures rapid failures in a row. SIGTERM and SIGINT are
    /// forwarded to the command, and it exits when the command has. `deploy` runs every role
    /// this way; each restart is logged as a warning.
    Supervise(ops::SuperviseArgs),
    /// Move one workspace's data between databases (DATABASE_ADMIN_URL).
    Tenant {
        #[command(subcommand)]
        command: ops::TenantCommand,
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

#[derive(Subcommand)]
enum JobsCommand {
    /// The newest jobs, newest first.
    List {
        /// Only jobs in this state: queued, running, succeeded or dead.
        #[arg(long)]
        status: Option<Status>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Queue dead jobs again, with a fresh set of attempts.
    #[command(group = clap::ArgGroup::new("which").required(true))]
    Retry {
        /// The dead job to retry.
        #[arg(group = "which")]
        id: Option<Uuid>,
        /// Every dead job.
        #[arg(long, group = "which")]
        all_dead: bool,
    },
    /// Delete jobs for good.
    Purge {
        /// Every dead job (the only jobs an operator purges; succeeded ones go after 7 days).
        #[arg(long, required = true)]
        dead: bool,
    },
}

fn load_config() -> anyhow::Result<Config> {
    Config::from_env().map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

fn load_worker_config() -> anyhow::Result<WorkerConfig> {
    WorkerConfig::from_env().map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

fn admin_url(settings: &OpsConfig) -> anyhow::Result<String> {
    settings
        .admin_database_url()
        .map(|s| s.expose().to_string())
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))
}

/// The schema owner's URL when one is configured: a compose deploy needs it only to back up.
fn optional_admin_url(settings: &OpsConfig) -> anyhow::Result<Option<String>> {
    settings
        .optional_admin_database_url()
        .map(|s| s.map(|s| s.expose().to_string()))
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
    tracing::info!("shutdown requested: finishing the work in flight");
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

/// Runs the worker until SIGTERM / Ctrl-C, with its /metrics and /health on WORKER_BIND.
pub async fn worker(config: WorkerConfig) -> anyhow::Result<()> {
    let worker = ghostworks_worker::connect(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("WORKER_BIND: cannot listen on {}", config.bind))?;
    tracing::info!(bind = %config.bind, "serving the worker's /metrics and /health");
    let http = {
        let worker = worker.clone();
        tokio::spawn(async move { ghostworks_worker::http::serve(&worker, listener).await })
    };
    let result = worker.run(shutdown_signal()).await;
    http.abort();
    Ok(result?)
}

async fn jobs(settings: &OpsConfig, command: JobsCommand) -> anyhow::Result<()> {
    let url = settings
        .worker_database_url()
        .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    let pool = ghostworks_db::connect(url.expose(), 2, "ghostworks-jobs")
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
    match command {
        JobsCommand::List { status, limit } => {
            let rows = ghostworks_worker::queue::list(&pool, status, limit).await?;
            println!(
                "{:<36}  {:<9}  {:<20}  {:>8}  {:<20}  {:<36}  error",
                "id", "status", "kind", "attempts", "run_at", "workspace"
            );
            for j in &rows {
                println!(
                    "{:<36}  {:<9}  {:<20}  {:>8}  {:<20}  {:<36}  {}",
                    j.id,
                    j.status,
                    j.kind,
                    format!("{}/{}", j.attempts, j.max_attempts),
                    j.run_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    j.tenant_id
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    j.last_error.as_deref().unwrap_or("").replace('\n', " ")
                );
            }
            println!("{} job(s)", rows.len());
        }
        JobsCommand::Retry { id, all_dead: _ } => {
            let n = ghostworks_worker::queue::retry(&pool, id).await?;
            if id.is_some() && n == 0 {
                anyhow::bail!("no dead job with that id");
            }
            println!("{n} job(s) queued again");
        }
        JobsCommand::Purge { dead: _ } => {
            let n = ghostworks_worker::queue::purge_dead(&pool).await?;
            println!("{n} dead job(s) deleted");
        }
    }
    Ok(())
}

pub async fn migrate(url: &str) -> anyhow::Result<()> {
    migrate_with(url, ghostworks_ops::migrate::DEFAULT_LOCK_TIMEOUT).await
}

async fn migrate_with(url: &str, lock_timeout: std::time::Duration) -> anyhow::Result<()> {
    ghostworks_ops::migrate::run(url, lock_timeout).await?;
    let pool = ghostworks_db::connect(url, 2, "ghostworks-migrate")
        .await
        .context("cannot connect as the schema owner")?;
    for (version, description, applied) in ghostworks_db::migration_status(&pool).await? {
        tracing::info!(version, description, applied, "migration");
    }
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = OpsConfig::from_env();
    match cli.command {
        Command::Serve => {
            let config = load_config()?;
            let _telemetry = telemetry::role("ghostworks-api", &config.common);
            serve(config).await?;
        }
        Command::Worker => {
            let config = load_worker_config()?;
            let _telemetry = telemetry::role("ghostworks-worker", &config.common);
            worker(config).await?;
        }
        Command::Web => {
            let config = ghostworks_config::WebConfig::from_env()
                .map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
            let _telemetry = telemetry::role("ghostworks-web", &config.common);
            ghostworks_web::run(config, shutdown_signal()).await?;
        }
        Command::Jobs { command } => {
            let _telemetry = telemetry::tool("ghostworks-jobs", &settings.common());
            jobs(&settings, command).await?;
        }
        Command::Migrate {
            command: Some(command),
            ..
        } => return ops::lint(command),
        Command::Migrate {
            command: None,
            status,
            lock_timeout,
        } => {
            let _telemetry = telemetry::tool("ghostworks-migrate", &settings.common());
            let url = admin_url(&settings)?;
            if status {
                for m in ghostworks_ops::migrate::status(&url).await? {
                    println!("{m}");
                }
            } else {
                migrate_with(&url, std::time::Duration::from_secs(lock_timeout)).await?;
                println!("migrations applied");
            }
        }
        Command::Seed { demo: _ } => {
            let _telemetry = telemetry::tool("ghostworks-seed", &settings.common());
            seed::refuse_in_production(settings.common().environment)?;
            let pool = ghostworks_db::connect(&admin_url(&settings)?, 2, "ghostworks-seed").await?;
            let report = seed::demo(&pool).await?;
            println!("{report}");
        }
        Command::Config {
            command:
                ConfigCommand::Check {
                    env_file,
                    worker,
                    web,
                },
        } => {
            use ghostworks_config::WebConfig;
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
            return Ok(match result {
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
            });
        }
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| settings.api_health_url());
            return Ok(if probe::get_ok(&url).await {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Backup(args) => {
            let _telemetry = telemetry::tool("ghostworks-backup", &settings.common());
            ops::backup(&admin_url(&settings)?, &settings.s3(), args).await?;
        }
        Command::Restore { from, force } => {
            let _telemetry = telemetry::tool("ghostworks-restore", &settings.common());
            ops::restore(&admin_url(&settings)?, &settings.s3(), &from, force).await?;
        }
        Command::Deploy {
            command: Some(ops::DeployCommand::History),
            args,
            ..
        } => ops::history(&args)?,
        Command::Deploy {
            command: Some(ops::DeployCommand::Status),
            args,
            ..
        } => ops::status(&args)?,
        Command::Deploy {
            command: None,
            release,
            args,
        } => {
            let _telemetry = telemetry::tool("ghostworks-deploy", &settings.common());
            let release = release.context(
                "--release: missing; pass the path of the binary (process runtime) or the image \
                 tag (compose runtime)",
            )?;
            ops::deploy(
                optional_admin_url(&settings)?.as_deref(),
                &settings.s3(),
                release,
                None,
                &args,
            )
            .await?;
        }
        Command::Rollback {
            to,
            force_past_contract,
            args,
        } => {
            let _telemetry = telemetry::tool("ghostworks-rollback", &settings.common());
            ops::rollback(
                optional_admin_url(&settings)?.as_deref(),
                &settings.s3(),
                to,
                force_past_contract,
                &args,
            )
            .await?;
        }
        Command::Supervise(args) => {
            let _telemetry = telemetry::tool("ghostworks-supervise", &settings.common());
            ops::supervise(args).await?;
        }
        Command::Tenant { command } => {
            let _telemetry = telemetry::tool("ghostworks-tenant", &settings.common());
            ops::tenant(&admin_url(&settings)?, command).await?;
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
