//! Logical backups (pg_dump custom format, compressed) with a manifest, verification in a
//! scratch database, restore into an empty database, and retention.
//!
//! A backup is two files in the backup directory or S3 prefix ([`Destination`]):
//! `ghostworks-<UTC time>.dump` and `ghostworks-<UTC time>.manifest.json`, the manifest written
//! last, so that a backup whose manifest exists is complete. The manifest's counts and checksums
//! are taken in the same snapshot pg_dump reads (`pg_export_snapshot`), so they match the dump
//! exactly even while traffic writes. Every file is created 0600 and the backup directory 0700
//! ([`crate::storage`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Datelike, Utc};
use ghostworks_config::S3Settings;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor, PgConnection};

use crate::pg::{self, TableSum};
use crate::progress;
use crate::storage::{self, Destination, Staging};

const MANIFEST_SUFFIX: &str = ".manifest.json";
const DUMP_SUFFIX: &str = ".dump";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub created_at: DateTime<Utc>,
    pub database: String,
    pub server_version: String,
    /// The newest applied migration.
    pub schema_version: i64,
    /// The dump's file name, beside the manifest.
    pub dump_file: String,
    pub dump_bytes: u64,
    /// pg_database_size at backup time.
    pub database_bytes: i64,
    pub sha256: String,
    pub duration_ms: u64,
    pub tables: Vec<TableSum>,
}

impl Manifest {
    /// Reads the manifest `name`, refusing one whose dump is not a plain `.dump` file name in
    /// the same place: retention deletes the file a manifest names.
    async fn read(dest: &Destination, name: &str) -> Result<Self> {
        let manifest: Self =
            serde_json::from_slice(&dest.read(name).await?).with_context(|| {
                format!(
                    "{} is not a backup manifest (or it is damaged)",
                    dest.location(name)
                )
            })?;
        storage::plain_name(&manifest.dump_file)
            .and_then(|dump| {
                if dump.ends_with(DUMP_SUFFIX) {
                    Ok(())
                } else {
                    bail!("{dump:?} is not a {DUMP_SUFFIX} file")
                }
            })
            .with_context(|| {
                format!(
                    "refusing the manifest {}: its dump_file must name a dump beside it (remove \
                     the manifest if nobody here wrote it)",
                    dest.location(name)
                )
            })?;
        Ok(manifest)
    }

    pub fn total_rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// A backup ready to restore: its manifest, and its dump as a local file whose sha256 matches
/// the manifest (downloaded from S3 into a temporary directory that lives as long as this).
pub struct Located {
    /// Where the manifest is, for messages.
    pub origin: String,
    pub manifest: Manifest,
    pub dump: PathBuf,
    /// The backup's files or directory that users other than their owner may read.
    pub loose_modes: Vec<String>,
    _staging: Staging,
}

/// Resolves `--from`: a manifest, its dump, or a backup directory or S3 prefix (its newest
/// backup); downloads the backup from S3, and checks the dump's sha256 against the manifest.
pub async fn locate(from: &str, s3: &S3Settings) -> Result<Located> {
    let (parent, file) = match from.rsplit_once('/') {
        Some(("", file)) => ("/", file),
        Some(split) => split,
        None => (".", from),
    };
    let is_backup_file = file.ends_with(MANIFEST_SUFFIX) || file.ends_with(DUMP_SUFFIX);
    let dest =
        Destination::parse(if is_backup_file { parent } else { from }, s3).context("--from")?;
    let names = dest.names().await.context("--from")?;
    let name = if is_backup_file {
        match file.strip_suffix(DUMP_SUFFIX) {
            Some(stem) => format!("{stem}{MANIFEST_SUFFIX}"),
            None => file.to_string(),
        }
    } else {
        list(&dest)
            .await?
            .pop()
            .map(|(name, _)| name)
            .with_context(|| format!("--from: no backup manifest in {dest}"))?
    };
    if !names.contains(&name) {
        bail!("--from: {} does not exist", dest.location(&name));
    }
    let origin = dest.location(&name);
    let manifest = Manifest::read(&dest, &name).await?;
    if !names.contains(&manifest.dump_file) {
        bail!(
            "backup {origin} is incomplete: its dump {} is missing",
            dest.location(&manifest.dump_file)
        );
    }
    let staging = dest.staging()?;
    let dump = dest.fetch(&manifest.dump_file, &staging).await?;
    let actual = pg::sha256_file(&dump)?;
    if actual != manifest.sha256 {
        bail!(
            "backup file {} is corrupted: its sha256 is {actual}, the manifest records {}; \
             refusing to use it (take another backup, or restore an older one: `ghostworks backup list`)",
            dest.location(&manifest.dump_file),
            manifest.sha256
        );
    }
    let loose_modes = dest.loose_modes(&[&name, &manifest.dump_file]);
    Ok(Located {
        origin,
        manifest,
        dump,
        loose_modes,
        _staging: staging,
    })
}

/// Every backup in `dest` by manifest name, oldest first.
pub async fn list(dest: &Destination) -> Result<Vec<(String, Manifest)>> {
    let mut out = Vec::new();
    for name in dest.names().await? {
        if name.ends_with(MANIFEST_SUFFIX) {
            let manifest = Manifest::read(dest, &name).await?;
            out.push((name, manifest));
        }
    }
    out.sort_by_key(|(_, m)| m.created_at);
    Ok(out)
}

/// How many backups to keep: the `recent` newest, plus the newest of each of the last `daily`
/// days and of the last `weekly` ISO weeks.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub recent: usize,
    pub daily: usize,
    pub weekly: usize,
}

/// The backup times `policy` keeps among `times`.
pub fn retained(times: &[DateTime<Utc>], policy: Retention) -> BTreeSet<DateTime<Utc>> {
    let mut newest_first: Vec<_> = times.to_vec();
    newest_first.sort_by(|a, b| b.cmp(a));
    let mut keep: BTreeSet<_> = newest_first.iter().take(policy.recent).copied().collect();
    let mut days = BTreeSet::new();
    let mut weeks = BTreeSet::new();
    for t in &newest_first {
        if days.len() < policy.daily && days.insert(t.date_naive()) {
            keep.insert(*t);
        }
        let week = (t.iso_week().year(), t.iso_week().week());
        if weeks.len() < policy.weekly && weeks.insert(week) {
            keep.insert(*t);
        }
    }
    keep
}

/// Deletes the backups in `dest` that `policy` does not keep; returns the removed dumps'
/// locations.
pub async fn prune(dest: &Destination, policy: Retention) -> Result<Vec<String>> {
    let all = list(dest).await?;
    let times: Vec<_> = all.iter().map(|(_, m)| m.created_at).collect();
    let keep = retained(&times, policy);
    let mut removed = Vec::new();
    for (manifest_name, m) in all {
        if keep.contains(&m.created_at) {
            continue;
        }
        // The manifest first: interrupted here, what is left is a stray dump, never a listed
        // backup without its dump.
        dest.delete(&manifest_name).await?;
        dest.delete(&m.dump_file).await?;
        removed.push(dest.location(&m.dump_file));
    }
    Ok(removed)
}

/// Runs a tool while a spinner shows the size of `watch` (the file it writes).
fn run_with_progress(cmd: std::process::Command, what: &str, watch: Option<&Path>) -> Result<()> {
    let bar = progress::spinner(what);
    let watched = watch.map(Path::to_path_buf);
    let handle = {
        let bar = bar.clone();
        std::thread::spawn(move || {
            while !bar.is_finished() {
                if let Some(size) = watched
                    .as_deref()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                {
                    bar.set_message(format!("{:.1} MB", size as f64 / 1e6));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };
    let result = pg::run(cmd, what);
    bar.finish_and_clear();
    let _ = handle.join();
    result
}

/// Writes a backup of the database at `url` (the schema owner) to `dest`; returns the
/// manifest's location.
pub async fn create(url: &str, dest: &Destination) -> Result<(String, Manifest)> {
    let staging = dest.staging()?;
    let started = Instant::now();
    let created_at = Utc::now();
    let stem = format!("ghostworks-{}", created_at.format("%Y%m%dT%H%M%S%.3fZ"));
    let dump_file = format!("{stem}{DUMP_SUFFIX}");
    let partial = staging.dir().join(format!("{dump_file}.partial"));

    let mut conn = pg::owner_connection(url, "ghostworks-backup").await?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await?;
    let (database, server_version, database_bytes): (String, String, i64) = sqlx::query_as(
        "SELECT current_database()::text, current_setting('server_version'), pg_database_size(current_database())",
    )
    .fetch_one(&mut conn)
    .await?;
    let schema_version = pg::schema_version(&mut conn).await?;

    let mut dump = pg::tool_command("pg_dump", url)?;
    // pg_dump writes to a file this process created 0600: with --file it would create it with
    // the umask's mode.
    dump.args(["--format=custom", "--compress=6", "--no-password"])
        .arg(format!("--snapshot={snapshot}"))
        .stdout(crate::private::create_private_file(&partial)?);
    let dumping = tokio::task::spawn_blocking({
        let partial = partial.clone();
        move || run_with_progress(dump, "pg_dump", Some(&partial))
    });
    let tables = pg::database_sums(&mut conn).await;
    let dumped = dumping.await?;
    conn.execute("COMMIT").await?;
    conn.close().await?;
    let tables = tables?;
    if let Err(e) = dumped {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }

    let sha256 = pg::sha256_file(&partial)?;
    let dump_bytes = std::fs::metadata(&partial)?.len();
    dest.put(&partial, &dump_file).await?;
    let manifest = Manifest {
        format: 1,
        created_at,
        database,
        server_version,
        schema_version,
        dump_file,
        dump_bytes,
        database_bytes,
        sha256,
        duration_ms: started.elapsed().as_millis() as u64,
        tables,
    };
    let manifest_name = format!("{stem}{MANIFEST_SUFFIX}");
    let tmp = staging.dir().join(format!("{manifest_name}.partial"));
    crate::private::create_private_file(&tmp)?.write_all(&serde_json::to_vec_pretty(&manifest)?)?;
    dest.put(&tmp, &manifest_name).await?;
    Ok((dest.location(&manifest_name), manifest))
}

async fn is_empty(conn: &mut PgConnection) -> Result<bool> {
    Ok(pg::tables(conn).await?.is_empty())
}

/// The roles the schema's grants name that do not exist: they are cluster-wide, so a logical
/// dump does not carry them (a physical restore does).
pub(crate) async fn missing_group_roles(conn: &mut PgConnection) -> Result<Vec<&'static str>> {
    let mut missing = Vec::new();
    for role in [ghostworks_db::APP_ROLE, ghostworks_db::WORKER_ROLE] {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(role)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            missing.push(role);
        }
    }
    Ok(missing)
}

async fn ensure_group_roles(conn: &mut PgConnection) -> Result<()> {
    for role in missing_group_roles(conn).await? {
        conn.execute(
            format!("CREATE ROLE {role} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
                .as_str(),
        )
        .await?;
    }
    Ok(())
}

/// Tables with a tenant_id whose row-level security is not enabled and forced.
async fn unprotected_tenant_tables(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
         WHERE n.nspname = 'public' AND c.relkind = 'r'
           AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
         ORDER BY 1",
    )
    .fetch_all(conn)
    .await?)
}

/// The checks every restore ends with: forced row-level security on every tenant table, then
/// each table's count and checksum.
pub(crate) async fn check_restored(conn: &mut PgConnection) -> Result<Vec<TableSum>> {
    let unprotected = unprotected_tenant_tables(conn).await?;
    if !unprotected.is_empty() {
        bail!(
            "after the restore, these tenant tables lack forced row-level security: {}; run \
             `ghostworks migrate` and check the backup's schema",
            unprotected.join(", ")
        );
    }
    conn.execute("ANALYZE").await?;
    pg::database_sums(conn).await
}

/// Compares the database's counts and checksums with the manifest's.
pub fn compare(expected: &[TableSum], actual: &[TableSum]) -> Result<()> {
    let mut problems = Vec::new();
    for e in expected {
        match actual.iter().find(|a| a.name == e.name) {
            None => problems.push(format!("table {} is missing", e.name)),
            Some(a) if a.rows != e.rows => problems.push(format!(
                "table {}: {} rows, the manifest records {}",
                e.name, a.rows, e.rows
            )),
            Some(a) if a.checksum != e.checksum => problems.push(format!(
                "table {}: content checksum differs from the manifest",
                e.name
            )),
            Some(_) => {}
        }
    }
    for a in actual {
        if !expected.iter().any(|e| e.name == a.name) {
            problems.push(format!("table {} is not in the manifest", a.name));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "restored data differs from the backup:\n  {}",
            problems.join("\n  ")
        )
    }
}

/// Restores the backup into the database at `url` (as the schema owner), which must be empty
/// unless `force` (which drops its public schema first). Recreates the group roles, checks
/// that every tenant table has forced row-level security, and verifies counts and checksums
/// against the manifest. Returns how long it took.
pub async fn restore(url: &str, backup: &Located, force: bool) -> Result<Duration> {
    let started = Instant::now();
    let mut conn = pg::owner_connection(url, "ghostworks-restore").await?;
    if !is_empty(&mut conn).await? {
        if !force {
            bail!(
                "the target database {} is not empty; restore into an empty database, or pass \
                 --force to replace its contents",
                pg::database_name(url)?
            );
        }
        conn.execute(
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public AUTHORIZATION pg_database_owner; \
             GRANT USAGE ON SCHEMA public TO PUBLIC",
        )
        .await?;
    }
    ensure_group_roles(&mut conn).await?;

    let mut cmd = pg::tool_command("pg_restore", url)?;
    // One transaction: a failed restore leaves the database as empty as it was. --no-owner:
    // the objects belong to the restoring owner, which need not have the old owner's name.
    cmd.args([
        "--no-owner",
        "--single-transaction",
        "--exit-on-error",
        "--no-password",
    ])
    .arg(&backup.dump);
    tokio::task::spawn_blocking(move || run_with_progress(cmd, "pg_restore", None)).await??;

    let actual = check_restored(&mut conn).await?;
    conn.close().await?;
    compare(&backup.manifest.tables, &actual)?;
    Ok(started.elapsed())
}

/// Restores the backup into a scratch database beside the one at `url`, checks counts and
/// checksums against the manifest, and drops the scratch database again.
pub async fn verify(url: &str, backup: &Located) -> Result<Duration> {
    let scratch = format!("gw_verify_{}", uuid::Uuid::new_v4().simple());
    let mut admin = pg::owner_connection(url, "ghostworks-backup-verify").await?;
    admin
        .execute(format!("CREATE DATABASE {scratch}").as_str())
        .await
        .context("cannot create the scratch database (the owner needs CREATEDB)")?;
    let result = restore(&pg::with_database(url, &scratch)?, backup, false).await;
    admin
        .execute(format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)").as_str())
        .await?;
    admin.close().await?;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn retention_keeps_recent_daily_and_weekly() {
        // One backup every 6 hours for 30 days, oldest first.
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let times: Vec<_> = (0..120)
            .map(|i| start + chrono::Duration::hours(6 * i))
            .collect();
        let keep = retained(
            &times,
            Retention {
                recent: 3,
                daily: 7,
                weekly: 4,
            },
        );
        let newest = *times.last().unwrap();
        // The 3 newest (30 Jan), the newest of each of 7 days (24-30 Jan; the newest day's is
        // among the 3), and the newest of 4 ISO weeks (those of 30 and 25 Jan are kept
        // already, which adds 18 and 11 Jan).
        for t in &times[times.len() - 3..] {
            assert!(keep.contains(t));
        }
        assert_eq!(
            keep.iter()
                .filter(|t| newest - **t < chrono::Duration::days(7))
                .count(),
            3 + 6
        );
        let weeks: BTreeSet<_> = keep.iter().map(|t| t.iso_week().week()).collect();
        assert_eq!(weeks.len(), 4);
        assert_eq!(keep.len(), 3 + 6 + 2);
        assert!(retained(
            &times,
            Retention {
                recent: 0,
                daily: 0,
                weekly: 0
            }
        )
        .is_empty());
    }

    #[test]
    fn compare_names_each_difference() {
        let t = |name: &str, rows, sum: &str| TableSum {
            name: name.into(),
            rows,
            checksum: sum.into(),
        };
        assert!(compare(&[t("a", 1, "x")], &[t("a", 1, "x")]).is_ok());
        let e = compare(
            &[t("a", 1, "x"), t("b", 2, "y"), t("c", 1, "z")],
            &[t("a", 2, "x"), t("b", 2, "q"), t("d", 0, "")],
        )
        .unwrap_err()
        .to_string();
        for s in [
            "table a: 2 rows, the manifest records 1",
            "table b: content checksum differs",
            "table c is missing",
            "table d is not in the manifest",
        ] {
            assert!(e.contains(s), "{s} in {e}");
        }
    }
}
