//! SIMD128 kernels equal the scalar reference bit for bit, checked inside wasm (native tests cannot
//! run SIMD128). The self-test build exports `kernel_selftest`, which runs both over awkward lengths
//! for every dtype and returns the number of mismatching outputs. The relaxed-SIMD flavour (`make
//! wasm-relaxed`) is held to the same reference, and to the default module's outputs.

mod common;

use std::path::PathBuf;

use common::*;
use harness::runtime::{ModuleFile, Runtime};
use tinyrustlm::quant::DType;

fn built(env: &str, default: &str, make_target: &str) -> PathBuf {
    let path = std::env::var(env).map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(default));
    assert!(path.exists(), "{} is missing: build it with `make {make_target}` (`make test` does)", path.display());
    path
}

fn selftest_mismatches(path: &std::path::Path) -> u32 {
    let file = ModuleFile::load(path).unwrap();
    let mut rt = Runtime::new(&file).unwrap();
    rt.call_status("kernel_selftest", ()).unwrap()
}

#[test]
fn simd128_kernels_match_scalar_reference_in_wasm() {
    let path = built("TRL_SELFTEST_WASM", "target/selftest/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", "conformance");
    assert_eq!(selftest_mismatches(&path), 0, "SIMD128 kernels differ from the scalar reference");
}

#[test]
fn relaxed_simd_kernels_match_scalar_reference_in_wasm() {
    let path = built("TRL_RELAXED_SELFTEST_WASM", "target/relaxed-selftest/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", "conformance");
    assert_eq!(selftest_mismatches(&path), 0, "relaxed-SIMD kernels differ from the scalar reference");
}

/// Every storage mode, batched prefill and token-by-token decode: the relaxed flavour's logits after
/// the prompt and after each sampled token, and its tokens, are the default module's bit for bit.
#[test]
fn relaxed_simd_flavour_gives_the_default_modules_bits() {
    let relaxed = ModuleFile::load(&built("TRL_RELAXED_WASM", "target/relaxed/wasm32-unknown-unknown/wasm/tinyrustlm.wasm", "wasm-relaxed")).unwrap();
    // Longer than one 32-token prefill batch, so both kernel paths (N > 1 and N = 1) run.
    let prompt = "Once upon a time there was a very small language model that ran in a browser tab.";
    for quant in [DType::Q4_0, DType::Q4_1, DType::Q8_0, DType::F32] {
        let package = package_bytes(quant, true);
        let mut trace = Vec::new();
        for module in [module(), &relaxed] {
            let mut rt = Runtime::new(module).unwrap();
            rt.load_model(&package, 0).unwrap();
            rt.generate_start(prompt, 8, 0).unwrap();
            let mut logits = vec![rt.logits().unwrap()];
            while rt.state().unwrap().running() {
                rt.generate_step(1).unwrap();
                logits.push(rt.logits().unwrap());
            }
            let tokens = rt.read_u32s(harness::runtime::result_kind::TOKENS).unwrap();
            let bits: Vec<Vec<u32>> = logits.iter().map(|l| l.iter().map(|x| x.to_bits()).collect()).collect();
            assert!(rt.state().unwrap().prompt_tokens > 32, "the prompt should span two prefill batches");
            trace.push((tokens, bits));
        }
        assert_eq!(trace[0].0, trace[1].0, "{}: tokens differ between the default and the relaxed-SIMD module", quant.name());
        assert!(trace[0].1 == trace[1].1, "{}: logits differ between the default and the relaxed-SIMD module", quant.name());
    }
}
