//! Real services for tests: a private PostgreSQL 15 and Redis on free loopback ports, started
//! once per test process (or taken from `TEST_DATABASE_URL` / `TEST_REDIS_URL`), and a fresh
//! database per test, cloned from a migrated template in tens of milliseconds.
//!
//! A missing server binary fails the test with the package to install; nothing is skipped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sqlx::{Connection, Executor, PgConnection};

/// The login role tests connect as: a member of `ghostworks_app`, owning nothing.
pub const APP_LOGIN: &str = "gw_test_api";

pub struct Services {
    /// Superuser URL of the `postgres` database (schema owner for tests).
    admin_base: String,
    redis_url: String,
    template: String,
}

static SERVICES: OnceLock<Services> = OnceLock::new();

/// The shared services of this test process, started on first use.
pub fn services() -> &'static Services {
    // Started on a plain thread: callers are usually inside an async runtime already.
    SERVICES.get_or_init(|| {
        std::thread::spawn(start)
            .join()
            .expect("service start-up thread")
            .unwrap_or_else(|e| panic!("test services could not start: {e:#}"))
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free loopback port")
}

fn pg_bin(name: &str) -> Result<PathBuf> {
    let dir = std::env::var("PG_BIN_DIR").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let p = Path::new(&dir).join(name);
    if p.exists() {
        Ok(p)
    } else {
        bail!("{} not found: install PostgreSQL 15 server binaries (apt-get install postgresql-15) or set PG_BIN_DIR, or point TEST_DATABASE_URL at a server", p.display())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// PostgreSQL refuses to run as root; run its tools as the `postgres` user then.
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
    let out = c.output().with_context(|| format!("{what}: could not run"))?;
    if !out.status.success() {
        bail!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn start_postgres(dir: &Path) -> Result<String> {
    let data = dir.join("pg");
    std::fs::create_dir_all(&data)?;
    if is_root() {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(dir);
                c
            },
            "chown of the test data directory",
        )?;
    }
    let mut initdb = pg_command(&pg_bin("initdb")?);
    initdb.args(["-D"]).arg(&data).args(["-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C.UTF-8"]);
    run(initdb, "initdb")?;
    let port = free_port();
    let mut ctl = pg_command(&pg_bin("pg_ctl")?);
    ctl.args(["-D"]).arg(&data).args(["-l"]).arg(dir.join("pg.log")).args(["-w", "-t", "30", "-o"]).arg(format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
        dir.display()
    )).arg("start").stdout(Stdio::null());
    run(ctl, "pg_ctl start")?;
    Ok(format!("postgres://postgres@127.0.0.1:{port}/postgres"))
}

fn start_redis(dir: &Path) -> Result<String> {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .context("redis-server not found: install it (apt-get install redis-server) or set TEST_REDIS_URL")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("redis-server did not start listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    watchdog(&format!("kill {}", child.id()), None);
    Ok(format!("redis://127.0.0.1:{port}/0"))
}

/// Runs `cleanup` once this test process has exited (tests have no global teardown).
fn watchdog(cleanup: &str, remove: Option<&Path>) {
    let rm = remove.map(|p| format!("; rm -rf '{}'", p.display())).unwrap_or_default();
    let script = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; {cleanup} >/dev/null 2>&1{rm}", std::process::id());
    let _ = Command::new("sh").args(["-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
}

fn start() -> Result<Services> {
    let dir = tempfile::Builder::new().prefix("ghostworks-test-").tempdir()?.keep();
    let admin_base = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            let url = start_postgres(&dir)?;
            let stop = format!("{} -D {} -m immediate stop", pg_bin("pg_ctl")?.display(), dir.join("pg").display());
            let stop = if is_root() { format!("runuser -u postgres -- {stop}") } else { stop };
            watchdog(&stop, Some(&dir));
            url
        }
    };
    let redis_url = match std::env::var("TEST_REDIS_URL") {
        Ok(url) => url,
        Err(_) => start_redis(&dir)?,
    };
    let template = format!("gw_template_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(prepare_template(&admin_base, &template))?;
    Ok(Services { admin_base, redis_url, template })
}

async fn prepare_template(admin_base: &str, template: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin_base).await.context("connecting to the test PostgreSQL")?;
    conn.execute(format!("CREATE DATABASE {template}").as_str()).await?;
    conn.close().await?;
    let url = with_database(admin_base, template);
    let pool = ghostworks_db::connect(&url, 2, "testkit").await?;
    ghostworks_db::migrate(&pool).await.context("migrating the template database")?;
    // Roles are cluster-wide; another test process may have created it already.
    pool.execute(
        format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_LOGIN}') THEN \
             CREATE ROLE {APP_LOGIN} LOGIN PASSWORD '{APP_LOGIN}' IN ROLE {}; END IF; END $$",
            ghostworks_db::APP_ROLE
        )
        .as_str(),
    )
    .await
    .or_else(|e| if e.to_string().contains("already exists") { Ok(Default::default()) } else { Err(e) })?;
    pool.close().await;
    Ok(())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL has a path");
    let query = url.split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
    format!("{base}/{db}{query}")
}

fn with_user(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL has a scheme");
    let host = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    format!("{scheme}://{user}:{password}@{host}")
}

/// A database of one test, migrated, with its two connection URLs.
pub struct TestDb {
    pub name: String,
    /// As the schema owner (superuser): for direct checks and set-up that bypass the API.
    pub admin_url: String,
    /// As the API's login role, which row-level security applies to.
    pub app_url: String,
}

impl Services {
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    pub async fn database(&self) -> Result<TestDb> {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&self.admin_base).await?;
        // Concurrent clones of one template can collide briefly; retry.
        let mut attempt = 0;
        loop {
            match conn.execute(format!("CREATE DATABASE {name} TEMPLATE {}", self.template).as_str()).await {
                Ok(_) => break,
                Err(e) if attempt < 20 && e.to_string().contains("being accessed by other users") => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        conn.close().await?;
        let admin_url = with_database(&self.admin_base, &name);
        let app_url = with_user(&admin_url, APP_LOGIN, APP_LOGIN);
        Ok(TestDb { name, admin_url, app_url })
    }
}

/// A random suffix for Redis key prefixes, e-mail addresses and slugs.
pub fn unique(prefix: &str) -> String {
    use rand::Rng;
    format!("{prefix}{:08x}", rand::thread_rng().gen::<u32>())
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_rewritten() {
        let u = "postgres://postgres@127.0.0.1:5/postgres";
        assert_eq!(super::with_database(u, "x"), "postgres://postgres@127.0.0.1:5/x");
        assert_eq!(super::with_user("postgres://a:b@h:5/x", "u", "p"), "postgres://u:p@h:5/x");
    }
}
