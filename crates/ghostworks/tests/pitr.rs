//! Continuous archiving and point-in-time recovery through the real binary, pgBackRest and
//! PostgreSQL: a server archiving into an encrypted local repository, a full backup, a
//! restore to a moment between two batches of writes, a drill with its RPO and RTO, the
//! exporter's metrics (and the alert rules and dashboard that query them), and backups that
//! must fail: a wrong key, a key file others may read.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ghostworks_deploy_checks::metrics::{
    dashboard_queries, promtool_lint, rule_expressions, ExportedMetrics,
};
use ghostworks_deploy_checks::{assert_no_violations, repo_root, require_tool};
use ghostworks_testkit::archiving::Archiving;
use sqlx::{Connection, Executor, PgConnection};

const BIN: &str = env!("CARGO_BIN_EXE_ghostworks");

/// The archiving server and the environment every `ghostworks` command of the test gets.
struct Setup {
    server: Archiving,
    admin_url: String,
    env: Vec<(String, String)>,
    key: String,
}

impl Setup {
    fn command(&self, args: &[&str], extra: &[(&str, &str)]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied());
        c
    }

    fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let o = self.command(args, extra).output().expect("binary runs");
        let all = text(&o);
        assert!(!all.contains(&self.key), "the key was printed:\n{all}");
        o
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, &[]);
        assert!(o.status.success(), "ghostworks {args:?}:\n{}", text(&o));
        text(&o)
    }

    async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.admin_url).await.unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A server with the Ghostworks schema that archives its WAL through pgBackRest into an
/// encrypted repository with a stanza.
async fn setup() -> Setup {
    let pgbackrest = require_tool("pgbackrest");
    let path = std::env::join_paths(
        std::iter::once(pgbackrest.parent().unwrap().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let server = std::thread::spawn(Archiving::start)
        .join()
        .unwrap()
        .expect("the archiving server starts");
    let mut postgres = PgConnection::connect(&server.postgres.url("postgres"))
        .await
        .unwrap();
    postgres
        .execute("CREATE DATABASE ghostworks")
        .await
        .unwrap();
    let root = server.root.display().to_string();
    let env = [
        ("PATH", path.to_str().unwrap().to_string()),
        ("GHOSTWORKS_ENV", "test".into()),
        ("DATABASE_ADMIN_URL", server.postgres.url("ghostworks")),
        ("PITR_REPO", format!("{root}/repo")),
        ("PITR_PGDATA", server.pgdata().display().to_string()),
        (
            "PITR_PG_SOCKET_DIR",
            server.socket_dir().display().to_string(),
        ),
        ("PITR_STATE_DIR", format!("{root}/state")),
        ("PITR_KEY_FILE", server.key_file.display().to_string()),
    ];
    let key = std::fs::read_to_string(&server.key_file).unwrap();
    let setup = Setup {
        admin_url: server.postgres.url("ghostworks"),
        env: env.map(|(k, v)| (k.to_string(), v)).to_vec(),
        key: key.trim().to_string(),
        server,
    };
    setup.ok(&["migrate"]);
    setup.ok(&["seed", "--demo"]);
    let out = setup.ok(&["pitr", "configure"]);
    let config = Path::new(&root).join("state/pgbackrest.conf");
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", config.display());
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("repo1-cipher-type=aes-256-cbc"));
    // The operator pastes the printed settings into postgresql.conf; ALTER SYSTEM here.
    let mut conn = setup.connect().await;
    for line in out.lines().map(str::trim) {
        for name in ["archive_mode", "archive_command", "archive_timeout"] {
            if let Some(value) = line.strip_prefix(&format!("{name} = ")) {
                let sql = format!("ALTER SYSTEM SET {name} = {value}");
                conn.execute(sql.as_str()).await.unwrap();
            }
        }
    }
    conn.close().await.unwrap();
    setup.server.restart().expect("restarted with archiving");
    let out = setup.ok(&["pitr", "stanza-create"]);
    assert!(out.contains("archived a WAL segment"), "{out}");
    setup
}

/// Inserts rows one transaction each.
async fn insert(conn: &mut PgConnection, batch: &str, n: i32) {
    for i in 0..n {
        sqlx::query("INSERT INTO pitr_marks (batch, n) VALUES ($1, $2)")
            .bind(batch)
            .bind(i)
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// The numbers of a batch's rows, in order.
async fn batch(conn: &mut PgConnection, name: &str) -> Vec<i32> {
    sqlx::query_scalar("SELECT n FROM pitr_marks WHERE batch = $1 ORDER BY n")
        .bind(name)
        .fetch_all(conn)
        .await
        .unwrap()
}

/// Closes the current WAL segment and waits until the server has archived it.
async fn archive_now(conn: &mut PgConnection) {
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (archived, failed): (Option<String>, i64) =
            sqlx::query_as("SELECT last_archived_wal, failed_count FROM pg_stat_archiver")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        if archived.as_deref() >= Some(segment.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{segment} not archived within 30 s (last {archived:?}, {failed} failures)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a restored copy left running: as `postgres` when the test runs as root (the
/// server's owner then), else as the test's own user.
fn stop_server(pgdata: &Path) {
    let pg_ctl = ghostworks_devstack::pg_bin("pg_ctl").unwrap();
    let stop = |mut c: Command| {
        c.arg("-D")
            .arg(pgdata)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .unwrap()
    };
    let mut as_postgres = Command::new("runuser");
    as_postgres.args(["-u", "postgres", "--"]).arg(&pg_ctl);
    let mut o = stop(as_postgres);
    if !o.status.success() {
        o = stop(Command::new(&pg_ctl));
    }
    assert!(o.status.success(), "pg_ctl stop: {}", text(&o));
}

/// A seconds figure printed as `LABEL 1.2 s`.
fn seconds_after(out: &str, label: &str) -> f64 {
    let rest = out
        .split_once(&format!("{label} "))
        .unwrap_or_else(|| panic!("no {label} in {out}"))
        .1;
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_backup_restore_to_a_moment_drill_and_metrics() {
    let started = Instant::now();
    let s = setup().await;
    let out = s.ok(&["pitr", "backup", "--type", "full"]);
    assert!(out.contains("(full) taken in"), "{out}");
    // pgBackRest picks the backup to restore from by its stop time, in whole seconds: the
    // moment must come after it.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let mut conn = s.connect().await;
    conn.execute("CREATE TABLE pitr_marks (batch text NOT NULL, n int NOT NULL)")
        .await
        .unwrap();
    insert(&mut conn, "before", 3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moment: String = sqlx::query_scalar(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    insert(&mut conn, "after", 2).await;
    archive_now(&mut conn).await;

    // Restore to the moment: exactly the rows committed before it.
    let target = s.server.root.join("restored");
    let port = ghostworks_devstack::free_port().unwrap().to_string();
    let args = [
        "pitr",
        "restore",
        "--to",
        &moment,
        "--target-dir",
        target.to_str().unwrap(),
        "--port",
        &port,
        "--keep-running",
    ];
    let out = s.ok(&args);
    assert!(
        out.contains("group roles and forced row-level security checked"),
        "{out}"
    );
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the restored data directory");
    let restored_url = format!("postgres://postgres@127.0.0.1:{port}/ghostworks");
    let mut restored = PgConnection::connect(&restored_url).await.unwrap();
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT batch, n FROM pitr_marks ORDER BY batch, n")
            .fetch_all(&mut restored)
            .await
            .unwrap();
    let before: Vec<(String, i32)> = (0..3).map(|n| ("before".to_string(), n)).collect();
    assert_eq!(rows, before, "restored to {moment}:\n{out}");
    // The demo tenant's rows came back too (the full backup holds them).
    let artifacts: i64 = sqlx::query_scalar("SELECT count(*) FROM artifacts")
        .fetch_one(&mut restored)
        .await
        .unwrap();
    assert!(artifacts > 0, "no artifacts restored");
    restored.close().await.unwrap();
    stop_server(&target);

    // A differential backup on top; the drill restores from it.
    let out = s.ok(&["pitr", "backup", "--type", "diff"]);
    assert!(out.contains("(diff) taken in"), "{out}");
    let rto = drill(&s);
    failing_backups(&s).await;
    metrics(&s, rto).await;
    lose_the_data_directory(&s).await;
    missing_segment(&s);
    let took = started.elapsed();
    eprintln!("the whole test took {took:?}");
    assert!(took < Duration::from_secs(180), "took {took:?}");
}

/// A drill restores everything archived and records its result, which feeds the metrics;
/// returns its RTO.
fn drill(s: &Setup) -> f64 {
    let out = s.ok(&["pitr", "drill", "--timeout", "120"]);
    assert!(out.contains("drill passed"), "{out}");
    let rto = seconds_after(&out, "RTO");
    let rpo = seconds_after(&out, "RPO");
    assert!(rto > 0.0 && rto < 120.0, "RTO {rto}: {out}");
    assert!((0.0..120.0).contains(&rpo), "RPO {rpo}: {out}");
    let record = s.server.root.join("state/drill.json");
    let mode = std::fs::metadata(&record).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "drill.json");
    let drill: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(drill["outcome"], "passed", "{drill}");
    eprintln!("measured: drill RTO {rto} s, RPO {rpo} s; {out}");
    rto
}

/// The server crashes and its data directory is deleted: a restore to the end of the archive,
/// into an emptied data directory as the runbook says, brings back every write archived
/// before the crash. Writes in the segment not yet archived are what asynchronous archiving
/// can lose (the RPO without a synchronous standby): a prefix of them may come back, never a
/// gap.
async fn lose_the_data_directory(s: &Setup) {
    let mut conn = s.connect().await;
    insert(&mut conn, "archived", 5).await;
    archive_now(&mut conn).await;
    let unarchived = 20;
    insert(&mut conn, "unarchived", unarchived).await;
    conn.close().await.unwrap();

    // A crash (immediate shutdown: no checkpoint, no last archiving), then the disk is gone.
    let pgdata = s.server.pgdata();
    let pg_ctl = ghostworks_devstack::pg_bin("pg_ctl").unwrap();
    let mut crash = Command::new("runuser");
    crash.args(["-u", "postgres", "--"]).arg(&pg_ctl);
    let o = crash
        .arg("-D")
        .arg(&pgdata)
        .args(["-m", "immediate", "-w", "stop"])
        .output()
        .unwrap();
    assert!(o.status.success(), "pg_ctl stop -m immediate: {}", text(&o));
    std::fs::remove_dir_all(&pgdata).unwrap();
    std::fs::create_dir(&pgdata).unwrap();
    std::fs::set_permissions(&pgdata, std::fs::Permissions::from_mode(0o700)).unwrap();
    let chown = Command::new("chown")
        .arg("postgres:postgres")
        .arg(&pgdata)
        .status()
        .unwrap();
    assert!(chown.success());

    let port = ghostworks_devstack::free_port().unwrap().to_string();
    let restore = [
        "pitr",
        "restore",
        "--to-latest",
        "--target-dir",
        pgdata.to_str().unwrap(),
        "--port",
        &port,
        "--keep-running",
        "--timeout",
        "120",
    ];
    let out = s.ok(&restore);
    assert!(out.contains("restored to the end of the archive"), "{out}");
    let url = format!("postgres://postgres@127.0.0.1:{port}/ghostworks");
    let mut restored = PgConnection::connect(&url).await.unwrap();
    let archived = batch(&mut restored, "archived").await;
    assert_eq!(
        archived,
        (0..5).collect::<Vec<_>>(),
        "every archived write is back"
    );
    let came_back = batch(&mut restored, "unarchived").await;
    let rows = came_back.len();
    assert_eq!(
        came_back,
        (0..rows as i32).collect::<Vec<_>>(),
        "the unarchived writes that came back have a gap"
    );
    restored.close().await.unwrap();
    eprintln!(
        "measured: data directory lost; restored to the end of the archive: 5 of 5 archived \
         writes back, {rows} of {unarchived} written after the last archived segment (the \
         asynchronous archive's RPO)"
    );
    stop_server(&pgdata);
}

/// A WAL segment deleted from the middle of the archive: `verify` and the drill fail naming
/// it, and the drill's record says so.
fn missing_segment(s: &Setup) {
    let archive = s.server.root.join("repo/archive/ghostworks");
    let mut segments: Vec<PathBuf> = ghostworks_deploy_checks::files_under(&archive, &|n| {
        n.len() > 25 && n[..24].bytes().all(|b| b.is_ascii_hexdigit()) && n.as_bytes()[24] == b'-'
    });
    segments.sort_by_key(|p| p.file_name().unwrap().to_owned());
    assert!(
        segments.len() >= 3,
        "too few archived segments: {segments:?}"
    );
    let victim = &segments[1];
    let name = victim.file_name().unwrap().to_str().unwrap()[..24].to_string();
    std::fs::remove_file(victim).unwrap();
    for args in [
        ["pitr", "verify"].as_slice(),
        &["pitr", "drill", "--timeout", "120"],
    ] {
        let o = s.run(args, &[]);
        assert!(!o.status.success(), "{args:?} passed without {name}");
        let out = text(&o);
        assert!(
            out.contains(&format!("WAL segment {name} is missing")),
            "{args:?}: {out}"
        );
    }
    let record = std::fs::read_to_string(s.server.root.join("state/drill.json")).unwrap();
    let drill: serde_json::Value = serde_json::from_str(&record).unwrap();
    assert_eq!(drill["outcome"], "failed", "{drill}");
    corrupted_backup_file(s);
}

/// Bytes of a backup file overwritten in the repository: `verify` fails naming the file.
fn corrupted_backup_file(s: &Setup) {
    let backups = s.server.root.join("repo/backup/ghostworks");
    let mut files: Vec<PathBuf> =
        ghostworks_deploy_checks::files_under(&backups, &|n| n.ends_with(".lz4"));
    files.retain(|p| p.components().any(|c| c.as_os_str() == "pg_data"));
    let victim = files
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("backup files in the repository");
    let mut bytes = std::fs::read(victim).unwrap();
    let (middle, end) = (bytes.len() / 2, (bytes.len() / 2 + 16).min(bytes.len()));
    for b in &mut bytes[middle..end] {
        *b = !*b;
    }
    std::fs::write(victim, bytes).unwrap();
    let name = victim.strip_prefix(&backups).unwrap().display().to_string();
    let o = s.run(&["pitr", "verify"], &[]);
    assert!(!o.status.success(), "verify passed with {name} corrupted");
    let out = text(&o);
    assert!(
        out.contains(&format!("{name} is corrupted")),
        "{name}: {out}"
    );
}

/// A backup that cannot run exits non-zero, and the attempt is recorded; a command run with
/// other settings than `configure` used refuses to run and leaves the server's configuration
/// as it was.
async fn failing_backups(s: &Setup) {
    let config = s.server.root.join("state/pgbackrest.conf");
    let installed = std::fs::read(&config).unwrap();
    let wrong = s.server.root.join("wrong.key");
    std::fs::write(&wrong, format!("{}\n", "w".repeat(40))).unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    for args in [["pitr", "backup"].as_slice(), &["pitr", "info"]] {
        let o = s.run(args, &[("PITR_KEY_FILE", wrong.to_str().unwrap())]);
        assert!(!o.status.success(), "{args:?} ran with another key");
        let out = text(&o);
        assert!(
            out.contains("the PITR settings differ")
                && out.contains("global/repo1-cipher-pass")
                && out.contains("ghostworks pitr configure"),
            "{out}"
        );
    }
    assert_eq!(
        std::fs::read(&config).unwrap(),
        installed,
        "a command with another key changed the configuration the server archives with"
    );

    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = s.run(
        &["pitr", "backup"],
        &[("PITR_KEY_FILE", wrong.to_str().unwrap())],
    );
    assert!(!o.status.success(), "a key file others may read was used");
    assert!(text(&o).contains("refusing to run"), "{}", text(&o));

    // The backup set cannot be written (archiving, in its own directory, goes on).
    let backups = s.server.root.join("repo/backup/ghostworks");
    let mode = std::fs::metadata(&backups).unwrap().permissions();
    std::fs::set_permissions(&backups, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = s.run(&["pitr", "backup", "--type", "full"], &[]);
    std::fs::set_permissions(&backups, mode).unwrap();
    assert!(
        !o.status.success(),
        "a backup that could not be written succeeded"
    );
    assert!(
        text(&o).contains("pgbackrest backup failed"),
        "{}",
        text(&o)
    );
}

/// A child process killed when the test ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The body of `GET /metrics` from `addr` (HTTP/1.0: the answer ends with the connection).
fn get_metrics(addr: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    status.contains(" 200 ").then(|| body.to_string())
}

/// The exporter's metrics after a good backup, a failed one and a passed drill; the alert
/// rules and dashboard of PITR query only metrics it serves.
async fn metrics(s: &Setup, rto: f64) {
    let bind = format!("127.0.0.1:{}", ghostworks_devstack::free_port().unwrap());
    let _exporter = Running(
        s.command(&["pitr", "exporter", "--bind", &bind], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Some(body) = get_metrics(&bind) {
            break body;
        }
        assert!(Instant::now() < deadline, "the exporter did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let value = |series: &str| -> f64 {
        let line = body
            .lines()
            .find(|l| l.starts_with(&format!("{series} ")))
            .unwrap_or_else(|| panic!("{series} missing from\n{body}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("ghostworks_pitr_repository_ok"), 1.0, "{body}");
    let age = value(r#"ghostworks_pitr_backup_age_seconds{type="full"}"#);
    assert!((0.0..180.0).contains(&age), "full backup age {age}");
    let diff_age = value(r#"ghostworks_pitr_backup_age_seconds{type="diff"}"#);
    assert!(
        diff_age < age,
        "the diff backup ({diff_age} s) is newer than the full ({age} s)"
    );
    assert_eq!(
        value(r#"ghostworks_pitr_backup_last_attempt_failed{type="full"}"#),
        1.0
    );
    assert_eq!(value("ghostworks_pitr_drill_success"), 1.0);
    // The drill printed it rounded to a tenth.
    let exported_rto = value("ghostworks_pitr_drill_rto_seconds");
    assert!(
        (exported_rto - rto).abs() <= 0.05,
        "{exported_rto} vs {rto}"
    );
    assert_eq!(value("ghostworks_pitr_archive_failing"), 0.0);
    assert!(
        value("ghostworks_pitr_archive_pending_segments") <= 1.0,
        "{body}"
    );
    assert_eq!(promtool_lint(&body), Vec::<String>::new(), "{body}");

    let exported = ExportedMetrics::from_scrapes([("ghostworks-pitr", body.as_str())]);
    let root = repo_root();
    let mut v = Vec::new();
    let rules = rule_expressions(&root, &root.join("deploy/prometheus/rules"));
    let pitr_rules: Vec<_> = rules
        .iter()
        .filter(|(r, _)| r.contains("pitr.yml"))
        .collect();
    assert!(!pitr_rules.is_empty(), "no PITR alert rules");
    for (rule, expr) in pitr_rules {
        v.extend(
            exported
                .violations(expr)
                .into_iter()
                .map(|e| format!("{rule}: {e}")),
        );
    }
    let dashboard: PathBuf = root.join("deploy/grafana/dashboards/ghostworks-pitr.json");
    let dash = serde_json::from_str(&std::fs::read_to_string(&dashboard).unwrap()).unwrap();
    for (panel, expr) in dashboard_queries(&dash) {
        v.extend(
            exported
                .violations(&expr)
                .into_iter()
                .map(|e| format!("{panel}: {e}")),
        );
    }
    assert_no_violations("metrics the PITR alerts and dashboard query", &v);
}
