//! The durable store: tenants, shops, tokens, buyers, conversations,
//! messages, orders, the append-only audit log and the job queue's table.
//!
//! Callers see only the [`Store`] trait (the union of one trait per
//! aggregate: tenants, conversations, decisions, orders, audit, jobs) and
//! the record types here; the SQLite implementation lives in [`sqlite`],
//! one file per aggregate, and a PostgreSQL one can follow without touching
//! callers. Every method that takes a [`TenantId`] only ever sees that
//! tenant's rows. The store knows nothing of HTTP, models or the pipeline.

pub mod changes;
pub mod channels;
pub mod copy;
pub mod credentials;
pub mod desk;
pub mod kb;
pub mod learning;
pub mod open;
pub mod operators;
pub mod outbox;
pub mod postgres;
pub mod privacy;
pub mod private_file;
pub mod reports;
pub mod sqlite;
pub mod suggestions;
pub mod timers;
pub mod translations;
pub mod users;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use crate::auth::Scopes;
use crate::domain::{
    Action, Attachment, Author, BuyerId, ConversationId, ConversationStatus, CountryCode,
    CurrencyCode, Custody, DecisionId, Direction, InboundMessage, JobId, LanguageCode, Layer,
    Market, MessageId, MessageKind, MessageText, NewReply, OrderId, Platform, PlatformBuyerId,
    ShopId, ShopKey, TenantId, TenantName, TokenId,
};

pub use changes::{Change, ChangeFeed, ChangeKind, InProcessFeed};
pub use channels::{
    ChannelShop, ChannelStore, CredentialsUpdate, DeadlineAction, DeadlineRecord, MessageFacts,
    Unanswered, VisitorMessage, WidgetSession,
};
pub use desk::DeskStore;
pub use kb::{KbApplied, KbChange, KbDocument, KbKind, KbRecord, KbSnapshot, KbStore, KbVersion};
pub use learning::LearningStore;
pub use open::OpenedStore;
pub use operators::{NewOperatorToken, OperatorStore, OperatorTokenInfo};
pub use outbox::{
    AuditEntry, DeliveryState, EventBatch, EventEndpoint, InFlightReply, NewEvent, OutboxCounts,
    OutboxItem, OutboxOutcome, OutboxStore, OutboxTarget, ReplyDelivery,
};
pub use postgres::PostgresStore;
pub use privacy::{BuyerErasure, PrivacyStore, RetentionOutcome};
pub use reports::ReportStore;
pub use sqlite::{MigrationReport, Schema, SqliteStore};
pub use suggestions::SuggestionStore;
pub use timers::TimerStore;
pub use translations::{
    FaqAsked, NewTranslation, StoredTranslation, TranslationKey, TranslationReview,
    TranslationStatus, TranslationStore,
};
pub use users::UserStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database is locked by another writer (another process, such as
    /// the CLI, holding it past `store.busy_timeout_ms`) or no connection
    /// came free in time; worth retrying shortly.
    #[error("database busy: {0}")]
    Busy(String),
    /// The write depends on a state that changed meanwhile (a person took
    /// the conversation over while the AI was answering); re-read and decide
    /// again.
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("shop credentials: {0}")]
    Credentials(String),
    /// The database's schema is not the one this kedai was built for; the
    /// message says what to run.
    #[error("{0}")]
    Schema(String),
    #[error("cannot use data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for StoreError {
    /// SQLite's `SQLITE_BUSY` and `SQLITE_LOCKED` (and their extended
    /// codes), and a pool with no free connection, become [`StoreError::Busy`].
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut => {
                StoreError::Busy("no database connection came free in time".into())
            }
            sqlx::Error::Database(db)
                if db
                    .code()
                    .and_then(|code| code.parse::<i64>().ok())
                    .is_some_and(|code| matches!(code & 0xff, 5 | 6)) =>
            {
                StoreError::Busy(db.message().to_owned())
            }
            _ => StoreError::Database(err),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Shop {
    pub id: ShopId,
    pub tenant_id: TenantId,
    pub platform: Platform,
    pub key: ShopKey,
    pub name: String,
    /// Where the shop sells.
    pub market: Market,
    /// The keys of the server's `[policy.defaults]` this shop overrides, as
    /// stored (a JSON object); the pipeline validates and applies them.
    pub policy: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// Changes to a shop; `None` keeps what is stored.
#[derive(Debug, Default)]
pub struct ShopUpdate {
    pub name: Option<String>,
    pub market: Option<Market>,
    /// Replaces the whole override object.
    pub policy: Option<serde_json::Value>,
    /// Replaces the platform credentials (a JSON object kept secret).
    pub credentials: Option<SecretString>,
}

/// A shop to register. Credentials are a JSON object kept secret: never
/// logged, never returned by the API.
#[derive(Debug)]
pub struct NewShop {
    pub tenant_id: TenantId,
    pub platform: Platform,
    pub key: ShopKey,
    pub name: String,
    pub market: Market,
    pub credentials: SecretString,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub tenant_id: TenantId,
    pub label: String,
    /// The first characters of the token, to recognise it in lists.
    pub prefix: String,
    pub scopes: Scopes,
    /// The one shop the token acts for; `None` for all of its tenant's.
    pub shop_id: Option<ShopId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token to store: only its hash and a recognisable prefix are kept.
#[derive(Debug)]
pub struct NewToken {
    pub tenant_id: TenantId,
    pub label: String,
    pub token_hash: String,
    pub prefix: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub shop_id: Option<ShopId>,
}

/// What a live (unrevoked) tenant token may do, as authentication finds it.
/// Expiry is the caller's to check, so that it can say why it refuses.
#[derive(Debug, Clone)]
pub struct TokenGrantRecord {
    pub tenant_id: TenantId,
    pub token_id: TokenId,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    /// The shop a shop-bound token acts for.
    pub shop: Option<ShopKey>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    /// True when this (shop, external id) had been stored before; nothing
    /// was written this time.
    pub duplicate: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Buyer {
    pub id: BuyerId,
    pub platform_buyer_id: String,
    pub display_name: Option<String>,
    pub language: Option<String>,
    pub member_level: Option<String>,
    pub is_vip: bool,
    pub lifetime_value_cents: i64,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationSummary {
    pub id: ConversationId,
    pub shop: ShopKey,
    pub platform: Platform,
    pub buyer_id: BuyerId,
    pub buyer_platform_id: String,
    pub buyer_name: Option<String>,
    pub status: ConversationStatus,
    pub layer: Option<Layer>,
    /// Who answers now; the AI never sends while a person holds it.
    pub custody: Custody,
    /// The person holding it, when one was named.
    pub assignee: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_message_at: DateTime<Utc>,
    pub message_count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub external_id: Option<String>,
    pub direction: Direction,
    pub author: Author,
    pub author_name: Option<String>,
    pub text: MessageText,
    /// `text`, or what a non-text message is (its text then describes it).
    pub kind: MessageKind,
    /// What a non-text message carries.
    pub attachment: Option<Attachment>,
    pub language: Option<String>,
    pub translation: Option<String>,
    pub sent_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationDetail {
    pub summary: ConversationSummary,
    pub buyer: Buyer,
    pub messages: Vec<Message>,
}

/// Opaque position in the conversation list, handed back to page on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub last_message_at: DateTime<Utc>,
    pub id: ConversationId,
}

impl PageCursor {
    pub fn encode(&self) -> String {
        hex::encode(format!("{}|{}", ts(self.last_message_at), self.id))
    }

    pub fn decode(raw: &str) -> Option<PageCursor> {
        let bytes = hex::decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (at, id) = text.split_once('|')?;
        Some(PageCursor {
            last_message_at: parse_ts(at).ok()?,
            id: id.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct ConversationFilter {
    pub shop: Option<ShopKey>,
    pub status: Option<ConversationStatus>,
    pub layer: Option<Layer>,
    pub since: Option<DateTime<Utc>>,
    pub after: Option<PageCursor>,
    pub limit: u32,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageCursor>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct OrderItem {
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct TrackingEvent {
    pub at: DateTime<Utc>,
    pub status: String,
    pub location: Option<String>,
    /// The carrier's own words for the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// An order as a marketplace reports it; upserted by (shop, order number).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OrderRecord {
    pub order_number: String,
    pub buyer: Option<PlatformBuyerId>,
    pub status: String,
    pub currency: String,
    pub total_cents: i64,
    pub items: Vec<OrderItem>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub tracking_events: Vec<TrackingEvent>,
    pub placed_at: DateTime<Utc>,
    /// ISO 3166-1 alpha-2 country the parcel goes to.
    pub destination: Option<String>,
    /// When the carrier or marketplace expects delivery.
    pub expected_delivery: Option<DateTime<Utc>>,
}

/// What a marketplace or the seller says about a buyer; upserted by (shop,
/// platform buyer id). Absent optional fields keep what is stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BuyerProfile {
    pub platform_buyer_id: PlatformBuyerId,
    pub display_name: Option<String>,
    pub language: Option<String>,
    pub member_level: Option<String>,
    /// `None` keeps what is stored (false for a new buyer): an update that
    /// does not mention VIP status must not clear it.
    pub is_vip: Option<bool>,
    /// `None` keeps what is stored (0 for a new buyer).
    pub lifetime_value_cents: Option<i64>,
    pub currency: Option<String>,
}

/// What the reply pipeline decided for one inbound message, written in one
/// transaction with everything it changes.
#[derive(Debug, Clone)]
pub struct NewDecision {
    pub conversation: ConversationId,
    /// The inbound message decided on; it is marked processed.
    pub message: MessageId,
    pub layer: Layer,
    pub action: Action,
    /// The inbound message's detected language and its translation for
    /// agents.
    pub language: Option<String>,
    pub translation: Option<String>,
    /// A reply sent to the buyer now (layer 1, auto mode; or a holding
    /// reply). Refused with [`StoreError::Conflict`] when, since the
    /// message arrived, a person took the conversation over, replied, or
    /// resolved it: the AI never answers on top of a human.
    pub reply: Option<NewReply>,
    /// A draft for a human to send.
    pub draft: Option<String>,
    /// The conversation's status after this decision; applied only when no
    /// later message of the conversation was decided already, and never to
    /// a resolved conversation.
    pub status: ConversationStatus,
    /// The pipeline's typed trace, serialised once.
    pub trace: serde_json::Value,
    /// Queue a [`JOB_ENRICH_DECISION`] job in the same transaction.
    pub follow_up: bool,
}

/// What a follow-up adds to a stored decision.
#[derive(Debug, Clone, Default)]
pub struct DecisionEnrichment {
    /// The inbound message in the agents' language, when it had none.
    pub translation: Option<String>,
    /// The draft the decision left to its follow-up; kept only where the
    /// decision has none.
    pub draft: Option<String>,
    /// The follow-up's record (stored beside the trace, which is never
    /// changed after the decision).
    pub follow_up: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: DecisionId,
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub layer: Layer,
    pub action: Action,
    pub draft: Option<String>,
    pub reply_message_id: Option<MessageId>,
    pub trace: serde_json::Value,
    /// What the follow-up added, once it ran.
    pub follow_up: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub shop: Option<ShopKey>,
    pub buyer: Option<PlatformBuyerId>,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub shop: ShopKey,
    #[serde(flatten)]
    pub record: OrderRecord,
    pub updated_at: DateTime<Utc>,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// Who acted: `system`, `ai`, `cli`, `token:<id>`, `agent:<name>`.
    pub actor: String,
    pub action: String,
    pub subject_type: String,
    pub subject_id: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub event: AuditEvent,
}

pub const JOB_INBOUND_MESSAGE: &str = "inbound_message";
/// Work done for a decision after it is stored, so that nothing slow stands
/// between a message and its route: the agent's translation and the AI
/// summary. The payload names the decided message (`message_id`).
pub const JOB_ENRICH_DECISION: &str = "enrich_decision";

/// A job leased to one worker until `lease_until`.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub tenant_id: Option<TenantId>,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Attempts so far, this one included.
    pub attempts: u32,
    pub max_attempts: u32,
    /// The conversation the job is about; its jobs run one at a time.
    pub conversation_id: Option<ConversationId>,
    /// When the job was queued: for a buyer message, when it arrived.
    pub created_at: DateTime<Utc>,
    /// Set once the job has failed for good: the handler's give-up hook
    /// is due instead of the job itself.
    pub give_up: Option<GiveUp>,
    /// The W3C trace context of the span that queued the job, which its
    /// run continues (`telemetry::continue_trace`).
    pub traceparent: Option<String>,
    /// Which workers take it.
    pub lane: JobLane,
}

/// The workers a job waits for. A buyer message starts in the fast lane and
/// moves to the draft lane when its answer needs the chat model; a
/// decision's follow-up (translation, summary, a draft left to it) starts
/// in the draft lane. Answers from records and the knowledge base never
/// queue behind the chat model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobLane {
    #[default]
    Fast,
    Draft,
}

impl JobLane {
    /// The lane a new job of `kind` starts in.
    pub fn for_new(kind: &str) -> JobLane {
        if kind == JOB_ENRICH_DECISION {
            JobLane::Draft
        } else {
            JobLane::Fast
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobLane::Fast => "fast",
            JobLane::Draft => "draft",
        }
    }
}

impl std::str::FromStr for JobLane {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<JobLane, StoreError> {
        match s {
            "fast" => Ok(JobLane::Fast),
            "draft" => Ok(JobLane::Draft),
            other => Err(StoreError::Corrupt(format!("job lane {other:?}"))),
        }
    }
}

/// Why the queue gives up on a job, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiveUp {
    pub cause: GiveUpCause,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GiveUpCause {
    /// The handler failed for good: a permanent error, or its last attempt
    /// failed.
    Failed,
    /// Its last attempt never finished: the process stopped (or hung) and
    /// the lease ran out.
    LeaseExpired,
    /// A buyer message waited longer than `queue.max_message_age_secs`
    /// before it could be processed; answering it now would be too late.
    TooOld,
}

impl GiveUpCause {
    pub fn as_str(self) -> &'static str {
        match self {
            GiveUpCause::Failed => "failed",
            GiveUpCause::LeaseExpired => "lease_expired",
            GiveUpCause::TooOld => "too_old",
        }
    }
}

/// What to do with a job whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFailure {
    RetryAt(DateTime<Utc>),
    /// Failed for good, and the give-up hook has not succeeded yet: it runs
    /// (again) at this time.
    GiveUpAt {
        cause: GiveUpCause,
        at: DateTime<Utc>,
    },
    /// Finished with: given up on (handed off) or beyond help. The job
    /// rests in the dead-letter state.
    Dead,
}

#[derive(Debug, Clone, Copy)]
pub struct LeaseRequest<'a> {
    pub owner: &'a str,
    pub limit: u32,
    pub lease: chrono::Duration,
    /// Only jobs of these kinds; all kinds when `None`. Whatever the kinds,
    /// buyer messages are leased before follow-ups.
    pub kinds: Option<&'a [&'a str]>,
    /// Only jobs in this lane; every lane when `None`.
    pub lane: Option<JobLane>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub queued: i64,
    pub leased: i64,
    pub done: i64,
    pub dead: i64,
}

/// Tenants, their API tokens and their shops.
#[async_trait]
pub trait TenantStore: Send + Sync + 'static {
    /// A cheap round trip proving the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_tenant(&self, name: &TenantName) -> Result<Tenant, StoreError>;

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError>;

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;

    async fn create_token(&self, token: NewToken) -> Result<TokenInfo, StoreError>;

    /// Marks a token revoked; false when it does not exist or already was.
    async fn revoke_token(&self, id: TokenId) -> Result<bool, StoreError>;

    async fn list_tokens(&self, tenant: TenantId) -> Result<Vec<TokenInfo>, StoreError>;

    /// What the live (unrevoked) token with this hash may do.
    async fn authenticate(&self, token_hash: &str) -> Result<Option<TokenGrantRecord>, StoreError>;

    /// Records that a token was used at `at`.
    async fn touch_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), StoreError>;

    async fn add_shop(&self, shop: NewShop) -> Result<Shop, StoreError>;

    async fn list_shops(&self, tenant: TenantId) -> Result<Vec<Shop>, StoreError>;
    /// Changes a shop's name, market, policy or credentials, with an audit
    /// event naming what changed (never the credentials themselves).
    async fn update_shop(
        &self,
        tenant: TenantId,
        key: &ShopKey,
        update: ShopUpdate,
        actor: &str,
    ) -> Result<Shop, StoreError>;

    async fn shop_by_key(
        &self,
        tenant: TenantId,
        key: &ShopKey,
    ) -> Result<Option<Shop>, StoreError>;

    /// A shop's platform credentials (a JSON object), decrypted; for the
    /// connector that talks to the platform, never for an API answer.
    async fn shop_credentials(
        &self,
        tenant: TenantId,
        key: &ShopKey,
    ) -> Result<Option<SecretString>, StoreError>;
}

/// Buyers, conversations and their messages.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// Stores an inbound message once, with its buyer, conversation and the
    /// job that will process it, in one transaction that is durable before
    /// this returns. A redelivery of the same (shop, external id) changes
    /// nothing and reports `duplicate: true`. A message the seller wrote in
    /// the marketplace's own app ([`crate::domain::Sender::Seller`]) is
    /// stored as an agent's outbound message, with no job: it was sent
    /// already and is not a question.
    async fn ingest(
        &self,
        shop: &Shop,
        message: &InboundMessage,
        max_attempts: u32,
    ) -> Result<IngestOutcome, StoreError>;

    async fn list_conversations(
        &self,
        tenant: TenantId,
        filter: &ConversationFilter,
    ) -> Result<Page<ConversationSummary>, StoreError>;

    async fn conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> Result<Option<ConversationDetail>, StoreError>;

    /// Adds an outbound message or internal note to a conversation. With an
    /// external id, a repeat returns the first reply and writes nothing.
    async fn add_reply(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        reply: &NewReply,
        actor: &str,
    ) -> Result<(Message, bool), StoreError>;

    /// Sets a conversation's status, with an audit event; a buyer's next
    /// message after `resolved` starts a new conversation. False when the
    /// tenant has no such conversation.
    /// Gives the conversation to a person (`Custody::Human`, optionally
    /// naming them) or back to the AI, with an audit event. False when the
    /// tenant has no such conversation.
    async fn set_custody(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        custody: Custody,
        assignee: Option<&str>,
        actor: &str,
    ) -> Result<bool, StoreError>;
    async fn set_conversation_status(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        status: ConversationStatus,
        actor: &str,
    ) -> Result<bool, StoreError>;

    /// The conversation an inbound or outbound message belongs to.
    async fn message_conversation(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Option<ConversationId>, StoreError>;

    /// Marks an inbound message as processed by the pipeline.
    async fn mark_processed(&self, message: MessageId) -> Result<(), StoreError>;
}

/// The reply pipeline's decisions and their follow-ups.
#[async_trait]
pub trait DecisionStore: Send + Sync + 'static {
    /// Stores a pipeline decision with its reply, the message's language and
    /// translation, the conversation's new layer and status, and an audit
    /// event. A second decision for the same message changes nothing and
    /// returns the first with `true`.
    async fn record_decision(
        &self,
        tenant: TenantId,
        decision: &NewDecision,
    ) -> Result<(Decision, bool), StoreError>;

    /// Adds a follow-up's results to the decision on `message`, with an
    /// audit event; false when the message has no decision.
    async fn enrich_decision(
        &self,
        tenant: TenantId,
        message: MessageId,
        enrichment: &DecisionEnrichment,
    ) -> Result<bool, StoreError>;

    /// The decision on one inbound message, if it was decided.
    async fn decision_for_message(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> Result<Option<Decision>, StoreError>;
    /// A conversation's decisions, oldest first.
    async fn decisions(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<Decision>, StoreError>;
}

/// Orders and buyer profiles.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Stores an order, and with `buyer` the buyer's profile, in one
    /// transaction; (shop, order number) identifies the order.
    async fn upsert_order(
        &self,
        shop: &Shop,
        order: &OrderRecord,
        buyer: Option<&BuyerProfile>,
    ) -> Result<Order, StoreError>;

    async fn order(&self, tenant: TenantId, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// Orders, newest first.
    async fn list_orders(
        &self,
        tenant: TenantId,
        filter: &OrderFilter,
    ) -> Result<Vec<Order>, StoreError>;

    async fn orders_for_buyer(
        &self,
        tenant: TenantId,
        buyer: BuyerId,
    ) -> Result<Vec<Order>, StoreError>;
}

/// The append-only audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    async fn append_audit(
        &self,
        tenant: Option<TenantId>,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    async fn audit_log(&self, tenant: TenantId, limit: u32)
        -> Result<Vec<AuditRecord>, StoreError>;
}

/// The durable job queue's table.
///
/// Invariants every implementation keeps: at most one job per conversation
/// is leased at any time; a conversation's buyer-message jobs are leased in
/// message order (the platform's `sent_at`, then arrival), each only once
/// every earlier one is done or dead; buyer messages are leased before
/// follow-ups; and a job whose last attempt's lease ran out comes back
/// with [`Job::give_up`] set, never silently dead.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Leases up to `limit` due jobs (queued ones whose time has come, and
    /// leased ones whose lease ran out) to `owner`, at most one per
    /// conversation, each its conversation's next in order.
    async fn lease_jobs(&self, request: LeaseRequest<'_>) -> Result<Vec<Job>, StoreError>;

    /// Extends `owner`'s lease on a job to `lease` from now; false when
    /// `owner` no longer holds it (another worker took it over, or it
    /// finished), and the caller must stop working on it.
    async fn renew_lease(
        &self,
        id: JobId,
        owner: &str,
        lease: chrono::Duration,
    ) -> Result<bool, StoreError>;

    /// Marks a job done; false if `owner` no longer holds its lease.
    async fn complete_job(&self, id: JobId, owner: &str) -> Result<bool, StoreError>;

    async fn fail_job(
        &self,
        id: JobId,
        owner: &str,
        error: &str,
        failure: JobFailure,
    ) -> Result<bool, StoreError>;

    /// Gives back every job `owner` holds, without counting the attempt.
    async fn release_jobs(&self, owner: &str) -> Result<u64, StoreError>;

    /// Gives back a job `owner` holds into `lane`, without counting the
    /// attempt; it keeps its place in the queue and in its conversation.
    /// False if `owner` no longer holds it.
    async fn move_to_lane(&self, id: JobId, owner: &str, lane: JobLane)
        -> Result<bool, StoreError>;

    async fn job_counts(&self) -> Result<JobCounts, StoreError>;

    /// Deletes jobs that finished before `before` (not dead ones, which
    /// wait for a person); returns how many.
    async fn prune_done_jobs(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Everything kedai keeps, one trait object for the whole store; each
/// aggregate has a trait of its own so that an implementation is one file
/// per aggregate.
pub trait Store:
    TenantStore
    + ConversationStore
    + DecisionStore
    + OrderStore
    + AuditStore
    + JobStore
    + TranslationStore
    + ChannelStore
    + OutboxStore
    + UserStore
    + DeskStore
    + OperatorStore
    + PrivacyStore
    + ReportStore
    + TimerStore
    + LearningStore
    + suggestions::SuggestionStore
{
    /// Notes of committed changes to conversations, for live pages.
    fn changes(&self) -> &dyn ChangeFeed;
}

/// The one timestamp format of the store: sortable as text.
pub fn ts(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub fn parse_ts(raw: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp {raw:?}: {e}")))
}
