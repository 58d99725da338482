//! Forward pass of the llama family (llama, qwen2, qwen3, gemma3) over a validated SLM1 package,
//! weights borrowed in place. The architectures' tensors (names, shapes, storage) are data in
//! [`arch`]; this file is their math.
//!
//! Pipeline per block (llama2.c `run.c` order): RMSNorm → Q/K/V projections (+ biases, qwen2) →
//! per-head RMSNorm of Q and K (qwen3, gemma3) → RoPE (adjacent pairs, or NEOX halves; gemma3's
//! local layers with their own base) → grouped-query attention over the KV cache (gemma3's local
//! layers over the last `sliding_window` positions only) → output projection (→ RMSNorm, gemma3),
//! plus the residual → RMSNorm → gated FFN (SwiGLU, or GeGLU for gemma3) (→ RMSNorm, gemma3), plus
//! the residual.
//! Then the final norm and the LM head (tied to the embeddings or not). gemma3 also scales the
//! embeddings by `√dim`. Every matmul runs in its own tensor's dtype.
//!
//! Query scaling is `1/√head_dim` for every family: gemma3's `query_pre_attn_scalar` is
//! `head_dim` for every Gemma 3 size except the 27B, which the importer refuses (llama.cpp's rule).
//!
//! Tokens are processed in batches: a prompt of n tokens runs as ⌈n / MAX_BATCH⌉ passes in which
//! every weight matrix is read once per pass (`quant::matmul`), which is what makes prefill faster
//! than decoding one token at a time. Decoding is the batch of one.

use alloc::collections::TryReserveError;
use alloc::vec::Vec;

use crate::buffer::AlignedBytes;
use crate::error::{oom, Error, Result, Status};
use crate::field;
use crate::format::{Hyperparams, Package, TensorEntry};
use crate::pool;
use crate::quant::{self, QuantizedInputs};

pub mod arch;

use arch::{FfnActivation, Role, RopeKind};

/// Tokens per prefill pass. Bigger batches amortise weight reads further but grow scratch
/// linearly (SmolLM2: ≈ 30 KB per batch row).
pub const MAX_BATCH: usize = 32;

/// Default context when the host asks for 0: long enough for chat, small enough that the KV cache
/// of a 135M model stays under 100 MB.
pub const DEFAULT_CONTEXT: u32 = 2048;

/// Element type of the KV cache, chosen when the model is loaded (`abi/tinyrustlm.h`,
/// `TRL_LOAD_KV_F16`). The code is what diagnostics report in `kv_dtype`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvDtype {
    F32 = 0,
    /// IEEE binary16, rounded to nearest even when a position is written: half the memory, and
    /// keys/values are read back widened exactly.
    F16 = 1,
}

/// One of the two caches (keys or values): `[n_layers][context_len][kv_dim]`.
enum KvStore {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl KvStore {
    fn new(dtype: KvDtype, len: usize) -> core::result::Result<KvStore, TryReserveError> {
        Ok(match dtype {
            KvDtype::F32 => KvStore::F32(try_vec(len)?),
            KvDtype::F16 => {
                let mut v = Vec::new();
                v.try_reserve_exact(len)?;
                v.resize(len, 0u16);
                KvStore::F16(v)
            }
        })
    }

    fn bytes(&self) -> usize {
        match self {
            KvStore::F32(v) => v.len() * 4,
            KvStore::F16(v) => v.len() * 2,
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            KvStore::F32(v) => v[at..at + src.len()].copy_from_slice(src),
            KvStore::F16(v) => {
                for (d, &x) in v[at..at + src.len()].iter_mut().zip(src) {
                    *d = quant::f32_to_f16(x);
                }
            }
        }
    }

    /// Elements `at .. at + buf.len()` as `f32`: borrowed from an `f32` cache, widened into `buf`
    /// from an `f16` one.
    fn read<'a>(&'a self, at: usize, buf: &'a mut [f32]) -> &'a [f32] {
        match self {
            KvStore::F32(v) => &v[at..at + buf.len()],
            KvStore::F16(v) => {
                let len = buf.len();
                for (d, &h) in buf.iter_mut().zip(&v[at..at + len]) {
                    *d = widen_f16(h);
                }
                buf
            }
        }
    }
}

/// `quant::f16_to_f32` without branches, for the hot attention loop (so it vectorises): finite
/// values are the f16 bits moved into an f32 whose exponent is then rescaled by an exact
/// multiplication by 2^112 (subnormal f16s included); Inf and NaN keep the all-ones exponent.
/// Equal bit for bit to `f16_to_f32` on all 65536 inputs (unit test).
#[inline]
fn widen_f16(h: u16) -> f32 {
    const TWO_POW_112: f32 = f32::from_bits((127 + 112) << 23);
    let exp_mant = (h & 0x7fff) as u32;
    let sign = ((h & 0x8000) as u32) << 16;
    let finite = (f32::from_bits(exp_mant << 13) * TWO_POW_112).to_bits();
    let magnitude = if exp_mant >= 0x7c00 { (exp_mant << 13) | 0x7f80_0000 } else { finite };
    f32::from_bits(magnitude | sign)
}

/// KV cache: per layer, a ring of positions of `kv_dim` keys and values. A global layer's ring
/// holds the whole context; a local (sliding-window) layer's only `sliding_window + MAX_BATCH`
/// positions, enough for every query of a prefill batch to find its whole window (position `t` is
/// in slot `t mod slots`, overwritten only by `t + slots`, past the batch's last position).
struct KvCache {
    keys: KvStore,
    values: KvStore,
    dtype: KvDtype,
    /// Per layer: where its ring starts (in elements) and how many positions it holds.
    layers: Vec<LayerRing>,
    /// Number of positions filled.
    len: usize,
}

/// Positions layer `layer`'s ring holds with a context of `context_len`: all of them for a global
/// layer, the window plus one prefill batch for a sliding-window one (`abi/FORMAT.md` "Session
/// snapshots" states the same rule for the snapshot's KV section).
pub fn ring_slots(p: &Hyperparams, layer: usize, context_len: usize) -> usize {
    if p.is_local_layer(layer) {
        context_len.min(p.sliding_window as usize + MAX_BATCH)
    } else {
        context_len
    }
}

/// Bytes of a session snapshot's KV section: per layer, keys and values of the last
/// `min(n_past, ring_slots)` positions, `elem` bytes per element. `None` on overflow.
pub fn kv_snapshot_len(p: &Hyperparams, context_len: usize, n_past: usize, elem: usize) -> Option<usize> {
    let mut total = 0usize;
    for l in 0..p.n_layers as usize {
        let n = n_past.min(ring_slots(p, l, context_len));
        total = total.checked_add(n.checked_mul(p.kv_dim())?.checked_mul(2 * elem)?)?;
    }
    Some(total)
}

#[derive(Clone, Copy, Debug)]
struct LayerRing {
    base: usize,
    slots: usize,
}

/// Activation buffers, allocated once per model. Shapes with `B` = `MAX_BATCH` rows.
struct Scratch {
    x: Vec<f32>,   // [B, dim] residual stream
    xb: Vec<f32>,  // [B, max(dim, q_dim)] normed input (stride dim) / attention output (stride q_dim)
    xb2: Vec<f32>, // [B, dim] projection output
    q: Vec<f32>,   // [B, q_dim]
    k: Vec<f32>,   // [B, kv_dim]
    v: Vec<f32>,   // [B, kv_dim]
    hb: Vec<f32>,  // [B, ffn_dim] gate
    hb2: Vec<f32>, // [B, ffn_dim] up
    // Per attention chunk (one per thread): [n_heads / n_kv_heads, context_len] scores of one KV
    // head's query heads, then [head_dim] for one key or value widened from an f16 cache.
    att_slots: pool::ScratchSlots,
    rope: Vec<f32>,       // [B, head_dim] cos, sin interleaved per batch position
    rope_local: Vec<f32>, // [B, head_dim] the same for the local layers' base (empty without a window)
    logits: Vec<f32>,     // [vocab_size]
    xq: QuantizedInputs,  // [B, width] the current matmul input, quantized for each weight dtype's kernel
}

/// Directory indices of one transformer block's weights, as the forward pass uses them.
#[derive(Clone, Copy, Debug)]
struct LayerWeights {
    attn_norm: usize,
    attn_q: usize,
    attn_k: usize,
    attn_v: usize,
    attn_output: usize,
    ffn_norm: usize,
    ffn_gate: usize,
    ffn_up: usize,
    ffn_down: usize,
    /// qwen2's Q/K/V biases, all three or none.
    qkv_bias: Option<[usize; 3]>,
    /// qwen3's and gemma3's per-head Q and K norm weights, both or none.
    qk_norm: Option<[usize; 2]>,
    /// gemma3's norms of the attention output and of the FFN output, both or none.
    post_norms: Option<[usize; 2]>,
}

/// Directory indices of every weight the forward pass reads, resolved once from the package's
/// role tables.
struct Weights {
    token_embd: usize,
    output_norm: usize,
    /// The separate LM head, or the token embedding when tied.
    lm_head: usize,
    layers: Vec<LayerWeights>,
}

impl Weights {
    fn resolve(package: &Package) -> Result<Weights> {
        // The parser has checked every role the architecture table requires; a missing one here
        // means the table and this resolution disagree.
        let m = &package.model_tensors;
        let (Some(token_embd), Some(output_norm)) = (m.get(Role::TokenEmbd), m.get(Role::OutputNorm)) else {
            return Err(missing_role(None));
        };
        let mut layers = Vec::new();
        layers.try_reserve_exact(package.layers.len()).map_err(|_| oom("weights", package.layers.len() * core::mem::size_of::<LayerWeights>()))?;
        for (l, by) in package.layers.iter().enumerate() {
            let r = |role| by.get(role);
            let layer = (|| {
                Some(LayerWeights {
                    attn_norm: r(Role::AttnNorm)?,
                    attn_q: r(Role::AttnQ)?,
                    attn_k: r(Role::AttnK)?,
                    attn_v: r(Role::AttnV)?,
                    attn_output: r(Role::AttnOutput)?,
                    ffn_norm: r(Role::FfnNorm)?,
                    ffn_gate: r(Role::FfnGate)?,
                    ffn_up: r(Role::FfnUp)?,
                    ffn_down: r(Role::FfnDown)?,
                    qkv_bias: match (r(Role::AttnQBias), r(Role::AttnKBias), r(Role::AttnVBias)) {
                        (Some(q), Some(k), Some(v)) => Some([q, k, v]),
                        (None, None, None) => None,
                        _ => return None,
                    },
                    qk_norm: both(r(Role::AttnQNorm), r(Role::AttnKNorm))?,
                    post_norms: both(r(Role::PostAttnNorm), r(Role::PostFfnNorm))?,
                })
            })();
            layers.push(layer.ok_or_else(|| missing_role(Some(l)))?);
        }
        Ok(Weights { token_embd, output_norm, lm_head: m.get(Role::Output).unwrap_or(token_embd), layers })
    }
}

/// `Some(Some([a, b]))` for a pair, `Some(None)` for neither, `None` for one without the other.
fn both(a: Option<usize>, b: Option<usize>) -> Option<Option<[usize; 2]>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(Some([a, b])),
        (None, None) => Some(None),
        _ => None,
    }
}

#[cold]
fn missing_role(layer: Option<usize>) -> Error {
    let field = match layer {
        Some(l) => field!("tensor[blk.{}]", l),
        None => field!("tensor[model]"),
    };
    Error::new(Status::MissingTensor, field, 0, "the forward pass needs every tensor role of the architecture table")
}

pub struct Model {
    bytes: AlignedBytes,
    package: Package,
    weights: Weights,
    context_len: usize,
    kv: KvCache,
    scratch: Scratch,
    scratch_bytes: usize,
}

fn try_vec(len: usize) -> core::result::Result<Vec<f32>, TryReserveError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)?;
    v.resize(len, 0.0);
    Ok(v)
}

impl Model {
    /// Takes ownership of validated package bytes and allocates the KV cache and scratch.
    /// `context_len` 0 means `min(max_context, DEFAULT_CONTEXT)`. On failure the bytes are handed
    /// back untouched.
    pub fn new(bytes: AlignedBytes, package: Package, context_len: u32, kv_dtype: KvDtype) -> core::result::Result<Model, (Error, AlignedBytes)> {
        let state = Weights::resolve(&package).and_then(|w| Ok((w, Self::alloc_state(&package, context_len, kv_dtype)?)));
        match state {
            Ok((weights, (context_len, kv, scratch, scratch_bytes))) => Ok(Model { bytes, package, weights, context_len, kv, scratch, scratch_bytes }),
            Err(e) => Err((e, bytes)),
        }
    }

    fn alloc_state(package: &Package, context_len: u32, kv_dtype: KvDtype) -> Result<(usize, KvCache, Scratch, usize)> {
        let p = package.hparams;
        if context_len > p.max_context {
            return Err(Error::new(Status::InvalidArgument, "context_len", context_len as u64, "must not exceed the package's max_context"));
        }
        let context_len = if context_len == 0 { p.max_context.min(DEFAULT_CONTEXT) } else { context_len } as usize;
        let (dim, q_dim, kv_dim, ffn, vocab) = (p.dim as usize, p.q_dim(), p.kv_dim(), p.ffn_dim as usize, p.vocab_size as usize);
        let mut layers = Vec::new();
        layers.try_reserve_exact(p.n_layers as usize).map_err(|_| oom("kv_cache.layers", p.n_layers as usize * core::mem::size_of::<LayerRing>()))?;
        let mut kv_len = Some(0usize);
        for l in 0..p.n_layers as usize {
            let slots = ring_slots(&p, l, context_len);
            let base = kv_len.unwrap_or(0);
            layers.push(LayerRing { base, slots });
            kv_len = kv_len.and_then(|n| n.checked_add(slots.checked_mul(kv_dim)?));
        }
        let kv_len = kv_len.ok_or_else(|| oom("kv_cache", usize::MAX))?;
        let elem = if kv_dtype == KvDtype::F16 { 2 } else { 4 };
        let kv = KvCache {
            keys: KvStore::new(kv_dtype, kv_len).map_err(|_| oom("kv_cache.keys", kv_len.saturating_mul(elem)))?,
            values: KvStore::new(kv_dtype, kv_len).map_err(|_| oom("kv_cache.values", kv_len.saturating_mul(elem)))?,
            dtype: kv_dtype,
            layers,
            len: 0,
        };
        let b = MAX_BATCH;
        let alloc = |len: usize| try_vec(len).map_err(|_| oom("scratch", len * 4));
        let widest = dim.max(ffn).max(q_dim);
        // Sized now, for the widest matmul input of a full batch, so quantizing in `forward` never
        // allocates and the scratch figure is final.
        let matrices = package.tensors.iter().filter(|t| t.rank == 2).map(|t| t.dtype);
        let xq = QuantizedInputs::try_for(matrices, b * widest).map_err(|_| oom("scratch.xq", b * widest * 7))?;
        let quant_bytes = xq.capacity_bytes();
        let scratch = Scratch {
            x: alloc(b * dim)?,
            xb: alloc(b * dim.max(q_dim))?,
            xb2: alloc(b * dim)?,
            q: alloc(b * q_dim)?,
            k: alloc(b * kv_dim)?,
            v: alloc(b * kv_dim)?,
            hb: alloc(b * ffn)?,
            hb2: alloc(b * ffn)?,
            att_slots: pool::ScratchSlots::try_new(1, att_slot_len(&p, context_len)).map_err(|_| oom("scratch.att", att_slot_len(&p, context_len) * 4))?,
            rope: alloc(b * p.head_dim())?,
            rope_local: alloc(if p.sliding_window > 0 { b * p.head_dim() } else { 0 })?,
            logits: alloc(vocab)?,
            xq,
        };
        let floats = scratch.x.len()
            + scratch.xb.len()
            + scratch.xb2.len()
            + scratch.q.len()
            + scratch.k.len()
            + scratch.v.len()
            + scratch.hb.len()
            + scratch.hb2.len()
            + scratch.att_slots.bytes() / 4
            + scratch.rope.len()
            + scratch.rope_local.len()
            + scratch.logits.len();
        Ok((context_len, kv, scratch, floats * 4 + quant_bytes))
    }

    pub fn package(&self) -> &Package {
        &self.package
    }
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }
    /// Mutable package bytes, for adapters that rewrite weights in place.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes.as_mut_slice()
    }
    pub fn context_len(&self) -> usize {
        self.context_len
    }
    pub fn kv_len(&self) -> usize {
        self.kv.len
    }
    pub fn kv_cache_bytes(&self) -> usize {
        self.kv.keys.bytes() + self.kv.values.bytes()
    }
    pub fn kv_dtype(&self) -> KvDtype {
        self.kv.dtype
    }
    /// Activation buffers in bytes, attention slots for every thread that has run included.
    pub fn scratch_bytes(&self) -> usize {
        self.scratch_bytes
    }
    pub fn package_bytes(&self) -> usize {
        self.bytes.len()
    }
    /// Appends the session snapshot's KV section for the positions cached now (see
    /// [`kv_snapshot_len`]): per layer, its keys then its values of the last `min(kv_len, slots)`
    /// positions, oldest first, each element little-endian in the cache's dtype. `out` must have
    /// room for it (the caller reserves, so this cannot fail).
    pub fn write_kv_snapshot(&self, out: &mut alloc::vec::Vec<u8>) {
        let kv_dim = self.package.hparams.kv_dim();
        let len = self.kv.len;
        for ring in &self.kv.layers {
            let first = len - len.min(ring.slots);
            for store in [&self.kv.keys, &self.kv.values] {
                for t in first..len {
                    let at = ring.base + (t % ring.slots) * kv_dim;
                    match store {
                        KvStore::F32(v) => v[at..at + kv_dim].iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                        KvStore::F16(v) => v[at..at + kv_dim].iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
                    }
                }
            }
        }
    }

    /// Replaces the cache with a snapshot's KV section (checked by the caller to be
    /// `kv_snapshot_len(snapshot_context, n_past)` bytes of this cache's dtype, `n_past` at most
    /// this model's context) and the last logits with `logits` (`vocab_size` f32 LE). Positions a
    /// sliding-window ring of this context no longer needs are skipped. Cannot fail.
    pub fn restore_kv(&mut self, n_past: usize, snapshot_context: usize, kv: &[u8], logits: &[u8]) {
        let p = self.package.hparams;
        let kv_dim = p.kv_dim();
        let elem = if self.kv.dtype == KvDtype::F16 { 2 } else { 4 };
        let mut at_byte = 0;
        for (l, ring) in self.kv.layers.iter().enumerate() {
            let saved = n_past.min(ring_slots(&p, l, snapshot_context));
            let first_saved = n_past - saved;
            for store in [&mut self.kv.keys, &mut self.kv.values] {
                for t in first_saved..n_past {
                    let src = &kv[at_byte..at_byte + kv_dim * elem];
                    at_byte += kv_dim * elem;
                    if t + ring.slots < n_past {
                        continue;
                    }
                    let at = ring.base + (t % ring.slots) * kv_dim;
                    match store {
                        KvStore::F32(v) => {
                            for (d, b) in v[at..at + kv_dim].iter_mut().zip(src.chunks_exact(4)) {
                                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                            }
                        }
                        KvStore::F16(v) => {
                            for (d, b) in v[at..at + kv_dim].iter_mut().zip(src.chunks_exact(2)) {
                                *d = u16::from_le_bytes([b[0], b[1]]);
                            }
                        }
                    }
                }
            }
        }
        self.kv.len = n_past;
        for (d, b) in self.scratch.logits.iter_mut().zip(logits.chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }

    /// Forget every cached position (a new conversation).
    pub fn reset(&mut self) {
        self.kv.len = 0;
    }

    /// Logits of the last token processed by [`Model::forward`].
    pub fn logits(&self) -> &[f32] {
        &self.scratch.logits
    }

    /// Runs `tokens` at the next positions of the KV cache and leaves the logits of the last one
    /// in [`Model::logits`]. Fails without touching the cache if they do not fit or an id is out of
    /// range.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<()> {
        let vocab = self.package.hparams.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&t| t >= vocab) {
            return Err(Error::new(Status::InvalidArgument, "token", bad as u64, "token id must be below vocab_size"));
        }
        if tokens.is_empty() {
            return Ok(());
        }
        if self.kv.len + tokens.len() > self.context_len {
            return Err(Error::new(Status::ContextFull, "kv_len", (self.kv.len + tokens.len()) as u64, "tokens do not fit in the context"));
        }
        let n_chunks = tokens.len().div_ceil(MAX_BATCH);
        for (i, chunk) in tokens.chunks(MAX_BATCH).enumerate() {
            self.forward_batch(chunk, i + 1 == n_chunks)?;
        }
        Ok(())
    }

    /// One pass over the weights for up to `MAX_BATCH` tokens at positions `kv.len ..`. The
    /// activation quantizer was sized at load for a full batch, so it does not allocate here; if
    /// it ever had to and could not, the error comes back before `kv.len` moves.
    fn forward_batch(&mut self, tokens: &[u32], want_logits: bool) -> Result<()> {
        let threads = pool::threads() as usize;
        if self.scratch.att_slots.n_slots() < threads {
            // A slot per thread lets them all run attention at once; if memory refuses, the
            // threads take turns on the slots there are, with the same bits.
            let before = self.scratch.att_slots.bytes();
            if self.scratch.att_slots.try_grow(threads).is_ok() {
                self.scratch_bytes += self.scratch.att_slots.bytes() - before;
            }
        }
        let p = self.package.hparams;
        let n = tokens.len();
        let (dim, q_dim, kv_dim, ffn) = (p.dim as usize, p.q_dim(), p.kv_dim(), p.ffn_dim as usize);
        let head_dim = p.head_dim();
        let bytes = self.bytes.as_slice();
        let pkg = &self.package;
        let w = &self.weights;
        let s = &mut self.scratch;
        let pos0 = self.kv.len;

        for i in 0..n {
            rope_table(&mut s.rope[i * head_dim..(i + 1) * head_dim], pos0 + i, head_dim, p.rope_theta);
            if p.sliding_window > 0 {
                rope_table(&mut s.rope_local[i * head_dim..(i + 1) * head_dim], pos0 + i, head_dim, p.rope_theta_local);
            }
        }
        let embd = &pkg.tensors[w.token_embd];
        for (t, &token) in tokens.iter().enumerate() {
            embedding_row(bytes, embd, token as usize, &mut s.x[t * dim..(t + 1) * dim]);
        }
        if p.arch.scales_embeddings() {
            // llama.cpp's gemma3 graph: `ggml_scale(inpL, sqrtf(n_embd))`, one f32 multiply.
            let scale = libm::sqrtf(dim as f32);
            for x in &mut s.x[..n * dim] {
                *x *= scale;
            }
        }
        let activation = p.arch.ffn_activation();

        for (l, layer) in w.layers.iter().enumerate() {
            let t = |i: usize| &pkg.tensors[i];
            let local = p.is_local_layer(l);
            // Attention.
            rmsnorm_rows(&mut s.xb[..n * dim], &s.x[..n * dim], weight_f32(bytes, t(layer.attn_norm)), dim, p.norm_eps);
            s.xq.new_input();
            matmul(bytes, t(layer.attn_q), &s.xb, &mut s.xq, n, &mut s.q)?;
            matmul(bytes, t(layer.attn_k), &s.xb, &mut s.xq, n, &mut s.k)?;
            matmul(bytes, t(layer.attn_v), &s.xb, &mut s.xq, n, &mut s.v)?;
            if let Some([bq, bk, bv]) = layer.qkv_bias {
                add_bias_rows(&mut s.q[..n * q_dim], weight_f32(bytes, t(bq)));
                add_bias_rows(&mut s.k[..n * kv_dim], weight_f32(bytes, t(bk)));
                add_bias_rows(&mut s.v[..n * kv_dim], weight_f32(bytes, t(bv)));
            }
            if let Some([q_norm, k_norm]) = layer.qk_norm {
                // Every head of every token is a row of `head_dim`, normed with the shared weight.
                rmsnorm_rows_in_place(&mut s.q[..n * q_dim], weight_f32(bytes, t(q_norm)), head_dim, p.norm_eps);
                rmsnorm_rows_in_place(&mut s.k[..n * kv_dim], weight_f32(bytes, t(k_norm)), head_dim, p.norm_eps);
            }
            let rope_of_layer = if local { &s.rope_local } else { &s.rope };
            let ring = self.kv.layers[l];
            for i in 0..n {
                let pos = pos0 + i;
                let rope = &rope_of_layer[i * head_dim..(i + 1) * head_dim];
                apply_rope(p.rope, &mut s.q[i * q_dim..(i + 1) * q_dim], rope);
                apply_rope(p.rope, &mut s.k[i * kv_dim..(i + 1) * kv_dim], rope);
                let at = ring.base + (pos % ring.slots) * kv_dim;
                self.kv.keys.write(at, &s.k[i * kv_dim..(i + 1) * kv_dim]);
                self.kv.values.write(at, &s.v[i * kv_dim..(i + 1) * kv_dim]);
            }
            let cache = LayerCache { keys: &self.kv.keys, values: &self.kv.values, ring };
            // One unit per (token, KV head): its query heads' outputs are consecutive in `xb`.
            let n_kv_heads = p.n_kv_heads as usize;
            let (q, slots) = (&s.q, &s.att_slots);
            let group_len = q_dim / n_kv_heads;
            pool::for_each_unit_block(&mut s.xb[..n * q_dim], group_len, 1, &|units, out| {
                slots.with_slot(|scratch| {
                    for (unit, out) in units.zip(out.chunks_exact_mut(group_len)) {
                        let (i, g) = (unit / n_kv_heads, unit % n_kv_heads);
                        let n_pos = pos0 + i + 1;
                        let first = if local { n_pos.saturating_sub(p.sliding_window as usize) } else { 0 };
                        attention(&q[i * q_dim..(i + 1) * q_dim], &cache, first..n_pos, g, &p, scratch, out);
                    }
                })
            });
            s.xq.new_input();
            matmul(bytes, t(layer.attn_output), &s.xb, &mut s.xq, n, &mut s.xb2)?;
            if let Some([post_attn, _]) = layer.post_norms {
                rmsnorm_rows_in_place(&mut s.xb2[..n * dim], weight_f32(bytes, t(post_attn)), dim, p.norm_eps);
            }
            for (x, d) in s.x[..n * dim].iter_mut().zip(&s.xb2[..n * dim]) {
                *x += *d;
            }

            // Gated feed-forward.
            rmsnorm_rows(&mut s.xb[..n * dim], &s.x[..n * dim], weight_f32(bytes, t(layer.ffn_norm)), dim, p.norm_eps);
            s.xq.new_input();
            matmul(bytes, t(layer.ffn_gate), &s.xb, &mut s.xq, n, &mut s.hb)?;
            matmul(bytes, t(layer.ffn_up), &s.xb, &mut s.xq, n, &mut s.hb2)?;
            let gate = &mut s.hb[..n * ffn];
            match activation {
                FfnActivation::Silu => gate.iter_mut().for_each(|g| *g = silu(*g)),
                FfnActivation::GeluTanh => gate.iter_mut().for_each(|g| *g = gelu_tanh(*g)),
            }
            for (g, u) in gate.iter_mut().zip(&s.hb2[..n * ffn]) {
                *g *= *u;
            }
            s.xq.new_input();
            matmul(bytes, t(layer.ffn_down), &s.hb, &mut s.xq, n, &mut s.xb2)?;
            if let Some([_, post_ffn]) = layer.post_norms {
                rmsnorm_rows_in_place(&mut s.xb2[..n * dim], weight_f32(bytes, t(post_ffn)), dim, p.norm_eps);
            }
            for (x, d) in s.x[..n * dim].iter_mut().zip(&s.xb2[..n * dim]) {
                *x += *d;
            }
        }
        self.kv.len += n;

        if want_logits {
            let last = &s.x[(n - 1) * dim..n * dim];
            rmsnorm_rows(&mut s.xb[..dim], last, weight_f32(bytes, &pkg.tensors[w.output_norm]), dim, p.norm_eps);
            s.xq.new_input();
            matmul(bytes, &pkg.tensors[w.lm_head], &s.xb, &mut s.xq, 1, &mut s.logits)?;
        }
        Ok(())
    }
}

/// `rows[t] += bias` for each row `t` (f32 addition, one rounding), `bias` f32 bytes.
fn add_bias_rows(rows: &mut [f32], bias: &[u8]) {
    let width = bias.len() / 4;
    for row in rows.chunks_exact_mut(width) {
        for (x, b) in row.iter_mut().zip(bias.chunks_exact(4)) {
            *x += f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
}

/// A norm or bias weight as f32 values. The parser guarantees f32 dtype and finiteness.
fn weight_f32<'a>(bytes: &'a [u8], t: &TensorEntry) -> &'a [u8] {
    &bytes[t.range.clone()]
}

fn embedding_row(bytes: &[u8], embd: &TensorEntry, token: usize, out: &mut [f32]) {
    let row_bytes = embd.dtype.row_bytes(embd.row_len).unwrap_or(0);
    let start = embd.range.start + token * row_bytes;
    quant::dequantize_row(embd.dtype, &bytes[start..start + row_bytes], out);
}

/// `out[t] = x[t] / sqrt(mean(x[t]²) + eps) · w` for each row `t`; sums in f64 so the result does
/// not depend on the row length's rounding error.
fn rmsnorm_rows(out: &mut [f32], x: &[f32], weight: &[u8], dim: usize, eps: f32) {
    for (o, xr) in out.chunks_exact_mut(dim).zip(x.chunks_exact(dim)) {
        let inv = rms_inverse(xr, eps);
        for ((o, &v), w) in o.iter_mut().zip(xr).zip(weight.chunks_exact(4)) {
            *o = v * inv * f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
    }
}

/// [`rmsnorm_rows`] with `out = x`: the same arithmetic, each row overwritten.
fn rmsnorm_rows_in_place(rows: &mut [f32], weight: &[u8], width: usize, eps: f32) {
    for row in rows.chunks_exact_mut(width) {
        let inv = rms_inverse(row, eps);
        for (v, w) in row.iter_mut().zip(weight.chunks_exact(4)) {
            *v = *v * inv * f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
    }
}

/// `1 / sqrt(mean(x²) + eps)`, summed and divided in f64, rounded to f32 once.
fn rms_inverse(x: &[f32], eps: f32) -> f32 {
    let ss: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
    (1.0 / libm::sqrt(ss / x.len() as f64 + eps as f64)) as f32
}

/// `out[t] = W · x[t]` for the first `n` rows of `x`, quantizing `x` for `W`'s kernel unless `xq`
/// already holds it in that scheme (callers mark a new input with `new_input`). Quantizing cannot
/// allocate after load (`QuantizedInputs::try_for` sized it); the error is for completeness.
fn matmul(bytes: &[u8], w: &TensorEntry, x: &[f32], xq: &mut QuantizedInputs, n: usize, out: &mut [f32]) -> Result<()> {
    let x = &x[..n * w.row_len];
    let xq = xq.for_dtype(w.dtype, x).map_err(|_| oom("scratch.xq", x.len() * 7))?;
    quant::matmul(w.dtype, &bytes[w.range.clone()], w.rows, w.row_len, n, x, xq, &mut out[..n * w.rows]);
    Ok(())
}

/// cos/sin for one position, interleaved: `table[2j] = cos(pos·θ_j)`, `table[2j+1] = sin(pos·θ_j)`
/// with `θ_j = rope_theta^(−2j/head_dim)`. Computed in f64 and rounded once, like the reference.
fn rope_table(table: &mut [f32], pos: usize, head_dim: usize, rope_theta: f32) {
    for j in 0..head_dim / 2 {
        let freq = libm::pow(rope_theta as f64, -((2 * j) as f64) / head_dim as f64);
        let angle = pos as f64 * freq;
        table[2 * j] = libm::cos(angle) as f32;
        table[2 * j + 1] = libm::sin(angle) as f32;
    }
}

/// Rotates pair `j` of every head in `v` by the angle in `table[2j..2j+2]` (cos, sin): the pair is
/// `(v[2j], v[2j+1])` for [`RopeKind::Interleaved`] (GGUF llama / llama2.c order) and
/// `(v[j], v[j + head_dim/2])` for [`RopeKind::Neox`] (llama.cpp `rope_neox`). Either way
/// `x0' = x0·cos − x1·sin`, `x1' = x0·sin + x1·cos`.
fn apply_rope(kind: RopeKind, v: &mut [f32], table: &[f32]) {
    let head_dim = table.len();
    let half = head_dim / 2;
    for head in v.chunks_exact_mut(head_dim) {
        for (j, cs) in table.chunks_exact(2).enumerate() {
            let (a, b) = match kind {
                RopeKind::Interleaved => (2 * j, 2 * j + 1),
                RopeKind::Neox => (j, j + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * cs[0] - x1 * cs[1];
            head[b] = x0 * cs[1] + x1 * cs[0];
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Four partial sums keep the loop vectorisable while fixing the summation order.
    let mut acc = [0.0f32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..4 {
            acc[k] += x[k] * y[k];
        }
    }
    for (k, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        acc[k] += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// One layer's ring of the KV cache: position `t`, KV head `g` starts at
/// `base + (t mod slots) · kv_dim + g · head_dim`.
struct LayerCache<'a> {
    keys: &'a KvStore,
    values: &'a KvStore,
    ring: LayerRing,
}

impl LayerCache<'_> {
    fn at(&self, t: usize, kv_dim: usize, offset: usize) -> usize {
        self.ring.base + (t % self.ring.slots) * kv_dim + offset
    }
}

/// Causal grouped-query attention for one query token and one KV head `g` over cached positions
/// `positions` of one layer (`0..=p` for a query at position `p`; a local layer's window is a
/// suffix of that). `q`: [n_heads·head_dim], the token's queries; `out`: [group·head_dim], the
/// outputs of the query heads sharing KV head `g`; `scratch`: an attention slot
/// ([`att_slot_len`]).
///
/// Each cached key and value is read (and, from an f16 cache, widened) once for all the query
/// heads sharing it. Per query head the arithmetic is the plain order: scores
/// `dot(q_h, k_t) · scale` for `t = 0, 1, …`, softmax, then `out_h += a_t · v_t` for `t = 0, 1, …`.
/// KV heads are independent, so they may run on different threads with the same bits.
fn attention(q: &[f32], cache: &LayerCache<'_>, positions: core::ops::Range<usize>, g: usize, p: &Hyperparams, scratch: &mut [f32], out: &mut [f32]) {
    let head_dim = p.head_dim();
    let kv_dim = p.kv_dim();
    let group = (p.n_heads / p.n_kv_heads) as usize;
    let scale = 1.0 / libm::sqrtf(head_dim as f32);
    let (att, kv_row) = scratch.split_at_mut(scratch.len() - head_dim);
    let stride = att.len() / group;
    let n_pos = positions.len();
    let heads = g * group..(g + 1) * group;
    for (i, t) in positions.clone().enumerate() {
        let k = cache.keys.read(cache.at(t, kv_dim, g * head_dim), kv_row);
        for (j, h) in heads.clone().enumerate() {
            att[j * stride + i] = dot(&q[h * head_dim..(h + 1) * head_dim], k) * scale;
        }
    }
    for j in 0..group {
        softmax(&mut att[j * stride..j * stride + n_pos]);
    }
    out.fill(0.0);
    for (i, t) in positions.enumerate() {
        let v = cache.values.read(cache.at(t, kv_dim, g * head_dim), kv_row);
        for (j, o) in out.chunks_exact_mut(head_dim).enumerate() {
            let a = att[j * stride + i];
            for (o, &vv) in o.iter_mut().zip(v) {
                *o += a * vv;
            }
        }
    }
}

/// One attention slot: scores of a KV head's query heads over the whole context, and one widened
/// key or value row.
fn att_slot_len(p: &Hyperparams, context_len: usize) -> usize {
    (p.n_heads / p.n_kv_heads) as usize * context_len + p.head_dim()
}

fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in x.iter_mut() {
        *v = libm::expf(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + libm::expf(-x))
}

/// GELU's tanh approximation in f32, written as ggml's `gelu`:
/// `0.5 · x · (1 + tanh(√(2/π) · x · (1 + 0.044715 · x²)))`, computed, so every host gives the
/// same bits. ggml's CPU GeGLU (llama-cpp-python 0.3.36, `GGML_GELU_FP16`) reads it from a table
/// instead: 0 for x ≤ −10, x for x ≥ 10, else `f16(gelu(f16(x)))` (checked bit for bit against the
/// library on 2^20 inputs). Emulating that moved Gemma 3 270M's argmax agreement with llama.cpp
/// from 895 to 896 of 943 — within the noise of any rounding change (README, Gemma 3) — so we
/// keep the plain formula.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + libm::tanhf(SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widen_f16_equals_the_reference_conversion_on_every_pattern() {
        for h in 0..=u16::MAX {
            assert_eq!(widen_f16(h).to_bits(), quant::f16_to_f32(h).to_bits(), "f16 bits {h:#06x}");
        }
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        let mut table = [0.0f32; 4];
        rope_table(&mut table, 0, 4, 10000.0);
        assert_eq!(table, [1.0, 0.0, 1.0, 0.0]);
        rope_table(&mut table, 1, 4, 10000.0);
        let mut v = [1.0f32, 0.0, 1.0, 0.0];
        apply_rope(RopeKind::Interleaved, &mut v, &table);
        assert!((v[0] - libm::cosf(1.0)).abs() < 1e-6 && (v[1] - libm::sinf(1.0)).abs() < 1e-6);
        // Second pair: θ = 10000^(-2/4) = 0.01.
        assert!((v[3] - libm::sinf(0.01)).abs() < 1e-6);
    }

    #[test]
    fn neox_rope_rotates_the_two_halves_of_a_head() {
        let mut table = [0.0f32; 4];
        rope_table(&mut table, 1, 4, 10000.0);
        // Two heads of 4: pairs (0, 2) and (1, 3) in each.
        let mut v = [1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0];
        apply_rope(RopeKind::Neox, &mut v, &table);
        let (c0, s0, c1, s1) = (table[0], table[1], table[2], table[3]);
        assert_eq!(v[..4], [c0, c1, s0, s1]);
        assert_eq!(v[4..], [0.0 * c0 - 2.0 * s0, 0.0, 0.0 * s0 + 2.0 * c0, 0.0]);
        // Interleaved on the same input pairs (0, 1) and (2, 3) instead.
        let mut w = [1.0f32, 1.0, 0.0, 0.0];
        apply_rope(RopeKind::Interleaved, &mut w, &table);
        assert_eq!(w, [c0 - s0, s0 + c0, 0.0, 0.0]);
    }

    #[test]
    fn biases_are_added_to_every_row() {
        let bias: Vec<u8> = [0.5f32, -1.0].iter().flat_map(|b| b.to_le_bytes()).collect();
        let mut rows = [1.0f32, 2.0, 3.0, 4.0];
        add_bias_rows(&mut rows, &bias);
        assert_eq!(rows, [1.5, 1.0, 3.5, 3.0]);
    }

    #[test]
    fn softmax_sums_to_one_and_is_shift_invariant() {
        let mut a = [1.0f32, 2.0, 3.0];
        let mut b = [101.0f32, 102.0, 103.0];
        softmax(&mut a);
        softmax(&mut b);
        assert!((a.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6);
        }
    }

    #[test]
    fn dot_handles_tails() {
        for n in [0usize, 1, 3, 4, 5, 17] {
            let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let expected: f32 = a.iter().map(|x| x * x).sum();
            assert_eq!(dot(&a, &a), expected);
        }
    }
}
