//! The learning loop over the API: `POST /api/v1/learning/corrections` (an
//! agent's intent correction, retrained and measured in the background),
//! `POST /api/v1/learning/route-corrections` (an agent's route correction:
//! a person was needed, or the AI could have answered; the same loop),
//! `GET /api/v1/learning/heads` (the tenant's versions with their
//! before/after figures and verdicts, and its learned exemplars), and
//! `POST /api/v1/learning/heads/rollback` (the previous version back in
//! one action), and the suggested FAQ entries made from knowledge gaps
//! people answered (`GET /api/v1/learning/faq-suggestions`, `POST
//! …/{id}/accept` and `…/{id}/dismiss`). Wire types only; the loop is
//! `crate::learning`'s.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Tenant};
use super::v1::check_conversation_shop;
use super::AppState;
use crate::domain::MessageId;
use crate::learning::suggestions::{self, FaqEdit};
use crate::learning::{Correction, LearningError, RouteCorrection};
use crate::store::learning::{ExemplarKind, HeadVersion, LearnedExemplar};
use crate::store::suggestions::{FaqSuggestion, SuggestionStatus};
use crate::understand::routes::Route;

impl From<LearningError> for ApiError {
    fn from(err: LearningError) -> Self {
        match err {
            LearningError::NotReady(message) => ApiError::NotReady(message),
            LearningError::Invalid(message) => ApiError::Invalid(message),
            LearningError::NotFound(what) => ApiError::NotFound { what },
            LearningError::Conflict(message) | LearningError::Refused(message) => {
                ApiError::Conflict(message)
            }
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

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCorrectionRequest {
    /// The buyer message kedai sent the wrong way.
    pub message_id: String,
    /// `person`: a person was needed (the AI answered or drafted it);
    /// `auto`: the AI could have answered it (it went to a person or a
    /// draft, and a person's reply was routine).
    #[schema(example = "person")]
    pub route: String,
}

/// A learned exemplar as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExemplarDto {
    pub id: String,
    pub message_id: Option<String>,
    pub text: String,
    /// `intent` (an intent correction) or `route` (a route correction).
    pub kind: String,
    /// The intent it has; for a route correction, the intent kedai read.
    pub intent: String,
    /// For a route correction: `person` or `auto`.
    pub route: Option<String>,
    /// What kedai had read (intent corrections).
    pub previous_intent: Option<String>,
    /// What kedai had done: `send`, `draft`, `handoff` (route corrections).
    pub previous_action: Option<String>,
    /// `pending`, `live`, `refused` or `rolled_back`.
    pub status: String,
    pub version_id: Option<String>,
    pub created_by: String,
    pub created_at: String,
}

impl From<LearnedExemplar> for ExemplarDto {
    fn from(e: LearnedExemplar) -> Self {
        let route = e.kind == ExemplarKind::Route;
        ExemplarDto {
            id: e.id.to_string(),
            message_id: e.message_id.map(|m| m.to_string()),
            text: e.text,
            kind: e.kind.as_str().into(),
            intent: if route {
                e.route_intent.unwrap_or_default()
            } else {
                e.label.clone()
            },
            route: route.then_some(e.label),
            previous_intent: (!route).then(|| e.previous_label.clone()).flatten(),
            previous_action: route.then_some(e.previous_label).flatten(),
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

/// Correct where kedai sent a buyer message.
///
/// `person`: the AI answered or drafted the message and a person was
/// needed; `auto`: it went to a person or a draft, a person answered, and
/// the AI could have. The message becomes this tenant's route exemplar and
/// the tenant's heads retrain in the background: a later message of this
/// tenant close in meaning to a live `person` exemplar goes to a person
/// (reason `learned_route_person`); one close to a live `auto` exemplar
/// and read as the same intent may be answered below the usual confidence,
/// when every other rule allows. A route to the AI is refused (422) for
/// refunds, returns, cancellations, claims and bargains, for intents the
/// shop keeps for people or does not automate, and for messages that went
/// to a person for what they are (anger, a request for a person, a VIP).
/// Measured like intent corrections before it is used; no other tenant's
/// routing changes.
#[utoipa::path(
    post,
    path = "/api/v1/learning/route-corrections",
    tag = "learning",
    request_body = RouteCorrectionRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Recorded; retraining in the background", body = ExemplarDto),
        (status = 422, description = "An unknown route, not a buyer's message, not decided yet, already routed so, or a route to the AI that is never learned", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such message for this tenant", body = ErrorBody),
        (status = 503, description = "The embedding model is not loaded", body = ErrorBody),
    )
)]
pub async fn correct_route(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiJson(request): ApiJson<RouteCorrectionRequest>,
) -> Result<(StatusCode, Json<ExemplarDto>), ApiError> {
    let route = Route::parse(request.route.trim()).ok_or_else(|| {
        ApiError::Invalid(format!(
            "`route` must be person or auto, got {:?}",
            request.route
        ))
    })?;
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
        .correct_route(
            tenant.id,
            &RouteCorrection {
                message,
                route,
                actor: tenant.actor(),
            },
            &state.policy,
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

/// A suggested FAQ entry: a knowledge gap a person answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct FaqSuggestionDto {
    pub id: String,
    /// The buyers' questions, the gap's central one first.
    pub questions: Vec<String>,
    /// The reply a person answered them with.
    pub answer: String,
    pub lang: String,
    /// How many buyer messages asked it.
    pub asked: i64,
    pub conversations: Vec<String>,
    /// `pending`, `accepted` or `dismissed`.
    pub status: String,
    /// The FAQ entry made from it, once accepted.
    pub entry_id: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub created_at: String,
    /// The last measurement of its FAQ entry on this tenant's past
    /// questions (`entry`, `confirmed`, `asked`, `finds`, `regressions`,
    /// `promoted`, `reasons`, `measured_at`); none before one was tried.
    #[schema(value_type = Option<Object>)]
    pub trial: Option<serde_json::Value>,
}

impl From<FaqSuggestion> for FaqSuggestionDto {
    fn from(s: FaqSuggestion) -> Self {
        FaqSuggestionDto {
            id: s.id.to_string(),
            questions: s.questions,
            answer: s.answer,
            lang: s.lang,
            asked: s.asked,
            conversations: s.conversations.iter().map(|c| c.to_string()).collect(),
            status: s.status.as_str().into(),
            entry_id: s.entry_id,
            decided_by: s.decided_by,
            decided_at: s.decided_at.map(|t| t.to_rfc3339()),
            created_at: s.created_at.to_rfc3339(),
            trial: s.trial,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FaqSuggestionsDto {
    /// Whether the history was read again for new suggestions (it is
    /// when the embedding model is loaded).
    pub refreshed: bool,
    /// Most asked first.
    pub suggestions: Vec<FaqSuggestionDto>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SuggestionsQuery {
    /// `pending` (the default), `accepted`, `dismissed` or `all`.
    pub status: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    /// The entry's questions, in place of the suggested ones.
    pub questions: Option<Vec<String>>,
    /// The entry's answer, in place of the person's reply.
    pub answer: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedDto {
    pub suggestion: FaqSuggestionDto,
    /// The FAQ entry written to the knowledge base.
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

/// Suggestions are made from every shop's buyers: a token bound to one
/// shop sees none.
fn whole_tenant(tenant: &Tenant) -> Result<(), ApiError> {
    match &tenant.shop {
        Some(shop) => Err(ApiError::Forbidden(format!(
            "FAQ suggestions come from every shop's conversations; this token acts for shop {:?} only",
            shop.as_str()
        ))),
        None => Ok(()),
    }
}

fn suggestion_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    raw.trim().parse().map_err(|_| ApiError::NotFound {
        what: format!("faq suggestion {raw:?}"),
    })
}

/// The tenant's suggested FAQ entries.
///
/// Knowledge gaps of the last 90 days (buyer questions the knowledge base
/// could not answer, grouped by meaning) that a person answered become
/// suggestions: the buyers' questions and the person's reply. They are
/// read again from the history first when the embedding model is loaded.
/// Nothing is added to the knowledge base until a person accepts one.
#[utoipa::path(
    get,
    path = "/api/v1/learning/faq-suggestions",
    tag = "learning",
    params(SuggestionsQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Suggestions, most asked first", body = FaqSuggestionsDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "A shop-bound token", body = ErrorBody),
        (status = 422, description = "An unknown status", body = ErrorBody),
    )
)]
pub async fn faq_suggestions(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<SuggestionsQuery>,
) -> Result<Json<FaqSuggestionsDto>, ApiError> {
    whole_tenant(&tenant)?;
    let status = match query.status.as_deref().map(str::trim) {
        None | Some("pending") => Some(SuggestionStatus::Pending),
        Some("all") => None,
        Some(raw) => Some(SuggestionStatus::parse(raw).map_err(|_| {
            ApiError::Invalid(format!(
                "`status` must be pending, accepted, dismissed or all, got {raw:?}"
            ))
        })?),
    };
    let embedder = state.kb.embedder();
    let refreshed = embedder.is_some();
    if let Some(embedder) = embedder {
        suggestions::refresh(
            state.store.as_ref(),
            tenant.id,
            state.learning.gap_embedder(embedder),
            chrono::Utc::now(),
        )
        .await?;
    }
    let list = state.store.faq_suggestions(tenant.id, status).await?;
    Ok(Json(FaqSuggestionsDto {
        refreshed,
        suggestions: list.into_iter().map(Into::into).collect(),
    }))
}

/// Accept a suggestion: its FAQ entry is written to the knowledge base.
///
/// The body is optional: `questions` and `answer` replace the suggested
/// ones. The entry (id `learned-…`, tag `learned`) is versioned, audited,
/// indexed and searched like any other; the suggestion becomes
/// `accepted` with the entry's id.
#[utoipa::path(
    post,
    path = "/api/v1/learning/faq-suggestions/{id}/accept",
    tag = "learning",
    params(("id" = String, Path, description = "The suggestion's id")),
    request_body(content = AcceptRequest, description = "Optional edits"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Accepted; the FAQ entry exists", body = AcceptedDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "A shop-bound token", body = ErrorBody),
        (status = 404, description = "No such suggestion for this tenant", body = ErrorBody),
        (status = 409, description = "Already accepted or dismissed, or refused: the entry would change \
                                       the answer of a question people confirmed (the measurement is \
                                       the suggestion's `trial`)", body = ErrorBody),
        (status = 422, description = "An edit leaves no question, no answer, or too long a text", body = ErrorBody),
    )
)]
pub async fn accept_faq_suggestion(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<AcceptedDto>), ApiError> {
    whole_tenant(&tenant)?;
    let id = suggestion_id(&id)?;
    let request: AcceptRequest = if body.iter().all(u8::is_ascii_whitespace) {
        AcceptRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::MalformedRequest(format!("malformed JSON: {e}")))?
    };
    let edit = FaqEdit {
        questions: request.questions,
        answer: request.answer,
    };
    let actor = tenant.actor();
    let accepting = suggestions::Accepting {
        store: state.store.as_ref(),
        kb: &state.kb,
        tenant: tenant.id,
        actor: &actor,
        faq_min_similarity: state.learning.faq_min_similarity(),
    };
    let (suggestion, entry, _) = suggestions::accept(&accepting, id, &edit).await?;
    Ok((
        StatusCode::CREATED,
        Json(AcceptedDto {
            suggestion: suggestion.into(),
            entry: entry.to_json(),
        }),
    ))
}

/// Dismiss a suggestion: nothing is added, and the same answer is not
/// suggested again.
#[utoipa::path(
    post,
    path = "/api/v1/learning/faq-suggestions/{id}/dismiss",
    tag = "learning",
    params(("id" = String, Path, description = "The suggestion's id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Dismissed", body = FaqSuggestionDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "A shop-bound token", body = ErrorBody),
        (status = 404, description = "No such suggestion for this tenant", body = ErrorBody),
        (status = 409, description = "Already accepted or dismissed", body = ErrorBody),
    )
)]
pub async fn dismiss_faq_suggestion(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<FaqSuggestionDto>, ApiError> {
    whole_tenant(&tenant)?;
    let id = suggestion_id(&id)?;
    let suggestion =
        suggestions::dismiss(state.store.as_ref(), tenant.id, id, &tenant.actor()).await?;
    Ok(Json(suggestion.into()))
}
