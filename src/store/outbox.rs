//! The outbox: everything that leaves kedai (replies to a platform's send
//! API, signed event webhooks), written in the transaction of what it
//! delivers, leased for delivery, and finished as delivered, retried or
//! dead-lettered; the platform ids of what was sent, so the platforms'
//! reports of kedai's own messages are recognised; and the event
//! dispatcher's endpoints and audit-log cursor.
//!
//! The store knows no platform API: texts and ids are opaque, and every
//! method that names a tenant only sees that tenant's rows. Leasing and
//! event dispatch work across tenants (one outbox for the server).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Serialize;

use super::{Shop, StoreError};
use crate::domain::{ConversationId, MessageId, PlatformBuyerId, ShopId, TenantId};

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
    /// The W3C trace context of the job run that wrote the row, which its
    /// delivery continues.
    pub traceparent: Option<String>,
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

/// Where one reply stands on its way to the buyer's platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyDelivery {
    pub message_id: MessageId,
    pub state: DeliveryState,
    /// Attempts so far.
    pub attempts: u32,
    /// Parts of a long reply already delivered.
    pub parts_sent: u32,
    /// Why the last attempt failed, as the platform or the network said.
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its turn or for a retry.
    Queued,
    /// An attempt is under way.
    Sending,
    /// The platform accepted every part.
    Delivered,
    /// Given up; the conversation was handed to a person.
    Failed,
}

impl DeliveryState {
    pub fn parse(raw: &str) -> Option<DeliveryState> {
        Some(match raw {
            "pending" => DeliveryState::Queued,
            "sending" => DeliveryState::Sending,
            "sent" => DeliveryState::Delivered,
            "dead" => DeliveryState::Failed,
            _ => return None,
        })
    }
}

/// The durable outbox and the event dispatcher's state.
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Whether kedai sent this platform message itself.
    async fn is_own_message(
        &self,
        shop: ShopId,
        platform_message_id: &str,
    ) -> Result<bool, StoreError>;

    /// Replies to `buyer` being sent now, or whose last attempt may have
    /// landed (in doubt), oldest first: a message the platform reports back
    /// may be one of their parts whose outcome kedai has not recorded yet.
    /// Replies not attempted yet are left out: they cannot have landed. A
    /// conversation's replies are sent one at a time, so at most one of a
    /// conversation's replies is a candidate.
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

    /// Where each of a conversation's replies stands on its way to the
    /// platform, oldest first. Replies on a channel without a send API have
    /// none, and delivered ones pruned by [`OutboxStore::prune_outbox`]
    /// are no longer listed.
    async fn reply_deliveries(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<ReplyDelivery>, StoreError>;

    /// Deletes deliveries that succeeded before `before`, and the record of
    /// their platform ids (dead ones wait for a person); returns how many.
    async fn prune_outbox(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;

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
}
