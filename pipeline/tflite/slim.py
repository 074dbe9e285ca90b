"""Rewriting a ``.tflite`` smaller: ``slim`` drops what TFLM never reads (names, signature defs,
metadata, shape signatures, conv bias quantization, empty and duplicate buffers, duplicate vectors and
tables; see ``SLIM_TRICKS``); the convert stage proves it by host TFLM giving identical outputs."""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from pipeline.errors import PipelineError
from pipeline.tflite.reader import BIAS_INPUT, check_references, enum_names, load_schema, load_tflite

SLIM_TRICKS = (
    "names",            # tensor/subgraph names, signature defs, description, metadata: TFLM reads none of them
    "shape_signature",  # Tensor.shape_signature and has_rank: never read by TFLM (it reads shape only)
    "min_max",          # QuantizationParameters.min/max/details: calibration leftovers, never read
    "bias_quant",       # quantization of int32/int64 biases of int8/int16 CONV_2D, DEPTHWISE_CONV_2D: not read
    "zero_points",      # a per-channel zero-point vector of one repeated value -> that one value (off by default)
    "buffers",          # activations share the empty buffer 0; identical constant buffers become one
    "opcodes",          # the operator code stored once (TFLM and TFLite read max(builtin, deprecated) code)
    "dedup",            # identical vectors (shapes, scales, zero points), quantization and options tables stored once
)
# TFLM accepts one zero point for a per-channel tensor (micro_allocator.cc: "As a space-saving optimization,
# zero point arrays for weights can be reduced to a single value"). TFLite's interpreter refuses it
# ("QuantizationParam has 1 zero_point values and 6 scale values. Must have same number."): the verify
# stage hands TFLite the same model with the vector written out again (``expand_zero_points``).
DEFAULT_SLIM_TRICKS = SLIM_TRICKS

_CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


def slim(data: bytes) -> bytes:
    """The same model with everything TFLM does not read taken out (the tricks in ``DEFAULT_SLIM_TRICKS``).

    Constant data, operators and their options are kept; constant buffers stay 16-byte aligned (an
    int32 bias at an unaligned address faults on the Cortex-M0+). The convert stage proves it by host
    TFLM giving identical outputs before and after. Raises PipelineError for a malformed flatbuffer.
    """
    return slim_with(data, DEFAULT_SLIM_TRICKS)


def slim_with(data: bytes, tricks: Iterable[str]) -> bytes:
    """``slim`` with only the named tricks (to measure each one); unknown names raise ValueError."""
    tricks = set(tricks)
    unknown = tricks - set(SLIM_TRICKS)
    if unknown:
        raise ValueError(f"unknown slim trick(s) {sorted(unknown)}; known: {', '.join(SLIM_TRICKS)}")
    schema, model = load_tflite(data)
    check_references(model)
    op_names = enum_names(schema.BuiltinOperator)
    try:
        if "names" in tricks:
            _drop_names(model)
        for sg in model.subgraphs:
            for t in sg.tensors or []:
                if "shape_signature" in tricks:
                    t.shapeSignature = None
                    if t.shape is not None and len(t.shape) > 0:
                        t.hasRank = False  # has_rank only matters for a tensor of unknown shape
                q = t.quantization
                if q is not None and "min_max" in tricks:
                    q.min = q.max = None
                    q.detailsType, q.details = 0, None
                if q is not None and "zero_points" in tricks and q.zeroPoint is not None and len(q.zeroPoint) > 1 \
                        and np.all(np.asarray(q.zeroPoint) == q.zeroPoint[0]):
                    q.zeroPoint = np.asarray(q.zeroPoint[:1], dtype=np.int64)
                if q is not None and (q.scale is None or len(q.scale) == 0) and q.min is None and q.max is None \
                        and q.details is None:
                    t.quantization = None  # an empty table: TFLM only reads a non-empty scale
            if "bias_quant" in tricks:
                for ti in _conv_biases(schema, model, sg, op_names):
                    sg.tensors[ti].quantization = None
        if "opcodes" in tricks:
            for oc in model.operatorCodes or []:
                code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
                # TFLM and TFLite read max(builtin_code, deprecated_builtin_code): one field suffices. The
                # version stays: TFLM ignores it, but TFLite picks its kernel by it (with version 1 it ran
                # an INT4 model it otherwise refuses, 6 LSB off TFLM).
                if code < schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES:
                    oc.deprecatedBuiltinCode, oc.builtinCode = code, 0
                else:
                    oc.deprecatedBuiltinCode = schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES
                    oc.builtinCode = code
        if "buffers" in tricks:
            _merge_buffers(schema, model)
        if "dedup" in tricks:
            _share_tables(model)
    except (AttributeError, IndexError, TypeError) as e:
        raise PipelineError(f"the .tflite file is malformed and cannot be slimmed ({type(e).__name__}: {e})",
                            hint="re-run the convert stage, or set convert.slim = false") from None
    builder = aligned_builder(len(data), dedup="dedup" in tricks)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def expand_zero_points(data: bytes) -> bytes:
    """The model with every single zero point of a per-channel tensor written out once per scale
    again (the inverse of the ``zero_points`` trick), for TFLite's interpreter, which requires as many
    zero points as scales. The bytes unchanged when there is none to expand."""
    schema, model = load_tflite(data)
    changed = False
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            q = t.quantization
            if q is not None and q.scale is not None and len(q.scale) > 1 and q.zeroPoint is not None \
                    and len(q.zeroPoint) == 1:
                q.zeroPoint = np.full(len(q.scale), q.zeroPoint[0], dtype=np.int64)
                changed = True
    if not changed:
        return data
    builder = aligned_builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())




def _drop_names(model) -> None:
    for sg in model.subgraphs or []:
        sg.name = None
        for t in sg.tensors or []:
            t.name = None
    model.signatureDefs = None
    model.description = None
    if model.metadata:
        # Keep nothing: min_runtime_version and CONVERSION_METADATA are for the TFLite runtime only.
        dropped = {m.buffer for m in model.metadata}
        model.metadata = None
        for i in dropped:
            if 0 <= i < len(model.buffers):
                model.buffers[i].data = None
    model.metadataBuffer = None


def _conv_biases(schema, model, sg, op_names) -> list[int]:
    """Bias tensors whose quantization no TFLM kernel reads: int32/int64 biases used only as the bias
    of int8/int16 CONV_2D / DEPTHWISE_CONV_2D. (PopulateConvolutionQuantizationParams in
    lite/kernels/kernel_util.cc reads the bias scale only for uint8 input; FULLY_CONNECTED's per-tensor
    path checks bias scale == input scale * filter scale, so its bias keeps its quantization.)"""
    uses: dict[int, list[tuple[str, int]]] = {}
    for op in sg.operators or []:
        oc = model.operatorCodes[op.opcodeIndex]
        name = op_names.get(max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)), "")
        for pos, ti in enumerate(op.inputs if op.inputs is not None else []):
            if ti >= 0:
                uses.setdefault(int(ti), []).append((name, pos))
        first = int(op.inputs[0]) if op.inputs is not None and len(op.inputs) else -1
        if name in _CONV_OPS and first >= 0 and sg.tensors[first].type not in (schema.TensorType.INT8,
                                                                                 schema.TensorType.INT16):
            for ti in op.inputs:  # a uint8 (legacy) conv reads its bias scale: keep it
                uses.setdefault(int(ti), []).append(("legacy", -1))
    out = []
    for ti, where in uses.items():
        t = sg.tensors[ti]
        if t.type in (schema.TensorType.INT32, schema.TensorType.INT64) and t.quantization is not None and \
                all(name in _CONV_OPS and pos == BIAS_INPUT[name] for name, pos in where):
            out.append(ti)
    return out


def _merge_buffers(schema, model) -> None:
    """Tensors without data point at the empty buffer 0, tensors with identical data at one buffer; the
    buffer list keeps buffer 0 empty (the schema's sentinel) and is renumbered."""
    buffers = model.buffers or []
    if not buffers:
        return
    keep = [schema.BufferT()]
    by_bytes: dict[bytes, int] = {}
    for m in model.metadata or []:  # metadata points at buffers too (``names`` drops it)
        if 0 <= m.buffer < len(buffers):
            keep.append(buffers[m.buffer])
            m.buffer = len(keep) - 1
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            b = buffers[t.buffer] if 0 <= t.buffer < len(buffers) else None
            if b is not None and ((b.offset or 0) or (b.size or 0)):  # data outside the flatbuffer: keep as is
                keep.append(b)
                t.buffer = len(keep) - 1
                continue
            raw = bytes(bytearray(b.data)) if b is not None and b.data is not None else b""
            if not raw:
                t.buffer = 0
                continue
            if raw not in by_bytes:
                by_bytes[raw] = len(keep)
                keep.append(b)
            t.buffer = by_bytes[raw]
    model.buffers = keep


def _share_tables(model) -> None:
    """Tensors with identical quantization, and operators with identical builtin options, get one table
    object each, which ``_shared(cls).Pack`` writes once per file."""
    shared: dict[tuple, Any] = {}
    for sg in model.subgraphs:
        for t in sg.tensors or []:
            q = t.quantization
            if q is None or q.min is not None or q.max is not None or q.details is not None:
                continue
            key = ("q", np.asarray(q.scale if q.scale is not None else [], np.float32).tobytes(),
                   np.asarray(q.zeroPoint if q.zeroPoint is not None else [], np.int64).tobytes(),
                   int(q.quantizedDimension or 0))
            t.quantization = shared.setdefault(key, _as_shared(q))
        for op in sg.operators or []:
            o = op.builtinOptions
            fields = vars(o).items() if o is not None else ()
            if o is None or not all(v is None or isinstance(v, (bool, int, float)) for _, v in fields):
                continue  # options with vectors or sub-tables are left alone
            op.builtinOptions = shared.setdefault((type(o).__name__, tuple(sorted(fields))), _as_shared(o))


_SHARED: dict[type, type] = {}


def _as_shared(obj):
    """``obj`` re-classed so that its ``Pack`` writes it once per builder, however many refer to it."""
    cls = type(obj)
    if cls not in _SHARED.values():
        if cls not in _SHARED:
            def Pack(self, builder, _base=cls):
                cache = builder.__dict__.setdefault("_tables", {})
                if id(self) not in cache:
                    cache[id(self)] = _base.Pack(self, builder)
                return cache[id(self)]

            _SHARED[cls] = type(f"Shared{cls.__name__}", (cls,), {"Pack": Pack})
        obj.__class__ = _SHARED[cls]
    return obj


def aligned_builder(size: int, *, dedup: bool = False):
    """A flatbuffers Builder whose byte vectors (the tensor buffers) start 16-byte aligned, as
    TFLiteConverter writes them. The generated ``Pack`` aligns byte vectors to 1; an int32 bias
    at an unaligned address faults on the Cortex-M0+, which has no unaligned loads. With ``dedup``,
    a vector with the same type and contents as one already written is referred to, not written
    again (flatbuffers allows several tables to point at one vector; TFLM only reads them)."""
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        def CreateNumpyVector(self, x: np.ndarray):
            key = (x.dtype.str, x.tobytes())
            if dedup and key in self._vectors:
                return self._vectors[key]
            if x.dtype != np.uint8:
                off = super().CreateNumpyVector(x)
            else:
                payload = x.tobytes()
                self.StartVector(1, len(payload), 16)
                self.head -= len(payload)
                self.Bytes[self.head: self.head + len(payload)] = payload
                self.vectorNumElems = len(payload)
                off = self.EndVector()
            self._vectors[key] = off
            return off

    b = AlignedBuilder(size)
    b._vectors = {}
    return b


def buffer_offsets(data: bytes) -> list[int]:
    """File offsets at which each non-empty constant buffer's bytes start (for alignment checks)."""
    schema = load_schema()
    m = schema.Model.GetRootAs(bytearray(data), 0)
    out = []
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        if b.DataLength() > 0:
            o = b._tab.Offset(4)
            out.append(b._tab.Vector(o))
    return out
