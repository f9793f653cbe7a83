//! One gated deploy: check, back up, migrate, start the new colour, wait for readiness,
//! switch, bake; then drain and stop the old colour, or undo and record why.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use ghostworks_telemetry::signals::Signals;

use super::policy::contract_allowed;
use super::{Active, Colour, HistoryEntry, Instance, Outcome, Release, Runtime, State, Step};
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
    step: Step,
    error: anyhow::Error,
}

fn step<T>(step: Step, r: Result<T>) -> std::result::Result<T, StepError> {
    r.map_err(|error| StepError { step, error })
}

/// How far a deploy got.
struct Progress {
    release: Release,
    /// Set once traffic is on the new colour.
    switch_ms: Option<u64>,
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
    let instances = step(Step::Start, runtime.start(colour, release).await)?;
    step(
        Step::Ready,
        wait_ready(&instances, plan.gates.ready_timeout).await,
    )?;
    let t = Instant::now();
    step(Step::Switch, runtime.switch(colour).await)?;
    progress.switch_ms = Some(t.elapsed().as_millis() as u64);
    step(Step::Bake, bake(&instances, &plan.gates).await)
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

fn client() -> reqwest::Client {
    ghostworks_telemetry::http_client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

async fn wait_ready(instances: &[Instance], timeout: Duration) -> Result<()> {
    let http = client();
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

/// Watches the traffic-serving instances' /metrics for the bake window.
async fn bake(instances: &[Instance], gates: &Gates) -> Result<()> {
    let http = client();
    let urls: Vec<String> = instances
        .iter()
        .filter(|i| i.component.upstream.is_some())
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
