//! The streaming load (`load_begin` / `load_append` / `load_finish`, abi/tinyrustlm.h): real
//! packages streamed in awkward chunks load bit-identically to `load_model`; a flipped byte or a
//! short stream is refused at the chunk where it breaks a rule, with `load_model`'s status for the
//! same bytes, and nothing is kept; misuse gets its status and changes nothing. (Every rejection case
//! of `package_rejections.rs` is also streamed, cut three ways, by `common::try_load`.)

mod common;

use common::*;
use harness::runtime::Runtime;
use harness::synth::SplitMix64;
use tinyrustlm::error::Status;

fn real_package(name: &str) -> Vec<u8> {
    let path = models_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make model` / `make models-all`; these tests never skip)", path.display()))
}

/// Greedy tokens and the last logits of a short generation.
fn fingerprint(rt: &mut Runtime) -> (Vec<u32>, Vec<u32>) {
    let g = rt.generate_all("The capital of France is", 8, harness::runtime::GEN_IGNORE_EOG).expect("generation");
    let logits = rt.logits().expect("logits").iter().map(|x| x.to_bits()).collect();
    (g.tokens, logits)
}

fn section_ends(bytes: &[u8]) -> (usize, usize, usize) {
    let dir_end = (u64_at(bytes, 80) + u64_at(bytes, 88)) as usize;
    let tok_start = u64_at(bytes, 96) as usize;
    let tok_end = tok_start + u64_at(bytes, 104) as usize;
    let data_start = u64_at(bytes, 112) as usize;
    (dir_end, tok_end, data_start)
}

#[test]
fn real_packages_streamed_in_awkward_chunks_load_bit_identically() {
    // v1 (q8_0) and v2 (SmolLM2 requantized to Q4_K_M by llama.cpp: q4_k / q6_k / q5_0 / q8_0).
    for name in ["smollm2-135m-q8_0.slm", "smollm2-135m-q4_k_m.slm"] {
        let bytes = real_package(name);
        let mut rt = runtime();
        rt.load_model(&bytes, 256).expect("load_model");
        let want = fingerprint(&mut rt);
        rt.unload_model().unwrap();

        let mut rng = SplitMix64(0x57AE);
        let chunkings = [awkward_chunk_ends(bytes.len(), &mut rng, 1 << 20), vec![bytes.len()]];
        for ends in chunkings {
            let mut rt = runtime();
            stream_load(&mut rt, &bytes, 256, &ends).unwrap_or_else(|f| panic!("{name} in {} chunks: {f:?}", ends.len()));
            let (total, received, verified) = rt.load_progress().unwrap();
            assert_eq!((total, received, verified), (bytes.len() as u64, bytes.len() as u64, bytes.len() as u64), "{name}: final progress");
            assert_eq!(fingerprint(&mut rt), want, "{name} streamed in {} chunks generates otherwise than load_model", ends.len());
        }
    }
}

#[test]
fn progress_is_readable_at_any_time_and_verified_trails_received() {
    let bytes = real_package("smollm2-135m-q8_0.slm");
    let (dir_end, tok_end, _) = section_ends(&bytes);
    let mut rt = runtime();
    assert_eq!(rt.load_progress().unwrap(), (0, 0, 0), "before any load");
    rt.load_begin(bytes.len() as u32, 0, 0).unwrap();
    let scratch = rt.alloc(1 << 20).unwrap();
    let mut at = 0;
    let mut last_verified = 0;
    let mut seen_verified_inside_data = false;
    while at < bytes.len() {
        let end = (at + (1 << 20)).min(bytes.len());
        rt.load_append_via(scratch, &bytes[at..end]).unwrap();
        let (total, received, verified) = rt.load_progress().unwrap();
        assert_eq!((total, received), (bytes.len() as u64, end as u64));
        assert!(verified <= received && verified >= last_verified, "verified {verified} after {last_verified}, received {received}");
        if end < dir_end {
            assert!(verified <= 160, "nothing past the header is verified before the directory is complete");
        }
        if end >= tok_end && end < bytes.len() {
            // Data are verified block by block as they arrive: at most one block (≤ 210 bytes) behind.
            assert!(received - verified < 256, "verified {verified} lags received {received}");
            seen_verified_inside_data = true;
        }
        if end < bytes.len() {
            assert!(verified < total, "verified reaches total only with the artifact CRC");
        }
        last_verified = verified;
        at = end;
    }
    assert!(seen_verified_inside_data);
    assert_eq!(rt.load_progress().unwrap(), (bytes.len() as u64, bytes.len() as u64, bytes.len() as u64));
    rt.load_finish().unwrap();
    rt.free(scratch).unwrap();
}

/// Streams `bytes` in 1 MiB chunks and returns the failing call and the rejection.
fn refused_at(rt: &mut Runtime, bytes: &[u8], chunk: usize) -> (usize, Vec<usize>, Rejection) {
    let ends: Vec<usize> = (1..=bytes.len().div_ceil(chunk)).map(|i| (i * chunk).min(bytes.len())).collect();
    let f = stream_load(rt, bytes, 0, &ends).expect_err("the stream loaded");
    (f.call, ends, f.rejection)
}

#[test]
fn flipped_bytes_in_a_real_package_are_refused_at_the_chunk_that_completes_their_check() {
    let good = real_package("smollm2-135m-q4_1.slm");
    let (dir_end, tok_end, data_start) = section_ends(&good);
    let n = good.len();
    let chunk = 1 << 20;
    let chunk_of = |byte_end: usize| byte_end.div_ceil(chunk); // 1-based call of the chunk holding byte_end - 1
    let cases: [(&str, usize, Status, &str, usize); 5] = [
        // (what, byte flipped, status, field, the prefix whose last byte completes the check)
        ("a header field (n_layers)", 27, Status::BadHyperparameter, "header.n_layers", 128),
        ("a directory byte", dir_end - 3, Status::TensorLayoutChecksum, "header.tensor_layout_crc", dir_end),
        ("a tokenizer byte", tok_end - 10, Status::TokenizerChecksum, "header.tokenizer_crc", tok_end),
        ("a quant byte in the middle of the data", data_start + (n - data_start) / 2 + 7, Status::ArtifactChecksum, "trailer.artifact_crc", n),
        ("the trailer", n - 1, Status::ArtifactChecksum, "trailer.artifact_crc", n),
    ];
    let mut rt = runtime();
    for (what, at, status, field, completes) in cases {
        let mut bytes = good.clone();
        bytes[at] ^= if at == 27 { 0x80 } else { 0x04 };
        let (call, _, rejection) = refused_at(&mut rt, &bytes, chunk);
        check_rejection(Err(rejection.clone()), status, field).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(call, chunk_of(completes), "{what}: refused at call {call} ({})", rejection.message);
        assert_eq!(try_load_once(&mut rt, &bytes, 0), Err(rejection), "{what}: load_model refuses the same bytes otherwise");
    }
    // A NaN scale is refused inside the data, at the chunk holding its block.
    let mut bytes = good.clone();
    let at = data_start + 3 * chunk + 1000;
    // The first tensor is token_embd, q8_0 in a 4-bit package: 34-byte blocks, the f16 scale first.
    let embd_block = 34;
    let scale = at - (at - data_start) % embd_block;
    put_u16(&mut bytes, scale, 0x7e00);
    let (call, _, rejection) = refused_at(&mut rt, &bytes, chunk);
    check_rejection(Err(rejection), Status::BadTensorData, "tensor[token_embd.weight]").unwrap();
    assert_eq!(call, chunk_of(scale + embd_block), "a NaN scale");

    // Nothing is kept after any of these: a one-shot load of the good package works.
    rt.load_model(&good, 0).expect("load_model after refused streams");
}

#[test]
fn a_stream_that_ends_early_is_truncated_and_nothing_is_kept() {
    let good = real_package("smollm2-135m-q4_1.slm");
    let mut rt = runtime();
    let cut = good.len() - 1000;
    let ends: Vec<usize> = (1..=cut.div_ceil(1 << 20)).map(|i| (i << 20).min(cut)).collect();
    let f = stream_load(&mut rt, &good, 0, &ends).expect_err("a short stream loaded");
    assert_eq!(f.call, ends.len() + 1, "refused by load_finish");
    check_rejection(Err(f.rejection), Status::Truncated, "load.received").unwrap();
    // A stream announcing a truncated file is refused as load_model refuses the file: at the header.
    let short = &good[..cut];
    let f = stream_load(&mut rt, short, 0, &[200, cut]).expect_err("a truncated package loaded");
    assert_eq!(f.call, 1);
    let want = try_load_once(&mut rt, short, 0).expect_err("load_model took a truncated package");
    assert_eq!(f.rejection, want);
    rt.load_model(&good, 0).expect("load_model after refused streams");
}

#[test]
fn misuse_gets_its_status_and_changes_nothing() {
    let good = good_package();
    let mut rt = runtime();
    let scratch = rt.alloc(good.len() as u32 + 16).unwrap();
    let status = |rt: &mut Runtime, name: &str, s: u32| {
        let message = if s == 0 { String::new() } else { rt.last_error().unwrap() };
        (Status::from_code(s).unwrap_or_else(|| panic!("{name}: unknown status {s}")), message)
    };
    for call in ["load_finish", "load_abort"] {
        let s = rt.call_status(call, ()).unwrap();
        assert_eq!(status(&mut rt, call, s).0, Status::WrongState, "{call} without a stream");
    }
    let s = rt.call_status("load_append", (scratch, 4u32)).unwrap();
    assert_eq!(status(&mut rt, "load_append", s).0, Status::WrongState, "load_append without a stream");
    let s = rt.call_status("load_begin", (good.len() as u32, 0u32, 2u32)).unwrap();
    assert_eq!(status(&mut rt, "load_begin", s).0, Status::InvalidArgument, "unknown flag");
    let s = rt.call_status("load_begin", (0u32, 0u32, 0u32)).unwrap();
    assert_eq!(status(&mut rt, "load_begin", s).0, Status::Truncated, "an empty package");
    let s = rt.call_status("load_begin", (u32::MAX, 0u32, 0u32)).unwrap();
    assert_eq!(status(&mut rt, "load_begin", s).0, Status::OutOfMemory, "4 GiB");

    rt.load_begin(good.len() as u32, 0, 0).unwrap();
    let s = rt.call_status("load_begin", (good.len() as u32, 0u32, 0u32)).unwrap();
    assert_eq!(status(&mut rt, "load_begin", s).0, Status::WrongState, "a second load_begin");
    let s = rt.call_status("load_model", (scratch, good.len() as u32 + 16, 0u32, 0u32)).unwrap();
    assert_eq!(status(&mut rt, "load_model", s).0, Status::WrongState, "load_model while a stream is open");
    // A bad pointer consumes nothing: the stream goes on.
    rt.load_append_via(scratch, &good[..100]).unwrap();
    let s = rt.call_status("load_append", (u32::MAX - 8, 4u32)).unwrap();
    assert_eq!(status(&mut rt, "load_append", s).0, Status::OutOfBounds);
    assert_eq!(rt.load_progress().unwrap().1, 100);
    rt.load_append_via(scratch, &good[100..]).unwrap();
    // One byte past total_len: INVALID_ARGUMENT, and the stream is over.
    let s = rt.call_status("load_append", (scratch, 1u32)).unwrap();
    assert_eq!(status(&mut rt, "load_append", s).0, Status::InvalidArgument, "a chunk past total_len");
    let s = rt.call_status("load_finish", ()).unwrap();
    assert_eq!(status(&mut rt, "load_finish", s).0, Status::WrongState, "the stream ended with the refused chunk");

    // Abort frees the stream; a new one then loads; a loaded model refuses load_begin.
    rt.load_begin(good.len() as u32, 0, 0).unwrap();
    rt.load_append_via(scratch, &good[..1000]).unwrap();
    rt.load_abort().unwrap();
    rt.load_begin(good.len() as u32, 0, 0).unwrap();
    rt.load_append_via(scratch, good).unwrap();
    rt.load_finish().unwrap();
    let s = rt.call_status("load_begin", (good.len() as u32, 0u32, 0u32)).unwrap();
    assert_eq!(status(&mut rt, "load_begin", s).0, Status::WrongState, "load_begin with a model loaded");
    let g = rt.generate_all(PROMPT, N_NEW_TOKENS, 0).unwrap();
    assert_eq!(g.tokens, reference_tokens(), "a streamed package generates as load_model's");
    rt.unload_model().unwrap();
    rt.free(scratch).unwrap();
    assert_usable(&mut rt, "streaming misuse");
}

#[test]
fn a_context_longer_than_max_context_is_refused_once_the_header_is_in() {
    let good = good_package();
    let mut rt = runtime();
    let max_context = u32_at(good, 40);
    let f = stream_load(&mut rt, good, max_context + 1, &[100, 160, good.len()]).expect_err("loaded");
    assert_eq!(f.call, 2, "refused by the chunk completing the header");
    check_rejection(Err(f.rejection), Status::InvalidArgument, "context_len").unwrap();
    assert_usable(&mut rt, "a refused context_len");
}
