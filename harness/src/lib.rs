//! Host side of TinyRustLM: the wasmtime wrapper, the SLM1 writer, importers and synthetic models.
//! The `trl` binary and the conformance suite are built on this library.

// The runtime's `Error` is returned by value and holds its field inline (it must be buildable when
// memory has run out), so the large-Err lint is answered by design, as in the runtime.
#![allow(clippy::result_large_err)]

pub mod adapter;
pub mod bench;
pub mod evidence;
pub mod examples;
pub mod import;
pub mod package;
pub mod perplexity;
pub mod runtime;
pub mod spec;
pub mod synth;

use std::path::PathBuf;

/// The release module built by `make`, or the file named by `TRL_WASM` (a build in another target
/// directory).
pub fn default_wasm_path() -> PathBuf {
    if let Some(path) = std::env::var_os("TRL_WASM") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm")
}
