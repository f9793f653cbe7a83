mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{TestApp, PASSWORD};
use ghostworks_testkit::unique;
use reqwest::header::{
    HeaderMap, AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The secret `common::spawn()` configures.
const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

fn email() -> String {
    format!("{}@example.com", unique("auth"))
}

async fn register(app: &TestApp, email: &str, extra: Value) -> (StatusCode, Value) {
    let mut body = json!({"email": email, "password": PASSWORD});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    app.post("/api/v1/auth/register", None, body).await
}

async fn verify(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.json(
        Method::POST,
        &format!("/api/v1/auth/verify-email?verification_token={token}"),
        None,
        None,
    )
    .await
}

/// Registers and verifies (through the e-mailed link) an account without logging in.
async fn verified(app: &TestApp, email: &str, extra: Value) {
    let (s, body) = register(app, email, extra).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let token = app.mailed_token(email, 1, "verification_token").await;
    let (s, body) = verify(app, &token).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// Jobs of `kind` queued for the user with address `email` (read as the schema owner).
async fn jobs_for(app: &TestApp, kind: &str, email: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM jobs j JOIN users u ON u.id = (j.payload->>'user_id')::uuid WHERE j.kind = $1 AND u.email = $2",
    )
    .bind(kind)
    .bind(email)
    .fetch_one(&app.admin_db().await)
    .await
    .unwrap()
}

async fn login_raw(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> (StatusCode, Value) {
    app.json(
        Method::POST,
        "/api/v1/auth/refresh",
        Some(refresh_token),
        None,
    )
    .await
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"], code, "{body}");
    for key in ["message", "detail", "request_id", "timestamp"] {
        assert!(body.get(key).is_some(), "{key} missing from {body}");
    }
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn sign(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `name=value; Attr; Attr=x` lines of every Set-Cookie header, keyed by cookie name.
fn set_cookies(headers: &HeaderMap) -> Vec<(String, String, Vec<String>)> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| {
            let s = v.to_str().unwrap();
            let mut parts = s.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            (
                name.to_string(),
                value.to_string(),
                parts.map(|p| p.to_ascii_lowercase()).collect(),
            )
        })
        .collect()
}

fn cookie<'a>(
    all: &'a [(String, String, Vec<String>)],
    name: &str,
) -> &'a (String, String, Vec<String>) {
    all.iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no {name} cookie in {all:?}"))
}

#[tokio::test]
async fn register_answers_a_taken_address_like_a_new_one_and_tells_its_owner() {
    let app = common::app().await;
    let addr = email();
    let (s, first) = register(
        &app,
        &addr.to_uppercase(),
        json!({"first_name": "Ada", "last_name": "Lovelace"}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["email"], addr, "stored lower-cased");
    assert_eq!(first["verification_required"], true);
    assert!(
        first.get("verification_token").is_none() && first.get("user_id").is_none(),
        "nothing that exists only for a new account: {first}"
    );
    assert!(first.get("password").is_none() && !first.to_string().contains(PASSWORD));
    let other = email();
    let (s, new) = register(&app, &other, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(new["message"], first["message"]);

    let db = app.admin_db().await;
    let stored = || async {
        sqlx::query_scalar::<_, String>("SELECT hashed_password FROM users WHERE email = $1")
            .bind(&addr)
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let hash = stored().await;
    for dup in [addr.clone(), addr.to_uppercase(), format!("  {addr} ")] {
        let (s, body) = register(&app, &dup, json!({"password": "0ther!Passw0rd"})).await;
        assert_eq!(
            (s, &body),
            (StatusCode::ACCEPTED, &first),
            "{dup}: the same answer as for a new address"
        );
    }
    assert_eq!(stored().await, hash, "the account is untouched");

    // The owner hears of it once (the verification e-mail came first), however many tries.
    let notice = app.mail(&addr, 2).await;
    let subject = notice.header("Subject").unwrap();
    assert_eq!(subject, "Someone tried to register your address");
    assert!(
        notice
            .links()
            .iter()
            .any(|l| l.ends_with("/forgot-password")),
        "{:?}",
        notice.links()
    );
    let notices: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'email.account_exists'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(notices, 1);
    let (accounts, attempts): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users WHERE email = $1), \
         (SELECT count(*) FROM audit_log WHERE action = 'auth.register_existing')",
    )
    .bind(&addr)
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!((accounts, attempts), (1, 3));
}

#[tokio::test]
async fn every_password_rule_is_a_422_on_the_password_field_without_echoing_it() {
    let app = common::app().await;
    let long = format!("Ab1!{}", "x".repeat(125));
    let cases = [
        ("Ab1!xyz", "at least 8 characters"),
        (long.as_str(), "at most 128 characters"),
        ("lowercase1!only", "uppercase"),
        ("UPPERCASE1!ONLY", "lowercase"),
        ("NoDigitsHere!", "digit"),
        ("NoSpecials123", "special character"),
        ("Tilde~Only123", "special character"),
    ];
    for (password, rule) in cases {
        let r = app
            .client
            .post(format!("{}/api/v1/auth/register", app.url))
            .json(&json!({"email": email(), "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{password}");
        let text = r.text().await.unwrap();
        assert!(
            !text.contains(password),
            "the password leaked into the error body: {text}"
        );
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_error(&body, "validation_error");
        let detail = body["detail"].as_array().unwrap();
        assert_eq!(detail.len(), 1, "{body}");
        assert_eq!(detail[0]["loc"], json!(["body", "password"]));
        assert_eq!(detail[0]["type"], "value_error");
        assert!(
            detail[0]["msg"].as_str().unwrap().contains(rule),
            "{rule}: {body}"
        );
    }
    // The boundaries themselves are accepted.
    let (s, body) = register(
        &app,
        &email(),
        json!({"password": format!("Ab1!{}", "x".repeat(124))}),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "128 characters is allowed: {body}");
    let (s, body) = register(&app, &email(), json!({"password": "Abcdef1!"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "8 characters is allowed: {body}");
}

#[tokio::test]
async fn malformed_and_special_use_emails_are_rejected() {
    let app = common::app().await;
    for bad in [
        "someone@example.test",
        "a@host.localhost",
        "a@corp.local",
        "a@x.invalid",
        "no-at-sign",
        "a@nodot",
    ] {
        let (s, body) = register(&app, bad, json!({})).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(
            body["detail"][0]["loc"],
            json!(["body", "email"]),
            "{bad}: {body}"
        );
    }
    let (s, body) = app
        .post("/api/v1/auth/register", None, json!({"email": email()}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "missing", "{body}");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "password"]),
        "{body}"
    );
}

#[tokio::test]
async fn unverified_accounts_cannot_log_in_and_verification_tokens_are_single_use() {
    let app = common::app().await;
    let addr = email();
    register(&app, &addr, json!({})).await;
    let token = app.mailed_token(&addr, 1, "verification_token").await;

    let r = login_raw(&app, &addr, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.headers().get(SET_COOKIE).is_none(),
        "no session for an unverified account"
    );
    let body: Value = r.json().await.unwrap();
    assert_error(&body, "email_not_verified");

    let (s, body) = verify(&app, "not-a-real-token").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = verify(&app, &token).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "Email verified successfully");
    let (s, body) = verify(&app, &token).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "second use: {body}");
    assert_error(&body, "bad_request");

    assert_eq!(
        login_raw(&app, &addr, PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn resend_verification_answers_alike_for_unknown_addresses() {
    let app = common::app().await;
    let addr = email();
    register(&app, &addr, json!({})).await;
    let (s1, known) = app
        .post(
            "/api/v1/auth/resend-verification",
            None,
            json!({"email": addr}),
        )
        .await;
    let (s2, unknown) = app
        .post(
            "/api/v1/auth/resend-verification",
            None,
            json!({"email": email()}),
        )
        .await;
    let (s3, garbage) = app
        .post(
            "/api/v1/auth/resend-verification",
            None,
            json!({"email": "not an address"}),
        )
        .await;
    assert_eq!(
        (s1, s2, s3),
        (
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED
        )
    );
    assert_eq!(known["message"], unknown["message"]);
    assert_eq!(known["message"], garbage["message"]);
    assert_eq!(
        known.as_object().unwrap().len(),
        1,
        "only a message: {known}"
    );
    // A second e-mail arrives; its fresh link verifies the account.
    let token = app.mailed_token(&addr, 2, "verification_token").await;
    let (s, body) = verify(&app, &token).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Once verified, nothing more is queued.
    let (_, again) = app
        .post(
            "/api/v1/auth/resend-verification",
            None,
            json!({"email": addr}),
        )
        .await;
    assert_eq!(again["message"], known["message"]);
    assert_eq!(jobs_for(&app, "email.verification", &addr).await, 2);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let app = common::app().await;
    let addr = email();
    verified(&app, &addr, json!({})).await;
    let r1 = login_raw(&app, &addr, "Wr0ng!Password").await;
    let r2 = login_raw(&app, &email(), PASSWORD).await;
    assert_eq!(
        (r1.status(), r2.status()),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    let (b1, b2): (Value, Value) = (r1.json().await.unwrap(), r2.json().await.unwrap());
    assert_error(&b1, "unauthorized");
    assert_eq!(b1["message"], "Invalid email or password");
    assert_eq!(b1["message"], b2["message"]);
    assert_eq!(b1["detail"], b2["detail"]);
    assert!(!b1.to_string().contains("Wr0ng!Password"));
    // The e-mail is case-insensitive at login too.
    assert_eq!(
        login_raw(&app, &addr.to_uppercase(), PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn me_reports_the_profile_and_the_current_workspace_with_the_live_role() {
    let app = common::app().await;
    let addr = email();
    verified(
        &app,
        &addr,
        json!({"first_name": "Grace", "last_name": "Hopper"}),
    )
    .await;
    let grace = app.login(&addr).await;
    let (s, me) = app.get("/api/v1/auth/me", &grace.token).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(me["email"], addr);
    assert_eq!(me["first_name"], "Grace");
    assert_eq!(me["last_name"], "Hopper");
    assert_eq!(me["full_name"], "Grace Hopper");
    assert_eq!(me["is_verified"], true);
    assert_eq!(me["is_active"], true);
    assert_eq!(me["current_workspace"], Value::Null);
    assert!(me.get("hashed_password").is_none());

    // Without names the full name is the e-mail's local part.
    let plain = email();
    verified(&app, &plain, json!({"first_name": "", "last_name": null})).await;
    let (_, me) = app
        .get("/api/v1/auth/me", &app.login(&plain).await.token)
        .await;
    assert_eq!(
        me["full_name"],
        json!(plain.split('@').next().unwrap()),
        "{me}"
    );

    let owner = app.user().await;
    let ws = app.workspace(&owner).await;
    app.add_member(&ws, &owner, &grace, "admin").await;
    let (s, switched) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/switch"),
            Some(&grace.token),
            json!({"refresh_token": grace.refresh}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{switched}");
    assert_eq!(switched["role"], "admin");
    let scoped = switched["access_token"].as_str().unwrap();
    assert_eq!(claims(scoped)["tenant_id"], json!(ws));
    let (_, me) = app.get("/api/v1/auth/me", scoped).await;
    assert_eq!(me["current_workspace"]["id"], json!(ws));
    assert_eq!(me["current_workspace"]["name"], "Test WS");
    assert_eq!(me["current_workspace"]["role"], "admin");

    // A demotion shows at once, although the token still says admin.
    let (s, body) = app
        .json(
            Method::PUT,
            &format!("/api/v1/workspaces/{ws}/members/{}/role", grace.id),
            Some(&owner.token),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (_, me) = app.get("/api/v1/auth/me", scoped).await;
    assert_eq!(me["current_workspace"]["role"], "member", "{me}");

    // After removal the workspace is no longer current.
    let (s, _) = app
        .json(
            Method::DELETE,
            &format!("/api/v1/workspaces/{ws}/members/{}", grace.id),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, me) = app.get("/api/v1/auth/me", scoped).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["current_workspace"], Value::Null, "{me}");
}

#[tokio::test]
async fn refresh_rotates_and_a_replayed_token_revokes_the_session() {
    let app = common::app().await;
    let user = app.user().await;

    let (s, first) = refresh(&app, &user.refresh).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["token_type"], "bearer");
    assert_eq!(first["expires_in"], 900);
    let (access1, refresh1) = (
        first["access_token"].as_str().unwrap(),
        first["refresh_token"].as_str().unwrap(),
    );
    assert_ne!(refresh1, user.refresh);
    assert_eq!(
        claims(access1)["sid"],
        claims(&user.token)["sid"],
        "same session"
    );
    assert_eq!(app.get("/api/v1/auth/me", access1).await.0, StatusCode::OK);

    // The new refresh token works once more.
    let (s, second) = refresh(&app, refresh1).await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let access2 = second["access_token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/auth/me", access2).await.0, StatusCode::OK);

    // A second, independent session of the same user is unaffected by the replay below.
    let other = app.login(&user.email).await;

    // Replaying the spent original: 401, and the whole session dies.
    let (s, body) = refresh(&app, &user.refresh).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_error(&body, "unauthorized");
    assert!(
        body["message"].as_str().unwrap().contains("reuse"),
        "{body}"
    );
    for token in [user.token.as_str(), access1, access2] {
        let (s, body) = app.get("/api/v1/auth/me", token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (s, _) = refresh(&app, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the latest refresh token of the revoked session"
    );
    assert_eq!(
        app.get("/api/v1/auth/me", &other.token).await.0,
        StatusCode::OK
    );

    let reuse: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'auth.refresh_reuse_detected'",
    )
    .fetch_one(&app.admin_db().await)
    .await
    .unwrap();
    assert_eq!(reuse, 1);
}

#[tokio::test]
async fn refresh_keeps_the_workspace_context_of_a_switched_session() {
    let app = common::app().await;
    let user = app.user().await;
    let ws = app.workspace(&user).await;
    let (_, switched) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/switch"),
            Some(&user.token),
            json!({"refresh_token": user.refresh}),
        )
        .await;
    let (s, next) = refresh(&app, switched["refresh_token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{next}");
    let c = claims(next["access_token"].as_str().unwrap());
    assert_eq!(
        (c["tenant_id"].clone(), c["role"].clone()),
        (json!(ws), json!("owner"))
    );
}

#[tokio::test]
async fn switch_spends_the_sessions_refresh_token_and_an_access_token_alone_mints_none() {
    let app = common::app().await;
    let user = app.user().await;
    let ws = app.workspace(&user).await;
    let path = format!("/api/v1/workspaces/{ws}/switch");

    // A stolen access token alone: no refresh token, whatever the body says.
    for body in [json!({}), json!({"refresh_token": "forged"})] {
        let (s, out) = app.post(&path, Some(&user.token), body.clone()).await;
        assert!(
            [StatusCode::UNPROCESSABLE_ENTITY, StatusCode::UNAUTHORIZED].contains(&s),
            "{body}: {s} {out}"
        );
        assert!(out.get("refresh_token").is_none(), "{out}");
    }
    let r = app.call(Method::POST, &path, Some(&user.token), None).await;
    assert!(r.status().is_client_error(), "no body: {}", r.status());
    // Another session's refresh token (the same account) is refused and stays unspent.
    let other = app.login(&user.email).await;
    let (s, out) = app
        .post(
            &path,
            Some(&user.token),
            json!({"refresh_token": other.refresh}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{out}");
    assert_eq!(
        out["message"],
        "The refresh token belongs to another session"
    );
    assert_eq!(refresh(&app, &other.refresh).await.0, StatusCode::OK);

    // The session's own refresh token is spent: the next pair continues the session.
    let (s, switched) = app
        .post(
            &path,
            Some(&user.token),
            json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{switched}");
    let next = switched["refresh_token"].as_str().unwrap();
    assert_eq!(claims(next)["sid"], claims(&user.token)["sid"]);
    let (s, _) = refresh(&app, next).await;
    assert_eq!(s, StatusCode::OK, "the new refresh token works");
    // Presenting the spent one again is a replay: the session is revoked.
    let (s, out) = app
        .post(
            &path,
            Some(&user.token),
            json!({"refresh_token": user.refresh}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{out}");
    assert!(out["message"].as_str().unwrap().contains("reuse"), "{out}");
    assert_eq!(
        app.get("/api/v1/auth/me", &user.token).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logout_kills_the_access_token_and_clears_the_cookies() {
    let app = common::app().await;
    let user = app.user().await;
    let r = app
        .call(Method::POST, "/api/v1/auth/logout", Some(&user.token), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(r.headers());
    for (name, path) in [
        ("access_token", "path=/"),
        ("refresh_token", "path=/api/v1/auth"),
        ("csrf_token", "path=/"),
    ] {
        let (_, value, attrs) = cookie(&cookies, name);
        assert!(value.is_empty(), "{name} not emptied");
        assert!(
            attrs.contains(&"max-age=0".to_string()),
            "{name}: {attrs:?}"
        );
        assert!(attrs.contains(&path.to_string()), "{name}: {attrs:?}");
    }
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["message"], "Logged out successfully");

    let (s, body) = app.get("/api/v1/auth/me", &user.token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    let (s, _) = refresh(&app, &user.refresh).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "the session's refresh token dies with it"
    );
    assert_eq!(
        app.call(Method::POST, "/api/v1/auth/logout", Some(&user.token), None)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn forged_tampered_expired_and_foreign_tokens_are_rejected() {
    let app = common::app().await;
    let user = app.user().await;
    let victim = app.user().await;
    let header = user.token.split('.').next().unwrap();
    let (payload, signature) = (
        user.token.split('.').nth(1).unwrap(),
        user.token.split('.').nth(2).unwrap(),
    );

    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let mut tampered = claims(&user.token);
    tampered["sub"] = json!(victim.id);
    tampered["email"] = json!(victim.email);
    let tampered_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered).unwrap());

    let mut expired = claims(&user.token);
    expired["iat"] = json!(now() - 3600);
    expired["nbf"] = json!(now() - 3600);
    expired["exp"] = json!(now() - 5);
    let mut not_yet = claims(&user.token);
    not_yet["nbf"] = json!(now() + 3600);
    not_yet["exp"] = json!(now() + 7200);
    let mut hs512 = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
    hs512.typ = Some("JWT".into());
    let other_alg = jsonwebtoken::encode(
        &hs512,
        &claims(&user.token),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    // A token minted by another deployment (another secret) for a same-looking account.
    let foreign_app = common::spawn()
        .var(
            "JWT_SECRET_KEY",
            "another-secret-fedcba9876543210fedcba9876543210",
        )
        .start()
        .await;
    let foreign = foreign_app.user().await;
    let mut foreign_claims = claims(&foreign.token);
    foreign_claims["sub"] = json!(user.id);
    foreign_claims["sid"] = claims(&user.token)["sid"].clone();
    let foreign_resigned = sign(
        &foreign_claims,
        "another-secret-fedcba9876543210fedcba9876543210",
    );

    let forged = [
        ("alg none", format!("{none_header}.{payload}.")),
        (
            "alg none keeping the signature",
            format!("{none_header}.{payload}.{signature}"),
        ),
        (
            "tampered payload",
            format!("{header}.{tampered_payload}.{signature}"),
        ),
        ("expired", sign(&expired, SECRET)),
        ("not yet valid", sign(&not_yet, SECRET)),
        ("HS512", other_alg),
        ("other secret", foreign.token.clone()),
        ("other secret, our session", foreign_resigned),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, token) in forged {
        let r = app
            .call(Method::GET, "/api/v1/auth/me", Some(&token), None)
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(
            r.headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
        let body: Value = r.json().await.unwrap();
        assert_error(&body, "unauthorized");
        assert_eq!(body["message"], "Could not validate credentials", "{what}");
    }

    // Control: the same claims, re-signed with the right key and a live window, are accepted,
    // so the rejections above are about the signature, algorithm and time checks.
    let mut fresh = claims(&user.token);
    fresh["exp"] = json!(now() + 600);
    assert_eq!(
        app.get("/api/v1/auth/me", &sign(&fresh, SECRET)).await.0,
        StatusCode::OK
    );
    // A correctly signed token for a session that does not exist is refused too.
    fresh["sid"] = json!(uuid::Uuid::new_v4());
    assert_eq!(
        app.get("/api/v1/auth/me", &sign(&fresh, SECRET)).await.0,
        StatusCode::UNAUTHORIZED
    );

    let (s, body) = app.json(Method::GET, "/api/v1/auth/me", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "Authentication required");
}

#[tokio::test]
async fn token_types_are_not_interchangeable() {
    let app = common::app().await;
    let user = app.user().await;
    let (s, body) = app.get("/api/v1/auth/me", &user.refresh).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["message"],
        "Invalid token type. Expected access, got refresh"
    );
    let ws_post = app
        .post(
            "/api/v1/workspaces",
            Some(&user.refresh),
            json!({"name": "x", "slug": unique("ws-")}),
        )
        .await;
    assert_eq!(ws_post.0, StatusCode::UNAUTHORIZED);

    let (s, body) = refresh(&app, &user.token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["message"],
        "Invalid token type. Expected refresh, got access"
    );
    let (s, body) = app
        .json(Method::POST, "/api/v1/auth/refresh", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "Refresh token required");
    // The failed attempts did not spend the refresh token.
    assert_eq!(refresh(&app, &user.refresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_header_for_writes() {
    let app = common::app().await;
    let addr = email();
    verified(&app, &addr, json!({})).await;
    let r = login_raw(&app, &addr, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookies = set_cookies(r.headers());
    let body: Value = r.json().await.unwrap();

    let (_, access, attrs) = cookie(&cookies, "access_token");
    assert_eq!(access, body["access_token"].as_str().unwrap());
    assert!(
        attrs.contains(&"httponly".into()) && attrs.contains(&"path=/".into()),
        "{attrs:?}"
    );
    assert!(attrs.contains(&"samesite=lax".into()), "{attrs:?}");
    let (_, refresh_cookie, attrs) = cookie(&cookies, "refresh_token");
    assert_eq!(refresh_cookie, body["refresh_token"].as_str().unwrap());
    assert!(
        attrs.contains(&"httponly".into()) && attrs.contains(&"path=/api/v1/auth".into()),
        "{attrs:?}"
    );
    let (_, csrf, attrs) = cookie(&cookies, "csrf_token");
    assert!(
        !attrs.contains(&"httponly".into()),
        "scripts must read the CSRF token: {attrs:?}"
    );
    assert!(attrs.contains(&"path=/".into()), "{attrs:?}");
    assert!(csrf.len() >= 32);

    let jar = format!("access_token={access}; csrf_token={csrf}");
    let create = |csrf_header: Option<&str>| {
        let mut r = app
            .client
            .post(format!("{}/api/v1/workspaces", app.url))
            .header(COOKIE, &jar)
            .header(CONTENT_TYPE, "application/json")
            .body(json!({"name": "Cookie WS", "slug": unique("ws-")}).to_string());
        if let Some(h) = csrf_header {
            r = r.header("X-CSRF-Token", h);
        }
        r.send()
    };

    let r = create(None).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_error(&r.json::<Value>().await.unwrap(), "csrf_failed");
    let r = create(Some("wrong-token")).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_error(&r.json::<Value>().await.unwrap(), "csrf_failed");
    let r = create(Some(csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Safe methods need no CSRF header.
    let r = app
        .client
        .get(format!("{}/api/v1/auth/me", app.url))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .client
        .get(format!("{}/api/v1/workspaces", app.url))
        .header(COOKIE, &jar)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        1
    );

    // A CSRF cookie alone (no access cookie) is no credential.
    let r = app
        .client
        .get(format!("{}/api/v1/auth/me", app.url))
        .header(COOKIE, format!("csrf_token={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Cookie refresh: the refresh cookie, with the CSRF header, rotates the session cookies.
    let refresh_jar = format!("refresh_token={refresh_cookie}; csrf_token={csrf}");
    let r = app
        .client
        .post(format!("{}/api/v1/auth/refresh", app.url))
        .header(COOKIE, &refresh_jar)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "cookie refresh without the CSRF header"
    );
    let r = app
        .client
        .post(format!("{}/api/v1/auth/refresh", app.url))
        .header(COOKIE, &refresh_jar)
        .header("X-CSRF-Token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = set_cookies(r.headers());
    assert_ne!(cookie(&rotated, "refresh_token").1, *refresh_cookie);

    // A bearer header takes precedence and needs no CSRF token.
    let user = app.login(&addr).await;
    let r = app
        .client
        .post(format!("{}/api/v1/workspaces", app.url))
        .header(AUTHORIZATION, format!("Bearer {}", user.token))
        .header(COOKIE, "access_token=garbage")
        .json(&json!({"name": "Bearer WS", "slug": unique("ws-")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn registration_emails_a_link_that_verifies_and_login_then_works() {
    let app = common::app().await;
    let addr = email();
    let (s, body) = register(&app, &addr, json!({"first_name": "Ada"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let r = login_raw(&app, &addr, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "not verified yet");

    let mail = app.mail(&addr, 1).await;
    assert_eq!(mail.to, vec![addr.clone()]);
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Verify your e-mail address")
    );
    assert!(
        mail.header("from").unwrap().contains("no-reply@localhost"),
        "{:?}",
        mail.header("from")
    );
    assert!(mail.header("message-id").unwrap().ends_with("@localhost>"));
    let text = mail.part("text/plain").expect("a text part");
    let html = mail.part("text/html").expect("an HTML part");
    assert!(text.starts_with("Hello Ada,"), "{text}");
    let link = &mail.links()[0];
    assert!(
        link.starts_with(&format!(
            "{}/verify-email?verification_token=",
            common::PUBLIC_URL
        )),
        "{link}"
    );
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");

    let token = app.mailed_token(&addr, 1, "verification_token").await;
    let (s, body) = verify(&app, &token).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        login_raw(&app, &addr, PASSWORD).await.status(),
        StatusCode::OK
    );
    // Only the hash of the token is stored.
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM email_verification_tokens")
            .fetch_all(&app.admin_db().await)
            .await
            .unwrap();
    assert!(stored
        .iter()
        .all(|h| h.len() == 32 && h != token.as_bytes()));
}

#[tokio::test]
async fn registering_a_taken_address_queues_no_second_verification() {
    let app = common::app().await;
    let addr = email();
    register(&app, &addr, json!({})).await;
    let (s, _) = register(&app, &addr, json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(
        jobs_for(&app, "email.verification", &addr).await,
        1,
        "the rolled-back insert queued nothing"
    );
    app.mail(&addr, 1).await;
}

async fn request_reset(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/password-reset/request",
        None,
        json!({"email": email}),
    )
    .await
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> (StatusCode, Value) {
    app.post(
        "/api/v1/auth/password-reset/confirm",
        None,
        json!({"token": token, "new_password": password}),
    )
    .await
}

#[tokio::test]
async fn password_reset_by_email_revokes_sessions_and_tokens_are_single_use() {
    let app = common::app().await;
    let user = app.user().await;
    let other = app.user().await;
    let (s1, known) = request_reset(&app, &user.email).await;
    let (s2, unknown) = request_reset(&app, &email()).await;
    let (s3, garbage) = request_reset(&app, "not an address").await;
    assert_eq!(
        (s1, s2, s3),
        (
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED
        )
    );
    assert_eq!(known, unknown, "no account enumeration");
    assert_eq!(known, garbage);

    let mail = app.mail(&user.email, 2).await; // after the verification e-mail
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("Reset your password")
    );
    assert!(mail
        .part("text/plain")
        .unwrap()
        .contains("expires in 30 minutes"));
    let token = app.mailed_token(&user.email, 2, "token").await;
    assert!(mail.links()[0].starts_with(&format!("{}/reset-password?token=", common::PUBLIC_URL)));

    // The password policy applies, on the new_password field.
    let (s, body) = confirm_reset(&app, &token, "weak").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "new_password"]));
    let (s, body) = confirm_reset(&app, "not-a-token", "N3w!Password").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");

    let (s, body) = confirm_reset(&app, &token, "N3w!Password").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Every session of the account is gone, access and refresh tokens alike.
    let (s, _) = app.get("/api/v1/auth/me", &user.token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = refresh(&app, &user.refresh).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Another account's session is untouched.
    let (s, _) = app.get("/api/v1/auth/me", &other.token).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        login_raw(&app, &user.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_raw(&app, &user.email, "N3w!Password").await.status(),
        StatusCode::OK
    );
    // Single use.
    let (s, body) = confirm_reset(&app, &token, "An0ther!Password").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "bad_request");
}

#[tokio::test]
async fn reset_links_expire_and_requests_are_throttled_per_account() {
    let app = common::app().await;
    let user = app.user().await;
    let window = || {
        chrono::Utc::now()
            .timestamp()
            .div_euclid(ghostworks_domain::limits::PASSWORD_RESET_EMAIL_WINDOW_MINUTES * 60)
    };
    let before = window();
    for _ in 0..3 {
        assert_eq!(
            request_reset(&app, &user.email).await.0,
            StatusCode::ACCEPTED
        );
    }
    let crossed = i64::from(window() != before);
    assert_eq!(
        jobs_for(&app, "email.password_reset", &user.email).await,
        1 + crossed,
        "one e-mail per account per window"
    );
    let token = app.mailed_token(&user.email, 2, "token").await;
    let admin = app.admin_db().await;
    let lifetime: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM password_reset_tokens",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(
        (1795.0..=1805.0).contains(&lifetime),
        "30 minutes: {lifetime}"
    );
    // Once that time has passed (moved in the database), the link no longer works.
    sqlx::query("UPDATE password_reset_tokens SET expires_at = now() - interval '1 second'")
        .execute(&admin)
        .await
        .unwrap();
    let (s, body) = confirm_reset(&app, &token, "N3w!Password").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
}
