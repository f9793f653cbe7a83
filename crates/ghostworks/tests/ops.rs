//! Drives the operator's commands through the real binary against real PostgreSQL: backup,
//! drop, restore and verify; corruption detection; tenant export and import; migration lint,
//! lock and lock timeout.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ghostworks_ops::backup::Manifest;
use ghostworks_ops::pg::{self, TableSum};
use ghostworks_testkit::{services, TestDb};
use sqlx::{Connection, Executor, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");

fn ghostworks(args: &[&str], admin_url: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("DATABASE_ADMIN_URL", admin_url)
        .env("GHOSTWORKS_ENV", "test")
        .output()
        .expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str], admin_url: &str) -> String {
    let o = ghostworks(args, admin_url);
    assert!(o.status.success(), "ghostworks {args:?}:\n{}", text(&o));
    text(&o)
}

async fn seeded() -> TestDb {
    let db = services().database().await.unwrap();
    ok(&["seed", "--demo"], &db.admin_url);
    db
}

async fn sums(url: &str) -> Vec<TableSum> {
    let mut c = pg::owner_connection(url, "test").await.unwrap();
    pg::database_sums(&mut c).await.unwrap()
}

/// Drops the test's database and creates it again, empty (no schema at all).
async fn recreate_empty(db: &TestDb) {
    let mut s = PgConnection::connect(&pg::with_database(&db.admin_url, "postgres").unwrap())
        .await
        .unwrap();
    for sql in [
        format!("DROP DATABASE {} WITH (FORCE)", db.name),
        format!("CREATE DATABASE {}", db.name),
    ] {
        s.execute(sql.as_str()).await.unwrap();
    }
}

fn only_manifest(dir: &Path) -> (std::path::PathBuf, Manifest) {
    let mut all = ghostworks_ops::backup::list(dir).unwrap();
    assert_eq!(all.len(), 1);
    all.pop().unwrap()
}

#[tokio::test]
async fn backup_drop_restore_verify_gives_identical_data() {
    let db = seeded().await;
    let before = sums(&db.admin_url).await;
    assert!(before.iter().any(|t| t.name == "artifacts" && t.rows > 0));
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap();
    let out = ok(&["backup", "--dir", dir_s], &db.admin_url);
    assert!(out.contains("written"), "{out}");
    let (_, manifest) = only_manifest(dir.path());
    assert_eq!(manifest.tables, before);
    let latest = ghostworks_db::MIGRATOR.iter().map(|m| m.version).max();
    assert_eq!(Some(manifest.schema_version), latest);
    assert_eq!(manifest.sha256.len(), 64);

    recreate_empty(&db).await;
    let out = ok(&["restore", "--from", dir_s], &db.admin_url);
    assert!(
        out.contains("counts, checksums and row-level security verified"),
        "{out}"
    );
    assert_eq!(sums(&db.admin_url).await, before);

    // The API's role still sees exactly its tenant's rows through row-level security.
    let mut app = PgConnection::connect(&db.app_url).await.unwrap();
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM artifacts")
        .fetch_one(&mut app)
        .await
        .unwrap();
    assert_eq!(visible, 0);

    let out = ok(&["backup", "verify", "--from", dir_s], &db.admin_url);
    assert!(out.contains("verified"), "{out}");
    let listed = ok(&["backup", "list", "--dir", dir_s], &db.admin_url);
    assert!(
        listed.contains(&manifest.dump_file.replace(".dump", "")),
        "{listed}"
    );

    // Restoring over data needs --force.
    let refused = ghostworks(&["restore", "--from", dir_s], &db.admin_url);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("not empty"), "{}", text(&refused));
    assert!(text(&refused).contains("--force"), "{}", text(&refused));
    ok(&["restore", "--from", dir_s, "--force"], &db.admin_url);
    assert_eq!(sums(&db.admin_url).await, before);
}

#[tokio::test]
async fn a_corrupted_backup_is_refused() {
    let db = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap();
    ok(&["backup", "--dir", dir_s], &db.admin_url);
    let (_, manifest) = only_manifest(dir.path());
    let dump = dir.path().join(&manifest.dump_file);
    let mut bytes = std::fs::read(&dump).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&dump, bytes).unwrap();

    let empty = services().database().await.unwrap();
    recreate_empty(&empty).await;
    for args in [
        vec!["backup", "verify", "--from", dir_s],
        vec!["restore", "--from", dump.to_str().unwrap()],
    ] {
        let o = ghostworks(&args, &empty.admin_url);
        assert!(!o.status.success(), "{args:?}");
        let t = text(&o);
        assert!(t.contains("is corrupted") && t.contains("sha256"), "{t}");
        assert!(t.contains("refusing"), "{t}");
    }
    let mut c = pg::owner_connection(&empty.admin_url, "test")
        .await
        .unwrap();
    assert!(pg::tables(&mut c).await.unwrap().is_empty());
}

async fn tenant_sums(url: &str, slug: &str) -> Vec<TableSum> {
    let mut c = pg::owner_connection(url, "test").await.unwrap();
    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE slug = $1")
        .bind(slug)
        .fetch_one(&mut c)
        .await
        .unwrap();
    let mut out = Vec::new();
    for (table, cond) in [
        ("tenants", format!("t.id = '{id}'")),
        ("workspace_memberships", format!("t.tenant_id = '{id}'")),
        ("artifacts", format!("t.tenant_id = '{id}'")),
        ("audit_log", format!("t.tenant_id = '{id}'")),
        ("workspace_usage", format!("t.tenant_id = '{id}'")),
    ] {
        out.push(pg::table_sum(&mut c, table, &cond).await.unwrap());
    }
    out
}

#[tokio::test]
async fn tenant_export_moves_acme_and_nothing_of_umbrella() {
    let source = seeded().await;
    let target = services().database().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("acme-corp.gwtenant.jsonl");
    let archive_s = archive.to_str().unwrap();
    let out = ok(
        &["tenant", "export", "acme-corp", "--output", archive_s],
        &source.admin_url,
    );
    assert!(out.contains("exported"), "{out}");
    let out = ok(&["tenant", "import", archive_s], &target.admin_url);
    assert!(out.contains("counts and checksums verified"), "{out}");

    let expected = tenant_sums(&source.admin_url, "acme-corp").await;
    assert!(expected.iter().any(|t| t.name == "artifacts" && t.rows > 0));
    assert_eq!(tenant_sums(&target.admin_url, "acme-corp").await, expected);

    let mut t = pg::owner_connection(&target.admin_url, "test")
        .await
        .unwrap();
    let (tenants, foreign_users): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tenants),
                (SELECT count(*) FROM users u WHERE NOT EXISTS
                    (SELECT 1 FROM workspace_memberships m JOIN tenants w ON w.id = m.tenant_id
                     WHERE m.user_id = u.id AND w.slug = 'acme-corp'))",
    )
    .fetch_one(&mut t)
    .await
    .unwrap();
    assert_eq!((tenants, foreign_users), (1, 0));
    let umbrella: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email LIKE '%umbrella%'")
            .fetch_one(&mut t)
            .await
            .unwrap();
    assert_eq!(umbrella, 0);

    // A second import of the same workspace is refused, and so is a tampered archive.
    let again = ghostworks(&["tenant", "import", archive_s], &target.admin_url);
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    let tampered = std::fs::read_to_string(&archive)
        .unwrap()
        .replacen("Acme", "Acne", 1);
    std::fs::write(&archive, tampered).unwrap();
    let fresh = services().database().await.unwrap();
    let refused = ghostworks(&["tenant", "import", archive_s], &fresh.admin_url);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("is corrupted"),
        "{}",
        text(&refused)
    );
}

#[test]
fn migrate_lint_catches_each_destructive_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        ("drop-table", "DROP TABLE artifacts;"),
        (
            "drop-column",
            "ALTER TABLE artifacts DROP COLUMN description;",
        ),
        ("rename-table", "ALTER TABLE artifacts RENAME TO items;"),
        (
            "rename-column",
            "ALTER TABLE users RENAME COLUMN email TO mail;",
        ),
        (
            "column-type",
            "ALTER TABLE artifacts ALTER COLUMN version TYPE bigint;",
        ),
        (
            "not-null-without-default",
            "ALTER TABLE artifacts ADD COLUMN owner uuid NOT NULL;",
        ),
        (
            "blocking-index",
            "CREATE INDEX ix_name ON artifacts (name);",
        ),
    ];
    for (i, (_, sql)) in cases.iter().enumerate() {
        std::fs::write(d.join(format!("{:04}_case.sql", i + 3)), sql).unwrap();
    }
    let o = ghostworks(&["migrate", "lint", "--dir", d.to_str().unwrap()], "");
    assert!(!o.status.success());
    let out = text(&o);
    for (rule, _) in cases {
        assert!(out.contains(&format!(": {rule}: ")), "{rule} in:\n{out}");
    }
    assert!(out.contains("fix:"), "{out}");

    // Marked as contract steps, the same changes pass (and are still listed).
    for (i, (_, sql)) in cases.iter().enumerate() {
        std::fs::write(
            d.join(format!("{:04}_case.sql", i + 3)),
            format!("-- ghostworks:contract\n{sql}\n"),
        )
        .unwrap();
    }
    let o = ghostworks(&["migrate", "lint", "--dir", d.to_str().unwrap()], "");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("allowed: contract step"));

    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
    let o = ghostworks(&["migrate", "lint", "--dir", shipped], "");
    assert!(o.status.success(), "{}", text(&o));
}

#[tokio::test]
async fn migrations_take_a_lock_and_give_up_waiting_quickly() {
    let db = services().database().await.unwrap();
    let mut holder = PgConnection::connect(&db.admin_url).await.unwrap();
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(ghostworks_ops::migrate::LOCK_KEY)
        .execute(&mut holder)
        .await
        .unwrap();
    let o = ghostworks(&["migrate"], &db.admin_url);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("another deploy is applying migrations"),
        "{}",
        text(&o)
    );
    holder
        .execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();

    // Traffic holding a lock the migration needs: the migration gives up after its timeout.
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("LOCK TABLE _sqlx_migrations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = Instant::now();
    let o = ghostworks(&["migrate", "--lock-timeout", "1"], &db.admin_url);
    assert!(!o.status.success());
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(text(&o).contains("--lock-timeout"), "{}", text(&o));
    holder.execute("ROLLBACK").await.unwrap();
    ok(&["migrate"], &db.admin_url);
}
