//! The record of one pipeline run: what was understood, what was found,
//! which answer was considered and where it came from, what verified it,
//! who held the conversation, what the policy decided and why, and what a
//! human gets with a handoff.
//!
//! Typed structs, serialised once into the decision's trace; nothing here
//! is assembled as loose JSON. Keys of the top level stay flat (`layer`,
//! `intent`, `reasons`, `reply`, ...) so the stored traces read the same
//! for every consumer (the API, `kedai ask`, evaluation, the workbench).

use std::collections::BTreeMap;

use serde::Serialize;

use super::guard::Violation;
use super::policy::{Action, Mode, Reason};
use super::ports::{Understood, Written};
use super::verify::Verification;
use crate::domain::Custody;

/// Where a candidate answer came from. Only the seller's own words, our
/// templates filled from records, and machine-written text that passed
/// verification may be sent without a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// The order-status template, filled from the order record.
    OrderRecord,
    /// The stock template, filled from the product catalogue.
    Catalogue,
    /// A greeting, thanks or good-review template.
    Pleasantry,
    /// A clarifying question template: the message could be about several
    /// things, so the buyer is asked rather than guessed at.
    Clarifying,
    /// The seller's FAQ answer, written in the buyer's language.
    SellerText,
    /// A translation of the seller's answer that a person approved or
    /// wrote: the seller's own words from then on.
    ApprovedTranslation,
    /// The chat model's translation of the seller's answer.
    MachineTranslation,
    /// A reply the chat model wrote from the retrieved knowledge.
    Generated,
}

impl Provenance {
    /// Text the chat model wrote; it may only be sent once verified.
    pub fn machine_written(self) -> bool {
        matches!(self, Provenance::MachineTranslation | Provenance::Generated)
    }

    /// The trace's `answer_kind` for an answer of this provenance.
    pub fn answer_kind(self) -> AnswerKind {
        match self {
            Provenance::OrderRecord => AnswerKind::OrderStatus,
            Provenance::Catalogue => AnswerKind::Catalogue,
            Provenance::Pleasantry => AnswerKind::Pleasantry,
            Provenance::Clarifying => AnswerKind::Clarify,
            Provenance::SellerText => AnswerKind::Faq,
            Provenance::ApprovedTranslation => AnswerKind::FaqApproved,
            Provenance::MachineTranslation => AnswerKind::FaqTranslated,
            Provenance::Generated => AnswerKind::Draft,
        }
    }
}

/// The kind of answer the decision carries, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    OrderStatus,
    Catalogue,
    Pleasantry,
    Clarify,
    Faq,
    FaqApproved,
    FaqTranslated,
    Draft,
    /// A holding reply was sent while a person takes over.
    Holding,
    /// Text was written but held back as a mere echo of the conversation.
    Withheld,
    None,
}

/// A knowledge-base hit as the trace shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRef {
    pub id: String,
    pub kind: String,
    pub score: f32,
    pub similarity: Option<f32>,
}

/// The answer considered for this message.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerRecord {
    pub provenance: Provenance,
    pub text: String,
    /// Knowledge entries or records the answer rests on (`faq:returns`,
    /// `order:SPE-2611-00123`).
    pub sources: Vec<String>,
    /// For machine-written text: the checks it passed or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
}

/// Who held the conversation when the decision was made.
#[derive(Debug, Clone, Serialize)]
pub struct CustodyRecord {
    pub holder: Custody,
    /// A person wrote to the buyer after this message arrived.
    pub human_replied_since: bool,
    pub resolved: bool,
}

/// The buyer as the handoff shows them.
#[derive(Debug, Clone, Serialize)]
pub struct BuyerCard {
    pub id: String,
    pub name: Option<String>,
    pub language: Option<String>,
    pub member_level: Option<String>,
    pub vip: bool,
    pub lifetime_value_cents: i64,
    pub currency: Option<String>,
}

/// An order as the handoff shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OrderCard {
    pub order_number: String,
    pub status: String,
    pub total_cents: i64,
    pub currency: String,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub placed_at: chrono::DateTime<chrono::Utc>,
    pub expected_delivery: Option<chrono::DateTime<chrono::Utc>>,
}

/// One turn of the conversation as the handoff shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRecord {
    pub author: crate::domain::Author,
    pub text: String,
}

/// What a human gets with a layer-3 conversation, so the buyer never has
/// to repeat themselves.
#[derive(Debug, Clone, Serialize)]
pub struct Handoff {
    /// What the understand stage found, in one paragraph (no generation).
    pub summary: String,
    pub buyer: BuyerCard,
    pub orders: Vec<OrderCard>,
    pub recent_messages: Vec<TurnRecord>,
    pub suggested_replies: Vec<String>,
}

/// The queued follow-up, as the trace records it at decision time; the
/// follow-up's own record is stored beside the trace when it has run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FollowUpState {
    pub state: &'static str,
    /// The follow-up also writes the draft (the decision did not wait for
    /// the chat model: see `run::DRAFT_LATER`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub writes_draft: bool,
}

/// The record of one run, stored as the decision's trace and printed by
/// `kedai ask`.
#[derive(Debug, Clone, Serialize)]
pub struct Trace {
    #[serde(flatten)]
    pub head: TraceHead,
    pub sources: Vec<SourceRef>,
    pub answer_kind: AnswerKind,
    /// The answer considered, with its provenance and verification.
    pub answer: Option<AnswerRecord>,
    /// Why the buyer is asked a clarifying question, when they are.
    pub clarification: Option<super::clarify::Clarification>,
    pub order: Option<String>,
    pub custody: CustodyRecord,
    pub layer: u8,
    pub action: Action,
    pub mode: Mode,
    pub reasons: Vec<Reason>,
    pub guard: Vec<Violation>,
    pub reply: Option<String>,
    pub draft: Option<String>,
    pub handoff: Option<Handoff>,
    pub models: Vec<String>,
    pub notes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<FollowUpState>,
    /// Tokens and time of the text the chat model wrote for this answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<Written>,
    pub timings_ms: BTreeMap<&'static str, f64>,
}

/// The fields of a trace that come from understanding the message.
#[derive(Debug, Clone, Serialize)]
pub struct TraceHead {
    pub lang: Option<String>,
    pub intent: String,
    pub confidence: f32,
    pub out_of_scope: bool,
    pub sentiment: String,
    pub anger: u8,
    pub anger_probability: f32,
    pub urgent: bool,
    pub human_requested: bool,
    pub repeated: bool,
    /// `discount` or `compensation` when the buyer asks for one.
    pub binding_request: Option<String>,
    pub entities: Vec<(String, String)>,
    /// What in the buyer's text looked like an attempt to instruct the AI.
    pub injection: Option<String>,
    /// The route the tenant's people taught for messages like this one:
    /// `person` or `auto`, the similarity and the corrected message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_route: Option<crate::understand::routes::RouteMatch>,
}

impl TraceHead {
    pub fn new(understood: &Understood, injection: Option<String>) -> TraceHead {
        TraceHead {
            lang: understood.language.clone(),
            intent: understood.intent.clone(),
            confidence: understood.confidence,
            out_of_scope: understood.out_of_scope,
            sentiment: understood.sentiment.clone(),
            anger: understood.anger,
            anger_probability: understood.anger_probability,
            urgent: understood.urgent,
            human_requested: understood.human_requested,
            repeated: understood.repeated,
            binding_request: understood.binding_request.clone(),
            entities: understood.entities.clone(),
            injection,
            learned_route: understood.learned_route.clone(),
        }
    }
}

/// The trace of a message the pipeline could not run for, handed to a
/// person.
#[derive(Debug, Clone, Serialize)]
pub struct FailureTrace {
    pub layer: u8,
    pub action: Action,
    pub reasons: Vec<Reason>,
    pub error: String,
}
