//! `pitr drill`: the repository verified, the newest backup plus every archived WAL segment
//! restored to a scratch server and checked, with the recovery point and time measured. The
//! result is recorded (`drill.json`, 0600, in the state directory) for the metrics.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::pgbackrest::PgBackRest;
use super::restore::{self, Target};
use super::verify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
}

/// The result of one drill.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    pub outcome: Outcome,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Recovery time: from the start of the restore to a promoted server answering queries.
    pub rto_seconds: Option<f64>,
    /// Recovery point: how much older than the drill's start the newest recovered
    /// transaction is (an upper bound on the writes a restore now would lose).
    pub rpo_seconds: Option<f64>,
    pub last_transaction_at: Option<DateTime<Utc>>,
    /// The newest archived WAL segment and when it was archived.
    pub newest_wal: Option<(String, DateTime<Utc>)>,
    pub rows: i64,
    /// Why it failed, one line per problem.
    pub problems: Vec<String>,
}

const RECORD: &str = "drill.json";

/// Runs a drill on a free loopback port; the scratch directory is removed afterwards. A
/// failure is recorded and returned as a failed record, not an error.
pub async fn drill(
    pgbackrest: &PgBackRest,
    admin_url: &str,
    timeout: Duration,
) -> Result<DrillRecord> {
    let started_at = Utc::now();
    let mut record = DrillRecord {
        outcome: Outcome::Failed,
        started_at,
        finished_at: started_at,
        rto_seconds: None,
        rpo_seconds: None,
        last_transaction_at: None,
        newest_wal: None,
        rows: 0,
        problems: Vec::new(),
    };
    let dir = pgbackrest.state_dir.join("drill");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).context("removing the last drill's directory")?;
    }
    if let Err(e) = run(pgbackrest, admin_url, timeout, &dir, &mut record).await {
        record.problems.push(format!("{e:#}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
    if record.problems.is_empty() {
        record.outcome = Outcome::Passed;
    }
    record.finished_at = Utc::now();
    super::write_record(
        &pgbackrest.owner,
        &pgbackrest.state_dir.join(RECORD),
        &record,
    )?;
    Ok(record)
}

async fn run(
    pgbackrest: &PgBackRest,
    admin_url: &str,
    timeout: Duration,
    dir: &Path,
    record: &mut DrillRecord,
) -> Result<()> {
    let report = verify::verify(pgbackrest).await?;
    record.newest_wal = report.newest_wal;
    if !report.problems.is_empty() {
        record.problems = report.problems.iter().map(ToString::to_string).collect();
        return Ok(());
    }
    let port = super::free_port()?;
    let restored =
        restore::restore(pgbackrest, admin_url, Target::Latest, dir, port, timeout).await?;
    let stopped = restored.scratch.stop();
    record.rto_seconds = Some(restored.ready_after.as_secs_f64());
    record.last_transaction_at = restored.last_transaction;
    let recovered = restored
        .last_transaction
        .or(record.newest_wal.as_ref().map(|(_, at)| *at));
    record.rpo_seconds =
        recovered.map(|t| (record.started_at - t).num_milliseconds().max(0) as f64 / 1e3);
    record.rows = restored.tables.iter().map(|t| t.rows).sum();
    stopped
}

/// The last drill's record, if one ran.
pub fn last(state_dir: &Path) -> Result<Option<DrillRecord>> {
    super::read_record(&state_dir.join(RECORD))
}
