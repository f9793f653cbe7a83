//! Spawns the real router on a free loopback port against a fresh database and the shared
//! Redis, with a real worker delivering its e-mail to the shared SMTP sink, and drives it over
//! HTTP.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use ghostworks_api::AppState;
use ghostworks_config::{Config, WorkerConfig};
use ghostworks_testkit::{services, unique, Services, TestDb};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

pub const PASSWORD: &str = "Str0ng!Passw0rd";
/// Where e-mail links point in tests.
pub const PUBLIC_URL: &str = "http://app.example.com";
/// How long a test waits for an e-mail.
pub const MAIL_WAIT: Duration = Duration::from_secs(15);

pub struct TestApp {
    pub url: String,
    pub db: TestDb,
    pub client: reqwest::Client,
    pub state: AppState,
    pub services: &'static Services,
}

pub struct Spawn {
    vars: HashMap<String, String>,
    /// The port of a standby of the test database's server, for DATABASE_REPLICA_URL.
    replica_port: Option<u16>,
}

pub fn spawn() -> Spawn {
    let mut vars = HashMap::new();
    for (k, v) in [
        (
            "JWT_SECRET_KEY",
            "test-secret-0123456789abcdef0123456789abcdef",
        ),
        ("RATE_LIMIT_ENABLED", "false"),
        ("REQUIRE_EMAIL_VERIFICATION", "true"),
        ("COOKIE_SECURE", "false"),
        ("GHOSTWORKS_ENV", "development"),
        ("LOG_FORMAT", "json"),
    ] {
        vars.insert(k.to_string(), v.to_string());
    }
    Spawn {
        vars,
        replica_port: None,
    }
}

impl Spawn {
    pub fn var(mut self, k: &str, v: &str) -> Self {
        self.vars.insert(k.into(), v.into());
        self
    }

    /// Reads may go to the standby on `port` (the test database's, as the API's login).
    pub fn replica_port(mut self, port: u16) -> Self {
        self.replica_port = Some(port);
        self
    }

    pub async fn start(self) -> TestApp {
        self.start_on(services()).await
    }

    /// Starts on `svc` (the shared services, or a drill's private ones).
    pub async fn start_on(mut self, svc: &'static Services) -> TestApp {
        let db = svc.database().await.expect("a test database");
        self.vars.insert("DATABASE_URL".into(), db.app_url.clone());
        if let Some(port) = self.replica_port {
            let (login, rest) = db.app_url.rsplit_once('@').expect("a URL with a login");
            let (_, database) = rest.split_once('/').expect("a URL with a database");
            let url = format!("{login}@127.0.0.1:{port}/{database}");
            self.vars.insert("DATABASE_REPLICA_URL".into(), url);
        }
        self.vars.insert("REDIS_URL".into(), svc.redis_url().into());
        self.vars.insert("REDIS_KEY_PREFIX".into(), unique("t"));
        let config = Config::from_vars(&self.vars).expect("valid test configuration");
        let state = AppState::connect(config).await.expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(ghostworks_api::serve(
            state.clone(),
            listener,
            std::future::pending(),
        ));
        let worker_vars: HashMap<String, String> = [
            ("GHOSTWORKS_ENV", "development"),
            ("DATABASE_URL", db.worker_url.as_str()),
            ("SMTP_URL", svc.smtp().url().as_str()),
            ("PUBLIC_URL", PUBLIC_URL),
            ("WORKER_CONCURRENCY", "2"),
            ("JOB_POLL_SECONDS", "1"),
            ("LOG_FORMAT", "json"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let worker_config =
            WorkerConfig::from_vars(&worker_vars).expect("valid worker configuration");
        let worker = ghostworks_worker::connect(&worker_config)
            .await
            .expect("the worker starts");
        tokio::spawn(async move { worker.run(std::future::pending()).await });
        let client = ghostworks_telemetry::http_client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        TestApp {
            url,
            db,
            client,
            state,
            services: svc,
        }
    }
}

pub async fn app() -> TestApp {
    spawn().start().await
}

/// A logged-in user with a workspace of their own.
pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
    pub refresh: String,
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut r = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request sent")
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let r = self.call(method, path, token, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.json(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.json(Method::POST, path, token, Some(body)).await
    }

    /// The `n`-th (from 1) e-mail to `to`, waiting for it.
    pub async fn mail(&self, to: &str, n: usize) -> ghostworks_testkit::Message {
        self.services.mail_to(to, n, MAIL_WAIT).await[n - 1].clone()
    }

    /// The value of `param` in the link of the `n`-th e-mail to `to`.
    pub async fn mailed_token(&self, to: &str, n: usize, param: &str) -> String {
        let mail = self.mail(to, n).await;
        let link = mail
            .links()
            .into_iter()
            .next()
            .expect("the e-mail has a link");
        assert!(link.starts_with(PUBLIC_URL), "{link}");
        let query = link.split_once('?').expect("the link has a query").1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{param}=")))
            .unwrap_or_else(|| panic!("no {param} in {link}"))
            .to_string()
    }

    /// Registers, verifies through the link of the verification e-mail, and logs in.
    pub async fn user(&self) -> User {
        let email = format!("{}@example.com", unique("user"));
        let (s, reg) = self
            .post(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "first_name": "Test"}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{reg}");
        let token = self.mailed_token(&email, 1, "verification_token").await;
        let r = self
            .call(
                Method::POST,
                &format!("/api/v1/auth/verify-email?verification_token={token}"),
                None,
                None,
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        self.login(&email).await
    }

    pub async fn login(&self, email: &str) -> User {
        let (s, body) = self
            .post(
                "/api/v1/auth/login",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (_, me) = self
            .get("/api/v1/auth/me", body["access_token"].as_str().unwrap())
            .await;
        User {
            id: me["id"].as_str().unwrap().to_string(),
            email: email.to_string(),
            token: body["access_token"].as_str().unwrap().to_string(),
            refresh: body["refresh_token"].as_str().unwrap().to_string(),
        }
    }

    /// Creates a workspace owned by `owner`; returns its id.
    pub async fn workspace(&self, owner: &User) -> String {
        let slug = unique("ws-");
        let (s, body) = self
            .post(
                "/api/v1/workspaces/",
                Some(&owner.token),
                json!({"name": "Test WS", "slug": slug}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_string()
    }

    pub async fn add_member(&self, ws: &str, admin: &User, member: &User, role: &str) {
        let (s, body) = self
            .post(
                &format!("/api/v1/workspaces/{ws}/members"),
                Some(&admin.token),
                json!({"email": member.email, "role": role}),
            )
            .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    }

    pub async fn artifact(&self, ws: &str, user: &User, body: Value) -> Value {
        let (s, a) = self
            .post(
                &format!("/api/v1/workspaces/{ws}/artifacts"),
                Some(&user.token),
                body,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        a
    }

    /// A direct connection as the schema owner, bypassing the API (and RLS).
    pub async fn admin_db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db.admin_url).await.unwrap()
    }

    /// A direct connection as the API's own database role.
    pub async fn app_db(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db.app_url).await.unwrap()
    }
}
