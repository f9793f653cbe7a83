//! A highly available PostgreSQL cluster of real processes on free loopback ports: one etcd
//! (production runs three, so that losing one machine keeps a quorum), three Patroni nodes in
//! synchronous mode (`synchronous_mode_strict`, `use_pg_rewind`) and HAProxy sending a write
//! port to the current primary and a read port to the standbys, by Patroni's REST checks.
//!
//! Fault drills use [`Cluster::kill_postgres`], [`Cluster::kill_node`], [`Cluster::start_node`]
//! and [`Cluster::pause_etcd`]. Everything is stopped and its files removed when the cluster is
//! dropped, or when the process exits however it exits.

mod config;
mod process;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ghostworks_db::bootstrap;
use ghostworks_devstack::{after_exit, free_port, pg_bin};
use serde_json::Value;

use config::{Passwords, Ports};
pub use config::{LOOP_WAIT, RETRY_TIMEOUT, TTL};
use process::{rest_get, run_as_postgres, tail, wait_until, Process};

use crate::{with_database, with_user, TestDb, APP_LOGIN, WORKER_LOGIN};

/// The database the cluster's tests migrate and use.
pub const DATABASE: &str = "ghostworks";

/// One Patroni node: its PostgreSQL and REST ports and, while it runs, its Patroni process.
pub struct Node {
    pub name: String,
    pub rest_port: u16,
    pub pg_port: u16,
    dir: PathBuf,
    patroni: Option<Process>,
}

/// A node's role as Patroni's `/cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    SyncStandby,
    Replica,
    /// Anything else Patroni reports (e.g. `standby_leader`), verbatim.
    Other(String),
}

/// One member of Patroni's `/cluster` answer.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub role: Role,
    /// `running`, `starting`, `stopped`, ... verbatim.
    pub state: String,
    /// Replication lag in bytes (standbys only).
    pub lag: Option<u64>,
}

pub struct Cluster {
    dir: PathBuf,
    ports: Ports,
    passwords: Passwords,
    etcd: Process,
    haproxy: Process,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// Starts etcd, three Patroni nodes and HAProxy, waits until there is a primary with a
    /// synchronous standby behind HAProxy's write port, and creates [`DATABASE`]. Blocking:
    /// call it from a plain thread or `spawn_blocking`. A cluster whose first bootstrap fails
    /// (seen: the first node's PostgreSQL not starting) is removed and started once more, in a
    /// new directory on new ports; the first failure is printed.
    pub fn start() -> Result<Cluster> {
        Self::start_once().or_else(|first| {
            eprintln!("the cluster did not start, starting a new one: {first:#}");
            Self::start_once()
        })
    }

    fn start_once() -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("ghostworks-cluster-")
            .tempdir()?
            .keep();
        let ports = Ports {
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            nodes: (0..3)
                .map(|_| Ok((free_port()?, free_port()?)))
                .collect::<Result<_>>()?,
            write: free_port()?,
            read: free_port()?,
        };
        let passwords = Passwords {
            superuser: crate::unique("su"),
            replication: crate::unique("repl"),
            rewind: crate::unique("rw"),
        };
        after_exit(&cleanup_script(&dir));
        // Patroni runs as postgres and must reach its node's directory.
        process::give_to_postgres(&dir)?;
        let etcd = start_etcd(&dir, &ports)?;
        let haproxy = start_haproxy(&dir, &ports)?;
        let nodes = ports
            .nodes
            .iter()
            .enumerate()
            .map(|(i, &(rest_port, pg_port))| Node {
                name: format!("node{i}"),
                rest_port,
                pg_port,
                dir: dir.join(format!("node{i}")),
                patroni: None,
            })
            .collect();
        let mut cluster = Cluster {
            dir,
            ports,
            passwords,
            etcd,
            haproxy,
            nodes,
        };
        // The first node bootstraps alone, so it is the one that runs initdb.
        cluster.start_node(0)?;
        cluster.wait_for_primary(Duration::from_secs(60), None)?;
        for i in 1..3 {
            cluster.start_node(i)?;
        }
        cluster.wait_for_roles(Duration::from_secs(90))?;
        cluster.create_database(Duration::from_secs(20))?;
        Ok(cluster)
    }

    /// The superuser's URL of `database` through HAProxy's write port (the current primary).
    pub fn write_url(&self, database: &str) -> String {
        self.url(self.ports.write, database)
    }

    /// The superuser's URL of `database` through HAProxy's read port (the standbys).
    pub fn read_url(&self, database: &str) -> String {
        self.url(self.ports.read, database)
    }

    /// The superuser's URL of `database` on node `i` directly, bypassing HAProxy.
    pub fn node_url(&self, i: usize, database: &str) -> String {
        self.url(self.nodes[i].pg_port, database)
    }

    fn url(&self, port: u16, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{port}/{database}",
            self.passwords.superuser
        )
    }

    /// The node whose Patroni says it is the primary (200 on `/primary`), if one does.
    pub fn primary(&self) -> Option<usize> {
        (0..self.nodes.len())
            .find(|&i| matches!(rest_get(self.nodes[i].rest_port, "/primary"), Ok((200, _))))
    }

    /// Waits for a primary other than `except`; fails naming the nodes' log tails.
    pub fn wait_for_primary(&self, timeout: Duration, except: Option<usize>) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.primary() {
                Some(i) if Some(i) != except => return Ok(i),
                _ if Instant::now() > deadline => {
                    bail!("no primary within {timeout:?}\n{}", self.logs())
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The members as Patroni's `/cluster` reports them, asked of the first node that answers.
    pub fn members(&self) -> Result<Vec<Member>> {
        let body = self
            .nodes
            .iter()
            .find_map(|n| match rest_get(n.rest_port, "/cluster") {
                Ok((200, body)) => Some(body),
                _ => None,
            })
            .context("no Patroni REST API answers /cluster")?;
        let v: Value = serde_json::from_str(&body).context("Patroni's /cluster answer")?;
        Ok(v["members"]
            .as_array()
            .context("/cluster has no members")?
            .iter()
            .map(|m| Member {
                name: m["name"].as_str().unwrap_or_default().to_string(),
                role: match m["role"].as_str().unwrap_or_default() {
                    "leader" => Role::Leader,
                    "sync_standby" => Role::SyncStandby,
                    "replica" => Role::Replica,
                    other => Role::Other(other.to_string()),
                },
                state: m["state"].as_str().unwrap_or_default().to_string(),
                lag: m["lag"].as_u64(),
            })
            .collect())
    }

    /// Waits until every node runs: one leader, one synchronous standby, one replica.
    pub fn wait_for_roles(&self, timeout: Duration) -> Result<()> {
        let healthy = || {
            self.members().is_ok_and(|m| {
                let count = |r: Role| m.iter().filter(|x| x.role == r).count();
                m.len() == 3
                    && m.iter()
                        .all(|x| x.state == "running" || x.state == "streaming")
                    && count(Role::Leader) == 1
                    && count(Role::SyncStandby) == 1
            })
        };
        let deadline = Instant::now() + timeout;
        while !healthy() {
            if Instant::now() > deadline {
                bail!(
                    "the cluster did not reach a leader, a synchronous standby and a replica within {timeout:?}: {:?}\n{}",
                    self.members().ok(),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Kills the primary's PostgreSQL (the postmaster) with SIGKILL, leaving its Patroni up.
    pub fn kill_postgres(&self, i: usize) -> Result<()> {
        let pid = self.postmaster_pid(i)?;
        process::kill("-KILL", pid)
    }

    /// Kills node `i` whole, as a lost machine: its Patroni and its PostgreSQL, with SIGKILL.
    pub fn kill_node(&mut self, i: usize) -> Result<()> {
        let postmaster = self.postmaster_pid(i).ok();
        if let Some(mut p) = self.nodes[i].patroni.take() {
            p.kill()?;
            std::fs::remove_file(self.nodes[i].dir.join("patroni.pid"))?;
        }
        if let Some(pid) = postmaster {
            // Already gone when Patroni was mid-restart of it.
            let _ = process::kill("-KILL", pid);
        }
        Ok(())
    }

    fn postmaster_pid(&self, i: usize) -> Result<u32> {
        let file = self.nodes[i].dir.join("data/postmaster.pid");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("{} (is node{i}'s PostgreSQL running?)", file.display()))?;
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("no PID in {}", file.display()))
    }

    /// Starts node `i`'s Patroni (again): a node that was a primary rejoins as a standby.
    pub fn start_node(&mut self, i: usize) -> Result<()> {
        let node = &self.nodes[i];
        std::fs::create_dir_all(&node.dir)?;
        let config = node.dir.join("patroni.yml");
        let text = config::patroni(
            &node.name,
            &node.dir,
            pg_bin("postgres")?.parent().expect("a bin directory"),
            node.rest_port,
            node.pg_port,
            self.ports.etcd_client,
            &self.passwords,
        );
        process::write_private(&config, &text)?;
        process::give_to_postgres(&node.dir)?;
        let patroni = process::find("patroni", "patroni")?;
        let mut cmd = run_as_postgres(&patroni)?;
        cmd.arg(&config);
        let p = Process::spawn(
            &format!("patroni {}", node.name),
            cmd,
            &node.dir.join("patroni.log"),
        )?;
        std::fs::write(node.dir.join("patroni.pid"), p.id().to_string())?;
        self.nodes[i].patroni = Some(p);
        let rest = self.nodes[i].rest_port;
        wait_until(
            &format!("patroni {}'s REST API", self.nodes[i].name),
            &self.nodes[i].dir.join("patroni.log"),
            Duration::from_secs(30),
            || rest_get(rest, "/liveness").is_ok(),
        )
    }

    /// Freezes etcd (SIGSTOP): every Patroni loses the consensus store at once, as a primary
    /// cut off from it would.
    pub fn pause_etcd(&self) -> Result<()> {
        process::kill("-STOP", self.etcd.id())
    }

    pub fn resume_etcd(&self) -> Result<()> {
        process::kill("-CONT", self.etcd.id())
    }

    /// Creates [`DATABASE`] through HAProxy's write port, retrying until HAProxy's health
    /// checks have found the primary.
    fn create_database(&self, timeout: Duration) -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let deadline = Instant::now() + timeout;
        loop {
            match rt.block_on(bootstrap::create_database(
                &self.write_url("postgres"),
                DATABASE,
            )) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => bail!(
                    "creating {DATABASE} through HAProxy's write port: {e}\n{}",
                    tail(self.haproxy.log())
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Creates the API's and the worker's login roles in the migrated [`DATABASE`] and returns
    /// its URLs through HAProxy's write port (run `ghostworks migrate` first).
    pub async fn logins(&self) -> Result<TestDb> {
        let admin_url = self.write_url(DATABASE);
        let pool = ghostworks_db::connect(&admin_url, 2, "testkit").await?;
        let logins = bootstrap::Logins {
            app: APP_LOGIN,
            worker: Some(WORKER_LOGIN),
        };
        bootstrap::create_logins(&pool, &logins).await?;
        pool.close().await;
        Ok(TestDb {
            name: DATABASE.to_string(),
            app_url: with_user(&admin_url, APP_LOGIN, APP_LOGIN),
            worker_url: with_user(&admin_url, WORKER_LOGIN, WORKER_LOGIN),
            admin_url: with_database(&admin_url, DATABASE),
        })
    }

    /// Node `i`'s Patroni log so far (Patroni's and PostgreSQL's messages), e.g. to tell
    /// whether a rejoin ran pg_rewind.
    pub fn node_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.nodes[i].dir.join("patroni.log")).unwrap_or_default()
    }

    /// The last lines of every component's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut logs = vec![tail(self.etcd.log()), tail(self.haproxy.log())];
        logs.extend(self.nodes.iter().map(|n| tail(&n.dir.join("patroni.log"))));
        logs.join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args(["-c", &cleanup_script(&self.dir)])
            .status();
    }
}

/// Stops whatever of the cluster under `dir` still runs (by the PIDs it recorded) and removes
/// its files. Patroni is killed first so that it does not restart the PostgreSQL stopped next.
fn cleanup_script(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "for f in '{d}'/node*/patroni.pid '{d}'/*.pid; do [ -f \"$f\" ] && kill -KILL $(cat \"$f\"); done 2>/dev/null; \
         for f in '{d}'/node*/data/postmaster.pid; do [ -f \"$f\" ] && kill -KILL $(head -1 \"$f\"); done 2>/dev/null; \
         sleep 0.5; rm -rf '{d}'"
    )
}

fn start_etcd(dir: &Path, ports: &Ports) -> Result<Process> {
    let etcd = process::find("etcd", "etcd-server")?;
    let (client, peer) = (
        format!("http://127.0.0.1:{}", ports.etcd_client),
        format!("http://127.0.0.1:{}", ports.etcd_peer),
    );
    let mut cmd = std::process::Command::new(etcd);
    cmd.args(["--name", "etcd0", "--data-dir"])
        .arg(dir.join("etcd"))
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", &format!("etcd0={peer}")]);
    let p = Process::spawn("etcd", cmd, &dir.join("etcd.log"))?;
    std::fs::write(dir.join("etcd.pid"), p.id().to_string())?;
    let port = ports.etcd_client;
    wait_until(
        "etcd",
        p.log(),
        Duration::from_secs(20),
        || matches!(rest_get(port, "/health"), Ok((200, body)) if body.contains("true")),
    )?;
    Ok(p)
}

fn start_haproxy(dir: &Path, ports: &Ports) -> Result<Process> {
    let haproxy = process::find("haproxy", "haproxy")?;
    let config = dir.join("haproxy.cfg");
    process::write_private(&config, &config::haproxy(ports))?;
    let mut cmd = std::process::Command::new(haproxy);
    cmd.arg("-db").arg("-f").arg(&config);
    let p = Process::spawn("haproxy", cmd, &dir.join("haproxy.log"))?;
    std::fs::write(dir.join("haproxy.pid"), p.id().to_string())?;
    let port = ports.write;
    wait_until("haproxy", p.log(), Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })?;
    Ok(p)
}
