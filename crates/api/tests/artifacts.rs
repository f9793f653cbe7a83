mod common;

use std::collections::HashSet;

use common::{TestApp, User};
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

struct Ctx {
    app: TestApp,
    user: User,
    ws: String,
}

impl Ctx {
    async fn new() -> Self {
        let app = common::app().await;
        let user = app.user().await;
        let ws = app.workspace(&user).await;
        Ctx { app, user, ws }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/workspaces/{}/artifacts{rest}", self.ws)
    }

    async fn create(&self, body: Value) -> Value {
        self.app.artifact(&self.ws, &self.user, body).await
    }

    async fn send(&self, method: Method, rest: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.app
            .json(method, &self.path(rest), Some(&self.user.token), body)
            .await
    }

    async fn list(&self, query: &str) -> Value {
        let (s, page) = self.app.get(&self.path(query), &self.user.token).await;
        assert_eq!(s, StatusCode::OK, "{query}: {page}");
        page
    }

    async fn names(&self, query: &str) -> Vec<String> {
        let page = self.list(query).await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    }

    async fn with_if_match(
        &self,
        method: Method,
        id: &str,
        if_match: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut r = self
            .app
            .client
            .request(
                method,
                format!("{}{}", self.app.url, self.path(&format!("/{id}"))),
            )
            .bearer_auth(&self.user.token)
            .header(IF_MATCH, if_match);
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn crud_round_trip_with_etags() {
    let c = Ctx::new().await;
    let r = c
        .app
        .call(
            Method::POST,
            &c.path(""),
            Some(&c.user.token),
            Some(json!({"name": "  Spec  ", "description": "  The spec  ", "tags": ["Docs", "docs", " API "], "artifact_metadata": {"pages": 3, "draft": true, "owner": null}})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers().get(ETAG).unwrap(), "\"1\"");
    let a: Value = r.json().await.unwrap();
    assert_eq!(a["name"], "Spec");
    assert_eq!(a["description"], "The spec");
    assert_eq!(a["tags"], json!(["docs", "api"]));
    assert_eq!(
        a["artifact_metadata"],
        json!({"pages": 3, "draft": true, "owner": null})
    );
    assert_eq!(a["tenant_id"], json!(c.ws));
    assert_eq!(a["created_by"], json!(c.user.id));
    assert_eq!(a["is_active"], true);
    assert_eq!(a["version"], 1);
    let id = a["id"].as_str().unwrap();

    let r = c
        .app
        .call(
            Method::GET,
            &c.path(&format!("/{id}")),
            Some(&c.user.token),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get(ETAG).unwrap(), "\"1\"");
    assert_eq!(r.json::<Value>().await.unwrap(), a);

    let r = c
        .app
        .call(
            Method::PATCH,
            &c.path(&format!("/{id}")),
            Some(&c.user.token),
            Some(json!({"description": "Changed"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get(ETAG).unwrap(), "\"2\"");
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["version"], 2);
    assert_eq!(patched["name"], "Spec");
    assert_eq!(patched["tags"], json!(["docs", "api"]));
    assert_eq!(patched["description"], "Changed");
    let time = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(time(&patched["updated_at"]) > time(&a["updated_at"]));
    assert_eq!(patched["created_at"], a["created_at"]);

    let r = c
        .app
        .call(
            Method::PUT,
            &c.path(&format!("/{id}")),
            Some(&c.user.token),
            Some(json!({"name": "Replaced"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get(ETAG).unwrap(), "\"3\"");

    let (s, body) = c.send(Method::DELETE, &format!("/{id}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(body, json!(""));
    let (s, body) = c.send(Method::GET, &format!("/{id}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], json!(format!("Artifact not found: {id}")));
    for method in [Method::DELETE, Method::PATCH, Method::PUT] {
        let (s, _) = c
            .send(
                method.clone(),
                &format!("/{id}"),
                Some(json!({"name": "again"})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} after delete");
    }
    assert_eq!(c.list("").await["total"], 0);
    let (s, _) = c
        .send(Method::GET, &format!("/{}", uuid::Uuid::new_v4()), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn listing_pages_are_disjoint_and_complete() {
    let c = Ctx::new().await;
    for i in 0..25 {
        c.create(json!({"name": format!("item {i:02}")})).await;
    }
    let mut seen = HashSet::new();
    for (offset, len, more) in [(0, 10, true), (10, 10, true), (20, 5, false)] {
        let page = c.list(&format!("?limit=10&offset={offset}")).await;
        assert_eq!(page["total"], 25);
        assert_eq!(page["limit"], 10);
        assert_eq!(page["offset"], offset);
        assert_eq!(page["has_more"], more, "offset {offset}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), len);
        for a in items {
            assert!(
                seen.insert(a["id"].as_str().unwrap().to_string()),
                "{} repeated",
                a["name"]
            );
        }
    }
    assert_eq!(seen.len(), 25);

    let page = c.list("?offset=30").await;
    assert_eq!(
        (
            page["items"].clone(),
            page["total"].clone(),
            page["has_more"].clone()
        ),
        (json!([]), json!(25), json!(false))
    );
    let page = c.list("").await;
    assert_eq!(
        (page["limit"].clone(), page["offset"].clone()),
        (json!(20), json!(0)),
        "defaults"
    );
    // Newest first by default.
    let names = c.names("?limit=3").await;
    assert_eq!(names, vec!["item 24", "item 23", "item 22"]);
    assert_eq!(c.names("?limit=100").await.len(), 25);
}

#[tokio::test]
async fn cursors_page_through_every_order_and_totals_come_from_the_maintained_count() {
    let c = Ctx::new().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let a = c
            .create(json!({"name": format!("item {:02}", (i * 7) % 25), "tags": ["t"]}))
            .await;
        ids.push(a["id"].as_str().unwrap().to_string());
    }
    let (s, _) = c.send(Method::DELETE, &format!("/{}", ids[0]), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for query in [
        "?limit=7",
        "?limit=7&sort=name",
        "?limit=7&sort=updated_at&order=asc&tags=t",
    ] {
        let first = c.names(&query.replace("limit=7", "limit=100")).await;
        let mut paged = Vec::new();
        let mut page = c.list(query).await;
        loop {
            assert_eq!(
                (page["total"].clone(), page["total_exact"].clone()),
                (json!(24), json!(true)),
                "{query}"
            );
            paged.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["name"].as_str().unwrap().to_string()),
            );
            let Some(next) = page["next_cursor"].as_str() else {
                assert_eq!(page["has_more"], false);
                break;
            };
            assert_eq!(page["has_more"], true);
            // The cursor carries its order; the filters are the client's to repeat.
            let filters = if query.contains("tags") {
                "&tags=t"
            } else {
                ""
            };
            page = c.list(&format!("?limit=7&cursor={next}{filters}")).await;
        }
        assert_eq!(paged, first, "{query}");
    }
    let newest_first = c.list("?limit=1").await["next_cursor"].clone();
    let by_name = format!("?sort=name&cursor={}", newest_first.as_str().unwrap());
    let (s, body) = c.send(Method::GET, &by_name, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["query", "cursor"]));
}

#[tokio::test]
async fn bad_paging_and_filter_parameters_are_422_on_the_right_field() {
    let c = Ctx::new().await;
    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?offset=-1", "offset"),
        ("?created_after=yesterday", "created_after"),
        ("?created_before=2024-13-45", "created_before"),
        ("?created_after=", "created_after"),
        ("?sort=size", "sort"),
        ("?sort=", "sort"),
        ("?tag_mode=none", "tag_mode"),
        ("?limit=", "limit"),
        ("?tags=a%2Cb", "tags"),
        ("?offset=10001", "offset"),
        ("?cursor=not-a-cursor", "cursor"),
    ] {
        for route in ["", "/search/advanced"] {
            let (s, body) = c
                .app
                .get(&c.path(&format!("{route}{query}")), &c.user.token)
                .await;
            assert_eq!(
                s,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{route}{query}: {body}"
            );
            assert_eq!(body["error"], "validation_error");
            assert_eq!(
                body["detail"][0]["loc"],
                json!(["query", field]),
                "{query}: {body}"
            );
        }
    }
    // Rules spanning two parameters are total: without full-text search there is no rank, so
    // the default order applies, and a reversed range is an empty one.
    assert_eq!(
        c.names("?sort=relevance&limit=3").await,
        c.names("?limit=3").await
    );
    assert!(c
        .names("?created_after=2024-02-01&created_before=2024-01-01")
        .await
        .is_empty());
    let (s, body) = c
        .send(
            Method::POST,
            "",
            Some(json!({"name": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown properties: {body}"
    );
    let (s, body) = c
        .app
        .get(&c.path("?limit=101&offset=-1"), &c.user.token)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["detail"].as_array().unwrap().len(),
        2,
        "all problems are reported: {body}"
    );
    for query in [
        "?limit=ten",
        "?sort=size",
        "?order=sideways",
        "?search_mode=regex",
    ] {
        let (s, body) = c.app.get(&c.path(query), &c.user.token).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["detail"][0]["loc"][0], "query");
    }
}

#[tokio::test]
async fn substring_search_is_case_insensitive_and_wildcards_are_literal() {
    let c = Ctx::new().await;
    c.create(json!({"name": "Quarterly REPORT"})).await;
    c.create(json!({"name": "Notes", "description": "a report on reports"}))
        .await;
    c.create(json!({"name": "100% done"})).await;
    c.create(json!({"name": "1000 done"})).await;
    c.create(json!({"name": "snake_case"})).await;
    c.create(json!({"name": "snakeXcase"})).await;
    c.create(json!({"name": "back\\slash"})).await;

    assert_eq!(
        sorted(c.names("?q=report").await),
        vec!["Notes", "Quarterly REPORT"]
    );
    assert_eq!(c.names("?q=%25").await, vec!["100% done"]);
    assert_eq!(c.names("?q=0%25").await, vec!["100% done"]);
    assert_eq!(c.names("?q=e_c").await, vec!["snake_case"]);
    assert_eq!(c.names("?q=_").await, vec!["snake_case"]);
    assert_eq!(c.names("?q=%5C").await, vec!["back\\slash"]);
    assert_eq!(c.names("?q=nothing-like-this").await, Vec::<String>::new());
    assert_eq!(
        c.list("?q=%20%20").await["total"],
        7,
        "a blank q filters nothing"
    );
    let (s, _) = c
        .app
        .get(&c.path(&format!("?q={}", "x".repeat(201))), &c.user.token)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn fulltext_search_stems_and_covers_tags() {
    let c = Ctx::new().await;
    c.create(json!({"name": "Pipeline", "description": "Running the nightly benchmarks"}))
        .await;
    c.create(json!({"name": "Cluster", "tags": ["kubernetes"]}))
        .await;
    c.create(json!({"name": "Runbook of kubernetes", "description": "ops"}))
        .await;
    c.create(json!({"name": "Unrelated"})).await;

    assert_eq!(
        c.names("?q=runs&search_mode=fulltext").await,
        vec!["Pipeline"]
    );
    assert_eq!(
        c.names("?q=benchmark&search_mode=fulltext").await,
        vec!["Pipeline"]
    );
    assert_eq!(
        c.names("?q=runs&search_mode=substring").await,
        Vec::<String>::new(),
        "substring mode does not stem"
    );
    // Ranked by relevance: a name match outweighs a tag match.
    assert_eq!(
        c.names("?q=kubernetes&search_mode=fulltext").await,
        vec!["Runbook of kubernetes", "Cluster"]
    );
    assert_eq!(
        c.names("?q=kubernetes%20-ops&search_mode=fulltext").await,
        vec!["Cluster"],
        "web-search syntax"
    );
    assert_eq!(
        c.names("?q=kubernetes&search_mode=fulltext&sort=name&order=asc")
            .await,
        vec!["Cluster", "Runbook of kubernetes"]
    );
    assert_eq!(
        c.names("?q=kubernetes").await,
        vec!["Runbook of kubernetes"],
        "substring mode ignores tags"
    );
}

#[tokio::test]
async fn tag_filters_are_normalised_and_combine_as_any_or_all() {
    let c = Ctx::new().await;
    c.create(json!({"name": "both", "tags": ["api", "docs"]}))
        .await;
    c.create(json!({"name": "api only", "tags": ["api"]})).await;
    c.create(json!({"name": "docs only", "tags": ["docs"]}))
        .await;
    c.create(json!({"name": "none"})).await;

    assert_eq!(sorted(c.names("?tags=api").await), vec!["api only", "both"]);
    assert_eq!(
        sorted(c.names("?tags=API").await),
        vec!["api only", "both"],
        "query tags are normalised"
    );
    assert_eq!(
        sorted(c.names("?tags=%20Api%20").await),
        vec!["api only", "both"]
    );
    assert_eq!(
        sorted(c.names("?tags=api&tags=docs").await),
        vec!["api only", "both", "docs only"]
    );
    assert_eq!(
        sorted(c.names("?tags=api&tags=docs&tag_mode=any").await),
        vec!["api only", "both", "docs only"]
    );
    assert_eq!(
        c.names("?tags=api&tags=DOCS&tag_mode=all").await,
        vec!["both"]
    );
    assert_eq!(c.names("?tags=missing").await, Vec::<String>::new());
    assert_eq!(
        c.names("?tags=api&q=only").await,
        vec!["api only"],
        "filters combine with AND"
    );
    assert_eq!(
        sorted(c.names("/search/advanced?tags=DOCS").await),
        vec!["both", "docs only"]
    );
}

#[tokio::test]
async fn creation_time_bounds_accept_rfc3339_and_dates() {
    let c = Ctx::new().await;
    c.create(json!({"name": "a"})).await;
    c.create(json!({"name": "b"})).await;
    let now = chrono::Utc::now();
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let today = now.date_naive();
    let yesterday = today.pred_opt().unwrap();
    let tomorrow = today.succ_opt().unwrap();

    assert_eq!(
        c.list(&format!(
            "?created_after={}",
            fmt(now - chrono::Duration::hours(1))
        ))
        .await["total"],
        2
    );
    assert_eq!(
        c.list(&format!(
            "?created_after={}",
            fmt(now + chrono::Duration::hours(1))
        ))
        .await["total"],
        0
    );
    assert_eq!(
        c.list(&format!(
            "?created_before={}",
            fmt(now - chrono::Duration::hours(1))
        ))
        .await["total"],
        0
    );
    assert_eq!(
        c.list(&format!(
            "?created_before={}",
            fmt(now + chrono::Duration::hours(1))
        ))
        .await["total"],
        2
    );
    // An offset other than Z (the + percent-encoded).
    let plus_two = (now + chrono::Duration::hours(1))
        .with_timezone(&chrono::FixedOffset::east_opt(7200).unwrap());
    assert_eq!(
        c.list(&format!(
            "?created_before={}",
            plus_two.to_rfc3339().replace('+', "%2B")
        ))
        .await["total"],
        2
    );
    // Dates: created_after is the start of the day, created_before its end.
    assert_eq!(
        c.list(&format!("?created_after={yesterday}")).await["total"],
        2
    );
    assert_eq!(
        c.list(&format!("?created_after={tomorrow}")).await["total"],
        0
    );
    assert_eq!(
        c.list(&format!("?created_before={yesterday}")).await["total"],
        0
    );
    assert_eq!(
        c.list(&format!("?created_before={today}&created_after={today}"))
            .await["total"],
        2
    );
}

#[tokio::test]
async fn sorting_and_the_advanced_search_default_order() {
    let c = Ctx::new().await;
    for name in ["delta", "Alpha", "charlie", "bravo"] {
        c.create(json!({"name": name, "description": "shared text"}))
            .await;
    }
    assert_eq!(
        c.names("?sort=name&order=asc").await,
        vec!["Alpha", "bravo", "charlie", "delta"]
    );
    assert_eq!(
        c.names("?sort=name&order=desc").await,
        vec!["delta", "charlie", "bravo", "Alpha"]
    );
    assert_eq!(
        c.names("?sort=created_at&order=asc").await,
        vec!["delta", "Alpha", "charlie", "bravo"]
    );
    assert_eq!(
        c.names("").await,
        vec!["bravo", "charlie", "Alpha", "delta"],
        "newest first"
    );
    assert_eq!(
        c.names("?q=shared").await,
        vec!["bravo", "charlie", "Alpha", "delta"],
        "the list keeps creation order with q"
    );
    assert_eq!(
        c.names("/search/advanced?q=shared").await,
        vec!["Alpha", "bravo", "charlie", "delta"],
        "by name with q"
    );
    assert_eq!(
        c.names("/search/advanced").await,
        vec!["bravo", "charlie", "Alpha", "delta"],
        "newest first without q"
    );
    assert_eq!(
        c.names("/search/advanced?q=shared&order=desc").await,
        vec!["delta", "charlie", "bravo", "Alpha"]
    );
    let page = c.list("/search/advanced?q=shared&limit=2&offset=1").await;
    assert_eq!(
        (page["total"].clone(), page["has_more"].clone()),
        (json!(4), json!(true))
    );
    assert_eq!(page["items"][0]["name"], "bravo");
}

#[tokio::test]
async fn stats_count_deleted_artifacts_and_distinct_tags() {
    let c = Ctx::new().await;
    let (s, empty) = c.send(Method::GET, "/stats", None).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "/stats is not shadowed by /{{artifact_id}}: {empty}"
    );
    assert_eq!(
        empty,
        json!({"total_artifacts": 0, "active_artifacts": 0, "most_used_tags": [], "total_tags": 0})
    );

    // 12 distinct tags; "common" on three live artifacts, "pair" on two.
    c.create(json!({"name": "a", "tags": ["common", "pair", "t1", "t2", "t3", "t4"]}))
        .await;
    c.create(json!({"name": "b", "tags": ["common", "pair", "t5", "t6", "t7"]}))
        .await;
    c.create(json!({"name": "c", "tags": ["common", "t8", "t9", "t10"]}))
        .await;
    let doomed = c
        .create(json!({"name": "d", "tags": ["common", "gone"]}))
        .await;
    let (s, _) = c
        .send(
            Method::DELETE,
            &format!("/{}", doomed["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    let (_, stats) = c.send(Method::GET, "/stats", None).await;
    assert_eq!(
        stats["total_artifacts"], 4,
        "deleted ones count in the total"
    );
    assert_eq!(stats["active_artifacts"], 3);
    assert_eq!(
        stats["total_tags"], 12,
        "distinct tags of live artifacts, not the top-10 length: {stats}"
    );
    let top = stats["most_used_tags"].as_array().unwrap();
    assert_eq!(top.len(), 10);
    assert_eq!(top[0], json!({"tag": "common", "count": 3}));
    assert_eq!(top[1], json!({"tag": "pair", "count": 2}));
    assert!(top.iter().all(|t| t["tag"] != "gone"));

    // Stats are per workspace.
    let other = c.app.workspace(&c.user).await;
    let (_, stats) = c
        .app
        .get(
            &format!("/api/v1/workspaces/{other}/artifacts/stats"),
            &c.user.token,
        )
        .await;
    assert_eq!(stats["total_artifacts"], 0);
}

/// One input limit: a JSON fragment and the field an error must name (None = accepted).
fn limit_cases() -> Vec<(&'static str, Value, Option<&'static str>)> {
    let keys = |n: usize| {
        Value::Object(
            (0..n)
                .map(|i| (format!("k{i}"), json!(i)))
                .collect::<Map<_, _>>(),
        )
    };
    let tags = |n: usize| json!((0..n).map(|i| format!("tag{i}")).collect::<Vec<_>>());
    vec![
        ("name 255", json!({"name": "n".repeat(255)}), None),
        ("name 256", json!({"name": "n".repeat(256)}), Some("name")),
        ("blank name", json!({"name": "   "}), Some("name")),
        ("empty name", json!({"name": ""}), Some("name")),
        (
            "description 2000",
            json!({"description": "d".repeat(2000)}),
            None,
        ),
        (
            "description 2001",
            json!({"description": "d".repeat(2001)}),
            Some("description"),
        ),
        ("20 tags", json!({"tags": tags(20)}), None),
        ("21 tags", json!({"tags": tags(21)}), Some("tags")),
        ("tag 50", json!({"tags": ["t".repeat(50)]}), None),
        ("tag 51", json!({"tags": ["t".repeat(51)]}), Some("tags")),
        ("tag with comma", json!({"tags": ["a,b"]}), Some("tags")),
        ("tag with markup", json!({"tags": ["<b>"]}), Some("tags")),
        ("non-string tag", json!({"tags": [1]}), Some("tags")),
        (
            "50 metadata keys",
            json!({"artifact_metadata": keys(50)}),
            None,
        ),
        (
            "51 metadata keys",
            json!({"artifact_metadata": keys(51)}),
            Some("artifact_metadata"),
        ),
        (
            "nested metadata object",
            json!({"artifact_metadata": {"a": {"b": 1}}}),
            Some("artifact_metadata"),
        ),
        (
            "nested metadata array",
            json!({"artifact_metadata": {"a": [1]}}),
            Some("artifact_metadata"),
        ),
        (
            "metadata string 1000",
            json!({"artifact_metadata": {"s": "m".repeat(1000)}}),
            None,
        ),
        (
            "metadata string 1001",
            json!({"artifact_metadata": {"s": "m".repeat(1001)}}),
            Some("artifact_metadata"),
        ),
        (
            "metadata bad key",
            json!({"artifact_metadata": {"a b": 1}}),
            Some("artifact_metadata"),
        ),
        (
            "metadata not an object",
            json!({"artifact_metadata": [1]}),
            Some("artifact_metadata"),
        ),
    ]
}

#[tokio::test]
async fn every_input_limit_applies_to_post_put_and_patch() {
    let c = Ctx::new().await;
    let target = c.create(json!({"name": "target"})).await;
    let id = target["id"].as_str().unwrap().to_string();
    for (what, fragment, field) in limit_cases() {
        let mut full = json!({"name": "valid"});
        full.as_object_mut()
            .unwrap()
            .extend(fragment.as_object().unwrap().clone());
        for (method, rest, body) in [
            (Method::POST, String::new(), full.clone()),
            (Method::PUT, format!("/{id}"), full.clone()),
            (Method::PATCH, format!("/{id}"), fragment.clone()),
        ] {
            let (s, resp) = c.send(method.clone(), &rest, Some(body)).await;
            match field {
                None => assert!(s.is_success(), "{method} {what}: {s} {resp}"),
                Some(field) => {
                    assert_eq!(
                        s,
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "{method} {what}: {resp}"
                    );
                    assert_eq!(resp["error"], "validation_error");
                    assert_eq!(
                        resp["detail"][0]["loc"][0], "body",
                        "{method} {what}: {resp}"
                    );
                    assert_eq!(
                        resp["detail"][0]["loc"][1], field,
                        "{method} {what}: {resp}"
                    );
                }
            }
        }
    }
    // Rejected writes changed nothing beyond the accepted ones.
    let (_, now) = c.send(Method::GET, &format!("/{id}"), None).await;
    assert_eq!(
        now["version"],
        1 + 2 * limit_cases().iter().filter(|(_, _, f)| f.is_none()).count()
    );
    let (s, body) = c
        .send(Method::POST, "", Some(json!({"description": "no name"})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["type"], "missing");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "name"]),
        "the missing field is named: {body}"
    );
}

#[tokio::test]
async fn patch_rejects_nulls_except_description_and_put_resets_omitted_fields() {
    let c = Ctx::new().await;
    let a = c.create(json!({"name": "full", "description": "desc", "tags": ["x"], "artifact_metadata": {"k": "v"}})).await;
    let id = a["id"].as_str().unwrap();

    for field in ["name", "tags", "artifact_metadata"] {
        let (s, body) = c
            .send(
                Method::PATCH,
                &format!("/{id}"),
                Some(json!({ field: null })),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", field]));
        assert_eq!(body["detail"][0]["type"], "null_not_allowed");
    }
    let (s, same) = c
        .send(Method::PATCH, &format!("/{id}"), Some(json!({})))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            same["name"].clone(),
            same["description"].clone(),
            same["tags"].clone()
        ),
        (json!("full"), json!("desc"), json!(["x"]))
    );

    let (s, cleared) = c
        .send(
            Method::PATCH,
            &format!("/{id}"),
            Some(json!({"description": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["tags"], json!(["x"]));
    assert_eq!(cleared["artifact_metadata"], json!({"k": "v"}));

    let (s, patched) = c
        .send(
            Method::PATCH,
            &format!("/{id}"),
            Some(json!({"tags": ["New", "new"], "artifact_metadata": {}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            patched["tags"].clone(),
            patched["artifact_metadata"].clone()
        ),
        (json!(["new"]), json!({}))
    );

    let (s, _) = c
        .send(
            Method::PATCH,
            &format!("/{id}"),
            Some(json!({"description": "back", "tags": ["t"], "artifact_metadata": {"a": 1}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, replaced) = c
        .send(
            Method::PUT,
            &format!("/{id}"),
            Some(json!({"name": "replaced"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["name"], "replaced");
    assert_eq!(replaced["description"], Value::Null);
    assert_eq!(replaced["tags"], json!([]));
    assert_eq!(replaced["artifact_metadata"], json!({}));
    let (s, body) = c
        .send(
            Method::PUT,
            &format!("/{id}"),
            Some(json!({"description": "no name"})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "PUT needs the name: {body}"
    );
    let (s, _) = c
        .send(Method::PUT, &format!("/{id}"), Some(json!({"name": null})))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn markup_is_stored_verbatim() {
    let c = Ctx::new().await;
    let name = r#"<script>alert("x")</script> & 'Tom'"#;
    let description = "<img src=x onerror=alert(1)> &amp; \"quoted\"";
    let a = c.create(json!({"name": name, "description": description, "artifact_metadata": {"html": "<b>bold</b>"}})).await;
    let (_, got) = c
        .send(
            Method::GET,
            &format!("/{}", a["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(got["name"], name);
    assert_eq!(got["description"], description);
    assert_eq!(got["artifact_metadata"]["html"], "<b>bold</b>");
    assert_eq!(c.names("?q=%3Cscript%3E").await, vec![name.to_string()]);
}

#[tokio::test]
async fn stale_versions_are_refused() {
    let c = Ctx::new().await;
    let a = c.create(json!({"name": "v"})).await;
    let id = a["id"].as_str().unwrap();

    let r = c
        .with_if_match(Method::PATCH, id, "\"1\"", Some(json!({"name": "v2"})))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get(ETAG).unwrap(), "\"2\"");
    let r = c
        .with_if_match(
            Method::PATCH,
            id,
            "\"1\"",
            Some(json!({"name": "lost update"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "precondition_failed"
    );
    let r = c
        .with_if_match(
            Method::PUT,
            id,
            "W/\"1\"",
            Some(json!({"name": "lost update"})),
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::PRECONDITION_FAILED,
        "weak tags compare by version too"
    );
    let r = c
        .with_if_match(
            Method::PATCH,
            id,
            "garbage",
            Some(json!({"name": "lost update"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = c.with_if_match(Method::DELETE, id, "\"1\"", None).await;
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);

    let (s, body) = c
        .send(
            Method::PATCH,
            &format!("/{id}"),
            Some(json!({"name": "lost update", "version": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "conflict");
    let (s, body) = c
        .send(
            Method::PUT,
            &format!("/{id}"),
            Some(json!({"name": "lost update", "version": 1})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    let (s, body) = c
        .send(
            Method::PUT,
            &format!("/{id}"),
            Some(json!({"name": "v3", "version": 2})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let r = c
        .with_if_match(Method::PATCH, id, "*", Some(json!({"name": "v4"})))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "* matches any version");

    let (_, now) = c.send(Method::GET, &format!("/{id}"), None).await;
    assert_eq!(
        (now["name"].clone(), now["version"].clone()),
        (json!("v4"), json!(4))
    );
    let r = c.with_if_match(Method::DELETE, id, "\"4\"", None).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn concurrent_patches_with_one_if_match_let_exactly_one_win() {
    let c = Ctx::new().await;
    let a = c.create(json!({"name": "race"})).await;
    let id = a["id"].as_str().unwrap();
    let attempts = (0..5).map(|i| {
        c.with_if_match(
            Method::PATCH,
            id,
            "\"1\"",
            Some(json!({"name": format!("writer {i}")})),
        )
    });
    let responses = futures::future::join_all(attempts).await;
    let mut statuses: Vec<StatusCode> = responses.iter().map(|r| r.status()).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        vec![
            StatusCode::OK,
            StatusCode::PRECONDITION_FAILED,
            StatusCode::PRECONDITION_FAILED,
            StatusCode::PRECONDITION_FAILED,
            StatusCode::PRECONDITION_FAILED
        ]
    );
    let (_, now) = c.send(Method::GET, &format!("/{id}"), None).await;
    assert_eq!(now["version"], 2);
}

#[tokio::test]
async fn artifacts_are_only_reachable_through_their_own_workspace() {
    let c = Ctx::new().await;
    let other_ws = c.app.workspace(&c.user).await;
    let a = c.create(json!({"name": "home"})).await;
    let id = a["id"].as_str().unwrap();
    let foreign = format!("/api/v1/workspaces/{other_ws}/artifacts/{id}");
    for method in [Method::GET, Method::PUT, Method::PATCH, Method::DELETE] {
        let (s, body) = c
            .app
            .json(
                method.clone(),
                &foreign,
                Some(&c.user.token),
                Some(json!({"name": "moved"})),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method}: {body}");
    }
    let (_, list) = c
        .app
        .get(
            &format!("/api/v1/workspaces/{other_ws}/artifacts"),
            &c.user.token,
        )
        .await;
    assert_eq!(list["total"], 0);
    let (_, still) = c.send(Method::GET, &format!("/{id}"), None).await;
    assert_eq!(
        (still["name"].clone(), still["version"].clone()),
        (json!("home"), json!(1))
    );

    // Any member may read and write; a stranger gets 404.
    let member = c.app.user().await;
    c.app.add_member(&c.ws, &c.user, &member, "member").await;
    let (s, _) = c
        .app
        .json(
            Method::PATCH,
            &c.path(&format!("/{id}")),
            Some(&member.token),
            Some(json!({"name": "by member"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let stranger = c.app.user().await;
    let (s, _) = c.app.get(&c.path(&format!("/{id}")), &stranger.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bodies_must_be_small_json() {
    let c = Ctx::new().await;
    let url = format!("{}{}", c.app.url, c.path(""));
    let huge = json!({"name": "big", "description": "x".repeat(1_100_000)}).to_string();
    let r = c
        .app
        .client
        .post(&url)
        .bearer_auth(&c.user.token)
        .header(CONTENT_TYPE, "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["request_id"].is_string());

    let r = c
        .app
        .client
        .post(&url)
        .bearer_auth(&c.user.token)
        .header(CONTENT_TYPE, "text/plain")
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"],
        "unsupported_media_type"
    );
    let r = c
        .app
        .client
        .post(&url)
        .bearer_auth(&c.user.token)
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "no content type"
    );
    let r = c
        .app
        .client
        .post(&url)
        .bearer_auth(&c.user.token)
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(r#"{"name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "parameters on the media type are fine"
    );

    for bad in [r#"{"name": "x""#, "not json", ""] {
        let r = c
            .app
            .client
            .post(&url)
            .bearer_auth(&c.user.token)
            .header(CONTENT_TYPE, "application/json")
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["detail"][0]["type"], "json_invalid", "{bad}: {body}");
    }
    for not_object in [json!(["name"]), json!("name"), json!(null), json!(5)] {
        let (s, body) = c.send(Method::POST, "", Some(not_object.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{not_object}: {body}");
        assert_eq!(body["detail"][0]["type"], "dict_type", "{body}");
    }
    let (s, body) = c.send(Method::POST, "", Some(json!({"name": 5}))).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "name"]));
    // Nothing but the one good request was stored.
    assert_eq!(c.list("").await["total"], 1);
}
