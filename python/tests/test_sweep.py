"""Sweeps: Ray with 2 workers, serially in one process, and `trl` write the same bytes; a worker
killed mid-task costs a retry; a re-run skips what verifies and redoes what does not."""

import json
import os
import signal
import threading
import time

import pytest

from tinyrustlm import sweep
from conftest import STACKS

CREATED = "2026-01-01T00:00:00Z"


def run_sweep(smollm2, adapters, suites, out, **kw):
    return sweep.run(
        smollm2, suites, out, adapters_dir=adapters, stacks=["france.asp+italy.alr"], created=CREATED, diagnostics=True, note="py sweep", log=lambda *a: None, **kw
    )


def files(folder):
    """Every file under a folder, relative path -> bytes (summary.json, with timings, left out)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "summary.json"}


@pytest.fixture(scope="session")
def serial_sweep(tmp_path_factory, smollm2, adapters, suites):
    out = tmp_path_factory.mktemp("sweeps") / "serial"
    summary = run_sweep(smollm2, adapters, suites, out, serial=True)
    assert summary["ran"] == len(STACKS) * len(suites) and not summary["failed"]
    return out


def test_sweep_matches_trl_eval_packet_and_lineage(serial_sweep, trl, trl_sidecars, suites):
    out = serial_sweep
    for (stack, suite), ref in trl_sidecars.items():
        assert (out / "sidecars" / f"{stack}.{suite}.json").read_bytes() == ref, f"{stack}.{suite}"
    for stack, adapter_files in STACKS.items():
        packet = out / "packets" / f"{stack}.json"
        v = json.loads(packet.read_bytes())
        args = ["packet", "build", "--root", out, "--parent", v["parent"]["path"]]
        args += [x for a in v["adapters"] for x in ("--adapter", a["path"])]
        args += [x for e in v["evals"] for x in ("--eval", e["sidecar"], "--cases", e["cases"])]
        ref = out / f"trl-{stack}.json"
        trl(*args, "--diagnostics", "--note", "py sweep", "--created", CREATED, "--out", ref)
        assert packet.read_bytes() == ref.read_bytes(), stack
        ref.unlink()
        assert [a["path"].rsplit("/", 1)[-1] for a in v["adapters"]] == adapter_files
    assert (out / "lineage.txt").read_bytes() == trl("lineage", out / "packets")
    # trl re-runs a packet's evals from its paths (relative to the output folder) and agrees.
    assert b"verified" in trl("packet", "verify", out / "packets" / "france+italy.json", "--root", out)


def test_ray_sweep_with_two_workers_equals_the_serial_one(ray_local, serial_sweep, smollm2, adapters, suites, tmp_path):
    summary = run_sweep(smollm2, adapters, suites, tmp_path / "ray")
    assert summary["mode"] == "ray" and summary["ran"] == len(STACKS) * len(suites) and not summary["failed"]
    assert len({item["pid"] for item in summary["items"].values()}) == 2, "both workers took tasks"
    assert files(tmp_path / "ray") == files(serial_sweep)


def test_a_killed_worker_costs_a_retry_not_a_result(ray_local, serial_sweep, smollm2, adapters, suites, tmp_path):
    out, attempts = tmp_path / "ray", tmp_path / "attempts"
    result = {}

    def sweep_in_background():
        try:
            result["summary"] = run_sweep(smollm2, adapters, suites, out, attempts_dir=attempts)
        except BaseException as e:  # reported by the test thread
            result["error"] = e

    t = threading.Thread(target=sweep_in_background)
    t.start()
    # A task writes its attempt file before it loads anything; loading and evaluating take seconds,
    # so the worker named in the first file is still inside that task when it is killed (checked:
    # its sidecar does not exist yet).
    # Attempt files are written then renamed: only whole ones have their final name.
    def attempt_files():
        return sorted(attempts.glob("[!.]*.json"), key=lambda p: p.stat().st_mtime_ns) if attempts.is_dir() else []

    while t.is_alive() and not attempt_files():
        time.sleep(0.005)
    first = json.loads(attempt_files()[0].read_bytes())
    assert not (out / "sidecars" / f"{first['label']}.json").exists(), "the task finished before it could be killed"
    os.kill(first["pid"], signal.SIGKILL)
    t.join()
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    assert not summary["failed"], summary["failed"]
    tries = [json.loads(p.read_bytes()) for p in attempt_files() if p.name.startswith(first["label"] + ".")]
    assert len(tries) >= 2 and first["pid"] in {t["pid"] for t in tries}, (first, sorted(p.name for p in attempts.iterdir()), summary["items"])
    assert summary["items"][first["label"]]["pid"] != first["pid"], "the result came from another worker"
    assert files(out) == files(serial_sweep), "a retried task wrote the same bytes; nothing is missing"
    assert not list(out.rglob("*.partial")), "no half-written file is left"


def test_rerun_skips_verified_sidecars_and_redoes_the_rest(serial_sweep, smollm2, adapters, suites, tmp_path):
    out = tmp_path / "again"
    for rel, data in files(serial_sweep).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    summary = run_sweep(smollm2, adapters, suites, out, serial=True)
    assert (summary["ran"], summary["skipped"]) == (0, len(STACKS) * len(suites))
    # A sidecar of another assembly (the parent's, put where France's belongs) does not verify.
    (out / "sidecars" / "france.raw.json").write_bytes((serial_sweep / "sidecars" / "parent.raw.json").read_bytes())
    (out / "sidecars" / "italy.capitals.json").write_bytes(b'{"schema": "truncated')
    summary = run_sweep(smollm2, adapters, suites, out, serial=True)
    assert (summary["ran"], summary["skipped"]) == (2, len(STACKS) * len(suites) - 2)
    assert {k for k, v in summary["items"].items() if v["status"] == "ran"} == {"france.raw", "italy.capitals"}
    assert files(out) == files(serial_sweep)


def test_sweep_command_line(smollm2, adapters, suites, tmp_path, capsys):
    code = sweep.main(["--parent", str(smollm2), "--no-parent", "--adapters", str(adapters), "--suite", str(suites[1]), "--out", str(tmp_path), "--serial", "--created", CREATED])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "sidecars").iterdir()) == ["france.raw.json", "italy.raw.json"]
    assert "ran 2, skipped 0, failed 0" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        sweep.main(["--parent", str(smollm2), "--suite", str(suites[1]), "--out", str(tmp_path), "--created", "yesterday"])
