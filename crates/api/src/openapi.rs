//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Ghostworks SaaS API", description = "Multi-tenant artifact catalog. Workspaces are isolated by PostgreSQL row-level security."),
    paths(
        routes::system::health, routes::system::ready, routes::system::detailed, routes::system::stats,
        routes::auth::register, routes::auth::login, routes::auth::refresh, routes::auth::logout, routes::auth::me,
        routes::auth::verify_email, routes::auth::resend_verification,
        routes::auth::request_password_reset, routes::auth::confirm_password_reset,
        routes::workspaces::create, routes::workspaces::list, routes::workspaces::get, routes::workspaces::update,
        routes::workspaces::members, routes::workspaces::add_member, routes::workspaces::change_role,
        routes::workspaces::remove_member, routes::workspaces::switch, routes::workspaces::usage,
        routes::artifacts::create, routes::artifacts::list, routes::artifacts::search, routes::artifacts::stats,
        routes::artifacts::get, routes::artifacts::replace, routes::artifacts::patch, routes::artifacts::delete,
    ),
    components(schemas(
        ghostworks_domain::artifact::SearchMode,
        ghostworks_domain::artifact::TagMode,
        ghostworks_domain::artifact::SortField,
        ghostworks_domain::artifact::SortOrder,
        ghostworks_domain::Role,
        ghostworks_domain::FieldError,
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}
