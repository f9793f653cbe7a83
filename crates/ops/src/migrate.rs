//! Migrations under a deploy lock and a lock timeout: two deploys never migrate at once, and a
//! migration that waits for a table lock held by traffic gives up quickly instead of queueing
//! every request behind it.

use std::time::Duration;

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::deploy::Migration;

/// The session advisory lock a migrating deploy holds ("gw-migr" in ASCII).
pub const LOCK_KEY: i64 = 0x0067_772d_6d69_6772;

/// The default `lock_timeout` of migration statements.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the embedded migration `version` is a contract step; `None` when not embedded.
pub fn is_contract(version: i64) -> Option<bool> {
    embedded()
        .find(|m| m.version == version)
        .map(|m| crate::lint::is_contract(&m.sql))
}

fn embedded() -> impl Iterator<Item = &'static sqlx::migrate::Migration> {
    ghostworks_db::MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
}

/// Every migration the database at `url` has applied or this binary embeds, oldest first:
/// what `ghostworks migrate --status` prints, and what a rollback is judged on.
pub async fn status(url: &str) -> Result<Vec<Migration>> {
    let mut conn = crate::pg::owner_connection(url, "ghostworks-migrate").await?;
    let applied: Vec<(i64, String)> = sqlx::query_as(
        "SELECT version, description FROM _sqlx_migrations WHERE success ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .or_else(|e| match &e {
        // No migration has ever run.
        sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(Vec::new()),
        _ => Err(anyhow::anyhow!("cannot read the applied migrations: {e}")),
    })?;
    let mut all: BTreeMap<i64, Migration> = applied
        .into_iter()
        .map(|(version, description)| {
            let m = Migration {
                version,
                applied: true,
                contract: is_contract(version),
                description,
            };
            (version, m)
        })
        .collect();
    for m in embedded() {
        all.entry(m.version).or_insert_with(|| Migration {
            version: m.version,
            applied: false,
            contract: Some(crate::lint::is_contract(&m.sql)),
            description: m.description.to_string(),
        });
    }
    Ok(all.into_values().collect())
}

/// Applies the pending embedded migrations as the schema owner at `url`.
pub async fn run(url: &str, lock_timeout: Duration) -> Result<()> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|e| anyhow::anyhow!("DATABASE_ADMIN_URL: {e}"))?;
    let timeout = format!("{}ms", lock_timeout.as_millis());
    let mut conn = options
        .application_name("ghostworks-migrate")
        .options([
            ("lock_timeout", timeout.as_str()),
            // Index builds and backfills may take long; only lock waits are bounded.
            ("statement_timeout", "0"),
        ])
        .connect()
        .await
        .map_err(|e| {
            anyhow::anyhow!("DATABASE_ADMIN_URL: cannot connect as the schema owner: {e}")
        })?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut conn)
        .await?;
    if !locked {
        bail!(
            "another deploy is applying migrations (advisory lock {LOCK_KEY} is held); wait for it \
             to finish, or find it with: SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND \
             objid = {}",
            LOCK_KEY & 0xffff_ffff
        );
    }
    let result = ghostworks_db::MIGRATOR.run(&mut conn).await;
    // Closing the session releases the lock too; unlocking explicitly keeps it short.
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(LOCK_KEY)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    if let Err(e) = result {
        let text = format!("{e:#}");
        if text.contains("lock timeout") || text.contains("55P03") {
            bail!(
                "a migration waited more than --lock-timeout ({lock_timeout:?}) for a table lock \
                 held by traffic and was rolled back; nothing of it was applied. Retry when \
                 traffic is lower, or raise --lock-timeout: {text}"
            );
        }
        bail!("migrations failed: {text}");
    }
    Ok(())
}
