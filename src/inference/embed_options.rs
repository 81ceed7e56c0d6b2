//! What is chosen when an embedding model is loaded (the task its query
//! vectors serve, the block format of EmbeddingGemma's weights) and how an
//! EmbeddingGemma checkpoint's files and task prompts are found.
//!
//! Knows file names and the sentence-transformers prompt table; nothing of
//! the forward pass or of where vectors go.

use std::path::Path;

use super::embedder::Prefixes;
use super::gemma_encoder::GemmaFiles;
use super::kernels::QuantType;
use super::InferenceError;
use crate::models::ResolvedModel;

/// What the vectors of a model with task prompts are for, which picks the
/// prompt put before queries (documents always get the document prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbedTask {
    /// Search: the model's query prompt.
    #[default]
    Retrieval,
    /// Classifier heads and nearest exemplars: the classification prompt.
    Classification,
}

/// Choices made when a model is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbedderOptions {
    pub task: EmbedTask,
    /// The block format EmbeddingGemma's weights are quantized into.
    pub gemma_quant: QuantType,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        EmbedderOptions {
            task: EmbedTask::Retrieval,
            gemma_quant: super::gemma_encoder::DEFAULT_QUANT,
        }
    }
}

/// Whether `model`'s files are a model with task prompts (EmbeddingGemma),
/// whose query vectors differ by [`EmbedTask`]. Reads `config.json` only.
pub fn has_task_prompts(model: &ResolvedModel) -> bool {
    model
        .file("config.json")
        .is_some_and(super::gemma_encoder::GemmaConfig::is_gemma)
}

/// EmbeddingGemma's prompts, from `config_sentence_transformers.json` when
/// the model has one, else the ones its model card gives.
pub(super) fn gemma_prompts(model: &ResolvedModel) -> Result<Prefixes, InferenceError> {
    #[derive(serde::Deserialize)]
    struct SentenceTransformers {
        #[serde(default)]
        prompts: std::collections::HashMap<String, String>,
    }
    let mut prompts = std::collections::HashMap::new();
    if let Some(path) = model.file("config_sentence_transformers.json") {
        let text = std::fs::read_to_string(path).map_err(|source| InferenceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed: SentenceTransformers =
            serde_json::from_str(&text).map_err(|e| InferenceError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        prompts = parsed.prompts;
    }
    let prompt = |key: &str, fallback: &str| prompts.get(key).cloned().unwrap_or(fallback.into());
    Ok(Prefixes::Prompts {
        query: prompt("query", "task: search result | query: "),
        classification: prompt("Classification", "task: classification | query: "),
        passage: prompt("document", "title: none | text: "),
    })
}

/// An EmbeddingGemma checkpoint's files: the bundle's flat names, or a
/// Hugging Face directory's `2_Dense/` and `3_Dense/` folders.
pub(super) fn gemma_files(
    model: &ResolvedModel,
    config: &Path,
) -> Result<GemmaFiles, InferenceError> {
    let missing = |name: &str| InferenceError::MissingFiles {
        model: model.reference.clone(),
        missing: name.to_owned(),
    };
    let weights = model
        .file("model.safetensors")
        .ok_or_else(|| missing("model.safetensors"))?;
    let dense = |n: usize| {
        let flat = format!("{n}_Dense.safetensors");
        model
            .file(&flat)
            .map(Path::to_path_buf)
            .or_else(|| {
                let nested = model
                    .dir
                    .join(format!("{n}_Dense"))
                    .join("model.safetensors");
                nested.is_file().then_some(nested)
            })
            .ok_or_else(|| missing(&flat))
    };
    Ok(GemmaFiles {
        config: config.to_path_buf(),
        weights: weights.to_path_buf(),
        dense: [dense(2)?, dense(3)?],
    })
}
