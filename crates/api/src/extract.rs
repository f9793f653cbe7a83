//! Extractors: who is calling (`AuthUser`), in which workspace (`Ws`, which also opens the
//! tenant-scoped transaction), and the request body and query, with rejections mapped to the
//! one error shape.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum_extra::extract::CookieJar;
use ghostworks_auth::tokens::{Claims, TokenError, TokenType};
use ghostworks_auth::AuthError;
use ghostworks_db::users::{self, Entry, Server, User};
use ghostworks_db::{audit, Tx};
use ghostworks_domain::{FieldError, Role, ValidationErrors};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::bulkhead::StatementTimeout;
use crate::error::ApiError;
use crate::middleware::{current_request_id, ClientIp};
use crate::AppState;

pub const ACCESS_COOKIE: &str = "access_token";
pub const REFRESH_COOKIE: &str = "refresh_token";
pub const CSRF_COOKIE: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Where a request came from (client address, request id): the context of its audit rows.
#[derive(Debug, Clone)]
pub struct Origin(pub audit::Context);

impl<S: Send + Sync> FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Origin(audit::Context {
            ip: parts.extensions.get::<ClientIp>().map(|c| c.0.to_string()),
            request_id: current_request_id(),
        }))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty())
        .then(|| token.trim().to_string())
}

/// A token from the `Authorization` header, else from `cookie` (the original's cookies carry
/// a `Bearer ` prefix; both forms are accepted). Cookie-borne credentials on a state-changing
/// request must be accompanied by the double-submit CSRF header.
pub fn credential(
    headers: &HeaderMap,
    method: &Method,
    cookie: &str,
) -> Result<Option<String>, ApiError> {
    if let Some(t) = bearer(headers) {
        return Ok(Some(t));
    }
    let jar = CookieJar::from_headers(headers);
    let Some(c) = jar.get(cookie) else {
        return Ok(None);
    };
    let token = c.value().trim_matches('"');
    let token = token.strip_prefix("Bearer ").unwrap_or(token).to_string();
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let expected = jar
            .get(CSRF_COOKIE)
            .map(|c| c.value().to_string())
            .unwrap_or_default();
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(sent.as_bytes())) {
            return Err(ApiError::forbidden(
                "csrf_failed",
                "Cookie-authenticated requests that change state must send the X-CSRF-Token header matching the csrf_token cookie",
            ));
        }
    }
    Ok(Some(token))
}

fn token_error(e: TokenError) -> ApiError {
    AuthError::from(e).into()
}

/// The authenticated caller: a valid access token whose session is live and whose account
/// is active.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user: User,
    pub claims: Claims,
}

impl AuthUser {
    pub fn id(&self) -> Uuid {
        self.user.id
    }
}

impl AuthUser {
    /// The verified claims of the request's access token (no database involved yet).
    fn claims(parts: &Parts, state: &AppState) -> Result<Claims, ApiError> {
        let token = credential(&parts.headers, &parts.method, ACCESS_COOKIE)?
            .ok_or_else(|| ApiError::unauthorized("Authentication required"))?;
        state
            .keys()
            .verify(&token, TokenType::Access)
            .map_err(token_error)
    }

    /// The caller, given what the lookup of the token's user and live session found.
    fn accept(user: Option<User>, claims: Claims, parts: &mut Parts) -> Result<Self, ApiError> {
        let user =
            user.ok_or_else(|| ApiError::unauthorized("Session expired or revoked; log in again"))?;
        if !user.is_active {
            return Err(ApiError::unauthorized("User account is inactive"));
        }
        tracing::Span::current().record("user_id", tracing::field::display(user.id));
        let auth = AuthUser { user, claims };
        parts.extensions.insert(auth.clone());
        Ok(auth)
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(u) = parts.extensions.get::<AuthUser>() {
            return Ok(u.clone());
        }
        let claims = Self::claims(parts, state)?;
        let user =
            ghostworks_db::users::by_id_with_live_session(state.db(), claims.sub, claims.sid)
                .await?;
        Self::accept(user, claims, parts)
    }
}

/// A UUID path segment. A malformed one is simply "not found", reported when the handler
/// asks for it (after the checks that come first, such as the caller's role).
#[derive(Debug, Clone)]
pub struct PathId {
    raw: String,
    id: Option<Uuid>,
}

impl<'de> Deserialize<'de> for PathId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        let id = raw.parse().ok();
        Ok(PathId { raw, id })
    }
}

impl PathId {
    /// The id, or 404 "`what` not found".
    pub fn get(&self, what: &str) -> Result<Uuid, ApiError> {
        self.id
            .ok_or_else(|| ApiError::NotFound(format!("{what} not found: {}", self.raw)))
    }
}

/// `/workspaces/{workspace_id}`: the segment every [`Ws`] route has.
#[derive(Deserialize)]
struct WorkspacePath {
    workspace_id: PathId,
}

/// `/workspaces/{workspace_id}/members/{user_id}...`
#[derive(Deserialize)]
pub struct MemberPath {
    pub user_id: PathId,
}

/// `/workspaces/{workspace_id}/artifacts/{artifact_id}`
#[derive(Deserialize)]
pub struct ArtifactPath {
    pub artifact_id: PathId,
}

pub fn workspace_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("Workspace not found or access denied: {id}"))
}

/// A member's request in a workspace: the caller, their role, and an open transaction scoped
/// to the workspace and the caller. A non-member gets 404 (never 403: no existence leak), and
/// the attempt is audited.
pub struct Ws {
    pub tx: Tx,
    pub id: Uuid,
    pub role: Role,
    pub active: bool,
    pub caller: AuthUser,
    pub origin: Origin,
    /// For [`Ws::commit`], which keeps the position of the caller's write.
    state: AppState,
}

/// Marks a handler that only reads, whose [`Ws`] may run on the standby
/// (`DATABASE_REPLICA_URL`, see [`crate::replica`]). It must come before `Ws` among the
/// handler's arguments (axum runs extractors in order).
pub struct StandbyRead;

#[derive(Clone, Copy)]
struct MayReadStandby;

impl FromRequestParts<AppState> for StandbyRead {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        parts.extensions.insert(MayReadStandby);
        Ok(StandbyRead)
    }
}

impl FromRequestParts<AppState> for Ws {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(WorkspacePath { workspace_id }) =
            Path::<WorkspacePath>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound("Not Found".into()))?;
        let raw = workspace_id.raw;
        let Some(id) = workspace_id.id else {
            AuthUser::from_request_parts(parts, state).await?;
            return Err(workspace_not_found(&raw));
        };
        // The caller's session, the scope and the membership in one statement after BEGIN
        // (migration 0011), and a search's place in the bulkhead comes with a shorter
        // statement timeout, set in that statement too.
        let timeout = parts.extensions.get::<StatementTimeout>().map(|t| t.0);
        let claims = match parts.extensions.get::<AuthUser>() {
            Some(caller) => caller.claims.clone(),
            None => AuthUser::claims(parts, state)?,
        };
        let standby = match (state.replica(), parts.extensions.get::<MayReadStandby>()) {
            (Some(replica), Some(_)) => replica.enter(id, &claims, timeout).await,
            _ => None,
        };
        if parts.extensions.get::<MayReadStandby>().is_some() {
            let target = if standby.is_some() {
                "replica"
            } else {
                "primary"
            };
            state.metrics().db_reads.with_label_values(&[target]).inc();
        }
        let (mut tx, entry) = match standby {
            Some(entered) => entered,
            None => {
                users::enter_workspace(
                    state.db(),
                    Server::Primary,
                    id,
                    claims.sub,
                    claims.sid,
                    timeout,
                )
                .await?
            }
        };
        let (user, membership) = match entry {
            Entry::NoSession => (None, None),
            Entry::NotMember(user) => (Some(user), None),
            Entry::Member {
                user,
                role,
                workspace_active,
            } => (Some(user), Some((role, workspace_active))),
        };
        let caller = AuthUser::accept(user, claims, parts)?;
        tracing::Span::current().record("tenant_id", tracing::field::display(id));
        let origin = Origin::from_request_parts(parts, state)
            .await
            .unwrap_or_else(|e| match e {});
        let Some((role, active)) = membership else {
            state.metrics().cross_tenant_denied.inc();
            tracing::warn!(user_id = %caller.id(), workspace_id = %id, "access to a workspace the caller is not a member of");
            let event = audit::Event {
                tenant: None,
                actor: Some(caller.id()),
                action: "workspace.access_denied",
                details: json!({ "workspace_id": id, "method": parts.method.as_str(), "path": parts.uri.path() }),
            };
            audit::record(&mut *tx, &origin.0, event).await?;
            tx.commit().await?;
            return Err(workspace_not_found(&raw));
        };
        // Only for members: ids anyone can invent must not become metric series.
        crate::middleware::note_tenant(id);
        Ok(Ws {
            tx,
            id,
            role,
            active,
            caller,
            origin,
            state: state.clone(),
        })
    }
}

impl Ws {
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        if self.role.at_least(required) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_role",
                format!(
                    "Insufficient permissions. Required: {}, Current: {}",
                    required.as_str(),
                    self.role.as_str()
                ),
            ))
        }
    }

    pub async fn audit(
        &mut self,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), ApiError> {
        let event = audit::Event {
            tenant: Some(self.id),
            actor: Some(self.caller.id()),
            action,
            details,
        };
        audit::record(&mut *self.tx, &self.origin.0, event).await?;
        Ok(())
    }

    /// Commits, and when reads may go to a standby, keeps the position of the write so the
    /// caller's next reads wait for the standby to replay it (or go to the primary).
    pub async fn commit(self) -> Result<(), ApiError> {
        self.tx.commit().await?;
        if let Some(replica) = self.state.replica() {
            replica.note_write(self.state.db(), self.caller.id()).await;
        }
        Ok(())
    }

    /// Ends a request that only read ([`ghostworks_db::end_read`]: no round trip of its own).
    pub fn end_read(self) {
        ghostworks_db::end_read(self.tx);
    }
}

/// A JSON request body: `application/json`, within the body limit, and deserialised with the
/// path of any bad field reported as `loc`.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim();
                v.eq_ignore_ascii_case("application/json")
                    || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "Expected a JSON body with Content-Type: application/json".into(),
            ));
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(1_048_576);
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(_) => ApiError::PayloadTooLarge(limit),
            other => ApiError::BadRequest(other.body_text()),
        })?;
        parse_json(&bytes).map(Body)
    }
}

/// The configured body limit, for the 413 message.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Whether a JSON text holds a `\u0000` escape. PostgreSQL stores no NUL in text or jsonb,
/// so such input is refused up front for every field (and every key) at once. A literal NUL
/// byte is not valid JSON and fails parsing anyway.
fn contains_escaped_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(&b"0000"[..]) {
                return true;
            }
            i += 2; // skip the escaped character, so `\\u0000` (a backslash, then text) passes
        } else {
            i += 1;
        }
    }
    false
}

/// Parses a JSON object body. Anything else that is valid JSON is refused: serde would
/// otherwise read a struct from an array, field by field in declaration order.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
    {
        return Err(ApiError::field(FieldError {
            loc: vec![json!("body")],
            msg: "Input should be a JSON object".into(),
            kind: "dict_type",
        }));
    }
    if contains_escaped_nul(bytes) {
        return Err(ApiError::field(FieldError {
            loc: vec![json!("body")],
            msg: "Text must not contain NUL characters (\\u0000)".into(),
            kind: "value_error",
        }));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut loc = vec![json!("body")];
        for seg in e.path().iter() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => loc.push(json!(index)),
                serde_path_to_error::Segment::Map { key } => loc.push(json!(key)),
                serde_path_to_error::Segment::Enum { variant } => loc.push(json!(variant)),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let inner = e.into_inner();
        let kind = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "json_invalid"
            }
            _ if inner.to_string().starts_with("missing field") => "missing",
            _ => "type_error",
        };
        // serde's messages name types and fields, never the submitted values of strings.
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        // A missing field is reported at its own location, not its parent's.
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            loc.push(json!(field));
        }
        ApiError::Validation(ValidationErrors(vec![FieldError { loc, msg, kind }]))
    })
}

/// Query parameters (repeated keys such as `?tags=a&tags=b` become lists). A refused value is
/// reported under its parameter's name, without echoing it.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or_default();
        let de = serde_html_form::Deserializer::from_bytes(q.as_bytes());
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let at = e
                    .path()
                    .iter()
                    .next()
                    .is_some()
                    .then(|| e.path().to_string());
                let reason = e.into_inner().to_string();
                let missing = reason
                    .strip_prefix("missing field `")
                    .and_then(|r| r.strip_suffix('`'))
                    .map(str::to_string);
                let name = at.or(missing).unwrap_or_else(|| "query".into());
                // serde's "unknown variant `x`, expected one of ..." quotes the value; keep the rest.
                let reason = reason
                    .find("expected ")
                    .map_or(reason.as_str(), |i| &reason[i..]);
                ApiError::field(FieldError::query(
                    &name,
                    "value_error",
                    format!("Invalid query parameter {name}: {reason}"),
                ))
            })
    }
}

/// For an optional query parameter that is an enum or a number: absent is `None` (with
/// `#[serde(default)]`), but an empty value (`?sort=`) is refused like any other value outside
/// the documented ones, instead of being read as absent.
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::contains_escaped_nul;

    #[test]
    fn nul_escapes_are_found_anywhere_but_escaped_backslashes_are_not() {
        assert!(contains_escaped_nul(br#"{"name":"a\u0000b"}"#));
        assert!(contains_escaped_nul(br#"{"meta":{"k\u0000":1}}"#));
        assert!(!contains_escaped_nul(br#"{"name":"a\\u0000b"}"#));
        assert!(!contains_escaped_nul(br#"{"name":"\u00e9"}"#));
    }
}
