//! API v1: inbound messages, conversations and replies. Wire DTOs live here
//! and are parsed into domain types before anything reaches the store.

use std::time::Instant;
use tracing::Instrument;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, Tenant};
use super::AppState;
use crate::domain::{
    Author, BuyerRef, ConversationId, ConversationStatus, Custody, Direction, ExternalMessageId,
    InboundMessage, Layer, MessageKind, MessageText, NewReply, Platform, PlatformBuyerId, Sender,
    ShopKey, ValidationError,
};
use crate::metrics as m;
use crate::store::{self, ConversationFilter, PageCursor};

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;
const MAX_NAME_CHARS: usize = 256;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestRequest {
    /// The shop's handle, as registered with `kedai shop add --id`.
    #[schema(example = "demo-shopee")]
    pub shop: String,
    /// The channel's id for this message; redeliveries with the same id are
    /// recognised and stored once.
    #[schema(example = "msg-20261121-0001")]
    pub external_id: String,
    pub buyer: BuyerDto,
    #[schema(example = "Is the red dress available in XL?")]
    pub text: String,
    /// When the buyer sent it (RFC 3339). Defaults to the time of receipt.
    #[schema(example = "2026-11-21T10:15:00Z")]
    pub sent_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuyerDto {
    /// The platform's id for the buyer.
    #[schema(example = "buyer-8812")]
    pub id: String,
    #[schema(example = "Siti")]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    pub message_id: String,
    pub conversation_id: String,
    /// True when this (shop, external_id) was already stored: nothing changed.
    pub duplicate: bool,
}

fn parse_name(raw: Option<&str>) -> Result<Option<String>, ValidationError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let len = name.chars().count();
    if len > MAX_NAME_CHARS {
        return Err(ValidationError::new(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters, got {len}"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(Some(name.to_owned()))
}

pub(super) fn parse_time(field: &'static str, raw: &str) -> Result<DateTime<Utc>, ValidationError> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ValidationError::new(
                field,
                format!("must be an RFC 3339 timestamp such as 2026-11-21T10:15:00Z, got {raw:?}"),
            )
        })
}

impl IngestRequest {
    fn parse(self, state: &AppState) -> Result<InboundMessage, ValidationError> {
        Ok(InboundMessage {
            shop: ShopKey::parse(&self.shop)?,
            external_id: ExternalMessageId::parse(&self.external_id)?,
            buyer: BuyerRef {
                id: PlatformBuyerId::parse(&self.buyer.id)?,
                name: parse_name(self.buyer.name.as_deref())?,
            },
            text: MessageText::parse(&self.text, state.limits.text)?,
            sent_at: match self.sent_at.as_deref() {
                Some(raw) => parse_time("sent_at", raw)?,
                None => Utc::now(),
            },
            sender: Sender::Buyer,
            attachment: None,
        })
    }
}

/// Accept a buyer message from any channel.
///
/// The message is acknowledged only once it, its conversation and its
/// processing job are durably committed. Idempotent on (shop, external_id).
#[utoipa::path(
    post,
    path = "/api/v1/messages",
    tag = "messages",
    request_body = IngestRequest,
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Stored (or already stored)", body = IngestResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "Unknown shop", body = ErrorBody),
        (status = 413, description = "Body over the configured limit", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid", body = ErrorBody),
        (status = 503, description = "Store busy; retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn ingest_message(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiJson(request): ApiJson<IngestRequest>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let message = request.parse(&state).inspect_err(|e| {
        m::ingest_rejected(e.field);
    })?;
    tenant.check_shop(&message.shop)?;
    let shop = state
        .store
        .shop_by_key(tenant.id, &message.shop)
        .await?
        .ok_or_else(|| {
            m::ingest_rejected("unknown_shop");
            ApiError::NotFound {
                what: format!("shop {:?}", message.shop.as_str()),
            }
        })?;
    let started = Instant::now();
    let span = crate::telemetry::ingest_span(
        &tenant.id.to_string(),
        shop.key.as_str(),
        shop.platform.as_str(),
    );
    let outcome = state
        .store
        .ingest(&shop, &message, state.limits.max_attempts)
        .instrument(span.clone())
        .await?;
    span.record("message_id", tracing::field::display(outcome.message_id));
    span.record(
        "conversation_id",
        tracing::field::display(outcome.conversation_id),
    );
    span.record("duplicate", outcome.duplicate);
    m::ingest_stored(outcome.duplicate, started.elapsed());
    if !outcome.duplicate {
        state.queue.wake();
    }
    tracing::debug!(
        message_id = %outcome.message_id,
        conversation_id = %outcome.conversation_id,
        duplicate = outcome.duplicate,
        "message acknowledged"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestResponse {
            message_id: outcome.message_id.to_string(),
            conversation_id: outcome.conversation_id.to_string(),
            duplicate: outcome.duplicate,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConversationQuery {
    /// Only this shop's conversations.
    pub shop: Option<String>,
    /// `open`, `pending` or `resolved`.
    pub status: Option<String>,
    /// 1 (AI answers), 2 (AI drafts for a human) or 3 (human now).
    pub layer: Option<u8>,
    /// Only conversations with a message at or after this RFC 3339 time.
    pub since: Option<String>,
    /// `next_cursor` from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
}

impl ConversationQuery {
    fn parse(self) -> Result<ConversationFilter, ValidationError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ValidationError::new(
                "limit",
                format!("must be between 1 and {MAX_PAGE}, got {limit}"),
            ));
        }
        let status = self
            .status
            .as_deref()
            .map(|s| {
                serde_json::from_value::<ConversationStatus>(serde_json::Value::String(s.into()))
                    .map_err(|_| {
                        ValidationError::new(
                            "status",
                            format!("must be open, pending or resolved, got {s:?}"),
                        )
                    })
            })
            .transpose()?;
        Ok(ConversationFilter {
            shop: self.shop.as_deref().map(ShopKey::parse).transpose()?,
            status,
            layer: self.layer.map(Layer::try_from).transpose()?,
            since: self
                .since
                .as_deref()
                .map(|s| parse_time("since", s))
                .transpose()?,
            after: self
                .cursor
                .as_deref()
                .map(|c| {
                    PageCursor::decode(c).ok_or_else(|| {
                        ValidationError::new("cursor", "is not a cursor this server issued")
                    })
                })
                .transpose()?,
            limit,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDto {
    pub id: String,
    pub shop: String,
    pub platform: Platform,
    pub buyer: BuyerSummaryDto,
    pub status: ConversationStatus,
    /// 1, 2 or 3 once the pipeline has routed the conversation.
    pub layer: Option<u8>,
    /// Who answers now: `ai`, or `human` once a person took it over (by
    /// replying, from a handoff, or with `PUT .../custody`).
    pub custody: Custody,
    /// The person holding it, when one was named.
    pub assignee: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_message_at: DateTime<Utc>,
    pub message_count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BuyerSummaryDto {
    pub id: String,
    /// The platform's id for the buyer.
    pub platform_id: String,
    pub name: Option<String>,
}

impl From<store::ConversationSummary> for ConversationDto {
    fn from(c: store::ConversationSummary) -> Self {
        ConversationDto {
            id: c.id.to_string(),
            shop: c.shop.to_string(),
            platform: c.platform,
            buyer: BuyerSummaryDto {
                id: c.buyer_id.to_string(),
                platform_id: c.buyer_platform_id,
                name: c.buyer_name,
            },
            status: c.status,
            layer: c.layer.map(Layer::get),
            custody: c.custody,
            assignee: c.assignee,
            created_at: c.created_at,
            last_message_at: c.last_message_at,
            message_count: c.message_count,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    pub conversations: Vec<ConversationDto>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// List conversations, most recently active first.
#[utoipa::path(
    get,
    path = "/api/v1/conversations",
    tag = "conversations",
    params(ConversationQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationList),
        (status = 400, description = "Malformed query", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "Invalid filter value", body = ErrorBody),
    )
)]
pub async fn list_conversations(
    State(state): State<AppState>,
    tenant: Tenant,
    ApiQuery(query): ApiQuery<ConversationQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let mut filter = query.parse()?;
    if let Some(own) = &tenant.shop {
        match &filter.shop {
            Some(asked) => tenant.check_shop(asked)?,
            None => filter.shop = Some(own.clone()),
        }
    }
    let page = state.store.list_conversations(tenant.id, &filter).await?;
    Ok(Json(ConversationList {
        conversations: page.items.into_iter().map(ConversationDto::from).collect(),
        next_cursor: page.next.map(|c| c.encode()),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BuyerDetailDto {
    pub id: String,
    pub platform_id: String,
    pub name: Option<String>,
    pub language: Option<String>,
    pub member_level: Option<String>,
    pub vip: bool,
    pub lifetime_value_cents: i64,
    pub currency: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDto {
    pub id: String,
    pub direction: Direction,
    pub author: Author,
    pub author_name: Option<String>,
    /// For non-text messages, a description of what they carry.
    pub text: String,
    /// `text`, or a non-text kind (`image`, `sticker`, `video`, `product`,
    /// `order`, `voucher`, `other`), which goes to a human.
    pub kind: MessageKind,
    /// What a non-text message carries (`url`, `product_id`, `order_id`,
    /// ...), as the platform sent it: data to show, never to follow blindly.
    pub attachment: Option<std::collections::BTreeMap<String, String>>,
    /// Detected language (BCP 47), once known.
    pub language: Option<String>,
    /// Translation into the agents' language, once made.
    pub translation: Option<String>,
    pub external_id: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// For replies sent through a marketplace or the web chat: where the
    /// reply stands on its way there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDto {
    /// `queued`, `sending`, `delivered`, or `failed` (given up; the
    /// conversation was handed to a person).
    pub state: String,
    pub attempts: u32,
    /// Parts of a long reply already delivered.
    pub parts_sent: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl From<&store::ReplyDelivery> for DeliveryDto {
    fn from(d: &store::ReplyDelivery) -> Self {
        DeliveryDto {
            state: serde_json::to_value(d.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            attempts: d.attempts,
            parts_sent: d.parts_sent,
            last_error: d.last_error.clone(),
            updated_at: d.updated_at,
        }
    }
}

impl From<store::Message> for MessageDto {
    fn from(m: store::Message) -> Self {
        MessageDto {
            id: m.id.to_string(),
            direction: m.direction,
            author: m.author,
            author_name: m.author_name,
            text: m.text.as_str().to_owned(),
            kind: m.kind,
            attachment: m.attachment.map(|a| a.fields),
            language: m.language,
            translation: m.translation,
            external_id: m.external_id,
            sent_at: m.sent_at,
            received_at: m.received_at,
            delivery: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetailDto {
    #[serde(flatten)]
    pub conversation: ConversationDto,
    pub buyer_profile: BuyerDetailDto,
    /// Every message, oldest first.
    pub messages: Vec<MessageDto>,
    /// What the reply pipeline decided for each buyer message, oldest first.
    pub decisions: Vec<DecisionDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionDto {
    pub id: String,
    /// The buyer message decided on.
    pub message_id: String,
    /// 1 (AI answered), 2 (AI drafted for a human), 3 (human now).
    pub layer: u8,
    /// `send`, `draft`, `handoff` or `observe` (shadow mode).
    pub action: String,
    /// The reply waiting for a human, if any.
    pub draft: Option<String>,
    /// The message sent to the buyer, if one was.
    pub reply_message_id: Option<String>,
    /// Everything the pipeline saw and did: language, intent and confidence,
    /// sentiment, entities, retrieved sources, route and reasons, guard
    /// findings, model ids and per-stage timings.
    #[schema(value_type = Object)]
    pub trace: serde_json::Value,
    /// What the follow-up added once it ran: the agents' translation of
    /// the message, a summary, and the model that wrote them; null until
    /// then.
    #[schema(value_type = Option<Object>)]
    pub follow_up: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<store::Decision> for DecisionDto {
    fn from(d: store::Decision) -> Self {
        DecisionDto {
            id: d.id.to_string(),
            message_id: d.message_id.to_string(),
            layer: d.layer.get(),
            action: d.action.as_str().to_owned(),
            draft: d.draft,
            reply_message_id: d.reply_message_id.map(|id| id.to_string()),
            trace: d.trace,
            follow_up: d.follow_up,
            created_at: d.created_at,
        }
    }
}

/// A shop-bound token sees its own shop's conversations only: any other is
/// answered as if it did not exist.
pub(crate) async fn check_conversation_shop(
    state: &AppState,
    tenant: &Tenant,
    id: ConversationId,
) -> Result<(), ApiError> {
    if tenant.shop.is_none() {
        return Ok(());
    }
    match state.store.conversation(tenant.id, id).await? {
        Some(detail) if tenant.sees_shop(&detail.summary.shop) => Ok(()),
        _ => Err(ApiError::NotFound {
            what: format!("conversation {id}"),
        }),
    }
}

pub(crate) fn parse_conversation_id(raw: &str) -> Result<ConversationId, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound {
        what: format!("conversation {raw:?}"),
    })
}

/// One conversation with its buyer and all its messages in order.
#[utoipa::path(
    get,
    path = "/api/v1/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation", body = ConversationDetailDto),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such conversation for this tenant", body = ErrorBody),
    )
)]
pub async fn get_conversation(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<ConversationDetailDto>, ApiError> {
    let id = parse_conversation_id(&id)?;
    // Decisions first: a decision and its reply are committed together, so
    // every decision read here finds its reply among the messages read
    // after it (the two reads are separate snapshots).
    let decisions = state.store.decisions(tenant.id, id).await?;
    let detail = state
        .store
        .conversation(tenant.id, id)
        .await?
        .filter(|d| tenant.sees_shop(&d.summary.shop))
        .ok_or_else(|| ApiError::NotFound {
            what: format!("conversation {id}"),
        })?;
    let deliveries = state.store.reply_deliveries(tenant.id, id).await?;
    let buyer = detail.buyer;
    let messages = detail
        .messages
        .into_iter()
        .map(|m| {
            let delivery = deliveries.iter().find(|d| d.message_id == m.id);
            MessageDto {
                delivery: delivery.map(DeliveryDto::from),
                ..MessageDto::from(m)
            }
        })
        .collect();
    Ok(Json(ConversationDetailDto {
        conversation: detail.summary.into(),
        buyer_profile: BuyerDetailDto {
            id: buyer.id.to_string(),
            platform_id: buyer.platform_buyer_id,
            name: buyer.display_name,
            language: buyer.language,
            member_level: buyer.member_level,
            vip: buyer.is_vip,
            lifetime_value_cents: buyer.lifetime_value_cents,
            currency: buyer.currency,
        },
        messages,
        decisions: decisions.into_iter().map(DecisionDto::from).collect(),
    }))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplyAuthor {
    Agent,
    Ai,
    System,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    #[schema(example = "Yes, the red dress is in stock in XL. It ships tomorrow.")]
    pub text: String,
    /// Who wrote it: only `agent` (the default) is accepted here; `ai`
    /// and `system` messages are written by kedai itself and get 422.
    pub author: Option<ReplyAuthor>,
    /// The agent's or integration's display name.
    pub author_name: Option<String>,
    /// True for an internal note that the buyer never sees.
    #[serde(default)]
    pub internal: bool,
    /// Optional id making the reply idempotent: a repeat returns the first.
    pub external_id: Option<String>,
}

impl ReplyRequest {
    fn parse(self, state: &AppState) -> Result<NewReply, ValidationError> {
        if let Some(author @ (ReplyAuthor::Ai | ReplyAuthor::System)) = self.author {
            let name = match author {
                ReplyAuthor::Ai => "ai",
                _ => "system",
            };
            return Err(ValidationError::new(
                "author",
                format!(
                    "must be \"agent\", got {name:?}: messages by `ai` and `system` are \
                     written by kedai itself, so the record of what the AI said stays true; \
                     post as an agent, or add an internal note with \"internal\": true"
                ),
            ));
        }
        Ok(NewReply {
            text: MessageText::parse(&self.text, state.limits.text)?,
            direction: if self.internal {
                Direction::Note
            } else {
                Direction::Outbound
            },
            author: match self.author.unwrap_or(ReplyAuthor::Agent) {
                ReplyAuthor::Agent => Author::Agent,
                ReplyAuthor::Ai => Author::Ai,
                ReplyAuthor::System => Author::System,
            },
            author_name: parse_name(self.author_name.as_deref())?,
            external_id: self
                .external_id
                .as_deref()
                .map(ExternalMessageId::parse)
                .transpose()?,
        })
    }
}

/// Who should answer a conversation from now on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustodyRequest {
    /// `human`: a person takes it over and the AI stops answering;
    /// `ai`: the AI answers the buyer's next messages again.
    pub custody: Custody,
    /// Who takes it over (with `human`), as agents know each other.
    #[serde(default)]
    pub assignee: Option<String>,
}

/// Take a conversation over from the AI, or give it back.
#[utoipa::path(
    put,
    path = "/api/v1/conversations/{id}/custody",
    tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = CustodyRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation with its new custody", body = ConversationDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such conversation for this tenant", body = ErrorBody),
        (status = 422, description = "Not a custody value, or an assignee too long", body = ErrorBody),
    )
)]
pub async fn put_custody(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<CustodyRequest>,
) -> Result<Json<ConversationDto>, ApiError> {
    let id = parse_conversation_id(&id)?;
    check_conversation_shop(&state, &tenant, id).await?;
    let assignee = request
        .assignee
        .as_deref()
        .map(|a| crate::domain::checked_key("assignee", a, 128))
        .transpose()?;
    let not_found = || ApiError::NotFound {
        what: format!("conversation {id}"),
    };
    if !state
        .store
        .set_custody(
            tenant.id,
            id,
            request.custody,
            assignee.as_deref(),
            &tenant.actor(),
        )
        .await?
    {
        return Err(not_found());
    }
    let detail = state
        .store
        .conversation(tenant.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(ConversationDto::from(detail.summary)))
}

/// A conversation's new status.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// `open`, `pending` or `resolved`. After `resolved`, the buyer's next
    /// message starts a new conversation.
    pub status: String,
}

/// Set a conversation's status, e.g. resolve it once the buyer is helped.
#[utoipa::path(
    put,
    path = "/api/v1/conversations/{id}/status",
    tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = StatusRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation with its new status", body = ConversationDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such conversation for this tenant", body = ErrorBody),
        (status = 422, description = "Not a status", body = ErrorBody),
    )
)]
pub async fn put_status(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<StatusRequest>,
) -> Result<Json<ConversationDto>, ApiError> {
    let id = parse_conversation_id(&id)?;
    check_conversation_shop(&state, &tenant, id).await?;
    let status = serde_json::from_value::<ConversationStatus>(serde_json::Value::String(
        request.status.clone(),
    ))
    .map_err(|_| {
        ValidationError::new(
            "status",
            format!(
                "must be open, pending or resolved, got {:?}",
                request.status
            ),
        )
    })?;
    let not_found = || ApiError::NotFound {
        what: format!("conversation {id}"),
    };
    if !state
        .store
        .set_conversation_status(tenant.id, id, status, &tenant.actor())
        .await?
    {
        return Err(not_found());
    }
    let detail = state
        .store
        .conversation(tenant.id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(detail.summary.into()))
}

/// Reply to a conversation (or add an internal note) as an agent or integration.
#[utoipa::path(
    post,
    path = "/api/v1/conversations/{id}/replies",
    tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    request_body = ReplyRequest,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored", body = MessageDto),
        (status = 200, description = "Repeat of an earlier reply with the same external_id", body = MessageDto),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such conversation for this tenant", body = ErrorBody),
        (status = 409, description = "external_id used by another conversation", body = ErrorBody),
        (status = 413, description = "Body over the configured limit", body = ErrorBody),
        (status = 422, description = "A field is missing or invalid, or the text breaks the platform's chat rules (off-platform contact details, outside links, payment details, card numbers); the message says which", body = ErrorBody),
    )
)]
pub async fn post_reply(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<ReplyRequest>,
) -> Result<(StatusCode, Json<MessageDto>), ApiError> {
    let id = parse_conversation_id(&id)?;
    let reply = request.parse(&state)?;
    check_conversation_shop(&state, &tenant, id).await?;
    if reply.direction == Direction::Outbound {
        // What reaches a marketplace buyer must follow its chat rules.
        state
            .channels
            .check_reply(tenant.id, id, reply.text.as_str())
            .await?;
    }
    let (message, repeated) = state
        .store
        .add_reply(tenant.id, id, &reply, &tenant.actor())
        .await?;
    if !repeated && reply.direction == Direction::Outbound && reply.author == Author::Agent {
        // An agent's edit of a machine translation becomes the approved one.
        let learned = crate::learning::translations::approve_edited_translation(
            state.store.as_ref(),
            tenant.id,
            id,
            reply.text.as_str(),
            &tenant.actor(),
        )
        .await;
        if let Err(err) = learned {
            tracing::warn!(error = %err, "an edited translation was not recorded");
        }
    }
    let status = if repeated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(message.into())))
}
