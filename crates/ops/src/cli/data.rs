//! The database commands: `migrate` (and `migrate lint`), `backup`, `restore`, `tenant`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use ghostworks_config::S3Settings;

use crate::backup::{self, Retention};
use crate::storage::Destination;
use crate::{lint, migrate, tenant};

#[derive(Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: Option<MigrateCommand>,
    /// List applied and pending migrations instead of applying them.
    #[arg(long)]
    pub status: bool,
    /// How long a migration statement may wait for a table lock before it gives up (and
    /// the migration rolls back), so traffic never queues behind it for long.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub lock_timeout: u64,
}

#[derive(Subcommand)]
pub enum MigrateCommand {
    /// Flag destructive changes (drop or rename of a table or column, type changes, NOT NULL
    /// without a default, non-concurrent indexes on existing tables) in the migration files,
    /// unless the file is marked `-- ghostworks:contract`. Exit status 1 when any is found.
    Lint {
        /// The migrations directory.
        #[arg(long, default_value = "migrations")]
        dir: PathBuf,
    },
}

#[derive(Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    pub command: Option<BackupCommand>,
    /// Where backups are written: a local directory, or s3://BUCKET/PREFIX on S3-compatible
    /// storage with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (default us-east-1) and
    /// optionally AWS_ENDPOINT_URL (plain http only to a loopback address).
    #[arg(long, env = "BACKUP_DIR", default_value = "backups", global = true)]
    pub dir: String,
    /// Retention: keep this many newest backups...
    #[arg(long, default_value_t = 7)]
    pub keep_recent: usize,
    /// ...plus the newest of each of this many days...
    #[arg(long, default_value_t = 7)]
    pub keep_daily: usize,
    /// ...plus the newest of each of this many ISO weeks; older backups are deleted.
    #[arg(long, default_value_t = 4)]
    pub keep_weekly: usize,
}

#[derive(Subcommand)]
pub enum BackupCommand {
    /// Restore a backup into a scratch database and check row counts and content checksums
    /// against its manifest (the scratch database is dropped afterwards). Warns when the
    /// backup's files are readable by others than their owner (backups are written 0600 in a
    /// 0700 directory).
    Verify {
        /// A manifest, its .dump, or a backup directory or s3:// prefix (its newest backup);
        /// default: --dir. A backup on S3 is downloaded to TMPDIR first.
        #[arg(long)]
        from: Option<String>,
    },
    /// The backups in --dir (a directory or an s3:// prefix), oldest first.
    List,
}

/// The operator's archive key.
#[derive(Args)]
pub struct ArchiveKeyArgs {
    /// A file holding the key (at least 32 bytes, e.g. `openssl rand -hex 32 > FILE`, mode
    /// 0600) shared by the operators who move workspaces: export signs the archive with
    /// HMAC-SHA256, import checks the signature.
    #[arg(long, env = "TENANT_ARCHIVE_KEY_FILE", value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

impl ArchiveKeyArgs {
    fn read(&self) -> Result<Option<tenant::ArchiveKey>> {
        self.key_file
            .as_deref()
            .map(tenant::ArchiveKey::read)
            .transpose()
    }
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Write one workspace's data (workspace, member accounts, memberships, artifacts, audit
    /// log, usage) to a checksummed JSON-lines archive, created 0600. Signed with --key-file;
    /// without --with-credentials the accounts travel without their password hashes.
    Export {
        /// The workspace's slug.
        slug: String,
        /// The archive to write; default: SLUG.gwtenant.jsonl.
        #[arg(long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        key: ArchiveKeyArgs,
        /// Include the accounts' password hashes (otherwise imported accounts must reset
        /// their password before they can log in).
        #[arg(long)]
        with_credentials: bool,
    },
    /// Import an archive into the database of DATABASE_ADMIN_URL in one transaction, verified
    /// against the archive's manifest. Refused when the workspace exists there, when any row
    /// belongs to another workspace, when the signature does not match --key-file, and when
    /// the archive is unsigned (unless --allow-unsigned). Existing accounts are kept as they
    /// are and gain only the archive's memberships of the imported workspace.
    Import {
        /// The archive written by `tenant export`.
        archive: PathBuf,
        #[command(flatten)]
        key: ArchiveKeyArgs,
        /// Import an archive that carries no signature (one exported without --key-file);
        /// a signed archive is always checked.
        #[arg(long)]
        allow_unsigned: bool,
    },
}

fn mb_per_s(bytes: f64, d: Duration) -> f64 {
    bytes / 1e6 / d.as_secs_f64().max(1e-3)
}

/// `migrate`: applies the migrations, or lists them with `--status`.
pub async fn migrate(url: &str, args: &MigrateArgs) -> Result<()> {
    if args.status {
        for m in migrate::status(url).await? {
            println!("{m}");
        }
    } else {
        migrate::apply(url, Duration::from_secs(args.lock_timeout)).await?;
        println!("migrations applied");
    }
    Ok(())
}

pub fn lint(command: MigrateCommand) -> Result<ExitCode> {
    let MigrateCommand::Lint { dir } = command;
    let findings = lint::lint_dir(&dir)?;
    let blocking = findings.iter().filter(|f| !f.contract).count();
    for f in &findings {
        println!("{f}");
    }
    println!(
        "{blocking} destructive change(s) outside contract steps, {} allowed in contract steps \
         (migrations up to {:04} are the baseline and not linted)",
        findings.len() - blocking,
        lint::BASELINE_VERSION
    );
    Ok(if blocking == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn backup(url: &str, s3: &S3Settings, args: BackupArgs) -> Result<()> {
    match args.command {
        None => {
            let dest = Destination::parse(&args.dir, s3).context("--dir (BACKUP_DIR)")?;
            let (manifest, m) = backup::create(url, &dest).await?;
            let secs = Duration::from_millis(m.duration_ms);
            println!(
                "backup {manifest} written: {} rows in {} tables, schema version {}, dump {:.1} MB \
                 (database {:.1} MB) in {:.1} s ({:.1} MB/s of database), sha256 {}",
                m.total_rows(),
                m.tables.len(),
                m.schema_version,
                m.dump_bytes as f64 / 1e6,
                m.database_bytes as f64 / 1e6,
                secs.as_secs_f64(),
                mb_per_s(m.database_bytes as f64, secs),
                m.sha256
            );
            let removed = backup::prune(
                &dest,
                Retention {
                    recent: args.keep_recent.max(1),
                    daily: args.keep_daily,
                    weekly: args.keep_weekly,
                },
            )
            .await?;
            for r in removed {
                println!("retention: deleted {r}");
            }
        }
        Some(BackupCommand::Verify { from }) => {
            let b = backup::locate(from.as_deref().unwrap_or(&args.dir), s3).await?;
            warn_loose_modes(&b);
            let took = backup::verify(url, &b).await?;
            println!(
                "backup {} verified: {} rows in {} tables match the manifest's counts and \
                 checksums (restored in {:.1} s, {:.1} MB/s of database)",
                b.origin,
                b.manifest.total_rows(),
                b.manifest.tables.len(),
                took.as_secs_f64(),
                mb_per_s(b.manifest.database_bytes as f64, took)
            );
        }
        Some(BackupCommand::List) => {
            let dest = Destination::parse(&args.dir, s3).context("--dir (BACKUP_DIR)")?;
            println!(
                "{:<26}  {:>6}  {:>12}  {:>10}  file",
                "created_at", "schema", "rows", "MB"
            );
            for (name, m) in backup::list(&dest).await? {
                println!(
                    "{:<26}  {:>6}  {:>12}  {:>10.1}  {}",
                    m.created_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    m.schema_version,
                    m.total_rows(),
                    m.dump_bytes as f64 / 1e6,
                    dest.location(&name)
                );
            }
        }
    }
    Ok(())
}

fn warn_loose_modes(b: &backup::Located) {
    for warning in &b.loose_modes {
        eprintln!("{warning}");
    }
}

pub async fn restore(url: &str, s3: &S3Settings, from: &str, force: bool) -> Result<()> {
    let b = backup::locate(from, s3).await?;
    warn_loose_modes(&b);
    let took = backup::restore(url, &b, force).await?;
    println!(
        "restored {} ({} rows in {} tables, schema version {}) in {:.1} s ({:.1} MB/s of \
         database); counts, checksums and row-level security verified. On a new server, create \
         the login roles (docs/operations.md, Restore).",
        b.origin,
        b.manifest.total_rows(),
        b.manifest.tables.len(),
        b.manifest.schema_version,
        took.as_secs_f64(),
        mb_per_s(b.manifest.database_bytes as f64, took)
    );
    Ok(())
}

pub async fn tenant(url: &str, command: TenantCommand) -> Result<()> {
    let (verb, s, passwords) = match command {
        TenantCommand::Export {
            slug,
            output,
            key,
            with_credentials,
        } => {
            let output = output.unwrap_or_else(|| PathBuf::from(format!("{slug}.gwtenant.jsonl")));
            let key = key.read()?;
            let s = tenant::export(url, &slug, &output, key.as_ref(), with_credentials).await?;
            let passwords = "not exported: accounts this archive creates must reset their \
                             password before they can log in (--with-credentials exports the \
                             hashes)"
                .to_string();
            (format!("exported to {}", output.display()), s, passwords)
        }
        TenantCommand::Import {
            archive,
            key,
            allow_unsigned,
        } => {
            let key = key.read()?;
            let trust = tenant::Trust {
                key: key.as_ref(),
                allow_unsigned,
            };
            let s = tenant::import(url, &archive, trust).await?;
            let passwords = format!(
                "not in the archive: the {} account(s) it created have no password and must \
                 reset it (the login page's password reset) before they can log in",
                s.without_password
            );
            (format!("imported from {}", archive.display()), s, passwords)
        }
    };
    let tables: Vec<String> = s
        .tables
        .iter()
        .map(|t| format!("{} {}", t.name, t.rows))
        .collect();
    println!(
        "workspace {} ({}) {verb}: {} rows ({}){}; counts and checksums verified",
        s.slug,
        s.tenant_id,
        s.total_rows(),
        tables.join(", "),
        if s.existing_users > 0 {
            format!(
                ", {} existing account(s) kept as they were (they gain only this workspace's \
                 memberships)",
                s.existing_users
            )
        } else {
            String::new()
        }
    );
    println!(
        "signature: {}",
        if s.signed {
            "HMAC-SHA256 with the --key-file key"
        } else {
            "none (importing it needs --allow-unsigned; --key-file signs and checks archives)"
        }
    );
    if !s.credentials {
        println!("passwords: {passwords}");
    }
    Ok(())
}
