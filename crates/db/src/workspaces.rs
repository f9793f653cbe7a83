//! Workspaces (the `tenants` table) and their memberships. Every function runs inside a
//! transaction whose scope (see [`crate::scoped`]) row-level security checks.

use chrono::{DateTime, Utc};
use ghostworks_domain::workspace::{NewWorkspace, WorkspaceUpdateInput};
use ghostworks_domain::Role;
use serde_json::Value;
use uuid::Uuid;

use crate::{DbError, DbResult, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Workspace {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub settings: Value,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub member_count: i64,
}

const WORKSPACE: &str = "SELECT t.id, t.name, t.slug, t.description, t.settings, t.is_active, t.created_at, t.updated_at, \
     (SELECT count(*) FROM workspace_memberships m WHERE m.tenant_id = t.id AND m.is_active) AS member_count \
     FROM tenants t";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub id: Uuid,
    pub user_id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// The `workspace_role` enum as read through `role::text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleColumn(pub Role);

impl TryFrom<String> for RoleColumn {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
            .map(RoleColumn)
            .map_err(|_| format!("unknown role {s}"))
    }
}

/// Creates a workspace with its creator as owner. The transaction must be scoped to `id`.
#[tracing::instrument(name = "workspaces.create", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn create(tx: &mut Tx, id: Uuid, owner: Uuid, w: &NewWorkspace) -> DbResult<Workspace> {
    sqlx::query(
        "INSERT INTO tenants (id, name, slug, description, settings) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(&w.name)
    .bind(&w.slug)
    .bind(&w.description)
    .bind(Value::Object(w.settings.clone()))
    .execute(&mut **tx)
    .await
    .map_err(DbError::from_sqlx)?;
    add_member(tx, id, owner, Role::Owner).await?;
    Ok(get(tx, id).await?.expect("workspace just created"))
}

#[tracing::instrument(name = "workspaces.get", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn get(tx: &mut Tx, id: Uuid) -> sqlx::Result<Option<Workspace>> {
    sqlx::query_as(&format!("{WORKSPACE} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

#[tracing::instrument(name = "workspaces.by_slug", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn by_slug(tx: &mut Tx, slug: &str) -> sqlx::Result<Option<Workspace>> {
    sqlx::query_as(&format!("{WORKSPACE} WHERE t.slug = $1"))
        .bind(slug)
        .fetch_optional(&mut **tx)
        .await
}

#[tracing::instrument(name = "workspaces.update", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn update(
    tx: &mut Tx,
    id: Uuid,
    u: &WorkspaceUpdateInput,
) -> sqlx::Result<Option<Workspace>> {
    sqlx::query(
        "UPDATE tenants SET name = COALESCE($2, name), description = COALESCE($3, description), \
         settings = COALESCE($4, settings), is_active = COALESCE($5, is_active) WHERE id = $1",
    )
    .bind(id)
    .bind(&u.name)
    .bind(&u.description)
    .bind(u.settings.clone().map(Value::Object))
    .bind(u.is_active)
    .execute(&mut **tx)
    .await?;
    get(tx, id).await
}

/// The active workspaces the scoped user belongs to, with their role, oldest membership first.
/// Needs only the user scope: the member-read policies show one's own memberships.
#[tracing::instrument(name = "workspaces.memberships_of_user", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn memberships_of_user(tx: &mut Tx, user: Uuid) -> sqlx::Result<Vec<(Uuid, Role)>> {
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT m.tenant_id, m.role::text FROM workspace_memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.user_id = $1 AND m.is_active AND t.is_active ORDER BY m.created_at",
    )
    .bind(user)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(t, r)| Some((t, r.parse().ok()?)))
        .collect())
}

/// The caller's active role in the scoped workspace, and whether the workspace is active.
#[tracing::instrument(name = "workspaces.role_of", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn role_of(tx: &mut Tx, tenant: Uuid, user: Uuid) -> sqlx::Result<Option<(Role, bool)>> {
    let row: Option<(String, bool)> = sqlx::query_as(
        "SELECT m.role::text, t.is_active FROM workspace_memberships m JOIN tenants t ON t.id = m.tenant_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.is_active",
    )
    .bind(tenant)
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(row.and_then(|(r, active)| Some((r.parse().ok()?, active))))
}

const MEMBER: &str = "SELECT m.id, m.user_id, u.email, u.first_name, u.last_name, m.role::text AS role, m.is_active, m.created_at \
     FROM workspace_memberships m JOIN users u ON u.id = m.user_id";

#[tracing::instrument(name = "workspaces.members", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn members(tx: &mut Tx, tenant: Uuid) -> sqlx::Result<Vec<Member>> {
    sqlx::query_as(&format!("{MEMBER} WHERE m.tenant_id = $1 AND m.is_active AND u.is_active ORDER BY m.created_at, m.id"))
        .bind(tenant)
        .fetch_all(&mut **tx)
        .await
}

/// Any membership row of the user in the workspace, active or not.
#[tracing::instrument(name = "workspaces.member", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn member(tx: &mut Tx, tenant: Uuid, user: Uuid) -> sqlx::Result<Option<Member>> {
    sqlx::query_as(&format!(
        "{MEMBER} WHERE m.tenant_id = $1 AND m.user_id = $2"
    ))
    .bind(tenant)
    .bind(user)
    .fetch_optional(&mut **tx)
    .await
}

/// Adds a member, or reactivates a removed one with the new role; false when the user is
/// already an active member. The statement decides, under the (user, workspace) unique key,
/// so of concurrent adds of one person exactly one succeeds.
#[tracing::instrument(name = "workspaces.add_member", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn add_member(tx: &mut Tx, tenant: Uuid, user: Uuid, role: Role) -> DbResult<bool> {
    let added = sqlx::query(
        "INSERT INTO workspace_memberships (id, user_id, tenant_id, role) VALUES ($1, $2, $3, $4::workspace_role) \
         ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = EXCLUDED.role, is_active = true \
         WHERE NOT workspace_memberships.is_active",
    )
    .bind(Uuid::new_v4())
    .bind(user)
    .bind(tenant)
    .bind(role.as_str())
    .execute(&mut **tx)
    .await
    .map_err(DbError::from_sqlx)?;
    Ok(added.rows_affected() == 1)
}

/// Active owners, counted under a row lock so two concurrent demotions cannot both pass the
/// last-owner rule.
#[tracing::instrument(name = "workspaces.lock_owner_count", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn lock_owner_count(tx: &mut Tx, tenant: Uuid) -> sqlx::Result<i64> {
    let owners: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM workspace_memberships WHERE tenant_id = $1 AND is_active AND role = 'owner' FOR UPDATE",
    )
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await?;
    Ok(owners.len() as i64)
}

#[tracing::instrument(name = "workspaces.set_role", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn set_role(tx: &mut Tx, tenant: Uuid, user: Uuid, role: Role) -> sqlx::Result<()> {
    sqlx::query("UPDATE workspace_memberships SET role = $3::workspace_role WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant)
        .bind(user)
        .bind(role.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "workspaces.deactivate_member", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn deactivate_member(tx: &mut Tx, tenant: Uuid, user: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE workspace_memberships SET is_active = false WHERE tenant_id = $1 AND user_id = $2",
    )
    .bind(tenant)
    .bind(user)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What the statistics show of one workspace.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Counts {
    pub name: String,
    /// The users of its active memberships.
    pub members: Vec<Uuid>,
    /// Soft-deleted ones included.
    pub artifacts: i64,
    pub active_artifacts: i64,
}

/// The scoped workspace's figures, counted now.
#[tracing::instrument(name = "workspaces.counts", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn counts(tx: &mut Tx, tenant: Uuid) -> sqlx::Result<Option<Counts>> {
    sqlx::query_as(
        "SELECT t.name, \
         ARRAY(SELECT m.user_id FROM workspace_memberships m WHERE m.tenant_id = t.id AND m.is_active) AS members, \
         (SELECT count(*) FROM artifacts a WHERE a.tenant_id = t.id) AS artifacts, \
         (SELECT count(*) FROM artifacts a WHERE a.tenant_id = t.id AND a.deleted_at IS NULL) AS active_artifacts \
         FROM tenants t WHERE t.id = $1",
    )
    .bind(tenant)
    .fetch_optional(&mut **tx)
    .await
}

/// The scoped workspace's name (what the worker may read of it).
#[tracing::instrument(name = "workspaces.name", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn name(tx: &mut Tx, id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}
