//! Drives the operator's commands through the real binary against real PostgreSQL: backup,
//! drop, restore and verify, to a directory and to an S3-compatible server; corruption
//! detection; tenant export and import; migration lint, lock and lock timeout.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ghostworks_ops::backup::Manifest;
use ghostworks_ops::pg::{self, TableSum};
use ghostworks_ops::storage::Destination;
use ghostworks_testkit::{services, TestDb};
use sqlx::{Connection, Executor, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");

fn ghostworks(args: &[&str], admin_url: &str) -> Output {
    ghostworks_with(args, admin_url, &[])
}

/// `ghostworks` with only the variables the test gives it, plus `env`.
fn ghostworks_with(args: &[&str], admin_url: &str, env: &[(&str, &str)]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("DATABASE_ADMIN_URL", admin_url)
        .env("GHOSTWORKS_ENV", "test")
        .envs(env.iter().copied())
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

async fn only_manifest(dir: &Path) -> Manifest {
    let dest = Destination::Local(dir.to_path_buf());
    let mut all = ghostworks_ops::backup::list(&dest).await.unwrap();
    assert_eq!(all.len(), 1);
    all.pop().unwrap().1
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
    let manifest = only_manifest(dir.path()).await;
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
    let manifest = only_manifest(dir.path()).await;
    let dump = dir.path().join(&manifest.dump_file);
    flip_a_byte(&dump);

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

fn flip_a_byte(file: &Path) {
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(file, bytes).unwrap();
}

/// An S3-compatible server (s3s-fs, which scripts/install-deps.sh installs) on a free loopback
/// port, serving one bucket from a temporary directory; stopped when dropped.
struct S3Server {
    process: Child,
    root: tempfile::TempDir,
    endpoint: String,
}

const BUCKET: &str = "ghostworks-backups";
const ACCESS_KEY: &str = "ghostworks-test";
const SECRET_KEY: &str = "s3cr3t-never-printed";

impl S3Server {
    fn start() -> Self {
        let bin = ghostworks_deploy_checks::require_tool("s3s-fs");
        let root = tempfile::tempdir().unwrap();
        // s3s-fs serves each directory of its root as a bucket.
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut process = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = process.try_wait().unwrap() {
                panic!("{} exited ({status}) before listening", bin.display());
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on 127.0.0.1:{port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            process,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn env(&self) -> [(&str, &str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_ENDPOINT_URL", &self.endpoint),
        ]
    }

    /// The file in which the server keeps an object.
    fn object_file(&self, key: &str) -> std::path::PathBuf {
        self.root.path().join(BUCKET).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[tokio::test]
async fn backups_to_s3_are_listed_pruned_verified_and_restored() {
    let db = seeded().await;
    let before = sums(&db.admin_url).await;
    let s3 = S3Server::start();
    let prefix = format!("s3://{BUCKET}/prod");
    let env = s3.env();
    let s3_ok = |args: &[&str], url: &str, env: &[(&str, &str)]| {
        let o = ghostworks_with(args, url, env);
        let t = text(&o);
        assert!(o.status.success(), "ghostworks {args:?}:\n{t}");
        assert!(!t.contains(SECRET_KEY), "the secret key was printed:\n{t}");
        t
    };

    // Three backups, keeping the two newest: the third run deletes the first.
    let keep_two = [
        "--keep-recent",
        "2",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
    ];
    let mut manifests = Vec::new();
    let mut out = String::new();
    for _ in 0..3 {
        out = s3_ok(
            &[&["backup", "--dir", &prefix][..], &keep_two].concat(),
            &db.admin_url,
            &env,
        );
        let written = out
            .split_whitespace()
            .find(|w| w.starts_with(&format!("{prefix}/ghostworks-")))
            .unwrap_or_else(|| panic!("no manifest location in {out}"));
        assert!(written.ends_with(".manifest.json"), "{out}");
        manifests.push(written.to_string());
    }
    let first_dump = manifests[0].replace(".manifest.json", ".dump");
    assert!(
        out.contains(&format!("retention: deleted {first_dump}")),
        "{out}"
    );
    // BACKUP_DIR names the bucket as well as --dir does.
    let with_backup_dir = [&env[..], &[("BACKUP_DIR", prefix.as_str())]].concat();
    let listed = s3_ok(&["backup", "list"], &db.admin_url, &with_backup_dir);
    assert!(!listed.contains(&manifests[0]), "{listed}");
    for m in &manifests[1..] {
        assert!(listed.contains(m.as_str()), "{m} in:\n{listed}");
    }
    let stored: Vec<_> = std::fs::read_dir(s3.object_file("prod"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ghostworks-"))
        .collect();
    assert_eq!(stored.len(), 4, "two dumps and their manifests: {stored:?}");
    assert!(
        !stored.iter().any(|n| n.ends_with(".partial")),
        "{stored:?}"
    );

    let out = s3_ok(
        &["backup", "verify", "--from", &prefix],
        &db.admin_url,
        &env,
    );
    assert!(
        out.contains(&format!("backup {} verified", manifests[2])),
        "{out}"
    );

    recreate_empty(&db).await;
    let out = s3_ok(&["restore", "--from", &manifests[1]], &db.admin_url, &env);
    assert!(
        out.contains("counts, checksums and row-level security verified"),
        "{out}"
    );
    assert_eq!(sums(&db.admin_url).await, before);

    // A corrupted object is refused before anything is restored.
    let newest_dump = manifests[2].replace(".manifest.json", ".dump");
    flip_a_byte(
        &s3.object_file(
            newest_dump
                .strip_prefix(&format!("s3://{BUCKET}/"))
                .unwrap(),
        ),
    );
    let empty = services().database().await.unwrap();
    recreate_empty(&empty).await;
    for args in [
        vec!["backup", "verify", "--from", &prefix],
        vec!["restore", "--from", &newest_dump],
    ] {
        let o = ghostworks_with(&args, &empty.admin_url, &env);
        assert!(!o.status.success(), "{args:?}");
        let t = text(&o);
        assert!(
            t.contains(&format!("backup file {newest_dump} is corrupted")),
            "{t}"
        );
        assert!(t.contains("sha256") && t.contains("refusing"), "{t}");
    }
    let mut c = pg::owner_connection(&empty.admin_url, "test")
        .await
        .unwrap();
    assert!(pg::tables(&mut c).await.unwrap().is_empty());
}

#[test]
fn s3_backups_name_the_missing_variable() {
    let o = ghostworks(
        &["backup", "--dir", "s3://ghostworks-backups/prod"],
        "postgres://unused@127.0.0.1:1/unused",
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("AWS_ACCESS_KEY_ID is not set"), "{t}");
    let o = ghostworks_with(
        &["backup", "list", "--dir", "s3://ghostworks-backups/prod"],
        "postgres://unused@127.0.0.1:1/unused",
        &[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_ENDPOINT_URL", "http://192.0.2.10:9000"),
        ],
    );
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("only to a loopback address"), "{t}");
    assert!(!t.contains(SECRET_KEY), "{t}");
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
