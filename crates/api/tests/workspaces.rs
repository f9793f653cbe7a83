mod common;

use std::time::Duration;

use common::{TestApp, User};
use ghostworks_testkit::unique;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn put(app: &TestApp, path: &str, user: &User, body: Value) -> (StatusCode, Value) {
    app.json(Method::PUT, path, Some(&user.token), Some(body))
        .await
}

async fn delete(app: &TestApp, path: &str, user: &User) -> (StatusCode, Value) {
    app.json(Method::DELETE, path, Some(&user.token), None)
        .await
}

async fn set_role(
    app: &TestApp,
    ws: &str,
    actor: &User,
    target: &str,
    role: &str,
) -> (StatusCode, Value) {
    put(
        app,
        &format!("/api/v1/workspaces/{ws}/members/{target}/role"),
        actor,
        json!({"role": role}),
    )
    .await
}

async fn roles(app: &TestApp, ws: &str, viewer: &User) -> Vec<(String, String)> {
    let (s, members) = app
        .get(&format!("/api/v1/workspaces/{ws}/members"), &viewer.token)
        .await;
    assert_eq!(s, StatusCode::OK, "{members}");
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap().into(),
                m["role"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn creating_a_workspace_makes_the_caller_its_only_owner() {
    let app = common::app().await;
    let alice = app.user().await;
    let slug = unique("acme-");
    let (s, ws) = app
        .post("/api/v1/workspaces/", Some(&alice.token), json!({"name": "Acme <Corp>", "slug": slug, "description": "d", "settings": {"theme": "dark"}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{ws}");
    assert_eq!(ws["name"], "Acme <Corp>");
    assert_eq!(ws["slug"], json!(slug));
    assert_eq!(ws["description"], "d");
    assert_eq!(ws["settings"], json!({"theme": "dark"}));
    assert_eq!(ws["is_active"], true);
    assert_eq!(ws["member_count"], 1);
    assert_eq!(ws["user_role"], "owner");
    for key in ["id", "created_at", "updated_at"] {
        assert!(ws[key].is_string(), "{key}: {ws}");
    }
    let members = roles(&app, ws["id"].as_str().unwrap(), &alice).await;
    assert_eq!(members, vec![(alice.id.clone(), "owner".to_string())]);

    // Both spellings of the collection route work, for create and list.
    let (s, body) = app
        .post(
            "/api/v1/workspaces",
            Some(&alice.token),
            json!({"name": "No slash", "slug": unique("ns-")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let (s1, l1) = app.get("/api/v1/workspaces", &alice.token).await;
    let (s2, l2) = app.get("/api/v1/workspaces/", &alice.token).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(l1, l2);
    assert_eq!(l1.as_array().unwrap().len(), 2);

    let (s, _) = app
        .json(
            Method::POST,
            "/api/v1/workspaces",
            None,
            Some(json!({"name": "x", "slug": unique("x-")})),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn slugs_are_unique_and_validated() {
    let app = common::app().await;
    let alice = app.user().await;
    let bob = app.user().await;
    let slug = unique("taken-");
    assert_eq!(
        app.post(
            "/api/v1/workspaces/",
            Some(&alice.token),
            json!({"name": "A", "slug": slug})
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (s, body) = app
        .post(
            "/api/v1/workspaces/",
            Some(&bob.token),
            json!({"name": "B", "slug": slug}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "slugs are global: {body}");
    assert_eq!(body["error"], "conflict");
    assert!(body["message"].as_str().unwrap().contains(&slug));

    let long = "a".repeat(101);
    for bad in ["Upper", "under_score", "with space", "", long.as_str()] {
        let (s, body) = app
            .post(
                "/api/v1/workspaces/",
                Some(&alice.token),
                json!({"name": "x", "slug": bad}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "slug"]), "{body}");
    }
    let (s, _) = app
        .post(
            "/api/v1/workspaces/",
            Some(&alice.token),
            json!({"name": "x", "slug": "a".repeat(100)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "100 characters is allowed");
    let (s, body) = app
        .post(
            "/api/v1/workspaces/",
            Some(&alice.token),
            json!({"name": "", "slug": unique("e-")}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "name"]));
    let (s, body) = app
        .post(
            "/api/v1/workspaces/",
            Some(&alice.token),
            json!({"name": "x", "slug": unique("d-"), "description": "d".repeat(1001)}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "description"]));
    let (s, body) = app
        .post(
            "/api/v1/workspaces/",
            Some(&alice.token),
            json!({"name": "x", "slug": unique("s-"), "settings": null}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn the_list_shows_only_my_workspaces_with_my_role() {
    let app = common::app().await;
    let alice = app.user().await;
    let bob = app.user().await;
    let mine = app.workspace(&alice).await;
    let theirs = app.workspace(&bob).await;
    let shared = app.workspace(&bob).await;
    app.add_member(&shared, &bob, &alice, "member").await;

    let (_, list) = app.get("/api/v1/workspaces/", &alice.token).await;
    let mut seen: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().into(),
                w["user_role"].as_str().unwrap().into(),
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (mine.clone(), "owner".to_string()),
        (shared.clone(), "member".to_string()),
    ];
    expected.sort();
    assert_eq!(seen, expected);
    assert!(!list.to_string().contains(&theirs));
    let shared_entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"] == json!(shared))
        .unwrap();
    assert_eq!(shared_entry["member_count"], 2);

    let carol = app.user().await;
    let (_, list) = app.get("/api/v1/workspaces/", &carol.token).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn get_and_update_follow_the_role_matrix() {
    let app = common::app().await;
    let owner = app.user().await;
    let admin = app.user().await;
    let member = app.user().await;
    let ws = app.workspace(&owner).await;
    app.add_member(&ws, &owner, &admin, "admin").await;
    app.add_member(&ws, &owner, &member, "member").await;
    let path = format!("/api/v1/workspaces/{ws}");

    for (user, role) in [(&owner, "owner"), (&admin, "admin"), (&member, "member")] {
        let (s, body) = app.get(&path, &user.token).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["user_role"], role);
        assert_eq!(body["member_count"], 3);
    }

    let (s, body) = put(&app, &path, &member, json!({"name": "Hijacked"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "insufficient_role");
    assert_eq!(
        body["message"],
        "Insufficient permissions. Required: admin, Current: member"
    );

    let (s, body) = put(
        &app,
        &path,
        &admin,
        json!({"name": "Renamed", "description": "About"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["name"].clone(),
            body["description"].clone(),
            body["user_role"].clone()
        ),
        (json!("Renamed"), json!("About"), json!("admin"))
    );

    // Partial update: absent and null fields stay; the slug is immutable.
    let (_, before) = app.get(&path, &owner.token).await;
    let (s, body) = put(
        &app,
        &path,
        &owner,
        json!({"settings": {"a": 1}, "description": null, "slug": "ignored-slug"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "Renamed");
    assert_eq!(body["description"], "About");
    assert_eq!(body["settings"], json!({"a": 1}));
    assert_eq!(body["slug"], before["slug"]);
    let (_, after) = app.get(&path, &member.token).await;
    assert_eq!(after["settings"], json!({"a": 1}));

    let (s, body) = put(&app, &path, &owner, json!({"name": ""})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (s, _) = put(&app, &path, &owner, json!({"name": "n".repeat(256)})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'workspace.updated' AND tenant_id = $1::uuid")
        .bind(&ws)
        .fetch_one(&app.admin_db().await)
        .await
        .unwrap();
    assert_eq!(audit, 2);
}

#[tokio::test]
async fn members_are_listed_in_joining_order() {
    let app = common::app().await;
    let owner = app.user().await;
    let ws = app.workspace(&owner).await;
    let mut expected = vec![(owner.id.clone(), "owner".to_string())];
    for role in ["member", "admin", "member"] {
        let u = app.user().await;
        app.add_member(&ws, &owner, &u, role).await;
        expected.push((u.id.clone(), role.to_string()));
    }
    assert_eq!(roles(&app, &ws, &owner).await, expected);
    let (_, members) = app
        .get(&format!("/api/v1/workspaces/{ws}/members"), &owner.token)
        .await;
    let first = &members[0];
    assert_eq!(first["user_email"], json!(owner.email));
    assert_eq!(first["user_name"], "Test");
    assert_eq!(first["is_active"], true);
    assert!(first["id"].is_string() && first["joined_at"].is_string());
    let joined: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["joined_at"].as_str().unwrap())
        .collect();
    let mut sorted = joined.clone();
    sorted.sort();
    assert_eq!(joined, sorted);
}

#[tokio::test]
async fn adding_members_checks_the_address_duplicates_and_who_may_grant_ownership() {
    let app = common::app().await;
    let owner = app.user().await;
    let admin = app.user().await;
    let member = app.user().await;
    let newcomer = app.user().await;
    let ws = app.workspace(&owner).await;
    let path = format!("/api/v1/workspaces/{ws}/members");
    app.add_member(&ws, &owner, &admin, "admin").await;

    // An address without an account gets the answer an account's address gets.
    let (s, unknown) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"email": "Nobody@example.com", "role": "member"}),
        )
        .await;
    let (s2, known) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"email": member.email.to_uppercase(), "role": "member"}),
        )
        .await;
    assert_eq!(
        (s, s2),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED),
        "e-mail lookup is case-insensitive: {unknown} {known}"
    );
    assert_eq!(unknown["email"], "nobody@example.com");
    assert_eq!(known["email"], member.email);
    let shape = |mut v: Value| {
        v.as_object_mut().unwrap().remove("email");
        v
    };
    assert_eq!(shape(unknown.clone()), shape(known.clone()));
    assert_eq!(known["role"], "member");
    assert!(known.get("user_id").is_none(), "{known}");
    let (_, members) = app.get(&path, &admin.token).await;
    let emails: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&member.email.as_str()), "{members}");
    assert!(!emails.contains(&"nobody@example.com"), "{members}");

    let (s, body) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"email": member.email, "role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        body["message"],
        "User is already a member of this workspace"
    );

    let (s, body) = app
        .post(
            &path,
            Some(&member.token),
            json!({"email": newcomer.email, "role": "member"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "members cannot invite: {body}");
    assert_eq!(body["error"], "insufficient_role");

    let (s, body) = app
        .post(
            &path,
            Some(&admin.token),
            json!({"email": newcomer.email, "role": "owner"}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "admins cannot create owners: {body}"
    );
    assert_eq!(
        body["message"],
        "Insufficient permissions. Required: owner, Current: admin"
    );

    let (s, body) = app
        .post(
            &path,
            Some(&owner.token),
            json!({"email": newcomer.email, "role": "superuser"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["detail"][0]["loc"], json!(["body", "role"]));

    let (s, body) = app
        .post(
            &path,
            Some(&owner.token),
            json!({"email": newcomer.email, "role": "owner"}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    let (_, w) = app
        .get(&format!("/api/v1/workspaces/{ws}"), &newcomer.token)
        .await;
    assert_eq!(w["user_role"], "owner");
    assert_eq!(w["member_count"], 4);
}

#[tokio::test]
async fn role_changes_follow_the_ownership_rules() {
    let app = common::app().await;
    let owner = app.user().await;
    let admin = app.user().await;
    let member = app.user().await;
    let ws = app.workspace(&owner).await;
    app.add_member(&ws, &owner, &admin, "admin").await;
    app.add_member(&ws, &owner, &member, "member").await;

    let (s, body) = set_role(&app, &ws, &member, &admin.id, "member").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "members change no roles: {body}");

    let (s, body) = set_role(&app, &ws, &admin, &member.id, "admin").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "Member role updated successfully");
    assert_eq!(
        (
            body["user_id"].clone(),
            body["old_role"].clone(),
            body["new_role"].clone()
        ),
        (json!(member.id), json!("member"), json!("admin"))
    );
    let (s, _) = set_role(&app, &ws, &admin, &member.id, "member").await;
    assert_eq!(s, StatusCode::OK, "admins manage admins");

    for role in ["admin", "member", "owner"] {
        let (s, body) = set_role(&app, &ws, &admin, &owner.id, role).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "admin touching the owner ({role}): {body}"
        );
        assert_eq!(body["error"], "insufficient_role");
    }
    let (s, body) = set_role(&app, &ws, &admin, &member.id, "owner").await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "only owners grant ownership: {body}"
    );

    let (s, body) = set_role(&app, &ws, &admin, &admin.id, "member").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["message"], "Cannot change your own role");
    let (s, body) = set_role(&app, &ws, &owner, &owner.id, "admin").await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the sole owner cannot step down either: {body}"
    );

    let stranger = app.user().await;
    let (s, body) = set_role(&app, &ws, &owner, &stranger.id, "admin").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "Member not found in this workspace");
    let (s, _) = set_role(&app, &ws, &owner, "not-a-uuid", "admin").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // With two owners, one owner demotes the other.
    let (s, _) = set_role(&app, &ws, &owner, &admin.id, "owner").await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = set_role(&app, &ws, &admin, &owner.id, "member").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["old_role"], "owner");
    let owners: Vec<_> = roles(&app, &ws, &admin)
        .await
        .into_iter()
        .filter(|(_, r)| r == "owner")
        .collect();
    assert_eq!(owners, vec![(admin.id.clone(), "owner".to_string())]);
    // The demoted owner lost the power at once.
    let (s, _) = set_role(&app, &ws, &owner, &member.id, "admin").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// Two owners demote each other at the same moment: the owner-count lock serialises them, so
/// the second sees a single owner left and gets 409 instead of leaving the workspace ownerless.
#[tokio::test]
async fn concurrent_mutual_demotion_keeps_the_last_owner() {
    let app = common::app().await;
    let a = app.user().await;
    let b = app.user().await;
    let ws = app.workspace(&a).await;
    app.add_member(&ws, &a, &b, "owner").await;

    // Hold the owner rows locked so both requests pass their membership check and queue on
    // the lock; then release them together.
    let admin = app.admin_db().await;
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query("SELECT id FROM workspace_memberships WHERE tenant_id = $1::uuid FOR UPDATE")
        .bind(&ws)
        .fetch_all(&mut *blocker)
        .await
        .unwrap();
    let (r1, r2, ()) = tokio::join!(
        set_role(&app, &ws, &a, &b.id, "admin"),
        set_role(&app, &ws, &b, &a.id, "admin"),
        async {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&admin)
            .await
            .unwrap();
                if waiting >= 2 {
                    break;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the two demotions never queued on the lock"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            blocker.commit().await.unwrap();
        }
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{} / {}",
        r1.1,
        r2.1
    );
    let loser = if r1.0 == StatusCode::CONFLICT {
        &r1.1
    } else {
        &r2.1
    };
    assert_eq!(loser["message"], "A workspace must keep at least one owner");
    let owners: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM workspace_memberships WHERE tenant_id = $1::uuid AND role = 'owner' AND is_active",
    )
    .bind(&ws)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(owners, 1);
}

#[tokio::test]
async fn members_leave_owners_stay_and_removed_members_can_return() {
    let app = common::app().await;
    let owner = app.user().await;
    let admin = app.user().await;
    let member = app.user().await;
    let ws = app.workspace(&owner).await;
    app.add_member(&ws, &owner, &admin, "admin").await;
    app.add_member(&ws, &owner, &member, "member").await;
    let member_path = |u: &User| format!("/api/v1/workspaces/{ws}/members/{}", u.id);

    let (s, body) = delete(&app, &member_path(&owner), &owner).await;
    assert_eq!(
        s,
        StatusCode::CONFLICT,
        "the last owner cannot leave: {body}"
    );
    assert_eq!(body["message"], "A workspace must keep at least one owner");
    let (s, _) = delete(&app, &member_path(&owner), &admin).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins cannot remove owners");
    let (s, _) = delete(&app, &member_path(&admin), &member).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "members cannot remove others");

    // A member leaves on their own.
    let (s, body) = delete(&app, &member_path(&member), &member).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "Member removed successfully");
    assert_eq!(body["user_id"], json!(member.id));
    for path in [
        format!("/api/v1/workspaces/{ws}"),
        format!("/api/v1/workspaces/{ws}/members"),
        format!("/api/v1/workspaces/{ws}/artifacts"),
    ] {
        let (s, body) = app.get(&path, &member.token).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (_, list) = app.get("/api/v1/workspaces/", &member.token).await;
    assert_eq!(list, json!([]));
    let (s, _) = delete(&app, &member_path(&member), &owner).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "already gone");

    // An admin removes the admin... themselves included; then the owner re-adds the member.
    let (s, _) = delete(&app, &member_path(&admin), &admin).await;
    assert_eq!(s, StatusCode::OK);
    app.add_member(&ws, &owner, &member, "admin").await;
    let (s, w) = app
        .get(&format!("/api/v1/workspaces/{ws}"), &member.token)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(w["user_role"], "admin", "re-added with the new role");
    assert_eq!(w["member_count"], 2);

    // An owner leaves when another owner remains.
    app.add_member(&ws, &owner, &admin, "owner").await;
    let (s, _) = delete(&app, &member_path(&owner), &owner).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .get(&format!("/api/v1/workspaces/{ws}"), &owner.token)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn switch_issues_workspace_tokens_for_members_only() {
    let app = common::app().await;
    let owner = app.user().await;
    let member = app.user().await;
    let outsider = app.user().await;
    let ws = app.workspace(&owner).await;
    app.add_member(&ws, &owner, &member, "member").await;

    let (s, body) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/switch"),
            Some(&member.token),
            json!({"refresh_token": member.refresh}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["message"], "Workspace switched successfully");
    assert_eq!(body["workspace_id"], json!(ws));
    assert_eq!(body["role"], "member");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();
    let (_, me) = app.get("/api/v1/auth/me", token).await;
    assert_eq!(me["current_workspace"]["role"], "member");
    let next = body["refresh_token"].as_str().unwrap().to_string();

    let (s, body) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/switch"),
            Some(&outsider.token),
            json!({"refresh_token": outsider.refresh}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    assert!(body.get("access_token").is_none());

    // A deactivated workspace cannot be switched to.
    let (s, _) = put(
        &app,
        &format!("/api/v1/workspaces/{ws}"),
        &owner,
        json!({"is_active": false}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .post(
            &format!("/api/v1/workspaces/{ws}/switch"),
            Some(&member.token),
            json!({"refresh_token": next}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .get(&format!("/api/v1/workspaces/{ws}"), &owner.token)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "inactive workspaces are hidden");
    let (_, list) = app.get("/api/v1/workspaces/", &owner.token).await;
    assert_eq!(list, json!([]));
}

#[tokio::test]
async fn malformed_ids_and_strangers_get_404_and_strangers_are_audited() {
    let app = common::app().await;
    let owner = app.user().await;
    let stranger = app.user().await;
    let ws = app.workspace(&owner).await;

    for path in [
        "/api/v1/workspaces/not-a-uuid",
        "/api/v1/workspaces/1234/members",
        "/api/v1/workspaces/%27%20OR%201=1--/artifacts",
    ] {
        let (s, body) = app.get(path, &owner.token).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"], "not_found");
    }
    let (s, body) = app
        .get(
            &format!("/api/v1/workspaces/{ws}/artifacts/not-a-uuid"),
            &owner.token,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");

    let missing = uuid::Uuid::new_v4();
    let attempts = [
        (Method::GET, format!("/api/v1/workspaces/{ws}"), None),
        (
            Method::PUT,
            format!("/api/v1/workspaces/{ws}"),
            Some(json!({"name": "mine now"})),
        ),
        (
            Method::GET,
            format!("/api/v1/workspaces/{ws}/members"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/workspaces/{ws}/members"),
            Some(json!({"email": stranger.email, "role": "owner"})),
        ),
        (
            Method::GET,
            format!("/api/v1/workspaces/{ws}/artifacts"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/workspaces/{ws}/artifacts"),
            Some(json!({"name": "x"})),
        ),
    ];
    for (method, path, body) in &attempts {
        let (s, err) = app
            .json(method.clone(), path, Some(&stranger.token), body.clone())
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{method} {path}: {err}");
        assert_eq!(
            err["message"],
            json!(format!("Workspace not found or access denied: {ws}"))
        );
    }
    // An unknown workspace looks exactly like a foreign one.
    let (s, err) = app
        .get(&format!("/api/v1/workspaces/{missing}"), &stranger.token)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(
        err["message"],
        json!(format!("Workspace not found or access denied: {missing}"))
    );

    let rows: Vec<(Option<uuid::Uuid>, Option<uuid::Uuid>, Value)> = sqlx::query_as(
        "SELECT tenant_id, actor_user_id, details FROM audit_log WHERE action = 'workspace.access_denied' ORDER BY id",
    )
    .fetch_all(&app.admin_db().await)
    .await
    .unwrap();
    assert_eq!(rows.len(), attempts.len() + 1);
    for (tenant, actor, details) in &rows[..attempts.len()] {
        assert_eq!(
            *tenant, None,
            "the target goes into details, never tenant_id"
        );
        assert_eq!(actor.map(|a| a.to_string()), Some(stranger.id.clone()));
        assert_eq!(details["workspace_id"], json!(ws));
    }
    let (_, members) = app
        .get(&format!("/api/v1/workspaces/{ws}/members"), &owner.token)
        .await;
    assert_eq!(
        members.as_array().unwrap().len(),
        1,
        "the stranger's attempts changed nothing"
    );
}

#[tokio::test]
async fn added_members_get_an_invitation_email() {
    let app = common::app().await;
    let owner = app.user().await;
    let member = app.user().await;
    let ws = app.workspace(&owner).await;
    app.add_member(&ws, &owner, &member, "admin").await;
    let mail = app.mail(&member.email, 2).await; // after the verification e-mail
    assert_eq!(
        mail.header("subject").as_deref(),
        Some("You were added to a Ghostworks workspace")
    );
    let text = mail.part("text/plain").unwrap();
    assert!(
        text.contains("added you to the workspace \"Test WS\" on Ghostworks as admin"),
        "{text}"
    );
    assert_eq!(
        mail.links(),
        vec![format!("{}/workspaces/{ws}", common::PUBLIC_URL)]
    );
    // The job was queued in the workspace's scope, carrying its tenant.
    let tenant: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT tenant_id FROM jobs WHERE kind = 'email.invitation'")
            .fetch_one(&app.admin_db().await)
            .await
            .unwrap();
    assert_eq!(tenant.map(|t| t.to_string()), Some(ws));
}

#[tokio::test]
async fn adding_and_removing_someone_again_and_again_sends_one_invitation() {
    let app = common::app().await;
    let owner = app.user().await;
    let member = app.user().await;
    let ws = app.workspace(&owner).await;
    let member_path = format!("/api/v1/workspaces/{ws}/members/{}", member.id);
    app.add_member(&ws, &owner, &member, "member").await;
    // The invitation goes out (after the verification e-mail) ...
    let first = app.mail(&member.email, 2).await;
    assert_eq!(
        first.header("Subject").as_deref(),
        Some("You were added to a Ghostworks workspace")
    );
    // ... and removing and adding them again and again sends no other.
    for round in 0..3 {
        let (s, body) = app
            .json(Method::DELETE, &member_path, Some(&owner.token), None)
            .await;
        assert_eq!(s, StatusCode::OK, "round {round}: {body}");
        app.add_member(&ws, &owner, &member, "member").await;
    }
    let admin = app.admin_db().await;
    let (jobs, added): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobs WHERE kind = 'email.invitation'), \
         (SELECT count(*) FROM audit_log WHERE action = 'member.added')",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!((jobs, added), (1, 4), "four adds, one invitation e-mail");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = app
        .services
        .mail_to(&member.email, 2, common::MAIL_WAIT)
        .await;
    assert_eq!(mails.len(), 2, "verification and one invitation");
}

#[tokio::test]
async fn usage_is_computed_by_maintenance_and_served_to_members() {
    let app = common::app().await;
    let owner = app.user().await;
    let member = app.user().await;
    let stranger = app.user().await;
    let ws = app.workspace(&owner).await;
    app.add_member(&ws, &owner, &member, "member").await;
    let path = format!("/api/v1/workspaces/{ws}/usage");
    let (s, body) = app.get(&path, &member.token).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        (body["artifacts"].clone(), body["computed_at"].clone()),
        (json!(0), Value::Null)
    );

    let a = app
        .artifact(
            &ws,
            &owner,
            json!({"name": "abc", "description": "de", "tags": ["x", "y"]}),
        )
        .await;
    app.artifact(&ws, &owner, json!({"name": "fgh", "tags": ["y"]}))
        .await;
    let (s, _) = app
        .json(
            Method::DELETE,
            &format!(
                "/api/v1/workspaces/{ws}/artifacts/{}",
                a["id"].as_str().unwrap()
            ),
            Some(&owner.token),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Run a maintenance period now rather than waiting for the next one.
    let admin = app.admin_db().await;
    let mut tx = admin.begin().await.unwrap();
    ghostworks_worker::enqueue(
        &mut tx,
        ghostworks_worker::kinds::maintenance(chrono::Utc::now()),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let body = loop {
        let (s, body) = app.get(&path, &member.token).await;
        assert_eq!(s, StatusCode::OK);
        if !body["computed_at"].is_null() {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "usage never computed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(body["workspace_id"], ws);
    assert_eq!(body["artifacts"], 1);
    assert_eq!(body["deleted_artifacts"], 1);
    assert_eq!(body["distinct_tags"], 1, "{body}");
    assert_eq!(body["tag_uses"], 1);
    // abc + de + {} (2 bytes), fgh + {}
    assert_eq!(body["storage_bytes"], 3 + 2 + 2 + 3 + 2, "{body}");
    let (s, _) = app.get(&path, &stranger.token).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_adds_of_one_person_let_exactly_one_succeed() {
    let app = common::app().await;
    let owner = app.user().await;
    let ws = app.workspace(&owner).await;
    let path = format!("/api/v1/workspaces/{ws}/members");
    // Several people, each added from six requests at once: the race was lost in about half
    // the runs of five.
    for _ in 0..4 {
        let target = app.user().await;
        let adds = (0..6).map(|_| {
            app.post(
                &path,
                Some(&owner.token),
                json!({"email": target.email, "role": "member"}),
            )
        });
        let mut statuses: Vec<StatusCode> = futures::future::join_all(adds)
            .await
            .into_iter()
            .map(|(s, body)| {
                assert!(
                    s == StatusCode::ACCEPTED || s == StatusCode::CONFLICT,
                    "{s} {body}"
                );
                s
            })
            .collect();
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::ACCEPTED]
                .into_iter()
                .chain([StatusCode::CONFLICT; 5])
                .collect::<Vec<_>>()
        );
        let invitations: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'email.invitation' AND payload->>'user_id' = $1",
        )
        .bind(&target.id)
        .fetch_one(&app.admin_db().await)
        .await
        .unwrap();
        assert_eq!(invitations, 1, "one invitation queued");
    }
    let (_, members) = app.get(&path, &owner.token).await;
    assert_eq!(members.as_array().unwrap().len(), 5);
}
