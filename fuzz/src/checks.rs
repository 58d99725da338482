//! What each fuzz target does with one input. Shared by the `cargo fuzz` targets (`fuzz_targets/`)
//! and by the stable-toolchain replay of the checked-in corpus (`harness/tests/fuzz_regressions.rs`
//! includes this file), so a regression file is replayed through exactly the code that found it.
//!
//! Every function returns whether the input was accepted or rejected (with its status) and panics
//! when a rule of the project breaks: a panic or trap in the code under test, or a broken promise
//! such as "a package that parses can be loaded and run", "validate OK means apply OK", "an adapter
//! comes off bit for bit" or "byte-level decoding gives the text back".

use std::cell::RefCell;

use harness::package;
use harness::spec::{ChatTemplate, MergeSpec, ModelSpec, PreTokenizer, TensorData, TokenSpec, TokenizerKind, TokenizerSpec};
use harness::synth::{synthetic_model, SynthShape};
use tinyrustlm::buffer::AlignedBytes;
use tinyrustlm::engine::{Engine, ResultKind};
use tinyrustlm::error::Error;
use tinyrustlm::model::arch::{Arch, RopeKind};
use tinyrustlm::quant::DType;
use tinyrustlm::tokenizer::{StreamDecoder, Tokenizer};

/// The result of one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    /// Rejected with this status code (the runtime's) or 0 for a host-side (anyhow) error.
    Rejected(u32),
}

fn rejected(e: &Error) -> Outcome {
    Outcome::Rejected(e.status.code())
}

fn clock() -> f64 {
    0.0
}

// ---- shared fixtures -------------------------------------------------------------------------

/// Shape of every synthetic model the targets use: small enough that a forward pass costs
/// microseconds, with GQA (2 heads, 1 KV head) so the grouped paths run.
pub fn tiny_shape(tied: bool) -> SynthShape {
    SynthShape { dim: 32, n_layers: 1, n_heads: 2, n_kv_heads: 1, ffn_dim: 64, max_context: 48, tied_embeddings: tied }
}

pub const MODEL_SEED: u64 = 0xF022;

/// The parent packages adapters are fuzzed against: one per storage mode, the q8_0 one untied (so
/// `output.weight` is a target too).
pub fn parent_packages() -> Vec<Vec<u8>> {
    DType::V1_STORAGE
        .iter()
        .map(|&q| {
            let tied = q != DType::Q8_0;
            package::write(&synthetic_model(&tiny_shape(tied), MODEL_SEED), q).expect("synthetic package")
        })
        .collect()
}

/// SLM1 v2 synthetic models the targets use, with every dtype of v2 kept as shipped: a qwen2 one
/// (Q/K/V biases, NEOX RoPE, `head_dim` 128 so `n_heads · head_dim` = 256 is not `dim` = 32) and
/// a llama one (v2 only because its dtypes are mixed). `ffn_dim` 256 and the qwen2 `attn_output`
/// rows of 256 are what let k-quant super-blocks in; the 32-wide rows take the 32-blocks.
pub fn v2_models() -> Vec<(&'static str, ModelSpec)> {
    let llama = synthetic_model(&SynthShape { ffn_dim: 256, ..tiny_shape(true) }, MODEL_SEED).hparams;
    let qwen2 = harness::spec::Hyperparams { arch: Arch::Qwen2, head_dim: 128, rope: RopeKind::Neox, qkv_bias: true, rope_theta: 1e6, ..llama.clone() };
    let qwen2_dtypes: &[(&str, DType)] = &[
        ("token_embd.weight", DType::Q8_0),
        ("attn_q.weight", DType::Q5_0),
        ("attn_k.weight", DType::F16),
        ("attn_v.weight", DType::Q5_1),
        ("attn_output.weight", DType::Q4_K),
        ("ffn_gate.weight", DType::Q8_0),
        ("ffn_up.weight", DType::Q4_0),
        ("ffn_down.weight", DType::Q6_K),
    ];
    let llama_dtypes: &[(&str, DType)] = &[
        ("token_embd.weight", DType::Q8_0),
        ("output.weight", DType::F16),
        ("attn_q.weight", DType::Q4_1),
        ("attn_k.weight", DType::F32),
        ("attn_v.weight", DType::Q8_0),
        ("attn_output.weight", DType::Q5_0),
        ("ffn_gate.weight", DType::F16),
        ("ffn_up.weight", DType::Q4_0),
        ("ffn_down.weight", DType::Q5_K),
    ];
    // gemma3: a window of 3 tokens on every other layer (so a short generation crosses it), Q/K
    // norms and post norms; qwen3: the Q/K norms alone. Both with qwen2's mix of dtypes.
    let gemma3 = harness::spec::Hyperparams {
        arch: Arch::Gemma3,
        head_dim: 128,
        rope: RopeKind::Neox,
        rope_theta: 1e6,
        sliding_window: 3,
        swa_pattern: 2,
        rope_theta_local: 10_000.0,
        ..llama.clone()
    };
    let qwen3 = harness::spec::Hyperparams { arch: Arch::Qwen3, head_dim: 128, rope: RopeKind::Neox, rope_theta: 1e6, ..llama.clone() };
    let untied_llama = harness::spec::Hyperparams { tied_embeddings: false, ..llama };
    vec![
        ("qwen2", with_dtypes(harness::synth::synthetic_model_for(qwen2, MODEL_SEED), qwen2_dtypes)),
        ("llama", with_dtypes(harness::synth::synthetic_model_for(untied_llama, MODEL_SEED), llama_dtypes)),
        ("gemma3", with_dtypes(harness::synth::synthetic_model_for(gemma3, MODEL_SEED), qwen2_dtypes)),
        ("qwen3", with_dtypes(harness::synth::synthetic_model_for(qwen3, MODEL_SEED), qwen2_dtypes)),
    ]
}

/// Encodes each matrix in the dtype its name ends with in `dtypes` (kept as shipped by the writer).
fn with_dtypes(mut spec: ModelSpec, dtypes: &[(&str, DType)]) -> ModelSpec {
    for t in spec.tensors.iter_mut().filter(|t| t.dims.len() == 2) {
        let &(_, dtype) = dtypes.iter().find(|(suffix, _)| t.name.ends_with(suffix)).unwrap_or_else(|| panic!("no dtype for {}", t.name));
        t.data = TensorData::Encoded { dtype, bytes: package::encode_tensor(t, dtype).expect("encoding a synthetic tensor") };
    }
    spec
}

/// The v2 packages of `v2_models`, as `trl pack --gguf` writes tensors as shipped.
pub fn v2_packages() -> Vec<(&'static str, Vec<u8>)> {
    v2_models().into_iter().map(|(name, spec)| (name, package::build_as_shipped(&spec, |_| {}).expect("v2 synthetic package").to_bytes().0)).collect()
}

// The runtime's `Error` is large by design (inline field, no allocation).
#[allow(clippy::result_large_err)]
fn loaded_engine(pkg: &[u8], context_len: u32) -> Result<Engine, Error> {
    let mut engine = Engine::new(clock);
    let bytes = AlignedBytes::copy_from(pkg).expect("allocating the package copy");
    engine.load(bytes, context_len, 0).map_err(|(e, _)| e)?;
    Ok(engine)
}

/// Runs `prompt` greedily for `n` tokens and returns the logits after the last step.
fn run_logits(engine: &mut Engine, prompt: &[u8], n: u32) -> Vec<u32> {
    engine.reset().expect("reset of a loaded engine");
    engine.generate(prompt, n, 0).expect("greedy generation on a loaded model");
    let mut buf = vec![0u8; 4 * 4096];
    let len = engine.read(ResultKind::Logits, &mut buf).expect("reading logits");
    buf[..len].chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Drains everything a loaded engine can report, as a host would after a generation.
fn read_everything(engine: &mut Engine) {
    let mut buf = vec![0u8; 1 << 16];
    for kind in [ResultKind::Text, ResultKind::Tokens, ResultKind::PromptTokens, ResultKind::State, ResultKind::Tokenized, ResultKind::Logits] {
        let _ = engine.read(kind, &mut buf);
    }
    let _ = engine.diagnostics(0).to_bytes();
}

// ---- SLM1 packages ---------------------------------------------------------------------------

/// An SLM1 package as given, and again with its three checksums recomputed (so mutations reach the
/// rules behind the checksums). A package that parses must load, tokenize and generate.
pub fn slm1(data: &[u8]) -> Outcome {
    let raw = tinyrustlm::format::parse(data);
    let mut resealed = data.to_vec();
    if resealed.len() >= package::HEADER_LEN {
        package::reseal(&mut resealed);
    }
    if raw.is_ok() {
        assert_eq!(resealed, data, "resealing a valid package changed it");
    }
    let whole = tinyrustlm::format::parse(&resealed);
    assert_eq!(streamed(&resealed), whole.clone().map_err(Box::new), "verified in chunks, the package is judged otherwise than whole");
    let parsed = match whole {
        Ok(p) => p,
        Err(e) => return rejected(&e),
    };
    // Bound the work of one input: a mutated header may declare a long context.
    let context_len = parsed.hparams.max_context.min(24);
    let mut engine = match loaded_engine(&resealed, context_len) {
        Ok(e) => e,
        // The parser accepted it; the tokenizer section may still refuse.
        Err(e) => return rejected(&e),
    };
    for (text, flags) in [(&b"Hello <s> world"[..], 1u32), (&b"\xff\xfe caf\xc3\xa9"[..], 0)] {
        let _ = engine.tokenize(text, flags);
    }
    let _ = engine.generate(b"Once upon", 6, 0);
    read_everything(&mut engine);
    Outcome::Accepted
}

/// `bytes` verified as a stream in chunks whose sizes come from the bytes themselves (1..=256), as
/// `load_append` would feed them: the verdict must not depend on the cuts.
fn streamed(bytes: &[u8]) -> Result<tinyrustlm::format::Package, Box<Error>> {
    let mut verifier = tinyrustlm::format::PackageVerifier::new(bytes.len());
    let mut at = 0;
    verifier.advance(&bytes[..0])?;
    while at < bytes.len() {
        let step = 1 + bytes[at] as usize;
        at = (at + step).min(bytes.len());
        verifier.advance(&bytes[..at])?;
    }
    Ok(verifier.finish()?)
}

// ---- adapters --------------------------------------------------------------------------------

struct Parent {
    engine: Engine,
    base_crc: u32,
    base_logits: Vec<u32>,
}

thread_local! {
    static PARENTS: RefCell<Vec<Parent>> = RefCell::new(
        parent_packages()
            .into_iter()
            .chain(v2_packages().into_iter().map(|(_, p)| p))
            .map(|p| {
                let mut engine = loaded_engine(&p, 16).expect("loading a synthetic parent");
                let base_crc = engine.diagnostics(0).assembly_state_crc;
                let base_logits = run_logits(&mut engine, ADAPTER_PROMPT, 2);
                Parent { engine, base_crc, base_logits }
            })
            .collect()
    );
}

const ADAPTER_PROMPT: &[u8] = b"ab";

/// An adapter of kind `magic`: the input's first four bytes are replaced by the magic, and
/// `total_len` and the CRC trailer are recomputed, so mutations reach the rules behind them. The
/// unmodified input is parsed too. Against each parent (each v1 storage mode, the v2 ones): validate; when it passes,
/// apply must pass, the model must run, and removing it must give back the parent's logits and
/// assembly checksum bit for bit.
pub fn adapter(magic: [u8; 4], data: &[u8]) -> Outcome {
    let _ = tinyrustlm::adapter::parse(data, None);
    let mut bytes = data.to_vec();
    if bytes.len() >= 4 {
        bytes[..4].copy_from_slice(&magic);
    }
    harness::adapter::reseal(&mut bytes);
    let inspected = tinyrustlm::adapter::parse(&bytes, None);
    PARENTS.with(|parents| {
        let mut parents = parents.borrow_mut();
        let mut outcome = match &inspected {
            Ok(_) => Outcome::Rejected(u32::MAX),
            Err(e) => rejected(e),
        };
        for parent in parents.iter_mut() {
            let engine = &mut parent.engine;
            match engine.validate_adapter(&bytes) {
                Err(e) => {
                    if outcome != Outcome::Accepted {
                        outcome = rejected(&e);
                    }
                }
                Ok(()) => {
                    assert!(
                        inspected.is_ok(),
                        "an adapter valid for a parent fails the parent-less parse: {:?}",
                        inspected.as_ref().err().map(|e| e.to_string())
                    );
                    if let Err(e) = engine.apply_adapter(&bytes) {
                        panic!("validate_adapter passed but apply_adapter failed: {e}");
                    }
                    let d = engine.diagnostics(0);
                    assert_eq!(d.adapters_applied, 1);
                    let _ = engine.generate(b"abc", 3, 0);
                    read_everything(engine);
                    engine.remove_last_adapter().expect("removing the adapter just applied");
                    assert_eq!(engine.diagnostics(0).assembly_state_crc, parent.base_crc, "assembly checksum after remove");
                    let logits = run_logits(engine, ADAPTER_PROMPT, 2);
                    assert!(logits == parent.base_logits, "logits after apply + remove differ from the parent's");
                    outcome = Outcome::Accepted;
                }
            }
        }
        outcome
    })
}

// ---- session snapshots -----------------------------------------------------------------------

/// Context of the engine snapshots are restored into (and the seeds saved from).
pub const SESSION_CONTEXT: u32 = 32;

/// The synthetic parent session snapshots are bound to, loaded with [`SESSION_CONTEXT`].
pub fn session_engine() -> Engine {
    loaded_engine(&parent_packages()[1], SESSION_CONTEXT).expect("loading the session model")
}

thread_local! {
    static SESSION_ENGINE: RefCell<Engine> = RefCell::new(session_engine());
}

/// The snapshot bytes of the engine's last `save_session`.
pub fn saved_session(engine: &mut Engine) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 20];
    let n = engine.read(ResultKind::Session, &mut buf).expect("reading the snapshot");
    buf.truncate(n);
    buf
}

/// A session snapshot, restored as given and again with its CRC32 recomputed (so mutations reach
/// the rules behind it). One that restores must save back as the same bytes when it was saved with
/// the engine's context, and the conversation must continue.
pub fn ses1(data: &[u8]) -> Outcome {
    let mut resealed = data.to_vec();
    if resealed.len() >= 4 {
        let n = resealed.len() - 4;
        let crc = crc32fast::hash(&resealed[..n]);
        resealed[n..].copy_from_slice(&crc.to_le_bytes());
    }
    SESSION_ENGINE.with(|engine| {
        let engine = &mut *engine.borrow_mut();
        let _ = engine.restore_session(data);
        match engine.restore_session(&resealed) {
            Err(e) => rejected(&e),
            Ok(()) => {
                engine.save_session().expect("saving a restored conversation");
                if resealed[64..68] == SESSION_CONTEXT.to_le_bytes() {
                    assert!(saved_session(engine) == resealed, "a restored snapshot saves back as other bytes");
                }
                let _ = engine.generate(b"d", 2, tinyrustlm::engine::GEN_CONTINUE);
                read_everything(engine);
                Outcome::Accepted
            }
        }
    })
}

// ---- tokenizer -------------------------------------------------------------------------------

fn normal(bytes: &[u8], score: f32) -> TokenSpec {
    TokenSpec { bytes: bytes.to_vec(), score, token_type: harness::spec::token_type::NORMAL }
}

fn control(bytes: &[u8]) -> TokenSpec {
    TokenSpec { bytes: bytes.to_vec(), score: 0.0, token_type: harness::spec::token_type::CONTROL }
}

/// Pieces merged into the synthetic BPE vocabularies: English fragments, a contraction, digits and
/// multi-byte characters, so merges fire inside and across UTF-8 sequences.
const PIECES: &[&str] = &[
    "th", "the", " t", " th", " the", "in", "ing", " a", " an", " and", "er", "re", "on", " o", " on", "'s", "'t", "12", "123", "é", "café", " 世", "世界",
    "\n\n", "  ", "hello", " world", "👋",
];

/// GPT-2 byte-level BPE: every byte is a token, then the pieces built by merges of a prefix and a
/// byte, then ChatML specials.
pub fn byte_level_spec(pre: PreTokenizer) -> TokenizerSpec {
    let mut tokens: Vec<TokenSpec> = (0..=255u8).map(|b| normal(&[b], 0.0)).collect();
    let mut merges = Vec::new();
    let id_of = |tokens: &Vec<TokenSpec>, b: &[u8]| tokens.iter().position(|t| t.bytes == b).map(|i| i as u32);
    for piece in PIECES {
        let p = piece.as_bytes();
        for end in 2..=p.len() {
            if id_of(&tokens, &p[..end]).is_some() {
                continue;
            }
            let left = id_of(&tokens, &p[..end - 1]).unwrap();
            let right = p[end - 1] as u32;
            tokens.push(normal(&p[..end], 0.0));
            merges.push(MergeSpec { left, right, result: tokens.len() as u32 - 1, rank: merges.len() as u32 });
        }
    }
    let eos = tokens.len() as u32;
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(control(s.as_bytes()));
    }
    TokenizerSpec {
        kind: TokenizerKind::BpeByteLevel,
        tokens,
        merges,
        bos_id: Some(eos + 1),
        eos_id: Some(eos),
        unk_id: None,
        pre_tokenizer: pre,
        chat_template: ChatTemplate::ChatMl,
        add_bos: false,
        add_space_prefix: false,
        eog_ids: vec![eos, eos + 2],
    }
}

/// SentencePiece BPE with a dummy prefix: `<unk>`, `<s>`, `</s>`, then (optionally) the 256 byte
/// tokens, then single characters and the pieces with descending scores; merges derived from the
/// scores as the importers do.
pub fn sentencepiece_spec(byte_fallback: bool) -> TokenizerSpec {
    let mut tokens =
        vec![TokenSpec { bytes: b"<unk>".to_vec(), score: 0.0, token_type: harness::spec::token_type::UNKNOWN }, control(b"<s>"), control(b"</s>")];
    if byte_fallback {
        tokens.extend((0..=255u8).map(|b| TokenSpec { bytes: vec![b], score: 0.0, token_type: harness::spec::token_type::BYTE }));
    }
    let mut chars: Vec<String> = PIECES.iter().flat_map(|p| p.chars().map(String::from)).collect();
    chars.extend(["a", "b", "c", "x", " "].map(String::from));
    chars.sort();
    chars.dedup();
    for c in &chars {
        tokens.push(normal(c.as_bytes(), -100.0));
    }
    let mut score = -1.0;
    for piece in PIECES {
        let chars: Vec<char> = piece.chars().collect();
        for end in 2..=chars.len() {
            let s: String = chars[..end].iter().collect();
            if !tokens.iter().any(|t| t.bytes == s.as_bytes()) {
                tokens.push(normal(s.as_bytes(), score));
                score -= 1.0;
            }
        }
    }
    let merges = harness::import::spm::sentencepiece_merges(&tokens).expect("sentencepiece merges");
    TokenizerSpec {
        kind: TokenizerKind::BpeSentencePiece,
        tokens,
        merges,
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        pre_tokenizer: PreTokenizer::None,
        chat_template: ChatTemplate::None,
        add_bos: true,
        add_space_prefix: true,
        eog_ids: vec![2],
    }
}

/// The tokenizers the target encodes with, and whether decoding must give the text back.
pub fn tokenizer_specs() -> Vec<(TokenizerSpec, RoundTrip)> {
    vec![
        (harness::synth::byte_tokenizer(), RoundTrip::Exact),
        (byte_level_spec(PreTokenizer::Gpt2), RoundTrip::Exact),
        (byte_level_spec(PreTokenizer::Smollm), RoundTrip::Exact),
        (byte_level_spec(PreTokenizer::None), RoundTrip::Exact),
        (sentencepiece_spec(true), RoundTrip::AfterBos),
        (sentencepiece_spec(false), RoundTrip::None),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundTrip {
    /// `decode(encode(text))` is the text (after BOS, when one is added), with or without special
    /// tokens parsed.
    Exact,
    /// SentencePiece with byte fallback: the text comes back after BOS when specials are not parsed,
    /// every `▁` (U+2581, SentencePiece's space, read as a space) as a space.
    AfterBos,
    /// No byte fallback: unknown characters become `<unk>`; only the invariants hold.
    None,
}

/// `text` with every `▁` (bytes E2 96 81) a space. The bytes E2 96 81 are a character wherever they
/// occur (E2 is never a continuation byte), so a byte search finds exactly the characters.
pub fn spaces_for_space_symbols(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i..].starts_with("\u{2581}".as_bytes()) {
            out.push(b' ');
            i += 3;
        } else {
            out.push(text[i]);
            i += 1;
        }
    }
    out
}

thread_local! {
    static TOKENIZERS: Vec<(Tokenizer, RoundTrip)> = tokenizer_specs()
        .iter()
        .map(|(spec, rt)| {
            let section = package::tokenizer_bytes(spec).expect("tokenizer section");
            let t = Tokenizer::parse(&section, spec.tokens.len() as u32).unwrap_or_else(|e| panic!("synthetic tokenizer rejected: {e}"));
            (t, *rt)
        })
        .collect();
}

/// Byte 0 picks the tokenizer and whether specials are parsed; the rest is the text. Encoding must
/// give ids in range, decoding must give the text back where the vocabulary covers every byte, and
/// streaming decode (token by token) must equal the lossy UTF-8 of the whole decode.
pub fn tokenizer(data: &[u8]) -> Outcome {
    let Some((&selector, text)) = data.split_first() else {
        return Outcome::Rejected(0);
    };
    TOKENIZERS.with(|all| {
        let (t, round_trip) = &all[selector as usize % all.len()];
        let parse_special = selector & 0x80 != 0;
        let mut ids = Vec::new();
        let encoded = t.encode(text, parse_special, &mut ids).unwrap_or_else(|e| panic!("encoding {} bytes failed: {e}", text.len()));
        // A vocabulary that covers every byte encodes every byte.
        if *round_trip != RoundTrip::None {
            assert_eq!(encoded.unencodable_bytes, 0, "unencodable bytes counted with a full vocabulary; ids {ids:?}");
        }
        assert!(ids.iter().all(|&id| id < t.n_tokens()), "an id out of range: {ids:?}");
        let skip = (t.adds_bos() && t.bos_id().is_some()) as usize;
        if t.adds_bos() {
            assert_eq!(ids.first().copied(), t.bos_id(), "BOS first");
        }
        let mut decoded = Vec::new();
        t.decode(&ids[skip..], &mut decoded);
        match round_trip {
            RoundTrip::Exact => assert_eq!(decoded, text, "decode(encode(text)) != text; ids {ids:?}"),
            RoundTrip::AfterBos if !parse_special => assert_eq!(decoded, spaces_for_space_symbols(text), "decode(encode(text)) != text; ids {ids:?}"),
            _ => {}
        }
        // Streaming, as the engine hands out text: one token's bytes at a time.
        let mut stream = StreamDecoder::new();
        let mut streamed = Vec::new();
        let mut prev = None;
        for &id in &ids[skip..] {
            let before = streamed.len();
            stream.push(t.decode_piece(prev, id), &mut streamed);
            assert!(std::str::from_utf8(&streamed[before..]).is_ok(), "a streamed chunk is not UTF-8");
            prev = Some(id);
        }
        stream.finish(&mut streamed);
        assert_eq!(streamed, String::from_utf8_lossy(&decoded).as_bytes(), "streamed text != lossy UTF-8 of the decode");
        Outcome::Accepted
    })
}

// ---- eval case files -------------------------------------------------------------------------

thread_local! {
    static EVAL_ENGINE: RefCell<Engine> = RefCell::new(loaded_engine(&parent_packages()[0], 0).expect("loading the eval model"));
}

/// Tokens a case file may ask for before the target stops running it (parsing is always done).
const EVAL_RUN_TOKEN_BUDGET: u64 = 96;

/// Parses an eval case file; a small valid one is also run by the module's runner on the synthetic
/// model, and its sidecar must be JSON listing the file's cases in order.
pub fn eval_cases(data: &[u8]) -> Outcome {
    let suite = match tinyrustlm::eval::parse_suite(data) {
        Ok(s) => s,
        Err(e) => return rejected(&e),
    };
    assert!(!suite.cases.is_empty());
    let budget: u64 = suite.cases.iter().map(|c| c.max_tokens as u64).sum();
    if budget > EVAL_RUN_TOKEN_BUDGET {
        return Outcome::Accepted;
    }
    EVAL_ENGINE.with(|engine| {
        let mut engine = engine.borrow_mut();
        // Running may still refuse (a prompt longer than the context): with a status, never a panic.
        if let Err(e) = tinyrustlm::eval::run(&mut engine, data) {
            return rejected(&e);
        }
        let mut buf = vec![0u8; 1 << 20];
        let n = engine.read(ResultKind::EvalSidecar, &mut buf).expect("reading the sidecar");
        let sidecar: serde_json::Value =
            serde_json::from_slice(&buf[..n]).unwrap_or_else(|e| panic!("sidecar is not JSON ({e}): {}", String::from_utf8_lossy(&buf[..n])));
        let cases = sidecar.get("cases").and_then(|c| c.as_array()).expect("sidecar has a cases array");
        assert_eq!(cases.len(), suite.cases.len(), "sidecar case count");
        for (c, want) in cases.iter().zip(&suite.cases) {
            assert_eq!(c.get("id").and_then(|v| v.as_str()), Some(want.id.as_str()), "sidecar case id");
        }
        Outcome::Accepted
    })
}

// ---- GGUF import -----------------------------------------------------------------------------

/// Imports a GGUF file as `trl pack --gguf` does. What the importer accepts must pack into a
/// package the runtime accepts (or the writer must refuse it with an error).
pub fn gguf(data: &[u8]) -> Outcome {
    if let Ok(file) = harness::import::gguf::Gguf::parse(data) {
        // Every accessor on whatever was parsed.
        for t in &file.tensors {
            let _ = file.tensor_data(t);
        }
        for key in ["general.architecture", "tokenizer.ggml.model", "tokenizer.ggml.tokens", "llama.block_count"] {
            let _ = file.get_str(key);
            let _ = file.get_u32(key);
            let _ = file.get_str_array(key);
            let _ = file.get_int_array(key);
            let _ = file.get_f32_array(key);
        }
    }
    let spec = match harness::import::gguf_llama::import_gguf_bytes(data, false) {
        Ok(s) => s,
        Err(_) => return Outcome::Rejected(0),
    };
    for quant in [DType::F32, DType::Q8_0] {
        let Ok(bytes) = package::write(&spec, quant) else { continue };
        if let Err(e) = tinyrustlm::format::parse(&bytes) {
            panic!("the importer accepted a model whose {} package the runtime rejects: {e}", quant.name());
        }
        if let Err(e) = loaded_engine(&bytes, spec.hparams.max_context.min(8)) {
            panic!("the importer accepted a model whose {} package does not load: {e}", quant.name());
        }
    }
    Outcome::Accepted
}
