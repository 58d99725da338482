//! Evals, sidecars, release packets and lineage. The synthetic-model tests need no download; the
//! SmolLM2 tests run the sample suites in `tests/data/evals/` against `make model`'s q8_0 package.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use harness::adapter::{AdapterSpec, Delta, Kind, TargetSpec};
use harness::evidence::{self, BuildArgs, LineageFormat};
use harness::runtime::GEN_PARSE_SPECIAL;
use serde_json::Value;
use tinyrustlm::error::Status;

/// A small suite for the synthetic model (byte tokenizer, random weights: outputs are gibberish but
/// deterministic). `EXPECTED_0` is filled in from a plain generation so one case passes.
fn synthetic_cases(expected_0: &str) -> Vec<u8> {
    let mut s = String::from("{\"suite\":\"synthetic\",\"version\":\"1\",\"min_pass_rate\":0.5}\n");
    let mut esc = String::new();
    tinyrustlm::eval::push_json_string(&mut esc, expected_0).unwrap();
    s.push_str(&format!("{{\"id\":\"once\",\"prompt\":\"Once upon a time\",\"expected\":{esc},\"match\":\"exact\",\"max_tokens\":8}}\n"));
    s.push_str("{\"id\":\"wrong\",\"prompt\":\"Hello\",\"expected\":\"certainly not this\",\"max_tokens\":6}\n");
    s.push_str("{\"id\":\"prefix-empty\",\"prompt\":\"abc\",\"expected\":\"\",\"match\":\"prefix\",\"max_tokens\":4,\"stop\":[\"zz\"]}\n");
    s.into_bytes()
}

fn synthetic_text(rt: &mut harness::runtime::Runtime, prompt: &str, n: u32) -> String {
    rt.generate_all(prompt, n, GEN_PARSE_SPECIAL).unwrap().text
}

fn sidecar_of(package: &[u8], adapters: &[Vec<u8>], cases: &[u8]) -> Vec<u8> {
    let adapters: Vec<(PathBuf, Vec<u8>)> = adapters.iter().map(|b| (PathBuf::from("adapter"), b.clone())).collect();
    evidence::evaluate(module(), package, &adapters, cases).unwrap()
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("sidecar is not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

#[test]
fn synthetic_sidecar_is_deterministic_schema_ordered_and_judges_cases() {
    let package = good_package();
    let mut rt = runtime();
    rt.load_model(package, 0).unwrap();
    let once = synthetic_text(&mut rt, "Once upon a time", 8);
    let cases = synthetic_cases(&once);
    let a = sidecar_of(package, &[], &cases);
    let b = sidecar_of(package, &[], &cases);
    assert_eq!(a, b, "two runs must give byte-identical sidecars");
    // The same instance, reused, also reproduces it (a reset between cases, nothing carried over).
    assert_eq!(rt.run_eval(&cases).unwrap(), a);
    assert_eq!(rt.run_eval(&cases).unwrap(), a);

    let text = String::from_utf8(a.clone()).unwrap();
    let keys = [
        "\"schema\"",
        "\"evaluator\"",
        "\"runtime_build\"",
        "\"source\"",
        "\"model\"",
        "\"adapters\"",
        "\"assembly_state_crc\"",
        "\"suite\"",
        "\"decoding\"",
        "\"cases\"",
        "\"totals\"",
        "\"quality_boundary\"",
    ];
    let at: Vec<usize> = keys.iter().map(|k| text.find(k).unwrap_or_else(|| panic!("sidecar lacks {k}"))).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "top-level keys out of canonical order: {at:?}");
    let v = json(&a);
    assert_eq!(v["schema"], "tinyrustlm-eval-sidecar/1");
    assert_eq!(v["evaluator"]["name"], "tinyrustlm-eval");
    assert_eq!(v["source"], "wasm");
    assert_eq!(v["suite"]["cases_crc"], format!("{:08x}", crc32fast::hash(&cases)));
    assert_eq!(v["model"]["artifact_crc"], format!("{:08x}", tinyrustlm::format::parse(package).unwrap().artifact_crc));
    assert_eq!(v["assembly_state_crc"], format!("{:08x}", diagnostics(&mut rt).assembly_state_crc));
    let c = v["cases"].as_array().unwrap();
    assert_eq!((c[0]["id"].as_str(), c[0]["passed"].as_bool(), c[0]["produced"].as_str()), (Some("once"), Some(true), Some(once.as_str())));
    assert_eq!(c[1]["passed"], false, "a deliberately wrong expected output must fail");
    assert_eq!(c[2]["passed"], true, "an empty prefix matches anything");
    assert_eq!(v["totals"], serde_json::json!({ "cases": 3, "passed": 2, "failed": 1 }));
    assert_eq!(v["quality_boundary"]["met"], true);
    // The literal is echoed as written.
    assert!(text.contains("\"min_pass_rate\":0.5,"));
}

#[test]
fn eval_restores_sampling_and_stop_strings() {
    let mut rt = runtime();
    rt.load_model(good_package(), 0).unwrap();
    let cases = synthetic_cases("x");
    rt.add_stop_string("q").unwrap();
    let hot = harness::runtime::Sampling { temperature: 0.9, top_k: 5, top_p: 0.9, min_p: 0.0, repetition_penalty: 1.0, repetition_window: 64, seed: 7 };
    rt.set_sampling(&hot).unwrap();
    let before = synthetic_text(&mut rt, PROMPT, 12);
    rt.run_eval(&cases).unwrap();
    let after = synthetic_text(&mut rt, PROMPT, 12);
    assert_eq!(before, after, "the host's sampling settings and stop strings must survive an eval run");
    // And the eval itself ignored them: a fresh instance with default settings agrees.
    assert_eq!(rt.run_eval(&cases).unwrap(), sidecar_of(good_package(), &[], &cases));
}

#[test]
fn malformed_case_files_are_rejected_with_specific_statuses_and_change_nothing() {
    let mut rt = runtime();
    rt.load_model(good_package(), 0).unwrap();
    let good = synthetic_cases("x");
    let first_sidecar = rt.run_eval(&good).unwrap();
    rt.generate_all(PROMPT, 4, 0).unwrap();
    let d0 = diagnostics(&mut rt);
    let h = "{\"suite\":\"s\",\"version\":\"1\",\"min_pass_rate\":1}\n";
    let case = "{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"e\",\"max_tokens\":4}";
    let cases: Vec<(&str, String, Status, &str)> = vec![
        ("empty file", String::new(), Status::EvalBadHeader, "header"),
        ("header lacks min_pass_rate", "{\"suite\":\"s\",\"version\":\"1\"}\n".into(), Status::EvalBadHeader, "min_pass_rate"),
        ("min_pass_rate above 1", "{\"suite\":\"s\",\"version\":\"1\",\"min_pass_rate\":2}\n".into(), Status::EvalBadHeader, "min_pass_rate"),
        ("no cases", h.into(), Status::EvalNoCases, "cases"),
        ("truncated JSON", format!("{h}{{\"id\":\"a\",\n"), Status::EvalBadJson, "line 2"),
        ("not an object", format!("{h}[1,2]\n"), Status::EvalBadJson, "line 2"),
        (
            "unknown key",
            format!("{h}{{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"e\",\"max_tokens\":4,\"temperature\":1}}\n"),
            Status::EvalUnknownField,
            "temperature",
        ),
        ("duplicate key", format!("{h}{{\"id\":\"a\",\"id\":\"b\"}}\n"), Status::EvalDuplicateField, "id"),
        ("duplicate id", format!("{h}{case}\n{case}\n"), Status::EvalDuplicateId, "line 3"),
        (
            "bad match rule",
            format!("{h}{{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"e\",\"max_tokens\":4,\"match\":\"regex\"}}\n"),
            Status::EvalBadMatchRule,
            "regex",
        ),
        ("max_tokens missing", format!("{h}{{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"e\"}}\n"), Status::EvalBadCase, "max_tokens"),
        ("max_tokens zero", format!("{h}{{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"e\",\"max_tokens\":0}}\n"), Status::EvalBadCase, "max_tokens"),
        (
            "chat not a bool",
            format!("{h}{{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"e\",\"max_tokens\":4,\"chat\":\"yes\"}}\n"),
            Status::EvalBadCase,
            "chat",
        ),
        (
            "nine stop strings",
            format!(
                "{h}{{\"id\":\"a\",\"prompt\":\"p\",\"expected\":\"e\",\"max_tokens\":4,\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]}}\n"
            ),
            Status::EvalLimitExceeded,
            "stop",
        ),
        (
            "id too long",
            format!("{h}{{\"id\":\"{}\",\"prompt\":\"p\",\"expected\":\"e\",\"max_tokens\":4}}\n", "i".repeat(65)),
            Status::EvalLimitExceeded,
            "id",
        ),
        ("bad escape", format!("{h}{{\"id\":\"a\\q\"}}\n"), Status::EvalBadJson, "line 2"),
        ("raw control character", format!("{h}{{\"id\":\"\u{1}\"}}\n"), Status::EvalBadJson, "line 2"),
    ];
    let mut failures = Vec::new();
    for (what, bytes, want, field) in &cases {
        match rt.run_eval(bytes.as_bytes()) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let status = harness::runtime::status_of(&e);
                let msg = format!("{e:#}");
                if status != Some(want.code()) {
                    failures.push(format!("{what}: status {status:?}, expected {} — {msg}", want.name()));
                } else if !msg.contains(want.name()) || !msg.contains(field) {
                    failures.push(format!("{what}: error does not name {} and {field:?}: {msg}", want.name()));
                }
            }
        }
    }
    assert_no_failures("malformed case files", &failures);
    let d1 = diagnostics(&mut rt);
    assert_eq!(
        (d0.kv_len, d0.generated_tokens, d0.assembly_state_crc),
        (d1.kv_len, d1.generated_tokens, d1.assembly_state_crc),
        "a rejected case file changed the engine"
    );
    assert_eq!(rt.read_result(harness::runtime::result_kind::EVAL_SIDECAR).unwrap(), first_sidecar, "a rejected run replaced the last sidecar");
    // Without a model: WRONG_STATE. With flags: INVALID_ARGUMENT.
    let mut empty = runtime();
    assert_eq!(harness::runtime::status_of(&empty.run_eval(&good).unwrap_err()), Some(Status::WrongState.code()));
    let ptr = rt.put(&good).unwrap();
    assert_eq!(rt.call_status("run_eval", (ptr, good.len() as u32, 1u32)).unwrap(), Status::InvalidArgument.code());
}

// ---- Packets and lineage (synthetic parent, one sparse adapter) ---------------------------------

struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("trl-evidence-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let package = good_package();
        let id = tinyrustlm::format::parse(package).unwrap().identity;
        let dim = shape(true).dim;
        let adapter = AdapterSpec {
            kind: Kind::Sparse,
            parent: id,
            scale: 1.0,
            targets: vec![TargetSpec { name: "output_norm.weight".into(), rows: 1, cols: dim, delta: Delta::Sparse(vec![(0, 0.5), (3, -0.75), (7, 1.5)]) }],
        };
        std::fs::write(dir.join("parent.slm"), package).unwrap();
        std::fs::write(dir.join("tweak.asp"), adapter.to_bytes()).unwrap();
        std::fs::write(dir.join("cases.jsonl"), synthetic_cases("x")).unwrap();
        Fixture { dir }
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn eval(&self, adapters: &[&str], out: &str) {
        let adapters: Vec<(PathBuf, Vec<u8>)> = adapters.iter().map(|a| (self.p(a), std::fs::read(self.p(a)).unwrap())).collect();
        let s = evidence::evaluate(module(), &std::fs::read(self.p("parent.slm")).unwrap(), &adapters, &std::fs::read(self.p("cases.jsonl")).unwrap()).unwrap();
        std::fs::write(self.p(out), s).unwrap();
    }

    /// Paths relative to the fixture folder, as `trl packet build` run there would store them.
    fn build(&self, adapters: &[&str], sidecar: &str) -> anyhow::Result<Value> {
        let rel = |s: &str| PathBuf::from(s);
        let args = BuildArgs {
            parent: rel("parent.slm"),
            adapter: adapters.iter().map(|a| rel(a)).collect(),
            eval: vec![rel(sidecar)],
            cases: vec![rel("cases.jsonl")],
            diagnostics: true,
            note: "test".into(),
            out: rel("unused.json"),
        };
        // build_packet reads files relative to the current directory, which tests must not change
        // (they run in parallel): build from absolute paths and store them relative afterwards.
        let abs = BuildArgs {
            parent: self.dir.join(&args.parent),
            adapter: args.adapter.iter().map(|a| self.dir.join(a)).collect(),
            eval: vec![self.dir.join(sidecar)],
            cases: vec![self.dir.join("cases.jsonl")],
            ..args
        };
        let mut v = evidence::build_packet(module(), &abs, "2026-01-01T00:00:00Z")?;
        let strip = |v: &mut Value| {
            if let Some(s) = v.as_str() {
                *v = Value::from(Path::new(s).strip_prefix(&self.dir).unwrap().to_string_lossy().into_owned());
            }
        };
        strip(&mut v["parent"]["path"]);
        for a in v["adapters"].as_array_mut().unwrap() {
            strip(&mut a["path"]);
        }
        for e in v["evals"].as_array_mut().unwrap() {
            strip(&mut e["sidecar"]);
            strip(&mut e["cases"]);
        }
        Ok(v)
    }
}

#[test]
fn packet_builds_verifies_and_names_tampered_files() {
    let f = Fixture::new("packet");
    f.eval(&[], "parent.sidecar.json");
    f.eval(&["tweak.asp"], "child.sidecar.json");
    let parent = f.build(&[], "parent.sidecar.json").unwrap();
    let child = f.build(&["tweak.asp"], "child.sidecar.json").unwrap();
    assert_eq!(child["chain"][0], parent["id"], "the child's chain starts at the parent assembly");
    assert_ne!(child["assembly_state_crc"], parent["assembly_state_crc"]);
    assert_eq!(child["evals"][0]["sidecar_sha256"], evidence::sha256_hex(&std::fs::read(f.p("child.sidecar.json")).unwrap()));
    for v in [&parent, &child] {
        assert!(evidence::verify_packet(module(), v, &f.dir).unwrap().is_empty(), "a fresh packet must verify");
    }

    // A sidecar from another adapter set is refused.
    let err = f.build(&["tweak.asp"], "parent.sidecar.json").unwrap_err().to_string();
    assert!(err.contains("refusing") && err.contains("adapters"), "{err}");
    let err = f.build(&[], "child.sidecar.json").unwrap_err().to_string();
    assert!(err.contains("assembly_state_crc"), "{err}");

    // Tampering with any referenced file names that file.
    for name in ["parent.slm", "tweak.asp", "child.sidecar.json", "cases.jsonl"] {
        let path = f.p(name);
        let original = std::fs::read(&path).unwrap();
        let mut bytes = original.clone();
        let at = bytes.len() - 3;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let diffs = evidence::verify_packet(module(), &child, &f.dir).unwrap();
        std::fs::write(&path, &original).unwrap();
        assert!(diffs.iter().any(|d| d.contains(name)), "tampering with {name} was not reported: {diffs:?}");
    }
    // A verdict edited in the packet is caught by the re-run.
    let mut forged = child.clone();
    forged["evals"][0]["passed"] = Value::from(3);
    let diffs = evidence::verify_packet(module(), &forged, &f.dir).unwrap();
    assert!(diffs.iter().any(|d| d.contains("passed")), "{diffs:?}");

    // Lineage: the parent with one child below it, in every format, and a rollback target.
    std::fs::write(f.p("parent.packet.json"), serde_json::to_string_pretty(&parent).unwrap()).unwrap();
    std::fs::write(f.p("child.packet.json"), serde_json::to_string_pretty(&child).unwrap()).unwrap();
    let nodes = evidence::read_lineage(&f.dir).unwrap();
    assert_eq!(nodes.len(), 2);
    let pid = parent["id"].as_str().unwrap();
    let cid = child["id"].as_str().unwrap();
    assert_eq!(nodes[cid].ancestor.as_deref(), Some(pid));
    assert_eq!(nodes[cid].adapters, ["tweak.asp"]);
    let text = evidence::render(&nodes, LineageFormat::Text);
    assert!(text.starts_with(pid) && text.contains(&format!("└── {cid} + tweak.asp")), "{text}");
    assert!(evidence::render(&nodes, LineageFormat::Dot).contains(&format!("\"{pid}\" -> \"{cid}\"")));
    assert!(evidence::render(&nodes, LineageFormat::Mermaid).contains(&format!("n{pid} --> n{cid}")));
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[test]
fn utc_timestamps() {
    assert_eq!(evidence::utc_timestamp(0), "1970-01-01T00:00:00Z");
    assert_eq!(evidence::utc_timestamp(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(evidence::utc_timestamp(1_767_225_599), "2025-12-31T23:59:59Z");
}

// ---- SmolLM2 sample suites ----------------------------------------------------------------------

fn models_dir() -> PathBuf {
    std::env::var("TRL_MODELS").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models"))
}

fn smollm2_q8_0() -> Vec<u8> {
    let path = models_dir().join("smollm2-135m-q8_0.slm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} — run `make model`", path.display()))
}

fn suite(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/evals").join(name)).unwrap()
}

/// (suite file, ids expected to pass). The others are the suite's known failures: they mark where
/// the quality boundary sits and a descendant that fixes them shows up in its sidecar.
const SMOLLM2_SUITES: [(&str, &[&str]); 3] =
    [("arithmetic.jsonl", &["add-2-2", "add-3-5", "mul-12-12"]), ("capitals.jsonl", &["japan", "germany", "australia"]), ("formatting.jsonl", &["upper"])];

#[test]
fn smollm2_sample_suites_are_deterministic_and_meet_their_boundaries() {
    let package = smollm2_q8_0();
    let mut failures = Vec::new();
    for (file, passing) in SMOLLM2_SUITES {
        let cases = suite(file);
        let a = sidecar_of(&package, &[], &cases);
        let b = sidecar_of(&package, &[], &cases);
        if a != b {
            failures.push(format!("{file}: two runs differ"));
        }
        let v = json(&a);
        let got: Vec<&str> = v["cases"].as_array().unwrap().iter().filter(|c| c["passed"] == true).map(|c| c["id"].as_str().unwrap()).collect();
        if got != passing {
            failures.push(format!("{file}: passing cases {got:?}, expected {passing:?}"));
        }
        if v["quality_boundary"]["met"] != true {
            failures.push(format!("{file}: quality boundary not met"));
        }
    }
    assert_no_failures("SmolLM2 suites", &failures);
}

#[test]
fn smollm2_eval_output_matches_plain_chat_generation_and_wrong_expectations_fail() {
    let package = smollm2_q8_0();
    let cases = suite("capitals.jsonl");
    let v = json(&sidecar_of(&package, &[], &cases));
    // The runner's chat wrapping is the CLI's: `trl generate --chat` gives the same text.
    let mut rt = runtime();
    rt.load_model(&package, 0).unwrap();
    let system = tinyrustlm::eval::DEFAULT_SYSTEM;
    let prompt = String::from_utf8(tinyrustlm::eval::chat_case_prompt(system, "What is the capital of Japan?").unwrap()).unwrap();
    let g = rt.generate_all(&prompt, 24, GEN_PARSE_SPECIAL).unwrap();
    assert_eq!(v["cases"][0]["produced"].as_str(), Some(g.text.as_str()));
    assert_eq!(v["cases"][0]["generated_tokens"].as_u64(), Some(g.tokens.len() as u64));

    // One deliberately wrong expectation flips exactly that case, and the boundary with it.
    let wrong = String::from_utf8(cases).unwrap().replace("The capital of Japan is Tokyo.", "The capital of Japan is Kyoto.");
    let w = json(&sidecar_of(&package, &[], wrong.as_bytes()));
    assert_eq!(w["cases"][0]["passed"], false);
    assert_eq!(w["totals"]["passed"], v["totals"]["passed"].as_u64().unwrap() - 1);
    assert_eq!(w["quality_boundary"]["met"], false, "2/5 is below the 0.6 boundary");
    assert_ne!(w["suite"]["cases_crc"], v["suite"]["cases_crc"]);
}

#[test]
fn header_defines_the_eval_statuses_and_result_kind() {
    let header = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../abi/tinyrustlm.h")).unwrap();
    let value = |define: &str| -> u32 {
        let line = header.lines().find(|l| l.starts_with(define) && l[define.len()..].starts_with(' ')).unwrap_or_else(|| panic!("header lacks {define}"));
        line[define.len()..].split_whitespace().next().unwrap().trim_end_matches('u').parse().unwrap()
    };
    for s in [
        Status::EvalBadJson,
        Status::EvalBadHeader,
        Status::EvalBadCase,
        Status::EvalUnknownField,
        Status::EvalDuplicateField,
        Status::EvalDuplicateId,
        Status::EvalBadMatchRule,
        Status::EvalLimitExceeded,
        Status::EvalNoCases,
    ] {
        assert_eq!(value(&format!("#define TRL_STATUS_{}", s.name())), s.code(), "{}", s.name());
    }
    assert_eq!(value("#define TRL_RESULT_EVAL_SIDECAR"), harness::runtime::result_kind::EVAL_SIDECAR);
    assert!(header.contains("trl_status run_eval(trl_ptr ptr, uint32_t len, uint32_t flags);"));
}
