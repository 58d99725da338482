//! Adapters on SLM1 v2 parents whose matrices are in the dtypes v1 has not got (q4_k, q5_k, q6_k
//! with their 256-element super-blocks; q5_0, q5_1 and f16 with 32-blocks), through the
//! WebAssembly module: each kind gives exactly the child the host computes (the importer's own
//! dequantizer, the f64 sum rounded once, ggml's reference quantizer on each touched block), blocks
//! the delta does not touch stay as shipped, and remove / reset return to the parent bit for bit.

mod common;

use common::*;
use harness::adapter::{apply_to_package, assembly_state, digest, AdapterSpec, Delta, Kind, TargetSpec};
use harness::package;
use harness::runtime::{result_kind, Runtime, GEN_IGNORE_EOG};
use harness::spec::{Hyperparams, ModelSpec, TensorData};
use harness::synth::{synthetic_model, synthetic_model_for, SplitMix64, SynthShape};
use tinyrustlm::format::ModelIdentity;
use tinyrustlm::model::arch::{Arch, RopeKind};
use tinyrustlm::quant::{self, DType};

const N_STEPS: u32 = 4;

/// A v2 parent: `(name, package)`. qwen2: biases, NEOX RoPE, `head_dim` 128 (so `attn_output`
/// rows are 256 wide: one q4_k super-block), `ffn_dim` 512 (`ffn_down` rows are two q6_k
/// super-blocks). llama: untied, v2 only for its mixed dtypes, q5_k `ffn_down`.
fn parents() -> Vec<(&'static str, Vec<u8>)> {
    let llama =
        synthetic_model(&SynthShape { dim: 64, n_layers: 1, n_heads: 2, n_kv_heads: 1, ffn_dim: 512, max_context: 64, tied_embeddings: true }, SEED).hparams;
    let qwen2 = Hyperparams { arch: Arch::Qwen2, head_dim: 128, rope: RopeKind::Neox, qkv_bias: true, rope_theta: 1e6, ..llama.clone() };
    let qwen2_dtypes: &[(&str, DType)] = &[
        ("token_embd.weight", DType::Q8_0),
        ("attn_q.weight", DType::Q5_0),
        ("attn_k.weight", DType::F16),
        ("attn_v.weight", DType::Q5_0),
        ("attn_output.weight", DType::Q4_K),
        ("ffn_gate.weight", DType::Q8_0),
        ("ffn_up.weight", DType::Q5_0),
        ("ffn_down.weight", DType::Q6_K),
    ];
    let llama_dtypes: &[(&str, DType)] = &[
        ("token_embd.weight", DType::Q8_0),
        ("output.weight", DType::F16),
        ("attn_q.weight", DType::Q5_1),
        ("attn_k.weight", DType::Q8_0),
        ("attn_v.weight", DType::F16),
        ("attn_output.weight", DType::Q5_0),
        ("ffn_gate.weight", DType::Q4_0),
        ("ffn_up.weight", DType::Q5_1),
        ("ffn_down.weight", DType::Q5_K),
    ];
    let untied = Hyperparams { tied_embeddings: false, ..llama };
    [("qwen2", qwen2, qwen2_dtypes), ("llama", untied, llama_dtypes)]
        .into_iter()
        .map(|(name, h, dtypes)| (name, package::build_as_shipped(&with_dtypes(synthetic_model_for(h, SEED), dtypes), |_| {}).unwrap().to_bytes().0))
        .collect()
}

fn with_dtypes(mut spec: ModelSpec, dtypes: &[(&str, DType)]) -> ModelSpec {
    for t in spec.tensors.iter_mut().filter(|t| t.dims.len() == 2) {
        let &(_, dtype) = dtypes.iter().find(|(suffix, _)| t.name.ends_with(suffix)).unwrap();
        t.data = TensorData::Encoded { dtype, bytes: package::encode_tensor(t, dtype).unwrap() };
    }
    spec
}

fn loaded(package: &[u8]) -> Runtime {
    let mut rt = runtime();
    rt.load_model(package, 0).unwrap();
    rt
}

/// Greedy tokens and the logits behind each one (exact count: end-of-generation ignored).
fn greedy(rt: &mut Runtime) -> (Vec<u32>, Vec<Vec<u32>>) {
    rt.generate_start(PROMPT, N_STEPS, GEN_IGNORE_EOG).unwrap();
    let bits = |l: Vec<f32>| l.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut logits = vec![bits(rt.logits().unwrap())];
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
        logits.push(bits(rt.logits().unwrap()));
    }
    (rt.read_u32s(result_kind::TOKENS).unwrap(), logits)
}

fn assembly(rt: &mut Runtime) -> (u32, u32) {
    let d = diagnostics(rt);
    (d.adapters_applied, d.assembly_state_crc)
}

fn randoms(rng: &mut SplitMix64, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| scale * rng.next_signed()).collect()
}

/// The parent's matrices stored in a dtype v1 has not got, with `(rows, cols, dtype)`.
fn v2_matrices(pkg: &[u8]) -> Vec<(String, u32, u32, DType)> {
    let parsed = tinyrustlm::format::parse(pkg).unwrap();
    parsed
        .tensors
        .iter()
        .filter(|t| t.rows > 1 && !DType::V1_STORAGE.contains(&t.dtype))
        .map(|t| (t.name.clone(), t.rows as u32, t.row_len as u32, t.dtype))
        .collect()
}

/// Dense (f32 and q8_0 payloads), sparse and low-rank adapters on every v2-dtype matrix of the
/// parent. The sparse one touches the first and last element and one in the middle of each, so
/// most blocks (and, for the 512-wide rows, whole super-blocks) stay as shipped.
fn adapters_for(pkg: &[u8], id: ModelIdentity, seed: u64) -> Vec<(&'static str, AdapterSpec)> {
    let mut rng = SplitMix64(seed);
    let (mut dense_f32, mut dense_q8, mut sparse, mut low_rank) = (vec![], vec![], vec![], vec![]);
    for (name, rows, cols, _) in v2_matrices(pkg) {
        let n = (rows * cols) as usize;
        let target = |delta| TargetSpec { name: name.clone(), rows, cols, delta };
        dense_f32.push(target(Delta::DenseF32(randoms(&mut rng, n, 0.05))));
        let row_bytes = DType::Q8_0.row_bytes(cols as usize).unwrap();
        let mut q8 = vec![0u8; rows as usize * row_bytes];
        for dst in q8.chunks_exact_mut(row_bytes) {
            quant::quantize_row(DType::Q8_0, &randoms(&mut rng, cols as usize, 0.05), dst);
        }
        dense_q8.push(target(Delta::DenseQ8_0(q8)));
        sparse.push(target(Delta::Sparse(vec![(0, 0.3), (rows * cols / 2 + 3, -0.2), (rows * cols - 1, 0.25)])));
        low_rank.push(target(Delta::LowRank { rank: 2, a: randoms(&mut rng, 2 * cols as usize, 0.3), b: randoms(&mut rng, 2 * rows as usize, 0.3) }));
    }
    let spec = |kind, targets| AdapterSpec { kind, parent: id, scale: 0.75, targets };
    vec![
        ("dense f32", spec(Kind::Dense, dense_f32)),
        ("dense q8_0", spec(Kind::Dense, dense_q8)),
        ("sparse", spec(Kind::Sparse, sparse)),
        ("low-rank", spec(Kind::LowRank, low_rank)),
    ]
}

/// `scale · Δ` in f64 for the whole target, row-major.
fn addends(t: &TargetSpec, scale: f64) -> Vec<f64> {
    let (rows, cols) = (t.rows as usize, t.cols as usize);
    let mut add = vec![0f64; rows * cols];
    match &t.delta {
        Delta::DenseF32(d) => add.iter_mut().zip(d).for_each(|(a, &d)| *a = scale * d as f64),
        Delta::DenseQ8_0(b) => {
            let d = harness::import::dequantize(DType::Q8_0, b).unwrap();
            add.iter_mut().zip(&d).for_each(|(a, &d)| *a = scale * d as f64);
        }
        Delta::Sparse(pairs) => pairs.iter().for_each(|&(i, v)| add[i as usize] = scale * v as f64),
        Delta::LowRank { rank, a, b } => {
            let r = *rank as usize;
            for (i, row) in add.chunks_exact_mut(cols).enumerate() {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = scale * (0..r).map(|k| b[i * r + k] as f64 * a[k * cols + j] as f64).sum::<f64>();
                }
            }
        }
    }
    add
}

/// The child package as FORMAT.md's adapter rule says, computed here: the parent tensor decoded by
/// the importer's dequantizer, each nonzero addend summed in f64 and rounded once to f32, and each
/// block (super-block for k-quants) holding one requantized with ggml's reference quantizer; the
/// other blocks keep their bytes. Returns the package and how many blocks were left as shipped.
fn host_child(parent: &[u8], spec: &AdapterSpec) -> (Vec<u8>, usize) {
    let parsed = tinyrustlm::format::parse(parent).unwrap();
    let mut out = parent.to_vec();
    let mut untouched = 0;
    for t in &spec.targets {
        let e = parsed.tensors.iter().find(|e| e.name == t.name).unwrap();
        let (unit, unit_bytes) = (e.dtype.block_elems(), e.dtype.block_bytes());
        let mut values = harness::import::dequantize(e.dtype, &parent[e.range.clone()]).unwrap();
        let add = addends(t, spec.scale as f64);
        for (b, (v, a)) in values.chunks_exact_mut(unit).zip(add.chunks_exact(unit)).enumerate() {
            if a.iter().all(|&a| a == 0.0) {
                untouched += 1;
                continue;
            }
            for (x, &a) in v.iter_mut().zip(a).filter(|(_, &a)| a != 0.0) {
                *x = (*x as f64 + a) as f32;
            }
            let at = e.range.start + b * unit_bytes;
            quant::quantize_row(e.dtype, v, &mut out[at..at + unit_bytes]);
        }
    }
    package::reseal(&mut out);
    (out, untouched)
}

#[test]
fn each_kind_on_every_v2_dtype_gives_exactly_the_host_computed_child() {
    for (arch, parent) in parents() {
        let id = tinyrustlm::format::parse(&parent).unwrap().identity;
        let dtypes: Vec<&str> = v2_matrices(&parent).iter().map(|m| m.3.name()).collect();
        println!("{arch}: adapter targets in {dtypes:?}");
        let (_, parent_logits) = greedy(&mut loaded(&parent));
        for (what, spec) in adapters_for(&parent, id, 1) {
            let bytes = spec.to_bytes();
            let mut rt = loaded(&parent);
            rt.apply_adapter(&bytes).unwrap_or_else(|e| panic!("{arch} {what}: {e:#}"));
            assert_eq!(assembly(&mut rt), (1, assembly_state(&id, &[digest(&bytes)])), "{arch} {what}: diagnostics");
            let (tokens, logits) = greedy(&mut rt);
            let (child, untouched) = host_child(&parent, &spec);
            assert_eq!(child, apply_to_package(&parent, &spec).unwrap(), "{arch} {what}: the harness's patcher disagrees with the rule computed here");
            if what == "sparse" {
                assert!(untouched > 0, "{arch} sparse: every block touched, the untouched-block path is not exercised");
            }
            let (child_tokens, child_logits) = greedy(&mut loaded(&child));
            assert!(logits == child_logits, "{arch} {what}: logits differ from the host-computed child package");
            assert_eq!(tokens, child_tokens, "{arch} {what}");
            assert!(logits != parent_logits, "{arch} {what}: the adapter changed nothing");
        }
    }
}

#[test]
fn remove_and_reset_on_v2_parents_return_to_the_parent_bit_for_bit() {
    for (arch, parent) in parents() {
        let id = tinyrustlm::format::parse(&parent).unwrap().identity;
        let mut rt = loaded(&parent);
        let (_, base_logits) = greedy(&mut rt);
        let base = assembly(&mut rt);
        assert_eq!(base, (0, crc32fast::hash(&id.to_bytes())), "{arch}: state 0 is the CRC32 of the identity");
        // Every kind stacked on the same tensors, so removal order matters.
        let stack: Vec<Vec<u8>> = adapters_for(&parent, id, 4).into_iter().map(|(_, s)| s.to_bytes()).collect();
        let mut states = vec![(base, base_logits.clone())];
        for (k, bytes) in stack.iter().enumerate() {
            rt.apply_adapter(bytes).unwrap();
            let digests: Vec<u32> = stack[..=k].iter().map(|b| digest(b)).collect();
            let a = assembly(&mut rt);
            assert_eq!(a, (k as u32 + 1, assembly_state(&id, &digests)), "{arch}: chain after {} adapters", k + 1);
            states.push((a, greedy(&mut rt).1));
        }
        for k in (1..stack.len()).rev() {
            rt.remove_last_adapter().unwrap();
            assert_eq!(assembly(&mut rt), states[k].0, "{arch}: state after removing down to {k}");
            assert!(greedy(&mut rt).1 == states[k].1, "{arch}: logits after removing down to {k}");
        }
        rt.remove_last_adapter().unwrap();
        assert_eq!(assembly(&mut rt), base, "{arch}: removing the last one");
        assert!(greedy(&mut rt).1 == base_logits, "{arch}: remove did not restore the parent");
        for bytes in &stack {
            rt.apply_adapter(bytes).unwrap();
        }
        rt.reset_adapters().unwrap();
        assert_eq!(assembly(&mut rt), base, "{arch}: reset");
        assert!(greedy(&mut rt).1 == base_logits, "{arch}: reset did not restore the parent");
    }
}
