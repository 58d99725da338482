//! `examples/` is what `trl examples` writes today, byte for byte, and every packet in it verifies.
//! When this fails after a runtime change, run `make examples` and review the diff.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use harness::evidence;
use serde_json::Value;

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn packets(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut out: Vec<(PathBuf, Value)> = std::fs::read_dir(dir.join("packets"))
        .unwrap_or_else(|e| panic!("{}/packets: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn checked_in_examples_are_what_the_generator_writes() {
    let diffs = harness::examples::check(module(), &examples_dir()).unwrap();
    assert!(diffs.is_empty(), "examples/ is stale — run `make examples` and review the diff:\n  {}", diffs.join("\n  "));
}

#[test]
fn checked_in_packets_verify_and_show_the_designed_lineage() {
    let dir = examples_dir();
    let all = packets(&dir);
    assert_eq!(all.len(), 5, "five example assemblies");
    for (path, v) in &all {
        let diffs = evidence::verify_packet(module(), v, &dir).unwrap();
        assert!(diffs.is_empty(), "{} does not verify:\n  {}", path.display(), diffs.join("\n  "));
    }
    // The shape of the DAG: parent → pong → pong+sum → pong+sum+greet, and parent → greet.
    let id = |name: &str| all.iter().find(|(p, _)| p.file_stem().unwrap() == name).map(|(_, v)| v["id"].as_str().unwrap().to_string()).unwrap();
    let nodes = evidence::read_lineage(&dir.join("packets")).unwrap();
    assert_eq!(nodes.len(), 5);
    assert_eq!(nodes[&id("parent")].ancestor, None);
    assert_eq!(nodes[&id("pong")].ancestor, Some(id("parent")));
    assert_eq!(nodes[&id("pong+sum")].ancestor, Some(id("pong")));
    assert_eq!(nodes[&id("pong+sum+greet")].ancestor, Some(id("pong+sum")));
    assert_eq!(nodes[&id("greet")].ancestor, Some(id("parent")));
    // A verdict changes along the lineage: the skills boundary is missed by the parent and met by
    // a descendant.
    let skills_met = |name: &str| all.iter().find(|(p, _)| p.file_stem().unwrap() == name).unwrap().1["evals"][0]["boundary_met"].clone();
    assert_eq!((skills_met("parent"), skills_met("pong"), skills_met("pong+sum")), (Value::from(false), Value::from(false), Value::from(true)));
}

#[test]
fn tampering_with_an_example_adapter_is_named_by_verify() {
    let src = examples_dir();
    let dir = std::env::temp_dir().join(format!("trl-examples-tamper-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["", "adapters", "evals", "sidecars"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                std::fs::copy(&p, dir.join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    let (_, packet) = packets(&src).into_iter().find(|(p, _)| p.file_stem().unwrap() == "pong+sum").unwrap();
    assert!(evidence::verify_packet(module(), &packet, &dir).unwrap().is_empty(), "the copy verifies before tampering");
    let path = dir.join("adapters/sum.asp");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let diffs = evidence::verify_packet(module(), &packet, &dir).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(diffs.iter().any(|d| d.contains("adapters/sum.asp") && d.contains("sha256")), "tampered adapter not named: {diffs:?}");
}
