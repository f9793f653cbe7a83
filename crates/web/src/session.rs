//! The browser's session: the API's access and refresh tokens in this app's own httpOnly
//! cookies, refreshed transparently on a 401, plus a double-submit CSRF token checked on every
//! POST before any handler runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use futures::future::{BoxFuture, FutureExt, Shared};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::{ApiFailure, Call, Tokens};
use crate::error::WebError;
use crate::Web;

pub const ACCESS_COOKIE: &str = "gw_access";
pub const REFRESH_COOKIE: &str = "gw_refresh";
pub const CSRF_COOKIE: &str = "gw_csrf";
pub const CSRF_FIELD: &str = "csrf_token";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Matches the API's default refresh token lifetime; the API decides when a session ends.
const SESSION_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);
/// Form bodies are small; a larger one is refused before the CSRF check reads it.
const MAX_FORM_BYTES: usize = 256 * 1024;
#[derive(Default)]
enum Change {
    #[default]
    Unchanged,
    Renewed(Tokens),
    Cleared,
}

struct Cell {
    access: Option<String>,
    refresh: Option<String>,
    csrf: String,
    csrf_is_new: bool,
    /// The browser's address, resolved as the API would resolve it, and sent to the API as the
    /// whole `X-Forwarded-For`: the API trusts this app, so a browser-supplied header must
    /// never reach it unchecked.
    client_ip: Option<String>,
    change: Mutex<Change>,
}

/// A refresh on its way to the API, shared by every request that presents the same token
/// while it is.
type InFlight = Shared<BoxFuture<'static, Result<Tokens, ApiFailure>>>;

/// Refreshes in flight by the SHA-256 of the refresh token they spend. Requests of one browser
/// that race on a refresh share its result; the entry goes as the API answers, so a later
/// presentation of the spent token reaches the API, which treats it as theft and revokes the
/// session. One session's refresh never waits for another's.
#[derive(Default)]
pub struct Refresher(Arc<Mutex<HashMap<[u8; 32], InFlight>>>);

impl Refresher {
    async fn refresh(
        &self,
        web: &Web,
        refresh_token: &str,
        client_ip: Option<String>,
    ) -> Result<Tokens, ApiFailure> {
        let key: [u8; 32] = Sha256::digest(refresh_token.as_bytes()).into();
        let in_flight = {
            let mut map = self.0.lock().expect("refresh map");
            match map.get(&key) {
                Some(f) => f.clone(),
                None => {
                    let f = self.start(web, key, refresh_token.to_string(), client_ip);
                    map.insert(key, f.clone());
                    f
                }
            }
        };
        in_flight.await
    }

    /// The API call, spawned so that it completes (and leaves the map) even when every request
    /// waiting on it is cancelled.
    fn start(
        &self,
        web: &Web,
        key: [u8; 32],
        refresh_token: String,
        client_ip: Option<String>,
    ) -> InFlight {
        let (api, map) = (web.api.clone(), self.0.clone());
        let f = async move {
            let mut call =
                Call::new(Method::POST, "/api/v1/auth/refresh").token(Some(&refresh_token));
            call.client_ip = client_ip;
            let result = api.send(call).await;
            map.lock().expect("refresh map").remove(&key);
            result
        }
        .boxed()
        .shared();
        tokio::spawn(f.clone());
        f
    }
}

pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

fn cookie(web: &Web, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(web.config.cookie_secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(SESSION_MAX_AGE.as_secs() as i64))
        .build()
}

/// The CSRF token sent with a POST: the `X-CSRF-Token` header (fetch) or the form field.
fn submitted_csrf(parts: &Parts, body: &[u8]) -> Option<String> {
    if let Some(h) = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(h.to_string());
    }
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == CSRF_FIELD)
        .map(|(_, v)| v.into_owned())
}

/// Reads the session cookies, refuses a POST without the matching CSRF token, and writes back
/// whatever the handler changed (renewed or cleared tokens, a new CSRF token).
pub async fn layer(State(web): State<Web>, jar: CookieJar, req: Request, next: Next) -> Response {
    let existing = jar.get(CSRF_COOKIE).map(|c| c.value().to_string());
    let (mut parts, body) = req.into_parts();
    let body = if parts.method == Method::POST {
        let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
            return WebError::TooLarge.into_response();
        };
        let ok = match (&existing, submitted_csrf(&parts, &bytes)) {
            (Some(expected), Some(got)) => same(expected, &got),
            _ => false,
        };
        if !ok {
            return WebError::Csrf.into_response();
        }
        Body::from(bytes)
    } else {
        body
    };
    let client_ip = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| {
        let xff = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        web.config
            .trusted_proxies
            .client_ip(c.0.ip(), xff)
            .to_string()
    });
    let cell = Arc::new(Cell {
        access: jar.get(ACCESS_COOKIE).map(|c| c.value().to_string()),
        refresh: jar.get(REFRESH_COOKIE).map(|c| c.value().to_string()),
        csrf_is_new: existing.is_none(),
        csrf: existing.unwrap_or_else(random_token),
        client_ip,
        change: Mutex::new(Change::Unchanged),
    });
    parts.extensions.insert(cell.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    let mut jar = CookieJar::new();
    if cell.csrf_is_new {
        jar = jar.add(cookie(&web, CSRF_COOKIE, cell.csrf.clone()));
    }
    match std::mem::take(&mut *cell.change.lock().expect("session cell")) {
        Change::Unchanged => {}
        Change::Renewed(t) => {
            jar = jar
                .add(cookie(&web, ACCESS_COOKIE, t.access_token))
                .add(cookie(&web, REFRESH_COOKIE, t.refresh_token));
        }
        Change::Cleared => {
            for name in [ACCESS_COOKIE, REFRESH_COOKIE, CSRF_COOKIE] {
                jar = jar.add(
                    Cookie::build((name, ""))
                        .path("/")
                        .http_only(true)
                        .secure(web.config.cookie_secure)
                        .same_site(SameSite::Lax)
                        .max_age(time::Duration::ZERO)
                        .build(),
                );
            }
        }
    }
    let mut response = response;
    for c in jar.iter() {
        if let Ok(v) = HeaderValue::from_str(&c.encoded().to_string()) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// A handler's view of the session.
#[derive(Clone)]
pub struct Session {
    web: Web,
    cell: Arc<Cell>,
}

impl FromRequestParts<Web> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, web: &Web) -> Result<Self, Self::Rejection> {
        let cell = parts
            .extensions
            .get::<Arc<Cell>>()
            .cloned()
            .expect("the session layer wraps every route");
        Ok(Session {
            web: web.clone(),
            cell,
        })
    }
}

impl Session {
    pub fn csrf(&self) -> &str {
        &self.cell.csrf
    }

    pub fn web(&self) -> &Web {
        &self.web
    }

    pub fn signed_in(&self) -> bool {
        match &*self.cell.change.lock().expect("session cell") {
            Change::Renewed(_) => true,
            Change::Cleared => false,
            Change::Unchanged => self.cell.access.is_some() || self.cell.refresh.is_some(),
        }
    }

    fn current(&self) -> (Option<String>, Option<String>) {
        match &*self.cell.change.lock().expect("session cell") {
            Change::Renewed(t) => (Some(t.access_token.clone()), Some(t.refresh_token.clone())),
            Change::Cleared => (None, None),
            Change::Unchanged => (self.cell.access.clone(), self.cell.refresh.clone()),
        }
    }

    pub fn start(&self, tokens: Tokens) {
        *self.cell.change.lock().expect("session cell") = Change::Renewed(tokens);
    }

    pub fn clear(&self) {
        *self.cell.change.lock().expect("session cell") = Change::Cleared;
    }

    /// An anonymous call (login, register, public figures), still carrying the browser's
    /// address so the API's per-client limits apply to the browser, not to this server.
    pub async fn public<T: DeserializeOwned>(&self, mut call: Call<'_>) -> Result<T, ApiFailure> {
        call.client_ip = self.cell.client_ip.clone();
        self.web.api.send(call).await
    }

    /// A call as the signed-in user; a 401 spends the refresh token once and retries. No
    /// session, or a refused refresh, ends the session ([`WebError::SignedOut`]).
    pub async fn call<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, WebError> {
        let (access, refresh) = self.current();
        if access.is_none() && refresh.is_none() {
            return Err(WebError::SignedOut);
        }
        let retry = Call {
            method: call.method.clone(),
            path: call.path.clone(),
            token: None,
            body: call.body.clone(),
            query: call.query.clone(),
            client_ip: None,
        };
        if let Some(a) = access.as_deref() {
            match self
                .public(Call {
                    token: Some(a),
                    ..call
                })
                .await
            {
                Err(e) if e.is(reqwest::StatusCode::UNAUTHORIZED) => {}
                other => return other.map_err(WebError::Api),
            }
        }
        let Some(refresh) = refresh else {
            self.clear();
            return Err(WebError::SignedOut);
        };
        match self
            .web
            .refresher
            .refresh(&self.web, &refresh, self.cell.client_ip.clone())
            .await
        {
            Ok(t) => {
                let access = t.access_token.clone();
                self.start(t);
                match self
                    .public(Call {
                        token: Some(&access),
                        ..retry
                    })
                    .await
                {
                    Err(e) if e.is(reqwest::StatusCode::UNAUTHORIZED) => {
                        self.clear();
                        Err(WebError::SignedOut)
                    }
                    other => other.map_err(WebError::Api),
                }
            }
            Err(e) if e.status.is_client_error() => {
                self.clear();
                Err(WebError::SignedOut)
            }
            Err(e) => Err(WebError::Api(e)),
        }
    }
}
