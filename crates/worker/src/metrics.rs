//! The worker's Prometheus metrics, per job kind: counters of what happened in this process,
//! and queue gauges read from the database at scrape time (so every worker reports the same
//! queue; aggregate them with max, not sum).

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use sqlx::PgPool;

use crate::queue::{self, Status};

pub struct Metrics {
    registry: Registry,
    /// Jobs this process queued (the API counts its own under the same name).
    pub enqueued: IntCounterVec,
    pub started: IntCounterVec,
    pub succeeded: IntCounterVec,
    /// Failed attempts (errors, timeouts, lost leases).
    pub failed: IntCounterVec,
    /// Failed attempts that will be tried again.
    pub retried: IntCounterVec,
    /// Jobs that ran out of attempts or failed permanently.
    pub dead: IntCounterVec,
    pub duration: HistogramVec,
    depth: IntGaugeVec,
    oldest: GaugeVec,
}

fn counter(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["kind"]).unwrap()
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let enqueued = counter("ghostworks_jobs_enqueued_total", "Jobs queued, by kind");
        let started = counter(
            "ghostworks_jobs_started_total",
            "Job attempts started, by kind",
        );
        let succeeded = counter("ghostworks_jobs_succeeded_total", "Jobs that succeeded");
        let failed = counter(
            "ghostworks_jobs_failed_total",
            "Job attempts that failed (errors, timeouts, lost leases)",
        );
        let retried = counter(
            "ghostworks_jobs_retried_total",
            "Failed attempts queued again after a backoff",
        );
        let dead = counter(
            "ghostworks_jobs_dead_total",
            "Jobs moved to the dead state (out of attempts or permanently failed)",
        );
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ghostworks_job_duration_seconds",
                "Duration of job attempts, by kind",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0,
            ]),
            &["kind"],
        )
        .unwrap();
        let depth = IntGaugeVec::new(
            Opts::new(
                "ghostworks_jobs",
                "Jobs in the queue now, by kind and status (queued, running, dead)",
            ),
            &["kind", "status"],
        )
        .unwrap();
        let oldest = GaugeVec::new(
            Opts::new(
                "ghostworks_jobs_oldest_due_seconds",
                "How long the oldest due queued job has waited, by kind",
            ),
            &["kind"],
        )
        .unwrap();
        for c in [
            Box::new(enqueued.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(started.clone()),
            Box::new(succeeded.clone()),
            Box::new(failed.clone()),
            Box::new(retried.clone()),
            Box::new(dead.clone()),
            Box::new(duration.clone()),
            Box::new(depth.clone()),
            Box::new(oldest.clone()),
            Box::new(ghostworks_telemetry::build_info("ghostworks-worker")),
            Box::new(ghostworks_telemetry::db_query_seconds().clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            enqueued,
            started,
            succeeded,
            failed,
            retried,
            dead,
            duration,
            depth,
            oldest,
        }
    }

    /// A lease that expired counts as a failed attempt of its kind.
    pub(crate) fn lease_expired(&self, kind: &str, now: Status) {
        self.failed.with_label_values(&[kind]).inc();
        match now {
            Status::Dead => self.dead.with_label_values(&[kind]).inc(),
            _ => self.retried.with_label_values(&[kind]).inc(),
        }
    }

    /// The text exposition format, with the queue gauges read from the database first.
    pub async fn render(&self, pool: &PgPool) -> Result<String, sqlx::Error> {
        let rows = queue::depth(pool).await?;
        self.depth.reset();
        self.oldest.reset();
        for (kind, status, n, oldest) in rows {
            self.depth
                .with_label_values(&[kind.as_str(), status.as_str()])
                .set(n);
            if status == Status::Queued {
                self.oldest.with_label_values(&[kind.as_str()]).set(oldest);
            }
        }
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        Ok(String::from_utf8(buf).expect("exposition format is UTF-8"))
    }
}
