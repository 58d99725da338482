//! Session snapshots (SES1, `abi/FORMAT.md` "Session snapshots"): a conversation's token history,
//! last logits, sampler state and the used part of its KV cache, bound to the package and the
//! adapter stack it was computed with, so that restoring it (in this instance or another one of the
//! same package) continues with the tokens a conversation that never stopped would give.
//!
//! This module owns the byte layout: [`encode_header`] writes the fixed header, [`parse`] checks a
//! snapshot against the loaded model in the order FORMAT.md lists and hands back the sections. The
//! engine gathers and commits the state; the model copies its KV rings (`Model::write_kv_snapshot`,
//! `Model::restore_kv`).

use crate::error::{Error, Field, Result, Status};
use crate::field;
use crate::format::ModelIdentity;
use crate::reader::Reader;
use crate::sampler::SamplingParams;

pub const MAGIC: [u8; 4] = *b"SES1";
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 152;
/// The CRC32 of every byte before it ends the snapshot.
pub const TRAILER_LEN: usize = 4;
/// `flags` bit 0: a sampled token that the model has not run yet (it runs first when the
/// conversation continues).
pub const FLAG_PENDING_TOKEN: u32 = 1;
const FLAGS_KNOWN: u32 = FLAG_PENDING_TOKEN;

/// What a snapshot is bound to: it restores only where every field equals the loaded model's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Binding {
    pub identity: ModelIdentity,
    pub artifact_crc: u32,
    pub n_adapters: u32,
    pub assembly_state_crc: u32,
    /// `KvDtype` code: 0 f32, 1 f16.
    pub kv_dtype: u32,
    pub vocab_size: u32,
    pub n_layers: u32,
    pub kv_dim: u32,
}

/// The conversation a snapshot holds besides the bulk sections.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conversation {
    /// The context length the snapshot was saved with (it sizes the sliding-window rings' sections).
    pub context_len: u32,
    /// Positions in the KV cache, equal to the number of tokens in the history.
    pub n_past: u32,
    pub pending_token: Option<u32>,
    pub sampling: SamplingParams,
    pub rng_state: [u64; 4],
}

/// A snapshot checked against the loaded model: its header and its sections, borrowed.
pub struct Snapshot<'a> {
    pub conversation: Conversation,
    /// `n_past` u32 LE token ids.
    pub tokens: &'a [u8],
    /// `vocab_size` f32 LE.
    pub logits: &'a [u8],
    /// Per layer: keys then values of its saved positions (FORMAT.md), elements LE.
    pub kv: &'a [u8],
}

/// The fixed header for `binding` and `conversation`; `total_len` is the whole snapshot's length.
pub fn encode_header(binding: &Binding, c: &Conversation, total_len: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    let mut at = 0;
    let mut put = |b: &[u8]| {
        h[at..at + b.len()].copy_from_slice(b);
        at += b.len();
    };
    put(&MAGIC);
    put(&FORMAT_VERSION.to_le_bytes());
    put(&(HEADER_LEN as u32).to_le_bytes());
    put(&(if c.pending_token.is_some() { FLAG_PENDING_TOKEN } else { 0 }).to_le_bytes());
    put(&total_len.to_le_bytes());
    put(&binding.identity.to_bytes());
    for w in [binding.artifact_crc, binding.n_adapters, binding.assembly_state_crc, binding.kv_dtype, c.context_len, c.n_past, c.pending_token.unwrap_or(0)] {
        put(&w.to_le_bytes());
    }
    for w in [binding.vocab_size, binding.n_layers, binding.kv_dim] {
        put(&w.to_le_bytes());
    }
    let s = &c.sampling;
    put(&s.temperature.to_le_bytes());
    put(&s.top_k.to_le_bytes());
    put(&s.top_p.to_le_bytes());
    put(&s.min_p.to_le_bytes());
    put(&s.repetition_penalty.to_le_bytes());
    put(&s.repetition_window.to_le_bytes());
    put(&s.seed.to_le_bytes());
    for w in c.rng_state {
        put(&w.to_le_bytes());
    }
    debug_assert_eq!(at, HEADER_LEN);
    h
}

fn bad(status: Status, field: impl Into<Field>, value: u64, rule: &'static str) -> Error {
    Error::new(status, field, value, rule)
}

fn mismatch(status: Status, field: &'static str, got: u64, want: u64, rule: &'static str) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(bad(status, field, got, rule))
    }
}

/// Checks `bytes` as a snapshot for the model described by `expected` (whose context is
/// `context_len` positions of at most `max_context`), in the order of FORMAT.md "Session
/// snapshots", "Checks, in order". `kv_bytes(snapshot_context_len, n_past)` is the length of the KV
/// section the model expects for those values (`None` on overflow).
pub fn parse<'a>(
    bytes: &'a [u8],
    expected: &Binding,
    context_len: u32,
    max_context: u32,
    kv_bytes: impl Fn(u32, u32) -> Option<usize>,
) -> Result<Snapshot<'a>> {
    let len = bytes.len();
    let short = "a snapshot is at least 156 bytes (152-byte header and 4-byte CRC)";
    if len < 4 {
        return Err(bad(Status::SessionTruncated, "header", len as u64, short));
    }
    if bytes[0..4] != MAGIC {
        let rule = if bytes[0..4] == crate::format::MAGIC { "must be \"SES1\" (this is an SLM1 model package)" } else { "must be \"SES1\"" };
        return Err(bad(Status::SessionBadMagic, "header.magic", u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as u64, rule));
    }
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(bad(Status::SessionTruncated, "header", len as u64, short));
    }
    // The length is checked above, so these reads cannot fail.
    let mut h = Reader::new(&bytes[4..HEADER_LEN], 4, "header", Status::SessionTruncated);
    let version = h.u32("format_version")?;
    if version != FORMAT_VERSION {
        return Err(bad(Status::SessionUnsupportedVersion, "header.format_version", version as u64, "this runtime reads snapshot version 1"));
    }
    let header_len = h.u32("header_len")?;
    mismatch(Status::SessionBadHeader, "header.header_len", header_len as u64, HEADER_LEN as u64, "must be 152")?;
    let flags = h.u32("flags")?;
    let total_len = h.u64("total_len")?;
    if total_len > len as u64 {
        return Err(bad(Status::SessionTruncated, "header.total_len", total_len, "the snapshot is shorter than total_len"));
    }
    if total_len < len as u64 {
        return Err(bad(Status::SessionBadHeader, "header.total_len", total_len, "must equal the snapshot's length"));
    }
    let body = &bytes[..len - TRAILER_LEN];
    let stored_crc = u32::from_le_bytes([bytes[len - 4], bytes[len - 3], bytes[len - 2], bytes[len - 1]]);
    if crc32fast::hash(body) != stored_crc {
        return Err(bad(Status::SessionChecksum, "crc32", stored_crc as u64, "the CRC32 of the bytes before it does not match (damaged snapshot)"));
    }
    if flags & !FLAGS_KNOWN != 0 {
        return Err(bad(Status::SessionBadHeader, "header.flags", flags as u64, "only PENDING_TOKEN (1) is defined"));
    }
    let identity = ModelIdentity {
        n_params: h.u64("n_params")?,
        tensor_layout_crc: h.u32("tensor_layout_crc")?,
        tokenizer_crc: h.u32("tokenizer_crc")?,
        flags: h.u32("model_flags")?,
        n_tensors: h.u32("n_tensors")?,
    };
    let id = &expected.identity;
    let model_rule = "the snapshot was saved from another model (this field of its identity differs)";
    mismatch(Status::SessionModelMismatch, "header.n_params", identity.n_params, id.n_params, model_rule)?;
    mismatch(Status::SessionModelMismatch, "header.tensor_layout_crc", identity.tensor_layout_crc as u64, id.tensor_layout_crc as u64, model_rule)?;
    mismatch(Status::SessionModelMismatch, "header.tokenizer_crc", identity.tokenizer_crc as u64, id.tokenizer_crc as u64, model_rule)?;
    mismatch(Status::SessionModelMismatch, "header.model_flags", identity.flags as u64, id.flags as u64, model_rule)?;
    mismatch(Status::SessionModelMismatch, "header.n_tensors", identity.n_tensors as u64, id.n_tensors as u64, model_rule)?;
    let artifact_crc = h.u32("artifact_crc")?;
    mismatch(
        Status::SessionModelMismatch,
        "header.artifact_crc",
        artifact_crc as u64,
        expected.artifact_crc as u64,
        "the snapshot was saved from another package of the same layout (other weights)",
    )?;
    let n_adapters = h.u32("n_adapters")?;
    let assembly_state_crc = h.u32("assembly_state_crc")?;
    let stack_rule = "the snapshot was saved with another adapter stack (apply the same adapters, in order, first)";
    mismatch(Status::SessionAdapterMismatch, "header.n_adapters", n_adapters as u64, expected.n_adapters as u64, stack_rule)?;
    mismatch(Status::SessionAdapterMismatch, "header.assembly_state_crc", assembly_state_crc as u64, expected.assembly_state_crc as u64, stack_rule)?;
    let kv_dtype = h.u32("kv_dtype")?;
    if kv_dtype > 1 {
        return Err(bad(Status::SessionBadHeader, "header.kv_dtype", kv_dtype as u64, "must be 0 (f32) or 1 (f16)"));
    }
    mismatch(
        Status::SessionKvDtypeMismatch,
        "header.kv_dtype",
        kv_dtype as u64,
        expected.kv_dtype as u64,
        "the KV cache dtype differs from the loaded model's (load with the same KV_F16 flag)",
    )?;
    let snap_context = h.u32("context_len")?;
    let n_past = h.u32("n_past")?;
    let pending = h.u32("pending_token")?;
    if n_past == 0 {
        return Err(bad(Status::SessionBadHeader, "header.n_past", 0, "a snapshot holds at least one position"));
    }
    if snap_context < n_past || snap_context > max_context {
        return Err(bad(Status::SessionBadHeader, "header.context_len", snap_context as u64, "must be in n_past..=the package's max_context"));
    }
    if n_past > context_len {
        return Err(bad(
            Status::SessionContextTooSmall,
            "header.n_past",
            n_past as u64,
            "the conversation does not fit in the loaded context (load with a context_len of at least n_past)",
        ));
    }
    if flags & FLAG_PENDING_TOKEN == 0 && pending != 0 {
        return Err(bad(Status::SessionBadHeader, "header.pending_token", pending as u64, "must be 0 when the PENDING_TOKEN flag is clear"));
    }
    for (field, got, want) in [
        ("header.vocab_size", h.u32("vocab_size")?, expected.vocab_size),
        ("header.n_layers", h.u32("n_layers")?, expected.n_layers),
        ("header.kv_dim", h.u32("kv_dim")?, expected.kv_dim),
    ] {
        mismatch(Status::SessionBadHeader, field, got as u64, want as u64, "must equal the model's (its identity says so)")?;
    }
    let sampling = SamplingParams {
        temperature: h.f32("temperature")?,
        top_k: h.u32("top_k")?,
        top_p: h.f32("top_p")?,
        min_p: h.f32("min_p")?,
        repetition_penalty: h.f32("repetition_penalty")?,
        repetition_window: h.u32("repetition_window")?,
        seed: h.u64("seed")?,
    };
    sampling.validate().map_err(|e| Error { status: Status::SessionBadHeader, ..e })?;
    let rng_state = [h.u64("rng_state[0]")?, h.u64("rng_state[1]")?, h.u64("rng_state[2]")?, h.u64("rng_state[3]")?];
    if rng_state == [0; 4] {
        return Err(bad(Status::SessionBadHeader, "header.rng_state", 0, "xoshiro256** state must not be all zero"));
    }

    let tokens_len = n_past as usize * 4;
    let logits_len = expected.vocab_size as usize * 4;
    let kv_len = kv_bytes(snap_context, n_past);
    let want_total = kv_len.and_then(|kv| HEADER_LEN.checked_add(tokens_len)?.checked_add(logits_len)?.checked_add(kv)?.checked_add(TRAILER_LEN));
    let (Some(kv_len), Some(want_total)) = (kv_len, want_total) else {
        return Err(bad(Status::SessionBadHeader, "header.total_len", total_len, "must be 152 + 4·n_past + 4·vocab_size + the KV section + 4"));
    };
    if want_total as u64 != total_len {
        return Err(bad(Status::SessionBadHeader, "header.total_len", total_len, "must be 152 + 4·n_past + 4·vocab_size + the KV section + 4"));
    }
    let tokens = &body[HEADER_LEN..HEADER_LEN + tokens_len];
    let logits = &body[HEADER_LEN + tokens_len..HEADER_LEN + tokens_len + logits_len];
    let kv = &body[HEADER_LEN + tokens_len + logits_len..];
    debug_assert_eq!(kv.len(), kv_len);
    let vocab = expected.vocab_size;
    for (i, t) in tokens.chunks_exact(4).enumerate() {
        let t = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        if t >= vocab {
            return Err(bad(Status::SessionBadToken, field!("tokens[{i}]"), t as u64, "token id must be below vocab_size"));
        }
    }
    if flags & FLAG_PENDING_TOKEN != 0 && pending >= vocab {
        return Err(bad(Status::SessionBadToken, "header.pending_token", pending as u64, "token id must be below vocab_size"));
    }
    let pending_token = (flags & FLAG_PENDING_TOKEN != 0).then_some(pending);
    Ok(Snapshot { conversation: Conversation { context_len: snap_context, n_past, pending_token, sampling, rng_state }, tokens, logits, kv })
}
