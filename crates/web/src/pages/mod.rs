//! Page handlers: each reads the form or query, calls the API and renders. Forms that script
//! enhances (`data-optimistic`) get JSON back instead of a page; the outcome is the same.

pub mod artifacts;
pub mod auth;
pub mod system;
pub mod workspaces;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use maud::Markup;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::{ApiFailure, Call, Workspace};
use crate::error::{WebError, WebResult};
use crate::session::Session;
use crate::views::Nav;

/// Whether the request came from the page script (`X-Requested-With: fetch`).
pub struct Fetch(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for Fetch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Fetch(
            parts
                .headers
                .get("x-requested-with")
                .is_some_and(|v| v == "fetch"),
        ))
    }
}

/// Success: a redirect (POST-redirect-GET) for a plain form, JSON for the script.
pub fn saved(fetch: &Fetch, to: &str, extra: Value) -> Response {
    if fetch.0 {
        let mut body = json!({"redirect": to});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        Json(body).into_response()
    } else {
        Redirect::to(to).into_response()
    }
}

/// A refusal: the form again, with the user's input and the API's messages, or the same as
/// JSON for the script. A lapsed session still goes to the login page.
pub fn refused(
    fetch: &Fetch,
    err: WebError,
    extra: Value,
    page: impl FnOnce(&ApiFailure) -> Markup,
) -> Response {
    let WebError::Api(e) = err else {
        return err.into_response();
    };
    if fetch.0 {
        let mut body = json!({"message": e.summary(), "fields": e.fields, "code": e.code});
        if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
            b.extend(x);
        }
        (e.status, Json(body)).into_response()
    } else {
        let status = if e.status.is_server_error() {
            StatusCode::BAD_GATEWAY
        } else {
            e.status
        };
        (status, page(&e)).into_response()
    }
}

/// The workspace a page is about, and the caller's others for the switcher. A workspace the
/// caller is not a member of is a 404, exactly like one that does not exist.
pub struct InWorkspace {
    pub session: Session,
    pub workspace: Workspace,
    pub workspaces: Vec<Workspace>,
}

impl InWorkspace {
    pub async fn load(session: Session, id: Uuid) -> WebResult<Self> {
        // The caller's workspaces carry their role: one call serves the page and the switcher.
        let workspaces: Vec<Workspace> = session
            .call(Call::new(Method::GET, "/api/v1/workspaces"))
            .await?;
        let workspace = workspaces
            .iter()
            .find(|w| w.id == id)
            .cloned()
            .ok_or(WebError::NotFound)?;
        Ok(Self {
            workspace,
            workspaces,
            session,
        })
    }

    pub fn nav(&self) -> Nav<'_> {
        Nav {
            csrf: self.session.csrf(),
            signed_in: true,
            workspace: Some(&self.workspace),
            workspaces: &self.workspaces,
        }
    }

    pub fn base(&self) -> String {
        format!("/w/{}", self.workspace.id)
    }
}

pub fn nav(session: &Session) -> Nav<'_> {
    Nav {
        csrf: session.csrf(),
        signed_in: session.signed_in(),
        workspace: None,
        workspaces: &[],
    }
}
