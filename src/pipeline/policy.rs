//! Decide: which of the three layers handles a buyer message, and what kedai
//! may do about it.
//!
//! [`decide`] is one pure function over everything known when a message is
//! decided: the understand stage's signals, the candidate answer and where
//! it came from (order record, catalogue, the seller's words, a translation
//! and whether it was verified, a draft), whether text was held back, who
//! holds the conversation, the shop's policy (thresholds, lists, mode,
//! business hours, kill switch) and the time. It is called once, last;
//! nothing patches its result. It does no I/O, reads no clock, runs no
//! model and knows nothing of HTTP or the store, so every rule is
//! table-tested below.
//!
//! - Layer 1, the AI answers: confident, an allowed intent, an answer that
//!   is the seller's own words, a template filled from records, or
//!   machine-written text that passed verification; no anger, not a VIP,
//!   nothing risky, and no person holding the conversation.
//! - Layer 2, AI-assisted: a draft, a summary and the reasons go to a human.
//! - Layer 3, a human now: anger, disputes, refunds and other binding
//!   actions, an explicit request for a human, VIPs, a repeated question, low
//!   confidence, out-of-scope, a suspected prompt injection.
//!
//! The layer says how hard the case is and who acts; the [`Action`] follows
//! from it (send, draft, handoff), except in shadow mode, which only
//! observes. The kill switch and suggest mode move a layer-1 answer to layer
//! 2. Nothing here can make a message *less* guarded than its layer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::trace::Provenance;
use crate::domain::{Custody, Layer};
pub use crate::understand::routes::Route;

/// How a shop lets kedai act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decide and score, send nothing, hand nothing off.
    Shadow,
    /// Every reply waits for a human, even layer-1 answers.
    Suggest,
    /// Layer-1 answers are sent; layers 2 and 3 go to a human.
    Auto,
}

/// The weekly opening hours of a shop's human team, in one UTC offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    /// Offset of the team's local time from UTC, in minutes (+420 for Jakarta
    /// and Bangkok, +480 for Manila and Kuala Lumpur).
    pub utc_offset_minutes: i32,
    /// Open days, e.g. `["mon", "tue", "wed", "thu", "fri", "sat"]`.
    pub days: Vec<String>,
    /// Opening time, `HH:MM`, local.
    pub open: String,
    /// Closing time, `HH:MM`, local; earlier than `open` means past midnight.
    pub close: String,
}

/// A shop's policy: the defaults from `[policy]`, overridden per shop in
/// `[policy.shops.<shop>]`. Validated with [`Policy::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The kill switch: when false kedai sends nothing on its own; every
    /// message goes to a human (drafts are still prepared).
    pub ai_enabled: bool,
    pub mode: Mode,
    /// Mode per intent, overriding `mode` (e.g. order_status = "auto" while
    /// the shop is otherwise in "suggest").
    #[serde(default)]
    pub intent_modes: BTreeMap<String, Mode>,
    /// Lowest intent confidence for a layer-1 answer.
    pub auto_min_confidence: f32,
    /// Lowest intent confidence for sending a reply the chat model wrote
    /// (rather than the seller's own FAQ answer, an order record or the
    /// catalogue): generated text is only as right as the question was
    /// understood.
    pub generated_min_confidence: f32,
    /// Below this confidence a message goes straight to a human.
    pub human_below_confidence: f32,
    /// Anger level (0 none, 1 annoyed, 2 angry) at which a human takes over;
    /// any anger at all already keeps the AI from answering alone.
    pub human_anger_level: u8,
    /// Whether VIP buyers always get a human.
    pub vip_to_human: bool,
    /// Intents the AI may answer alone (layer 1) when everything else allows.
    pub auto_intents: BTreeSet<String>,
    /// Intents that always go to a human (disputes, refunds, complaints).
    pub human_intents: BTreeSet<String>,
    /// When set, messages outside these hours that need a human get a short
    /// holding reply in auto mode.
    #[serde(default)]
    pub business_hours: Option<BusinessHours>,
    /// Longest generated reply the guard lets through, in characters.
    pub reply_max_chars: usize,
    /// Hosts generated replies may link to (the shop's own site, its
    /// marketplace storefronts); subdomains included.
    #[serde(default)]
    pub allowed_link_hosts: Vec<String>,
}

/// A shop's changes to the default policy, stored with the shop; every key
/// is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyOverride {
    pub ai_enabled: Option<bool>,
    pub mode: Option<Mode>,
    pub intent_modes: Option<BTreeMap<String, Mode>>,
    pub auto_min_confidence: Option<f32>,
    pub generated_min_confidence: Option<f32>,
    pub human_below_confidence: Option<f32>,
    pub human_anger_level: Option<u8>,
    pub vip_to_human: Option<bool>,
    pub auto_intents: Option<BTreeSet<String>>,
    pub human_intents: Option<BTreeSet<String>>,
    pub business_hours: Option<BusinessHours>,
    pub reply_max_chars: Option<usize>,
    pub allowed_link_hosts: Option<Vec<String>>,
}

/// The `[policy]` section: the server's defaults for every shop. Each shop's
/// own changes are stored with the shop (`PUT /api/v1/shops/{shop}/policy`,
/// the workbench's settings), so one tenant's setting never reaches another
/// tenant's shop of the same name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    pub defaults: Policy,
    /// Per-shop tables in the configuration file are refused with a message
    /// saying where shop policies live now.
    #[serde(default)]
    shops: Option<toml_table::Ignored>,
}

mod toml_table {
    /// Anything at all; only its presence matters.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Ignored;

    impl<'de> serde::Deserialize<'de> for Ignored {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            serde::de::IgnoredAny::deserialize(d).map(|_| Ignored)
        }
    }
}

impl PolicySettings {
    pub fn new(defaults: Policy) -> PolicySettings {
        PolicySettings {
            defaults,
            shops: None,
        }
    }

    /// The policy of a shop: the defaults with the shop's stored overrides
    /// on top. A stored override that no longer validates (written by an
    /// older kedai) is not applied half-way: the shop gets the defaults
    /// with the AI switched off, and the error says why.
    pub fn for_shop(&self, stored: &serde_json::Value) -> (Policy, Option<PolicyError>) {
        let applied = PolicyOverride::from_stored(stored).and_then(|o| o.check(&self.defaults));
        match applied {
            Ok(policy) => (policy, None),
            Err(err) => {
                let safe = Policy {
                    ai_enabled: false,
                    ..self.defaults.clone()
                };
                (safe, Some(err))
            }
        }
    }

    /// Validates the defaults.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.shops.is_some() {
            return Err(PolicyError::Invalid(
                "policy.shops: per-shop policies are stored with each shop now; set them with \
                 `PUT /api/v1/shops/{shop}/policy` or the workbench, and remove \
                 [policy.shops.*] from the configuration"
                    .into(),
            ));
        }
        self.defaults
            .validate()
            .map_err(|e| PolicyError::Invalid(format!("policy.defaults: {e}")))
    }
}

impl PolicyOverride {
    /// A shop's stored override (a JSON object of `[policy.defaults]` keys).
    pub fn from_stored(value: &serde_json::Value) -> Result<PolicyOverride, PolicyError> {
        if value.is_null() {
            return Ok(PolicyOverride::default());
        }
        serde_json::from_value(value.clone())
            .map_err(|e| PolicyError::Invalid(format!("shop policy: {e}")))
    }

    /// Checks an override against the defaults it will be applied to.
    pub fn check(&self, defaults: &Policy) -> Result<Policy, PolicyError> {
        let policy = defaults.with_override(self);
        policy.validate()?;
        Ok(policy)
    }
}

/// What the understand stage found, as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Signals {
    pub intent: String,
    /// Calibrated probability of `intent`, 0..=1.
    pub confidence: f32,
    pub out_of_scope: bool,
    /// 0 none, 1 annoyed, 2 angry.
    pub anger: u8,
    pub urgent: bool,
    pub human_requested: bool,
    /// The buyer already asked the same thing in this conversation.
    pub repeated_question: bool,
    pub vip: bool,
    /// The buyer asks for something binding: a refund, compensation, a
    /// discount, a price change, a cancellation.
    pub risky_request: bool,
    /// The message looks like an attempt to instruct the model.
    pub injection_suspected: bool,
    /// The tenant's people taught a route for messages like this one.
    pub learned_route: Option<LearnedRoute>,
}

/// A route a tenant's people taught (a route correction near this
/// message), as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearnedRoute {
    pub route: Route,
    /// Cosine similarity to the corrected message.
    pub similarity: f32,
}

/// Intents that ask for a binding action (refunds, returns, exchanges,
/// cancellations, changes to a paid order, claims for damaged, wrong or
/// missing goods, warranty claims, a payment gone wrong): a learned `auto`
/// route never lets the AI answer them alone, whatever a shop's lists say.
pub const ACTION_INTENTS: &[&str] = &[
    "refund_request",
    "return_request",
    "exchange_request",
    "cancel_order",
    "change_order",
    "damaged_item",
    "wrong_item",
    "not_received",
    "warranty_claim",
    "payment_problem",
];

/// The answer the pipeline found or wrote, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnswerEvidence {
    pub provenance: Provenance,
    /// For machine-written text: it passed verification and the output
    /// guard. Always true for the seller's words and our templates.
    pub verified: bool,
    /// The order the answer tells about is past its expected delivery: the
    /// record is true, but the buyer needs a person.
    pub order_late: bool,
}

/// Who holds the conversation, as it stood when the message was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustodyEvidence {
    pub holder: Custody,
    /// A person wrote to the buyer after this message arrived.
    pub human_replied_since: bool,
    pub resolved: bool,
}

impl CustodyEvidence {
    /// The AI holds the conversation and nobody answered since.
    pub const AI: CustodyEvidence = CustodyEvidence {
        holder: Custody::Ai,
        human_replied_since: false,
        resolved: false,
    };

    fn human_has_it(&self) -> bool {
        self.holder == Custody::Human || self.human_replied_since || self.resolved
    }
}

/// Everything known about a message when it is decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    pub signals: Signals,
    /// The candidate answer; `None` when nothing answers the message.
    pub answer: Option<AnswerEvidence>,
    /// Text was written but held back because it only repeated the
    /// conversation.
    pub withheld: bool,
    pub custody: CustodyEvidence,
}

/// Why a message went where it went. Serialised into the decision record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    KillSwitch,
    Angry {
        level: u8,
    },
    Annoyed,
    HumanRequested,
    Vip,
    RepeatedQuestion,
    OutOfScope,
    LowConfidence {
        confidence: f32,
        threshold: f32,
    },
    BelowAutoConfidence {
        confidence: f32,
        threshold: f32,
    },
    BelowGeneratedConfidence {
        confidence: f32,
        threshold: f32,
    },
    HumanIntent {
        intent: String,
    },
    IntentNotAutomated {
        intent: String,
    },
    RiskyRequest,
    InjectionSuspected,
    /// The tenant's people said messages like this one need a person.
    LearnedRoutePerson {
        similarity: f32,
    },
    /// The tenant's people said the AI could answer messages like this
    /// one: answered below `auto_min_confidence`, every other gate passed.
    LearnedRouteAuto {
        similarity: f32,
    },
    /// Nothing the AI may say answers the message.
    NoGroundedAnswer,
    /// The AI wrote text that only repeated the conversation.
    AnswerWithheld,
    /// Machine-written text failed verification or the output guard.
    Unverified,
    /// The order the buyer asks about is late.
    OrderLate,
    /// A question about the shop's rules (returns, cancelling, refunds)
    /// whose answer the chat model wrote: only the seller's own words, or
    /// their verified translation, state a policy without a person.
    PolicyNotInSellerWords,
    /// A person holds the conversation, answered after this message, or
    /// resolved it: the AI does not answer on top of them.
    HumanHolds,
    Urgent,
    ModeShadow,
    ModeSuggest,
    OutsideBusinessHours,
    /// The pipeline could not run for this message.
    PipelineFailed,
}

pub use crate::domain::Action;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub layer: Layer,
    pub action: Action,
    /// Send the buyer a short holding reply ("a colleague will answer when
    /// we open"): auto mode, a human is needed, and the team is away.
    pub holding_reply: bool,
    pub mode: Mode,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
}

impl Policy {
    /// This policy with `o`'s keys on top.
    pub fn with_override(&self, o: &PolicyOverride) -> Policy {
        let o = o.clone();
        let mut policy = self.clone();
        if let Some(v) = o.ai_enabled {
            policy.ai_enabled = v;
        }
        if let Some(v) = o.mode {
            policy.mode = v;
        }
        if let Some(v) = o.intent_modes {
            policy.intent_modes = v;
        }
        if let Some(v) = o.auto_min_confidence {
            policy.auto_min_confidence = v;
        }
        if let Some(v) = o.generated_min_confidence {
            policy.generated_min_confidence = v;
        }
        if let Some(v) = o.human_below_confidence {
            policy.human_below_confidence = v;
        }
        if let Some(v) = o.human_anger_level {
            policy.human_anger_level = v;
        }
        if let Some(v) = o.vip_to_human {
            policy.vip_to_human = v;
        }
        if let Some(v) = o.auto_intents {
            policy.auto_intents = v;
        }
        if let Some(v) = o.human_intents {
            policy.human_intents = v;
        }
        if let Some(v) = o.business_hours {
            policy.business_hours = Some(v);
        }
        if let Some(v) = o.reply_max_chars {
            policy.reply_max_chars = v;
        }
        if let Some(v) = o.allowed_link_hosts {
            policy.allowed_link_hosts = v;
        }
        policy
    }

    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |msg: String| Err(PolicyError::Invalid(msg));
        for (name, value) in [
            ("auto_min_confidence", self.auto_min_confidence),
            ("generated_min_confidence", self.generated_min_confidence),
            ("human_below_confidence", self.human_below_confidence),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return invalid(format!("{name} must be within 0..=1, got {value}"));
            }
        }
        if self.human_below_confidence > self.auto_min_confidence {
            return invalid(format!(
                "human_below_confidence ({}) must be <= auto_min_confidence ({})",
                self.human_below_confidence, self.auto_min_confidence
            ));
        }
        if !(1..=2).contains(&self.human_anger_level) {
            return invalid(format!(
                "human_anger_level must be 1 or 2, got {}",
                self.human_anger_level
            ));
        }
        if let Some(both) = self.auto_intents.intersection(&self.human_intents).next() {
            return invalid(format!(
                "intent {both:?} is in both auto_intents and human_intents"
            ));
        }
        if let Some(hours) = &self.business_hours {
            hours.parse()?;
        }
        if self.reply_max_chars == 0 {
            return invalid("reply_max_chars must be > 0, got 0".into());
        }
        Ok(())
    }

    /// What the output guard allows under this policy.
    pub fn guard_config(&self) -> super::guard::GuardConfig {
        super::guard::GuardConfig {
            max_chars: self.reply_max_chars,
            allowed_link_hosts: self.allowed_link_hosts.clone(),
        }
    }

    /// The mode that applies to `intent`.
    pub fn mode_for(&self, intent: &str) -> Mode {
        self.intent_modes.get(intent).copied().unwrap_or(self.mode)
    }
}

struct ParsedHours {
    offset: FixedOffset,
    days: Vec<Weekday>,
    open: NaiveTime,
    close: NaiveTime,
}

impl BusinessHours {
    fn parse(&self) -> Result<ParsedHours, PolicyError> {
        let invalid = |msg: String| PolicyError::Invalid(format!("business_hours: {msg}"));
        let offset =
            FixedOffset::east_opt(self.utc_offset_minutes.saturating_mul(60)).ok_or_else(|| {
                invalid(format!(
                    "utc_offset_minutes must be within -1439..=1439, got {}",
                    self.utc_offset_minutes
                ))
            })?;
        let time = |label: &str, value: &str| {
            NaiveTime::parse_from_str(value, "%H:%M")
                .map_err(|_| invalid(format!("{label} must be HH:MM, got {value:?}")))
        };
        let open = time("open", &self.open)?;
        let close = time("close", &self.close)?;
        if open == close {
            return Err(invalid(format!("open and close are both {}", self.open)));
        }
        let days = self
            .days
            .iter()
            .map(|day| {
                day.parse::<Weekday>()
                    .map_err(|_| invalid(format!("unknown day {day:?}; use mon..sun")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if days.is_empty() {
            return Err(invalid("days must not be empty".into()));
        }
        Ok(ParsedHours {
            offset,
            days,
            open,
            close,
        })
    }

    /// Whether the team is at work at `now`. A shift that closes past
    /// midnight belongs to the day it opened.
    pub fn is_open(&self, now: DateTime<Utc>) -> Result<bool, PolicyError> {
        let hours = self.parse()?;
        let local = now.with_timezone(&hours.offset);
        let time = local.time();
        let today = local.weekday();
        Ok(if hours.open < hours.close {
            hours.days.contains(&today) && time >= hours.open && time < hours.close
        } else {
            (hours.days.contains(&today) && time >= hours.open)
                || (hours.days.contains(&today.pred()) && time < hours.close)
        })
    }
}

/// The taxonomy's intent for a question about how returns, cancelling or
/// refunds work, with nothing to act on. It may be in `auto_intents`: the
/// requests themselves (`return_request`, `cancel_order`,
/// `refund_request`) are other intents, and a bargain or a claim for
/// compensation inside the question is a risky request whatever the intent.
pub const POLICY_QUESTION: &str = "policy_question";

/// Reasons that put a message in front of a person now (layer 3).
fn human_reasons(policy: &Policy, signals: &Signals, confidence: f32) -> Vec<Reason> {
    let mut human = Vec::new();
    if signals.anger >= policy.human_anger_level {
        human.push(Reason::Angry {
            level: signals.anger,
        });
    }
    if signals.human_requested {
        human.push(Reason::HumanRequested);
    }
    if signals.vip && policy.vip_to_human {
        human.push(Reason::Vip);
    }
    if signals.repeated_question {
        human.push(Reason::RepeatedQuestion);
    }
    if signals.out_of_scope {
        human.push(Reason::OutOfScope);
    }
    if confidence < policy.human_below_confidence {
        human.push(Reason::LowConfidence {
            confidence,
            threshold: policy.human_below_confidence,
        });
    }
    if policy.human_intents.contains(&signals.intent) {
        human.push(Reason::HumanIntent {
            intent: signals.intent.clone(),
        });
    }
    if signals.risky_request {
        human.push(Reason::RiskyRequest);
    }
    if signals.injection_suspected {
        human.push(Reason::InjectionSuspected);
    }
    if let Some(learned) = signals.learned_route {
        if learned.route == Route::Person {
            human.push(Reason::LearnedRoutePerson {
                similarity: learned.similarity,
            });
        }
    }
    human
}

/// The similarity of a learned `auto` route that may lower the confidence
/// a layer-1 answer needs: only for an intent the shop lets the AI answer
/// alone, never for one that always goes to a person, asks for a binding
/// action ([`ACTION_INTENTS`]) or comes with a risky request. It lowers
/// `auto_min_confidence` only: `human_below_confidence`, the bar for text
/// the chat model wrote and every other gate still apply.
fn learned_auto(policy: &Policy, signals: &Signals) -> Option<f32> {
    let learned = signals.learned_route?;
    let intent = signals.intent.as_str();
    (learned.route == Route::Auto
        && policy.auto_intents.contains(intent)
        && !policy.human_intents.contains(intent)
        && !ACTION_INTENTS.contains(&intent)
        && !signals.risky_request)
        .then_some(learned.similarity)
}

/// Reasons a person should read the AI's draft before the buyer does
/// (layer 2); none means the AI may answer alone.
fn assisted_reasons(policy: &Policy, evidence: &Evidence, confidence: f32) -> Vec<Reason> {
    let signals = &evidence.signals;
    let mut assisted = Vec::new();
    if signals.anger > 0 {
        assisted.push(Reason::Annoyed);
    }
    if signals.vip {
        assisted.push(Reason::Vip);
    }
    if !policy.auto_intents.contains(&signals.intent) {
        assisted.push(Reason::IntentNotAutomated {
            intent: signals.intent.clone(),
        });
    }
    let generated = evidence
        .answer
        .is_some_and(|a| a.provenance == Provenance::Generated);
    let learned = learned_auto(policy, signals).is_some();
    if confidence < policy.auto_min_confidence && !learned {
        assisted.push(Reason::BelowAutoConfidence {
            confidence,
            threshold: policy.auto_min_confidence,
        });
    } else if generated && confidence < policy.generated_min_confidence {
        assisted.push(Reason::BelowGeneratedConfidence {
            confidence,
            threshold: policy.generated_min_confidence,
        });
    }
    match evidence.answer {
        None if evidence.withheld => assisted.push(Reason::AnswerWithheld),
        None => assisted.push(Reason::NoGroundedAnswer),
        Some(answer) => {
            if !answer.verified {
                assisted.push(Reason::Unverified);
            }
            if answer.order_late {
                assisted.push(Reason::OrderLate);
            }
            if signals.intent == POLICY_QUESTION && answer.provenance == Provenance::Generated {
                assisted.push(Reason::PolicyNotInSellerWords);
            }
        }
    }
    if evidence.custody.human_has_it() {
        assisted.push(Reason::HumanHolds);
    }
    assisted
}

/// Decides one message from everything known about it, once. `policy` must
/// have passed [`Policy::validate`]; an invalid `business_hours` counts as
/// "open" so no holding reply is sent.
///
/// Layer 1 and [`Action::Send`] go together: a message the AI does not
/// answer is at layer 2 or 3, where people see it (shadow mode, where
/// people answer elsewhere, only records what would have happened).
pub fn decide(policy: &Policy, evidence: &Evidence, now: DateTime<Utc>) -> Decision {
    let signals = &evidence.signals;
    let confidence = if signals.confidence.is_finite() {
        signals.confidence.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let human = human_reasons(policy, signals, confidence);
    let (mut layer, mut reasons) = if !human.is_empty() {
        (3, human)
    } else {
        let assisted = assisted_reasons(policy, evidence, confidence);
        (if assisted.is_empty() { 1 } else { 2 }, assisted)
    };
    if signals.urgent {
        reasons.push(Reason::Urgent);
    }
    if let Some(similarity) = learned_auto(policy, signals) {
        if layer == 1 && confidence < policy.auto_min_confidence {
            reasons.push(Reason::LearnedRouteAuto { similarity });
        }
    }

    let mode = policy.mode_for(&signals.intent);
    if layer == 1 && !policy.ai_enabled {
        layer = 2;
        reasons.push(Reason::KillSwitch);
    }
    if layer == 1 && mode == Mode::Suggest {
        layer = 2;
        reasons.push(Reason::ModeSuggest);
    }
    let mut action = match layer {
        1 => Action::Send,
        2 => Action::Draft,
        _ => Action::Handoff,
    };
    if mode == Mode::Shadow {
        action = Action::Observe;
        reasons.push(Reason::ModeShadow);
    }

    let away = policy
        .business_hours
        .as_ref()
        .map(|hours| !hours.is_open(now).unwrap_or(true))
        .unwrap_or(false);
    let holding_reply = away
        && policy.ai_enabled
        && mode == Mode::Auto
        && !evidence.custody.human_has_it()
        && matches!(action, Action::Draft | Action::Handoff);
    if away && matches!(action, Action::Draft | Action::Handoff) {
        reasons.push(Reason::OutsideBusinessHours);
    }

    Decision {
        layer: Layer::try_from(layer).expect("layer is 1, 2 or 3"),
        action,
        holding_reply,
        mode,
        reasons,
    }
}

/// What the decision would do with a verified written answer: the best a
/// written answer can do for this message.
pub fn with_written_answer(policy: &Policy, signals: &Signals, custody: CustodyEvidence) -> Action {
    let hypothetical = Evidence {
        signals: signals.clone(),
        answer: Some(AnswerEvidence {
            provenance: Provenance::Generated,
            verified: true,
            order_late: false,
        }),
        withheld: false,
        custody,
    };
    decide(policy, &hypothetical, DateTime::<Utc>::MIN_UTC).action
}

/// Whether writing an answer for this message is worth the chat model's
/// time: the decision with a verified written answer would send it or put
/// it in front of a person as a draft. Handoffs never wait for generation.
pub fn wants_written_answer(policy: &Policy, signals: &Signals, custody: CustodyEvidence) -> bool {
    matches!(
        with_written_answer(policy, signals, custody),
        Action::Send | Action::Draft
    )
}

#[cfg(test)]
mod tests;
