//! The web app over HTTP against a real API (in-process, on a fresh test database), driven
//! like a browser without script: cookies kept by hand, forms posted urlencoded.

mod support;

use ghostworks_testkit::unique;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use support::{stack, stack_with, Browser};

#[tokio::test]
async fn a_post_without_the_matching_csrf_token_is_refused() {
    let s = stack(false).await;
    let mut b = Browser::new(&s);
    b.get("/login").await;
    let fields = [("email", "a@example.com"), ("password", "x")];
    let r = b.send(Method::POST, "/login", Some(&fields), false).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let wrong = [
        ("csrf_token", "0".repeat(64)),
        ("email", "a@example.com".into()),
    ];
    let r = b
        .send(
            Method::POST,
            "/login",
            Some(
                &wrong
                    .iter()
                    .map(|(k, v)| (*k, v.as_str()))
                    .collect::<Vec<_>>(),
            ),
            false,
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // With the token, the same form reaches the API (which refuses the credentials).
    let r = b.post("/login", &fields).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("a@example.com"));
}

#[tokio::test]
async fn session_cookies_are_http_only_secure_and_same_site_and_logout_clears_them() {
    let s = stack(true).await;
    let (mut b, _) = Browser::signed_up(&s).await;
    let r = b.send(Method::GET, "/workspaces", None, false).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut b2 = Browser::new(&s);
    let r = b2.send(Method::GET, "/login", None, false).await;
    let set: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(!set.is_empty());
    for c in &set {
        assert!(
            c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Lax"),
            "{c}"
        );
    }
    let old = b.cookies.clone();
    let r = b.post("/logout", &[]).await;
    assert_eq!(r.headers()[LOCATION], "/login?notice=logged_out");
    let cleared: Vec<&str> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .filter(|v| v.contains("Max-Age=0"))
        .collect();
    assert_eq!(cleared.len(), 3, "{cleared:?}");
    assert!(!b.cookies.contains_key("gw_access"));
    // The old tokens were revoked by the API, not just forgotten by the browser.
    b.cookies = old;
    let r = b.send(Method::GET, "/workspaces", None, false).await;
    assert_eq!(r.headers()[LOCATION], "/login?expired=1");
}

#[tokio::test]
async fn pages_are_no_store_with_a_strict_csp_and_assets_are_cacheable() {
    let s = stack(false).await;
    let (mut b, ws) = Browser::signed_up(&s).await;
    for path in ["/login", "/workspaces", &format!("/w/{ws}/artifacts")] {
        let r = b.send(Method::GET, path, None, false).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store", "{path}");
        let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        let html = r.text().await.unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("style="),
            "{path}"
        );
    }
    let r = b
        .send(Method::GET, &ghostworks_web::assets::JS.url(), None, false)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("immutable"));
}

#[tokio::test]
async fn a_refused_form_comes_back_with_what_was_typed_and_the_field_error() {
    let s = stack(false).await;
    let mut b = Browser::new(&s);
    b.get("/register").await;
    let r = b
        .post(
            "/register",
            &[
                ("email", "typed@example.com"),
                ("password", "weak"),
                ("first_name", "Grace"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("value=\"typed@example.com\""));
    assert!(html.contains("value=\"Grace\""));
    assert!(html.contains("id=\"f-password-error\""));
    assert!(html.contains("aria-invalid=\"true\""));
}

#[tokio::test]
async fn a_stale_edit_is_a_conflict_that_keeps_the_text_and_offers_the_new_version() {
    let s = stack(false).await;
    let (mut b, ws) = Browser::signed_up(&s).await;
    let (url, version) = b.create_artifact(&ws, "Plan").await;
    let v = version.to_string();
    let first = [
        ("name", "Plan"),
        ("description", "first"),
        ("version", v.as_str()),
    ];
    let (st, body) = b.post_fetch(&url, &first).await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // Without script: the page again, the text kept, the newer version in the form.
    let mine = [
        ("name", "Plan"),
        ("description", "my careful words"),
        ("version", v.as_str()),
    ];
    let r = b.post(&url, &mine).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let html = r.text().await.unwrap();
    assert!(html.contains("Someone else saved this artifact"));
    assert!(html.contains("my careful words"));
    assert!(html.contains(&format!("name=\"version\" value=\"{}\"", version + 1)));

    // With script: the same as JSON, and saving with the offered version wins.
    let (st, body) = b.post_fetch(&url, &mine).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let newer = body["version"].as_i64().unwrap().to_string();
    let again = [
        ("name", "Plan"),
        ("description", "my careful words"),
        ("version", newer.as_str()),
    ];
    let (st, _) = b.post_fetch(&url, &again).await;
    assert_eq!(st, StatusCode::OK);
    let (_, page) = b.get(&url).await;
    assert!(page.contains("my careful words"));
}

#[tokio::test]
async fn another_workspace_is_not_found_through_any_url() {
    let s = stack(false).await;
    let (mut alice, alice_ws) = Browser::signed_up(&s).await;
    let (mut bob, bob_ws) = Browser::signed_up(&s).await;
    let (bob_url, _) = bob.create_artifact(&bob_ws, "Bob's secret plan").await;
    let bob_artifact = bob_url.rsplit('/').next().unwrap().to_string();
    for path in [
        format!("/w/{bob_ws}/artifacts"),
        format!("/w/{bob_ws}/settings"),
        format!("/w/{bob_ws}/members"),
        format!("/w/{bob_ws}/artifacts/{bob_artifact}"),
        format!("/w/{alice_ws}/artifacts/{bob_artifact}"),
        format!("/w/{alice_ws}/artifacts/{bob_artifact}/edit"),
    ] {
        let (status, html) = alice.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!html.contains("secret plan"), "{path}");
    }
    let r = alice
        .post(&format!("/w/{bob_ws}/artifacts/{bob_artifact}/delete"), &[])
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, html) = bob.get(&bob_url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("secret plan"));
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_transparently() {
    let s = stack(false).await;
    let (mut b, _) = Browser::signed_up(&s).await;
    let before = b.cookies["gw_refresh"].clone();
    b.cookies.insert("gw_access".into(), "not-a-token".into());
    let (status, html) = b.get("/workspaces").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Team"));
    assert_ne!(b.cookies["gw_access"], "not-a-token");
    assert_ne!(b.cookies["gw_refresh"], before);
    // The API agrees the new access token is good.
    assert!(b.me().await["email"].is_string());
}

#[tokio::test]
async fn every_main_page_renders_for_an_owner() {
    let s = stack(false).await;
    let (mut b, ws) = Browser::signed_up(&s).await;
    let (url, _) = b.create_artifact(&ws, "Roadmap").await;
    for path in [
        "/".to_string(),
        "/workspaces".into(),
        format!("/workspaces/{ws}"),
        format!("/switch?workspace={ws}"),
        format!("/w/{ws}/artifacts?q=road&tags=a&sort=name"),
        format!("/w/{ws}/artifacts/new"),
        url.clone(),
        format!("{url}/edit"),
        format!("/w/{ws}/settings"),
        format!("/w/{ws}/members"),
        "/tour".into(),
        "/ops".into(),
        "/health/live".into(),
        "/health/ready".into(),
        "/metrics".into(),
    ] {
        let r = b.send(Method::GET, &path, None, false).await;
        let status = r.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::SEE_OTHER,
            "{path}: {status}"
        );
    }
    let (_, html) = b.get(&format!("/w/{ws}/artifacts?q=road")).await;
    assert!(html.contains("Roadmap") && html.contains("1 artifact(s)"));
    let (_, metrics) = b.get("/metrics").await;
    assert!(metrics.contains("http_requests_total{endpoint=\"/w/{workspace_id}/artifacts\""));
    assert!(metrics.contains("service=\"web\""));
    let (status, _) = b.get("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn owners_manage_members_and_refusals_come_back_on_the_page() {
    let s = stack(false).await;
    let (mut member, _) = Browser::signed_up(&s).await;
    let (mut owner, ws) = Browser::signed_up(&s).await;
    let (_, me) = member.get("/workspaces").await;
    assert!(me.contains("Team"));
    // The member's address: the one they registered with, shown nowhere else; ask the API.
    let who = member.me().await;
    let email = who["email"].as_str().unwrap();
    let user_id = who["id"].as_str().unwrap();

    // A refused address comes back next to the field, as typed.
    let r = owner
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "nobody@example.invalid"), ("role", "member")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("value=\"nobody@example.invalid\""));
    // An address without an account is answered like one with: nobody is added.
    let r = owner
        .post(
            &format!("/w/{ws}/members"),
            &[("email", "nobody@example.com"), ("role", "member")],
        )
        .await;
    assert_eq!(
        r.headers()[LOCATION],
        format!("/w/{ws}/members?notice=invited")
    );
    let (_, html) = owner.get(&format!("/w/{ws}/members")).await;
    assert!(!html.contains("nobody@example.com") && html.contains("1 member(s)"));

    let r = owner
        .post(
            &format!("/w/{ws}/members"),
            &[("email", email), ("role", "member")],
        )
        .await;
    assert_eq!(
        r.headers()[LOCATION],
        format!("/w/{ws}/members?notice=invited")
    );
    let (status, html) = member.get(&format!("/w/{ws}/artifacts")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains(&format!("/w/{ws}/members\"")));
    let (status, _) = member.get(&format!("/w/{ws}/members")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let r = owner
        .post(
            &format!("/w/{ws}/members/{user_id}/role"),
            &[("role", "admin")],
        )
        .await;
    assert_eq!(
        r.headers()[LOCATION],
        format!("/w/{ws}/members?notice=role")
    );
    let (status, _) = member.get(&format!("/w/{ws}/members")).await;
    assert_eq!(status, StatusCode::OK);
    let (st, body) = owner
        .post_fetch(&format!("/w/{ws}/members/{user_id}/remove"), &[])
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (status, _) = member.get(&format!("/w/{ws}/artifacts")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let r = owner
        .post(
            &format!("/w/{ws}/settings"),
            &[("name", ""), ("description", "kept")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.text().await.unwrap().contains(">kept</textarea>"));
}

/// A browser behind whatever sits in front of the web app, naming itself `forwarded_for`.
async fn browser_at<'a>(s: &'a support::Stack, forwarded_for: &str) -> Browser<'a> {
    let mut b = Browser::new(s);
    b.forwarded_for = Some(forwarded_for.to_string());
    b.get("/login").await;
    b
}

/// A failed login for a fresh account each time, so only the per-client limit (5 a minute)
/// can refuse it, never an account lockout.
async fn failed_login(b: &mut Browser<'_>) -> StatusCode {
    let email = format!("{}@example.com", unique("xff"));
    b.post("/login", &[("email", &email), ("password", "wrong")])
        .await
        .status()
}

#[tokio::test]
async fn browsers_behind_a_trusted_proxy_have_their_own_login_limits() {
    // The web's peer (this test, on loopback) is its trusted proxy; the API trusts the web.
    let s = stack_with(
        &[
            ("RATE_LIMIT_ENABLED", "true"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
        &[("TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await;
    let mut first = browser_at(&s, "198.51.100.1").await;
    for _ in 0..5 {
        assert_eq!(failed_login(&mut first).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        failed_login(&mut first).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A forged hop left of the proxy's own entry changes nothing.
    let mut forged = browser_at(&s, "198.51.100.2, 198.51.100.1").await;
    assert_eq!(
        failed_login(&mut forged).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let mut second = browser_at(&s, "198.51.100.2").await;
    assert_eq!(failed_login(&mut second).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    // The web trusts no proxy: whatever the peer claims, the peer is the client.
    let s = stack_with(
        &[
            ("RATE_LIMIT_ENABLED", "true"),
            ("TRUSTED_PROXIES", "127.0.0.1"),
        ],
        &[],
    )
    .await;
    for i in 1..=5 {
        let mut b = browser_at(&s, &format!("198.51.100.{i}")).await;
        assert_eq!(failed_login(&mut b).await, StatusCode::UNAUTHORIZED);
    }
    let mut spoofer = browser_at(&s, "198.51.100.99").await;
    assert_eq!(
        failed_login(&mut spoofer).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_tour_counts_the_signed_in_users_workspaces_and_nothing_for_anyone_else() {
    let s = stack(false).await;
    let (mut other, other_ws) = Browser::signed_up(&s).await;
    other.create_artifact(&other_ws, "Not yours").await;
    let mut anonymous = Browser::new(&s);
    let (status, html) = anonymous.get("/tour").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        html.contains("to see the counts of your workspaces"),
        "{html}"
    );
    assert!(!html.contains("artifacts ("), "{html}");

    let (mut b, ws) = Browser::signed_up(&s).await;
    b.create_artifact(&ws, "Mine").await;
    b.create_artifact(&ws, "Also mine").await;
    let (status, html) = b.get("/tour").await;
    assert_eq!(status, StatusCode::OK);
    let cards: String = html.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        cards.contains(r#"<span class="big">1</span>workspaces"#)
            && cards.contains(r#"<span class="big">1</span>users (members)"#)
            && cards.contains(r#"<span class="big">2</span>artifacts (2 active)"#),
        "{html}"
    );
}

#[tokio::test]
async fn the_list_pages_by_cursor_from_the_first_page_to_the_last() {
    let s = stack(false).await;
    let (mut b, ws) = Browser::signed_up(&s).await;
    for i in 0..23 {
        b.create_artifact(&ws, &format!("Item {i:02}")).await;
    }
    let mut path = format!("/w/{ws}/artifacts?sort=name");
    let mut seen = Vec::new();
    for page in 1..=3 {
        let (status, html) = b.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            html.contains(&format!("23 artifact(s) · page {page} of 3")),
            "{html}"
        );
        seen.extend(
            (0..23)
                .map(|i| format!("Item {i:02}"))
                .filter(|n| html.contains(&format!(">{n}</a>"))),
        );
        assert_eq!(html.contains("rel=\"first\""), page > 1);
        let next = html
            .split("rel=\"next\" href=\"")
            .nth(1)
            .map(|rest| rest.split('"').next().unwrap().replace("&amp;", "&"));
        match next {
            Some(next) => {
                // Deeper pages name the cursor of the page before, never an offset.
                assert!(
                    next.contains("after=") && !next.contains("offset"),
                    "{next}"
                );
                path = next;
            }
            None => assert_eq!(page, 3),
        }
    }
    let expected: Vec<String> = (0..23).map(|i| format!("Item {i:02}")).collect();
    assert_eq!(seen, expected);
}
