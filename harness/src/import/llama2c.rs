//! llama2.c checkpoints (`run.c`, the legacy version-0 export) → [`ModelSpec`].
//!
//! Model file, little-endian:
//!
//! ```text
//! i32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//!     (vocab_size < 0: the classifier is stored separately, |vocab_size| tokens)
//! f32 token_embedding_table [vocab, dim]
//! f32 rms_att   [n_layers, dim]
//! f32 wq        [n_layers, dim, dim]          wk, wv [n_layers, kv_dim, dim]
//! f32 wo        [n_layers, dim, dim]
//! f32 rms_ffn   [n_layers, dim]
//! f32 w1        [n_layers, hidden_dim, dim]   (gate)
//! f32 w2        [n_layers, dim, hidden_dim]   (down)
//! f32 w3        [n_layers, hidden_dim, dim]   (up)
//! f32 rms_final [dim]
//! f32 freq_cis_real, freq_cis_imag [seq_len · head_size / 2] each (unused, skipped)
//! f32 wcls      [vocab, dim]                  only if vocab_size < 0
//! ```
//!
//! `kv_dim = n_kv_heads · dim / n_heads`. llama2.c rotates adjacent pairs (its `model.py` trains
//! that way, `run.c` applies it), which is SLM1's RoPE order, so wq/wk are kept as they are.
//!
//! Tokenizer file (`tokenizer.bin`, llama2.c `tokenizer.py` export): u32 max_token_length, then for
//! each of the model's `vocab_size` tokens: f32 score, i32 len, `len` bytes. SentencePiece pieces
//! with `▁` already replaced by a space; ids 0, 1, 2 are `<unk>`, `<s>`, `</s>` (the last two written
//! as `"\n<s>\n"` and `"\n</s>\n"`); byte-fallback tokens are the text `<0xAB>`.

use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};

use super::dequant::check_finite;
use super::gguf_llama::parse_byte_token;
use super::spm::sentencepiece_merges;
use super::tensor_progress;
use crate::package::{expected_dims, runtime_hparams};
use crate::spec::{token_type, ChatTemplate, Hyperparams, ModelSpec, PreTokenizer, TensorData, TensorSpec, TokenSpec, TokenizerKind, TokenizerSpec};
use tinyrustlm::model::arch::{Arch, Role};

pub const HEADER_BYTES: usize = 7 * 4;
/// llama2.c's `model.py` defaults, which its exports do not record.
pub const ROPE_THETA: f32 = 10_000.0;
pub const NORM_EPS: f32 = 1e-5;
pub const BOS_ID: u32 = 1;
pub const EOS_ID: u32 = 2;
pub const UNK_ID: u32 = 0;
/// Longest token we accept (SLM1's max_token_len cap).
pub const MAX_TOKEN_BYTES: u32 = 1024;

/// Reads both files into memory and imports them; see [`import_llama2c_bytes`].
pub fn import_llama2c(model_path: impl AsRef<Path>, tokenizer_path: impl AsRef<Path>, progress: bool) -> Result<ModelSpec> {
    let (model_path, tokenizer_path) = (model_path.as_ref(), tokenizer_path.as_ref());
    let model = std::fs::read(model_path).with_context(|| format!("cannot read {}", model_path.display()))?;
    let tokenizer = std::fs::read(tokenizer_path).with_context(|| format!("cannot read {}", tokenizer_path.display()))?;
    import_llama2c_bytes(&model, &tokenizer, progress)
        .with_context(|| format!("cannot import llama2.c checkpoint {} with tokenizer {}", model_path.display(), tokenizer_path.display()))
}

/// The checkpoint's header, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub dim: u32,
    pub hidden_dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub vocab_size: u32,
    pub seq_len: u32,
    /// vocab_size was positive: the classifier is the embedding table.
    pub shared_classifier: bool,
}

impl Header {
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        ensure!(bytes.len() >= HEADER_BYTES, "checkpoint is {} bytes, shorter than its {HEADER_BYTES}-byte header", bytes.len());
        let field = |i: usize| i32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
        let positive = |i: usize, name: &str| -> Result<u32> {
            let v = field(i);
            u32::try_from(v).ok().filter(|&v| v > 0).ok_or_else(|| anyhow!("header field {name} is {v}, must be > 0"))
        };
        let dim = positive(0, "dim")?;
        let hidden_dim = positive(1, "hidden_dim")?;
        let n_layers = positive(2, "n_layers")?;
        let n_heads = positive(3, "n_heads")?;
        let n_kv_heads = positive(4, "n_kv_heads")?;
        let raw_vocab = field(5);
        ensure!(raw_vocab != 0 && raw_vocab != i32::MIN, "header field vocab_size is {raw_vocab}, must be non-zero");
        let seq_len = positive(6, "seq_len")?;
        ensure!(dim % n_heads == 0, "header: n_heads {n_heads} does not divide dim {dim}");
        ensure!(n_heads % n_kv_heads == 0, "header: n_kv_heads {n_kv_heads} does not divide n_heads {n_heads}");
        Ok(Header { dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size: raw_vocab.unsigned_abs(), seq_len, shared_classifier: raw_vocab > 0 })
    }

    pub fn head_size(&self) -> u32 {
        self.dim / self.n_heads
    }

    pub fn kv_dim(&self) -> u32 {
        self.n_kv_heads * self.head_size()
    }

    /// Number of f32 values after the header, or `None` on overflow.
    pub fn n_floats(&self) -> Option<u64> {
        let (dim, hidden, layers) = (u64::from(self.dim), u64::from(self.hidden_dim), u64::from(self.n_layers));
        let (vocab, kv_dim) = (u64::from(self.vocab_size), u64::from(self.kv_dim()));
        // run.c: seq_len * head_size / 2, for each of freq_cis_real and freq_cis_imag.
        let freq = u64::from(self.seq_len).checked_mul(u64::from(self.head_size()))? / 2;
        let embedding = vocab.checked_mul(dim)?;
        let per_layer = [dim, dim * dim, kv_dim * dim, kv_dim * dim, dim * dim, dim, hidden * dim, dim * hidden, hidden * dim]
            .iter()
            .try_fold(0u64, |acc, &n| acc.checked_add(n))?;
        let mut total = embedding.checked_add(layers.checked_mul(per_layer)?)?;
        total = total.checked_add(dim)?.checked_add(freq.checked_mul(2)?)?;
        if !self.shared_classifier {
            total = total.checked_add(embedding)?;
        }
        Some(total)
    }
}

/// Imports a llama2.c checkpoint and its `tokenizer.bin`.
pub fn import_llama2c_bytes(model: &[u8], tokenizer: &[u8], progress: bool) -> Result<ModelSpec> {
    let h = Header::parse(model)?;
    // dim, n_layers ≥ 1 and the products below are all < 2^64 (checked), so u64 → usize is only
    // reached once the file length agrees.
    let expected = h
        .n_floats()
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| n.checked_add(HEADER_BYTES as u64))
        .ok_or_else(|| anyhow!("header {h:?} describes more than 2^64 bytes of weights"))?;
    ensure!(
        expected == model.len() as u64,
        "checkpoint is {} bytes but its header (dim {}, hidden_dim {}, n_layers {}, n_heads {}, n_kv_heads {}, \
         vocab_size {}{}, seq_len {}) describes {expected}",
        model.len(),
        h.dim,
        h.hidden_dim,
        h.n_layers,
        h.n_heads,
        h.n_kv_heads,
        h.vocab_size,
        if h.shared_classifier { "" } else { " unshared" },
        h.seq_len
    );

    let tokenizer = read_tokenizer(tokenizer, h.vocab_size)?;
    let hparams =
        Hyperparams::llama(h.vocab_size, h.dim, h.n_layers, h.n_heads, h.n_kv_heads, h.hidden_dim, h.seq_len, ROPE_THETA, NORM_EPS, h.shared_classifier);

    // Weight groups in file order; the size check above guarantees every slice is in range.
    let (dim, hidden, kv_dim, vocab) = (h.dim as usize, h.hidden_dim as usize, h.kv_dim() as usize, h.vocab_size as usize);
    let layers = h.n_layers as usize;
    let mut at = HEADER_BYTES;
    let mut group = |n_floats: usize| {
        let g = &model[at..at + 4 * n_floats];
        at += 4 * n_floats;
        g
    };
    let embedding = group(vocab * dim);
    let rms_att = group(layers * dim);
    let wq = group(layers * dim * dim);
    let wk = group(layers * kv_dim * dim);
    let wv = group(layers * kv_dim * dim);
    let wo = group(layers * dim * dim);
    let rms_ffn = group(layers * dim);
    let w1 = group(layers * hidden * dim);
    let w2 = group(layers * dim * hidden);
    let w3 = group(layers * hidden * dim);
    let rms_final = group(dim);
    let freq = (h.seq_len as usize * h.head_size() as usize) / 2;
    group(2 * freq);
    let wcls = if h.shared_classifier { None } else { Some(group(vocab * dim)) };

    // (name, dims, bytes) in the architecture table's canonical order; llama2.c stores each kind
    // of tensor for all layers together, so a per-layer tensor is layer `l`'s share of its group.
    fn layer(g: &[u8], l: usize, layers: usize) -> &[u8] {
        let n = g.len() / layers;
        &g[l * n..(l + 1) * n]
    }
    let mut plan: Vec<(String, Vec<u32>, &[u8])> = Vec::new();
    for slot in Arch::Llama.tensors(&runtime_hparams(&hparams)) {
        let per_layer = |g| slot.layer.map(|l| layer(g, l as usize, layers));
        let bytes = match slot.desc.role {
            Role::TokenEmbd => Some(embedding),
            Role::AttnNorm => per_layer(rms_att),
            Role::AttnQ => per_layer(wq),
            Role::AttnK => per_layer(wk),
            Role::AttnV => per_layer(wv),
            Role::AttnOutput => per_layer(wo),
            Role::FfnNorm => per_layer(rms_ffn),
            Role::FfnGate => per_layer(w1),
            Role::FfnUp => per_layer(w3),
            Role::FfnDown => per_layer(w2),
            Role::OutputNorm => Some(rms_final),
            Role::Output => wcls,
            // llama2.c is llama: no biases or extra norms (the llama table has no such rows).
            Role::AttnQBias | Role::AttnKBias | Role::AttnVBias | Role::AttnQNorm | Role::AttnKNorm | Role::PostAttnNorm | Role::PostFfnNorm => None,
        };
        let name = slot.to_string();
        let bytes = bytes.ok_or_else(|| anyhow!("llama2.c checkpoints have no tensor {name}"))?;
        let dims = expected_dims(&hparams, &name).ok_or_else(|| anyhow!("no dims for {name}"))?;
        plan.push((name, dims, bytes));
    }

    let bar = tensor_progress(plan.len(), progress);
    let mut tensors = Vec::with_capacity(plan.len());
    for (name, dims, bytes) in plan {
        bar.set_message(name.clone());
        let values: Vec<f32> = bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        check_finite(&format!("tensor '{name}'"), &values)?;
        tensors.push(TensorSpec { name, dims, data: TensorData::F32(values) });
        bar.inc(1);
    }
    bar.finish_and_clear();

    Ok(ModelSpec { hparams, tokenizer, tensors })
}

/// Parses `tokenizer.bin` for a model of `vocab_size` tokens.
pub fn read_tokenizer(bytes: &[u8], vocab_size: u32) -> Result<TokenizerSpec> {
    ensure!(vocab_size >= 3, "vocab_size {vocab_size} leaves no room for <unk>, <s>, </s> (ids 0, 1, 2)");
    let mut pos = 0usize;
    let mut take = |n: usize, what: &dyn Fn() -> String| -> Result<&[u8]> {
        let left = bytes.len() - pos;
        if n > left {
            bail!("tokenizer: {}: need {n} bytes at offset {pos}, {left} left", what());
        }
        pos += n;
        Ok(&bytes[pos - n..pos])
    };
    let word = |b: &[u8]| [b[0], b[1], b[2], b[3]];
    let max_token_length = u32::from_le_bytes(word(take(4, &|| "max_token_length".into())?));
    ensure!((1..=MAX_TOKEN_BYTES).contains(&max_token_length), "tokenizer: max_token_length is {max_token_length}, must be 1..={MAX_TOKEN_BYTES}");
    // Each token takes at least 8 bytes (score and length).
    let left = (bytes.len() - 4) as u64;
    ensure!(
        u64::from(vocab_size) * 8 <= left,
        "tokenizer: {vocab_size} tokens need at least {} bytes, the file has {left} after its header",
        u64::from(vocab_size) * 8
    );

    let mut tokens = Vec::with_capacity(vocab_size as usize);
    for id in 0..vocab_size {
        let score = f32::from_le_bytes(word(take(4, &|| format!("token {id} score"))?));
        ensure!(score.is_finite(), "tokenizer: token {id} score is {score}, must be finite");
        let len = i32::from_le_bytes(word(take(4, &|| format!("token {id} length"))?));
        ensure!(len >= 0 && len as u32 <= max_token_length, "tokenizer: token {id} length is {len}, must be 0..={max_token_length} (max_token_length)");
        let raw = take(len as usize, &|| format!("token {id} bytes"))?;
        let (bytes, ty) = match id {
            UNK_ID => (raw.to_vec(), token_type::UNKNOWN),
            // The export wraps these in newlines for printing; store the SentencePiece names.
            BOS_ID | EOS_ID => (trim_newlines(raw).to_vec(), token_type::CONTROL),
            _ => match std::str::from_utf8(raw).ok().and_then(parse_byte_token) {
                Some(b) => (vec![b], token_type::BYTE),
                None => (raw.to_vec(), token_type::NORMAL),
            },
        };
        tokens.push(TokenSpec { bytes, score, token_type: ty });
    }
    ensure!(pos == bytes.len(), "tokenizer: {} bytes left after the last of {vocab_size} tokens", bytes.len() - pos);

    let merges = sentencepiece_merges(&tokens)?;
    Ok(TokenizerSpec {
        kind: TokenizerKind::BpeSentencePiece,
        tokens,
        merges,
        bos_id: Some(BOS_ID),
        eos_id: Some(EOS_ID),
        unk_id: Some(UNK_ID),
        pre_tokenizer: PreTokenizer::None,
        chat_template: ChatTemplate::None,
        add_bos: true,
        add_space_prefix: true,
        // run.c stops on BOS: its training data delimits stories with BOS and has no EOS, so
        // the models end a story by predicting BOS. EOS ends generation as everywhere else.
        eog_ids: vec![BOS_ID, EOS_ID],
    })
}

fn trim_newlines(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b'\n').unwrap_or(b.len());
    let end = b.iter().rposition(|&c| c != b'\n').map_or(start, |i| i + 1);
    &b[start..end]
}
