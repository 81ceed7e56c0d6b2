//! Route corrections: an agent says a buyer message should have gone to a
//! person (the AI answered or drafted it), or that the AI could have
//! answered it (it went to a person or a draft, and a person's reply
//! settled it). Each becomes the tenant's labelled exemplar of kind
//! `route`, trained into the tenant's heads (as a learned route, see
//! `understand::routes`), measured, promoted or refused and rolled back
//! with the same head versions as intent corrections.
//!
//! A route to the AI is checked here, when it is recorded, against the
//! shop's policy: never for a binding action (refunds, returns,
//! cancellations, claims), an intent the shop keeps for people or does not
//! let the AI answer alone, or a message that went to a person for what it
//! is (anger, a request for a person, a VIP, an injection, a bargain).
//! The policy checks all of that again at decision time. Knows nothing of
//! HTTP or pages.

use serde::Deserialize;

use super::service::Learning;
use super::LearningError;
use crate::domain::{Author, Direction, MessageId, TenantId};
use crate::pipeline::policy::{PolicySettings, ACTION_INTENTS};
use crate::store::learning::{ExemplarKind, LearnedExemplar, NewLearnedExemplar};
use crate::understand::routes::Route;

/// A person's correction of where kedai sent a buyer message.
#[derive(Debug, Clone)]
pub struct RouteCorrection {
    pub message: MessageId,
    pub route: Route,
    /// Who corrected it, for the audit log.
    pub actor: String,
}

/// Decision reasons that come from what the message is, not from how sure
/// kedai was: a learned route to the AI changes none of them.
const FOR_WHAT_IT_IS: &[&str] = &[
    "angry",
    "annoyed",
    "human_requested",
    "vip",
    "injection_suspected",
    "risky_request",
    "repeated_question",
    "human_intent",
    "out_of_scope",
    "learned_route_person",
];

/// The parts of a stored decision trace a route correction reads.
#[derive(Debug, Deserialize)]
struct Decided {
    intent: Option<String>,
    #[serde(default)]
    binding_request: Option<String>,
    #[serde(default)]
    reasons: Vec<DecidedReason>,
}

#[derive(Debug, Deserialize)]
struct DecidedReason {
    reason: String,
}

impl Learning {
    /// Records `correction` as the tenant's route exemplar. The message
    /// must be a buyer's message of this tenant that kedai decided; a
    /// `person` route one the AI answered or drafted, an `auto` route one
    /// that went to a person or a draft, that a person answered, of an
    /// intent the shop (`policies`, with the shop's own changes) lets the
    /// AI answer alone and that is no binding action.
    pub async fn correct_route(
        &self,
        tenant: TenantId,
        correction: &RouteCorrection,
        policies: &PolicySettings,
    ) -> Result<LearnedExemplar, LearningError> {
        let id = correction.message;
        let (detail, message) = self.buyer_message(tenant, id).await?;
        let decision = self
            .store
            .decision_for_message(tenant, id)
            .await?
            .ok_or_else(|| {
                LearningError::Invalid(format!(
                    "kedai has not decided message {id} yet; a route is corrected once it was routed"
                ))
            })?;
        let decided: Decided = serde_json::from_value(decision.trace.clone()).map_err(|e| {
            LearningError::Invalid(format!("the decision on message {id} cannot be read: {e}"))
        })?;
        let intent = decided.intent.clone().ok_or_else(|| {
            LearningError::Invalid(format!(
                "kedai did not read message {id} (the pipeline failed); correct its intent instead"
            ))
        })?;
        let layer = u8::from(decision.layer);
        match correction.route {
            Route::Person if layer >= 3 => {
                return Err(LearningError::Invalid(format!(
                    "message {id} already went to a person; nothing to correct"
                )))
            }
            Route::Person => {}
            Route::Auto => {
                if layer == 1 {
                    return Err(LearningError::Invalid(format!(
                        "the AI already answered message {id}; nothing to correct"
                    )));
                }
                let shop = self
                    .store
                    .shop_by_key(tenant, &detail.summary.shop)
                    .await?
                    .ok_or_else(|| {
                        LearningError::NotFound(format!("shop {}", detail.summary.shop))
                    })?;
                let (policy, _) = policies.for_shop(&shop.policy);
                check_auto(&decided, &intent, &policy)?;
                let answered = detail.messages.iter().any(|m| {
                    m.direction == Direction::Outbound
                        && m.author == Author::Agent
                        && m.sent_at >= message.sent_at
                });
                if !answered {
                    return Err(LearningError::Invalid(format!(
                        "no person has answered message {id} yet; say the AI could have \
                         answered it once a person's reply shows the answer was routine"
                    )));
                }
            }
        }
        let exemplar = self
            .store
            .add_learned_exemplar(
                tenant,
                &NewLearnedExemplar {
                    message_id: Some(id),
                    text: message.text.as_str().to_owned(),
                    label: correction.route.as_str().to_owned(),
                    previous_label: Some(decision.action.as_str().to_owned()),
                    kind: ExemplarKind::Route,
                    route_intent: Some(intent),
                    created_by: correction.actor.clone(),
                },
            )
            .await?;
        crate::metrics::learning_event("route_correction");
        Ok(exemplar)
    }
}

/// Why a route to the AI may not be learned from this decision.
fn check_auto(
    decided: &Decided,
    intent: &str,
    policy: &crate::pipeline::policy::Policy,
) -> Result<(), LearningError> {
    let refused = |why: String| Err(LearningError::Invalid(why));
    if ACTION_INTENTS.contains(&intent) || decided.binding_request.is_some() {
        return refused(format!(
            "kedai never learns to answer `{intent}` alone: refunds, returns, cancellations, \
             claims and bargains always need a person"
        ));
    }
    if policy.human_intents.contains(intent) {
        return refused(format!(
            "the shop sends `{intent}` to a person always (human_intents); a learned route \
             does not change that"
        ));
    }
    if !policy.auto_intents.contains(intent) {
        return refused(format!(
            "the shop does not let the AI answer `{intent}` alone; add it to auto_intents in \
             the shop's policy first"
        ));
    }
    if let Some(why) = decided
        .reasons
        .iter()
        .find(|r| FOR_WHAT_IT_IS.contains(&r.reason.as_str()))
    {
        return refused(format!(
            "the message went to a person because of `{}`, which a learned route does not change",
            why.reason
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decided(intent: &str, binding: Option<&str>, reasons: &[&str]) -> Decided {
        Decided {
            intent: Some(intent.into()),
            binding_request: binding.map(str::to_owned),
            reasons: reasons
                .iter()
                .map(|r| DecidedReason {
                    reason: r.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_route_to_the_ai_is_refused_for_risky_or_personal_messages() {
        let policy = crate::config::Settings::defaults().policy.defaults;
        // (intent, binding request, reasons, refusal fragment; "" = accepted)
        let table: &[(&str, Option<&str>, &[&str], &str)] = &[
            ("order_status", None, &["below_auto_confidence"], ""),
            ("size_fit", None, &["low_confidence"], ""),
            ("refund_request", None, &["human_intent"], "never learns"),
            (
                "cancel_order",
                None,
                &["intent_not_automated"],
                "never learns",
            ),
            ("return_request", None, &[], "never learns"),
            (
                "price_coupon",
                Some("discount"),
                &["risky_request"],
                "never learns",
            ),
            ("complaint", None, &["human_intent"], "human_intents"),
            (
                "comparison",
                None,
                &["intent_not_automated"],
                "auto_intents",
            ),
            ("order_status", None, &["angry"], "because of `angry`"),
            ("greeting", None, &["vip"], "because of `vip`"),
            (
                "greeting",
                None,
                &["injection_suspected"],
                "injection_suspected",
            ),
        ];
        for (intent, binding, reasons, fragment) in table {
            let outcome = check_auto(&decided(intent, *binding, reasons), intent, &policy);
            match (outcome, fragment.is_empty()) {
                (Ok(()), true) => {}
                (Err(err), false) => {
                    assert!(err.to_string().contains(fragment), "{intent}: {err}")
                }
                (outcome, _) => panic!("{intent} {reasons:?}: {outcome:?}"),
            }
        }
    }
}
