"""Reading a ``.tflite`` flatbuffer: operators, tensors, dtypes, per-layer bytes, payload vs structure.

``inspect_tflite`` reads any ``.tflite`` (ours or a user's) without importing TensorFlow, through the
schema that ships with the TFLM Python package. ``payload_bytes`` says how much of the flatbuffer is
data TFLM needs (constants, scales, zero points) and how much is structure.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import PipelineError

TFLITE_SCHEMA_VERSION = 3

# Builtin operator -> MicroMutableOpResolver method, for every builtin TFLM registers.
# (Read off tensorflow/lite/micro/micro_mutable_op_resolver.h of the pico-tflmicro we build with.)
TFLM_RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax", "ARG_MIN": "AddArgMin",
    "ASSIGN_VARIABLE": "AddAssignVariable", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul", "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs", "BROADCAST_TO": "AddBroadcastTo", "CALL_ONCE": "AddCallOnce",
    "CAST": "AddCast", "CEIL": "AddCeil", "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D",
    "COS": "AddCos", "CUMSUM": "AddCumSum", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace", "DEQUANTIZE": "AddDequantize", "DIV": "AddDiv", "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup", "EQUAL": "AddEqual", "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill", "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod", "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd", "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish", "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D", "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum", "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad", "MUL": "AddMul", "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack", "PAD": "AddPad", "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "READ_VARIABLE": "AddReadVariable", "REDUCE_MAX": "AddReduceMax", "RELU6": "AddRelu6", "RELU": "AddRelu",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "ROUND": "AddRound", "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2", "SHAPE": "AddShape", "SIN": "AddSin", "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax", "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQRT": "AddSqrt", "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference", "SQUEEZE": "AddSqueeze", "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub", "SUM": "AddSum", "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv", "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack", "VAR_HANDLE": "AddVarHandle", "WHILE": "AddWhile", "ZEROS_LIKE": "AddZerosLike",
}

# TfLiteType enumerator and bits per element, by schema TensorType name.
TFLITE_TYPES: dict[str, tuple[str, float]] = {
    "FLOAT32": ("kTfLiteFloat32", 32), "FLOAT16": ("kTfLiteFloat16", 16), "INT32": ("kTfLiteInt32", 32),
    "UINT8": ("kTfLiteUInt8", 8), "INT64": ("kTfLiteInt64", 64), "BOOL": ("kTfLiteBool", 8),
    "INT16": ("kTfLiteInt16", 16), "INT8": ("kTfLiteInt8", 8), "FLOAT64": ("kTfLiteFloat64", 64),
    "INT4": ("kTfLiteInt4", 4), "UINT16": ("kTfLiteUInt16", 16), "UINT32": ("kTfLiteUInt32", 32),
}

# Input index of the bias of each operator that has one.
BIAS_INPUT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}
_WEIGHT_OPS = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1, "TRANSPOSE_CONV": 1}


def load_schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


# ------------------------------------------------------------------------------- reading a model
@dataclass
class TensorInfo:
    index: int
    name: str
    dtype: str
    shape: list[int]
    scale: list[float]
    zero_point: list[int]
    buffer_bytes: int  # bytes of constant data (0 for activations)

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        bits = TFLITE_TYPES.get(self.dtype, ("", 8))[1]
        return int(np.ceil(self.elements * bits / 8))


@dataclass
class LayerInfo:
    """One operator, with what its constant weight tensor holds."""

    index: int
    op: str
    output_shape: list[int]
    weight_dtype: str = ""
    weight_bytes: int = 0
    weight_count: int = 0
    unique_values: int = 0
    unique_per_channel_max: int = 0  # per-channel quantization scales each channel's values apart
    sparsity: float = 0.0
    bias_bytes: int = 0
    macs: int = 0


@dataclass
class ModelInfo:
    size_bytes: int
    sha256: str
    schema_version: int
    ops: list[str]  # distinct builtin operators, in first-use order
    op_sequence: list[str]  # every operator of subgraph 0 in execution order
    input: TensorInfo
    output: TensorInfo
    layers: list[LayerInfo]
    constant_bytes: int  # all constant buffers (weights, biases, shapes)
    weight_bytes: int  # constant weight tensors of conv/depthwise/fc
    macs: int
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def unpack_int4(raw: np.ndarray, count: int) -> np.ndarray:
    lo = (raw & 0x0F).astype(np.int8)
    hi = ((raw >> 4) & 0x0F).astype(np.int8)
    both = np.stack([lo, hi], axis=-1).reshape(-1)[:count]
    return np.where(both > 7, both - 16, both).astype(np.int8)


def load_tflite(data: bytes):
    """The TFLite schema module and the unpacked model (``ModelT``) of a flatbuffer with at least one
    subgraph. Raises PipelineError if it is not a usable TFLite model."""
    schema = load_schema()
    if len(data) < 16 or data[4:8] != b"TFL3":
        raise PipelineError(
            "the file is not a TFLite flatbuffer (no 'TFL3' identifier)",
            hint="give a .tflite file written by TFLiteConverter or by `picotflm run`",
        )
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # a corrupt flatbuffer raises whatever the generated code hits
        raise PipelineError(f"the .tflite file is corrupt or truncated ({type(e).__name__}: {e})",
                            hint="re-run the convert stage or re-export the model") from None
    if not model.subgraphs:
        raise PipelineError("the .tflite file has no subgraph", hint="re-export the model")
    return schema, model


def inspect_tflite(data: bytes) -> ModelInfo:
    """Read a ``.tflite`` flatbuffer. Raises PipelineError if it is not a usable TFLite model."""
    schema, model = load_tflite(data)
    op_names = enum_names(schema.BuiltinOperator)
    type_names = enum_names(schema.TensorType)
    sg = model.subgraphs[0]
    buffers = model.buffers or []

    def buf_bytes(t) -> bytes:
        if t.buffer is None or t.buffer >= len(buffers):
            return b""
        b = buffers[t.buffer]
        if b is None or b.data is None:
            return b""
        return bytes(bytearray(b.data))

    def tinfo(i: int) -> TensorInfo:
        t = sg.tensors[i]
        q = t.quantization
        scale = [float(s) for s in (q.scale if q is not None and q.scale is not None else [])]
        zp = [int(z) for z in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])]
        shape = [int(s) for s in (t.shape if t.shape is not None else [])]
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else (t.name or "")
        return TensorInfo(i, name, type_names.get(t.type, f"TYPE{t.type}"), shape, scale, zp, len(buf_bytes(t)))

    def opname(opcode_index: int) -> str:
        oc = model.operatorCodes[opcode_index]
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        if code == schema.BuiltinOperator.CUSTOM:
            cn = oc.customCode.decode() if isinstance(oc.customCode, bytes) else str(oc.customCode)
            return f"CUSTOM:{cn}"
        return op_names.get(code, f"OP{code}")

    operators = sg.operators or []
    op_sequence = [opname(op.opcodeIndex) for op in operators]
    ops: list[str] = []
    for name in op_sequence:
        if name not in ops:
            ops.append(name)

    layers: list[LayerInfo] = []
    total_macs = 0
    weight_bytes = 0
    for k, op in enumerate(operators):
        name = op_sequence[k]
        inputs = [i for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        outputs = [i for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        out = tinfo(outputs[0]) if outputs else None
        layer = LayerInfo(index=k, op=name, output_shape=out.shape if out else [])
        if name in _WEIGHT_OPS and len(inputs) >= 2:
            w = sg.tensors[inputs[1]]
            raw = buf_bytes(w)
            wi = tinfo(inputs[1])
            layer.weight_dtype = wi.dtype
            layer.weight_bytes = len(raw)
            layer.weight_count = wi.elements
            if raw:
                if wi.dtype == "INT4":
                    vals = unpack_int4(np.frombuffer(raw, np.uint8), wi.elements)
                elif wi.dtype == "INT8":
                    vals = np.frombuffer(raw, np.int8)
                elif wi.dtype == "FLOAT32":
                    vals = np.frombuffer(raw, np.float32)
                else:
                    vals = np.frombuffer(raw, np.uint8)
                layer.unique_values = int(np.unique(vals).size)
                # Channels: the first weight dimension (conv/fc: output channel), the last for depthwise.
                ws = wi.shape
                if vals.size == wi.elements and len(ws) >= 2:
                    arr = vals.reshape(ws)
                    axis = len(ws) - 1 if name == "DEPTHWISE_CONV_2D" else 0
                    arr = np.moveaxis(arr, axis, 0).reshape(ws[axis], -1)
                    layer.unique_per_channel_max = int(max(np.unique(row).size for row in arr))
                layer.sparsity = float(np.mean(vals == 0)) if vals.size else 0.0
            weight_bytes += layer.weight_bytes
            if len(inputs) >= 3:
                layer.bias_bytes = len(buf_bytes(sg.tensors[inputs[2]]))
            oshape = out.shape if out else []
            ws = wi.shape
            if name == "CONV_2D" and len(oshape) == 4 and len(ws) == 4:
                layer.macs = oshape[1] * oshape[2] * oshape[3] * ws[1] * ws[2] * ws[3]
            elif name == "DEPTHWISE_CONV_2D" and len(oshape) == 4 and len(ws) == 4:
                layer.macs = oshape[1] * oshape[2] * oshape[3] * ws[1] * ws[2]
            elif name == "FULLY_CONNECTED" and len(ws) == 2:
                batch = int(np.prod(oshape[:-1])) if len(oshape) > 1 else 1
                layer.macs = batch * ws[0] * ws[1]
            elif name == "TRANSPOSE_CONV" and len(ws) == 4:
                inp = tinfo(inputs[2]) if len(inputs) > 2 else None
                if inp is not None and len(inp.shape) == 4:
                    layer.macs = inp.shape[1] * inp.shape[2] * inp.shape[3] * ws[0] * ws[1] * ws[2]
        total_macs += layer.macs
        layers.append(layer)

    constant_bytes = sum(len(bytearray(b.data)) for b in buffers if b is not None and b.data is not None)
    if sg.inputs is None or sg.outputs is None or len(sg.inputs) == 0 or len(sg.outputs) == 0:
        raise PipelineError("the .tflite model has no input or no output tensor", hint="re-export the model")
    return ModelInfo(
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        schema_version=int(model.version),
        ops=ops,
        op_sequence=op_sequence,
        input=tinfo(int(sg.inputs[0])),
        output=tinfo(int(sg.outputs[0])),
        layers=layers,
        constant_bytes=constant_bytes,
        weight_bytes=weight_bytes,
        macs=total_macs,
        extras={
            "inputs": len(sg.inputs),
            "outputs": len(sg.outputs),
            "subgraphs": len(model.subgraphs),
            "signature_defs": len(model.signatureDefs or []),
            "metadata": [m.name.decode() if isinstance(m.name, bytes) else str(m.name) for m in (model.metadata or [])],
        },
    )


def check_tflm_compatible(info: ModelInfo, *, require_int8_io: bool = True) -> None:
    """Refuse, before any firmware work, a model TFLM cannot run on the Pico as we render it."""
    if info.schema_version != TFLITE_SCHEMA_VERSION:
        raise PipelineError(
            f"the model has flatbuffer schema version {info.schema_version}, TFLM expects {TFLITE_SCHEMA_VERSION}",
            hint="convert it with a current TFLiteConverter",
        )
    missing = [op for op in info.ops if op not in TFLM_RESOLVER_METHODS]
    if missing:
        raise PipelineError(
            f"the model uses operator(s) TFLM does not provide: {', '.join(missing)}",
            hint="replace those layers with ones TFLM supports (Conv2D, DepthwiseConv2D, pooling, Dense, ReLU, ...)",
        )
    if info.extras.get("inputs") != 1 or info.extras.get("outputs") != 1 or info.extras.get("subgraphs") != 1:
        raise PipelineError(
            "the model must have exactly one input, one output and one subgraph",
            hint="export a single-input, single-output classifier",
        )
    if require_int8_io and (info.input.dtype != "INT8" or info.output.dtype != "INT8"):
        raise PipelineError(
            f"the model's input/output are {info.input.dtype}/{info.output.dtype}, int8 is required",
            hint="convert with full-integer quantization (the default 'convert' stage does)",
        )


SLIM_GOAL_RATIO = 1.5  # the open goal: flatbuffer <= 1.5x its payload

def check_references(model) -> None:
    """PipelineError unless every tensor's buffer, every operator's opcode and every tensor index an
    operator or subgraph names exist (a rewrite must not turn a dangling reference into a valid one)."""
    n_buffers, n_codes = len(model.buffers or []), len(model.operatorCodes or [])
    for g, sg in enumerate(model.subgraphs):
        n = len(sg.tensors or [])
        bad = [f"tensor {i} -> buffer {t.buffer}" for i, t in enumerate(sg.tensors or [])
               if not 0 <= int(t.buffer or 0) < max(n_buffers, 1)]
        for k, op in enumerate(sg.operators or []):
            if not 0 <= int(op.opcodeIndex or 0) < n_codes:
                bad.append(f"operator {k} -> opcode {op.opcodeIndex}")
            named = list(op.inputs if op.inputs is not None else []) + list(op.outputs if op.outputs is not None else [])
            for ti in named:
                if not -1 <= int(ti) < n:
                    bad.append(f"operator {k} -> tensor {ti}")
        for ti in list(sg.inputs if sg.inputs is not None else []) + list(sg.outputs if sg.outputs is not None else []):
            if not 0 <= int(ti) < n:
                bad.append(f"subgraph input/output -> tensor {ti}")
        if bad:
            raise PipelineError(f"the .tflite file is malformed: subgraph {g} refers to what does not exist "
                                f"({'; '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})",
                                hint="re-run the convert stage or re-export the model")


def payload_bytes(data: bytes) -> dict[str, Any]:
    """The bytes TFLM truly needs as data, against the flatbuffer that carries them.

    payload = constant tensor data (weights as stored, packed INT4 included; biases; other constants such
    as MEAN's axis; identical buffers counted once)
            + 4 B per quantization scale TFLM reads (float32): every scale of a quantized tensor except a
              bias's (a bias scale is input scale x weight scale; TFLM recomputes it, and only
              FULLY_CONNECTED checks the stored one)
            + 4 B per zero point needed (TFLM holds them as int32): one per quantized non-bias tensor, one
              per channel only where a tensor's channels have different zero points (TFLM widens a
              single stored zero point to every channel).
    Everything else in the file is structure: shapes, tensor/operator/quantization tables, options,
    offsets, vtables, alignment padding, and the int64 zero-point vectors the schema stores.
    ``ratio`` = flatbuffer bytes / payload bytes. Raises PipelineError for a malformed flatbuffer.
    """
    schema, model = load_tflite(data)
    check_references(model)
    op_names = enum_names(schema.BuiltinOperator)
    buffers = model.buffers or []
    roles: dict[tuple[int, int], str] = {}
    for g, sg in enumerate(model.subgraphs):
        for op in sg.operators or []:
            oc = model.operatorCodes[op.opcodeIndex]
            name = op_names.get(max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)), "")
            ins = list(op.inputs if op.inputs is not None else [])
            if name in _WEIGHT_OPS and len(ins) > 1 and ins[1] >= 0:
                roles.setdefault((g, int(ins[1])), "weight")
            pos = BIAS_INPUT.get(name)
            if pos is not None and len(ins) > pos and ins[pos] >= 0:
                roles[(g, int(ins[pos]))] = "bias"
    seen: set[bytes] = set()
    out = {"weight_bytes": 0, "bias_bytes": 0, "other_constant_bytes": 0, "scales": 0, "zero_points": 0}
    for g, sg in enumerate(model.subgraphs):
        for i, t in enumerate(sg.tensors or []):
            role = roles.get((g, i), "other")
            b = buffers[t.buffer] if t.buffer is not None and 0 <= t.buffer < len(buffers) else None
            raw = bytes(bytearray(b.data)) if b is not None and b.data is not None else b""
            if raw and raw not in seen:
                seen.add(raw)
                out[f"{role}_bytes" if role != "other" else "other_constant_bytes"] += len(raw)
            q = t.quantization
            if q is None or q.scale is None or len(q.scale) == 0 or role == "bias":
                continue
            out["scales"] += len(q.scale)
            zp = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0])
            out["zero_points"] += 1 if zp.size == 0 or np.all(zp == zp.flat[0]) else int(zp.size)
    out["constant_bytes"] = out["weight_bytes"] + out["bias_bytes"] + out["other_constant_bytes"]
    out["quantization_bytes"] = 4 * out["scales"] + 4 * out["zero_points"]
    out["payload_bytes"] = out["constant_bytes"] + out["quantization_bytes"]
    out["flatbuffer_bytes"] = len(data)
    out["ratio"] = round(len(data) / out["payload_bytes"], 3) if out["payload_bytes"] else None
    return out


def payload_line(p: dict[str, Any]) -> str:
    """"flatbuffer 4,800 B vs payload 2,056 B = 2.33x" (the goal is <= 1.5x)."""
    ratio = "n/a" if p.get("ratio") is None else f"{p['ratio']:.2f}x"
    return f"flatbuffer {p['flatbuffer_bytes']:,} B vs payload {p['payload_bytes']:,} B = {ratio}"
