//! Every SLM1 rule in `abi/FORMAT.md`, broken one at a time in a hand-made package, must be rejected
//! by `load_model` with the status the format names — never a trap — with a `last_error` that names
//! the field, the host buffer unchanged and the instance still usable afterwards.
//!
//! Each case starts from a valid synthetic package (f32 and q8_0 storage, tied and separate output
//! embeddings), breaks ONE thing and recomputes the checksums (`package::reseal`, or re-serialises a
//! `RawPackage`) so that the rule under test, not a checksum, is what the parser trips on. The
//! checksum tests break a checksum on purpose and fix up only the ones they are not about.

mod common;

use common::*;
use harness::package::{self, reseal, Layout, RawPackage, RawTensor};
use harness::spec::{token_type, ChatTemplate, MergeSpec, ModelSpec, PreTokenizer, TensorData, TokenSpec, TokenizerKind, TokenizerSpec};
use harness::synth::{byte_tokenizer, SplitMix64};
use tinyrustlm::error::Status;
use tinyrustlm::quant::{self, DType};

/// Byte offsets of the SLM1 header fields (FORMAT.md, "Header").
mod hdr {
    pub const MAGIC: usize = 0;
    pub const FORMAT_VERSION: usize = 4;
    pub const HEADER_LEN: usize = 8;
    pub const FLAGS: usize = 12;
    pub const VOCAB_SIZE: usize = 16;
    pub const DIM: usize = 20;
    pub const N_LAYERS: usize = 24;
    pub const N_HEADS: usize = 28;
    pub const N_KV_HEADS: usize = 32;
    pub const FFN_DIM: usize = 36;
    pub const MAX_CONTEXT: usize = 40;
    pub const ROPE_THETA: usize = 44;
    pub const NORM_EPS: usize = 48;
    pub const QUANT_MODE: usize = 52;
    pub const N_PARAMS: usize = 56;
    pub const N_TENSORS: usize = 64;
    pub const TOKENIZER_CRC: usize = 68;
    pub const TENSOR_LAYOUT_CRC: usize = 72;
    pub const RESERVED: usize = 76;
    pub const DIR_OFFSET: usize = 80;
    pub const DIR_LEN: usize = 88;
    pub const TOKENIZER_OFFSET: usize = 96;
    pub const TOKENIZER_LEN: usize = 104;
    pub const DATA_OFFSET: usize = 112;
    pub const DATA_LEN: usize = 120;
}

/// Byte offsets of the tokenizer section header fields (FORMAT.md, "Tokenizer section").
mod tok {
    pub const KIND: usize = 0;
    pub const N_TOKENS: usize = 4;
    pub const N_MERGES: usize = 8;
    pub const PRE_TOKENIZER: usize = 24;
    pub const CHAT_TEMPLATE: usize = 28;
    pub const TOK_FLAGS: usize = 32;
    pub const N_EOG: usize = 36;
    pub const MAX_TOKEN_LEN: usize = 40;
    pub const RESERVED: usize = 44;
    pub const EOG_IDS: usize = 48;
}

/// The valid packages every generic case is applied to. (The writer stores a 4-bit package's
/// embeddings as q8_0, so the q4_0 base also covers that mix.)
const BASES: [(DType, bool); 4] = [(DType::F32, true), (DType::Q8_0, true), (DType::Q8_0, false), (DType::Q4_0, false)];

fn base_name(quant: DType, tied: bool) -> String {
    format!("{} {}", quant.name(), if tied { "tied" } else { "untied" })
}

/// An edit of the serialised bytes; the test reseals afterwards.
type ByteEdit = fn(&mut Vec<u8>, &Layout);
/// An edit of the package before serialisation (offsets and checksums come out consistent).
type RawEdit = fn(&mut RawPackage);

struct Case<E> {
    name: &'static str,
    edit: E,
    want: Status,
    /// Must appear in `last_error`.
    field: &'static str,
}

fn run_byte_cases(cases: &[Case<ByteEdit>], bases: &[(DType, bool)]) {
    let mut rt = runtime();
    let mut failures = Vec::new();
    for &(quant, tied) in bases {
        let (good, layout) = raw_package(quant, tied).to_bytes();
        for c in cases {
            let mut bytes = good.clone();
            (c.edit)(&mut bytes, &layout);
            assert_ne!(bytes, good, "case {:?} did not change the package", c.name);
            reseal(&mut bytes);
            if let Err(e) = check_rejection(try_load(&mut rt, &bytes, 0), c.want, c.field) {
                failures.push(format!("[{}] {}: {e}", base_name(quant, tied), c.name));
            }
        }
        assert_usable(&mut rt, &format!("the {} byte cases", base_name(quant, tied)));
    }
    assert_no_failures("byte-edited packages", &failures);
}

fn run_raw_cases(cases: &[Case<RawEdit>], bases: &[(DType, bool)]) {
    let mut rt = runtime();
    let mut failures = Vec::new();
    for &(quant, tied) in bases {
        let good = raw_package(quant, tied);
        for c in cases {
            let mut raw = good.clone();
            (c.edit)(&mut raw);
            let (bytes, _) = raw.to_bytes();
            if let Err(e) = check_rejection(try_load(&mut rt, &bytes, 0), c.want, c.field) {
                failures.push(format!("[{}] {}: {e}", base_name(quant, tied), c.name));
            }
        }
        assert_usable(&mut rt, &format!("the {} package cases", base_name(quant, tied)));
    }
    assert_no_failures("edited packages", &failures);
}

// ---- Editing helpers -------------------------------------------------------------------------

fn bump_u32(b: &mut [u8], at: usize, delta: i64) {
    let v = u32_at(b, at) as i64 + delta;
    put_u32(b, at, v as u32);
}

fn bump_u64(b: &mut [u8], at: usize, delta: i64) {
    let v = u64_at(b, at) as i128 + delta as i128;
    put_u64(b, at, v as u64);
}

/// Byte positions of the fields of one directory entry in a serialised package.
struct Entry {
    name: String,
    dtype: usize,
    rank: usize,
    dims: usize,
    offset: usize,
    byte_len: usize,
}

fn entries(b: &[u8], l: &Layout) -> Vec<Entry> {
    l.entries
        .iter()
        .map(|&at| {
            let name_len = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
            let name = String::from_utf8(b[at + 2..at + 2 + name_len].to_vec()).unwrap();
            let dtype = at + 2 + name_len;
            let rank = b[dtype + 1] as usize;
            let offset = dtype + 2 + 4 * rank;
            Entry { name, dtype, rank: dtype + 1, dims: dtype + 2, offset, byte_len: offset + 8 }
        })
        .collect()
}

fn entry(b: &[u8], l: &Layout, name: &str) -> Entry {
    entries(b, l).into_iter().find(|e| e.name == name).unwrap_or_else(|| panic!("no tensor {name} in the base package"))
}

fn tensor<'a>(raw: &'a mut RawPackage, name: &str) -> &'a mut RawTensor {
    raw.tensors.iter_mut().find(|t| t.name == name.as_bytes()).unwrap_or_else(|| panic!("no tensor {name} in the base package"))
}

fn elements(t: &RawTensor) -> u64 {
    t.dims.iter().map(|&d| d as u64).product()
}

fn remove_tensor(raw: &mut RawPackage, name: &str) {
    let i = raw.tensors.iter().position(|t| t.name == name.as_bytes()).unwrap_or_else(|| panic!("no tensor {name}"));
    let t = raw.tensors.remove(i);
    raw.n_params -= elements(&t);
}

fn push_tensor(raw: &mut RawPackage, t: RawTensor) {
    raw.n_params += elements(&t);
    raw.tensors.push(t);
}

fn f32_vector(name: &str, len: u32) -> RawTensor {
    RawTensor { name: name.as_bytes().to_vec(), dtype: DType::F32.code(), dims: vec![len], data: [0x3F, 0x80, 0, 0].repeat(len as usize) }
}

/// Re-encodes a tensor in another dtype (dequantize, then quantize).
fn reencode(t: &mut RawTensor, to: DType) {
    let from = DType::from_code(t.dtype).unwrap();
    let row_len = *t.dims.last().unwrap() as usize;
    let (from_row, to_row) = (from.row_bytes(row_len).unwrap(), to.row_bytes(row_len).unwrap());
    let mut values = vec![0f32; row_len];
    let mut out = Vec::new();
    for src in t.data.chunks_exact(from_row) {
        quant::dequantize_row(from, src, &mut values);
        let mut dst = vec![0u8; to_row];
        quant::quantize_row(to, &values, &mut dst);
        out.extend_from_slice(&dst);
    }
    t.data = out;
    t.dtype = to.code();
}

/// The dtype a base package's matrices are NOT stored in.
fn other_matrix_dtype(raw: &RawPackage) -> DType {
    if raw.quant_mode == DType::F32.code() as u32 {
        DType::Q8_0
    } else {
        DType::F32
    }
}

// ---- Files too short to be a package ---------------------------------------------------------

#[test]
fn empty_and_tiny_files_are_rejected() {
    let mut rt = runtime();
    // An empty file cannot be in a host buffer (alloc(0) fails), so load_model(ptr, 0) is refused
    // as "not a whole buffer".
    let s = rt.call_status("load_model", (0u32, 0u32, 0u32, 0u32)).expect("load_model(0, 0) trapped");
    assert_eq!(s, Status::InvalidArgument.code(), "load_model of an empty range");
    let good = good_package();
    let cases: [(&str, &[u8], Status, &str); 7] = [
        ("1 byte", &good[..1], Status::Truncated, "header"),
        ("3 bytes \"SLM\"", &good[..3], Status::Truncated, "header"),
        ("4 bytes of magic only", &good[..4], Status::Truncated, "header"),
        ("127 bytes of a valid header", &good[..127], Status::Truncated, "header"),
        ("4 bytes \"GGUF\"", b"GGUF", Status::BadMagic, "header.magic"),
        ("128 zero bytes", &[0u8; 128], Status::BadMagic, "header.magic"),
        ("header only", &good[..128], Status::BadSectionBounds, "header.dir_len"),
    ];
    let mut failures = Vec::new();
    for (name, bytes, want, field) in cases {
        if let Err(e) = check_rejection(try_load(&mut rt, bytes, 0), want, field) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert_no_failures("tiny files", &failures);
    assert_usable(&mut rt, "tiny files");
}

#[test]
fn truncation_anywhere_is_rejected_never_a_trap() {
    let mut rt = runtime();
    for &(quant, tied) in &BASES {
        let (good, l) = raw_package(quant, tied).to_bytes();
        let n = good.len();
        let mut cuts: Vec<usize> = (1..=129).collect();
        let mut boundaries = vec![l.dir.start, l.dir.end, l.tokenizer.start, l.tokenizer.end, l.data.start, l.data.end, n - 4];
        for r in &l.tensor_data {
            boundaries.extend([r.start, r.end]);
        }
        for r in [&l.dir, &l.tokenizer, &l.data] {
            boundaries.push((r.start + r.end) / 2);
        }
        boundaries.extend(l.entries.iter().map(|&e| e + 3));
        for b in boundaries {
            cuts.extend([b.saturating_sub(1), b, b + 1]);
        }
        cuts.extend((0..n).step_by(509));
        cuts.push(n - 1);
        cuts.retain(|&c| c >= 1 && c < n);
        cuts.sort_unstable();
        cuts.dedup();

        let mut failures = Vec::new();
        for &cut in &cuts {
            let got = try_load(&mut rt, &good[..cut], 0);
            let err = match got {
                Ok(_) => {
                    failures.push(format!("cut at {cut}/{n}: loaded"));
                    rt.unload_model().unwrap();
                    continue;
                }
                Err(e) => e,
            };
            if cut < 128 {
                if let Err(e) = check_rejection(Err(err), Status::Truncated, "header") {
                    failures.push(format!("cut at {cut}/{n} (inside the header): {e}"));
                }
            } else {
                // FORMAT.md names no single status for a short file past the header: the header's
                // section lengths no longer fit (BAD_SECTION_BOUNDS) or the data runs past the end
                // (TRUNCATED). Either way the message must name the header length that breaks.
                let ok_status = err.status == Status::Truncated.code() || err.status == Status::BadSectionBounds.code();
                let names_length = ["header.dir_len", "header.tokenizer_len", "header.data_len"].iter().any(|f| err.message.contains(f));
                if !ok_status || !names_length {
                    failures.push(format!("cut at {cut}/{n}: status {} ({}): {}", err.status, status_label(err.status), err.message));
                }
            }
        }
        assert_no_failures(&format!("{} truncated at {} points", base_name(quant, tied), cuts.len()), &failures);
        assert_usable(&mut rt, &format!("{} truncations", base_name(quant, tied)));
    }
}

// ---- Header ------------------------------------------------------------------------------------

#[test]
fn header_fields_out_of_range_are_rejected() {
    use hdr::*;
    let bh = Status::BadHyperparameter;
    let cases: Vec<Case<ByteEdit>> = vec![
        Case { name: "magic SLM2", edit: |b, _| b[MAGIC + 3] = b'2', want: Status::BadMagic, field: "header.magic" },
        Case { name: "magic slm1", edit: |b, _| b[MAGIC..MAGIC + 4].copy_from_slice(b"slm1"), want: Status::BadMagic, field: "header.magic" },
        Case { name: "format_version 3", edit: |b, _| put_u32(b, FORMAT_VERSION, 3), want: Status::UnsupportedVersion, field: "header.format_version" },
        // A v1 file relabelled v2: its 128-byte header is the wrong length for v2.
        Case { name: "format_version 2 on a v1 header", edit: |b, _| put_u32(b, FORMAT_VERSION, 2), want: Status::BadHeaderLength, field: "header.header_len" },
        Case { name: "format_version 0", edit: |b, _| put_u32(b, FORMAT_VERSION, 0), want: Status::UnsupportedVersion, field: "header.format_version" },
        Case { name: "header_len 127", edit: |b, _| put_u32(b, HEADER_LEN, 127), want: Status::BadHeaderLength, field: "header.header_len" },
        Case { name: "header_len 129", edit: |b, _| put_u32(b, HEADER_LEN, 129), want: Status::BadHeaderLength, field: "header.header_len" },
        Case { name: "header_len 0", edit: |b, _| put_u32(b, HEADER_LEN, 0), want: Status::BadHeaderLength, field: "header.header_len" },
        Case {
            name: "flags bit 1",
            edit: |b, _| {
                let v = u32_at(b, FLAGS) | 2;
                put_u32(b, FLAGS, v)
            },
            want: Status::BadFlags,
            field: "header.flags",
        },
        Case {
            name: "flags bit 31",
            edit: |b, _| {
                let v = u32_at(b, FLAGS) | 1 << 31;
                put_u32(b, FLAGS, v)
            },
            want: Status::BadFlags,
            field: "header.flags",
        },
        Case { name: "reserved 1", edit: |b, _| put_u32(b, RESERVED, 1), want: Status::BadFlags, field: "header.reserved" },
        Case { name: "reserved 0x80000000", edit: |b, _| put_u32(b, RESERVED, 1 << 31), want: Status::BadFlags, field: "header.reserved" },
        Case { name: "vocab_size 0", edit: |b, _| put_u32(b, VOCAB_SIZE, 0), want: bh, field: "header.vocab_size" },
        Case { name: "vocab_size 262145", edit: |b, _| put_u32(b, VOCAB_SIZE, 262_145), want: bh, field: "header.vocab_size" },
        Case { name: "dim 0", edit: |b, _| put_u32(b, DIM, 0), want: bh, field: "header.dim" },
        Case { name: "dim 16385", edit: |b, _| put_u32(b, DIM, 16_385), want: bh, field: "header.dim" },
        Case { name: "n_layers 0", edit: |b, _| put_u32(b, N_LAYERS, 0), want: bh, field: "header.n_layers" },
        Case { name: "n_layers 257", edit: |b, _| put_u32(b, N_LAYERS, 257), want: bh, field: "header.n_layers" },
        Case { name: "n_heads 0", edit: |b, _| put_u32(b, N_HEADS, 0), want: bh, field: "header.n_heads" },
        Case { name: "n_heads 65 > dim", edit: |b, _| put_u32(b, N_HEADS, 65), want: bh, field: "header.n_heads" },
        Case { name: "n_heads 3 does not divide dim 64", edit: |b, _| put_u32(b, N_HEADS, 3), want: bh, field: "header.n_heads" },
        Case { name: "n_heads 64: head_dim 1 is odd", edit: |b, _| put_u32(b, N_HEADS, 64), want: bh, field: "header.n_heads" },
        Case { name: "n_kv_heads 0", edit: |b, _| put_u32(b, N_KV_HEADS, 0), want: bh, field: "header.n_kv_heads" },
        Case { name: "n_kv_heads 3 does not divide n_heads 4", edit: |b, _| put_u32(b, N_KV_HEADS, 3), want: bh, field: "header.n_kv_heads" },
        Case { name: "n_kv_heads 8 > n_heads 4", edit: |b, _| put_u32(b, N_KV_HEADS, 8), want: bh, field: "header.n_kv_heads" },
        Case { name: "ffn_dim 0", edit: |b, _| put_u32(b, FFN_DIM, 0), want: bh, field: "header.ffn_dim" },
        Case { name: "ffn_dim 65537", edit: |b, _| put_u32(b, FFN_DIM, 65_537), want: bh, field: "header.ffn_dim" },
        Case { name: "max_context 0", edit: |b, _| put_u32(b, MAX_CONTEXT, 0), want: bh, field: "header.max_context" },
        Case { name: "max_context 32769", edit: |b, _| put_u32(b, MAX_CONTEXT, 32_769), want: bh, field: "header.max_context" },
        Case { name: "rope_theta NaN", edit: |b, _| put_f32(b, ROPE_THETA, f32::NAN), want: bh, field: "header.rope_theta" },
        Case { name: "rope_theta -10000", edit: |b, _| put_f32(b, ROPE_THETA, -10000.0), want: bh, field: "header.rope_theta" },
        Case { name: "rope_theta 0", edit: |b, _| put_f32(b, ROPE_THETA, 0.0), want: bh, field: "header.rope_theta" },
        Case { name: "rope_theta +inf", edit: |b, _| put_f32(b, ROPE_THETA, f32::INFINITY), want: bh, field: "header.rope_theta" },
        Case { name: "norm_eps 0", edit: |b, _| put_f32(b, NORM_EPS, 0.0), want: bh, field: "header.norm_eps" },
        Case { name: "norm_eps -0", edit: |b, _| put_f32(b, NORM_EPS, -0.0), want: bh, field: "header.norm_eps" },
        Case { name: "norm_eps -1e-5", edit: |b, _| put_f32(b, NORM_EPS, -1e-5), want: bh, field: "header.norm_eps" },
        Case { name: "norm_eps NaN", edit: |b, _| put_f32(b, NORM_EPS, f32::NAN), want: bh, field: "header.norm_eps" },
        Case { name: "norm_eps +inf", edit: |b, _| put_f32(b, NORM_EPS, f32::INFINITY), want: bh, field: "header.norm_eps" },
        Case { name: "quant_mode 4 (unknown)", edit: |b, _| put_u32(b, QUANT_MODE, 4), want: Status::BadQuantMode, field: "header.quant_mode" },
        Case { name: "quant_mode 256", edit: |b, _| put_u32(b, QUANT_MODE, 256), want: Status::BadQuantMode, field: "header.quant_mode" },
        Case { name: "quant_mode 0xFFFFFFFF", edit: |b, _| put_u32(b, QUANT_MODE, u32::MAX), want: Status::BadQuantMode, field: "header.quant_mode" },
        Case { name: "n_tensors 4097", edit: |b, _| put_u32(b, N_TENSORS, 4097), want: Status::LimitExceeded, field: "header.n_tensors" },
        Case { name: "n_tensors 0xFFFFFFFF", edit: |b, _| put_u32(b, N_TENSORS, u32::MAX), want: Status::LimitExceeded, field: "header.n_tensors" },
        Case {
            name: "n_tensors 4096: more than the directory bytes hold",
            edit: |b, _| put_u32(b, N_TENSORS, 4096),
            want: Status::Truncated,
            field: "header.n_tensors",
        },
    ];
    run_byte_cases(&cases, &BASES);
}

/// Valid-looking values that contradict the tensors.
#[test]
fn header_inconsistent_with_the_tensors_is_rejected() {
    use hdr::*;
    let cases: Vec<Case<ByteEdit>> = vec![
        Case { name: "vocab_size 259", edit: |b, _| bump_u32(b, VOCAB_SIZE, 1), want: Status::BadTensorShape, field: "tensor[token_embd.weight].dims" },
        Case { name: "dim 128", edit: |b, _| put_u32(b, DIM, 128), want: Status::BadTensorShape, field: "tensor[token_embd.weight].dims" },
        Case {
            name: "n_kv_heads 4 (attn_k has 2 heads' rows)",
            edit: |b, _| put_u32(b, N_KV_HEADS, 4),
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_k.weight].dims",
        },
        Case {
            name: "n_heads 8, n_kv_heads 2 (attn_k rows change)",
            edit: |b, _| put_u32(b, N_HEADS, 8),
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_k.weight].dims",
        },
        Case { name: "ffn_dim 128", edit: |b, _| put_u32(b, FFN_DIM, 128), want: Status::BadTensorShape, field: "tensor[blk.0.ffn_gate.weight].dims" },
        Case { name: "n_layers 3 (blk.2 missing)", edit: |b, _| put_u32(b, N_LAYERS, 3), want: Status::MissingTensor, field: "tensor[blk.2.attn_norm.weight]" },
        Case { name: "n_layers 1 (blk.1 unknown)", edit: |b, _| put_u32(b, N_LAYERS, 1), want: Status::UnknownTensor, field: "tensor[blk.1." },
        // f32 → q4_0, anything else → f32: either way token_embd.weight's dtype is not allowed.
        Case {
            name: "quant_mode another valid dtype",
            edit: |b, _| {
                let v = if u32_at(b, QUANT_MODE) == 0 { 2 } else { 0 };
                put_u32(b, QUANT_MODE, v)
            },
            want: Status::BadQuantMode,
            field: "tensor[token_embd.weight].dtype",
        },
        Case { name: "n_params + 1", edit: |b, _| bump_u64(b, N_PARAMS, 1), want: Status::BadParameterCount, field: "header.n_params" },
        Case { name: "n_params - 1", edit: |b, _| bump_u64(b, N_PARAMS, -1), want: Status::BadParameterCount, field: "header.n_params" },
        Case { name: "n_params 0", edit: |b, _| put_u64(b, N_PARAMS, 0), want: Status::BadParameterCount, field: "header.n_params" },
        Case { name: "n_tensors + 1", edit: |b, _| bump_u32(b, N_TENSORS, 1), want: Status::Truncated, field: "name_len" },
        Case {
            name: "n_tensors - 1 (directory bytes left over)",
            edit: |b, _| bump_u32(b, N_TENSORS, -1),
            want: Status::BadSectionBounds,
            field: "header.dir_len",
        },
    ];
    run_byte_cases(&cases, &BASES);
}

#[test]
fn section_bounds_are_exact() {
    use hdr::*;
    let sb = Status::BadSectionBounds;
    let cases: Vec<Case<ByteEdit>> = vec![
        Case { name: "dir_offset 129", edit: |b, _| put_u64(b, DIR_OFFSET, 129), want: sb, field: "header.dir_offset" },
        Case { name: "dir_offset 0", edit: |b, _| put_u64(b, DIR_OFFSET, 0), want: sb, field: "header.dir_offset" },
        Case { name: "dir_offset 2^64-1", edit: |b, _| put_u64(b, DIR_OFFSET, u64::MAX), want: sb, field: "header.dir_offset" },
        Case { name: "dir_len + 1", edit: |b, _| bump_u64(b, DIR_LEN, 1), want: sb, field: "header.tokenizer_offset" },
        Case { name: "dir_len 2^64-1 (offset + len overflows)", edit: |b, _| put_u64(b, DIR_LEN, u64::MAX), want: sb, field: "header.dir_len" },
        Case {
            name: "dir_len past the file end",
            edit: |b, _| {
                let v = b.len() as u64;
                put_u64(b, DIR_LEN, v)
            },
            want: sb,
            field: "header.dir_len",
        },
        Case { name: "tokenizer_offset + 1 (gap)", edit: |b, _| bump_u64(b, TOKENIZER_OFFSET, 1), want: sb, field: "header.tokenizer_offset" },
        Case { name: "tokenizer_offset - 1 (overlap)", edit: |b, _| bump_u64(b, TOKENIZER_OFFSET, -1), want: sb, field: "header.tokenizer_offset" },
        Case { name: "tokenizer_len 2^64-1", edit: |b, _| put_u64(b, TOKENIZER_LEN, u64::MAX), want: sb, field: "header.tokenizer_len" },
        Case {
            name: "tokenizer_len past the file end",
            edit: |b, _| {
                let v = b.len() as u64;
                put_u64(b, TOKENIZER_LEN, v)
            },
            want: sb,
            field: "header.tokenizer_len",
        },
        Case { name: "data_offset + 1 (misaligned)", edit: |b, _| bump_u64(b, DATA_OFFSET, 1), want: sb, field: "header.data_offset" },
        Case { name: "data_offset + 32", edit: |b, _| bump_u64(b, DATA_OFFSET, 32), want: sb, field: "header.data_offset" },
        Case { name: "data_offset - 32", edit: |b, _| bump_u64(b, DATA_OFFSET, -32), want: sb, field: "header.data_offset" },
        Case { name: "data_offset 2^64-32", edit: |b, _| put_u64(b, DATA_OFFSET, u64::MAX - 31), want: sb, field: "header.data_offset" },
        Case { name: "data_len + 1 (too long for the file)", edit: |b, _| bump_u64(b, DATA_LEN, 1), want: Status::Truncated, field: "header.data_len" },
        Case { name: "data_len - 1 (too short)", edit: |b, _| bump_u64(b, DATA_LEN, -1), want: sb, field: "header.data_len" },
        Case { name: "data_len 0", edit: |b, _| put_u64(b, DATA_LEN, 0), want: sb, field: "header.data_len" },
        Case { name: "data_len 2^64-1 (overflows)", edit: |b, _| put_u64(b, DATA_LEN, u64::MAX), want: sb, field: "header.data_len" },
        Case { name: "1 byte of trailing garbage", edit: |b, _| b.push(0), want: sb, field: "header.data_len" },
        Case { name: "4 bytes of trailing garbage", edit: |b, _| b.extend([0xAB; 4]), want: sb, field: "header.data_len" },
        Case { name: "32 bytes of trailing garbage", edit: |b, _| b.extend([0; 32]), want: sb, field: "header.data_len" },
        Case {
            name: "nonzero padding between tokenizer section and data",
            edit: |b, l| {
                assert!(l.tokenizer.end < l.data.start, "the base package has no padding before the data; this case cannot be built");
                b[l.data.start - 1] = 1;
            },
            want: Status::BadPadding,
            field: "padding.tokenizer_to_data",
        },
    ];
    run_byte_cases(&cases, &BASES);
}

// ---- Tensor directory ----------------------------------------------------------------------

#[test]
fn directory_entries_are_checked() {
    let cases: Vec<Case<ByteEdit>> = vec![
        Case {
            name: "offset far out of range",
            edit: |b, l| {
                let at = entry(b, l, "output_norm.weight").offset;
                put_u64(b, at, u64::MAX - 31)
            },
            want: Status::BadSectionBounds,
            field: "tensor[output_norm.weight].offset",
        },
        Case {
            name: "second tensor overlaps the first (offset 0)",
            edit: |b, l| {
                let at = entry(b, l, "blk.0.attn_norm.weight").offset;
                put_u64(b, at, 0)
            },
            want: Status::BadSectionBounds,
            field: "tensor[blk.0.attn_norm.weight].offset",
        },
        Case {
            name: "tensor overlaps its predecessor by 32 bytes",
            edit: |b, l| {
                let at = entry(b, l, "blk.0.attn_q.weight").offset;
                bump_u64(b, at, -32)
            },
            want: Status::BadSectionBounds,
            field: "tensor[blk.0.attn_q.weight].offset",
        },
        Case {
            name: "32-byte gap before a tensor",
            edit: |b, l| {
                let at = entry(b, l, "blk.0.attn_q.weight").offset;
                bump_u64(b, at, 32)
            },
            want: Status::BadSectionBounds,
            field: "tensor[blk.0.attn_q.weight].offset",
        },
        Case {
            name: "unaligned offset (+4)",
            edit: |b, l| {
                let at = entry(b, l, "blk.0.attn_q.weight").offset;
                bump_u64(b, at, 4)
            },
            want: Status::BadAlignment,
            field: "tensor[blk.0.attn_q.weight].offset",
        },
        Case {
            name: "unaligned first offset (1)",
            edit: |b, l| {
                let at = entry(b, l, "token_embd.weight").offset;
                put_u64(b, at, 1)
            },
            want: Status::BadAlignment,
            field: "tensor[token_embd.weight].offset",
        },
        Case {
            name: "byte_len + 1",
            edit: |b, l| {
                let at = entry(b, l, "token_embd.weight").byte_len;
                bump_u64(b, at, 1)
            },
            want: Status::BadTensorShape,
            field: "tensor[token_embd.weight].byte_len",
        },
        Case {
            name: "byte_len 2^64-1",
            edit: |b, l| {
                let at = entry(b, l, "blk.1.ffn_up.weight").byte_len;
                put_u64(b, at, u64::MAX)
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.1.ffn_up.weight].byte_len",
        },
        Case { name: "name_len 0xFFFF", edit: |b, l| put_u16(b, l.entries[0], u16::MAX), want: Status::BadTensorName, field: "tensor[0].name_len" },
        Case {
            name: "dtype 9",
            edit: |b, l| {
                let at = entry(b, l, "token_embd.weight").dtype;
                b[at] = 9
            },
            want: Status::UnsupportedDtype,
            field: "tensor[token_embd.weight].dtype",
        },
        Case {
            name: "dtype 4",
            edit: |b, l| {
                let at = entry(b, l, "blk.0.attn_norm.weight").dtype;
                b[at] = 4
            },
            want: Status::UnsupportedDtype,
            field: "tensor[blk.0.attn_norm.weight].dtype",
        },
        Case {
            name: "dtype 255",
            edit: |b, l| {
                let at = entry(b, l, "blk.1.ffn_down.weight").dtype;
                b[at] = 255
            },
            want: Status::UnsupportedDtype,
            field: "tensor[blk.1.ffn_down.weight].dtype",
        },
        Case {
            name: "rank 0",
            edit: |b, l| {
                let at = entry(b, l, "token_embd.weight").rank;
                b[at] = 0
            },
            want: Status::BadTensorShape,
            field: "tensor[token_embd.weight].rank",
        },
        Case {
            name: "rank 3",
            edit: |b, l| {
                let at = entry(b, l, "blk.0.attn_q.weight").rank;
                b[at] = 3
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_q.weight].rank",
        },
        Case {
            name: "rank 255",
            edit: |b, l| {
                let at = entry(b, l, "output_norm.weight").rank;
                b[at] = 255
            },
            want: Status::BadTensorShape,
            field: "tensor[output_norm.weight].rank",
        },
        Case {
            name: "rows 0",
            edit: |b, l| {
                let at = entry(b, l, "token_embd.weight").dims;
                put_u32(b, at, 0)
            },
            want: Status::BadTensorShape,
            field: "tensor[token_embd.weight].dims",
        },
        Case {
            name: "row length 0",
            edit: |b, l| {
                let at = entry(b, l, "blk.0.attn_v.weight").dims + 4;
                put_u32(b, at, 0)
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_v.weight].dims",
        },
        Case {
            name: "vector length 0",
            edit: |b, l| {
                let at = entry(b, l, "blk.1.ffn_norm.weight").dims;
                put_u32(b, at, 0)
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.1.ffn_norm.weight].dims",
        },
    ];
    run_byte_cases(&cases, &BASES);
}

#[test]
fn tensor_names_sets_and_shapes_are_checked() {
    let cases: Vec<Case<RawEdit>> = vec![
        Case {
            name: "upper-case name",
            edit: |r| tensor(r, "token_embd.weight").name = b"Token_embd.weight".to_vec(),
            want: Status::BadTensorName,
            field: "tensor[0].name",
        },
        Case {
            name: "'-' in a name",
            edit: |r| tensor(r, "blk.0.attn_q.weight").name = b"blk.0.attn-q.weight".to_vec(),
            want: Status::BadTensorName,
            field: "tensor[2].name",
        },
        Case {
            name: "'/' in a name",
            edit: |r| tensor(r, "blk.0.attn_norm.weight").name = b"blk/0.attn_norm.weight".to_vec(),
            want: Status::BadTensorName,
            field: "tensor[1].name",
        },
        Case {
            name: "space in a name",
            edit: |r| tensor(r, "token_embd.weight").name = b"token embd.weight".to_vec(),
            want: Status::BadTensorName,
            field: "tensor[0].name",
        },
        Case {
            name: "NUL in a name",
            edit: |r| tensor(r, "token_embd.weight").name = b"token_embd.weight\0".to_vec(),
            want: Status::BadTensorName,
            field: "tensor[0].name",
        },
        Case {
            name: "non-ASCII byte in a name",
            edit: |r| tensor(r, "token_embd.weight").name = b"token_embd.w\xC3\xA9ight".to_vec(),
            want: Status::BadTensorName,
            field: "tensor[0].name",
        },
        Case { name: "name_len 0", edit: |r| tensor(r, "token_embd.weight").name = Vec::new(), want: Status::BadTensorName, field: "tensor[0].name_len" },
        Case { name: "name_len 65", edit: |r| tensor(r, "token_embd.weight").name = vec![b'a'; 65], want: Status::BadTensorName, field: "tensor[0].name_len" },
        // 64 valid characters pass the name rule and fail as an unknown tensor (the name is fine).
        Case {
            name: "name_len 64, valid but unknown",
            edit: |r| push_tensor(r, f32_vector(&"a".repeat(64), 64)),
            want: Status::UnknownTensor,
            field: "tensor[aaaaaaaa",
        },
        Case { name: "rank 0", edit: |r| tensor(r, "token_embd.weight").dims = vec![], want: Status::BadTensorShape, field: "tensor[token_embd.weight].rank" },
        Case {
            name: "rank 3",
            edit: |r| tensor(r, "token_embd.weight").dims.insert(0, 1),
            want: Status::BadTensorShape,
            field: "tensor[token_embd.weight].rank",
        },
        Case {
            name: "dim 0 with no data",
            edit: |r| {
                let t = tensor(r, "blk.1.attn_output.weight");
                t.dims[0] = 0;
                t.data.clear();
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.1.attn_output.weight].dims",
        },
        Case {
            name: "data 4 bytes short",
            edit: |r| {
                let d = &mut tensor(r, "output_norm.weight").data;
                d.truncate(d.len() - 4)
            },
            want: Status::BadTensorShape,
            field: "tensor[output_norm.weight].byte_len",
        },
        Case {
            name: "data 4 bytes long",
            edit: |r| tensor(r, "blk.1.attn_q.weight").data.extend([0; 4]),
            want: Status::BadTensorShape,
            field: "tensor[blk.1.attn_q.weight].byte_len",
        },
        Case {
            name: "one row of data missing",
            edit: |r| {
                let t = tensor(r, "token_embd.weight");
                let row = t.data.len() / t.dims[0] as usize;
                t.data.truncate(t.data.len() - row)
            },
            want: Status::BadTensorShape,
            field: "tensor[token_embd.weight].byte_len",
        },
        Case {
            name: "missing blk.1.ffn_down.weight",
            edit: |r| remove_tensor(r, "blk.1.ffn_down.weight"),
            want: Status::MissingTensor,
            field: "tensor[blk.1.ffn_down.weight]",
        },
        Case {
            name: "missing token_embd.weight",
            edit: |r| remove_tensor(r, "token_embd.weight"),
            want: Status::MissingTensor,
            field: "tensor[token_embd.weight]",
        },
        Case {
            name: "missing output_norm.weight",
            edit: |r| remove_tensor(r, "output_norm.weight"),
            want: Status::MissingTensor,
            field: "tensor[output_norm.weight]",
        },
        Case {
            name: "missing blk.0.attn_norm.weight",
            edit: |r| remove_tensor(r, "blk.0.attn_norm.weight"),
            want: Status::MissingTensor,
            field: "tensor[blk.0.attn_norm.weight]",
        },
        Case {
            name: "duplicate output_norm.weight",
            edit: |r| {
                let t = tensor(r, "output_norm.weight").clone();
                push_tensor(r, t)
            },
            want: Status::DuplicateTensor,
            field: "tensor[output_norm.weight]",
        },
        Case {
            name: "duplicate blk.0.attn_q.weight",
            edit: |r| {
                let t = tensor(r, "blk.0.attn_q.weight").clone();
                push_tensor(r, t)
            },
            want: Status::DuplicateTensor,
            field: "tensor[blk.0.attn_q.weight]",
        },
        Case {
            name: "unknown blk.0.attn_bias.weight",
            edit: |r| push_tensor(r, f32_vector("blk.0.attn_bias.weight", 64)),
            want: Status::UnknownTensor,
            field: "tensor[blk.0.attn_bias.weight]",
        },
        Case {
            name: "unknown blk.2.attn_norm.weight (n_layers is 2)",
            edit: |r| push_tensor(r, f32_vector("blk.2.attn_norm.weight", 64)),
            want: Status::UnknownTensor,
            field: "tensor[blk.2.attn_norm.weight]",
        },
        Case {
            name: "unknown blk.00.attn_norm.weight (leading zero)",
            edit: |r| push_tensor(r, f32_vector("blk.00.attn_norm.weight", 64)),
            want: Status::UnknownTensor,
            field: "tensor[blk.00.attn_norm.weight]",
        },
        Case {
            name: "unknown rope_freqs.weight",
            edit: |r| push_tensor(r, f32_vector("rope_freqs.weight", 8)),
            want: Status::UnknownTensor,
            field: "tensor[rope_freqs.weight]",
        },
        Case {
            name: "ffn_down stored [ffn, dim] instead of [dim, ffn]",
            edit: |r| tensor(r, "blk.0.ffn_down.weight").dims.reverse(),
            want: Status::BadTensorShape,
            field: "tensor[blk.0.ffn_down.weight].dims",
        },
        Case {
            name: "attn_k with n_heads rows instead of n_kv_heads",
            edit: |r| {
                let t = tensor(r, "blk.1.attn_k.weight");
                t.dims[0] *= 2;
                t.data = t.data.repeat(2);
                r.n_params += 32 * 64;
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.1.attn_k.weight].dims",
        },
        Case {
            name: "norm stored as a [1, dim] matrix",
            edit: |r| tensor(r, "blk.0.attn_norm.weight").dims.insert(0, 1),
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_norm.weight].dims",
        },
        Case {
            name: "norm stored as q8_0",
            edit: |r| reencode(tensor(r, "blk.0.attn_norm.weight"), DType::Q8_0),
            want: Status::BadQuantMode,
            field: "tensor[blk.0.attn_norm.weight].dtype",
        },
        Case {
            name: "one matrix in a dtype other than quant_mode",
            edit: |r| {
                let to = other_matrix_dtype(r);
                reencode(tensor(r, "blk.1.ffn_gate.weight"), to)
            },
            want: Status::BadQuantMode,
            field: "tensor[blk.1.ffn_gate.weight].dtype",
        },
        Case {
            name: "NaN in an f32 norm",
            edit: |r| put_f32(&mut tensor(r, "blk.1.ffn_norm.weight").data, 4 * 5, f32::NAN),
            want: Status::BadTensorData,
            field: "tensor[blk.1.ffn_norm.weight]",
        },
        Case {
            name: "-inf in the last element of an f32 norm",
            edit: |r| {
                let d = &mut tensor(r, "output_norm.weight").data;
                let at = d.len() - 4;
                put_f32(d, at, f32::NEG_INFINITY)
            },
            want: Status::BadTensorData,
            field: "tensor[output_norm.weight]",
        },
    ];
    run_raw_cases(&cases, &BASES);
}

#[test]
fn tied_embeddings_flag_decides_whether_output_weight_exists() {
    let mut rt = runtime();
    let mut failures = Vec::new();
    for quant in [DType::F32, DType::Q8_0] {
        // Separate output embeddings, but the flag says tied: output.weight is not allowed.
        let mut raw = raw_package(quant, false);
        raw.flags |= package::FLAG_TIED_EMBEDDINGS;
        if let Err(e) = check_rejection(try_load(&mut rt, &raw.to_bytes().0, 0), Status::UnknownTensor, "tensor[output.weight]") {
            failures.push(format!("{} untied with TIED set: {e}", quant.name()));
        }
        // Tied package with the flag cleared: output.weight is required.
        let mut raw = raw_package(quant, true);
        raw.flags &= !package::FLAG_TIED_EMBEDDINGS;
        if let Err(e) = check_rejection(try_load(&mut rt, &raw.to_bytes().0, 0), Status::MissingTensor, "tensor[output.weight]") {
            failures.push(format!("{} tied with TIED clear: {e}", quant.name()));
        }
        // Untied package missing output.weight.
        let mut raw = raw_package(quant, false);
        remove_tensor(&mut raw, "output.weight");
        if let Err(e) = check_rejection(try_load(&mut rt, &raw.to_bytes().0, 0), Status::MissingTensor, "tensor[output.weight]") {
            failures.push(format!("{} untied without output.weight: {e}", quant.name()));
        }
    }
    assert_no_failures("TIED_EMBEDDINGS", &failures);
    assert_usable(&mut rt, "TIED_EMBEDDINGS cases");
}

/// Rules that only exist for quantized storage: block-multiple rows, finite scales, zero padding
/// after a tensor whose length is not a multiple of 32.
#[test]
fn quantized_tensor_rules() {
    let raw_cases: Vec<Case<RawEdit>> = vec![
        Case {
            name: "q8_0 row length 48 (not a multiple of 32)",
            edit: |r| {
                let t = tensor(r, "token_embd.weight");
                t.dims = vec![t.dims[0], 48];
            },
            want: Status::BadTensorShape,
            field: "tensor[token_embd.weight].dims",
        },
        Case {
            name: "q8_0 row length 33",
            edit: |r| {
                let t = tensor(r, "blk.0.attn_q.weight");
                t.dims = vec![64, 33];
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_q.weight].dims",
        },
        Case {
            name: "q8_0 scale +inf (f16 0x7C00) in block 3",
            edit: |r| put_u16(&mut tensor(r, "blk.0.ffn_up.weight").data, 3 * 34, 0x7C00),
            want: Status::BadTensorData,
            field: "tensor[blk.0.ffn_up.weight]",
        },
        Case {
            name: "q8_0 scale NaN (f16 0x7E00) in the last block",
            edit: |r| {
                let d = &mut tensor(r, "blk.1.ffn_down.weight").data;
                let at = d.len() - 34;
                put_u16(d, at, 0x7E00)
            },
            want: Status::BadTensorData,
            field: "tensor[blk.1.ffn_down.weight]",
        },
        Case {
            name: "q8_0 scale -inf in token_embd",
            edit: |r| put_u16(&mut tensor(r, "token_embd.weight").data, 34 * 100, 0xFC00),
            want: Status::BadTensorData,
            field: "tensor[token_embd.weight]",
        },
    ];
    let q8 = [(DType::Q8_0, true), (DType::Q8_0, false)];
    run_raw_cases(&raw_cases, &q8);

    let byte_cases: Vec<Case<ByteEdit>> = vec![Case {
        name: "nonzero padding after token_embd.weight",
        edit: |b, l| {
            let e = entries(b, l).iter().position(|e| e.name == "token_embd.weight").unwrap();
            let end = l.tensor_data[e].end;
            assert!(end % 32 != 0, "token_embd.weight ends aligned; no padding to break");
            b[end] = 0x80;
        },
        want: Status::BadPadding,
        field: "tensor[token_embd.weight].padding",
    }];
    run_byte_cases(&byte_cases, &q8);
}

/// FORMAT.md: in q4_0/q4_1 packages the embedding and a separate LM head may be q8_0 (or
/// quant_mode); nothing else gets that exception.
#[test]
fn four_bit_packages_allow_q8_0_embeddings_and_nothing_else() {
    let mut rt = runtime();
    for quant in [DType::Q4_0, DType::Q4_1] {
        let base = raw_package(quant, false);
        assert_eq!(tensor(&mut base.clone(), "token_embd.weight").dtype, DType::Q8_0.code(), "the writer stores 4-bit embeddings as q8_0");
        // Accepted: embeddings in quant_mode too.
        let mut raw = base.clone();
        reencode(tensor(&mut raw, "token_embd.weight"), quant);
        reencode(tensor(&mut raw, "output.weight"), quant);
        try_load(&mut rt, &raw.to_bytes().0, 0).unwrap_or_else(|e| panic!("{} with {0} embeddings rejected: {}", quant.name(), e.message));
        rt.unload_model().unwrap();

        let other_4bit = if quant == DType::Q4_0 { DType::Q4_1 } else { DType::Q4_0 };
        let cases: [(&str, &str, DType); 4] = [
            ("token_embd.weight as f32", "token_embd.weight", DType::F32),
            ("output.weight as the other 4-bit dtype", "output.weight", other_4bit),
            ("a matrix as q8_0", "blk.1.attn_v.weight", DType::Q8_0),
            ("a matrix as f32", "blk.0.ffn_down.weight", DType::F32),
        ];
        let mut failures = Vec::new();
        for (what, name, to) in cases {
            let mut raw = base.clone();
            reencode(tensor(&mut raw, name), to);
            let field = format!("tensor[{name}].dtype");
            if let Err(e) = check_rejection(try_load(&mut rt, &raw.to_bytes().0, 0), Status::BadQuantMode, &field) {
                failures.push(format!("{} {what}: {e}", quant.name()));
            }
        }
        assert_no_failures("4-bit embedding dtypes", &failures);
    }
    // q8_0 and f32 packages get no exception: a q8_0 package's embedding may not be 4-bit.
    let mut raw = raw_package(DType::Q8_0, false);
    reencode(tensor(&mut raw, "token_embd.weight"), DType::Q4_0);
    let got = try_load(&mut rt, &raw.to_bytes().0, 0);
    if let Err(e) = check_rejection(got, Status::BadQuantMode, "tensor[token_embd.weight].dtype") {
        panic!("q8_0 package with a q4_0 embedding: {e}");
    }
    assert_usable(&mut rt, "4-bit embedding cases");
}

#[test]
fn non_finite_f32_matrix_values_are_rejected() {
    let cases: Vec<Case<RawEdit>> = vec![
        Case {
            name: "NaN in an f32 matrix",
            edit: |r| put_f32(&mut tensor(r, "blk.1.attn_q.weight").data, 4 * 77, f32::NAN),
            want: Status::BadTensorData,
            field: "tensor[blk.1.attn_q.weight]",
        },
        Case {
            name: "+inf in f32 token_embd",
            edit: |r| put_f32(&mut tensor(r, "token_embd.weight").data, 0, f32::INFINITY),
            want: Status::BadTensorData,
            field: "tensor[token_embd.weight]",
        },
        Case {
            name: "signalling NaN in f32 output.weight",
            edit: |r| put_u32(&mut tensor(r, "output.weight").data, 4 * 1000, 0x7F80_0001),
            want: Status::BadTensorData,
            field: "tensor[output.weight]",
        },
    ];
    run_raw_cases(&cases, &[(DType::F32, false)]);
}

// ---- Checksums ---------------------------------------------------------------------------------

/// Recomputes only the artifact CRC (the trailer).
fn fix_artifact_crc(b: &mut [u8]) {
    let n = b.len();
    let crc = crc32fast::hash(&b[..n - 4]);
    b[n - 4..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn each_checksum_is_checked_before_what_it_covers() {
    let cases: Vec<Case<ByteEdit>> = vec![
        Case {
            name: "trailer CRC flipped",
            edit: |b, _| {
                let n = b.len();
                b[n - 1] ^= 0x01
            },
            want: Status::ArtifactChecksum,
            field: "trailer.artifact_crc",
        },
        Case {
            name: "a tensor data byte flipped",
            edit: |b, l| b[l.tensor_data[3].start + 5] ^= 0x10,
            want: Status::ArtifactChecksum,
            field: "trailer.artifact_crc",
        },
        // Checks run as the bytes arrive (a stream cannot wait for the trailer): a section's own
        // checksum comes before anything reads the section, so corruption in the directory is a
        // directory checksum failure; corruption of a header field or of tensor data that breaks a
        // rule is reported by that rule, before the artifact checksum can be known.
        Case {
            name: "dtype 9 without resealing",
            edit: |b, l| {
                let at = entry(b, l, "token_embd.weight").dtype;
                b[at] = 9
            },
            want: Status::TensorLayoutChecksum,
            field: "header.tensor_layout_crc",
        },
        Case {
            name: "n_params changed without resealing",
            edit: |b, _| bump_u64(b, hdr::N_PARAMS, 1),
            want: Status::BadParameterCount,
            field: "header.n_params",
        },
        Case {
            name: "NaN in a norm without resealing",
            edit: |b, l| put_f32(b, l.tensor_data[1].start, f32::NAN),
            want: Status::BadTensorData,
            field: "tensor[",
        },
        Case {
            name: "directory byte changed, artifact CRC fixed",
            edit: |b, l| {
                let at = entry(b, l, "token_embd.weight").dtype;
                b[at] = 9;
                fix_artifact_crc(b)
            },
            want: Status::TensorLayoutChecksum,
            field: "header.tensor_layout_crc",
        },
        Case {
            name: "tensor_layout_crc changed, artifact CRC fixed",
            edit: |b, _| {
                b[hdr::TENSOR_LAYOUT_CRC] ^= 0x80;
                fix_artifact_crc(b)
            },
            want: Status::TensorLayoutChecksum,
            field: "header.tensor_layout_crc",
        },
        Case {
            name: "tokenizer byte changed, artifact CRC fixed",
            edit: |b, l| {
                b[l.tokenizer.start + tok::EOG_IDS] ^= 0x01;
                fix_artifact_crc(b)
            },
            want: Status::TokenizerChecksum,
            field: "header.tokenizer_crc",
        },
        Case {
            name: "tokenizer_crc changed, artifact CRC fixed",
            edit: |b, _| {
                b[hdr::TOKENIZER_CRC + 2] ^= 0x04;
                fix_artifact_crc(b)
            },
            want: Status::TokenizerChecksum,
            field: "header.tokenizer_crc",
        },
    ];
    // No reseal here: each case sets up exactly the checksums it is about.
    let mut rt = runtime();
    let mut failures = Vec::new();
    for &(quant, tied) in &BASES {
        let (good, layout) = raw_package(quant, tied).to_bytes();
        for c in &cases {
            let mut bytes = good.clone();
            (c.edit)(&mut bytes, &layout);
            assert_ne!(bytes, good, "case {:?} did not change the package", c.name);
            if let Err(e) = check_rejection(try_load(&mut rt, &bytes, 0), c.want, c.field) {
                failures.push(format!("[{}] {}: {e}", base_name(quant, tied), c.name));
            }
        }
    }
    assert_no_failures("checksums", &failures);
    assert_usable(&mut rt, "checksum cases");
}

// ---- Tokenizer section -----------------------------------------------------------------------

/// A GPT-2-style byte-level BPE vocabulary small enough to reason about: the 256 bytes, one control
/// token, "ab" and "abc", with the two merges that build them.
fn bpe_tokenizer() -> TokenizerSpec {
    let mut tokens: Vec<TokenSpec> = (0..=255u8).map(|b| TokenSpec { bytes: vec![b], score: 0.0, token_type: token_type::NORMAL }).collect();
    tokens.push(TokenSpec { bytes: b"<|endoftext|>".to_vec(), score: 0.0, token_type: token_type::CONTROL }); // 256
    tokens.push(TokenSpec { bytes: b"ab".to_vec(), score: 0.0, token_type: token_type::NORMAL }); // 257
    tokens.push(TokenSpec { bytes: b"abc".to_vec(), score: 0.0, token_type: token_type::NORMAL }); // 258
    TokenizerSpec {
        kind: TokenizerKind::BpeByteLevel,
        tokens,
        merges: vec![MergeSpec { left: 97, right: 98, result: 257, rank: 0 }, MergeSpec { left: 257, right: 99, result: 258, rank: 1 }],
        bos_id: None,
        eos_id: Some(256),
        unk_id: None,
        pre_tokenizer: PreTokenizer::Gpt2,
        chat_template: ChatTemplate::None,
        add_bos: false,
        add_space_prefix: false,
        eog_ids: vec![256],
    }
}

/// The synthetic model with another tokenizer (the embedding rows follow its vocabulary size).
fn spec_with_tokenizer(tokenizer: TokenizerSpec) -> ModelSpec {
    let mut spec = model_spec(true);
    let vocab = tokenizer.tokens.len() as u32;
    spec.hparams.vocab_size = vocab;
    let mut rng = SplitMix64(SEED ^ 0xB9E);
    let embd = spec.tensors.iter_mut().find(|t| t.name == "token_embd.weight").unwrap();
    embd.dims = vec![vocab, spec.hparams.dim];
    embd.data = TensorData::F32((0..vocab * spec.hparams.dim).map(|_| rng.next_signed()).collect());
    spec.tokenizer = tokenizer;
    spec
}

fn package_with_tokenizer_bytes(spec: &ModelSpec, tokenizer: Vec<u8>) -> Vec<u8> {
    let mut raw = raw_package_from(spec, DType::F32);
    raw.tokenizer = tokenizer;
    raw.to_bytes().0
}

enum TokEdit {
    /// Edit the tokenizer description, then serialise it with the harness writer.
    Spec(fn(&mut TokenizerSpec)),
    /// Edit the serialised tokenizer section (for fields the writer derives).
    Bytes(fn(&mut Vec<u8>)),
}

type TokCase = Case<TokEdit>;

fn run_tokenizer_cases(base: TokenizerSpec, cases: Vec<TokCase>) {
    let mut rt = runtime();
    let spec = spec_with_tokenizer(base.clone());
    let good = package_with_tokenizer_bytes(&spec, package::tokenizer_bytes(&base).unwrap());
    // Positive control: the unedited tokenizer loads, or every rejection below means nothing.
    try_load(&mut rt, &good, 0).unwrap_or_else(|e| panic!("the base tokenizer package is rejected: {}", e.message));
    rt.generate_all("abc", 4, 0).expect("the base tokenizer package generates");
    rt.unload_model().unwrap();

    let mut failures = Vec::new();
    for c in &cases {
        let bytes = match c.edit {
            TokEdit::Spec(edit) => {
                let mut t = base.clone();
                edit(&mut t);
                package_with_tokenizer_bytes(&spec, package::tokenizer_bytes(&t).unwrap())
            }
            TokEdit::Bytes(edit) => {
                let mut t = package::tokenizer_bytes(&base).unwrap();
                edit(&mut t);
                package_with_tokenizer_bytes(&spec, t)
            }
        };
        assert_ne!(bytes, good, "case {:?} did not change the package", c.name);
        let got = try_load(&mut rt, &bytes, 0);
        if let Err(e) = check_rejection(got, c.want, c.field) {
            failures.push(format!("{}: {e}", c.name));
        }
    }
    assert_no_failures("tokenizer sections", &failures);
    assert_usable(&mut rt, "tokenizer cases");
}

/// Offset of token `id`'s record in a serialised byte tokenizer (synth::byte_tokenizer: one eog id,
/// 256 one-byte tokens of 8 bytes each).
fn byte_token_record(id: usize) -> usize {
    assert!(id < 256);
    tok::EOG_IDS + 4 + 8 * id
}

#[test]
fn tokenizer_header_and_token_table_rules() {
    use Status::{BadSpecialToken, BadToken, BadTokenizerKind, LimitExceeded, Truncated};
    let cases: Vec<TokCase> = vec![
        Case { name: "kind 3", edit: TokEdit::Bytes(|t| put_u32(t, tok::KIND, 3)), want: BadTokenizerKind, field: "tokenizer.kind" },
        Case { name: "kind 0xFFFFFFFF", edit: TokEdit::Bytes(|t| put_u32(t, tok::KIND, u32::MAX)), want: BadTokenizerKind, field: "tokenizer.kind" },
        Case {
            name: "n_tokens 257 (vocab 258)",
            edit: TokEdit::Bytes(|t| put_u32(t, tok::N_TOKENS, 257)),
            want: BadTokenizerKind,
            field: "tokenizer.n_tokens",
        },
        Case {
            name: "259 tokens (vocab 258)",
            edit: TokEdit::Spec(|t| t.tokens.push(TokenSpec { bytes: b"<x>".to_vec(), score: 0.0, token_type: token_type::CONTROL })),
            want: BadTokenizerKind,
            field: "tokenizer.n_tokens",
        },
        Case { name: "pre_tokenizer 5", edit: TokEdit::Bytes(|t| put_u32(t, tok::PRE_TOKENIZER, 5)), want: BadTokenizerKind, field: "tokenizer.pre_tokenizer" },
        Case { name: "chat_template 4", edit: TokEdit::Bytes(|t| put_u32(t, tok::CHAT_TEMPLATE, 4)), want: BadTokenizerKind, field: "tokenizer.chat_template" },
        Case {
            name: "tok_flags bit 2",
            edit: TokEdit::Bytes(|t| {
                let v = u32_at(t, tok::TOK_FLAGS) | 4;
                put_u32(t, tok::TOK_FLAGS, v)
            }),
            want: BadTokenizerKind,
            field: "tokenizer.tok_flags",
        },
        Case {
            name: "n_eog 17",
            edit: TokEdit::Bytes(|t| {
                put_u32(t, tok::N_EOG, 17);
                let extra: Vec<u8> = 257u32.to_le_bytes().repeat(16);
                t.splice(tok::EOG_IDS + 4..tok::EOG_IDS + 4, extra);
            }),
            want: LimitExceeded,
            field: "tokenizer.n_eog",
        },
        Case { name: "bos_id 258 (= vocab)", edit: TokEdit::Spec(|t| t.bos_id = Some(258)), want: BadSpecialToken, field: "tokenizer.bos_id" },
        Case { name: "eos_id 1000", edit: TokEdit::Spec(|t| t.eos_id = Some(1000)), want: BadSpecialToken, field: "tokenizer.eos_id" },
        Case { name: "unk_id 258", edit: TokEdit::Spec(|t| t.unk_id = Some(258)), want: BadSpecialToken, field: "tokenizer.unk_id" },
        Case { name: "eog id 258", edit: TokEdit::Spec(|t| t.eog_ids = vec![258]), want: BadSpecialToken, field: "tokenizer.eog_ids[0]" },
        Case { name: "second eog id 0xFFFFFFFE", edit: TokEdit::Spec(|t| t.eog_ids.push(0xFFFF_FFFE)), want: BadSpecialToken, field: "tokenizer.eog_ids[1]" },
        Case { name: "token type 0", edit: TokEdit::Spec(|t| t.tokens[10].token_type = 0), want: BadToken, field: "tokenizer.tokens[10].token_type" },
        Case { name: "token type 7", edit: TokEdit::Spec(|t| t.tokens[256].token_type = 7), want: BadToken, field: "tokenizer.tokens[256].token_type" },
        Case { name: "token score NaN", edit: TokEdit::Spec(|t| t.tokens[70].score = f32::NAN), want: BadToken, field: "tokenizer.tokens[70].score" },
        Case {
            name: "token score -inf",
            edit: TokEdit::Spec(|t| t.tokens[257].score = f32::NEG_INFINITY),
            want: BadToken,
            field: "tokenizer.tokens[257].score",
        },
        // "</s>" (id 257) is the longest token, 4 bytes; the writer stores max_token_len = 4.
        Case {
            name: "token longer than max_token_len",
            edit: TokEdit::Bytes(|t| put_u32(t, tok::MAX_TOKEN_LEN, 3)),
            want: BadToken,
            field: "tokenizer.tokens[257].len",
        },
        Case {
            name: "max_token_len above the longest token",
            edit: TokEdit::Bytes(|t| put_u32(t, tok::MAX_TOKEN_LEN, 5)),
            want: BadToken,
            field: "tokenizer.max_token_len",
        },
        Case { name: "max_token_len 0", edit: TokEdit::Bytes(|t| put_u32(t, tok::MAX_TOKEN_LEN, 0)), want: BadToken, field: "tokenizer.max_token_len" },
        Case { name: "max_token_len 1025", edit: TokEdit::Bytes(|t| put_u32(t, tok::MAX_TOKEN_LEN, 1025)), want: BadToken, field: "tokenizer.max_token_len" },
        Case {
            name: "token len field past max_token_len",
            edit: TokEdit::Bytes(|t| put_u16(t, byte_token_record(65) + 1, 5)),
            want: BadToken,
            field: "tokenizer.tokens[65].len",
        },
        Case { name: "truncated inside the section header", edit: TokEdit::Bytes(|t| t.truncate(47)), want: Truncated, field: "tokenizer.header" },
        Case { name: "truncated inside the eog ids", edit: TokEdit::Bytes(|t| t.truncate(tok::EOG_IDS + 2)), want: Truncated, field: "tokenizer.eog_ids[0]" },
        Case {
            name: "token table cut in the last token's bytes",
            edit: TokEdit::Bytes(|t| {
                let n = t.len();
                t.truncate(n - 2)
            }),
            want: Truncated,
            field: "tokenizer.tokens[257].bytes",
        },
        Case {
            name: "token table cut at token 100",
            edit: TokEdit::Bytes(|t| t.truncate(byte_token_record(100) + 3)),
            want: Truncated,
            field: "tokenizer.tokens",
        },
        // byte kind: token b (b < 256) is exactly the one byte b, normal or byte type; the rest control.
        Case {
            name: "byte kind: token 65 is \"B\"",
            edit: TokEdit::Spec(|t| t.tokens[65].bytes = b"B".to_vec()),
            want: BadToken,
            field: "tokenizer.tokens[65]",
        },
        Case { name: "byte kind: token 0 is two bytes", edit: TokEdit::Spec(|t| t.tokens[0].bytes = vec![0, 0]), want: BadToken, field: "tokenizer.tokens[0]" },
        Case { name: "byte kind: token 200 is empty", edit: TokEdit::Spec(|t| t.tokens[200].bytes.clear()), want: BadToken, field: "tokenizer.tokens[200]" },
        Case {
            name: "byte kind: token 66 is a control token",
            edit: TokEdit::Spec(|t| t.tokens[66].token_type = token_type::CONTROL),
            want: BadToken,
            field: "tokenizer.tokens[66]",
        },
        Case {
            name: "byte kind: token 256 is a normal token",
            edit: TokEdit::Spec(|t| t.tokens[256].token_type = token_type::NORMAL),
            want: BadToken,
            field: "tokenizer.tokens[256]",
        },
        // FORMAT.md states these rules without naming a status; the cases pin the runtime's choice.
        Case {
            name: "byte kind with a merge",
            edit: TokEdit::Spec(|t| t.merges.push(MergeSpec { left: 97, right: 98, result: 256, rank: 0 })),
            want: BadTokenizerKind,
            field: "tokenizer.n_merges",
        },
        Case { name: "section reserved field 1", edit: TokEdit::Bytes(|t| put_u32(t, tok::RESERVED, 1)), want: BadToken, field: "tokenizer.reserved" },
        Case { name: "4 bytes after the last token", edit: TokEdit::Bytes(|t| t.extend([0; 4])), want: Status::BadSectionBounds, field: "tokenizer.merges" },
        Case { name: "ADD_BOS without a bos_id", edit: TokEdit::Spec(|t| t.bos_id = None), want: BadSpecialToken, field: "tokenizer.bos_id" },
    ];
    run_tokenizer_cases(byte_tokenizer(), cases);
}

#[test]
fn tokenizer_merge_rules() {
    use Status::{BadMerge, BadToken, LimitExceeded, Truncated};
    let cases: Vec<TokCase> = vec![
        Case {
            name: "merge result is not left ++ right",
            edit: TokEdit::Spec(|t| t.merges[1].result = 257),
            want: BadMerge,
            field: "tokenizer.merges[1].result",
        },
        Case { name: "merge result is a byte token", edit: TokEdit::Spec(|t| t.merges[0].result = 97), want: BadMerge, field: "tokenizer.merges[0].result" },
        Case { name: "ranks decrease", edit: TokEdit::Spec(|t| t.merges[0].rank = 2), want: BadMerge, field: "tokenizer.merges[1].rank" },
        Case { name: "left id = vocab", edit: TokEdit::Spec(|t| t.merges[0].left = 259), want: BadMerge, field: "tokenizer.merges[0].left" },
        Case { name: "right id 0xFFFFFFFF", edit: TokEdit::Spec(|t| t.merges[1].right = u32::MAX), want: BadMerge, field: "tokenizer.merges[1].right" },
        Case { name: "result id 0xFFFFFFFF", edit: TokEdit::Spec(|t| t.merges[1].result = u32::MAX), want: BadMerge, field: "tokenizer.merges[1].result" },
        Case { name: "n_merges 1048577", edit: TokEdit::Bytes(|t| put_u32(t, tok::N_MERGES, 1_048_577)), want: LimitExceeded, field: "tokenizer.n_merges" },
        Case { name: "n_merges one more than present", edit: TokEdit::Bytes(|t| put_u32(t, tok::N_MERGES, 3)), want: Truncated, field: "tokenizer.merges" },
        Case {
            name: "merge table cut mid-entry",
            edit: TokEdit::Bytes(|t| {
                let n = t.len();
                t.truncate(n - 4)
            }),
            want: Truncated,
            field: "tokenizer.merges",
        },
        Case { name: "normal token of length 0", edit: TokEdit::Spec(|t| t.tokens[200].bytes.clear()), want: BadToken, field: "tokenizer.tokens[200].len" },
        Case { name: "bpe token type 0", edit: TokEdit::Spec(|t| t.tokens[258].token_type = 0), want: BadToken, field: "tokenizer.tokens[258].token_type" },
    ];
    run_tokenizer_cases(bpe_tokenizer(), cases);
}

// ---- What a failed load leaves behind ------------------------------------------------------

#[test]
fn failed_load_leaves_the_host_buffer_intact_and_reusable() {
    let mut rt = runtime();
    let good = good_package().to_vec();
    // A package that fails on the very last check (non-finite data), after everything else has
    // been read: the most work a parser could have done to the buffer.
    let mut raw = raw_package(DType::F32, true);
    put_f32(&mut tensor(&mut raw, "output_norm.weight").data, 0, f32::NAN);
    let (bad, _) = raw.to_bytes();
    assert_eq!(bad.len(), good.len());

    let len = bad.len() as u32;
    let ptr = rt.alloc(len).unwrap();
    rt.write(ptr, &bad).unwrap();
    let status = rt.call_status("load_model", (ptr, len, 0u32, 0u32)).expect("load_model trapped");
    assert_eq!(status, Status::BadTensorData.code(), "{}", rt.last_error().unwrap());
    assert_eq!(rt.read(ptr, bad.len()).unwrap(), bad, "the rejected package's buffer changed");

    // Still the host's: it can be rewritten and handed over again.
    rt.write(ptr, &good).unwrap();
    let status = rt.call_status("load_model", (ptr, len, 0u32, 0u32)).expect("load_model trapped");
    assert_eq!(status, Status::Ok.code(), "reloading the same buffer with a good package: {}", rt.last_error().unwrap());
    let g = rt.generate_all(PROMPT, N_NEW_TOKENS, 0).unwrap();
    assert_eq!(g.tokens, reference_tokens());

    // A rejected buffer can also simply be freed.
    rt.unload_model().unwrap();
    let ptr = rt.alloc(len).unwrap();
    rt.write(ptr, &bad).unwrap();
    assert_eq!(rt.call_status("load_model", (ptr, len, 0u32, 0u32)).unwrap(), Status::BadTensorData.code());
    assert_eq!(rt.read(ptr, bad.len()).unwrap(), bad);
    assert_eq!(rt.call_status("dealloc", ptr).unwrap(), Status::Ok.code(), "dealloc of a rejected package's buffer");
    assert_eq!(rt.call_status("dealloc", ptr).unwrap(), Status::InvalidArgument.code(), "the buffer was freed once already");
}

/// The unedited bases load: without this, every rejection above could be an artefact of the bases.
#[test]
fn every_base_package_loads_and_generates() {
    let mut rt = runtime();
    for &(quant, tied) in BASES.iter().chain(&[(DType::F32, false), (DType::Q4_1, true)]) {
        let bytes = package_bytes(quant, tied);
        if let Err(e) = try_load(&mut rt, &bytes, 0) {
            panic!("base {} rejected: {}", base_name(quant, tied), e.message);
        }
        let d = diagnostics(&mut rt);
        assert_eq!(d.quant_mode, quant.code() as u32);
        let g = rt.generate_all(PROMPT, 4, 0).unwrap();
        assert_eq!(g.tokens.len(), 4, "{}: {:?}", base_name(quant, tied), g.state);
        rt.unload_model().unwrap();
    }
    // And the BPE tokenizer base used by the merge tests.
    let spec = spec_with_tokenizer(bpe_tokenizer());
    let bytes = package_with_tokenizer_bytes(&spec, package::tokenizer_bytes(&bpe_tokenizer()).unwrap());
    try_load(&mut rt, &bytes, 0).unwrap_or_else(|e| panic!("BPE base rejected: {}", e.message));
    assert_eq!(rt.tokenize("abc", false).unwrap(), vec![258], "BPE base: \"abc\" should merge to one token");
}

// ---- Format v2: the architecture block and tensors as shipped ---------------------------------

/// Byte offsets of the v2 architecture block (FORMAT.md, "Header": bytes 128..160).
mod hdr2 {
    pub const ARCH: usize = 128;
    pub const HEAD_DIM: usize = 132;
    pub const ROPE_KIND: usize = 136;
    pub const NORM_KIND: usize = 140;
    pub const ARCH_FLAGS: usize = 144;
    pub const SLIDING_WINDOW: usize = 148;
    pub const SWA_PATTERN: usize = 152;
    pub const ROPE_THETA_LOCAL: usize = 156;
}

/// A valid v2 base: qwen2 with Q/K/V biases, NEOX RoPE, `head_dim` 32 (so `n_heads · head_dim`
/// = 128 is not `dim` = 64), and matrices in mixed dtypes as shipped (attn_q q4_0, ffn_down f32,
/// the rest q8_0).
fn qwen2_raw(tied: bool) -> RawPackage {
    use tinyrustlm::model::arch::{Arch, RopeKind};
    let llama = model_spec(tied).hparams;
    let hparams = harness::spec::Hyperparams { arch: Arch::Qwen2, head_dim: 32, rope: RopeKind::Neox, qkv_bias: true, rope_theta: 1e6, ..llama };
    let mut spec = harness::synth::synthetic_model_for(hparams, 7);
    for t in spec.tensors.iter_mut().filter(|t| t.dims.len() == 2) {
        let dtype = if t.name.ends_with("attn_q.weight") {
            DType::Q4_0
        } else if t.name.ends_with("ffn_down.weight") {
            DType::F32
        } else {
            DType::Q8_0
        };
        t.data = TensorData::Encoded { dtype, bytes: package::encode_tensor(t, dtype).unwrap() };
    }
    package::build_as_shipped(&spec, |_| {}).unwrap()
}

fn run_v2_cases(cases: &[Case<RawEdit>]) {
    let mut rt = runtime();
    let mut failures = Vec::new();
    for tied in [true, false] {
        let good = qwen2_raw(tied);
        for c in cases {
            let mut raw = good.clone();
            (c.edit)(&mut raw);
            let (bytes, _) = raw.to_bytes();
            if let Err(e) = check_rejection(try_load(&mut rt, &bytes, 0), c.want, c.field) {
                failures.push(format!("[qwen2 {}] {}: {e}", if tied { "tied" } else { "untied" }, c.name));
            }
        }
        assert_usable(&mut rt, "the v2 cases");
    }
    assert_no_failures("v2 packages", &failures);
}

fn arch_block(raw: &mut RawPackage) -> &mut [u32; 8] {
    raw.arch_block.as_mut().expect("a v2 base")
}

#[test]
fn v2_bases_load_and_generate_with_their_architecture() {
    let mut rt = runtime();
    for tied in [true, false] {
        let raw = qwen2_raw(tied);
        assert_eq!((raw.format_version, raw.header_len), (2, 160));
        let (bytes, _) = raw.to_bytes();
        try_load(&mut rt, &bytes, 0).unwrap_or_else(|e| panic!("v2 base rejected: {}", e.message));
        // quant_mode is the dominant dtype: q8_0 holds the most matrix elements here.
        assert_eq!(diagnostics(&mut rt).quant_mode, DType::Q8_0.code() as u32);
        let g = rt.generate_all(PROMPT, 4, 0).unwrap();
        assert_eq!(g.tokens.len(), 4, "{:?}", g.state);
        rt.unload_model().unwrap();
    }
}

/// A valid gemma3 base: per-head Q/K norms, post-attention and post-FFN norms, a sliding window
/// of 4 tokens with a layer pattern of 2 (layer 0 local, layer 1 global), NEOX RoPE,
/// `head_dim` 32 ≠ `dim / n_heads`.
fn gemma3_raw(tied: bool) -> RawPackage {
    use tinyrustlm::model::arch::{Arch, RopeKind};
    let llama = model_spec(tied).hparams;
    let hparams = harness::spec::Hyperparams {
        arch: Arch::Gemma3,
        head_dim: 32,
        rope: RopeKind::Neox,
        rope_theta: 1e6,
        sliding_window: 4,
        swa_pattern: 2,
        rope_theta_local: 10_000.0,
        ..llama
    };
    package::build_as_shipped(&harness::synth::synthetic_model_for(hparams, 8), |_| {}).unwrap()
}

/// A valid qwen3 base: llama with per-head Q/K norms, NEOX RoPE, no biases.
fn qwen3_raw(tied: bool) -> RawPackage {
    use tinyrustlm::model::arch::{Arch, RopeKind};
    let llama = model_spec(tied).hparams;
    let hparams = harness::spec::Hyperparams { arch: Arch::Qwen3, head_dim: 32, rope: RopeKind::Neox, rope_theta: 1e6, ..llama };
    package::build_as_shipped(&harness::synth::synthetic_model_for(hparams, 9), |_| {}).unwrap()
}

#[test]
fn gemma3_and_qwen3_bases_load_and_generate() {
    let mut rt = runtime();
    for tied in [true, false] {
        for (name, raw) in [("gemma3", gemma3_raw(tied)), ("qwen3", qwen3_raw(tied))] {
            let (bytes, _) = raw.to_bytes();
            let window = [u32_at(&bytes, hdr2::SLIDING_WINDOW), u32_at(&bytes, hdr2::SWA_PATTERN), u32_at(&bytes, hdr2::ROPE_THETA_LOCAL)];
            let want = if name == "gemma3" { [4, 2, 10_000f32.to_bits()] } else { [0; 3] };
            assert_eq!(window, want, "{name}: the writer puts the window fields where FORMAT.md says");
            try_load(&mut rt, &bytes, 0).unwrap_or_else(|e| panic!("{name} base rejected: {}", e.message));
            // Past the window: the local layer's keys start dropping out of its attention.
            let g = rt.generate_all(PROMPT, 12, 0).unwrap();
            assert_eq!(g.tokens.len(), 12, "{name}: {:?}", g.state);
            rt.unload_model().unwrap();
        }
    }
}

#[test]
fn gemma3_and_qwen3_rules() {
    let gemma3: Vec<Case<RawEdit>> = vec![
        Case {
            name: "sliding_window above max_context",
            edit: |r| arch_block(r)[5] = r.hparams[6] + 1,
            want: Status::BadHyperparameter,
            field: "header.sliding_window",
        },
        Case { name: "swa_pattern 0 with a window", edit: |r| arch_block(r)[6] = 0, want: Status::BadHyperparameter, field: "header.swa_pattern" },
        Case { name: "swa_pattern 257", edit: |r| arch_block(r)[6] = 257, want: Status::BadHyperparameter, field: "header.swa_pattern" },
        Case { name: "rope_theta_local 0 with a window", edit: |r| arch_block(r)[7] = 0, want: Status::BadHyperparameter, field: "header.rope_theta_local" },
        Case {
            name: "rope_theta_local NaN",
            edit: |r| arch_block(r)[7] = f32::NAN.to_bits(),
            want: Status::BadHyperparameter,
            field: "header.rope_theta_local",
        },
        Case {
            name: "rope_theta_local negative",
            edit: |r| arch_block(r)[7] = (-1.0f32).to_bits(),
            want: Status::BadHyperparameter,
            field: "header.rope_theta_local",
        },
        Case { name: "arch qwen3 with a sliding window", edit: |r| arch_block(r)[0] = 3, want: Status::BadHyperparameter, field: "header.sliding_window" },
        Case {
            name: "post_ffw_norm missing",
            edit: |r| r.tensors.retain(|t| t.name != b"blk.1.post_ffw_norm.weight"),
            want: Status::MissingTensor,
            field: "tensor[blk.1.post_ffw_norm.weight]",
        },
        Case {
            name: "attn_q_norm of dim instead of head_dim",
            edit: |r| {
                let t = r.tensors.iter_mut().find(|t| t.name == b"blk.0.attn_q_norm.weight").unwrap();
                t.dims = vec![64];
                t.data = vec![0u8; 64 * 4];
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_q_norm.weight].dims",
        },
    ];
    let qwen3: Vec<Case<RawEdit>> = vec![
        Case { name: "arch llama with Q/K norms", edit: |r| arch_block(r)[0] = 0, want: Status::UnknownTensor, field: "tensor[blk.0.attn_q_norm.weight]" },
        Case {
            name: "arch gemma3 without post norms",
            edit: |r| arch_block(r)[0] = 2,
            want: Status::MissingTensor,
            field: "tensor[blk.0.post_attention_norm.weight]",
        },
        Case {
            name: "attn_k_norm missing",
            edit: |r| r.tensors.retain(|t| t.name != b"blk.0.attn_k_norm.weight"),
            want: Status::MissingTensor,
            field: "tensor[blk.0.attn_k_norm.weight]",
        },
    ];
    let mut rt = runtime();
    let mut failures = Vec::new();
    for tied in [true, false] {
        for (arch, base, cases) in [("gemma3", gemma3_raw(tied), &gemma3), ("qwen3", qwen3_raw(tied), &qwen3)] {
            for c in cases.iter() {
                let mut raw = base.clone();
                (c.edit)(&mut raw);
                let (bytes, _) = raw.to_bytes();
                if let Err(e) = check_rejection(try_load(&mut rt, &bytes, 0), c.want, c.field) {
                    failures.push(format!("[{arch} {}] {}: {e}", if tied { "tied" } else { "untied" }, c.name));
                }
            }
            assert_usable(&mut rt, arch);
        }
    }
    assert_no_failures("gemma3 and qwen3 packages", &failures);
}

#[test]
fn v2_header_rules() {
    let cases: Vec<Case<RawEdit>> = vec![
        Case { name: "format_version 3", edit: |r| r.format_version = 3, want: Status::UnsupportedVersion, field: "header.format_version" },
        Case { name: "v2 with header_len 128", edit: |r| r.header_len = 128, want: Status::BadHeaderLength, field: "header.header_len" },
        Case { name: "arch 4 (unknown)", edit: |r| arch_block(r)[0] = 4, want: Status::BadHyperparameter, field: "header.arch" },
        Case { name: "arch gemma3 with ATTN_QKV_BIAS", edit: |r| arch_block(r)[0] = 2, want: Status::BadFlags, field: "header.arch_flags" },
        Case { name: "arch llama with ATTN_QKV_BIAS", edit: |r| arch_block(r)[0] = 0, want: Status::BadFlags, field: "header.arch_flags" },
        Case { name: "arch_flags bit 1", edit: |r| arch_block(r)[4] |= 2, want: Status::BadFlags, field: "header.arch_flags" },
        Case {
            name: "sliding_window on qwen2",
            edit: |r| arch_block(r)[5..8].copy_from_slice(&[4, 2, 10_000f32.to_bits()]),
            want: Status::BadHyperparameter,
            field: "header.sliding_window",
        },
        Case { name: "swa_pattern without a window", edit: |r| arch_block(r)[6] = 6, want: Status::BadHyperparameter, field: "header.swa_pattern" },
        Case { name: "rope_theta_local without a window", edit: |r| arch_block(r)[7] = 1, want: Status::BadHyperparameter, field: "header.rope_theta_local" },
        Case { name: "head_dim 0", edit: |r| arch_block(r)[1] = 0, want: Status::BadHyperparameter, field: "header.head_dim" },
        Case { name: "head_dim odd", edit: |r| arch_block(r)[1] = 31, want: Status::BadHyperparameter, field: "header.head_dim" },
        Case { name: "head_dim 1026", edit: |r| arch_block(r)[1] = 1026, want: Status::BadHyperparameter, field: "header.head_dim" },
        Case {
            name: "n_heads · head_dim above 16384",
            edit: |r| {
                r.hparams[3] = 64; // n_heads = dim
                arch_block(r)[1] = 512;
            },
            want: Status::BadHyperparameter,
            field: "header.head_dim",
        },
        Case { name: "rope_kind 2", edit: |r| arch_block(r)[2] = 2, want: Status::BadHyperparameter, field: "header.rope_kind" },
        Case { name: "norm_kind 1", edit: |r| arch_block(r)[3] = 1, want: Status::BadHyperparameter, field: "header.norm_kind" },
        Case {
            name: "quant_mode not the dominant dtype",
            edit: |r| r.quant_mode = DType::Q4_0.code() as u32,
            want: Status::BadQuantMode,
            field: "header.quant_mode",
        },
        Case { name: "quant_mode unknown", edit: |r| r.quant_mode = 200, want: Status::BadQuantMode, field: "header.quant_mode" },
        // head_dim is part of the shapes: a different one leaves every Q/K/V tensor the wrong size.
        Case {
            name: "head_dim 16 against head_dim-32 tensors",
            edit: |r| arch_block(r)[1] = 16,
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_q.weight].dims",
        },
    ];
    run_v2_cases(&cases);
}

#[test]
fn v2_short_header_and_v1_with_v2_length_are_rejected() {
    let mut rt = runtime();
    let (good, _) = qwen2_raw(true).to_bytes();
    // 150 bytes: a whole v1 header, not a whole v2 one.
    let e = try_load(&mut rt, &good[..150], 0).unwrap_err();
    assert_eq!((e.status, e.message.contains("header")), (Status::Truncated.code(), true), "{}", e.message);
    // A v1 package cannot claim the v2 length.
    let mut v1 = raw_package(DType::Q8_0, true);
    v1.header_len = 160;
    check_rejection(try_load(&mut rt, &v1.to_bytes().0, 0), Status::BadHeaderLength, "header.header_len").unwrap();
    // Nor can a v2 one keep v1's directory offset.
    let mut bytes = good.clone();
    put_u64(&mut bytes, hdr::DIR_OFFSET, 128);
    reseal(&mut bytes);
    check_rejection(try_load(&mut rt, &bytes, 0), Status::BadSectionBounds, "header.dir_offset").unwrap();
    assert_usable(&mut rt, "the v2 framing cases");
    // The writer puts the block where FORMAT.md says.
    let at = |o| u32_at(&good, o);
    assert_eq!((at(hdr::FORMAT_VERSION), at(hdr::HEADER_LEN), u64_at(&good, hdr::DIR_OFFSET)), (2, 160, 160));
    assert_eq!((at(hdr2::ARCH), at(hdr2::HEAD_DIM), at(hdr2::ROPE_KIND), at(hdr2::NORM_KIND), at(hdr2::ARCH_FLAGS)), (1, 32, 1, 0, 1));
    assert_eq!([at(hdr2::SLIDING_WINDOW), at(hdr2::SWA_PATTERN), at(hdr2::ROPE_THETA_LOCAL)], [0; 3]);
}

#[test]
fn v2_tensor_rules() {
    let cases: Vec<Case<RawEdit>> = vec![
        Case {
            name: "norm stored q8_0",
            edit: |r| reencode(tensor(r, "blk.1.ffn_norm.weight"), DType::Q8_0),
            want: Status::BadQuantMode,
            field: "tensor[blk.1.ffn_norm.weight].dtype",
        },
        Case {
            name: "bias stored q8_0",
            edit: |r| reencode(tensor(r, "blk.0.attn_k.bias"), DType::Q8_0),
            want: Status::BadQuantMode,
            field: "tensor[blk.0.attn_k.bias].dtype",
        },
        Case { name: "bias missing", edit: |r| remove_tensor(r, "blk.1.attn_v.bias"), want: Status::MissingTensor, field: "tensor[blk.1.attn_v.bias]" },
        Case {
            name: "bias of the wrong length",
            edit: |r| {
                remove_tensor(r, "blk.0.attn_q.bias");
                push_tensor(r, f32_vector("blk.0.attn_q.bias", 64));
            },
            want: Status::BadTensorShape,
            field: "tensor[blk.0.attn_q.bias].dims",
        },
        Case { name: "biases with ATTN_QKV_BIAS clear", edit: |r| arch_block(r)[4] = 0, want: Status::UnknownTensor, field: "tensor[blk.0.attn_q.bias]" },
        Case {
            name: "a matrix converted to another dtype is still accepted, but then quant_mode is stale",
            edit: |r| {
                for t in r.tensors.iter_mut().filter(|t| t.dims.len() == 2 && t.dtype == DType::Q8_0.code()) {
                    reencode(t, DType::Q4_1);
                }
            },
            want: Status::BadQuantMode,
            field: "header.quant_mode",
        },
    ];
    run_v2_cases(&cases);
    // Any dtype per matrix: the same edit with quant_mode updated loads.
    let mut rt = runtime();
    let mut raw = qwen2_raw(false);
    for t in raw.tensors.iter_mut().filter(|t| t.dims.len() == 2 && t.dtype == DType::Q8_0.code()) {
        reencode(t, DType::Q4_1);
    }
    raw.quant_mode = DType::Q4_1.code() as u32;
    try_load(&mut rt, &raw.to_bytes().0, 0).unwrap_or_else(|e| panic!("re-encoded v2 package rejected: {}", e.message));
}
