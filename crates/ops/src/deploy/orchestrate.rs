//! One gated deploy: check, back up, migrate, start the new colour, wait for readiness,
//! switch and bake (blue/green) or shift the traffic in weighted steps, each judged against the
//! stable colour (canary); then drain and stop the old colour, or undo and record why.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use ghostworks_telemetry::signals::Signals;

use super::analysis::{judge, Rules, StepReport, Verdict};
use super::policy::contract_allowed;
use super::runtime::{metrics_client, scrape};
use super::{
    Active, Colour, HistoryEntry, Instance, Outcome, Release, Rollout, Runtime, State, Step,
};
use crate::migrate::{pending_contracts, schema_version};

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

/// How traffic moves to the new colour.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// All at once, then a bake against fixed thresholds.
    BlueGreen,
    Canary(Canary),
}

/// What a step does when its analysis lacks traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Inconclusive {
    /// The deploy fails at the step.
    Fail,
    /// The step goes on until the analysis can tell, up to --inconclusive-max-secs more,
    /// then fails.
    Wait,
}

/// A canary: its steps (shares of the new sessions, ending at 100) and its analysis.
#[derive(Debug, Clone)]
pub struct Canary {
    pub steps: Vec<u8>,
    pub step: Duration,
    pub rules: Rules,
    pub inconclusive: Inconclusive,
    pub max_wait: Duration,
    /// Record the verdicts, never act on them.
    pub dry_run: bool,
}

/// What the deploy needs besides the runtime.
pub struct Plan<'a> {
    pub artifact: String,
    /// The schema owner's URL, reachable from this host; only the backup needs it.
    pub admin_url: Option<&'a str>,
    pub backup_to: Option<crate::storage::Destination>,
    pub gates: Gates,
    pub strategy: Strategy,
    pub by: String,
}

struct StepError {
    step: Step,
    error: anyhow::Error,
}

fn step<T>(step: Step, r: Result<T>) -> std::result::Result<T, StepError> {
    r.map_err(|error| StepError { step, error })
}

/// How far a deploy got.
struct Progress {
    release: Release,
    /// Set once traffic (or a canary's first share of it) is on the new colour.
    switch_ms: Option<u64>,
    schema_before: Option<i64>,
    steps: Vec<StepReport>,
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
    let mut progress = Progress {
        release: Release {
            artifact: plan.artifact.clone(),
            version: String::new(),
            git_sha: String::new(),
            digest: String::new(),
        },
        switch_ms: None,
        schema_before: None,
        steps: Vec::new(),
    };
    let outcome = steps(runtime, state, plan, active.as_ref(), colour, &mut progress).await;
    // The newest applied migration as the release sees it (0 when that cannot be read: the
    // history must be written even when the database is what failed).
    let schema = runtime
        .migration_status(&progress.release)
        .await
        .map_or(0, |s| schema_version(&s));
    let mut entry = HistoryEntry {
        time: Utc::now(),
        release: progress.release.clone(),
        colour,
        schema_version: schema,
        schema_before: progress.schema_before,
        config_hash: runtime.config_hash(),
        strategy: match &plan.strategy {
            Strategy::BlueGreen => None,
            Strategy::Canary(_) => Some("canary".into()),
        },
        steps: progress.steps,
        dry_run_analysis: matches!(&plan.strategy, Strategy::Canary(c) if c.dry_run),
        result: Outcome::Succeeded,
        failed_step: None,
        reason: None,
        by: plan.by.clone(),
        duration_ms: 0,
        switch_ms: progress.switch_ms,
        rollback_ms: None,
    };
    match outcome {
        Ok(()) => {
            finish(runtime, state, plan, active.as_ref(), &entry).await?;
            entry.duration_ms = started.elapsed().as_millis() as u64;
            state.record(&entry)?;
            Ok(entry)
        }
        Err(failure) => {
            let error = undo(runtime, plan, active.as_ref(), &mut entry, failure).await;
            entry.duration_ms = started.elapsed().as_millis() as u64;
            state.record(&entry)?;
            Err(error)
        }
    }
}

/// The gated steps, up to the end of the bake.
async fn steps(
    runtime: &mut dyn Runtime,
    state: &State,
    plan: &Plan<'_>,
    active: Option<&Active>,
    colour: Colour,
    progress: &mut Progress,
) -> std::result::Result<(), StepError> {
    progress.release = step(Step::Check, runtime.check(&plan.artifact).await)?;
    let release = &progress.release;
    if let Some(dest) = &plan.backup_to {
        let url = step(
            Step::Backup,
            plan.admin_url.context(
                "DATABASE_ADMIN_URL is not set: the pre-deploy backup connects from this host \
                 as the schema owner; set it, or pass --skip-backup after backing up another way",
            ),
        )?;
        step(Step::Backup, crate::backup::create(url, dest).await)?;
    }
    let status = step(Step::Migrate, runtime.migration_status(release).await)?;
    progress.schema_before = Some(schema_version(&status));
    let contracts = pending_contracts(&status);
    if !contracts.is_empty() {
        step(
            Step::Migrate,
            contract_allowed(
                &contracts,
                active,
                &state.history().unwrap_or_default(),
                Utc::now(),
                plan.gates.rollback_window,
            ),
        )?;
    }
    step(Step::Migrate, runtime.migrate(release).await)?;
    let t = Instant::now();
    let started = runtime.start(colour, release).await;
    if runtime.rolling() {
        // Traffic reached the new release's first task early in the rolling update, failed
        // or not: undoing it is a rollback.
        progress.switch_ms = Some(t.elapsed().as_millis() as u64);
    }
    let instances = step(Step::Start, started)?;
    step(
        Step::Ready,
        wait_ready(&instances, plan.gates.ready_timeout).await,
    )?;
    match &plan.strategy {
        Strategy::BlueGreen => {
            let t = Instant::now();
            step(Step::Switch, runtime.switch(colour).await)?;
            progress
                .switch_ms
                .get_or_insert(t.elapsed().as_millis() as u64);
            step(Step::Bake, bake(runtime, &instances, &plan.gates).await)
        }
        Strategy::Canary(canary) => {
            let stable = step(
                Step::Canary,
                active.map(|a| a.colour).context(
                    "--strategy canary compares the new release with the live one, and nothing \
                     is live yet: deploy the first release with --strategy blue-green",
                ),
            )?;
            let mut live = Rollout {
                time: Utc::now(),
                version: progress.release.version.clone(),
                stable,
                canary: colour,
                percent: 0,
                state: "running".into(),
                steps: Vec::new(),
            };
            let outcome = canary_steps(runtime, state, &mut live, canary, progress).await;
            live.state = if outcome.is_ok() {
                "succeeded"
            } else {
                "aborted"
            }
            .into();
            if outcome.is_err() {
                live.percent = 0;
            }
            show(state, &mut live);
            outcome
        }
    }
}

/// A canary's steps: each shifts the traffic, then judges the window; a failed (or, by
/// policy, inconclusive) step ends the deploy unless the analysis is a dry run.
async fn canary_steps(
    runtime: &mut dyn Runtime,
    state: &State,
    live: &mut Rollout,
    canary: &Canary,
    progress: &mut Progress,
) -> std::result::Result<(), StepError> {
    let (stable, colour) = (live.stable, live.canary);
    let urls = |c: Colour| -> Result<Vec<String>> {
        Ok(runtime
            .serving(c)?
            .iter()
            .map(|i| format!("{}/metrics", i.base_url))
            .collect())
    };
    let (new, old) = step(
        Step::Canary,
        urls(colour).and_then(|n| Ok((n, urls(stable)?))),
    )?;
    // The stable colour's last window with traffic: the baseline once it takes (almost) none.
    let mut baseline: Option<Signals> = None;
    for &percent in &canary.steps {
        let t = Instant::now();
        step(Step::Canary, runtime.shift(colour, percent).await)?;
        progress
            .switch_ms
            .get_or_insert(t.elapsed().as_millis() as u64);
        live.percent = percent;
        show(state, live);
        let report = step(
            Step::Canary,
            analyse(canary, percent, &new, &old, &mut baseline).await,
        )?;
        let verdict = report.verdict;
        let described = report.describe();
        eprintln!("{described}");
        live.steps.push(report.clone());
        show(state, live);
        progress.steps.push(report);
        if verdict != Verdict::Pass && !canary.dry_run {
            return Err(StepError {
                step: Step::Canary,
                error: anyhow::anyhow!(described),
            });
        }
    }
    Ok(())
}

/// Publishes the rollout for the operations page. Best effort: a page that cannot be
/// updated must not stop a deploy, so a failure is only reported.
fn show(state: &State, live: &mut Rollout) {
    live.time = Utc::now();
    if let Err(e) = state.set_rollout(live) {
        eprintln!("warning: cannot write the rollout for the operations page: {e:#}");
    }
}

/// One step's window: both colours scraped at its start and every half second from its end
/// until the verdict is conclusive or the policy stops waiting.
async fn analyse(
    canary: &Canary,
    percent: u8,
    new: &[String],
    old: &[String],
    baseline: &mut Option<Signals>,
) -> Result<StepReport> {
    let http = metrics_client();
    let (new_start, old_start) = (scrape(&http, new).await?, scrape(&http, old).await?);
    let started = Instant::now();
    tokio::time::sleep(canary.step).await;
    let give_up = canary.step
        + match canary.inconclusive {
            Inconclusive::Fail => Duration::ZERO,
            Inconclusive::Wait => canary.max_wait,
        };
    loop {
        let c = scrape(&http, new).await?.since(&new_start);
        let s = scrape(&http, old).await?.since(&old_start);
        let enough = s.requests >= canary.rules.min_requests as f64;
        let base = match (&*baseline, enough) {
            (Some(b), false) => b.clone(),
            _ => s.clone(),
        };
        let (verdict, checks) = judge(&c, &base, &canary.rules);
        if verdict != Verdict::Inconclusive || started.elapsed() >= give_up {
            if enough {
                *baseline = Some(s);
            }
            return Ok(StepReport {
                percent,
                secs: started.elapsed().as_secs_f64(),
                canary_requests: c.requests as u64,
                stable_requests: base.requests as u64,
                verdict,
                checks,
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// After a good bake: the new colour becomes the active one, and the old one drains and stops.
async fn finish(
    runtime: &mut dyn Runtime,
    state: &State,
    plan: &Plan<'_>,
    active: Option<&Active>,
    entry: &HistoryEntry,
) -> Result<()> {
    state.set_active(&Active {
        colour: entry.colour,
        release: entry.release.clone(),
    })?;
    if let Some(old) = active {
        tokio::time::sleep(plan.gates.drain).await;
        runtime
            .stop(old.colour)
            .await
            .context("the new colour is live, but stopping the old one failed")?;
    }
    Ok(())
}

/// After a failed step: traffic back on the old colour (when it had left), the new colour
/// stopped, and the entry says why; the error the deploy ends with.
async fn undo(
    runtime: &mut dyn Runtime,
    plan: &Plan<'_>,
    active: Option<&Active>,
    entry: &mut HistoryEntry,
    StepError { step, error }: StepError,
) -> anyhow::Error {
    let t = Instant::now();
    let switched = entry.switch_ms.is_some();
    let mut cleanup = Vec::new();
    if switched {
        match active {
            Some(old) => {
                if let Err(e) = runtime.switch(old.colour).await {
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
    if let Err(e) = runtime.stop(entry.colour).await {
        cleanup.push(format!("stopping {} failed: {e:#}", entry.colour.as_str()));
    }
    entry.result = if switched {
        Outcome::RolledBack
    } else {
        Outcome::Failed
    };
    entry.failed_step = Some(step);
    entry.reason = Some(format!("{error:#}"));
    entry.rollback_ms = Some(t.elapsed().as_millis() as u64);
    let mut msg = format!(
        "deploy of {} failed at step `{step}`: {error:#}; {}",
        entry.release.artifact,
        if switched {
            "traffic was switched back and the new colour stopped"
        } else {
            "the new colour was stopped; traffic never left the old one"
        }
    );
    for c in cleanup {
        msg.push_str(&format!("\n  {c}"));
    }
    anyhow::anyhow!(msg)
}

async fn wait_ready(instances: &[Instance], timeout: Duration) -> Result<()> {
    let http = metrics_client();
    let deadline = Instant::now() + timeout;
    for i in instances {
        let url = format!("{}{}", i.base_url, i.component.ready_path);
        loop {
            let status = http.get(&url).send().await.map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} at {url} not ready within {timeout:?} (last answer: {})",
                    i.component.name,
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

/// Watches the traffic-serving instances' signals for the bake window.
async fn bake(runtime: &mut dyn Runtime, instances: &[Instance], gates: &Gates) -> Result<()> {
    let start = runtime.traffic(instances).await?;
    let deadline = Instant::now() + gates.bake;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let window = runtime.traffic(instances).await?.since(&start);
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

#[cfg(test)]
mod tests {
    //! The orchestration's decisions for a runtime that rolls in place (as Swarm does), with a
    //! scripted runtime: what each step answers is given, what the deploy did is recorded.
    use super::*;
    use crate::deploy::component::component;
    use crate::migrate::Migration;
    use async_trait::async_trait;

    #[derive(Default)]
    struct Rolling {
        /// The error `start` ends with (Swarm rolled the update back).
        start_fails: Option<&'static str>,
        /// The traffic the bake sees after its first read: (requests, 5xx).
        traffic: (u32, u32),
        reads: u32,
        calls: Vec<String>,
        base_url: String,
    }

    #[async_trait]
    impl Runtime for Rolling {
        async fn digest(&mut self, _: &str) -> Result<String> {
            Ok("sha256:1".into())
        }
        async fn check(&mut self, artifact: &str) -> Result<Release> {
            Ok(Release {
                artifact: artifact.into(),
                version: artifact.into(),
                git_sha: "abc".into(),
                digest: "sha256:1".into(),
            })
        }
        async fn migration_status(&mut self, _: &Release) -> Result<Vec<Migration>> {
            Ok(Vec::new())
        }
        async fn migrate(&mut self, _: &Release) -> Result<()> {
            Ok(())
        }
        async fn start(&mut self, colour: Colour, _: &Release) -> Result<Vec<Instance>> {
            self.calls.push(format!("start {}", colour.as_str()));
            if let Some(why) = self.start_fails {
                bail!("{why}");
            }
            Ok(vec![Instance {
                component: *component("api"),
                base_url: self.base_url.clone(),
            }])
        }
        async fn switch(&mut self, colour: Colour) -> Result<()> {
            self.calls.push(format!("switch {}", colour.as_str()));
            Ok(())
        }
        async fn stop(&mut self, colour: Colour) -> Result<()> {
            self.calls.push(format!("stop {}", colour.as_str()));
            Ok(())
        }
        fn rolling(&self) -> bool {
            true
        }
        async fn traffic(&mut self, _: &[Instance]) -> Result<Signals> {
            let (requests, errors) = if self.reads == 0 {
                (0, 0)
            } else {
                self.traffic
            };
            self.reads += 1;
            Ok(Signals::parse_traffic(&format!(
                "http_requests_total{{endpoint=\"/a\",status_code=\"200\"}} {}\n\
                 http_requests_total{{endpoint=\"/a\",status_code=\"500\"}} {errors}\n",
                requests - errors
            )))
        }
    }

    /// An address whose readiness path answers 200.
    async fn ready_server() -> String {
        let app = axum::Router::new().route("/health/ready", axum::routing::get(|| async { "ok" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn plan(artifact: &str) -> Plan<'static> {
        Plan {
            artifact: artifact.into(),
            admin_url: None,
            backup_to: None,
            gates: Gates {
                ready_timeout: Duration::from_secs(5),
                bake: Duration::from_millis(600),
                max_error_ratio: 0.01,
                max_p95: Duration::from_secs(1),
                min_requests: 20,
                drain: Duration::ZERO,
                rollback_window: Duration::from_secs(3600),
            },
            strategy: Strategy::BlueGreen,
            by: "test".into(),
        }
    }

    /// A state directory whose first release is live (blue), and the runtime that deployed it.
    async fn live() -> (tempfile::TempDir, State, Rolling) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        let mut runtime = Rolling {
            base_url: ready_server().await,
            traffic: (100, 0),
            ..Default::default()
        };
        deploy(&mut runtime, &state, &plan("registry:5000/ghostworks:1"))
            .await
            .expect("the first release deploys");
        runtime.calls.clear();
        runtime.reads = 0;
        (dir, state, runtime)
    }

    #[tokio::test]
    async fn a_rolling_update_that_swarm_rolled_back_is_a_rollback_with_its_reason() {
        let (_dir, state, mut runtime) = live().await;
        runtime.start_fails = Some("Swarm rolled ghostworks_api back: task x1 failed");
        let err = deploy(&mut runtime, &state, &plan("registry:5000/ghostworks:2"))
            .await
            .expect_err("the deploy fails")
            .to_string();
        assert!(
            err.contains("step `start`") && err.contains("task x1"),
            "{err}"
        );
        let last = state.history().unwrap().pop().unwrap();
        assert_eq!(last.result, Outcome::RolledBack);
        assert_eq!(last.failed_step, Some(Step::Start));
        assert!(last.reason.unwrap().contains("task x1"));
        // The services go back to the live release's image; nothing else is stopped.
        assert_eq!(runtime.calls, ["start green", "switch blue", "stop green"]);
        assert_eq!(state.active().unwrap().unwrap().colour, Colour::Blue);
    }

    #[tokio::test]
    async fn a_bake_that_sees_errors_rolls_the_services_back() {
        let (_dir, state, mut runtime) = live().await;
        runtime.traffic = (100, 10);
        let err = deploy(&mut runtime, &state, &plan("registry:5000/ghostworks:2"))
            .await
            .expect_err("the bake fails")
            .to_string();
        assert!(err.contains("error ratio 10.0%"), "{err}");
        let last = state.history().unwrap().pop().unwrap();
        assert_eq!(
            (last.result, last.failed_step),
            (Outcome::RolledBack, Some(Step::Bake))
        );
        assert_eq!(
            runtime.calls,
            ["start green", "switch green", "switch blue", "stop green"]
        );
        assert_eq!(state.active().unwrap().unwrap().colour, Colour::Blue);
    }

    #[tokio::test]
    async fn a_good_rolling_update_becomes_the_live_release() {
        let (_dir, state, mut runtime) = live().await;
        runtime.traffic = (100, 0);
        let entry = deploy(&mut runtime, &state, &plan("registry:5000/ghostworks:2"))
            .await
            .expect("deployed");
        assert_eq!(entry.result, Outcome::Succeeded);
        assert!(entry.switch_ms.is_some());
        let active = state.active().unwrap().unwrap();
        assert_eq!(
            (active.colour, active.release.artifact.as_str()),
            (Colour::Green, "registry:5000/ghostworks:2")
        );
        assert_eq!(runtime.calls, ["start green", "switch green", "stop blue"]);
        assert_eq!(state.history().unwrap().len(), 2);
    }
}
