//! One tenant's complete data as a verified archive, for data portability and single-tenant
//! recovery (a whole-database backup cannot restore one workspace alone).
//!
//! The archive is JSON lines: a header, one line per row (`{"table", "row"}`, the row as
//! `to_jsonb`), and a closing manifest with each table's row count and content checksum and the
//! sha256 of every byte before it. It holds the workspace, the accounts of its members and of
//! its artifacts' creators, memberships, artifacts, audit log and usage figures; sessions,
//! tokens and the job queue are not tenant data and stay behind.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::pg::{self, quote_ident, TableSum};
use crate::progress;

pub const FORMAT: u32 = 1;

/// The tables of a tenant in insertion order (parents first), each with the condition on `t`
/// that selects the tenant's rows (`{T}` is the tenant id).
const TABLES: &[(&str, &str)] = &[
    ("tenants", "t.id = {T}"),
    (
        "users",
        "t.id IN (SELECT m.user_id FROM workspace_memberships m WHERE m.tenant_id = {T} \
         UNION SELECT a.created_by FROM artifacts a WHERE a.tenant_id = {T})",
    ),
    ("workspace_memberships", "t.tenant_id = {T}"),
    ("artifacts", "t.tenant_id = {T}"),
    ("audit_log", "t.tenant_id = {T}"),
    ("workspace_usage", "t.tenant_id = {T}"),
];

fn filter(template: &str, tenant: Uuid) -> String {
    // A Uuid prints as hex and dashes only: safe to inline.
    template.replace("{T}", &format!("'{tenant}'::uuid"))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Header {
        format: u32,
        slug: String,
        tenant_id: Uuid,
        exported_at: DateTime<Utc>,
        schema_version: i64,
    },
    Row {
        table: String,
        row: serde_json::Value,
    },
    Manifest {
        tables: Vec<TableSum>,
        sha256: String,
    },
}

/// What an export or import moved.
#[derive(Debug)]
pub struct Summary {
    pub tenant_id: Uuid,
    pub slug: String,
    pub tables: Vec<TableSum>,
    /// Accounts that already existed in the target and were kept as they were.
    pub existing_users: i64,
}

impl Summary {
    pub fn total_rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn line(&mut self, line: &Line) -> Result<()> {
        let mut bytes = serde_json::to_vec(line)?;
        bytes.push(b'\n');
        self.hash.update(&bytes);
        self.inner.write_all(&bytes)?;
        Ok(())
    }
}

/// Writes the tenant `slug` of the database at `url` (schema owner) to `out`.
pub async fn export(url: &str, slug: &str, out: &Path) -> Result<Summary> {
    let mut conn = pg::owner_connection(url, "ghostworks-tenant-export").await?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let tenant: Option<Uuid> = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_optional(&mut conn)
        .await?;
    let tenant = tenant
        .with_context(|| format!("SLUG: no workspace with the slug {slug:?} in this database"))?;
    let schema_version = pg::schema_version(&mut conn).await?;
    let tmp = out.with_extension("partial");
    let file = std::fs::File::create(&tmp)
        .with_context(|| format!("--output: cannot create {}", tmp.display()))?;
    let mut w = HashingWriter {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
    };
    w.line(&Line::Header {
        format: FORMAT,
        slug: slug.to_string(),
        tenant_id: tenant,
        exported_at: Utc::now(),
        schema_version,
    })?;
    let bar = progress::bar(TABLES.len() as u64, "exporting");
    let mut sums = Vec::new();
    for (table, template) in TABLES {
        bar.set_message(*table);
        let cond = filter(template, tenant);
        let sum = pg::table_sum(&mut conn, table, &cond).await?;
        let sql = format!(
            "SELECT to_jsonb(t) FROM public.{} t WHERE {cond}",
            quote_ident(table)
        );
        let mut rows = sqlx::query_scalar::<_, serde_json::Value>(&sql).fetch(&mut conn);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            w.line(&Line::Row {
                table: table.to_string(),
                row,
            })?;
            n += 1;
        }
        drop(rows);
        if n != sum.rows {
            bail!("table {table} changed during the export");
        }
        sums.push(sum);
        bar.inc(1);
    }
    bar.finish_and_clear();
    conn.execute("COMMIT").await?;
    conn.close().await?;
    let sha256 = hex::encode(w.hash.clone().finalize());
    let manifest = Line::Manifest {
        tables: sums.clone(),
        sha256,
    };
    let mut bytes = serde_json::to_vec(&manifest)?;
    bytes.push(b'\n');
    w.inner.write_all(&bytes)?;
    w.inner.flush()?;
    drop(w);
    std::fs::rename(&tmp, out)?;
    Ok(Summary {
        tenant_id: tenant,
        slug: slug.to_string(),
        tables: sums,
        existing_users: 0,
    })
}

/// An archive read back and checked: header, rows by table, manifest.
struct Archive {
    slug: String,
    tenant_id: Uuid,
    schema_version: i64,
    rows: Vec<(String, Vec<serde_json::Value>)>,
    tables: Vec<TableSum>,
}

fn read_archive(path: &Path) -> Result<Archive> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("ARCHIVE: cannot open {}", path.display()))?;
    let corrupt = |why: &str| {
        anyhow::anyhow!(
            "archive {} is corrupted or not a tenant archive ({why}); refusing to import it",
            path.display()
        )
    };
    let mut hash = Sha256::new();
    let mut header = None;
    let mut manifest = None;
    let mut rows: Vec<(String, Vec<serde_json::Value>)> = TABLES
        .iter()
        .map(|(t, _)| (t.to_string(), Vec::new()))
        .collect();
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        if manifest.is_some() {
            return Err(corrupt("data after the manifest"));
        }
        let parsed: Line =
            serde_json::from_slice(&line).map_err(|_| corrupt("a line is not valid JSON"))?;
        match parsed {
            Line::Manifest { tables, sha256 } => {
                let actual = hex::encode(hash.clone().finalize());
                if actual != sha256 {
                    return Err(corrupt(&format!(
                        "its sha256 is {actual}, the manifest records {sha256}"
                    )));
                }
                manifest = Some(tables);
            }
            other => {
                hash.update(&line);
                hash.update(b"\n");
                match other {
                    Line::Header {
                        format,
                        slug,
                        tenant_id,
                        schema_version,
                        ..
                    } => {
                        if format != FORMAT {
                            bail!("archive format {format} is not supported (this release reads {FORMAT})");
                        }
                        header = Some((slug, tenant_id, schema_version));
                    }
                    Line::Row { table, row } => {
                        let slot = rows
                            .iter_mut()
                            .find(|(t, _)| *t == table)
                            .ok_or_else(|| corrupt(&format!("unknown table {table}")))?;
                        slot.1.push(row);
                    }
                    Line::Manifest { .. } => unreachable!("handled above"),
                }
            }
        }
    }
    let (slug, tenant_id, schema_version) = header.ok_or_else(|| corrupt("no header"))?;
    let tables = manifest.ok_or_else(|| corrupt("no manifest: the file is truncated"))?;
    Ok(Archive {
        slug,
        tenant_id,
        schema_version,
        rows,
        tables,
    })
}

/// Columns a row can be inserted with (generated columns are computed again).
async fn insertable_columns(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute
         WHERE attrelid = format('public.%I', $1::text)::regclass AND attnum > 0
           AND NOT attisdropped AND attgenerated = ''
         ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(conn)
    .await?)
}

/// Inserts an archive's `rows` of `table`; how many were new.
async fn insert_rows(
    conn: &mut PgConnection,
    table: &str,
    rows: &[serde_json::Value],
) -> Result<i64> {
    let cols = insertable_columns(conn, table)
        .await?
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    // Accounts are shared between workspaces: one that exists already stays as it is.
    let conflict = if table == "users" {
        "ON CONFLICT (id) DO NOTHING"
    } else {
        ""
    };
    let sql = format!(
        "INSERT INTO public.{t} ({cols}) OVERRIDING SYSTEM VALUE \
         SELECT {cols} FROM jsonb_populate_recordset(NULL::public.{t}, $1) {conflict}",
        t = quote_ident(table)
    );
    let mut inserted = 0;
    for chunk in rows.chunks(1000) {
        let batch = serde_json::Value::Array(chunk.to_vec());
        inserted += sqlx::query(&sql)
            .bind(batch)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("importing table {table}"))?
            .rows_affected() as i64;
    }
    Ok(inserted)
}

/// Imports the archive at `path` into the database at `url` (schema owner) in one transaction,
/// then checks every table's count and checksum against the archive's manifest. Refuses a
/// target that already has the workspace (by id or slug) or an older schema.
pub async fn import(url: &str, path: &Path) -> Result<Summary> {
    let archive = read_archive(path)?;
    let mut conn = pg::owner_connection(url, "ghostworks-tenant-import").await?;
    let target_version = pg::schema_version(&mut conn).await?;
    if target_version < archive.schema_version {
        bail!(
            "the target database is at schema version {target_version}, the archive needs \
             {}; run `ghostworks migrate` on it first",
            archive.schema_version
        );
    }
    let mut tx = conn.begin().await?;
    let clash: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1 OR slug = $2)")
            .bind(archive.tenant_id)
            .bind(&archive.slug)
            .fetch_one(&mut *tx)
            .await?;
    if clash {
        bail!(
            "workspace {:?} ({}) already exists in the target database; delete it first, or \
             import into another database",
            archive.slug,
            archive.tenant_id
        );
    }
    let bar = progress::bar(archive.rows.len() as u64, "importing");
    let mut existing_users = 0;
    for (table, rows) in &archive.rows {
        bar.set_message(table.clone());
        let inserted = insert_rows(&mut tx, table, rows).await?;
        if table == "users" {
            existing_users = rows.len() as i64 - inserted;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    // Imported audit rows keep their ids; later appends must not collide with them.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('public.audit_log', 'id'), \
         GREATEST((SELECT max(id) FROM audit_log), 1))",
    )
    .execute(&mut *tx)
    .await?;
    let mut sums = Vec::new();
    for (table, template) in TABLES {
        sums.push(pg::table_sum(&mut tx, table, &filter(template, archive.tenant_id)).await?);
    }
    let compared: Vec<TableSum> = if existing_users > 0 {
        // Existing accounts were kept, so only their number can match.
        sums.iter().filter(|s| s.name != "users").cloned().collect()
    } else {
        sums.clone()
    };
    let expected: Vec<TableSum> = archive
        .tables
        .iter()
        .filter(|e| compared.iter().any(|c| c.name == e.name))
        .cloned()
        .collect();
    crate::backup::compare(&expected, &compared)
        .context("the imported workspace does not match its archive; nothing was imported")?;
    tx.commit().await?;
    conn.close().await?;
    Ok(Summary {
        tenant_id: archive.tenant_id,
        slug: archive.slug,
        tables: sums,
        existing_users,
    })
}
