use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use ghostworks_db::{audit, users, workspaces, DbError};
use ghostworks_domain::account::Email;
use ghostworks_domain::role::{check_membership_change, MembershipRuleError};
use ghostworks_domain::workspace::{WorkspaceInput, WorkspaceUpdateInput};
use ghostworks_domain::{FieldError, Role};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::dto::{
    MemberInvited, MemberOut, MemberRemoved, RoleChanged, SwitchOut, UsageOut, WorkspaceOut,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{workspace_not_found, AuthUser, Body, MemberPath, Origin, StandbyRead, Ws};
use crate::{ratelimit, AppState};

#[utoipa::path(post, path = "/api/v1/workspaces", tag = "workspaces", security(("bearer" = [])), request_body = WorkspaceInput,
    responses((status = 201, body = WorkspaceOut), (status = 409), (status = 422)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    origin: Origin,
    Body(input): Body<WorkspaceInput>,
) -> ApiResult<(StatusCode, Json<WorkspaceOut>)> {
    let new = input.validate()?;
    let id = Uuid::new_v4();
    let mut tx = ghostworks_db::scoped(state.db(), Some(id), Some(user.id())).await?;
    let ws = workspaces::create(&mut tx, id, user.id(), &new)
        .await
        .map_err(|e| match e {
            DbError::Conflict(_) => {
                ApiError::Conflict(format!("Workspace with slug '{}' already exists", new.slug))
            }
            other => other.into(),
        })?;
    let event = audit::Event {
        tenant: Some(id),
        actor: Some(user.id()),
        action: "workspace.created",
        details: json!({"slug": new.slug}),
    };
    audit::record(&mut *tx, &origin.0, event).await?;
    tx.commit().await?;
    state
        .metrics()
        .workspace_operations
        .with_label_values(&["create"])
        .inc();
    Ok((
        StatusCode::CREATED,
        Json(WorkspaceOut::new(ws, Role::Owner)),
    ))
}

#[utoipa::path(get, path = "/api/v1/workspaces", tag = "workspaces", security(("bearer" = [])),
    responses((status = 200, body = Vec<WorkspaceOut>)))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> ApiResult<Json<Vec<WorkspaceOut>>> {
    let mut tx = ghostworks_db::scoped(state.db(), None, Some(user.id())).await?;
    let mine = workspaces::memberships_of_user(&mut tx, user.id()).await?;
    let mut out = Vec::with_capacity(mine.len());
    // Member counts need each workspace's own scope; a user belongs to few workspaces.
    for (tenant, role) in mine {
        ghostworks_db::set_scope(&mut tx, Some(tenant), Some(user.id())).await?;
        if let Some(w) = workspaces::get(&mut tx, tenant).await? {
            out.push(WorkspaceOut::new(w, role));
        }
    }
    tx.commit().await?;
    Ok(Json(out))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)), responses((status = 200, body = WorkspaceOut), (status = 404)))]
pub async fn get(_standby: StandbyRead, mut ws: Ws) -> ApiResult<Json<WorkspaceOut>> {
    let w = workspaces::get(&mut ws.tx, ws.id)
        .await?
        .filter(|w| w.is_active)
        .ok_or_else(|| ApiError::NotFound("Workspace not found".into()))?;
    let role = ws.role;
    ws.end_read();
    Ok(Json(WorkspaceOut::new(w, role)))
}

#[utoipa::path(put, path = "/api/v1/workspaces/{workspace_id}", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)), request_body = WorkspaceUpdateInput,
    description = "Partial update (absent or null fields stay as they are); admin or owner.",
    responses((status = 200, body = WorkspaceOut), (status = 403), (status = 404), (status = 422)))]
pub async fn update(
    mut ws: Ws,
    Body(input): Body<WorkspaceUpdateInput>,
) -> ApiResult<Json<WorkspaceOut>> {
    ws.require(Role::Admin)?;
    let input = input.validate()?;
    let w = workspaces::update(&mut ws.tx, ws.id, &input)
        .await?
        .ok_or_else(|| ApiError::NotFound("Workspace not found".into()))?;
    ws.audit(
        "workspace.updated",
        json!({"fields": changed_fields(&input)}),
    )
    .await?;
    let role = ws.role;
    ws.commit().await?;
    Ok(Json(WorkspaceOut::new(w, role)))
}

fn changed_fields(u: &WorkspaceUpdateInput) -> Vec<&'static str> {
    [
        ("name", u.name.is_some()),
        ("description", u.description.is_some()),
        ("settings", u.settings.is_some()),
        ("is_active", u.is_active.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, set)| set.then_some(n))
    .collect()
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/members", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)), responses((status = 200, body = Vec<MemberOut>), (status = 404)))]
pub async fn members(_standby: StandbyRead, mut ws: Ws) -> ApiResult<Json<Vec<MemberOut>>> {
    let members = workspaces::members(&mut ws.tx, ws.id).await?;
    ws.end_read();
    Ok(Json(members.into_iter().map(MemberOut::from).collect()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMemberInput {
    email: String,
    role: Role,
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/members", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)), request_body = AddMemberInput,
    description = "Adds the account with this address, if there is one, and e-mails it (admin or owner; only an owner can add an owner); a removed member is re-activated. The answer is the same whether or not the address has an account. At most one invitation e-mail per workspace and address a day; each inviter and each address have limits of their own (429).",
    responses((status = 202, body = MemberInvited), (status = 403), (status = 404), (status = 409), (status = 422), (status = 429)))]
pub async fn add_member(
    State(state): State<AppState>,
    mut ws: Ws,
    Body(input): Body<AddMemberInput>,
) -> ApiResult<(StatusCode, Json<MemberInvited>)> {
    ws.require(Role::Admin)?;
    if input.role == Role::Owner {
        ws.require(Role::Owner)?;
    }
    let email = Email::parse(&input.email)
        .map_err(|m| ApiError::field(FieldError::body("email", "value_error", m)))?;
    ratelimit::invitation(&state, ws.caller.id(), email.as_str()).await?;
    let user = users::by_email(&mut *ws.tx, email.as_str())
        .await?
        .filter(|u| u.is_active);
    if let Some(user) = user {
        add_account(&state, &mut ws, user.id, input.role).await?;
    }
    ws.commit().await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MemberInvited {
            message: "If this address has an account, it is now a member and was e-mailed".into(),
            email: email.as_str().to_string(),
            role: input.role,
        }),
    ))
}

/// Adds an existing account to the workspace and queues its invitation e-mail (unless one
/// went out in the current window).
async fn add_account(state: &AppState, ws: &mut Ws, user: Uuid, role: Role) -> ApiResult<()> {
    if !workspaces::add_member(&mut ws.tx, ws.id, user, role).await? {
        return Err(ApiError::Conflict(
            "User is already a member of this workspace".into(),
        ));
    }
    let job =
        ghostworks_queue::kinds::invitation_email(ws.id, user, ws.caller.id(), role, Utc::now());
    let kind = job.kind();
    let queued = ghostworks_queue::enqueue(&mut ws.tx, job).await?;
    ws.audit("member.added", json!({"user_id": user, "role": role}))
        .await?;
    let metrics = state.metrics();
    metrics
        .workspace_operations
        .with_label_values(&["invite_member"])
        .inc();
    if queued.is_some() {
        metrics.jobs_enqueued.with_label_values(&[kind]).inc();
    }
    Ok(())
}

fn rule_error(e: MembershipRuleError) -> ApiError {
    match e {
        MembershipRuleError::Insufficient { .. } => {
            ApiError::forbidden("insufficient_role", e.to_string())
        }
        MembershipRuleError::OwnRole => ApiError::forbidden("own_role", e.to_string()),
        MembershipRuleError::LastOwner => ApiError::Conflict(e.to_string()),
    }
}

/// The target's active role, under the owner-count lock the last-owner rule needs.
async fn target(ws: &mut Ws, path: &MemberPath) -> ApiResult<(Uuid, Role, i64)> {
    let user = path.user_id.get("Member")?;
    let owners = workspaces::lock_owner_count(&mut ws.tx, ws.id).await?;
    let member = workspaces::member(&mut ws.tx, ws.id, user)
        .await?
        .filter(|m| m.is_active)
        .ok_or_else(|| ApiError::NotFound("Member not found in this workspace".into()))?;
    Ok((user, member.role.0, owners))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    role: Role,
}

#[utoipa::path(put, path = "/api/v1/workspaces/{workspace_id}/members/{user_id}/role", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ("user_id" = Uuid, Path)), request_body = RoleInput,
    description = "Admins manage members and admins; only an owner grants or revokes ownership; the last owner stays an owner; nobody changes their own role.",
    responses((status = 200, body = RoleChanged), (status = 403), (status = 404), (status = 409)))]
pub async fn change_role(
    mut ws: Ws,
    Path(path): Path<MemberPath>,
    Body(input): Body<RoleInput>,
) -> ApiResult<Json<RoleChanged>> {
    ws.require(Role::Admin)?;
    let (user, old, owners) = target(&mut ws, &path).await?;
    check_membership_change(
        ws.role,
        user == ws.caller.id(),
        old,
        Some(input.role),
        owners,
    )
    .map_err(rule_error)?;
    workspaces::set_role(&mut ws.tx, ws.id, user, input.role).await?;
    ws.audit(
        "member.role_changed",
        json!({"user_id": user, "old_role": old, "new_role": input.role}),
    )
    .await?;
    ws.commit().await?;
    Ok(Json(RoleChanged {
        message: "Member role updated successfully".into(),
        user_id: user,
        old_role: old,
        new_role: input.role,
    }))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{workspace_id}/members/{user_id}", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path), ("user_id" = Uuid, Path)),
    description = "Removes a member (admin or owner; owners only by an owner). Any member may remove themselves (leave), except the last owner.",
    responses((status = 200, body = MemberRemoved), (status = 403), (status = 404), (status = 409)))]
pub async fn remove_member(
    mut ws: Ws,
    Path(path): Path<MemberPath>,
) -> ApiResult<Json<MemberRemoved>> {
    let (user, old, owners) = target(&mut ws, &path).await?;
    check_membership_change(ws.role, user == ws.caller.id(), old, None, owners)
        .map_err(rule_error)?;
    workspaces::deactivate_member(&mut ws.tx, ws.id, user).await?;
    ws.audit("member.removed", json!({"user_id": user, "role": old}))
        .await?;
    ws.commit().await?;
    Ok(Json(MemberRemoved {
        message: "Member removed successfully".into(),
        user_id: user,
    }))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchInput {
    /// The caller's current refresh token (of the session the access token names); it is
    /// spent, as by `/auth/refresh`.
    refresh_token: String,
}

#[utoipa::path(post, path = "/api/v1/workspaces/{workspace_id}/switch", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)), request_body = SwitchInput,
    description = "The next token pair of the caller's session, scoped to the workspace. Spends the refresh token in the body (which must be of the access token's session): a replayed one revokes the session.",
    responses((status = 200, body = SwitchOut), (status = 401), (status = 404)))]
pub async fn switch(
    State(state): State<AppState>,
    ws: Ws,
    Body(input): Body<SwitchInput>,
) -> ApiResult<Json<SwitchOut>> {
    if !ws.active {
        return Err(workspace_not_found(&ws.id.to_string()));
    }
    let (id, role, session) = (ws.id, ws.role, ws.caller.claims.sid);
    let origin = ws.origin.0.clone();
    // Membership is settled; the session's tokens are the auth service's own transaction.
    ws.commit().await?;
    let issued = state
        .auth()
        .switch(session, &input.refresh_token, (id, role), &origin)
        .await?;
    Ok(Json(SwitchOut {
        message: "Workspace switched successfully".into(),
        workspace_id: id,
        role,
        tokens: issued.into(),
    }))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{workspace_id}/usage", tag = "workspaces", security(("bearer" = [])),
    params(("workspace_id" = Uuid, Path)),
    description = "Usage figures as of the last scheduled maintenance (the worker recomputes them every MAINTENANCE_INTERVAL_SECONDS).",
    responses((status = 200, body = UsageOut), (status = 404)))]
pub async fn usage(_standby: StandbyRead, mut ws: Ws) -> ApiResult<Json<UsageOut>> {
    let u = ghostworks_db::usage::get(&mut ws.tx, ws.id).await?;
    let id = ws.id;
    ws.end_read();
    Ok(Json(match u {
        Some(u) => UsageOut {
            workspace_id: id,
            artifacts: u.artifacts,
            deleted_artifacts: u.deleted_artifacts,
            distinct_tags: u.distinct_tags,
            tag_uses: u.tag_uses,
            storage_bytes: u.storage_bytes,
            computed_at: Some(u.computed_at),
        },
        None => UsageOut {
            workspace_id: id,
            artifacts: 0,
            deleted_artifacts: 0,
            distinct_tags: 0,
            tag_uses: 0,
            storage_bytes: 0,
            computed_at: None,
        },
    }))
}
