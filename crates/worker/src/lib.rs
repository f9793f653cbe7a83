//! Ghostworks background jobs. A durable queue in PostgreSQL: jobs are enqueued in the
//! transaction of the write that causes them ([`enqueue`]), claimed with
//! `FOR UPDATE SKIP LOCKED` under a lease that running jobs renew, woken by LISTEN/NOTIFY with
//! polling as the fallback, retried with exponential backoff and jitter up to each kind's limit,
//! then dead until an operator retries them. Handlers run in their job's transaction, scoped to
//! its tenant. The production kinds: e-mail over SMTP and scheduled maintenance. See
//! docs/worker.md for the design.

pub mod handlers;
pub mod http;
pub use ghostworks_queue::kinds;
pub mod mail;
pub mod metrics;
pub mod queue;
pub mod runner;
pub mod scheduler;

use std::sync::Arc;

use ghostworks_config::WorkerConfig;

pub use queue::{enqueue, Job, Kind, Status};
pub use runner::{BoxFuture, Ctx, Handler, JobError, Registry, Settings, Worker};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("DATABASE_URL: cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("DATABASE_URL: the worker logs in as {0}, which is not a member of ghostworks_worker; give the worker its own login role (see docs/worker.md)")]
    Role(String),
    #[error(transparent)]
    Mail(#[from] mail::MailConfigError),
}

impl Settings {
    pub fn from_config(c: &WorkerConfig) -> Self {
        Settings {
            concurrency: c.concurrency,
            lease: c.lease,
            poll_interval: c.poll_interval,
            maintenance_interval: Some(c.maintenance_interval),
        }
    }
}

/// Connects as the worker's own role (refusing any other, e.g. the API's by mistake) and
/// builds the production worker: e-mail and maintenance, with the scheduler.
pub async fn connect(config: &WorkerConfig) -> Result<Worker, StartError> {
    let pool = ghostworks_db::connect(
        config.database_url.expose(),
        2 * config.concurrency as u32 + 2,
        "ghostworks-worker",
    )
    .await
    .map_err(StartError::Connect)?;
    let (user, member): (String, bool) =
        sqlx::query_as("SELECT current_user::text, pg_has_role(current_user, $1, 'MEMBER')")
            .bind(ghostworks_db::WORKER_ROLE)
            .fetch_one(&pool)
            .await
            .map_err(StartError::Connect)?;
    if !member {
        return Err(StartError::Role(user));
    }
    let mailer = mail::Mailer::new(
        config.smtp_url.expose(),
        &config.mail_from,
        &config.public_url,
    )?;
    let registry = handlers::registry(
        Arc::new(mailer),
        handlers::Retention {
            artifact_days: config.artifact_retention_days,
            audit_days: config.audit_retention_days,
        },
    );
    Ok(Worker::new(pool, registry, Settings::from_config(config)))
}
