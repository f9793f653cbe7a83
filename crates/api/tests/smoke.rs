mod common;

use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_user_creates_and_lists_artifacts() {
    let app = common::app().await;
    let alice = app.user().await;
    let ws = app.workspace(&alice).await;
    let a = app
        .artifact(
            &ws,
            &alice,
            json!({"name": "First", "tags": ["API", " api ", "Docs"]}),
        )
        .await;
    assert_eq!(a["tags"], json!(["api", "docs"]));
    let (s, page) = app
        .get(&format!("/api/v1/workspaces/{ws}/artifacts"), &alice.token)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], a["id"]);
}
