"""Kernel tables computed on the host for picotflm's M0+ kernels: requantization multipliers and
shifts, expanded conv weights, activation ranges and per-channel ReLU thresholds. The firmware
checks each table against its own computation once at setup."""
from __future__ import annotations

import math
from typing import Any

# Operators for which firmware/src/kernels has its own M0+ kernel (build.kernels = picotflm).
FAST_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED", "SOFTMAX")


def quantize_multiplier(d: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier (double rounding build): a Q31 multiplier and a power-of-two exponent."""
    if d == 0.0:
        return 0, 0
    m, e = math.frexp(d)
    q = math.floor(abs(m) * (1 << 31) + 0.5) * (1 if m >= 0 else -1)  # std::round: half away from zero
    if q == 1 << 31:
        q //= 2
        e += 1
    if e < -31:
        return 0, 0
    return int(q), int(e)


def conv_quant_tables(tflite: bytes) -> list[dict[str, Any]]:
    """Per output channel (multiplier, shift) of every int8 CONV_2D / DEPTHWISE_CONV_2D, computed as
    TFLM's PopulateConvolutionQuantizationParams does (float scales widened to double). The firmware
    keeps them in flash and points TFLM's per-channel arrays at them, but only after checking they
    equal what TFLM computed at Prepare: the 8 bytes per channel then stay out of the tensor arena."""
    import numpy as np

    from pipeline.tflite.reader import load_tflite

    schema, model = load_tflite(tflite)
    sg = model.subgraphs[0]
    codes = [max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) for oc in model.operatorCodes]
    wanted = {schema.BuiltinOperator.CONV_2D: "CONV_2D", schema.BuiltinOperator.DEPTHWISE_CONV_2D: "DEPTHWISE_CONV_2D"}
    tables = []
    for k, op in enumerate(sg.operators or []):
        name = wanted.get(codes[op.opcodeIndex])
        if name is None or op.inputs is None or len(op.inputs) < 2:
            continue
        t_in, t_w, t_out = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
        if t_in.type != schema.TensorType.INT8 or any(t.quantization is None or t.quantization.scale is None
                                                       for t in (t_in, t_w, t_out)):
            continue
        f32 = lambda v: float(np.float32(v))  # noqa: E731 - the flatbuffer stores float32
        in_scale, out_scale = f32(t_in.quantization.scale[0]), f32(t_out.quantization.scale[0])
        channels = int(t_w.shape[3] if name == "DEPTHWISE_CONV_2D" else t_w.shape[0])
        scales = [f32(x) for x in t_w.quantization.scale]
        if len(scales) not in (1, channels):
            continue
        pairs = [quantize_multiplier(in_scale * (scales[c] if len(scales) > 1 else scales[0]) / out_scale)
                 for c in range(channels)]
        zp = int(t_out.quantization.zeroPoint[0]) if t_out.quantization.zeroPoint is not None else 0
        act_min, act_max = activation_range(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0,
                                            out_scale, zp)
        lo_at = [relu_threshold(m, e, zp, act_min, act_max) for m, e in pairs]
        k_w = int(np.prod(t_w.shape[1:]))
        wx = wide_weights(schema, model, t_w) if name == "CONV_2D" and k_w <= WIDE_MAX_K else None
        tables.append({"op": k, "name": name, "channels": channels,
                       "mult": [m for m, _ in pairs], "shift": [e for _, e in pairs],
                       "out_offset": zp, "act_min": act_min, "act_max": act_max,
                       "lo_at": ["INT32_MIN" if v == INT32_MIN else str(v) for v in lo_at], "lo_at_values": lo_at,
                       "k": k_w, "wx": wx})
    return tables


# The largest k (weights per output channel) whose groups get expanded weights: 16 bytes of flash per
# weight of four channels, for the 1x1 and first-layer convolutions the M0+ spends most time in.
WIDE_MAX_K = 32


def wide_weights(schema, model, t_w) -> list[int] | None:
    """A CONV_2D's int8 or int4 weights (out_c x k) as pk_span4w reads them: for each group of four
    output channels, weight i of channel c at [i * 4 + c], as int32 (the kernel's pk_conv_params::wx).
    None when the layer has fewer than four output channels or no constant weights. The firmware uses
    them only for the op whose weights they equal, compared at Prepare."""
    import numpy as np

    from pipeline.tflite.reader import unpack_int4

    out_c, k = int(t_w.shape[0]), int(np.prod(t_w.shape[1:]))
    buf = model.buffers[t_w.buffer] if t_w.buffer is not None and 0 <= t_w.buffer < len(model.buffers) else None
    if out_c < 4 or buf is None or buf.data is None:
        return None
    raw = np.asarray(buf.data, dtype=np.uint8)
    if t_w.type == schema.TensorType.INT8 and raw.size == out_c * k:
        w = raw.view(np.int8)
    elif t_w.type == schema.TensorType.INT4 and raw.size == (out_c * k + 1) // 2:
        w = unpack_int4(raw, out_c * k)
    else:
        return None
    groups = w[: (out_c // 4) * 4 * k].reshape(out_c // 4, 4, k)
    return [int(v) for v in groups.transpose(0, 2, 1).reshape(-1)]


INT32_MIN = -(1 << 31)


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLM's CalculateActivationRangeQuantized for int8 (ActivationFunctionType: 1 RELU, 2 RELU_N1_TO_1,
    3 RELU6, else the whole range), float32 division and round half away from zero as in TFLM."""
    import numpy as np

    def quantize(f: float) -> int:
        x = float(np.float32(f) / np.float32(scale))
        return zero_point + int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)

    if activation == 1:
        return max(-128, quantize(0.0)), 127
    if activation == 3:
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if activation == 2:
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    return -128, 127


def _out_q(acc: int, mult: int, left: int, right: int, out_offset: int, lo: int, hi: int) -> int:
    """pk_core.c's pk_out_q: requantize (CMSIS-NN's arm_nn_requantize), add the offset, clamp."""
    v = (acc << left) & 0xFFFFFFFF
    v = v - (1 << 32) if v >= 1 << 31 else v
    h = (v * mult + (1 << 30)) >> 31
    mask = (1 << right) - 1
    r = h >> right
    if (h & mask) > (mask >> 1) + (1 if r < 0 else 0):
        r += 1
    return min(max(r + out_offset, lo), hi)


def relu_threshold(mult: int, shift: int, out_offset: int, lo: int, hi: int) -> int:
    """pk_core.c's pk_lo_threshold, step for step: the largest accumulator that requantizes to ``lo``
    (INT32_MIN when it cannot be confirmed). The firmware compares the host's value with its own
    once per boot and uses the host's only when they are equal."""
    left, right = max(shift, 0), max(-shift, 0)
    span = lo - out_offset
    if mult <= 0 or right > 20 or span < -512 or span > 512:
        return INT32_MIN
    num = (2 * span + 1) * (1 << (30 + right))
    a = abs(num) // mult * (1 if num >= 0 else -1)  # C: int64 division truncates toward zero
    a >>= left
    t = max(-(1 << 23), min(1 << 23, a))

    def q(x: int) -> int:
        return _out_q(x, mult, left, right, out_offset, lo, hi)

    for _ in range(64):
        if q(t + 1) != lo:
            break
        t += 1
    for _ in range(64):
        if q(t) == lo:
            break
        t -= 1
    if q(t) != lo or q(t + 1) == lo:
        return INT32_MIN
    return t
