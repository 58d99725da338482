//! Pre-tokenizers: split a text fragment into pieces that BPE then encodes one by one.
//!
//! `gpt2` is GPT-2's regex, implemented by hand (no regex engine in a 150 KB module):
//!
//! ```text
//! 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//! ```
//!
//! with the semantics of a backtracking engine (Oniguruma, as used by Hugging Face `tokenizers`):
//! at each position the first alternative that matches wins, and `+` is greedy. Two consequences
//! worth spelling out:
//! - the contractions are case-sensitive and only start a piece: `DON'T` → `DON` `'` `T`;
//! - `\s+(?!\S)` backtracks one character when a whitespace run is followed by a non-space, so
//!   `a   b` → `a` `  ` ` b`: the run's last character is left for the next piece. A lone
//!   whitespace character before a non-space matches `\s+` by itself (`\nb` → `\n` `b`), and a run
//!   that reaches the end of the fragment is kept whole.
//!
//! `smollm` is SmolLM2's `Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]`
//! (llama.cpp: `LLAMA_VOCAB_PRE_TYPE_SMOLLM`, regexes `\p{N}` then the GPT-2 one): every `\p{N}`
//! character is a piece of its own, and the GPT-2 rule runs separately on each stretch between
//! them, so a stretch's end is a fragment end for `(?!\S)`.
//!
//! Text need not be valid UTF-8: a byte that does not start a well-formed sequence is one character
//! of class OTHER (`[^\s\p{L}\p{N}]`), and pieces keep the original bytes. (llama.cpp turns such a
//! byte into U+FFFD instead; Hugging Face cannot take such input at all.)

use super::unicode_tables::{CLASS_RUNS, LETTER, NUMBER, OTHER, WHITESPACE};
use super::utf8;
use super::PreTokenizer;

/// The GPT-2 class (`unicode_tables`) of a code point.
pub(super) fn class_of(cp: u32) -> u8 {
    if cp < 0x80 {
        return match cp as u8 {
            b'A'..=b'Z' | b'a'..=b'z' => LETTER,
            b'0'..=b'9' => NUMBER,
            0x09..=0x0D | b' ' => WHITESPACE,
            _ => OTHER,
        };
    }
    // The last run starting at or before `cp`; the first run starts at 0, so `k >= 1`.
    let k = CLASS_RUNS.partition_point(|&run| run >> 2 <= cp);
    match k.checked_sub(1).and_then(|i| CLASS_RUNS.get(i)) {
        Some(&run) => (run & 3) as u8,
        None => OTHER,
    }
}

/// Class and byte length of the character at `text[i]` (`i < text.len()`).
fn char_at(text: &[u8], i: usize) -> (u8, usize) {
    match utf8::decode_at(text, i) {
        Some((cp, len)) => (class_of(cp), len),
        None => (OTHER, 1),
    }
}

/// Calls `emit` with each piece of `text`, in order; the pieces concatenate to `text`.
pub(super) fn split(text: &[u8], pre_tokenizer: PreTokenizer, emit: &mut impl FnMut(&[u8])) {
    match pre_tokenizer {
        PreTokenizer::None => {
            if !text.is_empty() {
                emit(text)
            }
        }
        PreTokenizer::Gpt2 => split_gpt2(text, emit),
        PreTokenizer::Smollm => {
            let mut stretch_start = 0;
            let mut i = 0;
            while i < text.len() {
                let (class, len) = char_at(text, i);
                if class == NUMBER {
                    split_gpt2(&text[stretch_start..i], emit);
                    emit(&text[i..i + len]);
                    stretch_start = i + len;
                }
                i += len;
            }
            split_gpt2(&text[stretch_start..], emit);
        }
    }
}

fn split_gpt2(text: &[u8], emit: &mut impl FnMut(&[u8])) {
    let mut i = 0;
    while i < text.len() {
        let end = gpt2_match_end(text, i);
        emit(&text[i..end]);
        i = end;
    }
}

/// End of the GPT-2 regex match that starts at `text[i]` (always `> i`).
fn gpt2_match_end(text: &[u8], i: usize) -> usize {
    // 's|'t|'re|'ve|'m|'ll|'d
    if text[i] == b'\'' {
        match (text.get(i + 1), text.get(i + 2)) {
            (Some(b's' | b't' | b'm' | b'd'), _) => return i + 2,
            (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => return i + 3,
            _ => {}
        }
    }
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a run of one class.
    let (run_start, class) = if text[i] == b' ' && i + 1 < text.len() {
        (i + 1, char_at(text, i + 1).0)
    } else {
        (i, char_at(text, i).0)
    };
    if class != WHITESPACE {
        let mut end = run_start;
        while end < text.len() {
            let (c, len) = char_at(text, end);
            if c != class {
                break;
            }
            end += len;
        }
        return end;
    }
    // `\s+(?!\S)|\s+`: text[i] is whitespace here.
    let mut end = i;
    let mut last_start = i;
    let mut n_chars = 0usize;
    while end < text.len() {
        let (c, len) = char_at(text, end);
        if c != WHITESPACE {
            break;
        }
        last_start = end;
        end += len;
        n_chars += 1;
    }
    if end == text.len() || n_chars == 1 {
        end
    } else {
        // Followed by a non-space: give the last whitespace character back.
        last_start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn pieces(text: &str, pre: PreTokenizer) -> Vec<&str> {
        let mut out = Vec::new();
        let base = text.as_ptr() as usize;
        split(text.as_bytes(), pre, &mut |p: &[u8]| {
            let start = p.as_ptr() as usize - base;
            out.push(&text[start..start + p.len()]);
        });
        out
    }

    #[test]
    fn gpt2_rule() {
        let g = |t| pieces(t, PreTokenizer::Gpt2);
        assert_eq!(g("Hello world"), ["Hello", " world"]);
        assert_eq!(g("a   b"), ["a", "  ", " b"]);
        assert_eq!(g("a \n\nb"), ["a", " \n", "\n", "b"]);
        assert_eq!(g("a\nb"), ["a", "\n", "b"]);
        assert_eq!(g("trailing   "), ["trailing", "   "]);
        assert_eq!(g("I'm don't DON'T we'll they're 've"), ["I", "'m", " don", "'t", " DON", "'", "T", " we", "'ll", " they", "'re", " '", "ve"]);
        assert_eq!(g("x 12 ab3"), ["x", " 12", " ab", "3"]);
        assert_eq!(g("?!'s"), ["?!'", "s"]);
        assert_eq!(g("  !!"), [" ", " !!"]);
        assert_eq!(g("é\u{301}x"), ["é", "\u{301}", "x"]);
        assert_eq!(g("\u{3000}\u{3000}x"), ["\u{3000}", "\u{3000}", "x"]);
        assert_eq!(g(" "), [" "]);
        assert_eq!(g("'"), ["'"]);
        assert_eq!(g(""), Vec::<&str>::new());
    }

    #[test]
    fn smollm_isolates_every_number_character() {
        let s = |t| pieces(t, PreTokenizer::Smollm);
        assert_eq!(s("12345 678"), ["1", "2", "3", "4", "5", " ", "6", "7", "8"]);
        assert_eq!(s("x   5"), ["x", "   ", "5"]);
        assert_eq!(s("Ⅻ½٣"), ["Ⅻ", "½", "٣"]);
        assert_eq!(s("a1b"), ["a", "1", "b"]);
    }

    #[test]
    fn ill_formed_bytes_are_other_characters() {
        let mut out: Vec<Vec<u8>> = Vec::new();
        split(b"a\xff\xfe!b \xc3", PreTokenizer::Gpt2, &mut |p: &[u8]| out.push(p.to_vec()));
        assert_eq!(out, [b"a".to_vec(), b"\xff\xfe!".to_vec(), b"b".to_vec(), b" \xc3".to_vec()]);
    }

    #[test]
    fn classes() {
        assert_eq!(class_of('a' as u32), LETTER);
        assert_eq!(class_of('世' as u32), LETTER);
        assert_eq!(class_of('٣' as u32), NUMBER);
        assert_eq!(class_of(0x85), WHITESPACE);
        assert_eq!(class_of(0x1C), OTHER);
        assert_eq!(class_of(0x200B), OTHER);
        assert_eq!(class_of(0x301), OTHER);
        assert_eq!(class_of(0x1F600), OTHER);
        assert_eq!(class_of(0x10FFFF), OTHER);
        assert_eq!(class_of(0x11_0000), OTHER);
    }
}
