//! Seeds: valid inputs for each target, built from the harness's own writers, so the fuzzers start
//! past the magic, lengths and checksums and mutate from there. They are checked in under
//! `harness/tests/data/fuzz/<target>/seed-*` (the stable test checks they are current and accepted;
//! `TRL_WRITE_FUZZ_SEEDS=1` rewrites them).

use harness::adapter::{AdapterSpec, Delta, Kind, TargetSpec};
use harness::package::{self, RawPackage, RawTensor};
use harness::spec::{ModelSpec, PreTokenizer, TensorData, TokenizerSpec};
use harness::synth::synthetic_model;
use tinyrustlm::error::Status;
use tinyrustlm::quant::DType;

use super::abi_sequence::{Op, ProgramWriter};
use super::checks::{byte_level_spec, parent_packages, sentencepiece_spec, tiny_shape, v2_models, v2_packages, MODEL_SEED};

pub const TARGETS: &[&str] = &["slm1", "adp1", "asp1", "alr1", "tokenizer", "eval_cases", "gguf", "abi_sequence", "ses1"];

/// `(file name, bytes)` of every seed of `target`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "slm1" => slm1(),
        "adp1" => adapters(Kind::Dense),
        "asp1" => adapters(Kind::Sparse),
        "alr1" => adapters(Kind::LowRank),
        "tokenizer" => tokenizer(),
        "eval_cases" => eval_cases(),
        "gguf" => gguf(),
        "abi_sequence" => abi_sequence(),
        "ses1" => ses1(),
        _ => panic!("no fuzz target {target}"),
    }
}

/// `(file name, bytes, status)` of the checked-in inputs of `target` that must be refused with that
/// status (`reject-*`; rewritten with the seeds).
pub fn rejections(target: &str) -> Vec<(String, Vec<u8>, Status)> {
    match target {
        "slm1" => v2_package_rejections(),
        _ => vec![],
    }
}

/// Session snapshots of the session model: greedy with a pending token, seeded sampling, and a
/// conversation saved right after its prompt (no pending token).
fn ses1() -> Vec<(String, Vec<u8>)> {
    use super::checks::{saved_session, session_engine};
    use tinyrustlm::sampler::SamplingParams;
    let mut out = Vec::new();
    let seeded = SamplingParams { temperature: 0.8, top_k: 20, seed: 99, ..SamplingParams::default() };
    for (name, sampling, prompt, n) in [
        ("seed-greedy.ses", SamplingParams::default(), &b"abc"[..], 4),
        ("seed-seeded.ses", seeded, &b"hello"[..], 6),
        ("seed-prompt-only.ses", SamplingParams::default(), &b"xyz"[..], 0),
    ] {
        let mut engine = session_engine();
        engine.set_sampling(sampling).unwrap();
        engine.generate(prompt, n, tinyrustlm::engine::GEN_IGNORE_EOG).unwrap();
        engine.save_session().unwrap();
        out.push((name.to_string(), saved_session(&mut engine)));
    }
    out
}

/// The synthetic model with another tokenizer (the embedding resized to its vocabulary).
fn with_tokenizer(mut spec: ModelSpec, tokenizer: TokenizerSpec) -> ModelSpec {
    let vocab = tokenizer.tokens.len() as u32;
    spec.hparams.vocab_size = vocab;
    spec.tokenizer = tokenizer;
    for t in spec.tensors.iter_mut().filter(|t| t.name == "token_embd.weight" || t.name == "output.weight") {
        let n = (vocab * t.dims[1]) as usize;
        t.dims[0] = vocab;
        t.data = TensorData::F32((0..n).map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3).collect());
    }
    spec
}

fn slm1() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for quant in DType::V1_STORAGE {
        for tied in [true, false] {
            let spec = synthetic_model(&tiny_shape(tied), MODEL_SEED);
            let name = format!("seed-{}-{}.slm", quant.name(), if tied { "tied" } else { "untied" });
            out.push((name, package::write(&spec, quant).unwrap()));
        }
    }
    let base = synthetic_model(&tiny_shape(true), MODEL_SEED);
    out.push(("seed-q8_0-gpt2.slm".into(), package::write(&with_tokenizer(base.clone(), byte_level_spec(PreTokenizer::Smollm)), DType::Q8_0).unwrap()));
    out.push(("seed-q4_1-sentencepiece.slm".into(), package::write(&with_tokenizer(base, sentencepiece_spec(true)), DType::Q4_1).unwrap()));
    for (arch, pkg) in v2_packages() {
        out.push((format!("seed-v2-{arch}-mixed.slm"), pkg));
    }
    out
}

/// A raw-package edit and the status the runtime must answer it with.
type PackageEdit = (&'static str, fn(&mut RawPackage), Status);

/// The SLM1 v2 rules, one package breaking each (the qwen2 v2 seed with one field or tensor
/// changed, checksums recomputed): checked in as `slm1/reject-v2-*.slm`, so the fuzzer starts from
/// every v2 rule's edge and the replay proves each is refused with its status, never a trap.
/// `package_rejections.rs` tests each rule's field and order; these are its corpus form.
pub fn v2_package_rejections() -> Vec<(String, Vec<u8>, Status)> {
    fn arch(r: &mut RawPackage) -> &mut [u32; 8] {
        r.arch_block.as_mut().expect("a v2 package")
    }
    fn tensor<'a>(r: &'a mut RawPackage, name: &str) -> &'a mut RawTensor {
        r.tensors.iter_mut().find(|t| t.name == name.as_bytes()).unwrap_or_else(|| panic!("no tensor {name}"))
    }
    /// Sets the f16 field `field` of block `block` of tensor `name` to +inf.
    fn infinite_scale(r: &mut RawPackage, name: &str, block: usize, field: &str) {
        let t = tensor(r, name);
        let dtype = DType::from_code(t.dtype).unwrap();
        let at = block * dtype.block_bytes() + dtype.layout().offset_of(field);
        t.data[at..at + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
    }
    let edits: &[PackageEdit] = &[
        ("format_version-3", |r| r.format_version = 3, Status::UnsupportedVersion),
        ("header_len-128", |r| r.header_len = 128, Status::BadHeaderLength),
        ("arch-4", |r| arch(r)[0] = 4, Status::BadHyperparameter),
        ("arch-gemma3-with-qkv-bias", |r| arch(r)[0] = 2, Status::BadFlags),
        ("arch-llama-with-qkv-bias", |r| arch(r)[0] = 0, Status::BadFlags),
        ("arch_flags-bit-1", |r| arch(r)[4] |= 2, Status::BadFlags),
        ("sliding_window-on-qwen2", |r| arch(r)[5..8].copy_from_slice(&[4, 2, 10_000f32.to_bits()]), Status::BadHyperparameter),
        ("swa_pattern-without-a-window", |r| arch(r)[6] = 6, Status::BadHyperparameter),
        ("rope_theta_local-without-a-window", |r| arch(r)[7] = 1, Status::BadHyperparameter),
        ("head_dim-0", |r| arch(r)[1] = 0, Status::BadHyperparameter),
        ("head_dim-odd", |r| arch(r)[1] = 127, Status::BadHyperparameter),
        ("head_dim-1026", |r| arch(r)[1] = 1026, Status::BadHyperparameter),
        ("head_dim-against-the-shapes", |r| arch(r)[1] = 64, Status::BadTensorShape),
        ("rope_kind-2", |r| arch(r)[2] = 2, Status::BadHyperparameter),
        ("norm_kind-1", |r| arch(r)[3] = 1, Status::BadHyperparameter),
        ("quant_mode-not-dominant", |r| r.quant_mode = DType::Q5_0.code() as u32, Status::BadQuantMode),
        ("quant_mode-unknown", |r| r.quant_mode = 200, Status::BadQuantMode),
        ("dtype-code-10", |r| tensor(r, "blk.0.attn_q.weight").dtype = 10, Status::UnsupportedDtype),
        // 32-wide rows relabelled q4_k: not a whole 256-element super-block.
        ("q4_k-row-of-32", |r| tensor(r, "blk.0.attn_q.weight").dtype = DType::Q4_K.code(), Status::BadTensorShape),
        ("bias-missing", |r| r.tensors.retain(|t| t.name != b"blk.0.attn_v.bias"), Status::MissingTensor),
        (
            "bias-stored-f16",
            |r| {
                let t = tensor(r, "blk.0.attn_k.bias");
                let values: Vec<f32> = t.data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                let mut f16 = vec![0u8; DType::F16.row_bytes(values.len()).unwrap()];
                tinyrustlm::quant::quantize_row(DType::F16, &values, &mut f16);
                (t.data, t.dtype) = (f16, DType::F16.code());
            },
            Status::BadQuantMode,
        ),
        ("biases-without-the-flag", |r| arch(r)[4] = 0, Status::UnknownTensor),
        ("q4_k-infinite-d", |r| infinite_scale(r, "blk.0.attn_output.weight", 5, "d"), Status::BadTensorData),
        ("q4_k-infinite-dmin", |r| infinite_scale(r, "blk.0.attn_output.weight", 0, "dmin"), Status::BadTensorData),
        ("q6_k-infinite-d", |r| infinite_scale(r, "blk.0.ffn_down.weight", 31, "d"), Status::BadTensorData),
        ("q5_0-infinite-d", |r| infinite_scale(r, "blk.0.attn_q.weight", 3, "d"), Status::BadTensorData),
        ("q5_1-infinite-m", |r| infinite_scale(r, "blk.0.attn_v.weight", 0, "m"), Status::BadTensorData),
        ("f16-infinite-element", |r| infinite_scale(r, "blk.0.attn_k.weight", 7, "value"), Status::BadTensorData),
    ];
    // The gemma3 seed's own rules: its window fields and the tensors only it has.
    let gemma3_edits: &[PackageEdit] = &[
        ("sliding_window-above-max_context", |r| arch(r)[5] = r.hparams[6] + 1, Status::BadHyperparameter),
        ("swa_pattern-0-with-a-window", |r| arch(r)[6] = 0, Status::BadHyperparameter),
        ("swa_pattern-257", |r| arch(r)[6] = 257, Status::BadHyperparameter),
        ("rope_theta_local-nan", |r| arch(r)[7] = f32::NAN.to_bits(), Status::BadHyperparameter),
        ("window-on-qwen3", |r| arch(r)[0] = 3, Status::BadHyperparameter),
        ("post_ffw_norm-missing", |r| r.tensors.retain(|t| t.name != b"blk.0.post_ffw_norm.weight"), Status::MissingTensor),
        ("attn_k_norm-missing", |r| r.tensors.retain(|t| t.name != b"blk.0.attn_k_norm.weight"), Status::MissingTensor),
    ];
    let base = |arch: &str| {
        let (_, spec) = v2_models().into_iter().find(|(a, _)| *a == arch).unwrap();
        package::build_as_shipped(&spec, |_| {}).unwrap()
    };
    let (qwen2, gemma3) = (base("qwen2"), base("gemma3"));
    let cases = edits.iter().map(|e| ("", &qwen2, e)).chain(gemma3_edits.iter().map(|e| ("gemma3-", &gemma3, e)));
    cases
        .map(|(prefix, good, (name, edit, status))| {
            let mut raw = good.clone();
            edit(&mut raw);
            (format!("reject-v2-{prefix}{name}.slm"), raw.to_bytes().0, *status)
        })
        .collect()
}

fn ramp(n: u32, step: f32) -> Vec<f32> {
    (0..n).map(|i| ((i % 5) as f32 - 2.0) * step).collect()
}

fn adapters(kind: Kind) -> Vec<(String, Vec<u8>)> {
    let shape = tiny_shape(true);
    let (d, kv, ffn, vocab) = (shape.dim, shape.dim / shape.n_heads * shape.n_kv_heads, shape.ffn_dim, 258u32);
    let mut out = Vec::new();
    for (pkg, quant) in parent_packages().iter().zip(DType::V1_STORAGE) {
        let parent = tinyrustlm::format::parse(pkg).unwrap().identity;
        let targets = match kind {
            Kind::Dense => {
                let mut q8 = vec![0u8; (kv * d / 32 * 34) as usize];
                for (row, dst) in q8.chunks_exact_mut((d / 32 * 34) as usize).enumerate() {
                    tinyrustlm::quant::quantize_row(DType::Q8_0, &ramp(d, 0.01 * (row + 1) as f32), dst);
                }
                vec![
                    TargetSpec { name: "blk.0.attn_q.weight".into(), rows: d, cols: d, delta: Delta::DenseF32(ramp(d * d, 0.01)) },
                    TargetSpec { name: "blk.0.attn_v.weight".into(), rows: kv, cols: d, delta: Delta::DenseQ8_0(q8) },
                    TargetSpec { name: "blk.0.ffn_norm.weight".into(), rows: 1, cols: d, delta: Delta::DenseF32(ramp(d, 0.05)) },
                ]
            }
            Kind::Sparse => vec![
                TargetSpec {
                    name: "token_embd.weight".into(),
                    rows: vocab,
                    cols: d,
                    delta: Delta::Sparse(vec![(1, 0.5), (33 * d + 2, -0.25), (vocab * d - 1, 1.0)]),
                },
                TargetSpec { name: "blk.0.ffn_up.weight".into(), rows: ffn, cols: d, delta: Delta::Sparse(vec![(0, 0.125), (40, 2.0), (41, -2.0)]) },
            ],
            Kind::LowRank => vec![
                TargetSpec {
                    name: "blk.0.attn_output.weight".into(),
                    rows: d,
                    cols: d,
                    delta: Delta::LowRank { rank: 2, a: ramp(2 * d, 0.1), b: ramp(d * 2, 0.1) },
                },
                TargetSpec { name: "blk.0.ffn_gate.weight".into(), rows: ffn, cols: d, delta: Delta::LowRank { rank: 1, a: ramp(d, 0.2), b: ramp(ffn, 0.2) } },
            ],
        };
        let spec = AdapterSpec { kind, parent, scale: 0.75, targets };
        out.push((format!("seed-{}-{}.adp", kind.name(), quant.name()), spec.to_bytes()));
    }
    for (arch, pkg) in v2_packages() {
        out.push((format!("seed-{}-v2-{arch}.adp", kind.name()), v2_adapter(kind, &pkg).to_bytes()));
    }
    out
}

/// An adapter of `kind` on the matrices of a v2 parent that are not in v1's dtypes (every k-quant,
/// q5_0, q5_1, f16), so the patcher's 256-element super-blocks and 32-blocks of five-bit and f16
/// tensors are where the fuzzer starts.
fn v2_adapter(kind: Kind, pkg: &[u8]) -> AdapterSpec {
    let parsed = tinyrustlm::format::parse(pkg).unwrap();
    let targets = parsed
        .tensors
        .iter()
        .filter(|t| !DType::V1_STORAGE.contains(&t.dtype) && t.rows > 1)
        .enumerate()
        .map(|(k, t)| {
            let (rows, cols) = (t.rows as u32, t.row_len as u32);
            let delta = match kind {
                // Alternate f32 and q8_0 payloads over the targets.
                Kind::Dense if k % 2 == 0 => Delta::DenseF32(ramp(rows * cols, 0.01)),
                Kind::Dense => {
                    let row_bytes = DType::Q8_0.row_bytes(cols as usize).unwrap();
                    let mut q8 = vec![0u8; rows as usize * row_bytes];
                    for (row, dst) in q8.chunks_exact_mut(row_bytes).enumerate() {
                        tinyrustlm::quant::quantize_row(DType::Q8_0, &ramp(cols, 0.01 * (row % 7 + 1) as f32), dst);
                    }
                    Delta::DenseQ8_0(q8)
                }
                // One element in the first block, one in the last: the blocks between stay as shipped.
                Kind::Sparse => Delta::Sparse(vec![(1, 0.5), (rows * cols - 1, -0.25)]),
                Kind::LowRank => Delta::LowRank { rank: 1, a: ramp(cols, 0.1), b: ramp(rows, 0.1) },
            };
            TargetSpec { name: t.name.to_string(), rows, cols, delta }
        })
        .collect();
    AdapterSpec { kind, parent: parsed.identity, scale: 0.75, targets }
}

fn tokenizer() -> Vec<(String, Vec<u8>)> {
    let texts: [&[u8]; 4] = [
        b"Hello world, it's 2026: the caf\xc3\xa9 in 123 \xe4\xb8\x96\xe7\x95\x8c!\n\n",
        b"<|im_start|>user\nthe and<|im_end|> <s>",
        b"  theing\xf0\x9f\x91\x8b\xff\xe4\xb8 er re",
        b"",
    ];
    let n = super::checks::tokenizer_specs().len() as u8;
    let mut out = Vec::new();
    for t in 0..n {
        for (i, text) in texts.iter().enumerate() {
            let selector = t | if i % 2 == 1 { 0x80 } else { 0 };
            let mut bytes = vec![selector];
            bytes.extend_from_slice(text);
            out.push((format!("seed-{t}-{i}.txt"), bytes));
        }
    }
    out
}

fn eval_cases() -> Vec<(String, Vec<u8>)> {
    vec![
        (
            "seed-small.jsonl".into(),
            b"{\"suite\": \"fuzz\", \"version\": \"1\", \"min_pass_rate\": 0.5, \"system\": \"Be brief.\"}\n\
{\"id\": \"a\", \"prompt\": \"ab\", \"expected\": \"x\", \"match\": \"prefix\", \"max_tokens\": 3}\n\
\n\
{\"id\": \"b\\u00e9\", \"prompt\": \"h\\ti \\\"q\\\" \\\\\", \"chat\": false, \"expected\": \"\", \"match\": \"trim\", \"max_tokens\": 2, \"stop\": [\"a\", \"\\n\"]}\n"
                .to_vec(),
        ),
        (
            "seed-exact.jsonl".into(),
            b"{\"suite\":\"s\",\"version\":\"2\",\"min_pass_rate\":1}\r\n{\"id\":\"only\",\"prompt\":\"\xc3\xa9\",\"expected\":\"ab\",\"match\":\"exact\",\"max_tokens\":4,\"chat\":false}"
                .to_vec(),
        ),
    ]
}

// ---- GGUF ------------------------------------------------------------------------------------

const GGML_F32: u32 = 0;
const GGML_F16: u32 = 1;
const GGML_Q4_0: u32 = 2;
const GGML_Q4_1: u32 = 3;
const GGML_Q8_0: u32 = 8;
const GGML_BF16: u32 = 30;

enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strs(Vec<String>),
    I32s(Vec<i32>),
    F32s(Vec<f32>),
}

fn gguf_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// A GGUF v3 file: metadata, tensor infos, 32-byte aligned data.
fn gguf_file(meta: &[(&str, Meta)], tensors: &[(&str, Vec<u64>, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((meta.len() as u64).to_le_bytes());
    for (key, v) in meta {
        gguf_str(&mut out, key);
        match v {
            Meta::U32(x) => out.extend(4u32.to_le_bytes().into_iter().chain(x.to_le_bytes())),
            Meta::F32(x) => out.extend(6u32.to_le_bytes().into_iter().chain(x.to_le_bytes())),
            Meta::Bool(x) => out.extend(7u32.to_le_bytes().into_iter().chain([*x as u8])),
            Meta::Str(s) => {
                out.extend(8u32.to_le_bytes());
                gguf_str(&mut out, s);
            }
            Meta::Strs(items) => {
                out.extend(9u32.to_le_bytes().into_iter().chain(8u32.to_le_bytes()).chain((items.len() as u64).to_le_bytes()));
                items.iter().for_each(|s| gguf_str(&mut out, s));
            }
            Meta::I32s(items) => {
                out.extend(9u32.to_le_bytes().into_iter().chain(5u32.to_le_bytes()).chain((items.len() as u64).to_le_bytes()));
                items.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
            Meta::F32s(items) => {
                out.extend(9u32.to_le_bytes().into_iter().chain(6u32.to_le_bytes()).chain((items.len() as u64).to_le_bytes()));
                items.iter().for_each(|x| out.extend(x.to_le_bytes()));
            }
        }
    }
    let mut offset = 0u64;
    for (name, ne, ty, data) in tensors {
        gguf_str(&mut out, name);
        out.extend((ne.len() as u32).to_le_bytes());
        ne.iter().for_each(|d| out.extend(d.to_le_bytes()));
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset = (offset + data.len() as u64).div_ceil(32) * 32;
    }
    out.resize(out.len().div_ceil(32) * 32, 0);
    let data_start = out.len();
    let mut offset = 0usize;
    for (_, _, _, data) in tensors {
        out.resize(data_start + offset, 0);
        out.extend(data);
        offset = (offset + data.len()).div_ceil(32) * 32;
    }
    out
}

/// Tensor bytes of `n` deterministic values in GGML type `ty`.
fn ggml_data(ty: u32, n: usize, seed: usize) -> Vec<u8> {
    let values: Vec<f32> = (0..n).map(|i| (((i * 31 + seed * 17) % 101) as f32 / 101.0 - 0.5) * 0.2).collect();
    let f16 = |x: f32| {
        // Values here are small normals or zero: round-to-nearest of the top mantissa bits is exact
        // enough for seeds (any finite f16 is valid input).
        let b = x.to_bits();
        let sign = ((b >> 16) & 0x8000) as u16;
        let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
        if x == 0.0 || exp <= 0 {
            sign
        } else {
            sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
        }
    };
    match ty {
        GGML_F32 => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        GGML_F16 => values.iter().flat_map(|&x| f16(x).to_le_bytes()).collect(),
        GGML_BF16 => values.iter().flat_map(|x| ((x.to_bits() >> 16) as u16).to_le_bytes()).collect(),
        _ => {
            let dtype = match ty {
                GGML_Q8_0 => DType::Q8_0,
                GGML_Q4_0 => DType::Q4_0,
                _ => DType::Q4_1,
            };
            let mut out = vec![0u8; dtype.row_bytes(n).unwrap()];
            tinyrustlm::quant::quantize_row(dtype, &values, &mut out);
            out
        }
    }
}

/// A one-layer llama (dim 32, 2 heads / 1 KV head, ffn 64) with a GPT-2 or SentencePiece
/// vocabulary and every tensor type the importer reads.
fn tiny_gguf(sentencepiece: bool, untied: bool) -> Vec<u8> {
    let (tokens, types, scores, merges, model): (Vec<String>, Vec<i32>, Vec<f32>, Vec<String>, &str) = if sentencepiece {
        let mut t: Vec<String> = ["<unk>", "<s>", "</s>"].map(String::from).to_vec();
        t.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
        t.extend(["\u{2581}", "a", "b", "\u{2581}a", "ab", "\u{2581}ab", "é"].map(String::from));
        let types = (0..t.len())
            .map(|i| match i {
                0 => 2,
                1 | 2 => 3,
                3..=258 => 6,
                _ => 1,
            })
            .collect();
        let scores = (0..t.len()).map(|i| -(i as f32)).collect();
        (t, types, scores, vec![], "llama")
    } else {
        let t: Vec<String> =
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a", "b", "\u{120}", "\u{10a}", "ab", "\u{120}a", "\u{120}ab", "é", "Ã", "©", "Ã©"]
                .map(String::from)
                .to_vec();
        let types = (0..t.len()).map(|i| if i < 3 { 3 } else { 1 }).collect();
        (t, types, vec![], ["a b", "\u{120} a", "\u{120}a b", "Ã ©"].map(String::from).to_vec(), "gpt2")
    };
    let vocab = tokens.len() as u64;
    let mut meta = vec![
        ("general.architecture", Meta::Str("llama".into())),
        ("llama.block_count", Meta::U32(1)),
        ("llama.context_length", Meta::U32(64)),
        ("llama.embedding_length", Meta::U32(32)),
        ("llama.feed_forward_length", Meta::U32(64)),
        ("llama.attention.head_count", Meta::U32(2)),
        ("llama.attention.head_count_kv", Meta::U32(1)),
        ("llama.rope.freq_base", Meta::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5)),
        ("tokenizer.ggml.model", Meta::Str(model.into())),
        ("tokenizer.ggml.tokens", Meta::Strs(tokens)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.bos_token_id", Meta::U32(1)),
        ("tokenizer.ggml.eos_token_id", Meta::U32(2)),
    ];
    if sentencepiece {
        meta.push(("tokenizer.ggml.scores", Meta::F32s(scores)));
        meta.push(("tokenizer.ggml.unknown_token_id", Meta::U32(0)));
        meta.push(("tokenizer.ggml.add_space_prefix", Meta::Bool(true)));
    } else {
        meta.push(("tokenizer.ggml.pre", Meta::Str("smollm".into())));
        meta.push(("tokenizer.ggml.merges", Meta::Strs(merges)));
        meta.push(("tokenizer.ggml.add_bos_token", Meta::Bool(false)));
        meta.push(("tokenizer.chat_template", Meta::Str("{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}".into())));
    }
    let mut tensors = vec![
        ("token_embd.weight", vec![32, vocab], GGML_Q8_0, ggml_data(GGML_Q8_0, 32 * vocab as usize, 1)),
        ("blk.0.attn_norm.weight", vec![32], GGML_F32, ggml_data(GGML_F32, 32, 2)),
        ("blk.0.attn_q.weight", vec![32, 32], GGML_F32, ggml_data(GGML_F32, 32 * 32, 3)),
        ("blk.0.attn_k.weight", vec![32, 16], GGML_F16, ggml_data(GGML_F16, 32 * 16, 4)),
        ("blk.0.attn_v.weight", vec![32, 16], GGML_BF16, ggml_data(GGML_BF16, 32 * 16, 5)),
        ("blk.0.attn_output.weight", vec![32, 32], GGML_Q4_0, ggml_data(GGML_Q4_0, 32 * 32, 6)),
        ("blk.0.ffn_norm.weight", vec![32], GGML_F32, ggml_data(GGML_F32, 32, 7)),
        ("blk.0.ffn_gate.weight", vec![32, 64], GGML_Q4_1, ggml_data(GGML_Q4_1, 32 * 64, 8)),
        ("blk.0.ffn_up.weight", vec![32, 64], GGML_Q8_0, ggml_data(GGML_Q8_0, 32 * 64, 9)),
        ("blk.0.ffn_down.weight", vec![64, 32], GGML_F32, ggml_data(GGML_F32, 64 * 32, 10)),
        ("output_norm.weight", vec![32], GGML_F32, ggml_data(GGML_F32, 32, 11)),
    ];
    if untied {
        tensors.push(("output.weight", vec![32, vocab], GGML_F16, ggml_data(GGML_F16, 32 * vocab as usize, 12)));
    }
    gguf_file(&meta, &tensors)
}

fn gguf() -> Vec<(String, Vec<u8>)> {
    vec![
        ("seed-gpt2-tied.gguf".into(), tiny_gguf(false, false)),
        ("seed-gpt2-untied.gguf".into(), tiny_gguf(false, true)),
        ("seed-sentencepiece.gguf".into(), tiny_gguf(true, false)),
    ]
}

// ---- ABI programs ----------------------------------------------------------------------------

fn abi_sequence() -> Vec<(String, Vec<u8>)> {
    let mut generate = ProgramWriter::default();
    generate
        .put_package()
        .load_newest()
        .set_sampling()
        .put_text(0)
        .tokenize_newest(1)
        .generate_newest(8, 0)
        .alloc(64)
        .alloc(4)
        .read_result(0)
        .read_result(1)
        .read_result(3)
        .alloc(200)
        .read_diagnostics_newest();

    let mut stream = ProgramWriter::default();
    stream
        .put_package()
        .load_newest()
        .put_text(1)
        .stop_string_newest()
        .put_text(0)
        .generate_start_newest(10, 1)
        .step(2)
        .alloc(3)
        .alloc(4)
        .read_result(0)
        .step(3)
        .read_result(0)
        .read_result(2)
        .put_text(3)
        .generate_start_newest(4, 2)
        .step(1)
        .raw(Op::Reset)
        .step(1)
        .last_error();

    let mut adapters = ProgramWriter::default();
    adapters.put_package().load_newest();
    for i in 0..4 {
        adapters.put_adapter(i).validate_newest().apply_newest();
    }
    adapters
        .put_text(0)
        .generate_newest(3, 0)
        .remove_last_adapter()
        .remove_last_adapter()
        .reset_adapters()
        .remove_last_adapter()
        .alloc(128)
        .read_diagnostics_newest();

    let mut eval = ProgramWriter::default();
    eval.put_package()
        .load_newest()
        .put_eval()
        .run_eval_newest()
        .alloc(255)
        .alloc(4)
        .read_result(6)
        .raw(Op::UnloadModel)
        .put_eval()
        .run_eval_newest()
        .alloc(40)
        .alloc(4)
        .last_error();

    let mut misuse = ProgramWriter::default();
    misuse.put_text(0).generate_newest(4, 0).alloc(10).load_newest().put_package().load_newest().put_package().load_newest().raw(Op::Dealloc).0.extend([0, 0]);
    misuse.raw(Op::GenerateStep).count(5);
    misuse.alloc(2).alloc(4).last_error().raw(Op::AbiVersion);

    vec![
        ("seed-generate.bin".into(), generate.0),
        ("seed-stream.bin".into(), stream.0),
        ("seed-adapters.bin".into(), adapters.0),
        ("seed-eval.bin".into(), eval.0),
        ("seed-misuse.bin".into(), misuse.0),
    ]
}
