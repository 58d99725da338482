//! Scalar quant extraction, the dequantizers (ggml's `dequantize_row_*` arithmetic in `f32`) and
//! the finiteness check for the package parser. Plain safe Rust.

use super::layout::{q4_k, q5_0, q5_1, q5_k, q6_k, K_SCALE_BYTES};
use super::{f16_at, K_SUBS, QK_K};
use crate::quant::DType;
use crate::quant::QK;

/// Sub-block `s`'s 6-bit scale and 6-bit minimum from the 12 packed bytes of a `q4_K` / `q5_K`
/// block (ggml `get_scale_min_k4`): the first four pairs sit in the low six bits of bytes `0..4`
/// and `4..8`; the last four keep their low nibbles in bytes `8..12` and their top two bits in the
/// spare top bits of bytes `0..8`.
///
/// Precondition: `s < 8` (larger `s` reads nonsense but stays in bounds).
#[inline]
pub fn scale_min_k4(scales: &[u8; K_SCALE_BYTES], s: usize) -> (u8, u8) {
    let s = s % K_SUBS;
    if s < 4 {
        (scales[s] & 63, scales[s + 4] & 63)
    } else {
        ((scales[s + 4] & 15) | ((scales[s - 4] >> 6) << 4), (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4))
    }
}

/// The 12 packed scale bytes of a `q4_K` / `q5_K` block whose `scales` field starts at `at`.
#[inline]
pub(crate) fn k_scales(block: &[u8], at: usize) -> [u8; K_SCALE_BYTES] {
    core::array::from_fn(|i| block[at + i])
}

/// The 5-bit quant (`0..=31`) of element `e < 32` of a `q5_0` / `q5_1` block.
#[inline]
pub(crate) fn q5_quant(qh: u32, qs: &[u8], e: usize) -> i32 {
    let low = if e < QK / 2 { qs[e] & 15 } else { qs[e - QK / 2] >> 4 };
    low as i32 | (((qh >> e) & 1) as i32) << 4
}

/// The `qh` field of a `q5_0` / `q5_1` block as one little-endian `u32`.
#[inline]
pub(crate) fn q5_qh(block: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
}

/// The 4-bit quant of element `l < 32` of sub-block `s < 8` of a `q4_K` block.
#[inline]
pub(crate) fn q4_k_quant(block: &[u8], s: usize, l: usize) -> i32 {
    ((block[q4_k::QS + 32 * (s / 2) + l] >> (4 * (s % 2))) & 15) as i32
}

/// The 5-bit quant of element `l < 32` of sub-block `s < 8` of a `q5_K` block.
#[inline]
pub(crate) fn q5_k_quant(block: &[u8], s: usize, l: usize) -> i32 {
    let low = (block[q5_k::QS + 32 * (s / 2) + l] >> (4 * (s % 2))) & 15;
    let high = (block[q5_k::QH + l] >> s) & 1;
    (low | high << 4) as i32
}

/// The 6-bit quant (`0..=63`, before the `−32` offset) of element `e < 256` of a `q6_K` block.
#[inline]
pub(crate) fn q6_k_quant(block: &[u8], e: usize) -> i32 {
    let (h, r) = (e / 128, e % 128);
    let (k, l) = (r / 32, r % 32);
    let low = (block[q6_k::QL + 64 * h + l + 32 * (k & 1)] >> (4 * (k >> 1))) & 15;
    let high = (block[q6_k::QH + 32 * h + l] >> (2 * k)) & 3;
    (low | high << 4) as i32
}

/// Pairs each whole block of `src` with its output elements in `dst` (only blocks present in
/// both).
fn blocks<'a>(src: &'a [u8], dst: &'a mut [f32], layout: &DType) -> impl Iterator<Item = (&'a [u8], &'a mut [f32])> {
    src.chunks_exact(layout.block_bytes()).zip(dst.chunks_exact_mut(layout.block_elems()))
}

/// `f16` row → `f32`, exactly.
///
/// Precondition: `src.len() == 2 · dst.len()`; only elements present in both are written (the same
/// holds for every dequantizer here, per whole block).
pub fn dequantize_row_f16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks(src, dst, &DType::F16) {
        y[0] = f16_at(b, 0);
    }
}

/// `q5_0` row → `f32`: `y = d · f32(q − 16)`.
pub fn dequantize_row_q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks(src, dst, &DType::Q5_0) {
        let d = f16_at(b, q5_0::D);
        let qh = q5_qh(b, q5_0::QH);
        for (e, v) in y.iter_mut().enumerate() {
            *v = d * (q5_quant(qh, &b[q5_0::QS..], e) - 16) as f32;
        }
    }
}

/// `q5_1` row → `f32`: `y = d · f32(q) + m` (product rounded, then the sum).
pub fn dequantize_row_q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks(src, dst, &DType::Q5_1) {
        let (d, m) = (f16_at(b, q5_1::D), f16_at(b, q5_1::M));
        let qh = q5_qh(b, q5_1::QH);
        for (e, v) in y.iter_mut().enumerate() {
            *v = d * q5_quant(qh, &b[q5_1::QS..], e) as f32 + m;
        }
    }
}

/// `q4_K` / `q5_K` super-block → `f32`: per sub-block `(d · sc) · q − dmin · m`.
fn dequantize_k45(b: &[u8], y: &mut [f32], scales_at: usize, quant: fn(&[u8], usize, usize) -> i32) {
    // `q4_K` and `q5_K` share the offsets of `d` and `dmin` (asserted below).
    let (d, dmin) = (f16_at(b, q4_k::D), f16_at(b, q4_k::DMIN));
    let scales = k_scales(b, scales_at);
    for (s, ys) in y.chunks_exact_mut(QK).enumerate() {
        let (sc, m) = scale_min_k4(&scales, s);
        let (ds, dm) = (d * sc as f32, dmin * m as f32);
        for (l, v) in ys.iter_mut().enumerate() {
            *v = ds * quant(b, s, l) as f32 - dm;
        }
    }
}

/// `q4_K` row → `f32`: `y = (d · f32(sc_s)) · f32(q) − dmin · f32(m_s)`.
pub fn dequantize_row_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks(src, dst, &DType::Q4_K) {
        dequantize_k45(b, y, q4_k::SCALES, q4_k_quant);
    }
}

/// `q5_K` row → `f32`: as `q4_K` with 5-bit quants.
pub fn dequantize_row_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks(src, dst, &DType::Q5_K) {
        dequantize_k45(b, y, q5_k::SCALES, q5_k_quant);
    }
}

/// `q6_K` row → `f32`: `y = (d · f32(scales[e / 16])) · f32(q − 32)`.
pub fn dequantize_row_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in blocks(src, dst, &DType::Q6_K) {
        let d = f16_at(b, q6_k::D);
        for (e, v) in y.iter_mut().enumerate() {
            let sc = b[q6_k::SCALES + e / 16] as i8;
            *v = (d * sc as f32) * (q6_k_quant(b, e) - 32) as f32;
        }
    }
}

const _: () = assert!(QK_K == K_SUBS * QK);
const _: () = assert!(q4_k::D == q5_k::D && q4_k::DMIN == q5_k::DMIN);
