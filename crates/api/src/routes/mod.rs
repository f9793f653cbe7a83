pub(crate) mod artifacts;
pub(crate) mod auth;
pub(crate) mod system;
pub(crate) mod workspaces;

use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::middleware::dependency_failures;
use crate::ratelimit::enforce;
use crate::AppState;

pub fn routes(state: AppState) -> Router<AppState> {
    let ws = "/api/v1/workspaces/{workspace_id}";
    let art = "/api/v1/workspaces/{workspace_id}/artifacts";
    Router::new()
        .route("/", get(system::root))
        .route("/health", get(system::health))
        .route("/health/ready", get(system::ready))
        .route("/health/detailed", get(system::detailed))
        .route("/metrics", get(system::metrics))
        .route("/openapi.json", get(system::openapi))
        .route("/docs", get(system::docs))
        .route("/docs/app.js", get(system::docs_js))
        .route("/api/v1/system/stats", get(system::stats))
        .route("/api/v1/auth/register", post(auth::register))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/refresh", post(auth::refresh))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/auth/verify-email", post(auth::verify_email))
        .route(
            "/api/v1/auth/resend-verification",
            post(auth::resend_verification),
        )
        .route(
            "/api/v1/auth/password-reset/request",
            post(auth::request_password_reset),
        )
        .route(
            "/api/v1/auth/password-reset/confirm",
            post(auth::confirm_password_reset),
        )
        // Both spellings: the original redirected the slash-less one, which broke its clients.
        .route(
            "/api/v1/workspaces",
            post(workspaces::create).get(workspaces::list),
        )
        .route(
            "/api/v1/workspaces/",
            post(workspaces::create).get(workspaces::list),
        )
        .route(ws, get(workspaces::get).put(workspaces::update))
        .route(
            &format!("{ws}/members"),
            get(workspaces::members).post(workspaces::add_member),
        )
        .route(
            &format!("{ws}/members/{{user_id}}/role"),
            put(workspaces::change_role),
        )
        .route(
            &format!("{ws}/members/{{user_id}}"),
            delete(workspaces::remove_member),
        )
        .route(&format!("{ws}/switch"), post(workspaces::switch))
        .route(&format!("{ws}/usage"), get(workspaces::usage))
        .route(art, post(artifacts::create).get(artifacts::list))
        // Registered before `{artifact_id}` matters in the original; axum prefers static segments anyway.
        .route(&format!("{art}/search/advanced"), get(artifacts::search))
        .route(&format!("{art}/stats"), get(artifacts::stats))
        .route(
            &format!("{art}/{{artifact_id}}"),
            get(artifacts::get)
                .put(artifacts::replace)
                .patch(artifacts::patch)
                .delete(artifacts::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            dependency_failures,
        ))
        .route_layer(axum::middleware::from_fn_with_state(state, enforce))
}
