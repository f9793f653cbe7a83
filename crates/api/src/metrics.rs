//! Prometheus metrics, keeping the original's names and labels so its dashboards and alerts
//! keep working (with `endpoint` the route template instead of the raw path).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub http_in_progress: IntGaugeVec,
    pub registrations: IntCounter,
    pub auth_attempts: IntCounterVec,
    pub artifacts_created: IntCounter,
    pub workspace_operations: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub cross_tenant_denied: IntCounter,
    pub refresh_reuse: IntCounter,
    pub jobs_enqueued: IntCounterVec,
}

impl Metrics {
    pub fn new(environment: &str) -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route template and status code",
            ),
            &["method", "endpoint", "status_code"],
        )
        .unwrap();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "endpoint"],
        )
        .unwrap();
        let http_in_progress = IntGaugeVec::new(
            Opts::new("http_requests_in_progress", "HTTP requests being served"),
            &["method", "endpoint"],
        )
        .unwrap();
        let registrations =
            IntCounter::new("user_registrations_total", "Users registered").unwrap();
        let auth_attempts = IntCounterVec::new(
            Opts::new("authentication_attempts_total", "Login attempts by outcome"),
            &["success", "method"],
        )
        .unwrap();
        let artifacts_created =
            IntCounter::new("artifacts_created_total", "Artifacts created").unwrap();
        let workspace_operations = IntCounterVec::new(
            Opts::new("workspace_operations_total", "Workspace operations by kind"),
            &["operation"],
        )
        .unwrap();
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "rate_limited_requests_total",
                "Requests refused by a rate limit or an account lockout",
            ),
            &["bucket"],
        )
        .unwrap();
        let cross_tenant_denied = IntCounter::new(
            "cross_tenant_denied_total",
            "Requests for a workspace the caller is not a member of",
        )
        .unwrap();
        let refresh_reuse = IntCounter::new(
            "refresh_token_reuse_total",
            "Replayed refresh tokens (their sessions were revoked)",
        )
        .unwrap();
        // The worker counts the jobs it queues under the same name: sum across processes.
        let jobs_enqueued = IntCounterVec::new(
            Opts::new("ghostworks_jobs_enqueued_total", "Jobs queued, by kind"),
            &["kind"],
        )
        .unwrap();
        let info = IntGaugeVec::new(
            Opts::new(
                "ghostworks_build_info",
                "Build and environment of this process",
            ),
            &["version", "service", "environment"],
        )
        .unwrap();
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), "ghostworks-api", environment])
            .set(1);
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(http_in_progress.clone()),
            Box::new(registrations.clone()),
            Box::new(auth_attempts.clone()),
            Box::new(artifacts_created.clone()),
            Box::new(workspace_operations.clone()),
            Box::new(rate_limited.clone()),
            Box::new(cross_tenant_denied.clone()),
            Box::new(refresh_reuse.clone()),
            Box::new(jobs_enqueued.clone()),
            Box::new(info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            http_in_progress,
            registrations,
            auth_attempts,
            artifacts_created,
            workspace_operations,
            rate_limited,
            cross_tenant_denied,
            refresh_reuse,
            jobs_enqueued,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition format is UTF-8")
    }
}
