//! Synthetic models: random weights from a seed, any shape, a byte tokenizer. They exercise every
//! code path of the runtime without a download, and their small size keeps the f64 reference in the
//! conformance suite fast.

use crate::package::canonical_names;
use crate::spec::*;

/// SplitMix64: tiny, seedable, and the same on every platform.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn next_signed(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// Shape of a synthetic model.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthShape {
    pub dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub ffn_dim: u32,
    pub max_context: u32,
    pub tied_embeddings: bool,
}

impl Default for SynthShape {
    fn default() -> Self {
        SynthShape { dim: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, ffn_dim: 96, max_context: 128, tied_embeddings: true }
    }
}

/// 256 byte tokens, then BOS (256) and EOS (257).
pub fn byte_tokenizer() -> TokenizerSpec {
    let mut tokens: Vec<TokenSpec> = (0..=255u8).map(|b| TokenSpec { bytes: vec![b], score: 0.0, token_type: token_type::BYTE }).collect();
    tokens.push(TokenSpec { bytes: b"<s>".to_vec(), score: 0.0, token_type: token_type::CONTROL });
    tokens.push(TokenSpec { bytes: b"</s>".to_vec(), score: 0.0, token_type: token_type::CONTROL });
    TokenizerSpec {
        kind: TokenizerKind::Byte,
        tokens,
        merges: vec![],
        bos_id: Some(256),
        eos_id: Some(257),
        unk_id: None,
        pre_tokenizer: PreTokenizer::None,
        chat_template: ChatTemplate::None,
        add_bos: true,
        add_space_prefix: false,
        eog_ids: vec![257],
    }
}

/// A model with weights drawn from `seed`. Scales keep activations in a realistic range so the
/// logits are neither flat nor saturated.
pub fn synthetic_model(shape: &SynthShape, seed: u64) -> ModelSpec {
    let tokenizer = byte_tokenizer();
    let hparams = Hyperparams::llama(
        tokenizer.tokens.len() as u32,
        shape.dim,
        shape.n_layers,
        shape.n_heads,
        shape.n_kv_heads,
        shape.ffn_dim,
        shape.max_context,
        10000.0,
        1e-5,
        shape.tied_embeddings,
    );
    synthetic_model_for(hparams, seed)
}

/// Random weights for any hyperparameters of the llama family (qwen2's biases, an explicit
/// `head_dim`), with the byte tokenizer: `hparams.vocab_size` must be its 258 tokens.
pub fn synthetic_model_for(hparams: Hyperparams, seed: u64) -> ModelSpec {
    let tokenizer = byte_tokenizer();
    let mut rng = SplitMix64(seed);
    let tensors = canonical_names(&hparams)
        .into_iter()
        .map(|name| {
            let dims = crate::package::expected_dims(&hparams, &name).unwrap();
            let n: usize = dims.iter().map(|&d| d as usize).product();
            let data: Vec<f32> = if dims.len() == 1 {
                (0..n).map(|_| 1.0 + 0.1 * rng.next_signed()).collect()
            } else {
                let fan_in = dims[1] as f32;
                let scale = if name.starts_with("token_embd") || name.starts_with("output.") { 0.3 } else { 1.5 / fan_in.sqrt() };
                (0..n).map(|_| scale * rng.next_signed()).collect()
            };
            TensorSpec { name, dims, data: TensorData::F32(data) }
        })
        .collect();
    ModelSpec { hparams, tokenizer, tensors }
}
