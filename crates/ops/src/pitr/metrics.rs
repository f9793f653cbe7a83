//! The freshness of backups, WAL archiving and restore drills as Prometheus metrics, read at
//! scrape time from the repository (`pgbackrest info`), the archived server
//! (`pg_stat_archiver`) and the records of the last backup attempt and drill. `pitr exporter`
//! serves them on /metrics.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use chrono::Utc;
use sqlx::Connection;

use super::pgbackrest::{BackupType, PgBackRest, StanzaInfo};
use super::{drill, last_backup_attempt};
use crate::pg;

/// One metric family: its help, type and samples (label text, value).
struct Family<'a> {
    name: &'a str,
    kind: &'a str,
    help: &'a str,
    samples: Vec<(String, f64)>,
}

fn value(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else {
        v.to_string()
    }
}

fn write(out: &mut String, f: Family) {
    if f.samples.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "# HELP {} {}\n# TYPE {} {}",
        f.name, f.help, f.name, f.kind
    );
    for (labels, v) in f.samples {
        let _ = writeln!(out, "{}{labels} {}", f.name, value(v));
    }
}

fn gauge<'a>(name: &'a str, help: &'a str, samples: Vec<(String, f64)>) -> Family<'a> {
    Family {
        name,
        kind: "gauge",
        help,
        samples,
    }
}

fn one(v: f64) -> Vec<(String, f64)> {
    vec![(String::new(), v)]
}

/// The metrics of the repository, the archiver and the last drill, in the text format.
pub async fn render(pgbackrest: &PgBackRest, admin_url: &str) -> String {
    let mut out = String::new();
    let info = pgbackrest.info().await;
    write(
        &mut out,
        gauge(
            "ghostworks_pitr_repository_ok",
            "1 when pgbackrest info reads the repository, else 0.",
            one(if info.is_ok() { 1.0 } else { 0.0 }),
        ),
    );
    if let Ok(info) = &info {
        backups(&mut out, info);
    }
    if let Ok(Some(attempt)) = last_backup_attempt(&pgbackrest.state_dir) {
        write(
            &mut out,
            gauge(
                "ghostworks_pitr_backup_last_attempt_failed",
                "1 when the last backup attempt (of the labelled type) failed, else 0.",
                vec![(
                    format!("{{type=\"{}\"}}", attempt.kind.as_str()),
                    if attempt.succeeded { 0.0 } else { 1.0 },
                )],
            ),
        );
    }
    if let Err(e) = archiver(&mut out, admin_url).await {
        tracing::warn!(error = %format!("{e:#}"), "pg_stat_archiver unreadable");
    }
    drill_metrics(&mut out, &pgbackrest.state_dir);
    out
}

/// Per type, the newest backup that type's restores can start from: `full` counts full
/// backups, `diff` full or differential ones, `incr` any.
fn backups(out: &mut String, info: &StanzaInfo) {
    let now = Utc::now().timestamp() as f64;
    let types = [BackupType::Full, BackupType::Diff, BackupType::Incr];
    let newest: Vec<(BackupType, Option<f64>)> = types
        .iter()
        .map(|t| {
            let stop = info
                .backup
                .iter()
                .filter(|b| b.kind <= *t)
                .map(|b| b.timestamp.stop)
                .max();
            (*t, stop.map(|s| s as f64))
        })
        .collect();
    let label = |t: BackupType| format!("{{type=\"{}\"}}", t.as_str());
    write(
        out,
        gauge(
            "ghostworks_pitr_backup_last_success_timestamp_seconds",
            "When the newest backup of the type (full; full or diff; any for incr) finished, 0 when none.",
            newest.iter().map(|(t, s)| (label(*t), s.unwrap_or(0.0))).collect(),
        ),
    );
    write(
        out,
        gauge(
            "ghostworks_pitr_backup_age_seconds",
            "Seconds since the newest backup of the type finished, +Inf when none.",
            newest
                .iter()
                .map(|(t, s)| (label(*t), s.map_or(f64::INFINITY, |s| now - s)))
                .collect(),
        ),
    );
}

/// WAL archiving as the archived server reports it. The segments waiting are counted in
/// pg_wal/archive_status (`.ready` files): pg_stat_archiver's last archived name may be a
/// backup label or timeline history file, which tells no segment position.
async fn archiver(out: &mut String, admin_url: &str) -> Result<()> {
    let mut conn = pg::owner_connection(admin_url, "ghostworks-pitr-exporter").await?;
    let (last_at, failed_at, failed, pending, now): (Option<f64>, Option<f64>, i64, i64, f64) =
        sqlx::query_as(
            "SELECT extract(epoch FROM last_archived_time)::float8,
                    extract(epoch FROM last_failed_time)::float8, failed_count,
                    (SELECT count(*) FROM pg_ls_archive_statusdir()
                     WHERE name ~ '^[0-9A-F]{24}\\.ready$'),
                    extract(epoch FROM now())::float8
             FROM pg_stat_archiver",
        )
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    let pending = pending as f64;
    let lag = match (pending > 0.0, last_at) {
        (false, _) => 0.0,
        (true, Some(at)) => now - at,
        (true, None) => f64::INFINITY,
    };
    let failing = failed_at.is_some_and(|f| last_at.is_none_or(|a| f > a));
    write(
        out,
        gauge(
            "ghostworks_pitr_archive_pending_segments",
            "Completed WAL segments not archived yet.",
            one(pending),
        ),
    );
    write(
        out,
        gauge(
            "ghostworks_pitr_archive_lag_seconds",
            "Age of the newest archived WAL segment while completed ones wait, else 0.",
            one(lag),
        ),
    );
    write(
        out,
        gauge(
            "ghostworks_pitr_archive_failing",
            "1 when the last archive_command attempt failed, else 0.",
            one(if failing { 1.0 } else { 0.0 }),
        ),
    );
    write(
        out,
        Family {
            name: "ghostworks_pitr_archive_failures_total",
            kind: "counter",
            help: "Failed archive_command attempts since the server's statistics were reset.",
            samples: one(failed as f64),
        },
    );
    Ok(())
}

fn drill_metrics(out: &mut String, state_dir: &std::path::Path) {
    let Ok(Some(d)) = drill::last(state_dir) else {
        return;
    };
    let passed = if d.outcome == drill::Outcome::Passed {
        1.0
    } else {
        0.0
    };
    write(
        out,
        gauge(
            "ghostworks_pitr_drill_success",
            "1 when the last restore drill passed, else 0.",
            one(passed),
        ),
    );
    write(
        out,
        gauge(
            "ghostworks_pitr_drill_last_run_timestamp_seconds",
            "When the last restore drill finished.",
            one(d.finished_at.timestamp() as f64),
        ),
    );
    let known = |v: Option<f64>| v.map(one).unwrap_or_default();
    write(
        out,
        gauge(
            "ghostworks_pitr_drill_rto_seconds",
            "The last passed drill's recovery time: restore start to a server answering queries.",
            known(d.rto_seconds),
        ),
    );
    write(
        out,
        gauge(
            "ghostworks_pitr_drill_rpo_seconds",
            "The last passed drill's recovery point: age of the newest recovered transaction.",
            known(d.rpo_seconds),
        ),
    );
}

/// Serves the metrics on `bind` until the process is stopped.
pub async fn serve(pgbackrest: PgBackRest, admin_url: String, bind: SocketAddr) -> Result<()> {
    use axum::{http::header, routing::get, Router};
    let state = Arc::new((pgbackrest, admin_url));
    let app = Router::new().route(
        "/metrics",
        get(
            |axum::extract::State(s): axum::extract::State<Arc<(PgBackRest, String)>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    render(&s.0, &s.1).await,
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!(%bind, "serving PITR metrics on /metrics");
    axum::serve(listener, app.with_state(state)).await?;
    Ok(())
}
