//! Memory exhaustion: a host that caps the module's linear memory (wasmtime `StoreLimits`, as a
//! browser tab or an embedder with a budget would). Whatever does not fit — a host buffer, a package,
//! a KV cache for a long context, the tokens of a huge prompt — must come back as OUT_OF_MEMORY with
//! the field that did not fit, never as a trap, and the instance must then load and generate exactly
//! as a fresh one does.

mod common;

use common::*;
use harness::package::expected_dims;
use harness::runtime::{Runtime, GEN_PARSE_SPECIAL};
use harness::spec::{token_type, MergeSpec, TensorData, TokenSpec, TokenizerKind};
use harness::synth::{synthetic_model, SynthShape};
use tinyrustlm::error::Status;
use tinyrustlm::quant::DType;

const MIB: usize = 1 << 20;
/// wasm grows memory in 64 KiB pages; caps are whole pages.
const PAGE: usize = 64 << 10;

fn capped(cap: usize) -> Runtime {
    Runtime::with_memory_limit(module(), Some(cap)).expect("instantiating the module with a memory cap")
}

/// A raw export call; a trap is a runtime bug (the header: the module never traps), so it panics.
fn call<P: wasmtime::WasmParams>(rt: &mut Runtime, what: &str, name: &str, args: P) -> u32 {
    rt.call_status(name, args).unwrap_or_else(|e| panic!("{what}: {name} trapped under a memory cap: {e:#}"))
}

fn expect_oom(rt: &mut Runtime, what: &str, status: u32, field: &str) {
    let msg = if status != 0 { rt.last_error().unwrap_or_default() } else { String::new() };
    assert_eq!(status, Status::OutOfMemory.code(), "{what}: status {status} ({}), expected OUT_OF_MEMORY {msg}", status_label(status));
    assert!(msg.starts_with("OUT_OF_MEMORY: ") && msg.contains(field), "{what}: last_error should start with OUT_OF_MEMORY and name {field:?}: {msg:?}");
}

/// A package big enough that its KV cache at `max_context` dominates: f32 weights ≈ 14 MB, KV cache
/// at 4096 positions = 4 layers × 4096 × 128 × 4 B × 2 = 16 MiB.
fn big_shape() -> SynthShape {
    SynthShape { dim: 256, n_layers: 4, n_heads: 4, n_kv_heads: 2, ffn_dim: 768, max_context: 4096, tied_embeddings: true }
}

fn big_package(quant: DType) -> Vec<u8> {
    raw_package_from(&synthetic_model(&big_shape(), SEED), quant).to_bytes().0
}

/// Linear memory an uncapped instance ends up with after loading `bytes` at `context_len`.
fn memory_after_load(bytes: &[u8], context_len: u32) -> usize {
    let mut rt = runtime();
    rt.load_model(bytes, context_len).expect("the package loads without a cap");
    rt.memory_size()
}

#[test]
fn alloc_beyond_the_cap_is_out_of_memory_and_the_instance_stays_usable() {
    const CAP: usize = 32 * MIB;
    let mut rt = capped(CAP);
    let p = call(&mut rt, "alloc(64 MiB) under a 32 MiB cap", "alloc", (64 * MIB) as u32);
    assert_eq!(p, 0, "alloc(64 MiB) under a 32 MiB cap returned a buffer");
    expect_oom(&mut rt, "alloc(64 MiB)", Status::OutOfMemory.code(), "size");

    // Fill the memory up to the cap with 1 MiB buffers: the last one fails cleanly, and once they
    // are released the space is there again.
    let mut live = Vec::new();
    loop {
        let p = call(&mut rt, "filling memory", "alloc", MIB as u32);
        if p == 0 {
            break;
        }
        live.push(p);
        assert!(live.len() <= CAP / MIB, "more 1 MiB buffers than the cap holds");
    }
    assert!(live.len() >= 24, "only {} 1 MiB buffers fit under a 32 MiB cap", live.len());
    assert!(rt.memory_size() <= CAP, "linear memory {} grew past the cap {CAP}", rt.memory_size());
    // last_error needs a small buffer of its own: release one first.
    rt.free(live.pop().unwrap()).unwrap();
    let msg = rt.last_error().unwrap();
    assert!(msg.starts_with("OUT_OF_MEMORY: "), "error text when memory is full: {msg:?}");
    for p in live {
        rt.free(p).unwrap();
    }
    assert_usable(&mut rt, "allocating past the cap");
}

/// Loads `bytes` at `context_len` under every cap from "the package alone barely fits" to
/// "everything fits", in about 96 steps of whole pages: each of `load_model`'s allocations fails at
/// some cap in the range, and every failure must be OUT_OF_MEMORY, not a trap, after which the
/// instance still loads and runs the small package. Returns (alloc OOM, load OOM, loaded) counts.
fn sweep_load_caps(bytes: &[u8], context_len: u32) -> (usize, usize, usize) {
    let need = memory_after_load(bytes, context_len);
    let start = (bytes.len() / PAGE) * PAGE;
    let steps = 96;
    let step = ((need + MIB - start) / steps).div_ceil(PAGE) * PAGE;
    let (mut alloc_oom, mut load_oom, mut loaded) = (0, 0, 0);
    let mut failures = Vec::new();
    for cap in (start..=need + MIB).step_by(step) {
        let mut rt = capped(cap);
        let len = bytes.len() as u32;
        let ptr = call(&mut rt, &format!("cap {cap}"), "alloc", len);
        if ptr == 0 {
            // The package itself does not fit: that is alloc's OUT_OF_MEMORY.
            let msg = rt.last_error().unwrap_or_default();
            if !msg.starts_with("OUT_OF_MEMORY: ") {
                failures.push(format!("cap {cap}: alloc of the package failed with {msg:?}"));
            }
            alloc_oom += 1;
            continue;
        }
        rt.free(ptr).unwrap();
        match try_load(&mut rt, bytes, context_len) {
            Ok(_) => {
                loaded += 1;
                rt.unload_model().unwrap();
            }
            Err(r) if r.status == Status::OutOfMemory.code() && r.message.starts_with("OUT_OF_MEMORY: ") => load_oom += 1,
            Err(r) => failures.push(format!("cap {cap}: load_model failed with status {} ({}): {}", r.status, status_label(r.status), r.message)),
        }
        if rt.memory_size() > cap {
            failures.push(format!("cap {cap}: linear memory grew to {}", rt.memory_size()));
        }
        assert_usable(&mut rt, &format!("load_model under a {cap}-byte cap"));
    }
    assert_no_failures("load_model under memory caps", &failures);
    eprintln!("package {} B, needs {need} B loaded; caps every {step} B: {alloc_oom} alloc OOM, {load_oom} load OOM, {loaded} loaded", bytes.len());
    assert!(loaded >= 1, "the package never loaded, even with {} bytes", need + MIB);
    (alloc_oom, load_oom, loaded)
}

/// The KV cache and scratch dominate: a 4096-position context on a 3.4 MB package.
#[test]
fn load_model_under_every_cap_kv_cache_heavy() {
    let (_, load_oom, _) = sweep_load_caps(&big_package(DType::Q8_0), 4096);
    assert!(load_oom >= 3, "only {load_oom} caps made load_model itself run out of memory; the sweep misses the KV cache and scratch");
}

/// The tokenizer tables dominate: a byte-level BPE section with 200 000 merge entries (3.2 MB read
/// into a merge table, sorted, indexed) next to a small model.
#[test]
fn load_model_under_every_cap_tokenizer_heavy() {
    let mut spec = model_spec(true);
    let tok = &mut spec.tokenizer;
    tok.kind = TokenizerKind::BpeByteLevel;
    for t in tok.tokens.iter_mut().take(256) {
        t.token_type = token_type::NORMAL;
    }
    let ab = tok.tokens.len() as u32;
    tok.tokens.push(TokenSpec { bytes: b"ab".to_vec(), score: 0.0, token_type: token_type::NORMAL });
    tok.merges = (0..200_000).map(|i| MergeSpec { left: b'a' as u32, right: b'b' as u32, result: ab, rank: i }).collect();
    spec.hparams.vocab_size = spec.tokenizer.tokens.len() as u32;
    for t in &mut spec.tensors {
        if t.name == "token_embd.weight" {
            t.dims = expected_dims(&spec.hparams, &t.name).unwrap();
            let n: usize = t.dims.iter().map(|&d| d as usize).product();
            t.data = TensorData::F32((0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3).collect());
        }
    }
    let bytes = raw_package_from(&spec, DType::F32).to_bytes().0;
    let (_, load_oom, _) = sweep_load_caps(&bytes, 0);
    assert!(load_oom >= 10, "only {load_oom} caps made load_model itself run out of memory; the sweep misses the tokenizer tables");
}

#[test]
fn a_context_that_does_not_fit_is_out_of_memory_and_a_shorter_one_loads() {
    let bytes = big_package(DType::F32);
    let (short, long) = (256u32, 4096u32);
    let (need_short, need_long) = (memory_after_load(&bytes, short), memory_after_load(&bytes, long));
    assert!(need_long > need_short + 8 * MIB, "a 4096-position KV cache should need ≈ 15 MiB more: {need_short} vs {need_long}");
    let cap = (need_short + need_long) / 2 / PAGE * PAGE;
    let mut rt = capped(cap);
    let rejected = try_load(&mut rt, &bytes, long).expect_err("a 4096-position context fitted under the cap");
    assert_eq!(rejected.status, Status::OutOfMemory.code(), "context 4096 under a {cap}-byte cap: {}", rejected.message);
    assert!(rejected.message.contains("kv_cache"), "the error should name the KV cache: {:?}", rejected.message);

    // The same instance loads the same package with a context that fits, and generates exactly
    // what an uncapped instance does.
    try_load(&mut rt, &bytes, short).unwrap_or_else(|r| panic!("context {short} under a {cap}-byte cap after the OOM: {}", r.message));
    let got = rt.generate_all(PROMPT, N_NEW_TOKENS, 0).expect("generating after the OOM");
    let mut fresh = runtime();
    fresh.load_model(&bytes, short).unwrap();
    let want = fresh.generate_all(PROMPT, N_NEW_TOKENS, 0).unwrap();
    assert_eq!(got.tokens, want.tokens, "greedy tokens after a failed long-context load");
    rt.unload_model().unwrap();
    assert_usable(&mut rt, "a context that did not fit");
}

/// Tokens take 4 bytes each: a prompt of n bytes needs its copy plus ≈ 4n bytes of token ids. Under a
/// cap that holds the prompt but not its tokens, `tokenize`, `generate_start` and `generate` are
/// OUT_OF_MEMORY and the loaded model keeps working.
#[test]
fn a_prompt_whose_tokens_do_not_fit_is_out_of_memory() {
    const PROMPT_BYTES: usize = 4 * MIB;
    let mut uncapped = runtime();
    uncapped.load_model(good_package(), 0).unwrap();
    let cap = (uncapped.memory_size() + 3 * PROMPT_BYTES).div_ceil(PAGE) * PAGE;
    let mut rt = capped(cap);
    rt.load_model(good_package(), 0).unwrap();
    rt.generate_all(PROMPT, 3, 0).unwrap();
    let text = vec![b'a'; PROMPT_BYTES];
    let p = rt.put(&text).expect("the prompt itself fits under the cap");
    let before = diagnostics(&mut rt);
    let n = PROMPT_BYTES as u32;
    for name in ["tokenize", "generate_start", "generate"] {
        let what = format!("{name}(4 MiB prompt) under a {cap}-byte cap");
        let s = match name {
            "tokenize" => call(&mut rt, &what, name, (p, n, 0u32)),
            _ => call(&mut rt, &what, name, (p, n, 8u32, 0u32)),
        };
        expect_oom(&mut rt, &what, s, "token");
        let after = diagnostics(&mut rt);
        assert_eq!(
            (after.kv_len, after.prompt_tokens, after.generated_tokens),
            (before.kv_len, before.prompt_tokens, before.generated_tokens),
            "{what} changed the session"
        );
    }
    rt.free(p).unwrap();
    let g = rt.generate_all(PROMPT, N_NEW_TOKENS, 0).expect("generating after the OOMs");
    assert_eq!(g.tokens, reference_tokens(), "greedy tokens after OUT_OF_MEMORY prompts");
}

/// The real model: SmolLM2-135M q8_0 (144 MB) under a 320 MiB cap. Its full 8192-position context
/// (a 377 MiB KV cache) does not fit; 512 positions do, and then a 40 MiB text is too much for the
/// BPE tokenizer's working memory — each refused with OUT_OF_MEMORY, and the model still answers
/// exactly as an uncapped instance.
#[test]
fn smollm2_under_a_memory_cap() {
    const CAP: usize = 320 * MIB;
    let path = std::env::var("TRL_MODELS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
        .join("smollm2-135m-q8_0.slm");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} — run `make model`", path.display()));
    let mut rt = capped(CAP);
    let rejected = try_load(&mut rt, &bytes, 8192).expect_err("an 8192-position SmolLM2 context fitted in 320 MiB");
    assert_eq!(rejected.status, Status::OutOfMemory.code(), "SmolLM2 at 8192 positions: {}", rejected.message);
    try_load(&mut rt, &bytes, 512).unwrap_or_else(|r| panic!("SmolLM2 at 512 positions after the OOM: {}", r.message));

    let huge = "The quick brown fox jumps over the lazy dog. ".repeat(40 * MIB / 45);
    let p = rt.put(huge.as_bytes()).expect("the text fits under the cap");
    let s = call(&mut rt, "tokenize(40 MiB)", "tokenize", (p, huge.len() as u32, 0u32));
    expect_oom(&mut rt, "tokenize(40 MiB) with SmolLM2 loaded", s, "token");
    rt.free(p).unwrap();

    let prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let got = rt.generate_all(prompt, 8, GEN_PARSE_SPECIAL).expect("generating after the OOMs");
    let mut fresh = Runtime::new(module()).unwrap();
    fresh.load_model(&bytes, 512).unwrap();
    let want = fresh.generate_all(prompt, 8, GEN_PARSE_SPECIAL).unwrap();
    assert_eq!(got.tokens, want.tokens, "SmolLM2 greedy tokens after OUT_OF_MEMORY calls");
    assert!(!got.tokens.is_empty());
}

/// Fills every byte the cap leaves with host buffers (1 MiB down to 16 bytes), so the module's next
/// allocation of any size fails. Returns the buffers, smallest first.
fn exhaust(rt: &mut Runtime) -> Vec<u32> {
    let mut live = Vec::new();
    let mut size = MIB as u32;
    while size >= 16 {
        loop {
            let p = call(rt, "filling memory", "alloc", size);
            if p == 0 {
                break;
            }
            live.push(p);
        }
        size /= 2;
    }
    live.reverse();
    live
}

/// Buffers a host reserves before exhausting memory so it can still inspect the module.
struct Probe {
    record: u32,
    len_out: u32,
    error: u32,
}

impl Probe {
    const RECORD_CAP: u32 = 128;
    const ERROR_CAP: u32 = 512;

    fn new(rt: &mut Runtime) -> Probe {
        Probe { record: rt.alloc(Self::RECORD_CAP).unwrap(), len_out: rt.alloc(4).unwrap(), error: rt.alloc(Self::ERROR_CAP).unwrap() }
    }

    fn last_error(&self, rt: &mut Runtime) -> String {
        assert_eq!(call(rt, "last_error", "last_error", (self.error, Self::ERROR_CAP, self.len_out)), 0);
        let len = u32_at(&rt.read(self.len_out, 4).unwrap(), 0) as usize;
        String::from_utf8(rt.read(self.error, len.min(Self::ERROR_CAP as usize)).unwrap()).unwrap()
    }

    /// (kv_len, prompt_tokens, generated_tokens) from the diagnostics record.
    fn progress(&self, rt: &mut Runtime) -> (u32, u32, u32) {
        assert_eq!(call(rt, "read_diagnostics", "read_diagnostics", (self.record, Self::RECORD_CAP)), 0);
        let d = harness::runtime::Diagnostics::parse(&rt.read(self.record, Self::RECORD_CAP as usize).unwrap()).unwrap();
        (d.kv_len, d.prompt_tokens, d.generated_tokens)
    }

    /// `read_result(STATE)`: 1 while a generation runs.
    fn running(&self, rt: &mut Runtime) -> bool {
        let s = call(rt, "read_result", "read_result", (harness::runtime::result_kind::STATE, self.record, Self::RECORD_CAP, self.len_out));
        assert_eq!(s, 0, "read_result(STATE)");
        u32_at(&rt.read(self.record, 4).unwrap(), 0) == 1
    }

    /// The message of a call that returned `status`, which must be OUT_OF_MEMORY.
    fn expect_oom(&self, rt: &mut Runtime, what: &str, status: u32) -> String {
        let msg = self.last_error(rt);
        assert_eq!(status, Status::OutOfMemory.code(), "{what}: status {status}: {msg}");
        msg
    }

    fn free(self, rt: &mut Runtime) {
        for p in [self.record, self.len_out, self.error] {
            rt.free(p).unwrap();
        }
    }
}

/// Releases the smallest filler from [`exhaust`]: often still too little, so refusals can repeat
/// back to back.
fn release_smallest(rt: &mut Runtime, fillers: &mut Vec<u32>) {
    let p = fillers.remove(0);
    rt.free(p).unwrap();
}

/// Releases the fillers and the probe: the instance has its memory back.
fn release_all(rt: &mut Runtime, fillers: Vec<u32>, probe: Probe) {
    for p in fillers {
        rt.free(p).unwrap();
    }
    probe.free(rt);
}

/// Sampled decoding with memory exhausted between steps: every `generate_step` either makes a step
/// or is OUT_OF_MEMORY having changed nothing — not the KV cache, not the token counts, not the
/// sampler's random stream — so releasing memory a little at a time and calling again yields exactly
/// the tokens and text of an instance that never ran short.
#[test]
fn generation_steps_out_of_memory_change_nothing_and_resume_exactly() {
    let sampling = harness::runtime::Sampling { temperature: 0.9, top_p: 0.95, seed: 7, ..Default::default() };
    // Long enough that the session's buffers outgrow any free chunk the fillers leave behind.
    let n_new = 100;
    let mut uncapped = runtime();
    uncapped.load_model(good_package(), 0).unwrap();
    uncapped.set_sampling(&sampling).unwrap();
    let want = uncapped.generate_all(PROMPT, n_new, 0).unwrap();
    assert_eq!(want.tokens.len(), n_new as usize, "the reference run should use every step");

    let cap = (uncapped.memory_size() + 2 * MIB).div_ceil(PAGE) * PAGE;
    let mut rt = capped(cap);
    rt.load_model(good_package(), 0).unwrap();
    rt.set_sampling(&sampling).unwrap();
    rt.generate_start(PROMPT, n_new, 0).unwrap();
    let probe = Probe::new(&mut rt);
    let mut fillers = exhaust(&mut rt);
    let (mut steps, mut refused) = (0, 0);
    while probe.running(&mut rt) {
        let before = probe.progress(&mut rt);
        let s = call(&mut rt, "generate_step(1) with memory exhausted", "generate_step", 1u32);
        if s == 0 {
            steps += 1;
            continue;
        }
        let msg = probe.expect_oom(&mut rt, "generate_step", s);
        assert!(msg.starts_with("OUT_OF_MEMORY: "), "{msg}");
        assert_eq!(probe.progress(&mut rt), before, "a refused step changed the session ({msg})");
        refused += 1;
        release_smallest(&mut rt, &mut fillers);
    }
    assert!(refused >= 2, "memory never ran out during the steps ({steps} steps): the test did not test anything");
    release_all(&mut rt, fillers, probe);
    let text = rt.read_text().unwrap();
    let got = rt.finish(text).unwrap();
    assert_eq!(got.tokens, want.tokens, "sampled tokens after {refused} refused steps");
    assert_eq!(got.text, want.text);
}

/// `run_eval` with memory exhausted is OUT_OF_MEMORY (the case file's parse, the prompts, the
/// produced texts or the sidecar), never a trap; once memory is back the sidecar is byte-identical
/// to an uncapped instance's.
#[test]
fn run_eval_out_of_memory_is_a_status_and_the_rerun_is_identical() {
    let cases = b"{\"suite\":\"oom\",\"version\":\"1\",\"min_pass_rate\":0}\n\
{\"id\":\"a\",\"prompt\":\"Once upon a time\",\"expected\":\"x\",\"max_tokens\":8}\n\
{\"id\":\"b\",\"prompt\":\"Hello\",\"expected\":\"\",\"match\":\"prefix\",\"max_tokens\":4,\"stop\":[\"zz\"]}\n";
    let mut uncapped = runtime();
    uncapped.load_model(good_package(), 0).unwrap();
    let want = uncapped.run_eval(cases).unwrap();

    let cap = (uncapped.memory_size() + 2 * MIB).div_ceil(PAGE) * PAGE;
    let mut rt = capped(cap);
    rt.load_model(good_package(), 0).unwrap();
    let input = rt.put(cases).unwrap();
    let probe = Probe::new(&mut rt);
    let mut fillers = exhaust(&mut rt);
    let mut refused = 0;
    loop {
        let s = call(&mut rt, "run_eval with memory exhausted", "run_eval", (input, cases.len() as u32, 0u32));
        if s == 0 {
            break;
        }
        probe.expect_oom(&mut rt, "run_eval", s);
        refused += 1;
        release_smallest(&mut rt, &mut fillers);
    }
    assert!(refused >= 1, "memory never ran out: the test did not test anything");
    release_all(&mut rt, fillers, probe);
    rt.free(input).unwrap();
    let got = rt.read_result(harness::runtime::result_kind::EVAL_SIDECAR).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want), "sidecar after {refused} refusals");
    rt.unload_model().unwrap();
    assert_usable(&mut rt, "run_eval out of memory");
}
