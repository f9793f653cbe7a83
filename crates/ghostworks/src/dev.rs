//! `ghostworks dev`: a complete local stack from nothing but the installed PostgreSQL 15 and
//! Redis binaries: the API, a worker, the web app, and an SMTP sink that keeps the e-mail it
//! sends.
//! Configured servers (DATABASE_URL, REDIS_URL, SMTP_URL) are used as they are.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;

use anyhow::Context;
use ghostworks_config::{Common, Config, OpsConfig, WorkerConfig};
use ghostworks_db::bootstrap;
use ghostworks_devstack::smtp::{Message, Sink};
use ghostworks_devstack::{Postgres, Redis};

const DATABASE: &str = "ghostworks";
const APP_LOGIN: &str = "ghostworks_api";
const WORKER_LOGIN: &str = "ghostworks_worker_login";

pub async fn run(data_dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("--data-dir: cannot create {}", data_dir.display()))?;
    let data_dir = std::fs::canonicalize(data_dir)?;
    let mut vars = ghostworks_config::process_vars();
    let reserved = set_defaults(&mut vars)?;
    let _telemetry = crate::telemetry::tool("ghostworks-dev", &Common::lenient(&vars));

    let mut postgres = None;
    if !vars.contains_key("DATABASE_URL") {
        println!(
            "starting a private PostgreSQL in {}",
            data_dir.join("postgres").display()
        );
        let pg = Postgres::start(&data_dir.join("postgres"), true)?;
        bootstrap::create_database(&pg.url("postgres"), DATABASE).await?;
        vars.insert("DATABASE_ADMIN_URL".into(), pg.url(DATABASE));
        vars.insert(
            "DATABASE_URL".into(),
            format!("postgres://{APP_LOGIN}@127.0.0.1:{}/{DATABASE}", pg.port),
        );
        vars.insert(
            "WORKER_DATABASE_URL".into(),
            format!("postgres://{WORKER_LOGIN}@127.0.0.1:{}/{DATABASE}", pg.port),
        );
        postgres = Some(pg);
    }
    let mut redis = None;
    if !vars.contains_key("REDIS_URL") {
        let r = Redis::start(&data_dir.join("redis"), true)?;
        vars.insert("REDIS_URL".into(), r.url());
        redis = Some(r);
    }
    if !vars.contains_key("JWT_SECRET_KEY") && !vars.contains_key("JWT_SECRET_KEY_FILE") {
        let path = data_dir.join("jwt_secret");
        if !path.exists() {
            std::fs::write(&path, ghostworks_auth::random_token())?;
        }
        vars.insert("JWT_SECRET_KEY_FILE".into(), path.display().to_string());
    }

    let mut sink_page = None;
    if !vars.contains_key("SMTP_URL") {
        let sink = Sink::start_observed(Some(Box::new(print_mail)))?;
        vars.insert("SMTP_URL".into(), sink.url());
        sink_page = Some(sink.serve_json()?);
    }

    let result = stack(&vars, postgres.is_some(), sink_page, reserved).await;
    if let Some(pg) = postgres {
        pg.stop()?;
    }
    if let Some(mut r) = redis {
        let _ = r.child.kill();
        let _ = r.child.wait();
    }
    result
}

/// The local stack's settings where the environment leaves them unset; the listeners hold the
/// roles' ports until they bind them.
fn set_defaults(vars: &mut HashMap<String, String>) -> anyhow::Result<Vec<TcpListener>> {
    let defaults = [
        ("GHOSTWORKS_ENV", "development"),
        ("COOKIE_SECURE", "false"),
        ("LOG_FORMAT", "pretty"),
        // The web app calls the API over loopback on behalf of browsers, so the API believes
        // its X-Forwarded-For and each browser gets its own rate limits. The web app reads the
        // same setting: only local processes, which can reach the API directly anyway, could
        // name an address.
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ];
    for (k, v) in defaults {
        vars.entry(k.into()).or_insert_with(|| v.into());
    }
    let reserved = reserve_ports(vars)?;
    // The web app talks to this API and worker, and e-mail links lead to it.
    for (k, bind) in [
        ("API_URL", "GHOSTWORKS_BIND"),
        ("WORKER_URL", "WORKER_BIND"),
        ("PUBLIC_URL", "WEB_BIND"),
    ] {
        let url = format!("http://{}", vars[bind]);
        vars.entry(k.into()).or_insert(url);
    }
    Ok(reserved)
}

/// The usual port of each role that has no address of its own (API 8000, worker 8001, web
/// 3000) when it is free, else any free loopback port, so a second stack on the machine starts
/// too. The listeners hold the ports while the databases come up, and are released just before
/// the roles bind them.
fn reserve_ports(vars: &mut HashMap<String, String>) -> anyhow::Result<Vec<TcpListener>> {
    let mut reserved = Vec::new();
    for (var, port) in [
        ("GHOSTWORKS_BIND", 8000),
        ("WORKER_BIND", 8001),
        ("WEB_BIND", 3000),
    ] {
        if vars.contains_key(var) {
            continue;
        }
        let listener = TcpListener::bind(("127.0.0.1", port))
            .or_else(|_| TcpListener::bind("127.0.0.1:0"))
            .with_context(|| format!("{var}: no free loopback port; set {var}"))?;
        vars.insert(var.into(), listener.local_addr()?.to_string());
        reserved.push(listener);
    }
    Ok(reserved)
}

/// Every e-mail the sink receives, with its links: how a developer follows a verification or
/// reset link without a mail client.
fn print_mail(m: &Message) {
    println!(
        "mail to {}: {} {}",
        m.to.join(", "),
        m.header("subject").unwrap_or_default(),
        m.links().join(" ")
    );
}

/// Where the stack answers, and how to log in.
fn print_urls(
    config: &Config,
    worker: Option<&WorkerConfig>,
    web: &ghostworks_config::WebConfig,
    sink_page: Option<std::net::SocketAddr>,
) {
    let bind = config.bind;
    println!();
    println!("Ghostworks is running:");
    println!("  web app    http://{}/", web.bind);
    println!("  API        http://{bind}/");
    println!("  API docs   http://{bind}/docs");
    println!("  health     http://{bind}/health/ready");
    println!("  metrics    http://{bind}/metrics");
    match worker {
        Some(w) => println!("  worker     http://{}/metrics, /health", w.bind),
        None => println!("  worker     not started: with DATABASE_URL set, set WORKER_DATABASE_URL (a login in ghostworks_worker) too"),
    }
    if let Some(page) = sink_page {
        println!(
            "  e-mail     http://{page}/ (JSON; every message is also printed here with its links)"
        );
    }
    println!(
        "  log in as  owner@acme.com / {} (Acme owner), or any demo account",
        crate::seed::DEMO_PASSWORD
    );
    println!("Ctrl-C stops everything; data stays in the data directory.");
}

async fn stack(
    vars: &HashMap<String, String>,
    private_db: bool,
    sink_page: Option<std::net::SocketAddr>,
    reserved: Vec<TcpListener>,
) -> anyhow::Result<()> {
    let admin = OpsConfig::from_vars(vars.clone())
        .admin_database_url()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ghostworks_ops::migrate::apply(
        admin.expose(),
        ghostworks_ops::migrate::DEFAULT_LOCK_TIMEOUT,
    )
    .await?;
    let pool = ghostworks_db::connect(admin.expose(), 2, "ghostworks-dev").await?;
    if private_db {
        let logins = bootstrap::Logins {
            app: APP_LOGIN,
            worker: Some(WORKER_LOGIN),
        };
        bootstrap::create_logins(&pool, &logins).await?;
    }
    println!("{}", crate::seed::demo(&pool).await?);
    pool.close().await;
    let config =
        Config::from_vars(vars).map_err(|e| anyhow::anyhow!("invalid configuration:\n{e}"))?;
    // The worker logs in as its own role: the private server's, or WORKER_DATABASE_URL with
    // configured servers.
    let worker_config = match vars.get("WORKER_DATABASE_URL") {
        Some(url) => {
            let mut wv = vars.clone();
            wv.insert("DATABASE_URL".into(), url.clone());
            Some(
                WorkerConfig::from_vars(&wv)
                    .map_err(|e| anyhow::anyhow!("invalid worker configuration:\n{e}"))?,
            )
        }
        None => None,
    };
    let web_config = ghostworks_config::WebConfig::from_vars(vars)
        .map_err(|e| anyhow::anyhow!("invalid web configuration:\n{e}"))?;
    print_urls(&config, worker_config.as_ref(), &web_config, sink_page);
    drop(reserved);
    let web = async {
        ghostworks_web::run(web_config, crate::roles::shutdown_signal())
            .await
            .map_err(anyhow::Error::from)
    };
    match worker_config {
        Some(w) => {
            tokio::try_join!(crate::roles::serve(config), crate::roles::worker(w), web)?;
        }
        None => {
            tokio::try_join!(crate::roles::serve(config), web)?;
        }
    }
    Ok(())
}
