//! Block layouts as data: for each dtype, elements per block, bytes per block and where each field
//! sits (`abi/FORMAT.md`, "Dtypes"; ggml's `block_q8_0`, `block_q4_0`, `block_q4_1` in
//! `ggml-common.h`). Everything that walks tensor bytes block by block — the package parser's row
//! sizes and finiteness check, the kernels, the test data, the adapter patcher, the harness's
//! dequantizer — reads these numbers instead of repeating them.
//!
//! A new dtype adds one `BlockLayout` here, one arm in [`DType::layout`](super::DType::layout) and
//! its element formulas; block sizes other than 32 (k-quants' 256-element super-blocks) are just
//! another `elements` value. The asserts at the bottom are checked at compile time: each layout's
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
pub const Q8_0: BlockLayout = BlockLayout {
    elements: 32,
    bytes: 34,
    fields: &[field("d", 0, 2, FieldKind::F16), field("qs", 2, 32, FieldKind::I8Quants)],
};

/// `q4_0` (ggml `block_q4_0`): `f16 d`, `u8 qs[16]`; element `j` is `d · (nibble(j) − 8)`.
pub const Q4_0: BlockLayout = BlockLayout {
    elements: 32,
    bytes: 18,
    fields: &[field("d", 0, 2, FieldKind::F16), field("qs", 2, 16, FieldKind::U4Quants)],
};

/// `q4_1` (ggml `block_q4_1`): `f16 d`, `f16 m`, `u8 qs[16]`; element `j` is `d · nibble(j) + m`.
pub const Q4_1: BlockLayout = BlockLayout {
    elements: 32,
    bytes: 20,
    fields: &[field("d", 0, 2, FieldKind::F16), field("m", 2, 2, FieldKind::F16), field("qs", 4, 16, FieldKind::U4Quants)],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{f32_to_f16, first_non_finite, quantize_row};

    /// (dtype, elements, bytes, [(field, offset, len, kind)]) as FORMAT.md "Dtypes" states them.
    #[test]
    fn layout_table_matches_format_md() {
        use FieldKind::*;
        type Fields = &'static [(&'static str, usize, usize, FieldKind)];
        let expect: [(DType, usize, usize, Fields); 4] = [
            (DType::F32, 1, 4, &[("value", 0, 4, F32)]),
            (DType::Q8_0, 32, 34, &[("d", 0, 2, F16), ("qs", 2, 32, I8Quants)]),
            (DType::Q4_0, 32, 18, &[("d", 0, 2, F16), ("qs", 2, 16, U4Quants)]),
            (DType::Q4_1, 32, 20, &[("d", 0, 2, F16), ("m", 2, 2, F16), ("qs", 4, 16, U4Quants)]),
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
        assert_eq!((MAX_BLOCK_BYTES, MAX_BLOCK_ELEMENTS), (34, 32));
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

    /// A 256-element super-block is expressible as data: this is ggml's `block_q4_K` shape
    /// (`f16 d`, `f16 dmin`, `u8 scales[12]` of packed 6-bit scales, `u8 qs[128]`), checked by the
    /// same rules as the shipped layouts. (Not a dtype yet: no kernel reads it.)
    #[test]
    fn a_super_block_layout_is_expressible() {
        let q4_k = BlockLayout {
            elements: 256,
            bytes: 144,
            fields: &[
                BlockField { name: "d", offset: 0, len: 2, kind: FieldKind::F16 },
                BlockField { name: "dmin", offset: 2, len: 2, kind: FieldKind::F16 },
                BlockField { name: "scales", offset: 4, len: 12, kind: FieldKind::I8Quants },
                BlockField { name: "qs", offset: 16, len: 128, kind: FieldKind::U4Quants },
            ],
        };
        assert!(q4_k.fields_tile_block());
        assert_eq!(q4_k.offset_of("qs"), 16);
        assert_eq!(q4_k.elements % crate::quant::QK, 0);
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
                        FieldKind::I8Quants | FieldKind::U4Quants => b[at..at + f.len].fill(0xff),
                    }
                    let want = if f.kind.must_be_finite() { Some(1) } else { None };
                    assert_eq!(first_non_finite(dtype, &b), want, "{} field {}", dtype.name(), f.name);
                }
            }
        }
    }
}
