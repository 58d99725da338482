//! Grammar-constrained generation: a grammar (GBNF, or a JSON Schema compiled to GBNF) decides,
//! before each sampled token, which tokens keep the output a prefix of a sentence of its language.
//!
//! Pipeline position: after the tokenizer (it reads token bytes), before the sampler (it sets the
//! logits of forbidden tokens to `-inf`, which the sampler already treats as "never chosen", so its
//! arithmetic is untouched and an unconstrained generation keeps its bits).
//!
//! - [`gbnf`] parses llama.cpp's GBNF into a [`Grammar`]: rules whose alternatives are flat symbol
//!   sequences (character classes and rule references); `( )`, `? * +` and `{m,n}` become generated
//!   rules. [`Grammar::check`] refuses undefined rules, left recursion (which would make the
//!   matcher expand forever) and grammars whose language is empty.
//! - [`json_schema`] compiles a JSON Schema subset to GBNF text ([`json`] reads the schema,
//!   [`regex`] turns `pattern` into GBNF).
//! - [`matcher`] runs the grammar as a set of pushdown stacks over code points (llama.cpp's
//!   method), deduplicated and capped at [`MAX_STACKS`].
//! - [`trie`] walks a byte trie of the vocabulary (built once per tokenizer) with the matcher to
//!   compute the mask of allowed tokens, pruning dead subtrees, and caches masks per matcher state.

use alloc::string::String;
use alloc::vec::Vec;

use crate::error::{oom, Error, Result, Status};
use crate::field;

pub mod gbnf;
mod json;
pub mod json_schema;
pub mod matcher;
mod regex;
pub mod trie;

#[cfg(test)]
mod proptests;

/// Largest grammar text accepted (GBNF bytes, or a JSON Schema's).
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Rules, generated ones included.
pub const MAX_RULES: usize = 16_384;
/// Symbols over all alternatives.
pub const MAX_SYMBOLS: usize = 1 << 20;
/// Largest `m` or `n` of `{m,n}`.
pub const MAX_REPEAT: u32 = 1024;
/// Stacks the matcher keeps at once; a (very ambiguous) grammar needing more makes the token that
/// would need them forbidden, so generation never silently drops a parse.
pub const MAX_STACKS: usize = 1024;

/// One symbol of an alternative.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sym {
    /// One code point from the class.
    Class(u32),
    /// The rule with this index.
    Rule(u32),
    /// End of the alternative.
    End,
}

/// A set of code points: `ranges` (sorted, merged, inclusive), complemented when `negated`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Class {
    negated: bool,
    /// Membership of 0..128 with `negated` already applied: the common case is one bit test.
    ascii: [u64; 2],
    ranges: Vec<(u32, u32)>,
}

impl Class {
    pub fn new(mut ranges: Vec<(u32, u32)>, negated: bool) -> Class {
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        let mut class = Class { negated, ascii: [0; 2], ranges: merged };
        for c in 0..128u32 {
            if class.slow_contains(c) {
                class.ascii[(c >> 6) as usize] |= 1 << (c & 63);
            }
        }
        class
    }

    fn slow_contains(&self, c: u32) -> bool {
        self.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != self.negated
    }

    #[inline]
    pub fn contains(&self, c: u32) -> bool {
        if c < 128 {
            return self.ascii[(c >> 6) as usize] & (1 << (c & 63)) != 0;
        }
        self.slow_contains(c)
    }

    /// Whether some code point in `lo..=hi` is in the class (for a character whose first bytes are
    /// known: every completion lies in such a range).
    pub fn intersects(&self, lo: u32, hi: u32) -> bool {
        if !self.negated {
            return self.ranges.iter().any(|&(a, b)| a <= hi && lo <= b);
        }
        // Ranges are merged, so `lo..=hi` is fully excluded only if one range covers it.
        !self.ranges.iter().any(|&(a, b)| a <= lo && hi <= b)
    }

    /// Whether the class holds any Unicode scalar value.
    fn is_empty(&self) -> bool {
        !self.intersects(0, 0x10FFFF)
    }
}

/// A compiled grammar: every rule's alternatives as flat symbol runs in one array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grammar {
    /// Every alternative's symbols followed by [`Sym::End`].
    syms: Vec<Sym>,
    /// Rule `r`'s alternatives start at `syms[alt_starts[rule_alts[r]..rule_alts[r + 1]]]`.
    alt_starts: Vec<u32>,
    rule_alts: Vec<u32>,
    classes: Vec<Class>,
    names: Vec<String>,
    root: u32,
    /// The GBNF text it was compiled from (for a JSON Schema, the generated grammar).
    source: String,
}

/// Builds a [`Grammar`] rule by rule (the parser's output side).
#[derive(Default)]
pub struct Builder {
    rules: Vec<Option<Vec<Vec<Sym>>>>,
    names: Vec<String>,
    classes: Vec<Class>,
    n_syms: usize,
}

fn too_large(what: &'static str, n: usize, rule: &'static str) -> Error {
    Error::new(Status::GrammarLimitExceeded, what, n as u64, rule)
}

impl Builder {
    /// A new rule index (to be defined later with [`Builder::define`]).
    pub fn add_rule(&mut self, name: String) -> Result<u32> {
        if self.rules.len() >= MAX_RULES {
            return Err(too_large("grammar.rules", self.rules.len() + 1, "at most 16384 rules, generated ones included"));
        }
        self.rules.try_reserve(1).map_err(|_| oom("grammar.rules", self.rules.len() * 24))?;
        self.names.try_reserve(1).map_err(|_| oom("grammar.rules", self.rules.len() * 24))?;
        self.rules.push(None);
        self.names.push(name);
        Ok(self.rules.len() as u32 - 1)
    }

    pub fn name(&self, rule: u32) -> &str {
        &self.names[rule as usize]
    }

    pub fn is_defined(&self, rule: u32) -> bool {
        self.rules[rule as usize].is_some()
    }

    pub fn define(&mut self, rule: u32, alts: Vec<Vec<Sym>>) -> Result<()> {
        self.n_syms += alts.iter().map(|a| a.len() + 1).sum::<usize>();
        if self.n_syms > MAX_SYMBOLS {
            return Err(too_large("grammar.symbols", self.n_syms, "at most 1048576 symbols after expanding repetitions"));
        }
        self.rules[rule as usize] = Some(alts);
        Ok(())
    }

    pub fn class(&mut self, class: Class) -> Result<Sym> {
        // Literal characters repeat a lot: share identical classes.
        if let Some(i) = self.classes.iter().rev().take(64).position(|c| *c == class) {
            return Ok(Sym::Class((self.classes.len() - 1 - i) as u32));
        }
        self.classes.try_reserve(1).map_err(|_| oom("grammar.classes", self.classes.len() * 48))?;
        self.classes.push(class);
        Ok(Sym::Class(self.classes.len() as u32 - 1))
    }

    /// Flattens the rules; every rule must be defined. Then [`Grammar::check`]s the result.
    pub fn finish(self, root: u32, source: String) -> Result<Grammar> {
        let mut syms = Vec::new();
        syms.try_reserve_exact(self.n_syms + 1).map_err(|_| oom("grammar.symbols", self.n_syms * 8))?;
        let mut alt_starts = Vec::new();
        let mut rule_alts = Vec::new();
        rule_alts.try_reserve_exact(self.rules.len() + 1).map_err(|_| oom("grammar.rules", self.rules.len() * 4))?;
        for (r, alts) in self.rules.into_iter().enumerate() {
            let alts =
                alts.ok_or_else(|| Error::new(Status::GrammarUndefinedRule, field!("grammar.rule[{}]", self.names[r]), 0, "referenced but never defined"))?;
            rule_alts.push(alt_starts.len() as u32);
            alt_starts.try_reserve(alts.len()).map_err(|_| oom("grammar.alternatives", alts.len() * 4))?;
            for alt in alts {
                alt_starts.push(syms.len() as u32);
                syms.extend_from_slice(&alt);
                syms.push(Sym::End);
            }
        }
        rule_alts.push(alt_starts.len() as u32);
        let g = Grammar { syms, alt_starts, rule_alts, classes: self.classes, names: self.names, root, source };
        g.check()?;
        Ok(g)
    }
}

impl Grammar {
    pub fn n_rules(&self) -> usize {
        self.names.len()
    }

    pub fn root(&self) -> u32 {
        self.root
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    #[inline]
    pub(crate) fn sym(&self, pos: u32) -> Sym {
        self.syms[pos as usize]
    }

    #[inline]
    pub(crate) fn class(&self, i: u32) -> &Class {
        &self.classes[i as usize]
    }

    /// Start positions of rule `r`'s alternatives.
    #[inline]
    pub(crate) fn alternatives(&self, r: u32) -> &[u32] {
        &self.alt_starts[self.rule_alts[r as usize] as usize..self.rule_alts[r as usize + 1] as usize]
    }

    fn alt_syms(&self, start: u32) -> impl Iterator<Item = Sym> + '_ {
        self.syms[start as usize..].iter().copied().take_while(|s| *s != Sym::End)
    }

    /// Refuses left recursion and an empty language (rule by rule, naming the rule).
    fn check(&self) -> Result<()> {
        let n = self.n_rules();
        // Nullable rules (derive the empty string), by fixpoint.
        let mut nullable = alloc::vec![false; n];
        loop {
            let mut changed = false;
            for r in 0..n {
                if !nullable[r] && self.alternatives(r as u32).iter().any(|&a| self.alt_syms(a).all(|s| matches!(s, Sym::Rule(q) if nullable[q as usize]))) {
                    nullable[r] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // Left recursion: a cycle of "A can start with B" (B after only nullable rules). The
        // matcher expands rule references until a character class is on top, so such a cycle
        // would never end. Iterative depth-first search, colours 0 new / 1 on the path / 2 done.
        let mut colour = alloc::vec![0u8; n];
        let mut path: Vec<(u32, Vec<u32>)> = Vec::new();
        for start in 0..n as u32 {
            if colour[start as usize] != 0 {
                continue;
            }
            path.push((start, self.leading_rules(start, &nullable)));
            colour[start as usize] = 1;
            while let Some((r, next)) = path.last_mut() {
                match next.pop() {
                    Some(q) => match colour[q as usize] {
                        0 => {
                            colour[q as usize] = 1;
                            let lead = self.leading_rules(q, &nullable);
                            path.push((q, lead));
                        }
                        1 => {
                            return Err(Error::new(
                                Status::GrammarLeftRecursion,
                                field!("grammar.rule[{}]", self.names[q as usize]),
                                0,
                                "is left-recursive (it can start with itself, possibly through nullable rules or a repetition of something that can be empty); rewrite it with right recursion or `*`",
                            ));
                        }
                        _ => {}
                    },
                    None => {
                        colour[*r as usize] = 2;
                        path.pop();
                    }
                }
            }
        }
        // Productive rules (derive some string), by fixpoint; the root must be one.
        let mut productive = alloc::vec![false; n];
        loop {
            let mut changed = false;
            for r in 0..n {
                if !productive[r]
                    && self.alternatives(r as u32).iter().any(|&a| {
                        self.alt_syms(a).all(|s| match s {
                            Sym::Rule(q) => productive[q as usize],
                            Sym::Class(c) => !self.class(c).is_empty(),
                            Sym::End => true,
                        })
                    })
                {
                    productive[r] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        if !productive[self.root as usize] {
            return Err(Error::new(
                Status::GrammarEmptyLanguage,
                field!("grammar.rule[{}]", self.names[self.root as usize]),
                0,
                "admits no string (every alternative needs an empty character class or a rule that never ends)",
            ));
        }
        Ok(())
    }

    /// Rules an alternative of `r` can start with.
    fn leading_rules(&self, r: u32, nullable: &[bool]) -> Vec<u32> {
        let mut out = Vec::new();
        for &a in self.alternatives(r) {
            for s in self.alt_syms(a) {
                match s {
                    Sym::Rule(q) => {
                        out.push(q);
                        if !nullable[q as usize] {
                            break;
                        }
                    }
                    _ => break,
                }
            }
        }
        out
    }
}

/// What the host passed to `set_grammar`: GBNF text, or a JSON Schema (`TRL_GRAMMAR_JSON_SCHEMA`).
pub fn compile(source: &[u8], json_schema: bool) -> Result<Grammar> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(too_large("grammar.len", source.len(), "at most 1 MiB of grammar or schema text"));
    }
    if json_schema {
        let gbnf = json_schema::to_gbnf(source)?;
        gbnf::parse(gbnf.as_bytes())
    } else {
        gbnf::parse(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_merge_and_negate() {
        let c = Class::new(alloc::vec![(b'a' as u32, b'c' as u32), (b'b' as u32, b'f' as u32), (0x3000, 0x3010)], false);
        assert_eq!(c.ranges, alloc::vec![(97, 102), (0x3000, 0x3010)]);
        assert!(c.contains('e' as u32) && !c.contains('g' as u32) && c.contains(0x3005));
        assert!(c.intersects(0x2FF0, 0x3000) && !c.intersects(0x3011, 0x4000));
        let n = Class::new(alloc::vec![(0, 0x10FFFF)], true);
        assert!(n.is_empty());
        let any = Class::new(Vec::new(), true);
        assert!(any.contains(0x10FFFF) && any.contains(0) && !any.is_empty());
    }
}
