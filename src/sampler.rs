//! Next-token selection: turns one row of logits into a token id.
//!
//! # Pipeline (llama.cpp's stages)
//! Each stage is spelled out exactly (operation, order, f32 arithmetic), so that another
//! implementation given the same logits, `recent` tokens, parameters and seed picks the same ids.
//! Only the first `min(logits.len(), n_vocab)` logits are considered, `n_vocab` being the size
//! given to [`Sampler::new`].
//!
//! 0. **Non-finite logits.** NaN becomes `-inf` (the token can never be chosen) and `+inf` becomes
//!    `f32::MAX` (the token wins, tying with any other `+inf`), so no later step meets NaN.
//! 1. **Repetition penalty** (skipped when `repetition_penalty == 1` or `repetition_window == 0`).
//!    The window is the last `min(repetition_window, recent.len())` entries of `recent` (prompt
//!    and generated tokens). Each *distinct* id in it that indexes a considered logit is penalized
//!    once, CTRL / llama.cpp style: `logit > 0 ? logit / penalty : logit * penalty`. Other ids are
//!    ignored.
//! 2. **Greedy** (`temperature == 0`): the id of the largest logit, lowest id on ties; no random
//!    number is drawn and stages 3-7 do not apply. If every logit is `-inf` the result is 0.
//! 3. **Candidates and top-k.** Candidates are the tokens whose logit is not `-inf`. If there are
//!    none, the result is 0 (after the random number of stage 7 is drawn, so the stream stays in
//!    step). If `0 < top_k < candidate count`, only the `top_k` candidates with the largest
//!    logits are kept, ties broken by lower id; found by partial selection (average O(V)), not by
//!    a full sort.
//! 4. **Weights.** `m` = largest candidate logit; for each candidate `x = (logit - m) / temperature`
//!    and weight `w = libm::expf(x)` (the best weight is exactly 1, so `w` is the probability
//!    relative to the best one's). The *stable order* is weight descending, then id ascending:
//!    the probability order, made total.
//! 5. **Min-p** (skipped when `min_p == 0`). Drop the candidates with `x < libm::logf(min_p)`:
//!    those whose probability is below `min_p` times the best one's. (The test is on `x`, so the
//!    tokens it drops need no `expf` unless top-p needs their weight; the best token, `x = 0`, is
//!    always kept.)
//! 6. **Top-p** (skipped when `top_p == 1`, so rounding can never drop a tail that "off" keeps).
//!    `sum` = f32 sum of the weights of *all* the candidates of stage 3 (those min-p dropped too),
//!    taken in ascending id order; `p = w / sum`. Walking the candidates min-p kept in the stable
//!    order, accumulate `p` in f32; keep the tokens up to and including the first one at which the
//!    running sum is `>= top_p` (all of them if it never gets there).
//!    Min-p and top-p each keep a leading part of the probability order, so applying min-p first
//!    keeps what llama.cpp's order (top-p, then min-p) keeps, up to the rounding of `expf`; it lets
//!    top-p walk only what min-p kept.
//! 7. **Draw.** Drop the kept tokens whose weight underflowed to exactly 0: they can never be drawn.
//!    Renormalizing is folded into the target: `total` = f32 sum of the kept weights `w` in
//!    ascending id order, `u = rng.next_f32()`, `target = u * total`. Walking the kept tokens in
//!    ascending id order with a running f32 sum `c` of their weights, the result is the first
//!    token with `target < c`. (`u < 1` and `total >= 1`, as the best token is kept, make
//!    `target < total`, the last `c`, so the walk always ends on a token. Parameters that fail
//!    validation may leave no token or a non-finite `total`: then the result is the last kept
//!    token, or the greedy choice if none is kept.)
//!
//! Every sum is taken in an order fixed by the definition alone: `sum` and `total` in ascending
//! id order, the top-p running sum in the stable order. That order is total, so the top-k set and
//! the sequence of `p` values the top-p walk adds do not depend on how they are found: the
//! implementation sorts only the leading part of the stable order that the walk reaches (see
//! `nucleus_len`), and nothing at all when top-p is off.
//!
//! Exactly one random number is consumed per call when `temperature > 0`, none when it is 0.
//! Every float operation above is a basic IEEE-754 f32 operation, `libm::expf` or `libm::logf`,
//! and every sort uses a total order, so results do not depend on the host.

use alloc::collections::TryReserveError;
use alloc::vec;
use alloc::vec::Vec;

use crate::error::{Error, Result, Status};

/// Largest accepted temperature. Above this every distribution is practically uniform; the bound
/// keeps `(logit - m) / temperature` well away from denormals for any sane logit range.
pub const MAX_TEMPERATURE: f32 = 100.0;
/// Largest accepted repetition penalty. llama.cpp sets no bound; values past ~2 already wreck text,
/// so 10 leaves room for experiments while rejecting typos such as 100.
pub const MAX_REPETITION_PENALTY: f32 = 10.0;

/// Sampling parameters, as passed through the ABI. Check them with [`SamplingParams::validate`]
/// before building a [`Sampler`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (argmax, lowest id on ties); > 0 = sample. Finite, `0..=MAX_TEMPERATURE`.
    pub temperature: f32,
    /// Keep only the `top_k` highest logits; 0 = off.
    pub top_k: u32,
    /// Nucleus size, in `(0, 1]`; 1 = off.
    pub top_p: f32,
    /// Drop tokens with probability below `min_p` times the best one, in `[0, 1)`; 0 = off.
    pub min_p: f32,
    /// CTRL / llama.cpp repetition penalty, in `1..=MAX_REPETITION_PENALTY`; 1 = off.
    pub repetition_penalty: f32,
    /// How many of the most recent tokens (prompt + generated) the penalty looks at; 0 = off.
    pub repetition_window: u32,
    /// Seed of the [`Rng`] stream.
    pub seed: u64,
}

impl Default for SamplingParams {
    /// Greedy decoding with every filter off; a 64-token penalty window ready for when the penalty
    /// is switched on.
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, repetition_window: 64, seed: 0 }
    }
}

/// An `InvalidSampling` error for a float field. `Error::value` is a `u64`, so a float reports its
/// IEEE-754 bit pattern (`f32::to_bits`), which also keeps NaN and infinities distinguishable.
fn invalid_float(field: &'static str, value: f32, rule: &'static str) -> Error {
    Error::new(Status::InvalidSampling, field, u64::from(value.to_bits()), rule)
}

impl SamplingParams {
    /// Checks every rule; the first broken one (in field order) is reported with its field name
    /// (`sampling.temperature`, ...). `top_k`, `repetition_window` and `seed` accept every value.
    pub fn validate(&self) -> Result<()> {
        // Written as `!(in range)` so that NaN, which fails every comparison, is rejected too.
        if !(self.temperature.is_finite() && self.temperature >= 0.0 && self.temperature <= MAX_TEMPERATURE) {
            return Err(invalid_float("sampling.temperature", self.temperature, "must be finite and in 0..=100 (0 = greedy)"));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(invalid_float("sampling.top_p", self.top_p, "must be in (0, 1] (1 = off)"));
        }
        if !(self.min_p >= 0.0 && self.min_p < 1.0) {
            return Err(invalid_float("sampling.min_p", self.min_p, "must be in [0, 1) (0 = off)"));
        }
        if !(self.repetition_penalty >= 1.0 && self.repetition_penalty <= MAX_REPETITION_PENALTY) {
            return Err(invalid_float("sampling.repetition_penalty", self.repetition_penalty, "must be in 1..=10 (1 = off)"));
        }
        Ok(())
    }
}

/// The sampler's pseudo-random generator: xoshiro256** seeded through SplitMix64.
///
/// All arithmetic is on u64 and wraps modulo 2^64; `rotl(x, k)` is a left rotation by `k` bits.
///
/// **Seeding (SplitMix64).** Starting from `x = seed`, four outputs of SplitMix64 become the state
/// `s[0], s[1], s[2], s[3]`, in that order. One SplitMix64 output is:
/// ```text
/// x = x + 0x9E3779B97F4A7C15
/// z = x
/// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
/// z = (z ^ (z >> 27)) * 0x94D049BB133111EB
/// output z ^ (z >> 31)
/// ```
/// (The SplitMix64 output function is a bijection of `x`, so four consecutive outputs are never
/// all zero, the one state xoshiro cannot leave.)
///
/// **`next_u64` (xoshiro256\*\*, Blackman & Vigna 2018).**
/// ```text
/// result = rotl(s[1] * 5, 7) * 9
/// t = s[1] << 17
/// s[2] ^= s[0]
/// s[3] ^= s[1]
/// s[1] ^= s[2]
/// s[0] ^= s[3]
/// s[2] ^= t
/// s[3] = rotl(s[3], 45)
/// output result
/// ```
///
/// **`next_f32`.** Takes one `next_u64` output `r` and returns `(r >> 40) as f32 * 2^-24`: the top
/// 24 bits as an integer, scaled. Both steps are exact in f32, so the value is a multiple of 2^-24
/// in `[0, 1 - 2^-24]` on every host.
///
/// Reference stream: `Rng::new(42)` starts `0x15780B2E0C2EC716`, `0x6104D9866D113A7E`, ...;
/// the test `rng_golden_seed_42` pins the first eight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut splitmix64 = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let s = [splitmix64(), splitmix64(), splitmix64(), splitmix64()];
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// The four state words, for a session snapshot.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    /// The generator in a state [`Rng::state`] returned (all zero is a fixed point of
    /// xoshiro256**; a snapshot with it is refused before it gets here).
    pub fn from_state(s: [u64; 4]) -> Self {
        Rng { s }
    }

    /// Uniform in `[0, 1)`, a multiple of 2^-24 (24 bits is exactly the f32 significand).
    pub fn next_f32(&mut self) -> f32 {
        const TWO_POW_MINUS_24: f32 = 1.0 / 16_777_216.0;
        (self.next_u64() >> 40) as f32 * TWO_POW_MINUS_24
    }
}

/// A token still in the running: its id and, depending on the stage, its logit or its weight.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    id: u32,
    value: f32,
}

/// The stable order (value descending, then id ascending) packed into one integer, so that sorting
/// and selecting compare plain u64s (measured 2-4x faster than a two-field float comparator on a
/// 49152-token row). The float's bits are mapped to a u32 that orders like the float itself
/// (negative: all bits flipped; positive: sign bit set), then inverted for descending. This is
/// IEEE-754 total order, which agrees with `<` on every value the pipeline produces: NaN is gone
/// after stage 0, and stage 0 also turns -0.0 into +0.0 so the two zeros tie as `==` says.
fn stable_order_key(candidate: &Candidate) -> u64 {
    let bits = candidate.value.to_bits();
    let ascending = if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 };
    (u64::from(!ascending) << 32) | u64::from(candidate.id)
}

/// Turns logits into token ids following the pipeline in the module docs. Holds its scratch
/// buffers so that sampling a token allocates nothing.
#[derive(Clone, Debug)]
pub struct Sampler {
    params: SamplingParams,
    rng: Rng,
    /// Vocabulary size the scratch buffers were sized for; longer logit rows are cut to it.
    n_vocab: usize,
    /// Capacity `n_vocab`; refilled for every sampled token.
    candidates: Vec<Candidate>,
    /// `n_vocab` flags, all false between calls; marks ids already penalized in the current window
    /// so that repeats are penalized once.
    penalized: Vec<bool>,
}

impl Sampler {
    /// `params` should have passed [`SamplingParams::validate`]; other values give unspecified (but
    /// never panicking) results. Allocates all scratch memory now.
    pub fn new(params: SamplingParams, vocab_size: usize) -> Self {
        // Token ids are u32; a larger vocabulary cannot be addressed anyway.
        let n_vocab = vocab_size.min(u32::MAX as usize);
        Sampler { params, rng: Rng::new(params.seed), n_vocab, candidates: Vec::with_capacity(n_vocab), penalized: vec![false; n_vocab] }
    }

    /// [`Sampler::new`] for a host that may run out of memory: the vocabulary-sized scratch is
    /// reserved fallibly.
    pub fn try_new(params: SamplingParams, vocab_size: usize) -> core::result::Result<Self, TryReserveError> {
        let n_vocab = vocab_size.min(u32::MAX as usize);
        let mut candidates = Vec::new();
        candidates.try_reserve_exact(n_vocab)?;
        let mut penalized = Vec::new();
        penalized.try_reserve_exact(n_vocab)?;
        penalized.resize(n_vocab, false);
        Ok(Sampler { params, rng: Rng::new(params.seed), n_vocab, candidates, penalized })
    }

    /// New settings and a restarted random stream, as a fresh sampler would have, without
    /// allocating again.
    pub fn set_params(&mut self, params: SamplingParams) {
        self.params = params;
        self.rng = Rng::new(params.seed);
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Where the random stream is, for a session snapshot.
    pub fn rng_state(&self) -> [u64; 4] {
        self.rng.state()
    }

    /// Puts back the parameters and random stream a snapshot saved, so the next token is sampled as
    /// it would have been in the saved conversation.
    pub fn restore(&mut self, params: SamplingParams, rng_state: [u64; 4]) {
        self.params = params;
        self.rng = Rng::from_state(rng_state);
    }

    /// Restarts the random stream from `params.seed`, so a reset session repeats its samples.
    pub fn reseed(&mut self) {
        self.rng = Rng::new(self.params.seed);
    }

    /// Picks the next token. `logits` may be modified in place (stages 0-1: sanitized and
    /// penalized). `recent` = tokens so far (prompt + generated); only the last
    /// `repetition_window` count.
    /// The result is below `min(logits.len(), vocab_size)`, or 0 if that is 0.
    pub fn sample(&mut self, logits: &mut [f32], recent: &[u32]) -> u32 {
        self.adjust(logits, recent);
        self.choose(logits)
    }

    /// Stages 0-1 of [`Sampler::sample`]: sanitizes and penalizes `logits` in place. Elementwise,
    /// and `-inf` stays `-inf`, so forbidding tokens before or after it gives the same row.
    pub fn adjust(&mut self, logits: &mut [f32], recent: &[u32]) {
        let n_logits = logits.len().min(self.n_vocab);
        let logits = &mut logits[..n_logits];
        sanitize_logits(logits);
        self.apply_repetition_penalty(logits, recent);
    }

    /// How many of the best tokens (in the stable order of the adjusted logits) decide the choice:
    /// with every other logit at `-inf`, [`Sampler::choose`] returns the same token and draws the
    /// same random numbers. `None` when every token can matter (sampling without top-k).
    pub fn decisive_len(&self) -> Option<usize> {
        match (self.params.temperature == 0.0, self.params.top_k) {
            (true, _) => Some(1),
            (false, 0) => None,
            (false, k) => Some(k as usize),
        }
    }

    /// Writes into `out` the ids of the (at most) `n` best tokens of the adjusted `logits`, best
    /// first in the stable order (value descending, lower id first on ties), `-inf` left out.
    pub fn leading_tokens(&mut self, logits: &[f32], n: usize, out: &mut Vec<u32>) {
        let logits = &logits[..logits.len().min(self.n_vocab)];
        let candidates = &mut self.candidates;
        candidates.clear();
        candidates.extend(logits.iter().enumerate().filter(|(_, &l)| l > f32::NEG_INFINITY).map(|(id, &value)| Candidate { id: id as u32, value }));
        if n == 0 {
            candidates.clear();
        } else if n < candidates.len() {
            candidates.select_nth_unstable_by_key(n - 1, stable_order_key);
            candidates.truncate(n);
        }
        candidates.sort_unstable_by_key(stable_order_key);
        out.clear();
        out.extend(candidates.iter().map(|c| c.id));
    }

    /// Stages 2-7 of [`Sampler::sample`], on logits [`Sampler::adjust`] has prepared.
    pub fn choose(&mut self, logits: &[f32]) -> u32 {
        let n_logits = logits.len().min(self.n_vocab);
        let logits = &logits[..n_logits];

        let temperature = self.params.temperature;
        if temperature == 0.0 {
            return argmax(logits);
        }
        // Drawn before anything can return early: one number per sampled token, always.
        let u = self.rng.next_f32();
        let params = self.params;
        let candidates = &mut self.candidates;

        // Stage 3: candidates (in id order) and top-k. `best_id` is the greedy choice, the answer
        // only if parameters that failed validation leave nothing to draw from.
        candidates.clear();
        let mut max_logit = f32::NEG_INFINITY;
        let mut best_id = 0;
        for (id, &logit) in logits.iter().enumerate() {
            if logit > f32::NEG_INFINITY {
                candidates.push(Candidate { id: id as u32, value: logit });
                if logit > max_logit {
                    max_logit = logit;
                    best_id = id as u32;
                }
            }
        }
        if candidates.is_empty() {
            return 0;
        }
        let top_k = params.top_k as usize;
        if top_k > 0 && top_k < candidates.len() {
            keep_top_k(candidates, logits, top_k);
        }

        // Stages 4-5: weights and min-p, compacting the candidates in place (still in id order).
        // Zero weights are dropped here already: they add nothing to the top-p walk and sit at the
        // end of the stable order, so dropping them before stage 6 keeps what dropping them after
        // keeps.
        let use_min_p = params.min_p != 0.0;
        let min_x = libm::logf(params.min_p);
        let use_top_p = params.top_p != 1.0;
        // `sum` is used only with top-p, and then every candidate adds its weight.
        let mut sum = 0.0f32;
        let mut n_kept = 0;
        for i in 0..candidates.len() {
            let Candidate { id, value: logit } = candidates[i];
            let x = (logit - max_logit) / temperature;
            let kept_by_min_p = !use_min_p || x >= min_x;
            // Without top-p, a token min-p drops needs no weight at all.
            if kept_by_min_p || use_top_p {
                let w = libm::expf(x);
                sum += w;
                if kept_by_min_p && w > 0.0 {
                    candidates[n_kept] = Candidate { id, value: w };
                    n_kept += 1;
                }
            }
        }
        candidates.truncate(n_kept);

        // Stage 6: top-p. The nucleus comes back first in `candidates`, in the stable order; the
        // draw wants it in id order again.
        if use_top_p {
            let n_nucleus = nucleus_len(candidates, sum, params.top_p);
            candidates.truncate(n_nucleus);
            candidates.sort_unstable_by_key(|c| c.id);
        }

        // Stage 7: draw, in id order.
        let total: f32 = candidates.iter().fold(0.0, |acc, c| acc + c.value);
        let target = u * total;
        let mut cumulative = 0.0f32;
        for candidate in candidates.iter() {
            cumulative += candidate.value;
            if target < cumulative {
                return candidate.id;
            }
        }
        candidates.last().map_or(best_id, |c| c.id)
    }

    /// Stage 1. Each distinct in-vocabulary id of the window is penalized exactly once.
    fn apply_repetition_penalty(&mut self, logits: &mut [f32], recent: &[u32]) {
        let penalty = self.params.repetition_penalty;
        let n_window = (self.params.repetition_window as usize).min(recent.len());
        if penalty == 1.0 || n_window == 0 {
            return;
        }
        let window = &recent[recent.len() - n_window..];
        for &id in window {
            let id = id as usize;
            if id < logits.len() && !self.penalized[id] {
                self.penalized[id] = true;
                let logit = logits[id];
                logits[id] = if logit > 0.0 { logit / penalty } else { logit * penalty };
            }
        }
        // Clear only what was set: O(window), not O(vocab).
        for &id in window {
            if let Some(flag) = self.penalized.get_mut(id as usize) {
                *flag = false;
            }
        }
    }
}

/// Stage 0: NaN → -inf (never chosen), +inf → f32::MAX (chosen, without inf - inf = NaN later),
/// -0.0 → +0.0 (so [`stable_order_key`] ties the two zeros).
fn sanitize_logits(logits: &mut [f32]) {
    for logit in logits.iter_mut() {
        if logit.is_nan() {
            *logit = f32::NEG_INFINITY;
        } else if *logit == f32::INFINITY {
            *logit = f32::MAX;
        } else if *logit == 0.0 {
            *logit = 0.0;
        }
    }
}

/// Stage 2: index of the largest logit, lowest on ties (strict `>` keeps the first); 0 when every
/// logit is -inf or the row is empty. Public: scoring reports the same choice (`crate::score`).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best_id = 0;
    let mut best_logit = f32::NEG_INFINITY;
    for (id, &logit) in logits.iter().enumerate() {
        if logit > best_logit {
            best_id = id;
            best_logit = logit;
        }
    }
    best_id as u32
}

/// Stage 3's top-k: leaves in `candidates` the `top_k` best of them in the stable order of their
/// logits, in id order. `candidates` must hold every token of `logits` whose logit is not `-inf`
/// (in any order), and `top_k` must be in `1..candidates.len()`.
fn keep_top_k(candidates: &mut Vec<Candidate>, logits: &[f32], top_k: usize) {
    // Partial selection: afterwards the first top_k entries are the top_k best in the stable
    // order (in no particular order among themselves). The order is total, so the set is the same
    // whatever the selection algorithm does internally; it is the candidates whose key is at most
    // the pivot's.
    candidates.select_nth_unstable_by_key(top_k - 1, stable_order_key);
    if top_k <= candidates.len() / 32 {
        // Few: sorting them by id costs less than a pass over the row.
        candidates.truncate(top_k);
        candidates.sort_unstable_by_key(|c| c.id);
    } else {
        // Many: collect them again from the row, which is in id order already.
        let pivot = stable_order_key(&candidates[top_k - 1]);
        candidates.clear();
        for (id, &logit) in logits.iter().enumerate() {
            let candidate = Candidate { id: id as u32, value: logit };
            if logit > f32::NEG_INFINITY && stable_order_key(&candidate) <= pivot {
                candidates.push(candidate);
            }
        }
    }
}

/// Low bits of a weight's bit pattern that [`weight_bucket`] drops: the exponent and the top 3
/// mantissa bits remain, so a bucket spans an eighth of an octave of weights.
const BUCKET_SHIFT: u32 = 20;
/// Buckets of [`weight_bucket`]; weights in `[0, 1]` use `0..=1016` (`1.0` is `0x3F80_0000`).
const N_BUCKETS: usize = 1024;

/// A coarse bucket of a weight, non-decreasing in the IEEE-754 total order that
/// [`stable_order_key`] sorts by (negative values in 0, large ones and positive NaN in the last),
/// so the candidates of the buckets from some `b` up are always a leading part of the stable order.
fn weight_bucket(w: f32) -> usize {
    let bits = w.to_bits();
    if bits >> 31 == 1 {
        0
    } else {
        ((bits >> BUCKET_SHIFT) as usize).min(N_BUCKETS - 1)
    }
}

/// Stage 6's walk: how many of `kept` (weights), taken in the stable order, top-p keeps, i.e. the
/// position of the first at which the f32 running sum of `w / sum` is `>= top_p`, plus one, or
/// `kept.len()` if it never gets there. On return `kept[..n]` holds those `n` in the stable order;
/// the rest is in no particular order.
///
/// Only the leading part of the stable order that the walk reaches is sorted. A histogram of the
/// weights by [`weight_bucket`] estimates (in f64, a guess only) in which bucket the running sum
/// crosses `top_p`; the candidates of that bucket and the ones above are moved to the front by a
/// partition, sorted and walked. If the walk has not got there (the estimate missed by rounding),
/// the next lower non-empty bucket follows, then chunks as large as all walked so far. Every chunk
/// is the continuation of the stable order, so the walk sees the same sequence of weights, and
/// gives the same result, as a walk over a full sort.
fn nucleus_len(kept: &mut [Candidate], sum: f32, top_p: f32) -> usize {
    let n = kept.len();
    let mut mass = [0.0f64; N_BUCKETS];
    let mut count = [0u32; N_BUCKETS];
    for candidate in kept.iter() {
        let bucket = weight_bucket(candidate.value);
        mass[bucket] += f64::from(candidate.value);
        count[bucket] += 1;
    }
    // The first chunk: the buckets from the top down to the one where the estimated mass reaches
    // top_p * sum (bucket 0, so everything, if it never does).
    let goal = f64::from(top_p) * f64::from(sum);
    let mut lowest = N_BUCKETS;
    let mut estimate = 0.0f64;
    while lowest > 0 {
        lowest -= 1;
        estimate += mass[lowest];
        if estimate >= goal {
            break;
        }
    }

    let mut n_walked = 0;
    let mut cumulative = 0.0f32;
    let mut missed_before = false;
    loop {
        // Move the unwalked candidates of buckets >= lowest to kept[n_walked..end].
        let mut end = n;
        if lowest > 0 {
            end = n_walked;
            for i in n_walked..n {
                if weight_bucket(kept[i].value) >= lowest {
                    kept.swap(i, end);
                    end += 1;
                }
            }
        }
        let chunk = &mut kept[n_walked..end];
        chunk.sort_unstable_by_key(stable_order_key);
        for (i, candidate) in chunk.iter().enumerate() {
            cumulative += candidate.value / sum;
            if cumulative >= top_p {
                return n_walked + i + 1;
            }
        }
        n_walked = end;
        if n_walked == n {
            return n;
        }
        // Extend by at least one candidate the first time, then by at least as many as are walked.
        let want = if missed_before { n_walked } else { 1 };
        missed_before = true;
        let mut added = 0;
        while lowest > 0 && added < want {
            lowest -= 1;
            added += count[lowest] as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use core::cmp::Ordering;

    /// The stable order as a plain comparator, the definition [`stable_order_key`] must match.
    fn value_desc_then_id(a: &Candidate, b: &Candidate) -> Ordering {
        b.value.partial_cmp(&a.value).expect("no NaN in the pipeline").then(a.id.cmp(&b.id))
    }

    #[test]
    fn stable_order_key_matches_comparator() {
        let values = [-f32::MAX, -1e30, -2.0, -1.0, -f32::MIN_POSITIVE, -1e-45, 0.0, 1e-45, f32::MIN_POSITIVE, 0.5, 1.0, 1.0 + f32::EPSILON, 3e38, f32::MAX];
        let mut candidates = Vec::new();
        for (i, &value) in values.iter().enumerate() {
            // Two ids per value, the higher id first, so ties must be broken by the key.
            candidates.push(Candidate { id: (2 * i + 1) as u32, value });
            candidates.push(Candidate { id: (2 * i) as u32, value });
        }
        for a in &candidates {
            for b in &candidates {
                let by_key = stable_order_key(a).cmp(&stable_order_key(b));
                assert_eq!(by_key, value_desc_then_id(a, b), "{a:?} vs {b:?}");
            }
        }
    }

    fn sampling(temperature: f32) -> SamplingParams {
        SamplingParams { temperature, ..SamplingParams::default() }
    }

    fn random_logits(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * scale).collect()
    }

    // ---- validation ----

    fn assert_rejected(params: SamplingParams, field: &str) {
        let err = params.validate().expect_err(field);
        assert_eq!(err.status, Status::InvalidSampling, "{field}");
        assert_eq!(err.field, field);
    }

    #[test]
    fn default_is_greedy_and_valid() {
        let params = SamplingParams::default();
        assert_eq!(params.validate(), Ok(()));
        assert_eq!(params.temperature, 0.0);
        assert_eq!((params.top_k, params.top_p, params.min_p), (0, 1.0, 0.0));
        assert_eq!((params.repetition_penalty, params.repetition_window, params.seed), (1.0, 64, 0));
    }

    #[test]
    fn validate_accepts_boundaries() {
        let d = SamplingParams::default();
        for params in [
            SamplingParams { temperature: MAX_TEMPERATURE, ..d },
            SamplingParams { temperature: -0.0, ..d },
            SamplingParams { temperature: f32::MIN_POSITIVE, ..d },
            SamplingParams { top_p: f32::MIN_POSITIVE, ..d },
            SamplingParams { min_p: 0.999_999_9, ..d },
            SamplingParams { repetition_penalty: MAX_REPETITION_PENALTY, ..d },
            SamplingParams { top_k: u32::MAX, repetition_window: u32::MAX, seed: u64::MAX, ..d },
        ] {
            assert_eq!(params.validate(), Ok(()), "{params:?}");
        }
    }

    #[test]
    fn validate_rejects_bad_temperature() {
        let d = SamplingParams::default();
        for temperature in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1.0, -f32::MIN_POSITIVE, 100.01] {
            assert_rejected(SamplingParams { temperature, ..d }, "sampling.temperature");
        }
        let err = SamplingParams { temperature: -1.0, ..d }.validate().unwrap_err();
        assert_eq!(err.value, u64::from((-1.0f32).to_bits()), "float values report their bits");
    }

    #[test]
    fn validate_rejects_bad_top_p() {
        let d = SamplingParams::default();
        for top_p in [0.0, -0.0, -0.5, 1.000_001, f32::NAN, f32::INFINITY] {
            assert_rejected(SamplingParams { top_p, ..d }, "sampling.top_p");
        }
    }

    #[test]
    fn validate_rejects_bad_min_p() {
        let d = SamplingParams::default();
        for min_p in [-0.01, 1.0, 2.0, f32::NAN, f32::NEG_INFINITY] {
            assert_rejected(SamplingParams { min_p, ..d }, "sampling.min_p");
        }
    }

    #[test]
    fn validate_rejects_bad_repetition_penalty() {
        let d = SamplingParams::default();
        for repetition_penalty in [0.0, 0.999, -1.0, 10.01, f32::NAN, f32::INFINITY] {
            assert_rejected(SamplingParams { repetition_penalty, ..d }, "sampling.repetition_penalty");
        }
    }

    // ---- PRNG ----

    /// Pins the stream: a change to seeding, the generator or the float conversion fails here.
    /// Values computed by an independent Python implementation of the spec in the `Rng` docs.
    #[test]
    fn rng_golden_seed_42() {
        const GOLDEN_U64: [u64; 8] = [
            0x1578_0B2E_0C2E_C716,
            0x6104_D986_6D11_3A7E,
            0xAE17_5332_39E4_99A1,
            0xECB8_AD47_03B3_60A1,
            0xFDE6_DC7F_E2EC_5E64,
            0xC50D_A531_0179_5238,
            0xB821_5485_5A65_DDB2,
            0xD99A_2743_EBE6_0087,
        ];
        const GOLDEN_F32: [f32; 8] = [0.083_862_96, 0.378_980_22, 0.680_043_4, 0.924_692_9, 0.991_803_9, 0.769_739_45, 0.719_258_55, 0.850_008_4];
        let mut rng = Rng::new(42);
        let got: Vec<u64> = (0..8).map(|_| rng.next_u64()).collect();
        assert_eq!(got, GOLDEN_U64);

        let mut rng = Rng::new(42);
        for (&bits, &expected) in GOLDEN_U64.iter().zip(&GOLDEN_F32) {
            let u = rng.next_f32();
            assert_eq!(u, expected);
            assert_eq!(u, (bits >> 40) as f32 / 16_777_216.0);
        }
    }

    #[test]
    fn rng_next_f32_in_unit_interval() {
        let mut rng = Rng::new(7);
        for _ in 0..10_000 {
            let u = rng.next_f32();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn rng_seeds_differ() {
        let a: Vec<u64> = {
            let mut r = Rng::new(0);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(1);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_ne!(a, b);
        assert!(a.iter().all(|&x| x != 0), "seed 0 must not give a degenerate stream");
    }

    // ---- greedy ----

    #[test]
    fn greedy_is_argmax_with_lowest_id_on_ties() {
        let mut sampler = Sampler::new(SamplingParams::default(), 6);
        assert_eq!(sampler.sample(&mut [0.1, 3.0, -2.0, 2.9, 0.0, 1.0], &[]), 1);
        assert_eq!(sampler.sample(&mut [0.1, 3.0, -2.0, 3.0, 0.0, 3.0], &[]), 1);
        assert_eq!(sampler.sample(&mut [5.0, 5.0, 5.0, 5.0, 5.0, 5.0], &[]), 0);
        // -0.0 and 0.0 are equal: tie goes to the lower id.
        assert_eq!(sampler.sample(&mut [-1.0, -0.0, 0.0, -3.0, -1.0, -1.0], &[]), 1);
        let mut logits = [-0.0, f32::NAN, f32::INFINITY];
        sampler.sample(&mut logits, &[]);
        assert_eq!(logits.map(f32::to_bits), [0.0, f32::NEG_INFINITY, f32::MAX].map(f32::to_bits));
    }

    #[test]
    fn greedy_handles_non_finite_logits() {
        let mut sampler = Sampler::new(SamplingParams::default(), 4);
        assert_eq!(sampler.sample(&mut [f32::NAN, 1.0, f32::NAN, 0.5], &[]), 1, "NaN never wins");
        assert_eq!(sampler.sample(&mut [1.0, f32::INFINITY, 2.0, f32::INFINITY], &[]), 1);
        let inf = f32::NEG_INFINITY;
        assert_eq!(sampler.sample(&mut [inf, inf, inf, inf], &[]), 0, "all -inf: lowest id");
        assert_eq!(sampler.sample(&mut [f32::NAN; 4], &[]), 0, "all NaN: lowest id");
        assert_eq!(sampler.sample(&mut [inf, inf, inf, -1e30], &[]), 3);
    }

    #[test]
    fn greedy_does_not_consume_random_numbers() {
        let mut sampler = Sampler::new(SamplingParams { seed: 9, ..SamplingParams::default() }, 3);
        for _ in 0..5 {
            sampler.sample(&mut [1.0, 2.0, 3.0], &[]);
        }
        assert_eq!(sampler.rng, Rng::new(9));
    }

    #[test]
    fn short_long_and_empty_logit_rows() {
        let mut sampler = Sampler::new(SamplingParams::default(), 3);
        assert_eq!(sampler.sample(&mut [], &[]), 0);
        assert_eq!(sampler.sample(&mut [1.0, 2.0], &[]), 1, "short row");
        assert_eq!(sampler.sample(&mut [1.0, 2.0, 0.0, 9.0], &[]), 1, "ids past vocab_size ignored");
        let mut sampler = Sampler::new(sampling(1.0), 3);
        assert_eq!(sampler.sample(&mut [], &[]), 0);
        assert!(sampler.sample(&mut [1.0, 2.0, 0.0, 99.0], &[]) < 3);
    }

    // ---- sampling ----

    fn draw_sequence(params: SamplingParams, n_tokens: usize) -> Vec<u32> {
        let mut logit_rng = Rng::new(1234);
        let mut sampler = Sampler::new(params, 100);
        let mut tokens = Vec::new();
        for _ in 0..n_tokens {
            let mut logits = random_logits(&mut logit_rng, 100, 4.0);
            let token = sampler.sample(&mut logits, &tokens);
            tokens.push(token);
        }
        tokens
    }

    #[test]
    fn same_seed_same_sequence_different_seed_different() {
        let params = SamplingParams { temperature: 1.0, top_k: 40, top_p: 0.95, seed: 5, ..Default::default() };
        let a = draw_sequence(params, 64);
        assert_eq!(a, draw_sequence(params, 64));
        assert_ne!(a, draw_sequence(SamplingParams { seed: 6, ..params }, 64));
    }

    #[test]
    fn reseed_restarts_the_stream() {
        let mut sampler = Sampler::new(SamplingParams { temperature: 1.0, seed: 3, ..Default::default() }, 50);
        let mut logit_rng = Rng::new(1);
        let logits = random_logits(&mut logit_rng, 50, 2.0);
        let first: Vec<u32> = (0..20).map(|_| sampler.sample(&mut logits.clone(), &[])).collect();
        sampler.reseed();
        let again: Vec<u32> = (0..20).map(|_| sampler.sample(&mut logits.clone(), &[])).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn top_k_1_equals_greedy() {
        let mut logit_rng = Rng::new(77);
        let mut greedy = Sampler::new(SamplingParams::default(), 500);
        let mut top1 = Sampler::new(SamplingParams { temperature: 1.5, top_k: 1, seed: 1, ..Default::default() }, 500);
        for _ in 0..200 {
            let logits = random_logits(&mut logit_rng, 500, 3.0);
            assert_eq!(top1.sample(&mut logits.clone(), &[]), greedy.sample(&mut logits.clone(), &[]));
        }
    }

    #[test]
    fn top_k_ties_keep_lowest_ids() {
        // Four tokens tie for best; top_k = 2 keeps ids 1 and 3.
        let params = SamplingParams { temperature: 1.0, top_k: 2, ..Default::default() };
        let mut sampler = Sampler::new(params, 6);
        for _ in 0..500 {
            let token = sampler.sample(&mut [0.0, 1.0, 0.5, 1.0, 1.0, 1.0], &[]);
            assert!(token == 1 || token == 3, "{token}");
        }
    }

    #[test]
    fn tiny_top_p_equals_greedy() {
        let mut logit_rng = Rng::new(78);
        let mut greedy = Sampler::new(SamplingParams::default(), 500);
        let params = SamplingParams { temperature: 1.0, top_p: 1e-6, seed: 2, ..Default::default() };
        let mut nucleus = Sampler::new(params, 500);
        for _ in 0..200 {
            let logits = random_logits(&mut logit_rng, 500, 3.0);
            assert_eq!(nucleus.sample(&mut logits.clone(), &[]), greedy.sample(&mut logits.clone(), &[]));
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // Probabilities 0.5, 0.25, 0.125, 0.125 (logits are ln of them): top_p = 0.7 needs the
        // first two (0.75 >= 0.7), so ids 2 and 3 never appear.
        let logits = [libm::logf(0.5), libm::logf(0.25), libm::logf(0.125), libm::logf(0.125)];
        let params = SamplingParams { temperature: 1.0, top_p: 0.7, ..Default::default() };
        let mut sampler = Sampler::new(params, 4);
        let mut counts = [0u32; 4];
        for _ in 0..2000 {
            counts[sampler.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        assert_eq!(&counts[2..], &[0, 0]);
        assert!(counts[0] > 0 && counts[1] > 0);
    }

    #[test]
    fn min_p_filters() {
        // Relative to the best: 1, 0.5, 0.2, 0.05. min_p = 0.3 keeps ids 0 and 1 only.
        let logits = [0.0, libm::logf(0.5), libm::logf(0.2), libm::logf(0.05)];
        let params = SamplingParams { temperature: 1.0, min_p: 0.3, ..Default::default() };
        let mut sampler = Sampler::new(params, 4);
        let mut counts = [0u32; 4];
        for _ in 0..2000 {
            counts[sampler.sample(&mut logits.clone(), &[]) as usize] += 1;
        }
        assert_eq!(&counts[2..], &[0, 0]);
        assert!(counts[0] > counts[1] && counts[1] > 0);
    }

    #[test]
    fn repetition_penalty_changes_the_argmax() {
        let params = SamplingParams { repetition_penalty: 1.2, ..Default::default() };
        let mut sampler = Sampler::new(params, 3);
        // Positive logit is divided: 2.0 / 1.2 = 1.67 < 1.9.
        assert_eq!(sampler.sample(&mut [2.0, 1.9, 0.0], &[]), 0);
        assert_eq!(sampler.sample(&mut [2.0, 1.9, 0.0], &[0]), 1);
        // Negative logit is multiplied: -1.0 * 1.2 = -1.2 < -1.1.
        assert_eq!(sampler.sample(&mut [-1.0, -1.1, -5.0], &[0]), 1);
    }

    #[test]
    fn repetition_penalty_once_per_distinct_token_and_only_in_window() {
        let params = SamplingParams { repetition_penalty: 2.0, repetition_window: 3, ..Default::default() };
        let mut sampler = Sampler::new(params, 4);
        let mut logits = [4.0, -4.0, 4.0, 4.0];
        // Window = last 3 = [1, 1, 0]; token 2 is older than the window; 99 is outside the vocab.
        sampler.sample(&mut logits, &[2, 99, 1, 1, 0]);
        assert_eq!(logits, [2.0, -8.0, 4.0, 4.0]);
        // Flags were cleared: a second call penalizes again from the untouched logits.
        let mut logits = [4.0, -4.0, 4.0, 4.0];
        sampler.sample(&mut logits, &[1, 1, 0]);
        assert_eq!(logits, [2.0, -8.0, 4.0, 4.0]);
        // Window 0 = off.
        let params = SamplingParams { repetition_window: 0, ..params };
        let mut logits = [4.0, -4.0, 4.0, 4.0];
        Sampler::new(params, 4).sample(&mut logits, &[0, 1]);
        assert_eq!(logits, [4.0, -4.0, 4.0, 4.0]);
    }

    /// Chi-square limit for the draw-distribution tests: the 0.1 % critical value for 4 degrees of
    /// freedom (5 tokens). Measured with `N_DRAWS` draws over logits `[1, 2, 0.5, 3, -1]`: seeds
    /// 0..20 at T = 1 gave 0.3..13.3; drawing at T = 1 but comparing with T = 1.2 gave 412, and
    /// with T = 0.7 gave 3016. Seeds are fixed, so the test is deterministic either way.
    const CHI_SQUARE_LIMIT: f64 = 18.47;
    const N_DRAWS: u32 = 20_000;

    fn chi_square_against_softmax(logits: &[f32], temperature: f32, seed: u64) -> f64 {
        let params = SamplingParams { temperature, seed, ..Default::default() };
        let mut sampler = Sampler::new(params, logits.len());
        let mut counts = vec![0u32; logits.len()];
        for _ in 0..N_DRAWS {
            counts[sampler.sample(&mut logits.to_vec(), &[]) as usize] += 1;
        }
        // Reference softmax in f64, independent of the f32 pipeline.
        let max = logits.iter().fold(f64::NEG_INFINITY, |m, &l| m.max(f64::from(l)));
        let weights: Vec<f64> = logits.iter().map(|&l| ((f64::from(l) - max) / f64::from(temperature)).exp()).collect();
        let sum: f64 = weights.iter().sum();
        counts
            .iter()
            .zip(&weights)
            .map(|(&observed, &w)| {
                let expected = f64::from(N_DRAWS) * w / sum;
                (f64::from(observed) - expected).powi(2) / expected
            })
            .sum()
    }

    #[test]
    fn draws_match_softmax() {
        let logits = [1.0, 2.0, 0.5, 3.0, -1.0];
        for (temperature, seed) in [(1.0, 11), (0.7, 12), (2.0, 13)] {
            let chi_square = chi_square_against_softmax(&logits, temperature, seed);
            assert!(chi_square < CHI_SQUARE_LIMIT, "T={temperature}: chi-square {chi_square}");
        }
    }

    /// Plain twin of stages 3-7 as the module docs state them: full sorts, fresh vectors, no
    /// shortcuts (weights of every candidate, min-p on a copy, top-p over a full sort). Pins the
    /// fast paths (top-k's two ways back to id order, the histogram-guided top-p walk, the draw
    /// without a sort) to the same ids, bit for bit.
    fn reference_sample(logits: &[f32], params: &SamplingParams, u: f32) -> u32 {
        let mut logits = logits.to_vec();
        sanitize_logits(&mut logits);
        // Stage 3: (id, logit) of every candidate; top-k by a full sort in the stable order.
        let mut candidates: Vec<Candidate> =
            logits.iter().enumerate().filter(|(_, &l)| l > f32::NEG_INFINITY).map(|(id, &value)| Candidate { id: id as u32, value }).collect();
        if candidates.is_empty() {
            return 0;
        }
        candidates.sort_by(value_desc_then_id);
        let best_id = candidates[0].id;
        if params.top_k > 0 {
            candidates.truncate(params.top_k as usize);
        }
        candidates.sort_by_key(|c| c.id);
        // Stage 4: x and w per candidate, in id order.
        let m = candidates.iter().fold(f32::NEG_INFINITY, |m, c| m.max(c.value));
        let x: Vec<f32> = candidates.iter().map(|c| (c.value - m) / params.temperature).collect();
        let weights: Vec<Candidate> = candidates.iter().zip(&x).map(|(c, &x)| Candidate { id: c.id, value: libm::expf(x) }).collect();
        // Stage 5: min-p.
        let mut kept: Vec<Candidate> = weights.iter().zip(&x).filter(|(_, &x)| params.min_p == 0.0 || x >= libm::logf(params.min_p)).map(|(&c, _)| c).collect();
        // Stage 6: top-p, over a full sort of what min-p kept.
        if params.top_p != 1.0 {
            let sum = weights.iter().fold(0.0f32, |a, c| a + c.value);
            kept.sort_by(value_desc_then_id);
            let mut running = 0.0f32;
            if let Some(i) = kept.iter().position(|c| {
                running += c.value / sum;
                running >= params.top_p
            }) {
                kept.truncate(i + 1);
            }
            kept.sort_by_key(|c| c.id);
        }
        // Stage 7: draw in id order.
        kept.retain(|c| c.value != 0.0);
        let total = kept.iter().fold(0.0f32, |a, c| a + c.value);
        let mut running = 0.0f32;
        for c in &kept {
            running += c.value;
            if u * total < running {
                return c.id;
            }
        }
        kept.last().map_or(best_id, |c| c.id)
    }

    /// A logit row of one of several shapes: smooth, quantized (many ties), peaked like a language
    /// model's, flat, or with a sprinkling of -inf, NaN and +inf.
    fn shaped_row(rng: &mut Rng, n: usize, shape: u64) -> Vec<f32> {
        let mut row: Vec<f32> = match shape {
            0 => random_logits(rng, n, 8.0),
            1 => (0..n).map(|_| ((rng.next_u64() % 16) as f32 - 8.0) * 0.5).collect(),
            2 => (0..n).map(|_| (0..4).map(|_| rng.next_f32() * 4.0 - 2.0).sum()).collect(),
            3 => vec![0.25; n],
            _ => (0..n)
                .map(|_| match rng.next_u64() % 12 {
                    0 => f32::NEG_INFINITY,
                    1 => f32::NAN,
                    2 => -0.0,
                    3 => 3.0,
                    _ => rng.next_f32() * 6.0 - 3.0,
                })
                .collect(),
        };
        if shape == 2 {
            // A few tokens far above the rest.
            for boost in [14.0, 12.0, 11.5, 10.0] {
                let id = (rng.next_u64() % n as u64) as usize;
                row[id] = boost;
            }
        }
        if shape == 4 && rng.next_u64().is_multiple_of(4) {
            let id = (rng.next_u64() % n as u64) as usize;
            row[id] = f32::INFINITY;
        }
        row
    }

    #[test]
    fn fast_paths_match_the_full_sort_reference() {
        const TOP_P: [f32; 4] = [1.0, 0.9, 0.5, 0.01];
        const MIN_P: [f32; 3] = [0.0, 0.05, 0.5];
        const TEMPERATURES: [f32; 4] = [0.3, 1.0, 2.5, MAX_TEMPERATURE];
        let mut case_rng = Rng::new(2024);
        let mut checked = 0u32;
        for (n_vocab, n_rows) in [(1, 8), (2, 16), (3, 16), (7, 16), (300, 24), (1000, 24), (262_144, 2)] {
            for row_index in 0..n_rows {
                // Gemma 3's vocabulary: a language-model-like row and one with non-finite logits.
                let shape = if n_vocab > 1000 { [2, 4][row_index] } else { row_index as u64 % 5 };
                let logits = shaped_row(&mut case_rng, n_vocab, shape);
                for (top_p, min_p) in TOP_P.iter().flat_map(|&p| MIN_P.iter().map(move |&m| (p, m))) {
                    for top_k in [0, 1, 2, 40, n_vocab as u32 / 2, n_vocab as u32 - 1, n_vocab as u32 + 5] {
                        // Every combination on the small rows; a rotating sample of the expensive
                        // ones on the largest.
                        checked += 1;
                        if n_vocab > 1000 && !checked.is_multiple_of(3) {
                            continue;
                        }
                        let temperature = TEMPERATURES[(case_rng.next_u64() % 4) as usize];
                        let seed = case_rng.next_u64();
                        let params = SamplingParams { temperature, top_k, top_p, min_p, seed, ..Default::default() };
                        let u = Rng::new(seed).next_f32();
                        let expected = reference_sample(&logits, &params, u);
                        let mut sampler = Sampler::new(params, n_vocab);
                        let got = sampler.sample(&mut logits.clone(), &[]);
                        assert_eq!(got, expected, "n_vocab {n_vocab}, row {row_index}: {params:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn fast_paths_match_the_reference_on_many_seeds() {
        // Many draws from the same few rows, so that every kept token is drawn now and then,
        // including the ones at the edges of the kept sets.
        let mut case_rng = Rng::new(77);
        for shape in 0..5 {
            let logits = shaped_row(&mut case_rng, 200, shape);
            for (top_k, top_p, min_p) in [(0, 1.0, 0.0), (0, 0.9, 0.0), (0, 1.0, 0.05), (0, 0.5, 0.05), (40, 0.9, 0.0), (150, 0.99, 0.01)] {
                let params = SamplingParams { temperature: 1.3, top_k, top_p, min_p, seed: shape, ..Default::default() };
                let mut sampler = Sampler::new(params, logits.len());
                let mut stream = Rng::new(params.seed);
                for draw in 0..300 {
                    let expected = reference_sample(&logits, &params, stream.next_f32());
                    assert_eq!(sampler.sample(&mut logits.clone(), &[]), expected, "shape {shape}, draw {draw}: {params:?}");
                }
            }
        }
    }

    /// Full-sort twin of [`nucleus_len`].
    fn reference_nucleus(kept: &[Candidate], sum: f32, top_p: f32) -> Vec<u32> {
        let mut sorted = kept.to_vec();
        sorted.sort_by(value_desc_then_id);
        let mut running = 0.0f32;
        let n = sorted
            .iter()
            .position(|c| {
                running += c.value / sum;
                running >= top_p
            })
            .map_or(sorted.len(), |i| i + 1);
        sorted[..n].iter().map(|c| c.id).collect()
    }

    #[test]
    fn nucleus_walk_matches_a_full_sort_even_when_its_estimate_misses() {
        // A `sum` that is not the weights' sum makes the histogram's estimate miss by any factor,
        // so every way of extending the walk is taken; the result must still be the full sort's.
        let mut case_rng = Rng::new(5);
        for case in 0..3000 {
            let n = 1 + (case_rng.next_u64() % 500) as usize;
            let weights: Vec<Candidate> = (0..n)
                .map(|id| {
                    let value = match case_rng.next_u64() % 6 {
                        // Exactly on bucket edges, many ties.
                        0 => f32::from_bits(((case_rng.next_u64() % 1017) as u32) << BUCKET_SHIFT),
                        1 => 1.0,
                        2 => f32::from_bits(0x3F7F_FFFF),
                        3 => libm::expf(-(case_rng.next_f32() * 100.0)),
                        _ => case_rng.next_f32(),
                    };
                    Candidate { id: id as u32, value }
                })
                .collect();
            let true_sum = weights.iter().fold(0.0f32, |a, c| a + c.value);
            let sum = true_sum * [1.0, 0.5, 2.0, 0.01, 100.0, 1.000_001][case % 6];
            let top_p = [0.9, 0.5, 0.01, 0.999_999, 1e-9, 0.99][(case / 6) % 6];
            let expected = reference_nucleus(&weights, sum, top_p);
            let mut kept = weights.clone();
            // Shuffle, so the walk does not start from id order.
            for i in (1..n).rev() {
                kept.swap(i, (case_rng.next_u64() % (i as u64 + 1)) as usize);
            }
            let len = nucleus_len(&mut kept, sum, top_p);
            let got: Vec<u32> = kept[..len].iter().map(|c| c.id).collect();
            assert_eq!(got, expected, "case {case}: sum {sum}, top_p {top_p}");
        }
    }

    #[test]
    fn weight_buckets_follow_the_stable_order() {
        let values =
            [f32::NAN, f32::INFINITY, f32::MAX, 2.0, 1.0, 0.999_999_9, 0.5, 1e-30, f32::MIN_POSITIVE, 1e-45, 0.0, -0.0, -1.0, -f32::MAX, f32::NEG_INFINITY];
        for a in values {
            for b in values {
                let (ka, kb) = (stable_order_key(&Candidate { id: 0, value: a }), stable_order_key(&Candidate { id: 0, value: b }));
                if ka < kb {
                    assert!(weight_bucket(a) >= weight_bucket(b), "{a} before {b}");
                }
            }
        }
        assert_eq!(weight_bucket(1.0), 1016);
        assert_eq!(weight_bucket(f32::NAN), N_BUCKETS - 1);
    }

    #[test]
    fn all_masked_logits_sample_to_zero_and_still_draw() {
        let mut sampler = Sampler::new(SamplingParams { temperature: 1.0, seed: 4, ..Default::default() }, 3);
        assert_eq!(sampler.sample(&mut [f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY], &[]), 0);
        let mut expected = Rng::new(4);
        expected.next_u64();
        assert_eq!(sampler.rng, expected);
    }

    #[test]
    fn no_panics_for_any_valid_params() {
        const SPECIAL: [f32; 6] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -f32::MAX, 0.0];
        let mut case_rng = Rng::new(99);
        let mut pick = |n: u64| case_rng.next_u64() % n;
        for case in 0..2000 {
            let params = SamplingParams {
                temperature: [0.0, f32::MIN_POSITIVE, 1e-3, 1.0, MAX_TEMPERATURE][pick(5) as usize],
                top_k: [0, 1, 2, 7, 1000, u32::MAX][pick(6) as usize],
                top_p: [1.0, 1e-9, 0.5, 0.999_999_9, f32::MIN_POSITIVE][pick(5) as usize],
                min_p: [0.0, 1e-9, 0.5, 0.999_999_9][pick(4) as usize],
                repetition_penalty: [1.0, 1.000_001, 1.3, MAX_REPETITION_PENALTY][pick(4) as usize],
                repetition_window: [0, 1, 64, u32::MAX][pick(4) as usize],
                seed: pick(u64::MAX),
            };
            assert_eq!(params.validate(), Ok(()));
            let n_vocab = pick(70) as usize;
            let mut sampler = Sampler::new(params, n_vocab);
            for _ in 0..3 {
                let n_logits = pick(80) as usize;
                let mut logits: Vec<f32> = (0..n_logits)
                    .map(|_| match pick(8) {
                        0 => SPECIAL[pick(6) as usize],
                        _ => f32::from_bits(pick(1 << 32) as u32),
                    })
                    .collect();
                let recent: Vec<u32> = (0..pick(100)).map(|_| pick(90) as u32).collect();
                let token = sampler.sample(&mut logits, &recent);
                let n = n_logits.min(n_vocab);
                assert!(token == 0 || (token as usize) < n, "case {case}: {token} of {n}");
            }
        }
    }

    #[test]
    fn no_panics_for_invalid_params_either() {
        let mut sampler_params = Vec::new();
        for bad in [f32::NAN, f32::INFINITY, -1.0, 2.0, 0.0] {
            let d = SamplingParams { temperature: 1.0, ..Default::default() };
            sampler_params.push(SamplingParams { temperature: bad, ..d });
            sampler_params.push(SamplingParams { top_p: bad, ..d });
            sampler_params.push(SamplingParams { min_p: bad, ..d });
            sampler_params.push(SamplingParams { repetition_penalty: bad, ..d });
        }
        let mut logit_rng = Rng::new(5);
        for params in sampler_params {
            let mut sampler = Sampler::new(params, 16);
            let token = sampler.sample(&mut random_logits(&mut logit_rng, 16, 5.0), &[1, 2, 3]);
            assert!(token < 16);
        }
    }

    /// Micro-measurement, not a timed test: prints the time per `sample` call on a 262,144-token
    /// row (Gemma 3's vocabulary) for common settings. Run with
    /// `cargo test --release -p tinyrustlm --lib sampler::tests::measure_large_vocab -- --ignored --nocapture`.
    #[test]
    #[ignore = "micro-measurement: prints figures, asserts nothing"]
    fn measure_large_vocab() {
        extern crate std;
        use std::time::Instant;
        const N_VOCAB: usize = 262_144;
        const N_CALLS: usize = 25;
        let mut rng = Rng::new(31);
        // Gaussian-like logits (sum of four uniforms, sd about 2.3); "peaked" adds a few tokens far
        // above the rest, as a language model's row usually has.
        let flat: Vec<f32> = (0..N_VOCAB).map(|_| (0..4).map(|_| rng.next_f32() * 4.0 - 2.0).sum::<f32>()).collect();
        let mut peaked = flat.clone();
        for (rank, boost) in [18.0, 16.5, 15.0, 14.0, 13.0, 12.5, 12.0, 11.0].iter().enumerate() {
            peaked[(rank * 7919 + 13) % N_VOCAB] = *boost;
        }
        let d = SamplingParams { temperature: 1.0, seed: 1, ..SamplingParams::default() };
        let settings = [
            ("greedy", SamplingParams::default()),
            ("T=1 (nothing bounds the set)", d),
            ("T=1 top_k=40", SamplingParams { top_k: 40, ..d }),
            ("T=1 top_k=40 top_p=0.95", SamplingParams { top_k: 40, top_p: 0.95, ..d }),
            ("T=0.8 top_p=0.95", SamplingParams { temperature: 0.8, top_p: 0.95, ..d }),
            ("T=1 top_p=0.9", SamplingParams { top_p: 0.9, ..d }),
            ("T=1 min_p=0.05", SamplingParams { min_p: 0.05, ..d }),
            ("T=0.7 top_p=0.95 min_p=0.05", SamplingParams { temperature: 0.7, top_p: 0.95, min_p: 0.05, ..d }),
        ];
        for (row_name, row) in [("peaked", &peaked), ("flat", &flat)] {
            for (name, params) in settings {
                let mut sampler = Sampler::new(params, N_VOCAB);
                let mut times: Vec<f64> = (0..N_CALLS)
                    .map(|_| {
                        let mut logits = row.clone();
                        let t = Instant::now();
                        core::hint::black_box(sampler.sample(&mut logits, &[]));
                        t.elapsed().as_secs_f64() * 1e6
                    })
                    .collect();
                times.sort_by(f64::total_cmp);
                std::println!("{row_name:>6} {name:<30} median {:>9.1} us  (min {:.1})", times[N_CALLS / 2], times[0]);
            }
        }
    }
}
