//! Accounts and sessions: register, verify, password reset, login with lockout, refresh with
//! rotation and reuse detection, logout, and workspace-scoped tokens. E-mail is never sent
//! here: the worker sends it, from jobs queued in the same transaction as the change that
//! calls for it.

pub mod password;
pub mod tokens;

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::Utc;
use ghostworks_config::Environment;
use ghostworks_db::auth::RefreshUse;
use ghostworks_db::users::{NewUser, User};
use ghostworks_db::{audit, auth as store, users, workspaces, DbError, Tx};
use ghostworks_domain::account::{check_password_strength, parse_person_name, Email};
use ghostworks_domain::{FieldError, Role, ValidationErrors};
use ghostworks_worker::kinds;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::dto::TokenOut;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Origin, ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE};
use crate::AppState;
use tokens::{hash_id, TokenType};

/// The demo accounts of the seed data: never usable in production.
pub const DEMO_EMAILS: &[&str] = &[
    "owner@acme.com",
    "manager@acme.com",
    "member@acme.com",
    "owner@umbrella.com",
    "admin@umbrella.com",
    "researcher@umbrella.com",
];

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    pub email: String,
    pub password: String,
}

fn email_field(raw: &str) -> Result<Email, FieldError> {
    Email::parse(raw).map_err(|m| FieldError::body("email", "value_error", m))
}

/// A random, URL-safe secret of 32 bytes.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Creates the account and queues its verification e-mail in the same transaction: both
/// happen or neither does.
pub async fn register(state: &AppState, input: RegisterInput, origin: &Origin) -> ApiResult<User> {
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
    let hashed = password::hash(input.password).await?;
    let mut tx = state.db().begin().await?;
    let user = users::insert(
        &mut *tx,
        &NewUser {
            email: email.as_str(),
            hashed_password: &hashed,
            first_name: first.as_deref(),
            last_name: last.as_deref(),
            is_verified: false,
        },
    )
    .await
    .map_err(|e| match e {
        DbError::Conflict(_) => ApiError::Conflict("User with this email already exists".into()),
        other => other.into(),
    })?;
    audit_event(
        &mut tx,
        None,
        Some(user.id),
        "auth.registered",
        json!({}),
        origin,
    )
    .await?;
    commit_with_job(state, tx, Some(kinds::verification_email(user.id))).await?;
    state.metrics().registrations.inc();
    Ok(user)
}

/// Queues `job` (if any) in `tx` and commits; the job is counted only once the commit made it
/// real, and not when its idempotency key already had it queued.
async fn commit_with_job(
    state: &AppState,
    mut tx: Tx,
    job: Option<ghostworks_worker::Job>,
) -> ApiResult<()> {
    let queued = match job {
        Some(job) => {
            let kind = job.kind();
            ghostworks_worker::enqueue(&mut tx, job)
                .await?
                .map(|_| kind)
        }
        None => None,
    };
    tx.commit().await?;
    if let Some(kind) = queued {
        state
            .metrics()
            .jobs_enqueued
            .with_label_values(&[kind])
            .inc();
    }
    Ok(())
}

/// Queues a new verification e-mail when the address belongs to an unverified, active
/// account; otherwise nothing (the caller must not be able to tell which).
pub async fn resend_verification(state: &AppState, email: &str) -> ApiResult<()> {
    let Ok(email) = Email::parse(email) else {
        return Ok(());
    };
    let mut tx = state.db().begin().await?;
    let job = match users::by_email(&mut *tx, email.as_str()).await? {
        Some(u) if !u.is_verified && u.is_active => Some(kinds::verification_email(u.id)),
        _ => None,
    };
    commit_with_job(state, tx, job).await
}

/// Queues a password reset e-mail for an active account (at most one per account per
/// window); unknown addresses get the same answer and nothing else.
pub async fn request_password_reset(state: &AppState, email: &str) -> ApiResult<()> {
    let Ok(email) = Email::parse(email) else {
        return Ok(());
    };
    let mut tx = state.db().begin().await?;
    let job = users::by_email(&mut *tx, email.as_str())
        .await?
        .filter(|u| u.is_active)
        .map(|u| kinds::password_reset_email(u.id, Utc::now()));
    commit_with_job(state, tx, job).await
}

/// Spends a reset token and sets the new password; every session of the account is revoked
/// (whoever knew the old password is signed out) and its login lockout cleared.
pub async fn confirm_password_reset(
    state: &AppState,
    token: &str,
    new_password: String,
    origin: &Origin,
) -> ApiResult<()> {
    check_password_strength(&new_password)
        .map_err(|m| ApiError::field(FieldError::body("new_password", "value_error", m)))?;
    let hashed = password::hash(new_password).await?;
    let mut tx = state.db().begin().await?;
    let user = store::use_password_reset_token(&mut tx, &hash_id(token.as_bytes()))
        .await?
        .ok_or_else(|| ApiError::BadRequest("Invalid or expired password reset token".into()))?;
    users::set_password(&mut *tx, user, &hashed).await?;
    let revoked = store::revoke_user_sessions(&mut *tx, user, "password_reset").await?;
    audit_event(
        &mut tx,
        None,
        Some(user),
        "auth.password_reset",
        json!({ "sessions_revoked": revoked }),
        origin,
    )
    .await?;
    let email = users::by_id(&mut *tx, user).await?.map(|u| u.email);
    tx.commit().await?;
    if let Some(email) = email {
        state.limiter().clear_failures(&email).await;
    }
    Ok(())
}

pub async fn verify_email(state: &AppState, token: &str, origin: &Origin) -> ApiResult<()> {
    let mut tx = state.db().begin().await?;
    let user = store::use_verification_token(&mut *tx, &hash_id(token.as_bytes()))
        .await?
        .ok_or_else(|| ApiError::BadRequest("Invalid or expired verification token".into()))?;
    users::mark_verified(&mut *tx, user).await?;
    audit_event(
        &mut tx,
        None,
        Some(user),
        "auth.email_verified",
        json!({}),
        origin,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// A freshly issued access + refresh pair.
pub struct Issued {
    pub body: TokenOut,
    pub access: String,
    pub refresh: String,
}

async fn issue(
    state: &AppState,
    tx: &mut Tx,
    user: &User,
    session: Uuid,
    workspace: Option<(Uuid, Role)>,
) -> ApiResult<Issued> {
    let cfg = state.config();
    let (access, _) = state.keys().issue(
        TokenType::Access,
        user.id,
        &user.email,
        session,
        workspace,
        cfg.access_token_ttl,
    );
    let (refresh, jti) = state.keys().issue(
        TokenType::Refresh,
        user.id,
        &user.email,
        session,
        workspace,
        cfg.refresh_token_ttl,
    );
    let expires =
        Utc::now() + chrono::Duration::from_std(cfg.refresh_token_ttl).expect("bounded by config");
    store::insert_refresh_token(
        &mut **tx,
        &hash_id(jti.as_bytes()),
        session,
        workspace.map(|w| w.0),
        expires,
    )
    .await?;
    Ok(Issued {
        body: TokenOut {
            access_token: access.clone(),
            refresh_token: refresh.clone(),
            token_type: "bearer",
            expires_in: cfg.access_token_ttl.as_secs(),
        },
        access,
        refresh,
    })
}

fn invalid_login() -> ApiError {
    ApiError::unauthorized("Invalid email or password")
}

pub async fn login(state: &AppState, input: LoginInput, origin: &Origin) -> ApiResult<Issued> {
    let email = email_field(&input.email).map_err(ApiError::field)?;
    if input.password.chars().count() > ghostworks_domain::limits::PASSWORD_MAX {
        return Err(ApiError::field(FieldError::body(
            "password",
            "string_too_long",
            "Password is too long",
        )));
    }
    let cfg = state.config();
    if cfg.common.environment == Environment::Production && DEMO_EMAILS.contains(&email.as_str()) {
        return Err(ApiError::unauthorized(
            "Demo credentials are disabled in production environments",
        ));
    }
    let limiter = state.limiter();
    if let Some(retry_after) = limiter
        .lockout_remaining(email.as_str(), cfg.login_max_failures)
        .await
    {
        state
            .metrics()
            .rate_limited
            .with_label_values(&["login_lockout"])
            .inc();
        return Err(ApiError::TooManyRequests {
            retry_after,
            message: format!("Too many failed logins for this account. Retry in {retry_after} s."),
        });
    }
    let user = users::by_email(state.db(), email.as_str()).await?;
    // Unknown accounts still pay for one hash, so timing does not reveal which e-mails exist.
    let stored = user
        .as_ref()
        .map(|u| u.hashed_password.clone())
        .unwrap_or_else(|| state.dummy_hash().to_string());
    let ok = password::verify(input.password, stored).await? && user.is_some();
    let attempts = &state.metrics().auth_attempts;
    let Some(user) = user.filter(|_| ok) else {
        attempts.with_label_values(&["false", "password"]).inc();
        let locked = limiter
            .record_failure(email.as_str(), cfg.login_max_failures, cfg.login_lockout)
            .await;
        let mut tx = state.db().begin().await?;
        audit_event(
            &mut tx,
            None,
            None,
            "auth.login_failed",
            json!({ "email_hash": hex::encode(&hash_id(email.as_str().as_bytes())[..8]) }),
            origin,
        )
        .await?;
        if locked {
            state.metrics().lockouts.inc();
            audit_event(
                &mut tx,
                None,
                None,
                "auth.account_locked",
                json!({ "email_hash": hex::encode(&hash_id(email.as_str().as_bytes())[..8]) }),
                origin,
            )
            .await?;
        }
        tx.commit().await?;
        return Err(invalid_login());
    };
    if !user.is_active {
        return Err(ApiError::unauthorized("User account is inactive"));
    }
    if cfg.require_email_verification && !user.is_verified {
        return Err(ApiError::forbidden(
            "email_not_verified",
            "Verify your e-mail address before logging in",
        ));
    }
    limiter.clear_failures(email.as_str()).await;
    let mut tx = state.db().begin().await?;
    let session_expires =
        Utc::now() + chrono::Duration::from_std(cfg.refresh_token_ttl).expect("bounded by config");
    let session = store::create_session(&mut *tx, user.id, session_expires).await?;
    let issued = issue(state, &mut tx, &user, session, None).await?;
    audit_event(
        &mut tx,
        None,
        Some(user.id),
        "auth.login",
        json!({ "session_id": session }),
        origin,
    )
    .await?;
    tx.commit().await?;
    attempts.with_label_values(&["true", "password"]).inc();
    Ok(issued)
}

/// Spends a refresh token and issues the next pair of its session, keeping its workspace
/// context when the caller is still a member.
pub async fn refresh(state: &AppState, token: &str, origin: &Origin) -> ApiResult<Issued> {
    let claims = state
        .keys()
        .verify(token, TokenType::Refresh)
        .map_err(crate::extract::token_error)?;
    let mut tx = state.db().begin().await?;
    match store::use_refresh_token(&mut tx, &hash_id(claims.jti.as_bytes())).await? {
        RefreshUse::Invalid => Err(ApiError::unauthorized("Refresh token expired or revoked")),
        RefreshUse::Reused { session, user } => {
            audit_event(
                &mut tx,
                None,
                Some(user),
                "auth.refresh_reuse_detected",
                json!({ "session_id": session }),
                origin,
            )
            .await?;
            tx.commit().await?;
            state.metrics().refresh_reuse.inc();
            tracing::warn!(user_id = %user, session_id = %session, "refresh token reuse: session revoked");
            Err(ApiError::unauthorized(
                "Refresh token reuse detected; the session has been revoked",
            ))
        }
        RefreshUse::Fresh {
            session,
            user,
            tenant,
        } => {
            let user = users::by_id(&mut *tx, user)
                .await?
                .filter(|u| u.is_active)
                .ok_or_else(|| ApiError::unauthorized("User not found or inactive"))?;
            let workspace = match tenant {
                Some(t) => {
                    ghostworks_db::set_scope(&mut tx, Some(t), Some(user.id)).await?;
                    let role = workspaces::role_of(&mut tx, t, user.id)
                        .await?
                        .map(|(r, _)| (t, r));
                    ghostworks_db::set_scope(&mut tx, None, None).await?;
                    role
                }
                None => None,
            };
            let issued = issue(state, &mut tx, &user, session, workspace).await?;
            state.metrics().token_refreshes.inc();
            tx.commit().await?;
            Ok(issued)
        }
    }
}

pub async fn logout(state: &AppState, user: Uuid, session: Uuid, origin: &Origin) -> ApiResult<()> {
    let mut tx = state.db().begin().await?;
    store::revoke_session(&mut *tx, session, "logout").await?;
    audit_event(
        &mut tx,
        None,
        Some(user),
        "auth.logout",
        json!({ "session_id": session }),
        origin,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Tokens scoped to a workspace the caller belongs to (checked by the caller's `Ws`).
pub async fn switch(
    state: &AppState,
    tx: &mut Tx,
    user: &User,
    session: Uuid,
    workspace: Uuid,
    role: Role,
) -> ApiResult<Issued> {
    issue(state, tx, user, session, Some((workspace, role))).await
}

async fn audit_event(
    tx: &mut Tx,
    tenant: Option<Uuid>,
    actor: Option<Uuid>,
    action: &str,
    details: serde_json::Value,
    origin: &Origin,
) -> ApiResult<()> {
    audit::record(
        &mut **tx,
        audit::Event {
            tenant,
            actor,
            action,
            details,
            ip: origin.ip.clone(),
            request_id: origin.request_id.as_deref(),
        },
    )
    .await?;
    Ok(())
}

/// The session cookies: HttpOnly tokens (the refresh token only travels to the auth routes)
/// and a script-readable CSRF token for the double-submit check.
pub fn set_session_cookies(state: &AppState, jar: CookieJar, issued: &Issued) -> CookieJar {
    let cfg = state.config();
    let csrf = random_token();
    jar.add(cookie(
        state,
        ACCESS_COOKIE,
        issued.access.clone(),
        "/",
        cfg.access_token_ttl,
        true,
    ))
    .add(cookie(
        state,
        REFRESH_COOKIE,
        issued.refresh.clone(),
        "/api/v1/auth",
        cfg.refresh_token_ttl,
        true,
    ))
    .add(cookie(
        state,
        CSRF_COOKIE,
        csrf,
        "/",
        cfg.refresh_token_ttl,
        false,
    ))
}

pub fn clear_session_cookies(state: &AppState, jar: CookieJar) -> CookieJar {
    [
        (ACCESS_COOKIE, "/", true),
        (REFRESH_COOKIE, "/api/v1/auth", true),
        (CSRF_COOKIE, "/", false),
    ]
    .into_iter()
    .fold(jar, |jar, (name, path, http_only)| {
        jar.add(cookie(
            state,
            name,
            String::new(),
            path,
            std::time::Duration::ZERO,
            http_only,
        ))
    })
}

fn cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    path: &'static str,
    ttl: std::time::Duration,
    http_only: bool,
) -> Cookie<'static> {
    let cfg = state.config();
    let mut c = Cookie::build((name, value))
        .path(path)
        .http_only(http_only)
        .secure(cfg.cookie_secure)
        .same_site(match cfg.cookie_samesite {
            ghostworks_config::SameSite::Strict => SameSite::Strict,
            ghostworks_config::SameSite::Lax => SameSite::Lax,
            ghostworks_config::SameSite::None => SameSite::None,
        })
        .max_age(time::Duration::seconds(ttl.as_secs() as i64))
        .build();
    if let Some(d) = &cfg.cookie_domain {
        c.set_domain(d.clone());
    }
    c
}
