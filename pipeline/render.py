"""Render a ``.tflite`` into the firmware's generated sources, through Jinja templates only.

Python computes the values (arena size, op list, quantization, golden data); the small helpers
below format C literals; the templates in ``pipeline/templates`` hold the layout. The output is a
pure function of the inputs: rendering the same model twice gives byte-identical files.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pipeline.config import RenderConfig, check_c_identifier, check_class_name
from pipeline.convert import TFLITE_TYPES, TFLM_RESOLVER_METHODS, ModelInfo, check_tflm_compatible, inspect_tflite
from pipeline.errors import PipelineError

TEMPLATES_DIR = Path(__file__).parent / "templates"
# Operators for which firmware/src/kernels has its own M0+ kernel (build.kernels = picotflm).
FAST_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "MEAN")

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

    from pipeline.convert import load_tflite

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
        tables.append({"op": k, "name": name, "channels": channels,
                       "mult": [m for m, _ in pairs], "shift": [e for _, e in pairs]})
    return tables


GENERATED_FILES = ("model_data.h", "model_data.cc", "model_config.h", "op_resolver.h", "golden_data.h",
                   "golden_data.cc")

RP2040_SRAM_BYTES = 264 * 1024
RP2040_FLASH_BYTES = 2 * 1024 * 1024
# What the firmware needs besides the arena and the model, measured on our own images and rounded
# up: code ~130 KB of flash; static RAM ~30 KB, stack 2 KB. Used only to refuse hopeless sizes early.
FIRMWARE_FLASH_RESERVE = 256 * 1024
FIRMWARE_RAM_RESERVE = 48 * 1024


# ---------------------------------------------------------------------- C literal helpers
def c_string(value: str) -> str:
    """A C string literal; only printable ASCII passes through, everything else is escaped."""
    out = ['"']
    for ch in str(value):
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "?":
            out.append("\\?")  # no trigraphs
        elif 0x20 <= o < 0x7F:
            out.append(ch)
        else:
            for b in ch.encode("utf-8"):
                out.append(f"\\{b:03o}")
    out.append('"')
    return "".join(out)


def c_float(x: float) -> str:
    """A float literal that round-trips through a C float."""
    x = float(x)
    if not math.isfinite(x):
        raise PipelineError(f"a quantization parameter is not finite ({x})", hint="re-convert the model")
    return f"{x!r}f" if ("e" in repr(x) or "." in repr(x)) else f"{x!r}.0f"


def c_bytes(data: bytes, per_line: int = 16, indent: str = "  ") -> str:
    """Bytes as hex literals, ``per_line`` per line, every line ending in a comma."""
    lines = []
    for i in range(0, len(data), per_line):
        chunk = data[i: i + per_line]
        lines.append(indent + ", ".join(f"0x{b:02x}" for b in chunk) + ",")
    return "\n".join(lines)


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.globals.update(c_string=c_string, c_float=c_float)
    return env


# ------------------------------------------------------------------------------ arena choice
@dataclass(frozen=True)
class ArenaChoice:
    bytes: int
    explanation: str


def choose_arena(cfg: RenderConfig, host_arena_bytes: int) -> ArenaChoice:
    """The rendered arena size: the recipe's override, or the host minimum plus the stated margin."""
    if cfg.arena_bytes:
        b = cfg.arena_bytes + (-cfg.arena_bytes) % 16
        return ArenaChoice(b, f"{b} B set by render.arena_bytes")
    raw = host_arena_bytes * (1 + cfg.arena_margin_percent / 100.0) + cfg.arena_margin_bytes
    b = int(math.ceil(raw / 16.0) * 16)
    return ArenaChoice(
        b,
        f"host TFLM minimum {host_arena_bytes} B (64-bit) + {cfg.arena_margin_percent:g} % + "
        f"{cfg.arena_margin_bytes} B, rounded up to 16 B = {b} B; the board measures its own need "
        f"(`picotflm measure`, `mem`)",
    )


def check_fits_rp2040(model_bytes: int, arena_bytes: int, golden_bytes: int) -> None:
    """Fail before building when the model or arena cannot fit an RP2040."""
    flash = model_bytes + golden_bytes + FIRMWARE_FLASH_RESERVE
    if flash > RP2040_FLASH_BYTES:
        raise PipelineError(
            f"model {model_bytes:,} B + golden data {golden_bytes:,} B + firmware (~{FIRMWARE_FLASH_RESERVE // 1024} KB) "
            f"= {flash:,} B exceeds the RP2040's 2 MB flash",
            hint="compress the model further (prune, cluster, int4) or lower render.golden_count",
        )
    ram = arena_bytes + FIRMWARE_RAM_RESERVE
    if ram > RP2040_SRAM_BYTES:
        raise PipelineError(
            f"arena {arena_bytes:,} B + firmware RAM (~{FIRMWARE_RAM_RESERVE // 1024} KB) = {ram:,} B exceeds the "
            f"RP2040's 264 KB SRAM",
            hint="use a smaller model or input, or lower render.arena_margin_percent",
        )


# ---------------------------------------------------------------------------------- render
def _tensor_ctx(t) -> dict[str, Any]:
    if t.dtype not in TFLITE_TYPES:
        raise PipelineError(f"tensor type {t.dtype} is not supported by the firmware", hint="use int8 input/output")
    return {
        "c_type": TFLITE_TYPES[t.dtype][0],
        "nbytes": t.nbytes,
        "scale": t.scale[0] if t.scale else 0.0,
        "zero_point": t.zero_point[0] if t.zero_point else 0,
        "shape": t.shape,
    }


def render(tflite: bytes, cfg: RenderConfig, out_dir: Path, *, golden_inputs: np.ndarray,
           golden_outputs: np.ndarray, golden_labels: Sequence[int], class_names: Sequence[str],
           host_arena_bytes: int, provenance: dict[str, str]) -> list[Path]:
    """Write the generated firmware sources for ``tflite`` into ``out_dir``; return their paths.

    ``golden_inputs``/``golden_outputs`` are raw input/output tensor values (host TFLM's outputs
    for those inputs). ``provenance`` holds tool_version, model_file, source_sha256, tensorflow,
    tflite_micro for the banner.
    """
    from pipeline.artifacts import atomic_write_text

    info: ModelInfo = inspect_tflite(tflite)
    check_tflm_compatible(info)
    name = check_c_identifier(cfg.model_name, "render.model_name")
    class_names = [str(c) for c in class_names]
    out_units = info.output.elements
    if len(class_names) != out_units:
        raise PipelineError(
            f"the model has {out_units} outputs but {len(class_names)} class names were given",
            hint="the data's classes must match the model's output units",
        )
    golden_inputs = np.ascontiguousarray(golden_inputs)
    golden_outputs = np.ascontiguousarray(golden_outputs)
    count = len(golden_inputs)
    if count == 0 or len(golden_outputs) != count or len(golden_labels) != count:
        raise PipelineError("golden inputs, outputs and labels must be non-empty and of equal count",
                            hint="this is a bug in the caller")
    in_ctx, out_ctx = _tensor_ctx(info.input), _tensor_ctx(info.output)
    if golden_inputs[0].nbytes != in_ctx["nbytes"] or golden_outputs[0].nbytes != out_ctx["nbytes"]:
        raise PipelineError("golden data does not match the model's tensor sizes", hint="re-run the verify stage")
    arena = choose_arena(cfg, host_arena_bytes)
    check_fits_rp2040(len(tflite), arena.bytes, int(golden_inputs.nbytes + golden_outputs.nbytes))

    prov = {k: str(provenance.get(k, "unknown")) for k in ("tool_version", "model_file", "source_sha256",
                                                               "tensorflow", "tflite_micro")}
    prov["model_sha256"] = hashlib.sha256(tflite).hexdigest()
    for k, v in prov.items():  # the banner is a // comment: one line, printable ASCII
        if not all(0x20 <= ord(c) < 0x7F for c in v):
            raise PipelineError(f"provenance field {k} has characters that cannot go into a C comment: {v!r}",
                                hint="use an ASCII path and name")
    ctx: dict[str, Any] = {
        "prov": prov,
        "name": name,
        "size": len(tflite),
        "model_bytes": c_bytes(tflite),
        "hash16": prov["model_sha256"][:16],
        "schema_version": info.schema_version,
        "arena": arena,
        "input": in_ctx,
        "output": out_ctx,
        "class_names": class_names,
        "macs": info.macs,
        "op_count": len(info.op_sequence),
        "ops": info.ops,
        "methods": [TFLM_RESOLVER_METHODS[op] for op in info.ops],
        "fast_ops": [op for op in info.ops if op in FAST_KERNEL_OPS],
        "quant_tables": conv_quant_tables(tflite),
        "count": count,
        "inputs": [{"index": i, "label": f"{int(golden_labels[i])} ({c_string(class_names[int(golden_labels[i])])})",
                    "bytes": c_bytes(golden_inputs[i].tobytes(), indent="    ")} for i in range(count)],
        "outputs": [", ".join(f"0x{b:02x}" for b in golden_outputs[i].tobytes()) for i in range(count)],
    }
    for c in class_names:  # they reach the C only as escaped string literals (c_string)
        check_class_name(c)
    env = _environment()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fname in GENERATED_FILES:
        text = env.get_template(fname + ".j2").render(**ctx)
        path = out_dir / fname
        atomic_write_text(path, text)
        written.append(path)
    return written
