//! What the reports keep and read besides conversations' timelines
//! (those are [`DeskStore::conversation_facts`](super::DeskStore)): agents'
//! edits of conversation tags, and the resolution figure's rows, read by
//! the one published SQL statement [`RESOLUTION_SQL`] so that a seller can
//! run the same query on their own database and get the same list.
//!
//! Every query takes a [`TenantId`]. Knows nothing of HTTP, templates or
//! how figures are computed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::domain::{ConversationId, TenantId, ValidationError};

/// The longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;

/// A conversation tag: lower case letters and digits of any script, with
/// `_`, `-`, `.` and `:` (kedai's own tags read `intent:size_fit`,
/// `outcome:handed_over`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub fn parse(raw: &str) -> Result<Tag, ValidationError> {
        let tag = raw.trim().to_lowercase();
        if tag.is_empty() {
            return Err(ValidationError::new("tag", "must not be empty"));
        }
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(ValidationError::new(
                "tag",
                format!(
                    "must be at most {MAX_TAG_CHARS} characters, got {}",
                    tag.chars().count()
                ),
            ));
        }
        if let Some(bad) = tag.chars().find(|c| !tag_char(*c)) {
            return Err(ValidationError::new(
                "tag",
                format!("may hold letters, digits, '_', '-', '.' and ':' only, got {bad:?}"),
            ));
        }
        Ok(Tag(tag))
    }

    /// A tag kedai derives itself: `kind:value`, the value cut to fit.
    pub fn derived(kind: &str, value: &str) -> Option<Tag> {
        let value: String = value
            .trim()
            .to_lowercase()
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .filter(|c| *c != ':' && tag_char(*c))
            .take(MAX_TAG_CHARS.saturating_sub(kind.len() + 1))
            .collect();
        (!value.is_empty())
            .then(|| Tag::parse(&format!("{kind}:{value}")).ok())
            .flatten()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Letters and digits, the combining marks of scripts such as Thai, and
/// `_ - . :`; no white space, control or format characters, and no other
/// ASCII punctuation.
fn tag_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c, '_' | '-' | '.' | ':')
        || (!c.is_ascii()
            && !c.is_whitespace()
            && !c.is_control()
            && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}'))
}

/// A person's edit of a conversation's tags: the latest one per tag wins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TagEdit {
    pub conversation_id: ConversationId,
    pub tag: Tag,
    /// `true`: added (or kept); `false`: taken off.
    pub present: bool,
    pub edited_by: String,
    pub edited_at: DateTime<Utc>,
}

/// The rule of the resolution figure, as published.
pub const RESOLUTION_RULE: &str = "A conversation is counted when it was created in the period \
     and has at least one buyer message. It is resolved when its status is `resolved`. The \
     resolution rate is resolved over counted; resolved by the AI alone are the resolved \
     conversations with at least one AI reply and no reply written by a person.";

/// The one statement behind the resolution figure: every counted
/// conversation with what the rule reads. Parameters: `?1` the tenant id,
/// `?2` and `?3` the period's start (inclusive) and end (exclusive) as
/// RFC 3339 UTC text with microseconds (`2026-12-01T00:00:00.000000Z`).
/// Plain SQL that SQLite and PostgreSQL both run (PostgreSQL spells the
/// parameters `$1`, `$2`, `$3`).
pub const RESOLUTION_SQL: &str = "\
SELECT c.id, s.shop_key, s.platform, c.status, c.created_at,
  (SELECT COUNT(*) FROM messages m
    WHERE m.conversation_id = c.id AND m.direction = 'inbound') AS buyer_messages,
  (SELECT COUNT(*) FROM messages m
    WHERE m.conversation_id = c.id AND m.direction = 'outbound' AND m.author = 'ai') AS ai_replies,
  (SELECT COUNT(*) FROM messages m
    WHERE m.conversation_id = c.id AND m.direction = 'outbound' AND m.author = 'agent') AS human_replies
FROM conversations c JOIN shops s ON s.id = c.shop_id
WHERE c.tenant_id = ?1 AND c.created_at >= ?2 AND c.created_at < ?3
  AND EXISTS (SELECT 1 FROM messages m
    WHERE m.conversation_id = c.id AND m.direction = 'inbound')
ORDER BY c.created_at, c.id";

/// One row of [`RESOLUTION_SQL`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolutionRow {
    pub conversation_id: ConversationId,
    pub shop: String,
    pub platform: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub buyer_messages: i64,
    pub ai_replies: i64,
    pub human_replies: i64,
}

#[async_trait]
pub trait ReportStore: Send + Sync + 'static {
    /// Tag edits of conversations created at or after `since`.
    async fn tag_edits(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<Vec<TagEdit>, StoreError>;

    /// Tag edits of one conversation.
    async fn conversation_tag_edits(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> Result<Vec<TagEdit>, StoreError>;

    /// Adds (`present`) or takes off a tag, with its audit event, in one
    /// transaction. `NotFound` when the tenant has no such conversation.
    async fn edit_tag(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        tag: &Tag,
        present: bool,
        actor: &str,
    ) -> Result<(), StoreError>;

    /// The rows of [`RESOLUTION_SQL`] for the period `[since, until)`.
    async fn resolution_rows(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<ResolutionRow>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_folded_to_lower_case_and_checked() {
        assert_eq!(
            Tag::parse(" Intent:Size_Fit ").unwrap().as_str(),
            "intent:size_fit"
        );
        assert_eq!(Tag::parse("ลูกค้าประจำ").unwrap().as_str(), "ลูกค้าประจำ");
        for bad in [
            "",
            "  ",
            "a b",
            "<script>",
            "x/y",
            "a\u{200b}b",
            &"a".repeat(65),
        ] {
            assert!(Tag::parse(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn derived_tags_keep_only_tag_characters() {
        assert_eq!(
            Tag::derived("order", "SPE-2611 00123").unwrap().as_str(),
            "order:spe-2611_00123"
        );
        assert_eq!(Tag::derived("sku", "<>"), None);
        let long = Tag::derived("product", &"x".repeat(200)).unwrap();
        assert_eq!(long.as_str().chars().count(), MAX_TAG_CHARS);
    }
}
