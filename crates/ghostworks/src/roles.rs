//! The long-running roles (`serve`, `worker`) and the job queue's `jobs` command.

use anyhow::Context;
use clap::Subcommand;
use ghostworks_config::{Config, OpsConfig, WorkerConfig};
use ghostworks_worker::Status;
use uuid::Uuid;

#[derive(Subcommand)]
pub enum JobsCommand {
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

pub async fn shutdown_signal() {
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

/// `jobs`: inspects or repairs the queue as the worker's login.
pub async fn jobs(settings: &OpsConfig, command: JobsCommand) -> anyhow::Result<()> {
    let url = settings
        .worker_database_url()
        .context("invalid configuration")?;
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
