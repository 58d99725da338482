//! WebAssembly SIMD128 kernels for the shipped GGUF dtypes, bit-identical to [`super::scalar`].
//!
//! Integer part: each 32-element activation block's weights are decoded once (shared by all tokens
//! of a group) into four `i16x8` vectors that already carry the sub-block scale — `sc_s · q` for
//! `q4_K` / `q5_K` (at most `63 · 31`), `scales[t] · (q − 32)` for `q6_K` (at most `128 · 32` in
//! magnitude), `q − 16` for `q5_0`, `q` for `q5_1` — so the per-token work is the `q8_0` one:
//! four `i32x4.dot_i16x8_s` against the `i16` activations, whose lanes add up to exactly the
//! scalar `isum` (pairwise products are at most `2 · 4096 · 127` in magnitude; no overflow).
//! Four blocks' partial sums are transposed into one `i32x4` `[isum_b, …, isum_b+3]`.
//!
//! Float part: lane `k` of the accumulator vector is the scalar `acc[b % 4]`, and each lane does
//! the scalar term's operations in the scalar order (`f32x4` multiplies, adds and subtracts, no
//! fused multiply-add). A k-quant super-block holds eight activation blocks, so a group of four
//! never straddles two super-blocks and its `d`, `dmin` are one splatted value; the four minimums
//! `m_s` are one `i32x4` multiplied into the activation sums. A last group of 1–3 blocks (32-element
//! formats only) masks the missing lanes' terms to `+0.0`, which leaves those accumulator lanes
//! unchanged (they start at `+0.0` and only ever have terms added, so they are never `−0.0`).
//!
//! `f16` weights: the `f32` scheme of `quant::simd128` (sixteen lanes as four `f32x4`
//! accumulators) with the weights widened by [`f16x4_to_f32x4`], which equals
//! [`f16_to_f32`] lane for lane.
//!
//! Loads go through `v128_load*` on byte pointers: wasm vector loads have no alignment
//! requirement, so package bytes at any offset are fine. The relaxed-SIMD flavour builds these
//! kernels unchanged (they read the `i16` activation quants only).

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::wasm32::*;
use core::marker::PhantomData;

use super::dequant::scale_min_k4;
use super::layout::{q4_k, q5_0, q5_1, q5_k, q6_k, K_SCALE_BYTES};
use super::{f16_at, K_SUBS};
use crate::quant::scalar::{reduce16, reduce4};
// The SIMD helpers shared with the older dtypes' kernels.
use crate::quant::simd128::{block_partial_isum, f16x4_to_f32x4, f32x4_lanes, load_nibbles, pair_sum};
use crate::quant::{f16_to_f32, f32_act, q_act, QuantizedActivations, RowKernel, XqView, QK};

// ---------------------------------------------------------------------------------------------
// f16 weights

/// SIMD128 `f16` row kernel (`f32` activations).
pub(crate) struct F16Kernel;

impl RowKernel for F16Kernel {
    type Act<'a> = &'a [f32];

    fn act<'a>(x: &'a [f32], _: &'a QuantizedActivations, t: usize, cols: usize) -> &'a [f32] {
        f32_act(x, t, cols)
    }

    #[inline]
    fn dot<const N: usize>(row: &[u8], acts: [&[f32]; N]) -> [f32; N] {
        let n = acts.iter().fold(row.len() / 2, |n, x| n.min(x.len()));
        // Two tokens at a time, as the `f32` kernel: 2 × 4 accumulators and 4 weight vectors fit
        // the 16 vector registers of x86-64 hosts.
        let mut out = [0.0f32; N];
        let mut t = 0;
        while t + 2 <= N {
            // SAFETY: `n ≤ row.len() / 2` and `n ≤ x.len()` for every token, as `dot_f16` requires.
            [out[t], out[t + 1]] = unsafe { dot_f16(row, n, [acts[t], acts[t + 1]]) };
            t += 2;
        }
        if t < N {
            // SAFETY: as above.
            [out[t]] = unsafe { dot_f16(row, n, [acts[t]]) };
        }
        out
    }
}

/// `N` dot products of the first `n` little-endian `f16`s of `row` with the first `n` elements of
/// each of `acts`: vector `acc[t][k]` lane `l` is the scalar `acc[4k + l]`.
///
/// # Safety
/// `row.len() ≥ 2 · n` and `acts[t].len() ≥ n` for every `t`.
#[inline(always)]
unsafe fn dot_f16<const N: usize>(row: &[u8], n: usize, acts: [&[f32]; N]) -> [f32; N] {
    let mut acc = [[f32x4_splat(0.0); 4]; N];
    let n_chunks = n / 16;
    let w_ptr = row.as_ptr();
    for c in 0..n_chunks {
        // SAFETY: chunk `c` is bytes `32c .. 32c + 32` of `row`, inside `2n ≤ row.len()`; the
        // 8-byte zero-extending loads accept any alignment.
        let w = unsafe {
            let p = w_ptr.add(c * 32);
            [
                f16x4_to_f32x4(u32x4_load_extend_u16x4(p as *const u16)),
                f16x4_to_f32x4(u32x4_load_extend_u16x4(p.add(8) as *const u16)),
                f16x4_to_f32x4(u32x4_load_extend_u16x4(p.add(16) as *const u16)),
                f16x4_to_f32x4(u32x4_load_extend_u16x4(p.add(24) as *const u16)),
            ]
        };
        for (acc_t, x) in acc.iter_mut().zip(acts.iter()) {
            // SAFETY: elements `16c .. 16c + 16` of `x`, inside `n ≤ x.len()`.
            let xv = unsafe {
                let p = x.as_ptr().add(c * 16);
                [v128_load(p as *const v128), v128_load(p.add(4) as *const v128), v128_load(p.add(8) as *const v128), v128_load(p.add(12) as *const v128)]
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
            lanes[i % 16] += f16_to_f32(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])) * x[i];
        }
        *o = reduce16(&lanes);
    }
    out
}

/// `f32` values of the `f16` fields at `p[k] + offset`, one per lane.
///
/// # Safety
/// Each `p[k] + offset` points to 2 readable bytes.
#[inline(always)]
unsafe fn f16_fields4(p: [*const u8; 4], offset: usize) -> v128 {
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

// ---------------------------------------------------------------------------------------------
// Quantized weights

/// The second part of a block's term (module docs of `kquant`, step 2).
#[derive(PartialEq, Eq)]
pub(crate) enum MinTerm {
    /// `q5_0`, `q6_K`: none.
    None,
    /// `q5_1`: `+ (m · d_x) · f32(xsum)`.
    Plus,
    /// `q4_K`, `q5_K`: `− (dmin · d_x) · f32(m_s · xsum)`.
    MinusScaled,
}

/// How one format is decoded. Implementations read only inside the row's blocks they are given.
pub(crate) trait QFormat {
    /// Bytes of one weight block.
    const BLOCK_BYTES: usize;
    /// Activation blocks (of 32) per weight block: 1, or [`K_SUBS`] for the k-quants.
    const SUBS: usize;
    const MIN: MinTerm;
    /// The 32 integer weights of activation block `s < SUBS` of the weight block at `block`, with
    /// the sub-block scale multiplied in, as four `i16x8` (elements 0..8, 8..16, 16..24, 24..32).
    ///
    /// # Safety
    /// `block` points to `BLOCK_BYTES` readable bytes.
    unsafe fn weights(block: *const u8, s: usize) -> [v128; 4];
    /// For activation blocks `b0 .. b0 + 4` (`b0` a multiple of 4; only the first `valid` exist):
    /// per lane the weight scale `d`, the minimum's scale (`m` or `dmin`) and, for
    /// [`MinTerm::MinusScaled`], the sub-block minimum `m_s` as `i32`. Missing lanes repeat block
    /// `b0`'s values.
    ///
    /// # Safety
    /// The row at `row` holds the weight blocks of activation blocks `b0 .. b0 + valid`.
    unsafe fn group_scales(row: *const u8, b0: usize, valid: usize) -> (v128, v128, v128);
}

/// For the 32 elements of a `q5_0` / `q5_1` block: per `i16` lane, all ones where the element's
/// fifth quant bit (bit `e` of the little-endian `u32` at `qh`) is set.
///
/// # Safety
/// `qh` points to 4 readable bytes.
#[inline(always)]
unsafe fn q5_high_bits(qh: *const u8) -> [v128; 4] {
    // SAFETY: 4 bytes at `qh`, read unaligned.
    let bits = unsafe { (qh as *const u32).read_unaligned() };
    let lo = i16x8_splat(bits as i16);
    let hi = i16x8_splat((bits >> 16) as i16);
    let m0 = i16x8(1, 2, 4, 8, 16, 32, 64, 128);
    let m1 = i16x8(1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12, 1 << 13, 1 << 14, i16::MIN);
    let set = |v: v128, m: v128| i16x8_eq(v128_and(v, m), m);
    [set(lo, m0), set(lo, m1), set(hi, m0), set(hi, m1)]
}

/// `f32` fields at `offset` of the 32-element blocks `b0 .. b0 + 4` (missing ones: block `b0`).
///
/// # Safety
/// The blocks `b0 .. b0 + valid` of `BYTES` each lie inside the row at `row`.
#[inline(always)]
unsafe fn block_fields4<const BYTES: usize>(row: *const u8, b0: usize, valid: usize, offset: usize) -> v128 {
    // SAFETY: block `b0 + k` is addressed only for `k < valid`.
    unsafe {
        let p: [*const u8; 4] = core::array::from_fn(|k| row.add((b0 + if k < valid { k } else { 0 }) * BYTES));
        f16_fields4(p, offset)
    }
}

/// `q5_0` (`q − 16`).
pub(crate) struct Q5_0;
/// `q5_1` (`q`, plus the minimum term).
pub(crate) struct Q5_1;
/// `q4_K`.
pub(crate) struct Q4K;
/// `q5_K`.
pub(crate) struct Q5K;
/// `q6_K`.
pub(crate) struct Q6K;

impl QFormat for Q5_0 {
    const BLOCK_BYTES: usize = q5_0::BYTES;
    const SUBS: usize = 1;
    const MIN: MinTerm = MinTerm::None;

    /// # Safety
    /// As for [`QFormat::weights`].
    #[inline(always)]
    unsafe fn weights(block: *const u8, _: usize) -> [v128; 4] {
        // SAFETY: `qs[16]` and `qh[4]` lie inside the 22-byte block.
        let (nib, set) = unsafe { (load_nibbles(block.add(q5_0::QS)), q5_high_bits(block.add(q5_0::QH))) };
        // q − 16 = nibble + (bit set ? 0 : −16).
        let minus16 = i16x8_splat(-16);
        core::array::from_fn(|v| i16x8_add(nib[v], v128_andnot(minus16, set[v])))
    }

    #[inline(always)]
    unsafe fn group_scales(row: *const u8, b0: usize, valid: usize) -> (v128, v128, v128) {
        // SAFETY: as the caller guarantees.
        let d = unsafe { block_fields4::<{ q5_0::BYTES }>(row, b0, valid, q5_0::D) };
        (d, d, i32x4_splat(0))
    }
}

impl QFormat for Q5_1 {
    const BLOCK_BYTES: usize = q5_1::BYTES;
    const SUBS: usize = 1;
    const MIN: MinTerm = MinTerm::Plus;

    /// # Safety
    /// As for [`QFormat::weights`].
    #[inline(always)]
    unsafe fn weights(block: *const u8, _: usize) -> [v128; 4] {
        // SAFETY: `qs[16]` and `qh[4]` lie inside the 24-byte block.
        let (nib, set) = unsafe { (load_nibbles(block.add(q5_1::QS)), q5_high_bits(block.add(q5_1::QH))) };
        let sixteen = i16x8_splat(16);
        core::array::from_fn(|v| i16x8_add(nib[v], v128_and(sixteen, set[v])))
    }

    #[inline(always)]
    unsafe fn group_scales(row: *const u8, b0: usize, valid: usize) -> (v128, v128, v128) {
        // SAFETY: as the caller guarantees.
        unsafe { (block_fields4::<{ q5_1::BYTES }>(row, b0, valid, q5_1::D), block_fields4::<{ q5_1::BYTES }>(row, b0, valid, q5_1::M), i32x4_splat(1)) }
    }
}

/// `d`, `dmin` (splatted) and the four minimums `m_s0 .. m_s0+3` of the `q4_K` / `q5_K` super-block
/// holding activation block `b0`.
///
/// # Safety
/// That super-block (`BYTES` bytes at `row + (b0 / 8) · BYTES`) is readable.
#[inline(always)]
unsafe fn k45_group_scales<const BYTES: usize>(row: *const u8, b0: usize) -> (v128, v128, v128) {
    // SAFETY: as the caller guarantees; the slice covers exactly the super-block.
    let block = unsafe { core::slice::from_raw_parts(row.add(b0 / K_SUBS * BYTES), BYTES) };
    let scales: &[u8; K_SCALE_BYTES] = block[q4_k::SCALES..q4_k::SCALES + K_SCALE_BYTES].try_into().unwrap_or(&[0; K_SCALE_BYTES]);
    let s0 = b0 % K_SUBS;
    let m = |k: usize| scale_min_k4(scales, s0 + k).1 as i32;
    (f32x4_splat(f16_at(block, q4_k::D)), f32x4_splat(f16_at(block, q4_k::DMIN)), i32x4(m(0), m(1), m(2), m(3)))
}

// `q4_K` and `q5_K` share the offsets of `d`, `dmin` and `scales`.
const _: () = assert!(q4_k::D == q5_k::D && q4_k::DMIN == q5_k::DMIN && q4_k::SCALES == q5_k::SCALES);

impl QFormat for Q4K {
    const BLOCK_BYTES: usize = q4_k::BYTES;
    const SUBS: usize = K_SUBS;
    const MIN: MinTerm = MinTerm::MinusScaled;

    /// # Safety
    /// As for [`QFormat::weights`].
    #[inline(always)]
    unsafe fn weights(block: *const u8, s: usize) -> [v128; 4] {
        // SAFETY: the 12 scale bytes (read as a `[u8; 12]`, alignment 1) and
        // `qs[32 (s/2) .. 32 (s/2) + 32]` (`s < 8`) lie inside the 144-byte block; the 8-byte loads
        // accept any alignment.
        unsafe {
            let scales = &*(block.add(q4_k::SCALES) as *const [u8; K_SCALE_BYTES]);
            let sc = i16x8_splat(scale_min_k4(scales, s).0 as i16);
            let qs = block.add(q4_k::QS + 32 * (s / 2));
            core::array::from_fn(|v| {
                let bytes = u16x8_load_extend_u8x8(qs.add(8 * v));
                let q = if s.is_multiple_of(2) { v128_and(bytes, u16x8_splat(0x0f)) } else { u16x8_shr(bytes, 4) };
                i16x8_mul(q, sc)
            })
        }
    }

    #[inline(always)]
    unsafe fn group_scales(row: *const u8, b0: usize, _: usize) -> (v128, v128, v128) {
        // SAFETY: as the caller guarantees (the super-block of `b0` is in the row).
        unsafe { k45_group_scales::<{ q4_k::BYTES }>(row, b0) }
    }
}

impl QFormat for Q5K {
    const BLOCK_BYTES: usize = q5_k::BYTES;
    const SUBS: usize = K_SUBS;
    const MIN: MinTerm = MinTerm::MinusScaled;

    /// # Safety
    /// As for [`QFormat::weights`].
    #[inline(always)]
    unsafe fn weights(block: *const u8, s: usize) -> [v128; 4] {
        // SAFETY: the 12 scale bytes (read as a `[u8; 12]`, alignment 1), `qh[32]` and
        // `qs[32 (s/2) .. 32 (s/2) + 32]` (`s < 8`) lie inside the 176-byte block; the 8-byte loads
        // accept any alignment.
        unsafe {
            let scales = &*(block.add(q5_k::SCALES) as *const [u8; K_SCALE_BYTES]);
            let sc = i16x8_splat(scale_min_k4(scales, s).0 as i16);
            let qs = block.add(q5_k::QS + 32 * (s / 2));
            let qh = block.add(q5_k::QH);
            core::array::from_fn(|v| {
                let bytes = u16x8_load_extend_u8x8(qs.add(8 * v));
                let low = if s.is_multiple_of(2) { v128_and(bytes, u16x8_splat(0x0f)) } else { u16x8_shr(bytes, 4) };
                let h = u16x8_load_extend_u8x8(qh.add(8 * v));
                // Bit `s` of each (zero-extended) `qh` byte moved to bit 4.
                let h = if s <= 4 { i16x8_shl(h, (4 - s) as u32) } else { u16x8_shr(h, (s - 4) as u32) };
                i16x8_mul(v128_or(low, v128_and(h, u16x8_splat(0x10))), sc)
            })
        }
    }

    #[inline(always)]
    unsafe fn group_scales(row: *const u8, b0: usize, _: usize) -> (v128, v128, v128) {
        // SAFETY: as the caller guarantees (the super-block of `b0` is in the row).
        unsafe { k45_group_scales::<{ q5_k::BYTES }>(row, b0) }
    }
}

impl QFormat for Q6K {
    const BLOCK_BYTES: usize = q6_k::BYTES;
    const SUBS: usize = K_SUBS;
    const MIN: MinTerm = MinTerm::None;

    /// # Safety
    /// As for [`QFormat::weights`].
    #[inline(always)]
    unsafe fn weights(block: *const u8, s: usize) -> [v128; 4] {
        // Activation block `s` is quarter `k` of half `h`: low bits in `ql[64h + 32(k & 1) ..][..32]`
        // (nibble `k >> 1`), high bits `(qh[32h ..][..32] >> 2k) & 3`. The byte shifts go through
        // 16-bit lanes: bits shifted across a byte boundary land outside the masks that follow.
        let (h, k) = (s / 4, s % 4);
        // SAFETY: `ql` bytes `64h + 32(k&1) .. + 32`, `qh` bytes `32h .. 32h + 32` and the two scale
        // bytes `2s, 2s + 1` (`s < 8`) lie inside the 210-byte block.
        let (ql, qh, sc_a, sc_b) = unsafe {
            let ql = block.add(q6_k::QL + 64 * h + 32 * (k & 1));
            let qh = block.add(q6_k::QH + 32 * h);
            (
                [v128_load(ql as *const v128), v128_load(ql.add(16) as *const v128)],
                [v128_load(qh as *const v128), v128_load(qh.add(16) as *const v128)],
                *block.add(q6_k::SCALES + 2 * s) as i8,
                *block.add(q6_k::SCALES + 2 * s + 1) as i8,
            )
        };
        let q8: [v128; 2] = core::array::from_fn(|i| {
            let low = if k < 2 { ql[i] } else { u16x8_shr(ql[i], 4) };
            let high = match k {
                0 => i16x8_shl(qh[i], 4),
                1 => i16x8_shl(qh[i], 2),
                2 => qh[i],
                _ => u16x8_shr(qh[i], 2),
            };
            let q = v128_or(v128_and(low, u8x16_splat(0x0f)), v128_and(high, u8x16_splat(0x30)));
            i8x16_sub(q, i8x16_splat(32))
        });
        let (a, b) = (i16x8_splat(sc_a as i16), i16x8_splat(sc_b as i16));
        [
            i16x8_mul(i16x8_extend_low_i8x16(q8[0]), a),
            i16x8_mul(i16x8_extend_high_i8x16(q8[0]), a),
            i16x8_mul(i16x8_extend_low_i8x16(q8[1]), b),
            i16x8_mul(i16x8_extend_high_i8x16(q8[1]), b),
        ]
    }

    #[inline(always)]
    unsafe fn group_scales(row: *const u8, b0: usize, _: usize) -> (v128, v128, v128) {
        // SAFETY: the super-block of `b0` is in the row, as the caller guarantees.
        let d = unsafe {
            let at = row.add(b0 / K_SUBS * q6_k::BYTES + q6_k::D);
            f16_to_f32(u16::from_le_bytes([*at, *at.add(1)]))
        };
        let d = f32x4_splat(d);
        (d, d, i32x4_splat(0))
    }
}

/// A SIMD128 row kernel over quantized activations for format `F`.
pub(crate) struct QKernel<F>(PhantomData<F>);

/// SIMD128 `q5_0` row kernel.
pub(crate) type Q5_0Kernel = QKernel<Q5_0>;
/// SIMD128 `q5_1` row kernel.
pub(crate) type Q5_1Kernel = QKernel<Q5_1>;
/// SIMD128 `q4_K` row kernel.
pub(crate) type Q4KKernel = QKernel<Q4K>;
/// SIMD128 `q5_K` row kernel.
pub(crate) type Q5KKernel = QKernel<Q5K>;
/// SIMD128 `q6_K` row kernel.
pub(crate) type Q6KKernel = QKernel<Q6K>;

impl<F: QFormat> RowKernel for QKernel<F> {
    type Act<'a> = XqView<'a>;

    fn act<'a>(_: &'a [f32], xq: &'a QuantizedActivations, t: usize, cols: usize) -> XqView<'a> {
        q_act(xq, t, cols)
    }

    #[inline]
    fn dot<const N: usize>(row: &[u8], acts: [XqView<'_>; N]) -> [f32; N] {
        // Whole weight blocks present in the row and in every token (the scalar count).
        let n_weight_blocks = acts.iter().fold(row.len() / F::BLOCK_BYTES, |n, xq| n.min(xq.n_blocks() / F::SUBS));
        // SAFETY: `n_weight_blocks · SUBS` activation blocks are present in `row` and in every
        // token's activations, as `dot_quantized` requires.
        unsafe { dot_quantized::<F, N>(row, n_weight_blocks * F::SUBS, &acts) }
    }
}

/// `N` dot products over the first `n_blocks` activation blocks of `row` (a multiple of
/// `F::SUBS`), four blocks per step, in the fixed order of the `kquant` module docs.
///
/// # Safety
/// `row` holds the weight blocks of activation blocks `0 .. n_blocks` and every token holds
/// `n_blocks` activation blocks.
#[inline(always)]
unsafe fn dot_quantized<F: QFormat, const N: usize>(row: &[u8], n_blocks: usize, acts: &[XqView<'_>; N]) -> [f32; N] {
    let mut acc = [f32x4_splat(0.0); N];
    let row_ptr = row.as_ptr();
    let isums = |b: usize| -> [v128; N] {
        // SAFETY: callers below pass `b < n_blocks`: its weight block lies inside `row` and its
        // 32 quants inside each token's; the weights are decoded once for all `N` tokens.
        unsafe {
            let w = F::weights(row_ptr.add(b / F::SUBS * F::BLOCK_BYTES), b % F::SUBS);
            core::array::from_fn(|t| block_partial_isum(&w, acts[t].qs.as_ptr().add(b * QK)))
        }
    };
    let n_full = n_blocks / 4 * 4;
    let mut b0 = 0;
    while b0 < n_full {
        let parts = [isums(b0), isums(b0 + 1), isums(b0 + 2), isums(b0 + 3)];
        // SAFETY: blocks `b0 .. b0 + 4 ≤ n_blocks`.
        unsafe { accumulate_group::<F, N, 4>(&mut acc, row_ptr, b0, &parts, acts) };
        b0 += 4;
    }
    // Only the 32-element formats have a tail (`n_blocks` is a multiple of 8 for the k-quants).
    let tail = n_blocks - n_full;
    if tail > 0 {
        let zero = [i32x4_splat(0); N];
        let parts: [[v128; N]; 4] = core::array::from_fn(|k| if k < tail { isums(b0 + k) } else { zero });
        // SAFETY (each arm): blocks `b0 .. n_blocks`.
        match tail {
            // SAFETY: blocks `b0 .. n_blocks`.
            1 => unsafe { accumulate_group::<F, N, 1>(&mut acc, row_ptr, b0, &parts, acts) },
            // SAFETY: blocks `b0 .. n_blocks`.
            2 => unsafe { accumulate_group::<F, N, 2>(&mut acc, row_ptr, b0, &parts, acts) },
            // SAFETY: blocks `b0 .. n_blocks`.
            _ => unsafe { accumulate_group::<F, N, 3>(&mut acc, row_ptr, b0, &parts, acts) },
        }
    }
    acc.map(|a| reduce4(&f32x4_lanes(a)))
}

/// Adds the terms of activation blocks `b0 .. b0 + VALID` (`VALID ≤ 4`, one block per lane;
/// `parts[k][t]` are token `t`'s partial sums of block `b0 + k`) to each token's accumulator;
/// lanes `VALID..4` get `+0.0`. Nothing outside those blocks is read.
///
/// # Safety
/// Those blocks' weights lie inside the row at `row_ptr`, and every token holds their scales and
/// sums.
#[inline(always)]
unsafe fn accumulate_group<F: QFormat, const N: usize, const VALID: usize>(
    acc: &mut [v128; N],
    row_ptr: *const u8,
    b0: usize,
    parts: &[[v128; N]; 4],
    acts: &[XqView<'_>; N],
) {
    // SAFETY: as the caller guarantees.
    let (d_w, m_w, m_s) = unsafe { F::group_scales(row_ptr, b0, VALID) };
    let lane_mask = i32x4(if VALID > 0 { -1 } else { 0 }, if VALID > 1 { -1 } else { 0 }, if VALID > 2 { -1 } else { 0 }, if VALID > 3 { -1 } else { 0 });
    for t in 0..N {
        let xq = &acts[t];
        let lo = pair_sum(parts[0][t], parts[1][t]);
        let hi = pair_sum(parts[2][t], parts[3][t]);
        let isum = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(lo, hi), i32x4_shuffle::<2, 3, 6, 7>(lo, hi));
        let (d_x, x_sum, s_x) = if VALID == 4 {
            // SAFETY: scales, sums and `s` of blocks `b0 .. b0 + 4` of this token, inside its slices.
            unsafe {
                (
                    v128_load(xq.d.as_ptr().add(b0) as *const v128),
                    v128_load(xq.sums.as_ptr().add(b0) as *const v128),
                    v128_load(xq.s.as_ptr().add(b0) as *const v128),
                )
            }
        } else {
            let d = |k: usize| if k < VALID { xq.d[b0 + k] } else { 0.0 };
            let sum = |k: usize| if k < VALID { xq.sums[b0 + k] } else { 0 };
            let s = |k: usize| if k < VALID { xq.s[b0 + k] } else { 0.0 };
            (f32x4(d(0), d(1), d(2), d(3)), i32x4(sum(0), sum(1), sum(2), sum(3)), f32x4(s(0), s(1), s(2), s(3)))
        };
        let mut term = f32x4_mul(f32x4_mul(d_w, d_x), f32x4_convert_i32x4(isum));
        match F::MIN {
            MinTerm::None => {}
            MinTerm::Plus => {
                term = f32x4_add(term, f32x4_mul(m_w, s_x));
            }
            MinTerm::MinusScaled => {
                let msum = i32x4_mul(m_s, x_sum);
                term = f32x4_sub(term, f32x4_mul(f32x4_mul(m_w, d_x), f32x4_convert_i32x4(msum)));
            }
        }
        if VALID < 4 {
            term = v128_and(term, lane_mask);
        }
        acc[t] = f32x4_add(acc[t], term);
    }
}
