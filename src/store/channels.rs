//! What the channels keep: each shop's platform account and credentials,
//! the platforms' conversation ids, the durable outbox (replies to
//! platforms, signed event webhooks), reconciliation cursors, event
//! endpoints, web-chat sessions and response deadlines.
//!
//! The store does not know any platform's API: credentials are an opaque
//! secret JSON object, thread and message ids opaque strings. Every method
//! that names a tenant only sees that tenant's rows; the few that do not
//! (a webhook names a platform account, not a tenant) say so.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use super::{Shop, StoreError};
use crate::domain::{
    ConversationId, MessageId, MessageKind, Platform, PlatformBuyerId, ShopId, TenantId,
};

/// A shop connected to a platform, with its secret credentials.
#[derive(Debug, Clone)]
pub struct ChannelShop {
    pub shop: Shop,
    /// The platform's id of the shop (what pushes name), once set.
    pub account_id: Option<String>,
    pub credentials: SecretString,
}

/// Credentials to store for a shop, with the platform account they name.
#[derive(Debug)]
pub struct CredentialsUpdate {
    pub credentials: SecretString,
    /// The platform's id of the shop; unique per platform.
    pub account_id: Option<String>,
}

/// An outbox row leased for delivery.
#[derive(Debug, Clone)]
pub struct OutboxItem {
    pub id: String,
    pub tenant_id: TenantId,
    pub target: OutboxTarget,
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// An earlier attempt may have been delivered without kedai learning
    /// it (a crash or a timeout mid-send).
    pub in_doubt: bool,
    /// When the previous attempt started, for the in-doubt check.
    pub previous_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum OutboxTarget {
    /// An outbound message to the buyer through the shop's platform.
    Reply {
        shop: Shop,
        conversation_id: ConversationId,
        message_id: MessageId,
        buyer: PlatformBuyerId,
        text: String,
        /// Parts of the text already delivered.
        parts_sent: u32,
    },
    /// A signed event for an integration endpoint.
    Event {
        endpoint_id: String,
        url: String,
        secret: SecretString,
        event_type: String,
        body: String,
    },
}

/// How an outbox delivery attempt ended.
#[derive(Debug, Clone)]
pub enum OutboxOutcome {
    /// One part of a reply reached the platform (with its message id); the
    /// row stays leased for the next part.
    PartSent { part: u32, platform_id: String },
    /// Everything was delivered.
    Delivered,
    /// Try again at `at`. `counted: false` when the attempt never started
    /// (a rate limit), so it does not use up an attempt.
    Retry {
        at: DateTime<Utc>,
        error: String,
        in_doubt: bool,
        counted: bool,
    },
    /// Give up. A reply's conversation is handed to a human with the
    /// reason as an internal note.
    Dead { error: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub dead: i64,
}

/// A tenant's integration endpoint for event webhooks.
#[derive(Debug, Clone, Serialize)]
pub struct EventEndpoint {
    pub id: String,
    pub tenant_id: TenantId,
    pub url: String,
    /// Event types delivered; empty means all.
    pub events: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// An audit row turned into an event by the dispatcher.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub seq: i64,
    pub tenant_id: Option<TenantId>,
    pub at: DateTime<Utc>,
    pub action: String,
    pub subject_type: String,
    pub subject_id: String,
    pub details: serde_json::Value,
}

/// Events to enqueue for the audit rows up to `through_seq`.
#[derive(Debug, Clone)]
pub struct EventBatch {
    pub through_seq: i64,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: TenantId,
    pub endpoint_id: String,
    /// Unique per (endpoint, event): a second enqueue is a no-op.
    pub idempotency_key: String,
    pub conversation_id: Option<ConversationId>,
    pub body: String,
}

/// A reply in the outbox that is not wholly delivered.
#[derive(Debug, Clone)]
pub struct InFlightReply {
    pub outbox_id: String,
    pub text: String,
    pub parts_sent: u32,
}

/// A message as a web-chat visitor sees it.
#[derive(Debug, Clone, Serialize)]
pub struct VisitorMessage {
    pub id: MessageId,
    /// `visitor` or `shop`.
    pub from: &'static str,
    pub author: crate::domain::Author,
    pub text: String,
    pub sent_at: DateTime<Utc>,
}

/// A web-chat visitor's session.
#[derive(Debug, Clone)]
pub struct WidgetSession {
    pub id: String,
    pub tenant_id: TenantId,
    pub shop: Shop,
    pub secret_hash: String,
    /// The name the visitor gave, if any.
    pub name: Option<String>,
}

/// The oldest buyer message of a conversation that no outbound message has
/// followed yet.
#[derive(Debug, Clone)]
pub struct Unanswered {
    pub message_id: MessageId,
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    pub shop_key: String,
    pub platform: Platform,
    pub sent_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// The message's detected language, else the buyer's.
    pub language: Option<String>,
    pub flagged: bool,
    pub acknowledged: bool,
}

/// A deadline row as listed for agents.
#[derive(Debug, Clone, Serialize)]
pub struct DeadlineRecord {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub due_at: DateTime<Utc>,
    pub flagged_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// What the deadline timer does to one message.
#[derive(Debug, Clone)]
pub enum DeadlineAction {
    /// Mark the conversation at risk (audited once).
    Flag { due_at: DateTime<Utc> },
    /// Send this holding reply as a system message (once).
    Acknowledge {
        due_at: DateTime<Utc>,
        text: crate::domain::MessageText,
    },
}

/// A stored message's kind and shop, for deciding how to process it.
#[derive(Debug, Clone)]
pub struct MessageFacts {
    pub tenant_id: TenantId,
    pub shop: Shop,
    pub conversation_id: ConversationId,
    pub kind: MessageKind,
    pub text: String,
    pub buyer: String,
}

/// The channels' durable state. See the module documentation.
#[async_trait]
pub trait ChannelStore: Send + Sync + 'static {
    /// Every shop on `platform` (all platforms when `None`), across tenants,
    /// with its credentials: webhooks are signed per platform app, not per
    /// tenant, and the server must find the app that signed.
    async fn channel_shops(
        &self,
        platform: Option<Platform>,
    ) -> Result<Vec<ChannelShop>, StoreError>;

    async fn channel_shop(&self, shop: ShopId) -> Result<Option<ChannelShop>, StoreError>;

    /// Replaces a shop's credentials and platform account, with an audit
    /// event that never contains the credentials. An account id another
    /// shop already uses is `AlreadyExists`.
    async fn set_credentials(
        &self,
        tenant: TenantId,
        shop: ShopId,
        update: &CredentialsUpdate,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Remembers which buyer a platform conversation is with.
    async fn upsert_thread(
        &self,
        shop: ShopId,
        thread: &str,
        buyer: &PlatformBuyerId,
    ) -> Result<(), StoreError>;

    async fn thread_buyer(&self, shop: ShopId, thread: &str) -> Result<Option<String>, StoreError>;

    /// The buyer's most recent platform conversation.
    async fn buyer_thread(
        &self,
        shop: ShopId,
        buyer: &PlatformBuyerId,
    ) -> Result<Option<String>, StoreError>;

    /// Whether a message with this external id is stored for the shop
    /// (read without taking the write lock: reconciliation sees mostly
    /// messages stored before).
    async fn has_message(&self, shop: ShopId, external_id: &str) -> Result<bool, StoreError>;

    /// Whether kedai sent this platform message itself.
    async fn is_own_message(
        &self,
        shop: ShopId,
        platform_message_id: &str,
    ) -> Result<bool, StoreError>;

    /// Replies to `buyer` not yet wholly delivered, oldest first: a message
    /// the platform reports back may be one of their parts whose send
    /// outcome kedai has not recorded yet.
    async fn in_flight_replies(
        &self,
        shop: ShopId,
        buyer: &PlatformBuyerId,
    ) -> Result<Vec<InFlightReply>, StoreError>;

    /// Records that part `part` of an outbox reply reached the platform as
    /// `platform_message_id`, whoever holds its lease (the platform said so).
    async fn record_part_sent(
        &self,
        outbox_id: &str,
        part: u32,
        platform_message_id: &str,
    ) -> Result<(), StoreError>;

    /// Leases up to `limit` due outbox rows to `owner`: pending rows whose
    /// time has come and leased rows whose lease ran out (those are in
    /// doubt). A conversation's replies are leased one at a time, oldest
    /// first, so they reach the buyer in order.
    async fn lease_outbox(
        &self,
        owner: &str,
        limit: u32,
        lease: chrono::Duration,
    ) -> Result<Vec<OutboxItem>, StoreError>;

    /// Records an attempt's outcome; false when `owner` no longer holds the
    /// lease (nothing is written then).
    async fn finish_outbox(
        &self,
        id: &str,
        owner: &str,
        outcome: &OutboxOutcome,
    ) -> Result<bool, StoreError>;

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    async fn cursor(&self, scope: &str, name: &str) -> Result<Option<String>, StoreError>;

    async fn set_cursor(&self, scope: &str, name: &str, value: &str) -> Result<(), StoreError>;

    async fn add_endpoint(
        &self,
        tenant: TenantId,
        url: &str,
        secret: &SecretString,
        events: &[String],
    ) -> Result<EventEndpoint, StoreError>;

    async fn list_endpoints(&self, tenant: TenantId) -> Result<Vec<EventEndpoint>, StoreError>;

    /// False when the tenant has no such live endpoint.
    async fn remove_endpoint(&self, tenant: TenantId, id: &str) -> Result<bool, StoreError>;

    /// Audit rows after the dispatcher's cursor (across tenants), oldest
    /// first, with the live endpoints of their tenants.
    async fn audit_after_cursor(
        &self,
        limit: u32,
    ) -> Result<(Vec<AuditEntry>, Vec<(EventEndpoint, SecretString)>), StoreError>;

    /// Enqueues the events and moves the cursor, in one transaction.
    async fn enqueue_events(&self, batch: &EventBatch) -> Result<(), StoreError>;

    async fn create_widget_session(
        &self,
        shop: &Shop,
        secret_hash: &str,
        name: Option<&str>,
    ) -> Result<WidgetSession, StoreError>;

    async fn widget_session(&self, id: &str) -> Result<Option<WidgetSession>, StoreError>;

    /// The last `limit` messages a visitor sees (theirs and the shop's,
    /// never internal notes), oldest first.
    async fn visitor_messages(
        &self,
        shop: ShopId,
        buyer: &PlatformBuyerId,
        limit: u32,
    ) -> Result<Vec<VisitorMessage>, StoreError>;

    /// The oldest unanswered buyer message of each open conversation whose
    /// last message is newer than `since`.
    async fn unanswered(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Unanswered>, StoreError>;

    /// Applies a deadline action if the message is still unanswered;
    /// false when it was answered meanwhile or the action was done before.
    async fn deadline_action(
        &self,
        message: &Unanswered,
        action: &DeadlineAction,
    ) -> Result<bool, StoreError>;

    /// A tenant's flagged messages not answered yet, soonest due first.
    async fn at_risk(&self, tenant: TenantId) -> Result<Vec<DeadlineRecord>, StoreError>;

    /// The shop a tenant's conversation belongs to.
    async fn conversation_shop(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Option<Shop>, StoreError>;

    /// What a stored message is and where it came from.
    async fn message_facts(&self, message: MessageId) -> Result<Option<MessageFacts>, StoreError>;

    /// When an order was last written, to decide whether to fetch it again.
    async fn order_updated_at(
        &self,
        shop: ShopId,
        order_number: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
}
