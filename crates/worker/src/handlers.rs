//! The handlers of every kind in [`crate::kinds`]. E-mail handlers store the token they send
//! (as its hash) and commit it *before* sending, so every link that can reach a mailbox works
//! from the moment it arrives, even when the job's own commit then fails. A failed attempt
//! leaves an unsent token behind, unusable by anyone (nobody knows it) and purged at expiry.

use std::sync::Arc;

use chrono::{Duration, Utc};
use ghostworks_db::{auth, maintenance, usage, users, workspaces};
use ghostworks_domain::account::full_name;
use ghostworks_domain::limits::{PASSWORD_RESET_TTL_MINUTES, VERIFICATION_TTL_HOURS};

use crate::kinds::{self, InvitationPayload, MaintenancePayload, UserPayload};
use crate::mail::{self, Mailer};
use crate::queue;
use crate::runner::{BoxFuture, Ctx, Handler, JobError, Registry};

/// Succeeded jobs are deleted after this many days (dead ones stay until `jobs purge --dead`).
/// It must exceed the longest maintenance period (one day), whose key it protects.
pub const SUCCEEDED_JOB_RETENTION_DAYS: i64 = 7;

/// A random token for a link, and the SHA-256 the database keeps (what the auth service
/// compares).
fn new_token() -> (String, Vec<u8>) {
    let token = ghostworks_auth::random_token();
    let hash = ghostworks_auth::tokens::hash_id(token.as_bytes());
    (token, hash)
}

/// The user a mail goes to, unless deleted or deactivated since the job was queued.
async fn active_user(ctx: &mut Ctx, id: uuid::Uuid) -> Result<Option<users::User>, JobError> {
    Ok(users::by_id(&mut *ctx.tx, id)
        .await?
        .filter(|u| u.is_active))
}

fn greeting(u: &users::User) -> String {
    full_name(u.first_name.as_deref(), u.last_name.as_deref(), &u.email)
}

/// The registry of a production worker.
pub fn registry(mailer: Arc<Mailer>, retention: Retention) -> Registry {
    Registry::default()
        .register(kinds::VERIFICATION_EMAIL, Verification(mailer.clone()))
        .register(kinds::PASSWORD_RESET_EMAIL, PasswordReset(mailer.clone()))
        .register(kinds::INVITATION_EMAIL, Invitation(mailer.clone()))
        .register(kinds::ACCOUNT_EXISTS_EMAIL, AccountExists(mailer))
        .register(kinds::MAINTENANCE, Maintenance(retention))
        .register(kinds::TENANT_MAINTENANCE, TenantMaintenance(retention))
}

struct Verification(Arc<Mailer>);

impl Handler for Verification {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: UserPayload = ctx.payload()?;
            let Some(user) = users::by_id(&mut *ctx.tx, p.user_id).await? else {
                return Ok(()); // deleted since: nobody to write to
            };
            if user.is_verified || !user.is_active {
                return Ok(());
            }
            let (token, hash) = new_token();
            let expires = Utc::now() + Duration::hours(VERIFICATION_TTL_HOURS);
            auth::insert_verification_token(&ctx.pool, &hash, user.id, expires).await?;
            let link = self
                .0
                .link(&format!("/verify-email?verification_token={token}"));
            let email = mail::verification(&greeting(&user), &link, VERIFICATION_TTL_HOURS);
            self.0.send(ctx.job.id, &user.email, email).await
        })
    }
}

struct PasswordReset(Arc<Mailer>);

impl Handler for PasswordReset {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: UserPayload = ctx.payload()?;
            let Some(user) = active_user(ctx, p.user_id).await? else {
                return Ok(());
            };
            let (token, hash) = new_token();
            let expires = Utc::now() + Duration::minutes(PASSWORD_RESET_TTL_MINUTES);
            auth::insert_password_reset_token(&ctx.pool, &hash, user.id, expires).await?;
            let link = self.0.link(&format!("/reset-password?token={token}"));
            let email = mail::password_reset(&greeting(&user), &link, PASSWORD_RESET_TTL_MINUTES);
            self.0.send(ctx.job.id, &user.email, email).await
        })
    }
}

/// Someone registered the address of an existing account (the answer told them nothing).
struct AccountExists(Arc<Mailer>);

impl Handler for AccountExists {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: UserPayload = ctx.payload()?;
            let Some(user) = active_user(ctx, p.user_id).await? else {
                return Ok(());
            };
            let email = mail::account_exists(
                &greeting(&user),
                &self.0.link("/login"),
                &self.0.link("/forgot-password"),
            );
            self.0.send(ctx.job.id, &user.email, email).await
        })
    }
}

struct Invitation(Arc<Mailer>);

impl Handler for Invitation {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: InvitationPayload = ctx.payload()?;
            let tenant = ctx
                .job
                .tenant_id
                .ok_or_else(|| JobError::Permanent("an invitation needs its workspace".into()))?;
            // Row-level security shows this workspace only: the job runs in its scope.
            let Some(workspace) = workspaces::name(&mut ctx.tx, tenant).await? else {
                return Ok(());
            };
            // Removed again before the e-mail went out: nothing to announce.
            if !workspaces::member(&mut ctx.tx, tenant, p.user_id)
                .await?
                .is_some_and(|m| m.is_active)
            {
                return Ok(());
            }
            let Some(user) = active_user(ctx, p.user_id).await? else {
                return Ok(());
            };
            let inviter = users::by_id(&mut *ctx.tx, p.invited_by)
                .await?
                .map(|u| greeting(&u))
                .unwrap_or_else(|| "A workspace admin".into());
            let link = self.0.link(&format!("/workspaces/{tenant}"));
            let email = mail::invitation(
                &greeting(&user),
                &inviter,
                &workspace,
                p.role.as_str(),
                &link,
            );
            self.0.send(ctx.job.id, &user.email, email).await
        })
    }
}

/// How long deleted artifacts and audit rows are kept (ARTIFACT_RETENTION_DAYS,
/// AUDIT_RETENTION_DAYS).
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub artifact_days: u32,
    pub audit_days: u32,
}

/// Global: expired credentials, audit rows of no workspace, old succeeded jobs; then one
/// scoped job per workspace.
struct Maintenance(Retention);

impl Handler for Maintenance {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let p: MaintenancePayload = ctx.payload()?;
            let now = Utc::now();
            let purged = maintenance::purge_expired_credentials(&mut ctx.tx).await?;
            let audit = maintenance::prune_audit(
                &mut *ctx.tx,
                now - Duration::days(self.0.audit_days.into()),
            )
            .await?;
            let jobs = queue::purge_succeeded(
                &mut *ctx.tx,
                now - Duration::days(SUCCEEDED_JOB_RETENTION_DAYS),
            )
            .await?;
            let tenants = maintenance::tenant_ids(&mut *ctx.tx).await?;
            for &t in &tenants {
                ctx.enqueue(kinds::tenant_maintenance(t, p.period)).await?;
            }
            tracing::info!(
                sessions = purged.sessions,
                refresh_tokens = purged.refresh_tokens,
                verification_tokens = purged.verification_tokens,
                reset_tokens = purged.reset_tokens,
                audit_rows = audit,
                jobs,
                workspaces = tenants.len(),
                "maintenance: purged expired credentials and old rows"
            );
            Ok(())
        })
    }
}

/// In the workspace's scope: purge long-deleted artifacts and old audit rows, recompute usage.
struct TenantMaintenance(Retention);

impl Handler for TenantMaintenance {
    fn run<'a>(&'a self, ctx: &'a mut Ctx) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let tenant = ctx.job.tenant_id.ok_or_else(|| {
                JobError::Permanent("workspace maintenance needs its workspace".into())
            })?;
            let now = Utc::now();
            let artifacts = maintenance::purge_deleted_artifacts(
                &mut ctx.tx,
                tenant,
                now - Duration::days(self.0.artifact_days.into()),
            )
            .await?;
            let audit = maintenance::prune_audit(
                &mut *ctx.tx,
                now - Duration::days(self.0.audit_days.into()),
            )
            .await?;
            let u = usage::recompute(&mut ctx.tx, tenant).await?;
            tracing::info!(
                purged_artifacts = artifacts,
                audit_rows = audit,
                artifacts = u.artifacts,
                storage_bytes = u.storage_bytes,
                "workspace maintenance"
            );
            Ok(())
        })
    }
}
