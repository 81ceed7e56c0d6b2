//! Knowledge-base records: each entry (FAQ, policy, product, shipping rule)
//! stored as a JSON document under (tenant, kind, id), with every version
//! kept and every change written to the audit log in the same transaction.
//!
//! The store does not interpret the documents: `kb` validates them before
//! they get here and turns them back into typed entries. Every method takes
//! a [`TenantId`] and only ever sees that tenant's rows.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::TenantId;

/// The kinds of knowledge-base entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KbKind {
    Faq,
    Policy,
    Product,
    Shipping,
}

impl KbKind {
    pub const ALL: [KbKind; 4] = [
        KbKind::Faq,
        KbKind::Policy,
        KbKind::Product,
        KbKind::Shipping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KbKind::Faq => "faq",
            KbKind::Policy => "policy",
            KbKind::Product => "product",
            KbKind::Shipping => "shipping",
        }
    }
}

impl std::fmt::Display for KbKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KbKind {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, String> {
        KbKind::ALL
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| format!("kind must be faq, policy, product or shipping, got {raw:?}"))
    }
}

/// One entry as the store keeps it: already validated by `kb`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KbDocument {
    pub kind: KbKind,
    pub id: String,
    pub lang: String,
    pub body: serde_json::Value,
}

/// The live version of an entry.
#[derive(Debug, Clone, Serialize)]
pub struct KbRecord {
    #[serde(flatten)]
    pub document: KbDocument,
    /// 1 for the first version; deletions count as versions too.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One historical version; `body` is `None` for a deletion.
#[derive(Debug, Clone, Serialize)]
pub struct KbVersion {
    pub version: i64,
    pub body: Option<serde_json::Value>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum KbChange {
    /// Create or replace; an identical body changes nothing.
    Put(KbDocument),
    /// Remove; an entry that does not exist fails the whole batch.
    Delete { kind: KbKind, id: String },
}

/// What one batch of changes did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KbApplied {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
    /// The tenant's knowledge-base revision after the batch.
    pub revision: i64,
}

/// Every live entry of a tenant together with the revision they make up,
/// read in one snapshot.
#[derive(Debug, Clone)]
pub struct KbSnapshot {
    pub revision: i64,
    pub records: Vec<KbRecord>,
}

#[async_trait]
pub trait KbStore: Send + Sync + 'static {
    /// Applies all `changes` in one transaction, or none of them: each
    /// real change gets a new version, a history row and an audit event
    /// by `actor`, and the tenant's revision is bumped once when anything
    /// changed.
    async fn kb_apply(
        &self,
        tenant: TenantId,
        changes: &[KbChange],
        actor: &str,
    ) -> Result<KbApplied, StoreError>;
    async fn kb_get(
        &self,
        tenant: TenantId,
        kind: KbKind,
        id: &str,
    ) -> Result<Option<KbRecord>, StoreError>;
    /// Live entries, of one kind or all, ordered by kind and id.
    async fn kb_list(
        &self,
        tenant: TenantId,
        kind: Option<KbKind>,
    ) -> Result<Vec<KbRecord>, StoreError>;
    /// Every version of an entry, oldest first; empty if it never existed.
    async fn kb_history(
        &self,
        tenant: TenantId,
        kind: KbKind,
        id: &str,
    ) -> Result<Vec<KbVersion>, StoreError>;
    /// 0 for a tenant whose knowledge base never changed.
    async fn kb_revision(&self, tenant: TenantId) -> Result<i64, StoreError>;
    async fn kb_snapshot(&self, tenant: TenantId) -> Result<KbSnapshot, StoreError>;
}
