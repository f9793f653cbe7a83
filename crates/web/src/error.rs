//! The one mapping from failures to pages.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use crate::api::ApiFailure;
use crate::views;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No session, or the API ended it: back to the login page.
    #[error("signed out")]
    SignedOut,
    #[error("CSRF token missing or wrong")]
    Csrf,
    #[error("form too large")]
    TooLarge,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Api(#[from] ApiFailure),
}

pub type WebResult<T> = Result<T, WebError>;

/// A page that only says what went wrong.
pub fn message_page(title: &str, message: &str) -> Markup {
    views::bare(
        title,
        html! {
            h1 { (title) }
            p role="alert" class="error" { (message) }
            p { a href="/" { "Home" } " · " a href="/workspaces" { "Your workspaces" } }
        },
    )
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    (status, message_page(title, message)).into_response()
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignedOut => Redirect::to("/login?expired=1").into_response(),
            WebError::Csrf => page(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form is no longer valid (its security token is missing or stale). Go back, reload the page and submit it again.",
            ),
            WebError::TooLarge => page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too much data",
                "The form sent more data than this site accepts.",
            ),
            // A workspace or artifact the caller cannot see looks exactly like one that does
            // not exist, as in the API.
            WebError::NotFound => page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or you do not have access to it.",
            ),
            WebError::Api(e) if e.status == StatusCode::NOT_FOUND => WebError::NotFound.into_response(),
            WebError::Api(e) => {
                let status = if e.status.is_server_error() {
                    StatusCode::BAD_GATEWAY
                } else {
                    e.status
                };
                page(status, "Something went wrong", &e.summary())
            }
        }
    }
}
