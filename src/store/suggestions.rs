//! Suggested FAQ entries learned from people, per tenant: a knowledge
//! gap a person answered, kept as the buyers' question variants and the
//! person's answer until a person accepts (the FAQ entry made from it is
//! recorded) or dismisses it. One suggestion per tenant and answer, so a
//! decided one is never suggested again. Every query takes a
//! [`TenantId`]. Knows nothing of gaps, models, the knowledge base's
//! index or HTTP.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{ConversationId, TenantId};

/// Where a suggestion stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionStatus {
    /// Waiting for a person.
    Pending,
    /// A person accepted it; its FAQ entry exists.
    Accepted,
    /// A person dismissed it; nothing was added.
    Dismissed,
}

impl SuggestionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SuggestionStatus::Pending => "pending",
            SuggestionStatus::Accepted => "accepted",
            SuggestionStatus::Dismissed => "dismissed",
        }
    }

    pub fn parse(raw: &str) -> Result<SuggestionStatus, StoreError> {
        Ok(match raw {
            "pending" => SuggestionStatus::Pending,
            "accepted" => SuggestionStatus::Accepted,
            "dismissed" => SuggestionStatus::Dismissed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown suggestion status {other:?}"
                )))
            }
        })
    }
}

/// A gap a person answered, to suggest (or to refresh while pending).
#[derive(Debug, Clone)]
pub struct NewFaqSuggestion {
    /// Identifies the answer: the same answer refreshes one suggestion.
    pub answer_key: String,
    /// The buyers' questions, the gap's central one first.
    pub questions: Vec<String>,
    pub answer: String,
    pub lang: String,
    /// How many buyer messages asked it.
    pub asked: i64,
    pub conversations: Vec<ConversationId>,
}

/// A suggested FAQ entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaqSuggestion {
    pub id: Uuid,
    pub questions: Vec<String>,
    pub answer: String,
    pub lang: String,
    pub asked: i64,
    pub conversations: Vec<ConversationId>,
    pub status: SuggestionStatus,
    /// The FAQ entry made from it, once accepted.
    pub entry_id: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The last measurement of the entry it would make against the
    /// tenant's history (`learning::faq_trial::FaqTrial`), if any.
    pub trial: Option<serde_json::Value>,
}

/// A person's decision on a pending suggestion.
#[derive(Debug, Clone)]
pub enum SuggestionDecision {
    /// Accepted as the FAQ entry `entry_id`.
    Accept {
        entry_id: String,
    },
    Dismiss,
}

#[async_trait]
pub trait SuggestionStore: Send + Sync + 'static {
    /// Adds the suggestion, or refreshes its questions, count and
    /// conversations while it is still pending; a decided one is left as
    /// it is. Returns whether a new suggestion was added.
    async fn upsert_faq_suggestion(
        &self,
        tenant: TenantId,
        suggestion: &NewFaqSuggestion,
    ) -> Result<bool, StoreError>;

    /// The tenant's suggestions with `status` (all with `None`), most
    /// asked first.
    async fn faq_suggestions(
        &self,
        tenant: TenantId,
        status: Option<SuggestionStatus>,
    ) -> Result<Vec<FaqSuggestion>, StoreError>;

    async fn faq_suggestion(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<FaqSuggestion>, StoreError>;

    /// Decides a pending suggestion, with an audit event; `false` when it
    /// was not pending (already decided, or not the tenant's).
    async fn decide_faq_suggestion(
        &self,
        tenant: TenantId,
        id: Uuid,
        decision: &SuggestionDecision,
        actor: &str,
    ) -> Result<bool, StoreError>;

    /// Stores the measurement of the entry a pending suggestion would
    /// make; `false` when it is not pending (or not the tenant's).
    async fn record_faq_trial(
        &self,
        tenant: TenantId,
        id: Uuid,
        trial: &serde_json::Value,
    ) -> Result<bool, StoreError>;

    /// Returns an accepted suggestion to pending when its FAQ entry could
    /// not be written after all.
    async fn reopen_faq_suggestion(&self, tenant: TenantId, id: Uuid) -> Result<(), StoreError>;
}
