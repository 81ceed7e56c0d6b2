//! Changes to a shop's routing policy: measured before they go live
//! ([`super::policy_trial`]), kept with their measurement in the
//! append-only audit log, and undone in one action.
//!
//! Every change an admin asks for is recorded as `policy.applied` or
//! `policy.refused`, with the policy before and after and the
//! measurement; a restore is `policy.restored`. The audit log is the
//! history: nothing recorded there can be altered, and restoring puts back
//! the policy a recorded change replaced. Restoring is never refused: it
//! returns to a policy the shop already ran with.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::policy_trial::{evaluation, history, judge, PolicyTrial};
use super::train::eval_cases;
use super::{Learning, LearningError};
use crate::domain::TenantId;
use crate::pipeline::policy::{PolicyOverride, PolicySettings};
use crate::store::desk::AuditFilter;
use crate::store::{AuditEvent, AuditRecord, Shop, ShopUpdate};

const APPLIED: &str = "policy.applied";
const REFUSED: &str = "policy.refused";
const RESTORED: &str = "policy.restored";

/// What became of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// Measured and in force from the next message.
    Applied,
    /// Measured and refused: the policy did not change.
    Refused,
    /// An earlier policy put back.
    Restored,
}

/// A recorded change of a shop's policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyChange {
    /// The audit log's sequence number: what a restore names.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub shop: String,
    pub outcome: ChangeOutcome,
    /// The shop's own policy (the keys it overrides) before and after.
    pub before: Value,
    pub after: Value,
    /// The measurement; absent for a restore.
    #[schema(value_type = Option<Object>)]
    pub trial: Option<PolicyTrial>,
    /// For a restore: the change whose earlier policy was put back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restores: Option<i64>,
}

impl PolicyChange {
    fn from_record(record: AuditRecord) -> Option<PolicyChange> {
        let outcome = match record.event.action.as_str() {
            APPLIED => ChangeOutcome::Applied,
            REFUSED => ChangeOutcome::Refused,
            RESTORED => ChangeOutcome::Restored,
            _ => return None,
        };
        let d = &record.event.details;
        Some(PolicyChange {
            id: record.seq,
            at: record.at,
            actor: record.event.actor,
            shop: d["shop"].as_str().unwrap_or_default().to_owned(),
            outcome,
            before: d["before"].clone(),
            after: d["after"].clone(),
            trial: serde_json::from_value(d["trial"].clone()).ok(),
            restores: d["restores"].as_i64(),
        })
    }
}

/// A shop's own policy, checked against the server's defaults.
fn checked(settings: &PolicySettings, stored: &Value) -> Result<(), LearningError> {
    if !stored.is_object() {
        return Err(LearningError::Invalid(
            "a shop policy must be a JSON object".into(),
        ));
    }
    PolicyOverride::from_stored(stored)
        .and_then(|o| o.check(&settings.defaults))
        .map(|_| ())
        .map_err(|e| LearningError::Invalid(e.to_string()))
}

impl Learning {
    /// Measures replacing `shop`'s own policy with `wanted` and applies it
    /// when nothing gets less safe; either way the change is recorded with
    /// its measurement. `None`: `wanted` is the policy already stored.
    pub async fn change_policy(
        &self,
        settings: &PolicySettings,
        tenant: TenantId,
        shop: &Shop,
        wanted: Value,
        actor: &str,
    ) -> Result<Option<PolicyChange>, LearningError> {
        checked(settings, &wanted)?;
        let _one_at_a_time = self.policy_lock.lock().await;
        let shop = self.current_shop(tenant, shop).await?;
        if shop.policy == wanted {
            return Ok(None);
        }
        let now = Utc::now();
        let (before, _) = settings.for_shop(&shop.policy);
        let (after, _) = settings.for_shop(&wanted);
        let mut cases = history(&*self.store, tenant, &shop, now).await?;
        if let Some(path) = self.eval_set.clone() {
            let eval = tokio::task::spawn_blocking(move || eval_cases(&path))
                .await
                .map_err(|e| LearningError::Training(e.to_string()))?
                .map_err(|e| LearningError::Training(e.to_string()))?;
            cases.extend(evaluation(&eval, now));
        }
        let trial = judge(&before, &after, &cases, now);
        let action = if trial.promoted {
            self.store
                .update_shop(
                    tenant,
                    &shop.key,
                    ShopUpdate {
                        policy: Some(wanted.clone()),
                        ..ShopUpdate::default()
                    },
                    actor,
                )
                .await?;
            APPLIED
        } else {
            REFUSED
        };
        let details = json!({
            "shop": shop.key, "before": shop.policy, "after": wanted, "trial": trial,
        });
        self.record(tenant, &shop, action, actor, details).await
    }

    /// Puts back the policy that the recorded change `id` replaced.
    pub async fn restore_policy(
        &self,
        settings: &PolicySettings,
        tenant: TenantId,
        shop: &Shop,
        id: i64,
        actor: &str,
    ) -> Result<PolicyChange, LearningError> {
        let _one_at_a_time = self.policy_lock.lock().await;
        let shop = self.current_shop(tenant, shop).await?;
        let change = self
            .policy_changes(tenant, &shop, u32::MAX)
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| LearningError::NotFound(format!("policy change {id}")))?;
        if change.outcome == ChangeOutcome::Refused {
            return Err(LearningError::Conflict(format!(
                "policy change {id} was refused: it never replaced a policy"
            )));
        }
        checked(settings, &change.before).map_err(|e| {
            LearningError::Conflict(format!(
                "the policy before change {id} no longer validates: {e}"
            ))
        })?;
        self.store
            .update_shop(
                tenant,
                &shop.key,
                ShopUpdate {
                    policy: Some(change.before.clone()),
                    ..ShopUpdate::default()
                },
                actor,
            )
            .await?;
        let details = json!({
            "shop": shop.key, "before": shop.policy, "after": change.before, "restores": id,
        });
        self.record(tenant, &shop, RESTORED, actor, details)
            .await?
            .ok_or_else(|| LearningError::Conflict("the restore was not recorded".into()))
    }

    /// The shop's recorded policy changes, newest first.
    pub async fn policy_changes(
        &self,
        tenant: TenantId,
        shop: &Shop,
        limit: u32,
    ) -> Result<Vec<PolicyChange>, LearningError> {
        let records = self
            .store
            .audit_search(
                tenant,
                &AuditFilter {
                    action: Some("policy.".into()),
                    subject_id: Some(shop.id.to_string()),
                    limit: limit.min(1000),
                    ..AuditFilter::default()
                },
            )
            .await?;
        Ok(records
            .into_iter()
            .filter(|r| r.event.subject_type == "shop")
            .filter_map(PolicyChange::from_record)
            .collect())
    }

    async fn current_shop(&self, tenant: TenantId, shop: &Shop) -> Result<Shop, LearningError> {
        self.store
            .shop_by_key(tenant, &shop.key)
            .await?
            .ok_or_else(|| LearningError::NotFound(format!("shop {:?}", shop.key.as_str())))
    }

    async fn record(
        &self,
        tenant: TenantId,
        shop: &Shop,
        action: &str,
        actor: &str,
        details: Value,
    ) -> Result<Option<PolicyChange>, LearningError> {
        self.store
            .append_audit(
                Some(tenant),
                &AuditEvent {
                    actor: actor.to_owned(),
                    action: action.to_owned(),
                    subject_type: "shop".into(),
                    subject_id: shop.id.to_string(),
                    details,
                },
            )
            .await?;
        Ok(self
            .policy_changes(tenant, shop, 1)
            .await?
            .into_iter()
            .next())
    }
}
