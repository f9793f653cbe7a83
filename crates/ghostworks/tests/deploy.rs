//! Blue/green deploys through the process runtime behind a real nginx (Debian's package), under
//! a steady loopback load of reads and writes: a good release switches with zero failed
//! requests and every acknowledged write kept; a release that never gets ready and one that
//! answers 5% errors during the bake are both rolled back automatically, and the history says
//! why. Behind HAProxy (`--proxy haproxy`), switches keep keep-alive clients' connections, and
//! canaries walk their steps or are aborted by their analysis.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ghostworks_testkit::{services, TestDb};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect(
            "nginx is missing: apt-get install nginx-light (scripts/install-deps.sh installs it)",
        )
}

/// A free base port: base, base+1 (api blue/green), base+10, base+11 (worker) and base+20,
/// base+21 (web) all free.
/// Below Linux's ephemeral ports (32768 up): a port free here cannot be taken before the
/// deploy binds it by an outgoing connection, such as a database pool's, which would hold it
/// for minutes.
fn free_base() -> u16 {
    loop {
        let base = 20000 + rand_u16() % 12000;
        if [0, 1, 10, 11, 20, 21]
            .iter()
            .all(|o| std::net::TcpListener::bind(("127.0.0.1", base + o)).is_ok())
        {
            return base;
        }
    }
}

fn rand_u16() -> u16 {
    (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    fn start(blue_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let port = ghostworks_devstack::free_port().unwrap();
        for (upstream, offset) in [("api", 0), ("web", 20)] {
            std::fs::write(
                dir.path().join(format!("upstream-{upstream}.conf")),
                format!("server 127.0.0.1:{};\n", blue_port + offset),
            )
            .unwrap();
        }
        // The shipped deploy/nginx/nginx.conf's proxying, without its per-address rate limits
        // (all of this load comes from one loopback address) and Docker's resolver.
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 upstream api {{\n    include {d}/upstream-api.conf;\n    keepalive 32;\n  }}\n\
                 upstream web {{\n    include {d}/upstream-web.conf;\n    keepalive 32;\n  }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n    proxy_set_header X-Forwarded-For $remote_addr;\n\
                 proxy_next_upstream error timeout http_502 http_503;\n\
                 location /api/ {{ proxy_pass http://api; }}\n\
                 location /health {{ proxy_pass http://api; }}\n\
                 location / {{ proxy_pass http://web; }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new(nginx_binary())
            .args(["-p", &d, "-c", &format!("{d}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nginx { child, dir, port }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator's environment besides PATH and DATABASE_ADMIN_URL.
const OPERATOR_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "AKIADEPLOYTEST"),
    ("AWS_SECRET_ACCESS_KEY", "deploy-test-aws-secret"),
    ("LANG", "C.UTF-8"),
    ("TZ", "UTC"),
];

/// Everything a deploy of one test needs.
struct Stage {
    db: TestDb,
    nginx: Nginx,
    base: u16,
    state: tempfile::TempDir,
    /// The api frontend's port of the deploy's HAProxy (the web app's is one above), when the
    /// stage switches through it.
    haproxy: Option<u16>,
}

/// Two free consecutive ports, below the ephemeral range (see [`free_base`]).
fn free_pair() -> u16 {
    loop {
        let p = 20000 + rand_u16() % 12000;
        if (0..2).all(|o| std::net::TcpListener::bind(("127.0.0.1", p + o)).is_ok()) {
            return p;
        }
    }
}

impl Stage {
    async fn new() -> Self {
        Self::build(false).await
    }

    /// A stage whose deploys switch through an HAProxy they start (`--proxy haproxy`).
    async fn behind_haproxy() -> Self {
        Self::build(true).await
    }

    async fn build(haproxy: bool) -> Self {
        let db = services().database().await.unwrap();
        let base = free_base();
        let nginx = Nginx::start(base);
        let state = tempfile::tempdir().unwrap();
        let common = "GHOSTWORKS_ENV=development\nLOG_FORMAT=json\nLOG_LEVEL=warn\n\
                      RATE_LIMIT_ENABLED=false\n\
                      JWT_SECRET_KEY=deploy-test-secret-key-of-at-least-32-bytes\n";
        std::fs::write(
            state.path().join("api.env"),
            format!(
                "{common}DATABASE_URL={}\nREDIS_URL={}\n",
                db.app_url,
                services().redis_url()
            ),
        )
        .unwrap();
        std::fs::write(
            state.path().join("worker.env"),
            format!(
                "{common}DATABASE_URL={}\nSMTP_URL={}\nJOB_POLL_SECONDS=1\n",
                db.worker_url,
                services().smtp().url()
            ),
        )
        .unwrap();
        // The web role needs only the common settings: the deploy gives it its colour's API.
        std::fs::write(state.path().join("web.env"), common).unwrap();
        let stage = Stage {
            db,
            nginx,
            base,
            state,
            haproxy: haproxy.then(free_pair),
        };
        let out = stage.ghostworks(&["seed", "--demo"], &[]);
        assert!(out.status.success(), "{}", text(&out));
        stage
    }

    /// `ghostworks` in an operator's environment: the schema owner's URL and cloud keys, which
    /// no deployed role may inherit, beside a locale and time zone, which every role does.
    fn ghostworks(&self, args: &[&str], extra: &[&str]) -> Output {
        let s = self.state.path();
        Command::new(BIN)
            .args(args)
            .args(extra)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .envs(OPERATOR_ENV.iter().copied())
            .env("DATABASE_ADMIN_URL", &self.db.admin_url)
            .env("GHOSTWORKS_DEPLOY_STATE", s.join("deploy"))
            .env("BACKUP_DIR", s.join("backups"))
            .output()
            .expect("binary runs")
    }

    /// The options of a deploy and a rollback on this stage, with test-sized timings.
    fn release_args(&self) -> Vec<String> {
        let s = self.state.path();
        let mut args = vec![
            "--base-port".to_string(),
            self.base.to_string(),
            "--upstream-dir".into(),
            self.nginx.dir.path().display().to_string(),
            "--nginx-pid-file".into(),
            self.nginx
                .dir
                .path()
                .join("nginx.pid")
                .display()
                .to_string(),
            "--drain-secs".into(),
            "1".into(),
        ];
        for role in ["api", "worker", "web"] {
            args.push("--env-file".into());
            args.push(format!(
                "{role}={}",
                s.join(format!("{role}.env")).display()
            ));
        }
        if let Some(port) = self.haproxy {
            args.extend(["--proxy".into(), "haproxy".into()]);
            args.extend(["--haproxy-port".into(), port.to_string()]);
        }
        args
    }

    /// `ghostworks deploy` of `release`.
    fn deploy(&self, release: &Path, label: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "deploy".to_string(),
            "--release".into(),
            release.display().to_string(),
            "--label".into(),
            label.into(),
        ];
        args.extend(self.release_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ghostworks(&args, extra)
    }

    /// `ghostworks rollback` to the previous release.
    fn rollback(&self, extra: &[&str]) -> Output {
        let mut args = vec!["rollback".to_string()];
        args.extend(self.release_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ghostworks(&args, extra)
    }

    /// Where the load goes: the deploy's HAProxy, else nginx.
    fn entry_port(&self) -> u16 {
        self.haproxy.unwrap_or(self.nginx.port)
    }

    /// A release that is the real binary behind a wrapper script exporting `env` for `serve`.
    fn wrapper(&self, name: &str, env: &str) -> PathBuf {
        let path = self.state.path().join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\nif [ \"$1\" = serve ]; then {env} :; fi\nexec '{BIN}' \"$@\"\n"),
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
        path
    }

    /// `deploy history`, also printed: its timings are the figures in docs/operations.md.
    fn history(&self) -> String {
        let h = text(&self.ghostworks(&["deploy", "history"], &[]));
        eprintln!("{h}");
        h
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // The deploy's HAProxy outlives the deploy by design; the test stops it.
        let haproxy = self.state.path().join("deploy/haproxy/haproxy.pid");
        if let Ok(pid) = std::fs::read_to_string(haproxy) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        // Whatever colour is still running belongs to this test.
        for colour in ["blue", "green"] {
            let file = self
                .state
                .path()
                .join("deploy")
                .join(format!("{colour}.pids.json"));
            if let Ok(bytes) = std::fs::read(file) {
                let pids: Vec<Value> = serde_json::from_slice(&bytes).unwrap_or_default();
                for p in pids {
                    let _ = Command::new("kill")
                        .arg(p["pid"].as_u64().unwrap_or(0).to_string())
                        .status();
                }
            }
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The clients of a [`Load`].
#[derive(Clone, Copy)]
struct Shape {
    /// Tasks alternating a write (create an artifact) and a read (list), 20 ms apart.
    mixed: usize,
    /// Tasks reading back to back.
    readers: usize,
    /// Tasks asking a colour's liveness (`/health`, no database) back to back: requests
    /// through the proxy that cost the colours little, so the proxy itself is loaded.
    probes: usize,
    /// Whether connections are reused (a client's pool) or one is opened per request.
    keep_alive: bool,
}

impl Shape {
    /// Four writers on fresh connections (see [`Load::start`]).
    const FRESH: Shape = Shape {
        mixed: 4,
        readers: 0,
        probes: 0,
        keep_alive: false,
    };
    /// Keep-alive readers and writers, the load a switch must not close a connection under.
    const KEEP_ALIVE: Shape = Shape {
        mixed: 2,
        readers: 8,
        probes: 4,
        keep_alive: true,
    };
    /// A lighter keep-alive load for canaries: the machine is not saturated, so latency
    /// reflects the release rather than the queue.
    const STEADY: Shape = Shape {
        mixed: 2,
        readers: 2,
        probes: 0,
        keep_alive: true,
    };
}

/// A steady, bounded load through the proxy: each task writes and reads (or only reads),
/// counting failures and keeping the ids of acknowledged writes.
struct Load {
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    /// Of `requests`, the liveness probes (see [`Shape::probes`]).
    probes: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The listing URL and the bearer token, for other clients of the test.
    url: String,
    token: String,
}

impl Load {
    async fn start(port: u16, shape: Shape) -> Self {
        let base = format!("http://127.0.0.1:{port}");
        // Fresh connections: an nginx reload closes idle keep-alive connections, and a request
        // racing that close fails on any HTTP/1.1 client that does not retry (browsers retry,
        // RFC 9112 9.3.1). Not reusing them makes every failure counted here one of the
        // deploy's. Keep-alive: the bar for a switch that closes nothing (HAProxy's).
        let mut http = ghostworks_telemetry::http_client::builder();
        if !shape.keep_alive {
            http = http.pool_max_idle_per_host(0);
        }
        let http = http.build().unwrap();
        let login = body(
            http.post(format!("{base}/api/v1/auth/login"))
                .json(&json!({"email": "owner@acme.com", "password": "demo123"})),
        )
        .await;
        let token = login["access_token"].as_str().expect("a token").to_string();
        let ws = body(
            http.get(format!("{base}/api/v1/workspaces"))
                .bearer_auth(&token),
        )
        .await;
        let ws = ws[0]["id"].as_str().unwrap().to_string();
        let artifacts = format!("{base}/api/v1/workspaces/{ws}/artifacts");
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            requests: Arc::new(AtomicU64::new(0)),
            probes: Arc::new(AtomicU64::new(0)),
            failures: Arc::new(Mutex::new(Vec::new())),
            acked: Arc::new(Mutex::new(Vec::new())),
            tasks: Vec::new(),
            url: artifacts.clone(),
            token: token.clone(),
        };
        let mut tasks = Vec::new();
        let live = format!("{base}/health");
        for task in 0..shape.mixed + shape.readers + shape.probes {
            let writes = task < shape.mixed;
            let probe = task >= shape.mixed + shape.readers;
            let read_url = if probe {
                live.clone()
            } else {
                format!("{artifacts}?limit=5")
            };
            let (stop, requests, probes, failures, acked) = (
                load.stop.clone(),
                load.requests.clone(),
                load.probes.clone(),
                load.failures.clone(),
                load.acked.clone(),
            );
            let (http, token, url) = (http.clone(), token.clone(), artifacts.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    if writes {
                        let write = http
                            .post(&url)
                            .bearer_auth(&token)
                            .json(&json!({"name": format!("load {task}-{i}"), "tags": ["load"]}))
                            .send()
                            .await;
                        requests.fetch_add(1, Ordering::Relaxed);
                        match answer("POST", write, |s| s == 201).await {
                            Ok(body) => acked
                                .lock()
                                .unwrap()
                                .push(body["id"].as_str().unwrap_or_default().to_string()),
                            Err(f) => failures.lock().unwrap().push(f),
                        }
                    }
                    let read = http.get(&read_url).bearer_auth(&token).send().await;
                    requests.fetch_add(1, Ordering::Relaxed);
                    if probe {
                        probes.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Err(f) = answer("GET", read, |s| s == 200).await {
                        failures.lock().unwrap().push(f);
                    }
                    if writes {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }));
        }
        Load { tasks, ..load }
    }

    /// Stops the load; returns (requests, failures, acknowledged ids).
    async fn finish(self) -> (u64, Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        let acked = self.acked.lock().unwrap().clone();
        (self.requests.load(Ordering::Relaxed), failures, acked)
    }

    fn failures_so_far(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }
}

async fn body(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

/// The JSON body of an expected answer, or a description of the failure.
async fn answer(
    what: &str,
    r: reqwest::Result<reqwest::Response>,
    expected: fn(u16) -> bool,
) -> Result<Value, String> {
    match r {
        Ok(r) if expected(r.status().as_u16()) => Ok(r.json().await.unwrap_or_default()),
        Ok(r) => {
            let status = r.status();
            Err(format!(
                "{what} {status} {}",
                r.text().await.unwrap_or_default()
            ))
        }
        Err(e) => Err(format!("{what} {e:?}")),
    }
}

async fn assert_all_present(db: &TestDb, ids: &[String]) {
    let pool = ghostworks_db::connect(&db.admin_url, 1, "test")
        .await
        .unwrap();
    let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.parse().unwrap()).collect();
    let found: i64 = sqlx::query_scalar("SELECT count(*) FROM artifacts WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(found as usize, ids.len(), "acknowledged writes lost");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_release_switches_under_load_without_a_failed_request() {
    let stage = Arc::new(Stage::new().await);
    let v1 = PathBuf::from(BIN);
    let s = stage.clone();
    let out = blocking(move || s.deploy(&v1, "v1", &["--bake-secs", "1"])).await;
    assert!(out.status.success(), "{}", text(&out));

    let load = Load::start(stage.nginx.port, Shape::FRESH).await;
    let load_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v2 = stage.wrapper("v2", "");
    let s = stage.clone();
    let started = Instant::now();
    let out = blocking(move || s.deploy(&v2, "v2", &["--bake-secs", "3", "--skip-backup"])).await;
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deployed v2"), "{}", text(&out));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // And back to v1 through the same gated path.
    let s = stage.clone();
    let out = blocking(move || s.rollback(&["--bake-secs", "2", "--skip-backup"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deployed v1"), "{}", text(&out));
    // The web role was deployed with it: nginx serves its pages from the live colour.
    let page = reqwest::get(format!("http://127.0.0.1:{}/login", stage.nginx.port))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<form"));
    let web_upstream =
        std::fs::read_to_string(stage.nginx.dir.path().join("upstream-web.conf")).unwrap();
    assert!(
        web_upstream.contains(&format!("127.0.0.1:{} ", stage.base + 20)),
        "{web_upstream}"
    );

    let (requests, failures, acked) = load.finish().await;
    eprintln!(
        "load: {requests} requests in {:.1} s, {} failed",
        load_started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert!(requests > 100, "{requests} requests");
    assert!(
        failures.is_empty(),
        "{} failed of {requests}: {failures:#?}",
        failures.len()
    );
    assert_all_present(&stage.db, &acked).await;
    let history = stage.history();
    assert_eq!(history.matches("succeeded").count(), 3, "{history}");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_releases_are_rolled_back_automatically() {
    let stage = Arc::new(Stage::new().await);
    deploy_v1(&stage).await;
    let load = Load::start(stage.nginx.port, Shape::FRESH).await;

    // Never ready: its api cannot reach Redis.
    let unready = stage.wrapper("unready", "export REDIS_URL=redis://127.0.0.1:1/0;");
    let s = stage.clone();
    let out = blocking(move || {
        s.deploy(
            &unready,
            "unready",
            &["--skip-backup", "--ready-timeout-secs", "4"],
        )
    })
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("failed at step `ready`"),
        "{}",
        text(&out)
    );
    assert!(
        load.failures_so_far().is_empty(),
        "{:#?}",
        load.failures_so_far()
    );

    // Ready, but 5% of its answers are errors: caught during the bake.
    let faulty = stage.wrapper("faulty", "export GHOSTWORKS_FAULT_ERROR_RATIO=0.05;");
    let s = stage.clone();
    let out = blocking(move || {
        s.deploy(
            &faulty,
            "faulty",
            &[
                "--skip-backup",
                "--bake-secs",
                "20",
                "--max-error-ratio",
                "0.01",
                "--min-requests",
                "100",
            ],
        )
    })
    .await;
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("failed at step `bake`") && t.contains("error ratio"),
        "{t}"
    );
    assert!(t.contains("switched back"), "{t}");
    let during_bake = load.failures_so_far();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (requests, failures, acked) = load.finish().await;
    // The only failures are the faulty release's injected 503s (in the API's error envelope),
    // all within the bake: none before it (checked above), none after the switch back.
    assert!(
        failures.iter().all(|f| f.contains(" 503 ")),
        "{failures:#?}"
    );
    assert_eq!(
        failures.len(),
        during_bake.len(),
        "failures after the rollback"
    );
    assert!(
        (failures.len() as u64) < requests / 10,
        "{} of {requests}",
        failures.len()
    );
    assert_all_present(&stage.db, &acked).await;

    let history = stage.history();
    assert!(
        history.contains("failed") && history.contains("ready: "),
        "{history}"
    );
    assert!(
        history.contains("rolled_back") && history.contains("bake: error ratio"),
        "{history}"
    );
    // v1 still serves.
    let http = ghostworks_telemetry::http_client::client();
    let r = http
        .get(format!(
            "http://127.0.0.1:{}/health/ready",
            stage.nginx.port
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Blue/green through HAProxy under a keep-alive load of reads and writes on reused
/// connections: deploy, deploy and rollback, and not one request or connection fails; every
/// acknowledged write is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn haproxy_switches_close_no_keep_alive_connection() {
    let stage = Arc::new(Stage::behind_haproxy().await);
    deploy_v1(&stage).await;

    let load = Load::start(stage.entry_port(), Shape::KEEP_ALIVE).await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    for label in ["v2", "v3"] {
        let release = stage.wrapper(label, "");
        let s = stage.clone();
        let out =
            blocking(move || s.deploy(&release, label, &["--bake-secs", "2", "--skip-backup"]))
                .await;
        assert!(out.status.success(), "{}", text(&out));
    }
    let s = stage.clone();
    let out = blocking(move || s.rollback(&["--bake-secs", "2", "--skip-backup"])).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deployed v2"), "{}", text(&out));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let probes = load.probes.load(Ordering::Relaxed);
    let (requests, failures, acked) = load.finish().await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "keep-alive load through haproxy: {requests} requests in {secs:.1} s ({:.0}/s; \
         {} writes acknowledged, {} artifact lists, {probes} liveness probes), {} failed",
        requests as f64 / secs,
        acked.len(),
        requests - probes - acked.len() as u64,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed of {requests}: {failures:#?}",
        failures.len()
    );
    assert!(requests > 1000, "{requests} requests");
    assert_all_present(&stage.db, &acked).await;
    let history = stage.history();
    assert_eq!(history.matches("succeeded").count(), 4, "{history}");
}

/// A browser: reads with the HAProxy cookie it adopted (the first one naming `colour`) and
/// records which colour served each read from then on.
fn browser(
    load: &Load,
    colour: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    let (url, token) = (format!("{}?limit=1", load.url), load.token.clone());
    tokio::spawn(async move {
        let http = ghostworks_telemetry::http_client::client();
        let mut cookie: Option<String> = None;
        let mut served = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut r = http.get(&url).bearer_auth(&token);
            if let Some(c) = &cookie {
                r = r.header("cookie", c);
            }
            let r = match r.send().await {
                Ok(r) => r,
                Err(e) => {
                    served.push(format!("failed: {e}"));
                    break;
                }
            };
            let header = |name: &str| {
                r.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            let by = header("x-ghostworks-colour");
            let set = header("set-cookie");
            if cookie.is_some() {
                served.push(by);
            } else if set.starts_with(&format!("GWCOLOR={colour};")) {
                cookie = set.split(';').next().map(str::to_string);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    })
}

/// The history as JSON (`deploy history --json`).
fn history_json(stage: &Stage) -> Vec<Value> {
    let out = stage.ghostworks(&["deploy", "history", "--json"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The colour that serves a request without a cookie, asked `n` times.
async fn serving(stage: &Stage, load: &Load, n: usize) -> Vec<String> {
    let http = ghostworks_telemetry::http_client::client();
    let mut colours = Vec::new();
    for _ in 0..n {
        let r = http
            .get(format!("{}?limit=1", load.url))
            .bearer_auth(&load.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "through port {}", stage.entry_port());
        colours.push(
            r.headers()["x-ghostworks-colour"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    colours
}

const CANARY: &[&str] = &[
    "--strategy",
    "canary",
    "--steps",
    "20,50,100",
    "--step-secs",
    "3",
    "--min-step-requests",
    "100",
    "--inconclusive-max-secs",
    "20",
    "--skip-backup",
];

/// A good release walks every canary step to 100 % with no failed request, and a browser
/// holding a colour's cookie stays on it while that colour takes traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_canary_walks_every_step_and_browsers_keep_their_colour() {
    let stage = Arc::new(Stage::behind_haproxy().await);
    deploy_v1(&stage).await;
    let load = Load::start(stage.entry_port(), Shape::STEADY).await;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (on_blue, on_green) = (
        browser(&load, "blue", stop.clone()),
        browser(&load, "green", stop.clone()),
    );

    let v2 = stage.wrapper("v2", "");
    let s = stage.clone();
    let out = blocking(move || s.deploy(&v2, "v2", CANARY)).await;
    assert!(out.status.success(), "{}", text(&out));
    stop.store(true, Ordering::Relaxed);
    let (on_blue, on_green) = (on_blue.await.unwrap(), on_green.await.unwrap());
    assert!(serving(&stage, &load, 5).await.iter().all(|c| c == "green"));
    let (requests, failures, acked) = load.finish().await;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "canary under load: {requests} requests in {secs:.1} s ({:.0}/s), {} failed",
        requests as f64 / secs,
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_all_present(&stage.db, &acked).await;

    let last = history_json(&stage).pop().unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&last["steps"]).unwrap());
    assert_eq!(last["result"], "succeeded", "{last}");
    assert_eq!(last["strategy"], "canary");
    let steps = last["steps"].as_array().unwrap();
    let percents: Vec<u64> = steps
        .iter()
        .map(|s| s["percent"].as_u64().unwrap())
        .collect();
    assert_eq!(percents, [20, 50, 100]);
    assert!(steps.iter().all(|s| s["verdict"] == "pass"), "{last}");
    assert!(last["config_hash"].as_str().unwrap().starts_with("sha256:"));
    assert!(last["schema_before"].as_i64().is_some(), "{last}");
    // What the operations page shows (DEPLOY_STATE_DIR): the finished rollout.
    let rollout: Value = serde_json::from_slice(
        &std::fs::read(stage.state.path().join("deploy/rollout.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&rollout["state"], &rollout["percent"], &rollout["canary"]),
        (&json!("succeeded"), &json!(100), &json!("green"))
    );
    assert_eq!(rollout["steps"], last["steps"]);
    // The canary's cookie kept its holder on green throughout; the stable one's kept blue
    // until blue was retired, then moved once, to green.
    assert!(
        !on_green.is_empty() && on_green.iter().all(|c| c == "green"),
        "{on_green:?}"
    );
    let moved = on_blue
        .iter()
        .position(|c| c == "green")
        .unwrap_or(on_blue.len());
    assert!(moved > 0, "{on_blue:?}");
    assert!(
        on_blue[..moved].iter().all(|c| c == "blue")
            && on_blue[moved..].iter().all(|c| c == "green"),
        "{on_blue:?}"
    );
}

/// The first release, v1 (this build), on blue.
async fn deploy_v1(stage: &Arc<Stage>) {
    let v1 = PathBuf::from(BIN);
    let s = stage.clone();
    let out = blocking(move || s.deploy(&v1, "v1", &["--bake-secs", "1", "--skip-backup"])).await;
    assert!(out.status.success(), "{}", text(&out));
}

/// Deploys `release` as a canary that its analysis must abort on `signal` (the end of a
/// check's name); checks the clean return (the canary stopped, new sessions on blue, the
/// history naming the step) and returns the steps the history recorded, the failed one last.
async fn aborted_canary(
    stage: &Arc<Stage>,
    load: &Load,
    release: PathBuf,
    label: &'static str,
    signal: &str,
) -> Vec<Value> {
    let s = stage.clone();
    let out = blocking(move || s.deploy(&release, label, CANARY)).await;
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("failed at step `canary`") && t.contains(&format!("{signal} Fail")),
        "{t}"
    );
    let last = history_json(stage).pop().unwrap();
    eprintln!("{}", serde_json::to_string_pretty(&last["steps"]).unwrap());
    assert_eq!(
        (&last["result"], &last["failed_step"]),
        (&json!("rolled_back"), &json!("canary"))
    );
    let steps = last["steps"].as_array().unwrap().clone();
    let failed = steps.last().unwrap();
    assert_eq!(failed["verdict"], "fail", "{failed}");
    assert!(
        failed["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["signal"].as_str().unwrap().ends_with(signal) && c["verdict"] == "fail"),
        "{failed}"
    );
    assert!(!stage.state.path().join("deploy/green.pids.json").exists());
    assert!(serving(stage, load, 10).await.iter().all(|c| c == "blue"));
    let rollout: Value = serde_json::from_slice(
        &std::fs::read(stage.state.path().join("deploy/rollout.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&rollout["state"], &rollout["percent"]),
        (&json!("aborted"), &json!(0))
    );
    steps
}

/// A release slower than the live one (injected latency) is aborted at the first step, and
/// so are one answering 2 % errors against none and one holding far more memory: traffic back on the live colour, the
/// canary stopped, the history naming the step, the signals and their values. A dry run of
/// the analysis records the slow release's verdicts without acting on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canaries_worse_than_the_live_release_are_aborted() {
    let stage = Arc::new(Stage::behind_haproxy().await);
    deploy_v1(&stage).await;
    let load = Load::start(stage.entry_port(), Shape::STEADY).await;

    let slow = stage.wrapper("slow", "export GHOSTWORKS_FAULT_LATENCY_MS=40;");
    let steps = aborted_canary(&stage, &load, slow, "slow", "_ms").await;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0]["percent"], 20);
    // The first latency check with enough observations fails it (p95 needs 100, p99 500).
    let checks = steps[0]["checks"].as_array().unwrap();
    for c in &checks[1..3] {
        eprintln!(
            "slow canary: {} {:.1} ms against {:.1} ms ({:.1}x), {}",
            c["signal"],
            c["canary"].as_f64().unwrap(),
            c["stable"].as_f64().unwrap(),
            c["canary"].as_f64().unwrap() / c["stable"].as_f64().unwrap(),
            c["verdict"]
        );
    }
    eprintln!(
        "slow canary: {} of {} requests in its step reached it",
        steps[0]["canary_requests"],
        steps[0]["canary_requests"].as_u64().unwrap()
            + steps[0]["stable_requests"].as_u64().unwrap()
    );
    assert!(
        load.failures_so_far().is_empty(),
        "{:#?}",
        load.failures_so_far()
    );

    let faulty = stage.wrapper("faulty", "export GHOSTWORKS_FAULT_ERROR_RATIO=0.02;");
    aborted_canary(&stage, &load, faulty, "faulty", "error_ratio").await;

    // Saturation: a release holding 400 MiB more than the live one, as fast and as correct.
    let bloated = stage.wrapper("bloated", "export GHOSTWORKS_FAULT_BALLAST_MIB=400;");
    let steps = aborted_canary(&stage, &load, bloated, "bloated", "resident_mib").await;
    assert_eq!(steps.len(), 1);
    let memory = &steps[0]["checks"].as_array().unwrap()[3];
    eprintln!(
        "bloated canary: {:.0} MiB resident against {:.0} MiB",
        memory["canary"].as_f64().unwrap(),
        memory["stable"].as_f64().unwrap()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (requests, failures, acked) = load.finish().await;
    // The only failures are the faulty canary's injected 503s.
    assert!(
        failures.iter().all(|f| f.contains(" 503 ")),
        "{failures:#?}"
    );

    // A dry run of the analysis records the slow release's failed verdicts and walks on.
    let load = Load::start(stage.entry_port(), Shape::STEADY).await;
    let slow = stage.state.path().join("slow");
    let s = stage.clone();
    let out = blocking(move || {
        let mut args = CANARY.to_vec();
        args.push("--dry-run-analysis");
        s.deploy(&slow, "slow", &args)
    })
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let last = history_json(&stage).pop().unwrap();
    assert_eq!(
        (&last["result"], &last["dry_run_analysis"]),
        (&json!("succeeded"), &json!(true))
    );
    let verdicts: Vec<&Value> = last["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["verdict"])
        .collect();
    assert_eq!(verdicts.len(), 3, "{last}");
    assert_eq!(verdicts[0], "fail", "{last}");
    assert!(serving(&stage, &load, 5).await.iter().all(|c| c == "green"));
    assert!(load.finish().await.1.is_empty());
    eprintln!(
        "{} of {requests} requests failed (the faulty canary's)",
        failures.len()
    );
    assert_all_present(&stage.db, &acked).await;
}

/// (pid, parent pid, process group) of every live process.
fn processes() -> Vec<(u32, u32, u32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            let pid = stat.split_whitespace().next()?.parse().ok()?;
            let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            if rest[0] == "Z" {
                return None;
            }
            Some((pid, rest[1].parse().ok()?, rest[2].parse().ok()?))
        })
        .collect()
}

/// The supervisor's pid of `role` in `colour`, from the runtime's pid file.
fn supervisor(stage: &Stage, colour: &str, role: &str) -> u32 {
    let file = stage
        .state
        .path()
        .join("deploy")
        .join(format!("{colour}.pids.json"));
    let pids: Vec<Value> = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let p = pids.iter().find(|p| p["role"] == role).unwrap();
    p["pid"].as_u64().unwrap() as u32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_api_is_restarted_and_a_stop_leaves_nothing_behind() {
    let stage = Arc::new(Stage::new().await);
    deploy_v1(&stage).await;

    let sup = supervisor(&stage, "blue", "api");
    let api = |ppid| processes().into_iter().find(|p| p.1 == ppid).map(|p| p.0);
    let crashed = api(sup).expect("the supervised api");
    let killed = Instant::now();
    Command::new("kill")
        .args(["-KILL", &crashed.to_string()])
        .status()
        .unwrap();
    let ready = format!("http://127.0.0.1:{}/health/ready", stage.nginx.port);
    let http = ghostworks_telemetry::http_client::client();
    loop {
        let restarted = api(sup).is_some_and(|p| p != crashed);
        let status = http.get(&ready).send().await.map(|r| r.status().as_u16());
        if restarted && matches!(status, Ok(200)) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the api is not back through nginx 10 s after a crash (last answer: {status:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "the api answered through nginx again {} ms after it was killed",
        killed.elapsed().as_millis()
    );
    let status = text(&stage.ghostworks(&["deploy", "status"], &[]));
    eprintln!("{status}");
    let api_line = status.lines().find(|l| l.starts_with("api ")).unwrap();
    let columns: Vec<&str> = api_line.split_whitespace().collect();
    assert_eq!(
        columns[1..5],
        [
            "running",
            &sup.to_string(),
            &api(sup).unwrap().to_string(),
            "1"
        ]
    );
    assert!(api_line.contains("SIGKILL"), "{status}");
    let log = std::fs::read_to_string(stage.state.path().join("deploy/logs/blue-api.log")).unwrap();
    assert!(log.contains("restarting it after the backoff"), "{log}");

    // Replacing blue stops it through its supervisor: drained within the stop timeout (else
    // the deploy fails, naming the killed role), and nothing of its process group is left.
    let v2 = stage.wrapper("v2", "");
    let s = stage.clone();
    let out = blocking(move || s.deploy(&v2, "v2", &["--bake-secs", "1", "--skip-backup"])).await;
    assert!(out.status.success(), "{}", text(&out));
    let worker = supervisor(&stage, "green", "worker");
    assert!(worker != sup);
    let left: Vec<_> = processes().into_iter().filter(|p| p.2 == sup).collect();
    assert!(left.is_empty(), "left behind by the stop: {left:?}");
}

/// The environment of process `pid`, from /proc.
fn environ(pid: u32) -> HashMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap()
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let (k, v) = std::str::from_utf8(entry).ok()?.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Each deployed role (its supervisor and the role itself) holds exactly its env file, the
/// allow-listed variables of the operator's environment and what the deploy sets: none of the
/// operator's credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployed_roles_hold_their_env_file_and_the_allow_list_only() {
    let stage = Arc::new(Stage::new().await);
    deploy_v1(&stage).await;

    let live = processes();
    let path = std::env::var("PATH").unwrap();
    let api_url = format!("http://127.0.0.1:{}", stage.base);
    for (role, bind, offset) in [
        ("api", "GHOSTWORKS_BIND", 0),
        ("worker", "WORKER_BIND", 10),
        ("web", "WEB_BIND", 20),
    ] {
        let file = std::fs::read_to_string(stage.state.path().join(format!("{role}.env")));
        let mut expected: HashMap<String, String> =
            ghostworks_config::parse_env_file(&file.unwrap());
        expected.extend(
            [
                ("PATH", path.as_str()),
                ("LANG", "C.UTF-8"),
                ("TZ", "UTC"),
                (bind, &format!("127.0.0.1:{}", stage.base + offset)),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        if role == "web" {
            expected.insert("API_URL".into(), api_url.clone());
        }
        let sup = supervisor(&stage, "blue", role);
        let (pid, _, _) = *live
            .iter()
            .find(|p| p.1 == sup)
            .unwrap_or_else(|| panic!("no {role} under its supervisor {sup}"));
        for pid in [sup, pid] {
            let mut env = environ(pid);
            // Under coverage, LLVM's profiling runtime marks its own process environment.
            env.retain(|k, _| !k.starts_with("__LLVM_PROFILE_"));
            for leaked in [
                "DATABASE_ADMIN_URL",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_ACCESS_KEY_ID",
            ] {
                assert!(
                    !env.contains_key(leaked),
                    "{role} (pid {pid}) holds {leaked}"
                );
            }
            assert_eq!(env, expected, "{role} (pid {pid})");
        }
    }
}

#[test]
fn supervise_gives_up_on_a_command_that_keeps_failing() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let status_file = dir.path().join("status.json");
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["supervise", "--max-failures", "3", "--status-file"])
        .arg(&status_file)
        .args(["--", "sh", "-c"])
        .arg(format!("echo run >> '{}'; exit 3", runs.display()))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("failed 3 times in a row")
            && t.contains("exit status: 3")
            && t.contains("giving up"),
        "{t}"
    );
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 3);
    let status: Value = serde_json::from_slice(&std::fs::read(&status_file).unwrap()).unwrap();
    assert_eq!(status["restarts"], 2, "{status}");
    // Backoffs of 0.5 s and 1 s.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );
}

/// The `sha256:HEX` digest the history records for the binary at `path`.
fn digest(path: &Path) -> String {
    use sha2::Digest;
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
    )
}

/// A state directory whose history holds two succeeded releases, 1.0 on blue then `live` (1.1)
/// on green, which is active.
fn two_releases(dir: &Path, target: Value, live: Value) {
    let entry = |release: &Value, schema: i64, colour: &str| {
        json!({
            "time": "2026-11-01T00:00:00Z", "release": release, "colour": colour,
            "schema_version": schema, "result": "succeeded", "failed_step": null,
            "reason": null, "by": "ops", "duration_ms": 1, "switch_ms": 1, "rollback_ms": null
        })
    };
    std::fs::write(
        dir.join("history.jsonl"),
        format!(
            "{}\n{}\n",
            entry(&target, 9, "blue"),
            entry(&live, 10, "green")
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("active.json"),
        json!({"colour": "green", "release": live}).to_string(),
    )
    .unwrap();
}

fn release(version: &str, artifact: &Path, digest: &str) -> Value {
    json!({"artifact": artifact, "version": version, "git_sha": "abc", "digest": digest})
}

/// `ghostworks rollback` on the state directory `state`.
fn rollback(db: &TestDb, state: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("rollback")
        .args(extra)
        .env("DATABASE_ADMIN_URL", &db.admin_url)
        .env("GHOSTWORKS_DEPLOY_STATE", state)
        .output()
        .unwrap()
}

/// A rollback is checked against the migrations applied to the database, as the live release
/// reports them: one newer than the target's schema that the live release cannot vouch for
/// (here unknown to it, as a contract step of a newer, failed release would be) refuses it
/// before anything runs, unless forced.
#[tokio::test]
async fn rollbacks_past_newer_migrations_are_refused_unless_forced() {
    let db = services().database().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    // The live release's binary reports the migration status the rollback is judged on.
    let gone = Path::new("/nonexistent/1.0/ghostworks");
    two_releases(
        state.path(),
        release("1.0", gone, "sha256:0"),
        release("1.1", Path::new(BIN), &digest(Path::new(BIN))),
    );
    let pool = ghostworks_db::connect(&db.admin_url, 1, "test")
        .await
        .unwrap();
    // The newest migration this build ships, and one past it.
    let latest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'drop legacy names', true, '\\x00', 1)",
    )
    .bind(latest + 1)
    .execute(&pool)
    .await
    .unwrap();

    let out = rollback(&db, state.path(), &[]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("refusing to roll back to 1.0")
            && t.contains("schema version 9")
            && t.contains(&format!("{:04} (drop legacy names)", latest + 1))
            && t.contains("--force-past-contract"),
        "{t}"
    );
    // Nothing was attempted.
    let history = std::fs::read_to_string(state.path().join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 2);

    // Forced, the rollback goes ahead: here to the check of the target's digest, which finds
    // no binary.
    let out = rollback(
        &db,
        state.path(),
        &["--force-past-contract", "--skip-backup"],
    );
    let t = text(&out);
    assert!(
        !out.status.success()
            && t.contains("/nonexistent/1.0/ghostworks is not a file")
            && !t.contains("refusing to roll back"),
        "{t}"
    );
}

/// A rollback runs the release the history recorded, not whatever sits at its path now: a
/// replaced binary (the target's, or the live one the guard runs) is refused before it runs,
/// naming the path and both digests, and nothing is started, switched or recorded.
#[tokio::test]
async fn rollbacks_to_a_replaced_binary_are_refused_before_it_runs() {
    let db = services().database().await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let target = dir.join("1.0-ghostworks");
    std::fs::copy(BIN, &target).unwrap();
    let recorded = digest(&target);
    // Whatever replaces it leaves a mark when it runs.
    let ran = dir.join("replacement-ran");
    let replace = |path: &Path| {
        std::fs::write(
            path,
            format!(
                "#!/bin/sh\ntouch '{}'\nexec '{BIN}' \"$@\"\n",
                ran.display()
            ),
        )
        .unwrap();
        Command::new("chmod").arg("+x").arg(path).status().unwrap();
    };
    replace(&target);
    let live = dir.join("1.1-ghostworks");
    std::fs::copy(BIN, &live).unwrap();
    two_releases(
        dir,
        release("1.0", &target, &recorded),
        release("1.1", &live, &digest(&live)),
    );
    let before = std::fs::read_to_string(dir.join("history.jsonl")).unwrap();
    let expect_refusal = |out: Output, path: &Path, version: &str, expected: &str| {
        let t = text(&out);
        let found = digest(path);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains(&format!("refusing to run {version} again"))
                && t.contains(&path.display().to_string())
                && t.contains(&format!("expected {expected}, found {found}"))
                && t.contains("ghostworks deploy --release"),
            "{t}"
        );
        assert!(!ran.exists(), "the replaced binary ran");
        assert_eq!(
            std::fs::read_to_string(dir.join("history.jsonl")).unwrap(),
            before
        );
        for colour in ["blue", "green"] {
            assert!(!dir.join(format!("{colour}.pids.json")).exists(), "{t}");
        }
    };
    let out = rollback(&db, dir, &["--skip-backup"]);
    expect_refusal(out, &target, "1.0", &recorded);

    // The live release's binary, which the guard runs for the migration status, is checked
    // the same way before it runs.
    let live_digest = digest(&live);
    replace(&live);
    let out = rollback(&db, dir, &["--skip-backup"]);
    expect_refusal(out, &live, "1.1", &live_digest);
}
