"""picotflm's M0+ kernel arithmetic (firmware/src/kernels/pk_core.c), compiled for the host and
checked bit for bit against host TFLM on single-layer int8 models: every output byte must match."""
import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[2] / "firmware" / "src" / "kernels"


class Params(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in (
        "in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w",
        "pad_h", "pad_w", "input_offset", "output_offset", "act_min", "act_max")] + [
        ("mult", ctypes.POINTER(ctypes.c_int32)), ("shift", ctypes.POINTER(ctypes.c_int32)),
        ("lo_at", ctypes.POINTER(ctypes.c_int32)), ("wx", ctypes.POINTER(ctypes.c_int32)),
        ("wx8", ctypes.POINTER(ctypes.c_int32)), ("groups", ctypes.POINTER(ctypes.c_int32))]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc to compile the kernels")
    so = tmp_path_factory.mktemp("pk") / "libpk.so"
    r = subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                        str(SRC / "pk_core.c"), "-o", str(so)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))
    lib.pk_requantize.restype = ctypes.c_int32
    lib.pk_requantize.argtypes = [ctypes.c_int32] * 3
    return lib


def quantize_multiplier(d: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier, written out here again so the renderer's copy is checked against it."""
    if d == 0.0:
        return 0, 0
    m, e = math.frexp(d)
    q = int(math.floor(m * (1 << 31) + 0.5))
    if q == 1 << 31:
        q //= 2
        e += 1
    if e < -31:
        return 0, 0
    return q, e


def test_render_quantize_multiplier_edges():
    from pipeline.codegen.kernels import quantize_multiplier as rq

    for d in (0.0, 1e-12, 0.5, 0.75, 1.0 - 2**-40, 2.0**-31, 3.3e-5, 0.0078125, 1.5):
        assert rq(d) == quantize_multiplier(d), d
    assert rq(1.0 - 2**-40) == (1 << 30, 1)  # rounds up to 2^31: halved, exponent + 1


def ref_requantize(val: int, mult: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    hi = (val * (1 << left) * mult + (1 << 30)) >> 31
    if right == 0:
        return hi
    mask = (1 << right) - 1
    rem, res = hi & mask, hi >> right
    threshold = (mask >> 1) + (1 if res < 0 else 0)
    return res + 1 if rem > threshold else res


def test_requantize_matches_64_bit_formula(lib):
    rng = np.random.default_rng(3)
    vals = np.concatenate([rng.integers(-(1 << 23), 1 << 23, 4000), rng.integers(-(1 << 31), 1 << 31, 1000),
                           [0, 1, -1, (1 << 23) - 1, -(1 << 23), (1 << 31) - 1, -(1 << 31)]])
    for i, v in enumerate(vals):
        mult = int(rng.integers(1 << 30, 1 << 31)) if i % 3 else int(rng.integers(0, 1 << 31))
        shift = int(rng.integers(-20, 1)) if i % 4 else int(rng.integers(0, 4))
        v = int(v)
        if shift > 0:
            v = max(min(v, (1 << 27) - 1), -(1 << 27))
        assert lib.pk_requantize(v, mult, shift) == ref_requantize(v, mult, shift), (v, mult, shift)


def test_short_requantization_matches_64_bit_formula(lib):
    """pk_out_fit (the conv spans' REQF, two multiplies) against the 64-bit formula for every accumulator
    it takes, lo_at + 1 .. lo_at + lim, on random channels and the edge multipliers."""
    lib.pk_fit_outputs.restype = ctypes.c_int32
    lib.pk_fit_outputs.argtypes = [ctypes.c_int32] * 6 + [ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int32)]
    rng = np.random.default_rng(11)
    n = 0xFFFF
    out = np.zeros(n, dtype=np.int8)
    lo_at = ctypes.c_int32()
    cases = [((1 << 30) + 1, -1, -128, -128, 127), ((1 << 31) - 1, -15, 127, 127, 127), ((1 << 31) - 1, -1, -5, -5, 6),
             (1 << 30, -3, -128, -128, 127), ((1 << 31) - 1, -16, 0, 0, 127), (1234567890, 1, 0, 0, 127)]
    for _ in range(300):
        zp = int(rng.integers(-128, 128))
        lo = max(-128, zp) if rng.random() < 0.8 else int(rng.integers(-128, 128))
        cases.append((int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(-16, 1)), zp, lo, int(rng.integers(lo, 128))))
    taken = 0
    for mult, shift, zp, lo, hi in cases:
        lim = lib.pk_fit_outputs(mult, shift, zp, lo, hi, n, out.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
                                 ctypes.byref(lo_at))
        if mult <= 1 << 30 or shift >= 0 or shift < -15:
            assert lim == 0, (mult, shift)
            continue
        if lo_at.value == -(1 << 31):  # no confirmed threshold
            assert lim == 0
            continue
        # A ReLU's channel takes the short path unless hi is next to its zero point (the bound on lim
        # that keeps outputs at or below hi is conservative: with lo far above the zero point it may be 0).
        assert lim > 0 or lo != zp or hi <= zp + 1, (mult, shift, zp, lo, hi)
        assert lim <= n
        if lim == 0:
            continue
        acc = lo_at.value + np.arange(1, lim + 1, dtype=np.int64)
        h = (acc * mult + (1 << 30)) >> 31
        right = -shift
        mask = (1 << right) - 1
        r = h >> right
        r = r + ((h & mask) > (mask >> 1) + (r < 0))
        want = np.clip(r + zp, lo, hi)
        got = out[:lim].astype(np.int64)
        bad = np.nonzero(got != want)[0]
        assert bad.size == 0, (mult, shift, zp, lo, hi, int(acc[bad[0]]), int(got[bad[0]]), int(want[bad[0]]))
        taken += 1
    assert taken > 230, taken


def test_host_group_records_equal_the_kernels(lib):
    """The render's group records (pipeline/codegen/kernels.py, QuantTable::groups) against the
    kernel's own pk_group_record on random groups: equal word for word where the kernel takes the
    assembly spans, and None exactly where it does not (so the firmware's Prepare check passes)."""
    from pipeline.codegen.kernels import INT32_MIN, PK_GROUP_RECORD_WORDS, group_record, relu_threshold

    lib.pk_group_record.restype = ctypes.c_int
    lib.pk_group_record.argtypes = [ctypes.POINTER(Params), ctypes.POINTER(ctypes.c_int8),
                                    ctypes.POINTER(ctypes.c_int32), ctypes.c_int32, ctypes.POINTER(ctypes.c_int32)]
    rng = np.random.default_rng(21)
    spans = refused = 0
    for case in range(400):
        k = int(rng.choice([8, 16, 27, 64, 150]))
        big = case % 10 == 0  # weights and biases large enough to leave the fast range
        w = rng.integers(-128 if big else -40, 128 if big else 41, (4, k)).astype(np.int8)
        bias = [int(v) for v in rng.integers(-(1 << 22) if big else -3000, (1 << 22) if big else 3000, 4)]
        zp_in, zp_out = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
        relu = rng.random() < 0.8
        act_min, act_max = (max(-128, zp_out), 127) if relu else (-128, 127)
        pairs = []
        for _ in range(4):
            mult = int(rng.integers(1 << 30, 1 << 31)) if rng.random() < 0.95 else int(rng.integers(0, 1 << 30))
            shift = int(rng.integers(-14, 1)) if rng.random() < 0.95 else int(rng.integers(1, 3))
            pairs.append((mult, shift))
        lo_at = [relu_threshold(m, e, zp_out, act_min, act_max) for m, e in pairs]
        mult_a = (ctypes.c_int32 * 4)(*[m for m, _ in pairs])
        shift_a = (ctypes.c_int32 * 4)(*[e for _, e in pairs])
        lo_a = (ctypes.c_int32 * 4)(*lo_at)
        p = Params(in_h=3, in_w=3, in_c=k, out_h=1, out_w=1, out_c=4, k_h=1, k_w=1, stride_h=1, stride_w=1,
                   pad_h=0, pad_w=0, input_offset=-zp_in, output_offset=zp_out, act_min=act_min, act_max=act_max,
                   mult=mult_a, shift=shift_a, lo_at=lo_a)
        bias_a = (ctypes.c_int32 * 4)(*bias)
        rec = (ctypes.c_int32 * PK_GROUP_RECORD_WORDS)()
        wc = np.ascontiguousarray(w)
        ok = lib.pk_group_record(ctypes.byref(p), wc.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)), bias_a, 0, rec)
        host = group_record(w, bias, -zp_in, pairs, lo_at, zp_out, act_min, act_max)
        if not ok:
            assert host is None, (case, pairs, lo_at)
            refused += 1
            continue
        assert INT32_MIN not in lo_at
        assert host == list(rec), case
        spans += 1
    assert spans > 250 and refused > 10, (spans, refused)


def single_layer(layer, shape, seed):
    from tests._models import _keras

    keras = _keras()
    keras.utils.set_random_seed(seed)
    i = keras.layers.Input(shape)
    model = keras.Model(i, layer(keras)(i))
    # Random biases, so the folded-offset path is exercised with non-zero bias too.
    for w in model.layers[-1].weights:
        if "bias" in w.name:
            w.assign(np.random.default_rng(seed).normal(0, 0.3, w.shape).astype(np.float32))
    return model


def _convert(model, shape, seed):
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert

    rep = np.random.default_rng(seed).random((16, *shape)).astype(np.float32)
    return convert(model, rep, ConvertConfig(representative_samples=16, slim=False))


def _tensors(data: bytes):
    import tensorflow as tf

    ip = tf.lite.Interpreter(model_content=data)
    ops = ip._get_ops_details()
    assert len(ops) == 1, [o["op_name"] for o in ops]
    op = ops[0]
    det = {d["index"]: d for d in ip.get_tensor_details()}
    ins = [det[i] for i in op["inputs"] if i >= 0]
    out = det[op["outputs"][0]]
    filt = ins[1]
    bias = ins[2] if len(ins) > 2 else None
    return op["op_name"], ins[0], ip.get_tensor(filt["index"]), filt, (ip.get_tensor(bias["index"]) if bias else None), out


def _pad(in_size, k, stride, padding):
    out = -(-in_size // stride) if padding == "same" else (in_size - k) // stride + 1
    total = max((out - 1) * stride + k - in_size, 0) if padding == "same" else 0
    return out, total // 2


def _act_range(activation, out_scale, out_zp):
    lo, hi = -128, 127
    if activation in ("relu", "relu6"):
        lo = max(lo, out_zp)
    if activation == "relu6":
        hi = min(hi, out_zp + int(round(6.0 / out_scale)))
    return lo, hi


CONV_CASES = [
    # (shape, filters, kernel, stride, padding, activation)
    ((48, 48, 3), 8, 3, 2, "same", "relu"),   # MicroPizzaNet's first conv
    ((12, 12, 8), 16, 1, 1, "valid", "relu"),  # a pointwise conv
    ((13, 11, 3), 5, 3, 2, "same", None),      # odd sizes, odd channel count, padding on every side
    ((9, 10, 4), 3, 5, 1, "same", "relu6"),    # 5x5, stride 1, padding before and after
    ((8, 7, 2), 7, 3, 3, "valid", None),
    ((3, 4, 200), 9, 1, 1, "valid", "relu"),  # pointwise deeper than the border patch: groups of four all the same
    ((10, 9, 16), 8, 3, 1, "same", "relu"),   # border strips of a few outputs each (16 channels)
    ((2, 9, 5), 4, 3, 2, "same", None),       # no interior row: every row a border row
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0][0]}x{c[0][1]}x{c[0][2]}-k{c[2]}s{c[3]}{c[4]}")
def test_conv_bit_exact_with_tflm(lib, case):
    from pipeline.stages.verify import run_tflm

    shape, filters, k, stride, padding, act = case
    model = single_layer(lambda keras: keras.layers.Conv2D(filters, k, strides=stride, padding=padding,
                                                             activation=act), shape, seed=filters)
    data = _convert(model, shape, seed=filters)
    op, tin, w, tw, bias, tout = _tensors(data)
    assert op == "CONV_2D"
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, (4, *shape), dtype=np.int8)
    want, _ = run_tflm(data, x, 64 * 1024)
    from pipeline.codegen.kernels import conv_quant_tables

    _check(lib, "pk_conv_s8", x, w, bias, tin, tw, tout, shape, k, stride, padding, act, filters, want,
           tables=conv_quant_tables(data))


DW_CASES = [
    ((24, 24, 8), 3, 2, "same", "relu"),   # MicroPizzaNet's depthwise convs
    ((6, 6, 16), 3, 1, "same", None),
    ((11, 9, 5), 3, 2, "valid", "relu6"),
    ((7, 8, 6), 5, 1, "same", None),         # not 3x3: the general path
    ((7, 8, 6), 2, 1, "valid", "relu"),
]


@pytest.mark.parametrize("case", DW_CASES, ids=lambda c: f"{c[0][0]}x{c[0][1]}x{c[0][2]}-k{c[1]}s{c[2]}{c[3]}")
def test_depthwise_bit_exact_with_tflm(lib, case):
    from pipeline.stages.verify import run_tflm

    shape, k, stride, padding, act = case
    model = single_layer(lambda keras: keras.layers.DepthwiseConv2D(k, strides=stride, padding=padding,
                                                                      activation=act), shape, seed=k + stride)
    data = _convert(model, shape, seed=3)
    op, tin, w, tw, bias, tout = _tensors(data)
    assert op == "DEPTHWISE_CONV_2D"
    x = np.random.default_rng(8).integers(-128, 128, (4, *shape), dtype=np.int8)
    want, _ = run_tflm(data, x, 64 * 1024)
    from pipeline.codegen.kernels import conv_quant_tables

    _check(lib, "pk_dwconv_s8", x, w, bias, tin, tw, tout, shape, k, stride, padding, act, shape[2], want,
           tables=conv_quant_tables(data))
    _check(lib, "pk_dwconv_s8", x, w, bias, tin, tw, tout, shape, k, stride, padding, act, shape[2], want,
           pre_pad=True)


@pytest.mark.parametrize("shape,k,stride,padding,mult", [((13, 11, 1), 3, 2, "same", 8), ((9, 8, 1), 3, 1, "valid", 5)])
def test_depthwise_of_one_channel_runs_as_conv(lib, shape, k, stride, padding, mult):
    """A depthwise conv of one input channel with a depth multiplier (a first layer on a grayscale
    image, as in person detection) equals the CONV_2D of its 1HWC weights transposed to OHWI: what the
    firmware runs for it (depthwise.cpp, EvalAsConv)."""
    from pipeline.codegen.kernels import conv_quant_tables
    from pipeline.stages.verify import run_tflm

    model = single_layer(lambda keras: keras.layers.DepthwiseConv2D(
        k, strides=stride, padding=padding, depth_multiplier=mult, activation="relu"), shape, seed=mult)
    data = _convert(model, shape, seed=mult)
    op, tin, w, tw, bias, tout = _tensors(data)
    assert op == "DEPTHWISE_CONV_2D" and w.shape == (1, k, k, mult)
    x = np.random.default_rng(9).integers(-128, 128, (4, *shape), dtype=np.int8)
    want, _ = run_tflm(data, x, 64 * 1024)
    ohwi = np.ascontiguousarray(np.transpose(w, (3, 1, 2, 0)))  # ohwi[oc, ky, kx, 0] = w[0, ky, kx, oc]
    _check(lib, "pk_conv_s8", x, ohwi, bias, tin, tw, tout, shape, k, stride, padding, "relu", mult, want,
           tables=conv_quant_tables(data))


def _check(lib, fn, x, w, bias, tin, tw, tout, shape, k, stride, padding, act, out_c, want, pre_pad=False,
           tables=None):
    """Run the kernel on every input of x and compare with TFLM. pre_pad: as the firmware's depthwise
    does, write the padding out first (pk_pad_s8) and run the kernel on the padded input, pad 0."""
    in_scale, in_zp = tin["quantization_parameters"]["scales"][0], int(tin["quantization_parameters"]["zero_points"][0])
    out_scale, out_zp = tout["quantization_parameters"]["scales"][0], int(tout["quantization_parameters"]["zero_points"][0])
    w_scales = tw["quantization_parameters"]["scales"]
    mults, shifts = zip(*(quantize_multiplier(float(np.float64(in_scale) * np.float64(s) / np.float64(out_scale)))
                          for s in w_scales))
    if tables is not None:  # the firmware's flash tables (pipeline.codegen.kernels) must be these very values
        assert len(tables) == 1 and tables[0]["mult"] == list(mults) and tables[0]["shift"] == list(shifts)
    mult = (ctypes.c_int32 * out_c)(*mults)
    shift = (ctypes.c_int32 * out_c)(*shifts)
    oh, ph = _pad(shape[0], k, stride, padding)
    ow, pw = _pad(shape[1], k, stride, padding)
    lo, hi = _act_range(act, out_scale, out_zp)
    p = Params(shape[0], shape[1], shape[2], oh, ow, out_c, k, k, stride, stride, ph, pw, -in_zp, out_zp, lo, hi,
               mult, shift)
    if pre_pad:
        full_h, full_w = (oh - 1) * stride + k, (ow - 1) * stride + k
        p.in_h, p.in_w, p.pad_h, p.pad_w = full_h, full_w, 0, 0
    wb = np.ascontiguousarray(w, dtype=np.int8)
    bb = None if bias is None else np.ascontiguousarray(bias, dtype=np.int32)
    got = np.zeros_like(want)
    for n in range(x.shape[0]):
        xin = np.ascontiguousarray(x[n])
        if pre_pad:
            padded = np.zeros((full_h, full_w, shape[2]), dtype=np.int8)
            lib.pk_pad_s8(xin.ctypes.data_as(ctypes.c_void_p), shape[0], shape[1], shape[2],
                          padded.ctypes.data_as(ctypes.c_void_p), full_h, full_w, ph, pw, ctypes.c_int8(in_zp))
            assert (padded[ph:ph + shape[0], pw:pw + shape[1]] == xin[: full_h - ph, : full_w - pw]).all()
            xin = padded
        out = np.zeros(oh * ow * out_c, dtype=np.int8)
        getattr(lib, fn)(ctypes.byref(p), xin.ctypes.data_as(ctypes.c_void_p), wb.ctypes.data_as(ctypes.c_void_p),
                         None if bb is None else bb.ctypes.data_as(ctypes.c_void_p),
                         out.ctypes.data_as(ctypes.c_void_p))
        got[n] = out.reshape(want.shape[1:])
    assert got.shape == want.shape
    diff = int(np.count_nonzero(got != want))
    assert diff == 0, f"{diff} of {want.size} outputs differ from TFLM"


def test_sum_hw(lib):
    x = np.random.default_rng(2).integers(-128, 128, (6, 6, 32), dtype=np.int8)
    sums = np.zeros(32, dtype=np.int32)
    lib.pk_sum_hw_s8(x.ctypes.data_as(ctypes.c_void_p), 36, 32, sums.ctypes.data_as(ctypes.c_void_p))
    assert sums.tolist() == x.astype(np.int64).sum(axis=(0, 1)).tolist()
    # The two cores' halves (and an odd pixel count: the unrolled loop's tail) give the same sums.
    y = np.random.default_rng(3).integers(-128, 128, (5, 3, 7), dtype=np.int8)
    halves = np.full(7, 12345, dtype=np.int32)
    for lo, hi in ((3, 7), (0, 3)):
        lib.pk_sum_hw_s8_range(y.ctypes.data_as(ctypes.c_void_p), 15, 7, lo, hi, halves.ctypes.data_as(ctypes.c_void_p))
    assert halves.tolist() == y.astype(np.int64).sum(axis=(0, 1)).tolist()


def test_unpack_s4_matches_tflite_layout(lib):
    """TFLite packs INT4 two per byte, low nibble first; every byte value and odd counts."""
    packed = np.arange(256, dtype=np.uint8).astype(np.int8)
    lo = (packed.astype(np.int16) << 12 >> 12).astype(np.int8)  # sign-extended low nibble
    hi = (packed.astype(np.int16) << 8 >> 12).astype(np.int8)   # sign-extended high nibble
    want = np.stack([lo, hi], axis=1).reshape(-1)
    for count in (512, 511, 1, 2):
        for offset in (0, 1):  # an odd destination address takes the byte-wise path
            buf = np.zeros(count + 1, dtype=np.int8)
            dst = buf[offset:offset + count]
            lib.pk_unpack_s4(packed.ctypes.data_as(ctypes.c_void_p), count, dst.ctypes.data_as(ctypes.c_void_p))
            assert dst.tolist() == want[:count].tolist(), (count, offset)


class Part(ctypes.Structure):
    _fields_ = [("oy_lo", ctypes.c_int32), ("oy_hi", ctypes.c_int32)]


def _random_conv(rng, shape, out_c, k, stride, padding, depthwise):
    """Params, input, weights, bias and per-channel quantization of a random int8 conv (no model)."""
    oh, ph = _pad(shape[0], k, stride, padding)
    ow, pw = _pad(shape[1], k, stride, padding)
    mult = (ctypes.c_int32 * out_c)(*rng.integers(1 << 30, 1 << 31, out_c).tolist())
    shift = (ctypes.c_int32 * out_c)(*rng.integers(-12, -5, out_c).tolist())
    p = Params(shape[0], shape[1], shape[2], oh, ow, out_c, k, k, stride, stride, ph, pw, 128, -5, -128, 127,
               mult, shift)
    x = rng.integers(-128, 128, shape, dtype=np.int8)
    w = rng.integers(-127, 128, (1, k, k, out_c) if depthwise else (out_c, k, k, shape[2]), dtype=np.int8)
    bias = rng.integers(-3000, 3000, out_c, dtype=np.int32)
    return p, x, w, bias, (mult, shift)


def _run(lib, fn, p, x, w, bias, out, in_offset=0, out_offset=0):
    ptr = ctypes.c_void_p
    getattr(lib, fn)(ctypes.byref(p), ptr(x.ctypes.data + in_offset), w.ctypes.data_as(ptr),
                     bias.ctypes.data_as(ptr), ptr(out.ctypes.data + out_offset))


SPLIT_CASES = [
    # (shape, out_c, kernel, stride, padding, depthwise)
    ((48, 48, 3), 8, 3, 2, "same", False),    # MicroPizzaNet's first conv
    ((13, 11, 3), 5, 3, 2, "same", False),    # odd sizes and channel count, padding on every side
    ((9, 10, 4), 6, 5, 1, "same", False),     # 5x5: two rows of padding above and below
    ((12, 12, 8), 16, 1, 1, "valid", False),  # pointwise
    ((8, 7, 2), 7, 3, 3, "valid", False),
    ((24, 24, 8), 8, 3, 2, "same", True),     # MicroPizzaNet's depthwise convs
    ((11, 9, 5), 5, 3, 2, "valid", True),
    ((7, 8, 6), 6, 5, 1, "same", True),       # not 3x3: the general path
    ((7, 8, 6), 6, 2, 1, "valid", True),
]


@pytest.mark.parametrize("case", SPLIT_CASES,
                         ids=lambda c: f"{'dw' if c[5] else 'conv'}-{c[0][0]}x{c[0][1]}x{c[0][2]}-k{c[2]}s{c[3]}{c[4]}")
def test_split_halves_equal_whole(lib, case):
    """The two-core board image computes the halves of a conv's output rows on two cores (pk_split,
    pk_part_view): the halves computed separately, at pk_split's boundary and at every other row,
    equal the whole bit for bit, and together write every output byte exactly once."""
    shape, out_c, k, stride, padding, dw = case
    fn = "pk_dwconv_s8" if dw else "pk_conv_s8"
    rng = np.random.default_rng(sum(shape) + 7 * k + out_c)
    p, x, w, bias, _keep = _random_conv(rng, shape, out_c, k, stride, padding, dw)
    whole = np.zeros((p.out_h, p.out_w, out_c), dtype=np.int8)
    _run(lib, fn, p, x, w, bias, whole)

    parts = (Part * 2)()
    per_channel = p.out_h * p.out_w * k * k * (1 if dw else p.in_c)
    if per_channel >= 256:
        assert lib.pk_split(ctypes.byref(p), int(dw), 0, parts) == 2
        assert (parts[0].oy_lo, parts[0].oy_hi, parts[1].oy_lo, parts[1].oy_hi) == (0, p.out_h // 2, p.out_h // 2,
                                                                                  p.out_h)
    else:  # too little work per channel to repeat its setup on a second core
        assert lib.pk_split(ctypes.byref(p), int(dw), 0, parts) == 1
    for cut in range(1, p.out_h):
        got = np.full(whole.shape, 99, dtype=np.int8)  # 99: never written
        written = np.zeros(whole.shape[:1], dtype=np.int32)
        for lo, hi in ((cut, p.out_h), (0, cut)):  # the lower half first: the order does not matter
            view, in_off, out_off = Params(), ctypes.c_int32(), ctypes.c_int32()
            lib.pk_part_view(ctypes.byref(p), ctypes.byref(Part(lo, hi)), ctypes.byref(view), ctypes.byref(in_off),
                             ctypes.byref(out_off))
            assert view.out_h == hi - lo and out_off.value == lo * p.out_w * out_c
            assert 0 <= in_off.value < x.size and view.in_h >= 1
            # The view reads only inside the input: its rows end where the whole's do.
            assert in_off.value + view.in_h * p.in_w * p.in_c == x.size
            part = np.full((hi - lo, p.out_w, out_c), 99, dtype=np.int8)
            _run(lib, fn, view, x, w, bias, part, in_off.value)
            got[lo:hi] = part
            written[lo:hi] += 1
        assert (written == 1).all()
        diff = int(np.count_nonzero(got != whole))
        assert diff == 0, f"cut at row {cut}: {diff} of {whole.size} outputs differ from the whole"


def test_split_keeps_small_work_whole(lib):
    rng = np.random.default_rng(1)
    p, *_ = _random_conv(rng, (6, 6, 4), 8, 3, 1, "same", False)  # 6 * 6 * 8 * 36 = 10,368 MACs
    parts = (Part * 2)()
    assert lib.pk_split(ctypes.byref(p), 0, 10_368, parts) == 2
    assert lib.pk_split(ctypes.byref(p), 0, 10_369, parts) == 1
    assert (parts[0].oy_lo, parts[0].oy_hi) == (0, 6)
    # Fewer than 256 MACs per output channel: each part would repeat the channels' setup for little.
    p, *_ = _random_conv(rng, (2, 2, 1), 64, 3, 1, "same", False)  # 2 * 2 * 9 = 36 MACs per channel
    assert lib.pk_split(ctypes.byref(p), 0, 0, parts) == 1
    p, *_ = _random_conv(rng, (1, 40, 8), 8, 1, 1, "valid", False)  # one output row
    assert lib.pk_split(ctypes.byref(p), 0, 0, parts) == 1
