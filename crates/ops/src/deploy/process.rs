//! The process runtime: each role of a colour runs as a `ghostworks` process of the release's
//! binary on this host (the VM alternative of ADR-0004), on the colour's ports, logging to the
//! state directory, under a `ghostworks supervise` process that restarts it when it crashes;
//! nginx on the same host is switched by rewriting its upstream file and sending its master
//! SIGHUP.

pub mod supervise;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{nginx, port, run_ok, Colour, Instance, Release, Role, Runtime, ROLES};

pub struct ProcessRuntime {
    pub admin_url: String,
    pub base_port: u16,
    /// Environment per role name, over the inherited environment.
    pub env: HashMap<String, HashMap<String, String>>,
    /// Where nginx.conf includes the `upstream-NAME.conf` files from.
    pub upstream_dir: PathBuf,
    pub nginx_pid_file: PathBuf,
    pub state_dir: PathBuf,
    pub git_sha: String,
    /// Overrides the version the binary reports (`--label`).
    pub label: Option<String>,
    /// How long a stopping process may take to finish its work before it is killed.
    pub stop_timeout: Duration,
    /// The binary whose `supervise` runs each role: the deploying one, not the release's. The
    /// stop path relies on how the supervisor handles signals and process groups, so that
    /// contract stays one version on both sides, and a rollback to a release older than
    /// `supervise` still runs supervised. The supervised command is the release's binary.
    pub supervisor: PathBuf,
    /// The supervisor's `--max-failures`.
    pub max_failures: u32,
    /// Processes started by this run, reaped when they exit.
    children: Vec<Child>,
}

#[derive(Serialize, Deserialize)]
struct Pid {
    role: String,
    /// The role's supervisor, the leader of the role's process group.
    pid: u32,
}

/// A role of a colour as `deploy status` shows it.
pub struct RoleStatus {
    pub role: String,
    pub supervisor: u32,
    /// Whether any process of the role's group is alive.
    pub running: bool,
    /// The supervisor's report; none when it never started the command.
    pub supervised: Option<supervise::Status>,
}

impl ProcessRuntime {
    pub fn new(admin_url: String, base_port: u16, state_dir: PathBuf) -> Self {
        Self {
            admin_url,
            base_port,
            env: HashMap::new(),
            upstream_dir: PathBuf::new(),
            nginx_pid_file: PathBuf::new(),
            state_dir,
            git_sha: "unknown".into(),
            label: None,
            stop_timeout: Duration::from_secs(30),
            supervisor: PathBuf::new(),
            max_failures: supervise::DEFAULT_MAX_FAILURES,
            children: Vec::new(),
        }
    }

    /// `program` with the environment of `role`.
    fn command(&self, program: impl AsRef<OsStr>, role: &str) -> Command {
        let mut c = Command::new(program);
        if let Some(env) = self.env.get(role) {
            c.envs(env);
        }
        c
    }

    /// The role's links to the other roles of `colour`.
    fn links(&self, role: &Role, colour: Colour) -> Vec<(&'static str, String)> {
        role.links
            .iter()
            .map(|(var, target)| {
                let p = port(self.base_port, colour, super::role(target));
                (*var, format!("http://127.0.0.1:{p}"))
            })
            .collect()
    }

    fn pids_file(&self, colour: Colour) -> PathBuf {
        pids_file(&self.state_dir, colour)
    }

    fn status_file(&self, colour: Colour, role: &str) -> PathBuf {
        status_file(&self.state_dir, colour, role)
    }

    /// Whether any process of the group `pgid` is alive. Reaps our exited children first,
    /// which would otherwise stay zombies for as long as the deploy runs.
    fn running(&mut self, pgid: u32) -> bool {
        for c in &mut self.children {
            let _ = c.try_wait();
        }
        group_running(pgid)
    }
}

fn pids_file(state_dir: &Path, colour: Colour) -> PathBuf {
    state_dir.join(format!("{}.pids.json", colour.as_str()))
}

fn status_file(state_dir: &Path, colour: Colour, role: &str) -> PathBuf {
    state_dir.join(format!("{}-{role}.status.json", colour.as_str()))
}

/// Whether any process of the group `pgid` is alive (zombies aside): the supervisor, the role
/// it runs, anything the role started.
fn group_running(pgid: u32) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    let pgid = pgid.to_string();
    procs
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            matches!(fields.as_slice(), [state, _, pgrp, ..]
                if *pgrp == pgid && *state != "Z" && *state != "X")
        })
}

/// Every role of `colour` in `state_dir`, with its supervisor's report.
pub fn status(state_dir: &Path, colour: Colour) -> Result<Vec<RoleStatus>> {
    let Ok(bytes) = std::fs::read(pids_file(state_dir, colour)) else {
        return Ok(Vec::new());
    };
    let pids: Vec<Pid> = serde_json::from_slice(&bytes)?;
    Ok(pids
        .into_iter()
        .map(|p| RoleStatus {
            running: group_running(p.pid),
            supervised: std::fs::read(status_file(state_dir, colour, &p.role))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
            supervisor: p.pid,
            role: p.role,
        })
        .collect())
}

/// Sends `sig` to `target`: a pid, or as with kill(1) a process group when negative.
fn signal(target: i64, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([sig, "--", &target.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill {sig} {target} failed");
    }
    Ok(())
}

fn sha256_hex(path: &Path) -> Result<String> {
    crate::pg::sha256_file(path)
}

impl Runtime for ProcessRuntime {
    fn check(&mut self, artifact: &str) -> Result<Release> {
        let path = Path::new(artifact);
        if !path.is_file() {
            bail!("--release: {artifact} is not a file; pass the path of a ghostworks binary");
        }
        let mut v = Command::new(path);
        v.arg("--version");
        let version = run_ok(v, "--release: the binary's --version")?;
        let version = match &self.label {
            Some(l) => l.clone(),
            None => version
                .split_whitespace()
                .last()
                .unwrap_or("unknown")
                .to_string(),
        };
        let release = Release {
            artifact: artifact.to_string(),
            version,
            git_sha: self.git_sha.clone(),
            digest: format!("sha256:{}", sha256_hex(path)?),
        };
        for role in ROLES {
            let mut c = self.command(&release.artifact, role.name);
            c.args(role.check_args).envs(self.links(role, Colour::Blue));
            run_ok(c, &format!("configuration of the {} role", role.name))?;
        }
        Ok(release)
    }

    fn migration_status(&mut self, release: &Release) -> Result<String> {
        let mut c = self.command(&release.artifact, "api");
        c.args(["migrate", "--status"])
            .env("DATABASE_ADMIN_URL", &self.admin_url);
        run_ok(c, "ghostworks migrate --status")
    }

    fn migrate(&mut self, release: &Release) -> Result<()> {
        let mut c = self.command(&release.artifact, "api");
        c.arg("migrate").env("DATABASE_ADMIN_URL", &self.admin_url);
        run_ok(c, "ghostworks migrate").map(|_| ())
    }

    fn start(&mut self, colour: Colour, release: &Release) -> Result<Vec<Instance>> {
        // Left over from an interrupted deploy: never two sets of one colour.
        self.stop(colour)?;
        let logs = self.state_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut pids = Vec::new();
        let mut instances = Vec::new();
        for role in ROLES {
            let port = port(self.base_port, colour, role);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(format!("{}-{}.log", colour.as_str(), role.name)))?;
            let mut c = self.command(&self.supervisor, role.name);
            c.arg("supervise")
                .arg("--max-failures")
                .arg(self.max_failures.to_string())
                .arg("--status-file")
                .arg(self.status_file(colour, role.name))
                .arg("--")
                .arg(&release.artifact)
                .arg(role.command)
                .env(role.bind_var, format!("127.0.0.1:{port}"))
                .envs(self.links(role, colour))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group, which the role joins: a Ctrl-C aimed at the deploy
                // does not stop the release, and stopping can kill the whole group.
                .process_group(0);
            let child = c
                .spawn()
                .with_context(|| format!("cannot start the {} role", role.name))?;
            pids.push(Pid {
                role: role.name.into(),
                pid: child.id(),
            });
            self.children.push(child);
            instances.push(Instance {
                role: *role,
                base_url: format!("http://127.0.0.1:{port}"),
            });
        }
        std::fs::write(self.pids_file(colour), serde_json::to_vec(&pids)?)?;
        Ok(instances)
    }

    fn switch(&mut self, colour: Colour) -> Result<()> {
        nginx::write_upstreams(&self.upstream_dir, colour, |r| {
            Ok(format!("127.0.0.1:{}", port(self.base_port, colour, r)))
        })?;
        let master: u32 = std::fs::read_to_string(&self.nginx_pid_file)
            .with_context(|| {
                format!(
                    "--nginx-pid-file: cannot read {}; is nginx running?",
                    self.nginx_pid_file.display()
                )
            })?
            .trim()
            .parse()
            .context("--nginx-pid-file: not a process id")?;
        nginx::reload(master, || signal(master.into(), "-HUP"))
    }

    fn stop(&mut self, colour: Colour) -> Result<()> {
        let file = self.pids_file(colour);
        let Ok(bytes) = std::fs::read(&file) else {
            return Ok(());
        };
        let pids: Vec<Pid> = serde_json::from_slice(&bytes).unwrap_or_default();
        // The supervisor forwards SIGTERM to the role and exits after it.
        for p in &pids {
            if self.running(p.pid) {
                let _ = signal(p.pid.into(), "-TERM");
            }
        }
        let deadline = Instant::now() + self.stop_timeout;
        for p in &pids {
            while self.running(p.pid) {
                if Instant::now() > deadline {
                    let _ = signal(-i64::from(p.pid), "-KILL");
                    bail!(
                        "the {} role of {} (pid {}) did not finish within {:?} and was killed",
                        p.role,
                        colour.as_str(),
                        p.pid,
                        self.stop_timeout
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for p in &pids {
            let _ = std::fs::remove_file(self.status_file(colour, &p.role));
        }
        std::fs::remove_file(&file)?;
        Ok(())
    }
}
