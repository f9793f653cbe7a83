//! Reads from a hot standby with read-your-writes (`DATABASE_REPLICA_URL`), against a real
//! streaming replica of a private PostgreSQL. Its own test binary: the shared test servers
//! are never replicated.

mod common;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

/// Reads served so far by `target` (replica or primary).
fn reads(app: &common::TestApp, target: &str) -> u64 {
    app.state
        .metrics()
        .db_reads
        .with_label_values(&[target])
        .get()
}

/// Gets the artifact at `path` and checks its description; returns how many reads the replica
/// and the primary served meanwhile.
async fn described(app: &common::TestApp, path: &str, token: &str, expected: &str) -> (u64, u64) {
    let before = (reads(app, "replica"), reads(app, "primary"));
    let (s, got) = app.get(path, token).await;
    assert_eq!(
        (s, &got["description"]),
        (StatusCode::OK, &json!(expected)),
        "{got}"
    );
    (
        reads(app, "replica") - before.0,
        reads(app, "primary") - before.1,
    )
}

/// Waits until the standby has replayed everything the primary has written so far.
async fn caught_up(primary: &PgPool, standby: &PgPool) {
    let target: String = sqlx::query_scalar("SELECT pg_current_wal_insert_lsn()::text")
        .fetch_one(primary)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let done: bool =
            sqlx::query_scalar("SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)")
                .bind(&target)
                .fetch_one(standby)
                .await
                .unwrap();
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the standby did not replay up to {target} within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_standby_only_once_it_has_replayed_the_callers_writes() {
    let private = ghostworks_testkit::private().expect("private PostgreSQL and Redis");
    let standby = private.standby().expect("a streaming standby");
    let app = common::spawn()
        .replica_port(standby.port)
        .start_on(private.services)
        .await;
    let primary = app.admin_db().await;
    let standby_server = PgPool::connect(&standby.url("postgres")).await.unwrap();

    let user = app.user().await;
    let ws = app.workspace(&user).await;
    let created = app
        .artifact(
            &ws,
            &user,
            json!({"name": "replicated", "description": "v1"}),
        )
        .await;
    let path = format!(
        "/api/v1/workspaces/{ws}/artifacts/{}",
        created["id"].as_str().unwrap()
    );

    // The standby has replayed the caller's last write: it serves their reads.
    caught_up(&primary, &standby_server).await;
    assert_eq!(described(&app, &path, &user.token, "v1").await, (1, 0));
    let (replica, on_primary) = (reads(&app, "replica"), reads(&app, "primary"));
    let (s, page) = app
        .get(&format!("/api/v1/workspaces/{ws}/artifacts"), &user.token)
        .await;
    assert_eq!(
        (s, page["total"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{page}"
    );
    assert_eq!(
        (reads(&app, "replica"), reads(&app, "primary")),
        (replica + 1, on_primary),
        "the listing was served by the standby"
    );

    // The standby stops replaying; the caller writes and reads at once: the read must show the
    // write, so it is served by the primary.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&standby_server)
        .await
        .unwrap();
    let (s, patched) = app
        .json(
            Method::PATCH,
            &path,
            Some(&user.token),
            Some(json!({"description": "v2"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{patched}");
    assert_eq!(
        described(&app, &path, &user.token, "v2").await,
        (0, 1),
        "the lagging standby did not serve the read"
    );
    // The standby really was behind: it still holds the old description.
    let standby_db = PgPool::connect(&standby.url(&app.db.name)).await.unwrap();
    let there: String = sqlx::query_scalar("SELECT description FROM artifacts WHERE id = $1")
        .bind(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).unwrap())
        .fetch_one(&standby_db)
        .await
        .unwrap();
    assert_eq!(there, "v1");

    // Replay resumes: once the standby has the write, it serves the caller again.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&standby_server)
        .await
        .unwrap();
    caught_up(&primary, &standby_server).await;
    assert_eq!(described(&app, &path, &user.token, "v2").await, (1, 0));
}
