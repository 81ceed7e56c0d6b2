//! API v1 for what a seller sets per shop and what a person decides for the
//! AI: each shop's own policy (modes, thresholds, business hours, the kill
//! switch), the machine translations of the seller's answers waiting for
//! a person's approval, and how often each FAQ entry answered buyers.
//!
//! A shop's policy is stored with the shop, so it belongs to one tenant's
//! shop only; it is validated against the server's defaults before it is
//! stored, and takes effect from the next message decided.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Tenant};
use super::AppState;
use crate::domain::ShopKey;
use crate::learning::{ChangeOutcome, PolicyChange};
use crate::store::{
    FaqAsked, KbKind, Shop, StoredTranslation, TranslationKey, TranslationReview, TranslationStatus,
};

/// A shop's policy: what it overrides and what applies.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShopPolicyDto {
    pub shop: String,
    /// The keys this shop overrides (any key of `[policy.defaults]`).
    #[schema(value_type = Object)]
    pub overrides: serde_json::Value,
    /// The policy that applies: the server's defaults with the overrides.
    #[schema(value_type = Object)]
    pub effective: serde_json::Value,
}

fn parse_shop(raw: &str) -> Result<ShopKey, ApiError> {
    ShopKey::parse(raw).map_err(|_| ApiError::NotFound {
        what: format!("shop {raw:?}"),
    })
}

fn policy_dto(state: &AppState, shop: &str, overrides: serde_json::Value) -> ShopPolicyDto {
    let (effective, _) = state.policy.for_shop(&overrides);
    ShopPolicyDto {
        shop: shop.to_string(),
        overrides,
        effective: serde_json::to_value(effective).unwrap_or_default(),
    }
}

/// A shop's own policy and the policy that applies to it.
#[utoipa::path(
    get,
    path = "/api/v1/shops/{shop}/policy",
    tag = "shops",
    params(("shop" = String, Path, description = "The shop's key")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The shop's policy", body = ShopPolicyDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such shop for this tenant", body = ErrorBody),
    )
)]
pub async fn get_policy(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(shop): Path<String>,
) -> Result<Json<ShopPolicyDto>, ApiError> {
    let shop = visible_shop(&state, &tenant, &shop).await?;
    Ok(Json(policy_dto(&state, shop.key.as_str(), shop.policy)))
}

/// A change of a shop's policy as asked: the policy in force afterwards,
/// and the change recorded with its measurement.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyChangeDto {
    pub shop: String,
    /// The keys the shop overrides now.
    #[schema(value_type = Object)]
    pub overrides: serde_json::Value,
    /// The policy in force now.
    #[schema(value_type = Object)]
    pub effective: serde_json::Value,
    /// The change as recorded; absent when the policy asked for was the
    /// one already stored.
    pub change: Option<PolicyChange>,
}

/// The tenant's shop `raw`, when the token may see it.
async fn visible_shop(state: &AppState, tenant: &Tenant, raw: &str) -> Result<Shop, ApiError> {
    let key = parse_shop(raw)?;
    state
        .store
        .shop_by_key(tenant.id, &key)
        .await?
        .filter(|shop| tenant.sees_shop(&shop.key))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("shop {:?}", key.as_str()),
        })
}

async fn change_dto(
    state: &AppState,
    tenant: &Tenant,
    shop: &Shop,
    change: Option<PolicyChange>,
) -> Result<PolicyChangeDto, ApiError> {
    let now = visible_shop(state, tenant, shop.key.as_str()).await?;
    let dto = policy_dto(state, now.key.as_str(), now.policy);
    Ok(PolicyChangeDto {
        shop: dto.shop,
        overrides: dto.overrides,
        effective: dto.effective,
        change,
    })
}

/// Replace a shop's own policy: a JSON object with any keys of the server's
/// `[policy.defaults]` (e.g. `{"mode": "suggest", "ai_enabled": false}`);
/// `{}` returns the shop to the defaults.
///
/// The change is measured first: the shop's buyer messages of the last 90
/// days and the shipped evaluation conversations are decided again under
/// the current and the new policy. It is refused (409, with the
/// measurement, nothing changed) when it would let the AI send alone a
/// message people had to answer or rewrite, a request for a refund or
/// another binding action, or an evaluation conversation that needs a
/// person; otherwise it takes effect from the next message. A change that
/// only sends more to people (the kill switch) is never refused. Either way
/// it is recorded and listed under `.../policy/changes`.
#[utoipa::path(
    put,
    path = "/api/v1/shops/{shop}/policy",
    tag = "shops",
    params(("shop" = String, Path, description = "The shop's key")),
    request_body(content = Object, description = "Keys of [policy.defaults] to override"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Applied (or already the shop's policy), with its measurement", body = PolicyChangeDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such shop for this tenant", body = ErrorBody),
        (status = 409, description = "Refused: the measurement says it would make the AI less safe; nothing changed", body = PolicyChangeDto),
        (status = 422, description = "An unknown key or a value out of range, named", body = ErrorBody),
    )
)]
pub async fn put_policy(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(shop): Path<String>,
    ApiJson(overrides): ApiJson<serde_json::Value>,
) -> Result<(StatusCode, Json<PolicyChangeDto>), ApiError> {
    let shop = visible_shop(&state, &tenant, &shop).await?;
    let change = state
        .learning
        .change_policy(&state.policy, tenant.id, &shop, overrides, &tenant.actor())
        .await?;
    let status = match &change {
        Some(c) if c.outcome == ChangeOutcome::Refused => StatusCode::CONFLICT,
        _ => StatusCode::OK,
    };
    Ok((
        status,
        Json(change_dto(&state, &tenant, &shop, change).await?),
    ))
}

/// A shop's recorded policy changes, newest first: applied, refused and
/// restored, each with the policy before and after and the measurement.
#[utoipa::path(
    get,
    path = "/api/v1/shops/{shop}/policy/changes",
    tag = "shops",
    params(("shop" = String, Path, description = "The shop's key")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The changes, newest first", body = [PolicyChange]),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such shop for this tenant", body = ErrorBody),
    )
)]
pub async fn policy_changes(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(shop): Path<String>,
) -> Result<Json<Vec<PolicyChange>>, ApiError> {
    let shop = visible_shop(&state, &tenant, &shop).await?;
    Ok(Json(
        state.learning.policy_changes(tenant.id, &shop, 200).await?,
    ))
}

/// Restore the policy a recorded change replaced, in one action: it takes
/// effect from the next message and is recorded as a change of its own.
#[utoipa::path(
    post,
    path = "/api/v1/shops/{shop}/policy/changes/{id}/restore",
    tag = "shops",
    params(
        ("shop" = String, Path, description = "The shop's key"),
        ("id" = i64, Path, description = "The change whose earlier policy is put back"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Restored", body = PolicyChangeDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such shop or change", body = ErrorBody),
        (status = 409, description = "The change was refused and replaced nothing", body = ErrorBody),
    )
)]
pub async fn restore_policy(
    State(state): State<AppState>,
    tenant: Tenant,
    Path((shop, id)): Path<(String, i64)>,
) -> Result<Json<PolicyChangeDto>, ApiError> {
    let shop = visible_shop(&state, &tenant, &shop).await?;
    let change = state
        .learning
        .restore_policy(&state.policy, tenant.id, &shop, id, &tenant.actor())
        .await?;
    Ok(Json(
        change_dto(&state, &tenant, &shop, Some(change)).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TranslationQuery {
    /// `verified`, `unverified` (waiting for a person), `approved` or
    /// `rejected`; all when absent.
    pub status: Option<String>,
    /// 1-500, default 100.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TranslationDto {
    pub kind: String,
    pub entry_id: String,
    pub lang: String,
    /// Identifies the source text translated; pass it back when reviewing.
    pub source_hash: String,
    pub source_text: String,
    pub text: String,
    pub status: TranslationStatus,
    pub model: Option<String>,
    /// The checks a machine translation passed or failed.
    #[schema(value_type = Object)]
    pub verification: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<StoredTranslation> for TranslationDto {
    fn from(t: StoredTranslation) -> Self {
        TranslationDto {
            kind: t.key.kind.to_string(),
            entry_id: t.key.entry_id,
            lang: t.key.lang,
            source_hash: t.key.source_hash,
            source_text: t.source_text,
            text: t.text,
            status: t.status,
            model: t.model,
            verification: t.verification,
            created_at: t.created_at,
            reviewed_by: t.reviewed_by,
            reviewed_at: t.reviewed_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TranslationList {
    pub translations: Vec<TranslationDto>,
}

/// The seller's answers in other languages: machine translations (verified
/// or waiting for a person) and those a person approved or rejected.
#[utoipa::path(
    get,
    path = "/api/v1/kb/translations",
    tag = "knowledge base",
    params(TranslationQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Translations, newest first", body = TranslationList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Not a status", body = ErrorBody),
    )
)]
pub async fn list_translations(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<TranslationQuery>,
) -> Result<Json<TranslationList>, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(|raw| {
            serde_json::from_value::<TranslationStatus>(serde_json::Value::String(raw.into()))
                .map_err(|_| {
                    ApiError::Invalid(format!(
                        "status must be verified, unverified, approved or rejected, got {raw:?}"
                    ))
                })
        })
        .transpose()?;
    let translations = state
        .store
        .list_translations(tenant.id, status, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(TranslationList {
        translations: translations.into_iter().map(Into::into).collect(),
    }))
}

/// How often one FAQ entry answered buyers.
#[derive(Debug, Serialize, ToSchema)]
pub struct AskedEntryDto {
    pub entry_id: String,
    /// Buyers answered from it, in all languages.
    pub asked: i64,
    /// Buyers answered from it per language they wrote in (ISO 639-1).
    pub languages: std::collections::BTreeMap<String, i64>,
    pub last_asked_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AskedList {
    /// Most asked first (ties by entry id).
    pub entries: Vec<AskedEntryDto>,
}

impl AskedList {
    fn from_rows(rows: Vec<FaqAsked>) -> AskedList {
        let mut entries: Vec<AskedEntryDto> = Vec::new();
        for row in rows {
            let at = entries.iter().position(|e| e.entry_id == row.entry_id);
            let entry = match at {
                Some(i) => &mut entries[i],
                None => {
                    entries.push(AskedEntryDto {
                        entry_id: row.entry_id.clone(),
                        asked: 0,
                        languages: Default::default(),
                        last_asked_at: row.last_asked_at,
                    });
                    entries.last_mut().expect("just pushed")
                }
            };
            entry.asked += row.asked;
            *entry.languages.entry(row.lang).or_default() += row.asked;
            entry.last_asked_at = entry.last_asked_at.max(row.last_asked_at);
        }
        entries.sort_by(|a, b| {
            b.asked
                .cmp(&a.asked)
                .then_with(|| a.entry_id.cmp(&b.entry_id))
        });
        AskedList { entries }
    }
}

/// The FAQ entries buyers are answered from most: how many buyers each
/// answered, per language. Translations ahead take them in this order.
#[utoipa::path(
    get,
    path = "/api/v1/kb/asked",
    tag = "knowledge base",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "FAQ entries, most asked first", body = AskedList),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    )
)]
pub async fn list_asked(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<AskedList>, ApiError> {
    let rows = state.store.faq_asked(tenant.id).await?;
    Ok(Json(AskedList::from_rows(rows)))
}

/// A person's verdict on a translation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// The `source_hash` of the translation reviewed.
    pub source_hash: String,
    /// `approve` or `reject`.
    pub verdict: String,
    /// With `approve`: the person's corrected text, when they edited it.
    #[serde(default)]
    pub text: Option<String>,
}

/// Approve (optionally with corrected text) or reject a translation. An
/// approved translation is the seller's own words for that answer and
/// language from then on, sent without further checks.
#[utoipa::path(
    put,
    path = "/api/v1/kb/translations/{kind}/{id}/{lang}",
    tag = "knowledge base",
    params(
        ("kind" = String, Path, description = "faq, policy, product or shipping"),
        ("id" = String, Path, description = "Entry id"),
        ("lang" = String, Path, description = "Language translated into"),
    ),
    request_body = ReviewRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The reviewed translation", body = TranslationDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such translation for this tenant", body = ErrorBody),
        (status = 422, description = "Not a verdict, or empty text", body = ErrorBody),
    )
)]
pub async fn review_translation(
    State(state): State<AppState>,
    tenant: Tenant,
    Path((kind, id, lang)): Path<(String, String, String)>,
    ApiJson(request): ApiJson<ReviewRequest>,
) -> Result<Json<TranslationDto>, ApiError> {
    let kind: KbKind = kind.parse().map_err(|_| ApiError::NotFound {
        what: format!("knowledge-base kind {kind:?}"),
    })?;
    let review = match request.verdict.as_str() {
        "approve" => {
            let text = match request.text {
                Some(text) => Some(
                    crate::domain::MessageText::parse(&text, state.limits.text)?
                        .as_str()
                        .to_string(),
                ),
                None => None,
            };
            TranslationReview::Approve { text }
        }
        "reject" => TranslationReview::Reject,
        other => {
            return Err(ApiError::Invalid(format!(
                "verdict must be approve or reject, got {other:?}"
            )))
        }
    };
    let key = TranslationKey {
        kind,
        entry_id: id,
        source_hash: request.source_hash,
        lang: lang.to_ascii_lowercase(),
    };
    let reviewed = state
        .store
        .review_translation(tenant.id, &key, &review, &tenant.actor())
        .await?;
    Ok(Json(reviewed.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_rows_add_up_per_entry_most_asked_first() {
        let at = |m: i64| chrono::DateTime::from_timestamp(1_800_000_000 + m, 0).unwrap();
        let row = |id: &str, lang: &str, asked, when| FaqAsked {
            entry_id: id.into(),
            lang: lang.into(),
            asked,
            last_asked_at: at(when),
        };
        let list = AskedList::from_rows(vec![
            row("cod", "id", 4, 10),
            row("warranty", "th", 3, 30),
            row("warranty", "vi", 3, 20),
            row("returns", "en", 4, 5),
        ]);
        let got: Vec<(&str, i64)> = list
            .entries
            .iter()
            .map(|e| (e.entry_id.as_str(), e.asked))
            .collect();
        assert_eq!(got, [("warranty", 6), ("cod", 4), ("returns", 4)]);
        assert_eq!(list.entries[0].languages["th"], 3);
        assert_eq!(list.entries[0].last_asked_at, at(30));
    }
}
