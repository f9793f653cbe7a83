//! The tour (live health and counts), the operations dashboard, and the web role's own health
//! and metrics endpoints.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use maud::{html, Markup};
use reqwest::Method;
use serde_json::{json, Value};

use super::nav;
use crate::api::{Call, SystemStats};
use crate::error::WebError;
use crate::ops::Point;
use crate::session::Session;
use crate::views::{chart, layout_refreshing};
use crate::Web;

/// How often the tour and the dashboard refresh (seconds).
const REFRESH: u32 = 5;

struct Service {
    name: &'static str,
    up: bool,
    detail: String,
}

fn status_of(name: &'static str, body: &Value, ok: bool) -> Service {
    let ms = body["response_time_ms"]
        .as_f64()
        .or(body["database_ms"].as_f64());
    Service {
        name,
        up: ok && body["status"] == "healthy",
        detail: match ms {
            Some(ms) => format!("{ms:.1} ms"),
            None => body["error"].as_str().unwrap_or("").to_string(),
        },
    }
}

/// Sums the worker's `ghostworks_jobs{status=…}` gauge by status, plus the jobs it finished.
fn job_counts(text: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key = if let Some(labels) = series.strip_prefix("ghostworks_jobs{") {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("status=\""))
                .map(|s| s.trim_end_matches(['}', '"']).to_string())
        } else if series.starts_with("ghostworks_jobs_succeeded_total") {
            Some("succeeded".into())
        } else {
            None
        };
        if let Some(k) = key {
            match out.iter_mut().find(|(n, _)| *n == k) {
                Some((_, v)) => *v += value,
                None => out.push((k, value)),
            }
        }
    }
    out
}

pub async fn tour(session: Session) -> Markup {
    let web = session.web().clone();
    let detailed = format!("{}/health/detailed", web.config.api_url);
    let worker = web.config.worker_url.clone();
    let (api, stats, worker_health, worker_metrics) = tokio::join!(
        web.api.get_text(&detailed),
        // The API counts only the signed-in user's workspaces: nothing to show anyone else.
        async {
            if session.signed_in() {
                Some(
                    session
                        .call::<SystemStats>(Call::new(Method::GET, "/api/v1/system/stats"))
                        .await,
                )
            } else {
                None
            }
        },
        async {
            match &worker {
                Some(u) => Some(web.api.get_text(&format!("{u}/health")).await),
                None => None,
            }
        },
        async {
            match &worker {
                Some(u) => Some(web.api.get_text(&format!("{u}/metrics")).await),
                None => None,
            }
        },
    );
    let mut services = vec![Service {
        name: "Web",
        up: true,
        detail: "serving this page".into(),
    }];
    match api {
        Ok((status, text)) => {
            let body: Value = serde_json::from_str(&text).unwrap_or_default();
            services.push(Service {
                name: "API",
                up: status.is_success(),
                detail: format!("version {}", body["version"].as_str().unwrap_or("?")),
            });
            services.push(status_of("PostgreSQL", &body["services"]["database"], true));
            services.push(status_of("Redis", &body["services"]["redis"], true));
        }
        Err(_) => {
            for name in ["API", "PostgreSQL", "Redis"] {
                services.push(Service {
                    name,
                    up: false,
                    detail: "API unreachable".into(),
                });
            }
        }
    }
    match worker_health {
        Some(Ok((status, text))) => {
            let body: Value = serde_json::from_str(&text).unwrap_or_default();
            services.push(status_of("Worker", &body, status.is_success()));
        }
        Some(Err(_)) => services.push(Service {
            name: "Worker",
            up: false,
            detail: "unreachable".into(),
        }),
        None => {}
    }
    let jobs = match worker_metrics {
        Some(Ok((_, text))) => job_counts(&text),
        _ => Vec::new(),
    };
    layout_refreshing(
        "Tour",
        &nav(&session),
        Some(REFRESH * 2),
        html! {
            h1 { "Tour" }
            p { "Every service behind this page and what your workspaces hold, refreshed every " (REFRESH) " seconds." }
            div id="live" data-live=(REFRESH) {
                h2 { "Services" }
                ul class="cards" {
                    @for s in &services {
                        li {
                            strong { (s.name) } " "
                            @if s.up { span class="up" { "up" } } @else { span class="down" { "down" } }
                            br; span class="hint" { (s.detail) }
                        }
                    }
                }
                h2 { "Counts" }
                @match &stats {
                    Some(Ok(s)) => {
                        ul class="cards" {
                            li { span class="big" { (s.workspaces) } "workspaces" }
                            li { span class="big" { (s.users) } "users (members)" }
                            li { span class="big" { (s.artifacts) } "artifacts (" (s.active_artifacts) " active)" }
                            @for (status, n) in &jobs {
                                li { span class="big" { (n) } "jobs " (status) }
                            }
                        }
                    }
                    Some(Err(WebError::Api(e))) => { p class="error" role="alert" { (e.summary()) } }
                    _ => { p { a href="/login" { "Log in" } " to see the counts of your workspaces." } }
                }
            }
        },
    )
}

fn series(points: &[Point], f: impl Fn(&Point) -> f64) -> Vec<f64> {
    points.iter().map(f).collect()
}

pub async fn ops(session: Session) -> Markup {
    let rollout = match &session.web().config.deploy_state_dir {
        Some(dir) => tokio::fs::read(dir.join("rollout.json"))
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok()),
        None => None,
    };
    let points = session.web().samples.points();
    let rate = series(&points, |p| p.rate);
    let errors = series(&points, |p| p.error_pct);
    let (p50, p95, p99) = (
        series(&points, |p| p.p50_ms),
        series(&points, |p| p.p95_ms),
        series(&points, |p| p.p99_ms),
    );
    layout_refreshing(
        "Operations",
        &nav(&session),
        Some(REFRESH * 2),
        html! {
            h1 { "Operations" }
            p { "The API's own metrics, sampled every 5 seconds (the last 10 minutes)." }
            div id="live" data-live=(REFRESH) {
                @if points.is_empty() {
                    p role="status" { "Collecting the first samples…" }
                } @else {
                    (chart("Request rate", "req/s", &[("requests", &rate)]))
                    (chart("Error rate (5xx)", "%", &[("errors", &errors)]))
                    (chart("Latency", "ms", &[("p50", &p50), ("p95", &p95), ("p99", &p99)]))
                }
                @if let Some(r) = &rollout { (rollout_view(r)) }
            }
        },
    )
}

/// The deploy's canary (`rollout.json`): the shares of new sessions, and each judged step's
/// signals per colour with the verdict.
fn rollout_view(r: &Value) -> Markup {
    let text = |v: &Value| v.as_str().unwrap_or("?").to_string();
    let percent = r["percent"].as_u64().unwrap_or(0);
    let steps = r["steps"].as_array().cloned().unwrap_or_default();
    let check = |step: &Value, signal: &str| -> String {
        let c = step["checks"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["signal"] == signal))
            .cloned()
            .unwrap_or_default();
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        match signal {
            "error_ratio" => format!(
                "{:.2}% / {:.2}%",
                f(&c["canary"]) * 100.0,
                f(&c["stable"]) * 100.0
            ),
            "resident_mib" => format!("{:.0} / {:.0}", f(&c["canary"]), f(&c["stable"])),
            _ => format!("{:.1} / {:.1}", f(&c["canary"]), f(&c["stable"])),
        }
    };
    html! {
        h2 { "Rollout" }
        p role="status" {
            "Release " (text(&r["version"])) " (" (text(&r["canary"])) "): " (text(&r["state"]))
            ", " (percent) "% of new sessions, " (text(&r["stable"])) " " (100 - percent.min(100))
            "%; updated " (text(&r["time"])) "."
        }
        table {
            caption class="hint" { "Canary / stable over each step's window" }
            thead { tr {
                th scope="col" { "Share" } th scope="col" { "Verdict" }
                th scope="col" { "Requests" } th scope="col" { "Errors" }
                th scope="col" { "p95 ms" } th scope="col" { "p99 ms" }
                th scope="col" { "Memory MiB" }
            } }
            tbody {
                @for s in &steps {
                    tr {
                        td { (s["percent"].as_u64().unwrap_or(0)) "%" }
                        td { (text(&s["verdict"])) }
                        td { (s["canary_requests"].as_u64().unwrap_or(0)) " / " (s["stable_requests"].as_u64().unwrap_or(0)) }
                        td { (check(s, "error_ratio")) }
                        td { (check(s, "p95_ms")) }
                        td { (check(s, "p99_ms")) }
                        td { (check(s, "resident_mib")) }
                    }
                }
            }
        }
    }
}

pub async fn live() -> Json<Value> {
    Json(json!({"status": "healthy"}))
}

/// Ready when the API answers its own readiness check.
pub async fn ready(State(web): State<Web>) -> Response {
    let url = format!("{}/health/ready", web.config.api_url);
    match web.api.get_text(&url).await {
        Ok((s, _)) if s.is_success() => Json(json!({"status": "ready"})).into_response(),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "api": "unreachable or not ready"})),
        )
            .into_response(),
    }
}

pub async fn metrics(State(web): State<Web>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        web.metrics.render(),
    )
        .into_response()
}

pub async fn not_found() -> Response {
    WebError::NotFound.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollout_shows_its_shares_and_each_steps_signals_per_colour() {
        let r = json!({
            "time": "2026-12-07T18:00:00Z", "version": "1.5.0", "stable": "blue",
            "canary": "green", "percent": 25, "state": "running",
            "steps": [{"percent": 5, "secs": 60.0, "canary_requests": 210, "stable_requests": 3990,
                "verdict": "pass", "checks": [
                    {"signal": "error_ratio", "canary": 0.004, "stable": 0.001, "verdict": "pass"},
                    {"signal": "p95_ms", "canary": 21.5, "stable": 20.0, "verdict": "pass"},
                    {"signal": "p99_ms", "canary": 48.0, "stable": 45.0, "verdict": "inconclusive"},
                    {"signal": "resident_mib", "canary": 41.2, "stable": 38.6, "verdict": "pass"}]}]
        });
        let html = rollout_view(&r).into_string();
        assert!(
            html.contains("Release 1.5.0 (green): running, 25% of new sessions, blue 75%"),
            "{html}"
        );
        assert!(html.contains("<td>5%</td><td>pass</td><td>210 / 3990</td><td>0.40% / 0.10%</td><td>21.5 / 20.0</td><td>48.0 / 45.0</td><td>41 / 39</td>"), "{html}");
    }

    #[test]
    fn jobs_are_summed_by_status() {
        let text = "# HELP ghostworks_jobs x\nghostworks_jobs{kind=\"a\",status=\"queued\"} 2\nghostworks_jobs{kind=\"b\",status=\"queued\"} 3\nghostworks_jobs{kind=\"a\",status=\"dead\"} 1\nghostworks_jobs_succeeded_total{kind=\"a\"} 7\n";
        assert_eq!(
            job_counts(text),
            vec![
                ("queued".into(), 5.0),
                ("dead".into(), 1.0),
                ("succeeded".into(), 7.0)
            ]
        );
    }
}
