//! Switching nginx's api upstream, shared by the runtimes: the upstream file is rewritten
//! atomically and the master reloads it gracefully (old workers finish their requests).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::Colour;

/// Writes the upstream servers of `colour` to `file` (a rename, so nginx never reads half a
/// file). `resolve` keeps names re-resolved through Docker's DNS when the current file asks
/// for it (nginx >= 1.27.3).
pub fn write_upstream(file: &Path, colour: Colour, servers: &[String]) -> Result<()> {
    let resolve = std::fs::read_to_string(file)
        .map(|t| {
            t.lines()
                .any(|l| l.trim_start().starts_with("server ") && l.contains(" resolve"))
        })
        .unwrap_or(false);
    let lines: String = servers
        .iter()
        .map(|s| {
            format!(
                "server {s} max_fails=3 fail_timeout=10s{};\n",
                if resolve { " resolve" } else { "" }
            )
        })
        .collect();
    let body = format!(
        "# The {} colour, written by `ghostworks deploy`.\n{lines}",
        colour.as_str()
    );
    let dir = file.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(".upstream-api.conf.tmp");
    std::fs::write(&tmp, body)
        .with_context(|| format!("--upstream-file: cannot write in {}", dir.display()))?;
    std::fs::rename(&tmp, file)?;
    Ok(())
}

/// The child processes of `pid` (nginx's workers), as this host sees them.
pub fn children_of(pid: u32) -> BTreeSet<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Sends the reload with `hup` and waits until the master (`master`, a pid on this host) has
/// started workers with the new configuration: only then does traffic reach the new colour.
pub fn reload(master: u32, hup: impl FnOnce() -> Result<()>) -> Result<()> {
    let before = children_of(master);
    hup()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while children_of(master).is_subset(&before) {
        if Instant::now() > deadline {
            bail!("nginx started no workers with the new upstream within 10 s; see its error log");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
