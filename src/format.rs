//! SLM1 model package: parse and validate untrusted bytes (layout in `abi/FORMAT.md`).
//!
//! [`parse`] checks everything except the tokenizer section's contents (that is
//! [`crate::tokenizer::Tokenizer::parse`]'s job) and returns a [`Package`]: byte ranges and shapes
//! that the model uses to borrow tensors in place. Nothing here copies tensor data.

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use crate::error::{oom, Error, Field, Result, Status};
use crate::field;
use crate::model::arch::{Arch, NormKind, RopeKind, TensorSlot, TensorsByRole};
use crate::quant::DType;
use crate::reader::{Entry, Reader};

mod stream;
pub use stream::{LoadProgress, PackageVerifier};

pub const MAGIC: [u8; 4] = *b"SLM1";
/// SLM1 v1: llama, every matrix in `quant_mode`.
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: usize = 128;
/// SLM1 v2: an architecture block after the v1 header fields (bytes 128..160) and tensors as
/// shipped (`abi/FORMAT.md`, "Header v2").
pub const FORMAT_VERSION_2: u32 = 2;
pub const HEADER_LEN_V2: usize = 160;
/// v2 `arch_flags` bit 0: `blk.{i}.attn_q/k/v.bias` are present.
pub const ARCH_FLAG_QKV_BIAS: u32 = 1;
/// Cap on v2 `head_dim`: above any family's (gemma3: 256); with `n_heads · head_dim ≤ MAX_DIM` it
/// bounds the attention scratch.
pub const MAX_HEAD_DIM: u32 = 1024;
/// Tensor data alignment: enough for any SIMD128 load and a cache line half.
pub const TENSOR_ALIGN: usize = 32;
pub const FLAG_TIED_EMBEDDINGS: u32 = 1;
const KNOWN_FLAGS: u32 = FLAG_TIED_EMBEDDINGS;
const TRAILER_LEN: usize = 4;

/// Caps on header values. They bound allocation sizes derived from untrusted counts; each is far
/// above any model this runtime is meant for (SmolLM2-135M: vocab 49152, dim 576, 30 layers).
pub const MAX_VOCAB: u32 = 262_144;
pub const MAX_DIM: u32 = 16_384;
pub const MAX_LAYERS: u32 = 256;
pub const MAX_FFN_DIM: u32 = 65_536;
pub const MAX_CONTEXT: u32 = 32_768;
pub const MAX_TENSORS: u32 = 4_096;
pub const MAX_TENSOR_NAME_LEN: usize = 64;

/// Reads a tensor name (`u16 name_len`, then the bytes) and checks the SLM1 rule: 1..=64 bytes of
/// `[a-z0-9_.]`. A package and an adapter break the rule with different statuses (`status`).
pub(crate) fn read_tensor_name<'a>(r: &mut Reader<'a>, status: Status) -> Result<&'a str> {
    let name_len = r.u16("name_len")? as usize;
    if name_len == 0 || name_len > MAX_TENSOR_NAME_LEN {
        return Err(bad(status, r.field("name_len"), name_len as u64, "must be in 1..=64 (a tensor name)"));
    }
    let name = r.take(name_len, "name")?;
    let allowed = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'.';
    match core::str::from_utf8(name) {
        Ok(name) if name.as_bytes().iter().all(allowed) => Ok(name),
        _ => Err(bad(status, r.field("name"), name_len as u64, "must use only [a-z0-9_.] (a tensor name)")),
    }
}

/// Architecture hyperparameters from the header (defined with the architecture tables).
pub use crate::model::arch::Hyperparams;

/// What an adapter names to say which parent it was made for (see FORMAT.md, "Model identity").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelIdentity {
    pub n_params: u64,
    pub tensor_layout_crc: u32,
    pub tokenizer_crc: u32,
    pub flags: u32,
    pub n_tensors: u32,
}

impl ModelIdentity {
    /// The 24-byte little-endian encoding used wherever the identity is hashed.
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..8].copy_from_slice(&self.n_params.to_le_bytes());
        out[8..12].copy_from_slice(&self.tensor_layout_crc.to_le_bytes());
        out[12..16].copy_from_slice(&self.tokenizer_crc.to_le_bytes());
        out[16..20].copy_from_slice(&self.flags.to_le_bytes());
        out[20..24].copy_from_slice(&self.n_tensors.to_le_bytes());
        out
    }
}

/// One directory entry; `range` is absolute within the package bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    /// `[rows, row_len]`; a vector has `rows == 1`.
    pub rows: usize,
    pub row_len: usize,
    pub rank: u8,
    pub range: Range<usize>,
}

impl TensorEntry {
    pub fn n_elements(&self) -> u64 {
        self.rows as u64 * self.row_len as u64
    }
}

/// A validated package: where everything is. Borrow the bytes again to read tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Package {
    pub hparams: Hyperparams,
    pub quant: DType,
    pub identity: ModelIdentity,
    pub tensors: Vec<TensorEntry>,
    /// `format_version`: 1 or 2.
    pub format_version: u32,
    /// The architecture (also `hparams.arch`); SLM1 v1 packages are all llama.
    pub arch: Arch,
    /// Directory index of each model-level tensor by role (`None`: not in this package, e.g.
    /// `output.weight` when the embeddings are tied).
    pub model_tensors: TensorsByRole,
    /// Directory index of each layer's tensors by role.
    pub layers: Vec<TensorsByRole>,
    pub tokenizer_range: Range<usize>,
    pub artifact_crc: u32,
}

pub fn align_up(value: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(value.checked_add(align - 1)? & !(align - 1))
}

fn bad(status: Status, field: impl Into<Field>, value: u64, rule: &'static str) -> Error {
    Error::new(status, field, value, rule)
}

/// The v2 architecture block (header bytes 128..160), as read.
struct RawArchBlock {
    arch: u32,
    head_dim: u32,
    rope_kind: u32,
    norm_kind: u32,
    arch_flags: u32,
    sliding_window: u32,
    swa_pattern: u32,
    rope_theta_local: f32,
}

/// The raw header fields, before any cross-checks.
struct RawHeader {
    version: u32,
    header_len: usize,
    /// `None` in a v1 header.
    v2: Option<RawArchBlock>,
    flags: u32,
    hparams: Hyperparams,
    quant_mode: u32,
    n_params: u64,
    n_tensors: u32,
    tokenizer_crc: u32,
    tensor_layout_crc: u32,
    reserved: u32,
    dir_offset: u64,
    dir_len: u64,
    tokenizer_offset: u64,
    tokenizer_len: u64,
    data_offset: u64,
    data_len: u64,
}

fn read_header(bytes: &[u8]) -> Result<RawHeader> {
    if bytes.len() < HEADER_LEN {
        // A short file may still announce itself as something else: report the magic first.
        if bytes.len() >= 4 && bytes[0..4] != MAGIC {
            return Err(bad(Status::BadMagic, "header.magic", u32_at(bytes, 0) as u64, "must be \"SLM1\""));
        }
        return Err(bad(Status::Truncated, "header", bytes.len() as u64, "a package is at least 128 bytes"));
    }
    let mut r = Reader::new(&bytes[..HEADER_LEN], 0, "header", Status::Truncated);
    let magic = r.take(4, "magic")?;
    if magic != MAGIC {
        return Err(bad(Status::BadMagic, "header.magic", u32_at(magic, 0) as u64, "must be \"SLM1\""));
    }
    let version = r.u32("format_version")?;
    let want_len = match version {
        FORMAT_VERSION => HEADER_LEN,
        FORMAT_VERSION_2 => HEADER_LEN_V2,
        _ => return Err(bad(Status::UnsupportedVersion, "header.format_version", version as u64, "must be 1 or 2")),
    };
    let header_len = r.u32("header_len")?;
    if header_len as usize != want_len {
        let rule = if version == FORMAT_VERSION { "must be 128 (format_version 1)" } else { "must be 160 (format_version 2)" };
        return Err(bad(Status::BadHeaderLength, "header.header_len", header_len as u64, rule));
    }
    if bytes.len() < want_len {
        return Err(bad(Status::Truncated, "header", bytes.len() as u64, "a v2 package is at least 160 bytes"));
    }
    let flags = r.u32("flags")?;
    let hparams = Hyperparams::llama_v1(
        r.u32("vocab_size")?,
        r.u32("dim")?,
        r.u32("n_layers")?,
        r.u32("n_heads")?,
        r.u32("n_kv_heads")?,
        r.u32("ffn_dim")?,
        r.u32("max_context")?,
        r.f32("rope_theta")?,
        r.f32("norm_eps")?,
        flags & FLAG_TIED_EMBEDDINGS != 0,
    );
    let quant_mode = r.u32("quant_mode")?;
    let n_params = r.u64("n_params")?;
    let n_tensors = r.u32("n_tensors")?;
    let tokenizer_crc = r.u32("tokenizer_crc")?;
    let tensor_layout_crc = r.u32("tensor_layout_crc")?;
    let reserved = r.u32("reserved")?;
    let (dir_offset, dir_len) = (r.u64("dir_offset")?, r.u64("dir_len")?);
    let (tokenizer_offset, tokenizer_len) = (r.u64("tokenizer_offset")?, r.u64("tokenizer_len")?);
    let (data_offset, data_len) = (r.u64("data_offset")?, r.u64("data_len")?);
    let v2 = if version == FORMAT_VERSION_2 {
        let mut r = Reader::new(&bytes[HEADER_LEN..HEADER_LEN_V2], HEADER_LEN, "header", Status::Truncated);
        Some(RawArchBlock {
            arch: r.u32("arch")?,
            head_dim: r.u32("head_dim")?,
            rope_kind: r.u32("rope_kind")?,
            norm_kind: r.u32("norm_kind")?,
            arch_flags: r.u32("arch_flags")?,
            sliding_window: r.u32("sliding_window")?,
            swa_pattern: r.u32("swa_pattern")?,
            rope_theta_local: f32::from_bits(r.u32("rope_theta_local")?),
        })
    } else {
        None
    };
    Ok(RawHeader {
        version,
        header_len: want_len,
        v2,
        flags,
        hparams,
        quant_mode,
        n_params,
        n_tensors,
        tokenizer_crc,
        tensor_layout_crc,
        reserved,
        dir_offset,
        dir_len,
        tokenizer_offset,
        tokenizer_len,
        data_offset,
        data_len,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Section byte ranges, once they are known to tile the file exactly.
struct Sections {
    dir: Range<usize>,
    tokenizer: Range<usize>,
    data: Range<usize>,
}

fn check_sections(h: &RawHeader, file_len: usize) -> Result<Sections> {
    let file_len = file_len as u64;
    if h.dir_offset != h.header_len as u64 {
        return Err(bad(Status::BadSectionBounds, "header.dir_offset", h.dir_offset, "must equal header_len (128 in v1, 160 in v2)"));
    }
    let dir_end = h.dir_offset.checked_add(h.dir_len);
    if dir_end.is_none_or(|end| end > file_len) {
        return Err(bad(Status::BadSectionBounds, "header.dir_len", h.dir_len, "directory must end inside the file"));
    }
    let dir_end = dir_end.unwrap_or_default();
    if h.tokenizer_offset != dir_end {
        return Err(bad(Status::BadSectionBounds, "header.tokenizer_offset", h.tokenizer_offset, "must equal dir_offset + dir_len (sections are contiguous)"));
    }
    let tok_end = h.tokenizer_offset.checked_add(h.tokenizer_len);
    if tok_end.is_none_or(|end| end > file_len) {
        return Err(bad(Status::BadSectionBounds, "header.tokenizer_len", h.tokenizer_len, "tokenizer section must end inside the file"));
    }
    let tok_end = tok_end.unwrap_or_default();
    if align_up(tok_end, TENSOR_ALIGN as u64) != Some(h.data_offset) {
        return Err(bad(Status::BadSectionBounds, "header.data_offset", h.data_offset, "must equal align_up(tokenizer_offset + tokenizer_len, 32)"));
    }
    let data_end = h.data_offset.checked_add(h.data_len);
    let expected_len = data_end.and_then(|end| end.checked_add(TRAILER_LEN as u64));
    match expected_len {
        Some(len) if len == file_len => {}
        Some(len) if len > file_len => {
            return Err(bad(Status::Truncated, "header.data_len", h.data_len, "tensor data and trailer must fit in the file"));
        }
        _ => {
            return Err(bad(Status::BadSectionBounds, "header.data_len", h.data_len, "file must end right after the tensor data and the 4-byte artifact CRC"));
        }
    }
    // All values are now ≤ file_len, which is a usize.
    let (dir_offset, tok_offset, data_offset) = (h.dir_offset as usize, h.tokenizer_offset as usize, h.data_offset as usize);
    Ok(Sections { dir: dir_offset..dir_end as usize, tokenizer: tok_offset..tok_end as usize, data: data_offset..data_offset + h.data_len as usize })
}

/// The v2 architecture block's own rules (FORMAT.md "Header v2"), in field order except
/// `head_dim`, `rope_kind` and `norm_kind`, which [`check_hparams`] checks among the hyperparameters.
fn check_arch_block(b: &RawArchBlock) -> Result<Arch> {
    let arch =
        Arch::from_code(b.arch).ok_or_else(|| bad(Status::BadHyperparameter, "header.arch", b.arch as u64, "must be 0 llama, 1 qwen2, 2 gemma3 or 3 qwen3"))?;
    if b.arch_flags & !ARCH_FLAG_QKV_BIAS != 0 {
        return Err(bad(Status::BadFlags, "header.arch_flags", b.arch_flags as u64, "only bit 0 (ATTN_QKV_BIAS) may be set"));
    }
    if b.arch_flags & ARCH_FLAG_QKV_BIAS != 0 && !arch.has_qkv_bias_rows() {
        return Err(bad(Status::BadFlags, "header.arch_flags", b.arch_flags as u64, "ATTN_QKV_BIAS needs an architecture with Q/K/V biases (qwen2)"));
    }
    Ok(arch)
}

/// The v2 sliding-window fields (bytes 148..160): all zero, or — for an architecture with local
/// layers (gemma3) — a window of `1..=max_context` tokens, a layer pattern of `1..=256` and a
/// finite positive local RoPE base. Sets them in `p` (whose `arch` and `max_context` are checked).
fn check_sliding_window(b: &RawArchBlock, p: &mut Hyperparams) -> Result<()> {
    let hp = |field, value: u64, rule| Err(bad(Status::BadHyperparameter, field, value, rule));
    if b.sliding_window == 0 {
        if b.swa_pattern != 0 {
            return hp("header.swa_pattern", b.swa_pattern as u64, "must be 0 when sliding_window is 0");
        }
        if b.rope_theta_local.to_bits() != 0 {
            return hp("header.rope_theta_local", b.rope_theta_local.to_bits() as u64, "must be 0 when sliding_window is 0 (value shown as f32 bits)");
        }
        return Ok(());
    }
    if !p.arch.has_sliding_window() {
        return hp("header.sliding_window", b.sliding_window as u64, "must be 0: only gemma3 has sliding-window layers");
    }
    if b.sliding_window > p.max_context {
        return hp("header.sliding_window", b.sliding_window as u64, "must be at most max_context");
    }
    if b.swa_pattern == 0 || b.swa_pattern > MAX_LAYERS {
        return hp("header.swa_pattern", b.swa_pattern as u64, "must be in 1..=256 when sliding_window is set");
    }
    if !(b.rope_theta_local.is_finite() && b.rope_theta_local > 0.0) {
        return hp(
            "header.rope_theta_local",
            b.rope_theta_local.to_bits() as u64,
            "must be finite and > 0 when sliding_window is set (value shown as f32 bits)",
        );
    }
    p.sliding_window = b.sliding_window;
    p.swa_pattern = b.swa_pattern;
    p.rope_theta_local = b.rope_theta_local;
    Ok(())
}

/// Checks the header values and returns the hyperparameters (v2: with the architecture block
/// applied) and the quant mode.
fn check_hparams(h: &RawHeader) -> Result<(Hyperparams, DType)> {
    if h.flags & !KNOWN_FLAGS != 0 {
        return Err(bad(Status::BadFlags, "header.flags", h.flags as u64, "only bit 0 (TIED_EMBEDDINGS) may be set"));
    }
    if h.reserved != 0 {
        return Err(bad(Status::BadFlags, "header.reserved", h.reserved as u64, "must be 0"));
    }
    let mut p = h.hparams;
    if let Some(b) = &h.v2 {
        p.arch = check_arch_block(b)?;
        p.head_dim = b.head_dim;
        p.qkv_bias = b.arch_flags & ARCH_FLAG_QKV_BIAS != 0;
    }
    let p = &mut p;
    let range = |field: &'static str, value: u32, max: u32, rule: &'static str| {
        if value == 0 || value > max {
            Err(bad(Status::BadHyperparameter, field, value as u64, rule))
        } else {
            Ok(())
        }
    };
    range("header.vocab_size", p.vocab_size, MAX_VOCAB, "must be in 1..=262144")?;
    range("header.dim", p.dim, MAX_DIM, "must be in 1..=16384")?;
    range("header.n_layers", p.n_layers, MAX_LAYERS, "must be in 1..=256")?;
    range("header.n_heads", p.n_heads, p.dim, "must be in 1..=dim")?;
    range("header.n_kv_heads", p.n_kv_heads, p.n_heads, "must be in 1..=n_heads")?;
    range("header.ffn_dim", p.ffn_dim, MAX_FFN_DIM, "must be in 1..=65536")?;
    range("header.max_context", p.max_context, MAX_CONTEXT, "must be in 1..=32768")?;
    if h.v2.is_none() {
        if !p.dim.is_multiple_of(p.n_heads) {
            return Err(bad(Status::BadHyperparameter, "header.n_heads", p.n_heads as u64, "must divide dim"));
        }
        if !(p.dim / p.n_heads).is_multiple_of(2) {
            return Err(bad(Status::BadHyperparameter, "header.n_heads", p.n_heads as u64, "head_dim = dim / n_heads must be even (RoPE rotates pairs)"));
        }
    } else {
        if p.head_dim < 2 || p.head_dim > MAX_HEAD_DIM || !p.head_dim.is_multiple_of(2) {
            return Err(bad(Status::BadHyperparameter, "header.head_dim", p.head_dim as u64, "must be even and in 2..=1024 (RoPE rotates pairs)"));
        }
        if p.q_dim() > MAX_DIM as usize {
            return Err(bad(Status::BadHyperparameter, "header.head_dim", p.head_dim as u64, "n_heads · head_dim must be at most 16384"));
        }
    }
    if !p.n_heads.is_multiple_of(p.n_kv_heads) {
        return Err(bad(Status::BadHyperparameter, "header.n_kv_heads", p.n_kv_heads as u64, "must divide n_heads"));
    }
    if !(p.rope_theta.is_finite() && p.rope_theta > 0.0) {
        return Err(bad(Status::BadHyperparameter, "header.rope_theta", p.rope_theta.to_bits() as u64, "must be finite and > 0 (value shown as f32 bits)"));
    }
    if !(p.norm_eps.is_finite() && p.norm_eps > 0.0) {
        return Err(bad(Status::BadHyperparameter, "header.norm_eps", p.norm_eps.to_bits() as u64, "must be finite and > 0 (value shown as f32 bits)"));
    }
    if let Some(b) = &h.v2 {
        p.rope = RopeKind::from_code(b.rope_kind)
            .ok_or_else(|| bad(Status::BadHyperparameter, "header.rope_kind", b.rope_kind as u64, "must be 0 interleaved or 1 neox"))?;
        p.norm =
            NormKind::from_code(b.norm_kind).ok_or_else(|| bad(Status::BadHyperparameter, "header.norm_kind", b.norm_kind as u64, "must be 0 (RMSNorm)"))?;
        check_sliding_window(b, p)?;
    }
    // v1 is exactly what it always was: the four v1 storage modes; the other dtypes need v2.
    let quant = u8::try_from(h.quant_mode).ok().and_then(DType::from_code);
    let quant = match (quant, &h.v2) {
        (Some(q), Some(_)) => q,
        (Some(q), None) if DType::V1_STORAGE.contains(&q) => q,
        (_, Some(_)) => return Err(bad(Status::BadQuantMode, "header.quant_mode", h.quant_mode as u64, "must be a dtype code 0..=9 (FORMAT.md, Dtypes)")),
        (_, None) => return Err(bad(Status::BadQuantMode, "header.quant_mode", h.quant_mode as u64, "must be 0 f32, 1 q8_0, 2 q4_0 or 3 q4_1 in format v1")),
    };
    if h.n_tensors > MAX_TENSORS {
        return Err(bad(Status::LimitExceeded, "header.n_tensors", h.n_tensors as u64, "must be at most 4096"));
    }
    Ok((*p, quant))
}

/// A v2 package's `quant_mode`: the dtype holding the most elements of rank-2 tensors, the lowest
/// code on a tie (`f32` when there are no matrices).
pub fn dominant_dtype(tensors: &[TensorEntry]) -> DType {
    let mut best = (DType::F32, 0u64);
    for d in DType::ALL {
        let n: u64 = tensors.iter().filter(|e| e.rank == 2 && e.dtype == d).map(TensorEntry::n_elements).sum();
        if n > best.1 {
            best = (d, n);
        }
    }
    best.0
}

/// Reads the directory entries from the directory section's bytes (`dir`) and checks each on its own
/// and against the header; the tensor data are not looked at.
fn read_directory(dir: &[u8], h: &RawHeader, s: &Sections) -> Result<Vec<TensorEntry>> {
    let mut r = Reader::new(dir, s.dir.start, "tensor", Status::Truncated);
    // The smallest entry is 2 + 1 + 1 + 1 + 4 + 8 + 8 = 25 bytes: bound the allocation by the bytes present.
    let n = h.n_tensors as usize;
    r.room_for(n as u64, 25, "header.n_tensors", n as u64, "directory is too short for this many entries")?;
    let mut entries: Vec<TensorEntry> = Vec::new();
    entries.try_reserve_exact(n).map_err(|_| oom("directory", n.saturating_mul(core::mem::size_of::<TensorEntry>())))?;
    let mut expected_offset: u64 = 0;
    for i in 0..n {
        r.enter("tensor", Entry::Index(i));
        let name = read_tensor_name(&mut r, Status::BadTensorName)?;
        r.enter("tensor", Entry::Name(name));
        let mut owned = String::new();
        owned.try_reserve_exact(name.len()).map_err(|_| oom("directory.names", name.len()))?;
        owned.push_str(name);
        let name = owned;
        let named = |field: &str| field!("tensor[{}].{}", name, field);
        let code = r.u8("dtype")?;
        let dtype = match DType::from_code(code) {
            Some(d) if h.v2.is_some() || DType::V1_STORAGE.contains(&d) => d,
            Some(_) => return Err(bad(Status::UnsupportedDtype, named("dtype"), code as u64, "must be 0 f32, 1 q8_0, 2 q4_0 or 3 q4_1 in format v1")),
            None => return Err(bad(Status::UnsupportedDtype, named("dtype"), code as u64, "must be a dtype code 0..=9 (FORMAT.md, Dtypes)")),
        };
        let rank = r.u8("rank")?;
        if rank != 1 && rank != 2 {
            return Err(bad(Status::BadTensorShape, named("rank"), rank as u64, "must be 1 or 2"));
        }
        let mut dims = [1u32; 2];
        for dim in dims.iter_mut().take(rank as usize) {
            *dim = r.u32("dims")?;
            if *dim == 0 {
                return Err(bad(Status::BadTensorShape, named("dims"), 0, "every dim must be at least 1"));
            }
        }
        let (rows, row_len) = if rank == 1 { (1usize, dims[0] as usize) } else { (dims[0] as usize, dims[1] as usize) };
        let offset = r.u64("offset")?;
        let byte_len = r.u64("byte_len")?;
        if offset % TENSOR_ALIGN as u64 != 0 {
            return Err(bad(Status::BadAlignment, named("offset"), offset, "must be a multiple of 32"));
        }
        if offset != expected_offset {
            return Err(bad(
                Status::BadSectionBounds,
                named("offset"),
                offset,
                "must start at the previous tensor's end rounded up to 32 (no gap, no overlap)",
            ));
        }
        let row_bytes = dtype.row_bytes(row_len).ok_or_else(|| {
            bad(Status::BadTensorShape, named("dims"), row_len as u64, "row length must be a multiple of the dtype's block size (32 for quantized)")
        })?;
        let expected_len = (row_bytes as u64).checked_mul(rows as u64);
        if expected_len != Some(byte_len) {
            return Err(bad(Status::BadTensorShape, named("byte_len"), byte_len, "must equal rows × row bytes of the dtype"));
        }
        let end = offset.checked_add(byte_len).filter(|&end| end <= h.data_len);
        let end = end.ok_or_else(|| bad(Status::BadSectionBounds, named("byte_len"), byte_len, "tensor must end inside the data section"))?;
        let start_abs = s.data.start + offset as usize;
        let end_abs = s.data.start + end as usize;
        // The padding after the tensor is checked as the data arrive (`stream`).
        expected_offset = align_up(end, TENSOR_ALIGN as u64).unwrap_or(u64::MAX);
        if entries.iter().any(|e| e.name == name) {
            return Err(bad(Status::DuplicateTensor, named("name"), i as u64, "each tensor name may appear once"));
        }
        entries.push(TensorEntry { name, dtype, rows, row_len, rank, range: start_abs..end_abs });
    }
    if r.remaining() != 0 {
        return Err(bad(Status::BadSectionBounds, "header.dir_len", h.dir_len, "directory must end exactly after the last entry"));
    }
    let data_used = entries.last().map_or(0, |e| (e.range.end - s.data.start) as u64);
    if data_used != h.data_len {
        return Err(bad(Status::BadSectionBounds, "header.data_len", h.data_len, "must end exactly where the last tensor ends"));
    }
    Ok(entries)
}

/// Finds the tensor of `slot`, checks its shape and dtype against the architecture table, and
/// returns its directory index.
fn require(entries: &[TensorEntry], found: &mut [bool], slot: &TensorSlot, h: &Hyperparams, quant: DType, as_shipped: bool) -> Result<usize> {
    let i = entries
        .iter()
        .position(|e| slot.is_named(&e.name))
        .ok_or_else(|| bad(Status::MissingTensor, field!("tensor[{}]", slot), 0, "required tensor is missing"))?;
    let e = &entries[i];
    let (dims, rank) = slot.dims(h);
    let shape_ok = match rank {
        1 => e.rank == 1 && e.row_len == dims[0],
        _ => e.rank == 2 && e.rows == dims[0] && e.row_len == dims[1],
    };
    if !shape_ok {
        const RULE: &str = "must match the hyperparameters (value = the required dims)";
        let field = field!("tensor[{}].dims", slot);
        return Err(match rank {
            2 => Error::shape(Status::BadTensorShape, field, dims[0] as u32, dims[1] as u32, RULE),
            _ => bad(Status::BadTensorShape, field, dims[0] as u64, RULE),
        });
    }
    // `Storage` holds the rule: v1 norms f32, matrices quant_mode, embeddings also q8_0 in 4-bit
    // packages; v2 norms and biases f32, matrices any dtype.
    if as_shipped && !slot.desc.storage.allows_as_shipped(e.dtype) {
        return Err(bad(Status::BadQuantMode, field!("tensor[{}].dtype", slot), e.dtype.code() as u64, "norms and biases must be f32"));
    }
    if !as_shipped && !slot.desc.storage.allows(quant, e.dtype) {
        return Err(bad(
            Status::BadQuantMode,
            field!("tensor[{}].dtype", slot),
            e.dtype.code() as u64,
            "norms must be f32; matrices must have the header's quant_mode (embeddings: or q8_0 when quant_mode is 4-bit)",
        ));
    }
    found[i] = true;
    Ok(i)
}

/// Where each tensor of the architecture is in the directory, and the parameter count.
struct Resolved {
    model_tensors: TensorsByRole,
    layers: Vec<TensorsByRole>,
    n_params: u64,
}

/// Checks the directory against the architecture's tensor table (model/arch.rs: which tensors,
/// shapes and dtypes), `n_params` and (v2) the dominant-dtype rule; needs no tensor data.
fn resolve_tensors(h: &RawHeader, p: &Hyperparams, quant: DType, tensors: &[TensorEntry]) -> Result<Resolved> {
    let as_shipped = h.version == FORMAT_VERSION_2;
    let mut found = Vec::new();
    found.try_reserve_exact(tensors.len()).map_err(|_| oom("directory", tensors.len()))?;
    found.resize(tensors.len(), false);
    let mut model_tensors = TensorsByRole::default();
    let mut layers: Vec<TensorsByRole> = Vec::new();
    layers.try_reserve_exact(p.n_layers as usize).map_err(|_| oom("layers", (p.n_layers as usize).saturating_mul(core::mem::size_of::<TensorsByRole>())))?;
    layers.resize(p.n_layers as usize, TensorsByRole::default());
    for slot in p.arch.tensors(p) {
        let i = require(tensors, &mut found, &slot, p, quant, as_shipped)?;
        match slot.layer {
            None => model_tensors.set(slot.desc.role, i),
            Some(l) => layers[l as usize].set(slot.desc.role, i),
        }
    }
    if let Some(i) = found.iter().position(|&f| !f) {
        return Err(bad(
            Status::UnknownTensor,
            field!("tensor[{}]", tensors[i].name),
            i as u64,
            "not a tensor of this architecture (or output.weight with TIED_EMBEDDINGS set)",
        ));
    }
    let n_params: u64 = tensors.iter().map(TensorEntry::n_elements).sum();
    if n_params != h.n_params {
        return Err(bad(Status::BadParameterCount, "header.n_params", h.n_params, "must equal the sum of all tensors' element counts"));
    }
    if as_shipped && dominant_dtype(tensors) != quant {
        return Err(bad(
            Status::BadQuantMode,
            "header.quant_mode",
            h.quant_mode as u64,
            "v2: must be the dtype holding the most matrix elements (lowest code on a tie)",
        ));
    }
    Ok(Resolved { model_tensors, layers, n_params })
}

/// Parses and validates an SLM1 package held whole in memory. See `abi/FORMAT.md` for every rule
/// and its status. It is the streaming verifier fed every byte at once, so a package is checked by
/// one implementation (and in one order) however it arrives.
pub fn parse(bytes: &[u8]) -> Result<Package> {
    let mut verifier = PackageVerifier::new(bytes.len());
    verifier.advance(bytes)?;
    verifier.finish()
}
