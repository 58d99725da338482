//! Diagnostics: a fixed, versioned little-endian record the host reads with `read_diagnostics`.
//!
//! Layout version 1: 128 bytes, every field little-endian, at the offsets of [`FIELDS`] (the one
//! description of the layout: serialization walks it, the header's table and the JS wrapper's
//! parser are checked against it by `harness/tests/abi_facts.rs`).

pub const LAYOUT_VERSION: u32 = 1;
pub const LAYOUT_LEN: usize = 128;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Diagnostics {
    pub model_loaded: bool,
    pub quant_mode: Option<u8>,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub prefill_tokens_per_s: f32,
    pub decode_tokens_per_s: f32,
    pub peak_scratch_bytes: u64,
    pub kv_len: u32,
    pub context_len: u32,
    pub adapters_applied: u32,
    pub assembly_state_crc: u32,
    pub package_bytes: u64,
    pub kv_cache_bytes: u64,
    pub n_params: u64,
    pub tensor_layout_crc: u32,
    pub tokenizer_crc: u32,
    pub linear_memory_bytes: u64,
    pub prefill_ms: f32,
    pub decode_ms: f32,
    pub chat_template: u32,
    pub kv_dtype: u32,
    pub total_generated_tokens: u64,
    /// Input bytes of the last `tokenize` or `generate_start` text that no token covers (dropped, or
    /// the unknown token): 0 means the ids decode back to the text.
    pub unencodable_bytes: u32,
    /// Threads that share the matrix products: 1 plus the workers inside `worker_run` (threaded
    /// flavour); 1 in the single-thread flavours.
    pub threads: u32,
}

/// A field's type in the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    U32,
    U64,
    F32,
}

impl FieldType {
    pub const fn name(self) -> &'static str {
        match self {
            FieldType::U32 => "u32",
            FieldType::U64 => "u64",
            FieldType::F32 => "f32",
        }
    }

    pub const fn size(self) -> usize {
        match self {
            FieldType::U32 | FieldType::F32 => 4,
            FieldType::U64 => 8,
        }
    }
}

/// Where a field's value comes from; the variant is the field's type.
#[derive(Clone, Copy, Debug)]
pub enum FieldValue {
    U32(fn(&Diagnostics) -> u32),
    U64(fn(&Diagnostics) -> u64),
    F32(fn(&Diagnostics) -> f32),
}

/// One field of the record: its name (the header's, the JS wrapper's), byte offset and value.
#[derive(Clone, Copy, Debug)]
pub struct DiagnosticsField {
    pub name: &'static str,
    pub offset: usize,
    pub value: FieldValue,
}

impl DiagnosticsField {
    pub const fn ty(&self) -> FieldType {
        match self.value {
            FieldValue::U32(_) => FieldType::U32,
            FieldValue::U64(_) => FieldType::U64,
            FieldValue::F32(_) => FieldType::F32,
        }
    }
}

const fn field(name: &'static str, offset: usize, value: FieldValue) -> DiagnosticsField {
    DiagnosticsField { name, offset, value }
}

use FieldValue::{F32, U32, U64};

/// The record, in offset order.
pub const FIELDS: &[DiagnosticsField] = &[
    field("layout_version", 0, U32(|_| LAYOUT_VERSION)),
    field("layout_len", 4, U32(|_| LAYOUT_LEN as u32)),
    field("model_loaded", 8, U32(|d| d.model_loaded as u32)),
    // The dtype code of the package's matrices; 0xFFFFFFFF when no model is loaded.
    field("quant_mode", 12, U32(|d| d.quant_mode.map_or(u32::MAX, u32::from))),
    field("prompt_tokens", 16, U32(|d| d.prompt_tokens)),
    field("generated_tokens", 20, U32(|d| d.generated_tokens)),
    field("prefill_tokens_per_s", 24, F32(|d| d.prefill_tokens_per_s)),
    field("decode_tokens_per_s", 28, F32(|d| d.decode_tokens_per_s)),
    // Activation scratch + KV cache.
    field("peak_scratch_bytes", 32, U64(|d| d.peak_scratch_bytes)),
    field("kv_len", 40, U32(|d| d.kv_len)),
    field("context_len", 44, U32(|d| d.context_len)),
    field("adapters_applied", 48, U32(|d| d.adapters_applied)),
    field("assembly_state_crc", 52, U32(|d| d.assembly_state_crc)),
    field("package_bytes", 56, U64(|d| d.package_bytes)),
    field("kv_cache_bytes", 64, U64(|d| d.kv_cache_bytes)),
    field("n_params", 72, U64(|d| d.n_params)),
    field("tensor_layout_crc", 80, U32(|d| d.tensor_layout_crc)),
    field("tokenizer_crc", 84, U32(|d| d.tokenizer_crc)),
    // Current size of linear memory; 0 on native builds.
    field("linear_memory_bytes", 88, U64(|d| d.linear_memory_bytes)),
    field("prefill_ms", 96, F32(|d| d.prefill_ms)),
    field("decode_ms", 100, F32(|d| d.decode_ms)),
    // 0 f32, 1 f16.
    field("kv_dtype", 104, U32(|d| d.kv_dtype)),
    // 0 none, 1 ChatML.
    field("chat_template", 108, U32(|d| d.chat_template)),
    field("total_generated_tokens", 112, U64(|d| d.total_generated_tokens)),
    // Input bytes of the last tokenize / generate_start text that no token covers (was reserved, 0).
    field("unencodable_bytes", 120, U32(|d| d.unencodable_bytes)),
    // 1 + workers inside worker_run (was reserved, 0).
    field("threads", 124, U32(|d| d.threads)),
];

/// The fields tile the record: each starts where the previous one ended, on a multiple of its own
/// size, and the last ends at `LAYOUT_LEN`. So `to_bytes` writes every byte once and never out of
/// bounds.
const fn tiles_the_record(fields: &[DiagnosticsField]) -> bool {
    let mut end = 0;
    let mut i = 0;
    while i < fields.len() {
        let size = fields[i].ty().size();
        if fields[i].offset != end || !fields[i].offset.is_multiple_of(size) {
            return false;
        }
        end += size;
        i += 1;
    }
    end == LAYOUT_LEN
}

const _: () = assert!(tiles_the_record(FIELDS), "diag::FIELDS must tile the 128-byte record");

impl Diagnostics {
    pub fn to_bytes(&self) -> [u8; LAYOUT_LEN] {
        let mut out = [0u8; LAYOUT_LEN];
        for f in FIELDS {
            let at = f.offset;
            match f.value {
                U32(get) => out[at..at + 4].copy_from_slice(&get(self).to_le_bytes()),
                U64(get) => out[at..at + 8].copy_from_slice(&get(self).to_le_bytes()),
                F32(get) => out[at..at + 4].copy_from_slice(&get(self).to_le_bytes()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_versioned_and_fixed() {
        let d = Diagnostics { model_loaded: true, quant_mode: Some(1), kv_len: 7, assembly_state_crc: 0xDEADBEEF, ..Default::default() };
        let b = d.to_bytes();
        assert_eq!(&b[0..4], &1u32.to_le_bytes());
        assert_eq!(&b[4..8], &128u32.to_le_bytes());
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[12..16], &1u32.to_le_bytes());
        assert_eq!(&b[40..44], &7u32.to_le_bytes());
        assert_eq!(&b[52..56], &0xDEADBEEFu32.to_le_bytes());
        assert_eq!(&Diagnostics::default().to_bytes()[12..16], &u32::MAX.to_le_bytes());
    }

    #[test]
    fn every_field_lands_at_its_offset() {
        let d = Diagnostics {
            model_loaded: true,
            quant_mode: Some(2),
            prompt_tokens: 5,
            generated_tokens: 6,
            prefill_tokens_per_s: 1.5,
            decode_tokens_per_s: 2.5,
            peak_scratch_bytes: 1 << 40,
            kv_len: 7,
            context_len: 8,
            adapters_applied: 9,
            assembly_state_crc: 10,
            package_bytes: 11,
            kv_cache_bytes: 12,
            n_params: 13,
            tensor_layout_crc: 14,
            tokenizer_crc: 15,
            linear_memory_bytes: 16,
            prefill_ms: 17.5,
            decode_ms: 18.5,
            kv_dtype: 1,
            chat_template: 1,
            total_generated_tokens: 1 << 33,
            unencodable_bytes: 19,
            threads: 3,
        };
        let b = d.to_bytes();
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
        let f32_at = |at: usize| f32::from_bits(u32_at(at));
        assert_eq!((u32_at(16), u32_at(20), f32_at(24), f32_at(28), u64_at(32)), (5, 6, 1.5, 2.5, 1 << 40));
        assert_eq!((u32_at(44), u32_at(48), u64_at(56), u64_at(64), u64_at(72)), (8, 9, 11, 12, 13));
        assert_eq!((u32_at(80), u32_at(84), u64_at(88), f32_at(96), f32_at(100)), (14, 15, 16, 17.5, 18.5));
        assert_eq!((u32_at(104), u32_at(108), u64_at(112), u32_at(120), u32_at(124)), (1, 1, 1 << 33, 19, 3));
    }
}
