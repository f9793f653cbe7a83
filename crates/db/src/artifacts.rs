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
use ghostworks_domain::cursor::{Cursor, CursorKey};
use ghostworks_domain::limits::FILTERED_TOTAL_EXACT_MAX;
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

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    pub rows: Vec<Artifact>,
    /// The number of matches: exact when `total_exact`, else a lower bound.
    pub total: i64,
    pub total_exact: bool,
    pub has_more: bool,
    /// Where the next page starts, for the orders that page by key.
    pub next: Option<Cursor>,
}

/// One page and the number of matches, in a single round trip when the page is non-empty.
/// Neither reads the whole workspace: the page is an ordered walk that stops one row past the
/// limit (that row only says whether there are more); an unfiltered total is the maintained
/// count (migration 0010), a filtered one counts at most [`FILTERED_TOTAL_EXACT_MAX`] + 1
/// matches and is a lower bound beyond that.
#[tracing::instrument(name = "artifacts.list", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn list(tx: &mut Tx, tenant: Uuid, q: &ListQuery) -> sqlx::Result<Page> {
    let rows: Vec<(Artifact, i64)> = page_query(tenant, q)
        .build()
        .try_map(|row: sqlx::postgres::PgRow| {
            use sqlx::{FromRow, Row};
            Ok((Artifact::from_row(&row)?, row.try_get::<i64, _>("total")?))
        })
        .fetch_all(&mut **tx)
        .await?;
    let counted = match rows.first() {
        Some((_, total)) => *total,
        None if q.offset > 0 || q.after.is_some() => {
            let mut b = QueryBuilder::<Postgres>::new("SELECT ");
            push_total(&mut b, tenant, q);
            b.build_query_scalar().fetch_one(&mut **tx).await?
        }
        None => 0,
    };
    let mut rows: Vec<Artifact> = rows.into_iter().map(|(a, _)| a).collect();
    let has_more = rows.len() as i64 > q.limit;
    rows.truncate(q.limit as usize);
    let total_exact = !q.is_filtered() || counted <= FILTERED_TOTAL_EXACT_MAX;
    // Beyond the bound the count says "more than that"; what this page proves may say more.
    let seen = q.offset + rows.len() as i64 + i64::from(has_more);
    let total = if total_exact {
        counted
    } else {
        counted.max(seen)
    };
    let next = rows
        .last()
        .filter(|_| has_more)
        .and_then(|a| Cursor::after(q.sort, q.order, sort_key(q.sort, a), a.id));
    Ok(Page {
        rows,
        total,
        total_exact,
        has_more,
        next,
    })
}

/// The plan of a listing's statement as PostgreSQL ran it (`EXPLAIN (ANALYZE, BUFFERS, FORMAT
/// JSON)`), for the tests that hold the plans to reading a bounded number of rows.
pub async fn explain_list(tx: &mut Tx, tenant: Uuid, q: &ListQuery) -> sqlx::Result<Value> {
    let mut b = QueryBuilder::<Postgres>::new("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ");
    push_page(&mut b, tenant, q);
    b.build_query_scalar().fetch_one(&mut **tx).await
}

fn page_query(tenant: Uuid, q: &ListQuery) -> QueryBuilder<'static, Postgres> {
    let mut b = QueryBuilder::<Postgres>::new("");
    push_page(&mut b, tenant, q);
    b
}

fn push_page(b: &mut QueryBuilder<'_, Postgres>, tenant: Uuid, q: &ListQuery) {
    b.push(format!("SELECT {COLUMNS}, "));
    push_total(b, tenant, q);
    b.push(" AS total FROM tenant_artifacts");
    push_filters(b, tenant, q);
    let (column, dir, before) = match q.order {
        SortOrder::Asc => (sort_column(q.sort), " ASC", " > "),
        SortOrder::Desc => (sort_column(q.sort), " DESC", " < "),
    };
    if let Some(c) = &q.after {
        b.push(format!(" AND ({column}, id){before}("));
        match &c.key {
            CursorKey::Time(t) => b.push_bind(*t),
            CursorKey::Name(n) => b.push_bind(n.clone()),
        };
        b.push(", ").push_bind(c.id).push(")");
    }
    b.push(" ORDER BY ");
    match q.sort {
        SortField::Relevance => b
            .push("ts_rank_cd(search_document, websearch_to_tsquery('english', ")
            .push_bind(q.q.clone().unwrap_or_default())
            .push("))"),
        _ => b.push(column),
    };
    // A stable tie-breaker keeps pages disjoint when sort keys repeat.
    b.push(dir).push(", id").push(dir);
    b.push(" LIMIT ")
        .push_bind(q.limit + 1)
        .push(" OFFSET ")
        .push_bind(q.offset);
}

fn sort_column(s: SortField) -> &'static str {
    match s {
        SortField::CreatedAt | SortField::Relevance => "created_at",
        SortField::UpdatedAt => "updated_at",
        SortField::Name => "name",
    }
}

fn sort_key(s: SortField, a: &Artifact) -> CursorKey {
    match s {
        SortField::UpdatedAt => CursorKey::Time(a.updated_at),
        SortField::Name => CursorKey::Name(a.name.clone()),
        SortField::CreatedAt | SortField::Relevance => CursorKey::Time(a.created_at),
    }
}

/// The number of matches as a scalar subquery: the maintained count of live artifacts when
/// nothing filters, else the matches counted up to one past the bound.
fn push_total(b: &mut QueryBuilder<'_, Postgres>, tenant: Uuid, q: &ListQuery) {
    if !q.is_filtered() {
        b.push("(SELECT coalesce(sum(live), 0)::bigint FROM artifact_counts WHERE tenant_id = ")
            .push_bind(tenant)
            .push(")");
        return;
    }
    b.push("(SELECT count(*) FROM (SELECT 1 FROM tenant_artifacts");
    push_filters(b, tenant, q);
    b.push(" LIMIT ")
        .push_bind(FILTERED_TOTAL_EXACT_MAX + 1)
        .push(") AS bounded)");
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
