//! The section every role shares: which environment this is, how it logs, and where its traces
//! go. One reading, one set of rules: the API, the worker, the web app and the operator's
//! commands all agree on, say, the log format an unset LOG_FORMAT means.

use std::collections::HashMap;

use crate::reader::{range, Reader};
use crate::ConfigErrors;

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

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        }
    }
}

/// GHOSTWORKS_ENV, LOG_LEVEL, LOG_FORMAT, OPENTELEMETRY_ENDPOINT and TRACE_SAMPLE_RATIO.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    pub environment: Environment,
    /// error, warn, info, debug or trace: the level of Ghostworks' own crates.
    pub log_level: String,
    /// JSON lines unless set, except in development, where logs are read by people.
    pub log_format: LogFormat,
    /// The collector's OTLP/HTTP base URL (traces are exported only when set).
    pub otel_endpoint: Option<String>,
    pub trace_sample_ratio: f64,
}

impl Common {
    /// The section for commands that need nothing else (migrate, seed, backup, deploy, ...).
    /// A value that does not validate falls back as a role's would, but stops nothing: these
    /// commands only log, and an operator's repair must not fail on a log setting. (An unset
    /// GHOSTWORKS_ENV reads as development here; `seed` refuses production on its own.)
    pub fn lenient(vars: &HashMap<String, String>) -> Self {
        Self::read(&mut Reader::new(vars))
    }

    /// The section alone, with every problem reported.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigErrors> {
        let mut r = Reader::new(vars);
        let common = Self::read(&mut r);
        r.finish(|| common)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Self {
        let environment = environment(r);
        let (otel_endpoint, trace_sample_ratio) = traces(r);
        let (log_level, log_format) = logging(r, environment);
        Common {
            environment,
            log_level,
            log_format,
            otel_endpoint,
            trace_sample_ratio,
        }
    }

    pub fn production(&self) -> bool {
        self.environment == Environment::Production
    }

    pub fn development(&self) -> bool {
        self.environment == Environment::Development
    }

    /// GHOSTWORKS_ENV, first in every role's `config check`.
    pub(crate) fn redacted_head(&self) -> Vec<(&'static str, String)> {
        vec![("GHOSTWORKS_ENV", self.environment.as_str().into())]
    }

    /// The telemetry and log settings, last in every role's `config check`.
    pub(crate) fn redacted_tail(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "OPENTELEMETRY_ENDPOINT",
                self.otel_endpoint.clone().unwrap_or_default(),
            ),
            ("TRACE_SAMPLE_RATIO", self.trace_sample_ratio.to_string()),
            ("LOG_LEVEL", self.log_level.clone()),
            ("LOG_FORMAT", self.log_format.as_str().into()),
        ]
    }
}

/// Required: development relaxes key lengths, cookies and demo accounts, so a deployment that
/// forgot the variable must not get it by default. `ghostworks dev` and the tests set it.
fn environment(r: &mut Reader<'_>) -> Environment {
    match r.raw("GHOSTWORKS_ENV").as_deref() {
        None => {
            r.error("GHOSTWORKS_ENV: missing; set GHOSTWORKS_ENV=production (or staging; development only on a developer's machine, as `ghostworks dev` does)");
            Environment::Development
        }
        Some("development") => Environment::Development,
        Some("staging") => Environment::Staging,
        Some("production") => Environment::Production,
        Some(other) => {
            r.error(format!("GHOSTWORKS_ENV: '{other}' is not valid; expected development, staging or production"));
            Environment::Development
        }
    }
}

/// The schema owner's login (DATABASE_ADMIN_URL or its _FILE form) in the environment of the
/// api, the worker or the web app. It bypasses row-level security, and no role uses it: only
/// `migrate` and the operator's commands do, from their own environment. Refused in
/// production, so a role's environment that carries it fails `config check` and never starts.
pub(crate) fn no_owner_login(r: &mut Reader<'_>, environment: Environment) {
    if environment != Environment::Production {
        return;
    }
    for var in ["DATABASE_ADMIN_URL", "DATABASE_ADMIN_URL_FILE"] {
        if r.raw(var).is_some() {
            r.error(format!(
                "{var}: the schema owner's login must not be in a role's environment in \
                 production (it bypasses row-level security); remove {var} from the role's \
                 environment or env file: only `ghostworks migrate` and the operator's commands \
                 use it, from their own environment"
            ));
        }
    }
}

fn logging(r: &mut Reader<'_>, environment: Environment) -> (String, LogFormat) {
    let log_level = r
        .raw("LOG_LEVEL")
        .map(|v| v.to_ascii_lowercase())
        .unwrap_or_else(|| "info".into());
    if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
        r.error(format!(
            "LOG_LEVEL: '{log_level}' is not valid; expected error, warn, info, debug or trace"
        ));
    }
    if environment == Environment::Production && (log_level == "debug" || log_level == "trace") {
        r.error("LOG_LEVEL: debug and trace are not allowed in production; use info");
    }
    let log_format = match r.raw("LOG_FORMAT").as_deref() {
        None if environment == Environment::Development => LogFormat::Pretty,
        None | Some("json") => LogFormat::Json,
        Some("pretty") => LogFormat::Pretty,
        Some(other) => {
            r.error(format!(
                "LOG_FORMAT: '{other}' is not valid; expected json or pretty"
            ));
            LogFormat::Json
        }
    };
    (log_level, log_format)
}

/// Where traces go (OTLP over HTTP) and the share of new traces recorded.
fn traces(r: &mut Reader<'_>) -> (Option<String>, f64) {
    let endpoint = r.raw("OPENTELEMETRY_ENDPOINT");
    if let Some(e) = &endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            r.error(format!("OPENTELEMETRY_ENDPOINT: '{e}' must be the collector's OTLP/HTTP URL, such as http://otelcol:4318"));
        }
    }
    let ratio = r.bounded(
        "TRACE_SAMPLE_RATIO",
        1.0f64,
        range(0.0, 1.0, "").because("e.g. 0.1 records one new trace in ten"),
    );
    (endpoint, ratio)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::vars;

    #[test]
    fn an_unset_log_format_is_pretty_in_development_only() {
        assert_eq!(Common::lenient(&vars(&[])).log_format, LogFormat::Pretty);
        for env in ["staging", "production"] {
            let c = Common::lenient(&vars(&[("GHOSTWORKS_ENV", env)]));
            assert_eq!(c.log_format, LogFormat::Json, "{env}");
        }
    }

    #[test]
    fn an_unset_environment_is_refused_with_the_fix() {
        for unset in [vars(&[]), vars(&[("GHOSTWORKS_ENV", " ")])] {
            let e = Common::from_vars(&unset).unwrap_err().to_string();
            assert!(
                e.starts_with("GHOSTWORKS_ENV: missing; set GHOSTWORKS_ENV=production"),
                "{e}"
            );
        }
        let explicit = Common::from_vars(&vars(&[("GHOSTWORKS_ENV", "development")])).unwrap();
        assert!(explicit.development());
    }

    #[test]
    fn the_lenient_reading_falls_back_where_the_strict_one_reports() {
        let odd = vars(&[("GHOSTWORKS_ENV", "test"), ("LOG_FORMAT", "xml")]);
        let e = Common::from_vars(&odd).unwrap_err().to_string();
        assert!(
            e.contains("GHOSTWORKS_ENV:") && e.contains("LOG_FORMAT:"),
            "{e}"
        );
        let c = Common::lenient(&odd);
        assert_eq!(
            (c.environment, c.log_format),
            (Environment::Development, LogFormat::Json)
        );
    }
}
