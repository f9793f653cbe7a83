//! The operator's commands (`migrate`, `backup`, `restore`, `pitr`, `deploy`, `rollback`,
//! `supervise`, `tenant`): their clap arguments and the reports they print. The binary
//! flattens [`Command`] into its own subcommands and calls [`Command::run`].

pub mod data;
pub mod deploy;
pub mod pitr;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ghostworks_config::OpsConfig;

use crate::deploy::runtime::process::supervise;
pub use data::{BackupArgs, BackupCommand, MigrateArgs, MigrateCommand, TenantCommand};
pub use deploy::{DeployArgs, DeployCommand, ReleaseArgs, RollbackArgs};
pub use pitr::PitrCommand;

#[derive(Subcommand)]
pub enum Command {
    /// Apply the embedded database migrations as the schema owner (DATABASE_ADMIN_URL, else
    /// DATABASE_URL). Idempotent; creates the `ghostworks_app` role the API logs in through.
    /// Holds a lock so two deploys never migrate at once.
    Migrate(MigrateArgs),
    /// Write a compressed, checksummed logical backup (pg_dump custom format) and its manifest
    /// of the DATABASE_ADMIN_URL database, then apply the retention policy.
    Backup(BackupArgs),
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
    /// Continuous WAL archiving and point-in-time recovery with pgBackRest (settings:
    /// PITR_REPO, PITR_PGDATA, PITR_KEY_FILE, PITR_STATE_DIR; see docs/operations.md).
    Pitr {
        #[command(subcommand)]
        command: PitrCommand,
    },
    /// Blue/green release of the api, worker and web behind nginx: check, back up, migrate, start
    /// the new colour, wait for readiness, switch nginx, bake while watching the new colour's
    /// error ratio and p95, then drain and stop the old colour. Any failure switches back and
    /// exits non-zero naming the step. See docs/operations.md.
    Deploy(DeployArgs),
    /// Redeploy an earlier succeeded release through the same gated path as `deploy`. Refused
    /// when a contract migration newer than the schema version the release last ran on has
    /// been applied (it may have removed a column or table the release uses), and when the
    /// release's binary (or image) is no longer the one the history recorded (its sha256 or
    /// image id differs).
    Rollback(RollbackArgs),
    /// Run a command (after `--`) and start it again whenever it fails: exits non-zero or is
    /// killed by a signal. Waits 0.5 s before a restart, doubling with each rapid failure up
    /// to 30 s; gives up after --max-failures rapid failures in a row. SIGTERM and SIGINT are
    /// forwarded to the command, and it exits when the command has. `deploy` runs every role
    /// this way; each restart is logged as a warning.
    Supervise(SuperviseArgs),
    /// Move one workspace's data between databases (DATABASE_ADMIN_URL).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Args)]
pub struct SuperviseArgs {
    /// Give up (exit 1) after this many failures in a row, each within --stable-secs of its
    /// start.
    #[arg(long, default_value_t = supervise::DEFAULT_MAX_FAILURES, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: u32,
    /// A run that stays up this long ends a streak of failures; the backoff starts over.
    #[arg(long, default_value_t = supervise::DEFAULT_STABLE_SECS)]
    pub stable_secs: u64,
    /// Keep the command's pid, restart count and last exit here (JSON, rewritten at every
    /// start; `deploy status` shows it).
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// The command, after `--`, e.g. `-- /opt/ghostworks/releases/1.4.0/ghostworks serve`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

/// The schema owner's URL (DATABASE_ADMIN_URL, else DATABASE_URL).
fn admin_url(settings: &OpsConfig) -> Result<String> {
    let url = settings
        .admin_database_url()
        .context("invalid configuration")?;
    Ok(url.expose().to_string())
}

/// The schema owner's URL when one is configured: a compose deploy needs it only to back up.
fn optional_admin_url(settings: &OpsConfig) -> Result<Option<String>> {
    let url = settings
        .optional_admin_database_url()
        .context("invalid configuration")?;
    Ok(url.map(|u| u.expose().to_string()))
}

impl Command {
    /// The service name its logs carry; `None` for a command that only prints a report.
    pub fn service(&self) -> Option<&'static str> {
        Some(match self {
            Command::Migrate(MigrateArgs {
                command: Some(_), ..
            })
            | Command::Deploy(DeployArgs {
                command: Some(_), ..
            }) => return None,
            Command::Migrate(_) => "ghostworks-migrate",
            Command::Backup(_) => "ghostworks-backup",
            Command::Restore { .. } => "ghostworks-restore",
            Command::Pitr { .. } => "ghostworks-pitr",
            Command::Deploy(_) => "ghostworks-deploy",
            Command::Rollback(_) => "ghostworks-rollback",
            Command::Supervise(_) => "ghostworks-supervise",
            Command::Tenant { .. } => "ghostworks-tenant",
        })
    }

    /// Runs the command with the operator's settings (database URLs, S3 credentials).
    pub async fn run(self, settings: &OpsConfig) -> Result<ExitCode> {
        let s3 = settings.s3();
        match self {
            Command::Migrate(MigrateArgs {
                command: Some(command),
                ..
            }) => return data::lint(command),
            Command::Migrate(args) => data::migrate(&admin_url(settings)?, &args).await?,
            Command::Backup(args) => data::backup(&admin_url(settings)?, &s3, args).await?,
            Command::Restore { from, force } => {
                data::restore(&admin_url(settings)?, &s3, &from, force).await?
            }
            Command::Pitr { command } => return pitr::run(settings, command).await,
            Command::Tenant { command } => data::tenant(&admin_url(settings)?, command).await?,
            Command::Deploy(args) => deploy::deploy(settings, &s3, args).await?,
            Command::Rollback(args) => {
                let admin = optional_admin_url(settings)?;
                deploy::rollback(admin.as_deref(), &s3, args).await?
            }
            Command::Supervise(args) => {
                let policy = supervise::Policy {
                    max_failures: args.max_failures,
                    stable: Duration::from_secs(args.stable_secs),
                };
                supervise::run(&args.command, &policy, args.status_file.as_deref()).await?
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
