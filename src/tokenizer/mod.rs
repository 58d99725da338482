//! Tokenizer: the SLM1 tokenizer section (`abi/FORMAT.md`), text → token ids, token ids → text.
//!
//! `encode` runs, in order (the exact rules are in `abi/TOKENIZER.md`):
//! 1. special tokens: user-defined tokens, and with `parse_special` control tokens too, are cut out
//!    of the text (leftmost, then longest match) and emitted as they are; the stretches between are
//!    fragments;
//! 2. dummy prefix: with `ADD_SPACE_PREFIX`, a space is put before the fragment that starts the text;
//! 3. pre-tokenizer (`pretokenize`): each fragment is split into pieces;
//! 4. initial symbols: bytes (`bpe_byte_level`) or characters with byte fallback
//!    (`bpe_sentencepiece`, where `▁` U+2581 is read as a space);
//! 5. BPE merges by rank (`bpe`).
//!
//! Decoding is the concatenation of token bytes; [`StreamDecoder`] releases it as whole characters.

// Token bytes come from an untrusted package and text from the host: bounds-checked code only.
#![forbid(unsafe_code)]

mod bpe;
pub mod chat;
mod decode;
mod lookup;
mod parse;
mod pretokenize;
mod sort;
mod unicode_tables;
mod utf8;

#[cfg(test)]
mod pretokenize_conformance;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

pub use decode::StreamDecoder;

use crate::error::{Error, Result, Status};

/// SLM1 tokenizer section `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// Token `b` is the byte `b`; no merges.
    Byte = 0,
    /// GPT-2 byte-level BPE (GPT-2, SmolLM2).
    BpeByteLevel = 1,
    /// SentencePiece-style BPE with byte fallback (llama2.c models).
    BpeSentencePiece = 2,
}

/// SLM1 tokenizer section `pre_tokenizer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreTokenizer {
    None = 0,
    /// The GPT-2 regex.
    Gpt2 = 1,
    /// Every `\p{N}` character alone, then the GPT-2 regex (SmolLM2).
    Smollm = 2,
    /// Qwen2's regex: case-insensitive contractions, single digits, newlines kept with what precedes them.
    Qwen2 = 3,
    /// Llama 3's regex: Qwen2's with numbers in runs of up to three.
    Llama3 = 4,
}

/// SLM1 tokenizer section `chat_template`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    None = 0,
    /// ChatML; a conversation without a system message gets SmolLM2's default one.
    ChatMl = 1,
    /// ChatML; a conversation without a system message gets Qwen2.5's default one.
    ChatMlQwen2 = 2,
    /// Gemma 3's turns (`<start_of_turn>`, `<end_of_turn>`, the assistant written `model`); a system
    /// message starts the first turn's content; no default system prompt.
    Gemma = 3,
}

impl ChatTemplate {
    /// Every kind, in code order.
    pub const ALL: [ChatTemplate; 4] = [ChatTemplate::None, ChatTemplate::ChatMl, ChatTemplate::ChatMlQwen2, ChatTemplate::Gemma];

    /// The kind with this SLM1 code (also the diagnostics field `chat_template`).
    pub fn from_code(code: u32) -> Option<ChatTemplate> {
        ChatTemplate::ALL.into_iter().find(|t| *t as u32 == code)
    }

    /// The name FORMAT.md gives the kind.
    pub fn name(self) -> &'static str {
        match self {
            ChatTemplate::None => "none",
            ChatTemplate::ChatMl => "chatml",
            ChatTemplate::ChatMlQwen2 => "chatml_qwen2",
            ChatTemplate::Gemma => "gemma",
        }
    }

    /// The system prompt the family's template puts first when a conversation has none
    /// ([`chat::render`]'s `default_system`); `None` for no template.
    pub fn default_system(self) -> Option<&'static str> {
        match self {
            ChatTemplate::None | ChatTemplate::Gemma => None,
            ChatTemplate::ChatMl => Some(chat::SMOLLM2_DEFAULT_SYSTEM),
            ChatTemplate::ChatMlQwen2 => Some(chat::QWEN2_DEFAULT_SYSTEM),
        }
    }
}

/// Token types, with GGUF's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

/// SentencePiece's space symbol `▁` (U+2581), read as a space when encoding `bpe_sentencepiece` text.
const SPACE_SYMBOL: &[u8] = "\u{2581}".as_bytes();

/// "No token" in the byte tables below (token ids are < 2^18, so this is never an id).
const NO_TOKEN: u32 = u32::MAX;

/// Every token's type and bytes, copied out of the package.
struct TokenTable {
    types: Vec<TokenType>,
    /// Token `i`'s bytes are `bytes[starts[i]..starts[i + 1]]`; `starts.len() == n_tokens + 1`.
    starts: Vec<u32>,
    bytes: Vec<u8>,
}

impl TokenTable {
    fn len(&self) -> u32 {
        self.types.len() as u32
    }

    /// The token's bytes; empty for an id out of range.
    fn bytes(&self, id: u32) -> &[u8] {
        let i = id as usize;
        match (self.starts.get(i), self.starts.get(i.wrapping_add(1))) {
            (Some(&start), Some(&end)) => self.bytes.get(start as usize..end as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    fn heap_bytes(&self) -> usize {
        self.types.capacity() + self.starts.capacity() * 4 + self.bytes.capacity()
    }
}

/// What [`Tokenizer::encode`] reports besides the ids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Bytes of the text (including a dummy-prefix space) that no token covers: each became
    /// `unk_id`, or was dropped when the tokenizer has none. Decoding the ids gives the text back
    /// only when this is 0.
    pub unencodable_bytes: usize,
}

pub struct Tokenizer {
    kind: TokenizerKind,
    pre_tokenizer: PreTokenizer,
    chat_template: ChatTemplate,
    add_bos: bool,
    add_space_prefix: bool,
    bos_id: Option<u32>,
    eos_id: Option<u32>,
    unk_id: Option<u32>,
    /// What an unencodable byte becomes: `unk_id` when that token's type is *unknown*, else nothing
    /// (a package may name a control token such as `<|endoftext|>` as `unk_id`, and feeding the model
    /// an end-of-text token for a stray byte would change the answer, not mark a gap).
    unk_substitute: Option<u32>,
    eog_ids: Vec<u32>,
    max_token_len: u32,
    tokens: TokenTable,
    merges: bpe::MergeTable,
    /// `bpe_byte_level`: the initial symbol for each byte (lowest id of type normal, user-defined or
    /// byte whose bytes are that one byte), or `NO_TOKEN` (then `unk_id`, else dropped; counted).
    byte_symbols: [u32; 256],
    /// `bpe_sentencepiece`: the byte-type token for each byte, or `NO_TOKEN` (then `unk_id`, else
    /// dropped; counted).
    byte_fallback: [u32; 256],
    /// `bpe_sentencepiece`: tokens, other than byte tokens, that are exactly one UTF-8 character.
    char_tokens: lookup::SortedTokens,
    /// Control and user-defined tokens with bytes: what `parse_special` matches.
    special_tokens: lookup::SortedTokens,
    /// User-defined tokens with bytes: matched without `parse_special` too (llama.cpp and Hugging
    /// Face `tokenizers` always cut them out; only control tokens need the flag).
    user_defined_tokens: lookup::SortedTokens,
}

impl Tokenizer {
    /// Parses and validates an SLM1 tokenizer section; `vocab_size` is the package header's.
    pub fn parse(section: &[u8], vocab_size: u32) -> Result<Tokenizer> {
        parse::parse(section, vocab_size)
    }

    /// Appends the tokens of `text` to `out`, starting with BOS if the section sets `ADD_BOS`.
    /// User-defined tokens written in the text always become those tokens; control tokens do with
    /// `parse_special`, and are plain text without it. `text` may be any bytes. A byte the vocabulary has no token
    /// for becomes `unk_id`, or is dropped when there is none; [`Encoded::unencodable_bytes`]
    /// counts them (`decode(encode(text)) == text` needs 0). The only error is OUT_OF_MEMORY (the
    /// ids or the working memory for a text this long do not fit); `out` may then hold a prefix.
    pub fn encode(&self, text: &[u8], parse_special: bool, out: &mut Vec<u32>) -> Result<Encoded> {
        let oom = |_| Error::new(Status::OutOfMemory, "tokens", text.len() as u64, "allocation failed (the text's token ids do not fit in memory)");
        // Every id covers at least one byte of the text, besides BOS and the dummy-prefix space:
        // with this room reserved, `out` never grows below.
        out.try_reserve(text.len().saturating_add(2)).map_err(oom)?;
        if self.add_bos {
            if let Some(bos) = self.bos_id {
                out.push(bos);
            }
        }
        let mut scratch = bpe::Scratch::new();
        let mut encoded = Encoded::default();
        let specials = if parse_special { &self.special_tokens } else { &self.user_defined_tokens };
        let mut pos = 0;
        while pos < text.len() {
            let special = specials.find_next(&self.tokens, text, pos);
            let end = special.map_or(text.len(), |(start, _, _)| start);
            if end > pos {
                self.encode_fragment(&text[pos..end], pos == 0, &mut scratch, &mut encoded, out).map_err(oom)?;
            }
            match special {
                Some((start, len, id)) => {
                    out.try_reserve(1).map_err(oom)?;
                    out.push(id);
                    pos = start + len;
                }
                None => break,
            }
        }
        Ok(encoded)
    }

    /// Encodes text that contains no special tokens.
    fn encode_fragment(
        &self,
        fragment: &[u8],
        starts_text: bool,
        scratch: &mut bpe::Scratch,
        encoded: &mut Encoded,
        out: &mut Vec<u32>,
    ) -> core::result::Result<(), TryReserveError> {
        if self.add_space_prefix && starts_text {
            let mut prefixed = Vec::new();
            prefixed.try_reserve_exact(fragment.len() + 1)?;
            prefixed.push(b' ');
            prefixed.extend_from_slice(fragment);
            self.encode_pieces(&prefixed, scratch, encoded, out)
        } else {
            self.encode_pieces(fragment, scratch, encoded, out)
        }
    }

    fn encode_pieces(&self, text: &[u8], scratch: &mut bpe::Scratch, encoded: &mut Encoded, out: &mut Vec<u32>) -> core::result::Result<(), TryReserveError> {
        if self.kind == TokenizerKind::Byte {
            // Validated at parse: token b is the byte b.
            out.try_reserve(text.len())?;
            out.extend(text.iter().map(|&b| b as u32));
            return Ok(());
        }
        let mut symbols = Vec::new();
        let mut result = Ok(());
        pretokenize::split(text, self.pre_tokenizer, &mut |piece: &[u8]| {
            if result.is_err() {
                return;
            }
            symbols.clear();
            // A piece has at most one initial symbol per byte.
            result = symbols.try_reserve(piece.len()).and_then(|()| {
                self.initial_symbols(piece, &mut symbols, &mut encoded.unencodable_bytes);
                bpe::encode_piece(&self.merges, &symbols, scratch, out)
            });
        });
        result
    }

    /// Pushes the initial symbols of `piece` (at most one per byte), counting in `unencodable` the
    /// bytes that have no token of their own.
    fn initial_symbols(&self, piece: &[u8], symbols: &mut Vec<u32>, unencodable: &mut usize) {
        // A byte without a token: the unknown token, or (with none) nothing.
        let mut unencodable_byte = |symbols: &mut Vec<u32>| {
            *unencodable += 1;
            symbols.extend(self.unk_substitute);
        };
        if self.kind == TokenizerKind::BpeByteLevel {
            for &b in piece {
                match self.byte_symbols[b as usize] {
                    NO_TOKEN => unencodable_byte(symbols),
                    id => symbols.push(id),
                }
            }
            return;
        }
        // SentencePiece: a character that is a token is one symbol; otherwise each of its bytes is
        // its byte token, or unencodable. An ill-formed byte is a character. `▁` is SentencePiece's
        // space: llama.cpp writes every space as `▁` before merging, so a `▁` in the text is a space
        // to it, and to us (tokens store `▁` as a space).
        let mut i = 0;
        while i < piece.len() {
            // `char_tokens` holds only well-formed characters, so an ill-formed byte never matches.
            let len = utf8::decode_at(piece, i).map_or(1, |(_, len)| len);
            let character = match &piece[i..i + len] {
                SPACE_SYMBOL => b" ",
                c => c,
            };
            match self.char_tokens.find(&self.tokens, character) {
                Some(id) => symbols.push(id),
                None => {
                    for &b in character {
                        match self.byte_fallback[b as usize] {
                            NO_TOKEN => unencodable_byte(symbols),
                            id => symbols.push(id),
                        }
                    }
                }
            }
            i += len;
        }
    }

    /// The bytes token `id` decodes to; empty for an id out of range.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.tokens.bytes(id)
    }

    /// `token_bytes(id)`, less the dummy-prefix space where one was added: with `ADD_SPACE_PREFIX`,
    /// a leading space of the token that starts the text (`prev == None`) or follows BOS is dropped
    /// (llama2.c's `decode` drops it after BOS).
    pub fn decode_piece(&self, prev: Option<u32>, id: u32) -> &[u8] {
        let bytes = self.tokens.bytes(id);
        let starts_text = prev.is_none() || prev == self.bos_id;
        match bytes.split_first() {
            Some((b' ', rest)) if self.add_space_prefix && starts_text => rest,
            _ => bytes,
        }
    }

    /// Appends the bytes of `ids`, decoded from the start of a text (see [`Tokenizer::decode_piece`]).
    /// The bytes need not be valid UTF-8; [`StreamDecoder`] makes them so.
    pub fn decode(&self, ids: &[u32], out: &mut Vec<u8>) {
        let mut prev = None;
        for &id in ids {
            out.extend_from_slice(self.decode_piece(prev, id));
            prev = Some(id);
        }
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.tokens.token_type(id)
    }

    pub fn n_tokens(&self) -> u32 {
        self.tokens.len()
    }

    pub fn n_merges(&self) -> u32 {
        self.merges.len() as u32
    }

    pub fn max_token_len(&self) -> u32 {
        self.max_token_len
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos_id
    }

    pub fn unk_id(&self) -> Option<u32> {
        self.unk_id
    }

    /// Whether `encode` starts with BOS (`ADD_BOS`).
    pub fn adds_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode` puts a space before the text (`ADD_SPACE_PREFIX`).
    pub fn adds_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    pub fn eog_ids(&self) -> &[u32] {
        &self.eog_ids
    }

    /// Whether generation stops at `id`: one of `eog_ids`, or `eos_id`.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.eog_ids.contains(&id) || self.eos_id == Some(id)
    }

    pub fn chat_template(&self) -> ChatTemplate {
        self.chat_template
    }

    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre_tokenizer
    }

    /// Bytes this tokenizer holds on the heap (for diagnostics).
    pub fn heap_bytes(&self) -> usize {
        self.eog_ids.capacity() * 4
            + self.tokens.heap_bytes()
            + self.merges.heap_bytes()
            + self.char_tokens.heap_bytes()
            + self.special_tokens.heap_bytes()
            + self.user_defined_tokens.heap_bytes()
    }
}
