//! Block layouts as data: one [`BlockLayout`] per dtype plus the byte offset of every field
//! (module docs of `kquant` for the table and the element formulas).

use super::QK_K;
use crate::quant::QK;

/// One dtype's block: what the package parser and the dispatcher need to know without decoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    /// Lower-case ggml / GGUF name (`"q4_K"` keeps ggml's capital K).
    pub name: &'static str,
    /// ggml's `enum ggml_type` value, as stored in GGUF tensor infos.
    pub ggml_type: u32,
    /// Elements per block.
    pub block_elems: usize,
    /// Bytes per block.
    pub block_bytes: usize,
    /// Offsets of the block's `f16` scale / minimum fields (the values that must be finite).
    pub f16_fields: &'static [usize],
}

impl BlockLayout {
    /// Bytes of a row of `row_len` elements; `None` if `row_len` is not a multiple of
    /// `block_elems` or the size overflows `usize`.
    pub fn row_bytes(&self, row_len: usize) -> Option<usize> {
        if !row_len.is_multiple_of(self.block_elems) {
            return None;
        }
        (row_len / self.block_elems).checked_mul(self.block_bytes)
    }
}

/// `f16`: one IEEE-754 binary16 value per element.
pub mod f16 {
    /// The value.
    pub const V: usize = 0;
    /// Bytes per element.
    pub const BYTES: usize = 2;
}

/// `q5_0` (ggml `block_q5_0`): `y = d · (q − 16)`.
pub mod q5_0 {
    /// `f16` scale.
    pub const D: usize = 0;
    /// `u8 qh[4]`: bit `e` of the little-endian `u32` is bit 4 of element `e`'s quant.
    pub const QH: usize = 2;
    /// `u8 qs[16]`: low nibbles are elements 0..16, high nibbles 16..32.
    pub const QS: usize = 6;
    /// Bytes per 32-element block.
    pub const BYTES: usize = 22;
}

/// `q5_1` (ggml `block_q5_1`): `y = d · q + m`.
pub mod q5_1 {
    /// `f16` scale.
    pub const D: usize = 0;
    /// `f16` minimum (added).
    pub const M: usize = 2;
    /// `u8 qh[4]`, as in `q5_0`.
    pub const QH: usize = 4;
    /// `u8 qs[16]`, as in `q5_0`.
    pub const QS: usize = 8;
    /// Bytes per 32-element block.
    pub const BYTES: usize = 24;
}

/// `q4_K` (ggml `block_q4_K`): `y = (d · sc_s) · q − dmin · m_s`.
pub mod q4_k {
    /// `f16` super-block scale of the sub-block scales.
    pub const D: usize = 0;
    /// `f16` super-block scale of the sub-block minimums.
    pub const DMIN: usize = 2;
    /// `u8 scales[12]`: eight 6-bit scales and eight 6-bit minimums (`scale_min_k4`).
    pub const SCALES: usize = 4;
    /// `u8 qs[128]`: bytes `32i..32i+32` hold sub-block `2i` (low nibbles) and `2i+1` (high).
    pub const QS: usize = 16;
    /// Bytes per 256-element super-block.
    pub const BYTES: usize = 144;
}

/// `q5_K` (ggml `block_q5_K`): `q4_K` plus a fifth quant bit.
pub mod q5_k {
    /// `f16` super-block scale of the sub-block scales.
    pub const D: usize = 0;
    /// `f16` super-block scale of the sub-block minimums.
    pub const DMIN: usize = 2;
    /// `u8 scales[12]`, as in `q4_K`.
    pub const SCALES: usize = 4;
    /// `u8 qh[32]`: bit `s` of `qh[l]` is bit 4 of element `32s + l`'s quant.
    pub const QH: usize = 16;
    /// `u8 qs[128]`, as in `q4_K`.
    pub const QS: usize = 48;
    /// Bytes per 256-element super-block.
    pub const BYTES: usize = 176;
}

/// `q6_K` (ggml `block_q6_K`): `y = (d · scales[e / 16]) · (q − 32)`.
pub mod q6_k {
    /// `u8 ql[128]`: low four quant bits (two halves of 64 bytes).
    pub const QL: usize = 0;
    /// `u8 qh[64]`: high two quant bits, four elements per byte (two halves of 32 bytes).
    pub const QH: usize = 128;
    /// `i8 scales[16]`: one signed scale per 16 elements.
    pub const SCALES: usize = 192;
    /// `f16` super-block scale, at the end of the block.
    pub const D: usize = 208;
    /// Bytes per 256-element super-block.
    pub const BYTES: usize = 210;
}

/// Bytes of the packed 6-bit scales and minimums of `q4_K` / `q5_K` (ggml `K_SCALE_SIZE`).
pub const K_SCALE_BYTES: usize = 12;

// The fields tile each block exactly, in order, with the sizes ggml declares.
const _: () = assert!(f16::V + 2 == f16::BYTES);
const _: () = assert!(q5_0::QH == q5_0::D + 2 && q5_0::QS == q5_0::QH + 4);
const _: () = assert!(q5_0::BYTES == q5_0::QS + QK / 2);
const _: () = assert!(q5_1::M == q5_1::D + 2 && q5_1::QH == q5_1::M + 2);
const _: () = assert!(q5_1::QS == q5_1::QH + 4 && q5_1::BYTES == q5_1::QS + QK / 2);
const _: () = assert!(q4_k::DMIN == q4_k::D + 2 && q4_k::SCALES == q4_k::DMIN + 2);
const _: () = assert!(q4_k::QS == q4_k::SCALES + K_SCALE_BYTES);
const _: () = assert!(q4_k::BYTES == q4_k::QS + QK_K / 2);
const _: () = assert!(q5_k::DMIN == q5_k::D + 2 && q5_k::SCALES == q5_k::DMIN + 2);
const _: () = assert!(q5_k::QH == q5_k::SCALES + K_SCALE_BYTES);
const _: () = assert!(q5_k::QS == q5_k::QH + QK_K / 8 && q5_k::BYTES == q5_k::QS + QK_K / 2);
const _: () = assert!(q6_k::QH == q6_k::QL + QK_K / 2 && q6_k::SCALES == q6_k::QH + QK_K / 4);
const _: () = assert!(q6_k::D == q6_k::SCALES + QK_K / 16 && q6_k::BYTES == q6_k::D + 2);
// The sizes ggml's `static_assert`s state.
const _: () = assert!(q5_0::BYTES == 22 && q5_1::BYTES == 24);
const _: () = assert!(q4_k::BYTES == 144 && q5_k::BYTES == 176 && q6_k::BYTES == 210);

/// `f16`, ggml type 1.
pub const F16: BlockLayout = BlockLayout {
    name: "f16",
    ggml_type: 1,
    block_elems: 1,
    block_bytes: f16::BYTES,
    f16_fields: &[f16::V],
};
/// `q5_0`, ggml type 6.
pub const Q5_0: BlockLayout = BlockLayout {
    name: "q5_0",
    ggml_type: 6,
    block_elems: QK,
    block_bytes: q5_0::BYTES,
    f16_fields: &[q5_0::D],
};
/// `q5_1`, ggml type 7.
pub const Q5_1: BlockLayout = BlockLayout {
    name: "q5_1",
    ggml_type: 7,
    block_elems: QK,
    block_bytes: q5_1::BYTES,
    f16_fields: &[q5_1::D, q5_1::M],
};
/// `q4_K`, ggml type 12.
pub const Q4_K: BlockLayout = BlockLayout {
    name: "q4_K",
    ggml_type: 12,
    block_elems: QK_K,
    block_bytes: q4_k::BYTES,
    f16_fields: &[q4_k::D, q4_k::DMIN],
};
/// `q5_K`, ggml type 13.
pub const Q5_K: BlockLayout = BlockLayout {
    name: "q5_K",
    ggml_type: 13,
    block_elems: QK_K,
    block_bytes: q5_k::BYTES,
    f16_fields: &[q5_k::D, q5_k::DMIN],
};
/// `q6_K`, ggml type 14.
pub const Q6_K: BlockLayout = BlockLayout {
    name: "q6_K",
    ggml_type: 14,
    block_elems: QK_K,
    block_bytes: q6_k::BYTES,
    f16_fields: &[q6_k::D],
};

/// All six, in ggml type order.
pub const ALL: [BlockLayout; 6] = [F16, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K];
