//! The API's configuration (`ghostworks serve`): its database login, Redis, the JWT key, the
//! HTTP limits and the cookie rules.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::reader::{has_scheme, range, Reader};
use crate::{redact_url, Common, ConfigErrors, Environment, Secret, TrustedProxies};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// The limits that protect accounts and addresses rather than the server's capacity.
#[derive(Debug, Clone, Copy)]
pub struct AccountLimits {
    /// Login attempts per account and window (LOGIN_MAX_FAILURES); the window is the lockout.
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    /// Members one inviter may add per hour, across workspaces (INVITATIONS_PER_INVITER_PER_HOUR).
    pub invitations_per_inviter: u32,
    /// Invitations one address may receive per day, from anyone (INVITATIONS_PER_ADDRESS_PER_DAY).
    pub invitations_per_address: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: Common,
    pub bind: SocketAddr,
    pub database_url: Secret,
    /// The schema owner's connection, for `migrate` and `seed`; the API never uses it.
    pub database_admin_url: Option<Secret>,
    pub database_pool_size: u32,
    /// A hot standby of the database (`DATABASE_REPLICA_URL`, off when unset) that serves the
    /// reads of a session once it has replayed that session's last write, with a pool of
    /// `database_pool_size` connections.
    pub database_replica_url: Option<Secret>,
    /// Listings, searches and statistics running at once (`SEARCH_CONCURRENCY`): the bulkhead
    /// that keeps the rest of the pool free for cheap requests (gets, writes, health).
    pub search_concurrency: u32,
    /// How long a listing, search or statistics statement may run, and how long such a
    /// request may wait for a place in the bulkhead (`SEARCH_TIMEOUT_MS`); beyond it, 503.
    pub search_timeout: Duration,
    pub redis_url: Secret,
    pub redis_key_prefix: String,
    pub jwt_secret: Secret,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub require_email_verification: bool,
    pub rate_limit_enabled: bool,
    /// Request metrics and /metrics (on by default; off only to measure their cost).
    pub metrics_enabled: bool,
    /// A per-workspace request counter in /metrics: one series per tenant, so off by default.
    pub metrics_tenant_labels: bool,
    pub accounts: AccountLimits,
    pub trusted_proxies: TrustedProxies,
    pub cors_origins: Vec<String>,
    pub cookie_secure: bool,
    pub cookie_samesite: SameSite,
    pub cookie_domain: Option<String>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// The share of `/api/` requests to fail with 503 (`GHOSTWORKS_FAULT_ERROR_RATIO`), for
    /// rehearsing a deploy's automatic rollback. Development builds and
    /// `GHOSTWORKS_ENV=development` only: a release build never reads the variable, and a value
    /// that is not a positive number means none.
    pub fault_error_ratio: Option<f64>,
    /// A delay added to every `/api/` request (`GHOSTWORKS_FAULT_LATENCY_MS`), for rehearsing a
    /// canary's latency analysis. Development builds and `GHOSTWORKS_ENV=development` only: a
    /// release build never reads the variable.
    pub fault_latency: Option<Duration>,
    /// MiB the API allocates and keeps resident (`GHOSTWORKS_FAULT_BALLAST_MIB`), for
    /// rehearsing a canary's memory analysis. Development builds and
    /// `GHOSTWORKS_ENV=development` only: a release build never reads the variable.
    pub fault_ballast_mib: Option<usize>,
}

/// Secrets shipped in examples and templates; never acceptable outside development.
const EXAMPLE_SECRET_MARKERS: &[&str] = &[
    "change",
    "example",
    "your-secret",
    "secret-key",
    "placeholder",
    "dev-only",
];
const MIN_SECRET_BYTES: usize = 32;

crate::env_sources!(Config);

impl Config {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(vars);
        let common = Common::read(&mut r);
        let environment = common.environment;
        let bind = r.parse(
            "GHOSTWORKS_BIND",
            SocketAddr::from(([0, 0, 0, 0], 8000)),
            "an address such as 0.0.0.0:8000",
        );
        let (database_url, database_admin_url) = database(&mut r, environment);
        let database_replica_url = replica(&mut r, &database_url);
        crate::common::no_owner_login(&mut r, common.environment);
        let database_pool_size =
            r.bounded("DATABASE_POOL_SIZE", 10u32, range(1, 1000, "connections"));
        let (search_concurrency, search_timeout) = searches(&mut r, database_pool_size);
        let redis_url = redis(&mut r);
        let redis_key_prefix = r.raw("REDIS_KEY_PREFIX").unwrap_or_else(|| "gw".into());
        let jwt_secret = jwt_secret(&mut r, environment);
        let (access_token_ttl, refresh_token_ttl) = token_lifetimes(&mut r);
        let require_email_verification = r.bool("REQUIRE_EMAIL_VERIFICATION", true);
        let rate_limit_enabled = r.bool("RATE_LIMIT_ENABLED", true);
        let metrics_enabled = r.bool("METRICS_ENABLED", true);
        let metrics_tenant_labels = r.bool("METRICS_TENANT_LABELS", false);
        if common.production() && !rate_limit_enabled {
            r.error("RATE_LIMIT_ENABLED: cannot be false in production; login rate limits protect accounts");
        }
        let accounts = account_limits(&mut r);
        let trusted_proxies = r.trusted_proxies();
        let cors_origins = cors_origins(&mut r);
        let (cookie_secure, cookie_samesite) = cookies(&mut r, common.production());
        let cookie_domain = r.raw("COOKIE_DOMAIN");
        let (max_body_bytes, request_timeout) = request_limits(&mut r);
        let fault_error_ratio = fault(&r, environment, "GHOSTWORKS_FAULT_ERROR_RATIO");
        let fault_latency =
            fault(&r, environment, "GHOSTWORKS_FAULT_LATENCY_MS").map(Duration::from_millis);
        let fault_ballast_mib = fault(&r, environment, "GHOSTWORKS_FAULT_BALLAST_MIB");
        r.finish(|| Config {
            common,
            bind,
            database_url,
            database_admin_url,
            database_pool_size,
            database_replica_url,
            search_concurrency,
            search_timeout,
            redis_url,
            redis_key_prefix,
            jwt_secret,
            access_token_ttl,
            refresh_token_ttl,
            require_email_verification,
            rate_limit_enabled,
            metrics_enabled,
            metrics_tenant_labels,
            accounts,
            trusted_proxies,
            cors_origins,
            cookie_secure,
            cookie_samesite,
            cookie_domain,
            max_body_bytes,
            request_timeout,
            fault_error_ratio,
            fault_latency,
            fault_ballast_mib,
        })
    }

    /// The effective configuration as `NAME=value` lines, secrets redacted.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let secs = |d: Duration| d.as_secs().to_string();
        let mut lines = self.common.redacted_head();
        lines.extend([
            ("GHOSTWORKS_BIND", self.bind.to_string()),
            ("DATABASE_URL", redact_url(self.database_url.expose())),
            (
                "DATABASE_ADMIN_URL",
                self.database_admin_url
                    .as_ref()
                    .map(|s| redact_url(s.expose()))
                    .unwrap_or_default(),
            ),
            ("DATABASE_POOL_SIZE", self.database_pool_size.to_string()),
            (
                "DATABASE_REPLICA_URL",
                self.database_replica_url
                    .as_ref()
                    .map(|s| redact_url(s.expose()))
                    .unwrap_or_default(),
            ),
            ("SEARCH_CONCURRENCY", self.search_concurrency.to_string()),
            (
                "SEARCH_TIMEOUT_MS",
                self.search_timeout.as_millis().to_string(),
            ),
            ("REDIS_URL", redact_url(self.redis_url.expose())),
            ("REDIS_KEY_PREFIX", self.redis_key_prefix.clone()),
            (
                "JWT_SECRET_KEY",
                format!("*** ({} bytes)", self.jwt_secret.expose().len()),
            ),
            (
                "JWT_ACCESS_TOKEN_EXPIRE_MINUTES",
                (self.access_token_ttl.as_secs() / 60).to_string(),
            ),
            (
                "JWT_REFRESH_TOKEN_EXPIRE_DAYS",
                (self.refresh_token_ttl.as_secs() / 86_400).to_string(),
            ),
            (
                "REQUIRE_EMAIL_VERIFICATION",
                self.require_email_verification.to_string(),
            ),
            ("RATE_LIMIT_ENABLED", self.rate_limit_enabled.to_string()),
            ("METRICS_ENABLED", self.metrics_enabled.to_string()),
            (
                "METRICS_TENANT_LABELS",
                self.metrics_tenant_labels.to_string(),
            ),
            (
                "LOGIN_MAX_FAILURES",
                self.accounts.login_max_failures.to_string(),
            ),
            ("LOGIN_LOCKOUT_SECONDS", secs(self.accounts.login_lockout)),
            (
                "INVITATIONS_PER_INVITER_PER_HOUR",
                self.accounts.invitations_per_inviter.to_string(),
            ),
            (
                "INVITATIONS_PER_ADDRESS_PER_DAY",
                self.accounts.invitations_per_address.to_string(),
            ),
            ("TRUSTED_PROXIES", self.trusted_proxies.to_string()),
            ("CORS_ORIGINS", self.cors_origins.join(",")),
            ("COOKIE_SECURE", self.cookie_secure.to_string()),
            (
                "COOKIE_SAMESITE",
                format!("{:?}", self.cookie_samesite).to_lowercase(),
            ),
            ("COOKIE_DOMAIN", opt(&self.cookie_domain)),
            ("MAX_BODY_BYTES", self.max_body_bytes.to_string()),
            ("REQUEST_TIMEOUT_SECONDS", secs(self.request_timeout)),
        ]);
        lines.extend(self.common.redacted_tail());
        lines
    }
}

/// DATABASE_URL (the API's login) and DATABASE_ADMIN_URL (the schema owner's, optional).
fn database(r: &mut Reader<'_>, environment: Environment) -> (Secret, Option<Secret>) {
    let url = r.required_secret(
        "DATABASE_URL",
        "e.g. postgres://ghostworks_api:PASSWORD@localhost:5432/ghostworks",
    );
    r.postgres_url("DATABASE_URL", &url);
    let admin = r.secret("DATABASE_ADMIN_URL");
    if let Some(u) = &admin {
        r.postgres_url("DATABASE_ADMIN_URL", u);
    }
    if environment != Environment::Development {
        for (name, value) in [
            ("DATABASE_URL", Some(&url)),
            ("DATABASE_ADMIN_URL", admin.as_ref()),
        ] {
            if value.is_some_and(|v| v.expose().to_ascii_lowercase().contains("change_me")) {
                r.error(format!("{name}: still holds the template's CHANGE_ME placeholder; put the real credentials in it (or in {name}_FILE)"));
            }
        }
    }
    (url, admin)
}

/// DATABASE_REPLICA_URL: the API's login on a hot standby of DATABASE_URL's database. The
/// same server would only double the pool for nothing, so it is refused.
fn replica(r: &mut Reader<'_>, primary: &Secret) -> Option<Secret> {
    let url = r.secret("DATABASE_REPLICA_URL")?;
    r.postgres_url("DATABASE_REPLICA_URL", &url);
    if url.expose() == primary.expose() {
        r.error("DATABASE_REPLICA_URL: is DATABASE_URL itself; set it to a hot standby of that database, or leave it unset");
    }
    Some(url)
}

fn redis(r: &mut Reader<'_>) -> Secret {
    let url = r.required_secret("REDIS_URL", "e.g. redis://localhost:6379/0");
    let v = url.expose();
    if !v.is_empty() && !has_scheme(v, &["redis://", "rediss://", "redis+unix://", "unix://"]) {
        r.error("REDIS_URL: must be a redis://, rediss:// or unix:// URL");
    }
    url
}

/// JWT_SECRET_KEY: outside development, long and not an example's.
fn jwt_secret(r: &mut Reader<'_>, environment: Environment) -> Secret {
    let secret = r.required_secret(
        "JWT_SECRET_KEY",
        "a random string of at least 32 bytes (e.g. `openssl rand -hex 32`)",
    );
    let v = secret.expose();
    if environment != Environment::Development && !v.is_empty() {
        if v.len() < MIN_SECRET_BYTES {
            r.error(format!("JWT_SECRET_KEY: {} bytes is too short outside development; use at least {MIN_SECRET_BYTES} random bytes", v.len()));
        }
        let lower = v.to_ascii_lowercase();
        if EXAMPLE_SECRET_MARKERS.iter().any(|m| lower.contains(m)) {
            r.error("JWT_SECRET_KEY: looks like an example value; generate a random one (e.g. `openssl rand -hex 32`)");
        }
    }
    secret
}

/// JWT_ACCESS_TOKEN_EXPIRE_MINUTES and JWT_REFRESH_TOKEN_EXPIRE_DAYS.
fn token_lifetimes(r: &mut Reader<'_>) -> (Duration, Duration) {
    let short_lived = range(1, 60, "minutes").because("access tokens are meant to be short-lived");
    let access_minutes = r.bounded("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 15u64, short_lived);
    let refresh_days = r.bounded("JWT_REFRESH_TOKEN_EXPIRE_DAYS", 7u64, range(1, 90, "days"));
    (
        Duration::from_secs(access_minutes * 60),
        Duration::from_secs(refresh_days * 86_400),
    )
}

/// SEARCH_CONCURRENCY (default: half the pool) and SEARCH_TIMEOUT_MS. The bulkhead must leave
/// at least one of the pool's connections to the other requests, or a burst of slow searches
/// would again hold every connection and queue the primary-key reads behind them.
fn searches(r: &mut Reader<'_>, pool_size: u32) -> (u32, Duration) {
    let concurrency = r.bounded(
        "SEARCH_CONCURRENCY",
        (pool_size / 2).max(1),
        range(1, 1000, "requests"),
    );
    if pool_size > 1 && concurrency >= pool_size {
        r.error(format!("SEARCH_CONCURRENCY: {concurrency} must be below DATABASE_POOL_SIZE ({pool_size}), so that searches leave connections for the other requests"));
    }
    let within_statement_timeout =
        range(1, 30_000, "milliseconds").because("the connection's own statement_timeout is 30 s");
    let timeout_ms = r.bounded("SEARCH_TIMEOUT_MS", 2_000u64, within_statement_timeout);
    (concurrency, Duration::from_millis(timeout_ms))
}

/// LOGIN_MAX_FAILURES, LOGIN_LOCKOUT_SECONDS and the invitation limits.
fn account_limits(r: &mut Reader<'_>) -> AccountLimits {
    let guesses = range(1, 100, "failed logins")
        .because("each one is a password guess; 0 would lock every account out");
    let login_max_failures = r.bounded("LOGIN_MAX_FAILURES", 5u32, guesses);
    let lockout = range(60, 86_400, "seconds").because("from a minute to a day");
    let login_lockout_secs = r.bounded("LOGIN_LOCKOUT_SECONDS", 900u64, lockout);
    let invitations_per_inviter = r.bounded(
        "INVITATIONS_PER_INVITER_PER_HOUR",
        20u32,
        range(1, 1000, "invitations"),
    );
    let invitations_per_address = r.bounded(
        "INVITATIONS_PER_ADDRESS_PER_DAY",
        5u32,
        range(1, 100, "invitations"),
    );
    AccountLimits {
        login_max_failures,
        login_lockout: Duration::from_secs(login_lockout_secs),
        invitations_per_inviter,
        invitations_per_address,
    }
}

/// MAX_BODY_BYTES and REQUEST_TIMEOUT_SECONDS.
fn request_limits(r: &mut Reader<'_>) -> (usize, Duration) {
    let body = range(1024, 64 * 1_048_576, "bytes");
    let max_body_bytes = r.bounded("MAX_BODY_BYTES", 1_048_576usize, body);
    let timeout_secs = r.bounded("REQUEST_TIMEOUT_SECONDS", 30u64, range(1, 300, "seconds"));
    (max_body_bytes, Duration::from_secs(timeout_secs))
}

fn cors_origins(r: &mut Reader<'_>) -> Vec<String> {
    let origins = r.list("CORS_ORIGINS");
    for o in &origins {
        if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
            r.error(format!("CORS_ORIGINS: '{o}' must be an origin such as https://app.example.com (scheme, host, optional port, no path)"));
        }
    }
    origins
}

/// COOKIE_SECURE and COOKIE_SAMESITE.
fn cookies(r: &mut Reader<'_>, production: bool) -> (bool, SameSite) {
    let secure = r.bool("COOKIE_SECURE", true);
    if production && !secure {
        r.error("COOKIE_SECURE: must be true in production (cookies only over TLS)");
    }
    let samesite = match r
        .raw("COOKIE_SAMESITE")
        .map(|v| v.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("lax") => SameSite::Lax,
        Some("strict") => SameSite::Strict,
        Some("none") => SameSite::None,
        Some(other) => {
            r.error(format!(
                "COOKIE_SAMESITE: '{other}' is not valid; expected strict, lax or none"
            ));
            SameSite::Lax
        }
    };
    if samesite == SameSite::None && !secure {
        r.error("COOKIE_SAMESITE: none requires COOKIE_SECURE=true (browsers reject it otherwise)");
    }
    (secure, samesite)
}

/// A fault setting (`GHOSTWORKS_FAULT_*`, a positive number): they exist only in development
/// builds. A release build compiles the function below without its body (it returns none and
/// reads nothing), so no production binary can be slowed down, made to fail or bloated by its
/// environment, whatever `GHOSTWORKS_ENV` says.
#[cfg(debug_assertions)]
fn fault<T: std::str::FromStr + PartialOrd + Default>(
    r: &Reader<'_>,
    environment: Environment,
    name: &str,
) -> Option<T> {
    if environment != Environment::Development {
        return None;
    }
    r.raw(name)?.parse::<T>().ok().filter(|v| *v > T::default())
}

#[cfg(not(debug_assertions))]
fn fault<T>(_: &Reader<'_>, _: Environment, _: &str) -> Option<T> {
    None
}
