//! The browser session: the tokens the auth service issued, as cookies. HttpOnly tokens (the
//! refresh token only travels to the auth routes) and a script-readable CSRF token for the
//! double-submit check.

use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use ghostworks_auth::{random_token, Issued};

use crate::extract::{ACCESS_COOKIE, CSRF_COOKIE, REFRESH_COOKIE};
use crate::AppState;

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
