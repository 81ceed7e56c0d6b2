//! The tags kedai puts on every conversation, derived from its timeline
//! (intent, language, platform, shop, orders and products mentioned,
//! outcomes), and the tags people see once their own edits are applied.
//! Pure; no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use super::quality::draft_fates;
use crate::domain::{Author, ConversationId, Direction};
use crate::store::desk::ConversationFacts;
use crate::store::reports::{Tag, TagEdit};

/// One outcome of a conversation; several may hold at once (handed over,
/// then resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// AI replies and no reply by a person.
    AnsweredByAi,
    /// A person sent a draft as it was.
    DraftSentAsIs,
    /// A person edited a draft before sending.
    DraftEdited,
    /// A decision handed the conversation to a person (layer 3).
    HandedOver,
    /// The conversation's status is `resolved`.
    Resolved,
    /// Someone set the status back from `resolved`.
    Reopened,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::AnsweredByAi => "answered_by_ai",
            Outcome::DraftSentAsIs => "draft_sent_as_is",
            Outcome::DraftEdited => "draft_edited",
            Outcome::HandedOver => "handed_over",
            Outcome::Resolved => "resolved",
            Outcome::Reopened => "reopened",
        }
    }
}

pub fn outcomes(c: &ConversationFacts) -> BTreeSet<Outcome> {
    let mut out = BTreeSet::new();
    let replies = |author| {
        c.messages
            .iter()
            .filter(move |m| m.direction == Direction::Outbound && m.author == author)
    };
    if replies(Author::Ai).next().is_some() && replies(Author::Agent).next().is_none() {
        out.insert(Outcome::AnsweredByAi);
    }
    for fate in draft_fates(c) {
        match fate.distance {
            Some(d) if d <= 0.0 => out.insert(Outcome::DraftSentAsIs),
            Some(_) => out.insert(Outcome::DraftEdited),
            None => false,
        };
    }
    if c.decisions.iter().any(|d| d.layer == 3) {
        out.insert(Outcome::HandedOver);
    }
    if c.resolved {
        out.insert(Outcome::Resolved);
    }
    let mut was_resolved = false;
    for change in &c.status_changes {
        if change.status == "resolved" {
            was_resolved = true;
        } else if was_resolved {
            out.insert(Outcome::Reopened);
        }
    }
    out
}

/// The tags kedai derives for a conversation.
pub fn auto_tags(c: &ConversationFacts) -> BTreeSet<Tag> {
    let mut tags = BTreeSet::new();
    let mut add = |kind: &str, value: &str| {
        if let Some(tag) = Tag::derived(kind, value) {
            tags.insert(tag);
        }
    };
    add("platform", &c.platform.to_string());
    add("shop", c.shop.as_str());
    for d in &c.decisions {
        if let Some(intent) = &d.intent {
            add("intent", intent);
        }
        if let Some(lang) = &d.language {
            add("lang", lang);
        }
        for (kind, value) in &d.entities {
            match kind.as_str() {
                "order_number" | "tracking_number" => add("order", value),
                "sku" => add("product", value),
                _ => {}
            }
        }
    }
    for outcome in outcomes(c) {
        add("outcome", outcome.as_str());
    }
    tags
}

/// The latest edit per conversation and tag.
pub fn edits_by_conversation(
    edits: &[TagEdit],
) -> BTreeMap<ConversationId, BTreeMap<&Tag, &TagEdit>> {
    let mut by: BTreeMap<ConversationId, BTreeMap<&Tag, &TagEdit>> = BTreeMap::new();
    for edit in edits {
        let slot = by.entry(edit.conversation_id).or_default();
        match slot.get(&edit.tag) {
            Some(old) if old.edited_at > edit.edited_at => {}
            _ => {
                slot.insert(&edit.tag, edit);
            }
        }
    }
    by
}

/// A conversation's tags as people see them: kedai's, plus those people
/// added, less those they took off.
pub fn effective_tags(
    c: &ConversationFacts,
    edits: Option<&BTreeMap<&Tag, &TagEdit>>,
) -> BTreeSet<Tag> {
    let mut tags = auto_tags(c);
    for (tag, edit) in edits.into_iter().flatten() {
        if edit.present {
            tags.insert((*tag).clone());
        } else {
            tags.remove(*tag);
        }
    }
    tags
}
