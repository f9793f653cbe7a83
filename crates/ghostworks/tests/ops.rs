//! Drives the operator's commands through the real binary against real PostgreSQL: backup,
//! drop, restore and verify, to a directory and to an S3-compatible server; corruption
//! detection; file modes; retention's refusal of planted manifests; tenant export and import
//! with signatures and forged rows; migration lint, lock and lock timeout.

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ghostworks_ops::backup::Manifest;
use ghostworks_ops::pg::{self, TableSum};
use ghostworks_ops::storage::Destination;
use ghostworks_testkit::{services, TestDb};
use sha2::Digest;
use sqlx::{Connection, Executor, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");

fn ghostworks(args: &[&str], admin_url: &str) -> Output {
    ghostworks_with(args, admin_url, &[])
}

/// `ghostworks` with only the variables the test gives it, plus `env`.
fn ghostworks_with(args: &[&str], admin_url: &str, env: &[(&str, &str)]) -> Output {
    run(Command::new(BIN), args, admin_url, env)
}

/// `ghostworks` under the umask 022, with which files are created 0644 and directories 0755
/// unless the program says otherwise.
fn ghostworks_umask_022(args: &[&str], admin_url: &str) -> Output {
    let mut sh = Command::new("sh");
    sh.args(["-c", "umask 022 && exec \"$0\" \"$@\"", BIN]);
    run(sh, args, admin_url, &[])
}

fn run(mut command: Command, args: &[&str], admin_url: &str, env: &[(&str, &str)]) -> Output {
    command
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

/// A key file of `byte` repeated, 0600.
fn key_file(dir: &Path, name: &str, byte: char) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", byte.to_string().repeat(64))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_string()
}

/// What the author of a forged archive does: edit its rows, then recompute the manifest's
/// sha256. A signature line, which needs the key, stays as it was.
fn reseal(archive: &str, edit: impl FnOnce(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = archive.lines().map(str::to_string).collect();
    let signature = lines
        .last()
        .filter(|l| l.contains(r#""kind":"signature""#))
        .cloned();
    if signature.is_some() {
        lines.pop();
    }
    let mut manifest: serde_json::Value = serde_json::from_str(&lines.pop().unwrap()).unwrap();
    assert_eq!(manifest["kind"], "manifest");
    edit(&mut lines);
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    manifest["sha256"] = hex::encode(sha2::Sha256::digest(body.as_bytes())).into();
    format!(
        "{body}{manifest}\n{}",
        signature.map(|s| format!("{s}\n")).unwrap_or_default()
    )
}

/// The rows of `table` in an archive.
fn archived_rows(archive: &str, table: &str) -> Vec<serde_json::Value> {
    archive
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["kind"] == "row" && l["table"] == table)
        .map(|l| l["row"].clone())
        .collect()
}

#[tokio::test]
async fn tenant_export_moves_acme_and_nothing_of_umbrella() {
    let source = seeded().await;
    let target = services().database().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "archive.key", 'a');
    let archive = dir.path().join("acme-corp.gwtenant.jsonl");
    let archive_s = archive.to_str().unwrap();
    let out = ok(
        &[
            "tenant",
            "export",
            "acme-corp",
            "--output",
            archive_s,
            "--key-file",
            &key,
            "--with-credentials",
        ],
        &source.admin_url,
    );
    assert!(out.contains("exported"), "{out}");
    assert!(out.contains("signature: HMAC-SHA256"), "{out}");
    let signed = std::fs::read_to_string(&archive).unwrap();
    assert!(archived_rows(&signed, "users")
        .iter()
        .all(|u| u["hashed_password"]
            .as_str()
            .unwrap()
            .starts_with("$argon2")));

    // Signed with another key, or without a key to check it: refused, nothing written.
    let before = row_counts(&target.admin_url).await;
    let other_key = key_file(dir.path(), "other.key", 'b');
    for (args, expected) in [
        (
            vec!["tenant", "import", archive_s, "--key-file", &other_key],
            "signature does not match",
        ),
        (
            vec!["tenant", "import", archive_s, "--allow-unsigned"],
            "is signed",
        ),
    ] {
        let o = ghostworks(&args, &target.admin_url);
        assert!(!o.status.success(), "{args:?}");
        assert!(text(&o).contains(expected), "{args:?}: {}", text(&o));
    }
    // A row changed and the sha256 recomputed: the signature gives it away.
    let forged = dir.path().join("forged.gwtenant.jsonl");
    std::fs::write(
        &forged,
        reseal(&signed, |lines| {
            let artifact = lines
                .iter_mut()
                .find(|l| l.contains(r#""table":"artifacts""#))
                .unwrap();
            *artifact = artifact.replacen(r#""name":""#, r#""name":"x"#, 1);
        }),
    )
    .unwrap();
    let o = ghostworks(
        &[
            "tenant",
            "import",
            forged.to_str().unwrap(),
            "--key-file",
            &key,
        ],
        &target.admin_url,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("signature does not match"),
        "{}",
        text(&o)
    );
    assert_eq!(row_counts(&target.admin_url).await, before);

    // The key through the environment, as a deploy's env file gives it.
    let o = ghostworks_with(
        &["tenant", "import", archive_s],
        &target.admin_url,
        &[("TENANT_ARCHIVE_KEY_FILE", &key)],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("counts and checksums verified"), "{out}");
    assert!(out.contains("signature: HMAC-SHA256"), "{out}");

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
    let again = ghostworks(
        &["tenant", "import", archive_s, "--key-file", &key],
        &target.admin_url,
    );
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    let tampered = signed.replacen("Acme", "Acne", 1);
    std::fs::write(&archive, tampered).unwrap();
    let fresh = services().database().await.unwrap();
    let refused = ghostworks(
        &["tenant", "import", archive_s, "--key-file", &key],
        &fresh.admin_url,
    );
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("is corrupted"),
        "{}",
        text(&refused)
    );
}

/// The number of rows of every table of the database.
async fn row_counts(url: &str) -> Vec<(String, i64)> {
    sums(url)
        .await
        .into_iter()
        .map(|t| (t.name, t.rows))
        .collect()
}

#[tokio::test]
async fn tenant_import_refuses_rows_of_other_workspaces_and_unsigned_archives() {
    let source = seeded().await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("acme-corp.gwtenant.jsonl");
    let archive_s = archive.to_str().unwrap();
    let out = ok(
        &["tenant", "export", "acme-corp", "--output", archive_s],
        &source.admin_url,
    );
    assert!(out.contains("signature: none"), "{out}");
    assert!(out.contains("must reset their password"), "{out}");
    let honest = std::fs::read_to_string(&archive).unwrap();
    assert!(
        !honest.contains("hashed_password"),
        "password hashes exported"
    );
    assert!(!honest.contains("$argon2"), "password hashes exported");

    // The target has a workspace of its own, the victim.
    let target = services().database().await.unwrap();
    let victim_user = uuid::Uuid::new_v4();
    let victim = uuid::Uuid::new_v4();
    let mut t = pg::owner_connection(&target.admin_url, "test")
        .await
        .unwrap();
    for sql in [
        format!("INSERT INTO users (id, email, hashed_password) VALUES ('{victim_user}', 'victim@example.com', 'x')"),
        format!("INSERT INTO tenants (id, name, slug) VALUES ('{victim}', 'Victim', 'victim-co')"),
        format!("INSERT INTO workspace_memberships (id, user_id, tenant_id, role) VALUES ('{}', '{victim_user}', '{victim}', 'owner')", uuid::Uuid::new_v4()),
    ] {
        t.execute(sql.as_str()).await.unwrap();
    }
    let before = row_counts(&target.admin_url).await;

    let refused = ghostworks(&["tenant", "import", archive_s], &target.admin_url);
    assert!(!refused.status.success());
    let out = text(&refused);
    assert!(
        out.contains("is not signed") && out.contains("--allow-unsigned"),
        "{out}"
    );

    // The attack: one membership line making an archived account owner of the victim.
    let acme_user = archived_rows(&honest, "users")[0]["id"].clone();
    let forged_membership = serde_json::json!({
        "kind": "row",
        "table": "workspace_memberships",
        "row": {
            "id": uuid::Uuid::new_v4(), "user_id": acme_user, "tenant_id": victim,
            "role": "owner", "is_active": true,
            "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00"
        }
    });
    // And an account no row of the workspace names.
    let stray_account = serde_json::json!({
        "kind": "row",
        "table": "users",
        "row": {
            "id": uuid::Uuid::new_v4(), "email": "stray@example.com", "hashed_password": "x",
            "is_verified": true, "is_active": true,
            "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00"
        }
    });
    for (forged_line, table) in [
        (forged_membership, "workspace_memberships"),
        (stray_account, "users"),
    ] {
        let mut line_number = 0;
        let forged = reseal(&honest, |lines| {
            lines.push(forged_line.to_string());
            line_number = lines.len();
        });
        std::fs::write(&archive, forged).unwrap();
        let o = ghostworks(
            &["tenant", "import", archive_s, "--allow-unsigned"],
            &target.admin_url,
        );
        assert!(!o.status.success(), "a forged {table} row was imported");
        let out = text(&o);
        assert!(
            out.contains(&format!("line {line_number} (table {table})")),
            "{out}"
        );
        assert!(out.contains("nothing was imported"), "{out}");
        assert_eq!(row_counts(&target.admin_url).await, before);
    }

    // The honest archive imports with --allow-unsigned; its accounts have no password.
    std::fs::write(&archive, &honest).unwrap();
    let out = ok(
        &["tenant", "import", archive_s, "--allow-unsigned"],
        &target.admin_url,
    );
    let accounts = archived_rows(&honest, "users").len();
    assert!(
        out.contains(&format!(
            "the {accounts} account(s) it created have no password and must reset it"
        )),
        "{out}"
    );
    let (with_hash, victim_members): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users WHERE hashed_password LIKE '$argon2%'),
                (SELECT count(*) FROM workspace_memberships WHERE tenant_id = $1)",
    )
    .bind(victim)
    .fetch_one(&mut t)
    .await
    .unwrap();
    assert_eq!((with_hash, victim_members), (0, 1));
}

#[tokio::test]
async fn backups_and_archives_are_private_whatever_the_umask() {
    let db = seeded().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("backups");
    let dir_s = dir.to_str().unwrap();
    let o = ghostworks_umask_022(&["backup", "--dir", dir_s], &db.admin_url);
    assert!(o.status.success(), "{}", text(&o));
    let archive = root.path().join("acme.gwtenant.jsonl");
    let o = ghostworks_umask_022(
        &[
            "tenant",
            "export",
            "acme-corp",
            "--output",
            archive.to_str().unwrap(),
        ],
        &db.admin_url,
    );
    assert!(o.status.success(), "{}", text(&o));

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "backup directory");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert_eq!(mode(&archive), 0o600, "tenant archive");

    let out = ok(&["backup", "verify", "--from", dir_s], &db.admin_url);
    assert!(!out.contains("has mode"), "{out}");
    let manifest = files
        .iter()
        .find(|f| f.to_str().unwrap().ends_with(".manifest.json"))
        .unwrap();
    std::fs::set_permissions(manifest, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ok(&["backup", "verify", "--from", dir_s], &db.admin_url);
    assert!(
        out.contains(&format!("warning: {} has mode 0644", manifest.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("warning: {dir_s} has mode 0755")),
        "{out}"
    );
    assert!(out.contains("verified"), "{out}");
}

#[tokio::test]
async fn retention_refuses_a_manifest_naming_a_file_outside_the_directory() {
    let db = seeded().await;
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("backups");
    let dir_s = dir.to_str().unwrap();
    ok(&["backup", "--dir", dir_s], &db.admin_url);
    let mut planted = serde_json::to_value(only_manifest(&dir).await).unwrap();
    let victim = root.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();

    let keep_one = [
        "--keep-recent",
        "1",
        "--keep-daily",
        "0",
        "--keep-weekly",
        "0",
    ];
    // An old backup, so that retention would delete "its dump".
    planted["created_at"] = "2020-01-01T00:00:00Z".into();
    let name = "ghostworks-20200101T000000.000Z.manifest.json";
    for dump_file in ["../victim.txt".to_string(), victim.display().to_string()] {
        planted["dump_file"] = dump_file.clone().into();
        std::fs::write(dir.join(name), planted.to_string()).unwrap();
        let o = ghostworks(
            &[&["backup", "--dir", dir_s][..], &keep_one].concat(),
            &db.admin_url,
        );
        assert!(!o.status.success(), "{dump_file}: {}", text(&o));
        let out = text(&o);
        assert!(
            out.contains(&format!(
                "refusing the manifest {}",
                dir.join(name).display()
            )),
            "{out}"
        );
        assert!(out.contains("is not a plain file name"), "{out}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    }
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
