//! Deterministic pseudo-random rows of the shipped GGUF dtypes, for the unit tests and the kernel
//! self-test: random quant bytes (every quant value and scale byte occurs) with finite `f16`
//! fields of mixed magnitudes, including zero, negative and subnormal ones; `f16` rows are random
//! finite values.

use alloc::vec;
use alloc::vec::Vec;

use crate::quant::f32_to_f16;
use crate::quant::testdata::Rng;
use crate::quant::DType;

/// Row lengths for the kernel comparisons, in blocks of the dtype: every `n % 4` tail for the
/// 32-element formats and 1, 2, 3, 7 and 9 super-blocks for the k-quants.
pub(crate) const ROW_BLOCKS: [usize; 7] = [1, 2, 3, 5, 7, 9, 28];

/// Extra `f16` row lengths (elements): every tail around the 16-lane step.
pub(crate) const F16_COLS: [usize; 9] = [1, 3, 15, 16, 17, 31, 33, 127, 129];

/// A random finite `f16` field: mostly normal magnitudes near `typical`, sometimes subnormal or
/// zero, a quarter of them negative.
pub(crate) fn random_f16_field(rng: &mut Rng, typical: f32) -> u16 {
    let sign = if rng.below(4) == 0 { 0x8000 } else { 0 };
    match rng.below(16) {
        0 => sign,
        1 => rng.below(0x400) as u16 | sign,
        _ => f32_to_f16(typical * (0.25 + rng.unit().abs() * 4.0)) | sign,
    }
}

/// `rows × cols` weights of `layout` (`cols` a multiple of its block).
pub(crate) fn random_rows(layout: &DType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let row_bytes = layout.row_bytes(cols).unwrap_or(0);
    let mut bytes = vec![0u8; rows * row_bytes];
    if layout.block_elems() == 1 {
        for v in bytes.chunks_exact_mut(2) {
            v.copy_from_slice(&f32_to_f16(rng.spread(0.05)).to_le_bytes());
        }
        return bytes;
    }
    for b in bytes.iter_mut() {
        *b = rng.next_u64() as u8;
    }
    for block in bytes.chunks_exact_mut(layout.block_bytes()) {
        for at in super::f16_offsets(*layout) {
            let bits = random_f16_field(rng, 0.01);
            block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    bytes
}
