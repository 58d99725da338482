//! Gemma 3 270M (Q4_K_M as shipped; a base model whose GGUF has no chat template) with Gemma's chat
//! template and its SentencePiece tokenizer, against llama.cpp.
//!
//! The package is `trl pack --gguf gemma-3-270m-q4_k_m.gguf -o $TRL_MODELS/gemma-3-270m-q4_k_m.slm`
//! (`make gemma`); a missing package fails the suite, as `smollm2.rs` does (CI must never pass by
//! skipping).
//!
//! Expected ids: llama.cpp through llama-cpp-python 0.3.36 (the same GGUF, SHA-256 in
//! `scripts/models.json`), `llama_tokenize` with BOS as the model adds it; chat texts are what
//! llama.cpp's `llama_chat_apply_template` writes with its `gemma` template, tokenized with special
//! tokens parsed. They equal Gemma 3's own Jinja template for these conversations.

mod common;

use std::path::PathBuf;

use common::{models_dir, module};

use harness::runtime::{Runtime, GEN_PARSE_SPECIAL};
use tinyrustlm::tokenizer::chat::{ChatMessage, CHAT_ADD_GENERATION_PROMPT, CHAT_CONTINUE};
use tinyrustlm::tokenizer::ChatTemplate;

const PACKAGE: &str = "gemma-3-270m-q4_k_m.slm";
const BOS: u32 = 2;
const START_OF_TURN: u32 = 105;
const END_OF_TURN: u32 = 106;

fn package_path() -> PathBuf {
    models_dir().join(PACKAGE)
}

fn package_bytes() -> Vec<u8> {
    let path = package_path();
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} — pack it with `trl pack --gguf gemma-3-270m-q4_k_m.gguf -o {}`", path.display(), path.display()))
}

fn runtime() -> Runtime {
    let mut rt = Runtime::new(module()).unwrap();
    rt.load_model_with_flags(&package_bytes(), 512, 0).unwrap();
    rt
}

fn trl(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trl")).args(args).output().expect("running trl");
    assert!(out.status.success(), "trl {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn package_names_gemmas_template_and_ends_turns_on_end_of_turn() {
    let bytes = package_bytes();
    let pkg = tinyrustlm::format::parse(&bytes).unwrap();
    let tok = tinyrustlm::tokenizer::Tokenizer::parse(&bytes[pkg.tokenizer_range.clone()], pkg.hparams.vocab_size).unwrap();
    // The GGUF has no tokenizer.chat_template: the importer gives gemma3 its architecture's.
    assert_eq!(tok.chat_template(), ChatTemplate::Gemma);
    // llama.cpp's end-of-generation set for this vocabulary: <eos>, <end_of_turn> and `</s>` (a
    // user-defined token llama.cpp makes a control one, as the importer does).
    assert_eq!(tok.eog_ids(), [1, END_OF_TURN, 212]);
    assert!(tok.is_end_of_generation(END_OF_TURN) && tok.is_end_of_generation(1));
    assert!(tok.adds_bos() && !tok.adds_space_prefix());
    // SentencePiece merges from the scores: well under the section's 1 048 576.
    assert!(tok.n_merges() > 500_000 && tok.n_merges() < 1_048_576, "{} merges", tok.n_merges());
    assert_eq!(runtime().diagnostics().unwrap().chat_template, ChatTemplate::Gemma as u32);
}

/// Texts llama.cpp tokenizes the same with and without special tokens parsed (user-defined tokens,
/// Gemma's runs of spaces, tabs and newlines and its HTML tags, are cut out either way).
const TOKENIZE: [(&str, &[u32]); 10] = [
    ("  leading spaces", &[2, 138, 26016, 9952]),
    ("multiple   spaces   here", &[2, 43819, 139, 35220, 139, 8472]),
    ("new\n\n\nlines\n", &[2, 1951, 109, 8721, 107]),
    ("\ttab\t\tand tabs", &[2, 255968, 4823, 255969, 624, 42364]),
    ("日本語のテキスト、中文。", &[2, 94951, 236945, 95830, 236951, 55041, 236924]),
    ("emoji 😀👍🏽🦀", &[2, 67906, 163543, 240493, 242713, 248714]),
    (" leading space", &[2, 5830, 2557]),
    ("a\u{2581}b \u{2581}\u{2581}c", &[2, 236746, 518, 236743, 236743, 505]),
    ("<b>bold</b> [multimodal]", &[2, 200, 15640, 209, 236743, 5]),
    ("    return x  # 4 spaces", &[2, 140, 2060, 1123, 138, 236865, 236743, 236812, 9952]),
];

#[test]
fn tokenization_matches_llama_cpp() {
    let mut rt = runtime();
    let mut failures = Vec::new();
    for (text, want) in TOKENIZE {
        for special in [false, true] {
            let got = rt.tokenize(text, special).unwrap();
            if got != want {
                failures.push(format!("{text:?} (special {special}): {got:?}, llama.cpp {want:?}"));
            }
        }
    }
    // Control tokens only with special tokens parsed.
    for (text, plain, special) in [
        ("x</s>y", &[2, 236781, 954, 236751, 236813, 236762][..], &[2, 236781, 212, 236762][..]),
        ("<start_of_turn>user", &[2, 236820, 3041, 236779, 1340, 236779, 887, 236813, 2364], &[2, START_OF_TURN, 2364]),
    ] {
        for (flag, want) in [(false, plain), (true, special)] {
            let got = rt.tokenize(text, flag).unwrap();
            if got != want {
                failures.push(format!("{text:?} (special {flag}): {got:?}, llama.cpp {want:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

struct ChatCase {
    system: Option<&'static str>,
    prompt: &'static str,
    /// llama.cpp's `gemma` template with add_ass (BOS is the tokenizer's).
    text: &'static str,
    /// llama.cpp's ids of `text`, BOS added, special tokens parsed.
    ids: &'static [u32],
}

const CHAT_CASES: [ChatCase; 4] = [
    ChatCase {
        system: None,
        prompt: "What is the capital of France?",
        text: "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
        ids: &[2, 105, 2364, 107, 3689, 563, 506, 5279, 529, 7001, 236881, 106, 107, 105, 4368, 107],
    },
    ChatCase {
        system: Some("You are a pirate. Answer briefly."),
        prompt: "Where is the treasure?",
        text: "<start_of_turn>user\nYou are a pirate. Answer briefly.\n\nWhere is the treasure?<end_of_turn>\n<start_of_turn>model\n",
        ids: &[2, 105, 2364, 107, 3048, 659, 496, 72650, 236761, 25685, 21485, 236761, 108, 10936, 563, 506, 37120, 236881, 106, 107, 105, 4368, 107],
    },
    ChatCase {
        system: None,
        prompt: "Write a haiku about Rust:\n\n- tabs\there\n-  double  spaces",
        text: "<start_of_turn>user\nWrite a haiku about Rust:\n\n- tabs\there\n-  double  spaces<end_of_turn>\n<start_of_turn>model\n",
        ids: &[
            2, 105, 2364, 107, 6974, 496, 678, 20517, 1003, 43999, 236787, 108, 236772, 42364, 255968, 8472, 107, 236772, 138, 7902, 138, 35220, 106, 107, 105,
            4368, 107,
        ],
    },
    ChatCase {
        system: Some("Системный промпт 日本語"),
        prompt: "emoji 😀 and <b>tags</b> and </s>",
        text: "<start_of_turn>user\nСистемный промпт 日本語\n\nemoji 😀 and <b>tags</b> and </s><end_of_turn>\n<start_of_turn>model\n",
        ids: &[
            2, 105, 2364, 107, 64573, 871, 4686, 4441, 2329, 74623, 236827, 33375, 238582, 108, 67906, 163543, 532, 236743, 200, 19112, 209, 532, 236743, 212,
            106, 107, 105, 4368, 107,
        ],
    },
];

/// `trl generate --chat` wraps the prompt in the package's template (rendered by the module) and
/// feeds llama.cpp's ids of that text.
#[test]
fn trl_generate_chat_prompt_ids_match_llama_cpp() {
    let model = package_path().display().to_string();
    let wasm = harness::default_wasm_path().display().to_string();
    let mut rt = runtime();
    let mut failures = Vec::new();
    for case in &CHAT_CASES {
        let mut messages = Vec::new();
        if let Some(s) = case.system {
            messages.push(ChatMessage { role: "system", content: s });
        }
        messages.push(ChatMessage { role: "user", content: case.prompt });
        let text = rt.render_chat(&messages, CHAT_ADD_GENERATION_PROMPT).unwrap();
        if text != case.text {
            failures.push(format!("rendered {text:?}, llama.cpp {:?}", case.text));
        }
        let mut args = vec!["--wasm", &wasm, "generate", "--model", &model, "--chat", "--prompt", case.prompt, "-n", "0", "--json"];
        if let Some(s) = case.system {
            args.extend(["--system", s]);
        }
        let out: serde_json::Value = serde_json::from_str(&trl(&args)).unwrap();
        let got: Vec<u32> = out["prompt_tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        if got != case.ids {
            failures.push(format!("{:?}: prompt ids {got:?}, llama.cpp {:?}", case.prompt, case.ids));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A multi-turn conversation rendered by the module is llama.cpp's text and ids; continuing it after
/// the answer's `<end_of_turn>` adds exactly the tokens the whole conversation has after it.
#[test]
fn multi_turn_and_continued_conversations_match_llama_cpp() {
    const TEXT: &str = "<start_of_turn>user\nAnswer in one word.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\nParis.<end_of_turn>\n<start_of_turn>user\nAnd of Italy?<end_of_turn>\n<start_of_turn>model\n";
    const IDS: [u32; 35] = [
        2, 105, 2364, 107, 7925, 528, 886, 3658, 236761, 108, 64753, 529, 7001, 236881, 106, 107, 105, 4368, 107, 50429, 236761, 106, 107, 105, 2364, 107,
        3133, 529, 11702, 236881, 106, 107, 105, 4368, 107,
    ];
    let system = ChatMessage { role: "system", content: "Answer in one word." };
    let user = ChatMessage { role: "user", content: "Capital of France?" };
    let answer = ChatMessage { role: "assistant", content: "Paris." };
    let next = ChatMessage { role: "user", content: "And of Italy?" };
    let mut rt = runtime();
    let whole = rt.render_chat(&[system, user, answer, next], CHAT_ADD_GENERATION_PROMPT).unwrap();
    assert_eq!(whole, TEXT);
    assert_eq!(rt.tokenize(&whole, true).unwrap(), IDS);

    // The first turn, the answer and the <end_of_turn> it stopped on are in the KV cache; the
    // continued text holds the rest.
    let first = rt.render_chat(&[system, user], CHAT_ADD_GENERATION_PROMPT).unwrap();
    let continued = rt.render_chat(&[next], CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE).unwrap();
    assert_eq!(continued, "\n<start_of_turn>user\nAnd of Italy?<end_of_turn>\n<start_of_turn>model\n");
    assert_eq!(format!("{first}Paris.<end_of_turn>{continued}"), whole);
    let in_cache = rt.tokenize(&format!("{first}Paris.<end_of_turn>"), true).unwrap();
    assert_eq!(in_cache.last(), Some(&END_OF_TURN));
    let rest = rt.tokenize(&continued, true).unwrap();
    assert_eq!(rest[0], BOS, "tokenize adds BOS; generate_start with CONTINUE does not");
    assert_eq!([&in_cache[..], &rest[1..]].concat(), IDS);

    // And through generation: the prompt ids of a continued conversation are those ids.
    rt.generate_all(&format!("{first}Paris.<end_of_turn>"), 0, GEN_PARSE_SPECIAL).unwrap();
    let g = rt.generate_all(&continued, 0, GEN_PARSE_SPECIAL | harness::runtime::GEN_CONTINUE).unwrap();
    assert_eq!(g.prompt_tokens, &rest[1..]);
    assert_eq!(rt.diagnostics().unwrap().kv_len as usize, IDS.len());
}
