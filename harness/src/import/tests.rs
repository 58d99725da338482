//! Importer tests: every way a GGUF or llama2.c input can be rejected, and acceptance on small
//! files written here (and the stories260K checkpoint shipped under `tests/data/llama2c/`).

use super::dequant::dequantize;
use super::gguf::{Gguf, Value, MAX_ARRAY_LEN, MAX_KV, MAX_STRING_LEN, MAX_TENSORS};
use super::test_gguf::*;
use super::{canonical_tensors, import_gguf_bytes, import_llama2c_bytes};
use crate::spec::{token_type, ChatTemplate, PreTokenizer, TensorData, TokenizerKind};
use tinyrustlm::model::arch::{Arch, RopeKind};
use tinyrustlm::quant::DType;

/// The full error chain, as `{:#}` prints it.
fn gguf_err(bytes: &[u8]) -> String {
    format!("{:#}", Gguf::parse(bytes).expect_err("file must be rejected"))
}

fn import_err(b: &GgufBuilder) -> String {
    format!("{:#}", import_gguf_bytes(&b.build(), false).expect_err("import must fail"))
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "error {msg:?} should mention {p:?}");
    }
}

// ---- GGUF container -----------------------------------------------------------------------------

#[test]
fn well_formed_file_parses() {
    let (bytes, layout) = tiny_llama(false).build_with_layout();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.alignment, 32);
    assert_eq!(g.data_offset, layout.data_start as u64);
    assert_eq!(g.tensors.len(), 11);
    assert_eq!(g.get_str("general.architecture").unwrap(), Some("llama"));
    let t = g.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(t.ne, vec![DIM, KV_DIM]);
    assert_eq!(t.n_bytes, DIM * KV_DIM * 2);
    assert_eq!(g.tensor_data(t), &f16_data(&values((DIM * KV_DIM) as usize, 4))[..]);
}

#[test]
fn version_2_parses() {
    let mut b = tiny_llama(false);
    b.version = 2;
    assert_eq!(Gguf::parse(&b.build()).unwrap().version, 2);
}

#[test]
fn bad_magic() {
    let mut b = tiny_llama(false);
    b.magic = *b"GGML";
    assert_has(&gguf_err(&b.build()), &["bad magic", "GGUF"]);
}

#[test]
fn unsupported_versions() {
    for (version, what) in [(1, "version 1 is not supported"), (4, "version 4 is not supported"), (0x0300_0000, "big-endian")] {
        let mut b = tiny_llama(false);
        b.version = version;
        assert_has(&gguf_err(&b.build()), &[what]);
    }
}

#[test]
fn truncated_anywhere_is_an_error() {
    let (bytes, layout) = tiny_llama(true).build_with_layout();
    // Every cut through the header, metadata and tensor infos, and a sample of cuts through the data.
    let cuts = (0..layout.data_start).chain((layout.data_start..bytes.len()).step_by(97));
    for cut in cuts {
        assert!(Gguf::parse(&bytes[..cut]).is_err(), "file cut at {cut} of {} was accepted", bytes.len());
    }
    // Each section says where it stopped.
    assert_has(&gguf_err(&bytes[..2]), &["magic", "end of file"]);
    assert_has(&gguf_err(&bytes[..6]), &["GGUF version", "end of file"]);
    assert_has(&gguf_err(&bytes[..layout.kv_start - 4]), &["metadata count", "end of file"]);
    assert_has(&gguf_err(&bytes[..layout.kv_start + 20]), &["metadata"]);
    assert_has(&gguf_err(&bytes[..layout.infos_start + 10]), &["tensor info 0"]);
    assert_has(&gguf_err(&bytes[..layout.infos_end - 3]), &["tensor info 11", "output.weight", "data offset"]);
    assert_has(&gguf_err(&bytes[..bytes.len() - 1]), &["output.weight", "outside the file"]);
}

/// Corrupt bytes anywhere before the tensor data (and some inside it): import returns an error or
/// a model, never panics. A fixed xorshift sequence keeps the cases reproducible.
#[test]
fn corrupted_files_never_panic() {
    let (bytes, layout) = tiny_llama(true).build_with_layout();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % (layout.data_start as u64 + 256)) as usize;
            b[at] = match next() % 4 {
                0 => 0,
                1 => 0xff,
                _ => next() as u8,
            };
        }
        let _ = import_gguf_bytes(&b, false);
    }
}

#[test]
fn absurd_counts() {
    for (n_tensors, n_kv, what) in [
        (u64::MAX, 0, "tensor count"),
        (MAX_TENSORS + 1, 0, "tensor count"),
        (0, u64::MAX, "metadata count"),
        (0, MAX_KV + 1, "metadata count"),
        (MAX_TENSORS, 0, "need at least"),
        (0, MAX_KV, "need at least"),
    ] {
        let mut b = tiny_llama(false);
        b.n_tensors_override = Some(n_tensors);
        b.n_kv_override = Some(n_kv);
        assert_has(&gguf_err(&b.build()), &[what]);
    }
}

/// A header declaring one kv, followed by `kv_bytes`.
fn one_kv_file(kv_bytes: &[u8]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(0u64.to_le_bytes());
    out.extend(1u64.to_le_bytes());
    out.extend(kv_bytes);
    out.resize(out.len().max(24 + 14), 0); // keep the count check from firing first
    out
}

#[test]
fn string_lengths_past_eof_or_cap() {
    // Key length past the end of the file.
    let mut kv = (1u64 << 40).to_le_bytes().to_vec();
    kv.extend(b"abc");
    assert_has(&gguf_err(&one_kv_file(&kv)), &["metadata entry 0", "key", "string length"]);

    // Value string longer than the file, and longer than the cap.
    for (len, what) in [(100u64, "past the end of the file"), (MAX_STRING_LEN + 1, "exceeds the limit")] {
        let mut kv = Vec::new();
        write_str(&mut kv, "general.name");
        kv.extend(T_STR.to_le_bytes());
        kv.extend(len.to_le_bytes());
        kv.extend(b"short");
        assert_has(&gguf_err(&one_kv_file(&kv)), &["general.name", what]);
    }
}

#[test]
fn array_lengths_are_checked_before_allocating() {
    for (elem, count, what) in [
        (T_U64, u64::MAX / 4, "exceeds the limit"),
        (T_U64, MAX_ARRAY_LEN + 1, "exceeds the limit"),
        (T_U64, MAX_ARRAY_LEN, "needs at least"),
        (T_STR, 100_000, "needs at least"),
    ] {
        let b = tiny_llama(false).kv("general.tags", V::Raw(T_ARR, [elem.to_le_bytes().to_vec(), count.to_le_bytes().to_vec()].concat()));
        assert_has(&gguf_err(&b.build()), &["general.tags", what]);
    }
}

#[test]
fn malformed_values() {
    let cases: Vec<(V, &str)> = vec![
        (V::Raw(13, vec![0; 8]), "value type 13"),
        (V::Raw(T_BOOL, vec![2]), "bool byte is 2"),
        (V::Raw(T_STR, [2u64.to_le_bytes().to_vec(), vec![0xff, 0xfe]].concat()), "not valid UTF-8"),
        (V::Arr(T_ARR, vec![]), "nested arrays"),
        (V::Raw(T_ARR, [99u32.to_le_bytes().to_vec(), 0u64.to_le_bytes().to_vec()].concat()), "element type 99"),
    ];
    for (v, what) in cases {
        let b = tiny_llama(false).kv("general.odd", v);
        assert_has(&gguf_err(&b.build()), &["general.odd", what]);
    }
}

#[test]
fn duplicate_key() {
    let b = tiny_llama(false).kv("llama.block_count", V::U32(2));
    assert_has(&gguf_err(&b.build()), &["duplicate metadata key 'llama.block_count'"]);
}

#[test]
fn duplicate_tensor() {
    let b = tiny_llama(false).tensor("blk.0.attn_norm.weight", &[DIM], GGML_F32, f32_bytes(&values(DIM as usize, 1)));
    assert_has(&gguf_err(&b.build()), &["duplicate tensor name 'blk.0.attn_norm.weight'"]);
}

#[test]
fn bad_alignment() {
    for (v, what) in [
        (V::U32(0), "must be a power of two"),
        (V::U32(24), "must be a power of two"),
        (V::U32(1 << 21), "must be a power of two"),
        (V::U64(32), "has type u64, must be u32"),
        (s("32"), "has type string, must be u32"),
    ] {
        let b = tiny_llama(false).kv("general.alignment", v);
        assert_has(&gguf_err(&b.build()), &["general.alignment", what]);
    }
    // A valid non-default alignment is honoured.
    let mut b = tiny_llama(false).kv("general.alignment", V::U32(64));
    b.alignment = 64;
    let bytes = b.build();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!((g.alignment, g.data_offset % 64), (64, 0));
    assert!(import_gguf_bytes(&bytes, false).is_ok());
}

#[test]
fn bad_tensor_infos() {
    type Edit = Box<dyn Fn(&mut TestTensor)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|t| t.ne = vec![]), "n_dims is 0"),
        (Box::new(|t| t.ne = vec![32, 1, 1, 1, 1]), "n_dims is 5"),
        (Box::new(|t| t.ne = vec![32, 0]), "dimension 1 is 0"),
        (Box::new(|t| t.ne = vec![32, 1 << 40, 1 << 40]), "elements"),
        (Box::new(|t| t.ggml_type = 4), "type code 4 is not a known ggml type"),
        (Box::new(|t| t.ggml_type = 1000), "type code 1000"),
        (Box::new(|t| (t.ne, t.ggml_type) = (vec![48, 32], GGML_Q8_0)), "row length 48 is not a multiple of the Q8_0 block size 32"),
        (Box::new(|t| t.offset = Some(8)), "not a multiple of the alignment 32"),
        (Box::new(|t| t.offset = Some(1 << 30)), "outside the file"),
        (Box::new(|t| t.offset = Some(u64::MAX - 31)), "outside the file"),
        (Box::new(|t| t.name = "x".repeat(65)), "exceeds the limit of 64"),
        (Box::new(|t| t.name = String::new()), "tensor name is empty"),
    ];
    for (edit, what) in cases {
        let mut b = tiny_llama(false);
        edit(b.tensor_mut("blk.0.attn_q.weight"));
        let msg = gguf_err(&b.build());
        assert_has(&msg, &[what]);
        if !msg.contains("tensor name") {
            assert_has(&msg, &["tensor 'blk.0.attn_q.weight'"]);
        }
    }
}

#[test]
fn overlapping_tensor_data() {
    let mut b = tiny_llama(false);
    b.tensor_mut("blk.0.ffn_norm.weight").offset = Some(0); // on top of token_embd
    assert_has(&gguf_err(&b.build()), &["overlaps", "token_embd.weight", "blk.0.ffn_norm.weight"]);
}

#[test]
fn typed_getters_name_the_key() {
    let bytes =
        tiny_llama(false).kv("x.str", s("a")).kv("x.neg", V::I32(-1)).kv("x.big", V::U64(1 << 40)).kv("x.nan", V::F32(f32::NAN)).kv("x.u8", V::U8(7)).build();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.get_u32("x.u8").unwrap(), Some(7), "any integer type that fits is accepted");
    assert_has(&format!("{}", g.get_u32("x.str").unwrap_err()), &["'x.str'", "type string", "integer"]);
    assert_has(&format!("{}", g.get_u32("x.neg").unwrap_err()), &["'x.neg'", "-1"]);
    assert_has(&format!("{}", g.get_u32("x.big").unwrap_err()), &["'x.big'", "1099511627776"]);
    assert_has(&format!("{}", g.get_f32("x.nan").unwrap_err()), &["'x.nan'", "finite"]);
    assert_has(&format!("{}", g.get_str("llama.block_count").unwrap_err()), &["'llama.block_count'", "u32", "string"]);
    assert_has(&format!("{}", g.get_str_array("tokenizer.ggml.token_type").unwrap_err()), &["array of i32", "array of string"]);
    assert_eq!(g.get_u32("missing").unwrap(), None);
    assert!(matches!(g.get("x.big"), Some(Value::U64(_))));
}

// ---- GGUF llama import --------------------------------------------------------------------------

#[test]
fn tiny_llama_imports() {
    let spec = import_gguf_bytes(&tiny_llama(false).build(), false).unwrap();
    let h = &spec.hparams;
    assert_eq!((h.vocab_size, h.dim, h.n_layers, h.n_heads, h.n_kv_heads, h.ffn_dim, h.max_context), (GPT2_TOKENS.len() as u32, 32, 1, 2, 1, 64, 64));
    assert_eq!((h.rope_theta, h.norm_eps, h.tied_embeddings), (100000.0, 1e-5, true));

    let names: Vec<&str> = spec.tensors.iter().map(|t| t.name.as_str()).collect();
    let canonical = canonical_tensors(h);
    assert_eq!(names, canonical.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
    for (t, slot) in spec.tensors.iter().zip(&canonical) {
        assert_eq!(t.dims, slot.dims, "{}", t.name);
    }
    let get = |name: &str| &spec.tensors.iter().find(|t| t.name == name).unwrap().data;
    let d = DIM as usize;
    // Quantized matrices pass through bit for bit.
    assert_eq!(get("token_embd.weight"), &TensorData::Encoded { dtype: DType::Q8_0, bytes: quant_data(GGML_Q8_0, d * GPT2_TOKENS.len(), 1) });
    assert_eq!(get("blk.0.attn_output.weight"), &TensorData::Encoded { dtype: DType::Q4_0, bytes: quant_data(GGML_Q4_0, d * d, 6) });
    assert_eq!(get("blk.0.ffn_gate.weight"), &TensorData::Encoded { dtype: DType::Q4_1, bytes: quant_data(GGML_Q4_1, d * 64, 8) });
    // f16 is an SLM1 dtype too: kept as shipped.
    assert_eq!(get("blk.0.attn_k.weight"), &TensorData::Encoded { dtype: DType::F16, bytes: f16_data(&values(d * 16, 4)) });
    // f32 matrices and norms stay f32; bf16 (no SLM1 dtype) becomes f32.
    assert_eq!(get("blk.0.attn_q.weight"), &TensorData::F32(values(d * d, 3)));
    assert_eq!(get("blk.0.attn_norm.weight"), &TensorData::F32(values(d, 2)));
    match get("blk.0.attn_v.weight") {
        TensorData::F32(v) => {
            for (got, want) in v.iter().zip(values(d * 16, 5)) {
                assert!((got - want).abs() <= want.abs() / 128.0, "bf16 {got} vs {want}");
            }
        }
        other => panic!("attn_v should be f32, got {other:?}"),
    }

    let tok = &spec.tokenizer;
    assert_eq!(tok.kind, TokenizerKind::BpeByteLevel);
    assert_eq!(tok.pre_tokenizer, PreTokenizer::Smollm);
    assert_eq!(tok.chat_template, ChatTemplate::ChatMl);
    assert_eq!((tok.bos_id, tok.eos_id, tok.unk_id), (Some(1), Some(2), Some(0)));
    assert!(!tok.add_bos && !tok.add_space_prefix);
    assert_eq!(tok.eog_ids, vec![0, 2, 4]);
    let bytes: Vec<&[u8]> = tok.tokens.iter().map(|t| t.bytes.as_slice()).collect();
    assert_eq!(bytes[0], b"<|endoftext|>");
    assert_eq!(bytes[7], b" ");
    assert_eq!(bytes[8], b"\n");
    assert_eq!(bytes[11], b" ab");
    assert_eq!(bytes[12], &[0xe9]); // "é" is the mapped form of the byte 0xE9
    assert_eq!(bytes[15], "é".as_bytes());
    assert_eq!(tok.tokens[0].token_type, token_type::CONTROL);
    assert_eq!(tok.tokens[5].token_type, token_type::NORMAL);
    let merges: Vec<(u32, u32, u32, u32)> = tok.merges.iter().map(|m| (m.left, m.right, m.result, m.rank)).collect();
    assert_eq!(merges, vec![(5, 6, 9, 0), (7, 5, 10, 1), (10, 6, 11, 2), (13, 14, 15, 3)]);
}

#[test]
fn untied_model_has_output() {
    let spec = import_gguf_bytes(&tiny_llama(true).build(), false).unwrap();
    assert!(!spec.hparams.tied_embeddings);
    let last = spec.tensors.last().unwrap();
    assert_eq!((last.name.as_str(), last.dims.as_slice()), ("output.weight", &[GPT2_TOKENS.len() as u32, 32][..]));
}

#[test]
fn defaults_when_optional_keys_are_missing() {
    let b = tiny_llama(false)
        .remove("llama.rope.freq_base")
        .remove("llama.attention.head_count_kv")
        .remove("tokenizer.ggml.pre")
        .remove("tokenizer.ggml.add_bos_token")
        .remove("tokenizer.ggml.token_type")
        .remove("tokenizer.chat_template");
    let mut b = b;
    // With head_count_kv defaulting to head_count, K and V are [dim, dim].
    for name in ["blk.0.attn_k.weight", "blk.0.attn_v.weight"] {
        let t = b.tensor_mut(name);
        t.ne = vec![DIM, DIM];
        t.ggml_type = GGML_F32;
        t.data = f32_bytes(&values((DIM * DIM) as usize, 1));
    }
    let spec = import_gguf_bytes(&b.build(), false).unwrap();
    assert_eq!((spec.hparams.rope_theta, spec.hparams.n_kv_heads), (10000.0, 2));
    let tok = &spec.tokenizer;
    assert_eq!((tok.pre_tokenizer, tok.chat_template, tok.add_bos), (PreTokenizer::Gpt2, ChatTemplate::None, false));
    // Without token types every token is normal, except that end-of-turn texts (`<|endoftext|>`,
    // `<|im_end|>`) end generation and become control tokens, as llama.cpp makes them.
    let control: Vec<usize> = tok.tokens.iter().enumerate().filter(|(_, t)| t.token_type != token_type::NORMAL).map(|(i, _)| i).collect();
    assert_eq!(control, [0, 2]);
    assert!(control.iter().all(|&i| tok.tokens[i].token_type == token_type::CONTROL));
    assert_eq!(tok.eog_ids, vec![0, 2]);
}

#[test]
fn chat_template_kind_from_the_template_or_the_architecture() {
    let kind = |template: Option<&str>| {
        let b = match template {
            Some(t) => tiny_llama(false).set("tokenizer.chat_template", s(t)),
            None => tiny_llama(false).remove("tokenizer.chat_template"),
        };
        import_gguf_bytes(&b.build(), false).unwrap().tokenizer.chat_template
    };
    // Gemma's instruction-tuned template (its turns are what is recognised).
    let gemma = "{{ bos_token }}{%- for message in loop_messages -%}{{ '<start_of_turn>' + role + '\\n' }}{{ message['content'] | trim }}{{ '<end_of_turn>\\n' }}{%- endfor -%}";
    assert_eq!(kind(Some(gemma)), ChatTemplate::Gemma);
    assert_eq!(kind(Some("{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}")), ChatTemplate::ChatMl);
    assert_eq!(kind(Some("[INST] {{ m.content }} [/INST]")), ChatTemplate::None, "a template we do not write");
    // No template at all: the architecture's (gemma3 → gemma; a llama model has none).
    assert_eq!(kind(None), ChatTemplate::None);
    assert_eq!(super::gguf_llama::arch_chat_template(Arch::Gemma3), ChatTemplate::Gemma);
    assert_eq!(super::gguf_llama::arch_chat_template(Arch::Qwen2), ChatTemplate::None);
}

#[test]
fn repeated_token_bytes_are_refused_naming_both_tokens() {
    // Token 3 written again in place of token 4 (no merge uses either): two tokens with the same
    // bytes, which the runtime's tokenizer section refuses.
    let mut tokens: Vec<&str> = GPT2_TOKENS.to_vec();
    tokens[4] = tokens[3];
    let b = tiny_llama(false).set("tokenizer.ggml.tokens", strs(&tokens));
    assert_has(&import_err(&b), &["tokenizer.ggml.tokens[4] '<repo_name>'", "same bytes as tokenizer.ggml.tokens[3]"]);
}

#[test]
fn non_llama_architecture() {
    let b = tiny_llama(false).set("general.architecture", s("gpt2"));
    assert_has(&import_err(&b), &["general.architecture is 'gpt2'", "only 'llama'"]);
    let b = tiny_llama(false).set("general.architecture", V::U32(1));
    assert_has(&import_err(&b), &["'general.architecture'", "type u32", "string"]);
    let b = tiny_llama(false).remove("general.architecture");
    assert_has(&import_err(&b), &["'general.architecture' is missing"]);
}

#[test]
fn unsupported_tensor_type_names_the_tensor() {
    // Q8_1 (ggml type 9): 32-element blocks of 36 bytes, valid in the container, no SLM1 dtype.
    for name in ["token_embd.weight", "blk.0.ffn_up.weight", "output_norm.weight"] {
        let mut b = tiny_llama(false);
        let t = b.tensor_mut(name);
        let n_blocks = t.ne.iter().product::<u64>() as usize / 32;
        t.ggml_type = GGML_Q8_1;
        t.data = vec![0; n_blocks * 36];
        assert_has(&import_err(&b), &[&format!("tensor '{name}'"), "Q8_1", "ggml type 9", "cannot be imported"]);
    }
}

#[test]
fn refusals_come_before_any_tensor_is_read() {
    // An earlier tensor's data is broken (a NaN scale, found only by reading it): the refusal of
    // the architecture, or of a later tensor's type, still names the key or type, not the NaN.
    let broken = |b: GgufBuilder| {
        let mut b = b;
        b.tensor_mut("token_embd.weight").data[0..2].copy_from_slice(&0x7e00u16.to_le_bytes());
        b
    };
    let b = broken(tiny_llama(false)).set("general.architecture", s("gemma3n"));
    assert_has(&import_err(&b), &["general.architecture is 'gemma3n'", "only 'llama', 'qwen2', 'gemma3', 'qwen3'"]);
    let mut b = broken(tiny_llama(false));
    let t = b.tensor_mut("blk.0.ffn_down.weight");
    let n_blocks = t.ne.iter().product::<u64>() as usize / 32;
    t.ggml_type = GGML_Q8_1;
    t.data = vec![0; n_blocks * 36];
    let msg = import_err(&b);
    assert_has(&msg, &["tensor 'blk.0.ffn_down.weight'", "Q8_1", "cannot be imported"]);
    assert!(!msg.contains("token_embd"), "{msg}");
    // And with the type fixed, the NaN is what is reported.
    assert_has(&import_err(&broken(tiny_llama(false))), &["token_embd.weight", "non-finite scale"]);
}

#[test]
fn gemma3_imports_with_its_window_and_norms() {
    let spec = import_gguf_bytes(&tiny_gemma3().build(), false).unwrap();
    let h = &spec.hparams;
    assert_eq!((h.arch, h.rope, h.qkv_bias, h.rope_theta), (Arch::Gemma3, RopeKind::Neox, false, 1e6));
    assert_eq!((h.sliding_window, h.swa_pattern, h.rope_theta_local), (4, 6, 10_000.0), "llama.cpp's gemma3 pattern and local base");
    let names: Vec<&str> = spec.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        &names[1..5],
        ["blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_q_norm.weight", "blk.0.attn_k.weight"],
        "the Q/K norms right after their projections"
    );
    assert!(names.contains(&"blk.0.post_attention_norm.weight") && names.contains(&"blk.0.post_ffw_norm.weight"));
    let raw = crate::package::build_as_shipped(&spec, |_| {}).unwrap();
    let pkg = tinyrustlm::format::parse(&raw.to_bytes().0).unwrap();
    assert_eq!((pkg.arch, pkg.hparams.sliding_window, pkg.hparams.swa_pattern), (Arch::Gemma3, 4, 6));
    // A window longer than the context never masks: the importer caps it at the context.
    let spec = import_gguf_bytes(&tiny_gemma3().set("gemma3.attention.sliding_window", V::U32(4096)).build(), false).unwrap();
    assert_eq!(spec.hparams.sliding_window, 64);
}

#[test]
fn gemma3_variants_we_do_not_run_are_refused_by_their_keys() {
    let cases: Vec<(GgufBuilder, &[&str])> = vec![
        (tiny_gemma3().set("gemma3.block_count", V::U32(62)), &["gemma3.block_count is 62", "27B"]),
        (tiny_gemma3().kv("gemma3.final_logit_softcapping", V::F32(30.0)), &["gemma3.final_logit_softcapping is 30", "soft-capping"]),
        (tiny_gemma3().kv("gemma3.attn_logit_softcapping", V::F32(50.0)), &["gemma3.attn_logit_softcapping is 50"]),
        (tiny_gemma3().kv("gemma3.rope.scaling.type", s("linear")).kv("gemma3.rope.scaling.factor", V::F32(8.0)), &["gemma3.rope.scaling.factor is 8"]),
        (tiny_gemma3().remove("gemma3.attention.sliding_window"), &["'gemma3.attention.sliding_window' is missing"]),
        (tiny_gemma3().set("gemma3.attention.sliding_window", V::U32(0)), &["gemma3.attention.sliding_window is 0"]),
        (tiny_gemma3().set("general.architecture", s("gemma2")), &["general.architecture is 'gemma2'"]),
        (tiny_gemma3().set("general.architecture", s("gemma3n")), &["general.architecture is 'gemma3n'"]),
    ];
    for (b, want) in cases {
        assert_has(&import_err(&b), want);
    }
}

#[test]
fn qwen2_imports_with_biases_neox_rope_and_its_chat_template() {
    let spec = import_gguf_bytes(&tiny_qwen2().build(), false).unwrap();
    let h = &spec.hparams;
    assert_eq!((h.arch, h.rope, h.qkv_bias, h.head_dim, h.rope_theta), (Arch::Qwen2, RopeKind::Neox, true, 16, 1e6));
    assert_eq!((spec.tokenizer.pre_tokenizer, spec.tokenizer.chat_template), (PreTokenizer::Qwen2, ChatTemplate::ChatMlQwen2));
    let names: Vec<&str> = spec.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(&names[1..5], ["blk.0.attn_norm.weight", "blk.0.attn_q.weight", "blk.0.attn_q.bias", "blk.0.attn_k.weight"]);
    assert!(matches!(&spec.tensors[3].data, TensorData::F32(v) if v.len() == DIM as usize));

    // As shipped it is a v2 package the runtime accepts, with the shipped dtypes kept.
    let raw = crate::package::build_as_shipped(&spec, |_| {}).unwrap();
    assert_eq!((raw.format_version, raw.header_len), (2, 160));
    let (bytes, _) = raw.to_bytes();
    let pkg = tinyrustlm::format::parse(&bytes).unwrap();
    assert_eq!((pkg.format_version, pkg.arch, pkg.hparams.rope, pkg.hparams.qkv_bias), (2, Arch::Qwen2, RopeKind::Neox, true));
    let dtype = |n: &str| pkg.tensors.iter().find(|t| t.name == n).unwrap().dtype;
    assert_eq!((dtype("token_embd.weight"), dtype("blk.0.attn_output.weight"), dtype("blk.0.ffn_gate.weight")), (DType::Q8_0, DType::Q4_0, DType::Q4_1));
    assert_eq!(dtype("blk.0.attn_v.bias"), DType::F32);
    // --quant converts everything, and is still v2 (qwen2 needs the architecture block).
    let converted = crate::package::write(&spec, DType::Q8_0).unwrap();
    let pkg = tinyrustlm::format::parse(&converted).unwrap();
    assert!(pkg.tensors.iter().all(|t| t.dtype == if t.rank == 1 { DType::F32 } else { DType::Q8_0 }));
    assert_eq!((pkg.format_version, pkg.quant), (2, DType::Q8_0));

    // A missing bias is reported by name; qwen2 keys are read with their own prefix.
    let mut b = tiny_qwen2();
    b.tensors.retain(|t| t.name != "blk.0.attn_k.bias");
    assert_has(&import_err(&b), &["tensor 'blk.0.attn_k.bias' is missing"]);
    let b = tiny_qwen2().remove("qwen2.block_count");
    assert_has(&import_err(&b), &["'qwen2.block_count' is missing"]);
}

#[test]
fn a_llama_gguf_as_shipped_in_one_v1_mode_is_still_v1() {
    // Every matrix q8_0 and norms f32: v1's rule holds with quant_mode q8_0, so the package is the
    // same bytes `--quant q8_0` writes.
    let mut b = tiny_llama(true);
    for t in b.tensors.iter_mut().filter(|t| t.ne.len() == 2) {
        let n = t.ne.iter().product::<u64>() as usize;
        t.ggml_type = GGML_Q8_0;
        t.data = quant_data(GGML_Q8_0, n, 3);
    }
    let spec = import_gguf_bytes(&b.build(), false).unwrap();
    let shipped = crate::package::build_as_shipped(&spec, |_| {}).unwrap();
    assert_eq!((shipped.format_version, shipped.quant_mode), (1, DType::Q8_0.code() as u32));
    assert_eq!(shipped.to_bytes().0, crate::package::write(&spec, DType::Q8_0).unwrap());
    // A mix no v1 quant_mode allows is v2, quant_mode the dominant dtype.
    let spec = import_gguf_bytes(&tiny_llama(false).build(), false).unwrap();
    let mixed = crate::package::build_as_shipped(&spec, |_| {}).unwrap();
    assert_eq!(mixed.format_version, 2);
    let pkg = tinyrustlm::format::parse(&mixed.to_bytes().0).unwrap();
    assert_eq!((pkg.arch, pkg.hparams.rope, pkg.quant), (Arch::Llama, RopeKind::Interleaved, tinyrustlm::format::dominant_dtype(&pkg.tensors)));
}

#[test]
fn tensor_set_must_match_the_architecture() {
    let b = tiny_llama(false).tensor("rope_freqs.weight", &[8], GGML_F32, f32_bytes(&[1.0; 8]));
    assert_has(&import_err(&b), &["tensor 'rope_freqs.weight'", "not part of the llama architecture"]);

    let mut b = tiny_llama(false);
    b.tensors.retain(|t| t.name != "blk.0.ffn_norm.weight");
    b.tensors.push(TestTensor { name: "blk.0.ffn_norm.weight2".into(), ne: vec![DIM], ggml_type: GGML_F32, data: f32_bytes(&[1.0; 32]), offset: None });
    assert_has(&import_err(&b), &["blk.0.ffn_norm.weight2"]);

    let mut b = tiny_llama(false);
    b.tensors.retain(|t| t.name != "blk.0.ffn_norm.weight");
    b.tensors.push(TestTensor { name: "blk.0.ffn_norm.weight".into(), ne: vec![DIM], ggml_type: GGML_F32, data: f32_bytes(&[1.0; 32]), offset: None });
    assert!(import_gguf_bytes(&b.build(), false).is_ok(), "file order does not matter");
    b.tensors.retain(|t| t.name != "blk.0.ffn_norm.weight");
    b = b.tensor("blk.0.extra.weight", &[DIM], GGML_F32, f32_bytes(&[1.0; 32]));
    assert_has(&import_err(&b), &["blk.0.extra.weight"]);

    let mut b = tiny_llama(false);
    b.tensors.retain(|t| t.name != "blk.0.ffn_norm.weight");
    assert_has(&import_err(&b), &["tensor 'blk.0.ffn_norm.weight' is missing"]);

    let mut b = tiny_llama(false);
    b.tensor_mut("blk.0.attn_k.weight").ne = vec![KV_DIM, DIM];
    assert_has(&import_err(&b), &["tensor 'blk.0.attn_k.weight'", "ne [16, 32]", "expected ne [32, 16]"]);

    let b = tiny_llama(false).set("llama.block_count", V::U32(256));
    assert_has(&import_err(&b), &["block_count is 256", "only 11 tensors"]);

    let b = tiny_llama(false).set("llama.block_count", V::U32(u32::MAX));
    assert_has(&import_err(&b), &["llama.block_count is 4294967295", "must be in 1..=256"]);
}

#[test]
fn nonfinite_weights_are_rejected() {
    let mut b = tiny_llama(false);
    let mut q = values((DIM * DIM) as usize, 3);
    q[5] = f32::INFINITY;
    b.tensor_mut("blk.0.attn_q.weight").data = f32_bytes(&q);
    assert_has(&import_err(&b), &["blk.0.attn_q.weight", "element 5 is inf"]);

    let mut b = tiny_llama(false);
    b.tensor_mut("blk.0.ffn_up.weight").data[34 * 3..34 * 3 + 2].copy_from_slice(&0x7e00u16.to_le_bytes());
    assert_has(&import_err(&b), &["blk.0.ffn_up.weight", "block 3", "non-finite scale"]);
}

#[test]
fn unsupported_hyperparameters() {
    let cases: Vec<(GgufBuilder, &[&str])> = vec![
        (tiny_llama(false).set("llama.rope.dimension_count", V::U32(8)), &["llama.rope.dimension_count is 8", "head_dim", "16"]),
        // An explicit head size (v2) must still be the RoPE and value head size.
        (tiny_llama(false).kv("llama.attention.key_length", V::U32(32)), &["llama.rope.dimension_count is 16", "head_dim is 32"]),
        (tiny_llama(false).kv("llama.attention.value_length", V::U32(8)), &["llama.attention.value_length is 8", "head_dim is 16"]),
        (tiny_llama(false).kv("llama.rope.scaling.type", s("yarn")), &["llama.rope.scaling.type is 'yarn'"]),
        (tiny_llama(false).kv("llama.rope.scaling.type", s("linear")).kv("llama.rope.scaling.factor", V::F32(2.0)), &["llama.rope.scaling.factor is 2"]),
        (tiny_llama(false).kv("llama.rope.scale_linear", V::F32(4.0)), &["llama.rope.scale_linear is 4"]),
        (tiny_llama(false).kv("llama.expert_count", V::U32(8)), &["llama.expert_count is 8", "mixture-of-experts"]),
        (tiny_llama(false).set("llama.attention.head_count", V::U32(3)), &["head_count is 3", "divide"]),
        (tiny_llama(false).set("llama.attention.head_count_kv", V::U32(0)), &["head_count_kv is 0"]),
        (tiny_llama(false).set("llama.vocab_size", V::U32(99)), &["llama.vocab_size is 99", "16 tokens"]),
        (tiny_llama(false).remove("llama.attention.layer_norm_rms_epsilon"), &["'llama.attention.layer_norm_rms_epsilon' is missing"]),
        (tiny_llama(false).set("llama.embedding_length", s("32")), &["'llama.embedding_length'", "type string"]),
        (tiny_llama(false).set("llama.rope.freq_base", s("1e4")), &["'llama.rope.freq_base'", "expected f32"]),
    ];
    for (b, parts) in cases {
        assert_has(&import_err(&b), parts);
    }
    // Scaling declared but neutral is accepted.
    let b = tiny_llama(false).kv("llama.rope.scaling.type", s("linear")).kv("llama.rope.scaling.factor", V::F32(1.0));
    assert!(import_gguf_bytes(&b.build(), false).is_ok());
    let b = tiny_llama(false).kv("llama.rope.scaling.type", s("none")).kv("llama.rope.scaling.factor", V::F32(8.0));
    assert!(import_gguf_bytes(&b.build(), false).is_ok());
}

#[test]
fn tokenizer_metadata_errors() {
    let n = GPT2_TOKENS.len();
    let cases: Vec<(GgufBuilder, &[&str])> = vec![
        (tiny_llama(false).set("tokenizer.ggml.model", s("bert")), &["tokenizer.ggml.model is 'bert'"]),
        (tiny_llama(false).set("tokenizer.ggml.pre", s("falcon")), &["tokenizer.ggml.pre is 'falcon'"]),
        (tiny_llama(false).set("tokenizer.ggml.tokens", V::Arr(T_I32, vec![V::I32(1)])), &["'tokenizer.ggml.tokens'", "array of i32", "array of string"]),
        (tiny_llama(false).set("tokenizer.ggml.scores", V::Arr(T_F32, vec![V::F32(0.0); 3])), &["tokenizer.ggml.scores has 3 entries", "has 16"]),
        (tiny_llama(false).set("tokenizer.ggml.scores", V::Arr(T_STR, vec![s("x"); n])), &["'tokenizer.ggml.scores'", "array of f32"]),
        (tiny_llama(false).set("tokenizer.ggml.token_type", V::Arr(T_I32, vec![V::I32(1); 2])), &["tokenizer.ggml.token_type has 2 entries"]),
        (
            tiny_llama(false).set("tokenizer.ggml.token_type", V::Arr(T_I32, (0..n).map(|i| V::I32(if i == 3 { 9 } else { 1 })).collect())),
            &["tokenizer.ggml.token_type[3] is 9"],
        ),
        (tiny_llama(false).set("tokenizer.ggml.eos_token_id", V::U32(16)), &["tokenizer.ggml.eos_token_id is 16", "< 16"]),
        (tiny_llama(false).set("tokenizer.ggml.add_bos_token", V::U32(1)), &["'tokenizer.ggml.add_bos_token'", "expected bool"]),
        (
            tiny_llama(false).set("tokenizer.ggml.add_bos_token", V::Bool(true)).remove("tokenizer.ggml.bos_token_id"),
            &["add_bos_token is true", "bos_token_id is missing"],
        ),
        (tiny_llama(false).set("tokenizer.ggml.merges", strs(&["a b", "Ġ q"])), &["tokenizer.ggml.merges[1] 'Ġ q'", "'q' is not a token"]),
        (tiny_llama(false).set("tokenizer.ggml.merges", strs(&["b a"])), &["tokenizer.ggml.merges[0] 'b a'", "result 'ba' is not a token"]),
        (tiny_llama(false).set("tokenizer.ggml.merges", strs(&["a b", "ab"])), &["tokenizer.ggml.merges[1] 'ab'", "not two tokens"]),
        (tiny_llama(false).remove("tokenizer.ggml.merges"), &["'tokenizer.ggml.merges' is missing"]),
        (
            tiny_llama(false).set("tokenizer.ggml.tokens", strs(&[GPT2_TOKENS[..15].to_vec(), vec!["€"]].concat())),
            &["tokenizer.ggml.tokens[15] '€'", "U+20AC", "byte-to-unicode"],
        ),
    ];
    for (b, parts) in cases {
        assert_has(&import_err(&b), parts);
    }
}

#[test]
fn too_many_eog_tokens() {
    let mut texts: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let mut types = vec![V::I32(1); 40];
    for i in 0..17 {
        texts[i] = if i % 2 == 0 { "<|endoftext|>".into() } else { "<|im_end|>".into() };
        types[i] = V::I32(3);
    }
    let b = tiny_llama(false)
        .set("tokenizer.ggml.tokens", V::Arr(T_STR, texts.iter().map(|t| s(t)).collect()))
        .set("tokenizer.ggml.token_type", V::Arr(T_I32, types))
        .set("tokenizer.ggml.merges", strs(&[]))
        .remove("llama.vocab_size");
    let mut b = b;
    b.tensor_mut("token_embd.weight").ne = vec![DIM, 40];
    b.tensor_mut("token_embd.weight").data = quant_data(GGML_Q8_0, 32 * 40, 1);
    assert_has(&import_err(&b), &["17 end-of-generation tokens", "at most 16"]);
}

/// The tiny llama with a SentencePiece ("llama") vocabulary instead of GPT-2's.
fn tiny_spm() -> GgufBuilder {
    let tokens = ["<unk>", "<s>", "</s>", "<0x0A>", "<0x41>", "▁", "a", "b", "▁a", "ab", "▁ab", "<pad>"];
    let types = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 5];
    let scores = [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -4.0, -5.0, 0.0];
    let mut b = tiny_llama(false)
        .set("tokenizer.ggml.model", s("llama"))
        .remove("tokenizer.ggml.pre")
        .remove("tokenizer.ggml.merges")
        .remove("tokenizer.ggml.add_bos_token")
        .remove("tokenizer.ggml.add_space_prefix")
        .remove("tokenizer.chat_template")
        .set("llama.vocab_size", V::U32(tokens.len() as u32))
        .set("tokenizer.ggml.tokens", strs(&tokens))
        .set("tokenizer.ggml.token_type", V::Arr(T_I32, types.iter().map(|&t| V::I32(t)).collect()))
        .kv("tokenizer.ggml.scores", V::Arr(T_F32, scores.iter().map(|&x| V::F32(x)).collect()));
    b.tensor_mut("token_embd.weight").ne = vec![DIM, tokens.len() as u64];
    b.tensor_mut("token_embd.weight").data = quant_data(GGML_Q8_0, 32 * tokens.len(), 1);
    b
}

#[test]
fn sentencepiece_vocabulary_imports() {
    let spec = import_gguf_bytes(&tiny_spm().build(), false).unwrap();
    let tok = &spec.tokenizer;
    assert_eq!(tok.kind, TokenizerKind::BpeSentencePiece);
    assert_eq!((tok.pre_tokenizer, tok.chat_template), (PreTokenizer::None, ChatTemplate::None));
    assert!(tok.add_bos && tok.add_space_prefix, "SentencePiece defaults");
    let bytes: Vec<&[u8]> = tok.tokens.iter().map(|t| t.bytes.as_slice()).collect();
    assert_eq!(&bytes[..6], &[&b"<unk>"[..], b"<s>", b"</s>", b"\n", b"A", b" "]);
    assert_eq!(bytes[10], b" ab");
    assert_eq!(tok.tokens[3].token_type, token_type::BYTE);
    // " ab" (score -5) splits as " a"+"b" and " "+"ab"; "▁a" and "ab" share score -4, so a rank.
    let merges: Vec<(u32, u32, u32, u32)> = tok.merges.iter().map(|m| (m.left, m.right, m.result, m.rank)).collect();
    assert_eq!(merges, vec![(5, 6, 8, 0), (6, 7, 9, 0), (5, 9, 10, 1), (8, 7, 10, 1)]);
    assert_eq!(tok.eog_ids, vec![2]);

    let b = tiny_spm().set("tokenizer.ggml.add_space_prefix", V::Bool(false)).set("tokenizer.ggml.add_bos_token", V::Bool(false));
    let tok = import_gguf_bytes(&b.build(), false).unwrap().tokenizer;
    assert!(!tok.add_bos && !tok.add_space_prefix);
}

/// Gemma's vocabulary in small: runs of spaces, `\n` and `</s>` are user-defined (stored as they
/// read, spaces as spaces), `<end_of_turn>` is control.
#[test]
fn sentencepiece_user_defined_tokens_are_not_merged_and_end_of_turn_texts_become_control() {
    let tokens = ["<unk>", "<s>", "</eos>", "<0x0A>", "<0x41>", "▁", "a", "b", "▁a", "ab", "▁ab", "  ", "\n", "</s>", "<end_of_turn>", "<|im_end|>"];
    let types = [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 4, 4, 4, 3, 1];
    let scores = [0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -4.0, -5.0, 0.0, 0.0, 0.0, 0.0, -6.0];
    let mut b = tiny_spm()
        .set("llama.vocab_size", V::U32(tokens.len() as u32))
        .set("tokenizer.ggml.tokens", strs(&tokens))
        .set("tokenizer.ggml.token_type", V::Arr(T_I32, types.iter().map(|&t| V::I32(t)).collect()))
        .set("tokenizer.ggml.scores", V::Arr(T_F32, scores.iter().map(|&x| V::F32(x)).collect()));
    b.tensor_mut("token_embd.weight").ne = vec![DIM, tokens.len() as u64];
    b.tensor_mut("token_embd.weight").data = quant_data(GGML_Q8_0, 32 * tokens.len(), 1);
    let tok = import_gguf_bytes(&b.build(), false).unwrap().tokenizer;
    // "  " = " " + " " is not a merge: the runtime cuts user-defined tokens out of the text, and a
    // run of `▁` (read as spaces) stays apart, as in llama.cpp.
    let merges: Vec<(u32, u32, u32, u32)> = tok.merges.iter().map(|m| (m.left, m.right, m.result, m.rank)).collect();
    assert_eq!(merges, vec![(5, 6, 8, 0), (6, 7, 9, 0), (5, 9, 10, 1), (8, 7, 10, 1)]);
    // End-of-turn texts end generation whatever their type and become control tokens (llama.cpp
    // overrides their type), so `</s>` in a prompt is text unless special tokens are parsed.
    assert_eq!(tok.eog_ids, vec![2, 13, 14, 15]);
    let ty = |id: usize| tok.tokens[id].token_type;
    assert_eq!(
        (ty(11), ty(12), ty(13), ty(14), ty(15)),
        (token_type::USER_DEFINED, token_type::USER_DEFINED, token_type::CONTROL, token_type::CONTROL, token_type::CONTROL)
    );
}

#[test]
fn sentencepiece_bad_byte_token() {
    let b = tiny_spm().set("tokenizer.ggml.tokens", strs(&["<unk>", "<s>", "</s>", "<0x0A>", "<0xZZ>", "▁", "a", "b", "▁a", "ab", "▁ab", "<pad>"]));
    assert_has(&import_err(&b), &["tokenizer.ggml.tokens[4] '<0xZZ>'", "<0xXX>"]);
    let b = tiny_spm().set("tokenizer.ggml.scores", V::Arr(T_F32, (0..12).map(|i| V::F32(if i == 7 { f32::NAN } else { 0.0 })).collect()));
    assert_has(&import_err(&b), &["tokenizer.ggml.scores[7] is NaN"]);
}

// ---- llama2.c -----------------------------------------------------------------------------------

/// A llama2.c tokenizer.bin: (text, score) per token.
fn llama2c_tokenizer(tokens: &[(&[u8], f32)]) -> Vec<u8> {
    let max = tokens.iter().map(|t| t.0.len()).max().unwrap_or(1) as u32;
    let mut out = max.to_le_bytes().to_vec();
    for (text, score) in tokens {
        out.extend(score.to_le_bytes());
        out.extend((text.len() as i32).to_le_bytes());
        out.extend(*text);
    }
    out
}

const L2C_TOKENS: &[(&[u8], f32)] =
    &[(b"<unk>", 0.0), (b"\n<s>\n", 0.0), (b"\n</s>\n", 0.0), (b"<0x0A>", 0.0), (b" ", -1.0), (b"a", -2.0), (b" a", -3.0), (b"b", -4.0)];

/// header fields: dim, hidden, layers, heads, kv heads, vocab (negative = unshared), seq_len.
/// Group g (in file order) holds the values g*1000 + i, i = 0, 1, ….
fn llama2c_model(header: [i32; 7]) -> Vec<u8> {
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] = header.map(|x| x.unsigned_abs() as usize);
    let kv_dim = kv_heads * dim / heads;
    let groups = [
        vocab * dim,
        layers * dim,
        layers * dim * dim,
        layers * kv_dim * dim,
        layers * kv_dim * dim,
        layers * dim * dim,
        layers * dim,
        layers * hidden * dim,
        layers * dim * hidden,
        layers * hidden * dim,
        dim,
        seq * (dim / heads) / 2,
        seq * (dim / heads) / 2,
    ];
    let mut out: Vec<u8> = header.iter().flat_map(|x| x.to_le_bytes()).collect();
    for (g, &n) in groups.iter().enumerate() {
        out.extend((0..n).flat_map(|i| ((g * 1000 + i) as f32).to_le_bytes()));
    }
    if header[5] < 0 {
        out.extend((0..vocab * dim).flat_map(|i| ((13_000 + i) as f32).to_le_bytes()));
    }
    out
}

const L2C_HEADER: [i32; 7] = [8, 12, 2, 2, 1, 8, 4];

fn l2c_err(model: &[u8], tokenizer: &[u8]) -> String {
    format!("{:#}", import_llama2c_bytes(model, tokenizer, false).expect_err("import must fail"))
}

#[test]
fn llama2c_imports() {
    let tok = llama2c_tokenizer(L2C_TOKENS);
    let spec = import_llama2c_bytes(&llama2c_model(L2C_HEADER), &tok, false).unwrap();
    let h = &spec.hparams;
    assert_eq!((h.vocab_size, h.dim, h.n_layers, h.n_heads, h.n_kv_heads, h.ffn_dim, h.max_context, h.tied_embeddings), (8, 8, 2, 2, 1, 12, 4, true));
    assert_eq!((h.rope_theta, h.norm_eps), (10000.0, 1e-5));
    let canonical = canonical_tensors(h);
    assert_eq!(spec.tensors.len(), canonical.len());
    for (t, slot) in spec.tensors.iter().zip(&canonical) {
        assert_eq!((&t.name, &t.dims), (&slot.name, &slot.dims));
    }
    // Each tensor holds its slice of its group: (group, first index).
    let first = |name: &str| match &spec.tensors.iter().find(|t| t.name == name).unwrap().data {
        TensorData::F32(v) => (v[0], v.len()),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(first("token_embd.weight"), (0.0, 64));
    assert_eq!(first("blk.1.attn_norm.weight"), (1008.0, 8));
    assert_eq!(first("blk.1.attn_q.weight"), (2064.0, 64));
    assert_eq!(first("blk.1.attn_k.weight"), (3032.0, 32));
    assert_eq!(first("blk.0.attn_v.weight"), (4000.0, 32));
    assert_eq!(first("blk.1.attn_output.weight"), (5064.0, 64));
    assert_eq!(first("blk.1.ffn_norm.weight"), (6008.0, 8));
    assert_eq!(first("blk.1.ffn_gate.weight"), (7096.0, 96)); // w1
    assert_eq!(first("blk.1.ffn_down.weight"), (8096.0, 96)); // w2
    assert_eq!(first("blk.1.ffn_up.weight"), (9096.0, 96)); // w3
    assert_eq!(first("output_norm.weight"), (10000.0, 8));

    let t = &spec.tokenizer;
    assert_eq!(t.kind, TokenizerKind::BpeSentencePiece);
    assert_eq!((t.bos_id, t.eos_id, t.unk_id, t.add_bos, t.add_space_prefix), (Some(1), Some(2), Some(0), true, true));
    assert_eq!(t.eog_ids, vec![1, 2]);
    let types: Vec<u8> = t.tokens.iter().map(|t| t.token_type).collect();
    assert_eq!(types, vec![2, 3, 3, 6, 1, 1, 1, 1]);
    assert_eq!(t.tokens[1].bytes, b"<s>");
    assert_eq!(t.tokens[2].bytes, b"</s>");
    assert_eq!(t.tokens[3].bytes, b"\n");
    let merges: Vec<(u32, u32, u32, u32)> = t.merges.iter().map(|m| (m.left, m.right, m.result, m.rank)).collect();
    assert_eq!(merges, vec![(4, 5, 6, 0)]);

    // Unshared classifier.
    let mut header = L2C_HEADER;
    header[5] = -8;
    let spec = import_llama2c_bytes(&llama2c_model(header), &tok, false).unwrap();
    assert!(!spec.hparams.tied_embeddings);
    let last = spec.tensors.last().unwrap();
    assert_eq!(last.name, "output.weight");
    assert!(matches!(&last.data, TensorData::F32(v) if v[0] == 13_000.0 && v.len() == 64));
}

#[test]
fn llama2c_size_must_match_exactly() {
    let tok = llama2c_tokenizer(L2C_TOKENS);
    let model = llama2c_model(L2C_HEADER);
    let n = model.len();
    assert_has(&l2c_err(&model[..n - 1], &tok), &[&format!("is {} bytes", n - 1), &format!("describes {n}")]);
    let mut long = model.clone();
    long.extend([0; 4]);
    assert_has(&l2c_err(&long, &tok), &[&format!("is {} bytes", n + 4), &format!("describes {n}")]);
    assert_has(&l2c_err(&model[..20], &tok), &["shorter than its 28-byte header"]);
    for (field, value, what) in [
        (0, 0, "dim is 0"),
        (2, -1, "n_layers is -1"),
        (3, 3, "n_heads 3 does not divide dim 8"),
        (4, 0, "n_kv_heads is 0"),
        (4, 3, "n_kv_heads 3 does not divide n_heads 2"),
        (5, 0, "vocab_size is 0"),
        (6, 0, "seq_len is 0"),
    ] {
        let mut m = model.clone();
        m[4 * field..4 * field + 4].copy_from_slice(&i32::to_le_bytes(value));
        assert_has(&l2c_err(&m, &tok), &[what]);
    }
    // A header describing more than 2^64 bytes.
    let mut m = model.clone();
    for field in [0, 1, 2] {
        m[4 * field..4 * field + 4].copy_from_slice(&i32::MAX.to_le_bytes());
    }
    m[12..16].copy_from_slice(&1i32.to_le_bytes());
    m[16..20].copy_from_slice(&1i32.to_le_bytes());
    assert_has(&l2c_err(&m, &tok), &["2^64"]);
    let mut bad = llama2c_model(L2C_HEADER);
    bad[28 + 4 * 3..28 + 4 * 4].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_has(&l2c_err(&bad, &tok), &["token_embd.weight", "element 3 is NaN"]);
}

#[test]
fn corrupted_llama2c_inputs_never_panic() {
    let model = llama2c_model(L2C_HEADER);
    let tok = llama2c_tokenizer(L2C_TOKENS);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..2000 {
        let (mut m, mut t) = (model.clone(), tok.clone());
        let target = if i % 2 == 0 { &mut m[..28] } else { &mut t[..] };
        let at = (next() % target.len() as u64) as usize;
        target[at] = next() as u8;
        let _ = import_llama2c_bytes(&m, &t, false);
    }
}

#[test]
fn llama2c_tokenizer_errors() {
    let model = llama2c_model(L2C_HEADER);
    let tok = llama2c_tokenizer(L2C_TOKENS);
    assert_has(&l2c_err(&model, &tok[..tok.len() - 1]), &["token 7 bytes", "need 1 bytes"]);
    assert_has(&l2c_err(&model, &tok[..2]), &["max_token_length"]);
    assert_has(&l2c_err(&model, &tok[..30]), &["8 tokens need at least 64 bytes"]);
    let mut long = tok.clone();
    long.push(0);
    assert_has(&l2c_err(&model, &long), &["1 bytes left after the last of 8 tokens"]);
    let mut small_max = tok.clone();
    small_max[..4].copy_from_slice(&2u32.to_le_bytes());
    assert_has(&l2c_err(&model, &small_max), &["token 0 length is 5", "0..=2"]);
    let mut neg = tok.clone();
    neg[4 + 4..4 + 8].copy_from_slice(&(-1i32).to_le_bytes());
    assert_has(&l2c_err(&model, &neg), &["token 0 length is -1"]);
    let mut nan = tok.clone();
    nan[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    assert_has(&l2c_err(&model, &nan), &["token 0 score is NaN"]);
    let mut header = L2C_HEADER;
    header[5] = 2;
    let small = llama2c_model(header);
    assert_has(&l2c_err(&small, &llama2c_tokenizer(&L2C_TOKENS[..2])), &["vocab_size 2", "<unk>, <s>, </s>"]);
}

/// karpathy/tinyllamas stories260K (MIT), via a llama2.c fork: dim 64, hidden 172, 5 layers,
/// 8 heads, 4 kv heads, vocab 512, seq_len 512, shared classifier. Its tok512.bin was not
/// available, so the tokenizer here is a stand-in of the right size.
#[test]
fn stories260k_checkpoint_imports() {
    let model = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/llama2c/stories260K.bin")).unwrap();
    let mut texts: Vec<Vec<u8>> = vec![b"<unk>".to_vec(), b"\n<s>\n".to_vec(), b"\n</s>\n".to_vec()];
    texts.extend((0..256).map(|b| format!("<0x{b:02X}>").into_bytes()));
    texts.extend((texts.len()..512).map(|i| format!("t{i}").into_bytes()));
    let tokens: Vec<(&[u8], f32)> = texts.iter().enumerate().map(|(i, t)| (t.as_slice(), -(i as f32))).collect();
    let spec = import_llama2c_bytes(&model, &llama2c_tokenizer(&tokens), false).unwrap();
    let h = &spec.hparams;
    assert_eq!((h.vocab_size, h.dim, h.n_layers, h.n_heads, h.n_kv_heads, h.ffn_dim, h.max_context, h.tied_embeddings), (512, 64, 5, 8, 4, 172, 512, true));
    assert_eq!(spec.tensors.len(), 1 + 5 * 9 + 1);
    assert_eq!(spec.tokenizer.tokens[3 + 0x41].bytes, b"A");
    // Spot checks against offsets computed independently of the importer.
    let at = |float_index: usize| {
        let o = 28 + 4 * float_index;
        f32::from_le_bytes([model[o], model[o + 1], model[o + 2], model[o + 3]])
    };
    let data = |name: &str| match &spec.tensors.iter().find(|t| t.name == name).unwrap().data {
        TensorData::F32(v) => v.clone(),
        other => panic!("{other:?}"),
    };
    let emb = 512 * 64;
    assert_eq!(data("token_embd.weight")[..3], [at(0), at(1), at(2)]);
    // blk.4.ffn_down = w2 of layer 4: after emb, rms_att, wq, wk, wv, wo, rms_ffn, w1, then 4 layers of w2.
    let w2_start = emb + 5 * 64 + 5 * 64 * 64 + 2 * 5 * 32 * 64 + 5 * 64 * 64 + 5 * 64 + 5 * 172 * 64;
    let down = data("blk.4.ffn_down.weight");
    assert_eq!((down[0], down[down.len() - 1]), (at(w2_start + 4 * 64 * 172), at(w2_start + 5 * 64 * 172 - 1)));
    let norm = data("output_norm.weight");
    assert_eq!(norm[63], at(w2_start + 5 * 64 * 172 + 5 * 172 * 64 + 63));
}

// ---- dequantize helper as the writer uses it ----------------------------------------------------

#[test]
fn encoded_tensors_dequantize_with_the_public_helper() {
    let spec = import_gguf_bytes(&tiny_llama(false).build(), false).unwrap();
    for t in &spec.tensors {
        if let TensorData::Encoded { dtype, bytes } = &t.data {
            let v = dequantize(*dtype, bytes).unwrap();
            assert_eq!(v.len(), t.dims.iter().product::<u32>() as usize, "{}", t.name);
        }
    }
}

// ---- the real SmolLM2 GGUF ----------------------------------------------------------------------

/// The model `make model` fetches: `$TRL_MODELS/SmolLM2-135M-Instruct.Q4_1.gguf` (or the file
/// `TRL_SMOLLM2_GGUF` names). Without either variable the test has nothing to read and says so.
#[test]
fn smollm2_gguf_imports() {
    // `make model` puts the GGUF here; a missing file fails the test (CI never passes by skipping).
    let dir = std::env::var("TRL_MODELS").unwrap_or_else(|_| format!("{}/../models", env!("CARGO_MANIFEST_DIR")));
    let path = format!("{dir}/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(std::path::Path::new(&path).exists(), "{path} is missing: run `make model`");
    let spec = super::import_gguf(&path, false).unwrap();
    let h = &spec.hparams;
    assert_eq!(
        (h.vocab_size, h.dim, h.n_layers, h.n_heads, h.n_kv_heads, h.ffn_dim, h.max_context, h.tied_embeddings),
        (49152, 576, 30, 9, 3, 1536, 8192, true)
    );
    assert_eq!((h.rope_theta, h.norm_eps), (100000.0, 1e-5));
    let tok = &spec.tokenizer;
    let first: Vec<&[u8]> = tok.tokens[..5].iter().map(|t| t.bytes.as_slice()).collect();
    assert_eq!(first, [&b"<|endoftext|>"[..], b"<|im_start|>", b"<|im_end|>", b"<repo_name>", b"<reponame>"]);
    assert_eq!((tok.tokens.len(), tok.merges.len()), (49152, 48900));
    assert_eq!(tok.eog_ids, vec![0, 2, 4]);
    assert_eq!((tok.kind, tok.pre_tokenizer, tok.chat_template), (TokenizerKind::BpeByteLevel, PreTokenizer::Smollm, ChatTemplate::ChatMl));
    assert_eq!((tok.bos_id, tok.eos_id, tok.unk_id, tok.add_bos), (Some(1), Some(2), Some(0), false));
    assert_eq!(spec.tensors.len(), 272);
    assert!(matches!(spec.tensors[0].data, TensorData::Encoded { dtype: DType::Q8_0, .. }));
    assert!(matches!(spec.tensors[2].data, TensorData::Encoded { dtype: DType::Q4_1, .. }));
}
