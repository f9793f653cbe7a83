//! The process runtime: each role of a colour runs as a `ghostworks` process of the release's
//! binary on this host (the VM alternative of ADR-0004), on the colour's ports, logging to the
//! state directory, under a `ghostworks supervise` process that restarts it when it crashes.
//! Traffic is switched by the proxy chosen with `--proxy`: nginx on the same host, by
//! rewriting its upstream files and sending its master SIGHUP, or an HAProxy the deploy owns,
//! through its runtime API (no reload, and weighted shares for a canary).

pub mod environment;
pub mod supervise;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use async_trait::async_trait;
use clap::Args;
use serde::{Deserialize, Serialize};

use super::{Common, ProxyKind, Runtime};
use crate::deploy::component::{self, port, Colour, Component, Instance, COMPONENTS};
use crate::deploy::exec::run_ok;
use crate::deploy::haproxy::Haproxy;
use crate::deploy::{nginx, Release, State};
use crate::migrate::Migration;
use environment::Environments;

/// The options of `--runtime process`.
#[derive(Args)]
#[command(next_help_heading = "Process runtime (--runtime process)")]
pub struct ProcessArgs {
    /// The api listens on this port in blue and one above in green; the worker's /health 10
    /// above those, the web app 20 above.
    #[arg(long, default_value_t = 8100)]
    pub base_port: u16,
    /// Environment of a role as ROLE=FILE (KEY=VALUE lines), e.g. api=/etc/ghostworks/api.env
    /// and worker=/etc/ghostworks/worker.env. Repeatable. A role gets this file and, of this
    /// command's environment, only PATH, HOME, TZ, LANG, LANGUAGE, LC_*, TMPDIR, SSL_CERT_FILE
    /// and SSL_CERT_DIR: never DATABASE_ADMIN_URL or AWS_* keys.
    #[arg(long = "env-file", value_name = "ROLE=FILE")]
    pub env_files: Vec<String>,
    /// nginx's pid file; the master is sent SIGHUP to reload (--proxy nginx).
    #[arg(long, default_value = "/run/nginx.pid")]
    pub nginx_pid_file: PathBuf,
    /// --proxy haproxy: the api's frontend listens on 127.0.0.1 on this port, the web app's
    /// one above; nginx's upstream files point at them once.
    #[arg(long, default_value_t = 8090)]
    pub haproxy_port: u16,
    /// --proxy haproxy: the HAProxy binary (2.6 or newer).
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    pub haproxy_binary: PathBuf,
    /// The git commit of the release, for the history (the compose runtime reads the image's
    /// org.opencontainers.image.revision label).
    #[arg(long, env = "GIT_SHA", default_value = "unknown")]
    pub git_sha: String,
    /// Each role runs under `ghostworks supervise`, which gives up after this many failures in
    /// a row, each within 30 s of its start (its --max-failures).
    #[arg(long, default_value_t = supervise::DEFAULT_MAX_FAILURES, value_parser = clap::value_parser!(u32).range(1..))]
    pub supervise_max_failures: u32,
}

enum Proxy {
    Nginx {
        /// Where nginx.conf includes the `upstream-NAME.conf` files from.
        upstream_dir: PathBuf,
        pid_file: PathBuf,
    },
    Haproxy(Haproxy),
}

pub struct ProcessRuntime {
    admin_url: String,
    base_port: u16,
    /// What each process of the release starts with.
    env: Environments,
    proxy: Proxy,
    state_dir: PathBuf,
    git_sha: String,
    /// Overrides the version the binary reports (`--label`).
    label: Option<String>,
    /// How long a stopping process may take to finish its work before it is killed.
    stop_timeout: Duration,
    /// The binary whose `supervise` runs each component: the deploying one, not the release's.
    /// The stop path relies on how the supervisor handles signals and process groups, so that
    /// contract stays one version on both sides, and a rollback to a release older than
    /// `supervise` still runs supervised. The supervised command is the release's binary.
    supervisor: PathBuf,
    /// The supervisor's `--max-failures`.
    max_failures: u32,
    /// Processes started by this run, reaped when they exit.
    children: Vec<Child>,
}

#[derive(Serialize, Deserialize)]
struct Pid {
    /// The component's name, under the key earlier releases wrote.
    #[serde(rename = "role")]
    component: String,
    /// The component's supervisor, the leader of its process group.
    pid: u32,
}

/// A component of a colour as `deploy status` shows it.
pub struct ComponentStatus {
    pub component: String,
    pub supervisor: u32,
    /// Whether any process of the component's group is alive.
    pub running: bool,
    /// The supervisor's report; none when it never started the command.
    pub supervised: Option<supervise::Status>,
}

impl ProcessRuntime {
    /// The runtime of `args`; the schema owner's URL is required, since it migrates.
    pub fn new(args: &ProcessArgs, proxy: ProxyKind, common: Common<'_>) -> Result<Self> {
        let admin_url = common.admin_url.context(
            "DATABASE_ADMIN_URL (or DATABASE_ADMIN_URL_FILE) is not set: the process runtime \
             migrates as the schema owner",
        )?;
        Ok(Self {
            admin_url: admin_url.to_string(),
            base_port: args.base_port,
            env: Environments::new(ghostworks_config::process_vars(), &args.env_files)?,
            proxy: match proxy {
                ProxyKind::Nginx => Proxy::Nginx {
                    upstream_dir: common.upstream_dir,
                    pid_file: args.nginx_pid_file.clone(),
                },
                ProxyKind::Haproxy => Proxy::Haproxy(Haproxy::new(
                    args.haproxy_binary.clone(),
                    &common.state_dir,
                    args.haproxy_port,
                    args.base_port,
                )),
            },
            state_dir: common.state_dir,
            git_sha: common
                .earlier
                .map_or_else(|| args.git_sha.clone(), |r| r.git_sha.clone()),
            label: common.label,
            stop_timeout: Duration::from_secs(30),
            supervisor: std::env::current_exe().context("cannot tell this binary's path")?,
            max_failures: args.supervise_max_failures,
            children: Vec::new(),
        })
    }

    /// The component's links to the other components of `colour`.
    fn links(&self, c: &Component, colour: Colour) -> Vec<(&'static str, String)> {
        c.links
            .iter()
            .map(|(var, target)| {
                let p = port(self.base_port, colour, component::component(target));
                (*var, format!("http://127.0.0.1:{p}"))
            })
            .collect()
    }

    fn pids_file(&self, colour: Colour) -> PathBuf {
        pids_file(&self.state_dir, colour)
    }

    fn status_file(&self, colour: Colour, component: &str) -> PathBuf {
        status_file(&self.state_dir, colour, component)
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

fn status_file(state_dir: &Path, colour: Colour, component: &str) -> PathBuf {
    state_dir.join(format!("{}-{component}.status.json", colour.as_str()))
}

/// Whether any process of the group `pgid` is alive (zombies aside): the supervisor, the
/// component it runs, anything the component started.
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

/// Every component of `colour` in `state_dir`, with its supervisor's report.
pub fn status(state_dir: &Path, colour: Colour) -> Result<Vec<ComponentStatus>> {
    let Ok(bytes) = std::fs::read(pids_file(state_dir, colour)) else {
        return Ok(Vec::new());
    };
    let pids: Vec<Pid> = serde_json::from_slice(&bytes)?;
    Ok(pids
        .into_iter()
        .map(|p| ComponentStatus {
            running: group_running(p.pid),
            supervised: std::fs::read(status_file(state_dir, colour, &p.component))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok()),
            supervisor: p.pid,
            component: p.component,
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

#[async_trait]
impl Runtime for ProcessRuntime {
    async fn digest(&mut self, artifact: &str) -> Result<String> {
        let path = Path::new(artifact);
        if !path.is_file() {
            bail!("--release: {artifact} is not a file; pass the path of a ghostworks binary");
        }
        Ok(format!("sha256:{}", crate::pg::sha256_file(path)?))
    }

    async fn check(&mut self, artifact: &str) -> Result<Release> {
        // Before it first runs: the digest is of the binary that runs.
        let digest = self.digest(artifact).await?;
        let path = Path::new(artifact);
        let mut v = self.env.command(path, None);
        v.arg("--version");
        let version = run_ok(v, "--release: the binary's --version").await?;
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
            digest,
        };
        for c in COMPONENTS {
            let mut cmd = self.env.command(&release.artifact, Some(c.name));
            cmd.args(c.check_args).envs(self.links(c, Colour::Blue));
            run_ok(cmd, &format!("configuration of the {} role", c.name)).await?;
        }
        Ok(release)
    }

    async fn migration_status(&mut self, release: &Release) -> Result<Vec<Migration>> {
        let mut c = self.env.command(&release.artifact, Some("api"));
        c.args(["migrate", "--status"])
            .env("DATABASE_ADMIN_URL", &self.admin_url);
        let status = run_ok(c, "ghostworks migrate --status").await?;
        Ok(Migration::parse(&status))
    }

    async fn migrate(&mut self, release: &Release) -> Result<()> {
        let mut c = self.env.command(&release.artifact, Some("api"));
        c.arg("migrate").env("DATABASE_ADMIN_URL", &self.admin_url);
        run_ok(c, "ghostworks migrate").await.map(|_| ())
    }

    async fn start(&mut self, colour: Colour, release: &Release) -> Result<Vec<Instance>> {
        // Left over from an interrupted deploy: never two sets of one colour.
        self.stop(colour).await?;
        let logs = self.state_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut pids = Vec::new();
        let mut instances = Vec::new();
        for c in COMPONENTS {
            let port = port(self.base_port, colour, c);
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(format!("{}-{}.log", colour.as_str(), c.name)))?;
            let mut cmd = self.env.command(&self.supervisor, Some(c.name));
            cmd.arg("supervise")
                .arg("--max-failures")
                .arg(self.max_failures.to_string())
                .arg("--status-file")
                .arg(self.status_file(colour, c.name))
                .arg("--")
                .arg(&release.artifact)
                .arg(c.command)
                .env(c.bind_var, format!("127.0.0.1:{port}"))
                .envs(self.links(c, colour))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                // Its own process group, which the component joins: a Ctrl-C aimed at the deploy
                // does not stop the release, and stopping can kill the whole group.
                .process_group(0);
            let child = cmd
                .spawn()
                .with_context(|| format!("cannot start the {} role", c.name))?;
            pids.push(Pid {
                component: c.name.into(),
                pid: child.id(),
            });
            self.children.push(child);
            instances.push(Instance {
                component: *c,
                base_url: format!("http://127.0.0.1:{port}"),
            });
        }
        std::fs::write(self.pids_file(colour), serde_json::to_vec(&pids)?)?;
        if let Proxy::Haproxy(h) = &self.proxy {
            let live = State::open(&self.state_dir)?.active()?.map(|a| a.colour);
            h.ensure_running(live).await?;
            h.prepare(colour).await?;
        }
        Ok(instances)
    }

    async fn switch(&mut self, colour: Colour) -> Result<()> {
        let (upstream_dir, pid_file) = match &self.proxy {
            Proxy::Haproxy(h) => return h.shift(colour.other(), colour, 100).await,
            Proxy::Nginx {
                upstream_dir,
                pid_file,
            } => (upstream_dir, pid_file),
        };
        nginx::write_upstreams(upstream_dir, colour, |r| {
            Ok(format!("127.0.0.1:{}", port(self.base_port, colour, r)))
        })?;
        let master: u32 = std::fs::read_to_string(pid_file)
            .with_context(|| {
                format!(
                    "--nginx-pid-file: cannot read {}; is nginx running?",
                    pid_file.display()
                )
            })?
            .trim()
            .parse()
            .context("--nginx-pid-file: not a process id")?;
        nginx::reload(master, async { signal(master.into(), "-HUP") }).await
    }

    async fn shift(&mut self, to: Colour, percent: u8) -> Result<()> {
        match &self.proxy {
            Proxy::Haproxy(h) => h.shift(to.other(), to, percent).await,
            Proxy::Nginx { .. } => {
                bail!("--proxy nginx switches all the traffic at once; a canary needs --proxy haproxy")
            }
        }
    }

    fn serving(&self, colour: Colour) -> Result<Vec<Instance>> {
        Ok(COMPONENTS
            .iter()
            .filter(|c| c.upstream.is_some())
            .map(|c| Instance {
                component: *c,
                base_url: format!("http://127.0.0.1:{}", port(self.base_port, colour, c)),
            })
            .collect())
    }

    fn config_hash(&self) -> Option<String> {
        Some(self.env.hash())
    }

    async fn stop(&mut self, colour: Colour) -> Result<()> {
        let file = self.pids_file(colour);
        let Ok(bytes) = std::fs::read(&file) else {
            return Ok(());
        };
        // No new request or cookie holder reaches it from here on.
        if let Proxy::Haproxy(h) = &self.proxy {
            h.retire(colour).await?;
        }
        let pids: Vec<Pid> = serde_json::from_slice(&bytes).unwrap_or_default();
        // The supervisor forwards SIGTERM to the component and exits after it.
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
                        p.component,
                        colour.as_str(),
                        p.pid,
                        self.stop_timeout
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for p in &pids {
            let _ = std::fs::remove_file(self.status_file(colour, &p.component));
        }
        std::fs::remove_file(&file)?;
        Ok(())
    }
}
