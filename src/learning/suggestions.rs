//! Suggested FAQ entries from knowledge gaps, per tenant: the buyers'
//! questions the knowledge base could not answer are grouped by meaning
//! (the gaps report's clustering), and a group a person answered becomes
//! a suggestion with the buyers' questions as variants and the person's
//! reply as the answer. A person accepts it (optionally edited), which
//! writes the FAQ entry through the knowledge-base service, so it is
//! versioned, audited, indexed and searched like any other, or dismisses
//! it. Nothing is added to the knowledge base without a person accepting
//! it, and one tenant's history never suggests for another. Knows nothing
//! of HTTP or pages.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::faq_trial::{self, FaqTrial};
use super::LearningError;
use crate::domain::TenantId;
use crate::figures::gaps::Gap;
use crate::kb::{Embedder, KbEntry, KbService, Lang};
use crate::store::suggestions::{
    FaqSuggestion, NewFaqSuggestion, SuggestionDecision, SuggestionStatus,
};
use crate::store::users::ShopAccess;
use crate::store::{KbKind, Store};

/// How far back the history is read for gaps to suggest from.
pub const SUGGEST_FROM_DAYS: i64 = 90;
/// Question variants kept per suggestion.
pub const MAX_QUESTIONS: usize = 10;

/// Identifies an answer whatever its spacing or case.
pub fn answer_key(answer: &str) -> String {
    let normal = answer
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    hex::encode(Sha256::digest(normal.as_bytes()))
}

/// The suggestion a gap makes: none when no person answered it. Its
/// questions are the gap's central question, then its examples in every
/// language; its language is the central question's (English when the
/// knowledge base does not support it).
pub fn suggestion_of(gap: &Gap) -> Option<NewFaqSuggestion> {
    let answer = gap.resolved_by.first()?.trim();
    if answer.is_empty() {
        return None;
    }
    let mut questions = vec![gap.question.clone()];
    for example in gap.examples.values().flatten() {
        if questions.len() < MAX_QUESTIONS && !questions.contains(example) {
            questions.push(example.clone());
        }
    }
    let lang = gap
        .examples
        .iter()
        .find(|(_, list)| list.contains(&gap.question))
        .and_then(|(lang, _)| Lang::parse(lang).ok())
        .map_or("en", |l| l.as_str());
    Some(NewFaqSuggestion {
        answer_key: answer_key(answer),
        questions,
        answer: answer.to_owned(),
        lang: lang.to_owned(),
        asked: gap.count as i64,
        conversations: gap.conversations.clone(),
    })
}

/// Finds the tenant's knowledge gaps since `now` less
/// [`SUGGEST_FROM_DAYS`] that a person answered and records them as
/// suggestions (refreshing pending ones); returns how many are new.
pub async fn refresh(
    store: &dyn Store,
    tenant: TenantId,
    embedder: Arc<dyn Embedder>,
    now: DateTime<Utc>,
) -> Result<usize, LearningError> {
    let since = now - Duration::days(SUGGEST_FROM_DAYS);
    let facts = store
        .conversation_facts(tenant, &ShopAccess::All, since)
        .await?;
    let refs: Vec<_> = facts.iter().collect();
    let messages = crate::figures::gaps::gap_messages(&refs);
    let gaps = crate::reports::group_gaps(messages, embedder)
        .await
        .map_err(|e| LearningError::NotReady(e.to_string()))?;
    let mut added = 0;
    for suggestion in gaps.iter().filter_map(suggestion_of) {
        if store.upsert_faq_suggestion(tenant, &suggestion).await? {
            crate::metrics::learning_event("faq_suggested");
            added += 1;
        }
    }
    Ok(added)
}

/// A person's changes to a suggestion before accepting it.
#[derive(Debug, Clone, Default)]
pub struct FaqEdit {
    pub questions: Option<Vec<String>>,
    pub answer: Option<String>,
}

fn pending(suggestion: Option<FaqSuggestion>, id: Uuid) -> Result<FaqSuggestion, LearningError> {
    let suggestion =
        suggestion.ok_or_else(|| LearningError::NotFound(format!("faq suggestion {id}")))?;
    if suggestion.status != SuggestionStatus::Pending {
        return Err(LearningError::Conflict(format!(
            "faq suggestion {id} was already {}",
            suggestion.status.as_str()
        )));
    }
    Ok(suggestion)
}

/// The FAQ entry a suggestion becomes, with a person's edits; invalid
/// edits (no question, an empty answer, too long) are refused.
pub fn entry_of(suggestion: &FaqSuggestion, edit: &FaqEdit) -> Result<KbEntry, LearningError> {
    let questions: Vec<String> = edit
        .questions
        .clone()
        .unwrap_or_else(|| suggestion.questions.clone())
        .into_iter()
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty())
        .collect();
    if questions.is_empty() {
        return Err(LearningError::Invalid(
            "an FAQ entry needs at least one question".into(),
        ));
    }
    let answer = edit
        .answer
        .as_deref()
        .unwrap_or(&suggestion.answer)
        .trim()
        .to_owned();
    if answer.is_empty() {
        return Err(LearningError::Invalid(
            "the answer must not be empty".into(),
        ));
    }
    let simple = suggestion.id.simple().to_string();
    let body = serde_json::json!({
        "id": format!("learned-{}", &simple[simple.len() - 12..]),
        "questions": questions,
        "answer": answer,
        "tags": ["learned"],
        "lang": suggestion.lang,
    });
    KbEntry::from_json(KbKind::Faq, body).map_err(LearningError::Invalid)
}

/// Who accepts a suggestion, for which tenant, and the similarity the
/// reply pipeline answers from an FAQ entry at.
pub struct Accepting<'a> {
    pub store: &'a dyn Store,
    pub kb: &'a KbService,
    pub tenant: TenantId,
    pub actor: &'a str,
    /// `pipeline.faq_min_similarity`.
    pub faq_min_similarity: f32,
}

/// Accepts a pending suggestion: measures the FAQ entry it makes (with
/// `edit`) on the tenant's past questions first and stores the
/// measurement with the suggestion; when a confirmed answer would change,
/// the entry is refused with the reason and the suggestion stays pending
/// (a person may edit it and try again). Otherwise writes the entry
/// through the knowledge-base service, so it is indexed and searched, and
/// records the decision. The suggestion is claimed first, so two people
/// accepting at once make one entry.
pub async fn accept(
    how: &Accepting<'_>,
    id: Uuid,
    edit: &FaqEdit,
) -> Result<(FaqSuggestion, KbEntry, FaqTrial), LearningError> {
    let (store, tenant, actor) = (how.store, how.tenant, how.actor);
    let suggestion = pending(store.faq_suggestion(tenant, id).await?, id)?;
    let entry = entry_of(&suggestion, edit)?;
    let trial = faq_trial::measure(store, how.kb, tenant, &entry, how.faq_min_similarity).await?;
    let stored =
        serde_json::to_value(&trial).map_err(|e| LearningError::Training(e.to_string()))?;
    if !store.record_faq_trial(tenant, id, &stored).await? {
        return Err(LearningError::Conflict(format!(
            "faq suggestion {id} was decided meanwhile"
        )));
    }
    if !trial.promoted {
        crate::metrics::learning_event("faq_refused");
        return Err(LearningError::Refused(format!(
            "the FAQ entry was not added: {}",
            trial.reasons.join("; ")
        )));
    }
    let decision = SuggestionDecision::Accept {
        entry_id: entry.id(),
    };
    if !store
        .decide_faq_suggestion(tenant, id, &decision, actor)
        .await?
    {
        return Err(LearningError::Conflict(format!(
            "faq suggestion {id} was decided meanwhile"
        )));
    }
    if let Err(err) = how.kb.put(tenant, &entry, actor).await {
        store.reopen_faq_suggestion(tenant, id).await?;
        return Err(LearningError::Invalid(format!(
            "the FAQ entry could not be written: {err}"
        )));
    }
    crate::metrics::learning_event("faq_accepted");
    let decided = store.faq_suggestion(tenant, id).await?;
    Ok((decided.unwrap_or(suggestion), entry, trial))
}

/// Dismisses a pending suggestion; nothing is added, and the same answer
/// is not suggested again.
pub async fn dismiss(
    store: &dyn Store,
    tenant: TenantId,
    id: Uuid,
    actor: &str,
) -> Result<FaqSuggestion, LearningError> {
    let suggestion = pending(store.faq_suggestion(tenant, id).await?, id)?;
    if !store
        .decide_faq_suggestion(tenant, id, &SuggestionDecision::Dismiss, actor)
        .await?
    {
        return Err(LearningError::Conflict(format!(
            "faq suggestion {id} was decided meanwhile"
        )));
    }
    crate::metrics::learning_event("faq_dismissed");
    Ok(store
        .faq_suggestion(tenant, id)
        .await?
        .unwrap_or(suggestion))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::ConversationId;

    fn gap(replies: &[&str]) -> Gap {
        let mut examples = BTreeMap::new();
        examples.insert(
            "en".to_owned(),
            vec![
                "can the power bank fly?".to_owned(),
                "power bank on a plane?".to_owned(),
            ],
        );
        examples.insert(
            "id".to_owned(),
            vec!["powerbank boleh ke pesawat?".to_owned()],
        );
        Gap {
            count: 3,
            question: "power bank on a plane?".into(),
            examples,
            resolved_by: replies.iter().map(|r| r.to_string()).collect(),
            intents: vec![],
            why: vec![],
            conversations: vec![ConversationId::new()],
        }
    }

    #[test]
    fn a_gap_a_person_answered_suggests_its_questions_and_the_answer() {
        let s = suggestion_of(&gap(&["Yes, under 100 Wh, in hand luggage.", "Yes."])).unwrap();
        assert_eq!(
            s.questions,
            vec![
                "power bank on a plane?",
                "can the power bank fly?",
                "powerbank boleh ke pesawat?"
            ]
        );
        assert_eq!(s.answer, "Yes, under 100 Wh, in hand luggage.");
        assert_eq!(s.lang, "en");
        assert_eq!(s.asked, 3);
        assert_eq!(
            s.answer_key,
            answer_key("yes,  under 100 wh, in HAND luggage.")
        );
    }

    #[test]
    fn a_gap_nobody_answered_suggests_nothing() {
        assert!(suggestion_of(&gap(&[])).is_none());
        assert!(suggestion_of(&gap(&["   "])).is_none());
    }

    fn pending_suggestion() -> FaqSuggestion {
        let now = Utc::now();
        FaqSuggestion {
            id: Uuid::now_v7(),
            questions: vec!["power bank on a plane?".into()],
            answer: "Yes, under 100 Wh.".into(),
            lang: "en".into(),
            asked: 2,
            conversations: vec![],
            status: SuggestionStatus::Pending,
            entry_id: None,
            decided_by: None,
            decided_at: None,
            created_at: now,
            updated_at: now,
            trial: None,
        }
    }

    #[test]
    fn edits_replace_the_suggestion_and_bad_edits_are_refused() {
        let s = pending_suggestion();
        let KbEntry::Faq(faq) = entry_of(&s, &FaqEdit::default()).unwrap() else {
            panic!("not an faq")
        };
        assert!(faq.id.starts_with("learned-"));
        assert_eq!(faq.answer, "Yes, under 100 Wh.");
        let edit = FaqEdit {
            questions: Some(vec![" can I fly with it? ".into(), "".into()]),
            answer: Some("Yes, up to 100 Wh, carry-on only.".into()),
        };
        let KbEntry::Faq(faq) = entry_of(&s, &edit).unwrap() else {
            panic!("not an faq")
        };
        assert_eq!(faq.questions, vec!["can I fly with it?"]);
        assert_eq!(faq.answer, "Yes, up to 100 Wh, carry-on only.");
        let no_question = FaqEdit {
            questions: Some(vec!["  ".into()]),
            answer: None,
        };
        assert!(matches!(
            entry_of(&s, &no_question),
            Err(LearningError::Invalid(_))
        ));
        let no_answer = FaqEdit {
            questions: None,
            answer: Some(" ".into()),
        };
        assert!(matches!(
            entry_of(&s, &no_answer),
            Err(LearningError::Invalid(_))
        ));
    }
}
