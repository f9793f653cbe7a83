//! Prometheus metrics, keeping the original's names and labels so its dashboards and alerts
//! keep working (with `endpoint` the route template instead of the raw path).

use ghostworks_telemetry::HttpMetrics;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http: HttpMetrics,
    pub http_in_progress: IntGaugeVec,
    pub http_response_size: HistogramVec,
    pub registrations: IntCounter,
    pub auth_attempts: IntCounterVec,
    pub artifacts_created: IntCounter,
    pub artifacts_updated: IntCounter,
    pub artifacts_deleted: IntCounter,
    pub workspace_operations: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub cross_tenant_denied: IntCounter,
    pub refresh_reuse: IntCounter,
    pub token_refreshes: IntCounter,
    pub lockouts: IntCounter,
    pub jobs_enqueued: IntCounterVec,
    /// Workspace reads that may run on the standby, by where they ran (`replica`, `primary`).
    pub db_reads: IntCounterVec,
    db_pool: IntGaugeVec,
    db_pool_max: IntGauge,
    dependencies: IntGaugeVec,
    pub dependency_errors: IntCounterVec,
    /// Requests per workspace, only when METRICS_TENANT_LABELS is on: one series per tenant.
    pub tenant_requests: Option<IntCounterVec>,
}

impl Metrics {
    pub fn new(tenant_labels: bool) -> Self {
        let registry = Registry::new();
        let http = HttpMetrics::new(&registry);
        let http_in_progress = IntGaugeVec::new(
            Opts::new("http_requests_in_progress", "HTTP requests being served"),
            &["method", "endpoint"],
        )
        .unwrap();
        let http_response_size = HistogramVec::new(
            HistogramOpts::new(
                "http_response_size_bytes",
                "HTTP response body size by route template",
            )
            .buckets(prometheus::exponential_buckets(64.0, 4.0, 9).unwrap()),
            &["method", "endpoint"],
        )
        .unwrap();
        let registrations =
            IntCounter::new("user_registrations_total", "Users registered").unwrap();
        let auth_attempts = IntCounterVec::new(
            Opts::new("authentication_attempts_total", "Login attempts by outcome"),
            &["success", "method"],
        )
        .unwrap();
        let artifacts_created =
            IntCounter::new("artifacts_created_total", "Artifacts created").unwrap();
        let artifacts_updated = IntCounter::new(
            "artifacts_updated_total",
            "Artifacts updated (PUT and PATCH)",
        )
        .unwrap();
        let artifacts_deleted =
            IntCounter::new("artifacts_deleted_total", "Artifacts deleted").unwrap();
        let workspace_operations = IntCounterVec::new(
            Opts::new("workspace_operations_total", "Workspace operations by kind"),
            &["operation"],
        )
        .unwrap();
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "rate_limited_requests_total",
                "Requests refused by a rate limit or an account lockout",
            ),
            &["bucket"],
        )
        .unwrap();
        let cross_tenant_denied = IntCounter::new(
            "cross_tenant_denied_total",
            "Requests for a workspace the caller is not a member of",
        )
        .unwrap();
        let refresh_reuse = IntCounter::new(
            "refresh_token_reuse_total",
            "Replayed refresh tokens (their sessions were revoked)",
        )
        .unwrap();
        let token_refreshes = IntCounter::new(
            "auth_token_refreshes_total",
            "Refresh tokens exchanged for new tokens",
        )
        .unwrap();
        let lockouts = IntCounter::new(
            "auth_account_lockouts_total",
            "Accounts locked after repeated failed logins",
        )
        .unwrap();
        let db_reads = IntCounterVec::new(
            Opts::new(
                "ghostworks_db_reads_total",
                "Read-only workspace requests by the server that served them (replica, primary)",
            ),
            &["target"],
        )
        .unwrap();
        let db_pool = IntGaugeVec::new(
            Opts::new(
                "ghostworks_db_pool_connections",
                "Database pool connections by state (idle, in_use), at scrape time",
            ),
            &["state"],
        )
        .unwrap();
        let db_pool_max = IntGauge::new(
            "ghostworks_db_pool_max_connections",
            "The database pool's size limit (DATABASE_POOL_SIZE)",
        )
        .unwrap();
        let dependencies = IntGaugeVec::new(
            Opts::new(
                "ghostworks_dependency_up",
                "Whether a dependency answered a ping at scrape time (1) or not (0)",
            ),
            &["dependency"],
        )
        .unwrap();
        let dependency_errors = IntCounterVec::new(
            Opts::new(
                "ghostworks_dependency_errors_total",
                "Requests answered 503 because a dependency was unavailable (each attempt)",
            ),
            &["dependency"],
        )
        .unwrap();
        let tenant_requests = tenant_labels.then(|| {
            IntCounterVec::new(
                Opts::new(
                    "ghostworks_tenant_requests_total",
                    "Workspace requests by workspace and status class",
                ),
                &["tenant_id", "status_class"],
            )
            .unwrap()
        });
        // The worker counts the jobs it queues under the same name: sum across processes.
        let jobs_enqueued = IntCounterVec::new(
            Opts::new("ghostworks_jobs_enqueued_total", "Jobs queued, by kind"),
            &["kind"],
        )
        .unwrap();
        let info = ghostworks_telemetry::build_info("ghostworks-api");
        for c in [
            Box::new(http_in_progress.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_response_size.clone()),
            Box::new(registrations.clone()),
            Box::new(auth_attempts.clone()),
            Box::new(artifacts_created.clone()),
            Box::new(artifacts_updated.clone()),
            Box::new(artifacts_deleted.clone()),
            Box::new(workspace_operations.clone()),
            Box::new(rate_limited.clone()),
            Box::new(cross_tenant_denied.clone()),
            Box::new(refresh_reuse.clone()),
            Box::new(token_refreshes.clone()),
            Box::new(lockouts.clone()),
            Box::new(jobs_enqueued.clone()),
            Box::new(db_reads.clone()),
            Box::new(db_pool.clone()),
            Box::new(db_pool_max.clone()),
            Box::new(dependencies.clone()),
            Box::new(dependency_errors.clone()),
            Box::new(ghostworks_telemetry::db_query_seconds().clone()),
            Box::new(ghostworks_telemetry::redis_command_seconds().clone()),
            Box::new(info),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        if let Some(t) = &tenant_requests {
            registry
                .register(Box::new(t.clone()))
                .expect("metric names are unique");
        }
        Self {
            registry,
            http,
            http_in_progress,
            http_response_size,
            registrations,
            auth_attempts,
            artifacts_created,
            artifacts_updated,
            artifacts_deleted,
            workspace_operations,
            rate_limited,
            cross_tenant_denied,
            refresh_reuse,
            token_refreshes,
            lockouts,
            jobs_enqueued,
            db_reads,
            db_pool,
            db_pool_max,
            dependencies,
            dependency_errors,
            tenant_requests,
        }
    }

    /// The counters the auth service moves (the same series as this registry's).
    pub fn auth_counters(&self) -> ghostworks_auth::Counters {
        ghostworks_auth::Counters {
            registrations: self.registrations.clone(),
            attempts: self.auth_attempts.clone(),
            rate_limited: self.rate_limited.clone(),
            lockouts: self.lockouts.clone(),
            refresh_reuse: self.refresh_reuse.clone(),
            token_refreshes: self.token_refreshes.clone(),
            jobs_enqueued: self.jobs_enqueued.clone(),
        }
    }

    /// Whether `name` answered: set by pings (readiness, scrapes) and cleared by a request
    /// that found it unavailable.
    pub fn dependency_up(&self, name: &str, up: bool) {
        self.dependencies
            .with_label_values(&[name])
            .set(i64::from(up));
    }

    /// The text exposition format, with the pool's gauges read now.
    pub fn render(&self, pool: &sqlx::PgPool) -> String {
        let (size, idle) = (i64::from(pool.size()), pool.num_idle() as i64);
        self.db_pool.with_label_values(&["idle"]).set(idle);
        self.db_pool.with_label_values(&["in_use"]).set(size - idle);
        self.db_pool_max
            .set(i64::from(pool.options().get_max_connections()));
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition format is UTF-8")
    }
}
