//! `POST /api/v1/understand/reload`: retrains the intent and sentiment
//! classifiers from the exemplar folders now, without a restart, and says
//! what they learned from.
//!
//! The classifiers serve every tenant and the folders are the operator's,
//! so only an operator token may ask. One training runs at a time (a call
//! during another gets 409) and calls are spaced by
//! `access.reload_min_interval_secs` (429), so the endpoint cannot tie up
//! the cores or the blocking threads. Files are named relative to their
//! folder (`intents/th.jsonl`), never by a server path.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::Operator;
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
    /// The exemplar files read, relative to their folder:
    /// `intents/th.jsonl`, `sentiment/en.jsonl`.
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
    responses(
        (status = 200, description = "Retrained and in use", body = ReloadResponse),
        (status = 409, description = "A retraining is already running", body = ErrorBody),
        (status = 422, description = "An exemplar file is wrong; the previous classifiers stay", body = ErrorBody),
        (status = 500, description = "Training failed; the previous classifiers stay", body = ErrorBody),
        (status = 503, description = "This server runs without the embedding model", body = ErrorBody),
    )
)]
pub async fn reload(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<ReloadResponse>, ApiError> {
    let stage = state.understand.get().ok_or_else(|| {
        ApiError::NotReady(
            "the understand stage needs the embedding model, which is not loaded".into(),
        )
    })?;
    tracing::info!(actor = %operator.actor(), "classifier retraining requested");
    let min_interval =
        std::time::Duration::from_secs(state.access.settings.reload_min_interval_secs);
    let report = stage
        .try_reload(min_interval)
        .await
        .map_err(|err| match err {
            ReloadError::Exemplars(message) => ApiError::Invalid(stage.redact_paths(&message)),
            ReloadError::NoSources => ApiError::NotReady(err.to_string()),
            ReloadError::Busy => ApiError::Conflict(err.to_string()),
            ReloadError::TooSoon(ago) => ApiError::Throttled {
                message: format!(
                    "the last retraining was asked for {}s ago; at most one per {}s",
                    ago.as_secs(),
                    min_interval.as_secs()
                ),
                retry_after_secs: min_interval.saturating_sub(ago).as_secs().max(1),
            },
            ReloadError::Training(message) => ApiError::Internal(message),
        })?;
    Ok(Json(ReloadResponse {
        exemplars: report.exemplars,
        intents: report.intents,
        languages: report.languages,
        intent_languages: report.intent_languages,
        sentiment: report.sentiment,
        files: report.files.iter().map(|p| stage.display_path(p)).collect(),
        training_seconds: report.seconds,
    }))
}
