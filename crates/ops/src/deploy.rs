//! Blue/green deploys behind nginx, gated step by step, with automatic rollback and a release
//! history.
//!
//! Steps: check the release and its configuration, back up, migrate, start the new colour,
//! wait for every new instance's readiness, switch nginx's upstream and reload it, bake while
//! watching the new colour's golden signals, then drain and stop the old colour. A failure
//! before the switch stops the new colour; a failure during the bake switches traffic back
//! first. Either way the deploy exits non-zero naming the step, and the history records why.
//!
//! The history is a JSON-lines file in the state directory, not a table: it must be readable
//! and writable when the database is what failed (a migration, a restore), and it describes
//! releases of the binaries, which outlive any one database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use ghostworks_telemetry::signals::Signals;
use serde::{Deserialize, Serialize};

pub mod compose;
pub mod nginx;
pub mod process;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Blue,
    Green,
}

impl Colour {
    pub fn other(self) -> Self {
        match self {
            Colour::Blue => Colour::Green,
            Colour::Green => Colour::Blue,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Colour::Blue => "blue",
            Colour::Green => "green",
        }
    }

    fn index(self) -> u16 {
        match self {
            Colour::Blue => 0,
            Colour::Green => 1,
        }
    }
}

/// A role the deploy runs per colour. A new role is one more entry in [`ROLES`].
#[derive(Debug, Clone, Copy)]
pub struct Role {
    pub name: &'static str,
    /// The `ghostworks` subcommand that runs it.
    pub command: &'static str,
    /// The environment variable that takes its listen address.
    pub bind_var: &'static str,
    /// Added to the colour's base port.
    pub port_offset: u16,
    /// 200 once the instance can take work.
    pub ready_path: &'static str,
    /// The `ghostworks` arguments that check its configuration without starting it.
    pub check_args: &'static [&'static str],
    /// The nginx upstream that routes traffic to it (`upstream-NAME.conf`); its golden signals
    /// gate the bake. `None`: no traffic comes through nginx.
    pub upstream: Option<&'static str>,
    /// Environment variables set to the base URL of another role of the same colour: a
    /// colour talks only to itself, so a release never calls an older or newer API.
    pub links: &'static [(&'static str, &'static str)],
}

pub const ROLES: &[Role] = &[
    Role {
        name: "api",
        command: "serve",
        bind_var: "GHOSTWORKS_BIND",
        port_offset: 0,
        ready_path: "/health/ready",
        check_args: &["config", "check"],
        upstream: Some("api"),
        links: &[],
    },
    Role {
        name: "worker",
        command: "worker",
        bind_var: "WORKER_BIND",
        port_offset: 10,
        ready_path: "/health",
        check_args: &["config", "check", "--worker"],
        upstream: None,
        links: &[],
    },
    Role {
        name: "web",
        command: "web",
        bind_var: "WEB_BIND",
        port_offset: 20,
        // Ready once it reaches its colour's API.
        ready_path: "/health/ready",
        check_args: &["config", "check", "--web"],
        upstream: Some("web"),
        links: &[("API_URL", "api")],
    },
];

/// The role named `name`.
pub fn role(name: &str) -> &'static Role {
    ROLES
        .iter()
        .find(|r| r.name == name)
        .expect("a role of ROLES")
}

/// The upstreams nginx routes to, and the roles behind each.
pub fn upstreams() -> impl Iterator<Item = (&'static str, &'static Role)> {
    ROLES.iter().filter_map(|r| Some((r.upstream?, r)))
}

/// The port of `role` in `colour` (blue on the base port, green one above).
pub fn port(base: u16, colour: Colour, role: &Role) -> u16 {
    base + role.port_offset + colour.index()
}

/// What is deployed: a binary (process runtime) or an image tag (compose runtime).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub artifact: String,
    pub version: String,
    pub git_sha: String,
    /// sha256 of the binary, or the image reference's digest as the runtime reports it.
    pub digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub time: DateTime<Utc>,
    pub release: Release,
    pub colour: Colour,
    pub schema_version: i64,
    /// `succeeded`, `failed` (before the switch) or `rolled_back` (during the bake).
    pub result: String,
    pub failed_step: Option<String>,
    pub reason: Option<String>,
    pub by: String,
    pub duration_ms: u64,
    /// From writing the upstream to nginx serving the new colour.
    pub switch_ms: Option<u64>,
    /// From the failure to traffic on the old colour again and the new colour stopped.
    pub rollback_ms: Option<u64>,
}

/// The colour serving traffic and its release.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Active {
    pub colour: Colour,
    pub release: Release,
}

/// The state directory: history and the active colour.
pub struct State {
    dir: PathBuf,
}

impl State {
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--state-dir: cannot create {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn active(&self) -> Result<Option<Active>> {
        let p = self.dir.join("active.json");
        if !p.exists() {
            return Ok(None);
        }
        Ok(Some(serde_json::from_slice(&std::fs::read(&p)?)?))
    }

    fn set_active(&self, a: &Active) -> Result<()> {
        let tmp = self.dir.join("active.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(a)?)?;
        std::fs::rename(tmp, self.dir.join("active.json"))?;
        Ok(())
    }

    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        let p = self.dir.join("history.jsonl");
        if !p.exists() {
            return Ok(Vec::new());
        }
        std::fs::read_to_string(&p)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("history.jsonl: a damaged line"))
            .collect()
    }

    fn record(&self, e: &HistoryEntry) -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("history.jsonl"))?;
        writeln!(f, "{}", serde_json::to_string(e)?)?;
        f.sync_all()?;
        Ok(())
    }
}

/// Where a colour's instances answer.
#[derive(Debug, Clone)]
pub struct Instance {
    pub role: Role,
    pub base_url: String,
}

/// How releases are run: supervised processes on this host, or Docker Compose.
pub trait Runtime {
    /// Checks the release artifact and its configuration; returns the release's description.
    fn check(&mut self, artifact: &str) -> Result<Release>;
    /// What `ghostworks migrate --status` of the release prints (see [`Migration::parse`]).
    fn migration_status(&mut self, release: &Release) -> Result<String>;
    /// Applies the release's migrations.
    fn migrate(&mut self, release: &Release) -> Result<()>;
    /// Starts every role of `colour` from `release`.
    fn start(&mut self, colour: Colour, release: &Release) -> Result<Vec<Instance>>;
    /// Points nginx at `colour` and reloads it gracefully.
    fn switch(&mut self, colour: Colour) -> Result<()>;
    /// Stops `colour` gracefully (in-flight requests and jobs finish first).
    fn stop(&mut self, colour: Colour) -> Result<()>;
}

/// Thresholds and timings of a deploy.
#[derive(Debug, Clone)]
pub struct Gates {
    pub ready_timeout: Duration,
    pub bake: Duration,
    pub max_error_ratio: f64,
    pub max_p95: Duration,
    /// Requests the bake must see before judging the error ratio and latency.
    pub min_requests: u64,
    /// Time for nginx's old workers to finish their requests before the old colour stops.
    pub drain: Duration,
    /// How long a replaced release stays a rollback target that may need the old shape.
    pub rollback_window: Duration,
}

/// What the deploy needs besides the runtime.
pub struct Plan<'a> {
    pub artifact: String,
    /// The schema owner's URL, reachable from this host; only the backup needs it.
    pub admin_url: Option<&'a str>,
    pub backup_to: Option<crate::storage::Destination>,
    pub gates: Gates,
    pub by: String,
}

struct StepError {
    step: &'static str,
    error: anyhow::Error,
}

fn step<T>(name: &'static str, r: Result<T>) -> std::result::Result<T, StepError> {
    r.map_err(|error| StepError { step: name, error })
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

async fn wait_ready(instances: &[Instance], timeout: Duration) -> Result<()> {
    let http = client();
    let deadline = Instant::now() + timeout;
    for i in instances {
        let url = format!("{}{}", i.base_url, i.role.ready_path);
        loop {
            let status = http.get(&url).send().await.map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} at {url} not ready within {timeout:?} (last answer: {})",
                    i.role.name,
                    match status {
                        Ok(s) => format!("HTTP {s}"),
                        Err(e) => e.to_string(),
                    }
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Watches the traffic-serving instances' /metrics for the bake window.
async fn bake(instances: &[Instance], gates: &Gates) -> Result<()> {
    let http = client();
    let urls: Vec<String> = instances
        .iter()
        .filter(|i| i.role.upstream.is_some())
        .map(|i| format!("{}/metrics", i.base_url))
        .collect();
    let scrape = || async {
        let mut total = Signals::default();
        for u in &urls {
            let text = http.get(u).send().await?.error_for_status()?.text().await?;
            total.add(&Signals::parse(&text));
        }
        anyhow::Ok(total)
    };
    let start = scrape().await?;
    let deadline = Instant::now() + gates.bake;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let window = scrape().await?.since(&start);
        if window.requests >= gates.min_requests as f64 {
            let ratio = window.error_ratio();
            if ratio > gates.max_error_ratio {
                bail!(
                    "error ratio {:.1}% over {} requests exceeds --max-error-ratio {:.1}%",
                    ratio * 100.0,
                    window.requests,
                    gates.max_error_ratio * 100.0
                );
            }
            if let Some(p95) = window.quantile(0.95) {
                if p95 > gates.max_p95 {
                    bail!(
                        "p95 latency {:?} over {} requests exceeds --max-p95-ms {}",
                        p95,
                        window.requests,
                        gates.max_p95.as_millis()
                    );
                }
            }
        }
        if Instant::now() >= deadline {
            return Ok(());
        }
    }
}

/// One line of `ghostworks migrate --status`: `   7  applied  description (contract)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub applied: bool,
    /// Whether it is a contract step; `None` for an applied migration the release does not
    /// embed (a newer release applied it), which it cannot tell.
    pub contract: Option<bool>,
    pub description: String,
}

/// How `migrate --status` marks the two kinds of migration it cannot treat as expand steps.
pub const CONTRACT_MARK: &str = "(contract)";
pub const NOT_EMBEDDED_MARK: &str = "(not in this release)";

impl std::fmt::Display for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>4}  {:<8} {}{}",
            self.version,
            if self.applied { "applied" } else { "pending" },
            self.description,
            match self.contract {
                Some(true) => format!(" {CONTRACT_MARK}"),
                Some(false) => String::new(),
                None => format!(" {NOT_EMBEDDED_MARK}"),
            }
        )
    }
}

impl Migration {
    /// The lines of `ghostworks migrate --status` (as [`Display`](std::fmt::Display) writes
    /// them); other output, such as log lines, is skipped.
    pub fn parse(status: &str) -> Vec<Migration> {
        status
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                let (version, rest) = l.split_once(char::is_whitespace)?;
                let version = version.parse().ok()?;
                let (state, rest) = rest.trim_start().split_once(char::is_whitespace)?;
                let applied = match state {
                    "applied" => true,
                    "pending" => false,
                    _ => return None,
                };
                let rest = rest.trim();
                let (description, contract) = if let Some(d) = rest.strip_suffix(CONTRACT_MARK) {
                    (d, Some(true))
                } else if let Some(d) = rest.strip_suffix(NOT_EMBEDDED_MARK) {
                    (d, None)
                } else {
                    (rest, Some(false))
                };
                Some(Migration {
                    version,
                    applied,
                    contract,
                    description: description.trim().to_string(),
                })
            })
            .collect()
    }
}

/// The newest applied migration as the release sees it (0 when that cannot be read: the
/// history must be written even when the database is what failed).
fn schema_version(runtime: &mut dyn Runtime, release: &Release) -> i64 {
    runtime
        .migration_status(release)
        .map(|s| {
            Migration::parse(&s)
                .iter()
                .filter(|m| m.applied)
                .map(|m| m.version)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Runs one gated deploy of `plan.artifact`; records it in the history either way.
pub async fn deploy(
    runtime: &mut dyn Runtime,
    state: &State,
    plan: &Plan<'_>,
) -> Result<HistoryEntry> {
    let started = Instant::now();
    let active = state.active()?;
    let colour = active
        .as_ref()
        .map(|a| a.colour.other())
        .unwrap_or(Colour::Blue);
    let mut release = Release {
        artifact: plan.artifact.clone(),
        version: String::new(),
        git_sha: String::new(),
        digest: String::new(),
    };
    let mut switch_ms = None;
    let mut switched = false;
    let outcome: std::result::Result<(), StepError> = async {
        release = step("check", runtime.check(&plan.artifact))?;
        if let Some(dest) = &plan.backup_to {
            let url = step(
                "backup",
                plan.admin_url.context(
                    "DATABASE_ADMIN_URL is not set: the pre-deploy backup connects from this host \
                     as the schema owner; set it, or pass --skip-backup after backing up another way",
                ),
            )?;
            step("backup", crate::backup::create(url, dest).await)?;
        }
        let status = step("migrate", runtime.migration_status(&release))?;
        let contracts: Vec<i64> = Migration::parse(&status)
            .iter()
            .filter(|m| m.contract == Some(true) && !m.applied)
            .map(|m| m.version)
            .collect();
        if !contracts.is_empty() {
            step(
                "migrate",
                contract_allowed(
                    &contracts,
                    active.as_ref(),
                    &state.history().unwrap_or_default(),
                    Utc::now(),
                    plan.gates.rollback_window,
                ),
            )?;
        }
        step("migrate", runtime.migrate(&release))?;
        let instances = step("start", runtime.start(colour, &release))?;
        step(
            "ready",
            wait_ready(&instances, plan.gates.ready_timeout).await,
        )?;
        let t = Instant::now();
        step("switch", runtime.switch(colour))?;
        switched = true;
        switch_ms = Some(t.elapsed().as_millis() as u64);
        step("bake", bake(&instances, &plan.gates).await)?;
        Ok(())
    }
    .await;

    let mut entry = HistoryEntry {
        time: Utc::now(),
        release: release.clone(),
        colour,
        schema_version: schema_version(runtime, &release),
        result: "succeeded".into(),
        failed_step: None,
        reason: None,
        by: plan.by.clone(),
        duration_ms: 0,
        switch_ms,
        rollback_ms: None,
    };
    match outcome {
        Ok(()) => {
            state.set_active(&Active {
                colour,
                release: release.clone(),
            })?;
            if let Some(old) = &active {
                tokio::time::sleep(plan.gates.drain).await;
                runtime
                    .stop(old.colour)
                    .context("the new colour is live, but stopping the old one failed")?;
            }
            entry.duration_ms = started.elapsed().as_millis() as u64;
            state.record(&entry)?;
            Ok(entry)
        }
        Err(StepError { step, error }) => {
            let t = Instant::now();
            let mut cleanup = Vec::new();
            if switched {
                match &active {
                    Some(old) => {
                        if let Err(e) = runtime.switch(old.colour) {
                            cleanup.push(format!(
                                "switching back to {} failed: {e:#}",
                                old.colour.as_str()
                            ));
                        }
                        tokio::time::sleep(plan.gates.drain).await;
                    }
                    None => cleanup.push("no earlier colour to switch back to".into()),
                }
            }
            if let Err(e) = runtime.stop(colour) {
                cleanup.push(format!("stopping {} failed: {e:#}", colour.as_str()));
            }
            entry.result = if switched { "rolled_back" } else { "failed" }.into();
            entry.failed_step = Some(step.into());
            entry.reason = Some(format!("{error:#}"));
            entry.rollback_ms = Some(t.elapsed().as_millis() as u64);
            entry.duration_ms = started.elapsed().as_millis() as u64;
            state.record(&entry)?;
            let mut msg = format!(
                "deploy of {} failed at step `{step}`: {error:#}; {}",
                release.artifact,
                if switched {
                    "traffic was switched back and the new colour stopped"
                } else {
                    "the new colour was stopped; traffic never left the old one"
                }
            );
            for c in cleanup {
                msg.push_str(&format!("\n  {c}"));
            }
            bail!(msg)
        }
    }
}

/// Whether contract steps may run now. Expand/contract ships a contract step in the release
/// after the one that stopped using the old shape: the live release does not need it, but any
/// release it replaced might, for as long as a rollback may return to it. So contract steps
/// wait until the live release has been live for the whole rollback window.
pub fn contract_allowed(
    contracts: &[i64],
    active: Option<&Active>,
    history: &[HistoryEntry],
    now: DateTime<Utc>,
    window: Duration,
) -> Result<()> {
    let Some(active) = active else {
        return Ok(());
    };
    let live_since = history
        .iter()
        .rev()
        .find(|e| e.result == "succeeded" && e.release == active.release)
        .map(|e| e.time);
    let replaced_before = history
        .iter()
        .any(|e| e.result == "succeeded" && e.release != active.release);
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    match live_since {
        Some(since) if replaced_before && now - since < window => bail!(
            "contract step(s) {contracts:?} pending, but the release the live one ({}) replaced \
             may still be rolled back to, and may need the old shape, until {}; deploy again \
             after that, or pass --rollback-window-hours 0 once no such rollback is wanted",
            active.release.version,
            (since + window).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        _ => Ok(()),
    }
}

/// The release to roll back to, as its newest succeeded deploy: `to` (a version or artifact) or
/// the newest succeeded release other than the active one.
pub fn rollback_target(state: &State, to: Option<&str>) -> Result<HistoryEntry> {
    let active = state.active()?.map(|a| a.release);
    let history = state.history()?;
    let mut candidates = history.iter().rev().filter(|e| e.result == "succeeded");
    let found = match to {
        Some(v) => candidates.find(|e| e.release.version == v || e.release.artifact == v),
        None => candidates.find(|e| Some(&e.release) != active.as_ref()),
    };
    match (found, to) {
        (Some(e), _) => Ok(e.clone()),
        (None, Some(v)) => bail!(
            "--to: no succeeded release {v:?} in the history; see `ghostworks deploy history`"
        ),
        (None, None) => bail!("no earlier succeeded release in the history to roll back to"),
    }
}

/// Whether a rollback may return to `target`, given the live release's migration status. A
/// contract step applied after the schema the target last ran on may have removed a column or
/// table it uses, so such a step refuses the rollback; so does an applied migration the live
/// release does not embed, which may be one.
pub fn rollback_allowed(target: &HistoryEntry, migrations: &[Migration]) -> Result<()> {
    let newer = |contract: Option<bool>| {
        migrations
            .iter()
            .filter(|m| m.applied && m.version > target.schema_version && m.contract == contract)
            .map(|m| format!("{:04} ({})", m.version, m.description))
            .collect::<Vec<_>>()
    };
    let contracts = newer(Some(true));
    let unknown = newer(None);
    let reason = if !contracts.is_empty() {
        format!(
            "the contract migration(s) {} applied since may have removed what it uses",
            contracts.join(", ")
        )
    } else if !unknown.is_empty() {
        format!(
            "the migration(s) {} applied since are unknown to the live release, so it cannot \
             tell whether they are contract steps",
            unknown.join(", ")
        )
    } else {
        return Ok(());
    };
    bail!(
        "refusing to roll back to {version}: it last ran on schema version {}, and {reason}. \
         Roll forward instead, or pass --force-past-contract if you know {version} does not use \
         what they removed",
        target.schema_version,
        version = target.release.version,
    )
}

/// Runs `c`; its stdout, or an error naming `what` with everything it printed.
pub(crate) fn run_ok(mut c: std::process::Command, what: &str) -> Result<String> {
    let out = c.output().with_context(|| format!("{what}: cannot run"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(version: &str, result: &str) -> HistoryEntry {
        HistoryEntry {
            time: Utc::now(),
            release: Release {
                artifact: format!("/opt/ghostworks/{version}/ghostworks"),
                version: version.into(),
                git_sha: "abc".into(),
                digest: "sha256:0".into(),
            },
            colour: Colour::Blue,
            schema_version: 2,
            result: result.into(),
            failed_step: None,
            reason: None,
            by: "ops".into(),
            duration_ms: 1,
            switch_ms: None,
            rollback_ms: None,
        }
    }

    #[test]
    fn rollback_targets_an_earlier_succeeded_release() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        assert!(rollback_target(&state, None).is_err());
        for (v, r) in [
            ("1.0", "succeeded"),
            ("1.1", "succeeded"),
            ("1.2", "rolled_back"),
            ("1.3", "succeeded"),
        ] {
            state.record(&entry(v, r)).unwrap();
        }
        state
            .set_active(&Active {
                colour: Colour::Green,
                release: entry("1.3", "succeeded").release,
            })
            .unwrap();
        assert_eq!(state.history().unwrap().len(), 4);
        assert_eq!(
            rollback_target(&state, None).unwrap().release.version,
            "1.1"
        );
        assert_eq!(
            rollback_target(&state, Some("1.0"))
                .unwrap()
                .release
                .version,
            "1.0"
        );
        let refused = rollback_target(&state, Some("1.2"))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("--to") && refused.contains("1.2"),
            "{refused}"
        );
    }

    #[test]
    fn contract_steps_wait_for_the_rollback_window() {
        let day = Duration::from_secs(86_400);
        let old = entry("1.0", "succeeded");
        let mut live = entry("1.1", "succeeded");
        let active = Active {
            colour: Colour::Green,
            release: live.release.clone(),
        };
        let now = live.time;
        let history = vec![old.clone(), live.clone()];
        let refused = contract_allowed(&[7], Some(&active), &history, now, day)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("[7]") && refused.contains("1.1"),
            "{refused}"
        );
        assert!(contract_allowed(&[7], Some(&active), &history, now, Duration::ZERO).is_ok());
        live.time = now - chrono::Duration::hours(25);
        assert!(contract_allowed(&[7], Some(&active), &[old, live.clone()], now, day).is_ok());
        // A first release, or one that replaced nothing, has nothing to roll back to.
        assert!(contract_allowed(&[7], None, &[], now, day).is_ok());
        assert!(contract_allowed(&[7], Some(&active), &[live], now, day).is_ok());
    }

    #[test]
    fn migration_status_lines_are_parsed_and_other_output_ignored() {
        let status = "{\"level\":\"INFO\",\"message\":\"connected\"}\n   \
                         8  applied  drop tenantless search indexes\n   \
                         9  pending  job trace parent\n  \
                        10  pending  drop old column (contract)\n  \
                        11  applied  from a newer release (not in this release)\n";
        let m: Vec<_> = Migration::parse(status)
            .into_iter()
            .map(|m| (m.version, m.applied, m.contract, m.description))
            .collect();
        assert_eq!(
            m,
            vec![
                (
                    8,
                    true,
                    Some(false),
                    "drop tenantless search indexes".into()
                ),
                (9, false, Some(false), "job trace parent".into()),
                (10, false, Some(true), "drop old column".into()),
                (11, true, None, "from a newer release".into()),
            ]
        );
    }

    #[test]
    fn rollbacks_past_an_applied_contract_step_are_refused() {
        let applied = |version, contract| Migration {
            version,
            applied: true,
            contract,
            description: format!("step {version}"),
        };
        let mut target = entry("1.0", "succeeded");
        target.schema_version = 7;
        // Expand steps after the target, contract steps it already ran on, and pending
        // contract steps are fine.
        let mut history = vec![
            applied(6, Some(true)),
            applied(7, Some(false)),
            applied(8, Some(false)),
        ];
        history.push(Migration {
            applied: false,
            ..applied(9, Some(true))
        });
        assert!(rollback_allowed(&target, &history).is_ok());

        let contracted = [
            applied(7, Some(false)),
            applied(8, Some(true)),
            applied(9, Some(true)),
        ];
        let refused = rollback_allowed(&target, &contracted)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("roll back to 1.0")
                && refused.contains("schema version 7")
                && refused.contains("0008 (step 8), 0009 (step 9)")
                && refused.contains("--force-past-contract"),
            "{refused}"
        );

        let unknown = [applied(8, Some(false)), applied(10, None)];
        let refused = rollback_allowed(&target, &unknown).unwrap_err().to_string();
        assert!(
            refused.contains("0010 (step 10)") && refused.contains("unknown to the live release"),
            "{refused}"
        );
    }

    #[test]
    fn colours_alternate_and_ports_do_not_collide() {
        assert_eq!(Colour::Blue.other(), Colour::Green);
        let ports: std::collections::BTreeSet<u16> = [Colour::Blue, Colour::Green]
            .iter()
            .flat_map(|c| ROLES.iter().map(move |r| port(8100, *c, r)))
            .collect();
        assert_eq!(ports.len(), 2 * ROLES.len());
    }
}
