mod common;

use common::TestApp;
use reqwest::header::{HeaderMap, ALLOW, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.url))
        .send()
        .await
        .unwrap()
}

fn assert_security_headers(h: &HeaderMap, what: &str) {
    assert_eq!(
        header(h, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(header(h, "x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        header(h, "referrer-policy"),
        Some("strict-origin-when-cross-origin"),
        "{what}"
    );
    let csp = header(h, "content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{what}: {csp}");
    assert!(h.get("server").is_none(), "{what}");
    assert!(
        h.get("strict-transport-security").is_none(),
        "{what}: no HSTS outside production"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = common::app().await;
    let with = |id: String| {
        app.client
            .get(format!("{}/health", app.url))
            .header("X-Request-ID", id)
            .send()
    };

    for good in ["abc-123", "trace.id:42_x", &"a".repeat(128)] {
        let r = with(good.to_string()).await.unwrap();
        assert_eq!(header(r.headers(), "x-request-id"), Some(good));
        assert_eq!(header(r.headers(), "x-correlation-id"), Some(good));
    }
    for bad in ["bad id", &"a".repeat(129), "<script>", "a\"b"] {
        let r = with(bad.to_string()).await.unwrap();
        let id = header(r.headers(), "x-request-id").unwrap();
        assert_ne!(id, bad);
        assert!(
            uuid::Uuid::parse_str(id).is_ok(),
            "{bad} replaced by a generated id, got {id}"
        );
        assert_eq!(header(r.headers(), "x-correlation-id"), Some(id));
    }
    let a = get(&app, "/health").await;
    let b = get(&app, "/health").await;
    let (a, b) = (
        header(a.headers(), "x-request-id").unwrap().to_string(),
        header(b.headers(), "x-request-id").unwrap().to_string(),
    );
    assert!(uuid::Uuid::parse_str(&a).is_ok());
    assert_ne!(a, b, "a fresh id per request");

    // Error bodies and audit rows carry the same id.
    let r = app
        .client
        .get(format!("{}/api/v1/auth/me", app.url))
        .header("X-Request-ID", "req-401")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["request_id"], "req-401");
    let r = app
        .client
        .post(format!("{}/api/v1/auth/register", app.url))
        .header("X-Request-ID", "req-register")
        .json(&json!({"email": "traced@example.com", "password": common::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let ids: Vec<Option<String>> =
        sqlx::query_scalar("SELECT request_id FROM audit_log WHERE action = 'auth.registered'")
            .fetch_all(&app.admin_db().await)
            .await
            .unwrap();
    assert_eq!(ids, vec![Some("req-register".to_string())]);
}

#[tokio::test]
async fn workspace_audit_rows_carry_the_request_id_and_client_address() {
    let app = common::app().await;
    let owner = app.user().await;
    let r = app
        .client
        .post(format!("{}/api/v1/workspaces", app.url))
        .bearer_auth(&owner.token)
        .header("X-Request-ID", "req-create-ws")
        .json(&json!({"name": "Audited", "slug": ghostworks_testkit::unique("audited-")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (id, ip): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT request_id, ip FROM audit_log WHERE action = 'workspace.created'")
            .fetch_one(&app.admin_db().await)
            .await
            .unwrap();
    assert_eq!(id.as_deref(), Some("req-create-ws"));
    assert_eq!(ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_the_json_error_shape() {
    let app = common::app().await;
    let r = app
        .client
        .get(format!("{}/no/such/route", app.url))
        .header("X-Request-ID", "req-404")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(header(r.headers(), "content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_security_headers(r.headers(), "404");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["message"], "Not Found");
    assert_eq!(body["request_id"], "req-404");
    assert!(
        body["timestamp"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
        "{body}"
    );
    assert!(body.get("detail").is_some());

    for (method, path, allowed) in [
        (Method::DELETE, "/health", "GET"),
        (Method::PUT, "/api/v1/auth/login", "POST"),
        (Method::POST, "/api/v1/auth/me", "GET"),
    ] {
        let r = app
            .client
            .request(method.clone(), format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = header(r.headers(), ALLOW.as_str())
            .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
            .to_string();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
        assert!(header(r.headers(), "x-request-id").is_some());
        assert_security_headers(r.headers(), "405");
        let body: Value = r.json().await.unwrap();
        assert_eq!(
            body["error"], "method_not_allowed",
            "{method} {path}: {body}"
        );
        assert!(body["request_id"].is_string());
    }
}

#[tokio::test]
async fn security_and_cache_headers_on_every_response() {
    let app = common::app().await;
    let user = app.user().await;
    let r = get(&app, "/health").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_security_headers(r.headers(), "/health");

    let r = app
        .call(Method::GET, "/api/v1/workspaces/", Some(&user.token), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_security_headers(r.headers(), "api 200");
    assert_eq!(
        header(r.headers(), CACHE_CONTROL.as_str()),
        Some("no-store")
    );

    for (what, r) in [
        (
            "401",
            app.call(Method::GET, "/api/v1/auth/me", None, None).await,
        ),
        (
            "422",
            app.call(Method::POST, "/api/v1/auth/register", None, Some(json!({})))
                .await,
        ),
        (
            "404",
            app.call(
                Method::GET,
                &format!("/api/v1/workspaces/{}", uuid::Uuid::new_v4()),
                Some(&user.token),
                None,
            )
            .await,
        ),
    ] {
        assert!(r.status().is_client_error(), "{what}");
        assert_security_headers(r.headers(), what);
        assert_eq!(
            header(r.headers(), CACHE_CONTROL.as_str()),
            Some("no-store"),
            "{what}"
        );
    }
    let r = get(&app, "/api/v1/system/stats").await;
    assert_eq!(
        header(r.headers(), CACHE_CONTROL.as_str()),
        Some("no-store")
    );
    let r = get(&app, "/api/v1/no-such-route").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header(r.headers(), CACHE_CONTROL.as_str()),
        Some("no-store"),
        "router 404s under /api/ too"
    );
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = common::spawn()
        .var("CORS_ORIGINS", "http://localhost:3000")
        .start()
        .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/api/v1/workspaces", app.url))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type,x-csrf-token",
            )
            .send()
    };
    let r = preflight("http://localhost:3000").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
    let methods = header(h, "access-control-allow-methods")
        .unwrap()
        .to_ascii_uppercase();
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let allowed = header(h, "access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for needed in ["authorization", "content-type", "x-csrf-token"] {
        assert!(allowed.contains(needed), "{allowed}");
    }
    assert!(header(h, "x-request-id").is_some());

    let r = preflight("http://evil.example").await.unwrap();
    assert!(
        r.headers().get("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers()
    );
    let r = preflight("http://localhost:3001").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // Actual requests: the allowed origin may read the response and the exposed headers.
    let r = app
        .client
        .get(format!("{}/health", app.url))
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(r.headers(), "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    let exposed = header(r.headers(), "access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("x-request-id")
            && exposed.contains("etag")
            && exposed.contains("retry-after"),
        "{exposed}"
    );
    let r = app
        .client
        .get(format!("{}/health", app.url))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // Router errors keep the CORS headers, so the browser client can read them.
    for (method, path) in [
        (Method::GET, "/api/v1/no-such-route"),
        (Method::DELETE, "/health"),
    ] {
        let r = app
            .client
            .request(method.clone(), format!("{}{path}", app.url))
            .header("Origin", "http://localhost:3000")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error());
        assert_eq!(
            header(r.headers(), "access-control-allow-origin"),
            Some("http://localhost:3000"),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn health_endpoints_report_the_dependencies() {
    let app = common::app().await;
    let r = get(&app, "/health").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["environment"], "development");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));

    let r = get(&app, "/health/ready").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["services"]["database"]["status"], "healthy");
    assert_eq!(body["services"]["redis"]["status"], "healthy");

    let r = get(&app, "/health/detailed").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "healthy", "{body}");
    assert!(body["uptime_seconds"].as_f64().is_some_and(|u| u >= 0.0));
    assert!(body["services"]["database"]["response_time_ms"].is_number());
    assert!(body["services"]["database"]["connection_pool"]["max"]
        .as_u64()
        .is_some_and(|m| m >= 1));
    assert!(body["services"]["redis"]["response_time_ms"].is_number());
    assert!(
        !body.to_string().contains("postgres://"),
        "no connection strings: {body}"
    );
}

#[tokio::test]
async fn metrics_label_requests_by_route_template() {
    let app = common::app().await;
    let user = app.user().await;
    let ws = app.workspace(&user).await;
    let a = app.artifact(&ws, &user, json!({"name": "m"})).await;
    let (s, _) = app
        .get(&format!("/api/v1/workspaces/{ws}/artifacts"), &user.token)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .get(
            &format!(
                "/api/v1/workspaces/{ws}/artifacts/{}",
                a["id"].as_str().unwrap()
            ),
            &user.token,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let stray = uuid::Uuid::new_v4();
    assert_eq!(
        get(&app, &format!("/nope/{stray}")).await.status(),
        StatusCode::NOT_FOUND
    );

    let r = get(&app, "/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(r.headers(), CONTENT_TYPE.as_str())
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.starts_with("http_requests_total{") && l.contains(needle))
            .map(str::to_string)
    };
    assert!(
        line(r#"endpoint="/api/v1/workspaces/{workspace_id}/artifacts/{artifact_id}""#).is_some(),
        "{text}"
    );
    assert!(line(r#"status_code="201""#).is_some(), "{text}");
    let get_list = text
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{")
                && l.contains(r#"endpoint="/api/v1/workspaces/{workspace_id}/artifacts""#)
                && l.contains(r#"method="GET""#)
                && l.contains(r#"status_code="200""#)
        })
        .unwrap_or_else(|| panic!("no GET 200 line for the artifact list in\n{text}"));
    assert!(get_list.ends_with(" 1"), "{get_list}");
    for id in [
        ws.as_str(),
        a["id"].as_str().unwrap(),
        &stray.to_string(),
        &user.id,
    ] {
        assert!(!text.contains(id), "a raw id {id} leaked into the metrics");
    }
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("artifacts_created_total 1"), "{text}");
    let info = text
        .lines()
        .find(|l| l.starts_with("ghostworks_build_info{"))
        .unwrap_or_else(|| panic!("no build info: {text}"));
    assert!(info.contains(r#"service="ghostworks-api""#), "{info}");
    assert!(info.contains(r#"git_sha=""#), "{info}");
    let host = ghostworks_telemetry::signals::host(&text).expect("a host label");
    assert!(!host.is_empty(), "{info}");
}

#[tokio::test]
async fn openapi_docs_and_root() {
    let app = common::app().await;
    let r = get(&app, "/openapi.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let spec: Value = r.json().await.unwrap();
    assert_eq!(spec["info"]["title"], "Ghostworks SaaS API");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = spec["paths"].as_object().unwrap();
    let art = "/api/v1/workspaces/{workspace_id}/artifacts";
    for (path, methods) in [
        (art.to_string(), vec!["get", "post"]),
        (
            format!("{art}/{{artifact_id}}"),
            vec!["get", "put", "patch", "delete"],
        ),
        (format!("{art}/search/advanced"), vec!["get"]),
        (format!("{art}/stats"), vec!["get"]),
        ("/api/v1/auth/login".to_string(), vec!["post"]),
        (
            "/api/v1/workspaces/{workspace_id}/members/{user_id}/role".to_string(),
            vec!["put"],
        ),
    ] {
        let item = paths.get(&path).unwrap_or_else(|| {
            panic!("{path} missing from {:?}", paths.keys().collect::<Vec<_>>())
        });
        for m in methods {
            assert!(item.get(m).is_some(), "{m} {path}");
        }
    }
    assert!(spec["components"]["securitySchemes"]["bearer"].is_object());
    // Register and add-member answer alike for known and unknown addresses; switch spends a
    // refresh token.
    let op = |path: &str| &paths[path]["post"];
    let register = op("/api/v1/auth/register");
    assert!(register["responses"]["202"].is_object(), "{register}");
    assert!(
        register["responses"].get("201").is_none() && register["responses"].get("409").is_none()
    );
    let add = op("/api/v1/workspaces/{workspace_id}/members");
    assert_eq!(
        add["responses"]["202"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/MemberInvited"
    );
    assert!(add["responses"]["429"].is_object() && add["responses"].get("201").is_none());
    let invited = &spec["components"]["schemas"]["MemberInvited"]["properties"];
    assert!(invited.get("user_id").is_none(), "{invited}");
    let switch = op("/api/v1/workspaces/{workspace_id}/switch");
    assert_eq!(
        switch["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SwitchInput"
    );
    assert_eq!(
        spec["components"]["schemas"]["SwitchInput"]["required"],
        json!(["refresh_token"])
    );

    let r = get(&app, "/docs").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(r.headers(), CONTENT_TYPE.as_str())
        .unwrap()
        .starts_with("text/html"));
    let csp = header(r.headers(), CONTENT_SECURITY_POLICY.as_str())
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    let html = r.text().await.unwrap();
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"));
    assert!(
        html.contains("docs/app.js") || html.contains("app.js"),
        "the page loads its script"
    );
    let r = get(&app, "/docs/app.js").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(header(r.headers(), CONTENT_TYPE.as_str())
        .unwrap()
        .starts_with("text/javascript"));

    let r = get(&app, "/").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Ghostworks SaaS API", "version": env!("CARGO_PKG_VERSION"), "docs": "/docs", "health": "/health", "metrics": "/metrics"})
    );
}

#[tokio::test]
async fn system_stats_count_only_the_callers_workspaces_for_a_few_seconds() {
    let app = common::app().await;
    let r = get(&app, "/api/v1/system/stats").await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "no figures for anyone"
    );

    let alice = app.user().await;
    let bob = app.user().await;
    let carol = app.user().await;
    let (s, empty) = app.get("/api/v1/system/stats", &carol.token).await;
    assert_eq!(s, StatusCode::OK, "{empty}");
    assert_eq!(
        (&empty["users"], &empty["workspaces"], &empty["artifacts"]),
        (&json!(0), &json!(0), &json!(0)),
        "carol belongs to no workspace: the others' are not hers to count"
    );

    let a = app.workspace(&alice).await;
    let b = app.workspace(&bob).await;
    app.add_member(&a, &alice, &bob, "member").await;
    app.artifact(&a, &alice, json!({"name": "1"})).await;
    let gone = app.artifact(&a, &alice, json!({"name": "2"})).await;
    app.artifact(&b, &bob, json!({"name": "3"})).await;
    let (s, _) = app
        .json(
            Method::DELETE,
            &format!(
                "/api/v1/workspaces/{a}/artifacts/{}",
                gone["id"].as_str().unwrap()
            ),
            Some(&alice.token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (_, stats) = app.get("/api/v1/system/stats", &alice.token).await;
    assert_eq!(stats["workspaces"], 1, "{stats}");
    assert_eq!(stats["users"], 2, "alice and bob");
    assert_eq!(stats["artifacts"], 2, "soft-deleted ones included");
    assert_eq!(stats["active_artifacts"], 1);
    assert_eq!(
        stats["per_workspace"],
        json!([{"workspace_id": a, "name": "Test WS", "members": 2, "artifacts": 2, "active_artifacts": 1}])
    );
    assert!(stats["timestamp"]
        .as_str()
        .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()));

    let (_, stats) = app.get("/api/v1/system/stats", &bob.token).await;
    assert_eq!(
        (&stats["workspaces"], &stats["users"], &stats["artifacts"]),
        (&json!(2), &json!(2), &json!(3)),
        "bob's own workspace and alice's: {stats}"
    );

    // Served from memory for a few seconds, then counted again.
    let (_, first) = app.get("/api/v1/system/stats", &alice.token).await;
    app.artifact(&a, &alice, json!({"name": "4"})).await;
    let (_, cached) = app.get("/api/v1/system/stats", &alice.token).await;
    assert_eq!(cached, first);
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (_, fresh) = app.get("/api/v1/system/stats", &alice.token).await;
    assert_eq!(fresh["artifacts"], 3, "{fresh}");
}

/// Ends every connection the API holds, as a PostgreSQL restart does.
async fn terminate_api_connections(app: &TestApp) {
    let admin = app.admin_db().await;
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'ghostworks-api'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(!ended.is_empty(), "the API holds connections");
    admin.close().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
}

fn dependency_errors(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("ghostworks_dependency_errors_total{dependency=\"postgres\"} ")
        })
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn lost_database_connections_answer_503_and_reads_are_retried_on_a_fresh_one() {
    let app = common::app().await;
    let user = app.user().await;
    let ws = app.workspace(&user).await;
    let path = format!("/api/v1/workspaces/{ws}/artifacts");
    app.artifact(&ws, &user, json!({"name": "kept"})).await;

    terminate_api_connections(&app).await;
    let (s, page) = app.get(&path, &user.token).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "a read is retried on a fresh connection: {page}"
    );
    assert_eq!(page["items"][0]["name"], "kept", "{page}");

    // A connection the pool opened after the termination may serve the write (201, as it
    // should); terminate again until one lands on a lost connection.
    let mut tries = 0;
    let r = loop {
        terminate_api_connections(&app).await;
        let r = app
            .call(
                Method::POST,
                &path,
                Some(&user.token),
                Some(json!({"name": "maybe"})),
            )
            .await;
        tries += 1;
        if r.status() != StatusCode::CREATED || tries == 5 {
            break r;
        }
    };
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(r.headers(), "retry-after"), Some("2"));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "service_unavailable", "{body}");
    assert_eq!(
        body["message"],
        "The database is unavailable; retry shortly"
    );
    assert!(body["request_id"].is_string(), "{body}");

    // The failure retired the dead connections: the next write gets a fresh one.
    let (s, body) = app
        .post(&path, Some(&user.token), json!({"name": "written"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let metrics = get(&app, "/metrics").await.text().await.unwrap();
    assert_eq!(
        dependency_errors(&metrics),
        2,
        "the read's first try and the write"
    );
    assert_eq!(get(&app, "/health/ready").await.status(), StatusCode::OK);
}
