//! Every export of `abi/tinyrustlm.h` called wrongly: bad pointers and lengths, out-of-range values,
//! calls in the wrong order. Each must return the status the header names — never trap — and, as
//! the header promises, a failed call changes nothing: no engine state (checked through the
//! diagnostics record and every non-consuming result), no host buffer, no unread text.

// Case tables are tuples of (name, call, expectation) closures; spelled out where they are read.
#![allow(clippy::type_complexity)]

mod common;

use common::*;
use harness::runtime::{result_kind, Runtime, Sampling, GEN_CONTINUE, GEN_IGNORE_EOG, GEN_PARSE_SPECIAL};
use tinyrustlm::abi_facts::ResultKind;
use tinyrustlm::error::Status;
use tinyrustlm::quant::DType;

const STATE_IDLE: u32 = 0;
const STATE_RUNNING: u32 = 1;
const STATE_FINISHED: u32 = 2;
const STOP_CONTEXT_FULL: u32 = 4;

/// Calls an export that returns a status; a trap fails the test (the header: the module never traps).
fn call<P: wasmtime::WasmParams>(rt: &mut Runtime, name: &str, args: P) -> u32 {
    rt.call_status(name, args).unwrap_or_else(|e| panic!("{name} trapped: {e:#}"))
}

fn alloc_raw(rt: &mut Runtime, size: u32) -> u32 {
    call(rt, "alloc", size)
}

/// Checks a call's status and, for a failure, that `last_error` starts with the status name.
fn check(rt: &mut Runtime, what: &str, got: u32, want: Status) -> Result<(), String> {
    if got != want.code() {
        let msg = if got != 0 { rt.last_error().unwrap_or_default() } else { String::new() };
        return Err(format!("{what}: status {got} ({}), expected {} {msg}", status_label(got), want.name()));
    }
    if want != Status::Ok {
        let msg = rt.last_error().expect("last_error");
        if !msg.starts_with(&format!("{}: ", want.name())) {
            return Err(format!("{what}: last_error does not start with {}: {msg:?}", want.name()));
        }
    }
    Ok(())
}

fn expect(rt: &mut Runtime, what: &str, got: u32, want: Status) {
    if let Err(e) = check(rt, what, got, want) {
        panic!("{e}");
    }
}

/// Calls `name(args)` and panics unless it returns `want` (see `check`).
fn expect_call<P: wasmtime::WasmParams>(rt: &mut Runtime, what: &str, name: &str, args: P, want: Status) {
    let got = call(rt, name, args);
    expect(rt, what, got, want);
}

/// Loads through the raw ABI; returns the model's buffer (ptr, len), which the module now owns.
fn load(rt: &mut Runtime, bytes: &[u8], context_len: u32) -> (u32, u32) {
    let ptr = try_load(rt, bytes, context_len).unwrap_or_else(|e| panic!("loading a valid package failed: {}", e.message));
    (ptr, bytes.len() as u32)
}

/// Everything a failed call must not change, read without consuming anything: the diagnostics
/// record and every result kind except TEXT (reading text consumes it; it is compared at the end).
#[derive(Debug, PartialEq)]
struct Snapshot {
    diagnostics: Vec<u8>,
    results: Vec<(u32, u32, Vec<u8>)>,
}

/// `linear_memory_bytes` in the diagnostics record: memory may grow while a failing call copies its
/// input, which is not engine state.
const DIAG_LINEAR_MEMORY: std::ops::Range<usize> = 88..96;

fn snapshot(rt: &mut Runtime) -> Snapshot {
    let buf = rt.alloc(8192 + 4).unwrap();
    expect_call(rt, "read_diagnostics (snapshot)", "read_diagnostics", (buf, 128u32), Status::Ok);
    let mut diagnostics = rt.read(buf, 128).unwrap();
    diagnostics[DIAG_LINEAR_MEMORY].fill(0);
    let mut results = Vec::new();
    let kinds = [
        result_kind::TOKENS,
        result_kind::PROMPT_TOKENS,
        result_kind::STATE,
        result_kind::TOKENIZED,
        result_kind::LOGITS,
        result_kind::CHAT_PROMPT,
        result_kind::SCORE_LOGPROBS,
        result_kind::SCORE_ARGMAX,
    ];
    for kind in kinds {
        let s = call(rt, "read_result", (kind, buf, 8192u32, buf + 8192));
        let len = u32_at(&rt.read(buf + 8192, 4).unwrap(), 0);
        let bytes = if s == 0 { rt.read(buf, len as usize).unwrap() } else { Vec::new() };
        results.push((kind, s, bytes));
    }
    rt.free(buf).unwrap();
    Snapshot { diagnostics, results }
}

fn state(rt: &mut Runtime) -> [u32; 4] {
    let s = rt.state().expect("read_result(STATE)");
    [s.state, s.stop_reason, s.prompt_tokens, s.generated_tokens]
}

/// Bad (ptr, len) pairs for a pointer argument, given a live host buffer `[buf, buf + cap)`.
fn bad_ranges(rt: &Runtime, buf: u32, cap: u32, len: u32, freed: u32, model: (u32, u32)) -> Vec<(String, u32, u32)> {
    // Far enough past the end that the memory will not have grown to it by the time of the call.
    let past_memory = rt.memory_size() as u32 + (64 << 20);
    vec![
        ("NULL".to_string(), 0, len),
        ("address 8 (module memory, not from alloc)".to_string(), 8, len),
        ("past the end of linear memory".to_string(), past_memory, len),
        ("ptr + len overflows u32".to_string(), u32::MAX - 1, len.max(4)),
        ("len u32::MAX from a live buffer".to_string(), buf, u32::MAX),
        ("one byte past a live buffer".to_string(), buf, cap + 1),
        ("starts inside, ends 1 byte past a live buffer".to_string(), buf + cap + 1 - len.min(cap), len.min(cap)),
        ("a freed buffer".to_string(), freed, len),
        ("the model's own buffer".to_string(), model.0, len),
        ("inside the model's own buffer".to_string(), model.0 + 64, len),
    ]
}

// ---- The module's outline ----------------------------------------------------------------------

#[test]
fn module_imports_only_the_clock_and_exports_the_header() {
    let imports = module().imports();
    assert!(imports.len() <= 1, "more than one import: {imports:?}");
    assert!(imports.iter().all(|i| i == "env.trl_now_ms"), "unexpected import in {imports:?}");
    let exports = module().exports();
    for name in tinyrustlm::abi_facts::EXPORTS.iter().map(|f| f.name).chain(["memory"]) {
        assert!(exports.iter().any(|e| e == name), "export {name} is missing; exports: {exports:?}");
    }
    let mut rt = runtime();
    assert_eq!(call(&mut rt, "abi_version", ()), 1, "abi_version");
}

// ---- Memory --------------------------------------------------------------------------------------

#[test]
fn alloc_rejects_zero_and_impossible_sizes_with_a_reason() {
    let mut rt = runtime();
    assert_eq!(alloc_raw(&mut rt, 0), 0, "alloc(0)");
    let msg = rt.last_error().unwrap();
    assert!(msg.starts_with("INVALID_ARGUMENT: ") && msg.contains("size"), "alloc(0) error text: {msg:?}");

    assert_eq!(alloc_raw(&mut rt, u32::MAX), 0, "alloc(u32::MAX)");
    let msg = rt.last_error().unwrap();
    assert!(msg.starts_with("OUT_OF_MEMORY: "), "alloc(u32::MAX) error text: {msg:?}");

    // Buffers are 32-byte aligned and zero-filled, even when they reuse freed memory.
    let p = rt.alloc(1000).unwrap();
    rt.write(p, &[0xEE; 1000]).unwrap();
    rt.free(p).unwrap();
    for size in [1u32, 31, 32, 33, 1000] {
        let q = rt.alloc(size).unwrap();
        assert_eq!(q % 32, 0, "alloc({size}) = {q} is not 32-byte aligned");
        assert!(rt.read(q, size as usize).unwrap().iter().all(|&b| b == 0), "alloc({size}) is not zero-filled");
    }
    assert_usable(&mut rt, "failed allocs");
}

#[test]
fn alloc_out_of_memory_is_a_status_not_a_trap() {
    let mut rt = Runtime::with_memory_limit(module(), Some(8 << 20)).unwrap();
    assert_eq!(alloc_raw(&mut rt, 16 << 20), 0, "alloc beyond the memory limit");
    let msg = rt.last_error().unwrap();
    assert!(msg.starts_with("OUT_OF_MEMORY: "), "error text: {msg:?}");
    let p = rt.alloc(4096).expect("a small alloc after an OOM");
    rt.free(p).unwrap();
}

#[test]
fn alloc_caps_live_buffers_at_1024() {
    let mut rt = runtime();
    let live: Vec<u32> = (0..1024).map(|i| rt.alloc(1).unwrap_or_else(|e| panic!("alloc #{i}: {e:#}"))).collect();
    assert_eq!(alloc_raw(&mut rt, 1), 0, "the 1025th live buffer");
    // last_error needs a buffer of its own: make room first (a successful call keeps the message).
    rt.free(live[0]).unwrap();
    let msg = rt.last_error().unwrap();
    assert!(msg.starts_with("LIMIT_EXCEEDED: "), "error text: {msg:?}");
    for p in &live[1..] {
        rt.free(*p).unwrap();
    }
    assert_usable(&mut rt, "1024 live buffers");
}

#[test]
fn dealloc_accepts_only_the_start_of_a_live_buffer() {
    let mut rt = runtime();
    let p = rt.alloc(64).unwrap();
    let (model, _) = load(&mut rt, good_package(), 0);
    for (what, ptr) in [("NULL", 0), ("address 8", 8), ("inside a live buffer", p + 1), ("u32::MAX", u32::MAX), ("the model's buffer", model)] {
        let s = call(&mut rt, "dealloc", ptr);
        expect(&mut rt, &format!("dealloc({what})"), s, Status::InvalidArgument);
    }
    expect_call(&mut rt, "dealloc(live)", "dealloc", p, Status::Ok);
    expect_call(&mut rt, "dealloc(live) twice", "dealloc", p, Status::InvalidArgument);
    // The model is unaffected by the attempt to release its buffer.
    let g = rt.generate_all(PROMPT, N_NEW_TOKENS, 0).unwrap();
    assert_eq!(g.tokens, reference_tokens());
}

// ---- load_model / unload_model -------------------------------------------------------------

#[test]
fn load_model_needs_one_whole_live_buffer_and_valid_arguments() {
    let mut rt = runtime();
    let pkg = good_package();
    let len = pkg.len() as u32;
    let p = rt.put(pkg).unwrap();
    let freed = rt.put(pkg).unwrap();
    rt.free(freed).unwrap();
    let cases: Vec<(&str, (u32, u32, u32, u32), &str)> = vec![
        ("NULL, 0", (0, 0, 0, 0), "ptr"),
        ("NULL, len", (0, len, 0, 0), "ptr"),
        ("address 8", (8, len, 0, 0), "ptr"),
        ("len - 1", (p, len - 1, 0, 0), "ptr"),
        ("len + 1", (p, len + 1, 0, 0), "ptr"),
        ("len 0", (p, 0, 0, 0), "ptr"),
        ("len u32::MAX", (p, u32::MAX, 0, 0), "ptr"),
        ("ptr + 32, len - 32 (inside the buffer)", (p + 32, len - 32, 0, 0), "ptr"),
        ("a freed buffer", (freed, len, 0, 0), "ptr"),
        ("flags 2 (undefined)", (p, len, 0, 2), "flags"),
        ("flags 0x80000000", (p, len, 0, 0x8000_0000), "flags"),
        ("context_len 129 > max_context 128", (p, len, 129, 0), "context_len"),
        ("context_len u32::MAX", (p, len, u32::MAX, 0), "context_len"),
    ];
    let mut failures = Vec::new();
    for (what, args, field) in cases {
        let s = call(&mut rt, "load_model", args);
        if let Err(e) = check(&mut rt, &format!("load_model({what})"), s, Status::InvalidArgument) {
            failures.push(e);
            continue;
        }
        let msg = rt.last_error().unwrap();
        if !msg.contains(field) {
            failures.push(format!("load_model({what}): last_error does not name {field:?}: {msg:?}"));
        }
        if diagnostics(&mut rt).model_loaded {
            failures.push(format!("load_model({what}) failed but a model is loaded"));
        }
        if rt.read(p, pkg.len()).unwrap() != pkg {
            failures.push(format!("load_model({what}) failed but changed the host buffer"));
        }
    }
    assert_no_failures("load_model arguments", &failures);
    // The buffer is still the host's and whole: it loads, at the largest allowed context.
    expect_call(&mut rt, "load_model(valid, context_len = max_context)", "load_model", (p, len, 128u32, 0u32), Status::Ok);
    assert_eq!(diagnostics(&mut rt).context_len, 128);
    expect_call(&mut rt, "dealloc(the loaded model's buffer)", "dealloc", p, Status::InvalidArgument);
}

#[test]
fn unload_without_a_model_is_wrong_state() {
    let mut rt = runtime();
    expect_call(&mut rt, "unload_model with no model", "unload_model", (), Status::WrongState);
    load(&mut rt, good_package(), 0);
    expect_call(&mut rt, "unload_model", "unload_model", (), Status::Ok);
    expect_call(&mut rt, "unload_model twice", "unload_model", (), Status::WrongState);
    assert!(!diagnostics(&mut rt).model_loaded);
    assert_usable(&mut rt, "unloading twice");
}

// ---- Call order --------------------------------------------------------------------------------

#[test]
fn calls_in_the_wrong_order_are_wrong_state() {
    let mut rt = runtime();
    let input = rt.put(b"abcd").unwrap();
    let out = rt.alloc(4096).unwrap();
    let len_out = rt.alloc(4).unwrap();
    let ws = Status::WrongState;

    // No model loaded.
    expect_call(&mut rt, "reset before load", "reset", (), ws);
    expect_call(&mut rt, "generate_step before load", "generate_step", 1u32, ws);
    // LOAD_PROGRESS is the one kind readable with no model (the current or last load's progress).
    for kind in ResultKind::ALL.iter().filter(|&&k| k != ResultKind::LoadProgress).map(|k| k.code()) {
        expect_call(&mut rt, &format!("read_result({kind}) before load"), "read_result", (kind, out, 4096u32, len_out), ws);
    }
    expect_call(&mut rt, "read_result(LOAD_PROGRESS) before load", "read_result", (ResultKind::LoadProgress.code(), out, 4096u32, len_out), Status::Ok);
    expect_call(&mut rt, "load_append before load_begin", "load_append", (input, 4u32), ws);
    expect_call(&mut rt, "load_finish before load_begin", "load_finish", (), ws);
    expect_call(&mut rt, "load_abort before load_begin", "load_abort", (), ws);
    expect_call(&mut rt, "render_chat before load", "render_chat", (input, 4u32, 0u32), ws);
    expect_call(&mut rt, "score_tokens before load", "score_tokens", (input, 1u32, 1u32, 0u32), ws);
    expect_call(&mut rt, "tokenize before load", "tokenize", (input, 4u32, 0u32), ws);
    expect_call(&mut rt, "generate_start before load", "generate_start", (input, 4u32, 8u32, 0u32), ws);
    expect_call(&mut rt, "generate_start(CONTINUE) before load", "generate_start", (input, 4u32, 8u32, GEN_CONTINUE), ws);
    expect_call(&mut rt, "generate before load", "generate", (input, 4u32, 8u32, 0u32), ws);
    // These need no model.
    let d = diagnostics(&mut rt);
    assert!(!d.model_loaded && d.quant_mode == u32::MAX, "diagnostics with no model: {d:?}");
    rt.set_sampling(&Sampling::default()).expect("set_sampling with no model");
    rt.add_stop_string("zz").expect("add_stop_string with no model");
    expect_call(&mut rt, "clear_stop_strings", "clear_stop_strings", (), Status::Ok);

    // Loaded, nothing generated yet.
    let pkg = good_package();
    load(&mut rt, pkg, 0);
    expect_call(&mut rt, "generate_step before generate_start", "generate_step", 1u32, ws);
    expect_call(&mut rt, "CONTINUE with no conversation", "generate_start", (input, 4u32, 8u32, GEN_CONTINUE), ws);
    expect_call(&mut rt, "generate(CONTINUE) with no conversation", "generate", (input, 4u32, 8u32, GEN_CONTINUE), ws);
    assert_eq!(state(&mut rt), [STATE_IDLE, 0, 0, 0], "state after failed calls on a fresh model");
    let second = rt.put(pkg).unwrap();
    expect_call(&mut rt, "load_model twice", "load_model", (second, pkg.len() as u32, 0u32, 0u32), ws);
    assert_eq!(rt.read(second, pkg.len()).unwrap(), pkg, "the second package's buffer changed");
    expect_call(&mut rt, "dealloc the second package (still the host's)", "dealloc", second, Status::Ok);

    // A finished generation.
    rt.generate_all(PROMPT, 3, 0).unwrap();
    assert_eq!(state(&mut rt)[0], STATE_FINISHED);
    expect_call(&mut rt, "generate_step after the generation finished", "generate_step", 1u32, ws);
    // There is a conversation now, so CONTINUE works.
    expect_call(&mut rt, "CONTINUE after a generation", "generate_start", (input, 4u32, 2u32, GEN_CONTINUE), Status::Ok);

    // After reset there is no conversation again.
    expect_call(&mut rt, "reset", "reset", (), Status::Ok);
    assert_eq!(diagnostics(&mut rt).kv_len, 0);
    expect_call(&mut rt, "CONTINUE after reset", "generate_start", (input, 4u32, 8u32, GEN_CONTINUE), ws);
    expect_call(&mut rt, "generate_step after reset", "generate_step", 1u32, ws);

    // Unloaded: back to the no-model errors.
    rt.unload_model().unwrap();
    expect_call(&mut rt, "read_result after unload", "read_result", (result_kind::STATE, out, 4096u32, len_out), ws);
    expect_call(&mut rt, "generate_step after unload", "generate_step", 1u32, ws);
    expect_call(&mut rt, "reset after unload", "reset", (), ws);
    assert_usable(&mut rt, "calls in the wrong order");
}

// ---- A failed call changes nothing -------------------------------------------------------------

type Call = Box<dyn Fn(&mut Runtime) -> u32>;

struct Misuse {
    what: String,
    call: Call,
    want: Status,
}

fn misuse(what: impl Into<String>, want: Status, call: impl Fn(&mut Runtime) -> u32 + 'static) -> Misuse {
    Misuse { what: what.into(), call: Box::new(call), want }
}

/// Context for the running-generation tests: small enough that a long prompt does not fit.
const CONTEXT_LEN: u32 = 64;
/// Steps taken before the misuse starts, so there are generated tokens, logits and unread text.
const STEPS_BEFORE: u32 = 3;

/// Greedy tokens and text of PROMPT → N_NEW_TOKENS in a fresh instance (same calls, no misuse).
fn uninterrupted_run() -> (Vec<u32>, String) {
    let mut rt = runtime();
    load(&mut rt, good_package(), CONTEXT_LEN);
    rt.generate_start(PROMPT, N_NEW_TOKENS, 0).unwrap();
    rt.generate_step(STEPS_BEFORE).unwrap();
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
    }
    let text = rt.read_text().unwrap();
    (rt.read_u32s(result_kind::TOKENS).unwrap(), text)
}

#[test]
fn failed_calls_during_a_generation_change_nothing() {
    let mut rt = runtime();
    let model = load(&mut rt, good_package(), CONTEXT_LEN);
    rt.score_tokens(&[256, 10, 20, 30], 2, 0).unwrap();
    rt.tokenize("tokenized before the misuse", false).unwrap();
    rt.generate_start(PROMPT, N_NEW_TOKENS, 0).unwrap();
    rt.generate_step(STEPS_BEFORE).unwrap();
    assert_eq!(state(&mut rt)[0], STATE_RUNNING, "the generation must still be running for this test");

    const IN: &[u8] = b"abcd";
    const OUT_CAP: u32 = 8192;
    let input = rt.put(IN).unwrap();
    let out = rt.alloc(OUT_CAP).unwrap();
    let len_out = rt.alloc(4).unwrap();
    let long = rt.put(&[b'x'; 100]).unwrap(); // 100 tokens + BOS > CONTEXT_LEN
    let medium = rt.put(&[b'y'; 50]).unwrap(); // fits alone, not after the conversation so far
    let stop65 = rt.put(&[b's'; 65]).unwrap();
    let second_pkg = rt.put(good_package()).unwrap();
    let second_len = good_package().len() as u32;
    let ids = rt.put(&[1u32, 2].map(u32::to_le_bytes).concat()).unwrap();
    let too_many_ids = rt.put(&vec![0u8; 4 * (CONTEXT_LEN as usize + 1)]).unwrap();
    let messages = tinyrustlm::tokenizer::chat::encode_messages(&[tinyrustlm::tokenizer::chat::ChatMessage { role: "user", content: "hi" }]);
    let messages_len = messages.len() as u32;
    let messages = rt.put(&messages).unwrap();
    // A released buffer whose address no later host buffer takes: allocated after all the others,
    // kept off the top of the heap by a live guard, and too small for the buffers the snapshots
    // and last_error allocate.
    let freed = rt.alloc(3000).unwrap();
    let _guard = rt.alloc(64).unwrap();
    rt.free(freed).unwrap();
    let n_generated = state(&mut rt)[3];
    let (oob, ia) = (Status::OutOfBounds, Status::InvalidArgument);

    let mut cases: Vec<Misuse> = Vec::new();
    // Every input pointer, every way it can be wrong.
    for (how, p, l) in bad_ranges(&rt, input, IN.len() as u32, IN.len() as u32, freed, model) {
        cases.push(misuse(format!("render_chat({how})"), oob, move |rt| call(rt, "render_chat", (p, l, 0u32))));
        // score_tokens takes a count of u32 ids: enough of them to cover the bad range.
        cases.push(misuse(format!("score_tokens({how})"), oob, move |rt| call(rt, "score_tokens", (p, l.div_ceil(4), 1u32, 0u32))));
        cases.push(misuse(format!("add_stop_string({how})"), oob, move |rt| call(rt, "add_stop_string", (p, l))));
        cases.push(misuse(format!("tokenize({how})"), oob, move |rt| call(rt, "tokenize", (p, l, 0u32))));
        cases.push(misuse(format!("generate_start({how})"), oob, move |rt| call(rt, "generate_start", (p, l, 8u32, 0u32))));
        cases.push(misuse(format!("generate_start({how}, CONTINUE)"), oob, move |rt| call(rt, "generate_start", (p, l, 8u32, GEN_CONTINUE))));
        cases.push(misuse(format!("generate({how})"), oob, move |rt| call(rt, "generate", (p, l, 8u32, 0u32))));
        if p != input {
            cases.push(misuse(format!("dealloc({how})"), ia, move |rt| call(rt, "dealloc", p)));
        }
        cases.push(misuse(format!("load_model({how})"), ia, move |rt| call(rt, "load_model", (p, l, 0u32, 0u32))));
    }
    // Every output pointer (a 16-byte destination, so TEXT has room to be consumed wrongly).
    for (how, p, l) in bad_ranges(&rt, out, OUT_CAP, 16, freed, model) {
        for kind in [result_kind::TEXT, result_kind::TOKENS, result_kind::STATE] {
            cases.push(misuse(format!("read_result({kind}, dst {how})"), oob, move |rt| call(rt, "read_result", (kind, p, l, len_out))));
        }
        // A dst_cap running past a buffer that starts at a live one has its own test:
        // last_error_cap_past_the_buffer_is_out_of_bounds.
        if p != out {
            cases.push(misuse(format!("last_error(dst {how})"), oob, move |rt| call(rt, "last_error", (p, l, len_out))));
        }
    }
    // len_out is always 4 bytes: ranges that only differ in their length are valid here.
    for (how, p, _) in bad_ranges(&rt, len_out, 4, 4, freed, model).into_iter().filter(|&(_, p, _)| p != len_out) {
        for kind in [result_kind::TEXT, result_kind::LOGITS] {
            cases.push(misuse(format!("read_result({kind}, len_out {how})"), oob, move |rt| call(rt, "read_result", (kind, out, OUT_CAP, p))));
        }
        cases.push(misuse(format!("last_error(len_out {how})"), oob, move |rt| call(rt, "last_error", (out, OUT_CAP, p))));
    }
    // A 128-byte destination that is not in a live host buffer. (A dst_cap running past a buffer
    // that starts at a live one has its own test: read_diagnostics_cap_past_the_buffer_is_out_of_bounds.)
    for (how, p, l) in bad_ranges(&rt, out, OUT_CAP, 128, freed, model) {
        if p == out {
            continue;
        }
        cases.push(misuse(format!("read_diagnostics({how})"), oob, move |rt| call(rt, "read_diagnostics", (p, l))));
    }
    // Values out of range.
    cases.extend([
        misuse("add_stop_string(empty)", ia, move |rt| call(rt, "add_stop_string", (input, 0u32))),
        misuse("add_stop_string(65 bytes)", ia, move |rt| call(rt, "add_stop_string", (stop65, 65u32))),
        misuse("tokenize(flags CONTINUE)", ia, move |rt| call(rt, "tokenize", (input, 4u32, GEN_CONTINUE))),
        misuse("tokenize(flags u32::MAX)", ia, move |rt| call(rt, "tokenize", (input, 4u32, u32::MAX))),
        misuse("generate_start(flags 8, undefined)", ia, move |rt| call(rt, "generate_start", (input, 4u32, 8u32, 8u32))),
        misuse("generate_start(all flags + bit 31)", ia, move |rt| call(rt, "generate_start", (input, 4u32, 8u32, 0x8000_0007u32))),
        misuse("generate(flags 0x80000000)", ia, move |rt| call(rt, "generate", (input, 4u32, 8u32, 0x8000_0000u32))),
        misuse("generate_start(prompt longer than the context)", Status::ContextFull, move |rt| call(rt, "generate_start", (long, 100u32, 8u32, 0u32))),
        misuse("generate(prompt longer than the context)", Status::ContextFull, move |rt| call(rt, "generate", (long, 100u32, 8u32, GEN_PARSE_SPECIAL))),
        misuse("generate_start(CONTINUE, prompt overflowing the context)", Status::ContextFull, move |rt| {
            call(rt, "generate_start", (medium, 50u32, 8u32, GEN_CONTINUE))
        }),
        misuse("read_result(the first undefined kind)", ia, move |rt| call(rt, "read_result", (first_undefined_kind(), out, OUT_CAP, len_out))),
        misuse("render_chat(flags 8, undefined)", ia, move |rt| call(rt, "render_chat", (messages, messages_len, 8u32))),
        misuse("render_chat(list cut short)", ia, move |rt| call(rt, "render_chat", (messages, messages_len - 1, 0u32))),
        misuse("render_chat(package with no chat template)", ia, move |rt| call(rt, "render_chat", (messages, messages_len, 1u32))),
        misuse("score_tokens(no tokens)", ia, move |rt| call(rt, "score_tokens", (ids, 0u32, 1u32, 0u32))),
        misuse("score_tokens(an id >= vocab_size)", ia, move |rt| call(rt, "score_tokens", (input, 1u32, 1u32, 0u32))),
        misuse("score_tokens(first_scored 0)", ia, move |rt| call(rt, "score_tokens", (ids, 2u32, 0u32, 0u32))),
        misuse("score_tokens(first_scored past the end)", ia, move |rt| call(rt, "score_tokens", (ids, 2u32, 3u32, 0u32))),
        misuse("score_tokens(flags 1)", ia, move |rt| call(rt, "score_tokens", (ids, 2u32, 1u32, 1u32))),
        misuse("score_tokens(more ids than the context)", Status::ContextFull, move |rt| call(rt, "score_tokens", (too_many_ids, CONTEXT_LEN + 1, 1u32, 0u32))),
        misuse("score_tokens(4 * n_tokens overflows)", oob, move |rt| call(rt, "score_tokens", (ids, 0x4000_0000u32, 1u32, 0u32))),
        misuse("read_result(SCORE_ARGMAX, cap one u32 short)", Status::BufferTooSmall, move |rt| {
            call(rt, "read_result", (result_kind::SCORE_ARGMAX, out, 11u32, len_out))
        }),
        misuse("read_result(kind u32::MAX)", ia, move |rt| call(rt, "read_result", (u32::MAX, out, OUT_CAP, len_out))),
        misuse("read_result(TOKENS, cap one byte short)", Status::BufferTooSmall, move |rt| {
            call(rt, "read_result", (result_kind::TOKENS, out, 4 * n_generated - 1, len_out))
        }),
        misuse("read_result(LOGITS, cap one f32 short)", Status::BufferTooSmall, move |rt| {
            call(rt, "read_result", (result_kind::LOGITS, out, 257 * 4, len_out))
        }),
        misuse("read_result(STATE, cap 15)", Status::BufferTooSmall, move |rt| call(rt, "read_result", (result_kind::STATE, out, 15u32, len_out))),
        misuse("read_result(PROMPT_TOKENS, cap 0)", Status::BufferTooSmall, move |rt| {
            call(rt, "read_result", (result_kind::PROMPT_TOKENS, 0u32, 0u32, len_out))
        }),
        misuse("read_diagnostics(cap 127)", Status::BufferTooSmall, move |rt| call(rt, "read_diagnostics", (out, 127u32))),
        misuse("read_diagnostics(NULL, 0)", Status::BufferTooSmall, move |rt| call(rt, "read_diagnostics", (0u32, 0u32))),
        misuse("set_sampling(temperature NaN)", Status::InvalidSampling, move |rt| {
            call(rt, "set_sampling", (f32::NAN, 0u32, 1.0f32, 0.0f32, 1.0f32, 64u32, 0u64))
        }),
        misuse("load_model(a second valid package)", Status::WrongState, move |rt| call(rt, "load_model", (second_pkg, second_len, 0u32, 0u32))),
        misuse("load_model(the model's own buffer, whole)", ia, move |rt| call(rt, "load_model", (model.0, model.1, 0u32, 0u32))),
        misuse("dealloc(the model's buffer)", ia, move |rt| call(rt, "dealloc", model.0)),
    ]);

    let mut failures = Vec::new();
    for c in &cases {
        let before = snapshot(&mut rt);
        let got = (c.call)(&mut rt);
        if let Err(e) = check(&mut rt, &c.what, got, c.want) {
            failures.push(e);
        }
        let after = snapshot(&mut rt);
        if after != before {
            failures.push(format!("{}: the call failed but changed state:\n    before {:?}\n    after  {:?}", c.what, before, after));
        }
    }
    assert_no_failures(&format!("{} failed calls", cases.len()), &failures);

    // The host's buffers are intact, the second package is still the host's, nothing was consumed:
    // the generation finishes exactly as one without the misuse.
    assert_eq!(rt.read(input, IN.len()).unwrap(), IN);
    assert_eq!(rt.read(second_pkg, good_package().len()).unwrap(), good_package());
    rt.free(second_pkg).expect("the rejected second package is still the host's");
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
    }
    let text = rt.read_text().unwrap();
    let tokens = rt.read_u32s(result_kind::TOKENS).unwrap();
    let (want_tokens, want_text) = uninterrupted_run();
    assert_eq!(tokens, want_tokens, "tokens after the failed calls");
    assert_eq!(text, want_text, "text after the failed calls (a failed read_result consumed text?)");
}

// ---- Zero lengths ------------------------------------------------------------------------------

#[test]
fn zero_lengths_never_look_at_the_pointer() {
    let mut rt = runtime();
    load(&mut rt, good_package(), 0);
    let len_out = rt.alloc(4).unwrap();
    for p in [0u32, 8, u32::MAX] {
        expect_call(&mut rt, &format!("tokenize({p}, 0)"), "tokenize", (p, 0u32, 0u32), Status::Ok);
        // An empty stop string is invalid whatever the pointer: INVALID_ARGUMENT, not OUT_OF_BOUNDS.
        expect_call(&mut rt, &format!("add_stop_string({p}, 0)"), "add_stop_string", (p, 0u32), Status::InvalidArgument);
        expect_call(&mut rt, &format!("read_result(TEXT, {p}, 0)"), "read_result", (result_kind::TEXT, p, 0u32, len_out), Status::Ok);
        assert_eq!(u32_at(&rt.read(len_out, 4).unwrap(), 0), 0, "TEXT with cap 0 reports 0 bytes");
        expect_call(&mut rt, &format!("read_result(STATE, {p}, 0)"), "read_result", (result_kind::STATE, p, 0u32, len_out), Status::BufferTooSmall);
        assert_eq!(u32_at(&rt.read(len_out, 4).unwrap(), 0), 16, "STATE with cap 0 reports the 16 bytes needed");
        expect_call(&mut rt, &format!("read_diagnostics({p}, 0)"), "read_diagnostics", (p, 0u32), Status::BufferTooSmall);
        expect_call(&mut rt, &format!("last_error({p}, 0)"), "last_error", (p, 0u32, len_out), Status::Ok);
        assert!(u32_at(&rt.read(len_out, 4).unwrap(), 0) > 0, "last_error with cap 0 still reports the message length");
        // The synthetic tokenizer adds BOS, so an empty prompt is one token.
        expect_call(&mut rt, &format!("generate_start({p}, 0)"), "generate_start", (p, 0u32, 2u32, 0u32), Status::Ok);
        assert_eq!(rt.read_u32s(result_kind::PROMPT_TOKENS).unwrap(), vec![256], "an empty prompt is just BOS");
    }
    // load_model is the exception: (ptr, 0) is never a whole buffer.
    rt.unload_model().unwrap();
    expect_call(&mut rt, "load_model(NULL, 0)", "load_model", (0u32, 0u32, 0u32, 0u32), Status::InvalidArgument);
}

#[test]
fn empty_prompt_without_bos_is_invalid_unless_continuing() {
    let mut spec = model_spec(true);
    spec.tokenizer.add_bos = false;
    let pkg = raw_package_from(&spec, DType::F32).to_bytes().0;
    let mut rt = runtime();
    load(&mut rt, &pkg, 0);
    expect_call(&mut rt, "generate_start(empty, no BOS)", "generate_start", (0u32, 0u32, 4u32, 0u32), Status::InvalidArgument);
    expect_call(&mut rt, "generate(empty, no BOS)", "generate", (0u32, 0u32, 4u32, 0u32), Status::InvalidArgument);
    assert_eq!(state(&mut rt), [STATE_IDLE, 0, 0, 0]);
    rt.generate_all("ab", 2, 0).unwrap();
    let kv = diagnostics(&mut rt).kv_len;
    // Continuing with nothing new feeds the last sampled token and carries on.
    expect_call(&mut rt, "generate_start(empty, CONTINUE)", "generate_start", (0u32, 0u32, 2u32, GEN_CONTINUE), Status::Ok);
    assert_eq!(state(&mut rt)[0], STATE_RUNNING);
    rt.generate_step(2).unwrap();
    assert!(diagnostics(&mut rt).kv_len > kv, "continuing did not extend the KV cache");
}

// ---- Adapters and evals ------------------------------------------------------------------------

/// The adapter and eval exports through the same matrix: every bad pointer, wrong order, repeated
/// call and bad value gets the header's status, changes nothing, and leaves an instance that
/// generates exactly as before. (Malformed adapter and case-file contents: adapters.rs, evidence.rs.)
#[test]
fn adapter_and_eval_exports_misused_change_nothing() {
    let mut rt = runtime();
    const IN: &[u8] = b"abcd";
    let input = rt.put(IN).unwrap();
    let ws = Status::WrongState;
    // No model loaded.
    expect_call(&mut rt, "validate_adapter_delta before load", "validate_adapter_delta", (input, 4u32), ws);
    expect_call(&mut rt, "apply_adapter_delta before load", "apply_adapter_delta", (input, 4u32), ws);
    expect_call(&mut rt, "remove_last_adapter before load", "remove_last_adapter", (), ws);
    expect_call(&mut rt, "reset_adapters before load", "reset_adapters", (), ws);
    expect_call(&mut rt, "run_eval before load", "run_eval", (input, 4u32, 0u32), ws);

    let model = load(&mut rt, good_package(), CONTEXT_LEN);
    rt.generate_start(PROMPT, N_NEW_TOKENS, 0).unwrap();
    rt.generate_step(STEPS_BEFORE).unwrap();
    let freed = rt.alloc(3000).unwrap();
    let _guard = rt.alloc(64).unwrap();
    rt.free(freed).unwrap();
    let (oob, ia) = (Status::OutOfBounds, Status::InvalidArgument);
    let mut cases: Vec<Misuse> = Vec::new();
    for (how, p, l) in bad_ranges(&rt, input, IN.len() as u32, IN.len() as u32, freed, model) {
        cases.push(misuse(format!("validate_adapter_delta({how})"), oob, move |rt| call(rt, "validate_adapter_delta", (p, l))));
        cases.push(misuse(format!("apply_adapter_delta({how})"), oob, move |rt| call(rt, "apply_adapter_delta", (p, l))));
        cases.push(misuse(format!("run_eval({how})"), oob, move |rt| call(rt, "run_eval", (p, l, 0u32))));
    }
    cases.extend([
        misuse("remove_last_adapter with none applied", ws, |rt| call(rt, "remove_last_adapter", ())),
        misuse("remove_last_adapter again", ws, |rt| call(rt, "remove_last_adapter", ())),
        misuse("run_eval(flags 1)", ia, move |rt| call(rt, "run_eval", (input, 4u32, 1u32))),
        misuse("run_eval(flags u32::MAX)", ia, move |rt| call(rt, "run_eval", (input, 4u32, u32::MAX))),
        misuse("apply_adapter_delta(len 0)", Status::AdapterTruncated, move |rt| call(rt, "apply_adapter_delta", (input, 0u32))),
        misuse("validate_adapter_delta(not an adapter)", Status::AdapterBadMagic, move |rt| call(rt, "validate_adapter_delta", (input, 4u32))),
    ]);
    let mut failures = Vec::new();
    for c in &cases {
        let before = snapshot(&mut rt);
        let got = (c.call)(&mut rt);
        if let Err(e) = check(&mut rt, &c.what, got, c.want) {
            failures.push(e);
        }
        if snapshot(&mut rt) != before {
            failures.push(format!("{}: the call failed but changed state", c.what));
        }
    }
    assert_no_failures(&format!("{} failed adapter/eval calls", cases.len()), &failures);
    // reset_adapters with none applied succeeds, changes nothing, and may be repeated.
    for what in ["reset_adapters with none applied", "reset_adapters again"] {
        let before = snapshot(&mut rt);
        expect_call(&mut rt, what, "reset_adapters", (), Status::Ok);
        assert_eq!(snapshot(&mut rt), before, "{what} changed state");
    }
    // After every failure the generation carries on exactly as one without them.
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
    }
    let text = rt.read_text().unwrap();
    let (want_tokens, want_text) = uninterrupted_run();
    assert_eq!(rt.read_u32s(result_kind::TOKENS).unwrap(), want_tokens, "tokens after the failed adapter/eval calls");
    assert_eq!(text, want_text);
}

// ---- Results -----------------------------------------------------------------------------------

#[test]
fn buffer_too_small_reports_the_needed_length_and_consumes_nothing() {
    let mut rt = runtime();
    load(&mut rt, good_package(), 0);
    rt.tokenize("hello", false).unwrap();
    rt.generate_start(PROMPT, N_NEW_TOKENS, 0).unwrap();
    rt.generate_step(5).unwrap();
    let out = rt.alloc(8192).unwrap();
    let len_out = rt.alloc(4).unwrap();
    let pattern = vec![0xA5u8; 8192];
    for kind in [result_kind::TOKENS, result_kind::PROMPT_TOKENS, result_kind::STATE, result_kind::TOKENIZED, result_kind::LOGITS] {
        let whole = rt.read_result(kind).unwrap();
        let needed = whole.len() as u32;
        assert!(needed > 0, "result {kind} is empty; the test needs something to read");
        rt.write(out, &pattern).unwrap();
        rt.write(len_out, &[0xFF; 4]).unwrap();
        let s = call(&mut rt, "read_result", (kind, out, needed - 1, len_out));
        expect(&mut rt, &format!("read_result({kind}, cap {})", needed - 1), s, Status::BufferTooSmall);
        assert_eq!(u32_at(&rt.read(len_out, 4).unwrap(), 0), needed, "result {kind}: needed length");
        assert_eq!(rt.read(out, 8192).unwrap(), pattern, "result {kind}: BUFFER_TOO_SMALL wrote to dst");
        assert_eq!(rt.read_result(kind).unwrap(), whole, "result {kind} changed after BUFFER_TOO_SMALL");
        // Exactly the needed size is enough.
        expect_call(&mut rt, &format!("read_result({kind}, cap {needed})"), "read_result", (kind, out, needed, len_out), Status::Ok);
        assert_eq!(rt.read(out, needed as usize).unwrap(), whole);
    }
    // An unknown kind writes nothing, not even len_out.
    rt.write(out, &pattern).unwrap();
    rt.write(len_out, &[0xFF; 4]).unwrap();
    let undefined = first_undefined_kind();
    expect_call(&mut rt, "read_result(the first undefined kind)", "read_result", (undefined, out, 8192u32, len_out), Status::InvalidArgument);
    assert_eq!(rt.read(len_out, 4).unwrap(), [0xFF; 4], "read_result({undefined}) wrote len_out");
    assert_eq!(rt.read(out, 8192).unwrap(), pattern, "read_result({undefined}) wrote dst");

    // TEXT is read in pieces no smaller than one UTF-8 character; together they are the whole text.
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
    }
    let mut text = Vec::new();
    loop {
        expect_call(&mut rt, "read_result(TEXT, cap 4)", "read_result", (result_kind::TEXT, out, 4u32, len_out), Status::Ok);
        let n = u32_at(&rt.read(len_out, 4).unwrap(), 0) as usize;
        assert!(n <= 4, "TEXT wrote {n} bytes into a 4-byte buffer");
        if n == 0 {
            break;
        }
        text.extend(rt.read(out, n).unwrap());
    }
    let mut fresh = runtime();
    load(&mut fresh, good_package(), 0);
    let want = fresh.generate_all(PROMPT, N_NEW_TOKENS, 0).unwrap();
    assert_eq!(String::from_utf8(text).expect("TEXT pieces are whole characters"), want.text);
}

#[test]
fn read_diagnostics_needs_128_bytes() {
    let mut rt = runtime();
    let buf = rt.alloc(256).unwrap();
    rt.write(buf, &[0xA5; 256]).unwrap();
    expect_call(&mut rt, "read_diagnostics(cap 127)", "read_diagnostics", (buf, 127u32), Status::BufferTooSmall);
    assert_eq!(rt.read(buf, 256).unwrap(), vec![0xA5; 256], "BUFFER_TOO_SMALL wrote to the buffer");
    expect_call(&mut rt, "read_diagnostics(cap 256)", "read_diagnostics", (buf, 256u32), Status::Ok);
    let b = rt.read(buf, 256).unwrap();
    assert_eq!((u32_at(&b, 0), u32_at(&b, 4), u32_at(&b, 8)), (1, 128, 0), "layout_version, layout_len, model_loaded");
    assert_eq!(&b[128..], &[0xA5; 128][..], "read_diagnostics wrote past the 128-byte record");
    // The record's last 128 bytes of a buffer are a valid destination too.
    expect_call(&mut rt, "read_diagnostics(last 128 bytes)", "read_diagnostics", (buf + 128, 128u32), Status::Ok);
}

/// The header's convention: "every pointer a host passes must lie, WITH ITS LENGTH, inside one live
/// buffer"; for read_diagnostics the length is dst_cap, not just the 128 bytes written.
#[test]
fn read_diagnostics_cap_past_the_buffer_is_out_of_bounds() {
    let mut rt = runtime();
    let buf = rt.alloc(128).unwrap();
    let mut failures = Vec::new();
    for cap in [129u32, u32::MAX] {
        let s = call(&mut rt, "read_diagnostics", (buf, cap));
        if let Err(e) = check(&mut rt, &format!("read_diagnostics(128-byte buffer, cap {cap})"), s, Status::OutOfBounds) {
            failures.push(e);
        }
    }
    assert_no_failures("read_diagnostics dst_cap", &failures);
}

#[test]
fn last_error_copies_a_prefix_and_reports_the_full_length() {
    let mut rt = runtime();
    assert_eq!(alloc_raw(&mut rt, 0), 0);
    let full = rt.last_error().unwrap();
    assert!(full.len() > 5, "error text {full:?}");
    let buf = rt.alloc(64).unwrap();
    let len_out = rt.alloc(4).unwrap();
    rt.write(buf, &[0xA5; 64]).unwrap();
    expect_call(&mut rt, "last_error(cap 5)", "last_error", (buf, 5u32, len_out), Status::Ok);
    assert_eq!(rt.read(buf, 5).unwrap(), full.as_bytes()[..5], "the first 5 bytes of the message");
    assert_eq!(rt.read(buf + 5, 59).unwrap(), vec![0xA5; 59], "last_error wrote past cap");
    assert_eq!(u32_at(&rt.read(len_out, 4).unwrap(), 0) as usize, full.len(), "full message length");
    // A successful call does not clear the message.
    expect_call(&mut rt, "last_error(cap 0)", "last_error", (0u32, 0u32, len_out), Status::Ok);
    assert_eq!(u32_at(&rt.read(len_out, 4).unwrap(), 0) as usize, full.len());
    assert_eq!(rt.last_error().unwrap(), full);
}

/// Same convention as for read_diagnostics: (dst_ptr, dst_cap) must lie in one live buffer, even
/// when the message is shorter than dst_cap.
#[test]
fn last_error_cap_past_the_buffer_is_out_of_bounds() {
    let mut rt = runtime();
    let buf = rt.alloc(1024).unwrap();
    let len_out = rt.alloc(4).unwrap();
    let mut failures = Vec::new();
    for cap in [1025u32, u32::MAX] {
        assert_eq!(alloc_raw(&mut rt, 0), 0); // a short message again ("INVALID_ARGUMENT: size = 0: ...")
        let s = call(&mut rt, "last_error", (buf, cap, len_out));
        if let Err(e) = check(&mut rt, &format!("last_error(1024-byte buffer, cap {cap})"), s, Status::OutOfBounds) {
            failures.push(e);
        }
    }
    assert_no_failures("last_error dst_cap", &failures);
}

// ---- Sampling ----------------------------------------------------------------------------------

#[test]
fn invalid_sampling_is_rejected_and_the_previous_settings_stay() {
    let mut rt = runtime();
    // Rejected with no model too: sampling settings do not need one.
    let s = call(&mut rt, "set_sampling", (-1.0f32, 0u32, 1.0f32, 0.0f32, 1.0f32, 64u32, 0u64));
    expect(&mut rt, "set_sampling(temperature -1) with no model", s, Status::InvalidSampling);
    load(&mut rt, good_package(), 0);
    let greedy = rt.generate_all(PROMPT, 16, 0).unwrap().tokens;
    let sampled_settings = Sampling { temperature: 1.5, top_k: 0, top_p: 0.95, min_p: 0.0, repetition_penalty: 1.1, repetition_window: 64, seed: 7 };
    rt.set_sampling(&sampled_settings).unwrap();
    let sampled = rt.generate_all(PROMPT, 16, 0).unwrap().tokens;
    assert_ne!(sampled, greedy, "the sampled settings must give other tokens than greedy, or this test cannot see a change");

    // Every bad call has its other fields valid and different from the settings in effect, so
    // applying any part of it would show in the output.
    let bad: Vec<(&str, fn(&mut Sampling))> = vec![
        ("temperature", |p| p.temperature = f32::NAN),
        ("temperature", |p| p.temperature = -1.0),
        ("temperature", |p| p.temperature = -f32::MIN_POSITIVE),
        ("temperature", |p| p.temperature = f32::INFINITY),
        ("temperature", |p| p.temperature = 100.5),
        ("top_p", |p| p.top_p = 0.0),
        ("top_p", |p| p.top_p = -0.1),
        ("top_p", |p| p.top_p = 1.0001),
        ("top_p", |p| p.top_p = f32::NAN),
        ("min_p", |p| p.min_p = -0.01),
        ("min_p", |p| p.min_p = 1.0),
        ("min_p", |p| p.min_p = f32::NAN),
        ("repetition_penalty", |p| p.repetition_penalty = 0.99),
        ("repetition_penalty", |p| p.repetition_penalty = 0.0),
        ("repetition_penalty", |p| p.repetition_penalty = 10.5),
        ("repetition_penalty", |p| p.repetition_penalty = f32::NAN),
        ("repetition_penalty", |p| p.repetition_penalty = f32::INFINITY),
    ];
    let reject_all = |rt: &mut Runtime, valid_rest: Sampling, failures: &mut Vec<String>| {
        for (field, breaks) in &bad {
            let mut p = valid_rest;
            breaks(&mut p);
            let s = call(rt, "set_sampling", (p.temperature, p.top_k, p.top_p, p.min_p, p.repetition_penalty, p.repetition_window, p.seed));
            let what = format!("set_sampling({p:?})");
            if let Err(e) = check(rt, &what, s, Status::InvalidSampling) {
                failures.push(e);
            } else if !rt.last_error().unwrap().contains(field) {
                failures.push(format!("{what}: last_error does not name {field}: {:?}", rt.last_error().unwrap()));
            }
        }
    };
    let mut failures = Vec::new();
    // Sampled settings in effect; the bad calls are otherwise greedy with another seed.
    let greedy_rest = Sampling { temperature: 0.0, top_k: 1, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, repetition_window: 0, seed: 99 };
    reject_all(&mut rt, greedy_rest, &mut failures);
    assert_no_failures("invalid sampling", &failures);
    assert_eq!(rt.generate_all(PROMPT, 16, 0).unwrap().tokens, sampled, "rejected set_sampling calls changed the sampling in effect");

    // Greedy in effect; the bad calls are otherwise sampled settings.
    rt.set_sampling(&Sampling::default()).unwrap();
    let sampled_rest = Sampling { temperature: 1.2, top_k: 40, top_p: 0.9, min_p: 0.05, repetition_penalty: 1.3, repetition_window: 8, seed: 1 };
    reject_all(&mut rt, sampled_rest, &mut failures);
    assert_no_failures("invalid sampling", &failures);
    assert_eq!(rt.generate_all(PROMPT, 16, 0).unwrap().tokens, greedy, "greedy output changed after rejected set_sampling calls");
}

// ---- Context -----------------------------------------------------------------------------------

#[test]
fn a_prompt_that_does_not_fit_is_context_full_and_changes_nothing() {
    const CTX: u32 = 16;
    let mut rt = runtime();
    load(&mut rt, good_package(), CTX);
    rt.generate_all("ab", 3, 0).unwrap();
    let before = snapshot(&mut rt);
    let kv = diagnostics(&mut rt).kv_len;
    assert!(kv > 0);
    let mut failures = Vec::new();
    // BOS + 16 bytes = 17 tokens > 16.
    let too_long = rt.put(&[b'x'; 16]).unwrap();
    // BOS + 14 bytes fits an empty context, not the conversation so far (kv tokens + the last
    // sampled token + 14).
    let continued = rt.put(&[b'y'; (CTX - 2) as usize]).unwrap();
    for (what, name, args) in [
        ("generate_start(17 tokens)", "generate_start", (too_long, 16u32, 4u32, 0u32)),
        ("generate(17 tokens)", "generate", (too_long, 16u32, 4u32, 0u32)),
        ("generate_start(CONTINUE, kv + 15 tokens)", "generate_start", (continued, CTX - 2, 4u32, GEN_CONTINUE)),
    ] {
        let s = call(&mut rt, name, args);
        if let Err(e) = check(&mut rt, what, s, Status::ContextFull) {
            failures.push(e);
        }
        if snapshot(&mut rt) != before {
            failures.push(format!("{what}: failed but changed state"));
        }
        if diagnostics(&mut rt).kv_len != kv {
            failures.push(format!("{what}: kv_len changed"));
        }
    }
    assert_no_failures("CONTEXT_FULL prompts", &failures);
    // The boundary: BOS + 15 bytes is exactly the context and fits.
    let exact = rt.put(&[b'z'; (CTX - 1) as usize]).unwrap();
    expect_call(&mut rt, "generate_start(exactly context_len tokens)", "generate_start", (exact, CTX - 1, 4u32, 0u32), Status::Ok);
    assert_eq!(diagnostics(&mut rt).kv_len, CTX);
}

#[test]
fn generation_stops_with_context_full_when_the_context_fills() {
    const CTX: u32 = 8;
    let mut rt = runtime();
    load(&mut rt, good_package(), CTX);
    // BOS + 3 prompt tokens; IGNORE_EOG so that an end-of-generation token cannot end it first.
    let g = rt.generate_all("abc", 100, GEN_IGNORE_EOG).unwrap();
    assert_eq!(g.state.state, STATE_FINISHED);
    assert_eq!(g.state.stop_reason, STOP_CONTEXT_FULL, "stop reason (tokens {:?})", g.tokens);
    let room = CTX - 4;
    // Every generated token but the last was fed back into the KV cache.
    assert!((room..=room + 1).contains(&(g.tokens.len() as u32)), "generated {} tokens with room for {room}", g.tokens.len());
    assert_eq!(diagnostics(&mut rt).kv_len, CTX, "the KV cache is full");
    expect_call(&mut rt, "generate_step after CONTEXT_FULL", "generate_step", 1u32, Status::WrongState);
    // Continuing cannot fit even one more token, and changes nothing.
    let before = snapshot(&mut rt);
    let p = rt.put(b"d").unwrap();
    expect_call(&mut rt, "CONTINUE in a full context", "generate_start", (p, 1u32, 4u32, GEN_CONTINUE), Status::ContextFull);
    assert_eq!(snapshot(&mut rt), before, "a CONTEXT_FULL continue changed state");
    // A new generation starts from an empty cache.
    rt.generate_all("abc", 2, 0).unwrap();
    assert_eq!(diagnostics(&mut rt).kv_len, 5);
}

// ---- Stop strings --------------------------------------------------------------------------------

#[test]
fn stop_strings_are_limited_to_8_of_1_to_64_bytes() {
    let mut rt = runtime();
    let s65 = rt.put(&[b'a'; 65]).unwrap();
    let s64 = rt.put(&[b'b'; 64]).unwrap();
    let empty = rt.put(b"x").unwrap();
    for i in 0..7 {
        rt.add_stop_string(&format!("stop{i}")).unwrap();
    }
    // Rejected adds are not counted: the 8th valid one still fits.
    expect_call(&mut rt, "add_stop_string(65 bytes)", "add_stop_string", (s65, 65u32), Status::InvalidArgument);
    expect_call(&mut rt, "add_stop_string(empty)", "add_stop_string", (empty, 0u32), Status::InvalidArgument);
    expect_call(&mut rt, "add_stop_string(64 bytes) as the 8th", "add_stop_string", (s64, 64u32), Status::Ok);
    expect_call(&mut rt, "add_stop_string as the 9th", "add_stop_string", (empty, 1u32), Status::LimitExceeded);
    expect_call(&mut rt, "add_stop_string(65 bytes) when full", "add_stop_string", (s65, 65u32), Status::InvalidArgument);
    expect_call(&mut rt, "clear_stop_strings", "clear_stop_strings", (), Status::Ok);
    for i in 0..8 {
        rt.add_stop_string(&format!("again{i}")).unwrap_or_else(|e| panic!("stop string {i} after clearing: {e:#}"));
    }
    expect_call(&mut rt, "add_stop_string as the 9th after clearing", "add_stop_string", (empty, 1u32), Status::LimitExceeded);
}

/// The first `read_result` kind above every defined one (codes may leave gaps).
fn first_undefined_kind() -> u32 {
    ResultKind::TABLE.iter().map(|&(_, code)| code).max().unwrap_or(0) + 1
}
