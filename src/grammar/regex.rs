//! The regex subset of a JSON Schema `pattern`, translated into a GBNF expression for the
//! characters of a JSON string (so `"` and `\` come out escaped, as JSON needs them).
//!
//! Supported: literals; `.`; classes `[...]` / `[^...]` with ranges; `\d \w \s \D \W \S`; escaped
//! metacharacters and `\n \r \t`; groups `( )` and `(?: )`; alternation `|`; quantifiers `* + ?
//! {m} {m,} {m,n}` (a lazy `?` after one changes nothing for a whole match); `^` at the start and
//! `$` at the end. Anything else (backreferences, lookaround, `\b`, `\p{..}`, named groups) is
//! refused with SCHEMA_UNSUPPORTED naming the offset.
//!
//! The grammar generates whole matches of the pattern. JSON Schema only asks that the string
//! *contains* a match, so every generated string validates; anchors therefore need no rule. Where
//! the pattern allows a character JSON must escape, the escape is generated (`"`, `\`, newline,
//! tab, carriage return); other control characters are left out of classes (the language
//! shrinks, never grows).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::MAX_REPEAT;
use crate::error::{Error, Result, Status};
use crate::field;

struct Re<'a> {
    c: Vec<char>,
    at: usize,
    path: &'a str,
}

/// The GBNF expression (without the surrounding quotes) for strings matching `pattern`.
pub fn to_gbnf(pattern: &str, path: &str) -> Result<String> {
    let mut r = Re { c: pattern.chars().collect(), at: 0, path };
    if r.c.first() == Some(&'^') {
        r.at = 1;
    }
    let out = r.alternation()?;
    match r.c.get(r.at) {
        None => Ok(out),
        Some('$') if r.at + 1 == r.c.len() => Ok(out),
        Some(')') => Err(r.unsupported("unbalanced `)`")),
        Some(_) => Err(r.unsupported("`^` or `$` inside the pattern (only at its start and end)")),
    }
}

impl Re<'_> {
    fn unsupported(&self, rule: &'static str) -> Error {
        Error::new(Status::SchemaUnsupported, field!("{}.pattern (char offset)", self.path), self.at as u64, rule)
    }

    fn peek(&self) -> Option<char> {
        self.c.get(self.at).copied()
    }

    fn alternation(&mut self) -> Result<String> {
        let mut out = self.concat()?;
        while self.peek() == Some('|') {
            self.at += 1;
            out.push_str(" | ");
            out.push_str(&self.concat()?);
        }
        Ok(out)
    }

    fn concat(&mut self) -> Result<String> {
        let mut out = String::new();
        loop {
            let atom = match self.peek() {
                None | Some('|') | Some(')') => break,
                Some('$') if self.at + 1 == self.c.len() => break,
                Some('^') | Some('$') => return Err(self.unsupported("`^` or `$` inside the pattern (only at its start and end)")),
                Some('(') => {
                    self.at += 1;
                    if self.peek() == Some('?') {
                        if self.c.get(self.at + 1) == Some(&':') {
                            self.at += 2;
                        } else {
                            return Err(self.unsupported("lookaround and named groups are not supported (only `(?:`)"));
                        }
                    }
                    let inner = self.alternation()?;
                    if self.peek() != Some(')') {
                        return Err(self.unsupported("unclosed `(`"));
                    }
                    self.at += 1;
                    alloc::format!("({inner})")
                }
                Some('[') => {
                    self.at += 1;
                    let (ranges, negated) = self.class()?;
                    self.set(ranges, negated)?
                }
                Some('.') => {
                    self.at += 1;
                    self.set(alloc::vec![('\n' as u32, '\n' as u32)], true)?
                }
                Some('*' | '+' | '?' | '{') => return Err(self.unsupported("a quantifier with nothing before it")),
                Some('\\') => {
                    self.at += 1;
                    match self.escape()? {
                        Escape::Char(c) => literal(c),
                        Escape::Set(r, neg) => self.set(r, neg)?,
                    }
                }
                Some(c) => {
                    self.at += 1;
                    literal(c as u32)
                }
            };
            let quant = self.quantifier()?;
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&atom);
            out.push_str(&quant);
        }
        // An empty alternative: GBNF's empty sequence.
        if out.is_empty() {
            out.push_str("\"\"");
        }
        Ok(out)
    }

    fn quantifier(&mut self) -> Result<String> {
        let q = match self.peek() {
            Some(c @ ('*' | '+' | '?')) => {
                self.at += 1;
                String::from(c)
            }
            Some('{') => {
                self.at += 1;
                let num = |r: &mut Self| -> Result<Option<u32>> {
                    let s = r.at;
                    let mut n = 0u32;
                    while let Some(d) = r.peek().and_then(|c| c.to_digit(10)) {
                        n = n.saturating_mul(10).saturating_add(d);
                        r.at += 1;
                    }
                    if n > MAX_REPEAT {
                        return Err(r.unsupported("a repetition bound above 1024"));
                    }
                    Ok((r.at > s).then_some(n))
                };
                let min = num(self)?.ok_or_else(|| self.unsupported("`{` must start a quantifier {m}, {m,} or {m,n}"))?;
                let max = if self.peek() == Some(',') {
                    self.at += 1;
                    num(self)?
                } else {
                    Some(min)
                };
                if self.peek() != Some('}') || max.is_some_and(|m| m < min) {
                    return Err(self.unsupported("malformed quantifier (want {m}, {m,} or {m,n} with m <= n)"));
                }
                self.at += 1;
                match max {
                    Some(max) => alloc::format!("{{{min},{max}}}"),
                    None => alloc::format!("{{{min},}}"),
                }
            }
            _ => return Ok(String::new()),
        };
        // Lazy and greedy quantifiers match the same whole strings.
        if self.peek() == Some('?') {
            self.at += 1;
        }
        if matches!(self.peek(), Some('*' | '+' | '{')) {
            return Err(self.unsupported("a quantifier directly after a quantifier"));
        }
        Ok(q)
    }

    fn escape(&mut self) -> Result<Escape> {
        let Some(e) = self.peek() else { return Err(self.unsupported("the pattern ends with `\\`")) };
        self.at += 1;
        const DIGIT: &[(u32, u32)] = &[(48, 57)];
        const WORD: &[(u32, u32)] = &[(48, 57), (65, 90), (95, 95), (97, 122)];
        const SPACE: &[(u32, u32)] = &[(9, 13), (32, 32)];
        Ok(match e {
            'd' => Escape::Set(DIGIT.to_vec(), false),
            'D' => Escape::Set(DIGIT.to_vec(), true),
            'w' => Escape::Set(WORD.to_vec(), false),
            'W' => Escape::Set(WORD.to_vec(), true),
            's' => Escape::Set(SPACE.to_vec(), false),
            'S' => Escape::Set(SPACE.to_vec(), true),
            'n' => Escape::Char(10),
            'r' => Escape::Char(13),
            't' => Escape::Char(9),
            c if "\\/.-^$*+?()[]{}|\"'".contains(c) => Escape::Char(c as u32),
            _ => {
                self.at -= 1;
                return Err(self.unsupported("unsupported escape (backreferences, \\b, \\p{..} and others are not in the subset)"));
            }
        })
    }

    /// A `[...]` class after its `[`: ranges and negation.
    fn class(&mut self) -> Result<(Vec<(u32, u32)>, bool)> {
        let negated = self.peek() == Some('^');
        if negated {
            self.at += 1;
        }
        let mut ranges = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else { return Err(self.unsupported("unclosed `[`")) };
            if c == ']' && !first {
                self.at += 1;
                return Ok((ranges, negated));
            }
            first = false;
            self.at += 1;
            let lo = if c == '\\' {
                match self.escape()? {
                    Escape::Char(c) => c,
                    Escape::Set(r, false) => {
                        ranges.extend(r);
                        continue;
                    }
                    Escape::Set(..) => return Err(self.unsupported("\\D, \\W and \\S inside a class are not supported")),
                }
            } else {
                c as u32
            };
            let mut hi = lo;
            if self.peek() == Some('-') && self.c.get(self.at + 1).is_some_and(|&n| n != ']') {
                self.at += 1;
                let n = self.peek().unwrap_or(']');
                self.at += 1;
                hi = if n == '\\' {
                    match self.escape()? {
                        Escape::Char(c) => c,
                        Escape::Set(..) => return Err(self.unsupported("a class range cannot end in \\d, \\w or \\s")),
                    }
                } else {
                    n as u32
                };
                if hi < lo {
                    return Err(self.unsupported("a class range runs backwards"));
                }
            }
            ranges.push((lo, hi));
        }
    }

    /// The JSON-string GBNF for one character from the set (`negated`: its complement).
    fn set(&self, mut ranges: Vec<(u32, u32)>, negated: bool) -> Result<String> {
        ranges.sort_unstable();
        if negated {
            let mut comp = Vec::new();
            let mut next = 0u32;
            for (lo, hi) in ranges {
                if lo > next {
                    comp.push((next, lo - 1));
                }
                next = next.max(hi.saturating_add(1));
            }
            if next <= 0x10FFFF {
                comp.push((next, 0x10FFFF));
            }
            ranges = comp;
        }
        let has = |c: u32| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
        // Characters JSON must escape: written as their escapes, or (other controls) left out.
        let mut alts: Vec<String> = Vec::new();
        for c in ['"' as u32, '\\' as u32, 10, 13, 9] {
            if has(c) {
                alts.push(literal(c));
            }
        }
        let mut class = String::from("[");
        let mut any = false;
        for &(lo, hi) in &ranges {
            // Cut out 0x00-0x1F, '"' and '\'.
            let mut pieces = alloc::vec![(lo.max(0x20), hi)];
            for cut in ['"' as u32, '\\' as u32] {
                pieces = pieces.into_iter().flat_map(|(a, b)| split(a, b, cut)).collect();
            }
            for (a, b) in pieces.into_iter().filter(|(a, b)| a <= b) {
                any = true;
                let _ = write!(class, "\\U{a:08X}-\\U{b:08X}");
            }
        }
        class.push(']');
        if any {
            alts.insert(0, class);
        }
        match alts.len() {
            0 => Err(self.unsupported("a character set with no character a JSON string can hold")),
            1 => Ok(alts.pop().unwrap_or_default()),
            _ => Ok(alloc::format!("({})", alts.join(" | "))),
        }
    }
}

enum Escape {
    Char(u32),
    Set(Vec<(u32, u32)>, bool),
}

fn split(a: u32, b: u32, cut: u32) -> Vec<(u32, u32)> {
    if cut < a || cut > b {
        return alloc::vec![(a, b)];
    }
    let mut v = Vec::new();
    if cut > a {
        v.push((a, cut - 1));
    }
    if cut < b {
        v.push((cut + 1, b));
    }
    v
}

/// A GBNF literal for one character of a JSON string's text (escaped as JSON needs).
fn literal(c: u32) -> String {
    match c {
        0x22 => String::from(r#""\\\"""#),
        0x5C => String::from(r#""\\\\""#),
        10 => String::from(r#""\\n""#),
        13 => String::from(r#""\\r""#),
        9 => String::from(r#""\\t""#),
        c if c < 0x20 => alloc::format!("\"\\\\u{c:04x}\""),
        c => alloc::format!("\"\\U{c:08X}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_and_refuses() {
        assert_eq!(to_gbnf("^ab$", "p").unwrap(), r#""\U00000061" "\U00000062""#);
        assert_eq!(to_gbnf("a{2,3}|b+", "p").unwrap(), r#""\U00000061"{2,3} | "\U00000062"+"#);
        assert_eq!(to_gbnf("\\d", "p").unwrap(), r"[\U00000030-\U00000039]");
        assert_eq!(to_gbnf("[\"x]", "p").unwrap(), r#"([\U00000078-\U00000078] | "\\\"")"#);
        for bad in ["(?=a)", "a\\1", "a^b", "[a", "(a", "*", "a{3,2}", "\\p{L}"] {
            let e = to_gbnf(bad, "root").unwrap_err();
            assert_eq!(e.status, Status::SchemaUnsupported, "{bad}");
            assert!(e.field.as_str().starts_with("root.pattern"));
        }
    }
}
