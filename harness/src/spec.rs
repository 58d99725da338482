//! A model described in memory, before it is written as an SLM1 package.
//!
//! Importers (GGUF, llama2.c, the synthetic generator) produce a [`ModelSpec`]; `package::write`
//! turns it into SLM1 bytes (see `abi/FORMAT.md`). Keeping this neutral type between them means
//! every importer gets the same validation and quantization for free.

use tinyrustlm::quant::DType;

/// Architecture hyperparameters (the SLM1 header fields of the same names).
#[derive(Clone, Debug, PartialEq)]
pub struct Hyperparams {
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
}

impl Hyperparams {
    pub fn head_dim(&self) -> u32 {
        self.dim / self.n_heads
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
}

/// Chat template kinds (SLM1 tokenizer section `chat_template`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    None = 0,
    ChatMl = 1,
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
