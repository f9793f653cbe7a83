//! The web role's own Prometheus metrics: the API's names, labelled `service="web"` so one
//! dashboard tells the two apart.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ghostworks_telemetry::HttpMetrics;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::Web;

pub struct Metrics {
    registry: Registry,
    http: HttpMetrics,
}

impl Metrics {
    pub fn new() -> Self {
        let labels = HashMap::from([("service".to_string(), "web".to_string())]);
        let registry = Registry::new_custom(None, Some(labels)).expect("valid registry labels");
        let http = HttpMetrics::new(&registry);
        Self { registry, http }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding never fails");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

pub async fn track(State(web): State<Web>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let response = next.run(req).await;
    web.metrics.http.observe(
        &method,
        &endpoint,
        response.status().as_str(),
        started.elapsed(),
    );
    response
}
