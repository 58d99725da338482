"""A TinyRustLM model in the `wasmtime` runtime: the module (one .wasm file, shipped in this package)
does all the work; this file copies bytes in, calls exports and reads results back, as
`harness/src/runtime.rs` and `abi/tinyrustlm.mjs` do for Rust and JavaScript."""

import hashlib
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import wasmtime

from . import _abi, _json
from .errors import CallError, ModuleError, error_for

# Bytes per `load_append` when a package is streamed in (as `trl` reads packages).
STREAM_CHUNK = 1 << 20

PACKAGED_WASM = Path(__file__).with_name("tinyrustlm.wasm")

_STOP_NAME = {code: name for name, code in _abi.STOP.items()}
_U32 = 1 << 32


def _i32(x):
    """A u32 as the signed i32 wasmtime takes."""
    x &= _U32 - 1
    return x - _U32 if x >= 1 << 31 else x


def _i64(x):
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


class WasmModule:
    """A compiled module file. Compiling costs about a second, so one is kept per file and process
    (`WasmModule.open`) and every `Model` instantiates it afresh: one instance per model."""

    _cache = {}
    _cache_lock = threading.Lock()

    def __init__(self, wasm_bytes, origin="<bytes>"):
        self.origin = origin
        self.sha256 = hashlib.sha256(wasm_bytes).hexdigest()
        self.engine = wasmtime.Engine()
        try:
            self.module = wasmtime.Module(self.engine, wasm_bytes)
        except wasmtime.WasmtimeError as e:
            raise ModuleError(f"{origin} is not a WebAssembly module wasmtime can compile: {e}") from e
        exports = {e.name: e.type for e in self.module.exports}
        missing = [n for n in _abi.EXPORTS if n not in exports]
        wrong = [n for n, arity in _abi.EXPORTS.items() if n in exports and (not isinstance(exports[n], wasmtime.FuncType) or len(exports[n].params) != arity)]
        if missing or wrong or _abi.EXPORTED_MEMORY not in exports:
            raise ModuleError(f"{origin} is not a TinyRustLM module: missing exports {missing}, other signatures {wrong}")
        imports = [(i.module, i.name) for i in self.module.imports]
        if any(i != (_abi.IMPORT_MODULE, "trl_now_ms") for i in imports):
            raise ModuleError(
                f"{origin} imports {imports}; this package runs the single-thread module, which imports only {_abi.IMPORT_MODULE}.trl_now_ms"
            )

    @classmethod
    def open(cls, wasm=None):
        """The module at `wasm` (a path or bytes; default the one shipped in this package), compiled
        once per process."""
        if isinstance(wasm, (bytes, bytearray)):
            key, data, origin = hashlib.sha256(wasm).hexdigest(), bytes(wasm), "<bytes>"
        else:
            path = Path(wasm) if wasm is not None else default_wasm_path()
            if not path.exists():
                raise ModuleError(f"module {path} not found (the package ships it: reinstall with `make python`)")
            data = path.read_bytes()
            key, origin = hashlib.sha256(data).hexdigest(), str(path)
        with cls._cache_lock:
            m = cls._cache.get(key)
            if m is None:
                m = cls._cache[key] = cls(data, origin)
        return m


class _Instance:
    """One instance: its store, exports and linear memory."""

    def __init__(self, module):
        self.store = wasmtime.Store(module.engine)
        start = time.perf_counter()
        linker = wasmtime.Linker(module.engine)
        linker.define_func(_abi.IMPORT_MODULE, "trl_now_ms", wasmtime.FuncType([], [wasmtime.ValType.f64()]), lambda: (time.perf_counter() - start) * 1000.0)
        instance = linker.instantiate(self.store, module.module)
        exports = instance.exports(self.store)
        self.memory = exports[_abi.EXPORTED_MEMORY]
        self.fn = {name: exports[name] for name in _abi.EXPORTS}
        version = self.call("abi_version")
        if version != _abi.ABI_VERSION:
            raise ModuleError(f"{module.origin} speaks ABI version {version}; this package speaks {_abi.ABI_VERSION}")

    def call(self, name, *args):
        """Calls an export; i32 results come back as u32."""
        r = self.fn[name](self.store, *args)
        return r & (_U32 - 1) if isinstance(r, int) else r

    def check(self, status, call):
        if status != 0:
            raise error_for(status, self.last_error(), call)

    def call_checked(self, name, *args):
        self.check(self.call(name, *args), name)

    def stream_load(self, total, read, context, flags, chunk=STREAM_CHUNK):
        """Streams `total` bytes, `read(offset, n)` giving each chunk, into the module. On any
        failure the module holds no stream and no model (`load_abort` ends one an I/O error left)."""
        if total > 0xFFFFFFFF:
            raise CallError(_abi.STATUS["INVALID_ARGUMENT"], f"a package of {total} bytes does not fit in wasm32 memory", "load_begin")
        status = self.call("load_begin", _i32(total), _i32(context), flags)
        if status != 0:
            raise error_for(status, self.last_error(), "load_begin")
        chunk = max(1, min(chunk, total or 1))
        scratch = self.alloc(chunk)
        try:
            offset = 0
            while offset < total:
                data = read(offset, min(chunk, total - offset))
                if not data:
                    raise OSError(f"the package ended {total - offset} bytes before its size said")
                self.write(scratch, data)
                status = self.call("load_append", _i32(scratch), _i32(len(data)))
                if status != 0:
                    raise error_for(status, self.last_error(), "load_append")
                offset += len(data)
            status = self.call("load_finish")
            if status != 0:
                raise error_for(status, self.last_error(), "load_finish")
        except BaseException:
            self.call("load_abort")  # WRONG_STATE when the module ended the stream already
            raise
        finally:
            self.free(scratch)

    def alloc(self, size):
        ptr = self.call("alloc", _i32(size))
        if ptr == 0:
            raise error_for(_abi.STATUS["OUT_OF_MEMORY"], self.last_error(), f"alloc({size})")
        return ptr

    def free(self, ptr):
        self.call_checked("dealloc", _i32(ptr))

    def write(self, ptr, data):
        if data:
            self.memory.write(self.store, data, ptr)

    def read(self, ptr, length):
        return bytes(self.memory.read(self.store, ptr, ptr + length))

    def put(self, data):
        """Copies bytes into a fresh buffer (at least 1 byte, so empty input has an address)."""
        ptr = self.alloc(max(len(data), 1))
        self.write(ptr, data)
        return ptr

    def with_input(self, name, data, *extra):
        ptr = self.put(data)
        try:
            status = self.call(name, _i32(ptr), _i32(len(data)), *(_i32(x) for x in extra))
        finally:
            self.free(ptr)
        self.check(status, name)

    def last_error(self):
        cap = _abi.MAX_ERROR_LEN * 4
        buf = self.call("alloc", cap + 4)
        if buf == 0:
            return "(the error text could not be read: alloc failed)"
        try:
            self.call("last_error", _i32(buf), cap, _i32(buf + cap))
            (length,) = struct.unpack("<I", self.read(buf + cap, 4))
            return self.read(buf, min(length, cap)).decode("utf-8", "replace")
        finally:
            self.call("dealloc", _i32(buf))

    def read_result(self, kind):
        cap = 4096
        while True:
            buf = self.alloc(cap + 4)
            try:
                status = self.call("read_result", kind, _i32(buf), cap, _i32(buf + cap))
                (length,) = struct.unpack("<I", self.read(buf + cap, 4))
                if status == _abi.STATUS["BUFFER_TOO_SMALL"] and length > cap:
                    cap = length
                    continue
                self.check(status, "read_result")
                return self.read(buf, min(length, cap))
            finally:
                self.free(buf)

    def read_u32s(self, kind):
        data = self.read_result(kind)
        return list(struct.unpack(f"<{len(data) // 4}I", data))


def parse_diagnostics(record):
    """The diagnostics record as a dict named as the header names it (as `trl generate --json`
    prints it: `layout_len` and reserved bytes left out, `model_loaded` a bool)."""
    if len(record) < _abi.DIAGNOSTICS_LEN:
        raise ValueError(f"diagnostics record is {len(record)} bytes, expected {_abi.DIAGNOSTICS_LEN}")
    out = {}
    for name, offset, ty in _abi.DIAGNOSTICS_FIELDS:
        if name == "layout_len" or name.startswith("reserved"):
            continue
        fmt = {"u32": "<I", "u64": "<Q", "f32": "<f"}[ty]
        (value,) = struct.unpack_from(fmt, record, offset)
        out[name] = bool(value) if name == "model_loaded" else value
    return out


@dataclass
class Generation:
    """The outcome of a generation, as `trl generate --json` reports it."""

    prompt_tokens: list
    tokens: list
    text: str
    stop_reason: int
    diagnostics: dict
    grammar: dict = None

    @property
    def stop(self):
        return _STOP_NAME.get(self.stop_reason, "?")

    def to_dict(self):
        return {
            "prompt_tokens": self.prompt_tokens,
            "tokens": self.tokens,
            "text": self.text,
            "stop_reason": self.stop_reason,
            "stop": self.stop,
            "diagnostics": self.diagnostics,
            "grammar": self.grammar,
        }

    def to_json(self):
        """The line `trl generate --json` prints for the same generation (without the newline)."""
        return _json.dumps(self.to_dict())


@dataclass
class Sampling:
    """`set_sampling`'s parameters with `trl generate`'s defaults (temperature 0 = greedy)."""

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_window: int = 64
    seed: int = 0


def _sampling(options):
    unknown = set(options) - set(Sampling.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown generation option(s) {sorted(unknown)}; sampling options are {list(Sampling.__dataclass_fields__)}")
    return Sampling(**options)


class Model:
    """A loaded package in its own module instance.

    >>> lm = Model.load("models/smollm2-135m-q8_0.slm")
    >>> lm.generate("The capital of France is", max_tokens=8).text
    """

    def __init__(self, instance, module):
        self._x = instance
        self.module = module

    @classmethod
    def load(cls, package, context=0, kv_f16=False, wasm=None, streamed=True):
        """Loads a package (a path or its bytes) into a fresh instance of the module; `context` 0 =
        the runtime's default. Raises `PackageError` (with the status) for a package it refuses.

        By default the package is streamed in 1 MiB chunks (`load_begin` / `load_append` /
        `load_finish`), as `trl generate` does: each chunk is verified as it arrives and a file is
        never read whole into Python's memory. `streamed=False` hands it over whole (`load_model`), as
        `trl eval` and `trl packet build` do. The two load the same model; only the module's memory
        figure in the diagnostics (`linear_memory_bytes`) tells them apart."""
        module = WasmModule.open(wasm)
        x = _Instance(module)
        flags = _abi.LOAD["KV_F16"] if kv_f16 else 0
        if not streamed:
            data = bytes(package) if isinstance(package, (bytes, bytearray, memoryview)) else Path(package).read_bytes()
            ptr = x.alloc(len(data))
            x.write(ptr, data)
            status = x.call("load_model", _i32(ptr), _i32(len(data)), _i32(context), flags)
            if status != 0:
                err = error_for(status, x.last_error(), "load_model")
                x.free(ptr)
                raise err
        elif isinstance(package, (bytes, bytearray, memoryview)):
            data = memoryview(package).cast("B")
            x.stream_load(len(data), lambda off, n: bytes(data[off : off + n]), context, flags)
        else:
            path = Path(package)
            with path.open("rb") as f:
                x.stream_load(path.stat().st_size, lambda off, n: f.read(n), context, flags)
        return cls(x, module)

    # ---- tokenizer and chat ----------------------------------------------------------------------

    def tokenize(self, text, parse_special=True):
        """Token ids of `text` (`trl tokenize`); `diagnostics()["unencodable_bytes"]` counts bytes no
        token covers."""
        self._x.with_input("tokenize", text.encode(), _abi.GEN["PARSE_SPECIAL"] if parse_special else 0)
        return self._x.read_u32s(_abi.RESULT["TOKENIZED"])

    def render_chat(self, messages, add_generation_prompt=True, continue_=False, no_default_system=False):
        """A conversation (`[{"role": ..., "content": ...}]`) in the package's chat template."""
        encoded = bytearray(struct.pack("<I", len(messages)))
        for m in messages:
            for part in (m["role"], m["content"]):
                b = part.encode()
                encoded += struct.pack("<I", len(b)) + b
        flags = (
            (_abi.CHAT["ADD_GENERATION_PROMPT"] if add_generation_prompt else 0)
            | (_abi.CHAT["CONTINUE"] if continue_ else 0)
            | (_abi.CHAT["NO_DEFAULT_SYSTEM"] if no_default_system else 0)
        )
        self._x.with_input("render_chat", bytes(encoded), flags)
        return self._x.read_result(_abi.RESULT["CHAT_PROMPT"]).decode()

    def _chat_prompt(self, prompt, system):
        if self.diagnostics()["chat_template"] == 0:
            raise ValueError("this model's package names no chat template; drop chat=True")
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": prompt}]
        return self.render_chat(messages)

    # ---- generation ------------------------------------------------------------------------------

    def _prepare(self, prompt, chat, system, stop, grammar, json_schema, sampling):
        if grammar is not None and json_schema is not None:
            raise ValueError("give grammar or json_schema, not both")
        s = _sampling(sampling)
        self._x.call_checked("set_sampling", s.temperature, _i32(s.top_k), s.top_p, s.min_p, s.repeat_penalty, _i32(s.repeat_window), _i64(s.seed))
        self._x.call_checked("clear_stop_strings")
        for text in [stop] if isinstance(stop, str) else stop:
            self._x.with_input("add_stop_string", text.encode())
        self._x.call_checked("clear_grammar")
        constraint = grammar if grammar is not None else json_schema
        if constraint is not None:
            data = constraint.encode() if isinstance(constraint, str) else bytes(constraint)
            self._x.with_input("set_grammar", data, _abi.GRAMMAR["JSON_SCHEMA"] if json_schema is not None else 0)
        return self._chat_prompt(prompt, system) if chat else prompt

    def _finish(self, text):
        state = self._x.read_u32s(_abi.RESULT["STATE"])
        stats = self._x.read_u32s(_abi.RESULT["GRAMMAR_STATS"])
        f32 = lambda w: struct.unpack("<f", struct.pack("<I", w))[0]  # noqa: E731
        grammar = None
        if stats[0]:
            grammar = {
                "constrained": True,
                "masked_steps": stats[1],
                "mask_cache_hits": stats[2],
                "mask_cache_entries": stats[3],
                "mask_ms": f32(stats[4]),
                "trie_nodes": stats[5],
                "trie_build_ms": f32(stats[6]),
                "grammar_rules": stats[7],
                "whole_mask_steps": stats[8],
            }
        return Generation(
            prompt_tokens=self._x.read_u32s(_abi.RESULT["PROMPT_TOKENS"]),
            tokens=self._x.read_u32s(_abi.RESULT["TOKENS"]),
            text=text,
            stop_reason=state[1],
            diagnostics=self.diagnostics(),
            grammar=grammar,
        )

    def _read_text(self):
        out = bytearray()
        while True:
            chunk = self._x.read_result(_abi.RESULT["TEXT"])
            if not chunk:
                return out.decode()
            out += chunk

    def generate(self, prompt, max_tokens=64, *, chat=False, system=None, stop=(), parse_special=True, grammar=None, json_schema=None, **sampling):
        """One whole generation with `trl generate`'s options (`temperature`, `top_k`, `top_p`,
        `min_p`, `repeat_penalty`, `repeat_window`, `seed`; `chat`/`system` wrap the prompt in the
        package's template; `stop` strings; a GBNF `grammar` or a `json_schema`). Returns a
        `Generation` whose `to_json()` is `trl generate --json`'s line."""
        text = self._prepare(prompt, chat, system, stop, grammar, json_schema, sampling)
        flags = _abi.GEN["PARSE_SPECIAL"] if parse_special else 0
        self._x.with_input("generate", text.encode(), max_tokens, flags)
        return self._finish(self._read_text())

    def stream(self, prompt, max_tokens=64, *, chat=False, system=None, stop=(), parse_special=True, grammar=None, json_schema=None, **sampling):
        """The same generation as `generate`, yielding text chunks as tokens are decoded (whole UTF-8
        characters). The iterator's `result` holds the `Generation` once it is exhausted."""
        return _Stream(self, self._prepare(prompt, chat, system, stop, grammar, json_schema, sampling), max_tokens, parse_special)

    def chat(self, messages, max_tokens=256, *, continue_=False, stop=(), grammar=None, json_schema=None, **sampling):
        """Answers a conversation (`[{"role": "user", "content": ...}, ...]`) rendered in the
        package's template. `continue_=True` adds `messages` to the conversation in the KV cache
        (after a previous `chat`), rendering only the new turns."""
        self._prepare("", False, None, stop, grammar, json_schema, sampling)
        prompt = self.render_chat(messages, continue_=continue_)
        flags = _abi.GEN["PARSE_SPECIAL"] | (_abi.GEN["CONTINUE"] if continue_ else 0)
        self._x.with_input("generate", prompt.encode(), max_tokens, flags)
        return self._finish(self._read_text())

    def reset(self):
        """Empties the KV cache (a new conversation)."""
        self._x.call_checked("reset")

    # ---- adapters --------------------------------------------------------------------------------

    @staticmethod
    def _bytes(adapter):
        return bytes(adapter) if isinstance(adapter, (bytes, bytearray, memoryview)) else Path(adapter).read_bytes()

    def validate_adapter(self, adapter):
        """Checks an adapter (path or bytes) against the model without applying it; raises
        `AdapterError` with the status when it would be refused."""
        self._x.with_input("validate_adapter_delta", self._bytes(adapter))

    def apply_adapter(self, adapter):
        """Applies an adapter on top of those applied (the KV cache is reset). On error nothing changed."""
        self._x.with_input("apply_adapter_delta", self._bytes(adapter))

    def remove_adapter(self):
        """Removes the newest adapter: the weights are bit for bit what they were before it."""
        self._x.call_checked("remove_last_adapter")

    def reset_adapters(self):
        """Removes every adapter: the parent's weights again."""
        self._x.call_checked("reset_adapters")

    # ---- evidence and diagnostics ----------------------------------------------------------------

    def evaluate(self, cases):
        """Runs an eval case file (path or bytes) in the module and returns the sidecar bytes, the
        same bytes `trl eval` writes for this assembly."""
        data = self._bytes(cases)
        self._x.with_input("run_eval", data, 0)
        return self._x.read_result(_abi.RESULT["EVAL_SIDECAR"])

    def diagnostics(self):
        """The diagnostics record (see `parse_diagnostics`)."""
        x = self._x
        buf = x.alloc(_abi.DIAGNOSTICS_LEN)
        try:
            status = x.call("read_diagnostics", _i32(buf), _abi.DIAGNOSTICS_LEN)
            record = x.read(buf, _abi.DIAGNOSTICS_LEN)
        finally:
            x.free(buf)
        x.check(status, "read_diagnostics")
        return parse_diagnostics(record)

    def logits(self):
        """The logits that chose the last generated token (or the prompt's last), f32 as floats."""
        data = self._x.read_result(_abi.RESULT["LOGITS"])
        return list(struct.unpack(f"<{len(data) // 4}f", data))


@dataclass
class _Stream:
    model: Model
    prompt: str
    max_tokens: int
    parse_special: bool
    result: Generation = None
    _chunks: list = field(default_factory=list)

    def __iter__(self):
        x = self.model._x
        x.with_input("generate_start", self.prompt.encode(), self.max_tokens, _abi.GEN["PARSE_SPECIAL"] if self.parse_special else 0)
        text = []
        while x.read_u32s(_abi.RESULT["STATE"])[0] == _abi.STATE["RUNNING"]:
            x.call_checked("generate_step", 1)
            chunk = self.model._read_text()
            if chunk:
                text.append(chunk)
                yield chunk
        tail = self.model._read_text()
        if tail:
            text.append(tail)
            yield tail
        self.result = self.model._finish("".join(text))


def default_wasm_path():
    """The module this package runs: `TRL_WASM` when set, else the one shipped inside it."""
    return Path(os.environ["TRL_WASM"]) if os.environ.get("TRL_WASM") else PACKAGED_WASM
