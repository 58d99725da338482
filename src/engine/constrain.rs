//! How a step's logits are constrained by its grammar: every token the grammar forbids gets `-inf`
//! before the sampler chooses.
//!
//! The whole-vocabulary mask ([`crate::grammar::trie`]) costs a walk of the vocabulary's trie per
//! new grammar state. But the sampler's choice often depends on a few tokens only: greedy decoding
//! on the best allowed one, top-k sampling on the k best allowed ones ([`Sampler::decisive_len`]).
//! So the step first tests the best tokens one by one against the matcher, best first; once it has
//! the ones that decide, every other logit becomes `-inf` and the sampler sees exactly the row the
//! whole mask would have left it after its own top-k, so it chooses the same token and draws the
//! same random numbers. Only when the leading tokens run out before that (the model wants what the
//! grammar forbids) does the step fall back to the whole mask, cached per grammar state.

use alloc::vec::Vec;

use crate::error::Result;
use crate::grammar::matcher::Matcher;
use crate::grammar::trie::{MaskCache, VocabTrie};
use crate::sampler::{self, Sampler};
use crate::tokenizer::Tokenizer;

/// Leading tokens tested before the whole mask is computed: a few times what decides, at least
/// [`MIN_PROBES`] and never more than [`MAX_PROBES`] (each test walks one token's bytes).
pub const MIN_PROBES: usize = 64;
pub const MAX_PROBES: usize = 1024;

/// The vocabulary-sized pieces a constrained step reads and its scratch (sized by
/// [`Scratch::reserve`] when the generation starts, so a step allocates nothing).
#[derive(Default)]
pub struct Scratch {
    /// Ids of the leading tokens, best first.
    leading: Vec<u32>,
    /// The kept tokens and their logits while the row is cleared.
    kept: Vec<(u32, f32)>,
}

impl Scratch {
    pub fn reserve(&mut self) -> Result<()> {
        let (l, k) = (MAX_PROBES.saturating_sub(self.leading.capacity()), MAX_PROBES.saturating_sub(self.kept.capacity()));
        self.leading.try_reserve_exact(l).map_err(|_| crate::error::oom("grammar.leading", MAX_PROBES * 4))?;
        self.kept.try_reserve_exact(k).map_err(|_| crate::error::oom("grammar.leading", MAX_PROBES * 8))
    }
}

/// The tokens' text and which ones end a generation (the tokenizer; a table in tests).
pub trait TokenText {
    /// The text token `id` adds after token `prev` (a SentencePiece tokenizer drops the dummy-prefix
    /// space of the token that starts the text: [`Tokenizer::decode_piece`]).
    fn piece(&self, prev: Option<u32>, id: u32) -> &[u8];
    /// Whether [`TokenText::piece`] after `prev` can differ from the bytes the trie holds.
    fn piece_trimmed_after(&self, prev: Option<u32>) -> bool;
    /// An end-of-generation token (or the EOS token): allowed exactly where the sentence is complete.
    fn ends_generation(&self, id: u32) -> bool;
}

impl TokenText for Tokenizer {
    fn piece(&self, prev: Option<u32>, id: u32) -> &[u8] {
        self.decode_piece(prev, id)
    }

    fn piece_trimmed_after(&self, prev: Option<u32>) -> bool {
        self.adds_space_prefix() && (prev.is_none() || prev == self.bos_id())
    }

    fn ends_generation(&self, id: u32) -> bool {
        self.is_end_of_generation(id) || self.eos_id() == Some(id)
    }
}

/// What one constrained step needs to know about the vocabulary and the grammar.
pub struct Vocab<'a, T: TokenText + ?Sized> {
    /// The trie of `tokens`' text tokens (end-of-generation tokens left out).
    pub trie: &'a VocabTrie,
    pub tokens: &'a T,
    /// The token the next one follows (the context's last; `None` at the start of the text).
    pub prev: Option<u32>,
    /// End-of-generation tokens may come now (the sentence is complete and they are not ignored).
    pub eog_allowed: bool,
}

impl<T: TokenText + ?Sized> Vocab<'_, T> {
    /// The whole mask's verdict on one token.
    fn allows(&self, m: &mut Matcher, id: u32) -> bool {
        (self.eog_allowed && self.tokens.ends_generation(id)) || self.allows_text(m, id)
    }

    fn allows_text(&self, m: &mut Matcher, id: u32) -> bool {
        self.trie.contains(id) && m.allows_bytes(self.tokens.piece(self.prev, id))
    }

    /// The trie spells every token as it reads here (else tokens are tested one by one).
    fn trie_spells_pieces(&self) -> bool {
        !self.tokens.piece_trimmed_after(self.prev)
    }

    /// Whether any text token may come next (asked before the model runs).
    pub fn any_allowed(&self, m: &mut Matcher) -> bool {
        if self.trie_spells_pieces() {
            self.trie.any_allowed(m)
        } else {
            (0..self.trie.n_vocab() as u32).any(|id| self.allows_text(m, id))
        }
    }
}

/// How a step's allowed set was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// From the leading tokens alone.
    Leading,
    /// From the whole-vocabulary mask.
    WholeMask,
}

/// Sets every logit the grammar forbids to `-inf` (or, on the leading route, every logit that
/// cannot change the sampler's choice). `logits` are the sampler's adjusted ones
/// ([`Sampler::adjust`]). The matcher is unchanged; on error (the whole mask's memory) `logits`
/// may be partly cleared and the caller recomputes them.
pub fn constrain<T: TokenText + ?Sized>(
    logits: &mut [f32],
    m: &mut Matcher,
    vocab: &Vocab<T>,
    sampler: &mut Sampler,
    cache: &mut MaskCache,
    scratch: &mut Scratch,
) -> Result<Route> {
    if let Some(k) = sampler.decisive_len() {
        if keep_leading_allowed(logits, m, vocab, sampler, k, scratch) {
            return Ok(Route::Leading);
        }
    }
    if !vocab.trie_spells_pieces() {
        // Where the text starts with a trimmed piece (once per generation at most) the trie's
        // spelling is not the text's: test every token on its own, uncached.
        for (id, l) in logits.iter_mut().enumerate() {
            if !vocab.allows(m, id as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        return Ok(Route::WholeMask);
    }
    let (mask, _) = cache.get(vocab.trie, m)?;
    for (id, l) in logits.iter_mut().enumerate() {
        let id = id as u32;
        let in_mask = mask.get(id as usize >> 6).is_some_and(|w| w & (1 << (id & 63)) != 0);
        let allowed = in_mask || (vocab.eog_allowed && vocab.tokens.ends_generation(id));
        if !allowed {
            *l = f32::NEG_INFINITY;
        }
    }
    Ok(Route::WholeMask)
}

/// The leading route: finds the `k` best allowed tokens among the best [`probes`] tokens and
/// clears every other logit. `false` (row untouched) when they are not all found there, unless
/// the probes covered every finite logit and found at least one allowed token (then the allowed
/// set is complete).
fn keep_leading_allowed<T: TokenText + ?Sized>(
    logits: &mut [f32],
    m: &mut Matcher,
    vocab: &Vocab<T>,
    sampler: &mut Sampler,
    k: usize,
    scratch: &mut Scratch,
) -> bool {
    let n_probes = probes(k);
    if n_probes == 0 {
        return false;
    }
    let Scratch { leading, kept } = scratch;
    kept.clear();
    // Greedy's usual case first: the best token is allowed, found with one pass over the row.
    let best = sampler::argmax(logits);
    if k == 1 && logits.get(best as usize).is_some_and(|l| *l > f32::NEG_INFINITY) && vocab.allows(m, best) {
        kept.push((best, logits[best as usize]));
    } else {
        sampler.leading_tokens(logits, n_probes, leading);
        for &id in leading.iter() {
            if vocab.allows(m, id) {
                kept.push((id, logits[id as usize]));
                if kept.len() == k {
                    break;
                }
            }
        }
        // Fewer than the probes means every finite logit was probed: what was found is all there is.
        let every_finite_probed = leading.len() < n_probes;
        let decided = kept.len() == k || (every_finite_probed && !kept.is_empty());
        if !decided {
            return false;
        }
    }
    logits.fill(f32::NEG_INFINITY);
    for &(id, l) in kept.iter() {
        logits[id as usize] = l;
    }
    true
}

/// Leading tokens to test when `k` decide; 0 means "go straight to the whole mask".
fn probes(k: usize) -> usize {
    if k == 0 || k > MAX_PROBES / 4 {
        0
    } else {
        (4 * k).clamp(MIN_PROBES, MAX_PROBES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::gbnf;
    use crate::sampler::SamplingParams;
    use alloc::rc::Rc;
    use alloc::vec;
    use proptest::prelude::*;

    /// A table vocabulary; the last token ends generation. With `space_prefix`, the text's first
    /// piece (after no token, or after token 0 as BOS) loses a leading space.
    struct Table(Vec<Vec<u8>>, bool);

    impl Table {
        fn token_bytes(&self, id: u32) -> &[u8] {
            self.0.get(id as usize).map_or(&[], |t| t)
        }
    }

    impl TokenText for Table {
        fn piece(&self, prev: Option<u32>, id: u32) -> &[u8] {
            let bytes = self.token_bytes(id);
            match bytes.split_first() {
                Some((b' ', rest)) if self.piece_trimmed_after(prev) => rest,
                _ => bytes,
            }
        }
        fn piece_trimmed_after(&self, prev: Option<u32>) -> bool {
            self.1 && matches!(prev, None | Some(0))
        }
        fn ends_generation(&self, id: u32) -> bool {
            id as usize == self.0.len() - 1
        }
    }

    const GRAMMARS: &[&str] = &[
        r#"root ::= "{" ws "\"a\":" ws num ("," ws "\"b\":" ws str)? ws "}"
           num ::= "-"? [0-9]+ ("." [0-9]+)?
           str ::= "\"" [^"\\]{0,6} "\""
           ws ::= [ ]?"#,
        r#"root ::= ("yes" | "no" | "maybe") "." | [a-c]+ "é"?"#,
        r#"root ::= item ("," item)*
           item ::= [0-9] | "日" [a-b]*"#,
    ];

    const PIECES: &[&str] = &[
        "{", "}", "\"", "\"a\":", "\"b\":", ",", " ", "-", "0", "1", "12", "9.", ".5", "a", "b", "c", "ab", "é", "日", "日a", "LEAD", "yes", "no", "may", "be",
        ".", "x", "\\", "\"}", "1,", "ca",
    ];

    fn vocab_table(extra: &[Vec<u8>], space_prefix: bool) -> Table {
        let mut tokens: Vec<Vec<u8>> = PIECES.iter().map(|p| if *p == "LEAD" { vec![0xC3] } else { p.as_bytes().to_vec() }).collect();
        tokens.extend(extra.iter().cloned());
        tokens.push(Vec::new()); // the end-of-generation token: no text
        Table(tokens, space_prefix)
    }

    /// The reference: the whole mask (computed before the sampler's adjustments; by the trie walk
    /// unless the first piece is trimmed, then by feeding each token's text to a copy of the
    /// matcher), end of generation restored where allowed, then the sampler.
    fn reference_choice(logits: &[f32], m: &mut Matcher, vocab: &Vocab<Table>, sampler: &mut Sampler, recent: &[u32]) -> u32 {
        let mut mask = vec![0u64; vocab.trie.mask_words()];
        if vocab.tokens.piece_trimmed_after(vocab.prev) {
            for id in 0..vocab.tokens.0.len() as u32 - 1 {
                let piece = vocab.tokens.piece(vocab.prev, id);
                if !piece.is_empty() && m.clone().accept_bytes(piece) {
                    mask[id as usize >> 6] |= 1 << (id & 63);
                }
            }
        } else {
            vocab.trie.mask(m, &mut mask);
        }
        let mut row = logits.to_vec();
        for (id, l) in row.iter_mut().enumerate() {
            let allowed = mask[id >> 6] & (1 << (id & 63)) != 0 || (vocab.eog_allowed && vocab.tokens.ends_generation(id as u32));
            if !allowed {
                *l = f32::NEG_INFINITY;
            }
        }
        sampler.sample(&mut row, recent)
    }

    fn logit() -> impl Strategy<Value = f32> {
        // Few distinct values, so ties are common; -inf and NaN as the pipeline may see them.
        prop_oneof![8 => (-6i32..6).prop_map(|x| x as f32 * 0.5), 1 => Just(f32::NEG_INFINITY), 1 => Just(f32::NAN), 1 => Just(f32::INFINITY)]
    }

    fn params() -> impl Strategy<Value = SamplingParams> {
        let greedy = Just(SamplingParams::default());
        let sampled = (
            1u32..20,
            0u32..8,
            prop_oneof![Just(1.0f32), 0.3f32..1.0],
            prop_oneof![Just(0.0f32), 0.0f32..0.5],
            prop_oneof![Just(1.0f32), 1.0f32..2.0],
            any::<u64>(),
        )
            .prop_map(|(t, k, p, mp, rp, seed)| SamplingParams {
                temperature: t as f32 * 0.1,
                top_k: k,
                top_p: p,
                min_p: mp,
                repetition_penalty: rp,
                repetition_window: 8,
                seed,
            });
        prop_oneof![greedy, sampled]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the route, the sampler chooses what the whole mask would have let it choose,
        /// and its random stream stays in step.
        #[test]
        fn leading_route_chooses_what_the_whole_mask_chooses(
            grammar in 0..GRAMMARS.len(),
            extra in proptest::collection::vec(proptest::collection::vec(proptest::sample::select(b"ab0{}\",. \xc3\xa9".to_vec()), 1..4), 0..40),
            walk in proptest::collection::vec(any::<u16>(), 0..6),
            logits_seed in proptest::collection::vec(logit(), 200),
            params in params(),
            recent in proptest::collection::vec(0u32..80, 0..6),
            eog_ignored in any::<bool>(),
            space_prefix in any::<bool>(),
            prev in proptest::option::of(0u32..3),
        ) {
            let table = vocab_table(&extra, space_prefix);
            let n = table.0.len();
            let eog = n as u32 - 1;
            let trie = VocabTrie::from_tokens(n, |id| if id == eog { &[] } else { table.token_bytes(id) }).unwrap();
            let g = Rc::new(gbnf::parse(GRAMMARS[grammar].as_bytes()).unwrap());
            let mut m = Matcher::new(g);
            // Move to some reachable state: take allowed tokens chosen by `walk`.
            for w in walk {
                let allowed: Vec<u32> = (0..eog).filter(|&id| m.allows_bytes(table.token_bytes(id))).collect();
                if allowed.is_empty() {
                    break;
                }
                prop_assert!(m.accept_bytes(table.token_bytes(allowed[w as usize % allowed.len()])));
            }
            let vocab = Vocab { trie: &trie, tokens: &table, prev, eog_allowed: !eog_ignored && m.is_complete() };
            let logits = &logits_seed[..n];
            let mut reference = Sampler::new(params, n);
            let mut ours = reference.clone();
            let mut cache = MaskCache::new(1);
            let mut scratch = Scratch::default();
            scratch.reserve().unwrap();
            for round in 0..3 {
                let expected = reference_choice(logits, &mut m, &vocab, &mut reference, &recent);
                let any = (0..eog).any(|id| !vocab.tokens.piece(prev, id).is_empty() && m.clone().accept_bytes(vocab.tokens.piece(prev, id)));
                prop_assert_eq!(vocab.any_allowed(&mut m), any);
                let mut row = logits.to_vec();
                ours.adjust(&mut row, &recent);
                constrain(&mut row, &mut m, &vocab, &mut ours, &mut cache, &mut scratch).unwrap();
                let got = ours.choose(&row);
                prop_assert_eq!(got, expected, "round {}", round);
            }
        }
    }

    #[test]
    fn greedy_takes_the_leading_route_when_the_best_token_is_allowed() {
        let table = vocab_table(&[], false);
        let n = table.0.len();
        let eog = n as u32 - 1;
        let trie = VocabTrie::from_tokens(n, |id| if id == eog { &[] } else { table.token_bytes(id) }).unwrap();
        let mut m = Matcher::new(Rc::new(gbnf::parse(GRAMMARS[0].as_bytes()).unwrap()));
        let vocab = Vocab { trie: &trie, tokens: &table, prev: Some(5), eog_allowed: false };
        let mut sampler = Sampler::new(SamplingParams::default(), n);
        let (mut cache, mut scratch) = (MaskCache::new(1), Scratch::default());
        scratch.reserve().unwrap();
        // "{" is token 0 and the only way to start; make "x" (forbidden) the best, "{" second.
        let x = PIECES.iter().position(|p| *p == "x").unwrap();
        let mut row = vec![0.0f32; n];
        row[x] = 5.0;
        row[0] = 4.0;
        assert_eq!(constrain(&mut row, &mut m, &vocab, &mut sampler, &mut cache, &mut scratch).unwrap(), Route::Leading);
        assert_eq!(sampler.choose(&row), 0);
        assert!(row.iter().enumerate().all(|(id, &l)| id == 0 || l == f32::NEG_INFINITY));
        // Every logit -inf but a forbidden one: nothing decides, so the whole mask does.
        let mut row = vec![f32::NEG_INFINITY; n];
        row[x] = 1.0;
        assert_eq!(constrain(&mut row, &mut m, &vocab, &mut sampler, &mut cache, &mut scratch).unwrap(), Route::WholeMask);
        assert_eq!(cache.misses, 1);
    }
}
