#!/usr/bin/env python3
"""Regenerates src/quant/kquant/testdata/quant_vectors.bin: quantizer test vectors for q5_0, q5_1,
q4_K, q5_K and q6_K, produced by ggml's own C reference quantizers (`quantize_row_<type>_ref` in a
`libggml-base` shared library from a llama.cpp / ggml build), called through ctypes. The runtime's
Rust quantizers (`quant::quantize_row`) must reproduce these bytes exactly.

    python3 harness/scripts/gen_quant_vectors.py path/to/libggml-base.so

Inputs are deterministic (numpy's PCG64, seed 15): rows of mixed magnitudes, all-zero, constant,
one-signed, outlier and f16-subnormal-scale super-blocks, and exact-tie values.

File format (little-endian): magic b"TRLQQNT1", u32 record count, then per record u32 ggml_type,
u32 n_elements, n_elements f32 inputs, and the quantized bytes (n_elements / block_elems blocks).
"""

import ctypes
import os
import struct
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "src", "quant", "kquant", "testdata",
                   "quant_vectors.bin")
# ggml type id -> (C function, elements per block, bytes per block)
TYPES = {6: ("q5_0", 32, 22), 7: ("q5_1", 32, 24), 12: ("q4_K", 256, 144), 13: ("q5_K", 256, 176),
         14: ("q6_K", 256, 210)}


def inputs(rng, n):
    """n super-blocks (256 values each) of awkward data."""
    out = []
    for b in range(n):
        kind = b % 8
        scale = np.float32(2.0 ** rng.integers(-8, 4))
        x = (rng.standard_normal(256) * scale).astype(np.float32)
        if kind == 1:
            x[:] = 0
        elif kind == 2:
            x[:] = scale * np.float32(0.75)
        elif kind == 3:
            x = np.abs(x)
        elif kind == 4:
            x[rng.integers(0, 256)] = scale * 40
        elif kind == 5:
            x *= np.float32(1e-6)  # scales in the f16 subnormal range
        elif kind == 6:
            x = (np.round(x / scale * 4) * scale / 4).astype(np.float32)  # many exact ties
        elif kind == 7:
            x[: 128] = 0  # half a super-block empty
        out.append(x.astype(np.float32))
    return np.concatenate(out)


def main():
    lib = ctypes.CDLL(sys.argv[1])
    rng = np.random.default_rng(15)
    records = []
    for ty, (name, elems, nbytes) in TYPES.items():
        fn = getattr(lib, f"quantize_row_{name}_ref")
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        x = inputs(rng, 8)
        out = (ctypes.c_uint8 * (len(x) // elems * nbytes))()
        fn(x.ctypes.data, ctypes.addressof(out), len(x))
        records.append(struct.pack("<II", ty, len(x)) + x.tobytes() + bytes(out))
    with open(OUT, "wb") as f:
        f.write(b"TRLQQNT1" + struct.pack("<I", len(records)) + b"".join(records))
    print(f"wrote {len(records)} records to {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
