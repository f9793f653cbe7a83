//! pgBackRest as Ghostworks runs it: the configuration file written from the settings (the
//! only place the repository's passphrase is copied to), the commands run as the owner of the
//! data directory, and the JSON `info` answers.

use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ghostworks_config::{Cipher, PitrSettings, S3Settings};
use serde::Deserialize;

/// The OS user pgBackRest and the scratch servers run as: the owner of the data directory.
#[derive(Debug, Clone)]
pub struct Owner {
    uid: u32,
    gid: u32,
    name: String,
    /// Set when this process is root and the owner is not: commands then go through runuser.
    switch: bool,
}

impl Owner {
    fn of(pgdata: &Path) -> Result<Self> {
        let meta = std::fs::metadata(pgdata)
            .with_context(|| format!("PITR_PGDATA: cannot read {}", pgdata.display()))?;
        let (uid, gid) = (meta.uid(), meta.gid());
        // SAFETY: getpwuid returns NULL or a pointer to a static record, read at once.
        let name = unsafe {
            let pw = libc::getpwuid(uid);
            if pw.is_null() {
                bail!("PITR_PGDATA: its owner (uid {uid}) has no user name");
            }
            std::ffi::CStr::from_ptr((*pw).pw_name)
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if me != 0 && me != uid {
            bail!(
                "run `ghostworks pitr` as {name}, the owner of {} (pgBackRest must read the data \
                 directory and write the repository as that user), or as root",
                pgdata.display()
            );
        }
        Ok(Owner {
            uid,
            gid,
            name,
            switch: me != uid,
        })
    }

    /// `program` run as the owner, with an empty environment but PATH: nothing of this
    /// process's secrets (database URLs, S3 keys) reaches the child.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = if self.switch {
            let mut c = Command::new("runuser");
            c.args(["-u", &self.name, "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        c
    }

    /// Gives `path` to the owner when this process is root.
    pub fn chown(&self, path: &Path) -> Result<()> {
        if self.switch {
            std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
                .with_context(|| format!("cannot give {} to {}", path.display(), self.name))?;
        }
        Ok(())
    }

    /// Creates `dir` 0700 and gives it to the owner.
    pub fn private_dir(&self, dir: &Path) -> Result<()> {
        crate::private::create_private_dir(dir)?;
        self.chown(dir)
    }
}

/// The repository's passphrase, from the operator's key file; refuses a file others may read.
fn read_key(path: &Path) -> Result<String> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "the repository is encrypted (PITR_CIPHER=aes-256-cbc) but its key file {} {why}; \
             refusing to run",
            path.display()
        )
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "has mode {mode:04o}: others than its owner may read it (chmod 600 it)"
        )));
    }
    let key = std::fs::read_to_string(path).map_err(|e| refuse(format!("cannot be read: {e}")))?;
    let key = key.trim_end_matches(['\r', '\n']);
    if key.len() < 32 || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(refuse(
            "must hold one line of at least 32 printable characters (e.g. `openssl rand -hex 32`)"
                .into(),
        ));
    }
    Ok(key.to_string())
}

/// The `[global]` repository options for `repo` (a directory or s3://BUCKET/PREFIX).
fn repository_options(repo: &str, s3: &S3Settings) -> Result<String> {
    let Some(rest) = repo.strip_prefix("s3://") else {
        return Ok(format!("repo1-path={repo}\n"));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) else {
        bail!("PITR_REPO on S3 needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    };
    let endpoint = s3.endpoint.as_deref().unwrap_or("s3.amazonaws.com");
    let host = endpoint.strip_prefix("https://").unwrap_or(endpoint);
    if host.contains("://") {
        bail!("AWS_ENDPOINT_URL: pgBackRest speaks only https to S3");
    }
    let (host, port) = match host.trim_end_matches('/').rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => (host.trim_end_matches('/'), "443"),
    };
    let mut o = String::new();
    writeln!(
        o,
        "repo1-type=s3\nrepo1-s3-bucket={bucket}\nrepo1-path=/{prefix}"
    )?;
    writeln!(o, "repo1-s3-endpoint={host}\nrepo1-storage-port={port}")?;
    writeln!(o, "repo1-s3-uri-style=path")?;
    writeln!(
        o,
        "repo1-s3-region={}",
        s3.region.as_deref().unwrap_or("us-east-1")
    )?;
    writeln!(
        o,
        "repo1-s3-key={key}\nrepo1-s3-key-secret={}",
        secret.expose()
    )?;
    Ok(o)
}

/// The text of pgBackRest's configuration file for `settings`.
fn render(
    settings: &PitrSettings,
    s3: &S3Settings,
    pg_port: u16,
    key: Option<&str>,
) -> Result<String> {
    let state = settings.state_dir.display();
    let mut c = String::from(
        "# Written by `ghostworks pitr` from its settings: edits are overwritten.\n[global]\n",
    );
    c.push_str(&repository_options(&settings.repo, s3)?);
    if let Some(key) = key {
        writeln!(c, "repo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass={key}")?;
    }
    writeln!(c, "repo1-retention-full={}", settings.retention_full)?;
    // WAL is pushed by a background process that batches segments, so a busy server's
    // archive_command returns at once.
    writeln!(
        c,
        "archive-async=y\nspool-path={state}/spool\nlock-path={state}/lock"
    )?;
    writeln!(
        c,
        "log-path={state}/log\nlog-level-file=info\nstart-fast=y\nprocess-max=2"
    )?;
    writeln!(c, "compress-type=lz4")?;
    // A restore fetches segment by segment, without the spool and lock the primary's
    // asynchronous push uses on the same host.
    c.push_str("\n[global:archive-get]\narchive-async=n\n");
    write!(
        c,
        "\n[{}]\npg1-path={}\npg1-port={pg_port}\npg1-socket-path={}\n",
        settings.stanza,
        settings.pgdata.display(),
        settings.socket_dir.display()
    )?;
    Ok(c)
}

/// Refuses to run when the installed configuration differs from `expected` (compared by
/// digest: the texts hold the passphrase).
fn check_installed(config: &Path, expected: &str) -> Result<()> {
    use sha2::{Digest, Sha256};
    let installed = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: run `ghostworks pitr configure` first",
            config.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", config.display())),
    };
    if Sha256::digest(&installed) == Sha256::digest(expected) {
        return Ok(());
    }
    bail!(
        "the PITR settings differ from {}, which the archiving server uses ({}): run \
         `ghostworks pitr configure` to change it, or run this command with the settings it was \
         configured with",
        config.display(),
        differing_settings(&installed, expected).join(", ")
    )
}

/// pgBackRest, configured for one stanza.
pub struct PgBackRest {
    bin: PathBuf,
    pub config: PathBuf,
    pub stanza: String,
    pub state_dir: PathBuf,
    pub owner: Owner,
}

/// What a command does with pgBackRest's configuration file, which the archiving server's
/// `archive_command` reads at every segment: only `pitr configure` writes it, so a command run
/// with other settings (a mistyped key file, another repository) cannot break archiving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    Write,
    /// Refuse to run unless the file holds exactly what the settings give.
    MustMatch,
}

/// The `section/name` of each setting whose line differs between two configuration texts:
/// names only, never values (the passphrase and S3 keys are among them).
fn differing_settings(a: &str, b: &str) -> Vec<String> {
    fn settings(text: &str) -> std::collections::BTreeSet<(String, &str)> {
        let mut section = "";
        let mut out = std::collections::BTreeSet::new();
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s;
            } else if !line.is_empty() && !line.starts_with('#') {
                out.insert((section.to_string(), line));
            }
        }
        out
    }
    let (a, b) = (settings(a), settings(b));
    let mut names: Vec<String> = a
        .symmetric_difference(&b)
        .map(|(section, line)| format!("{section}/{}", line.split('=').next().unwrap_or(line)))
        .collect();
    names.dedup();
    names
}

impl PgBackRest {
    /// Checks the key file and the data directory's owner, and writes the configuration file
    /// (0600, in the state directory) or checks that it holds what the settings give.
    pub fn prepare(
        settings: &PitrSettings,
        s3: &S3Settings,
        pg_port: u16,
        file: ConfigFile,
    ) -> Result<Self> {
        let key = match &settings.cipher {
            Cipher::Aes256Cbc { key_file } => Some(read_key(key_file)?),
            Cipher::None => None,
        };
        let bin = ghostworks_config::search_path()
            .into_iter()
            .map(|d| d.join("pgbackrest"))
            .find(|p| p.is_file())
            .context("pgbackrest not found on PATH: apt-get install pgbackrest")?;
        let owner = Owner::of(&settings.pgdata)?;
        let state = &settings.state_dir;
        for dir in [
            state.clone(),
            state.join("spool"),
            state.join("lock"),
            state.join("log"),
        ] {
            owner.private_dir(&dir)?;
        }
        if !settings.repo.starts_with("s3://") {
            owner.private_dir(Path::new(&settings.repo))?;
        }
        let config = state.join("pgbackrest.conf");
        let text = render(settings, s3, pg_port, key.as_deref())?;
        match file {
            ConfigFile::Write => super::write_private(&owner, &config, text.as_bytes())?,
            ConfigFile::MustMatch => check_installed(&config, &text)?,
        }
        Ok(PgBackRest {
            bin,
            config,
            stanza: settings.stanza.clone(),
            state_dir: state.clone(),
            owner,
        })
    }

    /// The archive_command of the archived server's postgresql.conf.
    pub fn archive_command(&self) -> String {
        archive_command(&self.bin, &self.config, &self.stanza)
    }

    /// Runs `pgbackrest COMMAND ARGS` to completion; fails with its output when it fails.
    /// Returns what it printed on stdout.
    pub async fn run(&self, command: &str, args: &[String]) -> Result<String> {
        let mut c = self.owner.command(&self.bin);
        c.arg(format!("--config={}", self.config.display()))
            .arg(format!("--stanza={}", self.stanza))
            .args(args.iter().filter(|a| a.starts_with("--")))
            .arg(command)
            // Positional parameters (repo-ls's path) follow the command.
            .args(args.iter().filter(|a| !a.starts_with("--")));
        let out = tokio::task::spawn_blocking(move || c.output())
            .await?
            .context("pgbackrest: could not start")?;
        if !out.status.success() {
            bail!(
                "pgbackrest {command} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The stanza's `info`.
    pub async fn info(&self) -> Result<StanzaInfo> {
        let text = self.run("info", &["--output=json".into()]).await?;
        let all: Vec<StanzaInfo> =
            serde_json::from_str(&text).context("pgbackrest info: unexpected JSON")?;
        all.into_iter()
            .find(|s| s.name == self.stanza)
            .with_context(|| format!("pgbackrest info: no stanza {}", self.stanza))
    }
}

/// `archive_command` for pgBackRest at `bin` with the configuration `config`.
pub fn archive_command(bin: &Path, config: &Path, stanza: &str) -> String {
    format!(
        "'{}' --config='{}' --stanza={stanza} archive-push %p",
        bin.display(),
        config.display()
    )
}

/// A backup's kind: full, differential (changes since the last full) or incremental (changes
/// since the last backup of any kind).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    Full,
    Diff,
    Incr,
}

impl BackupType {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Diff => "diff",
            BackupType::Incr => "incr",
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StanzaInfo {
    pub name: String,
    pub status: Status,
    #[serde(default)]
    pub backup: Vec<BackupInfo>,
    #[serde(default)]
    pub archive: Vec<ArchiveInfo>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    pub code: i32,
    pub message: String,
}

#[derive(Debug, Deserialize)]
pub struct BackupInfo {
    pub label: String,
    #[serde(rename = "type")]
    pub kind: BackupType,
    pub timestamp: Span,
    pub info: Sizes,
    pub archive: WalRange,
}

#[derive(Debug, Deserialize)]
pub struct Span {
    pub start: i64,
    pub stop: i64,
}

#[derive(Debug, Deserialize)]
pub struct Sizes {
    /// The database's size at the backup.
    pub size: u64,
    /// What this backup added to the repository (after compression).
    pub repository: RepoSizes,
}

#[derive(Debug, Deserialize)]
pub struct RepoSizes {
    pub delta: u64,
}

#[derive(Debug, Deserialize)]
pub struct WalRange {
    pub start: String,
    pub stop: String,
}

#[derive(Debug, Deserialize)]
pub struct ArchiveInfo {
    pub id: String,
    pub min: Option<String>,
    pub max: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ghostworks_config::Secret;

    #[test]
    fn the_configuration_names_the_repository_cipher_and_stanza() {
        let settings = PitrSettings {
            stanza: "gw".into(),
            repo: "s3://bucket/pitr/prod".into(),
            cipher: Cipher::None,
            pgdata: "/srv/pg".into(),
            socket_dir: "/run/pg".into(),
            state_dir: "/var/lib/gw".into(),
            retention_full: 3,
        };
        let s3 = S3Settings {
            access_key_id: Some("AK".into()),
            secret_access_key: Some(Secret::new("SK")),
            endpoint: Some("https://minio.internal:9000".into()),
            ..Default::default()
        };
        let c = render(&settings, &s3, 5433, Some("k".repeat(32).as_str())).unwrap();
        for line in [
            "repo1-type=s3",
            "repo1-s3-bucket=bucket",
            "repo1-path=/pitr/prod",
            "repo1-s3-endpoint=minio.internal",
            "repo1-storage-port=9000",
            "repo1-s3-key-secret=SK",
            "repo1-cipher-type=aes-256-cbc",
            "repo1-retention-full=3",
            "spool-path=/var/lib/gw/spool",
            "[gw]",
            "pg1-port=5433",
            "pg1-socket-path=/run/pg",
        ] {
            assert!(c.lines().any(|l| l == line), "{line} in\n{c}");
        }
        let plain = S3Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..s3
        };
        assert!(render(&settings, &plain, 5432, None).is_err());
    }

    #[test]
    fn a_key_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("key");
        std::fs::write(&f, "0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_key(&f).unwrap_err().to_string();
        assert!(
            e.contains("mode 0640") && e.contains("refusing to run"),
            "{e}"
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key(&f).unwrap().len(), 32);
        let e = read_key(&dir.path().join("absent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
    }

    #[test]
    fn a_configuration_other_than_the_installed_one_is_refused_naming_settings_not_values() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgbackrest.conf");
        let installed =
            "[global]\nrepo1-path=/r\nrepo1-cipher-pass=secret-one\n[gw]\npg1-port=5432\n";
        let e = check_installed(&f, installed).unwrap_err().to_string();
        assert!(e.contains("run `ghostworks pitr configure` first"), "{e}");
        std::fs::write(&f, installed).unwrap();
        check_installed(&f, installed).unwrap();
        let other = installed
            .replace("secret-one", "secret-two")
            .replace("5432", "5433");
        let e = check_installed(&f, &other).unwrap_err().to_string();
        assert!(e.contains("global/repo1-cipher-pass, gw/pg1-port"), "{e}");
        assert!(!e.contains("secret-"), "a value was printed: {e}");
    }
}
