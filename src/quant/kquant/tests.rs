//! Unit tests: layouts, the dequantizers against numpy test vectors (random and real blocks), the
//! 6-bit scale unpacking, the finiteness check, exactness of the integer sums at their bounds, and
//! the scalar dot products against dequantize-then-`f64`.
//!
//! The SIMD128 kernels are pinned to the scalar ones bit for bit by `kernel_selftest` in the wasm
//! build (`kquant::selftest`).

use alloc::vec;
use alloc::vec::Vec;

use super::dequant::{q5_qh, q5_quant, q6_k_quant};
use super::layout::{q4_k, q5_0, q5_1, q5_k, q6_k};
use super::scalar::{dot_f16, dot_q4_k, dot_q5_0, dot_q5_1, dot_q5_k, dot_q6_k, q4_k_isums, q5_0_isum, q5_1_isum, q5_k_isums, q6_k_isum};
use super::testdata::{random_rows, F16_COLS, ROW_BLOCKS};
use super::*;
use crate::quant::testdata::{random_activations, Rng};
use crate::quant::DType;
use crate::quant::{ActScheme, QuantizedActivations, XqView, QK};

/// Dequantization test vectors from the `gguf` package's numpy dequantizer
/// (`harness/scripts/gen_kquant_vectors.py` regenerates them).
const VECTORS: &[u8] = include_bytes!("testdata/dequant_vectors.bin");

fn dequantize(layout: &DType, src: &[u8], dst: &mut [f32]) {
    match layout.ggml_type() {
        1 => dequantize_row_f16(src, dst),
        6 => dequantize_row_q5_0(src, dst),
        7 => dequantize_row_q5_1(src, dst),
        12 => dequantize_row_q4_k(src, dst),
        13 => dequantize_row_q5_k(src, dst),
        14 => dequantize_row_q6_k(src, dst),
        t => panic!("no dequantizer for ggml type {t}"),
    }
}

fn layout_of(ggml_type: u32) -> DType {
    *super::DTYPES.iter().find(|l| l.ggml_type() == ggml_type).unwrap_or_else(|| panic!("ggml type {ggml_type} in the vectors is not one of ours"))
}

struct Record<'a> {
    layout: DType,
    real: bool,
    blocks: &'a [u8],
    expected: Vec<f32>,
}

fn read_u32(bytes: &[u8], at: &mut usize) -> u32 {
    let v = u32::from_le_bytes(bytes[*at..*at + 4].try_into().unwrap());
    *at += 4;
    v
}

fn records() -> Vec<Record<'static>> {
    assert_eq!(&VECTORS[..8], b"TRLQVEC1");
    let mut at = 8;
    let n = read_u32(VECTORS, &mut at);
    let mut out = Vec::new();
    for _ in 0..n {
        let layout = layout_of(read_u32(VECTORS, &mut at));
        let real = read_u32(VECTORS, &mut at) == 1;
        let n_blocks = read_u32(VECTORS, &mut at) as usize;
        let blocks = &VECTORS[at..at + n_blocks * layout.block_bytes()];
        at += blocks.len();
        let n_elems = n_blocks * layout.block_elems();
        let expected = VECTORS[at..at + 4 * n_elems].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        at += 4 * n_elems;
        out.push(Record { layout, real, blocks, expected });
    }
    assert_eq!(at, VECTORS.len(), "trailing bytes in the test vectors");
    out
}

/// `x` quantized as `dtype`'s kernel reads it (`ActScheme::for_dtype`).
fn xq_for(dtype: DType, x: &[f32]) -> QuantizedActivations {
    let mut xq = QuantizedActivations::new();
    let scheme = ActScheme::for_dtype(dtype).expect("a quantized dtype");
    xq.quantize(scheme, x).expect("activations fit");
    xq
}

fn view(xq: &QuantizedActivations) -> XqView<'_> {
    xq.view(0, xq.n_blocks())
}

// ---------------------------------------------------------------------------------------------
// Layouts

#[test]
fn layouts_match_ggml_sizes() {
    let expect = [("f16", 1, 1, 2), ("q5_0", 6, 32, 22), ("q5_1", 7, 32, 24), ("q4_k", 12, 256, 144), ("q5_k", 13, 256, 176), ("q6_k", 14, 256, 210)];
    for (l, (name, ty, elems, bytes)) in super::DTYPES.iter().zip(expect) {
        assert_eq!((l.name(), l.ggml_type(), l.block_elems(), l.block_bytes()), (name, ty, elems, bytes));
        assert_eq!(DType::from_ggml_type(ty), Some(*l));
        assert_eq!(DType::from_code(l.code()), Some(*l));
    }
    assert_eq!(DType::Q4_K.row_bytes(4864), Some(19 * 144));
    assert_eq!(DType::Q6_K.row_bytes(896), None);
    assert_eq!(DType::Q5_0.row_bytes(896), Some(28 * 22));
    assert_eq!(DType::F16.row_bytes(3), Some(6));
    assert_eq!(DType::F16.row_bytes(usize::MAX), None);
}

// ---------------------------------------------------------------------------------------------
// Dequantizers against numpy

#[test]
fn dequantizers_match_gguf_numpy_vectors_bit_for_bit() {
    let records = records();
    for name in ["q5_0", "q4_k", "q6_k"] {
        assert!(records.iter().any(|r| r.real && r.layout.name() == name), "no real-file blocks for {name}");
    }
    for name in ["f16", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"] {
        assert!(records.iter().any(|r| !r.real && r.layout.name() == name), "no random {name}");
    }
    for r in &records {
        let mut got = vec![f32::NAN; r.expected.len()];
        dequantize(&r.layout, r.blocks, &mut got);
        for (i, (g, e)) in got.iter().zip(&r.expected).enumerate() {
            let same = g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan());
            assert!(same, "{} ({}) element {i}: got {g:e}, numpy {e:e}", r.layout.name(), if r.real { "real" } else { "random" });
        }
    }
}

#[test]
fn dequantizers_write_only_whole_blocks_present_in_both() {
    let mut rng = Rng::new(7);
    let bytes = random_rows(&DType::Q4_K, 1, 512, &mut rng);
    let mut out = vec![-1.0f32; 300];
    dequantize_row_q4_k(&bytes, &mut out);
    assert!(out[256..].iter().all(|&v| v == -1.0));
    let mut full = vec![0.0f32; 512];
    dequantize_row_q4_k(&bytes[..200], &mut full); // one whole block and a partial one
    assert!(full[256..].iter().all(|&v| v == 0.0));
}

// ---------------------------------------------------------------------------------------------
// 6-bit scales

/// ggml's packing of eight (scale, min) pairs (the inverse of `get_scale_min_k4`, written from the
/// layout description in the module docs).
fn pack_scales(sc: [u8; 8], m: [u8; 8]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            out[j] = sc[j];
            out[j + 4] = m[j];
        } else {
            out[j + 4] = (sc[j] & 15) | (m[j] & 15) << 4;
            out[j - 4] |= (sc[j] >> 4) << 6;
            out[j] |= (m[j] >> 4) << 6;
        }
    }
    out
}

#[test]
fn scale_min_k4_unpacks_every_six_bit_pair() {
    let mut rng = Rng::new(11);
    for round in 0..200 {
        let sc: [u8; 8] = core::array::from_fn(|_| if round == 0 { 63 } else { rng.below(64) as u8 });
        let m: [u8; 8] = core::array::from_fn(|_| if round == 0 { 63 } else { rng.below(64) as u8 });
        let packed = pack_scales(sc, m);
        for j in 0..8 {
            assert_eq!(scale_min_k4(&packed, j), (sc[j], m[j]), "round {round} sub-block {j}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Finiteness

#[test]
fn first_non_finite_finds_each_f16_field() {
    let mut rng = Rng::new(3);
    for l in super::DTYPES {
        let n_blocks = 5;
        let clean = random_rows(&l, 1, n_blocks * l.block_elems(), &mut rng);
        assert_eq!(crate::quant::first_non_finite(l, &clean), None, "{}", l.name());
        for at in super::f16_offsets(l) {
            for bad in [0x7c00u16, 0xfc00, 0x7e00, 0x7c01] {
                let mut bytes = clean.clone();
                let b = 3;
                bytes[b * l.block_bytes() + at..][..2].copy_from_slice(&bad.to_le_bytes());
                assert_eq!(crate::quant::first_non_finite(l, &bytes), Some(b), "{} field {at}", l.name());
                // A partial trailing block is not examined.
                let cut = &bytes[..3 * l.block_bytes() + l.block_bytes() - 1];
                assert_eq!(crate::quant::first_non_finite(l, cut), None, "{}", l.name());
            }
        }
    }
    // Bytes that are not f16 fields may hold anything: the quants of a q6_K block.
    let mut block = vec![0xffu8; q6_k::BYTES];
    block[q6_k::D..].copy_from_slice(&0x3c00u16.to_le_bytes());
    assert_eq!(crate::quant::first_non_finite(DType::Q6_K, &block), None);
}

// ---------------------------------------------------------------------------------------------
// Integer sums

/// Sets the `f16` field at `at` to `v` (exact in f16).
fn set_f16(block: &mut [u8], at: usize, v: f32) {
    block[at..at + 2].copy_from_slice(&crate::quant::f32_to_f16(v).to_le_bytes());
}

/// Random activation quants of one block in −127..=127, with extremes.
fn random_x(rng: &mut Rng) -> [i16; 32] {
    core::array::from_fn(|_| match rng.below(8) {
        0 => 127,
        1 => -127,
        _ => rng.below(255) as i16 - 127,
    })
}

/// `Σ w·x` in i64 with `w` the dequantized values of a block whose scales were set so that the
/// dequantizer yields exact integers (the independent reference for the kernels' integer sums).
fn int_dot(w: &[f32], x: &[i16]) -> i64 {
    w.iter()
        .zip(x)
        .map(|(&w, &x)| {
            assert_eq!(w, libm::truncf(w), "dequantized weight {w} is not an integer");
            w as i64 * x as i64
        })
        .sum()
}

#[test]
fn integer_sums_are_exact_against_integer_dequantization() {
    let mut rng = Rng::new(0x15);
    for _ in 0..50 {
        // 32-element formats: d = 1 (and m = 0) makes y = q − 16 resp. q.
        let x = random_x(&mut rng);
        let mut b = random_rows(&DType::Q5_0, 1, 32, &mut rng);
        set_f16(&mut b, q5_0::D, 1.0);
        let mut w = [0.0f32; 32];
        dequantize_row_q5_0(&b, &mut w);
        assert_eq!(q5_0_isum(&b, &x) as i64, int_dot(&w, &x));

        let mut b = random_rows(&DType::Q5_1, 1, 32, &mut rng);
        set_f16(&mut b, q5_1::D, 1.0);
        set_f16(&mut b, q5_1::M, 0.0);
        dequantize_row_q5_1(&b, &mut w);
        assert_eq!(q5_1_isum(&b, &x) as i64, int_dot(&w, &x));

        // k-quants: (d, dmin) = (1, 0) gives sc·q; (0, 1) gives −m.
        let xs: Vec<[i16; 32]> = (0..8).map(|_| random_x(&mut rng)).collect();
        for (l, d_at, dmin_at, isums) in
            [(DType::Q4_K, q4_k::D, q4_k::DMIN, q4_k_isums as fn(&[u8], usize, &[i16], i32) -> (i32, i32)), (DType::Q5_K, q5_k::D, q5_k::DMIN, q5_k_isums)]
        {
            let mut b = random_rows(&l, 1, 256, &mut rng);
            let mut w_sc = [0.0f32; 256];
            let mut w_m = [0.0f32; 256];
            set_f16(&mut b, d_at, 1.0);
            set_f16(&mut b, dmin_at, 0.0);
            dequantize(&l, &b, &mut w_sc);
            set_f16(&mut b, d_at, 0.0);
            set_f16(&mut b, dmin_at, 1.0);
            dequantize(&l, &b, &mut w_m);
            for s in 0..8 {
                let x = &xs[s];
                let xsum: i32 = x.iter().map(|&v| v as i32).sum();
                let (isum, msum) = isums(&b, s, x, xsum);
                assert_eq!(isum as i64, int_dot(&w_sc[32 * s..32 * s + 32], x), "{} s {s}", l.name());
                assert_eq!(-(msum as i64), w_m[32 * s] as i64 * xsum as i64, "{} s {s}", l.name());
            }
        }

        let mut b = random_rows(&DType::Q6_K, 1, 256, &mut rng);
        set_f16(&mut b, q6_k::D, 1.0);
        let mut w = [0.0f32; 256];
        dequantize_row_q6_k(&b, &mut w);
        for (s, x) in xs.iter().enumerate() {
            assert_eq!(q6_k_isum(&b, s, x) as i64, int_dot(&w[32 * s..32 * s + 32], x));
        }
    }
}

fn bound(name: &str) -> i64 {
    ISUM_BOUNDS.iter().find(|(n, _)| *n == name).unwrap().1
}

#[test]
fn integer_sums_reach_their_stated_bounds_exactly() {
    let x_max = [127i16; 32];
    let x_min = [-127i16; 32];
    // q5_0: every quant 0 (q − 16 = −16).
    let b = vec![0u8; q5_0::BYTES];
    assert_eq!(q5_0_isum(&b, &x_max) as i64, -bound("q5_0"));
    // q5_1: every quant 31.
    let mut b = vec![0xffu8; q5_1::BYTES];
    set_f16(&mut b, q5_1::D, 1.0);
    set_f16(&mut b, q5_1::M, 1.0);
    assert_eq!(q5_1_isum(&b, &x_max) as i64, bound("q5_1"));
    // q4_K / q5_K: all scale and min bits set (sc = m = 63) and every quant at its maximum.
    for (l, name, isums) in [(DType::Q4_K, "q4_k", q4_k_isums as fn(&[u8], usize, &[i16], i32) -> (i32, i32)), (DType::Q5_K, "q5_k", q5_k_isums)] {
        let b = vec![0xffu8; l.block_bytes()];
        for s in 0..8 {
            let (isum, msum) = isums(&b, s, &x_min, -32 * 127);
            assert_eq!(isum as i64, -bound(name), "{name} s {s}");
            assert_eq!(msum as i64, -bound("q4_k msum"), "{name} s {s}");
        }
    }
    // q6_K: scales −128 and every quant 0 (q − 32 = −32).
    let mut b = vec![0u8; q6_k::BYTES];
    b[q6_k::SCALES..q6_k::D].fill(0x80);
    for s in 0..8 {
        assert_eq!(q6_k_isum(&b, s, &x_min) as i64, -bound("q6_k"));
        assert_eq!(q6_k_isum(&b, s, &x_max) as i64, bound("q6_k"));
    }
    for (name, v) in ISUM_BOUNDS {
        assert!(v < 1 << 24 && (v as f32) as i64 == v, "{name}");
    }
}

#[test]
fn quant_extraction_covers_every_bit_once() {
    // Setting one byte's bits must change exactly the quants the layout says it feeds.
    let mut b = vec![0u8; q6_k::BYTES];
    b[q6_k::QH + 32 + 5] = 0b11_00_00_00; // half 1, l = 5, quarter 3
    let changed: Vec<usize> = (0..256).filter(|&e| q6_k_quant(&b, e) != 0).collect();
    assert_eq!(changed, [128 + 96 + 5]);
    assert_eq!(q6_k_quant(&b, 128 + 96 + 5), 48);
    let mut b = vec![0u8; q5_0::BYTES];
    b[q5_0::QH + 2] = 0x01; // bit 16
    b[q5_0::QS + 3] = 0x70; // element 19's nibble
    let qh = q5_qh(&b, q5_0::QH);
    let q: Vec<i32> = (0..32).map(|e| q5_quant(qh, &b[q5_0::QS..], e)).collect();
    assert_eq!((q[16], q[19]), (16, 7));
    assert_eq!(q.iter().filter(|&&v| v != 0).count(), 2);
}

// ---------------------------------------------------------------------------------------------
// Dot products against dequantize-then-f64

/// Allowed `|kernel − f64 reference|` as a multiple of `2^-24 · Σ|parts|`, where `Σ|parts|` sums
/// `|d_x · x_q · w_part|` over both parts of each weight (`(d · sc) · q` and the minimum term),
/// because the reference's dequantized weight is itself rounded after a possibly cancelling
/// subtraction.
///
/// How it was chosen: first-order rounding bound `k · 2^-24 · Σ|parts|` with `k` the longest chain
/// of roundings — 3 in the reference weight, 3 in the kernel's block term, `ceil(n_blocks / 4)`
/// additions into one lane accumulator and 2 in the reduction (for `f16`: 1 product,
/// `ceil(n / 16)` additions, 4 in the reduction). The tolerance is twice that.
fn tolerance_ulps(n_acc: usize, per_lane: usize) -> f64 {
    2.0 * (n_acc.div_ceil(per_lane) + 8) as f64
}

fn dot_of(l: &DType) -> fn(&[u8], XqView<'_>) -> f32 {
    match l.ggml_type() {
        6 => dot_q5_0,
        7 => dot_q5_1,
        12 => dot_q4_k,
        13 => dot_q5_k,
        14 => dot_q6_k,
        _ => unreachable!(),
    }
}

/// The weights' minimum parts: the row dequantized with every `d` field zeroed (`m` for `q5_1`,
/// `−dmin · m_s` for the k-quants, 0 otherwise).
fn min_parts(l: &DType, row: &[u8], cols: usize) -> Vec<f32> {
    let mut bytes = row.to_vec();
    for block in bytes.chunks_exact_mut(l.block_bytes()) {
        let d_at = if l.ggml_type() == 14 { q6_k::D } else { 0 };
        block[d_at..d_at + 2].copy_from_slice(&[0, 0]);
    }
    let mut out = vec![0.0f32; cols];
    dequantize(l, &bytes, &mut out);
    out
}

#[test]
fn quantized_dots_match_dequantized_f64_reference() {
    let mut rng = Rng::new(0x15_d07);
    let mut worst = 0.0f64;
    for l in [DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K] {
        for &n in &ROW_BLOCKS {
            let cols = n * l.block_elems();
            for _ in 0..4 {
                let row = random_rows(&l, 1, cols, &mut rng);
                let x = random_activations(cols, &mut rng);
                let xq = xq_for(l, &x);
                let xv = view(&xq);
                let mut w = vec![0.0f32; cols];
                dequantize(&l, &row, &mut w);
                let mins = min_parts(&l, &row, cols);
                let (mut reference, mut mag) = (0.0f64, 0.0f64);
                for i in 0..cols {
                    let xd = xv.d[i / QK] as f64 * xv.qs[i] as f64;
                    if l == DType::Q5_1 {
                        // The minimum multiplies the activations' Q8_1 block sum `s`, below.
                        reference += (w[i] - mins[i]) as f64 * xd;
                    } else {
                        reference += w[i] as f64 * xd;
                    }
                    mag += ((w[i] - mins[i]).abs() as f64 + mins[i].abs() as f64) * xd.abs();
                }
                if l == DType::Q5_1 {
                    for b in 0..cols / QK {
                        reference += mins[b * QK] as f64 * xv.s[b] as f64;
                        mag += (mins[b * QK] as f64 * xv.s[b] as f64).abs();
                    }
                }
                let got = dot_of(&l)(&row, xv) as f64;
                let err = (got - reference).abs();
                let allowed = tolerance_ulps(cols / QK, 4) * mag / 16_777_216.0;
                assert!(err <= allowed, "{} cols {cols}: got {got}, f64 {reference}, |err| {err:e} > {allowed:e}", l.name());
                if mag > 0.0 {
                    worst = worst.max(err / (mag / 16_777_216.0));
                }
            }
        }
    }
    std::println!("largest error over the quantized dots: {worst:.2} x 2^-24 * sum|parts|");
}

#[test]
fn f16_dot_matches_f64_reference() {
    let mut rng = Rng::new(0x15_f16);
    for cols in F16_COLS.iter().copied().chain(ROW_BLOCKS.iter().map(|n| n * 32)) {
        let row = random_rows(&DType::F16, 1, cols, &mut rng);
        let x = random_activations(cols, &mut rng);
        let mut w = vec![0.0f32; cols];
        dequantize_row_f16(&row, &mut w);
        let reference: f64 = w.iter().zip(&x).map(|(&w, &x)| w as f64 * x as f64).sum();
        let mag: f64 = w.iter().zip(&x).map(|(&w, &x)| (w as f64 * x as f64).abs()).sum();
        let got = dot_f16(&row, &x) as f64;
        let allowed = tolerance_ulps(cols, 16) * mag / 16_777_216.0;
        assert!((got - reference).abs() <= allowed, "cols {cols}: {got} vs {reference}");
    }
    assert_eq!(dot_f16(&[], &[]).to_bits(), 0.0f32.to_bits());
}

#[test]
fn short_inputs_compute_only_common_blocks() {
    // Violated preconditions: nothing panics, only blocks both sides hold count.
    let mut rng = Rng::new(5);
    let row = random_rows(&DType::Q6_K, 1, 512, &mut rng);
    let xq = xq_for(DType::Q6_K, &random_activations(256, &mut rng));
    let one = dot_q6_k(&row[..q6_k::BYTES], view(&xq));
    assert_eq!(dot_q6_k(&row, view(&xq)).to_bits(), one.to_bits());
    assert_eq!(dot_q4_k(&row[..10], view(&xq)), 0.0);
    let xq = xq_for(DType::Q5_0, &random_activations(64, &mut rng));
    assert_eq!(dot_q5_k(&random_rows(&DType::Q5_K, 1, 256, &mut rng), view(&xq)), 0.0);
    let row = random_rows(&DType::Q5_0, 1, 96, &mut rng);
    assert_eq!(dot_q5_0(&row, view(&xq)).to_bits(), dot_q5_0(&row[..44], view(&xq)).to_bits());
}

/// The row kernels' `act` / `dot` (what `drive_matmul` calls) give, for each token of a batch,
/// exactly the plain dot product of that token's own activations.
fn row_kernel_matches_per_token<K: crate::quant::RowKernel>(l: &DType, dot1: impl Fn(&[u8], &[f32]) -> f32) {
    let mut rng = Rng::new(0x15_0a);
    let cols = 3 * l.block_elems().max(32);
    let n_tokens = 4;
    let row = random_rows(l, 1, cols, &mut rng);
    let x = random_activations(n_tokens * cols, &mut rng);
    let mut xq = QuantizedActivations::new();
    if let Some(scheme) = ActScheme::for_dtype(*l) {
        xq.quantize(scheme, &x).expect("activations fit");
    }
    let acts: [K::Act<'_>; 4] = core::array::from_fn(|t| K::act(&x, &xq, t, cols));
    let got = K::dot(&row, acts);
    for (t, g) in got.iter().enumerate() {
        let want = dot1(&row, &x[t * cols..(t + 1) * cols]);
        assert_eq!(g.to_bits(), want.to_bits(), "{} token {t}", l.name());
    }
}

#[test]
fn scalar_row_kernels_split_batches_by_token() {
    use super::scalar::*;
    let quantized = |l: DType, dot: fn(&[u8], XqView<'_>) -> f32| move |row: &[u8], x: &[f32]| dot(row, view(&xq_for(l, x)));
    row_kernel_matches_per_token::<F16Kernel>(&DType::F16, dot_f16);
    row_kernel_matches_per_token::<Q5_0Kernel>(&DType::Q5_0, quantized(DType::Q5_0, dot_q5_0));
    row_kernel_matches_per_token::<Q5_1Kernel>(&DType::Q5_1, quantized(DType::Q5_1, dot_q5_1));
    row_kernel_matches_per_token::<Q4KKernel>(&DType::Q4_K, quantized(DType::Q4_K, dot_q4_k));
    row_kernel_matches_per_token::<Q5KKernel>(&DType::Q5_K, quantized(DType::Q5_K, dot_q5_k));
    row_kernel_matches_per_token::<Q6KKernel>(&DType::Q6_K, quantized(DType::Q6_K, dot_q6_k));
}

/// `quant::quantize_row` reproduces ggml's C reference quantizers byte for byte
/// (`harness/scripts/gen_quant_vectors.py` ran `quantize_row_<type>_ref` from libggml-base).
#[test]
fn quantizers_match_ggml_reference_bytes() {
    let bytes: &[u8] = include_bytes!("testdata/quant_vectors.bin");
    assert_eq!(&bytes[..8], b"TRLQQNT1");
    let mut at = 8;
    let n = read_u32(bytes, &mut at);
    let mut seen = Vec::new();
    for _ in 0..n {
        let ty = read_u32(bytes, &mut at);
        let n_elems = read_u32(bytes, &mut at) as usize;
        let dtype = crate::quant::DType::from_ggml_type(ty).expect("a kept ggml type");
        let x: Vec<f32> = bytes[at..at + 4 * n_elems].chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        at += 4 * n_elems;
        let row_bytes = dtype.row_bytes(n_elems).unwrap();
        let want = &bytes[at..at + row_bytes];
        at += row_bytes;
        let mut got = vec![0u8; row_bytes];
        crate::quant::quantize_row(dtype, &x, &mut got);
        for (b, (g, w)) in got.chunks(dtype.block_bytes()).zip(want.chunks(dtype.block_bytes())).enumerate() {
            assert_eq!(g, w, "{} block {b}", dtype.name());
        }
        seen.push(dtype);
    }
    use crate::quant::DType;
    assert_eq!(seen, [DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K]);
    assert_eq!(at, bytes.len());
}

/// Requantizing what a quantizer wrote gives the same bytes back for the k-quants' stored
/// scale path, and the round trip stays within the format's step.
#[test]
fn k_quant_round_trip_is_within_a_step() {
    use crate::quant::{dequantize_row, quantize_row, DType};
    let mut rng = Rng::new(21);
    for dtype in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
        let x: Vec<f32> = (0..4 * QK_K).map(|_| rng.spread(0.05)).collect();
        let mut q = vec![0u8; dtype.row_bytes(x.len()).unwrap()];
        quantize_row(dtype, &x, &mut q);
        let mut back = vec![0.0f32; x.len()];
        dequantize_row(dtype, &q, &mut back);
        let levels = match dtype {
            DType::Q4_K => 15.0,
            DType::Q5_K => 31.0,
            _ => 63.0,
        };
        for (xb, yb) in x.chunks(QK_K).zip(back.chunks(QK_K)) {
            let range = xb.iter().fold(0.0f32, |m, v| m.max(v.abs())) * 2.0;
            // One level of the coarsest sub-block (sub-block scales are at most the block range
            // over the level count) plus the 6-bit / 8-bit scale rounding.
            let bound = range / levels * 1.6;
            for (a, b) in xb.iter().zip(yb) {
                assert!((a - b).abs() <= bound, "{}: {a} -> {b}, bound {bound}", dtype.name());
            }
        }
    }
}
