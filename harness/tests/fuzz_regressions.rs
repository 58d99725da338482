//! Replays the checked-in fuzz corpus (`tests/data/fuzz/<target>/`) on the stable toolchain through
//! the same checks the `cargo fuzz` targets run (`fuzz/src/`, included below): every file must be
//! accepted or rejected with a status, never panic or trap. `seed-*` files are the structure-aware
//! seeds (valid inputs built by the harness's writers) and must be accepted and current;
//! `reject-*` files break one rule each (SLM1 v2's) and must be refused with its status and be
//! current; `crash-*` files are inputs fuzzing once crashed on (README, "Fuzzing").

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod fuzz;

use fuzz::checks::Outcome;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz").join(target)
}

fn run(target: &str, data: &[u8]) -> Outcome {
    match target {
        "slm1" => fuzz::checks::slm1(data),
        "adp1" => fuzz::checks::adapter(*b"ADP1", data),
        "asp1" => fuzz::checks::adapter(*b"ASP1", data),
        "alr1" => fuzz::checks::adapter(*b"ALR1", data),
        "tokenizer" => fuzz::checks::tokenizer(data),
        "eval_cases" => fuzz::checks::eval_cases(data),
        "gguf" => fuzz::checks::gguf(data),
        "abi_sequence" => fuzz::abi_sequence::abi_sequence(data, &mut |_| {}),
        "ses1" => fuzz::checks::ses1(data),
        _ => panic!("no fuzz target {target}"),
    }
}

fn files(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Every file of every target replays without a panic or trap; the outcome of each is printed.
#[test]
fn checked_in_corpus_replays_without_a_crash() {
    let mut failures = Vec::new();
    let mut counts: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for &target in fuzz::seeds::TARGETS {
        for (name, data) in files(target) {
            match catch_unwind(AssertUnwindSafe(|| run(target, &data))) {
                Ok(outcome) => {
                    let c = counts.entry(target).or_default();
                    if outcome == Outcome::Accepted {
                        c.0 += 1
                    } else {
                        c.1 += 1
                    }
                    if name.starts_with("seed-") && outcome != Outcome::Accepted {
                        failures.push(format!("{target}/{name}: a seed must be accepted, got {outcome:?}"));
                    }
                    if let Some((_, _, status)) = fuzz::seeds::rejections(target).into_iter().find(|(n, _, _)| *n == name) {
                        if outcome != Outcome::Rejected(status.code()) {
                            failures.push(format!("{target}/{name}: must be rejected with {status:?} ({}), got {outcome:?}", status.code()));
                        }
                    } else if name.starts_with("reject-") {
                        failures.push(format!("{target}/{name}: no rule builds this reject- file"));
                    }
                }
                Err(_) => failures.push(format!("{target}/{name}: panicked (message above)")),
            }
        }
    }
    for (target, (accepted, rejected)) in &counts {
        println!("{target}: {accepted} accepted, {rejected} rejected");
    }
    assert!(failures.is_empty(), "fuzz corpus failures:\n{}", failures.join("\n"));
}

/// The checked-in seeds and rejections are exactly what the builders write today
/// (`TRL_WRITE_FUZZ_SEEDS=1` rewrites them), so a format change cannot leave the fuzzers starting
/// from stale inputs.
#[test]
fn seeds_are_current() {
    let write = std::env::var_os("TRL_WRITE_FUZZ_SEEDS").is_some();
    let mut stale = Vec::new();
    for &target in fuzz::seeds::TARGETS {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        let mut want = fuzz::seeds::seeds(target);
        want.extend(fuzz::seeds::rejections(target).into_iter().map(|(name, bytes, _)| (name, bytes)));
        let have: BTreeMap<String, Vec<u8>> = files(target).into_iter().filter(|(n, _)| n.starts_with("seed-") || n.starts_with("reject-")).collect();
        for (name, bytes) in &want {
            if have.get(name) != Some(bytes) {
                if write {
                    std::fs::write(dir.join(name), bytes).unwrap();
                } else {
                    stale.push(format!("{target}/{name}"));
                }
            }
        }
        for name in have.keys().filter(|n| !want.iter().any(|(w, _)| w == *n)) {
            if write {
                std::fs::remove_file(dir.join(name)).unwrap();
            } else {
                stale.push(format!("{target}/{name} (no longer built)"));
            }
        }
    }
    assert!(stale.is_empty(), "stale fuzz seeds (rerun with TRL_WRITE_FUZZ_SEEDS=1): {stale:?}");
}
