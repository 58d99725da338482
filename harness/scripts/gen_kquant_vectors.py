#!/usr/bin/env python3
"""Regenerates src/quant/kquant/testdata/dequant_vectors.bin: dequantization test vectors for the
shipped GGUF dtypes (f16, q5_0, q5_1, q4_K, q5_K, q6_K), computed by an independent implementation,
the `gguf` PyPI package's numpy dequantizer (`gguf.quants.dequantize`).

Blocks are random-but-valid (random quant bytes, finite f16 scales of mixed magnitudes including
zero, negative and subnormal ones) and, where the real Qwen2.5-Coder-0.5B Q4_K_M GGUF holds the
dtype (q5_0, q4_K, q6_K), real blocks read from it with `gguf.GGUFReader`.

    pip install gguf numpy
    python3 harness/scripts/gen_kquant_vectors.py [path/to/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf]

File format (little-endian): magic b"TRLQVEC1", u32 record count, then per record
u32 ggml_type, u32 source (0 random, 1 real file), u32 n_blocks, the n_blocks blocks' bytes, and
n_blocks * block_elems f32 expected values.
"""

import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "src", "quant", "kquant", "testdata",
                   "dequant_vectors.bin")
DEFAULT_GGUF = os.path.expanduser("~/.cache/tinyrustlm/gguf/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")

# (elements, bytes, offsets of the f16 fields) per block, from ggml-common.h.
LAYOUT = {
    T.F16: (1, 2, [0]),
    T.Q5_0: (32, 22, [0]),
    T.Q5_1: (32, 24, [0, 2]),
    T.Q4_K: (256, 144, [0, 2]),
    T.Q5_K: (256, 176, [0, 2]),
    T.Q6_K: (256, 210, [208]),
}

rng = np.random.default_rng(0x15_4b51)


def random_f16_scale(i):
    """Mostly normal magnitudes around 1e-2; every 7th zero, every 5th subnormal, some negative."""
    if i % 7 == 3:
        return np.float16(0.0)
    if i % 5 == 2:
        bits = np.uint16(rng.integers(1, 0x400))
        return np.array([bits], dtype=np.uint16).view(np.float16)[0]
    v = np.float16(rng.uniform(0.25, 4.0) * 10.0 ** rng.integers(-4, 1))
    return -v if i % 4 == 1 else v


def random_blocks(qtype, n_blocks):
    elems, nbytes, f16_fields = LAYOUT[qtype]
    data = rng.integers(0, 256, size=(n_blocks, nbytes), dtype=np.uint8)
    if qtype == T.F16:
        # Finite values of every magnitude, plus signed zeros, infinities and NaN.
        vals = (rng.standard_normal(n_blocks) * 10.0 ** rng.integers(-6, 5, n_blocks)).astype(np.float16)
        specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6e-8, -6e-8, 65504.0], dtype=np.float16)
        vals[: len(specials)] = specials
        return vals.view(np.uint8).reshape(n_blocks, 2)
    for b in range(n_blocks):
        for k, at in enumerate(f16_fields):
            s = random_f16_scale(b * len(f16_fields) + k)
            data[b, at:at + 2] = np.array([s], dtype=np.float16).view(np.uint8)
    return data


def real_blocks(reader, qtype, picks):
    """`picks` (tensor index among tensors of `qtype`, block index) pairs, as one array."""
    tensors = [t for t in reader.tensors if t.tensor_type == qtype]
    _, nbytes, _ = LAYOUT[qtype]
    out = []
    for ti, bi in picks:
        raw = np.asarray(tensors[ti].data).reshape(-1).view(np.uint8)
        bi = bi % (len(raw) // nbytes)
        out.append(raw[bi * nbytes:(bi + 1) * nbytes])
    return np.stack(out)


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF
    reader = GGUFReader(path)
    records = [
        (T.F16, 0, random_blocks(T.F16, 48)),
        (T.Q5_0, 0, random_blocks(T.Q5_0, 5)),
        (T.Q5_0, 1, real_blocks(reader, T.Q5_0, [(0, 0), (3, 1000), (10, 77), (40, 123457)])),
        (T.Q5_1, 0, random_blocks(T.Q5_1, 5)),
        (T.Q4_K, 0, random_blocks(T.Q4_K, 1)),
        (T.Q4_K, 1, real_blocks(reader, T.Q4_K, [(0, 0), (5, 999)])),
        (T.Q5_K, 0, random_blocks(T.Q5_K, 2)),
        (T.Q6_K, 0, random_blocks(T.Q6_K, 1)),
        (T.Q6_K, 1, real_blocks(reader, T.Q6_K, [(0, 0), (7, 4321)])),
    ]
    out = bytearray(b"TRLQVEC1")
    out += struct.pack("<I", len(records))
    for qtype, source, blocks in records:
        elems, nbytes, _ = LAYOUT[qtype]
        assert blocks.shape == (len(blocks), nbytes)
        expected = dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert expected.size == len(blocks) * elems
        out += struct.pack("<III", int(qtype), source, len(blocks))
        out += blocks.tobytes()
        out += expected.astype("<f4").tobytes()
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(out)
    print(f"wrote {len(out)} bytes, {len(records)} records to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
