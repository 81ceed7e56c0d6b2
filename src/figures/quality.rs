//! How good the answers were, read from conversations' timelines: drafts
//! sent as they were or edited (and by how much), AI answers the buyer
//! followed with the same question, and a satisfaction signal inferred
//! from each buyer's last message. Pure; no I/O, no clock.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{Author, Direction};
use crate::store::desk::{ConversationFacts, DecisionFact, MessageFact};

/// Drafts offered to people and what became of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DraftFigures {
    /// Decisions that offered a draft.
    pub offered: usize,
    /// A person's next reply was the draft, letter for letter (white space
    /// aside).
    pub sent_unchanged: usize,
    /// A person's next reply differed from the draft.
    pub edited: usize,
    /// No person has replied after the draft yet.
    pub unanswered: usize,
    /// Edited drafts' normalised edit distance (Levenshtein distance over
    /// characters divided by the longer text's length, 0 to 1): median
    /// and mean.
    pub edit_distance_p50: Option<f64>,
    pub edit_distance_mean: Option<f64>,
}

/// AI answers a buyer followed with the same question.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FollowUpFigures {
    /// AI replies sent.
    pub ai_answers: usize,
    /// AI replies whose next buyer message repeated an earlier question
    /// (the pipeline's `repeated`, by meaning).
    pub asked_again: usize,
}

impl FollowUpFigures {
    pub fn share(&self) -> Option<f64> {
        (self.ai_answers > 0).then(|| self.asked_again as f64 / self.ai_answers as f64)
    }
}

/// What a buyer's last message says of how they feel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Thanks, or positive sentiment.
    Satisfied,
    /// Nothing either way.
    Neutral,
    /// Anger (level 2 or more), negative sentiment, or the same question
    /// asked again.
    Dissatisfied,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Satisfied => "satisfied",
            Signal::Neutral => "neutral",
            Signal::Dissatisfied => "dissatisfied",
        }
    }

    fn score(self) -> f64 {
        match self {
            Signal::Satisfied => 1.0,
            Signal::Neutral => 0.0,
            Signal::Dissatisfied => -1.0,
        }
    }
}

/// The satisfaction signal of a conversation: from the decision on its
/// buyer's last message that was decided; `None` when none was.
pub fn signal(c: &ConversationFacts) -> Option<Signal> {
    let last = c
        .messages
        .iter()
        .rev()
        .filter(|m| m.direction == Direction::Inbound)
        .find_map(|m| decision_for(c, m))?;
    let negative =
        last.anger >= 2 || last.repeated || last.sentiment.as_deref() == Some("negative");
    let positive =
        last.intent.as_deref() == Some("thanks") || last.sentiment.as_deref() == Some("positive");
    Some(if negative {
        Signal::Dissatisfied
    } else if positive {
        Signal::Satisfied
    } else {
        Signal::Neutral
    })
}

/// One day of the satisfaction trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalDay {
    /// `YYYY-MM-DD`, UTC, of the conversation's start.
    pub day: String,
    pub satisfied: usize,
    pub neutral: usize,
    pub dissatisfied: usize,
    /// Mean of +1 / 0 / -1 over the day's rated conversations.
    pub score: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SatisfactionFigures {
    pub satisfied: usize,
    pub neutral: usize,
    pub dissatisfied: usize,
    /// Mean of +1 / 0 / -1 over rated conversations; `None` without any.
    pub score: Option<f64>,
    /// Per day, oldest first.
    pub trend: Vec<SignalDay>,
}

pub fn satisfaction(conversations: &[&ConversationFacts]) -> SatisfactionFigures {
    let mut days: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let mut all = [0usize; 3];
    for c in conversations {
        let Some(signal) = signal(c) else { continue };
        let slot = signal as usize;
        all[slot] += 1;
        days.entry(c.created_at.format("%Y-%m-%d").to_string())
            .or_default()[slot] += 1;
    }
    let score = |counts: &[usize; 3]| {
        let rated: usize = counts.iter().sum();
        (rated > 0).then(|| {
            (counts[0] as f64 * Signal::Satisfied.score()
                + counts[2] as f64 * Signal::Dissatisfied.score())
                / rated as f64
        })
    };
    SatisfactionFigures {
        satisfied: all[0],
        neutral: all[1],
        dissatisfied: all[2],
        score: score(&all),
        trend: days
            .into_iter()
            .map(|(day, counts)| SignalDay {
                score: score(&counts).unwrap_or(0.0),
                day,
                satisfied: counts[0],
                neutral: counts[1],
                dissatisfied: counts[2],
            })
            .collect(),
    }
}

/// The decision taken on a buyer message.
pub fn decision_for<'a>(c: &'a ConversationFacts, m: &MessageFact) -> Option<&'a DecisionFact> {
    c.decisions.iter().find(|d| d.message_id == Some(m.id))
}

/// White space collapsed, so a reply differing only in spacing counts as
/// the draft unchanged.
fn normalised(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Levenshtein distance over characters over the longer text's length.
pub fn edit_distance(draft: &str, sent: &str) -> f64 {
    let (a, b) = (normalised(draft), normalised(sent));
    let longer = a.chars().count().max(b.chars().count());
    if longer == 0 {
        return 0.0;
    }
    strsim::levenshtein(&a, &b) as f64 / longer as f64
}

/// What became of one draft: the person's reply after it, when there is
/// one, and its edit distance from the draft.
pub struct DraftFate<'a> {
    pub draft: &'a str,
    pub reply: Option<&'a MessageFact>,
    pub distance: Option<f64>,
}

/// Each drafted decision of a conversation with the first reply a person
/// wrote after it.
pub fn draft_fates(c: &ConversationFacts) -> Vec<DraftFate<'_>> {
    c.decisions
        .iter()
        .filter_map(|d| Some((d, d.draft.as_deref()?)))
        .map(|(d, draft)| {
            let reply = c.messages.iter().find(|m| {
                m.direction == Direction::Outbound && m.author == Author::Agent && m.at >= d.at
            });
            DraftFate {
                draft,
                reply,
                distance: reply.map(|r| edit_distance(draft, &r.text)),
            }
        })
        .collect()
}

pub fn drafts(conversations: &[&ConversationFacts]) -> DraftFigures {
    let mut figures = DraftFigures::default();
    let mut distances = Vec::new();
    for fate in conversations.iter().flat_map(|c| draft_fates(c)) {
        figures.offered += 1;
        match fate.distance {
            None => figures.unanswered += 1,
            Some(d) if d <= 0.0 => figures.sent_unchanged += 1,
            Some(d) => {
                figures.edited += 1;
                distances.push(d);
            }
        }
    }
    if !distances.is_empty() {
        distances.sort_by(f64::total_cmp);
        figures.edit_distance_mean = Some(distances.iter().sum::<f64>() / distances.len() as f64);
        figures.edit_distance_p50 = Some(super::nearest_rank(&distances, 0.5));
    }
    figures
}

pub fn follow_ups(conversations: &[&ConversationFacts]) -> FollowUpFigures {
    let mut figures = FollowUpFigures::default();
    for c in conversations {
        for (i, m) in c.messages.iter().enumerate() {
            if !(m.direction == Direction::Outbound && m.author == Author::Ai) {
                continue;
            }
            figures.ai_answers += 1;
            let next_buyer = c.messages[i + 1..]
                .iter()
                .find(|n| n.direction == Direction::Inbound);
            if next_buyer
                .and_then(|n| decision_for(c, n))
                .is_some_and(|d| d.repeated)
            {
                figures.asked_again += 1;
            }
        }
    }
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_is_normalised_and_ignores_spacing() {
        assert_eq!(edit_distance("Hello  there", "Hello there"), 0.0);
        assert_eq!(edit_distance("abcd", "abcx"), 0.25);
        assert_eq!(edit_distance("", ""), 0.0);
        assert_eq!(edit_distance("ab", ""), 1.0);
        // Characters, not bytes: one Thai letter changed of four.
        assert_eq!(edit_distance("ขอบคุ", "ขอบคา"), 0.2);
    }
}
