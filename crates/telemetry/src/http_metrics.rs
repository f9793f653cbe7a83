//! The HTTP metric family every server role exports under the same names and labels (the
//! original's, with `endpoint` the route template), so one dashboard reads the API and the web
//! app alike.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct HttpMetrics {
    /// `http_requests_total` by method, endpoint and status code.
    pub requests: IntCounterVec,
    /// `http_request_duration_seconds` by method and endpoint.
    pub duration: HistogramVec,
}

impl HttpMetrics {
    /// The family, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by method, route template and status code",
            ),
            &["method", "endpoint", "status_code"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route template",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "endpoint"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(duration.clone()))
            .expect("metric names are unique");
        Self { requests, duration }
    }

    /// Counts one served request and its duration.
    pub fn observe(&self, method: &str, endpoint: &str, status: &str, elapsed: Duration) {
        self.duration
            .with_label_values(&[method, endpoint])
            .observe(elapsed.as_secs_f64());
        self.requests
            .with_label_values(&[method, endpoint, status])
            .inc();
    }
}
