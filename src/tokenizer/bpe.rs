//! BPE merging: given a piece's initial symbols, repeatedly merge the adjacent pair with the lowest
//! merge rank (the leftmost pair on ties) until no adjacent pair has a merge.
//!
//! The symbols form a linked list over a vector; candidate pairs wait in a min-heap keyed by
//! (rank, left position). A merge only changes the pairs on either side of it, so each merge pushes at
//! most two candidates and the whole piece costs O(n log n). Candidates are not removed when a
//! neighbour changes; a popped candidate is simply skipped if its two symbols are no longer adjacent
//! with the token ids it was made from (the same lazy scheme as Hugging Face `tokenizers`'
//! `Word::merge_all` and llama.cpp's `llm_tokenizer_bpe_session`).

use alloc::collections::{BinaryHeap, TryReserveError};
use alloc::vec::Vec;
use core::cmp::Reverse;

/// One merge rule from the tokenizer section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Merge {
    pub left: u32,
    pub right: u32,
    pub result: u32,
    pub rank: u32,
}

/// Merge rules sorted by (left, right, rank, result), with where each left id's rules start, so a
/// lookup is one index plus a binary search among the few rules sharing a left token.
pub(super) struct MergeTable {
    by_pair: Vec<Merge>,
    /// Rules with left id `l` are `by_pair[left_starts[l]..left_starts[l + 1]]`.
    left_starts: Vec<u32>,
}

impl MergeTable {
    /// Fails only when memory for the index cannot be had.
    pub fn new(mut merges: Vec<Merge>, n_tokens: u32) -> Result<MergeTable, TryReserveError> {
        super::sort::heap_sort_by(&mut merges, &|a, b| (a.left, a.right, a.rank, a.result) < (b.left, b.right, b.rank, b.result));
        let mut left_starts = Vec::new();
        left_starts.try_reserve_exact(n_tokens as usize + 1)?;
        let mut i = 0;
        for left in 0..=n_tokens {
            while i < merges.len() && merges[i].left < left {
                i += 1;
            }
            left_starts.push(i as u32);
        }
        Ok(MergeTable { by_pair: merges, left_starts })
    }

    /// `(rank, result)` of the merge for this pair. If the section lists a pair more than once, the
    /// lowest rank wins: that entry would always apply first.
    pub fn find(&self, left: u32, right: u32) -> Option<(u32, u32)> {
        let l = left as usize;
        let (Some(&start), Some(&end)) = (self.left_starts.get(l), self.left_starts.get(l.wrapping_add(1))) else {
            return None;
        };
        let rules = self.by_pair.get(start as usize..end as usize)?;
        let i = rules.partition_point(|m| m.right < right);
        match rules.get(i) {
            Some(m) if m.right == right => Some((m.rank, m.result)),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.by_pair.len()
    }

    pub fn heap_bytes(&self) -> usize {
        self.by_pair.capacity() * core::mem::size_of::<Merge>() + self.left_starts.capacity() * 4
    }
}

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Symbol {
    /// Token id, or `NONE` once merged into its left neighbour.
    id: u32,
    prev: u32,
    next: u32,
}

/// A pair that may merge. Field order is the priority: lowest rank, then leftmost.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    rank: u32,
    left: u32,
    right: u32,
    left_id: u32,
    right_id: u32,
    result: u32,
}

/// Buffers reused from piece to piece within one `encode` call.
pub(super) struct Scratch {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Reverse<Candidate>>,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch { symbols: Vec::new(), queue: BinaryHeap::new() }
    }
}

/// Merges `ids` (a piece's initial symbols) as far as `merges` allows and appends the result to `out`.
/// Every buffer grows fallibly: a piece too long for the memory left is an error, not an abort.
pub(super) fn encode_piece(merges: &MergeTable, ids: &[u32], scratch: &mut Scratch, out: &mut Vec<u32>) -> Result<(), TryReserveError> {
    // Merging only shortens the piece.
    out.try_reserve(ids.len())?;
    // Positions are u32 to keep candidates small; a piece this long cannot exist in wasm32 memory,
    // and elsewhere it is passed through unmerged rather than indexed wrongly.
    if ids.len() < 2 || merges.len() == 0 || ids.len() >= NONE as usize {
        out.extend_from_slice(ids);
        return Ok(());
    }
    let symbols = &mut scratch.symbols;
    let queue = &mut scratch.queue;
    symbols.clear();
    queue.clear();
    symbols.try_reserve(ids.len())?;
    let n = ids.len() as u32;
    symbols.extend(ids.iter().enumerate().map(|(i, &id)| {
        let i = i as u32;
        Symbol { id, prev: if i == 0 { NONE } else { i - 1 }, next: if i + 1 == n { NONE } else { i + 1 } }
    }));
    for left in 0..n - 1 {
        push_candidate(merges, symbols, queue, left)?;
    }
    while let Some(Reverse(c)) = queue.pop() {
        let (l, r) = (symbols[c.left as usize], symbols[c.right as usize]);
        if l.id != c.left_id || l.next != c.right || r.id != c.right_id {
            continue; // stale: one side has merged since this candidate was pushed
        }
        symbols[c.left as usize].id = c.result;
        symbols[c.left as usize].next = r.next;
        if r.next != NONE {
            symbols[r.next as usize].prev = c.left;
        }
        symbols[c.right as usize].id = NONE;
        if l.prev != NONE {
            push_candidate(merges, symbols, queue, l.prev)?;
        }
        push_candidate(merges, symbols, queue, c.left)?;
    }
    // Symbol 0 never merges into a left neighbour, so the list starts there.
    let mut i = 0;
    while i != NONE {
        out.push(symbols[i as usize].id);
        i = symbols[i as usize].next;
    }
    Ok(())
}

fn push_candidate(merges: &MergeTable, symbols: &[Symbol], queue: &mut BinaryHeap<Reverse<Candidate>>, left: u32) -> Result<(), TryReserveError> {
    let l = symbols[left as usize];
    if l.next == NONE {
        return Ok(());
    }
    let r = symbols[l.next as usize];
    if let Some((rank, result)) = merges.find(l.id, r.id) {
        queue.try_reserve(1)?;
        queue.push(Reverse(Candidate { rank, left, right: l.next, left_id: l.id, right_id: r.id, result }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn m(left: u32, right: u32, result: u32, rank: u32) -> Merge {
        Merge { left, right, result, rank }
    }

    /// The obvious quadratic algorithm, as the reference.
    fn naive(merges: &MergeTable, ids: &[u32]) -> Vec<u32> {
        let mut s = ids.to_vec();
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..s.len().saturating_sub(1) {
                if let Some((rank, result)) = merges.find(s[i], s[i + 1]) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, result));
                    }
                }
            }
            match best {
                Some((_, i, result)) => {
                    s[i] = result;
                    s.remove(i + 1);
                }
                None => return s,
            }
        }
    }

    #[test]
    fn lowest_rank_first_then_leftmost() {
        // a=0 b=1 c=2 ab=3 bc=4 abc=5
        let merges = MergeTable::new(vec![m(1, 2, 4, 0), m(0, 1, 3, 1), m(3, 2, 5, 2), m(0, 4, 5, 3)], 6).unwrap();
        let mut out = Vec::new();
        encode_piece(&merges, &[0, 1, 2], &mut Scratch::new(), &mut out).unwrap();
        assert_eq!(out, [5]); // bc (rank 0) first, then a+bc (rank 3); (a, b) never gets a chance
                              // Equal ranks: leftmost wins. aa=3 from (0,0); "aaa" → [aa, a].
        let merges = MergeTable::new(vec![m(0, 0, 3, 0)], 4).unwrap();
        out.clear();
        encode_piece(&merges, &[0, 0, 0], &mut Scratch::new(), &mut out).unwrap();
        assert_eq!(out, [3, 0]);
    }

    #[test]
    fn agrees_with_the_quadratic_reference() {
        // Tokens 0..4 are "letters"; merges over random pairs with random ranks, results fresh ids.
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let mut list = Vec::new();
            let mut n_tokens = 4u32;
            for _ in 0..(next() % 12) {
                let left = (next() % n_tokens as u64) as u32;
                let right = (next() % n_tokens as u64) as u32;
                list.push(m(left, right, n_tokens, (next() % 5) as u32));
                n_tokens += 1;
            }
            let merges = MergeTable::new(list, n_tokens).unwrap();
            let mut scratch = Scratch::new();
            for _ in 0..10 {
                let ids: Vec<u32> = (0..next() % 20).map(|_| (next() % 4) as u32).collect();
                let mut out = Vec::new();
                encode_piece(&merges, &ids, &mut scratch, &mut out).unwrap();
                assert_eq!(out, naive(&merges, &ids), "{ids:?}");
            }
        }
    }
}
