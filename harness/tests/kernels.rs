//! SIMD128 kernels equal the scalar reference bit for bit, checked inside wasm (native tests cannot
//! run SIMD128). The self-test build exports `kernel_selftest`, which runs both over awkward lengths
//! for every dtype and returns the number of mismatching outputs.

use harness::runtime::{ModuleFile, Runtime};

#[test]
fn simd128_kernels_match_scalar_reference_in_wasm() {
    let path = std::env::var("TRL_SELFTEST_WASM").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/selftest/wasm32-unknown-unknown/wasm/tinyrustlm.wasm")
    });
    assert!(path.exists(), "{} is missing: build it with `make test` (target $(SELFTEST_WASM))", path.display());
    let file = ModuleFile::load(&path).unwrap();
    let mut rt = Runtime::new(&file).unwrap();
    let mismatches = rt.call_status("kernel_selftest", ()).unwrap();
    assert_eq!(mismatches, 0, "SIMD128 kernels differ from the scalar reference");
}
