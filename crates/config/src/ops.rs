//! What the operator's commands read besides the [`Common`](crate::Common) section: the schema
//! owner's login, the worker's (for `jobs`), the S3 credentials of backups, who runs a deploy,
//! and where `healthcheck` probes. Each is read when a command asks for it, so a command fails
//! only on the settings it uses.

use std::collections::HashMap;

use crate::reader::Reader;
use crate::{ConfigErrors, Secret};

/// The environment of an operator's command.
pub struct OpsConfig {
    vars: HashMap<String, String>,
}

impl OpsConfig {
    pub fn from_env() -> Self {
        Self::from_vars(crate::process_vars())
    }

    pub fn from_vars(vars: HashMap<String, String>) -> Self {
        Self { vars }
    }

    /// The common section, read leniently (see [`crate::Common::lenient`]).
    pub fn common(&self) -> crate::Common {
        crate::Common::lenient(&self.vars)
    }

    /// The schema owner's connection (`DATABASE_ADMIN_URL`, else `DATABASE_URL`), for
    /// `migrate`, `seed`, backups and tenant moves.
    pub fn admin_database_url(&self) -> Result<Secret, ConfigErrors> {
        let mut r = Reader::new(&self.vars);
        let url = r
            .secret("DATABASE_ADMIN_URL")
            .or_else(|| r.secret("DATABASE_URL"));
        match url {
            Some(u) => {
                r.postgres_url("DATABASE_ADMIN_URL", &u);
                r.finish(|| u)
            }
            None if !r.errors.is_empty() => Err(ConfigErrors(r.errors)),
            None => Err(ConfigErrors(vec![
                "DATABASE_ADMIN_URL: missing; set DATABASE_ADMIN_URL (the schema owner) or DATABASE_URL (or their _FILE forms)".into(),
            ])),
        }
    }

    /// The schema owner's connection when one is configured: a compose deploy needs it only
    /// to back up.
    pub fn optional_admin_database_url(&self) -> Result<Option<Secret>, ConfigErrors> {
        let r = Reader::new(&self.vars);
        let set = [
            "DATABASE_ADMIN_URL",
            "DATABASE_ADMIN_URL_FILE",
            "DATABASE_URL",
            "DATABASE_URL_FILE",
        ]
        .iter()
        .any(|v| r.raw(v).is_some());
        set.then(|| self.admin_database_url()).transpose()
    }

    /// Just the worker's `DATABASE_URL`, for `ghostworks jobs`, which needs nothing else.
    pub fn worker_database_url(&self) -> Result<Secret, ConfigErrors> {
        let mut r = Reader::new(&self.vars);
        let url = r.required_secret(
            "DATABASE_URL",
            "the worker's login (a member of ghostworks_worker)",
        );
        r.postgres_url("DATABASE_URL", &url);
        r.finish(|| url)
    }

    /// The S3 credentials of backups on S3-compatible storage.
    pub fn s3(&self) -> S3Settings {
        S3Settings::from_vars(&self.vars)
    }

    /// The settings of `ghostworks pitr` (continuous archiving with pgBackRest).
    pub fn pitr(&self) -> Result<crate::PitrSettings, ConfigErrors> {
        crate::PitrSettings::from_vars(&self.vars)
    }

    /// `/health` on the port of GHOSTWORKS_BIND (8000 when unset), on loopback.
    pub fn api_health_url(&self) -> String {
        let port = Reader::new(&self.vars)
            .raw("GHOSTWORKS_BIND")
            .and_then(|b| b.rsplit(':').next().map(String::from))
            .unwrap_or_else(|| "8000".into());
        format!("http://127.0.0.1:{port}/health")
    }
}

/// The standard AWS variables, for backups to an `s3://` location. Each is optional here: only
/// a backup that goes to S3 requires the key, and says so.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// AWS_ACCESS_KEY_ID
    pub access_key_id: Option<String>,
    /// AWS_SECRET_ACCESS_KEY
    pub secret_access_key: Option<Secret>,
    /// AWS_SESSION_TOKEN, for temporary credentials.
    pub session_token: Option<Secret>,
    /// AWS_REGION
    pub region: Option<String>,
    /// AWS_ENDPOINT_URL: an S3-compatible server other than AWS.
    pub endpoint: Option<String>,
}

impl S3Settings {
    pub fn from_vars(vars: &HashMap<String, String>) -> Self {
        let r = Reader::new(vars);
        S3Settings {
            access_key_id: r.raw("AWS_ACCESS_KEY_ID"),
            secret_access_key: r.raw("AWS_SECRET_ACCESS_KEY").map(Secret::new),
            session_token: r.raw("AWS_SESSION_TOKEN").map(Secret::new),
            region: r.raw("AWS_REGION"),
            endpoint: r.raw("AWS_ENDPOINT_URL"),
        }
    }

    pub fn from_env() -> Self {
        Self::from_vars(&crate::process_vars())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(pairs: &[(&str, &str)]) -> OpsConfig {
        OpsConfig::from_vars(crate::tests::vars(pairs))
    }

    #[test]
    fn the_admin_url_falls_back_to_database_url_and_is_optional_for_deploys() {
        let none = ops(&[]);
        assert!(none.optional_admin_database_url().unwrap().is_none());
        assert!(none
            .admin_database_url()
            .unwrap_err()
            .to_string()
            .starts_with("DATABASE_ADMIN_URL: missing"));
        let api = ops(&[("DATABASE_URL", "postgres://o:pw@db/gw")]);
        assert_eq!(
            api.optional_admin_database_url().unwrap().unwrap().expose(),
            "postgres://o:pw@db/gw"
        );
        let bad = ops(&[("DATABASE_ADMIN_URL", "mysql://o@db/gw")]);
        assert!(bad.optional_admin_database_url().is_err());
    }

    #[test]
    fn the_health_probe_follows_the_api_port() {
        assert_eq!(ops(&[]).api_health_url(), "http://127.0.0.1:8000/health");
        assert_eq!(
            ops(&[("GHOSTWORKS_BIND", "0.0.0.0:9100")]).api_health_url(),
            "http://127.0.0.1:9100/health"
        );
    }
}
