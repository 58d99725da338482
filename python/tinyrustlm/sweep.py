"""Eval sweeps on Ray: every (adapter stack × eval suite) of a parent package as one Ray task.

    python -m tinyrustlm.sweep --parent models/smollm2-135m-q8_0.slm --adapters adapters/ \\
        --suite evals/capitals.jsonl --suite evals/arithmetic.jsonl --out sweep/ [--workers 2 | --address HOST:PORT]

Stacks: the parent alone, each adapter file of `--adapters` alone (`*.adp`, `*.asp`, `*.alr`, sorted by
name), and each `--stack a.asp+b.adp` (files of that folder, applied in that order). Each task
instantiates the module, loads the parent, applies its stack and runs one suite; the module, the
parent, the adapters and the case files travel through Ray's object store, so workers need no shared
path. The driver writes what tasks return, each file to a temporary name then renamed:

    OUT/sidecars/STACK.SUITE.json   the sidecar (the bytes `trl eval` writes)
    OUT/packets/STACK.json          the release packet (the bytes `trl packet build --root OUT` writes)
    OUT/lineage.txt                 `trl lineage OUT/packets`
    OUT/summary.json                verdicts, attempts, timings and cases per second of this run

Paths inside packets are relative to OUT, so `trl packet verify OUT/packets/X.json --root OUT`
re-runs them. A task whose worker dies or raises an OS error is retried by Ray (`--max-retries`); a
re-run skips every (stack, suite) whose sidecar already verifies (its schema, parent, adapters,
assembly state and case-file CRC match). `--serial` runs the same tasks one by one in this process,
without Ray.
"""

import argparse
import json
import os
import socket
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from . import evidence
from .model import Model, WasmModule, default_wasm_path

ADAPTER_SUFFIXES = (".adp", ".asp", ".alr")


@dataclass
class Stack:
    name: str
    adapters: list  # paths, in application order


@dataclass
class Suite:
    name: str
    path: Path


def _stacks(adapters_dir, stack_specs, include_parent):
    out = [Stack("parent", [])] if include_parent else []
    folder = Path(adapters_dir) if adapters_dir else None
    if folder is not None:
        for p in sorted(folder.iterdir()):
            if p.suffix in ADAPTER_SUFFIXES and p.is_file():
                out.append(Stack(p.stem, [p]))
    for spec in stack_specs:
        if folder is None:
            raise SystemExit(f"--stack {spec}: give --adapters DIR, the folder its files are in")
        files = [folder / part for part in spec.split("+")]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise SystemExit(f"--stack {spec}: no such adapter file(s): {', '.join(missing)}")
        out.append(Stack("+".join(f.stem for f in files), files))
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SystemExit(f"two stacks are named {dupes}: rename the adapter files")
    return out


def eval_task(wasm, parent, cases, label, attempts_dir, *adapters):
    """One (stack, suite): a fresh instance, the parent loaded, the adapters applied in order, the
    suite run. Returns the sidecar with the assembled model's diagnostics (read before the eval, as
    `trl packet build` reads them) and where and how long it ran."""
    pid, host = os.getpid(), socket.gethostname()
    if attempts_dir:
        # One file per attempt, written before any work: a retried task leaves two.
        Path(attempts_dir).mkdir(parents=True, exist_ok=True)
        evidence.write_atomic(Path(attempts_dir) / f"{label}.{pid}.{time.time_ns()}.json", json.dumps({"label": label, "pid": pid, "host": host}).encode())
    t0 = time.perf_counter()
    # Whole, as `trl eval` / `trl packet build` load it: the packet's diagnostics record then matches theirs.
    model = Model.load(parent, wasm=wasm, streamed=False)
    for a in adapters:
        model.apply_adapter(a)
    diagnostics = model.diagnostics()
    sidecar = model.evaluate(cases)
    return {"label": label, "sidecar": sidecar, "diagnostics": diagnostics, "pid": pid, "host": host, "seconds": time.perf_counter() - t0}


def _verified_sidecar(path, package, adapter_bytes, cases):
    """Whether an existing sidecar describes this assembly and case file (a re-run keeps it)."""
    try:
        v = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    if not isinstance(v, dict):
        return False
    crcs = [evidence.trailer_crc(b) for b in adapter_bytes]
    state = evidence.assembly_state(package, adapter_bytes)
    return not evidence.sidecar_mismatches(v, evidence.trailer_crc(package), crcs, state, zlib.crc32(cases))


class _RayRunner:
    def __init__(self, address, workers, max_retries):
        import ray

        self.ray = ray
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=workers, log_to_driver=False, include_dashboard=False)
        # Retried: a worker that died (killed, out of memory) and OS errors; not the module's own
        # refusals (a TinyRustLMError would be refused again).
        self.remote = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=[OSError, MemoryError])(eval_task)
        self.refs = {}

    def put(self, data):
        return self.ray.put(data)

    def run(self, jobs, on_done):
        pending = {self.remote.remote(*args): label for label, args in jobs}
        while pending:
            done, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in done:
                label = pending.pop(ref)
                try:
                    on_done(label, self.ray.get(ref), None)
                except self.ray.exceptions.RayError as e:
                    on_done(label, None, e)


class _SerialRunner:
    def put(self, data):
        return data

    def run(self, jobs, on_done):
        for label, args in jobs:
            try:
                result = eval_task(*args)
            except Exception as e:  # noqa: BLE001 — reported per item, the sweep goes on
                on_done(label, None, e)
            else:
                on_done(label, result, None)


def run(
    parent,
    suites,
    out,
    adapters_dir=None,
    stacks=(),
    include_parent=True,
    wasm=None,
    serial=False,
    address=None,
    workers=None,
    max_retries=3,
    created=None,
    diagnostics=False,
    note="",
    attempts_dir=None,
    log=print,
):
    """Runs a sweep (see the module's doc) and returns the summary dict it writes."""
    out = Path(out)
    parent = Path(parent)
    suites = [Suite(Path(s).stem, Path(s)) for s in suites]
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise SystemExit(f"two suites share a file name: {names}")
    stack_list = _stacks(adapters_dir, list(stacks), include_parent)
    wasm_bytes = Path(wasm or default_wasm_path()).read_bytes()
    WasmModule.open(wasm_bytes)  # refuses a module this package cannot run before any task starts
    package = parent.read_bytes()
    adapter_bytes = {p: p.read_bytes() for s in stack_list for p in s.adapters}
    case_bytes = {s.name: s.path.read_bytes() for s in suites}
    created = evidence.created_utc(created)

    runner = _SerialRunner() if serial else _RayRunner(address, workers, max_retries)
    wasm_ref, parent_ref = runner.put(wasm_bytes), runner.put(package)
    adapter_refs = {p: runner.put(b) for p, b in adapter_bytes.items()}
    case_refs = {name: runner.put(b) for name, b in case_bytes.items()}

    sidecar_path = lambda stack, suite: out / "sidecars" / f"{stack.name}.{suite.name}.json"  # noqa: E731
    jobs, skipped, items = [], [], {}
    for stack in stack_list:
        for suite in suites:
            label = f"{stack.name}.{suite.name}"
            items[label] = {"stack": stack.name, "suite": suite.name}
            if _verified_sidecar(sidecar_path(stack, suite), package, [adapter_bytes[p] for p in stack.adapters], case_bytes[suite.name]):
                skipped.append(label)
                items[label]["status"] = "skipped (sidecar verifies)"
                continue
            args = (wasm_ref, parent_ref, case_refs[suite.name], label, attempts_dir, *(adapter_refs[p] for p in stack.adapters))
            jobs.append((label, args))
    log(f"sweep: {len(stack_list)} stack(s) × {len(suites)} suite(s): {len(jobs)} to run, {len(skipped)} already verified")

    diag_of, failures = {}, {}
    t0 = time.perf_counter()
    n_cases_run = 0

    def on_done(label, result, error):
        nonlocal n_cases_run
        item = items[label]
        stack = next(s for s in stack_list if s.name == item["stack"])
        if error is not None:
            failures[label] = str(error)
            item["status"] = f"failed: {error}"
            log(f"  FAILED {label}: {error}")
            return
        want = evidence.assembly_state(package, [adapter_bytes[p] for p in stack.adapters])
        if result["diagnostics"]["assembly_state_crc"] != want:
            failures[label] = f"assembly state {result['diagnostics']['assembly_state_crc']:08x} ≠ expected {want:08x}"
            item["status"] = "failed: " + failures[label]
            return
        evidence.write_atomic(sidecar_path(stack, next(s for s in suites if s.name == item["suite"])), result["sidecar"])
        v = json.loads(result["sidecar"])
        n_cases_run += v["totals"]["cases"]
        diag_of.setdefault(stack.name, result["diagnostics"])
        item.update(status="ran", host=result["host"], pid=result["pid"], seconds=round(result["seconds"], 3))
        log(f"  {label}: {v['totals']['passed']}/{v['totals']['cases']} passed ({result['host']} pid {result['pid']}, {result['seconds']:.1f} s)")

    runner.run(jobs, on_done)
    wall = time.perf_counter() - t0

    # Packets: one per stack whose every suite has a sidecar that verifies.
    packets_dir = out / "packets"
    packets_dir.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(os.path.abspath(p), os.path.abspath(out))  # noqa: E731
    for stack in stack_list:
        labels = [f"{stack.name}.{s.name}" for s in suites]
        if any(label in failures for label in labels):
            continue
        record = None
        if diagnostics:
            record = diag_of.get(stack.name)
            if record is None:
                m = Model.load(package, wasm=wasm_bytes, streamed=False)
                for p in stack.adapters:
                    m.apply_adapter(adapter_bytes[p])
                record = m.diagnostics()
        packet = evidence.build_packet(
            out,
            rel(parent),
            [rel(p) for p in stack.adapters],
            [(f"sidecars/{stack.name}.{s.name}.json", rel(s.path)) for s in suites],
            evidence.assembly_state(package, [adapter_bytes[p] for p in stack.adapters]),
            created,
            note=note,
            diagnostics=record,
        )
        evidence.write_atomic(packets_dir / f"{stack.name}.json", evidence.packet_bytes(packet))
    lineage = evidence.render_lineage(evidence.read_lineage(packets_dir))
    evidence.write_atomic(out / "lineage.txt", lineage.encode())

    summary = {
        "parent": rel(parent),
        "stacks": [s.name for s in stack_list],
        "suites": [s.name for s in suites],
        "mode": "serial" if serial else "ray",
        "ran": len(jobs) - len(failures),
        "skipped": len(skipped),
        "failed": failures,
        "cases_run": n_cases_run,
        "wall_seconds": round(wall, 3),
        "cases_per_second": round(n_cases_run / wall, 3) if wall > 0 and n_cases_run else None,
        "items": items,
    }
    evidence.write_atomic(out / "summary.json", (json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())
    log(lineage.rstrip("\n"))
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tinyrustlm.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("--parent", required=True, help="the parent SLM1 package")
    ap.add_argument("--adapters", help="folder of adapters (*.adp, *.asp, *.alr): each one is a stack of its own")
    ap.add_argument("--stack", action="append", default=[], help="a stack of adapters of --adapters, in order: a.asp+b.adp (repeatable)")
    ap.add_argument("--no-parent", action="store_true", help="do not evaluate the parent alone")
    ap.add_argument("--suite", action="append", required=True, help="an eval case file (repeatable)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--wasm", help="the module to run (default: the one shipped in the package)")
    ap.add_argument("--address", help="an existing Ray cluster (ray.init(address=...)); default: a local one")
    ap.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: every core)")
    ap.add_argument("--serial", action="store_true", help="run every task in this process, without Ray")
    ap.add_argument("--max-retries", type=int, default=3, help="Ray retries of a task whose worker died")
    ap.add_argument("--created", help="created_utc of the packets (YYYY-MM-DDTHH:MM:SSZ; default SOURCE_DATE_EPOCH, else now)")
    ap.add_argument("--diagnostics", action="store_true", help="include the assembled model's diagnostics record in each packet")
    ap.add_argument("--note", default="", help="the packets' note")
    ap.add_argument("--attempts-dir", help="a folder every worker can write: one file per task attempt (label, PID, host)")
    a = ap.parse_args(argv)
    if a.created is not None and not _is_utc(a.created):
        ap.error(f"--created {a.created!r}: expected UTC as YYYY-MM-DDTHH:MM:SSZ")
    summary = run(
        a.parent,
        a.suite,
        a.out,
        adapters_dir=a.adapters,
        stacks=a.stack,
        include_parent=not a.no_parent,
        wasm=a.wasm,
        serial=a.serial,
        address=a.address,
        workers=a.workers,
        max_retries=a.max_retries,
        created=a.created,
        diagnostics=a.diagnostics,
        note=a.note,
        attempts_dir=a.attempts_dir,
    )
    rate = summary["cases_per_second"]
    print(f"ran {summary['ran']}, skipped {summary['skipped']}, failed {len(summary['failed'])}; {summary['cases_run']} cases in {summary['wall_seconds']} s" + (f" ({rate} cases/s)" if rate else ""))
    return 1 if summary["failed"] else 0


def _is_utc(s):
    import re

    return re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", s) is not None


if __name__ == "__main__":
    sys.exit(main())
