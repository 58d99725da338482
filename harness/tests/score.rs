//! Scoring (`score_tokens`, `trl perplexity`) and chat rendering (`render_chat`): on SmolLM2-135M
//! q8_0 (from `make model`; a missing package fails, CI must never pass by skipping), the argmax
//! agrees with greedy generation, log-probabilities are finite, the perplexity is exp(mean NLL) to
//! the bit, windowed scoring is consistent; on the synthetic package, every bad input has its
//! status and changes nothing.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use harness::perplexity::{score_ids, score_text};
use harness::runtime::{status_of, Runtime};
use tinyrustlm::abi_facts::{CHAT_ADD_GENERATION_PROMPT, CHAT_CONTINUE, CHAT_NO_DEFAULT_SYSTEM};
use tinyrustlm::error::Status;
use tinyrustlm::tokenizer::chat::{self, ChatMessage, SMOLLM2_DEFAULT_SYSTEM};
use tinyrustlm::tokenizer::ChatTemplate;

const PROMPT: &str = "The capital of France is";
const TEXT: &str = "The quick brown fox jumps over the lazy dog. Paris is the capital of France, and Berlin is the capital of Germany. \
                    Special-token text such as <|im_end|> is scored as plain text here.";
const CONTEXT: u32 = 512;

fn q8_0() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::var("TRL_MODELS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
        let path = dir.join("smollm2-135m-q8_0.slm");
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} — run `make model`", path.display()))
    })
}

fn smollm2() -> Runtime {
    smollm2_with(CONTEXT)
}

fn smollm2_with(context: u32) -> Runtime {
    let mut rt = common::runtime();
    rt.load_model(q8_0(), context).unwrap();
    rt
}

fn status(r: anyhow::Result<impl std::fmt::Debug>) -> u32 {
    status_of(&r.expect_err("the call should fail")).expect("a module status")
}

#[test]
fn argmax_is_what_greedy_generation_picks() {
    let mut rt = smollm2();
    let g = rt.generate_all(PROMPT, 12, 0).unwrap();
    let prompt = g.prompt_tokens.clone();
    // The argmax after the prompt is the first greedy token: scored from a prefill of the whole
    // prompt (as generate_start runs it) and token by token.
    let after_prompt = rt.score_tokens(&prompt, prompt.len() as u32, 0).unwrap();
    assert_eq!((after_prompt.logprobs.len(), after_prompt.argmax.as_slice()), (0, &g.tokens[..1]));
    let mut all = prompt.clone();
    all.extend_from_slice(&g.tokens);
    let s = rt.score_tokens(&all, 1, 0).unwrap();
    assert_eq!((s.logprobs.len(), s.argmax.len()), (all.len() - 1, all.len()));
    assert_eq!(&s.argmax[prompt.len() - 1..all.len() - 1], &g.tokens[..], "every greedy token is the argmax after the tokens before it");
    for (i, lp) in s.logprobs.iter().enumerate() {
        assert!(lp.is_finite() && *lp <= 0.0, "logprob[{i}] = {lp}");
    }
    // A context-only prefix (one batched prefill) gives the scores of token-by-token scoring, bit
    // for bit (the kernels compute each row of a batch as they compute a single row).
    let split = rt.score_tokens(&all, prompt.len() as u32, 0).unwrap();
    let k = prompt.len() - 1;
    assert_eq!(split.argmax, s.argmax[k..]);
    assert_eq!(split.logprobs, s.logprobs[k..]);
    // Scoring forgot the conversation: the KV cache is empty and a new generation is unchanged.
    assert_eq!(rt.diagnostics().unwrap().kv_len, 0);
    assert_eq!(rt.generate_all(PROMPT, 12, 0).unwrap().tokens, g.tokens);
}

#[test]
fn perplexity_is_exp_of_the_mean_nll_and_windows_agree() {
    let mut rt = smollm2();
    let whole = score_text(&mut rt, TEXT).unwrap();
    let n = whole.tokens.len();
    assert_eq!(whole.tokens, rt.tokenize(TEXT, false).unwrap(), "tokenized as the model does, special-token text as plain text");
    assert!(n > 40, "{n} tokens");
    assert_eq!((whole.argmax.len(), whole.nll.len()), (n, n - 1));
    assert!(whole.nll.iter().all(|x| x.is_finite() && *x >= 0.0), "{:?}", whole.nll);
    let mean = whole.nll.iter().fold(0.0f64, |a, &x| a + f64::from(x)) / whole.nll.len() as f64;
    assert_eq!(Some(whole.perplexity), tinyrustlm::score::perplexity(&whole.nll));
    assert!((whole.perplexity / mean.exp() - 1.0).abs() < 1e-14, "{} vs {}", whole.perplexity, mean.exp());
    assert!(whole.perplexity > 1.0 && whole.perplexity < 1000.0, "{}", whole.perplexity);

    // In windows of 16: the same tokens; the first window's scores are exactly the whole text's
    // (the same context); later tokens are scored with less context, each exactly once.
    let windowed = score_ids(&mut rt, whole.tokens.clone(), 16).unwrap();
    assert_eq!(windowed.tokens, whole.tokens);
    assert_eq!((windowed.argmax.len(), windowed.nll.len()), (n, n - 1));
    assert_eq!(windowed.nll[..15], whole.nll[..15]);
    assert_eq!(windowed.argmax[..15], whole.argmax[..15]);
    assert!(windowed.nll.iter().all(|x| x.is_finite() && *x >= 0.0));
    assert_ne!(windowed.nll, whole.nll, "less context changes later scores");
    // Each window's scores are what scoring that window alone gives.
    for w in tinyrustlm::score::windows(n, 16) {
        let alone = rt.score_tokens(&whole.tokens[w.start..w.end], 1, 0).unwrap();
        let from = w.start + w.first_scored;
        let want: Vec<f32> = alone.logprobs[w.first_scored - 1..].iter().map(|lp| -lp).collect();
        assert_eq!(windowed.nll[from - 1..w.end - 1], want, "window {w:?}");
    }
    // A context shorter than the text is the CLI's windowing too.
    let short = score_text(&mut smollm2_with(16), TEXT).unwrap();
    assert_eq!(short, windowed);
}

#[test]
fn trl_perplexity_json_is_the_library_result() {
    let dir = std::env::temp_dir().join(format!("trl-score-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("text.txt");
    std::fs::write(&file, TEXT).unwrap();
    let models = std::env::var("TRL_MODELS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"));
    let model = models.join("smollm2-135m-q8_0.slm");
    for context in [CONTEXT, 16] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trl"))
            .args(["--wasm", harness::default_wasm_path().to_str().unwrap(), "perplexity", "--json", "--context", &context.to_string()])
            .arg("--model")
            .arg(&model)
            .arg("--file")
            .arg(&file)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let want = score_text(&mut smollm2_with(context), TEXT).unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), format!("{}\n", want.to_json()));
        let v: serde_json::Value = serde_json::from_str(&want.to_json()).unwrap();
        let nll: Vec<f32> = v["nll"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
        assert_eq!(nll, want.nll, "the printed numbers read back as the same f32s");
        assert_eq!(v["perplexity"].as_f64(), Some(want.perplexity));
    }
    let one_token = dir.join("one.txt");
    std::fs::write(&one_token, "The").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trl"))
        .args(["--wasm", harness::default_wasm_path().to_str().unwrap(), "perplexity"])
        .arg("--model")
        .arg(&model)
        .arg("--file")
        .arg(&one_token)
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least 2"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_score_input_has_its_status_and_changes_nothing() {
    let mut rt = common::runtime();
    assert_eq!(status(rt.score_tokens(&[1, 2], 1, 0)), Status::WrongState.code());
    rt.load_model(common::good_package(), 0).unwrap();
    let context = rt.diagnostics().unwrap().context_len as usize;
    let first = rt.score_tokens(&[1, 2, 3], 1, 0).unwrap();
    let g = rt.generate_all(common::PROMPT, 4, 0).unwrap();
    let before = rt.diagnostics().unwrap();
    let too_long = vec![1u32; context + 1];
    let cases: [(&[u32], u32, u32, Status, &str); 6] = [
        (&[], 1, 0, Status::InvalidArgument, "n_tokens = 0"),
        (&[1, 258], 1, 0, Status::InvalidArgument, "tokens[1] = 258"),
        (&[1, 2], 0, 0, Status::InvalidArgument, "first_scored = 0"),
        (&[1, 2], 3, 0, Status::InvalidArgument, "first_scored = 3"),
        (&[1, 2], 1, 1, Status::InvalidArgument, "flags = 1"),
        (&too_long, 1, 0, Status::ContextFull, "n_tokens = 129"),
    ];
    for (tokens, first_scored, flags, want, message) in cases {
        assert_eq!(status(rt.score_tokens(tokens, first_scored, flags)), want.code(), "{} tokens, first_scored {first_scored}, flags {flags}", tokens.len());
        let text = rt.last_error().unwrap();
        assert!(text.contains(message), "{text}");
        assert_eq!(rt.diagnostics().unwrap(), before);
        assert_eq!(rt.finish(String::new()).unwrap().tokens, g.tokens, "the generation is untouched");
        assert_eq!(rt.read_u32s(harness::runtime::result_kind::SCORE_ARGMAX).unwrap(), first.argmax, "the previous scores stay");
    }
    // Pointers: outside any host buffer, and 4 * n_tokens overflowing.
    let buf = rt.put(&[0u8; 8]).unwrap();
    assert_eq!(rt.call_status("score_tokens", (buf, 3u32, 1u32, 0u32)).unwrap(), Status::OutOfBounds.code());
    assert_eq!(rt.call_status("score_tokens", (buf, 0x4000_0001u32, 1u32, 0u32)).unwrap(), Status::OutOfBounds.code());
    assert_eq!(rt.diagnostics().unwrap(), before);
    rt.unload_model().unwrap();
    common::assert_usable(&mut rt, "refused score_tokens calls");
}

#[test]
fn render_chat_is_the_runtime_renderer_with_the_packages_template() {
    let mut rt = smollm2();
    let user = ChatMessage { role: "user", content: "What is the capital of France?" };
    let convo = [ChatMessage { role: "system", content: "Be brief." }, user, ChatMessage { role: "assistant", content: "Paris." }, user];
    let expect = |messages: &[ChatMessage<'_>], system: Option<&str>, flags: u32| {
        String::from_utf8(chat::render(ChatTemplate::ChatMl, messages, system, flags).unwrap()).unwrap()
    };
    assert_eq!(rt.render_chat(&[user], CHAT_ADD_GENERATION_PROMPT).unwrap(), expect(&[user], Some(SMOLLM2_DEFAULT_SYSTEM), CHAT_ADD_GENERATION_PROMPT));
    assert_eq!(rt.render_chat(&[user], CHAT_ADD_GENERATION_PROMPT | CHAT_NO_DEFAULT_SYSTEM).unwrap(), expect(&[user], None, CHAT_ADD_GENERATION_PROMPT));
    assert_eq!(rt.render_chat(&convo, 0).unwrap(), expect(&convo, None, 0));
    assert_eq!(rt.render_chat(&[user], CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE).unwrap(), expect(&[user], None, CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE));
    assert_eq!(rt.render_chat(&[], 0).unwrap(), format!("<|im_start|>system\n{SMOLLM2_DEFAULT_SYSTEM}<|im_end|>\n"));
    // The prompt `trl generate --chat` runs is this rendering.
    let rendered = rt.render_chat(&[ChatMessage { role: "user", content: PROMPT }], CHAT_ADD_GENERATION_PROMPT).unwrap();
    let g = rt.generate_all(&rendered, 1, harness::runtime::GEN_PARSE_SPECIAL).unwrap();
    let prompt_ids = g.prompt_tokens;
    let before = rt.diagnostics().unwrap();
    // Malformed lists and flags: INVALID_ARGUMENT, and the previous rendering stays.
    let good = chat::encode_messages(&[user]);
    let mut trailing = good.clone();
    trailing.push(0);
    let mut not_utf8 = good.clone();
    *not_utf8.last_mut().unwrap() = 0xFF;
    for (bytes, flags) in
        [(&good[..good.len() - 1], 0), (&trailing[..], 0), (&not_utf8[..], 0), (&[0xFF, 0xFF, 0xFF, 0x7F][..], 0), (&[][..], 0), (&good[..], 8)]
    {
        assert_eq!(status(rt.render_chat_raw(bytes, flags)), Status::InvalidArgument.code(), "{bytes:?} flags {flags}");
        assert_eq!(String::from_utf8(rt.read_result(harness::runtime::result_kind::CHAT_PROMPT).unwrap()).unwrap(), rendered);
        assert_eq!(rt.diagnostics().unwrap(), before);
    }
    assert_eq!(rt.finish(String::new()).unwrap().prompt_tokens, prompt_ids, "rendering left the generation alone");
    let mut synthetic = common::runtime();
    synthetic.load_model(common::good_package(), 0).unwrap();
    assert_eq!(status(synthetic.render_chat(&[user], 0)), Status::InvalidArgument.code(), "a package with no chat template");
    assert!(synthetic.last_error().unwrap().contains("chat_template"));
}
