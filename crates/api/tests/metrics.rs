//! The exact metric deltas a scripted workload causes, read from two scrapes of /metrics, and
//! the whole exposition parsed by Prometheus' own parser (promtool).

mod common;

use std::collections::BTreeMap;

use ghostworks_deploy_checks::metrics::promtool_lint;
use ghostworks_testkit::unique;
use reqwest::{Method, StatusCode};
use serde_json::json;

use common::{TestApp, PASSWORD};

/// A series: metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// Every sample of a text exposition. promtool validates the format; this only reads values.
fn samples(text: &str) -> BTreeMap<Series, f64> {
    let mut out = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').expect("labels close")),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while let Some((key, after)) = rest.split_once("=\"") {
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next().expect("label value closes") {
                    (_, '\\') => value.push(chars.next().expect("escaped char").1),
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            map.insert(key.trim_start_matches(',').to_string(), value);
            rest = &after[end + 1..];
        }
        out.insert(
            (name.to_string(), map),
            value.parse().expect("sample value"),
        );
    }
    out
}

fn series(name: &str, labels: &[(&str, &str)]) -> Series {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    (name.to_string(), labels)
}

/// The series of `name` that changed between the scrapes, with how much.
fn deltas(
    before: &BTreeMap<Series, f64>,
    after: &BTreeMap<Series, f64>,
    name: &str,
) -> BTreeMap<BTreeMap<String, String>, f64> {
    after
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|(s, v)| (s.1.clone(), v - before.get(s).copied().unwrap_or(0.0)))
        .filter(|(_, d)| *d != 0.0)
        .collect()
}

async fn scrape(app: &TestApp) -> String {
    let r = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .error_for_status()
        .unwrap();
    r.text().await.unwrap()
}

async fn register(app: &TestApp) -> String {
    let email = format!("{}@example.com", unique("metrics"));
    let (s, body) = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": email, "password": PASSWORD, "first_name": "M"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    email
}

#[tokio::test]
async fn a_scripted_workload_moves_the_metrics_by_exactly_its_requests() {
    let app = common::spawn()
        .var("REQUIRE_EMAIL_VERIFICATION", "false")
        .start()
        .await;
    let before = scrape(&app).await;

    // 3 registrations, 2 good logins (each reads /auth/me) and 1 bad one.
    let owner = register(&app).await;
    let outsider = register(&app).await;
    let third = register(&app).await;
    let owner = app.login(&owner).await.token;
    let outsider = app.login(&outsider).await.token;
    let (s, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": third, "password": "Wr0ng!Passw0rd"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // A workspace with 4 artifacts; one is read twice.
    let (s, ws) = app
        .post(
            "/api/v1/workspaces/",
            Some(&owner),
            json!({"name": "Metrics", "slug": unique("ws-")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ws}");
    let ws = ws["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..4 {
        let (s, a) = app
            .post(
                &format!("/api/v1/workspaces/{ws}/artifacts"),
                Some(&owner),
                json!({"name": format!("a{i}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{a}");
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    for _ in 0..2 {
        let (s, _) = app
            .get(
                &format!("/api/v1/workspaces/{ws}/artifacts/{}", ids[0]),
                &owner,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    // Another tenant's workspace, and a path no route matches.
    let (s, _) = app
        .get(&format!("/api/v1/workspaces/{ws}/artifacts"), &outsider)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let stray = uuid::Uuid::new_v4();
    let r = app
        .call(Method::GET, &format!("/nope/{stray}"), None, None)
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let after = scrape(&app).await;
    let (b, a) = (samples(&before), samples(&after));

    let art_tpl = "/api/v1/workspaces/{workspace_id}/artifacts";
    let one_tpl = "/api/v1/workspaces/{workspace_id}/artifacts/{artifact_id}";
    let requests: Vec<(&str, &str, &str, f64)> = vec![
        // The first scrape is counted once it has answered.
        ("GET", "/metrics", "200", 1.0),
        ("POST", "/api/v1/auth/register", "202", 3.0),
        ("POST", "/api/v1/auth/login", "200", 2.0),
        ("POST", "/api/v1/auth/login", "401", 1.0),
        ("GET", "/api/v1/auth/me", "200", 2.0),
        ("POST", "/api/v1/workspaces/", "201", 1.0),
        ("POST", art_tpl, "201", 4.0),
        ("GET", one_tpl, "200", 2.0),
        ("GET", art_tpl, "404", 1.0),
        ("GET", "unmatched", "404", 1.0),
    ];
    let expected: BTreeMap<_, f64> = requests
        .iter()
        .map(|(m, e, s, n)| {
            let labels = [("method", *m), ("endpoint", *e), ("status_code", *s)];
            (series("", &labels).1, *n)
        })
        .collect();
    assert_eq!(
        deltas(&b, &a, "http_requests_total"),
        expected,
        "http_requests_total deltas"
    );

    // One duration observation per request, per method and route template.
    let mut per_route: BTreeMap<_, f64> = BTreeMap::new();
    for (m, e, _, n) in &requests {
        *per_route
            .entry(series("", &[("method", *m), ("endpoint", *e)]).1)
            .or_default() += *n;
    }
    assert_eq!(
        deltas(&b, &a, "http_request_duration_seconds_count"),
        per_route,
        "http_request_duration_seconds_count deltas"
    );
    for route in per_route.keys() {
        let mut buckets: Vec<(f64, f64)> = a
            .iter()
            .filter(|((n, l), _)| {
                n == "http_request_duration_seconds_bucket"
                    && route.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .map(|((_, l), v)| (l["le"].parse().expect("le is a number"), *v))
            .collect();
        buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "buckets of {route:?} must not decrease: {buckets:?}"
        );
        let count = a[&(
            "http_request_duration_seconds_count".to_string(),
            route.clone(),
        )];
        assert_eq!(
            buckets.last().map(|b| (b.0, b.1)),
            Some((f64::INFINITY, count)),
            "+Inf bucket of {route:?}"
        );
    }
    // Only the scrape itself is in flight.
    for ((n, l), v) in &a {
        if n == "http_requests_in_progress" {
            let want = if l["endpoint"] == "/metrics" {
                1.0
            } else {
                0.0
            };
            assert_eq!(*v, want, "http_requests_in_progress {l:?}");
        }
    }

    // Route templates only, never a raw id.
    for (_, l) in a.keys() {
        if let Some(e) = l.get("endpoint") {
            assert!(
                e == "unmatched" || (e.starts_with('/') && !e.contains(&stray.to_string())),
                "endpoint label {e:?}"
            );
        }
    }
    for id in ids.iter().chain([&ws, &stray.to_string()]) {
        assert!(!after.contains(id.as_str()), "raw id {id} in the metrics");
    }

    let business = [
        (series("user_registrations_total", &[]), 3.0),
        (
            series(
                "authentication_attempts_total",
                &[("method", "password"), ("success", "true")],
            ),
            2.0,
        ),
        (
            series(
                "authentication_attempts_total",
                &[("method", "password"), ("success", "false")],
            ),
            1.0,
        ),
        (series("artifacts_created_total", &[]), 4.0),
        (
            series("workspace_operations_total", &[("operation", "create")]),
            1.0,
        ),
        (series("cross_tenant_denied_total", &[]), 1.0),
        (
            series(
                "ghostworks_jobs_enqueued_total",
                &[("kind", "email.verification")],
            ),
            3.0,
        ),
    ];
    for (s, want) in business {
        let got = a.get(&s).copied().unwrap_or(0.0) - b.get(&s).copied().unwrap_or(0.0);
        assert_eq!(got, want, "delta of {s:?}");
    }

    assert_eq!(promtool_lint(&after), Vec::<String>::new());
}
