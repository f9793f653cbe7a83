//! One tenant's complete data as a verified archive, for data portability and single-tenant
//! recovery (a whole-database backup cannot restore one workspace alone).
//!
//! The archive is JSON lines: a header, one line per row (`{"table", "row"}`, the row as
//! `to_jsonb`), and a closing manifest with each table's row count and content checksum and the
//! sha256 of every byte before it. It holds the workspace, the accounts of its members and of
//! its artifacts' creators, memberships, artifacts, audit log and usage figures; sessions,
//! tokens and the job queue are not tenant data and stay behind. Password hashes travel only
//! when asked for; without them, imported accounts have no password until they reset it.
//!
//! An archive may come from another operator, so import trusts nothing in it: every row must
//! belong to the header's workspace (or be an account that its memberships or artifacts name),
//! else the whole archive is refused before anything is written. An archive signed with the
//! operator's key (HMAC-SHA256 over every byte before the closing signature line) proves who
//! wrote it; an unsigned one is imported only when the operator allows it.

mod archive;
mod trust;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use futures::TryStreamExt;
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

pub use archive::ArchiveKey;

use crate::pg::{self, quote_ident, TableSum};
use crate::progress;
use archive::{read_archive, Archive, ArchiveWriter, Line, Row};
use trust::existing_accounts;

/// 2: password hashes optional (`credentials` in the header), the closing signature line.
pub const FORMAT: u32 = 2;

/// The password hash of an account imported without credentials: not a hash at all, so no
/// password matches it until the account's owner resets it.
const NO_PASSWORD: &str = "!reset-required";

/// How a row shows that it belongs to the archive's workspace.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The workspace's own row: its `id` and `slug` are the header's.
    Workspace,
    /// An account, which has no tenant: the archive's memberships or artifacts must name it.
    Account,
    /// Workspace data: its `tenant_id` is the header's.
    Tenant,
}

struct Table {
    name: &'static str,
    /// The condition on `t` that selects the tenant's rows (`{T}` is the tenant id).
    select: &'static str,
    owner: Owner,
}

/// The tables of a tenant in insertion order (parents first).
const TABLES: &[Table] = &[
    Table {
        name: "tenants",
        select: "t.id = {T}",
        owner: Owner::Workspace,
    },
    Table {
        name: "users",
        select: "t.id IN (SELECT m.user_id FROM workspace_memberships m WHERE m.tenant_id = {T} \
                 UNION SELECT a.created_by FROM artifacts a WHERE a.tenant_id = {T})",
        owner: Owner::Account,
    },
    Table {
        name: "workspace_memberships",
        select: "t.tenant_id = {T}",
        owner: Owner::Tenant,
    },
    Table {
        name: "artifacts",
        select: "t.tenant_id = {T}",
        owner: Owner::Tenant,
    },
    Table {
        name: "audit_log",
        select: "t.tenant_id = {T}",
        owner: Owner::Tenant,
    },
    Table {
        name: "workspace_usage",
        select: "t.tenant_id = {T}",
        owner: Owner::Tenant,
    },
];

/// What `import` accepts as proof of an archive's origin.
#[derive(Clone, Copy)]
pub struct Trust<'a> {
    /// Checks the archive's signature; a signed archive is always checked, and refused without
    /// the key.
    pub key: Option<&'a ArchiveKey>,
    /// Accept an archive without a signature.
    pub allow_unsigned: bool,
}

fn filter(template: &str, tenant: Uuid) -> String {
    // A Uuid prints as hex and dashes only: safe to inline.
    template.replace("{T}", &format!("'{tenant}'::uuid"))
}

/// What an export or import moved.
#[derive(Debug)]
pub struct Summary {
    pub tenant_id: Uuid,
    pub slug: String,
    pub tables: Vec<TableSum>,
    /// Export: signed. Import: its signature was checked.
    pub signed: bool,
    /// The archive carries the accounts' password hashes.
    pub credentials: bool,
    /// Accounts that already existed in the target and were kept as they were.
    pub existing_users: i64,
    /// Accounts the import created without a password (the archive carries none): each must
    /// reset it before logging in.
    pub without_password: i64,
}

impl Summary {
    pub fn total_rows(&self) -> i64 {
        self.tables.iter().map(|t| t.rows).sum()
    }
}

/// Writes the tenant `slug` of the database at `url` (schema owner) to `out`, created 0600;
/// signed when there is a `key`, with the password hashes when `with_credentials`.
pub async fn export(
    url: &str,
    slug: &str,
    out: &Path,
    key: Option<&ArchiveKey>,
    with_credentials: bool,
) -> Result<Summary> {
    let mut conn = pg::owner_connection(url, "ghostworks-tenant-export").await?;
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let tenant = tenant_of(&mut conn, slug).await?;
    let schema_version = pg::schema_version(&mut conn).await?;
    let tmp = out.with_extension("partial");
    let mut w = ArchiveWriter::new(BufWriter::new(create_partial(&tmp)?), key);
    w.line(&Line::Header {
        format: FORMAT,
        slug: slug.to_string(),
        tenant_id: tenant,
        exported_at: Utc::now(),
        schema_version,
        credentials: with_credentials,
    })?;
    let bar = progress::bar(TABLES.len() as u64, "exporting");
    let mut sums = Vec::new();
    for table in TABLES {
        bar.set_message(table.name);
        sums.push(export_table(&mut conn, &mut w, table, tenant, with_credentials).await?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    conn.execute("COMMIT").await?;
    conn.close().await?;
    drop(w.finish(sums.clone())?);
    std::fs::rename(&tmp, out)?;
    Ok(Summary {
        tenant_id: tenant,
        slug: slug.to_string(),
        tables: sums,
        signed: key.is_some(),
        credentials: with_credentials,
        existing_users: 0,
        without_password: 0,
    })
}

/// The id of the workspace `slug`.
async fn tenant_of(conn: &mut PgConnection, slug: &str) -> Result<Uuid> {
    let tenant: Option<Uuid> = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_optional(conn)
        .await?;
    tenant.with_context(|| format!("SLUG: no workspace with the slug {slug:?} in this database"))
}

/// The export's file until it is complete, created 0600.
fn create_partial(tmp: &Path) -> Result<File> {
    // A partial file left by an interrupted export is this command's own.
    crate::private::recreate_private_file(tmp).context("--output")
}

/// Writes the tenant's rows of `table`, checking they are the ones its sum counted.
async fn export_table<W: Write>(
    conn: &mut PgConnection,
    w: &mut ArchiveWriter<W>,
    table: &Table,
    tenant: Uuid,
    with_credentials: bool,
) -> Result<TableSum> {
    let cond = filter(table.select, tenant);
    let sum = pg::table_sum(&mut *conn, table.name, &cond).await?;
    let as_json = if table.owner == Owner::Account && !with_credentials {
        "to_jsonb(t) - 'hashed_password'"
    } else {
        "to_jsonb(t)"
    };
    let sql = format!(
        "SELECT {as_json} FROM public.{} t WHERE {cond}",
        quote_ident(table.name)
    );
    let mut rows = sqlx::query_scalar::<_, Value>(&sql).fetch(conn);
    let mut n = 0;
    while let Some(row) = rows.try_next().await? {
        w.line(&Line::Row {
            table: table.name.to_string(),
            row,
        })?;
        n += 1;
    }
    if n != sum.rows {
        bail!("table {} changed during the export", table.name);
    }
    Ok(sum)
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

/// Inserts an archive's `rows` of `table`; how many were new. Accounts are shared between
/// workspaces: one that exists already stays as it is.
async fn insert_rows(
    conn: &mut PgConnection,
    table: &str,
    account: bool,
    rows: &[Row],
    strip_passwords: bool,
) -> Result<i64> {
    let cols = insertable_columns(conn, table)
        .await?
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let conflict = if account {
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
        let batch = chunk
            .iter()
            .map(|(_, row)| {
                let mut row = row.clone();
                if strip_passwords {
                    if let Some(fields) = row.as_object_mut() {
                        fields.insert("hashed_password".into(), NO_PASSWORD.into());
                    }
                }
                row
            })
            .collect();
        inserted += sqlx::query(&sql)
            .bind(Value::Array(batch))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("importing table {table}"))?
            .rows_affected() as i64;
    }
    Ok(inserted)
}

/// Accounts an import kept or created without a password.
struct Accounts {
    existing: i64,
    without_password: i64,
}

/// Imports the archive at `path` into the database at `url` (schema owner) in one transaction,
/// then checks every table's count and checksum against the archive's manifest. Refuses an
/// archive that `trust` does not accept or with a row of another workspace (before anything is
/// written), and a target that already has the workspace (by id or slug), an older schema, or
/// an account clashing with an archived one.
///
/// An account that exists already (same id and address) is kept as it is: its password,
/// profile and other memberships are not touched, and it gains only the memberships the archive
/// defines in the imported workspace. New accounts get the archive's password hashes, or none
/// (the owner must reset it) when the archive carries no credentials.
pub async fn import(url: &str, path: &Path, trust: Trust<'_>) -> Result<Summary> {
    let archive = read_archive(path, trust)?;
    let mut conn = pg::owner_connection(url, "ghostworks-tenant-import").await?;
    check_schema_version(&mut conn, archive.schema_version).await?;
    let mut tx = conn.begin().await?;
    refuse_existing_workspace(&mut tx, &archive).await?;
    let accounts = insert_archive(&mut tx, &archive, path).await?;
    // Imported audit rows keep their ids; later appends must not collide with them.
    sqlx::query(
        "SELECT setval(pg_get_serial_sequence('public.audit_log', 'id'), \
         GREATEST((SELECT max(id) FROM audit_log), 1))",
    )
    .execute(&mut *tx)
    .await?;
    let mut sums = Vec::new();
    for table in TABLES {
        sums.push(
            pg::table_sum(
                &mut tx,
                table.name,
                &filter(table.select, archive.tenant_id),
            )
            .await?,
        );
    }
    // Accounts kept as they were, or imported without their password hashes, differ from the
    // archive's: only their number can match.
    let whole_accounts = archive.credentials && accounts.existing == 0;
    crate::backup::compare(
        &comparable(&archive.tables, whole_accounts),
        &comparable(&sums, whole_accounts),
    )
    .context("the imported workspace does not match its archive; nothing was imported")?;
    tx.commit().await?;
    conn.close().await?;
    Ok(Summary {
        tenant_id: archive.tenant_id,
        slug: archive.slug,
        tables: sums,
        signed: archive.signed,
        credentials: archive.credentials,
        existing_users: accounts.existing,
        without_password: accounts.without_password,
    })
}

/// Refuses a target whose schema is older than the archive's.
async fn check_schema_version(conn: &mut PgConnection, archive_version: i64) -> Result<()> {
    let target_version = pg::schema_version(conn).await?;
    if target_version < archive_version {
        bail!(
            "the target database is at schema version {target_version}, the archive needs \
             {archive_version}; run `ghostworks migrate` on it first"
        );
    }
    Ok(())
}

/// Refuses a target that has the archive's workspace already, by id or by slug.
async fn refuse_existing_workspace(conn: &mut PgConnection, archive: &Archive) -> Result<()> {
    let clash: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1 OR slug = $2)")
            .bind(archive.tenant_id)
            .bind(&archive.slug)
            .fetch_one(conn)
            .await?;
    if clash {
        bail!(
            "workspace {:?} ({}) already exists in the target database; delete it first, or \
             import into another database",
            archive.slug,
            archive.tenant_id
        );
    }
    Ok(())
}

/// Inserts every table of the archive (read from `path`), refusing accounts that clash with the
/// target's.
async fn insert_archive(
    conn: &mut PgConnection,
    archive: &Archive,
    path: &Path,
) -> Result<Accounts> {
    let bar = progress::bar(archive.rows.len() as u64, "importing");
    let mut accounts = Accounts {
        existing: 0,
        without_password: 0,
    };
    for (table, rows) in &archive.rows {
        bar.set_message(table.name);
        let account = table.owner == Owner::Account;
        if account {
            accounts.existing = existing_accounts(&mut *conn, rows)
                .await
                .with_context(|| format!("archive {}", path.display()))?;
        }
        // Whatever the rows say: the header's promise decides.
        let strip_passwords = account && !archive.credentials;
        let inserted = insert_rows(&mut *conn, table.name, account, rows, strip_passwords).await?;
        if strip_passwords {
            accounts.without_password = inserted;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(accounts)
}

/// The sums as the import can compare them: without the accounts' checksum unless they are
/// `whole_accounts`, as archived.
fn comparable(sums: &[TableSum], whole_accounts: bool) -> Vec<TableSum> {
    sums.iter()
        .cloned()
        .map(|mut s| {
            if s.name == "users" && !whole_accounts {
                s.checksum.clear();
            }
            s
        })
        .collect()
}
