"""Typed exceptions: every failed export call raises one, carrying the header's status code."""

from . import _abi

_STATUS_NAME = {code: name for name, code in _abi.STATUS.items()}


def status_name(code):
    """The header's name for a status code (`TRL_STATUS_` + this), or `STATUS_<n>` for one it lacks."""
    return _STATUS_NAME.get(code, f"STATUS_{code}")


class TinyRustLMError(Exception):
    """An export returned a non-zero status. `status` is the code, `status_name` its header name,
    `message` the module's `last_error` text (it names the field, the value and the rule)."""

    def __init__(self, status, message, call=None):
        self.status = status
        self.status_name = status_name(status)
        self.message = message
        self.call = call
        where = f"{call}: " if call else ""
        super().__init__(f"{where}status {status} ({self.status_name}): {message}")


class CallError(TinyRustLMError):
    """A call-level error (statuses 1..=15): bounds, arguments, state, memory, context, sampling."""


class PackageError(TinyRustLMError):
    """The SLM1 package was refused (statuses 16..=63); nothing was loaded."""


class AdapterError(TinyRustLMError):
    """The adapter was refused (statuses 64..=79); the model is unchanged."""


class EvalError(TinyRustLMError):
    """The eval case file was refused (statuses 80..=95); nothing ran."""


class GrammarError(TinyRustLMError):
    """The GBNF grammar or JSON Schema was refused (statuses 96..=111)."""


class ModuleError(Exception):
    """The .wasm file cannot serve this package: not a TinyRustLM module, or an ABI version it does
    not speak."""


def error_for(status, message, call=None):
    """The exception class of a status's range (FORMAT.md and src/abi_facts.rs group them)."""
    if 16 <= status <= 63:
        cls = PackageError
    elif 64 <= status <= 79:
        cls = AdapterError
    elif 80 <= status <= 95:
        cls = EvalError
    elif 96 <= status <= 111:
        cls = GrammarError
    else:
        cls = CallError
    return cls(status, message, call)
