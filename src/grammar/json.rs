//! A JSON reader for schemas: RFC 8259 values, nesting capped at [`MAX_JSON_DEPTH`], duplicate
//! keys refused, key order kept (a schema's `properties` order is the output's). The eval reader
//! (`crate::eval`) reads one case line with its own statuses and a nesting of two; schemas need
//! depth and their own errors, hence this one.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{Error, Result, Status};

/// JSON nesting a schema file may have (the schema's own nesting cap is lower, see
/// [`super::json_schema::MAX_SCHEMA_DEPTH`]; this bounds the reader's recursion).
pub const MAX_JSON_DEPTH: usize = 128;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// The value and the literal as written.
    Number(f64, String),
    Str(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as compact JSON text (for `const` and `enum` literals).
    pub fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(_, text) => out.push_str(text),
            Value::Str(s) => write_string(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// `s` as a JSON string literal (quotes, `\"`, `\\` and control characters escaped).
pub fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = core::fmt::write(out, format_args!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

fn bad(at: usize, rule: &'static str) -> Error {
    Error::new(Status::SchemaInvalid, "schema (byte offset)", at as u64, rule)
}

/// Parses one JSON value (surrounding whitespace allowed).
pub fn parse(bytes: &[u8]) -> Result<Value> {
    let mut r = Reader { b: bytes, at: 0 };
    let v = r.value(0)?;
    r.ws();
    if r.at != bytes.len() {
        return Err(bad(r.at, "text after the JSON value"));
    }
    Ok(v)
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.at < self.b.len() && matches!(self.b[self.at], b' ' | b'\t' | b'\r' | b'\n') {
            self.at += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        let ok = self.b[self.at..].starts_with(lit);
        if ok {
            self.at += lit.len();
        }
        ok
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        self.ws();
        let Some(&c) = self.b.get(self.at) else { return Err(bad(self.at, "unexpected end of the schema")) };
        if matches!(c, b'{' | b'[') && depth >= MAX_JSON_DEPTH {
            return Err(Error::new(Status::SchemaTooDeep, "schema (byte offset)", self.at as u64, "JSON nested deeper than 128 levels"));
        }
        match c {
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
                        return Err(bad(self.at, "expected a key string"));
                    }
                    let key_at = self.at;
                    let key = self.string()?;
                    if fields.iter().any(|(k, _)| *k == key) {
                        return Err(bad(key_at, "a key appears twice in one object"));
                    }
                    self.ws();
                    if !self.eat(b":") {
                        return Err(bad(self.at, "expected `:`"));
                    }
                    let v = self.value(depth + 1)?;
                    fields.push((key, v));
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"}") {
                        return Ok(Value::Object(fields));
                    }
                    return Err(bad(self.at, "expected `,` or `}`"));
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
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b",") {
                        continue;
                    }
                    if self.eat(b"]") {
                        return Ok(Value::Array(items));
                    }
                    return Err(bad(self.at, "expected `,` or `]`"));
                }
            }
            b'"' => Ok(Value::Str(self.string()?)),
            b't' if self.eat(b"true") => Ok(Value::Bool(true)),
            b'f' if self.eat(b"false") => Ok(Value::Bool(false)),
            b'n' if self.eat(b"null") => Ok(Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(bad(self.at, "expected a JSON value")),
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.at;
        let digits = |r: &mut Self| {
            let s = r.at;
            while r.at < r.b.len() && r.b[r.at].is_ascii_digit() {
                r.at += 1;
            }
            r.at - s
        };
        self.eat(b"-");
        let int_at = self.at;
        let n = digits(self);
        if n == 0 || (n > 1 && self.b[int_at] == b'0') {
            return Err(bad(start, "malformed number"));
        }
        if self.eat(b".") && digits(self) == 0 {
            return Err(bad(start, "malformed number"));
        }
        if self.b.get(self.at).is_some_and(|&c| c == b'e' || c == b'E') {
            self.at += 1;
            if !self.eat(b"+") {
                self.eat(b"-");
            }
            if digits(self) == 0 {
                return Err(bad(start, "malformed number"));
            }
        }
        // Only ASCII digits, signs, '.', 'e' were consumed.
        let text = core::str::from_utf8(&self.b[start..self.at]).map_err(|_| bad(start, "malformed number"))?;
        let v: f64 = text.parse().map_err(|_| bad(start, "malformed number"))?;
        Ok(Value::Number(v, String::from(text)))
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self.b.get(self.at..self.at + 4).ok_or_else(|| bad(self.at, "\\u needs 4 hex digits"))?;
        let h = core::str::from_utf8(h).map_err(|_| bad(self.at, "\\u needs 4 hex digits"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| bad(self.at, "\\u needs 4 hex digits"))?;
        self.at += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(&c) = self.b.get(self.at) else { return Err(bad(self.at, "unterminated string")) };
            match c {
                b'"' => {
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let e = self.b.get(self.at + 1).copied();
                    self.at += 2;
                    let ch = match e {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if !self.eat(b"\\u") {
                                    return Err(bad(self.at, "a high surrogate must be followed by a low one"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(bad(self.at, "a high surrogate must be followed by a low one"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| bad(self.at, "a lone surrogate escape"))?
                        }
                        _ => return Err(bad(self.at - 1, "unknown escape")),
                    };
                    out.push(ch);
                }
                0..=0x1F => return Err(bad(self.at, "control character inside a string")),
                _ => {
                    let len = match c {
                        0xC0..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF7 => 4,
                        _ => 1,
                    };
                    let s = self.b.get(self.at..self.at + len).and_then(|s| core::str::from_utf8(s).ok()).ok_or_else(|| bad(self.at, "invalid UTF-8"))?;
                    out.push_str(s);
                    self.at += len;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_values_and_refuses_bad_json() {
        let v = parse(br#" {"a": [1, -2.5e3, "x\u00e9\n"], "b": {"c": null, "d": true}} "#).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Value::Array(alloc::vec![Value::Number(1.0, "1".into()), Value::Number(-2500.0, "-2.5e3".into()), Value::Str("xé\n".into())]))
        );
        let mut s = String::new();
        v.write(&mut s);
        assert_eq!(s, r#"{"a":[1,-2.5e3,"xé\n"],"b":{"c":null,"d":true}}"#);
        for bad in [&b"{"[..], b"{\"a\":1,\"a\":2}", b"[01]", b"[1,]", b"\"\x01\"", b"1 2", b"{\"a\" 1}"] {
            assert_eq!(parse(bad).unwrap_err().status, Status::SchemaInvalid, "{}", String::from_utf8_lossy(bad));
        }
        let deep: Vec<u8> = core::iter::repeat_n(b'[', 200).collect();
        assert_eq!(parse(&deep).unwrap_err().status, Status::SchemaTooDeep);
    }
}
