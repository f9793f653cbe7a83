//! Users are global (not tenant-scoped): a person logs in before choosing a workspace.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ghostworks_domain::Role;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgExecutor, PgPool, Row};
use uuid::Uuid;

use crate::{DbError, DbResult, Tx};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub hashed_password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub is_verified: bool,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, hashed_password, first_name, last_name, is_verified, is_active, created_at, updated_at";

pub struct NewUser<'a> {
    pub email: &'a str,
    pub hashed_password: &'a str,
    pub first_name: Option<&'a str>,
    pub last_name: Option<&'a str>,
    pub is_verified: bool,
}

#[tracing::instrument(name = "users.insert", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn insert(db: impl PgExecutor<'_>, u: &NewUser<'_>) -> DbResult<User> {
    sqlx::query_as(&format!(
        "INSERT INTO users (id, email, hashed_password, first_name, last_name, is_verified) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::new_v4())
    .bind(u.email)
    .bind(u.hashed_password)
    .bind(u.first_name)
    .bind(u.last_name)
    .bind(u.is_verified)
    .fetch_one(db)
    .await
    .map_err(DbError::from_sqlx)
}

#[tracing::instrument(name = "users.by_email", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn by_email(db: impl PgExecutor<'_>, email: &str) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
        .bind(email)
        .fetch_optional(db)
        .await
}

#[tracing::instrument(name = "users.by_id", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The user behind an access token, provided the token's session is still live.
#[tracing::instrument(name = "users.by_id_with_live_session", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn by_id_with_live_session(
    pool: &PgPool,
    id: Uuid,
    session: Uuid,
) -> sqlx::Result<Option<User>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM users u WHERE u.id = $1 AND EXISTS \
         (SELECT 1 FROM sessions s WHERE s.id = $2 AND s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now())"
    ))
    .bind(id)
    .bind(session)
    .fetch_optional(pool)
    .await
}

/// How an authenticated request got into a workspace ([`enter_workspace`]).
#[derive(Debug)]
pub enum Entry {
    /// No such user, or the session is no longer live: nothing was scoped.
    NoSession,
    /// Scoped, but the caller is not an active member of the workspace.
    NotMember(User),
    Member {
        user: User,
        role: Role,
        workspace_active: bool,
    },
}

/// Which server a workspace request's transaction runs on.
#[derive(Debug, Clone, Copy)]
pub enum Server {
    Primary,
    /// A hot standby, provided it has replayed the WAL up to `replayed_past` (a position
    /// from [`crate::wal_position`]; None: nothing to wait for). When it is not a standby or
    /// has not replayed that far, nothing is found ([`Entry::NoSession`]).
    Standby {
        replayed_past: Option<i64>,
    },
}

/// Begins the tenant-scoped transaction of an authenticated request (as [`crate::scoped`]),
/// finds its caller and the caller's membership, in one round trip after BEGIN: the function
/// of migration 0011 checks the live session, makes the transaction-local settings, then reads
/// the membership under row-level security, in that order. A `statement_timeout` applies to
/// the transaction's later statements (the connection's own otherwise).
#[tracing::instrument(name = "users.enter_workspace", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn enter_workspace(
    pool: &PgPool,
    server: Server,
    tenant: Uuid,
    id: Uuid,
    session: Uuid,
    statement_timeout: Option<Duration>,
) -> sqlx::Result<(Tx, Entry)> {
    let mut tx = pool.begin().await?;
    let (caught_up, replayed_past) = match server {
        Server::Primary => ("", None),
        Server::Standby { replayed_past } => (
            " AND pg_is_in_recovery() \
             AND ($5::bigint IS NULL OR pg_last_wal_replay_lsn() >= '0/0'::pg_lsn + $5::bigint::numeric)",
            replayed_past,
        ),
    };
    let sql = format!(
        "SELECT {COLUMNS}, e.member_role, e.workspace_active \
         FROM app_enter_workspace($1, $2, $3, $4) AS e, users u WHERE u.id = $2{caught_up}"
    );
    let mut query = sqlx::query(&sql)
        .bind(tenant)
        .bind(id)
        .bind(session)
        .bind(statement_timeout.map(crate::milliseconds));
    if let Server::Standby { .. } = server {
        query = query.bind(replayed_past);
    }
    let row: Option<(User, Option<String>, Option<bool>)> = query
        .try_map(|row: PgRow| {
            Ok((
                User::from_row(&row)?,
                row.try_get("member_role")?,
                row.try_get("workspace_active")?,
            ))
        })
        .fetch_optional(&mut *tx)
        .await?;
    let entry = match row {
        None => Entry::NoSession,
        Some((user, Some(role), Some(workspace_active))) => match role.parse() {
            Ok(role) => Entry::Member {
                user,
                role,
                workspace_active,
            },
            Err(_) => Entry::NotMember(user),
        },
        Some((user, _, _)) => Entry::NotMember(user),
    };
    Ok((tx, entry))
}

#[tracing::instrument(name = "users.mark_verified", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn mark_verified(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET is_verified = true WHERE id = $1")
        .bind(id)
        .execute(db)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "users.set_password", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn set_password(db: impl PgExecutor<'_>, id: Uuid, hashed: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE users SET hashed_password = $2 WHERE id = $1")
        .bind(id)
        .bind(hashed)
        .execute(db)
        .await?;
    Ok(())
}
