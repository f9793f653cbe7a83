//! The worker's own HTTP endpoints: `/metrics` (Prometheus) and `/health` (200 while the
//! database answers, else 503).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use sqlx::PgPool;

use crate::metrics::Metrics;

#[derive(Clone)]
struct HttpState {
    pool: PgPool,
    metrics: Arc<Metrics>,
}

/// Serves [`router`] on `listener` until the task is dropped.
pub async fn serve(
    worker: &crate::Worker,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    axum::serve(listener, router(worker)).await
}

pub fn router(worker: &crate::Worker) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(HttpState {
            pool: worker.pool().clone(),
            metrics: worker.metrics(),
        })
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    match s.metrics.render(&s.pool).await {
        Ok(text) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            text,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the queue gauges could not be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                "database unreachable\n".to_string(),
            )
        }
    }
}

async fn health(State(s): State<HttpState>) -> impl IntoResponse {
    match ghostworks_db::ping(&s.pool).await {
        Ok(t) => (
            StatusCode::OK,
            Json(json!({"status": "healthy", "database_ms": t.as_secs_f64() * 1000.0})),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "health: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unhealthy", "error": "database unreachable"})),
            )
        }
    }
}
