//! The operator's credentials: tokens that belong to no tenant. They run
//! the server (retraining the shared classifiers, readiness details,
//! metrics) and reach no tenant's rows; nothing here takes a `TenantId`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::domain::TokenId;

#[derive(Debug, Clone, Serialize)]
pub struct OperatorTokenInfo {
    pub id: TokenId,
    pub label: String,
    /// The first characters of the token, to recognise it in lists.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// An operator token to store: only its hash and a prefix are kept.
#[derive(Debug)]
pub struct NewOperatorToken {
    pub label: String,
    pub token_hash: String,
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait OperatorStore: Send + Sync + 'static {
    async fn create_operator_token(
        &self,
        token: NewOperatorToken,
    ) -> Result<OperatorTokenInfo, StoreError>;

    async fn list_operator_tokens(&self) -> Result<Vec<OperatorTokenInfo>, StoreError>;

    /// Marks an operator token revoked; false when it does not exist or
    /// already was.
    async fn revoke_operator_token(&self, id: TokenId) -> Result<bool, StoreError>;

    /// The live (unrevoked) operator token with this hash. Expiry is the
    /// caller's to check.
    async fn authenticate_operator(
        &self,
        token_hash: &str,
    ) -> Result<Option<OperatorTokenInfo>, StoreError>;

    /// Records that an operator token was used at `at`.
    async fn touch_operator_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), StoreError>;
}
