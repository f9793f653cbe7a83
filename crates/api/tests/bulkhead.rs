//! Cheap requests do not queue behind slow searches: searches and the listings whose work grows
//! with the workspace hold at most `SEARCH_CONCURRENCY` connections and run under `SEARCH_TIMEOUT_MS`, past which they answer
//! 503 with `Retry-After`. A search is made slow for sure by locking the artifacts table from
//! another session: it then waits on the lock, which its statement timeout includes, while
//! requests that do not read artifacts (the workspace, the caller, readiness) can still run.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, User};
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{PgPool, Postgres, Transaction};

async fn setup(app: &TestApp) -> (User, String) {
    let user = app.user().await;
    let ws = app.workspace(&user).await;
    app.artifact(&ws, &user, json!({"name": "report", "tags": ["t"]}))
        .await;
    (user, ws)
}

/// Holds the artifacts table locked until the transaction is dropped or rolled back.
async fn lock_artifacts(admin: &PgPool) -> Transaction<'static, Postgres> {
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE artifacts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Statements of this database waiting for a lock on the artifacts table.
async fn waiting_on_artifacts(admin: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'artifacts'::regclass \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(admin)
    .await
    .unwrap()
}

/// A 503 refusal in the error shape, with `Retry-After: 1`; returns its code.
async fn refusal(r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[RETRY_AFTER], "1");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("retry")),
        "{body}"
    );
    assert!(body["request_id"].is_string(), "{body}");
    body["error"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_search_past_its_timeout_answers_503_with_retry_after() {
    let app = common::spawn()
        .var("SEARCH_TIMEOUT_MS", "300")
        .start()
        .await;
    let (user, ws) = setup(&app).await;
    let admin = app.admin_db().await;
    let lock = lock_artifacts(&admin).await;
    for query in [
        "/artifacts?tags=t",
        "/artifacts/search/advanced?q=report",
        "/artifacts/stats",
    ] {
        let started = Instant::now();
        let path = format!("/api/v1/workspaces/{ws}{query}");
        let r = app.call(Method::GET, &path, Some(&user.token), None).await;
        assert_eq!(refusal(r).await, "statement_timeout", "{query}");
        // The search's own timeout, not the connection's 30 s.
        assert!(started.elapsed() < Duration::from_secs(5), "{query}");
    }
    lock.rollback().await.unwrap();
    let path = format!("/api/v1/workspaces/{ws}/artifacts?tags=t");
    let (s, page) = app.get(&path, &user.token).await;
    assert_eq!(
        (s, page["total"].clone()),
        (StatusCode::OK, json!(1)),
        "{page}"
    );
}

#[tokio::test]
async fn searches_hold_at_most_their_share_of_the_pool_and_cheap_requests_pass_them() {
    let app = common::spawn()
        .var("DATABASE_POOL_SIZE", "3")
        .var("SEARCH_CONCURRENCY", "1")
        .var("SEARCH_TIMEOUT_MS", "2000")
        .start()
        .await;
    let (user, ws) = setup(&app).await;
    let admin = app.admin_db().await;
    let lock = lock_artifacts(&admin).await;
    let searches: Vec<_> = (0..4)
        .map(|_| {
            let r = app
                .client
                .get(format!(
                    "{}/api/v1/workspaces/{ws}/artifacts?tags=t",
                    app.url
                ))
                .bearer_auth(&user.token)
                .send();
            tokio::spawn(r)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    while waiting_on_artifacts(&admin).await == 0 {
        assert!(Instant::now() < deadline, "no search reached the database");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Four searches in flight, one of them in the database: the others wait for a place
    // without holding a connection.
    assert_eq!(waiting_on_artifacts(&admin).await, 1);
    for path in [
        format!("/api/v1/workspaces/{ws}"),
        "/api/v1/auth/me".to_string(),
        "/health/ready".to_string(),
    ] {
        let started = Instant::now();
        let (s, body) = app.get(&path, &user.token).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        // Without the bulkhead the searches held all three connections for 2 s.
        assert!(started.elapsed() < Duration::from_secs(1), "{path}");
    }
    // A newest-first page takes no place: it reaches the database beside the search holding
    // the only one (and waits there on the lock, not for a place).
    let page = tokio::spawn(
        app.client
            .get(format!(
                "{}/api/v1/workspaces/{ws}/artifacts?limit=5",
                app.url
            ))
            .bearer_auth(&user.token)
            .send(),
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    while waiting_on_artifacts(&admin).await < 2 {
        assert!(
            Instant::now() < deadline,
            "the page did not reach the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut codes = Vec::new();
    for search in searches {
        codes.push(refusal(search.await.unwrap().unwrap()).await);
    }
    lock.rollback().await.unwrap();
    assert_eq!(page.await.unwrap().unwrap().status(), StatusCode::OK);
    assert!(
        codes.contains(&"statement_timeout".to_string()),
        "{codes:?}"
    );
    assert!(
        codes
            .iter()
            .all(|c| c == "statement_timeout" || c == "searches_busy"),
        "{codes:?}"
    );
    let path = format!("/api/v1/workspaces/{ws}/artifacts");
    assert_eq!(app.get(&path, &user.token).await.0, StatusCode::OK);
}
