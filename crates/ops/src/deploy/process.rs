//! The process runtime: each role of a colour runs as a `ghostworks` process of the release's
//! binary on this host (the VM alternative of ADR-0004), on the colour's ports, logging to the
//! state directory; nginx on the same host is switched by rewriting its upstream file and
//! sending its master SIGHUP.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::{nginx, port, run_ok, Colour, Instance, Release, Runtime, ROLES};

pub struct ProcessRuntime {
    pub admin_url: String,
    pub base_port: u16,
    /// Environment per role name, over the inherited environment.
    pub env: HashMap<String, HashMap<String, String>>,
    pub upstream_file: PathBuf,
    pub nginx_pid_file: PathBuf,
    pub state_dir: PathBuf,
    pub git_sha: String,
    /// Overrides the version the binary reports (`--label`).
    pub label: Option<String>,
    /// How long a stopping process may take to finish its work before it is killed.
    pub stop_timeout: Duration,
    /// Processes started by this run, reaped when they exit.
    children: Vec<Child>,
}

#[derive(Serialize, Deserialize)]
struct Pid {
    role: String,
    pid: u32,
}

impl ProcessRuntime {
    pub fn new(admin_url: String, base_port: u16, state_dir: PathBuf) -> Self {
        Self {
            admin_url,
            base_port,
            env: HashMap::new(),
            upstream_file: PathBuf::new(),
            nginx_pid_file: PathBuf::new(),
            state_dir,
            git_sha: "unknown".into(),
            label: None,
            stop_timeout: Duration::from_secs(30),
            children: Vec::new(),
        }
    }

    fn command(&self, release: &Release, role: &str) -> Command {
        let mut c = Command::new(&release.artifact);
        if let Some(env) = self.env.get(role) {
            c.envs(env);
        }
        c
    }

    fn pids_file(&self, colour: Colour) -> PathBuf {
        self.state_dir
            .join(format!("{}.pids.json", colour.as_str()))
    }

    /// Alive and not a zombie (a zombie is reaped here when it is our child).
    fn alive(&mut self, pid: u32) -> bool {
        for c in &mut self.children {
            if c.id() == pid {
                return matches!(c.try_wait(), Ok(None));
            }
        }
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim().to_string()))
            .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("cannot run kill")?;
    if !status.success() {
        bail!("kill {sig} {pid} failed");
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
            let mut c = self.command(&release, role.name);
            c.args(role.check_args);
            run_ok(c, &format!("configuration of the {} role", role.name))?;
        }
        Ok(release)
    }

    fn migration_status(&mut self, release: &Release) -> Result<String> {
        let mut c = self.command(release, "api");
        c.args(["migrate", "--status"])
            .env("DATABASE_ADMIN_URL", &self.admin_url);
        run_ok(c, "ghostworks migrate --status")
    }

    fn migrate(&mut self, release: &Release) -> Result<()> {
        let mut c = self.command(release, "api");
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
            let mut c = self.command(release, role.name);
            c.arg(role.command)
                .env(role.bind_var, format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group: a Ctrl-C aimed at the deploy does not stop the release.
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
        let servers: Vec<String> = ROLES
            .iter()
            .filter(|r| r.serves_traffic)
            .map(|r| format!("127.0.0.1:{}", port(self.base_port, colour, r)))
            .collect();
        nginx::write_upstream(&self.upstream_file, colour, &servers)?;
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
        nginx::reload(master, || signal(master, "-HUP"))
    }

    fn stop(&mut self, colour: Colour) -> Result<()> {
        let file = self.pids_file(colour);
        let Ok(bytes) = std::fs::read(&file) else {
            return Ok(());
        };
        let pids: Vec<Pid> = serde_json::from_slice(&bytes).unwrap_or_default();
        for p in &pids {
            if self.alive(p.pid) {
                let _ = signal(p.pid, "-TERM");
            }
        }
        let deadline = Instant::now() + self.stop_timeout;
        for p in &pids {
            while self.alive(p.pid) {
                if Instant::now() > deadline {
                    let _ = signal(p.pid, "-KILL");
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
        std::fs::remove_file(&file)?;
        Ok(())
    }
}
