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
        wx8 = pair_weights(schema, model, t_w) if wx is not None else None
        groups = group_records(schema, model, op, pairs, lo_at, zp, act_min, act_max) if name == "CONV_2D" else None
        tables.append({"op": k, "name": name, "channels": channels,
                       "mult": [m for m, _ in pairs], "shift": [e for _, e in pairs],
                       "out_offset": zp, "act_min": act_min, "act_max": act_max,
                       "lo_at": ["INT32_MIN" if v == INT32_MIN else str(v) for v in lo_at], "lo_at_values": lo_at,
                       "k": k_w, "wx": wx, "wx8": wx8, "groups": groups})
    return tables


# The largest k (weights per output channel) whose groups get expanded weights: 16 bytes of flash per
# weight of four channels, for the 1x1 and first-layer convolutions the M0+ spends most time in.
WIDE_MAX_K = 32


def filter_weights(schema, model, t_w):
    """A conv's constant int8 or int4 weights as an (out_c, k) int array, or None (no constant data,
    another type, or data of another size, such as a codebook filter)."""
    import numpy as np

    from pipeline.tflite.reader import unpack_int4

    out_c, k = int(t_w.shape[0]), int(np.prod(t_w.shape[1:]))
    buf = model.buffers[t_w.buffer] if t_w.buffer is not None and 0 <= t_w.buffer < len(model.buffers) else None
    if buf is None or buf.data is None:
        return None
    raw = np.asarray(buf.data, dtype=np.uint8)
    if t_w.type == schema.TensorType.INT8 and raw.size == out_c * k:
        w = raw.view(np.int8)
    elif t_w.type == schema.TensorType.INT4 and raw.size == (out_c * k + 1) // 2:
        w = unpack_int4(raw, out_c * k)
    else:
        return None
    return w.astype(np.int64).reshape(out_c, k)


def interleaved_weights(schema, model, t_w, n: int) -> list[int] | None:
    """A CONV_2D's int8 or int4 weights (out_c x k) interleaved by blocks of n output channels: in
    block b, weight i of channel n * b + c at [(b * k + i) * n + c], as int32; the channels after the
    last whole block are left out. None with fewer than n channels or no constant weights."""
    w = filter_weights(schema, model, t_w)
    if w is None or w.shape[0] < n:
        return None
    out_c, k = w.shape
    blocks = w[: (out_c // n) * n].reshape(out_c // n, n, k)
    return [int(v) for v in blocks.transpose(0, 2, 1).reshape(-1)]


def wide_weights(schema, model, t_w) -> list[int] | None:
    """The weights as pk_span4w reads them, each group of four output channels interleaved (the
    kernel's pk_conv_params::wx). The firmware uses them only for the op whose weights they equal,
    compared at Prepare."""
    return interleaved_weights(schema, model, t_w, 4)


def pair_weights(schema, model, t_w) -> list[int] | None:
    """The same for each pair of groups (eight channels) as one stream (pk_conv_params::wx8: pk_span8x
    loads a byte's eight weights in three loads instead of four)."""
    return interleaved_weights(schema, model, t_w, 8)


# pk_core.c's PK_PATCH_MAX: the largest k whose border pixels the kernel computes by groups (with
# padding); a larger k gets no group records here.
PATCH_MAX_K = 192
# pk_core.h's PK_GROUP_RECORD: a group record's words (four channels' 17: pk_span_fch).
PK_GROUP_RECORD_WORDS = 68
_M32 = 0xFFFFFFFF


def _i32(v: int) -> int:
    v &= _M32
    return v - (1 << 32) if v >= 1 << 31 else v


def span_requant(mult: int, shift: int, lo_at: int, out_offset: int, lo: int, hi: int) -> list[int] | None:
    """pk_core.c's pk_span_fch of one channel as group_setup fills it, but for its last two words
    (the 8 words of pk_span_ch, then pk_fit_of's lim, pl, ml, mh, klo, khi, sh, in 32-bit arithmetic
    as the M0+ computes them); None
    when the channel cannot take the assembly spans (a left shift, no right shift, no confirmed
    ReLU threshold)."""
    left, right = max(shift, 0), max(-shift, 0)
    if left != 0 or right <= 0 or lo_at == INT32_MIN:
        return None
    ch = [lo_at, mult >> 16, mult & 0xFFFF, right, 1 << (right - 1), out_offset, lo, hi]
    fit = [0] * 7
    if right <= 15 and mult > 1 << 30 and hi >= out_offset:
        p32 = (lo_at * mult + (1 << 30)) & _M32
        hh = ((lo_at * mult + (1 << 30)) >> 31) + (1 << (right - 1))
        klo = (((hh & ((1 << right) - 1)) << 15) + ((p32 >> 16) & 0x7FFF)) & _M32
        khi = (hh >> right) + out_offset
        negative = lo_at < -1  # the range's accs all below zero: the sign's -2^15 folded into K
        if negative and klo < 1 << 15:
            klo, khi = klo + (1 << (15 + right)) - (1 << 15), khi - 1
        elif negative:
            klo -= 1 << 15
        step = (mult >> 16) + 1
        n = ((hi - out_offset) << right) & _M32
        d = (0x80000000 - mult) & _M32
        top = _i32(n + (((n >> 7) * (d >> 16)) >> 8)) - lo_at
        lim = top if top < 0xFFFF else 0xFFFF
        if negative:
            lim = min(lim, -1 - lo_at)
        while lim > 0 and ((lim * step + klo) & _M32) > 0x7FFFFFFF:
            lim >>= 1
        if lim > 0:
            fit = [lim, p32 & 0xFFFF, mult & 0xFFFF, mult >> 16, _i32(klo), khi, 15 + right]
    return ch + fit


def group_records(schema, model, op, pairs: list[tuple[int, int]], lo_at: list[int], out_offset: int,
                  act_min: int, act_max: int) -> list[int] | None:
    """A CONV_2D's setup per group of four output channels as pk_core.c's pk_group_record writes it:
    per channel its span_requant, then lo_at minus the folded bias, then the folded bias (the bias
    with the input offset folded in: bias - input zero point * sum of weights). The firmware's Prepare computes the same records from the op and
    uses the host's (flash) at every call only when they are equal. None when a group cannot take the
    assembly spans (a channel fails span_requant, or its accumulators could leave the fast
    requantization's range), when out_c is not a multiple of four, or k > PATCH_MAX_K."""
    import numpy as np

    sg = model.subgraphs[0]
    ins = list(op.inputs)
    t_in, t_w = sg.tensors[ins[0]], sg.tensors[ins[1]]
    w = filter_weights(schema, model, t_w)
    if w is None or w.shape[0] % 4 or w.shape[1] > PATCH_MAX_K or len(pairs) != w.shape[0]:
        return None
    zp_in = t_in.quantization.zeroPoint if t_in.quantization is not None else None
    input_offset = -int(zp_in[0]) if zp_in is not None and len(zp_in) else 0
    bias = [0] * w.shape[0]
    if len(ins) > 2 and ins[2] is not None and ins[2] >= 0:
        t_b = sg.tensors[ins[2]]
        buf = model.buffers[t_b.buffer] if t_b.buffer is not None and 0 <= t_b.buffer < len(model.buffers) else None
        if t_b.type != schema.TensorType.INT32 or buf is None or buf.data is None:
            return None
        bias = [int(v) for v in np.asarray(buf.data, dtype=np.uint8).view("<i4")]
        if len(bias) != w.shape[0]:
            return None
    records: list[int] = []
    for g in range(w.shape[0] // 4):
        rec = group_record(w[4 * g: 4 * g + 4], bias[4 * g: 4 * g + 4], input_offset, pairs[4 * g: 4 * g + 4],
                           lo_at[4 * g: 4 * g + 4], out_offset, act_min, act_max)
        if rec is None:
            return None
        records += rec
    return records


def group_record(w, bias: list[int], input_offset: int, pairs: list[tuple[int, int]], lo_at: list[int],
                 out_offset: int, act_min: int, act_max: int) -> list[int] | None:
    """One group's record (group_records) from its four channels' weights (4 x k), biases,
    (multiplier, shift) pairs and ReLU thresholds; None when it cannot take the assembly spans."""
    import numpy as np

    chans = []
    for c in range(4):
        mult, shift = pairs[c]
        wc = np.asarray(w[c], dtype=np.int64)
        b = _i32(bias[c] + input_offset * int(wc.sum()))
        bound = (abs(b) + 128 * int(np.abs(wc).sum())) & _M32
        left = max(shift, 0)
        fch = span_requant(mult, shift, lo_at[c], out_offset, act_min, act_max)
        if fch is None or mult < 0 or left >= 8 or bound >= 1 << (23 - left):
            return None
        chans += fch + [_i32(lo_at[c] - b), b]
    return chans


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
