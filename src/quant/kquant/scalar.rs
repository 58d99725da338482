//! Scalar reference kernels for the shipped GGUF dtypes: plain safe Rust, each dot product the
//! fixed order of the `kquant` module docs, literally. They define the results; the SIMD128
//! kernels must match them bit for bit.

use super::dequant::{k_scales, q4_k_quant, q5_k_quant, q5_qh, q5_quant, q6_k_quant, scale_min_k4};
use super::layout::{q4_k, q5_0, q5_1, q5_k, q6_k};
use super::{f16_at, K_SUBS};
use crate::quant::scalar::{reduce16, reduce4};
use crate::quant::{f16_to_f32, f32_act, q_act, QuantizedActivations, RowKernel, XqView, QK};

/// The 32 quants of activation block `b` (empty past the end).
#[inline]
fn act_quants<'a>(xq: &XqView<'a>, b: usize) -> &'a [i16] {
    xq.qs.get(b * QK..(b + 1) * QK).unwrap_or(&[])
}

/// `q5_0` integer sum of one block: `Σ_j (q[j] − 16) · x[j]`.
#[inline]
pub(crate) fn q5_0_isum(block: &[u8], x: &[i16]) -> i32 {
    let qh = q5_qh(block, q5_0::QH);
    let qs = &block[q5_0::QS..];
    x.iter().take(QK).enumerate().map(|(j, &x)| (q5_quant(qh, qs, j) - 16) * x as i32).sum()
}

/// `q5_1` integer sum of one block: `Σ_j q[j] · x[j]`.
#[inline]
pub(crate) fn q5_1_isum(block: &[u8], x: &[i16]) -> i32 {
    let qh = q5_qh(block, q5_1::QH);
    let qs = &block[q5_1::QS..];
    x.iter().take(QK).enumerate().map(|(j, &x)| q5_quant(qh, qs, j) * x as i32).sum()
}

/// `q4_K` / `q5_K` integer sums of sub-block `s` against activation block quants `x` with quant sum
/// `xsum`: `(sc_s · Σ_j q[j] · x[j], m_s · xsum)`.
#[inline]
fn k45_isums(block: &[u8], scales_at: usize, quant: fn(&[u8], usize, usize) -> i32, s: usize, x: &[i16], xsum: i32) -> (i32, i32) {
    let (sc, m) = scale_min_k4(&k_scales(block, scales_at), s);
    let raw: i32 = x.iter().take(QK).enumerate().map(|(l, &x)| quant(block, s, l) * x as i32).sum();
    (sc as i32 * raw, m as i32 * xsum)
}

/// `q4_K` integer sums of sub-block `s`: `(sc_s · Σ q·x, m_s · xsum)`.
#[inline]
pub(crate) fn q4_k_isums(block: &[u8], s: usize, x: &[i16], xsum: i32) -> (i32, i32) {
    k45_isums(block, q4_k::SCALES, q4_k_quant, s, x, xsum)
}

/// `q5_K` integer sums of sub-block `s`: `(sc_s · Σ q·x, m_s · xsum)`.
#[inline]
pub(crate) fn q5_k_isums(block: &[u8], s: usize, x: &[i16], xsum: i32) -> (i32, i32) {
    k45_isums(block, q5_k::SCALES, q5_k_quant, s, x, xsum)
}

/// `q6_K` integer sum of activation block `s` (elements `32s..32s+32`, sub-blocks `2s`, `2s+1`):
/// `scales[2s] · Σ_{j<16} (q − 32)·x + scales[2s+1] · Σ_{j≥16} (q − 32)·x`.
#[inline]
pub(crate) fn q6_k_isum(block: &[u8], s: usize, x: &[i16]) -> i32 {
    let half = |t: usize| -> i32 {
        let sc = block[q6_k::SCALES + 2 * s + t] as i8 as i32;
        let sum: i32 = (0..QK / 2).zip(x.iter().skip(16 * t)).map(|(j, &x)| (q6_k_quant(block, 32 * s + 16 * t + j) - 32) * x as i32).sum();
        sc * sum
    };
    half(0) + half(1)
}

/// Dot product of one `q5_0` row with quantized activations.
pub(crate) fn dot_q5_0(row: &[u8], xq: XqView<'_>) -> f32 {
    let mut acc = [0.0f32; 4];
    let n_blocks = (row.len() / q5_0::BYTES).min(xq.n_blocks());
    for (b, block) in row.chunks_exact(q5_0::BYTES).take(n_blocks).enumerate() {
        let isum = q5_0_isum(block, act_quants(&xq, b));
        acc[b % 4] += (f16_at(block, q5_0::D) * xq.d[b]) * isum as f32;
    }
    reduce4(&acc)
}

/// Dot product of one `q5_1` row with quantized activations.
pub(crate) fn dot_q5_1(row: &[u8], xq: XqView<'_>) -> f32 {
    let mut acc = [0.0f32; 4];
    let n_blocks = (row.len() / q5_1::BYTES).min(xq.n_blocks());
    for (b, block) in row.chunks_exact(q5_1::BYTES).take(n_blocks).enumerate() {
        let isum = q5_1_isum(block, act_quants(&xq, b));
        let d_x = xq.d[b];
        acc[b % 4] += (f16_at(block, q5_1::D) * d_x) * isum as f32 + f16_at(block, q5_1::M) * xq.s[b];
    }
    reduce4(&acc)
}

/// `(block, sub-block, activation quants, activation sum) → (isum, msum)` of one k-quant sub-block.
type SubBlockSums = fn(&[u8], usize, &[i16], i32) -> (i32, i32);

/// The `q4_K` / `q5_K` dot product; `isums(block, s, x, xsum)` gives `(isum, msum)`.
#[inline]
fn dot_k45(row: &[u8], xq: XqView<'_>, block_bytes: usize, isums: SubBlockSums) -> f32 {
    let mut acc = [0.0f32; 4];
    let n_super = (row.len() / block_bytes).min(xq.n_blocks() / K_SUBS);
    for (i, block) in row.chunks_exact(block_bytes).take(n_super).enumerate() {
        let (d, dmin) = (f16_at(block, q4_k::D), f16_at(block, q4_k::DMIN));
        for s in 0..K_SUBS {
            let b = i * K_SUBS + s;
            let (isum, msum) = isums(block, s, act_quants(&xq, b), xq.sums[b]);
            let d_x = xq.d[b];
            acc[b % 4] += (d * d_x) * isum as f32 - (dmin * d_x) * msum as f32;
        }
    }
    reduce4(&acc)
}

/// Dot product of one `q4_K` row with quantized activations.
pub(crate) fn dot_q4_k(row: &[u8], xq: XqView<'_>) -> f32 {
    dot_k45(row, xq, q4_k::BYTES, q4_k_isums)
}

/// Dot product of one `q5_K` row with quantized activations.
pub(crate) fn dot_q5_k(row: &[u8], xq: XqView<'_>) -> f32 {
    dot_k45(row, xq, q5_k::BYTES, q5_k_isums)
}

/// Dot product of one `q6_K` row with quantized activations.
pub(crate) fn dot_q6_k(row: &[u8], xq: XqView<'_>) -> f32 {
    let mut acc = [0.0f32; 4];
    let n_super = (row.len() / q6_k::BYTES).min(xq.n_blocks() / K_SUBS);
    for (i, block) in row.chunks_exact(q6_k::BYTES).take(n_super).enumerate() {
        let d = f16_at(block, q6_k::D);
        for s in 0..K_SUBS {
            let b = i * K_SUBS + s;
            let isum = q6_k_isum(block, s, act_quants(&xq, b));
            acc[b % 4] += (d * xq.d[b]) * isum as f32;
        }
    }
    reduce4(&acc)
}

/// `Σ f32(w[i])·x[i]` over `min(w.len() / 2, x.len())` elements, `w` little-endian `f16` bytes:
/// sixteen accumulators `acc[i % 16]`, then the `f32` reduction tree.
pub(crate) fn dot_f16(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (i, (wb, &xv)) in w.chunks_exact(2).zip(x).enumerate() {
        acc[i % 16] += f16_to_f32(u16::from_le_bytes([wb[0], wb[1]])) * xv;
    }
    reduce16(&acc)
}

/// Scalar `f16` row kernel (`f32` activations).
pub(crate) struct F16Kernel;
/// Scalar `q5_0` row kernel.
pub(crate) struct Q5_0Kernel;
/// Scalar `q5_1` row kernel.
pub(crate) struct Q5_1Kernel;
/// Scalar `q4_K` row kernel.
pub(crate) struct Q4KKernel;
/// Scalar `q5_K` row kernel.
pub(crate) struct Q5KKernel;
/// Scalar `q6_K` row kernel.
pub(crate) struct Q6KKernel;

impl RowKernel for F16Kernel {
    type Act<'a> = &'a [f32];
    fn act<'a>(x: &'a [f32], _: &'a QuantizedActivations, t: usize, cols: usize) -> &'a [f32] {
        f32_act(x, t, cols)
    }
    fn dot<const N: usize>(row: &[u8], acts: [&[f32]; N]) -> [f32; N] {
        acts.map(|x| dot_f16(row, x))
    }
}

macro_rules! quantized_row_kernel {
    ($kernel:ident, $dot:ident) => {
        impl RowKernel for $kernel {
            type Act<'a> = XqView<'a>;
            fn act<'a>(_: &'a [f32], xq: &'a QuantizedActivations, t: usize, cols: usize) -> XqView<'a> {
                q_act(xq, t, cols)
            }
            fn dot<const N: usize>(row: &[u8], acts: [XqView<'_>; N]) -> [f32; N] {
                acts.map(|xq| $dot(row, xq))
            }
        }
    };
}
quantized_row_kernel!(Q5_0Kernel, dot_q5_0);
quantized_row_kernel!(Q5_1Kernel, dot_q5_1);
quantized_row_kernel!(Q4KKernel, dot_q4_k);
quantized_row_kernel!(Q5KKernel, dot_q5_k);
quantized_row_kernel!(Q6KKernel, dot_q6_k);
