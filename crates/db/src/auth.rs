//! Sessions, rotating refresh tokens, e-mail verification and password reset tokens. Token
//! identifiers are stored only as SHA-256 hashes: a copy of the database cannot be replayed as
//! credentials.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::Tx;

#[tracing::instrument(name = "auth.create_session", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn create_session(
    db: impl PgExecutor<'_>,
    user: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<Uuid> {
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(user)
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(id)
}

#[tracing::instrument(name = "auth.revoke_session", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn revoke_session(
    db: impl PgExecutor<'_>,
    session: Uuid,
    reason: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query("UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL")
        .bind(session)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(r.rows_affected() == 1)
}

#[tracing::instrument(name = "auth.insert_refresh_token", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn insert_refresh_token(
    db: impl PgExecutor<'_>,
    jti_hash: &[u8],
    session: Uuid,
    tenant: Option<Uuid>,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO refresh_tokens (jti_hash, session_id, workspace_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(jti_hash)
        .bind(session)
        .bind(tenant)
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(())
}

/// What presenting a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// First use of a live token: it is now spent.
    Fresh {
        session: Uuid,
        user: Uuid,
        tenant: Option<Uuid>,
    },
    /// The token was already spent: someone replayed it, so its whole session was revoked.
    Reused { session: Uuid, user: Uuid },
    /// Unknown, expired, or its session is revoked or expired.
    Invalid,
}

/// session, user, workspace, when it was spent, and whether it is still live.
type RefreshRow = (Uuid, Uuid, Option<Uuid>, Option<DateTime<Utc>>, bool);

/// Spends a refresh token atomically. Concurrent presentations of one token: exactly one
/// wins, the others see it spent and revoke the session (reuse detection).
#[tracing::instrument(name = "auth.use_refresh_token", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn use_refresh_token(tx: &mut Tx, jti_hash: &[u8]) -> sqlx::Result<RefreshUse> {
    let row: Option<RefreshRow> = sqlx::query_as(
        "SELECT t.session_id, s.user_id, t.workspace_id, t.used_at, \
                (t.expires_at > now() AND s.expires_at > now() AND s.revoked_at IS NULL) AS live \
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.jti_hash = $1 FOR UPDATE OF t",
    )
    .bind(jti_hash)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((session, user, tenant, used_at, live)) = row else {
        return Ok(RefreshUse::Invalid);
    };
    if used_at.is_some() {
        revoke_session(&mut **tx, session, "refresh_token_reuse").await?;
        return Ok(RefreshUse::Reused { session, user });
    }
    if !live {
        return Ok(RefreshUse::Invalid);
    }
    sqlx::query("UPDATE refresh_tokens SET used_at = now() WHERE jti_hash = $1")
        .bind(jti_hash)
        .execute(&mut **tx)
        .await?;
    Ok(RefreshUse::Fresh {
        session,
        user,
        tenant,
    })
}

#[tracing::instrument(name = "auth.insert_verification_token", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn insert_verification_token(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    user: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO email_verification_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(token_hash)
        .bind(user)
        .bind(expires_at)
        .execute(db)
        .await?;
    Ok(())
}

/// Spends a verification token: the user it belongs to, if it was live and unused.
#[tracing::instrument(name = "auth.use_verification_token", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn use_verification_token(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar(
        "UPDATE email_verification_tokens SET used_at = now() \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
    )
    .bind(token_hash)
    .fetch_optional(db)
    .await
}

/// Revokes every live session of a user (their access and refresh tokens stop working).
#[tracing::instrument(name = "auth.revoke_user_sessions", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn revoke_user_sessions(
    db: impl PgExecutor<'_>,
    user: Uuid,
    reason: &str,
) -> sqlx::Result<u64> {
    let r = sqlx::query("UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user)
        .bind(reason)
        .execute(db)
        .await?;
    Ok(r.rows_affected())
}

#[tracing::instrument(name = "auth.insert_password_reset_token", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn insert_password_reset_token(
    db: impl PgExecutor<'_>,
    token_hash: &[u8],
    user: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO password_reset_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
    )
    .bind(token_hash)
    .bind(user)
    .bind(expires_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Spends a password reset token: the user it belongs to, if it was live and unused. Every
/// other outstanding reset token of that user is spent with it, so an older e-mail's link
/// cannot be used after a reset.
#[tracing::instrument(name = "auth.use_password_reset_token", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn use_password_reset_token(
    tx: &mut Tx,
    token_hash: &[u8],
) -> sqlx::Result<Option<Uuid>> {
    let user: Option<Uuid> = sqlx::query_scalar(
        "UPDATE password_reset_tokens SET used_at = now() \
         WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now() RETURNING user_id",
    )
    .bind(token_hash)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(user) = user {
        sqlx::query("UPDATE password_reset_tokens SET used_at = now() WHERE user_id = $1 AND used_at IS NULL")
            .bind(user)
            .execute(&mut **tx)
            .await?;
    }
    Ok(user)
}
