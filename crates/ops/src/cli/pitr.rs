//! `pitr`: continuous archiving and point-in-time recovery with pgBackRest.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, FixedOffset, Utc};
use clap::Subcommand;
use ghostworks_config::OpsConfig;

use crate::pitr::drill::{self, Outcome};
use crate::pitr::restore::{self, Target};
use crate::pitr::{self, metrics, verify, BackupType, ConfigFile, PgBackRest};

#[derive(Subcommand)]
pub enum PitrCommand {
    /// Write pgBackRest's configuration (PITR_STATE_DIR/pgbackrest.conf, 0600, with the
    /// repository's passphrase from PITR_KEY_FILE) and print the postgresql.conf settings
    /// that archive WAL through it. Only this command writes the file: the others refuse to
    /// run when their settings differ from it, so they cannot break the server's archiving.
    Configure,
    /// Create the stanza in the repository, then check that the server archives WAL into it.
    StanzaCreate,
    /// Take a physical backup, then expire the full backups (and their WAL) beyond
    /// PITR_RETENTION_FULL. A failed backup exits non-zero, and the metrics report it until
    /// one succeeds.
    Backup {
        /// full, diff (the changes since the last full) or incr (since the last backup).
        #[arg(long = "type", value_enum, default_value = "full")]
        kind: BackupType,
    },
    /// The backups in the repository and the WAL archive's range.
    Info,
    /// Read every backup file and WAL segment against its checksum and look for WAL missing
    /// from the archive; exits non-zero naming each problem.
    Verify,
    /// Restore into a new data directory up to a moment (or to the end of the archive), start
    /// it on a loopback port without archiving, and check it like `restore` does: the group
    /// roles, forced row-level security on every tenant table, each table's row count.
    Restore {
        /// The moment (RFC 3339, e.g. 2026-05-01T13:37:00Z): the last transaction committed
        /// before it is the last one restored.
        #[arg(
            long,
            required_unless_present = "to_latest",
            conflicts_with = "to_latest"
        )]
        to: Option<DateTime<FixedOffset>>,
        /// Up to the newest archived WAL.
        #[arg(long)]
        to_latest: bool,
        /// The new data directory (created 0700; must not hold anything).
        #[arg(long)]
        target_dir: PathBuf,
        /// The scratch server's port on 127.0.0.1; default: a free one.
        #[arg(long)]
        port: Option<u16>,
        /// Leave the server running after the checks (it is stopped otherwise; the data
        /// directory stays either way).
        #[arg(long)]
        keep_running: bool,
        /// How long recovery may take.
        #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Verify the repository, restore the newest backup and all archived WAL to a scratch
    /// server, check it, and report the recovery point (age of the newest recovered
    /// transaction) and recovery time (restore start to a server answering queries). Records
    /// the result in PITR_STATE_DIR/drill.json; exits non-zero when the drill fails.
    Drill {
        /// How long recovery may take.
        #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
        timeout: u64,
    },
    /// Serve the backup, archiving and drill metrics on /metrics for Prometheus (read at each
    /// scrape).
    Exporter {
        #[arg(long, default_value = "127.0.0.1:9187")]
        bind: SocketAddr,
    },
}

/// pgBackRest configured from the settings, and the schema owner's URL.
fn prepare(settings: &OpsConfig, file: ConfigFile) -> Result<(PgBackRest, String)> {
    let admin = super::admin_url(settings)?;
    let pitr = settings.pitr().context("invalid configuration")?;
    let pgbackrest = PgBackRest::prepare(&pitr, &settings.s3(), pitr::pg_port(&admin)?, file)?;
    Ok((pgbackrest, admin))
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

pub async fn run(settings: &OpsConfig, command: PitrCommand) -> Result<ExitCode> {
    let file = match command {
        PitrCommand::Configure => ConfigFile::Write,
        _ => ConfigFile::MustMatch,
    };
    let (pgbackrest, admin) = prepare(settings, file)?;
    match command {
        PitrCommand::Configure => configure(&pgbackrest),
        PitrCommand::StanzaCreate => {
            pgbackrest.run("stanza-create", &[]).await?;
            pgbackrest.run("check", &[]).await?;
            println!(
                "stanza {} created; the server archived a WAL segment into the repository",
                pgbackrest.stanza
            );
        }
        PitrCommand::Backup { kind } => {
            let started = std::time::Instant::now();
            let b = pitr::backup(&pgbackrest, kind).await?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "backup {} ({}) taken in {secs:.1} s: database {:.1} MB, {:.1} MB added to the \
                 repository ({:.1} MB/s of database), WAL {} to {}",
                b.label,
                b.kind.as_str(),
                mb(b.info.size),
                mb(b.info.repository.delta),
                mb(b.info.size) / secs.max(1e-3),
                b.archive.start,
                b.archive.stop
            );
        }
        PitrCommand::Info => info(&pgbackrest).await?,
        PitrCommand::Verify => return verify(&pgbackrest).await,
        PitrCommand::Restore {
            to,
            to_latest: _,
            target_dir,
            port,
            keep_running,
            timeout,
        } => {
            let target = to.map_or(Target::Latest, |t| Target::Time(t.with_timezone(&Utc)));
            let port = match port {
                Some(p) => p,
                None => pitr::free_port()?,
            };
            let timeout = Duration::from_secs(timeout);
            let r =
                restore::restore(&pgbackrest, &admin, target, &target_dir, port, timeout).await?;
            print_restored(&r, target);
            if keep_running {
                println!(
                    "the server runs on 127.0.0.1:{port} (stop it with pg_ctl -D {} stop)",
                    target_dir.display()
                );
            } else {
                r.scratch.stop()?;
                println!(
                    "server stopped; start it with pg_ctl -D {} start",
                    target_dir.display()
                );
            }
        }
        PitrCommand::Drill { timeout } => {
            let d = drill::drill(&pgbackrest, &admin, Duration::from_secs(timeout)).await?;
            return Ok(print_drill(&d));
        }
        PitrCommand::Exporter { bind } => metrics::serve(pgbackrest, admin, bind).await?,
    }
    Ok(ExitCode::SUCCESS)
}

fn configure(pgbackrest: &PgBackRest) {
    println!(
        "wrote {} (0600). Archive WAL through it with these postgresql.conf settings, then \
         restart PostgreSQL and run `ghostworks pitr stanza-create`:\n\
         \n  wal_level = replica\n  archive_mode = on\n  archive_timeout = 60\n  archive_command = '{}'",
        pgbackrest.config.display(),
        pgbackrest.archive_command().replace('\'', "''")
    );
}

async fn info(pgbackrest: &PgBackRest) -> Result<()> {
    let info = pgbackrest.info().await?;
    println!("stanza {}: {}", info.name, info.status.message);
    for a in &info.archive {
        println!(
            "WAL archive {}: {} to {}",
            a.id,
            a.min.as_deref().unwrap_or("-"),
            a.max.as_deref().unwrap_or("-")
        );
    }
    println!(
        "{:<26}  {:<4}  {:<20}  {:>10}  {:>10}",
        "label", "type", "finished", "db MB", "repo MB"
    );
    for b in &info.backup {
        let stop = DateTime::from_timestamp(b.timestamp.stop, 0).unwrap_or_default();
        println!(
            "{:<26}  {:<4}  {:<20}  {:>10.1}  {:>10.1}",
            b.label,
            b.kind.as_str(),
            stop.format("%Y-%m-%dT%H:%M:%SZ"),
            mb(b.info.size),
            mb(b.info.repository.delta)
        );
    }
    Ok(())
}

async fn verify(pgbackrest: &PgBackRest) -> Result<ExitCode> {
    let report = verify::verify(pgbackrest).await?;
    if report.problems.is_empty() {
        let newest = report
            .newest_wal
            .map(|(name, at)| format!(", the newest {name} archived at {}", at.to_rfc3339()))
            .unwrap_or_default();
        println!(
            "repository verified: every backup file and {} WAL segment(s) match their checksums, \
             no WAL is missing{newest}",
            report.wal_segments
        );
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.problems {
        eprintln!("{p}");
    }
    bail!(
        "the repository failed verification: {} problem(s)",
        report.problems.len()
    )
}

fn print_restored(r: &restore::Restored, target: Target) {
    let to = match target {
        Target::Latest => "the end of the archive".to_string(),
        Target::Time(t) => t.to_rfc3339(),
    };
    let rows: i64 = r.tables.iter().map(|t| t.rows).sum();
    let tables: Vec<String> = r
        .tables
        .iter()
        .map(|t| format!("{} {}", t.name, t.rows))
        .collect();
    println!(
        "restored to {to} into {} in {:.1} s (a promoted server answering queries); last \
         recovered transaction {}; group roles and forced row-level security checked; {rows} \
         rows ({})",
        r.scratch.dir.display(),
        r.ready_after.as_secs_f64(),
        r.last_transaction.map_or("none".into(), |t| t.to_rfc3339()),
        tables.join(", ")
    );
}

fn print_drill(d: &drill::DrillRecord) -> ExitCode {
    let secs = |v: Option<f64>| v.map_or("unknown".into(), |s| format!("{s:.1} s"));
    match d.outcome {
        Outcome::Passed => {
            println!(
                "drill passed: RTO {} (restore to a server answering queries), RPO {} (newest \
                 recovered transaction {}), {} rows checked",
                secs(d.rto_seconds),
                secs(d.rpo_seconds),
                d.last_transaction_at
                    .map_or("none".into(), |t| t.to_rfc3339()),
                d.rows
            );
            ExitCode::SUCCESS
        }
        Outcome::Failed => {
            for p in &d.problems {
                eprintln!("{p}");
            }
            eprintln!("drill failed: {} problem(s)", d.problems.len());
            ExitCode::FAILURE
        }
    }
}
