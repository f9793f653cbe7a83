//! Fixed-window rate limits and login lockout, counted in Redis so every API instance shares
//! them. When Redis is unreachable the limiter fails open (and logs): an outage of the cache
//! must not lock every user out.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ghostworks_auth::Lockout;
use redis::aio::ConnectionManager;
use redis::Script;

use crate::error::ApiError;
use crate::middleware::ClientIp;
use crate::AppState;

/// A per-client limit on one group of endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub bucket: &'static str,
    pub per_minute: u32,
}

#[derive(Clone)]
pub struct Limiter {
    redis: ConnectionManager,
    prefix: String,
    enabled: bool,
    window_script: Script,
}

/// INCR + first-hit EXPIRE atomically; returns the count and the window's remaining seconds.
const WINDOW_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return {n, redis.call('TTL', KEYS[1])}
";

impl Limiter {
    pub fn new(redis: ConnectionManager, prefix: &str, enabled: bool) -> Self {
        Self {
            redis,
            prefix: prefix.to_string(),
            enabled,
            window_script: Script::new(WINDOW_LUA),
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        format!("{}:{}", self.prefix, parts.join(":"))
    }

    #[tracing::instrument(name = "redis.window_hit", target = "ghostworks::redis", skip_all, fields(db.system = "redis", otel.kind = "client"))]
    async fn hit(&self, key: &str, window: Duration) -> Option<(u64, u64)> {
        let mut conn = self.redis.clone();
        match self
            .window_script
            .key(key)
            .arg(window.as_secs())
            .invoke_async::<(u64, i64)>(&mut conn)
            .await
        {
            Ok((n, ttl)) => Some((n, ttl.max(1) as u64)),
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
                None
            }
        }
    }

    /// Counts one request of `client` against `limit`; Err carries the seconds to wait.
    pub async fn check(&self, limit: Limit, client: &str) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        match self
            .hit(
                &self.key(&["rl", limit.bucket, client]),
                Duration::from_secs(60),
            )
            .await
        {
            Some((n, ttl)) if n > u64::from(limit.per_minute) => Err(ttl),
            _ => Ok(()),
        }
    }

    #[tracing::instrument(name = "redis.failures", target = "ghostworks::redis", skip_all, fields(db.system = "redis", otel.kind = "client"))]
    async fn failures(&self, key: &str) -> Option<(Option<u64>, i64)> {
        let mut conn = self.redis.clone();
        redis::pipe()
            .get(key)
            .ttl(key)
            .query_async(&mut conn)
            .await
            .ok()
    }

    #[tracing::instrument(name = "redis.delete", target = "ghostworks::redis", skip_all, fields(db.system = "redis", otel.kind = "client"))]
    async fn delete(&self, key: &str) {
        let mut conn = self.redis.clone();
        if let Err(e) = redis::cmd("DEL")
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "could not clear login failures");
        }
    }

    #[tracing::instrument(name = "redis.ping", target = "ghostworks::redis", skip_all, fields(db.system = "redis", otel.kind = "client"))]
    pub async fn ping(&self) -> Result<Duration, redis::RedisError> {
        let started = std::time::Instant::now();
        let mut conn = self.redis.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(started.elapsed())
    }
}

/// Failed logins count in the same Redis, under `login-failures:<account>`.
impl Lockout for Limiter {
    async fn remaining(&self, account: &str, max_failures: u32) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let (count, ttl) = self
            .failures(&self.key(&["login-failures", account]))
            .await?;
        (count.unwrap_or(0) >= u64::from(max_failures)).then(|| ttl.max(1) as u64)
    }

    async fn record_failure(&self, account: &str, max_failures: u32, lockout: Duration) -> bool {
        if !self.enabled {
            return false;
        }
        matches!(self.hit(&self.key(&["login-failures", account]), lockout).await, Some((n, _)) if n == u64::from(max_failures))
    }

    async fn clear(&self, account: &str) {
        if self.enabled {
            self.delete(&self.key(&["login-failures", account])).await;
        }
    }
}

/// The original's per-endpoint limits (per client address, per minute); PUT, PATCH and
/// DELETE of an artifact share one counter, as do its reads.
pub fn limit_for(method: &Method, route: &str) -> Option<Limit> {
    let l = |bucket, per_minute| Some(Limit { bucket, per_minute });
    let artifacts = "/api/v1/workspaces/{workspace_id}/artifacts";
    match (method.as_str(), route) {
        ("POST", "/api/v1/auth/register") => l("register", 5),
        ("POST", "/api/v1/auth/login") => l("login", 5),
        ("POST", "/api/v1/auth/refresh") => l("refresh", 10),
        ("POST", "/api/v1/auth/verify-email" | "/api/v1/auth/resend-verification") => {
            l("verification", 10)
        }
        ("POST", "/api/v1/auth/password-reset/request") => l("password_reset", 5),
        ("POST", "/api/v1/auth/password-reset/confirm") => l("password_reset_confirm", 10),
        ("POST", "/api/v1/workspaces" | "/api/v1/workspaces/") => l("workspace_create", 10),
        ("GET", "/api/v1/workspaces" | "/api/v1/workspaces/") => l("workspace_list", 60),
        ("POST", r) if r == artifacts => l("artifact_write", 30),
        ("PUT" | "PATCH" | "DELETE", r) if r.starts_with(artifacts) => l("artifact_write", 30),
        ("GET", r) if r.starts_with(artifacts) => l("artifact_read", 60),
        _ => None,
    }
}

/// Route layer: refuses the request with 429 and `Retry-After` once the client's window for
/// the route's limit is full.
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str())
        .unwrap_or_default();
    let Some(limit) = limit_for(req.method(), route) else {
        return next.run(req).await;
    };
    let client = req
        .extensions()
        .get::<ClientIp>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    match state.limiter().check(limit, &client).await {
        Ok(()) => next.run(req).await,
        Err(retry_after) => {
            state
                .metrics()
                .rate_limited
                .with_label_values(&[limit.bucket])
                .inc();
            ApiError::TooManyRequests {
                retry_after,
                message: format!(
                    "Too many requests: at most {} per minute. Retry in {retry_after} s.",
                    limit.per_minute
                ),
            }
            .into_response()
        }
    }
}
