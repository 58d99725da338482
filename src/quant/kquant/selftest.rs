//! The shipped-GGUF-dtype part of `kernel_selftest`: the SIMD128 row kernels against the scalar
//! reference, bit for bit, for one token and for token groups of four (the `matmul` path), over
//! awkward row lengths ([`ROW_BLOCKS`] blocks of each dtype, plus [`F16_COLS`] for `f16`).

use alloc::vec;

use super::layout::{self, BlockLayout};
use super::scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use super::simd128 as fast;
// Without SIMD128 the dispatched kernels are the scalar ones; the comparison still runs the
// four-token path against the one-token one.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use super::scalar as fast;
use super::testdata::{random_rows, F16_COLS, ROW_BLOCKS};
use crate::quant::testdata::{random_activations, Rng};
use crate::quant::{QuantizedActivations, RowKernel, TOKEN_GROUP};

/// Output values whose bits differ between the fast and the scalar kernels (0 = pass), plus the
/// vector `f16` widening's mismatches over all 65536 patterns.
pub(crate) fn mismatches() -> u32 {
    let mut mismatches = 0u32;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        mismatches = mismatches.saturating_add(super::simd128::f16x4_mismatches());
    }
    let mut rng = Rng::new(0x5eed_0015);
    for l in layout::ALL {
        let extra: &[usize] = if l.block_elems == 1 { &F16_COLS } else { &[] };
        let cols_list = ROW_BLOCKS
            .iter()
            .map(|n| n * l.block_elems.max(32))
            .chain(extra.iter().copied());
        for cols in cols_list {
            // 5 tokens: one group of four and a remainder of one.
            let n = match l.ggml_type {
                1 => compare::<scalar::F16Kernel, fast::F16Kernel>(&l, cols, 5, &mut rng),
                6 => compare::<scalar::Q5_0Kernel, fast::Q5_0Kernel>(&l, cols, 5, &mut rng),
                7 => compare::<scalar::Q5_1Kernel, fast::Q5_1Kernel>(&l, cols, 5, &mut rng),
                12 => compare::<scalar::Q4KKernel, fast::Q4KKernel>(&l, cols, 5, &mut rng),
                13 => compare::<scalar::Q5KKernel, fast::Q5KKernel>(&l, cols, 5, &mut rng),
                _ => compare::<scalar::Q6KKernel, fast::Q6KKernel>(&l, cols, 5, &mut rng),
            };
            mismatches = mismatches.saturating_add(n);
        }
    }
    mismatches
}

fn differ(a: f32, b: f32) -> u32 {
    (a.to_bits() != b.to_bits()) as u32
}

/// Three rows of `cols` against `n_tokens` tokens: `Fast::dot` for groups of [`TOKEN_GROUP`] and
/// for single tokens, each against `Reference::dot` one token at a time.
fn compare<Reference: RowKernel, Fast: RowKernel>(
    l: &BlockLayout,
    cols: usize,
    n_tokens: usize,
    rng: &mut Rng,
) -> u32 {
    let rows = 3;
    let weights = random_rows(l, rows, cols, rng);
    let x = random_activations(n_tokens * cols, rng);
    let mut xq = QuantizedActivations::new();
    if l.block_elems > 1 {
        xq.quantize(&x);
    }
    let row_bytes = weights.len() / rows;
    let mut mismatches = 0u32;
    let mut expect = vec![0.0f32; n_tokens];
    for row in weights.chunks_exact(row_bytes.max(1)) {
        for (t, e) in expect.iter_mut().enumerate() {
            [*e] = Reference::dot(row, [Reference::act(&x, &xq, t, cols)]);
        }
        let mut t = 0;
        while t + TOKEN_GROUP <= n_tokens {
            let acts: [Fast::Act<'_>; TOKEN_GROUP] =
                core::array::from_fn(|i| Fast::act(&x, &xq, t + i, cols));
            for (i, v) in Fast::dot(row, acts).into_iter().enumerate() {
                mismatches += differ(v, expect[t + i]);
            }
            t += TOKEN_GROUP;
        }
        for (t, &e) in expect.iter().enumerate() {
            let [v] = Fast::dot(row, [Fast::act(&x, &xq, t, cols)]);
            mismatches += differ(v, e);
        }
    }
    mismatches
}
