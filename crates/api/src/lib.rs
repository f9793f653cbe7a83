//! The Ghostworks HTTP API: an axum router over PostgreSQL (tenant isolation by row-level
//! security) and Redis (rate limits). Handlers are thin: extract, call the domain or
//! repository, map the result; every error becomes the one JSON shape in [`error`].

pub mod bulkhead;
pub mod cookies;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod ratelimit;
pub mod replica;
pub(crate) mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use ghostworks_auth::tokens::Keys;
use ghostworks_auth::Auth;
use ghostworks_config::{Config, Environment};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::bulkhead::Searches;
use crate::extract::BodyLimit;
use crate::metrics::Metrics;
use crate::ratelimit::Limiter;
use crate::replica::Replica;

/// Everything a request needs, shared by all handlers.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    db: PgPool,
    auth: Auth<Limiter>,
    limiter: Limiter,
    metrics: Metrics,
    stats: routes::system::StatsCache,
    searches: Searches,
    replica: Option<Replica>,
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
        // redis-rs' default reconnection backs off for up to a minute between attempts, and
        // every command waits on it meanwhile: one attempt per command instead, each bounded,
        // so that while Redis is down the limiter fails open at once rather than stalling
        // every request.
        let reconnect = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(std::time::Duration::from_secs(1))
            .set_response_timeout(std::time::Duration::from_secs(1));
        let redis = redis::aio::ConnectionManager::new_with_config(redis, reconnect)
            .await
            .context("REDIS_URL: cannot connect to Redis")?;
        Self::new(config, db, redis).await
    }

    pub async fn new(
        config: Config,
        db: PgPool,
        redis: redis::aio::ConnectionManager,
    ) -> anyhow::Result<Self> {
        // A standby that is down at start-up is no reason to refuse to serve: its pool
        // connects lazily, and a read that finds no connection to it quickly (down, or every
        // connection busy) goes to the primary.
        let replica = match &config.database_replica_url {
            Some(url) => Some(Replica::new(
                ghostworks_db::connect_lazy(
                    url.expose(),
                    config.database_pool_size,
                    "ghostworks-api-replica",
                    std::time::Duration::from_millis(200),
                )
                .context("DATABASE_REPLICA_URL: not a valid PostgreSQL URL")?,
                redis.clone(),
                &config.redis_key_prefix,
            )),
            None => None,
        };
        let limiter = Limiter::new(redis, &config.redis_key_prefix, config.rate_limit_enabled);
        let metrics = Metrics::new(config.metrics_tenant_labels);
        let settings = ghostworks_auth::Settings {
            refuse_demo_accounts: config.common.environment == Environment::Production,
            access_token_ttl: config.access_token_ttl,
            refresh_token_ttl: config.refresh_token_ttl,
            require_email_verification: config.require_email_verification,
            login_max_failures: config.accounts.login_max_failures,
            login_lockout: config.accounts.login_lockout,
        };
        let auth = Auth::new(
            db.clone(),
            config.jwt_secret.expose().as_bytes(),
            settings,
            limiter.clone(),
            metrics.auth_counters(),
        )
        .await?;
        Ok(AppState(Arc::new(Inner {
            stats: Default::default(),
            searches: Searches::new(config.search_concurrency, config.search_timeout),
            replica,
            auth,
            limiter,
            metrics,
            config,
            db,
        })))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn db(&self) -> &PgPool {
        &self.0.db
    }
    pub fn auth(&self) -> &Auth<Limiter> {
        &self.0.auth
    }
    pub fn keys(&self) -> &Keys {
        self.0.auth.keys()
    }
    pub fn limiter(&self) -> &Limiter {
        &self.0.limiter
    }
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    pub fn searches(&self) -> &Searches {
        &self.0.searches
    }
    /// The standby reads may go to (`DATABASE_REPLICA_URL`), if any.
    pub fn replica(&self) -> Option<&Replica> {
        self.0.replica.as_ref()
    }
    pub(crate) fn stats_cache(&self) -> &routes::system::StatsCache {
        &self.0.stats
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
    let faults = middleware::Faults {
        error_ratio: cfg.fault_error_ratio,
        latency: cfg.fault_latency,
    };
    if let Some(mib) = cfg.fault_ballast_mib {
        // Written, so resident, and kept for the life of the process.
        Box::leak(vec![1u8; mib << 20].into_boxed_slice());
    }
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
            middleware::inject_faults(faults, req, next)
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
