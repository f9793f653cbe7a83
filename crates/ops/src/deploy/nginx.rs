//! Switching nginx's upstreams, shared by the runtimes: the upstream file is rewritten
//! atomically and the master reloads it gracefully (old workers finish their requests).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::component::{self, Colour, Component};

/// Points every upstream at `colour`: `server(c)` is the address of component c's instance
/// in it, written to `DIR/upstream-NAME.conf`, which nginx.conf includes in `upstream NAME`.
pub fn write_upstreams(
    dir: &Path,
    colour: Colour,
    server: impl Fn(&Component) -> Result<String>,
) -> Result<()> {
    write_upstreams_to(dir, &format!("The {} colour", colour.as_str()), server)
}

/// Points every upstream at `server(c)`, described by `what` in the file's comment.
pub fn write_upstreams_to(
    dir: &Path,
    what: &str,
    server: impl Fn(&Component) -> Result<String>,
) -> Result<()> {
    for (name, c) in component::upstreams() {
        write_upstream(
            &dir.join(format!("upstream-{name}.conf")),
            what,
            &server(c)?,
        )?;
    }
    Ok(())
}

/// Whether every upstream file already names `server(c)` as its server.
pub fn points_at(dir: &Path, server: impl Fn(&Component) -> Result<String>) -> Result<bool> {
    for (name, c) in component::upstreams() {
        let text =
            std::fs::read_to_string(dir.join(format!("upstream-{name}.conf"))).unwrap_or_default();
        let wanted = format!("server {} ", server(c)?);
        if !text.lines().any(|l| l.trim_start().starts_with(&wanted)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Writes the upstream server to `file` (a rename, so nginx never reads half a file).
/// `resolve` keeps names re-resolved through Docker's DNS when the current file asks for it
/// (nginx >= 1.27.3).
fn write_upstream(file: &Path, what: &str, server: &str) -> Result<()> {
    let resolve = std::fs::read_to_string(file)
        .map(|t| {
            t.lines()
                .any(|l| l.trim_start().starts_with("server ") && l.contains(" resolve"))
        })
        .unwrap_or(false);
    let body = format!(
        "# {what}, written by `ghostworks deploy`.\nserver {server} max_fails=3 fail_timeout=10s{};\n",
        if resolve { " resolve" } else { "" }
    );
    let dir = file.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        file.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, body)
        .with_context(|| format!("--upstream-dir: cannot write in {}", dir.display()))?;
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
pub async fn reload(master: u32, hup: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    let before = children_of(master);
    hup.await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while children_of(master).is_subset(&before) {
        if Instant::now() > deadline {
            bail!("nginx started no workers with the new upstream within 10 s; see its error log");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_point_at_a_colour_or_at_the_proxy_that_chooses_it() {
        let dir = tempfile::tempdir().unwrap();
        let colour = |c: &Component| Ok(format!("{}-blue:8000", c.name));
        let proxy = |c: &Component| Ok(format!("haproxy:{}", c.port_offset + 8000));
        assert!(!points_at(dir.path(), proxy).unwrap());
        write_upstreams(dir.path(), Colour::Blue, colour).unwrap();
        assert!(points_at(dir.path(), colour).unwrap());
        assert!(!points_at(dir.path(), proxy).unwrap());
        write_upstreams_to(dir.path(), "HAProxy, which chooses the colour", proxy).unwrap();
        assert!(points_at(dir.path(), proxy).unwrap());
        let web = std::fs::read_to_string(dir.path().join("upstream-web.conf")).unwrap();
        assert!(
            web.starts_with("# HAProxy, which chooses the colour, written by"),
            "{web}"
        );
        assert!(web.contains("\nserver haproxy:8020 max_fails=3"), "{web}");
    }
}
