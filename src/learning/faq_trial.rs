//! A new FAQ entry is measured before it goes live: the tenant's past
//! buyer questions are searched with and without the entry (the knowledge
//! base's in-memory trial index, nothing written) and each question's FAQ
//! answer is read with the reply pipeline's rule (the best hit is an FAQ
//! entry whose vector similarity reaches `pipeline.faq_min_similarity`).
//!
//! Two kinds of past questions are read: those **confirmed** (a person
//! sent kedai's draft for them unchanged) and those **asked** that the
//! knowledge base could not answer (the gaps of the last 90 days). The
//! entry goes live only when no confirmed question would be answered
//! differently; the questions that would now find it are listed either
//! way. [`judge`] is pure; [`measure`] reads the store and searches.
//! Knows nothing of HTTP or pages.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::service::confirmed_decisions;
use super::LearningError;
use crate::domain::TenantId;
use crate::kb::{KbEntry, KbService, SearchHit, TrialHit};
use crate::store::users::ShopAccess;
use crate::store::Store;

/// Past questions read per trial, each kind: the most recent ones.
pub const MAX_TRIAL_QUESTIONS: usize = 400;
/// How far back questions that found no answer are read.
pub const ASKED_FROM_DAYS: i64 = 90;

/// Where a past question comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialSource {
    /// A person sent kedai's draft for it unchanged.
    Confirmed,
    /// The knowledge base could not answer it (a knowledge gap).
    Asked,
}

/// A past question to search.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialCase {
    pub text: String,
    pub source: TrialSource,
}

/// A past question whose FAQ answer the entry would change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialChange {
    pub text: String,
    pub source: TrialSource,
    /// The FAQ entry answering it now (`faq:<id>`), if any.
    pub before: Option<String>,
    /// The FAQ entry that would answer it with the new entry, if any.
    pub after: Option<String>,
}

/// The measurement of a new FAQ entry, stored with its suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaqTrial {
    /// The entry measured, `faq:<id>`.
    pub entry: String,
    /// Past questions read: confirmed ones and unanswered ones.
    pub confirmed: usize,
    pub asked: usize,
    /// Past questions that would now be answered by the entry.
    pub finds: Vec<TrialChange>,
    /// Confirmed questions that would be answered differently.
    pub regressions: Vec<TrialChange>,
    /// Whether the entry may go live.
    pub promoted: bool,
    /// Why it may not.
    pub reasons: Vec<String>,
    pub measured_at: DateTime<Utc>,
}

/// The FAQ entry the reply pipeline would answer from, given the best
/// hit (see `pipeline::answer`'s FAQ answer): `faq:<id>`.
pub fn faq_answer(hit: Option<&SearchHit>, min_similarity: f32) -> Option<String> {
    let hit = hit?;
    let answers = hit.kind == crate::store::KbKind::Faq
        && hit.fields["answer"].is_string()
        && hit.dense.is_some_and(|d| d.score >= min_similarity);
    answers.then(|| format!("faq:{}", hit.id))
}

/// Compares each case's FAQ answer without and with the entry `entry`
/// (`faq:<id>`); `hits` are in the order of `cases`.
pub fn judge(
    entry: &str,
    cases: &[TrialCase],
    hits: &[TrialHit],
    min_similarity: f32,
    now: DateTime<Utc>,
) -> FaqTrial {
    let mut finds = Vec::new();
    let mut regressions = Vec::new();
    for (case, hit) in cases.iter().zip(hits) {
        let before = faq_answer(hit.before.as_ref(), min_similarity);
        let after = faq_answer(hit.after.as_ref(), min_similarity);
        if before == after {
            continue;
        }
        let change = TrialChange {
            text: case.text.clone(),
            source: case.source,
            before,
            after,
        };
        if change.after.as_deref() == Some(entry) {
            finds.push(change.clone());
        }
        if case.source == TrialSource::Confirmed {
            regressions.push(change);
        }
    }
    let confirmed = cases
        .iter()
        .filter(|c| c.source == TrialSource::Confirmed)
        .count();
    let mut reasons = Vec::new();
    if !regressions.is_empty() {
        reasons.push(format!(
            "{} of {confirmed} questions people confirmed an answer for would be answered \
             differently with this entry",
            regressions.len()
        ));
    }
    FaqTrial {
        entry: entry.to_owned(),
        confirmed,
        asked: cases.len() - confirmed,
        finds,
        promoted: regressions.is_empty(),
        regressions,
        reasons,
        measured_at: now,
    }
}

/// The tenant's past questions: the confirmed ones (all time) and those
/// the knowledge base could not answer (since [`ASKED_FROM_DAYS`]), each
/// the most recent [`MAX_TRIAL_QUESTIONS`], every text once.
pub async fn cases(
    store: &dyn Store,
    tenant: TenantId,
    now: DateTime<Utc>,
) -> Result<Vec<TrialCase>, LearningError> {
    let facts = store
        .conversation_facts(tenant, &ShopAccess::All, DateTime::<Utc>::UNIX_EPOCH)
        .await?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let confirmed = confirmed_decisions(&facts);
    for case in confirmed.iter().rev().take(MAX_TRIAL_QUESTIONS) {
        if seen.insert(case.text.clone()) {
            out.push(TrialCase {
                text: case.text.clone(),
                source: TrialSource::Confirmed,
            });
        }
    }
    let since = now - Duration::days(ASKED_FROM_DAYS);
    let recent: Vec<_> = facts.iter().filter(|c| c.created_at >= since).collect();
    let asked = crate::figures::gaps::gap_messages(&recent);
    for message in asked.iter().rev().take(MAX_TRIAL_QUESTIONS) {
        if seen.insert(message.text.clone()) {
            out.push(TrialCase {
                text: message.text.clone(),
                source: TrialSource::Asked,
            });
        }
    }
    Ok(out)
}

/// Measures `entry` on the tenant's past questions.
pub async fn measure(
    store: &dyn Store,
    kb: &KbService,
    tenant: TenantId,
    entry: &KbEntry,
    min_similarity: f32,
) -> Result<FaqTrial, LearningError> {
    let now = Utc::now();
    let cases = cases(store, tenant, now).await?;
    let queries = cases.iter().map(|c| c.text.clone()).collect();
    let hits = kb
        .trial(tenant, entry, queries)
        .await
        .map_err(|e| match e {
            crate::kb::KbError::DenseUnavailable => LearningError::NotReady(
                "a new FAQ entry is measured with the embedding model, which is not loaded".into(),
            ),
            other => {
                LearningError::Training(format!("the FAQ entry could not be measured: {other}"))
            }
        })?;
    let id = format!("{}:{}", entry.kind().as_str(), entry.id());
    Ok(judge(&id, &cases, &hits, min_similarity, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kb::ComponentHit;
    use crate::store::KbKind;

    fn hit(id: &str, similarity: f32) -> Option<SearchHit> {
        Some(SearchHit {
            kind: KbKind::Faq,
            id: id.into(),
            section: None,
            title: id.into(),
            lang: "en".into(),
            text: "q".into(),
            score: 0.03,
            bm25: None,
            dense: Some(ComponentHit {
                rank: 1,
                score: similarity,
            }),
            fields: serde_json::json!({"answer": "a"}),
            matched_variants: vec![],
        })
    }

    fn case(text: &str, source: TrialSource) -> TrialCase {
        TrialCase {
            text: text.into(),
            source,
        }
    }

    #[test]
    fn an_entry_that_only_answers_unanswered_questions_goes_live() {
        let cases = [
            case("returns?", TrialSource::Confirmed),
            case("power bank on a plane?", TrialSource::Asked),
            case("warranty?", TrialSource::Asked),
        ];
        let hits = [
            TrialHit {
                before: hit("returns", 0.93),
                after: hit("returns", 0.93),
            },
            TrialHit {
                before: hit("returns", 0.80),
                after: hit("learned-1", 0.95),
            },
            // Found, but not closely enough to answer from it.
            TrialHit {
                before: None,
                after: hit("learned-1", 0.85),
            },
        ];
        let trial = judge("faq:learned-1", &cases, &hits, 0.88, Utc::now());
        assert!(trial.promoted, "{trial:?}");
        assert_eq!((trial.confirmed, trial.asked), (1, 2));
        assert_eq!(trial.finds.len(), 1);
        assert_eq!(trial.finds[0].text, "power bank on a plane?");
        assert_eq!(trial.finds[0].before, None);
        assert!(trial.regressions.is_empty() && trial.reasons.is_empty());
    }

    #[test]
    fn an_entry_that_takes_over_a_confirmed_answer_is_refused_with_the_reason() {
        let cases = [
            case("how many days to return?", TrialSource::Confirmed),
            case("where is my order?", TrialSource::Confirmed),
        ];
        let hits = [
            TrialHit {
                before: hit("returns", 0.92),
                after: hit("learned-1", 0.94),
            },
            TrialHit {
                before: None,
                after: None,
            },
        ];
        let trial = judge("faq:learned-1", &cases, &hits, 0.88, Utc::now());
        assert!(!trial.promoted);
        assert_eq!(trial.regressions.len(), 1);
        assert_eq!(trial.regressions[0].before.as_deref(), Some("faq:returns"));
        assert_eq!(trial.regressions[0].after.as_deref(), Some("faq:learned-1"));
        assert_eq!(
            trial.reasons,
            vec![
                "1 of 2 questions people confirmed an answer for would be answered \
                 differently with this entry"
            ]
        );
        // A confirmed question it takes over is also one it finds.
        assert_eq!(trial.finds.len(), 1);
    }
}
