//! The dtypes GGUF Q4_K_M files ship besides `q8_0`: `q5_0`, `q5_1`, `f16` and the k-quants
//! `q4_K`, `q5_K`, `q6_K` — block layouts, dequantizers and dot-product kernels, all reading the
//! package bytes in place (no dequantized copies).
//!
//! `quant::matmul` dispatches these dtypes to the [`RowKernel`](super::RowKernel)s in [`scalar`]
//! and `simd128` (the relaxed-SIMD flavour uses the same SIMD128 kernels); the block layouts are
//! rows of the one layout table ([`crate::quant::layout`]), the finiteness check is the generic
//! [`first_non_finite`](super::first_non_finite), and [`quantize`]'s ggml reference quantizers
//! serve the adapter patcher.
//!
//! # Block layouts
//!
//! Provenance: ggml's `block_q5_0`, `block_q5_1`, `block_q4_K`, `block_q5_K`, `block_q6_K` in
//! `ggml-common.h` (`QK_K = 256`, `K_SCALE_SIZE = 12`) and the `dequantize_row_*` functions of
//! `ggml-quants.c`; cross-checked against the `gguf` PyPI package's numpy dequantizer, which the
//! test vectors come from. All fields little-endian, no padding, no alignment. Offsets in bytes
//! from the start of the block; the constants in [`layout`] are these numbers, and compile-time
//! asserts check that the fields tile each block exactly.
//!
//! | dtype  | ggml type | elements | bytes | fields (offset: field)                                          |
//! |--------|-----------|----------|-------|-----------------------------------------------------------------|
//! | `f16`  | 1         | 1        | 2     | 0: `f16 v`                                                      |
//! | `q5_0` | 6         | 32       | 22    | 0: `f16 d`, 2: `u8 qh[4]`, 6: `u8 qs[16]`                       |
//! | `q5_1` | 7         | 32       | 24    | 0: `f16 d`, 2: `f16 m`, 4: `u8 qh[4]`, 8: `u8 qs[16]`           |
//! | `q4_K` | 12        | 256      | 144   | 0: `f16 d`, 2: `f16 dmin`, 4: `u8 scales[12]`, 16: `u8 qs[128]` |
//! | `q5_K` | 13        | 256      | 176   | 0: `f16 d`, 2: `f16 dmin`, 4: `u8 scales[12]`, 16: `u8 qh[32]`, 48: `u8 qs[128]` |
//! | `q6_K` | 14        | 256      | 210   | 0: `u8 ql[128]`, 128: `u8 qh[64]`, 192: `i8 scales[16]`, 208: `f16 d` |
//!
//! (`q6_K` keeps its `f16` scale at the *end* of the block.)
//!
//! ## Quants of element `e` and the dequantized value
//!
//! Every formula is evaluated in `f32` with each operation rounded (no fused multiply-add), in
//! exactly the order written — ggml's `dequantize_row_*` arithmetic (and numpy's). `f16` fields
//! widen exactly ([`f16_to_f32`](super::f16_to_f32)); integers convert to `f32` exactly.
//!
//! * `f16`: `y = f32(v)`.
//! * `q5_0`, `q5_1` (`e` in `0..32`): `qh` is read as one little-endian `u32`;
//!   `q = nibble(e) | (bit e of qh) << 4`, in `0..=31`, where `nibble(e)` is `qs[e] & 15` for
//!   `e < 16` and `qs[e − 16] >> 4` for `e ≥ 16` (as in `q4_0`).
//!   `q5_0`: `y = d · f32(q − 16)`; `q5_1`: `y = d · f32(q) + m`.
//! * `q4_K`, `q5_K` (`e` in `0..256`): eight sub-blocks of 32, `s = e / 32`, `l = e % 32`.
//!   Sub-block `s` has a 6-bit scale `sc_s` and a 6-bit minimum `m_s` packed in `scales[12]`
//!   (ggml's `get_scale_min_k4`): for `s < 4`, `sc_s = scales[s] & 63`, `m_s = scales[s + 4] & 63`;
//!   for `s ≥ 4`, `sc_s = (scales[s + 4] & 15) | (scales[s − 4] >> 6) << 4` and
//!   `m_s = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4`. Sub-blocks `2i` and `2i + 1` share the
//!   32 bytes `qs[32i .. 32i + 32]`: `q = qs[32i + l] & 15` for even `s`, `qs[32i + l] >> 4` for
//!   odd `s`; `q5_K` adds `(bit s of qh[l]) << 4`. Then
//!   `y = (d · f32(sc_s)) · f32(q) − dmin · f32(m_s)`.
//! * `q6_K` (`e` in `0..256`): two halves of 128, `h = e / 128`; in a half, `r = e % 128`,
//!   quarter `k = r / 32`, `l = r % 32`. Low four bits: `ql[64h + l + 32·(k & 1)]`, the low nibble
//!   for `k < 2` and the high nibble for `k ≥ 2`; high two bits: `(qh[32h + l] >> 2k) & 3`;
//!   `q = low | high << 4`, in `0..=63`. Sixteen sub-blocks of 16 with signed scales,
//!   `t = e / 16`: `y = (d · f32(scales[t])) · f32(q − 32)`.
//!
//! # Dot products and the fixed float order
//!
//! As for the older dtypes (`quant` module docs), the scalar kernels in [`scalar`] and the
//! SIMD128 ones perform exactly these IEEE-754 `f32` operations in this order, with no fused
//! multiply-add, so their results are bit-identical (NaN payloads aside).
//!
//! **Quantized weights** against [`QuantizedActivations`](super::QuantizedActivations)
//! (32-element activation blocks with a scale `d_x`, quants `x[j]` in `−127..=127`,
//! `xsum = Σ_j x[j]`, and for `q5_1` the `Q8_1` block sum `s_x`; each dtype reads the scheme the
//! `quant` module docs give it, "Activation quantization"). `b = 0, 1, …, n_blocks − 1` runs over the row's activation blocks
//! (`n_blocks = cols / 32`). For the 32-element formats `b` is also the weight block; for the
//! k-quants activation block `b` is sub-block `s = b % 8` (`q4_K`, `q5_K`) or sub-blocks
//! `2s, 2s + 1` (`q6_K`) of super-block `b / 8`, and `d`, `dmin` are that super-block's.
//!
//! 1. Exact integer sums (`i32`), with the weight quants `q[j]` of the block's 32 elements:
//!    * `q5_0`: `isum = Σ_j (q[j] − 16) · x[j]`;
//!    * `q5_1`: `isum = Σ_j q[j] · x[j]`;
//!    * `q4_K`, `q5_K`: `isum = sc_s · Σ_j q[j] · x[j]` and `msum = m_s · xsum`;
//!    * `q6_K`: `isum = scales[2s] · Σ_{j<16} (q[j] − 32) · x[j]
//!      + scales[2s+1] · Σ_{j≥16} (q[j] − 32) · x[j]`.
//! 2. The block's term:
//!    * `q5_0`, `q6_K`: `term = (d · d_x) · f32(isum)`;
//!    * `q5_1`: `term = (d · d_x) · f32(isum) + m · s_x`;
//!    * `q4_K`, `q5_K`: `term = (d · d_x) · f32(isum) − (dmin · d_x) · f32(msum)`.
//! 3. Four accumulators starting at `+0.0`: `acc[b % 4] += term` for `b = 0, 1, 2, …`;
//! 4. result `(acc[0] + acc[1]) + (acc[2] + acc[3])`.
//!
//! Every `f32(i)` above is exact because each integer is below `2^24 = 16 777 216` in magnitude
//! ([`ISUM_BOUNDS`], checked at compile time): `q5_0` `32·16·127 = 65 024`; `q5_1`
//! `32·31·127 = 125 984`; `q4_K` `63·32·15·127 = 3 840 480`, `msum` `63·32·127 = 256 032`;
//! `q5_K` `63·32·31·127 = 7 936 992`; `q6_K` `2·128·16·32·127 = 16 646 144` (the tightest; an
//! `i8` scale is at most 128 in magnitude and `|q − 32| ≤ 32`).
//!
//! **`f16` weights** against `f32` activations, `cols` elements: the `f32` order with each weight
//! widened exactly first — sixteen accumulators `acc[i % 16] += f32(w[i]) · x[i]` (product
//! rounded, then sum), then `v[l] = (acc[l] + acc[l + 4]) + (acc[l + 8] + acc[l + 12])`, result
//! `(v[0] + v[1]) + (v[2] + v[3])`; `cols = 0` gives `+0.0`.
//!
//! The k-quant order adds one float term per 32 activations, the same count as `q8_0`, so decode
//! costs the same float work per weight; the sub-scales enter the integer part. The SIMD kernels
//! multiply them into the widened `i16` weights (`sc · q` fits: `63 · 31`, `128 · 32`), which gives
//! the same integer.

use crate::quant::{f16_to_f32, DType};

mod dequant;
pub mod layout;
pub mod quantize;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[allow(unsafe_code)]
pub mod simd128;

#[cfg(test)]
mod testdata;
#[cfg(test)]
mod tests;

pub use dequant::{dequantize_row_f16, dequantize_row_q4_k, dequantize_row_q5_0, dequantize_row_q5_1, dequantize_row_q5_k, dequantize_row_q6_k, scale_min_k4};
pub use quantize::{quantize_row_q4_k, quantize_row_q5_k, quantize_row_q6_k};

/// Elements per k-quant super-block (ggml `QK_K`).
pub const QK_K: usize = 256;
/// 32-element sub-blocks (and activation blocks) per k-quant super-block.
pub const K_SUBS: usize = QK_K / super::QK;

/// Largest magnitude each exact integer of the dot-product order can reach, per dtype (module
/// docs): `(name, bound)`. All below `2^24`, so converting them to `f32` is exact.
pub const ISUM_BOUNDS: [(&str, i64); 6] = [
    ("q5_0", 32 * 16 * 127),
    ("q5_1", 32 * 31 * 127),
    ("q4_k", 63 * 32 * 15 * 127),
    ("q4_k msum", 63 * 32 * 127),
    ("q5_k", 63 * 32 * 31 * 127),
    ("q6_k", 2 * 128 * 16 * 32 * 127),
];

const _: () = {
    let mut i = 0;
    while i < ISUM_BOUNDS.len() {
        assert!(ISUM_BOUNDS[i].1 < 1 << 24);
        i += 1;
    }
};
// The kernels walk super-blocks in groups of four activation blocks; a group never straddles two
// super-blocks.
const _: () = assert!(K_SUBS == 8 && K_SUBS.is_multiple_of(4));

/// Little-endian `f16` at `offset`, widened.
#[inline]
pub(crate) fn f16_at(block: &[u8], offset: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[offset], block[offset + 1]]))
}

/// The dtypes this module implements, in package-code order.
pub const DTYPES: [DType; 6] = [DType::F16, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K];

/// Offsets of `dtype`'s `f16` fields (scales, minimums; the value of an `f16` "block").
#[cfg(test)]
pub(crate) fn f16_offsets(dtype: DType) -> impl Iterator<Item = usize> {
    use crate::quant::FieldKind;
    dtype.layout().fields.iter().filter(|f| f.kind == FieldKind::F16).map(|f| f.offset)
}
