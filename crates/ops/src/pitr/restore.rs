//! `pitr restore`: the repository restored to a moment (or to the end of the archive) into a
//! new data directory, started as a scratch server on a loopback port, and checked like a
//! logical restore: the group roles, forced row-level security on every tenant table, and
//! each table's row count.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use sqlx::Connection;

use super::pgbackrest::{Owner, PgBackRest};
use crate::backup;
use crate::pg::{self, TableSum};

/// Where recovery stops.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The end of the archived WAL.
    Latest,
    /// The last transaction committed before this moment.
    Time(DateTime<Utc>),
}

/// A restored data directory with its server running on a loopback port.
pub struct Scratch {
    pub dir: PathBuf,
    pub port: u16,
    /// DATABASE_ADMIN_URL's login and database on the scratch server.
    pub url: String,
    log: PathBuf,
    owner: Owner,
}

impl Scratch {
    /// Stops the server (fast shutdown); the data directory stays.
    pub fn stop(&self) -> Result<()> {
        let mut c = self.owner.command(&pg::tool("pg_ctl")?);
        c.arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null());
        pg::run(c, "pg_ctl stop")
    }

    /// The server log's last lines, for an error message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// A restore that passed its checks.
pub struct Restored {
    pub scratch: Scratch,
    /// From the start of the restore to a promoted server answering queries.
    pub ready_after: Duration,
    /// The newest transaction recovery replayed.
    pub last_transaction: Option<DateTime<Utc>>,
    pub tables: Vec<TableSum>,
}

/// Restores into `dir` (new or empty), starts it on `port` and checks it; the server is left
/// running. `timeout` bounds the wait for recovery to finish.
pub async fn restore(
    pgbackrest: &PgBackRest,
    admin_url: &str,
    target: Target,
    dir: &Path,
    port: u16,
    timeout: Duration,
) -> Result<Restored> {
    let started = Instant::now();
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "--target-dir {} is not empty: restore into a new directory",
            dir.display()
        );
    }
    pgbackrest.owner.private_dir(dir)?;
    let mut args = vec![
        format!("--pg1-path={}", dir.display()),
        "--log-level-console=warn".into(),
    ];
    match target {
        Target::Latest => args.push("--type=default".into()),
        Target::Time(t) => args.extend([
            "--type=time".into(),
            format!("--target={}", t.format("%Y-%m-%d %H:%M:%S%.6f+00")),
            "--target-action=promote".into(),
        ]),
    }
    pgbackrest.run("restore", &args).await?;
    let scratch = start(pgbackrest, admin_url, dir, port)?;
    match check(&scratch, started, timeout).await {
        Ok((ready_after, last_transaction, tables)) => Ok(Restored {
            scratch,
            ready_after,
            last_transaction,
            tables,
        }),
        Err(e) => {
            let _ = scratch.stop();
            Err(e)
        }
    }
}

/// Starts the restored directory's server on `port`, its socket in the data directory and
/// without archiving: a scratch copy must never push WAL into the repository it came from.
fn start(pgbackrest: &PgBackRest, admin_url: &str, dir: &Path, port: u16) -> Result<Scratch> {
    let owner = pgbackrest.owner.clone();
    // A server whose configuration lives outside its data directory (Debian's /etc layout)
    // comes back without it: the scratch server runs on the defaults, password logins only.
    for (file, text) in [
        ("postgresql.conf", ""),
        ("pg_hba.conf", "host all all 127.0.0.1/32 scram-sha-256\n"),
    ] {
        let path = dir.join(file);
        if !path.exists() {
            std::fs::write(&path, text)?;
            owner.chown(&path)?;
        }
    }
    let log = dir.join("pitr-restore.log");
    let mut ctl = owner.command(&pg::tool("pg_ctl")?);
    ctl.arg("-D")
        .arg(dir)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "3600", "-o"])
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c archive_mode=off{}",
            dir.display(),
            primary_limits(&owner, dir)?
        ))
        .arg("start")
        .stdout(Stdio::null());
    let mut url = url::Url::parse(admin_url).context("DATABASE_ADMIN_URL: not a URL")?;
    url.set_host(Some("127.0.0.1"))?;
    url.set_port(Some(port))
        .map_err(|_| anyhow::anyhow!("DATABASE_ADMIN_URL: cannot set a port"))?;
    let scratch = Scratch {
        dir: dir.to_path_buf(),
        port,
        url: url.to_string(),
        log,
        owner,
    };
    pg::run(ctl, "starting the restored server")
        .with_context(|| format!("its log ends:\n{}", scratch.log_tail()))?;
    Ok(scratch)
}

/// The settings recovery refuses to run below the primary's (`max_connections` and the
/// like), as `-c` options with the primary's values from the restored control file: the
/// restored copy may otherwise run on lower defaults than the primary's configuration, which
/// lives outside its data directory (or on its command line).
fn primary_limits(owner: &Owner, dir: &Path) -> Result<String> {
    let mut c = owner.command(&pg::tool("pg_controldata")?);
    c.arg(dir);
    let out = c.output().context("pg_controldata: could not start")?;
    if !out.status.success() {
        bail!(
            "pg_controldata {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut options = String::new();
    for (label, setting) in [
        ("max_connections setting:", "max_connections"),
        ("max_worker_processes setting:", "max_worker_processes"),
        ("max_wal_senders setting:", "max_wal_senders"),
        ("max_prepared_xacts setting:", "max_prepared_transactions"),
        ("max_locks_per_xact setting:", "max_locks_per_transaction"),
    ] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(str::trim)
            .filter(|v| v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty())
            .with_context(|| format!("pg_controldata {}: no {label}", dir.display()))?;
        options.push_str(&format!(" -c {setting}={value}"));
    }
    Ok(options)
}

/// Waits for recovery to end (the server promoted, answering queries), then runs the
/// post-restore checks.
async fn check(
    scratch: &Scratch,
    started: Instant,
    timeout: Duration,
) -> Result<(Duration, Option<DateTime<Utc>>, Vec<TableSum>)> {
    let deadline = Instant::now() + timeout;
    let mut conn = loop {
        let promoted = async {
            let mut c = pg::owner_connection(&scratch.url, "ghostworks-pitr").await?;
            let recovering: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
                .fetch_one(&mut c)
                .await?;
            anyhow::Ok((!recovering).then_some(c))
        };
        if let Ok(Some(c)) = promoted.await {
            break c;
        }
        if !scratch.dir.join("postmaster.pid").exists() {
            bail!(
                "the restored server stopped during recovery; its log ends:\n{}",
                scratch.log_tail()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "recovery did not finish within {} s; its log ends:\n{}",
                timeout.as_secs(),
                scratch.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ready_after = started.elapsed();
    let last_transaction: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT pg_last_xact_replay_timestamp()")
            .fetch_one(&mut conn)
            .await?;
    let missing = backup::missing_group_roles(&mut conn).await?;
    if !missing.is_empty() {
        bail!(
            "the restored server lacks the group role(s) {}",
            missing.join(", ")
        );
    }
    let tables = backup::check_restored(&mut conn).await?;
    conn.close().await?;
    Ok((ready_after, last_transaction, tables))
}
