//! The worker loop: sweep expired leases, claim as many due jobs as there are free slots, run
//! each in its own task under a renewed lease, then sleep until a NOTIFY, a finished job, the
//! next due job or the poll interval, whichever comes first. Shutdown stops claiming and waits
//! for the jobs in flight.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ghostworks_db::Tx;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::queue::{self, Claimed, Job, Kind, Status};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt after the backoff (a refused connection, a 4xx from SMTP).
    #[error("{0}")]
    Retry(String),
    /// Will never succeed (a malformed payload, a recipient the server rejects for good):
    /// the job is dead at once.
    #[error("{0}")]
    Permanent(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What a handler works with: the job, and its transaction, scoped to the job's tenant (when it
/// has one). The worker marks the job succeeded in the same transaction and commits, so the
/// handler's writes and the job's completion commit together or not at all.
pub struct Ctx {
    pub job: Claimed,
    pub tx: Tx,
    /// For writes that must commit before an external effect, whatever becomes of the job.
    pub pool: PgPool,
    enqueued: Vec<&'static str>,
}

impl Ctx {
    /// Queues a follow-up job in this job's transaction.
    pub async fn enqueue(&mut self, job: Job) -> sqlx::Result<Option<Uuid>> {
        let kind = job.kind();
        let id = queue::enqueue(&mut self.tx, job).await?;
        if id.is_some() {
            self.enqueued.push(kind);
        }
        Ok(id)
    }

    /// The payload as `T`; a payload that does not fit is a permanent failure.
    pub fn payload<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.job.payload.clone())
            .map_err(|e| JobError::Permanent(format!("malformed payload: {e}")))
    }
}

pub trait Handler: Send + Sync + 'static {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>>;
}

/// The job kinds a worker runs and their handlers. A worker claims only kinds it knows, so
/// workers of different versions can share one queue.
#[derive(Default)]
pub struct Registry {
    kinds: HashMap<&'static str, (Kind, Arc<dyn Handler>)>,
}

impl Registry {
    pub fn register(mut self, kind: Kind, handler: impl Handler) -> Self {
        self.kinds.insert(kind.name, (kind, Arc::new(handler)));
        self
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Schedule the maintenance job once per this period (across all workers); None for a
    /// worker that only runs jobs.
    pub maintenance_interval: Option<Duration>,
}

/// How long the loop waits at least when due jobs exist that it could not claim (another
/// worker is claiming them): no busy spin.
const MIN_WAIT: Duration = Duration::from_millis(10);

/// An attempt's outcome other than success.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Job(#[from] JobError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("lease lost")]
    LeaseLost,
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Job(JobError::Db(e))
    }
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    registry: Registry,
    pub(crate) settings: Settings,
    pub(crate) metrics: Arc<Metrics>,
    id: String,
    kinds: Vec<String>,
}

/// A worker: run it with [`Worker::run`]; clones share it.
#[derive(Clone)]
pub struct Worker(Arc<Inner>);

impl Worker {
    pub fn new(pool: PgPool, registry: Registry, settings: Settings) -> Self {
        let mut kinds: Vec<String> = registry.kinds.keys().map(|k| k.to_string()).collect();
        kinds.sort();
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "worker".into());
        let id = format!(
            "{host}:{}:{}",
            std::process::id(),
            &Uuid::new_v4().simple().to_string()[..8]
        );
        Worker(Arc::new(Inner {
            pool,
            registry,
            settings,
            metrics: Arc::new(Metrics::new()),
            id,
            kinds,
        }))
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.0.metrics.clone()
    }

    pub fn pool(&self) -> &PgPool {
        &self.0.pool
    }

    /// Runs jobs until `shutdown` resolves, then finishes the jobs in flight and returns.
    /// Fails only when it cannot LISTEN at start; later database errors are logged and
    /// retried.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> sqlx::Result<()> {
        let inner = &self.0;
        let mut listener = PgListener::connect_with(&inner.pool).await?;
        listener.listen(queue::CHANNEL).await?;
        let scheduler = inner
            .settings
            .maintenance_interval
            .map(|every| tokio::spawn(crate::scheduler::run(inner.clone(), every)));
        tracing::info!(worker = %inner.id, concurrency = inner.settings.concurrency, kinds = ?inner.kinds, "worker started");
        let mut shutdown = std::pin::pin!(shutdown);
        let mut tasks = JoinSet::new();
        loop {
            let wait = match self.round(&mut tasks).await {
                Ok(wait) => wait,
                Err(e) => {
                    // After a failover the pooled connections reach a dead or demoted server.
                    if ghostworks_db::unavailable(&e)
                        == Some(ghostworks_db::Unavailable::ConnectionLost)
                    {
                        ghostworks_db::retire_connections();
                    }
                    tracing::warn!(error = %e, "job queue unavailable; trying again");
                    inner.settings.poll_interval
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                n = listener.recv() => if let Err(e) = n {
                    tracing::warn!(error = %e, "LISTEN connection lost; polling until it is back");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => if let Err(e) = done {
                    tracing::error!(error = %e, "job task panicked; its lease will expire and the job run again");
                },
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(s) = scheduler {
            s.abort();
        }
        tracing::info!(
            in_flight = tasks.len(),
            "shutdown: no more claims; finishing the jobs in flight"
        );
        while tasks.join_next().await.is_some() {}
        tracing::info!("worker stopped");
        Ok(())
    }

    /// One pass: sweep, claim, spawn; returns how long to wait before the next.
    async fn round(&self, tasks: &mut JoinSet<()>) -> sqlx::Result<Duration> {
        let inner = &self.0;
        for (kind, status) in queue::reap(&inner.pool).await? {
            inner.metrics.lease_expired(&kind, status);
            tracing::warn!(kind, %status, "a job's lease expired (its worker stopped): taken back");
        }
        let free = inner.settings.concurrency.saturating_sub(tasks.len());
        if free == 0 {
            return Ok(inner.settings.poll_interval);
        }
        let jobs = queue::claim(
            &inner.pool,
            &inner.id,
            inner.settings.lease,
            free,
            &inner.kinds,
        )
        .await?;
        let full = jobs.len() == free;
        for job in jobs {
            tasks.spawn(execute(inner.clone(), job));
        }
        if full {
            return Ok(Duration::ZERO);
        }
        let wait = match queue::next_due(&inner.pool, &inner.kinds).await? {
            Some(secs) => Duration::from_secs_f64(secs.max(0.0)),
            None => inner.settings.poll_interval,
        };
        Ok(wait.clamp(MIN_WAIT, inner.settings.poll_interval))
    }
}

async fn execute(inner: Arc<Inner>, job: Claimed) {
    let Some((kind, handler)) = inner
        .registry
        .kinds
        .get(job.kind.as_str())
        .map(|(k, h)| (*k, h.clone()))
    else {
        // Unreachable: the claim asks only for registered kinds.
        return;
    };
    let span = tracing::info_span!(
        "job",
        otel.name = kind.name,
        otel.kind = "consumer",
        service = "worker",
        job_id = %job.id,
        kind = kind.name,
        tenant_id = ?job.tenant_id,
        attempt = job.attempts,
        trace_id = tracing::field::Empty,
    );
    if let Some(tp) = job.trace_parent.as_deref() {
        ghostworks_telemetry::adopt_traceparent(&span, tp);
    }
    if let Some(trace_id) = ghostworks_telemetry::trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    async move {
        let m = &inner.metrics;
        m.started.with_label_values(&[kind.name]).inc();
        tracing::info!("job started");
        let started = Instant::now();
        let outcome = tokio::select! {
            r = tokio::time::timeout(kind.timeout, attempt(&inner, handler.as_ref(), job.clone())) => {
                r.unwrap_or(Err(Failure::Timeout(kind.timeout)))
            }
            () = keep_leased(&inner, &job) => Err(Failure::LeaseLost),
        };
        let elapsed = started.elapsed();
        m.duration.with_label_values(&[kind.name]).observe(elapsed.as_secs_f64());
        let elapsed_ms = elapsed.as_millis() as u64;
        match outcome {
            Ok(enqueued) => {
                m.succeeded.with_label_values(&[kind.name]).inc();
                for k in enqueued {
                    m.enqueued.with_label_values(&[k]).inc();
                }
                tracing::info!(elapsed_ms, "job succeeded");
            }
            Err(Failure::LeaseLost) => {
                m.failed.with_label_values(&[kind.name]).inc();
                tracing::warn!(elapsed_ms, "lease lost (this worker stalled past JOB_LEASE_SECONDS): the attempt was abandoned and rolled back");
            }
            Err(f) => {
                m.failed.with_label_values(&[kind.name]).inc();
                let permanent = matches!(f, Failure::Job(JobError::Permanent(_)));
                let delay = queue::backoff(kind.backoff, job.attempts);
                let error = f.to_string();
                match queue::fail(&inner.pool, &job, &inner.id, &error, delay, permanent).await {
                    Ok(Some(Status::Dead)) => {
                        m.dead.with_label_values(&[kind.name]).inc();
                        tracing::error!(error, elapsed_ms, "job failed for the last time: dead (ghostworks jobs retry revives it)");
                    }
                    Ok(_) => {
                        m.retried.with_label_values(&[kind.name]).inc();
                        tracing::warn!(error, elapsed_ms, retry_in_ms = delay.as_millis() as u64, "job failed; retrying");
                    }
                    Err(e) => tracing::error!(error, db_error = %e, "job failed and the failure could not be recorded: it runs again when its lease expires"),
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Runs the handler and completes the job in one transaction; returns the kinds it enqueued.
async fn attempt(
    inner: &Inner,
    handler: &dyn Handler,
    job: Claimed,
) -> Result<Vec<&'static str>, Failure> {
    let tx = ghostworks_db::scoped(&inner.pool, job.tenant_id, None).await?;
    let mut ctx = Ctx {
        job,
        tx,
        pool: inner.pool.clone(),
        enqueued: Vec::new(),
    };
    handler.run(&mut ctx).await?;
    if !queue::complete(&mut ctx.tx, &ctx.job, &inner.id).await? {
        return Err(Failure::LeaseLost);
    }
    ctx.tx.commit().await?;
    Ok(ctx.enqueued)
}

/// Renews the lease every third of its length; returns only when the lease is lost.
async fn keep_leased(inner: &Inner, job: &Claimed) {
    let lease = inner.settings.lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        match queue::extend(&inner.pool, job, &inner.id, lease).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => tracing::warn!(error = %e, "could not renew the lease; trying again"),
        }
    }
}
