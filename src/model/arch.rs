//! Model families as data: each architecture's hyperparameters and tensor table — names, shapes as
//! functions of the hyperparameters, storage, and which tensors are optional. The package parser
//! (`format::parse`: the required set and its shape and dtype checks) and the harness's package
//! writer (canonical names and order, expected dims) both read these tables; the math that uses the
//! tensors sits beside them in [`super`] (the forward pass).
//!
//! Adding an architecture: one [`Arch`] variant and its table here (new tensor kinds get a
//! [`Role`]; bias vectors such as qwen2's `blk.{i}.attn_q.bias` are rows with
//! `dims: &[Dim::QDim]`, `storage: Storage::F32`), and its math in the forward pass. The parser and
//! the writer follow the table.
//!
//! This module is a leaf: it imports nothing from `format` or the forward pass, so `format` can
//! depend on it without a cycle.

use core::fmt;

use crate::quant::DType;

/// Architecture hyperparameters (the SLM1 header fields of the same names). SLM1 v1 headers have
/// no architecture fields: a v1 package is [`Hyperparams::llama_v1`]'s llama with
/// `head_dim = dim / n_heads`, interleaved RoPE, RMSNorm and no biases.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyperparams {
    pub arch: Arch,
    pub vocab_size: u32,
    pub dim: u32,
    pub n_layers: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub ffn_dim: u32,
    pub max_context: u32,
    pub rope_theta: f32,
    pub norm_eps: f32,
    pub tied_embeddings: bool,
    /// Width of one attention head (SLM1 v2 `head_dim`; v1: `dim / n_heads`).
    pub head_dim: u32,
    pub rope: RopeKind,
    pub norm: NormKind,
    /// `blk.{i}.attn_q/k/v.bias` are present and added after the projections (v2 `ATTN_QKV_BIAS`).
    pub qkv_bias: bool,
    /// Local (sliding-window) attention span in tokens: a query at position `p` of a local layer
    /// sees the keys at `p − sliding_window + 1 ..= p`. 0: every layer is global (v2
    /// `sliding_window`; gemma3 only).
    pub sliding_window: u32,
    /// With a sliding window, layer `l` is global when `l % swa_pattern == swa_pattern − 1` and
    /// local otherwise (gemma3: 6, five local layers then one global). 0 without a window.
    pub swa_pattern: u32,
    /// RoPE base of the local layers (gemma3: 10 000); 0 without a window.
    pub rope_theta_local: f32,
}

impl Hyperparams {
    /// A v1 package's hyperparameters: llama with `head_dim = dim / n_heads` (0 when `n_heads` is
    /// 0; the parser rejects that before using it), interleaved RoPE, RMSNorm, no biases.
    #[allow(clippy::too_many_arguments)]
    pub fn llama_v1(
        vocab_size: u32,
        dim: u32,
        n_layers: u32,
        n_heads: u32,
        n_kv_heads: u32,
        ffn_dim: u32,
        max_context: u32,
        rope_theta: f32,
        norm_eps: f32,
        tied_embeddings: bool,
    ) -> Hyperparams {
        Hyperparams {
            arch: Arch::Llama,
            vocab_size,
            dim,
            n_layers,
            n_heads,
            n_kv_heads,
            ffn_dim,
            max_context,
            rope_theta,
            norm_eps,
            tied_embeddings,
            head_dim: dim.checked_div(n_heads).unwrap_or(0),
            rope: RopeKind::Interleaved,
            norm: NormKind::Rms,
            qkv_bias: false,
            sliding_window: 0,
            swa_pattern: 0,
            rope_theta_local: 0.0,
        }
    }

    /// Whether layer `layer` attends through the sliding window (a local layer).
    pub fn is_local_layer(&self, layer: usize) -> bool {
        self.sliding_window > 0 && self.swa_pattern > 0 && layer % self.swa_pattern as usize != self.swa_pattern as usize - 1
    }

    /// The RoPE base of layer `layer`.
    pub fn layer_rope_theta(&self, layer: usize) -> f32 {
        if self.is_local_layer(layer) {
            self.rope_theta_local
        } else {
            self.rope_theta
        }
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.head_dim as usize
    }
    /// Width of the Q projection: `n_heads · head_dim` (equal to `dim` in SLM1 v1).
    pub fn q_dim(&self) -> usize {
        self.n_heads as usize * self.head_dim()
    }
    /// Width of the K and V projections: `n_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads as usize * self.head_dim()
    }
}

/// The model families this runtime runs, with their SLM1 v2 `arch` codes. SLM1 v1 has no
/// architecture field: every v1 package is [`Arch::Llama`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Arch {
    Llama = 0,
    /// Llama plus biases on the Q, K and V projections, NEOX RoPE (llama.cpp `LLM_ARCH_QWEN2`).
    Qwen2 = 1,
    /// Gemma 3 (llama.cpp `LLM_ARCH_GEMMA3`): embeddings scaled by √dim, per-head RMSNorm of Q and
    /// K before RoPE, RMSNorm after attention and after the FFN as well as before, GeGLU (tanh
    /// GELU), sliding-window attention on most layers with its own RoPE base, NEOX RoPE.
    Gemma3 = 2,
    /// Qwen3 (llama.cpp `LLM_ARCH_QWEN3`): llama with per-head RMSNorm of Q and K before RoPE and
    /// no biases, NEOX RoPE.
    Qwen3 = 3,
}

/// The gated feed-forward's activation: `ffn_down · (act(ffn_gate · x) ⊙ ffn_up · x)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnActivation {
    /// SwiGLU: `silu(g) = g / (1 + e^−g)`.
    Silu,
    /// GeGLU with GELU's tanh approximation:
    /// `0.5 · g · (1 + tanh(√(2/π) · (g + 0.044715 · g³)))`.
    GeluTanh,
}

impl Arch {
    /// Every architecture, in code order.
    pub const ALL: [Arch; 4] = [Arch::Llama, Arch::Qwen2, Arch::Gemma3, Arch::Qwen3];

    /// The architecture with SLM1 v2 code `code`.
    pub fn from_code(code: u32) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.code() == code)
    }

    pub const fn code(self) -> u32 {
        self as u32
    }

    /// Lower-case name as in GGUF's `general.architecture`.
    pub const fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// The architecture with GGUF `general.architecture` name `name`.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The tensor table.
    pub const fn table(self) -> &'static ArchTable {
        match self {
            Arch::Llama => &LLAMA,
            Arch::Qwen2 => &QWEN2,
            Arch::Gemma3 => &GEMMA3,
            Arch::Qwen3 => &QWEN3,
        }
    }

    /// The RoPE pairing the family's GGUF tensors are laid out for (llama.cpp
    /// `llama_model_rope_type`: `LLM_ARCH_LLAMA` → `LLAMA_ROPE_TYPE_NORM`; `QWEN2`, `QWEN3` and
    /// `GEMMA3` → `LLAMA_ROPE_TYPE_NEOX`).
    pub const fn gguf_rope(self) -> RopeKind {
        match self {
            Arch::Llama => RopeKind::Interleaved,
            Arch::Qwen2 | Arch::Gemma3 | Arch::Qwen3 => RopeKind::Neox,
        }
    }

    /// The feed-forward's gate activation.
    pub const fn ffn_activation(self) -> FfnActivation {
        match self {
            Arch::Gemma3 => FfnActivation::GeluTanh,
            Arch::Llama | Arch::Qwen2 | Arch::Qwen3 => FfnActivation::Silu,
        }
    }

    /// Whether the token embeddings are multiplied by `√dim` (f32 `sqrtf(dim)`) before the first
    /// layer, as Gemma does.
    pub const fn scales_embeddings(self) -> bool {
        matches!(self, Arch::Gemma3)
    }

    /// Whether the architecture can have sliding-window layers (v2 `sliding_window` may be set).
    pub const fn has_sliding_window(self) -> bool {
        matches!(self, Arch::Gemma3)
    }

    /// Whether the tensor table has the optional Q/K/V bias rows ([`Presence::QkvBias`]).
    pub fn has_qkv_bias_rows(self) -> bool {
        self.table().per_layer.iter().any(|d| d.presence == Presence::QkvBias)
    }

    /// Every tensor a package of this architecture with hyperparameters `h` holds, in the canonical
    /// (writer's) order: the model-level tensors before the layers, each layer's tensors for
    /// `blk.0`, `blk.1`, …, then the model-level tensors after them. Tensors [`Presence`] rules out
    /// for `h` are skipped.
    pub fn tensors(self, h: &Hyperparams) -> impl Iterator<Item = TensorSlot> + '_ {
        let t = self.table();
        let model = |desc| TensorSlot { desc, layer: None };
        let before = t.before_layers.iter().map(model);
        let layers = (0..h.n_layers).flat_map(move |l| t.per_layer.iter().map(move |desc| TensorSlot { desc, layer: Some(l) }));
        let after = t.after_layers.iter().map(model);
        before.chain(layers).chain(after).filter(move |s| s.desc.presence.is_present(h))
    }

    /// The table row a full tensor name refers to, for any layer index and regardless of
    /// [`Presence`]: `blk.7.attn_q.weight` → the `attn_q.weight` row at layer 7. `None` for a name
    /// that is not of this architecture.
    pub fn slot_named(self, name: &str) -> Option<TensorSlot> {
        let t = self.table();
        if let Some(desc) = t.before_layers.iter().chain(t.after_layers).find(|d| d.name == name) {
            return Some(TensorSlot { desc, layer: None });
        }
        let (index, suffix) = name.strip_prefix("blk.")?.split_once('.')?;
        let layer = canonical_index(index)?;
        let desc = t.per_layer.iter().find(|d| d.name == suffix)?;
        Some(TensorSlot { desc, layer: Some(layer) })
    }
}

/// A layer index written canonically: decimal digits, no sign, no leading zero.
fn canonical_index(s: &str) -> Option<u32> {
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.bytes().try_fold(0u32, |n, b| if b.is_ascii_digit() { n.checked_mul(10)?.checked_add((b - b'0') as u32) } else { None })
}

/// Which elements RoPE rotates together (SLM1 v2 `rope_kind`). Both rotate pair `j` of a head by
/// the angle `pos · rope_theta^(−2j/head_dim)`, `j < head_dim / 2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RopeKind {
    /// Elements `2j` and `2j+1` (llama.cpp `LLAMA_ROPE_TYPE_NORM`, llama2.c).
    Interleaved = 0,
    /// Elements `j` and `j + head_dim/2`, "rotate half" (llama.cpp `LLAMA_ROPE_TYPE_NEOX`, Hugging
    /// Face `rotate_half`).
    Neox = 1,
}

impl RopeKind {
    pub fn from_code(code: u32) -> Option<RopeKind> {
        [RopeKind::Interleaved, RopeKind::Neox].into_iter().find(|k| *k as u32 == code)
    }
}

/// The normalisation before attention, before the FFN and at the end (SLM1 v2 `norm_kind`).
/// RMSNorm is the only kind: gemma3 GGUFs store Gemma's `(1 + w)` weights with the `1 +` folded
/// in, so they are RMSNorm weights too. The field leaves room for other kinds (LayerNorm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum NormKind {
    /// `x / sqrt(mean(x²) + eps) · w`.
    Rms = 0,
}

impl NormKind {
    pub fn from_code(code: u32) -> Option<NormKind> {
        (code == NormKind::Rms as u32).then_some(NormKind::Rms)
    }
}

/// One architecture's tensors, in canonical order within each group.
#[derive(Debug)]
pub struct ArchTable {
    /// Model-level tensors written before the layers (the token embedding).
    pub before_layers: &'static [TensorDesc],
    /// The tensors of one transformer block, named `blk.{i}.` + [`TensorDesc::name`].
    pub per_layer: &'static [TensorDesc],
    /// Model-level tensors written after the layers (final norm, LM head).
    pub after_layers: &'static [TensorDesc],
}

/// What a tensor is to the forward pass. The parser records each role's directory index
/// ([`TensorsByRole`] in `format::Package`), and the forward pass reads them by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    TokenEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    /// Per-head RMSNorm weight of the queries (`[head_dim]`, shared by every head).
    AttnQNorm,
    /// Per-head RMSNorm weight of the keys.
    AttnKNorm,
    /// RMSNorm of the attention output, before the residual add.
    PostAttnNorm,
    /// RMSNorm of the FFN output, before the residual add.
    PostFfnNorm,
}

impl Role {
    /// Number of roles (the size of a role-indexed table).
    pub const COUNT: usize = Role::PostFfnNorm as usize + 1;
}

/// A tensor dimension as a function of the hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// `vocab_size`
    Vocab,
    /// `dim` (the residual stream width)
    Embd,
    /// `n_heads · head_dim`
    QDim,
    /// `n_kv_heads · head_dim`
    KvDim,
    /// `ffn_dim`
    Ffn,
    /// `head_dim` (per-head norm weights)
    HeadDim,
}

impl Dim {
    pub fn of(self, h: &Hyperparams) -> usize {
        match self {
            Dim::Vocab => h.vocab_size as usize,
            Dim::Embd => h.dim as usize,
            Dim::QDim => h.q_dim(),
            Dim::KvDim => h.kv_dim(),
            Dim::Ffn => h.ffn_dim as usize,
            Dim::HeadDim => h.head_dim(),
        }
    }
}

/// How a tensor's elements are stored, relative to the package's `quant_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Always `f32` (norm weights, biases).
    F32,
    /// The package's `quant_mode`.
    Quant,
    /// The package's `quant_mode`, or `q8_0` when that is 4-bit: the embedding and LM head decide
    /// every logit, and the shipped SmolLM2 GGUF stores its embedding as Q8_0 — requantizing it to
    /// 4 bits loses the shipped quality (FORMAT.md, "Required tensors").
    Embedding,
}

impl Storage {
    /// Whether a tensor stored as `actual` is allowed in a package of `quant_mode` `quant`.
    pub fn allows(self, quant: DType, actual: DType) -> bool {
        match self {
            Storage::F32 => actual == DType::F32,
            Storage::Quant => actual == quant,
            Storage::Embedding => actual == quant || (is_4bit(quant) && actual == DType::Q8_0),
        }
    }

    /// SLM1 v2's rule: a tensor is stored as shipped, so a matrix may have any dtype; norms and
    /// biases stay f32.
    pub fn allows_as_shipped(self, actual: DType) -> bool {
        match self {
            Storage::F32 => actual == DType::F32,
            Storage::Quant | Storage::Embedding => true,
        }
    }

    /// The dtype the package writer stores the tensor in for a package of `quant`.
    pub fn writer_dtype(self, quant: DType) -> DType {
        match self {
            Storage::F32 => DType::F32,
            Storage::Quant => quant,
            Storage::Embedding if is_4bit(quant) => DType::Q8_0,
            Storage::Embedding => quant,
        }
    }
}

fn is_4bit(quant: DType) -> bool {
    matches!(quant, DType::Q4_0 | DType::Q4_1)
}

/// When a tensor is part of a package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Always,
    /// Only when the embeddings are not tied (`TIED_EMBEDDINGS` clear): the separate LM head.
    Untied,
    /// Only with attention biases (v2 `ATTN_QKV_BIAS`).
    QkvBias,
}

impl Presence {
    pub fn is_present(self, h: &Hyperparams) -> bool {
        match self {
            Presence::Always => true,
            Presence::Untied => !h.tied_embeddings,
            Presence::QkvBias => h.qkv_bias,
        }
    }
}

/// One row of an architecture table.
#[derive(Debug)]
pub struct TensorDesc {
    pub role: Role,
    /// The GGUF name; for per-layer tensors the part after `blk.{i}.`.
    pub name: &'static str,
    /// `[len]` for a vector, `[rows, row_len]` for a matrix.
    pub dims: &'static [Dim],
    pub storage: Storage,
    pub presence: Presence,
}

const fn t(role: Role, name: &'static str, dims: &'static [Dim], storage: Storage) -> TensorDesc {
    TensorDesc { role, name, dims, storage, presence: Presence::Always }
}

use Dim::{Embd, Ffn, HeadDim, KvDim, QDim, Vocab};

/// Llama (llama2.c `run.c`, GGUF "LLaMA"): RMSNorm, RoPE, grouped-query attention, SwiGLU.
pub const LLAMA: ArchTable = ArchTable {
    before_layers: &[t(Role::TokenEmbd, "token_embd.weight", &[Vocab, Embd], Storage::Embedding)],
    per_layer: &[
        t(Role::AttnNorm, "attn_norm.weight", &[Embd], Storage::F32),
        t(Role::AttnQ, "attn_q.weight", &[QDim, Embd], Storage::Quant),
        t(Role::AttnK, "attn_k.weight", &[KvDim, Embd], Storage::Quant),
        t(Role::AttnV, "attn_v.weight", &[KvDim, Embd], Storage::Quant),
        t(Role::AttnOutput, "attn_output.weight", &[Embd, QDim], Storage::Quant),
        t(Role::FfnNorm, "ffn_norm.weight", &[Embd], Storage::F32),
        t(Role::FfnGate, "ffn_gate.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnUp, "ffn_up.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnDown, "ffn_down.weight", &[Embd, Ffn], Storage::Quant),
    ],
    after_layers: &[
        t(Role::OutputNorm, "output_norm.weight", &[Embd], Storage::F32),
        TensorDesc { presence: Presence::Untied, ..t(Role::Output, "output.weight", &[Vocab, Embd], Storage::Embedding) },
    ],
};

const fn bias(role: Role, name: &'static str, dims: &'static [Dim]) -> TensorDesc {
    TensorDesc { role, name, dims, storage: Storage::F32, presence: Presence::QkvBias }
}

/// Qwen2 (llama.cpp `LLM_ARCH_QWEN2`, Hugging Face `Qwen2ForCausalLM`): llama's tensors plus f32
/// biases on the Q, K and V projections, each right after its weight.
pub const QWEN2: ArchTable = ArchTable {
    before_layers: LLAMA.before_layers,
    per_layer: &[
        t(Role::AttnNorm, "attn_norm.weight", &[Embd], Storage::F32),
        t(Role::AttnQ, "attn_q.weight", &[QDim, Embd], Storage::Quant),
        bias(Role::AttnQBias, "attn_q.bias", &[QDim]),
        t(Role::AttnK, "attn_k.weight", &[KvDim, Embd], Storage::Quant),
        bias(Role::AttnKBias, "attn_k.bias", &[KvDim]),
        t(Role::AttnV, "attn_v.weight", &[KvDim, Embd], Storage::Quant),
        bias(Role::AttnVBias, "attn_v.bias", &[KvDim]),
        t(Role::AttnOutput, "attn_output.weight", &[Embd, QDim], Storage::Quant),
        t(Role::FfnNorm, "ffn_norm.weight", &[Embd], Storage::F32),
        t(Role::FfnGate, "ffn_gate.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnUp, "ffn_up.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnDown, "ffn_down.weight", &[Embd, Ffn], Storage::Quant),
    ],
    after_layers: LLAMA.after_layers,
};

/// Qwen3 (llama.cpp `LLM_ARCH_QWEN3`, Hugging Face `Qwen3ForCausalLM`): llama's tensors plus the
/// per-head Q and K norms, each right after its projection.
pub const QWEN3: ArchTable = ArchTable {
    before_layers: LLAMA.before_layers,
    per_layer: &[
        t(Role::AttnNorm, "attn_norm.weight", &[Embd], Storage::F32),
        t(Role::AttnQ, "attn_q.weight", &[QDim, Embd], Storage::Quant),
        t(Role::AttnQNorm, "attn_q_norm.weight", &[HeadDim], Storage::F32),
        t(Role::AttnK, "attn_k.weight", &[KvDim, Embd], Storage::Quant),
        t(Role::AttnKNorm, "attn_k_norm.weight", &[HeadDim], Storage::F32),
        t(Role::AttnV, "attn_v.weight", &[KvDim, Embd], Storage::Quant),
        t(Role::AttnOutput, "attn_output.weight", &[Embd, QDim], Storage::Quant),
        t(Role::FfnNorm, "ffn_norm.weight", &[Embd], Storage::F32),
        t(Role::FfnGate, "ffn_gate.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnUp, "ffn_up.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnDown, "ffn_down.weight", &[Embd, Ffn], Storage::Quant),
    ],
    after_layers: LLAMA.after_layers,
};

/// Gemma 3 (llama.cpp `LLM_ARCH_GEMMA3`, Hugging Face `Gemma3ForCausalLM`): Qwen3's tensors plus
/// the norms after attention and after the FFN. GGUF stores every norm weight with Gemma's `1 +`
/// already added (llama.cpp's converter does it), so they are plain RMSNorm weights here.
pub const GEMMA3: ArchTable = ArchTable {
    before_layers: LLAMA.before_layers,
    per_layer: &[
        t(Role::AttnNorm, "attn_norm.weight", &[Embd], Storage::F32),
        t(Role::AttnQ, "attn_q.weight", &[QDim, Embd], Storage::Quant),
        t(Role::AttnQNorm, "attn_q_norm.weight", &[HeadDim], Storage::F32),
        t(Role::AttnK, "attn_k.weight", &[KvDim, Embd], Storage::Quant),
        t(Role::AttnKNorm, "attn_k_norm.weight", &[HeadDim], Storage::F32),
        t(Role::AttnV, "attn_v.weight", &[KvDim, Embd], Storage::Quant),
        t(Role::AttnOutput, "attn_output.weight", &[Embd, QDim], Storage::Quant),
        t(Role::PostAttnNorm, "post_attention_norm.weight", &[Embd], Storage::F32),
        t(Role::FfnNorm, "ffn_norm.weight", &[Embd], Storage::F32),
        t(Role::FfnGate, "ffn_gate.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnUp, "ffn_up.weight", &[Ffn, Embd], Storage::Quant),
        t(Role::FfnDown, "ffn_down.weight", &[Embd, Ffn], Storage::Quant),
        t(Role::PostFfnNorm, "post_ffw_norm.weight", &[Embd], Storage::F32),
    ],
    after_layers: LLAMA.after_layers,
};

/// One tensor of a particular package: a table row, and its layer for per-layer rows.
#[derive(Clone, Copy, Debug)]
pub struct TensorSlot {
    pub desc: &'static TensorDesc,
    pub layer: Option<u32>,
}

impl TensorSlot {
    /// `[len]` or `[rows, row_len]` for hyperparameters `h` (the first `rank` entries are used).
    pub fn dims(&self, h: &Hyperparams) -> ([usize; 2], usize) {
        let mut out = [0usize; 2];
        for (o, d) in out.iter_mut().zip(self.desc.dims) {
            *o = d.of(h);
        }
        (out, self.desc.dims.len())
    }

    /// Whether `name` is this tensor's full name (`token_embd.weight`, `blk.3.attn_q.weight`),
    /// without building the string.
    pub fn is_named(&self, name: &str) -> bool {
        match self.layer {
            None => name == self.desc.name,
            Some(l) => {
                let Some((index, suffix)) = name.strip_prefix("blk.").and_then(|rest| rest.split_once('.')) else {
                    return false;
                };
                suffix == self.desc.name && canonical_index(index) == Some(l)
            }
        }
    }
}

/// The full name: `token_embd.weight`, or `blk.{i}.` + the row's name.
impl fmt::Display for TensorSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.layer {
            None => f.write_str(self.desc.name),
            Some(l) => write!(f, "blk.{l}.{}", self.desc.name),
        }
    }
}

/// Directory index of each role's tensor (one transformer block's, or the model-level ones);
/// `None` for a role the architecture or the package does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TensorsByRole([Option<usize>; Role::COUNT]);

impl TensorsByRole {
    pub fn get(&self, role: Role) -> Option<usize> {
        self.0[role as usize]
    }
    pub fn set(&mut self, role: Role, index: usize) {
        self.0[role as usize] = Some(index);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;
    use std::vec::Vec;

    use super::*;

    fn hparams(tied: bool) -> Hyperparams {
        Hyperparams::llama_v1(300, 64, 2, 4, 2, 96, 128, 10000.0, 1e-5, tied)
    }

    #[test]
    fn qwen2_is_llama_with_qkv_biases_after_their_weights() {
        let h = Hyperparams { arch: Arch::Qwen2, head_dim: 32, qkv_bias: true, rope: RopeKind::Neox, ..hparams(false) };
        let names: Vec<_> = Arch::Qwen2.tensors(&h).map(|s| s.to_string()).collect();
        assert_eq!(names.len(), 1 + 2 * 12 + 2);
        assert_eq!(
            &names[1..8],
            [
                "blk.0.attn_norm.weight",
                "blk.0.attn_q.weight",
                "blk.0.attn_q.bias",
                "blk.0.attn_k.weight",
                "blk.0.attn_k.bias",
                "blk.0.attn_v.weight",
                "blk.0.attn_v.bias"
            ]
        );
        let dims = |name: &str| {
            let s = Arch::Qwen2.slot_named(name).unwrap();
            let (d, rank) = s.dims(&h);
            (d[..rank].to_vec(), s.desc.storage)
        };
        // head_dim 32 × 4 heads: the Q projection is wider than dim (64).
        assert_eq!(dims("blk.1.attn_q.bias"), (std::vec![128], Storage::F32));
        assert_eq!(dims("blk.1.attn_k.bias"), (std::vec![64], Storage::F32));
        assert_eq!(dims("blk.0.attn_q.weight").0, [128, 64]);
        assert_eq!(dims("blk.0.attn_output.weight").0, [64, 128]);
        // Without the bias flag the table is llama's.
        let plain = Hyperparams { qkv_bias: false, ..h };
        let llama: Vec<_> = Arch::Llama.tensors(&plain).map(|s| s.to_string()).collect();
        assert_eq!(Arch::Qwen2.tensors(&plain).map(|s| s.to_string()).collect::<Vec<_>>(), llama);
        assert!(Arch::Qwen2.has_qkv_bias_rows() && !Arch::Llama.has_qkv_bias_rows());
        for a in Arch::ALL {
            assert_eq!(Arch::from_code(a.code()), Some(a));
            assert_eq!(Arch::from_name(a.name()), Some(a));
        }
        assert_eq!(Arch::from_code(4), None);
        assert_eq!((Arch::Llama.gguf_rope(), Arch::Qwen2.gguf_rope()), (RopeKind::Interleaved, RopeKind::Neox));
    }

    #[test]
    fn llama_names_and_order_are_the_slm1_canonical_ones() {
        let names: Vec<_> = Arch::Llama.tensors(&hparams(false)).map(|s| s.to_string()).collect();
        let mut want = std::vec!["token_embd.weight".to_string()];
        for l in 0..2 {
            for s in ["attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"] {
                want.push(std::format!("blk.{l}.{s}.weight"));
            }
        }
        want.push("output_norm.weight".to_string());
        want.push("output.weight".to_string());
        assert_eq!(names, want);
        // Tied embeddings: no separate LM head.
        let tied: Vec<_> = Arch::Llama.tensors(&hparams(true)).map(|s| s.to_string()).collect();
        assert_eq!(tied, want[..want.len() - 1]);
    }

    #[test]
    fn llama_shapes_follow_the_hyperparameters() {
        let h = hparams(false);
        let dims = |name: &str| {
            let s = Arch::Llama.tensors(&h).find(|s| s.is_named(name)).unwrap();
            let (d, rank) = s.dims(&h);
            d[..rank].to_vec()
        };
        assert_eq!(dims("token_embd.weight"), [300, 64]);
        assert_eq!(dims("blk.1.attn_norm.weight"), [64]);
        assert_eq!(dims("blk.0.attn_q.weight"), [64, 64]);
        assert_eq!(dims("blk.0.attn_k.weight"), [32, 64]);
        assert_eq!(dims("blk.1.attn_v.weight"), [32, 64]);
        assert_eq!(dims("blk.0.attn_output.weight"), [64, 64]);
        assert_eq!(dims("blk.0.ffn_gate.weight"), [96, 64]);
        assert_eq!(dims("blk.0.ffn_up.weight"), [96, 64]);
        assert_eq!(dims("blk.0.ffn_down.weight"), [64, 96]);
        assert_eq!(dims("output.weight"), [300, 64]);
    }

    #[test]
    fn names_match_exactly() {
        let h = hparams(true);
        let q1 = Arch::Llama.tensors(&h).find(|s| s.layer == Some(1) && s.desc.role == Role::AttnQ).unwrap();
        assert!(q1.is_named("blk.1.attn_q.weight"));
        for other in [
            "blk.01.attn_q.weight",
            "blk.0.attn_q.weight",
            "blk.1.attn_q.bias",
            "blk.1attn_q.weight",
            "attn_q.weight",
            "blk..attn_q.weight",
            "blk.+1.attn_q.weight",
        ] {
            assert!(!q1.is_named(other), "{other}");
        }
    }

    #[test]
    fn names_resolve_to_table_rows() {
        let q = Arch::Llama.slot_named("blk.300.attn_q.weight").unwrap();
        assert_eq!((q.desc.role, q.layer), (Role::AttnQ, Some(300)));
        let head = Arch::Llama.slot_named("output.weight").unwrap();
        assert_eq!((head.desc.role, head.layer, head.desc.presence), (Role::Output, None, Presence::Untied));
        for other in ["blk.1.attn_q.bias", "blk.01.ffn_up.weight", "blk.x.ffn_up.weight", "token_embd", "blk.1"] {
            assert!(Arch::Llama.slot_named(other).is_none(), "{other}");
        }
        // Every canonical name resolves back to its own slot.
        let h = hparams(false);
        for s in Arch::Llama.tensors(&h) {
            let back = Arch::Llama.slot_named(&s.to_string()).unwrap();
            assert_eq!((back.desc.role, back.layer), (s.desc.role, s.layer));
        }
    }

    #[test]
    fn storage_rules() {
        use DType::*;
        assert!(Storage::F32.allows(Q4_0, F32) && !Storage::F32.allows(F32, Q8_0));
        assert!(Storage::Quant.allows(Q4_1, Q4_1) && !Storage::Quant.allows(Q4_1, Q8_0));
        assert!(Storage::Embedding.allows(Q4_0, Q8_0) && Storage::Embedding.allows(Q4_0, Q4_0));
        assert!(!Storage::Embedding.allows(F32, Q8_0) && !Storage::Embedding.allows(Q8_0, Q4_0));
        assert_eq!(Storage::Embedding.writer_dtype(Q4_1), Q8_0);
        assert_eq!(Storage::Embedding.writer_dtype(F32), F32);
        assert_eq!(Storage::F32.writer_dtype(Q8_0), F32);
        // v2: as shipped, except norms and biases.
        assert!(Storage::Quant.allows_as_shipped(Q4_1) && Storage::Embedding.allows_as_shipped(F32));
        assert!(!Storage::F32.allows_as_shipped(Q8_0));
    }

    #[test]
    fn every_role_fits_the_role_table() {
        for a in Arch::ALL {
            let t = a.table();
            for d in t.before_layers.iter().chain(t.per_layer).chain(t.after_layers) {
                assert!((d.role as usize) < Role::COUNT);
                assert!(matches!(d.dims.len(), 1 | 2));
            }
        }
    }
}
