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
//! one, as the scalar code does. No fused multiply-add.
//!
//! The relaxed-SIMD flavour (built with `+relaxed-simd`, `make wasm-relaxed`) differs in one place:
//! the integer part of `q4_0` and `q4_1` blocks uses `i32x4.relaxed_dot_i8x16_i7x16_add_s` on the
//! packed nibbles and `i8` activations (`nibble_isums`). That instruction is exact and identical
//! in every engine when its second operand is in 0..=127, which nibbles always are, so the flavour
//! gives the same bits as this one (the kernel self-test pins it); it needs an engine with relaxed
//! SIMD. Nothing else relaxed is used.
//!
//! `f32` weights: sixteen lanes as four `f32x4` accumulators (vector `k`, lane `l` = scalar
//! `acc[4k + l]`); `matmul` runs two tokens per pass over a row (2 × 4 accumulators and 4 weight
//! vectors fit the 16 vector registers of x86-64 hosts).
//!
//! Loads go through `v128_load` on byte pointers: wasm vector loads have no alignment requirement,
//! so package bytes at any offset are fine.

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::wasm32::*;

use super::layout::{self, BlockLayout};
use super::scalar::{reduce16, reduce4};
use super::{drive_matmul, f32_act, q_act, DType, QuantizedActivations, RowKernel, XqView, QK};

/// SIMD128 [`quant::matmul`](super::matmul): same contract.
#[allow(clippy::too_many_arguments)]
pub fn matmul(dtype: DType, bytes: &[u8], rows: usize, cols: usize, n_tokens: usize, x: &[f32], xq: &QuantizedActivations, y: &mut [f32]) {
    match dtype {
        DType::F32 => drive_matmul::<F32Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q8_0 => drive_matmul::<QKernel<Q8_0>>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_0 => drive_matmul::<QKernel<Q4_0>>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_1 => drive_matmul::<QKernel<Q4_1>>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::F16 => drive_matmul::<super::kquant::simd128::F16Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q5_0 => drive_matmul::<super::kquant::simd128::Q5_0Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q5_1 => drive_matmul::<super::kquant::simd128::Q5_1Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_K => drive_matmul::<super::kquant::simd128::Q4KKernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q5_K => drive_matmul::<super::kquant::simd128::Q5KKernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q6_K => drive_matmul::<super::kquant::simd128::Q6KKernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
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
            [v128_load(p as *const v128), v128_load(p.add(16) as *const v128), v128_load(p.add(32) as *const v128), v128_load(p.add(48) as *const v128)]
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
            let w = f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]]);
            lanes[i % 16] += w * x[i];
        }
        *o = reduce16(&lanes);
    }
    out
}

#[inline(always)]
pub(crate) fn f32x4_lanes(v: v128) -> [f32; 4] {
    [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
}

// ---------------------------------------------------------------------------------------------
// Quantized weights

/// How one quantized block format is decoded. Implementations only read inside the block.
trait QFormat {
    /// The dtype's layout. These kernels assume 32-element blocks with the `f16 d` (and `m`) at
    /// the offsets the `scales4` calls use; each implementation asserts its layout at compile
    /// time. A dtype with another block shape gets its own kernel, not this one.
    const LAYOUT: &'static BlockLayout;
    const BLOCK_BYTES: usize = Self::LAYOUT.bytes;
    /// Offset of the `f16 d` scale.
    const D_AT: usize = Self::LAYOUT.offset_of("d");
    /// Offset of the `f16 m` minimum (read only when `HAS_MIN`).
    const M_AT: usize = 0;
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
    /// Offset of the 16 packed nibble bytes in a 4-bit block (`None` for `q8_0`); read by the
    /// relaxed-SIMD flavour only.
    #[cfg_attr(not(target_feature = "relaxed-simd"), allow(dead_code))]
    const NIBBLES_AT: Option<usize> = None;
}

/// Four `f16` bit patterns (in the low halves of `i32x4` lanes) widened to `f32x4`, exactly and
/// lane for lane equal to [`f16_to_f32`]. Scales are almost always normal numbers, which need only a
/// rebias of the exponent; zero, subnormal, infinite and NaN lanes take the general path (the same
/// three cases as the scalar code, chosen with selects).
#[inline(always)]
pub(crate) fn f16x4_to_f32x4(h: v128) -> v128 {
    let exp_mant = v128_and(h, i32x4_splat(0x7fff));
    let sign = i32x4_shl(v128_and(h, i32x4_splat(0x8000)), 16);
    let shifted = i32x4_shl(exp_mant, 13);
    let normal = i32x4_add(shifted, i32x4_splat(112 << 23));
    // Normal iff 0x0400 <= exp_mant < 0x7c00, as one unsigned range check.
    let is_normal = u32x4_lt(i32x4_sub(exp_mant, i32x4_splat(0x0400)), u32x4_splat(0x7800));
    if i32x4_all_true(is_normal) {
        return v128_or(normal, sign);
    }
    let inf_nan = v128_or(shifted, i32x4_splat(0x7f80_0000));
    let subnormal = f32x4_mul(f32x4_convert_i32x4(exp_mant), f32x4_splat(1.0 / 16_777_216.0));
    let is_inf_nan = i32x4_ge(exp_mant, i32x4_splat(0x7c00));
    let magnitude = v128_bitselect(normal, v128_bitselect(inf_nan, subnormal, is_inf_nan), is_normal);
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

/// The 32 nibbles of the 16 bytes at `qs` (low nibbles are elements 0..16, high nibbles 16..32) as
/// `u16x8 × 4`. Each half is loaded twice with a zero-extending 8-byte load (one host instruction)
/// rather than once and unpacked: fewer instructions, and the second load hits the same line.
///
/// # Safety
/// `qs` points to 16 readable bytes.
#[inline(always)]
pub(crate) unsafe fn load_nibbles(qs: *const u8) -> [v128; 4] {
    // SAFETY: bytes 0..8 and 8..16 of `qs`; 8-byte loads accept any alignment.
    let (lo, hi) = unsafe { (u16x8_load_extend_u8x8(qs), u16x8_load_extend_u8x8(qs.add(8))) };
    let mask = u16x8_splat(0x0f);
    [v128_and(lo, mask), v128_and(hi, mask), u16x8_shr(lo, 4), u16x8_shr(hi, 4)]
}

struct Q8_0;
struct Q4_0;
struct Q4_1;

// What these kernels assume of the layouts (`f16 d` first; `qs` as loaded by `weights`).
const _: () = assert!(layout::Q8_0.elements == QK && Q8_0::D_AT == 0 && Q8_0::QS_AT + 32 == layout::Q8_0.bytes);
const _: () = assert!(layout::Q4_0.elements == QK && Q4_0::D_AT == 0 && Q4_0::QS_AT + 16 == layout::Q4_0.bytes);
const _: () = assert!(layout::Q4_1.elements == QK && Q4_1::D_AT == 0 && Q4_1::QS_AT + 16 == layout::Q4_1.bytes);

impl Q8_0 {
    const QS_AT: usize = layout::Q8_0.offset_of("qs");
}
impl Q4_0 {
    const QS_AT: usize = layout::Q4_0.offset_of("qs");
}
impl Q4_1 {
    const QS_AT: usize = layout::Q4_1.offset_of("qs");
}

impl QFormat for Q8_0 {
    const LAYOUT: &'static BlockLayout = &layout::Q8_0;
    const HAS_MIN: bool = false;
    const MINUS_8: bool = false;

    /// # Safety
    /// As for [`QFormat::weights`]: `block` points to `BLOCK_BYTES` readable bytes.
    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[32]` is the block's last 32 bytes (asserted above), inside `BLOCK_BYTES`.
        let (q0, q1) = unsafe { (v128_load(block.add(Self::QS_AT) as *const v128), v128_load(block.add(Self::QS_AT + 16) as *const v128)) };
        [i16x8_extend_low_i8x16(q0), i16x8_extend_high_i8x16(q0), i16x8_extend_low_i8x16(q1), i16x8_extend_high_i8x16(q1)]
    }
}

impl QFormat for Q4_0 {
    const LAYOUT: &'static BlockLayout = &layout::Q4_0;
    const HAS_MIN: bool = false;
    const MINUS_8: bool = true;
    const NIBBLES_AT: Option<usize> = Some(Self::QS_AT);

    /// # Safety
    /// As for [`QFormat::weights`]: `block` points to `BLOCK_BYTES` readable bytes.
    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[16]` is the block's last 16 bytes (asserted above), inside `BLOCK_BYTES`.
        unsafe { load_nibbles(block.add(Self::QS_AT)) }
    }
}

impl QFormat for Q4_1 {
    const LAYOUT: &'static BlockLayout = &layout::Q4_1;
    const M_AT: usize = layout::Q4_1.offset_of("m");
    const HAS_MIN: bool = true;
    const MINUS_8: bool = false;
    const NIBBLES_AT: Option<usize> = Some(Self::QS_AT);

    /// # Safety
    /// As for [`QFormat::weights`]: `block` points to `BLOCK_BYTES` readable bytes.
    #[inline(always)]
    unsafe fn weights(block: *const u8) -> [v128; 4] {
        // SAFETY: `qs[16]` is the block's last 16 bytes (asserted above), inside `BLOCK_BYTES`.
        unsafe { load_nibbles(block.add(Self::QS_AT)) }
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
        unsafe {
            if N == 1 {
                dot_quantized_direct::<F, N>(row, n_blocks, &acts)
            } else {
                dot_quantized::<F, N>(row, n_blocks, &acts)
            }
        }
    }
}

/// Exact partial sums of one block: the four lanes of the result add up to `Σ_j w[j] · x[j]`.
/// `i32x4.dot_i16x8_s` cannot overflow: `|w| ≤ 128`, `|x| ≤ 127`.
///
/// # Safety
/// `x` points to 32 readable `i16`s.
#[inline(always)]
pub(crate) unsafe fn block_partial_isum(w: &[v128; 4], x: *const i16) -> v128 {
    // SAFETY: the caller guarantees 32 `i16`s (64 bytes) at `x`; any alignment is fine.
    let xv =
        unsafe { [v128_load(x as *const v128), v128_load(x.add(8) as *const v128), v128_load(x.add(16) as *const v128), v128_load(x.add(24) as *const v128)] };
    let p01 = i32x4_add(i32x4_dot_i16x8(w[0], xv[0]), i32x4_dot_i16x8(w[1], xv[1]));
    let p23 = i32x4_add(i32x4_dot_i16x8(w[2], xv[2]), i32x4_dot_i16x8(w[3], xv[3]));
    i32x4_add(p01, p23)
}

/// Exact partial sums of one 4-bit block for each token, with relaxed SIMD's byte dot product: the
/// four lanes of token `t`'s result add up to `Σ_j nibble[j] · x_t[j]`, as [`block_partial_isum`]'s
/// do (the lanes group the terms differently; only their sum is used).
///
/// `i32x4.relaxed_dot_i8x16_i7x16_add_s` is exact and the same in every engine when its second
/// operand lies in 0..=127: the nibbles (0..=15) are that operand. Pairs of products are at most
/// 2 · 15 · 127 = 3810 in magnitude, so engines that add pairs in `i16` (x86's `pmaddubsw`) never
/// saturate.
///
/// # Safety
/// `nibbles` points to a block's 16 packed bytes and every token holds `i8` quants of block `b`.
#[cfg(target_feature = "relaxed-simd")]
#[inline(always)]
unsafe fn nibble_isums<const N: usize>(nibbles: *const u8, acts: &[XqView<'_>; N], b: usize) -> [v128; N] {
    // SAFETY: 16 bytes at `nibbles` and 32 `i8`s per token at block `b`, as the caller guarantees.
    unsafe {
        let packed = v128_load(nibbles as *const v128);
        let lo = v128_and(packed, u8x16_splat(0x0f));
        let hi = u8x16_shr(packed, 4);
        core::array::from_fn(|t| {
            let x = acts[t].qs8.as_ptr().add(b * QK);
            let x_lo = v128_load(x as *const v128);
            let x_hi = v128_load(x.add(16) as *const v128);
            i32x4_relaxed_dot_i8x16_i7x16_add(x_hi, hi, i32x4_relaxed_dot_i8x16_i7x16_add(x_lo, lo, i32x4_splat(0)))
        })
    }
}

/// Blocks per pass of [`dot_quantized`]'s integer phase.
const CHUNK_BLOCKS: usize = 16;

/// Interleaves two blocks' partial sums `s`, `u` into `[s0+s2, u0+u2, s1+s3, u1+u3]` (half of a
/// 4-way transpose-and-add).
#[inline(always)]
pub(crate) fn pair_sum(s: v128, u: v128) -> v128 {
    i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(s, u), i32x4_shuffle::<2, 6, 3, 7>(s, u))
}

/// `N` dot products of the first `n_blocks` blocks of `row` with each token's activations, in the
/// fixed order of the module docs (vector lane `k` = scalar `acc[b % 4]` with `b % 4 = k`).
///
/// Two phases per chunk of [`CHUNK_BLOCKS`] blocks. The integer phase stores each block's
/// partial sums to a small stack buffer; the float phase transposes four blocks' partials into
/// one `isum` vector and scales it. The stores are what make this fast: the host compiler
/// (Cranelift) keeps loads and stores in program order but places pure arithmetic just before its
/// first use, so without a store per block it would issue every load of a group first and spill
/// the loaded vectors when they outnumber the 16 vector registers.
///
/// A last group of 1–3 blocks uses the same vector code with the missing lanes' terms forced to
/// `+0.0`: adding `+0.0` leaves an accumulator lane unchanged, because a lane that starts at
/// `+0.0` and only ever has terms added can never become `−0.0` in round-to-nearest, so the result
/// equals the scalar order, which adds nothing there.
///
/// # Safety
/// `row.len() ≥ n_blocks · F::BLOCK_BYTES` and `acts[t].n_blocks() ≥ n_blocks` for every `t`.
#[inline(always)]
unsafe fn dot_quantized<F: QFormat, const N: usize>(row: &[u8], n_blocks: usize, acts: &[XqView<'_>; N]) -> [f32; N] {
    let mut acc = [f32x4_splat(0.0); N];
    let mut partials = [[i32x4_splat(0); CHUNK_BLOCKS]; N];
    let row_ptr = row.as_ptr();
    let mut c0 = 0;
    while c0 < n_blocks {
        let len = CHUNK_BLOCKS.min(n_blocks - c0);
        #[allow(clippy::needless_range_loop)] // `k` indexes the partials of every token
        for k in 0..len {
            let b = c0 + k;
            #[cfg(target_feature = "relaxed-simd")]
            if let Some(at) = F::NIBBLES_AT {
                // SAFETY: block `b < n_blocks` lies inside `row` and each token's `i8` quants.
                let parts = unsafe { nibble_isums(row_ptr.add(b * F::BLOCK_BYTES + at), acts, b) };
                for t in 0..N {
                    partials[t][k] = parts[t];
                }
                continue;
            }
            // SAFETY: block `b < n_blocks` lies inside `row` and each token's quants; the weight
            // block is decoded once for all `N` tokens.
            unsafe {
                let w = F::weights(row_ptr.add(b * F::BLOCK_BYTES));
                for t in 0..N {
                    partials[t][k] = block_partial_isum(&w, acts[t].qs.as_ptr().add(b * QK));
                }
            }
        }
        let full = len / 4 * 4;
        let mut g = 0;
        while g < full {
            // SAFETY: (this block and the tail arms) blocks `c0 + g .. c0 + len ≤ n_blocks` lie inside
            // `row` and every token's scales and sums.
            unsafe { accumulate_group::<F, N, 4>(&mut acc, row_ptr, c0 + g, |t, k| partials[t][g + k], acts) };
            g += 4;
        }
        match len - full {
            // SAFETY: blocks `c0 + g .. c0 + len ≤ n_blocks` lie inside `row` and every token's scales and sums.
            1 => unsafe { accumulate_group::<F, N, 1>(&mut acc, row_ptr, c0 + g, |t, k| partials[t][g + k], acts) },
            // SAFETY: blocks `c0 + g .. c0 + len ≤ n_blocks` lie inside `row` and every token's scales and sums.
            2 => unsafe { accumulate_group::<F, N, 2>(&mut acc, row_ptr, c0 + g, |t, k| partials[t][g + k], acts) },
            // SAFETY: blocks `c0 + g .. c0 + len ≤ n_blocks` lie inside `row` and every token's scales and sums.
            3 => unsafe { accumulate_group::<F, N, 3>(&mut acc, row_ptr, c0 + g, |t, k| partials[t][g + k], acts) },
            _ => {}
        }
        c0 += len;
    }
    acc.map(|a| reduce4(&f32x4_lanes(a)))
}

/// [`dot_quantized`] without the stored partial sums, four blocks at a time: fewer instructions,
/// which is what decode (one token) is bound by; the spills this costs in Cranelift are cheap there.
///
/// # Safety
/// As for [`dot_quantized`].
#[inline(always)]
unsafe fn dot_quantized_direct<F: QFormat, const N: usize>(row: &[u8], n_blocks: usize, acts: &[XqView<'_>; N]) -> [f32; N] {
    let mut acc = [f32x4_splat(0.0); N];
    let row_ptr = row.as_ptr();
    let isums = |b: usize| -> [v128; N] {
        #[cfg(target_feature = "relaxed-simd")]
        if let Some(at) = F::NIBBLES_AT {
            // SAFETY: callers below pass `b < n_blocks`: inside `row` and each token's quants.
            return unsafe { nibble_isums(row_ptr.add(b * F::BLOCK_BYTES + at), acts, b) };
        }
        // SAFETY: callers below pass `b < n_blocks`: inside `row` and each token's quants.
        unsafe {
            let w = F::weights(row_ptr.add(b * F::BLOCK_BYTES));
            core::array::from_fn(|t| block_partial_isum(&w, acts[t].qs.as_ptr().add(b * QK)))
        }
    };
    let n_full = n_blocks / 4 * 4;
    let mut b0 = 0;
    while b0 < n_full {
        let parts = [isums(b0), isums(b0 + 1), isums(b0 + 2), isums(b0 + 3)];
        // SAFETY: blocks `b0 .. b0 + 4 ≤ n_blocks`.
        unsafe { accumulate_group::<F, N, 4>(&mut acc, row_ptr, b0, |t, k| parts[k][t], acts) };
        b0 += 4;
    }
    let zero = [i32x4_splat(0); N];
    let tail = n_blocks - n_full;
    let parts: [[v128; N]; 4] = core::array::from_fn(|k| if k < tail { isums(b0 + k) } else { zero });
    // SAFETY (each arm): blocks `b0 .. n_blocks`.
    match tail {
        // SAFETY: blocks `b0 .. n_blocks`.
        1 => unsafe { accumulate_group::<F, N, 1>(&mut acc, row_ptr, b0, |t, k| parts[k][t], acts) },
        // SAFETY: blocks `b0 .. n_blocks`.
        2 => unsafe { accumulate_group::<F, N, 2>(&mut acc, row_ptr, b0, |t, k| parts[k][t], acts) },
        // SAFETY: blocks `b0 .. n_blocks`.
        3 => unsafe { accumulate_group::<F, N, 3>(&mut acc, row_ptr, b0, |t, k| parts[k][t], acts) },
        _ => {}
    }
    acc.map(|a| reduce4(&f32x4_lanes(a)))
}

/// Adds the terms of blocks `b0 .. b0 + VALID` (`VALID ≤ 4`, one block per lane; token `t`'s
/// partial sums of block `b0 + k` are `partial(t, k)`) to each token's accumulator; lanes
/// `VALID..4` get `+0.0`.
/// Nothing outside those blocks is read.
///
/// # Safety
/// Those blocks lie inside the row at `row_ptr` and inside every token's scales and sums.
#[inline(always)]
unsafe fn accumulate_group<F: QFormat, const N: usize, const VALID: usize>(
    acc: &mut [v128; N],
    row_ptr: *const u8,
    b0: usize,
    partial: impl Fn(usize, usize) -> v128,
    acts: &[XqView<'_>; N],
) {
    // Missing lanes read block `b0`'s scale again; their terms are masked below.
    // SAFETY: block `b0 + k` is read only for `k < VALID`.
    let (d_w, m_w) = unsafe {
        let p: [*const u8; 4] = core::array::from_fn(|k| row_ptr.add((b0 + if k < VALID { k } else { 0 }) * F::BLOCK_BYTES));
        let d_w = scales4(p, F::D_AT);
        (d_w, if F::HAS_MIN { scales4(p, F::M_AT) } else { d_w })
    };
    let lane_mask = i32x4(if VALID > 0 { -1 } else { 0 }, if VALID > 1 { -1 } else { 0 }, if VALID > 2 { -1 } else { 0 }, if VALID > 3 { -1 } else { 0 });
    for t in 0..N {
        let xq = &acts[t];
        let part = |k: usize| if k < VALID { partial(t, k) } else { i32x4_splat(0) };
        let lo = pair_sum(part(0), part(1));
        let hi = pair_sum(part(2), part(3));
        let mut isum = i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(lo, hi), i32x4_shuffle::<2, 3, 6, 7>(lo, hi));
        let (d_x, x_sum, s_x) = if VALID == 4 {
            // SAFETY: scales and sums `b0 .. b0 + 4` of this token, inside its slices.
            unsafe {
                let d_x = v128_load(xq.d.as_ptr().add(b0) as *const v128);
                let x_sum = if F::MINUS_8 { v128_load(xq.sums.as_ptr().add(b0) as *const v128) } else { d_x };
                let s_x = if F::HAS_MIN { v128_load(xq.s.as_ptr().add(b0) as *const v128) } else { d_x };
                (d_x, x_sum, s_x)
            }
        } else {
            let d = |k: usize| if k < VALID { xq.d[b0 + k] } else { 0.0 };
            let sum = |k: usize| if F::MINUS_8 && k < VALID { xq.sums[b0 + k] } else { 0 };
            let s = |k: usize| if F::HAS_MIN && k < VALID { xq.s[b0 + k] } else { 0.0 };
            (f32x4(d(0), d(1), d(2), d(3)), i32x4(sum(0), sum(1), sum(2), sum(3)), f32x4(s(0), s(1), s(2), s(3)))
        };
        if F::MINUS_8 {
            isum = i32x4_sub(isum, i32x4_shl(x_sum, 3));
        }
        let mut term = f32x4_mul(f32x4_mul(d_w, d_x), f32x4_convert_i32x4(isum));
        if F::HAS_MIN {
            term = f32x4_add(term, f32x4_mul(m_w, s_x));
        }
        if VALID < 4 {
            term = v128_and(term, lane_mask);
        }
        acc[t] = f32x4_add(acc[t], term);
    }
}

/// Widens all 65536 `f16` bit patterns with the vector path and counts results whose bits differ
/// from [`f16_to_f32`] (NaNs included: both keep the payload).
#[cfg(feature = "kernel-selftest")]
pub(crate) fn f16x4_mismatches() -> u32 {
    let mut mismatches = 0;
    for h in (0..=u16::MAX as u32).step_by(4) {
        let v = f16x4_to_f32x4(u32x4(h, h + 1, h + 2, h + 3));
        let got = [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)];
        for (k, g) in got.iter().enumerate() {
            if g.to_bits() != super::f16_to_f32((h + k as u32) as u16).to_bits() {
                mismatches += 1;
            }
        }
    }
    mismatches
}
