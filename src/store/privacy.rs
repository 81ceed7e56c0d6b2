//! Forgetting buyers: erasing one buyer's personal data on request, and
//! deleting conversations older than the retention period. The audit log
//! stays append-only; each erasure leaves a tombstone in it that names no
//! personal data (counts, and a hash of the platform's buyer id).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::domain::{ShopKey, TenantId};

/// What erasing one buyer removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuyerErasure {
    pub conversations: u64,
    pub messages: u64,
    pub decisions: u64,
    pub orders: u64,
    pub jobs: u64,
}

/// What one retention pass removed, over every tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionOutcome {
    pub conversations: u64,
    pub messages: u64,
    pub decisions: u64,
}

#[async_trait]
pub trait PrivacyStore: Send + Sync + 'static {
    /// Deletes the buyer `platform_buyer_id` of `shop`: their conversations,
    /// messages (and replies to them), decisions and traces, orders, queued
    /// jobs and profile, in one transaction, and appends a `buyer.erased`
    /// tombstone to the audit log. `None` when no such buyer exists.
    async fn erase_buyer(
        &self,
        tenant: TenantId,
        shop: &ShopKey,
        platform_buyer_id: &str,
        actor: &str,
    ) -> Result<Option<BuyerErasure>, StoreError>;

    /// Deletes every conversation whose last message is older than
    /// `before`, with its messages, decisions and jobs, and appends a
    /// `retention.applied` tombstone per tenant touched.
    async fn apply_retention(&self, before: DateTime<Utc>) -> Result<RetentionOutcome, StoreError>;
}
