//! The reply pipeline as a job handler: for one inbound message, load what
//! surrounds it, understand it, look up what answers it, propose one
//! answer, decide once, and store the decision with its whole trace.
//!
//! Order of work, chosen so hard cases reach a human at once: load the
//! context (`context`), understand and retrieve (fast), build the
//! candidate answer (`answer`: a clarifying question, a template, the
//! seller's words; a translation or a draft only when the policy would use
//! it, verified by `verify`), then [`policy::decide`] over everything known,
//! once. The decision is stored with the reply it sends; if a person took
//! the conversation meanwhile, the store refuses the reply and the message
//! is decided again from the new state. What a person reads besides the
//! draft comes later from `followup`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::answer::{pick_order, AnswerInput, Candidate};
use super::clarify;
use super::context::{store_error, Context, Loaded};
use super::guard;
use super::policy::{
    self, Action, AnswerEvidence, Decision, Evidence, PolicySettings, Reason, Signals,
};
use super::ports::{Knowledge, KnowledgeHit, StageError, Understand, Understood, Writer};
use super::prompt;
use super::templates;
use super::trace::{
    AnswerKind, BuyerCard, CustodyRecord, FailureTrace, FollowUpState, Handoff, OrderCard,
    Provenance, SourceRef, Trace, TraceHead, TurnRecord,
};
use crate::domain::{
    Author, ConversationStatus, Direction, Layer, MessageId, MessageText, NewReply, TenantId,
};
use crate::kb::Embedder;
use crate::queue::{Handled, JobError, JobHandler};
use crate::store::{
    GiveUp, Job, JobLane, NewDecision, Order, Store, StoreError, JOB_ENRICH_DECISION,
    JOB_INBOUND_MESSAGE,
};
use crate::understand::lang::LanguageDetector;

/// Tuning of the answer stage (`[pipeline]` in the configuration).
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The language agents read; buyer messages in other languages get a
    /// translation for them.
    pub agent_language: String,
    /// Knowledge-base hits retrieved per message.
    pub retrieval_limit: usize,
    /// Lowest query-to-question similarity at which an FAQ entry's answer
    /// is used as it is.
    pub faq_min_similarity: f32,
    /// Lowest similarity of the best hit for a drafted reply to count as
    /// grounded.
    pub draft_min_similarity: f32,
    /// Token budget of a drafted reply.
    pub draft_max_tokens: usize,
}

impl From<&crate::config::PipelineSettings> for PipelineConfig {
    fn from(s: &crate::config::PipelineSettings) -> Self {
        PipelineConfig {
            agent_language: s.agent_language.clone(),
            retrieval_limit: s.retrieval_limit,
            faq_min_similarity: s.faq_min_similarity,
            draft_min_similarity: s.draft_min_similarity,
            draft_max_tokens: s.draft_max_tokens,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            agent_language: "en".into(),
            retrieval_limit: 5,
            faq_min_similarity: 0.88,
            draft_min_similarity: 0.82,
            draft_max_tokens: 80,
        }
    }
}

/// What the pipeline is built from.
pub struct PipelineParts {
    pub store: Arc<dyn Store>,
    pub understand: Arc<dyn Understand>,
    pub knowledge: Option<Arc<dyn Knowledge>>,
    pub writer: Option<Arc<dyn Writer>>,
    /// The embedding model, for checking that a translation says what its
    /// source says; without one, no machine translation is ever verified.
    pub meaning: Option<Arc<dyn Embedder>>,
    pub policy: PolicySettings,
    pub config: PipelineConfig,
}

pub struct Pipeline {
    pub(super) store: Arc<dyn Store>,
    pub(super) understand: Arc<dyn Understand>,
    pub(super) knowledge: Option<Arc<dyn Knowledge>>,
    pub(super) writer: Option<Arc<dyn Writer>>,
    /// The writer of translations and agent summaries, when another model
    /// than the drafts' writes them.
    translator: Option<Arc<dyn Writer>>,
    pub(super) meaning: Option<Arc<dyn Embedder>>,
    /// Promises recognised by meaning in drafted replies, with the same
    /// embedding model.
    pub(super) promises: Option<Arc<guard::meaning::MeaningCheck>>,
    pub(super) detector: LanguageDetector,
    pub(super) policy: PolicySettings,
    pub(super) config: PipelineConfig,
    /// Whether a queued message whose answer needs the chat model is
    /// handed to the queue's draft lane instead of written in place.
    draft_lane: bool,
}

/// Whether a run may use the chat model for the answer, or must stop and
/// say so ([`StageError::is_deferred`]) because the queue's draft lane
/// writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    Inline,
    Defer,
}

/// The stage of the error that stops a run whose answer needs the chat
/// model under [`Generation::Defer`].
pub(super) const DRAFT_LANE: &str = "draft_lane";

/// The stage of the error that stops the answer stage under
/// [`Generation::Defer`] when the only answer left is a draft for a person:
/// the message is decided at once and its follow-up writes the draft.
pub(super) const DRAFT_LATER: &str = "draft_later";

pub(super) fn ms(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// How often a decision is retried when a person takes the conversation
/// while it is being decided.
const CUSTODY_RETRIES: usize = 3;

/// What the decision does, as the trace records it.
struct Outcome<'a> {
    decision: &'a Decision,
    reply: Option<String>,
    draft: Option<String>,
    /// A follow-up job adds the agents' translation and a summary.
    follow_up: bool,
    /// The follow-up also writes the draft.
    draft_pending: bool,
}

/// What the stages found, before the decision.
pub(super) struct Findings {
    understood: Understood,
    injection: Option<String>,
    hits: Vec<KnowledgeHit>,
    lang: String,
    pub(super) candidate: Option<Candidate>,
    pub(super) withheld: Option<Candidate>,
    /// The draft is left to the decision's follow-up ([`DRAFT_LATER`]).
    draft_pending: bool,
    notes: Vec<String>,
    models: Vec<String>,
    timings: BTreeMap<&'static str, f64>,
}

impl Pipeline {
    pub fn new(parts: PipelineParts) -> Pipeline {
        Pipeline {
            store: parts.store,
            understand: parts.understand,
            knowledge: parts.knowledge,
            writer: parts.writer,
            translator: None,
            promises: parts
                .meaning
                .clone()
                .map(|embedder| Arc::new(guard::meaning::MeaningCheck::builtin(embedder))),
            meaning: parts.meaning,
            detector: LanguageDetector::default(),
            policy: parts.policy,
            config: parts.config,
            draft_lane: false,
        }
    }

    /// Queued messages whose answer needs the chat model go to the queue's
    /// draft lane (its workers run them with the model) instead of holding
    /// a fast-lane worker while the model writes.
    pub fn with_draft_lane(mut self, on: bool) -> Pipeline {
        self.draft_lane = on;
        self
    }

    /// Translations and agent summaries are written by `translator`
    /// rather than by the drafts' writer (`models.roles.translations`).
    pub fn with_translator(mut self, translator: Option<Arc<dyn Writer>>) -> Pipeline {
        self.translator = translator;
        self
    }

    /// The writer of translations and summaries: the translator when one
    /// is set, else the drafts' writer.
    pub(super) fn translator(&self) -> Option<&Arc<dyn Writer>> {
        self.translator.as_ref().or(self.writer.as_ref())
    }

    /// Runs the pipeline for one stored inbound message and stores the
    /// decision. Running it again for the same message changes nothing and
    /// returns the stored trace.
    pub async fn process(
        &self,
        tenant: TenantId,
        message: MessageId,
        now: DateTime<Utc>,
    ) -> Result<serde_json::Value, StageError> {
        self.process_with(tenant, message, now, Generation::Inline)
            .await
    }

    /// [`Pipeline::process`], where under [`Generation::Defer`] a message
    /// whose answer needs the chat model stops before it with the
    /// [`DRAFT_LANE`] stage error, nothing stored.
    pub async fn process_with(
        &self,
        tenant: TenantId,
        message: MessageId,
        now: DateTime<Utc>,
        generation: Generation,
    ) -> Result<serde_json::Value, StageError> {
        let started = Instant::now();
        let ctx = match Context::load(self.store.as_ref(), &self.policy, tenant, message).await? {
            Loaded::Decided(existing) => return Ok(existing.trace),
            Loaded::Fresh(ctx) => ctx,
        };
        let mut findings = self.find(&ctx, now, generation).await?;
        findings.timings.insert("load_and_find", ms(started));
        let mut ctx = ctx;
        for _ in 0..CUSTODY_RETRIES {
            match self.decide_and_record(&ctx, &findings, now, started).await {
                Err(StageError {
                    stage: "custody", ..
                }) => {
                    findings
                        .notes
                        .push("a person took the conversation while it was decided".into());
                    ctx = match Context::load(self.store.as_ref(), &self.policy, tenant, message)
                        .await?
                    {
                        Loaded::Decided(existing) => return Ok(existing.trace),
                        Loaded::Fresh(ctx) => ctx,
                    };
                }
                other => return other,
            }
        }
        Err(StageError {
            stage: "custody",
            message: "the conversation kept changing hands while it was decided".into(),
            retryable: true,
        })
    }

    /// Understands the message, retrieves knowledge and builds the
    /// candidate answer.
    pub(super) async fn find(
        &self,
        ctx: &Context,
        now: DateTime<Utc>,
        generation: Generation,
    ) -> Result<Findings, StageError> {
        let mut timings = BTreeMap::new();
        let mut notes = Vec::new();
        if let Some(problem) = &ctx.policy_problem {
            notes.push(format!(
                "the shop's stored policy was not applied: {problem}"
            ));
        }
        // A reply to our clarifying question is read together with the
        // question it completes.
        let query = match (ctx.answers_clarification, ctx.history.last()) {
            (true, Some(asked)) => format!("{asked}\n{}", ctx.text),
            _ => ctx.text.clone(),
        };
        let t = Instant::now();
        let understood = self
            .understand
            .understand_for(ctx.tenant, &query, &ctx.history)
            .await?;
        timings.insert("understand", ms(t));
        let injection = prompt::injection_attempt(&ctx.text);
        let lang = ctx.reply_language(understood.language.as_deref());

        let t = Instant::now();
        let destination =
            clarify::destination(&ctx.text, &ctx.history, &ctx.orders, &ctx.shop.market);
        let several = clarify::questions(&ctx.text);
        let mut several_questions = several.len() > 1;
        // Shipping knowledge is searched for, and kept to, the country the
        // parcel goes to.
        let country = destination
            .as_ref()
            .and_then(|d| clarify::country_name(&d.country).map(|name| (d.country.as_str(), name)));
        let shipping_question = understood.intent == "shipping_time_cost" || several_questions;
        let search = |text: String| {
            let text = match (shipping_question, country) {
                (true, Some((_, name))) => format!("{text} ({name})"),
                _ => text,
            };
            async move {
                let hits = self.retrieve(ctx.tenant, &text).await?;
                Ok::<_, StageError>(match country {
                    Some((code, _)) => clarify::for_destination(hits, code),
                    None => hits,
                })
            }
        };
        let mut hits = if several_questions {
            let mut per_question = Vec::new();
            for question in several.iter().take(3) {
                per_question.push(search(question.clone()).await?);
            }
            let whole = search(query.clone()).await?;

            match clarify::one_entry_answers_all(&several, &per_question, &whole) {
                Some(id) => {
                    // "What can I pay with? Do you take COD?": one FAQ
                    // entry answers both, so the message is one question.
                    notes.push(format!(
                        "{} questions in one message, all answered by {id}",
                        several.len()
                    ));
                    several_questions = false;
                    whole
                }
                None => {
                    notes.push(format!("{} questions in one message", several.len()));
                    clarify::merge_hits(per_question, self.config.retrieval_limit)
                }
            }
        } else {
            search(query.clone()).await?
        };
        let mut query = query;
        if !several_questions
            && clarify::PRODUCT_INTENTS.contains(&understood.intent.as_str())
            && !clarify::names_a_product(&query, &hits)
        {
            // "Does it come in XL?" after a message that named the product.
            if let Some(before) = ctx.history.last().filter(|_| !ctx.answers_clarification) {
                let joined = format!("{before}\n{}", ctx.text);
                let again = self.retrieve(ctx.tenant, &joined).await?;
                if clarify::names_a_product(&joined, &again) {
                    notes.push("the product was named in the buyer's previous message".into());
                    hits = again;
                    query = joined;
                }
            }
        }
        if let Some(destination) = &destination {
            notes.push(format!(
                "destination {} (from the {})",
                destination.country, destination.from
            ));
        }
        timings.insert("retrieve", ms(t));

        let signals = signals(&understood, ctx, injection.is_some());
        let best = policy::with_written_answer(&ctx.policy, &signals, ctx.custody);
        let wants_text = matches!(best, Action::Send | Action::Draft);
        let order = pick_order(&ctx.orders, &understood.entities);
        let mut models = understood.models.clone();
        let t = Instant::now();
        let answered = self
            .answer(
                &AnswerInput {
                    ctx,
                    understood: &understood,
                    hits: &hits,
                    query: &query,
                    order,
                    lang: &lang,
                    now,
                    wants_text,
                    destination_known: destination.is_some(),
                    several_questions,
                    generation,
                    draft_only: best == Action::Draft,
                },
                &mut notes,
                &mut models,
            )
            .await;
        let (candidate, draft_pending) = match answered {
            Err(e) if e.stage == DRAFT_LATER => {
                notes.push("the draft is written after the decision, by its follow-up".into());
                (None, true)
            }
            other => (other?, false),
        };
        timings.insert("answer", ms(t));
        let (candidate, withheld) = match candidate {
            Some(c) if c.is_echo() => {
                notes.push(
                    "the written reply only repeated the conversation; none is offered".into(),
                );
                (None, Some(c))
            }
            other => (other, None),
        };
        Ok(Findings {
            understood,
            injection,
            hits,
            lang,
            candidate,
            withheld,
            draft_pending,
            notes,
            models,
            timings,
        })
    }

    async fn retrieve(
        &self,
        tenant: TenantId,
        query: &str,
    ) -> Result<Vec<KnowledgeHit>, StageError> {
        match &self.knowledge {
            Some(kb) => kb.search(tenant, query, self.config.retrieval_limit).await,
            None => Ok(Vec::new()),
        }
    }

    /// Decides once from everything found and stores the decision. A
    /// `custody` stage error means a person took the conversation while it
    /// was decided: load it again and decide again.
    async fn decide_and_record(
        &self,
        ctx: &Context,
        f: &Findings,
        now: DateTime<Utc>,
        started: Instant,
    ) -> Result<serde_json::Value, StageError> {
        let signals = signals(&f.understood, ctx, f.injection.is_some());
        let evidence = Evidence {
            signals,
            // A draft left to the follow-up counts as the best it can be:
            // the route is a draft for a person whatever its words.
            answer: f.candidate.as_ref().map(Candidate::evidence).or_else(|| {
                f.draft_pending.then_some(AnswerEvidence {
                    provenance: Provenance::Generated,
                    verified: true,
                    order_late: false,
                })
            }),
            withheld: f.withheld.is_some(),
            custody: ctx.custody,
        };
        let decision = policy::decide(&ctx.policy, &evidence, now);
        let reply_text = match decision.action {
            Action::Send => f.candidate.as_ref().map(|c| c.text.clone()),
            _ if decision.holding_reply => Some(templates::holding_reply(&f.lang).text),
            _ => None,
        };
        let draft = match decision.action {
            Action::Draft | Action::Handoff => f.candidate.as_ref().map(|c| c.text.clone()),
            _ => None,
        };
        // What a human reads besides the draft (the message in their own
        // language, an AI summary) takes the chat model seconds: it is a
        // follow-up job queued with the decision, so the route, the draft
        // and the handoff are stored and visible at once.
        let follow_up =
            self.writer.is_some() && matches!(decision.action, Action::Draft | Action::Handoff);
        let outcome = Outcome {
            decision: &decision,
            reply: reply_text.clone(),
            draft: draft.clone(),
            follow_up,
            draft_pending: f.draft_pending && follow_up,
        };
        let trace = self.trace(ctx, f, outcome, started);
        let trace_json = serde_json::to_value(&trace).map_err(|e| StageError {
            stage: "store",
            message: e.to_string(),
            retryable: false,
        })?;
        let reply = reply_text.map(|text| NewReply {
            text: MessageText::from_stored(crate::domain::redact_card_numbers(&text)),
            direction: Direction::Outbound,
            author: Author::Ai,
            author_name: None,
            external_id: None,
        });
        let status = match decision.action {
            Action::Draft | Action::Handoff => ConversationStatus::Pending,
            Action::Send | Action::Observe => ConversationStatus::Open,
        };
        let recorded = self
            .store
            .record_decision(
                ctx.tenant,
                &NewDecision {
                    conversation: ctx.detail.summary.id,
                    message: ctx.message,
                    layer: decision.layer,
                    action: decision.action,
                    language: f.understood.language.clone(),
                    translation: None,
                    reply,
                    draft,
                    status,
                    trace: trace_json.clone(),
                    follow_up,
                },
            )
            .await;
        match recorded {
            Ok((stored, already_decided)) => {
                // Counted once per message: a job run again after a crash
                // finds its decision stored and counts nothing.
                if let (false, Some(answer)) = (already_decided, &f.candidate) {
                    self.count_asked(ctx.tenant, answer, &f.lang).await;
                }
                // The job's `queue.job` span, exported when tracing is on.
                let span = tracing::Span::current();
                span.record("layer", decision.layer.get());
                span.record("action", tracing::field::debug(decision.action));
                Ok(stored.trace)
            }
            Err(StoreError::Conflict(why)) => Err(StageError {
                stage: "custody",
                message: why,
                retryable: true,
            }),
            Err(e) => Err(store_error(e)),
        }
    }

    fn trace(&self, ctx: &Context, f: &Findings, outcome: Outcome<'_>, started: Instant) -> Trace {
        let Outcome {
            decision,
            reply,
            draft,
            follow_up,
            draft_pending,
        } = outcome;
        let order =
            pick_order(&ctx.orders, &f.understood.entities).map(|o| o.record.order_number.clone());
        let mut sources: Vec<SourceRef> = f
            .hits
            .iter()
            .map(|h| SourceRef {
                id: h.id.clone(),
                kind: h.kind.clone(),
                score: h.score,
                similarity: h.similarity,
            })
            .collect();
        if let Some(candidate) = &f.candidate {
            for id in &candidate.sources {
                if !sources.iter().any(|s| &s.id == id) {
                    sources.insert(
                        0,
                        SourceRef {
                            id: id.clone(),
                            kind: id.split(':').next().unwrap_or("").into(),
                            score: 1.0,
                            similarity: None,
                        },
                    );
                }
            }
        }
        let answer_kind = match (&f.candidate, decision.holding_reply) {
            (_, true) => AnswerKind::Holding,
            (Some(c), false) => c.provenance.answer_kind(),
            (None, false) if f.withheld.is_some() => AnswerKind::Withheld,
            (None, false) => AnswerKind::None,
        };
        let considered = f.candidate.as_ref().or(f.withheld.as_ref());
        let mut timings = f.timings.clone();
        timings.insert("total", ms(started));
        Trace {
            head: TraceHead::new(&f.understood, f.injection.clone()),
            sources,
            answer_kind,
            answer: considered.map(Candidate::record),
            clarification: f.candidate.as_ref().and_then(|c| c.clarification),
            order,
            custody: CustodyRecord {
                holder: ctx.custody.holder,
                human_replied_since: ctx.custody.human_replied_since,
                resolved: ctx.custody.resolved,
            },
            layer: decision.layer.get(),
            action: decision.action,
            mode: decision.mode,
            reasons: decision.reasons.clone(),
            guard: considered
                .and_then(|c| c.verification.as_ref())
                .map(|v| v.violations())
                .unwrap_or_default(),
            reply,
            draft,
            handoff: (decision.action == Action::Handoff)
                .then(|| handoff(ctx, &f.understood, &decision.reasons, f.candidate.as_ref())),
            models: f.models.clone(),
            notes: f.notes.clone(),
            follow_up: follow_up.then_some(FollowUpState {
                state: "queued",
                writes_draft: draft_pending,
            }),
            generation: considered.and_then(|c| c.cost.clone()),
            timings_ms: timings,
        }
    }

    /// Hands a message to a human when the pipeline cannot run for it (a
    /// model failed for good, or retries ran out), so nothing is left
    /// unanswered and unseen.
    pub async fn hand_off_after_failure(
        &self,
        tenant: TenantId,
        message: MessageId,
        error: &StageError,
    ) -> Result<(), StoreError> {
        let Some(conversation) = self.store.message_conversation(tenant, message).await? else {
            return Ok(());
        };
        let trace = FailureTrace {
            layer: 3,
            action: Action::Handoff,
            reasons: vec![Reason::PipelineFailed],
            error: error.to_string(),
        };
        self.store
            .record_decision(
                tenant,
                &NewDecision {
                    conversation,
                    message,
                    layer: Layer::try_from(3).expect("3 is a layer"),
                    action: Action::Handoff,
                    language: None,
                    translation: None,
                    reply: None,
                    draft: None,
                    status: ConversationStatus::Pending,
                    trace: serde_json::to_value(&trace)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    follow_up: false,
                },
            )
            .await?;
        Ok(())
    }
}

/// The policy's view of what the understand stage found.
fn signals(understood: &Understood, ctx: &Context, injection: bool) -> Signals {
    Signals {
        intent: understood.intent.clone(),
        confidence: understood.confidence,
        out_of_scope: understood.out_of_scope,
        anger: understood.anger,
        urgent: understood.urgent,
        human_requested: understood.human_requested,
        repeated_question: understood.repeated,
        vip: ctx.detail.buyer.is_vip,
        risky_request: understood.binding_request.is_some(),
        injection_suspected: injection,
        learned_route: understood
            .learned_route
            .as_ref()
            .map(|m| super::policy::LearnedRoute {
                route: m.route,
                similarity: m.similarity,
            }),
    }
}

/// Everything a person needs to take over without asking the buyer again.
fn handoff(
    ctx: &Context,
    understood: &Understood,
    reasons: &[Reason],
    candidate: Option<&Candidate>,
) -> Handoff {
    let buyer = &ctx.detail.buyer;
    let order = pick_order(&ctx.orders, &understood.entities);
    Handoff {
        summary: summary(understood, reasons, order),
        buyer: BuyerCard {
            id: buyer.platform_buyer_id.clone(),
            name: buyer.display_name.clone(),
            language: buyer.language.clone(),
            member_level: buyer.member_level.clone(),
            vip: buyer.is_vip,
            lifetime_value_cents: buyer.lifetime_value_cents,
            currency: buyer.currency.clone(),
        },
        orders: ctx
            .orders
            .iter()
            .take(5)
            .map(|o| OrderCard {
                order_number: o.record.order_number.clone(),
                status: o.record.status.clone(),
                total_cents: o.record.total_cents,
                currency: o.record.currency.clone(),
                carrier: o.record.carrier.clone(),
                tracking_number: o.record.tracking_number.clone(),
                placed_at: o.record.placed_at,
                expected_delivery: o.record.expected_delivery,
            })
            .collect(),
        recent_messages: ctx.detail.messages[..=ctx.position]
            .iter()
            .rev()
            .take(8)
            .rev()
            .map(|m| TurnRecord {
                author: m.author,
                text: m.text.as_str().to_string(),
            })
            .collect(),
        suggested_replies: candidate.iter().map(|c| c.text.clone()).collect(),
    }
}

/// A one-paragraph summary for the human who takes over, from the
/// understand stage's findings (no generation, so it is instant and
/// cannot invent anything).
fn summary(understood: &Understood, reasons: &[Reason], order: Option<&Order>) -> String {
    let reasons: Vec<String> = reasons
        .iter()
        .filter_map(|r| {
            serde_json::to_value(r)
                .ok()?
                .get("reason")?
                .as_str()
                .map(|s| s.replace('_', " "))
        })
        .collect();
    let mut out = format!(
        "Buyer writes in {} about {} (confidence {:.2}); sentiment {}, anger {}/2{}.",
        understood
            .language
            .as_deref()
            .unwrap_or("an unidentified language"),
        understood.intent.replace('_', " "),
        understood.confidence,
        understood.sentiment,
        understood.anger,
        if understood.urgent { ", urgent" } else { "" },
    );
    if let Some(order) = order {
        out.push_str(&format!(
            " Order {} is {}.",
            order.record.order_number,
            order.record.status.replace('_', " ")
        ));
    }
    if !understood.entities.is_empty() {
        let list: Vec<String> = understood
            .entities
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push_str(&format!(" Mentions {}.", list.join(", ")));
    }
    if !reasons.is_empty() {
        out.push_str(&format!(" Handed over because: {}.", reasons.join(", ")));
    }
    out
}

/// The pipeline shared with work outside the queue (translations prepared
/// ahead) handles jobs as itself.
#[async_trait]
impl JobHandler for Arc<Pipeline> {
    async fn handle(&self, job: &Job) -> Result<Handled, JobError> {
        self.as_ref().handle(job).await
    }

    async fn give_up(&self, job: &Job, why: &GiveUp) -> Result<(), JobError> {
        self.as_ref().give_up(job, why).await
    }
}

#[async_trait]
impl JobHandler for Pipeline {
    async fn handle(&self, job: &Job) -> Result<Handled, JobError> {
        if job.kind != JOB_INBOUND_MESSAGE && job.kind != JOB_ENRICH_DECISION {
            return Err(JobError::Permanent(format!(
                "unknown job kind {:?}",
                job.kind
            )));
        }
        let tenant = job
            .tenant_id
            .ok_or_else(|| JobError::Permanent("job has no tenant".into()))?;
        let message: MessageId = job
            .payload
            .get("message_id")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| JobError::Permanent("payload has no valid message_id".into()))?;
        if job.kind == JOB_ENRICH_DECISION {
            return match self.follow_up(tenant, message).await {
                Ok(_) => Ok(Handled::Done),
                Err(e) if e.retryable && job.attempts < job.max_attempts => {
                    Err(JobError::Retryable(e.to_string()))
                }
                Err(e) => {
                    // The decision stands without its follow-up.
                    tracing::warn!(%message, error = %e, "decision follow-up abandoned");
                    Ok(Handled::Done)
                }
            };
        }
        let generation = if self.draft_lane && job.lane == JobLane::Fast {
            Generation::Defer
        } else {
            Generation::Inline
        };
        match self
            .process_with(tenant, message, Utc::now(), generation)
            .await
        {
            Err(e) if e.is_deferred() => {
                tracing::debug!(%message, "the answer needs the chat model; to the draft lane");
                Ok(Handled::ToLane(JobLane::Draft))
            }
            Ok(trace) => {
                tracing::info!(
                    %message,
                    layer = trace["layer"].as_u64().unwrap_or_default(),
                    intent = trace["intent"].as_str().unwrap_or_default(),
                    total_ms = trace["timings_ms"]["total"].as_f64().unwrap_or_default(),
                    "message decided"
                );
                Ok(Handled::Done)
            }
            Err(e) if e.retryable && job.attempts < job.max_attempts => {
                Err(JobError::Retryable(e.to_string()))
            }
            Err(e) => {
                tracing::warn!(%message, error = %e, "pipeline failed; handing off to a human");
                self.hand_off_after_failure(tenant, message, &e)
                    .await
                    .map_err(|store| JobError::Retryable(store.to_string()))?;
                Ok(Handled::Done)
            }
        }
    }

    /// The queue gave up on a job: a buyer message goes to a human (unless
    /// it was decided meanwhile: the decision stands); a follow-up is
    /// dropped and its decision stands without it.
    async fn give_up(&self, job: &Job, why: &GiveUp) -> Result<(), JobError> {
        if job.kind != JOB_INBOUND_MESSAGE {
            tracing::warn!(kind = %job.kind, cause = why.cause.as_str(), detail = %why.detail, "follow-up dropped");
            return Ok(());
        }
        let tenant = job
            .tenant_id
            .ok_or_else(|| JobError::Permanent("job has no tenant".into()))?;
        let message: MessageId = job
            .payload
            .get("message_id")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| JobError::Permanent("payload has no valid message_id".into()))?;
        let error = StageError {
            stage: "queue",
            message: format!("{}: {}", why.cause.as_str(), why.detail),
            retryable: false,
        };
        tracing::warn!(%message, error = %error, "giving up on the message; handing off to a human");
        self.hand_off_after_failure(tenant, message, &error)
            .await
            .map_err(JobError::from)
    }
}
