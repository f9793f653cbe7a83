//! Continuous archiving and point-in-time recovery with pgBackRest: Ghostworks writes its
//! configuration (the repository, encrypted with the operator's key, and asynchronous WAL
//! push), runs its backups, restores to a moment into a new data directory and checks the
//! result like a logical restore, verifies the repository, drills restores, and exports the
//! freshness of it all as Prometheus metrics.

pub mod drill;
pub mod metrics;
pub mod pgbackrest;
pub mod restore;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use pgbackrest::{archive_command, BackupInfo, BackupType, ConfigFile, Owner, PgBackRest};

/// The last backup attempt, recorded (`backup.json` in the state directory) so that a failed
/// backup shows in the metrics until one succeeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupAttempt {
    #[serde(rename = "type")]
    pub kind: BackupType,
    pub at: DateTime<Utc>,
    pub succeeded: bool,
    pub error: Option<String>,
}

const BACKUP_RECORD: &str = "backup.json";

/// Takes a backup of `kind`; returns it as the repository lists it.
pub async fn backup(pgbackrest: &PgBackRest, kind: BackupType) -> Result<BackupInfo> {
    let at = Utc::now();
    let result = pgbackrest
        .run("backup", &[format!("--type={}", kind.as_str())])
        .await;
    let attempt = BackupAttempt {
        kind,
        at,
        succeeded: result.is_ok(),
        error: result.as_ref().err().map(|e| format!("{e:#}")),
    };
    write_record(
        &pgbackrest.owner,
        &pgbackrest.state_dir.join(BACKUP_RECORD),
        &attempt,
    )?;
    result?;
    let info = pgbackrest.info().await?;
    info.backup
        .into_iter()
        .next_back()
        .context("pgbackrest backup succeeded but the repository lists no backup")
}

/// The last backup attempt, if one was recorded.
pub fn last_backup_attempt(state_dir: &Path) -> Result<Option<BackupAttempt>> {
    read_record(&state_dir.join(BACKUP_RECORD))
}

/// A free loopback port for a scratch server.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The port of DATABASE_ADMIN_URL, where pgBackRest finds the archived server's socket.
pub fn pg_port(admin_url: &str) -> Result<u16> {
    let url = url::Url::parse(admin_url).context("DATABASE_ADMIN_URL: not a URL")?;
    Ok(url.port().unwrap_or(5432))
}

/// Reads a JSON record of the state directory; `None` when there is none.
pub fn read_record<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is damaged", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces a JSON record of the state directory.
pub fn write_record<T: Serialize>(owner: &Owner, path: &Path, record: &T) -> Result<()> {
    write_private(owner, path, &serde_json::to_vec_pretty(record)?)
}

/// Replaces `path` with `bytes` at once (a reader sees the old file or the new one), 0600
/// and the data directory owner's.
pub(crate) fn write_private(owner: &Owner, path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = PathBuf::from(format!("{}.{}", path.display(), std::process::id()));
    crate::private::recreate_private_file(&tmp)?.write_all(bytes)?;
    owner.chown(&tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}
