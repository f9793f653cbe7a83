//! The `jobs` table as the worker sees it (jobs are queued by `ghostworks_queue::enqueue`): claim under a lease with
//! `FOR UPDATE SKIP LOCKED`, renew, finish or fail with backoff, sweep expired leases, and the
//! operator's list / retry / purge. Every statement is one round trip.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ghostworks_db::Tx;
pub use ghostworks_queue::{enqueue, Job, Kind};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

/// The channel the insert trigger notifies (migration 0002).
pub const CHANNEL: &str = "ghostworks_jobs";

/// The longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The delay before the attempt after attempt number `attempt` (1-based) failed: exponential
/// with "equal jitter", so retries of jobs that failed together spread out.
pub fn backoff(base: Duration, attempt: i32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.clamp(1, 31) as u32 - 1));
    let full = exp.min(MAX_BACKOFF);
    full / 2 + full.mul_f64(rand::random::<f64>() / 2.0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Dead => "dead",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "queued" => Ok(Status::Queued),
            "running" => Ok(Status::Running),
            "succeeded" => Ok(Status::Succeeded),
            "dead" => Ok(Status::Dead),
            other => Err(format!(
                "unknown status {other:?}; expected queued, running, succeeded or dead"
            )),
        }
    }
}

/// A job leased to this worker for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub kind: String,
    pub payload: Value,
    /// This attempt's number, from 1.
    pub attempts: i32,
    pub max_attempts: i32,
    /// The trace context of what queued the job.
    pub trace_parent: Option<String>,
}

/// Leases up to `limit` due jobs of `kinds` to `worker`, oldest due first. Rows other workers
/// are claiming at the same moment are skipped, not waited for.
pub async fn claim(
    pool: &PgPool,
    worker: &str,
    lease: Duration,
    limit: usize,
    kinds: &[String],
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, \
             locked_until = now() + make_interval(secs => $2), started_at = now() \
         WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= now() AND kind = ANY($4) \
                      ORDER BY run_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
         RETURNING id, tenant_id, kind, payload, attempts, max_attempts, trace_parent",
    )
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(limit as i64)
    .bind(kinds)
    .fetch_all(pool)
    .await
}

/// Renews the lease of a running job; false when this worker no longer holds it.
pub async fn extend(
    pool: &PgPool,
    job: &Claimed,
    worker: &str,
    lease: Duration,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE jobs SET locked_until = now() + make_interval(secs => $3) \
         WHERE id = $1 AND locked_by = $2 AND attempts = $4 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .bind(lease.as_secs_f64())
    .bind(job.attempts)
    .execute(pool)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Marks the job succeeded in the handler's transaction; false when the lease was lost (the
/// caller must then roll back: another worker owns the job now).
pub async fn complete(tx: &mut Tx, job: &Claimed, worker: &str) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE jobs SET status = 'succeeded', finished_at = now(), locked_by = NULL, locked_until = NULL, last_error = NULL \
         WHERE id = $1 AND locked_by = $2 AND attempts = $3 AND status = 'running'",
    )
    .bind(job.id)
    .bind(worker)
    .bind(job.attempts)
    .execute(&mut **tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records a failed attempt: queued again after `delay`, or dead when it was the last attempt
/// or `permanent`. None when the lease was lost meanwhile.
pub async fn fail(
    pool: &PgPool,
    job: &Claimed,
    worker: &str,
    error: &str,
    delay: Duration,
    permanent: bool,
) -> sqlx::Result<Option<Status>> {
    let status: Option<String> = sqlx::query_scalar(
        "UPDATE jobs SET \
             status = CASE WHEN $5 OR attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
             finished_at = CASE WHEN $5 OR attempts >= max_attempts THEN now() END, \
             run_at = now() + make_interval(secs => $4), last_error = left($3, 2000), \
             locked_by = NULL, locked_until = NULL \
         WHERE id = $1 AND locked_by = $2 AND attempts = $6 AND status = 'running' RETURNING status",
    )
    .bind(job.id)
    .bind(worker)
    .bind(error)
    .bind(delay.as_secs_f64())
    .bind(permanent)
    .bind(job.attempts)
    .fetch_optional(pool)
    .await?;
    Ok(status.and_then(|s| s.parse().ok()))
}

/// Takes back the jobs whose lease ran out (their worker died or lost the database): queued
/// again at once, or dead when that was their last attempt. Returns each one's kind and new
/// status.
pub async fn reap(pool: &PgPool) -> sqlx::Result<Vec<(String, Status)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "UPDATE jobs SET \
             status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
             finished_at = CASE WHEN attempts >= max_attempts THEN now() END, \
             run_at = now(), locked_by = NULL, locked_until = NULL, \
             last_error = 'lease expired: the worker running it stopped or lost the database' \
         WHERE status = 'running' AND locked_until < now() RETURNING kind, status",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, s)| Some((k, s.parse().ok()?)))
        .collect())
}

/// Seconds until the next queued job of `kinds` is due (≤ 0 when one is due now), by the
/// database's clock.
pub async fn next_due(pool: &PgPool, kinds: &[String]) -> sqlx::Result<Option<f64>> {
    sqlx::query_scalar(
        "SELECT extract(epoch FROM min(run_at) - now())::float8 FROM jobs WHERE status = 'queued' AND kind = ANY($1)",
    )
    .bind(kinds)
    .fetch_one(pool)
    .await
}

/// Per kind and unfinished status: how many jobs, and how long the oldest has been due.
pub async fn depth(pool: &PgPool) -> sqlx::Result<Vec<(String, Status, i64, f64)>> {
    let rows: Vec<(String, String, i64, f64)> = sqlx::query_as(
        "SELECT kind, status, count(*), coalesce(extract(epoch FROM now() - min(run_at) FILTER (WHERE run_at <= now())), 0)::float8 \
         FROM jobs WHERE status IN ('queued', 'running', 'dead') GROUP BY kind, status ORDER BY kind, status",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(k, s, n, age)| Some((k, s.parse().ok()?, n, age)))
        .collect())
}

/// One row of `ghostworks jobs list`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub kind: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

/// The newest `limit` jobs, optionally of one status.
pub async fn list(pool: &PgPool, status: Option<Status>, limit: i64) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as(
        "SELECT id, tenant_id, kind, status, attempts, max_attempts, run_at, last_error FROM jobs \
         WHERE ($1::text IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2",
    )
    .bind(status.map(Status::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Queues dead jobs again with a fresh set of attempts: one (`Some(id)`) or all; returns how
/// many, and wakes the workers.
pub async fn retry(pool: &PgPool, id: Option<Uuid>) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let n = sqlx::query(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL \
         WHERE status = 'dead' AND ($1::uuid IS NULL OR id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// Deletes every dead job; returns how many.
pub async fn purge_dead(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM jobs WHERE status = 'dead'")
        .execute(pool)
        .await?
        .rows_affected())
}

/// Deletes jobs that succeeded before `before` (maintenance).
pub async fn purge_succeeded(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM jobs WHERE status = 'succeeded' AND finished_at < $1")
            .bind(before)
            .execute(db)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(4);
        for attempt in 1..=4 {
            let full = base * 2u32.pow(attempt as u32 - 1);
            for _ in 0..50 {
                let d = backoff(base, attempt);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
        assert!(backoff(base, 40) >= MAX_BACKOFF / 2);
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Dead,
        ] {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("failed".parse::<Status>().is_err());
    }
}
