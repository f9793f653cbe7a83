//! The operator's commands (`migrate lint`, `backup`, `restore`, `tenant`, `deploy`,
//! `rollback`, `supervise`): argument parsing and reporting around the `ghostworks-ops` library.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use ghostworks_config::S3Settings;
use ghostworks_ops::backup::{self, Retention};
use ghostworks_ops::deploy::{
    self,
    compose::ComposeRuntime,
    process::{self, supervise, ProcessRuntime},
};
use ghostworks_ops::storage::Destination;
use ghostworks_ops::{lint, tenant};

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
    fn read(&self) -> anyhow::Result<Option<tenant::ArchiveKey>> {
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

pub fn lint(command: MigrateCommand) -> anyhow::Result<ExitCode> {
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

pub async fn backup(url: &str, s3: &S3Settings, args: BackupArgs) -> anyhow::Result<()> {
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

pub async fn restore(url: &str, s3: &S3Settings, from: &str, force: bool) -> anyhow::Result<()> {
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

pub async fn tenant(url: &str, command: TenantCommand) -> anyhow::Result<()> {
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

/// How a release runs.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// `ghostworks` processes of the release's binary on this host, behind this host's nginx.
    Process,
    /// Services of a Docker Compose project, from the release's image, behind its nginx.
    Compose,
}

#[derive(Args)]
pub struct ReleaseArgs {
    /// `process`: --release is a binary path. `compose`: --release is an image tag.
    #[arg(
        long,
        value_enum,
        env = "GHOSTWORKS_DEPLOY_RUNTIME",
        default_value = "process"
    )]
    pub runtime: RuntimeKind,
    /// compose: the project's files, in order (repeatable).
    #[arg(
        long = "compose-file",
        value_name = "FILE",
        default_values = ["docker-compose.yml", "docker-compose.prod.yml"]
    )]
    pub compose_files: Vec<PathBuf>,
    /// compose: the project name (`docker compose -p`); default: the files' `name:`.
    #[arg(long)]
    pub compose_project: Option<String>,
    /// compose: Compose's --env-file for interpolating the files.
    #[arg(long)]
    pub compose_env_file: Option<PathBuf>,
    /// compose: the docker CLI (with the Compose plugin).
    #[arg(long, env = "DOCKER", default_value = "docker")]
    pub docker: PathBuf,
    /// compose: the nginx service.
    #[arg(long, default_value = "nginx")]
    pub nginx_service: String,
    /// Where the history, the active colour, pid files and process logs are kept.
    #[arg(
        long,
        global = true,
        env = "GHOSTWORKS_DEPLOY_STATE",
        default_value = ".ghostworks/deploy"
    )]
    pub state_dir: PathBuf,
    /// process: the api listens on this port in blue and one above in green; the worker's
    /// /health 10 above those, the web app 20 above.
    #[arg(long, default_value_t = 8100)]
    pub base_port: u16,
    /// process: environment of a role as ROLE=FILE (KEY=VALUE lines), e.g. api=/etc/ghostworks/api.env
    /// and worker=/etc/ghostworks/worker.env; over the inherited environment. Repeatable.
    #[arg(long = "env-file", value_name = "ROLE=FILE")]
    pub env_files: Vec<String>,
    /// Where nginx.conf includes `upstream-api.conf` and `upstream-web.conf` from; the deploy
    /// rewrites them (compose: the host directory mounted into the nginx service).
    #[arg(long, default_value = "deploy/nginx")]
    pub upstream_dir: PathBuf,
    /// process: nginx's pid file; the master is sent SIGHUP to reload.
    #[arg(long, default_value = "/run/nginx.pid")]
    pub nginx_pid_file: PathBuf,
    /// Deploy without backing the database up first.
    #[arg(long)]
    pub skip_backup: bool,
    /// Where the pre-deploy backup goes: a directory or s3://BUCKET/PREFIX (as `backup --dir`).
    #[arg(long, env = "BACKUP_DIR", default_value = "backups")]
    pub backup_dir: String,
    /// How long to watch the new colour after the switch.
    #[arg(long, default_value_t = 30)]
    pub bake_secs: u64,
    /// How long every new instance has to answer its readiness check.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout_secs: u64,
    /// Roll back when the new colour's share of 5xx answers during the bake exceeds this.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio: f64,
    /// Roll back when the new colour's p95 latency during the bake exceeds this.
    #[arg(long, default_value_t = 500)]
    pub max_p95_ms: u64,
    /// Requests the bake must see before it judges the error ratio and latency.
    #[arg(long, default_value_t = 20)]
    pub min_requests: u64,
    /// Time for nginx's old workers to finish before the old colour is stopped.
    #[arg(long, default_value_t = 2)]
    pub drain_secs: u64,
    /// Contract migrations wait until the live release has been live this long (a rollback
    /// to the release it replaced may need the old shape until then).
    #[arg(long, default_value_t = 24)]
    pub rollback_window_hours: u64,
    /// process: the git commit of the release, for the history (compose reads the image's
    /// org.opencontainers.image.revision label).
    #[arg(long, env = "GIT_SHA", default_value = "unknown")]
    pub git_sha: String,
    /// The version recorded in the history instead of the one the binary (or the image's
    /// org.opencontainers.image.version label) reports.
    #[arg(long)]
    pub label: Option<String>,
    /// Each role runs under `ghostworks supervise`, which gives up after this many failures in
    /// a row, each within 30 s of its start (its --max-failures).
    #[arg(long, default_value_t = supervise::DEFAULT_MAX_FAILURES, value_parser = clap::value_parser!(u32).range(1..))]
    pub supervise_max_failures: u32,
}

#[derive(Subcommand)]
pub enum DeployCommand {
    /// Every deploy and rollback, oldest first.
    History,
    /// The live colour and release, and per role whether it runs, its pid and how often its
    /// supervisor restarted it.
    Status,
}

fn runtime(
    admin: Option<&str>,
    args: &ReleaseArgs,
    earlier: Option<deploy::Release>,
) -> anyhow::Result<Box<dyn deploy::Runtime>> {
    let label = earlier
        .as_ref()
        .map(|r| r.version.clone())
        .or_else(|| args.label.clone());
    if args.runtime == RuntimeKind::Compose {
        let mut rt = ComposeRuntime::new(
            args.docker.clone(),
            args.compose_files.clone(),
            args.state_dir.clone(),
            args.upstream_dir.clone(),
        );
        rt.project = args.compose_project.clone();
        rt.env_file = args.compose_env_file.clone();
        rt.nginx_service = args.nginx_service.clone();
        rt.label = label;
        return Ok(Box::new(rt));
    }
    let admin = admin.ok_or_else(|| {
        anyhow::anyhow!(
            "DATABASE_ADMIN_URL (or DATABASE_ADMIN_URL_FILE) is not set: the process runtime \
             migrates as the schema owner"
        )
    })?;
    let mut rt = ProcessRuntime::new(admin.to_string(), args.base_port, args.state_dir.clone());
    for spec in &args.env_files {
        let (role, file) = spec.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("--env-file: {spec:?} is not ROLE=FILE (e.g. api=api.env)")
        })?;
        if !deploy::ROLES.iter().any(|r| r.name == role) {
            anyhow::bail!(
                "--env-file: unknown role {role:?}; the roles are {}",
                deploy::ROLES
                    .iter()
                    .map(|r| r.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        rt.env.insert(
            role.to_string(),
            ghostworks_config::read_env_file(std::path::Path::new(file))?,
        );
    }
    rt.upstream_dir = args.upstream_dir.clone();
    rt.nginx_pid_file = args.nginx_pid_file.clone();
    rt.label = label;
    rt.git_sha = earlier.map_or_else(|| args.git_sha.clone(), |r| r.git_sha);
    rt.supervisor = std::env::current_exe().context("cannot tell this binary's path")?;
    rt.max_failures = args.supervise_max_failures;
    Ok(Box::new(rt))
}

/// Who deploys: the login behind sudo, else the user (from the environment, else the uid's
/// name, as under cron or in a container, where USER is often unset).
fn who() -> String {
    ghostworks_config::invoking_user()
        .or_else(|| {
            let out = std::process::Command::new("id").arg("-un").output().ok()?;
            let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
            (out.status.success() && !name.is_empty()).then_some(name)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Deploys `artifact`; a rollback passes the `earlier` release from the history, whose version
/// and commit it keeps.
pub async fn deploy(
    admin: Option<&str>,
    s3: &S3Settings,
    artifact: String,
    earlier: Option<deploy::Release>,
    args: &ReleaseArgs,
) -> anyhow::Result<()> {
    let state = deploy::State::open(&args.state_dir)?;
    let mut rt = runtime(admin, args, earlier)?;
    let plan = deploy::Plan {
        artifact,
        admin_url: admin,
        backup_to: if args.skip_backup {
            None
        } else {
            Some(Destination::parse(&args.backup_dir, s3).context("--backup-dir (BACKUP_DIR)")?)
        },
        gates: deploy::Gates {
            ready_timeout: Duration::from_secs(args.ready_timeout_secs),
            bake: Duration::from_secs(args.bake_secs),
            max_error_ratio: args.max_error_ratio,
            max_p95: Duration::from_millis(args.max_p95_ms),
            min_requests: args.min_requests,
            drain: Duration::from_secs(args.drain_secs),
            rollback_window: Duration::from_secs(args.rollback_window_hours * 3600),
        },
        by: who(),
    };
    let e = deploy::deploy(rt.as_mut(), &state, &plan).await?;
    println!(
        "deployed {} ({}) as {} in {:.1} s (switch-over {} ms), schema version {}",
        e.release.version,
        e.release.artifact,
        e.colour.as_str(),
        e.duration_ms as f64 / 1000.0,
        e.switch_ms.unwrap_or(0),
        e.schema_version
    );
    Ok(())
}

pub fn history(args: &ReleaseArgs) -> anyhow::Result<()> {
    let state = deploy::State::open(&args.state_dir)?;
    println!(
        "{:<20}  {:<12}  {:<6}  {:<12}  {:>6}  {:>7}  {:>9}  {:>11}  {:<8}  {:<12}  {:<19}  reason",
        "time",
        "version",
        "colour",
        "result",
        "schema",
        "took_s",
        "switch_ms",
        "rollback_ms",
        "by",
        "git",
        "digest"
    );
    let ms = |v: Option<u64>| v.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
    for e in state.history()? {
        println!(
            "{:<20}  {:<12}  {:<6}  {:<12}  {:>6}  {:>7.1}  {:>9}  {:>11}  {:<8}  {:<12}  {:<19}  {}",
            e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.release.version,
            e.colour.as_str(),
            e.result,
            e.schema_version,
            e.duration_ms as f64 / 1000.0,
            ms(e.switch_ms),
            ms(e.rollback_ms),
            e.by,
            e.release.git_sha.chars().take(12).collect::<String>(),
            e.release.digest.chars().take(19).collect::<String>(),
            match (&e.failed_step, &e.reason) {
                (Some(s), Some(r)) => format!("{s}: {r}"),
                _ => String::new(),
            }
        );
    }
    Ok(())
}

pub fn status(args: &ReleaseArgs) -> anyhow::Result<()> {
    let state = deploy::State::open(&args.state_dir)?;
    let Some(active) = state.active()? else {
        println!("nothing deployed yet");
        return Ok(());
    };
    println!(
        "live: {} ({}) on {}",
        active.release.version,
        active.release.artifact,
        active.colour.as_str()
    );
    println!(
        "{:<8}  {:<8}  {:>10}  {:>8}  {:>8}  {:<20}  last_exit",
        "role", "state", "supervisor", "pid", "restarts", "since"
    );
    for r in process::status(&args.state_dir, active.colour)? {
        let s = r.supervised.as_ref();
        println!(
            "{:<8}  {:<8}  {:>10}  {:>8}  {:>8}  {:<20}  {}",
            r.role,
            if r.running { "running" } else { "down" },
            r.supervisor,
            s.map(|s| s.pid.to_string()).unwrap_or_else(|| "-".into()),
            s.map(|s| s.restarts.to_string())
                .unwrap_or_else(|| "-".into()),
            s.map(|s| s
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| "-".into()),
            s.and_then(|s| s.last_exit.clone())
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct SuperviseArgs {
    /// Give up (exit 1) after this many failures in a row, each within --stable-secs of its
    /// start.
    #[arg(long, default_value_t = supervise::DEFAULT_MAX_FAILURES, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_failures: u32,
    /// A run that stays up this long ends a streak of failures; the backoff starts over.
    #[arg(long, default_value_t = supervise::DEFAULT_STABLE_SECS)]
    pub stable_secs: u64,
    /// Keep the command's pid, restart count and last exit here (JSON, rewritten at every
    /// start; `deploy status` shows it).
    #[arg(long)]
    pub status_file: Option<PathBuf>,
    /// The command, after `--`, e.g. `-- /opt/ghostworks/releases/1.4.0/ghostworks serve`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

pub async fn supervise(args: SuperviseArgs) -> anyhow::Result<()> {
    let policy = supervise::Policy {
        max_failures: args.max_failures,
        stable: Duration::from_secs(args.stable_secs),
    };
    supervise::run(&args.command, &policy, args.status_file.as_deref()).await
}

pub async fn rollback(
    admin: Option<&str>,
    s3: &S3Settings,
    to: Option<String>,
    force_past_contract: bool,
    args: &ReleaseArgs,
) -> anyhow::Result<()> {
    let state = deploy::State::open(&args.state_dir)?;
    let target = deploy::rollback_target(&state, to.as_deref())?;
    if !force_past_contract {
        // The live release knows every migration applied (the database's record, and whether
        // each one it embeds is a contract step).
        let live = state
            .active()?
            .context("nothing is deployed, so there is nothing to roll back")?;
        let status = runtime(admin, args, None)?.migration_status(&live.release)?;
        deploy::rollback_allowed(&target, &deploy::Migration::parse(&status))?;
    }
    deploy(
        admin,
        s3,
        target.release.artifact.clone(),
        Some(target.release),
        args,
    )
    .await
}
