//! The append-only audit trail: auth events, membership and role changes, denied access.
//! Every row goes through [`record`], with the context of the request that caused it.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// Where a recorded action was asked from: the client's address and the request's id, so an
/// audit row leads to the access log line.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

/// Who did what in which workspace (none for account events).
pub struct Event<'a> {
    pub tenant: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub action: &'a str,
    pub details: Value,
}

#[tracing::instrument(name = "audit.record", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn record(db: impl PgExecutor<'_>, context: &Context, e: Event<'_>) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO audit_log (tenant_id, actor_user_id, action, details, ip, request_id) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(e.tenant)
        .bind(e.actor)
        .bind(e.action)
        .bind(e.details)
        .bind(&context.ip)
        .bind(&context.request_id)
        .execute(db)
        .await?;
    Ok(())
}
