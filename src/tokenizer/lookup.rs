//! Token ids sorted by their bytes, for exact lookup (SentencePiece's "is this character a token?")
//! and for leftmost-longest matching of special tokens in text. Binary search over one sorted
//! `Vec<u32>`: no hash map, and no copy of the bytes.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

use super::sort::heap_sort_by;
use super::TokenTable;

pub(super) struct SortedTokens {
    /// Sorted by (bytes, id), so among tokens with equal bytes the lowest id comes first.
    ids: Vec<u32>,
    /// Bit `b` set if some token starts with byte `b`: most text positions are rejected by one test.
    first_bytes: [u64; 4],
}

impl SortedTokens {
    /// The tokens for which `keep` holds; tokens with no bytes are never kept.
    /// Fails only when memory for the index cannot be had.
    pub fn new(tokens: &TokenTable, keep: &dyn Fn(u32) -> bool) -> Result<SortedTokens, TryReserveError> {
        let wanted = |id: &u32| !tokens.bytes(*id).is_empty() && keep(*id);
        let mut ids: Vec<u32> = Vec::new();
        ids.try_reserve_exact((0..tokens.len()).filter(wanted).count())?;
        ids.extend((0..tokens.len()).filter(wanted));
        heap_sort_by(&mut ids, &|&a, &b| (tokens.bytes(a), a) < (tokens.bytes(b), b));
        let mut first_bytes = [0u64; 4];
        for &id in &ids {
            if let Some(&b) = tokens.bytes(id).first() {
                first_bytes[(b >> 6) as usize] |= 1 << (b & 63);
            }
        }
        Ok(SortedTokens { ids, first_bytes })
    }

    pub fn heap_bytes(&self) -> usize {
        self.ids.capacity() * 4
    }

    /// The first repeat among the kept tokens: `(earlier, later)`, two ids with the same bytes, with
    /// `later` the lowest such id and `earlier` the lowest id with its bytes.
    pub fn first_repeat(&self, tokens: &TokenTable) -> Option<(u32, u32)> {
        // Sorted by (bytes, id): in a run of equal bytes the first pair holds the run's two lowest ids.
        self.ids.windows(2).filter(|w| tokens.bytes(w[0]) == tokens.bytes(w[1])).map(|w| (w[0], w[1])).min_by_key(|&(_, later)| later)
    }

    /// The lowest id whose bytes are exactly `key`.
    pub fn find(&self, tokens: &TokenTable, key: &[u8]) -> Option<u32> {
        let i = self.ids.partition_point(|&id| tokens.bytes(id) < key);
        self.ids.get(i).copied().filter(|&id| tokens.bytes(id) == key)
    }

    /// The longest token that `text` starts with, as `(byte length, id)`.
    fn longest_prefix(&self, tokens: &TokenTable, text: &[u8]) -> Option<(usize, u32)> {
        // Invariant: ids[lo..hi] are the tokens whose first `depth` bytes equal text[..depth]; the
        // ones exactly `depth` long sort first.
        let (mut lo, mut hi) = (0, self.ids.len());
        let mut best = None;
        let mut depth = 0;
        loop {
            if lo < hi && tokens.bytes(self.ids[lo]).len() == depth {
                if depth > 0 {
                    best = Some((depth, self.ids[lo]));
                }
                while lo < hi && tokens.bytes(self.ids[lo]).len() == depth {
                    lo += 1;
                }
            }
            let Some(&c) = text.get(depth) else { break };
            if lo == hi {
                break;
            }
            let range = &self.ids[lo..hi];
            let byte_at = |id: u32| tokens.bytes(id).get(depth).copied();
            let start = range.partition_point(|&id| byte_at(id) < Some(c));
            let end = range.partition_point(|&id| byte_at(id) <= Some(c));
            hi = lo + end;
            lo += start;
            depth += 1;
        }
        best
    }

    /// The leftmost match at or after `from`, longest at that position: `(start, byte length, id)`.
    pub fn find_next(&self, tokens: &TokenTable, text: &[u8], from: usize) -> Option<(usize, usize, u32)> {
        if self.ids.is_empty() {
            return None;
        }
        for start in from..text.len() {
            let b = text[start];
            if self.first_bytes[(b >> 6) as usize] & (1 << (b & 63)) == 0 {
                continue;
            }
            if let Some((len, id)) = self.longest_prefix(tokens, &text[start..]) {
                return Some((start, len, id));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::TokenType;
    use alloc::vec;

    fn table(words: &[&str]) -> TokenTable {
        let mut starts = vec![0u32];
        let mut bytes = Vec::new();
        for w in words {
            bytes.extend_from_slice(w.as_bytes());
            starts.push(bytes.len() as u32);
        }
        TokenTable { types: vec![TokenType::Control; words.len()], starts, bytes }
    }

    #[test]
    fn leftmost_then_longest_then_lowest_id() {
        let t = table(&["<a>", "<a>b", "b", "", "<a>", "xy", "y"]);
        let s = SortedTokens::new(&t, &|_| true).unwrap();
        assert_eq!(s.find(&t, b"<a>"), Some(0)); // ids 0 and 4 share bytes: the lowest wins
        assert_eq!(s.find(&t, b"<a"), None);
        assert_eq!(s.find(&t, b""), None); // empty tokens are never kept
        assert_eq!(s.find_next(&t, b"zz<a>bc", 0), Some((2, 4, 1)));
        assert_eq!(s.find_next(&t, b"zz<a>c", 0), Some((2, 3, 0)));
        assert_eq!(s.find_next(&t, b"<a", 0), None);
        assert_eq!(s.find_next(&t, b"axy", 0), Some((1, 2, 5))); // leftmost beats the later "y"
        assert_eq!(s.find_next(&t, b"axy", 2), Some((2, 1, 6)));
    }
}
