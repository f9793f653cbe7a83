//! Durations of the SQL and Redis spans as Prometheus histograms, labelled by the span's name
//! (a fixed operation such as `artifacts.list`, never a statement or a key), so one set of
//! `#[instrument]` attributes feeds both the traces and the metrics.

use std::sync::OnceLock;
use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntGaugeVec, Opts};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The target of every span around one database operation.
pub const SQL_TARGET: &str = "ghostworks::sql";
/// The target of every span around one Redis command or script.
pub const REDIS_TARGET: &str = "ghostworks::redis";

const BUCKETS: [f64; 12] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

fn histogram(name: &str, help: &str, label: &str) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
        &[label],
    )
    .expect("valid histogram")
}

/// Seconds per database operation (its statements and round trips), by operation. Shared by
/// every registry of the process: register a clone.
pub fn db_query_seconds() -> &'static HistogramVec {
    static H: OnceLock<HistogramVec> = OnceLock::new();
    H.get_or_init(|| {
        histogram(
            "ghostworks_db_query_duration_seconds",
            "Duration of database operations, by operation",
            "operation",
        )
    })
}

/// Seconds per Redis command or script, by operation.
pub fn redis_command_seconds() -> &'static HistogramVec {
    static H: OnceLock<HistogramVec> = OnceLock::new();
    H.get_or_init(|| {
        histogram(
            "ghostworks_redis_command_duration_seconds",
            "Duration of Redis commands and scripts, by operation",
            "operation",
        )
    })
}

pub(crate) struct Timings;

struct Started(Instant);

impl<S> Layer<S> for Timings
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let target = attrs.metadata().target();
        if target != SQL_TARGET && target != REDIS_TARGET {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(Started(at)) = span.extensions().get::<Started>().map(|s| Started(s.0)) else {
            return;
        };
        let histogram = if span.metadata().target() == REDIS_TARGET {
            redis_command_seconds()
        } else {
            db_query_seconds()
        };
        histogram
            .with_label_values(&[span.name()])
            .observe(at.elapsed().as_secs_f64());
    }
}

/// `ghostworks_build_info{version, git_sha, service, host} 1` for a role's registry. `host`
/// tells replicas apart when one address reaches several (a Swarm service behind its entry
/// point, whose container hostnames are unique per task); a deploy's bake sums their
/// counters per host.
pub fn build_info(service: &str) -> IntGaugeVec {
    let info = IntGaugeVec::new(
        Opts::new("ghostworks_build_info", "Build of this process"),
        &["version", "git_sha", "service", "host"],
    )
    .expect("valid gauge");
    info.with_label_values(&[
        env!("CARGO_PKG_VERSION"),
        crate::GIT_SHA,
        service,
        &hostname(),
    ])
    .set(1);
    info
}

/// This machine's (or container's) hostname; empty when the kernel does not say.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
