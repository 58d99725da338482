//! TinyRustLM: a small, `no_std` runtime for llama-architecture language models, built for
//! `wasm32-unknown-unknown` and driven through a raw C ABI over linear memory (`abi/tinyrustlm.h`).
//!
//! Modules in pipeline order: [`format`] parses SLM1 packages, [`quant`] holds the tensor block
//! layouts and matvec kernels, [`tokenizer`] turns text into ids and back, [`model`] runs the
//! forward pass, [`grammar`] masks the tokens a grammar forbids, [`sampler`] picks tokens, [`pool`] shares matrix products among the host's threads, [`score`] rates a text token by token, [`adapter`] turns the model into a descendant, [`session`] saves and restores a conversation, [`diag`]
//! reports, [`engine`] ties them into a session and `abi` (wasm only) exports it. [`abi_facts`]
//! holds every fact of the ABI a host sees (status codes, flags, result kinds, the export list, the
//! diagnostics layout) as tables, on every target.
#![cfg_attr(not(test), no_std)]
// The threaded flavour (built with RUSTC_BOOTSTRAP=1, see the Makefile) parks idle workers with
// `memory.atomic.wait32`, whose intrinsic is still unstable.
#![cfg_attr(target_feature = "atomics", feature(stdarch_wasm_atomic_wait))]
// Errors are returned by value and hold their field name inline (see `error::Error`): building one
// must not allocate, so the large-Err lint is answered by design, not by boxing.
#![allow(clippy::result_large_err)]
// `unsafe` lives only at the ABI edge (`abi`), in the SIMD kernels (`quant::simd128`,
// `quant::kquant::simd128`) and in the thread pool's hand-off of work across instances (`pool`);
// each of those modules opts in, and every block has a `// SAFETY:` line.
#![deny(unsafe_code)]

extern crate alloc;

pub mod abi_facts;
pub mod adapter;
pub mod buffer;
pub mod diag;
pub mod engine;
pub mod error;
pub mod eval;
pub mod format;
pub mod grammar;
pub mod load_stream;
pub mod model;
pub mod pool;
pub mod quant;
mod reader;
pub mod sampler;
pub mod score;
pub mod session;
pub mod tokenizer;

#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code)]
mod abi;

#[cfg(all(target_arch = "wasm32", not(test), not(target_feature = "atomics")))]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[cfg(all(target_arch = "wasm32", not(test), target_feature = "atomics"))]
#[global_allocator]
static ALLOCATOR: pool::LockedDlmalloc = pool::LockedDlmalloc::new();

#[cfg(all(target_arch = "wasm32", not(test)))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Every input path returns a status instead of panicking; reaching this is a bug, and a trap is
    // the only safe way out.
    core::arch::wasm32::unreachable()
}
