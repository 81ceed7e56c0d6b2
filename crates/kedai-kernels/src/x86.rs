//! The x86-64 kernels: the same integer sums as the portable ones, 32 values
//! at a time in 256-bit registers. Two builds of the same code differ only in
//! how they multiply unsigned weight bytes by signed activation bytes and add
//! them up in fours: AVX2's `vpmaddubsw` + `vpmaddwd`, or AVX-512 VNNI's
//! single `vpdpbusd`. Q6_K keeps the AVX2 sequence in both, since it scales
//! each half of a chunk by its own integer before the sum.

use std::arch::x86_64::*;

use super::{Attend, Isa, Q8Acts, QuantType, BLOCK};

pub(super) fn dot_rows(
    isa: Isa,
    ty: QuantType,
    w: &[u8],
    acts: &Q8Acts,
    first: usize,
    n: usize,
    out: &mut [f32; 4],
) {
    // SAFETY: `Isa::detect` found every feature the chosen build enables,
    // and `matmul_with` never picks an instruction set above it.
    unsafe {
        match isa {
            Isa::Avx512Vnni => vnni::dot_rows(ty, w, acts, first, n, out),
            _ => avx2::dot_rows(ty, w, acts, first, n, out),
        }
    }
}

pub(super) fn packed_rows(
    isa: Isa,
    w: &[u8],
    acts: &Q8Acts,
    first: usize,
    n: usize,
    out: &mut [[f32; 8]; 4],
) {
    // SAFETY: as in `dot_rows`.
    unsafe {
        match isa {
            Isa::Avx512Vnni => vnni::packed_rows(w, acts, first, n, out),
            _ => avx2::packed_rows(w, acts, first, n, out),
        }
    }
}

macro_rules! kernels {
    (
        $name:ident,
        $features:literal,
        |$w:ident, $a:ident| $dot:expr,
        |$acc:ident, $w4:ident, $a4:ident| $accumulate:expr
    ) => {
        mod $name {
            use std::arch::x86_64::*;

            use super::super::{Q8Acts, QuantType, BLOCK, PACKED_BLOCK};
            use super::{bytes_from_bits, f16_to_f32, hsum, nibbles};

            /// Four-byte sums of `w[i] * a[i]`, `w` unsigned and `a` signed.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn dot_u8i8($w: __m256i, $a: __m256i) -> __m256i {
                $dot
            }

            /// `acc + ` the four-byte sums of `w[i] * a[i]`.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn accumulate($acc: __m256i, $w4: __m256i, $a4: __m256i) -> __m256i {
                $accumulate
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn packed_rows(
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                n: usize,
                out: &mut [[f32; 8]; 4],
            ) {
                match n {
                    1 => packed_n::<1>(w, acts, first, out),
                    2 => packed_n::<2>(w, acts, first, out),
                    3 => packed_n::<3>(w, acts, first, out),
                    _ => packed_n::<4>(w, acts, first, out),
                }
            }

            /// Eight packed weight rows by `R` activation rows.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn packed_n<const R: usize>(
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                out: &mut [[f32; 8]; 4],
            ) {
                let blocks = w.len() / PACKED_BLOCK;
                let (q, d, s) = rows::<R>(acts, first);
                let mut acc = [_mm256_setzero_ps(); R];
                for b in 0..blocks {
                    let p = w.as_ptr().add(b * PACKED_BLOCK);
                    let dw = _mm256_loadu_ps(p as *const f32);
                    let offset = _mm256_loadu_ps(p.add(32) as *const f32);
                    let mut values = [_mm256_setzero_si256(); 8];
                    for (t, v) in values.iter_mut().enumerate() {
                        *v = _mm256_loadu_si256(p.add(64 + 32 * t) as *const __m256i);
                    }
                    for r in 0..R {
                        let a = q[r].add(b * BLOCK) as *const i32;
                        let mut sum = _mm256_setzero_si256();
                        for (t, v) in values.iter().enumerate() {
                            sum = accumulate(sum, *v, _mm256_set1_epi32(a.add(t).read_unaligned()));
                        }
                        let scale = _mm256_mul_ps(dw, _mm256_set1_ps(*d[r].add(b)));
                        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r]);
                        acc[r] = _mm256_fmadd_ps(offset, _mm256_set1_ps(*s[r].add(b)), acc[r]);
                    }
                }
                for r in 0..R {
                    _mm256_storeu_ps(out[r].as_mut_ptr(), acc[r]);
                }
            }

            #[target_feature(enable = $features)]
            pub(super) unsafe fn dot_rows(
                ty: QuantType,
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                n: usize,
                out: &mut [f32; 4],
            ) {
                match n {
                    1 => dot_n::<1>(ty, w, acts, first, out),
                    2 => dot_n::<2>(ty, w, acts, first, out),
                    3 => dot_n::<3>(ty, w, acts, first, out),
                    _ => dot_n::<4>(ty, w, acts, first, out),
                }
            }

            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn dot_n<const R: usize>(
                ty: QuantType,
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                out: &mut [f32; 4],
            ) {
                match ty {
                    QuantType::Q4_0 => small::<R, 0>(w, acts, first, out),
                    QuantType::Q4_1 => small::<R, 1>(w, acts, first, out),
                    QuantType::Q5_0 => small::<R, 2>(w, acts, first, out),
                    QuantType::Q5_1 => small::<R, 3>(w, acts, first, out),
                    QuantType::Q8_0 => q8_0::<R>(w, acts, first, out),
                    QuantType::Q4K => q4k::<R>(w, acts, first, out),
                    QuantType::Q6K => q6k::<R>(w, acts, first, out),
                }
            }

            /// Row pointers to the activation bytes, scales and sums.
            #[inline(always)]
            fn rows<const R: usize>(
                acts: &Q8Acts,
                first: usize,
            ) -> ([*const i8; R], [*const f32; R], [*const f32; R]) {
                let mut q = [std::ptr::null(); R];
                let mut d = [std::ptr::null(); R];
                let mut s = [std::ptr::null(); R];
                for r in 0..R {
                    let (qs, ds, ss) = acts.row_blocks(first + r);
                    q[r] = qs.as_ptr();
                    d[r] = ds.as_ptr();
                    s[r] = ss.as_ptr();
                }
                (q, d, s)
            }

            /// Q4_0, Q4_1, Q5_0 and Q5_1: 32 values per block, weight
            /// `d * q + offset` with `q` unsigned.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn small<const R: usize, const TY: u8>(
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                out: &mut [f32; 4],
            ) {
                let size = [18, 20, 22, 24][TY as usize];
                let blocks = w.len() / size;
                let (q, d, s) = rows::<R>(acts, first);
                let mut acc = [_mm256_setzero_ps(); R];
                let mut offsets = [0f32; R];
                let high_bit = _mm256_set1_epi8(0x10);
                for b in 0..blocks {
                    let p = w.as_ptr().add(b * size);
                    let dw = f16_to_f32(p);
                    let (values, offset) = match TY {
                        0 => (nibbles(p.add(2)), -8.0 * dw),
                        1 => (nibbles(p.add(4)), f16_to_f32(p.add(2))),
                        2 => {
                            let high = bytes_from_bits((p.add(2) as *const u32).read_unaligned());
                            let v = _mm256_or_si256(
                                nibbles(p.add(6)),
                                _mm256_and_si256(high, high_bit),
                            );
                            (v, -16.0 * dw)
                        }
                        _ => {
                            let high = bytes_from_bits((p.add(4) as *const u32).read_unaligned());
                            let v = _mm256_or_si256(
                                nibbles(p.add(8)),
                                _mm256_and_si256(high, high_bit),
                            );
                            (v, f16_to_f32(p.add(2)))
                        }
                    };
                    for r in 0..R {
                        let a = _mm256_loadu_si256(q[r].add(b * BLOCK) as *const __m256i);
                        let dot = _mm256_cvtepi32_ps(dot_u8i8(values, a));
                        acc[r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(dw * *d[r].add(b)), acc[r]);
                        offsets[r] += offset * *s[r].add(b);
                    }
                }
                for r in 0..R {
                    out[r] = hsum(acc[r]) + offsets[r];
                }
            }

            /// Q8_0: signed weights, so the sign moves onto the activation.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn q8_0<const R: usize>(
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                out: &mut [f32; 4],
            ) {
                let blocks = w.len() / 34;
                let (q, d, _) = rows::<R>(acts, first);
                let mut acc = [_mm256_setzero_ps(); R];
                for b in 0..blocks {
                    let p = w.as_ptr().add(b * 34);
                    let dw = f16_to_f32(p);
                    let values = _mm256_loadu_si256(p.add(2) as *const __m256i);
                    let magnitude = _mm256_abs_epi8(values);
                    for r in 0..R {
                        let a = _mm256_loadu_si256(q[r].add(b * BLOCK) as *const __m256i);
                        let a = _mm256_sign_epi8(a, values);
                        let dot = _mm256_cvtepi32_ps(dot_u8i8(magnitude, a));
                        acc[r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(dw * *d[r].add(b)), acc[r]);
                    }
                }
                for r in 0..R {
                    out[r] = hsum(acc[r]);
                }
            }

            /// Q4_K: 256 values per block in eight chunks, each with its own
            /// 6-bit scale and min.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn q4k<const R: usize>(
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                out: &mut [f32; 4],
            ) {
                let blocks = w.len() / 144;
                let (q, d, s) = rows::<R>(acts, first);
                let mut acc = [_mm256_setzero_ps(); R];
                let mut offsets = [0f32; R];
                let low_nibble = _mm256_set1_epi8(0x0F);
                for b in 0..blocks {
                    let p = w.as_ptr().add(b * 144);
                    let block = std::slice::from_raw_parts(p, 144);
                    let dw = f16_to_f32(p);
                    let dmin = f16_to_f32(p.add(2));
                    for pair in 0..4 {
                        let raw = _mm256_loadu_si256(p.add(16 + 32 * pair) as *const __m256i);
                        let halves = [
                            _mm256_and_si256(raw, low_nibble),
                            _mm256_and_si256(_mm256_srli_epi16(raw, 4), low_nibble),
                        ];
                        for (h, values) in halves.into_iter().enumerate() {
                            let c = 2 * pair + h;
                            let (sc, m) = super::super::q4k_scale_min(c, &block[4..16]);
                            let scale = dw * sc as f32;
                            let offset = -dmin * m as f32;
                            let chunk = b * 8 + c;
                            for r in 0..R {
                                let a =
                                    _mm256_loadu_si256(q[r].add(chunk * BLOCK) as *const __m256i);
                                let dot = _mm256_cvtepi32_ps(dot_u8i8(values, a));
                                acc[r] = _mm256_fmadd_ps(
                                    dot,
                                    _mm256_set1_ps(scale * *d[r].add(chunk)),
                                    acc[r],
                                );
                                offsets[r] += offset * *s[r].add(chunk);
                            }
                        }
                    }
                }
                for r in 0..R {
                    out[r] = hsum(acc[r]) + offsets[r];
                }
            }

            /// Q6_K: 256 six-bit values per block, an 8-bit scale per 16.
            #[target_feature(enable = $features)]
            #[inline]
            unsafe fn q6k<const R: usize>(
                w: &[u8],
                acts: &Q8Acts,
                first: usize,
                out: &mut [f32; 4],
            ) {
                let blocks = w.len() / 210;
                let (q, d, _) = rows::<R>(acts, first);
                let mut acc = [_mm256_setzero_ps(); R];
                let low_nibble = _mm256_set1_epi8(0x0F);
                let two_bits = _mm256_set1_epi8(3);
                let bias = _mm256_set1_epi8(32);
                for b in 0..blocks {
                    let p = w.as_ptr().add(b * 210);
                    let dw = f16_to_f32(p.add(208));
                    for half in 0..2 {
                        let ql0 = _mm256_loadu_si256(p.add(64 * half) as *const __m256i);
                        let ql1 = _mm256_loadu_si256(p.add(64 * half + 32) as *const __m256i);
                        let qh = _mm256_loadu_si256(p.add(128 + 32 * half) as *const __m256i);
                        let scales = p.add(192 + 8 * half) as *const i8;
                        let lows = [
                            _mm256_and_si256(ql0, low_nibble),
                            _mm256_and_si256(ql1, low_nibble),
                            _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low_nibble),
                            _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low_nibble),
                        ];
                        let highs = [
                            _mm256_and_si256(qh, two_bits),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), two_bits),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 4), two_bits),
                            _mm256_and_si256(_mm256_srli_epi16(qh, 6), two_bits),
                        ];
                        for part in 0..4 {
                            let values = _mm256_sub_epi8(
                                _mm256_or_si256(lows[part], _mm256_slli_epi16(highs[part], 4)),
                                bias,
                            );
                            let magnitude = _mm256_abs_epi8(values);
                            let scale16 = _mm256_set_m128i(
                                _mm_set1_epi16(*scales.add(2 * part + 1) as i16),
                                _mm_set1_epi16(*scales.add(2 * part) as i16),
                            );
                            let chunk = b * 8 + half * 4 + part;
                            for r in 0..R {
                                let a =
                                    _mm256_loadu_si256(q[r].add(chunk * BLOCK) as *const __m256i);
                                let a = _mm256_sign_epi8(a, values);
                                let pairs = _mm256_maddubs_epi16(magnitude, a);
                                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, scale16));
                                acc[r] = _mm256_fmadd_ps(
                                    dot,
                                    _mm256_set1_ps(dw * *d[r].add(chunk)),
                                    acc[r],
                                );
                            }
                        }
                    }
                }
                for r in 0..R {
                    out[r] = hsum(acc[r]);
                }
            }
        }
    };
}

kernels!(
    avx2,
    "avx2,fma,f16c",
    |w, a| _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1)),
    |acc, w, a| _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), _mm256_set1_epi16(1))
    )
);

kernels!(
    vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    |w, a| _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a),
    |acc, w, a| _mm256_dpbusd_epi32(acc, w, a)
);

/// 16 bytes of packed nibbles as 32 bytes: the low nibbles, then the high.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let raw = _mm_loadu_si128(p as *const __m128i);
    let mask = _mm_set1_epi8(0x0F);
    let low = _mm_and_si128(raw, mask);
    let high = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
    _mm256_set_m128i(high, low)
}

/// Byte `i` is 0xFF where bit `i` of `bits` is set, else 0.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn bytes_from_bits(bits: u32) -> __m256i {
    let spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(bits as i32),
        _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        ),
    );
    let all_but_bit = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe);
    _mm256_cmpeq_epi8(_mm256_or_si256(spread, all_but_bit), _mm256_set1_epi64x(-1))
}

#[target_feature(enable = "f16c")]
#[inline]
unsafe fn f16_to_f32(p: *const u8) -> f32 {
    let bits = (p as *const u16).read_unaligned();
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum(v: __m256) -> f32 {
    let sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    let sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
    _mm_cvtss_f32(sum)
}

#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len() / 16 * 16;
    let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for i in (0..n).step_by(16) {
        s0 = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.as_ptr().add(i)),
            _mm256_loadu_ps(b.as_ptr().add(i)),
            s0,
        );
        s1 = _mm256_fmadd_ps(
            _mm256_loadu_ps(a.as_ptr().add(i + 8)),
            _mm256_loadu_ps(b.as_ptr().add(i + 8)),
            s1,
        );
    }
    let tail: f32 = a[n..].iter().zip(&b[n..]).map(|(a, b)| a * b).sum();
    hsum(_mm256_add_ps(s0, s1)) + tail
}

#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len() / 8 * 8;
    let a = _mm256_set1_ps(alpha);
    for i in (0..n).step_by(8) {
        let p = y.as_mut_ptr().add(i);
        _mm256_storeu_ps(
            p,
            _mm256_fmadd_ps(a, _mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(p)),
        );
    }
    for (y, x) in y[n..].iter_mut().zip(&x[n..]) {
        *y += alpha * x;
    }
}

/// [`Attend::run`] with every per-position dot product and sum inlined.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn attend(attend: &Attend<'_>, scores: &mut Vec<f32>, out: &mut [f32]) {
    let d = attend.query.len();
    scores.clear();
    for t in 0..attend.count {
        let key = &attend.keys[t * attend.stride + attend.offset..][..d];
        scores.push(dot_f32(attend.query, key) * attend.scale);
    }
    let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut total = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += *s;
    }
    out.fill(0.0);
    for (t, s) in scores.iter().enumerate() {
        let value = &attend.values[t * attend.stride + attend.offset..][..d];
        axpy(out, s / total, value);
    }
}

const _: () = assert!(BLOCK == 32);

/// Activation rows to Q8 blocks, as the portable `quantize_blocks` does and
/// with the same results: rounding half away from zero is `trunc(v +
/// copysign(0.5 - ulp, v))`, the sequence the compiler emits for `round`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn quantize_blocks(xs: &[f32], qs: &mut [i8], d: &mut [f32], s: &mut [f32]) {
    let sign = _mm256_set1_ps(-0.0);
    let below_half = _mm256_set1_ps(0.499_999_97);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (b, (x, q)) in xs
        .chunks_exact(BLOCK)
        .zip(qs.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let p = x.as_ptr();
        let v = [
            _mm256_loadu_ps(p),
            _mm256_loadu_ps(p.add(8)),
            _mm256_loadu_ps(p.add(16)),
            _mm256_loadu_ps(p.add(24)),
        ];
        let abs = |v: __m256| _mm256_andnot_ps(sign, v);
        let m = _mm256_max_ps(
            _mm256_max_ps(abs(v[0]), abs(v[1])),
            _mm256_max_ps(abs(v[2]), abs(v[3])),
        );
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let scale = amax / 127.0;
        let inv = _mm256_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
        let ints = v.map(|v| {
            let scaled = _mm256_mul_ps(v, inv);
            let nudge = _mm256_or_ps(_mm256_and_ps(scaled, sign), below_half);
            _mm256_cvttps_epi32(_mm256_add_ps(scaled, nudge))
        });
        let total = _mm256_add_epi32(
            _mm256_add_epi32(ints[0], ints[1]),
            _mm256_add_epi32(ints[2], ints[3]),
        );
        let total = _mm_add_epi32(
            _mm256_castsi256_si128(total),
            _mm256_extracti128_si256(total, 1),
        );
        let total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0b01_00_11_10));
        let total = _mm_add_epi32(total, _mm_shuffle_epi32(total, 0b10_11_00_01));
        let sum = _mm_cvtsi128_si32(total);
        // Packing works within 128-bit halves; the permutation puts the
        // four-byte groups back in order.
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(ints[0], ints[1]),
            _mm256_packs_epi32(ints[2], ints[3]),
        );
        let bytes = _mm256_permutevar8x32_epi32(bytes, order);
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, bytes);
        d[b] = scale;
        s[b] = scale * sum as f32;
    }
}
