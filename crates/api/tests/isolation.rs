//! Tenant isolation as the database enforces it, checked directly as the API's own role.

mod common;

use common::TestApp;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

const TENANT_TABLES: [&str; 4] = ["tenants", "workspace_memberships", "artifacts", "audit_log"];

/// Two workspaces with artifacts (2 in A, 3 in B) and audit rows in both.
struct World {
    app: TestApp,
    a: Uuid,
    b: Uuid,
}

async fn world() -> World {
    let app = common::app().await;
    let alice = app.user().await;
    let bob = app.user().await;
    let a = app.workspace(&alice).await;
    let b = app.workspace(&bob).await;
    for i in 0..2 {
        app.artifact(&a, &alice, json!({"name": format!("a{i}")}))
            .await;
    }
    for i in 0..3 {
        app.artifact(&b, &bob, json!({"name": format!("b{i}")}))
            .await;
    }
    // Audit rows with a tenant (member.added) in both workspaces.
    let carol = app.user().await;
    app.add_member(&a, &alice, &carol, "member").await;
    app.add_member(&b, &bob, &carol, "member").await;
    World {
        app,
        a: a.parse().unwrap(),
        b: b.parse().unwrap(),
    }
}

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn scope(conn: &mut PgConnection, tenant: Uuid) {
    sqlx::query("SELECT set_config('app.current_tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(conn)
        .await
        .unwrap();
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.to_string())
}

async fn admin_count(pool: &PgPool, sql: &str, tenant: Uuid) -> i64 {
    sqlx::query_scalar(sql)
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn without_a_tenant_context_the_api_role_sees_no_tenant_rows() {
    let w = world().await;
    let admin = w.app.admin_db().await;
    let app = w.app.app_db().await;
    let mut conn = app.acquire().await.unwrap();
    for table in TENANT_TABLES {
        let real: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&admin)
            .await
            .unwrap();
        assert!(real > 0, "{table} has rows");
        assert_eq!(
            count(&mut conn, table).await,
            0,
            "{table} leaks without a tenant context"
        );
    }
    assert_eq!(
        count(&mut conn, "tenant_artifacts").await,
        0,
        "the read view leaks"
    );
    // An empty setting (what RESET leaves behind) fails closed too, rather than erroring.
    sqlx::query("SELECT set_config('app.current_tenant_id', '', false)")
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(count(&mut conn, "artifacts").await, 0);
    // Global tables stay readable: they carry no tenant data.
    assert!(count(&mut conn, "users").await >= 3);
}

#[tokio::test]
async fn a_scoped_transaction_sees_and_writes_only_its_own_tenant() {
    let w = world().await;
    let app = w.app.app_db().await;
    let admin = w.app.admin_db().await;
    let mut conn = app.acquire().await.unwrap();

    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    // At 5,000 rows a sequential read still wins; the choice that matters is between indexes.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for relation in ["artifacts", "tenant_artifacts"] {
        let tenants: Vec<Uuid> = sqlx::query_scalar(&format!("SELECT tenant_id FROM {relation}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        assert_eq!(tenants, vec![w.a, w.a], "{relation}");
        let by_id: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {relation} WHERE tenant_id = $1"
        ))
        .bind(w.b)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!(by_id, 0, "{relation}: naming B explicitly does not help");
    }
    let workspaces: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM tenants")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    assert_eq!(workspaces, vec![w.a]);
    let audit_tenants: Vec<Option<Uuid>> =
        sqlx::query_scalar("SELECT DISTINCT tenant_id FROM audit_log")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(audit_tenants, vec![Some(w.a)]);

    let updated = sqlx::query("UPDATE artifacts SET name = 'pwned' WHERE tenant_id = $1")
        .bind(w.b)
        .execute(&mut *conn)
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    let updated =
        sqlx::query("UPDATE workspace_memberships SET role = 'member' WHERE tenant_id = $1")
            .bind(w.b)
            .execute(&mut *conn)
            .await
            .unwrap();
    assert_eq!(updated.rows_affected(), 0);
    // Moving one's own row into B is refused by WITH CHECK.
    let err = sqlx::query("UPDATE artifacts SET tenant_id = $1")
        .bind(w.b)
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();

    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    let err =
        sqlx::query("INSERT INTO artifacts (id, tenant_id, name) VALUES ($1, $2, 'smuggled')")
            .bind(Uuid::new_v4())
            .bind(w.b)
            .execute(&mut *conn)
            .await
            .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    assert!(err.to_string().contains("row-level security"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();

    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    let err = sqlx::query("INSERT INTO audit_log (tenant_id, action) VALUES ($1, 'forged')")
        .bind(w.b)
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();

    // The API role may not delete at all (artifacts are soft-deleted).
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    let err = sqlx::query("DELETE FROM artifacts WHERE tenant_id = $1")
        .bind(w.b)
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();

    assert_eq!(
        admin_count(
            &admin,
            "SELECT count(*) FROM artifacts WHERE tenant_id = $1 AND name LIKE 'b%'",
            w.b
        )
        .await,
        3,
        "B untouched"
    );
    assert_eq!(
        admin_count(
            &admin,
            "SELECT count(*) FROM artifacts WHERE tenant_id = $1 AND name = 'smuggled'",
            w.b
        )
        .await,
        0
    );
}

#[tokio::test]
async fn the_tenant_setting_ends_with_its_transaction() {
    let w = world().await;
    let app = w.app.app_db().await;
    let mut conn = app.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.b).await;
    assert_eq!(count(&mut conn, "artifacts").await, 3);
    sqlx::query("COMMIT").execute(&mut *conn).await.unwrap();

    // Same connection, next transaction: nothing is visible any more.
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    let setting: Option<String> =
        sqlx::query_scalar("SELECT current_setting('app.current_tenant_id', true)")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert!(setting.unwrap_or_default().is_empty());
    assert_eq!(count(&mut conn, "artifacts").await, 0);
    sqlx::query("COMMIT").execute(&mut *conn).await.unwrap();

    // Rolled-back scopes vanish too, and ghostworks_db::scoped behaves the same way.
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();
    assert_eq!(count(&mut conn, "artifacts").await, 0);
    drop(conn);
    let single = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&w.app.db.app_url)
        .await
        .unwrap();
    let mut tx = ghostworks_db::scoped(&single, Some(w.a), None)
        .await
        .unwrap();
    assert_eq!(count(&mut tx, "artifacts").await, 2);
    tx.commit().await.unwrap();
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM artifacts")
            .fetch_one(&single)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn the_api_role_is_unprivileged_and_owns_nothing() {
    let w = world().await;
    let app = w.app.app_db().await;
    // The login role and every role it inherits from.
    let rows: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolsuper, rolbypassrls FROM pg_roles WHERE pg_has_role(current_user, oid, 'MEMBER') ORDER BY 1",
    )
    .fetch_all(&app)
    .await
    .unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(names.contains(&"ghostworks_app"), "{names:?}");
    for (name, superuser, bypass) in &rows {
        assert!(!superuser, "{name} is a superuser");
        assert!(!bypass, "{name} bypasses RLS");
    }
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND pg_has_role(current_user, c.relowner, 'MEMBER')",
    )
    .fetch_all(&app)
    .await
    .unwrap();
    assert_eq!(owned, Vec::<String>::new(), "owners are exempt from RLS");
    // The flags the policies rely on cannot be switched off by the API.
    let err = sqlx::query("ALTER TABLE artifacts NO FORCE ROW LEVEL SECURITY")
        .execute(&app)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    // Turning row security off does not bypass it: the query errors instead.
    let mut conn = app.acquire().await.unwrap();
    sqlx::query("SET row_security = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let err = sqlx::query("SELECT count(*) FROM artifacts")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
}

#[tokio::test]
async fn every_table_with_a_tenant_id_forces_row_level_security() {
    let w = world().await;
    let admin = w.app.admin_db().await;
    let tables: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attname = 'tenant_id' AND NOT a.attisdropped ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    for expected in ["artifacts", "audit_log", "workspace_memberships"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    for (table, enabled, forced) in &tables {
        assert!(
            *enabled && *forced,
            "{table}: rowsecurity={enabled} forcerowsecurity={forced}"
        );
    }
    let tenants: (bool, bool) =
        sqlx::query_as("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.tenants'::regclass").fetch_one(&admin).await.unwrap();
    assert_eq!(tenants, (true, true));
}

#[tokio::test]
async fn the_audit_log_is_append_only_and_migrations_are_out_of_reach() {
    let w = world().await;
    let app = w.app.app_db().await;
    let mut conn = app.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    assert!(count(&mut conn, "audit_log").await > 0);
    sqlx::query("SAVEPOINT s")
        .execute(&mut *conn)
        .await
        .unwrap();
    for sql in [
        "DELETE FROM audit_log",
        "UPDATE audit_log SET action = 'rewritten'",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(&mut *conn).await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err}");
        sqlx::query("ROLLBACK TO SAVEPOINT s")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();

    for sql in [
        "SELECT count(*) FROM _sqlx_migrations",
        "DELETE FROM _sqlx_migrations",
        "UPDATE _sqlx_migrations SET success = false",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (999, 'x', true, '\\x00', 0)",
    ] {
        let err = sqlx::query(sql).execute(&app).await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}: {err}");
    }
    let admin = w.app.admin_db().await;
    let migrations: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(migrations >= 1);
    // Nor can the API create objects of its own in the schema.
    let err = sqlx::query("CREATE TABLE sneaky (id int)")
        .execute(&app)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
}

#[tokio::test]
async fn the_read_view_is_read_only_and_its_searches_reach_the_tenant_indexes() {
    let w = world().await;
    let app = w.app.app_db().await;
    let mut conn = app.acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    // At 5,000 rows a sequential read still wins; the choice that matters is between indexes.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for write in [
        "UPDATE tenant_artifacts SET name = 'x'",
        "DELETE FROM tenant_artifacts",
        "CREATE OR REPLACE VIEW tenant_artifacts AS SELECT * FROM artifacts",
    ] {
        sqlx::query("SAVEPOINT s")
            .execute(&mut *conn)
            .await
            .unwrap();
        let err = sqlx::query(write).execute(&mut *conn).await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{write}: {err}");
        sqlx::query("ROLLBACK TO SAVEPOINT s")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::query("ROLLBACK").execute(&mut *conn).await.unwrap();

    // Enough rows that a selective search is worth an index (loaded by the superuser, which
    // bypasses the policy). Through the policy a search operator can never be an index
    // condition, since it is not leakproof; through the view it is.
    let admin = w.app.admin_db().await;
    sqlx::query(
        "INSERT INTO artifacts (id, tenant_id, name, description, tags) \
         SELECT gen_random_uuid(), $1, 'bulk ' || g, 'filler text ' || g, ARRAY['t' || g % 50] \
         FROM generate_series(1, 5000) g \
         UNION ALL SELECT gen_random_uuid(), $1, 'needle', 'haystack', ARRAY['rare']",
    )
    .bind(w.a)
    .execute(&admin)
    .await
    .unwrap();
    // VACUUM also merges the GIN indexes' pending lists, which would skew the planner's costs.
    sqlx::raw_sql("VACUUM ANALYZE artifacts")
        .execute(&admin)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut *conn).await.unwrap();
    scope(&mut conn, w.a).await;
    // At 5,000 rows a sequential read still wins; the choice that matters is between indexes.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    // (filter, its operator as EXPLAIN prints it, the index that serves it)
    for (filter, operator, index) in [
        (
            "search_document @@ websearch_to_tsquery('english', 'needle')",
            "@@",
            "ix_artifacts_tenant_search",
        ),
        (
            "name ILIKE '%needle%'",
            "~~*",
            "ix_artifacts_tenant_name_trgm",
        ),
        (
            "description ILIKE '%haystack%'",
            "~~*",
            "ix_artifacts_tenant_description_trgm",
        ),
        ("tags && ARRAY['rare']", "&&", "ix_artifacts_tenant_tags"),
    ] {
        let mut plans = Vec::new();
        for relation in ["tenant_artifacts", "artifacts"] {
            let plan: Vec<String> = sqlx::query_scalar(&format!(
                "EXPLAIN SELECT id FROM {relation} WHERE tenant_id = $1 AND deleted_at IS NULL AND {filter}"
            ))
            .bind(w.a)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            let in_index = plan
                .iter()
                .any(|l| l.contains("Index Cond") && l.contains(operator));
            plans.push((in_index, plan.join("\n")));
        }
        let (view, policy) = (&plans[0], &plans[1]);
        assert!(
            view.0 && view.1.contains(index),
            "view, {filter}:\n{}",
            view.1
        );
        assert!(!policy.0, "policy, {filter}:\n{}", policy.1);
    }
}
