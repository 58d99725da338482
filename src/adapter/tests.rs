//! Parsing, arithmetic and undo of adapters against a small hand-built parent (no package file).

use super::*;
use crate::quant::{self, DType};
use alloc::string::ToString;
use alloc::vec;

const IDENTITY: ModelIdentity = ModelIdentity { n_params: 140, tensor_layout_crc: 0x1111_2222, tokenizer_crc: 0x3333_4444, flags: 1, n_tensors: 3 };

/// A parent with three tensors: `a.weight` f32 [2, 4], `q.weight` q8_0 [2, 64], `n.weight` f32 [4].
struct Fixture {
    tensors: Vec<TensorEntry>,
    bytes: Vec<u8>,
}

fn fixture() -> Fixture {
    let mut bytes = Vec::new();
    let mut tensors = Vec::new();
    let mut add = |name: &str, dtype: DType, rank: u8, rows: usize, row_len: usize, values: &[f32]| {
        let start = bytes.len();
        let row_bytes = dtype.row_bytes(row_len).unwrap();
        let mut data = vec![0u8; rows * row_bytes];
        for (src, dst) in values.chunks_exact(row_len).zip(data.chunks_exact_mut(row_bytes)) {
            quant::quantize_row(dtype, src, dst);
        }
        bytes.extend_from_slice(&data);
        tensors.push(TensorEntry { name: name.to_string(), dtype, rows, row_len, rank, range: start..bytes.len() });
    };
    add("a.weight", DType::F32, 2, 2, 4, &[1.0, -0.0, 0.5, 2.0, -1.0, 3.0, 0.25, 1e30]);
    let q: Vec<f32> = (0..128).map(|i| ((i * 37 % 23) as f32 - 11.0) / 8.0).collect();
    add("q.weight", DType::Q8_0, 2, 2, 64, &q);
    add("n.weight", DType::F32, 1, 1, 4, &[1.0, 1.0, 1.0, 1.0]);
    Fixture { tensors, bytes }
}

fn parent(f: &Fixture) -> Parent<'_> {
    Parent { identity: IDENTITY, tensors: &f.tensors }
}

/// One target as a writer lays it out.
struct T {
    name: &'static str,
    rows: u32,
    cols: u32,
    param: u32,
    payload: Vec<u8>,
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn pairs(v: &[(u32, f32)]) -> Vec<u8> {
    v.iter().flat_map(|(i, x)| i.to_le_bytes().into_iter().chain(x.to_le_bytes())).collect()
}

fn build(magic: [u8; 4], scale: f32, targets: &[T]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&magic);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes()); // total_len, set by reseal
    b.extend_from_slice(&IDENTITY.to_bytes());
    b.extend_from_slice(&scale.to_le_bytes());
    b.extend_from_slice(&(targets.len() as u32).to_le_bytes());
    for t in targets {
        b.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
        b.extend_from_slice(t.name.as_bytes());
        for v in [t.rows, t.cols, t.param] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    for t in targets {
        b.extend_from_slice(&t.payload);
    }
    b.extend_from_slice(&[0; 4]);
    reseal(&mut b);
    b
}

/// Sets total_len to the length and recomputes the trailer CRC.
fn reseal(b: &mut [u8]) {
    let n = b.len();
    b[16..24].copy_from_slice(&(n as u64).to_le_bytes());
    let crc = crc32fast::hash(&b[..n - 4]);
    b[n - 4..].copy_from_slice(&crc.to_le_bytes());
}

fn dense_a(delta: &[f32]) -> T {
    T { name: "a.weight", rows: 2, cols: 4, param: DENSE_F32, payload: f32s(delta) }
}

/// Applies through the public pieces and returns the changed package bytes.
fn applied(f: &Fixture, bytes: &[u8]) -> Result<Vec<u8>> {
    let adapter = parse(bytes, Some(parent(f)))?;
    let mut log = UndoLog::default();
    for_each_change(&adapter, &f.tensors, &f.bytes, &mut |o, n| log.push(o, n))?;
    let mut out = f.bytes.clone();
    log.swap_with(&mut out);
    Ok(out)
}

fn f32_at(b: &[u8], at: usize) -> f32 {
    le_f32(&b[at..at + 4])
}

#[test]
fn each_kind_parses_with_its_fields() {
    let f = fixture();
    let d = build(MAGIC_DENSE, 0.5, &[dense_a(&[0.0; 8])]);
    let a = parse(&d, Some(parent(&f))).unwrap();
    assert_eq!((a.kind, a.scale, a.parent, a.targets.len()), (Kind::Dense, 0.5, IDENTITY, 1));
    assert_eq!(a.targets[0].tensor, Some(0));
    assert_eq!(a.artifact_crc, le_u32(&d[d.len() - 4..]));

    let s = build(MAGIC_SPARSE, 1.0, &[T { name: "q.weight", rows: 2, cols: 64, param: 2, payload: pairs(&[(3, 1.0), (100, -2.0)]) }]);
    let a = parse(&s, None).unwrap();
    assert_eq!(a.targets[0].tensor, None, "no parent: not bound");
    assert_eq!(a.targets[0].payload.entries().collect::<Vec<_>>(), vec![(3, 1.0), (100, -2.0)]);

    let l = build(MAGIC_LOW_RANK, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 1, payload: f32s(&[1.0, 2.0, 3.0, 4.0, 0.5, -1.0]) }]);
    let a = parse(&l, Some(parent(&f))).unwrap();
    match a.targets[0].payload {
        Payload::LowRank { rank, a, b } => assert_eq!((rank, a.len(), b.len()), (1, 16, 8)),
        p => panic!("{p:?}"),
    }
}

/// Every way an adapter can be wrong, each with its status and field, against the fixture parent.
#[test]
fn every_rejection_has_its_status_and_field() {
    let f = fixture();
    let good = || build(MAGIC_DENSE, 1.0, &[dense_a(&[0.5; 8])]);
    let resealed = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good();
        edit(&mut b);
        reseal(&mut b);
        b
    };
    let put32 = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let name_at = HEADER_LEN + 2; // first target's name
    let rows_at = name_at + "a.weight".len();
    let cases: Vec<(&str, Vec<u8>, Status, &str)> = vec![
        ("3 bytes", b"ADP".to_vec(), Status::AdapterTruncated, "header"),
        ("wrong magic", resealed(&|b| b[0] = b'X'), Status::AdapterBadMagic, "header.magic"),
        (
            "a model package",
            {
                let mut b = good();
                b[0..4].copy_from_slice(b"SLM1");
                b
            },
            Status::AdapterBadMagic,
            "header.magic",
        ),
        ("header only", good()[..40].to_vec(), Status::AdapterTruncated, "header"),
        ("version 2", resealed(&|b| put32(b, 4, 2)), Status::AdapterUnsupportedVersion, "header.format_version"),
        ("header_len 64", resealed(&|b| put32(b, 8, 64)), Status::AdapterBadHeader, "header.header_len"),
        (
            "cut short",
            {
                let b = good();
                b[..b.len() - 9].to_vec()
            },
            Status::AdapterTruncated,
            "header.total_len",
        ),
        (
            "bytes after the trailer",
            {
                let mut b = good();
                b.push(0);
                b
            },
            Status::AdapterBadHeader,
            "header.total_len",
        ),
        (
            "flipped payload bit",
            {
                let mut b = good();
                let n = b.len();
                b[n - 6] ^= 1;
                b
            },
            Status::AdapterChecksum,
            "trailer.artifact_crc",
        ),
        ("reserved 1", resealed(&|b| put32(b, 12, 1)), Status::AdapterBadHeader, "header.reserved"),
        ("scale NaN", resealed(&|b| put32(b, 48, f32::NAN.to_bits())), Status::AdapterNonFinite, "header.scale"),
        ("scale inf", resealed(&|b| put32(b, 48, f32::INFINITY.to_bits())), Status::AdapterNonFinite, "header.scale"),
        ("no targets", build(MAGIC_DENSE, 1.0, &[]), Status::AdapterBadHeader, "header.n_targets"),
        ("4097 targets", resealed(&|b| put32(b, 52, 4097)), Status::AdapterLimitExceeded, "header.n_targets"),
        ("more targets than bytes", resealed(&|b| put32(b, 52, 4000)), Status::AdapterTruncated, "header.n_targets"),
        ("n_params", resealed(&|b| b[24] ^= 1), Status::AdapterParentMismatch, "header.parent_n_params"),
        ("tensor_layout_crc", resealed(&|b| b[32] ^= 1), Status::AdapterParentMismatch, "header.parent_tensor_layout_crc"),
        ("tokenizer_crc", resealed(&|b| b[36] ^= 1), Status::AdapterParentMismatch, "header.parent_tokenizer_crc"),
        ("flags", resealed(&|b| b[40] ^= 1), Status::AdapterParentMismatch, "header.parent_flags"),
        ("n_tensors", resealed(&|b| b[44] ^= 1), Status::AdapterParentMismatch, "header.parent_n_tensors"),
        ("name_len 0", resealed(&|b| b[HEADER_LEN] = 0), Status::AdapterUnknownTarget, "target[0].name_len"),
        ("name_len 65", resealed(&|b| b[HEADER_LEN] = 65), Status::AdapterUnknownTarget, "target[0].name_len"),
        ("upper-case name", resealed(&|b| b[name_at] = b'A'), Status::AdapterUnknownTarget, "target[0].name"),
        ("unknown tensor", resealed(&|b| b[name_at] = b'z'), Status::AdapterUnknownTarget, "target[z.weight]"),
        (
            "duplicate",
            build(MAGIC_DENSE, 1.0, &[dense_a(&[0.0; 8]), T { name: "n.weight", rows: 1, cols: 4, param: 0, payload: f32s(&[0.0; 4]) }, dense_a(&[0.0; 8])]),
            Status::AdapterDuplicateTarget,
            "target[a.weight].name",
        ),
        ("rows 0", resealed(&|b| put32(b, rows_at, 0)), Status::AdapterShapeMismatch, "target[a.weight].rows"),
        ("cols 0", resealed(&|b| put32(b, rows_at + 4, 0)), Status::AdapterShapeMismatch, "target[a.weight].cols"),
        (
            "transposed",
            build(MAGIC_DENSE, 1.0, &[T { name: "a.weight", rows: 4, cols: 2, param: 0, payload: f32s(&[0.0; 8]) }]),
            Status::AdapterShapeMismatch,
            "target[a.weight].shape",
        ),
        (
            "vector as [4, 1]",
            build(MAGIC_DENSE, 1.0, &[T { name: "n.weight", rows: 4, cols: 1, param: 0, payload: f32s(&[0.0; 4]) }]),
            Status::AdapterShapeMismatch,
            "target[n.weight].shape",
        ),
        ("encoding 2", resealed(&|b| put32(b, rows_at + 8, 2)), Status::AdapterBadEncoding, "target[a.weight].encoding"),
        ("q8_0 of 4 columns", resealed(&|b| put32(b, rows_at + 8, DENSE_Q8_0)), Status::AdapterBadEncoding, "target[a.weight].encoding"),
        (
            "payload short",
            {
                let mut b = good();
                b.remove(b.len() - 5);
                reseal(&mut b);
                b
            },
            Status::AdapterTruncated,
            "target[a.weight].payload",
        ),
        (
            "payload long",
            {
                let mut b = good();
                b.insert(b.len() - 4, 0);
                reseal(&mut b);
                b
            },
            Status::AdapterBadHeader,
            "payload",
        ),
        ("NaN delta", build(MAGIC_DENSE, 1.0, &[dense_a(&[0.0, 0.0, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0])]), Status::AdapterNonFinite, "target[a.weight].delta"),
        (
            "q8_0 delta with an infinite scale",
            {
                let mut p = vec![0u8; 2 * 2 * 34];
                p[34..36].copy_from_slice(&0x7c00u16.to_le_bytes());
                build(MAGIC_DENSE, 1.0, &[T { name: "q.weight", rows: 2, cols: 64, param: DENSE_Q8_0, payload: p }])
            },
            Status::AdapterNonFinite,
            "target[q.weight].delta",
        ),
        (
            "sparse: more entries than elements",
            build(MAGIC_SPARSE, 1.0, &[T { name: "n.weight", rows: 1, cols: 4, param: 5, payload: pairs(&[(0, 1.0); 5]) }]),
            Status::AdapterBadIndex,
            "target[n.weight].n_entries",
        ),
        (
            "sparse: index = n_elements",
            build(MAGIC_SPARSE, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 2, payload: pairs(&[(1, 1.0), (8, 1.0)]) }]),
            Status::AdapterBadIndex,
            "target[a.weight].index",
        ),
        (
            "sparse: unsorted",
            build(MAGIC_SPARSE, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 2, payload: pairs(&[(5, 1.0), (2, 1.0)]) }]),
            Status::AdapterBadIndex,
            "target[a.weight].index",
        ),
        (
            "sparse: repeated",
            build(MAGIC_SPARSE, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 2, payload: pairs(&[(2, 1.0), (2, 1.0)]) }]),
            Status::AdapterBadIndex,
            "target[a.weight].index",
        ),
        (
            "sparse: inf value",
            build(MAGIC_SPARSE, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 1, payload: pairs(&[(2, f32::INFINITY)]) }]),
            Status::AdapterNonFinite,
            "target[a.weight].value",
        ),
        (
            "rank 0",
            build(MAGIC_LOW_RANK, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 0, payload: vec![] }]),
            Status::AdapterBadRank,
            "target[a.weight].rank",
        ),
        (
            "rank 3 > min(2, 4)",
            build(MAGIC_LOW_RANK, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 3, payload: f32s(&[0.0; 18]) }]),
            Status::AdapterBadRank,
            "target[a.weight].rank",
        ),
        (
            "rank 2 on a vector",
            build(MAGIC_LOW_RANK, 1.0, &[T { name: "n.weight", rows: 1, cols: 4, param: 2, payload: f32s(&[0.0; 10]) }]),
            Status::AdapterBadRank,
            "target[n.weight].rank",
        ),
        (
            "NaN in A",
            build(MAGIC_LOW_RANK, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 1, payload: f32s(&[0.0, f32::NAN, 0.0, 0.0, 1.0, 1.0]) }]),
            Status::AdapterNonFinite,
            "target[a.weight].a",
        ),
        (
            "inf in B",
            build(MAGIC_LOW_RANK, 1.0, &[T { name: "a.weight", rows: 2, cols: 4, param: 1, payload: f32s(&[0.0, 0.0, 0.0, 0.0, 1.0, f32::NEG_INFINITY]) }]),
            Status::AdapterNonFinite,
            "target[a.weight].b",
        ),
    ];
    let mut failures = Vec::new();
    for (name, bytes, want, field) in &cases {
        match parse(bytes, Some(parent(&f))) {
            Ok(_) => failures.push(alloc::format!("{name}: accepted, expected {}", want.name())),
            Err(e) if e.status != *want || e.field != *field => failures.push(alloc::format!("{name}: got {e}, expected {} at {field}", want.name())),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dense_f32_follows_the_documented_arithmetic() {
    let f = fixture();
    let delta = [0.25f32, 0.0, 1.0, -2.0, 1e-8, 0.0, 0.75, 0.0];
    let out = applied(&f, &build(MAGIC_DENSE, 0.5, &[dense_a(&delta)])).unwrap();
    let old = [1.0f32, -0.0, 0.5, 2.0, -1.0, 3.0, 0.25, 1e30];
    for j in 0..8 {
        let want = if delta[j] == 0.0 { old[j] } else { (old[j] as f64 + 0.5 * delta[j] as f64) as f32 };
        assert_eq!(f32_at(&out, j * 4).to_bits(), want.to_bits(), "element {j}");
    }
    // A zero addend leaves the element's bits alone: -0.0 stays -0.0.
    assert_eq!(f32_at(&out, 4).to_bits(), (-0.0f32).to_bits());
    // Only a.weight changed.
    assert_eq!(&out[32..], &f.bytes[32..]);
}

#[test]
fn overflowing_weights_are_refused_before_anything_is_written() {
    let f = fixture();
    // 1e30 + 2 · 3e38 overflows f32 in element 7; element 0 would have changed first.
    let bytes = build(MAGIC_DENSE, 2.0, &[dense_a(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3e38])]);
    let e = applied(&f, &bytes).unwrap_err();
    assert_eq!((e.status, e.field.as_str(), e.value), (Status::AdapterNonFinite, "target[a.weight].result", 7));
    // A q8_0 block whose requantized scale does not fit in f16 (65504 · 127 ≈ 8.3e6).
    let bytes = build(MAGIC_SPARSE, 1.0, &[T { name: "q.weight", rows: 2, cols: 64, param: 1, payload: pairs(&[(40, 1e7)]) }]);
    let e = applied(&f, &bytes).unwrap_err();
    assert_eq!((e.status, e.field.as_str(), e.value), (Status::AdapterNonFinite, "target[q.weight].result", 32));
}

#[test]
fn sparse_on_q8_0_rewrites_only_the_touched_blocks() {
    let f = fixture();
    let q = &f.tensors[1];
    // Two entries in block 1 (elements 33 and 40), one in block 3 (element 127).
    let entries = [(33u32, 0.5f32), (40, -0.25), (127, 1.0)];
    let bytes = build(MAGIC_SPARSE, 2.0, &[T { name: "q.weight", rows: 2, cols: 64, param: 3, payload: pairs(&entries) }]);
    let adapter = parse(&bytes, Some(parent(&f))).unwrap();
    let mut seen = Vec::new();
    for_each_change(&adapter, &f.tensors, &f.bytes, &mut |o, n| {
        seen.push((o, n.to_vec()));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![q.range.start + 34, q.range.start + 3 * 34]);
    // Block 1 by hand: dequantize, add 2·value in f64, round to f32, requantize.
    let mut v = [0f32; 32];
    quant::dequantize_row(DType::Q8_0, &f.bytes[q.range.start + 34..q.range.start + 68], &mut v);
    v[1] = (v[1] as f64 + 2.0 * 0.5) as f32;
    v[8] = (v[8] as f64 + 2.0 * -0.25) as f32;
    let mut block = [0u8; 34];
    quant::quantize_row(DType::Q8_0, &v, &mut block);
    assert_eq!(seen[0].1, block.to_vec());
}

#[test]
fn low_rank_sums_over_k_in_f64() {
    let f = fixture();
    // rank 2: A [2, 4], B [2, 2]; W += 0.5 · B·A.
    let a = [1.0f32, 0.5, -1.0, 0.1, 0.3, 0.0, 2.0, -0.7];
    let b = [0.2f32, -0.4, 1.5, 0.0];
    let mut payload = f32s(&a);
    payload.extend(f32s(&b));
    let out = applied(&f, &build(MAGIC_LOW_RANK, 0.5, &[T { name: "a.weight", rows: 2, cols: 4, param: 2, payload }])).unwrap();
    let old = [1.0f32, -0.0, 0.5, 2.0, -1.0, 3.0, 0.25, 1e30];
    for i in 0..2 {
        for j in 0..4 {
            let mut d = 0.0f64;
            for k in 0..2 {
                d += b[i * 2 + k] as f64 * a[k * 4 + j] as f64;
            }
            let add = 0.5 * d;
            let want = if add == 0.0 { old[i * 4 + j] } else { (old[i * 4 + j] as f64 + add) as f32 };
            assert_eq!(f32_at(&out, (i * 4 + j) * 4).to_bits(), want.to_bits(), "({i}, {j})");
        }
    }
}

#[test]
fn dense_q8_0_payload_is_dequantized_per_row() {
    let f = fixture();
    let delta: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 256.0).collect();
    let mut payload = vec![0u8; 2 * 2 * 34];
    for (src, dst) in delta.chunks_exact(64).zip(payload.chunks_exact_mut(68)) {
        quant::quantize_row(DType::Q8_0, src, dst);
    }
    let as_q8 = applied(&f, &build(MAGIC_DENSE, 1.0, &[T { name: "q.weight", rows: 2, cols: 64, param: DENSE_Q8_0, payload: payload.clone() }])).unwrap();
    // The same delta written out as f32 (the dequantized q8_0 values) gives the same bytes.
    let mut deq = vec![0f32; 128];
    for (src, dst) in payload.chunks_exact(68).zip(deq.chunks_exact_mut(64)) {
        quant::dequantize_row(DType::Q8_0, src, dst);
    }
    let as_f32 = applied(&f, &build(MAGIC_DENSE, 1.0, &[T { name: "q.weight", rows: 2, cols: 64, param: DENSE_F32, payload: f32s(&deq) }])).unwrap();
    assert_eq!(as_q8, as_f32);
    assert_ne!(as_q8, f.bytes);
}

#[test]
fn undo_log_merges_spans_and_swapping_twice_restores() {
    let mut log = UndoLog::default();
    log.push(4, &[1, 2]).unwrap();
    log.push(6, &[3, 4]).unwrap();
    log.push(10, &[5]).unwrap();
    assert_eq!(log.spans, vec![(4, 4), (10, 1)]);
    assert_eq!(log.covered_bytes(), 5);
    let original: Vec<u8> = (100..112).collect();
    let mut package = original.clone();
    log.swap_with(&mut package);
    assert_eq!(package, vec![100, 101, 102, 103, 1, 2, 3, 4, 108, 109, 5, 111]);
    assert_eq!(log.bytes, vec![104, 105, 106, 107, 110]);
    log.swap_with(&mut package);
    assert_eq!(package, original);
}

#[test]
fn chain_is_crc32_of_state_then_digest() {
    // Values from Python: zlib.crc32(bytes(8)), zlib.crc32(struct.pack("<II", 0x12345678, 0x9abcdef0)).
    assert_eq!(chain(0, 0), 0x6522_df69);
    assert_eq!(chain(0x1234_5678, 0x9abc_def0), 0x8682_9deb);
}

#[test]
fn a_zero_scale_changes_nothing() {
    let f = fixture();
    let out = applied(&f, &build(MAGIC_DENSE, 0.0, &[dense_a(&[1.0; 8])])).unwrap();
    assert_eq!(out, f.bytes);
}

#[test]
fn a_sparse_target_with_no_entries_is_valid_and_changes_nothing() {
    // FORMAT.md, "Target table": n_entries 0 is allowed; the payload is empty and no unit changes
    // (the adapter still counts as applied, so its digest enters the assembly-state chain).
    let f = fixture();
    let bytes = build(MAGIC_SPARSE, 1.0, &[T { name: "q.weight", rows: 2, cols: 64, param: 0, payload: vec![] }]);
    let adapter = parse(&bytes, Some(parent(&f))).unwrap();
    assert_eq!(adapter.targets[0].payload.n_entries(), 0);
    assert_eq!(patch::max_changed_bytes(&adapter, &f.tensors), 0);
    assert_eq!(applied(&f, &bytes).unwrap(), f.bytes);
    // Entries left over after a payload of 0 entries are bytes before the CRC.
    let mut b = bytes.clone();
    b.splice(b.len() - 4..b.len() - 4, pairs(&[(0, 1.0)]));
    reseal(&mut b);
    let e = parse(&b, Some(parent(&f))).unwrap_err();
    assert_eq!((e.status, e.field.as_str(), e.value), (Status::AdapterBadHeader, "payload", 8));
}
