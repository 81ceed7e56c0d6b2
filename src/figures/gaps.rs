//! Knowledge gaps: buyer questions the knowledge base could not answer
//! (no grounded answer, a weak best retrieval hit, or a draft a person had
//! to rewrite), grouped by meaning from their e5 vectors, with counts,
//! examples in every language and the replies people resolved them with.
//! Pure: the caller embeds the texts; no I/O, no clock.

use std::collections::BTreeMap;

use serde::Serialize;

use super::quality::{decision_for, edit_distance};
use crate::domain::{Author, ConversationId, Direction};
use crate::store::desk::ConversationFacts;

/// A best retrieval hit below this similarity did not answer the question.
pub const WEAK_RETRIEVAL: f32 = 0.80;
/// A draft edited by at least this normalised distance was rewritten.
pub const HEAVY_EDIT: f64 = 0.5;
/// Two questions whose vectors' cosine reaches this ask the same thing.
pub const SAME_QUESTION: f32 = 0.90;
/// Examples kept per language, and replies per gap.
const EXAMPLES: usize = 3;

/// Intents answered from records or by pleasantries, never by the
/// knowledge base: not gaps.
const NOT_KNOWLEDGE: &[&str] = &["greeting", "thanks", "ask_for_human", "order_status"];

/// Routes that go to a person whatever the knowledge base holds: not
/// gaps either.
const FOR_A_PERSON: &[&str] = &[
    "human_intent",
    "risky_request",
    "angry",
    "annoyed",
    "human_requested",
    "vip",
    "injection_suspected",
    "kill_switch",
    "human_holds",
    "pipeline_failed",
    "learned_route_person",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapWhy {
    NoGroundedAnswer,
    WeakRetrieval,
    DraftRewritten,
}

/// One buyer message the knowledge base could not answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GapMessage {
    pub conversation_id: ConversationId,
    pub text: String,
    pub language: String,
    pub intent: String,
    pub why: GapWhy,
    /// The first reply a person wrote after it.
    pub resolved_by: Option<String>,
}

/// The gap messages of the conversations.
pub fn gap_messages(conversations: &[&ConversationFacts]) -> Vec<GapMessage> {
    let mut out = Vec::new();
    for c in conversations {
        for (i, m) in c.messages.iter().enumerate() {
            if m.direction != Direction::Inbound {
                continue;
            }
            let Some(d) = decision_for(c, m) else {
                continue;
            };
            if d.intent
                .as_deref()
                .is_some_and(|i| NOT_KNOWLEDGE.contains(&i))
                || d.reasons.iter().any(|r| FOR_A_PERSON.contains(&r.as_str()))
            {
                continue;
            }
            // No hit at all counts as the weakest hit, when the answer had
            // to come from knowledge (none found, or only a draft).
            let no_hit = d.top_similarity.is_none()
                && matches!(d.answer_kind.as_deref(), Some("none" | "draft"));
            let person = c.messages[i + 1..]
                .iter()
                .find(|r| r.direction == Direction::Outbound && r.author == Author::Agent);
            let why = if d.reasons.iter().any(|r| r == "no_grounded_answer") {
                Some(GapWhy::NoGroundedAnswer)
            } else if no_hit || d.top_similarity.is_some_and(|s| s < WEAK_RETRIEVAL) {
                Some(GapWhy::WeakRetrieval)
            } else {
                match (&d.draft, person) {
                    (Some(draft), Some(reply))
                        if edit_distance(draft, &reply.text) >= HEAVY_EDIT =>
                    {
                        Some(GapWhy::DraftRewritten)
                    }
                    _ => None,
                }
            };
            if let Some(why) = why {
                out.push(GapMessage {
                    conversation_id: c.id,
                    text: m.text.clone(),
                    language: d.language.clone().unwrap_or_else(|| "unknown".into()),
                    intent: d.intent.clone().unwrap_or_else(|| "unknown".into()),
                    why,
                    resolved_by: person.map(|p| p.text.clone()),
                });
            }
        }
    }
    out
}

/// A group of gap messages asking the same thing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gap {
    /// How many buyer messages asked it.
    pub count: usize,
    /// The message closest to the group's centre, as its name.
    pub question: String,
    /// Up to three examples per language.
    pub examples: BTreeMap<String, Vec<String>>,
    /// Replies people answered it with (up to three, distinct).
    pub resolved_by: Vec<String>,
    pub intents: Vec<(String, usize)>,
    pub why: Vec<(GapWhy, usize)>,
    pub conversations: Vec<ConversationId>,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let n = norm(a) * norm(b);
    if n == 0.0 {
        0.0
    } else {
        dot / n
    }
}

/// Groups messages by meaning: each joins the first group whose centre
/// (the sum of its vectors) it reaches with `min` cosine, or starts one.
/// Deterministic for the same order. Groups come most asked first.
pub fn cluster(messages: Vec<GapMessage>, vectors: &[Vec<f32>], min: f32) -> Vec<Gap> {
    let mut centres: Vec<Vec<f32>> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, v) in vectors.iter().enumerate().take(messages.len()) {
        match centres.iter().position(|c| cosine(c, v) >= min) {
            Some(g) => {
                for (c, x) in centres[g].iter_mut().zip(v) {
                    *c += x;
                }
                members[g].push(i);
            }
            None => {
                centres.push(v.clone());
                members.push(vec![i]);
            }
        }
    }
    let mut gaps: Vec<Gap> = members
        .iter()
        .zip(&centres)
        .map(|(group, centre)| {
            let central = group
                .iter()
                .copied()
                .max_by(|a, b| {
                    cosine(centre, &vectors[*a]).total_cmp(&cosine(centre, &vectors[*b]))
                })
                .unwrap_or(group[0]);
            let mut examples: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut resolved_by: Vec<String> = Vec::new();
            let mut intents = BTreeMap::new();
            let mut why = BTreeMap::new();
            let mut conversations = Vec::new();
            for &i in group {
                let m = &messages[i];
                let list = examples.entry(m.language.clone()).or_default();
                if list.len() < EXAMPLES && !list.contains(&m.text) {
                    list.push(m.text.clone());
                }
                if let Some(reply) = &m.resolved_by {
                    if resolved_by.len() < EXAMPLES && !resolved_by.contains(reply) {
                        resolved_by.push(reply.clone());
                    }
                }
                *intents.entry(m.intent.clone()).or_insert(0) += 1;
                *why.entry(m.why).or_insert(0) += 1;
                if !conversations.contains(&m.conversation_id) {
                    conversations.push(m.conversation_id);
                }
            }
            Gap {
                count: group.len(),
                question: messages[central].text.clone(),
                examples,
                resolved_by,
                intents: super::ranked(intents),
                why: why.into_iter().collect(),
                conversations,
            }
        })
        .collect();
    gaps.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.question.cmp(&b.question))
    });
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(text: &str, lang: &str, reply: Option<&str>) -> GapMessage {
        GapMessage {
            conversation_id: ConversationId::new(),
            text: text.into(),
            language: lang.into(),
            intent: "product_specs".into(),
            why: GapWhy::WeakRetrieval,
            resolved_by: reply.map(str::to_owned),
        }
    }

    #[test]
    fn questions_group_by_meaning_with_examples_per_language_and_replies() {
        let messages = vec![
            gap("power bank on a plane?", "en", Some("Yes, under 100 Wh.")),
            gap("do you ship to Brunei?", "en", None),
            gap("boleh bawa powerbank ke pesawat?", "id", Some("Boleh kak.")),
            gap(
                "can I fly with the power bank",
                "en",
                Some("Yes, under 100 Wh."),
            ),
        ];
        // Two directions: "plane" and "shipping".
        let vectors = vec![
            vec![1.0, 0.05],
            vec![0.0, 1.0],
            vec![0.98, 0.1],
            vec![0.99, 0.0],
        ];
        let gaps = cluster(messages, &vectors, SAME_QUESTION);
        assert_eq!(gaps.len(), 2);
        assert_eq!(gaps[0].count, 3);
        assert_eq!(gaps[0].examples["en"].len(), 2);
        assert_eq!(
            gaps[0].examples["id"],
            vec!["boleh bawa powerbank ke pesawat?"]
        );
        assert_eq!(
            gaps[0].resolved_by,
            vec!["Yes, under 100 Wh.", "Boleh kak."]
        );
        assert_eq!(gaps[0].conversations.len(), 3);
        assert_eq!(gaps[1].question, "do you ship to Brunei?");
        assert!(gaps[1].resolved_by.is_empty());
    }

    #[test]
    fn nothing_to_group_is_no_gap() {
        assert!(cluster(vec![], &[], SAME_QUESTION).is_empty());
    }
}
