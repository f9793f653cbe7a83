//! Drives the real `ghostworks worker` process: SIGKILL in the middle of delivering e-mail
//! loses nothing and sends nothing twice; SIGTERM exits cleanly; /metrics and /health answer;
//! and the `ghostworks jobs` commands an operator repairs the queue with.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ghostworks_testkit::{services, Sink, TestDb};
use sqlx::PgPool;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");

fn free_port() -> u16 {
    ghostworks_devstack::free_port().expect("a free loopback port")
}

fn spawn_worker(db: &TestDb, sink: &Sink, bind: &str) -> Child {
    Command::new(BIN)
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs([
            ("GHOSTWORKS_ENV", "development"),
            ("DATABASE_URL", db.worker_url.as_str()),
            ("SMTP_URL", sink.url().as_str()),
            ("WORKER_BIND", bind),
            ("WORKER_CONCURRENCY", "10"),
            ("JOB_LEASE_SECONDS", "2"),
            ("JOB_POLL_SECONDS", "1"),
            ("LOG_FORMAT", "json"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker starts")
}

/// Counts e-mail jobs (the worker's scheduler adds a maintenance job of its own).
async fn count(pool: &PgPool, condition: &str) -> i64 {
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM jobs WHERE kind = 'email.verification' AND {condition}"
    ))
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_no_job_and_sends_no_email_twice() {
    let db = services().database().await.unwrap();
    let admin = PgPool::connect(&db.admin_url).await.unwrap();
    // A sink of this test's own: it is held below.
    let sink = Sink::start().unwrap();
    let users: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO users (id, email, hashed_password) \
         SELECT gen_random_uuid(), 'kill' || g || '@example.com', 'x' FROM generate_series(1, 100) g RETURNING id",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let mut tx = admin.begin().await.unwrap();
    for &u in &users {
        ghostworks_worker::enqueue(&mut tx, ghostworks_worker::kinds::verification_email(u))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let bind = format!("127.0.0.1:{}", free_port());
    let mut first = spawn_worker(&db, &sink, &bind);
    wait_for("some deliveries", Duration::from_secs(30), async || {
        sink.messages().len() >= 20
    })
    .await;
    // Stop deliveries at DATA: the jobs in flight now hang mid-SMTP. Wait until every message
    // that did get through has also committed its job, and ten jobs hang: then the kill can
    // only hit jobs whose e-mail has not been accepted.
    sink.hold();
    let mut last = (0, 0);
    wait_for(
        "ten jobs hanging in delivery",
        Duration::from_secs(30),
        async || {
            let received = sink.messages().len() as i64;
            let succeeded = count(&admin, "status = 'succeeded'").await;
            let running = count(&admin, "status = 'running'").await;
            let now = (received, succeeded);
            let stable = now == last && received == succeeded && running == 10;
            last = now;
            tokio::time::sleep(Duration::from_millis(100)).await;
            stable
        },
    )
    .await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let delivered_before = sink.messages().len();
    assert!(delivered_before < 100);
    sink.release();

    let mut second = spawn_worker(&db, &sink, &bind);
    wait_for("every job", Duration::from_secs(60), async || {
        count(&admin, "status = 'succeeded'").await == 100
    })
    .await;
    // Each user got exactly one e-mail; the ten killed jobs took a second attempt.
    let mail = sink.messages();
    assert_eq!(mail.len(), 100, "no e-mail lost or duplicated");
    let mut to: Vec<String> = mail.iter().map(|m| m.to[0].clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 100);
    assert_eq!(count(&admin, "attempts = 2").await, 10);
    assert_eq!(count(&admin, "attempts NOT IN (1, 2)").await, 0);

    // The restarted worker's own endpoints.
    let client = ghostworks_telemetry::http_client::client();
    let health = client
        .get(format!("http://{bind}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = client
        .get(format!("http://{bind}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"ghostworks_jobs_retried_total{kind="email.verification"} 10"#,
        r#"ghostworks_jobs_succeeded_total{kind="email.verification"}"#,
        r#"ghostworks_job_duration_seconds_bucket{kind="email.verification""#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }

    // SIGTERM: a clean exit.
    signal(&second, "-TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the worker ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
}

fn jobs(args: &[&str], database_url: &str) -> Output {
    Command::new(BIN)
        .arg("jobs")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("DATABASE_URL", database_url)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn jobs_commands_list_retry_and_purge_dead_jobs() {
    let db = services().database().await.unwrap();
    let admin = PgPool::connect(&db.admin_url).await.unwrap();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO jobs (id, kind, payload, status, attempts, max_attempts, last_error, finished_at) \
         SELECT gen_random_uuid(), 'email.verification', jsonb_build_object('user_id', gen_random_uuid()), 'dead', 8, 8, 'SMTP: boom', now() \
         FROM generate_series(1, 3) RETURNING id",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let url = db.worker_url.as_str();

    let list = jobs(&["list", "--status", "dead"], url);
    let out = stdout(&list);
    assert!(list.status.success(), "{out}");
    for id in &ids {
        assert!(out.contains(&id.to_string()), "{out}");
    }
    assert!(
        out.contains("8/8") && out.contains("SMTP: boom") && out.contains("3 job(s)"),
        "{out}"
    );

    let retry = jobs(&["retry", &ids[0].to_string()], url);
    assert!(
        stdout(&retry).contains("1 job(s) queued again"),
        "{}",
        stdout(&retry)
    );
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM jobs WHERE id = $1")
            .bind(ids[0])
            .fetch_one(&admin)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("queued", 0));
    let again = jobs(&["retry", &ids[0].to_string()], url);
    assert!(!again.status.success() && stdout(&again).contains("no dead job"));
    assert!(
        !jobs(&["retry"], url).status.success(),
        "an id or --all-dead is required"
    );
    assert!(!jobs(&["list", "--status", "failed"], url).status.success());

    let purge = jobs(&["purge", "--dead"], url);
    assert!(
        stdout(&purge).contains("2 dead job(s) deleted"),
        "{}",
        stdout(&purge)
    );
    sqlx::query("UPDATE jobs SET status = 'dead' WHERE id = $1")
        .bind(ids[0])
        .execute(&admin)
        .await
        .unwrap();
    let all = jobs(&["retry", "--all-dead"], url);
    assert!(
        stdout(&all).contains("1 job(s) queued again"),
        "{}",
        stdout(&all)
    );

    // The API's role cannot read the queue.
    let denied = jobs(&["list"], &db.app_url);
    assert!(!denied.status.success());
    assert!(
        stdout(&denied).contains("permission denied"),
        "{}",
        stdout(&denied)
    );
}

#[test]
fn the_worker_refuses_the_apis_role() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(services().database()).unwrap();
    let out = Command::new(BIN)
        .arg("worker")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("GHOSTWORKS_ENV", "development")
        .env("DATABASE_URL", &db.app_url)
        .env("SMTP_URL", "smtp://127.0.0.1:1")
        .env("WORKER_BIND", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stdout(&out).contains("not a member of ghostworks_worker"),
        "{}",
        stdout(&out)
    );
}
