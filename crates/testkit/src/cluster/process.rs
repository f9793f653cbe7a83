//! The child processes of the cluster and the small tools to drive them: spawning with output
//! to a log file, bounded waits that fail with the log's tail, signals, and a plain HTTP GET
//! for the REST APIs of Patroni and etcd.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ghostworks_devstack::is_root;

/// A child process writing its output to `log`.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(what: &str, mut cmd: Command, log: &Path) -> Result<Process> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        Ok(Process {
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// SIGKILL, then reaps it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// `program` found on PATH or in the system directories; else an error naming `package`.
pub fn find(program: &str, package: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .with_context(|| format!("{program} not found: install it (apt-get install {package})"))
}

fn postgres_ids() -> Result<(u32, u32)> {
    let id = |flag: &str| -> Result<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output()?;
        if !out.status.success() {
            bail!("no postgres user: install the PostgreSQL 15 server (apt-get install postgresql-15)");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    Ok((id("-u")?, id("-g")?))
}

/// A command for `program` as the `postgres` user when run as root (PostgreSQL refuses to run
/// as root), with a minimal environment: nothing of the caller's leaks into it.
pub fn run_as_postgres(program: &Path) -> Result<Command> {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("LANG", "C.UTF-8");
    if is_root() {
        let (uid, gid) = postgres_ids()?;
        cmd.uid(uid).gid(gid);
    }
    Ok(cmd)
}

/// Makes `dir` and everything under it the `postgres` user's (when run as root).
pub fn give_to_postgres(dir: &Path) -> Result<()> {
    if is_root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir)
            .status()?;
        if !status.success() {
            bail!("chown -R postgres {} failed", dir.display());
        }
    }
    Ok(())
}

/// Writes `text` to `path` readable by its owner only (it may hold passwords).
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Sends `signal` (`-KILL`, `-STOP`, `-CONT`) to `pid`.
pub fn kill(signal: &str, pid: u32) -> Result<()> {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        bail!("kill {signal} {pid} failed");
    }
    Ok(())
}

/// The last 40 lines of `log`, headed by its path. Patroni's tracebacks of health checks that
/// HAProxy closed before reading the answer are left out: they would crowd out PostgreSQL's
/// and Patroni's own messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut lines = Vec::new();
    let mut in_traceback = false;
    for line in text.lines() {
        if line.contains("Exception happened during processing of request") {
            in_traceback = true;
        } else if in_traceback && line.trim().is_empty() {
            in_traceback = false;
        } else if !in_traceback {
            lines.push(line);
        }
    }
    let from = lines.len().saturating_sub(40);
    format!("--- {} ---\n{}", log.display(), lines[from..].join("\n"))
}

/// Polls `ok` until it holds; past `timeout`, fails naming `what` with the tail of `log`.
pub fn wait_until(
    what: &str,
    log: &Path,
    timeout: Duration,
    mut ok: impl FnMut() -> bool,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            bail!("{what} did not come up within {timeout:?}\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// `GET path` on a loopback port: the status code and the body.
pub fn rest_get(port: u16, path: &str) -> Result<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((status, body.to_string()))
}
