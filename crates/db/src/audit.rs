//! The append-only audit trail: auth events, membership and role changes, denied access.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

pub struct Event<'a> {
    pub tenant: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub action: &'a str,
    pub details: Value,
    pub ip: Option<String>,
    pub request_id: Option<&'a str>,
}

#[tracing::instrument(name = "audit.record", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn record(db: impl PgExecutor<'_>, e: Event<'_>) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO audit_log (tenant_id, actor_user_id, action, details, ip, request_id) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(e.tenant)
        .bind(e.actor)
        .bind(e.action)
        .bind(e.details)
        .bind(e.ip)
        .bind(e.request_id)
        .execute(db)
        .await?;
    Ok(())
}
