//! Qwen2.5-Coder-0.5B-Instruct Q4_K_M end to end: the qwen2 architecture (Q/K/V biases, NEOX RoPE),
//! an SLM1 v2 package with the GGUF's mixed dtypes kept as shipped (q5_0, q8_0, q4_k, q6_k), the
//! `qwen2` pre-tokenizer and Qwen's ChatML default system prompt, against llama.cpp.
//!
//! The package is `trl pack --gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf -o
//! $TRL_MODELS/qwen2.5-coder-0.5b-instruct-q4_k_m.slm`; a missing package fails the suite, as
//! `smollm2.rs` does (CI must never pass by skipping).
//!
//! Expected ids: llama.cpp through llama-cpp-python 0.3.36 (1 thread, the same GGUF, SHA-256
//! 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32), from
//! `tests/data/reference/qwen2.5-coder-0.5b-instruct-q4_k_m.json` (`scripts/llama_cpp_reference.py`):
//! its `greedy` cases' `prompt_tokens` and `tokens`.

use std::path::PathBuf;
use std::sync::OnceLock;

use harness::runtime::{ModuleFile, Runtime, GEN_PARSE_SPECIAL};
use tinyrustlm::tokenizer::chat::{self, ChatMessage, CHAT_ADD_GENERATION_PROMPT};
use tinyrustlm::tokenizer::ChatTemplate;

const PACKAGE: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.slm";

/// `<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n`
const CHAT_PREFIX: [u32; 24] =
    [151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950, 17847, 13, 151645, 198, 151644, 872, 198];
/// `<|im_end|>\n<|im_start|>assistant\n`
const CHAT_SUFFIX: [u32; 5] = [151645, 198, 151644, 77091, 198];

struct Case {
    prompt: &'static str,
    /// llama.cpp's ids of the user message inside the ChatML text.
    user_ids: &'static [u32],
    /// llama.cpp's greedy tokens: up to the first step whose top-2 logit gap is below 0.1 (there
    /// either choice is a correct implementation's), or through the end-of-generation token.
    tokens: &'static [u32],
}

const CASES: [Case; 2] = [
    Case {
        prompt: "Write a Python function that returns the n-th Fibonacci number.",
        user_ids: &[7985, 264, 13027, 729, 429, 4675, 279, 308, 7563, 79683, 1372, 13],
        // "Here's a Python function to calculate the n-th Fibonacci number"; step 12's gap is 0.046.
        tokens: &[8420, 594, 264, 13027, 729, 311, 11047, 279, 308, 7563, 79683, 1372],
    },
    Case {
        prompt: "What is the capital of France? Answer in one sentence.",
        user_ids: &[3838, 374, 279, 6722, 315, 9625, 30, 21806, 304, 825, 11652, 13],
        // "The capital of France is Paris." then <|im_end|>.
        tokens: &[785, 6722, 315, 9625, 374, 12095, 13, 151645],
    },
];

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

fn runtime() -> Runtime {
    let path = models_dir().join(PACKAGE);
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} — pack it with `trl pack --gguf qwen2.5-coder-0.5b-instruct-q4_k_m.gguf -o {}`", path.display(), path.display()));
    let mut rt = Runtime::new(module()).unwrap();
    rt.load_model_with_flags(&bytes, 512, 0).unwrap();
    rt
}

#[test]
fn package_is_v2_qwen2_with_dtypes_as_shipped() {
    let bytes = std::fs::read(models_dir().join(PACKAGE)).unwrap_or_else(|e| panic!("{PACKAGE}: {e}"));
    let pkg = tinyrustlm::format::parse(&bytes).unwrap();
    let h = pkg.hparams;
    assert_eq!((pkg.format_version, h.arch.name(), h.qkv_bias, h.head_dim(), h.n_heads, h.n_kv_heads), (2, "qwen2", true, 64, 14, 2));
    assert_eq!((h.rope, h.rope_theta, h.tied_embeddings), (tinyrustlm::model::arch::RopeKind::Neox, 1e6, false));
    let dtype = |name: &str| pkg.tensors.iter().find(|t| t.name == name).unwrap().dtype.name();
    // As the GGUF ships them (gguf.GGUFReader): Q4_K_M's mix.
    assert_eq!(
        [dtype("token_embd.weight"), dtype("output.weight"), dtype("blk.0.attn_v.weight"), dtype("blk.0.ffn_down.weight"), dtype("blk.0.attn_q.bias")],
        ["q5_0", "q8_0", "q8_0", "q6_k", "f32"]
    );
    assert!(pkg.tensors.iter().any(|t| t.dtype.name() == "q4_k"));
}

#[test]
fn chat_prompt_ids_and_greedy_tokens_match_llama_cpp() {
    let mut rt = runtime();
    let d = rt.diagnostics().unwrap();
    assert_eq!(d.chat_template, ChatTemplate::ChatMlQwen2 as u32, "the package names Qwen's ChatML");
    let mut failures = Vec::new();
    for case in &CASES {
        let turn = [ChatMessage { role: "user", content: case.prompt }];
        let text = chat::render(ChatTemplate::ChatMlQwen2, &turn, ChatTemplate::ChatMlQwen2.default_system(), CHAT_ADD_GENERATION_PROMPT).unwrap();
        let text = String::from_utf8(text).unwrap();
        rt.reset().unwrap();
        let g = rt.generate_all(&text, case.tokens.len() as u32, GEN_PARSE_SPECIAL).unwrap();
        let want_prompt: Vec<u32> = CHAT_PREFIX.iter().chain(case.user_ids).chain(&CHAT_SUFFIX).copied().collect();
        if g.prompt_tokens != want_prompt {
            failures.push(format!("{:?}: prompt ids {:?}, llama.cpp {:?}", case.prompt, g.prompt_tokens, want_prompt));
        }
        if g.tokens != case.tokens {
            failures.push(format!("{:?}: tokens {:?} ({:?}), llama.cpp {:?}", case.prompt, g.tokens, g.text, case.tokens));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
