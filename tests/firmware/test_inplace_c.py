"""In-place convolution (pipeline/codegen/memplan.py places the output `lead` bytes below its own input; the
kernels write it in bands of rows, conv_run.cpp RunConvInPlace): pk_core.c compiled for the
host, run in one buffer exactly as the firmware does, must equal the out-of-place result bit for bit,
and must refuse a lead one byte short of what the plan's inequality needs."""
import ctypes

import numpy as np
import pytest

from pipeline.codegen.memplan import min_lead
from tests.firmware.test_kernels_c import Params, Part, _random_conv, _run, lib  # noqa: F401 (fixture)

CASES = [
    # (shape, out_c, kernel, stride, padding)
    ((48, 48, 3), 8, 3, 2, "same"),    # MicroPizzaNet's first conv
    ((48, 48, 3), 8, 3, 4, "same"),    # stride 4: an output row frees more than one input row
    ((13, 11, 3), 5, 3, 2, "same"),    # odd sizes, a leftover channel group
    ((9, 10, 4), 6, 5, 1, "same"),     # two rows of padding above: rows read before they exist
    ((16, 16, 3), 4, 3, 1, "valid"),   # stride 1: the output row is longer than the input row it frees
    ((12, 12, 8), 16, 1, 1, "valid"),  # pointwise: output rows twice the input's
]


def _exact_lead(p) -> int:
    out_row, in_row = p.out_w * p.out_c, p.in_w * p.in_c
    return max((oy + 1) * out_row - max(0, oy * p.stride_h - p.pad_h) * in_row for oy in range(p.out_h))


class ChanSetup(ctypes.Structure):
    """pk_chan_setup: one output channel's setup, kept between the bands."""
    _fields_ = [("bias", ctypes.c_int32), ("abs_sum", ctypes.c_uint32), ("lo_at", ctypes.c_int32)]


class Opts(ctypes.Structure):
    _fields_ = [("chan", ctypes.POINTER(ChanSetup)), ("chan_known", ctypes.c_int),
                ("group_lo", ctypes.c_int32), ("group_hi", ctypes.c_int32), ("leftovers", ctypes.c_int)]


def _in_place(lib, p, x, w, bias, lead, cores=1, core1_first=False):
    """RunConvInPlace on the host: output at `base`, input `lead` bytes above it, in one buffer.
    cores=2: each band shared as the board image's two cores do (an even band by halves of its rows;
    an odd one of three rows or more likewise but its last row, shared by channel groups: core 0 the
    first half of the groups, core 1 the rest and the leftover channels; a row alone by groups), core
    0's share and core 1's run one after the other in either order. Returns the output, or None where pk_inplace_band_end refuses a band."""
    in_bytes, out_bytes = x.size, p.out_h * p.out_w * p.out_c
    buf = np.full(max(lead + in_bytes, out_bytes) + 64, 77, dtype=np.int8)
    buf[lead:lead + in_bytes] = x.reshape(-1)
    chan = (ChanSetup * p.out_c)()
    oy = 0
    while oy < p.out_h:
        end = lib.pk_inplace_band_end(ctypes.byref(p), oy, ctypes.c_int64(lead))
        if end <= oy:
            return None
        def view_of(lo, hi):
            view, in_off, out_off = Params(), ctypes.c_int32(), ctypes.c_int32()
            lib.pk_part_view(ctypes.byref(p), ctypes.byref(Part(lo, hi)), ctypes.byref(view), ctypes.byref(in_off),
                             ctypes.byref(out_off))
            return view, in_off.value, out_off.value

        ptr = ctypes.c_void_p
        band = view_of(oy, end)
        groups = lib.pk_conv_groups(ctypes.byref(band[0]))
        if cores == 1:
            parts = [(band, Opts(chan, int(oy > 0), 0, -1, 1))]
        elif (end - oy) % 2 == 0:  # an even band: each core half of its rows, every channel
            mid = oy + (end - oy) // 2
            parts = [(view_of(oy, mid), Opts(chan, int(oy > 0), 0, -1, 1)),
                     (view_of(mid, end), Opts(chan if oy > 0 else None, int(oy > 0), 0, -1, 1))]
        elif end - oy >= 3:  # an odd band: rows as above but the last row, which the cores share by groups
            mid, last = oy + (end - oy - 1) // 2, end - 1
            chan1 = chan if oy > 0 else None
            parts = [(view_of(oy, mid), Opts(chan, int(oy > 0), 0, -1, 1)),
                     (view_of(last, end), Opts(chan, int(oy > 0), 0, groups // 2, 0)),
                     (view_of(mid, last), Opts(chan1, int(oy > 0), 0, -1, 1)),
                     (view_of(last, end), Opts(chan1, int(oy > 0), groups // 2, groups, 1))]
        else:
            parts = [(band, Opts(chan, int(oy > 0), 0, groups // 2, 0)),
                     (band, Opts(chan, int(oy > 0), groups // 2, groups, 1))]
        if core1_first:
            parts.reverse()
        for (view, in_off, out_off), o in parts:
            lib.pk_conv_s8_ex(ctypes.byref(view), ptr(buf.ctypes.data + lead + in_off), w.ctypes.data_as(ptr),
                              bias.ctypes.data_as(ptr), ptr(buf.ctypes.data + out_off), ctypes.byref(o))
        oy = end
    return buf[:out_bytes].copy()


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0][0]}x{c[0][1]}x{c[0][2]}-k{c[2]}s{c[3]}{c[4]}-o{c[1]}")
def test_in_place_equals_out_of_place(lib, case):
    shape, out_c, k, stride, padding = case
    lib.pk_inplace_band_end.restype = ctypes.c_int32
    lib.pk_inplace_band_end.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64]
    rng = np.random.default_rng(sum(shape) + 5 * k + out_c)
    p, x, w, bias, _keep = _random_conv(rng, shape, out_c, k, stride, padding, False)
    whole = np.zeros((p.out_h, p.out_w, out_c), dtype=np.int8)
    _run(lib, "pk_conv_s8", p, x, w, bias, whole)

    exact = _exact_lead(p)
    lead = min_lead(p.in_h, p.in_w, p.in_c, p.out_h, p.out_w, p.out_c, p.stride_h, p.pad_h)
    assert lead % 16 == 0 and exact <= lead < exact + 16
    for trial in sorted({exact, lead, lead + 48}):
        got = _in_place(lib, p, x, w, bias, trial)
        assert got is not None, f"lead {trial} refused"
        diff = int(np.count_nonzero(got != whole.reshape(-1)))
        assert diff == 0, f"lead {trial}: {diff} of {whole.size} outputs differ from the out-of-place conv"
    assert _in_place(lib, p, x, w, bias, exact - 1) is None, "one byte short of the inequality must be refused"
    for core1_first in (False, True):  # the board image's two cores share every band (rows or groups)
        got = _in_place(lib, p, x, w, bias, lead, cores=2, core1_first=core1_first)
        assert got is not None and np.array_equal(got, whole.reshape(-1)), f"two cores, core 1 first: {core1_first}"


def test_band_end_grows_with_freed_rows(lib):
    """MicroPizzaNet's first conv (48x48x3 -> 24x24x8, stride 2, lead 192): a band may end where its
    output reaches the first input row still to be read; the bands get longer as rows are freed."""
    lib.pk_inplace_band_end.restype = ctypes.c_int32
    lib.pk_inplace_band_end.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64]
    rng = np.random.default_rng(3)
    p, *_ = _random_conv(rng, (48, 48, 3), 8, 3, 2, "same", False)
    bands, oy = [], 0
    while oy < p.out_h:
        end = lib.pk_inplace_band_end(ctypes.byref(p), oy, ctypes.c_int64(192))
        bands.append((oy, end))
        oy = end
    assert bands == [(0, 1), (1, 2), (2, 4), (4, 7), (7, 11), (11, 17), (17, 24)]
    assert lib.pk_inplace_band_end(ctypes.byref(p), 0, ctypes.c_int64(191)) == 0


@pytest.mark.parametrize("top,left,extra_h,extra_w", [(0, 0, 1, 1), (1, 1, 1, 1), (2, 0, 0, 3), (0, 0, 0, 0)])
def test_pad_in_place_equals_copy(lib, top, left, extra_h, extra_w):
    """pk_pad_s8 with the padded image starting on its own input (the plan puts the depthwise conv's
    padded scratch over its input): the same bytes as padding into a separate buffer."""
    rng = np.random.default_rng(top * 7 + left * 3 + extra_h + extra_w)
    h, w, c = 24, 24, 8
    ph, pw = h + top + extra_h, w + left + extra_w
    x = rng.integers(-128, 128, (h, w, c), dtype=np.int8)
    ptr = ctypes.c_void_p
    want = np.zeros(ph * pw * c, dtype=np.int8)
    lib.pk_pad_s8(x.ctypes.data_as(ptr), h, w, c, want.ctypes.data_as(ptr), ph, pw, top, left, ctypes.c_int8(-9))
    buf = np.zeros(ph * pw * c + 16, dtype=np.int8)
    buf[:x.size] = x.reshape(-1)
    lib.pk_pad_s8(buf.ctypes.data_as(ptr), h, w, c, buf.ctypes.data_as(ptr), ph, pw, top, left, ctypes.c_int8(-9))
    assert np.array_equal(buf[:want.size], want)
    assert (want.reshape(ph, pw, c)[top:top + h, left:left + w] == x).all()


DW_CASES = [
    # (shape, kernel, stride, padding): picotflm's depthwise path pads a 3x3 op's input first
    ((48, 48, 8), 3, 1, "same"),    # person detection's first block: output rows as long as the input's
    ((48, 48, 16), 3, 2, "same"),   # stride 2
    ((24, 24, 8), 3, 2, "same"),    # MicroPizzaNet's depthwise convs
    ((11, 9, 5), 3, 1, "same"),     # odd sizes and channel count
]


@pytest.mark.parametrize("case", DW_CASES, ids=lambda c: f"{c[0][0]}x{c[0][1]}x{c[0][2]}-k{c[1]}s{c[2]}{c[3]}")
def test_depthwise_in_place_over_its_padded_copy(lib, case):
    """The plan's depthwise layout in one buffer, as DepthwiseEval and RunConvInPlace run it: the input
    at `lead`, its padded copy written over it (pk_pad_s8), then the output in bands starting `lead`
    below the copy: equal to padding into a separate buffer and convolving out of place."""
    shape, k, stride, padding = case
    lib.pk_inplace_band_end.restype = ctypes.c_int32
    lib.pk_inplace_band_end.argtypes = [ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64]
    rng = np.random.default_rng(sum(shape) + stride)
    p, x, w, bias, _keep = _random_conv(rng, shape, shape[2], k, stride, padding, True)
    ph, pw = (p.out_h - 1) * stride + k, (p.out_w - 1) * stride + k
    c, ptr = shape[2], ctypes.c_void_p
    padded = np.zeros(ph * pw * c, dtype=np.int8)
    lib.pk_pad_s8(x.ctypes.data_as(ptr), shape[0], shape[1], c, padded.ctypes.data_as(ptr), ph, pw, p.pad_h, p.pad_w,
                  ctypes.c_int8(-p.input_offset))
    q = Params.from_buffer_copy(p)
    q.in_h, q.in_w, q.pad_h, q.pad_w = ph, pw, 0, 0
    whole = np.zeros(p.out_h * p.out_w * c, dtype=np.int8)
    _run(lib, "pk_dwconv_s8", q, padded, w, bias, whole)

    lead = min_lead(ph, pw, c, p.out_h, p.out_w, c, stride, 0)
    buf = np.full(lead + padded.size + 64, 77, dtype=np.int8)
    buf[lead:lead + x.size] = x.reshape(-1)
    base = buf.ctypes.data
    lib.pk_pad_s8(ptr(base + lead), shape[0], shape[1], c, ptr(base + lead), ph, pw, p.pad_h, p.pad_w,
                  ctypes.c_int8(-p.input_offset))
    assert np.array_equal(buf[lead:lead + padded.size], padded)
    oy = 0
    while oy < q.out_h:
        end = lib.pk_inplace_band_end(ctypes.byref(q), oy, ctypes.c_int64(lead))
        assert end > oy, f"band at row {oy} refused"
        view, in_off, out_off = Params(), ctypes.c_int32(), ctypes.c_int32()
        lib.pk_part_view(ctypes.byref(q), ctypes.byref(Part(oy, end)), ctypes.byref(view), ctypes.byref(in_off),
                         ctypes.byref(out_off))
        lib.pk_dwconv_s8(ctypes.byref(view), ptr(base + lead + in_off.value), w.ctypes.data_as(ptr),
                         bias.ctypes.data_as(ptr), ptr(base + out_off.value))
        oy = end
    assert np.array_equal(buf[:whole.size], whole)
