//! A small GGUF writer for tests, able to write well-formed files and, by overriding fields,
//! malformed ones.

use crate::spec::token_type;

/// A metadata value as written. `Arr(elem_type_code, items)`; `Raw(type_code, bytes)` writes any
/// type code followed by arbitrary bytes.
#[derive(Clone, Debug)]
pub enum V {
    U8(u8),
    U32(u32),
    I32(i32),
    U64(u64),
    F32(f32),
    Bool(bool),
    Str(String),
    Arr(u32, Vec<V>),
    Raw(u32, Vec<u8>),
}

pub const T_U8: u32 = 0;
pub const T_U32: u32 = 4;
pub const T_I32: u32 = 5;
pub const T_F32: u32 = 6;
pub const T_BOOL: u32 = 7;
pub const T_STR: u32 = 8;
pub const T_ARR: u32 = 9;
pub const T_U64: u32 = 10;

pub fn s(x: &str) -> V {
    V::Str(x.to_string())
}

pub fn strs(xs: &[&str]) -> V {
    V::Arr(T_STR, xs.iter().map(|x| s(x)).collect())
}

impl V {
    fn type_code(&self) -> u32 {
        match self {
            V::U8(_) => T_U8,
            V::U32(_) => T_U32,
            V::I32(_) => T_I32,
            V::U64(_) => T_U64,
            V::F32(_) => T_F32,
            V::Bool(_) => T_BOOL,
            V::Str(_) => T_STR,
            V::Arr(..) => T_ARR,
            V::Raw(code, _) => *code,
        }
    }

    fn write_payload(&self, out: &mut Vec<u8>) {
        match self {
            V::U8(x) => out.push(*x),
            V::U32(x) => out.extend(x.to_le_bytes()),
            V::I32(x) => out.extend(x.to_le_bytes()),
            V::U64(x) => out.extend(x.to_le_bytes()),
            V::F32(x) => out.extend(x.to_le_bytes()),
            V::Bool(x) => out.push(*x as u8),
            V::Str(x) => write_str(out, x),
            V::Arr(elem, items) => {
                out.extend(elem.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for item in items {
                    item.write_payload(out);
                }
            }
            V::Raw(_, bytes) => out.extend(bytes),
        }
    }
}

pub fn write_str(out: &mut Vec<u8>, x: &str) {
    out.extend((x.len() as u64).to_le_bytes());
    out.extend(x.as_bytes());
}

#[derive(Clone, Debug)]
pub struct TestTensor {
    pub name: String,
    pub ne: Vec<u64>,
    pub ggml_type: u32,
    pub data: Vec<u8>,
    /// Written instead of the laid-out offset.
    pub offset: Option<u64>,
}

/// Byte offsets of the sections of a built file.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub kv_start: usize,
    pub infos_start: usize,
    pub infos_end: usize,
    pub data_start: usize,
}

#[derive(Clone, Debug)]
pub struct GgufBuilder {
    pub magic: [u8; 4],
    pub version: u32,
    pub kv: Vec<(String, V)>,
    pub tensors: Vec<TestTensor>,
    /// Alignment used to lay out the data (independent of any `general.alignment` kv).
    pub alignment: usize,
    pub n_tensors_override: Option<u64>,
    pub n_kv_override: Option<u64>,
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder { magic: *b"GGUF", version: 3, kv: Vec::new(), tensors: Vec::new(), alignment: 32, n_tensors_override: None, n_kv_override: None }
    }

    pub fn kv(mut self, key: &str, v: V) -> Self {
        self.kv.push((key.to_string(), v));
        self
    }

    /// Replaces the value of `key` (or adds it).
    pub fn set(mut self, key: &str, v: V) -> Self {
        match self.kv.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.kv.push((key.to_string(), v)),
        }
        self
    }

    pub fn remove(mut self, key: &str) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self
    }

    pub fn tensor(mut self, name: &str, ne: &[u64], ggml_type: u32, data: Vec<u8>) -> Self {
        self.tensors.push(TestTensor { name: name.to_string(), ne: ne.to_vec(), ggml_type, data, offset: None });
        self
    }

    pub fn tensor_mut(&mut self, name: &str) -> &mut TestTensor {
        self.tensors.iter_mut().find(|t| t.name == name).expect("test tensor")
    }

    pub fn build(&self) -> Vec<u8> {
        self.build_with_layout().0
    }

    pub fn build_with_layout(&self) -> (Vec<u8>, Layout) {
        let align = |n: usize| n.div_ceil(self.alignment) * self.alignment;
        let mut out = Vec::new();
        out.extend(self.magic);
        out.extend(self.version.to_le_bytes());
        out.extend(self.n_tensors_override.unwrap_or(self.tensors.len() as u64).to_le_bytes());
        out.extend(self.n_kv_override.unwrap_or(self.kv.len() as u64).to_le_bytes());
        let kv_start = out.len();
        for (key, v) in &self.kv {
            write_str(&mut out, key);
            out.extend(v.type_code().to_le_bytes());
            v.write_payload(&mut out);
        }
        let infos_start = out.len();
        let mut offset = 0usize;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            write_str(&mut out, &t.name);
            out.extend((t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.ggml_type.to_le_bytes());
            out.extend(t.offset.unwrap_or(offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = align(offset + t.data.len());
        }
        let infos_end = out.len();
        let data_start = if self.tensors.is_empty() { out.len() } else { align(out.len()) };
        out.resize(data_start, 0);
        for (t, &off) in self.tensors.iter().zip(&offsets) {
            out.resize(data_start + off, 0);
            out.extend(&t.data);
        }
        (out, Layout { kv_start, infos_start, infos_end, data_start })
    }
}

// ---- a tiny llama model ------------------------------------------------------------------------

pub const DIM: u64 = 32;
pub const N_HEADS: u32 = 2;
pub const N_KV_HEADS: u32 = 1;
pub const KV_DIM: u64 = 16;
pub const FFN: u64 = 64;
pub const GGML_F32: u32 = 0;
pub const GGML_F16: u32 = 1;
pub const GGML_Q4_0: u32 = 2;
pub const GGML_Q4_1: u32 = 3;
pub const GGML_Q8_0: u32 = 8;
pub const GGML_Q8_1: u32 = 9;
pub const GGML_BF16: u32 = 30;

/// The GPT-2 vocabulary of [`tiny_llama`]: specials like SmolLM2's, then byte-level pieces
/// (`Ġ` = space, `Ċ` = newline).
pub const GPT2_TOKENS: &[&str] =
    &["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "a", "b", "Ġ", "Ċ", "ab", "Ġa", "Ġab", "é", "Ã", "©", "Ã©"];
pub const GPT2_MERGES: &[&str] = &["a b", "Ġ a", "Ġa b", "Ã ©"];

/// Deterministic test values in [-1, 1).
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761).wrapping_add(seed * 7919) >> 8) % 2000) as f32 / 1000.0 - 1.0).collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// f32 → f16 bits (round to nearest even; test values are in range).
pub fn f16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    if x == 0.0 {
        return sign;
    }
    assert!((1..31).contains(&exp), "test value {x} out of f16 normal range");
    let mant = b & 0x7f_ffff;
    let mut h = (sign as u32) | ((exp as u32) << 10) | (mant >> 13);
    let rest = mant & 0x1fff;
    if rest > 0x1000 || (rest == 0x1000 && h & 1 == 1) {
        h += 1;
    }
    h as u16
}

pub fn f16_data(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| f16_bits(x).to_le_bytes()).collect()
}

pub fn bf16_data(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|&x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect()
}

/// Arbitrary but valid blocks: scale 2^-7, codes from `seed`.
pub fn quant_data(ggml_type: u32, n_elements: usize, seed: u8) -> Vec<u8> {
    let n_blocks = n_elements / 32;
    let mut out = Vec::new();
    for b in 0..n_blocks {
        out.extend(f16_bits(1.0 / 128.0).to_le_bytes());
        if ggml_type == GGML_Q4_1 {
            out.extend(f16_bits(-0.25).to_le_bytes());
        }
        let n_qs = if ggml_type == GGML_Q8_0 { 32 } else { 16 };
        out.extend((0..n_qs).map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed).wrapping_add(b as u8)));
    }
    out
}

/// A one-layer llama with a GPT-2 tokenizer and a mix of tensor types:
/// token_embd Q8_0, attn_q F32, attn_k F16, attn_v BF16, attn_output Q4_0, ffn_gate Q4_1,
/// ffn_up Q8_0, ffn_down F32, norms F32; tied embeddings unless `untied`.
/// [`tiny_llama`] as a qwen2 GGUF: `qwen2.*` keys, Q/K/V biases, rope θ 1e6, the `qwen2`
/// pre-tokenizer and a template with Qwen's default system prompt.
pub fn tiny_qwen2() -> GgufBuilder {
    let mut b = tiny_llama(false);
    for (k, _) in b.kv.iter_mut() {
        if let Some(rest) = k.strip_prefix("llama.") {
            *k = format!("qwen2.{rest}");
        }
    }
    let template = "{%- if messages[0]['role'] == 'system' %}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}";
    let b = b
        .set("general.architecture", s("qwen2"))
        .set("qwen2.rope.freq_base", V::F32(1e6))
        .set("tokenizer.ggml.pre", s("qwen2"))
        .set("tokenizer.chat_template", s(template));
    b.tensor("blk.0.attn_q.bias", &[DIM], GGML_F32, f32_bytes(&values(DIM as usize, 13)))
        .tensor("blk.0.attn_k.bias", &[KV_DIM], GGML_F32, f32_bytes(&values(KV_DIM as usize, 14)))
        .tensor("blk.0.attn_v.bias", &[KV_DIM], GGML_F32, f32_bytes(&values(KV_DIM as usize, 15)))
}

/// [`tiny_llama`] as a gemma3 GGUF: `gemma3.*` keys with a sliding window of 4, per-head Q/K
/// norms and the post-attention and post-FFN norms, tied embeddings, no chat template.
pub fn tiny_gemma3() -> GgufBuilder {
    let mut b = tiny_llama(false);
    for (k, _) in b.kv.iter_mut() {
        if let Some(rest) = k.strip_prefix("llama.") {
            *k = format!("gemma3.{rest}");
        }
    }
    let head_dim = (DIM / N_HEADS as u64) as usize;
    let b = b
        .set("general.architecture", s("gemma3"))
        .set("gemma3.rope.freq_base", V::F32(1e6))
        .kv("gemma3.attention.sliding_window", V::U32(4))
        .remove("tokenizer.chat_template");
    b.tensor("blk.0.attn_q_norm.weight", &[head_dim as u64], GGML_F32, f32_bytes(&values(head_dim, 16)))
        .tensor("blk.0.attn_k_norm.weight", &[head_dim as u64], GGML_F32, f32_bytes(&values(head_dim, 17)))
        .tensor("blk.0.post_attention_norm.weight", &[DIM], GGML_F32, f32_bytes(&values(DIM as usize, 18)))
        .tensor("blk.0.post_ffw_norm.weight", &[DIM], GGML_F32, f32_bytes(&values(DIM as usize, 19)))
}

pub fn tiny_llama(untied: bool) -> GgufBuilder {
    let vocab = GPT2_TOKENS.len() as u64;
    let mut types = vec![token_type::NORMAL as i32; GPT2_TOKENS.len()];
    types[..5].fill(token_type::CONTROL as i32);
    let mut b = GgufBuilder::new()
        .kv("general.architecture", s("llama"))
        .kv("general.name", s("tiny"))
        .kv("llama.block_count", V::U32(1))
        .kv("llama.context_length", V::U32(64))
        .kv("llama.embedding_length", V::U32(DIM as u32))
        .kv("llama.feed_forward_length", V::U32(FFN as u32))
        .kv("llama.attention.head_count", V::U32(N_HEADS))
        .kv("llama.attention.head_count_kv", V::U32(N_KV_HEADS))
        .kv("llama.rope.freq_base", V::F32(100000.0))
        .kv("llama.attention.layer_norm_rms_epsilon", V::F32(1e-5))
        .kv("llama.rope.dimension_count", V::U32(16))
        .kv("llama.vocab_size", V::U32(vocab as u32))
        .kv("tokenizer.ggml.model", s("gpt2"))
        .kv("tokenizer.ggml.pre", s("smollm"))
        .kv("tokenizer.ggml.tokens", strs(GPT2_TOKENS))
        .kv("tokenizer.ggml.token_type", V::Arr(T_I32, types.into_iter().map(V::I32).collect()))
        .kv("tokenizer.ggml.merges", strs(GPT2_MERGES))
        .kv("tokenizer.ggml.bos_token_id", V::U32(1))
        .kv("tokenizer.ggml.eos_token_id", V::U32(2))
        .kv("tokenizer.ggml.unknown_token_id", V::U32(0))
        .kv("tokenizer.ggml.add_bos_token", V::Bool(false))
        .kv("tokenizer.ggml.add_space_prefix", V::Bool(false))
        .kv("tokenizer.chat_template", s("{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"));
    let d = DIM as usize;
    b = b
        .tensor("token_embd.weight", &[DIM, vocab], GGML_Q8_0, quant_data(GGML_Q8_0, d * vocab as usize, 1))
        .tensor("blk.0.attn_norm.weight", &[DIM], GGML_F32, f32_bytes(&values(d, 2)))
        .tensor("blk.0.attn_q.weight", &[DIM, DIM], GGML_F32, f32_bytes(&values(d * d, 3)))
        .tensor("blk.0.attn_k.weight", &[DIM, KV_DIM], GGML_F16, f16_data(&values(d * KV_DIM as usize, 4)))
        .tensor("blk.0.attn_v.weight", &[DIM, KV_DIM], GGML_BF16, bf16_data(&values(d * KV_DIM as usize, 5)))
        .tensor("blk.0.attn_output.weight", &[DIM, DIM], GGML_Q4_0, quant_data(GGML_Q4_0, d * d, 6))
        .tensor("blk.0.ffn_norm.weight", &[DIM], GGML_F32, f32_bytes(&values(d, 7)))
        .tensor("blk.0.ffn_gate.weight", &[DIM, FFN], GGML_Q4_1, quant_data(GGML_Q4_1, d * FFN as usize, 8))
        .tensor("blk.0.ffn_up.weight", &[DIM, FFN], GGML_Q8_0, quant_data(GGML_Q8_0, d * FFN as usize, 9))
        .tensor("blk.0.ffn_down.weight", &[FFN, DIM], GGML_F32, f32_bytes(&values(d * FFN as usize, 10)))
        .tensor("output_norm.weight", &[DIM], GGML_F32, f32_bytes(&values(d, 11)));
    if untied {
        b = b.tensor("output.weight", &[DIM, vocab], GGML_F16, f16_data(&values(d * vocab as usize, 12)));
    }
    b
}
