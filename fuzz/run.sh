#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a set time (README, "Fuzzing").
#
#   fuzz/run.sh SECONDS [TARGET...]      # all targets when none are named
#
# Each target starts from its working corpus (fuzz/corpus/<target>, kept between runs, not checked
# in) and the checked-in seeds and regressions (harness/tests/data/fuzz/<target>, read only). A
# crash stops that target, leaves the input in fuzz/artifacts/<target>/ and makes the script exit
# non-zero after the others have run. A table of executions per target is printed at the end and
# written to target/fuzz/summary.md.
#
# Toolchain: cargo-fuzz needs nightly; without a nightly toolchain the pinned one is used with
# RUSTC_BOOTSTRAP=1 (the sanitizer is off, `-s none`, so no nightly-only codegen is needed).
# FUZZ_TOOLCHAIN=+name forces one.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
all_targets=(slm1 adp1 asp1 alr1 tokenizer eval_cases gguf abi_sequence ses1)
targets=("${@:-${all_targets[@]}}")
[ $# -gt 0 ] || targets=("${all_targets[@]}")

if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz (once; into ~/.cargo/bin)"
    cargo install cargo-fuzz --locked
fi

cargo_fuzz=(cargo)
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    cargo_fuzz=(cargo "$FUZZ_TOOLCHAIN")
elif rustup run nightly rustc --version >/dev/null 2>&1; then
    cargo_fuzz=(cargo +nightly)
else
    echo "no nightly toolchain: building the fuzz targets with the pinned toolchain and RUSTC_BOOTSTRAP=1"
    export RUSTC_BOOTSTRAP=1
fi
# -s none: no sanitizer (the code under test is safe Rust; panics and traps are what we look for).
# -a: debug assertions and overflow checks on, so an arithmetic overflow is a crash, not a wrap.
# --codegen-units 16: cargo-fuzz's default of 1 makes the cold build (wasmtime and cranelift
# included, for the ABI target) several times slower for a small gain in executions per second.
# The build lives outside the checkout (FUZZ_TARGET_DIR) so a fresh clone on the same machine, as
# CI is, reuses the compiled dependencies.
target_dir=${FUZZ_TARGET_DIR:-$HOME/.cache/tinyrustlm/fuzz-target}
fuzz_flags=(-s none -a --codegen-units 16 --target-dir "$target_dir")

wasm=target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm
[ -f "$wasm" ] || { echo "error: $wasm is missing: run make wasm first" >&2; exit 1; }

start=$(date +%s)
"${cargo_fuzz[@]}" fuzz build "${fuzz_flags[@]}"
build_s=$(( $(date +%s) - start ))

mkdir -p target/fuzz/logs
summary=target/fuzz/summary.md
{
    echo "fuzz run: ${seconds} s per target, build ${build_s} s, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "| target | executions | exec/s | corpus | result |"
    echo "|---|---|---|---|---|"
} > "$summary"

# FUZZ_SMOKE_RUNS=N (make fuzz-smoke): a reproducible smoke run instead of open-ended fuzzing: a
# fixed seed, N executions, and a fresh working corpus grown only from the checked-in files, so the
# same build explores the same inputs on every machine and a passing smoke run stays passing. New
# crashes are what `make fuzz` is for.
smoke_args=()
failed=()
for t in "${targets[@]}"; do
    working="fuzz/corpus/$t"
    if [ -n "${FUZZ_SMOKE_RUNS:-}" ]; then
        working="target/fuzz/smoke-corpus/$t"
        rm -rf "$working"
        smoke_args=(-seed=1 -runs="$FUZZ_SMOKE_RUNS")
    fi
    mkdir -p "$working" "fuzz/artifacts/$t"
    log=target/fuzz/logs/$t.log
    echo "== $t (${seconds} s${FUZZ_SMOKE_RUNS:+, at most $FUZZ_SMOKE_RUNS runs, seed 1})"
    set +e
    "${cargo_fuzz[@]}" fuzz run "${fuzz_flags[@]}" "$t" "$working" "harness/tests/data/fuzz/$t" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 "${smoke_args[@]}" \
        >"$log" 2>&1
    rc=$?
    set -e
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    corpus=$(find "$working" -type f | wc -l)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="CRASH (exit $rc): $(ls -t "fuzz/artifacts/$t" | head -1)"
        failed+=("$t")
        grep -m1 -B2 -A25 "panicked at\|ERROR: libFuzzer\|==ERROR" "$log" || tail -40 "$log"
    fi
    echo "| $t | ${execs:-?} | ${rate:-?} | $corpus | $result |" | tee -a "$summary"
done

echo
cat "$summary"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found crashes in: ${failed[*]} (inputs in fuzz/artifacts/; add each to harness/tests/data/fuzz/<target>/ as crash-<name>)" >&2
    exit 1
fi
