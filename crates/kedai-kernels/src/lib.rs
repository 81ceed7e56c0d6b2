//! Quantized matrix multiplication on the CPU over GGUF weight blocks, as
//! they lie in the file: no dequantized copy of a weight matrix is ever made.
//!
//! Activations are quantized once per call to 8-bit blocks of 32 values
//! (one f32 scale and the scaled sum per block, like ggml's `Q8_1`), and
//! every output is a sum of integer dot products of 32 weights with 32
//! activations, each scaled once in f32. The dot products run in the best
//! instruction set this CPU has, picked at run time (AVX-512 VNNI, AVX2 with
//! FMA and F16C, or portable Rust); all of them compute exactly the same
//! integer sums, so they differ from each other only by f32 rounding.
//! Work is split over output rows on the global rayon pool; for a prompt,
//! each weight block is unpacked once and reused for several activation rows.
//!
//! This crate knows block layouts and arithmetic only: nothing about models,
//! files or devices.

#[cfg(target_arch = "x86_64")]
mod x86;

use std::fmt;
use std::sync::Arc;

use half::f16;
use rayon::prelude::*;

/// Values per activation block and per weight chunk.
pub const BLOCK: usize = 32;

/// The GGML block formats these kernels multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantType {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q6K,
}

impl QuantType {
    pub const ALL: [QuantType; 7] = [
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q8_0,
        QuantType::Q4K,
        QuantType::Q6K,
    ];

    /// The format of a candle `GgmlDType`, where these kernels cover it.
    pub fn from_ggml(dtype: candle_core::quantized::GgmlDType) -> Option<Self> {
        use candle_core::quantized::GgmlDType as G;
        Some(match dtype {
            G::Q4_0 => QuantType::Q4_0,
            G::Q4_1 => QuantType::Q4_1,
            G::Q5_0 => QuantType::Q5_0,
            G::Q5_1 => QuantType::Q5_1,
            G::Q8_0 => QuantType::Q8_0,
            G::Q4K => QuantType::Q4K,
            G::Q6K => QuantType::Q6K,
            _ => return None,
        })
    }

    pub fn to_ggml(self) -> candle_core::quantized::GgmlDType {
        use candle_core::quantized::GgmlDType as G;
        match self {
            QuantType::Q4_0 => G::Q4_0,
            QuantType::Q4_1 => G::Q4_1,
            QuantType::Q5_0 => G::Q5_0,
            QuantType::Q5_1 => G::Q5_1,
            QuantType::Q8_0 => G::Q8_0,
            QuantType::Q4K => G::Q4K,
            QuantType::Q6K => G::Q6K,
        }
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            QuantType::Q4K | QuantType::Q6K => 256,
            _ => 32,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            QuantType::Q4_0 => 18,
            QuantType::Q4_1 => 20,
            QuantType::Q5_0 => 22,
            QuantType::Q5_1 => 24,
            QuantType::Q8_0 => 34,
            QuantType::Q4K => 144,
            QuantType::Q6K => 210,
        }
    }
}

/// Why a matrix cannot be built from the given bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("{ty:?} rows need a multiple of {block} columns, got {cols}")]
    RaggedColumns {
        ty: QuantType,
        block: usize,
        cols: usize,
    },
    #[error("a {rows}x{cols} {ty:?} matrix takes {expected} bytes, got {got}")]
    WrongLength {
        ty: QuantType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
}

/// A weight matrix of `rows` outputs by `cols` inputs, row-major, each row a
/// run of GGML blocks.
#[derive(Clone)]
pub struct QMatrix {
    ty: QuantType,
    rows: usize,
    cols: usize,
    /// Shared: a model with tied embeddings looks tokens up in the same
    /// matrix it multiplies by at the end.
    bytes: Arc<[u8]>,
    /// The same weights eight rows at a time, see [`pack`], where the CPU
    /// has the kernels for that layout.
    packed: Option<Arc<[u8]>>,
}

impl fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QMatrix")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .finish()
    }
}

impl QMatrix {
    pub fn new(
        ty: QuantType,
        rows: usize,
        cols: usize,
        bytes: Vec<u8>,
    ) -> Result<Self, KernelError> {
        let block = ty.block_values();
        if cols == 0 || !cols.is_multiple_of(block) {
            return Err(KernelError::RaggedColumns { ty, block, cols });
        }
        let expected = rows * cols / block * ty.block_bytes();
        if bytes.len() != expected {
            return Err(KernelError::WrongLength {
                ty,
                rows,
                cols,
                expected,
                got: bytes.len(),
            });
        }
        Ok(QMatrix {
            ty,
            rows,
            cols,
            bytes: bytes.into(),
            packed: None,
        })
    }

    /// The rows of `parts` one after another, so that projections of the
    /// same input (query, key and value) run as one multiplication; `None`
    /// unless all share a format and a width.
    pub fn concat_rows(parts: &[&QMatrix]) -> Option<QMatrix> {
        let first = parts.first()?;
        if parts
            .iter()
            .any(|p| p.ty != first.ty || p.cols != first.cols)
        {
            return None;
        }
        let bytes: Vec<u8> = parts.iter().flat_map(|p| p.bytes.iter().copied()).collect();
        Some(QMatrix {
            ty: first.ty,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            bytes: bytes.into(),
            packed: None,
        })
    }

    /// Adds the eight-row layout that the fastest kernels read, where this
    /// CPU has them and the format allows; costs 40 bytes of memory per 32
    /// weights. Rows stay available for [`QMatrix::dequantize_row`].
    pub fn with_packed(mut self) -> Self {
        if Isa::detect() >= Isa::Avx2 {
            self.packed = pack(self.ty, self.rows, self.cols, &self.bytes).map(Into::into);
        }
        self
    }

    /// Whether [`QMatrix::with_packed`] took effect.
    pub fn is_packed(&self) -> bool {
        self.packed.is_some()
    }

    /// Forgets the original rows of a packed matrix to save memory; rows
    /// can no longer be looked up.
    pub fn packed_only(mut self) -> Self {
        let always_packed = self.ty != QuantType::Q8_0 || Isa::detect() == Isa::Avx512Vnni;
        if self.packed.is_some() && always_packed {
            self.bytes = Arc::from(Vec::new());
        }
        self
    }

    pub fn ty(&self) -> QuantType {
        self.ty
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of the blocks, what one pass over the matrix reads.
    pub fn size_in_bytes(&self) -> usize {
        self.bytes.len()
    }

    fn row_bytes(&self) -> usize {
        self.cols / self.ty.block_values() * self.ty.block_bytes()
    }

    fn row(&self, index: usize) -> &[u8] {
        let len = self.row_bytes();
        &self.bytes[index * len..(index + 1) * len]
    }

    /// Row `index` in f32, e.g. the embedding of one token.
    pub fn dequantize_row(&self, index: usize, out: &mut [f32]) {
        assert!(index < self.rows && out.len() == self.cols);
        dequantize(self.ty, self.row(index), out);
    }

    /// `out[m x rows] = x[m x cols] * self^T` with the best kernel this CPU
    /// has.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_with(Isa::detect(), x, m, out)
    }

    /// As [`QMatrix::matmul`] with a chosen instruction set; one the CPU
    /// lacks falls back to the best it has.
    pub fn matmul_with(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        assert_eq!(x.len(), m * self.cols, "activations are m x cols");
        assert_eq!(out.len(), m * self.rows, "output is m x rows");
        let isa = isa.min(Isa::detect());
        let acts = Q8Acts::quantize(x, m, self.cols);
        let out_ptr = SendPtr(out.as_mut_ptr());
        if let Some(packed) = &self.packed {
            // AVX2 sums byte pairs in i16, which Q8_0's unsigned 0..=255
            // times 127 would overflow; VNNI sums in i32.
            let packed_isa = match (isa, self.ty) {
                (Isa::Avx512Vnni, _) => Some(Isa::Avx512Vnni),
                (Isa::Avx2, QuantType::Q8_0) => None,
                (Isa::Avx2, _) => Some(Isa::Avx2),
                (Isa::Scalar, _) => Some(Isa::Scalar),
            };
            if let Some(isa) = packed_isa {
                self.matmul_packed(isa, packed, &acts, m, out_ptr);
                return;
            }
            assert!(
                !self.bytes.is_empty(),
                "packed_only keeps the rows this needs"
            );
        }
        // Small chunks for one token, where rows are all the parallelism
        // there is; larger ones for a prompt, so that each task reuses its
        // weight rows, kept in cache, for every block of activation rows.
        let chunk = if m == 1 { 16 } else { 32 }.min(self.rows);
        let chunks = self.rows.div_ceil(chunk);
        let run = |c: usize| {
            let rows = c * chunk..((c + 1) * chunk).min(self.rows);
            // Activation rows are taken in groups small enough to stay in
            // the core's cache while every weight row of the chunk passes.
            let group = (256 * 1024 / self.cols).clamp(4, 64);
            let mut results = [0f32; 4];
            for group_start in (0..m).step_by(group) {
                let group_end = (group_start + group).min(m);
                for row in rows.clone() {
                    let w = self.row(row);
                    let mut r = group_start;
                    while r < group_end {
                        let n = (group_end - r).min(4);
                        dot_rows(isa, self.ty, w, &acts, r, n, &mut results);
                        for (i, value) in results[..n].iter().enumerate() {
                            // SAFETY: `(r + i) * rows + row` is inside `out`
                            // (r + i < m, row < self.rows), and each output
                            // element is written by exactly one task: the one
                            // whose chunk holds `row`.
                            unsafe { *out_ptr.get().add((r + i) * self.rows + row) = *value };
                        }
                        r += n;
                    }
                }
            }
        };
        if is_small(m, self.rows, self.cols) {
            (0..chunks).for_each(run);
        } else {
            (0..chunks).into_par_iter().for_each(run);
        }
    }
}

impl QMatrix {
    fn matmul_packed(&self, isa: Isa, packed: &[u8], acts: &Q8Acts, m: usize, out: SendPtr) {
        let blocks = self.cols / BLOCK;
        let group_bytes = blocks * PACKED_BLOCK;
        let groups = self.rows / 8;
        let per_task = if m == 1 { 2 } else { 4 }.min(groups);
        let tasks = groups.div_ceil(per_task);
        let act_group = (256 * 1024 / self.cols).clamp(4, 64);
        let run = |task: usize| {
            let range = task * per_task..((task + 1) * per_task).min(groups);
            for start in (0..m).step_by(act_group) {
                let end = (start + act_group).min(m);
                for g in range.clone() {
                    let w = &packed[g * group_bytes..(g + 1) * group_bytes];
                    let mut r = start;
                    while r < end {
                        let n = (end - r).min(4);
                        let mut results = [[0f32; 8]; 4];
                        match isa {
                            #[cfg(target_arch = "x86_64")]
                            Isa::Avx2 | Isa::Avx512Vnni => {
                                x86::packed_rows(isa, w, acts, r, n, &mut results)
                            }
                            _ => packed_rows_scalar(w, acts, r, n, &mut results),
                        }
                        for (i, values) in results[..n].iter().enumerate() {
                            // SAFETY: as in `matmul_with`: inside `out`, and
                            // rows `8g..8g + 8` belong to this task alone.
                            unsafe {
                                let at = out.get().add((r + i) * self.rows + g * 8);
                                std::ptr::copy_nonoverlapping(values.as_ptr(), at, 8);
                            }
                        }
                        r += n;
                    }
                }
            }
        };
        if is_small(m, self.rows, self.cols) {
            (0..tasks).for_each(run);
        } else {
            (0..tasks).into_par_iter().for_each(run);
        }
    }
}

/// Whether a product is too small to be worth waking other threads for: a
/// rayon round trip costs about as much as this many multiply-adds.
fn is_small(m: usize, rows: usize, cols: usize) -> bool {
    m * rows * cols < 1 << 18
}

/// Bytes per 32 columns of eight packed rows: eight f32 scales, eight f32
/// offsets, then 256 unsigned values.
const PACKED_BLOCK: usize = 32 + 32 + 256;

/// Eight rows at a time, block by block: weight `i` of row `j` is
/// `d[j] * v + offset[j]` with `v` an unsigned byte, and the values are
/// interleaved in fours (bytes `4j..4j + 4` of register `t` are values
/// `4t..4t + 4` of row `j`), so that one 4-byte dot product instruction
/// advances all eight rows at once and no horizontal sum is needed. Scales
/// and offsets are the f32 values the row kernels compute, so both layouts
/// give the same sums. For whole groups of eight rows of every format but
/// Q6_K, whose 16-value scales do not fit the scheme.
fn pack(ty: QuantType, rows: usize, cols: usize, bytes: &[u8]) -> Option<Vec<u8>> {
    if ty == QuantType::Q6K || !rows.is_multiple_of(8) {
        return None;
    }
    let blocks = cols / BLOCK;
    let row_len = cols / ty.block_values() * ty.block_bytes();
    let mut packed = vec![0u8; rows / 8 * blocks * PACKED_BLOCK];
    for (g, group) in packed.chunks_exact_mut(blocks * PACKED_BLOCK).enumerate() {
        for (b, out) in group.chunks_exact_mut(PACKED_BLOCK).enumerate() {
            for j in 0..8 {
                let row = &bytes[(g * 8 + j) * row_len..(g * 8 + j + 1) * row_len];
                let chunk = chunk(ty, row, b);
                let (bias, offset) = match ty {
                    QuantType::Q8_0 => (128, -128.0 * chunk.d),
                    _ => (0, chunk.offset),
                };
                out[4 * j..4 * j + 4].copy_from_slice(&chunk.d.to_le_bytes());
                out[32 + 4 * j..32 + 4 * j + 4].copy_from_slice(&offset.to_le_bytes());
                for (i, &q) in chunk.q.iter().enumerate() {
                    out[64 + (i / 4) * 32 + 4 * j + i % 4] = (q + bias) as u8;
                }
            }
        }
    }
    Some(packed)
}

fn packed_rows_scalar(w: &[u8], acts: &Q8Acts, first: usize, n: usize, out: &mut [[f32; 8]; 4]) {
    for (i, out) in out[..n].iter_mut().enumerate() {
        let (qs, d, s) = acts.row_blocks(first + i);
        *out = [0.0; 8];
        for (b, block) in w.chunks_exact(PACKED_BLOCK).enumerate() {
            let a = &qs[b * BLOCK..(b + 1) * BLOCK];
            for (j, o) in out.iter_mut().enumerate() {
                let dot: i32 = (0..BLOCK)
                    .map(|v| block[64 + (v / 4) * 32 + 4 * j + v % 4] as i32 * a[v] as i32)
                    .sum();
                let f32_at = |at: usize| f32::from_le_bytes(block[at..at + 4].try_into().unwrap());
                let dw = f32_at(4 * j);
                let offset = f32_at(32 + 4 * j);
                *o += dw * d[b] * dot as f32 + offset * s[b];
            }
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: the pointer is only used for disjoint writes, see `matmul_with`.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `sum(a[i] * b[i])` in f32, for attention scores.
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::dot_f32(a, b) };
    }
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// `y += alpha * x` in f32, for weighting attention values.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { x86::axpy(y, alpha, x) };
    }
    for (y, x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `x[r][i] = gelu(x[r][i] + bias[i])` for every row `r` of `x` (rows of
/// `bias.len()` values), with GELU in its exact erf form,
/// `0.5 x (1 + erf(x / sqrt 2))`, as BERT uses it. erf is a rational
/// approximation accurate to a few f32 ulps (Eigen's `generic_fast_erf`),
/// branch-free so that it runs eight values per instruction.
pub fn bias_gelu(x: &mut [f32], bias: &[f32]) {
    assert!(!bias.is_empty() && x.len().is_multiple_of(bias.len()));
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { bias_gelu_avx2(x, bias) };
    }
    bias_gelu_portable(x, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bias_gelu_avx2(x: &mut [f32], bias: &[f32]) {
    bias_gelu_portable(x, bias)
}

#[inline(always)]
fn bias_gelu_portable(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, b) in row.iter_mut().zip(bias) {
            let v0 = *v + b;
            *v = 0.5 * v0 * (1.0 + erf(v0 * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// LayerNorm of every row of `x` (rows of `weight.len()` values) in place:
/// `(x - mean) / sqrt(variance + eps) * weight + bias`, with the biased
/// variance, as BERT computes it.
pub fn layer_norm(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    assert!(!weight.is_empty() && weight.len() == bias.len());
    assert!(x.len().is_multiple_of(weight.len()));
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { layer_norm_avx2(x, weight, bias, eps) };
    }
    layer_norm_portable(x, weight, bias, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn layer_norm_avx2(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    layer_norm_portable(x, weight, bias, eps)
}

#[inline(always)]
fn layer_norm_portable(x: &mut [f32], weight: &[f32], bias: &[f32], eps: f32) {
    let n = weight.len() as f32;
    for row in x.chunks_exact_mut(weight.len()) {
        let mean = lane_sum(row, |v| v) / n;
        let variance = lane_sum(row, |v| (v - mean) * (v - mean)) / n;
        let inv = 1.0 / (variance + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(weight).zip(bias) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

/// RMSNorm of every row of `x` (rows of `weight.len()` values) in place:
/// `x / sqrt(mean(x^2) + eps) * weight`. Gemma's `(1 + w)` scale is the
/// caller's to fold into `weight`.
pub fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    assert!(!weight.is_empty() && x.len().is_multiple_of(weight.len()));
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: AVX2 and FMA were detected.
        return unsafe { rms_norm_avx2(x, weight, eps) };
    }
    rms_norm_portable(x, weight, eps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rms_norm_avx2(x: &mut [f32], weight: &[f32], eps: f32) {
    rms_norm_portable(x, weight, eps)
}

#[inline(always)]
fn rms_norm_portable(x: &mut [f32], weight: &[f32], eps: f32) {
    let n = weight.len() as f32;
    for row in x.chunks_exact_mut(weight.len()) {
        let inv = 1.0 / (lane_sum(row, |v| v * v) / n + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * inv * w;
        }
    }
}

/// For every row of `x` holding a gate and an up projection side by side
/// (`2 * out_row.len()` values), `out = gelu_tanh(gate) * up`: the gated
/// feed-forward of Gemma, with GELU in its tanh form
/// (`0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3)))`).
pub fn gelu_tanh_gate(x: &[f32], out: &mut [f32], width: usize) {
    assert!(width > 0 && x.len() == 2 * out.len() && out.len().is_multiple_of(width));
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for (row, out) in x.chunks_exact(2 * width).zip(out.chunks_exact_mut(width)) {
        let (gate, up) = row.split_at(width);
        for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
            let inner = SQRT_2_OVER_PI * (g + 0.044_715 * g * g * g);
            *o = 0.5 * g * (1.0 + inner.tanh()) * u;
        }
    }
}

/// `sum(f(v))` over `values` in eight lanes, so that it vectorises.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// erf in f32 as `x P(x^2) / Q(x^2)` on `[-4, 4]`, where it reaches +-1.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // Plain multiply-adds: `mul_add` is a library call on CPUs without FMA.
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p + -2.101_024e-6;
    p = x2 * p + -5.692_506_4e-5;
    p = x2 * p + -7.349_906e-4;
    p = x2 * p + -2.954_600_1e-3;
    p = x2 * p + -1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 + -2.133_740_6e-4;
    q = x2 * q + -1.682_827e-3;
    q = x2 * q + -7.373_329e-3;
    q = x2 * q + -1.426_474e-2;
    x * p / q
}

/// One query's attention over `count` cached positions: keys and values of
/// position `t` start at `t * stride + offset` in `keys` / `values`, each
/// `query.len()` long. Writes the softmax-weighted sum of the values to
/// `out`; `scores` is scratch space of at least `count` values.
pub struct Attend<'a> {
    pub query: &'a [f32],
    pub keys: &'a [f32],
    pub values: &'a [f32],
    pub stride: usize,
    pub offset: usize,
    pub count: usize,
    pub scale: f32,
}

impl Attend<'_> {
    pub fn run(&self, scores: &mut Vec<f32>, out: &mut [f32]) {
        let d = self.query.len();
        assert_eq!(out.len(), d);
        assert!(
            self.count == 0 || (self.count - 1) * self.stride + self.offset + d <= self.keys.len()
        );
        assert!(self.keys.len() == self.values.len());
        #[cfg(target_arch = "x86_64")]
        if Isa::detect() >= Isa::Avx2 {
            // SAFETY: AVX2 and FMA were detected; bounds were checked above.
            return unsafe { x86::attend(self, scores, out) };
        }
        scores.clear();
        scores.extend((0..self.count).map(|t| {
            let key = &self.keys[t * self.stride + self.offset..][..d];
            dot_f32(self.query, key) * self.scale
        }));
        let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let mut total = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            total += *s;
        }
        out.fill(0.0);
        for (t, s) in scores.iter().enumerate() {
            let value = &self.values[t * self.stride + self.offset..][..d];
            axpy(out, s / total, value);
        }
    }
}

/// Instruction sets the kernels come in, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// AVX2, FMA and F16C (x86-64 since about 2013).
    Avx2,
    /// AVX2 plus AVX-512 VNNI on 256-bit vectors.
    Avx512Vnni,
}

impl Isa {
    /// The best this CPU runs; read once.
    pub fn detect() -> Isa {
        static DETECTED: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                let avx2 = is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("fma")
                    && is_x86_feature_detected!("f16c");
                let vnni = is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vl")
                    && is_x86_feature_detected!("avx512vnni");
                if avx2 && vnni {
                    return Isa::Avx512Vnni;
                }
                if avx2 {
                    return Isa::Avx2;
                }
            }
            Isa::Scalar
        })
    }
}

/// Input rows, their quantized bytes, scales and sums, for one task.
type RowsToQuantize<'a> = ((&'a [f32], &'a mut [i8]), (&'a mut [f32], &'a mut [f32]));

/// Activation rows quantized to blocks of 32 signed bytes: value `i` of
/// block `b` is about `d[b] * qs[i]`, and `s[b] = d[b] * sum(qs)`.
pub struct Q8Acts {
    cols: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

impl Q8Acts {
    pub fn quantize(x: &[f32], m: usize, cols: usize) -> Self {
        assert!(cols.is_multiple_of(BLOCK) && x.len() == m * cols);
        let blocks = m * cols / BLOCK;
        let mut acts = Q8Acts {
            cols,
            qs: vec![0; m * cols],
            d: vec![0.0; blocks],
            s: vec![0.0; blocks],
        };
        let quantize_rows = |((xs, qs), (d, s)): RowsToQuantize| {
            #[cfg(target_arch = "x86_64")]
            if Isa::detect() >= Isa::Avx2 {
                // SAFETY: AVX2 was detected.
                return unsafe { x86::quantize_blocks(xs, qs, d, s) };
            }
            quantize_blocks(xs, qs, d, s)
        };
        let per_row = cols / BLOCK;
        let rows_per_task = (8192 / cols).max(1);
        x.par_chunks(cols * rows_per_task)
            .zip(acts.qs.par_chunks_mut(cols * rows_per_task))
            .zip(
                acts.d
                    .par_chunks_mut(per_row * rows_per_task)
                    .zip(acts.s.par_chunks_mut(per_row * rows_per_task)),
            )
            .for_each(quantize_rows);
        acts
    }

    fn row_blocks(&self, row: usize) -> (&[i8], &[f32], &[f32]) {
        let per_row = self.cols / BLOCK;
        (
            &self.qs[row * self.cols..(row + 1) * self.cols],
            &self.d[row * per_row..(row + 1) * per_row],
            &self.s[row * per_row..(row + 1) * per_row],
        )
    }
}

fn quantize_blocks(xs: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    for (b, (x, q)) in xs
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        (d[b], s[b]) = quantize_block(x, q);
    }
}

fn quantize_block(x: &[f32], q: &mut [i8]) -> (f32, f32) {
    let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut sum = 0i32;
    for (q, x) in q.iter_mut().zip(x) {
        let v = (x * inv).round() as i32;
        *q = v as i8;
        sum += v;
    }
    (d, d * sum as f32)
}

/// `out[i] = dot(weight row w, activation row first + i)` for `i < n <= 4`.
fn dot_rows(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    acts: &Q8Acts,
    first: usize,
    n: usize,
    out: &mut [f32; 4],
) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 | Isa::Avx512Vnni => x86::dot_rows(isa, ty, w, acts, first, n, out),
        _ => {
            for (i, o) in out[..n].iter_mut().enumerate() {
                *o = dot_scalar(ty, w, acts, first + i);
            }
        }
    }
}

/// One 32-value chunk of a weight row in integers: weight `i` is
/// `d * q[i] + offset`.
struct Chunk {
    q: [i32; BLOCK],
    d: f32,
    offset: f32,
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

/// The (scale, min) pair `j` of a Q4_K block's 12 packed bytes of 6-bit
/// values, as ggml's `get_scale_min_k4`.
fn q4k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// Chunk `c` of a row of blocks.
fn chunk(ty: QuantType, row: &[u8], c: usize) -> Chunk {
    let mut q = [0i32; BLOCK];
    match ty {
        QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q5_0 | QuantType::Q5_1 => {
            let size = ty.block_bytes();
            let b = &row[c * size..(c + 1) * size];
            let d = f16_at(b, 0);
            let (nibbles, high, offset) = match ty {
                QuantType::Q4_0 => (&b[2..18], 0u32, -8.0 * d),
                QuantType::Q4_1 => (&b[4..20], 0, f16_at(b, 2)),
                QuantType::Q5_0 => (
                    &b[6..22],
                    u32::from_le_bytes([b[2], b[3], b[4], b[5]]),
                    -16.0 * d,
                ),
                _ => (
                    &b[8..24],
                    u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                    f16_at(b, 2),
                ),
            };
            for (j, &byte) in nibbles.iter().enumerate() {
                q[j] = (byte & 0xF) as i32 | (((high >> j) & 1) << 4) as i32;
                q[j + 16] = (byte >> 4) as i32 | (((high >> (j + 16)) & 1) << 4) as i32;
            }
            Chunk { q, d, offset }
        }
        QuantType::Q8_0 => {
            let b = &row[c * 34..(c + 1) * 34];
            for (q, &v) in q.iter_mut().zip(&b[2..34]) {
                *q = v as i8 as i32;
            }
            Chunk {
                q,
                d: f16_at(b, 0),
                offset: 0.0,
            }
        }
        QuantType::Q4K => {
            let b = &row[c / 8 * 144..(c / 8 + 1) * 144];
            let sub = c % 8;
            let (sc, m) = q4k_scale_min(sub, &b[4..16]);
            let qs = &b[16 + sub / 2 * 32..16 + sub / 2 * 32 + 32];
            for (q, &byte) in q.iter_mut().zip(qs) {
                *q = if sub.is_multiple_of(2) {
                    byte & 0xF
                } else {
                    byte >> 4
                } as i32;
            }
            Chunk {
                q,
                d: f16_at(b, 0) * sc as f32,
                offset: -f16_at(b, 2) * m as f32,
            }
        }
        QuantType::Q6K => {
            let b = &row[c / 8 * 210..(c / 8 + 1) * 210];
            let (half, part) = (c % 8 / 4, c % 4);
            let ql = &b[64 * half..64 * half + 64];
            let qh = &b[128 + 32 * half..128 + 32 * half + 32];
            let scales = &b[192 + 8 * half..192 + 8 * half + 8];
            for l in 0..BLOCK {
                let low = if part % 2 == 0 { ql[l] } else { ql[l + 32] };
                let low = if part < 2 { low & 0xF } else { low >> 4 };
                let high = (qh[l] >> (2 * part)) & 3;
                let scale = scales[2 * part + l / 16] as i8 as i32;
                q[l] = (((high << 4) | low) as i32 - 32) * scale;
            }
            Chunk {
                q,
                d: f16_at(b, 208),
                offset: 0.0,
            }
        }
    }
}

fn dequantize(ty: QuantType, row: &[u8], out: &mut [f32]) {
    for (c, out) in out.chunks_exact_mut(BLOCK).enumerate() {
        let chunk = chunk(ty, row, c);
        for (o, &q) in out.iter_mut().zip(&chunk.q) {
            *o = chunk.d * q as f32 + chunk.offset;
        }
    }
}

fn dot_scalar(ty: QuantType, w: &[u8], acts: &Q8Acts, row: usize) -> f32 {
    let (qs, d, s) = acts.row_blocks(row);
    let mut sum = 0f32;
    for c in 0..d.len() {
        let chunk = chunk(ty, w, c);
        let a = &qs[c * BLOCK..(c + 1) * BLOCK];
        let dot: i32 = chunk.q.iter().zip(a).map(|(&q, &a)| q * a as i32).sum();
        sum += chunk.d * d[c] * dot as f32 + chunk.offset * s[c];
    }
    sum
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// A `rows x cols` matrix of `ty` quantized by candle from random
    /// weights, and candle's own dequantization of it.
    fn random_matrix(ty: QuantType, rows: usize, cols: usize, seed: u64) -> (QMatrix, Vec<f32>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-1.0..1.0f32))
            .collect();
        let tensor = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&tensor, ty.to_ggml()).unwrap();
        let bytes = q.data().unwrap().into_owned();
        let dequantized = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        (QMatrix::new(ty, rows, cols, bytes).unwrap(), dequantized)
    }

    fn random_acts(m: usize, cols: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..m * cols)
            .map(|_| rng.random_range(-2.0..2.0f32))
            .collect()
    }

    fn f32_matmul(w: &[f32], x: &[f32], m: usize, rows: usize, cols: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * rows];
        for i in 0..m {
            for j in 0..rows {
                out[i * rows + j] = (0..cols)
                    .map(|k| x[i * cols + k] as f64 * w[j * cols + k] as f64)
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn dequantization_matches_candle_for_every_format() {
        for ty in QuantType::ALL {
            let (matrix, reference) = random_matrix(ty, 3, 512, 7);
            let mut row = vec![0f32; 512];
            for r in 0..3 {
                matrix.dequantize_row(r, &mut row);
                assert_eq!(row, reference[r * 512..(r + 1) * 512], "{ty:?} row {r}");
            }
        }
    }

    #[test]
    fn every_instruction_set_matches_the_portable_kernel() {
        // Same integer sums in every build, so only the f32 accumulation
        // order differs: a relative 1e-5 of the sum of magnitudes.
        for ty in QuantType::ALL {
            for m in [1, 3, 4, 9] {
                // 40 rows: five packed groups of eight.
                let (matrix, _) = random_matrix(ty, 40, 768, 11);
                let x = random_acts(m, 768, 13);
                let mut reference = vec![0f32; m * 40];
                matrix.matmul_with(Isa::Scalar, &x, m, &mut reference);
                let packed = matrix.clone().with_packed();
                assert_eq!(
                    packed.is_packed(),
                    ty != QuantType::Q6K && Isa::detect() >= Isa::Avx2,
                    "{ty:?}"
                );
                for (isa, matrix) in [
                    (Isa::Avx2, &matrix),
                    (Isa::Avx512Vnni, &matrix),
                    (Isa::Scalar, &packed),
                    (Isa::Avx2, &packed),
                    (Isa::Avx512Vnni, &packed),
                ] {
                    let mut out = vec![0f32; m * 40];
                    matrix.matmul_with(isa, &x, m, &mut out);
                    for (i, (a, b)) in out.iter().zip(&reference).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()) * 30.0,
                            "{ty:?} {isa:?} packed={} m={m} [{i}]: {a} vs {b}",
                            matrix.is_packed()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn kernels_match_candles_dequantized_f32_matmul() {
        // The only difference from the f32 product of candle's dequantized
        // weights is the rounding of each activation to 8 bits: an error of
        // at most d/2 = amax/254 per value, independent across values, so the
        // error of a dot product is about |w|*amax/254*sqrt(cols/3). With
        // weights in [-1, 1] and activations in [-2, 2], 768 columns, that
        // is about 0.07 at one standard deviation; 0.5 is seven of them.
        for ty in QuantType::ALL {
            // 32 rows: four groups of eight, packed where the format allows.
            let (matrix, weights) = random_matrix(ty, 32, 768, 17);
            let m = 5;
            let x = random_acts(m, 768, 19);
            let reference = f32_matmul(&weights, &x, m, 32, 768);
            let mut out = vec![0f32; m * 32];
            matrix.matmul(&x, m, &mut out);
            let mut packed_out = vec![0f32; m * 32];
            let packed = matrix.clone().with_packed().packed_only();
            packed.matmul(&x, m, &mut packed_out);
            out.extend(packed_out);
            let reference: Vec<f32> = reference.iter().chain(&reference).copied().collect();
            let worst = out
                .iter()
                .zip(&reference)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 0.5, "{ty:?}: worst error {worst}");
        }
    }

    #[test]
    fn f32_helpers_match_plain_loops() {
        for len in [0, 5, 8, 64, 67] {
            let a = random_acts(1, len.max(1), 3)[..len].to_vec();
            let b = random_acts(1, len.max(1), 5)[..len].to_vec();
            let plain: f32 = a.iter().zip(&b).map(|(a, b)| a * b).sum();
            assert!((dot_f32(&a, &b) - plain).abs() < 1e-4, "len {len}");
            let mut y = b.clone();
            axpy(&mut y, 0.5, &a);
            for ((y, a), b) in y.iter().zip(&a).zip(&b) {
                assert!((y - (b + 0.5 * a)).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn bias_gelu_matches_candles_exact_erf_gelu() {
        let bias = [0.5f32, -0.25, 0.0, 1.0, -2.0];
        let x: Vec<f32> = (0..40).map(|i| (i as f32 - 20.0) * 0.37).collect();
        let shifted: Vec<f32> = x
            .chunks_exact(bias.len())
            .flat_map(|row| row.iter().zip(&bias).map(|(v, b)| v + b))
            .collect();
        let expected = Tensor::new(shifted.as_slice(), &Device::Cpu)
            .unwrap()
            .gelu_erf()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut ours = x.clone();
        bias_gelu(&mut ours, &bias);
        let mut portable = x;
        bias_gelu_portable(&mut portable, &bias);
        for ((a, b), c) in ours.iter().zip(&expected).zip(&portable) {
            assert!((a - b).abs() <= 2e-6 * (1.0 + b.abs()), "{a} vs {b}");
            assert!((a - c).abs() <= 1e-6 * (1.0 + c.abs()), "{a} vs {c}");
        }
        for v in [-10.0f32, -3.0, -0.5, 0.0, 1e-3, 0.7, 2.5, 9.0] {
            let reference = Tensor::new(&[v], &Device::Cpu)
                .unwrap()
                .erf()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()[0];
            assert!((erf(v) - reference).abs() < 1e-6, "erf({v})");
        }
    }

    #[test]
    fn layer_norm_matches_a_double_precision_loop() {
        let (rows, cols) = (3, 44);
        let x = random_acts(rows, cols, 23);
        let weight = random_acts(1, cols, 29);
        let bias = random_acts(1, cols, 31);
        let eps = 1e-12;
        let expected: Vec<f32> = x
            .chunks_exact(cols)
            .flat_map(|row| {
                let mean = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
                let variance =
                    row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / cols as f64;
                let inv = 1.0 / (variance + eps).sqrt();
                row.iter()
                    .zip(&weight)
                    .zip(&bias)
                    .map(move |((&v, &w), &b)| {
                        ((v as f64 - mean) * inv * w as f64 + b as f64) as f32
                    })
            })
            .collect();
        let mut ours = x.clone();
        layer_norm(&mut ours, &weight, &bias, eps as f32);
        let mut portable = x;
        layer_norm_portable(&mut portable, &weight, &bias, eps as f32);
        for ((a, b), c) in ours.iter().zip(&expected).zip(&portable) {
            assert!((a - b).abs() < 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            assert!((a - c).abs() < 1e-6 * (1.0 + c.abs()), "{a} vs {c}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_activation_quantization_equals_the_portable_one() {
        if Isa::detect() < Isa::Avx2 {
            return;
        }
        let mut x = random_acts(3, 128, 37);
        // Exact halves after scaling: amax 127 gives a scale of 1.
        x[..8].copy_from_slice(&[127.0, 0.5, -0.5, 2.5, -2.5, 1.5, -126.5, 0.0]);
        x[32..64].fill(0.0);
        let blocks = x.len() / BLOCK;
        let (mut q1, mut d1, mut s1) = (vec![0i8; x.len()], vec![0f32; blocks], vec![0f32; blocks]);
        let (mut q2, mut d2, mut s2) = (q1.clone(), d1.clone(), s1.clone());
        quantize_blocks(&x, &mut q1, &mut d1, &mut s1);
        // SAFETY: AVX2 was detected.
        unsafe { x86::quantize_blocks(&x, &mut q2, &mut d2, &mut s2) };
        assert_eq!(q1[..8], [127, 1, -1, 3, -3, 2, -127, 0]);
        assert_eq!((q1, d1, s1), (q2, d2, s2));
    }

    #[test]
    fn activation_quantization_keeps_zero_rows_finite() {
        let acts = Q8Acts::quantize(&[0.0; 64], 1, 64);
        assert!(acts.d.iter().chain(&acts.s).all(|v| *v == 0.0));
    }

    #[test]
    fn concatenated_rows_multiply_like_their_parts() {
        let (a, _) = random_matrix(QuantType::Q5_0, 5, 64, 1);
        let (b, _) = random_matrix(QuantType::Q5_0, 3, 64, 2);
        let (c, _) = random_matrix(QuantType::Q8_0, 3, 64, 3);
        assert!(QMatrix::concat_rows(&[&a, &c]).is_none());
        let ab = QMatrix::concat_rows(&[&a, &b]).unwrap();
        let x = random_acts(2, 64, 4);
        let mut joint = vec![0f32; 2 * 8];
        ab.matmul(&x, 2, &mut joint);
        let (mut left, mut right) = (vec![0f32; 2 * 5], vec![0f32; 2 * 3]);
        a.matmul(&x, 2, &mut left);
        b.matmul(&x, 2, &mut right);
        for i in 0..2 {
            assert_eq!(joint[i * 8..i * 8 + 5], left[i * 5..i * 5 + 5]);
            assert_eq!(joint[i * 8 + 5..i * 8 + 8], right[i * 3..i * 3 + 3]);
        }
    }

    #[test]
    fn malformed_matrices_are_refused() {
        assert!(matches!(
            QMatrix::new(QuantType::Q4K, 2, 32, vec![0; 18]),
            Err(KernelError::RaggedColumns { .. })
        ));
        assert!(matches!(
            QMatrix::new(QuantType::Q8_0, 2, 64, vec![0; 100]),
            Err(KernelError::WrongLength { expected: 136, .. })
        ));
    }

    #[test]
    fn the_reference_formats_round_trip_through_candle() {
        for ty in QuantType::ALL {
            assert_eq!(QuantType::from_ggml(ty.to_ggml()), Some(ty));
            assert_eq!(ty.block_bytes(), ty.to_ggml().type_size());
            assert_eq!(ty.block_values(), ty.to_ggml().block_size());
        }
        assert_eq!(QuantType::from_ggml(GgmlDType::Q5K), None);
    }

    #[test]
    fn rms_norm_scales_each_row_to_unit_root_mean_square() {
        let mut x = vec![3.0, 4.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
        rms_norm(&mut x, &[1.0, 2.0, 1.0, 1.0], 0.0);
        let expected_first = [3.0 / 2.5, 8.0 / 2.5, 0.0, 0.0];
        for (got, want) in x[..4].iter().zip(expected_first) {
            assert!((got - want).abs() < 1e-6, "{x:?}");
        }
        assert!(
            (x[5] - 2.0).abs() < 1e-6 && (x[4] - 1.0).abs() < 1e-6,
            "{x:?}"
        );
    }

    #[test]
    fn gelu_tanh_gate_multiplies_the_activated_gate_by_up() {
        // Rows of [gate | up], two values each.
        let x = [0.0, 1.0, 5.0, 7.0, -1.0, 2.0, 2.0, 0.5];
        let mut out = [0f32; 4];
        gelu_tanh_gate(&x, &mut out, 2);
        let gelu = |g: f32| 0.5 * g * (1.0 + (0.797_884_6 * (g + 0.044_715 * g * g * g)).tanh());
        let want = [0.0, gelu(1.0) * 7.0, gelu(-1.0) * 2.0, gelu(2.0) * 0.5];
        for (got, want) in out.iter().zip(want) {
            assert!((got - want).abs() < 1e-6, "{out:?}");
        }
        assert!((gelu(1.0) - 0.841_192).abs() < 1e-5);
    }
}
