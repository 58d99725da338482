//! Scalar conversions of the tensor encodings we import: f16, bf16 and ggml's `block_q8_0`,
//! `block_q4_0`, `block_q4_1`, `block_q5_0`, `block_q5_1`, `block_q4_K`, `block_q5_K`,
//! `block_q6_K` (ggml-common.h; the same layouts as SLM1's dtypes of those names, see
//! `abi/FORMAT.md`). The k-quant formulas follow the loops of ggml's `dequantize_row_q{4,5,6}_K`
//! (64 or 128 elements per step), not the runtime's per-element formulas. Block sizes and field offsets come from the runtime's layout table
//! (`tinyrustlm::quant::layout`); the element formulas and the f16 conversion here are written
//! independently of the runtime's, so importing does not trust the code it feeds.

use anyhow::{anyhow, bail, ensure, Result};
use tinyrustlm::quant::{layout, BlockLayout, DType, FieldKind};

use super::gguf::GgmlType;

const Q8_0: &BlockLayout = &layout::Q8_0;
const Q4_0: &BlockLayout = &layout::Q4_0;
const Q4_1: &BlockLayout = &layout::Q4_1;

/// IEEE-754 binary16 → binary32, exact (every f16 is representable as f32).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    let out = match (exp, mant) {
        (0, 0) => sign,
        (0, _) => {
            // Subnormal: value = mant × 2^-24; normalise it for f32.
            let shift = mant.leading_zeros() - 21; // bring the top set bit to bit 10
            let mant = (mant << shift) & 0x3ff;
            let exp = 127 - 15 + 1 - shift;
            sign | (exp << 23) | (mant << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, _) => sign | 0x7fc0_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(out)
}

/// bfloat16 is the top half of an f32.
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Decodes `bytes` of `dtype` (whole blocks; f32 little-endian for `F32`) to f32 values.
pub fn dequantize(dtype: DType, bytes: &[u8]) -> Result<Vec<f32>> {
    let layout = dtype.layout();
    let unit = layout.bytes;
    ensure!(bytes.len().is_multiple_of(unit), "{dtype:?} data is {} bytes, not a multiple of its {unit}-byte unit", bytes.len());
    let n_units = bytes.len() / unit;
    let mut out = Vec::with_capacity(n_units * layout.elements);
    match dtype {
        DType::F32 => out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        DType::Q8_0 => {
            for block in bytes.chunks_exact(Q8_0.bytes) {
                let d = f16_to_f32(le_u16(block, Q8_0.offset_of("d")));
                out.extend(block[Q8_0.offset_of("qs")..].iter().map(|&q| d * f32::from(q as i8)));
            }
        }
        DType::Q4_0 => {
            for block in bytes.chunks_exact(Q4_0.bytes) {
                let d = f16_to_f32(le_u16(block, Q4_0.offset_of("d")));
                let qs = &block[Q4_0.offset_of("qs")..];
                // Low nibbles are elements 0..16, high nibbles 16..32.
                out.extend(qs.iter().map(|&q| d * (f32::from(q & 15) - 8.0)));
                out.extend(qs.iter().map(|&q| d * (f32::from(q >> 4) - 8.0)));
            }
        }
        DType::Q4_1 => {
            for block in bytes.chunks_exact(Q4_1.bytes) {
                let d = f16_to_f32(le_u16(block, Q4_1.offset_of("d")));
                let m = f16_to_f32(le_u16(block, Q4_1.offset_of("m")));
                let qs = &block[Q4_1.offset_of("qs")..];
                out.extend(qs.iter().map(|&q| d * f32::from(q & 15) + m));
                out.extend(qs.iter().map(|&q| d * f32::from(q >> 4) + m));
            }
        }
        DType::F16 => out.extend(bytes.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))),
        DType::Q5_0 | DType::Q5_1 => {
            let l = dtype.layout();
            let has_min = dtype == DType::Q5_1;
            for block in bytes.chunks_exact(l.bytes) {
                let d = f16_to_f32(le_u16(block, l.offset_of("d")));
                let m = if has_min { f16_to_f32(le_u16(block, l.offset_of("m"))) } else { 0.0 };
                let qh_at = l.offset_of("qh");
                let qh = u32::from_le_bytes([block[qh_at], block[qh_at + 1], block[qh_at + 2], block[qh_at + 3]]);
                let qs = &block[l.offset_of("qs")..];
                let mut y = [0.0f32; 32];
                for j in 0..16 {
                    // ggml dequantize_row_q5_*: bit j of qh tops element j, bit j + 16 element j + 16.
                    let x0 = u32::from(qs[j] & 0x0f) | (((qh >> j) << 4) & 0x10);
                    let x1 = u32::from(qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
                    if has_min {
                        y[j] = x0 as f32 * d + m;
                        y[j + 16] = x1 as f32 * d + m;
                    } else {
                        y[j] = (x0 as i32 - 16) as f32 * d;
                        y[j + 16] = (x1 as i32 - 16) as f32 * d;
                    }
                }
                out.extend_from_slice(&y);
            }
        }
        DType::Q4_K | DType::Q5_K => {
            let l = dtype.layout();
            let five = dtype == DType::Q5_K;
            for block in bytes.chunks_exact(l.bytes) {
                let d = f16_to_f32(le_u16(block, l.offset_of("d")));
                let dmin = f16_to_f32(le_u16(block, l.offset_of("dmin")));
                let sc = &block[l.offset_of("scales")..l.offset_of("scales") + 12];
                let qs = &block[l.offset_of("qs")..];
                let qh: &[u8] = if five { &block[l.offset_of("qh")..l.offset_of("qh") + 32] } else { &[] };
                // ggml get_scale_min_k4.
                let scale_min = |j: usize| -> (u8, u8) {
                    if j < 4 {
                        (sc[j] & 63, sc[j + 4] & 63)
                    } else {
                        ((sc[j + 4] & 0xf) | ((sc[j - 4] >> 6) << 4), (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4))
                    }
                };
                // 64 elements per step: low nibbles with sub-block 2i, high with 2i + 1.
                for i in 0..4 {
                    let q = &qs[32 * i..32 * i + 32];
                    for (half, shift) in [(0usize, 0u8), (1, 4)] {
                        let (s, m) = scale_min(2 * i + half);
                        let (d1, m1) = (d * f32::from(s), dmin * f32::from(m));
                        for (lane, &byte) in q.iter().enumerate() {
                            let mut v = (byte >> shift) & 0xf;
                            if five && qh[lane] & (1 << (2 * i + half)) != 0 {
                                v += 16;
                            }
                            out.push(d1 * f32::from(v) - m1);
                        }
                    }
                }
            }
        }
        DType::Q6_K => {
            let l = dtype.layout();
            for block in bytes.chunks_exact(l.bytes) {
                let d = f16_to_f32(le_u16(block, l.offset_of("d")));
                let (ql_at, qh_at, sc_at) = (l.offset_of("ql"), l.offset_of("qh"), l.offset_of("scales"));
                let mut y = [0.0f32; 256];
                // ggml dequantize_row_q6_K: 128 elements per step, four quarters of 32.
                for n in 0..2 {
                    let ql = &block[ql_at + 64 * n..];
                    let qh = &block[qh_at + 32 * n..];
                    let sc = |k: usize| f32::from(block[sc_at + 8 * n + k] as i8);
                    for lane in 0..32 {
                        let is = lane / 16;
                        let q1 = i32::from((ql[lane] & 0xf) | ((qh[lane] & 3) << 4)) - 32;
                        let q2 = i32::from((ql[lane + 32] & 0xf) | (((qh[lane] >> 2) & 3) << 4)) - 32;
                        let q3 = i32::from((ql[lane] >> 4) | (((qh[lane] >> 4) & 3) << 4)) - 32;
                        let q4 = i32::from((ql[lane + 32] >> 4) | (((qh[lane] >> 6) & 3) << 4)) - 32;
                        y[128 * n + lane] = d * sc(is) * q1 as f32;
                        y[128 * n + lane + 32] = d * sc(is + 2) * q2 as f32;
                        y[128 * n + lane + 64] = d * sc(is + 4) * q3 as f32;
                        y[128 * n + lane + 96] = d * sc(is + 6) * q4 as f32;
                    }
                }
                out.extend_from_slice(&y);
            }
        }
    }
    Ok(out)
}

/// The SLM1 dtype a ggml block type is kept as bit for bit, if any.
pub fn encoded_dtype(ty: GgmlType) -> Option<DType> {
    // f32 data stays values (its finiteness is checked per element); every other SLM1 dtype is
    // ggml's block format of the same name, kept as shipped.
    DType::from_ggml_type(ty.code()).filter(|&d| d != DType::F32)
}

/// Index of the first block whose scale (or minimum) is not finite (FORMAT.md: scales are finite);
/// the scales are the layout's `f16` fields. `None` for f32 (whose values are checked elsewhere).
pub fn first_nonfinite_scale(dtype: DType, bytes: &[u8]) -> Option<usize> {
    if dtype == DType::F32 {
        return None;
    }
    let layout = dtype.layout();
    let scales: Vec<usize> = layout.fields.iter().filter(|f| f.kind == FieldKind::F16).map(|f| f.offset).collect();
    bytes.chunks_exact(layout.bytes).position(|b| scales.iter().any(|&at| !f16_to_f32(le_u16(b, at)).is_finite()))
}

/// Decodes a GGUF tensor of `ty` to f32 values (F32, F16, BF16, Q8_0, Q4_0, Q4_1).
pub fn dequantize_ggml(ty: GgmlType, bytes: &[u8]) -> Result<Vec<f32>> {
    match ty {
        GgmlType::F32 => dequantize(DType::F32, bytes),
        GgmlType::F16 | GgmlType::Bf16 => {
            ensure!(bytes.len().is_multiple_of(2), "{} data is {} bytes, not a multiple of 2", ty.name(), bytes.len());
            let conv = if ty == GgmlType::F16 { f16_to_f32 } else { bf16_to_f32 };
            Ok(bytes.chunks_exact(2).map(|c| conv(u16::from_le_bytes([c[0], c[1]]))).collect())
        }
        _ => match encoded_dtype(ty) {
            Some(dtype) => dequantize(dtype, bytes),
            None => bail!("{}", unsupported_type(ty)),
        },
    }
}

pub fn unsupported_type(ty: GgmlType) -> String {
    format!("type {} (ggml type {}) cannot be imported; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K", ty.name(), ty.code())
}

/// Position and value of the first non-finite element.
pub fn first_nonfinite(values: &[f32]) -> Option<(usize, f32)> {
    values.iter().position(|v| !v.is_finite()).map(|i| (i, values[i]))
}

pub fn check_finite(what: &str, values: &[f32]) -> Result<()> {
    match first_nonfinite(values) {
        None => Ok(()),
        Some((i, v)) => Err(anyhow!("{what}: element {i} is {v}, values must be finite")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_matches_known_values() {
        let largest_subnormal = 1023.0 * 2f32.powi(-24);
        let cases: [(u16, f32); 10] = [
            (0x0000, 0.0),
            (0x8000, -0.0),
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x7bff, 65504.0),
            (0x0400, 6.103_515_6e-5), // smallest normal
            (0x0001, 5.960_464_5e-8), // smallest subnormal
            (0x03ff, largest_subnormal),
            (0x7c00, f32::INFINITY),
        ];
        for (bits, want) in cases {
            let got = f16_to_f32(bits);
            assert_eq!(got.to_bits(), want.to_bits(), "f16 {bits:#06x}: got {got}, want {want}");
        }
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn f16_round_trips_every_finite_value_through_f32() {
        // Re-encode with the textbook rule and compare: pins subnormal normalisation.
        for bits in 0u16..=0xffff {
            let exp = (bits >> 10) & 0x1f;
            if exp == 0x1f {
                continue;
            }
            let mant = f32::from(bits & 0x3ff);
            let mag = if exp == 0 { mant * 2f32.powi(-24) } else { (1.0 + mant / 1024.0) * 2f32.powi(i32::from(exp) - 15) };
            let want = if bits & 0x8000 != 0 { -mag } else { mag };
            assert_eq!(f16_to_f32(bits).to_bits(), want.to_bits(), "f16 {bits:#06x}");
        }
    }

    #[test]
    fn bf16_is_the_high_half() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }

    #[test]
    fn quant_blocks_decode_per_format_md() {
        // d = 0.5 (f16 0x3800), m = 1.0 (0x3c00)
        let mut q8 = vec![0x00, 0x38];
        q8.extend((0..32).map(|i| (i as i8 - 16) as u8));
        let v = dequantize(DType::Q8_0, &q8).unwrap();
        assert_eq!(v.len(), 32);
        assert_eq!(v[0], -8.0);
        assert_eq!(v[31], 7.5);

        let mut q4 = vec![0x00, 0x38];
        q4.extend((0..16).map(|i| (i as u8) | ((15 - i as u8) << 4)));
        let v = dequantize(DType::Q4_0, &q4).unwrap();
        assert_eq!(v[0], 0.5 * (0.0 - 8.0));
        assert_eq!(v[15], 0.5 * (15.0 - 8.0));
        assert_eq!(v[16], 0.5 * (15.0 - 8.0));
        assert_eq!(v[31], 0.5 * (0.0 - 8.0));

        let mut q41 = vec![0x00, 0x38, 0x00, 0x3c];
        q41.extend((0..16).map(|i| (i as u8) | ((15 - i as u8) << 4)));
        let v = dequantize(DType::Q4_1, &q41).unwrap();
        assert_eq!(v[1], 0.5 * 1.0 + 1.0);
        assert_eq!(v[17], 0.5 * 14.0 + 1.0);
    }

    /// The runtime's test vectors from the `gguf` package's numpy dequantizer
    /// (`harness/scripts/gen_kquant_vectors.py`): this decoder, written separately, must give the
    /// same bits (record format in that script).
    #[test]
    fn new_dtypes_match_gguf_numpy_vectors() {
        let v: &[u8] = include_bytes!("../../../src/quant/kquant/testdata/dequant_vectors.bin");
        let u32_at = |at: usize| u32::from_le_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]);
        assert_eq!(&v[..8], b"TRLQVEC1");
        let mut at = 12;
        let mut checked = std::collections::BTreeSet::new();
        for _ in 0..u32_at(8) {
            let (ty, n_blocks) = (u32_at(at), u32_at(at + 8) as usize);
            at += 12;
            let dtype = DType::from_ggml_type(ty).unwrap();
            let l = dtype.layout();
            let blocks = &v[at..at + n_blocks * l.bytes];
            at += blocks.len();
            let n = n_blocks * l.elements;
            let want: Vec<u32> = (0..n).map(|i| u32_at(at + 4 * i)).collect();
            at += 4 * n;
            let got: Vec<u32> = dequantize(dtype, blocks).unwrap().iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, want, "{}", dtype.name());
            checked.insert(dtype.name());
        }
        assert_eq!(checked.len(), 6, "{checked:?}");
    }

    #[test]
    fn partial_blocks_are_errors() {
        for dtype in DType::ALL.into_iter().filter(|d| d.block_bytes() > 1 && !35usize.is_multiple_of(d.block_bytes())) {
            let err = dequantize(dtype, &[0u8; 35]).unwrap_err().to_string();
            assert!(err.contains("not a multiple"), "{dtype:?}: {err}");
        }
    }

    #[test]
    fn nonfinite_scales_are_found() {
        // FORMAT.md: a q4_1 block is 20 bytes, `m` at byte 2.
        let mut q41 = vec![0u8; 2 * 20];
        assert_eq!(first_nonfinite_scale(DType::Q4_1, &q41), None);
        q41[20 + 2..20 + 4].copy_from_slice(&0x7c00u16.to_le_bytes());
        assert_eq!(first_nonfinite_scale(DType::Q4_1, &q41), Some(1));
        // q8_0: `d` at byte 0 of 34.
        let mut q8 = vec![0u8; 3 * 34];
        q8[68..70].copy_from_slice(&0xfc00u16.to_le_bytes());
        assert_eq!(first_nonfinite_scale(DType::Q8_0, &q8), Some(2));
        assert_eq!(first_nonfinite_scale(DType::F32, &[0xff; 8]), None);
    }
}
