//! Policy: which releases a deploy or a rollback may go to, given the migrations applied.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use super::{Active, HistoryEntry, Release, Runtime, State};
use crate::migrate::Migration;

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
        .find(|e| e.succeeded() && e.release == active.release)
        .map(|e| e.time);
    let replaced_before = history
        .iter()
        .any(|e| e.succeeded() && e.release != active.release);
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
    let mut candidates = history.iter().rev().filter(|e| e.succeeded());
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

/// Refuses to run a recorded `release` again unless its artifact is still what the history
/// recorded: a path or a tag names whatever is there now, which may have been replaced since
/// (a binary overwritten, a tag moved).
pub async fn verify_recorded(runtime: &mut dyn Runtime, release: &Release) -> Result<()> {
    let artifact = &release.artifact;
    let found = runtime.digest(artifact).await.with_context(|| {
        format!(
            "cannot check {artifact} against the digest the history recorded for {}",
            release.version
        )
    })?;
    if found != release.digest {
        bail!(
            "refusing to run {version} again: {artifact} is not what the history recorded \
             (expected {expected}, found {found}); it was replaced since. Put the recorded \
             release back at {artifact}, or deploy what is there now as a new release with \
             `ghostworks deploy --release {artifact}`",
            version = release.version,
            expected = release.digest,
        );
    }
    Ok(())
}

/// The rollback guard: [`rollback_allowed`] for `target` (see [`rollback_target`]) against the
/// migrations the live release reports, unless `force_past_contract`. The live release's
/// artifact runs only once [`verify_recorded`] passes.
pub async fn rollback_guard(
    state: &State,
    runtime: &mut dyn Runtime,
    target: &HistoryEntry,
    force_past_contract: bool,
) -> Result<()> {
    if !force_past_contract {
        // The live release knows every migration applied (the database's record, and whether
        // each one it embeds is a contract step).
        let live = state
            .active()?
            .context("nothing is deployed, so there is nothing to roll back")?;
        verify_recorded(runtime, &live.release).await?;
        let status = runtime.migration_status(&live.release).await?;
        rollback_allowed(target, &status)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::history::tests::entry;
    use crate::deploy::{Colour, Outcome};

    #[test]
    fn rollback_targets_an_earlier_succeeded_release() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(dir.path()).unwrap();
        assert!(rollback_target(&state, None).is_err());
        for (v, r) in [
            ("1.0", Outcome::Succeeded),
            ("1.1", Outcome::Succeeded),
            ("1.2", Outcome::RolledBack),
            ("1.3", Outcome::Succeeded),
        ] {
            state.record(&entry(v, r)).unwrap();
        }
        state
            .set_active(&Active {
                colour: Colour::Green,
                release: entry("1.3", Outcome::Succeeded).release,
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
        let old = entry("1.0", Outcome::Succeeded);
        let mut live = entry("1.1", Outcome::Succeeded);
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
    fn rollbacks_past_an_applied_contract_step_are_refused() {
        let applied = |version, contract| Migration {
            version,
            applied: true,
            contract,
            description: format!("step {version}"),
        };
        let mut target = entry("1.0", Outcome::Succeeded);
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
}
