//! Translations prepared ahead: the seller's FAQ answers translated into
//! the languages its buyers write in the background, checked as a
//! translation written for a buyer is, and stored, so the first buyer to
//! ask in that language is answered from the stored translation at once
//! instead of waiting for the one chat model.
//!
//! What buyers ask most is translated first: every FAQ answer a buyer gets
//! is counted per entry and language (one upsert, [`Pipeline::count_asked`]),
//! and a pass takes the (entry, language) pairs buyers asked for first,
//! then entries by that count (ties by id), each into the languages buyers
//! write most.
//!
//! A translation is written only where none is stored (approved, verified,
//! unverified or rejected alike), so a person's decision is never undone
//! and a pass over a tenant whose translations are all stored costs only
//! the lookups. Each translation runs at the follow-ups' priority: it gives
//! way to buyers' requests between prompt chunks. `schedule` decides when
//! (the queue idle) and for which tenant; this module knows nothing of the
//! server around it.

pub mod schedule;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::answer::{same_language, Candidate, OwnedGuardContext};
use super::context::store_error;
use super::guard::GuardConfig;
use super::ports::StageError;
use super::prompt;
use super::run::Pipeline;
use super::trace::Provenance;
use crate::domain::TenantId;
use crate::store::{KbKind, KbRecord, KbStore, NewTranslation, TranslationKey, TranslationStatus};

/// Buyers' messages in a language, within [`RECENT_DAYS`], before the
/// seller's answers are translated into it ahead.
const MIN_MESSAGES: i64 = 3;
const RECENT_DAYS: i64 = 30;
/// How long what a tenant's buyers ask and write is reused between passes
/// before it is read again.
const DEMAND_FRESH: Duration = Duration::from_secs(60);

/// `pt` for `pt-BR`.
fn base_language(lang: &str) -> String {
    lang.split(['-', '_'])
        .next()
        .unwrap_or(lang)
        .to_ascii_lowercase()
}

/// Knowledge-base neighbours a translation must stay further from than
/// from its own source, as for a buyer's translation.
const NEIGHBOURS: usize = 5;

/// What one pass over a tenant did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Prepared {
    /// Translations written and stored as verified.
    pub verified: usize,
    /// Written but failed a check: stored as unverified, so a buyer's
    /// question in that language gets it as a draft for a person.
    pub unverified: usize,
    /// Already stored, the entry is in that language, or it could not be
    /// translated before.
    pub present: usize,
    /// The chat model wrote nothing usable.
    pub failed: usize,
    /// Every entry and language was looked at: nothing is left to write.
    pub complete: bool,
}

impl Prepared {
    /// Translations the chat model was asked for in this pass.
    pub fn written(&self) -> usize {
        self.verified + self.unverified + self.failed
    }
}

/// A language a tenant's answers are translated into ahead, with what
/// checks its translations, read once per [`Demand`].
#[derive(Debug, Clone)]
struct Language {
    lang: String,
    /// Buyers' messages in it within [`RECENT_DAYS`].
    messages: i64,
    guard: GuardConfig,
    instructions: String,
}

/// What a tenant's buyers write and ask: the languages (most written
/// first) and how often each FAQ entry answered them, per language.
#[derive(Debug, Clone, Default)]
struct Demand {
    languages: Vec<Language>,
    /// entry id -> (times asked in all, times asked per language).
    asked: HashMap<String, (i64, HashMap<String, i64>)>,
}

/// What translations ahead keep about one tenant between passes.
#[derive(Debug, Default)]
pub struct TenantAhead {
    /// (entry, language) pairs the chat model could not translate; not
    /// asked for again.
    failed: BTreeSet<(String, String)>,
    /// The tenant's [`Demand`] and when it was read.
    demand: Option<(Instant, Demand)>,
}

impl TenantAhead {
    /// Whether the chat model failed on entry `id` in `lang` before.
    pub fn failed_on(&self, id: &str, lang: &str) -> bool {
        self.failed.contains(&(id.to_string(), lang.to_string()))
    }
}

impl Demand {
    /// `(entry, language)` pairs in the order they are translated: first
    /// the pairs buyers were answered in (most first; usually stored
    /// already, unless the entry changed since), then entries asked most
    /// in languages other than their own (buyers a translation served),
    /// then most asked in all (ties by id), each into the languages buyers
    /// write most.
    fn order<'a>(&'a self, entries: &'a [KbRecord]) -> Vec<(&'a KbRecord, &'a Language)> {
        let none = (0, HashMap::new());
        let mut pairs: Vec<_> = entries
            .iter()
            .flat_map(|entry| self.languages.iter().map(move |lang| (entry, lang)))
            .collect();
        pairs.sort_by_cached_key(|(entry, lang)| {
            let (total, by_lang) = self.asked.get(&entry.document.id).unwrap_or(&none);
            let in_lang = by_lang
                .get(&base_language(&lang.lang))
                .copied()
                .unwrap_or(0);
            let own = base_language(&entry.document.lang);
            let elsewhere: i64 = by_lang
                .iter()
                .filter(|(asked_in, _)| **asked_in != own)
                .map(|(_, n)| n)
                .sum();
            (
                std::cmp::Reverse(in_lang),
                std::cmp::Reverse(elsewhere),
                std::cmp::Reverse(*total),
                entry.document.id.clone(),
                std::cmp::Reverse(lang.messages),
                lang.lang.clone(),
            )
        });
        pairs
    }
}

impl Pipeline {
    /// Counts one more buyer answered from an FAQ entry in `lang` (the
    /// seller's answer or its translation, once per decided message): what
    /// translations ahead take first. A failed write is logged and never
    /// holds up the answer.
    pub(super) async fn count_asked(&self, tenant: TenantId, answer: &Candidate, lang: &str) {
        let seller_words = matches!(
            answer.provenance,
            Provenance::SellerText
                | Provenance::ApprovedTranslation
                | Provenance::MachineTranslation
        );
        let Some(entry) = answer
            .sources
            .iter()
            .find_map(|s| s.strip_prefix("faq:"))
            .filter(|_| seller_words)
        else {
            return;
        };
        if let Err(err) = self
            .store
            .record_faq_asked(tenant, entry, &base_language(lang))
            .await
        {
            tracing::warn!(error = %err, "cannot count an FAQ entry's buyer");
        }
    }

    /// The languages buyers of `tenant` write in: those its buyers used
    /// at least [`MIN_MESSAGES`] times in the last [`RECENT_DAYS`] days,
    /// most used first (cross-border shops name no market language), then
    /// those of its shops' markets; each with the guard settings and
    /// instructions of the shop that checks its translations (the
    /// market's shop, else the tenant's first). Read once per [`Demand`].
    async fn demand(&self, tenant: TenantId) -> Result<Demand, StageError> {
        let shops = self.store.list_shops(tenant).await.map_err(store_error)?;
        let Some(first) = shops.first().cloned() else {
            return Ok(Demand::default());
        };
        let since = chrono::Utc::now() - chrono::Duration::days(RECENT_DAYS);
        let used: HashMap<String, i64> = self
            .store
            .buyer_languages(tenant, since)
            .await
            .map_err(store_error)?
            .into_iter()
            .fold(HashMap::new(), |mut by_base, (lang, n)| {
                *by_base.entry(base_language(&lang)).or_default() += n;
                by_base
            });
        let market = |lang: &str| {
            shops
                .iter()
                .find(|s| {
                    s.market
                        .language
                        .as_ref()
                        .is_some_and(|l| base_language(l.as_str()) == lang)
                })
                .unwrap_or(&first)
        };
        let mut langs: Vec<(String, i64)> = used
            .iter()
            .filter(|(_, n)| **n >= MIN_MESSAGES)
            .map(|(lang, n)| (lang.clone(), *n))
            .collect();
        let markets = shops
            .iter()
            .filter_map(|s| Some(base_language(s.market.language.as_ref()?.as_str())));
        for lang in markets {
            if !langs.iter().any(|(l, _)| *l == lang) {
                let n = used.get(&lang).copied().unwrap_or(0);
                langs.push((lang, n));
            }
        }
        langs.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let languages = langs
            .into_iter()
            .map(|(lang, messages)| {
                let shop = market(&lang);
                let (policy, _) = self.policy.for_shop(&shop.policy);
                Language {
                    guard: policy.guard_config(),
                    instructions: prompt::instructions(&shop.name),
                    lang,
                    messages,
                }
            })
            .collect();
        let mut asked: HashMap<String, (i64, HashMap<String, i64>)> = HashMap::new();
        for row in self.store.faq_asked(tenant).await.map_err(store_error)? {
            let (total, by_lang) = asked.entry(row.entry_id).or_default();
            *total += row.asked;
            *by_lang.entry(base_language(&row.lang)).or_default() += row.asked;
        }
        Ok(Demand { languages, asked })
    }

    /// Translates the FAQ answers of `tenant` that have no stored
    /// translation into each language its buyers write (entries read from
    /// `kb`), most asked first, asking the chat model for at most `limit`
    /// of them; returns what it did. `ahead` keeps, between passes, the
    /// pairs the chat model could not translate (not asked for again) and
    /// what buyers write and ask (read again after [`DEMAND_FRESH`]).
    /// Does nothing without a chat model.
    pub async fn prepare_translations(
        &self,
        kb: &dyn KbStore,
        tenant: TenantId,
        limit: usize,
        ahead: &mut TenantAhead,
    ) -> Result<Prepared, StageError> {
        let mut done = Prepared::default();
        if self.translator().is_none() {
            done.complete = true;
            return Ok(done);
        }
        let demand = match ahead.demand.take() {
            Some((at, demand)) if at.elapsed() < DEMAND_FRESH => (at, demand),
            _ => (Instant::now(), self.demand(tenant).await?),
        };
        let entries = kb
            .kb_list(tenant, Some(KbKind::Faq))
            .await
            .map_err(store_error)?;
        let result = self
            .prepare_in_order(tenant, &demand.1.order(&entries), limit, ahead, &mut done)
            .await;
        ahead.demand = Some(demand);
        result?;
        Ok(done)
    }

    /// Writes the missing translations of `pairs`, in order, until `limit`
    /// were asked for; sets `done.complete` when it reached the end.
    async fn prepare_in_order(
        &self,
        tenant: TenantId,
        pairs: &[(&KbRecord, &Language)],
        limit: usize,
        ahead: &mut TenantAhead,
        done: &mut Prepared,
    ) -> Result<(), StageError> {
        let mut neighbours: HashMap<&str, Vec<String>> = HashMap::new();
        for (entry, language) in pairs {
            let document = &entry.document;
            let lang = &language.lang;
            let Some(source) = document.body["answer"].as_str().filter(|a| !a.is_empty()) else {
                continue;
            };
            if same_language(&document.lang, lang) {
                done.present += 1;
                continue;
            }
            let key = TranslationKey::new(KbKind::Faq, &document.id, source, lang);
            let stored = self
                .store
                .translation(tenant, &key)
                .await
                .map_err(store_error)?;
            if stored.is_some() || ahead.failed_on(&document.id, lang) {
                done.present += 1;
                continue;
            }
            if done.written() >= limit {
                return Ok(());
            }
            let Some(written) = self.translate(source, lang, true).await else {
                done.failed += 1;
                ahead.failed.insert((document.id.clone(), lang.clone()));
                continue;
            };
            if !neighbours.contains_key(document.id.as_str()) {
                let found = self.neighbours(tenant, &document.id, &document.body).await;
                neighbours.insert(&document.id, found);
            }
            let others = neighbours[document.id.as_str()].clone();
            let context = OwnedGuardContext {
                buyer_identifiers: Vec::new(),
                sources: others.clone(),
                instructions: language.instructions.clone(),
                conversation: String::new(),
            };
            let verification = self
                .check_translation(
                    lang,
                    source,
                    &written.text,
                    others,
                    &language.guard,
                    &context,
                )
                .await;
            let status = match verification.passed {
                true => TranslationStatus::Verified,
                false => TranslationStatus::Unverified,
            };
            self.store
                .save_translation(
                    tenant,
                    &NewTranslation {
                        key,
                        source_text: source.to_string(),
                        text: written.text,
                        status,
                        model: self.translator().map(|w| w.model_id()),
                        verification: serde_json::to_value(&verification.checks)
                            .unwrap_or_default(),
                    },
                )
                .await
                .map_err(store_error)?;
            match status {
                TranslationStatus::Verified => done.verified += 1,
                _ => done.unverified += 1,
            }
        }
        done.complete = true;
        Ok(())
    }

    /// The answers of the entries nearest to entry `id` (by its first
    /// question), which its translation must not be closer to than to its
    /// own source.
    async fn neighbours(
        &self,
        tenant: TenantId,
        id: &str,
        body: &serde_json::Value,
    ) -> Vec<String> {
        let (Some(knowledge), Some(question)) = (&self.knowledge, body["questions"][0].as_str())
        else {
            return Vec::new();
        };
        let own = format!("faq:{id}");
        match knowledge.search(tenant, question, NEIGHBOURS + 1).await {
            Ok(hits) => hits
                .into_iter()
                .filter(|h| h.id != own)
                .filter_map(|h| h.answer.or(Some(h.text)))
                .take(NEIGHBOURS - 1)
                .collect(),
            Err(err) => {
                tracing::warn!(error = %err.message, "no neighbours for a prepared translation");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KbDocument;

    fn entry(id: &str) -> KbRecord {
        entry_in(id, "en")
    }

    fn entry_in(id: &str, lang: &str) -> KbRecord {
        KbRecord {
            document: KbDocument {
                kind: KbKind::Faq,
                id: id.into(),
                lang: lang.into(),
                body: serde_json::json!({"answer": "x"}),
            },
            version: 1,
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    fn language(lang: &str, messages: i64) -> Language {
        Language {
            lang: lang.into(),
            messages,
            guard: crate::config::Settings::defaults()
                .policy
                .for_shop(&serde_json::Value::Null)
                .0
                .guard_config(),
            instructions: String::new(),
        }
    }

    #[test]
    fn entries_go_by_how_often_they_were_asked_and_languages_by_use() {
        let asked = |total, by: &[(&str, i64)]| {
            let by = by.iter().map(|(l, n)| (l.to_string(), *n)).collect();
            (total, by)
        };
        let demand = Demand {
            // Thai is written most, Indonesian is the market's language.
            languages: vec![language("th", 40), language("vi", 12), language("id", 0)],
            asked: HashMap::from([
                ("warranty".to_string(), asked(5, &[("vi", 5)])),
                ("cod".to_string(), asked(2, &[("th", 2)])),
                ("returns".to_string(), asked(2, &[])),
            ]),
        };
        let entries = [
            entry("aaa-never"),
            entry("returns"),
            entry("cod"),
            entry("warranty"),
        ];
        let order: Vec<(&str, &str)> = demand
            .order(&entries)
            .into_iter()
            .map(|(e, l)| (e.document.id.as_str(), l.lang.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("warranty", "vi"),
                ("cod", "th"),
                ("warranty", "th"),
                ("warranty", "id"),
                ("cod", "vi"),
                ("cod", "id"),
                ("returns", "th"),
                ("returns", "vi"),
                ("returns", "id"),
                ("aaa-never", "th"),
                ("aaa-never", "vi"),
                ("aaa-never", "id"),
            ]
        );
    }

    #[test]
    fn asks_a_translation_served_count_before_asks_in_the_entrys_own_language() {
        let demand = Demand {
            languages: vec![language("th", 40), language("en", 30), language("vi", 12)],
            asked: HashMap::from([
                // Four Vietnamese buyers read the Vietnamese entry as written.
                (
                    "vi-huy-don".to_string(),
                    (4, HashMap::from([("vi".to_string(), 4)])),
                ),
                // One Indonesian buyer needed the English entry translated.
                (
                    "returns".to_string(),
                    (1, HashMap::from([("id".to_string(), 1)])),
                ),
            ]),
        };
        let entries = [entry_in("vi-huy-don", "vi"), entry("returns")];
        let order: Vec<(&str, &str)> = demand
            .order(&entries)
            .into_iter()
            .map(|(e, l)| (e.document.id.as_str(), l.lang.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                // The pair buyers were answered in (stored as written).
                ("vi-huy-don", "vi"),
                ("returns", "th"),
                ("returns", "en"),
                ("returns", "vi"),
                ("vi-huy-don", "th"),
                ("vi-huy-don", "en"),
            ]
        );
    }
}
