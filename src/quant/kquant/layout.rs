//! Field offsets of the shipped GGUF dtypes by name, read from the layout table
//! ([`crate::quant::layout`], the single description of every block), so the kernels can write
//! `q4_k::QS` instead of repeating numbers.

use crate::quant::layout::{Q4_K, Q5_0, Q5_1, Q5_K, Q6_K};

/// `q5_0`: `y = d · (q − 16)`.
pub mod q5_0 {
    use super::Q5_0 as L;
    pub const D: usize = L.offset_of("d");
    pub const QH: usize = L.offset_of("qh");
    pub const QS: usize = L.offset_of("qs");
    pub const BYTES: usize = L.bytes;
}

/// `q5_1`: `y = d · q + m`.
pub mod q5_1 {
    use super::Q5_1 as L;
    pub const D: usize = L.offset_of("d");
    pub const M: usize = L.offset_of("m");
    pub const QH: usize = L.offset_of("qh");
    pub const QS: usize = L.offset_of("qs");
    pub const BYTES: usize = L.bytes;
}

/// `q4_k`: `y = (d · sc_s) · q − dmin · m_s`.
pub mod q4_k {
    use super::Q4_K as L;
    pub const D: usize = L.offset_of("d");
    pub const DMIN: usize = L.offset_of("dmin");
    pub const SCALES: usize = L.offset_of("scales");
    pub const QS: usize = L.offset_of("qs");
    pub const BYTES: usize = L.bytes;
}

/// `q5_k`: `q4_k` plus a fifth quant bit in `qh`.
pub mod q5_k {
    use super::Q5_K as L;
    pub const D: usize = L.offset_of("d");
    pub const DMIN: usize = L.offset_of("dmin");
    pub const SCALES: usize = L.offset_of("scales");
    pub const QH: usize = L.offset_of("qh");
    pub const QS: usize = L.offset_of("qs");
    pub const BYTES: usize = L.bytes;
}

/// `q6_k`: `y = (d · scales[e / 16]) · (q − 32)`.
pub mod q6_k {
    use super::Q6_K as L;
    pub const QL: usize = L.offset_of("ql");
    pub const QH: usize = L.offset_of("qh");
    pub const SCALES: usize = L.offset_of("scales");
    pub const D: usize = L.offset_of("d");
    pub const BYTES: usize = L.bytes;
}

/// Bytes of the packed 6-bit scales and minimums of `q4_k` / `q5_k` (ggml `K_SCALE_SIZE`).
pub const K_SCALE_BYTES: usize = 12;

const _: () = assert!(Q4_K.fields[2].len == K_SCALE_BYTES && Q5_K.fields[2].len == K_SCALE_BYTES);
