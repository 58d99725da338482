//! Half-precision conversion and the per-block quantizers / dequantizers (plain safe Rust).
//!
//! The quantizers reproduce ggml's reference quantizers (`quantize_row_q8_0_ref`,
//! `quantize_row_q4_0_ref`, `quantize_row_q4_1_ref` in `ggml-quants.c`) bit for bit, including the
//! choice to compute `1/d` from the `f32` scale before it is rounded to `f16`.

use super::layout::{self, BlockLayout, FieldKind, MAX_FINITE_FIELDS};
use super::DType;

// Field offsets and block sizes, named from the layout table.
const Q8_0: &BlockLayout = &layout::Q8_0;
const Q8_0_D: usize = Q8_0.offset_of("d");
const Q8_0_QS: usize = Q8_0.offset_of("qs");
const Q4_0: &BlockLayout = &layout::Q4_0;
const Q4_0_D: usize = Q4_0.offset_of("d");
const Q4_0_QS: usize = Q4_0.offset_of("qs");
const Q4_1: &BlockLayout = &layout::Q4_1;
const Q4_1_D: usize = Q4_1.offset_of("d");
const Q4_1_M: usize = Q4_1.offset_of("m");
const Q4_1_QS: usize = Q4_1.offset_of("qs");
const Q5_0: &BlockLayout = &layout::Q5_0;
const Q5_0_D: usize = Q5_0.offset_of("d");
const Q5_0_QH: usize = Q5_0.offset_of("qh");
const Q5_0_QS: usize = Q5_0.offset_of("qs");
const Q5_1: &BlockLayout = &layout::Q5_1;
const Q5_1_D: usize = Q5_1.offset_of("d");
const Q5_1_M: usize = Q5_1.offset_of("m");
const Q5_1_QH: usize = Q5_1.offset_of("qh");
const Q5_1_QS: usize = Q5_1.offset_of("qs");

/// Widens IEEE-754 binary16 bits to `f32`, exactly (every `f16` is an `f32`): subnormals become
/// normal `f32`s, infinities stay infinite, NaNs stay NaN with the payload shifted into the top of
/// the `f32` mantissa.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    let bits = bits as u32;
    let sign = (bits & 0x8000) << 16;
    let exp_mant = bits & 0x7fff;
    let magnitude = if exp_mant >= 0x7c00 {
        // Infinity or NaN: all-ones exponent, mantissa carried over.
        0x7f80_0000 | ((exp_mant & 0x03ff) << 13)
    } else if exp_mant >= 0x0400 {
        // Normal: rebias the exponent from 15 to 127 (add 112 << 23); the mantissa moves up 13 bits.
        (exp_mant << 13) + (112 << 23)
    } else {
        // Zero or subnormal: value = mantissa · 2^-24; both steps are exact and never touch an f32
        // subnormal (which is slow on some hosts).
        ((exp_mant as f32) * (1.0 / 16_777_216.0)).to_bits()
    };
    f32::from_bits(sign | magnitude)
}

/// Narrows an `f32` to IEEE-754 binary16 bits with round-to-nearest, ties-to-even — the same result
/// as numpy's `astype(float16)` and ggml's `GGML_FP32_TO_FP16` for every non-NaN input:
/// magnitudes at or above 65520 become infinity, magnitudes at or below 2^-25 become (signed) zero,
/// and results in between may be subnormal. NaN becomes the quiet NaN `0x7e00` with the input's sign
/// (ggml's choice).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    if abs > 0x7f80_0000 {
        return sign | 0x7e00;
    }
    if abs >= 0x477f_f000 {
        // ≥ 65520 = halfway between 65504 (largest f16) and 65536; the tie rounds to even, i.e. up.
        return sign | 0x7c00;
    }
    if abs >= 0x3880_0000 {
        // Normal f16 (≥ 2^-14): rebias the exponent, keep the top 10 mantissa bits, round on the
        // 13 dropped ones. A mantissa carry correctly bumps the exponent.
        let truncated = (abs - (112 << 23)) >> 13;
        let rest = abs & 0x1fff;
        let round_up = rest > 0x1000 || (rest == 0x1000 && truncated & 1 == 1);
        return sign | (truncated + round_up as u32) as u16;
    }
    if abs <= 0x3300_0000 {
        // ≤ 2^-25, half the smallest subnormal: the tie at 2^-25 rounds to even (zero).
        return sign;
    }
    // Subnormal f16: value / 2^-24 = mantissa_with_implicit_bit · 2^(exp - 126), exp in 102..=112.
    let exp = abs >> 23;
    let mantissa = (abs & 0x007f_ffff) | 0x0080_0000;
    let shift = 126 - exp; // 14 ..= 24
    let truncated = mantissa >> shift;
    let rest = mantissa & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    let round_up = rest > half || (rest == half && truncated & 1 == 1);
    sign | (truncated + round_up as u32) as u16
}

#[inline]
fn read_f16(bytes: &[u8], offset: usize) -> u16 {
    u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
}

#[inline]
fn write_f16(bytes: &mut [u8], offset: usize, x: f32) {
    bytes[offset..offset + 2].copy_from_slice(&f32_to_f16(x).to_le_bytes());
}

/// ggml `quantize_row_q8_0_ref`: per 32-block, `amax = max |x|`, `d = amax / 127`,
/// `id = d ≠ 0 ? 1/d : 0` (from the `f32` `d`), `qs[j] = roundf(x[j] · id)` (round half away from
/// zero; the float→`i8` conversion saturates where C's is undefined), and `d` stored as
/// `f32_to_f16(d)`.
///
/// Precondition: `src.len()` a multiple of 32 and `dst.len() == src.len() / 32 · 34`; only whole
/// blocks present in both are written.
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [u8]) {
    debug_assert!(DType::Q8_0.row_bytes(src.len()) == Some(dst.len()));
    for (x, block) in src.chunks_exact(Q8_0.elements).zip(dst.chunks_exact_mut(Q8_0.bytes)) {
        let mut amax = 0.0f32;
        for &v in x {
            let a = v.abs();
            amax = if amax > a { amax } else { a }; // C `MAX(amax, fabsf(v))`
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(block, Q8_0_D, d);
        for (q, &v) in block[Q8_0_QS..].iter_mut().zip(x) {
            *q = (libm::roundf(v * id) as i8) as u8;
        }
    }
}

/// ggml `quantize_row_q4_0_ref`: per 32-block, `max` = the element of largest magnitude (first one
/// on ties, sign kept), `d = max / −8`, `id = d ≠ 0 ? 1/d : 0`, quant
/// `q = min(15, trunc(x · id + 8.5))` (truncation toward zero, clamped to `0..=15` where C is
/// undefined), elements `j` and `j + 16` packed as low and high nibble of `qs[j]`; `d` stored as
/// `f32_to_f16(d)`.
///
/// Precondition: `src.len()` a multiple of 32 and `dst.len() == src.len() / 32 · 18`.
pub fn quantize_row_q4_0(src: &[f32], dst: &mut [u8]) {
    debug_assert!(DType::Q4_0.row_bytes(src.len()) == Some(dst.len()));
    let half = Q4_0.elements / 2;
    for (x, block) in src.chunks_exact(Q4_0.elements).zip(dst.chunks_exact_mut(Q4_0.bytes)) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(block, Q4_0_D, d);
        let nibble = |v: f32| ((v * id + 8.5) as i8).clamp(0, 15) as u8;
        for j in 0..half {
            block[Q4_0_QS + j] = nibble(x[j]) | (nibble(x[j + half]) << 4);
        }
    }
}

/// ggml `quantize_row_q4_1_ref`: per 32-block, `min`/`max` over the block (starting from
/// `±f32::MAX`), `d = (max − min) / 15`, `id = d ≠ 0 ? 1/d : 0`, quant
/// `q = min(15, trunc((x − min) · id + 0.5))` (clamped to `0..=15` where C is undefined), nibbles
/// packed as for `q4_0`; `d` and `m = min` stored as `f32_to_f16`.
///
/// Precondition: `src.len()` a multiple of 32 and `dst.len() == src.len() / 32 · 20`.
pub fn quantize_row_q4_1(src: &[f32], dst: &mut [u8]) {
    debug_assert!(DType::Q4_1.row_bytes(src.len()) == Some(dst.len()));
    let half = Q4_1.elements / 2;
    for (x, block) in src.chunks_exact(Q4_1.elements).zip(dst.chunks_exact_mut(Q4_1.bytes)) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(block, Q4_1_D, d);
        write_f16(block, Q4_1_M, min);
        let nibble = |v: f32| (((v - min) * id + 0.5) as i8).clamp(0, 15) as u8;
        for j in 0..half {
            block[Q4_1_QS + j] = nibble(x[j]) | (nibble(x[j + half]) << 4);
        }
    }
}

/// Stores the 5-bit quants `q[j]` (`j < 32`) of a `q5_0` / `q5_1` block: low nibbles of elements
/// `j` and `j + 16` in `qs[j]`, bit 4 of element `j` in bit `j` of the little-endian `u32` `qh`.
fn pack_q5(q: &[u8; 32], block: &mut [u8], qh_at: usize, qs_at: usize) {
    let mut qh = 0u32;
    for j in 0..16 {
        block[qs_at + j] = (q[j] & 15) | ((q[j + 16] & 15) << 4);
        qh |= u32::from(q[j] >> 4) << j;
        qh |= u32::from(q[j + 16] >> 4) << (j + 16);
    }
    block[qh_at..qh_at + 4].copy_from_slice(&qh.to_le_bytes());
}

/// ggml `quantize_row_q5_0_ref`: as `q4_0` with 5-bit quants — `max` the element of largest
/// magnitude (first on ties), `d = max / −16`, `id = d ≠ 0 ? 1/d : 0`,
/// `q = min(31, trunc(x · id + 16.5))` (clamped to `0..=31` where C is undefined), packed by
/// [`pack_q5`]; `d` stored as `f32_to_f16(d)`.
///
/// Precondition: `src.len()` a multiple of 32 and `dst.len() == src.len() / 32 · 22`.
pub fn quantize_row_q5_0(src: &[f32], dst: &mut [u8]) {
    debug_assert!(DType::Q5_0.row_bytes(src.len()) == Some(dst.len()));
    for (x, block) in src.chunks_exact(Q5_0.elements).zip(dst.chunks_exact_mut(Q5_0.bytes)) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(block, Q5_0_D, d);
        let q: [u8; 32] = core::array::from_fn(|j| ((x[j] * id + 16.5) as i8).clamp(0, 31) as u8);
        pack_q5(&q, block, Q5_0_QH, Q5_0_QS);
    }
}

/// ggml `quantize_row_q5_1_ref`: as `q4_1` with 5-bit quants — `min`/`max` over the block,
/// `d = (max − min) / 31`, `id = d ≠ 0 ? 1/d : 0`, `q = trunc((x − min) · id + 0.5)` (clamped to
/// `0..=31` where C's `uint8_t` conversion is undefined), packed by [`pack_q5`]; `d` and `m = min`
/// stored as `f32_to_f16`.
///
/// Precondition: `src.len()` a multiple of 32 and `dst.len() == src.len() / 32 · 24`.
pub fn quantize_row_q5_1(src: &[f32], dst: &mut [u8]) {
    debug_assert!(DType::Q5_1.row_bytes(src.len()) == Some(dst.len()));
    for (x, block) in src.chunks_exact(Q5_1.elements).zip(dst.chunks_exact_mut(Q5_1.bytes)) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in x {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        write_f16(block, Q5_1_D, d);
        write_f16(block, Q5_1_M, min);
        let q: [u8; 32] = core::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i8).clamp(0, 31) as u8);
        pack_q5(&q, block, Q5_1_QH, Q5_1_QS);
    }
}

/// Quantizes one row of `src.len()` elements into `dst` (`dtype.row_bytes(src.len())` bytes);
/// `f32` writes the values little-endian. Preconditions as for the per-dtype functions.
pub fn quantize_row(dtype: DType, src: &[f32], dst: &mut [u8]) {
    match dtype {
        DType::F32 => {
            debug_assert!(dst.len() == src.len() * 4);
            for (out, v) in dst.chunks_exact_mut(4).zip(src) {
                out.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::Q8_0 => quantize_row_q8_0(src, dst),
        DType::Q4_0 => quantize_row_q4_0(src, dst),
        DType::Q4_1 => quantize_row_q4_1(src, dst),
        DType::F16 => {
            debug_assert!(dst.len() == src.len() * 2);
            for (out, &v) in dst.chunks_exact_mut(2).zip(src) {
                out.copy_from_slice(&f32_to_f16(v).to_le_bytes());
            }
        }
        DType::Q5_0 => quantize_row_q5_0(src, dst),
        DType::Q5_1 => quantize_row_q5_1(src, dst),
        DType::Q4_K => super::kquant::quantize_row_q4_k(src, dst),
        DType::Q5_K => super::kquant::quantize_row_q5_k(src, dst),
        DType::Q6_K => super::kquant::quantize_row_q6_k(src, dst),
    }
}

/// Expands `src` (whole blocks of `dtype`) into `dst`, following the element formulas of the module
/// docs in `f32` (`q4_1`: `(q · d) + m`, two roundings as in ggml's `dequantize_row_q4_1`).
///
/// Precondition: `src.len() == dtype.row_bytes(dst.len())`; only whole blocks present in both are
/// written.
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    debug_assert!(dtype.row_bytes(dst.len()) == Some(src.len()));
    match dtype {
        DType::F32 => {
            for (v, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::Q8_0 => {
            for (y, block) in dst.chunks_exact_mut(Q8_0.elements).zip(src.chunks_exact(Q8_0.bytes)) {
                let d = f16_to_f32(read_f16(block, Q8_0_D));
                for (v, &q) in y.iter_mut().zip(&block[Q8_0_QS..]) {
                    *v = (q as i8) as f32 * d;
                }
            }
        }
        DType::Q4_0 => {
            for (y, block) in dst.chunks_exact_mut(Q4_0.elements).zip(src.chunks_exact(Q4_0.bytes)) {
                let d = f16_to_f32(read_f16(block, Q4_0_D));
                let (lo, hi) = y.split_at_mut(Q4_0.elements / 2);
                for ((a, b), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&block[Q4_0_QS..]) {
                    *a = ((q & 15) as i32 - 8) as f32 * d;
                    *b = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        DType::Q4_1 => {
            for (y, block) in dst.chunks_exact_mut(Q4_1.elements).zip(src.chunks_exact(Q4_1.bytes)) {
                let d = f16_to_f32(read_f16(block, Q4_1_D));
                let m = f16_to_f32(read_f16(block, Q4_1_M));
                let (lo, hi) = y.split_at_mut(Q4_1.elements / 2);
                for ((a, b), &q) in lo.iter_mut().zip(hi.iter_mut()).zip(&block[Q4_1_QS..]) {
                    *a = (q & 15) as f32 * d + m;
                    *b = (q >> 4) as f32 * d + m;
                }
            }
        }
        DType::F16 => super::kquant::dequantize_row_f16(src, dst),
        DType::Q5_0 => super::kquant::dequantize_row_q5_0(src, dst),
        DType::Q5_1 => super::kquant::dequantize_row_q5_1(src, dst),
        DType::Q4_K => super::kquant::dequantize_row_q4_k(src, dst),
        DType::Q5_K => super::kquant::dequantize_row_q5_k(src, dst),
        DType::Q6_K => super::kquant::dequantize_row_q6_k(src, dst),
    }
}

/// For the package parser: the first block index (quantized dtypes) with a field the layout marks
/// as must-be-finite ([`FieldKind::must_be_finite`]: the `f16` scales `d`, and `m` for `q4_1`)
/// infinite or NaN, or the first element index (`f32`) whose value is. `None` when everything is
/// finite. A trailing partial block is not examined.
pub fn first_non_finite(dtype: DType, bytes: &[u8]) -> Option<usize> {
    let layout = dtype.layout();
    // Gathered once so the per-block loop is short; no layout has more (asserted in `layout`).
    let mut checks = [(0usize, FieldKind::F32); MAX_FINITE_FIELDS];
    let mut n_checks = 0;
    for f in layout.fields.iter().filter(|f| f.kind.must_be_finite()) {
        if let Some(slot) = checks.get_mut(n_checks) {
            *slot = (f.offset, f.kind);
            n_checks += 1;
        }
    }
    let checks = &checks[..n_checks];
    let finite = |block: &[u8], &(offset, kind): &(usize, FieldKind)| match kind {
        FieldKind::F16 => read_f16(block, offset) & 0x7c00 != 0x7c00,
        FieldKind::F32 => {
            let b = &block[offset..offset + 4];
            f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite()
        }
        FieldKind::I8Quants | FieldKind::U4Quants | FieldKind::U4QuantsK | FieldKind::HighQuantBits | FieldKind::PackedScales6 | FieldKind::I8Scales => true,
    };
    bytes.chunks_exact(layout.bytes).position(|block| !checks.iter().all(|c| finite(block, c)))
}
