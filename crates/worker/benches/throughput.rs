//! Worker throughput and latency, printed as figures (not a timed test: nothing asserts).
//!
//!   cargo bench -p ghostworks-worker
//!
//! Runs against a private, durable PostgreSQL 15 (fsync and synchronous commit on, as in
//! production) and the in-process SMTP sink, on this machine. Three measurements:
//!   1. no-op jobs/s: N jobs queued up front, drained by one worker;
//!   2. e-mail jobs/s: N verification e-mails (token insert, SMTP delivery, commit);
//!   3. enqueue-to-start latency: jobs queued one at a time into an idle worker, measured from
//!      the enqueuing transaction's COMMIT to the handler's first instruction.
//!
//! BENCH_JOBS (default 3000) and BENCH_CONCURRENCY (default 8) change the sizes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ghostworks_config::WorkerConfig;
use ghostworks_devstack::smtp::Sink;
use ghostworks_devstack::Postgres;
use ghostworks_worker::{
    enqueue, BoxFuture, Ctx, Handler, Job, JobError, Kind, Registry, Settings, Worker,
};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

const NOOP: Kind = Kind {
    name: "bench.noop",
    max_attempts: 1,
    backoff: Duration::from_secs(1),
    timeout: Duration::from_secs(10),
};

/// Counts runs and records when each job started.
#[derive(Clone, Default)]
struct Noop {
    runs: Arc<AtomicUsize>,
    started: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl Handler for Noop {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        let now = Instant::now();
        Box::pin(async move {
            self.started.lock().unwrap().insert(ctx.job.id, now);
            self.runs.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

struct Db {
    admin: PgPool,
    worker_url: String,
}

async fn database(pg: &Postgres, name: &str) -> Db {
    let mut conn = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let admin = ghostworks_db::connect(&pg.url(name), 4, "bench")
        .await
        .unwrap();
    ghostworks_db::migrate(&admin).await.unwrap();
    ghostworks_db::ensure_login_role(
        &admin,
        "bench_worker",
        "bench_worker",
        ghostworks_db::WORKER_ROLE,
    )
    .await
    .unwrap();
    Db {
        admin,
        worker_url: format!(
            "postgres://bench_worker:bench_worker@127.0.0.1:{}/{name}",
            pg.port
        ),
    }
}

async fn succeeded(pool: &PgPool, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'succeeded' AND kind = $1")
        .bind(kind)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn drain(pool: &PgPool, kind: &str, n: usize) -> Duration {
    let start = Instant::now();
    while succeeded(pool, kind).await < n as i64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run() {
    let jobs = env_usize("BENCH_JOBS", 3000);
    let concurrency = env_usize("BENCH_CONCURRENCY", 8);
    let dir = tempfile_dir();
    let pg = Postgres::start(&dir.join("pg"), true).expect("PostgreSQL 15 starts");
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!("ghostworks-worker benchmark: {cpus} CPU(s), durable PostgreSQL 15 on loopback, concurrency {concurrency}");

    // 1. No-op jobs.
    let db = database(&pg, "bench_noop").await;
    let mut tx = db.admin.begin().await.unwrap();
    for _ in 0..jobs {
        enqueue(&mut tx, Job::new(&NOOP, serde_json::json!({})))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let pool = PgPool::connect(&db.worker_url).await.unwrap();
    let settings = Settings {
        concurrency,
        lease: Duration::from_secs(60),
        poll_interval: Duration::from_secs(5),
        maintenance_interval: None,
    };
    let noop = Noop::default();
    let worker = Worker::new(
        pool.clone(),
        Registry::default().register(NOOP, noop.clone()),
        settings.clone(),
    );
    let (stop, rx) = tokio::sync::watch::channel(false);
    let handle = spawn(&worker, rx.clone());
    let took = drain(&db.admin, NOOP.name, jobs).await;
    println!(
        "no-op jobs:      {jobs} in {:.2} s = {:.0} jobs/s",
        took.as_secs_f64(),
        jobs as f64 / took.as_secs_f64()
    );

    // 3. Latency, with the same (now idle) worker: one job at a time, 20 ms apart.
    let samples = 300;
    let mut committed = HashMap::new();
    for _ in 0..samples {
        let mut tx = db.admin.begin().await.unwrap();
        let id = enqueue(&mut tx, Job::new(&NOOP, serde_json::json!({})))
            .await
            .unwrap()
            .unwrap();
        tx.commit().await.unwrap();
        committed.insert(id, Instant::now());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drain(&db.admin, NOOP.name, jobs + samples).await;
    let started = noop.started.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = committed
        .iter()
        .map(|(id, at)| started[id].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    println!(
        "enqueue-to-start: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({samples} jobs, LISTEN/NOTIFY wake-up)",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().unwrap().as_secs_f64() * 1000.0,
    );
    stop.send(true).unwrap();
    handle.await.unwrap();

    // 2. E-mail jobs against the sink.
    let emails = jobs / 3;
    let db = database(&pg, "bench_email").await;
    let users: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (id, email, hashed_password) \
         SELECT gen_random_uuid(), 'bench' || g || '@example.com', 'x' FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(emails as i32)
    .fetch_all(&db.admin)
    .await
    .unwrap();
    let mut tx = db.admin.begin().await.unwrap();
    for u in users {
        enqueue(&mut tx, ghostworks_worker::kinds::verification_email(u))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let sink = Sink::start().unwrap();
    let vars: HashMap<String, String> = [
        ("GHOSTWORKS_ENV", "development".into()),
        ("DATABASE_URL", db.worker_url.clone()),
        ("SMTP_URL", sink.url()),
        ("WORKER_CONCURRENCY", concurrency.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let worker = ghostworks_worker::connect(&WorkerConfig::from_vars(&vars).unwrap())
        .await
        .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let handle = spawn(&worker, rx);
    let took = drain(&db.admin, "email.verification", emails).await;
    println!(
        "e-mail jobs:     {emails} in {:.2} s = {:.0} jobs/s ({} messages received by the sink)",
        took.as_secs_f64(),
        emails as f64 / took.as_secs_f64(),
        sink.messages().len()
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
    pool.close().await;
    pg.stop().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

fn spawn(
    worker: &Worker,
    mut rx: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let w = worker.clone();
    tokio::spawn(async move {
        w.run(async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await
        .unwrap()
    })
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ghostworks-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
