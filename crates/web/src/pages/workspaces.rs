//! The workspace selector and switcher, workspace settings and member management.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use ghostworks_domain::Role;
use maud::{html, Markup};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{refused, saved, Fetch, InWorkspace};
use crate::api::{ApiFailure, Call, Member, Workspace};
use crate::error::{WebError, WebResult};
use crate::session::Session;
use crate::views::{csrf_field, form_error, layout, notice, Field, Nav};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct NewWorkspace {
    name: String,
    slug: String,
    description: String,
}

fn list_view(
    session: &Session,
    all: &[Workspace],
    f: &NewWorkspace,
    err: Option<&ApiFailure>,
) -> Markup {
    let nav = Nav {
        csrf: session.csrf(),
        signed_in: true,
        workspace: None,
        workspaces: all,
    };
    layout(
        "Your workspaces",
        &nav,
        html! {
            h1 { "Your workspaces" }
            @if all.is_empty() {
                p { "You are not a member of any workspace yet. Create one below, or ask an admin to add you." }
            }
            ul class="items" {
                @for w in all {
                    li {
                        a href=(format!("/w/{}/artifacts", w.id)) { (w.name) }
                        span class="hint" { (w.user_role.unwrap_or(Role::Member).as_str()) " · " (w.member_count) " member(s)" }
                    }
                }
            }
            h2 { "Create a workspace" }
            form class="stack" method="post" action="/workspaces" novalidate {
                (csrf_field(session.csrf()))
                (form_error(err))
                (Field::new("Name", "name", &f.name).required().render(err))
                (Field::new("Slug", "slug", &f.slug).required().hint("Lower-case letters, digits and hyphens, e.g. research-lab.").render(err))
                (Field::new("Description (optional)", "description", &f.description).multiline().render(err))
                button type="submit" { "Create workspace" }
            }
        },
    )
}

pub async fn list(session: Session) -> WebResult<Markup> {
    let all: Vec<Workspace> = session
        .call(Call::new(Method::GET, "/api/v1/workspaces"))
        .await?;
    Ok(list_view(&session, &all, &NewWorkspace::default(), None))
}

pub async fn create(session: Session, Form(f): Form<NewWorkspace>) -> WebResult<Response> {
    let body = json!({"name": f.name, "slug": f.slug, "description": if f.description.trim().is_empty() { Value::Null } else { Value::String(f.description.clone()) }});
    match session
        .call::<Workspace>(Call::new(Method::POST, "/api/v1/workspaces").json(body))
        .await
    {
        Ok(w) => Ok(Redirect::to(&format!("/w/{}/artifacts", w.id)).into_response()),
        Err(WebError::Api(e)) => {
            let all: Vec<Workspace> = session
                .call(Call::new(Method::GET, "/api/v1/workspaces"))
                .await?;
            Ok(refused(&Fetch(false), WebError::Api(e), Value::Null, |e| {
                list_view(&session, &all, &f, Some(e))
            }))
        }
        Err(e) => Err(e),
    }
}

pub async fn open(Path(id): Path<Uuid>) -> Redirect {
    Redirect::to(&format!("/w/{id}/artifacts"))
}

#[derive(Deserialize)]
pub struct Switch {
    workspace: Uuid,
}

pub async fn switch(Query(s): Query<Switch>) -> Redirect {
    Redirect::to(&format!("/w/{}/artifacts", s.workspace))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct SettingsForm {
    name: String,
    description: String,
    notice: Option<String>,
}

fn settings_view(w: &InWorkspace, f: &SettingsForm, err: Option<&ApiFailure>) -> Markup {
    let ws = &w.workspace;
    layout(
        &format!("Settings · {}", ws.name),
        &w.nav(),
        html! {
            h1 { "Workspace settings" }
            (notice(f.notice.as_deref().map(|_| "Settings saved.")))
            dl class="meta" {
                dt { "Slug" } dd { (ws.slug) }
                dt { "Your role" } dd { (ws.user_role.unwrap_or(Role::Member).as_str()) }
                dt { "Members" } dd { (ws.member_count) }
            }
            @if ws.can_manage() {
                form class="stack" method="post" action=(format!("{}/settings", w.base())) novalidate {
                    (csrf_field(w.session.csrf()))
                    (form_error(err))
                    (Field::new("Name", "name", &f.name).required().render(err))
                    (Field::new("Description", "description", &f.description).multiline().render(err))
                    button type="submit" { "Save settings" }
                }
            } @else {
                dl class="meta" {
                    dt { "Name" } dd { (ws.name) }
                    dt { "Description" } dd { (ws.description.as_deref().unwrap_or("—")) }
                }
                p class="hint" { "Only owners and admins change these settings." }
            }
        },
    )
}

pub async fn settings(
    session: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<SettingsForm>,
) -> WebResult<Markup> {
    let w = InWorkspace::load(session, id).await?;
    let f = SettingsForm {
        name: w.workspace.name.clone(),
        description: w.workspace.description.clone().unwrap_or_default(),
        notice: q.notice,
    };
    Ok(settings_view(&w, &f, None))
}

pub async fn save_settings(
    session: Session,
    Path(id): Path<Uuid>,
    Form(f): Form<SettingsForm>,
) -> WebResult<Response> {
    let w = InWorkspace::load(session, id).await?;
    let call = Call::new(Method::PUT, format!("/api/v1/workspaces/{id}"))
        .json(json!({"name": f.name, "description": f.description}));
    Ok(match w.session.call::<Value>(call).await {
        Ok(_) => Redirect::to(&format!("/w/{id}/settings?notice=saved")).into_response(),
        Err(e) => refused(&Fetch(false), e, Value::Null, |e| {
            settings_view(&w, &f, Some(e))
        }),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct InviteForm {
    email: String,
    role: String,
    notice: Option<String>,
}

/// The roles the caller may pick: only an owner grants ownership (an owner's row keeps it).
fn role_select(id: &str, current: Role, owner: bool) -> Markup {
    html! {
        select id=(id) name="role" {
            @for r in Role::ALL {
                @if r != Role::Owner || owner || current == Role::Owner {
                    option value=(r.as_str()) selected[r == current] { (r.as_str()) }
                }
            }
        }
    }
}

fn members_view(
    w: &InWorkspace,
    members: &[Member],
    f: &InviteForm,
    err: Option<&ApiFailure>,
) -> Markup {
    let base = w.base();
    let owner = w.workspace.is_owner();
    let note = f.notice.as_deref().map(|n| match n {
        "invited" => "If that address has an account, it is now a member and was sent an e-mail.",
        "role" => "Role changed.",
        _ => "Member removed.",
    });
    layout(
        &format!("Members · {}", w.workspace.name),
        &w.nav(),
        html! {
            h1 { "Members" }
            (notice(note))
            @if err.is_some() && f.email.is_empty() { (form_error(err)) }
            table {
                caption class="hint" { (members.len()) " member(s)" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "E-mail" } th scope="col" { "Role" } th scope="col" { "Remove" } } }
                tbody {
                    @for m in members {
                        tr data-item {
                            td { (m.user_name) }
                            td { (m.user_email) }
                            td {
                                form class="inline" method="post" action=(format!("{base}/members/{}/role", m.user_id)) {
                                    (csrf_field(w.session.csrf()))
                                    label class="visually-hidden" for=(format!("role-{}", m.user_id)) { "Role of " (m.user_email) }
                                    (role_select(&format!("role-{}", m.user_id), m.role, owner))
                                    button type="submit" class="secondary" { "Change" }
                                }
                            }
                            td {
                                form method="post" action=(format!("{base}/members/{}/remove", m.user_id)) data-optimistic="remove" {
                                    (csrf_field(w.session.csrf()))
                                    button type="submit" class="danger" aria-label=(format!("Remove {}", m.user_email)) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Invite a member" }
            p class="hint" { "The person needs an account already (ask them to register first); they get an e-mail with a link to the workspace." }
            form class="stack" method="post" action=(format!("{base}/members")) novalidate {
                (csrf_field(w.session.csrf()))
                @if !f.email.is_empty() { (form_error(err)) }
                (Field::new("E-mail", "email", &f.email).kind("email").required().render(err))
                div class="field" {
                    label for="invite-role" { "Role" }
                    (role_select("invite-role", f.role.parse().unwrap_or(Role::Member), owner))
                }
                button type="submit" { "Add member" }
            }
        },
    )
}

async fn manager(session: Session, id: Uuid) -> WebResult<(InWorkspace, Vec<Member>)> {
    let w = InWorkspace::load(session, id).await?;
    if !w.workspace.can_manage() {
        return Err(WebError::Api(ApiFailure {
            status: StatusCode::FORBIDDEN,
            code: "insufficient_role".into(),
            message: "Only owners and admins manage members.".into(),
            fields: Default::default(),
            retry_after: None,
        }));
    }
    let members = w
        .session
        .call(Call::new(
            Method::GET,
            format!("/api/v1/workspaces/{id}/members"),
        ))
        .await?;
    Ok((w, members))
}

pub async fn members(
    session: Session,
    Path(id): Path<Uuid>,
    Query(q): Query<InviteForm>,
) -> WebResult<Markup> {
    let (w, members) = manager(session, id).await?;
    Ok(members_view(
        &w,
        &members,
        &InviteForm {
            email: String::new(),
            role: String::new(),
            notice: q.notice,
        },
        None,
    ))
}

/// Runs a member change; a refusal re-renders the members page with the message (and the
/// invitation form's input) kept.
async fn member_change(
    session: Session,
    fetch: Fetch,
    id: Uuid,
    call: Call<'_>,
    f: InviteForm,
    done: &str,
) -> WebResult<Response> {
    let result = session.call::<Value>(call).await;
    let to = format!("/w/{id}/members?notice={done}");
    match result {
        Ok(_) => Ok(saved(&fetch, &to, Value::Null)),
        Err(WebError::Api(e)) => {
            let (w, members) = manager(session, id).await?;
            Ok(refused(&fetch, WebError::Api(e), Value::Null, |e| {
                members_view(&w, &members, &f, Some(e))
            }))
        }
        Err(e) => Err(e),
    }
}

pub async fn invite(
    session: Session,
    fetch: Fetch,
    Path(id): Path<Uuid>,
    Form(f): Form<InviteForm>,
) -> WebResult<Response> {
    let call = Call::new(Method::POST, format!("/api/v1/workspaces/{id}/members"))
        .json(json!({"email": f.email, "role": f.role}));
    member_change(session, fetch, id, call, f, "invited").await
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: String,
}

pub async fn change_role(
    session: Session,
    fetch: Fetch,
    Path((id, user)): Path<(Uuid, Uuid)>,
    Form(f): Form<RoleForm>,
) -> WebResult<Response> {
    let call = Call::new(
        Method::PUT,
        format!("/api/v1/workspaces/{id}/members/{user}/role"),
    )
    .json(json!({"role": f.role}));
    member_change(session, fetch, id, call, InviteForm::default(), "role").await
}

pub async fn remove(
    session: Session,
    fetch: Fetch,
    Path((id, user)): Path<(Uuid, Uuid)>,
) -> WebResult<Response> {
    let call = Call::new(
        Method::DELETE,
        format!("/api/v1/workspaces/{id}/members/{user}"),
    );
    member_change(session, fetch, id, call, InviteForm::default(), "removed").await
}
