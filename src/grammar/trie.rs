//! Token masks: which tokens of the vocabulary keep the output a valid prefix.
//!
//! [`VocabTrie`] is a byte trie of every token's text, built once per tokenizer (on the first
//! constrained generation) and stored in preorder, so a node's subtree is the index range
//! `i..subtree_end[i]`: a dead prefix skips its whole subtree in one jump. [`VocabTrie::mask`]
//! walks it with the matcher's stacks, advancing one byte per trie level and truncating the stack
//! arena when it backs out, so shared token prefixes are matched once.
//!
//! Masks depend only on the matcher's state, and structured output revisits the same states
//! (inside a string, between properties), so [`MaskCache`] keeps them by canonical state key up to
//! [`MAX_CACHE_BYTES`]. Only text tokens are in the trie: control tokens (end of generation
//! included; the engine allows those only where the grammar is complete) and empty tokens never
//! pass a grammar.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::matcher::{Matcher, Set, Utf8};
use crate::error::{oom, Result};
use crate::tokenizer::{TokenType, Tokenizer};

/// Masks kept per grammar before the cache starts over.
pub const MAX_CACHE_BYTES: usize = 16 << 20;

pub struct VocabTrie {
    /// Edge byte into each node (the root's is unused).
    byte: Vec<u8>,
    depth: Vec<u16>,
    subtree_end: Vec<u32>,
    /// Tokens spelled exactly by node `i`: `ids[tok_start[i]..tok_start[i + 1]]`.
    tok_start: Vec<u32>,
    ids: Vec<u32>,
    /// Bit `id` set for every token in the trie (the only ones a grammar can allow).
    members: Vec<u64>,
    max_depth: usize,
    n_vocab: usize,
}

fn reserve<T>(v: &mut Vec<T>, n: usize, field: &'static str) -> Result<()> {
    v.try_reserve(n).map_err(|_| oom(field, n * core::mem::size_of::<T>()))
}

impl VocabTrie {
    /// Every non-empty normal, byte or user-defined token of `tok`, minus those `skip` names.
    pub fn build(tok: &Tokenizer, skip: impl Fn(u32) -> bool) -> Result<VocabTrie> {
        let text = |id: u32| matches!(tok.token_type(id), Some(TokenType::Normal | TokenType::Byte | TokenType::UserDefined)) && !skip(id);
        VocabTrie::from_tokens(tok.n_tokens() as usize, |id| if text(id) { tok.token_bytes(id) } else { &[] })
    }

    /// The trie of tokens `0..n_vocab` spelled `bytes(id)`; empty tokens are left out.
    pub fn from_tokens<'t>(n_vocab: usize, bytes: impl Fn(u32) -> &'t [u8]) -> Result<VocabTrie> {
        let mut sorted: Vec<u32> = Vec::new();
        reserve(&mut sorted, n_vocab, "grammar.trie")?;
        sorted.extend((0..n_vocab as u32).filter(|&id| !bytes(id).is_empty()));
        sorted.sort_unstable_by(|&a, &b| bytes(a).cmp(bytes(b)).then(a.cmp(&b)));
        let mut t = VocabTrie {
            byte: Vec::new(),
            depth: Vec::new(),
            subtree_end: Vec::new(),
            tok_start: Vec::new(),
            ids: Vec::new(),
            members: Vec::new(),
            max_depth: 0,
            n_vocab,
        };
        reserve(&mut t.members, n_vocab.div_ceil(64), "grammar.trie")?;
        t.members.resize(n_vocab.div_ceil(64), 0);
        for &id in &sorted {
            t.members[id as usize >> 6] |= 1 << (id & 63);
        }
        // Roughly 3 nodes per token for BPE vocabularies; grown as needed.
        let guess = sorted.len() * 3 + 1;
        reserve(&mut t.byte, guess, "grammar.trie")?;
        reserve(&mut t.depth, guess, "grammar.trie")?;
        reserve(&mut t.subtree_end, guess, "grammar.trie")?;
        reserve(&mut t.tok_start, guess + 1, "grammar.trie")?;
        reserve(&mut t.ids, sorted.len(), "grammar.trie")?;
        t.push_node(0, 0)?;
        // Open nodes from the root down the current token's prefix.
        let mut path: Vec<u32> = alloc::vec![0];
        let mut prev: &[u8] = &[];
        for &id in &sorted {
            let bytes = bytes(id);
            let common = prev.iter().zip(bytes).take_while(|(a, b)| a == b).count();
            while path.len() > common + 1 {
                let done = path.pop().unwrap_or(0);
                t.subtree_end[done as usize] = t.byte.len() as u32;
            }
            for (d, &b) in bytes.iter().enumerate().skip(common) {
                reserve(&mut path, 1, "grammar.trie")?;
                path.push(t.byte.len() as u32);
                t.push_node(b, d + 1)?;
            }
            t.ids.push(id);
            prev = bytes;
        }
        while let Some(done) = path.pop() {
            t.subtree_end[done as usize] = t.byte.len() as u32;
        }
        t.tok_start.push(t.ids.len() as u32);
        Ok(t)
    }

    fn push_node(&mut self, b: u8, depth: usize) -> Result<()> {
        for r in [
            reserve(&mut self.byte, 1, "grammar.trie"),
            reserve(&mut self.depth, 1, "grammar.trie"),
            reserve(&mut self.subtree_end, 1, "grammar.trie"),
            reserve(&mut self.tok_start, 2, "grammar.trie"),
        ] {
            r?;
        }
        self.byte.push(b);
        self.depth.push(depth.min(u16::MAX as usize) as u16);
        self.subtree_end.push(0);
        self.tok_start.push(self.ids.len() as u32);
        self.max_depth = self.max_depth.max(depth);
        Ok(())
    }

    pub fn n_nodes(&self) -> usize {
        self.byte.len()
    }

    /// The vocabulary's size (token ids `0..n_vocab`).
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// Words of a mask over this vocabulary.
    pub fn mask_words(&self) -> usize {
        self.n_vocab.div_ceil(64)
    }

    pub fn heap_bytes(&self) -> usize {
        self.byte.capacity()
            + self.depth.capacity() * 2
            + (self.subtree_end.capacity() + self.tok_start.capacity() + self.ids.capacity()) * 4
            + self.members.capacity() * 8
    }

    /// Whether token `id` is in the trie (a text token a grammar can allow).
    pub fn contains(&self, id: u32) -> bool {
        self.members.get(id as usize >> 6).is_some_and(|w| w & (1 << (id & 63)) != 0)
    }

    /// Whether [`VocabTrie::mask`] would allow any token: the same walk, stopped at the first
    /// token it allows (usually a few nodes in).
    pub fn any_allowed(&self, m: &mut Matcher) -> bool {
        self.walk(m, |_| true)
    }

    /// Sets in `out` (zeroed first) the bit of every token the matcher can take next.
    pub fn mask(&self, m: &mut Matcher, out: &mut [u64]) {
        out.fill(0);
        self.walk(m, |id| {
            out[id as usize >> 6] |= 1 << (id & 63);
            false
        });
    }

    /// Walks the trie with the matcher, calling `allowed` on every token the matcher can take next
    /// until it returns `true`; returns whether it did. The matcher is unchanged.
    fn walk(&self, m: &mut Matcher, mut allowed: impl FnMut(u32) -> bool) -> bool {
        let g = m.grammar().clone();
        let arena = &mut m.arena;
        let base = (arena.nodes.len(), arena.items.len());
        #[derive(Clone, Copy)]
        struct Level {
            set: Set,
            utf8: Utf8,
            nodes: usize,
            items: usize,
        }
        let mut levels = alloc::vec![Level { set: m.set, utf8: m.utf8, nodes: base.0, items: base.1 }; self.max_depth + 1];
        let mut i = 1;
        let n = self.byte.len();
        while i < n {
            let d = self.depth[i] as usize;
            let parent = levels[d - 1];
            arena.nodes.truncate(parent.nodes);
            arena.items.truncate(parent.items);
            match arena.step_byte(&g, parent.set, parent.utf8, self.byte[i]) {
                None => i = self.subtree_end[i] as usize,
                Some((set, utf8)) => {
                    for &id in &self.ids[self.tok_start[i] as usize..self.tok_start[i + 1] as usize] {
                        if allowed(id) {
                            arena.nodes.truncate(base.0);
                            arena.items.truncate(base.1);
                            return true;
                        }
                    }
                    if set.has_stacks() || utf8.need > 0 {
                        levels[d] = Level { set, utf8, nodes: arena.nodes.len(), items: arena.items.len() };
                        i += 1;
                    } else {
                        i = self.subtree_end[i] as usize;
                    }
                }
            }
        }
        arena.nodes.truncate(base.0);
        arena.items.truncate(base.1);
        false
    }
}

/// Masks by matcher state, for one grammar over one vocabulary.
#[derive(Default)]
pub struct MaskCache {
    /// Which grammar the masks are for (the engine's grammar serial number).
    pub grammar_serial: u64,
    by_key: BTreeMap<Vec<u32>, usize>,
    /// Each mask and how many tokens it allows.
    masks: Vec<(Vec<u64>, u32)>,
    bytes: usize,
    key: Vec<u32>,
    pub hits: u64,
    pub misses: u64,
}

impl MaskCache {
    pub fn new(grammar_serial: u64) -> MaskCache {
        MaskCache { grammar_serial, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.masks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }

    /// The mask for the matcher's state and its count of allowed tokens, computed on a miss.
    pub fn get(&mut self, trie: &VocabTrie, m: &mut Matcher) -> Result<(&[u64], u32)> {
        m.arena.key(m.set, &m.utf8, &mut self.key);
        if let Some(&i) = self.by_key.get(&self.key) {
            self.hits += 1;
            let (mask, n) = &self.masks[i];
            return Ok((mask, *n));
        }
        self.misses += 1;
        let words = trie.mask_words();
        if self.bytes + words * 8 > MAX_CACHE_BYTES {
            self.by_key.clear();
            self.masks.clear();
            self.bytes = 0;
        }
        let mut mask = Vec::new();
        reserve(&mut mask, words, "grammar.mask")?;
        mask.resize(words, 0);
        let mut key = Vec::new();
        reserve(&mut key, self.key.len(), "grammar.mask")?;
        key.extend_from_slice(&self.key);
        reserve(&mut self.masks, 1, "grammar.mask")?;
        trie.mask(m, &mut mask);
        let n = mask.iter().map(|w| w.count_ones()).sum();
        self.bytes += words * 8 + key.len() * 4;
        self.by_key.insert(key, self.masks.len());
        self.masks.push((mask, n));
        let (mask, n) = &self.masks[self.masks.len() - 1];
        Ok((mask, *n))
    }
}
