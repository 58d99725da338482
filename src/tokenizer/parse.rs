//! Parsing and validating the SLM1 tokenizer section (`abi/FORMAT.md`, "Tokenizer section").
//!
//! The bytes are untrusted: every read is bounds-checked, counts are checked against the bytes left
//! before anything is allocated for them, and every rule of the format is checked. An error names the
//! field (`tokenizer.merges[17].result`), its value and the rule; for `TRUNCATED` the value is the
//! section offset of the field (or list) that does not fit.
//!
//! [`parse`] runs the steps in section order: header, end-of-generation ids, tokens (then the
//! whole-vocabulary rules: `max_token_len`, distinct bytes), merges, then builds the lookup tables.

use alloc::vec::Vec;

use super::bpe::{Merge, MergeTable};
use super::lookup::SortedTokens;
use super::{utf8, ChatTemplate, PreTokenizer, TokenTable, TokenType, Tokenizer, TokenizerKind, NO_TOKEN};
use crate::error::{oom, Error, Field, Result, Status};
use crate::reader::{Entry, Reader};

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

/// An empty vector with room for `n` items, or OUT_OF_MEMORY naming `field`.
fn empty_with_room<T>(n: usize, field: &'static str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom(field, n.saturating_mul(core::mem::size_of::<T>())))?;
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

/// The 48-byte section header, every field checked.
struct Header {
    kind: TokenizerKind,
    n_tokens: u32,
    n_merges: u32,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
    pre_tokenizer: PreTokenizer,
    chat_template: ChatTemplate,
    add_bos: bool,
    add_space_prefix: bool,
    n_eog: u32,
    max_token_len: u32,
}

pub(super) fn parse(section: &[u8], vocab_size: u32) -> Result<Tokenizer> {
    if section.len() < HEADER_LEN {
        return Err(err(Status::Truncated, "tokenizer.header", 0, "the header is 48 bytes"));
    }
    let mut r = Reader::new(section, 0, "tokenizer", Status::Truncated);
    let h = read_header(&mut r, vocab_size)?;
    let eog_ids = read_eog_ids(&mut r, &h)?;
    let tokens = read_tokens(&mut r, &h)?;
    check_max_token_len(&tokens, h.max_token_len)?;
    check_distinct_bytes(&tokens)?;
    let merges = read_merges(&mut r, &h, &tokens)?;
    if r.remaining() != 0 {
        return Err(err(Status::BadSectionBounds, "tokenizer.merges", r.offset() as u64, "the section must end right after the last merge"));
    }
    let (byte_symbols, byte_fallback) = byte_tables(&tokens);
    let char_tokens = if h.kind == TokenizerKind::BpeSentencePiece {
        SortedTokens::new(&tokens, &|id| {
            let b = tokens.bytes(id);
            tokens.token_type(id) != Some(TokenType::Byte) && utf8::decode_at(b, 0).is_some_and(|(_, len)| len == b.len())
        })
    } else {
        SortedTokens::new(&tokens, &|_| false)
    };
    let index_bytes = h.n_tokens as usize * 4;
    let char_tokens = char_tokens.map_err(|_| oom("tokenizer.char_tokens", index_bytes))?;
    let special_tokens = SortedTokens::new(&tokens, &|id| matches!(tokens.token_type(id), Some(TokenType::Control | TokenType::UserDefined)))
        .map_err(|_| oom("tokenizer.special_tokens", index_bytes))?;
    let user_defined_tokens = SortedTokens::new(&tokens, &|id| tokens.token_type(id) == Some(TokenType::UserDefined))
        .map_err(|_| oom("tokenizer.user_defined_tokens", index_bytes))?;
    let merges = MergeTable::new(merges, h.n_tokens).map_err(|_| oom("tokenizer.merges", (h.n_tokens as usize + 1) * 4))?;

    Ok(Tokenizer {
        kind: h.kind,
        pre_tokenizer: h.pre_tokenizer,
        chat_template: h.chat_template,
        add_bos: h.add_bos,
        add_space_prefix: h.add_space_prefix,
        bos_id: h.bos_id,
        eos_id: h.eos_id,
        unk_id: h.unk_id,
        unk_substitute: h.unk_id.filter(|&id| tokens.token_type(id) == Some(TokenType::Unknown)),
        eog_ids,
        max_token_len: h.max_token_len,
        tokens,
        merges,
        byte_symbols,
        byte_fallback,
        char_tokens,
        special_tokens,
        user_defined_tokens,
    })
}

/// The header, field by field in section order; `vocab_size` is the package header's.
fn read_header(r: &mut Reader<'_>, vocab_size: u32) -> Result<Header> {
    let kind = match r.u32("kind")? {
        0 => TokenizerKind::Byte,
        1 => TokenizerKind::BpeByteLevel,
        2 => TokenizerKind::BpeSentencePiece,
        v => return Err(err(Status::BadTokenizerKind, "tokenizer.kind", v as u64, "must be 0 (byte), 1 (bpe_byte_level) or 2 (bpe_sentencepiece)")),
    };
    let n_tokens = r.u32("n_tokens")?;
    if n_tokens != vocab_size {
        return Err(err(Status::BadTokenizerKind, "tokenizer.n_tokens", n_tokens as u64, "must equal header.vocab_size"));
    }
    if n_tokens > MAX_TOKENS {
        return Err(err(Status::LimitExceeded, "tokenizer.n_tokens", n_tokens as u64, "must be <= 262144"));
    }
    if kind == TokenizerKind::Byte && n_tokens < 256 {
        return Err(err(Status::BadTokenizerKind, "tokenizer.n_tokens", n_tokens as u64, "the byte kind needs at least 256 tokens"));
    }
    let n_merges = r.u32("n_merges")?;
    if n_merges > MAX_MERGES {
        return Err(err(Status::LimitExceeded, "tokenizer.n_merges", n_merges as u64, "must be <= 1048576"));
    }
    if kind == TokenizerKind::Byte && n_merges != 0 {
        return Err(err(Status::BadTokenizerKind, "tokenizer.n_merges", n_merges as u64, "must be 0 for the byte kind"));
    }
    let bos_id = optional_id(r.u32("bos_id")?, n_tokens, "tokenizer.bos_id")?;
    let eos_id = optional_id(r.u32("eos_id")?, n_tokens, "tokenizer.eos_id")?;
    let unk_id = optional_id(r.u32("unk_id")?, n_tokens, "tokenizer.unk_id")?;
    let pre_tokenizer = match r.u32("pre_tokenizer")? {
        0 => PreTokenizer::None,
        1 => PreTokenizer::Gpt2,
        2 => PreTokenizer::Smollm,
        3 => PreTokenizer::Qwen2,
        4 => PreTokenizer::Llama3,
        v => return Err(err(Status::BadTokenizerKind, "tokenizer.pre_tokenizer", v as u64, "must be 0 (none), 1 (gpt2), 2 (smollm), 3 (qwen2) or 4 (llama3)")),
    };
    let code = r.u32("chat_template")?;
    let Some(chat_template) = ChatTemplate::from_code(code) else {
        return Err(err(Status::BadTokenizerKind, "tokenizer.chat_template", code as u64, "must be 0 (none), 1 (chatml), 2 (chatml_qwen2) or 3 (gemma)"));
    };
    let tok_flags = r.u32("tok_flags")?;
    if tok_flags & !(FLAG_ADD_BOS | FLAG_ADD_SPACE_PREFIX) != 0 {
        return Err(err(Status::BadTokenizerKind, "tokenizer.tok_flags", tok_flags as u64, "only bits 0 (ADD_BOS) and 1 (ADD_SPACE_PREFIX) may be set"));
    }
    let add_bos = tok_flags & FLAG_ADD_BOS != 0;
    let add_space_prefix = tok_flags & FLAG_ADD_SPACE_PREFIX != 0;
    if add_bos && bos_id.is_none() {
        return Err(err(Status::BadSpecialToken, "tokenizer.bos_id", NONE_ID as u64, "ADD_BOS needs a bos_id"));
    }
    let n_eog = r.u32("n_eog")?;
    if n_eog > MAX_EOG {
        return Err(err(Status::LimitExceeded, "tokenizer.n_eog", n_eog as u64, "must be <= 16"));
    }
    let max_token_len = r.u32("max_token_len")?;
    if !(1..=MAX_TOKEN_LEN).contains(&max_token_len) {
        return Err(err(Status::BadToken, "tokenizer.max_token_len", max_token_len as u64, "must be 1..=1024"));
    }
    let reserved = r.u32("reserved")?;
    if reserved != 0 {
        return Err(err(Status::BadToken, "tokenizer.reserved", reserved as u64, "must be 0"));
    }
    Ok(Header { kind, n_tokens, n_merges, bos_id, eos_id, unk_id, pre_tokenizer, chat_template, add_bos, add_space_prefix, n_eog, max_token_len })
}

/// The end-of-generation ids (`n_eog <= 16`: nothing to check against the bytes left first).
fn read_eog_ids(r: &mut Reader<'_>, h: &Header) -> Result<Vec<u32>> {
    let mut eog_ids = empty_with_room(h.n_eog as usize, "tokenizer.eog_ids")?;
    for i in 0..h.n_eog as usize {
        r.enter("tokenizer.eog_ids", Entry::Index(i));
        let id = r.u32("")?;
        if id >= h.n_tokens {
            return Err(err(Status::BadSpecialToken, r.field(""), id as u64, "must be a token id (< n_tokens)"));
        }
        eog_ids.push(id);
    }
    Ok(eog_ids)
}

/// The token list, each entry's own rules checked as it is read.
fn read_tokens(r: &mut Reader<'_>, h: &Header) -> Result<TokenTable> {
    let n_tokens = h.n_tokens as usize;
    r.room_for(n_tokens as u64, TOKEN_FIXED_LEN, "tokenizer.tokens", r.offset() as u64, "n_tokens entries of at least 7 bytes must fit in the section")?;
    let mut types = empty_with_room(n_tokens, "tokenizer.tokens")?;
    let mut starts = empty_with_room(n_tokens + 1, "tokenizer.tokens")?;
    // Every token's bytes lie in what the section has left after the fixed parts of the token and
    // merge entries: reserving that bound means `bytes` never grows below. For a section that is
    // accepted the bound is exact (the section ends right after the merges), so nothing is left to
    // shrink.
    let fixed = n_tokens as u64 * TOKEN_FIXED_LEN + h.n_merges as u64 * MERGE_LEN;
    let bytes_bound = (r.remaining() as u64).saturating_sub(fixed) as usize;
    let mut bytes = empty_with_room(bytes_bound, "tokenizer.tokens.bytes")?;
    starts.push(0u32);
    for i in 0..n_tokens {
        r.enter("tokenizer.tokens", Entry::Index(i));
        let type_code = r.u8("token_type")?;
        let Some(ty) = token_type(type_code) else {
            return Err(err(Status::BadToken, r.field("token_type"), type_code as u64, "must be 1..=6 (normal, unknown, control, user-defined, unused, byte)"));
        };
        let len = r.u16("len")? as u32;
        if len > h.max_token_len {
            return Err(err(Status::BadToken, r.field("len"), len as u64, "must be <= max_token_len"));
        }
        if len == 0 && !matches!(ty, TokenType::Control | TokenType::Unused) {
            return Err(err(Status::BadToken, r.field("len"), 0, "only control and unused tokens may be empty"));
        }
        if ty == TokenType::Byte && len != 1 {
            return Err(err(Status::BadToken, r.field("len"), len as u64, "a byte token is exactly one byte"));
        }
        let score = r.f32("score")?;
        if !score.is_finite() {
            return Err(err(Status::BadToken, r.field("score"), score.to_bits() as u64, "must be finite"));
        }
        let token = r.take(len as usize, "bytes")?;
        if h.kind == TokenizerKind::Byte {
            let ok = if i < 256 { token == [i as u8] && matches!(ty, TokenType::Normal | TokenType::Byte) } else { ty == TokenType::Control };
            if !ok {
                return Err(err(
                    Status::BadToken,
                    r.field(""),
                    i as u64,
                    "byte kind: token b < 256 is the one byte b (normal or byte type), the rest are control tokens",
                ));
            }
        }
        types.push(ty);
        bytes.extend_from_slice(token);
        starts.push(bytes.len() as u32); // < 2^28, see MAX_TOKENS
    }
    Ok(TokenTable { types, starts, bytes })
}

/// `max_token_len` is the longest token's length, not merely a bound on it.
fn check_max_token_len(tokens: &TokenTable, max_token_len: u32) -> Result<()> {
    let longest = (0..tokens.len()).map(|id| tokens.bytes(id).len() as u32).max().unwrap_or(0);
    if longest != max_token_len {
        return Err(err(Status::BadToken, "tokenizer.max_token_len", max_token_len as u64, "must equal the longest token's byte length"));
    }
    Ok(())
}

/// No two tokens have the same bytes, except that a byte token may share its byte with a token of
/// another type (SentencePiece vocabularies hold both `<0x41>` and `A`); empty tokens are exempt.
/// Otherwise which of the two text encodes to would be an accident of id order. Reports the lowest
/// id that repeats an earlier token's bytes (value = that earlier id).
fn check_distinct_bytes(tokens: &TokenTable) -> Result<()> {
    // Byte tokens are one byte each (checked per token): a table finds their repeats.
    let mut byte_owner = [NO_TOKEN; 256];
    let mut first: Option<(u32, u32)> = None;
    for id in 0..tokens.len() {
        if let ([b], Some(TokenType::Byte)) = (tokens.bytes(id), tokens.token_type(id)) {
            match byte_owner[*b as usize] {
                NO_TOKEN => byte_owner[*b as usize] = id,
                earlier => {
                    first = Some((earlier, id));
                    break;
                }
            }
        }
    }
    let others = SortedTokens::new(tokens, &|id| tokens.token_type(id) != Some(TokenType::Byte))
        .map_err(|_| oom("tokenizer.tokens.index", tokens.len() as usize * 4))?;
    let repeat = match (first, others.first_repeat(tokens)) {
        (Some(a), Some(b)) => Some(if a.1 < b.1 { a } else { b }),
        (a, b) => a.or(b),
    };
    match repeat {
        Some((earlier, later)) => Err(err(
            Status::BadToken,
            crate::field!("tokenizer.tokens[{later}].bytes"),
            earlier as u64,
            "must differ from every other token's bytes, except a byte token's from a token of another type (value = the earlier id)",
        )),
        None => Ok(()),
    }
}

/// The merge list; `tokens` gives each id's bytes for the `result` rule.
fn read_merges(r: &mut Reader<'_>, h: &Header, tokens: &TokenTable) -> Result<Vec<Merge>> {
    r.room_for(h.n_merges as u64, MERGE_LEN, "tokenizer.merges", r.offset() as u64, "n_merges entries of 16 bytes must fit in the section")?;
    let mut merges = empty_with_room(h.n_merges as usize, "tokenizer.merges")?;
    let mut prev_rank = 0u32;
    for i in 0..h.n_merges as usize {
        r.enter("tokenizer.merges", Entry::Index(i));
        let mut id = |leaf: &str| -> Result<u32> {
            let v = r.u32(leaf)?;
            if v >= h.n_tokens {
                return Err(err(Status::BadMerge, r.field(leaf), v as u64, "must be a token id (< n_tokens)"));
            }
            Ok(v)
        };
        let left = id("left")?;
        let right = id("right")?;
        let result = id("result")?;
        let rank = r.u32("rank")?;
        let (l, rt, res) = (tokens.bytes(left), tokens.bytes(right), tokens.bytes(result));
        if res.len() != l.len() + rt.len() || !res.starts_with(l) || !res.ends_with(rt) {
            return Err(err(Status::BadMerge, r.field("result"), result as u64, "bytes(result) must equal bytes(left) ++ bytes(right)"));
        }
        if rank < prev_rank {
            return Err(err(Status::BadMerge, r.field("rank"), rank as u64, "ranks must be non-decreasing"));
        }
        prev_rank = rank;
        merges.push(Merge { left, right, result, rank });
    }
    Ok(merges)
}

/// The per-byte initial symbols: `byte_symbols` for `bpe_byte_level`, `byte_fallback` for
/// `bpe_sentencepiece` (TOKENIZER.md §2); `NO_TOKEN` where the vocabulary has none.
fn byte_tables(tokens: &TokenTable) -> ([u32; 256], [u32; 256]) {
    let mut byte_symbols = [NO_TOKEN; 256];
    let mut byte_fallback = [NO_TOKEN; 256];
    for id in (0..tokens.len()).rev() {
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
    (byte_symbols, byte_fallback)
}
