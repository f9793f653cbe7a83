//! Private PostgreSQL 15 and Redis servers on free loopback ports, run from the installed
//! binaries, and an in-process SMTP sink ([`smtp`]): what `ghostworks dev` and the test
//! harness use when no server is configured. A missing binary is reported with the package
//! that provides it.

pub mod smtp;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether this process runs as root (PostgreSQL's tools then run as `postgres`).
pub fn is_root() -> bool {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

/// Where the PostgreSQL server binaries are (`PG_BIN_DIR`, default Debian's location).
pub fn pg_bin(name: &str) -> Result<PathBuf> {
    let dir = std::env::var("PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let p = Path::new(&dir).join(name);
    if p.exists() {
        Ok(p)
    } else {
        bail!("{} not found: install the PostgreSQL 15 server (apt-get install postgresql-15) or set PG_BIN_DIR to its bin directory", p.display())
    }
}

/// PostgreSQL refuses to run as root; its tools then run as the `postgres` user.
fn pg_command(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(mut c: Command, what: &str) -> Result<()> {
    let out = c
        .output()
        .with_context(|| format!("{what}: could not run"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A running PostgreSQL cluster in `dir`, reachable as the trusted superuser `postgres`.
pub struct Postgres {
    dir: PathBuf,
    pub port: u16,
    durable: bool,
}

impl Postgres {
    /// Initialises `dir` on first use, then starts the server. `durable` keeps fsync on (dev
    /// data survives a crash); tests turn it off for speed.
    pub fn start(dir: &Path, durable: bool) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(dir);
            run(c, "chown of the PostgreSQL directory")?;
        }
        let data = dir.join("data");
        if !data.join("PG_VERSION").exists() {
            let mut initdb = pg_command(&pg_bin("initdb")?);
            initdb.arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-instructions",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]);
            if !durable {
                initdb.arg("--no-sync");
            }
            run(initdb, "initdb")?;
        }
        let pg = Self {
            dir: dir.to_path_buf(),
            port: free_port()?,
            durable,
        };
        pg.start_again()?;
        Ok(pg)
    }

    /// A hot standby of the (non-durable) server on `primary_port`: a copy taken with
    /// `pg_basebackup -R` (which writes the streaming replication settings) into `dir`, started
    /// on a free port. It follows the primary's WAL and serves read-only queries.
    pub fn start_standby(primary_port: u16, dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(dir);
            run(c, "chown of the standby's directory")?;
        }
        let mut backup = pg_command(&pg_bin("pg_basebackup")?);
        backup
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &primary_port.to_string()])
            .args([
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ]);
        run(backup, "pg_basebackup")?;
        let pg = Self {
            dir: dir.to_path_buf(),
            port: free_port()?,
            durable: false,
        };
        pg.start_again()?;
        Ok(pg)
    }

    /// Starts the server of this cluster (after [`Postgres::stop`]) on its port, waiting
    /// until it accepts connections.
    pub fn start_again(&self) -> Result<()> {
        let fast = if self.durable {
            ""
        } else {
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        };
        let mut ctl = pg_command(&pg_bin("pg_ctl")?);
        ctl.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o"]);
        ctl.arg(format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300{fast}",
            self.port,
            self.dir.display()
        ));
        ctl.arg("start").stdout(Stdio::null());
        run(ctl, "pg_ctl start")
            .with_context(|| format!("see {}", self.dir.join("postgres.log").display()))
    }

    /// The superuser URL of `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The shell command that stops this server (for watchdogs).
    pub fn stop_command(&self) -> Result<String> {
        let stop = format!(
            "{} -D {} -m fast stop",
            pg_bin("pg_ctl")?.display(),
            self.dir.join("data").display()
        );
        Ok(if is_root() {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        })
    }

    pub fn stop(&self) -> Result<()> {
        let mut c = pg_command(&pg_bin("pg_ctl")?);
        c.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null());
        run(c, "pg_ctl stop")
    }
}

/// A running redis-server child process.
pub struct Redis {
    pub child: Child,
    pub port: u16,
    dir: PathBuf,
    durable: bool,
}

impl Redis {
    /// Starts redis-server with its files in `dir`; `durable` turns on the append-only file.
    pub fn start(dir: &Path, durable: bool) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = free_port()?;
        Ok(Self {
            child: Self::spawn(dir, port, durable)?,
            port,
            dir: dir.to_path_buf(),
            durable,
        })
    }

    fn spawn(dir: &Path, port: u16, durable: bool) -> Result<Child> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", if durable { "yes" } else { "no" }])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .context("redis-server not found: install it (apt-get install redis-server) or set REDIS_URL")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not start listening on port {port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(child)
    }

    /// Kills the server, as abruptly as a crash.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts the server again (after [`Redis::kill`]) on its port.
    pub fn start_again(&mut self) -> Result<()> {
        self.child = Self::spawn(&self.dir, self.port, self.durable)?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

/// Runs `cleanup` (a shell command) once the current process has exited, however it exits.
pub fn after_exit(cleanup: &str) {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; {cleanup} >/dev/null 2>&1",
        std::process::id()
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}
