//! Quantized block layouts and the matrix-vector / matrix-matrix kernels.
//!
//! Pipeline position: format → **quant** → tokenizer → model. The package parser uses
//! [`DType`], [`DType::row_bytes`] and [`first_non_finite`] to validate tensor data; the model calls
//! [`matvec`] (decode, one token) and [`matmul`] (prefill, a batch of tokens) on borrowed package
//! bytes.
//!
//! # Block layouts
//!
//! Rows are sequences of blocks, little-endian, no padding, no alignment (`abi/FORMAT.md`,
//! "Dtypes"); each dtype's block is described once, as data, in [`layout`] ([`DType::layout`]).
//! Today's are ggml's 32-element `block_q8_0`, `block_q4_0` and `block_q4_1` from `ggml-common.h`:
//!
//! | dtype  | bytes | layout                               | element `j`                          |
//! |--------|-------|--------------------------------------|--------------------------------------|
//! | `q8_0` | 34    | `f16 d`, `i8 qs[32]`                 | `d · qs[j]`                          |
//! | `q4_0` | 18    | `f16 d`, `u8 qs[16]`                 | `d · (nibble(j) − 8)`                |
//! | `q4_1` | 20    | `f16 d`, `f16 m`, `u8 qs[16]`        | `d · nibble(j) + m`                  |
//!
//! `nibble(j)` is `qs[j] & 15` for `j < 16` and `qs[j − 16] >> 4` for `j ≥ 16`.
//!
//! # Activation quantization (what [`QuantizedActivations::quantize`] computes)
//!
//! A matmul input is quantized to 8 bits by the [`ActScheme`] of the weight dtype it multiplies —
//! the scheme llama.cpp's CPU backend uses for that dtype (ggml's `vec_dot_type`), so that our logits
//! carry the reference implementation's activation rounding and the conformance figures measure the
//! kernels, not two different roundings. In `f32` arithmetic, with `rint` rounding half to even
//! (what the reference's x86 path, `_mm256_round_ps` / `nearest_int`, does) and the result clamped
//! to `−127 ..= 127` (it only triggers when `1 / amax` overflows for a subnormal `amax`; NaN → 0):
//!
//! * **`Q8_0`** (for `q8_0`, `q4_0`, `q5_0`), per 32-element block: `amax = max |x[j]|` (from
//!   `+0.0`, `amax = if amax > a { amax } else { a }`), `id = amax != 0 ? 127 / amax : 0`,
//!   `q[j] = rint(x[j] · id)`, and the stored scale `d = f16(amax / 127)` (rounded to `f16` and
//!   widened back, ties to even).
//! * **`Q8_1`** (for `q4_1`, `q5_1`): as `Q8_0`, plus `s = f16(d₃₂ · Σ q[j])` with the unrounded `f32`
//!   `d₃₂ = amax / 127`, which the weights' minimum term multiplies (`m_w · s`).
//! * **`Q8_K`** (for `q4_K`, `q5_K`, `q6_K`), per 256-element super-block: `max` is the first element
//!   of largest magnitude, sign kept; `iscale = −127 / max` (all zero: `d = 0`, quants 0),
//!   `q[j] = rint(iscale · x[j])`, `d = 1 / iscale` kept in `f32` and repeated for each of the
//!   super-block's eight 32-element blocks.
//!
//! Every block also keeps `Σ q[j]` (an `i32`) for the k-quant minimum terms and the SIMD `q4_0`
//! kernel's `−8` offset. Quants are stored widened to `i16`. One input multiplied by matrices of
//! different dtypes (Q, K and V of a Q4_K_M file) is quantized once per scheme ([`QuantizedInputs`]).

//! # Dot products and the fixed float accumulation order
//!
//! Every kernel (the plain scalar one in [`scalar`] and the SIMD128 one in `simd128`) performs
//! *exactly* the following IEEE-754 `f32` operations, in this order, with no fused multiply-add, so
//! their results are bit-identical (NaN payloads aside) on every platform:
//!
//! **Quantized weights** (`q8_0`, `q4_0`, `q4_1`) against quantized activations,
//! `n_blocks = cols / 32`:
//!
//! 1. per block `b`, an exact integer sum `isum_b = Σ_j w_q[j] · x_q[j]` (`i32`; `w_q` is `qs[j]`
//!    for `q8_0`, `nibble(j) − 8` for `q4_0` and `nibble(j)` for `q4_1`);
//! 2. `term_b = (d_w · d_x) · f32(isum_b)` for `q8_0`/`q4_0`, and
//!    `term_b = (d_w · d_x) · f32(isum_b) + m_w · s_x` for `q4_1`
//!    (`d_w`, `m_w` the block's `f16` fields widened exactly; `d_x` the activation scale and `s_x`
//!    its `Q8_1` block sum; `f32(i)` is exact because `|i| < 2^24`);
//! 3. four accumulators starting at `+0.0`: `acc[b % 4] += term_b` for `b = 0, 1, 2, …`;
//! 4. result `(acc[0] + acc[1]) + (acc[2] + acc[3])`.
//!
//! **`f32` weights** against `f32` activations, `cols` elements:
//!
//! 1. sixteen accumulators starting at `+0.0`: `acc[i % 16] += w[i] · x[i]` for `i = 0, 1, 2, …`
//!    (the product rounded, then the sum rounded; tail elements included the same way);
//! 2. `v[l] = (acc[l] + acc[l + 4]) + (acc[l + 8] + acc[l + 12])` for `l = 0..4`;
//! 3. result `(v[0] + v[1]) + (v[2] + v[3])`.
//!
//! `cols = 0` gives `+0.0`.
//!
//! [`matmul`] computes each token's dot products with exactly the same operations, so its output is
//! bit-identical to calling [`matvec`] once per token.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

mod block;
pub mod kquant;
pub mod layout;
pub mod scalar;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[allow(unsafe_code)]
pub mod simd128;

#[cfg(test)]
mod proptests;
#[cfg(feature = "kernel-selftest")]
mod selftest;
#[cfg(any(test, feature = "kernel-selftest"))]
mod testdata;
#[cfg(test)]
mod tests;

pub use block::{
    dequantize_row, f16_to_f32, f32_to_f16, first_non_finite, quantize_row, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q5_0, quantize_row_q5_1,
    quantize_row_q8_0,
};
pub use layout::{BlockField, BlockLayout, FieldKind, MAX_BLOCK_BYTES, MAX_BLOCK_ELEMENTS};
#[cfg(feature = "kernel-selftest")]
pub use selftest::kernel_selftest;

/// Elements per activation block, and per block of the 32-element weight formats (ggml's
/// `QK8_0`, `QK4_0`, `QK4_1`). Weight blocks in general have [`BlockLayout::elements`] elements, a
/// multiple of this (checked at compile time in `layout`).
pub const QK: usize = 32;

// The SIMD kernels load a block's quants as 16-byte vectors and the activations as 8 x i16.
const _: () = assert!(QK == 32);

/// Element type of a tensor, with the stable code stored in the package (`abi/FORMAT.md`).
///
/// Variant names follow ggml's type names (`Q4_K` is ggml's `GGML_TYPE_Q4_K`).
#[repr(u8)]
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32 = 0,
    Q8_0 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    F16 = 4,
    Q5_0 = 5,
    Q5_1 = 6,
    Q4_K = 7,
    Q5_K = 8,
    Q6_K = 9,
}

impl DType {
    /// The storage modes of SLM1 v1 (`quant_mode` of a v1 package), which `trl pack --quant`
    /// converts a whole model to: their 32-element blocks fit any row length the synthetic test
    /// models use, so the test and fuzz suites that sweep storage modes sweep these.
    pub const V1_STORAGE: [DType; 4] = [DType::F32, DType::Q8_0, DType::Q4_0, DType::Q4_1];

    /// All dtypes, in code order.
    pub const ALL: [DType; 10] =
        [DType::F32, DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::F16, DType::Q5_0, DType::Q5_1, DType::Q4_K, DType::Q5_K, DType::Q6_K];

    /// The dtype with package code `code`, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<DType> {
        DType::ALL.get(usize::from(code)).copied()
    }

    /// The package code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Lower-case ggml / GGUF type name: `"f32"`, `"q8_0"`, `"q4_0"`, `"q4_1"`, `"f16"`, `"q5_0"`,
    /// `"q5_1"`, `"q4_k"`, `"q5_k"`, `"q6_k"`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::F16 => "f16",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q4_K => "q4_k",
            DType::Q5_K => "q5_k",
            DType::Q6_K => "q6_k",
        }
    }

    /// ggml's `enum ggml_type` value (the tensor type id stored in GGUF tensor infos).
    pub const fn ggml_type(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q4_K => 12,
            DType::Q5_K => 13,
            DType::Q6_K => 14,
        }
    }

    /// The dtype whose GGUF type id is `ggml_type`, or `None` for a type we do not keep in place.
    pub fn from_ggml_type(ggml_type: u32) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.ggml_type() == ggml_type)
    }

    /// `true` when the kernels multiply this dtype's weights with the `f32` activations (`f32`,
    /// `f16`) rather than with [`QuantizedActivations`]: callers skip quantizing for them.
    pub const fn reads_f32_activations(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }

    /// The block layout (elements, bytes, fields) — see [`layout`].
    pub const fn layout(self) -> &'static BlockLayout {
        match self {
            DType::F32 => &layout::F32,
            DType::Q8_0 => &layout::Q8_0,
            DType::Q4_0 => &layout::Q4_0,
            DType::Q4_1 => &layout::Q4_1,
            DType::F16 => &layout::F16,
            DType::Q5_0 => &layout::Q5_0,
            DType::Q5_1 => &layout::Q5_1,
            DType::Q4_K => &layout::Q4_K,
            DType::Q5_K => &layout::Q5_K,
            DType::Q6_K => &layout::Q6_K,
        }
    }

    /// Elements per block: 1 for `f32` and `f16`, 32 for `q8_0`, `q4_*`, `q5_*`, 256 for the
    /// k-quants.
    pub const fn block_elems(self) -> usize {
        self.layout().elements
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        self.layout().bytes
    }

    /// Bytes of a row of `row_len` elements; `None` if `row_len` is not a multiple of
    /// [`block_elems`](DType::block_elems) or the size overflows `usize`.
    pub fn row_bytes(self, row_len: usize) -> Option<usize> {
        if !row_len.is_multiple_of(self.block_elems()) {
            return None;
        }
        (row_len / self.block_elems()).checked_mul(self.block_bytes())
    }
}

/// How a matmul's `f32` input is quantized to 8 bits for the integer kernels of one weight dtype:
/// the rule llama.cpp's CPU backend applies for that dtype (ggml's `vec_dot_type`), so our logits
/// carry the same activation rounding as the reference implementation the conformance tests hold
/// us to, instead of a different rounding of our own (module docs, "Activation quantization").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum ActScheme {
    /// ggml `block_q8_0`: 32-element blocks, scale rounded to `f16`. For `q8_0`, `q4_0`, `q5_0`.
    Q8_0,
    /// ggml `block_q8_1`: as `Q8_0`, plus the block's `s = f16(d · Σ q)` for the weights' minimum
    /// term. For `q4_1`, `q5_1`.
    Q8_1,
    /// ggml `block_q8_K`: 256-element blocks with one `f32` scale, taken from the signed element
    /// of largest magnitude. For `q4_K`, `q5_K`, `q6_K`.
    Q8_K,
}

impl ActScheme {
    /// Every scheme, in [`index`](Self::index) order.
    pub const ALL: [ActScheme; 3] = [ActScheme::Q8_0, ActScheme::Q8_1, ActScheme::Q8_K];

    /// The scheme `dtype`'s integer kernel reads, or `None` for the dtypes that read `f32`
    /// activations directly (`f32`, `f16`).
    pub const fn for_dtype(dtype: DType) -> Option<ActScheme> {
        match dtype {
            DType::F32 | DType::F16 => None,
            DType::Q8_0 | DType::Q4_0 | DType::Q5_0 => Some(ActScheme::Q8_0),
            DType::Q4_1 | DType::Q5_1 => Some(ActScheme::Q8_1),
            DType::Q4_K | DType::Q5_K | DType::Q6_K => Some(ActScheme::Q8_K),
        }
    }

    /// Position in [`ALL`](Self::ALL).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Elements sharing one scale.
    pub const fn group_elems(self) -> usize {
        match self {
            ActScheme::Q8_0 | ActScheme::Q8_1 => QK,
            ActScheme::Q8_K => kquant::QK_K,
        }
    }

    /// `(d, id)` of one scale group: the scale as computed in `f32` (before any `f16` rounding)
    /// and the multiplier the quants are rounded from.
    fn scales(self, x: &[f32]) -> (f32, f32) {
        match self {
            ActScheme::Q8_0 | ActScheme::Q8_1 => {
                let mut amax = 0.0f32;
                for &v in x {
                    let a = v.abs();
                    amax = if amax > a { amax } else { a };
                }
                // llama.cpp's x86 `quantize_row_q8_0` / `_q8_1`: `127 / amax`, not `1 / d`.
                (amax / 127.0, if amax != 0.0 { 127.0 / amax } else { 0.0 })
            }
            ActScheme::Q8_K => {
                // ggml `quantize_row_q8_K_ref`: the first element of largest magnitude, sign kept.
                let (mut amax, mut max) = (0.0f32, 0.0f32);
                for &v in x {
                    if v.abs() > amax {
                        amax = v.abs();
                        max = v;
                    }
                }
                if amax == 0.0 {
                    return (0.0, 0.0);
                }
                let iscale = -127.0 / max;
                (1.0 / iscale, iscale)
            }
        }
    }
}

/// `x` rounded to the nearest `f16` (ties to even), widened back.
fn round_to_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

/// Activations quantized once to q8 blocks, so integer dot products can be used against quantized
/// weights (see the module docs for the exact rounding).
///
/// One structure holds any number of whole blocks: quantize a single token's `cols` activations for
/// [`matvec`], or a whole token-major batch `n_tokens × cols` for [`matmul`] (blocks never straddle
/// tokens because `cols` is a multiple of 32, so the batch is exactly the per-token structures laid
/// end to end). Buffers are reused across calls; quantizing never shrinks their capacity.
#[derive(Clone, Debug, Default)]
pub struct QuantizedActivations {
    /// Per-block scale `d` (`f32`, not rounded to `f16`). Shape `[n_blocks]`.
    d: Vec<f32>,
    /// Quants, values in `−127 ..= 127`, widened to `i16` once here so the SIMD kernels can feed
    /// `i32x4.dot_i16x8_s` directly instead of sign-extending the activations for every weight row.
    /// Shape `[n_blocks × 32]`.
    qs: Vec<i16>,
    /// Per-block `Σ qs` (the k-quant minimum terms, the SIMD `q4_0` offset). Shape `[n_blocks]`.
    sums: Vec<i32>,
    /// Per-block `s = f16(d · Σ qs)` of [`ActScheme::Q8_1`] (the `q4_1` / `q5_1` minimum term; `0`
    /// for the other schemes). Shape `[n_blocks]`.
    s: Vec<f32>,
    /// The quants as `i8` too, for the relaxed-SIMD byte dot product of the 4-bit formats (`q8_0`
    /// still uses `qs`). Shape `[n_blocks × 32]`.
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    qs8: Vec<i8>,
}

impl QuantizedActivations {
    /// An empty structure (no allocation until the first [`quantize`](Self::quantize)).
    pub fn new() -> Self {
        QuantizedActivations {
            d: Vec::new(),
            qs: Vec::new(),
            sums: Vec::new(),
            s: Vec::new(),
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            qs8: Vec::new(),
        }
    }

    /// An empty structure with room for `n_elems` activations, so quantizing up to that many
    /// never allocates (the model sizes it once at load, where running out of memory is a status
    /// rather than a trap).
    pub fn try_with_capacity(n_elems: usize) -> Result<Self, TryReserveError> {
        let n_blocks = n_elems / QK;
        let mut xq = QuantizedActivations::new();
        xq.d.try_reserve_exact(n_blocks)?;
        xq.qs.try_reserve_exact(n_blocks * QK)?;
        xq.sums.try_reserve_exact(n_blocks)?;
        xq.s.try_reserve_exact(n_blocks)?;
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        xq.qs8.try_reserve_exact(n_blocks * QK)?;
        Ok(xq)
    }

    /// Bytes held (capacity, not length).
    pub fn capacity_bytes(&self) -> usize {
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        let qs8 = self.qs8.capacity();
        #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
        let qs8 = 0;
        self.d.capacity() * 4 + self.qs.capacity() * 2 + self.sums.capacity() * 4 + self.s.capacity() * 4 + qs8
    }

    /// Quantizes `x` by `scheme` (replacing the previous contents). Allocates only when `x` is
    /// longer than anything quantized before (or than [`try_with_capacity`](Self::try_with_capacity)
    /// allowed); if that allocation fails, the error is returned and the structure is left empty.
    ///
    /// Precondition: `x.len()` is a multiple of [`QK`] (of [`kquant::QK_K`] for [`ActScheme::Q8_K`]); a
    /// trailing partial block is ignored.
    pub fn quantize(&mut self, scheme: ActScheme, x: &[f32]) -> Result<(), TryReserveError> {
        let group = scheme.group_elems();
        debug_assert!(x.len().is_multiple_of(group), "activation length {} is not a multiple of {group}", x.len());
        let n_blocks = x.len() / group * (group / QK);
        self.d.clear();
        self.qs.clear();
        self.sums.clear();
        self.s.clear();
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        {
            self.qs8.clear();
            self.qs8.try_reserve(n_blocks * QK)?;
        }
        self.d.try_reserve(n_blocks)?;
        self.qs.try_reserve(n_blocks * QK)?;
        self.sums.try_reserve(n_blocks)?;
        self.s.try_reserve(n_blocks)?;
        for xg in x.chunks_exact(group) {
            let (d, id) = scheme.scales(xg);
            for xb in xg.chunks_exact(QK) {
                let mut sum = 0i32;
                for &v in xb {
                    // Ties to even, as the reference's SIMD rounding (`_mm256_round_ps`) and
                    // `nearest_int` do. `as i32` saturates and maps NaN to 0; the clamp keeps the
                    // |q| <= 127 invariant.
                    let q = (libm::rintf(v * id) as i32).clamp(-127, 127);
                    sum += q;
                    self.qs.push(q as i16);
                    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
                    self.qs8.push(q as i8);
                }
                let (d_stored, s) = match scheme {
                    ActScheme::Q8_0 => (round_to_f16(d), 0.0),
                    ActScheme::Q8_1 => (round_to_f16(d), round_to_f16(d * sum as f32)),
                    ActScheme::Q8_K => (d, 0.0),
                };
                self.d.push(d_stored);
                self.sums.push(sum);
                self.s.push(s);
            }
        }
        Ok(())
    }

    /// Number of quantized elements (`n_blocks × 32`).
    pub fn len(&self) -> usize {
        self.d.len() * QK
    }

    /// `true` when nothing has been quantized.
    pub fn is_empty(&self) -> bool {
        self.d.is_empty()
    }

    /// Number of quantized blocks.
    pub fn n_blocks(&self) -> usize {
        self.d.len()
    }

    /// The per-block scales, quants and quant sums of blocks `first_block .. first_block + n_blocks`
    /// (empty slices where that range is not held).
    pub(crate) fn view(&self, first_block: usize, n_blocks: usize) -> XqView<'_> {
        let end = first_block.checked_add(n_blocks);
        let blocks = |len: usize| match end {
            Some(end) if end <= len => first_block..end,
            _ => 0..0,
        };
        let qs = match (first_block.checked_mul(QK), end.and_then(|e| e.checked_mul(QK))) {
            (Some(lo), Some(hi)) if hi <= self.qs.len() => &self.qs[lo..hi],
            _ => &self.qs[..0],
        };
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        let qs8 = match (first_block.checked_mul(QK), end.and_then(|e| e.checked_mul(QK))) {
            (Some(lo), Some(hi)) if hi <= self.qs8.len() => &self.qs8[lo..hi],
            _ => &self.qs8[..0],
        };
        XqView {
            #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
            qs8,
            d: &self.d[blocks(self.d.len())],
            qs,
            sums: &self.sums[blocks(self.sums.len())],
            s: &self.s[blocks(self.s.len())],
        }
    }
}

/// One matmul input quantized by each [`ActScheme`] its weights need, each on first use: the
/// matrices that multiply the same vector (Q, K and V; gate and up) may have different dtypes (a
/// GGUF Q4_K_M mixes `q5_0` and `q4_K`), and each dtype's kernel reads its own scheme.
#[derive(Clone, Debug, Default)]
pub struct QuantizedInputs {
    sets: [QuantizedActivations; 3],
    /// `fresh[i]`: `sets[i]` holds the current input.
    fresh: [bool; 3],
}

impl QuantizedInputs {
    /// Room for `n_elems` activations in every scheme `dtypes` need, so quantizing up to that
    /// many never allocates.
    pub fn try_for(dtypes: impl Iterator<Item = DType>, n_elems: usize) -> Result<Self, TryReserveError> {
        let mut inputs = QuantizedInputs::default();
        let mut reserved = [false; 3];
        for scheme in dtypes.filter_map(ActScheme::for_dtype) {
            if !reserved[scheme.index()] {
                inputs.sets[scheme.index()] = QuantizedActivations::try_with_capacity(n_elems)?;
                reserved[scheme.index()] = true;
            }
        }
        Ok(inputs)
    }

    /// Bytes held (capacity, not length).
    pub fn capacity_bytes(&self) -> usize {
        self.sets.iter().map(QuantizedActivations::capacity_bytes).sum()
    }

    /// Forgets the previous input: the next [`for_dtype`](Self::for_dtype) quantizes afresh.
    pub fn new_input(&mut self) {
        self.fresh = [false; 3];
    }

    /// `x` quantized for `dtype`'s kernel (quantized now unless it already was since the last
    /// [`new_input`](Self::new_input)); for the `f32`-reading dtypes, an unused empty set. On an
    /// allocation failure that scheme's set is left empty and not fresh.
    pub fn for_dtype(&mut self, dtype: DType, x: &[f32]) -> Result<&QuantizedActivations, TryReserveError> {
        let Some(scheme) = ActScheme::for_dtype(dtype) else {
            return Ok(&self.sets[0]);
        };
        let i = scheme.index();
        if !self.fresh[i] {
            self.sets[i].quantize(scheme, x)?;
            self.fresh[i] = true;
        }
        debug_assert_eq!(self.sets[i].len(), x.len(), "for_dtype called with a new input without new_input");
        Ok(&self.sets[i])
    }
}

/// Borrowed quantized activations of one token: `d[n_blocks]`, `qs[n_blocks × 32]`, `sums[n_blocks]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct XqView<'a> {
    pub(crate) d: &'a [f32],
    pub(crate) qs: &'a [i16],
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    pub(crate) qs8: &'a [i8],
    pub(crate) sums: &'a [i32],
    pub(crate) s: &'a [f32],
}

impl XqView<'_> {
    /// Whole blocks present in all three slices.
    pub(crate) fn n_blocks(&self) -> usize {
        #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
        let n = self.qs8.len() / QK;
        #[cfg(not(all(target_arch = "wasm32", target_feature = "relaxed-simd")))]
        let n = usize::MAX;
        self.d.len().min(self.qs.len() / QK).min(self.sums.len()).min(self.s.len()).min(n)
    }
}

/// `out[r] = dot(row r of W, x)` for `r in 0..rows`.
///
/// `bytes` holds `rows` rows of `dtype` data, each `cols` elements (`dtype.row_bytes(cols)` bytes),
/// little-endian, with no alignment requirement. `f32` weights use `x` (`x.len() ≥ cols`);
/// quantized weights use `xq`, which must hold `x` quantized (`xq.len() == cols`) — the caller
/// quantizes once and reuses it for every matrix that multiplies the same vector. The float
/// accumulation order is fixed (module docs).
///
/// Preconditions (checked by `debug_assert!`): `cols` is a multiple of `dtype.block_elems()`,
/// `bytes.len() ≥ rows · row_bytes`, `out.len() ≥ rows`, and the activation length above. When
/// they are violated nothing panics and memory stays safe; only outputs that can be computed are
/// written.
pub fn matvec(dtype: DType, bytes: &[u8], rows: usize, cols: usize, x: &[f32], xq: &QuantizedActivations, out: &mut [f32]) {
    matmul(dtype, bytes, rows, cols, 1, x, xq, out)
}

/// Batched prefill: `y[t · rows + r] = dot(row r of W, token t of X)` for `t in 0..n_tokens`,
/// `r in 0..rows`.
///
/// `x` is token-major `n_tokens × cols` `f32`; `xq` is the whole of `x` quantized with one
/// [`QuantizedActivations::quantize`] call (it is read only for quantized weights, `x` only for
/// `f32` weights); `y` is token-major `n_tokens × rows`. Weights are the outer loop and tokens the
/// inner one (in tiles of [`TOKEN_TILE`] tokens), so each weight row is read from memory once per
/// tile and decoded once per group of four tokens. The output is bit-identical to calling
/// [`matvec`] for each token.
///
/// Preconditions as for [`matvec`], with `x.len() ≥ n_tokens · cols` (f32) or
/// `xq.len() == n_tokens · cols` (quantized) and `y.len() ≥ n_tokens · rows`.
#[allow(clippy::too_many_arguments)]
pub fn matmul(dtype: DType, bytes: &[u8], rows: usize, cols: usize, n_tokens: usize, x: &[f32], xq: &QuantizedActivations, y: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    simd128::matmul(dtype, bytes, rows, cols, n_tokens, x, xq, y);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    scalar::matmul(dtype, bytes, rows, cols, n_tokens, x, xq, y);
}

/// Tokens per tile in [`matmul`]: one tile's quantized activations (≈ 2.2 KiB per token at
/// `cols = 1024`) stay cache-resident while every weight row streams past them once.
pub const TOKEN_TILE: usize = 32;

/// Fewest weight rows in one chunk of a threaded matmul: below this the hand-off costs more than
/// the rows.
const MIN_ROWS_PER_CHUNK: usize = 16;

/// Tokens sharing one decode of a weight block in the SIMD matmul kernel.
pub(crate) const TOKEN_GROUP: usize = 4;

/// One kernel family (a dtype in one implementation): the dot products of one weight row against
/// `N` tokens at once. `dot` must perform, for each token, exactly the operations in the module
/// docs, so `N = 1` and `N = TOKEN_GROUP` agree bit for bit.
pub(crate) trait RowKernel {
    /// A token's activations as this kernel reads them.
    type Act<'a>: Copy;
    /// Token `t`'s activations, `cols` elements (empty if not held).
    fn act<'a>(x: &'a [f32], xq: &'a QuantizedActivations, t: usize, cols: usize) -> Self::Act<'a>;
    /// Dot products of `row` (one row of weight bytes) with each of `acts`.
    fn dot<const N: usize>(row: &[u8], acts: [Self::Act<'_>; N]) -> [f32; N];
}

/// Token `t`'s `f32` activations: `x[t·cols .. (t+1)·cols]`, or empty if out of range.
pub(crate) fn f32_act(x: &[f32], t: usize, cols: usize) -> &[f32] {
    let range = t.checked_mul(cols).and_then(|lo| Some(lo..lo.checked_add(cols)?));
    range.and_then(|r| x.get(r)).unwrap_or(&[])
}

/// Token `t`'s quantized activations: blocks `t·n_blocks .. (t+1)·n_blocks`, `n_blocks = cols/32`.
pub(crate) fn q_act(xq: &QuantizedActivations, t: usize, cols: usize) -> XqView<'_> {
    let n_blocks = cols / QK;
    match t.checked_mul(n_blocks) {
        Some(first) => xq.view(first, n_blocks),
        None => xq.view(0, 0),
    }
}

/// The shared matmul driver: weight rows outer, token tiles and groups inner. Used by both the
/// scalar and the SIMD128 implementations so their iteration is the same; only `K::dot` differs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn drive_matmul<K: RowKernel>(
    dtype: DType,
    bytes: &[u8],
    rows: usize,
    cols: usize,
    n_tokens: usize,
    x: &[f32],
    xq: &QuantizedActivations,
    y: &mut [f32],
) {
    let Some(row_bytes) = dtype.row_bytes(cols) else {
        debug_assert!(false, "cols {cols} is not a multiple of {} for {}", dtype.block_elems(), dtype.name());
        return;
    };
    debug_assert!(rows.checked_mul(row_bytes).is_some_and(|n| bytes.len() >= n), "{} weights: {} bytes for {rows} rows of {cols}", dtype.name(), bytes.len());
    debug_assert!(n_tokens.checked_mul(rows).is_some_and(|n| y.len() >= n), "output too short");
    debug_assert!(
        if dtype.reads_f32_activations() {
            n_tokens.checked_mul(cols).is_some_and(|n| x.len() >= n)
        } else {
            n_tokens.checked_mul(cols).is_some_and(|n| xq.len() == n)
        },
        "activations do not hold {n_tokens} tokens of {cols}"
    );
    if rows == 0 || n_tokens == 0 {
        return;
    }
    // Clamp to what the buffers can hold, so violated preconditions never index out of range.
    // `y` keeps the caller's row stride; only the rows the weight bytes cover are computed.
    let y_stride = rows;
    let n_tokens = n_tokens.min(y.len() / y_stride);
    // (`row_bytes == 0` only for `cols == 0`: every row is empty and present.)
    let computed_rows = bytes.len().checked_div(row_bytes).map_or(rows, |n| rows.min(n));
    // Weight rows are shared out among the pool's threads in blocks; each output element is one
    // `K::dot` whichever thread runs it, so the bits do not depend on the thread count.
    crate::pool::for_each_column_block(&mut y[..n_tokens * y_stride], y_stride, MIN_ROWS_PER_CHUNK, &|mut block| {
        let block_rows = block.cols();
        for tile_start in (0..n_tokens).step_by(TOKEN_TILE) {
            let tile_end = n_tokens.min(tile_start + TOKEN_TILE);
            for r in block_rows.start..block_rows.end.min(computed_rows) {
                let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
                let mut t = tile_start;
                while t + TOKEN_GROUP <= tile_end {
                    let acts: [K::Act<'_>; TOKEN_GROUP] = core::array::from_fn(|i| K::act(x, xq, t + i, cols));
                    for (i, v) in K::dot(row, acts).into_iter().enumerate() {
                        block.set(t + i, r, v);
                    }
                    t += TOKEN_GROUP;
                }
                while t < tile_end {
                    let [v] = K::dot(row, [K::act(x, xq, t, cols)]);
                    block.set(t, r, v);
                    t += 1;
                }
            }
        }
    });
}
