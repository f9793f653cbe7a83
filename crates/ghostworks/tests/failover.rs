//! Failover under load, against real processes: a Patroni cluster (etcd, three synchronous
//! nodes, HAProxy) from the test kit, migrated by `ghostworks migrate` through HAProxy's write
//! port, with `ghostworks serve` and `ghostworks worker` pointed at that port. While clients
//! write and read, the primary's PostgreSQL is killed (SIGKILL), then the whole node of the
//! primary: each time the API serves writes again without a restart, every failed request is
//! a JSON 503, no acknowledged write is lost, and the old primary rejoins as a standby.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ghostworks_testkit::cluster::{Cluster, Role, DATABASE};
use ghostworks_testkit::load::Tally;
use ghostworks_testkit::{services, unique, TestDb};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");
const PASSWORD: &str = "Str0ng!Passw0rd";
/// The load's client timeout: a request unanswered for this long counts as a failure.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long backends of a killed postmaster may go on answering.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);
/// The bound on the time from a loss to writes served again (docs/high-availability.md).
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ghostworks <role>` with only `env` (and PATH) set.
fn ghostworks(role: &str, env: &[(&str, &str)]) -> Killed {
    Killed(
        Command::new(BIN)
            .arg(role)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GHOSTWORKS_ENV", "development")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ghostworks {role}: {e}")),
    )
}

/// An operator's command (`ghostworks ARGS`) against `admin_url`; its output, which must be
/// a success.
fn operator(args: &[&str], admin_url: &str) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GHOSTWORKS_ENV", "test")
        .env("DATABASE_ADMIN_URL", admin_url)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "ghostworks {args:?} through HAProxy:\n{text}"
    );
    text
}

/// `ghostworks migrate` through HAProxy's write port, then the login roles.
async fn migrate(cluster: &Cluster) -> TestDb {
    operator(&["migrate"], &cluster.write_url(DATABASE));
    cluster.logins().await.unwrap()
}

/// After the failover, through HAProxy's write port (now the promoted standby): the schema is
/// current, a logical backup is taken and verified, and the load's workspace moves to another
/// database of the cluster with every artifact.
async fn operator_commands_work_on_the_new_primary(cluster: &Cluster, db: &TestDb, s: &Session) {
    let status = operator(&["migrate", "--status"], &db.admin_url);
    assert!(
        status.contains("applied") && !status.contains("pending"),
        "{status}"
    );
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap();
    let out = operator(&["backup", "--dir", dir_s], &db.admin_url);
    assert!(out.contains("backup"), "{out}");
    let out = operator(&["backup", "verify", "--from", dir_s], &db.admin_url);
    assert!(out.contains("verified"), "{out}");

    let archive = dir.path().join("moved.gwtenant.jsonl");
    let archive_s = archive.to_str().unwrap();
    operator(
        &["tenant", "export", &s.slug, "--output", archive_s],
        &db.admin_url,
    );
    let moved = "ghostworks_moved";
    let pool = ghostworks_db::connect(&cluster.write_url("postgres"), 1, "failover-test")
        .await
        .unwrap();
    sqlx::query(&format!("CREATE DATABASE {moved}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let target = cluster.write_url(moved);
    operator(&["migrate"], &target);
    let out = operator(
        &["tenant", "import", archive_s, "--allow-unsigned"],
        &target,
    );
    assert!(out.contains("imported"), "{out}");
    let count = |url: String| async move {
        let pool = ghostworks_db::connect(&url, 1, "failover-test")
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM artifacts a JOIN tenants t ON t.id = a.tenant_id WHERE t.slug = $1",
        )
        .bind(&s.slug)
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        n
    };
    let (source, copy) = (count(db.admin_url.clone()).await, count(target).await);
    assert!(source > 0, "the load wrote artifacts");
    assert_eq!(copy, source, "artifacts moved by tenant export/import");
    eprintln!("after the failover: migrate --status, backup + verify, tenant export/import of {source} artifacts through HAProxy");
}

/// The API and the worker on the cluster's write port; the worker mails to the test sink.
fn start_stack(db: &TestDb, api: &str) -> [Killed; 2] {
    let prefix = unique("ha");
    let smtp = services().smtp().url();
    [
        ghostworks(
            "serve",
            &[
                ("DATABASE_URL", &db.app_url),
                ("REDIS_URL", services().redis_url()),
                ("REDIS_KEY_PREFIX", &prefix),
                ("JWT_SECRET_KEY", "ha-test-secret-0123456789abcdef01234567"),
                ("GHOSTWORKS_BIND", api),
                ("REQUIRE_EMAIL_VERIFICATION", "false"),
                ("RATE_LIMIT_ENABLED", "false"),
            ],
        ),
        ghostworks(
            "worker",
            &[
                ("DATABASE_URL", &db.worker_url),
                ("SMTP_URL", &smtp),
                ("WORKER_BIND", &free_addr()),
                ("JOB_POLL_SECONDS", "1"),
            ],
        ),
    ]
}

/// A client of the API with a user's token and the artifacts path of the user's workspace.
struct Session {
    client: reqwest::Client,
    api: String,
    token: String,
    path: String,
    slug: String,
}

/// Steady load until stopped: each of four clients writes an artifact, reads a page, pauses.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(s: &Session) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let tasks = (0..4)
            .map(|w| {
                let (client, path, token) = (s.client.clone(), s.path.clone(), s.token.clone());
                let (stop, tally) = (stop.clone(), tally.clone());
                tokio::spawn(async move {
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let mut t = Tally::default();
                        let body = json!({"name": format!("load {w}-{n}")});
                        let write = client.post(&path).bearer_auth(&token).json(&body);
                        if let Some(a) = t.record("POST artifact", write.send().await).await {
                            t.acknowledged.push(a["id"].as_str().unwrap().to_string());
                        }
                        let read = client.get(format!("{path}?limit=5")).bearer_auth(&token);
                        t.record("GET artifacts", read.send().await).await;
                        tally.lock().unwrap().add(t);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                })
            })
            .collect();
        Load { stop, tally, tasks }
    }

    async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// How a loss looked from outside: when a primary was back and writes were served again
/// (both from the loss), and whether readiness turned 503 meanwhile.
#[derive(Debug)]
struct Recovery {
    primary_after: Duration,
    writes_after: Duration,
    saw_not_ready: bool,
}

/// Waits (bounded by [`RECOVERY_BOUND`]) for a primary other than `except`, for a write
/// through the API that succeeds and for readiness to be 200 again.
async fn recovery(
    cluster: &Cluster,
    except: Option<usize>,
    s: &Session,
    lost: Instant,
) -> Recovery {
    let (mut primary_after, mut writes_after, mut saw_not_ready) = (None, None, false);
    // Backends outlive a killed postmaster for a moment: a write counts as "again" only
    // after one has failed, or past ORPHAN_GRACE when none did.
    let mut write_failed = false;
    let mut last_write = String::new();
    loop {
        let primary = tokio::task::block_in_place(|| cluster.primary());
        if primary_after.is_none() && primary.is_some_and(|p| Some(p) != except) {
            primary_after = Some(lost.elapsed());
        }
        if writes_after.is_none() {
            let r = s.client.post(&s.path).bearer_auth(&s.token);
            let r = r.json(&json!({"name": "probe"})).send().await;
            let created = r.as_ref().is_ok_and(|r| r.status().as_u16() == 201);
            last_write = match r {
                Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => format!("{e:?}"),
            };
            match created {
                true if write_failed => writes_after = Some(lost.elapsed()),
                // No probe write failed: the loss was too short for the probe to meet it. A
                // write then counts once no backend of a killed postmaster can still be
                // answering (they exit when they notice its death).
                true if lost.elapsed() > ORPHAN_GRACE => writes_after = Some(lost.elapsed()),
                true => {}
                false => write_failed = true,
            }
        }
        let ready = s.client.get(format!("{}/health/ready", s.api)).send().await;
        match ready.map(|r| r.status().as_u16()) {
            Ok(200) => {
                if let (Some(primary_after), Some(writes_after)) = (primary_after, writes_after) {
                    return Recovery {
                        primary_after,
                        writes_after,
                        saw_not_ready,
                    };
                }
            }
            Ok(503) => saw_not_ready = true,
            other => panic!("/health/ready answered {other:?}"),
        }
        assert!(
            lost.elapsed() < RECOVERY_BOUND,
            "not recovered within {RECOVERY_BOUND:?} of the loss: primary after {primary_after:?}, writes after {writes_after:?}, the last write answered {last_write}\n{:?}\n{}",
            cluster.members(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_worker_ride_out_the_loss_of_the_primary() {
    let started = Instant::now();
    let mut cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the cluster did not start: {e:#}"));
    let cluster_up = started.elapsed();
    let db = migrate(&cluster).await;
    let (_stack, s) = serve(&db).await;
    let load = Load::start(&s);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The primary's PostgreSQL dies; its Patroni restarts it (or a standby takes over).
    let first = cluster.primary().expect("a primary before the failure");
    cluster.kill_postgres(first).unwrap();
    let crash = recovery(&cluster, None, &s, Instant::now()).await;
    tokio::task::block_in_place(|| cluster.wait_for_roles(Duration::from_secs(60))).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The primary's whole node is lost: a standby is promoted.
    let old = cluster.primary().expect("a primary before the loss");
    cluster.kill_node(old).unwrap();
    let lost = Instant::now();
    let failover = recovery(&cluster, Some(old), &s, lost).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tally = load.stop().await;
    eprintln!(
        "postgres of node{first} killed: writes again after {:?}; node{old} lost: a primary \
         after {:?}, writes again after {:?}; {} answers, {} writes acknowledged, {} JSON 503s",
        crash.writes_after,
        failover.primary_after,
        failover.writes_after,
        tally.answered,
        tally.acknowledged.len(),
        tally.unavailable
    );
    assert!(
        tally.wrong.is_empty(),
        "{} answers were neither 2xx nor the JSON 503: {:#?}",
        tally.wrong.len(),
        &tally.wrong[..tally.wrong.len().min(10)]
    );
    assert!(failover.saw_not_ready, "readiness never turned 503");
    assert!(tally.unavailable > 0, "the losses were felt: some 503s");
    assert_writes_kept(&db, &tally.acknowledged).await;
    assert_worker_serves(&s).await;
    operator_commands_work_on_the_new_primary(&cluster, &db, &s).await;

    // The old primary comes back as a standby (pg_rewind when it diverged).
    let rejoin = Instant::now();
    tokio::task::block_in_place(|| {
        cluster.start_node(old)?;
        cluster.wait_for_roles(Duration::from_secs(60))
    })
    .unwrap();
    let members = cluster.members().unwrap();
    let back = members.iter().find(|m| m.name == format!("node{old}"));
    assert!(back.is_some_and(|m| m.role != Role::Leader), "{members:?}");
    let rewound = cluster.node_log(old).contains("pg_rewind exit code=0");
    eprintln!(
        "cluster up in {cluster_up:?}; node{old} rejoined as a standby in {:?} (pg_rewind ran: \
         {rewound}); {:?} in all",
        rejoin.elapsed(),
        started.elapsed()
    );
}

/// The API and the worker on `db`, once the API is ready, and a user with a workspace.
async fn serve(db: &TestDb) -> ([Killed; 2], Session) {
    let addr = free_addr();
    let api = format!("http://{addr}");
    let stack = start_stack(db, &addr);
    let client = ghostworks_telemetry::http_client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let up = Instant::now();
    while !client
        .get(format!("{api}/health/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "the API is not ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (stack, session(client, api).await)
}

/// Synchronous replication: every write the API acknowledged is on the new primary.
async fn assert_writes_kept(db: &TestDb, acknowledged: &[String]) {
    let pool = ghostworks_db::connect(&db.admin_url, 1, "failover-test")
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM artifacts WHERE id::text = ANY($1)")
        .bind(acknowledged)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        stored as usize,
        acknowledged.len(),
        "an acknowledged write was lost"
    );
    pool.close().await;
}

/// The worker, never restarted, still runs jobs: a registration's verification e-mail arrives.
async fn assert_worker_serves(s: &Session) {
    let email = format!("{}@example.com", unique("after"));
    let r = s
        .client
        .post(format!("{}/api/v1/auth/register", s.api))
        .json(&json!({"email": email, "password": PASSWORD, "first_name": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "registration accepted");
    services().mail_to(&email, 1, Duration::from_secs(30)).await;
}

/// Registers a user, logs in and creates a workspace.
async fn session(client: reqwest::Client, api: String) -> Session {
    let email = format!("{}@example.com", unique("ha"));
    let r = client
        .post(format!("{api}/api/v1/auth/register"))
        .json(&json!({"email": email, "password": PASSWORD, "first_name": "H"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "registration accepted");
    let login: Value = client
        .post(format!("{api}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_string();
    let slug = unique("ha-");
    let ws: Value = client
        .post(format!("{api}/api/v1/workspaces/"))
        .bearer_auth(&token)
        .json(&json!({"name": "HA", "slug": slug}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = format!(
        "{api}/api/v1/workspaces/{}/artifacts",
        ws["id"].as_str().unwrap()
    );
    Session {
        client,
        api,
        token,
        path,
        slug,
    }
}
