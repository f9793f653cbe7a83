//! The telemetry of each command, from the common section of its configuration (see
//! crates/telemetry).

use ghostworks_config::{Common, LogFormat};
use ghostworks_telemetry::{Format, Guard, Settings};

/// Logs and traces for a role (`serve`, `worker`, `web`), as `service`.
pub fn role(service: &'static str, c: &Common) -> Guard {
    init(service, c, c.otel_endpoint.as_deref())
}

/// Logs only, for the commands that do a job and exit (migrate, seed, backup, deploy, ...):
/// their work is not traced.
pub fn tool(service: &'static str, c: &Common) -> Guard {
    init(service, c, None)
}

fn init(service: &'static str, c: &Common, otlp_endpoint: Option<&str>) -> Guard {
    ghostworks_telemetry::init(Settings {
        service,
        environment: c.environment.as_str(),
        level: &c.log_level,
        format: match c.log_format {
            LogFormat::Json => Format::Json,
            LogFormat::Pretty => Format::Pretty,
        },
        otlp_endpoint,
        sample_ratio: c.trace_sample_ratio,
    })
}
