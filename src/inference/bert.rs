//! Hugging Face BERT directories (`config.json` + `model.safetensors`), such
//! as all-MiniLM-L6-v2, loaded into candle's `BertModel` as they are.
//!
//! Hyper-parameters come from `config.json`; only `model_type = "bert"` is
//! accepted, because candle's BERT numbers positions from 0 and an XLM-R
//! checkpoint in this layout would silently get the wrong position rows.
//! This module knows nothing of tokenizers, prefixes or pooling.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use super::InferenceError;

pub(crate) struct HfBert {
    config: Config,
    model: BertModel,
}

impl HfBert {
    pub fn load(config: &Path, weights: &Path, device: &Device) -> Result<HfBert, InferenceError> {
        let text = std::fs::read_to_string(config).map_err(|source| InferenceError::Io {
            path: config.to_path_buf(),
            source,
        })?;
        let parsed: Config = serde_json::from_str(&text).map_err(|e| InferenceError::Config {
            path: config.to_path_buf(),
            reason: e.to_string(),
        })?;
        if let Some(model_type) = parsed.model_type.as_deref().filter(|t| *t != "bert") {
            return Err(InferenceError::UnsupportedModel {
                model_type: model_type.to_owned(),
            });
        }
        // SAFETY: the map is read while the tensors are copied out during
        // `BertModel::load` and dropped with the builder; model files live in
        // kedai's cache, which nothing rewrites in place while the server runs.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, device)? };
        let model = BertModel::load(vb, &parsed)?;
        Ok(HfBert {
            config: parsed,
            model,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Final hidden states `[batch, seq, hidden]`; see [`attention_bias`].
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let token_types = ids.zeros_like()?;
        self.model.forward(ids, &token_types, Some(mask))
    }
}

/// The additive attention bias `[batch, 1, 1, seq]` for a `[batch, seq]`
/// mask of ones (tokens) and zeros (padding), as `BertModel` builds it: the
/// most negative f32 makes a padded key's softmax weight exactly zero, so a
/// padded row embeds exactly as it would alone.
pub(crate) fn attention_bias(mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(1)?.unsqueeze(1)?;
    (mask.ones_like()? - &mask)?.affine(f64::from(f32::MIN), 0.0)
}
