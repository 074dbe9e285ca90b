"""Each fast op's data (what picotflm's kernels keep between Prepare and Eval) as C initializers, for flash.

The firmware's Prepare computes an op's record (``ConvData``, ``MeanData``, ``FcData``, ``SoftmaxData`` in
``firmware/src/kernels/op_data.h``) as before, then looks it up, byte for byte, in the tables written from
here: an op whose record is there points at it in flash and keeps nothing in the arena; any other keeps its
16 bytes in the arena, as it would without these tables. So a record computed differently here only costs
arena bytes, never a wrong result. Written here as TFLM and the kernels compute them: padding
(ComputePaddingHeightWidth), activation ranges, requantization, softmax scaling, and the scratch buffer
indices, which TFLM numbers in request order over the model's Prepare calls.
"""
from __future__ import annotations

import math
from typing import Any

from pipeline.codegen.kernels import activation_range, quantize_multiplier, wide_weights

# Ops whose Prepare requests no scratch buffer whatever their types (the scratch count stays exact past
# them); any op not listed here or handled below makes the later scratch indices unknown.
_NO_SCRATCH = ("RESHAPE", "SQUEEZE")
# pk_softmax_s8's longest row (softmax.cpp's kMaxRow).
_SOFTMAX_MAX_ROW = 512
# TFLM's kScaledDiffIntegerBits for int8 softmax.
_SCALED_DIFF_BITS = 5


def tflm_padding(padding: int, stride: int, dilation: int, in_size: int, filter_size: int) -> int:
    """TFLM's ComputeOutSize then ComputePaddingWithOffset (schema Padding: 0 SAME, 1 VALID)."""
    effective = (filter_size - 1) * dilation + 1
    out = (in_size + stride - 1) // stride if padding == 0 else (in_size + stride - effective) // stride
    return max((out - 1) * stride + effective - in_size, 0) // 2


def softmax_params(beta: float, in_scale: float) -> tuple[int, int, int]:
    """TFLM's PreprocessSoftmaxScaling and CalculateInputRadius for int8 (double rounding build)."""
    real = min(beta * in_scale * (1 << (31 - _SCALED_DIFF_BITS)), (1 << 31) - 1.0)
    mult, left = quantize_multiplier(real)
    radius = math.floor(1.0 * ((1 << _SCALED_DIFF_BITS) - 1) * (1 << (31 - _SCALED_DIFF_BITS)) / (1 << left))
    return mult, left, -radius


# conv_data.h's kAuxNoWide and kAuxGroups: a CONV_2D's aux without a wide table, and with group records.
AUX_NO_WIDE, AUX_GROUPS = 0x3FFF, 0x4000


def _first(tables: list[dict[str, Any]], same) -> int | None:
    return next((t["index"] for t in tables if same(t)), None)


def op_data_records(variants: list[tuple[str, bytes]], quant_tables: list[dict[str, Any]],
                    fc_tables: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Per kind (``conv``, ``mean``, ``fc``, ``softmax``), the distinct C initializers of the records the
    firmware's Prepare computes for the fast ops of every variant ``(name, device tflite)``.
    ``quant_tables`` and ``fc_tables`` are the render's global lists (entries with ``index``, ``variant``,
    ``op``), in the order the firmware is given them: it takes the first equal table, and so does this."""
    import numpy as np

    from pipeline.tflite.reader import enum_names, load_tflite

    out: dict[str, list[str]] = {"conv": [], "mean": [], "fc": [], "softmax": []}

    def add(kind: str, init: str) -> None:
        if init not in out[kind]:
            out[kind].append(init)

    for vname, tflite in variants:
        schema, model = load_tflite(tflite)
        if len(model.subgraphs) != 1:
            continue  # scratch indices are counted over every subgraph's ops
        sg = model.subgraphs[0]
        names = enum_names(schema.BuiltinOperator)
        types = enum_names(schema.TensorType)
        codes = [max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) for oc in model.operatorCodes]

        def tensor(i: int):
            return sg.tensors[i] if i is not None and i >= 0 else None

        def qparams(t) -> tuple[float, int]:
            q = t.quantization
            zp = int(q.zeroPoint[0]) if q is not None and q.zeroPoint is not None and len(q.zeroPoint) else 0
            return float(np.float32(q.scale[0])), zp

        def quantized(*ts) -> bool:
            return all(t is not None and t.quantization is not None and t.quantization.scale is not None
                       and len(t.quantization.scale) for t in ts)

        scratch: int | None = 0
        for k, op in enumerate(sg.operators or []):
            name = names.get(codes[op.opcodeIndex])
            ins = list(op.inputs) if op.inputs is not None else []
            outs = list(op.outputs) if op.outputs is not None else []
            t_in = tensor(ins[0]) if ins else None
            t_out = tensor(outs[0]) if outs else None
            ttype = (lambda t: types.get(t.type) if t is not None else None)
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(ins) >= 2 and t_in is not None:
                t_w, t_b = tensor(ins[1]), tensor(ins[2]) if len(ins) > 2 else None
                o = op.builtinOptions
                fbi: int | None = 0  # TFLM's OpDataConv starts zeroed; only int4 weights set it
                if ttype(t_w) == "INT4":  # TFLM's Prepare requests the unpack buffer
                    fbi, scratch = (scratch, scratch + 1) if scratch is not None else (None, None)
                in_shape, w_shape, out_shape = list(t_in.shape), list(t_w.shape), list(t_out.shape)
                dil_h, dil_w = int(o.dilationHFactor or 1), int(o.dilationWFactor or 1)
                pad_h = tflm_padding(o.padding, o.strideH, dil_h, in_shape[1], w_shape[1])
                pad_w = tflm_padding(o.padding, o.strideW, dil_w, in_shape[2], w_shape[2])
                aux: int | None = -1
                depthwise = name == "DEPTHWISE_CONV_2D"
                if depthwise:
                    dm = int(o.depthMultiplier or 0)
                    padded_h = (out_shape[1] - 1) * o.strideH + w_shape[1]
                    padded_w = (out_shape[2] - 1) * o.strideW + w_shape[2]
                    int8_3x3 = (ttype(t_in) == "INT8" and w_shape[1:3] == [3, 3] and dil_h == dil_w == 1 and dm == 1
                                and in_shape[0] == 1 and padded_h >= in_shape[1] and padded_w >= in_shape[2])
                    if int8_3x3 and (pad_h > 0 or pad_w > 0 or padded_h > in_shape[1] or padded_w > in_shape[2]):
                        aux, scratch = (scratch, scratch + 1) if scratch is not None else (None, None)
                    as_conv = (in_shape[3] == 1 and dm == out_shape[3] and w_shape[3] == out_shape[3]
                               and w_shape[1] * w_shape[2] * out_shape[3] <= 144 and dil_h == dil_w == 1)
                    shape_ok = (dm == 1 and in_shape[3] == out_shape[3]) or as_conv
                else:
                    shape_ok = in_shape[3] == w_shape[3]
                fast = (ttype(t_in) == "INT8" and ttype(t_w) in ("INT8", "INT4")
                        and (t_b is None or ttype(t_b) == "INT32") and dil_h == dil_w == 1 and shape_ok
                        and len(in_shape) == 4 and len(w_shape) == 4)
                mine = next((t for t in quant_tables if t["variant"] == vname and t["op"] == k), None)
                if not fast or mine is None or fbi is None or aux is None or not quantized(t_in, t_out):
                    continue
                table = _first(quant_tables, lambda t: t["channels"] == mine["channels"]
                               and t["mult"] == mine["mult"] and t["shift"] == mine["shift"])
                if not depthwise:
                    wx = wide_weights(schema, model, t_w)
                    aux = -1 if wx is None else _first(
                        quant_tables, lambda t: t["wx"] is not None and t["channels"] == w_shape[0] and t["wx"] == wx)
                    aux = -1 if aux is None else aux
                    # ConvPrepare's check of the table's group records against the op's own (the
                    # weights' sums from a wide table, else from int8 weights)
                    held = next(t for t in quant_tables if t["index"] == table).get("groups")
                    if (held is not None and held == mine.get("groups")
                            and (aux >= 0 or ttype(t_w) == "INT8")):
                        aux = (aux if aux >= 0 else AUX_NO_WIDE) | AUX_GROUPS
                _, in_zp = qparams(t_in)
                out_scale, out_zp = qparams(t_out)
                act_min, act_max = activation_range(o.fusedActivationFunction or 0, out_scale, out_zp)
                add("conv", f"{{&kPicotflmQuantTables[{table}], {pad_h}, {pad_w}, {in_zp}, {out_zp}, {act_min}, "
                            f"{act_max}, {fbi}, {aux}}}")
            elif name == "MEAN" and len(ins) >= 2 and t_in is not None:
                int8 = ttype(t_in) == "INT8"
                idx = None
                if int8 or ttype(t_in) == "INT16":  # TFLM's Prepare requests the sums buffer
                    idx, scratch = (scratch, scratch + 1) if scratch is not None else (None, None)
                t_axis = tensor(ins[1])
                buf = model.buffers[t_axis.buffer] if t_axis is not None and t_axis.buffer else None
                axes = (np.frombuffer(bytes(np.asarray(buf.data, dtype=np.uint8)), dtype="<i4").tolist()
                        if buf is not None and buf.data is not None and ttype(t_axis) == "INT32" else [])
                axes = sorted(a + 4 if a < 0 else a for a in axes)
                if not int8 or idx is None or len(t_in.shape) != 4 or axes != [1, 2] or not quantized(t_in, t_out):
                    continue
                in_scale, in_zp = qparams(t_in)
                out_scale, out_zp = qparams(t_out)
                mult, shift = quantize_multiplier(in_scale / out_scale)
                if -128 <= shift <= 127:
                    add("mean", f"{{{mult}, {idx}, {shift}, {in_zp}, {out_zp}, false}}")
            elif name == "FULLY_CONNECTED" and len(ins) >= 2 and t_in is not None:
                mine = next((t for t in fc_tables if t["variant"] == vname and t["op"] == k), None)
                t_w = tensor(ins[1])
                w_zp = t_w.quantization.zeroPoint if t_w is not None and t_w.quantization is not None else None
                if (mine is None or len(t_out.shape) != 2 or not quantized(t_in, t_out)
                        or (w_zp is not None and any(int(z) for z in w_zp))):
                    scratch = None  # no record; if the stock kernel runs it, its Prepare may request scratch
                    continue
                table = _first(fc_tables, lambda t: t["channels"] == mine["channels"]
                               and t["mult"] == mine["mult"] and t["shift"] == mine["shift"])
                _, in_zp = qparams(t_in)
                out_scale, out_zp = qparams(t_out)
                act_min, act_max = activation_range(op.builtinOptions.fusedActivationFunction or 0, out_scale,
                                                    out_zp)
                add("fc", f"{{{{kPicotflmFcMult{table}}}, {{kPicotflmFcShift{table}}}, {in_zp}, {out_zp}, "
                          f"{act_min}, {act_max}, 1, 0}}")
            elif name == "SOFTMAX" and t_in is not None:
                row = int(t_in.shape[-1]) if len(t_in.shape) else 0
                if not (ttype(t_in) == ttype(t_out) == "INT8" and 1 <= row <= _SOFTMAX_MAX_ROW
                        and quantized(t_in, t_out)):
                    scratch = None
                    continue
                beta = float(np.float32(op.builtinOptions.beta)) if op.builtinOptions is not None else 0.0
                mult, left, diff_min = softmax_params(beta, qparams(t_in)[0])
                add("softmax", f"{{{{{mult}}}, {left}, {diff_min}, 0}}")
            elif name not in _NO_SCRATCH:
                scratch = None
    return out
