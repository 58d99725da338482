//! SLM1 writer: [`ModelSpec`] → package bytes, exactly as `abi/FORMAT.md` lays them out. A llama
//! model whose tensors fit v1's storage rule is written as v1 (byte for byte what it always was);
//! anything else (qwen2, an explicit head_dim, tensors kept in their shipped mixed dtypes) as v2.
//!
//! Also the place that knows the canonical tensor names and order, and the low-level
//! [`RawPackage`] form that conformance tests edit to build deliberately broken packages.

use anyhow::{anyhow, bail, ensure, Context, Result};
use tinyrustlm::model::arch::{NormKind, TensorSlot};
use tinyrustlm::quant::{self, DType};

use crate::spec::{Hyperparams, ModelSpec, TensorData, TensorSpec, TokenizerSpec};

pub const HEADER_LEN: usize = 128;
pub const HEADER_LEN_V2: usize = 160;
/// v2 `arch_flags` bit 0.
pub const ARCH_FLAG_QKV_BIAS: u32 = 1;
pub const TENSOR_ALIGN: usize = 32;
pub const FLAG_TIED_EMBEDDINGS: u32 = 1;
pub const NONE_ID: u32 = u32::MAX;

/// The runtime's view of the hyperparameters, which the architecture table reads.
pub fn runtime_hparams(h: &Hyperparams) -> tinyrustlm::format::Hyperparams {
    tinyrustlm::format::Hyperparams {
        arch: h.arch,
        head_dim: h.head_dim,
        rope: h.rope,
        norm: NormKind::Rms,
        qkv_bias: h.qkv_bias,
        sliding_window: h.sliding_window,
        swa_pattern: h.swa_pattern,
        rope_theta_local: h.rope_theta_local,
        vocab_size: h.vocab_size,
        dim: h.dim,
        n_layers: h.n_layers,
        n_heads: h.n_heads,
        n_kv_heads: h.n_kv_heads,
        ffn_dim: h.ffn_dim,
        max_context: h.max_context,
        rope_theta: h.rope_theta,
        norm_eps: h.norm_eps,
        tied_embeddings: h.tied_embeddings,
    }
}

/// Tensor names in the order the writer emits them (and the parser's required set): the
/// architecture table's canonical order (`tinyrustlm::model::arch`).
pub fn canonical_names(h: &Hyperparams) -> Vec<String> {
    h.arch.tensors(&runtime_hparams(h)).map(|slot| slot.to_string()).collect()
}

/// Expected `[rows, row_len]` (or `[len]`) of a tensor of the architecture, by name (any layer
/// index; `output.weight` also when the embeddings are tied).
pub fn expected_dims(h: &Hyperparams, name: &str) -> Option<Vec<u32>> {
    let slot = h.arch.slot_named(name)?;
    Some(slot_dims(h, &slot))
}

fn slot_dims(h: &Hyperparams, slot: &TensorSlot) -> Vec<u32> {
    let (dims, rank) = slot.dims(&runtime_hparams(h));
    // Every dim is a header u32 or a product bounded by the parser's caps.
    dims[..rank].iter().map(|&d| d as u32).collect()
}

/// One directory entry with its encoded data.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: Vec<u8>,
    pub dtype: u8,
    pub dims: Vec<u32>,
    pub data: Vec<u8>,
}

/// A package before serialisation: every header field is explicit so tests can break any of them.
#[derive(Clone, Debug)]
pub struct RawPackage {
    pub magic: [u8; 4],
    pub format_version: u32,
    pub header_len: u32,
    pub flags: u32,
    pub hparams: [u32; 7], // vocab, dim, n_layers, n_heads, n_kv_heads, ffn_dim, max_context
    pub rope_theta: f32,
    pub norm_eps: f32,
    pub quant_mode: u32,
    pub n_params: u64,
    pub tensors: Vec<RawTensor>,
    pub tokenizer: Vec<u8>,
    /// The v2 header bytes 128..160 (arch, head_dim, rope_kind, norm_kind, arch_flags,
    /// sliding_window, swa_pattern, rope_theta_local bits), written after the v1 fields when
    /// present; `None` writes a 128-byte header.
    pub arch_block: Option<[u32; 8]>,
}

/// Byte positions of the pieces of a serialised package (for tests that poke at them).
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub dir: std::ops::Range<usize>,
    pub tokenizer: std::ops::Range<usize>,
    pub data: std::ops::Range<usize>,
    /// Absolute offset of each directory entry, and of each tensor's data.
    pub entries: Vec<usize>,
    pub tensor_data: Vec<std::ops::Range<usize>>,
}

pub fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

impl RawPackage {
    pub fn directory_bytes(&self) -> (Vec<u8>, Vec<usize>, Vec<u64>) {
        let mut dir = Vec::new();
        let mut entry_starts = Vec::new();
        let mut offsets = Vec::new();
        let mut offset = 0u64;
        for t in &self.tensors {
            entry_starts.push(dir.len());
            dir.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
            dir.extend_from_slice(&t.name);
            dir.push(t.dtype);
            dir.push(t.dims.len() as u8);
            for d in &t.dims {
                dir.extend_from_slice(&d.to_le_bytes());
            }
            dir.extend_from_slice(&offset.to_le_bytes());
            dir.extend_from_slice(&(t.data.len() as u64).to_le_bytes());
            offsets.push(offset);
            offset = align_up((offset as usize) + t.data.len(), TENSOR_ALIGN) as u64;
        }
        (dir, entry_starts, offsets)
    }

    /// Serialises with consistent offsets and checksums.
    pub fn to_bytes(&self) -> (Vec<u8>, Layout) {
        let (dir, entry_starts, offsets) = self.directory_bytes();
        let dir_offset = if self.arch_block.is_some() { HEADER_LEN_V2 } else { HEADER_LEN };
        let tok_offset = dir_offset + dir.len();
        let data_offset = align_up(tok_offset + self.tokenizer.len(), TENSOR_ALIGN);
        let data_len = match self.tensors.last() {
            Some(t) => *offsets.last().unwrap() as usize + t.data.len(),
            None => 0,
        };
        let mut out = Vec::with_capacity(data_offset + data_len + 4);
        out.extend_from_slice(&self.magic);
        for v in [self.format_version, self.header_len, self.flags] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in self.hparams {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.rope_theta.to_le_bytes());
        out.extend_from_slice(&self.norm_eps.to_le_bytes());
        out.extend_from_slice(&self.quant_mode.to_le_bytes());
        out.extend_from_slice(&self.n_params.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&self.tokenizer).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&dir).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for v in [dir_offset, dir.len(), tok_offset, self.tokenizer.len(), data_offset, data_len] {
            out.extend_from_slice(&(v as u64).to_le_bytes());
        }
        debug_assert_eq!(out.len(), HEADER_LEN);
        for v in self.arch_block.iter().flatten() {
            out.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(out.len(), dir_offset);
        out.extend_from_slice(&dir);
        out.extend_from_slice(&self.tokenizer);
        out.resize(data_offset, 0);
        let mut tensor_data = Vec::new();
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            out.resize(data_offset + off as usize, 0);
            tensor_data.push(out.len()..out.len() + t.data.len());
            out.extend_from_slice(&t.data);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        let layout = Layout {
            dir: dir_offset..tok_offset,
            tokenizer: tok_offset..tok_offset + self.tokenizer.len(),
            data: data_offset..data_offset + data_len,
            entries: entry_starts.iter().map(|s| dir_offset + s).collect(),
            tensor_data,
        };
        (out, layout)
    }
}

/// Recomputes the three checksums of an edited package in place (layout from the header), so a
/// test can break one rule without tripping the checksum checks first.
pub fn reseal(bytes: &mut [u8]) {
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
    let (dir_off, dir_len, tok_off, tok_len) = (u64_at(bytes, 80), u64_at(bytes, 88), u64_at(bytes, 96), u64_at(bytes, 104));
    if let Some(dir) = bytes.get(dir_off..dir_off.saturating_add(dir_len)) {
        let crc = crc32fast::hash(dir);
        bytes[72..76].copy_from_slice(&crc.to_le_bytes());
    }
    if let Some(tok) = bytes.get(tok_off..tok_off.saturating_add(tok_len)) {
        let crc = crc32fast::hash(tok);
        bytes[68..72].copy_from_slice(&crc.to_le_bytes());
    }
    let n = bytes.len();
    if n >= 4 {
        let crc = crc32fast::hash(&bytes[..n - 4]);
        bytes[n - 4..].copy_from_slice(&crc.to_le_bytes());
    }
}

pub fn tokenizer_bytes(t: &TokenizerSpec) -> Result<Vec<u8>> {
    ensure!(t.eog_ids.len() <= 16, "at most 16 end-of-generation ids, got {}", t.eog_ids.len());
    let max_token_len = t.tokens.iter().map(|x| x.bytes.len()).max().unwrap_or(0).max(1);
    ensure!(max_token_len <= 1024, "a token is {} bytes long; the format allows 1024", max_token_len);
    let mut out = Vec::new();
    let flags = (t.add_bos as u32) | ((t.add_space_prefix as u32) << 1);
    for v in [
        t.kind as u32,
        t.tokens.len() as u32,
        t.merges.len() as u32,
        t.bos_id.unwrap_or(NONE_ID),
        t.eos_id.unwrap_or(NONE_ID),
        t.unk_id.unwrap_or(NONE_ID),
        t.pre_tokenizer as u32,
        t.chat_template as u32,
        flags,
        t.eog_ids.len() as u32,
        max_token_len as u32,
        0,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for id in &t.eog_ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for tok in &t.tokens {
        out.push(tok.token_type);
        out.extend_from_slice(&(tok.bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(&tok.score.to_le_bytes());
        out.extend_from_slice(&tok.bytes);
    }
    for m in &t.merges {
        for v in [m.left, m.right, m.result, m.rank] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Encodes one tensor in `dtype`: kept bit for bit when it already is, else (de)quantized.
pub fn encode_tensor(t: &TensorSpec, dtype: DType) -> Result<Vec<u8>> {
    let row_len = *t.dims.last().context("tensor has no dims")? as usize;
    let rows: usize = t.dims.iter().rev().skip(1).map(|&d| d as usize).product();
    let row_bytes = dtype
        .row_bytes(row_len)
        .ok_or_else(|| anyhow!("tensor {}: row length {} is not a multiple of {}'s block of {}", t.name, row_len, dtype.name(), dtype.block_elems()))?;
    let values: std::borrow::Cow<[f32]> = match &t.data {
        TensorData::Encoded { dtype: have, bytes } if *have == dtype => return Ok(bytes.clone()),
        TensorData::Encoded { dtype: have, bytes } => {
            let have_row = have.row_bytes(row_len).ok_or_else(|| anyhow!("tensor {}: bad row length for {}", t.name, have.name()))?;
            ensure!(bytes.len() == have_row * rows, "tensor {}: {} bytes of {} data, expected {}", t.name, bytes.len(), have.name(), have_row * rows);
            let mut v = vec![0f32; rows * row_len];
            for (src, dst) in bytes.chunks_exact(have_row).zip(v.chunks_exact_mut(row_len)) {
                quant::dequantize_row(*have, src, dst);
            }
            v.into()
        }
        TensorData::F32(v) => v.as_slice().into(),
    };
    ensure!(values.len() == rows * row_len, "tensor {}: {} values for dims {:?}", t.name, values.len(), t.dims);
    let mut out = vec![0u8; rows * row_bytes];
    for (src, dst) in values.chunks_exact(row_len).zip(out.chunks_exact_mut(row_bytes)) {
        quant::quantize_row(dtype, src, dst);
    }
    // Finite values can still overflow a block's f16 scale (|x| above ~8e6 for q8_0); the runtime
    // rejects such a package, so refuse to write it (found by the gguf fuzz target).
    if let Some(i) = quant::first_non_finite(dtype, &out) {
        bail!("tensor {}: block or element {i} does not fit {}: a scale overflows f16 (values too large)", t.name, dtype.name());
    }
    Ok(out)
}

/// Builds the raw package for `spec` stored in `quant` (norms stay f32). `on_tensor` is called after
/// each tensor (progress bars).
pub fn build(spec: &ModelSpec, quant: DType, on_tensor: impl FnMut(&str)) -> Result<RawPackage> {
    build_with(spec, Some(quant), on_tensor)
}

/// Builds the raw package for `spec` with every tensor kept in the dtype it has (encoded data as
/// encoded, f32 values as f32). This is v1 when the model is a v1 llama and the dtypes fit v1's
/// storage rule with the dominant matrix dtype as `quant_mode`, else v2.
pub fn build_as_shipped(spec: &ModelSpec, on_tensor: impl FnMut(&str)) -> Result<RawPackage> {
    build_with(spec, None, on_tensor)
}

/// The dtype a tensor has as the importer holds it.
fn shipped_dtype(t: &TensorSpec) -> DType {
    match &t.data {
        TensorData::Encoded { dtype, .. } => *dtype,
        TensorData::F32(_) => DType::F32,
    }
}

fn build_with(spec: &ModelSpec, quant: Option<DType>, mut on_tensor: impl FnMut(&str)) -> Result<RawPackage> {
    let h = &spec.hparams;
    ensure!(spec.tokenizer.tokens.len() == h.vocab_size as usize, "tokenizer has {} tokens, vocab_size is {}", spec.tokenizer.tokens.len(), h.vocab_size);
    let slots: Vec<TensorSlot> = h.arch.tensors(&runtime_hparams(h)).collect();
    let names = canonical_names(h);
    let find = |name: &String| spec.tensors.iter().find(|t| &t.name == name).ok_or_else(|| anyhow!("model has no tensor {name}"));
    // As shipped: each tensor's own dtype (norms and biases f32); the header's quant_mode is then
    // the dominant matrix dtype, and v1 is kept when v1's storage rule allows the result.
    let mut dtypes = Vec::with_capacity(slots.len());
    for (slot, name) in slots.iter().zip(&names) {
        let t = find(name)?;
        dtypes.push(match quant {
            Some(q) => slot.desc.storage.writer_dtype(q),
            None if slot.desc.dims.len() == 1 => DType::F32,
            None => shipped_dtype(t),
        });
    }
    let quant = match quant {
        Some(q) => q,
        None => dominant(slots.iter().zip(&dtypes).map(|(s, &d)| (s.desc.dims.len() == 2, s.dims(&runtime_hparams(h)).0, d))),
    };
    let v1_storage = slots.iter().zip(&dtypes).all(|(s, &d)| s.desc.storage.allows(quant, d));
    let v2 = h.needs_v2() || !v1_storage;
    let names = canonical_names(h);
    let mut tensors = Vec::with_capacity(names.len());
    let mut n_params = 0u64;
    for ((slot, name), &dtype) in slots.iter().zip(&names).zip(&dtypes) {
        let t = find(name)?;
        let want = slot_dims(h, slot);
        if t.dims != want {
            bail!("tensor {name}: dims {:?}, the hyperparameters need {:?}", t.dims, want);
        }
        // Converting: norms f32, matrices `quant`, 4-bit packages' embedding and LM head q8_0 (the
        // table's storage rule, which the parser checks). As shipped: the tensor's own dtype.
        let data = encode_tensor(t, dtype).with_context(|| format!("encoding tensor {name}"))?;
        n_params += t.dims.iter().map(|&d| d as u64).product::<u64>();
        tensors.push(RawTensor { name: name.as_bytes().to_vec(), dtype: dtype.code(), dims: t.dims.clone(), data });
        on_tensor(name);
    }
    if let Some(extra) = spec.tensors.iter().find(|t| !names.contains(&t.name)) {
        bail!("tensor {} is not part of the {} architecture this runtime runs", extra.name, h.arch.name());
    }
    let arch_block = v2.then(|| {
        let flags = if h.qkv_bias { ARCH_FLAG_QKV_BIAS } else { 0 };
        [h.arch.code(), h.head_dim, h.rope as u32, NormKind::Rms as u32, flags, h.sliding_window, h.swa_pattern, h.rope_theta_local.to_bits()]
    });
    Ok(RawPackage {
        magic: *b"SLM1",
        format_version: if v2 { 2 } else { 1 },
        header_len: if v2 { HEADER_LEN_V2 } else { HEADER_LEN } as u32,
        flags: if h.tied_embeddings { FLAG_TIED_EMBEDDINGS } else { 0 },
        hparams: [h.vocab_size, h.dim, h.n_layers, h.n_heads, h.n_kv_heads, h.ffn_dim, h.max_context],
        rope_theta: h.rope_theta,
        norm_eps: h.norm_eps,
        quant_mode: quant.code() as u32,
        n_params,
        tensors,
        tokenizer: tokenizer_bytes(&spec.tokenizer)?,
        arch_block,
    })
}

/// The v2 `quant_mode` rule (`tinyrustlm::format::dominant_dtype`): the dtype holding the most
/// matrix elements, the lowest code on a tie. Items: (is a matrix, dims, dtype).
fn dominant(tensors: impl Iterator<Item = (bool, [usize; 2], DType)> + Clone) -> DType {
    let mut best = (DType::F32, 0u64);
    for d in DType::ALL {
        let n: u64 = tensors.clone().filter(|&(m, _, t)| m && t == d).map(|(_, dims, _)| dims[0] as u64 * dims[1] as u64).sum();
        if n > best.1 {
            best = (d, n);
        }
    }
    best.0
}

pub fn write(spec: &ModelSpec, quant: DType) -> Result<Vec<u8>> {
    Ok(build(spec, quant, |_| {})?.to_bytes().0)
}
