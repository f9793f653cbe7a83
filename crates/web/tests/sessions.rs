//! Refreshing a session's tokens: requests of one browser that race on a refresh share it, one
//! session's refresh never waits for another's, and a spent refresh token presented after the
//! refresh finished is the API's to judge (reuse revokes the session).
//!
//! A refresh is held in flight by locking the session's refresh token rows in the database,
//! which is where the API's refresh waits (`SELECT ... FOR UPDATE`).

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::header::LOCATION;
use reqwest::StatusCode;
use sqlx::{Connection, PgConnection};
use support::{stack, Browser, Stack};

/// A transaction holding the row locks of every refresh token of `email`'s sessions: the API's
/// refresh of any of them waits until it ends.
async fn hold_refresh(s: &Stack, email: &str) -> PgConnection {
    let mut c = PgConnection::connect(&s.db_admin_url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut c).await.unwrap();
    sqlx::query(
        "SELECT 1 FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
         JOIN users u ON u.id = s.user_id WHERE u.email = $1 FOR UPDATE OF t",
    )
    .bind(email)
    .fetch_all(&mut c)
    .await
    .unwrap();
    c
}

async fn release(mut c: PgConnection) {
    sqlx::query("COMMIT").execute(&mut c).await.unwrap();
}

/// Waits until a query of the API sits waiting for a row lock (the held refresh).
async fn refresh_waiting(s: &Stack) {
    let mut c = PgConnection::connect(&s.db_admin_url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (n,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        if n > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no refresh reached the database");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn refresh_tokens_of(s: &Stack, email: &str) -> i64 {
    let mut c = PgConnection::connect(&s.db_admin_url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id \
         JOIN users u ON u.id = s.user_id WHERE u.email = $1",
    )
    .bind(email)
    .fetch_one(&mut c)
    .await
    .unwrap();
    n
}

/// A signed-up browser, its address, and the same browser with its access token expired.
async fn expired<'a>(s: &'a Stack) -> (Browser<'a>, String) {
    let (mut b, _) = Browser::signed_up(s).await;
    let email = b.me().await["email"].as_str().unwrap().to_string();
    b.cookies.insert("gw_access".into(), "not-a-token".into());
    (b, email)
}

#[tokio::test]
async fn concurrent_page_loads_of_one_session_share_one_refresh() {
    let s: &'static Stack = Box::leak(Box::new(stack(false).await));
    let (b, email) = expired(s).await;
    let before = refresh_tokens_of(s, &email).await;
    let lock = hold_refresh(s, &email).await;
    let loads: Vec<_> = (0..5)
        .map(|_| {
            let mut b = b.clone();
            tokio::spawn(async move {
                let (status, _) = b.get("/workspaces").await;
                (status, b.cookies.get("gw_refresh").cloned())
            })
        })
        .collect();
    refresh_waiting(s).await;
    // The other loads need only their first API call answered to join the refresh in flight.
    tokio::time::sleep(Duration::from_millis(500)).await;
    release(lock).await;
    let mut renewed = BTreeSet::new();
    for load in loads {
        let (status, refresh) = load.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        renewed.insert(refresh.expect("a refresh cookie"));
    }
    assert_eq!(renewed.len(), 1, "every load got the one new pair");
    assert!(!renewed.contains(&b.cookies["gw_refresh"]));
    assert_eq!(
        refresh_tokens_of(s, &email).await,
        before + 1,
        "one refresh"
    );
}

#[tokio::test]
async fn one_sessions_refresh_does_not_wait_for_anothers() {
    let s: &'static Stack = Box::leak(Box::new(stack(false).await));
    let (mut a, a_email) = expired(s).await;
    let (mut b, _) = expired(s).await;
    let lock = hold_refresh(s, &a_email).await;
    let stuck = tokio::spawn(async move { a.get("/workspaces").await.0 });
    refresh_waiting(s).await;
    let started = Instant::now();
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), b.get("/workspaces"))
        .await
        .expect("the second session's page waited for the first session's refresh");
    assert_eq!(status, StatusCode::OK);
    assert!(!stuck.is_finished(), "the first refresh was not held");
    let took = started.elapsed();
    release(lock).await;
    assert_eq!(stuck.await.unwrap(), StatusCode::OK);
    eprintln!("second session refreshed in {took:?} while the first was in flight");
}

#[tokio::test]
async fn a_spent_refresh_token_presented_later_revokes_the_session() {
    let s = stack(false).await;
    let (mut b, email) = expired(&s).await;
    let spent = b.cookies.clone();
    let (status, _) = b.get("/workspaces").await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(b.cookies["gw_refresh"], spent["gw_refresh"]);

    let mut replay = Browser::new(&s);
    replay.cookies = spent;
    let r = replay
        .send(reqwest::Method::GET, "/workspaces", None, false)
        .await;
    assert_eq!(r.headers()[LOCATION], "/login?expired=1");
    // The API saw the reuse and revoked the session: the pair the refresh issued is dead too.
    let r = b
        .send(reqwest::Method::GET, "/workspaces", None, false)
        .await;
    assert_eq!(r.headers()[LOCATION], "/login?expired=1");
    let mut c = PgConnection::connect(&s.db_admin_url).await.unwrap();
    let reasons: Vec<(Option<String>,)> = sqlx::query_as(
        "SELECT s.revoked_reason FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE u.email = $1",
    )
    .bind(&email)
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(
        reasons,
        vec![(Some("refresh_token_reuse".to_string()),)],
        "the session was revoked as a reuse"
    );
}
