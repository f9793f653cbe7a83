//! The one error type of the API and its one JSON shape:
//! `{"error", "message", "detail", "request_id", "timestamp"}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ghostworks_auth::AuthError;
use ghostworks_db::Unavailable;
use ghostworks_domain::{FieldError, ValidationErrors};
use serde::Serialize;

use crate::middleware::current_request_id;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("validation failed")]
    Validation(ValidationErrors),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("Request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    TooManyRequests { retry_after: u64, message: String },
    /// PostgreSQL could not serve the request (down, restarting, or the pool exhausted).
    #[error("The database is unavailable; retry shortly")]
    DatabaseUnavailable(Unavailable, #[source] sqlx::Error),
    /// The request needed more of the database than it may take: see [`Overload`].
    #[error("{}", .0.message())]
    Overloaded(Overload),
    /// Redis could not serve a request that must not go ahead without it (a login).
    #[error("{0}")]
    RedisUnavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Why a request was refused to protect the others: 503 with `Retry-After`, and unlike
/// [`ApiError::DatabaseUnavailable`] never retried by the server (the retry would cost as much).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overload {
    /// A statement ran past its timeout (SQLSTATE 57014): `SEARCH_TIMEOUT_MS` for listings and
    /// searches, the connection's 30 s for the rest.
    StatementTimeout,
    /// Every place in the search bulkhead (`SEARCH_CONCURRENCY`) stayed taken for
    /// `SEARCH_TIMEOUT_MS`.
    SearchesBusy,
}

impl Overload {
    fn code(self) -> &'static str {
        match self {
            Overload::StatementTimeout => "statement_timeout",
            Overload::SearchesBusy => "searches_busy",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Overload::StatementTimeout => "The query took longer than allowed and was cancelled; narrow it (a rarer word, a tag, a time range) or retry shortly",
            Overload::SearchesBusy => "Too many searches are running; retry shortly",
        }
    }
}

/// Seconds a client is asked to wait after an [`Overload`]: long enough for a burst to pass.
const OVERLOAD_RETRY_AFTER: u64 = 1;

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        ApiError::Unauthorized(msg.into())
    }

    pub fn forbidden(code: &'static str, msg: impl Into<String>) -> Self {
        ApiError::Forbidden {
            code,
            message: msg.into(),
        }
    }

    pub fn field(e: FieldError) -> Self {
        ApiError::Validation(e.into())
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Forbidden { code, .. } => (StatusCode::FORBIDDEN, code),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded"),
            DatabaseUnavailable(..) | RedisUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
            }
            Overloaded(why) => (StatusCode::SERVICE_UNAVAILABLE, why.code()),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_server_error"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some("57014") {
                return ApiError::Overloaded(Overload::StatementTimeout);
            }
        }
        match ghostworks_db::unavailable(&e) {
            Some(why) => {
                if why == Unavailable::ConnectionLost {
                    ghostworks_db::retire_connections();
                }
                ApiError::DatabaseUnavailable(why, e)
            }
            None => ApiError::Internal(e.into()),
        }
    }
}

impl From<ghostworks_db::DbError> for ApiError {
    fn from(e: ghostworks_db::DbError) -> Self {
        match e {
            ghostworks_db::DbError::Sqlx(e) => e.into(),
            conflict => ApiError::Internal(conflict.into()),
        }
    }
}

/// Seconds a client is asked to wait after a 503 for an unavailable dependency: about what a
/// PostgreSQL or Redis restart takes.
const DEPENDENCY_RETRY_AFTER: u64 = 2;

/// Set on the response of a request that failed because a dependency was unavailable, for
/// the layer that counts such failures and retries idempotent reads
/// ([`crate::middleware::dependency_failures`]).
#[derive(Debug, Clone, Copy)]
pub struct DependencyFailure {
    pub dependency: &'static str,
    pub why: Unavailable,
}

/// The auth service's refusals, as the API answers them.
impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        use AuthError::*;
        match e {
            Validation(errors) => ApiError::Validation(errors),
            InvalidResetToken | InvalidVerificationToken => ApiError::BadRequest(e.to_string()),
            InvalidCredentials | DemoAccount | Inactive | Token(_) | RefreshRevoked
            | RefreshReused | OtherSession | UnknownUser => ApiError::Unauthorized(e.to_string()),
            EmailNotVerified => ApiError::forbidden("email_not_verified", e.to_string()),
            LockedOut { retry_after } => ApiError::TooManyRequests {
                retry_after,
                message: e.to_string(),
            },
            LockoutUnavailable => ApiError::RedisUnavailable(e.to_string()),
            Db(e) => e.into(),
            Internal(e) => ApiError::Internal(e),
        }
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::Validation(e)
    }
}

/// The one error body; every error response of the OpenAPI document names this schema.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `validation_error`, `insufficient_role`, `not_found`, ...
    pub error: String,
    pub message: String,
    pub detail: Detail,
    /// The `X-Request-ID` of the request, to quote when reporting a problem.
    pub request_id: Option<String>,
    pub timestamp: String,
}

/// The message again (what the original's clients read), or for 422 every field error.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Detail {
    Message(String),
    Fields(Vec<FieldError>),
}

/// The JSON error body for `status` with a stable `code`.
pub fn error_body(status: StatusCode, code: &str, message: &str, detail: Detail) -> Response {
    let body = ErrorBody {
        error: code.to_string(),
        message: message.to_string(),
        detail,
        request_id: current_request_id(),
        timestamp: crate::dto::now_rfc3339(),
    };
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let (message, detail) = match &self {
            ApiError::Validation(errors) => {
                let first = errors.0.first().map(|e| e.msg.clone()).unwrap_or_default();
                (
                    format!("Invalid input: {first}"),
                    Detail::Fields(errors.0.clone()),
                )
            }
            // Never expose internals; the request id ties the client's report to the log line.
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "request failed");
                (
                    "An unexpected error occurred".to_string(),
                    Detail::Message("An unexpected error occurred".into()),
                )
            }
            ApiError::DatabaseUnavailable(_, e) => {
                tracing::warn!(error = %e, "database unavailable");
                (self.to_string(), Detail::Message(self.to_string()))
            }
            other => (other.to_string(), Detail::Message(other.to_string())),
        };
        let mut response = error_body(status, code, &message, detail);
        match self {
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
            }
            ApiError::Overloaded(why) => {
                tracing::warn!(reason = why.code(), "request refused to protect the others");
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(OVERLOAD_RETRY_AFTER));
            }
            ApiError::DatabaseUnavailable(why, _) => {
                unavailable(&mut response, "postgres", why);
            }
            ApiError::RedisUnavailable(_) => {
                unavailable(&mut response, "redis", Unavailable::Unreachable);
            }
            _ => {}
        }
        response
    }
}

/// Marks a 503 for an unavailable dependency: when to retry, and what the metrics count.
fn unavailable(response: &mut Response, dependency: &'static str, why: Unavailable) {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(DEPENDENCY_RETRY_AFTER),
    );
    response
        .extensions_mut()
        .insert(DependencyFailure { dependency, why });
}
