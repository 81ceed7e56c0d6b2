//! The workbench's errors and the one place they become responses: a
//! login redirect, or an escaped error page with the right status. Server
//! errors show a generic page; the cause is logged.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::domain::ValidationError;
use crate::kb::KbError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// No live session: go to the login page, then back to `next`.
    #[error("login required")]
    LoginRequired { next: String },
    #[error("{0} not found")]
    NotFound(String),
    /// Signed in, but this user may not do or see it.
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("the form expired; reload the page and try again")]
    BadCsrf,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kb(#[from] KbError),
}

impl From<ValidationError> for WebError {
    fn from(err: ValidationError) -> Self {
        WebError::Invalid(format!("{}: {}", err.field, err.problem))
    }
}

#[derive(Template)]
#[template(path = "web/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: String,
}

fn page(status: StatusCode, title: &str, message: String) -> Response {
    let body = ErrorPage {
        status: status.as_u16(),
        title,
        message,
    }
    .render()
    .unwrap_or_else(|_| title.to_owned());
    (status, Html(body)).into_response()
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        match self {
            WebError::LoginRequired { next } => {
                let location = format!("/app/login?next={}", encode_path(&next));
                let mut response = StatusCode::SEE_OTHER.into_response();
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                response
            }
            WebError::NotFound(_) => page(StatusCode::NOT_FOUND, "Not found", message),
            WebError::Forbidden(_) => page(StatusCode::FORBIDDEN, "Not allowed", message),
            WebError::BadCsrf => page(StatusCode::FORBIDDEN, "Form expired", message),
            WebError::Invalid(_) => page(StatusCode::UNPROCESSABLE_ENTITY, "Not saved", message),
            WebError::Conflict(_) => page(StatusCode::CONFLICT, "Already done", message),
            WebError::TooManyAttempts { retry_after_secs } => {
                let mut response = page(StatusCode::TOO_MANY_REQUESTS, "Slow down", message);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
            WebError::Unavailable(_) => {
                page(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message)
            }
            WebError::Store(StoreError::NotFound { what }) => page(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("{what} not found"),
            ),
            WebError::Store(StoreError::AlreadyExists { what }) => page(
                StatusCode::CONFLICT,
                "Already exists",
                format!("{what} already exists"),
            ),
            WebError::Store(StoreError::Busy(_)) => page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                "the database is busy; try again".into(),
            ),
            WebError::Kb(KbError::NotFound { what }) => page(
                StatusCode::NOT_FOUND,
                "Not found",
                format!("{what} not found"),
            ),
            WebError::Kb(KbError::InvalidEntry(problem) | KbError::InvalidQuery(problem)) => {
                page(StatusCode::UNPROCESSABLE_ENTITY, "Not saved", problem)
            }
            WebError::Internal(_) | WebError::Store(_) | WebError::Kb(_) => {
                tracing::error!(error = %message, "workbench request failed");
                page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something went wrong",
                    "the server could not do this; it has been logged".into(),
                )
            }
        }
    }
}

/// Percent-encodes a path for a query parameter.
fn encode_path(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
