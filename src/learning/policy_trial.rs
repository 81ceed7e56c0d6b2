//! A change to a shop's routing policy is measured before it goes live:
//! the shop's past buyer messages are decided again, each with the
//! evidence its decision recorded (the trace: intent, confidence, anger,
//! the answer found and whether it passed verification, who held the
//! conversation), once under the policy in force and once under the
//! proposed one, and the shipped evaluation conversations likewise. What
//! moves is compared with what people did.
//!
//! A change that only sends more to people (the kill switch, suggest
//! mode, a higher threshold) is never refused: it is shown with what it
//! costs. A change is refused when it would let the AI send alone:
//! - a message whose draft a person rewrote, or that a person answered
//!   without a draft, or after which the buyer asked the same again;
//! - a request for a binding action (refunds, returns, cancellations,
//!   claims, discounts or compensation);
//! - an evaluation conversation that needs a person.
//!
//! A message decided before its answer was written (a handoff never waits
//! for one) is measured as if a verified answer had been written: the best
//! the AI could do, so the measurement errs toward safety. [`judge`] is
//! pure; [`history`] reads the store. Knows nothing of HTTP or pages.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::measure::Case;
use super::LearningError;
use crate::domain::{Action, Author, Custody, Direction, TenantId};
use crate::figures::quality::edit_distance;
use crate::pipeline::policy::{
    decide, AnswerEvidence, CustodyEvidence, Evidence, LearnedRoute, Policy, Signals,
    ACTION_INTENTS,
};
use crate::pipeline::trace::Provenance;
use crate::store::desk::ConversationFacts;
use crate::store::users::ShopAccess;
use crate::store::{Shop, Store};

/// How far back a shop's decisions are read.
pub const HISTORY_DAYS: i64 = 90;
/// The most recent decisions read per trial.
pub const MAX_HISTORY: usize = 500;
/// A draft a person changed by more than this share (normalised edit
/// distance) was corrected; less is a touch-up (a name, a greeting).
pub const CORRECTED_EDIT: f64 = 0.2;

/// What people did after a message was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The AI answered alone and the buyer did not ask the same again.
    Answered,
    /// The AI answered alone and the buyer asked the same again.
    AskedAgain,
    /// A person sent kedai's draft, at most touched up.
    Confirmed,
    /// A person rewrote kedai's draft, or answered without one.
    Corrected,
    /// Nobody has answered yet.
    Open,
    /// An evaluation conversation whose label says a person must take it.
    NeedsPerson,
    /// An evaluation conversation the AI answers alone.
    Routine,
}

/// Where a measured message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialSource {
    /// One of the shop's buyer messages.
    History,
    /// A conversation of the shipped evaluation set.
    Evaluation,
}

/// A message decided again.
#[derive(Debug, Clone, PartialEq)]
pub struct PastCase {
    pub text: String,
    pub at: DateTime<Utc>,
    pub evidence: Evidence,
    pub outcome: Outcome,
    pub source: TrialSource,
}

/// A message the change would send elsewhere.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub text: String,
    pub intent: String,
    pub source: TrialSource,
    pub outcome: Outcome,
    /// `send`, `draft`, `handoff` or `observe`.
    pub before: Action,
    pub after: Action,
    /// Why the AI must not send it alone, when it must not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsafe_because: Option<String>,
}

/// Examples kept per list in the stored measurement.
const EXAMPLES: usize = 20;

/// The measurement of a policy change, stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyTrial {
    /// The shop's decisions and the evaluation conversations read.
    pub history: usize,
    pub evaluation: usize,
    /// Messages the AI would now send alone that it did not.
    pub to_ai: usize,
    /// Messages the AI sent alone that would now go to a person.
    pub to_person: usize,
    /// Other moves (draft to handoff, to observe only, ...).
    pub other: usize,
    /// Of `to_ai`, those it must not send alone: the change is refused.
    pub unsafe_sends: Vec<Move>,
    /// Examples of each kind of move (at most 20 each).
    pub to_ai_examples: Vec<Move>,
    pub to_person_examples: Vec<Move>,
    pub promoted: bool,
    pub reasons: Vec<String>,
    pub measured_at: DateTime<Utc>,
}

/// Why the AI must not send `case` alone, if it must not.
fn unsafe_because(case: &PastCase) -> Option<String> {
    let signals = &case.evidence.signals;
    if ACTION_INTENTS.contains(&signals.intent.as_str()) {
        return Some(format!("a binding request ({})", signals.intent));
    }
    if signals.risky_request {
        return Some("asks for a discount or compensation".into());
    }
    match case.outcome {
        Outcome::Corrected => Some("a person rewrote or wrote the answer".into()),
        Outcome::AskedAgain => Some("the buyer asked the same again after the AI's answer".into()),
        Outcome::NeedsPerson => Some("the evaluation set says a person must take it".into()),
        _ => None,
    }
}

/// Decides each case under `before` and `after` and compares.
pub fn judge(
    before: &Policy,
    after: &Policy,
    cases: &[PastCase],
    now: DateTime<Utc>,
) -> PolicyTrial {
    let mut trial = PolicyTrial {
        history: cases
            .iter()
            .filter(|c| c.source == TrialSource::History)
            .count(),
        evaluation: cases
            .iter()
            .filter(|c| c.source == TrialSource::Evaluation)
            .count(),
        to_ai: 0,
        to_person: 0,
        other: 0,
        unsafe_sends: Vec::new(),
        to_ai_examples: Vec::new(),
        to_person_examples: Vec::new(),
        promoted: true,
        reasons: Vec::new(),
        measured_at: now,
    };
    let mut unsafe_history = 0;
    let mut unsafe_eval = 0;
    for case in cases {
        let was = decide(before, &case.evidence, case.at).action;
        let would = decide(after, &case.evidence, case.at).action;
        if was == would {
            continue;
        }
        let mut moved = Move {
            text: case.text.clone(),
            intent: case.evidence.signals.intent.clone(),
            source: case.source,
            outcome: case.outcome,
            before: was,
            after: would,
            unsafe_because: None,
        };
        if would == Action::Send {
            trial.to_ai += 1;
            moved.unsafe_because = unsafe_because(case);
            if moved.unsafe_because.is_some() {
                match case.source {
                    TrialSource::History => unsafe_history += 1,
                    TrialSource::Evaluation => unsafe_eval += 1,
                }
                if trial.unsafe_sends.len() < EXAMPLES {
                    trial.unsafe_sends.push(moved);
                }
            } else if trial.to_ai_examples.len() < EXAMPLES {
                trial.to_ai_examples.push(moved);
            }
        } else if was == Action::Send {
            trial.to_person += 1;
            if trial.to_person_examples.len() < EXAMPLES {
                trial.to_person_examples.push(moved);
            }
        } else {
            trial.other += 1;
        }
    }
    if unsafe_history > 0 {
        trial.reasons.push(format!(
            "{unsafe_history} of the shop's {} past messages would be sent by the AI alone \
             although people had to answer them or they ask for a binding action",
            trial.history
        ));
    }
    if unsafe_eval > 0 {
        trial.reasons.push(format!(
            "{unsafe_eval} of {} evaluation conversations that need a person would be \
             answered by the AI alone",
            trial.evaluation
        ));
    }
    trial.promoted = trial.reasons.is_empty();
    trial
}

/// The evidence a stored decision's trace recorded; `None` for a trace
/// without an intent (a failed run).
pub fn evidence_from_trace(trace: &Value) -> Option<Evidence> {
    let intent = trace["intent"].as_str()?.to_owned();
    let flag = |key: &str| trace[key].as_bool().unwrap_or(false);
    let reasons: Vec<&str> = trace["reasons"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    let has = |reason: &str| reasons.contains(&reason);
    let signals = Signals {
        confidence: trace["confidence"].as_f64().unwrap_or(0.0) as f32,
        out_of_scope: flag("out_of_scope"),
        anger: trace["anger"]
            .as_u64()
            .and_then(|a| u8::try_from(a).ok())
            .unwrap_or(0),
        urgent: flag("urgent"),
        human_requested: flag("human_requested"),
        repeated_question: flag("repeated"),
        // The trace keeps the buyer's card only in a handoff; a VIP decided
        // under `vip_to_human` says so in its reasons.
        vip: has("vip") || trace["handoff"]["buyer"]["vip"].as_bool().unwrap_or(false),
        risky_request: trace["binding_request"].is_string(),
        injection_suspected: trace["injection"].is_string(),
        learned_route: serde_json::from_value::<crate::understand::routes::RouteMatch>(
            trace["learned_route"].clone(),
        )
        .ok()
        .map(|m| LearnedRoute {
            route: m.route,
            similarity: m.similarity,
        }),
        intent,
    };
    let answer = match serde_json::from_value::<Provenance>(trace["answer"]["provenance"].clone()) {
        Ok(provenance) => Some(AnswerEvidence {
            provenance,
            verified: !provenance.machine_written()
                || trace["answer"]["verification"]["passed"]
                    .as_bool()
                    .unwrap_or(false),
            order_late: has("order_late"),
        }),
        // Nothing answered it: that stays so under any policy.
        Err(_) if has("no_grounded_answer") || has("answer_withheld") => None,
        // Decided before an answer was written: the best the AI could do.
        Err(_) => Some(AnswerEvidence {
            provenance: Provenance::Generated,
            verified: true,
            order_late: false,
        }),
    };
    let holder = serde_json::from_value::<Custody>(trace["custody"]["holder"].clone())
        .unwrap_or(Custody::Ai);
    Some(Evidence {
        signals,
        answer,
        withheld: has("answer_withheld"),
        custody: CustodyEvidence {
            holder,
            human_replied_since: trace["custody"]["human_replied_since"]
                .as_bool()
                .unwrap_or(false),
            resolved: trace["custody"]["resolved"].as_bool().unwrap_or(false),
        },
    })
}

/// What people did after the decision on `message` in `facts`.
fn outcome(facts: &ConversationFacts, index: usize) -> Outcome {
    let decision = &facts.decisions[index];
    if decision.action == "send" {
        let asked_again = facts.decisions[index + 1..].iter().any(|d| d.repeated);
        return if asked_again {
            Outcome::AskedAgain
        } else {
            Outcome::Answered
        };
    }
    let reply = facts.messages.iter().find(|m| {
        m.direction == Direction::Outbound && m.author == Author::Agent && m.at >= decision.at
    });
    match (reply, decision.draft.as_deref()) {
        (None, _) => Outcome::Open,
        (Some(r), Some(draft)) if edit_distance(draft, &r.text) <= CORRECTED_EDIT => {
            Outcome::Confirmed
        }
        (Some(_), _) => Outcome::Corrected,
    }
}

/// The shop's decisions of the last [`HISTORY_DAYS`] (the most recent
/// [`MAX_HISTORY`]), each with its recorded evidence and what people did.
pub async fn history(
    store: &dyn Store,
    tenant: TenantId,
    shop: &Shop,
    now: DateTime<Utc>,
) -> Result<Vec<PastCase>, LearningError> {
    let facts = store
        .conversation_facts(
            tenant,
            &ShopAccess::Only(vec![shop.id]),
            now - Duration::days(HISTORY_DAYS),
        )
        .await?;
    let mut cases = Vec::new();
    for conversation in facts.iter().rev() {
        if cases.len() >= MAX_HISTORY {
            break;
        }
        if conversation.decisions.is_empty() {
            continue;
        }
        let stored = store.decisions(tenant, conversation.id).await?;
        for (index, fact) in conversation.decisions.iter().enumerate() {
            let Some(message) = fact.message_id else {
                continue;
            };
            let Some(decision) = stored.iter().find(|d| d.message_id == message) else {
                continue;
            };
            let Some(evidence) = evidence_from_trace(&decision.trace) else {
                continue;
            };
            let Some(text) = conversation.messages.iter().find(|m| m.id == message) else {
                continue;
            };
            cases.push(PastCase {
                text: text.text.clone(),
                at: decision.created_at,
                evidence,
                outcome: outcome(conversation, index),
                source: TrialSource::History,
            });
        }
    }
    Ok(cases)
}

/// The shipped evaluation conversations as cases: the labelled intent read
/// at full confidence, the request and human-asking patterns of the text,
/// and a verified answer (the best the AI could do).
pub fn evaluation(cases: &[Case], now: DateTime<Utc>) -> Vec<PastCase> {
    cases
        .iter()
        .map(|case| PastCase {
            text: case.text.clone(),
            at: now,
            evidence: Evidence {
                signals: Signals {
                    intent: case.intent.clone(),
                    confidence: 1.0,
                    out_of_scope: case.intent == crate::understand::OUT_OF_SCOPE,
                    anger: 0,
                    urgent: false,
                    human_requested: crate::understand::human::requests_human(&case.text),
                    repeated_question: false,
                    vip: false,
                    risky_request: crate::understand::binding::requests_binding(&case.text)
                        .is_some(),
                    injection_suspected: false,
                    learned_route: None,
                },
                answer: Some(AnswerEvidence {
                    provenance: Provenance::Generated,
                    verified: true,
                    order_late: false,
                }),
                withheld: false,
                custody: CustodyEvidence::AI,
            },
            outcome: if case.needs_person {
                Outcome::NeedsPerson
            } else if case.routine {
                Outcome::Routine
            } else {
                Outcome::Open
            },
            source: TrialSource::Evaluation,
        })
        .collect()
}

#[cfg(test)]
mod tests;
