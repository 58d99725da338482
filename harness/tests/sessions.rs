//! Session snapshots (SES1, `abi/FORMAT.md` "Session snapshots") on the real models: a conversation
//! saved, restored into a fresh instance and continued gives exactly the tokens (and logits) of the
//! instance that never stopped, greedy and seeded, with an f32 or f16 KV cache, with an adapter
//! applied, into another context length; every snapshot that does not fit the loaded model, or is
//! damaged, is refused with its status and field and changes nothing.

mod common;

use common::*;
use harness::adapter::{AdapterSpec, Delta, Kind, TargetSpec};
use harness::runtime::{Runtime, Sampling, GEN_CONTINUE, GEN_IGNORE_EOG, LOAD_KV_F16};
use tinyrustlm::error::Status;

const SMOLLM: &str = "smollm2-135m-q8_0.slm";
const QWEN: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m.slm";
const FIRST: &str = "The three laws of robotics are";
const SECOND: &str = " In short, the first law says";
const N_FIRST: u32 = 12;
const N_SECOND: u32 = 16;

fn package(name: &str) -> Vec<u8> {
    let path = models_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (make models-all; these tests never skip)", path.display()))
}

fn seeded() -> Sampling {
    Sampling { temperature: 0.9, top_k: 40, top_p: 0.95, min_p: 0.0, repetition_penalty: 1.1, repetition_window: 64, seed: 1234 }
}

fn instance(pkg: &[u8], context_len: u32, flags: u32, sampling: &Sampling) -> Runtime {
    let mut rt = runtime();
    rt.load_model_with_flags(pkg, context_len, flags).unwrap();
    rt.set_sampling(sampling).unwrap();
    rt
}

/// The continuation after the snapshot point: its tokens and the logits after the last one.
fn continue_conversation(rt: &mut Runtime) -> (Vec<u32>, Vec<f32>) {
    let g = rt.generate_all(SECOND, N_SECOND, GEN_CONTINUE | GEN_IGNORE_EOG).unwrap();
    (g.tokens, rt.logits().unwrap())
}

/// Runs the first turn in `a`, saves, continues `a`; restores into `b` and continues it. Returns
/// the snapshot. The two continuations must be identical bit for bit.
fn save_restore_continue(a: &mut Runtime, b: &mut Runtime, what: &str) -> Vec<u8> {
    a.generate_all(FIRST, N_FIRST, GEN_IGNORE_EOG).unwrap();
    let snapshot = a.save_session().unwrap();
    let never_stopped = continue_conversation(a);
    b.restore_session(&snapshot).unwrap();
    assert_eq!(b.state().unwrap().state, 0, "{what}: IDLE after restore");
    let restored = continue_conversation(b);
    assert_eq!(restored.0, never_stopped.0, "{what}: tokens after restore");
    assert!(restored.1.iter().zip(&never_stopped.1).all(|(x, y)| x.to_bits() == y.to_bits()), "{what}: logits after restore");
    snapshot
}

#[test]
fn smollm2_continues_bit_identically_greedy_and_seeded_f32_and_f16() {
    let pkg = package(SMOLLM);
    for (kv, flags) in [("f32", 0), ("f16", LOAD_KV_F16)] {
        for (mode, sampling) in [("greedy", Sampling::default()), ("seeded", seeded())] {
            let what = format!("SmolLM2 q8_0, {kv} KV, {mode}");
            let mut a = instance(&pkg, 0, flags, &sampling);
            let mut b = instance(&pkg, 0, flags, &sampling);
            let snapshot = save_restore_continue(&mut a, &mut b, &what);
            // What was saved comes back unchanged: a restored instance saves the same bytes.
            let mut c = instance(&pkg, 0, flags, &sampling);
            c.restore_session(&snapshot).unwrap();
            assert_eq!(c.save_session().unwrap(), snapshot, "{what}: save after restore");
            let d = diagnostics(&mut c);
            assert_eq!(d.kv_len as usize, (snapshot_n_past(&snapshot)) as usize, "{what}: kv_len");
        }
    }
}

#[test]
fn qwen_continues_bit_identically_greedy_and_seeded() {
    let pkg = package(QWEN);
    for (mode, sampling) in [("greedy", Sampling::default()), ("seeded", seeded())] {
        let mut a = instance(&pkg, 512, 0, &sampling);
        let mut b = instance(&pkg, 512, 0, &sampling);
        save_restore_continue(&mut a, &mut b, &format!("Qwen2.5-Coder 0.5B, {mode}"));
    }
}

fn snapshot_n_past(s: &[u8]) -> u32 {
    u32_at(s, 68)
}

/// A sparse adapter on SmolLM2's first query projection (a few weights changed).
fn smollm2_adapter(pkg: &[u8], scale: f32) -> Vec<u8> {
    let id = tinyrustlm::format::parse(pkg).unwrap().identity;
    let entries = (0..8).map(|k| (k * 577 * 9, 0.05 * (k as f32 + 1.0))).collect();
    AdapterSpec {
        kind: Kind::Sparse,
        parent: id,
        scale,
        targets: vec![TargetSpec { name: "blk.0.attn_q.weight".into(), rows: 576, cols: 576, delta: Delta::Sparse(entries) }],
    }
    .to_bytes()
}

#[test]
fn smollm2_with_an_adapter_continues_and_other_stacks_are_refused() {
    let pkg = package(SMOLLM);
    let adapter = smollm2_adapter(&pkg, 1.0);
    let sampling = seeded();
    let mut a = instance(&pkg, 0, 0, &sampling);
    let mut b = instance(&pkg, 0, 0, &sampling);
    a.apply_adapter(&adapter).unwrap();
    b.apply_adapter(&adapter).unwrap();
    let snapshot = save_restore_continue(&mut a, &mut b, "SmolLM2 + sparse adapter");

    let mut plain = instance(&pkg, 0, 0, &sampling);
    let e = plain.restore_session(&snapshot).unwrap_err();
    assert_refused(&e, Status::SessionAdapterMismatch, "header.n_adapters");
    let mut other = instance(&pkg, 0, 0, &sampling);
    other.apply_adapter(&smollm2_adapter(&pkg, 0.5)).unwrap();
    let e = other.restore_session(&snapshot).unwrap_err();
    assert_refused(&e, Status::SessionAdapterMismatch, "header.assembly_state_crc");
}

fn assert_refused(e: &anyhow::Error, status: Status, field: &str) {
    let got = harness::runtime::status_of(e);
    assert_eq!(got, Some(status.code()), "{e:#}: want {}", status.name());
    assert!(e.to_string().contains(&format!("{field} = ")), "{e:#}: want field {field}");
}

/// Recomputes the trailing CRC32 after a header field was edited on purpose.
fn reseal(b: &mut [u8]) {
    let n = b.len() - 4;
    let crc = crc32fast::hash(&b[..n]);
    b[n..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_restore_into_another_context_that_holds_the_conversation_continues_identically() {
    let pkg = package(SMOLLM);
    let mut a = instance(&pkg, 0, 0, &Sampling::default());
    let mut b = instance(&pkg, 64, 0, &Sampling::default());
    save_restore_continue(&mut a, &mut b, "SmolLM2 2048 → 64 positions");
    let mut small = instance(&pkg, 16, 0, &Sampling::default());
    let snapshot = a.save_session().unwrap();
    let e = small.restore_session(&snapshot).unwrap_err();
    assert_refused(&e, Status::SessionContextTooSmall, "header.n_past");
}

#[test]
fn damaged_and_foreign_snapshots_are_refused_and_change_nothing() {
    let pkg = package(SMOLLM);
    let mut a = instance(&pkg, 0, 0, &Sampling::default());
    a.generate_all(FIRST, 4, GEN_IGNORE_EOG).unwrap();
    let good = a.save_session().unwrap();
    let expected = continue_conversation(&mut a);

    let mut b = instance(&pkg, 0, 0, &Sampling::default());
    b.restore_session(&good).unwrap();

    let edit = |f: &dyn Fn(&mut Vec<u8>), seal: bool| {
        let mut s = good.clone();
        f(&mut s);
        if seal {
            reseal(&mut s);
        }
        s
    };
    let put32 = |at: usize, v: u32| move |s: &mut Vec<u8>| put_u32(s, at, v);
    let flip = |at: usize| move |s: &mut Vec<u8>| s[at] ^= 0x10;
    let n = good.len();
    let vocab_at_tokens = 152; // the first token id
    let cases: Vec<(&str, Vec<u8>, Status, &str)> = vec![
        ("empty", vec![], Status::SessionTruncated, "header"),
        ("three bytes", good[..3].to_vec(), Status::SessionTruncated, "header"),
        ("bad magic", edit(&|s| s[0] = b'X', false), Status::SessionBadMagic, "header.magic"),
        ("a model package", pkg[..4096].to_vec(), Status::SessionBadMagic, "header.magic"),
        ("header only", good[..152].to_vec(), Status::SessionTruncated, "header"),
        ("version 2", edit(&put32(4, 2), false), Status::SessionUnsupportedVersion, "header.format_version"),
        ("header_len 148", edit(&put32(8, 148), false), Status::SessionBadHeader, "header.header_len"),
        ("cut by one byte", good[..n - 1].to_vec(), Status::SessionTruncated, "header.total_len"),
        ("cut in half", good[..n / 2].to_vec(), Status::SessionTruncated, "header.total_len"),
        ("one byte appended", edit(&|s| s.push(0), false), Status::SessionBadHeader, "header.total_len"),
        ("flipped KV byte", edit(&flip(n - 100), false), Status::SessionChecksum, "crc32"),
        ("flipped token byte", edit(&flip(vocab_at_tokens), false), Status::SessionChecksum, "crc32"),
        ("flipped CRC byte", edit(&flip(n - 1), false), Status::SessionChecksum, "crc32"),
        ("unknown flag", edit(&put32(12, 2), true), Status::SessionBadHeader, "header.flags"),
        ("n_params", edit(&flip(24), true), Status::SessionModelMismatch, "header.n_params"),
        ("tensor_layout_crc", edit(&flip(32), true), Status::SessionModelMismatch, "header.tensor_layout_crc"),
        ("tokenizer_crc", edit(&flip(36), true), Status::SessionModelMismatch, "header.tokenizer_crc"),
        ("model flags", edit(&flip(40), true), Status::SessionModelMismatch, "header.model_flags"),
        ("n_tensors", edit(&flip(44), true), Status::SessionModelMismatch, "header.n_tensors"),
        ("artifact_crc", edit(&flip(48), true), Status::SessionModelMismatch, "header.artifact_crc"),
        ("n_adapters 1", edit(&put32(52, 1), true), Status::SessionAdapterMismatch, "header.n_adapters"),
        ("assembly_state_crc", edit(&flip(56), true), Status::SessionAdapterMismatch, "header.assembly_state_crc"),
        ("kv_dtype 2", edit(&put32(60, 2), true), Status::SessionBadHeader, "header.kv_dtype"),
        ("kv_dtype f16", edit(&put32(60, 1), true), Status::SessionKvDtypeMismatch, "header.kv_dtype"),
        ("n_past 0", edit(&put32(68, 0), true), Status::SessionBadHeader, "header.n_past"),
        ("context_len above max_context", edit(&put32(64, 1 << 20), true), Status::SessionBadHeader, "header.context_len"),
        ("context_len below n_past", edit(&put32(64, 1), true), Status::SessionBadHeader, "header.context_len"),
        (
            "n_past one more",
            edit(
                &|s| {
                    let n_past = u32_at(s, 68);
                    put_u32(s, 68, n_past + 1)
                },
                true,
            ),
            Status::SessionBadHeader,
            "header.total_len",
        ),
        ("pending token without its flag", edit(&put32(12, 0), true), Status::SessionBadHeader, "header.pending_token"),
        ("vocab_size", edit(&put32(76, 1000), true), Status::SessionBadHeader, "header.vocab_size"),
        ("n_layers", edit(&put32(80, 29), true), Status::SessionBadHeader, "header.n_layers"),
        ("kv_dim", edit(&put32(84, 64), true), Status::SessionBadHeader, "header.kv_dim"),
        ("temperature NaN", edit(&|s| put_f32(s, 88, f32::NAN), true), Status::SessionBadHeader, "sampling.temperature"),
        ("top_p 0", edit(&|s| put_f32(s, 96, 0.0), true), Status::SessionBadHeader, "sampling.top_p"),
        ("random state all zero", edit(&|s| s[120..152].fill(0), true), Status::SessionBadHeader, "header.rng_state"),
        ("token id = vocab_size", edit(&put32(152, 49152), true), Status::SessionBadToken, "tokens[0]"),
        ("pending token = vocab_size", edit(&put32(72, 49152), true), Status::SessionBadToken, "header.pending_token"),
    ];
    for (what, bytes, status, field) in &cases {
        let e = b.restore_session(bytes).expect_err(what);
        assert_refused(&e, *status, field);
    }

    // Fuzz-ish: random single-byte changes anywhere (not resealed) and random truncations are
    // always refused with a session status.
    let mut rng = harness::synth::SplitMix64(0x5E55_1013);
    for _ in 0..48 {
        let at = (rng.next_u64() % n as u64) as usize;
        let mut s = good.clone();
        s[at] ^= 1 + (rng.next_u64() % 255) as u8;
        let e = b.restore_session(&s).expect_err("a changed byte");
        let code = harness::runtime::status_of(&e).unwrap();
        assert!((112..=127).contains(&code), "byte {at}: {e:#}");
        let cut = (rng.next_u64() % n as u64) as usize;
        let e = b.restore_session(&good[..cut]).expect_err("a truncation");
        assert!(matches!(harness::runtime::status_of(&e), Some(114) | Some(112)), "cut at {cut}: {e:#}");
    }

    // Another package (same model, other storage) and another KV dtype.
    let q4 = package("smollm2-135m-q4_0.slm");
    let mut other = instance(&q4, 0, 0, &Sampling::default());
    let e = other.restore_session(&good).unwrap_err();
    assert_refused(&e, Status::SessionModelMismatch, "header.tensor_layout_crc");
    let mut f16 = instance(&pkg, 0, LOAD_KV_F16, &Sampling::default());
    let e = f16.restore_session(&good).unwrap_err();
    assert_refused(&e, Status::SessionKvDtypeMismatch, "header.kv_dtype");
    let qwen = package(QWEN);
    let mut q = instance(&qwen, 256, 0, &Sampling::default());
    let e = q.restore_session(&good).unwrap_err();
    assert_refused(&e, Status::SessionModelMismatch, "header.n_params");
    drop(q);

    // After all those refusals the restored conversation is intact.
    assert_eq!(continue_conversation(&mut b), expected, "continuation after the refusals");
}

#[test]
fn saving_needs_a_conversation_and_changes_nothing() {
    let pkg = package(SMOLLM);
    let mut rt = instance(&pkg, 0, 0, &Sampling::default());
    let e = rt.save_session().unwrap_err();
    assert_refused(&e, Status::WrongState, "kv_len");
    assert_eq!(rt.read_result(harness::runtime::result_kind::SESSION).unwrap(), Vec::<u8>::new());
    rt.generate_all(FIRST, 3, GEN_IGNORE_EOG).unwrap();
    let before = rt.state().unwrap();
    let first = rt.save_session().unwrap();
    assert_eq!(rt.state().unwrap(), before);
    assert_eq!(rt.save_session().unwrap(), first, "saving twice gives the same bytes");
    // Only the used part of the cache: header, tokens, logits, 30 layers × K and V × n_past × 192 f32.
    let n_past = snapshot_n_past(&first) as usize;
    assert_eq!(first.len(), 152 + 4 * n_past + 4 * 49152 + 30 * 2 * n_past * 192 * 4 + 4);
    let e = runtime().restore_session(&first).unwrap_err();
    assert_refused(&e, Status::WrongState, "model");
}

fn trl(args: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trl")).args(args).output().expect("running trl");
    assert!(out.status.success(), "trl {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn json_tokens(stdout: &str) -> Vec<u32> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    v["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

/// `trl generate --chat --save-session F`, then `--load-session F` with the next user turn, gives
/// the tokens of one instance that answered both turns without stopping.
#[test]
fn trl_generate_saves_and_continues_a_chat() {
    use tinyrustlm::tokenizer::chat::{ChatMessage, CHAT_ADD_GENERATION_PROMPT, CHAT_CONTINUE};
    let dir = std::env::temp_dir().join(format!("trl-sessions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("chat.ses").display().to_string();
    let model = models_dir().join(SMOLLM).display().to_string();
    let (first, second) = ("What is the capital of France?", "And of Italy?");
    let (out1, err1) = trl(&["generate", "--model", &model, "--chat", "--prompt", first, "-n", "24", "--json", "--save-session", &file]);
    assert!(err1.contains("[saved "), "{err1}");
    let (out2, err2) = trl(&["generate", "--model", &model, "--chat", "--prompt", second, "-n", "24", "--json", "--load-session", &file]);
    assert!(err2.contains("[restored "), "{err2}");

    let mut rt = instance(&package(SMOLLM), 0, 0, &Sampling::default());
    let p1 = rt.render_chat(&[ChatMessage { role: "user", content: first }], CHAT_ADD_GENERATION_PROMPT).unwrap();
    let g1 = rt.generate_all(&p1, 24, harness::runtime::GEN_PARSE_SPECIAL).unwrap();
    assert_eq!(json_tokens(&out1), g1.tokens, "first turn");
    let p2 = rt.render_chat(&[ChatMessage { role: "user", content: second }], CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE).unwrap();
    let g2 = rt.generate_all(&p2, 24, harness::runtime::GEN_PARSE_SPECIAL | GEN_CONTINUE).unwrap();
    assert_eq!(json_tokens(&out2), g2.tokens, "second turn, from the snapshot");
    assert!(!g2.tokens.is_empty());

    // A snapshot for another package is refused by name.
    let q4 = models_dir().join("smollm2-135m-q4_0.slm").display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trl"))
        .args(["generate", "--model", &q4, "--prompt", "x", "-n", "1", "--load-session", &file])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SESSION_MODEL_MISMATCH"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Gemma 3's sliding-window layers keep rings of 544 positions: a 600-token conversation has
/// wrapped them. Restored into a context whose rings are the same size, or into one with global
/// rings of another size, the continuation is the same.
#[test]
fn gemma3_sliding_window_rings_restore_past_their_length_into_other_contexts() {
    let pkg = package("gemma-3-270m-q4_k_m.slm");
    let sampling = seeded();
    let mut a = instance(&pkg, 2048, 0, &sampling);
    let history = harness::bench::prompt_of(&mut a, 600).unwrap();
    a.generate_all(&history, 4, GEN_IGNORE_EOG).unwrap();
    let snapshot = a.save_session().unwrap();
    assert_eq!(snapshot_n_past(&snapshot), 603);
    let never_stopped = continue_conversation(&mut a);
    drop(a);
    for context in [640, 1024] {
        let mut b = instance(&pkg, context, 0, &sampling);
        b.restore_session(&snapshot).unwrap();
        assert_eq!(continue_conversation(&mut b), never_stopped, "Gemma 3, restored into a {context}-token context");
    }
}
