"""Layer by layer: each op's output on the board against host TFLM, for one input.

When the board's outputs differ from host TFLM, this says where the difference starts. The board
returns each op's output tensor for one input frame (``layer``, through
:meth:`BoardClient.layer_output`); host TFLM (the PyPI ``tflite_micro`` interpreter, the same kernel
code) runs the same frame with every tensor preserved (``kPreserveAllTensors``, ``GetTensor``). Each
op's output is compared (max abs difference in the tensor's own units, LSB for integer tensors, and how
many values differ) and the first op that differs is named. TFLM's ``layer_by_layer_debugger.py`` is
the model; it compares TFLM with TFLite, this compares the board with host TFLM.

``compare_run`` writes ``layers.json`` and ``layers.md`` into the run; the run's report
(:func:`pipeline.analysis.report.write_report`) shows ``layers.json`` as a section of its own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.errors import PipelineError

Log = Callable[[str], None]
LAYER_FILES = ("layers.json", "layers.md")
REPORT_HEADING = "## Layer by layer: board vs host TFLM"
LAYERS_SUMMARY_KEYS = ("agree", "exact_ops", "first_differing", "where", "input")  # what report.json keeps
_NUMPY = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "UINT16": np.uint16, "INT32": np.int32,
          "UINT32": np.uint32, "INT64": np.int64, "FLOAT32": np.float32, "FLOAT64": np.float64, "BOOL": np.bool_}


def _quiet(_: str) -> None:
    pass


@dataclass
class OpOutput:
    """One op's output tensor (its first output): what it is and its raw bytes."""

    index: int
    op: str
    tensor: int
    dtype: str  # schema name: INT8, FLOAT32, ...
    shape: list[int]
    data: bytes


def model_ops(tflite: bytes) -> list[OpOutput]:
    """The ops of subgraph 0 in execution order, each with its first output tensor (no data yet)."""
    from pipeline.tflite.reader import enum_names, load_tflite

    schema, model = load_tflite(tflite)
    sg = model.subgraphs[0]
    names = enum_names(schema.BuiltinOperator)
    types = enum_names(schema.TensorType)
    ops = []
    for i, op in enumerate(sg.operators or []):
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        name = names.get(code, str(code)) if code != schema.BuiltinOperator.CUSTOM else \
            (oc.customCode or b"CUSTOM").decode("ascii", "replace")
        if op.outputs is None or len(op.outputs) == 0 or int(op.outputs[0]) < 0:
            raise PipelineError(f"op {i} ({name}) has no output tensor", hint="is the .tflite file intact?")
        t = sg.tensors[int(op.outputs[0])]
        shape = [int(d) for d in (t.shape if t.shape is not None else [])]
        ops.append(OpOutput(i, name, int(op.outputs[0]), types.get(int(t.type), str(t.type)), shape, b""))
    return ops


def host_op_outputs(tflite: bytes, frame: np.ndarray) -> list[OpOutput]:
    """Every op's output for one input ``frame`` (the input tensor's values), from host TFLM with all
    tensors preserved."""
    from pipeline.stages.verify import capture_fd2
    from tflite_micro.python.tflite_micro import runtime

    from pipeline.tflite.reader import inspect_tflite

    ops = model_ops(tflite)
    shape = inspect_tflite(tflite).input.shape
    frame = np.asarray(frame)
    if frame.size != int(np.prod(shape)):
        raise PipelineError(f"the input has {frame.size} values, the model's input tensor {int(np.prod(shape))}",
                            hint="give one input tensor's values")
    arena = 1 << 20
    with capture_fd2() as log:
        try:
            ip = runtime.Interpreter.from_bytes(tflite, arena_size=arena,
                                                intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
            ip.set_input(frame.reshape(shape), 0)
            ip.invoke()
            err = None
        except (RuntimeError, ValueError) as e:
            err = e
    if err is not None:
        detail = "; ".join(line.strip() for line in log if line.strip())[:300]
        raise PipelineError(f"host TFLM could not run the model with every tensor kept ({err}): {detail or 'no detail'}",
                            hint="check the model's operators")
    for o in ops:
        t = ip.GetTensor(o.tensor, 0)
        o.data = np.ascontiguousarray(t["tensor_data"]).tobytes()
    return ops


def _values(raw: bytes, dtype: str) -> np.ndarray:
    dt = _NUMPY.get(dtype)
    if dt is None or len(raw) % np.dtype(dt).itemsize:
        return np.frombuffer(raw, dtype=np.uint8)  # compared byte by byte
    return np.frombuffer(raw, dtype=dt)


def compare_op_outputs(board: Sequence[bytes], host: Sequence[OpOutput]) -> dict[str, Any]:
    """Per op: ``max_abs_diff`` (in the tensor's units: LSB for integer tensors), ``differing`` (values
    that differ) of ``values``, ``exact`` (byte for byte); ``first_differing`` is the first op that
    differs (its row), or None when all agree. ``board[i]`` is op i's output as raw bytes."""
    if len(board) != len(host):
        raise PipelineError(f"the board gave {len(board)} op outputs, the model has {len(host)} ops",
                            hint="is the board running this run's firmware? flash it again (make flash)")
    rows = []
    for b, h in zip(board, host):
        row = {"index": h.index, "op": h.op, "tensor": h.tensor, "dtype": h.dtype, "shape": list(h.shape),
               "bytes": len(h.data)}
        if len(b) != len(h.data):
            row.update(values=None, differing=None, max_abs_diff=None, exact=False,
                       note=f"the board's output has {len(b)} bytes, host TFLM's {len(h.data)}")
        else:
            bv, hv = _values(b, h.dtype), _values(h.data, h.dtype)
            if bv.dtype.kind == "f":
                diff = np.abs(bv.astype(np.float64) - hv.astype(np.float64))
                differ = ~((bv == hv) | (np.isnan(bv) & np.isnan(hv)))
                diff = np.where(differ, np.nan_to_num(diff, nan=np.inf), 0.0)
                mad: float | int = float(diff.max()) if diff.size else 0.0
            else:
                diff = np.abs(bv.astype(np.int64) - hv.astype(np.int64))
                differ = diff != 0
                mad = int(diff.max()) if diff.size else 0
            row.update(values=int(bv.size), differing=int(differ.sum()), max_abs_diff=mad, exact=b == h.data)
        rows.append(row)
    first = next((r for r in rows if not r["exact"]), None)
    return {"ops": rows, "agree": first is None, "exact_ops": sum(r["exact"] for r in rows),
            "first_differing": first}


def headline(result: dict[str, Any]) -> str:
    """One line: all ops agree, or which op differs first and by how much."""
    n = len(result["ops"])
    f = result["first_differing"]
    if f is None:
        return f"all {n} ops agree with host TFLM bit for bit"
    what = f["note"] if f.get("note") else \
        f"max abs diff {f['max_abs_diff']}, {f['differing']} of {f['values']} values differ"
    return f"op {f['index']} ({f['op']}) is the first that differs from host TFLM: {what}; " \
           f"{result['exact_ops']} of {n} ops bit-exact"


def layers_markdown(result: dict[str, Any]) -> list[str]:
    """The comparison as a Markdown table, with the headline under it."""
    lines = ["| op | operator | tensor | shape | dtype | values | differing | max abs diff | |",
             "|---:|---|---:|---|---|---:|---:|---:|---|"]
    first = (result.get("first_differing") or {}).get("index")
    for r in result["ops"]:
        mark = "first difference" if r["index"] == first else ("bit-exact" if r["exact"] else "differs")
        shape = "x".join(str(d) for d in r["shape"]) or "scalar"
        cell = (lambda v: "-" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:g}")
        lines.append(f"| {r['index']} | {r['op']} | {r['tensor']} | {shape} | {r['dtype']} | {cell(r['values'])} | "
                     f"{cell(r['differing'])} | {cell(r['max_abs_diff'])} | {mark} |")
    lines += ["", headline(result) + "."]
    where = result.get("where")
    if where:
        lines += ["", f"Input: {result.get('input', 'one input')}; board: {where}; host: TFLM "
                      f"(PyPI tflite-micro, every tensor preserved); model: {result.get('host_model', 'model.tflite')}."]
    return lines


def run_input(run, index: int = 0) -> np.ndarray:
    """Golden input ``index`` of a run (the firmware holds the same bytes): the input tensor's values."""
    golden = json.loads(run.path("golden.json").read_text(encoding="utf-8"))
    idx = golden["test_indices"]
    if not 0 <= index < len(idx):
        raise PipelineError(f"run {run.name} has {len(idx)} golden inputs, not an input {index}",
                            hint=f"give an input index from 0 to {len(idx) - 1}")
    from pipeline.stages.verify import images_to_input
    from pipeline.tflite.reader import inspect_tflite

    if run.path("inputs.npz").is_file():
        from pipeline.stages.inputs import ModelInputs

        return ModelInputs.load(run.path("inputs.npz")).x[idx[index]]
    with np.load(run.path("data.npz")) as d:
        image = d["x_test"][idx[index]]
    info = inspect_tflite(run.path("model.tflite").read_bytes())
    return images_to_input(image[None, ...], info)[0]


def board_op_outputs(port: str, frame: bytes, count: int, *, expect_hash: str | None, log: Log = _quiet,
                     timeout: float = 20.0, client_factory: Callable[..., Any] | None = None) -> list[dict[str, Any]]:
    """Ops 0..count-1's outputs from the board on ``port`` for the frame (``layer``, in chunks)."""
    if client_factory is None:
        from pipeline.board.client import BoardClient as client_factory
    outs = []
    with client_factory(port, timeout=timeout) as board:
        board.handshake(expect_hash)
        for k in range(count):
            outs.append(board.layer_output(frame, k))
            log(f"layers: op {k} ({outs[-1]['name']}): {len(outs[-1]['data']):,} bytes")
    return outs


def compare_frame(board_outs: Sequence[dict[str, Any]], host: Sequence[OpOutput]) -> dict[str, Any]:
    """:func:`compare_op_outputs` of the board's ``layer_output`` replies, checking that the board's ops
    are the model's (operator name, output tensor)."""
    for b, h in zip(board_outs, host):
        if b["tensor"] != h.tensor or b["name"] != h.op:
            raise PipelineError(f"the board's op {h.index} is {b['name']} (tensor {b['tensor']}), the model's "
                                f"{h.op} (tensor {h.tensor})",
                                hint="is the board running this run's firmware? flash it again (make flash)")
    return compare_op_outputs([b["data"] for b in board_outs], host)


def compare_run(run, image: str, *, port: str | None, input_index: int = 0, host_model: bytes | None = None,
                log: Log = _quiet) -> dict[str, Any]:
    """Every op's output of ``run``'s firmware on the board (``port``) or the emulated Pico against host
    TFLM, for golden input ``input_index``. ``host_model`` replaces the run's ``model.tflite`` on the host
    side (the board always runs the run's firmware): a model altered on purpose shows where a difference
    is found. Writes ``layers.json`` and ``layers.md`` (the report shows them when written again); returns the result."""
    import time

    from pipeline.board.connect import board_port
    from pipeline.flow.rundir import atomic_write_json, atomic_write_text
    from pipeline.tflite.reader import inspect_tflite

    model = run.path("model.tflite").read_bytes()
    frame = np.ascontiguousarray(run_input(run, input_index))
    host = host_op_outputs(host_model if host_model is not None else model, frame)
    t0 = time.perf_counter()
    with board_port(run.path("firmware.elf"), port, image) as (port_name, where):
        board = board_op_outputs(port_name, frame.tobytes(), len(host), expect_hash=inspect_tflite(model).sha256[:16],
                                 log=log)
    result = compare_frame(board, host)
    result.update(where=where, input=f"golden input {input_index}", input_index=input_index,
                  host_model="model.tflite" if host_model is None else "a model given instead of model.tflite",
                  board_seconds=round(time.perf_counter() - t0, 1),
                  board_bytes=sum(len(b["data"]) for b in board))
    lines = layers_markdown(result)
    atomic_write_json(run.path("layers.json"), result)
    atomic_write_text(run.path("layers.md"), "\n".join(["# " + REPORT_HEADING[3:], ""] + lines) + "\n")
    return result
