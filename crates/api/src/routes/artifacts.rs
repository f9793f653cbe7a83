use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use ghostworks_db::artifacts::{self, Write};
use ghostworks_domain::artifact::{
    ArtifactInput, ArtifactPatchInput, ListParams, SearchMode, SortField, SortOrder, TagMode,
};
use ghostworks_domain::{FieldError, ValidationErrors};
use serde::Deserialize;
use serde_json::json;

use crate::bulkhead::{ListPlace, SearchPlace};
use crate::dto::{ArtifactOut, ArtifactPage, ArtifactStatsOut, TagCount};
use crate::error::{ApiError, ApiResult};
use crate::extract::{present, ArtifactPath, Body, Query, StandbyRead, Ws};
use crate::AppState;

/// Listing parameters as they arrive in the query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(default)]
pub struct ListQueryParams {
    /// Text to look for; see `search_mode`.
    q: Option<String>,
    /// `substring` (case-insensitive, wildcards literal; the default) or `fulltext` (ranked, web-search syntax).
    #[serde(deserialize_with = "present")]
    search_mode: Option<SearchMode>,
    /// Repeat to filter on several tags (`?tags=a&tags=b`); normalised like stored tags.
    tags: Vec<String>,
    /// `any` (default) or `all` of the given tags.
    #[serde(deserialize_with = "present")]
    tag_mode: Option<TagMode>,
    /// Inclusive lower bound on creation time (RFC 3339 or YYYY-MM-DD, UTC).
    #[serde(deserialize_with = "present")]
    created_after: Option<String>,
    /// Inclusive upper bound on creation time (RFC 3339 or YYYY-MM-DD, UTC).
    #[serde(deserialize_with = "present")]
    created_before: Option<String>,
    /// `created_at` (default), `updated_at`, `name` or `relevance` (full-text only).
    #[serde(deserialize_with = "present")]
    sort: Option<SortField>,
    /// `asc` or `desc`.
    #[serde(deserialize_with = "present")]
    order: Option<SortOrder>,
    /// Page size, 1-100 (default 20).
    #[serde(deserialize_with = "present")]
    limit: Option<i64>,
    /// Rows to skip, 0-10000; deeper pages follow `next_cursor` instead.
    #[serde(deserialize_with = "present")]
    offset: Option<i64>,
    /// The `next_cursor` of the previous page: the page after it (keyset paging, not with
    /// `offset`; sort and order default to the cursor's).
    cursor: Option<String>,
}

fn parse_time(
    field: &str,
    raw: Option<String>,
    end_of_day: bool,
) -> Result<Option<DateTime<Utc>>, FieldError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(&raw) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    if let Ok(d) = NaiveDate::parse_from_str(&raw, "%Y-%m-%d") {
        let t = if end_of_day {
            d.and_hms_micro_opt(23, 59, 59, 999_999)
        } else {
            d.and_hms_opt(0, 0, 0)
        };
        return Ok(t.map(|t| t.and_utc()));
    }
    Err(FieldError::query(
        field,
        "datetime_parsing",
        format!(
            "{field} must be an RFC 3339 date-time (2024-01-15T10:30:00Z) or a date (2024-01-15)"
        ),
    ))
}

impl ListQueryParams {
    fn into_params(self) -> Result<ListParams, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let created_after = errors
            .collect(parse_time("created_after", self.created_after, false))
            .flatten();
        let created_before = errors
            .collect(parse_time("created_before", self.created_before, true))
            .flatten();
        errors.into_result(|| ListParams {
            q: self.q,
            mode: self.search_mode.unwrap_or_default(),
            tags: self.tags,
            tag_mode: self.tag_mode.unwrap_or_default(),
            created_after,
            created_before,
            sort: self.sort,
            order: self.order,
            limit: self.limit,
            offset: self.offset,
            cursor: self.cursor,
        })
    }
}

fn etag(version: i32) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header value")
}

fn with_etag(status: StatusCode, a: artifacts::Artifact) -> Response {
    let tag = etag(a.version);
    let mut r = (status, Json(ArtifactOut::from(a))).into_response();
    r.headers_mut().insert(header::ETAG, tag);
    r
}

/// The version an `If-Match` header demands (`"3"`, `W/"3"`; `*` means any). Anything else
/// is an entity tag no version has, so the precondition fails.
fn if_match(headers: &HeaderMap) -> Result<Option<i32>, ApiError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let v = v.to_str().unwrap_or_default().trim();
    if v == "*" {
        return Ok(None);
    }
    v.strip_prefix("W/")
        .unwrap_or(v)
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::PreconditionFailed(format!("If-Match {v} names no version of this artifact"))
        })
}

/// Settles a conditional write: `If-Match` failures are 412, body `version` failures 409.
fn settle(w: Write, by_header: bool, id: &str) -> ApiResult<artifacts::Artifact> {
    match w {
        Write::Done(a) => Ok(a),
        Write::NotFound => Err(ApiError::NotFound(format!("Artifact not found: {id}"))),
        Write::VersionMismatch { current } if by_header => {
            Err(ApiError::PreconditionFailed(format!("The artifact changed meanwhile (now at version {current}); reload and retry")))
        }
        Write::VersionMismatch { current } => {
            Err(ApiError::Conflict(format!("The artifact was modified by someone else (now at version {current}); reload and retry")))
        }
    }
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/artifacts", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)), request_body = ArtifactInput,
    responses((status = 201, body = ArtifactOut, headers(("ETag" = String, description = "`\"<version>\"`, for `If-Match`"))), (status = 404), (status = 422), (status = 429)))]
pub async fn create(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut ws: Ws,
    Body(input): Body<ArtifactInput>,
) -> ApiResult<Response> {
    let fields = input.validate()?;
    let a = artifacts::create(&mut ws.tx, ws.id, ws.caller.id(), &fields).await?;
    ws.commit().await?;
    state.metrics().artifacts_created.inc();
    Ok(with_etag(StatusCode::CREATED, a))
}

async fn page(mut ws: Ws, p: ListQueryParams, name_first: bool) -> ApiResult<Json<ArtifactPage>> {
    let q = p.into_params()?.validate(name_first)?;
    let page = artifacts::list(&mut ws.tx, ws.id, &q).await?;
    ws.end_read();
    Ok(Json(ArtifactPage {
        items: page.rows.into_iter().map(ArtifactOut::from).collect(),
        total: page.total,
        total_exact: page.total_exact,
        limit: q.limit,
        offset: q.offset,
        has_more: page.has_more,
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/artifacts", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ListQueryParams), responses((status = 200, body = ArtifactPage), (status = 404), (status = 422), (status = 503)))]
pub async fn list(
    _place: ListPlace,
    _standby: StandbyRead,
    ws: Ws,
    Query(p): Query<ListQueryParams>,
) -> ApiResult<Json<ArtifactPage>> {
    page(ws, p, false).await
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/artifacts/search/advanced", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ListQueryParams),
    description = "The list endpoint's filters; without an explicit sort, results with `q` come by name.",
    responses((status = 200, body = ArtifactPage), (status = 404), (status = 422), (status = 503)))]
pub async fn search(
    _place: SearchPlace,
    _standby: StandbyRead,
    ws: Ws,
    Query(p): Query<ListQueryParams>,
) -> ApiResult<Json<ArtifactPage>> {
    page(ws, p, true).await
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/artifacts/stats", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)), responses((status = 200, body = ArtifactStatsOut), (status = 404), (status = 503)))]
pub async fn stats(
    _place: SearchPlace,
    _standby: StandbyRead,
    mut ws: Ws,
) -> ApiResult<Json<ArtifactStatsOut>> {
    let s = artifacts::stats(&mut ws.tx, ws.id).await?;
    ws.end_read();
    Ok(Json(ArtifactStatsOut {
        total_artifacts: s.total,
        active_artifacts: s.active,
        most_used_tags: s
            .top_tags
            .into_iter()
            .map(|(tag, count)| TagCount { tag, count })
            .collect(),
        total_tags: s.distinct_tags,
    }))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/artifacts/{artifact_id}", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ("artifact_id" = Uuid, Path)), responses((status = 200, body = ArtifactOut, headers(("ETag" = String, description = "`\"<version>\"`, for `If-Match`"))), (status = 404)))]
pub async fn get(
    _standby: StandbyRead,
    mut ws: Ws,
    Path(path): Path<ArtifactPath>,
) -> ApiResult<Response> {
    let id = path.artifact_id.get("Artifact")?;
    let a = artifacts::get(&mut ws.tx, ws.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Artifact not found: {id}")))?;
    ws.end_read();
    Ok(with_etag(StatusCode::OK, a))
}

async fn write(
    state: &AppState,
    mut ws: Ws,
    path: &ArtifactPath,
    headers: &HeaderMap,
    changes: ghostworks_domain::artifact::ArtifactChanges,
    body_version: Option<i32>,
) -> ApiResult<Response> {
    let id = path.artifact_id.get("Artifact")?;
    let header_version = if_match(headers)?;
    let w = artifacts::update(
        &mut ws.tx,
        ws.id,
        id,
        &changes,
        header_version.or(body_version),
    )
    .await?;
    let a = settle(w, header_version.is_some(), &id.to_string())?;
    ws.commit().await?;
    state.metrics().artifacts_updated.inc();
    Ok(with_etag(StatusCode::OK, a))
}

#[utoipa::path(put, path = "/api/v1/workspaces/{workspace_id}/artifacts/{artifact_id}", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ("artifact_id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "`\"<version>\"` (or `W/\"<version>\"`, or `*`): write only if the artifact is still at that version, else 412.")), request_body = ArtifactInput,
    description = "Full replacement: omitted optional fields reset to empty. Send `If-Match: \"<version>\"` (412 on mismatch) or `version` in the body (409 on mismatch) to avoid lost updates.",
    responses((status = 200, body = ArtifactOut, headers(("ETag" = String, description = "`\"<version>\"`, for `If-Match`"))), (status = 404), (status = 409), (status = 412), (status = 422)))]
pub async fn replace(
    axum::extract::State(state): axum::extract::State<AppState>,
    ws: Ws,
    Path(path): Path<ArtifactPath>,
    headers: HeaderMap,
    Body(input): Body<ArtifactInput>,
) -> ApiResult<Response> {
    let version = input.version;
    let f = input.validate()?;
    let changes = ghostworks_domain::artifact::ArtifactChanges {
        name: Some(f.name),
        description: Some(f.description),
        tags: Some(f.tags),
        metadata: Some(f.metadata),
    };
    write(&state, ws, &path, &headers, changes, version).await
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{workspace_id}/artifacts/{artifact_id}", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ("artifact_id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "`\"<version>\"` (or `W/\"<version>\"`, or `*`): write only if the artifact is still at that version, else 412.")), request_body = ArtifactPatchInput,
    description = "Partial update: only present fields change; `description: null` clears it; null name, tags or metadata are rejected.",
    responses((status = 200, body = ArtifactOut, headers(("ETag" = String, description = "`\"<version>\"`, for `If-Match`"))), (status = 404), (status = 409), (status = 412), (status = 422)))]
pub async fn patch(
    axum::extract::State(state): axum::extract::State<AppState>,
    ws: Ws,
    Path(path): Path<ArtifactPath>,
    headers: HeaderMap,
    Body(input): Body<ArtifactPatchInput>,
) -> ApiResult<Response> {
    let (changes, version) = input.validate()?;
    write(&state, ws, &path, &headers, changes, version).await
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace_id}/artifacts/{artifact_id}", tag = "artifacts", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ("artifact_id" = Uuid, Path), ("If-Match" = Option<String>, Header, description = "`\"<version>\"` (or `W/\"<version>\"`, or `*`): write only if the artifact is still at that version, else 412.")),
    responses((status = 204), (status = 404), (status = 412)))]
pub async fn delete(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut ws: Ws,
    Path(path): Path<ArtifactPath>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let id = path.artifact_id.get("Artifact")?;
    let expected = if_match(&headers)?;
    let w = artifacts::soft_delete(&mut ws.tx, ws.id, id, expected).await?;
    let a = settle(w, true, &id.to_string())?;
    ws.audit(
        "artifact.deleted",
        json!({"artifact_id": a.id, "name": a.name}),
    )
    .await?;
    ws.commit().await?;
    state.metrics().artifacts_deleted.inc();
    Ok(StatusCode::NO_CONTENT)
}
