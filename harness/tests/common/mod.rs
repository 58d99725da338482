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
