//! GBNF, as llama.cpp defines it (`grammars/README.md` there), parsed into a [`Grammar`].
//!
//! ```text
//! grammar     = { rule }                     (blank lines and # comments anywhere)
//! rule        = name "::=" alternates NEWLINE
//! alternates  = sequence { "|" sequence }    (a newline after "|" continues the rule)
//! sequence    = { element [ "*" | "+" | "?" | "{m}" | "{m,}" | "{m,n}" | "{,n}" ] }
//! element     = '"' chars '"' | "[" ["^"] { char ["-" char] } "]" | "." | name | "(" alternates ")"
//! name        = [a-zA-Z0-9_-]+
//! char escape = \n \r \t \\ \" \[ \] \xHH \uHHHH \UHHHHHHHH
//! ```
//! Newlines separate rules: inside parentheses, or after `::=` and `|`, they are spaces. The rule
//! named `root` is the whole output. Token references (`<...>`) are refused: masks here are over
//! text, not token ids.
//!
//! Repetitions become generated rules (`x*` is `R ::= x R | ε`, right-recursive so the matcher's
//! stacks stay flat; `x{m,n}` is `m` copies of `x` then `n - m` nested optionals), so the
//! matcher only ever sees classes and rule references.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use super::{Builder, Class, Grammar, Sym, MAX_REPEAT};
use crate::error::{Error, Result, Status};
use crate::field;

struct Parser<'a> {
    src: &'a str,
    at: usize,
    b: Builder,
    by_name: BTreeMap<String, u32>,
    /// Where each rule was first referenced (for an undefined-rule error).
    first_use: BTreeMap<u32, usize>,
    /// The rule being parsed (errors name it).
    current: String,
    generated: u32,
}

/// Parses GBNF text and compiles it (see the module docs for the syntax).
pub fn parse(src: &[u8]) -> Result<Grammar> {
    let text = core::str::from_utf8(src)
        .map_err(|e| Error::new(Status::GrammarSyntax, "grammar (byte offset)", e.valid_up_to() as u64, "the grammar must be UTF-8 text"))?;
    let mut p = Parser { src: text, at: 0, b: Builder::default(), by_name: BTreeMap::new(), first_use: BTreeMap::new(), current: String::new(), generated: 0 };
    p.space(true);
    while p.at < p.src.len() {
        p.rule()?;
    }
    let Some(&root) = p.by_name.get("root") else {
        return Err(Error::new(Status::GrammarUndefinedRule, "grammar.rule[root]", 0, "the grammar must define `root`, the rule for the whole output"));
    };
    if let Some((&r, &at)) = p.first_use.iter().find(|(&r, _)| !p.b.is_defined(r)) {
        return Err(Error::new(
            Status::GrammarUndefinedRule,
            field!("grammar.rule[{}] (byte offset of first use)", p.b.name(r)),
            at as u64,
            "referenced but never defined",
        ));
    }
    p.b.finish(root, text.to_string())
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

impl Parser<'_> {
    fn err(&self, rule: &'static str) -> Error {
        let name = if self.current.is_empty() { "(none)" } else { self.current.as_str() };
        Error::new(Status::GrammarSyntax, field!("grammar.rule[{}] (byte offset)", name), self.at as u64, rule)
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.at).copied()
    }

    /// Skips spaces, tabs, comments and (when `newlines`) line breaks.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.at += 1,
                b'\r' | b'\n' if newlines => self.at += 1,
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.at += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<&str> {
        let start = self.at;
        while self.peek().is_some_and(is_name_char) {
            self.at += 1;
        }
        if start == self.at {
            return Err(self.err("expected a rule name ([a-zA-Z0-9_-]+)"));
        }
        Ok(&self.src[start..self.at])
    }

    fn rule_id(&mut self, name: &str) -> Result<u32> {
        if let Some(&id) = self.by_name.get(name) {
            return Ok(id);
        }
        let id = self.b.add_rule(name.to_string())?;
        self.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    fn rule(&mut self) -> Result<()> {
        let start = self.at;
        let name = self.name()?.to_string();
        self.current = name.clone();
        let id = self.rule_id(&name)?;
        if self.b.is_defined(id) {
            self.at = start;
            return Err(self.err("is defined twice"));
        }
        self.space(false);
        if !self.src[self.at..].starts_with("::=") {
            return Err(self.err("expected `::=` after the rule name"));
        }
        self.at += 3;
        self.space(true);
        let alts = self.alternates(false)?;
        self.b.define(id, alts)?;
        match self.peek() {
            None => {}
            Some(b'\r' | b'\n') => self.space(true),
            Some(_) => return Err(self.err("unexpected character: expected `|`, an element or the end of the line")),
        }
        Ok(())
    }

    fn alternates(&mut self, nested: bool) -> Result<Vec<Vec<Sym>>> {
        let mut alts = Vec::new();
        alts.push(self.sequence(nested)?);
        while self.peek() == Some(b'|') {
            self.at += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(alts)
    }

    fn generated_rule(&mut self) -> Result<u32> {
        self.generated += 1;
        let name = alloc::format!("{}-{}", self.current, self.generated);
        self.b.add_rule(name)
    }

    fn sequence(&mut self, nested: bool) -> Result<Vec<Sym>> {
        let mut seq: Vec<Sym> = Vec::new();
        // Where the last element starts (a literal is one element of several symbols).
        let mut last: Option<usize> = None;
        while let Some(c) = self.peek() {
            match c {
                b'"' => {
                    self.at += 1;
                    last = Some(seq.len());
                    loop {
                        match self.peek() {
                            None | Some(b'\n') | Some(b'\r') => return Err(self.err("unterminated string literal")),
                            Some(b'"') => {
                                self.at += 1;
                                break;
                            }
                            Some(_) => {
                                let ch = self.char()?;
                                seq.push(self.b.class(Class::new(alloc::vec![(ch, ch)], false))?);
                            }
                        }
                    }
                }
                b'[' => {
                    self.at += 1;
                    let negated = self.peek() == Some(b'^');
                    if negated {
                        self.at += 1;
                    }
                    let mut ranges = Vec::new();
                    loop {
                        match self.peek() {
                            None => return Err(self.err("unterminated character class")),
                            Some(b']') => {
                                self.at += 1;
                                break;
                            }
                            Some(_) => {
                                let lo = self.char()?;
                                let mut hi = lo;
                                if self.peek() == Some(b'-') && self.src.as_bytes().get(self.at + 1).is_some_and(|&c| c != b']') {
                                    self.at += 1;
                                    hi = self.char()?;
                                    if hi < lo {
                                        return Err(self.err("character range runs backwards (start above end)"));
                                    }
                                }
                                ranges.push((lo, hi));
                            }
                        }
                    }
                    last = Some(seq.len());
                    seq.push(self.b.class(Class::new(ranges, negated))?);
                }
                b'.' => {
                    self.at += 1;
                    last = Some(seq.len());
                    seq.push(self.b.class(Class::new(Vec::new(), true))?);
                }
                b'(' => {
                    self.at += 1;
                    self.space(true);
                    let alts = self.alternates(true)?;
                    if self.peek() != Some(b')') {
                        return Err(self.err("expected `)`"));
                    }
                    self.at += 1;
                    let id = self.generated_rule()?;
                    self.b.define(id, alts)?;
                    last = Some(seq.len());
                    seq.push(Sym::Rule(id));
                }
                b'*' | b'+' | b'?' => {
                    self.at += 1;
                    let (min, max) = match c {
                        b'*' => (0, None),
                        b'+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repeat(&mut seq, last.take(), min, max)?;
                }
                b'{' => {
                    self.at += 1;
                    self.space(false);
                    let min = self.number()?.unwrap_or(0);
                    self.space(false);
                    let max = if self.peek() == Some(b',') {
                        self.at += 1;
                        self.space(false);
                        self.number()?
                    } else {
                        Some(min)
                    };
                    self.space(false);
                    if self.peek() != Some(b'}') {
                        return Err(self.err("expected `}` closing a repetition {m,n}"));
                    }
                    self.at += 1;
                    if max.is_some_and(|n| n < min) {
                        return Err(self.err("repetition {m,n} needs m <= n"));
                    }
                    self.repeat(&mut seq, last.take(), min, max)?;
                }
                b'<' | b'!' => return Err(self.err("token references (<...>) are not supported: grammars constrain text")),
                c if is_name_char(c) => {
                    let at = self.at;
                    let name = self.name()?.to_string();
                    let id = self.rule_id(&name)?;
                    self.first_use.entry(id).or_insert(at);
                    last = Some(seq.len());
                    seq.push(Sym::Rule(id));
                }
                _ => break,
            }
            self.space(nested);
        }
        Ok(seq)
    }

    fn number(&mut self) -> Result<Option<u32>> {
        let start = self.at;
        let mut n: u32 = 0;
        while let Some(c @ b'0'..=b'9') = self.peek() {
            n = n.saturating_mul(10).saturating_add((c - b'0') as u32);
            self.at += 1;
        }
        if n > MAX_REPEAT {
            self.at = start;
            return Err(Error::new(
                Status::GrammarLimitExceeded,
                field!("grammar.rule[{}] (byte offset)", self.current),
                start as u64,
                "a repetition bound above 1024",
            ));
        }
        Ok((self.at > start).then_some(n))
    }

    /// Replaces the last element `x` of `seq` by `x{min,max}` (`max` None: unbounded).
    fn repeat(&mut self, seq: &mut Vec<Sym>, last: Option<usize>, min: u32, max: Option<u32>) -> Result<()> {
        let Some(start) = last else {
            self.at -= 1;
            return Err(self.err("a repetition operator needs an element before it"));
        };
        let element: Vec<Sym> = seq.drain(start..).collect();
        for _ in 0..min {
            seq.extend_from_slice(&element);
        }
        match max {
            None => {
                // R ::= x R | ε
                let r = self.generated_rule()?;
                let mut once = element.clone();
                once.push(Sym::Rule(r));
                self.b.define(r, alloc::vec![once, Vec::new()])?;
                seq.push(Sym::Rule(r));
            }
            Some(max) if max > min => {
                // R_1 ::= x | ε, R_k ::= x R_{k-1} | ε
                let mut inner: Option<u32> = None;
                for _ in min..max {
                    let r = self.generated_rule()?;
                    let mut once = element.clone();
                    once.extend(inner.map(Sym::Rule));
                    self.b.define(r, alloc::vec![once, Vec::new()])?;
                    inner = Some(r);
                }
                seq.extend(inner.map(Sym::Rule));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<u32> {
        let rest = &self.src[self.at..];
        let Some(c) = rest.chars().next() else { return Err(self.err("unexpected end of the grammar")) };
        if c != '\\' {
            self.at += c.len_utf8();
            return Ok(c as u32);
        }
        let Some(e) = rest[1..].chars().next() else { return Err(self.err("unexpected end after `\\`")) };
        self.at += 2;
        let hex = |p: &mut Self, n: usize| -> Result<u32> {
            let digits = p.src.get(p.at..p.at + n).ok_or_else(|| p.err("too few hex digits in an escape"))?;
            let v = u32::from_str_radix(digits, 16).map_err(|_| p.err("bad hex digits in an escape"))?;
            p.at += n;
            if v > 0x10FFFF {
                return Err(p.err("escape beyond U+10FFFF"));
            }
            Ok(v)
        };
        match e {
            'n' => Ok(10),
            'r' => Ok(13),
            't' => Ok(9),
            '\\' | '"' | '[' | ']' => Ok(e as u32),
            'x' => hex(self, 2),
            'u' => hex(self, 4),
            'U' => hex(self, 8),
            _ => {
                self.at -= 2;
                Err(self.err("unknown escape (use \\n \\r \\t \\\\ \\\" \\[ \\] \\xHH \\uHHHH \\UHHHHHHHH)"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::matcher::Matcher;
    use super::*;
    use alloc::rc::Rc;

    pub(crate) fn accepts(g: &Rc<Grammar>, s: &str) -> bool {
        let mut m = Matcher::new(g.clone());
        m.accept_bytes(s.as_bytes()) && m.is_complete()
    }

    pub(crate) fn prefix_ok(g: &Rc<Grammar>, s: &str) -> bool {
        Matcher::new(g.clone()).accept_bytes(s.as_bytes())
    }

    fn g(src: &str) -> Rc<Grammar> {
        Rc::new(parse(src.as_bytes()).unwrap_or_else(|e| panic!("{e}")))
    }

    fn err(src: &str) -> Error {
        parse(src.as_bytes()).unwrap_err()
    }

    #[test]
    fn literals_classes_and_repetitions() {
        let gr = g("root ::= \"a\" [b-d]+ (\"x\" | \"yz\")? e{2,3}\ne ::= [^a-z]");
        assert!(accepts(&gr, "ab12"));
        assert!(accepts(&gr, "abcdyz123"));
        assert!(!accepts(&gr, "ab1"));
        assert!(!accepts(&gr, "ab1234"));
        assert!(!accepts(&gr, "a12"));
        assert!(prefix_ok(&gr, "abc"));
        assert!(!prefix_ok(&gr, "abx1x"));
        let rep = g("root ::= \"ab\"{2} \"c\"{,2}");
        assert!(accepts(&rep, "abab") && accepts(&rep, "ababcc") && !accepts(&rep, "ab") && !accepts(&rep, "abababc"));
    }

    #[test]
    fn escapes_comments_and_newlines() {
        let gr = g("# comment\nroot ::= \"\\x41\\u00e9\\n\" | # tail\n  [\\t\\]]\n\nother ::=\n  (\"a\"\n   \"b\")\n");
        assert!(accepts(&gr, "Aé\n"));
        assert!(accepts(&gr, "]"));
        assert!(accepts(&gr, "\t"));
        let any = g("root ::= . . \"日\"");
        assert!(accepts(&any, "x本日"));
    }

    #[test]
    fn utf8_split_across_tokens_is_a_prefix() {
        let gr = g("root ::= [ぁ-ゟ]+");
        let bytes = "ひら".as_bytes();
        let mut m = Matcher::new(gr.clone());
        assert!(m.accept_bytes(&bytes[..1]));
        assert!(!m.is_complete());
        assert!(m.accept_bytes(&bytes[1..4]));
        assert!(m.accept_bytes(&bytes[4..]));
        assert!(m.is_complete());
        // A lead byte that can only start characters outside the class.
        assert!(!Matcher::new(gr).accept_bytes(b"\xf0"));
    }

    #[test]
    fn errors_name_the_rule_and_offset() {
        let e = err("root ::= \"abc");
        assert_eq!(e.status, Status::GrammarSyntax);
        assert_eq!(e.field.as_str(), "grammar.rule[root] (byte offset)");
        let e = err("root ::= a\na ::= [z-a]");
        assert_eq!((e.status, e.field.as_str(), e.value), (Status::GrammarSyntax, "grammar.rule[a] (byte offset)", 21));
        let e = err("root ::= item\n");
        assert_eq!((e.status, e.field.as_str(), e.value), (Status::GrammarUndefinedRule, "grammar.rule[item] (byte offset of first use)", 9));
        assert_eq!(err("item ::= \"x\"").status, Status::GrammarUndefinedRule);
        let e = err("root ::= expr\nexpr ::= expr \"+\" num | num\nnum ::= [0-9]");
        assert_eq!((e.status, e.field.as_str()), (Status::GrammarLeftRecursion, "grammar.rule[expr]"));
        assert_eq!(err("root ::= (\"a\"?)*").status, Status::GrammarLeftRecursion);
        let e = err("root ::= [^\\x00-\\U0010FFFF]");
        assert_eq!(e.status, Status::GrammarEmptyLanguage);
        assert_eq!(err("root ::= loop\nloop ::= \"a\" loop").status, Status::GrammarEmptyLanguage);
        assert_eq!(err("root ::= \"a\"{2000}").status, Status::GrammarLimitExceeded);
        assert_eq!(err("root ::= \"a\"\nroot ::= \"b\"").status, Status::GrammarSyntax);
        assert_eq!(err("root ::= <[12]>").status, Status::GrammarSyntax);
        assert_eq!(err("root ::= * \"a\"").status, Status::GrammarSyntax);
        assert_eq!(err("root ::= \"a\" ) ").status, Status::GrammarSyntax);
        assert_eq!(err("root ::= \"\\q\"").status, Status::GrammarSyntax);
    }

    #[test]
    fn llama_cpp_example_grammars_parse_and_match() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/harness/tests/data/grammars/");
        let load = |name: &str| g(&std::fs::read_to_string(std::format!("{dir}{name}")).unwrap());
        let json = load("json.gbnf");
        assert!(accepts(&json, "{\"a\": [1, 2.5e3, \"x\\n\"], \"b\": {\"c\": null, \"d\": true}}"));
        assert!(!accepts(&json, "{\"a\": [1,]}"));
        assert!(accepts(&load("json_arr.gbnf"), "[\n{\"a\": 1},\n\"s\"]"));
        let chess = load("chess.gbnf");
        assert!(accepts(&chess, "1. e4 e5\n2. Nf3 Nc6\n3. O-O Qxd8#\n"));
        assert!(!accepts(&chess, "1. e9 e5\n2. Nf3 Nc6\n"));
        assert!(accepts(&load("list.gbnf"), "- one\n- two\n"));
        assert!(accepts(&load("japanese.gbnf"), "こんにちは 世界"));
        assert!(accepts(&load("arithmetic.gbnf"), "x+(y*3)= 4\n"));
        let c = load("c.gbnf");
        assert!(accepts(&c, "int main(){x = 1;return x;}"));
        assert!(!accepts(&c, "int main({}"));
    }
}
