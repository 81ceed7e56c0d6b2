//! The real stages behind the pipeline's ports: the understand stage
//! ([`Understander`], trained at start-up from the exemplar folders),
//! knowledge-base search through [`KbService`] and text generation through
//! the model runtime ([`Engine`]).
//!
//! The understand stage is `understand.rs`'s, the runtime's embedder
//! `embedder.rs`'s; this file holds knowledge search and the writer.

mod embedder;
mod understand;

use std::sync::Arc;

use async_trait::async_trait;

use super::ports::{Knowledge, KnowledgeHit, StageError, Writer, Written};
use crate::domain::TenantId;
use crate::engine::{scope, ChatOptions, Engine, EngineError, Lane, ModelKind, Role};
use crate::inference::chat::{ChatMessage, FinishReason, GenerationParams};
use crate::kb::service::MAX_QUERY_CHARS;
use crate::kb::{KbError, KbQuery, KbService};

pub use embedder::EngineEmbedder;
pub use understand::{
    ReloadError, SharedQueryEmbedder, UnderstandSources, UnderstandStage, UnderstandState,
};

/// Knowledge-base search for the pipeline.
pub struct KbKnowledge {
    pub kb: Arc<KbService>,
}

fn kb_error(err: KbError) -> StageError {
    let retryable = !matches!(err, KbError::InvalidQuery(_));
    StageError {
        stage: "retrieve",
        message: err.to_string(),
        retryable,
    }
}

#[async_trait]
impl Knowledge for KbKnowledge {
    async fn search(
        &self,
        tenant: TenantId,
        query: &str,
        limit: usize,
    ) -> Result<Vec<KnowledgeHit>, StageError> {
        // Long messages are searched by their beginning; an empty one
        // (emoji only, whitespace) finds nothing rather than failing.
        let text: String = query.chars().take(MAX_QUERY_CHARS).collect();
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let query = KbQuery::parse(&text, Some(limit), None, None).map_err(kb_error)?;
        let results = self.kb.search(tenant, &query).await.map_err(kb_error)?;
        Ok(results
            .hits
            .into_iter()
            .map(|hit| KnowledgeHit {
                id: format!("{}:{}", hit.kind.as_str(), hit.id),
                kind: hit.kind.as_str().to_string(),
                title: hit.title,
                answer: hit.fields["answer"].as_str().map(str::to_string),
                text: hit.text,
                language: Some(hit.lang),
                score: hit.score as f32,
                similarity: hit.dense.map(|d| d.score),
                fields: hit.fields,
                matched_variants: hit.matched_variants,
            })
            .collect())
    }
}

/// The chat model the runtime gives `role` (drafts, or translations and
/// summaries): greedy, so the same message gets the same draft.
pub struct EngineWriter {
    pub engine: Engine,
    pub role: Role,
}

impl EngineWriter {
    fn chat_model(&self) -> Option<String> {
        let model = self.engine.model_for(self.role);
        self.engine
            .models()
            .iter()
            .any(|m| m.kind == ModelKind::Chat && m.id == model)
            .then_some(model)
    }
}

#[async_trait]
impl Writer for EngineWriter {
    fn loading(&self) -> bool {
        let model = self.engine.model_for(self.role);
        self.engine
            .models()
            .iter()
            .any(|m| m.id == model && m.state == crate::engine::ModelState::Loading)
    }

    fn model_id(&self) -> String {
        self.chat_model().unwrap_or_default()
    }

    /// The pipeline's own chat requests only: `/v1` clients have slots of
    /// their own and are served after the pipeline, so their traffic must
    /// not hold follow-ups back.
    fn in_flight(&self) -> usize {
        self.chat_model()
            .map_or(0, |model| self.engine.pipeline_in_flight(&model))
    }

    async fn write(
        &self,
        messages: Vec<ChatMessage>,
        max_tokens: usize,
    ) -> Result<Written, StageError> {
        self.generate(messages, max_tokens, false).await
    }

    async fn write_in_background(
        &self,
        messages: Vec<ChatMessage>,
        max_tokens: usize,
    ) -> Result<Written, StageError> {
        self.generate(messages, max_tokens, true).await
    }
}

impl EngineWriter {
    async fn generate(
        &self,
        messages: Vec<ChatMessage>,
        max_tokens: usize,
        background: bool,
    ) -> Result<Written, StageError> {
        let failed = |err: EngineError| StageError {
            stage: "draft",
            retryable: matches!(
                err,
                EngineError::Overloaded { .. } | EngineError::Unavailable { .. }
            ),
            message: err.to_string(),
        };
        let model = self.chat_model().ok_or_else(|| StageError {
            stage: "draft",
            message: "no chat model is configured".into(),
            retryable: false,
        })?;
        let params = GenerationParams {
            max_tokens: max_tokens.clamp(1, self.engine.chat_max_tokens()),
            repeat_penalty: 1.1,
            ..GenerationParams::default()
        };
        // The job running this sets whose work it is (`scope::within`).
        let scope = scope::current();
        let stream = if background {
            self.engine
                .chat_in_background(&model, messages, params, scope)
        } else {
            self.engine.chat_with(
                &model,
                messages,
                params,
                ChatOptions {
                    lane: Lane::Reply,
                    stream: false,
                    scope,
                },
            )
        }
        .map_err(failed)?;
        let generation = stream
            .done
            .await
            .map_err(|_| StageError {
                stage: "draft",
                message: "the chat worker went away".into(),
                retryable: true,
            })?
            .map_err(failed)?;
        Ok(Written {
            prompt_tokens: generation.prompt_tokens,
            reused_prompt_tokens: generation.reused_prompt_tokens,
            completion_tokens: generation.completion_tokens,
            cut_short: generation.finish_reason == FinishReason::Length,
            prefill_ms: generation.prefill.as_secs_f64() * 1000.0,
            decode_ms: generation.decode.as_secs_f64() * 1000.0,
            guessed_tokens: generation.guessed_tokens,
            accepted_guesses: generation.accepted_guesses,
            text: generation.text,
        })
    }
}
