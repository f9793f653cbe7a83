//! `deploy` (and `deploy history`, `deploy status`) and `rollback`: their options and reports.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ghostworks_config::{OpsConfig, S3Settings};

use crate::deploy::analysis::Rules;
use crate::deploy::runtime::swarm::SwarmRuntime;
use crate::deploy::runtime::{process, Common, RuntimeKind};
use crate::deploy::{
    self, policy, Canary, Gates, Inconclusive, Plan, Release, RuntimeArgs, State, Strategy,
};
use crate::storage::Destination;

#[derive(Args)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub command: Option<DeployCommand>,
    /// The release: the path of its ghostworks binary (process runtime), its image tag
    /// (compose runtime), or its image in a registry (swarm runtime).
    #[arg(long)]
    pub release: Option<String>,
    #[command(flatten)]
    pub options: ReleaseArgs,
}

#[derive(Subcommand)]
pub enum DeployCommand {
    /// Every deploy and rollback, oldest first.
    History {
        /// The entries as one JSON array (for CI: `.[-1].result`), canary steps included.
        #[arg(long)]
        json: bool,
    },
    /// The live colour and release, and per role whether it runs, its pid and how often its
    /// supervisor restarted it (with --runtime swarm: the stack's services, their tasks,
    /// image and last update).
    Status,
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The release's version (or binary path) from `deploy history`; default: the newest
    /// succeeded release other than the live one.
    #[arg(long)]
    pub to: Option<String>,
    /// Roll back even past applied contract migrations, when you know the release does not
    /// use what they removed.
    #[arg(long)]
    pub force_past_contract: bool,
    #[command(flatten)]
    pub options: ReleaseArgs,
}

/// The options of a deploy and a rollback.
#[derive(Args)]
pub struct ReleaseArgs {
    /// Where the history, the active colour, pid files and process logs are kept.
    #[arg(
        long,
        global = true,
        env = "GHOSTWORKS_DEPLOY_STATE",
        default_value = ".ghostworks/deploy"
    )]
    pub state_dir: PathBuf,
    /// Where nginx.conf includes `upstream-api.conf` and `upstream-web.conf` from; the deploy
    /// rewrites them (compose: the host directory mounted into the nginx service).
    #[arg(long, default_value = "deploy/nginx")]
    pub upstream_dir: PathBuf,
    /// Deploy without backing the database up first.
    #[arg(long)]
    pub skip_backup: bool,
    /// Where the pre-deploy backup goes: a directory or s3://BUCKET/PREFIX (as `backup --dir`).
    #[arg(long, env = "BACKUP_DIR", default_value = "backups")]
    pub backup_dir: String,
    /// The version recorded in the history instead of the one the binary (or the image's
    /// org.opencontainers.image.version label) reports.
    #[arg(long)]
    pub label: Option<String>,
    /// Who the history says ran the deploy; default: the login behind sudo, else the user.
    #[arg(long, env = "GHOSTWORKS_DEPLOY_ACTOR")]
    pub actor: Option<String>,
    // Last before the gates: each runtime's options come under their own heading, which clap
    // keeps for the options that follow.
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(flatten)]
    pub gates: GateArgs,
    #[command(flatten)]
    pub canary: CanaryArgs,
}

/// How traffic moves to the new colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StrategyKind {
    /// All at once, then the bake against fixed thresholds.
    BlueGreen,
    /// Weighted steps, each judged against the live colour (needs --proxy haproxy).
    Canary,
}

/// A canary's steps and analysis.
#[derive(Args)]
#[command(next_help_heading = "Canary (--strategy canary)")]
pub struct CanaryArgs {
    #[arg(long, value_enum, default_value = "blue-green")]
    pub strategy: StrategyKind,
    /// The canary's share of new sessions at each step, in percent, rising to 100.
    #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
    pub steps: Vec<u8>,
    /// How long each step lasts before its analysis.
    #[arg(long, default_value_t = 60)]
    pub step_secs: u64,
    /// Canary requests (and stable ones) a step needs before any verdict; p95 and p99 need
    /// 100 and 500 observations at least.
    #[arg(long, default_value_t = 200)]
    pub min_step_requests: u64,
    /// How far the canary's error ratio may exceed the stable colour's (absolute: 0.005 is
    /// half a point), beyond which an exact one-sided test at 1 % decides.
    #[arg(long, default_value_t = 0.005)]
    pub error_margin: f64,
    /// How much slower the canary's p95 and p99 may be than the stable colour's (1.0: twice
    /// as slow) ...
    #[arg(long, default_value_t = 1.0)]
    pub latency_margin: f64,
    /// ... and by how many milliseconds at least before that fails it.
    #[arg(long, default_value_t = 20)]
    pub latency_floor_ms: u64,
    /// How much more resident memory the canary's largest instance may hold than the stable
    /// colour's (0.5: half as much again) ...
    #[arg(long, default_value_t = 0.5)]
    pub memory_margin: f64,
    /// ... and by how many MiB at least before that fails it.
    #[arg(long, default_value_t = 64)]
    pub memory_floor_mib: u64,
    /// A step without enough traffic to judge: `wait` (up to --inconclusive-max-secs more,
    /// then fail) or `fail` at once. Never a pass.
    #[arg(long, value_enum, default_value = "wait")]
    pub inconclusive: Inconclusive,
    /// How much longer than --step-secs an inconclusive step may wait (--inconclusive wait).
    #[arg(long, default_value_t = 120)]
    pub inconclusive_max_secs: u64,
    /// Record each step's verdict in the history without acting on it.
    #[arg(long)]
    pub dry_run_analysis: bool,
}

impl CanaryArgs {
    fn strategy(&self) -> Result<Strategy> {
        if self.strategy == StrategyKind::BlueGreen {
            return Ok(Strategy::BlueGreen);
        }
        let s = &self.steps;
        if s.last() != Some(&100) || s.windows(2).any(|w| w[0] >= w[1]) || s.contains(&0) {
            anyhow::bail!("--steps: rising percentages ending at 100, e.g. 5,25,50,100");
        }
        if s.len() < 2 {
            anyhow::bail!(
                "--steps: at least one step below 100, where the stable colour still takes \
                 traffic to compare with"
            );
        }
        for (flag, margin) in [
            ("--error-margin", self.error_margin),
            ("--latency-margin", self.latency_margin),
            ("--memory-margin", self.memory_margin),
        ] {
            if !(margin.is_finite() && margin >= 0.0) {
                anyhow::bail!("{flag}: a margin of 0 or more, not {margin}");
            }
        }
        Ok(Strategy::Canary(Canary {
            steps: s.clone(),
            step: Duration::from_secs(self.step_secs),
            rules: Rules {
                min_requests: self.min_step_requests,
                error_margin: self.error_margin,
                latency_ratio: 1.0 + self.latency_margin,
                latency_floor: Duration::from_millis(self.latency_floor_ms),
                memory_ratio: 1.0 + self.memory_margin,
                memory_floor_bytes: self.memory_floor_mib as f64 * 1024.0 * 1024.0,
            },
            inconclusive: self.inconclusive,
            max_wait: Duration::from_secs(self.inconclusive_max_secs),
            dry_run: self.dry_run_analysis,
        }))
    }
}

/// The gates of a deploy.
#[derive(Args)]
#[command(next_help_heading = "Gates")]
pub struct GateArgs {
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
}

impl From<&GateArgs> for Gates {
    fn from(g: &GateArgs) -> Self {
        Gates {
            ready_timeout: Duration::from_secs(g.ready_timeout_secs),
            bake: Duration::from_secs(g.bake_secs),
            max_error_ratio: g.max_error_ratio,
            max_p95: Duration::from_millis(g.max_p95_ms),
            min_requests: g.min_requests,
            drain: Duration::from_secs(g.drain_secs),
            rollback_window: Duration::from_secs(g.rollback_window_hours * 3600),
        }
    }
}

impl ReleaseArgs {
    /// The runtime chosen; a rollback passes the `earlier` release, whose version and commit
    /// it keeps.
    fn runtime(
        &self,
        admin: Option<&str>,
        earlier: Option<&Release>,
    ) -> Result<Box<dyn deploy::Runtime>> {
        self.runtime.build(Common {
            state_dir: self.state_dir.clone(),
            upstream_dir: self.upstream_dir.clone(),
            label: earlier
                .map(|r| r.version.clone())
                .or_else(|| self.label.clone()),
            admin_url: admin,
            earlier,
        })
    }
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

/// `deploy`, `deploy history` or `deploy status`.
pub async fn deploy(settings: &OpsConfig, s3: &S3Settings, args: DeployArgs) -> Result<()> {
    match args.command {
        Some(DeployCommand::History { json }) => history(&args.options, json),
        Some(DeployCommand::Status) if args.options.runtime.0.kind == RuntimeKind::Swarm => {
            swarm_status(&args.options).await
        }
        Some(DeployCommand::Status) => status(&args.options),
        None => {
            let release = args.release.context(
                "--release: missing; pass the path of the binary (process runtime), the image \
                 tag (compose runtime) or the image in a registry (swarm runtime)",
            )?;
            // Flags first: a mistyped margin is reported before any setting is read.
            let strategy = args.options.canary.strategy()?;
            let admin = super::optional_admin_url(settings)?;
            let admin = admin.as_deref();
            let mut runtime = args.options.runtime(admin, None)?;
            release_with(
                runtime.as_mut(),
                admin,
                s3,
                release,
                strategy,
                &args.options,
            )
            .await
        }
    }
}

/// `rollback`: the guard and the check that the target is still the recorded release, then a
/// deploy of it.
pub async fn rollback(admin: Option<&str>, s3: &S3Settings, args: RollbackArgs) -> Result<()> {
    let strategy = args.options.canary.strategy()?;
    let state = State::open(&args.options.state_dir)?;
    let target = policy::rollback_target(&state, args.to.as_deref())?;
    let mut runtime = args.options.runtime(admin, Some(&target.release))?;
    policy::rollback_guard(&state, runtime.as_mut(), &target, args.force_past_contract).await?;
    policy::verify_recorded(runtime.as_mut(), &target.release).await?;
    release_with(
        runtime.as_mut(),
        admin,
        s3,
        target.release.artifact,
        strategy,
        &args.options,
    )
    .await
}

async fn release_with(
    runtime: &mut dyn deploy::Runtime,
    admin: Option<&str>,
    s3: &S3Settings,
    artifact: String,
    strategy: Strategy,
    args: &ReleaseArgs,
) -> Result<()> {
    let state = State::open(&args.state_dir)?;
    if matches!(strategy, Strategy::Canary(_)) && !args.runtime.splits_traffic() {
        anyhow::bail!(
            "--strategy canary needs weighted shares of the traffic: --proxy haproxy, with the \
             process or the compose runtime (nginx switches all of it at once)"
        );
    }
    let plan = Plan {
        artifact,
        admin_url: admin,
        backup_to: if args.skip_backup {
            None
        } else {
            Some(Destination::parse(&args.backup_dir, s3).context("--backup-dir (BACKUP_DIR)")?)
        },
        gates: Gates::from(&args.gates),
        strategy,
        by: args.actor.clone().unwrap_or_else(who),
    };
    let e = deploy::deploy(runtime, &state, &plan).await?;
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

fn history(args: &ReleaseArgs, json: bool) -> Result<()> {
    let state = State::open(&args.state_dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&state.history()?)?);
        return Ok(());
    }
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

/// `deploy status --runtime swarm`: the live release, and the stack's services as Swarm runs
/// them.
async fn swarm_status(args: &ReleaseArgs) -> Result<()> {
    let state = State::open(&args.state_dir)?;
    match state.active()? {
        Some(a) => println!("live: {} ({})", a.release.version, a.release.artifact),
        None => println!("nothing deployed by `ghostworks deploy` yet"),
    }
    let o = &args.runtime.0;
    let swarm = SwarmRuntime::new(
        &o.swarm,
        o.docker.clone(),
        Common {
            state_dir: args.state_dir.clone(),
            upstream_dir: args.upstream_dir.clone(),
            label: None,
            admin_url: None,
            earlier: None,
        },
    )?;
    println!(
        "{:<28}  {:>8}  {:<20}  image",
        "service", "tasks", "last update"
    );
    for s in swarm.status().await? {
        println!(
            "{:<28}  {:>8}  {:<20}  {}",
            s.name, s.replicas, s.update, s.image
        );
    }
    Ok(())
}

fn status(args: &ReleaseArgs) -> Result<()> {
    let state = State::open(&args.state_dir)?;
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
    let dash = || "-".to_string();
    for r in process::status(&args.state_dir, active.colour)? {
        let s = r.supervised.as_ref();
        println!(
            "{:<8}  {:<8}  {:>10}  {:>8}  {:>8}  {:<20}  {}",
            r.component,
            if r.running { "running" } else { "down" },
            r.supervisor,
            s.map_or_else(dash, |s| s.pid.to_string()),
            s.map_or_else(dash, |s| s.restarts.to_string()),
            s.map_or_else(dash, |s| s
                .started_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            s.and_then(|s| s.last_exit.clone()).unwrap_or_else(dash)
        );
    }
    Ok(())
}
