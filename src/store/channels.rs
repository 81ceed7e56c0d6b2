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

    async fn cursor(&self, scope: &str, name: &str) -> Result<Option<String>, StoreError>;

    async fn set_cursor(&self, scope: &str, name: &str, value: &str) -> Result<(), StoreError>;

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
