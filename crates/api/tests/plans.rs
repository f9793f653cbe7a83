//! The listing's plans read a bounded number of rows whatever the workspace's size: each
//! request's statement is run with `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` as the API role,
//! row-level security on, on a workspace of 100,000 artifacts, and the rows its scans read
//! (returned plus removed by filters and rechecks) must stay far below the workspace's size.
//! Row counts, not timings: a plan that falls back to reading the whole workspace fails.

use ghostworks_db::artifacts;
use ghostworks_domain::artifact::{ListParams, SearchMode, SortField};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

const ARTIFACTS: i64 = 100_000;
/// A quarter of the workspace. The page stops after limit + 1 matches and the filtered count
/// after its bound + 1, so a filter matching a tenth of the rows reads about ten times that.
const MAX_ROWS_READ: f64 = 25_000.0;

/// Rows every scan node of `plan` read, over all its loops.
fn rows_read(plan: &Value) -> f64 {
    let n = |k: &str| plan[k].as_f64().unwrap_or(0.0);
    let own = if plan["Node Type"]
        .as_str()
        .is_some_and(|t| t.ends_with("Scan"))
    {
        (n("Actual Rows") + n("Rows Removed by Filter") + n("Rows Removed by Index Recheck"))
            * n("Actual Loops").max(1.0)
    } else {
        0.0
    };
    own + plan["Plans"]
        .as_array()
        .map(|ps| ps.iter().map(rows_read).sum())
        .unwrap_or(0.0)
}

async fn seed(admin: &PgPool) -> Uuid {
    let tenant = Uuid::new_v4();
    sqlx::query("INSERT INTO tenants (id, name, slug) VALUES ($1, 'plans', $2)")
        .bind(tenant)
        .bind(format!("plans-{}", tenant.simple()))
        .execute(admin)
        .await
        .unwrap();
    // Half the rows say "alpha report", half "beta summary"; one in ten carries each tag.
    sqlx::query(
        "INSERT INTO artifacts (id, tenant_id, name, description, tags, created_at) \
         SELECT gen_random_uuid(), $1, 'artifact ' || i, \
                CASE WHEN i % 2 = 0 THEN 'alpha report ' ELSE 'beta summary ' END || md5(i::text), \
                ARRAY['t' || (i % 10)], timestamptz '2024-01-01' + i * interval '1 minute' \
         FROM generate_series(1, $2) AS i",
    )
    .bind(tenant)
    .bind(ARTIFACTS)
    .execute(admin)
    .await
    .unwrap();
    sqlx::query("ANALYZE artifacts")
        .execute(admin)
        .await
        .unwrap();
    tenant
}

#[tokio::test]
async fn newest_first_listings_and_searches_read_a_bounded_number_of_rows() {
    let db = ghostworks_testkit::services().database().await.unwrap();
    let admin = PgPool::connect(&db.admin_url).await.unwrap();
    let tenant = seed(&admin).await;
    let app = PgPool::connect(&db.app_url).await.unwrap();
    let newest = |q: Option<&str>, mode: SearchMode, tags: &[&str]| ListParams {
        q: q.map(str::to_string),
        mode,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        sort: Some(SortField::CreatedAt),
        ..Default::default()
    };
    let cases = [
        ("list", newest(None, SearchMode::Substring, &[])),
        ("fulltext", newest(Some("alpha"), SearchMode::Fulltext, &[])),
        (
            "substring",
            newest(Some("report"), SearchMode::Substring, &[]),
        ),
        ("tag", newest(None, SearchMode::Substring, &["t3"])),
    ];
    for (name, params) in cases {
        let q = params.validate(false).unwrap();
        let mut tx = ghostworks_db::scoped(&app, Some(tenant), None)
            .await
            .unwrap();
        let page = artifacts::list(&mut tx, tenant, &q).await.unwrap();
        assert_eq!(page.rows.len(), 20, "{name}");
        let explained = artifacts::explain_list(&mut tx, tenant, &q).await.unwrap();
        tx.rollback().await.unwrap();
        let read = rows_read(&explained[0]["Plan"]);
        assert!(
            read <= MAX_ROWS_READ,
            "{name} read {read} rows of {ARTIFACTS}: {explained:#}"
        );
    }
}
