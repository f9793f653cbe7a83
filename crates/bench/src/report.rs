//! `report`: the whole benchmark from nothing — private PostgreSQL and Redis, migrations, the
//! dataset, the release server as a child process, every scenario, the SQL ceiling beside the
//! API's read journey, and the RLS overhead — written to one directory as JSON, markdown and SVG.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ghostworks_db::bootstrap;
use ghostworks_devstack::{free_port, pg_bin, Postgres, Redis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::ceiling;
use crate::dataset::{self, Spec};
use crate::load::{self, Options};
use crate::output;
use crate::stats;

const DATABASE: &str = "ghostworks_bench";
/// The server's `SEARCH_TIMEOUT_MS`, which the ceiling sets as the API does.
const SEARCH_TIMEOUT: Duration = Duration::from_secs(2);
const APP_LOGIN: &str = "gw_bench_api";
/// The pgbench scripts of the isolation-cost table: one per request of the read journey, each
/// statement run with and without row-level security (a relative figure; the ceiling is
/// [`ceiling`]'s, which runs the API's own calls).
const SCRIPTS: [(&str, &str); 5] = [
    ("list", include_str!("../pgbench/list.sql")),
    (
        "search_substring",
        include_str!("../pgbench/search_substring.sql"),
    ),
    (
        "search_fulltext",
        include_str!("../pgbench/search_fulltext.sql"),
    ),
    ("get", include_str!("../pgbench/get.sql")),
    ("tag_filter", include_str!("../pgbench/tag_filter.sql")),
];

pub struct ReportOptions {
    pub dir: PathBuf,
    pub spec: Spec,
    pub load: Options,
    /// The `ghostworks` release binary (built with cargo when not given).
    pub server_bin: Option<PathBuf>,
    pub pool_size: u32,
    /// Keep and reuse a cluster seeded by an earlier report in `dir`.
    pub reuse: bool,
    pub pgbench_seconds: u64,
    /// Seconds of the read journey per telemetry variant (0: not measured).
    pub overhead_seconds: u64,
}

#[derive(Debug, Serialize)]
struct Pgbench {
    tps: f64,
    latency_ms: f64,
}

#[derive(Debug, Serialize)]
struct Rls {
    script: String,
    with_policies_tps: f64,
    owner_row_security_off_tps: f64,
    overhead_pct: f64,
}

/// Kills the child processes this report started when it ends, however it ends.
struct Stack {
    pg: Postgres,
    redis: Redis,
    server: Option<Child>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(s) = &mut self.server {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = self.redis.child.kill();
        let _ = self.redis.child.wait();
        let _ = self.pg.stop();
    }
}

fn with_db(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL has a path");
    format!("{base}/{db}")
}

pub async fn run(mut o: ReportOptions) -> Result<()> {
    // PostgreSQL's socket directory must be absolute.
    std::fs::create_dir_all(&o.dir)?;
    o.dir = std::fs::canonicalize(&o.dir)?;
    let (load_avg, cpus) = stats::machine_load();
    println!("machine: {cpus} CPUs, 1-minute load average {load_avg:.2} at the start");
    let server_bin = match &o.server_bin {
        Some(p) => p.clone(),
        None => build_server()?,
    };
    let pg_dir = o.dir.join("postgres");
    if !o.reuse && pg_dir.exists() {
        std::fs::remove_dir_all(&pg_dir)?;
    }
    // Durable (fsync and synchronous commit on): write figures include the WAL flush.
    let pg = Postgres::start(&pg_dir, true)?;
    let redis = Redis::start(&o.dir.join("redis"), false)?;
    let mut stack = Stack {
        pg,
        redis,
        server: None,
    };
    let admin = with_db(&stack.pg.url("postgres"), DATABASE);
    let load_report = prepare(&stack.pg.url("postgres"), &admin, &o.spec).await?;

    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let app_url = format!(
        "postgres://{APP_LOGIN}:{APP_LOGIN}@127.0.0.1:{}/{DATABASE}",
        stack.pg.port
    );
    let started = Instant::now();
    let server = Server {
        bin: &server_bin,
        app_url: &app_url,
        pool_size: o.pool_size,
        redis_url: stack.redis.url(),
    };
    let child = server.spawn(port, &[], &o.dir.join("server.log"))?;
    let pid = child.id();
    stack.server = Some(child);
    let client = load::client()?;
    let cold_start = wait_ready(&client, &base, started).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = stats::rss_mib(pid).unwrap_or_default();
    println!(
        "server ready in {:.0} ms, {idle_rss:.1} MiB resident idle",
        cold_start.as_secs_f64() * 1000.0
    );

    let mut lo = o.load.clone();
    lo.base_url = base;
    lo.server_pid = Some(pid);
    lo.dataset_users = o.spec.users;
    // The SQL ceiling in two halves right before and right after the API's read journey, on
    // the same warm data and sessions: the same requests' database calls on as many
    // connections as the API's pool.
    let harness = load::Harness::login(&lo).await?;
    let settings = ceiling::Settings {
        connections: o.pool_size,
        search_timeout: SEARCH_TIMEOUT,
        seed: o.spec.seed,
    };
    let callers = ceiling::callers(&harness.sessions)?;
    let mut replay = ceiling::Replay::open(&app_url, callers, settings).await?;
    let half = o.load.duration / 2;
    replay.run(half).await?;
    let read = harness.read_journey(&lo).await;
    replay.run(o.load.duration - half).await?;
    let sql = replay.finish().await;
    let ratio = read.latency.rps / sql.latency.rps;
    println!(
        "SQL ceiling: {:.0} requests/s (p99 {:.1} ms, {} failed); API read journey {:.0} req/s = {:.0}%",
        sql.latency.rps,
        sql.latency.p99_ms,
        sql.errors,
        read.latency.rps,
        ratio * 100.0
    );
    let results = harness.after_read(&lo, read).await?;
    let mut md = output::write(&results, &o.dir, Path::new("target/ci/load.json"))?;

    let pg_port = stack.pg.port;
    let pairs = pgbench_pairs(&admin, &o.spec).await?;
    let app = ("gw_bench_api", APP_LOGIN, None);
    let owner = ("postgres", "", Some("-c row_security=off"));
    let secs = o.pgbench_seconds;
    let scripts_dir = o.dir.join("pgbench");
    std::fs::create_dir_all(&scripts_dir)?;
    for (name, text) in SCRIPTS {
        std::fs::write(scripts_dir.join(format!("{name}.sql")), text)?;
        // The same statements with no isolation at all: the table instead of the tenant view,
        // run by the owner with row security off.
        std::fs::write(
            scripts_dir.join(format!("{name}-unisolated.sql")),
            text.replace("FROM tenant_artifacts", "FROM artifacts"),
        )?;
    }
    // At the server's pool size: the concurrency the database sees from the API.
    let clients = o.pool_size as usize;
    let mut rls = Vec::new();
    for (name, _) in SCRIPTS {
        let short = secs.div_ceil(2).max(2);
        let isolated = [scripts_dir.join(format!("{name}.sql"))];
        let unisolated = [scripts_dir.join(format!("{name}-unisolated.sql"))];
        let with = pgbench(pg_port, app, &isolated, pairs, clients, short)?;
        let without = pgbench(pg_port, owner, &unisolated, pairs, clients, short)?;
        rls.push(Rls {
            script: name.into(),
            with_policies_tps: with.tps,
            owner_row_security_off_tps: without.tps,
            overhead_pct: (without.tps / with.tps - 1.0) * 100.0,
        });
    }
    let mixed_with = rls.iter().map(|r| 1.0 / r.with_policies_tps).sum::<f64>();
    let mixed_without = rls
        .iter()
        .map(|r| 1.0 / r.owner_row_security_off_tps)
        .sum::<f64>();
    let journey_overhead = (mixed_with / mixed_without - 1.0) * 100.0;

    if let Some(mut child) = stack.server.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let overhead = telemetry_overhead(&o, &server).await?;

    let (load_end, _) = stats::machine_load();
    md.push_str(&format!(
        "\n| Ceiling and footprint | Value |\n|---|---|\n\
         | SQL ceiling: the read journey's database calls, as the API makes them, on {} connections (half before, half after the API's run) | {:.0} requests/s (p50 {:.2} ms, p99 {:.2} ms, {} failed) |\n\
         | API read journey ({} clients over HTTP) | {:.0} req/s = **{:.0}%** of the ceiling |\n\
         | RLS overhead, read journey (time-weighted over the five requests) | {journey_overhead:.1}% |\n\
         | Cold start to ready (spawn → /health/ready 200) | {:.0} ms |\n\
         | Server RSS idle (1 s after ready) | {idle_rss:.1} MiB |\n\
         | Dataset | {load_report} |\n\
         | Machine | {cpus} CPUs; load average {load_avg:.2} at start, {load_end:.2} at end |\n",
        sql.connections,
        sql.latency.rps,
        sql.latency.p50_ms,
        sql.latency.p99_ms,
        sql.errors,
        o.load.concurrency,
        results.read.latency.rps,
        ratio * 100.0,
        cold_start.as_secs_f64() * 1000.0,
    ));
    md.push_str("\n| Isolation cost: request | API role (tenant view and policies) tps | Owner on the tables, row_security=off tps | Overhead |\n|---|---|---|---|\n");
    for r in &rls {
        md.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.1}% |\n",
            r.script, r.with_policies_tps, r.owner_row_security_off_tps, r.overhead_pct
        ));
    }
    if !overhead.is_empty() {
        md.push_str(&format!(
            "\n| Telemetry (read journey, {} s each) | req/s | p50 ms | p99 ms | Throughput vs. metrics only |\n|---|---|---|---|---|\n",
            o.overhead_seconds
        ));
        let base = overhead[0].latency.rps;
        for v in &overhead {
            md.push_str(&format!(
                "| {} | {:.0} | {:.1} | {:.1} | {:+.1}% |\n",
                v.variant,
                v.latency.rps,
                v.latency.p50_ms,
                v.latency.p99_ms,
                (v.latency.rps / base - 1.0) * 100.0
            ));
        }
    }
    std::fs::write(o.dir.join("report.md"), &md)?;
    std::fs::write(
        o.dir.join("report.json"),
        serde_json::to_string_pretty(&json!({
            "machine": {"cpus": cpus, "load_average_start": load_avg, "load_average_end": load_end},
            "dataset": load_report,
            "cold_start_ms": cold_start.as_secs_f64() * 1000.0,
            "idle_rss_mib": idle_rss,
            "pool_size": o.pool_size,
            "results": results,
            "sql_ceiling": sql,
            "ceiling_ratio": ratio,
            "rls": rls,
            "rls_overhead_read_journey_pct": journey_overhead,
            "telemetry_overhead": overhead,
        }))?,
    )?;
    println!("{md}");
    println!(
        "written: {0}/report.md, {0}/report.json, {0}/open-loop.svg, target/ci/load.json",
        o.dir.display()
    );
    Ok(())
}

fn build_server() -> Result<PathBuf> {
    println!("building the release server (cargo build --release -p ghostworks)");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "ghostworks"])
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("building the server failed");
    }
    Ok(PathBuf::from("target/release/ghostworks"))
}

/// Creates, migrates and seeds the benchmark database (unless an earlier run did).
async fn prepare(server: &str, admin: &str, spec: &Spec) -> Result<String> {
    bootstrap::create_database(server, DATABASE).await?;
    let pool = ghostworks_db::connect(admin, 2, "ghostworks-bench").await?;
    ghostworks_db::migrate(&pool).await?;
    let logins = bootstrap::Logins {
        app: APP_LOGIN,
        worker: None,
    };
    bootstrap::create_logins(&pool, &logins).await?;
    let seeded: i64 = sqlx::query_scalar("SELECT count(*) FROM artifacts")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    if seeded > 0 {
        let text = format!("reused: {seeded} artifacts seeded by an earlier run");
        println!("{text}");
        return Ok(text);
    }
    let r = dataset::seed(admin, spec).await?;
    println!("{r}");
    Ok(r.to_string())
}

async fn wait_ready(client: &reqwest::Client, base: &str, started: Instant) -> Result<Duration> {
    let deadline = started + Duration::from_secs(30);
    loop {
        let ok = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(started.elapsed());
        }
        if Instant::now() > deadline {
            bail!("the server was not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The parameters of the pgbench requests: live sessions of the users the harness logged
/// in, each with the workspaces they belong to, an artifact of it, and search terms and a tag
/// drawn like the harness draws them. Returns the number of rows.
async fn pgbench_pairs(admin: &str, spec: &Spec) -> Result<usize> {
    let mut conn = PgConnection::connect(admin).await?;
    let base: Vec<(uuid::Uuid, uuid::Uuid, uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
        "SELECT s.user_id, s.id, m.tenant_id, \
                (SELECT a.id FROM artifacts a WHERE a.tenant_id = m.tenant_id AND a.deleted_at IS NULL \
                 ORDER BY a.created_at DESC LIMIT 1) \
         FROM (SELECT DISTINCT ON (user_id) user_id, id FROM sessions \
               WHERE revoked_at IS NULL AND expires_at > now() ORDER BY user_id, created_at) s \
         JOIN workspace_memberships m ON m.user_id = s.user_id AND m.is_active",
    )
    .fetch_all(&mut conn)
    .await?;
    if base.is_empty() {
        bail!("no live sessions to replay in pgbench");
    }
    // Eight variants of search terms per (user, workspace) pair, drawn as the harness draws them.
    let terms = load::Terms::default();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed + 500);
    let mut cols: (
        Vec<uuid::Uuid>,
        Vec<uuid::Uuid>,
        Vec<uuid::Uuid>,
        Vec<uuid::Uuid>,
    ) = Default::default();
    let (mut pattern, mut fulltext, mut tag) = (Vec::new(), Vec::new(), Vec::new());
    for (u, s, t, a) in &base {
        for _ in 0..8 {
            cols.0.push(*u);
            cols.1.push(*s);
            cols.2.push(*t);
            cols.3.push(*a);
            pattern.push(format!("%{}%", terms.word(&mut rng)));
            fulltext.push(format!("{} {}", terms.word(&mut rng), terms.word(&mut rng)));
            tag.push(format!("{{{}}}", terms.tag(&mut rng)));
        }
    }
    sqlx::query("DROP TABLE IF EXISTS bench_pairs")
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "CREATE TABLE bench_pairs AS SELECT row_number() OVER () AS n, * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[]) \
         AS p(user_id, session_id, tenant_id, artifact_id, pattern, fulltext, tag)",
    )
    .bind(&cols.0)
    .bind(&cols.1)
    .bind(&cols.2)
    .bind(&cols.3)
    .bind(&pattern)
    .bind(&fulltext)
    .bind(&tag)
    .execute(&mut conn)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX ON bench_pairs (n)")
        .execute(&mut conn)
        .await?;
    sqlx::query("ANALYZE bench_pairs")
        .execute(&mut conn)
        .await?;
    sqlx::query(&format!("GRANT SELECT ON bench_pairs TO {APP_LOGIN}"))
        .execute(&mut conn)
        .await?;
    Ok(pattern.len())
}

/// One pgbench run; `who` is (user, password, PGOPTIONS).
fn pgbench(
    port: u16,
    who: (&str, &str, Option<&str>),
    scripts: &[PathBuf],
    pairs: usize,
    clients: usize,
    seconds: u64,
) -> Result<Pgbench> {
    let mut c = Command::new(pg_bin("pgbench")?);
    c.args(["-n", "-M", "prepared", "-j", "2"])
        .args(["-c", &clients.to_string(), "-T", &seconds.to_string()])
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", who.0])
        .args(["-D", &format!("pairs={pairs}")])
        .env("PGPASSWORD", who.1)
        .stdin(Stdio::null());
    if let Some(opts) = who.2 {
        c.env("PGOPTIONS", opts);
    }
    for s in scripts {
        c.arg("-f").arg(s);
    }
    c.arg(DATABASE);
    let out = c.output().context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let value = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
    };
    Ok(Pgbench {
        tps: value("tps = ").context("pgbench printed no tps")?,
        latency_ms: value("latency average = ").unwrap_or(f64::NAN),
    })
}

/// How the benchmark starts `ghostworks serve`.
struct Server<'a> {
    bin: &'a Path,
    app_url: &'a str,
    pool_size: u32,
    redis_url: String,
}

impl Server<'_> {
    fn spawn(
        &self,
        port: u16,
        extra: &[(&str, String)],
        log: &Path,
    ) -> Result<std::process::Child> {
        let log = std::fs::File::create(log)?;
        Command::new(self.bin)
            .arg("serve")
            .env_clear()
            .env("GHOSTWORKS_ENV", "development")
            .env("GHOSTWORKS_BIND", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", self.app_url)
            .env("DATABASE_POOL_SIZE", self.pool_size.to_string())
            .env("REDIS_URL", &self.redis_url)
            .env("JWT_SECRET_KEY", ghostworks_auth::random_token())
            .env("RATE_LIMIT_ENABLED", "false")
            .env("SEARCH_TIMEOUT_MS", SEARCH_TIMEOUT.as_millis().to_string())
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))
    }
}

#[derive(Debug, Serialize)]
struct Overhead {
    variant: String,
    latency: stats::Latency,
}

/// The read journey against a fresh server per telemetry setting: metrics only (the default),
/// neither metrics nor traces, every trace exported to a live collector, and traces on with
/// the collector down.
async fn telemetry_overhead(o: &ReportOptions, server: &Server<'_>) -> Result<Vec<Overhead>> {
    if o.overhead_seconds == 0 {
        return Ok(Vec::new());
    }
    // A collector that takes every export and keeps nothing.
    let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink_url = format!("http://{}", sink.local_addr()?);
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(|| async { "" }));
    tokio::spawn(async move { axum::serve(sink, app).await });
    let down = format!("http://127.0.0.1:{}", free_port()?);
    let traces = |url: &str| {
        vec![
            ("OPENTELEMETRY_ENDPOINT", url.to_string()),
            ("TRACE_SAMPLE_RATIO", "1".to_string()),
        ]
    };
    let variants: [(&str, Vec<(&str, String)>); 4] = [
        ("metrics, no traces (default)", vec![]),
        (
            "no metrics, no traces",
            vec![("METRICS_ENABLED", "false".into())],
        ),
        ("metrics, every trace exported", traces(&sink_url)),
        ("metrics, traces on, collector down", traces(&down)),
    ];
    let client = load::client()?;
    let mut out = Vec::new();
    for (variant, env) in variants {
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let mut child = server.spawn(port, &env, &o.dir.join("server-overhead.log"))?;
        let result = async {
            wait_ready(&client, &base, Instant::now()).await?;
            let mut lo = o.load.clone();
            lo.base_url = base.clone();
            lo.server_pid = None;
            lo.duration = Duration::from_secs(o.overhead_seconds);
            let sessions = Arc::new(load::login_pool(&lo, &client).await?);
            let known: load::Known = Arc::default();
            anyhow::Ok(load::read_journey(&lo, &client, &sessions, &known).await)
        }
        .await;
        let _ = child.kill();
        let _ = child.wait();
        let scenario = result?;
        println!(
            "telemetry: {variant}: {:.0} req/s, p99 {:.1} ms",
            scenario.latency.rps, scenario.latency.p99_ms
        );
        out.push(Overhead {
            variant: variant.into(),
            latency: scenario.latency,
        });
    }
    Ok(out)
}
