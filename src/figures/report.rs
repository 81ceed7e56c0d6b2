//! A report: the figures of [`compute`](super::compute) and of
//! [`quality`](super::quality) over the conversations a [`Filter`]
//! selects (period, shop, platform, language, intent, tag), broken down
//! per language and per intent, with the tags' counts and the resolution
//! figure recomputed from the rows of the published SQL. Pure; the caller
//! passes the time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::quality::{self, DraftFigures, FollowUpFigures, SatisfactionFigures};
use super::tags::{edits_by_conversation, effective_tags};
use super::{compute_refs, ranked, Figures, Spread};
use crate::domain::{ConversationId, Platform, ShopKey};
use crate::store::desk::ConversationFacts;
use crate::store::reports::{ResolutionRow, Tag, TagEdit, RESOLUTION_RULE, RESOLUTION_SQL};

/// Which conversations a report covers. Conversations are selected by
/// when they started (`created_at`), `[since, until)`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filter {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub shop: Option<ShopKey>,
    pub platform: Option<Platform>,
    /// The language of the conversation's first decision.
    pub language: Option<String>,
    /// The intent of the conversation's first decision.
    pub intent: Option<String>,
    /// Only conversations carrying this tag (after people's edits).
    pub tag: Option<Tag>,
}

impl Filter {
    fn selects(&self, c: &ConversationFacts, tags: &std::collections::BTreeSet<Tag>) -> bool {
        c.created_at >= self.since
            && c.created_at < self.until
            && self.shop.as_ref().is_none_or(|s| *s == c.shop)
            && self.platform.is_none_or(|p| p == c.platform)
            && self
                .language
                .as_ref()
                .is_none_or(|l| c.language.as_ref() == Some(l))
            && self
                .intent
                .as_ref()
                .is_none_or(|i| c.intent.as_ref() == Some(i))
            && self.tag.as_ref().is_none_or(|t| tags.contains(t))
    }
}

/// The headline figures of a group of conversations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// `all`, `language` or `intent`.
    pub dimension: &'static str,
    pub value: String,
    pub conversations: usize,
    pub with_buyer_message: usize,
    pub involvement: Option<f64>,
    pub automation: Option<f64>,
    pub first_response: Option<Spread>,
    pub first_response_ai: Option<Spread>,
    pub first_response_human: Option<Spread>,
    pub time_to_human: Option<Spread>,
    pub drafts_offered: usize,
    pub drafts_sent_unchanged: usize,
    pub drafts_edited: usize,
    pub edit_distance_p50: Option<f64>,
    pub ai_answers: usize,
    pub ai_answers_asked_again: usize,
    pub satisfaction_score: Option<f64>,
}

fn row(
    dimension: &'static str,
    value: String,
    group: &[&ConversationFacts],
    now: DateTime<Utc>,
) -> Row {
    let f = compute_refs(group, now);
    let drafts = quality::drafts(group);
    let follow = quality::follow_ups(group);
    Row {
        dimension,
        value,
        conversations: f.conversations,
        with_buyer_message: f.with_buyer_message,
        involvement: f.involvement(),
        automation: f.automation(),
        first_response: f.first_response,
        first_response_ai: f.first_response_ai,
        first_response_human: f.first_response_human,
        time_to_human: f.time_to_human,
        drafts_offered: drafts.offered,
        drafts_sent_unchanged: drafts.sent_unchanged,
        drafts_edited: drafts.edited,
        edit_distance_p50: drafts.edit_distance_p50,
        ai_answers: follow.ai_answers,
        ai_answers_asked_again: follow.asked_again,
        satisfaction_score: quality::satisfaction(group).score,
    }
}

/// One conversation the resolution figure counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Counted {
    #[serde(flatten)]
    pub row: ResolutionRow,
    pub resolved: bool,
    pub resolved_by_ai_alone: bool,
}

/// The resolution figure with everything needed to recompute it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolution {
    pub rule: &'static str,
    pub sql: &'static str,
    pub counted: usize,
    pub resolved: usize,
    pub resolved_by_ai_alone: usize,
    pub rate: Option<f64>,
    pub ai_alone_rate: Option<f64>,
    pub conversations: Vec<Counted>,
}

/// Applies [`RESOLUTION_RULE`] to the rows of [`RESOLUTION_SQL`] that the
/// filter selects (`selected`: the conversations the rest of the report
/// covers; the rows are the tenant's whole period).
pub fn resolution(rows: Vec<ResolutionRow>, selected: &[ConversationId]) -> Resolution {
    let conversations: Vec<Counted> = rows
        .into_iter()
        .filter(|r| selected.contains(&r.conversation_id))
        .map(|row| {
            let resolved = row.status == "resolved";
            Counted {
                resolved_by_ai_alone: resolved && row.ai_replies > 0 && row.human_replies == 0,
                resolved,
                row,
            }
        })
        .collect();
    let counted = conversations.len();
    let resolved = conversations.iter().filter(|c| c.resolved).count();
    let alone = conversations
        .iter()
        .filter(|c| c.resolved_by_ai_alone)
        .count();
    let rate = |part: usize| (counted > 0).then(|| part as f64 / counted as f64);
    Resolution {
        rule: RESOLUTION_RULE,
        sql: RESOLUTION_SQL,
        counted,
        resolved,
        resolved_by_ai_alone: alone,
        rate: rate(resolved),
        ai_alone_rate: rate(alone),
        conversations,
    }
}

/// One conversation of a report with its tags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaggedConversation {
    pub id: ConversationId,
    pub shop: String,
    pub platform: String,
    pub created_at: DateTime<Utc>,
    pub language: Option<String>,
    pub intent: Option<String>,
    pub resolved: bool,
    pub satisfaction: Option<&'static str>,
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub filter: Filter,
    pub figures: Figures,
    pub drafts: DraftFigures,
    pub follow_ups: FollowUpFigures,
    pub satisfaction: SatisfactionFigures,
    /// `all`, then one row per language and one per intent.
    pub rows: Vec<Row>,
    /// Tags over the selected conversations, most frequent first.
    pub tags: Vec<(String, usize)>,
    pub conversations: Vec<TaggedConversation>,
}

/// The report over the conversations `filter` selects, with people's tag
/// edits applied. `conversations` may hold more than the filter's period.
pub fn report(
    conversations: &[ConversationFacts],
    edits: &[TagEdit],
    filter: &Filter,
    now: DateTime<Utc>,
) -> Report {
    let edits = edits_by_conversation(edits);
    let mut selected = Vec::new();
    let mut listed = Vec::new();
    let mut tag_counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in conversations {
        let tags = effective_tags(c, edits.get(&c.id));
        if !filter.selects(c, &tags) {
            continue;
        }
        for tag in &tags {
            *tag_counts.entry(tag.to_string()).or_default() += 1;
        }
        listed.push(TaggedConversation {
            id: c.id,
            shop: c.shop.to_string(),
            platform: c.platform.to_string(),
            created_at: c.created_at,
            language: c.language.clone(),
            intent: c.intent.clone(),
            resolved: c.resolved,
            satisfaction: quality::signal(c).map(|s| s.as_str()),
            tags: tags.into_iter().collect(),
        });
        selected.push(c);
    }
    let mut rows = vec![row("all", "all".into(), &selected, now)];
    for (dimension, key) in [
        (
            "language",
            (|c: &ConversationFacts| c.language.clone()) as fn(&_) -> _,
        ),
        ("intent", |c: &ConversationFacts| c.intent.clone()),
    ] {
        let mut groups: BTreeMap<String, Vec<&ConversationFacts>> = BTreeMap::new();
        for c in &selected {
            groups
                .entry(key(c).unwrap_or_else(|| "unknown".into()))
                .or_default()
                .push(c);
        }
        rows.extend(
            groups
                .into_iter()
                .map(|(value, group)| row(dimension, value, &group, now)),
        );
    }
    Report {
        filter: filter.clone(),
        figures: compute_refs(&selected, now),
        drafts: quality::drafts(&selected),
        follow_ups: quality::follow_ups(&selected),
        satisfaction: quality::satisfaction(&selected),
        rows,
        tags: ranked(tag_counts),
        conversations: listed,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::domain::{Author, Direction, MessageId};
    use crate::store::desk::{DecisionFact, MessageFact, StatusFact};

    fn at(minute: i64) -> DateTime<Utc> {
        "2026-11-21T10:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::minutes(minute)
    }

    struct Build(ConversationFacts);

    impl Build {
        fn new(shop: &str, platform: Platform, lang: &str, intent: &str, start: i64) -> Build {
            Build(ConversationFacts {
                id: ConversationId::new(),
                shop: ShopKey::parse(shop).unwrap(),
                platform,
                resolved: false,
                created_at: at(start),
                language: Some(lang.into()),
                intent: Some(intent.into()),
                messages: vec![],
                decisions: vec![],
                status_changes: vec![],
            })
        }

        fn say(mut self, direction: Direction, author: Author, minute: i64, text: &str) -> Self {
            self.0.messages.push(MessageFact {
                id: MessageId::new(),
                direction,
                author,
                at: at(minute),
                text: text.into(),
            });
            self
        }

        /// A decision on the last message, `minute` after the start.
        fn decide(mut self, minute: i64, edit: impl FnOnce(&mut DecisionFact)) -> Self {
            let mut d = DecisionFact {
                message_id: self.0.messages.last().map(|m| m.id),
                layer: 1,
                action: "send".into(),
                at: at(minute),
                language: self.0.language.clone(),
                intent: self.0.intent.clone(),
                ..DecisionFact::default()
            };
            edit(&mut d);
            self.0.decisions.push(d);
            self
        }

        fn status(mut self, minute: i64, status: &str) -> Self {
            self.0.status_changes.push(StatusFact {
                at: at(minute),
                status: status.into(),
            });
            self.0.resolved = status == "resolved";
            self
        }
    }

    use Author::{Agent, Ai, Buyer};
    use Direction::{Inbound, Outbound};

    /// The fixed history the figures below are worked out from by hand:
    /// A. en, product question; the AI answers at 1 min; the buyer asks
    ///    again at 5 (repeated, handed over); an agent answers at 20;
    ///    resolved.
    /// B. th, size; a draft an agent sends unchanged at 4; the buyer
    ///    thanks at 10 and the AI answers at 11.
    /// C. en, size; a draft "abcd" an agent sends as "abcx" at 6;
    ///    resolved at 7 and set open again at 9.
    /// D. th, order status, the next day; the AI answers after 2 min, the
    ///    buyer is pleased; resolved.
    fn history() -> Vec<ConversationFacts> {
        let a = Build::new("demo-shopee", Platform::Shopee, "en", "product_specs", 0)
            .say(Inbound, Buyer, 0, "power bank on a plane?")
            .decide(0, |d| d.entities = vec![("sku".into(), "PWR-10K".into())])
            .say(Outbound, Ai, 1, "Yes, in hand luggage.")
            .say(Inbound, Buyer, 5, "but can I take it on the plane?")
            .decide(5, |d| {
                d.layer = 3;
                d.action = "handoff".into();
                d.repeated = true;
                d.reasons = vec!["repeated".into()];
            })
            .say(Outbound, Agent, 20, "Yes: up to 100 Wh in the cabin.")
            .status(21, "resolved")
            .0;
        let b = Build::new("demo-lazada", Platform::Lazada, "th", "size_fit", 0)
            .say(Inbound, Buyer, 0, "ไซซ์ไหนดีคะ")
            .decide(0, |d| {
                d.layer = 2;
                d.action = "draft".into();
                d.draft = Some("ไซซ์ M พอดีค่ะ".into());
                d.reasons = vec!["mode_suggest".into()];
            })
            .say(Outbound, Agent, 4, "ไซซ์ M  พอดีค่ะ")
            .say(Inbound, Buyer, 10, "ขอบคุณค่ะ")
            .decide(10, |d| d.intent = Some("thanks".into()))
            .say(Outbound, Ai, 11, "ยินดีค่ะ")
            .0;
        let c = Build::new("demo-shopee", Platform::Shopee, "en", "size_fit", 0)
            .say(Inbound, Buyer, 0, "which size?")
            .decide(0, |d| {
                d.layer = 2;
                d.action = "draft".into();
                d.draft = Some("abcd".into());
                d.reasons = vec!["low_confidence".into()];
            })
            .say(Outbound, Agent, 6, "abcx")
            .status(7, "resolved")
            .status(9, "open")
            .0;
        let d = Build::new(
            "demo-tiktok",
            Platform::Tiktok,
            "th",
            "order_status",
            24 * 60,
        )
        .say(Inbound, Buyer, 24 * 60, "พัสดุถึงไหนแล้ว SPE-1")
        .decide(24 * 60, |d| {
            d.sentiment = Some("positive".into());
            d.entities = vec![("order_number".into(), "SPE-1".into())];
        })
        .say(Outbound, Ai, 24 * 60 + 2, "กำลังจัดส่งค่ะ")
        .status(24 * 60 + 3, "resolved")
        .0;
        vec![a, b, c, d]
    }

    fn everything() -> Filter {
        Filter {
            since: at(-60),
            until: at(60 * 48),
            shop: None,
            platform: None,
            language: None,
            intent: None,
            tag: None,
        }
    }

    fn tag(raw: &str) -> Tag {
        Tag::parse(raw).unwrap()
    }

    fn edit(c: &ConversationFacts, raw: &str, present: bool, minute: i64) -> TagEdit {
        TagEdit {
            conversation_id: c.id,
            tag: tag(raw),
            present,
            edited_by: "agent".into(),
            edited_at: at(minute),
        }
    }

    #[test]
    fn report_matches_the_hand_computed_figures() {
        let h = history();
        let r = report(&h, &[], &everything(), at(60 * 50));
        let f = &r.figures;
        assert_eq!((f.conversations, f.with_buyer_message), (4, 4));
        assert_eq!(f.involvement(), Some(1.0));
        // Only D: AI replies alone, resolved.
        assert_eq!(f.automation(), Some(0.25));
        // First replies 60 s (A, AI), 240 s (B, agent), 360 s (C, agent),
        // 120 s (D, AI): nearest rank p50 120, p90 360.
        let frt = f.first_response.unwrap();
        assert_eq!((frt.p50_secs, frt.p90_secs), (120.0, 360.0));
        let ai = f.first_response_ai.unwrap();
        assert_eq!((ai.count, ai.p50_secs, ai.p90_secs), (2, 60.0, 120.0));
        let human = f.first_response_human.unwrap();
        assert_eq!((human.p50_secs, human.p90_secs), (240.0, 360.0));
        // A handed over at 5, answered by a person at 20.
        assert_eq!(f.time_to_human.unwrap().p50_secs, 900.0);
        assert_eq!(f.escalation_reasons.len(), 3);
        // B sent unchanged (white space aside), C edited by 1 of 4.
        assert_eq!(
            r.drafts,
            DraftFigures {
                offered: 2,
                sent_unchanged: 1,
                edited: 1,
                unanswered: 0,
                edit_distance_p50: Some(0.25),
                edit_distance_mean: Some(0.25),
            }
        );
        // AI answers: A at 1 (asked again at 5), B at 11, D.
        assert_eq!((r.follow_ups.ai_answers, r.follow_ups.asked_again), (3, 1));
        // A dissatisfied (asked again), B satisfied (thanks), C neutral,
        // D satisfied (positive): (2 - 1) / 4.
        let s = &r.satisfaction;
        assert_eq!((s.satisfied, s.neutral, s.dissatisfied), (2, 1, 1));
        assert_eq!(s.score, Some(0.25));
        let trend: Vec<_> = s.trend.iter().map(|d| (d.day.as_str(), d.score)).collect();
        assert_eq!(trend, vec![("2026-11-21", 0.0), ("2026-11-22", 1.0)]);
    }

    #[test]
    fn rows_break_the_figures_down_per_language_and_intent() {
        let r = report(&history(), &[], &everything(), at(60 * 50));
        let keys: Vec<_> = r
            .rows
            .iter()
            .map(|r| (r.dimension, r.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("all", "all"),
                ("language", "en"),
                ("language", "th"),
                ("intent", "order_status"),
                ("intent", "product_specs"),
                ("intent", "size_fit"),
            ]
        );
        let th = &r.rows[2];
        // B (agent first, 240 s) and D (AI, 120 s, automated).
        assert_eq!((th.conversations, th.automation), (2, Some(0.5)));
        assert_eq!(th.first_response.unwrap().p90_secs, 240.0);
        assert_eq!((th.drafts_offered, th.drafts_sent_unchanged), (1, 1));
        assert_eq!(th.satisfaction_score, Some(1.0));
    }

    #[test]
    fn outcomes_and_mentions_become_tags() {
        let h = history();
        let r = report(&h, &[], &everything(), at(60 * 50));
        let tags_of =
            |i: usize| -> Vec<&str> { r.conversations[i].tags.iter().map(Tag::as_str).collect() };
        assert_eq!(
            tags_of(0),
            vec![
                "intent:product_specs",
                "lang:en",
                "outcome:handed_over",
                "outcome:resolved",
                "platform:shopee",
                "product:pwr-10k",
                "shop:demo-shopee"
            ]
        );
        assert!(tags_of(1).contains(&"outcome:draft_sent_as_is"));
        assert!(tags_of(1).contains(&"intent:thanks"));
        assert!(tags_of(2).contains(&"outcome:draft_edited"));
        assert!(tags_of(2).contains(&"outcome:reopened"));
        assert!(!tags_of(2).contains(&"outcome:resolved"));
        assert!(tags_of(3).contains(&"outcome:answered_by_ai"));
        assert!(tags_of(3).contains(&"order:spe-1"));
        // Six tags on two conversations each; ties go by name.
        assert_eq!(r.tags[0], ("intent:size_fit".to_owned(), 2));
    }

    #[test]
    fn people_s_tag_edits_win_and_filter_reports() {
        let h = history();
        let edits = vec![
            edit(&h[1], "intent:thanks", false, 30),
            edit(&h[2], "vip", true, 30),
            edit(&h[2], "vip", false, 20),
        ];
        let r = report(&h, &edits, &everything(), at(60 * 50));
        assert!(!r.conversations[1].tags.contains(&tag("intent:thanks")));
        assert!(r.conversations[2].tags.contains(&tag("vip")));
        let only_vip = Filter {
            tag: Some(tag("vip")),
            ..everything()
        };
        let r = report(&h, &edits, &only_vip, at(60 * 50));
        assert_eq!(r.conversations.len(), 1);
        assert_eq!(r.conversations[0].id, h[2].id);
    }

    #[test]
    fn filters_select_by_period_shop_platform_language_and_intent() {
        let h = history();
        let count = |filter: Filter| report(&h, &[], &filter, at(60 * 50)).figures.conversations;
        assert_eq!(
            count(Filter {
                until: at(60),
                ..everything()
            }),
            3
        );
        assert_eq!(
            count(Filter {
                since: at(60),
                ..everything()
            }),
            1
        );
        let shop = Some(ShopKey::parse("demo-shopee").unwrap());
        assert_eq!(
            count(Filter {
                shop,
                ..everything()
            }),
            2
        );
        let platform = Some(Platform::Tiktok);
        assert_eq!(
            count(Filter {
                platform,
                ..everything()
            }),
            1
        );
        let language = Some("th".to_owned());
        assert_eq!(
            count(Filter {
                language,
                ..everything()
            }),
            2
        );
        let intent = Some("size_fit".to_owned());
        assert_eq!(
            count(Filter {
                intent,
                ..everything()
            }),
            2
        );
    }

    #[test]
    fn unanswerable_questions_are_gaps_with_the_reply_that_resolved_them() {
        use crate::figures::gaps::{gap_messages, GapWhy};
        let mut h = history();
        h[0].decisions[0].top_similarity = Some(0.5);
        h[2].decisions[0].reasons.push("no_grounded_answer".into());
        // B's draft was sent unchanged and D's intent is answered from
        // records: neither is a gap.
        h[3].decisions[0].top_similarity = Some(0.1);
        let refs: Vec<&ConversationFacts> = h.iter().collect();
        let gaps = gap_messages(&refs);
        let seen: Vec<_> = gaps
            .iter()
            .map(|g| (g.text.as_str(), g.why, g.resolved_by.as_deref()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    "power bank on a plane?",
                    GapWhy::WeakRetrieval,
                    Some("Yes: up to 100 Wh in the cabin.")
                ),
                ("which size?", GapWhy::NoGroundedAnswer, Some("abcx")),
            ]
        );
    }

    #[test]
    fn resolution_applies_the_published_rule_to_the_selected_rows() {
        let h = history();
        let rows: Vec<ResolutionRow> = h
            .iter()
            .map(|c| ResolutionRow {
                conversation_id: c.id,
                shop: c.shop.to_string(),
                platform: c.platform.to_string(),
                status: if c.resolved { "resolved" } else { "open" }.into(),
                created_at: c.created_at,
                buyer_messages: 1,
                ai_replies: c.messages.iter().filter(|m| m.author == Ai).count() as i64,
                human_replies: c.messages.iter().filter(|m| m.author == Agent).count() as i64,
            })
            .collect();
        let all: Vec<_> = h.iter().map(|c| c.id).collect();
        let r = resolution(rows.clone(), &all);
        // A and D resolved; only D without a person.
        assert_eq!((r.counted, r.resolved, r.resolved_by_ai_alone), (4, 2, 1));
        assert_eq!((r.rate, r.ai_alone_rate), (Some(0.5), Some(0.25)));
        assert!(r.sql.contains("c.tenant_id = ?1"));
        let r = resolution(rows, &all[..1]);
        assert_eq!((r.counted, r.resolved, r.conversations.len()), (1, 1, 1));
    }
}
