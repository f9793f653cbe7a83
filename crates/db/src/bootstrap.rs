//! Setting up a database on a private server (development, tests, the benchmark): the
//! database itself, then, once migrations created the group roles, the login roles.

use sqlx::{Connection, PgConnection, PgPool};

use crate::{ensure_login_role, APP_ROLE, WORKER_ROLE};

/// The login roles of a private server; each one's password is its name (the server listens
/// on loopback only and holds throwaway data).
pub struct Logins<'a> {
    /// A member of [`APP_ROLE`], for the API.
    pub app: &'a str,
    /// A member of [`WORKER_ROLE`], for the worker, when one runs.
    pub worker: Option<&'a str>,
}

/// Creates `database` unless it exists, connecting as the superuser of `server_url` (a URL of
/// another database on the same server). Database names cannot be bind parameters, so the
/// name is checked instead.
pub async fn create_database(server_url: &str, database: &str) -> sqlx::Result<()> {
    assert!(
        database
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database name {database:?}"
    );
    let mut conn = PgConnection::connect(server_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&mut conn)
            .await?;
    }
    conn.close().await
}

/// Creates the missing login roles in the migrated database of `admin`.
pub async fn create_logins(admin: &PgPool, logins: &Logins<'_>) -> sqlx::Result<()> {
    ensure_login_role(admin, logins.app, logins.app, APP_ROLE).await?;
    if let Some(worker) = logins.worker {
        ensure_login_role(admin, worker, worker, WORKER_ROLE).await?;
    }
    Ok(())
}
