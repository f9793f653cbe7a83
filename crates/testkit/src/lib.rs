//! Real services for tests: a private PostgreSQL 15 and Redis on free loopback ports, started
//! once per test process (or taken from `TEST_DATABASE_URL` / `TEST_REDIS_URL`), an SMTP sink,
//! and a fresh database per test, cloned from a migrated template in tens of milliseconds.
//!
//! A missing server binary fails the test with the package to install; nothing is skipped.

pub mod archiving;
pub mod cluster;
pub mod load;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use ghostworks_db::bootstrap;
use ghostworks_devstack::after_exit;
pub use ghostworks_devstack::smtp::{Message, Sink};
pub use ghostworks_devstack::{Postgres, Redis};
use sqlx::{Connection, Executor, PgConnection};

/// The login role tests connect as: a member of `ghostworks_app`, owning nothing.
pub const APP_LOGIN: &str = "gw_test_api";
/// The worker's login role in tests: a member of `ghostworks_worker`.
pub const WORKER_LOGIN: &str = "gw_test_worker";

pub struct Services {
    /// Superuser URL of the `postgres` database (schema owner for tests).
    admin_base: String,
    redis_url: String,
    template: String,
    smtp: Sink,
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

fn start() -> Result<Services> {
    let dir = tempfile::Builder::new()
        .prefix("ghostworks-test-")
        .tempdir()?
        .keep();
    let admin_base = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            let pg = Postgres::start(&dir.join("pg"), false)?;
            after_exit(&format!(
                "{}; rm -rf '{}'",
                pg.stop_command()?,
                dir.display()
            ));
            pg.url("postgres")
        }
    };
    let redis_url = match std::env::var("TEST_REDIS_URL") {
        Ok(url) => url,
        Err(_) => {
            let redis = Redis::start(&dir.join("redis"), false)?;
            after_exit(&format!("kill {}", redis.child.id()));
            redis.url()
        }
    };
    Services::on(admin_base, redis_url)
}

/// Services on servers of the caller's own, which it may stop and start again (fault
/// drills); the shared [`services`] must never be stopped. Both servers are stopped and
/// their files removed when the process exits.
pub struct Private {
    /// Kept for the rest of the process, like the shared ones.
    pub services: &'static Services,
    pub postgres: Postgres,
    pub redis: Redis,
}

/// Starts a private PostgreSQL and Redis (from a plain thread, like [`services`]).
pub fn private() -> Result<Private> {
    std::thread::spawn(|| {
        let dir = tempfile::Builder::new()
            .prefix("ghostworks-private-")
            .tempdir()?
            .keep();
        let postgres = Postgres::start(&dir.join("pg"), false)?;
        let redis = Redis::start(&dir.join("redis"), false)?;
        // By port: the drill may have replaced the Redis process it started.
        after_exit(&format!(
            "redis-cli -p {} shutdown nosave; {}; rm -rf '{}'",
            redis.port,
            postgres.stop_command()?,
            dir.display()
        ));
        let services = Box::leak(Box::new(Services::on(
            postgres.url("postgres"),
            redis.url(),
        )?));
        Ok(Private {
            services,
            postgres,
            redis,
        })
    })
    .join()
    .expect("private service start-up thread")
}

impl Private {
    /// A hot standby of the private PostgreSQL, streaming from it, on a free port (stopped
    /// and removed when the process exits). Databases created on the primary afterwards
    /// appear on it too.
    pub fn standby(&self) -> Result<Postgres> {
        let dir = tempfile::Builder::new()
            .prefix("ghostworks-standby-")
            .tempdir()?
            .keep();
        let standby = Postgres::start_standby(self.postgres.port, &dir.join("pg"))?;
        after_exit(&format!(
            "{}; rm -rf '{}'",
            standby.stop_command()?,
            dir.display()
        ));
        Ok(standby)
    }
}

impl Services {
    /// Prepares the template database on `admin_base` and starts an SMTP sink.
    fn on(admin_base: String, redis_url: String) -> Result<Services> {
        let template = format!("gw_template_{}", std::process::id());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(prepare_template(&admin_base, &template))?;
        Ok(Services {
            admin_base,
            redis_url,
            template,
            smtp: Sink::start()?,
        })
    }
}

async fn prepare_template(admin_base: &str, template: &str) -> Result<()> {
    bootstrap::create_database(admin_base, template)
        .await
        .context("creating the template database")?;
    let url = with_database(admin_base, template);
    let pool = ghostworks_db::connect(&url, 2, "testkit").await?;
    ghostworks_db::migrate(&pool)
        .await
        .context("migrating the template database")?;
    let logins = bootstrap::Logins {
        app: APP_LOGIN,
        worker: Some(WORKER_LOGIN),
    };
    bootstrap::create_logins(&pool, &logins).await?;
    pool.close().await;
    Ok(())
}

fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL has a path");
    let query = url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
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
    /// As the worker's login role.
    pub worker_url: String,
}

impl Services {
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }

    /// The SMTP sink every test of this process delivers to (tests tell their mail apart by
    /// their unique recipients).
    pub fn smtp(&self) -> &Sink {
        &self.smtp
    }

    /// The messages to `rcpt` once there are `n` of them; fails the test after `timeout`.
    pub async fn mail_to(&self, rcpt: &str, n: usize, timeout: Duration) -> Vec<Message> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let got = self.smtp.messages_to(rcpt);
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} e-mail(s) to {rcpt} within {timeout:?}, got {}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn database(&self) -> Result<TestDb> {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&self.admin_base).await?;
        // Concurrent clones of one template can collide briefly; retry.
        let mut attempt = 0;
        loop {
            match conn
                .execute(format!("CREATE DATABASE {name} TEMPLATE {}", self.template).as_str())
                .await
            {
                Ok(_) => break,
                Err(e)
                    if attempt < 20 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        conn.close().await?;
        let admin_url = with_database(&self.admin_base, &name);
        let app_url = with_user(&admin_url, APP_LOGIN, APP_LOGIN);
        let worker_url = with_user(&admin_url, WORKER_LOGIN, WORKER_LOGIN);
        Ok(TestDb {
            name,
            admin_url,
            app_url,
            worker_url,
        })
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
        assert_eq!(
            super::with_database(u, "x"),
            "postgres://postgres@127.0.0.1:5/x"
        );
        assert_eq!(
            super::with_user("postgres://a:b@h:5/x", "u", "p"),
            "postgres://u:p@h:5/x"
        );
    }
}
