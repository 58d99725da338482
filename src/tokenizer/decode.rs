//! Streaming decode: token bytes in, complete UTF-8 out.
//!
//! A token may end in the middle of a character (byte-level BPE splits characters freely, and a
//! SentencePiece byte-fallback token is one byte of one), so bytes are held back until the character
//! they belong to is complete. Ill-formed input becomes U+FFFD exactly as `String::from_utf8_lossy`
//! does (one U+FFFD per maximal ill-formed subpart, Unicode §3.9 "U+FFFD Substitution of Maximal
//! Subparts"), but only once the bytes are *definitely* ill-formed: a prefix that could still be
//! completed by the next token is kept.

use alloc::vec::Vec;

use super::utf8;

const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    /// The first bytes of a character that is not complete yet (`pending[..n_pending]`, at most 3).
    pending: [u8; 4],
    n_pending: usize,
}

impl StreamDecoder {
    pub const fn new() -> StreamDecoder {
        StreamDecoder { pending: [0; 4], n_pending: 0 }
    }

    /// Takes a token's bytes; appends to `out` every character they complete (always valid UTF-8).
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            self.push_byte(b, out);
        }
    }

    /// Ends the stream: an unfinished character becomes U+FFFD.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.n_pending > 0 {
            out.extend_from_slice(REPLACEMENT);
            self.n_pending = 0;
        }
    }

    /// Bytes held back waiting for the rest of their character.
    pub fn pending_len(&self) -> usize {
        self.n_pending
    }

    fn push_byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.n_pending > 0 {
            let lead = self.pending[0];
            if utf8::continues(lead, self.n_pending, b) {
                self.pending[self.n_pending] = b;
                self.n_pending += 1;
                if self.n_pending == utf8::sequence_len(lead) {
                    out.extend_from_slice(&self.pending[..self.n_pending]);
                    self.n_pending = 0;
                }
                return;
            }
            // The held bytes can no longer become a character; `b` may still start one.
            out.extend_from_slice(REPLACEMENT);
            self.n_pending = 0;
        }
        match utf8::sequence_len(b) {
            0 => out.extend_from_slice(REPLACEMENT),
            1 => out.push(b),
            _ => {
                self.pending[0] = b;
                self.n_pending = 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn matches_from_utf8_lossy_wherever_the_cuts_fall() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        // Bytes drawn mostly from UTF-8-ish material so that long valid and near-valid runs occur.
        let alphabet: &[u8] = &[b'a', b' ', 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1, 0xED, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF];
        for _ in 0..20_000 {
            let n = (next(&mut seed) % 12) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| alphabet[(next(&mut seed) % alphabet.len() as u64) as usize]).collect();
            let mut decoder = StreamDecoder::new();
            let mut out = Vec::new();
            let mut i = 0;
            while i < bytes.len() {
                let step = 1 + (next(&mut seed) % 3) as usize;
                let end = (i + step).min(bytes.len());
                let before = out.len();
                decoder.push(&bytes[i..end], &mut out);
                // Every release is whole characters.
                assert!(core::str::from_utf8(&out[before..]).is_ok());
                i = end;
            }
            decoder.finish(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), String::from_utf8_lossy(&bytes), "{bytes:02x?}");
        }
    }

    #[test]
    fn holds_a_character_split_across_tokens() {
        let mut d = StreamDecoder::new();
        let mut out = Vec::new();
        let emoji = "👋".as_bytes();
        d.push(&emoji[..1], &mut out);
        d.push(&emoji[1..3], &mut out);
        assert!(out.is_empty());
        assert_eq!(d.pending_len(), 3);
        d.push(&emoji[3..], &mut out);
        assert_eq!(out, emoji);
        // A lead byte followed by ASCII: U+FFFD, then the ASCII.
        out.clear();
        d.push(b"\xe4", &mut out);
        assert!(out.is_empty());
        d.push(b"x", &mut out);
        assert_eq!(out, "\u{FFFD}x".as_bytes());
        // Unfinished at the end.
        out.clear();
        d.push(b"\xf0\x9f", &mut out);
        d.finish(&mut out);
        assert_eq!(out, REPLACEMENT);
    }
}
