//! What the pipeline needs from the rest of kedai, as small traits: the
//! understand stage, knowledge-base search and the chat model. The server
//! plugs in the real implementations (e5 classifiers, the knowledge base,
//! the model runtime); plumbing tests plug in fakes.

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::TenantId;
use crate::inference::chat::ChatMessage;

/// A stage that could not run. `retryable` failures (a model busy, an index
/// rebuilding) make the job retry later; others fail it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct StageError {
    pub stage: &'static str,
    pub message: String,
    pub retryable: bool,
}

impl StageError {
    /// The run stopped because its answer needs the chat model and the
    /// queue's draft lane writes it (see `Generation::Defer`).
    pub fn is_deferred(&self) -> bool {
        self.stage == super::run::DRAFT_LANE
    }
}

/// What the understand stage found in one buyer message.
#[derive(Debug, Clone, Serialize)]
pub struct Understood {
    /// ISO 639-1 code, when identified.
    pub language: Option<String>,
    pub intent: String,
    /// Calibrated probability of `intent`.
    pub confidence: f32,
    pub out_of_scope: bool,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: String,
    /// 0 none, 1 annoyed, 2 angry.
    pub anger: u8,
    /// Probability that the buyer is at least annoyed.
    pub anger_probability: f32,
    pub urgent: bool,
    pub human_requested: bool,
    /// The buyer already asked this in the conversation, or says so.
    pub repeated: bool,
    /// `discount` or `compensation`: the buyer asks for something binding.
    pub binding_request: Option<String>,
    /// (kind, value): order numbers, tracking numbers, SKUs, emails, phones.
    pub entities: Vec<(String, String)>,
    /// Model ids used, for the trace.
    pub models: Vec<String>,
    /// The route the tenant's people taught for messages like this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_route: Option<crate::understand::routes::RouteMatch>,
}

#[async_trait]
pub trait Understand: Send + Sync {
    /// `history`: the buyer's earlier messages in this conversation, oldest
    /// first.
    async fn understand(&self, text: &str, history: &[String]) -> Result<Understood, StageError>;

    /// As [`Understand::understand`] for a message of `tenant`, with the
    /// heads that tenant learned when it has some of its own.
    async fn understand_for(
        &self,
        tenant: TenantId,
        text: &str,
        history: &[String],
    ) -> Result<Understood, StageError> {
        let _ = tenant;
        self.understand(text, history).await
    }
}

/// One knowledge-base hit.
#[derive(Debug, Clone, Serialize)]
pub struct KnowledgeHit {
    /// e.g. `faq:returns-window`, `product:TEE-OVS-01`.
    pub id: String,
    /// `faq`, `policy`, `product` or `shipping`.
    pub kind: String,
    pub title: String,
    /// The passage as indexed.
    pub text: String,
    /// For FAQ entries: the seller's answer, usable as it is.
    pub answer: Option<String>,
    pub language: Option<String>,
    /// Fused rank score and the dense cosine similarity when the dense
    /// index took part.
    pub score: f32,
    pub similarity: Option<f32>,
    /// The structured entry (a product's variants with stock and price, a
    /// shipping rule's days and cost); `null` when there is none.
    pub fields: serde_json::Value,
    /// For products: variant SKUs whose options the query names, best first.
    pub matched_variants: Vec<String>,
}

#[async_trait]
pub trait Knowledge: Send + Sync {
    async fn search(
        &self,
        tenant: TenantId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<KnowledgeHit>, StageError>;
}

/// What the chat model wrote, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Written {
    /// Not part of the cost record.
    #[serde(skip)]
    pub text: String,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys and values were reused, not run again.
    pub reused_prompt_tokens: usize,
    pub completion_tokens: usize,
    /// The token budget ran out before the model finished.
    pub cut_short: bool,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Tokens guessed from the prompt and checked several at a time, and
    /// how many of them the model kept.
    pub guessed_tokens: usize,
    pub accepted_guesses: usize,
}

impl Written {
    /// Text with no cost recorded (fakes, cached results).
    pub fn text(text: impl Into<String>) -> Written {
        Written {
            text: text.into(),
            ..Written::default()
        }
    }
}

/// The chat model, for drafts and translations.
#[async_trait]
pub trait Writer: Send + Sync {
    fn model_id(&self) -> String;
    /// Requests the model is writing or has waiting. Background work
    /// (follow-ups) starts only when this is 0 and gives way when another
    /// request arrives, so buyers' drafts go first.
    fn in_flight(&self) -> usize {
        0
    }
    /// The model is still loading (a server just started): work that can
    /// wait for it waits, rather than going without.
    fn loading(&self) -> bool {
        false
    }
    async fn write(
        &self,
        messages: Vec<ChatMessage>,
        max_tokens: usize,
    ) -> Result<Written, StageError>;
    /// As [`Writer::write`] for a follow-up: dropping the future stops the
    /// model sooner (between chunks of the prompt, where it can).
    async fn write_in_background(
        &self,
        messages: Vec<ChatMessage>,
        max_tokens: usize,
    ) -> Result<Written, StageError> {
        self.write(messages, max_tokens).await
    }
}
