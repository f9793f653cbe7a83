//! The settings of continuous archiving and point-in-time recovery (`ghostworks pitr`), which
//! drives pgBackRest: where the repository is, how it is encrypted, which PostgreSQL it
//! archives, and where Ghostworks keeps pgBackRest's configuration and its own records.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::reader::{range, Reader};
use crate::ConfigErrors;

/// How the repository is encrypted at rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cipher {
    /// pgBackRest's `aes-256-cbc` with the passphrase in the operator's key file.
    Aes256Cbc { key_file: PathBuf },
    /// Unencrypted: only when PITR_CIPHER=none says so.
    None,
}

#[derive(Debug, Clone)]
pub struct PitrSettings {
    /// PITR_STANZA: pgBackRest's name for the archived cluster.
    pub stanza: String,
    /// PITR_REPO: a local directory or s3://BUCKET/PREFIX.
    pub repo: String,
    pub cipher: Cipher,
    /// PITR_PGDATA: the data directory of the archived PostgreSQL.
    pub pgdata: PathBuf,
    /// PITR_PG_SOCKET_DIR: pgBackRest reaches that PostgreSQL through its Unix socket.
    pub socket_dir: PathBuf,
    /// PITR_STATE_DIR: pgBackRest's configuration, spool, locks and logs, and the records of
    /// the last backup and drill.
    pub state_dir: PathBuf,
    /// PITR_RETENTION_FULL: full backups kept (with the WAL they need); older ones expire.
    pub retention_full: u32,
}

impl PitrSettings {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(vars);
        let repo = r.raw("PITR_REPO");
        if repo.is_none() {
            r.error(
                "PITR_REPO: missing; set it to the repository: a directory or s3://BUCKET/PREFIX",
            );
        }
        let pgdata = r.raw("PITR_PGDATA");
        if pgdata.is_none() {
            r.error(
                "PITR_PGDATA: missing; set it to the data directory of the PostgreSQL to archive",
            );
        }
        let cipher = match r.raw("PITR_CIPHER").as_deref() {
            None | Some("aes-256-cbc") => match r.raw("PITR_KEY_FILE") {
                Some(f) => Cipher::Aes256Cbc {
                    key_file: PathBuf::from(f),
                },
                None => {
                    r.error(
                        "PITR_KEY_FILE: missing; the repository is encrypted (PITR_CIPHER=aes-256-cbc, \
                         the default) with the passphrase in this file (mode 0600); PITR_CIPHER=none \
                         turns encryption off",
                    );
                    Cipher::None
                }
            },
            Some("none") => Cipher::None,
            Some(other) => {
                r.error(format!(
                    "PITR_CIPHER: '{other}' is not valid; expected aes-256-cbc or none"
                ));
                Cipher::None
            }
        };
        let retention_full = r.bounded("PITR_RETENTION_FULL", 2, range(1, 1000, "backups"));
        let stanza = r.raw("PITR_STANZA").unwrap_or_else(|| "ghostworks".into());
        if !stanza
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            r.error("PITR_STANZA: use letters, digits, '-' and '_' only");
        }
        let path = |name: &str, default: &str| PathBuf::from(r.raw(name).unwrap_or(default.into()));
        let socket_dir = path("PITR_PG_SOCKET_DIR", "/var/run/postgresql");
        let state_dir = path("PITR_STATE_DIR", "/var/lib/ghostworks/pitr");
        r.finish(|| PitrSettings {
            stanza,
            repo: repo.unwrap_or_default(),
            cipher,
            pgdata: PathBuf::from(pgdata.unwrap_or_default()),
            socket_dir,
            state_dir,
            retention_full,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<PitrSettings, ConfigErrors> {
        PitrSettings::from_vars(&crate::tests::vars(pairs))
    }

    #[test]
    fn encryption_is_the_default_and_needs_a_key_file() {
        let base = [("PITR_REPO", "/srv/repo"), ("PITR_PGDATA", "/srv/pg")];
        let e = settings(&base).unwrap_err().to_string();
        assert!(e.starts_with("PITR_KEY_FILE: missing"), "{e}");
        let with_key = [base.as_slice(), &[("PITR_KEY_FILE", "/etc/gw/pitr.key")]].concat();
        let s = settings(&with_key).unwrap();
        assert_eq!(
            s.cipher,
            Cipher::Aes256Cbc {
                key_file: "/etc/gw/pitr.key".into()
            }
        );
        assert_eq!(s.stanza, "ghostworks");
        assert_eq!(s.retention_full, 2);
        let off = [base.as_slice(), &[("PITR_CIPHER", "none")]].concat();
        assert_eq!(settings(&off).unwrap().cipher, Cipher::None);
    }

    #[test]
    fn every_problem_is_named() {
        let e = settings(&[("PITR_CIPHER", "rot13"), ("PITR_STANZA", "a b")])
            .unwrap_err()
            .0;
        assert_eq!(e.len(), 4, "{e:?}");
        for v in ["PITR_REPO", "PITR_PGDATA", "PITR_CIPHER", "PITR_STANZA"] {
            assert!(e.iter().any(|l| l.starts_with(v)), "{v} in {e:?}");
        }
    }
}
