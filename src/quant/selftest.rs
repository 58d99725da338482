//! `kernel_selftest`: the scalar reference against the dispatched kernels, for the wasm build.
//!
//! Native `cargo test` cannot execute SIMD128, so a test build of the module exports this function
//! and a wasmtime host calls it. It compares bit patterns, so a single ulp of difference counts.

use alloc::vec;
use alloc::vec::Vec;

use super::testdata::{kernel_cols, random_activations, random_weights, Rng};
use super::{matmul, matvec, scalar, ActScheme, DType, QuantizedActivations, TOKEN_TILE};

/// Runs the dispatched `matvec` / `matmul` (SIMD128 in a wasm `+simd128` build) against
/// [`scalar`] over each dtype's row lengths (`testdata::kernel_cols`) with deterministic
/// pseudo-random data, `matmul` against per-token `matvec`, and (SIMD128) the vector `f16`
/// widening against [`f16_to_f32`](super::f16_to_f32) for all 65536 patterns. Returns the number of output values
/// whose bits differ (0 = pass).
pub fn kernel_selftest() -> u32 {
    let mut mismatches = 0u32;
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        mismatches = mismatches.saturating_add(super::simd128::f16x4_mismatches());
    }
    let mut rng = Rng::new(0x5eed_0001);
    for dtype in DType::ALL {
        for cols in kernel_cols(dtype) {
            // 13 tokens: three groups of 4 and a remainder of 1; 37 crosses a token tile.
            for n_tokens in [1, 13, TOKEN_TILE + 5] {
                mismatches = mismatches.saturating_add(compare(dtype, 7, cols, n_tokens, &mut rng));
            }
        }
    }
    mismatches
}

fn count_bit_mismatches(a: &[f32], b: &[f32]) -> u32 {
    let differ = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    let missing = a.len().abs_diff(b.len());
    u32::try_from(differ + missing).unwrap_or(u32::MAX)
}

fn compare(dtype: DType, rows: usize, cols: usize, n_tokens: usize, rng: &mut Rng) -> u32 {
    let weights = random_weights(dtype, rows, cols, rng);
    let x = random_activations(n_tokens * cols, rng);
    let mut xq = QuantizedActivations::new();
    if let Some(scheme) = ActScheme::for_dtype(dtype) {
        if xq.quantize(scheme, &x).is_err() {
            return u32::MAX; // out of memory: report "not verified" rather than trap
        }
    }
    let mut mismatches = 0u32;

    let mut y_fast = vec![0.0f32; n_tokens * rows];
    let mut y_ref = vec![0.0f32; n_tokens * rows];
    matmul(dtype, &weights, rows, cols, n_tokens, &x, &xq, &mut y_fast);
    scalar::matmul(dtype, &weights, rows, cols, n_tokens, &x, &xq, &mut y_ref);
    mismatches = mismatches.saturating_add(count_bit_mismatches(&y_fast, &y_ref));

    // Per-token matvec, each token quantized on its own.
    let mut y_tokens: Vec<f32> = Vec::with_capacity(n_tokens * rows);
    let mut x1q = QuantizedActivations::new();
    let mut out = vec![0.0f32; rows];
    for x1 in x.chunks_exact(cols) {
        if let Some(scheme) = ActScheme::for_dtype(dtype) {
            if x1q.quantize(scheme, x1).is_err() {
                return u32::MAX;
            }
        }
        matvec(dtype, &weights, rows, cols, x1, &x1q, &mut out);
        y_tokens.extend_from_slice(&out);
    }
    mismatches.saturating_add(count_bit_mismatches(&y_fast, &y_tokens))
}
