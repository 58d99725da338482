//! Fuzz targets for TinyRustLM (see README, "Fuzzing"). The logic lives here so the stable-toolchain
//! replay of the checked-in corpus (`harness/tests/fuzz_regressions.rs`) runs the same code.

pub mod abi_sequence;
pub mod checks;
pub mod seeds;
