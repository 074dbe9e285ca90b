"""The host's ReLU thresholds (pipeline/codegen/render.py relu_threshold, written into the firmware's quant
tables) against pk_core.c's own pk_lo_threshold, compiled for the host: equal for every channel the
firmware could meet. The firmware checks the same again once per boot before using a table."""
import ctypes

import numpy as np

from pipeline.codegen.kernels import INT32_MIN, activation_range, conv_quant_tables, relu_threshold
from tests._models import int8_tflite
from tests.firmware.test_kernels_c import lib  # noqa: F401 (fixture)


def _c(lib):
    lib.pk_lo_threshold_of.restype = ctypes.c_int32
    lib.pk_lo_threshold_of.argtypes = [ctypes.c_int32] * 5
    return lib.pk_lo_threshold_of


def test_random_channels_match_c(lib):
    c_threshold = _c(lib)
    rng = np.random.default_rng(0)
    seen_never = seen_value = 0
    for _ in range(4000):
        mult = int(rng.integers(1 << 30, 1 << 31)) if rng.random() < 0.95 else int(rng.integers(-5, 1 << 31))
        shift = int(rng.integers(-24, 3))
        zp = int(rng.integers(-128, 128))
        lo = max(-128, zp) if rng.random() < 0.7 else int(rng.integers(-128, 128))
        hi = int(rng.integers(lo, 128))
        want = c_threshold(mult, shift, zp, lo, hi)
        assert relu_threshold(mult, shift, zp, lo, hi) == want, (mult, shift, zp, lo, hi)
        seen_never += want == INT32_MIN
        seen_value += want != INT32_MIN
    assert seen_never > 50 and seen_value > 2000  # both outcomes exercised


def test_micropizzanet_tables_match_c(lib):
    c_threshold = _c(lib)
    tables = conv_quant_tables(int8_tflite())
    assert [t["name"] for t in tables] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D"]
    for t in tables:
        assert t["act_max"] == 127 and t["act_min"] == max(-128, t["out_offset"])  # ReLU
        for m, e, v in zip(t["mult"], t["shift"], t["lo_at_values"]):
            assert v == c_threshold(m, e, t["out_offset"], t["act_min"], t["act_max"])
        assert sum(v != INT32_MIN for v in t["lo_at_values"]) > 0


def test_activation_range_rounds_like_tflm():
    assert activation_range(0, 0.1, 5) == (-128, 127)
    assert activation_range(1, 0.1, -7) == (-7, 127)
    assert activation_range(3, 0.05, -128) == (-128, -8)       # 6 / 0.05 = 120
    assert activation_range(3, 6 / 255.5, -128) == (-128, 127)  # 255.5 rounds away from zero: clamped
    assert activation_range(2, 0.25, 0) == (-4, 4)
