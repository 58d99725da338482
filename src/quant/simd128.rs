//! WebAssembly SIMD128 kernels, bit-identical to [`super::scalar`].
//!
//! Integer part: a block's weights are widened to four `i16x8` vectors once (shared by all tokens
//! of a group in `matmul`), the activations are already `i16` (see [`QuantizedActivations`]), and
//! `i32x4.dot_i16x8_s` gives exact pairwise sums; four blocks' partial sums are transposed into one
//! `i32x4` `[isum_b, isum_b+1, isum_b+2, isum_b+3]`. `q4_0` multiplies the raw nibbles and subtracts
//! `8 · Σ x_q` (the same integer as `Σ (nibble − 8) · x_q`). The four blocks' `f16` scales are
//! widened together with integer selects, exactly like [`f16_to_f32`].
//!
//! Float part: lane `k` of the accumulator vector is `acc[b % 4]` of the scalar order, so the
//! per-lane `f32x4` multiplies and adds are the very same IEEE operations. Tail blocks
//! (`n_blocks % 4`) and tail elements (`cols % 16` for `f32`) are added to the extracted lanes one by
//! one, as the scalar code does. No fused multiply-add, no relaxed-simd.
//!
//! `f32` weights: sixteen lanes as four `f32x4` accumulators (vector `k`, lane `l` = scalar
//! `acc[4k + l]`); `matmul` runs two tokens per pass over a row (2 × 4 accumulators and 4 weight
//! vectors fit the 16 vector registers of x86-64 hosts).
//!
//! Loads go through `v128_load` on byte pointers: wasm vector loads have no alignment requirement,
//! so package bytes at any offset are fine.

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::wasm32::*;

use super::scalar::{reduce16, reduce4};
use super::{
    drive_matmul, f16_to_f32, f32_act, q_act, DType, QuantizedActivations, RowKernel, XqView,
    Q4_0_BLOCK_BYTES, Q4_1_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK,
};

/// SIMD128 [`quant::matvec`](super::matvec): same contract.
pub fn matvec(
    dtype: DType,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    xq: &QuantizedActivations,
    out: &mut [f32],
) {
    matmul(dtype, bytes, rows, cols, 1, x, xq, out)
}

/// SIMD128 [`quant::matmul`](super::matmul): same contract.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    dtype: DType,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    n_tokens: usize,
    x: &[f32],
    xq: &QuantizedActivations,
    y: &mut [f32],
) {
    match dtype {
        DType::F32 => drive_matmul::<F32Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q8_0 => drive_matmul::<QKernel<Q8_0>>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_0 => drive_matmul::<QKernel<Q4_0>>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_1 => drive_matmul::<QKernel<Q4_1>>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
    }
}

// ---------------------------------------------------------------------------------------------
// f32 weights

struct F32Kernel;

impl RowKernel for F32Kernel {
    type Act<'a> = &'a [f32];

    fn act<'a>(x: &'a [f32], _: &'a QuantizedActivations, t: usize, cols: usize) -> &'a [f32] {
        f32_act(x, t, cols)
    }

    #[inline]
    fn dot<const N: usize>(row: &[u8], acts: [&[f32]; N]) -> [f32; N] {
        let n = acts.iter().fold(row.len() / 4, |n, x| n.min(x.len()));
        // Two tokens at a time: 2 × 4 accumulators + 4 weight vectors fit the host's 16 vector
        // registers; four tokens at a time spill.
        let mut out = [0.0f32; N];
        let mut t = 0;
        while t + 2 <= N {
            // SAFETY: `n ≤ row.len() / 4` and `n ≤ x.len()` for every token, as `dot_f32` requires.
            [out[t], out[t + 1]] = unsafe { dot_f32(row, n, [acts[t], acts[t + 1]]) };
            t += 2;
        }
        if t < N {
            // SAFETY: as above.
            [out[t]] = unsafe { dot_f32(row, n, [acts[t]]) };
        }
        out
    }
}

/// `N` dot products of the first `n` little-endian `f32`s of `row` with the first `n` elements of
/// each of `acts`, in the fixed order: vector `acc[t][k]` lane `l` is the scalar `acc[4k + l]`.
///
/// # Safety
/// `row.len() ≥ 4 · n` and `acts[t].len() ≥ n` for every `t`.
#[inline(always)]
unsafe fn dot_f32<const N: usize>(row: &[u8], n: usize, acts: [&[f32]; N]) -> [f32; N] {
    let mut acc = [[f32x4_splat(0.0); 4]; N];
    let n_chunks = n / 16;
    let w_ptr = row.as_ptr();
    for c in 0..n_chunks {
        // SAFETY: chunk `c` is bytes `64c .. 64c + 64` of `row`, inside `4n ≤ row.len()`; `v128_load`
        // accepts any alignment.
        let w = unsafe {
            let p = w_ptr.add(c * 64);
            [
                v128_load(p as *const v128),
                v128_load(p.add(16) as *const v128),
                v128_load(p.add(32) as *const v128),
                v128_load(p.add(48) as *const v128),
            ]
        };
        for (acc_t, x) in acc.iter_mut().zip(acts.iter()) {
            // SAFETY: elements `16c .. 16c + 16` of `x`, inside `n ≤ x.len()`.
            let xv = unsafe {
                let p = x.as_ptr().add(c * 16);
                [
                    v128_load(p as *const v128),
                    v128_load(p.add(4) as *const v128),
                    v128_load(p.add(8) as *const v128),
                    v128_load(p.add(12) as *const v128),
                ]
            };
            for k in 0..4 {
                acc_t[k] = f32x4_add(acc_t[k], f32x4_mul(w[k], xv[k]));
            }
        }
    }
    let mut out = [0.0f32; N];
    for ((o, acc_t), x) in out.iter_mut().zip(acc.iter()).zip(acts.iter()) {
        let mut lanes = [0.0f32; 16];
        for k in 0..4 {
            lanes[4 * k..4 * k + 4].copy_from_slice(&f32x4_lanes(acc_t[k]));
        }
        for i in n_chunks * 16..n {
            let w =
                f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]]);
            lanes[i % 16] += w * x[i];
        }
        *o = reduce16(&lanes);
    }
    out
}

#[inline(always)]
fn f32x4_lanes(v: v128) -> [f32; 4] {
    [
        f32x4_extract_lane::<0>(v),
        f32x4_extract_lane::<1>(v),
        f32x4_extract_lane::<2>(v),
        f32x4_extract_lane::<3>(v),
    ]
}

// ---------------------------------------------------------------------------------------------
// Quantized weights

/// How one quantized block format is decoded. Implementations only read inside the block.
trait QFormat {
    const BLOCK_BYTES: usize;
    /// `q4_1` carries a minimum `m`, whose term needs the activation quant sums.
    const HAS_MIN: bool;
    /// `q4_0` quants are `nibble − 8`: the kernel multiplies the raw nibbles and subtracts
    /// `8 · Σ x_q` afterwards, which is the same integer.
    const MINUS_8: bool;
    /// The block's 32 integer weights as four `i16x8` vectors (elements 0..8, 8..16, 16..24,
    /// 24..32): `qs[j]` for `q8_0`, the raw nibble for `q4_0` and `q4_1`.
    ///
    /// # Safety
    /// `block` points to `BLOCK_BYTES` readable bytes.
    unsafe fn weights(block: *const u8) -> [v128; 4];
}

/// The little-endian `u16` at `p`, zero-extended.
///
/// # Safety
/// `p` points to 2 readable bytes.
#[inline(always)]
unsafe fn u16_at(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees 2 readable bytes; `[u8; 2]` has alignment 1.
    u16::from_le_bytes(unsafe { p.cast::<[u8; 2]>().read() }) as u32
}

/// Four `f16` bit patterns (in the low halves of `i32x4` lanes) widened to `f32x4`, exactly and
/// lane for lane equal to [`f16_to_f32`]. Scales are almost always normal numbers, which need only a
/// rebias of the exponent; zero, subnormal, infinite and NaN lanes take the general path (the same
/// three cases as the scalar code, chosen with selects).
#[inline(always)]
fn f16x4_to_f32x4(h: v128) -> v128 {
    let exp_mant = v128_and(h, i32x4_splat(0x7fff));
    let sign = i32x4_shl(v128_and(h, i32x4_splat(0x8000)), 16);
    let shifted = i32x4_shl(exp_mant, 13);
    let normal = i32x4_add(shifted, i32x4_splat(112 << 23));
    // Normal iff 0x0400 <= exp_mant < 0x7c00, as one unsigned range check.
    let is_normal = u32x4_lt(
        i32x4_sub(exp_mant, i32x4_splat(0x0400)),
        u32x4_splat(0x7800),
    );
    if i32x4_all_true(is_normal) {
        return v128_or(normal, sign);
    }
    let inf_nan = v128_or(shifted, i32x4_splat(0x7f80_0000));
    let subnormal = f32x4_mul(
        f32x4_convert_i32x4(exp_mant),
        f32x4_splat(1.0 / 16_777_216.0),
    );
    let is_inf_nan = i32x4_ge(exp_mant, i32x4_splat(0x7c00));
    let magnitude = v128_bitselect(
        normal,
        v128_bitselect(inf_nan, subnormal, is_inf_nan),
        is_normal,
    );
    v128_or(magnitude, sign)
}

/// `f32` scales of four blocks whose `f16` field starts at `p[k] + offset`.
///
/// # Safety
/// Each `p[k] + offset` points to 2 readable bytes.
#[inline(always)]
unsafe fn scales4(p: [*const u8; 4], offset: usize) -> v128 {
    // SAFETY: guaranteed by the caller; `v128_load16_lane` is a 1-aligned load. The loads fill the
    // low halves of the i32 lanes of a zero vector.
    let h = unsafe {
        let h = i32x4_splat(0);
        let h = v128_load16_lane::<0>(h, p[0].add(offset) as *const u16);
        let h = v128_load16_lane::<2>(h, p[1].add(offset) as *const u16);
        let h = v128_load16_lane::<4>(h, p[2].add(offset) as *const u16);
        v128_load16_lane::<6>(h, p[3].add(offset) as *const u16)
    };
    f16x4_to_f32x4(h)
}

#[inline(always)]
fn widen_i8x16(v: v128) -> [v128; 2] {
    [i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v)]
}

/// The 32 nibbles of `qs[16]` (low nibbles are elements 0..16, high nibbles 16..32) as `i16x8 × 4`.
#[inline(always)]
fn unpack_nibbles(qs: v128) -> [v128; 4] {
    let lo = v128_and(qs, u8x16_splat(0x0f));
    let hi = u8x16_shr(qs, 4);
    [
        u16x8_extend_low_u8x16(lo),
        u16x8_extend_high_u8x16(lo),
        u16x8_extend_low_u8x16(hi),
        u16x8_extend_high_u8x16(hi),
    ]
}

struct Q8_0;
struct Q4_0;
struct Q4_1;

impl QFormat for Q8_0 {
    const BLOCK_BYTES: usize = Q8_0_BLOCK_BYTES;
    const HAS_MIN: bool = false;
    const MINUS_8: bool = false;

    /// # Safety
    /// As for [`QFormat::weights`]: `block` points to `BLOCK_BYTES` readable bytes.
    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[32]` is bytes 2..34 of the 34-byte block.
        let (q0, q1) = unsafe {
            (
                v128_load(block.add(2) as *const v128),
                v128_load(block.add(18) as *const v128),
            )
        };
        let [a, b] = widen_i8x16(q0);
        let [c, d] = widen_i8x16(q1);
        [a, b, c, d]
    }
}

impl QFormat for Q4_0 {
    const BLOCK_BYTES: usize = Q4_0_BLOCK_BYTES;
    const HAS_MIN: bool = false;
    const MINUS_8: bool = true;

    /// # Safety
    /// As for [`QFormat::weights`]: `block` points to `BLOCK_BYTES` readable bytes.
    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[16]` is bytes 2..18 of the 18-byte block.
        unpack_nibbles(unsafe { v128_load(block.add(2) as *const v128) })
    }
}

impl QFormat for Q4_1 {
    const BLOCK_BYTES: usize = Q4_1_BLOCK_BYTES;
    const HAS_MIN: bool = true;
    const MINUS_8: bool = false;

    /// # Safety
    /// As for [`QFormat::weights`]: `block` points to `BLOCK_BYTES` readable bytes.
    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[16]` is bytes 4..20 of the 20-byte block.
        unpack_nibbles(unsafe { v128_load(block.add(4) as *const v128) })
    }
}

struct QKernel<F>(core::marker::PhantomData<F>);

impl<F: QFormat> RowKernel for QKernel<F> {
    type Act<'a> = XqView<'a>;

    fn act<'a>(_: &'a [f32], xq: &'a QuantizedActivations, t: usize, cols: usize) -> XqView<'a> {
        q_act(xq, t, cols)
    }

    #[inline]
    fn dot<const N: usize>(row: &[u8], acts: [XqView<'_>; N]) -> [f32; N] {
        let n_blocks = acts
            .iter()
            .fold(row.len() / F::BLOCK_BYTES, |n, xq| n.min(xq.n_blocks()));
        // SAFETY: `n_blocks` whole blocks are present in `row` and in every token's activations, as
        // `dot_quantized` requires.
        unsafe { dot_quantized::<F, N>(row, n_blocks, &acts) }
    }
}

/// Exact partial sums of one block: the four lanes of the result add up to `Σ_j w[j] · x[j]`.
/// `i32x4.dot_i16x8_s` cannot overflow: `|w| ≤ 128`, `|x| ≤ 127`.
///
/// # Safety
/// `x` points to 32 readable `i16`s.
#[inline(always)]
unsafe fn block_partial_isum(w: &[v128; 4], x: *const i16) -> v128 {
    // SAFETY: the caller guarantees 32 `i16`s (64 bytes) at `x`; any alignment is fine.
    let xv = unsafe {
        [
            v128_load(x as *const v128),
            v128_load(x.add(8) as *const v128),
            v128_load(x.add(16) as *const v128),
            v128_load(x.add(24) as *const v128),
        ]
    };
    let p01 = i32x4_add(i32x4_dot_i16x8(w[0], xv[0]), i32x4_dot_i16x8(w[1], xv[1]));
    let p23 = i32x4_add(i32x4_dot_i16x8(w[2], xv[2]), i32x4_dot_i16x8(w[3], xv[3]));
    i32x4_add(p01, p23)
}

/// Blocks `b` and `b + 1` for every token: with `s`, `u` the two blocks' partial sums, returns
/// `[s0+s2, u0+u2, s1+s3, u1+u3]` per token (half of a 4-way transpose-and-add). Each weight block
/// is decoded once for all `N` tokens.
///
/// # Safety
/// Blocks `b`, `b + 1` lie inside the row at `row_ptr` and inside every token's quants.
#[inline(always)]
unsafe fn pair_isums<F: QFormat, const N: usize>(
    row_ptr: *const u8,
    b: usize,
    acts: &[XqView<'_>; N],
) -> [v128; N] {
    // SAFETY: guaranteed by the caller.
    let (w_a, w_b) = unsafe {
        (
            F::weights(row_ptr.add(b * F::BLOCK_BYTES)),
            F::weights(row_ptr.add((b + 1) * F::BLOCK_BYTES)),
        )
    };
    let mut out = [i32x4_splat(0); N];
    for (o, xq) in out.iter_mut().zip(acts.iter()) {
        // SAFETY: quants `32b .. 32b + 64` of this token, inside its `qs` by the caller's guarantee.
        let (s, u) = unsafe {
            let x = xq.qs.as_ptr().add(b * QK);
            (
                block_partial_isum(&w_a, x),
                block_partial_isum(&w_b, x.add(QK)),
            )
        };
        *o = i32x4_add(
            i32x4_shuffle::<0, 4, 1, 5>(s, u),
            i32x4_shuffle::<2, 6, 3, 7>(s, u),
        );
    }
    out
}

#[inline(always)]
fn i32x4_lane_sum(v: v128) -> i32 {
    i32x4_extract_lane::<0>(v)
        .wrapping_add(i32x4_extract_lane::<1>(v))
        .wrapping_add(i32x4_extract_lane::<2>(v))
        .wrapping_add(i32x4_extract_lane::<3>(v))
}

/// `N` dot products of the first `n_blocks` blocks of `row` with each token's activations, in the
/// fixed order of the module docs (vector lane `k` = scalar `acc[b % 4]` with `b % 4 = k`).
///
/// # Safety
/// `row.len() ≥ n_blocks · F::BLOCK_BYTES` and `acts[t].n_blocks() ≥ n_blocks` for every `t`.
#[inline(always)]
unsafe fn dot_quantized<F: QFormat, const N: usize>(
    row: &[u8],
    n_blocks: usize,
    acts: &[XqView<'_>; N],
) -> [f32; N] {
    let mut acc = [f32x4_splat(0.0); N];
    let n_groups = n_blocks / 4;
    let row_ptr = row.as_ptr();
    let needs_sums = F::HAS_MIN || F::MINUS_8;
    for g in 0..n_groups {
        let b0 = 4 * g;
        // SAFETY (this block): blocks `b0 .. b0 + 4 ≤ n_blocks` lie inside `row` and inside every
        // token's quants, scales and sums.
        let (lo, hi, d_w, m_w) = unsafe {
            let lo = pair_isums::<F, N>(row_ptr, b0, acts);
            let hi = pair_isums::<F, N>(row_ptr, b0 + 2, acts);
            let p: [*const u8; 4] =
                core::array::from_fn(|k| row_ptr.add((b0 + k) * F::BLOCK_BYTES));
            let d_w = scales4(p, 0);
            let m_w = if F::HAS_MIN { scales4(p, 2) } else { d_w };
            (lo, hi, d_w, m_w)
        };
        for t in 0..N {
            let xq = &acts[t];
            // SAFETY: scales and sums `b0 .. b0 + 4` of this token, inside its slices (see above).
            let (d_x, x_sum) = unsafe {
                let d_x = v128_load(xq.d.as_ptr().add(b0) as *const v128);
                let x_sum = if needs_sums {
                    v128_load(xq.sums.as_ptr().add(b0) as *const v128)
                } else {
                    d_x
                };
                (d_x, x_sum)
            };
            let mut isum = i32x4_add(
                i32x4_shuffle::<0, 1, 4, 5>(lo[t], hi[t]),
                i32x4_shuffle::<2, 3, 6, 7>(lo[t], hi[t]),
            );
            if F::MINUS_8 {
                isum = i32x4_sub(isum, i32x4_shl(x_sum, 3));
            }
            let mut term = f32x4_mul(f32x4_mul(d_w, d_x), f32x4_convert_i32x4(isum));
            if F::HAS_MIN {
                term = f32x4_add(
                    term,
                    f32x4_mul(f32x4_mul(m_w, d_x), f32x4_convert_i32x4(x_sum)),
                );
            }
            acc[t] = f32x4_add(acc[t], term);
        }
    }
    let mut lanes = [[0.0f32; 4]; N];
    for (l, a) in lanes.iter_mut().zip(acc.iter()) {
        *l = f32x4_lanes(*a);
    }
    for b in n_groups * 4..n_blocks {
        // SAFETY: block `b < n_blocks` lies inside `row`.
        let (w, d_w, m_w) = unsafe {
            let block = row_ptr.add(b * F::BLOCK_BYTES);
            let m_w = if F::HAS_MIN {
                f16_to_f32(u16_at(block.add(2)) as u16)
            } else {
                0.0
            };
            (F::weights(block), f16_to_f32(u16_at(block) as u16), m_w)
        };
        for (l, xq) in lanes.iter_mut().zip(acts.iter()) {
            // SAFETY: quants `32b .. 32b + 32` of this token, inside its `qs` since `b < n_blocks`.
            let mut isum =
                i32x4_lane_sum(unsafe { block_partial_isum(&w, xq.qs.as_ptr().add(b * QK)) });
            if F::MINUS_8 {
                isum -= 8 * xq.sums[b];
            }
            let d_x = xq.d[b];
            let mut term = (d_w * d_x) * isum as f32;
            if F::HAS_MIN {
                term += (m_w * d_x) * xq.sums[b] as f32;
            }
            l[b % 4] += term;
        }
    }
    lanes.map(|l| reduce4(&l))
}

/// Widens all 65536 `f16` bit patterns with the vector path and counts results whose bits differ
/// from [`f16_to_f32`] (NaNs included: both keep the payload).
#[cfg(feature = "kernel-selftest")]
pub(crate) fn f16x4_mismatches() -> u32 {
    let mut mismatches = 0;
    for h in (0..=u16::MAX as u32).step_by(4) {
        let v = f16x4_to_f32x4(u32x4(h, h + 1, h + 2, h + 3));
        let got = [
            f32x4_extract_lane::<0>(v),
            f32x4_extract_lane::<1>(v),
            f32x4_extract_lane::<2>(v),
            f32x4_extract_lane::<3>(v),
        ];
        for (k, g) in got.iter().enumerate() {
            if g.to_bits() != f16_to_f32((h + k as u32) as u16).to_bits() {
                mismatches += 1;
            }
        }
    }
    mismatches
}
