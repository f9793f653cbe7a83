//! Drives the real `ghostworks` binary: configuration checks, migrations, demo seeding, the
//! served API, and graceful shutdown on SIGTERM.

use std::collections::HashMap;
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
            ("DATABASE_ADMIN_URL", "postgres://owner:pw@db/gw"),
        ],
    );
    assert!(!bad.status.success());
    let out = text(&bad);
    for var in [
        "DATABASE_URL:",
        "REDIS_URL:",
        "JWT_SECRET_KEY:",
        "COOKIE_SECURE:",
        "DATABASE_ADMIN_URL: the schema owner's login must not be in a role's environment",
    ] {
        assert!(out.contains(var), "{var} missing in:\n{out}");
    }
    let worker = ghostworks(
        &["config", "check", "--worker"],
        &[
            ("GHOSTWORKS_ENV", "development"),
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
            ("GHOSTWORKS_ENV", "development"),
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

/// Each role with a configuration complete but for GHOSTWORKS_ENV: `config check` and the role
/// itself refuse it, naming the variable and the fix; the same settings with it set pass.
#[test]
fn roles_refuse_to_start_without_an_explicit_environment() {
    let free = |_| {
        format!(
            "127.0.0.1:{}",
            ghostworks_devstack::free_port().expect("a free port")
        )
    };
    let [api_bind, worker_bind, web_bind]: [String; 3] = [0, 1, 2].map(free);
    let roles = [
        (
            "serve",
            "",
            vec![
                ("DATABASE_URL", "postgres://api:pw@127.0.0.1:1/gw"),
                ("REDIS_URL", "redis://127.0.0.1:1/0"),
                ("JWT_SECRET_KEY", "a-long-random-value-of-32-bytes-or-more"),
                ("GHOSTWORKS_BIND", api_bind.as_str()),
            ],
        ),
        (
            "worker",
            "--worker",
            vec![
                ("DATABASE_URL", "postgres://worker:pw@127.0.0.1:1/gw"),
                ("SMTP_URL", "smtp://127.0.0.1:1"),
                ("WORKER_BIND", worker_bind.as_str()),
            ],
        ),
        ("web", "--web", vec![("WEB_BIND", web_bind.as_str())]),
    ];
    let refusal = "GHOSTWORKS_ENV: missing; set GHOSTWORKS_ENV=production";
    for (role, flag, env) in roles {
        let check_args: Vec<&str> = ["config", "check", flag]
            .into_iter()
            .filter(|a| !a.is_empty())
            .collect();
        let check = ghostworks(&check_args, &env);
        assert!(!check.status.success(), "{role}: {}", text(&check));
        assert!(text(&check).contains(refusal), "{role}: {}", text(&check));

        // A role that started anyway would keep running: give it a deadline, not a hang.
        let mut child = Command::new(BIN)
            .arg(role)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            !out.status.success(),
            "{role} started without GHOSTWORKS_ENV"
        );
        assert!(text(&out).contains(refusal), "{role}: {}", text(&out));

        let mut explicit = env.clone();
        explicit.push(("GHOSTWORKS_ENV", "development"));
        let check = ghostworks(&check_args, &explicit);
        assert!(check.status.success(), "{role}: {}", text(&check));
    }
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
fn a_canary_margin_below_zero_is_refused_naming_the_flag() {
    let state = tempfile::tempdir().unwrap();
    for flag in ["--error-margin", "--latency-margin", "--memory-margin"] {
        let out = ghostworks(
            &[
                "deploy",
                "--release",
                BIN,
                "--proxy",
                "haproxy",
                "--strategy",
                "canary",
                "--state-dir",
                state.path().to_str().unwrap(),
                &format!("{flag}=-0.5"),
            ],
            &[],
        );
        assert!(!out.status.success(), "{flag}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("{flag}: a margin of 0 or more, not -0.5")),
            "{flag}: {}",
            text(&out)
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
            ("GHOSTWORKS_ENV", "development"),
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
    let client = ghostworks_telemetry::http_client::client();
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

/// `ghostworks dev` stopped with SIGINT on drop (as Ctrl-C), so its private servers stop too.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// With the usual ports (8000, 8001, 3000) already taken, as by a first stack, `dev` still
/// brings every role up, on ports it prints.
#[tokio::test]
async fn dev_comes_up_beside_whatever_holds_the_usual_ports() {
    use std::io::BufRead;
    // Taken by this test, or already by something else: either way not free.
    let _held: Vec<_> = [8000, 8001, 3000]
        .into_iter()
        .filter_map(|p| std::net::TcpListener::bind(("127.0.0.1", p)).ok())
        .collect();
    let data = tempfile::tempdir().unwrap();
    // PostgreSQL runs as its own user when the tests run as root.
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["dev", "--data-dir"])
        .arg(data.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        cmd.env("PG_BIN_DIR", dir);
    }
    let mut dev = Dev(cmd.spawn().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = dev.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // The banner's addresses: "  web app    http://127.0.0.1:PORT/" and so on.
    let mut urls = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while urls.len() < 3 {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no banner from dev; seen {urls:?}"));
        if let Some((label, rest)) = line.split_once("http://") {
            let role = ["web app", "API", "worker"]
                .into_iter()
                .find(|r| label.trim() == *r);
            if let Some(role) = role {
                urls.insert(role, rest.split('/').next().unwrap().to_string());
            }
        }
    }
    for (role, addr) in &urls {
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        assert!(
            ![8000, 8001, 3000].contains(&port),
            "{role} on a taken port: {addr}"
        );
    }
    let client = ghostworks_telemetry::http_client::client();
    for (role, path) in [
        ("API", "/health/ready"),
        ("worker", "/health"),
        ("web app", "/health/ready"),
    ] {
        let url = format!("http://{}{path}", urls[role]);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                break;
            }
            assert!(
                dev.0.try_wait().unwrap().is_none(),
                "dev exited before {role} answered {url}"
            );
            assert!(Instant::now() < deadline, "{role} never answered {url}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
