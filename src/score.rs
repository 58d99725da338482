//! Scoring a token sequence, the yardstick of a model: for each position, the natural-log
//! probability the model gives the token that follows and the token it finds most likely there
//! (the `score_tokens` export runs this inside the engine), the windows a host scores a text longer
//! than the context in, and the perplexity of the scored tokens.
//!
//! The arithmetic is fixed so that every host reproduces the same figures bit for bit (the header
//! states it too): log-softmax with the maximum logit subtracted and the sum of exponentials in
//! f64, with `libm` (fdlibm's `exp` and `log`, the algorithms JavaScript's `Math.exp` also uses).

use alloc::vec::Vec;

use crate::error::{oom, Error, Result, Status};
use crate::sampler::argmax;

/// `ln softmax(logits)[target]`, and the argmax of `logits`, for one position:
/// `m = logits[argmax]` (the largest logit, lowest id on ties, as greedy decoding picks),
/// `s = Σ_i exp(f64(logits[i]) - f64(m))` summed in id order in f64,
/// `ln p = (f64(logits[target]) - f64(m)) - ln(s)`, rounded once to f32.
/// Subtracting the maximum keeps every exponent ≤ 0, so nothing overflows; `s ≥ 1`.
pub fn log_prob_and_argmax(logits: &[f32], target: u32) -> (f32, u32) {
    let best = argmax(logits);
    let m = f64::from(logits[best as usize]);
    let s: f64 = logits.iter().fold(0.0, |acc, &x| acc + libm::exp(f64::from(x) - m));
    let lp = (f64::from(logits[target as usize]) - m) - libm::log(s);
    (lp as f32, best)
}

/// exp(mean(nll)) with the mean summed in f64 from 0.0 in token order and `libm::exp` (fdlibm; JS
/// `Math.exp` gives the same double). `None` for no tokens.
pub fn perplexity(nll: &[f32]) -> Option<f64> {
    if nll.is_empty() {
        return None;
    }
    let sum = nll.iter().fold(0.0f64, |acc, &x| acc + f64::from(x));
    Some(libm::exp(sum / nll.len() as f64))
}

/// One `score_tokens` call of a long text: tokens `[start, end)` from an empty cache, scoring
/// those at `start + first_scored ..end` (the ones before are context only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
    /// Relative to `start`, as `score_tokens` takes it.
    pub first_scored: usize,
}

/// The windows a text of `n_tokens` is scored in with a context of `context` positions, so that
/// every token after the first is scored exactly once:
/// - `n_tokens ≤ context`: one window, the whole text, scoring from token 1.
/// - Otherwise windows of `context` tokens (the last may be shorter) starting every
///   `stride = context / 2` tokens: window 0 scores tokens `1..context`; window k ≥ 1 covers
///   `[k·stride, min(k·stride + context, n))` and scores only the tokens after the previous window's
///   end, each then seen with at least `context - stride` tokens before it. A window after the first
///   starts mid-text, with no BOS.
///
/// `context < 2` with `n_tokens > context` has no valid windowing and yields nothing; so do fewer
/// than 2 tokens.
pub fn windows(n_tokens: usize, context: usize) -> impl Iterator<Item = Window> {
    let stride = context / 2;
    let valid = n_tokens >= 2 && (n_tokens <= context || stride >= 1);
    let mut next = valid.then_some(Window { start: 0, end: n_tokens.min(context), first_scored: 1 });
    core::iter::from_fn(move || {
        let w = next?;
        next = (w.end < n_tokens).then(|| {
            let start = w.start + stride;
            Window { start, end: (start + context).min(n_tokens), first_scored: w.end - start }
        });
        Some(w)
    })
}

/// Token ids as `score_tokens` receives them: u32 little-endian each, copied out of host memory.
pub fn ids_from_le(bytes: &[u8]) -> Result<Vec<u32>> {
    let mut ids = Vec::new();
    ids.try_reserve_exact(bytes.len() / 4).map_err(|_| oom("tokens", bytes.len()))?;
    ids.extend(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    Ok(ids)
}

/// The byte length of `n_tokens` u32 ids, or OUT_OF_BOUNDS when it does not fit in 32 bits.
pub fn ids_len(n_tokens: u32) -> Result<u32> {
    n_tokens.checked_mul(4).ok_or_else(|| Error::new(Status::OutOfBounds, "n_tokens", n_tokens as u64, "n_tokens * 4 bytes overflows the address space"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn log_probs_are_a_stable_log_softmax() {
        let logits = [1.0f32, 3.0, 2.0, 3.0];
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        for t in 0..4u32 {
            let (lp, best) = log_prob_and_argmax(&logits, t);
            assert_eq!(best, 1, "the lowest id of the tied maxima, as greedy decoding picks");
            assert!((lp as f64 - ((logits[t as usize] as f64).exp() / z).ln()).abs() < 1e-6);
        }
        // Logits far beyond exp's range still give finite, correct log-probabilities.
        let (lp, best) = log_prob_and_argmax(&[1000.0, 0.0, -1000.0], 1);
        assert_eq!(best, 0);
        assert_eq!(lp, -1000.0);
        let (lp, _) = log_prob_and_argmax(&[5.0], 0);
        assert_eq!(lp, 0.0, "a certain token has log-probability exactly 0");
    }

    #[test]
    fn perplexity_is_exp_of_the_mean() {
        assert_eq!(perplexity(&[]), None);
        assert_eq!(perplexity(&[0.0, 0.0]), Some(1.0));
        let p = perplexity(&[1.0, 2.0, 3.0]).unwrap();
        assert!((p - 2.0f64.exp()).abs() < 1e-12);
    }

    fn scored(n: usize, context: usize) -> Vec<usize> {
        windows(n, context).flat_map(|w| (w.start + w.first_scored)..w.end).collect()
    }

    #[test]
    fn windows_score_every_token_after_the_first_once() {
        assert_eq!(windows(5, 8).collect::<Vec<_>>(), vec![Window { start: 0, end: 5, first_scored: 1 }]);
        assert_eq!(
            windows(10, 4).collect::<Vec<_>>(),
            vec![
                Window { start: 0, end: 4, first_scored: 1 },
                Window { start: 2, end: 6, first_scored: 2 },
                Window { start: 4, end: 8, first_scored: 2 },
                Window { start: 6, end: 10, first_scored: 2 },
            ]
        );
        for context in 2..12 {
            for n in 2..40 {
                assert_eq!(scored(n, context), (1..n).collect::<Vec<_>>(), "n {n}, context {context}");
                for w in windows(n, context) {
                    assert!(w.end - w.start <= context && w.first_scored >= 1 && w.start + w.first_scored < w.end);
                }
            }
        }
        assert_eq!(windows(1, 8).count(), 0);
        assert_eq!(windows(0, 8).count(), 0);
        assert_eq!(windows(3, 1).count(), 0);
    }

    #[test]
    fn ids_are_little_endian_words() {
        assert_eq!(ids_from_le(&[1, 0, 0, 0, 0, 1, 0, 0]).unwrap(), vec![1, 256]);
        assert_eq!(ids_len(3).unwrap(), 12);
        assert_eq!(ids_len(u32::MAX / 4 + 1).unwrap_err().status, Status::OutOfBounds);
    }
}
