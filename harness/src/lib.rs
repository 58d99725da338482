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

/// The threaded flavour built by `make wasm-threads`, or the file named by `TRL_THREADS_WASM`.
pub fn threads_wasm_path() -> PathBuf {
    if let Some(path) = std::env::var_os("TRL_THREADS_WASM") {
        return PathBuf::from(path);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    root.join("target/threads/wasm32-unknown-unknown/wasm/tinyrustlm.wasm")
}

/// The module and thread count a command runs with. `threads` defaults to the machine's cores.
/// Without `--wasm`, more than one thread takes the threaded flavour when it is built; when it is
/// not, an explicit `--threads` above 1 is an error and the default falls back to one thread (said
/// on stderr). With `--wasm`, a single-thread module runs one thread.
pub fn open_module(wasm: &Option<PathBuf>, threads: Option<u32>) -> anyhow::Result<(runtime::ModuleFile, u32)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let wanted = threads.unwrap_or(cores);
    anyhow::ensure!(wanted >= 1, "--threads must be at least 1");
    let path = match wasm {
        Some(path) => path.clone(),
        None if wanted > 1 && threads_wasm_path().exists() => threads_wasm_path(),
        None if wanted > 1 && threads.is_some() => {
            anyhow::bail!("--threads {wanted} needs the threaded module {}: build it with `make wasm-threads`", threads_wasm_path().display())
        }
        None => default_wasm_path(),
    };
    anyhow::ensure!(path.exists(), "module {} not found: run `make` first or pass --wasm", path.display());
    let file = runtime::ModuleFile::load(&path)?;
    let n = match (file.is_threaded(), threads) {
        (true, _) => wanted,
        (false, Some(n)) if n > 1 => {
            anyhow::bail!("{} is a single-thread module: --threads {n} needs the threaded flavour (`make wasm-threads`)", path.display())
        }
        (false, _) => {
            if wanted > 1 && wasm.is_none() {
                eprintln!("note: running 1 thread: the threaded module is not built (`make wasm-threads`)");
            }
            1
        }
    };
    Ok((file, n))
}
