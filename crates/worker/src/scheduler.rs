//! Periodic maintenance, once per period however many workers run. Every worker tries, at each
//! period boundary, to enqueue the maintenance job with the period's start as its idempotency
//! key; the unique (kind, idempotency_key) constraint lets exactly one insert win, and the work
//! itself is then an ordinary durable job (retried, visible, run once). Succeeded jobs are kept
//! far longer than any period ([`crate::handlers::SUCCEEDED_JOB_RETENTION_DAYS`]), so a period's
//! key cannot be reused.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::kinds;
use crate::runner::Inner;

/// The start of the period `now` falls in.
pub fn period_start(now: DateTime<Utc>, every: Duration) -> DateTime<Utc> {
    let secs = every.as_secs().max(1) as i64;
    DateTime::from_timestamp(now.timestamp().div_euclid(secs) * secs, 0).expect("in range")
}

pub(crate) async fn run(inner: Arc<Inner>, every: Duration) {
    loop {
        let now = Utc::now();
        let period = period_start(now, every);
        match schedule(&inner, period).await {
            Ok(true) => {
                inner
                    .metrics
                    .enqueued
                    .with_label_values(&[kinds::MAINTENANCE.name])
                    .inc();
                tracing::info!(%period, "maintenance scheduled");
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, %period, "could not schedule maintenance; trying again")
            }
        }
        let next = period + chrono::Duration::from_std(every).expect("bounded by config");
        let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        // A failed attempt is retried within the period rather than skipping it.
        tokio::time::sleep(wait.min(Duration::from_secs(60))).await;
    }
}

async fn schedule(inner: &Inner, period: DateTime<Utc>) -> sqlx::Result<bool> {
    let mut tx = inner.pool.begin().await?;
    let id = crate::queue::enqueue(&mut tx, kinds::maintenance(period)).await?;
    tx.commit().await?;
    Ok(id.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_align_to_the_epoch() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T10:59:59Z")
            .unwrap()
            .to_utc();
        let hour = period_start(t, Duration::from_secs(3600));
        assert_eq!(hour.to_rfc3339(), "2026-11-27T10:00:00+00:00");
        let t2 = t + chrono::Duration::seconds(1);
        assert_eq!(
            period_start(t2, Duration::from_secs(3600)).to_rfc3339(),
            "2026-11-27T11:00:00+00:00"
        );
    }
}
