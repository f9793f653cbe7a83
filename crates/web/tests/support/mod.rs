//! A real stack for the web app's tests and benchmark: the API in-process on a fresh test
//! database, the web app in front of it, and a script-less "browser" that keeps cookies by
//! hand and posts forms as the pages do.
#![allow(dead_code)]

use std::collections::HashMap;

use ghostworks_api::AppState;
use ghostworks_config::{Config, WebConfig};
use ghostworks_testkit::{services, unique};
use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;

pub const PASSWORD: &str = "Str0ng!Passw0rd";

pub struct Stack {
    pub web: String,
    pub api: String,
    /// The test database as its owner, for checks behind the API's back.
    pub db_admin_url: String,
    pub http: reqwest::Client,
}

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn stack(cookie_secure: bool) -> Stack {
    let secure = if cookie_secure { "true" } else { "false" };
    stack_with(&[], &[("COOKIE_SECURE", secure)]).await
}

/// A stack whose API and web settings are the defaults above overridden by `api` and `web`.
pub async fn stack_with(api: &[(&str, &str)], web: &[(&str, &str)]) -> Stack {
    let svc = services();
    let db = svc.database().await.expect("a test database");
    let prefix = unique("w");
    let mut api_vars = vars(&[
        (
            "JWT_SECRET_KEY",
            "test-secret-0123456789abcdef0123456789abcdef",
        ),
        ("RATE_LIMIT_ENABLED", "false"),
        ("REQUIRE_EMAIL_VERIFICATION", "false"),
        ("COOKIE_SECURE", "false"),
        ("GHOSTWORKS_ENV", "development"),
        ("LOG_FORMAT", "json"),
        ("REDIS_URL", svc.redis_url()),
        ("REDIS_KEY_PREFIX", &prefix),
    ]);
    api_vars.insert("DATABASE_URL".into(), db.app_url.clone());
    api_vars.extend(vars(api));
    let state = AppState::connect(Config::from_vars(&api_vars).expect("valid API configuration"))
        .await
        .expect("API state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ghostworks_api::serve(
        state,
        listener,
        std::future::pending(),
    ));
    let db_admin_url = db.admin_url.clone();
    // The database lives as long as the test process; the stack outlives this function.
    std::mem::forget(db);

    let mut web_vars = vars(&[
        ("GHOSTWORKS_ENV", "development"),
        ("API_URL", &api),
        ("LOG_FORMAT", "json"),
    ]);
    web_vars.extend(vars(web));
    let web_config = WebConfig::from_vars(&web_vars).expect("valid web configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(ghostworks_web::serve(
        ghostworks_web::Web::new(web_config),
        listener,
        std::future::pending(),
    ));
    let http = ghostworks_telemetry::http_client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Stack {
        web,
        api,
        db_admin_url,
        http,
    }
}

/// One browser: its cookies, kept from `Set-Cookie` (a zero `Max-Age` deletes).
#[derive(Clone)]
pub struct Browser<'a> {
    stack: &'a Stack,
    pub cookies: HashMap<String, String>,
    /// Sent as `X-Forwarded-For`, as a proxy in front of the web app would.
    pub forwarded_for: Option<String>,
}

impl<'a> Browser<'a> {
    pub fn new(stack: &'a Stack) -> Self {
        Self {
            stack,
            cookies: HashMap::new(),
            forwarded_for: None,
        }
    }

    pub fn keep(&mut self, r: &Response) {
        for v in r.headers().get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, attrs) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        fetch: bool,
    ) -> Response {
        let mut req = self
            .stack
            .http
            .request(method, format!("{}{path}", self.stack.web))
            .header("cookie", self.cookie_header());
        if let Some(f) = form {
            req = req.form(f);
        }
        if fetch {
            req = req.header("x-requested-with", "fetch");
        }
        if let Some(ip) = &self.forwarded_for {
            req = req.header("x-forwarded-for", ip);
        }
        let r = req.send().await.expect("request sent");
        self.keep(&r);
        r
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let r = self.send(Method::GET, path, None, false).await;
        (r.status(), r.text().await.unwrap())
    }

    /// The API's `/auth/me` with this browser's access token.
    pub async fn me(&self) -> Value {
        let r = self
            .stack
            .http
            .get(format!("{}/api/v1/auth/me", self.stack.api))
            .bearer_auth(&self.cookies["gw_access"])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub fn csrf(&self) -> String {
        self.cookies.get("gw_csrf").cloned().expect("a CSRF cookie")
    }

    /// Posts a form with the CSRF token, as the page would.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let csrf = self.csrf();
        let mut f = vec![("csrf_token", csrf.as_str())];
        f.extend_from_slice(fields);
        self.send(Method::POST, path, Some(&f), false).await
    }

    pub async fn post_fetch(&mut self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let csrf = self.csrf();
        let mut f = vec![("csrf_token", csrf.as_str())];
        f.extend_from_slice(fields);
        let r = self.send(Method::POST, path, Some(&f), true).await;
        (r.status(), r.json().await.unwrap())
    }

    /// A new account (verification is off in these tests), logged in, with a workspace.
    pub async fn signed_up(stack: &'a Stack) -> (Self, String) {
        let mut b = Self::new(stack);
        b.get("/register").await;
        let email = format!("{}@example.com", unique("web"));
        let r = b
            .post("/register", &[("email", &email), ("password", PASSWORD)])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = b
            .post("/login", &[("email", &email), ("password", PASSWORD)])
            .await;
        assert_eq!(r.headers()[LOCATION], "/workspaces");
        let slug = unique("ws");
        let r = b
            .post("/workspaces", &[("name", "Team"), ("slug", &slug)])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{:?}", r.text().await);
        let to = r.headers()[LOCATION].to_str().unwrap().to_string();
        let ws = to
            .trim_start_matches("/w/")
            .trim_end_matches("/artifacts")
            .to_string();
        (b, ws)
    }

    pub async fn create_artifact(&mut self, ws: &str, name: &str) -> (String, i64) {
        let (s, body) = self
            .post_fetch(
                &format!("/w/{ws}/artifacts"),
                &[("name", name), ("tags", "a, b")],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let url = body["url"].as_str().unwrap().to_string();
        (url, body["version"].as_i64().unwrap())
    }
}
