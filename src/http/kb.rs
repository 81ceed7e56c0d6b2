//! API v1 for the knowledge base: hybrid search, and create / read /
//! replace / delete of entries with their version history. Wire DTOs live
//! here; entries are parsed into `kb::KbEntry` before they reach the store.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Tenant};
use super::AppState;
use crate::kb::{self, KbEntry, KbError, KbQuery, SearchMode};
use crate::store::{KbKind, KbRecord};

impl From<KbError> for ApiError {
    fn from(err: KbError) -> Self {
        match err {
            KbError::Import { .. } | KbError::InvalidEntry(_) | KbError::InvalidQuery(_) => {
                ApiError::Invalid(err.to_string())
            }
            KbError::NotFound { what } => ApiError::NotFound { what },
            KbError::DenseUnavailable => ApiError::NotReady(err.to_string()),
            KbError::Store(store) => store.into(),
            KbError::Io { .. }
            | KbError::Embedding(_)
            | KbError::Index(_)
            | KbError::Corrupt { .. }
            | KbError::Task(_) => ApiError::Internal(err.to_string()),
        }
    }
}

fn parse_kind(raw: &str) -> Result<KbKind, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound {
        what: format!("knowledge-base kind {raw:?} (faq, policy, product, shipping)"),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// What to look for, in any language (1 to 1000 characters).
    #[schema(example = "apakah bisa retur setelah 10 hari?")]
    pub query: String,
    /// Hits to return, 1 to 50 (default 5).
    pub top_k: Option<usize>,
    /// `hybrid` (default), `bm25` or `dense`.
    pub mode: Option<String>,
    /// Only these kinds: `faq`, `policy`, `product`, `shipping`.
    pub kinds: Option<Vec<String>>,
}

impl SearchRequest {
    fn parse(self) -> Result<KbQuery, ApiError> {
        let mode = self
            .mode
            .as_deref()
            .map(|m| m.parse::<SearchMode>())
            .transpose()
            .map_err(ApiError::Invalid)?;
        let kinds = self
            .kinds
            .map(|kinds| {
                kinds
                    .iter()
                    .map(|k| k.parse::<KbKind>())
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(ApiError::Invalid)?;
        Ok(KbQuery::parse(&self.query, self.top_k, mode, kinds)?)
    }
}

/// One ranking component's view of a hit.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentDto {
    /// 1-based rank in that component's list.
    pub rank: usize,
    /// BM25 score, or cosine similarity for `dense`.
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHitDto {
    /// `faq`, `policy`, `product` or `shipping`.
    pub kind: String,
    pub id: String,
    /// The policy section, for policy hits.
    pub section: Option<String>,
    pub title: String,
    pub lang: String,
    /// The passage that was matched.
    pub text: String,
    /// Reciprocal-rank-fusion score: the sum of 1 / (60 + rank) over the
    /// components that found the hit.
    pub score: f64,
    /// Absent when BM25 did not rank the hit in its top 50.
    pub bm25: Option<ComponentDto>,
    /// Absent when dense retrieval did not rank the hit in its top 50.
    pub dense: Option<ComponentDto>,
    /// The structured entry: answer, variants with stock and price, days
    /// and cost, or the policy section.
    #[schema(value_type = Object)]
    pub fields: serde_json::Value,
    /// For products, the variant SKUs whose options the query names most.
    pub matched_variants: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    /// The ranking that ran: `hybrid`, `bm25` or `dense`.
    pub mode: String,
    /// Set when the ranking differs from the one asked for, and why.
    pub degraded: Option<String>,
    /// The knowledge-base revision searched.
    pub revision: i64,
    pub hits: Vec<SearchHitDto>,
}

fn component(hit: Option<kb::ComponentHit>) -> Option<ComponentDto> {
    hit.map(|c| ComponentDto {
        rank: c.rank,
        score: c.score,
    })
}

impl From<kb::SearchResults> for SearchResponse {
    fn from(results: kb::SearchResults) -> Self {
        SearchResponse {
            mode: results.mode.as_str().to_owned(),
            degraded: results.degraded,
            revision: results.revision,
            hits: results
                .hits
                .into_iter()
                .map(|h| SearchHitDto {
                    kind: h.kind.as_str().to_owned(),
                    id: h.id,
                    section: h.section,
                    title: h.title,
                    lang: h.lang,
                    text: h.text,
                    score: h.score,
                    bm25: component(h.bm25),
                    dense: component(h.dense),
                    fields: h.fields,
                    matched_variants: h.matched_variants,
                })
                .collect(),
        }
    }
}

/// Search the knowledge base: BM25 and multilingual dense retrieval fused
/// by reciprocal rank, with each component's rank and score per hit.
#[utoipa::path(
    post,
    path = "/api/v1/kb/search",
    tag = "knowledge base",
    request_body = SearchRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Hits, best first", body = SearchResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Empty or over-long query, bad top_k, mode or kind", body = ErrorBody),
        (status = 503, description = "Dense mode asked for without the embedding model", body = ErrorBody),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiJson(request): ApiJson<SearchRequest>,
) -> Result<Json<SearchResponse>, ApiError> {
    let query = request.parse()?;
    let results = state.kb.search(tenant.id, &query).await?;
    Ok(Json(results.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryDto {
    pub kind: String,
    pub id: String,
    pub lang: String,
    /// Starts at 1; every change, deletions included, adds one.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The entry in the kb folder format (docs/kb-format.md).
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

impl From<KbRecord> for EntryDto {
    fn from(r: KbRecord) -> Self {
        EntryDto {
            kind: r.document.kind.as_str().to_owned(),
            id: r.document.id,
            lang: r.document.lang,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            entry: r.document.body,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryList {
    pub entries: Vec<EntryDto>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EntryQuery {
    /// Only this kind: `faq`, `policy`, `product` or `shipping`.
    pub kind: Option<String>,
}

/// List knowledge-base entries, by kind and id.
#[utoipa::path(
    get,
    path = "/api/v1/kb/entries",
    tag = "knowledge base",
    params(EntryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Live entries", body = EntryList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Unknown kind", body = ErrorBody),
    )
)]
pub async fn list_entries(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<EntryQuery>,
) -> Result<Json<EntryList>, ApiError> {
    let kind = query
        .kind
        .as_deref()
        .map(str::parse::<KbKind>)
        .transpose()
        .map_err(ApiError::Invalid)?;
    let records = state.kb.list(tenant.id, kind).await?;
    Ok(Json(EntryList {
        entries: records.into_iter().map(EntryDto::from).collect(),
    }))
}

/// One entry, current version.
#[utoipa::path(
    get,
    path = "/api/v1/kb/entries/{kind}/{id}",
    tag = "knowledge base",
    params(
        ("kind" = String, Path, description = "faq, policy, product or shipping"),
        ("id" = String, Path, description = "Entry id (a product's SKU in lower case)"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The entry", body = EntryDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such entry for this tenant", body = ErrorBody),
    )
)]
pub async fn get_entry(
    State(state): State<AppState>,
    tenant: Tenant,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<EntryDto>, ApiError> {
    let kind = parse_kind(&kind)?;
    Ok(Json(state.kb.get(tenant.id, kind, &id).await?.into()))
}

/// Fills in the id from the path where the format lets the body omit it,
/// and refuses a body whose id disagrees with the path.
fn entry_from_body(
    kind: KbKind,
    id: &str,
    mut body: serde_json::Value,
) -> Result<KbEntry, ApiError> {
    if matches!(kind, KbKind::Faq | KbKind::Policy) {
        if let Some(object) = body.as_object_mut() {
            object
                .entry("id")
                .or_insert_with(|| serde_json::Value::String(id.to_owned()));
        }
    }
    let entry = KbEntry::from_json(kind, body).map_err(ApiError::Invalid)?;
    if entry.id() != id {
        return Err(ApiError::Invalid(format!(
            "the path names {kind} entry {id:?} but the body describes {:?}",
            entry.id()
        )));
    }
    Ok(entry)
}

/// Create or replace an entry. Each real change is a new version and an
/// audit-log event; an identical body changes nothing.
#[utoipa::path(
    put,
    path = "/api/v1/kb/entries/{kind}/{id}",
    tag = "knowledge base",
    params(
        ("kind" = String, Path, description = "faq, policy, product or shipping"),
        ("id" = String, Path, description = "Entry id (a product's SKU in lower case)"),
    ),
    request_body(content = Object, description = "The entry in the kb folder format (docs/kb-format.md)"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = EntryDto),
        (status = 200, description = "Replaced, or unchanged", body = EntryDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "Unknown kind", body = ErrorBody),
        (status = 422, description = "Invalid entry, unknown language, or id mismatch", body = ErrorBody),
    )
)]
pub async fn put_entry(
    State(state): State<AppState>,
    tenant: Tenant,
    Path((kind, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<EntryDto>), ApiError> {
    let kind = parse_kind(&kind)?;
    let entry = entry_from_body(kind, &id, body)?;
    let (applied, record) = state.kb.put(tenant.id, &entry, &tenant.actor()).await?;
    let status = if applied.created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(record.into())))
}

/// Delete an entry; its history stays.
#[utoipa::path(
    delete,
    path = "/api/v1/kb/entries/{kind}/{id}",
    tag = "knowledge base",
    params(
        ("kind" = String, Path, description = "faq, policy, product or shipping"),
        ("id" = String, Path, description = "Entry id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such entry for this tenant", body = ErrorBody),
    )
)]
pub async fn delete_entry(
    State(state): State<AppState>,
    tenant: Tenant,
    Path((kind, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = parse_kind(&kind)?;
    state
        .kb
        .delete(tenant.id, kind, &id, &tenant.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDto {
    pub version: i64,
    /// The entry as it was; absent for a deletion.
    #[schema(value_type = Option<Object>)]
    pub entry: Option<serde_json::Value>,
    /// Who made the change: `cli`, `system`, `token:<id>`.
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryDto {
    /// Oldest first.
    pub versions: Vec<VersionDto>,
}

/// Every version of an entry, deletions included.
#[utoipa::path(
    get,
    path = "/api/v1/kb/entries/{kind}/{id}/history",
    tag = "knowledge base",
    params(
        ("kind" = String, Path, description = "faq, policy, product or shipping"),
        ("id" = String, Path, description = "Entry id"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The versions, oldest first", body = HistoryDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No entry with this id ever existed for this tenant", body = ErrorBody),
    )
)]
pub async fn entry_history(
    State(state): State<AppState>,
    tenant: Tenant,
    Path((kind, id)): Path<(String, String)>,
) -> Result<Json<HistoryDto>, ApiError> {
    let kind = parse_kind(&kind)?;
    let versions = state.kb.history(tenant.id, kind, &id).await?;
    Ok(Json(HistoryDto {
        versions: versions
            .into_iter()
            .map(|v| VersionDto {
                version: v.version,
                entry: v.body,
                actor: v.actor,
                at: v.at,
            })
            .collect(),
    }))
}
