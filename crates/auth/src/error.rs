use ghostworks_db::DbError;
use ghostworks_domain::{FieldError, ValidationErrors};

use crate::tokens::TokenError;

/// Why an account operation was refused. The messages are the ones a client sees.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("validation failed")]
    Validation(ValidationErrors),
    #[error("Invalid or expired password reset token")]
    InvalidResetToken,
    #[error("Invalid or expired verification token")]
    InvalidVerificationToken,
    #[error("Invalid email or password")]
    InvalidCredentials,
    #[error("Demo credentials are disabled in production environments")]
    DemoAccount,
    #[error("Too many failed logins for this account. Retry in {retry_after} s.")]
    LockedOut { retry_after: u64 },
    /// The failed-login counter cannot be reached: a login now could not be counted.
    #[error("Login is unavailable for a moment; retry shortly")]
    LockoutUnavailable,
    #[error("User account is inactive")]
    Inactive,
    #[error("Verify your e-mail address before logging in")]
    EmailNotVerified,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("Refresh token expired or revoked")]
    RefreshRevoked,
    #[error("Refresh token reuse detected; the session has been revoked")]
    RefreshReused,
    #[error("The refresh token belongs to another session")]
    OtherSession,
    #[error("User not found or inactive")]
    UnknownUser,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AuthError {
    pub fn field(e: FieldError) -> Self {
        AuthError::Validation(e.into())
    }
}

impl From<ValidationErrors> for AuthError {
    fn from(e: ValidationErrors) -> Self {
        AuthError::Validation(e)
    }
}

impl From<sqlx::Error> for AuthError {
    fn from(e: sqlx::Error) -> Self {
        AuthError::Db(e.into())
    }
}
