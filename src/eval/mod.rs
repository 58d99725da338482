//! Exact-match evals inside the module: parse a frozen case file (JSONL, documented in
//! `abi/FORMAT.md` "Eval cases and sidecars"), run every case greedily, and write a sidecar whose
//! bytes depend only on the package, the applied adapters, the case file and this build.
//!
//! No serde: a small JSON reader that accepts exactly the documented shapes (typed errors, named
//! caps, duplicate and unknown keys rejected) and a canonical writer (fixed key order, fixed escaping,
//! no floats: the quality boundary is echoed as the literal the case file wrote).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::engine::{Engine, MAX_STOP_STRINGS, MAX_STOP_STRING_LEN};
use crate::error::{Error, Result, Status};
use crate::field;

/// Caps on a case file (checked before anything is run).
pub const MAX_CASE_FILE_BYTES: usize = 1 << 20;
pub const MAX_CASES: usize = 512;
pub const MAX_ID_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 128;
pub const MAX_PROMPT_LEN: usize = 8192;
pub const MAX_EXPECTED_LEN: usize = 8192;
pub const MAX_CASE_TOKENS: u32 = 1024;
/// Nesting inside a line: the line's object and, in it, the `stop` array.
const MAX_DEPTH: usize = 2;

pub const EVALUATOR_NAME: &str = "tinyrustlm-eval";
pub const EVALUATOR_VERSION: &str = env!("CARGO_PKG_VERSION");
pub const SIDECAR_SCHEMA: &str = "tinyrustlm-eval-sidecar/1";
/// Identifies the runtime build in every sidecar: crate version plus `TRL_BUILD_ID` when the build
/// sets it (a release tag or commit), else `dev`.
pub const RUNTIME_BUILD_ID: &str = match option_env!("TRL_BUILD_ID") {
    Some(id) => id,
    None => "dev",
};
/// SmolLM2's default system prompt; chat cases use it unless the header sets `system`.
pub const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

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

// ---- JSON reader (one line at a time) ---------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    /// The literal, grammar-checked.
    Number(String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

/// Allocation failures while reading or running a suite are statuses, not traps: the host may have
/// capped memory (see FORMAT.md "Resource caps").
fn oom(what: &'static str, bytes: usize) -> Error {
    Error::new(Status::OutOfMemory, what, bytes as u64, "allocation failed (bytes requested)")
}

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

struct Json<'a> {
    b: &'a [u8],
    at: usize,
    line: usize,
}

impl<'a> Json<'a> {
    fn err(&self, rule: &'static str) -> Error {
        Error::new(Status::EvalBadJson, field!("line {} column", self.line), (self.at + 1) as u64, rule)
    }

    fn ws(&mut self) {
        while self.at < self.b.len() && matches!(self.b[self.at], b' ' | b'\t' | b'\r') {
            self.at += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.b[self.at..].starts_with(lit) {
            self.at += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        self.ws();
        let Some(&c) = self.b.get(self.at) else { return Err(self.err("unexpected end of line")) };
        match c {
            b'{' | b'[' if depth >= MAX_DEPTH => Err(Error::new(Status::EvalLimitExceeded, field!("line {} nesting", self.line), depth as u64 + 1, "at most 2 levels (an object holding the stop array)")),
            b'{' => {
                self.at += 1;
                let mut fields: Vec<(String, Value)> = Vec::new();
                self.ws();
                if self.eat(b"}") {
                    return Ok(Value::Object(fields));
                }
                loop {
                    self.ws();
                    if self.b.get(self.at) != Some(&b'"') {
                        return Err(self.err("expected a key string"));
                    }
                    let key = self.string()?;
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(Error::new(Status::EvalDuplicateField, field!("line {} key {}", self.line, key), self.line as u64, "each key at most once"));
                    }
                    self.ws();
                    if !self.eat(b":") {
                        return Err(self.err("expected ':'"));
                    }
                    let v = self.value(depth + 1)?;
                    try_push(&mut fields, (key, v), "cases.json")?;
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"}") {
                        return Ok(Value::Object(fields));
                    }
                    return Err(self.err("expected ',' or '}'"));
                }
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat(b"]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    let v = self.value(depth + 1)?;
                    try_push(&mut items, v, "cases.json")?;
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"]") {
                        return Ok(Value::Array(items));
                    }
                    return Err(self.err("expected ',' or ']'"));
                }
            }
            b'"' => Ok(Value::Str(self.string()?)),
            b't' if self.eat(b"true") => Ok(Value::Bool(true)),
            b'f' if self.eat(b"false") => Ok(Value::Bool(false)),
            b'n' if self.eat(b"null") => Ok(Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(self.err("expected a JSON value")),
        }
    }

    /// RFC 8259 number grammar; the literal is kept as text.
    fn number(&mut self) -> Result<Value> {
        let start = self.at;
        let digits = |s: &mut Self| {
            let from = s.at;
            while s.at < s.b.len() && s.b[s.at].is_ascii_digit() {
                s.at += 1;
            }
            s.at - from
        };
        self.eat(b"-");
        if self.eat(b"0") {
        } else if digits(self) == 0 {
            return Err(self.err("bad number"));
        }
        if self.eat(b".") && digits(self) == 0 {
            return Err(self.err("bad number: digits must follow '.'"));
        }
        if self.eat(b"e") || self.eat(b"E") {
            let _ = self.eat(b"+") || self.eat(b"-");
            if digits(self) == 0 {
                return Err(self.err("bad number: digits must follow the exponent"));
            }
        }
        // ASCII by construction.
        Ok(Value::Number(try_string(core::str::from_utf8(&self.b[start..self.at]).unwrap_or(""), "cases.json")?))
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self.b.get(self.at..self.at + 4).ok_or_else(|| self.err("\\u needs 4 hex digits"))?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + (c as char).to_digit(16).ok_or_else(|| self.err("\\u needs 4 hex digits"))?;
        }
        self.at += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        self.at += 1; // opening quote
        // Escapes only shrink text, so the raw length up to the closing quote bounds the result.
        let mut raw_len = 0;
        while let Some(&c) = self.b.get(self.at + raw_len) {
            match c {
                b'"' => break,
                b'\\' => raw_len += 2,
                _ => raw_len += 1,
            }
        }
        let mut out: Vec<u8> = Vec::new();
        out.try_reserve_exact(raw_len).map_err(|_| oom("cases.json", raw_len))?;
        loop {
            let Some(&c) = self.b.get(self.at) else { return Err(self.err("unterminated string")) };
            self.at += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.b.get(self.at) else { return Err(self.err("unterminated escape")) };
                    self.at += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !self.eat(b"\\u") {
                                    return Err(self.err("a high surrogate must be followed by \\u low surrogate"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("bad low surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("lone surrogate escape"))?
                        }
                        _ => return Err(self.err("unknown escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1F => return Err(self.err("control characters must be escaped")),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("strings must be UTF-8"))
    }
}

fn parse_line(line: &[u8], line_no: usize) -> Result<Vec<(String, Value)>> {
    let mut j = Json { b: line, at: 0, line: line_no };
    let v = j.value(0)?;
    j.ws();
    if j.at != line.len() {
        return Err(j.err("trailing characters after the object"));
    }
    match v {
        Value::Object(fields) => Ok(fields),
        _ => Err(j.err("each line must be one JSON object")),
    }
}

// ---- Typed fields ------------------------------------------------------------------------------

/// The fields of one line, consumed by name; what is left over is an unknown key.
struct Fields {
    line: usize,
    fields: Vec<(String, Value)>,
    status: Status,
}

impl Fields {
    fn bad(&self, key: &str, rule: &'static str) -> Error {
        Error::new(self.status, field!("line {} {}", self.line, key), self.line as u64, rule)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(i).1)
    }

    fn string(&mut self, key: &str, required: bool, max: usize, rule: &'static str) -> Result<Option<String>> {
        match self.take(key) {
            None if required => Err(self.bad(key, "is required")),
            None => Ok(None),
            Some(Value::Str(s)) if s.len() <= max => Ok(Some(s)),
            Some(Value::Str(s)) => Err(Error::new(Status::EvalLimitExceeded, field!("line {} {}", self.line, key), s.len() as u64, rule)),
            Some(_) => Err(self.bad(key, "must be a string")),
        }
    }

    fn done(self) -> Result<()> {
        match self.fields.first() {
            Some((k, _)) => Err(Error::new(Status::EvalUnknownField, field!("line {} {}", self.line, k), self.line as u64, "not a field of this line (see FORMAT.md \"Eval cases\")")),
            None => Ok(()),
        }
    }
}

/// Parses and checks a whole case file; nothing is run.
pub fn parse_suite(bytes: &[u8]) -> Result<Suite> {
    if bytes.len() > MAX_CASE_FILE_BYTES {
        return Err(Error::new(Status::EvalLimitExceeded, "cases.bytes", bytes.len() as u64, "a case file is at most 1 MiB"));
    }
    let mut lines = bytes.split(|&c| c == b'\n').enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| l.iter().any(|c| !matches!(c, b' ' | b'\t' | b'\r')));
    let Some((header_line, header)) = lines.next() else {
        return Err(Error::new(Status::EvalBadHeader, "header", 0, "the file must start with a header line"));
    };
    let mut h = Fields { line: header_line, fields: parse_line(header, header_line)?, status: Status::EvalBadHeader };
    let name = h.string("suite", true, MAX_NAME_LEN, "at most 128 bytes")?.unwrap_or_default();
    if name.is_empty() {
        return Err(h.bad("suite", "must not be empty"));
    }
    let version = h.string("version", true, MAX_NAME_LEN, "at most 128 bytes")?.unwrap_or_default();
    let (min_pass_rate_text, min_pass_rate) = match h.take("min_pass_rate") {
        Some(Value::Number(text)) => match text.parse::<f64>() {
            Ok(x) if (0.0..=1.0).contains(&x) => (text, x),
            _ => return Err(h.bad("min_pass_rate", "must be a number in [0, 1]")),
        },
        Some(_) => return Err(h.bad("min_pass_rate", "must be a number in [0, 1]")),
        None => return Err(h.bad("min_pass_rate", "is required")),
    };
    let system = match h.string("system", false, MAX_PROMPT_LEN, "at most 8192 bytes")? {
        Some(s) => s,
        None => try_string(DEFAULT_SYSTEM, "suite.system")?,
    };
    h.done()?;

    let mut cases: Vec<Case> = Vec::new();
    for (line_no, line) in lines {
        if cases.len() >= MAX_CASES {
            return Err(Error::new(Status::EvalLimitExceeded, field!("line {} cases", line_no), cases.len() as u64 + 1, "at most 512 cases"));
        }
        let mut f = Fields { line: line_no, fields: parse_line(line, line_no)?, status: Status::EvalBadCase };
        let id = f.string("id", true, MAX_ID_LEN, "at most 64 bytes")?.unwrap_or_default();
        if id.is_empty() {
            return Err(f.bad("id", "must not be empty"));
        }
        if cases.iter().any(|c| c.id == id) {
            return Err(Error::new(Status::EvalDuplicateId, field!("line {} id {}", line_no, id), line_no as u64, "case ids must be unique"));
        }
        let prompt = f.string("prompt", true, MAX_PROMPT_LEN, "at most 8192 bytes")?.unwrap_or_default();
        let expected = f.string("expected", true, MAX_EXPECTED_LEN, "at most 8192 bytes")?.unwrap_or_default();
        let chat = match f.take("chat") {
            None => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err(f.bad("chat", "must be true or false")),
        };
        let rule = match f.take("match") {
            None => MatchRule::Exact,
            Some(Value::Str(s)) => match s.as_str() {
                "exact" => MatchRule::Exact,
                "trim" => MatchRule::Trim,
                "prefix" => MatchRule::Prefix,
                _ => return Err(Error::new(Status::EvalBadMatchRule, field!("line {} match {}", line_no, s), line_no as u64, "must be \"exact\", \"trim\" or \"prefix\"")),
            },
            Some(_) => return Err(f.bad("match", "must be a string")),
        };
        let max_tokens = match f.take("max_tokens") {
            Some(Value::Number(t)) => match t.parse::<u32>() {
                Ok(n) if (1..=MAX_CASE_TOKENS).contains(&n) => n,
                _ => return Err(f.bad("max_tokens", "must be an integer in 1..=1024")),
            },
            Some(_) => return Err(f.bad("max_tokens", "must be an integer in 1..=1024")),
            None => return Err(f.bad("max_tokens", "is required")),
        };
        let stop = match f.take("stop") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > MAX_STOP_STRINGS {
                    return Err(Error::new(Status::EvalLimitExceeded, field!("line {} stop", line_no), items.len() as u64, "at most 8 stop strings"));
                }
                let mut out = Vec::new();
                out.try_reserve_exact(items.len()).map_err(|_| oom("cases.stop", items.len()))?;
                for item in items {
                    match item {
                        Value::Str(s) if !s.is_empty() && s.len() <= MAX_STOP_STRING_LEN => out.push(s),
                        _ => return Err(f.bad("stop", "must be strings of 1..=64 bytes")),
                    }
                }
                out
            }
            Some(_) => return Err(f.bad("stop", "must be an array of strings")),
        };
        f.done()?;
        try_push(&mut cases, Case { id, prompt, chat, expected, rule, max_tokens, stop }, "cases")?;
    }
    if cases.is_empty() {
        return Err(Error::new(Status::EvalNoCases, "cases", 0, "a suite needs at least one case"));
    }
    Ok(Suite { name, version, min_pass_rate_text, min_pass_rate, system, cases, cases_crc: crc32fast::hash(bytes) })
}

/// The prompt a chat case sends: ChatML with the suite's system prompt, as SmolLM2's template
/// renders one user turn.
///
/// Out of memory is a status, as everywhere in the runtime.
pub fn chatml(system: &str, user: &str) -> Result<String> {
    let mut w = TryWriter(String::new());
    let len = CHATML_OVERHEAD + system.len() + user.len();
    w.0.try_reserve_exact(len).map_err(|_| oom("prompt", len))?;
    fmt::write(&mut w, format_args!("<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")).map_err(|_| oom("prompt", len))?;
    Ok(w.0)
}

/// Bytes [`chatml`] adds around the system and user text.
const CHATML_OVERHEAD: usize = 80;

// ---- Runner ------------------------------------------------------------------------------------

/// What one case produced.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    pub passed: bool,
    pub produced: String,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub stop_reason: u32,
}

/// Who and what was evaluated (filled in by the engine).
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    pub n_params: u64,
    pub tensor_layout_crc: u32,
    pub tokenizer_crc: u32,
    pub artifact_crc: u32,
    pub quant_mode: &'static str,
    pub adapter_digests: Vec<u32>,
    pub assembly_state_crc: u32,
}

/// Runs a parsed suite: greedy decoding, the case's stop strings only, a fresh conversation per
/// case. The engine's sampling settings and stop strings are restored afterwards and the
/// conversation is forgotten.
pub fn run_suite(engine: &mut Engine, suite: &Suite) -> Result<Vec<CaseResult>> {
    let saved_sampling = *engine.sampling();
    let saved_stops = engine.take_stop_strings();
    let r = run_cases(engine, suite);
    engine.restore_eval_settings(saved_sampling, saved_stops);
    let _ = engine.reset();
    r
}

fn run_cases(engine: &mut Engine, suite: &Suite) -> Result<Vec<CaseResult>> {
    engine.set_sampling(crate::sampler::SamplingParams::default())?;
    let mut results = Vec::new();
    results.try_reserve_exact(suite.cases.len()).map_err(|_| oom("results", suite.cases.len() * core::mem::size_of::<CaseResult>()))?;
    for case in &suite.cases {
        engine.clear_stop_strings();
        for s in &case.stop {
            engine.add_stop_string(s.as_bytes())?;
        }
        engine.reset()?;
        let prompt = if case.chat { chatml(&suite.system, &case.prompt)? } else { try_string(&case.prompt, "prompt")? };
        engine.generate(prompt.as_bytes(), case.max_tokens, crate::engine::GEN_PARSE_SPECIAL)?;
        // The stream decoder only ever emits whole characters, so this is the text unchanged.
        let produced = match core::str::from_utf8(engine.finished_text()) {
            Ok(text) => try_string(text, "produced")?,
            // Only a host's byte-level stop string can cut a character; eval stop strings are text.
            Err(_) => String::from_utf8_lossy(engine.finished_text()).into_owned(),
        };
        let d = engine.diagnostics(0);
        let (_, stop_reason) = engine.state();
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

/// Whether the suite's quality boundary is met: `passed / n_cases >= min_pass_rate`.
pub fn boundary_met(suite: &Suite, n_passed: usize) -> bool {
    n_passed as f64 >= suite.min_pass_rate * suite.cases.len() as f64
}

// ---- Sidecar writer ----------------------------------------------------------------------------

/// A JSON string literal: `"` and `\` escaped, `\n` `\r` `\t` short, other controls as `\u00XX`,
/// everything else (including non-ASCII) as UTF-8.
pub fn push_json_string<W: fmt::Write>(out: &mut W, s: &str) -> fmt::Result {
    out.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\u{:04x}", c as u32)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

fn hex<W: fmt::Write>(out: &mut W, v: u32) -> fmt::Result {
    write!(out, "\"{v:08x}\"")
}

/// The sidecar, canonical: fixed key order (as listed in FORMAT.md), no whitespace except a newline
/// after each case and at the end, CRCs as 8 lower-case hex digits.
///
/// Out of memory is a status (the sidecar of a full suite can be megabytes).
pub fn write_sidecar(id: &Identity, suite: &Suite, results: &[CaseResult], source: &str) -> Result<String> {
    let mut o = TryWriter(String::new());
    sidecar_json(&mut o, id, suite, results, source).map_err(|_| oom("sidecar", o.0.len().saturating_mul(2)))?;
    Ok(o.0)
}

fn sidecar_json<W: fmt::Write>(o: &mut W, id: &Identity, suite: &Suite, results: &[CaseResult], source: &str) -> fmt::Result {
    o.write_str("{\"schema\":")?;
    push_json_string(o, SIDECAR_SCHEMA)?;
    o.write_str(",\"evaluator\":{\"name\":")?;
    push_json_string(o, EVALUATOR_NAME)?;
    o.write_str(",\"version\":")?;
    push_json_string(o, EVALUATOR_VERSION)?;
    o.write_str("},\"runtime_build\":")?;
    // Both parts are ASCII letters, digits and dots: nothing to escape.
    write!(o, "\"tinyrustlm/{}+{}\"", env!("CARGO_PKG_VERSION"), RUNTIME_BUILD_ID)?;
    o.write_str(",\"source\":")?;
    push_json_string(o, source)?;
    write!(o, ",\"model\":{{\"n_params\":{},\"tensor_layout_crc\":", id.n_params)?;
    hex(o, id.tensor_layout_crc)?;
    o.write_str(",\"tokenizer_crc\":")?;
    hex(o, id.tokenizer_crc)?;
    o.write_str(",\"artifact_crc\":")?;
    hex(o, id.artifact_crc)?;
    o.write_str(",\"quant_mode\":")?;
    push_json_string(o, id.quant_mode)?;
    o.write_str("},\"adapters\":[")?;
    for (i, d) in id.adapter_digests.iter().enumerate() {
        if i > 0 {
            o.write_char(',')?;
        }
        hex(o, *d)?;
    }
    o.write_str("],\"assembly_state_crc\":")?;
    hex(o, id.assembly_state_crc)?;
    o.write_str(",\"suite\":{\"name\":")?;
    push_json_string(o, &suite.name)?;
    o.write_str(",\"version\":")?;
    push_json_string(o, &suite.version)?;
    o.write_str(",\"cases_crc\":")?;
    hex(o, suite.cases_crc)?;
    writeln!(o, ",\"n_cases\":{}}},\"decoding\":\"greedy\",\"cases\":[", suite.cases.len())?;
    for (i, (case, r)) in suite.cases.iter().zip(results).enumerate() {
        o.write_str("{\"id\":")?;
        push_json_string(o, &case.id)?;
        write!(o, ",\"passed\":{},\"match\":", r.passed)?;
        push_json_string(o, case.rule.name())?;
        o.write_str(",\"expected\":")?;
        push_json_string(o, &case.expected)?;
        o.write_str(",\"produced\":")?;
        push_json_string(o, &r.produced)?;
        write!(o, ",\"prompt_tokens\":{},\"generated_tokens\":{},\"stop_reason\":{}}}", r.prompt_tokens, r.generated_tokens, r.stop_reason)?;
        o.write_str(if i + 1 < results.len() { ",\n" } else { "\n" })?;
    }
    let n_passed = results.iter().filter(|r| r.passed).count();
    writeln!(o, "],\"totals\":{{\"cases\":{},\"passed\":{},\"failed\":{}}},\"quality_boundary\":{{\"min_pass_rate\":{},\"met\":{}}}}}", results.len(), n_passed, results.len() - n_passed, suite.min_pass_rate_text, boundary_met(suite, n_passed))?;
    Ok(())
}

/// Parse, run, write: what the `run_eval` export does.
pub fn run(engine: &mut Engine, cases: &[u8]) -> Result<Vec<u8>> {
    let suite = parse_suite(cases)?;
    let id = engine.eval_identity()?;
    let results = run_suite(engine, &suite)?;
    let source = if cfg!(target_arch = "wasm32") { "wasm" } else { "native" };
    Ok(write_sidecar(&id, &suite, &results, source)?.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "{\"suite\":\"s\",\"version\":\"1\",\"min_pass_rate\":0.5}\n";

    fn with_case(case: &str) -> Vec<u8> {
        format!("{HEADER}{case}\n").into_bytes()
    }

    fn status(bytes: &[u8]) -> Status {
        parse_suite(bytes).unwrap_err().status
    }

    #[test]
    fn parses_a_documented_case() {
        let s = parse_suite(&with_case(r#"{"id":"a","prompt":"2+2=","chat":true,"expected":"4\u00e9","match":"trim","max_tokens":8,"stop":["\n"]}"#)).unwrap();
        assert_eq!(s.name, "s");
        assert_eq!(s.min_pass_rate_text, "0.5");
        let c = &s.cases[0];
        assert_eq!((c.id.as_str(), c.chat, c.expected.as_str(), c.rule, c.max_tokens), ("a", true, "4é", MatchRule::Trim, 8));
        assert_eq!(c.stop, ["\n"]);
    }

    #[test]
    fn every_rejection_has_its_status() {
        let case = |extra: &str| with_case(&format!(r#"{{"id":"a","prompt":"p","expected":"e","max_tokens":4{extra}}}"#));
        assert_eq!(status(b""), Status::EvalBadHeader);
        assert_eq!(status(b"{\"suite\":\"s\",\"version\":\"1\"}\n"), Status::EvalBadHeader);
        assert_eq!(status(b"{\"suite\":\"s\",\"version\":\"1\",\"min_pass_rate\":1.5}\n"), Status::EvalBadHeader);
        assert_eq!(status(HEADER.as_bytes()), Status::EvalNoCases);
        assert_eq!(status(&with_case("{\"id\":")), Status::EvalBadJson);
        assert_eq!(status(&with_case("[1]")), Status::EvalBadJson);
        assert_eq!(status(&with_case(r#"{"id":"a","id":"b"}"#)), Status::EvalDuplicateField);
        assert_eq!(status(&case(",\"colour\":1")), Status::EvalUnknownField);
        assert_eq!(status(&case(",\"match\":\"fuzzy\"")), Status::EvalBadMatchRule);
        assert_eq!(status(&case(",\"chat\":1")), Status::EvalBadCase);
        assert_eq!(status(&with_case(r#"{"id":"a","prompt":"p","expected":"e","max_tokens":0}"#)), Status::EvalBadCase);
        assert_eq!(status(&with_case(r#"{"id":"a","prompt":"p","expected":"e"}"#)), Status::EvalBadCase);
        assert_eq!(status(&case(",\"stop\":[[\"x\"]]")), Status::EvalLimitExceeded);
        let twice = format!("{HEADER}{0}\n{0}\n", r#"{"id":"a","prompt":"p","expected":"e","max_tokens":4}"#);
        assert_eq!(status(twice.as_bytes()), Status::EvalDuplicateId);
        assert_eq!(status(&vec![b' '; MAX_CASE_FILE_BYTES + 1]), Status::EvalLimitExceeded);
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let e = parse_suite(&with_case(r#"{"id":"a","prompt":"p","expected":"e","max_tokens":4,"match":"fuzzy"}"#)).unwrap_err();
        assert!(e.field.contains("line 2") && e.field.contains("match"), "{e}");
    }

    #[test]
    fn match_rules() {
        assert!(MatchRule::Exact.matches("4", "4") && !MatchRule::Exact.matches(" 4", "4"));
        assert!(MatchRule::Trim.matches(" 4\n", "4"));
        assert!(MatchRule::Prefix.matches("Paris is", "Paris") && !MatchRule::Prefix.matches("The", "Paris"));
    }

    #[test]
    fn json_strings_escape_canonically() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"\\\n\u{1}é").unwrap();
        assert_eq!(s, "\"a\\\"\\\\\\n\\u0001é\"");
    }
}
