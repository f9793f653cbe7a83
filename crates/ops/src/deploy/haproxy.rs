//! Switching through HAProxy's runtime API, for `--proxy haproxy`: the deploy owns an HAProxy
//! with one backend per upstream (`api`, `web`), each holding a `blue` and a `green` server,
//! and moves traffic by changing their weights and states over the admin socket. It runs as a
//! daemon on this host (process runtime) or as a service of the Compose project (compose
//! runtime); only its configuration's addresses differ. Nothing is reloaded, so no client connection is ever closed by a switch
//! (an nginx reload closes its old workers' keep-alive connections, and a request racing that
//! close fails). A shift of weights is also how a canary takes its share of the traffic.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::component::{self, port, Colour};
use crate::private::{create_private_dir, recreate_private_file};

/// The cookie that keeps a browser on one colour while both take traffic.
pub const COOKIE: &str = "GWCOLOR";
/// The weight of a colour that takes all the traffic (HAProxy allows 0 to 256).
const FULL: u16 = 100;

/// The HAProxy a deploy owns: its configuration and admin socket live in `dir`.
pub struct Haproxy {
    dir: PathBuf,
    placement: Placement,
}

/// Where HAProxy runs, which decides how its configuration names things.
enum Placement {
    /// A daemon on this host, started by the deploy.
    Host {
        binary: PathBuf,
        /// Where the api's frontend listens on 127.0.0.1; the web app's listens one above.
        port: u16,
        /// The colours' loopback ports are computed from it as the runtime starts them.
        base_port: u16,
    },
    /// A service of a Compose project with `dir` mounted at `mount`. Each frontend listens on
    /// its component's own port, so nginx's upstream names HAProxy where it named the
    /// component; a colour is reached by service name (`api-blue:8000`) through Docker's DNS,
    /// re-resolved every second, since a colour's containers are recreated with new addresses.
    Service {
        mount: PathBuf,
        /// Each upstream's port.
        ports: Vec<(&'static str, u16)>,
    },
}
/// A server of a backend as `show stat` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub backend: String,
    pub colour: String,
    /// `UP`, `DOWN`, `MAINT`, or a transition such as `UP 1/2`.
    pub status: String,
    pub weight: u16,
}

impl Haproxy {
    /// A daemon on this host, with its files in `STATE/haproxy`.
    pub fn new(binary: PathBuf, state_dir: &Path, port: u16, base_port: u16) -> Self {
        Self {
            dir: state_dir.join("haproxy"),
            placement: Placement::Host {
                binary,
                port,
                base_port,
            },
        }
    }

    /// A service of a Compose project: `dir` on this host is mounted at `mount` in its
    /// container, and `ports` are the upstreams' ports.
    pub fn service(dir: PathBuf, mount: PathBuf, ports: Vec<(&'static str, u16)>) -> Self {
        Self {
            dir,
            placement: Placement::Service { mount, ports },
        }
    }

    /// The directory holding the configuration and the admin socket, on this host.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The admin socket, 0600 (its mode is set by HAProxy as it binds it).
    pub fn socket(&self) -> PathBuf {
        self.file("admin.sock")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.file("haproxy.pid")
    }

    /// The configuration: `live` (the active colour, if any) takes all the traffic, the other
    /// colour starts in maintenance. From then on only the runtime API changes the weights.
    fn config(&self, live: Option<Colour>) -> String {
        let (global, resolvers, default_server) = match &self.placement {
            Placement::Host { .. } => {
                let d = self.dir.display();
                (
                    format!(
                        "  daemon\n  pidfile {d}/haproxy.pid\n\
                         \x20 stats socket {d}/admin.sock mode 600 level admin\n"
                    ),
                    String::new(),
                    "",
                )
            }
            Placement::Service { mount, .. } => (
                format!(
                    "  stats socket {}/admin.sock mode 600 level admin\n",
                    mount.display()
                ),
                "resolvers docker\n  nameserver dns 127.0.0.11:53\n\
                 \x20 timeout resolve 1s\n  timeout retry 1s\n\
                 \x20 hold valid 2s\n  hold obsolete 2s\n  hold nx 2s\n\n"
                    .to_string(),
                // A colour without containers has no address yet: it waits in maintenance.
                " resolvers docker resolve-prefer ipv4 init-addr libc,none",
            ),
        };
        let mut c = format!(
            "# Written by `ghostworks deploy --proxy haproxy`; the deploy changes weights at run time.\n\
             global\n{global}\n\
             {resolvers}\
             defaults\n  mode http\n  option http-keep-alive\n\
             \x20 timeout connect 2s\n  timeout client 75s\n  timeout server 60s\n\
             \x20 timeout http-keep-alive 75s\n\
             \x20 # A connection refused by a stopping colour is retried on the other one.\n\
             \x20 retries 3\n  option redispatch 1\n\n"
        );
        for (i, (name, comp)) in component::upstreams().enumerate() {
            let bind = match &self.placement {
                Placement::Host { port, .. } => format!("127.0.0.1:{}", port + i as u16),
                Placement::Service { .. } => format!(":{}", self.service_port(name)),
            };
            c.push_str(&format!(
                "frontend {name}\n  bind {bind}\n  default_backend {name}\n\n\
                 backend {name}\n  balance roundrobin\n\
                 \x20 cookie {COOKIE} insert indirect nocache\n\
                 \x20 http-response set-header X-Ghostworks-Colour %[srv_name]\n\
                 \x20 option httpchk GET {}\n  http-check expect status 200\n\
                 \x20 default-server inter 500ms fall 2 rise 1{default_server}\n",
                comp.ready_path
            ));
            for colour in [Colour::Blue, Colour::Green] {
                let on = live == Some(colour);
                let address = match &self.placement {
                    Placement::Host { base_port, .. } => {
                        format!("127.0.0.1:{}", port(*base_port, colour, comp))
                    }
                    Placement::Service { .. } => {
                        format!(
                            "{}-{}:{}",
                            comp.name,
                            colour.as_str(),
                            self.service_port(name)
                        )
                    }
                };
                c.push_str(&format!(
                    "  server {0} {address} weight {1} cookie {0} check{2}\n",
                    colour.as_str(),
                    if on { FULL } else { 0 },
                    if on { "" } else { " disabled" }
                ));
            }
            c.push('\n');
        }
        c
    }

    /// An upstream's port in the Compose project (its component's own).
    fn service_port(&self, upstream: &str) -> u16 {
        match &self.placement {
            Placement::Service { ports, .. } => ports
                .iter()
                .find(|(n, _)| *n == upstream)
                .map_or(0, |(_, p)| *p),
            Placement::Host { .. } => 0,
        }
    }

    /// Whether the HAProxy of this directory answers on its socket.
    pub async fn answers(&self) -> bool {
        self.command("show info").await.is_ok()
    }

    /// Writes the configuration for `live` as `haproxy.cfg.new` (0600, like everything of the
    /// state directory that names its layout), has `check` accept it (HAProxy's `-c`, given
    /// the file's path as HAProxy sees it), then renames it over `haproxy.cfg`.
    pub async fn write_config<F, Fut>(&self, live: Option<Colour>, check: F) -> Result<PathBuf>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        create_private_dir(&self.dir)?;
        let candidate = self.file("haproxy.cfg.new");
        std::io::Write::write_all(
            &mut recreate_private_file(&candidate)?,
            self.config(live).as_bytes(),
        )?;
        let seen = match &self.placement {
            Placement::Host { .. } => candidate.clone(),
            Placement::Service { mount, .. } => mount.join("haproxy.cfg.new"),
        };
        check(seen).await.with_context(|| {
            format!(
                "haproxy -c refused the configuration {}",
                candidate.display()
            )
        })?;
        let config = self.file("haproxy.cfg");
        std::fs::rename(&candidate, &config)?;
        Ok(config)
    }

    /// Waits until HAProxy answers on its socket, `timeout` after its start at most.
    pub async fn wait_answering(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.answers().await {
            if Instant::now() > deadline {
                bail!(
                    "haproxy does not answer on {} {timeout:?} after its start",
                    self.socket().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts HAProxy on this host unless it runs, its configuration checked with `haproxy -c`
    /// before it replaces the previous one.
    pub async fn ensure_running(&self, live: Option<Colour>) -> Result<()> {
        if self.answers().await {
            return Ok(());
        }
        let Placement::Host { binary, .. } = &self.placement else {
            bail!("this HAProxy is a Compose service: the compose runtime starts it");
        };
        // Neither run gets the deployer's environment (the schema owner's URL, cloud keys):
        // the configuration names everything HAProxy needs.
        let config = self
            .write_config(live, |candidate| async move {
                let check = Command::new(binary)
                    .env_clear()
                    .args(["-c", "-q", "-f"])
                    .arg(&candidate)
                    .output()
                    .with_context(|| {
                        format!("--haproxy-binary: cannot run {}", binary.display())
                    })?;
                if !check.status.success() {
                    bail!("{}", String::from_utf8_lossy(&check.stderr).trim());
                }
                Ok(())
            })
            .await?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.file("haproxy.log"))?;
        // `daemon`: the started process forks the proxy and exits; the proxy leads its own
        // process group, so a Ctrl-C aimed at the deploy does not reach it.
        let started = Command::new(binary)
            .env_clear()
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .status()
            .context("cannot start haproxy")?;
        if !started.success() {
            bail!(
                "haproxy did not start ({started}); see {}",
                self.file("haproxy.log").display()
            );
        }
        self.wait_answering(Duration::from_secs(5)).await
    }

    /// One command on the admin socket; its answer. HAProxy answers the `set` commands with
    /// an empty line, and anything else is its error.
    pub async fn command(&self, cmd: &str) -> Result<String> {
        let mut s = tokio::net::UnixStream::connect(self.socket())
            .await
            .with_context(|| format!("haproxy's socket {}", self.socket().display()))?;
        s.write_all(format!("{cmd}\n").as_bytes()).await?;
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut answer))
            .await
            .with_context(|| format!("haproxy did not answer `{cmd}` within 5 s"))??;
        Ok(answer)
    }

    async fn set(&self, cmd: &str) -> Result<()> {
        let answer = self.command(cmd).await?;
        if !answer.trim().is_empty() {
            bail!("haproxy refused `{cmd}`: {}", answer.trim());
        }
        Ok(())
    }

    /// Every backend's servers.
    pub async fn servers(&self) -> Result<Vec<ServerState>> {
        let csv = self.command("show stat").await?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let at = |name: &str| header.iter().position(|h| *h == name);
        let (Some(px), Some(sv), Some(st), Some(w)) =
            (at("pxname"), at("svname"), at("status"), at("weight"))
        else {
            bail!("haproxy's `show stat` has no pxname, svname, status and weight columns");
        };
        Ok(lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > px.max(sv).max(st).max(w))
            .filter(|f| f[sv] == "blue" || f[sv] == "green")
            .map(|f| ServerState {
                backend: f[px].to_string(),
                colour: f[sv].to_string(),
                status: f[st].to_string(),
                weight: f[w].parse().unwrap_or(0),
            })
            .collect())
    }

    /// Readies `colour`'s servers without traffic: weight 0 first, so that leaving
    /// maintenance (which HAProxy treats as up until the first check) sends them nothing;
    /// health checks run from then on.
    pub async fn prepare(&self, colour: Colour) -> Result<()> {
        for (name, _) in component::upstreams() {
            let server = format!("{name}/{}", colour.as_str());
            self.set(&format!("set server {server} weight 0")).await?;
            self.set(&format!("set server {server} state ready"))
                .await?;
        }
        Ok(())
    }

    /// Waits until HAProxy's own checks see every server of `colour` up: only then may it
    /// take traffic.
    async fn wait_up(&self, colour: Colour, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let servers = self.servers().await?;
            let down: Vec<_> = servers
                .iter()
                .filter(|s| s.colour == colour.as_str() && s.status != "UP")
                .collect();
            if down.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "haproxy's health checks do not see {} up within {timeout:?}: {}",
                    colour.as_str(),
                    down.iter()
                        .map(|s| format!("{}/{} {}", s.backend, s.colour, s.status))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Gives `to` `percent` of the new sessions and `from` the rest (browsers holding the
    /// cookie of a colour that still takes traffic stay on it). The colour gaining traffic is
    /// raised first, so no moment has both at 0.
    pub async fn shift(&self, from: Colour, to: Colour, percent: u8) -> Result<()> {
        self.wait_up(to, Duration::from_secs(10)).await?;
        let gain = u16::from(percent.min(100)) * FULL / 100;
        for (name, _) in component::upstreams() {
            self.set(&format!("set server {name}/{} weight {gain}", to.as_str()))
                .await?;
            self.set(&format!(
                "set server {name}/{} weight {}",
                from.as_str(),
                FULL - gain
            ))
            .await?;
        }
        Ok(())
    }

    /// Takes `colour` out before it stops: maintenance sends its cookie holders to the other
    /// colour, while its requests in flight finish.
    pub async fn retire(&self, colour: Colour) -> Result<()> {
        if !self.answers().await {
            return Ok(());
        }
        for (name, _) in component::upstreams() {
            self.set(&format!(
                "set server {name}/{} state maint",
                colour.as_str()
            ))
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_colour_takes_the_traffic_and_the_other_waits_in_maintenance() {
        let h = Haproxy::new("haproxy".into(), Path::new("/s"), 8090, 8100);
        let c = h.config(Some(Colour::Green));
        assert!(c.contains("stats socket /s/haproxy/admin.sock mode 600 level admin"));
        assert!(c.contains("bind 127.0.0.1:8090\n  default_backend api"));
        assert!(c.contains("bind 127.0.0.1:8091\n  default_backend web"));
        assert!(c.contains("server blue 127.0.0.1:8100 weight 0 cookie blue check disabled\n"));
        assert!(c.contains("server green 127.0.0.1:8101 weight 100 cookie green check\n"));
        assert!(c.contains("server green 127.0.0.1:8121 weight 100 cookie green check\n"));
        assert!(c.contains("option httpchk GET /health/ready"));
        assert!(c.contains("  daemon\n  pidfile /s/haproxy/haproxy.pid\n"));
        assert!(!c.contains("resolvers"));
    }

    #[test]
    fn a_compose_service_listens_on_the_components_ports_and_finds_colours_by_name() {
        let h = Haproxy::service(
            "/var/lib/gw/haproxy".into(),
            "/etc/haproxy/ghostworks".into(),
            vec![("api", 8000), ("web", 3000)],
        );
        let c = h.config(Some(Colour::Blue));
        // The socket as the container sees it; this host reaches it in the mounted directory.
        assert!(c.contains("stats socket /etc/haproxy/ghostworks/admin.sock mode 600 level admin"));
        assert_eq!(h.socket(), Path::new("/var/lib/gw/haproxy/admin.sock"));
        // In the foreground, the container's main process: no daemon, no pid file.
        assert!(!c.contains("daemon") && !c.contains("pidfile"));
        assert!(c.contains("bind :8000\n  default_backend api"));
        assert!(c.contains("bind :3000\n  default_backend web"));
        assert!(c.contains("server blue api-blue:8000 weight 100 cookie blue check\n"));
        assert!(c.contains("server green web-green:3000 weight 0 cookie green check disabled\n"));
        assert!(c.contains("nameserver dns 127.0.0.11:53"));
        assert!(c.contains("resolvers docker resolve-prefer ipv4 init-addr libc,none"));
    }
}
