//! `ghostworks supervise`: runs one role's command as its child and starts it again when it
//! fails, so a crashed api or worker of the process runtime comes back without an operator.
//!
//! A failure is an exit with a non-zero status or by a signal that the supervisor did not
//! forward. A clean exit (status 0) ends the supervisor too: only a stop request ends a role
//! cleanly. SIGTERM and SIGINT are forwarded to the child, and the supervisor exits once the
//! child has, so the graceful drain of `serve` and `worker` works as without it.
//!
//! The supervisor and its child share one process group (the process runtime makes the
//! supervisor its leader), and the runtime's last resort is SIGKILL to that group. This is
//! preferred over the child asking for PR_SET_PDEATHSIG: that signal fires when the *thread*
//! that spawned the child exits, which in a multi-threaded runtime can be any time, and it
//! reaches neither grandchildren (a release wrapped in a shell script) nor a child whose
//! supervisor was killed before the request took effect. The group reaches them all.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// The wait before the first restart of a streak; it doubles with each rapid failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The defaults of [`Policy`].
pub const DEFAULT_MAX_FAILURES: u32 = 5;
pub const DEFAULT_STABLE_SECS: u64 = 30;

/// When to give up.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Rapid failures in a row after which the supervisor gives up and exits non-zero.
    pub max_failures: u32,
    /// A run that stays up this long was healthy: it ends a streak of rapid failures, and the
    /// backoff starts over.
    pub stable: Duration,
}

impl Policy {
    /// The streak of rapid failures after a run that failed after `uptime`.
    fn streak(&self, streak: u32, uptime: Duration) -> u32 {
        if uptime < self.stable {
            streak + 1
        } else {
            0
        }
    }
}

/// The wait before the next start after `streak` rapid failures in a row: 0.5 s, doubling from
/// the second rapid failure on, at most 30 s.
fn backoff(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(16);
    (FIRST_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// What the supervisor reports in its status file, rewritten at every start of the command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// The running command's pid.
    pub pid: u32,
    /// Starts after the first.
    pub restarts: u32,
    /// How the previous run ended, e.g. `signal: 9 (SIGKILL)`.
    pub last_exit: Option<String>,
    pub started_at: DateTime<Utc>,
}

fn write_status(path: &Path, status: &Status) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(status)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// SIGTERM and SIGINT, the stop requests that are forwarded.
struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    fn new() -> Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    async fn recv(&mut self) -> libc::c_int {
        tokio::select! {
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
        }
    }
}

/// Runs `command` until it exits cleanly or a stop request has been forwarded and the command
/// has exited; an error when it fails `policy.max_failures` times in a row, or exits with a
/// failure after a stop request.
pub async fn run(command: &[OsString], policy: &Policy, status_file: Option<&Path>) -> Result<()> {
    let (program, args) = command
        .split_first()
        .context("no command to supervise; pass it after `--`")?;
    let shown = command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    // Before the first start: a stop request must never find the child unsupervised.
    let mut stops = StopSignals::new()?;
    let mut status = Status {
        pid: 0,
        restarts: 0,
        last_exit: None,
        started_at: Utc::now(),
    };
    let mut streak = 0;
    loop {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .spawn()
            .with_context(|| format!("cannot start `{shown}`"))?;
        status.pid = child.id().unwrap_or_default();
        status.started_at = Utc::now();
        if let Some(path) = status_file {
            if let Err(e) = write_status(path, &status) {
                tracing::warn!(path = %path.display(), error = %e, "cannot write the status file");
            }
        }
        tracing::info!(pid = status.pid, restarts = status.restarts, command = %shown, "started");

        let exit = tokio::select! {
            exit = child.wait() => exit?,
            sig = stops.recv() => return stop(&mut child, sig, &mut stops).await,
        };
        if exit.success() {
            tracing::info!(pid = status.pid, "exited cleanly; not restarting");
            return Ok(());
        }
        let uptime = started.elapsed();
        streak = policy.streak(streak, uptime);
        if streak >= policy.max_failures {
            bail!(
                "`{shown}` failed {streak} times in a row, each within {:?} of its start (last: \
                 {exit}); giving up after {} restart(s). See the messages above for why it \
                 fails.",
                policy.stable,
                status.restarts
            );
        }
        let wait = backoff(streak);
        tracing::warn!(
            pid = status.pid,
            exit = %exit,
            uptime_ms = uptime.as_millis() as u64,
            restart = status.restarts + 1,
            rapid_failures = streak,
            backoff_ms = wait.as_millis() as u64,
            "the command failed; restarting it after the backoff"
        );
        status.restarts += 1;
        status.last_exit = Some(exit.to_string());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stops.recv() => {
                tracing::info!("stop requested while waiting to restart");
                return Ok(());
            }
        }
    }
}

/// Forwards `sig`, and every stop request after it, until the child exits.
async fn stop(
    child: &mut tokio::process::Child,
    mut sig: libc::c_int,
    stops: &mut StopSignals,
) -> Result<()> {
    loop {
        if let Some(pid) = child.id() {
            tracing::info!(pid, signal = sig, "forwarding the stop request");
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped
            // child, so it cannot have been reused.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
        tokio::select! {
            exit = child.wait() => {
                let exit = exit?;
                if !exit.success() {
                    bail!("the command exited with {exit} after the stop request");
                }
                return Ok(());
            }
            next = stops.recv() => sig = next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_thirty() {
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(
            waits,
            [500, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_stable_run_ends_the_streak() {
        let p = Policy {
            max_failures: 3,
            stable: Duration::from_secs(30),
        };
        assert_eq!(p.streak(0, Duration::from_secs(1)), 1);
        assert_eq!(p.streak(2, Duration::from_secs(1)), 3);
        assert_eq!(p.streak(2, Duration::from_secs(30)), 0);
    }
}
