//! The OpenAPI document: generated from the handlers' annotations, then completed here, in one
//! place, with what annotations cannot say: the input limits, read from the constants the
//! domain validates with (utoipa's `max_length = ...` takes literals only, and a copied number
//! would drift), the statuses every kind of route can answer, unique operation ids, and the
//! links that lead from a created resource to the operations on it.

use std::sync::OnceLock;

use axum::http::{Method, StatusCode};
use ghostworks_domain::account::{PASSWORD_SPECIALS, SPECIAL_USE_TLDS};
use ghostworks_domain::limits::*;
use serde_json::{json, Map, Value};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::ratelimit::limit_for;
use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(title = "Ghostworks SaaS API", description = "Multi-tenant artifact catalog. Workspaces are isolated by PostgreSQL row-level security. Every error answers with the `ErrorBody` schema."),
    paths(
        routes::system::health, routes::system::ready, routes::system::detailed, routes::system::stats,
        routes::auth::register, routes::auth::login, routes::auth::refresh, routes::auth::logout, routes::auth::me,
        routes::auth::verify_email, routes::auth::resend_verification,
        routes::auth::request_password_reset, routes::auth::confirm_password_reset,
        routes::workspaces::create, routes::workspaces::list, routes::workspaces::get, routes::workspaces::update,
        routes::workspaces::members, routes::workspaces::add_member, routes::workspaces::change_role,
        routes::workspaces::remove_member, routes::workspaces::switch, routes::workspaces::usage,
        routes::artifacts::create, routes::artifacts::list, routes::artifacts::search, routes::artifacts::stats,
        routes::artifacts::get, routes::artifacts::replace, routes::artifacts::patch, routes::artifacts::delete,
    ),
    components(schemas(
        ghostworks_domain::artifact::SearchMode,
        ghostworks_domain::artifact::TagMode,
        ghostworks_domain::artifact::SortField,
        ghostworks_domain::artifact::SortOrder,
        ghostworks_domain::Role,
        ghostworks_domain::FieldError,
        crate::error::ErrorBody,
        crate::error::Detail,
    )),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The complete document, built once.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_string();
        let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serialises");
        limits(&mut doc);
        operations(&mut doc);
        links(&mut doc);
        doc
    })
}

/// The request bodies.
const INPUTS: [&str; 11] = [
    "RegisterInput",
    "LoginInput",
    "EmailInput",
    "PasswordResetInput",
    "AddMemberInput",
    "RoleInput",
    "SwitchInput",
    "WorkspaceInput",
    "WorkspaceUpdateInput",
    "ArtifactInput",
    "ArtifactPatchInput",
];

/// PostgreSQL stores no NUL character, so no text field accepts one.
const NO_NUL: &str = r"^[^\x00]*$";
/// Unicode's White_Space characters, which Rust's `trim` and `char::is_whitespace` know.
const WHITE_SPACE: &str =
    r" \t\n\x0b\x0c\r\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// `Email::parse`: a dot-atom local part of at most 64 characters (here with at most one dot,
/// which keeps the pattern cheap to generate from), a domain of hostname labels whose top level
/// is alphabetic and not a special-use name.
fn email_pattern() -> String {
    let any_case = |name: &str| -> String {
        name.chars()
            .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c))
            .collect()
    };
    let special: Vec<String> = SPECIAL_USE_TLDS.iter().map(|t| any_case(t)).collect();
    let c = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]";
    let label = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    format!(
        r"^(?:{c}{{1,32}}\.)?{c}{{1,31}}@(?:{label}\.)+(?!(?:{})$)[A-Za-z]{{2,63}}$",
        special.join("|")
    )
}

/// `check_password_strength`: upper, lower, digit and one of the specials, within the lengths.
fn password_pattern() -> String {
    let specials: String = PASSWORD_SPECIALS
        .chars()
        .map(|c| match c {
            '\\' | ']' | '[' | '^' | '-' => format!(r"\{c}"),
            c => c.to_string(),
        })
        .collect();
    let ahead = |class: &str| format!(r"(?=[^\x00]*[{class}])");
    format!(
        r"^{}{}{}{}[^\x00]{{{PASSWORD_MIN},{PASSWORD_MAX}}}$",
        ahead("A-Z"),
        ahead("a-z"),
        ahead("0-9"),
        ahead(&specials)
    )
}

fn email() -> Value {
    json!({"maxLength": EMAIL_MAX, "pattern": email_pattern()})
}

/// One tag as `normalise_tag` takes it: letters, digits, `-`, `_` and white space.
fn tag() -> Value {
    json!({"type": "string", "maxLength": ARTIFACT_TAG_MAX,
        "pattern": format!(r"^[\w{WHITE_SPACE}-]*$")})
}

fn tags(max: usize) -> Value {
    json!({"maxItems": max, "items": tag()})
}

/// Text that is not blank once trimmed.
fn not_blank(max: usize) -> Value {
    json!({"minLength": 1, "maxLength": max,
        "pattern": format!(r"^[^\x00]*[^\x00{WHITE_SPACE}][^\x00]*$")})
}

fn text(max: usize) -> Value {
    json!({"maxLength": max, "pattern": NO_NUL})
}

/// `parse_metadata`: keys of `[A-Za-z0-9_.-]`, scalar values, bounded strings.
fn metadata() -> Value {
    json!({
        "maxProperties": METADATA_KEYS_MAX,
        "propertyNames": {"minLength": 1, "maxLength": METADATA_KEY_MAX, "pattern": "^[A-Za-z0-9_.-]*$"},
        "additionalProperties": {"type": ["string", "number", "boolean", "null"],
            "maxLength": METADATA_STRING_MAX, "pattern": NO_NUL,
            "minimum": -JSON_NUMBER_MAX, "maximum": JSON_NUMBER_MAX},
    })
}

/// Free-form JSON settings; no key may hold a NUL, no number exceed JSON_NUMBER_MAX (the
/// document states both for the top level only: nested values would need a recursive schema,
/// which client generators do not follow).
fn settings() -> Value {
    json!({"propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"minimum": -JSON_NUMBER_MAX, "maximum": JSON_NUMBER_MAX}})
}

/// Merges `rules` into a property of a component schema. A schema or property that is not
/// there is a bug here (a renamed field), so it panics, and the document's test catches it.
fn constrain(doc: &mut Value, schema: &str, property: &str, rules: Value) {
    let target = doc
        .pointer_mut(&format!(
            "/components/schemas/{schema}/properties/{property}"
        ))
        .unwrap_or_else(|| panic!("no property {property} in schema {schema}"));
    merge(target, rules);
}

fn merge(target: &mut Value, rules: Value) {
    let (Value::Object(t), Value::Object(r)) = (target, rules) else {
        unreachable!("schemas are objects")
    };
    t.extend(r);
}

/// The limits of the request bodies and query parameters: the domain's. Bodies refuse unknown
/// properties: `additionalProperties: false`.
fn limits(doc: &mut Value) {
    for schema in INPUTS {
        let target = doc
            .pointer_mut(&format!("/components/schemas/{schema}"))
            .unwrap_or_else(|| panic!("no schema {schema}"));
        merge(target, json!({"additionalProperties": false}));
    }
    constrain(doc, "RegisterInput", "email", email());
    constrain(
        doc,
        "RegisterInput",
        "password",
        json!({"pattern": password_pattern()}),
    );
    constrain(doc, "RegisterInput", "first_name", text(PERSON_NAME_MAX));
    constrain(doc, "RegisterInput", "last_name", text(PERSON_NAME_MAX));
    constrain(doc, "LoginInput", "email", email());
    constrain(doc, "LoginInput", "password", text(PASSWORD_MAX));
    // Resend and reset requests answer alike for any address, so only NUL is refused.
    constrain(doc, "EmailInput", "email", json!({"pattern": NO_NUL}));
    constrain(
        doc,
        "PasswordResetInput",
        "token",
        json!({"pattern": NO_NUL}),
    );
    constrain(
        doc,
        "PasswordResetInput",
        "new_password",
        json!({"pattern": password_pattern()}),
    );
    constrain(doc, "AddMemberInput", "email", email());
    constrain(
        doc,
        "SwitchInput",
        "refresh_token",
        json!({"pattern": NO_NUL}),
    );

    let slug = json!({"minLength": 1, "maxLength": WORKSPACE_SLUG_MAX, "pattern": "^[a-z0-9-]*$"});
    for schema in ["WorkspaceInput", "WorkspaceUpdateInput"] {
        constrain(
            doc,
            schema,
            "name",
            json!({"minLength": 1, "maxLength": WORKSPACE_NAME_MAX, "pattern": NO_NUL}),
        );
        constrain(doc, schema, "description", text(WORKSPACE_DESCRIPTION_MAX));
        constrain(doc, schema, "settings", settings());
    }
    constrain(doc, "WorkspaceInput", "slug", slug);
    constrain(
        doc,
        "WorkspaceUpdateInput",
        "slug",
        json!({"pattern": NO_NUL}),
    );

    for schema in ["ArtifactInput", "ArtifactPatchInput"] {
        constrain(
            doc,
            schema,
            "version",
            json!({"minimum": i32::MIN, "maximum": i32::MAX}),
        );
        constrain(doc, schema, "name", not_blank(ARTIFACT_NAME_MAX));
        constrain(doc, schema, "description", text(ARTIFACT_DESCRIPTION_MAX));
        constrain(doc, schema, "tags", tags(ARTIFACT_TAGS_MAX));
        constrain(doc, schema, "artifact_metadata", metadata());
    }
    // Where a field error points: names and list indexes (`["body", "tags", 2]`).
    constrain(
        doc,
        "FieldError",
        "loc",
        json!({"items": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}),
    );

    // Query parameters, wherever they appear.
    let moment = json!({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]});
    let query: [(&str, Value); 8] = [
        ("q", text(SEARCH_QUERY_MAX)),
        ("tags", tags(FILTER_TAGS_MAX)),
        (
            "limit",
            json!({"minimum": 1, "maximum": PAGE_LIMIT_MAX, "default": PAGE_LIMIT_DEFAULT}),
        ),
        (
            "offset",
            json!({"minimum": 0, "maximum": PAGE_OFFSET_MAX, "default": 0}),
        ),
        ("cursor", json!({"pattern": "^[A-Za-z0-9_-]*$"})),
        ("created_after", moment.clone()),
        ("created_before", moment),
        ("verification_token", json!({"pattern": NO_NUL})),
    ];
    let if_match = json!({"pattern": r#"^(\*|(W/)?"[0-9]+")$"#});
    for param in each_operation(doc)
        .filter_map(|(_, _, op)| op.get_mut("parameters").and_then(Value::as_array_mut))
        .flatten()
    {
        if param["in"] == "header" && param["name"] == "If-Match" {
            merge(&mut param["schema"], if_match.clone());
        }
        if param["in"] != "query" {
            continue;
        }
        match query.iter().find(|(name, _)| param["name"] == *name) {
            // A time is either form, not a string of any shape.
            Some((_, rules)) if rules.get("anyOf").is_some() => param["schema"] = rules.clone(),
            Some((_, rules)) => merge(&mut param["schema"], rules.clone()),
            None => {}
        }
    }
}

/// Every operation of the document, as (path, method, operation).
fn each_operation(doc: &mut Value) -> impl Iterator<Item = (String, Method, &mut Value)> {
    doc["paths"]
        .as_object_mut()
        .expect("the document has paths")
        .iter_mut()
        .flat_map(|(path, item)| {
            let path = path.clone();
            item.as_object_mut()
                .expect("path items are objects")
                .iter_mut()
                .filter_map(move |(method, op)| {
                    let method = match method.as_str() {
                        "get" => Method::GET,
                        "put" => Method::PUT,
                        "post" => Method::POST,
                        "patch" => Method::PATCH,
                        "delete" => Method::DELETE,
                        _ => return None, // path-level fields, not operations
                    };
                    Some((path.clone(), method, op))
                })
        })
}

/// Why each cross-cutting status is answered; the handlers' annotations add their own.
fn reason(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        401 => "Missing, invalid, expired or revoked credentials",
        403 => {
            "Refused: insufficient role, or a cookie-authenticated write without the CSRF header"
        }
        404 => "Not found, or not a member of the workspace",
        409 => "Conflict with the current state",
        412 => "`If-Match` names a version that is no longer current",
        413 => "The body exceeds the configured limit",
        415 => "The body is not `application/json`",
        422 => "Invalid input: `detail` lists each rejected field",
        429 => "Rate limited: retry after `Retry-After` seconds",
        503 => "A dependency (the database; Redis for a login) is unavailable",
        _ => "Error",
    }
}

/// Operation ids unique across tags (`workspaces_create`, `artifacts_create`), and the statuses
/// every kind of route can answer, each error with the one error body.
fn operations(doc: &mut Value) {
    for (path, method, op) in each_operation(doc) {
        let tag = op["tags"][0].as_str().unwrap_or("api").to_string();
        let id = op["operationId"].as_str().unwrap_or_default().to_string();
        op["operationId"] = json!(format!("{tag}_{id}"));

        let authenticated = op.get("security").is_some_and(|s| s != &json!([]));
        let has_body = op.get("requestBody").is_some();
        let has_query = op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
        let mut extra = Vec::new();
        if authenticated {
            extra.push(401);
            if method != Method::GET {
                extra.push(403);
            }
        }
        if path.contains("{workspace_id}") {
            extra.push(404);
        }
        if has_body {
            extra.extend([413, 415, 422]);
        }
        if has_query {
            extra.push(422);
        }
        if limit_for(&method, &path).is_some() {
            extra.push(429);
        }
        let api = path.starts_with("/api/");
        if api {
            extra.push(503);
        }
        let responses = op["responses"]
            .as_object_mut()
            .expect("operations have responses");
        for status in extra {
            responses
                .entry(status.to_string())
                .or_insert_with(|| json!({}));
        }
        if !api {
            continue; // the health probes answer 503 with their own report
        }
        for (status, response) in responses.iter_mut() {
            let Some(status) = status
                .parse()
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
            else {
                continue;
            };
            if !status.is_client_error() && !status.is_server_error() {
                continue;
            }
            let response = response.as_object_mut().expect("responses are objects");
            if response.get("description").is_none_or(|d| d == "") {
                response.insert("description".into(), json!(reason(status)));
            }
            response.insert(
                "content".into(),
                json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}),
            );
        }
    }
}

/// Links from a created resource to the operations on it, so a stateful client (and
/// schemathesis' stateful phase) can follow them.
fn links(doc: &mut Value) {
    let ws = "/api/v1/workspaces/{workspace_id}";
    let from_body = |field: &str| format!("$response.body#/{field}");
    let same_ws = "$request.path.workspace_id";
    let workspace = json!({"workspace_id": from_body("id")});
    let add = |doc: &mut Value,
               path: &str,
               method: &str,
               status: &str,
               targets: &[&str],
               params: &Value| {
        let response = doc
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses/{status}",
                path.replace('/', "~1")
            ))
            .unwrap_or_else(|| panic!("no {status} response for {method} {path}"));
        let links: Map<String, Value> = targets
            .iter()
            .map(|op| {
                (
                    op.to_string(),
                    json!({"operationId": op, "parameters": params}),
                )
            })
            .collect();
        response["links"] = Value::Object(links);
    };
    add(
        doc,
        "/api/v1/workspaces",
        "post",
        "201",
        &[
            "workspaces_get",
            "workspaces_update",
            "workspaces_members",
            "workspaces_add_member",
            "workspaces_switch",
            "workspaces_usage",
            "artifacts_create",
            "artifacts_list",
            "artifacts_search",
            "artifacts_stats",
        ],
        &workspace,
    );
    add(
        doc,
        &format!("{ws}/artifacts"),
        "post",
        "201",
        &[
            "artifacts_get",
            "artifacts_replace",
            "artifacts_patch",
            "artifacts_delete",
        ],
        &json!({"workspace_id": same_ws, "artifact_id": from_body("id")}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_limit_and_link_finds_its_target() {
        let doc = spec();
        let name = &doc["components"]["schemas"]["ArtifactInput"]["properties"]["name"];
        assert_eq!(name["maxLength"], ARTIFACT_NAME_MAX);
        let op = &doc["paths"]["/api/v1/workspaces/{workspace_id}/artifacts"]["post"];
        assert_eq!(op["operationId"], "artifacts_create");
        for status in ["401", "403", "404", "413", "415", "422", "429", "503"] {
            assert_eq!(
                op["responses"][status]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{status}"
            );
        }
    }
}
