//! `ApiError`: the one place errors meet HTTP. Every failure a handler can
//! report is a variant here, turned into a status, headers and a JSON body
//! `{"error": {"code", "type", "message"}}` (the shape OpenAI's clients
//! parse) by one exhaustive match. Server-side
//! failures answer with a generic message; the real cause is logged.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::channels::ChannelError;
use crate::domain::ValidationError;
use crate::engine::EngineError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    MalformedRequest(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid or revoked token")]
    InvalidToken,
    #[error("this token has expired")]
    ExpiredToken,
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// Too many requests from this caller: failed authentications, or a
    /// tenant's share of the models.
    #[error("{message}")]
    Throttled {
        message: String,
        retry_after_secs: u64,
    },
    /// A webhook or widget request whose signature or secret does not
    /// check out (no `WWW-Authenticate`: it is not a bearer-token route).
    #[error("{0}")]
    BadSignature(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{0}")]
    Conflict(String),
    #[error("server busy, retry in {retry_after_secs} s")]
    Unavailable { retry_after_secs: u64 },
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after_secs: u64,
    },
    #[error("{message}")]
    ModelUnavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// A capability this server was started without (a model that is not
    /// loaded); retrying will not help until the operator acts.
    #[error("{0}")]
    NotReady(String),
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_request`.
    pub code: &'static str,
    /// The error's class, as OpenAI's clients expect, e.g.
    /// `invalid_request_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What was wrong, naming the bad field or value.
    pub message: String,
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        ApiError::Invalid(err.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { what } => ApiError::NotFound { what },
            StoreError::AlreadyExists { what } => {
                ApiError::Conflict(format!("{what} already exists"))
            }
            StoreError::Conflict(what) => ApiError::Conflict(what),
            StoreError::Busy(_) => ApiError::Unavailable {
                retry_after_secs: 1,
            },
            StoreError::Database(sqlx::Error::PoolTimedOut) => ApiError::Unavailable {
                retry_after_secs: 1,
            },
            other @ (StoreError::Corrupt(_)
            | StoreError::Credentials(_)
            | StoreError::Database(_)
            | StoreError::Migration(_)
            | StoreError::Schema(_)
            | StoreError::DataDir { .. }) => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<ChannelError> for ApiError {
    fn from(err: ChannelError) -> Self {
        match err {
            ChannelError::MissingSignature
            | ChannelError::BadSignature
            | ChannelError::Replay { .. } => ApiError::BadSignature(err.to_string()),
            ChannelError::MalformedPush(_) => ApiError::MalformedRequest(err.to_string()),
            ChannelError::Invalid(e) => ApiError::Invalid(e.to_string()),
            ChannelError::NotAllowed(reason) => ApiError::Invalid(reason),
            ChannelError::UnknownShop { .. }
            | ChannelError::UnknownThread { .. }
            | ChannelError::NotConnected => ApiError::NotFound {
                what: err.to_string(),
            },
            ChannelError::Store(e) => ApiError::from(e),
            ChannelError::Credentials(_) | ChannelError::Api(_) => {
                ApiError::Internal(err.to_string())
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        let retry_secs = |after: std::time::Duration| after.as_secs().max(1);
        match err {
            EngineError::UnknownModel { model, available } => ApiError::NotFound {
                what: format!("model `{model}` (available: {available})"),
            },
            EngineError::WrongKind { .. } | EngineError::Invalid(_) => {
                ApiError::Invalid(err.to_string())
            }
            EngineError::Overloaded { retry_after, .. } => ApiError::Overloaded {
                retry_after_secs: retry_secs(retry_after),
                message: err.to_string(),
            },
            EngineError::Unavailable { retry_after, .. } => ApiError::ModelUnavailable {
                retry_after_secs: retry_secs(retry_after),
                message: err.to_string(),
            },
            EngineError::Inference(_) | EngineError::WorkerPanicked { .. } => {
                ApiError::Internal(err.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        const INVALID: &str = "invalid_request_error";
        let (status, code, kind) = match &self {
            ApiError::MalformedRequest(_) => {
                (StatusCode::BAD_REQUEST, "malformed_request", INVALID)
            }
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", INVALID),
            ApiError::PayloadTooLarge(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", INVALID)
            }
            ApiError::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                INVALID,
            ),
            ApiError::MissingToken => (
                StatusCode::UNAUTHORIZED,
                "missing_token",
                "authentication_error",
            ),
            ApiError::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "authentication_error",
            ),
            ApiError::ExpiredToken => (
                StatusCode::UNAUTHORIZED,
                "expired_token",
                "authentication_error",
            ),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "permission_error"),
            ApiError::Throttled { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "rate_limit_error",
            ),
            ApiError::BadSignature(_) => (
                StatusCode::UNAUTHORIZED,
                "bad_signature",
                "authentication_error",
            ),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", "not_found_error"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict", INVALID),
            ApiError::Unavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "server_error",
            ),
            ApiError::Overloaded { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "rate_limit_error",
            ),
            ApiError::ModelUnavailable { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                "server_error",
            ),
            ApiError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready", "server_error"),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "server_error",
            ),
        };
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                "internal server error".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code,
                    kind,
                    message,
                },
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::MissingToken | ApiError::InvalidToken | ApiError::ExpiredToken => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable { retry_after_secs }
            | ApiError::Throttled {
                retry_after_secs, ..
            }
            | ApiError::Overloaded {
                retry_after_secs, ..
            }
            | ApiError::ModelUnavailable {
                retry_after_secs, ..
            } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::MalformedRequest(_)
            | ApiError::BadSignature(_)
            | ApiError::Invalid(_)
            | ApiError::PayloadTooLarge(_)
            | ApiError::UnsupportedMediaType(_)
            | ApiError::NotFound { .. }
            | ApiError::Conflict(_)
            | ApiError::Forbidden(_)
            | ApiError::NotReady(_)
            | ApiError::Internal(_) => {}
        }
        response
    }
}
