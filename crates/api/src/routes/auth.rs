use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::Json;
use axum_extra::extract::CookieJar;
use ghostworks_db::workspaces;
use serde::Deserialize;

use crate::cookies::{clear_session_cookies, set_session_cookies};
use crate::dto::{CurrentWorkspace, MeOut, Message, RegisterOut, TokenOut};
use crate::error::{ApiError, ApiResult};
use crate::extract::{credential, AuthUser, Body, Origin, Query, REFRESH_COOKIE};
use crate::AppState;

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

#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterInput,
    description = "Creates an unverified account and e-mails it a verification link (sent by the worker). An address that already has an account gets the same answer, and its owner an e-mail saying someone tried (at most one an hour).",
    responses((status = 202, body = RegisterOut), (status = 422), (status = 429)))]
pub async fn register(
    State(state): State<AppState>,
    origin: Origin,
    Body(input): Body<RegisterInput>,
) -> ApiResult<(StatusCode, Json<RegisterOut>)> {
    let registration = ghostworks_auth::Registration {
        email: input.email,
        password: input.password,
        first_name: input.first_name,
        last_name: input.last_name,
    };
    let email = state.auth().register(registration, &origin.0).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RegisterOut {
            message:
                "Registration received: an e-mail with the next step is on its way to this address"
                    .into(),
            email,
            verification_required: true,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses((status = 200, body = TokenOut), (status = 401), (status = 403), (status = 422), (status = 429)))]
pub async fn login(
    State(state): State<AppState>,
    origin: Origin,
    jar: CookieJar,
    Body(input): Body<LoginInput>,
) -> ApiResult<(CookieJar, Json<TokenOut>)> {
    let issued = state
        .auth()
        .login(&input.email, input.password, &origin.0)
        .await?;
    Ok((
        set_session_cookies(&state, jar, &issued),
        Json(TokenOut::from(issued)),
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    description = "The refresh token comes as `Authorization: Bearer` or the `refresh_token` cookie (then with the CSRF header). Each token works once; a replayed token revokes its session.",
    responses((status = 200, body = TokenOut), (status = 401), (status = 403)))]
pub async fn refresh(
    State(state): State<AppState>,
    origin: Origin,
    jar: CookieJar,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<(CookieJar, Json<TokenOut>)> {
    let token = credential(&headers, &method, REFRESH_COOKIE)?
        .ok_or_else(|| ApiError::unauthorized("Refresh token required"))?;
    let issued = state.auth().refresh(&token, &origin.0).await?;
    Ok((
        set_session_cookies(&state, jar, &issued),
        Json(TokenOut::from(issued)),
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Message), (status = 401)))]
pub async fn logout(
    State(state): State<AppState>,
    user: AuthUser,
    origin: Origin,
    jar: CookieJar,
) -> ApiResult<(CookieJar, Json<Message>)> {
    state
        .auth()
        .logout(user.id(), user.claims.sid, &origin.0)
        .await?;
    Ok((
        clear_session_cookies(&state, jar),
        Json(Message::new("Logged out successfully")),
    ))
}

#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeOut), (status = 401)))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<Json<MeOut>> {
    // The workspace role is re-read from the membership, never trusted from the token.
    let current = match user.claims.tenant_id {
        Some(t) => {
            let mut tx = ghostworks_db::scoped(state.db(), Some(t), Some(user.id())).await?;
            let role = workspaces::role_of(&mut tx, t, user.id()).await?;
            let ws = workspaces::get(&mut tx, t).await?;
            tx.commit().await?;
            match (role, ws) {
                (Some((role, _)), Some(w)) => Some(CurrentWorkspace {
                    id: w.id,
                    name: w.name,
                    slug: w.slug,
                    role,
                }),
                _ => None,
            }
        }
        None => None,
    };
    Ok(Json(MeOut::new(&user.user, current)))
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct VerifyParams {
    /// The token from the verification e-mail.
    verification_token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", params(VerifyParams),
    description = "Marks the token's account verified. Tokens are single-use and expire after 48 hours; no login is needed (the link comes from an e-mail).",
    responses((status = 200, body = Message), (status = 400), (status = 422)))]
pub async fn verify_email(
    State(state): State<AppState>,
    origin: Origin,
    Query(p): Query<VerifyParams>,
) -> ApiResult<Json<Message>> {
    state
        .auth()
        .verify_email(&p.verification_token, &origin.0)
        .await?;
    Ok(Json(Message::new("Email verified successfully")))
}

#[utoipa::path(post, path = "/api/v1/auth/resend-verification", tag = "auth", request_body = EmailInput,
    description = "E-mails a new verification link when the address belongs to an unverified account. The answer is the same either way.",
    responses((status = 202, body = Message)))]
pub async fn resend_verification(
    State(state): State<AppState>,
    Body(input): Body<EmailInput>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    state.auth().resend_verification(&input.email).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Message::new(
            "If the account exists and is unverified, a new verification e-mail is on its way",
        )),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailInput {
    email: String,
}

#[utoipa::path(post, path = "/api/v1/auth/password-reset/request", tag = "auth", request_body = EmailInput,
    description = "E-mails a password reset link (valid 30 minutes, single use) when the address belongs to an active account; at most one e-mail per account per 10 minutes. The answer is the same for every address.",
    responses((status = 202, body = Message), (status = 429)))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    Body(input): Body<EmailInput>,
) -> ApiResult<(StatusCode, Json<Message>)> {
    state.auth().request_password_reset(&input.email).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Message::new(
            "If the account exists, a password reset e-mail is on its way",
        )),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetInput {
    /// The token from the reset e-mail's link.
    token: String,
    new_password: String,
}

#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = PasswordResetInput,
    description = "Sets a new password (the registration password rules apply) with a reset token, and signs the account out everywhere.",
    responses((status = 200, body = Message), (status = 400), (status = 422), (status = 429)))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    origin: Origin,
    Body(input): Body<PasswordResetInput>,
) -> ApiResult<Json<Message>> {
    state
        .auth()
        .confirm_password_reset(&input.token, input.new_password, &origin.0)
        .await?;
    Ok(Json(Message::new(
        "Password has been reset; log in with the new password",
    )))
}
