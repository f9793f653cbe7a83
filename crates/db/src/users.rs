//! Users are global (not tenant-scoped): a person logs in before choosing a workspace.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::{DbError, DbResult, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub hashed_password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_verified: bool,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, hashed_password, first_name, last_name, is_verified, is_active, created_at, updated_at";

pub struct NewUser<'a> {
    pub email: &'a str,
    pub hashed_password: &'a str,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub is_verified: bool,
}

#[tracing::instrument(name = "users.insert", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn insert(db: impl PgExecutor<'_>, u: &NewUser<'_>) -> DbResult<User> {
    sqlx::query_as(&format!(
        "INSERT INTO users (id, email, hashed_password, first_name, last_name, is_verified) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(u.email)
    .bind(u.hashed_password)
    .bind(u.first_name)
    .bind(u.last_name)
    .bind(u.is_verified)
    .fetch_one(db)
    .await
    .map_err(DbError::from_sqlx)
}

#[tracing::instrument(name = "users.by_email", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn by_email(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
        .bind(email)
        .fetch_optional(db)
        .await
}

#[tracing::instrument(name = "users.by_id", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The user behind an access token, provided the token's session is still live.
#[tracing::instrument(name = "users.by_id_with_live_session", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn by_id_with_live_session(
    pool: &PgPool,
    id: Uuid,
    session: Uuid,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users u WHERE u.id = $1 AND EXISTS \
         (SELECT 1 FROM sessions s WHERE s.id = $2 AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now())"
    ))
    .bind(id)
    .bind(session)
    .fetch_optional(pool)
    .await
}

/// Begins the tenant-scoped transaction of an authenticated request (as [`crate::scoped`])
/// and finds its caller in the same round trip. `users` and `sessions` carry no row-level
/// security, so the lookup does not depend on the settings the statement makes; they are made
/// only when the user and live session are found (otherwise the caller is refused and the
/// transaction dropped). A `statement_timeout` applies to the transaction's later statements
/// (the connection's own otherwise).
#[tracing::instrument(name = "users.scoped_with_live_session", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn scoped_with_live_session(
    pool: &PgPool,
    tenant: Uuid,
    id: Uuid,
    session: Uuid,
    statement_timeout: Option<Duration>,
) -> sqlx::Result<(Tx, Option<User>)> {
    let mut tx = pool.begin().await?;
    let user = sqlx::query_as(&format!(
        "SELECT set_config('app.current_tenant_id', $1, true), set_config('app.current_user_id', $2, true), \
         set_config('statement_timeout', coalesce($5, current_setting('statement_timeout')), true), {COLUMNS} \
         FROM users u WHERE u.id = $3 AND EXISTS \
         (SELECT 1 FROM sessions s WHERE s.id = $4 AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now())"
    ))
    .bind(tenant.to_string())
    .bind(id.to_string())
    .bind(id)
    .bind(session)
    .bind(statement_timeout.map(crate::milliseconds))
    .fetch_optional(&mut *tx)
    .await?;
    Ok((tx, user))
}

#[tracing::instrument(name = "users.mark_verified", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn mark_verified(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET is_verified = true WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "users.set_password", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn set_password(db: impl PgExecutor<'_>, id: Uuid, hashed: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET hashed_password = $2 WHERE id = $1")
        .bind(id)
        .bind(hashed)
        .execute(db)
        .await?;
    Ok(())
}
