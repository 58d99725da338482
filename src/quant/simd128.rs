//! WebAssembly SIMD128 kernels, bit-identical to [`super::scalar`].
//!
//! Integer part: a block's weights are sign-extended to four `i16x8` vectors once (shared by all
//! tokens of a group in `matmul`), the activations are already `i16` (see
//! [`QuantizedActivations`]), and `i32x4.dot_i16x8_s` gives exact pairwise sums; four blocks' partial
//! sums are transposed into one `i32x4` `[isum_b, isum_b+1, isum_b+2, isum_b+3]`. Float part: lane
//! `k` of the accumulator vector is `acc[b % 4]` of the scalar order, so the per-lane `f32x4`
//! multiplies and adds are the very same IEEE operations. Tail blocks (`n_blocks % 4`) and tail
//! elements (`cols % 16` for `f32`) are added to the extracted lanes one by one, as the scalar code
//! does. No fused multiply-add, no relaxed-simd.
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
        // SAFETY: `n ≤ row.len() / 4` and `n ≤ x.len()` for every token, as `dot_f32` requires.
        unsafe { dot_f32(row, n, acts) }
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
            let w = f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]]);
            lanes[i % 16] += w * x[i];
        }
        *o = reduce16(&lanes);
    }
    out
}

#[inline(always)]
fn f32x4_lanes(v: v128) -> [f32; 4] {
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}

// ---------------------------------------------------------------------------------------------
// Quantized weights

/// How one quantized block format is decoded. Implementations only read inside the block.
trait QFormat {
    const BLOCK_BYTES: usize;
    /// `q4_1` carries a minimum `m` and needs the activation quant sums.
    const HAS_MIN: bool;
    /// The block's 32 integer weights `w_q` as four `i16x8` vectors (elements 0..8, 8..16, 16..24,
    /// 24..32).
    ///
    /// # Safety
    /// `block` points to `BLOCK_BYTES` readable bytes.
    unsafe fn weights(block: *const u8) -> [v128; 4];
    /// The block's `d` (and `m`), widened.
    ///
    /// # Safety
    /// `block` points to `BLOCK_BYTES` readable bytes.
    unsafe fn scales(block: *const u8) -> (f32, f32);
}

/// The little-endian `f16` at `p`, widened.
///
/// # Safety
/// `p` points to 2 readable bytes.
#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes; `[u8; 2]` has alignment 1.
    f16_to_f32(u16::from_le_bytes(unsafe { p.cast::<[u8; 2]>().read() }))
}

#[inline(always)]
fn widen_i8x16(v: v128) -> [v128; 2] {
    [i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v)]
}

/// The 32 nibbles of `qs[16]` as `i8x16` (elements 0..16 = low nibbles, 16..32 = high nibbles).
#[inline(always)]
fn unpack_nibbles(qs: v128) -> [v128; 2] {
    [v128_and(qs, u8x16_splat(0x0f)), u8x16_shr(qs, 4)]
}

struct Q8_0;
struct Q4_0;
struct Q4_1;

impl QFormat for Q8_0 {
    const BLOCK_BYTES: usize = Q8_0_BLOCK_BYTES;
    const HAS_MIN: bool = false;

    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[32]` is bytes 2..34 of the 34-byte block.
        let (q0, q1) = unsafe { (v128_load(block.add(2) as *const v128), v128_load(block.add(18) as *const v128)) };
        let [a, b] = widen_i8x16(q0);
        let [c, d] = widen_i8x16(q1);
        [a, b, c, d]
    }

    #[inline(always)]
    unsafe fn scales(block: *const u8) -> (f32, f32) {
        // SAFETY: `d` is bytes 0..2 of the block.
        (unsafe { f16_at(block) }, 0.0)
    }
}

impl QFormat for Q4_0 {
    const BLOCK_BYTES: usize = Q4_0_BLOCK_BYTES;
    const HAS_MIN: bool = false;

    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[16]` is bytes 2..18 of the 18-byte block.
        let qs = unsafe { v128_load(block.add(2) as *const v128) };
        let [lo, hi] = unpack_nibbles(qs);
        let eight = i8x16_splat(8);
        let [a, b] = widen_i8x16(i8x16_sub(lo, eight));
        let [c, d] = widen_i8x16(i8x16_sub(hi, eight));
        [a, b, c, d]
    }

    #[inline(always)]
    unsafe fn scales(block: *const u8) -> (f32, f32) {
        // SAFETY: `d` is bytes 0..2 of the block.
        (unsafe { f16_at(block) }, 0.0)
    }
}

impl QFormat for Q4_1 {
    const BLOCK_BYTES: usize = Q4_1_BLOCK_BYTES;
    const HAS_MIN: bool = true;

    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[16]` is bytes 4..20 of the 20-byte block.
        let qs = unsafe { v128_load(block.add(4) as *const v128) };
        let [lo, hi] = unpack_nibbles(qs);
        // Nibbles are 0..=15, so the unsigned widening is the right one (and equals the signed one).
        [u16x8_extend_low_u8x16(lo), u16x8_extend_high_u8x16(lo), u16x8_extend_low_u8x16(hi), u16x8_extend_high_u8x16(hi)]
    }

    #[inline(always)]
    unsafe fn scales(block: *const u8) -> (f32, f32) {
        // SAFETY: `d` is bytes 0..2 and `m` bytes 2..4 of the block.
        unsafe { (f16_at(block), f16_at(block.add(2))) }
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
        let n_blocks = acts.iter().fold(row.len() / F::BLOCK_BYTES, |n, xq| n.min(xq.n_blocks()));
        // SAFETY: `n_blocks` whole blocks are present in `row` and in every token's activations, as
        // `dot_quantized` requires.
        unsafe { dot_quantized::<F, N>(row, n_blocks, acts) }
    }
}

/// Exact partial sums of one block: lane `i` of the result is
/// `Σ_{j ≡ 2i, 2i+1 (mod 8)} w_q[j] · x_q[j]`; the four lanes add up to the block's `isum`.
/// `i32x4.dot_i16x8_s` cannot overflow: `|w_q| ≤ 128`, `|x_q| ≤ 127`.
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

/// Horizontal sums of four `i32x4`: `[Σ s[0], Σ s[1], Σ s[2], Σ s[3]]` (exact integer adds).
#[inline(always)]
fn transpose_sum(s: &[v128; 4]) -> v128 {
    // [s0.0+s0.2, s1.0+s1.2, s0.1+s0.3, s1.1+s1.3]
    let a = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(s[0], s[1]), i32x4_shuffle::<2, 6, 3, 7>(s[0], s[1]));
    let b = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(s[2], s[3]), i32x4_shuffle::<2, 6, 3, 7>(s[2], s[3]));
    i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b))
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
unsafe fn dot_quantized<F: QFormat, const N: usize>(row: &[u8], n_blocks: usize, acts: [XqView<'_>; N]) -> [f32; N] {
    let mut acc = [f32x4_splat(0.0); N];
    let n_groups = n_blocks / 4;
    let row_ptr = row.as_ptr();
    for g in 0..n_groups {
        let b0 = 4 * g;
        let mut w = [[i32x4_splat(0); 4]; 4];
        let mut d_w = [0.0f32; 4];
        let mut m_w = [0.0f32; 4];
        for k in 0..4 {
            // SAFETY: block `b0 + k < n_blocks` lies inside `row`.
            unsafe {
                let block = row_ptr.add((b0 + k) * F::BLOCK_BYTES);
                w[k] = F::weights(block);
                (d_w[k], m_w[k]) = F::scales(block);
            }
        }
        let d_w = f32x4(d_w[0], d_w[1], d_w[2], d_w[3]);
        let m_w = f32x4(m_w[0], m_w[1], m_w[2], m_w[3]);
        for (acc_t, xq) in acc.iter_mut().zip(acts.iter()) {
            // SAFETY: blocks `b0 .. b0 + 4 ≤ n_blocks` of this token: quants `32·b0 .. 32·b0 + 128`,
            // scales and sums `b0 .. b0 + 4`, all inside its slices.
            let (s, d_x, x_sum) = unsafe {
                let x = xq.qs.as_ptr().add(b0 * QK);
                let s = [
                    block_partial_isum(&w[0], x),
                    block_partial_isum(&w[1], x.add(QK)),
                    block_partial_isum(&w[2], x.add(2 * QK)),
                    block_partial_isum(&w[3], x.add(3 * QK)),
                ];
                let d_x = v128_load(xq.d.as_ptr().add(b0) as *const v128);
                let x_sum = if F::HAS_MIN { v128_load(xq.sums.as_ptr().add(b0) as *const v128) } else { s[0] };
                (s, d_x, x_sum)
            };
            let isum = f32x4_convert_i32x4(transpose_sum(&s));
            let mut term = f32x4_mul(f32x4_mul(d_w, d_x), isum);
            if F::HAS_MIN {
                term = f32x4_add(term, f32x4_mul(f32x4_mul(m_w, d_x), f32x4_convert_i32x4(x_sum)));
            }
            *acc_t = f32x4_add(*acc_t, term);
        }
    }
    let mut lanes = [[0.0f32; 4]; N];
    for (l, a) in lanes.iter_mut().zip(acc.iter()) {
        *l = f32x4_lanes(*a);
    }
    for b in n_groups * 4..n_blocks {
        // SAFETY: block `b < n_blocks` lies inside `row`.
        let (w, (d_w, m_w)) = unsafe {
            let block = row_ptr.add(b * F::BLOCK_BYTES);
            (F::weights(block), F::scales(block))
        };
        for (l, xq) in lanes.iter_mut().zip(acts.iter()) {
            // SAFETY: quants `32b .. 32b + 32` of this token, inside its `qs` since `b < n_blocks`.
            let isum = i32x4_lane_sum(unsafe { block_partial_isum(&w, xq.qs.as_ptr().add(b * QK)) });
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
