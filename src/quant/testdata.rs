//! Deterministic pseudo-random weights and activations for the unit tests and `kernel_selftest`.
//!
//! The data is deliberately awkward: rows quantized from values of very different magnitudes, rows
//! of raw random quant bytes (so `q8_0` holds −128 and every nibble occurs) with random finite
//! scales including `f16` subnormals and zero, and activations with all-zero, tiny and outlier
//! blocks.

use alloc::vec;
use alloc::vec::Vec;

use super::{f32_to_f16, quantize_row, DType, FieldKind, QK};

/// Row lengths for quantized dtypes: one to 48 blocks, with every `n_blocks % 4` tail.
pub(crate) const QUANT_COLS: [usize; 6] = [32, 64, 96, 544, 576, 1536];
/// Extra row lengths for `f32`: every `cols % 16` tail and sizes around the 16-lane step.
pub(crate) const F32_COLS: [usize; 11] = [1, 2, 3, 15, 16, 17, 31, 33, 63, 127, 129];

/// Row lengths for `dtype`'s kernel comparisons: [`QUANT_COLS`] for the 32-element formats, plus
/// [`F32_COLS`] for the elementwise ones (`f32`, `f16`), and 1, 2, 3, 5, 7 and 9 super-blocks (every
/// `n_blocks % 4` tail of the 32-element activation blocks' groups) for the k-quants.
pub(crate) fn kernel_cols(dtype: DType) -> Vec<usize> {
    match dtype.block_elems() {
        1 => QUANT_COLS.iter().chain(&F32_COLS).copied().collect(),
        QK => QUANT_COLS.to_vec(),
        n => [1, 2, 3, 5, 7, 9].iter().map(|k| k * n).collect(),
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and good enough for test data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[-1, 1)`.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A value with a random sign and a magnitude spread over about `2^-8 .. 2^4` times `scale`.
    pub(crate) fn spread(&mut self, scale: f32) -> f32 {
        let exp = self.below(13) as i32 - 8;
        self.unit() * scale * libm::exp2f(exp as f32)
    }
}

/// A random finite `f16` scale: mostly normal magnitudes near `typical`, sometimes subnormal or zero.
fn random_scale_bits(rng: &mut Rng, typical: f32) -> u16 {
    match rng.below(16) {
        0 => 0,
        1 => rng.below(0x400) as u16 | if rng.below(2) == 0 { 0 } else { 0x8000 }, // subnormal
        _ => f32_to_f16(typical * (0.25 + rng.unit().abs() * 4.0) * if rng.below(8) == 0 { -1.0 } else { 1.0 }),
    }
}

/// `rows × cols` weights of `dtype` (`cols` a multiple of the dtype's block).
pub(crate) fn random_weights(dtype: DType, rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let row_bytes = dtype.row_bytes(cols).unwrap_or(0);
    let mut bytes = vec![0u8; rows * row_bytes];
    let mut values = vec![0.0f32; cols];
    for row in bytes.chunks_exact_mut(row_bytes.max(1)) {
        let raw = dtype != DType::F32 && rng.below(3) == 0;
        if raw {
            for b in row.iter_mut() {
                *b = rng.next_u64() as u8;
            }
            // Raw bytes may spell an infinite or NaN f16: give every scale field a finite value.
            let layout = dtype.layout();
            for block in row.chunks_exact_mut(layout.bytes) {
                for f in layout.fields.iter().filter(|f| f.kind == FieldKind::F16) {
                    let bits = random_scale_bits(rng, 0.01);
                    block[f.offset..f.offset + 2].copy_from_slice(&bits.to_le_bytes());
                }
            }
        } else {
            let scale = libm::exp2f(rng.below(9) as f32 - 6.0);
            for v in values.iter_mut() {
                *v = rng.spread(scale);
            }
            // Occasionally a constant block, an all-zero block or a block of one sign.
            // A quantized block, or 32 f32 elements.
            let block = dtype.block_elems().max(QK);
            if cols >= block && rng.below(2) == 0 {
                let b = rng.below((cols / block) as u64) as usize;
                let kind = rng.below(3);
                for v in &mut values[b * block..(b + 1) * block] {
                    *v = match kind {
                        0 => 0.0,
                        1 => 0.75 * scale,
                        _ => v.abs(),
                    };
                }
            }
            quantize_row(dtype, &values, row);
        }
    }
    bytes
}

/// `len` activations (`len` a multiple of 32 when they are to be quantized).
pub(crate) fn random_activations(len: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..len).map(|_| rng.spread(1.0)).collect();
    for block in x.chunks_mut(QK) {
        match rng.below(10) {
            0 => block.iter_mut().for_each(|v| *v = 0.0),
            1 => block.iter_mut().for_each(|v| *v *= 1e-6),
            2 => {
                let i = rng.below(block.len() as u64) as usize;
                block[i] = 300.0 * rng.unit();
            }
            _ => {}
        }
    }
    x
}
