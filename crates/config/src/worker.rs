//! The worker's configuration (`ghostworks worker`, and the worker `ghostworks dev` runs).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::reader::{range, Reader};
use crate::{redact_url, Common, ConfigErrors, Environment, Secret};

/// It is separate from [`Config`](crate::Config) because the worker needs none of the API's
/// secrets (JWT key, Redis) and the API none of the worker's (SMTP credentials): each process
/// gets only its own.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub common: Common,
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
}

const DEV_PUBLIC_URL: &str = "http://127.0.0.1:8000";
const DEFAULT_MAIL_FROM: &str = "Ghostworks <no-reply@localhost>";

crate::env_sources!(WorkerConfig);

impl WorkerConfig {
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(vars);
        let common = Common::read(&mut r);
        let bind = r.parse(
            "WORKER_BIND",
            SocketAddr::from(([0, 0, 0, 0], 8001)),
            "an address such as 0.0.0.0:8001",
        );
        let database_url = r.required_secret(
            "DATABASE_URL",
            "the worker's own login, e.g. postgres://ghostworks_worker_login:PASSWORD@localhost:5432/ghostworks",
        );
        r.postgres_url("DATABASE_URL", &database_url);
        crate::common::no_owner_login(&mut r, common.environment);
        let concurrency = r.bounded("WORKER_CONCURRENCY", 8usize, range(1, 256, "jobs"));
        let lease = r.bounded("JOB_LEASE_SECONDS", 60, range(2, 3600, "seconds"));
        let poll = r.bounded("JOB_POLL_SECONDS", 5, range(1, 300, "seconds"));
        let maintenance = r.bounded(
            "MAINTENANCE_INTERVAL_SECONDS",
            3600,
            range(1, 86_400, "seconds"),
        );
        let artifact_retention_days =
            r.bounded("ARTIFACT_RETENTION_DAYS", 30, range(1, 3650, "days"));
        let audit_retention_days = r.bounded("AUDIT_RETENTION_DAYS", 365, range(1, 3650, "days"));
        let smtp_url = smtp_url(&mut r, common.environment);
        let mail_from = mail_from(&mut r, common.development());
        let public_url = public_url(&mut r, common.environment);
        r.finish(|| WorkerConfig {
            common,
            bind,
            database_url,
            concurrency,
            lease: Duration::from_secs(lease),
            poll_interval: Duration::from_secs(poll),
            maintenance_interval: Duration::from_secs(maintenance),
            artifact_retention_days,
            audit_retention_days,
            smtp_url,
            mail_from,
            public_url,
        })
    }

    /// The effective configuration as `NAME=value` lines, secrets redacted.
    pub fn redacted(&self) -> Vec<(&'static str, String)> {
        let secs = |d: Duration| d.as_secs().to_string();
        let mut lines = self.common.redacted_head();
        lines.extend([
            ("WORKER_BIND", self.bind.to_string()),
            ("DATABASE_URL", redact_url(self.database_url.expose())),
            ("WORKER_CONCURRENCY", self.concurrency.to_string()),
            ("JOB_LEASE_SECONDS", secs(self.lease)),
            ("JOB_POLL_SECONDS", secs(self.poll_interval)),
            (
                "MAINTENANCE_INTERVAL_SECONDS",
                secs(self.maintenance_interval),
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
        ]);
        lines.extend(self.common.redacted_tail());
        lines
    }
}

/// SMTP_URL: smtp:// or smtps://, and in production over TLS unless the relay is on loopback.
fn smtp_url(r: &mut Reader<'_>, environment: Environment) -> Secret {
    let url = r.required_secret(
        "SMTP_URL",
        "the mail relay, e.g. smtps://USER:PASSWORD@smtp.example.com or smtp://127.0.0.1:2525",
    );
    if url.expose().is_empty() {
        return url;
    }
    match url::Url::parse(url.expose()) {
        Ok(u) if u.scheme() == "smtp" || u.scheme() == "smtps" => {
            let tls = u.scheme() == "smtps"
                || u.query_pairs().any(|(k, v)| k == "tls" && v == "required");
            if environment == Environment::Production && !tls && !is_loopback_host(&u) {
                r.error("SMTP_URL: production mail must use TLS: smtps://, or smtp://…?tls=required for STARTTLS (plain smtp:// only to a relay on loopback)");
            }
        }
        _ => r.error("SMTP_URL: must be an smtp:// or smtps:// URL such as smtp://127.0.0.1:2525"),
    }
    url
}

fn mail_from(r: &mut Reader<'_>, development: bool) -> String {
    let mail_from = r
        .raw("MAIL_FROM")
        .unwrap_or_else(|| DEFAULT_MAIL_FROM.into());
    if !valid_mailbox(&mail_from) {
        r.error(format!("MAIL_FROM: '{mail_from}' is not a mailbox; expected an address such as Ghostworks <no-reply@example.com>"));
    } else if !development && mail_from.contains("@localhost") {
        r.error("MAIL_FROM: set the sender address outside development (e.g. Ghostworks <no-reply@your-domain>)");
    }
    mail_from
}

/// PUBLIC_URL: the web app e-mail links lead to; https in production.
fn public_url(r: &mut Reader<'_>, environment: Environment) -> String {
    let public_url = match r.raw("PUBLIC_URL") {
        Some(u) => u.trim_end_matches('/').to_string(),
        None if environment == Environment::Development => DEV_PUBLIC_URL.into(),
        None => {
            r.error("PUBLIC_URL: missing; set the address of the web app that e-mail links point to, e.g. https://app.example.com");
            return String::new();
        }
    };
    let production = environment == Environment::Production;
    match url::Url::parse(&public_url) {
        Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && !production) => {
            if u.query().is_some() || u.fragment().is_some() {
                r.error("PUBLIC_URL: must not carry a query or fragment");
            }
        }
        Ok(_) if production => r.error("PUBLIC_URL: must be an https:// URL in production"),
        _ => r.error(format!(
            "PUBLIC_URL: '{public_url}' must be an http(s) URL such as https://app.example.com"
        )),
    }
    public_url
}

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

pub(crate) fn is_loopback_host(url: &url::Url) -> bool {
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
