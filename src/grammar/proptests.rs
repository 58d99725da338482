//! Property tests: random grammars, strings drawn by walking the matcher, and an independent
//! recognizer (set-of-end-positions over the grammar's expression tree) that must accept every
//! one; and token masks from the trie walk equal to testing each token on its own.

use alloc::collections::BTreeSet;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use std::format;

use proptest::prelude::*;

use super::gbnf;
use super::matcher::Matcher;
use super::trie::VocabTrie;
use super::Grammar;

/// A grammar expression; `Ref(i)` names rule `i`, always a later rule (no recursion, so the
/// recognizer below terminates).
#[derive(Clone, Debug)]
enum Expr {
    Lit(String),
    Class(Vec<char>, bool),
    Seq(Vec<Expr>),
    Alt(Vec<Expr>),
    Rep(Box<Expr>, u32, Option<u32>),
    Ref(usize),
}

const ALPHABET: &[char] = &['a', 'b', 'c', 'é', '日'];

fn expr(depth: u32) -> BoxedStrategy<Expr> {
    let leaf = prop_oneof![
        proptest::collection::vec(proptest::sample::select(ALPHABET), 1..3).prop_map(|c| Expr::Lit(c.into_iter().collect())),
        (proptest::collection::vec(proptest::sample::select(ALPHABET), 1..3), any::<bool>()).prop_map(|(c, n)| Expr::Class(c, n)),
        (0usize..3).prop_map(Expr::Ref),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        2 => leaf,
        1 => proptest::collection::vec(expr(depth - 1), 1..4).prop_map(Expr::Seq),
        1 => proptest::collection::vec(expr(depth - 1), 1..4).prop_map(Expr::Alt),
        1 => (expr(depth - 1), 0u32..3, proptest::option::of(0u32..3)).prop_map(|(e, m, n)| Expr::Rep(Box::new(e), m, n.map(|n| m + n))),
    ]
    .boxed()
}

fn render(e: &Expr, rule: usize, n_rules: usize, out: &mut String) {
    match e {
        Expr::Lit(s) => out.push_str(&format!("\"{s}\"")),
        Expr::Class(c, neg) => out.push_str(&format!("[{}{}]", if *neg { "^" } else { "" }, c.iter().collect::<String>())),
        Expr::Seq(v) | Expr::Alt(v) => {
            out.push('(');
            for (i, x) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(if matches!(e, Expr::Alt(_)) { " | " } else { " " });
                }
                render(x, rule, n_rules, out);
            }
            out.push(')');
        }
        Expr::Rep(x, m, n) => {
            render(x, rule, n_rules, out);
            match n {
                Some(n) => out.push_str(&format!("{{{m},{n}}}")),
                None => out.push_str(&format!("{{{m},}}")),
            }
        }
        Expr::Ref(i) => {
            let target = rule + 1 + i;
            if target < n_rules {
                out.push_str(&format!("r{target}"));
            } else {
                out.push_str("\"z\"");
            }
        }
    }
}

/// End positions of `e` matched from `start` in `s`.
fn ends(e: &Expr, rules: &[Expr], rule: usize, s: &[char], start: usize) -> BTreeSet<usize> {
    let mut out = BTreeSet::new();
    match e {
        Expr::Lit(l) => {
            let l: Vec<char> = l.chars().collect();
            if s[start..].starts_with(&l) {
                out.insert(start + l.len());
            }
        }
        Expr::Class(c, neg) => {
            if start < s.len() && c.contains(&s[start]) != *neg {
                out.insert(start + 1);
            }
        }
        Expr::Seq(v) => {
            let mut cur = BTreeSet::from([start]);
            for x in v {
                cur = cur.iter().flat_map(|&p| ends(x, rules, rule, s, p)).collect();
            }
            out = cur;
        }
        Expr::Alt(v) => {
            for x in v {
                out.extend(ends(x, rules, rule, s, start));
            }
        }
        Expr::Rep(x, m, n) => {
            let mut cur = BTreeSet::from([start]);
            let mut k = 0;
            loop {
                if k >= *m {
                    out.extend(cur.iter().copied());
                }
                if n.is_some_and(|n| k >= n) || cur.is_empty() {
                    break;
                }
                let next: BTreeSet<usize> = cur.iter().flat_map(|&p| ends(x, rules, rule, s, p)).collect();
                // Unbounded repetition of something that can match empty: stop at a fixpoint.
                if n.is_none() && k >= *m && next.is_subset(&out) {
                    break;
                }
                cur = next;
                k += 1;
                if k > 64 {
                    break;
                }
            }
        }
        Expr::Ref(i) => {
            let target = rule + 1 + i;
            if target < rules.len() {
                out = ends(&rules[target], rules, target, s, start);
            } else if s.get(start) == Some(&'z') {
                out.insert(start + 1);
            }
        }
    }
    out
}

fn grammar_text(rules: &[Expr]) -> String {
    let mut text = String::new();
    for (i, r) in rules.iter().enumerate() {
        text.push_str(if i == 0 { "root ::= " } else { "" });
        if i > 0 {
            text.push_str(&format!("r{i} ::= "));
        }
        render(r, i, rules.len(), &mut text);
        text.push('\n');
    }
    text
}

fn compile(rules: &[Expr]) -> Option<Rc<Grammar>> {
    // Nullable repetitions are refused as left recursion, empty classes as an empty language:
    // both are legitimate refusals, so such draws are skipped.
    gbnf::parse(grammar_text(rules).as_bytes()).ok().map(Rc::new)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn generated_strings_are_in_the_language(rules in proptest::collection::vec(expr(3), 1..4), picks in proptest::collection::vec(any::<u16>(), 40)) {
        let Some(g) = compile(&rules) else { return Ok(()) };
        let all: Vec<char> = ALPHABET.iter().copied().chain(['z', 'x']).collect();
        let mut m = Matcher::new(g);
        let mut s = String::new();
        for p in picks {
            let options: Vec<char> = all.iter().copied().filter(|c| { let mut t = m.clone(); t.accept_bytes(c.encode_utf8(&mut [0; 4]).as_bytes()) }).collect();
            if options.is_empty() || (m.is_complete() && p % 4 == 0) {
                break;
            }
            let c = options[p as usize % options.len()];
            prop_assert!(m.accept_bytes(c.encode_utf8(&mut [0; 4]).as_bytes()));
            s.push(c);
        }
        if m.is_complete() {
            let chars: Vec<char> = s.chars().collect();
            prop_assert!(ends(&rules[0], &rules, 0, &chars, 0).contains(&chars.len()), "{:?} not in\n{}", s, grammar_text(&rules));
        }
        // And the recognizer's sentences are the matcher's: check the drawn string's prefixes.
        let chars: Vec<char> = s.chars().collect();
        for k in 0..=chars.len() {
            let prefix: String = chars[..k].iter().collect();
            let mut t = Matcher::new(m.grammar().clone());
            prop_assert!(t.accept_bytes(prefix.as_bytes()));
            prop_assert_eq!(t.is_complete(), ends(&rules[0], &rules, 0, &chars[..k], 0).contains(&k), "{:?} in\n{}", prefix, grammar_text(&rules));
        }
    }

    #[test]
    fn trie_masks_equal_token_by_token_checks(rules in proptest::collection::vec(expr(2), 1..3), prefix_picks in proptest::collection::vec(any::<u8>(), 0..4)) {
        let Some(g) = compile(&rules) else { return Ok(()) };
        // A toy vocabulary: single characters, pairs, and the bytes of multi-byte characters split.
        let mut vocab: Vec<Vec<u8>> = Vec::new();
        for a in ALPHABET.iter().chain(&['z']) {
            let ab = a.to_string().into_bytes();
            vocab.push(ab.clone());
            vocab.extend((1..ab.len()).map(|k| ab[..k].to_vec()));
            vocab.extend((1..ab.len()).map(|k| ab[k..].to_vec()));
            for b in ALPHABET {
                vocab.push(format!("{a}{b}").into_bytes());
            }
        }
        vocab.push(Vec::new());
        let trie = VocabTrie::from_tokens(vocab.len(), |id| &vocab[id as usize]).unwrap();
        let mut m = Matcher::new(g);
        for p in prefix_picks {
            let allowed: Vec<usize> = (0..vocab.len()).filter(|&i| !vocab[i].is_empty() && m.clone().accept_bytes(&vocab[i])).collect();
            if allowed.is_empty() { break; }
            prop_assert!(m.accept_bytes(&vocab[allowed[p as usize % allowed.len()]]));
        }
        let mut mask = alloc::vec![0u64; trie.mask_words()];
        trie.mask(&mut m, &mut mask);
        for (i, t) in vocab.iter().enumerate() {
            let want = !t.is_empty() && m.clone().accept_bytes(t);
            prop_assert_eq!(mask[i / 64] >> (i % 64) & 1 == 1, want, "token {:?}", String::from_utf8_lossy(t));
        }
    }
}
