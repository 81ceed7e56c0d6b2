//! The learning loop over the API: `POST /api/v1/learning/corrections` (an
//! agent's intent correction, retrained and measured in the background),
//! `GET /api/v1/learning/heads` (the tenant's versions with their
//! before/after figures and verdicts, and its learned exemplars), and
//! `POST /api/v1/learning/heads/rollback` (the previous version back in
//! one action). Wire types only; the loop is `crate::learning`'s.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, Tenant};
use super::v1::check_conversation_shop;
use super::AppState;
use crate::domain::MessageId;
use crate::learning::{Correction, LearningError};
use crate::store::learning::{HeadVersion, LearnedExemplar};

impl From<LearningError> for ApiError {
    fn from(err: LearningError) -> Self {
        match err {
            LearningError::NotReady(message) => ApiError::NotReady(message),
            LearningError::Invalid(message) => ApiError::Invalid(message),
            LearningError::NotFound(what) => ApiError::NotFound { what },
            LearningError::Conflict(message) => ApiError::Conflict(message),
            LearningError::Training(message) => ApiError::Internal(message),
            LearningError::Store(err) => err.into(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CorrectionRequest {
    /// The buyer message whose intent kedai misread.
    pub message_id: String,
    /// The intent it has: one of the classifiers' intents.
    #[schema(example = "order_status")]
    pub intent: String,
}

/// A learned exemplar as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExemplarDto {
    pub id: String,
    pub message_id: Option<String>,
    pub text: String,
    pub intent: String,
    /// What kedai had read.
    pub previous_intent: Option<String>,
    /// `pending`, `live`, `refused` or `rolled_back`.
    pub status: String,
    pub version_id: Option<String>,
    pub created_by: String,
    pub created_at: String,
}

impl From<LearnedExemplar> for ExemplarDto {
    fn from(e: LearnedExemplar) -> Self {
        ExemplarDto {
            id: e.id.to_string(),
            message_id: e.message_id.map(|m| m.to_string()),
            text: e.text,
            intent: e.label,
            previous_intent: e.previous_label,
            status: e.status.as_str().into(),
            version_id: e.version_id.map(|v| v.to_string()),
            created_by: e.created_by,
            created_at: e.created_at.to_rfc3339(),
        }
    }
}

/// One retraining of the tenant's classifiers.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDto {
    pub id: String,
    /// 1, 2, 3 ... for this tenant.
    pub number: i64,
    pub exemplars: usize,
    pub promoted: bool,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The version this tenant's messages are understood with now.
    pub active: bool,
    /// Before/after figures (`routing`, `accuracy`, `safety`, each
    /// `correct` of `total`), the cases that got worse (`regressions`) or
    /// better (`fixes`), and the verdict's `reasons`.
    #[schema(value_type = Object)]
    pub comparison: serde_json::Value,
    pub created_by: String,
    pub created_at: String,
}

impl From<HeadVersion> for VersionDto {
    fn from(v: HeadVersion) -> Self {
        VersionDto {
            id: v.id.to_string(),
            number: v.number,
            exemplars: v.exemplar_ids.len(),
            promoted: v.promoted,
            reason: v.reason,
            active: v.active,
            comparison: v.comparison,
            created_by: v.created_by,
            created_at: v.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HeadsDto {
    /// `shared` (kedai's classifiers) or `tenant` (retrained with this
    /// tenant's corrections).
    pub using: String,
    /// Newest first.
    pub versions: Vec<VersionDto>,
    /// Oldest first.
    pub exemplars: Vec<ExemplarDto>,
}

/// Correct the intent kedai read in a buyer message.
///
/// The message's text becomes this tenant's labelled exemplar, and the
/// tenant's classifiers retrain in the background. The retrained ones are
/// measured against the tenant's confirmed history and the shipped
/// evaluation set first, and used only when routing, safety and accuracy
/// do not get worse; `GET /api/v1/learning/heads` shows the outcome. No
/// other tenant's classifiers change.
#[utoipa::path(
    post,
    path = "/api/v1/learning/corrections",
    tag = "learning",
    request_body = CorrectionRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Recorded; retraining in the background", body = ExemplarDto),
        (status = 422, description = "An unknown intent, not a buyer's message, or what kedai read already", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such message for this tenant", body = ErrorBody),
        (status = 503, description = "The embedding model is not loaded", body = ErrorBody),
    )
)]
pub async fn correct(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiJson(request): ApiJson<CorrectionRequest>,
) -> Result<(StatusCode, Json<ExemplarDto>), ApiError> {
    let message: MessageId = request.message_id.trim().parse().map_err(|_| {
        ApiError::Invalid(format!(
            "`message_id` must be a message id, got {:?}",
            request.message_id
        ))
    })?;
    let conversation = state
        .store
        .message_conversation(tenant.id, message)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            what: format!("message {message}"),
        })?;
    check_conversation_shop(&state, &tenant, conversation).await?;
    let exemplar = state
        .learning
        .correct(
            tenant.id,
            &Correction {
                message,
                intent: request.intent.trim().to_owned(),
                actor: tenant.actor(),
            },
        )
        .await?;
    state
        .learning
        .retrain_in_background(tenant.id, tenant.actor());
    Ok((StatusCode::ACCEPTED, Json(exemplar.into())))
}

/// The tenant's classifier versions and learned exemplars.
#[utoipa::path(
    get,
    path = "/api/v1/learning/heads",
    tag = "learning",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Versions, newest first, with their comparisons", body = HeadsDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn heads(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<HeadsDto>, ApiError> {
    let (versions, exemplars) = state.learning.overview(tenant.id).await?;
    Ok(Json(HeadsDto {
        using: if versions.iter().any(|v| v.active) {
            "tenant"
        } else {
            "shared"
        }
        .into(),
        versions: versions.into_iter().map(Into::into).collect(),
        exemplars: exemplars.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RollbackDto {
    /// The version now in use; `null`: kedai's shared classifiers.
    pub active: Option<VersionDto>,
}

/// Restore the previous classifier version.
///
/// The version promoted before the active one is fitted again (fitting is
/// deterministic, so it reads messages exactly as it did) and used for
/// this tenant's messages; with none before it, the tenant goes back to
/// kedai's shared classifiers. The corrections only the abandoned version
/// held become `rolled_back` and are not trained on again.
#[utoipa::path(
    post,
    path = "/api/v1/learning/heads/rollback",
    tag = "learning",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rolled back", body = RollbackDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 409, description = "The tenant already uses the shared classifiers", body = ErrorBody),
        (status = 503, description = "The embedding model is not loaded", body = ErrorBody),
    )
)]
pub async fn rollback(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<RollbackDto>, ApiError> {
    let active = state.learning.rollback(tenant.id, &tenant.actor()).await?;
    Ok(Json(RollbackDto {
        active: active.map(Into::into),
    }))
}
