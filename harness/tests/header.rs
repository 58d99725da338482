//! The C header is real C (it compiles, and every prototype has the type the export table gives),
//! and the edge cases it documents are what the module does. (Constants, prototypes and the
//! diagnostics table are compared with the runtime's tables in `abi_facts.rs`.)

mod common;

use std::process::Command;

use common::*;
use harness::runtime::{result_kind, Runtime, Sampling, GEN_IGNORE_EOG};
use tinyrustlm::abi_facts::{gen_state, CONSTANT_GROUPS, EXPORTS, HEADER_SCALARS};
use tinyrustlm::error::Status;
use tinyrustlm::quant::DType;

fn header_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../abi/tinyrustlm.h")
}

/// C that includes the header, binds every export to a function pointer of the table's type (a
/// prototype with another type is then a compile error) and checks every constant's value.
fn c_use_of_the_header() -> String {
    let mut c = format!("#include <stdlib.h>\n#include \"{}\"\n", header_path().display());
    for &(name, value) in HEADER_SCALARS {
        c.push_str(&format!("_Static_assert({name} == {value}u, \"{name}\");\n"));
    }
    for g in CONSTANT_GROUPS {
        for &(name, value) in g.entries {
            c.push_str(&format!("_Static_assert({}{name} == {value}u, \"{}{name}\");\n", g.header_prefix, g.header_prefix));
        }
    }
    for f in EXPORTS {
        let params: Vec<&str> = f.params.iter().map(|p| p.1.c_type()).collect();
        let params = if params.is_empty() { "void".to_string() } else { params.join(", ") };
        let result = f.result.map_or("void", |t| t.c_type());
        c.push_str(&format!("{result} (*const p_{name})({params}) = {name};\n", name = f.name));
    }
    c
}

#[test]
fn header_compiles_as_c_and_cpp() {
    let dir = std::env::temp_dir().join(format!("trl-header-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("use_header.c");
    std::fs::write(&src, c_use_of_the_header()).unwrap();
    for (compiler, args) in [
        ("cc", vec!["-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"]),
        ("c++", vec!["-x", "c++", "-std=c++17", "-Wall", "-Werror", "-fsyntax-only"]),
    ] {
        let mut cmd = Command::new(compiler);
        cmd.args(&args).arg(if compiler == "cc" { src.clone() } else { header_path() });
        let out = cmd.output().unwrap_or_else(|e| panic!("running {compiler}: {e}"));
        assert!(out.status.success(), "{compiler} rejected the header:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn a_prototype_of_another_type_does_not_compile() {
    // The check above is only worth something if a wrong type is an error.
    let dir = std::env::temp_dir().join(format!("trl-header-neg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("wrong_type.c");
    let c = c_use_of_the_header().replace("(*const p_generate_step)(uint32_t)", "(*const p_generate_step)(uint64_t)");
    assert!(c.contains("(uint64_t) = generate_step"), "the snippet binds generate_step");
    std::fs::write(&src, c).unwrap();
    let out = Command::new("cc").args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only"]).arg(&src).output().expect("running cc");
    assert!(!out.status.success(), "cc accepted generate_step bound to a uint64_t parameter");
}

// ---- documented edge cases -----------------------------------------------------------------------

fn call<P: wasmtime::WasmParams>(rt: &mut Runtime, name: &str, args: P) -> u32 {
    rt.call_status(name, args).unwrap_or_else(|e| panic!("{name} trapped: {e:#}"))
}

fn expect_status(rt: &mut Runtime, what: &str, got: u32, want: Status) {
    assert_eq!(got, want.code(), "{what}: status {got} ({}), expected {}", status_label(got), want.name());
    if want != Status::Ok {
        let msg = rt.last_error().unwrap();
        assert!(msg.starts_with(&format!("{}: ", want.name())), "{what}: last_error {msg:?}");
    }
}

fn expect_call<P: wasmtime::WasmParams>(rt: &mut Runtime, what: &str, name: &str, args: P, want: Status) {
    let got = call(rt, name, args);
    expect_status(rt, what, got, want);
}

fn loaded() -> Runtime {
    let mut rt = runtime();
    rt.load_model(good_package(), 0).unwrap();
    rt
}

fn sampled(seed: u64) -> Sampling {
    Sampling { temperature: 1.5, seed, ..Sampling::default() }
}

/// A sampled generation of `n` tokens from the synthetic byte-vocabulary model: its tokens and text.
fn sampled_run(rt: &mut Runtime, seed: u64, n: u32) -> (Vec<u32>, String) {
    rt.set_sampling(&sampled(seed)).unwrap();
    let g = rt.generate_all("Once upon a time", n, GEN_IGNORE_EOG).unwrap();
    (g.tokens, g.text)
}

/// The header: TEXT with a `dst_cap` smaller than the next character is BUFFER_TOO_SMALL with that
/// character's length, nothing consumed; 0 bytes with OK only ever means "nothing new".
#[test]
fn text_smaller_than_the_next_character_is_buffer_too_small() {
    let mut rt = loaded();
    let (_, whole) = sampled_run(&mut rt, 7, 48);
    assert!(whole.chars().any(|c| c.len_utf8() > 1), "the sampled text has no multi-byte character to test with: {whole:?}");

    rt.set_sampling(&sampled(7)).unwrap();
    rt.generate("Once upon a time", 48, GEN_IGNORE_EOG).unwrap();
    let buf = rt.alloc(8).unwrap();
    let len_out = rt.alloc(4).unwrap();
    let mut text = Vec::new();
    let mut too_small = 0;
    loop {
        // A 1-byte destination: ASCII comes out, anything longer is refused with its length.
        let s = call(&mut rt, "read_result", (result_kind::TEXT, buf, 1u32, len_out));
        let n = u32_at(&rt.read(len_out, 4).unwrap(), 0);
        if s == Status::BufferTooSmall.code() {
            expect_status(&mut rt, "TEXT, 1 byte", s, Status::BufferTooSmall);
            assert!((2..=4).contains(&n), "needed length {n}");
            too_small += 1;
            // Nothing was consumed: a destination of exactly that length takes the character.
            expect_call(&mut rt, "TEXT, the needed length", "read_result", (result_kind::TEXT, buf, n, len_out), Status::Ok);
            assert_eq!(u32_at(&rt.read(len_out, 4).unwrap(), 0), n);
            text.extend(rt.read(buf, n as usize).unwrap());
            continue;
        }
        expect_status(&mut rt, "TEXT, 1 byte", s, Status::Ok);
        if n == 0 {
            break;
        }
        text.extend(rt.read(buf, 1).unwrap());
    }
    assert!(too_small > 0, "no character needed more than one byte");
    assert_eq!(String::from_utf8(text).unwrap(), whole, "the text read piecewise differs from the whole");
    // All read: every capacity, 0 included, now gives OK with 0 bytes.
    for cap in [0u32, 1, 4] {
        expect_call(&mut rt, "TEXT after everything was read", "read_result", (result_kind::TEXT, buf, cap, len_out), Status::Ok);
        assert_eq!(u32_at(&rt.read(len_out, 4).unwrap(), 0), 0);
    }
}

/// The header: bytes from byte tokens that are not UTF-8 come out as U+FFFD, exactly as
/// `String::from_utf8_lossy` replaces them.
#[test]
fn invalid_utf8_from_byte_tokens_comes_back_as_replacement_characters() {
    let mut rt = loaded();
    // Seeds until one generates only byte tokens (ids < 256 are the bytes themselves) that are not
    // valid UTF-8 together.
    for seed in 1..200 {
        let (tokens, text) = sampled_run(&mut rt, seed, 24);
        if tokens.iter().any(|&t| t >= 256) {
            continue;
        }
        let bytes: Vec<u8> = tokens.iter().map(|&t| t as u8).collect();
        if std::str::from_utf8(&bytes).is_ok() {
            continue;
        }
        assert_eq!(text, String::from_utf8_lossy(&bytes), "seed {seed}: tokens {tokens:?}");
        assert!(text.contains('\u{FFFD}'));
        return;
    }
    panic!("no seed produced ill-formed UTF-8 from byte tokens alone");
}

/// The header: `len_out_ptr` may share the destination's buffer but not overlap the destination.
#[test]
fn len_out_may_share_a_buffer_with_dst_but_not_overlap_it() {
    let mut rt = loaded();
    rt.generate_start("Once upon", 4, 0).unwrap();
    rt.generate_step(2).unwrap();
    let buf = rt.alloc(64).unwrap();
    let fill = vec![0xAA; 64];
    // Overlaps, by one byte or entirely; none reads, writes or consumes anything.
    for (what, dst, cap, len_out) in [
        ("len_out inside dst", buf, 16u32, buf + 4),
        ("len_out on dst's last byte", buf, 16, buf + 15),
        ("len_out one byte before dst", buf + 4, 16, buf + 1),
        ("len_out == dst", buf, 4, buf),
    ] {
        for kind in [result_kind::STATE, result_kind::TEXT] {
            rt.write(buf, &fill).unwrap();
            expect_call(&mut rt, &format!("read_result({kind}, {what})"), "read_result", (kind, dst, cap, len_out), Status::InvalidArgument);
            assert!(rt.last_error().unwrap().contains("len_out_ptr"), "{what}");
            assert_eq!(rt.read(buf, 64).unwrap(), fill, "read_result({kind}, {what}) wrote to the buffer");
        }
        expect_call(&mut rt, &format!("last_error({what})"), "last_error", (dst, cap, len_out), Status::InvalidArgument);
        assert_eq!(rt.read(buf, 64).unwrap(), fill, "last_error({what}) wrote to the buffer");
    }
    // Adjacent in one buffer is fine, on either side.
    expect_call(&mut rt, "len_out right after dst", "read_result", (result_kind::STATE, buf, 16u32, buf + 16), Status::Ok);
    assert_eq!(u32_at(&rt.read(buf + 16, 4).unwrap(), 0), 16);
    expect_call(&mut rt, "len_out right before dst", "read_result", (result_kind::STATE, buf + 4, 16u32, buf), Status::Ok);
    expect_call(&mut rt, "last_error, len_out after dst", "last_error", (buf, 32u32, buf + 32), Status::Ok);
    // dst_cap 0: there is no destination to overlap.
    expect_call(&mut rt, "STATE, dst_cap 0, len_out == dst_ptr", "read_result", (result_kind::STATE, buf, 0u32, buf), Status::BufferTooSmall);
    assert_eq!(u32_at(&rt.read(buf, 4).unwrap(), 0), 16);
    // The generation was not disturbed: its text is all still there.
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
    }
    let text = rt.read_text().unwrap();
    let mut fresh = loaded();
    let want = fresh.generate_all("Once upon", 4, 0).unwrap().text;
    assert_eq!(text, want);
}

/// The header: `generate_step(0)` while RUNNING is OK and does nothing; otherwise WRONG_STATE.
#[test]
fn generate_step_zero_does_nothing() {
    let mut rt = loaded();
    expect_call(&mut rt, "generate_step(0) before any generation", "generate_step", 0u32, Status::WrongState);
    rt.generate_start("Once upon", 3, 0).unwrap();
    let before = (rt.state().unwrap(), diagnostics(&mut rt).kv_len, rt.logits().unwrap());
    for _ in 0..3 {
        expect_call(&mut rt, "generate_step(0) while running", "generate_step", 0u32, Status::Ok);
    }
    assert_eq!((rt.state().unwrap(), diagnostics(&mut rt).kv_len, rt.logits().unwrap()), before);
    assert_eq!(before.0.state, gen_state::RUNNING);
    while rt.state().unwrap().running() {
        rt.generate_step(1).unwrap();
    }
    assert_eq!(rt.state().unwrap().generated_tokens, 3);
    expect_call(&mut rt, "generate_step(0) after the generation finished", "generate_step", 0u32, Status::WrongState);
}

/// The header: LOGITS before any generation is vocab_size zeros; reset keeps the last ones.
#[test]
fn logits_before_any_generation_are_zeros() {
    let mut rt = loaded();
    let vocab = model_spec(true).hparams.vocab_size as usize;
    assert_eq!(rt.logits().unwrap(), vec![0.0; vocab], "after load_model");
    rt.tokenize("abc", false).unwrap();
    assert_eq!(rt.logits().unwrap(), vec![0.0; vocab], "after tokenize");
    rt.generate_all("Once upon", 2, 0).unwrap();
    let last = rt.logits().unwrap();
    assert!(last.iter().any(|&x| x != 0.0));
    rt.reset().unwrap();
    assert_eq!(rt.logits().unwrap(), last, "after reset");
    rt.unload_model().unwrap();
    rt.load_model(good_package(), 0).unwrap();
    assert_eq!(rt.logits().unwrap(), vec![0.0; vocab], "after unload and a new load_model");
}

/// The header: EVAL_SIDECAR before any run_eval is OK with 0 bytes; a sidecar is kept across
/// unload/load_model until the next successful run_eval.
#[test]
fn eval_sidecar_before_any_eval_is_empty() {
    let mut rt = loaded();
    assert_eq!(rt.read_result(result_kind::EVAL_SIDECAR).unwrap(), Vec::<u8>::new());
    let cases =
        b"{\"suite\":\"s\",\"version\":\"1\",\"min_pass_rate\":0}\n{\"id\":\"a\",\"prompt\":\"ab\",\"expected\":\"\",\"match\":\"prefix\",\"max_tokens\":2}\n";
    let sidecar = rt.run_eval(cases).unwrap();
    assert!(!sidecar.is_empty());
    rt.unload_model().unwrap();
    rt.load_model(good_package(), 0).unwrap();
    assert_eq!(rt.read_result(result_kind::EVAL_SIDECAR).unwrap(), sidecar);
}

/// The header: an empty prompt is one that yields no tokens. With BOS, 0 bytes is [BOS] for
/// tokenize too. (Without BOS, generate_start's INVALID_ARGUMENT is tested in abi_misuse.rs.)
#[test]
fn empty_text_is_bos_when_the_tokenizer_adds_one() {
    let mut rt = loaded();
    let bos = model_spec(true).tokenizer.bos_id.expect("the synthetic tokenizer has a BOS");
    assert_eq!(rt.tokenize("", false).unwrap(), vec![bos]);
    let mut spec = model_spec(true);
    spec.tokenizer.add_bos = false;
    let mut rt = runtime();
    rt.load_model(&raw_package_from(&spec, DType::F32).to_bytes().0, 0).unwrap();
    assert_eq!(rt.tokenize("", false).unwrap(), Vec::<u32>::new());
}

/// The header: `last_error` prints a matrix shape as `[rows, cols]`.
#[test]
fn last_error_prints_a_shape_as_two_numbers() {
    let mut raw = raw_package(DType::F32, true);
    let t = raw.tensors.iter_mut().find(|t| t.name == b"blk.0.attn_q.weight").unwrap();
    let want = t.dims.clone();
    t.dims = vec![want[0], want[1] / 2];
    t.data.truncate(t.data.len() / 2);
    raw.n_params -= u64::from(want[0] * want[1] / 2);
    let mut rt = runtime();
    let e = try_load(&mut rt, &raw.to_bytes().0, 0).unwrap_err();
    assert_eq!(e.status, Status::BadTensorShape.code(), "{}", e.message);
    let shape = format!("tensor[blk.0.attn_q.weight].dims = [{}, {}]: ", want[0], want[1]);
    assert!(e.message.contains(&shape), "{:?} does not contain {shape:?}", e.message);
}
