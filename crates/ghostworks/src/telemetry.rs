//! The telemetry of each command, from its configuration (see crates/telemetry).

use ghostworks_config::{Config, LogFormat, WebConfig, WorkerConfig};
use ghostworks_telemetry::{Format, Guard, Settings};

fn format(f: LogFormat) -> Format {
    match f {
        LogFormat::Json => Format::Json,
        LogFormat::Pretty => Format::Pretty,
    }
}

pub fn api(c: &Config) -> Guard {
    ghostworks_telemetry::init(Settings {
        service: "ghostworks-api",
        environment: c.environment.as_str(),
        level: &c.log_level,
        format: format(c.log_format),
        otlp_endpoint: c.otel_endpoint.as_deref(),
        sample_ratio: c.trace_sample_ratio,
    })
}

pub fn worker(c: &WorkerConfig) -> Guard {
    ghostworks_telemetry::init(Settings {
        service: "ghostworks-worker",
        environment: c.environment.as_str(),
        level: &c.log_level,
        format: format(c.log_format),
        otlp_endpoint: c.otel_endpoint.as_deref(),
        sample_ratio: c.trace_sample_ratio,
    })
}

pub fn web(c: &WebConfig) -> Guard {
    ghostworks_telemetry::init(Settings {
        service: "ghostworks-web",
        environment: c.environment.as_str(),
        level: &c.log_level,
        format: format(c.log_format),
        otlp_endpoint: c.otel_endpoint.as_deref(),
        sample_ratio: c.trace_sample_ratio,
    })
}

/// Logs only, for commands that need no full configuration (migrate, seed, jobs), from
/// LOG_LEVEL and LOG_FORMAT.
pub fn logs_from_env(service: &'static str) -> Guard {
    let level = std::env::var("LOG_LEVEL")
        .unwrap_or_else(|_| "info".into())
        .to_lowercase();
    let format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => Format::Json,
        _ => Format::Pretty,
    };
    logs(service, &level, format)
}

pub fn logs(service: &'static str, level: &str, format: Format) -> Guard {
    ghostworks_telemetry::init(Settings {
        service,
        environment: "development",
        level,
        format,
        otlp_endpoint: None,
        sample_ratio: 0.0,
    })
}
