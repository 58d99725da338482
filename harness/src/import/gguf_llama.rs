//! GGUF files of the llama family (`llama`, `qwen2`) → [`ModelSpec`].
//!
//! Keys and tensor names follow llama.cpp's conventions (gguf.md "LLaMA", llama.cpp
//! `llama-vocab.cpp`); the hyperparameter keys are prefixed by the architecture name
//! (`llama.block_count`, `qwen2.block_count`). GGUF Q/K rows are already in the order the family's
//! RoPE expects (llama: adjacent pairs; qwen2: NEOX halves, llama.cpp `llama_model_rope_type`), so
//! they are kept as they are. Matrices in a dtype SLM1 has are passed on encoded, bit for bit; norms,
//! biases and bf16 matrices as f32.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};

use super::dequant::{check_finite, dequantize_ggml, encoded_dtype, first_nonfinite_scale, unsupported_type};
use super::gguf::{Gguf, TensorInfo};
use super::spm::sentencepiece_merges;
use super::{canonical_tensors, tensor_progress};
use crate::spec::{token_type, ChatTemplate, Hyperparams, MergeSpec, ModelSpec, PreTokenizer, TensorData, TensorSpec, TokenSpec, TokenizerKind, TokenizerSpec};
use tinyrustlm::model::arch::Arch;

/// gguf.md: `[llm].rope.freq_base` is optional; llama.cpp's default.
pub const DEFAULT_ROPE_THETA: f32 = 10_000.0;
/// SLM1 tokenizer section: at most 16 end-of-generation ids.
pub const MAX_EOG_IDS: usize = 16;

/// Texts of tokens that end a turn or a document (the end-of-generation texts of llama.cpp's
/// `llama_vocab`, as far as they name ends of turns). llama.cpp ends generation on such a token
/// whatever its type, and makes it a control token when it is not one; so does the importer.
pub const EOG_TEXTS: &[&str] = &["<|im_end|>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "</s>", "<end_of_turn>", "<EOT>"];
/// Fill-in-the-middle sentinels (pad, repository, file separator) that llama.cpp also ends
/// generation on: a chat model that emits one has left the conversation. SmolLM2's `<reponame>`
/// (id 4) is one.
pub const FIM_EOG_TEXTS: &[&str] =
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>"];

const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// Reads a GGUF file into memory and imports it; see [`import_gguf_bytes`].
pub fn import_gguf(path: impl AsRef<Path>, progress: bool) -> Result<ModelSpec> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    import_gguf_bytes(&bytes, progress).with_context(|| format!("cannot import GGUF {}", path.display()))
}

/// Qwen2.5's chat template puts this system prompt first when a conversation has none; a
/// template that contains it is [`ChatTemplate::ChatMlQwen2`].
pub const QWEN2_DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// Imports a GGUF model of the llama family: hyperparameters, tokenizer and tensors in canonical
/// order. Every metadata key and every tensor's type is checked before any tensor data is read.
pub fn import_gguf_bytes(bytes: &[u8], progress: bool) -> Result<ModelSpec> {
    let file = Gguf::parse(bytes)?;
    let arch_name = file.get_str("general.architecture")?.ok_or_else(|| missing("general.architecture"))?;
    let arch = Arch::from_name(arch_name).ok_or_else(|| {
        let supported: Vec<String> = Arch::ALL.iter().map(|a| format!("'{}'", a.name())).collect();
        anyhow!("general.architecture is '{arch_name}': only {} are supported", supported.join(", "))
    })?;

    let tokenizer = read_tokenizer(&file, arch)?;
    let tied_embeddings = file.tensor("output.weight").is_none();
    let hparams = read_hparams(&file, arch, tokenizer.tokens.len() as u32, tied_embeddings)?;

    // Bound the layer count by the tensors present before building the list of expected names
    // (missing ones are then reported by name).
    ensure!(
        hparams.n_layers as usize <= file.tensors.len(),
        "{arch_name}.block_count is {} but the file has only {} tensors",
        hparams.n_layers,
        file.tensors.len()
    );
    let by_name: HashMap<&str, &TensorInfo> = file.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let slots = canonical_tensors(&hparams);
    let expected: HashSet<&str> = slots.iter().map(|s| s.name.as_str()).collect();
    if let Some(extra) = file.tensors.iter().find(|t| !expected.contains(t.name.as_str())) {
        bail!(
            "tensor '{}' ({}, ne {:?}) is not part of the {arch_name} architecture we run (rope_freqs and \
             expert tensors are not supported, nor biases outside qwen2's Q/K/V)",
            extra.name,
            extra.ggml_type.name(),
            extra.ne
        );
    }
    // Check every tensor before converting any, so a bad file fails fast.
    let mut planned = Vec::with_capacity(slots.len());
    for slot in &slots {
        let info = *by_name.get(slot.name.as_str()).ok_or_else(|| anyhow!("tensor '{}' is missing", slot.name))?;
        check_shape(info, &slot.dims)?;
        if encoded_dtype(info.ggml_type).is_none() && !can_widen(info.ggml_type) {
            bail!("tensor '{}': {}", info.name, unsupported_type(info.ggml_type));
        }
        planned.push((slot, info));
    }

    let bar = tensor_progress(planned.len(), progress);
    let mut tensors = Vec::with_capacity(planned.len());
    for (slot, info) in planned {
        bar.set_message(slot.name.clone());
        let data = convert_tensor(&file, info, slot.is_norm)?;
        tensors.push(TensorSpec { name: slot.name.clone(), dims: slot.dims.clone(), data });
        bar.inc(1);
    }
    bar.finish_and_clear();

    Ok(ModelSpec { hparams, tokenizer, tensors })
}

fn missing(key: &str) -> anyhow::Error {
    anyhow!("metadata key '{key}' is missing")
}

fn required_u32(f: &Gguf, key: &str) -> Result<u32> {
    f.get_u32(key)?.ok_or_else(|| missing(key))
}

/// Types kept as f32 values because SLM1 has no such dtype (bf16; norms of any float type).
fn can_widen(t: super::gguf::GgmlType) -> bool {
    use super::gguf::GgmlType;
    matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16)
}

fn read_hparams(f: &Gguf, arch: Arch, vocab_size: u32, tied_embeddings: bool) -> Result<Hyperparams> {
    let a = arch.name();
    let key = |k: &str| format!("{a}.{k}");
    let dim = required_u32(f, &key("embedding_length"))?;
    let n_layers = required_u32(f, &key("block_count"))?;
    let n_heads = required_u32(f, &key("attention.head_count"))?;
    let n_kv_heads = f.get_u32(&key("attention.head_count_kv"))?.unwrap_or(n_heads);
    let ffn_dim = required_u32(f, &key("feed_forward_length"))?;
    // Longer-context models still import: the package records the runtime's cap.
    let max_context = required_u32(f, &key("context_length"))?.min(tinyrustlm::format::MAX_CONTEXT);
    let rope_theta = f.get_f32(&key("rope.freq_base"))?.unwrap_or(DEFAULT_ROPE_THETA);
    let eps_key = key("attention.layer_norm_rms_epsilon");
    let norm_eps = f.get_f32(&eps_key)?.ok_or_else(|| missing(&eps_key))?;

    ensure!(n_heads >= 1, "{a}.attention.head_count is {n_heads}, must be >= 1");
    ensure!(
        n_kv_heads >= 1 && n_heads % n_kv_heads == 0,
        "{a}.attention.head_count_kv is {n_kv_heads}, must be >= 1 and divide {a}.attention.head_count {n_heads}"
    );
    // llama.cpp: head size `key_length`, default embedding_length / head_count.
    let head_dim = match f.get_u32(&key("attention.key_length"))? {
        Some(k) => k,
        None => {
            ensure!(dim % n_heads == 0, "{a}.attention.head_count is {n_heads}, must divide {a}.embedding_length {dim} (no {a}.attention.key_length)");
            dim / n_heads
        }
    };
    for k in ["rope.dimension_count", "attention.value_length"] {
        if let Some(v) = f.get_u32(&key(k))? {
            ensure!(v == head_dim, "{a}.{k} is {v} but head_dim is {head_dim}: partial RoPE and separate key/value head sizes are not supported");
        }
    }
    ensure!(
        (2..=tinyrustlm::format::MAX_HEAD_DIM).contains(&head_dim) && head_dim % 2 == 0,
        "head_dim is {head_dim}, must be even and in 2..={} (RoPE rotates pairs)",
        tinyrustlm::format::MAX_HEAD_DIM
    );
    check_rope_scaling(f, a)?;
    if let Some(n) = f.get_u32(&key("expert_count"))? {
        ensure!(n == 0, "{a}.expert_count is {n}: mixture-of-experts models are not supported");
    }
    if let Some(n) = f.get_u32(&key("vocab_size"))? {
        ensure!(n == vocab_size, "{a}.vocab_size is {n} but {KEY_TOKENS} has {vocab_size} tokens");
    }
    // The runtime's caps (abi/FORMAT.md, "Resource caps"), checked here so the importer never writes a
    // package the runtime refuses (the gguf fuzz target found a context length past the cap).
    use tinyrustlm::format::{MAX_DIM, MAX_FFN_DIM, MAX_LAYERS, MAX_VOCAB};
    for (k, value, max) in [
        (KEY_TOKENS.to_string(), vocab_size, MAX_VOCAB),
        (key("embedding_length"), dim, MAX_DIM),
        (key("block_count"), n_layers, MAX_LAYERS),
        (key("feed_forward_length"), ffn_dim, MAX_FFN_DIM),
        (key("context_length"), max_context, u32::MAX),
        (key("attention.head_count"), n_heads, dim),
    ] {
        ensure!((1..=max).contains(&value), "{k} is {value}, must be in 1..={max} (the runtime's cap)");
    }
    ensure!(
        n_heads as u64 * head_dim as u64 <= MAX_DIM as u64,
        "{a}.attention.head_count {n_heads} × head_dim {head_dim} is above the runtime's cap {MAX_DIM}"
    );
    // qwen2's GGUFs carry Q/K/V biases; all three are then required (reported by name if missing).
    let qkv_bias = arch.has_qkv_bias_rows() && f.tensor("blk.0.attn_q.bias").is_some();
    let (sliding_window, swa_pattern, rope_theta_local) = if arch == Arch::Gemma3 { gemma3_window(f, n_layers, max_context)? } else { (0, 0, 0.0) };
    Ok(Hyperparams {
        arch,
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
        head_dim,
        rope: arch.gguf_rope(),
        qkv_bias,
        sliding_window,
        swa_pattern,
        rope_theta_local,
    })
}

/// Gemma 3's local attention, as llama.cpp's loader sets it (`LLM_ARCH_GEMMA3`): the window from
/// `gemma3.attention.sliding_window`, five local layers then one global (`set_swa_pattern(6)`),
/// local RoPE base 10 000. Variants whose math differs from what we run are refused by the key that
/// shows it: the 27B (62 layers) scales queries by `1/√(dim / n_heads)`, and Gemma 2's logit
/// soft-capping keys do not belong to this architecture.
fn gemma3_window(f: &Gguf, n_layers: u32, max_context: u32) -> Result<(u32, u32, f32)> {
    const SWA_PATTERN: u32 = 6;
    const ROPE_THETA_LOCAL: f32 = 10_000.0;
    ensure!(n_layers != 62, "gemma3.block_count is 62 (Gemma 3 27B): its query scale 1/sqrt(embedding_length / head_count) is not supported");
    for k in ["gemma3.attn_logit_softcapping", "gemma3.final_logit_softcapping"] {
        if let Some(v) = f.get_f32(k)? {
            ensure!(v == 0.0, "{k} is {v}: logit soft-capping (Gemma 2) is not part of gemma3");
        }
    }
    let key = "gemma3.attention.sliding_window";
    let window = required_u32(f, key)?;
    ensure!(window >= 1, "{key} is 0, must be >= 1");
    // A window at least the context long never masks anything.
    let window = window.min(max_context);
    Ok((window, SWA_PATTERN, ROPE_THETA_LOCAL))
}

/// We rotate with plain RoPE: no scaling, or linear scaling by 1 (a factor of 0 means "unset" to
/// llama.cpp).
fn check_rope_scaling(f: &Gguf, a: &str) -> Result<()> {
    let type_key = format!("{a}.rope.scaling.type");
    let kind = f.get_str(&type_key)?;
    match kind {
        None | Some("none") | Some("linear") => {}
        Some(other) => bail!("{type_key} is '{other}': only 'none', or 'linear' with factor 1, is supported"),
    }
    if kind != Some("none") {
        for key in [format!("{a}.rope.scaling.factor"), format!("{a}.rope.scale_linear")] {
            let key = key.as_str();
            if let Some(x) = f.get_f32(key)? {
                ensure!(x == 0.0 || x == 1.0, "{key} is {x}: RoPE scaling is not supported (factor must be 1)");
            }
        }
    }
    Ok(())
}

/// `info` must have `dims` (`[rows, row_len]` or `[len]`) as GGUF `ne` reversed, trailing 1s allowed.
fn check_shape(info: &TensorInfo, dims: &[u32]) -> Result<()> {
    let rank = dims.len();
    let fits = info.ne.len() >= rank && info.ne[rank..].iter().all(|&d| d == 1) && info.ne[..rank].iter().rev().zip(dims).all(|(&n, &d)| n == u64::from(d));
    ensure!(fits, "tensor '{}' has GGUF shape ne {:?}, expected ne {:?} (dims {dims:?})", info.name, info.ne, dims.iter().rev().collect::<Vec<_>>());
    Ok(())
}

fn convert_tensor(f: &Gguf, info: &TensorInfo, is_norm: bool) -> Result<TensorData> {
    let data = f.tensor_data(info);
    if let (false, Some(dtype)) = (is_norm, encoded_dtype(info.ggml_type)) {
        if let Some(block) = first_nonfinite_scale(dtype, data) {
            bail!("tensor '{}' ({}): block {block} has a non-finite scale", info.name, info.ggml_type.name());
        }
        return Ok(TensorData::Encoded { dtype, bytes: data.to_vec() });
    }
    let values = dequantize_ggml(info.ggml_type, data).with_context(|| format!("tensor '{}'", info.name))?;
    check_finite(&format!("tensor '{}' ({})", info.name, info.ggml_type.name()), &values)?;
    Ok(TensorData::F32(values))
}

/// The chat template of an architecture's instruction-tuned models, for a GGUF that names none.
pub(crate) fn arch_chat_template(arch: Arch) -> ChatTemplate {
    match arch {
        Arch::Gemma3 => ChatTemplate::Gemma,
        _ => ChatTemplate::None,
    }
}

fn read_tokenizer(f: &Gguf, arch: Arch) -> Result<TokenizerSpec> {
    let model = f.get_str("tokenizer.ggml.model")?.ok_or_else(|| missing("tokenizer.ggml.model"))?;
    let kind = match model {
        "gpt2" => TokenizerKind::BpeByteLevel,
        "llama" => TokenizerKind::BpeSentencePiece,
        other => bail!("tokenizer.ggml.model is '{other}': only 'gpt2' (byte-level BPE) and 'llama' (SentencePiece BPE) are supported"),
    };
    let texts = f.get_str_array(KEY_TOKENS)?.ok_or_else(|| missing(KEY_TOKENS))?;
    let n = texts.len();
    ensure!(n >= 1, "{KEY_TOKENS} is empty");

    let types: Vec<u8> = match f.get_int_array(KEY_TOKEN_TYPE)? {
        None => vec![token_type::NORMAL; n],
        Some(v) => {
            ensure!(v.len() == n, "{KEY_TOKEN_TYPE} has {} entries but {KEY_TOKENS} has {n}", v.len());
            v.iter()
                .enumerate()
                .map(|(i, &t)| match u8::try_from(t) {
                    Ok(t) if (token_type::NORMAL..=token_type::BYTE).contains(&t) => Ok(t),
                    _ => Err(anyhow!("{KEY_TOKEN_TYPE}[{i}] is {t}, must be 1..=6 (normal, unknown, control, user-defined, unused, byte)")),
                })
                .collect::<Result<_>>()?
        }
    };
    let scores: Vec<f32> = match f.get_f32_array(KEY_SCORES)? {
        None => vec![0.0; n],
        Some(v) => {
            ensure!(v.len() == n, "{KEY_SCORES} has {} entries but {KEY_TOKENS} has {n}", v.len());
            if let Some(i) = v.iter().position(|s| !s.is_finite()) {
                bail!("{KEY_SCORES}[{i}] is {}, must be finite", v[i]);
            }
            v.to_vec()
        }
    };
    let special = |key: &str| -> Result<Option<u32>> {
        match f.get_u32(key)? {
            Some(id) if id as usize >= n => bail!("{key} is {id}, must be a token id < {n}"),
            id => Ok(id),
        }
    };
    let bos_id = special("tokenizer.ggml.bos_token_id")?;
    let eos_id = special("tokenizer.ggml.eos_token_id")?;
    let unk_id = special("tokenizer.ggml.unknown_token_id")?;
    let eot_id = special("tokenizer.ggml.eot_token_id")?;
    let eom_id = special("tokenizer.ggml.eom_token_id")?;
    let sentencepiece = kind == TokenizerKind::BpeSentencePiece;
    let add_bos = f.get_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(sentencepiece);
    // The runtime refuses a tokenizer that must add a BOS it does not have (found by fuzzing).
    if add_bos && bos_id.is_none() {
        bail!("tokenizer.ggml.add_bos_token is true (or defaulted for SentencePiece) but tokenizer.ggml.bos_token_id is missing");
    }
    // llama.cpp applies the dummy prefix to SentencePiece only; read the key anyway so a wrong type
    // is reported.
    let space_prefix_key = f.get_bool("tokenizer.ggml.add_space_prefix")?;
    let add_space_prefix = sentencepiece && space_prefix_key.unwrap_or(true);
    let chat_template = match f.get_str("tokenizer.chat_template")? {
        Some(t) if t.contains("<|im_start|>") && t.contains(QWEN2_DEFAULT_SYSTEM) => ChatTemplate::ChatMlQwen2,
        Some(t) if t.contains("<|im_start|>") => ChatTemplate::ChatMl,
        Some(t) if t.contains("<start_of_turn>") => ChatTemplate::Gemma,
        Some(_) => ChatTemplate::None,
        // No template in the file (Gemma 3 270M is a base model and ships none): the one the
        // architecture's instruction-tuned models are trained on.
        None => arch_chat_template(arch),
    };
    let pre = f.get_str("tokenizer.ggml.pre")?;
    let pre_tokenizer = match (kind, pre) {
        (TokenizerKind::BpeByteLevel, None | Some("gpt2") | Some("default")) => PreTokenizer::Gpt2,
        (TokenizerKind::BpeByteLevel, Some("smollm")) => PreTokenizer::Smollm,
        (TokenizerKind::BpeByteLevel, Some("qwen2")) => PreTokenizer::Qwen2,
        (TokenizerKind::BpeByteLevel, Some("llama-bpe")) => PreTokenizer::Llama3,
        (TokenizerKind::BpeByteLevel, Some(other)) => {
            bail!("tokenizer.ggml.pre is '{other}': only 'gpt2', 'default', 'smollm', 'qwen2' and 'llama-bpe' are supported")
        }
        _ => PreTokenizer::None,
    };

    let mut tokens = Vec::with_capacity(n);
    for (id, text) in texts.iter().enumerate() {
        let ty = types[id];
        let bytes = match kind {
            TokenizerKind::BpeByteLevel => byte_level_token_bytes(text, ty),
            _ => sentencepiece_token_bytes(text, ty),
        }
        .with_context(|| format!("{KEY_TOKENS}[{id}] '{text}'"))?;
        tokens.push(TokenSpec { bytes, score: scores[id], token_type: ty });
    }

    let merges = match kind {
        TokenizerKind::BpeByteLevel => {
            let list = f.get_str_array(KEY_MERGES)?.ok_or_else(|| missing(KEY_MERGES))?;
            byte_level_merges(texts, list)?
        }
        _ => sentencepiece_merges(&tokens)?,
    };
    let eog_ids = eog_ids(&mut tokens, texts, [eos_id, eot_id, eom_id])?;
    check_distinct_bytes(&tokens, texts)?;

    Ok(TokenizerSpec { kind, tokens, merges, bos_id, eos_id, unk_id, pre_tokenizer, chat_template, add_bos, add_space_prefix, eog_ids })
}

/// The runtime's token rule (FORMAT.md, tokenizer section): no two tokens with bytes have the same
/// bytes, except that a byte token may share its byte with one token of another type (`<0x41>` and
/// `A`). Checked here so a vocabulary that breaks it is refused by its key, not packed into a
/// package the runtime refuses (the gguf fuzz target found two `<0x08>` tokens).
fn check_distinct_bytes(tokens: &[TokenSpec], texts: &[String]) -> Result<()> {
    let mut first: HashMap<(&[u8], bool), usize> = HashMap::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate().filter(|(_, t)| !t.bytes.is_empty()) {
        if let Some(&earlier) = first.get(&(t.bytes.as_slice(), t.token_type == token_type::BYTE)) {
            bail!("{KEY_TOKENS}[{id}] '{}' has the same bytes as {KEY_TOKENS}[{earlier}] '{}': tokens must differ", texts[id], texts[earlier]);
        }
        first.insert((t.bytes.as_slice(), t.token_type == token_type::BYTE), id);
    }
    Ok(())
}

/// GPT-2's `bytes_to_unicode` inverted: code point → byte. The printable bytes `!`..=`~`,
/// `¡`..=`¬`, `®`..=`ÿ` stand for themselves; the other 68 bytes, in increasing order, are
/// U+0100, U+0101, ….
fn gpt2_unicode_to_byte() -> [Option<u8>; 256 + 68] {
    let mut table = [None; 256 + 68];
    let mut next = 256usize;
    for b in 0u16..=255 {
        let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
        let cp = if printable {
            b as usize
        } else {
            next += 1;
            next - 1
        };
        table[cp] = Some(b as u8);
    }
    table
}

/// Normal (and byte) tokens are stored mapped through `bytes_to_unicode`; control, user-defined,
/// unknown and unused tokens are plain text (llama.cpp `token_to_piece`).
fn byte_level_token_bytes(text: &str, ty: u8) -> Result<Vec<u8>> {
    if ty != token_type::NORMAL && ty != token_type::BYTE {
        return Ok(text.as_bytes().to_vec());
    }
    // Built per call: 324 entries, cheap next to the string work.
    let table = gpt2_unicode_to_byte();
    text.chars()
        .map(|c| table.get(c as usize).copied().flatten().ok_or_else(|| anyhow!("character U+{:04X} is not in GPT-2's byte-to-unicode table", c as u32)))
        .collect()
}

/// Normal tokens use `▁` for space; byte tokens are `<0xAB>`; the others are plain text.
fn sentencepiece_token_bytes(text: &str, ty: u8) -> Result<Vec<u8>> {
    match ty {
        token_type::NORMAL => Ok(text.replace('\u{2581}', " ").into_bytes()),
        token_type::BYTE => parse_byte_token(text).map(|b| vec![b]).ok_or_else(|| anyhow!("a byte token must be written <0xXX>")),
        _ => Ok(text.as_bytes().to_vec()),
    }
}

/// `<0xAB>` → 0xAB.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// `"a b"` merges (in the vocabulary's mapped text) → ids; rank = position in the list.
fn byte_level_merges(texts: &[String], list: &[String]) -> Result<Vec<MergeSpec>> {
    let mut id_of: HashMap<&str, u32> = HashMap::with_capacity(texts.len());
    for (id, t) in texts.iter().enumerate() {
        id_of.entry(t.as_str()).or_insert(id as u32);
    }
    let mut merges = Vec::with_capacity(list.len());
    for (rank, m) in list.iter().enumerate() {
        let ctx = || format!("{KEY_MERGES}[{rank}] '{m}'");
        let (a, b) = m.split_once(' ').ok_or_else(|| anyhow!("{}: not two tokens separated by a space", ctx()))?;
        let left = *id_of.get(a).ok_or_else(|| anyhow!("{}: '{a}' is not a token", ctx()))?;
        let right = *id_of.get(b).ok_or_else(|| anyhow!("{}: '{b}' is not a token", ctx()))?;
        let joined = format!("{a}{b}");
        let result = *id_of.get(joined.as_str()).ok_or_else(|| anyhow!("{}: the result '{joined}' is not a token", ctx()))?;
        merges.push(MergeSpec { left, right, result, rank: rank as u32 });
    }
    Ok(merges)
}

/// eos/eot/eom, every token whose text ends a turn ([`EOG_TEXTS`]; made a control token if it is
/// not one, as llama.cpp does: Gemma's user-defined `</s>`, Qwen2.5's normal one), and every control
/// or user-defined token that is a FIM sentinel llama.cpp stops on ([`FIM_EOG_TEXTS`]); ascending,
/// without repeats. Called after the merges are made, which follow the vocabulary's own types.
fn eog_ids(tokens: &mut [TokenSpec], texts: &[String], specials: [Option<u32>; 3]) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = specials.into_iter().flatten().collect();
    for (id, text) in texts.iter().enumerate() {
        let token = &mut tokens[id];
        let special = matches!(token.token_type, token_type::CONTROL | token_type::USER_DEFINED);
        if EOG_TEXTS.contains(&text.as_str()) && token.token_type != token_type::BYTE {
            token.token_type = token_type::CONTROL;
            ids.push(id as u32);
        } else if special && FIM_EOG_TEXTS.contains(&text.as_str()) {
            ids.push(id as u32);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ensure!(ids.len() <= MAX_EOG_IDS, "{} end-of-generation tokens {ids:?}, at most {MAX_EOG_IDS} are allowed", ids.len());
    Ok(ids)
}
