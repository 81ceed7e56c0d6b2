//! Translations prepared ahead: the seller's FAQ answers translated into
//! the languages of the tenant's shops' markets in the background, checked
//! as a translation written for a buyer is, and stored, so the first buyer
//! to ask in that language is answered from the stored translation at once
//! instead of waiting for the one chat model.
//!
//! A translation is written only where none is stored (approved, verified,
//! unverified or rejected alike), so a person's decision is never undone
//! and a pass over a tenant whose translations are all stored costs only
//! the lookups. Each translation runs at the follow-ups' priority: it gives
//! way to buyers' requests between prompt chunks.

use std::collections::BTreeSet;

use super::answer::{same_language, OwnedGuardContext};
use super::context::store_error;
use super::ports::StageError;
use super::prompt;
use super::run::Pipeline;
use crate::domain::TenantId;
use crate::store::{KbKind, KbStore, NewTranslation, TranslationKey, TranslationStatus};

/// Buyers' messages in a language, within [`RECENT_DAYS`], before the
/// seller's answers are translated into it ahead.
const MIN_MESSAGES: i64 = 3;
const RECENT_DAYS: i64 = 30;

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

impl Pipeline {
    /// The languages buyers of `tenant` write in: those of its shops'
    /// markets, and those its buyers used at least [`MIN_MESSAGES`] times
    /// in the last [`RECENT_DAYS`] days (cross-border shops name no market
    /// language), each with the shop whose guard settings check its
    /// translations (the market's shop, else the tenant's first).
    async fn buyer_languages(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<(String, crate::store::Shop)>, StageError> {
        let shops = self.store.list_shops(tenant).await.map_err(store_error)?;
        let Some(first) = shops.first().cloned() else {
            return Ok(Vec::new());
        };
        let since = chrono::Utc::now() - chrono::Duration::days(RECENT_DAYS);
        let used = self
            .store
            .buyer_languages(tenant, since)
            .await
            .map_err(store_error)?;
        let mut seen = BTreeSet::new();
        let by_market = shops.into_iter().filter_map(|shop| {
            let lang = shop.market.language.as_ref()?.as_str().to_ascii_lowercase();
            Some((lang, shop))
        });
        let by_use = used
            .into_iter()
            .filter(|(_, n)| *n >= MIN_MESSAGES)
            .map(|(lang, _)| (lang.to_ascii_lowercase(), first.clone()));
        Ok(by_market
            .chain(by_use)
            .filter(|(lang, _)| seen.insert(base_language(lang)))
            .collect())
    }

    /// Translates every FAQ answer of `tenant` that has no stored
    /// translation into each language of its shops' markets (entries read
    /// from `kb`), asking the chat model for at most `limit` of them;
    /// returns what it did. `failed` holds the (entry, language) pairs the
    /// chat model could not translate, which are not asked for again.
    /// Does nothing without a chat model.
    pub async fn prepare_translations(
        &self,
        kb: &dyn KbStore,
        tenant: TenantId,
        limit: usize,
        failed: &mut BTreeSet<(String, String)>,
    ) -> Result<Prepared, StageError> {
        let mut done = Prepared::default();
        if self.translator().is_none() {
            done.complete = true;
            return Ok(done);
        }
        let languages = self.buyer_languages(tenant).await?;
        let entries = kb
            .kb_list(tenant, Some(KbKind::Faq))
            .await
            .map_err(store_error)?;
        for entry in &entries {
            let document = &entry.document;
            let Some(source) = document.body["answer"].as_str().filter(|a| !a.is_empty()) else {
                continue;
            };
            let mut neighbours: Option<Vec<String>> = None;
            for (lang, shop) in &languages {
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
                let pair = (document.id.clone(), lang.clone());
                if stored.is_some() || failed.contains(&pair) {
                    done.present += 1;
                    continue;
                }
                if done.written() >= limit {
                    return Ok(done);
                }
                let Some(written) = self.translate(source, lang, true).await else {
                    done.failed += 1;
                    failed.insert(pair);
                    continue;
                };
                if neighbours.is_none() {
                    neighbours = Some(self.neighbours(tenant, &document.id, &document.body).await);
                }
                let others = neighbours.clone().unwrap_or_default();
                let context = OwnedGuardContext {
                    buyer_identifiers: Vec::new(),
                    sources: others.clone(),
                    instructions: prompt::instructions(&shop.name),
                    conversation: String::new(),
                };
                let (policy, _) = self.policy.for_shop(&shop.policy);
                let verification = self
                    .check_translation(
                        lang,
                        source,
                        &written.text,
                        others,
                        &policy.guard_config(),
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
        }
        done.complete = true;
        Ok(done)
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
