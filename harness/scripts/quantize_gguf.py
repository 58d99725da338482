#!/usr/bin/env python3
"""Requantizes a GGUF with llama.cpp's own quantizer (llama-cpp-python's llama_model_quantize).

    PYTHONPATH=~/.cache/tinyrustlm/llama-cpp-python python3 harness/scripts/quantize_gguf.py \
        --gguf models/SmolLM2-135M-Instruct.Q4_1.gguf --quant q8_0 -o models/smollm2-135m-q8_0.gguf

The same route and parameters as bench_llama_cpp.py (single thread, allow_requantize, default
tensor-type choices), so the wllama side of `make bench-web` runs the files the native llama.cpp side
of `make bench` runs; scripts/fetch_models.py runs it to derive the k-quant SmolLM2 GGUFs, whose
SHA-256 it checks (for one llama.cpp build the output is the same bytes every time). Writes
OUT.partial first and renames it, so an interrupted run leaves no file.
"""
import argparse, os, sys

import llama_cpp

# llama_ftype values (llama.h, as llama-cpp-python 0.3.36 exports them): LLAMA_FTYPE_ALL_F32,
# MOSTLY_Q8_0, MOSTLY_Q4_0, MOSTLY_Q4_1, MOSTLY_Q4_K_M, MOSTLY_Q6_K.
FTYPES = {"f32": 0, "q8_0": 7, "q4_0": 2, "q4_1": 3, "q4_k_m": 15, "q6_k": 18}

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--gguf", required=True, help="source GGUF")
ap.add_argument("--quant", required=True, choices=FTYPES)
ap.add_argument("-o", "--out", required=True)
a = ap.parse_args()

if not os.path.isfile(a.gguf):
    sys.exit(f"error: {a.gguf} not found")
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = FTYPES[a.quant]
params.allow_requantize = True
params.nthread = 1
partial = a.out + ".partial"
rc = llama_cpp.llama_model_quantize(a.gguf.encode(), partial.encode(), params)
if rc != 0:
    if os.path.exists(partial):
        os.remove(partial)
    sys.exit(f"error: llama_model_quantize({a.gguf} -> {a.quant}) failed with status {rc}")
os.replace(partial, a.out)
print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")
