//! Scalar reference kernels: plain safe Rust, bytes read with `from_le_bytes`.
//!
//! These define the results: the SIMD128 kernels must match them bit for bit (pinned by the native
//! unit tests against an `f64` reference and, in the wasm build, by `kernel_selftest`). Each dot
//! product follows the accumulation order written in the module docs of `quant`, literally.

use super::layout::{self, BlockLayout};
use super::{drive_matmul, f16_to_f32, f32_act, q_act, DType, QuantizedActivations, RowKernel, XqView, QK};

// Block sizes and field offsets from the layout table. These three formats have 32-element blocks,
// one activation block each.
const Q8_0: &BlockLayout = &layout::Q8_0;
const Q4_0: &BlockLayout = &layout::Q4_0;
const Q4_1: &BlockLayout = &layout::Q4_1;
const _: () = assert!(Q8_0.elements == QK && Q4_0.elements == QK && Q4_1.elements == QK);

/// Scalar [`quant::matmul`](super::matmul): same contract.
#[allow(clippy::too_many_arguments)]
pub fn matmul(dtype: DType, bytes: &[u8], rows: usize, cols: usize, n_tokens: usize, x: &[f32], xq: &QuantizedActivations, y: &mut [f32]) {
    match dtype {
        DType::F32 => drive_matmul::<F32Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q8_0 => drive_matmul::<Q8_0Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_0 => drive_matmul::<Q4_0Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_1 => drive_matmul::<Q4_1Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::F16 => drive_matmul::<super::kquant::scalar::F16Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q5_0 => drive_matmul::<super::kquant::scalar::Q5_0Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q5_1 => drive_matmul::<super::kquant::scalar::Q5_1Kernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q4_K => drive_matmul::<super::kquant::scalar::Q4KKernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q5_K => drive_matmul::<super::kquant::scalar::Q5KKernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
        DType::Q6_K => drive_matmul::<super::kquant::scalar::Q6KKernel>(dtype, bytes, rows, cols, n_tokens, x, xq, y),
    }
}

/// `Σ w[i]·x[i]` over `min(w.len() / 4, x.len())` elements, `w` little-endian `f32` bytes:
/// sixteen accumulators `acc[i % 16]`, then the fixed reduction tree.
pub(crate) fn dot_f32(w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for (i, (wb, &xv)) in w.chunks_exact(4).zip(x).enumerate() {
        acc[i % 16] += f32::from_le_bytes([wb[0], wb[1], wb[2], wb[3]]) * xv;
    }
    reduce16(&acc)
}

/// The `f32` reduction tree: `v[l] = (acc[l] + acc[l+4]) + (acc[l+8] + acc[l+12])`, then
/// `(v[0] + v[1]) + (v[2] + v[3])`.
#[inline]
pub(crate) fn reduce16(acc: &[f32; 16]) -> f32 {
    let v: [f32; 4] = core::array::from_fn(|l| (acc[l] + acc[l + 4]) + (acc[l + 8] + acc[l + 12]));
    (v[0] + v[1]) + (v[2] + v[3])
}

/// The quantized reduction: `(acc[0] + acc[1]) + (acc[2] + acc[3])`.
#[inline]
pub(crate) fn reduce4(acc: &[f32; 4]) -> f32 {
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// `isum = Σ_j w_q[j]·x_q[j]` with `w_q[j] = weight(j)`, exact in `i32`.
#[inline]
fn block_isum(x_q: &[i16], weight: impl Fn(usize) -> i32) -> i32 {
    x_q.iter().take(QK).enumerate().map(|(j, &xq)| weight(j) * xq as i32).sum()
}

/// Little-endian `f16` at `offset`, widened.
#[inline]
fn f16_at(block: &[u8], offset: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[offset], block[offset + 1]]))
}

/// Number of weight blocks of `layout` that both the row and the activations hold in full (they
/// agree when the preconditions hold); a weight block spans `elements / 32` activation blocks.
#[inline]
fn common_blocks(row: &[u8], layout: &BlockLayout, xq: &XqView<'_>) -> usize {
    (row.len() / layout.bytes).min(xq.n_blocks() / (layout.elements / QK))
}

/// Dot product of one `q8_0` row with quantized activations.
pub(crate) fn dot_q8_0(row: &[u8], xq: XqView<'_>) -> f32 {
    let mut acc = [0.0f32; 4];
    const D: usize = Q8_0.offset_of("d");
    const QS: usize = Q8_0.offset_of("qs");
    for b in 0..common_blocks(row, Q8_0, &xq) {
        let block = &row[b * Q8_0.bytes..(b + 1) * Q8_0.bytes];
        let isum = block_isum(&xq.qs[b * QK..], |j| block[QS + j] as i8 as i32);
        acc[b % 4] += (f16_at(block, D) * xq.d[b]) * isum as f32;
    }
    reduce4(&acc)
}

/// Dot product of one `q4_0` row with quantized activations.
pub(crate) fn dot_q4_0(row: &[u8], xq: XqView<'_>) -> f32 {
    let mut acc = [0.0f32; 4];
    const D: usize = Q4_0.offset_of("d");
    const QS: usize = Q4_0.offset_of("qs");
    for b in 0..common_blocks(row, Q4_0, &xq) {
        let block = &row[b * Q4_0.bytes..(b + 1) * Q4_0.bytes];
        let isum = block_isum(&xq.qs[b * QK..], |j| nibble(&block[QS..], j) - 8);
        acc[b % 4] += (f16_at(block, D) * xq.d[b]) * isum as f32;
    }
    reduce4(&acc)
}

/// Dot product of one `q4_1` row with quantized activations.
pub(crate) fn dot_q4_1(row: &[u8], xq: XqView<'_>) -> f32 {
    let mut acc = [0.0f32; 4];
    const D: usize = Q4_1.offset_of("d");
    const M: usize = Q4_1.offset_of("m");
    const QS: usize = Q4_1.offset_of("qs");
    for b in 0..common_blocks(row, Q4_1, &xq) {
        let block = &row[b * Q4_1.bytes..(b + 1) * Q4_1.bytes];
        let isum = block_isum(&xq.qs[b * QK..], |j| nibble(&block[QS..], j));
        let d_x = xq.d[b];
        acc[b % 4] += (f16_at(block, D) * d_x) * isum as f32 + f16_at(block, M) * xq.s[b];
    }
    reduce4(&acc)
}

/// 4-bit quant `j` of a block's `qs[16]`: low nibbles are elements 0..16, high nibbles 16..32.
#[inline]
fn nibble(qs: &[u8], j: usize) -> i32 {
    if j < QK / 2 {
        (qs[j] & 15) as i32
    } else {
        (qs[j - QK / 2] >> 4) as i32
    }
}

struct F32Kernel;
struct Q8_0Kernel;
struct Q4_0Kernel;
struct Q4_1Kernel;

impl RowKernel for F32Kernel {
    type Act<'a> = &'a [f32];
    fn act<'a>(x: &'a [f32], _: &'a QuantizedActivations, t: usize, cols: usize) -> &'a [f32] {
        f32_act(x, t, cols)
    }
    fn dot<const N: usize>(row: &[u8], acts: [&[f32]; N]) -> [f32; N] {
        acts.map(|x| dot_f32(row, x))
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
quantized_row_kernel!(Q8_0Kernel, dot_q8_0);
quantized_row_kernel!(Q4_0Kernel, dot_q4_0);
quantized_row_kernel!(Q4_1Kernel, dot_q4_1);
