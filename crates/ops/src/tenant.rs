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

use std::collections::HashSet;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection};
use uuid::Uuid;

use crate::pg::{self, quote_ident, TableSum};
use crate::progress;
use crate::storage;

/// 2: password hashes optional (`credentials` in the header), the closing signature line.
pub const FORMAT: u32 = 2;

/// The password hash of an account imported without credentials: not a hash at all, so no
/// password matches it until the account's owner resets it.
const NO_PASSWORD: &str = "!reset-required";

/// The shortest key accepted for signing archives.
const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

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

/// The columns of the archive's rows that name an account, which the archive must then hold.
const ACCOUNT_REFERENCES: &[(&str, &str)] = &[
    ("workspace_memberships", "user_id"),
    ("artifacts", "created_by"),
];

/// The operator's key that signs archives and checks their signatures. Never printed.
pub struct ArchiveKey(Vec<u8>);

impl ArchiveKey {
    /// The key in the file `path` (trailing whitespace ignored).
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("--key-file: cannot read {}", path.display()))?;
        let key = bytes.trim_ascii_end();
        if key.len() < MIN_KEY_BYTES {
            bail!(
                "--key-file {}: the key has {} bytes, at least {MIN_KEY_BYTES} are needed \
                 (e.g. `openssl rand -hex 32 > FILE`)",
                path.display(),
                key.len()
            );
        }
        Ok(Self(key.to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }
}

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

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Header {
        format: u32,
        slug: String,
        tenant_id: Uuid,
        exported_at: DateTime<Utc>,
        schema_version: i64,
        /// Whether the accounts carry their password hashes.
        credentials: bool,
    },
    Row {
        table: String,
        row: serde_json::Value,
    },
    Manifest {
        tables: Vec<TableSum>,
        sha256: String,
    },
    /// HMAC-SHA256 with the operator's key over every byte before this line; the last line.
    Signature { hmac_sha256: String },
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

fn line_bytes(line: &Line) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes lines, keeping the sha256 of the header and rows and the HMAC of everything.
struct ArchiveWriter<W: Write> {
    inner: W,
    hash: Sha256,
    mac: Option<HmacSha256>,
}

impl<W: Write> ArchiveWriter<W> {
    fn signed(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(mac) = &mut self.mac {
            mac.update(bytes);
        }
        self.inner.write_all(bytes)?;
        Ok(())
    }

    fn line(&mut self, line: &Line) -> Result<()> {
        let bytes = line_bytes(line)?;
        self.hash.update(&bytes);
        self.signed(&bytes)
    }

    /// The manifest, then the signature when there is a key.
    fn finish(mut self, tables: Vec<TableSum>) -> Result<W> {
        let sha256 = hex::encode(self.hash.clone().finalize());
        self.signed(&line_bytes(&Line::Manifest { tables, sha256 })?)?;
        if let Some(mac) = self.mac.take() {
            let hmac_sha256 = hex::encode(mac.finalize().into_bytes());
            self.inner
                .write_all(&line_bytes(&Line::Signature { hmac_sha256 })?)?;
        }
        self.inner.flush()?;
        Ok(self.inner)
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
    let tenant: Option<Uuid> = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_optional(&mut conn)
        .await?;
    let tenant = tenant
        .with_context(|| format!("SLUG: no workspace with the slug {slug:?} in this database"))?;
    let schema_version = pg::schema_version(&mut conn).await?;
    let tmp = out.with_extension("partial");
    // A partial file left by an interrupted export is this command's own.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("--output: cannot replace {}", tmp.display()))
        }
        _ => {}
    }
    let file = storage::create_private_file(&tmp).context("--output")?;
    let mut w = ArchiveWriter {
        inner: BufWriter::new(file),
        hash: Sha256::new(),
        mac: key.map(ArchiveKey::mac),
    };
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
        let cond = filter(table.select, tenant);
        let sum = pg::table_sum(&mut conn, table.name, &cond).await?;
        let as_json = if table.owner == Owner::Account && !with_credentials {
            "to_jsonb(t) - 'hashed_password'"
        } else {
            "to_jsonb(t)"
        };
        let sql = format!(
            "SELECT {as_json} FROM public.{} t WHERE {cond}",
            quote_ident(table.name)
        );
        let mut rows = sqlx::query_scalar::<_, Value>(&sql).fetch(&mut conn);
        let mut n = 0;
        while let Some(row) = rows.try_next().await? {
            w.line(&Line::Row {
                table: table.name.to_string(),
                row,
            })?;
            n += 1;
        }
        drop(rows);
        if n != sum.rows {
            bail!("table {} changed during the export", table.name);
        }
        sums.push(sum);
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

/// A row of an archive and the line it was on (from 1).
type Row = (usize, Value);

/// An archive read back and checked: header, rows by table, manifest.
struct Archive {
    slug: String,
    tenant_id: Uuid,
    schema_version: i64,
    credentials: bool,
    signed: bool,
    rows: Vec<(&'static Table, Vec<Row>)>,
    tables: Vec<TableSum>,
}

fn read_archive(path: &Path, trust: Trust<'_>) -> Result<Archive> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("ARCHIVE: cannot open {}", path.display()))?;
    let corrupt = |why: &str| {
        anyhow!(
            "archive {} is corrupted or not a tenant archive ({why}); refusing to import it",
            path.display()
        )
    };
    let mut hash = Sha256::new();
    let mut mac = trust.key.map(ArchiveKey::mac);
    let mut header = None;
    let mut manifest = None;
    let mut signature = None;
    let mut rows: Vec<(&'static Table, Vec<Row>)> =
        TABLES.iter().map(|t| (t, Vec::new())).collect();
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line?;
        if signature.is_some() {
            return Err(corrupt("data after the signature"));
        }
        let parsed: Line =
            serde_json::from_slice(&line).map_err(|_| corrupt("a line is not valid JSON"))?;
        match (&parsed, &manifest) {
            (Line::Signature { hmac_sha256 }, Some(_)) => {
                signature = Some(hmac_sha256.clone());
                continue;
            }
            (Line::Signature { .. }, None) => return Err(corrupt("a signature before the end")),
            (_, Some(_)) => return Err(corrupt("data after the manifest")),
            (_, None) => {}
        }
        if let Some(mac) = &mut mac {
            mac.update(&line);
            mac.update(b"\n");
        }
        if !matches!(parsed, Line::Manifest { .. }) {
            hash.update(&line);
            hash.update(b"\n");
        }
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
            Line::Header {
                format,
                slug,
                tenant_id,
                schema_version,
                credentials,
                ..
            } => {
                if header.is_some() {
                    return Err(corrupt("a second header"));
                }
                if format != FORMAT {
                    bail!("archive format {format} is not supported (this release reads {FORMAT}); export the workspace again with this release");
                }
                header = Some((slug, tenant_id, schema_version, credentials));
            }
            Line::Row { table, row } => {
                let slot = rows
                    .iter_mut()
                    .find(|(t, _)| t.name == table)
                    .ok_or_else(|| corrupt(&format!("unknown table {table}")))?;
                slot.1.push((number + 1, row));
            }
            Line::Signature { .. } => unreachable!("handled above"),
        }
    }
    let (slug, tenant_id, schema_version, credentials) =
        header.ok_or_else(|| corrupt("no header"))?;
    let tables = manifest.ok_or_else(|| corrupt("no manifest: the file is truncated"))?;
    let signed = match (signature, mac) {
        (Some(signature), Some(mac)) => {
            let tag = hex::decode(&signature).map_err(|_| corrupt("the signature is not hex"))?;
            // verify_slice compares in constant time.
            mac.verify_slice(&tag).map_err(|_| {
                anyhow!(
                    "archive {}: its signature does not match the --key-file key: it was changed \
                     after it was signed, or signed with another key; refusing to import it",
                    path.display()
                )
            })?;
            true
        }
        (Some(_), None) => bail!(
            "archive {} is signed: pass the key it was signed with (--key-file or \
             TENANT_ARCHIVE_KEY_FILE) to check it",
            path.display()
        ),
        (None, _) if trust.allow_unsigned => false,
        (None, _) => bail!(
            "archive {} is not signed, so nothing shows who wrote it or that it is unchanged; \
             export it with --key-file, or pass --allow-unsigned to import it anyway",
            path.display()
        ),
    };
    let archive = Archive {
        slug,
        tenant_id,
        schema_version,
        credentials,
        signed,
        rows,
        tables,
    };
    check_ownership(&archive).map_err(|why| {
        anyhow!(
            "archive {}: {why}; refusing the whole archive, nothing was imported",
            path.display()
        )
    })?;
    Ok(archive)
}

fn refuse(table: &Table, line: usize, why: String) -> anyhow::Error {
    anyhow!("line {line} (table {}): {why}", table.name)
}

/// A uuid column of an archived row (None when absent, null or not a uuid).
fn uuid_of(row: &Value, column: &str) -> Option<Uuid> {
    row.get(column)?.as_str()?.parse().ok()
}

/// Refuses the first row that is not the archive's workspace's: the workspace row must be the
/// header's, every other row of the workspace must carry its id, and the accounts must be
/// exactly those its memberships and artifacts name.
fn check_ownership(a: &Archive) -> Result<()> {
    let accounts: HashSet<Uuid> = a
        .rows
        .iter()
        .filter(|(t, _)| t.owner == Owner::Account)
        .flat_map(|(_, rows)| rows.iter().filter_map(|(_, row)| uuid_of(row, "id")))
        .collect();
    let mut named = HashSet::new();
    let mut workspace_rows = 0;
    for (table, rows) in &a.rows {
        for (line, row) in rows {
            match table.owner {
                Owner::Workspace => {
                    let slug = row.get("slug").and_then(Value::as_str);
                    if uuid_of(row, "id") != Some(a.tenant_id) || slug != Some(a.slug.as_str()) {
                        return Err(refuse(
                            table,
                            *line,
                            format!(
                                "a workspace other than the archive's {:?} ({})",
                                a.slug, a.tenant_id
                            ),
                        ));
                    }
                    workspace_rows += 1;
                }
                Owner::Tenant => {
                    let tenant = uuid_of(row, "tenant_id");
                    if tenant != Some(a.tenant_id) {
                        return Err(refuse(
                            table,
                            *line,
                            format!(
                                "the row belongs to {}, not to the archive's workspace {}",
                                tenant.map_or("no workspace".into(), |t| format!("workspace {t}")),
                                a.tenant_id
                            ),
                        ));
                    }
                    for (_, column) in ACCOUNT_REFERENCES.iter().filter(|(t, _)| *t == table.name) {
                        let Some(user) = uuid_of(row, column) else {
                            continue;
                        };
                        if !accounts.contains(&user) {
                            return Err(refuse(
                                table,
                                *line,
                                format!(
                                "{column} names the account {user}, which the archive does not hold"
                            ),
                            ));
                        }
                        named.insert(user);
                    }
                }
                Owner::Account => {}
            }
        }
    }
    if workspace_rows != 1 {
        bail!("{workspace_rows} rows for the workspace itself in table tenants, not 1");
    }
    for (table, rows) in a.rows.iter().filter(|(t, _)| t.owner == Owner::Account) {
        for (line, row) in rows {
            if !uuid_of(row, "id").is_some_and(|id| named.contains(&id)) {
                return Err(refuse(
                    table,
                    *line,
                    "an account that is neither a member of the workspace nor the creator of one \
                     of its artifacts"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// Refuses an archived account that clashes with an account of the target: one with its id but
/// another e-mail address (not the same person), or one with its address but another id. An
/// account that exists with the same id and address is kept as it is. Returns how many exist.
async fn existing_accounts(conn: &mut PgConnection, accounts: &[Row]) -> Result<i64> {
    let ids: Vec<Uuid> = accounts
        .iter()
        .filter_map(|(_, r)| uuid_of(r, "id"))
        .collect();
    let emails: Vec<&str> = accounts
        .iter()
        .filter_map(|(_, r)| r.get("email")?.as_str())
        .collect();
    let found: Vec<(Uuid, String)> =
        sqlx::query_as("SELECT id, email::text FROM users WHERE id = ANY($1) OR email = ANY($2)")
            .bind(&ids)
            .bind(&emails)
            .fetch_all(&mut *conn)
            .await?;
    let mut existing = 0;
    for (line, row) in accounts {
        let id = uuid_of(row, "id");
        let email = row.get("email").and_then(Value::as_str);
        for (found_id, found_email) in &found {
            let clash = match (Some(*found_id) == id, Some(found_email.as_str()) == email) {
                (true, true) => {
                    existing += 1;
                    None
                }
                (true, false) => Some(format!(
                    "the target database has the account {found_id} with another e-mail address"
                )),
                (false, true) => Some(format!(
                    "the target database has an account with the address {found_email} under \
                     another id ({found_id})"
                )),
                (false, false) => None,
            };
            if let Some(why) = clash {
                bail!("line {line} (table users): {why}; refusing the whole archive, nothing was imported");
            }
        }
    }
    Ok(existing)
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
    let mut without_password = 0;
    for (table, rows) in &archive.rows {
        bar.set_message(table.name);
        let account = table.owner == Owner::Account;
        if account {
            existing_users = existing_accounts(&mut tx, rows)
                .await
                .with_context(|| format!("archive {}", path.display()))?;
        }
        let cols = insertable_columns(&mut tx, table.name)
            .await?
            .iter()
            .map(|c| quote_ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        // Accounts are shared between workspaces: one that exists already stays as it is.
        let conflict = if account {
            "ON CONFLICT (id) DO NOTHING"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO public.{t} ({cols}) OVERRIDING SYSTEM VALUE \
             SELECT {cols} FROM jsonb_populate_recordset(NULL::public.{t}, $1) {conflict}",
            t = quote_ident(table.name)
        );
        let mut inserted = 0;
        for chunk in rows.chunks(1000) {
            let batch = chunk
                .iter()
                .map(|(_, row)| {
                    let mut row = row.clone();
                    if account && !archive.credentials {
                        // Whatever the rows say: the header's promise decides.
                        if let Some(fields) = row.as_object_mut() {
                            fields.insert("hashed_password".into(), NO_PASSWORD.into());
                        }
                    }
                    row
                })
                .collect();
            inserted += sqlx::query(&sql)
                .bind(Value::Array(batch))
                .execute(&mut *tx)
                .await
                .with_context(|| format!("importing table {}", table.name))?
                .rows_affected() as i64;
        }
        if account && !archive.credentials {
            without_password = inserted;
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
    let whole_accounts = archive.credentials && existing_users == 0;
    let comparable = |sums: &[TableSum]| -> Vec<TableSum> {
        sums.iter()
            .cloned()
            .map(|mut s| {
                if s.name == "users" && !whole_accounts {
                    s.checksum.clear();
                }
                s
            })
            .collect()
    };
    crate::backup::compare(&comparable(&archive.tables), &comparable(&sums))
        .context("the imported workspace does not match its archive; nothing was imported")?;
    tx.commit().await?;
    conn.close().await?;
    Ok(Summary {
        tenant_id: archive.tenant_id,
        slug: archive.slug,
        tables: sums,
        signed: archive.signed,
        credentials: archive.credentials,
        existing_users,
        without_password,
    })
}
