//! Extractors that turn axum's rejections into [`ApiError`]s and hand
//! handlers the caller that [`authorize`](super::access::authorize) admitted.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

pub use super::access::{Operator, Tenant, Viewer};
use super::error::ApiError;
use super::AppState;
use crate::auth::Scope;

/// `axum::Json` whose failures become JSON errors with the right status.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let message = rejection.body_text();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::PayloadTooLarge("request body is larger than the configured limit".into())
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "expected a request with `Content-Type: application/json`".into(),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::Invalid(message),
        _ => ApiError::MalformedRequest(message),
    }
}

/// `axum::extract::Query` whose failures become 400s naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::MalformedRequest(rejection.body_text())
}

/// The tenant behind the request's token, as [`authorize`](super::access::authorize) found
/// it. A route without an entry in [`ROUTES`](super::access::ROUTES) has none, and the
/// request is refused: access fails closed.
impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Tenant>()
            .cloned()
            .ok_or_else(|| no_rule(parts))
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Operator>()
            .copied()
            .ok_or_else(|| no_rule(parts))
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        if parts.extensions.get::<Operator>().is_some() {
            return Ok(Viewer::Operator);
        }
        Ok(match parts.extensions.get::<Tenant>() {
            Some(tenant) if tenant.scopes.allows(Scope::Admin) => Viewer::TenantAdmin,
            _ => Viewer::Anonymous,
        })
    }
}

fn no_rule(parts: &Parts) -> ApiError {
    ApiError::Internal(format!(
        "{} {} has no entry in the access table",
        parts.method,
        parts.uri.path()
    ))
}
