//! The archive format: its lines, writing them with their checksum and signature, and reading
//! an archive back with every check made before anything is imported.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::trust::check_ownership;
use super::{Table, Trust, FORMAT, TABLES};
use crate::pg::TableSum;

/// The shortest key accepted for signing archives.
const MIN_KEY_BYTES: usize = 32;

type HmacSha256 = Hmac<Sha256>;

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

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Line {
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

fn line_bytes(line: &Line) -> Result<Vec<u8>> {
    let mut bytes = serde_json::to_vec(line)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// Writes lines, keeping the sha256 of the header and rows and the HMAC of everything.
pub(super) struct ArchiveWriter<W: Write> {
    inner: W,
    hash: Sha256,
    mac: Option<HmacSha256>,
}

impl<W: Write> ArchiveWriter<W> {
    /// Signs with `key` when there is one.
    pub(super) fn new(inner: W, key: Option<&ArchiveKey>) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
            mac: key.map(ArchiveKey::mac),
        }
    }

    fn signed(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(mac) = &mut self.mac {
            mac.update(bytes);
        }
        self.inner.write_all(bytes)?;
        Ok(())
    }

    pub(super) fn line(&mut self, line: &Line) -> Result<()> {
        let bytes = line_bytes(line)?;
        self.hash.update(&bytes);
        self.signed(&bytes)
    }

    /// The manifest, then the signature when there is a key.
    pub(super) fn finish(mut self, tables: Vec<TableSum>) -> Result<W> {
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

/// A row of an archive and the line it was on (from 1).
pub(super) type Row = (usize, Value);

/// An archive read back and checked: header, rows by table, manifest.
pub(super) struct Archive {
    pub(super) slug: String,
    pub(super) tenant_id: Uuid,
    pub(super) schema_version: i64,
    pub(super) credentials: bool,
    pub(super) signed: bool,
    pub(super) rows: Vec<(&'static Table, Vec<Row>)>,
    pub(super) tables: Vec<TableSum>,
}

/// The header's slug, tenant id, schema version and credentials flag.
type Header = (String, Uuid, i64, bool);

fn corrupt(path: &Path, why: &str) -> anyhow::Error {
    anyhow!(
        "archive {} is corrupted or not a tenant archive ({why}); refusing to import it",
        path.display()
    )
}

/// Reads an archive line by line, checking its structure, checksum and signature as it goes.
struct Reader<'a> {
    path: &'a Path,
    hash: Sha256,
    mac: Option<HmacSha256>,
    header: Option<Header>,
    manifest: Option<Vec<TableSum>>,
    signature: Option<String>,
    rows: Vec<(&'static Table, Vec<Row>)>,
}

impl<'a> Reader<'a> {
    fn new(path: &'a Path, key: Option<&ArchiveKey>) -> Self {
        Self {
            path,
            hash: Sha256::new(),
            mac: key.map(ArchiveKey::mac),
            header: None,
            manifest: None,
            signature: None,
            rows: TABLES.iter().map(|t| (t, Vec::new())).collect(),
        }
    }

    /// The line `line` of the archive (from 1), without its newline.
    fn line(&mut self, number: usize, line: &[u8]) -> Result<()> {
        let path = self.path;
        if self.signature.is_some() {
            return Err(corrupt(path, "data after the signature"));
        }
        let parsed: Line =
            serde_json::from_slice(line).map_err(|_| corrupt(path, "a line is not valid JSON"))?;
        match (&parsed, &self.manifest) {
            (Line::Signature { hmac_sha256 }, Some(_)) => {
                self.signature = Some(hmac_sha256.clone());
                return Ok(());
            }
            (Line::Signature { .. }, None) => {
                return Err(corrupt(path, "a signature before the end"))
            }
            (_, Some(_)) => return Err(corrupt(path, "data after the manifest")),
            (_, None) => {}
        }
        self.digest(line, matches!(parsed, Line::Manifest { .. }));
        self.record(number, parsed)
    }

    /// Adds a line to the HMAC and, unless it is the manifest, to the sha256.
    fn digest(&mut self, line: &[u8], manifest: bool) {
        if let Some(mac) = &mut self.mac {
            mac.update(line);
            mac.update(b"\n");
        }
        if !manifest {
            self.hash.update(line);
            self.hash.update(b"\n");
        }
    }

    /// Keeps a header, row or manifest line, checking the manifest's sha256.
    fn record(&mut self, number: usize, parsed: Line) -> Result<()> {
        let path = self.path;
        match parsed {
            Line::Manifest { tables, sha256 } => {
                let actual = hex::encode(self.hash.clone().finalize());
                if actual != sha256 {
                    return Err(corrupt(
                        path,
                        &format!("its sha256 is {actual}, the manifest records {sha256}"),
                    ));
                }
                self.manifest = Some(tables);
            }
            Line::Header {
                format,
                slug,
                tenant_id,
                schema_version,
                credentials,
                ..
            } => {
                if self.header.is_some() {
                    return Err(corrupt(path, "a second header"));
                }
                if format != FORMAT {
                    bail!("archive format {format} is not supported (this release reads {FORMAT}); export the workspace again with this release");
                }
                self.header = Some((slug, tenant_id, schema_version, credentials));
            }
            Line::Row { table, row } => {
                let slot = self
                    .rows
                    .iter_mut()
                    .find(|(t, _)| t.name == table)
                    .ok_or_else(|| corrupt(path, &format!("unknown table {table}")))?;
                slot.1.push((number, row));
            }
            Line::Signature { .. } => unreachable!("handled by Reader::line"),
        }
        Ok(())
    }

    /// The archive once every line is read: complete, and signed as `trust` demands.
    fn finish(self, trust: Trust<'_>) -> Result<Archive> {
        let path = self.path;
        let (slug, tenant_id, schema_version, credentials) =
            self.header.ok_or_else(|| corrupt(path, "no header"))?;
        let tables = self
            .manifest
            .ok_or_else(|| corrupt(path, "no manifest: the file is truncated"))?;
        let signed = check_signature(path, self.signature, self.mac, trust)?;
        Ok(Archive {
            slug,
            tenant_id,
            schema_version,
            credentials,
            signed,
            rows: self.rows,
            tables,
        })
    }
}

/// Whether the archive's signature was checked; refuses a signature that does not match, a
/// signed archive without the key, and an unsigned one that `trust` does not allow.
fn check_signature(
    path: &Path,
    signature: Option<String>,
    mac: Option<HmacSha256>,
    trust: Trust<'_>,
) -> Result<bool> {
    Ok(match (signature, mac) {
        (Some(signature), Some(mac)) => {
            let tag =
                hex::decode(&signature).map_err(|_| corrupt(path, "the signature is not hex"))?;
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
    })
}

/// Reads and checks the archive at `path`: its structure, checksum, signature (as `trust`
/// demands) and that every row is its workspace's.
pub(super) fn read_archive(path: &Path, trust: Trust<'_>) -> Result<Archive> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("ARCHIVE: cannot open {}", path.display()))?;
    let mut reader = Reader::new(path, trust.key);
    for (number, line) in BufReader::new(file).split(b'\n').enumerate() {
        reader.line(number + 1, &line?)?;
    }
    let archive = reader.finish(trust)?;
    check_ownership(&archive).map_err(|why| {
        anyhow!(
            "archive {}: {why}; refusing the whole archive, nothing was imported",
            path.display()
        )
    })?;
    Ok(archive)
}
