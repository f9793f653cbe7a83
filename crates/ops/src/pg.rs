//! PostgreSQL plumbing shared by the operations: client tools, owner connections, and the
//! per-table row counts and content checksums that backups and tenant archives are checked by.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

/// Debian's location of the PostgreSQL 15 client tools, searched after PATH.
const PG15_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL client tool (`pg_dump`, `pg_restore`): on PATH, else in Debian's PostgreSQL 15
/// directory.
pub fn tool(name: &str) -> Result<PathBuf> {
    ghostworks_config::search_path()
        .into_iter()
        .chain([PathBuf::from(PG15_BIN)])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{name} not found on PATH or in {PG15_BIN}: apt-get install postgresql-client-15"
            )
        })
}

/// A PostgreSQL tool invocation for `url`: the password goes through PGPASSWORD, so it never
/// shows in the process list.
pub fn tool_command(name: &str, url: &str) -> Result<Command> {
    let mut parsed = url::Url::parse(url).context("DATABASE_ADMIN_URL: not a URL")?;
    let mut cmd = Command::new(tool(name)?);
    if let Some(password) = parsed.password() {
        let password = url::form_urlencoded::parse(password.as_bytes())
            .map(|(k, _)| k.into_owned())
            .next()
            .unwrap_or_default();
        cmd.env("PGPASSWORD", password);
        parsed
            .set_password(None)
            .map_err(|_| anyhow::anyhow!("DATABASE_ADMIN_URL: cannot remove the password"))?;
    }
    cmd.arg(format!("--dbname={parsed}"));
    Ok(cmd)
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> Result<String> {
    let mut parsed = url::Url::parse(url).context("DATABASE_ADMIN_URL: not a URL")?;
    parsed.set_path(&format!("/{database}"));
    Ok(parsed.to_string())
}

/// The database name of `url`.
pub fn database_name(url: &str) -> Result<String> {
    let parsed = url::Url::parse(url).context("DATABASE_ADMIN_URL: not a URL")?;
    let name = parsed.path().trim_start_matches('/').to_string();
    if name.is_empty() {
        bail!("DATABASE_ADMIN_URL: names no database; end it with /DBNAME");
    }
    Ok(name)
}

/// A connection as the schema owner without statement timeout, with row-level security off:
/// reading a table whose policies would hide rows then fails instead of silently counting fewer
/// (the owner must be a superuser or BYPASSRLS, as the migrations require).
pub async fn owner_connection(url: &str, application: &str) -> Result<PgConnection> {
    let options: PgConnectOptions = url.parse().context("DATABASE_ADMIN_URL: not a URL")?;
    options
        .application_name(application)
        .options([("statement_timeout", "0"), ("row_security", "off")])
        .disable_statement_logging()
        .connect()
        .await
        .context("cannot connect as the schema owner (DATABASE_ADMIN_URL)")
}

/// A table's row count and content checksum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSum {
    pub name: String,
    pub rows: i64,
    /// md5 over the md5 of each row's text form, in primary-key order.
    pub checksum: String,
}

/// The ordinary tables of the public schema, by name.
pub async fn tables(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1",
    )
    .fetch_all(conn)
    .await?)
}

/// The primary-key columns of a public table, in key order.
async fn key_columns(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
         WHERE i.indrelid = format('public.%I', $1::text)::regclass AND i.indisprimary
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(table)
    .fetch_all(conn)
    .await?)
}

pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Count and checksum of the rows of `table` that `filter` (a SQL condition on `t`, or `true`)
/// selects.
pub async fn table_sum(conn: &mut PgConnection, table: &str, filter: &str) -> Result<TableSum> {
    let keys = key_columns(conn, table).await?;
    let order = if keys.is_empty() {
        "t::text".to_string()
    } else {
        keys.iter()
            .map(|k| format!("t.{}", quote_ident(k)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (rows, checksum): (i64, Option<String>) = sqlx::query_as(&format!(
        "SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY {order}))
         FROM public.{} t WHERE {filter}",
        quote_ident(table)
    ))
    .fetch_one(conn)
    .await
    .with_context(|| format!("checksumming table {table}"))?;
    Ok(TableSum {
        name: table.to_string(),
        rows,
        checksum: checksum.unwrap_or_default(),
    })
}

/// Every public table's count and checksum, with a progress bar.
pub async fn database_sums(conn: &mut PgConnection) -> Result<Vec<TableSum>> {
    let names = tables(conn).await?;
    let bar = crate::progress::bar(names.len() as u64, "checksumming tables");
    let mut sums = Vec::with_capacity(names.len());
    for name in names {
        bar.set_message(name.clone());
        sums.push(table_sum(conn, &name, "true").await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(sums)
}

/// The newest applied migration (0 before any).
pub async fn schema_version(conn: &mut PgConnection) -> Result<i64> {
    let v: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&mut *conn)
            .await
            .or_else(|e| match &e {
                sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01") => Ok(None),
                _ => Err(e),
            })?;
    Ok(v.unwrap_or(0))
}

/// Runs a tool to completion, failing with its output.
pub fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: could not start"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}
