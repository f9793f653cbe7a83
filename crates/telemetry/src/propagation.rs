//! W3C trace context (`traceparent`) in and out: from callers' headers onto the request span,
//! and from the span that queues a job into the job's row, so the job's span continues the
//! same trace in the worker.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes a caller's trace (its `traceparent` header, when valid) the parent of `span`, and
/// returns that trace's id, so the request's logs correlate with the caller's trace even when
/// this process exports none. The span is not started here: its name may still change.
pub fn adopt_remote_parent(span: &Span, headers: &http::HeaderMap) -> Option<String> {
    adopt(
        span,
        TraceContextPropagator::new().extract(&Headers(headers)),
    )
}

/// The same for a stored `traceparent` value (a job queued inside a traced request).
pub fn adopt_traceparent(span: &Span, traceparent: &str) -> Option<String> {
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    adopt(span, TraceContextPropagator::new().extract(&carrier))
}

fn adopt(span: &Span, parent: Context) -> Option<String> {
    let remote = parent.span().span_context().clone();
    if !remote.is_valid() {
        return None;
    }
    let _ = span.set_parent(parent);
    Some(remote.trace_id().to_string())
}

/// The id of the trace `span` belongs to, when traces are exported. This starts the span in
/// the exporter, which fixes its name: call it once the name is final.
pub fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// `span`'s context as a `traceparent` value, when it is being traced.
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}
