"""A depthwise conv shared between the two cores by channels (conv_run.h: core 0 channels [0, c/2), core 1
the rest; in place, each band so): pk_dwconv_s8_channels compiled for the host, the two halves in
either order, equal the whole op bit for bit and write nothing outside their channels."""
import ctypes

import numpy as np
import pytest

from tests.firmware.test_kernels_c import Params, Part, _random_conv, _run, lib  # noqa: F401 (fixture)

CASES = [
    # (shape, kernel, stride, padding)
    ((24, 24, 8), 3, 2, "same"),   # MicroPizzaNet's first depthwise conv
    ((12, 12, 16), 3, 2, "same"),  # and its second
    ((11, 9, 5), 3, 1, "same"),    # an odd channel count: core 1 takes one more
    ((7, 8, 3), 5, 1, "valid"),    # not 3x3: the border path on every output
]


def _channels(lib, p, x, w, bias, out, c_lo, c_hi, part=None):
    ptr = ctypes.c_void_p
    q, in_off, out_off = p, 0, 0
    if part is not None:
        q, i, o = Params(), ctypes.c_int32(), ctypes.c_int32()
        lib.pk_part_view(ctypes.byref(p), ctypes.byref(part), ctypes.byref(q), ctypes.byref(i), ctypes.byref(o))
        in_off, out_off = i.value, o.value
    lib.pk_dwconv_s8_channels(ctypes.byref(q), ptr(x.ctypes.data + in_off), w.ctypes.data_as(ptr),
                              bias.ctypes.data_as(ptr), ptr(out.ctypes.data + out_off), c_lo, c_hi)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0][0]}x{c[0][1]}x{c[0][2]}-k{c[1]}s{c[2]}{c[3]}")
@pytest.mark.parametrize("core1_first", [False, True])
def test_halves_by_channel_equal_the_whole(lib, case, core1_first):
    shape, k, stride, padding = case
    rng = np.random.default_rng(sum(shape) * 7 + k)
    p, x, w, bias, _keep = _random_conv(rng, shape, shape[2], k, stride, padding, True)
    c = shape[2]
    whole = np.zeros(p.out_h * p.out_w * c, dtype=np.int8)
    _run(lib, "pk_dwconv_s8", p, x, w, bias, whole)

    halves = [(0, c // 2), (c // 2, c)]
    out = np.full_like(whole, 77)
    first, second = halves[::-1] if core1_first else halves
    _channels(lib, p, x, w, bias, out, *first)
    # Only its own channels written so far: the other core's bytes are untouched.
    written = np.zeros((p.out_h * p.out_w, c), dtype=bool)
    written[:, first[0]:first[1]] = True
    assert np.all(out.reshape(-1, c)[~written] == 77)
    _channels(lib, p, x, w, bias, out, *second)
    assert np.array_equal(out, whole)

    # A band of rows by channels, as the in-place plan runs it (each band a view of the op).
    banded = np.full_like(whole, 77)
    for lo in range(0, p.out_h, 2):
        part = Part(lo, min(lo + 2, p.out_h))
        for c_lo, c_hi in (halves[::-1] if core1_first else halves):
            _channels(lib, p, x, w, bias, banded, c_lo, c_hi, part)
    assert np.array_equal(banded, whole)
