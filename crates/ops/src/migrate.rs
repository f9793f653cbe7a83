//! Migrations under a deploy lock and a lock timeout: two deploys never migrate at once, and a
//! migration that waits for a table lock held by traffic gives up quickly instead of queueing
//! every request behind it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// One line of `ghostworks migrate --status`: `   7  applied  description (contract)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub applied: bool,
    /// Whether it is a contract step; `None` for an applied migration the release does not
    /// embed (a newer release applied it), which it cannot tell.
    pub contract: Option<bool>,
    pub description: String,
}

/// How `migrate --status` marks the two kinds of migration it cannot treat as expand steps.
pub const CONTRACT_MARK: &str = "(contract)";
pub const NOT_EMBEDDED_MARK: &str = "(not in this release)";

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>4}  {:<8} {}{}",
            self.version,
            if self.applied { "applied" } else { "pending" },
            self.description,
            match self.contract {
                Some(true) => format!(" {CONTRACT_MARK}"),
                Some(false) => String::new(),
                None => format!(" {NOT_EMBEDDED_MARK}"),
            }
        )
    }
}

impl Migration {
    /// The lines of `ghostworks migrate --status` (as [`Display`](std::fmt::Display) writes
    /// them); other output, such as log lines, is skipped.
    pub fn parse(status: &str) -> Vec<Migration> {
        status
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let (version, rest) = l.split_once(char::is_whitespace)?;
                let version = version.parse().ok()?;
                let (state, rest) = rest.trim_start().split_once(char::is_whitespace)?;
                let applied = match state {
                    "applied" => true,
                    "pending" => false,
                    _ => return None,
                };
                let rest = rest.trim();
                let (description, contract) = if let Some(d) = rest.strip_suffix(CONTRACT_MARK) {
                    (d, Some(true))
                } else if let Some(d) = rest.strip_suffix(NOT_EMBEDDED_MARK) {
                    (d, None)
                } else {
                    (rest, Some(false))
                };
                Some(Migration {
                    version,
                    applied,
                    contract,
                    description: description.trim().to_string(),
                })
            })
            .collect()
    }
}

/// The newest migration applied, as `status` tells it (0 when none).
pub fn schema_version(status: &[Migration]) -> i64 {
    status
        .iter()
        .filter(|m| m.applied)
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// The contract steps not applied yet.
pub fn pending_contracts(status: &[Migration]) -> Vec<i64> {
    status
        .iter()
        .filter(|m| m.contract == Some(true) && !m.applied)
        .map(|m| m.version)
        .collect()
}

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

/// `ghostworks migrate`: applies the migrations, then logs each one's state.
pub async fn apply(url: &str, lock_timeout: Duration) -> Result<()> {
    run(url, lock_timeout).await?;
    let pool = ghostworks_db::connect(url, 2, "ghostworks-migrate")
        .await
        .context("cannot connect as the schema owner")?;
    for (version, description, applied) in ghostworks_db::migration_status(&pool).await? {
        tracing::info!(version, description, applied, "migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_status_lines_are_parsed_and_other_output_ignored() {
        let status = "{\"level\":\"INFO\",\"message\":\"connected\"}\n   \
                         8  applied  drop tenantless search indexes\n   \
                         9  pending  job trace parent\n  \
                        10  pending  drop old column (contract)\n  \
                        11  applied  from a newer release (not in this release)\n";
        let parsed = Migration::parse(status);
        let m: Vec<_> = parsed
            .iter()
            .map(|m| (m.version, m.applied, m.contract, m.description.as_str()))
            .collect();
        assert_eq!(
            m,
            vec![
                (8, true, Some(false), "drop tenantless search indexes"),
                (9, false, Some(false), "job trace parent"),
                (10, false, Some(true), "drop old column"),
                (11, true, None, "from a newer release"),
            ]
        );
        assert_eq!(schema_version(&parsed), 11);
        assert_eq!(pending_contracts(&parsed), vec![10]);
        assert_eq!(schema_version(&[]), 0);
    }
}
