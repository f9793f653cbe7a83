//! The artifact list (search, tag chips, sorting, pages), detail, create, edit and delete.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::Query;
use maud::{html, Markup};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{refused, saved, Fetch, InWorkspace};
use crate::api::{ApiFailure, Artifact, ArtifactStats, Call, Page};
use crate::error::{message_page, WebError, WebResult};
use crate::session::Session;
use crate::views::{csrf_field, form_error, layout, notice, Field};

const PAGE_SIZE: i64 = 10;

/// The list's query string: everything a bookmark or the back button needs.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ListQuery {
    q: String,
    tags: Vec<String>,
    sort: String,
    /// The API's `next_cursor` of the page before: pages after the first are fetched by
    /// cursor, never by offset, so the thousandth page costs what the first does.
    after: Option<String>,
    /// The page's number, for display only (the cursor says where it starts).
    page: i64,
    notice: Option<String>,
}

const SORTS: [(&str, &str, &str, &str); 5] = [
    ("newest", "Newest first", "created_at", "desc"),
    ("oldest", "Oldest first", "created_at", "asc"),
    ("name", "Name A–Z", "name", "asc"),
    ("name_desc", "Name Z–A", "name", "desc"),
    ("updated", "Recently updated", "updated_at", "desc"),
];

impl ListQuery {
    /// The page's number: 1 without a cursor, whatever the link said.
    fn page(&self) -> i64 {
        match self.after {
            Some(_) => self.page.max(2),
            None => 1,
        }
    }

    fn api_query(&self) -> Vec<(String, String)> {
        let (_, _, sort, order) = SORTS.iter().find(|s| s.0 == self.sort).unwrap_or(&SORTS[0]);
        let mut q = vec![
            ("sort".to_string(), sort.to_string()),
            ("order".to_string(), order.to_string()),
            ("limit".to_string(), PAGE_SIZE.to_string()),
        ];
        if let Some(after) = &self.after {
            q.push(("cursor".into(), after.clone()));
        }
        if !self.q.trim().is_empty() {
            q.push(("q".into(), self.q.trim().to_string()));
        }
        q.extend(self.tags.iter().map(|t| ("tags".to_string(), t.clone())));
        q
    }

    /// This query's URL with the tag set replaced, on the first page or, given the cursor of
    /// the page before, on page `page`.
    fn href(&self, base: &str, page: Option<(i64, &str)>, tags: &[String]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            s.append_pair("q", &self.q);
        }
        for t in tags {
            s.append_pair("tags", t);
        }
        if !self.sort.is_empty() {
            s.append_pair("sort", &self.sort);
        }
        if let Some((page, after)) = page {
            s.append_pair("page", &page.to_string());
            s.append_pair("after", after);
        }
        let qs = s.finish();
        if qs.is_empty() {
            format!("{base}/artifacts")
        } else {
            format!("{base}/artifacts?{qs}")
        }
    }

    fn toggled(&self, tag: &str) -> Vec<String> {
        if self.tags.iter().any(|t| t == tag) {
            self.tags.iter().filter(|t| *t != tag).cloned().collect()
        } else {
            let mut t = self.tags.clone();
            t.push(tag.to_string());
            t
        }
    }
}

/// The artifact form as typed: tags comma-separated, metadata one `key = value` per line.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct ArtifactForm {
    name: String,
    description: String,
    tags: String,
    artifact_metadata: String,
    version: Option<i32>,
}

impl ArtifactForm {
    fn from_artifact(a: &Artifact) -> Self {
        Self {
            name: a.name.clone(),
            description: a.description.clone().unwrap_or_default(),
            tags: a.tags.join(", "),
            artifact_metadata: a
                .artifact_metadata
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k} = {s}"),
                    other => format!("{k} = {other}"),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            version: Some(a.version),
        }
    }

    /// The API body, or the field error for metadata this form cannot read.
    fn body(&self) -> Result<Value, ApiFailure> {
        let mut meta = Map::new();
        for (i, line) in self.artifact_metadata.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(ApiFailure {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    code: "validation_error".into(),
                    message: "Metadata lines must read key = value".into(),
                    fields: [(
                        "artifact_metadata".to_string(),
                        format!("Line {} is not key = value", i + 1),
                    )]
                    .into(),
                    retry_after: None,
                });
            };
            let v = v.trim();
            // Numbers and true/false stay typed; everything else is text.
            let value = match serde_json::from_str::<Value>(v) {
                Ok(n @ (Value::Number(_) | Value::Bool(_))) => n,
                _ => Value::String(v.to_string()),
            };
            meta.insert(k.trim().to_string(), value);
        }
        let tags: Vec<&str> = self
            .tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let mut body = json!({"name": self.name, "description": self.description,
            "tags": tags, "artifact_metadata": meta});
        if let Some(v) = self.version {
            body["version"] = json!(v);
        }
        Ok(body)
    }
}

fn artifact_fields(f: &ArtifactForm, err: Option<&ApiFailure>) -> Markup {
    html! {
        (Field::new("Name", "name", &f.name).required().render(err))
        (Field::new("Tags", "tags", &f.tags).hint("Comma-separated, e.g. report, q3.").render(err))
        (Field::new("Description", "description", &f.description).multiline().render(err))
        (Field::new("Metadata", "artifact_metadata", &f.artifact_metadata).multiline()
            .hint("One key = value per line.").render(err))
    }
}

/// "12 artifact(s)", or "at least 1001 artifact(s)" when the API only bounded the count.
fn count(p: &Page) -> String {
    match p.total_exact {
        true => format!("{} artifact(s)", p.total),
        false => format!("at least {} artifact(s)", p.total),
    }
}

/// The number of pages of an exact count.
fn pages(p: &Page) -> i64 {
    ((p.total + PAGE_SIZE - 1) / PAGE_SIZE).max(1)
}

fn list_view(
    w: &InWorkspace,
    q: &ListQuery,
    page: Option<&Page>,
    top_tags: &[String],
    err: Option<&ApiFailure>,
) -> Markup {
    let base = w.base();
    let mut chips: Vec<String> = q.tags.clone();
    chips.extend(top_tags.iter().filter(|t| !q.tags.contains(t)).cloned());
    let new_form = ArtifactForm::default();
    let note = q.notice.as_deref().map(|_| "Artifact deleted.");
    layout(
        &format!("Artifacts · {}", w.workspace.name),
        &w.nav(),
        html! {
            h1 { "Artifacts" span class="hint" { " in " (w.workspace.name) } }
            (notice(note))
            form class="toolbar" method="get" action=(format!("{base}/artifacts")) role="search" {
                div class="field" {
                    label for="f-q" { "Search" }
                    input id="f-q" type="search" name="q" value=(q.q) aria-invalid=[err.and_then(|e| e.field("q")).map(|_| "true")] aria-describedby="f-q-error";
                    p class="field-error" id="f-q-error" hidden[err.and_then(|e| e.field("q")).is_none()] { (err.and_then(|e| e.field("q")).unwrap_or_default()) }
                }
                div class="field" {
                    label for="f-sort" { "Sort" }
                    select id="f-sort" name="sort" {
                        @for (value, label, _, _) in SORTS {
                            option value=(value) selected[q.sort == value] { (label) }
                        }
                    }
                }
                @for t in &q.tags { input type="hidden" name="tags" value=(t); }
                button type="submit" { "Search" }
            }
            @if !chips.is_empty() {
                nav aria-label="Filter by tag" {
                    ul class="chips" {
                        @for t in &chips {
                            @let on = q.tags.contains(t);
                            li {
                                a class=(if on { "chip on" } else { "chip" }) href=(q.href(&base, None, &q.toggled(t)))
                                    aria-current=[on.then_some("true")] {
                                    (t)
                                    @if on { span class="visually-hidden" { " (filter on; select to remove)" } }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(e) = err.filter(|e| e.field("q").is_none()) {
                p class="error" role="alert" { (e.summary()) }
            }
            @if let Some(p) = page {
                p class="hint" id="result-count" { (count(p)) @if q.page() > 1 || p.has_more { " · page " (q.page()) @if p.total_exact { " of " (pages(p)) } } }
                ul class="items" id="artifact-list" {
                    @for a in &p.items {
                        li data-item {
                            span {
                                a href=(format!("{base}/artifacts/{}", a.id)) { (a.name) }
                                @if !a.tags.is_empty() { " " span class="tags" { (a.tags.join(", ")) } }
                            }
                            form method="post" action=(format!("{base}/artifacts/{}/delete", a.id)) data-optimistic="remove" {
                                (csrf_field(w.session.csrf()))
                                button type="submit" class="danger" aria-label=(format!("Delete {}", a.name)) { "Delete" }
                            }
                        }
                    }
                }
                @if p.items.is_empty() { p { "No artifacts match." } }
                nav class="pager" aria-label="Pages" {
                    @if q.page() > 1 { a rel="first" href=(q.href(&base, None, &q.tags)) { "← First page" } }
                    @if let Some(next) = p.next_cursor.as_deref().filter(|_| p.has_more) {
                        a rel="next" href=(q.href(&base, Some((q.page() + 1, next)), &q.tags)) { "Next page →" }
                    }
                }
            }
            h2 id="quick-create" { "Add an artifact" }
            form class="stack" method="post" action=(format!("{base}/artifacts")) data-optimistic="create" data-list="#artifact-list" aria-labelledby="quick-create" novalidate {
                (csrf_field(w.session.csrf()))
                (form_error(None))
                (Field::new("Name", "name", &new_form.name).required().render(None))
                (Field::new("Tags", "tags", &new_form.tags).hint("Comma-separated, e.g. report, q3.").render(None))
                button type="submit" { "Add artifact" }
            }
            p { a href=(format!("{base}/artifacts/new")) { "Add one with a description and metadata" } }
        },
    )
}

pub async fn list(
    session: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<ListQuery>,
) -> WebResult<Response> {
    let path = format!("/api/v1/workspaces/{id}/artifacts");
    let (w, page, stats) = tokio::join!(
        InWorkspace::load(session.clone(), id),
        session.call::<Page>(Call::new(Method::GET, path.clone()).query(q.api_query())),
        session.call::<ArtifactStats>(Call::new(Method::GET, format!("{path}/stats"))),
    );
    let w = w?;
    let top: Vec<String> = stats
        .map(|s| s.most_used_tags.into_iter().map(|t| t.tag).collect())
        .unwrap_or_default();
    Ok(match page {
        Ok(p) => list_view(&w, &q, Some(&p), &top, None).into_response(),
        Err(WebError::Api(e)) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            (e.status, list_view(&w, &q, None, &top, Some(&e))).into_response()
        }
        Err(e) => return Err(e),
    })
}

fn form_view(
    w: &InWorkspace,
    title: &str,
    action: &str,
    f: &ArtifactForm,
    err: Option<&ApiFailure>,
    preview: Option<&str>,
) -> Markup {
    layout(
        &format!("{title} · {}", w.workspace.name),
        &w.nav(),
        html! {
            h1 {
                (title)
                @if let Some(name) = preview { ": " span data-bind="name" { (name) } }
            }
            form class="stack" method="post" action=(action)
                data-optimistic=[preview.map(|_| "edit")] novalidate {
                (csrf_field(w.session.csrf()))
                @if let Some(v) = f.version { input type="hidden" name="version" value=(v); }
                (form_error(err))
                (artifact_fields(f, err))
                button type="submit" { "Save" }
            }
            @if preview.is_some() {
                p { a href=(action) { "Back to the artifact" } }
            }
        },
    )
}

pub async fn new(session: Session, Path(id): Path<Uuid>) -> WebResult<Markup> {
    let w = InWorkspace::load(session, id).await?;
    let action = format!("{}/artifacts", w.base());
    Ok(form_view(
        &w,
        "New artifact",
        &action,
        &ArtifactForm::default(),
        None,
        None,
    ))
}

pub async fn create(
    session: Session,
    fetch: Fetch,
    Path(id): Path<Uuid>,
    Form(f): Form<ArtifactForm>,
) -> WebResult<Response> {
    let result = match f.body() {
        Ok(body) => {
            session
                .call::<Artifact>(
                    Call::new(Method::POST, format!("/api/v1/workspaces/{id}/artifacts"))
                        .json(body),
                )
                .await
        }
        Err(e) => Err(WebError::Api(e)),
    };
    match result {
        Ok(a) => {
            let url = format!("/w/{id}/artifacts/{}", a.id);
            Ok(saved(
                &fetch,
                &url,
                json!({"url": url, "version": a.version}),
            ))
        }
        Err(e @ WebError::Api(_)) => {
            let w = InWorkspace::load(session, id).await?;
            let action = format!("{}/artifacts", w.base());
            Ok(refused(&fetch, e, Value::Null, |e| {
                form_view(&w, "New artifact", &action, &f, Some(e), None)
            }))
        }
        Err(e) => Err(e),
    }
}

fn artifact_path(id: Uuid, artifact: Uuid) -> String {
    format!("/api/v1/workspaces/{id}/artifacts/{artifact}")
}

async fn load(session: Session, id: Uuid, artifact: Uuid) -> WebResult<(InWorkspace, Artifact)> {
    let (w, a) = tokio::join!(
        InWorkspace::load(session.clone(), id),
        session.call::<Artifact>(Call::new(Method::GET, artifact_path(id, artifact))),
    );
    Ok((w?, a?))
}

pub async fn detail(
    session: Session,
    Path((id, artifact)): Path<(Uuid, Uuid)>,
) -> WebResult<Markup> {
    let (w, a) = load(session, id, artifact).await?;
    let base = w.base();
    Ok(layout(
        &format!("{} · {}", a.name, w.workspace.name),
        &w.nav(),
        html! {
            p { a href=(format!("{base}/artifacts")) { "← All artifacts" } }
            h1 { (a.name) }
            @if let Some(d) = &a.description { p { (d) } }
            dl class="meta" {
                dt { "Tags" } dd { @if a.tags.is_empty() { "—" } @else { (a.tags.join(", ")) } }
                dt { "Version" } dd { (a.version) }
                dt { "Created" } dd { time datetime=(a.created_at) { (a.created_at) } }
                dt { "Updated" } dd { time datetime=(a.updated_at) { (a.updated_at) } }
            }
            h2 { "Metadata" }
            @if a.artifact_metadata.is_empty() {
                p class="hint" { "No metadata." }
            } @else {
                dl class="meta" {
                    @for (k, v) in &a.artifact_metadata {
                        dt { (k) }
                        dd { @match v { Value::String(s) => (s), other => (other.to_string()) } }
                    }
                }
            }
            p class="toolbar" {
                a class="button" href=(format!("{base}/artifacts/{}/edit", a.id)) { "Edit" }
            }
            form method="post" action=(format!("{base}/artifacts/{}/delete", a.id)) {
                (csrf_field(w.session.csrf()))
                button type="submit" class="danger" { "Delete this artifact" }
            }
        },
    ))
}

pub async fn edit(session: Session, Path((id, artifact)): Path<(Uuid, Uuid)>) -> WebResult<Markup> {
    let (w, a) = load(session, id, artifact).await?;
    let action = format!("{}/artifacts/{}", w.base(), a.id);
    Ok(form_view(
        &w,
        "Edit",
        &action,
        &ArtifactForm::from_artifact(&a),
        None,
        Some(&a.name),
    ))
}

/// Saves with the version the form was loaded at. When someone else saved first (409), the
/// form comes back with the user's text, a message naming the newer version, and that version
/// in the form, so saving again deliberately overwrites.
pub async fn update(
    session: Session,
    fetch: Fetch,
    Path((id, artifact)): Path<(Uuid, Uuid)>,
    Form(mut f): Form<ArtifactForm>,
) -> WebResult<Response> {
    let result = match f.body() {
        Ok(body) => {
            session
                .call::<Artifact>(Call::new(Method::PUT, artifact_path(id, artifact)).json(body))
                .await
        }
        Err(e) => Err(WebError::Api(e)),
    };
    let url = format!("/w/{id}/artifacts/{artifact}");
    match result {
        Ok(a) => Ok(saved(&fetch, &url, json!({"version": a.version}))),
        Err(WebError::Api(mut e)) => {
            let (w, current) = load(session, id, artifact).await?;
            if e.status == StatusCode::CONFLICT || e.status == StatusCode::PRECONDITION_FAILED {
                e.message = format!(
                    "Someone else saved this artifact while you were editing (it is now version {}, named “{}”). Your text is kept below: save again to replace their change, or open the artifact to see it.",
                    current.version, current.name
                );
                f.version = Some(current.version);
            }
            let preview = current.name.clone();
            Ok(refused(
                &fetch,
                WebError::Api(e),
                json!({"version": f.version}),
                |e| form_view(&w, "Edit", &url, &f, Some(e), Some(&preview)),
            ))
        }
        Err(e) => Err(e),
    }
}

pub async fn delete(
    session: Session,
    fetch: Fetch,
    Path((id, artifact)): Path<(Uuid, Uuid)>,
) -> WebResult<Response> {
    match session
        .call::<Value>(Call::new(Method::DELETE, artifact_path(id, artifact)))
        .await
    {
        Ok(_) => Ok(saved(
            &fetch,
            &format!("/w/{id}/artifacts?notice=deleted"),
            Value::Null,
        )),
        Err(e @ WebError::Api(_)) => Ok(refused(&fetch, e, Value::Null, |e| {
            message_page("Not deleted", &e.summary())
        })),
        Err(e) => Err(e),
    }
}
