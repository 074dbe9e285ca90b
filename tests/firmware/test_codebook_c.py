"""Codebook weights (firmware/src/kernels/codebook.c) compiled for the host: the decoder gives back the
int8 filter that pipeline/tflite/codebook.py encoded, and the codebook convolution (one group of four
output channels decoded at a time) equals the dense kernel (pk_conv_s8) bit for bit."""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.tflite.codebook import decode, encode_filter, pack_indices
from tests.firmware.test_kernels_c import SRC, Params


class Codebook(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p)] + [(n, ctypes.c_int32) for n in (
        "channels", "k", "bits", "entries", "per_channel", "table_bytes")]


STUB = """
#include "codebook.h"
const pk_codebook g_pk_codebooks[1] = {{0, 0, 0, 0, 0, 0, 0}};
const int g_pk_codebook_count = 0;
int8_t g_pk_codebook_scratch[4];
"""


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc to compile the kernels")
    d = tmp_path_factory.mktemp("cb")
    (d / "stub.c").write_text(STUB)
    so = d / "libcb.so"
    r = subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", f"-I{SRC}",
                        str(SRC / "pk_core.c"), str(SRC / "codebook.c"), str(d / "stub.c"), "-o", str(so)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ctypes.CDLL(str(so))


def clustered(rng, channels, k, values, shared=False):
    """An int8 filter with at most ``values`` distinct values per channel (all channels alike if shared)."""
    rows = []
    common = rng.choice(np.arange(-128, 128), values, replace=False)
    for _ in range(channels):
        pool = common if shared else rng.choice(np.arange(-128, 128), values, replace=False)
        rows.append(rng.choice(pool, k))
    return np.array(rows, np.int8)


def book(w, bits):
    table, idx, per_channel = encode_filter(w, bits)
    payload = table.tobytes() + pack_indices(idx, bits)
    buf = ctypes.create_string_buffer(payload, len(payload))
    cb = Codebook(ctypes.cast(buf, ctypes.c_void_p), w.shape[0], w.shape[1], bits,
                  table.size // (w.shape[0] if per_channel else 1), int(per_channel), table.size)
    return cb, buf, table, idx, per_channel


@pytest.mark.parametrize("bits,values,shared", [(2, 4, False), (2, 3, True), (4, 16, False), (4, 9, True)])
@pytest.mark.parametrize("channels,k", [(5, 27), (8, 8), (3, 17)])
def test_decode_gives_the_filter(lib, bits, values, shared, channels, k):
    rng = np.random.default_rng(bits * 100 + channels * 10 + k)
    w = clustered(rng, channels, k, values, shared)
    cb, buf, table, idx, per_channel = book(w, bits)
    assert per_channel != shared
    assert np.array_equal(decode(table, pack_indices(idx, bits), channels, k, bits, per_channel), w)
    for lo, hi in ((0, channels), (1, channels), (channels - 1, channels)):
        out = np.zeros((hi - lo) * k, np.int8)
        lib.pk_codebook_decode(ctypes.byref(cb), lo, hi, out.ctypes.data_as(ctypes.c_void_p))
        assert np.array_equal(out.reshape(hi - lo, k), w[lo:hi]), (lo, hi)


def test_more_values_than_the_index_width_is_not_encoded():
    w = clustered(np.random.default_rng(1), 4, 16, 5)
    assert encode_filter(w, 2) is None


@pytest.mark.parametrize("bits,out_c,k_h,in_c,stride,pad", [(2, 8, 3, 3, 2, 1), (2, 6, 1, 8, 1, 0),
                                                            (4, 5, 3, 4, 1, 1), (4, 3, 1, 16, 1, 0)])
def test_codebook_conv_equals_the_dense_kernel(lib, bits, out_c, k_h, in_c, stride, pad):
    rng = np.random.default_rng(out_c * 7 + k_h + bits)
    in_h = in_w = 9
    out_h = (in_h + 2 * pad - k_h) // stride + 1
    k = k_h * k_h * in_c
    w = clustered(rng, out_c, k, 1 << bits)
    cb, buf, *_ = book(w, bits)
    mult = (ctypes.c_int32 * out_c)(*rng.integers(1 << 29, 1 << 31, out_c).tolist())
    shift = (ctypes.c_int32 * out_c)(*rng.integers(-9, -5, out_c).tolist())
    bias = rng.integers(-3000, 3000, out_c).astype(np.int32)
    x = rng.integers(-128, 128, in_h * in_w * in_c).astype(np.int8)
    p = Params(in_h, in_w, in_c, out_h, out_h, out_c, k_h, k_h, stride, stride, pad, pad, 5, -3, -128, 127,
               mult, shift, None, None)
    dense = np.zeros(out_h * out_h * out_c, np.int8)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    lib.pk_conv_s8(ctypes.byref(p), ptr(x), ptr(w), ptr(bias), ptr(dense))
    got = np.full_like(dense, 77)
    scratch = np.zeros(10 * k, np.int32).view(np.int8)
    assert lib.pk_conv_s8_codebook(ctypes.byref(p), ctypes.byref(cb), ptr(x), ptr(bias), ptr(got), ptr(scratch)) == 1
    assert np.array_equal(got, dense)
    assert len(set(dense.tolist())) > 8  # the case computes something, not a clamped constant


@pytest.mark.parametrize("bits,out_c,k_h,in_c,stride,pad", [(2, 8, 3, 3, 2, 1), (4, 6, 1, 8, 1, 0)])
def test_codebook_conv_in_place_equals_the_dense_kernel(lib, bits, out_c, k_h, in_c, stride, pad):
    """The output `lead` bytes below its own input (an in-place memory plan): bands of rows, the same bytes."""
    rng = np.random.default_rng(out_c + bits)
    in_h = in_w = 10
    out_h = (in_h + 2 * pad - k_h) // stride + 1
    k = k_h * k_h * in_c
    w = clustered(rng, out_c, k, 1 << bits)
    cb, buf, *_ = book(w, bits)
    mult = (ctypes.c_int32 * out_c)(*rng.integers(1 << 29, 1 << 31, out_c).tolist())
    shift = (ctypes.c_int32 * out_c)(*rng.integers(-9, -5, out_c).tolist())
    bias = rng.integers(-3000, 3000, out_c).astype(np.int32)
    x = rng.integers(-128, 128, in_h * in_w * in_c).astype(np.int8)
    p = Params(in_h, in_w, in_c, out_h, out_h, out_c, k_h, k_h, stride, stride, pad, pad, 5, -3, -128, 127,
               mult, shift, None, None)
    ptr = lambda a, off=0: ctypes.c_void_p(a.ctypes.data + off)  # noqa: E731
    dense = np.zeros(out_h * out_h * out_c, np.int8)
    lib.pk_conv_s8(ctypes.byref(p), ptr(x), ptr(w), ptr(bias), ptr(dense))
    scratch = np.zeros(10 * k, np.int32).view(np.int8)
    ran = 0
    for lead in range(1, dense.size + x.size, 7):
        mem = np.zeros(lead + x.size, np.int8)
        mem[lead:] = x
        if lib.pk_conv_s8_codebook(ctypes.byref(p), ctypes.byref(cb), ptr(mem, lead), ptr(bias), ptr(mem),
                                   ptr(scratch)):
            assert np.array_equal(mem[: dense.size], dense), lead
            ran += lead < dense.size  # the output overlaps the input
    assert ran > 0


@pytest.mark.parametrize("zero_groups", [(0,), (1, 2), (0, 1, 2, 3)])
def test_pruned_groups_are_skipped_with_the_dense_kernels_bytes(lib, zero_groups):
    """Groups of four output channels whose weights are all zero (structured pruning) are written as
    their requantized bias without a multiply-accumulate: the same bytes as the dense kernel."""
    rng = np.random.default_rng(len(zero_groups))
    out_c, k_h, in_c, in_h = 18, 1, 16, 7
    k = k_h * k_h * in_c
    w = clustered(rng, out_c, k, 4)
    for g in zero_groups:
        w[4 * g: 4 * g + 4] = 0
    cb, buf, *_ = book(w, 2)
    mult = (ctypes.c_int32 * out_c)(*rng.integers(1 << 29, 1 << 31, out_c).tolist())
    shift = (ctypes.c_int32 * out_c)(*rng.integers(-9, -5, out_c).tolist())
    bias = rng.integers(-3000, 3000, out_c).astype(np.int32)
    x = rng.integers(-128, 128, in_h * in_h * in_c).astype(np.int8)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    for act_min in (-128, -20):  # no clamp, and a ReLU's
        p = Params(in_h, in_h, in_c, in_h, in_h, out_c, k_h, k_h, 1, 1, 0, 0, 5, -3, act_min, 127,
                   mult, shift, None, None)
        dense = np.zeros(in_h * in_h * out_c, np.int8)
        lib.pk_conv_s8(ctypes.byref(p), ptr(x), ptr(w), ptr(bias), ptr(dense))
        got = np.full_like(dense, 77)
        scratch = np.zeros(10 * k, np.int32).view(np.int8)
        assert lib.pk_conv_s8_codebook(ctypes.byref(p), ctypes.byref(cb), ptr(x), ptr(bias), ptr(got), ptr(scratch))
        assert np.array_equal(got, dense)
