//! A model described in memory, before it is written as an SLM1 package.
//!
//! Importers (GGUF, llama2.c, the synthetic generator) produce a [`ModelSpec`]; `package::write`
//! turns it into SLM1 bytes (see `abi/FORMAT.md`). Keeping this neutral type between them means
//! every importer gets the same validation and quantization for free.

use tinyrustlm::model::arch::{Arch, RopeKind};
use tinyrustlm::quant::DType;

/// Architecture hyperparameters (the SLM1 header fields of the same names).
#[derive(Clone, Debug, PartialEq)]
pub struct Hyperparams {
    pub arch: Arch,
    pub vocab_size: u32,
    pub dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub ffn_dim: u32,
    pub max_context: u32,
    pub rope_theta: f32,
    pub norm_eps: f32,
    pub tied_embeddings: bool,
    /// Width of one attention head (v1 packages: `dim / n_heads`).
    pub head_dim: u32,
    pub rope: RopeKind,
    /// Q/K/V projection biases (qwen2).
    pub qkv_bias: bool,
    /// Sliding-window span of the local layers, 0 for none (gemma3; FORMAT.md v2 `sliding_window`).
    pub sliding_window: u32,
    /// Layer `l` is global when `l % swa_pattern == swa_pattern − 1` (0 without a window).
    pub swa_pattern: u32,
    /// RoPE base of the local layers (0 without a window).
    pub rope_theta_local: f32,
}

impl Hyperparams {
    /// A llama model in SLM1 v1's terms: `head_dim = dim / n_heads`, interleaved RoPE, no biases.
    #[allow(clippy::too_many_arguments)]
    pub fn llama(
        vocab_size: u32,
        dim: u32,
        n_layers: u32,
        n_heads: u32,
        n_kv_heads: u32,
        ffn_dim: u32,
        max_context: u32,
        rope_theta: f32,
        norm_eps: f32,
        tied_embeddings: bool,
    ) -> Hyperparams {
        Hyperparams {
            arch: Arch::Llama,
            vocab_size,
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            ffn_dim,
            max_context,
            rope_theta,
            norm_eps,
            tied_embeddings,
            head_dim: dim.checked_div(n_heads).unwrap_or(0),
            rope: RopeKind::Interleaved,
            qkv_bias: false,
            sliding_window: 0,
            swa_pattern: 0,
            rope_theta_local: 0.0,
        }
    }

    pub fn head_dim(&self) -> u32 {
        self.head_dim
    }

    /// Whether only SLM1 v2 can say what these are (an architecture block other than v1's).
    pub fn needs_v2(&self) -> bool {
        self.arch != Arch::Llama
            || self.rope != RopeKind::Interleaved
            || self.qkv_bias
            || self.sliding_window != 0
            || Some(self.head_dim) != self.dim.checked_div(self.n_heads)
    }
}

/// Tokenizer kinds (SLM1 tokenizer section `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    Byte = 0,
    BpeByteLevel = 1,
    BpeSentencePiece = 2,
}

/// Pre-tokenizer kinds (SLM1 tokenizer section `pre_tokenizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    None = 0,
    Gpt2 = 1,
    Smollm = 2,
    /// Qwen2's regex (`tokenizer.ggml.pre = qwen2`).
    Qwen2 = 3,
    /// Llama 3's regex (`tokenizer.ggml.pre = llama-bpe`).
    Llama3 = 4,
}

/// Chat template kinds (SLM1 tokenizer section `chat_template`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    None = 0,
    /// ChatML with SmolLM2's default system prompt.
    ChatMl = 1,
    /// ChatML with Qwen2.5's default system prompt.
    ChatMlQwen2 = 2,
    /// Gemma 3's turns, no default system prompt.
    Gemma = 3,
}

/// GGUF token types, kept with their GGUF values.
pub mod token_type {
    pub const NORMAL: u8 = 1;
    pub const UNKNOWN: u8 = 2;
    pub const CONTROL: u8 = 3;
    pub const USER_DEFINED: u8 = 4;
    pub const UNUSED: u8 = 5;
    pub const BYTE: u8 = 6;
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpec {
    /// Raw bytes the token decodes to (GPT-2 byte→unicode mapping already undone, `▁` → space,
    /// `<0xAB>` → the byte 0xAB).
    pub bytes: Vec<u8>,
    pub score: f32,
    pub token_type: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeSpec {
    pub left: u32,
    pub right: u32,
    pub result: u32,
    pub rank: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TokenizerSpec {
    pub kind: TokenizerKind,
    pub tokens: Vec<TokenSpec>,
    /// In priority order, ranks non-decreasing.
    pub merges: Vec<MergeSpec>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    pub unk_id: Option<u32>,
    pub pre_tokenizer: PreTokenizer,
    pub chat_template: ChatTemplate,
    pub add_bos: bool,
    pub add_space_prefix: bool,
    /// End-of-generation ids (at most 16).
    pub eog_ids: Vec<u32>,
}

/// Tensor contents as the importer has them.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Plain values; the writer stores them as f32 or quantizes them to the package's quant mode.
    F32(Vec<f32>),
    /// Already-encoded blocks in an SLM1 dtype, kept bit for bit when the dtype is the package's
    /// quant mode (e.g. GGUF Q8_0 → q8_0); otherwise the writer dequantizes and re-encodes them.
    Encoded { dtype: DType, bytes: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorSpec {
    /// GGUF-style name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// `[rows, row_len]` for matrices, `[len]` for vectors.
    pub dims: Vec<u32>,
    pub data: TensorData,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub hparams: Hyperparams,
    pub tokenizer: TokenizerSpec,
    /// In the order they will be written (the canonical order from `package::canonical_names`).
    pub tensors: Vec<TensorSpec>,
}
