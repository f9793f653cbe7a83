//! The one configuration of every Ghostworks role, read from the environment (12-factor) and
//! validated before anything starts. Secrets also come from `NAME_FILE` paths, as Docker and
//! Kubernetes mount them. Problems are collected, not thrown one at a time, so an operator
//! fixes a broken deployment in one pass.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use proxies::TrustedProxies;
pub use web::WebConfig;

mod proxies;
mod web;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// A value that must never reach a log line: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub bind: SocketAddr,
    pub database_url: Secret,
    /// The schema owner's connection, for `migrate` and `seed`; the API never uses it.
    pub database_admin_url: Option<Secret>,
    pub database_pool_size: u32,
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
    pub login_max_failures: u32,
    pub login_lockout: Duration,
    pub trusted_proxies: TrustedProxies,
    pub cors_origins: Vec<String>,
    pub cookie_secure: bool,
    pub cookie_samesite: SameSite,
    pub cookie_domain: Option<String>,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// The collector's OTLP/HTTP base URL (traces are exported only when set).
    pub otel_endpoint: Option<String>,
    pub trace_sample_ratio: f64,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// Every problem found, one line each, naming the variable and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.0 {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

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

struct Reader<'a> {
    vars: &'a HashMap<String, String>,
    errors: Vec<String>,
}

/// `from_env` (the process environment) and `from_env_file` (`KEY=VALUE` lines, comments and
/// blank lines ignored, quotes stripped, on top of nothing else: the file alone must be a
/// complete configuration) for a type with `from_vars`.
macro_rules! env_sources {
    ($t:ty) => {
        impl $t {
            pub fn from_env() -> Result<Self, ConfigErrors> {
                Self::from_vars(&std::env::vars().collect())
            }

            pub fn from_env_file(path: &std::path::Path) -> Result<Self, ConfigErrors> {
                Self::from_vars(&read_env_file(path)?)
            }
        }
    };
}
pub(crate) use env_sources;

impl<'a> Reader<'a> {
    fn new(vars: &'a HashMap<String, String>) -> Self {
        Self {
            vars,
            errors: Vec::new(),
        }
    }
}

impl Reader<'_> {
    fn raw(&self, name: &str) -> Option<String> {
        self.vars
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A secret from `NAME` or from the file named by `NAME_FILE` (not both).
    fn secret(&mut self, name: &str) -> Option<Secret> {
        let file_var = format!("{name}_FILE");
        match (self.raw(name), self.raw(&file_var)) {
            (Some(_), Some(_)) => {
                self.errors
                    .push(format!("{name}: set either {name} or {file_var}, not both"));
                None
            }
            (Some(v), None) => Some(Secret(v)),
            (None, Some(path)) => match std::fs::read_to_string(Path::new(&path)) {
                Ok(v) if !v.trim().is_empty() => {
                    Some(Secret(v.trim_end_matches(['\r', '\n']).to_string()))
                }
                Ok(_) => {
                    self.errors.push(format!(
                        "{file_var}: the file {path} is empty; put the secret in it"
                    ));
                    None
                }
                Err(e) => {
                    self.errors.push(format!("{file_var}: cannot read {path} ({e}); mount the secret file or unset {file_var}"));
                    None
                }
            },
            (None, None) => None,
        }
    }

    fn required_secret(&mut self, name: &str, hint: &str) -> Secret {
        self.secret(name).unwrap_or_else(|| {
            self.errors.push(format!(
                "{name}: missing; set {name} (or {name}_FILE), {hint}"
            ));
            Secret(String::new())
        })
    }

    fn parse<T: FromStr>(&mut self, name: &str, default: T, expected: &str) -> T {
        match self.raw(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                self.errors
                    .push(format!("{name}: '{v}' is not valid; expected {expected}"));
                default
            }),
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> bool {
        match self.raw(name).map(|v| v.to_ascii_lowercase()) {
            None => default,
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    self.errors.push(format!(
                        "{name}: '{v}' is not valid; expected true or false"
                    ));
                    default
                }
            },
        }
    }

    fn environment(&mut self) -> Environment {
        match self.raw("GHOSTWORKS_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("staging") => Environment::Staging,
            Some("production") => Environment::Production,
            Some(other) => {
                self.errors.push(format!("GHOSTWORKS_ENV: '{other}' is not valid; expected development, staging or production"));
                Environment::Development
            }
        }
    }

    /// A whole number of `unit`s within `range` (inclusive), or the default.
    fn bounded(&mut self, name: &str, default: u64, range: (u64, u64), unit: &str) -> u64 {
        let v = self.parse(name, default, &format!("{unit} ({}-{})", range.0, range.1));
        if !(range.0..=range.1).contains(&v) {
            self.errors.push(format!(
                "{name}: must be between {} and {} {unit}",
                range.0, range.1
            ));
        }
        v
    }

    fn logging(&mut self, environment: Environment) -> (String, LogFormat) {
        let log_level = self
            .raw("LOG_LEVEL")
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            self.errors.push(format!(
                "LOG_LEVEL: '{log_level}' is not valid; expected error, warn, info, debug or trace"
            ));
        }
        if environment == Environment::Production && (log_level == "debug" || log_level == "trace")
        {
            self.errors
                .push("LOG_LEVEL: debug and trace are not allowed in production; use info".into());
        }
        let log_format = match self.raw("LOG_FORMAT").as_deref() {
            None if environment == Environment::Development => LogFormat::Pretty,
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                self.errors.push(format!(
                    "LOG_FORMAT: '{other}' is not valid; expected json or pretty"
                ));
                LogFormat::Json
            }
        };
        (log_level, log_format)
    }

    /// Where traces go (OTLP over HTTP) and the share of new traces recorded.
    fn traces(&mut self) -> (Option<String>, f64) {
        let endpoint = self.raw("OPENTELEMETRY_ENDPOINT");
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                self.errors.push(format!("OPENTELEMETRY_ENDPOINT: '{e}' must be the collector's OTLP/HTTP URL, such as http://otelcol:4318"));
            }
        }
        let ratio = self.parse("TRACE_SAMPLE_RATIO", 1.0f64, "a ratio between 0 and 1");
        if !(0.0..=1.0).contains(&ratio) {
            self.errors
                .push("TRACE_SAMPLE_RATIO: must be between 0 and 1 (e.g. 0.1 records one new trace in ten)".into());
        }
        (endpoint, ratio)
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.raw(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn has_scheme(url: &str, schemes: &[&str]) -> bool {
    schemes.iter().any(|s| url.starts_with(s))
}

fn postgres_url(r: &mut Reader<'_>, name: &str, s: &Secret) {
    if !s.0.is_empty() && !has_scheme(&s.0, &["postgres://", "postgresql://"]) {
        r.errors.push(format!(
            "{name}: must be a postgres:// or postgresql:// URL"
        ));
    }
}

env_sources!(Config);

impl Config {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(vars);
        let environment = r.environment();
        let production = environment == Environment::Production;
        let bind = r.parse(
            "GHOSTWORKS_BIND",
            SocketAddr::from(([0, 0, 0, 0], 8000)),
            "an address such as 0.0.0.0:8000",
        );
        let database_url = r.required_secret(
            "DATABASE_URL",
            "e.g. postgres://ghostworks_api:PASSWORD@localhost:5432/ghostworks",
        );
        postgres_url(&mut r, "DATABASE_URL", &database_url);
        let database_admin_url = r.secret("DATABASE_ADMIN_URL");
        if let Some(u) = &database_admin_url {
            postgres_url(&mut r, "DATABASE_ADMIN_URL", u);
        }
        if environment != Environment::Development {
            for (name, value) in [
                ("DATABASE_URL", Some(&database_url)),
                ("DATABASE_ADMIN_URL", database_admin_url.as_ref()),
            ] {
                if value.is_some_and(|v| v.0.to_ascii_lowercase().contains("change_me")) {
                    r.errors.push(format!("{name}: still holds the template's CHANGE_ME placeholder; put the real credentials in it (or in {name}_FILE)"));
                }
            }
        }
        let database_pool_size = r.parse(
            "DATABASE_POOL_SIZE",
            10u32,
            "a number of connections (1-1000)",
        );
        if !(1..=1000).contains(&database_pool_size) {
            r.errors
                .push("DATABASE_POOL_SIZE: must be between 1 and 1000".into());
        }
        let redis_url = r.required_secret("REDIS_URL", "e.g. redis://localhost:6379/0");
        if !redis_url.0.is_empty()
            && !has_scheme(
                &redis_url.0,
                &["redis://", "rediss://", "redis+unix://", "unix://"],
            )
        {
            r.errors
                .push("REDIS_URL: must be a redis://, rediss:// or unix:// URL".into());
        }
        let redis_key_prefix = r.raw("REDIS_KEY_PREFIX").unwrap_or_else(|| "gw".into());
        let jwt_secret = r.required_secret(
            "JWT_SECRET_KEY",
            "a random string of at least 32 bytes (e.g. `openssl rand -hex 32`)",
        );
        if environment != Environment::Development && !jwt_secret.0.is_empty() {
            if jwt_secret.0.len() < MIN_SECRET_BYTES {
                r.errors.push(format!("JWT_SECRET_KEY: {} bytes is too short outside development; use at least {MIN_SECRET_BYTES} random bytes", jwt_secret.0.len()));
            }
            let lower = jwt_secret.0.to_ascii_lowercase();
            if EXAMPLE_SECRET_MARKERS.iter().any(|m| lower.contains(m)) {
                r.errors.push("JWT_SECRET_KEY: looks like an example value; generate a random one (e.g. `openssl rand -hex 32`)".into());
            }
        }
        let access_minutes = r.parse("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 15u64, "minutes (1-60)");
        if !(1..=60).contains(&access_minutes) {
            r.errors.push("JWT_ACCESS_TOKEN_EXPIRE_MINUTES: must be between 1 and 60; access tokens are meant to be short-lived".into());
        }
        let refresh_days = r.parse("JWT_REFRESH_TOKEN_EXPIRE_DAYS", 7u64, "days (1-90)");
        if !(1..=90).contains(&refresh_days) {
            r.errors
                .push("JWT_REFRESH_TOKEN_EXPIRE_DAYS: must be between 1 and 90".into());
        }
        let require_email_verification = r.bool("REQUIRE_EMAIL_VERIFICATION", true);
        let rate_limit_enabled = r.bool("RATE_LIMIT_ENABLED", true);
        let metrics_enabled = r.bool("METRICS_ENABLED", true);
        let metrics_tenant_labels = r.bool("METRICS_TENANT_LABELS", false);
        if production && !rate_limit_enabled {
            r.errors.push("RATE_LIMIT_ENABLED: cannot be false in production; login rate limits protect accounts".into());
        }
        let login_max_failures = r.parse(
            "LOGIN_MAX_FAILURES",
            5u32,
            "a number of failed logins (1-100)",
        );
        let login_lockout_secs = r.parse("LOGIN_LOCKOUT_SECONDS", 900u64, "seconds");
        let trusted_proxies = r.trusted_proxies();
        let cors_origins = r.list("CORS_ORIGINS");
        for o in &cors_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                r.errors.push(format!("CORS_ORIGINS: '{o}' must be an origin such as https://app.example.com (scheme, host, optional port, no path)"));
            }
        }
        let cookie_secure = r.bool("COOKIE_SECURE", true);
        if production && !cookie_secure {
            r.errors
                .push("COOKIE_SECURE: must be true in production (cookies only over TLS)".into());
        }
        let cookie_samesite = match r
            .raw("COOKIE_SAMESITE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("lax") => SameSite::Lax,
            Some("strict") => SameSite::Strict,
            Some("none") => SameSite::None,
            Some(other) => {
                r.errors.push(format!(
                    "COOKIE_SAMESITE: '{other}' is not valid; expected strict, lax or none"
                ));
                SameSite::Lax
            }
        };
        if cookie_samesite == SameSite::None && !cookie_secure {
            r.errors.push(
                "COOKIE_SAMESITE: none requires COOKIE_SECURE=true (browsers reject it otherwise)"
                    .into(),
            );
        }
        let cookie_domain = r.raw("COOKIE_DOMAIN");
        let max_body_bytes = r.parse("MAX_BODY_BYTES", 1_048_576usize, "a size in bytes");
        if !(1024..=64 * 1_048_576).contains(&max_body_bytes) {
            r.errors
                .push("MAX_BODY_BYTES: must be between 1024 and 67108864".into());
        }
        let timeout_secs = r.parse("REQUEST_TIMEOUT_SECONDS", 30u64, "seconds (1-300)");
        if !(1..=300).contains(&timeout_secs) {
            r.errors
                .push("REQUEST_TIMEOUT_SECONDS: must be between 1 and 300".into());
        }
        let (otel_endpoint, trace_sample_ratio) = r.traces();
        let (log_level, log_format) = r.logging(environment);
        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        Ok(Config {
            environment,
            bind,
            database_url,
            database_admin_url,
            database_pool_size,
            redis_url,
            redis_key_prefix,
            jwt_secret,
            access_token_ttl: Duration::from_secs(access_minutes * 60),
            refresh_token_ttl: Duration::from_secs(refresh_days * 86_400),
            require_email_verification,
            rate_limit_enabled,
            metrics_enabled,
            metrics_tenant_labels,
            login_max_failures,
            login_lockout: Duration::from_secs(login_lockout_secs),
            trusted_proxies,
            cors_origins,
            cookie_secure,
            cookie_samesite,
            cookie_domain,
            max_body_bytes,
            request_timeout: Duration::from_secs(timeout_secs),
            otel_endpoint,
            trace_sample_ratio,
            log_level,
            log_format,
        })
    }

    /// Just the schema owner's connection (`DATABASE_ADMIN_URL`, else `DATABASE_URL`), for
    /// `migrate` and `seed`, which need no other setting.
    pub fn admin_database_url(vars: &HashMap<String, String>) -> Result<Secret, ConfigErrors> {
        let mut r = Reader::new(vars);
        let url = r
            .secret("DATABASE_ADMIN_URL")
            .or_else(|| r.secret("DATABASE_URL"));
        match url {
            Some(u) if r.errors.is_empty() => {
                postgres_url(&mut r, "DATABASE_ADMIN_URL", &u);
                if r.errors.is_empty() {
                    Ok(u)
                } else {
                    Err(ConfigErrors(r.errors))
                }
            }
            Some(_) => Err(ConfigErrors(r.errors)),
            None => Err(ConfigErrors(vec![
                "DATABASE_ADMIN_URL: missing; set DATABASE_ADMIN_URL (the schema owner) or DATABASE_URL (or their _FILE forms)".into(),
            ])),
        }
    }

    /// The effective configuration as `NAME=value` lines, secrets redacted.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        vec![
            ("GHOSTWORKS_ENV", self.environment.as_str().into()),
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
            ("LOGIN_MAX_FAILURES", self.login_max_failures.to_string()),
            (
                "LOGIN_LOCKOUT_SECONDS",
                self.login_lockout.as_secs().to_string(),
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
            (
                "REQUEST_TIMEOUT_SECONDS",
                self.request_timeout.as_secs().to_string(),
            ),
            ("OPENTELEMETRY_ENDPOINT", opt(&self.otel_endpoint)),
            ("TRACE_SAMPLE_RATIO", self.trace_sample_ratio.to_string()),
            ("LOG_LEVEL", self.log_level.clone()),
            (
                "LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
        ]
    }
}

/// The worker's configuration (`ghostworks worker`, and the worker `ghostworks dev` runs). It
/// is separate from [`Config`] because the worker needs none of the API's secrets (JWT key,
/// Redis) and the API none of the worker's (SMTP credentials): each process gets only its own.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub environment: Environment,
    /// Where `/metrics` and `/health` are served.
    pub bind: SocketAddr,
    /// The worker's own login (a member of `ghostworks_worker`), not the API's.
    pub database_url: Secret,
    /// Jobs run at once; the pool has `2 × concurrency + 2` connections (each job's
    /// transaction, its lease renewals, the claim loop and the scheduler).
    pub concurrency: usize,
    /// How long a claimed job stays invisible to other workers; renewed every third of it while
    /// the job runs, so only a dead or stalled worker's jobs come back.
    pub lease: Duration,
    /// The fallback poll when no NOTIFY arrives.
    pub poll_interval: Duration,
    pub maintenance_interval: Duration,
    pub artifact_retention_days: u32,
    pub audit_retention_days: u32,
    /// `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS), `smtps://` (TLS);
    /// credentials as `user:password@`.
    pub smtp_url: Secret,
    pub mail_from: String,
    /// The base of the links in e-mails (the web app), without a trailing slash.
    pub public_url: String,
    pub otel_endpoint: Option<String>,
    pub trace_sample_ratio: f64,
    pub log_level: String,
    pub log_format: LogFormat,
}

const DEV_PUBLIC_URL: &str = "http://127.0.0.1:8000";
const DEFAULT_MAIL_FROM: &str = "Ghostworks <no-reply@localhost>";

/// `Name <local@domain>` or `local@domain`, one line.
fn valid_mailbox(v: &str) -> bool {
    let addr = match (v.rfind('<'), v.strip_suffix('>')) {
        (Some(i), Some(_)) => &v[i + 1..v.len() - 1],
        (None, None) => v,
        _ => return false,
    };
    let Some((local, domain)) = addr.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !v.chars().any(char::is_control)
        && !addr.chars().any(char::is_whitespace)
}

fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        // Non-special schemes such as smtp:// keep IP literals as opaque domain text.
        Some(url::Host::Domain(d)) => {
            d == "localhost"
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

env_sources!(WorkerConfig);

impl WorkerConfig {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(vars);
        let environment = r.environment();
        let development = environment == Environment::Development;
        let bind = r.parse(
            "WORKER_BIND",
            SocketAddr::from(([0, 0, 0, 0], 8001)),
            "an address such as 0.0.0.0:8001",
        );
        let database_url = r.required_secret(
            "DATABASE_URL",
            "the worker's own login, e.g. postgres://ghostworks_worker_login:PASSWORD@localhost:5432/ghostworks",
        );
        postgres_url(&mut r, "DATABASE_URL", &database_url);
        let concurrency = r.bounded("WORKER_CONCURRENCY", 8, (1, 256), "jobs");
        let lease = r.bounded("JOB_LEASE_SECONDS", 60, (2, 3600), "seconds");
        let poll = r.bounded("JOB_POLL_SECONDS", 5, (1, 300), "seconds");
        let maintenance = r.bounded("MAINTENANCE_INTERVAL_SECONDS", 3600, (1, 86_400), "seconds");
        let artifact_retention_days =
            r.bounded("ARTIFACT_RETENTION_DAYS", 30, (1, 3650), "days") as u32;
        let audit_retention_days = r.bounded("AUDIT_RETENTION_DAYS", 365, (1, 3650), "days") as u32;
        let smtp_url = r.required_secret(
            "SMTP_URL",
            "the mail relay, e.g. smtps://USER:PASSWORD@smtp.example.com or smtp://127.0.0.1:2525",
        );
        if !smtp_url.0.is_empty() {
            match url::Url::parse(&smtp_url.0) {
                Ok(u) if u.scheme() == "smtp" || u.scheme() == "smtps" => {
                    let tls = u.scheme() == "smtps"
                        || u.query_pairs().any(|(k, v)| k == "tls" && v == "required");
                    if environment == Environment::Production && !tls && !is_loopback_host(&u) {
                        r.errors.push("SMTP_URL: production mail must use TLS: smtps://, or smtp://…?tls=required for STARTTLS (plain smtp:// only to a relay on loopback)".into());
                    }
                }
                _ => r.errors.push(
                    "SMTP_URL: must be an smtp:// or smtps:// URL such as smtp://127.0.0.1:2525"
                        .into(),
                ),
            }
        }
        let mail_from = r
            .raw("MAIL_FROM")
            .unwrap_or_else(|| DEFAULT_MAIL_FROM.into());
        if !valid_mailbox(&mail_from) {
            r.errors.push(format!("MAIL_FROM: '{mail_from}' is not a mailbox; expected an address such as Ghostworks <no-reply@example.com>"));
        } else if !development && mail_from.contains("@localhost") {
            r.errors.push("MAIL_FROM: set the sender address outside development (e.g. Ghostworks <no-reply@your-domain>)".into());
        }
        let public_url = match r.raw("PUBLIC_URL") {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if development => DEV_PUBLIC_URL.into(),
            None => {
                r.errors.push("PUBLIC_URL: missing; set the address of the web app that e-mail links point to, e.g. https://app.example.com".into());
                String::new()
            }
        };
        if !public_url.is_empty() {
            match url::Url::parse(&public_url) {
                Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && environment != Environment::Production) => {
                    if u.query().is_some() || u.fragment().is_some() {
                        r.errors.push("PUBLIC_URL: must not carry a query or fragment".into());
                    }
                }
                Ok(_) if environment == Environment::Production => {
                    r.errors.push("PUBLIC_URL: must be an https:// URL in production".into())
                }
                _ => r.errors.push(format!(
                    "PUBLIC_URL: '{public_url}' must be an http(s) URL such as https://app.example.com"
                )),
            }
        }
        let (otel_endpoint, trace_sample_ratio) = r.traces();
        let (log_level, log_format) = r.logging(environment);
        if !r.errors.is_empty() {
            return Err(ConfigErrors(r.errors));
        }
        Ok(WorkerConfig {
            environment,
            bind,
            database_url,
            concurrency: concurrency as usize,
            lease: Duration::from_secs(lease),
            poll_interval: Duration::from_secs(poll),
            maintenance_interval: Duration::from_secs(maintenance),
            artifact_retention_days,
            audit_retention_days,
            smtp_url,
            mail_from,
            public_url,
            otel_endpoint,
            trace_sample_ratio,
            log_level,
            log_format,
        })
    }

    /// Just the worker's `DATABASE_URL`, for `ghostworks jobs`, which needs nothing else.
    pub fn database_url(vars: &HashMap<String, String>) -> Result<Secret, ConfigErrors> {
        let mut r = Reader::new(vars);
        let url = r.required_secret(
            "DATABASE_URL",
            "the worker's login (a member of ghostworks_worker)",
        );
        postgres_url(&mut r, "DATABASE_URL", &url);
        if r.errors.is_empty() {
            Ok(url)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// The effective configuration as `NAME=value` lines, secrets redacted.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        vec![
            ("GHOSTWORKS_ENV", self.environment.as_str().into()),
            ("WORKER_BIND", self.bind.to_string()),
            ("DATABASE_URL", redact_url(self.database_url.expose())),
            ("WORKER_CONCURRENCY", self.concurrency.to_string()),
            ("JOB_LEASE_SECONDS", self.lease.as_secs().to_string()),
            ("JOB_POLL_SECONDS", self.poll_interval.as_secs().to_string()),
            (
                "MAINTENANCE_INTERVAL_SECONDS",
                self.maintenance_interval.as_secs().to_string(),
            ),
            (
                "ARTIFACT_RETENTION_DAYS",
                self.artifact_retention_days.to_string(),
            ),
            (
                "AUDIT_RETENTION_DAYS",
                self.audit_retention_days.to_string(),
            ),
            ("SMTP_URL", redact_url(self.smtp_url.expose())),
            ("MAIL_FROM", self.mail_from.clone()),
            ("PUBLIC_URL", self.public_url.clone()),
            (
                "OPENTELEMETRY_ENDPOINT",
                self.otel_endpoint.clone().unwrap_or_default(),
            ),
            ("TRACE_SAMPLE_RATIO", self.trace_sample_ratio.to_string()),
            ("LOG_LEVEL", self.log_level.clone()),
            (
                "LOG_FORMAT",
                format!("{:?}", self.log_format).to_lowercase(),
            ),
        ]
    }
}

/// Replaces the password of a URL with `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "***".into(),
    }
}

fn read_env_file(path: &Path) -> Result<HashMap<String, String>, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![format!(
            "--env-file: cannot read {} ({e})",
            path.display()
        )])
    })?;
    Ok(parse_env_file(&text))
}

/// Parses the `KEY=VALUE` lines of an env file.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://api:pw@db/gw"),
        ("REDIS_URL", "redis://redis:6379/0"),
        ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
    ];

    #[test]
    fn defaults_apply() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.bind.to_string(), "0.0.0.0:8000");
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert!(c.require_email_verification);
    }

    #[test]
    fn telemetry_settings_are_validated_and_default_to_metrics_without_traces() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        assert_eq!(c.otel_endpoint, None);
        assert_eq!(c.trace_sample_ratio, 1.0);
        assert!(c.metrics_enabled && !c.metrics_tenant_labels);
        let mut bad = BASE.to_vec();
        bad.extend([
            ("OPENTELEMETRY_ENDPOINT", "otelcol:4318"),
            ("TRACE_SAMPLE_RATIO", "1.5"),
            ("METRICS_ENABLED", "maybe"),
        ]);
        let text = Config::from_vars(&vars(&bad)).unwrap_err().to_string();
        for var in [
            "OPENTELEMETRY_ENDPOINT",
            "TRACE_SAMPLE_RATIO",
            "METRICS_ENABLED",
        ] {
            assert!(
                text.contains(&format!("{var}:")),
                "{var} missing from:\n{text}"
            );
        }
        // The worker reads the same two trace settings, with the same checks.
        let worker = WorkerConfig::from_vars(&vars(&[
            ("DATABASE_URL", "postgres://w:pw@db/gw"),
            ("SMTP_URL", "smtp://127.0.0.1:2525"),
            ("TRACE_SAMPLE_RATIO", "-0.1"),
        ]))
        .unwrap_err();
        assert!(
            worker.to_string().contains("TRACE_SAMPLE_RATIO:"),
            "{worker}"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_variable() {
        let e = Config::from_vars(&vars(&[
            ("GHOSTWORKS_ENV", "production"),
            ("JWT_SECRET_KEY", "short"),
            ("COOKIE_SECURE", "false"),
            ("LOG_LEVEL", "debug"),
        ]))
        .unwrap_err();
        let text = e.to_string();
        for var in [
            "DATABASE_URL",
            "REDIS_URL",
            "JWT_SECRET_KEY",
            "COOKIE_SECURE",
            "LOG_LEVEL",
        ] {
            assert!(
                text.contains(&format!("{var}:")),
                "{var} missing from:\n{text}"
            );
        }
    }

    #[test]
    fn production_rejects_example_secrets() {
        let mut v = vars(BASE);
        v.insert("GHOSTWORKS_ENV".into(), "production".into());
        v.insert(
            "JWT_SECRET_KEY".into(),
            "your-secret-key-change-in-production-please".into(),
        );
        let e = Config::from_vars(&v).unwrap_err();
        assert!(
            e.0[0].starts_with("JWT_SECRET_KEY: looks like an example"),
            "{e}"
        );
    }

    #[test]
    fn secrets_come_from_files() {
        let dir = std::env::temp_dir().join(format!("gw-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("jwt");
        std::fs::write(&f, "from-a-file-0123456789abcdef0123456789\n").unwrap();
        let mut v = vars(&BASE[..2]);
        v.insert("JWT_SECRET_KEY_FILE".into(), f.display().to_string());
        assert_eq!(
            Config::from_vars(&v).unwrap().jwt_secret.expose(),
            "from-a-file-0123456789abcdef0123456789"
        );
        v.insert("JWT_SECRET_KEY".into(), "both".into());
        assert!(Config::from_vars(&v)
            .unwrap_err()
            .to_string()
            .contains("not both"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn redaction_hides_passwords() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        let text = format!("{:?} {:?}", c, c.redacted());
        assert!(
            !text.contains("pw@") && !text.contains("0123456789abcdef"),
            "{text}"
        );
        assert!(text.contains("postgres://api:***@db/gw"));
    }

    const WORKER: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://worker:pw@db/gw"),
        ("SMTP_URL", "smtp://mailer:hunter2@127.0.0.1:2525"),
    ];

    #[test]
    fn worker_defaults_apply_in_development() {
        let c = WorkerConfig::from_vars(&vars(WORKER)).unwrap();
        assert_eq!(c.bind.to_string(), "0.0.0.0:8001");
        assert_eq!((c.concurrency, c.lease), (8, Duration::from_secs(60)));
        assert_eq!(
            (c.artifact_retention_days, c.audit_retention_days),
            (30, 365)
        );
        assert_eq!(c.maintenance_interval, Duration::from_secs(3600));
        assert_eq!(c.public_url, "http://127.0.0.1:8000");
        let text = format!("{c:?} {:?}", c.redacted());
        assert!(!text.contains("hunter2") && !text.contains("pw@"), "{text}");
    }

    #[test]
    fn worker_limits_and_production_rules() {
        let mut v = vars(WORKER);
        for (k, val) in [
            ("WORKER_CONCURRENCY", "0"),
            ("JOB_LEASE_SECONDS", "1"),
            ("ARTIFACT_RETENTION_DAYS", "3651"),
            ("MAIL_FROM", "not a mailbox"),
        ] {
            v.insert(k.into(), val.into());
        }
        let text = WorkerConfig::from_vars(&v).unwrap_err().to_string();
        for var in [
            "WORKER_CONCURRENCY: must be between 1 and 256",
            "JOB_LEASE_SECONDS: must be between 2 and 3600",
            "ARTIFACT_RETENTION_DAYS: must be between 1 and 3650",
            "MAIL_FROM:",
        ] {
            assert!(text.contains(var), "{var} missing from:\n{text}");
        }

        let mut prod = vars(WORKER);
        prod.insert("GHOSTWORKS_ENV".into(), "production".into());
        prod.insert("SMTP_URL".into(), "smtp://relay.example.com:25".into());
        let text = WorkerConfig::from_vars(&prod).unwrap_err().to_string();
        for var in [
            "SMTP_URL: production mail must use TLS",
            "PUBLIC_URL: missing",
            "MAIL_FROM: set the sender",
        ] {
            assert!(text.contains(var), "{var} missing from:\n{text}");
        }
        prod.insert(
            "SMTP_URL".into(),
            "smtp://relay.example.com:587?tls=required".into(),
        );
        prod.insert("PUBLIC_URL".into(), "https://app.example.com/".into());
        prod.insert(
            "MAIL_FROM".into(),
            "Ghostworks <no-reply@example.com>".into(),
        );
        let c = WorkerConfig::from_vars(&prod).unwrap();
        assert_eq!(c.public_url, "https://app.example.com");
        prod.insert("PUBLIC_URL".into(), "http://app.example.com".into());
        assert!(
            WorkerConfig::from_vars(&prod).is_err(),
            "plain http links in production"
        );
        prod.remove("SMTP_URL");
        assert!(WorkerConfig::from_vars(&prod)
            .unwrap_err()
            .to_string()
            .contains("SMTP_URL: missing"));
    }

    #[test]
    fn loopback_relays_are_recognised_in_any_scheme() {
        for (u, expected) in [
            ("smtp://127.0.0.1:2525", true),
            ("smtp://localhost:25", true),
            ("smtp://[::1]:25", true),
            ("smtp://10.0.0.5:25", false),
            ("smtp://mail.example.com:25", false),
        ] {
            assert_eq!(
                is_loopback_host(&url::Url::parse(u).unwrap()),
                expected,
                "{u}"
            );
        }
    }

    #[test]
    fn env_files_parse() {
        let m = parse_env_file("# c\nA=1\nexport B=\"two words\"\n\nC='x'\n");
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
    }
}
