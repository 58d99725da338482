//! Exact-match evals inside the module: parse a frozen case file (JSONL, documented in
//! `abi/FORMAT.md` "Eval cases and sidecars"), run every case greedily, and write a sidecar whose
//! bytes depend only on the package, the applied adapters, the case file and this build.
//!
//! Above the engine: the runner drives [`Engine`] through its public API only (settings, generate,
//! read, identity), as a host would. The parts, in the order a run uses them:
//! - `json`: a small JSON reader that accepts exactly the documented shapes (no serde; typed errors,
//!   named caps, duplicate keys rejected);
//! - `cases`: the case file's lines as a [`Suite`] (unknown keys rejected);
//! - `runner`: every case on the engine, with the host's settings put back afterwards;
//! - `sidecar`: the canonical writer (fixed key order, fixed escaping, no floats: the quality
//!   boundary is echoed as the literal the case file wrote).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::engine::Engine;
use crate::error::{oom, Result};

mod cases;
mod json;
mod runner;
mod sidecar;

pub use cases::parse_suite;
pub use runner::{chat_case_prompt, run_suite, CaseResult};
pub use sidecar::{push_json_string, write_sidecar};

/// Caps on a case file (checked before anything is run).
pub const MAX_CASE_FILE_BYTES: usize = 1 << 20;
pub const MAX_CASES: usize = 512;
pub const MAX_ID_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_PROMPT_LEN: usize = 8192;
pub const MAX_EXPECTED_LEN: usize = 8192;
pub const MAX_CASE_TOKENS: u32 = 1024;

pub const EVALUATOR_NAME: &str = "tinyrustlm-eval";
pub const EVALUATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const SIDECAR_SCHEMA: &str = "tinyrustlm-eval-sidecar/1";
/// Identifies the runtime build in every sidecar: crate version plus `TRL_BUILD_ID` when the build
/// sets it (a release tag or commit), else `dev`.
pub const RUNTIME_BUILD_ID: &str = match option_env!("TRL_BUILD_ID") {
    Some(id) => id,
    None => "dev",
};
/// Chat cases use SmolLM2's default system prompt unless the header sets `system`.
pub const DEFAULT_SYSTEM: &str = crate::tokenizer::chat::SMOLLM2_DEFAULT_SYSTEM;

/// How produced text is compared with `expected`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchRule {
    Exact,
    /// Both sides with leading and trailing Unicode whitespace removed.
    Trim,
    /// The produced text starts with `expected`.
    Prefix,
}

impl MatchRule {
    pub fn name(self) -> &'static str {
        match self {
            MatchRule::Exact => "exact",
            MatchRule::Trim => "trim",
            MatchRule::Prefix => "prefix",
        }
    }

    pub fn matches(self, produced: &str, expected: &str) -> bool {
        match self {
            MatchRule::Exact => produced == expected,
            MatchRule::Trim => produced.trim() == expected.trim(),
            MatchRule::Prefix => produced.starts_with(expected),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub id: String,
    pub prompt: String,
    pub chat: bool,
    pub expected: String,
    pub rule: MatchRule,
    pub max_tokens: u32,
    pub stop: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    pub name: String,
    pub version: String,
    /// The JSON number literal as written (validated to lie in [0, 1]).
    pub min_pass_rate_text: String,
    pub min_pass_rate: f64,
    pub system: String,
    pub cases: Vec<Case>,
    pub cases_crc: u32,
}

/// Whether the suite's quality boundary is met: `passed / n_cases >= min_pass_rate`.
pub fn boundary_met(suite: &Suite, n_passed: usize) -> bool {
    n_passed as f64 >= suite.min_pass_rate * suite.cases.len() as f64
}

/// Parse, run, write, keep: what the `run_eval` export does. The sidecar is kept by the engine for
/// `ResultKind::EvalSidecar`; on error the previous one stays. A malformed file changes nothing;
/// once cases run, the conversation is forgotten (the host's sampling and stop strings are kept).
pub fn run(engine: &mut Engine, cases: &[u8]) -> Result<()> {
    // First, so that without a model the answer is WRONG_STATE whatever the file holds.
    let identity = engine.identity()?;
    let suite = parse_suite(cases)?;
    let results = run_suite(engine, &suite)?;
    let source = if cfg!(target_arch = "wasm32") { "wasm" } else { "native" };
    let sidecar = write_sidecar(&identity, &suite, &results, source)?;
    engine.keep_eval_sidecar(sidecar.into_bytes());
    Ok(())
}

// ---- Allocation that reports instead of trapping ----------------------------------------------

fn try_push<T>(v: &mut Vec<T>, item: T, what: &'static str) -> Result<()> {
    v.try_reserve(1).map_err(|_| oom(what, core::mem::size_of::<T>()))?;
    v.push(item);
    Ok(())
}

fn try_string(s: &str, what: &'static str) -> Result<String> {
    let mut out = String::new();
    out.try_reserve_exact(s.len()).map_err(|_| oom(what, s.len()))?;
    out.push_str(s);
    Ok(out)
}

/// A `fmt::Write` sink whose growth is fallible (`fmt::Error` means out of memory).
struct TryWriter(String);

impl fmt::Write for TryWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.try_reserve(s.len()).map_err(|_| fmt::Error)?;
        self.0.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_rules() {
        assert!(MatchRule::Exact.matches("4", "4") && !MatchRule::Exact.matches(" 4", "4"));
        assert!(MatchRule::Trim.matches(" 4\n", "4"));
        assert!(MatchRule::Prefix.matches("Paris is", "Paris") && !MatchRule::Prefix.matches("The", "Paris"));
    }
}
