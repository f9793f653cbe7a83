//! PostgreSQL access: the pool, embedded migrations, tenant-scoped transactions and one
//! repository module per aggregate. Every query is parameterised; tenant isolation itself is
//! enforced by the database (row-level security), keyed by the transaction-local settings
//! that [`scoped`] sets.

pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod maintenance;
pub mod usage;
pub mod users;
pub mod workspaces;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

pub use sqlx::migrate::Migrator;

/// The schema migrations, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// The NOLOGIN role that owns nothing and whose members the API logs in as.
pub const APP_ROLE: &str = "ghostworks_app";

/// The NOLOGIN role whose members the worker logs in as (migration 0002 lists its grants).
pub const WORKER_ROLE: &str = "ghostworks_worker";

pub type Tx = Transaction<'static, Postgres>;

/// A storage failure, or a uniqueness conflict the caller may want to report as such.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unique constraint {0} violated")]
    Conflict(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

impl DbError {
    /// Maps unique violations (SQLSTATE 23505) to [`DbError::Conflict`].
    pub fn from_sqlx(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some("23505") {
                return DbError::Conflict(db.constraint().unwrap_or_default().to_string());
            }
        }
        DbError::Sqlx(e)
    }
}

pub type DbResult<T> = Result<T, DbError>;

/// Why PostgreSQL could not serve a statement, as opposed to refusing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No connection could be had: the pool timed out connecting or waiting, or is closed.
    Unreachable,
    /// A connection broke under a statement: the server shut down or restarted, or the
    /// network failed (SQLSTATE class 08, 57P01-57P03, I/O and TLS errors); or what answered
    /// is not a PostgreSQL server that serves: a proxy closing a connection it has no server
    /// for (sqlx reports that end of stream during the TLS negotiation as a protocol error),
    /// or a primary demoted by a failover, which no longer takes writes (25006).
    ConnectionLost,
}

/// Whether `e` means the database is unavailable rather than that the statement failed.
pub fn unavailable(e: &sqlx::Error) -> Option<Unavailable> {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => Some(Unavailable::Unreachable),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => Some(Unavailable::ConnectionLost),
        sqlx::Error::Database(db) => db
            .code()
            .filter(|c| {
                c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "25006")
            })
            .map(|_| Unavailable::ConnectionLost),
        _ => None,
    }
}

/// Nanoseconds from [`clock`]'s start to the last [`retire_connections`] (0: never).
static RETIRED_BEFORE: AtomicU64 = AtomicU64::new(0);

fn clock() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Marks every connection opened so far, in every pool of this process, as not to be handed
/// out again. After a server restart all pooled connections are dead, and since acquiring
/// does not ping them each would fail one more request; callers that see a lost connection
/// call this so the next acquire opens a fresh one instead.
pub fn retire_connections() {
    let now = clock().elapsed().as_nanos().max(1) as u64;
    RETIRED_BEFORE.fetch_max(now, Ordering::Relaxed);
}

/// Whether a connection of age `age` was opened before the last [`retire_connections`].
fn retired(age: Duration) -> bool {
    let retired_before = RETIRED_BEFORE.load(Ordering::Relaxed);
    let opened = clock().elapsed().saturating_sub(age).as_nanos() as u64;
    retired_before != 0 && opened <= retired_before
}

/// Opens a pool. Statement and lock timeouts bound the damage of a runaway query.
pub async fn connect(
    url: &str,
    max_connections: u32,
    application_name: &str,
) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(url, max_connections, application_name)?;
    pool.connect_with(options).await
}

/// A pool like [`connect`]'s that opens its connections when first needed, so a server that
/// is down at start-up fails the requests that need it rather than the start, and gives up
/// waiting for a connection after `acquire_timeout` (for a server the caller can do without).
pub fn connect_lazy(
    url: &str,
    max_connections: u32,
    application_name: &str,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let (pool, options) = pool_options(url, max_connections, application_name)?;
    Ok(pool
        .acquire_timeout(acquire_timeout)
        .connect_lazy_with(options))
}

fn pool_options(
    url: &str,
    max_connections: u32,
    application_name: &str,
) -> Result<(PgPoolOptions, PgConnectOptions), sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name(application_name).options([
        ("statement_timeout", "30s"),
        ("lock_timeout", "10s"),
        ("idle_in_transaction_session_timeout", "60s"),
        // Short requests on a few cores: parallel workers only take CPU from concurrent
        // requests (docs/performance.md measured the searches 1.5-3x slower with them).
        ("max_parallel_workers_per_gather", "0"),
    ]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every connection it hands out by default: a round trip per acquire.
        // A broken connection still surfaces as an error on its first statement instead.
        .test_before_acquire(false)
        // What replaces the ping: connections opened before a lost one are closed unused.
        .before_acquire(|_, meta| Box::pin(async move { Ok(!retired(meta.age)) }));
    Ok((pool, options))
}

/// Applies pending migrations (idempotent; sqlx holds an advisory lock meanwhile, so two
/// concurrent runs apply each migration once).
pub async fn migrate(admin: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(admin).await
}

/// Creates (if missing) a LOGIN role that is a member of `group` ([`APP_ROLE`] for the API,
/// [`WORKER_ROLE`] for the worker). Role names cannot be bind parameters, so they are checked
/// instead.
pub async fn ensure_login_role(
    admin: &PgPool,
    name: &str,
    password: &str,
    group: &str,
) -> Result<(), sqlx::Error> {
    for role in [name, group] {
        assert!(
            role.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "role name {role:?}"
        );
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
            .bind(name)
            .fetch_one(admin)
            .await?;
    if !exists {
        let password: String = sqlx::query_scalar("SELECT quote_literal($1)")
            .bind(password)
            .fetch_one(admin)
            .await?;
        let created = sqlx::query(&format!(
            "CREATE ROLE {name} LOGIN PASSWORD {password} IN ROLE {group}"
        ))
        .execute(admin)
        .await;
        // Another process may have won the race; the role is what matters.
        if let Err(e) = created {
            if !e.to_string().contains("already exists") {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// One line per known migration: version, description, and whether it is applied.
pub async fn migration_status(admin: &PgPool) -> Result<Vec<(i64, String, bool)>, sqlx::Error> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(admin)
            .await
            .or_else(|e| match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(Vec::new()),
                _ => Err(e),
            })?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| {
            (
                m.version,
                m.description.to_string(),
                applied.contains(&m.version),
            )
        })
        .collect())
}

/// Begins a transaction scoped to a tenant and/or user. The settings are transaction-local
/// (`set_config(..., true)`), so they vanish at commit or rollback and never leak to the next
/// user of the pooled connection. Without a tenant, row-level security shows no tenant rows.
#[tracing::instrument(name = "scoped", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn scoped(
    pool: &PgPool,
    tenant: Option<Uuid>,
    user: Option<Uuid>,
) -> Result<Tx, sqlx::Error> {
    let mut tx = pool.begin().await?;
    set_scope(&mut tx, tenant, user).await?;
    Ok(tx)
}

/// Changes the scope of an open transaction (e.g. to each of a user's workspaces in turn).
#[tracing::instrument(name = "set_scope", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn set_scope(
    tx: &mut Tx,
    tenant: Option<Uuid>,
    user: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    let s = |id: Option<Uuid>| id.map(|u| u.to_string()).unwrap_or_default();
    sqlx::query("SELECT set_config('app.current_tenant_id', $1, true), set_config('app.current_user_id', $2, true)")
        .bind(s(tenant))
        .bind(s(user))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Ends a transaction that only read, without a round trip of its own: dropping it queues a
/// ROLLBACK, which the pool sends with the check it makes of every connection handed back
/// (sqlx syncs with the server on release) and before the connection serves anyone else.
/// A transaction that read only has nothing to commit, so ROLLBACK ends it the same way, and
/// the answer need not wait for it.
pub fn end_read(tx: Tx) {
    drop(tx);
}

/// The primary's WAL insert position, in bytes: past every commit that completed before the
/// call, so a standby that has replayed that far shows them.
#[tracing::instrument(name = "wal_position", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn wal_position(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(pool)
        .await
}

/// A duration as a PostgreSQL time setting, in milliseconds (at least 1: 0 would mean none).
pub(crate) fn milliseconds(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// `SELECT 1` with its latency, for readiness checks. A lost connection retires the pool's
/// others (see [`retire_connections`]), so the next ping tells whether the server answers.
#[tracing::instrument(name = "ping", target = "ghostworks::sql", skip_all, fields(db.system = "postgresql", otel.kind = "client"))]
pub async fn ping(pool: &PgPool) -> Result<Duration, sqlx::Error> {
    let t = std::time::Instant::now();
    if let Err(e) = sqlx::query("SELECT 1").execute(pool).await {
        if unavailable(&e) == Some(Unavailable::ConnectionLost) {
            retire_connections();
        }
        return Err(e);
    }
    Ok(t.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_connections_and_pool_timeouts_are_outages_not_failures() {
        let lost = Some(Unavailable::ConnectionLost);
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(unavailable(&sqlx::Error::Io(eof)), lost);
        // What sqlx reports when a proxy with no server closes the connection at once.
        let ssl = sqlx::Error::Protocol("unexpected response from SSLRequest: 0x00".into());
        assert_eq!(unavailable(&ssl), lost);
        assert_eq!(
            unavailable(&sqlx::Error::PoolTimedOut),
            Some(Unavailable::Unreachable)
        );
        assert_eq!(unavailable(&sqlx::Error::RowNotFound), None);
        assert_eq!(unavailable(&sqlx::Error::ColumnNotFound("x".into())), None);
    }
}
