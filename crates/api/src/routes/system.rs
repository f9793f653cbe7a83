use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use ghostworks_db::workspaces;
use uuid::Uuid;

use crate::dto::{now_rfc3339, SystemStatsOut, WorkspaceStatsOut};
use crate::error::{ApiError, ApiResult};
use crate::extract::AuthUser;
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

/// Pings PostgreSQL and Redis at once, each bounded so that a probe or a scrape still answers
/// when a dependency hangs, and records in the metrics whether each answered.
async fn ping_dependencies(state: &AppState) -> (Option<Duration>, Option<Duration>) {
    let limit = Duration::from_secs(2);
    let (db, redis) = tokio::join!(
        tokio::time::timeout(limit, ghostworks_db::ping(state.db())),
        tokio::time::timeout(limit, state.limiter().ping())
    );
    let (db, redis) = (answered("database", db), answered("redis", redis));
    let m = state.metrics();
    m.dependency_up("postgres", db.is_some());
    m.dependency_up("redis", redis.is_some());
    (db, redis)
}

fn answered<E: std::fmt::Display>(
    what: &str,
    ping: Result<Result<Duration, E>, tokio::time::error::Elapsed>,
) -> Option<Duration> {
    match ping {
        Ok(Ok(t)) => Some(t),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "{what} health check failed");
            None
        }
        Err(_) => {
            tracing::warn!("{what} health check timed out");
            None
        }
    }
}

async fn dependencies(state: &AppState) -> (bool, Value) {
    let (db, redis) = ping_dependencies(state).await;
    let pool = state.db();
    let ok = db.is_some() && redis.is_some();
    let db = match db {
        Some(t) => json!({"status": "healthy", "response_time_ms": t.as_secs_f64() * 1000.0,
            "connection_pool": {"size": pool.size(), "idle": pool.num_idle(), "max": pool.options().get_max_connections()}}),
        None => json!({"status": "unhealthy", "error": "database unreachable"}),
    };
    let redis = match redis {
        Some(t) => json!({"status": "healthy", "response_time_ms": t.as_secs_f64() * 1000.0}),
        None => json!({"status": "unhealthy", "error": "redis unreachable"}),
    };
    (ok, json!({"database": db, "redis": redis}))
}

/// Readiness: 200 only when PostgreSQL and Redis answer now (each ping bounded at 2 s), so it
/// turns 503 during an outage and back as soon as the database answers again.
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
    ping_dependencies(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(state.db()),
    )
        .into_response()
}

/// How long a caller's statistics are served from memory.
const STATS_TTL: Duration = Duration::from_secs(5);

/// Each caller's statistics of the last [`STATS_TTL`]: the tour page asks every 5 s from every
/// open tab, and counting is a scan per workspace.
#[derive(Default)]
pub(crate) struct StatsCache(Mutex<HashMap<Uuid, (Instant, SystemStatsOut)>>);

impl StatsCache {
    fn get(&self, user: Uuid) -> Option<SystemStatsOut> {
        let map = self.0.lock().expect("stats cache");
        map.get(&user)
            .filter(|(at, _)| at.elapsed() < STATS_TTL)
            .map(|(_, stats)| stats.clone())
    }

    fn put(&self, user: Uuid, stats: SystemStatsOut) {
        let mut map = self.0.lock().expect("stats cache");
        map.retain(|_, (at, _)| at.elapsed() < STATS_TTL);
        map.insert(user, (Instant::now(), stats));
    }
}

/// The caller's workspaces counted: members, artifacts, each and in total. Never another
/// workspace's figures, nor the installation's.
#[utoipa::path(get, path = "/api/v1/system/stats", tag = "system", security(("bearer" = [])),
    description = "Figures of the workspaces the caller is an active member of, as of `timestamp` (served from memory for up to 5 s).",
    responses((status = 200, body = SystemStatsOut), (status = 401), (status = 503)))]
pub async fn stats(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<SystemStatsOut>> {
    if let Some(cached) = state.stats_cache().get(user.id()) {
        return Ok(Json(cached));
    }
    let mut tx = ghostworks_db::scoped(state.db(), None, Some(user.id())).await?;
    let mine = workspaces::memberships_of_user(&mut tx, user.id()).await?;
    let mut users = HashSet::new();
    let mut per_workspace = Vec::with_capacity(mine.len());
    // Each workspace's rows need its own scope; a user belongs to few workspaces.
    for (tenant, _) in mine {
        ghostworks_db::set_scope(&mut tx, Some(tenant), Some(user.id())).await?;
        if let Some(c) = workspaces::counts(&mut tx, tenant).await? {
            users.extend(c.members.iter().copied());
            per_workspace.push(WorkspaceStatsOut {
                workspace_id: tenant,
                name: c.name,
                members: c.members.len() as i64,
                artifacts: c.artifacts,
                active_artifacts: c.active_artifacts,
            });
        }
    }
    tx.commit().await?;
    let stats = SystemStatsOut {
        users: users.len() as i64,
        workspaces: per_workspace.len() as i64,
        artifacts: per_workspace.iter().map(|w| w.artifacts).sum(),
        active_artifacts: per_workspace.iter().map(|w| w.active_artifacts).sum(),
        per_workspace,
        timestamp: now_rfc3339(),
    };
    state.stats_cache().put(user.id(), stats.clone());
    Ok(Json(stats))
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
