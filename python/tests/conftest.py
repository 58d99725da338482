"""Fixtures shared by the Python package's tests: the repository's `trl` (the reference every output
is compared with, byte for byte), SmolLM2 q8_0, small eval suites, adapters made by `trl teach`, and
one local Ray instance with 2 CPUs. Nothing is skipped: a missing file fails the test that needs it
with the `make` target that makes it."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TRL = Path(os.environ.get("TRL", REPO / "target/release/trl"))
MODELS = Path(os.environ.get("TRL_MODELS", REPO / "models"))
WASM = REPO / "target/wasm32-unknown-unknown/wasm/tinyrustlm.wasm"
SMOLLM2 = MODELS / "smollm2-135m-q8_0.slm"
EVALS = REPO / "harness/tests/data/evals"


def need(path, how):
    assert Path(path).exists(), f"{path} is missing: {how}"
    return Path(path)


@pytest.fixture(scope="session")
def smollm2():
    return need(SMOLLM2, "make model")


@pytest.fixture(scope="session")
def trl():
    """Runs `trl` on one thread with the module this checkout built (the one the package ships)."""
    need(TRL, "make harness")
    need(WASM, "make wasm")

    def run(*args, cwd=None):
        cmd = [str(TRL), "--threads", "1", "--wasm", str(WASM), *map(str, args)]
        p = subprocess.run(cmd, cwd=cwd, capture_output=True)
        assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stderr.decode()}"
        return p.stdout

    return run


# Two small suites (one chat, one raw completion), so every task stays short.
CAPITAL_SUITE = (
    '{"suite":"py-capitals","version":"1","min_pass_rate":0.5}\n'
    '{"id":"france","prompt":"What is the capital of France?","chat":true,"expected":"The capital of France is Paris.","max_tokens":10}\n'
    '{"id":"italy","prompt":"What is the capital of Italy?","chat":true,"expected":"The capital of Italy is Rome.","max_tokens":10}\n'
)
RAW_SUITE = (
    '{"suite":"py-raw","version":"1","min_pass_rate":0.5}\n'
    '{"id":"paris","prompt":"The capital of France is","expected":" Paris","match":"prefix","max_tokens":3}\n'
    '{"id":"sum","prompt":"2 + 2 =","expected":" 4","match":"prefix","max_tokens":3,"stop":["\\n"]}\n'
)


@pytest.fixture(scope="session")
def suites(tmp_path_factory):
    d = tmp_path_factory.mktemp("suites")
    (d / "capitals.jsonl").write_text(CAPITAL_SUITE)
    (d / "raw.jsonl").write_text(RAW_SUITE)
    return [d / "capitals.jsonl", d / "raw.jsonl"]


@pytest.fixture(scope="session")
def adapters(tmp_path_factory, trl, smollm2):
    """Two real adapters for SmolLM2 made by `trl teach` (README "Adapters"): a sparse one that
    teaches the France case and a low-rank one that teaches Italy."""
    d = tmp_path_factory.mktemp("adapters")
    capitals = d / "teach.jsonl"
    capitals.write_text(CAPITAL_SUITE)  # few cases, so teaching takes seconds
    trl("teach", "--model", smollm2, "--cases", capitals, "--case", "france", "--kind", "sparse", "-o", d / "france.asp")
    trl("teach", "--model", smollm2, "--cases", capitals, "--case", "italy", "--kind", "lowrank", "-o", d / "italy.alr")
    return d


@pytest.fixture(scope="session")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# The (adapter stack × suite) grid the sweep tests run: the parent, each adapter, and both in order.
STACKS = {"parent": [], "france": ["france.asp"], "italy": ["italy.alr"], "france+italy": ["france.asp", "italy.alr"]}


@pytest.fixture(scope="session")
def trl_sidecars(tmp_path_factory, trl, smollm2, adapters, suites):
    """`trl eval`'s sidecar bytes for every (stack, suite) of STACKS: the reference."""
    d = tmp_path_factory.mktemp("trl-sidecars")
    out = {}
    for stack, files in STACKS.items():
        for cases in suites:
            path = d / f"{stack}.{cases.stem}.json"
            trl("eval", "--model", smollm2, *[x for f in files for x in ("--adapter", adapters / f)], "--cases", cases, "--out", path)
            out[(stack, cases.stem)] = path.read_bytes()
    return out
