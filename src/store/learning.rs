//! What kedai learns from a tenant's people: intent and route corrections
//! kept as that tenant's labelled exemplars, and the versions of the tenant's
//! retrained classifier heads with the measured comparison that promoted
//! or refused each, one of them active (none: the shared heads).
//!
//! Every query but [`LearningStore::active_head_versions`] and
//! [`LearningStore::tenants_with_pending_exemplars`] (read by the loop
//! that keeps every tenant's heads current) takes a [`TenantId`]. Heads
//! themselves are never stored: fitting is deterministic, so a version is
//! its list of exemplars. Knows nothing of models, HTTP or how versions
//! are measured.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{MessageId, TenantId};

/// Where a learned exemplar stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemplarStatus {
    /// Recorded, not measured yet.
    Pending,
    /// Part of the tenant's active heads.
    Live,
    /// Its version made the tenant's figures worse.
    Refused,
    /// Its version was rolled back.
    RolledBack,
}

impl ExemplarStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExemplarStatus::Pending => "pending",
            ExemplarStatus::Live => "live",
            ExemplarStatus::Refused => "refused",
            ExemplarStatus::RolledBack => "rolled_back",
        }
    }

    pub fn parse(raw: &str) -> Result<ExemplarStatus, StoreError> {
        Ok(match raw {
            "pending" => ExemplarStatus::Pending,
            "live" => ExemplarStatus::Live,
            "refused" => ExemplarStatus::Refused,
            "rolled_back" => ExemplarStatus::RolledBack,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown exemplar status {other:?}"
                )))
            }
        })
    }
}

/// What a learned exemplar teaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemplarKind {
    /// The intent a text has (`label` is an intent).
    Intent,
    /// Where a text should go (`label` is `person` or `auto`).
    Route,
}

impl ExemplarKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExemplarKind::Intent => "intent",
            ExemplarKind::Route => "route",
        }
    }

    pub fn parse(raw: &str) -> Result<ExemplarKind, StoreError> {
        match raw {
            "intent" => Ok(ExemplarKind::Intent),
            "route" => Ok(ExemplarKind::Route),
            other => Err(StoreError::Corrupt(format!(
                "unknown exemplar kind {other:?}"
            ))),
        }
    }
}

/// A correction to record.
#[derive(Debug, Clone)]
pub struct NewLearnedExemplar {
    pub message_id: Option<MessageId>,
    /// The buyer's (stored, redacted) text.
    pub text: String,
    /// The intent a person says the text has; for a route, `person` or
    /// `auto`.
    pub label: String,
    /// The intent kedai had read; for a route, the action it took.
    pub previous_label: Option<String>,
    pub created_by: String,
    pub kind: ExemplarKind,
    /// For a route: the intent kedai read, which an `auto` route is bound
    /// to.
    pub route_intent: Option<String>,
}

/// A tenant's labelled exemplar, learned from a person's correction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnedExemplar {
    pub id: Uuid,
    pub message_id: Option<MessageId>,
    pub text: String,
    pub label: String,
    pub previous_label: Option<String>,
    pub status: ExemplarStatus,
    /// The head version that measured it.
    pub version_id: Option<Uuid>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub kind: ExemplarKind,
    /// For a route: the intent kedai read.
    pub route_intent: Option<String>,
}

/// A measured retraining to record.
#[derive(Debug, Clone)]
pub struct NewHeadVersion {
    /// Every learned exemplar the heads were trained on.
    pub exemplar_ids: Vec<Uuid>,
    /// Of those, the ones this retraining measured for the first time;
    /// they become `live` or `refused` with it.
    pub measured_ids: Vec<Uuid>,
    /// The before/after figures and the verdict, as the learning module
    /// shapes them.
    pub comparison: serde_json::Value,
    pub promoted: bool,
    pub reason: Option<String>,
    pub created_by: String,
}

/// One retraining of a tenant's heads, promoted or refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadVersion {
    pub id: Uuid,
    pub number: i64,
    pub exemplar_ids: Vec<Uuid>,
    pub comparison: serde_json::Value,
    pub promoted: bool,
    pub reason: Option<String>,
    /// The version the tenant's messages are understood with now.
    pub active: bool,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

#[async_trait]
pub trait LearningStore: Send + Sync + 'static {
    /// Records a person's correction as a pending exemplar, with an audit
    /// event.
    async fn add_learned_exemplar(
        &self,
        tenant: TenantId,
        exemplar: &NewLearnedExemplar,
    ) -> Result<LearnedExemplar, StoreError>;

    /// The tenant's learned exemplars, oldest first.
    async fn learned_exemplars(&self, tenant: TenantId)
        -> Result<Vec<LearnedExemplar>, StoreError>;

    /// Records a measured retraining in one transaction: the version, its
    /// newly measured exemplars `live` or `refused`, and, when promoted,
    /// the version made active in place of the previous one; with an
    /// audit event.
    async fn record_head_version(
        &self,
        tenant: TenantId,
        version: &NewHeadVersion,
    ) -> Result<HeadVersion, StoreError>;

    /// The tenant's head versions, newest first.
    async fn head_versions(&self, tenant: TenantId) -> Result<Vec<HeadVersion>, StoreError>;

    /// Makes `version` (one promoted earlier) the active one, or none (the
    /// shared heads) with `None`; exemplars live only in the versions left
    /// behind become `rolled_back`. With an audit event.
    async fn activate_head_version(
        &self,
        tenant: TenantId,
        version: Option<Uuid>,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// Every tenant's active version, to restore the heads at start.
    async fn active_head_versions(&self) -> Result<Vec<(TenantId, HeadVersion)>, StoreError>;

    /// Every tenant with a pending exemplar: corrections no retraining has
    /// decided yet (one was interrupted, or is running now).
    async fn tenants_with_pending_exemplars(&self) -> Result<Vec<TenantId>, StoreError>;
}
