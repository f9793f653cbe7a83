//! The one configuration of every Ghostworks role, read from the environment (12-factor) and
//! validated before anything starts. Secrets also come from `NAME_FILE` paths, as Docker and
//! Kubernetes mount them. Problems are collected, not thrown one at a time, so an operator
//! fixes a broken deployment in one pass.
//!
//! This is the only crate that reads the environment: every other crate receives typed values.
//! Each role's configuration embeds the [`Common`] section; the operator's commands read just
//! what they need ([`OpsConfig`]).

use std::fmt;

pub use api::{AccountLimits, Config, SameSite};
pub use common::{Common, Environment, LogFormat};
pub use env_file::{parse_env_file, read_env_file};
pub use ops::{OpsConfig, S3Settings};
pub use pitr::{Cipher, PitrSettings};
pub use process::{invoking_user, process_vars, search_path};
pub use proxies::TrustedProxies;
pub use web::WebConfig;
pub use worker::WorkerConfig;

mod api;
mod common;
mod env_file;
mod ops;
mod pitr;
mod process;
mod proxies;
mod reader;
mod web;
mod worker;

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

/// `from_env` (the process environment) and `from_env_file` (an env file, on top of nothing
/// else: the file alone must be a complete configuration) for a type with `from_vars`.
macro_rules! env_sources {
    ($t:ty) => {
        impl $t {
            pub fn from_env() -> Result<Self, $crate::ConfigErrors> {
                Self::from_vars(&$crate::process_vars())
            }

            pub fn from_env_file(path: &std::path::Path) -> Result<Self, $crate::ConfigErrors> {
                Self::from_vars(&$crate::read_env_file(path)?)
            }
        }
    };
}
pub(crate) use env_sources;

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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    pub(crate) fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("GHOSTWORKS_ENV", "development"),
        ("DATABASE_URL", "postgres://api:pw@db/gw"),
        ("REDIS_URL", "redis://redis:6379/0"),
        ("JWT_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
    ];

    #[test]
    fn defaults_apply() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        assert_eq!(c.common.environment, Environment::Development);
        assert_eq!(c.bind.to_string(), "0.0.0.0:8000");
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert!(c.require_email_verification);
    }

    #[test]
    fn faults_are_injected_only_by_development_builds_in_development() {
        let faulty = |env: &str| {
            let mut v = vars(BASE);
            v.insert("GHOSTWORKS_ENV".into(), env.into());
            v.insert("GHOSTWORKS_FAULT_ERROR_RATIO".into(), "0.05".into());
            v.insert("GHOSTWORKS_FAULT_LATENCY_MS".into(), "40".into());
            v.insert("GHOSTWORKS_FAULT_BALLAST_MIB".into(), "300".into());
            Config::from_vars(&v)
                .map(|c| (c.fault_error_ratio, c.fault_latency, c.fault_ballast_mib))
        };
        // `cargo test --release` runs this against the release build's configuration, which
        // has no fault settings to read.
        let dev = faulty("development").unwrap();
        if cfg!(debug_assertions) {
            assert_eq!(
                dev,
                (Some(0.05), Some(Duration::from_millis(40)), Some(300))
            );
        } else {
            assert_eq!(dev, (None, None, None));
        }
        assert_eq!(faulty("staging").unwrap(), (None, None, None));
    }

    #[test]
    fn telemetry_settings_are_validated_and_default_to_metrics_without_traces() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        assert_eq!(c.common.otel_endpoint, None);
        assert_eq!(c.common.trace_sample_ratio, 1.0);
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
            ("GHOSTWORKS_ENV", "development"),
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
    fn the_search_bulkhead_leaves_connections_to_other_requests() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        assert_eq!(c.search_concurrency, 5);
        assert_eq!(c.search_timeout, Duration::from_secs(2));
        let mut bad = BASE.to_vec();
        bad.extend([
            ("DATABASE_POOL_SIZE", "4"),
            ("SEARCH_CONCURRENCY", "4"),
            ("SEARCH_TIMEOUT_MS", "0"),
        ]);
        let text = Config::from_vars(&vars(&bad)).unwrap_err().to_string();
        assert!(
            text.contains("SEARCH_CONCURRENCY: 4 must be below"),
            "{text}"
        );
        assert!(
            text.contains("SEARCH_TIMEOUT_MS: must be between"),
            "{text}"
        );
        let mut one = BASE.to_vec();
        one.push(("DATABASE_POOL_SIZE", "1"));
        assert_eq!(
            Config::from_vars(&vars(&one)).unwrap().search_concurrency,
            1
        );
    }

    #[test]
    fn the_read_replica_is_off_unless_set_and_must_be_another_server() {
        assert!(Config::from_vars(&vars(BASE))
            .unwrap()
            .database_replica_url
            .is_none());
        let mut on = BASE.to_vec();
        on.push(("DATABASE_REPLICA_URL", "postgres://api:pw@standby/gw"));
        let c = Config::from_vars(&vars(&on)).unwrap();
        assert_eq!(
            c.database_replica_url.unwrap().expose(),
            "postgres://api:pw@standby/gw"
        );
        for bad in ["mysql://api:pw@standby/gw", "postgres://api:pw@db/gw"] {
            let mut v = BASE.to_vec();
            v.push(("DATABASE_REPLICA_URL", bad));
            let text = Config::from_vars(&vars(&v)).unwrap_err().to_string();
            assert!(text.contains("DATABASE_REPLICA_URL:"), "{bad}: {text}");
        }
    }

    #[test]
    fn account_limits_are_range_checked() {
        let c = Config::from_vars(&vars(BASE)).unwrap();
        assert_eq!(c.accounts.login_max_failures, 5);
        assert_eq!(c.accounts.login_lockout, Duration::from_secs(900));
        assert_eq!(
            (
                c.accounts.invitations_per_inviter,
                c.accounts.invitations_per_address
            ),
            (20, 5)
        );
        for (var, bad) in [
            ("LOGIN_MAX_FAILURES", "0"),
            ("LOGIN_MAX_FAILURES", "101"),
            ("LOGIN_MAX_FAILURES", "-1"),
            ("LOGIN_LOCKOUT_SECONDS", "5"),
            ("INVITATIONS_PER_INVITER_PER_HOUR", "0"),
            ("INVITATIONS_PER_ADDRESS_PER_DAY", "1000"),
        ] {
            let mut v = BASE.to_vec();
            v.push((var, bad));
            let text = Config::from_vars(&vars(&v)).unwrap_err().to_string();
            assert!(text.contains(&format!("{var}: ")), "{var}={bad}: {text}");
        }
        let mut v = BASE.to_vec();
        v.push(("LOGIN_MAX_FAILURES", "0"));
        let text = Config::from_vars(&vars(&v)).unwrap_err().to_string();
        assert!(
            text.contains("LOGIN_MAX_FAILURES: must be between 1 and 100 failed logins; each one is a password guess"),
            "{text}"
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
        let mut v = vars(&BASE[..3]);
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

    #[test]
    fn production_roles_refuse_the_schema_owners_login() {
        let owner = ("DATABASE_ADMIN_URL", "postgres://owner:pw@db/gw");
        let owner_file = ("DATABASE_ADMIN_URL_FILE", "/run/secrets/database_admin_url");
        let role = |env: &str, extra: (&str, &str)| {
            let mut v = vars(BASE);
            v.extend(vars(&[
                ("GHOSTWORKS_ENV", env),
                ("SMTP_URL", "smtps://relay.example.com:465"),
                ("PUBLIC_URL", "https://app.example.com"),
                ("MAIL_FROM", "Ghostworks <no-reply@example.com>"),
                ("API_URL", "http://api:8000"),
                extra,
            ]));
            v
        };
        for extra in [owner, owner_file] {
            let v = role("production", extra);
            let errors = [
                Config::from_vars(&v).err(),
                WorkerConfig::from_vars(&v).err(),
                WebConfig::from_vars(&v).err(),
            ];
            for e in errors {
                let text = e.expect("refused").to_string();
                assert!(
                    text.contains(&format!(
                        "{}: the schema owner's login must not be",
                        extra.0
                    )) && text.contains(&format!("remove {}", extra.0)),
                    "{text}"
                );
            }
        }
        // Development keeps it (`ghostworks dev` migrates in the same process).
        let dev = role("development", owner);
        assert!(Config::from_vars(&dev).is_ok());
        assert!(WorkerConfig::from_vars(&dev).is_ok());
    }

    const WORKER: &[(&str, &str)] = &[
        ("GHOSTWORKS_ENV", "development"),
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
        use crate::worker::is_loopback_host;
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
}
