//! Tests of the whole tokenizer over small hand-built sections: every parse rejection, encoding by
//! kind, special tokens, never panicking on arbitrary bytes, decode round trips.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::error::Status;

const NORMAL: u8 = 1;
const UNKNOWN: u8 = 2;
const CONTROL: u8 = 3;
const USER_DEFINED: u8 = 4;
const UNUSED: u8 = 5;
const BYTE: u8 = 6;

/// An SLM1 tokenizer section under construction; `bytes()` serializes it as FORMAT.md lays it out.
#[derive(Clone)]
pub(super) struct Section {
    kind: u32,
    n_tokens: Option<u32>,
    n_merges: Option<u32>,
    bos_id: u32,
    eos_id: u32,
    unk_id: u32,
    pre_tokenizer: u32,
    chat_template: u32,
    tok_flags: u32,
    eog_ids: Vec<u32>,
    max_token_len: Option<u32>,
    reserved: u32,
    tokens: Vec<(u8, Vec<u8>, f32)>,
    merges: Vec<[u32; 4]>,
}

impl Section {
    fn new(kind: u32) -> Section {
        Section {
            kind,
            n_tokens: None,
            n_merges: None,
            bos_id: u32::MAX,
            eos_id: u32::MAX,
            unk_id: u32::MAX,
            pre_tokenizer: 0,
            chat_template: 0,
            tok_flags: 0,
            eog_ids: Vec::new(),
            max_token_len: None,
            reserved: 0,
            tokens: Vec::new(),
            merges: Vec::new(),
        }
    }

    fn id(&self, bytes: &[u8]) -> u32 {
        self.tokens.iter().position(|t| t.1 == bytes && t.0 != BYTE).expect("token") as u32
    }

    fn add(&mut self, ty: u8, bytes: &[u8]) -> u32 {
        self.tokens.push((ty, bytes.to_vec(), 0.0));
        self.tokens.len() as u32 - 1
    }

    /// Adds the token `left ++ right` (if new) and the merge producing it, ranked after the others.
    fn merge(&mut self, left: &[u8], right: &[u8]) {
        let mut joined = left.to_vec();
        joined.extend_from_slice(right);
        let result = match self.tokens.iter().position(|t| t.1 == joined && t.0 == NORMAL) {
            Some(i) => i as u32,
            None => self.add(NORMAL, &joined),
        };
        let rank = self.merges.len() as u32;
        self.merges.push([self.id(left), self.id(right), result, rank]);
    }

    fn n_tokens(&self) -> u32 {
        self.n_tokens.unwrap_or(self.tokens.len() as u32)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let max_len = self.tokens.iter().map(|t| t.1.len() as u32).max().unwrap_or(0);
        for v in [
            self.kind,
            self.n_tokens(),
            self.n_merges.unwrap_or(self.merges.len() as u32),
            self.bos_id,
            self.eos_id,
            self.unk_id,
            self.pre_tokenizer,
            self.chat_template,
            self.tok_flags,
            self.eog_ids.len() as u32,
            self.max_token_len.unwrap_or(max_len),
            self.reserved,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for id in &self.eog_ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        for (ty, bytes, score) in &self.tokens {
            out.push(*ty);
            out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
            out.extend_from_slice(&score.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        for m in &self.merges {
            for v in m {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    pub(super) fn parse(&self) -> Result<Tokenizer> {
        Tokenizer::parse(&self.bytes(), self.n_tokens())
    }
}

/// A small GPT-2-style vocabulary: all 256 bytes, a few merges, specials, smollm pre-tokenizer.
pub(super) fn byte_level() -> Section {
    let mut s = Section::new(1);
    for b in 0..=255u8 {
        s.add(NORMAL, &[b]);
    }
    let end = s.add(CONTROL, b"<|end|>");
    s.add(CONTROL, b"<|end|>!"); // overlaps <|end|>: longest match wins
    s.add(USER_DEFINED, b"<tool>");
    s.add(CONTROL, b""); // a control token with no text: never matched
    for (l, r) in [
        (&b"h"[..], &b"e"[..]),
        (b"l", b"l"),
        (b"he", b"ll"),
        (b"hell", b"o"),
        (b" ", b"w"),
        (b"o", b"r"),
        (b" w", b"or"),
        (b" wor", b"l"),
        (b" worl", b"d"),
        (b"\xe4", b"\xb8"),
        (b"\xe4\xb8", b"\x96"),
    ] {
        s.merge(l, r);
    }
    s.pre_tokenizer = 2;
    s.chat_template = 1;
    s.eos_id = end;
    s.eog_ids = vec![end];
    s
}

/// A small SentencePiece-style vocabulary with byte fallback for all 256 bytes, merges ranked by the
/// result's score (as the packer does for llama2.c models).
pub(super) fn sentencepiece() -> Section {
    let mut s = Section::new(2);
    s.add(UNKNOWN, b"<unk>");
    let bos = s.add(CONTROL, b"<s>");
    let eos = s.add(CONTROL, b"</s>");
    for b in 0..=255u8 {
        s.add(BYTE, &[b]);
    }
    for c in [" ", "a", "b", "c", "é", "ab", "bc", "abc", " a", " ab", " abc", "  "] {
        let score = -(c.chars().count() as f32) + if c.contains('b') { 0.5 } else { 0.0 };
        s.tokens.push((NORMAL, c.as_bytes().to_vec(), score));
    }
    s.merges = packer_merges(&s);
    s.bos_id = bos;
    s.eos_id = eos;
    s.unk_id = 0;
    s.tok_flags = FLAG_BOS | FLAG_SPACE;
    s
}

const FLAG_BOS: u32 = 1;
const FLAG_SPACE: u32 = 2;

/// Every split of every normal token into two normal tokens, ranked by the result's score (higher
/// first, equal scores equal rank).
fn packer_merges(s: &Section) -> Vec<[u32; 4]> {
    let find = |b: &[u8]| s.tokens.iter().position(|t| t.0 == NORMAL && t.1 == b).map(|i| i as u32);
    let mut merges = Vec::new();
    for (id, (ty, bytes, score)) in s.tokens.iter().enumerate() {
        if *ty != NORMAL {
            continue;
        }
        for cut in 1..bytes.len() {
            if let (Some(l), Some(r)) = (find(&bytes[..cut]), find(&bytes[cut..])) {
                merges.push((*score, [l, r, id as u32, 0]));
            }
        }
    }
    merges.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap());
    let mut scores: Vec<f32> = merges.iter().map(|m| m.0).collect();
    scores.dedup();
    merges.iter().map(|(sc, m)| [m[0], m[1], m[2], scores.iter().position(|x| x == sc).unwrap() as u32]).collect()
}

pub(super) fn byte_kind() -> Section {
    let mut s = Section::new(0);
    for b in 0..=255u8 {
        s.add(if b % 2 == 0 { NORMAL } else { BYTE }, &[b]);
    }
    let bos = s.add(CONTROL, b"<s>");
    let eos = s.add(CONTROL, b"</s>");
    s.bos_id = bos;
    s.eos_id = eos;
    s.tok_flags = FLAG_BOS;
    s
}

fn encode(t: &Tokenizer, text: &[u8], parse_special: bool) -> Vec<u32> {
    let mut out = Vec::new();
    t.encode(text, parse_special, &mut out).unwrap();
    out
}

fn decode(t: &Tokenizer, ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    t.decode(ids, &mut out);
    out
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

// --- Parsing ---

#[test]
fn valid_sections_parse() {
    for s in [byte_level(), sentencepiece(), byte_kind()] {
        let t = s.parse().unwrap();
        assert_eq!(t.n_tokens(), s.tokens.len() as u32);
        assert_eq!(t.n_merges(), s.merges.len() as u32);
        assert!(t.heap_bytes() > 0);
    }
    let t = byte_level().parse().unwrap();
    assert_eq!(t.kind(), TokenizerKind::BpeByteLevel);
    assert_eq!(t.pre_tokenizer(), PreTokenizer::Smollm);
    assert_eq!(t.chat_template(), ChatTemplate::ChatMl);
    assert_eq!(t.token_bytes(256), b"<|end|>");
    assert_eq!(t.token_type(256), Some(TokenType::Control));
    assert_eq!(t.token_bytes(1_000_000), b"");
    assert!(t.is_end_of_generation(256));
    assert!(!t.is_end_of_generation(257));
    assert!(!t.adds_bos());
    let t = sentencepiece().parse().unwrap();
    assert_eq!((t.bos_id(), t.eos_id(), t.unk_id()), (Some(1), Some(2), Some(0)));
    assert!(t.is_end_of_generation(2)); // eos counts even with no eog_ids
    assert!(t.adds_bos() && t.adds_space_prefix());
}

#[track_caller]
fn rejects(s: &Section, status: Status, field: &str) {
    match s.parse() {
        Ok(_) => panic!("accepted; expected {status:?} at {field}"),
        Err(e) => {
            assert_eq!((e.status, e.field.as_str()), (status, field), "{e}");
        }
    }
}

#[test]
fn every_strict_prefix_is_truncated() {
    for s in [byte_level(), sentencepiece(), byte_kind()] {
        let bytes = s.bytes();
        for len in 0..bytes.len() {
            let e = Tokenizer::parse(&bytes[..len], s.n_tokens()).err().expect("prefix accepted");
            assert_eq!(e.status, Status::Truncated, "len {len}: {e}");
        }
    }
}

#[test]
fn truncation_names_the_field() {
    let s = byte_level();
    let bytes = s.bytes();
    let n = s.n_tokens();
    let cut = |len: usize| Tokenizer::parse(&bytes[..len], n).err().unwrap().field;
    assert_eq!(cut(47), "tokenizer.header");
    assert_eq!(cut(49), "tokenizer.eog_ids[0]");
    // First token starts at 52: type (1), len (2), score (4), bytes (1).
    let first = 52;
    // Cutting inside a token leaves fewer than 7 bytes per token: caught before allocating.
    assert_eq!(cut(first + 3), "tokenizer.tokens");
    // Inside the last token: its fields in order.
    let tokens_end = bytes.len() - s.merges.len() * 16;
    let last = s.tokens.len() - 1;
    let last_start = tokens_end - 7 - s.tokens[last].1.len();
    assert_eq!(cut(last_start), format!("tokenizer.tokens[{last}].token_type"));
    assert_eq!(cut(last_start + 1), format!("tokenizer.tokens[{last}].len"));
    assert_eq!(cut(last_start + 3), format!("tokenizer.tokens[{last}].score"));
    assert_eq!(cut(last_start + 7), format!("tokenizer.tokens[{last}].bytes"));
    assert_eq!(cut(tokens_end), "tokenizer.merges");
    assert_eq!(cut(bytes.len() - 1), "tokenizer.merges");
}

#[test]
fn header_rejections() {
    let base = byte_level();
    let mut s = base.clone();
    s.kind = 3;
    rejects(&s, Status::BadTokenizerKind, "tokenizer.kind");
    let e = Tokenizer::parse(&base.bytes(), base.n_tokens() + 1).err().unwrap();
    assert_eq!((e.status, e.field.as_str()), (Status::BadTokenizerKind, "tokenizer.n_tokens"));
    let mut s = base.clone();
    s.n_tokens = Some(262_145);
    let e = Tokenizer::parse(&s.bytes(), 262_145).err().unwrap();
    assert_eq!((e.status, e.field.as_str()), (Status::LimitExceeded, "tokenizer.n_tokens"));
    let mut s = base.clone();
    s.n_merges = Some(MAX_MERGES_PLUS_ONE);
    rejects(&s, Status::LimitExceeded, "tokenizer.n_merges");
    let mut s = base.clone();
    s.bos_id = s.n_tokens();
    rejects(&s, Status::BadSpecialToken, "tokenizer.bos_id");
    let mut s = base.clone();
    s.eos_id = u32::MAX - 1;
    rejects(&s, Status::BadSpecialToken, "tokenizer.eos_id");
    let mut s = base.clone();
    s.unk_id = s.n_tokens();
    rejects(&s, Status::BadSpecialToken, "tokenizer.unk_id");
    let mut s = base.clone();
    s.pre_tokenizer = 5;
    rejects(&s, Status::BadTokenizerKind, "tokenizer.pre_tokenizer");
    let mut s = base.clone();
    s.chat_template = 4;
    rejects(&s, Status::BadTokenizerKind, "tokenizer.chat_template");
    let mut s = base.clone();
    s.tok_flags = 4;
    rejects(&s, Status::BadTokenizerKind, "tokenizer.tok_flags");
    let mut s = base.clone();
    s.tok_flags = FLAG_BOS; // no bos_id
    rejects(&s, Status::BadSpecialToken, "tokenizer.bos_id");
    let mut s = base.clone();
    s.eog_ids = vec![0; 17];
    rejects(&s, Status::LimitExceeded, "tokenizer.n_eog");
    let mut s = base.clone();
    s.eog_ids = vec![0, s.n_tokens()];
    rejects(&s, Status::BadSpecialToken, "tokenizer.eog_ids[1]");
    let mut s = base.clone();
    s.max_token_len = Some(0);
    rejects(&s, Status::BadToken, "tokenizer.max_token_len");
    let mut s = base.clone();
    s.max_token_len = Some(1025);
    rejects(&s, Status::BadToken, "tokenizer.max_token_len");
    let mut s = base.clone();
    s.max_token_len = Some(20); // longer than the longest token
    rejects(&s, Status::BadToken, "tokenizer.max_token_len");
    let mut s = base.clone();
    s.reserved = 1;
    rejects(&s, Status::BadToken, "tokenizer.reserved");
}

const MAX_MERGES_PLUS_ONE: u32 = 1_048_577;

#[test]
fn token_rejections() {
    let base = byte_level();
    let mut s = base.clone();
    s.tokens[5].0 = 7;
    rejects(&s, Status::BadToken, "tokenizer.tokens[5].token_type");
    let mut s = base.clone();
    s.tokens[5].0 = 0;
    rejects(&s, Status::BadToken, "tokenizer.tokens[5].token_type");
    let mut s = base.clone();
    s.max_token_len = Some(7); // "<|end|>!" is 8 bytes
    rejects(&s, Status::BadToken, "tokenizer.tokens[257].len");
    let mut s = base.clone();
    s.tokens[5].1.clear();
    rejects(&s, Status::BadToken, "tokenizer.tokens[5].len");
    let mut s = base.clone();
    s.tokens[5].0 = BYTE;
    s.tokens[5].1 = b"ab".to_vec();
    rejects(&s, Status::BadToken, "tokenizer.tokens[5].len");
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut s = base.clone();
        s.tokens[9].2 = bad;
        rejects(&s, Status::BadToken, "tokenizer.tokens[9].score");
    }
    // An unused token may be empty.
    let mut s = base.clone();
    s.tokens[259].0 = UNUSED;
    assert!(s.parse().is_ok());
}

#[test]
fn byte_kind_rejections() {
    let base = byte_kind();
    let mut s = base.clone();
    s.tokens.truncate(255);
    s.bos_id = u32::MAX;
    s.eos_id = u32::MAX;
    s.tok_flags = 0;
    rejects(&s, Status::BadTokenizerKind, "tokenizer.n_tokens");
    let mut s = base.clone();
    s.merges.push([0, 1, 2, 0]);
    rejects(&s, Status::BadTokenizerKind, "tokenizer.n_merges");
    let mut s = base.clone();
    s.tokens[65].1 = b"B".to_vec();
    rejects(&s, Status::BadToken, "tokenizer.tokens[65]");
    let mut s = base.clone();
    s.tokens[65].0 = USER_DEFINED;
    rejects(&s, Status::BadToken, "tokenizer.tokens[65]");
    let mut s = base.clone();
    s.tokens[256].0 = NORMAL;
    rejects(&s, Status::BadToken, "tokenizer.tokens[256]");
}

#[test]
fn merge_rejections() {
    let base = byte_level();
    let n = base.n_tokens();
    for (k, field) in [(0, "left"), (1, "right"), (2, "result")] {
        let mut s = base.clone();
        s.merges[3][k] = n;
        rejects(&s, Status::BadMerge, &format!("tokenizer.merges[3].{field}"));
    }
    // Result bytes that are not left ++ right: "x" for (h, e); (ll, he) → hell.
    let mut s = base.clone();
    s.merges[0][2] = b'x' as u32;
    rejects(&s, Status::BadMerge, "tokenizer.merges[0].result");
    let mut s = base.clone();
    s.merges[2] = [s.merges[2][1], s.merges[2][0], s.merges[2][2], s.merges[2][3]];
    rejects(&s, Status::BadMerge, "tokenizer.merges[2].result");
    let mut s = base.clone();
    s.merges[4][3] = 0; // rank 4 → 0 after rank 3
    rejects(&s, Status::BadMerge, "tokenizer.merges[4].rank");
    // Equal ranks are fine.
    let mut s = base.clone();
    for m in &mut s.merges {
        m[3] = 7;
    }
    assert!(s.parse().is_ok());
}

#[test]
fn trailing_bytes_are_rejected() {
    let s = byte_level();
    let mut bytes = s.bytes();
    bytes.push(0);
    let e = Tokenizer::parse(&bytes, s.n_tokens()).err().unwrap();
    assert_eq!((e.status, e.field.as_str()), (Status::BadSectionBounds, "tokenizer.merges"));
}

#[test]
fn huge_declared_counts_fail_before_allocating() {
    let mut s = byte_level();
    s.n_tokens = Some(262_144);
    rejects(&s, Status::Truncated, "tokenizer.tokens");
    let mut s = byte_level();
    s.n_merges = Some(1_048_576);
    rejects(&s, Status::Truncated, "tokenizer.merges");
}

// --- Encoding ---

#[test]
fn byte_level_encoding() {
    let s = byte_level();
    let t = s.parse().unwrap();
    let id = |b: &[u8]| s.id(b);
    assert_eq!(encode(&t, b"hello world", false), [id(b"hello"), id(b" world")]);
    // Digits stand alone; spaces before them too (smollm).
    assert_eq!(encode(&t, b"he 12", false), [id(b"he"), id(b" "), id(b"1"), id(b"2")]);
    // A character split over merges: 世 = e4 b8 96.
    assert_eq!(encode(&t, "世".as_bytes(), false), [id("世".as_bytes())]);
    // Specials: leftmost, then longest; control tokens are plain text without parse_special,
    // user-defined ones are cut out either way (as llama.cpp and Hugging Face do).
    assert_eq!(encode(&t, b"he<|end|>!<|end|>", true), [id(b"he"), 257, 256]);
    assert_eq!(encode(&t, b"<tool>x", true), [258, id(b"x")]);
    assert_eq!(encode(&t, b"<tool>x", false), [258, id(b"x")]);
    assert_eq!(encode(&t, b"he<tool><|end|>", false)[..2], [id(b"he"), 258]);
    assert_eq!(encode(&t, b"<|end", true), encode(&t, b"<|end", false));
    let plain = encode(&t, b"<|end|>", false);
    assert!(plain.len() > 1 && !plain.contains(&256));
}

#[test]
fn sentencepiece_encoding() {
    let s = sentencepiece();
    let t = s.parse().unwrap();
    let id = |b: &str| s.id(b.as_bytes());
    let byte = |b: u8| 3 + b as u32;
    // BOS, dummy prefix, merges by score: " abc" wins.
    assert_eq!(encode(&t, b"abc", false), [1, id(" abc")]);
    // A character that is not a token falls back to its bytes: ü = c3 bc.
    assert_eq!(encode(&t, "aü".as_bytes(), false), [1, id(" a"), byte(0xc3), byte(0xbc)]);
    // A character that is a token: é.
    assert_eq!(encode(&t, "é".as_bytes(), false), [1, id(" "), id("é")]);
    // Ill-formed bytes fall back one by one.
    assert_eq!(encode(&t, b"\xff", false), [1, id(" "), byte(0xff)]);
    // Empty text: BOS only, no dummy prefix.
    assert_eq!(encode(&t, b"", false), [1]);
    // Specials with parse_special; the prefix goes only before a fragment that starts the text.
    assert_eq!(encode(&t, b"<s>a", true), [1, 1, id("a")]);
    assert_eq!(encode(&t, b"a</s>b", true), [1, id(" a"), 2, id("b")]);
    // `▁` (U+2581) is SentencePiece's space: read as one, as llama.cpp does.
    assert_eq!(encode(&t, "a\u{2581}bc".as_bytes(), false), encode(&t, b"a bc", false));
    assert_eq!(encode(&t, "\u{2581}\u{2581}".as_bytes(), false), [1, id("  "), id(" ")], "the dummy prefix and two spaces");
}

#[test]
fn sentencepiece_user_defined_tokens_are_cut_out_without_parse_special() {
    // Gemma's vocabulary has "\n", runs of spaces and HTML tags as user-defined tokens: text never
    // merges into them or across them.
    let mut s = sentencepiece();
    let nl = s.add(USER_DEFINED, b"\n");
    let tag = s.add(USER_DEFINED, b"<b>");
    let t = s.parse().unwrap();
    let id = |b: &str| s.id(b.as_bytes());
    for parse_special in [false, true] {
        assert_eq!(encode(&t, b"a\nbc<b>", parse_special), [1, id(" a"), nl, id("bc"), tag]);
    }
    // Control tokens still need parse_special.
    assert_eq!(encode(&t, b"a</s>", true), [1, id(" a"), 2]);
    assert_ne!(encode(&t, b"a</s>", false)[2], 2);
}

#[test]
fn sentencepiece_unknown_when_no_byte_token() {
    let mut s = sentencepiece();
    s.tokens[3 + 0xbc].0 = UNUSED; // no byte token for 0xbc any more
    let t = s.parse().unwrap();
    assert_eq!(encode(&t, "ü".as_bytes(), false), [1, s.id(b" "), 3 + 0xc3, 0]);
    s.unk_id = u32::MAX;
    let t = s.parse().unwrap();
    assert_eq!(encode(&t, "ü".as_bytes(), false), [1, s.id(b" "), 3 + 0xc3]);
}

fn encode_counted(t: &Tokenizer, text: &[u8]) -> (Vec<u32>, usize) {
    let mut out = Vec::new();
    let encoded = t.encode(text, false, &mut out).unwrap();
    (out, encoded.unencodable_bytes)
}

#[test]
fn byte_level_byte_without_a_token_is_unk_or_dropped_and_counted() {
    let mut s = byte_level();
    s.tokens[b'A' as usize].0 = UNUSED; // an unused token is never an initial symbol: 'A' has none
    let b = s.id(b"B");
    let t = s.parse().unwrap();
    // No unk_id: dropped, but never silently.
    assert_eq!(encode_counted(&t, b"ABA"), (vec![b], 2));
    assert_ne!(decode(&t, &encode(&t, b"ABA", false)), b"ABA");
    // A control token named as unk_id is not substituted (SmolLM2 names <|endoftext|>): dropped.
    s.unk_id = 258; // <tool>
    let t = s.parse().unwrap();
    assert_eq!(encode_counted(&t, b"ABA"), (vec![b], 2));
    // An unknown-type unk_id is.
    s.tokens[258].0 = UNKNOWN;
    let t = s.parse().unwrap();
    assert_eq!(encode_counted(&t, b"ABA"), (vec![258, b, 258], 2));
    // Text the vocabulary covers counts nothing, and round-trips.
    assert_eq!(encode_counted(&t, b"hello world").1, 0);
    assert_eq!(decode(&t, &encode(&t, b"hello world", false)), b"hello world");
    // Special tokens cut out of the text are not counted either.
    let mut out = Vec::new();
    assert_eq!(t.encode(b"<|end|>B", true, &mut out).unwrap().unencodable_bytes, 0);
}

#[test]
fn sentencepiece_byte_without_a_token_is_counted() {
    let mut s = sentencepiece();
    s.tokens[3 + 0xbc].0 = UNUSED; // no byte token for 0xbc any more
    let t = s.parse().unwrap();
    assert_eq!(encode_counted(&t, "üü".as_bytes()), (vec![1, s.id(b" "), 3 + 0xc3, 0, 3 + 0xc3, 0], 2));
    s.unk_id = u32::MAX;
    let t = s.parse().unwrap();
    assert_eq!(encode_counted(&t, "ü".as_bytes()), (vec![1, s.id(b" "), 3 + 0xc3], 1));
    assert_eq!(encode_counted(&t, "abc".as_bytes()).1, 0);
    // The byte kind covers every byte.
    assert_eq!(encode_counted(&byte_kind().parse().unwrap(), &[0, 0x80, 0xff]).1, 0);
}

#[test]
fn tokens_with_the_same_bytes_are_rejected() {
    // A second normal token "he": reported at the later one, value the earlier id.
    let mut s = byte_level();
    let he = s.id(b"he");
    let dup = s.add(NORMAL, b"he");
    let e = s.parse().err().unwrap();
    assert_eq!((e.status, e.field.as_str(), e.value), (Status::BadToken, format!("tokenizer.tokens[{dup}].bytes").as_str(), he as u64));
    // Types other than byte form one class: a control token spelled like a normal token repeats it.
    let mut s = byte_level();
    let dup = s.add(CONTROL, b"x");
    let e = s.parse().err().unwrap();
    assert_eq!((e.field.as_str(), e.value), (format!("tokenizer.tokens[{dup}].bytes").as_str(), b'x' as u64));
    // Two byte tokens for one byte.
    let mut s = sentencepiece();
    let dup = s.add(BYTE, b"A");
    let e = s.parse().err().unwrap();
    assert_eq!((e.status, e.field.as_str(), e.value), (Status::BadToken, format!("tokenizer.tokens[{dup}].bytes").as_str(), 3 + b'A' as u64));
    // Of several repeats, the lowest repeating id is reported, whichever class it is in.
    let mut s = sentencepiece();
    let first = s.add(NORMAL, b"ab");
    s.add(BYTE, b"B");
    let e = s.parse().err().unwrap();
    assert_eq!((e.field.as_str(), e.value), (format!("tokenizer.tokens[{first}].bytes").as_str(), s.id(b"ab") as u64));
    let mut s = sentencepiece();
    let first = s.add(BYTE, b"B");
    s.add(NORMAL, b"ab");
    let e = s.parse().err().unwrap();
    assert_eq!((e.field.as_str(), e.value), (format!("tokenizer.tokens[{first}].bytes").as_str(), 3 + b'B' as u64));
}

#[test]
fn tokens_that_may_share_bytes() {
    // A byte token and a token of another type with its one byte (SentencePiece's `<0x61>` and `a`).
    let s = sentencepiece();
    assert_eq!(s.tokens[s.id(b"a") as usize].1, s.tokens[3 + b'a' as usize].1);
    assert!(s.parse().is_ok());
    // Empty tokens, however many.
    let mut s = byte_level();
    s.add(CONTROL, b"");
    s.add(UNUSED, b"");
    assert!(s.parse().is_ok());
}

/// llama2.c's `encode`: characters (or byte fallback), then repeatedly merge the adjacent pair whose
/// concatenation is a token with the highest score, leftmost on ties.
fn llama2c_encode(s: &Section, text: &str) -> Vec<u32> {
    let find = |b: &[u8]| s.tokens.iter().position(|t| t.0 == NORMAL && t.1 == b).map(|i| i as u32);
    let mut ids = vec![1];
    let mut syms: Vec<u32> = Vec::new();
    let text = alloc::format!(" {text}");
    for c in text.chars() {
        let mut buf = [0u8; 4];
        match find(c.encode_utf8(&mut buf).as_bytes()) {
            Some(id) => syms.push(id),
            None => syms.extend(c.encode_utf8(&mut buf).bytes().map(|b| 3 + b as u32)),
        }
    }
    loop {
        let mut best: Option<(f32, usize, u32)> = None;
        for i in 0..syms.len().saturating_sub(1) {
            let mut joined = s.tokens[syms[i] as usize].1.clone();
            joined.extend_from_slice(&s.tokens[syms[i + 1] as usize].1);
            if let Some(id) = find(&joined) {
                let score = s.tokens[id as usize].2;
                if best.is_none_or(|b| score > b.0) {
                    best = Some((score, i, id));
                }
            }
        }
        match best {
            Some((_, i, id)) => {
                syms[i] = id;
                syms.remove(i + 1);
            }
            None => break,
        }
    }
    ids.extend(syms);
    ids
}

#[test]
fn sentencepiece_matches_llama2c() {
    let s = sentencepiece();
    let t = s.parse().unwrap();
    let mut seed = 77u64;
    let alphabet = ["a", "b", "c", " ", "é", "ü", "x"];
    for _ in 0..2000 {
        let n = rng(&mut seed) % 10;
        let text: String = (0..n).map(|_| alphabet[(rng(&mut seed) % alphabet.len() as u64) as usize]).collect();
        if text.is_empty() {
            continue;
        }
        assert_eq!(encode(&t, text.as_bytes(), false), llama2c_encode(&s, &text), "{text:?}");
    }
}

#[test]
fn byte_kind_encoding() {
    let t = byte_kind().parse().unwrap();
    assert_eq!(encode(&t, b"A\xff", false), [256, 65, 255]);
    assert_eq!(encode(&t, b"A<s>", true), [256, 65, 256]);
    assert_eq!(encode(&t, b"A<s>", false), [256, 65, 60, 115, 62]);
}

#[test]
fn encode_never_panics_on_arbitrary_bytes() {
    let tokenizers: Vec<Tokenizer> = {
        let mut gpt2 = byte_level();
        gpt2.pre_tokenizer = 1;
        let mut none = byte_level();
        none.pre_tokenizer = 0;
        let mut sp_gpt2 = sentencepiece();
        sp_gpt2.pre_tokenizer = 1;
        [byte_level(), gpt2, none, sentencepiece(), sp_gpt2, byte_kind()].iter().map(|s| s.parse().unwrap()).collect()
    };
    let mut seed = 0xDEAD_BEEF_u64;
    let pieces: [&[u8]; 12] = [b"<|end|>", b"<s>", b" ", b"'s", b"\n", b"1", "é".as_bytes(), "世".as_bytes(), b"\xe4", b"\xb8", b"\xff", b"he"];
    for round in 0..3000 {
        let n = (rng(&mut seed) % 24) as usize;
        let mut text = Vec::new();
        for _ in 0..n {
            if round % 2 == 0 {
                text.push(rng(&mut seed) as u8);
            } else {
                text.extend_from_slice(pieces[(rng(&mut seed) % pieces.len() as u64) as usize]);
            }
        }
        for t in &tokenizers {
            for parse_special in [false, true] {
                let ids = encode(t, &text, parse_special);
                assert!(ids.iter().all(|&id| id < t.n_tokens()));
                // Byte-level and byte kinds cover every byte: decoding gives the text back.
                if t.kind() != TokenizerKind::BpeSentencePiece {
                    let skip = t.adds_bos() as usize;
                    assert_eq!(decode(t, &ids[skip..]), text);
                }
            }
        }
    }
}

#[test]
fn sentencepiece_round_trip_drops_the_dummy_prefix() {
    let t = sentencepiece().parse().unwrap();
    let mut seed = 5u64;
    for _ in 0..2000 {
        let n = (rng(&mut seed) % 16) as usize;
        let text: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
        let ids = encode(&t, &text, false);
        // BOS decodes to its text; after it, the dummy space is dropped.
        let mut expected = b"<s>".to_vec();
        expected.extend_from_slice(&text);
        assert_eq!(decode(&t, &ids), expected, "{text:02x?}");
        assert_eq!(decode(&t, &ids[1..]), text);
    }
    // Mid-text (prev is not BOS) the space is kept.
    let s = sentencepiece();
    assert_eq!(t.decode_piece(Some(s.id(b"a")), s.id(b" a")), b" a");
    assert_eq!(t.decode_piece(None, s.id(b" a")), b"a");
    assert_eq!(t.decode_piece(Some(1), s.id(b" a")), b"a");
}

#[test]
fn stream_decoding_of_encoded_text_is_the_text() {
    let s = byte_level();
    let t = s.parse().unwrap();
    let text = "hello 世界 👋 <|end|> x";
    let ids = encode(&t, text.as_bytes(), true);
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    for &id in &ids {
        let before = out.len();
        d.push(t.token_bytes(id), &mut out);
        assert!(core::str::from_utf8(&out[before..]).is_ok());
    }
    d.finish(&mut out);
    assert_eq!(out, text.as_bytes());
}
