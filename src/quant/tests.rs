//! Unit tests: block layouts, f16 conversion, the ggml reference quantizers, activation
//! quantization, and every kernel against a plain dequantize-then-`f64` dot product.
//!
//! Native builds dispatch to [`scalar`]; the SIMD128 kernels are pinned to it bit for bit by
//! `kernel_selftest` in the wasm build.

use alloc::vec;
use alloc::vec::Vec;

use super::testdata::{random_activations, random_weights, Rng, F32_COLS, QUANT_COLS};
use super::*;

// FORMAT.md "Dtypes", written out independently of the layout table (which
// `layout_table_matches_format_md` pins to these).
const Q8_0_BLOCK_BYTES: usize = 34;
const Q4_0_BLOCK_BYTES: usize = 18;
const Q4_1_BLOCK_BYTES: usize = 20;

/// Allowed `|kernel − f64 reference| / Σ|w_i · x_i|` for one dot product.
///
/// How it was chosen: the first-order rounding bound for a sum evaluated with `k` sequential
/// roundings is `k · 2^-24 · Σ|terms|`. The longest path in any kernel here is the 48-block row
/// (`cols = 1536`): 3 roundings inside a `q4_1` block term, 12 additions into one of four lane
/// accumulators and 2 in the reduction, `k = 17`, bound ≈ 1.0e-6 (`f32`, 129 elements: 1 + 9 + 3
/// = 13). The tolerance is twice that; the largest ratio observed over this test data is about
/// 1.4e-7 (`dot_products_match_f64_reference` prints it).
const DOT_REL_TOL: f64 = 2.0e-6;

/// `x` quantized as `dtype`'s kernel reads it (empty for the dtypes that read `f32`).
fn xq_for(dtype: DType, x: &[f32]) -> QuantizedActivations {
    let mut xq = QuantizedActivations::new();
    if let Some(scheme) = ActScheme::for_dtype(dtype) {
        xq.quantize(scheme, x).expect("activations fit in memory");
    }
    xq
}

fn xq_of(x: &[f32]) -> QuantizedActivations {
    xq_for(DType::Q8_0, x)
}

// ---------------------------------------------------------------------------------------------
// DType

#[test]
fn dtype_codes_names_and_sizes() {
    let expect = [
        ("f32", 1, 4),
        ("q8_0", 32, 34),
        ("q4_0", 32, 18),
        ("q4_1", 32, 20),
        ("f16", 1, 2),
        ("q5_0", 32, 22),
        ("q5_1", 32, 24),
        ("q4_k", 256, 144),
        ("q5_k", 256, 176),
        ("q6_k", 256, 210),
    ];
    for (i, dtype) in DType::ALL.into_iter().enumerate() {
        assert_eq!(dtype.code() as usize, i);
        assert_eq!(DType::from_code(i as u8), Some(dtype));
        let (name, elems, bytes) = expect[i];
        assert_eq!((dtype.name(), dtype.block_elems(), dtype.block_bytes()), (name, elems, bytes));
    }
    for code in 10..=255u8 {
        assert_eq!(DType::from_code(code), None);
    }
}

#[test]
fn row_bytes_checks_multiples_and_overflow() {
    assert_eq!(DType::F32.row_bytes(0), Some(0));
    assert_eq!(DType::F32.row_bytes(3), Some(12));
    assert_eq!(DType::Q8_0.row_bytes(64), Some(68));
    assert_eq!(DType::Q4_0.row_bytes(1536), Some(864));
    assert_eq!(DType::Q4_1.row_bytes(96), Some(60));
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        assert_eq!(dtype.row_bytes(33), None);
        assert_eq!(dtype.row_bytes(16), None);
    }
    // q8_0 blocks are larger than 32 bytes, so the largest multiple of 32 overflows; the q4 types
    // store fewer bytes than elements and cannot overflow.
    let n = usize::MAX - usize::MAX % 32;
    assert_eq!(DType::Q8_0.row_bytes(n), None);
    assert_eq!(DType::Q4_0.row_bytes(n), Some(n / 32 * 18));
    assert_eq!(DType::F32.row_bytes(usize::MAX / 4 + 1), None);
    assert_eq!(DType::F32.row_bytes(usize::MAX / 4), Some(usize::MAX / 4 * 4));
}

// ---------------------------------------------------------------------------------------------
// f16

/// The value of binary16 bits from the definition, in f64 (`None` for NaN).
fn f16_value(bits: u16) -> Option<f64> {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((bits >> 10) & 31) as i32;
    let mant = (bits & 0x3ff) as f64;
    match exp {
        31 if mant != 0.0 => None,
        31 => Some(sign * f64::INFINITY),
        0 => Some(sign * mant * 2f64.powi(-24)),
        _ => Some(sign * (1024.0 + mant) * 2f64.powi(exp - 25)),
    }
}

#[test]
fn f16_to_f32_is_exact_for_all_bit_patterns() {
    for bits in 0..=u16::MAX {
        let got = f16_to_f32(bits);
        assert_eq!(got.is_sign_negative(), bits & 0x8000 != 0, "{bits:#06x}");
        match f16_value(bits) {
            None => assert!(got.is_nan(), "{bits:#06x}"),
            Some(v) => assert_eq!(got as f64, v, "{bits:#06x}"),
        }
    }
}

#[test]
fn f16_round_trip_is_exhaustively_exact() {
    for bits in 0..=u16::MAX {
        let back = f32_to_f16(f16_to_f32(bits));
        if f16_value(bits).is_some() {
            assert_eq!(back, bits, "{bits:#06x}");
        } else {
            assert!(back & 0x7c00 == 0x7c00 && back & 0x3ff != 0, "NaN {bits:#06x} -> {back:#06x}");
            assert_eq!(back & 0x8000, bits & 0x8000);
        }
    }
}

/// Independent round-to-nearest-even oracle: binary search for the largest f16 at or below `|x|`,
/// then compare `2|x|` with `lo + hi` exactly in f64.
fn f32_to_f16_oracle(x: f32) -> u16 {
    let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
    if x.is_nan() {
        return sign | 0x7e00;
    }
    let a = x.abs() as f64;
    if a == f64::INFINITY {
        return sign | 0x7c00;
    }
    let (mut lo, mut hi) = (0u16, 0x7c00u16); // invariant: value(lo) ≤ a < value(hi) (65536 for hi = inf)
    let value = |h: u16| {
        if h == 0x7c00 {
            65536.0
        } else {
            f16_value(h).unwrap()
        }
    };
    if a >= 65536.0 {
        return sign | 0x7c00;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if value(mid) <= a {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let twice = 2.0 * a;
    let mid2 = value(lo) + value(hi);
    let pick = if twice < mid2 {
        lo
    } else if twice > mid2 {
        hi
    } else if lo & 1 == 0 {
        lo
    } else {
        hi
    };
    sign | pick
}

#[test]
fn f32_to_f16_matches_rounding_oracle() {
    let mut n_checked = 0usize;
    let mut check = |bits: u32| {
        let x = f32::from_bits(bits);
        assert_eq!(f32_to_f16(x), f32_to_f16_oracle(x), "x = {x:e} ({bits:#010x})");
        n_checked += 1;
    };
    // Every exponent, every top-10 mantissa pattern, and the dropped 13 bits at and around the
    // rounding boundary, both signs.
    for exp in 0..=255u32 {
        for top in (0..1024u32).step_by(if (100..=143).contains(&exp) { 1 } else { 97 }) {
            for low in [0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff] {
                let bits = (exp << 23) | (top << 13) | low;
                check(bits);
                check(bits | 0x8000_0000);
            }
        }
    }
    // Plus random bit patterns.
    let mut rng = Rng::new(16);
    for _ in 0..200_000 {
        check(rng.next_u64() as u32);
    }
    assert!(n_checked > 500_000);
}

#[test]
fn f32_to_f16_known_values() {
    let cases: [(f32, u16); 16] = [
        (0.0, 0x0000),
        (-0.0, 0x8000),
        (1.0, 0x3c00),
        (-2.0, 0xc000),
        (0.1, 0x2e66),
        (1.0 / 3.0, 0x3555),
        (65504.0, 0x7bff),
        (65519.996, 0x7bff),
        (65520.0, 0x7c00),
        (f32::INFINITY, 0x7c00),
        (f32::NEG_INFINITY, 0xfc00),
        (6.103_515_6e-5, 0x0400), // 2^-14, smallest normal
        (5.960_464_5e-8, 0x0001), // 2^-24, smallest subnormal
        (2.980_232_2e-8, 0x0000), // 2^-25, tie to even -> 0
        (4.470_348_4e-8, 0x0001), // 1.5 · 2^-25
        (8.940_697e-8, 0x0002),   // 3 · 2^-25 = 1.5 · 2^-24, tie to even -> 2
    ];
    for (x, bits) in cases {
        assert_eq!(f32_to_f16(x), bits, "{x:e}");
    }
    assert_eq!(f32_to_f16(f32::NAN), 0x7e00);
    assert_eq!(f32_to_f16(-f32::NAN), 0xfe00);
    assert_eq!(f16_to_f32(0x3c00), 1.0);
    assert!(f16_to_f32(0x7e00).is_nan());
}

// ---------------------------------------------------------------------------------------------
// Weight quantizers

#[test]
fn zero_blocks_quantize_to_ggml_bytes() {
    let zeros = [0.0f32; QK];
    let mut q8 = [0xaau8; Q8_0_BLOCK_BYTES];
    quantize_row_q8_0(&zeros, &mut q8);
    assert!(q8.iter().all(|&b| b == 0));
    let mut q4 = [0u8; Q4_0_BLOCK_BYTES];
    quantize_row_q4_0(&zeros, &mut q4);
    assert_eq!(&q4[..2], &[0x00, 0x80], "d = 0 / -8 is -0.0, as in ggml");
    assert!(q4[2..].iter().all(|&b| b == 0x88), "x = 0 is nibble 8 (trunc(0 + 8.5))");
    let mut q41 = [0xaau8; Q4_1_BLOCK_BYTES];
    quantize_row_q4_1(&zeros, &mut q41);
    assert!(q41.iter().all(|&b| b == 0));
}

#[test]
fn q8_0_rounds_half_away_from_zero() {
    // amax = 127 gives d = 1 and id = 1 exactly, so the quants are roundf(x) itself.
    let mut x = [0.0f32; QK];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 0.5;
    x[4] = -0.5;
    x[5] = 1.499_999_9;
    x[6] = -126.5;
    let mut block = [0u8; Q8_0_BLOCK_BYTES];
    quantize_row_q8_0(&x, &mut block);
    assert_eq!(u16::from_le_bytes([block[0], block[1]]), 0x3c00);
    let qs: Vec<i8> = block[2..9].iter().map(|&b| b as i8).collect();
    assert_eq!(qs, [127, 3, -3, 1, -1, 1, -127]);
}

#[test]
fn q4_0_uses_signed_max_and_clamps_the_far_end() {
    // max = -8 (largest magnitude, negative) -> d = 1, id = 1: q = min(15, trunc(x + 8.5)).
    let mut x = [0.0f32; QK];
    x[0] = -8.0;
    x[1] = 8.0; // trunc(16.5) = 16 -> clamped to 15
    x[2] = 0.49;
    x[3] = -0.5; // trunc(8.0) = 8
    x[16] = 3.0;
    x[17] = -3.5; // trunc(5.0) = 5
    let mut block = [0u8; Q4_0_BLOCK_BYTES];
    quantize_row_q4_0(&x, &mut block);
    assert_eq!(u16::from_le_bytes([block[0], block[1]]), 0x3c00);
    let nib = |j: usize| {
        if j < 16 {
            block[2 + j] & 15
        } else {
            block[2 + j - 16] >> 4
        }
    };
    assert_eq!([nib(0), nib(1), nib(2), nib(3), nib(16), nib(17)], [0, 15, 8, 8, 11, 5]);
}

#[test]
fn q4_1_maps_min_to_0_and_max_to_15() {
    let x: Vec<f32> = (0..QK).map(|j| j as f32 - 1.0).collect(); // min -1, max 30, d = 31/15
    let mut block = [0u8; Q4_1_BLOCK_BYTES];
    quantize_row_q4_1(&x, &mut block);
    assert_eq!(u16::from_le_bytes([block[2], block[3]]), f32_to_f16(-1.0));
    assert_eq!(u16::from_le_bytes([block[0], block[1]]), f32_to_f16(31.0 / 15.0));
    assert_eq!(block[4] & 15, 0);
    assert_eq!(block[4 + 15] >> 4, 15);
}

/// Bytes from an independent run of ggml's C reference quantizers (`quantize_row_q8_0_ref`,
/// `quantize_row_q4_0_ref`, `quantize_row_q4_1_ref` with the generic `GGML_FP32_TO_FP16`, built
/// with `-ffp-contract=off`) on the eight blocks of [`golden_block`]: ordinary values at several
/// magnitudes, an all-±0 block, a block of exact halves (ties everywhere), a block with one outlier,
/// f16-subnormal scales (`2e-7`) and an `f16`-overflowing scale (`65000`: q4 `d` becomes infinite).
const GOLDEN_Q8_0: [&str; 8] = [
    "cf3281746a5f54493e34291e1308fef3e8ddd2c8bdb2a79c92877a6f655a4f44392f",
    "f60ad7ccc1b6aca1968b7f74695f54493e33281e1308fdf2e8ddd2c7bcb1a79c9186",
    "01002d22170d02f7ece1d6ccc1b6aba0958a7f74695e54493e33281d1308fdf2e7dc",
    "eb5384796e63584e43382d22170c01f7ece1d6cbc0b5aa9f958a7f74695e53493e33",
    "00000000000000000000000000000000000000000000000000000000000000000000",
    "082c81899199a1a9b1b9c0c8d0d8e0e8f0f8000810182028303840474f575f676f77",
    "9340fc04048103030202020101000000fffffffefefefdfdfdfcfc04030303020202",
    "9272ded3c7bcb1a69b90857f74695e53483c31261b1005faefe4d9cdc2b7aca1968b",
];
const GOLDEN_Q4_0: [&str; 8] = [
    "c242504f4f3e2d2d1c0bfbfae9e9d8c7c6b6",
    "e89a5b6b7c7d8d9eafafb0c1c1d2e3e3f4f5",
    "0b80051617273839495a5b6b7c8d8d9eafaf",
    "dbe3bfb0c1d2d2e3f4f4051617273839495a",
    "008088888888888888888888888888888888",
    "003c809191a2a2b3b3c4c4d5d5e6e6f7f7f8",
    "8a5088888880888888888888888888888888",
    "00fc5a6b6c7c8d8e9eafafb0c1d1d2e3f3f4",
];
const GOLDEN_Q4_1: [&str; 8] = [
    "1243c2ce504f4e3d2d2c1b0bfae9e9d8c8c7b6a6",
    "371b9fa6a5948483727261505f4e3e3d2c1c1b0a",
    "0c005480fae9e9d8c7c7b6a5a594838372616150",
    "2564aeef504f4e3d2d2c1b0bfae9e9d8c8c7b6a6",
    "0000008000000000000000000000000000000000",
    "223c00c880809191a2a2b3b3c4c4d5d5e6e6f7f7",
    "fd4c8adceeefefe0efefefefeffffffffffffffe",
    "007c00fca5a5948383726161504f4e3e2d2c1c0b",
];

/// Block `b` of the golden input: `x[j] = ((7919·j + 104729·b) mod 2001 − 1000) / 37 · scale[b]`
/// in `f32` (two correctly rounded operations, so C and Rust agree), with blocks 5 and 6 reshaped.
fn golden_block(b: usize) -> [f32; QK] {
    const SCALES: [f32; 8] = [1.0, 1e-3, 2e-7, 300.0, 0.0, -0.5, 1.0 / 3.0, 65000.0];
    let mut x = [0.0f32; QK];
    for (j, v) in x.iter_mut().enumerate() {
        let k = ((j * 7919 + b * 104_729) % 2001) as i32 - 1000;
        *v = k as f32 / 37.0 * SCALES[b];
    }
    if b == 5 {
        for (j, v) in x.iter_mut().enumerate() {
            *v = (j as i32 - 16) as f32 * 0.5;
        }
    }
    if b == 6 {
        x[3] = -x[3] * 40.0;
    }
    x
}

#[test]
fn quantizers_match_ggml_reference_bytes() {
    let hex = |bytes: &[u8]| bytes.iter().map(|b| std::format!("{b:02x}")).collect::<std::string::String>();
    for b in 0..8 {
        let x = golden_block(b);
        for (dtype, golden) in [(DType::Q8_0, &GOLDEN_Q8_0), (DType::Q4_0, &GOLDEN_Q4_0), (DType::Q4_1, &GOLDEN_Q4_1)] {
            let mut block = vec![0u8; dtype.block_bytes()];
            quantize_row(dtype, &x, &mut block);
            assert_eq!(hex(&block), golden[b], "{} block {b}", dtype.name());
        }
    }
}

/// Max |x − dequantize(quantize(x))| allowed per element, from the block's own fields:
/// half a step from rounding, plus the f16 rounding of the stored scale (`|q| · |d|·2^-11`) and, for
/// q4_1, of the stored minimum; q4_0 may be a whole step off at the clamped far end.
fn round_trip_bound(dtype: DType, block: &[u8]) -> f32 {
    let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]])).abs();
    let f16_rel = 1.0 / 2048.0;
    match dtype {
        DType::Q8_0 => d * (0.5 + 127.0 * f16_rel) * 1.0001,
        DType::Q4_0 => d * (1.0 + 8.0 * f16_rel) * 1.0001,
        DType::Q4_1 => {
            let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]])).abs();
            (d * (0.5 + 15.0 * f16_rel) + m * f16_rel) * 1.0001
        }
        DType::Q5_0 => d * (1.0 + 16.0 * f16_rel) * 1.0001,
        DType::Q5_1 => {
            let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]])).abs();
            (d * (0.5 + 31.0 * f16_rel) + m * f16_rel) * 1.0001
        }
        // Elementwise storage (checked separately) and the k-quants (`kquant::tests`).
        DType::F32 | DType::F16 | DType::Q4_K | DType::Q5_K | DType::Q6_K => unreachable!("not a 32-element block"),
    }
}

#[test]
fn quantize_dequantize_round_trip_within_bounds() {
    let mut rng = Rng::new(7);
    // The 32-element formats and the elementwise ones; the k-quants' quantizers are checked in
    // `kquant::tests`.
    for dtype in [DType::F32, DType::F16, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1] {
        for &cols in &QUANT_COLS {
            let x: Vec<f32> = (0..cols).map(|_| rng.spread(0.05)).collect();
            let mut bytes = vec![0u8; dtype.row_bytes(cols).unwrap()];
            quantize_row(dtype, &x, &mut bytes);
            let mut back = vec![0.0f32; cols];
            dequantize_row(dtype, &bytes, &mut back);
            if dtype == DType::F32 {
                assert!(x.iter().zip(&back).all(|(a, b)| a.to_bits() == b.to_bits()));
                continue;
            }
            if dtype == DType::F16 {
                // Round to nearest f16: within half an ulp (2^-11 relative) or half the subnormal step.
                for (a, y) in x.iter().zip(&back) {
                    assert!((a - y).abs() <= a.abs() / 2048.0 + 2.0f32.powi(-25), "f16: {a} -> {y}");
                }
                continue;
            }
            for (b, (xb, yb)) in x.chunks(QK).zip(back.chunks(QK)).enumerate() {
                let block = &bytes[b * dtype.block_bytes()..(b + 1) * dtype.block_bytes()];
                let bound = round_trip_bound(dtype, block);
                for (j, (a, y)) in xb.iter().zip(yb).enumerate() {
                    assert!((a - y).abs() <= bound, "{} block {b} elem {j}: {a} -> {y}, bound {bound}", dtype.name());
                }
            }
        }
    }
}

#[test]
fn dequantize_row_follows_the_block_formulas() {
    let mut rng = Rng::new(8);
    for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let bytes = random_weights(dtype, 1, 96, &mut rng);
        let mut got = vec![0.0f32; 96];
        dequantize_row(dtype, &bytes, &mut got);
        for (b, block) in bytes.chunks_exact(dtype.block_bytes()).enumerate() {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            for j in 0..QK {
                let want = match dtype {
                    DType::Q8_0 => (block[2 + j] as i8) as f32 * d,
                    DType::Q4_0 => {
                        let q = if j < 16 { block[2 + j] & 15 } else { block[2 + j - 16] >> 4 };
                        (q as f32 - 8.0) * d
                    }
                    _ => {
                        let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
                        let q = if j < 16 { block[4 + j] & 15 } else { block[4 + j - 16] >> 4 };
                        q as f32 * d + m
                    }
                };
                assert_eq!(got[b * QK + j].to_bits(), want.to_bits(), "{} block {b} elem {j}", dtype.name());
            }
        }
    }
}

#[test]
fn first_non_finite_finds_bad_scales_and_values() {
    let mut rng = Rng::new(9);
    // The formats decoded below; the newer dtypes have their own references in `kquant::tests`.
    for dtype in [DType::F32, DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let cols = 128;
        let mut bytes = random_weights(dtype, 1, cols, &mut rng);
        // Raw test rows may carry any finite scale; make sure the starting point is all finite.
        assert_eq!(first_non_finite(dtype, &bytes), None, "{}", dtype.name());
        let (unit, offsets): (usize, &[usize]) = match dtype {
            DType::F32 => (4, &[2]),
            DType::Q4_1 => (Q4_1_BLOCK_BYTES, &[0, 2]),
            _ => (dtype.block_bytes(), &[0]),
        };
        for &offset in offsets {
            for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
                let mut b = bytes.clone();
                let at = 2 * unit + offset;
                if dtype == DType::F32 {
                    b[8..12].copy_from_slice(&bad.to_le_bytes());
                } else {
                    b[at..at + 2].copy_from_slice(&f32_to_f16(bad).to_le_bytes());
                }
                assert_eq!(first_non_finite(dtype, &b), Some(2), "{} offset {offset} {bad}", dtype.name());
            }
        }
        bytes.truncate(bytes.len() - 1); // a trailing partial unit is not examined
        assert_eq!(first_non_finite(dtype, &bytes), None);
    }
    assert_eq!(first_non_finite(DType::Q8_0, &[]), None);
}

// ---------------------------------------------------------------------------------------------
// Activation quantization

#[test]
fn activations_round_half_to_even_with_ggml_scales() {
    let mut x = [0.0f32; 2 * QK];
    x[0] = -127.0; // amax 127 -> d = 1, id = 127 / 127 = 1
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 0.5;
    x[4] = 1.499_999_9;
    x[QK] = 0.3; // second block: d = 0.3 / 127, stored rounded to f16
    let xq = xq_for(DType::Q8_0, &x);
    assert_eq!((xq.len(), xq.n_blocks(), xq.is_empty()), (64, 2, false));
    assert_eq!(xq.d[0], 1.0);
    assert_eq!(&xq.qs[..5], &[-127, 2, -2, 0, 1]);
    assert_eq!(xq.sums[0], -127 + 2 - 2 + 1);
    assert_eq!(xq.d[1], f16_to_f32(f32_to_f16(0.3f32 / 127.0)));
    assert_ne!(xq.d[1], 0.3f32 / 127.0, "the f32 scale must not survive");
    assert_eq!(xq.qs[QK], 127);
    assert_eq!(xq.s, [0.0, 0.0], "q8_0 carries no block sum");

    // q8_1: the same quants plus s = f16(d · Σq) with the f32 d.
    let xq1 = xq_for(DType::Q4_1, &x);
    assert_eq!((xq1.qs.clone(), xq1.d.clone()), (xq.qs.clone(), xq.d.clone()));
    assert_eq!(xq1.s[0], f16_to_f32(f32_to_f16(1.0 * (-127 + 2 - 2 + 1) as f32)));
    assert_eq!(xq1.s[1], f16_to_f32(f32_to_f16(0.3f32 / 127.0 * 127.0)));
}

#[test]
fn q8_k_activations_take_one_f32_scale_per_256_from_the_signed_max() {
    let mut x = [0.0f32; 2 * kquant::QK_K];
    x[5] = 3.0;
    x[9] = -6.35; // largest magnitude, negative: iscale = -127 / -6.35 > 0, its quant -127
    x[40] = 1.0;
    x[kquant::QK_K] = 0.5; // second super-block: a positive max maps to -127
    let xq = xq_for(DType::Q4_K, &x);
    assert_eq!(xq.n_blocks(), 2 * kquant::QK_K / QK);
    let iscale = -127.0f32 / -6.35;
    assert!(xq.d[..8].iter().all(|&d| d == 1.0 / iscale), "one f32 scale for the first 8 blocks");
    assert_eq!(xq.qs[9], -127);
    assert_eq!(xq.qs[5] as f32, libm::rintf(3.0 * iscale));
    assert_eq!(xq.qs[40] as f32, libm::rintf(1.0 * iscale));
    assert_eq!(xq.sums[1], xq.qs[32..64].iter().map(|&q| q as i32).sum::<i32>());
    assert_eq!(xq.qs[kquant::QK_K], -127);
    assert!(xq.d[8] < 0.0, "a positive maximum gives a negative scale, as ggml's q8_K does");
}

#[test]
fn activations_zero_block_and_reuse() {
    let mut xq = xq_of(&[0.0f32; QK]);
    assert_eq!((xq.d[0], xq.sums[0]), (0.0, 0));
    assert!(xq.qs.iter().all(|&q| q == 0));
    xq.quantize(ActScheme::Q8_0, &[]).expect("activations fit in memory");
    assert!(xq.is_empty());
    assert_eq!(xq.len(), 0);
    let mut rng = Rng::new(10);
    let x = random_activations(3 * QK, &mut rng);
    xq.quantize(ActScheme::Q8_0, &x).expect("activations fit in memory");
    assert_eq!(xq.len(), 3 * QK);
}

#[test]
fn activation_quantization_error_is_half_a_step() {
    // Q8_K keeps its f32 scale (negative when the super-block's signed maximum is positive).
    let mut rng = Rng::new(11);
    let x = random_activations(1536, &mut rng);
    let xq = xq_for(DType::Q4_K, &x);
    for (b, xb) in x.chunks(QK).enumerate() {
        let d = xq.d[b];
        let mut sum = 0;
        for (j, &v) in xb.iter().enumerate() {
            let q = xq.qs[b * QK + j];
            assert!((-127..=127).contains(&q));
            sum += q as i32;
            let err = (v as f64 - d as f64 * q as f64).abs();
            assert!(err <= 0.5 * d.abs() as f64 * (1.0 + 1e-5), "block {b} elem {j}: {v} vs {d}·{q}");
        }
        assert_eq!(sum, xq.sums[b]);
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// Row `r`'s weights and the magnitude scale `Σ |terms|` per element, dequantized exactly in f64
/// from the block fields (`q4_1`: `d·q + m`, magnitude `|d·q| + |m|`).
fn dequantize_f64(dtype: DType, row: &[u8]) -> (Vec<f64>, Vec<f64>) {
    let mut w = Vec::new();
    let mut mag = Vec::new();
    if dtype == DType::F32 {
        for b in row.chunks_exact(4) {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64;
            w.push(v);
            mag.push(v.abs());
        }
        return (w, mag);
    }
    for block in row.chunks_exact(dtype.block_bytes()) {
        let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]])) as f64;
        let m = if dtype == DType::Q4_1 { f16_to_f32(u16::from_le_bytes([block[2], block[3]])) as f64 } else { 0.0 };
        for j in 0..QK {
            let q = match dtype {
                DType::Q8_0 => (block[2 + j] as i8) as f64,
                DType::Q4_0 => (if j < 16 { block[2 + j] & 15 } else { block[2 + j - 16] >> 4 }) as f64 - 8.0,
                _ => (if j < 16 { block[4 + j] & 15 } else { block[4 + j - 16] >> 4 }) as f64,
            };
            w.push(d * q + m);
            mag.push((d * q).abs() + m.abs());
        }
    }
    (w, mag)
}

/// The activations the kernel actually multiplies: `x` itself for f32, `d · q` for quantized.
fn activations_f64(dtype: DType, x: &[f32], xq: &QuantizedActivations) -> Vec<f64> {
    if dtype == DType::F32 {
        return x.iter().map(|&v| v as f64).collect();
    }
    (0..xq.len()).map(|i| xq.d[i / QK] as f64 * xq.qs[i] as f64).collect()
}

#[test]
fn dot_products_match_f64_reference() {
    let mut rng = Rng::new(12);
    let rows = 9;
    let mut worst = 0.0f64;
    // The formats decoded below; the newer dtypes have their own references in `kquant::tests`.
    for dtype in [DType::F32, DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let extra: &[usize] = if dtype == DType::F32 { &F32_COLS } else { &[] };
        for &cols in QUANT_COLS.iter().chain(extra) {
            let weights = random_weights(dtype, rows, cols, &mut rng);
            let x = random_activations(cols, &mut rng);
            let xq = xq_for(dtype, &x);
            let mut out = vec![f32::NAN; rows];
            matvec(dtype, &weights, rows, cols, &x, &xq, &mut out);
            let a = activations_f64(dtype, &x, &xq);
            let row_bytes = dtype.row_bytes(cols).unwrap();
            for (r, row) in weights.chunks_exact(row_bytes).enumerate() {
                let (w, mag) = dequantize_f64(dtype, row);
                let mut want: f64 = w.iter().zip(&a).map(|(w, a)| w * a).sum();
                if dtype == DType::Q4_1 {
                    // The minimum multiplies the Q8_1 block sum `s`, not `Σ d_x · q`.
                    for (b, block) in row.chunks_exact(dtype.block_bytes()).enumerate() {
                        let m = f16_to_f32(u16::from_le_bytes([block[2], block[3]])) as f64;
                        want += m * (xq.s[b] as f64 - a[b * QK..(b + 1) * QK].iter().sum::<f64>());
                    }
                }
                let scale: f64 = mag.iter().zip(&a).map(|(m, a)| m * a.abs()).sum();
                let err = (out[r] as f64 - want).abs();
                assert!(err <= DOT_REL_TOL * scale, "{} cols {cols} row {r}: got {} want {want} (err {err:e}, scale {scale:e})", dtype.name(), out[r]);
                if scale > 0.0 {
                    worst = worst.max(err / scale);
                }
            }
        }
    }
    std::println!("largest |err| / Σ|w·x| = {worst:e} (tolerance {DOT_REL_TOL:e})");
}

/// The accumulation order of the module docs, written out independently of `scalar.rs`.
fn spec_dot(dtype: DType, row: &[u8], x: &[f32], xq: &QuantizedActivations) -> f32 {
    if dtype == DType::F32 {
        let mut acc = [0.0f32; 16];
        for i in 0..x.len() {
            let w = f32::from_le_bytes(row[4 * i..4 * i + 4].try_into().unwrap());
            acc[i % 16] += w * x[i];
        }
        let v: Vec<f32> = (0..4).map(|l| (acc[l] + acc[l + 4]) + (acc[l + 8] + acc[l + 12])).collect();
        return (v[0] + v[1]) + (v[2] + v[3]);
    }
    let bb = dtype.block_bytes();
    let mut acc = [0.0f32; 4];
    for b in 0..xq.n_blocks() {
        let block = &row[b * bb..(b + 1) * bb];
        let d_w = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
        let mut isum = 0i32;
        for j in 0..QK {
            let x_q = xq.qs[b * QK + j] as i32;
            let w_q = match dtype {
                DType::Q8_0 => (block[2 + j] as i8) as i32,
                DType::Q4_0 => (if j < 16 { block[2 + j] & 15 } else { block[2 + j - 16] >> 4 }) as i32 - 8,
                _ => (if j < 16 { block[4 + j] & 15 } else { block[4 + j - 16] >> 4 }) as i32,
            };
            isum += w_q * x_q;
        }
        let d_x = xq.d[b];
        let term = if dtype == DType::Q4_1 {
            let m_w = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
            (d_w * d_x) * (isum as f32) + m_w * xq.s[b]
        } else {
            (d_w * d_x) * (isum as f32)
        };
        acc[b % 4] += term;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

#[test]
fn kernels_follow_the_documented_accumulation_order_bit_for_bit() {
    let mut rng = Rng::new(13);
    let rows = 6;
    // The formats decoded below; the newer dtypes have their own references in `kquant::tests`.
    for dtype in [DType::F32, DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let extra: &[usize] = if dtype == DType::F32 { &F32_COLS } else { &[] };
        for &cols in QUANT_COLS.iter().chain(extra) {
            let weights = random_weights(dtype, rows, cols, &mut rng);
            let x = random_activations(cols, &mut rng);
            let xq = xq_for(dtype, &x);
            let mut out = vec![f32::NAN; rows];
            let mut out_scalar = vec![f32::NAN; rows];
            matvec(dtype, &weights, rows, cols, &x, &xq, &mut out);
            scalar::matmul(dtype, &weights, rows, cols, 1, &x, &xq, &mut out_scalar);
            let row_bytes = dtype.row_bytes(cols).unwrap();
            for (r, row) in weights.chunks_exact(row_bytes).enumerate() {
                let want = spec_dot(dtype, row, &x, &xq);
                assert_eq!(out[r].to_bits(), want.to_bits(), "{} cols {cols} row {r}", dtype.name());
                assert_eq!(out_scalar[r].to_bits(), want.to_bits());
            }
        }
    }
}

#[test]
fn matmul_equals_per_token_matvec_bit_for_bit() {
    let mut rng = Rng::new(14);
    let rows = 5;
    for dtype in DType::ALL {
        let block = dtype.block_elems().max(QK);
        for cols in [block, 3 * block, 17 * block] {
            for n_tokens in [1, 2, 3, 4, 5, 8, 9, TOKEN_TILE, TOKEN_TILE + 7] {
                let weights = random_weights(dtype, rows, cols, &mut rng);
                let x = random_activations(n_tokens * cols, &mut rng);
                let xq = xq_for(dtype, &x);
                let mut y = vec![f32::NAN; n_tokens * rows];
                matmul(dtype, &weights, rows, cols, n_tokens, &x, &xq, &mut y);
                let mut y_scalar = vec![f32::NAN; n_tokens * rows];
                scalar::matmul(dtype, &weights, rows, cols, n_tokens, &x, &xq, &mut y_scalar);
                let mut out = vec![f32::NAN; rows];
                for (t, x1) in x.chunks_exact(cols).enumerate() {
                    matvec(dtype, &weights, rows, cols, x1, &xq_for(dtype, x1), &mut out);
                    for r in 0..rows {
                        let got = y[t * rows + r];
                        assert_eq!(got.to_bits(), out[r].to_bits(), "{} cols {cols} n {n_tokens} t {t} r {r}", dtype.name());
                        assert_eq!(y_scalar[t * rows + r].to_bits(), out[r].to_bits());
                    }
                }
            }
        }
    }
}

#[test]
fn unaligned_weight_bytes_give_the_same_result() {
    let mut rng = Rng::new(15);
    for dtype in DType::ALL {
        let (rows, cols) = (3, 3 * dtype.block_elems().max(QK));
        let weights = random_weights(dtype, rows, cols, &mut rng);
        let x = random_activations(cols, &mut rng);
        let xq = xq_for(dtype, &x);
        let mut shifted = vec![0u8; weights.len() + 3];
        shifted[3..].copy_from_slice(&weights);
        let (mut a, mut b) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        matvec(dtype, &weights, rows, cols, &x, &xq, &mut a);
        matvec(dtype, &shifted[3..], rows, cols, &x, &xq, &mut b);
        assert_eq!(a, b);
    }
}

#[test]
fn zero_columns_give_positive_zero() {
    let mut out = [f32::NAN; 3];
    let xq = QuantizedActivations::new();
    for dtype in DType::ALL {
        matvec(dtype, &[], 3, 0, &[], &xq, &mut out);
        assert!(out.iter().all(|v| v.to_bits() == 0), "{}", dtype.name());
        out = [f32::NAN; 3];
    }
}

#[cfg(feature = "kernel-selftest")]
#[test]
fn kernel_selftest_passes_natively() {
    assert_eq!(kernel_selftest(), 0);
}

#[test]
fn kernel_cols_are_whole_blocks_with_every_group_tail() {
    for dtype in DType::ALL {
        let cols = crate::quant::testdata::kernel_cols(dtype);
        assert!(cols.iter().all(|&c| dtype.row_bytes(c).is_some()), "{}", dtype.name());
        // 32-element formats: every remainder of the kernels' groups of four blocks. (A k-quant
        // super-block is two whole groups, so there the counts of super-blocks vary instead.)
        let tails: std::collections::BTreeSet<usize> = match dtype.block_elems() {
            1 => cols.iter().map(|c| c % 16).collect(),
            QK => cols.iter().map(|c| (c / QK) % 4).collect(),
            n => cols.iter().map(|c| c / n).collect(),
        };
        assert!(tails.len() >= 4, "{}: {cols:?}", dtype.name());
    }
}
