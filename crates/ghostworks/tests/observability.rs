//! Traces and logs of the real `ghostworks serve` and `ghostworks worker` processes, checked
//! against a loopback OTLP/HTTP receiver and the processes' own log output: the span tree of
//! one request, a job continuing the trace of the request that queued it, the log fields, and
//! that no secret of a full account lifecycle ever reaches a log line.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;

use ghostworks_testkit::{services, unique, TestDb};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");
const JWT_SECRET: &str = "observability-test-secret-0123456789abcdef";
const PASSWORD: &str = "Initial-pass-8d1c";
const NEW_PASSWORD: &str = "Changed-pass-41fe";

/// One received span, flattened.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attrs: HashMap<String, String>,
}

type Spans = Arc<Mutex<Vec<Span>>>;

fn text(kv: &[KeyValue]) -> HashMap<String, String> {
    kv.iter()
        .map(|a| {
            let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Any::StringValue(s)) => s.clone(),
                Some(Any::IntValue(i)) => i.to_string(),
                Some(Any::BoolValue(b)) => b.to_string(),
                Some(Any::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (a.key.clone(), v)
        })
        .collect()
}

async fn receive(State(spans): State<Spans>, body: Bytes) -> &'static str {
    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut got = spans.lock().unwrap();
    for rs in req.resource_spans {
        let resource = text(&rs.resource.map(|r| r.attributes).unwrap_or_default());
        for ss in rs.scope_spans {
            for s in ss.spans {
                got.push(Span {
                    service: resource.get("service.name").cloned().unwrap_or_default(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    attrs: text(&s.attributes),
                });
            }
        }
    }
    ""
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A loopback OTLP/HTTP collector: `POST /v1/traces` with protobuf bodies.
async fn collector() -> (String, Spans) {
    let spans = Spans::default();
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(receive))
        .with_state(spans.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn free_port() -> u16 {
    ghostworks_devstack::free_port().expect("a free loopback port")
}

/// A role of the binary with its output in a file; SIGTERM and wait on drop.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(role: &str, env: &[(&str, &str)], log: &Path) -> Self {
        let out = File::create(log).unwrap();
        let child = Command::new(BIN)
            .arg(role)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("GHOSTWORKS_ENV", "development")
            .envs(env.iter().copied())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("the binary starts");
        Proc { child }
    }

    /// Graceful stop: the telemetry guard flushes the spans still queued.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the process did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn api_env<'a>(db: &'a TestDb, bind: &'a str, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("DATABASE_URL", db.app_url.as_str()),
        ("REDIS_URL", services().redis_url()),
        ("REDIS_KEY_PREFIX", prefix),
        ("JWT_SECRET_KEY", JWT_SECRET),
        ("GHOSTWORKS_BIND", bind),
        ("LOG_FORMAT", "json"),
        ("LOG_LEVEL", "debug"),
        ("TRACE_SAMPLE_RATIO", "1"),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
}

fn traceparent(trace: &str, parent: &str) -> String {
    format!("00-{trace}-{parent}-01")
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// `POST url` with an optional bearer token and JSON body; the status must be `expect`.
async fn post(
    client: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
    expect: u16,
) -> Value {
    let mut req = client.post(url);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = &body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, expect, "POST {url}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn traces_follow_a_request_into_sql_and_into_its_job_and_logs_keep_no_secret() {
    let (otlp, spans) = collector().await;
    let db = services().database().await.unwrap();
    let sink = services().smtp();
    let dir = tempfile::tempdir().unwrap();
    let (api_log, worker_log) = (dir.path().join("api.log"), dir.path().join("worker.log"));
    let api_bind = format!("127.0.0.1:{}", free_port());
    let worker_bind = format!("127.0.0.1:{}", free_port());
    let prefix = unique("obs");
    let mut env = api_env(&db, &api_bind, &prefix);
    env.push(("OPENTELEMETRY_ENDPOINT", &otlp));
    env.push(("METRICS_TENANT_LABELS", "true"));
    let mut api = Proc::spawn("serve", &env, &api_log);
    let smtp = sink.url();
    let mut worker = Proc::spawn(
        "worker",
        &[
            ("DATABASE_URL", db.worker_url.as_str()),
            ("SMTP_URL", smtp.as_str()),
            ("WORKER_BIND", worker_bind.as_str()),
            ("JOB_POLL_SECONDS", "1"),
            ("LOG_FORMAT", "json"),
            ("LOG_LEVEL", "debug"),
            ("OPENTELEMETRY_ENDPOINT", &otlp),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
        &worker_log,
    );
    let client = ghostworks_telemetry::http_client::client();
    let base = format!("http://{api_bind}");
    wait_ready(&client, &format!("{base}/health/ready")).await;
    wait_ready(&client, &format!("http://{worker_bind}/health")).await;

    // Registration, with a caller's trace context: its e-mail job must join that trace.
    let register_trace = random_hex(16);
    let email = format!("{}@example.com", unique("obs"));
    let r = client
        .post(format!("{base}/api/v1/auth/register"))
        .header("traceparent", traceparent(&register_trace, &random_hex(8)))
        .json(&json!({"email": email, "password": PASSWORD, "first_name": "Olga"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mail = &services().mail_to(&email, 1, Duration::from_secs(20)).await[0];
    let link = mail
        .links()
        .into_iter()
        .next()
        .expect("a verification link");
    let verification_token = link.rsplit_once('=').unwrap().1.to_string();
    let verify = format!("{base}/api/v1/auth/verify-email?verification_token={verification_token}");
    post(&client, &verify, None, None, 200).await;
    let credentials = json!({"email": email, "password": PASSWORD});
    let login = post(
        &client,
        &format!("{base}/api/v1/auth/login"),
        None,
        Some(credentials),
        200,
    )
    .await;
    let access = login["access_token"].as_str().unwrap().to_string();
    let refresh = login["refresh_token"].as_str().unwrap().to_string();
    let me: Value = client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = me["id"].as_str().unwrap().to_string();
    let workspace = json!({"name": "Observed", "slug": unique("obs")});
    let ws = post(
        &client,
        &format!("{base}/api/v1/workspaces"),
        Some(&access),
        Some(workspace),
        201,
    )
    .await;
    let ws_id = ws["id"].as_str().unwrap().to_string();
    let arts = format!("{base}/api/v1/workspaces/{ws_id}/artifacts");
    let artifact = json!({"name": "traced", "tags": ["otel"]});
    post(&client, &arts, Some(&access), Some(artifact), 201).await;

    // The request whose span tree is checked below.
    let (list_trace, caller_span) = (random_hex(16), random_hex(8));
    let r = client
        .get(format!("{arts}?q=traced"))
        .bearer_auth(&access)
        .header("traceparent", traceparent(&list_trace, &caller_span))
        .header("x-request-id", "obs-list-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The rest of the lifecycle, for the secret scan of the logs.
    let refreshed = post(
        &client,
        &format!("{base}/api/v1/auth/refresh"),
        Some(&refresh),
        None,
        200,
    )
    .await;
    let reset = format!("{base}/api/v1/auth/password-reset");
    post(
        &client,
        &format!("{reset}/request"),
        None,
        Some(json!({"email": email})),
        202,
    )
    .await;
    let mail = &services().mail_to(&email, 2, Duration::from_secs(20)).await[1];
    let link = mail.links().into_iter().next().expect("a reset link");
    let reset_token = link.rsplit_once('=').unwrap().1.to_string();
    let confirm = json!({"token": reset_token, "new_password": NEW_PASSWORD});
    post(
        &client,
        &format!("{reset}/confirm"),
        None,
        Some(confirm),
        200,
    )
    .await;

    // The metrics the workload must have produced, exactly.
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    let route = "/api/v1/workspaces/{workspace_id}/artifacts";
    for (series, value) in [
        (
            r#"ghostworks_db_query_duration_seconds_count{operation="artifacts.list"}"#.to_string(),
            "1",
        ),
        (
            r#"ghostworks_db_query_duration_seconds_count{operation="artifacts.create"}"#.into(),
            "1",
        ),
        (
            r#"ghostworks_dependency_up{dependency="postgres"}"#.into(),
            "1",
        ),
        (
            r#"ghostworks_dependency_up{dependency="redis"}"#.into(),
            "1",
        ),
        ("auth_token_refreshes_total".into(), "1"),
        ("artifacts_created_total".into(), "1"),
        (
            format!(r#"http_response_size_bytes_count{{endpoint="{route}",method="GET"}}"#),
            "1",
        ),
        (
            format!(
                r#"ghostworks_tenant_requests_total{{status_class="2xx",tenant_id="{ws_id}"}}"#
            ),
            "2",
        ),
    ] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{series} ")))
            .unwrap_or_else(|| panic!("{series} missing from:\n{metrics}"));
        assert_eq!(line, format!("{series} {value}"));
    }
    assert!(metrics.lines().any(|l| l.starts_with(
        r#"ghostworks_redis_command_duration_seconds_count{operation="redis.window_hit"}"#
    )));

    // Stopping flushes what is still queued for export.
    api.stop();
    worker.stop();
    let spans = spans.lock().unwrap().clone();

    // One request: the server span continues the caller's trace and carries the request's
    // route, status, tenant, user and id; its children are the SQL operations it ran.
    let request = spans
        .iter()
        .find(|s| s.trace_id == list_trace && s.parent == caller_span)
        .unwrap_or_else(|| panic!("no span for the traced request among {spans:#?}"));
    assert_eq!(request.service, "ghostworks-api");
    assert_eq!(
        request.name,
        "GET /api/v1/workspaces/{workspace_id}/artifacts"
    );
    let a = &request.attrs;
    assert_eq!(
        a["http.route"],
        "/api/v1/workspaces/{workspace_id}/artifacts"
    );
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["tenant_id"], ws_id);
    assert_eq!(a["user_id"], user_id);
    assert_eq!(a["request_id"], "obs-list-1");
    let children: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent == request.span_id)
        .collect();
    let names: Vec<&str> = children.iter().map(|s| s.name.as_str()).collect();
    for expected in ["users.enter_workspace", "artifacts.list"] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }
    for c in &children {
        assert_eq!(c.trace_id, list_trace);
        let system = if c.name.starts_with("redis.") {
            "redis"
        } else {
            "postgresql"
        };
        assert_eq!(c.attrs["db.system"], system, "{c:?}");
    }
    assert!(names.contains(&"redis.window_hit"), "{names:?}");

    // The e-mail job queued by the registration runs in the worker, in the same trace.
    let job = spans
        .iter()
        .find(|s| s.service == "ghostworks-worker" && s.name == "email.verification")
        .unwrap_or_else(|| panic!("no job span among {spans:#?}"));
    assert_eq!(job.trace_id, register_trace);
    assert!(spans
        .iter()
        .any(|s| s.trace_id == register_trace && s.name == "POST /api/v1/auth/register"));

    // Logs: JSON lines; the access line of the traced request carries its correlation fields.
    let api_text = std::fs::read_to_string(&api_log).unwrap();
    let worker_text = std::fs::read_to_string(&worker_log).unwrap();
    let lines: Vec<Value> = api_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["target"] == "access" && l["span"]["request_id"] == "obs-list-1")
        .expect("an access line for the traced request");
    assert_eq!(line["span"]["trace_id"], list_trace.as_str());
    assert_eq!(line["span"]["tenant_id"], ws_id.as_str());
    assert_eq!(line["span"]["service"], "api");
    assert_eq!(
        line["span"]["http.route"],
        "/api/v1/workspaces/{workspace_id}/artifacts"
    );
    assert_eq!(line["status"], 200);
    assert!(line["duration_ms"].as_f64().is_some(), "{line}");
    assert!(line["timestamp"].is_string() && line["level"] == "INFO");

    // No secret of the whole lifecycle appears in any log line, at debug level.
    let secrets = [
        ("the password", PASSWORD.to_string()),
        ("the new password", NEW_PASSWORD.to_string()),
        ("the JWT secret", JWT_SECRET.to_string()),
        ("the access token's signature", signature(&access)),
        ("the refresh token", refresh.clone()),
        (
            "the refreshed access token",
            refreshed["access_token"].as_str().unwrap().to_string(),
        ),
        ("the verification token", verification_token),
        ("the reset token", reset_token),
    ];
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        for (log, text) in [("api", &api_text), ("worker", &worker_text)] {
            assert!(
                !text.contains(secret.as_str()),
                "{what} appears in the {log} log"
            );
        }
    }
}

/// A JWT's signature: the part that must never be logged (header and claims are not secret).
fn signature(jwt: &str) -> String {
    jwt.rsplit('.').next().unwrap().to_string()
}

#[tokio::test]
async fn without_a_collector_requests_still_succeed() {
    let db = services().database().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bind = format!("127.0.0.1:{}", free_port());
    let prefix = unique("obs");
    // A port nothing listens on: every export fails.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut env = api_env(&db, &bind, &prefix);
    env.push(("OPENTELEMETRY_ENDPOINT", &dead));
    let mut api = Proc::spawn("serve", &env, &dir.path().join("api.log"));
    let client = ghostworks_telemetry::http_client::client();
    wait_ready(&client, &format!("http://{bind}/health/ready")).await;
    for _ in 0..50 {
        let r = client
            .get(format!("http://{bind}/health/ready"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Per-tenant series exist only behind METRICS_TENANT_LABELS.
    let metrics = get_text(&client, &format!("http://{bind}/metrics")).await;
    assert!(metrics.contains("http_requests_total{"));
    assert!(!metrics.contains("ghostworks_tenant_requests_total"));
    api.stop();
}

#[tokio::test]
async fn metrics_can_be_switched_off() {
    let db = services().database().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bind = format!("127.0.0.1:{}", free_port());
    let prefix = unique("obs");
    let mut env = api_env(&db, &bind, &prefix);
    env.push(("METRICS_ENABLED", "false"));
    let mut api = Proc::spawn("serve", &env, &dir.path().join("api.log"));
    let client = ghostworks_telemetry::http_client::client();
    wait_ready(&client, &format!("http://{bind}/health/ready")).await;
    let r = client
        .get(format!("http://{bind}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("METRICS_ENABLED"),
        "{body}"
    );
    api.stop();
}
