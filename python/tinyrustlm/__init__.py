"""TinyRustLM in Python: the WebAssembly module (shipped inside this package) run by `wasmtime`.

`Model.load(path)` loads an SLM1 package; `generate`, `stream`, `chat`, `tokenize`, adapters,
`evaluate` and `diagnostics` give what `trl` gives, byte for byte. `tinyrustlm.evidence` builds
release packets and lineage as `trl packet build` / `trl lineage` do, and `python -m
tinyrustlm.sweep` runs (adapter stack × eval suite) sweeps as Ray tasks.
"""

from . import _abi
from . import evidence
from .errors import AdapterError, CallError, EvalError, GrammarError, ModuleError, PackageError, TinyRustLMError, status_name
from .model import Generation, Model, Sampling, WasmModule, parse_diagnostics

ABI_VERSION = _abi.ABI_VERSION
STATUS = _abi.STATUS
STOP = _abi.STOP

__all__ = [
    "ABI_VERSION",
    "STATUS",
    "STOP",
    "AdapterError",
    "CallError",
    "EvalError",
    "Generation",
    "GrammarError",
    "Model",
    "ModuleError",
    "PackageError",
    "Sampling",
    "TinyRustLMError",
    "WasmModule",
    "parse_diagnostics",
    "status_name",
]
