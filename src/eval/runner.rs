//! Runs a parsed suite on the engine through its public API, as a host would: the host's settings
//! are taken out for the run and put back after it, each case's text is read as a result.

use alloc::string::String;
use alloc::vec::Vec;

use super::{oom, Suite};
use crate::engine::{Engine, ResultKind, Settings, GEN_PARSE_SPECIAL};
use crate::error::Result;
use crate::tokenizer::chat::{self, ChatMessage, CHAT_ADD_GENERATION_PROMPT};
use crate::tokenizer::ChatTemplate;

/// What one case produced.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    pub passed: bool,
    pub produced: String,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub stop_reason: u32,
}

/// The prompt a chat case sends: one user turn after the suite's system prompt, in ChatML whatever
/// the package's own template (FORMAT.md "Eval cases and sidecars" defines `chat` so, which keeps a case file's
/// meaning independent of the package it runs on).
pub fn chat_case_prompt(system: &str, user: &str) -> Result<Vec<u8>> {
    let turns = [ChatMessage { role: "system", content: system }, ChatMessage { role: "user", content: user }];
    chat::render(ChatTemplate::ChatMl, &turns, None, CHAT_ADD_GENERATION_PROMPT)
}

/// Runs a parsed suite: greedy decoding, the case's stop strings only, a fresh conversation per
/// case. The host's sampling settings and stop strings are put back afterwards and the
/// conversation is forgotten.
pub fn run_suite(engine: &mut Engine, suite: &Suite) -> Result<Vec<CaseResult>> {
    // Default settings: greedy, no stop strings.
    let host_settings = engine.replace_settings(Settings::default());
    let r = run_cases(engine, suite);
    engine.replace_settings(host_settings);
    let _ = engine.reset();
    r
}

fn run_cases(engine: &mut Engine, suite: &Suite) -> Result<Vec<CaseResult>> {
    let mut results = Vec::new();
    results.try_reserve_exact(suite.cases.len()).map_err(|_| oom("results", suite.cases.len() * core::mem::size_of::<CaseResult>()))?;
    for case in &suite.cases {
        engine.clear_stop_strings();
        for s in &case.stop {
            engine.add_stop_string(s.as_bytes())?;
        }
        engine.reset()?;
        if case.chat {
            engine.generate(&chat_case_prompt(&suite.system, &case.prompt)?, case.max_tokens, GEN_PARSE_SPECIAL)?;
        } else {
            engine.generate(case.prompt.as_bytes(), case.max_tokens, GEN_PARSE_SPECIAL)?;
        }
        let produced = produced_text(engine)?;
        let d = engine.diagnostics(0);
        let (_, stop_reason) = engine.state();
        // Within the room reserved above.
        results.push(CaseResult {
            passed: case.rule.matches(&produced, &case.expected),
            produced,
            prompt_tokens: d.prompt_tokens,
            generated_tokens: d.generated_tokens,
            stop_reason: stop_reason as u32,
        });
    }
    Ok(results)
}

/// Bytes asked for per `read_result(TEXT)`; any size of at least one character (4 bytes) reads all.
const TEXT_CHUNK: usize = 1024;

/// All text of the finished generation (a finished generation has released all of it).
fn produced_text(engine: &mut Engine) -> Result<String> {
    let mut text = Vec::new();
    let mut chunk = [0u8; TEXT_CHUNK];
    loop {
        let n = engine.read(ResultKind::Text, &mut chunk).map_err(|(e, _)| e)?;
        if n == 0 {
            break;
        }
        text.try_reserve(n).map_err(|_| oom("produced", text.len() + n))?;
        text.extend_from_slice(&chunk[..n]);
    }
    // The stream decoder only ever emits whole characters, so this is the text unchanged.
    match String::from_utf8(text) {
        Ok(s) => Ok(s),
        // Only a host's byte-level stop string can cut a character; eval stop strings are text.
        Err(e) => lossy_utf8(e.as_bytes()),
    }
}

/// `String::from_utf8_lossy` with its allocation checked: each invalid sequence becomes U+FFFD.
fn lossy_utf8(bytes: &[u8]) -> Result<String> {
    let replacement = |invalid: &[u8]| if invalid.is_empty() { 0 } else { char::REPLACEMENT_CHARACTER.len_utf8() };
    let len = bytes.utf8_chunks().map(|c| c.valid().len() + replacement(c.invalid())).sum();
    let mut out = String::new();
    out.try_reserve_exact(len).map_err(|_| oom("produced", len))?;
    for c in bytes.utf8_chunks() {
        out.push_str(c.valid());
        if !c.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lossy_utf8_is_the_standard_conversion() {
        for bytes in [&b"plain"[..], b"", b"\xff", b"a\xe2\x82b", b"\xe2\x82\xac\xf0\x9f", b"\xc3\xa9\x80\x80z"] {
            assert_eq!(lossy_utf8(bytes).unwrap(), String::from_utf8_lossy(bytes), "{bytes:?}");
        }
    }

    #[test]
    fn chat_case_prompt_is_the_documented_wrapping() {
        // FORMAT.md "Eval cases and sidecars", `chat`.
        let p = chat_case_prompt("S", "2+2=").unwrap();
        assert_eq!(p, b"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n2+2=<|im_end|>\n<|im_start|>assistant\n");
    }
}
