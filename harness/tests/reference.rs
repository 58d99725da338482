//! The wasm module against an independent f64 forward pass written here from the llama equations
//! (not from the runtime's code): logits at every position, greedy decoding, seeded sampling,
//! streaming, for several shapes — and for the other families' equations (qwen2's biases, qwen3's
//! and gemma3's per-head Q/K norms, gemma3's post norms, GeGLU, √dim embedding scale and sliding
//! window with its own RoPE base), written from llama.cpp's graphs.

use harness::package;
use harness::runtime::{ModuleFile, Runtime, Sampling, GEN_CONTINUE};
use harness::spec::{ModelSpec, TensorData};
use harness::synth::{synthetic_model, SynthShape};
use std::sync::OnceLock;
use tinyrustlm::model::arch::{Arch, RopeKind};
use tinyrustlm::quant::DType;

/// Max |logit difference| between the module (f32 weights, f32 arithmetic) and the f64 reference.
/// Measured ≤ 2.3e-6 on these shapes (logits of magnitude ~3); 1e-3 leaves room for summation order
/// without hiding a real bug (a wrong RoPE pair or head mapping moves logits by > 0.1).
const LOGIT_TOLERANCE_F32: f64 = 1e-3;
/// q8_0 weights and q8 activations vs the reference over the same (dequantized) weights: the only
/// difference left is the activations' 8-bit rounding, ≈ 0.4 % per matmul input, compounding over
/// layers. Measured up to ≈ 0.09 on logits spanning ±3; a wrong block scale or nibble order moves
/// them by whole units.
const LOGIT_TOLERANCE_Q8_0: f64 = 0.15;

fn module() -> &'static ModuleFile {
    static M: OnceLock<ModuleFile> = OnceLock::new();
    M.get_or_init(|| {
        let path = harness::default_wasm_path();
        assert!(path.exists(), "{} is missing: run `make wasm` first", path.display());
        ModuleFile::load(&path).expect("module compiles")
    })
}

/// Plain f64 llama forward pass with a KV cache, from the ModelSpec's values.
struct Reference {
    spec: ModelSpec,
    keys: Vec<Vec<Vec<f64>>>, // [layer][pos][kv_dim]
    values: Vec<Vec<Vec<f64>>>,
}

impl Reference {
    fn new(spec: &ModelSpec, storage: DType) -> Reference {
        // Round-trip weights through the storage dtype so the reference sees what the module sees.
        let mut spec = spec.clone();
        for t in &mut spec.tensors {
            if t.dims.len() == 2 && storage != DType::F32 {
                let bytes = package::encode_tensor(t, storage).unwrap();
                let row_len = t.dims[1] as usize;
                let row_bytes = storage.row_bytes(row_len).unwrap();
                let mut v = vec![0f32; t.dims[0] as usize * row_len];
                for (src, dst) in bytes.chunks_exact(row_bytes).zip(v.chunks_exact_mut(row_len)) {
                    tinyrustlm::quant::dequantize_row(storage, src, dst);
                }
                t.data = TensorData::F32(v);
            }
        }
        let n_layers = spec.hparams.n_layers as usize;
        Reference { spec, keys: vec![vec![]; n_layers], values: vec![vec![]; n_layers] }
    }

    fn w(&self, name: &str) -> (&[f32], usize) {
        let t = self.spec.tensors.iter().find(|t| t.name == name).unwrap();
        match &t.data {
            TensorData::F32(v) => (v, *t.dims.last().unwrap() as usize),
            _ => panic!("reference needs f32 data"),
        }
    }

    fn matvec(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let (w, cols) = self.w(name);
        w.chunks_exact(cols).map(|row| row.iter().zip(x).map(|(&a, &b)| a as f64 * b).sum()).collect()
    }

    fn has(&self, name: &str) -> bool {
        self.spec.tensors.iter().any(|t| t.name == name)
    }

    /// RMSNorm of each `width`-wide chunk of `x` (the whole vector, or each head) with weight `name`.
    fn rmsnorm_chunks(&self, x: &[f64], name: &str, width: usize) -> Vec<f64> {
        let (w, _) = self.w(name);
        let eps = self.spec.hparams.norm_eps as f64;
        x.chunks_exact(width)
            .flat_map(|c| {
                let ms = c.iter().map(|v| v * v).sum::<f64>() / width as f64;
                let inv = 1.0 / (ms + eps).sqrt();
                c.iter().zip(w).map(move |(v, &g)| v * inv * g as f64)
            })
            .collect()
    }

    fn rmsnorm(&self, x: &[f64], name: &str) -> Vec<f64> {
        self.rmsnorm_chunks(x, name, x.len())
    }

    fn add(&self, v: &mut [f64], name: &str) {
        let (b, _) = self.w(name);
        v.iter_mut().zip(b).for_each(|(x, &b)| *x += b as f64);
    }

    fn rope(&self, v: &mut [f64], pos: usize, base: f64) {
        let h = &self.spec.hparams;
        let hd = h.head_dim() as usize;
        for head in v.chunks_exact_mut(hd) {
            for j in 0..hd / 2 {
                let theta = base.powf(-(2.0 * j as f64) / hd as f64);
                let (s, c) = (pos as f64 * theta).sin_cos();
                // llama: adjacent pairs; the NEOX families: element j with j + hd/2.
                let (ia, ib) = if h.rope == RopeKind::Neox { (j, j + hd / 2) } else { (2 * j, 2 * j + 1) };
                let (a, b) = (head[ia], head[ib]);
                head[ia] = a * c - b * s;
                head[ib] = a * s + b * c;
            }
        }
    }

    fn step(&mut self, token: u32) -> Vec<f64> {
        let h = self.spec.hparams.clone();
        let (dim, hd) = (h.dim as usize, h.head_dim() as usize);
        let gemma = h.arch == Arch::Gemma3;
        let pos = self.keys[0].len();
        let (emb, _) = self.w("token_embd.weight");
        let mut x: Vec<f64> = emb[token as usize * dim..(token as usize + 1) * dim].iter().map(|&v| v as f64).collect();
        if gemma {
            x.iter_mut().for_each(|v| *v *= (dim as f64).sqrt());
        }
        for l in 0..h.n_layers as usize {
            let p = format!("blk.{l}.");
            // Gemma 3: every `swa_pattern`-th layer global, the others local.
            let local = h.sliding_window > 0 && l % h.swa_pattern as usize != h.swa_pattern as usize - 1;
            let base = if local { h.rope_theta_local } else { h.rope_theta } as f64;
            let xn = self.rmsnorm(&x, &format!("{p}attn_norm.weight"));
            let mut q = self.matvec(&format!("{p}attn_q.weight"), &xn);
            let mut k = self.matvec(&format!("{p}attn_k.weight"), &xn);
            let mut v = self.matvec(&format!("{p}attn_v.weight"), &xn);
            if self.has(&format!("{p}attn_q.bias")) {
                self.add(&mut q, &format!("{p}attn_q.bias"));
                self.add(&mut k, &format!("{p}attn_k.bias"));
                self.add(&mut v, &format!("{p}attn_v.bias"));
            }
            if self.has(&format!("{p}attn_q_norm.weight")) {
                q = self.rmsnorm_chunks(&q, &format!("{p}attn_q_norm.weight"), hd);
                k = self.rmsnorm_chunks(&k, &format!("{p}attn_k_norm.weight"), hd);
            }
            self.rope(&mut q, pos, base);
            self.rope(&mut k, pos, base);
            self.keys[l].push(k);
            self.values[l].push(v);
            let first = if local { (pos + 1).saturating_sub(h.sliding_window as usize) } else { 0 };
            let group = (h.n_heads / h.n_kv_heads) as usize;
            let mut out = vec![0f64; h.n_heads as usize * hd];
            for head in 0..h.n_heads as usize {
                let kvh = head / group;
                let qh = &q[head * hd..(head + 1) * hd];
                let scores: Vec<f64> = self.keys[l][first..]
                    .iter()
                    .map(|k| qh.iter().zip(&k[kvh * hd..(kvh + 1) * hd]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (t, w) in e.iter().enumerate() {
                    for i in 0..hd {
                        out[head * hd + i] += w / z * self.values[l][first + t][kvh * hd + i];
                    }
                }
            }
            let mut o = self.matvec(&format!("{p}attn_output.weight"), &out);
            if gemma {
                o = self.rmsnorm(&o, &format!("{p}post_attention_norm.weight"));
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let xn = self.rmsnorm(&x, &format!("{p}ffn_norm.weight"));
            let g = self.matvec(&format!("{p}ffn_gate.weight"), &xn);
            let u = self.matvec(&format!("{p}ffn_up.weight"), &xn);
            let act = |g: f64| {
                if gemma {
                    0.5 * g * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g)).tanh())
                } else {
                    g / (1.0 + (-g).exp())
                }
            };
            let hmid: Vec<f64> = g.iter().zip(&u).map(|(&g, u)| act(g) * u).collect();
            let mut d = self.matvec(&format!("{p}ffn_down.weight"), &hmid);
            if gemma {
                d = self.rmsnorm(&d, &format!("{p}post_ffw_norm.weight"));
            }
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        let xn = self.rmsnorm(&x, "output_norm.weight");
        let head = if h.tied_embeddings { "token_embd.weight" } else { "output.weight" };
        self.matvec(head, &xn)
    }
}

fn argmax(v: &[f64]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn shapes() -> Vec<(&'static str, SynthShape)> {
    vec![
        ("gqa-tied", SynthShape::default()),
        ("mha-untied", SynthShape { n_kv_heads: 4, tied_embeddings: false, ..SynthShape::default() }),
        ("odd-dims", SynthShape { dim: 96, n_heads: 3, n_kv_heads: 1, ffn_dim: 160, n_layers: 3, ..SynthShape::default() }),
        ("one-head", SynthShape { dim: 32, n_heads: 1, n_kv_heads: 1, ffn_dim: 64, n_layers: 1, ..SynthShape::default() }),
    ]
}

fn loaded(spec: &ModelSpec, storage: DType) -> Runtime {
    let bytes = if spec.hparams.needs_v2() {
        let mut spec = spec.clone();
        for t in spec.tensors.iter_mut().filter(|t| t.dims.len() == 2 && storage != DType::F32) {
            t.data = TensorData::Encoded { dtype: storage, bytes: package::encode_tensor(t, storage).unwrap() };
        }
        package::build_as_shipped(&spec, |_| {}).unwrap().to_bytes().0
    } else {
        package::write(spec, storage).unwrap()
    };
    let mut rt = Runtime::new(module()).unwrap();
    rt.load_model(&bytes, 0).unwrap();
    rt
}

/// Logits after the prompt and after each greedy token match the reference; so do the tokens.
fn check_against_reference(storage: DType, tolerance: f64) {
    let specs = shapes().into_iter().map(|(name, shape)| (name, synthetic_model(&shape, 7))).collect();
    check_specs_against_reference(specs, storage, tolerance, "Hello, wasm!", 12);
}

fn check_specs_against_reference(specs: Vec<(&'static str, ModelSpec)>, storage: DType, tolerance: f64, prompt: &str, n_steps: u32) {
    for (name, spec) in specs {
        let mut rt = loaded(&spec, storage);
        let mut reference = Reference::new(&spec, storage);
        rt.generate_start(prompt, n_steps, 0).unwrap();
        let prompt_tokens = rt.read_u32s(harness::runtime::result_kind::PROMPT_TOKENS).unwrap();
        assert_eq!(prompt_tokens[0], 256, "{name}: BOS first");
        let mut ref_logits = Vec::new();
        for &t in &prompt_tokens {
            ref_logits = reference.step(t);
        }
        let mut max_diff = 0f64;
        for step in 0..n_steps {
            rt.generate_step(1).unwrap();
            let logits = rt.logits().unwrap();
            for (a, b) in logits.iter().zip(&ref_logits) {
                max_diff = max_diff.max((*a as f64 - b).abs());
            }
            let tokens = rt.read_u32s(harness::runtime::result_kind::TOKENS).unwrap();
            let got = *tokens.last().unwrap();
            assert_eq!(got, argmax(&ref_logits), "{name} ({}): greedy token {step} differs from the reference", storage.name());
            if !rt.state().unwrap().running() {
                break;
            }
            ref_logits = reference.step(got);
        }
        println!("{name} ({}): max |logit diff| = {max_diff:.2e}", storage.name());
        assert!(max_diff <= tolerance, "{name} ({}): max |logit diff| {max_diff} > {tolerance}", storage.name());
    }
}

#[test]
fn f32_logits_and_greedy_tokens_match_the_f64_reference() {
    check_against_reference(DType::F32, LOGIT_TOLERANCE_F32);
}

#[test]
fn q8_0_logits_and_greedy_tokens_match_the_reference_over_dequantized_weights() {
    check_against_reference(DType::Q8_0, LOGIT_TOLERANCE_Q8_0);
}

/// The v2 families on synthetic weights: qwen2 (biases), qwen3 (Q/K norms; no Qwen3 GGUF is on
/// PyPI, so this is its test of record), gemma3 (Q/K norms, post norms, GeGLU, √dim, a window of
/// 5 tokens on two of every three layers with its own RoPE base: the 12-token prompt plus 12
/// generated tokens cross it), all with `head_dim` ≠ `dim / n_heads`.
fn v2_family_specs() -> Vec<(&'static str, ModelSpec)> {
    let llama = synthetic_model(&SynthShape { n_layers: 3, max_context: 256, tied_embeddings: false, ..SynthShape::default() }, 11).hparams;
    let base = harness::spec::Hyperparams { head_dim: 24, rope: RopeKind::Neox, rope_theta: 1e6, ..llama };
    let qwen2 = harness::spec::Hyperparams { arch: Arch::Qwen2, qkv_bias: true, ..base.clone() };
    let qwen3 = harness::spec::Hyperparams { arch: Arch::Qwen3, ..base.clone() };
    let gemma3 =
        harness::spec::Hyperparams { arch: Arch::Gemma3, tied_embeddings: true, sliding_window: 5, swa_pattern: 3, rope_theta_local: 10_000.0, ..base };
    vec![
        ("qwen2", harness::synth::synthetic_model_for(qwen2, 12)),
        ("qwen3", harness::synth::synthetic_model_for(qwen3, 13)),
        ("gemma3", harness::synth::synthetic_model_for(gemma3, 14)),
    ]
}

#[test]
fn v2_families_match_the_f64_reference() {
    check_specs_against_reference(v2_family_specs(), DType::F32, LOGIT_TOLERANCE_F32, "Hello, wasm!", 12);
    check_specs_against_reference(v2_family_specs(), DType::Q8_0, LOGIT_TOLERANCE_Q8_0, "Hello, wasm!", 12);
}

/// gemma3's local layers keep a ring of `sliding_window + 32` positions (32: the prefill batch):
/// the 101-token prompt (four batches) alone wraps the 37-slot ring twice, generation goes on
/// wrapping it, and every logit still equals the reference that keeps every key.
#[test]
fn gemma3_window_ring_wraps_and_matches_the_reference() {
    let gemma3 = v2_family_specs().into_iter().filter(|(name, _)| *name == "gemma3").collect();
    let prompt = "A longer prompt, so that prefill runs in several batches and the window ring wraps around in it too.";
    assert_eq!(prompt.len(), 100);
    check_specs_against_reference(gemma3, DType::F32, LOGIT_TOLERANCE_F32, prompt, 60);
}

#[test]
fn long_prompt_prefill_in_batches_equals_token_by_token() {
    // 80 tokens span three prefill batches; feeding them one at a time with CONTINUE must leave the
    // same logits (bit for bit: batching reads weights once but does the same arithmetic).
    let spec = synthetic_model(&SynthShape::default(), 11);
    let prompt: String = (0..79).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let mut batched = loaded(&spec, DType::Q8_0);
    batched.generate_start(&prompt, 1, 0).unwrap();
    let a = batched.logits().unwrap();
    let mut single = loaded(&spec, DType::Q8_0);
    single.generate_start(&prompt[..1], 1, 0).unwrap();
    for c in prompt[1..].chars() {
        single.generate_start(&c.to_string(), 1, GEN_CONTINUE).unwrap();
    }
    let b = single.logits().unwrap();
    assert_eq!(a, b);
}

#[test]
fn same_seed_same_tokens_and_different_seed_differs() {
    let spec = synthetic_model(&SynthShape::default(), 3);
    let sampling = Sampling { temperature: 1.0, top_k: 40, top_p: 0.95, seed: 1234, ..Sampling::default() };
    let run = |seed: u64| {
        let mut rt = loaded(&spec, DType::Q8_0);
        rt.set_sampling(&Sampling { seed, ..sampling }).unwrap();
        rt.generate_all("seeded", 40, 0).unwrap().tokens
    };
    let a = run(1234);
    assert_eq!(a, run(1234));
    assert_ne!(a, run(4321));
    // Restarting a generation on the same instance restarts the stream too.
    let mut rt = loaded(&spec, DType::Q8_0);
    rt.set_sampling(&sampling).unwrap();
    let first = rt.generate_all("seeded", 40, 0).unwrap().tokens;
    let second = rt.generate_all("seeded", 40, 0).unwrap().tokens;
    assert_eq!(first, second);
    assert_eq!(first, a);
}

#[test]
fn streaming_in_steps_gives_the_same_text_as_one_call() {
    let spec = synthetic_model(&SynthShape::default(), 5);
    let mut rt = loaded(&spec, DType::Q8_0);
    rt.set_sampling(&Sampling { temperature: 0.8, seed: 9, ..Sampling::default() }).unwrap();
    let whole = rt.generate_all("stream me", 60, 0).unwrap();
    let mut chunks = Vec::new();
    let streamed = rt.generate_streaming("stream me", 60, 0, |c| chunks.push(c.to_string())).unwrap();
    assert_eq!(whole.tokens, streamed.tokens);
    assert_eq!(whole.text, streamed.text);
    assert_eq!(chunks.concat(), whole.text);
    assert!(chunks.iter().filter(|c| !c.is_empty()).count() > 1, "text arrived in more than one chunk");
}

#[test]
fn stop_string_ends_generation_before_it() {
    let spec = synthetic_model(&SynthShape::default(), 5);
    let mut rt = loaded(&spec, DType::Q8_0);
    let free_run = rt.generate_all("abc", 40, 0).unwrap();
    // Pick a stop string from the middle of the greedy output (bytes of a synthetic model may not
    // be valid UTF-8 on their own; search on the decoded text).
    let chars: Vec<char> = free_run.text.chars().collect();
    assert!(chars.len() > 6, "need some output, got {:?}", free_run.text);
    let stop: String = chars[3..5].iter().collect();
    let cut = free_run.text.find(&stop).unwrap();
    rt.add_stop_string(&stop).unwrap();
    let stopped = rt.generate_all("abc", 40, 0).unwrap();
    assert_eq!(stopped.text, free_run.text[..cut]);
    assert_eq!(stopped.state.stop_reason, 3);
}
