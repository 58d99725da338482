//! `abi/sidecar.schema.json` and `abi/packet.schema.json` accept what the module and `trl packet
//! build` write (the example sidecars and packets, and a packet with diagnostics), reject a
//! sidecar or packet with a field missing, mistyped or malformed, and list the sidecar's keys in
//! FORMAT.md's canonical order.

mod common;

use std::path::PathBuf;

use common::*;
use harness::evidence::{self, BuildArgs};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn load(rel: &str) -> Value {
    let p = repo().join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn validator(rel: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&load(rel)).unwrap_or_else(|e| panic!("{rel} is not a valid JSON Schema: {e}"))
}

/// Every validation error as "instance path: message".
fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path().as_str())).collect()
}

fn files(sub: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(repo().join("examples").join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no examples/{sub}/*.json");
    out
}

#[test]
fn generated_sidecars_and_packets_match_their_schemas() {
    let sidecar_schema = validator("abi/sidecar.schema.json");
    let packet_schema = validator("abi/packet.schema.json");
    let mut failures = Vec::new();
    for p in files("sidecars") {
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        failures.extend(errors(&sidecar_schema, &v).into_iter().map(|e| format!("{}: {e}", p.display())));
    }
    for p in files("packets") {
        let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        failures.extend(errors(&packet_schema, &v).into_iter().map(|e| format!("{}: {e}", p.display())));
    }
    // A fresh sidecar from the module (not only the checked-in ones), with an adapter applied, and
    // a packet that carries the diagnostics record.
    let dir = repo().join("examples");
    let package = std::fs::read(dir.join("parent.slm")).unwrap();
    let adapter = (dir.join("adapters/sum.asp"), std::fs::read(dir.join("adapters/sum.asp")).unwrap());
    let fresh = evidence::evaluate(module(), &package, &[adapter], &std::fs::read(dir.join("evals/skills.jsonl")).unwrap()).unwrap();
    failures.extend(errors(&sidecar_schema, &serde_json::from_slice(&fresh).unwrap()).into_iter().map(|e| format!("fresh sidecar: {e}")));
    let args = BuildArgs {
        parent: "parent.slm".into(),
        adapter: vec!["adapters/pong.alr".into()],
        eval: vec!["sidecars/pong.skills.json".into()],
        cases: vec!["evals/skills.jsonl".into()],
        diagnostics: true,
        note: String::new(),
        out: PathBuf::new(),
    };
    let packet = evidence::build_packet_in(module(), &dir, &args, "2026-01-01T00:00:00Z").unwrap();
    assert!(packet["diagnostics"].is_object());
    failures.extend(errors(&packet_schema, &packet).into_iter().map(|e| format!("packet with diagnostics: {e}")));
    assert_no_failures("schema validation", &failures);
}

#[test]
fn sidecar_schema_lists_the_keys_in_canonical_order() {
    let schema = load("abi/sidecar.schema.json");
    let text = std::fs::read_to_string(files("sidecars")[0].clone()).unwrap();
    let mut last = 0;
    for key in schema["required"].as_array().unwrap() {
        let at = text.find(&format!("\"{}\":", key.as_str().unwrap())).unwrap_or_else(|| panic!("sidecar lacks {key}"));
        assert!(at >= last, "{key} is out of FORMAT.md's order in the schema's required list");
        last = at;
    }
    assert_eq!(schema["required"].as_array().unwrap().len(), schema["properties"].as_object().unwrap().len());
}

/// Applies `edit` to a copy of `valid` and expects the schema to reject it at `path`.
fn expect_rejected(v: &jsonschema::Validator, valid: &Value, what: &str, path: &str, edit: impl Fn(&mut Value)) -> Option<String> {
    let mut bad = valid.clone();
    edit(&mut bad);
    let errs = errors(v, &bad);
    if errs.is_empty() {
        Some(format!("{what}: accepted"))
    } else if !errs.iter().any(|e| e.starts_with(&format!("{path}:"))) {
        Some(format!("{what}: no error at {path}: {errs:?}"))
    } else {
        None
    }
}

#[test]
fn malformed_sidecars_and_packets_are_rejected_where_they_break() {
    let sidecar_schema = validator("abi/sidecar.schema.json");
    let packet_schema = validator("abi/packet.schema.json");
    let sidecar: Value = serde_json::from_slice(&std::fs::read(repo().join("examples/sidecars/pong+sum.skills.json")).unwrap()).unwrap();
    let packet: Value = load("examples/packets/pong+sum.json");
    assert!(errors(&sidecar_schema, &sidecar).is_empty() && errors(&packet_schema, &packet).is_empty());
    let remove = |key: &'static str| {
        move |v: &mut Value| {
            v.as_object_mut().unwrap().remove(key);
        }
    };
    let mut failures = Vec::new();
    let s = &sidecar_schema;
    failures.extend(expect_rejected(s, &sidecar, "sidecar without totals", "", remove("totals")));
    failures.extend(expect_rejected(s, &sidecar, "sidecar without assembly_state_crc", "", remove("assembly_state_crc")));
    failures.extend(expect_rejected(s, &sidecar, "passed as a string", "/cases/0/passed", |v| v["cases"][0]["passed"] = json!("yes")));
    failures.extend(expect_rejected(s, &sidecar, "case without produced", "/cases/1", |v| {
        v["cases"][1].as_object_mut().unwrap().remove("produced");
    }));
    failures.extend(expect_rejected(s, &sidecar, "upper-case CRC", "/model/artifact_crc", |v| v["model"]["artifact_crc"] = json!("ABCDEF01")));
    failures.extend(expect_rejected(s, &sidecar, "CRC as a number", "/adapters/0", |v| v["adapters"][0] = json!(12345)));
    failures.extend(expect_rejected(s, &sidecar, "unknown match rule", "/cases/0/match", |v| v["cases"][0]["match"] = json!("regex")));
    failures.extend(expect_rejected(s, &sidecar, "stop reason NONE", "/cases/0/stop_reason", |v| v["cases"][0]["stop_reason"] = json!(0)));
    failures.extend(expect_rejected(s, &sidecar, "min_pass_rate above 1", "/quality_boundary/min_pass_rate", |v| {
        v["quality_boundary"]["min_pass_rate"] = json!(1.5)
    }));
    failures.extend(expect_rejected(s, &sidecar, "a timestamp added", "", |v| v["created"] = json!("2026-01-01")));
    failures.extend(expect_rejected(s, &sidecar, "another schema", "/schema", |v| v["schema"] = json!("tinyrustlm-eval-sidecar/2")));
    let p = &packet_schema;
    failures.extend(expect_rejected(p, &packet, "packet without chain", "", remove("chain")));
    failures.extend(expect_rejected(p, &packet, "packet without diagnostics", "", remove("diagnostics")));
    failures.extend(expect_rejected(p, &packet, "15-digit id", "/id", |v| v["id"] = json!(&v["id"].as_str().unwrap()[1..])));
    failures.extend(expect_rejected(p, &packet, "short adapter sha256", "/adapters/0/sha256", |v| v["adapters"][0]["sha256"] = json!("abc")));
    failures.extend(expect_rejected(p, &packet, "passed as a string", "/evals/0/passed", |v| v["evals"][0]["passed"] = json!("2")));
    failures.extend(expect_rejected(p, &packet, "created_utc not UTC", "/created_utc", |v| v["created_utc"] = json!("2026-01-01 00:00:00")));
    failures.extend(expect_rejected(p, &packet, "diagnostics as a string", "/diagnostics", |v| v["diagnostics"] = json!("none")));
    failures.extend(expect_rejected(p, &packet, "parent without sha256", "/parent", |v| {
        v["parent"].as_object_mut().unwrap().remove("sha256");
    }));
    assert_no_failures("malformed sidecars and packets", &failures);
}
