//! A JSON reader for one line of a case file: exactly RFC 8259 values, nested at most
//! [`MAX_DEPTH`] deep, duplicate keys rejected, every string and number kept as text.

use alloc::string::String;
use alloc::vec::Vec;

use super::{oom, try_push, try_string};
use crate::error::{Error, Result, Status};
use crate::field;

/// Nesting inside a line: the line's object and, in it, the `stop` array.
const MAX_DEPTH: usize = 2;

#[derive(Clone, Debug, PartialEq)]
pub(super) enum Value {
    Null,
    Bool(bool),
    /// The literal, grammar-checked.
    Number(String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
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
            b'{' | b'[' if depth >= MAX_DEPTH => Err(Error::new(
                Status::EvalLimitExceeded,
                field!("line {} nesting", self.line),
                depth as u64 + 1,
                "at most 2 levels (an object holding the stop array)",
            )),
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
                        return Err(Error::new(
                            Status::EvalDuplicateField,
                            field!("line {} key {}", self.line, key),
                            self.line as u64,
                            "each key at most once",
                        ));
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

/// One line as the key-value pairs of its object, in the order written.
pub(super) fn parse_line(line: &[u8], line_no: usize) -> Result<Vec<(String, Value)>> {
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
