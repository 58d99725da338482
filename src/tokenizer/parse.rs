//! Parsing and validating the SLM1 tokenizer section (`abi/FORMAT.md`, "Tokenizer section").
//!
//! The bytes are untrusted: every read is bounds-checked, counts are checked against the bytes left
//! before anything is allocated for them, and every rule of the format is checked. An error names the
//! field (`tokenizer.merges[17].result`), its value and the rule; for `TRUNCATED` the value is the
//! section offset of the field (or list) that does not fit.

use alloc::vec::Vec;

use super::bpe::{Merge, MergeTable};
use super::lookup::SortedTokens;
use super::{utf8, ChatTemplate, PreTokenizer, TokenTable, TokenType, Tokenizer, TokenizerKind, NO_TOKEN};
use crate::error::{Error, Field, Result, Status};
use crate::field;

pub(super) const HEADER_LEN: usize = 48;
/// `n_tokens` cap: the package header's `vocab_size` range. It also keeps every token byte offset
/// below 2^28 (2^18 tokens of at most 1024 bytes), so offsets fit in `u32`.
pub(super) const MAX_TOKENS: u32 = 262_144;
/// `n_merges` cap.
pub(super) const MAX_MERGES: u32 = 1_048_576;
/// `n_eog` cap.
pub(super) const MAX_EOG: u32 = 16;
/// `max_token_len` cap.
pub(super) const MAX_TOKEN_LEN: u32 = 1024;
/// A token entry without its bytes: token_type u8, len u16, score f32.
const TOKEN_FIXED_LEN: u64 = 7;
/// A merge entry: left, right, result, rank.
const MERGE_LEN: u64 = 16;
/// `tok_flags` bits.
const FLAG_ADD_BOS: u32 = 1;
const FLAG_ADD_SPACE_PREFIX: u32 = 2;
/// "None" for `bos_id`, `eos_id`, `unk_id`.
const NONE_ID: u32 = 0xFFFF_FFFF;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: impl FnOnce() -> Field) -> Result<&'a [u8]> {
        match self.bytes.get(self.pos..).and_then(|rest| rest.get(..n)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(Error::new(Status::Truncated, field(), self.pos as u64, "section ends inside this field")),
        }
    }

    fn u8(&mut self, field: impl FnOnce() -> Field) -> Result<u8> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: impl FnOnce() -> Field) -> Result<u16> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, field: impl FnOnce() -> Field) -> Result<u32> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn remaining(&self) -> u64 {
        self.bytes.len().saturating_sub(self.pos) as u64
    }
}

fn name(s: &str) -> impl FnOnce() -> Field + '_ {
    move || Field::from(s)
}

/// An allocation for the tables failed: the host capped memory below what this section needs.
fn oom(field: &'static str, count: usize) -> Error {
    Error::new(Status::OutOfMemory, field, count as u64, "allocation failed (entries requested)")
}

/// An empty vector with room for `n` items, or OUT_OF_MEMORY naming `field`.
fn empty_with_room<T>(n: usize, field: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom(field, n))?;
    Ok(v)
}

fn err(status: Status, field: impl Into<Field>, value: u64, rule: &'static str) -> Error {
    Error::new(status, field, value, rule)
}

/// A token id field: `< n_tokens`, or `NONE_ID` for none.
fn optional_id(value: u32, n_tokens: u32, field: &str) -> Result<Option<u32>> {
    match value {
        NONE_ID => Ok(None),
        id if id < n_tokens => Ok(Some(id)),
        id => Err(err(Status::BadSpecialToken, field, id as u64, "must be a token id (< n_tokens) or 0xFFFFFFFF")),
    }
}

fn token_type(code: u8) -> Option<TokenType> {
    Some(match code {
        1 => TokenType::Normal,
        2 => TokenType::Unknown,
        3 => TokenType::Control,
        4 => TokenType::UserDefined,
        5 => TokenType::Unused,
        6 => TokenType::Byte,
        _ => return None,
    })
}

pub(super) fn parse(section: &[u8], vocab_size: u32) -> Result<Tokenizer> {
    let mut r = Reader { bytes: section, pos: 0 };
    if section.len() < HEADER_LEN {
        return Err(err(Status::Truncated, "tokenizer.header", 0, "the header is 48 bytes"));
    }

    // --- Header ---
    let kind = match r.u32(name("tokenizer.kind"))? {
        0 => TokenizerKind::Byte,
        1 => TokenizerKind::BpeByteLevel,
        2 => TokenizerKind::BpeSentencePiece,
        v => return Err(err(Status::BadTokenizerKind, "tokenizer.kind", v as u64, "must be 0 (byte), 1 (bpe_byte_level) or 2 (bpe_sentencepiece)")),
    };
    let n_tokens = r.u32(name("tokenizer.n_tokens"))?;
    if n_tokens != vocab_size {
        return Err(err(Status::BadTokenizerKind, "tokenizer.n_tokens", n_tokens as u64, "must equal header.vocab_size"));
    }
    if n_tokens > MAX_TOKENS {
        return Err(err(Status::LimitExceeded, "tokenizer.n_tokens", n_tokens as u64, "must be <= 262144"));
    }
    if kind == TokenizerKind::Byte && n_tokens < 256 {
        return Err(err(Status::BadTokenizerKind, "tokenizer.n_tokens", n_tokens as u64, "the byte kind needs at least 256 tokens"));
    }
    let n_merges = r.u32(name("tokenizer.n_merges"))?;
    if n_merges > MAX_MERGES {
        return Err(err(Status::LimitExceeded, "tokenizer.n_merges", n_merges as u64, "must be <= 1048576"));
    }
    if kind == TokenizerKind::Byte && n_merges != 0 {
        return Err(err(Status::BadTokenizerKind, "tokenizer.n_merges", n_merges as u64, "must be 0 for the byte kind"));
    }
    let bos_id = optional_id(r.u32(name("tokenizer.bos_id"))?, n_tokens, "tokenizer.bos_id")?;
    let eos_id = optional_id(r.u32(name("tokenizer.eos_id"))?, n_tokens, "tokenizer.eos_id")?;
    let unk_id = optional_id(r.u32(name("tokenizer.unk_id"))?, n_tokens, "tokenizer.unk_id")?;
    let pre_tokenizer = match r.u32(name("tokenizer.pre_tokenizer"))? {
        0 => PreTokenizer::None,
        1 => PreTokenizer::Gpt2,
        2 => PreTokenizer::Smollm,
        3 => PreTokenizer::Qwen2,
        4 => PreTokenizer::Llama3,
        v => return Err(err(Status::BadTokenizerKind, "tokenizer.pre_tokenizer", v as u64, "must be 0 (none), 1 (gpt2), 2 (smollm), 3 (qwen2) or 4 (llama3)")),
    };
    let chat_template = match r.u32(name("tokenizer.chat_template"))? {
        0 => ChatTemplate::None,
        1 => ChatTemplate::ChatMl,
        v => return Err(err(Status::BadTokenizerKind, "tokenizer.chat_template", v as u64, "must be 0 (none) or 1 (chatml)")),
    };
    let tok_flags = r.u32(name("tokenizer.tok_flags"))?;
    if tok_flags & !(FLAG_ADD_BOS | FLAG_ADD_SPACE_PREFIX) != 0 {
        return Err(err(Status::BadTokenizerKind, "tokenizer.tok_flags", tok_flags as u64, "only bits 0 (ADD_BOS) and 1 (ADD_SPACE_PREFIX) may be set"));
    }
    let add_bos = tok_flags & FLAG_ADD_BOS != 0;
    let add_space_prefix = tok_flags & FLAG_ADD_SPACE_PREFIX != 0;
    if add_bos && bos_id.is_none() {
        return Err(err(Status::BadSpecialToken, "tokenizer.bos_id", NONE_ID as u64, "ADD_BOS needs a bos_id"));
    }
    let n_eog = r.u32(name("tokenizer.n_eog"))?;
    if n_eog > MAX_EOG {
        return Err(err(Status::LimitExceeded, "tokenizer.n_eog", n_eog as u64, "must be <= 16"));
    }
    let max_token_len = r.u32(name("tokenizer.max_token_len"))?;
    if !(1..=MAX_TOKEN_LEN).contains(&max_token_len) {
        return Err(err(Status::BadToken, "tokenizer.max_token_len", max_token_len as u64, "must be 1..=1024"));
    }
    let reserved = r.u32(name("tokenizer.reserved"))?;
    if reserved != 0 {
        return Err(err(Status::BadToken, "tokenizer.reserved", reserved as u64, "must be 0"));
    }

    // --- End-of-generation ids (n_eog <= 16: nothing to pre-check) ---
    let mut eog_ids = empty_with_room(n_eog as usize, "tokenizer.eog_ids")?;
    for i in 0..n_eog {
        let id = r.u32(|| field!("tokenizer.eog_ids[{i}]"))?;
        if id >= n_tokens {
            return Err(err(Status::BadSpecialToken, field!("tokenizer.eog_ids[{i}]"), id as u64, "must be a token id (< n_tokens)"));
        }
        eog_ids.push(id);
    }

    // --- Tokens ---
    if n_tokens as u64 * TOKEN_FIXED_LEN > r.remaining() {
        return Err(err(Status::Truncated, "tokenizer.tokens", r.pos as u64, "n_tokens entries of at least 7 bytes must fit in the section"));
    }
    let mut types = empty_with_room(n_tokens as usize, "tokenizer.tokens")?;
    let mut starts = empty_with_room(n_tokens as usize + 1, "tokenizer.tokens")?;
    // Every token's bytes lie in what the section has left after the fixed parts of the token and
    // merge entries: reserving that bound means `bytes` never grows below.
    let bytes_bound = r.remaining().saturating_sub(n_tokens as u64 * TOKEN_FIXED_LEN).saturating_sub(n_merges as u64 * MERGE_LEN) as usize;
    let mut bytes = empty_with_room(bytes_bound, "tokenizer.tokens.bytes")?;
    starts.push(0u32);
    let mut longest = 0u32;
    for i in 0..n_tokens {
        let field = |f: &str| field!("tokenizer.tokens[{i}].{f}");
        let type_code = r.u8(|| field("token_type"))?;
        let Some(ty) = token_type(type_code) else {
            return Err(err(Status::BadToken, field("token_type"), type_code as u64, "must be 1..=6 (normal, unknown, control, user-defined, unused, byte)"));
        };
        let len = r.u16(|| field("len"))? as u32;
        if len > max_token_len {
            return Err(err(Status::BadToken, field("len"), len as u64, "must be <= max_token_len"));
        }
        if len == 0 && !matches!(ty, TokenType::Control | TokenType::Unused) {
            return Err(err(Status::BadToken, field("len"), 0, "only control and unused tokens may be empty"));
        }
        if ty == TokenType::Byte && len != 1 {
            return Err(err(Status::BadToken, field("len"), len as u64, "a byte token is exactly one byte"));
        }
        let score = f32::from_le_bytes(r.take(4, || field("score"))?.try_into().unwrap_or([0; 4]));
        if !score.is_finite() {
            return Err(err(Status::BadToken, field("score"), score.to_bits() as u64, "must be finite"));
        }
        let token = r.take(len as usize, || field("bytes"))?;
        if kind == TokenizerKind::Byte {
            let ok = if i < 256 {
                token == [i as u8] && matches!(ty, TokenType::Normal | TokenType::Byte)
            } else {
                ty == TokenType::Control
            };
            if !ok {
                return Err(err(Status::BadToken, field!("tokenizer.tokens[{i}]"), i as u64, "byte kind: token b < 256 is the one byte b (normal or byte type), the rest are control tokens"));
            }
        }
        longest = longest.max(len);
        types.push(ty);
        bytes.extend_from_slice(token);
        starts.push(bytes.len() as u32); // < 2^28, see MAX_TOKENS
    }
    if longest != max_token_len {
        return Err(err(Status::BadToken, "tokenizer.max_token_len", max_token_len as u64, "must equal the longest token's byte length"));
    }
    bytes.shrink_to_fit();
    let tokens = TokenTable { types, starts, bytes };

    // --- Merges ---
    if n_merges as u64 * MERGE_LEN > r.remaining() {
        return Err(err(Status::Truncated, "tokenizer.merges", r.pos as u64, "n_merges entries of 16 bytes must fit in the section"));
    }
    let mut merges = empty_with_room(n_merges as usize, "tokenizer.merges")?;
    let mut prev_rank = 0u32;
    for i in 0..n_merges {
        let field = |f: &str| field!("tokenizer.merges[{i}].{f}");
        let mut id = |f: &str| -> Result<u32> {
            let v = r.u32(|| field(f))?;
            if v >= n_tokens {
                return Err(err(Status::BadMerge, field(f), v as u64, "must be a token id (< n_tokens)"));
            }
            Ok(v)
        };
        let left = id("left")?;
        let right = id("right")?;
        let result = id("result")?;
        let rank = r.u32(|| field("rank"))?;
        let (l, rt, res) = (tokens.bytes(left), tokens.bytes(right), tokens.bytes(result));
        if res.len() != l.len() + rt.len() || !res.starts_with(l) || !res.ends_with(rt) {
            return Err(err(Status::BadMerge, field("result"), result as u64, "bytes(result) must equal bytes(left) ++ bytes(right)"));
        }
        if rank < prev_rank {
            return Err(err(Status::BadMerge, field("rank"), rank as u64, "ranks must be non-decreasing"));
        }
        prev_rank = rank;
        merges.push(Merge { left, right, result, rank });
    }
    if r.remaining() != 0 {
        return Err(err(Status::BadSectionBounds, "tokenizer.merges", r.pos as u64, "the section must end right after the last merge"));
    }

    // --- Lookup tables for encoding ---
    let mut byte_symbols = [NO_TOKEN; 256];
    let mut byte_fallback = [NO_TOKEN; 256];
    for id in (0..n_tokens).rev() {
        // Walking down so that the lowest id wins.
        if let ([b], Some(ty)) = (tokens.bytes(id), tokens.token_type(id)) {
            if matches!(ty, TokenType::Normal | TokenType::UserDefined | TokenType::Byte) {
                byte_symbols[*b as usize] = id;
            }
            if ty == TokenType::Byte {
                byte_fallback[*b as usize] = id;
            }
        }
    }
    let char_tokens = if kind == TokenizerKind::BpeSentencePiece {
        SortedTokens::new(&tokens, &|id| {
            let b = tokens.bytes(id);
            tokens.token_type(id) != Some(TokenType::Byte) && utf8::decode_at(b, 0).is_some_and(|(_, len)| len == b.len())
        })
    } else {
        SortedTokens::new(&tokens, &|_| false)
    }
    .map_err(|_| oom("tokenizer.char_tokens", n_tokens as usize))?;
    let special_tokens = SortedTokens::new(&tokens, &|id| matches!(tokens.token_type(id), Some(TokenType::Control | TokenType::UserDefined)))
        .map_err(|_| oom("tokenizer.special_tokens", n_tokens as usize))?;
    let merges = MergeTable::new(merges, n_tokens).map_err(|_| oom("tokenizer.merges", n_tokens as usize + 1))?;

    Ok(Tokenizer {
        kind,
        pre_tokenizer,
        chat_template,
        add_bos,
        add_space_prefix,
        bos_id,
        eos_id,
        unk_id,
        eog_ids,
        max_token_len,
        tokens,
        merges,
        byte_symbols,
        byte_fallback,
        char_tokens,
        special_tokens,
    })
}
