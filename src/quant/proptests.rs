//! Property tests of the scalar kernels against an independent `f64` reference: the weights are
//! decoded from their bytes by the block formulas of the module docs (in `f64`, where they are
//! exact), the dot products summed in `f64`, and every kernel result must lie within an error bound
//! derived from the format and the fixed accumulation order — not a tuned tolerance. The quantizers
//! are checked the same way: each element comes back within the rounding the format allows.

use alloc::vec::Vec;

use proptest::prelude::*;

use super::{f16_to_f32, f32_to_f16, quantize_row, scalar, ActScheme, DType, QuantizedActivations, QK};

const CASES: u32 = 256;
/// Unit roundoff of `f32` (round to nearest).
const U: f64 = 1.0 / 16_777_216.0;

/// Elements of block `b` of a quantized row, decoded in `f64` from the bytes.
fn decode_block(dtype: DType, block: &[u8]) -> [f64; QK] {
    let f16 = |at: usize| f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]])) as f64;
    let nibble = |qs: &[u8], j: usize| if j < QK / 2 { qs[j] & 15 } else { qs[j - QK / 2] >> 4 } as f64;
    core::array::from_fn(|j| match dtype {
        DType::Q8_0 => f16(0) * (block[2 + j] as i8) as f64,
        DType::Q4_0 => f16(0) * (nibble(&block[2..], j) - 8.0),
        DType::Q4_1 => f16(0) * nibble(&block[4..], j) + f16(2),
        DType::F32 => unreachable!("f32 rows are not blocks"),
        // The newer dtypes have their own f64 references in `kquant::tests`.
        _ => unreachable!("{} is not decoded here", dtype.name()),
    })
}

fn decode_row(dtype: DType, row: &[u8]) -> Vec<f64> {
    match dtype {
        DType::F32 => row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).collect(),
        _ => row.chunks_exact(dtype.block_bytes()).flat_map(|b| decode_block(dtype, b)).collect(),
    }
}

/// A raw quantized block with a finite `f16` scale (and minimum) of magnitude in `[2^-10, 8]` or
/// zero — normal `f16` values, so products with activation scales stay normal `f32` — and any quants.
fn block(dtype: DType) -> impl Strategy<Value = Vec<u8>> {
    let scale = prop_oneof![Just(0.0f32), (-8.0f32..8.0).prop_filter("normal f16", |v| v.abs() >= 1.0 / 1024.0)];
    let quants = proptest::collection::vec(any::<u8>(), dtype.block_bytes() - if dtype == DType::Q4_1 { 4 } else { 2 });
    (scale.clone(), scale, quants).prop_map(move |(d, m, qs)| {
        let mut b = f32_to_f16(d).to_le_bytes().to_vec();
        if dtype == DType::Q4_1 {
            b.extend_from_slice(&f32_to_f16(m).to_le_bytes());
        }
        b.extend_from_slice(&qs);
        b
    })
}

/// Activations: mixed magnitudes per block (including all-zero blocks), as hidden states have.
fn activations(n_blocks: usize) -> impl Strategy<Value = Vec<f32>> {
    let block = prop_oneof![
        Just(alloc::vec![0.0f32; QK]),
        proptest::collection::vec(-1.0f32..1.0, QK),
        proptest::collection::vec(-100.0f32..100.0, QK),
        (proptest::collection::vec(-1e-2f32..1e-2, QK), -50.0f32..50.0, 0..QK).prop_map(|(mut v, outlier, at)| {
            v[at] = outlier;
            v
        }),
    ];
    proptest::collection::vec(block, n_blocks).prop_map(|blocks| blocks.concat())
}

/// `(rows, row bytes, activations)` for a `rows × n_blocks·32` matrix of `dtype`.
fn matrix(dtype: DType) -> impl Strategy<Value = (usize, Vec<u8>, Vec<f32>)> {
    (1usize..4, 1usize..9).prop_flat_map(move |(rows, n_blocks)| {
        let weights = match dtype {
            DType::F32 => {
                proptest::collection::vec(-4.0f32..4.0, rows * n_blocks * QK).prop_map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).boxed()
            }
            _ => proptest::collection::vec(block(dtype), rows * n_blocks).prop_map(|b| b.concat()).boxed(),
        };
        (Just(rows), weights, activations(n_blocks))
    })
}

/// Runs the scalar matvec and checks every row against the `f64` reference.
fn check_matvec(dtype: DType, rows: usize, bytes: &[u8], x: &[f32]) -> Result<(), TestCaseError> {
    let cols = x.len();
    let mut xq = QuantizedActivations::new();
    if let Some(scheme) = ActScheme::for_dtype(dtype) {
        xq.quantize(scheme, x).expect("activations fit in memory");
    }
    let mut out = alloc::vec![f32::NAN; rows];
    scalar::matmul(dtype, bytes, rows, cols, 1, x, &xq, &mut out);
    let row_bytes = dtype.row_bytes(cols).unwrap();
    let n_blocks = cols / QK;
    for (r, &got) in out.iter().enumerate() {
        let w = decode_row(dtype, &bytes[r * row_bytes..(r + 1) * row_bytes]);
        let got = got as f64;
        if dtype == DType::F32 {
            // 16 accumulators of ⌈cols/16⌉ terms, a product rounding each, then a 3-level tree.
            let exact: f64 = w.iter().zip(x).map(|(w, &x)| w * x as f64).sum();
            let magnitude: f64 = w.iter().zip(x).map(|(w, &x)| (w * x as f64).abs()).sum();
            let bound = (cols.div_ceil(16) + 4) as f64 * U * 1.01 * magnitude;
            prop_assert!((got - exact).abs() <= bound, "f32 row {}: got {}, f64 {}, bound {}", r, got, exact, bound);
            continue;
        }
        // Against the quantized activations the kernel's integer sums are exact; only its float
        // steps round: per block 2 roundings per scale product (3 and an addition for q4_1), then 4
        // accumulators of ⌈n_blocks/4⌉ terms and a 2-level tree.
        let (mut exact_q, mut magnitude, mut act_error, mut exact_x) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for b in 0..n_blocks {
            let d_x = xq.d[b] as f64;
            let wb = &w[b * QK..(b + 1) * QK];
            let xb = &x[b * QK..(b + 1) * QK];
            let qs = &xq.qs[b * QK..(b + 1) * QK];
            exact_q += if dtype == DType::Q4_1 {
                // The minimum multiplies the Q8_1 block sum `s` (an f16 of d·Σq), not d_x·Σq.
                let m_w =
                    f16_to_f32(u16::from_le_bytes([bytes[r * row_bytes + b * dtype.block_bytes() + 2], bytes[r * row_bytes + b * dtype.block_bytes() + 3]]))
                        as f64;
                wb.iter().zip(qs).map(|(w, &q)| (w - m_w) * d_x * q as f64).sum::<f64>() + m_w * xq.s[b] as f64
            } else {
                wb.iter().zip(qs).map(|(w, &q)| w * d_x * q as f64).sum::<f64>()
            };
            exact_x += wb.iter().zip(xb).map(|(w, &x)| w * x as f64).sum::<f64>();
            let block = &bytes[r * row_bytes + b * dtype.block_bytes()..];
            let d_w = f16_to_f32(u16::from_le_bytes([block[0], block[1]])) as f64;
            let q_w = decode_block(dtype, block).map(|v| if d_w != 0.0 { v / d_w } else { 0.0 });
            magnitude += match dtype {
                DType::Q4_1 => {
                    let m_w = f16_to_f32(u16::from_le_bytes([block[2], block[3]])) as f64;
                    let q_n: Vec<f64> = (0..QK).map(|j| (wb[j] - m_w) / if d_w != 0.0 { d_w } else { 1.0 }).collect();
                    let isum: f64 = q_n.iter().zip(qs).map(|(n, &q)| n * q as f64).sum();
                    let xsum: f64 = qs.iter().map(|&q| q as f64).sum();
                    (d_w * d_x * isum).abs() + (m_w * d_x * xsum).abs()
                }
                _ => (d_w * d_x * q_w.iter().zip(qs).map(|(w, &q)| w * q as f64).sum::<f64>()).abs(),
            };
            // Activation quantization: each element is within half a step of its quant, the step
            // being the f32 d (d_x is that d rounded to f16: at most 2^-11 · 127 steps more); q4_1's
            // `s` is d·Σq rounded to f16 once more.
            let d_error = d_x / 2.0 * (1.0 + 1e-5) + d_x * 127.0 / 1024.0;
            act_error += d_error * wb.iter().map(|w| w.abs()).sum::<f64>();
            if dtype == DType::Q4_1 {
                let m_w = f16_to_f32(u16::from_le_bytes([block[2], block[3]])) as f64;
                act_error += m_w.abs() * (xq.s[b] as f64).abs() / 1024.0;
            }
        }
        let float_bound = (n_blocks.div_ceil(4) + 6) as f64 * U * 1.01 * magnitude;
        prop_assert!(
            (got - exact_q).abs() <= float_bound,
            "{} row {}: got {}, f64 with quantized activations {}, bound {}",
            dtype.name(),
            r,
            got,
            exact_q,
            float_bound
        );
        let bound = float_bound + act_error;
        prop_assert!((got - exact_x).abs() <= bound, "{} row {}: got {}, f64 with f32 activations {}, bound {}", dtype.name(), r, got, exact_x, bound);
    }
    Ok(())
}

/// Quantizes `x` and checks every element against the rounding the format allows, using the
/// stored (`f16`-rounded) scale and minimum.
fn check_round_trip(dtype: DType, x: &[f32]) -> Result<(), TestCaseError> {
    let mut bytes = alloc::vec![0u8; dtype.row_bytes(x.len()).unwrap()];
    quantize_row(dtype, x, &mut bytes);
    let back = decode_row(dtype, &bytes);
    for (b, (xb, yb)) in x.chunks_exact(QK).zip(back.chunks_exact(QK)).enumerate() {
        let block = &bytes[b * dtype.block_bytes()..];
        let stored = |at: usize| f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]])) as f64;
        let amax = xb.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()));
        let (min, max) = xb.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v as f64), hi.max(v as f64)));
        let slack = 1e-6 * amax + 1e-30;
        for (j, (&v, &y)) in xb.iter().zip(yb).enumerate() {
            let v = v as f64;
            let bound = match dtype {
                // q = round(x / d), |q| ≤ 127, d = amax / 127 stored as f16.
                DType::Q8_0 => {
                    let d = amax / 127.0;
                    d / 2.0 + 127.0 * (d - stored(0)).abs()
                }
                // d = max / −8 for the element of largest magnitude, q − 8 in −8..=7: the step is
                // half of |d| except at the top, where x / d up to 8 is clamped to 7.
                DType::Q4_0 => {
                    let max_elem = xb.iter().map(|&v| v as f64).fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
                    let d = max_elem / -8.0;
                    let steps = if d != 0.0 { v / d } else { 0.0 };
                    d.abs() * if steps > 7.5 { steps - 7.0 } else { 0.5 } + 8.0 * (d - stored(0)).abs()
                }
                // d = (max − min) / 15, m = min, q in 0..=15: half a step, plus what f16 did to d and m.
                DType::Q4_1 => {
                    let d = (max - min) / 15.0;
                    d / 2.0 + 15.0 * (d - stored(0)).abs() + (min - stored(2)).abs()
                }
                DType::F32 => 0.0,
                _ => unreachable!("{} is not checked here", dtype.name()),
            };
            prop_assert!((y - v).abs() <= bound + slack, "{} block {} element {}: {} came back as {}, bound {}", dtype.name(), b, j, v, y, bound);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn f32_matvec_matches_f64((rows, w, x) in matrix(DType::F32)) {
        check_matvec(DType::F32, rows, &w, &x)?;
    }

    #[test]
    fn q8_0_matvec_matches_f64((rows, w, x) in matrix(DType::Q8_0)) {
        check_matvec(DType::Q8_0, rows, &w, &x)?;
    }

    #[test]
    fn q4_0_matvec_matches_f64((rows, w, x) in matrix(DType::Q4_0)) {
        check_matvec(DType::Q4_0, rows, &w, &x)?;
    }

    #[test]
    fn q4_1_matvec_matches_f64((rows, w, x) in matrix(DType::Q4_1)) {
        check_matvec(DType::Q4_1, rows, &w, &x)?;
    }

    #[test]
    fn quantize_round_trip_is_within_the_format_rounding(x in (1usize..5).prop_flat_map(activations)) {
        for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
            check_round_trip(dtype, &x)?;
        }
        // f32 storage is exact.
        let mut bytes = alloc::vec![0u8; x.len() * 4];
        quantize_row(DType::F32, &x, &mut bytes);
        prop_assert_eq!(decode_row(DType::F32, &bytes), x.iter().map(|&v| v as f64).collect::<Vec<f64>>());
    }

    #[test]
    fn activation_quantization_is_within_half_a_step(x in (1usize..5).prop_flat_map(activations)) {
        let mut xq = QuantizedActivations::new();
        xq.quantize(ActScheme::Q8_1, &x).expect("activations fit in memory");
        for (b, xb) in x.chunks_exact(QK).enumerate() {
            let amax = xb.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
            let d32 = amax / 127.0;
            prop_assert_eq!(xq.d[b], f16_to_f32(f32_to_f16(d32)));
            let qs = &xq.qs[b * QK..(b + 1) * QK];
            let sum = qs.iter().map(|&q| q as i32).sum::<i32>();
            prop_assert_eq!(xq.sums[b], sum);
            prop_assert_eq!(xq.s[b], f16_to_f32(f32_to_f16(d32 * sum as f32)));
            for (&v, &q) in xb.iter().zip(qs) {
                prop_assert!((-127..=127).contains(&q));
                // Half a step of the unrounded f32 scale.
                let err = (v as f64 - d32 as f64 * q as f64).abs();
                prop_assert!(err <= d32 as f64 / 2.0 * (1.0 + 1e-5) + 1e-30, "{} → {} · {}", v, q, d32);
            }
        }
    }
}
