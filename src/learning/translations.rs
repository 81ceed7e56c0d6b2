//! An agent's edit of a machine translation becomes the approved
//! translation: when the draft a person answered was kedai's machine
//! translation of a seller's FAQ answer and the person sent it changed,
//! in their own words (not through the workbench's translation), their
//! text is stored as that translation, approved, so the next buyer who
//! asks in that language gets the person's words. Knows nothing of HTTP.

use serde_json::Value;

use super::LearningError;
use crate::domain::{ConversationId, TenantId};
use crate::store::translations::{TranslationKey, TranslationReview, TranslationStatus};
use crate::store::{KbKind, Store};

/// How many stored translations are looked through for the draft's.
const SEARCHED: u32 = 1000;

fn same_text(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// Approves `sent` as the translation behind the conversation's latest
/// draft when that draft was a machine translation and `sent` differs
/// from it; returns the key it approved, `None` when there was nothing to
/// learn.
pub async fn approve_edited_translation(
    store: &dyn Store,
    tenant: TenantId,
    conversation: ConversationId,
    sent: &str,
    actor: &str,
) -> Result<Option<TranslationKey>, LearningError> {
    let decisions = store.decisions(tenant, conversation).await?;
    let Some(latest) = decisions.last() else {
        return Ok(None);
    };
    let trace = &latest.trace;
    let answer = &trace["answer"];
    let (Some(draft), Some("machine_translation")) =
        (latest.draft.as_deref(), answer["provenance"].as_str())
    else {
        return Ok(None);
    };
    if same_text(draft, sent) || sent.trim().is_empty() {
        return Ok(None);
    }
    let entry = answer["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|s| s.strip_prefix("faq:"));
    let Some(entry) = entry else {
        return Ok(None);
    };
    let stored = store.list_translations(tenant, None, SEARCHED).await?;
    let Some(translation) = stored.into_iter().find(|t| {
        t.key.kind == KbKind::Faq
            && t.key.entry_id == entry
            && t.status != TranslationStatus::Approved
            && same_text(&t.text, draft)
    }) else {
        return Ok(None);
    };
    store
        .review_translation(
            tenant,
            &translation.key,
            &TranslationReview::Approve {
                text: Some(sent.trim().to_owned()),
            },
            actor,
        )
        .await?;
    crate::metrics::learning_event("translation_approved");
    Ok(Some(translation.key))
}
