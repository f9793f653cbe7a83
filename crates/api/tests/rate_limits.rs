mod common;

use common::{TestApp, PASSWORD};
use ghostworks_testkit::unique;
use reqwest::header::RETRY_AFTER;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

fn email() -> String {
    format!("{}@example.com", unique("rl"))
}

async fn limited() -> TestApp {
    common::spawn()
        .var("RATE_LIMIT_ENABLED", "true")
        .start()
        .await
}

async fn register_from(app: &TestApp, forwarded_for: Option<&str>) -> Response {
    let mut r = app
        .client
        .post(format!("{}/api/v1/auth/register", app.url))
        .json(&json!({"email": email(), "password": PASSWORD}));
    if let Some(ip) = forwarded_for {
        r = r.header("X-Forwarded-For", ip);
    }
    r.send().await.unwrap()
}

async fn login(app: &TestApp, email: &str, password: &str) -> Response {
    app.client
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

fn retry_after(r: &Response) -> u64 {
    r.headers()
        .get(RETRY_AFTER)
        .expect("Retry-After on a 429")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn assert_limited(r: Response) -> (u64, Value) {
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limit_exceeded", "{body}");
    assert!(
        body["request_id"].is_string() && body["timestamp"].is_string(),
        "{body}"
    );
    (wait, body)
}

/// Registers and verifies an account (one register and one verification hit, no login).
async fn verified_account(app: &TestApp) -> String {
    let addr = email();
    let (s, reg) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": addr, "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{reg}");
    let token = app.mailed_token(&addr, 1, "verification_token").await;
    let (s, body) = app
        .json(
            reqwest::Method::POST,
            &format!("/api/v1/auth/verify-email?verification_token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    addr
}

#[tokio::test]
async fn the_sixth_registration_in_a_minute_is_refused() {
    let app = limited().await;
    for i in 0..5 {
        assert_eq!(
            register_from(&app, None).await.status(),
            StatusCode::ACCEPTED,
            "registration {}",
            i + 1
        );
    }
    let (wait, body) = assert_limited(register_from(&app, None).await).await;
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(
        body["message"].as_str().unwrap().contains("5 per minute"),
        "{body}"
    );

    // Other endpoints keep their own budget.
    let (s, _) = app
        .post(
            "/api/v1/auth/resend-verification",
            None,
            json!({"email": email()}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"rate_limited_requests_total{bucket="register"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn password_reset_requests_and_confirmations_have_their_own_limits() {
    let app = limited().await;
    let request = |n: usize| {
        let app = &app;
        async move {
            app.client
                .post(format!("{}/api/v1/auth/password-reset/request", app.url))
                .json(&json!({"email": format!("nobody{n}@example.com")}))
                .send()
                .await
                .unwrap()
        }
    };
    for i in 0..5 {
        assert_eq!(
            request(i).await.status(),
            StatusCode::ACCEPTED,
            "request {}",
            i + 1
        );
    }
    let (_, body) = assert_limited(request(5).await).await;
    assert!(
        body["message"].as_str().unwrap().contains("5 per minute"),
        "{body}"
    );
    let confirm = || {
        app.client
            .post(format!("{}/api/v1/auth/password-reset/confirm", app.url))
            .json(&json!({"token": "not-a-token", "new_password": PASSWORD}))
            .send()
    };
    for i in 0..10 {
        assert_eq!(
            confirm().await.unwrap().status(),
            StatusCode::BAD_REQUEST,
            "confirm {}",
            i + 1
        );
    }
    let (_, body) = assert_limited(confirm().await.unwrap()).await;
    assert!(
        body["message"].as_str().unwrap().contains("10 per minute"),
        "{body}"
    );
}

#[tokio::test]
async fn failed_logins_lock_the_account_but_not_the_address() {
    let app = common::spawn()
        .var("RATE_LIMIT_ENABLED", "true")
        .var("LOGIN_MAX_FAILURES", "3")
        .start()
        .await;
    // Two registrations and two verifications: within their limits (5 and 10 per minute).
    let victim = verified_account(&app).await;
    let bystander = verified_account(&app).await;

    // Login calls from this address: 3 failures + 1 locked + 1 bystander = 5, the per-address
    // limit, so every 429 below comes from the account lockout.
    for i in 0..3 {
        let r = login(&app, &victim, "Wr0ng!Password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {}", i + 1);
    }
    let (wait, body) = assert_limited(login(&app, &victim, PASSWORD).await).await;
    assert!(
        wait > 60,
        "the lockout (900 s) outlasts a rate-limit window: {wait}"
    );
    assert!(
        body["message"].as_str().unwrap().contains("failed logins"),
        "{body}"
    );

    let r = login(&app, &bystander, PASSWORD).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "another account from the same address is not locked"
    );

    let db = app.admin_db().await;
    let locked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'auth.account_locked'")
            .fetch_one(&db)
            .await
            .unwrap();
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'auth.login_failed'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!((locked, failed), (1, 3));
    // The sixth login from this address trips the per-address limit, with its own message.
    let (wait, body) = assert_limited(login(&app, &bystander, PASSWORD).await).await;
    assert!(wait <= 60, "{wait}");
    assert!(
        body["message"].as_str().unwrap().contains("per minute"),
        "{body}"
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = limited().await;
    let spoofed = [
        "203.0.113.1",
        "203.0.113.2",
        "203.0.113.3",
        "198.51.100.7",
        "198.51.100.8",
    ];
    for ip in spoofed {
        assert_eq!(
            register_from(&app, Some(ip)).await.status(),
            StatusCode::ACCEPTED,
            "{ip}"
        );
    }
    assert_limited(register_from(&app, Some("192.0.2.99")).await).await;
    let ips: Vec<Option<String>> =
        sqlx::query_scalar("SELECT DISTINCT ip FROM audit_log WHERE action = 'auth.registered'")
            .fetch_all(&app.admin_db().await)
            .await
            .unwrap();
    assert_eq!(
        ips,
        vec![Some("127.0.0.1".to_string())],
        "audit rows record the real peer"
    );
}

#[tokio::test]
async fn forwarded_for_from_a_trusted_proxy_separates_clients() {
    let app = common::spawn()
        .var("RATE_LIMIT_ENABLED", "true")
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .start()
        .await;
    for _ in 0..5 {
        assert_eq!(
            register_from(&app, Some("203.0.113.1")).await.status(),
            StatusCode::ACCEPTED
        );
    }
    assert_limited(register_from(&app, Some("203.0.113.1")).await).await;
    // A spoofed hop to the left of the real client changes nothing: the nearest untrusted
    // address counts.
    assert_limited(register_from(&app, Some("10.9.9.9, 203.0.113.1")).await).await;
    assert_eq!(
        register_from(&app, Some("203.0.113.2")).await.status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        register_from(&app, None).await.status(),
        StatusCode::ACCEPTED,
        "the proxy itself is a client too"
    );

    let ips: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT DISTINCT ip FROM audit_log WHERE action = 'auth.registered' ORDER BY 1",
    )
    .fetch_all(&app.admin_db().await)
    .await
    .unwrap();
    let expected: Vec<Option<String>> = ["127.0.0.1", "203.0.113.1", "203.0.113.2"]
        .iter()
        .map(|s| Some(s.to_string()))
        .collect();
    assert_eq!(ips, expected);
}

#[tokio::test]
async fn concurrent_wrong_logins_reach_the_hash_at_most_the_allowed_number_of_times() {
    // Rate limits off (the default here): the lockout stays on. Twenty clients at once, each
    // from its own address behind a trusted proxy.
    let app = common::spawn()
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .var("LOGIN_MAX_FAILURES", "5")
        .start()
        .await;
    let victim = verified_account(&app).await;
    let attempts = (0..20).map(|i| {
        app.client
            .post(format!("{}/api/v1/auth/login", app.url))
            .header("X-Forwarded-For", format!("203.0.113.{}", i + 1))
            .json(&json!({"email": victim, "password": "Wr0ng!Password"}))
            .send()
    });
    let mut statuses: Vec<u16> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    statuses.sort();
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused, 5, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    let (wait, _) = assert_limited(login(&app, &victim, PASSWORD).await).await;
    assert!(
        wait > 60,
        "the right password waits out the lockout: {wait}"
    );
    let (failed, locked): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit_log WHERE action = 'auth.login_failed'), \
         (SELECT count(*) FROM audit_log WHERE action = 'auth.account_locked')",
    )
    .fetch_one(&app.admin_db().await)
    .await
    .unwrap();
    assert_eq!(
        (failed, locked),
        (5, 1),
        "guesses that reached the hash; lockouts"
    );
}

#[tokio::test]
async fn invitations_are_limited_per_inviter_and_per_address() {
    let app = common::spawn()
        .var("RATE_LIMIT_ENABLED", "true")
        .var("INVITATIONS_PER_INVITER_PER_HOUR", "3")
        .var("INVITATIONS_PER_ADDRESS_PER_DAY", "2")
        .start()
        .await;
    let a = app.user().await;
    let b = app.user().await;
    let (wa, wb) = (app.workspace(&a).await, app.workspace(&b).await);
    let invite = |ws: &str, who: &common::User, to: &str| {
        let path = format!("/api/v1/workspaces/{ws}/members");
        let token = who.token.clone();
        let body = json!({"email": to, "role": "member"});
        let client = app.client.clone();
        let url = app.url.clone();
        async move {
            client
                .post(format!("{url}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let x = email();
    for _ in 0..2 {
        assert_eq!(invite(&wa, &a, &x).await.status(), StatusCode::ACCEPTED);
    }
    let (_, body) = assert_limited(invite(&wb, &b, &x).await).await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("to this address"),
        "{body}"
    );
    assert_eq!(
        invite(&wa, &a, &email()).await.status(),
        StatusCode::ACCEPTED
    );
    let (wait, body) = assert_limited(invite(&wa, &a, &email()).await).await;
    assert!(wait > 60 && wait <= 3600, "{wait}");
    assert!(
        body["message"].as_str().unwrap().contains("per inviter"),
        "{body}"
    );
}
