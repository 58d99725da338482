//! The case file (FORMAT.md "Eval cases and sidecars"): a header line, then one case per line, each read by the
//! JSON reader and then consumed field by field, so an unknown key is reported by name.

use alloc::string::String;
use alloc::vec::Vec;

use super::json::{parse_line, Value};
use super::{oom, try_push, try_string, Case, MatchRule, Suite};
use super::{DEFAULT_SYSTEM, MAX_CASES, MAX_CASE_FILE_BYTES, MAX_CASE_TOKENS, MAX_EXPECTED_LEN, MAX_ID_LEN, MAX_NAME_LEN, MAX_PROMPT_LEN};
use crate::engine::{MAX_STOP_STRINGS, MAX_STOP_STRING_LEN};
use crate::error::{Error, Result, Status};
use crate::field;

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
            Some((k, _)) => Err(Error::new(
                Status::EvalUnknownField,
                field!("line {} {}", self.line, k),
                self.line as u64,
                "not a field of this line (see FORMAT.md \"Eval cases\")",
            )),
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
                _ => {
                    return Err(Error::new(
                        Status::EvalBadMatchRule,
                        field!("line {} match {}", line_no, s),
                        line_no as u64,
                        "must be \"exact\", \"trim\" or \"prefix\"",
                    ))
                }
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
}
