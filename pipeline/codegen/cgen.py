"""C literal helpers for the templates: strings, floats, byte arrays (each one tested)."""
from __future__ import annotations

import math

from pipeline.errors import PipelineError


def c_string(value: str) -> str:
    """A C string literal; only printable ASCII passes through, everything else is escaped."""
    out = ['"']
    for ch in str(value):
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "?":
            out.append("\\?")  # no trigraphs
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        else:
            for b in ch.encode("utf-8"):
                out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


def c_float(x: float) -> str:
    """A float literal that round-trips through a C float."""
    x = float(x)
    if not math.isfinite(x):
        raise PipelineError(f"a quantization parameter is not finite ({x})", hint="re-convert the model")
    return f"{x!r}f" if ("e" in repr(x) or "." in repr(x)) else f"{x!r}.0f"


def c_bytes(data: bytes, per_line: int = 16, indent: str = "  ") -> str:
    """Bytes as hex literals, ``per_line`` per line, every line ending in a comma."""
    lines = []
    for i in range(0, len(data), per_line):
        chunk = data[i: i + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)
