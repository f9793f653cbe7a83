//! The observability stack against the real binaries: a real Prometheus server scrapes a
//! running API and worker, and the shipped dashboards and alert rules query only metrics a
//! live scrape of each role shows.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ghostworks_deploy_checks::metrics::{
    dashboard_queries, promtool_lint, rule_expressions, ExportedMetrics,
};
use ghostworks_deploy_checks::{assert_no_violations, files_under, repo_root, require_tool};
use ghostworks_testkit::{services, unique, TestDb};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");
const PASSWORD: &str = "Str0ng!Passw0rd";

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// A child process killed when the test ends, however it ends, with what it printed.
struct Running {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Running {
    fn output(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        format!("--- {:?} ---\n{text}", self.child.id())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(cmd: &mut Command) -> Running {
    let log = tempfile::NamedTempFile::new().unwrap();
    let child = cmd
        .stdout(log.reopen().unwrap())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    Running { child, log }
}

/// Polls `ok` until it holds; past `timeout`, fails with the output of `processes`.
async fn wait_for(
    what: &str,
    timeout: Duration,
    processes: &[Running],
    mut ok: impl AsyncFnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !ok().await {
        if Instant::now() > deadline {
            let logs: Vec<String> = processes.iter().map(Running::output).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ghostworks <role>` with only `env` (and PATH) set.
fn ghostworks(role: &str, env: &[(&str, &str)]) -> Running {
    spawn(
        Command::new(BIN)
            .arg(role)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GHOSTWORKS_ENV", "development")
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied()),
    )
}

/// `ghostworks serve` and `ghostworks worker` on free loopback ports, sharing a fresh database.
struct Stack {
    api: String,
    worker: String,
    client: reqwest::Client,
    processes: [Running; 2],
    db: TestDb,
}

impl Stack {
    async fn start() -> Stack {
        let svc = services();
        let db = svc.database().await.expect("a test database");
        let (api, worker) = (free_addr(), free_addr());
        let prefix = unique("obs");
        let serve = ghostworks(
            "serve",
            &[
                ("DATABASE_URL", db.app_url.as_str()),
                ("REDIS_URL", svc.redis_url()),
                ("REDIS_KEY_PREFIX", prefix.as_str()),
                ("JWT_SECRET_KEY", "obs-test-secret-0123456789abcdef0123456"),
                ("GHOSTWORKS_BIND", api.as_str()),
                ("REQUIRE_EMAIL_VERIFICATION", "false"),
            ],
        );
        // A relay that refuses connections: every e-mail attempt fails and is retried.
        let smtp = format!("smtp://{}", free_addr());
        let work = ghostworks(
            "worker",
            &[
                ("DATABASE_URL", db.worker_url.as_str()),
                ("SMTP_URL", smtp.as_str()),
                ("WORKER_BIND", worker.as_str()),
                ("JOB_POLL_SECONDS", "1"),
            ],
        );
        let stack = Stack {
            api: format!("http://{api}"),
            worker: format!("http://{worker}"),
            client: ghostworks_telemetry::http_client::client(),
            processes: [serve, work],
            db,
        };
        for url in [
            format!("{}/health/ready", stack.api),
            format!("{}/health", stack.worker),
        ] {
            wait_for(
                &url,
                Duration::from_secs(30),
                &stack.processes,
                async || stack.get(&url).await.is_some(),
            )
            .await;
        }
        stack
    }

    /// The body of a successful GET, or None.
    async fn get(&self, url: &str) -> Option<String> {
        let r = self.client.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.text().await.ok()
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut r = self.client.post(format!("{}{path}", self.api)).json(&body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.expect("request sent");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Registers and logs in; returns the access token.
    async fn user(&self) -> String {
        let email = format!("{}@example.com", unique("obs"));
        let body = json!({"email": email, "password": PASSWORD, "first_name": "O"});
        let (s, reg) = self.post("/api/v1/auth/register", None, body).await;
        assert_eq!(s, 202, "{reg}");
        let (s, login) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, 200, "{login}");
        login["access_token"].as_str().unwrap().to_string()
    }

    /// Requests that give every labelled metric of both roles a series: both login outcomes,
    /// a workspace, an artifact, a cross-tenant request, a rate-limited registration; and
    /// jobs the worker has run to each outcome (succeeded, retried, dead).
    async fn workload(&self) {
        let owner = self.user().await;
        let outsider = self.user().await;
        let (s, _) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": "nobody@example.com", "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, 401);
        let (s, ws) = self
            .post(
                "/api/v1/workspaces/",
                Some(&owner),
                json!({"name": "Obs", "slug": unique("ws-")}),
            )
            .await;
        assert_eq!(s, 201, "{ws}");
        let art = format!(
            "/api/v1/workspaces/{}/artifacts",
            ws["id"].as_str().unwrap()
        );
        let (s, a) = self.post(&art, Some(&owner), json!({"name": "a"})).await;
        assert_eq!(s, 201, "{a}");
        let (s, _) = self.post(&art, Some(&outsider), json!({"name": "b"})).await;
        assert_eq!(s, 404);
        // The registration budget is 5 a minute per client address.
        let mut limited = false;
        for _ in 0..5 {
            let body = json!({"email": format!("{}@example.com", unique("rl")), "password": PASSWORD, "first_name": "R"});
            let (s, _) = self.post("/api/v1/auth/register", None, body).await;
            limited |= s == 429;
        }
        assert!(limited, "no registration was rate limited");
        // A payload that does not fit its kind fails permanently.
        let admin = sqlx::PgPool::connect(&self.db.admin_url).await.unwrap();
        sqlx::query(
            "INSERT INTO jobs (id, kind, payload, max_attempts) \
             VALUES (gen_random_uuid(), 'email.verification', '{}', 3)",
        )
        .execute(&admin)
        .await
        .unwrap();
        let url = format!("{}/metrics", self.worker);
        let outcomes = [
            r#"ghostworks_jobs_succeeded_total{kind="#,
            r#"ghostworks_jobs_retried_total{kind="email.verification"}"#,
            r#"ghostworks_jobs_dead_total{kind="email.verification"}"#,
        ];
        wait_for(
            "jobs of every outcome",
            Duration::from_secs(30),
            &self.processes,
            async || {
                self.get(&url)
                    .await
                    .is_some_and(|m| outcomes.iter().all(|o| m.contains(o)))
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alert_rules_query_only_metrics_a_live_scrape_shows() {
    let stack = Stack::start().await;
    stack.workload().await;
    let api = stack
        .get(&format!("{}/metrics", stack.api))
        .await
        .expect("api /metrics");
    let worker = stack
        .get(&format!("{}/metrics", stack.worker))
        .await
        .expect("worker /metrics");
    // The one malformed job died once; the API counted the refused registrations.
    for (text, line) in [
        (
            &worker,
            r#"ghostworks_jobs_dead_total{kind="email.verification"} 1"#,
        ),
        (&api, r#"rate_limited_requests_total{bucket="register"} 2"#),
        (&api, "user_registrations_total 5"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from\n{text}"
        );
    }
    // Prometheus' own parser reads both expositions, and its linter finds nothing to name.
    assert_eq!(promtool_lint(&api), Vec::<String>::new(), "api /metrics");
    assert_eq!(
        promtool_lint(&worker),
        Vec::<String>::new(),
        "worker /metrics"
    );

    let exported = ExportedMetrics::from_scrapes([
        ("ghostworks-api", api.as_str()),
        ("ghostworks-worker", worker.as_str()),
    ]);
    let root = repo_root();
    let mut v = Vec::new();
    // The PITR dashboard and rules query `ghostworks pitr exporter`, which runs beside
    // PostgreSQL: tests/pitr.rs checks them against a live scrape of it.
    let of_pitr = |name: &str| name.contains("pitr");
    let dashboards = files_under(&root.join("deploy/grafana/dashboards"), &|n| {
        n.ends_with(".json") && !of_pitr(n)
    });
    assert!(!dashboards.is_empty(), "no Grafana dashboard JSON");
    for f in dashboards {
        let name = f.strip_prefix(&root).unwrap().display().to_string();
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{name}: not valid JSON: {e}"));
        let queries = dashboard_queries(&dash);
        if queries.is_empty() {
            v.push(format!("{name}: no queries"));
        }
        for (panel, expr) in queries {
            v.extend(
                exported
                    .violations(&expr)
                    .into_iter()
                    .map(|e| format!("{name}: panel {panel:?}: {e}")),
            );
        }
    }
    let rules = rule_expressions(&root, &root.join("deploy/prometheus/rules"));
    assert!(!rules.is_empty(), "no alert rules");
    for (rule, expr) in rules.into_iter().filter(|(r, _)| !of_pitr(r)) {
        v.extend(
            exported
                .violations(&expr)
                .into_iter()
                .map(|e| format!("{rule}: {e}")),
        );
    }
    assert_no_violations("metrics the dashboards and alerts query", &v);
}

/// A Prometheus server of the test's own, scraping the stack every second.
struct Prometheus {
    url: String,
    client: reqwest::Client,
    process: Running,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(jobs: &[(&str, &str)]) -> Prometheus {
        let bin = require_tool("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let scrape: Vec<Value> = jobs
            .iter()
            .map(|(job, url)| {
                json!({"job_name": job, "metrics_path": "/metrics",
                       "static_configs": [{"targets": [url.trim_start_matches("http://")]}]})
            })
            .collect();
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": scrape,
        });
        // JSON is YAML.
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config.to_string()).unwrap();
        let listen = free_addr();
        let process = spawn(
            Command::new(bin)
                .arg(format!("--config.file={}", file.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={listen}")),
        );
        let prom = Prometheus {
            url: format!("http://{listen}"),
            client: ghostworks_telemetry::http_client::client(),
            process,
            _dir: dir,
        };
        wait_for(
            "Prometheus to be ready",
            Duration::from_secs(20),
            std::slice::from_ref(&prom.process),
            async || {
                let r = prom
                    .client
                    .get(format!("{}/-/ready", prom.url))
                    .send()
                    .await;
                r.is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        prom
    }

    /// The instant vector `query` evaluates to.
    async fn query(&self, query: &str) -> Vec<Value> {
        let r: Value = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .expect("Prometheus answers")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(r["status"], "success", "{query}: {r}");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_request_rates_by_route_from_every_role() {
    let stack = Stack::start().await;
    let prom = Prometheus::start(&[
        ("ghostworks-api", stack.api.as_str()),
        ("ghostworks-worker", stack.worker.as_str()),
    ])
    .await;
    let query =
        r#"rate(http_requests_total{job="ghostworks-api",endpoint="/health/ready"}[5s]) > 0"#;
    let ready = format!("{}/health/ready", stack.api);
    let mut series = Vec::new();
    wait_for(
        "a request-rate series in Prometheus",
        Duration::from_secs(20),
        std::slice::from_ref(&prom.process),
        async || {
            stack.get(&ready).await.expect("the API is ready");
            series = prom.query(query).await;
            !series.is_empty()
        },
    )
    .await;
    assert_eq!(series.len(), 1, "{series:?}");
    let labels = &series[0]["metric"];
    assert_eq!(labels["job"], "ghostworks-api", "{labels}");
    assert_eq!(labels["method"], "GET", "{labels}");
    assert_eq!(labels["endpoint"], "/health/ready", "{labels}");
    assert_eq!(labels["status_code"], "200", "{labels}");
    assert!(labels["instance"].is_string(), "{labels}");
    for job in ["ghostworks-api", "ghostworks-worker"] {
        let up = prom.query(&format!(r#"up{{job="{job}"}}"#)).await;
        assert_eq!(up.len(), 1, "{job}: {up:?}");
        assert_eq!(up[0]["value"][1], "1", "{job} is not up: {up:?}");
    }
}
