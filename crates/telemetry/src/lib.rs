//! Telemetry shared by every role: log lines (JSON or human-readable), OpenTelemetry traces
//! exported over OTLP/HTTP, W3C trace-context propagation, and the durations of SQL and Redis
//! spans as Prometheus histograms; and the golden signals read back from a service's
//! `/metrics` ([`signals`]).
//!
//! One subscriber, three consumers with their own filters: the log output follows LOG_LEVEL
//! (or RUST_LOG), while the trace exporter and the timing histograms always see Ghostworks'
//! own spans, so quieter logs never blind the traces or the metrics.

mod filter;
pub mod http_client;
mod http_metrics;
mod propagation;
pub mod signals;
mod timings;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use http_metrics::HttpMetrics;
pub use propagation::{adopt_remote_parent, adopt_traceparent, trace_id, traceparent};
pub use timings::{build_info, db_query_seconds, redis_command_seconds, REDIS_TARGET, SQL_TARGET};

/// The commit this binary was built from (build information in every role's metrics).
pub const GIT_SHA: &str = env!("GHOSTWORKS_GIT_SHA");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Pretty,
}

pub struct Settings<'a> {
    /// The role, as OpenTelemetry's `service.name` (ghostworks-api, ghostworks-worker, ...).
    pub service: &'static str,
    pub environment: &'a str,
    /// The log level of Ghostworks' own crates (dependencies stay at warn).
    pub level: &'a str,
    pub format: Format,
    /// The collector's OTLP/HTTP base URL; no traces are exported without one.
    pub otlp_endpoint: Option<&'a str>,
    /// The share of new traces recorded (0..=1); a caller's sampling decision is kept.
    pub sample_ratio: f64,
}

/// Flushes the spans still queued for export when dropped (at the end of `main`).
#[must_use = "dropping the guard at once stops the trace export"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. A second call (tests, `dev`) keeps the first one.
pub fn init(s: Settings<'_>) -> Guard {
    let level = s.level;
    let log_filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,ghostworks={level},ghostworks_api={level},ghostworks_db={level},\
             ghostworks_worker={level},ghostworks_web={level},access={level}"
        ))
    });
    let logs = match s.format {
        Format::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        Format::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let provider = s.otlp_endpoint.and_then(|endpoint| {
        match tracer_provider(endpoint, s.service, s.environment, s.sample_ratio) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("OPENTELEMETRY_ENDPOINT: traces disabled, the exporter failed: {e}");
                None
            }
        }
    });
    let traces = provider.as_ref().map(|p| {
        // Without context activation a span starts at its first child, not when first entered,
        // so the request span can still take its route as its name once routing is done.
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("ghostworks"))
            .with_context_activation(false)
    });
    // One global filter rather than a filter per layer: with per-layer filters, spans created
    // right after an event every layer declined were lost to the trace exporter.
    let _ = tracing_subscriber::registry()
        .with(filter::Enabled::new(log_filter))
        .with(logs)
        .with(timings::Timings)
        .with(traces)
        .try_init();
    Guard { provider }
}

fn tracer_provider(
    endpoint: &str,
    service: &'static str,
    environment: &str,
    ratio: f64,
) -> Result<SdkTracerProvider, String> {
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    // The exporter's reqwest client needs rustls' provider; and the blocking client refuses to
    // be built on an async runtime's thread.
    http_client::install_tls_provider();
    let exporter = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_timeout(Duration::from_secs(3))
            .build()
    })
    .join()
    .map_err(|_| "the exporter thread panicked".to_string())?
    .map_err(|e| e.to_string())?;
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attribute(opentelemetry::KeyValue::new(
            "deployment.environment.name",
            environment.to_string(),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            ratio,
        ))))
        .with_resource(resource)
        .build())
}
