//! Drives the real `ghostworks` binary: configuration checks, migrations, demo seeding, the
//! served API, and graceful shutdown on SIGTERM.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ghostworks_testkit::services;

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");

fn ghostworks(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .envs(env.iter().copied())
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn config_check_names_every_problem_and_redacts_secrets() {
    let bad = ghostworks(
        &["config", "check"],
        &[
            ("GHOSTWORKS_ENV", "production"),
            ("JWT_SECRET_KEY", "change-me"),
            ("COOKIE_SECURE", "false"),
        ],
    );
    assert!(!bad.status.success());
    let out = text(&bad);
    for var in [
        "DATABASE_URL:",
        "REDIS_URL:",
        "JWT_SECRET_KEY:",
        "COOKIE_SECURE:",
    ] {
        assert!(out.contains(var), "{var} missing in:\n{out}");
    }
    let worker = ghostworks(
        &["config", "check", "--worker"],
        &[
            ("DATABASE_URL", "postgres://worker:hunter2@db/gw"),
            ("SMTP_URL", "smtps://mailer:s3cret@smtp.example.com"),
        ],
    );
    let out = text(&worker);
    assert!(worker.status.success(), "{out}");
    assert!(
        out.contains("SMTP_URL=smtps://mailer:***@smtp.example.com"),
        "{out}"
    );
    assert!(
        !out.contains("hunter2") && !out.contains("s3cret") && !out.contains("JWT"),
        "{out}"
    );
    let good = ghostworks(
        &["config", "check"],
        &[
            ("DATABASE_URL", "postgres://api:hunter2@db/gw"),
            ("REDIS_URL", "redis://r:6379/0"),
            ("JWT_SECRET_KEY", "a-long-random-value-of-32-bytes-or-more"),
        ],
    );
    let out = text(&good);
    assert!(good.status.success(), "{out}");
    assert!(
        out.contains("DATABASE_URL=postgres://api:***@db/gw"),
        "{out}"
    );
    assert!(
        !out.contains("hunter2") && !out.contains("a-long-random-value"),
        "{out}"
    );
}

#[test]
fn env_templates_pass_or_fail_as_documented() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let dev = ghostworks(
        &[
            "config",
            "check",
            "--env-file",
            &format!("{root}/.env.development"),
        ],
        &[],
    );
    assert!(dev.status.success(), "{}", text(&dev));
    let dev_worker = ghostworks(
        &[
            "config",
            "check",
            "--worker",
            "--env-file",
            &format!("{root}/.env.development"),
        ],
        &[],
    );
    assert!(dev_worker.status.success(), "{}", text(&dev_worker));
    assert!(text(&dev_worker).contains("SMTP_URL=smtp://127.0.0.1:2525"));
    // The production template ships placeholders on purpose: it must not validate as is.
    let prod = ghostworks(
        &[
            "config",
            "check",
            "--env-file",
            &format!("{root}/.env.production"),
        ],
        &[],
    );
    assert!(!prod.status.success(), "{}", text(&prod));
    let prod_worker = ghostworks(
        &[
            "config",
            "check",
            "--worker",
            "--env-file",
            &format!("{root}/.env.production"),
        ],
        &[],
    );
    for var in ["SMTP_URL:", "PUBLIC_URL:", "MAIL_FROM:"] {
        assert!(
            text(&prod_worker).contains(var),
            "{var}: {}",
            text(&prod_worker)
        );
    }
}

#[test]
fn healthcheck_fails_without_a_server() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = ghostworks(
        &[
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/health"),
        ],
        &[],
    );
    assert!(!out.status.success());
}

#[tokio::test]
async fn migrate_seed_serve_and_stop_gracefully() {
    let db = services().database().await.unwrap();
    let admin = [("DATABASE_ADMIN_URL", db.admin_url.as_str())];
    let status = ghostworks(&["migrate", "--status"], &admin);
    assert!(text(&status).contains("applied"), "{}", text(&status));
    let migrate = ghostworks(&["migrate"], &admin);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let first = ghostworks(&["seed", "--demo"], &admin);
    assert!(
        text(&first).contains("6 users and 43 artifacts added"),
        "{}",
        text(&first)
    );
    let again = ghostworks(&["seed", "--demo"], &admin);
    assert!(
        text(&again).contains("0 users and 0 artifacts added"),
        "{}",
        text(&again)
    );
    let prod = ghostworks(
        &["seed", "--demo"],
        &[admin[0], ("GHOSTWORKS_ENV", "production")],
    );
    assert!(!prod.status.success());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let mut server = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .envs([
            ("DATABASE_URL", db.app_url.as_str()),
            ("REDIS_URL", services().redis_url()),
            ("JWT_SECRET_KEY", "cli-test-secret-0123456789abcdef012345"),
            ("GHOSTWORKS_BIND", bind.as_str()),
            ("LOG_FORMAT", "json"),
            ("REDIS_KEY_PREFIX", "cli-test"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ghostworks(&["healthcheck"], &[("GHOSTWORKS_BIND", bind.as_str())])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!("http://{bind}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "owner@acme.com", "password": "demo123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"]
        .as_str()
        .expect("the demo owner logs in");
    let workspaces: serde_json::Value = client
        .get(format!("http://{bind}/api/v1/workspaces"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let acme = workspaces[0]["id"].as_str().unwrap();
    let page: serde_json::Value = client
        .get(format!(
            "http://{bind}/api/v1/workspaces/{acme}/artifacts?limit=20&offset=20"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["total"], 37, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 17);

    // SIGTERM: the server stops accepting, finishes, and exits 0.
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let started = Instant::now();
    let status = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server ignored SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    let mut logs = String::new();
    use std::io::Read;
    server
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        logs.contains("\"request served\"") || logs.contains("request served"),
        "access log lines expected:\n{logs}"
    );
    assert!(
        !logs.contains("demo123") && !logs.contains(token),
        "secrets must never be logged"
    );
}
