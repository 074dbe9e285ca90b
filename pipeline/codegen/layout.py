"""The tensor arena's layout over the operator sequence, read from the ``.tflite`` flatbuffer.

TFLM puts every non-constant tensor of the graph (the input, the activations, the output) in the
*head* of the arena, planned by its greedy memory planner: a tensor lives from the operator that
writes it (the graph input: from the first) to the last operator that reads it (the graph output:
to the last), and two tensors may share bytes when their lives do not overlap. Here the lives are
read from the operators' inputs and outputs, each buffer rounded up to TFLM's 16-byte alignment, and
the planner's first-fit-by-size placement is repeated to give each tensor an offset. What the
flatbuffer cannot say: kernel scratch buffers (requested in a kernel's Prepare; none for the host's
reference kernels of MicroPizzaNet, CMSIS-NN asks for some on the board) and the tail (TFLM's own
bookkeeping, per-channel quantization data), which host TFLM's allocation print-out reports.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipeline.tflite.reader import TFLITE_TYPES, enum_names, load_tflite

ALIGN = 16  # MicroArenaBufferAlignment()


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class TensorLife:
    index: int
    name: str
    dtype: str
    shape: list[int]
    bytes: int  # elements x element size
    aligned_bytes: int  # what the planner reserves (multiple of 16)
    first_op: int  # first operator during which the tensor holds data
    last_op: int  # last operator that reads it
    role: str  # input | output | activation | intermediate
    offset: int = 0  # from the start of the arena's head (greedy plan)


def tensor_lifetimes(data: bytes) -> tuple[list[str], list[TensorLife]]:
    """The operator names of subgraph 0 in execution order, and the life of each tensor the planner places."""
    schema, model = load_tflite(data)
    op_names = enum_names(schema.BuiltinOperator)
    type_names = enum_names(schema.TensorType)
    sg = model.subgraphs[0]
    buffers = model.buffers or []
    operators = sg.operators or []

    def constant(t) -> bool:
        b = buffers[t.buffer] if t.buffer is not None and 0 < t.buffer < len(buffers) else None
        return b is not None and b.data is not None and len(b.data) > 0

    def opname(op) -> str:
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        return op_names.get(code, f"OP{code}")

    def ids(v) -> list[int]:
        return [int(i) for i in (v if v is not None else []) if int(i) >= 0]

    last = max(len(operators) - 1, 0)
    graph_in, graph_out = set(ids(sg.inputs)), set(ids(sg.outputs))
    first: dict[int, int] = {i: 0 for i in graph_in}
    final: dict[int, int] = {i: last for i in graph_out}
    inter: set[int] = set()
    for k, op in enumerate(operators):
        for i in ids(op.outputs):
            first.setdefault(i, k)
            final[i] = max(final.get(i, k), k)
        for i in ids(op.intermediates):
            inter.add(i)
            first.setdefault(i, k)
            final[i] = max(final.get(i, k), k)
        for i in ids(op.inputs):
            first.setdefault(i, k)
            final[i] = max(final.get(i, k), k)

    lives = []
    for i in sorted(first):
        t = sg.tensors[i]
        if constant(t) or t.isVariable:
            continue  # constants stay in flash; variable tensors are persistent (tail)
        dtype = type_names.get(t.type, f"TYPE{t.type}")
        shape = [int(s) for s in (t.shape if t.shape is not None else [])]
        elements = 1
        for s in shape:
            elements *= max(s, 1)
        nbytes = -(-elements * TFLITE_TYPES.get(dtype, ("", 8))[1] // 8)
        role = ("input" if i in graph_in else "output" if i in graph_out
                else "intermediate" if i in inter else "activation")
        name = t.name.decode("utf-8", "replace") if isinstance(t.name, bytes) else (t.name or "")
        lives.append(TensorLife(i, name, dtype, shape, nbytes, _align(nbytes), first[i], final[i], role))
    _plan(lives)
    return [opname(op) for op in operators], lives


def _overlap(a: TensorLife, b: TensorLife) -> bool:
    return a.first_op <= b.last_op and b.first_op <= a.last_op


def _plan(lives: list[TensorLife]) -> int:
    """TFLM's GreedyMemoryPlanner: largest buffer first (ties: the earlier tensor), each at the lowest
    offset where it does not overlap in space with a placed buffer whose life overlaps its own."""
    placed: list[TensorLife] = []
    for t in sorted(lives, key=lambda t: (-t.aligned_bytes, t.index)):
        offset = 0
        for p in sorted((p for p in placed if _overlap(p, t)), key=lambda p: p.offset):
            if p.offset >= offset + t.aligned_bytes:
                break  # the gap below p is big enough
            offset = max(offset, p.offset + p.aligned_bytes)
        t.offset = offset
        placed.append(t)
    return max((t.offset + t.aligned_bytes for t in lives), default=0)


def arena_layout(data: bytes) -> dict[str, Any]:
    """Per operator: the tensors live during it, their bytes and the total; the op that sets the peak;
    the head the greedy plan needs (equal to the peak unless the plan fragments)."""
    op_seq, lives = tensor_lifetimes(data)
    ops = []
    for k, name in enumerate(op_seq):
        live = [t for t in lives if t.first_op <= k <= t.last_op]
        ops.append({"index": k, "op": name, "live_tensors": [t.index for t in live],
                    "live_bytes": sum(t.aligned_bytes for t in live)})
    peak = max(ops, key=lambda o: o["live_bytes"]) if ops else {"index": None, "op": None, "live_bytes": 0}
    return {
        "where": "read from the .tflite flatbuffer (operator inputs/outputs; 16-byte aligned; greedy plan as TFLM's)",
        "tensors": [asdict(t) for t in lives],
        "ops": ops,
        "peak_live_bytes": peak["live_bytes"],
        "peak_op_index": peak["index"],
        "peak_op": peak["op"],
        "planned_head_bytes": max((t.offset + t.aligned_bytes for t in lives), default=0),
    }


def _shape(s: list[int]) -> str:
    return "x".join(str(d) for d in s) or "scalar"


def layout_markdown(layout: dict[str, Any], host_allocations: dict[str, Any] | None = None) -> list[str]:
    """The layout as Markdown: one row per operator (live tensors and bytes, the peak marked), then
    the tensors with their lives and offsets, then host TFLM's own allocation figures beside it."""
    tensors = {t["index"]: t for t in layout.get("tensors") or []}
    md = ["Live tensors per operator (the arena's head; from the flatbuffer, each buffer 16-byte aligned):", ""]
    md += ["| # | op | live tensors | live bytes |", "|---|---|---|---|"]
    for o in layout.get("ops") or []:
        cells = "; ".join(f"t{i} {_shape(tensors[i]['shape'])} {tensors[i]['dtype']} ({tensors[i]['aligned_bytes']:,} B)"
                          for i in o["live_tensors"])
        peak = o["index"] == layout.get("peak_op_index")
        total = f"**{o['live_bytes']:,} (peak)**" if peak else f"{o['live_bytes']:,}"
        md.append(f"| {o['index']} | {o['op']} | {cells} | {total} |")
    md += ["", f"Peak live activations: **{layout.get('peak_live_bytes', 0):,} B** at op {layout.get('peak_op_index')} "
           f"({layout.get('peak_op')}); the greedy plan needs a {layout.get('planned_head_bytes', 0):,} B head.", ""]
    md += ["| tensor | role | shape | dtype | bytes | aligned | live ops | offset |", "|---|---|---|---|---|---|---|---|"]
    for t in layout.get("tensors") or []:
        md.append(f"| t{t['index']} | {t['role']} | {_shape(t['shape'])} | {t['dtype']} | {t['bytes']:,} | "
                  f"{t['aligned_bytes']:,} | {t['first_op']}-{t['last_op']} | {t['offset']:,} |")
    if host_allocations:
        head, tail, total = (host_allocations.get(k) for k in ("head_bytes", "tail_bytes", "total_bytes"))
        md += ["", "Host TFLM's allocation print-out (64-bit, reference kernels): "
               + ", ".join(f"{n} {v:,} B" for n, v in (("head", head), ("tail", tail), ("total", total)) if v is not None)
               + (" (head = the peak above)" if head == layout.get("peak_live_bytes") else
                  f" (head differs from the flatbuffer peak by {head - layout.get('peak_live_bytes', 0):+,} B: "
                  "kernel scratch buffers or plan fragmentation)" if head is not None else ""), ""]
        kinds = host_allocations.get("kinds") or []
        if kinds:
            md += ["| tail allocation | count | requested B | used B (aligned) |", "|---|---|---|---|"]
            md += [f"| {k['what']} | {k['count']:,} | {k['requested_bytes']:,} | {k['used_bytes']:,} |" for k in kinds]
    return md
