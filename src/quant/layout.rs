//! Block layouts as data: for each dtype, elements per block, bytes per block and where each field
//! sits (`abi/FORMAT.md`, "Dtypes"; ggml's `block_q8_0`, `block_q4_0`, `block_q4_1`, `block_q5_0`,
//! `block_q5_1`, `block_q4_K`, `block_q5_K`, `block_q6_K` in `ggml-common.h`, with `QK_K = 256` and
//! `K_SCALE_SIZE = 12`). Everything that walks tensor bytes block by block — the package parser's row
//! sizes and finiteness check, the kernels, the test data, the adapter patcher, the harness's
//! dequantizer — reads these numbers instead of repeating them.
//!
//! A new dtype adds one `BlockLayout` here, one arm in [`DType::layout`](super::DType::layout) and
//! its element formulas; block sizes other than 32 (k-quants' 256-element super-blocks) are just
//! another `elements` value. Which bits of which field make up element `e`'s quant is stated per
//! dtype in `quant::kquant` and FORMAT.md; the kinds below say what a field holds. The asserts at the bottom are checked at compile time: each layout's
//! fields tile its block exactly, and [`MAX_BLOCK_BYTES`] / [`MAX_BLOCK_ELEMENTS`] bound them all.

use super::DType;

/// What a block field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// One little-endian IEEE binary32 value (the only field of an `f32` "block"); must be finite.
    F32,
    /// One little-endian IEEE binary16 value: a scale `d` or a minimum `m`; must be finite.
    F16,
    /// `len` signed 8-bit quants, element `j` in byte `j`.
    I8Quants,
    /// `len` bytes of 4-bit quants: element `j < len` is the low nibble of byte `j`, element
    /// `j ≥ len` the high nibble of byte `j − len`.
    U4Quants,
    /// The low four quant bits of a 256-element super-block (`q4_k`/`q5_k` `qs`, `q6_k` `ql`),
    /// two elements per byte in the dtype's k-quant order.
    U4QuantsK,
    /// The quant bits above the low four (`qh` of `q5_0`, `q5_1`, `q5_k`: one bit per element;
    /// of `q6_k`: two bits per element).
    HighQuantBits,
    /// `q4_k`/`q5_k` `scales[12]`: eight 6-bit sub-block scales and eight 6-bit minimums, packed
    /// (ggml's `get_scale_min_k4`).
    PackedScales6,
    /// `q6_k` `scales[16]`: one signed 8-bit scale per 16 elements.
    I8Scales,
}

impl FieldKind {
    /// Whether the package parser requires the field's value to be finite (scales and `f32`s).
    pub const fn must_be_finite(self) -> bool {
        matches!(self, FieldKind::F32 | FieldKind::F16)
    }
}

/// One field of a block: `len` bytes at byte `offset` from the block's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockField {
    pub name: &'static str,
    pub offset: usize,
    pub len: usize,
    pub kind: FieldKind,
}

/// The byte layout of one block of a dtype. Rows are whole blocks laid end to end, little-endian,
/// no padding, no alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    /// Elements per block.
    pub elements: usize,
    /// Bytes per block.
    pub bytes: usize,
    /// The fields in byte order; they tile `0..bytes` exactly (compile-time assert below).
    pub fields: &'static [BlockField],
}

impl BlockLayout {
    /// Offset of the field called `name`. In a `const` it fails the build when there is no such
    /// field, so kernels can name fields instead of repeating offsets.
    pub const fn offset_of(&self, name: &str) -> usize {
        let mut i = 0;
        while i < self.fields.len() {
            if str_eq(self.fields[i].name, name) {
                return self.fields[i].offset;
            }
            i += 1;
        }
        panic!("block layout has no field of that name")
    }

    /// `true` when the fields follow each other from byte 0 with no gap or overlap and end at
    /// `bytes`.
    pub const fn fields_tile_block(&self) -> bool {
        let mut at = 0;
        let mut i = 0;
        while i < self.fields.len() {
            if self.fields[i].offset != at || self.fields[i].len == 0 {
                return false;
            }
            at += self.fields[i].len;
            i += 1;
        }
        at == self.bytes
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const fn field(name: &'static str, offset: usize, len: usize, kind: FieldKind) -> BlockField {
    BlockField { name, offset, len, kind }
}

/// `f32`: one element per "block".
pub const F32: BlockLayout = BlockLayout { elements: 1, bytes: 4, fields: &[field("value", 0, 4, FieldKind::F32)] };

/// `q8_0` (ggml `block_q8_0`): `f16 d`, `i8 qs[32]`; element `j` is `d · qs[j]`.
pub const Q8_0: BlockLayout = BlockLayout { elements: 32, bytes: 34, fields: &[field("d", 0, 2, FieldKind::F16), field("qs", 2, 32, FieldKind::I8Quants)] };

/// `q4_0` (ggml `block_q4_0`): `f16 d`, `u8 qs[16]`; element `j` is `d · (nibble(j) − 8)`.
pub const Q4_0: BlockLayout = BlockLayout { elements: 32, bytes: 18, fields: &[field("d", 0, 2, FieldKind::F16), field("qs", 2, 16, FieldKind::U4Quants)] };

/// `q4_1` (ggml `block_q4_1`): `f16 d`, `f16 m`, `u8 qs[16]`; element `j` is `d · nibble(j) + m`.
pub const Q4_1: BlockLayout = BlockLayout {
    elements: 32,
    bytes: 20,
    fields: &[field("d", 0, 2, FieldKind::F16), field("m", 2, 2, FieldKind::F16), field("qs", 4, 16, FieldKind::U4Quants)],
};

/// `f16`: one element per "block", like `f32`.
pub const F16: BlockLayout = BlockLayout { elements: 1, bytes: 2, fields: &[field("value", 0, 2, FieldKind::F16)] };

/// `q5_0` (ggml `block_q5_0`): `f16 d`, `u8 qh[4]`, `u8 qs[16]`; element `j` is
/// `d · (q(j) − 16)` with `q(j) = nibble(j) | (bit j of qh as a little-endian u32) << 4`.
pub const Q5_0: BlockLayout = BlockLayout {
    elements: 32,
    bytes: 22,
    fields: &[field("d", 0, 2, FieldKind::F16), field("qh", 2, 4, FieldKind::HighQuantBits), field("qs", 6, 16, FieldKind::U4Quants)],
};

/// `q5_1` (ggml `block_q5_1`): `f16 d`, `f16 m`, `u8 qh[4]`, `u8 qs[16]`; element `j` is
/// `d · q(j) + m`, `q(j)` as for `q5_0`.
pub const Q5_1: BlockLayout = BlockLayout {
    elements: 32,
    bytes: 24,
    fields: &[
        field("d", 0, 2, FieldKind::F16),
        field("m", 2, 2, FieldKind::F16),
        field("qh", 4, 4, FieldKind::HighQuantBits),
        field("qs", 8, 16, FieldKind::U4Quants),
    ],
};

/// `q4_k` (ggml `block_q4_K`): `f16 d`, `f16 dmin`, `u8 scales[12]`, `u8 qs[128]`; eight
/// sub-blocks of 32 with 6-bit scale `sc_s` and minimum `m_s`: `(d · sc_s) · q − dmin · m_s`.
pub const Q4_K: BlockLayout = BlockLayout {
    elements: 256,
    bytes: 144,
    fields: &[
        field("d", 0, 2, FieldKind::F16),
        field("dmin", 2, 2, FieldKind::F16),
        field("scales", 4, 12, FieldKind::PackedScales6),
        field("qs", 16, 128, FieldKind::U4QuantsK),
    ],
};

/// `q5_k` (ggml `block_q5_K`): `q4_k` plus `u8 qh[32]` holding each element's fifth quant bit.
pub const Q5_K: BlockLayout = BlockLayout {
    elements: 256,
    bytes: 176,
    fields: &[
        field("d", 0, 2, FieldKind::F16),
        field("dmin", 2, 2, FieldKind::F16),
        field("scales", 4, 12, FieldKind::PackedScales6),
        field("qh", 16, 32, FieldKind::HighQuantBits),
        field("qs", 48, 128, FieldKind::U4QuantsK),
    ],
};

/// `q6_k` (ggml `block_q6_K`): `u8 ql[128]`, `u8 qh[64]`, `i8 scales[16]`, `f16 d` (the scale is
/// the *last* field); element `e` is `(d · scales[e / 16]) · (q − 32)` with a 6-bit `q`.
pub const Q6_K: BlockLayout = BlockLayout {
    elements: 256,
    bytes: 210,
    fields: &[
        field("ql", 0, 128, FieldKind::U4QuantsK),
        field("qh", 128, 64, FieldKind::HighQuantBits),
        field("scales", 192, 16, FieldKind::I8Scales),
        field("d", 208, 2, FieldKind::F16),
    ],
};

/// The most fields per block whose value must be finite ([`FieldKind::must_be_finite`]), so the
/// finiteness check can gather them into a fixed array.
pub const MAX_FINITE_FIELDS: usize = 4;

/// The largest block of any dtype, in bytes: fixed-size block buffers (the adapter patcher's) are
/// this big.
pub const MAX_BLOCK_BYTES: usize = max_over_dtypes(true);
/// The most elements in a block of any dtype.
pub const MAX_BLOCK_ELEMENTS: usize = max_over_dtypes(false);

const fn max_over_dtypes(bytes: bool) -> usize {
    let mut max = 0;
    let mut i = 0;
    while i < DType::ALL.len() {
        let l = DType::ALL[i].layout();
        let v = if bytes { l.bytes } else { l.elements };
        if v > max {
            max = v;
        }
        i += 1;
    }
    max
}

const fn check_all_layouts() -> bool {
    let mut i = 0;
    while i < DType::ALL.len() {
        let l = DType::ALL[i].layout();
        // Fields tile the block; quantized blocks are whole multiples of the 32-element activation
        // block (so a weight block never straddles two activation blocks' scales), and a row of
        // whole blocks never splits one.
        if !l.fields_tile_block() || l.bytes > MAX_BLOCK_BYTES || l.elements > MAX_BLOCK_ELEMENTS {
            return false;
        }
        if l.elements != 1 && !l.elements.is_multiple_of(super::QK) {
            return false;
        }
        let mut n_finite = 0;
        let mut f = 0;
        while f < l.fields.len() {
            if l.fields[f].kind.must_be_finite() {
                n_finite += 1;
            }
            f += 1;
        }
        if n_finite > MAX_FINITE_FIELDS {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(check_all_layouts());
// The bit-compatible sizes of FORMAT.md "Dtypes" (a change here changes the file format).
const _: () = assert!(Q8_0.bytes == 2 + Q8_0.elements && Q4_0.bytes == 2 + Q4_0.elements / 2);
const _: () = assert!(Q4_1.bytes == 2 + 2 + Q4_1.elements / 2);
const _: () = assert!(F16.bytes == 2 && Q5_0.bytes == 2 + 4 + 16 && Q5_1.bytes == 2 + 2 + 4 + 16);
// ggml's static_asserts: `2·sizeof(ggml_half) + K_SCALE_SIZE + QK_K/2` (+ `QK_K/8` for q5_K),
// `3·QK_K/4 + QK_K/16 + sizeof(ggml_half)`.
const _: () = assert!(Q4_K.bytes == 4 + 12 + 256 / 2 && Q5_K.bytes == 4 + 12 + 256 / 8 + 256 / 2);
const _: () = assert!(Q6_K.bytes == 3 * 256 / 4 + 256 / 16 + 2);
const _: () = assert!(MAX_BLOCK_BYTES == 210 && MAX_BLOCK_ELEMENTS == 256);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{f32_to_f16, first_non_finite, quantize_row};

    /// (dtype, elements, bytes, [(field, offset, len, kind)]) as FORMAT.md "Dtypes" states them.
    #[test]
    fn layout_table_matches_format_md() {
        use FieldKind::*;
        type Fields = &'static [(&'static str, usize, usize, FieldKind)];
        let expect: [(DType, usize, usize, Fields); 10] = [
            (DType::F32, 1, 4, &[("value", 0, 4, F32)]),
            (DType::Q8_0, 32, 34, &[("d", 0, 2, F16), ("qs", 2, 32, I8Quants)]),
            (DType::Q4_0, 32, 18, &[("d", 0, 2, F16), ("qs", 2, 16, U4Quants)]),
            (DType::Q4_1, 32, 20, &[("d", 0, 2, F16), ("m", 2, 2, F16), ("qs", 4, 16, U4Quants)]),
            (DType::F16, 1, 2, &[("value", 0, 2, F16)]),
            (DType::Q5_0, 32, 22, &[("d", 0, 2, F16), ("qh", 2, 4, HighQuantBits), ("qs", 6, 16, U4Quants)]),
            (DType::Q5_1, 32, 24, &[("d", 0, 2, F16), ("m", 2, 2, F16), ("qh", 4, 4, HighQuantBits), ("qs", 8, 16, U4Quants)]),
            (DType::Q4_K, 256, 144, &[("d", 0, 2, F16), ("dmin", 2, 2, F16), ("scales", 4, 12, PackedScales6), ("qs", 16, 128, U4QuantsK)]),
            (
                DType::Q5_K,
                256,
                176,
                &[("d", 0, 2, F16), ("dmin", 2, 2, F16), ("scales", 4, 12, PackedScales6), ("qh", 16, 32, HighQuantBits), ("qs", 48, 128, U4QuantsK)],
            ),
            (DType::Q6_K, 256, 210, &[("ql", 0, 128, U4QuantsK), ("qh", 128, 64, HighQuantBits), ("scales", 192, 16, I8Scales), ("d", 208, 2, F16)]),
        ];
        for (dtype, elements, bytes, fields) in expect {
            let l = dtype.layout();
            assert_eq!((l.elements, l.bytes), (elements, bytes), "{}", dtype.name());
            assert_eq!((dtype.block_elems(), dtype.block_bytes()), (elements, bytes));
            let got: alloc::vec::Vec<_> = l.fields.iter().map(|f| (f.name, f.offset, f.len, f.kind)).collect();
            assert_eq!(got, fields, "{}", dtype.name());
            assert!(l.fields_tile_block());
            // Row sizes are whole blocks.
            assert_eq!(dtype.row_bytes(3 * elements), Some(3 * bytes));
        }
        assert_eq!((MAX_BLOCK_BYTES, MAX_BLOCK_ELEMENTS), (210, 256));
    }

    #[test]
    fn offsets_are_found_by_name() {
        assert_eq!(Q4_1.offset_of("d"), 0);
        assert_eq!(Q4_1.offset_of("m"), 2);
        assert_eq!(Q4_1.offset_of("qs"), 4);
        assert_eq!(Q8_0.offset_of("qs"), 2);
    }

    #[test]
    fn tiling_rejects_gaps_overlaps_and_short_blocks() {
        use FieldKind::I8Quants;
        const GAP: &[BlockField] = &[field("d", 0, 2, I8Quants), field("qs", 3, 31, I8Quants)];
        const OVERLAP: &[BlockField] = &[field("d", 0, 2, I8Quants), field("qs", 1, 33, I8Quants)];
        const SHORT: &[BlockField] = &[field("d", 0, 2, I8Quants), field("qs", 2, 31, I8Quants)];
        const EXACT: &[BlockField] = &[field("d", 0, 2, I8Quants), field("qs", 2, 32, I8Quants)];
        let block = |fields| BlockLayout { elements: 32, bytes: 34, fields };
        for bad in [&[][..], GAP, OVERLAP, SHORT] {
            assert!(!block(bad).fields_tile_block(), "{bad:?}");
        }
        assert!(block(EXACT).fields_tile_block());
    }

    /// Every must-be-finite field, found from the table, is checked; no other field is.
    #[test]
    fn first_non_finite_checks_each_scale_field_of_the_table() {
        for dtype in DType::ALL {
            let l = dtype.layout();
            let values: alloc::vec::Vec<f32> = (0..3 * l.elements).map(|i| (i as f32 - 40.0) * 0.01).collect();
            let mut row = alloc::vec![0u8; 3 * l.bytes];
            quantize_row(dtype, &values, &mut row);
            assert_eq!(first_non_finite(dtype, &row), None, "{}", dtype.name());
            for f in l.fields {
                let at = l.bytes + f.offset; // block 1
                for bad in [f32::INFINITY, f32::NAN] {
                    let mut b = row.clone();
                    match f.kind {
                        FieldKind::F16 => b[at..at + 2].copy_from_slice(&f32_to_f16(bad).to_le_bytes()),
                        FieldKind::F32 => b[at..at + 4].copy_from_slice(&bad.to_le_bytes()),
                        // Quants have no non-finite values: all-ones bytes are ordinary quants.
                        _ => b[at..at + f.len].fill(0xff),
                    }
                    let want = if f.kind.must_be_finite() { Some(1) } else { None };
                    assert_eq!(first_non_finite(dtype, &b), want, "{} field {}", dtype.name(), f.name);
                }
            }
        }
    }
}
