//! Response bodies: the wire shapes of the v1 contract. Timestamps are RFC 3339 UTC.

use chrono::{DateTime, SecondsFormat, Utc};
use ghostworks_db::{artifacts::Artifact, users::User, workspaces::Member, workspaces::Workspace};
use ghostworks_domain::{account::full_name, Role};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

impl Message {
    pub fn new(m: impl Into<String>) -> Self {
        Self { message: m.into() }
    }
}

#[derive(Serialize, ToSchema)]
/// The same for a new address and for one that already has an account.
pub struct RegisterOut {
    pub message: String,
    /// The address as stored (lower-cased).
    pub email: String,
    pub verification_required: bool,
}

#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
}

impl From<ghostworks_auth::Issued> for TokenOut {
    fn from(i: ghostworks_auth::Issued) -> Self {
        TokenOut {
            access_token: i.access,
            refresh_token: i.refresh,
            token_type: "bearer",
            expires_in: i.expires_in,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SwitchOut {
    pub message: String,
    pub workspace_id: Uuid,
    pub role: Role,
    #[serde(flatten)]
    pub tokens: TokenOut,
}

#[derive(Serialize, ToSchema)]
pub struct CurrentWorkspace {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct MeOut {
    pub id: Uuid,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub full_name: String,
    pub is_verified: bool,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub current_workspace: Option<CurrentWorkspace>,
}

impl MeOut {
    pub fn new(u: &User, current_workspace: Option<CurrentWorkspace>) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            full_name: full_name(u.first_name.as_deref(), u.last_name.as_deref(), &u.email),
            is_verified: u.is_verified,
            is_active: u.is_active,
            created_at: u.created_at,
            updated_at: u.updated_at,
            current_workspace,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceOut {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    #[schema(value_type = Object)]
    pub settings: Value,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub member_count: i64,
    pub user_role: Option<Role>,
}

impl WorkspaceOut {
    pub fn new(w: Workspace, role: Role) -> Self {
        Self {
            id: w.id,
            name: w.name,
            slug: w.slug,
            description: w.description,
            settings: w.settings,
            is_active: w.is_active,
            created_at: w.created_at,
            updated_at: w.updated_at,
            member_count: w.member_count,
            user_role: Some(role),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MemberOut {
    pub id: Uuid,
    pub user_id: Uuid,
    pub user_email: String,
    pub user_name: String,
    pub role: Role,
    pub is_active: bool,
    pub joined_at: DateTime<Utc>,
}

impl From<Member> for MemberOut {
    fn from(m: Member) -> Self {
        Self {
            id: m.id,
            user_id: m.user_id,
            user_name: full_name(m.first_name.as_deref(), m.last_name.as_deref(), &m.email),
            user_email: m.email,
            role: m.role.0,
            is_active: m.is_active,
            joined_at: m.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
/// The same whether or not the address has an account.
pub struct MemberInvited {
    pub message: String,
    /// The address as stored (lower-cased).
    pub email: String,
    pub role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct RoleChanged {
    pub message: String,
    pub user_id: Uuid,
    pub old_role: Role,
    pub new_role: Role,
}

#[derive(Serialize, ToSchema)]
pub struct MemberRemoved {
    pub message: String,
    pub user_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct ArtifactOut {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub tags: Vec<String>,
    #[schema(value_type = Object)]
    pub artifact_metadata: Value,
    pub created_by: Option<Uuid>,
    pub is_active: bool,
    /// Optimistic-concurrency version; also sent as the `ETag`.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Artifact> for ArtifactOut {
    fn from(a: Artifact) -> Self {
        Self {
            id: a.id,
            tenant_id: a.tenant_id,
            name: a.name,
            description: a.description,
            tags: a.tags,
            artifact_metadata: a.artifact_metadata,
            created_by: a.created_by,
            is_active: a.deleted_at.is_none(),
            version: a.version,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ArtifactPage {
    pub items: Vec<ArtifactOut>,
    /// The number of matches: exact when `total_exact`, else a lower bound (a filtered
    /// listing counts at most 1,000 matches).
    pub total: i64,
    pub total_exact: bool,
    pub limit: i64,
    pub offset: i64,
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last page and for `sort=relevance`.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TagCount {
    pub tag: String,
    pub count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ArtifactStatsOut {
    pub total_artifacts: i64,
    pub active_artifacts: i64,
    pub most_used_tags: Vec<TagCount>,
    /// Number of distinct tags on live artifacts (the original counted the top-10 list).
    pub total_tags: i64,
}

/// The caller's statistics: the workspaces they are an active member of, counted at
/// `timestamp`.
#[derive(Clone, Serialize, ToSchema)]
pub struct SystemStatsOut {
    /// Distinct active members of those workspaces, the caller included.
    pub users: i64,
    pub workspaces: i64,
    /// Soft-deleted ones included.
    pub artifacts: i64,
    pub active_artifacts: i64,
    pub per_workspace: Vec<WorkspaceStatsOut>,
    pub timestamp: String,
}

#[derive(Clone, Serialize, ToSchema)]
pub struct WorkspaceStatsOut {
    pub workspace_id: Uuid,
    pub name: String,
    pub members: i64,
    pub artifacts: i64,
    pub active_artifacts: i64,
}

/// The figures of the last scheduled maintenance run (zero, with `computed_at` null, before
/// the first).
#[derive(Serialize, ToSchema)]
pub struct UsageOut {
    pub workspace_id: Uuid,
    /// Live artifacts.
    pub artifacts: i64,
    /// Soft-deleted artifacts not yet purged (ARTIFACT_RETENTION_DAYS).
    pub deleted_artifacts: i64,
    /// Distinct tags on live artifacts.
    pub distinct_tags: i64,
    /// Tags on live artifacts, counted per artifact.
    pub tag_uses: i64,
    /// Bytes of name, description and metadata (as JSON) of every stored artifact.
    pub storage_bytes: i64,
    pub computed_at: Option<DateTime<Utc>>,
}
