//! The CPU forward pass of the GGUF chat models (Qwen2 and Llama, SmolLM2
//! among them) over plain f32 buffers, with the weight matrices multiplied by
//! kedai's own quantized kernels.
//!
//! The arithmetic follows candle-transformers' `quantized_qwen2` and
//! `quantized_llama` (RMS norms, rotary embeddings in the GGUF convention of
//! each architecture, grouped-query attention, SiLU-gated MLP) so that both
//! give the same logits within the rounding of quantized activations; it
//! differs where that costs time: the KV cache is one growable buffer per
//! layer instead of a tensor concatenation per token, no mask is built,
//! projections of the same input (query/key/value, gate/up) run as one
//! multiplication, and only the last position goes through the output head.
//!
//! This module knows GGUF tensor names and the model arithmetic; it knows
//! nothing of tokens as text, prompts or sampling, which belong to `chat`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use rayon::prelude::*;

use super::kernels::{self, QMatrix, QuantType};
use super::InferenceError;

/// How the weight matrices are held in memory and multiplied on the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightFormat {
    /// The fastest measured on this kind of machine: [`WeightFormat::Quantized`].
    #[default]
    Auto,
    /// The GGUF blocks as they are, multiplied by kedai's kernels; formats
    /// the kernels lack go through candle's quantized matmul. Smallest.
    Quantized,
    /// Dequantized to f16 at load, multiplied by candle's f16 matmul.
    F16,
    /// Dequantized to f32 at load, multiplied by candle's f32 matmul.
    F32,
}

impl WeightFormat {
    fn resolved(self) -> WeightFormat {
        match self {
            WeightFormat::Auto => WeightFormat::Quantized,
            other => other,
        }
    }
}

/// The GGUF architectures this forward pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Architecture {
    Qwen2,
    Llama,
}

#[derive(Debug, Clone)]
struct Hyper {
    embedding: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    feed_forward: usize,
    eps: f32,
    /// `1 / base^(2j / rope_dim)` for each rotated pair `j`.
    inv_freq: Vec<f32>,
    /// Rotated pairs are `(j, j + d/2)` (Qwen2) rather than `(2j, 2j + 1)`.
    neox: bool,
}

impl Hyper {
    fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// One weight matrix, `rows` outputs by `cols` inputs.
enum Linear {
    Kernel(QMatrix),
    Candle {
        matmul: QMatMul,
        rows: usize,
        cols: usize,
    },
}

impl Linear {
    fn rows(&self) -> usize {
        match self {
            Linear::Kernel(matrix) => matrix.rows(),
            Linear::Candle { rows, .. } => *rows,
        }
    }

    fn forward(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), InferenceError> {
        match self {
            Linear::Kernel(matrix) => matrix.matmul(x, m, out),
            Linear::Candle { matmul, cols, .. } => {
                let input = Tensor::from_slice(x, (m, *cols), &Device::Cpu)?;
                let result = matmul.forward(&input)?.flatten_all()?.to_vec1::<f32>()?;
                out.copy_from_slice(&result);
            }
        }
        Ok(())
    }
}

/// Several matrices applied to the same input, their outputs side by side.
struct Projection {
    parts: Vec<Linear>,
    rows: usize,
}

impl Projection {
    fn forward(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<(), InferenceError> {
        if let [only] = self.parts.as_slice() {
            return only.forward(x, m, out);
        }
        let mut column = 0;
        for part in &self.parts {
            let width = part.rows();
            let mut partial = vec![0f32; m * width];
            part.forward(x, m, &mut partial)?;
            for (row, values) in partial.chunks_exact(width).enumerate() {
                out[row * self.rows + column..][..width].copy_from_slice(values);
            }
            column += width;
        }
        Ok(())
    }
}

enum Embeddings {
    Quantized(QMatrix),
    Dense { table: Vec<f32>, width: usize },
}

impl Embeddings {
    fn rows(&self) -> usize {
        match self {
            Embeddings::Quantized(matrix) => matrix.rows(),
            Embeddings::Dense { table, width } => table.len() / width,
        }
    }

    fn lookup(&self, token: usize, out: &mut [f32]) {
        match self {
            Embeddings::Quantized(matrix) => matrix.dequantize_row(token, out),
            Embeddings::Dense { table, width } => {
                out.copy_from_slice(&table[token * width..(token + 1) * width])
            }
        }
    }
}

struct Layer {
    attn_norm: Vec<f32>,
    /// Query, key and value, in that order.
    qkv: Projection,
    /// The biases of `qkv` (Qwen2), side by side like its outputs.
    qkv_bias: Option<Vec<f32>>,
    output: Linear,
    ffn_norm: Vec<f32>,
    /// Gate, then up.
    gate_up: Projection,
    down: Linear,
    /// Keys and values of every position seen, `kv_dim` values each.
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// The keys and values of a prompt's first positions, kept aside so that
/// prompts starting the same way skip them.
pub(crate) struct KvSnapshot {
    len: usize,
    /// Keys and values per layer.
    layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl KvSnapshot {
    pub(crate) fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(k, v)| (k.len() + v.len()) * std::mem::size_of::<f32>())
            .sum()
    }
}

/// A chat model's weights and KV cache, ready to run on the CPU.
pub(crate) struct CpuModel {
    hyper: Hyper,
    embeddings: Embeddings,
    layers: Vec<Layer>,
    norm: Vec<f32>,
    head: Linear,
    /// Positions in the KV cache.
    cached: usize,
}

/// Reads tensors out of an open GGUF file.
struct Loader<'a> {
    path: &'a Path,
    content: &'a Content,
    file: &'a mut File,
    format: WeightFormat,
}

impl Loader<'_> {
    fn error(&self, reason: String) -> InferenceError {
        InferenceError::Gguf {
            path: self.path.to_owned(),
            reason,
        }
    }

    fn qtensor(&mut self, name: &str) -> Result<QTensor, InferenceError> {
        self.content
            .tensor(self.file, name, &Device::Cpu)
            .map_err(|e| self.error(format!("tensor `{name}`: {e}")))
    }

    fn vector(&mut self, name: &str) -> Result<Vec<f32>, InferenceError> {
        let tensor = self.qtensor(name)?.dequantize(&Device::Cpu)?;
        Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
    }

    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The blocks of a 2-d tensor as they lie in the file, where the kernels
    /// know its format.
    fn blocks(&mut self, name: &str) -> Result<Option<QMatrix>, InferenceError> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| self.error(format!("no tensor `{name}`")))?;
        let Some(ty) = QuantType::from_ggml(info.ggml_dtype) else {
            return Ok(None);
        };
        let &[rows, cols] = info.shape.dims() else {
            return Err(self.error(format!("tensor `{name}` is not a matrix")));
        };
        if cols % ty.block_values() != 0 {
            return Err(self.error(format!("tensor `{name}`: {cols} columns in {ty:?} blocks")));
        }
        let len = rows * cols / ty.block_values() * ty.block_bytes();
        let start = self.content.tensor_data_offset + info.offset;
        let mut bytes = vec![0u8; len];
        let io = |source| InferenceError::Io {
            path: self.path.to_owned(),
            source,
        };
        self.file.seek(SeekFrom::Start(start)).map_err(io)?;
        self.file.read_exact(&mut bytes).map_err(io)?;
        QMatrix::new(ty, rows, cols, bytes)
            .map(Some)
            .map_err(|e| self.error(format!("tensor `{name}`: {e}")))
    }

    fn dense(&mut self, name: &str) -> Result<Linear, InferenceError> {
        let tensor = self.qtensor(name)?;
        let &[rows, cols] = tensor.shape().dims() else {
            return Err(self.error(format!("tensor `{name}` is not a matrix")));
        };
        let matmul = match self.format {
            WeightFormat::F16 => QMatMul::TensorF16(tensor.dequantize_f16(&Device::Cpu)?),
            WeightFormat::F32 => QMatMul::Tensor(tensor.dequantize(&Device::Cpu)?),
            _ => QMatMul::QTensor(std::sync::Arc::new(tensor)),
        };
        Ok(Linear::Candle { matmul, rows, cols })
    }

    fn linear(&mut self, name: &str) -> Result<Linear, InferenceError> {
        if self.format == WeightFormat::Quantized {
            if let Some(matrix) = self.blocks(name)? {
                return Ok(Linear::Kernel(matrix.with_packed().packed_only()));
            }
        }
        self.dense(name)
    }

    /// Unpacked blocks, to be stacked with others before packing.
    fn unpacked(&mut self, name: &str) -> Result<Linear, InferenceError> {
        if self.format == WeightFormat::Quantized {
            if let Some(matrix) = self.blocks(name)? {
                return Ok(Linear::Kernel(matrix));
            }
        }
        self.dense(name)
    }

    /// The matrices `names`, stacked where they share a block format.
    fn projection(&mut self, names: &[String]) -> Result<Projection, InferenceError> {
        let mut parts: Vec<Linear> = Vec::new();
        for name in names {
            let next = self.unpacked(name)?;
            let merged = match (parts.last(), &next) {
                (Some(Linear::Kernel(previous)), Linear::Kernel(matrix)) => {
                    QMatrix::concat_rows(&[previous, matrix])
                }
                _ => None,
            };
            match merged {
                Some(joint) => *parts.last_mut().expect("a previous part") = Linear::Kernel(joint),
                None => parts.push(next),
            }
        }
        let parts: Vec<Linear> = parts
            .into_iter()
            .map(|part| match part {
                Linear::Kernel(matrix) => Linear::Kernel(matrix.with_packed().packed_only()),
                other => other,
            })
            .collect();
        let rows = parts.iter().map(Linear::rows).sum();
        Ok(Projection { parts, rows })
    }
}

impl CpuModel {
    pub(crate) fn load(
        path: &Path,
        content: &Content,
        file: &mut File,
        architecture: Architecture,
        format: WeightFormat,
    ) -> Result<Self, InferenceError> {
        let prefix = match architecture {
            Architecture::Qwen2 => "qwen2",
            Architecture::Llama => "llama",
        };
        let metadata_error = |key: String, reason: &str| InferenceError::Gguf {
            path: path.to_owned(),
            reason: format!("metadata `{key}` is {reason}"),
        };
        let uint = |key: &str| -> Result<usize, InferenceError> {
            let key = format!("{prefix}.{key}");
            content
                .metadata
                .get(&key)
                .and_then(|v| v.to_u32().ok())
                .map(|v| v as usize)
                .ok_or_else(|| metadata_error(key, "missing or not an integer"))
        };
        let float = |key: &str| {
            content
                .metadata
                .get(&format!("{prefix}.{key}"))
                .and_then(|v| v.to_f32().ok())
        };
        let embedding = uint("embedding_length")?;
        let heads = uint("attention.head_count")?;
        let kv_heads = uint("attention.head_count_kv")?;
        let blocks = uint("block_count")?;
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 || embedding % heads != 0 {
            return Err(metadata_error(
                format!("{prefix}.attention.head_count"),
                "not a divisor of the embedding length and a multiple of head_count_kv",
            ));
        }
        let head_dim = embedding / heads;
        let rope_dim = match architecture {
            Architecture::Llama => uint("rope.dimension_count").unwrap_or(head_dim),
            Architecture::Qwen2 => head_dim,
        };
        if rope_dim != head_dim {
            return Err(metadata_error(
                format!("{prefix}.rope.dimension_count"),
                "not the head size (partial rotary embeddings are not supported)",
            ));
        }
        let base = float("rope.freq_base").unwrap_or(10_000.0);
        let eps = float("attention.layer_norm_rms_epsilon").ok_or_else(|| {
            metadata_error(
                format!("{prefix}.attention.layer_norm_rms_epsilon"),
                "missing or not a number",
            )
        })?;

        let mut loader = Loader {
            path,
            content,
            file,
            format: format.resolved(),
        };
        let embeddings = match loader.blocks("token_embd.weight")? {
            Some(matrix) => Embeddings::Quantized(matrix),
            None => Embeddings::Dense {
                table: loader.vector("token_embd.weight")?,
                width: embedding,
            },
        };
        let head = if loader.has("output.weight") {
            loader.linear("output.weight")?
        } else {
            match (&embeddings, loader.format) {
                (Embeddings::Quantized(matrix), WeightFormat::Quantized) => {
                    Linear::Kernel(matrix.clone().with_packed())
                }
                _ => loader.linear("token_embd.weight")?,
            }
        };
        let mut layers = Vec::with_capacity(blocks);
        for i in 0..blocks {
            let name = |part: &str| format!("blk.{i}.{part}");
            let qkv = loader.projection(&[
                name("attn_q.weight"),
                name("attn_k.weight"),
                name("attn_v.weight"),
            ])?;
            let qkv_bias = if architecture == Architecture::Qwen2 {
                let mut bias = loader.vector(&name("attn_q.bias"))?;
                bias.extend(loader.vector(&name("attn_k.bias"))?);
                bias.extend(loader.vector(&name("attn_v.bias"))?);
                Some(bias)
            } else {
                None
            };
            let gate_up = loader.projection(&[name("ffn_gate.weight"), name("ffn_up.weight")])?;
            layers.push(Layer {
                attn_norm: loader.vector(&name("attn_norm.weight"))?,
                qkv,
                qkv_bias,
                output: loader.linear(&name("attn_output.weight"))?,
                ffn_norm: loader.vector(&name("ffn_norm.weight"))?,
                gate_up,
                down: loader.linear(&name("ffn_down.weight"))?,
                keys: Vec::new(),
                values: Vec::new(),
            });
        }
        let norm = loader.vector("output_norm.weight")?;
        let feed_forward = layers.first().map_or(0, |l| l.gate_up.rows / 2);
        let hyper = Hyper {
            embedding,
            heads,
            kv_heads,
            head_dim,
            feed_forward,
            eps,
            inv_freq: (0..head_dim)
                .step_by(2)
                .map(|i| 1.0 / base.powf(i as f32 / head_dim as f32))
                .collect(),
            neox: architecture == Architecture::Qwen2,
        };
        let model = CpuModel {
            hyper,
            embeddings,
            layers,
            norm,
            head,
            cached: 0,
        };
        model
            .check_shapes()
            .map_err(|reason| loader.error(reason))?;
        Ok(model)
    }

    fn check_shapes(&self) -> Result<(), String> {
        let h = &self.hyper;
        let qkv = h.q_dim() + 2 * h.kv_dim();
        for (i, layer) in self.layers.iter().enumerate() {
            let ok = layer.qkv.rows == qkv
                && layer.qkv_bias.as_ref().is_none_or(|b| b.len() == qkv)
                && layer.output.rows() == h.embedding
                && layer.gate_up.rows == 2 * h.feed_forward
                && layer.down.rows() == h.embedding
                && layer.attn_norm.len() == h.embedding
                && layer.ffn_norm.len() == h.embedding;
            if !ok {
                return Err(format!("layer {i} has tensors of unexpected shapes"));
            }
        }
        if self.norm.len() != h.embedding {
            return Err("`output_norm.weight` has the wrong length".to_owned());
        }
        Ok(())
    }

    /// A copy of the keys and values of the first `len` cached positions,
    /// to be put back later with [`CpuModel::restore`]; `None` when fewer
    /// are cached.
    pub(crate) fn snapshot(&self, len: usize) -> Option<KvSnapshot> {
        if len > self.cached {
            return None;
        }
        let kv_dim = self.hyper.kv_dim();
        Some(KvSnapshot {
            len,
            layers: self
                .layers
                .iter()
                .map(|l| {
                    (
                        l.keys[..len * kv_dim].to_vec(),
                        l.values[..len * kv_dim].to_vec(),
                    )
                })
                .collect(),
        })
    }

    /// Makes the cache hold exactly what `snapshot` copied.
    pub(crate) fn restore(&mut self, snapshot: &KvSnapshot) {
        for (layer, (keys, values)) in self.layers.iter_mut().zip(&snapshot.layers) {
            layer.keys.clear();
            layer.keys.extend_from_slice(keys);
            layer.values.clear();
            layer.values.extend_from_slice(values);
        }
        self.cached = snapshot.len;
    }

    pub(crate) fn clear_kv_cache(&mut self) {
        for layer in &mut self.layers {
            layer.keys.clear();
            layer.values.clear();
        }
        self.cached = 0;
    }

    /// Forgets every cached position from `len` on.
    pub(crate) fn rewind(&mut self, len: usize) {
        let kv_dim = self.hyper.kv_dim();
        for layer in &mut self.layers {
            layer.keys.truncate(len * kv_dim);
            layer.values.truncate(len * kv_dim);
        }
        self.cached = self.cached.min(len);
    }

    /// Runs `tokens` at positions `index_pos..`, keeping the first
    /// `index_pos` cached positions, and returns the logits after the last.
    pub(crate) fn forward(
        &mut self,
        tokens: &[u32],
        index_pos: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        self.forward_last(tokens, index_pos, 1)
    }

    /// As [`CpuModel::forward`], but returns the logits after each of the
    /// last `last` tokens, one row of the vocabulary's width each: what
    /// checking several guessed tokens in one pass needs.
    pub(crate) fn forward_last(
        &mut self,
        tokens: &[u32],
        index_pos: usize,
        last: usize,
    ) -> Result<Vec<f32>, InferenceError> {
        let invalid = |message: String| InferenceError::Tensor(candle_core::Error::Msg(message));
        if tokens.is_empty() {
            return Err(invalid("no tokens to run".to_owned()));
        }
        if last == 0 || last > tokens.len() {
            return Err(invalid(format!(
                "cannot return logits after the last {last} of {} tokens",
                tokens.len()
            )));
        }
        if index_pos > self.cached {
            return Err(invalid(format!(
                "position {index_pos} is past the {} cached positions",
                self.cached
            )));
        }
        let vocab = self.embeddings.rows();
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(invalid(format!(
                "token {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let h = self.hyper.clone();
        let (seq, e) = (tokens.len(), h.embedding);
        let (q_dim, kv_dim) = (h.q_dim(), h.kv_dim());
        let qkv_dim = q_dim + 2 * kv_dim;

        let mut x = vec![0f32; seq * e];
        for (row, &token) in x.chunks_exact_mut(e).zip(tokens) {
            self.embeddings.lookup(token as usize, row);
        }
        let rope = rope_table(&h, index_pos, seq);
        let mut normed = vec![0f32; seq * e];
        let mut qkv = vec![0f32; seq * qkv_dim];
        let mut attended = vec![0f32; seq * q_dim];
        let mut projected = vec![0f32; seq * e];
        let mut gate_up = vec![0f32; seq * 2 * h.feed_forward];
        let mut hidden = vec![0f32; seq * h.feed_forward];

        for layer in &mut self.layers {
            rms_norm(&x, &layer.attn_norm, h.eps, &mut normed);
            layer.qkv.forward(&normed, seq, &mut qkv)?;
            for (i, row) in qkv.chunks_exact_mut(qkv_dim).enumerate() {
                if let Some(bias) = &layer.qkv_bias {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
                let (cos, sin) = &rope[i];
                for head in row[..q_dim + kv_dim].chunks_exact_mut(h.head_dim) {
                    rotate(head, cos, sin, h.neox);
                }
            }
            layer.keys.truncate(index_pos * kv_dim);
            layer.values.truncate(index_pos * kv_dim);
            for row in qkv.chunks_exact(qkv_dim) {
                layer.keys.extend_from_slice(&row[q_dim..q_dim + kv_dim]);
                layer.values.extend_from_slice(&row[q_dim + kv_dim..]);
            }
            attention(&h, &qkv, layer, index_pos, &mut attended);
            layer.output.forward(&attended, seq, &mut projected)?;
            x.iter_mut().zip(&projected).for_each(|(x, p)| *x += p);

            rms_norm(&x, &layer.ffn_norm, h.eps, &mut normed);
            layer.gate_up.forward(&normed, seq, &mut gate_up)?;
            let ff = h.feed_forward;
            for (out, row) in hidden
                .chunks_exact_mut(ff)
                .zip(gate_up.chunks_exact(2 * ff))
            {
                let (gate, up) = row.split_at(ff);
                for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
                    *o = g / (1.0 + (-g).exp()) * u;
                }
            }
            layer.down.forward(&hidden, seq, &mut projected)?;
            x.iter_mut().zip(&projected).for_each(|(x, p)| *x += p);
        }
        self.cached = index_pos + seq;

        let mut normed_last = vec![0f32; last * e];
        rms_norm(&x[(seq - last) * e..], &self.norm, h.eps, &mut normed_last);
        let mut logits = vec![0f32; last * self.head.rows()];
        self.head.forward(&normed_last, last, &mut logits)?;
        Ok(logits)
    }
}

/// `out = x / rms(x) * weight`, row by row, as candle's `rms_norm`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let width = weight.len();
    for (x, out) in x.chunks_exact(width).zip(out.chunks_exact_mut(width)) {
        let mean_square = x.iter().map(|v| v * v).sum::<f32>() / width as f32;
        let scale = 1.0 / (mean_square + eps).sqrt();
        for ((o, v), w) in out.iter_mut().zip(x).zip(weight) {
            *o = v * scale * w;
        }
    }
}

/// Cosines and sines of every rotated pair at each of `seq` positions.
fn rope_table(h: &Hyper, index_pos: usize, seq: usize) -> Vec<(Vec<f32>, Vec<f32>)> {
    (0..seq)
        .map(|i| {
            let position = (index_pos + i) as f32;
            h.inv_freq
                .iter()
                .map(|f| {
                    let angle = position * f;
                    (angle.cos(), angle.sin())
                })
                .unzip()
        })
        .collect()
}

fn rotate(head: &mut [f32], cos: &[f32], sin: &[f32], neox: bool) {
    let half = head.len() / 2;
    for j in 0..half {
        let (a, b) = if neox {
            (j, j + half)
        } else {
            (2 * j, 2 * j + 1)
        };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * cos[j] - x1 * sin[j];
        head[b] = x0 * sin[j] + x1 * cos[j];
    }
}

/// Causal grouped-query attention of the `seq` new queries in `qkv` over
/// the layer's cache, one rayon task per query position and head.
fn attention(h: &Hyper, qkv: &[f32], layer: &Layer, index_pos: usize, out: &mut [f32]) {
    let (q_dim, kv_dim, d) = (h.q_dim(), h.kv_dim(), h.head_dim);
    let qkv_dim = q_dim + 2 * kv_dim;
    let group = h.heads / h.kv_heads;
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(d)
        .enumerate()
        .with_min_len(4)
        .for_each_init(Vec::new, |scores, (index, out)| {
            let (i, head) = (index / h.heads, index % h.heads);
            kernels::Attend {
                query: &qkv[i * qkv_dim + head * d..][..d],
                keys: &layer.keys,
                values: &layer.values,
                stride: kv_dim,
                offset: (head / group) * d,
                count: index_pos + i + 1,
                scale,
            }
            .run(scores, out);
        });
}
