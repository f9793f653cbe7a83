//! The deletes of scheduled maintenance, run by the worker's role (the only one with DELETE
//! grants). Workspace data is purged inside the workspace's scope; credentials and audit rows
//! without a workspace outside any.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::Tx;

/// Rows removed by [`purge_expired_credentials`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Purged {
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub verification_tokens: u64,
    pub reset_tokens: u64,
}

/// Deletes expired sessions (their refresh tokens go with them) and every expired token.
/// Spent but unexpired refresh tokens stay: replaying one must still revoke its session.
#[tracing::instrument(name = "maintenance.purge_expired_credentials", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn purge_expired_credentials(tx: &mut Tx) -> sqlx::Result<Purged> {
    let n = |sql: &'static str| sqlx::query(sql);
    Ok(Purged {
        sessions: n("DELETE FROM sessions WHERE expires_at < now()")
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        refresh_tokens: n("DELETE FROM refresh_tokens WHERE expires_at < now()")
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        verification_tokens: n("DELETE FROM email_verification_tokens WHERE expires_at < now()")
            .execute(&mut **tx)
            .await?
            .rows_affected(),
        reset_tokens: n("DELETE FROM password_reset_tokens WHERE expires_at < now()")
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    })
}

/// Deletes audit rows older than `before` in the transaction's scope: the scoped workspace's
/// rows, or, unscoped, the rows of no workspace (the worker's policies see exactly those).
#[tracing::instrument(name = "maintenance.prune_audit", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn prune_audit(db: impl PgExecutor<'_>, before: DateTime<Utc>) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM audit_log WHERE created_at < $1")
        .bind(before)
        .execute(db)
        .await?
        .rows_affected())
}

/// Hard-deletes the workspace's artifacts soft-deleted before `before`.
#[tracing::instrument(name = "maintenance.purge_deleted_artifacts", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn purge_deleted_artifacts(
    tx: &mut Tx,
    tenant: Uuid,
    before: DateTime<Utc>,
) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM artifacts WHERE tenant_id = $1 AND deleted_at IS NOT NULL AND deleted_at < $2",
    )
    .bind(tenant)
    .bind(before)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// Every workspace id, through the owner's `tenant_ids()` (the worker cannot list workspaces
/// itself).
#[tracing::instrument(name = "maintenance.tenant_ids", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn tenant_ids(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar("SELECT tenant_ids()")
        .fetch_all(db)
        .await
}
