//! The benchmark dataset: workspaces with a Zipf-like size distribution, users with
//! memberships, artifacts with Zipf-distributed tags and descriptions drawn from a word list.
//! Everything derives from one seed, workspace by workspace, so the same flags always load
//! the same rows.
//!
//! Loaded with COPY in one transaction as a superuser: PostgreSQL refuses `COPY FROM` into a
//! table with row-level security for any role that is subject to it, and every tenant table
//! here forces it, so the schema owner alone (unless it is a superuser or BYPASSRLS) cannot.
//! The artifacts' secondary indexes are dropped for the load and rebuilt after it (several
//! times faster than maintaining four GIN indexes row by row); the transaction makes that
//! all-or-nothing.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, TimeZone, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// The password of every benchmark account (hashed once; the hash is shared).
pub const PASSWORD: &str = "Bench-pass-1";

/// The slug prefix of benchmark workspaces.
pub const SLUG_PREFIX: &str = "bench-";

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub workspaces: usize,
    pub artifacts: usize,
    /// Artifacts in the largest workspace.
    pub largest: usize,
    pub users: usize,
    pub seed: u64,
}

impl Spec {
    /// The target dataset: 1,000 workspaces, 1M artifacts (100k in the largest), 10k users.
    pub fn full() -> Self {
        Spec {
            workspaces: 1000,
            artifacts: 1_000_000,
            largest: 100_000,
            users: 10_000,
            seed: 42,
        }
    }
}

pub fn email(user: usize) -> String {
    format!("user{user}@bench.example.com")
}

/// Samples ranks 0..n with probability proportional to 1/(rank+1)^s.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += (k as f64).powf(-s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.gen();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// Workspace sizes, largest first: Zipf with the exponent that gives the largest workspace
/// `spec.largest` of the total (found by bisection), at least one artifact each, summing to
/// exactly `spec.artifacts`.
pub fn workspace_sizes(spec: &Spec) -> Vec<usize> {
    let (n, total) = (spec.workspaces, spec.artifacts);
    let share = (spec.largest as f64 / total as f64).max(1.0 / n as f64);
    let share_of = |s: f64| 1.0 / (1..=n).map(|k| (k as f64).powf(-s)).sum::<f64>();
    let (mut lo, mut hi) = (0.0, 4.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if share_of(mid) < share {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let h: f64 = (1..=n).map(|k| (k as f64).powf(-lo)).sum();
    let mut sizes: Vec<usize> = (1..=n)
        .map(|k| ((total as f64 * (k as f64).powf(-lo) / h) as usize).max(1))
        .collect();
    // Rounding leaves a remainder (or, with the minimum of one, an excess): settle it on the
    // largest workspace.
    let sum: usize = sizes.iter().sum();
    sizes[0] = (sizes[0] + total).saturating_sub(sum).max(1);
    sizes
}

#[rustfmt::skip]
pub const TAGS: &[&str] = &[
    "analytics", "dashboard", "api", "security", "report", "database", "migration", "ml",
    "pipeline", "frontend", "backend", "mobile", "design", "compliance", "audit", "finance",
    "marketing", "sales", "customer", "infrastructure", "kubernetes", "terraform", "monitoring",
    "logging", "metrics", "alerting", "docs", "onboarding", "hr", "legal", "contract", "invoice",
    "forecast", "budget", "roadmap", "research", "experiment", "prototype", "release", "qa",
    "testing", "automation", "cicd", "deployment", "cloud", "aws", "gcp", "azure", "network",
    "storage", "backup", "recovery", "incident", "postmortem", "runbook", "policy", "gdpr",
    "privacy", "identity", "auth", "sso", "payments", "billing", "pricing", "growth", "seo",
    "content", "video", "image", "dataset", "etl", "warehouse", "bi", "model", "training",
    "inference", "nlp", "vision", "search", "recommendation", "churn", "retention", "survey",
    "feedback", "support", "ticketing", "sla", "vendor", "procurement", "inventory", "logistics",
    "supply-chain", "manufacturing", "iot", "firmware", "hardware", "embedded", "ux", "ui",
    "accessibility", "localization", "i18n", "performance", "scalability", "cache", "queue",
    "streaming", "kafka", "graphql", "grpc", "rest", "sdk", "cli", "plugin", "integration",
    "partner", "webinar", "campaign", "newsletter", "brand", "legacy", "archive", "draft",
];

/// Description vocabulary, roughly by frequency (the Zipf sampler favours the front).
#[rustfmt::skip]
pub const WORDS: &[&str] = &[
    "the", "data", "team", "service", "customer", "report", "system", "new", "model", "update",
    "process", "quarterly", "analysis", "review", "project", "platform", "user", "design",
    "pipeline", "release", "security", "performance", "dashboard", "integration", "migration",
    "cloud", "network", "storage", "policy", "summary", "revenue", "growth", "budget", "forecast",
    "infrastructure", "deployment", "monitoring", "incident", "response", "plan", "strategy",
    "research", "experiment", "results", "metrics", "quality", "testing", "automation", "workflow",
    "configuration", "documentation", "guide", "overview", "detailed", "internal", "external",
    "partner", "vendor", "contract", "compliance", "audit", "risk", "assessment", "roadmap",
    "milestone", "schedule", "estimate", "cost", "pricing", "billing", "invoice", "payment",
    "account", "identity", "access", "control", "privacy", "retention", "backup", "recovery",
    "archive", "legacy", "modern", "scalable", "reliable", "latency", "throughput", "capacity",
    "cluster", "database", "index", "query", "schema", "cache", "queue", "stream", "event",
    "message", "notification", "alert", "threshold", "baseline", "benchmark", "regression",
    "prototype", "feature", "requirement", "specification", "architecture", "component", "library",
    "framework", "interface", "endpoint", "gateway", "proxy", "certificate", "encryption", "token",
    "session", "login", "onboarding", "training", "inference", "prediction", "classification",
    "recommendation", "search", "ranking", "relevance", "feedback", "survey", "interview",
    "persona", "journey", "funnel", "campaign", "newsletter", "content", "video", "image",
    "translation", "localization", "accessibility", "mobile", "desktop", "browser", "firmware",
    "sensor", "device", "factory", "warehouse", "shipment", "inventory", "supplier", "procurement",
    "logistics", "route", "delivery", "support", "ticket", "escalation", "agreement", "renewal",
    "churn", "expansion", "market", "competitor", "brand", "launch", "webinar", "conference",
    "workshop", "meeting", "notes", "decision", "owner", "stakeholder", "approval", "draft",
    "final", "version", "changelog", "postmortem", "runbook", "checklist", "template", "standard",
    "benchmarking", "tuning", "optimization", "refactoring", "cleanup", "deprecation", "upgrade",
    "patch", "hotfix", "rollback", "canary", "rollout", "staging", "production", "sandbox",
    "region", "zone", "kubernetes", "terraform", "ansible", "grafana", "prometheus", "kafka",
    "postgres", "redis", "spark", "airflow", "notebook", "spreadsheet", "presentation", "diagram",
    "whitepaper",
];

#[rustfmt::skip]
const ADJECTIVES: &[&str] = &[
    "Quarterly", "Annual", "Customer", "Internal", "Regional", "Global", "Mobile", "Cloud",
    "Legacy", "Realtime", "Secure", "Automated", "Unified", "Core", "Partner", "Enterprise",
];
#[rustfmt::skip]
const NOUNS: &[&str] = &[
    "Dashboard", "Report", "Pipeline", "Model", "Gateway", "Playbook", "Runbook", "Schema",
    "Forecast", "Audit", "Roadmap", "Contract", "Survey", "Benchmark", "Prototype", "Guide",
    "Template", "Checklist", "Dataset", "Integration", "Policy", "Analysis", "Design", "Plan",
];

/// The rows of one COPY, in PostgreSQL's text format, with their count.
struct Copy {
    text: String,
    rows: usize,
}

impl Copy {
    fn new() -> Self {
        Copy {
            text: String::new(),
            rows: 0,
        }
    }

    /// One row; no generated value contains a tab, newline or backslash, so nothing needs
    /// escaping (`\N` is NULL).
    fn row(&mut self, fields: &[&str]) {
        self.text.push_str(&fields.join("\t"));
        self.text.push('\n');
        self.rows += 1;
    }
}

fn random_uuid(rng: &mut impl Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid()
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// A fixed epoch keeps timestamps deterministic: artifacts are spread over the two years
/// before it.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The ids of the generated users and workspaces and who owns each workspace.
struct People {
    users: Vec<Uuid>,
    workspaces: Vec<Uuid>,
    owners: Vec<usize>,
}

fn people(spec: &Spec, hash: &str) -> (People, Copy, Copy, Copy) {
    let mut rng = rng_for(spec.seed, 0);
    let users: Vec<Uuid> = (0..spec.users).map(|_| random_uuid(&mut rng)).collect();
    let workspaces: Vec<Uuid> = (0..spec.workspaces)
        .map(|_| random_uuid(&mut rng))
        .collect();
    let created = ts(epoch() - chrono::Duration::days(800));
    let mut u = Copy::new();
    for (i, id) in users.iter().enumerate() {
        let (first, last) = (format!("User{i}"), format!("Bench{}", i % 97));
        u.row(&[
            &id.to_string(),
            &email(i),
            hash,
            &first,
            &last,
            "t",
            "t",
            &created,
            &created,
        ]);
    }
    let mut t = Copy::new();
    for (i, id) in workspaces.iter().enumerate() {
        let name = format!("Bench Workspace {i}");
        let slug = format!("{SLUG_PREFIX}{i}");
        t.row(&[
            &id.to_string(),
            &name,
            &slug,
            "\\N",
            "{}",
            "t",
            &created,
            &created,
        ]);
    }
    // Workspace i is owned by user i (mod the users); every user also joins one or two more,
    // picked with the workspaces' own Zipf skew, so large workspaces have many members.
    let owners: Vec<usize> = (0..spec.workspaces).map(|i| i % spec.users).collect();
    let mut joined: std::collections::HashSet<(usize, usize)> =
        owners.iter().enumerate().map(|(w, &u)| (u, w)).collect();
    let skew = Zipf::new(spec.workspaces, 1.0);
    let mut m = Copy::new();
    for (w, &owner) in owners.iter().enumerate() {
        m.row(&[
            &random_uuid(&mut rng).to_string(),
            &users[owner].to_string(),
            &workspaces[w].to_string(),
            "owner",
            "t",
            &created,
            &created,
        ]);
    }
    for (user, id) in users.iter().enumerate() {
        for _ in 0..rng.gen_range(1..=2) {
            let w = skew.sample(&mut rng);
            if joined.insert((user, w)) {
                let role = if rng.gen_ratio(1, 10) {
                    "admin"
                } else {
                    "member"
                };
                m.row(&[
                    &random_uuid(&mut rng).to_string(),
                    &id.to_string(),
                    &workspaces[w].to_string(),
                    role,
                    "t",
                    &created,
                    &created,
                ]);
            }
        }
    }
    (
        People {
            users,
            workspaces,
            owners,
        },
        u,
        t,
        m,
    )
}

/// The artifacts of workspace `w`, appended to `out`.
fn artifacts(spec: &Spec, p: &People, w: usize, size: usize, out: &mut Copy) {
    let mut rng = rng_for(spec.seed, 1 + w as u64);
    let tags = Zipf::new(TAGS.len(), 1.1);
    let words = Zipf::new(WORDS.len(), 0.9);
    let tenant = p.workspaces[w].to_string();
    let creator = p.users[p.owners[w]].to_string();
    let mut desc = String::new();
    for n in 0..size {
        let name = format!(
            "{} {} {} {}",
            ADJECTIVES[rng.gen_range(0..ADJECTIVES.len())],
            NOUNS[rng.gen_range(0..NOUNS.len())],
            NOUNS[rng.gen_range(0..NOUNS.len())],
            n + 1
        );
        desc.clear();
        for i in 0..rng.gen_range(8..40) {
            let word = WORDS[words.sample(&mut rng)];
            if i > 0 {
                desc.push(' ');
            }
            desc.push_str(word);
        }
        desc.push('.');
        let mut picked: Vec<&str> = (0..rng.gen_range(1..=5))
            .map(|_| TAGS[tags.sample(&mut rng)])
            .collect();
        picked.sort_unstable();
        picked.dedup();
        let created = epoch() - Duration::from_secs(rng.gen_range(0..2 * 365 * 86_400) as u64);
        let created = ts(created);
        let metadata = format!(
            r#"{{"source": "bench", "priority": {}}}"#,
            rng.gen_range(1..=5)
        );
        out.row(&[
            &random_uuid(&mut rng).to_string(),
            &tenant,
            &name,
            &desc,
            &format!("{{{}}}", picked.join(",")),
            &metadata,
            &creator,
            "1",
            &created,
            &created,
        ]);
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadReport {
    pub workspaces: usize,
    pub users: usize,
    pub memberships: usize,
    pub artifacts: usize,
    pub largest_workspace: usize,
    pub copy_seconds: f64,
    pub index_seconds: f64,
    pub analyze_seconds: f64,
    pub rows_per_second: f64,
    pub megabytes: f64,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seeded {} workspaces (largest {} artifacts), {} users, {} memberships, {} artifacts: \
             COPY {:.1} s ({:.0} rows/s, {:.1} MB), index rebuild {:.1} s, VACUUM ANALYZE {:.1} s",
            self.workspaces,
            self.largest_workspace,
            self.users,
            self.memberships,
            self.artifacts,
            self.copy_seconds,
            self.rows_per_second,
            self.megabytes,
            self.index_seconds,
            self.analyze_seconds
        )
    }
}

async fn copy(conn: &mut PgConnection, statement: &str, text: &[u8]) -> Result<()> {
    let mut c = conn.copy_in_raw(statement).await?;
    // COPY streams in chunks; one send of hundreds of megabytes would be buffered whole.
    for chunk in text.chunks(1 << 20) {
        c.send(chunk).await?;
    }
    c.finish().await?;
    Ok(())
}

/// Loads the dataset into an empty database through `superuser_url`. Refuses a database that
/// already holds benchmark workspaces (seed a fresh database instead).
pub async fn seed(superuser_url: &str, spec: &Spec) -> Result<LoadReport> {
    if spec.workspaces == 0 || spec.users == 0 || spec.artifacts < spec.workspaces {
        bail!("need at least one workspace and user, and an artifact per workspace");
    }
    let mut conn = PgConnection::connect(superuser_url)
        .await
        .context("connecting to the benchmark database")?;
    let bypass: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await?;
    if !bypass {
        bail!("seed needs a superuser (or BYPASSRLS) URL: PostgreSQL refuses COPY FROM into tables with row-level security");
    }
    let existing: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenants WHERE slug LIKE 'bench-%'")
            .fetch_one(&mut conn)
            .await?;
    if existing > 0 {
        bail!("the database already holds a benchmark dataset; seed a fresh one");
    }
    // One argon2id hash for every account: hashing 10,000 passwords would take minutes and
    // measure nothing.
    let hash = ghostworks_auth::password::hash(PASSWORD.into()).await?;
    let sizes = workspace_sizes(spec);
    let (people, users, tenants, members) = people(spec, &hash);

    let started = Instant::now();
    let mut tx = conn.begin().await?;
    sqlx::query("SET LOCAL maintenance_work_mem = '256MB'")
        .execute(&mut *tx)
        .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.relname::text, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indrelid = 'artifacts'::regclass \
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&mut *tx)
            .await?;
    }
    let mut bytes = users.text.len() + tenants.text.len() + members.text.len();
    copy(&mut tx, "COPY users (id, email, hashed_password, first_name, last_name, is_verified, is_active, created_at, updated_at) FROM STDIN", users.text.as_bytes()).await?;
    copy(&mut tx, "COPY tenants (id, name, slug, description, settings, is_active, created_at, updated_at) FROM STDIN", tenants.text.as_bytes()).await?;
    copy(&mut tx, "COPY workspace_memberships (id, user_id, tenant_id, role, is_active, created_at, updated_at) FROM STDIN", members.text.as_bytes()).await?;
    // Artifacts are generated a batch of workspaces at a time, so the generator (here) and
    // the parser and tsvector work (in the server) overlap without holding 1M rows in memory.
    let mut c = tx
        .copy_in_raw("COPY artifacts (id, tenant_id, name, description, tags, artifact_metadata, created_by, version, created_at, updated_at) FROM STDIN")
        .await?;
    let mut batch = Copy::new();
    for (w, &size) in sizes.iter().enumerate() {
        artifacts(spec, &people, w, size, &mut batch);
        if batch.text.len() > 4 << 20 || w + 1 == sizes.len() {
            bytes += batch.text.len();
            c.send(batch.text.as_bytes()).await?;
            batch.text.clear();
        }
    }
    c.finish().await?;
    let copy_seconds = started.elapsed().as_secs_f64();
    let indexed = Instant::now();
    for (_, def) in &indexes {
        sqlx::query(def).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let index_seconds = indexed.elapsed().as_secs_f64();
    let analyzed = Instant::now();
    sqlx::query("VACUUM ANALYZE users, tenants, workspace_memberships, artifacts")
        .execute(&mut conn)
        .await?;
    let rows = users.rows + tenants.rows + members.rows + spec.artifacts;
    Ok(LoadReport {
        workspaces: spec.workspaces,
        users: spec.users,
        memberships: members.rows,
        artifacts: spec.artifacts,
        largest_workspace: sizes[0],
        copy_seconds,
        index_seconds,
        analyze_seconds: analyzed.elapsed().as_secs_f64(),
        rows_per_second: rows as f64 / copy_seconds,
        megabytes: bytes as f64 / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_skewed_and_sum_up() {
        let s = workspace_sizes(&Spec::full());
        assert_eq!(s.iter().sum::<usize>(), 1_000_000);
        assert!((99_000..=101_000).contains(&s[0]), "{}", s[0]);
        assert!(s[999] >= 1 && s[999] < 1000);
        let tiny = workspace_sizes(&Spec {
            workspaces: 3,
            artifacts: 200,
            largest: 20,
            users: 5,
            seed: 1,
        });
        assert_eq!(tiny.iter().sum::<usize>(), 200);
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(100, 1.0);
        let mut rng = rng_for(7, 0);
        let hits = (0..10_000).filter(|_| z.sample(&mut rng) == 0).count();
        assert!((1500..2500).contains(&hits), "{hits}");
    }
}
