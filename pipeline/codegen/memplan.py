"""An in-place plan for the tensor arena: one convolution writes its output over its own input.

TFLM's planner never lets two tensors that are alive during the same operator share bytes, so the
arena's peak is an input frame plus the first convolution's output (MicroPizzaNet: 6,912 + 4,608 B).
A convolution that writes its output rows in order only ever needs the input rows at and below
``oy * stride - pad`` once it is on output row ``oy``; the rows above are dead. Placed ``lead`` bytes
below its input, the output overwrites only dead input rows if, for every output row ``oy``::

    (oy + 1) * out_row_bytes <= lead + max(0, oy * stride - pad) * in_row_bytes

This module finds such a convolution in a flatbuffer and the smallest ``lead``; the firmware's
planner (picotflm kernels only) places the two tensors at those offsets, and the kernel checks the
same inequality at run time, band of rows by band of rows, refusing rather than computing over live
input. The two buffers are named to the firmware by TFLM's own description of them: the byte size
(16-byte aligned), the first and last allocation scope (``micro_allocation_info.cpp``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.tflite.reader import enum_names, load_tflite

ALIGN = 16  # MicroArenaBufferAlignment()


@dataclass(frozen=True)
class PlanEntry:
    """One buffer of TFLM's plan placed by us: TFLM's (bytes, first, last) and the offset."""

    tensor: int
    bytes: int
    first: int
    last: int
    offset: int


@dataclass(frozen=True)
class InplacePlan:
    """The convolution computed in place, and what it saves."""

    op_index: int
    op: str
    lead: int  # the output starts this many bytes below the input
    input_bytes: int
    output_bytes: int
    entries: tuple[PlanEntry, ...]

    @property
    def span(self) -> int:
        """Bytes the two tensors take together (instead of their sum)."""
        return max(self.lead + self.input_bytes, self.output_bytes)

    @property
    def saved(self) -> int:
        return self.input_bytes + self.output_bytes - self.span

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["entries"] = [asdict(e) for e in self.entries]
        d.update(span=self.span, saved=self.saved)
        return d


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def min_lead(in_h: int, in_w: int, in_c: int, out_h: int, out_w: int, out_c: int, stride: int, pad: int) -> int:
    """The smallest 16-byte multiple ``lead`` for which every output row lands on dead input rows."""
    out_row, in_row = out_w * out_c, in_w * in_c
    need = max((oy + 1) * out_row - max(0, oy * stride - pad) * in_row for oy in range(out_h))
    return _align(max(need, 0))


def _same_pad(in_size: int, out_size: int, stride: int, k: int) -> int:
    """TFLM's ComputePaddingHeightWidth for SAME (dilation 1): the padding before."""
    total = max((out_size - 1) * stride + k - in_size, 0)
    return total // 2


# A Keras dilated convolution converts to SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND with a batch
# the flatbuffer writes as 1 but the op produces as 4 (block 2x2): rows laid out as the shape says are
# not the rows in memory, so no in-place plan around them (measured: golden 0/8 with it, 8/8 without).
SHAPE_CHANGERS = ("SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND")


def inplace_plan(tflite: bytes) -> InplacePlan | None:
    """The CONV_2D whose in-place output saves the most arena bytes, or None when none qualifies.

    A convolution qualifies when: int8 activations, batch 1, dilation 1, one group; its input is an
    activation only it reads (no other operator, not a model output); its output is produced by it;
    and both tensors can be told apart from every other planned buffer by (bytes, first, last).
    """
    from pipeline.codegen.layout import tensor_lifetimes

    schema, model = load_tflite(tflite)
    if len(model.subgraphs) != 1:
        return None
    sg = model.subgraphs[0]
    op_names = enum_names(schema.BuiltinOperator)
    type_names = enum_names(schema.TensorType)
    tensors = sg.tensors or []
    operators = sg.operators or []
    graph_outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
    readers: dict[int, list[int]] = {}
    reshaped: set[int] = set()  # outputs of ops whose run-time shape is not the flatbuffer's
    for i, op in enumerate(operators):
        for ti in op.inputs if op.inputs is not None else []:
            if ti >= 0:
                readers.setdefault(int(ti), []).append(i)
        oc = model.operatorCodes[op.opcodeIndex]
        if op_names.get(max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))) in SHAPE_CHANGERS:
            reshaped.update(int(t) for t in (op.outputs if op.outputs is not None else []) if t >= 0)
    # Each buffer as TFLM's planner is given it (micro_allocation_info.cpp): the aligned size, and the
    # allocation scopes of its life, where operator k is scope k + 1 and the model's inputs start at 0.
    planned: dict[int, tuple[int, int, int]] = {
        t.index: (t.aligned_bytes, 0 if t.role == "input" else t.first_op + 1, t.last_op + 1)
        for t in tensor_lifetimes(tflite)[1] if t.aligned_bytes > 0}
    first = {ti: v[1] for ti, v in planned.items()}
    last = {ti: v[2] for ti, v in planned.items()}

    best: InplacePlan | None = None
    for i, op in enumerate(operators):
        oc = model.operatorCodes[op.opcodeIndex]
        if op_names.get(max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))) != "CONV_2D":
            continue
        opt = op.builtinOptions
        ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
        outs = [int(x) for x in (op.outputs if op.outputs is not None else [])]
        if opt is None or len(ins) < 2 or len(outs) != 1:
            continue
        x, w, y = tensors[ins[0]], tensors[ins[1]], tensors[outs[0]]
        if type_names.get(x.type) != "INT8" or type_names.get(y.type) != "INT8":
            continue
        xs, ws, ys = (list(map(int, t.shape if t.shape is not None else [])) for t in (x, w, y))
        if len(xs) != 4 or len(ys) != 4 or len(ws) != 4 or xs[0] != 1 or ys[0] != 1 or ws[3] != xs[3]:
            continue
        if int(opt.dilationHFactor or 1) != 1 or int(opt.dilationWFactor or 1) != 1:
            continue
        if ins[0] in reshaped or outs[0] in reshaped:
            continue
        if readers.get(ins[0]) != [i] or ins[0] in graph_outputs or ins[0] not in planned or outs[0] not in planned:
            continue
        if first.get(outs[0]) != i + 1 or last.get(ins[0]) != i + 1:
            continue
        stride = int(opt.strideH or 1)
        pad = _same_pad(xs[1], ys[1], stride, ws[1]) if int(opt.padding or 0) == schema.Padding.SAME else 0
        lead = min_lead(xs[1], xs[2], xs[3], ys[1], ys[2], ys[3], stride, pad)
        xb, yb = planned[ins[0]][0], planned[outs[0]][0]
        keys = [planned[ins[0]], planned[outs[0]]]
        if sum(1 for v in planned.values() if v in keys) != 2 or keys[0] == keys[1]:
            continue  # the firmware could not tell these two buffers from another one
        entries = [PlanEntry(outs[0], yb, first[outs[0]], last[outs[0]], 0),
                   PlanEntry(ins[0], xb, first[ins[0]], last[ins[0]], lead)]
        pad = _padded_scratch(schema, model, op_names, readers.get(outs[0], []), outs[0], last, planned)
        if pad is not None:
            entries.append(pad)
        plan = InplacePlan(i, "CONV_2D", lead, xb, yb, tuple(entries))
        if plan.saved > 0 and (best is None or plan.saved > best.saved):
            best = plan
    return best


def _padded_scratch(schema, model, op_names, readers: list[int], ti: int, last: dict[int, int],
                    planned: dict[int, tuple[int, int, int]]) -> PlanEntry | None:
    """The padded-input scratch buffer of the depthwise convolution that alone reads tensor ``ti``,
    placed at ``ti``'s own offset (0): pk_pad_s8 copies last byte first, so the padded copy may start
    on its input. The buffer is what picotflm's DepthwisePrepare requests (3x3, dilation 1, depth
    multiplier 1, batch 1, with padding): (out - 1) * stride + 3 rows and columns of the channels."""
    if len(readers) != 1:
        return None
    i = readers[0]
    sg = model.subgraphs[0]
    op = sg.operators[i]
    oc = model.operatorCodes[op.opcodeIndex]
    if op_names.get(max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))) != "DEPTHWISE_CONV_2D":
        return None
    opt = op.builtinOptions
    if opt is None or int(op.inputs[0]) != ti or last.get(ti) != i + 1:
        return None
    x, w, y = (sg.tensors[int(op.inputs[0])], sg.tensors[int(op.inputs[1])], sg.tensors[int(op.outputs[0])])
    xs, ws, ys = (list(map(int, t.shape if t.shape is not None else [])) for t in (x, w, y))
    if len(xs) != 4 or len(ys) != 4 or len(ws) != 4 or xs[0] != 1 or ws[1] != 3 or ws[2] != 3:
        return None
    if int(opt.dilationHFactor or 1) != 1 or int(opt.dilationWFactor or 1) != 1 or int(opt.depthMultiplier or 1) != 1:
        return None
    sh, sw = int(opt.strideH or 1), int(opt.strideW or 1)
    ph, pw = (ys[1] - 1) * sh + 3, (ys[2] - 1) * sw + 3
    same = int(opt.padding or 0) == schema.Padding.SAME
    pad_h = _same_pad(xs[1], ys[1], sh, 3) if same else 0
    pad_w = _same_pad(xs[2], ys[2], sw, 3) if same else 0
    if not (pad_h > 0 or pad_w > 0 or ph > xs[1] or pw > xs[2]) or ph < xs[1] or pw < xs[2]:
        return None  # the kernel requests no padded buffer
    key = (_align(ph * pw * xs[3]), i + 1, i + 1)
    if key in planned.values():
        return None  # not distinguishable from a tensor
    return PlanEntry(-1, key[0], key[1], key[2], 0)
