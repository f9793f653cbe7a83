//! The queue's guarantees, with real PostgreSQL and workers running in this process under the
//! worker's own role: retries then dead then revived, leases that outlive a crashed worker and
//! survive a slow job, no job run twice at once across workers, idempotency keys, transactional
//! enqueue, and a shutdown that finishes the jobs in flight.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ghostworks_testkit::services;
use ghostworks_worker::queue::{self, Claimed};
use ghostworks_worker::{
    enqueue, BoxFuture, Ctx, Handler, Job, JobError, Kind, Registry, Settings, Worker,
};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

async fn pool() -> PgPool {
    let db = services().database().await.unwrap();
    PgPool::connect(&db.worker_url).await.unwrap()
}

fn settings(concurrency: usize, lease: Duration) -> Settings {
    Settings {
        concurrency,
        lease,
        poll_interval: Duration::from_secs(1),
        maintenance_interval: None,
    }
}

/// Starts `worker`; the returned sender stops it, the handle resolves when it has.
fn start(
    worker: &Worker,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let w = worker.clone();
    let handle = tokio::spawn(async move {
        w.run(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    (tx, handle)
}

async fn enqueue_all(pool: &PgPool, jobs: Vec<Job>) -> Vec<Uuid> {
    let mut tx = pool.begin().await.unwrap();
    let mut ids = Vec::new();
    for j in jobs {
        ids.push(enqueue(&mut tx, j).await.unwrap().expect("queued"));
    }
    tx.commit().await.unwrap();
    ids
}

async fn status(pool: &PgPool, id: Uuid) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT status, attempts, last_error FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_until(pool: &PgPool, sql: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let done: bool = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {sql}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails its first `fails` runs (retryably), then succeeds.
struct Flaky {
    fails: usize,
    calls: Arc<AtomicUsize>,
}

impl Handler for Flaky {
    fn run<'a>(&'a self, _ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n <= self.fails {
                Err(JobError::Retry(format!("boom {n}")))
            } else {
                Ok(())
            }
        })
    }
}

/// Fails for good, or sleeps past its kind's timeout, as the payload says.
struct Broken;

impl Handler for Broken {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            if ctx.job.payload["hang"] == true {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Err(JobError::Permanent("cannot ever work".into()))
        })
    }
}

const FLAKY: Kind = Kind {
    name: "test.flaky",
    max_attempts: 3,
    backoff: Duration::from_millis(20),
    timeout: Duration::from_secs(5),
};

const BROKEN: Kind = Kind {
    name: "test.broken",
    max_attempts: 2,
    backoff: Duration::from_millis(20),
    timeout: Duration::from_millis(300),
};

fn metric(text: &str, line_prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{text}"))
}

#[tokio::test]
async fn a_failing_job_is_retried_with_backoff_then_dead_and_retry_revives_it() {
    let pool = pool().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let registry = Registry::default()
        .register(
            FLAKY,
            Flaky {
                fails: 3,
                calls: calls.clone(),
            },
        )
        .register(BROKEN, Broken);
    let worker = Worker::new(pool.clone(), registry, settings(2, Duration::from_secs(5)));
    let (stop, done) = start(&worker);
    let ids = enqueue_all(
        &pool,
        vec![
            Job::new(&FLAKY, json!({})),
            Job::new(&BROKEN, json!({})),
            Job::new(&BROKEN, json!({"hang": true})),
        ],
    )
    .await;
    let (flaky, permanent, hanging) = (ids[0], ids[1], ids[2]);
    wait_until(
        &pool,
        "SELECT count(*) = 3 FROM jobs WHERE status = 'dead'",
        Duration::from_secs(20),
    )
    .await;

    let (s, attempts, error) = status(&pool, flaky).await;
    assert_eq!(
        (s.as_str(), attempts),
        ("dead", 3),
        "max_attempts of its kind"
    );
    assert_eq!(error.as_deref(), Some("boom 3"));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let (_, attempts, error) = status(&pool, permanent).await;
    assert_eq!(attempts, 1, "a permanent failure is not retried");
    assert_eq!(error.as_deref(), Some("cannot ever work"));
    let (_, attempts, error) = status(&pool, hanging).await;
    assert_eq!(attempts, 2, "a timeout is a retryable failure");
    assert_eq!(error.as_deref(), Some("timed out after 300ms"));
    // The backoff separated the attempts, and the metrics saw every step.
    let m = worker.metrics().render(&pool).await.unwrap();
    assert_eq!(
        metric(&m, r#"ghostworks_jobs_started_total{kind="test.flaky"} "#),
        3.0
    );
    assert_eq!(
        metric(&m, r#"ghostworks_jobs_failed_total{kind="test.flaky"} "#),
        3.0
    );
    assert_eq!(
        metric(&m, r#"ghostworks_jobs_retried_total{kind="test.flaky"} "#),
        2.0
    );
    assert_eq!(
        metric(&m, r#"ghostworks_jobs_dead_total{kind="test.flaky"} "#),
        1.0
    );
    assert_eq!(
        metric(&m, r#"ghostworks_jobs_dead_total{kind="test.broken"} "#),
        2.0
    );
    assert_eq!(
        metric(&m, r#"ghostworks_jobs{kind="test.flaky",status="dead"} "#),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"ghostworks_job_duration_seconds_count{kind="test.flaky"} "#
        ),
        3.0
    );

    // `ghostworks jobs retry ID`: the job gets a fresh set of attempts, and now succeeds.
    assert_eq!(queue::retry(&pool, Some(flaky)).await.unwrap(), 1);
    assert_eq!(
        queue::retry(&pool, Some(flaky)).await.unwrap(),
        0,
        "no longer dead"
    );
    wait_until(
        &pool,
        &format!("SELECT status = 'succeeded' FROM jobs WHERE id = '{flaky}'"),
        Duration::from_secs(10),
    )
    .await;
    let (_, attempts, _) = status(&pool, flaky).await;
    assert_eq!(attempts, 1);
    let listed = queue::list(&pool, Some(ghostworks_worker::Status::Dead), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(queue::purge_dead(&pool).await.unwrap(), 2);
    let _ = stop.send(());
    done.await.unwrap();
}

/// Records every run, and any moment two runs of one job overlap.
#[derive(Clone, Default)]
struct Exclusive {
    running: Arc<Mutex<HashSet<Uuid>>>,
    runs: Arc<Mutex<HashMap<Uuid, u32>>>,
    overlaps: Arc<AtomicUsize>,
    mine: Arc<AtomicUsize>,
}

impl Handler for Exclusive {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let id = ctx.job.id;
            if !self.running.lock().unwrap().insert(id) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            *self.runs.lock().unwrap().entry(id).or_default() += 1;
            self.mine.fetch_add(1, Ordering::SeqCst);
            let ms = ctx.job.payload["ms"].as_u64().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.running.lock().unwrap().remove(&id);
            Ok(())
        })
    }
}

const EXCLUSIVE: Kind = Kind {
    name: "test.exclusive",
    max_attempts: 3,
    backoff: Duration::from_millis(20),
    timeout: Duration::from_secs(30),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_run_the_same_job_at_once() {
    let pool = pool().await;
    let shared = Exclusive::default();
    let a = Exclusive {
        mine: Arc::new(AtomicUsize::new(0)),
        ..shared.clone()
    };
    let b = Exclusive {
        mine: Arc::new(AtomicUsize::new(0)),
        ..shared.clone()
    };
    // A 2 s lease, and jobs of 3 s among them: only renewal keeps those leased.
    let lease = Duration::from_secs(2);
    let wa = Worker::new(
        pool.clone(),
        Registry::default().register(EXCLUSIVE, a.clone()),
        settings(4, lease),
    );
    let wb = Worker::new(
        pool.clone(),
        Registry::default().register(EXCLUSIVE, b.clone()),
        settings(4, lease),
    );
    let (stop_a, done_a) = start(&wa);
    let (stop_b, done_b) = start(&wb);
    let mut jobs: Vec<Job> = (0..150)
        .map(|i| Job::new(&EXCLUSIVE, json!({"ms": i % 7})))
        .collect();
    jobs.extend((0..3).map(|_| Job::new(&EXCLUSIVE, json!({"ms": 3000}))));
    let ids = enqueue_all(&pool, jobs).await;
    wait_until(
        &pool,
        "SELECT count(*) = 153 FROM jobs WHERE status = 'succeeded'",
        Duration::from_secs(60),
    )
    .await;
    let _ = stop_a.send(());
    let _ = stop_b.send(());
    done_a.await.unwrap();
    done_b.await.unwrap();
    assert_eq!(shared.overlaps.load(Ordering::SeqCst), 0);
    let runs = shared.runs.lock().unwrap().clone();
    assert_eq!(runs.len(), ids.len());
    assert!(runs.values().all(|&n| n == 1), "every job ran exactly once");
    let (na, nb) = (a.mine.load(Ordering::SeqCst), b.mine.load(Ordering::SeqCst));
    assert!(na > 0 && nb > 0, "both workers took jobs: {na} and {nb}");
    let max_attempts: i32 = sqlx::query_scalar("SELECT max(attempts) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(max_attempts, 1, "no lease expired, even for the 3 s jobs");
}

#[tokio::test]
async fn a_dead_workers_lease_expires_and_the_job_runs_again_or_dies() {
    let pool = pool().await;
    let ids = enqueue_all(
        &pool,
        vec![
            Job::new(&EXCLUSIVE, json!({})),
            Job::new(
                &Kind {
                    max_attempts: 1,
                    ..EXCLUSIVE
                },
                json!({}),
            ),
        ],
    )
    .await;
    // A worker that claims both jobs and then vanishes without a word.
    let kinds = vec![EXCLUSIVE.name.to_string()];
    let claimed: Vec<Claimed> = queue::claim(&pool, "ghost", Duration::from_secs(1), 10, &kinds)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        queue::claim(&pool, "other", Duration::from_secs(1), 10, &kinds)
            .await
            .unwrap()
            .is_empty(),
        "leased jobs are invisible"
    );
    let handler = Exclusive::default();
    let worker = Worker::new(
        pool.clone(),
        Registry::default().register(EXCLUSIVE, handler.clone()),
        settings(2, Duration::from_secs(5)),
    );
    let started = Instant::now();
    let (stop, done) = start(&worker);
    wait_until(
        &pool,
        &format!(
            "SELECT status = 'succeeded' FROM jobs WHERE id = '{}'",
            ids[0]
        ),
        Duration::from_secs(10),
    )
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "not before the lease ran out"
    );
    let (_, attempts, _) = status(&pool, ids[0]).await;
    assert_eq!(attempts, 2, "the lost attempt counts");
    let (s, _, error) = status(&pool, ids[1]).await;
    assert_eq!(s, "dead", "its only attempt was the lost one");
    assert!(error.unwrap().starts_with("lease expired"));
    // The ghost's late completion is refused: the job is no longer its own.
    let mut tx = pool.begin().await.unwrap();
    assert!(!queue::complete(&mut tx, &claimed[0], "ghost")
        .await
        .unwrap());
    tx.rollback().await.unwrap();
    let _ = stop.send(());
    done.await.unwrap();
}

#[tokio::test]
async fn idempotency_keys_and_rollbacks_decide_what_is_queued() {
    let pool = pool().await;
    let mut tx = pool.begin().await.unwrap();
    let first = enqueue(&mut tx, Job::new(&FLAKY, json!({})).idempotency_key("k1"))
        .await
        .unwrap();
    let again = enqueue(&mut tx, Job::new(&FLAKY, json!({})).idempotency_key("k1"))
        .await
        .unwrap();
    let other_kind = enqueue(&mut tx, Job::new(&BROKEN, json!({})).idempotency_key("k1"))
        .await
        .unwrap();
    assert!(first.is_some() && again.is_none() && other_kind.is_some());
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    enqueue(&mut tx, Job::new(&FLAKY, json!({}))).await.unwrap();
    tx.rollback().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 2, "the duplicate and the rolled-back job are absent");
}

#[tokio::test]
async fn shutdown_finishes_the_jobs_in_flight_and_claims_no_more() {
    let pool = pool().await;
    let handler = Exclusive::default();
    let worker = Worker::new(
        pool.clone(),
        Registry::default().register(EXCLUSIVE, handler.clone()),
        settings(2, Duration::from_secs(5)),
    );
    let (stop, done) = start(&worker);
    let slow = enqueue_all(&pool, vec![Job::new(&EXCLUSIVE, json!({"ms": 800}))]).await[0];
    wait_until(
        &pool,
        "SELECT count(*) = 1 FROM jobs WHERE status = 'running'",
        Duration::from_secs(10),
    )
    .await;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let later = enqueue_all(&pool, vec![Job::new(&EXCLUSIVE, json!({}))]).await[0];
    done.await.unwrap();
    assert_eq!(
        status(&pool, slow).await.0,
        "succeeded",
        "finished before exiting"
    );
    assert_eq!(
        status(&pool, later).await.0,
        "queued",
        "not claimed after shutdown"
    );
}
