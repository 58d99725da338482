//! Model importers: foreign checkpoints → [`ModelSpec`](crate::spec::ModelSpec), which
//! `package::write` turns into an SLM1 package (`abi/FORMAT.md`).
//!
//! In pipeline order:
//! - [`gguf`]: a strict GGUF v2/v3 container reader (no model semantics);
//! - [`dequant`]: f16/bf16 and ggml q8_0/q4_0/q4_1 block decoding;
//! - [`spm`]: merge tables for SentencePiece vocabularies (shared by GGUF "llama" and llama2.c);
//! - [`gguf_llama`]: GGUF `llama` architecture → `ModelSpec` ([`import_gguf`]);
//! - [`llama2c`]: llama2.c `.bin` checkpoint + `tokenizer.bin` → `ModelSpec` ([`import_llama2c`]).

pub mod dequant;
pub mod gguf;
pub mod gguf_llama;
pub mod llama2c;
pub mod spm;

#[cfg(test)]
mod test_gguf;
#[cfg(test)]
mod tests;

pub use dequant::dequantize;
pub use gguf_llama::{import_gguf, import_gguf_bytes};
pub use llama2c::{import_llama2c, import_llama2c_bytes};

use indicatif::{ProgressBar, ProgressStyle};

use crate::package::{canonical_names, expected_dims};
use crate::spec::Hyperparams;

/// One tensor a llama model must have: its SLM1 name and dims (`[rows, row_len]` or `[len]`).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSlot {
    pub name: String,
    pub dims: Vec<u32>,
    /// Norm weights are always stored as f32.
    pub is_norm: bool,
}

/// The tensors of a llama model in canonical order with their dims (`package::canonical_names`
/// and `package::expected_dims`, the writer's own list).
pub fn canonical_tensors(h: &Hyperparams) -> Vec<TensorSlot> {
    canonical_names(h)
        .into_iter()
        .map(|name| {
            // Every canonical name has dims: both come from the same table of tensor kinds.
            let dims = expected_dims(h, &name).expect("canonical tensor names have expected dims");
            TensorSlot { is_norm: dims.len() == 1, name, dims }
        })
        .collect()
}

/// A bar over `n_tensors` tensors, or a hidden one when `enabled` is false.
fn tensor_progress(n_tensors: usize, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n_tensors as u64);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix("tensors");
    bar
}
