"""Release packets and lineage, as `trl packet build` and `trl lineage` make them
(`harness/src/evidence.rs`; schema `tinyrustlm-release-packet/1` in abi/FORMAT.md). A packet built
here from the same files, with the same `created_utc`, is the same bytes as `trl packet build`'s."""

import hashlib
import json
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

from . import _json

PACKET_SCHEMA = "tinyrustlm-release-packet/1"
SIDECAR_SCHEMA = "tinyrustlm-eval-sidecar/1"


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def assembly_id(parent_sha, adapter_shas):
    """The first 16 hex digits of SHA-256 over `parent_sha/adapter_sha/...`."""
    return sha256_hex("/".join([parent_sha, *adapter_shas]).encode())[:16]


def trailer_crc(data):
    """An SLM1 package's artifact CRC32 or an adapter's digest: the last 4 bytes, little-endian."""
    return struct.unpack("<I", data[-4:])[0] if len(data) >= 4 else 0


def package_identity(package):
    """The 24 identity bytes of an SLM1 header (FORMAT.md "Stacking"): n_params u64,
    tensor_layout_crc, tokenizer_crc, flags, n_tensors (u32 each, little-endian)."""
    if len(package) < 128 or package[:4] != b"SLM1":
        raise ValueError("not an SLM1 package (magic or length)")
    (flags,) = struct.unpack_from("<I", package, 12)
    (n_params,) = struct.unpack_from("<Q", package, 56)
    n_tensors, tokenizer_crc, tensor_layout_crc = struct.unpack_from("<III", package, 64)
    return struct.pack("<QIIII", n_params, tensor_layout_crc, tokenizer_crc, flags, n_tensors)


def assembly_state(package, adapters):
    """The assembly-state CRC the module reports after applying `adapters` (bytes, in order) to
    `package`: state_0 = crc32(identity), state_k = crc32(u32le(state_{k-1}) ++ u32le(digest_k))."""
    state = zlib.crc32(package_identity(package))
    for a in adapters:
        state = zlib.crc32(struct.pack("<II", state, trailer_crc(a)))
    return state


def sidecar_mismatches(sidecar, artifact_crc, adapter_crcs, assembly_state_crc, cases_crc):
    """What in a sidecar (parsed JSON) does not describe this assembly and case file (empty: it does)."""
    hx = "{:08x}".format
    out = []
    if sidecar.get("schema") != SIDECAR_SCHEMA:
        out.append(f"schema is {sidecar.get('schema')!r}, expected {SIDECAR_SCHEMA}")
    if (sidecar.get("model") or {}).get("artifact_crc") != hx(artifact_crc):
        out.append(f"model artifact_crc {(sidecar.get('model') or {}).get('artifact_crc')!r} ≠ parent's {hx(artifact_crc)}")
    if sidecar.get("adapters") != [hx(c) for c in adapter_crcs]:
        out.append(f"adapters {sidecar.get('adapters')!r} ≠ applied {[hx(c) for c in adapter_crcs]}")
    if sidecar.get("assembly_state_crc") != hx(assembly_state_crc):
        out.append(f"assembly_state_crc {sidecar.get('assembly_state_crc')!r} ≠ assembled {hx(assembly_state_crc)}")
    if (sidecar.get("suite") or {}).get("cases_crc") != hx(cases_crc):
        out.append(f"cases_crc {(sidecar.get('suite') or {}).get('cases_crc')!r} ≠ case file's {hx(cases_crc)}")
    return out


def utc_timestamp(secs):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(secs))


def created_utc(given=None):
    """`created_utc` as `trl packet build` chooses it: the given text, else `SOURCE_DATE_EPOCH`, else now."""
    if given is not None:
        return given
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        return utc_timestamp(int(epoch.strip()))
    return utc_timestamp(int(time.time()))


def _path_str(p):
    return str(p).replace("\\", "/")


def build_packet(root, parent, adapters, evals, assembly_state_crc, created, note="", diagnostics=None):
    """The packet value. `parent`, `adapters` and each `(sidecar, cases)` of `evals` are paths as
    they are to be stored, read relative to `root`; `assembly_state_crc` is the assembled model's
    (from its diagnostics); `diagnostics` is the record to include, or None. Refuses a sidecar that
    does not describe this assembly, as `trl packet build` does."""
    root = Path(root)
    package = (root / parent).read_bytes()
    adapter_bytes = [(root / a).read_bytes() for a in adapters]
    artifact_crc = trailer_crc(package)
    adapter_crcs = [trailer_crc(b) for b in adapter_bytes]
    parent_sha = sha256_hex(package)
    adapter_shas = [sha256_hex(b) for b in adapter_bytes]
    chain = [assembly_id(parent_sha, adapter_shas[:k]) for k in range(len(adapter_shas) + 1)]
    entries = []
    for sidecar_path, cases_path in evals:
        data = (root / sidecar_path).read_bytes()
        cases = (root / cases_path).read_bytes()
        v = json.loads(data)
        bad = sidecar_mismatches(v, artifact_crc, adapter_crcs, assembly_state_crc, zlib.crc32(cases))
        if bad:
            raise ValueError(f"refusing to build: {sidecar_path} does not match this assembly:\n  " + "\n  ".join(bad))
        entries.append(
            {
                "sidecar": _path_str(sidecar_path),
                "sidecar_sha256": sha256_hex(data),
                "cases": _path_str(cases_path),
                "cases_sha256": sha256_hex(cases),
                "suite": v["suite"]["name"],
                "suite_version": v["suite"]["version"],
                "passed": v["totals"]["passed"],
                "n_cases": v["totals"]["cases"],
                "boundary_met": v["quality_boundary"]["met"],
            }
        )
    return {
        "schema": PACKET_SCHEMA,
        "id": chain[-1],
        "chain": chain,
        "parent": {"path": _path_str(parent), "sha256": parent_sha, "artifact_crc": f"{artifact_crc:08x}"},
        "adapters": [{"path": _path_str(p), "sha256": s, "crc32": f"{c:08x}"} for p, s, c in zip(adapters, adapter_shas, adapter_crcs)],
        "assembly_state_crc": f"{assembly_state_crc:08x}",
        "evals": entries,
        "diagnostics": diagnostics,
        "created_utc": created,
        "note": note,
    }


def packet_bytes(packet):
    """The file `trl packet build` writes: pretty JSON (2 spaces, keys sorted) and a newline."""
    return (_json.dumps(packet, indent=2) + "\n").encode()


def write_atomic(path, data):
    """Writes `data` to a temporary file beside `path`, then renames it over `path`: a reader (or a
    re-run after a crash) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---- lineage ------------------------------------------------------------------------------------


def read_lineage(folder):
    """The assemblies of a folder of packets: id -> node (`ancestor`, `parent`, `adapters`,
    `verdicts`, `has_packet`), as `trl lineage` reads them."""
    nodes = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix != ".json":
            continue
        try:
            v = json.loads(path.read_bytes())
        except ValueError:
            continue
        if not isinstance(v, dict) or v.get("schema") != PACKET_SCHEMA:
            continue
        chain = [c for c in v.get("chain") or [] if isinstance(c, str)]
        adapters = [a.get("path", "") for a in v.get("adapters") or []]
        if len(chain) != len(adapters) + 1:
            raise ValueError(f"{path}: chain has {len(chain)} ids for {len(adapters)} adapters")
        for k, node_id in enumerate(chain):
            node = nodes.setdefault(node_id, {"ancestor": None, "parent": "", "adapters": [], "verdicts": [], "has_packet": False})
            node["ancestor"] = chain[k - 1] if k else None
            node["parent"] = v["parent"].get("path", "")
            node["adapters"] = adapters[:k]
            if k + 1 == len(chain):
                node["has_packet"] = True
                for e in v.get("evals") or []:
                    mark = " ✓" if e.get("boundary_met") is True else " ✗"
                    node["verdicts"].append(f"{e.get('suite', '')} {_json.dumps(e.get('passed'))}/{_json.dumps(e.get('n_cases'))}{mark}")
    return nodes


def _label(node_id, n):
    what = f"+ {n['adapters'][-1]}" if n["adapters"] else n["parent"]
    verdicts = f" [{', '.join(n['verdicts'])}]" if n["verdicts"] else ""
    return f"{node_id} {what}{verdicts}{'' if n['has_packet'] else ' (no packet)'}"


def render_lineage(nodes):
    """The tree as `trl lineage DIR` prints it (text format)."""
    children = {}
    for node_id in sorted(nodes):
        a = nodes[node_id]["ancestor"]
        if a is not None:
            children.setdefault(a, []).append(node_id)
    out = []

    def walk(node_id, prefix, last, root):
        if root:
            branch, nxt = "", ""
        elif last:
            branch, nxt = "└── ", prefix + "    "
        else:
            branch, nxt = "├── ", prefix + "│   "
        out.append(f"{prefix}{branch}{_label(node_id, nodes[node_id])}\n")
        kids = sorted(children.get(node_id, []))
        for i, k in enumerate(kids):
            walk(k, nxt, i + 1 == len(kids), False)

    for node_id in sorted(nodes):
        if nodes[node_id]["ancestor"] is None:
            walk(node_id, "", True, True)
    return "".join(out)
