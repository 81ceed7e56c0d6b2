//! `POST /api/v1/understand/reload`: retrains the intent and sentiment
//! classifiers from the exemplar folders now, without a restart, and says
//! what they learned from.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::Tenant;
use super::AppState;
use crate::pipeline::stages::ReloadError;

#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadResponse {
    /// Intent and sentiment exemplars trained on.
    #[schema(example = 1834)]
    pub exemplars: usize,
    /// Intent exemplars per intent.
    pub intents: BTreeMap<String, usize>,
    /// Intent exemplars per language (the file's name: `th` for `th.jsonl`).
    pub languages: BTreeMap<String, usize>,
    /// Intent exemplars per intent and language.
    pub intent_languages: BTreeMap<String, BTreeMap<String, usize>>,
    /// Sentiment exemplars per label; empty without a sentiment folder.
    pub sentiment: BTreeMap<String, usize>,
    /// The exemplar files read.
    pub files: Vec<String>,
    /// Reading, embedding new exemplars and fitting every classifier.
    #[schema(example = 2.4)]
    pub training_seconds: f64,
}

/// Retrain the classifiers from the exemplar folders.
///
/// Reads every `.jsonl` file of the configured intent and sentiment
/// exemplar folders, trains every classifier on them and swaps the new
/// ones in; messages are understood with the previous ones meanwhile. A
/// file with a bad line is rejected with its `FILE:LINE` and the previous
/// classifiers stay. Only new exemplars are embedded, so a retraining takes
/// seconds. The folders are also checked for changes every
/// `pipeline.exemplars_poll_secs` seconds.
#[utoipa::path(
    post,
    path = "/api/v1/understand/reload",
    tag = "understand",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Retrained and in use", body = ReloadResponse),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "An exemplar file is wrong; the previous classifiers stay", body = ErrorBody),
        (status = 500, description = "Training failed; the previous classifiers stay", body = ErrorBody),
        (status = 503, description = "This server runs without the embedding model", body = ErrorBody),
    )
)]
pub async fn reload(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<ReloadResponse>, ApiError> {
    let stage = state.understand.get().ok_or_else(|| {
        ApiError::NotReady(
            "the understand stage needs the embedding model, which is not loaded".into(),
        )
    })?;
    tracing::info!(actor = %tenant.actor(), "classifier retraining requested");
    let report = stage.reload().await.map_err(|err| match err {
        ReloadError::Exemplars(message) => ApiError::Invalid(message),
        ReloadError::NoSources => ApiError::NotReady(err.to_string()),
        ReloadError::Training(message) => ApiError::Internal(message),
    })?;
    Ok(Json(ReloadResponse {
        exemplars: report.exemplars,
        intents: report.intents,
        languages: report.languages,
        intent_languages: report.intent_languages,
        sentiment: report.sentiment,
        files: report
            .files
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        training_seconds: report.seconds,
    }))
}
