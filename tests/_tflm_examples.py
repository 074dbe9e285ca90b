"""pico-tflmicro's example models (C arrays in its sources) written out as .tflite files, for tests
that deploy models nobody here trained. Found under PICO_TFLMICRO_PATH or the default location."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.tflite.carray import c_array_bytes

EXAMPLES = {
    "hello_world_int8": "examples/hello_world/hello_world_int8_model_data.cpp",
    "hello_world_float": "examples/hello_world/hello_world_float_model_data.cpp",
    "person_detect": "examples/person_detection/tensorflow/lite/micro/tools/make/downloads/person_model/"
                     "person_detect_model_data.cpp",
}


def pico_tflmicro() -> Path:
    return Path(os.environ.get("PICO_TFLMICRO_PATH") or Path.home() / ".pico-sdk" / "pico-tflmicro")


def example_model(name: str, out_dir: Path) -> Path:
    """``out_dir/<name>.tflite`` from pico-tflmicro's sources; the test is skipped when they are absent
    (failed instead with PICOTFLM_REQUIRE_FIRMWARE=1)."""
    src = pico_tflmicro() / EXAMPLES[name]
    if not src.is_file():
        reason = f"pico-tflmicro's {name} model is not at {src} (set PICO_TFLMICRO_PATH)"
        if os.environ.get("PICOTFLM_REQUIRE_FIRMWARE") == "1":
            pytest.fail(reason + "; PICOTFLM_REQUIRE_FIRMWARE=1")
        pytest.skip(reason)
    out = Path(out_dir) / f"{name}.tflite"
    out.write_bytes(c_array_bytes(src.read_text(encoding="utf-8", errors="replace")))
    return out
