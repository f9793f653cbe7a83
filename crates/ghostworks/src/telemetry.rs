//! Logging: JSON lines (production) or human-readable (development), filtered by LOG_LEVEL.

use ghostworks_config::LogFormat;
use tracing_subscriber::EnvFilter;

pub fn init(level: &str, format: LogFormat) {
    // Dependencies stay at warn unless asked for explicitly through RUST_LOG.
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "warn,ghostworks={level},ghostworks_api={level},ghostworks_db={level},ghostworks_worker={level},access={level}"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// For commands that need no full configuration (migrate, seed).
pub fn init_from_env() {
    let level = std::env::var("LOG_LEVEL")
        .unwrap_or_else(|_| "info".into())
        .to_lowercase();
    let format = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => LogFormat::Json,
        _ => LogFormat::Pretty,
    };
    init(&level, format);
}
