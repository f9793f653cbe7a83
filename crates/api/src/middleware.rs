//! The request pipeline around every handler: request ids, the error envelope for responses
//! that did not come from a handler, client addresses, metrics and security headers.

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::{Body, HttpBody};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use ghostworks_config::Environment;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{error_body, DependencyFailure, Detail};
use crate::AppState;

tokio::task_local! {
    static REQUEST_ID: String;
}

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// The id of the request being served, for error bodies and audit rows.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// A caller-supplied id is kept when it is short and printable (it goes into logs); otherwise
/// a fresh UUID is used.
fn accept_request_id(v: Option<&HeaderValue>) -> String {
    v.and_then(|v| v.to_str().ok())
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        })
        .map(String::from)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// Outermost layer: assigns the request id, logs one access line, and gives every error
/// response that lacks a JSON body (router 404/405, timeouts, panics) the common error shape.
pub async fn request_context(req: Request, next: Next) -> Response {
    let id = accept_request_id(req.headers().get(&X_REQUEST_ID));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    // Every log line of the request carries these fields; the route, tenant and user are
    // recorded as they become known (track_metrics, the AuthUser and Ws extractors), and the
    // span is the request's span in the trace, a child of the caller's `traceparent`.
    let span = tracing::info_span!(
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        service = "api",
        request_id = %id,
        %method,
        %path,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        tenant_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace_id) = ghostworks_telemetry::adopt_remote_parent(&span, req.headers()) {
        span.record("trace_id", trace_id);
    }
    let mut response = REQUEST_ID
        .scope(
            id.clone(),
            async move { envelope(next.run(req).await) }.instrument(span.clone()),
        )
        .await;
    let status = response.status().as_u16();
    span.record("http.response.status_code", status);
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    span.in_scope(|| {
        tracing::info!(target: "access", status, duration_ms = started.elapsed().as_secs_f64() * 1000.0, "request served");
    });
    if let Ok(v) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(X_REQUEST_ID.clone(), v.clone());
        response.headers_mut().insert(X_CORRELATION_ID.clone(), v);
    }
    response
}

fn envelope(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("not_found", "Not Found".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => ("method_not_allowed", "Method Not Allowed".to_string()),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            "The request took too long and was cancelled".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("payload_too_large", "Request body is too large".to_string())
        }
        s if s.is_server_error() => (
            "internal_server_error",
            "An unexpected error occurred".to_string(),
        ),
        s => ("error", s.canonical_reason().unwrap_or("Error").to_string()),
    };
    // Only the body is replaced: the headers the inner layers set (security headers, CORS,
    // Cache-Control, Allow) stay.
    let (mut parts, _) = response.into_parts();
    let (out, body) =
        error_body(status, code, &message, Detail::Message(message.clone())).into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(out.headers);
    Response::from_parts(parts, body)
}

/// The client's address, as TRUSTED_PROXIES resolves it from the peer and `X-Forwarded-For`.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

pub async fn client_ip(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let xff = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let ip = state.config().trusted_proxies.client_ip(peer, xff);
    req.extensions_mut().insert(ClientIp(ip));
    next.run(req).await
}

/// Golden-signal metrics per route template (never the raw path: ids would explode the
/// label set).
pub async fn track_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let span = tracing::Span::current();
    span.record("http.route", endpoint.as_str());
    span.record("otel.name", format!("{method} {endpoint}"));
    if let Some(trace_id) = ghostworks_telemetry::trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    if !state.config().metrics_enabled {
        return next.run(req).await;
    }
    let m = &state.metrics();
    let in_progress = m.http_in_progress.with_label_values(&[&method, &endpoint]);
    in_progress.inc();
    let started = Instant::now();
    let (response, tenant) = match &m.tenant_requests {
        Some(_) => {
            TENANT
                .scope(Cell::new(None), async move {
                    let response = next.run(req).await;
                    (response, TENANT.with(Cell::get))
                })
                .await
        }
        None => (next.run(req).await, None),
    };
    in_progress.dec();
    m.http.observe(
        &method,
        &endpoint,
        response.status().as_str(),
        started.elapsed(),
    );
    if let Some(size) = response.body().size_hint().exact() {
        m.http_response_size
            .with_label_values(&[&method, &endpoint])
            .observe(size as f64);
    }
    if let (Some(counter), Some(tenant)) = (&m.tenant_requests, tenant) {
        let class = format!("{}xx", response.status().as_u16() / 100);
        counter
            .with_label_values(&[&tenant.to_string(), &class])
            .inc();
    }
    response
}

/// Counts the requests that failed on an unavailable dependency, and serves a GET or HEAD
/// whose database connection was lost once more: the failure retired the pool's older
/// connections, so the retry runs on a fresh one. Writes are answered as they failed (503):
/// they may have reached the database before the connection broke, so the client decides.
pub async fn dependency_failures(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let again = matches!(parts.method, Method::GET | Method::HEAD).then(|| parts.clone());
    let response = next.clone().run(Request::from_parts(parts, body)).await;
    match (note_failure(&state, &response), again) {
        (Some(ghostworks_db::Unavailable::ConnectionLost), Some(parts)) => {
            let response = next.run(Request::from_parts(parts, Body::empty())).await;
            note_failure(&state, &response);
            response
        }
        _ => response,
    }
}

fn note_failure(state: &AppState, response: &Response) -> Option<ghostworks_db::Unavailable> {
    let failure = response.extensions().get::<DependencyFailure>()?;
    let m = state.metrics();
    m.dependency_errors
        .with_label_values(&[failure.dependency])
        .inc();
    m.dependency_up(failure.dependency, false);
    Some(failure.why)
}

tokio::task_local! {
    /// The workspace of the request, for the per-tenant counter (set by the Ws extractor).
    static TENANT: Cell<Option<Uuid>>;
}

/// Notes the request's workspace for the per-tenant counter, when that counter is on.
pub fn note_tenant(id: Uuid) {
    let _ = TENANT.try_with(|t| t.set(Some(id)));
}

const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Security headers on every response. A handler may set its own CSP (the docs page does).
pub async fn security_headers(
    State(state): State<AppState>,
    req: Request<Body>,
    next: Next,
) -> Response {
    let is_api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("geolocation=(), microphone=(), camera=(), payment=()"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        );
    }
    if is_api && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config().common.environment == Environment::Production {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    h.remove(header::SERVER);
    response
}

/// Faults the configuration asks for (development only), for rehearsing a deploy's analysis.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    pub error_ratio: Option<f64>,
    pub latency: Option<std::time::Duration>,
}

/// Delays the `/api/` requests by `faults.latency` and fails `faults.error_ratio` of them with
/// 503 (health and metrics stay truthful): for rehearsing a deploy's automatic rollback.
pub async fn inject_faults(faults: Faults, req: Request, next: Next) -> Response {
    use rand::Rng;
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    if let Some(delay) = faults.latency {
        tokio::time::sleep(delay).await;
    }
    match faults.error_ratio {
        Some(r) if rand::thread_rng().gen_bool(r.min(1.0)) => {
            let mut resp = Response::new(Body::from("injected fault"));
            *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            resp
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_sanitised() {
        assert_eq!(
            accept_request_id(Some(&HeaderValue::from_static("abc-123"))),
            "abc-123"
        );
        assert_ne!(
            accept_request_id(Some(&HeaderValue::from_static("bad id"))),
            "bad id"
        );
        assert_eq!(accept_request_id(None).len(), 36);
    }
}
