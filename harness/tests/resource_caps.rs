//! Resource caps of SLM1 packages at their boundary (abi/FORMAT.md "Resource caps"): a package at
//! the cap loads and works, one past it is refused with the cap's status and field. Caps whose
//! boundary other suites already pin are named in FORMAT.md's table with their test.

mod common;

use common::*;
use harness::package::expected_dims;
use harness::spec::{token_type, MergeSpec, ModelSpec, TensorData, TokenSpec, TokenizerKind, TokenizerSpec};
use tinyrustlm::error::Status;
use tinyrustlm::format::{MAX_CONTEXT, MAX_TENSOR_NAME_LEN, MAX_VOCAB};
use tinyrustlm::quant::DType;

/// Cap of `n_merges` and of `n_eog` / token length (tokenizer section; FORMAT.md).
const MAX_MERGES: u32 = 1_048_576;
const MAX_EOG: usize = 16;
const MAX_TOKEN_LEN: usize = 1024;
/// Tokenizer section offsets (FORMAT.md "Tokenizer section").
const TOK_N_EOG: usize = 36;
const TOK_MAX_TOKEN_LEN: usize = 40;
const TOK_HEADER_LEN: usize = 48;

/// The default synthetic model with `tokenizer` in place of its byte tokenizer (embedding resized).
fn with_tokenizer(tokenizer: TokenizerSpec) -> ModelSpec {
    let mut spec = model_spec(true);
    spec.hparams.vocab_size = tokenizer.tokens.len() as u32;
    spec.tokenizer = tokenizer;
    for t in &mut spec.tensors {
        if t.name == "token_embd.weight" {
            t.dims = expected_dims(&spec.hparams, &t.name).unwrap();
            let n: usize = t.dims.iter().map(|&d| d as usize).product();
            // Distinct small rows, so logits differ between tokens.
            t.data = TensorData::F32((0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3).collect());
        }
    }
    spec
}

fn load_and_generate(bytes: &[u8], what: &str) {
    let mut rt = runtime();
    rt.load_model(bytes, 0).unwrap_or_else(|e| panic!("{what}: the package at the cap does not load: {e:#}"));
    let g = rt.generate_all("ab", 4, 0).unwrap_or_else(|e| panic!("{what}: generation failed: {e:#}"));
    assert!(!g.tokens.is_empty() || g.state.stop_reason == 1, "{what}: nothing generated");
}

fn rejected(bytes: &[u8], want: Status, field: &str, what: &str) {
    let mut rt = runtime();
    if let Err(e) = check_rejection(try_load(&mut rt, bytes, 0), want, field) {
        panic!("{what}: {e}");
    }
    assert_usable(&mut rt, what);
}

#[test]
fn vocab_size_cap() {
    // 256 byte tokens, BOS, EOS, then empty control tokens up to the cap: one model row each.
    let mut tok = model_spec(true).tokenizer;
    while tok.tokens.len() < MAX_VOCAB as usize {
        tok.tokens.push(TokenSpec { bytes: Vec::new(), score: 0.0, token_type: token_type::CONTROL });
    }
    let at_cap = raw_package_from(&with_tokenizer(tok), DType::Q8_0);
    load_and_generate(&at_cap.to_bytes().0, "vocab_size 262144");
    let mut over = at_cap;
    over.hparams[0] = MAX_VOCAB + 1;
    rejected(&over.to_bytes().0, Status::BadHyperparameter, "header.vocab_size", "vocab_size 262145");
}

#[test]
fn max_context_cap() {
    let mut p = raw_package(DType::F32, true);
    p.hparams[6] = MAX_CONTEXT;
    let bytes = p.to_bytes().0;
    load_and_generate(&bytes, "max_context 32768");
    let mut rt = runtime();
    rt.load_model(&bytes, MAX_CONTEXT).expect("context_len 32768 on a 32768-position package");
    assert_eq!(diagnostics(&mut rt).context_len, MAX_CONTEXT);
    p.hparams[6] = MAX_CONTEXT + 1;
    rejected(&p.to_bytes().0, Status::BadHyperparameter, "header.max_context", "max_context 32769");
}

#[test]
fn merges_cap() {
    // A byte-level BPE vocabulary with one merge ("a" + "b" = "ab") listed MAX_MERGES times: the
    // duplicates are legal (the lowest rank wins), so the section is valid at exactly the cap.
    let mut tok = model_spec(true).tokenizer;
    tok.kind = TokenizerKind::BpeByteLevel;
    for t in tok.tokens.iter_mut().take(256) {
        t.token_type = token_type::NORMAL;
    }
    let ab = tok.tokens.len() as u32;
    tok.tokens.push(TokenSpec { bytes: b"ab".to_vec(), score: 0.0, token_type: token_type::NORMAL });
    tok.merges = vec![MergeSpec { left: b'a' as u32, right: b'b' as u32, result: ab, rank: 0 }; MAX_MERGES as usize];
    let at_cap = raw_package_from(&with_tokenizer(tok), DType::F32);
    let bytes = at_cap.to_bytes().0;
    load_and_generate(&bytes, "n_merges 1048576");
    let mut rt = runtime();
    rt.load_model(&bytes, 0).unwrap();
    assert_eq!(rt.tokenize("abab", false).unwrap(), [256, ab, ab], "the merge applies (BOS, ab, ab)");

    // One more merge entry: n_merges and the section grow by one, and the cap refuses it.
    let mut over = at_cap;
    let n_merges = u32::from_le_bytes(over.tokenizer[8..12].try_into().unwrap());
    assert_eq!(n_merges, MAX_MERGES);
    over.tokenizer[8..12].copy_from_slice(&(MAX_MERGES + 1).to_le_bytes());
    let last = over.tokenizer[over.tokenizer.len() - 16..].to_vec();
    over.tokenizer.extend_from_slice(&last);
    rejected(&over.to_bytes().0, Status::LimitExceeded, "tokenizer.n_merges", "n_merges 1048577");
}

#[test]
fn end_of_generation_ids_cap() {
    let mut tok = model_spec(true).tokenizer;
    tok.eog_ids = (0..MAX_EOG as u32).map(|i| 257 - i % 2).collect();
    let at_cap = raw_package_from(&with_tokenizer(tok), DType::F32);
    load_and_generate(&at_cap.to_bytes().0, "16 end-of-generation ids");
    let mut over = at_cap;
    over.tokenizer[TOK_N_EOG..TOK_N_EOG + 4].copy_from_slice(&(MAX_EOG as u32 + 1).to_le_bytes());
    let at = TOK_HEADER_LEN + 4 * MAX_EOG;
    over.tokenizer.splice(at..at, 257u32.to_le_bytes());
    rejected(&over.to_bytes().0, Status::LimitExceeded, "tokenizer.n_eog", "17 end-of-generation ids");
}

#[test]
fn token_length_cap() {
    // EOS (a control token) spelled with exactly 1024 bytes.
    let mut tok = model_spec(true).tokenizer;
    tok.tokens[257].bytes = vec![b'z'; MAX_TOKEN_LEN];
    let at_cap = raw_package_from(&with_tokenizer(tok), DType::F32);
    load_and_generate(&at_cap.to_bytes().0, "a 1024-byte token");
    // 1025: the token and max_token_len both one byte longer.
    let mut over = at_cap;
    over.tokenizer[TOK_MAX_TOKEN_LEN..TOK_MAX_TOKEN_LEN + 4].copy_from_slice(&(MAX_TOKEN_LEN as u32 + 1).to_le_bytes());
    let needle = vec![b'z'; MAX_TOKEN_LEN];
    let at = over.tokenizer.windows(MAX_TOKEN_LEN).position(|w| w == &needle[..]).expect("the long token's bytes");
    over.tokenizer[at - 6..at - 4].copy_from_slice(&(MAX_TOKEN_LEN as u16 + 1).to_le_bytes());
    over.tokenizer.insert(at, b'z');
    let mut rt = runtime();
    let r = try_load(&mut rt, &over.to_bytes().0, 0).expect_err("a 1025-byte token loaded");
    assert_eq!(r.status, Status::BadToken.code(), "{}", r.message);
    assert!(r.message.contains("tokenizer.max_token_len") && r.message.contains("1..=1024"), "{}", r.message);
    assert_usable(&mut rt, "a 1025-byte token");
}

#[test]
fn tensor_name_length_cap() {
    // Names are checked for length and alphabet before they are matched against the architecture:
    // a 64-byte name passes those checks (and then is not a llama tensor), 65 bytes does not.
    for (len, want, field) in
        [(MAX_TENSOR_NAME_LEN, Status::MissingTensor, "tensor[output_norm.weight]"), (MAX_TENSOR_NAME_LEN + 1, Status::BadTensorName, "name_len")]
    {
        let mut p = raw_package(DType::F32, true);
        let t = p.tensors.iter_mut().find(|t| t.name == b"output_norm.weight").unwrap();
        t.name = vec![b'n'; len];
        rejected(&p.to_bytes().0, want, field, &format!("a {len}-byte tensor name"));
    }
}
