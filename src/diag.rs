//! Diagnostics: a fixed, versioned little-endian record the host reads with `read_diagnostics`.
//!
//! Layout version 1 (128 bytes; every field little-endian; documented in `abi/tinyrustlm.h`):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | layout_version (1) |
//! | 4 | u32 | layout_len (128) |
//! | 8 | u32 | model_loaded (0/1) |
//! | 12 | u32 | quant_mode (dtype code; 0xFFFFFFFF when no model) |
//! | 16 | u32 | prompt_tokens (of the current generation) |
//! | 20 | u32 | generated_tokens (of the current generation) |
//! | 24 | f32 | prefill_tokens_per_s (0 when not measured) |
//! | 28 | f32 | decode_tokens_per_s |
//! | 32 | u64 | peak_scratch_bytes (activation scratch + KV cache) |
//! | 40 | u32 | kv_len (positions in the KV cache) |
//! | 44 | u32 | context_len |
//! | 48 | u32 | adapters_applied |
//! | 52 | u32 | assembly_state_crc |
//! | 56 | u64 | package_bytes |
//! | 64 | u64 | kv_cache_bytes |
//! | 72 | u64 | n_params |
//! | 80 | u32 | tensor_layout_crc |
//! | 84 | u32 | tokenizer_crc |
//! | 88 | u64 | linear_memory_bytes (current size of linear memory; 0 on native builds) |
//! | 96 | f32 | prefill_ms (last prompt) |
//! | 100 | f32 | decode_ms (last generation) |
//! | 104 | u32 | kv_dtype (0 f32, 1 f16) |
//! | 108 | u32 | chat_template (0 none, 1 ChatML) |
//! | 112 | u64 | total_generated_tokens (since load) |
//! | 120 | u64 | reserved (0) |

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
}

impl Diagnostics {
    pub fn to_bytes(&self) -> [u8; LAYOUT_LEN] {
        let mut out = [0u8; LAYOUT_LEN];
        let mut put = |at: usize, bytes: &[u8]| out[at..at + bytes.len()].copy_from_slice(bytes);
        put(0, &LAYOUT_VERSION.to_le_bytes());
        put(4, &(LAYOUT_LEN as u32).to_le_bytes());
        put(8, &(self.model_loaded as u32).to_le_bytes());
        put(12, &self.quant_mode.map_or(u32::MAX, u32::from).to_le_bytes());
        put(16, &self.prompt_tokens.to_le_bytes());
        put(20, &self.generated_tokens.to_le_bytes());
        put(24, &self.prefill_tokens_per_s.to_le_bytes());
        put(28, &self.decode_tokens_per_s.to_le_bytes());
        put(32, &self.peak_scratch_bytes.to_le_bytes());
        put(40, &self.kv_len.to_le_bytes());
        put(44, &self.context_len.to_le_bytes());
        put(48, &self.adapters_applied.to_le_bytes());
        put(52, &self.assembly_state_crc.to_le_bytes());
        put(56, &self.package_bytes.to_le_bytes());
        put(64, &self.kv_cache_bytes.to_le_bytes());
        put(72, &self.n_params.to_le_bytes());
        put(80, &self.tensor_layout_crc.to_le_bytes());
        put(84, &self.tokenizer_crc.to_le_bytes());
        put(88, &self.linear_memory_bytes.to_le_bytes());
        put(96, &self.prefill_ms.to_le_bytes());
        put(100, &self.decode_ms.to_le_bytes());
        put(104, &self.kv_dtype.to_le_bytes());
        put(108, &self.chat_template.to_le_bytes());
        put(112, &self.total_generated_tokens.to_le_bytes());
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
}
