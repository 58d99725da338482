//! The threaded flavour (`make wasm-threads`, `abi/THREADS.md`): the logits after every step and
//! the tokens are bit-identical for 1, 2, 3 and 4 threads (more threads than this machine's cores
//! included) and equal to the single-thread module's, for every storage mode of the real models
//! (SmolLM2 f32, q8_0, q4_0, q4_1 and its llama.cpp-requantized Q4_K_M and Q6_K; the Q4_K_M mixes of Qwen2.5 and Gemma 3, whose tensors span
//! q4_K, q5_0, q6_K, q8_0, f16 and f32), for the synthetic qwen2/qwen3/gemma3 families, greedy and
//! seeded sampling, f32 and f16 KV caches. A generation stopped between steps and followed by a new
//! prompt gives the new prompt's tokens; a worker that cannot get its stack is a status, not a hang.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use common::models_dir;
use harness::runtime::{ModuleFile, Runtime, Sampling, LOAD_KV_F16};
use harness::spec::{Hyperparams, ModelSpec};
use harness::synth::{synthetic_model, SynthShape};
use tinyrustlm::abi_facts::{Status, THREAD_EXPORTS};
use tinyrustlm::model::arch::{Arch, RopeKind};
use tinyrustlm::quant::DType;

/// Thread counts every case runs with (this machine has 2 cores).
const THREAD_COUNTS: [u32; 4] = [1, 2, 3, 4];

fn threaded() -> &'static ModuleFile {
    static M: OnceLock<ModuleFile> = OnceLock::new();
    M.get_or_init(|| {
        let path = harness::threads_wasm_path();
        assert!(path.exists(), "{} is missing: run `make wasm-threads` (these tests never skip)", path.display());
        let file = ModuleFile::load(&path).unwrap_or_else(|e| panic!("compiling {}: {e:#}", path.display()));
        assert!(file.is_threaded(), "{} imports no shared memory", path.display());
        file
    })
}

/// What one generation produced: the logits after every step, as bits, and the tokens.
#[derive(Debug, PartialEq)]
struct Trace {
    logits: Vec<Vec<u32>>,
    tokens: Vec<u32>,
}

struct Case<'a> {
    name: &'a str,
    package: &'a [u8],
    prompt: &'a str,
    n_new: u32,
    sampling: Sampling,
    load_flags: u32,
}

fn trace(file: &ModuleFile, threads: u32, case: &Case<'_>) -> Trace {
    let mut rt = Runtime::with_threads(file, threads, None).unwrap_or_else(|e| panic!("{}: {threads} threads: {e:#}", case.name));
    assert_eq!(rt.diagnostics().unwrap().threads, threads, "{}: diagnostics threads", case.name);
    rt.load_model_with_flags(case.package, 256, case.load_flags).unwrap_or_else(|e| panic!("{}: loading: {e:#}", case.name));
    rt.set_sampling(&case.sampling).unwrap();
    run_steps(&mut rt, case.prompt, case.n_new)
}

/// A generation one step at a time, the logits read after each.
fn run_steps(rt: &mut Runtime, prompt: &str, n_new: u32) -> Trace {
    rt.generate_start(prompt, n_new, harness::runtime::GEN_IGNORE_EOG).unwrap();
    let mut logits = Vec::new();
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
        logits.push(rt.logits().unwrap().iter().map(|v| v.to_bits()).collect());
    }
    let tokens = rt.read_u32s(harness::runtime::result_kind::TOKENS).unwrap();
    Trace { logits, tokens }
}

/// The single-thread module's trace is the reference; the threaded module must equal it at every
/// thread count.
fn check(case: &Case<'_>) {
    let reference = trace(common::module(), 1, case);
    assert_eq!(reference.tokens.len(), case.n_new as usize, "{}: the reference generation is short", case.name);
    for threads in THREAD_COUNTS {
        let got = trace(threaded(), threads, case);
        assert_eq!(got.tokens, reference.tokens, "{}: tokens with {threads} threads", case.name);
        for (step, (a, b)) in got.logits.iter().zip(&reference.logits).enumerate() {
            let first = a.iter().zip(b).position(|(x, y)| x != y);
            assert!(first.is_none(), "{}: {threads} threads: logits of step {step} differ first at token {}", case.name, first.unwrap());
        }
        assert_eq!(got.logits.len(), reference.logits.len(), "{}: steps with {threads} threads", case.name);
    }
    println!("{}: {} tokens, logits of {} steps equal for 1-4 threads", case.name, reference.tokens.len(), reference.logits.len());
}

fn greedy() -> Sampling {
    Sampling { temperature: 0.0, ..Sampling::default() }
}

fn seeded() -> Sampling {
    Sampling { temperature: 0.9, top_k: 40, top_p: 0.95, seed: 7, ..Sampling::default() }
}

fn real_package(name: &str) -> Vec<u8> {
    let path: PathBuf = models_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} — build it with `make models-all`", path.display()))
}

#[test]
fn smollm2_every_storage_mode_same_bits_for_any_thread_count() {
    for mode in ["f32", "q8_0", "q4_0", "q4_1", "q4_k_m", "q6_k"] {
        let package = real_package(&format!("smollm2-135m-{mode}.slm"));
        let name = format!("SmolLM2 {mode}");
        check(&Case { name: &name, package: &package, prompt: "The three primary colors are", n_new: 6, sampling: greedy(), load_flags: 0 });
    }
}

#[test]
fn smollm2_seeded_sampling_and_f16_kv_same_bits_for_any_thread_count() {
    let package = real_package("smollm2-135m-q8_0.slm");
    check(&Case { name: "SmolLM2 q8_0 seeded", package: &package, prompt: "Once upon a time", n_new: 8, sampling: seeded(), load_flags: 0 });
    check(&Case { name: "SmolLM2 q8_0 f16 KV", package: &package, prompt: "Once upon a time", n_new: 6, sampling: greedy(), load_flags: LOAD_KV_F16 });
}

#[test]
fn qwen2_and_gemma3_k_quant_mixes_same_bits_for_any_thread_count() {
    for (name, file) in [("Qwen2.5-Coder 0.5B Q4_K_M", "qwen2.5-coder-0.5b-instruct-q4_k_m.slm"), ("Gemma 3 270M Q4_K_M", "gemma-3-270m-q4_k_m.slm")] {
        let package = real_package(file);
        check(&Case { name, package: &package, prompt: "def fibonacci(n):", n_new: 4, sampling: greedy(), load_flags: 0 });
    }
}

/// qwen2 (biases), qwen3 (Q/K norms) and gemma3 (window, post norms, GeGLU) on synthetic weights,
/// with a prompt longer than one prefill batch (32) so batches and the window ring are crossed.
#[test]
fn synthetic_families_same_bits_for_any_thread_count() {
    let llama = synthetic_model(&SynthShape { n_layers: 3, max_context: 256, tied_embeddings: false, ..SynthShape::default() }, 21).hparams;
    let base = Hyperparams { head_dim: 24, rope: RopeKind::Neox, rope_theta: 1e6, ..llama.clone() };
    let families: Vec<(&str, ModelSpec)> = vec![
        ("llama", harness::synth::synthetic_model_for(llama, 22)),
        ("qwen2", harness::synth::synthetic_model_for(Hyperparams { arch: Arch::Qwen2, qkv_bias: true, ..base.clone() }, 23)),
        ("qwen3", harness::synth::synthetic_model_for(Hyperparams { arch: Arch::Qwen3, ..base.clone() }, 24)),
        (
            "gemma3",
            harness::synth::synthetic_model_for(
                Hyperparams { arch: Arch::Gemma3, tied_embeddings: true, sliding_window: 5, swa_pattern: 3, rope_theta_local: 10_000.0, ..base },
                25,
            ),
        ),
    ];
    let prompt = "A prompt that is longer than one prefill batch of thirty-two tokens, in bytes.";
    for (family, spec) in &families {
        for storage in [DType::F32, DType::Q8_0] {
            let package = common::raw_package_from(spec, storage).to_bytes().0;
            let name = format!("{family} {}", storage.name());
            check(&Case { name: &name, package: &package, prompt, n_new: 10, sampling: seeded(), load_flags: 0 });
        }
    }
}

#[test]
fn a_generation_stopped_between_steps_then_a_new_prompt() {
    let package = real_package("smollm2-135m-q4_1.slm");
    let case = Case { name: "SmolLM2 q4_1", package: &package, prompt: "Water boils at", n_new: 5, sampling: greedy(), load_flags: 0 };
    let fresh = trace(common::module(), 1, &case);
    let mut rt = Runtime::with_threads(threaded(), 2, None).unwrap();
    rt.load_model(&package, 256).unwrap();
    rt.set_sampling(&greedy()).unwrap();
    // Two steps of another prompt, abandoned; the workers are idle between steps.
    rt.generate_start("Tell me a long story about a dragon", 50, 0).unwrap();
    rt.generate_step(2).unwrap();
    assert!(rt.state().unwrap().running());
    let again = run_steps(&mut rt, case.prompt, case.n_new);
    assert_eq!(again, fresh, "a new prompt after a stopped generation");
    assert_eq!(rt.diagnostics().unwrap().threads, 2);
    // Stopping joins every worker: none is left busy or parked.
    rt.stop_workers().unwrap();
    assert_eq!(rt.diagnostics().unwrap().threads, 1);
    // The instance still generates, on its own thread, with the same bits.
    assert_eq!(run_steps(&mut rt, case.prompt, case.n_new), fresh);
}

#[test]
fn a_worker_without_memory_for_its_stack_is_a_status() {
    // The module's own minimum memory plus one page: no room for a 256 KiB worker stack.
    let min_pages = threaded().shared_memory_import().unwrap().minimum() as usize;
    let err = Runtime::with_threads(threaded(), 3, Some((min_pages + 1) * 65536)).err().expect("starting workers without memory must fail");
    let abi = err.downcast_ref::<harness::runtime::AbiError>().unwrap_or_else(|| panic!("not a status: {err:#}"));
    assert_eq!(abi.status, Status::OutOfMemory.code(), "{abi}");
    assert!(abi.message.contains("worker") && abi.message.contains("stack"), "{abi}");
}

#[test]
fn worker_exports_refuse_bad_indices_and_double_starts() {
    let names: Vec<&str> = THREAD_EXPORTS.iter().map(|f| f.name).collect();
    let exports = threaded().exports();
    for name in &names {
        assert!(exports.iter().any(|e| e == name), "the threaded module does not export {name}");
    }
    let mut rt = Runtime::with_threads(threaded(), 1, None).unwrap();
    let max = tinyrustlm::pool::MAX_WORKERS;
    // An index past the table, then one whose stack was never handed out: refused by status, and
    // the call returns at once instead of parking the caller.
    assert_eq!(rt.call_status("worker_run", max).unwrap(), Status::InvalidArgument.code());
    assert_eq!(rt.call_status("worker_run", 0u32).unwrap(), Status::WrongState.code());
    assert_eq!(rt.call_status("worker_stack_top", max).unwrap(), 0, "worker_stack_top returns 0 on failure");
    assert!(rt.last_error().unwrap().contains("worker"));
    // The single-thread flavours export none of them.
    let single = common::module().exports();
    for name in &names {
        assert!(!single.iter().any(|e| e == name), "the single-thread module exports {name}");
    }
}
