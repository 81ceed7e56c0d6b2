//! `GET /api/v1/reports/...`: a tenant's report (figures per language and
//! intent), its tagged conversations and the resolution figure with its
//! rule, SQL and counted conversations, as JSON or CSV (`format=csv`);
//! and agents' tag edits (`PUT`/`DELETE
//! /api/v1/conversations/{id}/tags/{tag}`). A shop-bound token reports on
//! its own shop only.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, Tenant};
use super::v1::{check_conversation_shop, parse_conversation_id};
use super::AppState;
use crate::figures::Report;
use crate::reports::{self, FilterText, ReportError};
use crate::store::reports::Tag;
use crate::store::users::ShopAccess;

impl From<ReportError> for ApiError {
    fn from(err: ReportError) -> Self {
        match err {
            ReportError::Invalid(message) => ApiError::Invalid(message),
            ReportError::Store(err) => err.into(),
            ReportError::Embedding(message) => ApiError::Internal(message),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Start of the period: RFC 3339, a date (`2026-12-01`) or a span back
    /// from now (`7d`, `12h`); default 30 days before `until`.
    pub since: Option<String>,
    /// End of the period (exclusive), written the same ways; default now.
    pub until: Option<String>,
    /// Only this shop (its key).
    pub shop: Option<String>,
    /// `shopee`, `lazada`, `tiktok`, `web` or `generic`.
    pub platform: Option<String>,
    /// Only conversations in this language (ISO 639-1).
    pub language: Option<String>,
    /// Only conversations with this intent.
    pub intent: Option<String>,
    /// Only conversations with this tag.
    pub tag: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv,
}

impl ReportQuery {
    fn format(&self) -> Result<Format, ApiError> {
        match self.format.as_deref().map(str::trim) {
            None | Some("json") => Ok(Format::Json),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ApiError::Invalid(format!(
                "format must be json or csv, got {other:?}"
            ))),
        }
    }
}

/// Reads the report the query asks for, within the token's shop.
async fn report_for(
    state: &AppState,
    tenant: &Tenant,
    query: &ReportQuery,
) -> Result<Report, ApiError> {
    let now = Utc::now();
    let mut filter = FilterText {
        since: query.since.clone(),
        until: query.until.clone(),
        shop: query.shop.clone(),
        platform: query.platform.clone(),
        language: query.language.clone(),
        intent: query.intent.clone(),
        tag: query.tag.clone(),
    }
    .parse(now)?;
    let access = match &tenant.shop {
        None => ShopAccess::All,
        Some(own) => {
            if let Some(asked) = &filter.shop {
                tenant.check_shop(asked)?;
            }
            filter.shop = Some(own.clone());
            let shop = state.store.shop_by_key(tenant.id, own).await?;
            ShopAccess::Only(shop.map(|s| s.id).into_iter().collect())
        }
    };
    Ok(reports::build(state.store.as_ref(), tenant.id, &access, &filter, now).await?)
}

fn csv(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// A report's figures without its list of conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryDto {
    /// The filter applied, the figures of `PRODUCT.md` (involvement,
    /// automation, first response and time to a human p50/p90, escalation
    /// reasons, volume), drafts sent unchanged or edited, AI answers asked
    /// again, the satisfaction signal and its trend, rows per language and
    /// intent, and tag counts. See docs/reports.md.
    #[schema(value_type = Object)]
    pub report: serde_json::Value,
}

/// The report: headline figures and their breakdown per language and
/// intent. `format=csv` gives the breakdown table.
#[utoipa::path(
    get,
    path = "/api/v1/reports/summary",
    tag = "reports",
    params(ReportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The report (JSON, or CSV rows)", body = SummaryDto),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn summary(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = query.format()?;
    let mut report = report_for(&state, &tenant, &query).await?;
    if format == Format::Csv {
        return Ok(csv(reports::csv::summary(&report)));
    }
    report.conversations.clear();
    let mut value =
        serde_json::to_value(&report).map_err(|e| ApiError::Internal(format!("report: {e}")))?;
    if let Some(object) = value.as_object_mut() {
        object.remove("conversations");
        object.insert(
            "involvement".into(),
            serde_json::json!(report.figures.involvement()),
        );
        object.insert(
            "automation".into(),
            serde_json::json!(report.figures.automation()),
        );
    }
    Ok(Json(SummaryDto { report: value }).into_response())
}

/// The conversations the report covers, each with its tags (kedai's and
/// people's edits) and satisfaction signal.
#[utoipa::path(
    get,
    path = "/api/v1/reports/conversations",
    tag = "reports",
    params(ReportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tagged conversations (JSON, or CSV)", body = Object),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn conversations(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = query.format()?;
    let report = report_for(&state, &tenant, &query).await?;
    Ok(match format {
        Format::Csv => csv(reports::csv::conversations(&report)),
        Format::Json => {
            Json(serde_json::json!({ "conversations": report.conversations })).into_response()
        }
    })
}

/// The resolution figure: the rule, the SQL any seller can run on their
/// own database, the figure, and every conversation it counted.
#[utoipa::path(
    get,
    path = "/api/v1/reports/resolution",
    tag = "reports",
    params(ReportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Rule, SQL, figure and list (JSON, or CSV list)", body = Object),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn resolution(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    let format = query.format()?;
    let report = report_for(&state, &tenant, &query).await?;
    let resolution = reports::resolution(state.store.as_ref(), tenant.id, &report).await?;
    Ok(match format {
        Format::Csv => csv(reports::csv::resolution(&resolution)),
        Format::Json => Json(resolution).into_response(),
    })
}

/// Knowledge gaps: buyer questions the knowledge base could not answer
/// (no grounded answer, a weak best hit, a draft a person rewrote),
/// grouped by meaning, most asked first, with examples per language and
/// the replies people answered them with.
#[utoipa::path(
    get,
    path = "/api/v1/reports/gaps",
    tag = "reports",
    params(ReportQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Gaps, most asked first", body = Object),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "The embedding model is not loaded", body = ErrorBody),
    )
)]
pub async fn gaps(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    if query.format()? == Format::Csv {
        return Err(ApiError::Invalid("gaps come as JSON only".into()));
    }
    let report = report_for(&state, &tenant, &query).await?;
    let embedding_ready = state.engine.models().iter().any(|m| {
        m.kind == crate::engine::ModelKind::Embedding
            && matches!(m.state, crate::engine::ModelState::Ready { .. })
    });
    let embedder = crate::pipeline::stages::EngineEmbedder::new(
        state.engine.clone(),
        crate::engine::Role::Retrieval,
    )
    .filter(|_| embedding_ready)
    .ok_or_else(|| {
        ApiError::NotReady("knowledge gaps need the embedding model, which is not loaded".into())
    })?;
    let gaps = reports::gaps(
        state.store.as_ref(),
        tenant.id,
        &report,
        std::sync::Arc::new(embedder),
    )
    .await?;
    Ok(Json(serde_json::json!({ "gaps": gaps })).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagsDto {
    /// The conversation's tags as people see them now.
    pub tags: Vec<String>,
}

async fn edit_tag(
    state: &AppState,
    tenant: &Tenant,
    (id, tag): (String, String),
    present: bool,
) -> Result<Json<TagsDto>, ApiError> {
    let id = parse_conversation_id(&id)?;
    check_conversation_shop(state, tenant, id).await?;
    let tag = Tag::parse(&tag).map_err(|e| ApiError::Invalid(e.to_string()))?;
    state
        .store
        .edit_tag(tenant.id, id, &tag, present, &tenant.actor())
        .await?;
    let tags = reports::conversation_tags(state.store.as_ref(), tenant.id, id).await?;
    Ok(Json(TagsDto {
        tags: tags.into_iter().map(|t| t.to_string()).collect(),
    }))
}

/// Puts a tag on a conversation (an agent's tag, or one of kedai's put
/// back after it was taken off).
#[utoipa::path(
    put,
    path = "/api/v1/conversations/{id}/tags/{tag}",
    tag = "reports",
    params(
        ("id" = String, Path, description = "Conversation id"),
        ("tag" = String, Path, description = "The tag: letters, digits, `_ - . :`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation's tags now", body = TagsDto),
        (status = 400, description = "A bad tag", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such conversation for this tenant", body = ErrorBody),
    )
)]
pub async fn put_tag(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(path): Path<(String, String)>,
) -> Result<Json<TagsDto>, ApiError> {
    edit_tag(&state, &tenant, path, true).await
}

/// Takes a tag off a conversation, kedai's own included: reports then
/// count the conversation without it.
#[utoipa::path(
    delete,
    path = "/api/v1/conversations/{id}/tags/{tag}",
    tag = "reports",
    params(
        ("id" = String, Path, description = "Conversation id"),
        ("tag" = String, Path, description = "The tag"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation's tags now", body = TagsDto),
        (status = 400, description = "A bad tag", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such conversation for this tenant", body = ErrorBody),
    )
)]
pub async fn delete_tag(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(path): Path<(String, String)>,
) -> Result<Json<TagsDto>, ApiError> {
    edit_tag(&state, &tenant, path, false).await
}
