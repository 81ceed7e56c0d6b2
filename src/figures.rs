//! The service figures of `PRODUCT.md`, computed from conversations'
//! timelines: volume by platform, shop, language and intent; involvement
//! and automation rates; first-response time and time to a human (p50 and
//! p90); escalation reasons.
//!
//! One pure function over [`ConversationFacts`] and the current time, so
//! that the workbench's dashboard and a reports API compute the same
//! numbers and tests check them against figures worked out by hand. No
//! I/O, no clock.
//!
//! Definitions (as published in the README):
//! - *involvement*: conversations where the AI replied or drafted, over
//!   conversations with a buyer message;
//! - *automation*: conversations with AI replies and no human reply, that
//!   are resolved or whose last AI reply is 24 hours old, over the same;
//! - *first response*: a conversation's first buyer message to the first
//!   reply after it (AI or human; split by who answered);
//! - *time to a human*: the first layer-3 decision to the first human
//!   reply after it;
//! - percentiles are nearest-rank: p50 of 1, 2, 3, 4 is 2.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::domain::{Author, Direction};
use crate::store::desk::ConversationFacts;

pub mod gaps;
pub mod quality;
pub mod report;
pub mod tags;

pub use report::{report, resolution, Filter, Report, Resolution};

/// How long a conversation with only AI replies must stay without a human
/// message before it counts as automated.
pub const AUTOMATION_QUIET: Duration = Duration::hours(24);

/// p50 and p90 of a set of durations, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub count: usize,
    pub p50_secs: f64,
    pub p90_secs: f64,
}

impl Spread {
    fn of(mut secs: Vec<f64>) -> Option<Spread> {
        if secs.is_empty() {
            return None;
        }
        secs.sort_by(f64::total_cmp);
        Some(Spread {
            count: secs.len(),
            p50_secs: nearest_rank(&secs, 0.5),
            p90_secs: nearest_rank(&secs, 0.9),
        })
    }
}

pub(crate) fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub conversations: usize,
    /// Conversations with at least one buyer message: the denominator of
    /// the rates.
    pub with_buyer_message: usize,
    pub ai_involved: usize,
    pub automated: usize,
    pub first_response: Option<Spread>,
    pub first_response_ai: Option<Spread>,
    pub first_response_human: Option<Spread>,
    pub time_to_human: Option<Spread>,
    /// Handed to a human, no human reply yet.
    pub waiting_for_human: usize,
    /// Reasons given for layer-2 and layer-3 decisions, most frequent first.
    pub escalation_reasons: Vec<(String, usize)>,
    pub by_platform: Vec<(String, usize)>,
    pub by_shop: Vec<(String, usize)>,
    pub by_language: Vec<(String, usize)>,
    pub by_intent: Vec<(String, usize)>,
    /// Conversations per day (UTC), oldest first.
    pub by_day: Vec<(String, usize)>,
}

impl Figures {
    /// Involvement rate, 0 to 1; `None` without conversations.
    pub fn involvement(&self) -> Option<f64> {
        rate(self.ai_involved, self.with_buyer_message)
    }

    /// Automation rate, 0 to 1; `None` without conversations.
    pub fn automation(&self) -> Option<f64> {
        rate(self.automated, self.with_buyer_message)
    }
}

fn rate(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

fn secs(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 1000.0
}

fn is_reply(direction: Direction) -> bool {
    direction == Direction::Outbound
}

/// Counts, most frequent first, ties by name.
pub(crate) fn ranked(counts: BTreeMap<String, usize>) -> Vec<(String, usize)> {
    let mut items: Vec<_> = counts.into_iter().collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    items
}

pub fn compute(conversations: &[ConversationFacts], now: DateTime<Utc>) -> Figures {
    let refs: Vec<&ConversationFacts> = conversations.iter().collect();
    compute_refs(&refs, now)
}

/// [`compute`] over borrowed conversations (a report's selection).
pub fn compute_refs(conversations: &[&ConversationFacts], now: DateTime<Utc>) -> Figures {
    let mut figures = Figures {
        conversations: conversations.len(),
        ..Figures::default()
    };
    let (mut frt, mut frt_ai, mut frt_human, mut to_human) = (vec![], vec![], vec![], vec![]);
    let mut volume: [BTreeMap<String, usize>; 4] = Default::default();
    let mut days = BTreeMap::new();
    let mut reasons = BTreeMap::new();
    for c in conversations {
        *volume[0].entry(c.platform.to_string()).or_default() += 1;
        *volume[1].entry(c.shop.to_string()).or_default() += 1;
        let unknown = || "unknown".to_owned();
        *volume[2]
            .entry(c.language.clone().unwrap_or_else(unknown))
            .or_default() += 1;
        *volume[3]
            .entry(c.intent.clone().unwrap_or_else(unknown))
            .or_default() += 1;
        *days
            .entry(c.created_at.format("%Y-%m-%d").to_string())
            .or_default() += 1;
        for d in c.decisions.iter().filter(|d| d.layer >= 2) {
            for reason in &d.reasons {
                *reasons.entry(reason.clone()).or_default() += 1;
            }
        }
        let Some(first_in) = c
            .messages
            .iter()
            .find(|m| m.direction == Direction::Inbound)
        else {
            continue;
        };
        figures.with_buyer_message += 1;
        let replies = || c.messages.iter().filter(|m| is_reply(m.direction));
        let ai_replies: Vec<_> = replies().filter(|m| m.author == Author::Ai).collect();
        let human_replies = replies().filter(|m| m.author == Author::Agent).count();
        let drafted = c.decisions.iter().any(|d| d.action == "draft");
        if !ai_replies.is_empty() || drafted {
            figures.ai_involved += 1;
        }
        if let Some(last_ai) = ai_replies.last() {
            if human_replies == 0 && (c.resolved || now - last_ai.at >= AUTOMATION_QUIET) {
                figures.automated += 1;
            }
        }
        if let Some(first_out) = replies().find(|m| m.at >= first_in.at) {
            let took = secs(first_in.at, first_out.at);
            frt.push(took);
            match first_out.author {
                Author::Ai => frt_ai.push(took),
                Author::Agent => frt_human.push(took),
                Author::Buyer | Author::System => {}
            }
        }
        if let Some(handoff) = c.decisions.iter().find(|d| d.layer == 3) {
            match replies().find(|m| m.author == Author::Agent && m.at >= handoff.at) {
                Some(human) => to_human.push(secs(handoff.at, human.at)),
                None => figures.waiting_for_human += 1,
            }
        }
    }
    figures.first_response = Spread::of(frt);
    figures.first_response_ai = Spread::of(frt_ai);
    figures.first_response_human = Spread::of(frt_human);
    figures.time_to_human = Spread::of(to_human);
    figures.escalation_reasons = ranked(reasons);
    let [platform, shop, language, intent] = volume;
    figures.by_platform = ranked(platform);
    figures.by_shop = ranked(shop);
    figures.by_language = ranked(language);
    figures.by_intent = ranked(intent);
    figures.by_day = days.into_iter().collect();
    figures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ConversationId, Platform, ShopKey};
    use crate::store::desk::{DecisionFact, MessageFact};

    fn at(minute: i64) -> DateTime<Utc> {
        "2026-11-21T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(minute)
    }

    fn msg(direction: Direction, author: Author, minute: i64) -> MessageFact {
        MessageFact {
            id: crate::domain::MessageId::new(),
            direction,
            author,
            at: at(minute),
            text: String::new(),
        }
    }

    fn decision(layer: u8, action: &str, minute: i64, reasons: &[&str]) -> DecisionFact {
        DecisionFact {
            layer,
            action: action.into(),
            at: at(minute),
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
            ..DecisionFact::default()
        }
    }

    fn conversation(
        shop: &str,
        platform: Platform,
        lang: &str,
        intent: &str,
        messages: Vec<MessageFact>,
        decisions: Vec<DecisionFact>,
    ) -> ConversationFacts {
        ConversationFacts {
            id: ConversationId::new(),
            shop: ShopKey::parse(shop).unwrap(),
            platform,
            resolved: false,
            created_at: at(0),
            language: Some(lang.into()),
            intent: Some(intent.into()),
            messages,
            decisions,
            status_changes: Vec::new(),
        }
    }

    use Author::{Agent, Ai, Buyer};
    use Direction::{Inbound, Note, Outbound};

    /// Four conversations worked out by hand:
    /// 1. AI answers after 1 min, nobody else: automated once 24 h pass.
    /// 2. AI drafts (layer 2); an agent replies after 10 min.
    /// 3. Handed off (layer 3, angry) at minute 0; an agent replies at 30.
    /// 4. Handed off (layer 3, vip, angry); only a note so far: waiting.
    fn sample() -> Vec<ConversationFacts> {
        vec![
            conversation(
                "demo-shopee",
                Platform::Shopee,
                "id",
                "order_status",
                vec![msg(Inbound, Buyer, 0), msg(Outbound, Ai, 1)],
                vec![decision(1, "send", 1, &[])],
            ),
            conversation(
                "demo-shopee",
                Platform::Shopee,
                "th",
                "size_fit",
                vec![msg(Inbound, Buyer, 0), msg(Outbound, Agent, 10)],
                vec![decision(2, "draft", 0, &["mode_suggest"])],
            ),
            conversation(
                "demo-lazada",
                Platform::Lazada,
                "id",
                "refund_request",
                vec![msg(Inbound, Buyer, 0), msg(Outbound, Agent, 30)],
                vec![decision(3, "handoff", 0, &["angry"])],
            ),
            conversation(
                "demo-tiktok",
                Platform::Tiktok,
                "en",
                "complaint",
                vec![msg(Inbound, Buyer, 0), msg(Note, Agent, 5)],
                vec![decision(3, "handoff", 0, &["vip", "angry"])],
            ),
        ]
    }

    #[test]
    fn figures_match_the_hand_computed_ones() {
        let f = compute(&sample(), at(60 * 25));
        assert_eq!(f.conversations, 4);
        assert_eq!(f.with_buyer_message, 4);
        // AI replied in 1, drafted in 2.
        assert_eq!(f.ai_involved, 2);
        assert_eq!(f.involvement(), Some(0.5));
        // Only conversation 1, 25 h after its AI reply.
        assert_eq!(f.automated, 1);
        assert_eq!(f.automation(), Some(0.25));
        // First responses 60 s, 600 s, 1800 s (4 has none): p50 600, p90 1800.
        let frt = f.first_response.unwrap();
        assert_eq!((frt.count, frt.p50_secs, frt.p90_secs), (3, 600.0, 1800.0));
        assert_eq!(f.first_response_ai.unwrap().p50_secs, 60.0);
        let human = f.first_response_human.unwrap();
        assert_eq!(
            (human.count, human.p50_secs, human.p90_secs),
            (2, 600.0, 1800.0)
        );
        // Handoffs: 3 answered after 30 min; 4 still waits (a note is no reply).
        let to_human = f.time_to_human.unwrap();
        assert_eq!((to_human.count, to_human.p50_secs), (1, 1800.0));
        assert_eq!(f.waiting_for_human, 1);
        assert_eq!(
            f.escalation_reasons,
            vec![
                ("angry".to_owned(), 2),
                ("mode_suggest".to_owned(), 1),
                ("vip".to_owned(), 1)
            ]
        );
        assert_eq!(
            f.by_platform,
            vec![
                ("shopee".to_owned(), 2),
                ("lazada".to_owned(), 1),
                ("tiktok".to_owned(), 1)
            ]
        );
        assert_eq!(f.by_language[0], ("id".to_owned(), 2));
        assert_eq!(f.by_day, vec![("2026-11-21".to_owned(), 4)]);
    }

    #[test]
    fn ai_only_conversations_are_automated_after_a_quiet_day_or_when_resolved() {
        let mut facts = sample();
        facts.truncate(1);
        assert_eq!(compute(&facts, at(60)).automated, 0);
        facts[0].resolved = true;
        assert_eq!(compute(&facts, at(60)).automated, 1);
    }

    #[test]
    fn a_human_reply_means_not_automated() {
        let mut facts = sample();
        facts.truncate(1);
        facts[0].messages.push(msg(Outbound, Agent, 90));
        assert_eq!(compute(&facts, at(60 * 48)).automated, 0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Spread::of(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.p50_secs, s.p90_secs), (2.0, 4.0));
        let one = Spread::of(vec![7.0]).unwrap();
        assert_eq!((one.p50_secs, one.p90_secs), (7.0, 7.0));
        assert_eq!(Spread::of(vec![]), None);
    }

    #[test]
    fn no_conversations_no_rates() {
        let f = compute(&[], at(0));
        assert_eq!(f.involvement(), None);
        assert_eq!(f.first_response, None);
    }
}
