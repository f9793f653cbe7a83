//! Accounts and sessions: register, verify, password reset, login with lockout, refresh with
//! rotation and reuse detection, logout, and workspace-scoped tokens. E-mail is never sent
//! here: the worker sends it, from jobs queued in the same transaction as the change that
//! calls for it. Nothing here knows HTTP: callers map [`AuthError`] to their own answers.

mod error;
pub mod password;
pub mod tokens;

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use ghostworks_db::auth::RefreshUse;
use ghostworks_db::users::{NewUser, User};
use ghostworks_db::{audit, auth as store, users, workspaces, DbError, Tx};
use ghostworks_domain::account::{check_password_strength, parse_person_name, Email};
use ghostworks_domain::{FieldError, Role, ValidationErrors};
use ghostworks_queue::{kinds, Job};
use prometheus::{IntCounter, IntCounterVec};
use rand::RngCore;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

pub use error::AuthError;
use tokens::{hash_id, Keys, TokenType};

pub type AuthResult<T> = Result<T, AuthError>;

/// The demo accounts of the seed data: never usable in production.
pub const DEMO_EMAILS: &[&str] = &[
    "owner@acme.com",
    "manager@acme.com",
    "member@acme.com",
    "owner@umbrella.com",
    "admin@umbrella.com",
    "researcher@umbrella.com",
];

/// A random, URL-safe secret of 32 bytes.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// The rules of the deployment the service runs in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Production refuses the demo accounts of the seed data.
    pub refuse_demo_accounts: bool,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub require_email_verification: bool,
    pub login_max_failures: u32,
    pub login_lockout: Duration,
}

/// A login attempt's place in its account's window, decided before the password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted as a failure in advance (the window's `n`-th attempt): check the password, and
    /// clear the count if it was right.
    Reserved { n: u64 },
    /// The window already holds `max_failures` attempts: refused for this many more seconds.
    Locked { retry_after: u64 },
}

/// The lockout counter could not be reached: logins are refused rather than let through
/// uncounted.
#[derive(Debug, Clone, Copy)]
pub struct LockoutUnavailable;

/// Failed logins per account, shared by every instance (the API keeps them in Redis).
pub trait Lockout: Send + Sync {
    /// Counts an attempt on `account` before its password is checked (the first of a window
    /// starts it, `window` long), so however many arrive at once, at most `max_failures` per
    /// window reach the hash.
    fn reserve(
        &self,
        account: &str,
        max_failures: u32,
        window: Duration,
    ) -> impl Future<Output = Result<Attempt, LockoutUnavailable>> + Send;
    /// Forgets the account's attempts: the password was right, or has been reset.
    fn clear(&self, account: &str) -> impl Future<Output = ()> + Send;
}

/// The counters the service moves, registered by whoever exposes them.
#[derive(Clone)]
pub struct Counters {
    pub registrations: IntCounter,
    /// By `success` and `method`.
    pub attempts: IntCounterVec,
    /// By `bucket`; the lockout counts as `login_lockout`.
    pub rate_limited: IntCounterVec,
    pub lockouts: IntCounter,
    pub refresh_reuse: IntCounter,
    pub token_refreshes: IntCounter,
    /// By `kind`.
    pub jobs_enqueued: IntCounterVec,
}

/// A registration as submitted.
pub struct Registration {
    pub email: String,
    pub password: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

/// A freshly issued access + refresh pair.
pub struct Issued {
    pub access: String,
    pub refresh: String,
    /// The access token's lifetime in seconds.
    pub expires_in: u64,
}

/// The auth service: its database, signing keys, rules, lockout counter and metrics.
pub struct Auth<L> {
    db: PgPool,
    keys: Keys,
    settings: Settings,
    lockout: L,
    counters: Counters,
    /// A hash to verify unknown accounts' passwords against (timing must not tell them apart).
    dummy_hash: String,
}

fn email_field(raw: &str) -> Result<Email, FieldError> {
    Email::parse(raw).map_err(|m| FieldError::body("email", "value_error", m))
}

fn email_hash(email: &Email) -> String {
    hex::encode(&hash_id(email.as_str().as_bytes())[..8])
}

impl<L: Lockout> Auth<L> {
    pub async fn new(
        db: PgPool,
        jwt_secret: &[u8],
        settings: Settings,
        lockout: L,
        counters: Counters,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            keys: Keys::new(jwt_secret),
            settings,
            lockout,
            counters,
            dummy_hash: password::hash(random_token()).await?,
        })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Creates the account and queues its verification e-mail in the same transaction: both
    /// happen or neither does. An address that already has an account gets the same answer
    /// (its normalised form) and its owner a notice e-mail instead: the answer must not tell
    /// who has an account.
    pub async fn register(
        &self,
        input: Registration,
        origin: &audit::Context,
    ) -> AuthResult<String> {
        let mut errors = ValidationErrors::default();
        let email = errors.collect(email_field(&input.email));
        errors.collect(
            check_password_strength(&input.password)
                .map_err(|m| FieldError::body("password", "value_error", m)),
        );
        let first = errors.collect(parse_person_name("first_name", input.first_name));
        let last = errors.collect(parse_person_name("last_name", input.last_name));
        if !errors.0.is_empty() {
            return Err(errors.into());
        }
        let (email, first, last) = (email.unwrap(), first.unwrap(), last.unwrap());
        // Hashed either way, so the time taken does not tell a taken address from a new one.
        let hashed = password::hash(input.password).await?;
        let mut tx = self.db.begin().await?;
        let new = NewUser {
            email: email.as_str(),
            hashed_password: &hashed,
            first_name: first.as_deref(),
            last_name: last.as_deref(),
            is_verified: false,
        };
        let (user, created, job) = match users::insert(&mut *tx, &new).await {
            Ok(user) => (user.id, true, kinds::verification_email(user.id)),
            Err(DbError::Conflict(_)) => {
                // The failed insert aborted the transaction: the notice gets a fresh one.
                tx.rollback().await?;
                tx = self.db.begin().await?;
                let user = users::by_email(&mut *tx, email.as_str())
                    .await?
                    .ok_or(AuthError::UnknownUser)?;
                (
                    user.id,
                    false,
                    kinds::account_exists_email(user.id, Utc::now()),
                )
            }
            Err(other) => return Err(other.into()),
        };
        let action = if created {
            "auth.registered"
        } else {
            "auth.register_existing"
        };
        account_event(&mut tx, origin, Some(user), action, json!({})).await?;
        self.commit_with_job(tx, Some(job)).await?;
        if created {
            self.counters.registrations.inc();
        }
        Ok(email.as_str().to_string())
    }

    /// Queues `job` (if any) in `tx` and commits; the job is counted only once the commit made
    /// it real, and not when its idempotency key already had it queued.
    async fn commit_with_job(&self, mut tx: Tx, job: Option<Job>) -> AuthResult<()> {
        let queued = match job {
            Some(job) => {
                let kind = job.kind();
                ghostworks_queue::enqueue(&mut tx, job).await?.map(|_| kind)
            }
            None => None,
        };
        tx.commit().await?;
        if let Some(kind) = queued {
            self.counters.jobs_enqueued.with_label_values(&[kind]).inc();
        }
        Ok(())
    }

    /// Queues a new verification e-mail when the address belongs to an unverified, active
    /// account; otherwise nothing (the caller must not be able to tell which).
    pub async fn resend_verification(&self, email: &str) -> AuthResult<()> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let mut tx = self.db.begin().await?;
        let job = match users::by_email(&mut *tx, email.as_str()).await? {
            Some(u) if !u.is_verified && u.is_active => Some(kinds::verification_email(u.id)),
            _ => None,
        };
        self.commit_with_job(tx, job).await
    }

    /// Queues a password reset e-mail for an active account (at most one per account per
    /// window); unknown addresses get the same answer and nothing else.
    pub async fn request_password_reset(&self, email: &str) -> AuthResult<()> {
        let Ok(email) = Email::parse(email) else {
            return Ok(());
        };
        let mut tx = self.db.begin().await?;
        let job = users::by_email(&mut *tx, email.as_str())
            .await?
            .filter(|u| u.is_active)
            .map(|u| kinds::password_reset_email(u.id, Utc::now()));
        self.commit_with_job(tx, job).await
    }

    /// Spends a reset token and sets the new password; every session of the account is revoked
    /// (whoever knew the old password is signed out) and its login lockout cleared.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        new_password: String,
        origin: &audit::Context,
    ) -> AuthResult<()> {
        check_password_strength(&new_password)
            .map_err(|m| AuthError::field(FieldError::body("new_password", "value_error", m)))?;
        let hashed = password::hash(new_password).await?;
        let mut tx = self.db.begin().await?;
        let user = store::use_password_reset_token(&mut tx, &hash_id(token.as_bytes()))
            .await?
            .ok_or(AuthError::InvalidResetToken)?;
        users::set_password(&mut *tx, user, &hashed).await?;
        let revoked = store::revoke_user_sessions(&mut *tx, user, "password_reset").await?;
        account_event(
            &mut tx,
            origin,
            Some(user),
            "auth.password_reset",
            json!({ "sessions_revoked": revoked }),
        )
        .await?;
        let email = users::by_id(&mut *tx, user).await?.map(|u| u.email);
        tx.commit().await?;
        if let Some(email) = email {
            self.lockout.clear(&email).await;
        }
        Ok(())
    }

    pub async fn verify_email(&self, token: &str, origin: &audit::Context) -> AuthResult<()> {
        let mut tx = self.db.begin().await?;
        let user = store::use_verification_token(&mut *tx, &hash_id(token.as_bytes()))
            .await?
            .ok_or(AuthError::InvalidVerificationToken)?;
        users::mark_verified(&mut *tx, user).await?;
        account_event(
            &mut tx,
            origin,
            Some(user),
            "auth.email_verified",
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn issue(
        &self,
        tx: &mut Tx,
        user: &User,
        session: Uuid,
        workspace: Option<(Uuid, Role)>,
    ) -> AuthResult<Issued> {
        let s = &self.settings;
        let (access, _) = self.keys.issue(
            TokenType::Access,
            user.id,
            &user.email,
            session,
            workspace,
            s.access_token_ttl,
        );
        let (refresh, jti) = self.keys.issue(
            TokenType::Refresh,
            user.id,
            &user.email,
            session,
            workspace,
            s.refresh_token_ttl,
        );
        store::insert_refresh_token(
            &mut **tx,
            &hash_id(jti.as_bytes()),
            session,
            workspace.map(|w| w.0),
            self.refresh_expiry(),
        )
        .await?;
        Ok(Issued {
            access,
            refresh,
            expires_in: s.access_token_ttl.as_secs(),
        })
    }

    fn refresh_expiry(&self) -> chrono::DateTime<Utc> {
        Utc::now()
            + chrono::Duration::from_std(self.settings.refresh_token_ttl)
                .expect("bounded by config")
    }

    pub async fn login(
        &self,
        email: &str,
        password: String,
        origin: &audit::Context,
    ) -> AuthResult<Issued> {
        let email = email_field(email).map_err(AuthError::field)?;
        if password.chars().count() > ghostworks_domain::limits::PASSWORD_MAX {
            return Err(AuthError::field(FieldError::body(
                "password",
                "string_too_long",
                "Password is too long",
            )));
        }
        let s = &self.settings;
        if s.refuse_demo_accounts && DEMO_EMAILS.contains(&email.as_str()) {
            return Err(AuthError::DemoAccount);
        }
        let attempt = self.reserve_attempt(&email).await?;
        let user = users::by_email(&self.db, email.as_str()).await?;
        // Unknown accounts still pay for one hash, so timing does not reveal which e-mails exist.
        let stored = user
            .as_ref()
            .map(|u| u.hashed_password.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let ok = password::verify(password, stored).await? && user.is_some();
        let attempts = &self.counters.attempts;
        let Some(user) = user.filter(|_| ok) else {
            attempts.with_label_values(&["false", "password"]).inc();
            let locked = attempt == u64::from(s.login_max_failures);
            self.login_failed(&email, locked, origin).await?;
            return Err(AuthError::InvalidCredentials);
        };
        self.lockout.clear(email.as_str()).await;
        if !user.is_active {
            return Err(AuthError::Inactive);
        }
        if s.require_email_verification && !user.is_verified {
            return Err(AuthError::EmailNotVerified);
        }
        let mut tx = self.db.begin().await?;
        let session = store::create_session(&mut *tx, user.id, self.refresh_expiry()).await?;
        let issued = self.issue(&mut tx, &user, session, None).await?;
        account_event(
            &mut tx,
            origin,
            Some(user.id),
            "auth.login",
            json!({ "session_id": session }),
        )
        .await?;
        tx.commit().await?;
        attempts.with_label_values(&["true", "password"]).inc();
        Ok(issued)
    }

    /// Counts the attempt against the account's window before any hash is checked; the number
    /// of the attempt in its window, or the refusal.
    async fn reserve_attempt(&self, email: &Email) -> AuthResult<u64> {
        let s = &self.settings;
        let reserved = self
            .lockout
            .reserve(email.as_str(), s.login_max_failures, s.login_lockout)
            .await;
        match reserved.map_err(|LockoutUnavailable| AuthError::LockoutUnavailable)? {
            Attempt::Reserved { n } => Ok(n),
            Attempt::Locked { retry_after } => {
                self.counters
                    .rate_limited
                    .with_label_values(&["login_lockout"])
                    .inc();
                Err(AuthError::LockedOut { retry_after })
            }
        }
    }

    /// Audits a failed login (already counted by its reservation), and the lockout when this
    /// failure filled the window.
    async fn login_failed(
        &self,
        email: &Email,
        locked: bool,
        origin: &audit::Context,
    ) -> AuthResult<()> {
        let details = json!({ "email_hash": email_hash(email) });
        let mut tx = self.db.begin().await?;
        account_event(&mut tx, origin, None, "auth.login_failed", details.clone()).await?;
        if locked {
            self.counters.lockouts.inc();
            account_event(&mut tx, origin, None, "auth.account_locked", details).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Spends a refresh token and issues the next pair of its session, keeping its workspace
    /// context when the caller is still a member.
    pub async fn refresh(&self, token: &str, origin: &audit::Context) -> AuthResult<Issued> {
        let claims = self.keys.verify(token, TokenType::Refresh)?;
        let (mut tx, spent) = self.spend_refresh(&claims, origin).await?;
        let workspace = match spent.tenant {
            Some(t) => {
                ghostworks_db::set_scope(&mut tx, Some(t), Some(spent.user.id)).await?;
                let role = workspaces::role_of(&mut tx, t, spent.user.id)
                    .await?
                    .map(|(r, _)| (t, r));
                ghostworks_db::set_scope(&mut tx, None, None).await?;
                role
            }
            None => None,
        };
        let issued = self
            .issue(&mut tx, &spent.user, spent.session, workspace)
            .await?;
        self.counters.token_refreshes.inc();
        tx.commit().await?;
        Ok(issued)
    }

    /// Spends a refresh token in a transaction the caller goes on with (to issue the next
    /// pair). A replayed token revokes its session, committed here whatever happens next.
    async fn spend_refresh(
        &self,
        claims: &tokens::Claims,
        origin: &audit::Context,
    ) -> AuthResult<(Tx, Spent)> {
        let mut tx = self.db.begin().await?;
        match store::use_refresh_token(&mut tx, &hash_id(claims.jti.as_bytes())).await? {
            RefreshUse::Invalid => Err(AuthError::RefreshRevoked),
            RefreshUse::Reused { session, user } => {
                account_event(
                    &mut tx,
                    origin,
                    Some(user),
                    "auth.refresh_reuse_detected",
                    json!({ "session_id": session }),
                )
                .await?;
                tx.commit().await?;
                self.counters.refresh_reuse.inc();
                tracing::warn!(user_id = %user, session_id = %session, "refresh token reuse: session revoked");
                Err(AuthError::RefreshReused)
            }
            RefreshUse::Fresh {
                session,
                user,
                tenant,
            } => {
                let user = users::by_id(&mut *tx, user)
                    .await?
                    .filter(|u| u.is_active)
                    .ok_or(AuthError::UnknownUser)?;
                Ok((
                    tx,
                    Spent {
                        session,
                        user,
                        tenant,
                    },
                ))
            }
        }
    }

    pub async fn logout(
        &self,
        user: Uuid,
        session: Uuid,
        origin: &audit::Context,
    ) -> AuthResult<()> {
        let mut tx = self.db.begin().await?;
        store::revoke_session(&mut *tx, session, "logout").await?;
        account_event(
            &mut tx,
            origin,
            Some(user),
            "auth.logout",
            json!({ "session_id": session }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The next pair of the caller's session, scoped to a workspace the caller belongs to
    /// (checked by the caller). It spends `refresh`, which must be of the same session (the
    /// one the access token names): an access token alone never yields a refresh token.
    pub async fn switch(
        &self,
        session: Uuid,
        refresh: &str,
        workspace: (Uuid, Role),
        origin: &audit::Context,
    ) -> AuthResult<Issued> {
        let claims = self.keys.verify(refresh, TokenType::Refresh)?;
        if claims.sid != session {
            return Err(AuthError::OtherSession);
        }
        let (mut tx, spent) = self.spend_refresh(&claims, origin).await?;
        let issued = self
            .issue(&mut tx, &spent.user, spent.session, Some(workspace))
            .await?;
        tx.commit().await?;
        Ok(issued)
    }
}

/// A refresh token just spent: its session, its (active) user and workspace context.
struct Spent {
    session: Uuid,
    user: User,
    tenant: Option<Uuid>,
}

/// An audit row of an account (no workspace).
async fn account_event(
    tx: &mut Tx,
    origin: &audit::Context,
    actor: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
) -> AuthResult<()> {
    let event = audit::Event {
        tenant: None,
        actor,
        action,
        details,
    };
    audit::record(&mut **tx, origin, event).await?;
    Ok(())
}
