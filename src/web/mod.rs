//! The agent workbench: the web app at `/app` where people work the
//! conversations the AI hands over: inbox, conversation, approvals,
//! knowledge base, dashboard, settings and admin pages, server-rendered
//! with askama (auto-escaped) and a small embedded script for live updates
//! and keyboard shortcuts.
//!
//! Owns sessions and CSRF, page routes and templates, and the security
//! headers of its responses (a strict Content-Security-Policy: no inline
//! script or style anywhere). Reads and writes only through the store
//! traits, `KbService` and the chat model's `Writer`; knows nothing of the
//! v1 API's wire types and never renders text without escaping it.

pub mod admin;
pub mod answers;
pub mod approvals;
pub mod assets;
pub mod bench;
pub mod charts;
pub mod cli;
pub mod conversation;
pub mod dashboard;
pub mod error;
pub mod events;
pub mod inbox;
pub mod kb;
pub mod learning;
pub mod login;
pub mod policy;
pub mod session;
pub mod settings;
pub mod suggestions;
pub mod trace;
pub mod translate;
pub mod view;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use tower_http::catch_panic::CatchPanicLayer;

use crate::http::AppState;
use crate::pipeline::policy::PolicySettings;
use crate::pipeline::ports::Writer;
pub use error::WebError;
use session::LoginLimiter;

/// `[web]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    pub session_hours: u32,
    /// `auto`, `always` or `never`.
    pub secure_cookies: String,
    pub login_attempts: u32,
    pub deadline_warning_minutes: u32,
    pub currency: String,
}

impl WebSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=24 * 30).contains(&self.session_hours) {
            return Err(format!(
                "web.session_hours must be between 1 and 720, got {}",
                self.session_hours
            ));
        }
        if !matches!(self.secure_cookies.as_str(), "auto" | "always" | "never") {
            return Err(format!(
                "web.secure_cookies must be auto, always or never, got {:?}",
                self.secure_cookies
            ));
        }
        if self.login_attempts == 0 {
            return Err("web.login_attempts must be > 0, got 0".into());
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "web.currency must be an ISO 4217 code such as USD, got {:?}",
                self.currency
            ));
        }
        Ok(())
    }
}

/// Everything the workbench's handlers share.
#[derive(Clone)]
pub struct WebState {
    pub app: AppState,
    pub settings: Arc<WebSettings>,
    /// The configured routing policy, shown on the settings page.
    pub policy: Arc<PolicySettings>,
    pub limiter: Arc<LoginLimiter>,
    /// The chat model, for showing an agent's reply in the buyer's
    /// language before it is sent; `None` without models.
    pub writer: Option<Arc<dyn Writer>>,
    /// The agents' default language.
    pub agent_language: String,
    /// Fires when the server stops, ending live-update streams.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Every page's Content-Security-Policy: scripts, styles and images from
/// kedai itself only, no inline code, no framing, forms only to kedai.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The workbench's routes, to merge into the application router.
pub fn router(state: WebState) -> Router {
    let pages = Router::new()
        .route("/app", get(|| async { Redirect::to("/app/inbox") }))
        .route("/app/login", get(login::page).post(login::submit))
        .route("/app/logout", post(login::logout))
        .route(
            "/app/account",
            get(login::account).post(login::change_password),
        )
        .route("/app/inbox", get(inbox::page))
        .route("/app/events", get(events::stream))
        .route("/app/c/{id}", get(conversation::page))
        .route("/app/c/{id}/reply", post(conversation::reply))
        .route("/app/c/{id}/note", post(conversation::note))
        .route("/app/c/{id}/holder", post(conversation::holder))
        .route("/app/c/{id}/status", post(conversation::status))
        .route("/app/c/{id}/approval", post(approvals::decide))
        .route("/app/c/{id}/intent", post(learning::correct))
        .route("/app/c/{id}/route", post(learning::correct_route))
        .route("/app/learning", get(learning::page))
        .route("/app/learning/rollback", post(learning::rollback))
        .route("/app/learning/faq/{id}/accept", post(suggestions::accept))
        .route("/app/learning/faq/{id}/dismiss", post(suggestions::dismiss))
        .route("/app/approvals", get(approvals::page))
        .route("/app/kb", get(kb::page))
        .route("/app/kb/new", get(kb::new_entry))
        .route("/app/kb/translations", get(kb::translations))
        .route("/app/kb/translations/review", post(kb::review_translation))
        .route("/app/kb/{kind}/{id}", get(kb::entry).post(kb::save))
        .route("/app/dashboard", get(dashboard::page))
        .route("/app/settings", get(settings::page))
        .route("/app/settings/limits", post(settings::set_limit))
        .route("/app/settings/policy", post(policy::save))
        .route("/app/settings/policy/restore", post(policy::restore))
        .route("/app/audit", get(settings::audit))
        .route("/app/admin", get(admin::page))
        .route("/app/admin/users", post(admin::create_user))
        .route("/app/admin/users/{id}", post(admin::update_user))
        .route("/app/admin/tokens", post(admin::create_token))
        .route("/app/admin/tokens/{id}/revoke", post(admin::revoke_token))
        .route("/app/assets/{file}", get(assets::serve))
        .route(
            "/app/{*rest}",
            get(|| async { WebError::NotFound("page".into()) }),
        )
        .layer(middleware::from_fn(same_origin_posts))
        .layer(middleware::from_fn(security_headers))
        .layer(CatchPanicLayer::custom(|_| {
            WebError::Internal("handler panicked".into()).into_response()
        }))
        .with_state(state);
    Router::new()
        .route("/", get(|| async { Redirect::to("/app/inbox") }))
        .merge(pages)
}

/// Refuses a form posted from another site, whatever its cookies: the
/// browser names the page's origin, and it must be this host. (The CSRF
/// token is checked as well, by each handler.)
async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() == Method::POST {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if let (Some(origin), Some(host)) = (origin, host) {
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            if origin_host != Some(host) {
                return WebError::Forbidden("a form from another site".into()).into_response();
            }
        }
    }
    next.run(request).await
}

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A redirect after a successful form post (303, so a reload does not post
/// again).
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards the escaping and CSP invariants at their source: no template
    /// turns escaping off, and none carries inline script, style or event
    /// handlers.
    #[test]
    fn templates_never_disable_escaping_or_inline_code() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/web");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.display();
            for banned in [
                "|safe",
                "| safe",
                "|escape(\"none\")",
                "style=",
                "<style",
                " onclick",
                " onload",
                " onerror",
                " onsubmit",
                "javascript:",
            ] {
                assert!(!text.contains(banned), "{name} contains {banned:?}");
            }
            for (i, _) in text.match_indices("<script") {
                assert!(
                    text[i..].starts_with("<script src="),
                    "{name}: inline script"
                );
            }
            checked += 1;
        }
        assert!(checked >= 10, "templates found: {checked}");
    }

    #[test]
    fn the_csp_allows_no_inline_code() {
        assert!(!CSP.contains("unsafe-inline") && !CSP.contains("unsafe-eval"));
        assert!(CSP.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn web_settings_are_validated() {
        let mut settings = crate::config::Settings::defaults().web;
        assert!(settings.validate().is_ok());
        settings.secure_cookies = "sometimes".into();
        assert!(settings.validate().unwrap_err().contains("secure_cookies"));
    }
}
