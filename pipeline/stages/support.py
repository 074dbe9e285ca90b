"""What will and won't work, before any build: a user's ``.tflite`` read against pico-tflmicro's
operators, picotflm's own kernels, the firmware's tensor types and the RP2040's flash and SRAM.

``read_model_file(path) -> bytes`` refuses what is not a ``.tflite`` (empty, truncated, another format)
with one line saying what the file looks like. ``support(data, kernels, host_arena_bytes) -> dict`` is
the table (JSON-able: it goes into the manifest and the report); ``support_lines`` prints it;
``check_support`` raises the first refusal as a :class:`PipelineError` naming the operator, type or size.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.board.targets import RP2040
from pipeline.codegen.kernels import FAST_KERNEL_OPS
from pipeline.codegen.render import (FIRMWARE_FLASH_RESERVE, FIRMWARE_OUTPUT_TYPES, FIRMWARE_RAM_RESERVE,
                                     check_fits_rp2040, choose_arena)
from pipeline.config import RenderConfig, TfliteConfig
from pipeline.errors import PipelineError
from pipeline.tflite.carray import C_SUFFIXES, c_array_bytes
from pipeline.tflite.reader import (TFLITE_SCHEMA_VERSION, TFLITE_TYPES, TFLM_RESOLVER_METHODS, ModelInfo, enum_names,
                                    inspect_tflite, load_tflite)

# Tensor types TFLM has no kernels for on a microcontroller.
UNSUPPORTED_TYPES = {"FLOAT16": "TFLM has no float16 kernels", "FLOAT64": "TFLM has no float64 kernels",
                     "STRING": "TFLM has no string tensors", "COMPLEX64": "TFLM has no complex kernels",
                     "COMPLEX128": "TFLM has no complex kernels", "RESOURCE": "resource tensors need variables",
                     "VARIANT": "TFLM has no variant tensors"}
# One `infer` reply carries the output as hex inside the firmware's 2,048-byte payload (docs/protocol.md).
MAX_OUTPUT_BYTES = 960
GOLDEN_COUNT_DEFAULT = RenderConfig().golden_count

_FORMATS = (  # leading bytes -> what the file is, what to do
    (b"PK\x03\x04", "a zip archive (a Keras .keras model?)",
     "convert it to a .tflite with TFLiteConverter first, or train and convert it with `picotflm run` "
     "(model.name = \"your.keras\")"),
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (a Keras .h5 model?)",
     "convert it to a .tflite with TFLiteConverter first"),
    (b"\x7fELF", "an ELF executable (a firmware image?)", "give the model's .tflite, not a built image"),
    (b"UF2\n", "a UF2 firmware image", "give the model's .tflite, not a built image"),
    (b"\x08", "a protobuf (an ONNX or TensorFlow graph?)", "convert it to a .tflite with TFLiteConverter first"),
)


def read_model_file(path: str | Path) -> bytes:
    """The bytes of a ``.tflite`` file (or of the model array in a C source, as TFLM's examples ship
    models); PipelineError (one line) for anything that is not one."""
    p = Path(path).expanduser()
    if not p.exists():
        raise PipelineError(f"model file {p} does not exist", hint="give the path of a .tflite file")
    if p.is_dir():
        what = " (a TensorFlow SavedModel?)" if (p / "saved_model.pb").exists() else ""
        raise PipelineError(f"model {p} is a folder{what}, not a .tflite file",
                            hint="convert it with tf.lite.TFLiteConverter.from_saved_model and give the .tflite")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise PipelineError(f"cannot read model file {p}: {e.strerror or e}", hint="check the file's permissions") from None
    if not data:
        raise PipelineError(f"model file {p} is empty", hint="give a .tflite file written by TFLiteConverter")
    if p.suffix.lower() in C_SUFFIXES:  # a TFLM example's model as a C array
        data = c_array_bytes(data.decode("utf-8", "replace"), str(p))
    if data[4:8] != b"TFL3":
        for magic, what, hint in _FORMATS:
            if data.startswith(magic) and (magic != b"\x08" or p.suffix.lower() in (".onnx", ".pb")):
                raise PipelineError(f"model file {p} is {what}, not a TFLite flatbuffer", hint=hint)
        raise PipelineError(f"model file {p} is not a TFLite flatbuffer (no 'TFL3' identifier in its first 8 bytes)",
                            hint="give a .tflite file written by TFLiteConverter")
    try:
        inspect_tflite(data)
    except PipelineError as e:
        raise PipelineError(f"model file {p}: {e.message}", hint="the file is damaged: copy or export it again") from None
    return data


# ------------------------------------------------------------------------------------ the table
def _operator_types(data: bytes) -> list[dict[str, Any]]:
    """Per operator of subgraph 0: its name, activation dtypes (inputs/outputs without data) and constant dtypes."""
    schema, model = load_tflite(data)
    op_names, type_names = enum_names(schema.BuiltinOperator), enum_names(schema.TensorType)
    sg = model.subgraphs[0]
    buffers = model.buffers or []

    def constant(t) -> bool:
        b = buffers[t.buffer] if t.buffer is not None and 0 <= t.buffer < len(buffers) else None
        return b is not None and b.data is not None and len(b.data) > 0

    out = []
    for op in sg.operators or []:
        oc = model.operatorCodes[op.opcodeIndex]
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        if code == schema.BuiltinOperator.CUSTOM:
            name = "CUSTOM:" + (oc.customCode.decode("utf-8", "replace") if isinstance(oc.customCode, bytes)
                                else str(oc.customCode))
        else:
            name = op_names.get(code, f"OP{code}")
        ins = [sg.tensors[i] for i in (op.inputs if op.inputs is not None else []) if i >= 0]
        outs = [sg.tensors[i] for i in (op.outputs if op.outputs is not None else []) if i >= 0]
        act = [type_names.get(t.type, f"TYPE{t.type}") for t in ins + outs if not constant(t)]
        const = [type_names.get(t.type, f"TYPE{t.type}") for t in ins if constant(t)]
        opts = op.builtinOptions
        dil = (getattr(opts, "dilationHFactor", 1) or 1, getattr(opts, "dilationWFactor", 1) or 1)
        out.append({"op": name, "activations": act, "constants": const, "input": act[0] if act else "",
                    "dilated": dil != (1, 1)})
    return out


def _picotflm_kernel(op: str, uses: list[dict[str, Any]]) -> tuple[str, bool]:
    """What picotflm's own kernels do with this operator: (text, runs under build.kernels = picotflm)."""
    if op not in FAST_KERNEL_OPS:
        return "no own kernel: TFLM's", True
    if op in ("MEAN", "SOFTMAX", "FULLY_CONNECTED"):  # the kernel hands other cases to TFLM's own
        fast = sum(1 for u in uses if u["input"] == "INT8"
                   and (op != "FULLY_CONNECTED" or u["constants"][:1] in ([], ["INT8"])))
        return (f"own kernel for int8 ({fast} of {len(uses)}); TFLM's for the rest", True)
    bad = sorted({u["input"] for u in uses if u["input"] != "INT8"})
    if bad:
        return f"no: picotflm's {op} takes int8 activations only, not {'/'.join(bad)}", False
    weights = sorted({c for u in uses for c in u["constants"][:1]})
    if any(w not in ("INT8", "INT4") for w in weights):
        return f"no: picotflm's {op} takes int8 or int4 weights only, not {'/'.join(weights)}", False
    dilated = sum(1 for u in uses if u["dilated"])
    return ("own M0+ kernel" + (f" ({dilated} dilated: its reference path)" if dilated else "")), True


def _type_status(dtype: str, roles: set[str], info: ModelInfo) -> tuple[str, bool]:
    if dtype in UNSUPPORTED_TYPES:
        return f"no: {UNSUPPORTED_TYPES[dtype]}", False
    if "output" in roles and dtype not in FIRMWARE_OUTPUT_TYPES:
        return f"no: the firmware reads {'/'.join(t.lower() for t in FIRMWARE_OUTPUT_TYPES)} outputs only", False
    if dtype not in TFLITE_TYPES:
        return "no: the firmware has no TfLiteType for it", False
    text = {"INT8": "yes (int8 kernels)", "INT4": "yes: packed INT4 weights (TFLM unpacks them)",
            "INT16": "yes: int16 activations (TFLM's 16x8 kernels; not picotflm's)",
            "FLOAT32": "yes: float32 (TFLM's reference kernels, software float on the M0+: slow)",
            "INT32": "yes (biases, shapes, indices)", "UINT8": "yes at the edges (QUANTIZE/DEQUANTIZE only in TFLM)",
            "INT64": "partly (some ops: shapes, indices)", "BOOL": "partly (comparison and logic ops)"}
    return text.get(dtype, "partly"), True


def support(data: bytes, *, kernels: str = "picotflm", host_arena_bytes: int | None = None,
            render_cfg: RenderConfig | None = None) -> dict[str, Any]:
    """The table of what will and won't work on the RP2040 (JSON-able); ``refusals`` lists the blockers."""
    info = inspect_tflite(data)
    uses = _operator_types(data)
    refusals: list[dict[str, str]] = []

    def refuse(message: str, hint: str) -> None:
        refusals.append({"message": message, "hint": hint})

    if info.schema_version != TFLITE_SCHEMA_VERSION:
        refuse(f"the model has flatbuffer schema version {info.schema_version}, TFLM reads {TFLITE_SCHEMA_VERSION}",
               "convert it with a current TFLiteConverter")
    extras = info.extras
    if extras.get("subgraphs") != 1:
        refuse(f"the model has {extras.get('subgraphs')} subgraphs (control flow: IF/WHILE/CALL_ONCE); the firmware "
               "runs one", "export the model without control flow (one subgraph)")
    if extras.get("inputs") != 1 or extras.get("outputs") != 1:
        refuse(f"the model has {extras.get('inputs')} input and {extras.get('outputs')} output tensors; the firmware "
               "feeds one input and reads one output", "export a single-input, single-output model")

    ops = []
    for name in info.ops:
        mine = [u for u in uses if u["op"] == name]
        tflm = name in TFLM_RESOLVER_METHODS
        text, ours_ok = _picotflm_kernel(name, mine)
        row = {"op": name, "count": len(mine), "pico_tflmicro": "yes" if tflm else "no",
               "activations": "/".join(sorted({t for u in mine for t in u["activations"]})) or "-",
               "picotflm_kernel": text}
        ops.append(row)
        if not tflm:
            what = "custom operator" if name.startswith("CUSTOM:") else "operator"
            refuse(f"{what} {name} ({len(mine)} use{'s' if len(mine) != 1 else ''}) is not in pico-tflmicro's op "
                   "resolver: TFLM cannot run it",
                   "replace that layer with built-in TFLite operators TFLM has (Conv2D, DepthwiseConv2D, pooling, "
                   "Dense, Add, Reshape, ...), or convert without SELECT_TF_OPS/custom ops")
        elif not ours_ok and kernels == "picotflm":
            refuse(f"operator {name}: {text.split(': ', 1)[-1]} (build.kernels = \"picotflm\")",
                   "build with pico-tflmicro's kernels: --set build.kernels=stock")

    roles: dict[str, set[str]] = {}
    for u in uses:
        for t in u["activations"]:
            roles.setdefault(t, set()).add("activations")
        for t in u["constants"]:
            roles.setdefault(t, set()).add("weights/constants")
    roles.setdefault(info.input.dtype, set()).add("input")
    roles.setdefault(info.output.dtype, set()).add("output")
    types = []
    for dtype in sorted(roles):
        text, ok = _type_status(dtype, roles[dtype], info)
        types.append({"type": dtype, "where": ", ".join(sorted(roles[dtype])), "works": text})
        if not ok:
            refuse(f"tensor type {dtype} ({', '.join(sorted(roles[dtype]))}): {text[4:]}",
                   "convert with int8 (or float32) tensors: TFLiteConverter with optimizations and int8 input/output")
    if info.output.nbytes > MAX_OUTPUT_BYTES:
        refuse(f"the output tensor has {info.output.nbytes:,} bytes; one reply of the firmware carries at most "
               f"{MAX_OUTPUT_BYTES} (docs/protocol.md)", "deploy a model with a smaller output (a classifier's scores)")

    cfg = render_cfg or RenderConfig()
    golden = cfg.golden_count * (info.input.nbytes + info.output.nbytes)
    flash = info.size_bytes + golden + FIRMWARE_FLASH_RESERVE
    memory: dict[str, Any] = {
        "model_bytes": info.size_bytes,
        "golden_bytes": golden,
        "flash_needed_bytes": flash,
        "flash_bytes": RP2040.flash_bytes,
        "flash_note": f"model + {cfg.golden_count} golden inputs/outputs + firmware (~{FIRMWARE_FLASH_RESERVE // 1024} KB)",
    }
    if host_arena_bytes:
        arena = choose_arena(cfg, host_arena_bytes)
        memory.update({"host_arena_min_bytes": host_arena_bytes, "arena_bytes": arena.bytes,
                       "sram_needed_bytes": arena.bytes + FIRMWARE_RAM_RESERVE, "sram_bytes": RP2040.ram_bytes,
                       "sram_note": f"arena (host minimum + margin) + firmware (~{FIRMWARE_RAM_RESERVE // 1024} KB)"})
        try:
            check_fits_rp2040(info.size_bytes, arena.bytes, golden)
        except PipelineError as e:
            refuse(e.message, e.hint or "")
    elif flash > RP2040.flash_bytes:
        try:
            check_fits_rp2040(info.size_bytes, 0, golden)
        except PipelineError as e:
            refuse(e.message, e.hint or "")
    return {
        "model": {"bytes": info.size_bytes, "sha256": info.sha256, "macs": info.macs,
                  "operators": len(info.op_sequence),
                  "input": f"{info.input.dtype} {'x'.join(map(str, info.input.shape))}",
                  "output": f"{info.output.dtype} {'x'.join(map(str, info.output.shape))}"},
        "kernels": kernels,
        "operators": ops,
        "types": types,
        "memory": memory,
        "refusals": refusals,
        "verdict": "deployable" if not refusals else f"refused: {refusals[0]['message']}",
    }


def kernels_for(data: bytes) -> str:
    """``picotflm`` when picotflm's own kernels take every operator they would answer for, else ``stock``."""
    uses = _operator_types(data)
    return "picotflm" if all(_picotflm_kernel(op, [u for u in uses if u["op"] == op])[1]
                             for op in {u["op"] for u in uses}) else "stock"


def check_support(table: dict[str, Any]) -> None:
    """PipelineError for the first refusal of a :func:`support` table (one line, with its hint)."""
    if table["refusals"]:
        r = table["refusals"][0]
        more = len(table["refusals"]) - 1
        raise PipelineError(r["message"] + (f" (and {more} more problem(s): see `picotflm deploy`'s table)" if more else ""),
                            hint=r["hint"])


def support_lines(table: dict[str, Any]) -> list[str]:
    """The table as plain text for the terminal."""
    m = table["model"]
    lines = [f"model: {m['bytes']:,} B, {m['operators']} operators, {m['macs']:,} MACs; input {m['input']}, "
             f"output {m['output']}", f"operators (build.kernels = {table['kernels']}):"]
    w = max([len(r["op"]) for r in table["operators"]] + [8])
    lines.append(f"  {'operator':<{w}}  uses  pico-tflmicro  activations  picotflm kernel")
    for r in table["operators"]:
        lines.append(f"  {r['op']:<{w}}  {r['count']:>4}  {r['pico_tflmicro']:<13}  {r['activations']:<11}  "
                     f"{r['picotflm_kernel']}")
    lines.append("tensor types:")
    tw = max([len(t["where"]) for t in table["types"]] + [5])
    for t in table["types"]:
        lines.append(f"  {t['type']:<8}  {t['where']:<{tw}}  {t['works']}")
    mem = table["memory"]
    lines.append(f"flash: {mem['flash_needed_bytes']:,} B of {mem['flash_bytes']:,} B ({mem['flash_note']})")
    if "sram_needed_bytes" in mem:
        lines.append(f"SRAM: {mem['sram_needed_bytes']:,} B of {mem['sram_bytes']:,} B ({mem['sram_note']}; host "
                     f"minimum {mem['host_arena_min_bytes']:,} B, 64-bit)")
    lines.append(f"verdict: {table['verdict']}")
    return lines


# ------------------------------------------------------------------------------ before a run
@dataclass
class Preflight:
    """A user's model read, checked and given its inputs: nothing is written yet."""

    data: bytes
    info: ModelInfo
    table: dict[str, Any]
    inputs: Any  # pipeline.stages.inputs.ModelInputs


def preflight(cfg: TfliteConfig, *, kernels: str = "picotflm", render_cfg: RenderConfig | None = None,
              max_arena_bytes: int = 1 << 20) -> Preflight:
    """Read ``cfg.path``, refuse what TFLM cannot run on the RP2040 (operators and types first, then
    the host TFLM arena against the SRAM), and make the inputs ``cfg`` names: every refusal comes
    before anything is written."""
    from pipeline.stages.inputs import make_inputs
    from pipeline.stages.verify import make_interpreter, minimal_arena

    data = read_model_file(cfg.path)
    info = inspect_tflite(data)
    check_support(support(data, kernels=kernels, render_cfg=render_cfg))
    bound = min(max_arena_bytes, RP2040.ram_bytes)
    try:
        arena = minimal_arena(data, info, bound)
    except PipelineError:
        make_interpreter(data, max(max_arena_bytes, bound))  # TFLM's own reason when it cannot set the model up
        raise PipelineError(f"the model needs a tensor arena of more than {bound:,} B on host TFLM: more than the "
                            f"RP2040's {RP2040.ram_bytes // 1024} KB SRAM", hint="deploy a smaller model (a smaller "
                            "input, fewer channels) or cut it into parts") from None
    table = support(data, kernels=kernels, host_arena_bytes=arena, render_cfg=render_cfg)
    check_support(table)
    return Preflight(data=data, info=info, table=table, inputs=make_inputs(cfg, info))
