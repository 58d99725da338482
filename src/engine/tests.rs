//! The session state machine, driven natively on a package built here: stop-string hold-back,
//! resuming after OUT_OF_MEMORY, BOS on continue,
//! session snapshots (mid-generation, and OUT_OF_MEMORY while saving or restoring).
//!
//! The package's model answers from the last token alone: attention and feed-forward weights are
//! zero, so the residual stream is the token's embedding. The letters `a..=h` have one-hot
//! embeddings and the LM head scores letter k+1 highest after letter k (letter k+2 a little lower,
//! for sampling): greedy decoding after `a` writes `bcdefghabc…`.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::Cell;
use std::alloc::{GlobalAlloc, Layout, System};

use super::*;

// ---- A package built in-process ------------------------------------------------------------------

const DIM: usize = 8;
const N_HEADS: u32 = 2;
const N_KV_HEADS: u32 = 1;
const KV_DIM: usize = DIM / N_HEADS as usize * N_KV_HEADS as usize;
const FFN_DIM: usize = 4;
const MAX_CONTEXT: u32 = 64;
/// Byte tokenizer: ids 0..=255 are the bytes, then BOS and EOS.
const BOS: u32 = 256;
const EOS: u32 = 257;
const VOCAB: usize = 258;
/// The letters the model cycles through; letter k has the one-hot embedding e_k.
const CHAIN: &[u8; DIM] = b"abcdefgh";
/// LM-head weights: after letter k, letter k+1 scores `NEXT · sqrt(DIM)` and letter k+2
/// `SECOND · sqrt(DIM)` (RMSNorm scales a one-hot vector by sqrt(DIM)); every other token 0.
const NEXT: f32 = 10.0;
const SECOND: f32 = 9.7;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The SLM1 tokenizer section (FORMAT.md "Tokenizer section"): `byte` kind, `ADD_BOS`.
fn tokenizer_section() -> Vec<u8> {
    let specials: [&[u8]; 2] = [b"<s>", b"<|end|>"];
    let mut out = Vec::new();
    let max_token_len = specials.iter().map(|s| s.len()).max().unwrap() as u32;
    #[rustfmt::skip]
    let header = [0, VOCAB as u32, 0, BOS, EOS, u32::MAX, 0, 0, /* tok_flags: ADD_BOS */ 1, /* n_eog */ 0, max_token_len, 0];
    for v in header {
        put_u32(&mut out, v);
    }
    let mut token = |ty: u8, bytes: &[u8]| {
        out.push(ty);
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(&0f32.to_le_bytes());
        out.extend_from_slice(bytes);
    };
    for b in 0..=255u8 {
        token(1, &[b]); // normal
    }
    for s in specials {
        token(3, s); // control
    }
    out
}

/// `[rows, cols]` f32 values, row-major.
struct Tensor {
    name: &'static str,
    dims: Vec<usize>,
    values: Vec<f32>,
}

fn tensor(name: &'static str, dims: &[usize], fill: impl Fn(usize, usize) -> f32) -> Tensor {
    let (rows, cols) = if dims.len() == 1 { (1, dims[0]) } else { (dims[0], dims[1]) };
    let values = (0..rows).flat_map(|r| (0..cols).map(move |c| (r, c))).map(|(r, c)| fill(r, c)).collect();
    Tensor { name, dims: dims.to_vec(), values }
}

fn letter(k: usize) -> usize {
    CHAIN[k % DIM] as usize
}

/// An f32 SLM1 package (FORMAT.md "SLM1 model package") holding the model described above.
fn package() -> Vec<u8> {
    let zero = |_, _| 0.0;
    let one = |_, _| 1.0;
    let tensors = [
        tensor("token_embd.weight", &[VOCAB, DIM], |token, i| if token == letter(i) { 1.0 } else { 0.0 }),
        tensor("blk.0.attn_norm.weight", &[DIM], one),
        tensor("blk.0.attn_q.weight", &[DIM, DIM], zero),
        tensor("blk.0.attn_k.weight", &[KV_DIM, DIM], zero),
        tensor("blk.0.attn_v.weight", &[KV_DIM, DIM], zero),
        tensor("blk.0.attn_output.weight", &[DIM, DIM], zero),
        tensor("blk.0.ffn_norm.weight", &[DIM], one),
        tensor("blk.0.ffn_gate.weight", &[FFN_DIM, DIM], zero),
        tensor("blk.0.ffn_up.weight", &[FFN_DIM, DIM], zero),
        tensor("blk.0.ffn_down.weight", &[DIM, FFN_DIM], zero),
        tensor("output_norm.weight", &[DIM], one),
        tensor("output.weight", &[VOCAB, DIM], |token, k| {
            if token == letter(k + 1) {
                NEXT
            } else if token == letter(k + 2) {
                SECOND
            } else {
                0.0
            }
        }),
    ];
    let mut dir = Vec::new();
    let mut data = Vec::new();
    for t in &tensors {
        dir.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
        dir.extend_from_slice(t.name.as_bytes());
        dir.push(0); // f32
        dir.push(t.dims.len() as u8);
        for &d in &t.dims {
            put_u32(&mut dir, d as u32);
        }
        data.resize(data.len().next_multiple_of(crate::format::TENSOR_ALIGN), 0);
        put_u64(&mut dir, data.len() as u64);
        put_u64(&mut dir, t.values.len() as u64 * 4);
        for v in &t.values {
            data.extend_from_slice(&v.to_le_bytes());
        }
    }
    let tok = tokenizer_section();
    let dir_offset = crate::format::HEADER_LEN;
    let tok_offset = dir_offset + dir.len();
    let data_offset = (tok_offset + tok.len()).next_multiple_of(crate::format::TENSOR_ALIGN);
    let n_params: usize = tensors.iter().map(|t| t.values.len()).sum();

    let mut out = Vec::new();
    out.extend_from_slice(&crate::format::MAGIC);
    for v in [
        crate::format::FORMAT_VERSION,
        dir_offset as u32,
        /* flags */ 0,
        VOCAB as u32,
        DIM as u32,
        /* n_layers */ 1,
        N_HEADS,
        N_KV_HEADS,
        FFN_DIM as u32,
        MAX_CONTEXT,
    ] {
        put_u32(&mut out, v);
    }
    out.extend_from_slice(&10000f32.to_le_bytes()); // rope_theta
    out.extend_from_slice(&1e-5f32.to_le_bytes()); // norm_eps
    put_u32(&mut out, 0); // quant_mode f32
    put_u64(&mut out, n_params as u64);
    put_u32(&mut out, tensors.len() as u32);
    put_u32(&mut out, crc32fast::hash(&tok));
    put_u32(&mut out, crc32fast::hash(&dir));
    put_u32(&mut out, 0); // reserved
    for v in [dir_offset, dir.len(), tok_offset, tok.len(), data_offset, data.len()] {
        put_u64(&mut out, v as u64);
    }
    assert_eq!(out.len(), crate::format::HEADER_LEN);
    out.extend_from_slice(&dir);
    out.extend_from_slice(&tok);
    out.resize(data_offset, 0);
    out.extend_from_slice(&data);
    let crc = crc32fast::hash(&out);
    put_u32(&mut out, crc);
    out
}

fn loaded_engine() -> Engine {
    let mut engine = Engine::new(|| 0.0);
    let bytes = AlignedBytes::copy_from(&package()).unwrap();
    engine.load(bytes, 0, 0).map_err(|(e, _)| e).unwrap();
    engine
}

// ---- Reading results -----------------------------------------------------------------------------

fn read_text(engine: &mut Engine) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let n = engine.read(ResultKind::Text, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn read_words(engine: &mut Engine, kind: ResultKind) -> Vec<u32> {
    let mut buf = vec![0u8; 4 * 1024];
    let n = engine.read(kind, &mut buf).map_err(|(e, _)| e).unwrap();
    buf[..n].chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])).collect()
}

fn tokens_of(text: &[u8]) -> Vec<u32> {
    text.iter().map(|&b| b as u32).collect()
}

#[test]
fn the_built_package_generates_its_letter_chain() {
    let mut engine = loaded_engine();
    engine.generate(b"a", 10, 0).unwrap();
    assert_eq!(engine.state(), (GenState::Finished, StopReason::MaxTokens));
    assert_eq!(read_words(&mut engine, ResultKind::PromptTokens), [BOS, b'a' as u32]);
    assert_eq!(read_text(&mut engine), b"bcdefghabc");
}

// ---- Stop strings --------------------------------------------------------------------------------

/// Steps one token at a time; returns the text each step released.
fn released_per_step(engine: &mut Engine) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while engine.state().0 == GenState::Running {
        engine.step(1).unwrap();
        out.push(read_text(engine));
    }
    out
}

#[test]
fn text_that_may_start_a_stop_string_is_held_back_until_resolved() {
    let mut engine = loaded_engine();

    // "d" and "de" could be the start of "def": held; "f" completes it, and the stop string is
    // never released.
    engine.add_stop_string(b"def").unwrap();
    engine.start(b"a", 16, 0).unwrap();
    let steps = released_per_step(&mut engine);
    assert_eq!(steps, [&b"b"[..], b"c", b"", b"", b""]);
    assert_eq!(engine.state(), (GenState::Finished, StopReason::StopString));
    assert_eq!(read_words(&mut engine, ResultKind::Tokens), tokens_of(b"bcdef"), "the stop string's tokens were generated");

    // "dex" is never completed: the held "de" is released with the "f" that rules it out.
    engine.clear_stop_strings();
    engine.add_stop_string(b"dex").unwrap();
    engine.start(b"a", 7, 0).unwrap();
    let steps = released_per_step(&mut engine);
    assert_eq!(steps, [&b"b"[..], b"c", b"", b"", b"def", b"g", b"h"]);
    assert_eq!(engine.state(), (GenState::Finished, StopReason::MaxTokens));

    // Held text at the end of a generation is released: it can no longer become a stop string.
    engine.start(b"a", 4, 0).unwrap();
    let steps = released_per_step(&mut engine);
    assert_eq!(steps, [&b"b"[..], b"c", b"", b"de"]);
    engine.start(b"a", 3, 0).unwrap();
    assert_eq!(released_per_step(&mut engine), [&b"b"[..], b"c", b"d"]);
}

#[test]
fn a_stop_string_spanning_tokens_cuts_where_it_starts() {
    let mut engine = loaded_engine();
    // Two stop strings: the one that starts first wins even though both end in the same token.
    engine.add_stop_string(b"fg").unwrap();
    engine.add_stop_string(b"efg").unwrap();
    engine.generate(b"a", 16, 0).unwrap();
    assert_eq!(engine.state(), (GenState::Finished, StopReason::StopString));
    assert_eq!(read_text(&mut engine), b"bcd");
}

// ---- Out of memory -------------------------------------------------------------------------------

/// The test binary's allocator: the system's, except that a thread may have its allocations refused
/// (null, as an exhausted heap answers), which is how a host's memory cap reaches the engine.
struct RefusingAllocator;

std::thread_local! {
    // Const-initialised and without a destructor: reading it never allocates.
    static REFUSING: Cell<bool> = const { Cell::new(false) };
}

fn refusing() -> bool {
    REFUSING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every call is forwarded unchanged to `System`, except that some return null, which
// `GlobalAlloc` allows for any request (the caller must handle it).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for RefusingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refusing() {
            return core::ptr::null_mut();
        }
        // SAFETY: the caller upholds `alloc`'s contract (non-zero size), which `System` needs.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refusing() {
            return core::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refusing() {
            return core::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: RefusingAllocator = RefusingAllocator;

/// Runs `f` with every allocation of this thread refused.
fn with_memory_exhausted<R>(f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            REFUSING.with(|r| r.set(false));
        }
    }
    REFUSING.with(|r| r.set(true));
    let _restore = Restore;
    f()
}

/// Everything a host can observe of a generation without consuming it.
#[derive(Debug, PartialEq)]
struct Observed {
    state: Vec<u32>,
    tokens: Vec<u32>,
    logits: Vec<u32>,
    kv_len: u32,
    total_generated: u64,
}

fn observe(engine: &mut Engine) -> Observed {
    let d = engine.diagnostics(0);
    Observed {
        state: read_words(engine, ResultKind::State),
        tokens: read_words(engine, ResultKind::Tokens),
        logits: read_words(engine, ResultKind::Logits),
        kv_len: d.kv_len,
        total_generated: d.total_generated_tokens,
    }
}

/// Sampled, so that a refused step that drew from the random stream would change what follows.
fn sampled() -> SamplingParams {
    SamplingParams { temperature: 1.0, top_k: 2, seed: 7, ..SamplingParams::default() }
}

const OOM_RUN_TOKENS: u32 = 40;

/// The generation nothing interfered with: tokens and text.
fn undisturbed() -> (Vec<u32>, Vec<u8>) {
    let mut engine = loaded_engine();
    engine.set_sampling(sampled()).unwrap();
    engine.generate(b"a", OOM_RUN_TOKENS, 0).unwrap();
    let text = read_text(&mut engine);
    (read_words(&mut engine, ResultKind::Tokens), text)
}

#[test]
fn a_refused_step_changes_nothing_and_the_generation_resumes_as_if_it_never_failed() {
    let (want_tokens, want_text) = undisturbed();
    let greedy: Vec<u32> = (1..=OOM_RUN_TOKENS as usize).map(|k| letter(k) as u32).collect();
    assert_ne!(want_tokens, greedy, "the sampled run should leave the greedy chain somewhere");

    let mut engine = loaded_engine();
    engine.set_sampling(sampled()).unwrap();
    engine.start(b"a", OOM_RUN_TOKENS, 0).unwrap();
    let mut refusals = 0;
    while engine.state().0 == GenState::Running {
        // Every step is first tried with memory exhausted: it goes through when the session's
        // buffers have room, and is refused whole when one of them would have to grow.
        let before = observe(&mut engine);
        match with_memory_exhausted(|| engine.step(1)) {
            Ok(()) => continue,
            Err(e) => assert_eq!(e.status, Status::OutOfMemory, "{e}"),
        }
        refusals += 1;
        assert_eq!(observe(&mut engine), before, "a refused step changed the generation");
        engine.step(1).unwrap();
    }
    assert!(refusals >= 2, "the session's buffers grew only {refusals} times: the test no longer exercises the refusal");
    assert_eq!(read_words(&mut engine, ResultKind::Tokens), want_tokens);
    assert_eq!(read_text(&mut engine), want_text);
}

#[test]
fn a_multi_step_call_returns_the_steps_done_before_memory_ran_out() {
    let (want_tokens, want_text) = undisturbed();
    let mut engine = loaded_engine();
    engine.set_sampling(sampled()).unwrap();
    engine.start(b"a", OOM_RUN_TOKENS, 0).unwrap();
    // A few steps leave the session's buffers with room for a few more tokens (they grow by
    // doubling); the call does those and reports success.
    const FIRST_STEPS: usize = 5;
    engine.step(FIRST_STEPS as u32).unwrap();
    with_memory_exhausted(|| engine.step(u32::MAX)).unwrap();
    let done = read_words(&mut engine, ResultKind::Tokens).len();
    assert!(done > FIRST_STEPS && done < OOM_RUN_TOKENS as usize, "{done} tokens");
    assert_eq!(engine.state().0, GenState::Running);
    // The next call cannot make progress: it reports the failure and changes nothing.
    let before = observe(&mut engine);
    let e = with_memory_exhausted(|| engine.step(u32::MAX)).unwrap_err();
    assert_eq!(e.status, Status::OutOfMemory);
    assert_eq!(observe(&mut engine), before);
    engine.step(u32::MAX).unwrap();
    assert_eq!(read_words(&mut engine, ResultKind::Tokens), want_tokens);
    assert_eq!(read_text(&mut engine), want_text);
}

// ---- Continuing a conversation -------------------------------------------------------------------

#[test]
fn a_continued_prompt_gets_no_second_bos() {
    let mut engine = loaded_engine();
    let e = engine.start(b"cd", 1, GEN_CONTINUE).unwrap_err();
    assert_eq!(e.status, Status::WrongState, "nothing to continue yet");

    engine.generate(b"ab", 2, 0).unwrap();
    assert_eq!(read_words(&mut engine, ResultKind::PromptTokens), [BOS, b'a' as u32, b'b' as u32]);
    assert_eq!(read_words(&mut engine, ResultKind::Tokens), tokens_of(b"cd"));
    assert_eq!(engine.diagnostics(0).kv_len, 4, "the last generated token is fed when the conversation continues");

    engine.generate(b"ef", 1, GEN_CONTINUE).unwrap();
    assert_eq!(read_words(&mut engine, ResultKind::PromptTokens), tokens_of(b"ef"), "no BOS mid-conversation");
    // BOS a b, the generated c d, then e f.
    assert_eq!(engine.diagnostics(0).kv_len, 7);
    assert_eq!(read_text(&mut engine), b"g");

    // A fresh start does add BOS, and forgets the conversation.
    engine.generate(b"ef", 1, 0).unwrap();
    assert_eq!(read_words(&mut engine, ResultKind::PromptTokens), [BOS, b'e' as u32, b'f' as u32]);
    assert_eq!(engine.diagnostics(0).kv_len, 3);
}

#[test]
fn an_explicit_bos_in_a_continued_prompt_is_kept() {
    // Only the BOS the tokenizer adds is dropped mid-conversation; one the host writes is its text.
    let mut engine = loaded_engine();
    engine.generate(b"a", 1, 0).unwrap();
    engine.generate(b"<s>b", 1, GEN_CONTINUE | GEN_PARSE_SPECIAL).unwrap();
    assert_eq!(read_words(&mut engine, ResultKind::PromptTokens), [BOS, b'b' as u32]);
}

// ---- Settings and identity -----------------------------------------------------------------------

#[test]
fn replaced_settings_come_back_whole() {
    let mut engine = loaded_engine();
    engine.set_sampling(sampled()).unwrap();
    engine.add_stop_string(b"xy").unwrap();
    let host = engine.replace_settings(Settings::default());
    assert_eq!(engine.settings(), &Settings::default());
    assert_eq!(host.sampling(), &sampled());
    assert_eq!(host.stop_strings().collect::<Vec<_>>(), [b"xy"]);
    engine.replace_settings(host);
    assert_eq!(engine.settings().stop_strings().collect::<Vec<_>>(), [b"xy"]);
    assert_eq!(engine.settings().sampling(), &sampled());
}

#[test]
fn identity_names_the_package_and_needs_a_model() {
    assert_eq!(Engine::new(|| 0.0).identity().unwrap_err().status, Status::WrongState);
    let bytes = package();
    let parsed = crate::format::parse(&bytes).unwrap();
    let id = loaded_engine().identity().unwrap();
    assert_eq!((id.model, id.artifact_crc, id.quant), (parsed.identity, parsed.artifact_crc, DType::F32));
    assert!(id.adapter_digests.is_empty());
    assert_eq!(id.assembly_state_crc, crc32fast::hash(&parsed.identity.to_bytes()));
}

// ---- Scoring and chat rendering ------------------------------------------------------------------

fn read_f32s(engine: &mut Engine, kind: ResultKind) -> Vec<f32> {
    read_words(engine, kind).into_iter().map(f32::from_bits).collect()
}

#[test]
fn scoring_the_letter_chain_predicts_each_next_letter() {
    let mut engine = loaded_engine();
    let mut tokens = vec![BOS];
    tokens.extend(tokens_of(b"abcdx"));
    engine.score(&tokens, 1, 0).unwrap();
    let logprobs = read_f32s(&mut engine, ResultKind::ScoreLogprobs);
    let argmax = read_words(&mut engine, ResultKind::ScoreArgmax);
    assert_eq!(logprobs.len(), tokens.len() - 1);
    assert_eq!(argmax.len(), tokens.len());
    assert_eq!(&argmax[1..5], &tokens_of(b"bcde")[..], "after each letter the next one");
    assert_eq!((argmax[0], argmax[5]), (0, 0), "after BOS and x (no one-hot embedding) every logit ties: the lowest id");
    assert!(logprobs.iter().all(|lp| lp.is_finite() && *lp <= 0.0));
    // b after a, c after b, d after c: the model's favourite; x after d is not.
    assert!(logprobs[2] > -1.0 && logprobs[3] > -1.0 && logprobs[4] < logprobs[3] - 5.0, "{logprobs:?}");
    // Context-only tokens change nothing about the scored ones.
    engine.score(&tokens, 3, 0).unwrap();
    assert_eq!(read_f32s(&mut engine, ResultKind::ScoreLogprobs), &logprobs[2..]);
    assert_eq!(read_words(&mut engine, ResultKind::ScoreArgmax), &argmax[2..]);
    // The argmax after a prompt is the first greedy token.
    engine.score(&tokens[..3], 3, 0).unwrap();
    assert_eq!(read_f32s(&mut engine, ResultKind::ScoreLogprobs), Vec::<f32>::new());
    let after_prompt = read_words(&mut engine, ResultKind::ScoreArgmax);
    engine.generate(b"ab", 1, 0).unwrap();
    assert_eq!(read_words(&mut engine, ResultKind::Tokens), after_prompt);
}

#[test]
fn scoring_forgets_the_conversation_and_bad_input_changes_nothing() {
    let mut engine = loaded_engine();
    assert_eq!(engine.score(&[BOS], 1, 0).map(|_| ()), Ok(()));
    engine.generate(b"ab", 3, 0).unwrap();
    let generated = read_words(&mut engine, ResultKind::Tokens);
    let before = engine.diagnostics(0);
    let refusals: [(&[u32], u32, u32, Status, &str); 6] = [
        (&[], 1, 0, Status::InvalidArgument, "n_tokens"),
        (&[BOS, VOCAB as u32], 1, 0, Status::InvalidArgument, "tokens[1]"),
        (&[BOS, 1], 0, 0, Status::InvalidArgument, "first_scored"),
        (&[BOS, 1], 3, 0, Status::InvalidArgument, "first_scored"),
        (&[BOS, 1], 1, 1, Status::InvalidArgument, "flags"),
        (&[0; MAX_CONTEXT as usize + 1], 1, 0, Status::ContextFull, "n_tokens"),
    ];
    for (tokens, first, flags, status, field) in refusals {
        let e = engine.score(tokens, first, flags).unwrap_err();
        assert_eq!((e.status, e.field.as_str()), (status, field), "{e}");
        assert_eq!(engine.diagnostics(0), before, "a refused score changes nothing");
        assert_eq!(read_words(&mut engine, ResultKind::Tokens), generated);
        assert_eq!(read_words(&mut engine, ResultKind::ScoreArgmax), [0], "the previous scores stay (after BOS every logit ties: id 0)");
    }
    engine.score(&[BOS, b'a' as u32], 1, 0).unwrap();
    assert_eq!(engine.state(), (GenState::Idle, StopReason::None));
    assert_eq!(engine.diagnostics(0).kv_len, 0, "the KV cache ends empty");
    assert_eq!(Engine::new(|| 0.0).score(&[0], 1, 0).unwrap_err().status, Status::WrongState);
}

#[test]
fn render_chat_needs_a_template_and_checks_its_flags() {
    let mut engine = loaded_engine();
    let messages = chat::encode_messages(&[chat::ChatMessage { role: "user", content: "Hi" }]);
    let e = engine.render_chat(&messages, CHAT_ADD_GENERATION_PROMPT).unwrap_err();
    assert_eq!((e.status, e.field.as_str()), (Status::InvalidArgument, "tokenizer.chat_template"), "this package names no template");
    assert_eq!(engine.render_chat(&messages, 8).unwrap_err().field.as_str(), "flags");
    assert_eq!(engine.render_chat(&messages[..3], 0).unwrap_err().field.as_str(), "messages.n_messages");
    assert_eq!(Engine::new(|| 0.0).render_chat(&messages, 0).unwrap_err().status, Status::WrongState);
    let mut buf = [0u8; 8];
    assert_eq!(engine.read(ResultKind::ChatPrompt, &mut buf).map_err(|(e, _)| e), Ok(0), "nothing rendered yet");
}

// ---- Session snapshots ---------------------------------------------------------------------------

fn snapshot(engine: &mut Engine) -> Vec<u8> {
    engine.save_session().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let n = engine.read(ResultKind::Session, &mut buf).map_err(|(e, _)| e).unwrap();
    buf.truncate(n);
    buf
}

/// The tokens a sampled continuation gives after `engine`'s conversation.
fn continued(engine: &mut Engine) -> Vec<u32> {
    engine.generate(b"", 12, GEN_CONTINUE).unwrap();
    read_words(engine, ResultKind::Tokens)
}

#[test]
fn a_snapshot_taken_mid_generation_continues_as_the_generation_would_have() {
    let mut engine = loaded_engine();
    engine.set_sampling(sampled()).unwrap();
    engine.start(b"a", 40, 0).unwrap();
    engine.step(5).unwrap();
    assert_eq!(engine.state().0, GenState::Running);
    let bytes = snapshot(&mut engine);
    let want = continued(&mut engine);

    let mut other = loaded_engine();
    other.set_sampling(sampled()).unwrap();
    other.restore_session(&bytes).unwrap();
    assert_eq!(other.state(), (GenState::Idle, StopReason::None));
    assert_eq!(continued(&mut other), want);
}

#[test]
fn out_of_memory_in_save_or_restore_changes_nothing() {
    let mut engine = loaded_engine();
    engine.set_sampling(sampled()).unwrap();
    engine.generate(b"abc", 6, 0).unwrap();
    let first = snapshot(&mut engine);
    engine.generate(b"d", 3, GEN_CONTINUE).unwrap();
    let before = observe(&mut engine);
    let e = with_memory_exhausted(|| engine.save_session()).unwrap_err();
    assert_eq!(e.status, Status::OutOfMemory);
    assert_eq!(observe(&mut engine), before);
    let mut buf = vec![0u8; 1 << 20];
    let n = engine.read(ResultKind::Session, &mut buf).map_err(|(e, _)| e).unwrap();
    assert_eq!(&buf[..n], &first[..], "the previous snapshot stays");

    let e = with_memory_exhausted(|| engine.restore_session(&first)).unwrap_err();
    assert_eq!(e.status, Status::OutOfMemory);
    assert_eq!(observe(&mut engine), before, "a refused restore leaves the conversation");
    engine.restore_session(&first).unwrap();
    assert_eq!(engine.diagnostics(0).kv_len, u32::from_le_bytes(first[68..72].try_into().unwrap()));
}
