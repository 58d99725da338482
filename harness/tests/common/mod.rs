//! Shared by the conformance test binaries: the compiled module (once per binary), small synthetic
//! packages to start from, and raw-ABI helpers that check what `abi/tinyrustlm.h` promises when a
//! call fails (status, `last_error` text, host buffer untouched, no model loaded).
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::OnceLock;

use harness::package::{self, RawPackage};
use harness::runtime::{Diagnostics, ModuleFile, Runtime};
use harness::spec::ModelSpec;
use harness::synth::{synthetic_model, SynthShape};
use tinyrustlm::error::Status;
use tinyrustlm::quant::DType;

/// Where the real models' packages are: `$TRL_MODELS`, else the checkout's `models/` (`make model`,
/// `make models-all`).
pub fn models_dir() -> std::path::PathBuf {
    std::env::var("TRL_MODELS").map(std::path::PathBuf::from).unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

/// Seed of every synthetic package in these tests.
pub const SEED: u64 = 0x5EED_0001;
/// Prompt and length of the greedy run that shows an instance still works.
pub const PROMPT: &str = "Once upon a time";
pub const N_NEW_TOKENS: u32 = 12;

/// The release module, compiled once per test binary. A missing module fails the test: CI must
/// never pass by skipping.
pub fn module() -> &'static ModuleFile {
    static M: OnceLock<ModuleFile> = OnceLock::new();
    M.get_or_init(|| {
        let path = harness::default_wasm_path();
        assert!(path.exists(), "{} is missing: run `make wasm` first (these tests never skip)", path.display());
        ModuleFile::load(&path).unwrap_or_else(|e| panic!("compiling {}: {e:#}", path.display()))
    })
}

/// A fresh instance (its own linear memory, no model loaded).
pub fn runtime() -> Runtime {
    Runtime::new(module()).expect("instantiating the module")
}

/// The harness's default synthetic shape (vocab 258, dim 64, 2 layers, 4 heads / 2 KV heads,
/// ffn 96, max_context 128), with tied or separate output embeddings.
pub fn shape(tied: bool) -> SynthShape {
    SynthShape { tied_embeddings: tied, ..SynthShape::default() }
}

pub fn model_spec(tied: bool) -> ModelSpec {
    synthetic_model(&shape(tied), SEED)
}

/// The editable form of a valid package: every header field explicit, tensors in canonical order.
pub fn raw_package(quant: DType, tied: bool) -> RawPackage {
    raw_package_from(&model_spec(tied), quant)
}

pub fn raw_package_from(spec: &ModelSpec, quant: DType) -> RawPackage {
    package::build(spec, quant, |_| {}).unwrap_or_else(|e| panic!("building a {} package: {e:#}", quant.name()))
}

pub fn package_bytes(quant: DType, tied: bool) -> Vec<u8> {
    raw_package(quant, tied).to_bytes().0
}

/// The valid package the "still usable" checks load: f32, tied embeddings.
pub fn good_package() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| package_bytes(DType::F32, true))
}

/// Greedy tokens for `PROMPT` from `good_package()` in a fresh instance.
pub fn reference_tokens() -> &'static [u32] {
    static T: OnceLock<Vec<u32>> = OnceLock::new();
    T.get_or_init(|| {
        let mut rt = runtime();
        rt.load_model(good_package(), 0).expect("the good package loads");
        let g = rt.generate_all(PROMPT, N_NEW_TOKENS, 0).expect("the good package generates");
        assert!(!g.tokens.is_empty(), "the reference generation produced no tokens");
        g.tokens
    })
}

/// Loads `good_package()`, checks greedy decoding matches a fresh instance, and unloads again: an
/// instance that rejected packages or misused calls must behave exactly like a new one.
pub fn assert_usable(rt: &mut Runtime, after: &str) {
    rt.load_model(good_package(), 0).unwrap_or_else(|e| panic!("after {after}: the good package no longer loads: {e:#}"));
    let g = rt.generate_all(PROMPT, N_NEW_TOKENS, 0).unwrap_or_else(|e| panic!("after {after}: generation failed: {e:#}"));
    assert_eq!(g.tokens, reference_tokens(), "after {after}: greedy output differs from a fresh instance");
    rt.unload_model().unwrap_or_else(|e| panic!("after {after}: unload failed: {e:#}"));
}

/// A package rejected by `load_model`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u32,
    pub message: String,
}

/// `load_model` through the raw ABI. On failure this also checks what the header promises: the
/// host buffer is unchanged and still the host's (`dealloc` succeeds), and no model is loaded. A trap
/// panics (it is a runtime bug, never an acceptable rejection).
pub fn try_load(rt: &mut Runtime, bytes: &[u8], context_len: u32) -> Result<u32, Rejection> {
    match try_load_once(rt, bytes, context_len) {
        Ok(ptr) => Ok(ptr),
        Err(rejection) => {
            check_streamed_rejection(rt, bytes, context_len, &rejection);
            Err(rejection)
        }
    }
}

/// [`try_load`] without streaming the refused package.
pub fn try_load_once(rt: &mut Runtime, bytes: &[u8], context_len: u32) -> Result<u32, Rejection> {
    assert!(!bytes.is_empty(), "try_load needs at least one byte (alloc(0) is invalid)");
    let len = bytes.len() as u32;
    let ptr = rt.alloc(len).expect("alloc for the package");
    rt.write(ptr, bytes).expect("writing the package");
    let status = rt.call_status("load_model", (ptr, len, context_len, 0u32)).unwrap_or_else(|e| panic!("load_model trapped ({len} bytes): {e:#}"));
    if status == Status::Ok.code() {
        return Ok(ptr);
    }
    let message = rt.last_error().expect("last_error after a failed load");
    let back = rt.read(ptr, bytes.len()).expect("reading the host buffer back");
    assert!(back == bytes, "load_model failed ({message}) but changed the host buffer at byte {:?}", back.iter().zip(bytes).position(|(a, b)| a != b));
    rt.free(ptr).unwrap_or_else(|e| panic!("load_model failed ({message}) but the host can no longer free its buffer: {e:#}"));
    let d = diagnostics(rt);
    assert!(!d.model_loaded, "load_model failed ({message}) but diagnostics say a model is loaded");
    Err(Rejection { status, message })
}

/// Where a streaming load failed: the call (0 = `load_begin`, i = the i-th `load_append`,
/// `n_chunks + 1` = `load_finish`) and the rejection.
#[derive(Debug)]
pub struct StreamFailure {
    pub call: usize,
    pub rejection: Rejection,
}

/// Streams `bytes` with `load_begin(bytes.len())`, then one `load_append` per chunk ending at each
/// of `ends` (ascending, the last at most `bytes.len()`), then `load_finish`. On failure checks what
/// the header promises: the stream is over (a further `load_append` is WRONG_STATE), no model is
/// loaded, and the progress says the failing chunk was received.
pub fn stream_load(rt: &mut Runtime, bytes: &[u8], context_len: u32, ends: &[usize]) -> Result<(), StreamFailure> {
    let max_chunk = ends.iter().scan(0, |start, &end| Some(end - std::mem::replace(start, end))).max().unwrap_or(0).max(1);
    let scratch = rt.alloc(max_chunk as u32).expect("alloc for the chunks");
    let failure = (|| {
        let fail = |rt: &mut Runtime, call: usize, status: u32| {
            let message = rt.last_error().expect("last_error after a failed streaming call");
            StreamFailure { call, rejection: Rejection { status, message } }
        };
        let s = rt.call_status("load_begin", (bytes.len() as u32, context_len, 0u32)).expect("load_begin trapped");
        if s != 0 {
            return Some(fail(rt, 0, s));
        }
        let mut start = 0;
        for (i, &end) in ends.iter().enumerate() {
            rt.write(scratch, &bytes[start..end]).expect("writing a chunk");
            let s = rt.call_status("load_append", (scratch, (end - start) as u32)).unwrap_or_else(|e| panic!("load_append trapped at {end}: {e:#}"));
            if s != 0 {
                let f = fail(rt, i + 1, s);
                let (_, received, _) = rt.load_progress().expect("load progress");
                assert_eq!(received, end as u64, "after a failed load_append the progress must count the failing chunk");
                return Some(f);
            }
            start = end;
        }
        let s = rt.call_status("load_finish", ()).expect("load_finish trapped");
        (s != 0).then(|| fail(rt, ends.len() + 1, s))
    })();
    if let Some(f) = &failure {
        let s = rt.call_status("load_append", (scratch, 1u32)).expect("load_append trapped");
        assert_eq!(s, Status::WrongState.code(), "after a failed stream ({}), load_append must find no stream", f.rejection.message);
        assert!(!diagnostics(rt).model_loaded, "a failed stream ({}) left a model loaded", f.rejection.message);
    }
    rt.free(scratch).expect("freeing the chunk buffer");
    failure.map_or(Ok(()), Err)
}

/// The shortest prefix of `bytes` that a stream announcing `bytes.len()` refuses (`None`: only
/// `load_finish` refuses, or nothing does). Prefixes fail monotonically, so a bisection finds it.
pub fn first_refused_prefix(rt: &mut Runtime, bytes: &[u8], context_len: u32) -> Option<usize> {
    let refused = |rt: &mut Runtime, len: usize| {
        let ends: &[usize] = if len == 0 { &[] } else { &[len] };
        match stream_load(rt, bytes, context_len, ends) {
            Err(f) => f.call <= ends.len(),
            Ok(()) => {
                rt.call_status("unload_model", ()).expect("unload_model trapped");
                false
            }
        }
    };
    if !refused(rt, bytes.len()) {
        return None;
    }
    let (mut lo, mut hi) = (0usize, bytes.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if refused(rt, mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// Chunk ends for a stream of `len` bytes: 1-byte chunks through the header, then sizes drawn from
/// `rng` up to `max`.
pub fn awkward_chunk_ends(len: usize, rng: &mut harness::synth::SplitMix64, max: usize) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut at = 0;
    while at < len {
        let step = if at < 200 { 1 } else { 1 + (rng.next_u64() as usize % max) };
        at = (at + step).min(len);
        ends.push(at);
    }
    ends
}

/// A package `load_model` refused must be refused the same way streamed, whatever the chunks: same
/// status and message, at the chunk that completes the shortest refused prefix.
fn check_streamed_rejection(rt: &mut Runtime, bytes: &[u8], context_len: u32, want: &Rejection) {
    // Where memory runs out depends on how the host holds the bytes (a whole host buffer for
    // load_model, a chunk buffer beside the module's copy for a stream): not comparable.
    if want.status == Status::OutOfMemory.code() {
        return;
    }
    let first = first_refused_prefix(rt, bytes, context_len);
    let mut rng = harness::synth::SplitMix64(bytes.len() as u64);
    // Small chunks, but not so small that a large package takes millions of calls.
    let scale = bytes.len() / 2000;
    let chunkings = [vec![bytes.len()], awkward_chunk_ends(bytes.len(), &mut rng, 4096.max(scale)), awkward_chunk_ends(bytes.len(), &mut rng, 97.max(scale))];
    for ends in chunkings {
        let got = stream_load(rt, bytes, context_len, &ends).expect_err("load_model refused the package but a stream of it loaded");
        assert_eq!(got.rejection, *want, "streamed in {} chunks, refused otherwise than by load_model", ends.len());
        let want_call = match first {
            Some(0) => 0,
            Some(b) => 1 + ends.iter().position(|&e| e >= b).expect("a chunk reaches every prefix"),
            None => ends.len() + 1,
        };
        assert_eq!(
            got.call,
            want_call,
            "streamed in {} chunks: refused at call {} ({}), expected the chunk reaching byte {first:?}",
            ends.len(),
            got.call,
            want.message
        );
    }
}

/// Checks a rejection: the exact status, and a `last_error` text that starts with the status name
/// and names `field`. Returns a description of what is wrong (tests collect these and report all).
pub fn check_rejection(got: Result<u32, Rejection>, want: Status, field: &str) -> Result<(), String> {
    match got {
        Ok(_) => Err(format!("loaded, expected {}", want.name())),
        Err(r) if r.status != want.code() => Err(format!("status {} ({}), expected {} — {}", r.status, status_label(r.status), want.name(), r.message)),
        Err(r) if !r.message.starts_with(&format!("{}: ", want.name())) => Err(format!("last_error does not start with {}: {:?}", want.name(), r.message)),
        Err(r) if !r.message.contains(field) => Err(format!("last_error does not name {field:?}: {:?}", r.message)),
        Err(_) => Ok(()),
    }
}

/// A status code's header name, for messages.
pub fn status_label(code: u32) -> &'static str {
    Status::from_code(code).map_or("unknown status", Status::name)
}

/// Fails the test with every collected problem at once.
pub fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(failures.is_empty(), "{what}: {} case(s) failed:\n  {}", failures.len(), failures.join("\n  "));
}

pub fn diagnostics(rt: &mut Runtime) -> Diagnostics {
    rt.diagnostics().expect("read_diagnostics")
}

pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn put_f32(b: &mut [u8], at: usize, v: f32) {
    put_u32(b, at, v.to_bits());
}
