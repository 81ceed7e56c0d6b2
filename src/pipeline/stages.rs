//! The real stages behind the pipeline's ports: knowledge-base search
//! through [`KbService`] and text generation through the model runtime
//! ([`Engine`]). The understand stage's adapter lives with it in `nlu`.

use std::sync::Arc;

use async_trait::async_trait;

use super::ports::{Knowledge, KnowledgeHit, StageError, Writer};
use crate::domain::TenantId;
use crate::engine::{Engine, EngineError, ModelKind};
use crate::inference::chat::{ChatMessage, GenerationParams};
use crate::kb::service::MAX_QUERY_CHARS;
use crate::kb::{KbError, KbQuery, KbService};

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

/// The chat model in the runtime, for drafts and translations: greedy, so
/// the same message gets the same draft.
pub struct EngineWriter {
    pub engine: Engine,
}

impl EngineWriter {
    fn chat_model(&self) -> Option<String> {
        self.engine
            .models()
            .into_iter()
            .find(|m| m.kind == ModelKind::Chat)
            .map(|m| m.id)
    }
}

#[async_trait]
impl Writer for EngineWriter {
    fn model_id(&self) -> String {
        self.chat_model().unwrap_or_default()
    }

    async fn write(
        &self,
        messages: Vec<ChatMessage>,
        max_tokens: usize,
    ) -> Result<String, StageError> {
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
        let stream = self
            .engine
            .chat(&model, messages, params, false)
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
        Ok(generation.text)
    }
}
