//! The answer stage: the one candidate answer for a message, with where it
//! came from and what verified it.
//!
//! In order of preference: a clarifying question when the message cannot
//! be answered without one more fact; our templates filled from the order
//! record or the catalogue; a pleasantry; the seller's FAQ answer in the
//! buyer's language (written by the seller, approved by a person, or a
//! machine translation that passed verification); and last a reply the chat
//! model writes from the retrieved knowledge, verified before it may be
//! sent. Generation (translations and drafts) runs only when the policy
//! would use the text: handoffs never wait for it.
//!
//! The stage proposes; [`super::policy::decide`] disposes.

use super::clarify::{self, Clarification};
use super::context::{store_error, Context};
use super::guard::{self, GuardContext, Violation};
use super::policy::AnswerEvidence;
use super::ports::{KnowledgeHit, StageError, Understood, Written};
use super::prompt::{self, DraftRequest, Source, Turn};
use super::run::{Generation, Pipeline, DRAFT_LANE, DRAFT_LATER};
use super::templates;
use super::trace::{AnswerRecord, Provenance};
use super::verify::{self, Verification};
use crate::domain::Author;
use crate::inference::chat::{ChatMessage, ChatRole};
use crate::inference::EmbedRole;
use crate::store::{KbKind, NewTranslation, Order, TranslationKey, TranslationStatus};

/// A candidate answer.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub provenance: Provenance,
    pub text: String,
    pub sources: Vec<String>,
    pub verification: Option<Verification>,
    /// What writing it cost, when the chat model wrote it just now.
    pub cost: Option<Written>,
    /// The order it tells about is late.
    pub order_late: bool,
    pub clarification: Option<Clarification>,
}

impl Candidate {
    fn from_record(provenance: Provenance, text: String, sources: Vec<String>) -> Candidate {
        Candidate {
            provenance,
            text,
            sources,
            verification: None,
            cost: None,
            order_late: false,
            clarification: None,
        }
    }

    /// What the policy sees of it.
    pub fn evidence(&self) -> AnswerEvidence {
        AnswerEvidence {
            provenance: self.provenance,
            verified: !self.provenance.machine_written()
                || self.verification.as_ref().is_some_and(|v| v.passed),
            order_late: self.order_late,
        }
    }

    pub fn record(&self) -> AnswerRecord {
        AnswerRecord {
            provenance: self.provenance,
            text: self.text.clone(),
            sources: self.sources.clone(),
            verification: self.verification.clone(),
        }
    }

    /// The guard found the text to be a mere echo of the conversation.
    pub fn is_echo(&self) -> bool {
        self.verification.as_ref().is_some_and(|v| {
            v.violations()
                .iter()
                .any(|v| matches!(v, Violation::EchoesConversation { .. }))
        })
    }
}

/// What the answer stage works from.
pub struct AnswerInput<'a> {
    pub ctx: &'a Context,
    pub understood: &'a Understood,
    pub hits: &'a [KnowledgeHit],
    /// The text retrieval ran on: the message, or the message with the
    /// buyer's earlier question it answers.
    pub query: &'a str,
    pub order: Option<&'a Order>,
    pub lang: &'a str,
    pub now: chrono::DateTime<chrono::Utc>,
    /// The policy would use written text (send or draft it).
    pub wants_text: bool,
    pub destination_known: bool,
    /// The message asks several questions: no single template or FAQ
    /// answer covers it.
    pub several_questions: bool,
    /// Whether the chat model may write here, or the run stops for the
    /// draft lane.
    pub generation: Generation,
    /// A written answer could at best be a draft for a person (never sent
    /// by the AI), so the decision does not depend on its words.
    pub draft_only: bool,
}

pub fn same_language(a: &str, b: &str) -> bool {
    let base = |s: &str| {
        s.split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase()
    };
    base(a) == base(b)
}

/// Words a draft is asked to stay within: a chat reply, and few enough that
/// the token budget (`pipeline.draft_max_tokens`) is rarely what ends it.
const DRAFT_WORDS: usize = 40;

/// `text` without an unfinished last sentence, when there is a finished
/// one: a reply cut off by the token budget should not end mid-word.
pub fn whole_sentences(text: &str) -> String {
    // A full stop ends a sentence only before a space or the end ("1.5 kg"
    // does not); CJK marks always do.
    let ends_sentence = |i: usize, c: char| match c {
        '。' | '！' | '？' => true,
        '.' | '!' | '?' => text[i + 1..].chars().next().is_none_or(char::is_whitespace),
        _ => false,
    };
    let end = text
        .char_indices()
        .rev()
        .find(|&(i, c)| ends_sentence(i, c))
        .map(|(i, c)| i + c.len_utf8());
    match end {
        Some(end) if end >= text.len() / 4 => text[..end].trim_end().to_string(),
        _ => text.to_string(),
    }
}

/// The order a message is about: one it names (order or tracking number),
/// else the most recent one still on its way, else the most recent.
/// The order a message is about: the one it names, else the buyer's order
/// on its way, else their latest. A message naming an order or tracking
/// number that is not among the buyer's orders is about none of them:
/// answering with another order's status would answer a question nobody
/// asked.
pub fn pick_order<'a>(orders: &'a [Order], entities: &[(String, String)]) -> Option<&'a Order> {
    if names_an_order_number(entities) {
        return named_order(orders, entities);
    }
    orders
        .iter()
        .find(|o| {
            matches!(
                o.record.status.as_str(),
                "paid" | "packed" | "shipped" | "in_transit" | "out_for_delivery"
            )
        })
        .or_else(|| orders.first())
}

/// An order question with no order record to answer from: where an order
/// is comes from its record alone, so neither the FAQ nor the chat model
/// may answer it (a written guess, "it arrived today", would read as fact).
fn order_record_missing(input: &AnswerInput<'_>) -> bool {
    input.understood.intent == "order_status" && input.order.is_none()
}

fn named_order<'a>(orders: &'a [Order], entities: &[(String, String)]) -> Option<&'a Order> {
    entities.iter().find_map(|(_, value)| {
        let value = value.trim().to_ascii_uppercase();
        orders.iter().find(|o| {
            o.record.order_number.to_ascii_uppercase() == value
                || o.record
                    .tracking_number
                    .as_deref()
                    .is_some_and(|t| t.to_ascii_uppercase() == value)
        })
    })
}

fn names_an_order_number(entities: &[(String, String)]) -> bool {
    entities
        .iter()
        .any(|(kind, _)| kind == "order_number" || kind == "tracking_number")
}

/// The question to ask instead of answering, when one fact is missing.
pub fn clarification_needed(input: &AnswerInput<'_>) -> Option<Clarification> {
    if input.ctx.answers_clarification {
        // Asked once already: a person takes it from here.
        return None;
    }
    let intent = input.understood.intent.as_str();
    if intent == "order_status" && input.order.is_none() {
        return Some(match names_an_order_number(&input.understood.entities) {
            true => Clarification::UnknownOrder,
            false => Clarification::WhichOrder,
        });
    }
    if clarify::PRODUCT_INTENTS.contains(&intent)
        && !clarify::names_a_product(input.query, input.hits)
    {
        return Some(Clarification::WhichProduct);
    }
    if intent == "shipping_time_cost"
        && !input.destination_known
        && clarify::countries_disagree(input.hits)
    {
        return Some(Clarification::WhichCountry);
    }
    None
}

impl Pipeline {
    /// The candidate answer for a message, or `None` when nothing answers it.
    pub(super) async fn answer(
        &self,
        input: &AnswerInput<'_>,
        notes: &mut Vec<String>,
        models: &mut Vec<String>,
    ) -> Result<Option<Candidate>, StageError> {
        if input.several_questions {
            return self.written_if_wanted(input, models).await;
        }
        if let Some(why) = clarification_needed(input) {
            let mut candidate = Candidate::from_record(
                Provenance::Clarifying,
                clarify::question(why, input.lang).to_string(),
                Vec::new(),
            );
            candidate.clarification = Some(why);
            return Ok(Some(candidate));
        }
        if let Some(fast) = self.templated(input, notes) {
            return Ok(Some(fast));
        }
        if order_record_missing(input) {
            notes.push("no order record to answer from".into());
            return Ok(None);
        }
        if let Some(faq) = self.faq_answer(input, notes, models).await? {
            return Ok(Some(faq));
        }
        self.written_if_wanted(input, models).await
    }

    /// Stops the run for the draft lane when the chat model may not write
    /// here.
    fn may_generate(&self, input: &AnswerInput<'_>) -> Result<(), StageError> {
        match input.generation {
            Generation::Inline => Ok(()),
            Generation::Defer => Err(StageError {
                stage: DRAFT_LANE,
                message: "the answer needs the chat model: the draft lane writes it".into(),
                retryable: true,
            }),
        }
    }

    /// A draft when the policy would use one and the knowledge grounds it.
    async fn written_if_wanted(
        &self,
        input: &AnswerInput<'_>,
        models: &mut Vec<String>,
    ) -> Result<Option<Candidate>, StageError> {
        if order_record_missing(input) {
            return Ok(None);
        }
        let grounded = input
            .hits
            .first()
            .and_then(|h| h.similarity)
            .is_some_and(|s| s >= self.config.draft_min_similarity);
        if input.wants_text && grounded {
            if let Some(writer) = &self.writer {
                if input.generation == Generation::Defer && input.draft_only {
                    // The route is known without the words: decide now and
                    // let the decision's follow-up write the draft, so the
                    // conversation's next messages do not wait for it.
                    return Err(StageError {
                        stage: DRAFT_LATER,
                        message: "the draft is written after the decision".into(),
                        retryable: false,
                    });
                }
                self.may_generate(input)?;
                models.push(writer.model_id());
            }
            return self.drafted(input).await;
        }
        Ok(None)
    }

    /// Order status, stock and pleasantries: our templates filled from
    /// records, in the buyer's language.
    fn templated(&self, input: &AnswerInput<'_>, notes: &mut Vec<String>) -> Option<Candidate> {
        let intent = input.understood.intent.as_str();
        if intent == "order_status" {
            let order = input.order?;
            let late = templates::is_late(&order.record, input.now);
            if late {
                notes.push("order is past its expected delivery".into());
            }
            let answer = templates::order_status(&order.record, input.lang, input.now);
            let mut candidate = Candidate::from_record(
                Provenance::OrderRecord,
                answer.text,
                vec![format!("order:{}", order.record.order_number)],
            );
            candidate.order_late = late;
            return Some(candidate);
        }
        if matches!(intent, "stock_availability" | "colour_options") {
            let stock = input
                .hits
                .iter()
                .take(2)
                .filter(|h| h.kind == "product")
                .find_map(|h| {
                    templates::stock_answer(&h.fields, &h.matched_variants, input.lang).map(|a| {
                        Candidate::from_record(Provenance::Catalogue, a.text, vec![h.id.clone()])
                    })
                });
            if stock.is_some() {
                return stock;
            }
        }
        let pleasantry = match intent {
            "greeting" => Some(templates::Pleasantry::Greeting),
            "thanks" => Some(templates::Pleasantry::Thanks),
            "review" if input.understood.sentiment == "positive" => {
                Some(templates::Pleasantry::GoodReview)
            }
            _ => None,
        };
        pleasantry.map(|kind| {
            Candidate::from_record(
                Provenance::Pleasantry,
                templates::pleasantry_reply(kind, input.lang).text,
                Vec::new(),
            )
        })
    }

    /// The best FAQ entry's answer, when the question matches it closely,
    /// in the buyer's language: the seller's own text, a translation a
    /// person approved, or a machine translation checked before use.
    async fn faq_answer(
        &self,
        input: &AnswerInput<'_>,
        notes: &mut Vec<String>,
        models: &mut Vec<String>,
    ) -> Result<Option<Candidate>, StageError> {
        let Some(hit) = input.hits.first().filter(|h| {
            h.kind == "faq"
                && h.answer.is_some()
                && h.similarity
                    .is_some_and(|s| s >= self.config.faq_min_similarity)
        }) else {
            return Ok(None);
        };
        let source = hit.answer.clone().unwrap_or_default();
        let entry_lang = hit.language.clone().unwrap_or_else(|| "en".into());
        if same_language(&entry_lang, input.lang) {
            return Ok(Some(Candidate::from_record(
                Provenance::SellerText,
                source,
                vec![hit.id.clone()],
            )));
        }
        let entry_id = hit.id.strip_prefix("faq:").unwrap_or(&hit.id);
        let key = TranslationKey::new(KbKind::Faq, entry_id, &source, input.lang);
        let stored = self
            .store
            .translation(input.ctx.tenant, &key)
            .await
            .map_err(store_error)?;
        if let Some(stored) = stored {
            let candidate = |provenance, verification| Candidate {
                verification,
                ..Candidate::from_record(provenance, stored.text.clone(), vec![hit.id.clone()])
            };
            return Ok(match stored.status {
                TranslationStatus::Approved => {
                    Some(candidate(Provenance::ApprovedTranslation, None))
                }
                TranslationStatus::Verified | TranslationStatus::Unverified => {
                    // Checked when it was written; its checks are stored
                    // with it.
                    notes.push(format!(
                        "{} translation of {} stored {} as {}",
                        input.lang,
                        hit.id,
                        stored.created_at.format("%Y-%m-%d %H:%M UTC"),
                        stored.status.as_str()
                    ));
                    let verification = Verification {
                        passed: stored.status == TranslationStatus::Verified,
                        checks: Vec::new(),
                    };
                    Some(candidate(
                        Provenance::MachineTranslation,
                        Some(verification),
                    ))
                }
                TranslationStatus::Rejected => {
                    notes.push(format!(
                        "a person rejected the {} translation of {}",
                        input.lang, hit.id
                    ));
                    None
                }
            });
        }
        if !input.wants_text {
            notes.push(format!(
                "FAQ {} matched but is in {entry_lang}; not translated for a handoff",
                hit.id
            ));
            return Ok(None);
        }
        if self.writer.is_some() {
            self.may_generate(input)?;
        }
        let Some(written) = self.translate(&source, input.lang, false).await else {
            notes.push(format!(
                "FAQ {} matched but is in {entry_lang}, and no translation was possible",
                hit.id
            ));
            return Ok(None);
        };
        if let Some(writer) = self.translator() {
            models.push(writer.model_id());
        }
        let verification = self
            .verify_translation(input, &source, &written.text, hit)
            .await;
        let saved = self
            .store
            .save_translation(
                input.ctx.tenant,
                &NewTranslation {
                    key,
                    source_text: source,
                    text: written.text.clone(),
                    status: if verification.passed {
                        TranslationStatus::Verified
                    } else {
                        TranslationStatus::Unverified
                    },
                    model: self.translator().map(|w| w.model_id()),
                    verification: serde_json::to_value(&verification.checks).unwrap_or_default(),
                },
            )
            .await
            .map_err(store_error)?;
        // Another worker may have stored (or a person approved) one first.
        let provenance = if saved.status == TranslationStatus::Approved {
            Provenance::ApprovedTranslation
        } else {
            Provenance::MachineTranslation
        };
        Ok(Some(Candidate {
            verification: (provenance == Provenance::MachineTranslation).then_some(verification),
            cost: Some(written),
            ..Candidate::from_record(provenance, saved.text, vec![hit.id.clone()])
        }))
    }

    /// The checks a machine translation of the seller's `source` passes
    /// before a buyer may read it without a person.
    async fn verify_translation(
        &self,
        input: &AnswerInput<'_>,
        source: &str,
        translation: &str,
        hit: &KnowledgeHit,
    ) -> Verification {
        let others: Vec<String> = input
            .hits
            .iter()
            .filter(|h| h.id != hit.id)
            .filter_map(|h| h.answer.clone().or_else(|| Some(h.text.clone())))
            .take(4)
            .collect();
        let config = input.ctx.policy.guard_config();
        let context = self.guard_context(input);
        self.check_translation(input.lang, source, translation, others, &config, &context)
            .await
    }

    /// The checks of a translation into `lang`, given the other answers it
    /// must not be closer to, the guard's configuration and its context.
    pub(super) async fn check_translation(
        &self,
        lang: &str,
        source: &str,
        translation: &str,
        others: Vec<String>,
        config: &guard::GuardConfig,
        context: &OwnedGuardContext,
    ) -> Verification {
        let mut checks = vec![verify::language(&self.detector, translation, lang)];
        let mut texts: Vec<String> = vec![source.to_string(), translation.to_string()];
        texts.extend(others);
        match self.embed_passages(texts).await {
            Some(vectors) if vectors.len() >= 2 => {
                checks.push(verify::meaning(&vectors[0], &vectors[1], &vectors[2..]));
            }
            _ => checks.push(verify::Check::Meaning {
                similarity: 0.0,
                threshold: verify::MEANING_MIN_SIMILARITY,
                closest_other: None,
                passed: false,
            }),
        }
        checks.push(verify::facts_kept(source, translation));
        let source_violations = guard::check(source, config, &context.borrowed());
        let found = guard::check(translation, config, &context.borrowed());
        checks.push(verify::binding_added(&source_violations, &found));
        checks.push(verify::fluency(
            translation,
            Some(source.chars().count()),
            lang,
        ));
        checks.push(verify::guard(
            found
                .into_iter()
                .filter(|v| !matches!(v, Violation::BindingAction { .. }))
                .collect(),
        ));
        Verification::from_checks(checks)
    }

    /// Unit vectors of `texts` as passages, off the async threads; `None`
    /// when no embedding model is configured or it failed.
    async fn embed_passages(&self, texts: Vec<String>) -> Option<Vec<Vec<f32>>> {
        let embedder = self.meaning.clone()?;
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            embedder.embed(&refs, EmbedRole::Passage)
        })
        .await
        .ok()?
        .map_err(|e| tracing::warn!(error = %e, "could not embed for verification"))
        .ok()
    }

    /// A reply the chat model writes from the retrieved knowledge, with the
    /// checks it passed.
    async fn drafted(&self, input: &AnswerInput<'_>) -> Result<Option<Candidate>, StageError> {
        let Some(writer) = &self.writer else {
            return Ok(None);
        };
        let ctx = input.ctx;
        let sources: Vec<Source> = input
            .hits
            .iter()
            .map(|h| Source {
                id: h.id.clone(),
                text: h.answer.clone().unwrap_or_else(|| h.text.clone()),
            })
            .collect();
        let history: Vec<Turn> = ctx.detail.messages[..ctx.position]
            .iter()
            .filter(|m| m.direction != crate::domain::Direction::Note)
            .map(|m| Turn {
                from_buyer: m.author == Author::Buyer,
                text: m.text.as_str().to_string(),
            })
            .collect();
        let shop_name = ctx.shop.name.clone();
        let messages = prompt::draft_messages(&DraftRequest {
            shop_name: &shop_name,
            reply_language: templates::language_name(input.lang),
            sources: &sources,
            history: &history,
            message: &ctx.text,
            max_words: DRAFT_WORDS,
        });
        let written = writer.write(messages, self.config.draft_max_tokens).await?;
        let text = if written.cut_short {
            whole_sentences(written.text.trim())
        } else {
            written.text.trim().to_string()
        };
        if text.is_empty() {
            return Ok(None);
        }
        let used: Vec<&KnowledgeHit> = input.hits.iter().take(prompt::MAX_SOURCES).collect();
        let mut allowed: Vec<&str> = used
            .iter()
            .map(|h| h.answer.as_deref().unwrap_or(&h.text))
            .collect();
        let order_text = input
            .order
            .map(|o| serde_json::to_string(&o.record).unwrap_or_default())
            .unwrap_or_default();
        allowed.push(&order_text);
        allowed.push(&ctx.text);
        let context = self.guard_context(input);
        let mut violations = guard::check(&text, &ctx.policy.guard_config(), &context.borrowed());
        if let Some(promises) = &self.promises {
            violations.extend(promises.check(&text).await?);
        }
        let checks = vec![
            verify::guard(violations),
            verify::facts_supported(&text, &allowed),
            verify::language(&self.detector, &text, input.lang),
        ];
        Ok(Some(Candidate {
            verification: Some(Verification::from_checks(checks)),
            cost: Some(written),
            ..Candidate::from_record(
                Provenance::Generated,
                text,
                used.iter().map(|h| h.id.clone()).collect(),
            )
        }))
    }

    fn guard_context(&self, input: &AnswerInput<'_>) -> OwnedGuardContext {
        let ctx = input.ctx;
        let buyer_identifiers: Vec<String> = ctx
            .orders
            .iter()
            .flat_map(|o| {
                [
                    Some(o.record.order_number.clone()),
                    o.record.tracking_number.clone(),
                ]
            })
            .flatten()
            .chain(std::iter::once(ctx.text.clone()))
            .collect();
        OwnedGuardContext {
            buyer_identifiers,
            sources: input.hits.iter().map(|h| h.text.clone()).collect(),
            instructions: prompt::instructions(&ctx.shop.name),
            conversation: ctx
                .visible_turns()
                .map(|m| m.text.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The chat model's translation of `text` into `to`. `background`: for
    /// a follow-up, which gives way to buyers' requests.
    pub(super) async fn translate(
        &self,
        text: &str,
        to: &str,
        background: bool,
    ) -> Option<Written> {
        let writer = self.translator()?;
        let target = templates::language_name(to);
        // The system turn is the same for every translation, so the chat
        // model keeps its keys and values; the target goes last.
        let messages = vec![
            ChatMessage::new(
                ChatRole::System,
                "You translate shop messages. Translate the text between <text> and </text> \
                 into the language asked for. Output only the translation, nothing else.",
            ),
            ChatMessage::new(
                ChatRole::User,
                format!(
                    "<text>\n{}\n</text>\nTranslate into {target}.",
                    prompt::defuse(text, 1500)
                ),
            ),
        ];
        let mut written = if background {
            super::followup::in_background(writer.as_ref(), messages, 160).await?
        } else {
            writer.write(messages, 160).await.ok()?
        };
        written.text = unlabelled(&unfenced(&written.text)?, target)?;
        Some(written)
    }
}

/// A translation without the target language's name as a label before it
/// ("Tagalog:\nAng padala..."), which the chat model sometimes writes;
/// `None` when nothing follows the label.
pub fn unlabelled(text: &str, language: &str) -> Option<String> {
    let rest = text
        .get(..language.len())
        .filter(|head| head.eq_ignore_ascii_case(language))
        .map(|_| text[language.len()..].trim_start())
        .and_then(|rest| rest.strip_prefix([':', '：']));
    match rest {
        Some(rest) => {
            let rest = rest.trim();
            (!rest.is_empty()).then(|| rest.to_string())
        }
        None => Some(text.to_string()),
    }
}

/// A translation without the prompt's `<text>` fence, which larger chat
/// models sometimes copy around their answer; `None` when it is empty or
/// the fence still appears inside it (the model answered something else
/// than the translation asked for).
pub fn unfenced(written: &str) -> Option<String> {
    let mut text = written.trim();
    if let Some(rest) = text.strip_prefix("<text>") {
        text = rest.trim_start();
    }
    if let Some(rest) = text.strip_suffix("</text>") {
        text = rest.trim_end();
    }
    let fenced = text.contains("<text>") || text.contains("</text>");
    (!text.is_empty() && !fenced).then(|| text.to_string())
}

/// The guard's context, owned for the length of one answer.
pub(super) struct OwnedGuardContext {
    pub(super) buyer_identifiers: Vec<String>,
    pub(super) sources: Vec<String>,
    pub(super) instructions: String,
    pub(super) conversation: String,
}

impl OwnedGuardContext {
    fn borrowed(&self) -> GuardContext<'_> {
        GuardContext {
            buyer_identifiers: &self.buyer_identifiers,
            sources: &self.sources,
            instructions: &self.instructions,
            conversation: &self.conversation,
            seller_text: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{unfenced, unlabelled};

    #[test]
    fn a_translation_loses_a_label_naming_its_language() {
        let cases: [(&str, Option<&str>); 5] = [
            (
                "Tagalog:\nAng padala ay 6-10 araw.",
                Some("Ang padala ay 6-10 araw."),
            ),
            ("tagalog : Ang padala", Some("Ang padala")),
            ("Tagalog：", None),
            ("Tagalog ang sagot dito.", Some("Tagalog ang sagot dito.")),
            ("Ta", Some("Ta")),
        ];
        for (written, expected) in cases {
            assert_eq!(
                unlabelled(written, "Tagalog").as_deref(),
                expected,
                "{written:?}"
            );
        }
        assert_eq!(
            unlabelled("中文：您好", "Chinese").as_deref(),
            Some("中文：您好")
        );
    }

    #[test]
    fn a_translation_loses_the_prompts_fence_and_one_with_the_fence_inside_is_refused() {
        let cases: [(&str, Option<&str>); 6] = [
            ("Envío en 3-6 días.", Some("Envío en 3-6 días.")),
            (
                "<text>\nEnvío en 3-6 días.\n</text>",
                Some("Envío en 3-6 días."),
            ),
            ("<text>Envío en 3-6 días.", Some("Envío en 3-6 días.")),
            ("  Envío en 3-6 días. </text>", Some("Envío en 3-6 días.")),
            ("Envío <text> en 3-6 días.", None),
            ("<text>\n</text>", None),
        ];
        for (written, expected) in cases {
            assert_eq!(unfenced(written).as_deref(), expected, "{written:?}");
        }
    }
}
