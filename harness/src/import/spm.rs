//! Merge tables for SentencePiece-BPE vocabularies, which ship scores instead of merges.
//!
//! llama2.c's `encode` (run.c) and llama.cpp's `llm_tokenizer_spm` repeatedly merge the adjacent
//! pair whose concatenation is a vocabulary token with the highest score, the leftmost pair on ties.
//! The same encoder, written as SLM1 merges: every way of splitting a normal token `t` into two
//! normal tokens `a ++ b` is a merge `(a, b) → t`, and its rank is `t`'s position among the distinct
//! scores, highest first, so "lowest rank, leftmost on ties" picks exactly the pair they pick.

use std::collections::HashMap;

use anyhow::{ensure, Result};

use crate::spec::{token_type, MergeSpec, TokenSpec};

/// Tokens that text can be merged into or out of: normal ones. Byte tokens only appear by byte
/// fallback, control/unknown/unused tokens never come from text, and user-defined tokens are cut out
/// of the text before merging (the runtime does so, as llama.cpp does): Gemma's runs of spaces are
/// user-defined, and a merge into one would join spaces llama.cpp leaves apart (it merges `▁`, which
/// those tokens do not contain; the runtime reads `▁` in the text as a space).
fn mergeable(t: &TokenSpec) -> bool {
    t.token_type == token_type::NORMAL
}

/// A UTF-8 character starts at `i` unless the byte there is a continuation byte (0b10xx_xxxx).
fn is_char_start(bytes: &[u8], i: usize) -> bool {
    bytes.get(i).is_none_or(|&b| b & 0xC0 != 0x80)
}

/// All merges of `tokens` (ids are positions) in priority order; see the module docs.
/// A token whose text repeats an earlier token's is neither split nor used as a part (the first id
/// wins, as a lookup by text would give).
pub fn sentencepiece_merges(tokens: &[TokenSpec]) -> Result<Vec<MergeSpec>> {
    let mut id_of: HashMap<&[u8], u32> = HashMap::with_capacity(tokens.len());
    for (id, t) in tokens.iter().enumerate() {
        if mergeable(t) && !t.bytes.is_empty() {
            ensure!(t.score.is_finite(), "token {id}: score {} is not finite", t.score);
            id_of.entry(&t.bytes).or_insert(id as u32);
        }
    }

    let mut merges = Vec::new();
    for (id, t) in tokens.iter().enumerate() {
        let id = id as u32;
        if id_of.get(t.bytes.as_slice()) != Some(&id) {
            continue; // not mergeable, empty, or a repeated text
        }
        for split in 1..t.bytes.len() {
            if !is_char_start(&t.bytes, split) {
                continue;
            }
            let (a, b) = t.bytes.split_at(split);
            if let (Some(&left), Some(&right)) = (id_of.get(a), id_of.get(b)) {
                merges.push(MergeSpec { left, right, result: id, rank: 0 });
            }
        }
    }

    // Dense ranks over the distinct result scores, highest first. `+ 0.0` folds -0.0 into 0.0 so
    // the two compare equal, as they do for llama2.c's `>`.
    let score_of = |id: u32| tokens[id as usize].score + 0.0;
    let mut scores: Vec<f32> = merges.iter().map(|m| score_of(m.result)).collect();
    scores.sort_unstable_by(|a, b| b.total_cmp(a));
    scores.dedup();
    for m in &mut merges {
        let s = score_of(m.result);
        // The score is in the list, so the search finds it.
        let rank = scores.partition_point(|x| x.total_cmp(&s).is_gt());
        m.rank = rank as u32;
    }
    // Stable: within a rank, merges stay in (result id, split position) order.
    merges.sort_by_key(|m| m.rank);
    Ok(merges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(text: &str, score: f32) -> TokenSpec {
        TokenSpec { bytes: text.as_bytes().to_vec(), score, token_type: token_type::NORMAL }
    }

    /// llama2.c's encoder over a vocabulary of texts: highest-scoring merge first, leftmost on ties
    /// (run.c `encode`, without the byte fallback).
    fn llama2c_encode(vocab: &[TokenSpec], text: &str) -> Vec<u32> {
        let find = |s: &[u8]| vocab.iter().position(|t| t.bytes == s && mergeable(t)).map(|i| i as u32);
        let mut ids: Vec<u32> = text.chars().map(|c| find(c.to_string().as_bytes()).unwrap()).collect();
        loop {
            let mut best: Option<(f32, usize, u32)> = None;
            for i in 0..ids.len().saturating_sub(1) {
                let mut s = vocab[ids[i] as usize].bytes.clone();
                s.extend_from_slice(&vocab[ids[i + 1] as usize].bytes);
                if let Some(id) = find(&s) {
                    if best.is_none_or(|(score, _, _)| vocab[id as usize].score > score) {
                        best = Some((vocab[id as usize].score, i, id));
                    }
                }
            }
            match best {
                None => return ids,
                Some((_, i, id)) => {
                    ids[i] = id;
                    ids.remove(i + 1);
                }
            }
        }
    }

    /// The runtime's rule over a merge table: lowest rank first, leftmost on ties.
    fn merge_table_encode(vocab: &[TokenSpec], merges: &[MergeSpec], text: &str) -> Vec<u32> {
        let find = |s: &[u8]| vocab.iter().position(|t| t.bytes == s && mergeable(t)).map(|i| i as u32);
        let mut ids: Vec<u32> = text.chars().map(|c| find(c.to_string().as_bytes()).unwrap()).collect();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..ids.len().saturating_sub(1) {
                if let Some(m) = merges.iter().find(|m| m.left == ids[i] && m.right == ids[i + 1]) {
                    if best.is_none_or(|(rank, _, _)| m.rank < rank) {
                        best = Some((m.rank, i, m.result));
                    }
                }
            }
            match best {
                None => return ids,
                Some((_, i, id)) => {
                    ids[i] = id;
                    ids.remove(i + 1);
                }
            }
        }
    }

    fn vocab() -> Vec<TokenSpec> {
        let mut v = vec![
            TokenSpec { bytes: b"<unk>".to_vec(), score: 0.0, token_type: token_type::UNKNOWN },
            TokenSpec { bytes: b"<s>".to_vec(), score: 0.0, token_type: token_type::CONTROL },
            TokenSpec { bytes: vec![b'a'], score: 0.0, token_type: token_type::BYTE },
        ];
        for (t, s) in [
            (" ", -1.0),
            ("a", -2.0),
            ("b", -3.0),
            ("c", -4.0),
            ("é", -5.0),
            ("ab", -6.0),
            ("bc", -6.0),
            ("abc", -7.0),
            (" a", -8.0),
            ("cé", -0.0),
            ("aa", -9.0),
            ("aaa", -10.0),
            ("ab", -11.0), // repeated text: ignored
        ] {
            v.push(tok(t, s));
        }
        v
    }

    #[test]
    fn merges_are_every_split_ranked_by_score() {
        let v = vocab();
        let merges = sentencepiece_merges(&v).unwrap();
        let id = |s: &str| v.iter().position(|t| t.bytes == s.as_bytes() && t.token_type == token_type::NORMAL).unwrap() as u32;
        let got: Vec<(u32, u32, u32, u32)> = merges.iter().map(|m| (m.left, m.right, m.result, m.rank)).collect();
        let want = vec![
            (id("c"), id("é"), id("cé"), 0), // score -0.0 ranks with 0.0, above -6
            (id("a"), id("b"), id("ab"), 1),
            (id("b"), id("c"), id("bc"), 1), // same score as "ab": same rank
            (id("a"), id("bc"), id("abc"), 2),
            (id("ab"), id("c"), id("abc"), 2),
            (id(" "), id("a"), id(" a"), 3),
            (id("a"), id("a"), id("aa"), 4),
            (id("a"), id("aa"), id("aaa"), 5),
            (id("aa"), id("a"), id("aaa"), 5),
        ];
        assert_eq!(got, want);
        // Ranks are non-decreasing, results never control/byte tokens.
        assert!(merges.windows(2).all(|w| w[0].rank <= w[1].rank));
    }

    #[test]
    fn merge_table_reproduces_llama2c_encoder() {
        let v = vocab();
        let merges = sentencepiece_merges(&v).unwrap();
        for text in ["abc", " abc", "aaaa", "abcé", "cabca", "bcab", "aaabcaa", " a a ab"] {
            assert_eq!(merge_table_encode(&v, &merges, text), llama2c_encode(&v, text), "text {text:?}");
        }
    }

    #[test]
    fn nonfinite_score_is_an_error() {
        let mut v = vocab();
        v[4].score = f32::NAN;
        let err = sentencepiece_merges(&v).unwrap_err().to_string();
        assert!(err.contains("token 4") && err.contains("not finite"), "{err}");
    }
}
