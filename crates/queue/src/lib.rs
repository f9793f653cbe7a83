//! Queueing background jobs: the job kinds with their limits and payloads, and [`enqueue`],
//! which inserts a job in the caller's transaction. Everything that queues work (the API, the
//! worker's own scheduler and handlers) needs only this; running jobs is ghostworks-worker's.

pub mod kinds;

use std::time::Duration;

use ghostworks_db::Tx;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// A job type: its name and the limits every job of it runs under.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub name: &'static str,
    /// Attempts before the job is dead (a lease lost to a crash counts as one).
    pub max_attempts: i32,
    /// The delay before the first retry; it doubles with every further attempt (capped at
    /// `ghostworks_worker::queue::MAX_BACKOFF`) and is jittered down by up to half.
    pub backoff: Duration,
    /// One attempt longer than this fails (and is retried).
    pub timeout: Duration,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct Job {
    kind: &'static str,
    max_attempts: i32,
    tenant: Option<Uuid>,
    payload: Value,
    idempotency_key: Option<String>,
}

impl Job {
    pub fn new(kind: &Kind, payload: impl Serialize) -> Self {
        Self {
            kind: kind.name,
            max_attempts: kind.max_attempts,
            tenant: None,
            payload: serde_json::to_value(payload).expect("job payloads serialise"),
            idempotency_key: None,
        }
    }

    /// The workspace the job works on: its handler runs in that workspace's RLS scope.
    pub fn tenant(mut self, tenant: Uuid) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Enqueueing a second job of this kind with the same key is a no-op.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

/// Queues `job` in the caller's transaction: it becomes visible, and wakes the workers, only
/// if and when that transaction commits. None when a job of the same kind and idempotency key
/// already exists.
pub async fn enqueue(tx: &mut Tx, job: Job) -> sqlx::Result<Option<Uuid>> {
    let id = Uuid::new_v4();
    // The API's role may insert jobs but not read them: hence no RETURNING, and no conflict
    // target (naming one needs SELECT). The id is fresh, so the only possible conflict is the
    // (kind, idempotency_key) constraint.
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, tenant_id, kind, payload, max_attempts, idempotency_key, trace_parent) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(job.tenant)
    .bind(job.kind)
    .bind(&job.payload)
    .bind(job.max_attempts)
    .bind(&job.idempotency_key)
    // The job continues the trace of whatever queued it.
    .bind(ghostworks_telemetry::traceparent(&tracing::Span::current()))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok((inserted == 1).then_some(id))
}
