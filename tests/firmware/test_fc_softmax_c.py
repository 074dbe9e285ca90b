"""picotflm's FULLY_CONNECTED and SOFTMAX arithmetic (firmware/src/kernels/pk_fc_softmax.c), compiled
for the host and checked bit for bit against host TFLM on single-layer int8 models."""
import ctypes
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.firmware.test_kernels_c import quantize_multiplier, single_layer  # written once for the kernel tests

SRC = Path(__file__).resolve().parents[2] / "firmware" / "src" / "kernels"
I32, P8, P32 = ctypes.c_int32, ctypes.POINTER(ctypes.c_int8), ctypes.POINTER(ctypes.c_int32)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc to compile the kernels")
    so = tmp_path_factory.mktemp("pkfs") / "libpkfs.so"
    r = subprocess.run(["gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                        str(SRC / "pk_core.c"), str(SRC / "pk_fc_softmax.c"), "-o", str(so)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lib = ctypes.CDLL(str(so))
    lib.pk_fc_s8.argtypes = [P8, P8, P32, P8] + [I32] * 5 + [P32, P32] + [I32] * 3
    lib.pk_softmax_s8.argtypes = [P8, P8] + [I32] * 5
    return lib


def _model(layer, shape, seed, scale=1.0):
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert

    model = single_layer(layer, shape, seed)
    rep = (np.random.default_rng(seed).random((16, *shape)) * 2 - 1).astype(np.float32) * scale
    return convert(model, rep, ConvertConfig(representative_samples=16, slim=False))


def _op(data: bytes):
    import tensorflow as tf

    ip = tf.lite.Interpreter(model_content=data)
    ops = ip._get_ops_details()
    assert len(ops) == 1, [o["op_name"] for o in ops]
    det = {d["index"]: d for d in ip.get_tensor_details()}
    return ops[0]["op_name"], [det[i] for i in ops[0]["inputs"] if i >= 0], det[ops[0]["outputs"][0]], ip


def _f32(x: float) -> float:
    return float(np.float32(x))


FC_CASES = [((32,), 6, None), ((20,), 7, "relu"), ((48,), 10, None), ((17,), 5, "relu6"), ((100,), 3, None)]


@pytest.mark.parametrize("case", FC_CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-{c[1]}-{c[2]}")
def test_fully_connected_bit_exact_with_tflm(lib, case):
    from pipeline.stages.verify import run_tflm

    shape, units, act = case
    data = _model(lambda keras: keras.layers.Dense(units, activation=act), shape, seed=units)
    op, ins, out, ip = _op(data)
    assert op == "FULLY_CONNECTED"
    x_t, w_t = ins[0], ins[1]
    w = np.ascontiguousarray(ip.get_tensor(w_t["index"]).astype(np.int8))
    bias = np.ascontiguousarray(ip.get_tensor(ins[2]["index"]).astype(np.int32)) if len(ins) > 2 else None
    (s_in,), (z_in,) = x_t["quantization_parameters"]["scales"], x_t["quantization_parameters"]["zero_points"]
    (s_out,), (z_out,) = out["quantization_parameters"]["scales"], out["quantization_parameters"]["zero_points"]
    s_w = w_t["quantization_parameters"]["scales"]
    # Per channel (the converter's default for Dense) or per tensor: in double, from the float32 scales.
    qs = [quantize_multiplier(_f32(s_in) * _f32(s) / _f32(s_out)) for s in s_w]
    mult = np.array([q[0] for q in qs], np.int32)
    shift = np.array([q[1] for q in qs], np.int32)
    from pipeline.codegen.fc_tables import fc_quant_tables

    tables = fc_quant_tables(data)  # what the firmware keeps in flash: the same per-channel values
    assert [(t["channels"], t["mult"], t["shift"]) for t in tables] == (
        [(units, mult.tolist(), shift.tolist())] if len(s_w) > 1 else [])
    lo, hi = -128, 127
    if act in ("relu", "relu6"):
        lo = max(lo, int(z_out))
    if act == "relu6":
        hi = min(hi, int(z_out) + int(round(6.0 / _f32(s_out))))
    rng = np.random.default_rng(5)
    xs = rng.integers(-128, 128, (6, *shape), dtype=np.int8)
    want, _ = run_tflm(data, xs, 64 * 1024)
    depth = w.shape[1]
    for x, ref in zip(xs, want):
        x = np.ascontiguousarray(x.reshape(-1))
        got = np.zeros(x.size // depth * units, np.int8)
        lib.pk_fc_s8(x.ctypes.data_as(P8), w.ctypes.data_as(P8), bias.ctypes.data_as(P32) if bias is not None else None,
                     got.ctypes.data_as(P8), x.size // depth, depth, units, -int(z_in), int(z_out), mult.ctypes.data_as(P32),
                     shift.ctypes.data_as(P32), int(len(s_w) > 1), lo, hi)
        np.testing.assert_array_equal(got, ref.astype(np.int8))


def softmax_params(input_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """TFLM's PreprocessSoftmaxScaling and CalculateInputRadius (5 integer bits)."""
    real = min(beta * _f32(input_scale) * (1 << (31 - 5)), (1 << 31) - 1.0)
    mult, shift = quantize_multiplier(real)
    assert shift >= 0
    radius = math.floor(1.0 * ((1 << 5) - 1) * (1 << (31 - 5)) / (1 << shift))
    return mult, shift, -radius


SOFTMAX_CASES = [((6,), 1.0), ((6,), 8.0), ((10,), 30.0), ((3, 7), 3.0), ((2,), 0.05), ((64,), 12.0)]


@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=lambda c: f"{'x'.join(map(str, c[0]))}-range{c[1]}")
def test_softmax_bit_exact_with_tflm(lib, case):
    from pipeline.stages.verify import run_tflm

    shape, scale = case
    data = _model(lambda keras: keras.layers.Softmax(), shape, seed=len(shape), scale=scale)
    op, ins, out, _ = _op(data)
    assert op == "SOFTMAX"
    (s_in,) = ins[0]["quantization_parameters"]["scales"]
    assert list(out["quantization_parameters"]["zero_points"]) == [-128]
    mult, shift, diff_min = softmax_params(s_in)
    rng = np.random.default_rng(9)
    xs = rng.integers(-128, 128, (12, *shape), dtype=np.int8)
    xs[0] = 7  # a row of equal values
    xs[1] = -128
    xs[1].reshape(-1)[0] = 127  # one value far above the rest (below diff_min)
    want, _ = run_tflm(data, xs, 64 * 1024)
    row = shape[-1]
    for x, ref in zip(xs, want):
        x = np.ascontiguousarray(x.reshape(-1))
        got = np.zeros_like(x)
        lib.pk_softmax_s8(x.ctypes.data_as(P8), got.ctypes.data_as(P8), x.size // row, row, mult, shift, diff_min)
        np.testing.assert_array_equal(got, ref.astype(np.int8))
