//! Artifacts of the scoped workspace. Writes go to `artifacts`, whose row-level security policy
//! confines them to the transaction's tenant; reads go through `tenant_artifacts`, the view that
//! applies the same rule in a form the planner can combine with the search indexes (migration
//! 0003 says why). The explicit `tenant_id` predicates are there for the planner, not for
//! isolation.

use chrono::{DateTime, Utc};
use ghostworks_domain::artifact::{
    substring_pattern, ArtifactChanges, ArtifactFields, ListQuery, SearchMode, SortField,
    SortOrder, TagMode,
};
use serde_json::Value;
use sqlx::{Postgres, QueryBuilder};
use uuid::Uuid;

use crate::Tx;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Artifact {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub artifact_metadata: Value,
    pub created_by: Option<Uuid>,
    pub version: i32,
    pub deleted_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, tenant_id, name, description, tags, artifact_metadata, created_by, version, deleted_at, created_at, updated_at";

#[tracing::instrument(name = "artifacts.create", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn create(
    tx: &mut Tx,
    tenant: Uuid,
    creator: Uuid,
    f: &ArtifactFields,
) -> sqlx::Result<Artifact> {
    sqlx::query_as(&format!(
        "INSERT INTO artifacts (id, tenant_id, name, description, tags, artifact_metadata, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(tenant)
    .bind(&f.name)
    .bind(&f.description)
    .bind(&f.tags)
    .bind(Value::Object(f.metadata.clone()))
    .bind(creator)
    .fetch_one(&mut **tx)
    .await
}

/// A live (not deleted) artifact.
#[tracing::instrument(name = "artifacts.get", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn get(tx: &mut Tx, tenant: Uuid, id: Uuid) -> sqlx::Result<Option<Artifact>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM tenant_artifacts WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    ))
    .bind(tenant)
    .bind(id)
    .fetch_optional(&mut **tx)
    .await
}

/// The outcome of a conditional write.
#[derive(Debug)]
pub enum Write {
    Done(Artifact),
    NotFound,
    /// The artifact exists but its version is no longer the expected one.
    VersionMismatch {
        current: i32,
    },
}

/// Applies `changes` when the live artifact is at `expected` (or unconditionally), bumping
/// its version, in one statement.
#[tracing::instrument(name = "artifacts.update", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn update(
    tx: &mut Tx,
    tenant: Uuid,
    id: Uuid,
    c: &ArtifactChanges,
    expected: Option<i32>,
) -> sqlx::Result<Write> {
    let updated: Option<Artifact> = sqlx::query_as(&format!(
        "UPDATE artifacts SET name = COALESCE($3, name), \
             description = CASE WHEN $4 THEN $5 ELSE description END, \
             tags = COALESCE($6, tags), artifact_metadata = COALESCE($7, artifact_metadata), version = version + 1 \
         WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL AND ($8::int IS NULL OR version = $8) RETURNING {COLUMNS}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(&c.name)
    .bind(c.description.is_some())
    .bind(c.description.clone().flatten())
    .bind(&c.tags)
    .bind(c.metadata.clone().map(Value::Object))
    .bind(expected)
    .fetch_optional(&mut **tx)
    .await?;
    written(tx, tenant, id, updated).await
}

#[tracing::instrument(name = "artifacts.soft_delete", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn soft_delete(
    tx: &mut Tx,
    tenant: Uuid,
    id: Uuid,
    expected: Option<i32>,
) -> sqlx::Result<Write> {
    let deleted: Option<Artifact> = sqlx::query_as(&format!(
        "UPDATE artifacts SET deleted_at = now(), version = version + 1 \
         WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL AND ($3::int IS NULL OR version = $3) RETURNING {COLUMNS}"
    ))
    .bind(tenant)
    .bind(id)
    .bind(expected)
    .fetch_optional(&mut **tx)
    .await?;
    written(tx, tenant, id, deleted).await
}

async fn written(
    tx: &mut Tx,
    tenant: Uuid,
    id: Uuid,
    row: Option<Artifact>,
) -> sqlx::Result<Write> {
    Ok(match row {
        Some(a) => Write::Done(a),
        None => match get(tx, tenant, id).await? {
            Some(a) => Write::VersionMismatch { current: a.version },
            None => Write::NotFound,
        },
    })
}

/// One page and the total number of matches, in a single round trip when the page is
/// non-empty. The total is an uncorrelated subquery, run once (an index-only count where the
/// filters allow), so the page can stop after its rows; a `count(*) OVER ()` window read and
/// buffered every matching row first (100,000 of them in a large workspace).
#[tracing::instrument(name = "artifacts.list", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn list(tx: &mut Tx, tenant: Uuid, q: &ListQuery) -> sqlx::Result<(Vec<Artifact>, i64)> {
    let mut b = QueryBuilder::<Postgres>::new(format!(
        "SELECT {COLUMNS}, (SELECT count(*) FROM tenant_artifacts"
    ));
    push_filters(&mut b, tenant, q);
    b.push(") AS total FROM tenant_artifacts");
    push_filters(&mut b, tenant, q);
    b.push(" ORDER BY ");
    let dir = match q.order {
        SortOrder::Asc => " ASC",
        SortOrder::Desc => " DESC",
    };
    match q.sort {
        SortField::CreatedAt => b.push("created_at").push(dir),
        SortField::UpdatedAt => b.push("updated_at").push(dir),
        SortField::Name => b.push("name").push(dir),
        SortField::Relevance => b
            .push("ts_rank_cd(search_document, websearch_to_tsquery('english', ")
            .push_bind(q.q.clone().unwrap_or_default())
            .push("))")
            .push(dir),
    };
    // A stable tie-breaker keeps pages disjoint when sort keys repeat.
    b.push(", id").push(dir);
    b.push(" LIMIT ")
        .push_bind(q.limit)
        .push(" OFFSET ")
        .push_bind(q.offset);
    let rows: Vec<(Artifact, i64)> = b
        .build()
        .try_map(|row: sqlx::postgres::PgRow| {
            use sqlx::{FromRow, Row};
            Ok((Artifact::from_row(&row)?, row.try_get::<i64, _>("total")?))
        })
        .fetch_all(&mut **tx)
        .await?;
    let total = match rows.first() {
        Some((_, total)) => *total,
        None if q.offset > 0 => count(tx, tenant, q).await?,
        None => 0,
    };
    Ok((rows.into_iter().map(|(a, _)| a).collect(), total))
}

async fn count(tx: &mut Tx, tenant: Uuid, q: &ListQuery) -> sqlx::Result<i64> {
    let mut b = QueryBuilder::<Postgres>::new("SELECT count(*) FROM tenant_artifacts");
    push_filters(&mut b, tenant, q);
    b.build_query_scalar().fetch_one(&mut **tx).await
}

fn push_filters(b: &mut QueryBuilder<'_, Postgres>, tenant: Uuid, q: &ListQuery) {
    b.push(" WHERE tenant_id = ")
        .push_bind(tenant)
        .push(" AND deleted_at IS NULL");
    if let Some(text) = &q.q {
        match q.mode {
            SearchMode::Substring => {
                let pattern = substring_pattern(text);
                b.push(" AND (name ILIKE ")
                    .push_bind(pattern.clone())
                    .push(" OR description ILIKE ")
                    .push_bind(pattern)
                    .push(")");
            }
            SearchMode::Fulltext => {
                b.push(" AND search_document @@ websearch_to_tsquery('english', ")
                    .push_bind(text.clone())
                    .push(")");
            }
        }
    }
    if !q.tags.is_empty() {
        let op = match q.tag_mode {
            TagMode::Any => " AND tags && ",
            TagMode::All => " AND tags @> ",
        };
        b.push(op).push_bind(q.tags.clone()).push("::text[]");
    }
    if let Some(t) = q.created_after {
        b.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = q.created_before {
        b.push(" AND created_at <= ").push_bind(t);
    }
}

#[derive(Debug, Clone)]
pub struct Stats {
    pub total: i64,
    pub active: i64,
    pub distinct_tags: i64,
    pub top_tags: Vec<(String, i64)>,
}

#[tracing::instrument(name = "artifacts.stats", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn stats(tx: &mut Tx, tenant: Uuid) -> sqlx::Result<Stats> {
    let (total, active): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE deleted_at IS NULL) FROM tenant_artifacts WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(&mut **tx)
            .await?;
    let tags: Vec<(String, i64)> = sqlx::query_as(
        "SELECT tag, count(*) AS n FROM tenant_artifacts, unnest(tags) AS tag WHERE tenant_id = $1 AND deleted_at IS NULL \
         GROUP BY tag ORDER BY n DESC, tag",
    )
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await?;
    Ok(Stats {
        total,
        active,
        distinct_tags: tags.len() as i64,
        top_tags: tags.into_iter().take(10).collect(),
    })
}
