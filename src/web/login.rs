//! Logging in and out, and changing one's password (which ends every
//! other session of the account).

use std::net::SocketAddr;
use std::time::Instant;

use askama::Template;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Form;
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

use super::session::{self, Viewer, SESSION_COOKIE};
use super::view::{render, Nav};
use super::{see_other, WebError, WebState};
use crate::store::users::Email;

#[derive(Template)]
#[template(path = "web/login.html")]
struct LoginPage {
    next: String,
    email: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only a path of this site may follow a login, never another origin.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with("/app/")
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/app/inbox".to_owned(),
    }
}

pub async fn page(Query(query): Query<NextQuery>) -> Result<Response, WebError> {
    render(&LoginPage {
        next: safe_next(query.next.as_deref()),
        email: String::new(),
        error: None,
    })
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

const BAD_LOGIN: &str = "that email and password do not match an account";

pub async fn submit(
    State(state): State<WebState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Result<Response, WebError> {
    let next = safe_next(form.next.as_deref());
    let now = Instant::now();
    let email_key = format!("email:{}", form.email.trim().to_lowercase());
    let peer_key = format!("peer:{}", peer.ip());
    for key in [&email_key, &peer_key] {
        if let Some(retry_after_secs) = state.limiter.blocked(key, now) {
            tracing::warn!(key = %key, "login throttled");
            return Err(WebError::TooManyAttempts { retry_after_secs });
        }
    }
    let found = match Email::parse(&form.email) {
        Ok(email) => state.app.store.user_for_login(&email).await?,
        Err(_) => None,
    };
    let password = form.password.clone();
    // Verifying takes tens of milliseconds of CPU: off the async workers.
    let user = tokio::task::spawn_blocking(move || match found {
        Some((user, hash)) if !user.disabled && session::verify_password(&password, &hash) => {
            Some(user)
        }
        _ => None,
    })
    .await
    .map_err(|e| WebError::Internal(format!("password check: {e}")))?;
    let Some(user) = user else {
        state.limiter.fail(&email_key, now);
        state.limiter.fail(&peer_key, now);
        let mut response = render(&LoginPage {
            next,
            email: form.email,
            error: Some(BAD_LOGIN.into()),
        })?;
        *response.status_mut() = axum::http::StatusCode::UNAUTHORIZED;
        return Ok(response);
    };
    state.limiter.clear(&email_key);
    let cookie = session::start_session(&state, &headers, &user).await?;
    tracing::info!(user = %user.id, "workbench login");
    Ok((jar.add(cookie), see_other(&next)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

pub async fn logout(
    State(state): State<WebState>,
    viewer: Viewer,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    state.app.store.delete_session(&viewer.session_hash).await?;
    let mut gone = Cookie::from(SESSION_COOKIE);
    gone.set_path("/");
    Ok((jar.remove(gone), see_other("/app/login")).into_response())
}

#[derive(Template)]
#[template(path = "web/account.html")]
struct AccountPage {
    nav: Nav,
    email: String,
    language: String,
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NoticeQuery {
    changed: Option<String>,
}

pub async fn account(
    viewer: Viewer,
    Query(query): Query<NoticeQuery>,
) -> Result<Response, WebError> {
    render(&AccountPage {
        nav: Nav::new(&viewer, "account"),
        email: viewer.user.email.as_str().to_owned(),
        language: viewer.user.language.clone(),
        notice: query
            .changed
            .map(|_| "Password changed; other sessions were logged out.".into()),
    })
}

#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    csrf: String,
    current: String,
    new_password: String,
}

pub async fn change_password(
    State(state): State<WebState>,
    viewer: Viewer,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<PasswordForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    session::check_new_password(&form.new_password)?;
    let user = viewer.user.clone();
    let (_, stored) = state
        .app
        .store
        .user_for_login(&user.email)
        .await?
        .ok_or_else(|| WebError::NotFound("account".into()))?;
    let current = form.current.clone();
    let new_password = form.new_password.clone();
    let hash = tokio::task::spawn_blocking(move || {
        if session::verify_password(&current, &stored) {
            session::hash_password(&new_password).map(Some)
        } else {
            Ok(None)
        }
    })
    .await
    .map_err(|e| WebError::Internal(format!("password change: {e}")))??;
    let Some(hash) = hash else {
        return Err(WebError::Invalid(
            "the current password is not right".into(),
        ));
    };
    state
        .app
        .store
        .set_password(user.tenant_id, user.id, &hash, &user.actor())
        .await?;
    // Every session ended, this one too: start a fresh one here.
    let cookie = session::start_session(&state, &headers, &user).await?;
    Ok((jar.add(cookie), see_other("/app/account?changed=1")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_follow_a_login() {
        assert_eq!(safe_next(Some("/app/c/1?x=2")), "/app/c/1?x=2");
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil",
            "/api/v1/x",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/app/inbox", "{bad}");
        }
        assert_eq!(safe_next(None), "/app/inbox");
    }
}
