//! Decide: which of the three layers handles a buyer message, and what kedai
//! may do about it.
//!
//! This module is a pure function of its inputs: the signals the understand
//! stage produced, the shop's policy (thresholds, lists, mode, business
//! hours, kill switch) and the time. It does no I/O, reads no clock, runs no
//! model and knows nothing of HTTP or the store, so every rule is table-tested
//! below.
//!
//! - Layer 1, the AI answers: confident, an allowed intent, a grounded answer
//!   exists, no anger, not a VIP, nothing risky.
//! - Layer 2, AI-assisted: a draft, a summary and the reasons go to a human.
//! - Layer 3, a human now: anger, disputes, refunds and other binding
//!   actions, an explicit request for a human, VIPs, a repeated question, low
//!   confidence, out-of-scope, a suspected prompt injection.
//!
//! The layer says how hard the case is; the [`Action`] says what happens,
//! after the shop's mode (shadow, suggest, auto) and kill switch are applied.
//! Nothing here can make a message *less* guarded than its layer.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::domain::Layer;

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

/// A shop's changes to the default policy (`[policy.shops.<shop>]`); every
/// key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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

/// The `[policy]` section: defaults for every shop and per-shop overrides,
/// keyed by the shop's key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    pub defaults: Policy,
    #[serde(default)]
    pub shops: BTreeMap<String, PolicyOverride>,
}

impl PolicySettings {
    /// The policy that applies to `shop`: the defaults with the shop's
    /// overrides on top.
    pub fn for_shop(&self, shop: &str) -> Policy {
        let mut policy = self.defaults.clone();
        let Some(o) = self.shops.get(shop) else {
            return policy;
        };
        let o = o.clone();
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

    /// Validates the defaults and every shop's resulting policy.
    pub fn validate(&self) -> Result<(), PolicyError> {
        self.defaults
            .validate()
            .map_err(|e| PolicyError::Invalid(format!("policy.defaults: {e}")))?;
        for shop in self.shops.keys() {
            self.for_shop(shop)
                .validate()
                .map_err(|e| PolicyError::Invalid(format!("policy.shops.{shop}: {e}")))?;
        }
        Ok(())
    }
}

/// What the understand stage (and the answer lookup) found, as the policy
/// sees it.
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
    /// A grounded answer exists (a confident FAQ match, an order record, a
    /// catalogue fact, or retrieved knowledge for a draft).
    pub grounded_answer: bool,
    /// That answer would be written by the chat model.
    pub generated_answer: bool,
    /// The buyer asks for something binding: a refund, compensation, a
    /// discount, a price change, a cancellation.
    pub risky_request: bool,
    /// The message looks like an attempt to instruct the model.
    pub injection_suspected: bool,
}

/// Why a message went where it went. Serialised into the decision record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    KillSwitch,
    Angry { level: u8 },
    Annoyed,
    HumanRequested,
    Vip,
    RepeatedQuestion,
    OutOfScope,
    LowConfidence { confidence: f32, threshold: f32 },
    BelowAutoConfidence { confidence: f32, threshold: f32 },
    BelowGeneratedConfidence { confidence: f32, threshold: f32 },
    HumanIntent { intent: String },
    IntentNotAutomated { intent: String },
    RiskyRequest,
    InjectionSuspected,
    NoGroundedAnswer,
    Urgent,
    ModeShadow,
    ModeSuggest,
    OutsideBusinessHours,
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

/// Decides one message. `policy` must have passed [`Policy::validate`]; an
/// invalid `business_hours` counts as "open" so no holding reply is sent.
pub fn decide(policy: &Policy, signals: &Signals, now: DateTime<Utc>) -> Decision {
    let mut human = Vec::new();
    let confidence = if signals.confidence.is_finite() {
        signals.confidence.clamp(0.0, 1.0)
    } else {
        0.0
    };
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

    let (layer, mut reasons) = if !human.is_empty() {
        (3, human)
    } else {
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
        if confidence < policy.auto_min_confidence {
            assisted.push(Reason::BelowAutoConfidence {
                confidence,
                threshold: policy.auto_min_confidence,
            });
        } else if signals.generated_answer && confidence < policy.generated_min_confidence {
            assisted.push(Reason::BelowGeneratedConfidence {
                confidence,
                threshold: policy.generated_min_confidence,
            });
        }
        if !signals.grounded_answer {
            assisted.push(Reason::NoGroundedAnswer);
        }
        if assisted.is_empty() {
            (1, assisted)
        } else {
            (2, assisted)
        }
    };
    if signals.urgent {
        reasons.push(Reason::Urgent);
    }

    let mode = policy.mode_for(&signals.intent);
    let mut action = match layer {
        1 => Action::Send,
        2 => Action::Draft,
        _ => Action::Handoff,
    };
    if !policy.ai_enabled && action == Action::Send {
        action = Action::Draft;
        reasons.push(Reason::KillSwitch);
    }
    match mode {
        Mode::Shadow => {
            action = Action::Observe;
            reasons.push(Reason::ModeShadow);
        }
        Mode::Suggest if action == Action::Send => {
            action = Action::Draft;
            reasons.push(Reason::ModeSuggest);
        }
        Mode::Suggest | Mode::Auto => {}
    }

    let away = policy
        .business_hours
        .as_ref()
        .map(|hours| !hours.is_open(now).unwrap_or(true))
        .unwrap_or(false);
    let holding_reply = away
        && policy.ai_enabled
        && mode == Mode::Auto
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn policy() -> Policy {
        Policy {
            ai_enabled: true,
            mode: Mode::Auto,
            intent_modes: BTreeMap::new(),
            auto_min_confidence: 0.75,
            generated_min_confidence: 0.95,
            human_below_confidence: 0.35,
            human_anger_level: 2,
            vip_to_human: true,
            auto_intents: set(&["order_status", "shipping_time_cost", "greeting"]),
            human_intents: set(&["refund_request", "complaint", "ask_for_human"]),
            business_hours: None,
            reply_max_chars: 600,
            allowed_link_hosts: vec![],
        }
    }

    /// A routine, confident, grounded question: the layer-1 baseline that
    /// each table row changes in one way.
    fn routine() -> Signals {
        Signals {
            intent: "order_status".into(),
            confidence: 0.93,
            out_of_scope: false,
            anger: 0,
            urgent: false,
            human_requested: false,
            repeated_question: false,
            vip: false,
            grounded_answer: true,
            generated_answer: false,
            risky_request: false,
            injection_suspected: false,
        }
    }

    fn at(hour: u32, minute: u32) -> DateTime<Utc> {
        // Wednesday 2026-11-18.
        Utc.with_ymd_and_hms(2026, 11, 18, hour, minute, 0).unwrap()
    }

    fn names(reasons: &[Reason]) -> Vec<String> {
        reasons
            .iter()
            .map(|r| {
                serde_json::to_value(r).unwrap()["reason"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn routing_table() {
        type Change = fn(&mut Signals);
        let rows: &[(&str, Change, u8, Action, &[&str])] = &[
            ("routine", |_| {}, 1, Action::Send, &[]),
            ("angry", |s| s.anger = 2, 3, Action::Handoff, &["angry"]),
            ("annoyed", |s| s.anger = 1, 2, Action::Draft, &["annoyed"]),
            (
                "asks for a human",
                |s| s.human_requested = true,
                3,
                Action::Handoff,
                &["human_requested"],
            ),
            ("vip", |s| s.vip = true, 3, Action::Handoff, &["vip"]),
            (
                "repeated",
                |s| s.repeated_question = true,
                3,
                Action::Handoff,
                &["repeated_question"],
            ),
            (
                "out of scope",
                |s| s.out_of_scope = true,
                3,
                Action::Handoff,
                &["out_of_scope"],
            ),
            (
                "low confidence",
                |s| s.confidence = 0.2,
                3,
                Action::Handoff,
                &["low_confidence"],
            ),
            (
                "middling confidence",
                |s| s.confidence = 0.6,
                2,
                Action::Draft,
                &["below_auto_confidence"],
            ),
            (
                "refund intent",
                |s| s.intent = "refund_request".into(),
                3,
                Action::Handoff,
                &["human_intent"],
            ),
            (
                "risky request inside an allowed intent",
                |s| s.risky_request = true,
                3,
                Action::Handoff,
                &["risky_request"],
            ),
            (
                "prompt injection",
                |s| s.injection_suspected = true,
                3,
                Action::Handoff,
                &["injection_suspected"],
            ),
            (
                "not an automated intent",
                |s| s.intent = "size_fit".into(),
                2,
                Action::Draft,
                &["intent_not_automated"],
            ),
            (
                "a written answer needs more confidence",
                |s| s.generated_answer = true,
                2,
                Action::Draft,
                &["below_generated_confidence"],
            ),
            (
                "a written answer for a very clear question",
                |s| {
                    s.generated_answer = true;
                    s.confidence = 0.97;
                },
                1,
                Action::Send,
                &[],
            ),
            (
                "below both thresholds says it once",
                |s| {
                    s.generated_answer = true;
                    s.confidence = 0.6;
                },
                2,
                Action::Draft,
                &["below_auto_confidence"],
            ),
            (
                "no grounded answer",
                |s| s.grounded_answer = false,
                2,
                Action::Draft,
                &["no_grounded_answer"],
            ),
            (
                "NaN confidence counts as none",
                |s| s.confidence = f32::NAN,
                3,
                Action::Handoff,
                &["low_confidence"],
            ),
            (
                "urgent is recorded, not escalated",
                |s| s.urgent = true,
                1,
                Action::Send,
                &["urgent"],
            ),
            (
                "several human reasons are all kept",
                |s| {
                    s.anger = 2;
                    s.human_requested = true;
                    s.intent = "complaint".into();
                },
                3,
                Action::Handoff,
                &["angry", "human_requested", "human_intent"],
            ),
        ];
        for (name, change, layer, action, reasons) in rows {
            let mut signals = routine();
            change(&mut signals);
            let decision = decide(&policy(), &signals, at(3, 0));
            assert_eq!(decision.layer.get(), *layer, "{name}");
            assert_eq!(decision.action, *action, "{name}");
            assert_eq!(names(&decision.reasons), *reasons, "{name}");
            assert!(!decision.holding_reply, "{name}");
        }
    }

    #[test]
    fn vip_gets_a_draft_when_vips_are_not_sent_to_humans() {
        let policy = Policy {
            vip_to_human: false,
            ..policy()
        };
        let signals = Signals {
            vip: true,
            ..routine()
        };
        let decision = decide(&policy, &signals, at(3, 0));
        assert_eq!(decision.layer.get(), 2);
        assert_eq!(names(&decision.reasons), ["vip"]);
    }

    #[test]
    fn kill_switch_stops_sending_within_one_message() {
        let policy = Policy {
            ai_enabled: false,
            ..policy()
        };
        let decision = decide(&policy, &routine(), at(3, 0));
        assert_eq!(decision.layer.get(), 1);
        assert_eq!(decision.action, Action::Draft);
        assert_eq!(names(&decision.reasons), ["kill_switch"]);
        let angry = Signals {
            anger: 2,
            ..routine()
        };
        assert_eq!(decide(&policy, &angry, at(3, 0)).action, Action::Handoff);
    }

    #[test]
    fn modes_never_loosen_a_decision() {
        for (mode, routine_action, angry_action) in [
            (Mode::Auto, Action::Send, Action::Handoff),
            (Mode::Suggest, Action::Draft, Action::Handoff),
            (Mode::Shadow, Action::Observe, Action::Observe),
        ] {
            let policy = Policy { mode, ..policy() };
            let decision = decide(&policy, &routine(), at(3, 0));
            assert_eq!(decision.action, routine_action, "{mode:?}");
            assert_eq!(
                decision.layer.get(),
                1,
                "{mode:?}: the layer is still scored"
            );
            let angry = Signals {
                anger: 2,
                ..routine()
            };
            let decision = decide(&policy, &angry, at(3, 0));
            assert_eq!(decision.action, angry_action, "{mode:?}");
            assert_eq!(decision.layer.get(), 3, "{mode:?}");
        }
    }

    #[test]
    fn intent_mode_overrides_the_shop_mode() {
        let mut policy = Policy {
            mode: Mode::Suggest,
            ..policy()
        };
        policy
            .intent_modes
            .insert("order_status".into(), Mode::Auto);
        assert_eq!(decide(&policy, &routine(), at(3, 0)).action, Action::Send);
        let greeting = Signals {
            intent: "greeting".into(),
            ..routine()
        };
        assert_eq!(decide(&policy, &greeting, at(3, 0)).action, Action::Draft);
    }

    #[test]
    fn business_hours_send_a_holding_reply_only_when_away_and_a_human_is_needed() {
        // Jakarta, Monday to Friday 09:00-18:00 (UTC+7): open 02:00-11:00 UTC.
        let policy = Policy {
            business_hours: Some(BusinessHours {
                utc_offset_minutes: 420,
                days: ["mon", "tue", "wed", "thu", "fri"]
                    .map(String::from)
                    .to_vec(),
                open: "09:00".into(),
                close: "18:00".into(),
            }),
            ..policy()
        };
        policy.validate().unwrap();
        let angry = Signals {
            anger: 2,
            ..routine()
        };
        let open = decide(&policy, &angry, at(3, 0));
        assert!(!open.holding_reply);
        let away = decide(&policy, &angry, at(12, 0));
        assert!(away.holding_reply);
        assert!(names(&away.reasons).contains(&"outside_business_hours".to_string()));
        // Routine answers are sent at any hour, without a holding reply.
        let routine_away = decide(&policy, &routine(), at(12, 0));
        assert_eq!(routine_away.action, Action::Send);
        assert!(!routine_away.holding_reply);
    }

    #[test]
    fn business_hours_past_midnight_and_weekdays() {
        let hours = BusinessHours {
            utc_offset_minutes: 0,
            days: vec!["wed".into()],
            open: "22:00".into(),
            close: "02:00".into(),
        };
        assert!(hours.is_open(at(23, 0)).unwrap());
        assert!(
            !hours.is_open(at(1, 0)).unwrap(),
            "Tuesday's shift is not open"
        );
        let thursday_night = Utc.with_ymd_and_hms(2026, 11, 19, 1, 30, 0).unwrap();
        assert!(hours.is_open(thursday_night).unwrap(), "Wednesday's shift");
        assert!(!hours.is_open(at(21, 59)).unwrap());
    }

    #[test]
    fn validation_names_the_bad_value() {
        let cases: Vec<(Policy, &str)> = vec![
            (
                Policy {
                    auto_min_confidence: 1.5,
                    ..policy()
                },
                "auto_min_confidence",
            ),
            (
                Policy {
                    human_below_confidence: 0.9,
                    ..policy()
                },
                "human_below_confidence (0.9)",
            ),
            (
                Policy {
                    human_anger_level: 0,
                    ..policy()
                },
                "human_anger_level",
            ),
            (
                Policy {
                    auto_intents: set(&["complaint"]),
                    ..policy()
                },
                "\"complaint\"",
            ),
            (
                Policy {
                    business_hours: Some(BusinessHours {
                        utc_offset_minutes: 0,
                        days: vec!["someday".into()],
                        open: "09:00".into(),
                        close: "17:00".into(),
                    }),
                    ..policy()
                },
                "someday",
            ),
            (
                Policy {
                    business_hours: Some(BusinessHours {
                        utc_offset_minutes: 0,
                        days: vec!["mon".into()],
                        open: "9am".into(),
                        close: "17:00".into(),
                    }),
                    ..policy()
                },
                "9am",
            ),
        ];
        for (policy, needle) in cases {
            let err = policy.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        policy().validate().unwrap();
    }

    #[test]
    fn shop_overrides_apply_on_top_of_the_defaults() {
        let settings = PolicySettings {
            defaults: policy(),
            shops: BTreeMap::from([(
                "demo-tiktok".to_string(),
                PolicyOverride {
                    mode: Some(Mode::Suggest),
                    ai_enabled: Some(false),
                    ..PolicyOverride::default()
                },
            )]),
        };
        settings.validate().unwrap();
        let tiktok = settings.for_shop("demo-tiktok");
        assert_eq!(tiktok.mode, Mode::Suggest);
        assert!(!tiktok.ai_enabled);
        assert_eq!(tiktok.auto_min_confidence, 0.75);
        assert_eq!(settings.for_shop("demo-shopee"), policy());
        let broken = PolicySettings {
            shops: BTreeMap::from([(
                "demo-web".to_string(),
                PolicyOverride {
                    auto_min_confidence: Some(0.1),
                    ..PolicyOverride::default()
                },
            )]),
            ..settings
        };
        let err = broken.validate().unwrap_err().to_string();
        assert!(err.starts_with("policy.shops.demo-web:"), "{err}");
    }
}
