use std::time::Instant;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::dto::{now_rfc3339, SystemStatsOut};
use crate::error::{ApiError, ApiResult};
use crate::AppState;

static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

pub async fn root() -> Json<Value> {
    Json(
        json!({"message": "Ghostworks SaaS API", "version": env!("CARGO_PKG_VERSION"), "docs": "/docs", "health": "/health", "metrics": "/metrics"}),
    )
}

/// Liveness: answers while the process can serve, without touching any dependency.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200)))]
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    STARTED.get_or_init(Instant::now);
    Json(
        json!({"status": "healthy", "timestamp": now_rfc3339(), "version": env!("CARGO_PKG_VERSION"), "environment": state.config().common.environment.as_str()}),
    )
}

async fn dependencies(state: &AppState) -> (bool, Value) {
    let (db, redis) = tokio::join!(ghostworks_db::ping(state.db()), state.limiter().ping());
    let pool = state.db();
    let db = match db {
        Ok(t) => json!({"status": "healthy", "response_time_ms": t.as_secs_f64() * 1000.0,
            "connection_pool": {"size": pool.size(), "idle": pool.num_idle(), "max": pool.options().get_max_connections()}}),
        Err(e) => {
            tracing::warn!(error = %e, "database health check failed");
            json!({"status": "unhealthy", "error": "database unreachable"})
        }
    };
    let redis = match redis {
        Ok(t) => json!({"status": "healthy", "response_time_ms": t.as_secs_f64() * 1000.0}),
        Err(e) => {
            tracing::warn!(error = %e, "redis health check failed");
            json!({"status": "unhealthy", "error": "redis unreachable"})
        }
    };
    let ok = db["status"] == "healthy" && redis["status"] == "healthy";
    (ok, json!({"database": db, "redis": redis}))
}

/// Readiness: 200 only when PostgreSQL and Redis answer.
#[utoipa::path(get, path = "/health/ready", tag = "system", responses((status = 200), (status = 503)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (ok, services) = dependencies(&state).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ok { "ready" } else { "not_ready" }, "services": services})),
    )
}

#[utoipa::path(get, path = "/health/detailed", tag = "system", responses((status = 200), (status = 503)))]
pub async fn detailed(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (ok, services) = dependencies(&state).await;
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let uptime = STARTED.get_or_init(Instant::now).elapsed().as_secs_f64();
    (
        status,
        Json(json!({
            "status": if ok { "healthy" } else { "unhealthy" },
            "timestamp": now_rfc3339(),
            "version": env!("CARGO_PKG_VERSION"),
            "environment": state.config().common.environment.as_str(),
            "uptime_seconds": uptime,
            "services": services,
        })),
    )
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    if !state.config().metrics_enabled {
        return ApiError::NotFound("Metrics are disabled (METRICS_ENABLED=false)".into())
            .into_response();
    }
    // Bounded, so a scrape still answers (with the dependency down) when a ping would hang.
    let limit = std::time::Duration::from_secs(2);
    let (db, redis) = tokio::join!(
        tokio::time::timeout(limit, ghostworks_db::ping(state.db())),
        tokio::time::timeout(limit, state.limiter().ping())
    );
    let m = state.metrics();
    m.dependency_up("postgres", matches!(db, Ok(Ok(_))));
    m.dependency_up("redis", matches!(redis, Ok(Ok(_))));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(state.db()),
    )
        .into_response()
}

/// Global counts (no tenant data). 503 when the database is down: never invented numbers.
#[utoipa::path(get, path = "/api/v1/system/stats", tag = "system", responses((status = 200, body = SystemStatsOut), (status = 503)))]
pub async fn stats(State(state): State<AppState>) -> ApiResult<Json<SystemStatsOut>> {
    let (users, workspaces, artifacts, active_artifacts) =
        ghostworks_db::system_stats(state.db()).await.map_err(|e| {
            tracing::warn!(error = %e, "system stats unavailable");
            ApiError::Unavailable("Statistics are unavailable right now".into())
        })?;
    Ok(Json(SystemStatsOut {
        users,
        workspaces,
        artifacts,
        active_artifacts,
        timestamp: now_rfc3339(),
    }))
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        Json(crate::openapi::spec()),
    )
}

const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A self-contained API reference rendered from /openapi.json (no CDN: works offline).
pub async fn docs() -> impl IntoResponse {
    (
        [(header::CONTENT_SECURITY_POLICY, DOCS_CSP)],
        Html(include_str!("../../assets/docs.html")),
    )
}

pub async fn docs_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/docs.js"),
    )
}
