"""JSON text as `trl` writes it (serde_json): keys sorted, strings escaped as serde_json escapes them,
floats in the shortest form that reads back to the same double, laid out as serde_json lays it out.
Packets and `generate --json` lines are compared byte for byte with `trl`'s, so Python's own
`json.dumps` (which writes `1e-05` where serde_json writes `0.00001`) is not used for numbers."""

import decimal
import math

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _string(s):
    out = ['"']
    for ch in s:
        e = _ESCAPES.get(ch)
        if e is not None:
            out.append(e)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _float(x):
    """serde_json's layout of a finite f64 (zmij): the shortest round-trip digits d₁d₂… with the
    decimal exponent e of d₁; plain notation for -5 ≤ e ≤ 15 (always with a fractional part),
    otherwise `d.ddde±x` without leading zeros in the exponent."""
    if not math.isfinite(x):
        return "null"
    sign = "-" if math.copysign(1.0, x) < 0 else ""
    x = abs(x)
    if x == 0.0:
        return sign + "0.0"
    # repr gives the shortest digits that read back to x, as zmij does; Decimal splits them.
    t = decimal.Decimal(repr(x)).as_tuple()
    digits = "".join(map(str, t.digits)).lstrip("0")
    e = t.exponent + len(digits) - 1
    digits = digits.rstrip("0") or "0"
    if -5 <= e <= 15:
        if e >= len(digits) - 1:
            return sign + digits + "0" * (e - len(digits) + 1) + ".0"
        if e >= 0:
            return sign + digits[: e + 1] + "." + digits[e + 1 :]
        return sign + "0." + "0" * (-e - 1) + digits
    body = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{body}e{'-' if e < 0 else '+'}{abs(e)}"


def dumps(value, indent=None):
    """Compact (`serde_json::to_string`) or, with `indent`, pretty (`to_string_pretty`, 2 spaces)."""
    out = []
    _write(out, value, indent, 0)
    return "".join(out)


def _write(out, v, indent, level):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(_float(v))
    elif isinstance(v, str):
        out.append(_string(v))
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + " " * (indent * (level + 1)))
            _write(out, item, indent, level + 1)
        if indent is not None:
            out.append("\n" + " " * (indent * level))
        out.append("]")
    elif isinstance(v, dict):
        if not v:
            out.append("{}")
            return
        out.append("{")
        for i, key in enumerate(sorted(v)):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + " " * (indent * (level + 1)))
            out.append(_string(key))
            out.append(": " if indent is not None else ":")
            _write(out, v[key], indent, level + 1)
        if indent is not None:
            out.append("\n" + " " * (indent * level))
        out.append("}")
    else:
        raise TypeError(f"cannot write {type(v).__name__} as JSON")
