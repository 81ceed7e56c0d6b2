//! The CPU forward pass of EmbeddingGemma: a bidirectional Gemma 3 encoder
//! followed by the sentence-transformers head (mean pooling, two dense
//! layers), over plain f32 buffers, with every weight matrix quantized at
//! load into blocks that kedai's own kernels multiply.
//!
//! The arithmetic is Hugging Face's `Gemma3TextModel` with
//! `use_bidirectional_attention`: embeddings scaled by `sqrt(hidden)`,
//! RMSNorm with a `(1 + w)` scale (also on every head's query and key),
//! sandwich norms around attention and the feed-forward, RoPE whose base
//! depends on the layer type, a symmetric sliding window on the sliding
//! layers, grouped-query attention and a tanh-GELU gated feed-forward. The
//! checked reference is the numpy oracle the tests compare against. Like
//! `e5_cpu`, a batch is a list of sequences of different lengths with no
//! padding; the real tokens of every sequence are the rows of one product.
//! The two dense layers have no activation between them, so they are
//! multiplied into one 768 x 768 matrix at load.
//!
//! This module knows the checkpoint's tensor names and the encoder's
//! arithmetic; it knows nothing of text, task prompts, batching policy or
//! normalisation, which belong to `embedder`.

use std::path::{Path, PathBuf};

use candle_core::quantized::QTensor;
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::Deserialize;

use super::kernels::{self, Attend, QMatrix, QuantType};
use super::InferenceError;

/// Rows per rayon task in the element-wise passes.
const ROWS_PER_TASK: usize = 16;

/// Values below which an element-wise pass or the attention of a batch runs
/// on the calling thread: waking the pool costs more than it saves.
const SERIAL_BELOW: usize = 1 << 16;

/// Rows quantized per step at load, so that the f32 copy of the 262,144-row
/// embedding table never exists whole (48 MB at a time instead of 805 MB).
const QUANTIZE_ROWS: usize = 16_384;

/// The block format weight matrices are quantized into at load when the
/// caller does not choose: 8 bits per weight keeps the vectors within
/// about 0.9999 cosine of f32 (see `docs/quality.md`).
pub const DEFAULT_QUANT: QuantType = QuantType::Q8_0;

/// The hyper-parameters of `config.json` this pass uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct GemmaConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_local_base_freq: f64,
    pub sliding_window: usize,
    pub query_pre_attn_scalar: f64,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub layer_types: Vec<String>,
    #[serde(default)]
    pub use_bidirectional_attention: bool,
    pub hidden_activation: String,
}

impl GemmaConfig {
    pub fn read(path: &Path) -> Result<GemmaConfig, InferenceError> {
        let invalid = |reason: String| InferenceError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| InferenceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let config: GemmaConfig =
            serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// Whether a `config.json` names a Gemma 3 text model, without
    /// requiring the rest of it to be valid.
    pub fn is_gemma(path: &Path) -> bool {
        #[derive(Deserialize)]
        struct Kind {
            model_type: String,
        }
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str::<Kind>(&text).ok())
            .is_some_and(|kind| kind.model_type == "gemma3_text")
    }

    fn validate(&self) -> Result<(), String> {
        if self.model_type != "gemma3_text" {
            return Err(format!(
                "model_type is `{}`; expected `gemma3_text`",
                self.model_type
            ));
        }
        if !self.use_bidirectional_attention {
            return Err("use_bidirectional_attention is false; this pass is an encoder".into());
        }
        if self.hidden_activation != "gelu_pytorch_tanh" {
            return Err(format!(
                "hidden_activation is `{}`; expected `gelu_pytorch_tanh`",
                self.hidden_activation
            ));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(format!(
                "{} layer_types for {} layers",
                self.layer_types.len(),
                self.num_hidden_layers
            ));
        }
        if let Some(kind) = self
            .layer_types
            .iter()
            .find(|k| *k != "sliding_attention" && *k != "full_attention")
        {
            return Err(format!("layer type `{kind}` is not supported"));
        }
        let heads_ok = self.num_key_value_heads > 0
            && self
                .num_attention_heads
                .is_multiple_of(self.num_key_value_heads);
        if !heads_ok || self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "{} query heads, {} key/value heads of {} values are not a valid split",
                self.num_attention_heads, self.num_key_value_heads, self.head_dim
            ));
        }
        let block = kernels::BLOCK;
        for (name, cols) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("attention width", self.num_attention_heads * self.head_dim),
        ] {
            if cols == 0 || !cols.is_multiple_of(block) {
                return Err(format!("{name} {cols} is not a multiple of {block}"));
            }
        }
        Ok(())
    }
}

/// The files one EmbeddingGemma checkpoint is made of.
#[derive(Debug, Clone)]
pub(crate) struct GemmaFiles {
    pub config: PathBuf,
    pub weights: PathBuf,
    /// The sentence-transformers dense layers, 768 -> 3072 -> 768.
    pub dense: [PathBuf; 2],
}

struct Layer {
    input_norm: Vec<f32>,
    /// Query, key and value projections as one matrix, in that order.
    qkv: QMatrix,
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    out: QMatrix,
    post_attention_norm: Vec<f32>,
    pre_feedforward_norm: Vec<f32>,
    /// Gate and up projections as one matrix, in that order.
    gate_up: QMatrix,
    down: QMatrix,
    post_feedforward_norm: Vec<f32>,
    sliding: bool,
}

/// RoPE's cosines and sines for every position, `head_dim / 2` per row.
struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    fn new(base: f64, head_dim: usize, positions: usize) -> Rope {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for position in 0..positions {
            for i in 0..half {
                let inv = 1.0 / base.powf((2 * i) as f64 / head_dim as f64);
                let angle = position as f64 * inv;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Rope { cos, sin }
    }

    /// Rotates one head's vector at `position` (halves rotated, as
    /// Hugging Face's `rotate_half`).
    fn apply(&self, v: &mut [f32], position: usize) {
        let half = v.len() / 2;
        let cos = &self.cos[position * half..][..half];
        let sin = &self.sin[position * half..][..half];
        let (a, b) = v.split_at_mut(half);
        for (((a, b), c), s) in a.iter_mut().zip(b.iter_mut()).zip(cos).zip(sin) {
            let (x, y) = (*a, *b);
            *a = x * c - y * s;
            *b = y * c + x * s;
        }
    }
}

/// A loaded EmbeddingGemma checkpoint ready to run on the CPU.
pub(crate) struct GemmaEncoder {
    config: GemmaConfig,
    /// The token table, quantized; rows are dequantized on lookup.
    embed: QMatrix,
    layers: Vec<Layer>,
    final_norm: Vec<f32>,
    /// The two dense layers multiplied into one `dim x hidden` matrix.
    head: Vec<f32>,
    dim: usize,
    rope_global: Rope,
    rope_local: Rope,
}

/// Reads tensors out of a memory-mapped safetensors file.
struct Tensors<'a> {
    file: &'a MmapedSafetensors,
    path: &'a Path,
}

impl Tensors<'_> {
    fn invalid(&self, reason: String) -> InferenceError {
        InferenceError::Config {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// Tensor `name`, which must be F32 of exactly `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, InferenceError> {
        let view = self
            .file
            .get(name)
            .map_err(|e| self.invalid(format!("tensor {name}: {e}")))?;
        if view.shape() != shape {
            return Err(self.invalid(format!(
                "tensor {name} has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        if !is_f32(view.dtype()) {
            return Err(self.invalid(format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        Ok(self.file.load(name, &Device::Cpu)?)
    }

    fn vector(&self, name: &str, len: usize) -> Result<Vec<f32>, InferenceError> {
        Ok(self.tensor(name, &[len])?.to_vec1()?)
    }

    /// A Gemma RMSNorm weight with its `1 +` folded in.
    fn norm(&self, name: &str, len: usize) -> Result<Vec<f32>, InferenceError> {
        let mut weight = self.vector(name, len)?;
        weight.iter_mut().for_each(|w| *w += 1.0);
        Ok(weight)
    }

    /// A `rows x cols` matrix quantized into `quant` blocks, a slice of
    /// rows at a time.
    fn matrix(
        &self,
        name: &str,
        (rows, cols): (usize, usize),
        quant: QuantType,
    ) -> Result<QMatrix, InferenceError> {
        let view = self
            .file
            .get(name)
            .map_err(|e| self.invalid(format!("tensor {name}: {e}")))?;
        if view.shape() != [rows, cols] || !is_f32(view.dtype()) {
            return Err(self.invalid(format!(
                "tensor {name} is {:?} {:?}, expected F32 [{rows}, {cols}]",
                view.dtype(),
                view.shape()
            )));
        }
        let data = view.data();
        let row_bytes = cols * 4;
        let mut bytes =
            Vec::with_capacity(rows * cols / quant.block_values() * quant.block_bytes());
        for chunk in data.chunks(QUANTIZE_ROWS * row_bytes) {
            let shape = (chunk.len() / row_bytes, cols);
            let tensor =
                Tensor::from_raw_buffer(chunk, DType::F32, &[shape.0, shape.1], &Device::Cpu)?;
            let quantized = QTensor::quantize(&tensor, quant.to_ggml())?;
            bytes.extend_from_slice(&quantized.data()?);
        }
        QMatrix::new(quant, rows, cols, bytes)
            .map_err(|e| self.invalid(format!("tensor {name}: {e}")))
    }
}

fn is_f32<D>(dtype: D) -> bool
where
    DType: TryFrom<D>,
{
    DType::try_from(dtype).is_ok_and(|d| d == DType::F32)
}

fn open_safetensors(path: &Path) -> Result<MmapedSafetensors, InferenceError> {
    // SAFETY: the file is mapped read-only; model files are written once
    // (renamed into place after verification) and never modified after.
    unsafe { MmapedSafetensors::new(path) }.map_err(|e| InferenceError::Config {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl GemmaEncoder {
    /// Reads the checkpoint and quantizes every weight matrix (the token
    /// table included) into `quant`, one of the 32-value block formats.
    pub fn load(files: &GemmaFiles, quant: QuantType) -> Result<GemmaEncoder, InferenceError> {
        if quant.block_values() != kernels::BLOCK {
            return Err(InferenceError::InvalidParams(format!(
                "EmbeddingGemma's matrices take a 32-value block format (Q4_0, Q4_1, Q5_0, \
                 Q5_1, Q8_0), not {quant:?}"
            )));
        }
        let config = GemmaConfig::read(&files.config)?;
        let file = open_safetensors(&files.weights)?;
        let tensors = Tensors {
            file: &file,
            path: &files.weights,
        };
        let h = config.hidden_size;
        let q_dim = config.num_attention_heads * config.head_dim;
        let kv_dim = config.num_key_value_heads * config.head_dim;
        let ffn = config.intermediate_size;
        let hd = config.head_dim;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for (l, kind) in config.layer_types.iter().enumerate() {
            let name = |part: &str| format!("layers.{l}.{part}");
            let matrix = |part: &str, shape| tensors.matrix(&name(part), shape, quant);
            let qkv = QMatrix::concat_rows(&[
                &matrix("self_attn.q_proj.weight", (q_dim, h))?,
                &matrix("self_attn.k_proj.weight", (kv_dim, h))?,
                &matrix("self_attn.v_proj.weight", (kv_dim, h))?,
            ])
            .ok_or_else(|| tensors.invalid(format!("layer {l}: q, k and v differ in width")))?;
            let gate_up = QMatrix::concat_rows(&[
                &matrix("mlp.gate_proj.weight", (ffn, h))?,
                &matrix("mlp.up_proj.weight", (ffn, h))?,
            ])
            .ok_or_else(|| tensors.invalid(format!("layer {l}: gate and up differ in width")))?;
            let packed = |m: QMatrix| m.with_packed().packed_only();
            layers.push(Layer {
                input_norm: tensors.norm(&name("input_layernorm.weight"), h)?,
                qkv: packed(qkv),
                q_norm: tensors.norm(&name("self_attn.q_norm.weight"), hd)?,
                k_norm: tensors.norm(&name("self_attn.k_norm.weight"), hd)?,
                out: packed(matrix("self_attn.o_proj.weight", (h, q_dim))?),
                post_attention_norm: tensors.norm(&name("post_attention_layernorm.weight"), h)?,
                pre_feedforward_norm: tensors.norm(&name("pre_feedforward_layernorm.weight"), h)?,
                gate_up: packed(gate_up),
                down: packed(matrix("mlp.down_proj.weight", (h, ffn))?),
                post_feedforward_norm: tensors
                    .norm(&name("post_feedforward_layernorm.weight"), h)?,
                sliding: kind == "sliding_attention",
            });
        }
        let embed = tensors.matrix("embed_tokens.weight", (config.vocab_size, h), quant)?;
        let final_norm = tensors.norm("norm.weight", h)?;
        let (head, dim) = load_head(&files.dense, h)?;
        let positions = config.max_position_embeddings;
        Ok(GemmaEncoder {
            rope_global: Rope::new(config.rope_theta, hd, positions),
            rope_local: Rope::new(config.rope_local_base_freq, hd, positions),
            config,
            embed,
            layers,
            final_norm,
            head,
            dim,
        })
    }

    /// The length of every output vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn config(&self) -> &GemmaConfig {
        &self.config
    }

    /// The dense head applied to the token mean of each sequence's final
    /// hidden states, [`GemmaEncoder::dim`] values per sequence, in order
    /// (not normalised). A sequence must be non-empty and fit the model's
    /// positions, and every id must be in the vocabulary.
    pub fn forward_pooled(&self, sequences: &[&[u32]]) -> Result<Vec<f32>, InferenceError> {
        let starts = self.starts(sequences)?;
        let tokens = *starts.last().unwrap_or(&0);
        if tokens == 0 {
            return Ok(Vec::new());
        }
        let c = &self.config;
        let h = c.hidden_size;
        let eps = c.rms_norm_eps as f32;
        let q_dim = c.num_attention_heads * c.head_dim;
        let kv_dim = c.num_key_value_heads * c.head_dim;
        let width = q_dim + 2 * kv_dim;
        let mut x = self.embed(sequences, tokens);
        let mut normed = vec![0f32; tokens * h];
        let mut qkv = vec![0f32; tokens * width];
        let mut context = vec![0f32; tokens * q_dim];
        let mut projected = vec![0f32; tokens * h];
        let mut gate_up = vec![0f32; tokens * 2 * c.intermediate_size];
        let mut mid = vec![0f32; tokens * c.intermediate_size];
        for layer in &self.layers {
            normed.copy_from_slice(&x);
            rms_rows(&mut normed, &layer.input_norm, eps);
            layer.qkv.matmul(&normed, tokens, &mut qkv);
            self.norm_and_rotate(&mut qkv, &starts, layer);
            self.attend(&qkv, &starts, layer.sliding, &mut context);
            layer.out.matmul(&context, tokens, &mut projected);
            rms_rows(&mut projected, &layer.post_attention_norm, eps);
            add(&mut x, &projected);
            normed.copy_from_slice(&x);
            rms_rows(&mut normed, &layer.pre_feedforward_norm, eps);
            layer.gate_up.matmul(&normed, tokens, &mut gate_up);
            kernels::gelu_tanh_gate(&gate_up, &mut mid, c.intermediate_size);
            layer.down.matmul(&mid, tokens, &mut projected);
            rms_rows(&mut projected, &layer.post_feedforward_norm, eps);
            add(&mut x, &projected);
        }
        rms_rows(&mut x, &self.final_norm, eps);
        let mut out = vec![0f32; sequences.len() * self.dim];
        let mut mean = vec![0f32; h];
        for (s, out) in out.chunks_exact_mut(self.dim).enumerate() {
            mean.fill(0.0);
            for row in x[starts[s] * h..starts[s + 1] * h].chunks_exact(h) {
                kernels::axpy(&mut mean, 1.0, row);
            }
            let count = (starts[s + 1] - starts[s]) as f32;
            mean.iter_mut().for_each(|v| *v /= count);
            for (o, row) in out.iter_mut().zip(self.head.chunks_exact(h)) {
                *o = kernels::dot_f32(row, &mean);
            }
        }
        Ok(out)
    }

    /// Where each sequence's rows start, and the total at the end.
    fn starts(&self, sequences: &[&[u32]]) -> Result<Vec<usize>, InferenceError> {
        let max = self.config.max_position_embeddings;
        let vocab = self.embed.rows();
        let mut starts = Vec::with_capacity(sequences.len() + 1);
        starts.push(0);
        for (index, ids) in sequences.iter().enumerate() {
            if ids.is_empty() || ids.len() > max {
                return Err(InferenceError::SequenceLength {
                    index,
                    len: ids.len(),
                    max,
                });
            }
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(InferenceError::TokenId { id, vocab });
            }
            starts.push(starts[index] + ids.len());
        }
        Ok(starts)
    }

    /// Each token's table row times `sqrt(hidden)`.
    fn embed(&self, sequences: &[&[u32]], tokens: usize) -> Vec<f32> {
        let h = self.config.hidden_size;
        let scale = (h as f32).sqrt();
        let mut x = vec![0f32; tokens * h];
        let ids = sequences.iter().flat_map(|ids| ids.iter());
        for (&id, row) in ids.zip(x.chunks_exact_mut(h)) {
            self.embed.dequantize_row(id as usize, row);
            row.iter_mut().for_each(|v| *v *= scale);
        }
        x
    }

    /// RMSNorm of every query and key head, then RoPE at each token's
    /// position within its sequence.
    fn norm_and_rotate(&self, qkv: &mut [f32], starts: &[usize], layer: &Layer) {
        let c = &self.config;
        let (hd, eps) = (c.head_dim, c.rms_norm_eps as f32);
        let q_dim = c.num_attention_heads * hd;
        let kv_dim = c.num_key_value_heads * hd;
        let width = q_dim + 2 * kv_dim;
        let rope = if layer.sliding {
            &self.rope_local
        } else {
            &self.rope_global
        };
        let positions = starts
            .windows(2)
            .flat_map(|s| 0..s[1] - s[0])
            .collect::<Vec<usize>>();
        let run = |(row, &position): (&mut [f32], &usize)| {
            let (q, rest) = row.split_at_mut(q_dim);
            kernels::rms_norm(q, &layer.q_norm, eps);
            let k = &mut rest[..kv_dim];
            kernels::rms_norm(k, &layer.k_norm, eps);
            for head in q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)) {
                rope.apply(head, position);
            }
        };
        if qkv.len() < SERIAL_BELOW {
            qkv.chunks_exact_mut(width).zip(&positions).for_each(run);
        } else {
            qkv.par_chunks_exact_mut(width)
                .zip(positions.par_iter())
                .for_each(run);
        }
    }

    /// Every query head of every sequence over that sequence's keys (all of
    /// them, or those within the sliding window on either side): `context`
    /// gets the heads' outputs side by side.
    fn attend(&self, qkv: &[f32], starts: &[usize], sliding: bool, context: &mut [f32]) {
        let c = &self.config;
        let hd = c.head_dim;
        let heads = c.num_attention_heads;
        let group = heads / c.num_key_value_heads;
        let q_dim = heads * hd;
        let kv_dim = c.num_key_value_heads * hd;
        let stride = q_dim + 2 * kv_dim;
        let scale = c.query_pre_attn_scalar.powf(-0.5) as f32;
        let window = if sliding {
            c.sliding_window
        } else {
            usize::MAX
        };
        let tasks: Vec<(usize, usize)> = (0..starts.len() - 1)
            .flat_map(|s| (0..heads).map(move |h| (s, h)))
            .collect();
        let run = |&(s, head): &(usize, usize)| {
            let len = starts[s + 1] - starts[s];
            let rows = &qkv[starts[s] * stride..starts[s + 1] * stride];
            let k_off = q_dim + (head / group) * hd;
            let v_off = k_off + kv_dim;
            let mut out = vec![0f32; len * hd];
            let mut scores = Vec::with_capacity(len);
            for (t, out) in out.chunks_exact_mut(hd).enumerate() {
                let lo = (t + 1).saturating_sub(window);
                let hi = t.saturating_add(window).min(len);
                let span = &rows[lo * stride..hi * stride];
                Attend {
                    query: &rows[t * stride + head * hd..][..hd],
                    keys: &span[k_off..span.len() - (v_off - k_off)],
                    values: &span[v_off..],
                    stride,
                    offset: 0,
                    count: hi - lo,
                    scale,
                }
                .run(&mut scores, out);
            }
            out
        };
        let work: usize = starts.windows(2).map(|s| (s[1] - s[0]).pow(2)).sum();
        let outputs: Vec<Vec<f32>> = if work * hd * heads < SERIAL_BELOW {
            tasks.iter().map(run).collect()
        } else {
            tasks.par_iter().map(run).collect()
        };
        for (&(s, head), out) in tasks.iter().zip(&outputs) {
            let rows = context[starts[s] * q_dim..starts[s + 1] * q_dim].chunks_exact_mut(q_dim);
            for (row, values) in rows.zip(out.chunks_exact(hd)) {
                row[head * hd..(head + 1) * hd].copy_from_slice(values);
            }
        }
    }
}

/// The two dense layers (no bias, no activation) as one `dim x hidden`
/// matrix, `dense[1] * dense[0]`, multiplied by candle in f32.
fn load_head(dense: &[PathBuf; 2], hidden: usize) -> Result<(Vec<f32>, usize), InferenceError> {
    let mut layers = Vec::with_capacity(2);
    for path in dense {
        let file = open_safetensors(path)?;
        let tensors = Tensors { file: &file, path };
        if file.get("linear.bias").is_ok() {
            return Err(tensors.invalid("a dense layer with a bias is not supported".into()));
        }
        let view = file
            .get("linear.weight")
            .map_err(|e| tensors.invalid(format!("tensor linear.weight: {e}")))?;
        let shape = view.shape().to_vec();
        if shape.len() != 2 {
            return Err(tensors.invalid(format!("linear.weight has shape {shape:?}")));
        }
        layers.push(tensors.tensor("linear.weight", &shape)?);
    }
    let (first, second) = (&layers[0], &layers[1]);
    let (mid, input) = first.dims2()?;
    let (dim, second_input) = second.dims2()?;
    if input != hidden || second_input != mid {
        return Err(InferenceError::Config {
            path: dense[1].clone(),
            reason: format!(
                "dense layers [{mid}, {input}] then [{dim}, {second_input}] do not follow a \
                 {hidden}-wide encoder"
            ),
        });
    }
    let head = second.matmul(first)?.flatten_all()?.to_vec1()?;
    Ok((head, dim))
}

/// Gemma RMSNorm of every `weight.len()`-wide row.
fn rms_rows(x: &mut [f32], weight: &[f32], eps: f32) {
    if x.len() < SERIAL_BELOW {
        kernels::rms_norm(x, weight, eps);
    } else {
        x.par_chunks_mut(weight.len() * ROWS_PER_TASK)
            .for_each(|rows| kernels::rms_norm(rows, weight, eps));
    }
}

/// `x += y`.
fn add(x: &mut [f32], y: &[f32]) {
    kernels::axpy(x, 1.0, y);
}

#[cfg(test)]
#[path = "gemma_tests.rs"]
mod tests;
