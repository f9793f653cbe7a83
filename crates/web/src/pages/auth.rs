//! Landing, registration, e-mail verification, login, logout and password reset.

use axum::extract::Query;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{nav, refused, Fetch};
use crate::api::{ApiFailure, Call, Tokens};
use crate::error::WebError;
use crate::session::Session;
use crate::views::{csrf_field, form_error, layout, notice, Field};

pub async fn landing(session: Session) -> Markup {
    layout(
        "Welcome",
        &nav(&session),
        html! {
            h1 { "Ghostworks" }
            p { "A catalog of artifacts for your team: tag them, search them, share a workspace, and keep every workspace's data to itself." }
            @if session.signed_in() {
                p { a class="button" href="/workspaces" { "Open your workspaces" } }
            } @else {
                p { a class="button" href="/login" { "Log in" } " or " a href="/register" { "create an account" } }
            }
            p { "Curious how it runs? Take the " a href="/tour" { "tour" } " (live health and counts) or open the " a href="/ops" { "operations dashboard" } "." }
        },
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Notice {
    notice: Option<String>,
    expired: Option<String>,
}

impl Notice {
    fn text(&self) -> Option<&'static str> {
        if self.expired.is_some() {
            return Some("Your session has ended; please log in again.");
        }
        Some(match self.notice.as_deref()? {
            "registered" => "Thank you. We sent an e-mail to that address: follow its link to verify it, then log in.",
            "verified" => "Your e-mail address is verified. You can log in now.",
            "resent" => "If that account exists and is unverified, a new verification e-mail is on its way.",
            "reset" => "Your password was changed and every session signed out. Log in with the new password.",
            "logged_out" => "You are logged out.",
            _ => return None,
        })
    }
}

/// An anonymous form post: on success to `to`, else the form again with the API's messages.
async fn submit(
    session: &Session,
    call: Call<'_>,
    to: &str,
    view: impl FnOnce(&ApiFailure) -> Markup,
) -> Response {
    match session.public::<Value>(call).await {
        Ok(_) => Redirect::to(to).into_response(),
        Err(e) => refused(&Fetch(false), WebError::Api(e), Value::Null, view),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RegisterForm {
    email: String,
    password: String,
    first_name: String,
    last_name: String,
}

fn register_view(session: &Session, f: &RegisterForm, err: Option<&ApiFailure>) -> Markup {
    layout(
        "Register",
        &nav(session),
        html! {
            h1 { "Create an account" }
            form class="stack" method="post" action="/register" novalidate {
                (csrf_field(session.csrf()))
                (form_error(err))
                (Field::new("E-mail", "email", &f.email).kind("email").auto("email").required().render(err))
                (Field::new("Password", "password", "").kind("password").auto("new-password").required()
                    .hint("8-128 characters with an upper-case letter, a lower-case letter, a digit and a symbol.").render(err))
                (Field::new("First name (optional)", "first_name", &f.first_name).auto("given-name").render(err))
                (Field::new("Last name (optional)", "last_name", &f.last_name).auto("family-name").render(err))
                button type="submit" { "Register" }
            }
            p { "Already registered? " a href="/login" { "Log in" } }
        },
    )
}

pub async fn register_page(session: Session) -> Markup {
    register_view(&session, &RegisterForm::default(), None)
}

fn optional(s: &str) -> Value {
    if s.trim().is_empty() {
        Value::Null
    } else {
        Value::String(s.to_string())
    }
}

pub async fn register(session: Session, Form(f): Form<RegisterForm>) -> Response {
    let body = json!({"email": f.email, "password": f.password,
        "first_name": optional(&f.first_name), "last_name": optional(&f.last_name)});
    submit(
        &session,
        Call::new(Method::POST, "/api/v1/auth/register").json(body),
        "/login?notice=registered",
        |e| register_view(&session, &f, Some(e)),
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct TokenForm {
    verification_token: String,
    token: String,
    new_password: String,
}

fn verify_view(session: &Session, token: &str, err: Option<&ApiFailure>) -> Markup {
    layout(
        "Verify your e-mail",
        &nav(session),
        html! {
            h1 { "Verify your e-mail address" }
            form class="stack" method="post" action="/verify-email" {
                (csrf_field(session.csrf()))
                (form_error(err))
                input type="hidden" name="verification_token" value=(token);
                p { "Confirm that this address is yours to finish creating your account." }
                button type="submit" { "Verify my e-mail address" }
            }
            p { "Link expired or used? " a href="/resend-verification" { "Send a new verification e-mail" } }
        },
    )
}

pub async fn verify_page(session: Session, Query(q): Query<TokenForm>) -> Markup {
    verify_view(&session, &q.verification_token, None)
}

pub async fn verify(session: Session, Form(f): Form<TokenForm>) -> Response {
    let call = Call::new(Method::POST, "/api/v1/auth/verify-email").query(vec![(
        "verification_token".into(),
        f.verification_token.clone(),
    )]);
    submit(&session, call, "/login?notice=verified", |e| {
        verify_view(&session, &f.verification_token, Some(e))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EmailForm {
    email: String,
}

fn email_view(
    session: &Session,
    title: &str,
    action: &str,
    intro: &str,
    f: &EmailForm,
    err: Option<&ApiFailure>,
    done: Option<&str>,
) -> Markup {
    layout(
        title,
        &nav(session),
        html! {
            h1 { (title) }
            (notice(done))
            p { (intro) }
            form class="stack" method="post" action=(action) novalidate {
                (csrf_field(session.csrf()))
                (form_error(err))
                (Field::new("E-mail", "email", &f.email).kind("email").auto("email").required().render(err))
                button type="submit" { "Send" }
            }
            p { a href="/login" { "Back to log in" } }
        },
    )
}

const RESEND_INTRO: &str = "Enter your address and we will send a new verification link.";
const FORGOT_INTRO: &str =
    "Enter your address and we will send a link to choose a new password (valid 30 minutes).";

pub async fn resend_page(session: Session) -> Markup {
    email_view(
        &session,
        "Resend verification",
        "/resend-verification",
        RESEND_INTRO,
        &EmailForm::default(),
        None,
        None,
    )
}

pub async fn resend(session: Session, Form(f): Form<EmailForm>) -> Response {
    let call =
        Call::new(Method::POST, "/api/v1/auth/resend-verification").json(json!({"email": f.email}));
    submit(&session, call, "/login?notice=resent", |e| {
        email_view(
            &session,
            "Resend verification",
            "/resend-verification",
            RESEND_INTRO,
            &f,
            Some(e),
            None,
        )
    })
    .await
}

pub async fn forgot_page(session: Session) -> Markup {
    email_view(
        &session,
        "Forgot your password?",
        "/forgot-password",
        FORGOT_INTRO,
        &EmailForm::default(),
        None,
        None,
    )
}

pub async fn forgot(session: Session, Form(f): Form<EmailForm>) -> Response {
    let call = Call::new(Method::POST, "/api/v1/auth/password-reset/request")
        .json(json!({"email": f.email}));
    let result = session.public::<Value>(call).await;
    let done = "If that address has an account, a reset link is on its way. Check your e-mail.";
    match result {
        Ok(_) => email_view(
            &session,
            "Forgot your password?",
            "/forgot-password",
            FORGOT_INTRO,
            &EmailForm::default(),
            None,
            Some(done),
        )
        .into_response(),
        Err(e) => refused(&Fetch(false), WebError::Api(e), Value::Null, |e| {
            email_view(
                &session,
                "Forgot your password?",
                "/forgot-password",
                FORGOT_INTRO,
                &f,
                Some(e),
                None,
            )
        }),
    }
}

fn reset_view(session: &Session, token: &str, err: Option<&ApiFailure>) -> Markup {
    layout(
        "Choose a new password",
        &nav(session),
        html! {
            h1 { "Choose a new password" }
            form class="stack" method="post" action="/reset-password" novalidate {
                (csrf_field(session.csrf()))
                (form_error(err))
                input type="hidden" name="token" value=(token);
                (Field::new("New password", "new_password", "").kind("password").auto("new-password").required()
                    .hint("8-128 characters with an upper-case letter, a lower-case letter, a digit and a symbol.").render(err))
                button type="submit" { "Set password" }
            }
            p { "Link expired? " a href="/forgot-password" { "Ask for a new one" } }
        },
    )
}

pub async fn reset_page(session: Session, Query(q): Query<TokenForm>) -> Markup {
    reset_view(&session, &q.token, None)
}

pub async fn reset(session: Session, Form(f): Form<TokenForm>) -> Response {
    let call = Call::new(Method::POST, "/api/v1/auth/password-reset/confirm")
        .json(json!({"token": f.token, "new_password": f.new_password}));
    submit(&session, call, "/login?notice=reset", |e| {
        reset_view(&session, &f.token, Some(e))
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct LoginForm {
    email: String,
    password: String,
}

fn login_view(
    session: &Session,
    f: &LoginForm,
    err: Option<&ApiFailure>,
    note: Option<&str>,
) -> Markup {
    let unverified = err.is_some_and(|e| e.code == "email_not_verified");
    layout(
        "Log in",
        &nav(session),
        html! {
            h1 { "Log in" }
            (notice(note))
            form class="stack" method="post" action="/login" novalidate {
                (csrf_field(session.csrf()))
                (form_error(err))
                @if unverified {
                    p { a href="/resend-verification" { "Send the verification e-mail again" } }
                }
                (Field::new("E-mail", "email", &f.email).kind("email").auto("username").required().render(err))
                (Field::new("Password", "password", "").kind("password").auto("current-password").required().render(err))
                button type="submit" { "Log in" }
            }
            p { a href="/forgot-password" { "Forgot your password?" } " · " a href="/register" { "Create an account" } }
        },
    )
}

pub async fn login_page(session: Session, Query(n): Query<Notice>) -> Markup {
    login_view(&session, &LoginForm::default(), None, n.text())
}

pub async fn login(session: Session, Form(f): Form<LoginForm>) -> Response {
    let call = Call::new(Method::POST, "/api/v1/auth/login")
        .json(json!({"email": f.email, "password": f.password}));
    match session.public::<Tokens>(call).await {
        Ok(tokens) => {
            session.start(tokens);
            Redirect::to("/workspaces").into_response()
        }
        Err(e) => refused(&Fetch(false), WebError::Api(e), Value::Null, |e| {
            login_view(&session, &f, Some(e), None)
        }),
    }
}

/// Ends the API session (its tokens stop working at once), clears every cookie and asks the
/// browser to drop its cache of this site.
pub async fn logout(session: Session) -> Response {
    if let Err(e) = session
        .call::<Value>(Call::new(Method::POST, "/api/v1/auth/logout"))
        .await
    {
        tracing::info!(error = %e, "logout: the API session was already over");
    }
    session.clear();
    (
        [(
            header::HeaderName::from_static("clear-site-data"),
            "\"cache\", \"storage\"",
        )],
        Redirect::to("/login?notice=logged_out"),
    )
        .into_response()
}
