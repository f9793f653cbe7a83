//! Scheduled maintenance with two production workers against real PostgreSQL and the SMTP
//! sink: once per period, what it purges and keeps, the usage it computes, and the RLS
//! boundaries of the worker's role.

use std::collections::HashMap;
use std::time::Duration;

use ghostworks_config::WorkerConfig;
use ghostworks_testkit::{services, TestDb};
use sqlx::{PgPool, Row};
use uuid::Uuid;

fn config(db: &TestDb, interval_secs: &str) -> WorkerConfig {
    let vars: HashMap<String, String> = [
        ("GHOSTWORKS_ENV", "development"),
        ("DATABASE_URL", db.worker_url.as_str()),
        ("SMTP_URL", services().smtp().url().as_str()),
        ("WORKER_CONCURRENCY", "2"),
        ("JOB_POLL_SECONDS", "1"),
        ("MAINTENANCE_INTERVAL_SECONDS", interval_secs),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    WorkerConfig::from_vars(&vars).unwrap()
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sql).execute(pool).await.unwrap();
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Two workspaces with live, recently deleted and long-deleted artifacts; expired and live
/// credentials; old and recent audit rows, with and without a workspace.
async fn world(admin: &PgPool) -> (Uuid, Uuid) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let user = Uuid::new_v4();
    exec(admin, &format!("INSERT INTO users (id, email, hashed_password) VALUES ('{user}', 'm@example.com', 'x')")).await;
    for (t, slug) in [(a, "a"), (b, "b")] {
        exec(
            admin,
            &format!("INSERT INTO tenants (id, name, slug) VALUES ('{t}', '{slug}', '{slug}')"),
        )
        .await;
        exec(
            admin,
            &format!(
            "INSERT INTO artifacts (id, tenant_id, name, description, tags, deleted_at) VALUES \
             (gen_random_uuid(), '{t}', 'live', 'd', '{{x,y}}', NULL), \
             (gen_random_uuid(), '{t}', 'recent', NULL, '{{x}}', now() - interval '29 days'), \
             (gen_random_uuid(), '{t}', 'old', NULL, '{{}}', now() - interval '31 days')"
        ),
        )
        .await;
        exec(admin, &format!(
            "INSERT INTO audit_log (tenant_id, action, created_at) VALUES ('{t}', 'old', now() - interval '366 days'), ('{t}', 'new', now())"
        )).await;
    }
    exec(admin, "INSERT INTO audit_log (tenant_id, action, created_at) VALUES (NULL, 'old', now() - interval '366 days'), (NULL, 'new', now())").await;
    let (live, expired) = (Uuid::new_v4(), Uuid::new_v4());
    exec(admin, &format!(
        "INSERT INTO sessions (id, user_id, expires_at) VALUES ('{live}', '{user}', now() + interval '1 day'), ('{expired}', '{user}', now() - interval '1 second')"
    )).await;
    exec(admin, &format!(
        "INSERT INTO refresh_tokens (jti_hash, session_id, expires_at) VALUES ('\\x01', '{live}', now() - interval '1 second'), ('\\x02', '{live}', now() + interval '1 day'), ('\\x03', '{expired}', now() + interval '1 day')"
    )).await;
    for table in ["email_verification_tokens", "password_reset_tokens"] {
        exec(admin, &format!(
            "INSERT INTO {table} (token_hash, user_id, expires_at) VALUES ('\\x01', '{user}', now() - interval '1 second'), ('\\x02', '{user}', now() + interval '1 hour')"
        )).await;
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_runs_once_per_period_across_two_workers() {
    let db = services().database().await.unwrap();
    let admin = PgPool::connect(&db.admin_url).await.unwrap();
    let (a, b) = world(&admin).await;
    let cfg = config(&db, "1");
    let w1 = ghostworks_worker::connect(&cfg).await.unwrap();
    let w2 = ghostworks_worker::connect(&cfg).await.unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut runs = Vec::new();
    for w in [w1.clone(), w2.clone()] {
        let mut rx = rx.clone();
        runs.push(tokio::spawn(async move {
            w.run(async move {
                let _ = rx.wait_for(|stop| *stop).await;
            })
            .await
            .unwrap()
        }));
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    tx.send(true).unwrap();
    for r in runs {
        r.await.unwrap();
    }

    // One maintenance job per period, each run once, by one of the two workers.
    let periods = count(
        &admin,
        "SELECT count(*) FROM jobs WHERE kind = 'maintenance'",
    )
    .await;
    assert!((3..=5).contains(&periods), "{periods} periods in 3.5 s");
    assert_eq!(
        count(
            &admin,
            "SELECT count(DISTINCT idempotency_key) FROM jobs WHERE kind = 'maintenance'"
        )
        .await,
        periods
    );
    let unfinished_or_retried = count(&admin, "SELECT count(*) FROM jobs WHERE kind LIKE 'maintenance%' AND (status <> 'succeeded' OR attempts <> 1)").await;
    assert!(
        unfinished_or_retried <= 3,
        "only the last period's jobs may still be in flight"
    );
    let ran = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(r#"ghostworks_jobs_succeeded_total{kind="maintenance"} "#))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    };
    let total = ran(&w1.metrics().render(&admin).await.unwrap())
        + ran(&w2.metrics().render(&admin).await.unwrap());
    let succeeded = count(
        &admin,
        "SELECT count(*) FROM jobs WHERE kind = 'maintenance' AND status = 'succeeded'",
    )
    .await;
    assert_eq!(
        total as i64, succeeded,
        "executions = periods: no period ran twice"
    );
    // Each period fanned out one job per workspace.
    let per_tenant: Vec<(Uuid, i64)> = sqlx::query("SELECT tenant_id, count(*) FROM jobs WHERE kind = 'maintenance.tenant' GROUP BY 1 ORDER BY 1")
        .fetch_all(&admin)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(per_tenant.len(), 2);
    assert!(
        per_tenant.iter().all(|(_, n)| *n == succeeded),
        "each completed period fanned out once: {per_tenant:?}"
    );

    // Purged: expired credentials, artifacts deleted over 30 days ago, audit rows over 365.
    assert_eq!(count(&admin, "SELECT count(*) FROM sessions").await, 1);
    assert_eq!(
        count(&admin, "SELECT count(*) FROM refresh_tokens").await,
        1,
        "the expired token and the expired session's token"
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM email_verification_tokens").await,
        1
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM password_reset_tokens").await,
        1
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM artifacts WHERE name = 'old'").await,
        0
    );
    assert_eq!(count(&admin, "SELECT count(*) FROM artifacts").await, 4);
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM audit_log WHERE action = 'old'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM audit_log WHERE action = 'new'"
        )
        .await,
        3
    );
    // Usage per workspace: live + recently deleted rows, tags of live rows.
    for t in [a, b] {
        let row = sqlx::query("SELECT artifacts, deleted_artifacts, distinct_tags, tag_uses, storage_bytes FROM workspace_usage WHERE tenant_id = $1")
            .bind(t)
            .fetch_one(&admin)
            .await
            .unwrap();
        let got: (i64, i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // "live" + "d" + "{}", "recent" + "{}"
        assert_eq!(got, (1, 1, 2, 2, 4 + 1 + 2 + 6 + 2));
    }
}

#[tokio::test]
async fn the_worker_role_reaches_tenant_rows_only_in_scope_and_the_api_only_enqueues() {
    let db = services().database().await.unwrap();
    let admin = PgPool::connect(&db.admin_url).await.unwrap();
    let (a, b) = world(&admin).await;
    let worker = PgPool::connect(&db.worker_url).await.unwrap();
    let code = |e: sqlx::Error| {
        e.as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.to_string())
    };

    // Unscoped, the worker sees no workspace data; it lists workspaces only through tenant_ids().
    for table in [
        "artifacts",
        "tenants",
        "workspace_memberships",
        "workspace_usage",
    ] {
        assert_eq!(
            count(&worker, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(&worker, "SELECT count(*) FROM audit_log").await,
        2,
        "rows of no workspace"
    );
    assert_eq!(count(&worker, "SELECT count(*) FROM tenant_ids()").await, 2);
    let mut tx = ghostworks_db::scoped(&worker, Some(a), None).await.unwrap();
    let seen: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT tenant_id FROM artifacts")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, vec![a]);
    let deleted = sqlx::query("DELETE FROM artifacts WHERE tenant_id = $1")
        .bind(b)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 0, "another workspace's rows are out of reach");
    tx.rollback().await.unwrap();
    // What it was never granted.
    for sql in [
        "UPDATE artifacts SET name = 'x'",
        "INSERT INTO tenants (id, name, slug) VALUES (gen_random_uuid(), 'x', 'x')",
        "UPDATE users SET is_verified = true",
        "UPDATE workspace_memberships SET is_active = false",
        "UPDATE sessions SET revoked_at = now()",
    ] {
        let err = sqlx::query(sql).execute(&worker).await.unwrap_err();
        assert_eq!(code(err).as_deref(), Some("42501"), "{sql}");
    }

    // The API may queue jobs of no workspace or of its scoped one, and read none.
    let app = PgPool::connect(&db.app_url).await.unwrap();
    let mut tx = ghostworks_db::scoped(&app, Some(a), None).await.unwrap();
    let user = Uuid::new_v4();
    let job = |t| {
        ghostworks_worker::kinds::invitation_email(
            t,
            user,
            user,
            ghostworks_domain::Role::Member,
            chrono::Utc::now(),
        )
    };
    assert!(ghostworks_worker::enqueue(&mut tx, job(a))
        .await
        .unwrap()
        .is_some());
    assert!(ghostworks_worker::enqueue(
        &mut tx,
        ghostworks_worker::kinds::verification_email(user)
    )
    .await
    .unwrap()
    .is_some());
    let err = ghostworks_worker::enqueue(&mut tx, job(b))
        .await
        .unwrap_err();
    assert_eq!(
        code(err).as_deref(),
        Some("42501"),
        "a job for another workspace"
    );
    tx.rollback().await.unwrap();
    let err = sqlx::query("SELECT count(*) FROM jobs")
        .execute(&app)
        .await
        .unwrap_err();
    assert_eq!(code(err).as_deref(), Some("42501"));
}
