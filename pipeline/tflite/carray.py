"""A model held as a C array, as TFLM examples ship it (``alignas(16) const unsigned char
g_model[] = {0x1c, 0x00, ...};`` in a ``.cc``/``.cpp``/``.h``): its bytes."""
from __future__ import annotations

import re

from pipeline.errors import PipelineError

C_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".h", ".hpp")
_ARRAY = re.compile(r"(?:unsigned\s+char|uint8_t)\s+\w+\s*\[\s*\w*\s*\]\s*(?:__attribute__\s*\(\([^)]*\)\)\s*)?=\s*\{(.*?)\}\s*;", re.S)
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|\d+")


def c_array_bytes(text: str, name: str = "source") -> bytes:
    """The bytes of the first ``unsigned char``/``uint8_t`` array initialised in C source ``text``."""
    m = _ARRAY.search(text)
    if m is None:
        raise PipelineError(f"{name} holds no unsigned char array with an initializer",
                            hint="give a .tflite, or the .cc of a TFLM example whose model is a C array")
    body = re.sub(r"/\*.*?\*/|//[^\n]*", " ", m.group(1), flags=re.S)
    values = [int(tok, 0) for tok in _NUMBER.findall(body)]
    if not values or max(values) > 255:
        raise PipelineError(f"{name}: the array's values are not bytes", hint="give the model's byte array")
    return bytes(values)
