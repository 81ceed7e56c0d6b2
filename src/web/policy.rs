//! Editing a shop's routing policy from the settings page: the kill
//! switch, the mode and the modes per intent, the confidence thresholds,
//! anger and VIP handling, business hours. What an admin sets is stored
//! with the shop (`shops.policy`: the keys of `[policy.defaults]` it
//! overrides), where the reply pipeline reads it for the next message;
//! only the keys that differ from the defaults are stored, and they are
//! checked against the defaults before anything is written. Every change
//! is measured against the shop's history first and refused when it would
//! make the AI less safe (`learning::policy_changes`); a recorded change is
//! undone with one action ([`restore`]).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use axum::Form;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::session::Viewer;
use super::{see_other, WebError, WebState};
use crate::domain::ShopKey;
use crate::learning::ChangeOutcome;
use crate::pipeline::policy::{BusinessHours, Mode, Policy, PolicySettings};
use crate::store::Shop;

/// The shop's policy: the configuration's defaults with the shop's
/// stored changes on top, and why the stored changes were not applied when
/// they no longer validate (the shop then runs with the AI off).
pub fn effective(configured: &PolicySettings, shop: &Shop) -> (Policy, Option<String>) {
    let (policy, problem) = configured.for_shop(&shop.policy);
    (policy, problem.map(|e| e.to_string()))
}

#[derive(Debug, Deserialize)]
pub struct PolicyForm {
    csrf: String,
    shop: String,
    /// Present when ticked: the AI may send replies on its own.
    ai_enabled: Option<String>,
    mode: String,
    /// One `intent = mode` per line.
    intent_modes: String,
    auto_min_confidence: String,
    generated_min_confidence: String,
    human_below_confidence: String,
    human_anger_level: String,
    vip_to_human: Option<String>,
    /// Open days (`mon tue ...`); empty: no business hours.
    hours_days: String,
    hours_open: String,
    hours_close: String,
    hours_offset_minutes: String,
}

fn parse_mode(raw: &str) -> Result<Mode, WebError> {
    serde_json::from_value(Value::String(raw.trim().to_lowercase())).map_err(|_| {
        WebError::Invalid(format!("mode must be shadow, suggest or auto, got {raw:?}"))
    })
}

fn number<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T, WebError> {
    raw.trim()
        .parse()
        .map_err(|_| WebError::Invalid(format!("{field} must be a number, got {raw:?}")))
}

fn intent_modes(raw: &str) -> Result<BTreeMap<String, Mode>, WebError> {
    raw.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (intent, mode) = line.split_once(['=', ':']).ok_or_else(|| {
                WebError::Invalid(format!(
                    "write intent modes as `intent = mode`, got {line:?}"
                ))
            })?;
            let intent = intent.trim().replace(' ', "_");
            if intent.is_empty() {
                return Err(WebError::Invalid(format!("no intent in {line:?}")));
            }
            Ok((intent, parse_mode(mode)?))
        })
        .collect()
}

impl PolicyForm {
    /// The policy the form describes, over the shop's configured one.
    fn policy(&self, base: &Policy) -> Result<Policy, WebError> {
        let business_hours = if self.hours_days.trim().is_empty() {
            None
        } else {
            Some(BusinessHours {
                utc_offset_minutes: number("UTC offset", &self.hours_offset_minutes)?,
                days: self
                    .hours_days
                    .split([' ', ','])
                    .filter(|d| !d.is_empty())
                    .map(|d| d.to_lowercase())
                    .collect(),
                open: self.hours_open.trim().to_owned(),
                close: self.hours_close.trim().to_owned(),
            })
        };
        Ok(Policy {
            ai_enabled: self.ai_enabled.is_some(),
            mode: parse_mode(&self.mode)?,
            intent_modes: intent_modes(&self.intent_modes)?,
            auto_min_confidence: number("auto_min_confidence", &self.auto_min_confidence)?,
            generated_min_confidence: number(
                "generated_min_confidence",
                &self.generated_min_confidence,
            )?,
            human_below_confidence: number("human_below_confidence", &self.human_below_confidence)?,
            human_anger_level: number("human_anger_level", &self.human_anger_level)?,
            vip_to_human: self.vip_to_human.is_some(),
            business_hours,
            ..base.clone()
        })
    }
}

/// The keys of `wanted` that differ from `base`, as a stored override.
fn difference(base: &Policy, wanted: &Policy) -> Result<Map<String, Value>, WebError> {
    let to_json = |p: &Policy| {
        serde_json::to_value(p).map_err(|e| WebError::Internal(format!("policy to JSON: {e}")))
    };
    let (Value::Object(base), Value::Object(wanted)) = (to_json(base)?, to_json(wanted)?) else {
        return Err(WebError::Internal("a policy is not a JSON object".into()));
    };
    Ok(wanted
        .into_iter()
        .filter(|(key, value)| base.get(key) != Some(value) && !value.is_null())
        .collect())
}

pub async fn save(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<PolicyForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    let tenant = viewer.user.tenant_id;
    let shop = viewer_shop(&state, &viewer, &form.shop).await?;
    let defaults = &state.policy.defaults;
    let (current, _) = effective(&state.policy, &shop);
    let wanted = form.policy(&current)?;
    let stored = Value::Object(difference(defaults, &wanted)?);
    let change = state
        .app
        .learning
        .change_policy(&state.policy, tenant, &shop, stored, &viewer.user.actor())
        .await?;
    let done = match change.as_ref().map(|c| c.outcome) {
        None => "unchanged",
        Some(ChangeOutcome::Refused) => "refused",
        Some(_) => "applied",
    };
    Ok(see_other(&format!(
        "/app/settings?policy={done}&shop={0}#shop-{0}",
        shop.key
    )))
}

/// The viewer's tenant's shop `raw`, when the viewer may work on it.
async fn viewer_shop(state: &WebState, viewer: &Viewer, raw: &str) -> Result<Shop, WebError> {
    let key = ShopKey::parse(raw)?;
    state
        .app
        .store
        .shop_by_key(viewer.user.tenant_id, &key)
        .await?
        .filter(|s| viewer.user.shops.allows(s.id))
        .ok_or_else(|| WebError::NotFound(format!("shop {:?}", key.as_str())))
}

#[derive(Debug, Deserialize)]
pub struct RestoreForm {
    csrf: String,
    shop: String,
    change: i64,
}

/// Puts back the policy a recorded change replaced: one action.
pub async fn restore(
    State(state): State<WebState>,
    viewer: Viewer,
    Form(form): Form<RestoreForm>,
) -> Result<Response, WebError> {
    viewer.check_csrf(&form.csrf)?;
    viewer.require_admin()?;
    let tenant = viewer.user.tenant_id;
    let shop = viewer_shop(&state, &viewer, &form.shop).await?;
    state
        .app
        .learning
        .restore_policy(
            &state.policy,
            tenant,
            &shop,
            form.change,
            &viewer.user.actor(),
        )
        .await?;
    Ok(see_other(&format!(
        "/app/settings?policy=restored&shop={0}#shop-{0}",
        shop.key
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::policy::PolicyOverride;

    fn base() -> Policy {
        crate::config::Settings::defaults().policy.defaults
    }

    #[test]
    fn only_changed_keys_are_stored() {
        let base = base();
        let mut wanted = base.clone();
        wanted.ai_enabled = !base.ai_enabled;
        wanted.intent_modes = BTreeMap::from([("order_status".to_owned(), Mode::Auto)]);
        let stored = difference(&base, &wanted).unwrap();
        let mut keys: Vec<_> = stored.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, vec!["ai_enabled", "intent_modes"]);
        let over = PolicyOverride::from_stored(&Value::Object(stored)).unwrap();
        assert_eq!(over.check(&base).unwrap(), wanted);
    }

    #[test]
    fn intent_modes_are_read_line_by_line() {
        let modes = intent_modes("order status = auto\n\nrefund_request: shadow\n").unwrap();
        assert_eq!(modes["order_status"], Mode::Auto);
        assert_eq!(modes["refund_request"], Mode::Shadow);
        assert!(intent_modes("order_status auto").is_err());
        assert!(intent_modes("x = sometimes").is_err());
    }
}
