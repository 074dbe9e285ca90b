"""An in-place plan for the tensor arena: convolutions and depthwise convolutions write their output over
their own input.

TFLM's planner never lets two tensors that are alive during the same operator share bytes, so the
arena's peak is an input plus an output (MicroPizzaNet: the frame and the first convolution's output).
A convolution that writes its output rows in order only ever needs the input rows at and below
``oy * stride - pad`` once it is on output row ``oy``; the rows above are dead. Placed ``lead`` bytes
below its input, the output overwrites only dead input rows if, for every output row ``oy``::

    (oy + 1) * out_row_bytes <= lead + max(0, oy * stride - pad) * in_row_bytes

A depthwise convolution with padding first copies its input into a padded buffer, last byte first, so
that copy may start at the input itself; its output then goes ``lead`` bytes below the copy (the same
inequality, on the padded rows; TinyEngine computes depthwise convolutions in place the same way).

This module lists the buffers TFLM's planner is given (tensors, and the padded copies picotflm's
depthwise kernel requests), the operators that may run in place, and picks the set of them whose
layout needs the fewest bytes (each in-place operator ties its buffers into one rigid group; groups are
placed as TFLM's greedy planner places buffers). The firmware's planner (picotflm kernels only) puts
the buffers at those offsets, and the kernels check the same inequality at run time, band of rows by
band of rows, refusing rather than computing over live input. The buffers are named to the firmware
by TFLM's own description of them: the byte size (16-byte aligned), the first and last allocation
scope (``micro_allocation_info.cpp``).
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
class InplaceOp:
    """One operator computed in place: its output ``lead`` bytes below its input (or below the padded
    copy of it, which starts at the input itself; ``output_bytes`` 0: only the padded copy is placed)."""

    op_index: int
    op: str
    lead: int
    input_bytes: int
    output_bytes: int
    padded_bytes: int


@dataclass(frozen=True)
class InplacePlan:
    """The operators computed in place and the offset of every buffer the firmware's planner is given.
    ``op_index`` .. ``output_bytes``: the in-place convolution that saves the most; ``head_bytes``: the
    planned area the layout needs; ``live_peak_bytes``: the most bytes live buffers cover at once."""

    op_index: int
    op: str
    lead: int  # the output starts this many bytes below the input
    input_bytes: int
    output_bytes: int
    entries: tuple[PlanEntry, ...]
    ops: tuple[InplaceOp, ...] = ()
    head_bytes: int = 0
    live_peak_bytes: int = 0
    live_peak_op: int = 0

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
        d["ops"] = [asdict(o) for o in self.ops]
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


# ------------------------------------------------------------------------ every op where it is safe
@dataclass(frozen=True)
class Buffer:
    """A buffer TFLM's planner is given: a tensor (``tensor`` >= 0) or a depthwise conv's padded-input
    scratch (``tensor`` -1, requested by operator ``op``), with its 16-byte aligned size and scopes."""

    id: int
    tensor: int
    bytes: int
    first: int
    last: int
    op: int = -1


@dataclass(frozen=True)
class Link:
    """Operator ``op_index`` in place: its output ``output`` starts ``lead`` bytes below what the kernel
    reads, ``source`` (its input, or its padded copy ``pad``, which starts at the input itself)."""

    op_index: int
    op: str
    input: int
    output: int
    lead: int
    pad: int | None = None

    @property
    def source(self) -> int:
        return self.pad if self.pad is not None else self.input


def _op_name(model, op_names, op) -> str:
    oc = model.operatorCodes[op.opcodeIndex]
    return op_names.get(max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)), "")


def plan_buffers(tflite: bytes) -> tuple[list[Buffer], list[Link]]:
    """Every buffer the firmware's planner is given that the flatbuffer can name (tensors, and the
    padded copies picotflm's depthwise kernel requests), and every operator that can run in place:
    a CONV_2D or a depth-multiplier-1 DEPTHWISE_CONV_2D with int8 activations, batch 1, dilation 1,
    whose input only it reads (and dies there) and whose output it produces."""
    from pipeline.codegen.layout import tensor_lifetimes

    schema, model = load_tflite(tflite)
    if len(model.subgraphs) != 1:
        return [], []
    sg = model.subgraphs[0]
    op_names = enum_names(schema.BuiltinOperator)
    type_names = enum_names(schema.TensorType)
    tensors, operators = sg.tensors or [], sg.operators or []
    graph_outputs = {int(t) for t in (sg.outputs if sg.outputs is not None else [])}
    readers: dict[int, list[int]] = {}
    reshaped: set[int] = set()
    for i, op in enumerate(operators):
        for ti in op.inputs if op.inputs is not None else []:
            if ti >= 0:
                readers.setdefault(int(ti), []).append(i)
        if _op_name(model, op_names, op) in SHAPE_CHANGERS:
            reshaped.update(int(t) for t in (op.outputs if op.outputs is not None else []) if t >= 0)
    buffers: list[Buffer] = []
    by_tensor: dict[int, Buffer] = {}
    for t in tensor_lifetimes(tflite)[1]:
        if t.aligned_bytes > 0:
            b = Buffer(len(buffers), t.index, t.aligned_bytes, 0 if t.role == "input" else t.first_op + 1,
                       t.last_op + 1)
            buffers.append(b)
            by_tensor[t.index] = b
    links: list[Link] = []
    for i, op in enumerate(operators):
        name = _op_name(model, op_names, op)
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        opt = op.builtinOptions
        ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
        outs = [int(x) for x in (op.outputs if op.outputs is not None else [])]
        if opt is None or len(ins) < 2 or len(outs) != 1 or ins[0] not in by_tensor or outs[0] not in by_tensor:
            continue
        x, w, y = tensors[ins[0]], tensors[ins[1]], tensors[outs[0]]
        xs, ws, ys = (list(map(int, t.shape if t.shape is not None else [])) for t in (x, w, y))
        if type_names.get(x.type) != "INT8" or type_names.get(y.type) != "INT8":
            continue
        if len(xs) != 4 or len(ys) != 4 or len(ws) != 4 or xs[0] != 1 or ys[0] != 1:
            continue
        if int(opt.dilationHFactor or 1) != 1 or int(opt.dilationWFactor or 1) != 1:
            continue
        if name == "CONV_2D" and ws[3] != xs[3]:
            continue
        if name == "DEPTHWISE_CONV_2D" and (int(opt.depthMultiplier or 1) != 1 or ys[3] != xs[3]):
            continue
        if ins[0] in reshaped or outs[0] in reshaped or readers.get(ins[0]) != [i] or ins[0] in graph_outputs:
            continue
        bx, by = by_tensor[ins[0]], by_tensor[outs[0]]
        if by.first != i + 1 or bx.last != i + 1:
            continue
        sh, sw = int(opt.strideH or 1), int(opt.strideW or 1)
        same = int(opt.padding or 0) == schema.Padding.SAME
        pad_h = _same_pad(xs[1], ys[1], sh, ws[1]) if same else 0
        if name == "DEPTHWISE_CONV_2D" and ws[1] == 3 and ws[2] == 3:
            # picotflm's depthwise kernel copies its input into a padded buffer first (DepthwisePrepare)
            ph, pw = (ys[1] - 1) * sh + 3, (ys[2] - 1) * sw + 3
            pad_w = _same_pad(xs[2], ys[2], sw, 3) if same else 0
            if ph >= xs[1] and pw >= xs[2] and (pad_h > 0 or pad_w > 0 or ph > xs[1] or pw > xs[2]):
                p = Buffer(len(buffers), -1, _align(ph * pw * xs[3]), i + 1, i + 1, op=i)
                buffers.append(p)
                lead = min_lead(ph, pw, xs[3], ys[1], ys[2], ys[3], sh, 0)
                links.append(Link(i, name, bx.id, by.id, lead, p.id))
                links.append(Link(i, name, bx.id, -1, 0, p.id))  # the padded copy alone over the input
                continue
        links.append(Link(i, name, bx.id, by.id, min_lead(xs[1], xs[2], xs[3], ys[1], ys[2], ys[3], sh, pad_h)))
    return buffers, links


def _live(a: Buffer, b: Buffer) -> bool:
    return a.first <= b.last and b.first <= a.last


def place(buffers: list[Buffer], links: list[Link]) -> dict[int, int] | None:
    """Offsets for every buffer with ``links`` in place: each link's padded copy at its input's offset
    and its output ``lead`` below its source, the rest as TFLM's greedy planner would (largest first,
    lowest offset that overlaps no buffer alive at the same time). Buffers tied by links are placed
    together, as one rigid group. None when the links contradict each other."""
    rel: dict[int, int] = {}
    adj: dict[int, list[tuple[int, int]]] = {}
    allowed: set[frozenset[int]] = set()
    for k in links:
        edges = [(k.input, k.output, -k.lead)] if k.pad is None else [(k.input, k.pad, 0)] + (
            [(k.pad, k.output, -k.lead)] if k.output >= 0 else [])
        for a, b, d in edges:
            adj.setdefault(a, []).append((b, d))
            adj.setdefault(b, []).append((a, -d))
        ids = [i for i in (k.input, k.output, k.pad) if i is not None and i >= 0]
        allowed.update(frozenset((a, b)) for a in ids for b in ids if a != b)
    groups: list[list[int]] = []
    for b in buffers:
        if b.id in rel:
            continue
        rel[b.id] = 0
        group, todo = [b.id], [b.id]
        while todo:
            a = todo.pop()
            for c, d in adj.get(a, []):
                if c not in rel:
                    rel[c] = rel[a] + d
                    group.append(c)
                    todo.append(c)
                elif rel[c] != rel[a] + d:
                    return None
        low = min(rel[g] for g in group)
        for g in group:
            rel[g] -= low
        groups.append(group)
    by_id = {b.id: b for b in buffers}
    for group in groups:  # inside a group only a link's own buffers may share bytes while alive
        for i, a in enumerate(group):
            for c in group[i + 1:]:
                ba, bc = by_id[a], by_id[c]
                if _live(ba, bc) and rel[a] < rel[c] + bc.bytes and rel[c] < rel[a] + ba.bytes \
                        and frozenset((a, c)) not in allowed:
                    return None
    off: dict[int, int] = {}
    placed: list[int] = []
    for group in sorted(groups, key=lambda g: (-max(by_id[i].bytes for i in g), min(g))):
        cands = sorted({0} | {off[p] + by_id[p].bytes - rel[m] for p in placed for m in group
                              if _live(by_id[p], by_id[m])})
        for base in cands:
            if base < 0:
                continue
            if all(not (_live(by_id[p], by_id[m]) and off[p] < base + rel[m] + by_id[m].bytes
                        and base + rel[m] < off[p] + by_id[p].bytes) for m in group for p in placed):
                break
        for m in group:
            off[m] = base + rel[m]
        placed += group
    return off


def head_bytes(buffers: list[Buffer], off: dict[int, int]) -> int:
    return max((off[b.id] + b.bytes for b in buffers), default=0)


def choose_links(buffers: list[Buffer], links: list[Link]) -> tuple[list[Link], dict[int, int]]:
    """The set of in-place operators whose layout needs the smallest head: a local search from every
    link and from none, toggling one link at a time while the head shrinks (ties: fewer links)."""
    keys: dict[tuple[int, int, int], int] = {}
    for b in buffers:
        keys[(b.bytes, b.first, b.last)] = keys.get((b.bytes, b.first, b.last), 0) + 1
    ok = [k for k in links if all(keys[(buffers[i].bytes, buffers[i].first, buffers[i].last)] == 1
                                  for i in (k.input, k.output, k.pad) if i is not None and i >= 0)]

    def cost(sel: tuple[bool, ...]) -> tuple[int, int] | None:
        off = place(buffers, [k for k, s in zip(ok, sel) if s])
        return None if off is None else (head_bytes(buffers, off), sum(sel))

    best_sel, best = None, None
    full = tuple(k.output >= 0 for k in ok)  # every op in place, padded copies with their outputs
    for start in (full, tuple(True for _ in ok), tuple(False for _ in ok)):
        sel, c = start, cost(start)
        if c is None:
            sel, c = tuple(False for _ in ok), cost(tuple(False for _ in ok))
        improved = True
        while improved:
            improved = False
            for i in range(len(ok)):
                t = sel[:i] + (not sel[i],) + sel[i + 1:]
                ct = cost(t)
                if ct is not None and ct < c:
                    sel, c, improved = t, ct, True
        if best is None or c < best:
            best_sel, best = sel, c
    chosen = [k for k, s in zip(ok, best_sel or ()) if s]
    return chosen, place(buffers, chosen) or {}


def live_peak(buffers: list[Buffer], off: dict[int, int]) -> tuple[int, int]:
    """The most bytes the buffers alive at one scope cover (overlaps counted once), and that scope."""
    best = (0, 0)
    for scope in sorted({b.first for b in buffers} | {b.last for b in buffers}):
        spans = sorted((off[b.id], off[b.id] + b.bytes) for b in buffers if b.first <= scope <= b.last)
        total, end = 0, None
        for lo, hi in spans:
            if end is None or lo >= end:
                total += hi - lo
                end = hi
            elif hi > end:
                total += hi - end
                end = hi
        best = max(best, (total, scope))
    return best


def inplace_plan(tflite: bytes) -> InplacePlan | None:
    """The in-place layout of the arena's planned area, or None when no operator can run in place or
    running them in place needs no fewer bytes than TFLM's own plan. Every buffer whose (bytes, first,
    last) no other buffer shares is given its offset; the firmware's planner places the rest."""
    buffers, links = plan_buffers(tflite)
    chosen, off = choose_links(buffers, links)
    if not chosen or head_bytes(buffers, off) >= head_bytes(buffers, place(buffers, []) or {}):
        return None
    by_id = {b.id: b for b in buffers}
    keys: dict[tuple[int, int, int], int] = {}
    for b in buffers:
        keys[(b.bytes, b.first, b.last)] = keys.get((b.bytes, b.first, b.last), 0) + 1
    entries = tuple(PlanEntry(b.tensor, b.bytes, b.first, b.last, off[b.id]) for b in buffers
                    if keys[(b.bytes, b.first, b.last)] == 1)
    ops = tuple(InplaceOp(k.op_index, k.op, k.lead, by_id[k.input].bytes,
                          by_id[k.output].bytes if k.output >= 0 else 0,
                          by_id[k.pad].bytes if k.pad is not None else 0) for k in sorted(chosen, key=lambda k: k.op_index))

    def saved(o: InplaceOp) -> int:
        return o.input_bytes + o.output_bytes - max(o.lead + max(o.input_bytes, o.padded_bytes), o.output_bytes)

    main = max((o for o in ops if o.output_bytes), key=saved, default=ops[0])
    peak, scope = live_peak(buffers, off)
    return InplacePlan(main.op_index, main.op, main.lead, main.input_bytes, main.output_bytes, entries, ops,
                       head_bytes(buffers, off), peak, max(scope - 1, 0))
