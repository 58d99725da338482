"""`make bench-sweep`: cases per second of a Ray eval sweep (python -m tinyrustlm.sweep) on SmolLM2
with 1 and 2 local Ray workers, and serially in one process for reference.

The sweep is 8 adapters made by `trl teach` (the France and Italy capitals cases, sparse and
low-rank, at four margins; kept in OUT/adapters and reused) plus the parent, × the three sample
suites of harness/tests/data/evals: 9 stacks × 3 suites = 27 tasks, 135 cases. Each run starts a
fresh local Ray instance with that many CPUs and an empty output folder. Results are printed and
written to OUT/results.{json,md}.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITES = [REPO / "harness/tests/data/evals" / f"{n}.jsonl" for n in ("capitals", "arithmetic", "formatting")]
# (case taught, adapter kind, margin): eight distinct edits of SmolLM2's LM head.
ADAPTERS = [(case, kind, margin) for case in ("france", "italy") for kind in ("sparse", "lowrank") for margin in ("1.5", "3")]


def make_adapters(trl, wasm, model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for case, kind, margin in ADAPTERS:
        out = folder / f"{case}-{kind}-m{margin.replace('.', '_')}.{'asp' if kind == 'sparse' else 'alr'}"
        if out.exists():
            continue
        print(f"making {out.name} (trl teach)…", file=sys.stderr)
        subprocess.run(
            [trl, "--threads", "1", "--wasm", wasm, "teach", "--model", model, "--cases", SUITES[0], "--case", case, "--kind", kind, "--margin", margin, "-o", out],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / "models/smollm2-135m-q8_0.slm"))
    ap.add_argument("--trl", default=str(REPO / "target/release/trl"))
    ap.add_argument("--wasm", default=str(REPO / "target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm"))
    ap.add_argument("--workers", default="1,2", help="Ray worker counts to measure")
    ap.add_argument("--no-serial", action="store_true", help="skip the serial run")
    ap.add_argument("--out", default=str(REPO / "target/bench/sweep"))
    a = ap.parse_args()

    import ray

    from tinyrustlm import sweep

    out = Path(a.out)
    adapters = make_adapters(a.trl, a.wasm, a.model, out / "adapters")
    runs = [("serial", None)] if not a.no_serial else []
    runs += [("ray", int(n)) for n in a.workers.split(",")]
    results = []
    for mode, workers in runs:
        folder = out / f"run-{mode}{workers or ''}"
        shutil.rmtree(folder, ignore_errors=True)
        if mode == "ray":
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        label = "serial (1 process, no Ray)" if mode == "serial" else f"Ray, {workers} worker(s)"
        print(f"{label}…", file=sys.stderr)
        t0 = time.perf_counter()
        s = sweep.run(a.model, SUITES, folder, adapters_dir=adapters, serial=mode == "serial", wasm=a.wasm, created="2026-01-01T00:00:00Z", log=lambda *x: None)
        wall = time.perf_counter() - t0
        if mode == "ray":
            ray.shutdown()
        if s["failed"]:
            sys.exit(f"{label}: failed tasks {s['failed']}")
        results.append(
            {
                "mode": label,
                "workers": workers or 1,
                "tasks": s["ran"],
                "cases": s["cases_run"],
                "sweep_seconds": s["wall_seconds"],
                "cases_per_second": s["cases_per_second"],
                "seconds_with_startup": round(wall, 2),
            }
        )
        print(f"  {s['cases_run']} cases in {s['wall_seconds']:.1f} s: {s['cases_per_second']:.2f} cases/s", file=sys.stderr)
    # Every run must have written the same sidecars and packets.
    ref = None
    for mode, workers in runs:
        folder = out / f"run-{mode}{workers or ''}"
        files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != "summary.json"}
        if ref is not None and files != ref:
            sys.exit(f"{folder}: other bytes than the first run")
        ref = files

    base = next((r for r in results if r["mode"].startswith("Ray, 1")), results[0])
    load = os.getloadavg()
    md = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load[0]:.1f} at the end. Module: {Path(a.wasm).stat().st_size} bytes.",
        f"Sweep: {len(ADAPTERS)} adapters + parent × {len(SUITES)} suites = {results[0]['tasks']} tasks, {results[0]['cases']} cases (SmolLM2-135M q8_0).",
        "",
        "| run | cases | sweep s | cases/s | × Ray 1 worker | s incl. Ray start |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        md.append(
            f"| {r['mode']} | {r['cases']} | {r['sweep_seconds']:.1f} | {r['cases_per_second']:.2f} | {r['cases_per_second'] / base['cases_per_second']:.2f} | {r['seconds_with_startup']:.1f} |"
        )
    text = "\n".join(md) + "\n"
    (out / "results.json").write_text(json.dumps({"results": results, "load_average_end": load}, indent=2) + "\n")
    (out / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
