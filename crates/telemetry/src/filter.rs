//! What the subscriber records at all: every event and span the log filter (LOG_LEVEL or
//! RUST_LOG) lets through, plus Ghostworks' own spans at info and above whatever the log level,
//! because the traces and the SQL/Redis timing histograms are built from them.

use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::{EnvFilter, Layer};

pub(crate) struct Enabled {
    logs: EnvFilter,
}

impl Enabled {
    pub(crate) fn new(logs: EnvFilter) -> Self {
        Self { logs }
    }
}

fn own_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("ghostworks") && *meta.level() <= Level::INFO
}

impl<S: Subscriber> Layer<S> for Enabled {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if own_span(meta) {
            Interest::always()
        } else {
            <EnvFilter as Layer<S>>::register_callsite(&self.logs, meta)
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        own_span(meta) || <EnvFilter as Layer<S>>::enabled(&self.logs, meta, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let logs =
            <EnvFilter as Layer<S>>::max_level_hint(&self.logs).unwrap_or(LevelFilter::TRACE);
        Some(logs.max(LevelFilter::INFO))
    }
}
