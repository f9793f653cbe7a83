//! `ghostworks web`: the server-rendered web application. Every page is a thin handler over
//! the HTTP API (the one source of truth); the session is the API's tokens in httpOnly
//! cookies; every POST carries a double-submit CSRF token; script is optional.

pub mod api;
pub mod assets;
mod error;
mod metrics;
pub mod ops;
mod pages;
mod session;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use ghostworks_config::WebConfig;

pub use error::{WebError, WebResult};
pub use session::{ACCESS_COOKIE, CSRF_COOKIE, CSRF_FIELD, CSRF_HEADER, REFRESH_COOKIE};

/// Everything a handler needs, cheap to clone.
#[derive(Clone)]
pub struct Web {
    pub config: Arc<WebConfig>,
    pub api: api::Client,
    refresher: Arc<session::Refresher>,
    metrics: Arc<metrics::Metrics>,
    pub samples: Arc<ops::Samples>,
}

impl Web {
    pub fn new(config: WebConfig) -> Self {
        Self {
            api: api::Client::new(&config.api_url),
            config: Arc::new(config),
            refresher: Arc::default(),
            metrics: Arc::new(metrics::Metrics::new()),
            samples: Arc::default(),
        }
    }
}

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// The API's secure headers plus a strict CSP; every page is `no-store`, so after logout the
/// back button finds nothing private in the cache.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_static = req.uri().path().starts_with("/static/");
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin"),
    ];
    for (k, v) in set {
        h.insert(k, HeaderValue::from_static(v));
    }
    for (k, v) in [
        (
            "permissions-policy",
            "geolocation=(), microphone=(), camera=(), payment=()",
        ),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    }
    r
}

pub fn router(web: Web) -> Router {
    let ws = "/w/{workspace_id}";
    Router::new()
        .route("/", get(pages::auth::landing))
        .route(
            "/register",
            get(pages::auth::register_page).post(pages::auth::register),
        )
        .route(
            "/verify-email",
            get(pages::auth::verify_page).post(pages::auth::verify),
        )
        .route(
            "/resend-verification",
            get(pages::auth::resend_page).post(pages::auth::resend),
        )
        .route(
            "/login",
            get(pages::auth::login_page).post(pages::auth::login),
        )
        .route("/logout", post(pages::auth::logout))
        .route(
            "/forgot-password",
            get(pages::auth::forgot_page).post(pages::auth::forgot),
        )
        .route(
            "/reset-password",
            get(pages::auth::reset_page).post(pages::auth::reset),
        )
        .route(
            "/workspaces",
            get(pages::workspaces::list).post(pages::workspaces::create),
        )
        .route("/workspaces/{workspace_id}", get(pages::workspaces::open))
        .route("/switch", get(pages::workspaces::switch))
        .route(ws, get(pages::workspaces::open))
        .route(
            &format!("{ws}/settings"),
            get(pages::workspaces::settings).post(pages::workspaces::save_settings),
        )
        .route(
            &format!("{ws}/members"),
            get(pages::workspaces::members).post(pages::workspaces::invite),
        )
        .route(
            &format!("{ws}/members/{{user_id}}/role"),
            post(pages::workspaces::change_role),
        )
        .route(
            &format!("{ws}/members/{{user_id}}/remove"),
            post(pages::workspaces::remove),
        )
        .route(
            &format!("{ws}/artifacts"),
            get(pages::artifacts::list).post(pages::artifacts::create),
        )
        .route(&format!("{ws}/artifacts/new"), get(pages::artifacts::new))
        .route(
            &format!("{ws}/artifacts/{{artifact_id}}"),
            get(pages::artifacts::detail).post(pages::artifacts::update),
        )
        .route(
            &format!("{ws}/artifacts/{{artifact_id}}/edit"),
            get(pages::artifacts::edit),
        )
        .route(
            &format!("{ws}/artifacts/{{artifact_id}}/delete"),
            post(pages::artifacts::delete),
        )
        .route("/tour", get(pages::system::tour))
        .route("/ops", get(pages::system::ops))
        .route("/health/live", get(pages::system::live))
        .route("/health/ready", get(pages::system::ready))
        .route("/metrics", get(pages::system::metrics))
        .route("/static/{name}", get(assets::serve))
        .route_layer(from_fn_with_state(web.clone(), metrics::track))
        .fallback(pages::system::not_found)
        .layer(from_fn_with_state(web.clone(), session::layer))
        .layer(from_fn(security_headers))
        .with_state(web)
}

/// Serves the web app on `listener` until `shutdown` resolves, sampling the API's metrics for
/// the operations dashboard meanwhile.
pub async fn serve(
    web: Web,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sampler = tokio::spawn(ops::sample_forever(web.clone(), Duration::from_secs(5)));
    let app = router(web).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    sampler.abort();
    result
}

/// `ghostworks web`: binds WEB_BIND and serves until `shutdown`.
pub async fn run(
    config: WebConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let bind = config.bind;
    let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("WEB_BIND: cannot listen on {bind}: {e}"))
    })?;
    tracing::info!(%bind, api = %config.api_url, "serving the web application");
    serve(Web::new(config), listener, shutdown).await
}
