//! The outage drill: steady load on a real server while its Redis is killed for a few seconds
//! and its PostgreSQL restarted (fast shutdown). Its own test binary, on servers of its own:
//! the shared test servers must never stop.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ghostworks_testkit::load::Tally;
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A distinct client address per request (the API trusts the loopback proxy), so the rate
/// limits count in Redis on every request without refusing any.
fn forwarded_for(n: u32) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_rides_out_a_redis_and_a_postgresql_outage() {
    let drill_started = Instant::now();
    let mut private = ghostworks_testkit::private().expect("private PostgreSQL and Redis");
    let app = common::spawn()
        .var("RATE_LIMIT_ENABLED", "true")
        .var("TRUSTED_PROXIES", "127.0.0.1")
        .start_on(private.services)
        .await;
    let user = app.user().await;
    let ws = app.workspace(&user).await;
    let path = format!("{}/api/v1/workspaces/{ws}/artifacts", app.url);
    let client = ghostworks_telemetry::http_client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let counter = Arc::new(AtomicU32::new(0));
    let load: Vec<_> = (0..6)
        .map(|_| {
            let (client, path, token) = (client.clone(), path.clone(), user.token.clone());
            let (stop, tally, counter) = (stop.clone(), tally.clone(), counter.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let write = client
                        .post(&path)
                        .bearer_auth(&token)
                        .header("x-forwarded-for", forwarded_for(n))
                        .json(&json!({"name": format!("drill {n}")}))
                        .send()
                        .await;
                    let mut t = Tally::default();
                    if let Some(a) = t.record("POST artifact", write).await {
                        t.acknowledged.push(a["id"].as_str().unwrap().to_string());
                    }
                    let read = client
                        .get(format!("{path}?limit=5"))
                        .bearer_auth(&token)
                        .header("x-forwarded-for", forwarded_for(n))
                        .send()
                        .await;
                    t.record("GET artifacts", read).await;
                    tally.lock().unwrap().add(t);
                }
            })
        })
        .collect();
    let ready = format!("{}/health/ready", app.url);
    let ready_status = |client: reqwest::Client| {
        let ready = ready.clone();
        async move { client.get(ready).send().await.unwrap().status() }
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    private.redis.kill().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ready_status(client.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready without Redis"
    );
    // A login cannot be counted against its account's lockout: refused, even the right password.
    let login = |client: reqwest::Client| {
        let (url, email) = (format!("{}/api/v1/auth/login", app.url), user.email.clone());
        async move {
            client
                .post(url)
                .header("x-forwarded-for", "192.0.2.2")
                .json(&json!({"email": email, "password": common::PASSWORD}))
                .send()
                .await
        }
    };
    let mut refused = Tally::default();
    refused
        .record("login without Redis", login(client.clone()).await)
        .await;
    assert_eq!(
        (refused.unavailable, &refused.wrong),
        (1, &Vec::<String>::new()),
        "a login without Redis answers the JSON 503"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    private.redis.start_again().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = login(client.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "logins again with Redis back");

    let postgres = Arc::new(private.postgres);
    let pg = postgres.clone();
    tokio::task::spawn_blocking(move || pg.stop())
        .await
        .unwrap()
        .expect("fast shutdown");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        ready_status(client.clone()).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready without PostgreSQL"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pg = postgres.clone();
    tokio::task::spawn_blocking(move || pg.start_again())
        .await
        .unwrap()
        .expect("PostgreSQL starts again");
    let back = Instant::now();

    // Serving again: a write and readiness succeed within 5 s of the database.
    loop {
        let r = client
            .post(&path)
            .bearer_auth(&user.token)
            .header("x-forwarded-for", "192.0.2.1")
            .json(&json!({"name": "after the restart"}))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::CREATED {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "still {} {:?} after the database came back",
            r.status(),
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while ready_status(client.clone()).await != StatusCode::OK {
        assert!(back.elapsed() < Duration::from_secs(5), "not ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let serving_after = back.elapsed();

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    eprintln!(
        "drill: {} answers, {} JSON 503s, {} writes acknowledged, serving {serving_after:?} after the database, {:?} in all",
        tally.answered,
        tally.unavailable,
        tally.acknowledged.len(),
        drill_started.elapsed()
    );
    assert!(
        tally.wrong.is_empty(),
        "{} answers were neither 2xx nor the JSON 503: {:#?}",
        tally.wrong.len(),
        &tally.wrong[..tally.wrong.len().min(10)]
    );
    assert!(tally.unavailable > 0, "the outage was felt: some 503s");

    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM artifacts WHERE id::text = ANY($1)")
        .bind(&tally.acknowledged)
        .fetch_one(&app.admin_db().await)
        .await
        .unwrap();
    assert_eq!(
        stored as usize,
        tally.acknowledged.len(),
        "every acknowledged write survived"
    );
    let metrics = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ghostworks_dependency_errors_total{dependency=\"postgres\"} ")),
        "the 503s are counted as dependency errors"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ghostworks_dependency_errors_total{dependency=\"redis\"} ")),
        "the refused login is counted as a Redis error"
    );
}
