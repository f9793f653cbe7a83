//! Demo data: the original's Acme and Umbrella workspaces, their accounts and artifacts, plus
//! enough generated artifacts in Acme to page through. Idempotent: existing users,
//! workspaces, memberships and artifacts (by name) are left as they are.

use anyhow::{bail, Context};
use ghostworks_api::auth::{password, DEMO_EMAILS};
use ghostworks_config::Environment;
use ghostworks_db::users::{self, NewUser};
use ghostworks_db::workspaces;
use ghostworks_domain::workspace::NewWorkspace;
use ghostworks_domain::Role;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use uuid::Uuid;

pub const DEMO_PASSWORD: &str = "demo123";

struct Tenant {
    name: &'static str,
    slug: &'static str,
    description: &'static str,
    settings: Value,
    members: &'static [(&'static str, &'static str, &'static str, Role)],
    artifacts: &'static [(&'static str, &'static str, &'static [&'static str])],
}

fn tenants() -> [Tenant; 2] {
    [
        Tenant {
            name: "Acme Corp",
            slug: "acme-corp",
            description: "A technology company building analytics and integration products",
            settings: json!({"theme": "corporate", "features": ["analytics", "integrations", "advanced_search"], "plan": "enterprise", "max_users": 100, "storage_limit_gb": 1000}),
            members: &[
                ("owner@acme.com", "Alice", "Johnson", Role::Owner),
                ("manager@acme.com", "Eva", "Martinez", Role::Admin),
                ("member@acme.com", "Carol", "Davis", Role::Member),
            ],
            artifacts: &[
                (
                    "Customer Analytics Dashboard",
                    "Real-time dashboard of customer behaviour, retention and revenue metrics.",
                    &["analytics", "dashboard", "customer", "metrics"],
                ),
                (
                    "API Gateway Configuration",
                    "Routing, authentication and rate-limiting rules for the public API gateway.",
                    &["api", "gateway", "configuration", "microservices"],
                ),
                (
                    "Mobile App User Interface",
                    "Component library and accessibility guidelines for the mobile apps.",
                    &["mobile", "ui", "components", "accessibility"],
                ),
                (
                    "Database Migration Scripts",
                    "Versioned scripts moving the on-premise databases to the cloud.",
                    &["database", "migration", "scripts", "cloud"],
                ),
                (
                    "Security Audit Report",
                    "Findings and remediation plan of the annual security audit.",
                    &["security", "audit", "compliance", "report"],
                ),
                (
                    "Machine Learning Model",
                    "Churn prediction model trained on two years of subscription data.",
                    &["ml", "model", "prediction", "churn"],
                ),
                (
                    "CI/CD Pipeline Configuration",
                    "Build, test and deployment stages for every service.",
                    &["cicd", "pipeline", "automation", "deployment"],
                ),
            ],
        },
        Tenant {
            name: "Umbrella Inc",
            slug: "umbrella-inc",
            description: "A biotech and pharmaceutical research company",
            settings: json!({"theme": "medical", "features": ["compliance", "audit_trail", "data_retention"], "plan": "professional", "max_users": 50, "storage_limit_gb": 500}),
            members: &[
                ("owner@umbrella.com", "Oswald", "Spencer", Role::Owner),
                ("admin@umbrella.com", "Bob", "Smith", Role::Admin),
                ("researcher@umbrella.com", "David", "Wilson", Role::Member),
            ],
            artifacts: &[
                (
                    "Clinical Trial Data Management",
                    "Collection and validation of phase II trial data.",
                    &["clinical", "trial", "data", "compliance"],
                ),
                (
                    "Drug Discovery Algorithm",
                    "Screening algorithm ranking candidate compounds.",
                    &["drug", "discovery", "algorithm", "ai"],
                ),
                (
                    "Laboratory Information System",
                    "Sample tracking and quality control for the labs.",
                    &["laboratory", "lims", "samples", "quality"],
                ),
                (
                    "Regulatory Submission Portal",
                    "Assembles and tracks submissions to regulators.",
                    &["regulatory", "submission", "portal", "approval"],
                ),
                (
                    "Biomarker Analysis Pipeline",
                    "Genomic biomarker discovery from sequencing runs.",
                    &["biomarker", "analysis", "pipeline", "genomics"],
                ),
                (
                    "Patient Safety Database",
                    "Adverse event reports and pharmacovigilance signals.",
                    &["safety", "database", "adverse", "pharmacovigilance"],
                ),
            ],
        },
    ]
}

/// Generated Acme artifacts, so the list has several pages.
const GENERATED: usize = 30;
const TOPICS: &[(&str, &[&str])] = &[
    (
        "Quarterly Revenue Forecast",
        &["finance", "forecast", "report"],
    ),
    ("Onboarding Checklist", &["hr", "process"]),
    ("Load Test Results", &["performance", "testing", "metrics"]),
    (
        "Incident Postmortem",
        &["incident", "reliability", "report"],
    ),
    ("Data Retention Policy", &["compliance", "policy", "data"]),
    ("Service Dependency Map", &["architecture", "microservices"]),
];

pub fn refuse_in_production(environment: Environment) -> anyhow::Result<()> {
    if environment == Environment::Production {
        bail!("GHOSTWORKS_ENV=production: demo data (with its well-known passwords) is never loaded in production");
    }
    Ok(())
}

pub async fn demo(pool: &PgPool) -> anyhow::Result<String> {
    let hashed = password::hash(DEMO_PASSWORD.into()).await?;
    let (mut users_new, mut artifacts_new) = (0, 0);
    for t in tenants() {
        let mut ids = Vec::new();
        for (email, first, last, role) in t.members {
            debug_assert!(DEMO_EMAILS.contains(email));
            let user = match users::by_email(pool, email).await? {
                Some(u) => u,
                None => {
                    users_new += 1;
                    users::insert(
                        pool,
                        &NewUser {
                            email,
                            hashed_password: &hashed,
                            first_name: Some(first),
                            last_name: Some(last),
                            is_verified: true,
                        },
                    )
                    .await?
                }
            };
            ids.push((user.id, *role));
        }
        let owner = ids[0].0;
        let tenant = existing_tenant(pool, t.slug, owner).await?;
        let tenant_id = tenant.unwrap_or_else(Uuid::new_v4);
        let mut tx = ghostworks_db::scoped(pool, Some(tenant_id), Some(owner)).await?;
        if tenant.is_none() {
            let settings = t.settings.as_object().cloned().unwrap_or_default();
            let new = NewWorkspace {
                name: t.name.into(),
                slug: t.slug.into(),
                description: Some(t.description.into()),
                settings,
            };
            workspaces::create(&mut tx, tenant_id, owner, &new)
                .await
                .context("creating a demo workspace")?;
        }
        for (user, role) in &ids {
            if workspaces::member(&mut tx, tenant_id, *user)
                .await?
                .is_none()
            {
                workspaces::add_member(&mut tx, tenant_id, *user, *role).await?;
            }
        }
        let mut items: Vec<(String, String, Vec<String>)> = t
            .artifacts
            .iter()
            .map(|(n, d, tags)| {
                (
                    n.to_string(),
                    d.to_string(),
                    tags.iter().map(|s| s.to_string()).collect(),
                )
            })
            .collect();
        if t.slug == "acme-corp" {
            for i in 0..GENERATED {
                let (topic, tags) = TOPICS[i % TOPICS.len()];
                items.push((
                    format!("{topic} #{}", i / TOPICS.len() + 1),
                    format!(
                        "{topic}, revision {}: prepared by the {} team.",
                        i + 1,
                        ["platform", "data", "security", "product"][i % 4]
                    ),
                    tags.iter().map(|s| s.to_string()).collect(),
                ));
            }
        }
        for (i, (name, description, tags)) in items.iter().enumerate() {
            let creator = ids[i % ids.len()].0;
            let mut metadata = Map::new();
            metadata.insert(
                "status".into(),
                json!(["draft", "review", "published"][i % 3]),
            );
            metadata.insert("version".into(), json!(format!("1.{}", i % 5)));
            metadata.insert("score".into(), json!((i * 37 % 100) as f64 / 10.0));
            let inserted = sqlx::query(
                "INSERT INTO artifacts (id, tenant_id, name, description, tags, artifact_metadata, created_by, created_at, updated_at) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, now() - make_interval(hours => $8), now() - make_interval(hours => $8) + interval '3 hours' \
                 WHERE NOT EXISTS (SELECT 1 FROM artifacts WHERE tenant_id = $2 AND name = $3)",
            )
            .bind(Uuid::new_v4())
            .bind(tenant_id)
            .bind(name)
            .bind(description)
            .bind(tags)
            .bind(Value::Object(metadata))
            .bind(creator)
            .bind((24 + i * 17) as i32)
            .execute(&mut *tx)
            .await?;
            artifacts_new += inserted.rows_affected();
        }
        tx.commit().await?;
    }
    Ok(format!("demo data ready: {users_new} users and {artifacts_new} artifacts added (password for every demo account: {DEMO_PASSWORD})"))
}

async fn existing_tenant(pool: &PgPool, slug: &str, owner: Uuid) -> anyhow::Result<Option<Uuid>> {
    // Row-level security shows a workspace only to its members (or with its id as context),
    // and the owner may not be a member yet on a first run; the slug's uniqueness decides.
    let mut tx = ghostworks_db::scoped(pool, None, Some(owner)).await?;
    let found = workspaces::by_slug(&mut tx, slug).await?.map(|w| w.id);
    tx.commit().await?;
    Ok(found)
}
