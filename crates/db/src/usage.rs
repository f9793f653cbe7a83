//! Per-workspace usage figures: recomputed by the worker's scheduled maintenance, read by the
//! API. Both run in the workspace's scope; row-level security confines them to it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Tx;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Usage {
    pub artifacts: i64,
    pub deleted_artifacts: i64,
    pub distinct_tags: i64,
    pub tag_uses: i64,
    pub storage_bytes: i64,
    pub computed_at: DateTime<Utc>,
}

/// The last computed figures, if maintenance has run since the workspace was created.
#[tracing::instrument(name = "usage.get", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn get(tx: &mut Tx, tenant: Uuid) -> sqlx::Result<Option<Usage>> {
    sqlx::query_as(
        "SELECT artifacts, deleted_artifacts, distinct_tags, tag_uses, storage_bytes, computed_at \
         FROM workspace_usage WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut **tx)
    .await
}

/// Counts the workspace's artifacts and stores the figures, in one statement.
#[tracing::instrument(name = "usage.recompute", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn recompute(tx: &mut Tx, tenant: Uuid) -> sqlx::Result<Usage> {
    sqlx::query_as(
        "INSERT INTO workspace_usage AS u (tenant_id, artifacts, deleted_artifacts, distinct_tags, tag_uses, storage_bytes, computed_at) \
         SELECT $1, \
                count(*) FILTER (WHERE deleted_at IS NULL), \
                count(*) FILTER (WHERE deleted_at IS NOT NULL), \
                (SELECT count(DISTINCT tag) FROM artifacts, unnest(tags) AS tag WHERE tenant_id = $1 AND deleted_at IS NULL), \
                coalesce(sum(cardinality(tags)) FILTER (WHERE deleted_at IS NULL), 0), \
                coalesce(sum(octet_length(name) + coalesce(octet_length(description), 0) + octet_length(artifact_metadata::text)), 0), \
                now() \
         FROM artifacts WHERE tenant_id = $1 \
         ON CONFLICT (tenant_id) DO UPDATE SET artifacts = EXCLUDED.artifacts, deleted_artifacts = EXCLUDED.deleted_artifacts, \
             distinct_tags = EXCLUDED.distinct_tags, tag_uses = EXCLUDED.tag_uses, storage_bytes = EXCLUDED.storage_bytes, \
             computed_at = EXCLUDED.computed_at \
         RETURNING artifacts, deleted_artifacts, distinct_tags, tag_uses, storage_bytes, computed_at",
    )
    .bind(tenant)
    .fetch_one(&mut **tx)
    .await
}
