//! Property tests: for arbitrary text, decoding the encoded ids gives the text back, byte for byte,
//! on each tokenizer kind (the hand-built sections of `tests.rs`: byte, GPT-2 byte-level BPE with
//! the smollm pre-tokenizer and special tokens, SentencePiece with byte fallback and the dummy
//! prefix), and streaming decode of the same ids yields the same bytes.

use alloc::vec::Vec;

use proptest::prelude::*;

use super::tests::{byte_kind, byte_level, sentencepiece};
use super::{StreamDecoder, Tokenizer};

const CASES: u32 = 256;

fn encode(t: &Tokenizer, text: &[u8], parse_special: bool) -> Vec<u32> {
    let mut ids = Vec::new();
    t.encode(text, parse_special, &mut ids).expect("encoding a short text cannot run out of memory");
    ids
}

/// The ids after BOS, if the tokenizer adds one (decoding starts after it, as generation does).
fn without_bos(t: &Tokenizer, ids: &[u32]) -> Vec<u32> {
    match (t.adds_bos(), t.bos_id(), ids.first()) {
        (true, Some(bos), Some(&first)) if first == bos => ids[1..].to_vec(),
        _ => ids.to_vec(),
    }
}

fn decode(t: &Tokenizer, ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    t.decode(ids, &mut out);
    out
}

/// Text that leans on what tokenizers find hard: spaces and digits (pre-tokenizer splits), the
/// merge alphabet, multi-byte UTF-8, special-token look-alikes, and any byte at all.
fn text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b" ".to_vec()),
        Just(b"  ".to_vec()),
        Just(b"hello".to_vec()),
        Just(b" world".to_vec()),
        Just(b"abc".to_vec()),
        Just("é".as_bytes().to_vec()),
        Just("世界".as_bytes().to_vec()),
        Just(b"<|end|".to_vec()),
        Just(b"<tool".to_vec()),
        "[0-9]{1,4}".prop_map(|s| s.into_bytes()),
        any::<char>().prop_map(|c| c.to_string().into_bytes()),
        any::<u8>().prop_map(|b| alloc::vec![b]),
    ];
    proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

fn round_trip(t: &Tokenizer, text: &[u8]) -> Result<(), TestCaseError> {
    let ids = without_bos(t, &encode(t, text, false));
    prop_assert_eq!(decode(t, &ids), text.to_vec(), "ids {:?}", ids);
    // Streaming: every chunk is valid UTF-8, and for valid UTF-8 text the chunks are the text.
    let mut stream = StreamDecoder::new();
    let mut out = Vec::new();
    let mut prev = None;
    for &id in &ids {
        let before = out.len();
        stream.push(t.decode_piece(prev, id), &mut out);
        prop_assert!(core::str::from_utf8(&out[before..]).is_ok(), "a streamed chunk is not UTF-8");
        prev = Some(id);
    }
    stream.finish(&mut out);
    if let Ok(s) = core::str::from_utf8(text) {
        prop_assert_eq!(out, s.as_bytes().to_vec());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn byte_tokenizer_round_trips(text in text()) {
        let t = byte_kind().parse().unwrap();
        round_trip(&t, &text)?;
        // One id per byte, plus BOS.
        prop_assert_eq!(encode(&t, &text, false).len(), text.len() + 1);
    }

    #[test]
    fn byte_level_bpe_round_trips(text in text()) {
        let t = byte_level().parse().unwrap();
        round_trip(&t, &text)?;
        // Merging never makes more ids than bytes.
        prop_assert!(encode(&t, &text, false).len() <= text.len());
    }

    #[test]
    fn byte_level_bpe_round_trips_with_special_tokens(text in text(), at in any::<prop::sample::Index>()) {
        // A special token written into the text becomes one id and decodes to its own text.
        let t = byte_level().parse().unwrap();
        let cut = at.index(text.len() + 1);
        let mut with_special = text[..cut].to_vec();
        with_special.extend_from_slice(b"<|end|>");
        with_special.extend_from_slice(&text[cut..]);
        let ids = encode(&t, &with_special, true);
        prop_assert_eq!(decode(&t, &ids), with_special);
    }

    #[test]
    fn sentencepiece_round_trips(text in text()) {
        let t = sentencepiece().parse().unwrap();
        round_trip(&t, &text)?;
        // Dummy prefix and BOS aside, at most one id per byte (byte fallback is the worst case).
        prop_assert!(encode(&t, &text, false).len() <= text.len() + 2);
    }
}
