//! The grammar as a set of pushdown stacks over code points (llama.cpp's method).
//!
//! A stack is the list of places the parse will continue from: its top is a character class to
//! match next, the rest are positions just after rule references, to resume when the referenced
//! rule ends. Stacks live in an arena as linked nodes (top → parent), so stacks share their
//! bottoms and a step only adds nodes: the token-mask walk ([`super::trie`]) advances byte by byte
//! and truncates the arena when it backs out of a trie node, never copying a stack.
//!
//! Advancing by a code point keeps the stacks whose top class holds it, moves each past that class
//! and expands rule references until a class is on top again; a stack that runs out of symbols
//! means the input so far is a complete sentence ("accept"). A reference in tail position does not
//! push a continuation, so right recursion (`x*`) keeps stacks flat. Identical stacks are merged,
//! and a set past [`MAX_STACKS`] counts as dead (the token that needs it is forbidden).
//!
//! Bytes arrive from tokens that may end inside a character: the first bytes of a character are
//! held ([`Utf8`]) and accepted when some stack's class holds a code point they can complete to.

use alloc::rc::Rc;
use alloc::vec::Vec;

use super::{Grammar, Sym, MAX_STACKS};

/// No node (the bottom of every stack).
pub(crate) const NIL: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Node {
    pub pos: u32,
    pub parent: u32,
}

/// A set of stacks: tops `items[start..end]`, plus whether the input so far is complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Set {
    pub start: u32,
    pub end: u32,
    pub accept: bool,
}

impl Set {
    pub fn has_stacks(&self) -> bool {
        self.end > self.start
    }
}

/// The first bytes of a character not complete yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Utf8 {
    /// Bits so far.
    pub acc: u32,
    /// Continuation bytes still expected (0: none held).
    pub need: u8,
    /// Bytes held (for the cache key and for the range of completions).
    pub held: u8,
    /// The lead byte, for the narrowed second-byte ranges of E0, ED, F0 and F4.
    pub lead: u8,
}

impl Utf8 {
    /// The code points the held bytes can complete to.
    fn completions(&self) -> (u32, u32) {
        let shift = 6 * self.need as u32;
        // The shortest encoding's floor: F0 cannot start a code point below U+10000.
        let floor = [0, 0, 0x80, 0x800, 0x10000][(self.held + self.need) as usize];
        let lo = self.acc << shift;
        let hi = lo | ((1 << shift) - 1);
        (lo.max(floor), hi.min(0x10FFFF))
    }
}

/// Stacks in an arena, shared by a matcher's live state and its mask walks.
#[derive(Clone, Debug, Default)]
pub(crate) struct Arena {
    pub nodes: Vec<Node>,
    pub items: Vec<u32>,
    work: Vec<(u32, u32, u32)>,
    /// A step needed more than [`MAX_STACKS`] stacks.
    overflow: bool,
}

impl Arena {
    fn node(&mut self, pos: u32, parent: u32) -> u32 {
        self.nodes.push(Node { pos, parent });
        self.nodes.len() as u32 - 1
    }

    fn same_stack(&self, mut a: u32, mut b: u32) -> bool {
        while a != b {
            if a == NIL || b == NIL {
                return false;
            }
            let (na, nb) = (self.nodes[a as usize], self.nodes[b as usize]);
            if na.pos != nb.pos {
                return false;
            }
            a = na.parent;
            b = nb.parent;
        }
        true
    }

    /// Expands `(pos, parent)` until classes are on top, appending new tops (deduplicated against
    /// `items[from..]`). `existing` is a node already holding `(pos, parent)`, reused if `pos` is a
    /// class.
    fn expand(&mut self, g: &Grammar, pos: u32, parent: u32, existing: u32, from: usize, accept: &mut bool) {
        self.work.push((pos, parent, existing));
        while let Some((p, par, node)) = self.work.pop() {
            match g.sym(p) {
                Sym::Class(_) => {
                    if self.items.len() - from >= MAX_STACKS {
                        self.overflow = true;
                        continue;
                    }
                    let id = if node != NIL { node } else { self.node(p, par) };
                    if !self.items[from..].iter().any(|&t| self.same_stack(t, id)) {
                        self.items.push(id);
                    }
                }
                Sym::End => {
                    if par == NIL {
                        *accept = true;
                    } else {
                        let n = self.nodes[par as usize];
                        self.work.push((n.pos, n.parent, par));
                    }
                }
                Sym::Rule(r) => {
                    // In tail position the rule continues straight into what follows us.
                    let cont = if g.sym(p + 1) == Sym::End { par } else { self.node(p + 1, par) };
                    for &alt in g.alternatives(r).iter().rev() {
                        self.work.push((alt, cont, NIL));
                    }
                }
            }
        }
    }

    /// The set at the start of the grammar.
    pub fn start(&mut self, g: &Grammar) -> Set {
        let from = self.items.len();
        let mut accept = false;
        for &alt in g.alternatives(g.root()) {
            self.expand(g, alt, NIL, NIL, from, &mut accept);
        }
        Set { start: from as u32, end: self.items.len() as u32, accept }
    }

    /// The set after code point `c`; `None` if it is dead (no stack holds `c`, or too many stacks).
    pub fn advance(&mut self, g: &Grammar, set: Set, c: u32) -> Option<Set> {
        let from = self.items.len();
        let mut accept = false;
        self.overflow = false;
        for i in set.start..set.end {
            let top = self.nodes[self.items[i as usize] as usize];
            let Sym::Class(k) = g.sym(top.pos) else { continue };
            if g.class(k).contains(c) {
                self.expand(g, top.pos + 1, top.parent, NIL, from, &mut accept);
            }
        }
        let out = Set { start: from as u32, end: self.items.len() as u32, accept };
        (!self.overflow && (out.has_stacks() || accept)).then_some(out)
    }

    /// Whether some stack of `set` can take a character completing `u`.
    pub fn can_complete(&self, g: &Grammar, set: Set, u: &Utf8) -> bool {
        let (lo, hi) = u.completions();
        (set.start..set.end).any(|i| {
            let top = self.nodes[self.items[i as usize] as usize];
            matches!(g.sym(top.pos), Sym::Class(k) if g.class(k).intersects(lo, hi))
        })
    }

    /// One byte of input: `None` if the bytes so far are no valid prefix.
    #[inline]
    pub fn step_byte(&mut self, g: &Grammar, set: Set, u: Utf8, b: u8) -> Option<(Set, Utf8)> {
        if u.need == 0 {
            let (need, acc) = match b {
                0x00..=0x7F => return self.advance(g, set, b as u32).map(|s| (s, Utf8::default())),
                0xC2..=0xDF => (1, (b & 0x1F) as u32),
                0xE0..=0xEF => (2, (b & 0x0F) as u32),
                0xF0..=0xF4 => (3, (b & 0x07) as u32),
                _ => return None,
            };
            let held = Utf8 { acc, need, held: 1, lead: b };
            return self.can_complete(g, set, &held).then_some((set, held));
        }
        let (lo, hi) = match (u.held, u.lead) {
            (1, 0xE0) => (0xA0, 0xBF),
            (1, 0xED) => (0x80, 0x9F),
            (1, 0xF0) => (0x90, 0xBF),
            (1, 0xF4) => (0x80, 0x8F),
            _ => (0x80, 0xBF),
        };
        if b < lo || b > hi {
            return None;
        }
        let next = Utf8 { acc: (u.acc << 6) | (b & 0x3F) as u32, need: u.need - 1, held: u.held + 1, lead: u.lead };
        if next.need == 0 {
            return self.advance(g, set, next.acc).map(|s| (s, Utf8::default()));
        }
        self.can_complete(g, set, &next).then_some((set, next))
    }

    /// The stacks of `set`, each as positions from top to bottom, in a canonical order, with the
    /// held bytes and the accept flag: equal keys mean equal futures (the mask cache's key).
    pub fn key(&self, set: Set, u: &Utf8, out: &mut Vec<u32>) {
        out.clear();
        out.extend([u.acc, (u.need as u32) << 8 | u.held as u32 | (u.lead as u32) << 16, set.accept as u32]);
        let mut stacks: Vec<Vec<u32>> = Vec::with_capacity((set.end - set.start) as usize);
        for i in set.start..set.end {
            let mut s = Vec::new();
            let mut n = self.items[i as usize];
            while n != NIL {
                s.push(self.nodes[n as usize].pos);
                n = self.nodes[n as usize].parent;
            }
            stacks.push(s);
        }
        stacks.sort_unstable();
        for s in stacks {
            out.push(s.len() as u32);
            out.extend_from_slice(&s);
        }
    }

    /// Copies `set`'s stacks into a fresh arena (dropping what only dead branches used).
    fn compact(&self, set: Set) -> (Arena, Set) {
        let mut fresh = Arena::default();
        let mut path = Vec::new();
        for i in set.start..set.end {
            path.clear();
            let mut n = self.items[i as usize];
            while n != NIL {
                path.push(self.nodes[n as usize].pos);
                n = self.nodes[n as usize].parent;
            }
            let mut parent = NIL;
            for &pos in path.iter().rev() {
                parent = fresh.node(pos, parent);
            }
            fresh.items.push(parent);
        }
        let len = fresh.items.len() as u32;
        (fresh, Set { start: 0, end: len, accept: set.accept })
    }
}

/// A generation's position in its grammar.
#[derive(Clone, Debug)]
pub struct Matcher {
    grammar: Rc<Grammar>,
    pub(crate) arena: Arena,
    pub(crate) set: Set,
    pub(crate) utf8: Utf8,
}

impl Matcher {
    pub fn new(grammar: Rc<Grammar>) -> Matcher {
        let mut arena = Arena::default();
        let set = arena.start(&grammar);
        Matcher { grammar, arena, set, utf8: Utf8::default() }
    }

    pub fn grammar(&self) -> &Rc<Grammar> {
        &self.grammar
    }

    /// The output so far is a sentence of the language (end of generation may come here).
    pub fn is_complete(&self) -> bool {
        self.set.accept && self.utf8.need == 0
    }

    /// Whether anything can follow.
    pub fn can_continue(&self) -> bool {
        self.set.has_stacks() || self.utf8.need > 0
    }

    /// Whether `bytes` would keep the output a valid prefix; the matcher is unchanged either way
    /// (the same byte steps as [`Matcher::accept_bytes`] and the token-mask walk).
    pub fn allows_bytes(&mut self, bytes: &[u8]) -> bool {
        let mark = (self.arena.nodes.len(), self.arena.items.len());
        let (mut set, mut utf8) = (self.set, self.utf8);
        let mut ok = !bytes.is_empty();
        for &b in bytes {
            match self.arena.step_byte(&self.grammar, set, utf8, b) {
                Some((s, u)) => (set, utf8) = (s, u),
                None => {
                    ok = false;
                    break;
                }
            }
        }
        self.arena.nodes.truncate(mark.0);
        self.arena.items.truncate(mark.1);
        ok
    }

    /// Takes `bytes`; on `false` (not a valid prefix) the matcher is unchanged.
    pub fn accept_bytes(&mut self, bytes: &[u8]) -> bool {
        let mark = (self.arena.nodes.len(), self.arena.items.len());
        let (mut set, mut utf8) = (self.set, self.utf8);
        for &b in bytes {
            match self.arena.step_byte(&self.grammar, set, utf8, b) {
                Some((s, u)) => (set, utf8) = (s, u),
                None => {
                    self.arena.nodes.truncate(mark.0);
                    self.arena.items.truncate(mark.1);
                    return false;
                }
            }
        }
        let (arena, set) = self.arena.compact(set);
        self.arena = arena;
        self.set = set;
        self.utf8 = utf8;
        true
    }
}
