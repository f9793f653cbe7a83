//! A private PostgreSQL 15 for the tests of `ghostworks pitr`, which archive its WAL and
//! restore it: its data directory, socket, repository, state and restored copies all live in
//! one directory the server's OS user can reach, with the operator's key file (0600) beside
//! them. Every server started from that directory is stopped, and the directory removed, when
//! the test process exits.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::Result;
use ghostworks_devstack::{after_exit, pg_bin, Postgres};

pub struct Archiving {
    /// Everything lives under this directory.
    pub root: PathBuf,
    pub postgres: Postgres,
    /// A 0600 file holding the repository's passphrase.
    pub key_file: PathBuf,
}

impl Archiving {
    /// Starts the server, not archiving yet (`ghostworks pitr configure` names the
    /// archive_command to set).
    pub fn start() -> Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("ghostworks-pitr-")
            .tempdir()?
            .keep();
        // The server's OS user must reach its data directory and the repository inside.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        let pg_ctl = pg_bin("pg_ctl")?.display().to_string();
        // Restored copies and drills run their own servers under the root: stop them all.
        after_exit(&format!(
            "for v in '{root}'/*/PG_VERSION '{root}'/*/*/PG_VERSION; do \
             runuser -u postgres -- {pg_ctl} -D \"$(dirname \"$v\")\" -m immediate stop \
             || {pg_ctl} -D \"$(dirname \"$v\")\" -m immediate stop; done; rm -rf '{root}'",
            root = root.display()
        ));
        let key_file = root.join("pitr.key");
        std::fs::write(&key_file, format!("{}\n", uuid::Uuid::new_v4().simple()))?;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        let postgres = Postgres::start(&root.join("pg"), false)?;
        Ok(Archiving {
            root,
            postgres,
            key_file,
        })
    }

    pub fn pgdata(&self) -> PathBuf {
        self.root.join("pg").join("data")
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.join("pg")
    }

    /// Restarts the server (to apply archive_mode).
    pub fn restart(&self) -> Result<()> {
        self.postgres.stop()?;
        self.postgres.start_again()
    }
}
