"""Per-channel requantization of the int8 FULLY_CONNECTED operators, computed on the host as TFLM's
CalculateOpDataFullyConnected does (float scales widened to double, QuantizeMultiplier). picotflm's
FULLY_CONNECTED keeps them in flash, but only after checking they equal what TFLM computed at Prepare:
the 8 bytes per channel then stay out of the tensor arena."""
from __future__ import annotations

from typing import Any

from pipeline.codegen.kernels import quantize_multiplier


def fc_quant_tables(tflite: bytes) -> list[dict[str, Any]]:
    """One table per FULLY_CONNECTED with int8 activations and per-channel int8 weights: the op's
    index, its channel count and each channel's (multiplier, shift)."""
    import numpy as np

    from pipeline.tflite.reader import load_tflite

    schema, model = load_tflite(tflite)
    sg = model.subgraphs[0]
    codes = [max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) for oc in model.operatorCodes]
    tables = []
    for k, op in enumerate(sg.operators or []):
        if codes[op.opcodeIndex] != schema.BuiltinOperator.FULLY_CONNECTED or op.inputs is None or len(op.inputs) < 2:
            continue
        t_in, t_w, t_out = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
        if any(t.type != schema.TensorType.INT8 for t in (t_in, t_w, t_out)) or any(
                t.quantization is None or t.quantization.scale is None for t in (t_in, t_w, t_out)):
            continue
        scales = [float(np.float32(x)) for x in t_w.quantization.scale]
        channels = int(t_w.shape[0])
        if len(scales) <= 1 or len(scales) != channels:
            continue  # per tensor: one multiplier, kept in the op's 16 bytes
        in_scale, out_scale = float(np.float32(t_in.quantization.scale[0])), float(np.float32(t_out.quantization.scale[0]))
        pairs = [quantize_multiplier(in_scale * s / out_scale) for s in scales]
        tables.append({"op": k, "channels": channels, "mult": [m for m, _ in pairs], "shift": [e for _, e in pairs]})
    return tables
