//! Fixed-window rate limits and login lockout, counted in Redis so every API instance shares
//! them. When Redis is unreachable the rate limits fail open (and log): an outage of the cache
//! must not refuse every request. The login lockout fails closed instead (the login answers
//! 503): a login that cannot be counted would be a free guess at a password.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ghostworks_auth::{Attempt, Lockout, LockoutUnavailable};
use redis::aio::ConnectionManager;
use redis::Script;
use uuid::Uuid;

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
    async fn hit(&self, key: &str, window: Duration) -> redis::RedisResult<(u64, u64)> {
        let mut conn = self.redis.clone();
        let (n, ttl) = self
            .window_script
            .key(key)
            .arg(window.as_secs())
            .invoke_async::<(u64, i64)>(&mut conn)
            .await?;
        Ok((n, ttl.max(1) as u64))
    }

    /// Counts one hit on `key` against `max` per `window`; Err carries the seconds to wait.
    async fn within(&self, key: &[&str], max: u32, window: Duration) -> Result<(), u64> {
        if !self.enabled {
            return Ok(());
        }
        match self.hit(&self.key(key), window).await {
            Ok((n, ttl)) if n > u64::from(max) => Err(ttl),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "rate limiter unavailable; allowing the request");
                Ok(())
            }
        }
    }

    /// Counts one request of `client` against `limit`; Err carries the seconds to wait.
    pub async fn check(&self, limit: Limit, client: &str) -> Result<(), u64> {
        let window = Duration::from_secs(60);
        self.within(&["rl", limit.bucket, client], limit.per_minute, window)
            .await
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

/// Login attempts count in the same Redis, under `login-failures:<account>`, whether or not
/// the rate limits are on: a lockout protects an account, not the server's capacity.
impl Lockout for Limiter {
    async fn reserve(
        &self,
        account: &str,
        max_failures: u32,
        window: Duration,
    ) -> Result<Attempt, LockoutUnavailable> {
        let key = self.key(&["login-failures", account]);
        match self.hit(&key, window).await {
            Ok((n, _)) if n <= u64::from(max_failures) => Ok(Attempt::Reserved { n }),
            Ok((_, ttl)) => Ok(Attempt::Locked { retry_after: ttl }),
            Err(e) => {
                tracing::warn!(error = %e, "login lockout unavailable; refusing the login");
                Err(LockoutUnavailable)
            }
        }
    }

    async fn clear(&self, account: &str) {
        self.delete(&self.key(&["login-failures", account])).await;
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

/// Counts a member invitation against the inviter's hourly and the address's daily limit
/// (whether or not the address has an account, so a refusal tells nothing about that).
pub async fn invitation(state: &AppState, inviter: Uuid, address: &str) -> Result<(), ApiError> {
    let limits = state.config().accounts;
    let (limiter, inviter) = (state.limiter(), inviter.to_string());
    let refused = |bucket: &str, retry_after: u64, message: String| {
        state
            .metrics()
            .rate_limited
            .with_label_values(&[bucket])
            .inc();
        ApiError::TooManyRequests {
            retry_after,
            message,
        }
    };
    let per_inviter = limits.invitations_per_inviter;
    limiter
        .within(&["invite-by", &inviter], per_inviter, HOUR)
        .await
        .map_err(|s| refused("invitation_inviter", s, format!("Too many invitations: at most {per_inviter} an hour per inviter. Retry in {s} s.")))?;
    let per_address = limits.invitations_per_address;
    limiter
        .within(&["invite-to", address], per_address, DAY)
        .await
        .map_err(|s| refused("invitation_address", s, format!("Too many invitations to this address: at most {per_address} a day. Retry in {s} s.")))
}

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

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
