//! What the workbench keeps and reads besides conversations themselves:
//! who holds each conversation, approvals of buyers' binding requests and
//! the owner's limits for them, the inbox's rows and counts, the facts the
//! dashboard's figures are computed from, and the filtered audit log.
//!
//! Every query takes a [`TenantId`] and, where it lists conversations, the
//! viewer's [`ShopAccess`]: rows of other shops never leave the store.
//! Knows nothing of HTTP, sessions or templates.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::users::ShopAccess;
use super::{AuditRecord, ConversationSummary, Message, StoreError};
use crate::domain::{
    ApprovalId, Author, ConversationId, Direction, MessageId, NewReply, Platform, ShopId, ShopKey,
    TenantId, UserId, ValidationError,
};

/// Who answers a conversation now, as people read it: the
/// conversation's custody and assignee, with the assignee's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "holder", rename_all = "snake_case")]
pub enum Holder {
    /// The AI answers.
    Ai,
    /// A person holds it, and no one in particular has taken it yet.
    Unassigned,
    /// `id` when the assignee is a workbench user; otherwise `name` is
    /// what the API or an integration named.
    Agent { id: Option<UserId>, name: String },
}

/// Things only a human may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingKind {
    Refund,
    PartialRefund,
    Discount,
    Cancellation,
    Compensation,
}

impl BindingKind {
    pub const ALL: [BindingKind; 5] = [
        BindingKind::Refund,
        BindingKind::PartialRefund,
        BindingKind::Discount,
        BindingKind::Cancellation,
        BindingKind::Compensation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Refund => "refund",
            BindingKind::PartialRefund => "partial_refund",
            BindingKind::Discount => "discount",
            BindingKind::Cancellation => "cancellation",
            BindingKind::Compensation => "compensation",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            BindingKind::Refund => "Refund",
            BindingKind::PartialRefund => "Partial refund",
            BindingKind::Discount => "Discount",
            BindingKind::Cancellation => "Cancellation",
            BindingKind::Compensation => "Compensation",
        }
    }

    /// Whether an approval names an amount (a cancellation does not).
    pub fn has_amount(self) -> bool {
        self != BindingKind::Cancellation
    }

    pub fn parse(raw: &str) -> Result<BindingKind, ValidationError> {
        BindingKind::ALL
            .into_iter()
            .find(|k| k.as_str() == raw.trim())
            .ok_or_else(|| {
                ValidationError::new(
                    "kind",
                    format!(
                        "must be refund, partial_refund, discount, cancellation or \
                         compensation, got {raw:?}"
                    ),
                )
            })
    }

    /// The kind a pipeline decision points at: its `binding_request`
    /// (bargaining, compensation) or its intent (refunds, returns, damaged
    /// or missing goods, cancellations).
    pub fn from_trace(binding_request: Option<&str>, intent: Option<&str>) -> Option<BindingKind> {
        match binding_request {
            Some("discount") => return Some(BindingKind::Discount),
            Some("compensation") => return Some(BindingKind::Compensation),
            Some("refund") => return Some(BindingKind::Refund),
            Some("cancellation") => return Some(BindingKind::Cancellation),
            _ => {}
        }
        match intent? {
            "refund_request" | "return_request" | "damaged_item" | "wrong_item"
            | "not_received" => Some(BindingKind::Refund),
            "cancel_order" => Some(BindingKind::Cancellation),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalOutcome {
    Approved,
    Declined,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalLimit {
    pub kind: BindingKind,
    pub max_cents: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// A human's answer to a binding request, with the buyer's reply.
#[derive(Debug, Clone)]
pub struct NewApproval {
    pub conversation: ConversationId,
    /// The buyer message that asked, when the request was detected.
    pub message: Option<MessageId>,
    pub kind: BindingKind,
    pub outcome: ApprovalOutcome,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub order_number: Option<String>,
    pub decided_by: UserId,
    /// The answer the buyer gets, written from a template.
    pub reply: NewReply,
}

#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub id: ApprovalId,
    pub conversation_id: ConversationId,
    pub message_id: Option<MessageId>,
    pub kind: BindingKind,
    pub outcome: ApprovalOutcome,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub order_number: Option<String>,
    pub decided_by: UserId,
    pub decided_by_name: String,
    pub reply_message_id: MessageId,
    pub created_at: DateTime<Utc>,
}

/// A buyer's binding request that no human has answered yet.
#[derive(Debug, Clone, Serialize)]
pub struct OpenRequest {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    pub shop: ShopKey,
    pub buyer_name: Option<String>,
    pub kind: BindingKind,
    pub text: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxTab {
    /// Layer 3: a human now.
    Human,
    /// Layer 2: a draft waits for a human.
    Drafts,
    /// Layer 1: the AI answered.
    Ai,
    /// A buyer has waited longer than the warning time for a reply.
    AtRisk,
}

impl InboxTab {
    pub const ALL: [InboxTab; 4] = [
        InboxTab::Human,
        InboxTab::Drafts,
        InboxTab::Ai,
        InboxTab::AtRisk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InboxTab::Human => "human",
            InboxTab::Drafts => "drafts",
            InboxTab::Ai => "ai",
            InboxTab::AtRisk => "at_risk",
        }
    }

    pub fn parse(raw: &str) -> Option<InboxTab> {
        InboxTab::ALL.into_iter().find(|t| t.as_str() == raw)
    }
}

#[derive(Debug, Clone)]
pub struct InboxFilter {
    pub tab: InboxTab,
    pub shop: Option<ShopKey>,
    pub platform: Option<Platform>,
    pub language: Option<String>,
    pub intent: Option<String>,
    pub agent: Option<UserId>,
    /// Resolved conversations instead of open ones.
    pub resolved: bool,
    /// A buyer waiting since before this is at risk.
    pub at_risk_before: DateTime<Utc>,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxRow {
    pub summary: ConversationSummary,
    pub language: Option<String>,
    pub intent: Option<String>,
    pub holder: Holder,
    /// The oldest buyer message with no reply after it.
    pub awaiting_since: Option<DateTime<Utc>>,
    /// The last message's text, cut short.
    pub preview: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct InboxCounts {
    pub human: i64,
    pub drafts: i64,
    pub ai: i64,
    pub at_risk: i64,
}

impl InboxCounts {
    pub fn get(&self, tab: InboxTab) -> i64 {
        match tab {
            InboxTab::Human => self.human,
            InboxTab::Drafts => self.drafts,
            InboxTab::Ai => self.ai,
            InboxTab::AtRisk => self.at_risk,
        }
    }
}

/// One message of a conversation, as the dashboard and the reports need
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFact {
    pub id: MessageId,
    pub direction: Direction,
    pub author: Author,
    pub at: DateTime<Utc>,
    /// The stored (validated, redacted) text.
    pub text: String,
}

/// One pipeline decision, as the dashboard and the reports need it: the
/// route and the few trace fields the figures read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DecisionFact {
    /// The buyer message decided on.
    pub message_id: Option<MessageId>,
    pub layer: u8,
    pub action: String,
    pub at: DateTime<Utc>,
    pub reasons: Vec<String>,
    pub language: Option<String>,
    pub intent: Option<String>,
    /// The trace's `answer_kind` (`faq`, `draft`, `order_status`, ...).
    pub answer_kind: Option<String>,
    /// The draft offered to a person (layers 2 and 3).
    pub draft: Option<String>,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: Option<String>,
    /// 0 (calm) to 3.
    pub anger: u8,
    /// The buyer asked this already (by meaning).
    pub repeated: bool,
    /// The best knowledge-base hit's similarity, when retrieval ran.
    pub top_similarity: Option<f32>,
    /// `(kind, value)`: `order_number`, `sku`, `tracking_number`, ...
    pub entities: Vec<(String, String)>,
}

/// A change of a conversation's status, from the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusFact {
    pub at: DateTime<Utc>,
    /// `open`, `pending` or `resolved`.
    pub status: String,
}

/// A conversation's timeline: what the dashboard's figures are made of.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationFacts {
    pub id: ConversationId,
    pub shop: ShopKey,
    pub platform: Platform,
    pub resolved: bool,
    pub created_at: DateTime<Utc>,
    /// From the first decision that named them.
    pub language: Option<String>,
    pub intent: Option<String>,
    /// Oldest first.
    pub messages: Vec<MessageFact>,
    /// Oldest first.
    pub decisions: Vec<DecisionFact>,
    /// Status changes people (or integrations) made, oldest first.
    pub status_changes: Vec<StatusFact>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Actions starting with this (`reply.`, `approval.approved`).
    pub action: Option<String>,
    pub actor: Option<String>,
    pub subject_id: Option<String>,
    /// Only entries before this sequence number (paging back).
    pub before: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait DeskStore: Send + Sync + 'static {
    /// The shop a conversation belongs to; `None` when the tenant has no
    /// such conversation.
    async fn conversation_shop_id(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Option<ShopId>, StoreError>;

    async fn holder(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Holder, StoreError>;

    async fn inbox(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        filter: &InboxFilter,
    ) -> Result<Vec<InboxRow>, StoreError>;

    /// Open conversations per tab, under the same filters but the tab's.
    async fn inbox_counts(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        filter: &InboxFilter,
    ) -> Result<InboxCounts, StoreError>;

    async fn approval_limits(&self, tenant: TenantId) -> Result<Vec<ApprovalLimit>, StoreError>;

    async fn set_approval_limit(
        &self,
        tenant: TenantId,
        kind: BindingKind,
        max_cents: i64,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Stores the approval (or refusal), the buyer's reply and an audit
    /// event in one transaction. `AlreadyExists` when the request was
    /// answered already.
    async fn record_approval(
        &self,
        tenant: TenantId,
        approval: &NewApproval,
        actor: &str,
    ) -> Result<(Approval, Message), StoreError>;

    async fn approvals(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<Approval>, StoreError>;

    /// Binding requests in conversations that are not resolved and that
    /// no human has answered yet, newest first.
    async fn open_requests(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        limit: u32,
    ) -> Result<Vec<OpenRequest>, StoreError>;

    /// Conversations created at or after `since`, with their messages and
    /// decisions.
    async fn conversation_facts(
        &self,
        tenant: TenantId,
        access: &ShopAccess,
        since: DateTime<Utc>,
    ) -> Result<Vec<ConversationFacts>, StoreError>;

    /// The audit log, newest first, filtered.
    async fn audit_search(
        &self,
        tenant: TenantId,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditRecord>, StoreError>;
}
