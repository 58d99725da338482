//! Host side of TinyRustLM: the wasmtime wrapper, the SLM1 writer, importers and synthetic models.
//! The `trl` binary and the conformance suite are built on this library.

pub mod adapter;
pub mod bench;
pub mod evidence;
pub mod import;
pub mod package;
pub mod runtime;
pub mod spec;
pub mod synth;

use std::path::PathBuf;

/// The release module built by `make`.
pub fn default_wasm_path() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm")
}
