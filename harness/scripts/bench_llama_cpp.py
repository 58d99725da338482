#!/usr/bin/env python3
"""llama.cpp side of `trl bench`: load, prefill and decode timings as JSON, at --threads threads.

The shipped SmolLM2 GGUF is Q4_1; with --quant, other storage modes are made from it with llama.cpp's
own quantizer (cached in --cache as smollm2-135m-instruct-QUANT.gguf, the name scripts/fetch_models.py
gives the requantized files it checks, so `make bench` runs the very Q4_K_M file its package was
packed from). Without --quant the GGUF runs as given
(the Qwen2.5 Q4_K_M files). Prefill evaluates the whole prompt in one batch; decode feeds back greedy tokens one
at a time without stopping at end-of-generation, like `trl bench` does with IGNORE_EOG.
"""
import argparse, json, os, statistics, sys, time
import llama_cpp

# llama_ftype values (llama.h): ALL_F32, MOSTLY_Q8_0, MOSTLY_Q4_0, MOSTLY_Q4_1, MOSTLY_Q4_K_M,
# MOSTLY_Q6_K (as quantize_gguf.py has them).
FTYPES = {"f32": 0, "q8_0": 7, "q4_0": 2, "q4_1": 3, "q4_k_m": 15, "q6_k": 18}

ap = argparse.ArgumentParser()
ap.add_argument("--gguf", required=True)
ap.add_argument("--quant", choices=FTYPES, help="requantize the (Q4_1) --gguf to this storage mode first")
ap.add_argument("--cache", required=True)
ap.add_argument("--prompt", required=True)
ap.add_argument("--decode", type=int, default=128)
ap.add_argument("--runs", type=int, default=3)
ap.add_argument("--threads", type=int, default=1, help="n_threads and n_threads_batch")
a = ap.parse_args()

path = a.gguf
if a.quant is not None and a.quant != "q4_1":
    path = os.path.join(a.cache, f"smollm2-135m-instruct-{a.quant}.gguf")
    if not os.path.exists(path):
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = FTYPES[a.quant]
        params.allow_requantize = True
        params.nthread = 1
        rc = llama_cpp.llama_model_quantize(a.gguf.encode(), (path + ".partial").encode(), params)
        if rc != 0:
            sys.exit(f"llama_model_quantize failed: {rc}")
        os.rename(path + ".partial", path)

loads, prefills, decodes = [], [], []
n_prompt = 0
for _ in range(a.runs):
    t = time.perf_counter()
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=a.threads, n_threads_batch=a.threads, verbose=False)
    loads.append((time.perf_counter() - t) * 1000)
    tokens = llm.tokenize(a.prompt.encode(), add_bos=False, special=True)
    n_prompt = len(tokens)
    llm.reset()
    t = time.perf_counter()
    llm.eval(tokens)
    prefills.append(n_prompt / (time.perf_counter() - t))
    t = time.perf_counter()
    for _ in range(a.decode):
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
        llm.eval([tok])
    decodes.append(a.decode / (time.perf_counter() - t))
    del llm

print(json.dumps({
    "gguf": path, "prompt_tokens": n_prompt,
    "load_ms": statistics.median(loads),
    "prefill_tokens_per_s": statistics.median(prefills),
    "decode_tokens_per_s": statistics.median(decodes),
}))
