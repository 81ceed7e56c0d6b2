//! The seller's answers in other languages: for each tenant, knowledge-base
//! entry, source text (by its sha256) and language, one translation with its
//! state: verified by kedai's checks, waiting for a person, approved (the
//! person's text is then the seller's own words) or rejected.
//!
//! Keys carry the tenant and the source's hash, so one tenant's translation
//! is never another's, and an edited entry never reuses the old text. The
//! store does not judge translations; the pipeline does, and records here
//! what it found.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{KbKind, StoreError};
use crate::domain::TenantId;

/// Identifies one translation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct TranslationKey {
    pub kind: KbKind,
    pub entry_id: String,
    /// sha256 (hex) of the source text.
    pub source_hash: String,
    /// The language translated into (ISO 639-1).
    pub lang: String,
}

impl TranslationKey {
    pub fn new(kind: KbKind, entry_id: &str, source: &str, lang: &str) -> TranslationKey {
        TranslationKey {
            kind,
            entry_id: entry_id.to_owned(),
            source_hash: hex::encode(Sha256::digest(source.as_bytes())),
            lang: lang.to_ascii_lowercase(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TranslationStatus {
    /// Machine-written and passed every verification check: sent to buyers.
    Verified,
    /// Machine-written and failed a check: offered to a person as a draft.
    Unverified,
    /// Approved (possibly edited) or written by a person: the seller's own
    /// words from now on.
    Approved,
    /// A person said it is wrong; it is never used.
    Rejected,
}

impl TranslationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TranslationStatus::Verified => "verified",
            TranslationStatus::Unverified => "unverified",
            TranslationStatus::Approved => "approved",
            TranslationStatus::Rejected => "rejected",
        }
    }
}

/// A machine translation to record.
#[derive(Debug, Clone)]
pub struct NewTranslation {
    pub key: TranslationKey,
    pub source_text: String,
    pub text: String,
    /// `Verified` or `Unverified`.
    pub status: TranslationStatus,
    pub model: Option<String>,
    /// What the verification found, as the pipeline records it.
    pub verification: serde_json::Value,
}

/// A person's verdict on a translation.
#[derive(Debug, Clone)]
pub enum TranslationReview {
    /// Approve it, with the person's corrected text when they edited it.
    Approve {
        text: Option<String>,
    },
    Reject,
}

#[derive(Debug, Clone, Serialize)]
pub struct StoredTranslation {
    #[serde(flatten)]
    pub key: TranslationKey,
    pub source_text: String,
    pub text: String,
    pub status: TranslationStatus,
    pub model: Option<String>,
    pub verification: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

/// How often one FAQ entry answered buyers writing in one language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FaqAsked {
    pub entry_id: String,
    pub lang: String,
    pub asked: i64,
    pub last_asked_at: DateTime<Utc>,
}

#[async_trait]
pub trait TranslationStore: Send + Sync + 'static {
    /// The languages `tenant`'s buyers wrote in since `since`, each with
    /// how many messages, most used first: the languages the seller's
    /// answers are worth translating into ahead.
    async fn buyer_languages(
        &self,
        tenant: TenantId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    async fn translation(
        &self,
        tenant: TenantId,
        key: &TranslationKey,
    ) -> Result<Option<StoredTranslation>, StoreError>;
    /// Counts one more buyer answered from FAQ entry `entry_id` in `lang`:
    /// one upsert, nothing read.
    async fn record_faq_asked(
        &self,
        tenant: TenantId,
        entry_id: &str,
        lang: &str,
    ) -> Result<(), StoreError>;
    /// How often each FAQ entry answered buyers, per language, most asked
    /// first (ties by entry and language).
    async fn faq_asked(&self, tenant: TenantId) -> Result<Vec<FaqAsked>, StoreError>;
    /// Records a machine translation unless one is stored for the key
    /// already (a person's verdict is never overwritten); returns what is
    /// stored for the key afterwards.
    async fn save_translation(
        &self,
        tenant: TenantId,
        translation: &NewTranslation,
    ) -> Result<StoredTranslation, StoreError>;
    /// A person approves (optionally with their own text) or rejects a
    /// translation, with an audit event; `NotFound` when there is none.
    async fn review_translation(
        &self,
        tenant: TenantId,
        key: &TranslationKey,
        review: &TranslationReview,
        actor: &str,
    ) -> Result<StoredTranslation, StoreError>;
    /// Translations in one state (all when `None`), newest first.
    async fn list_translations(
        &self,
        tenant: TenantId,
        status: Option<TranslationStatus>,
        limit: u32,
    ) -> Result<Vec<StoredTranslation>, StoreError>;
}
