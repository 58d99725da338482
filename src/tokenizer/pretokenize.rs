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
//! `qwen2` is Qwen2's regex (llama.cpp `LLAMA_VOCAB_PRE_TYPE_QWEN2`; Hugging Face writes the
//! contractions as `(?i:'s|'t|'re|'ve|'m|'ll|'d)`), and `llama3` the same with `\p{N}{1,3}`:
//!
//! ```text
//! (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
//!  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//! ```
//!
//! Same backtracking semantics. What differs from GPT-2:
//! - contractions match either case (`DON'T` → `DON` `'T`), still only at the start of a piece;
//! - a letter run takes one character before it that is not `\r`, `\n`, a letter or a number: a
//!   space, a tab, U+3000, punctuation, an ill-formed byte (`(foo` → `(foo`, `\tx` → `\tx`);
//! - numbers are pieces of one (qwen2) or at most three (llama3, greedy from the left) characters;
//! - an OTHER run (after an optional U+0020) takes the `\r`/`\n` characters right after it;
//! - a whitespace run that contains `\r` or `\n` is cut just after the last of them (`\s*[\r\n]+`);
//!   one without is cut as in GPT-2.
//!
//! No Unicode normalization is applied. (Qwen2's Hugging Face tokenizer has an NFC normalizer;
//! llama.cpp applies none to BPE vocabularies, and llama.cpp is the reference here, so text that is
//! not in NFC — `e` + U+0301 — may tokenize differently from Hugging Face.) Where `(?i:…)` and the
//! spelled-out classes differ, we follow llama.cpp: `'ſ` (U+017F, which case-folds to `s`) is no
//! contraction here, so `'ſt` → `'ſt` where Hugging Face gives `'ſ` `t`.
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
        PreTokenizer::Qwen2 => split_qwen2(text, 1, emit),
        PreTokenizer::Llama3 => split_qwen2(text, 3, emit),
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
    let (run_start, class) = if text[i] == b' ' && i + 1 < text.len() { (i + 1, char_at(text, i + 1).0) } else { (i, char_at(text, i).0) };
    if class != WHITESPACE {
        return run_end(text, run_start, class);
    }
    // `\s+(?!\S)|\s+`: text[i] is whitespace here.
    whitespace_match_end(text, i)
}

/// End of the longest run of characters of `class` starting at `text[start]`.
fn run_end(text: &[u8], start: usize, class: u8) -> usize {
    let mut end = start;
    while end < text.len() {
        let (c, len) = char_at(text, end);
        if c != class {
            break;
        }
        end += len;
    }
    end
}

/// End of `\s+(?!\S)|\s+` at `text[i]`, a whitespace character.
fn whitespace_match_end(text: &[u8], i: usize) -> usize {
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

fn is_newline(byte: u8) -> bool {
    byte == b'\r' || byte == b'\n'
}

/// The qwen2 rule (`max_digits = 1`) or the llama3 rule (`max_digits = 3`).
fn split_qwen2(text: &[u8], max_digits: usize, emit: &mut impl FnMut(&[u8])) {
    let mut i = 0;
    while i < text.len() {
        let end = qwen2_match_end(text, i, max_digits);
        emit(&text[i..end]);
        i = end;
    }
}

/// End of the qwen2/llama3 regex match that starts at `text[i]` (always `> i`).
fn qwen2_match_end(text: &[u8], i: usize, max_digits: usize) -> usize {
    // (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]): ASCII letters only, so bytes will do.
    if text[i] == b'\'' {
        let lower = |k: usize| text.get(k).map(u8::to_ascii_lowercase);
        match (lower(i + 1), lower(i + 2)) {
            (Some(b's' | b't' | b'm' | b'd'), _) => return i + 2,
            (Some(b'r'), Some(b'e')) | (Some(b'v'), Some(b'e')) | (Some(b'l'), Some(b'l')) => return i + 3,
            _ => {}
        }
    }
    let (class, len) = char_at(text, i);
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if class == LETTER {
        return run_end(text, i, LETTER);
    }
    let can_lead = class != NUMBER && !is_newline(text[i]);
    if can_lead && i + len < text.len() && char_at(text, i + len).0 == LETTER {
        return run_end(text, i + len, LETTER);
    }
    // \p{N} (qwen2) or \p{N}{1,3} (llama3)
    if class == NUMBER {
        let mut end = i + len;
        let mut n_digits = 1;
        while n_digits < max_digits && end < text.len() {
            let (c, l) = char_at(text, end);
            if c != NUMBER {
                break;
            }
            end += l;
            n_digits += 1;
        }
        return end;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let other_start = if class == OTHER {
        Some(i)
    } else if text[i] == b' ' && i + 1 < text.len() && char_at(text, i + 1).0 == OTHER {
        Some(i + 1)
    } else {
        None
    };
    if let Some(start) = other_start {
        let mut end = run_end(text, start, OTHER);
        while end < text.len() && is_newline(text[end]) {
            end += 1;
        }
        return end;
    }
    // `\s*[\r\n]+`: text[i] is whitespace here; `\s*` backtracks to the run's last `\r` or `\n`.
    let mut end = i;
    let mut after_last_newline = None;
    while end < text.len() {
        let (c, l) = char_at(text, end);
        if c != WHITESPACE {
            break;
        }
        if is_newline(text[end]) {
            after_last_newline = Some(end + 1);
        }
        end += l;
    }
    match after_last_newline {
        Some(e) => e,
        // `\s+(?!\S)|\s+`
        None => whitespace_match_end(text, i),
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
    fn qwen2_rule() {
        let q = |t| pieces(t, PreTokenizer::Qwen2);
        assert_eq!(q("DON'T don't we'RE I'll 'll"), ["DON", "'T", " don", "'t", " we", "'RE", " I", "'ll", " '", "ll"]);
        assert_eq!(q("'llama"), ["'ll", "ama"]);
        assert_eq!(q("(foo) $x\tbar"), ["(foo", ")", " $", "x", "\tbar"]);
        assert_eq!(q("\u{3000}全角"), ["\u{3000}全角"]);
        assert_eq!(q("a \n\n  b"), ["a", " \n\n", " ", " b"]);
        assert_eq!(q("x;\r\n  y"), ["x", ";\r\n", " ", " y"]);
        assert_eq!(q(" ...\n\nz"), [" ...\n\n", "z"]);
        assert_eq!(q("\n \n x"), ["\n \n", " x"]);
        assert_eq!(q("a   b"), ["a", "  ", " b"]);
        assert_eq!(q("trailing \t "), ["trailing", " \t "]);
        assert_eq!(q("12345 ½"), ["1", "2", "3", "4", "5", " ", "½"]);
        assert_eq!(q("\n5"), ["\n", "5"]);
        assert_eq!(q("\nb"), ["\n", "b"]);
        assert_eq!(q(" "), [" "]);
        assert_eq!(q("'"), ["'"]);
        assert_eq!(q(""), Vec::<&str>::new());
    }

    #[test]
    fn llama3_groups_numbers_in_threes() {
        let l = |t| pieces(t, PreTokenizer::Llama3);
        assert_eq!(l("1234567 89"), ["123", "456", "7", " ", "89"]);
        assert_eq!(l("x٣٤٥٦y"), ["x", "٣٤٥", "٦", "y"]);
        assert_eq!(l("DON'T"), ["DON", "'T"]);
    }

    #[test]
    fn ill_formed_bytes_lead_letters_in_qwen2() {
        let mut out: Vec<Vec<u8>> = Vec::new();
        split(b"\xffab\xfe\xfd!\r\n\xc3", PreTokenizer::Qwen2, &mut |p: &[u8]| out.push(p.to_vec()));
        assert_eq!(out, [b"\xffab".to_vec(), b"\xfe\xfd!\r\n".to_vec(), b"\xc3".to_vec()]);
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
