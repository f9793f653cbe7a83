//! The Ghostworks HTTP API: an axum router over PostgreSQL (tenant isolation by row-level
//! security) and Redis (rate limits). Handlers are thin: extract, call the domain or
//! repository, map the result; every error becomes the one JSON shape in [`error`].

pub mod auth;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod ratelimit;
pub(crate) mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use ghostworks_config::Config;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::extract::BodyLimit;
use crate::metrics::Metrics;
use crate::ratelimit::Limiter;

/// Everything a request needs, shared by all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    db: PgPool,
    keys: auth::tokens::Keys,
    limiter: Limiter,
    metrics: Metrics,
    dummy_hash: String,
}

impl AppState {
    /// Connects to PostgreSQL and Redis (failing fast, with the variable to fix, when either
    /// is unreachable).
    pub async fn connect(config: Config) -> anyhow::Result<Self> {
        let db = ghostworks_db::connect(
            config.database_url.expose(),
            config.database_pool_size,
            "ghostworks-api",
        )
        .await
        .context("DATABASE_URL: cannot connect to PostgreSQL")?;
        let redis = redis::Client::open(config.redis_url.expose())
            .context("REDIS_URL: not a valid Redis URL")?;
        let redis = redis::aio::ConnectionManager::new(redis)
            .await
            .context("REDIS_URL: cannot connect to Redis")?;
        Self::new(config, db, redis).await
    }

    pub async fn new(
        config: Config,
        db: PgPool,
        redis: redis::aio::ConnectionManager,
    ) -> anyhow::Result<Self> {
        let dummy_hash = auth::password::hash(auth::random_token()).await?;
        Ok(AppState(Arc::new(Inner {
            keys: auth::tokens::Keys::new(config.jwt_secret.expose().as_bytes()),
            limiter: Limiter::new(redis, &config.redis_key_prefix, config.rate_limit_enabled),
            metrics: Metrics::new(config.metrics_tenant_labels),
            config,
            db,
            dummy_hash,
        })))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn db(&self) -> &PgPool {
        &self.0.db
    }
    pub fn keys(&self) -> &auth::tokens::Keys {
        &self.0.keys
    }
    pub fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    pub fn dummy_hash(&self) -> &str {
        &self.0.dummy_hash
    }
}

/// The full application: routes plus the middleware stack (outermost first: panic guard,
/// request id and error envelope, client address, metrics, security headers, CORS, timeout,
/// body limit).
pub fn router(state: AppState) -> Router {
    let cfg = state.config();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(
            cfg.cors_origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok()),
        ))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(extract::CSRF_HEADER),
        ])
        .expose_headers([
            header::ETAG,
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600));
    let body_limit = cfg.max_body_bytes;
    let fault_ratio = cfg.fault_error_ratio;
    #[allow(deprecated)] // TimeoutLayer::new: the status-code variant is not in every 0.6 release
    let timeout = TimeoutLayer::new(cfg.request_timeout);
    routes::routes(state.clone())
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyLimit(body_limit)))
        .layer(timeout)
        .layer(cors)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::inject_faults(fault_ratio, req, next)
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::track_metrics,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::client_ip,
        ))
        .layer(axum::middleware::from_fn(middleware::request_context))
        .layer(CatchPanicLayer::new())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then stops accepting and finishes in-flight requests.
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
