//! Running the commands a runtime drives (the release's binary, docker, kill).

use anyhow::{bail, Context, Result};

/// Runs `c`; its stdout, or an error naming `what` with everything it printed.
pub(crate) async fn run_ok(c: std::process::Command, what: &str) -> Result<String> {
    let out = tokio::process::Command::from(c)
        .output()
        .await
        .with_context(|| format!("{what}: cannot run"))?;
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
