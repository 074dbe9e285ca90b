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
from pipeline.memplan import inplace_plan

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
        zp = int(t_out.quantization.zeroPoint[0]) if t_out.quantization.zeroPoint is not None else 0
        act_min, act_max = activation_range(getattr(op.builtinOptions, "fusedActivationFunction", 0) or 0,
                                            out_scale, zp)
        lo_at = [relu_threshold(m, e, zp, act_min, act_max) for m, e in pairs]
        k_w = int(np.prod(t_w.shape[1:]))
        wx = wide_weights(schema, model, t_w) if name == "CONV_2D" and k_w <= WIDE_MAX_K else None
        tables.append({"op": k, "name": name, "channels": channels,
                       "mult": [m for m, _ in pairs], "shift": [e for _, e in pairs],
                       "out_offset": zp, "act_min": act_min, "act_max": act_max,
                       "lo_at": ["INT32_MIN" if v == INT32_MIN else str(v) for v in lo_at], "lo_at_values": lo_at,
                       "k": k_w, "wx": wx})
    return tables


# The largest k (weights per output channel) whose groups get expanded weights: 16 bytes of flash per
# weight of four channels, for the 1x1 and first-layer convolutions the M0+ spends most time in.
WIDE_MAX_K = 32


def wide_weights(schema, model, t_w) -> list[int] | None:
    """A CONV_2D's int8 or int4 weights (out_c x k) as pk_span4w reads them: for each group of four
    output channels, weight i of channel c at [i * 4 + c], as int32 (the kernel's pk_conv_params::wx).
    None when the layer has fewer than four output channels or no constant weights. The firmware uses
    them only for the op whose weights they equal, compared at Prepare."""
    import numpy as np

    from pipeline.convert import _unpack_int4

    out_c, k = int(t_w.shape[0]), int(np.prod(t_w.shape[1:]))
    buf = model.buffers[t_w.buffer] if t_w.buffer is not None and 0 <= t_w.buffer < len(model.buffers) else None
    if out_c < 4 or buf is None or buf.data is None:
        return None
    raw = np.asarray(buf.data, dtype=np.uint8)
    if t_w.type == schema.TensorType.INT8 and raw.size == out_c * k:
        w = raw.view(np.int8)
    elif t_w.type == schema.TensorType.INT4 and raw.size == (out_c * k + 1) // 2:
        w = _unpack_int4(raw, out_c * k)
    else:
        return None
    groups = w[: (out_c // 4) * 4 * k].reshape(out_c // 4, 4, k)
    return [int(v) for v in groups.transpose(0, 2, 1).reshape(-1)]


INT32_MIN = -(1 << 31)


def activation_range(activation: int, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLM's CalculateActivationRangeQuantized for int8 (ActivationFunctionType: 1 RELU, 2 RELU_N1_TO_1,
    3 RELU6, else the whole range), float32 division and round half away from zero as in TFLM."""
    import numpy as np

    def quantize(f: float) -> int:
        x = float(np.float32(f) / np.float32(scale))
        return zero_point + int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)

    if activation == 1:
        return max(-128, quantize(0.0)), 127
    if activation == 3:
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if activation == 2:
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    return -128, 127


def _out_q(acc: int, mult: int, left: int, right: int, out_offset: int, lo: int, hi: int) -> int:
    """pk_core.c's pk_out_q: requantize (CMSIS-NN's arm_nn_requantize), add the offset, clamp."""
    v = (acc << left) & 0xFFFFFFFF
    v = v - (1 << 32) if v >= 1 << 31 else v
    h = (v * mult + (1 << 30)) >> 31
    mask = (1 << right) - 1
    r = h >> right
    if (h & mask) > (mask >> 1) + (1 if r < 0 else 0):
        r += 1
    return min(max(r + out_offset, lo), hi)


def relu_threshold(mult: int, shift: int, out_offset: int, lo: int, hi: int) -> int:
    """pk_core.c's pk_lo_threshold, step for step: the largest accumulator that requantizes to ``lo``
    (INT32_MIN when it cannot be confirmed). The firmware compares the host's value with its own
    once per boot and uses the host's only when they are equal."""
    left, right = max(shift, 0), max(-shift, 0)
    span = lo - out_offset
    if mult <= 0 or right > 20 or span < -512 or span > 512:
        return INT32_MIN
    num = (2 * span + 1) * (1 << (30 + right))
    a = abs(num) // mult * (1 if num >= 0 else -1)  # C: int64 division truncates toward zero
    a >>= left
    t = max(-(1 << 23), min(1 << 23, a))

    def q(x: int) -> int:
        return _out_q(x, mult, left, right, out_offset, lo, hi)

    for _ in range(64):
        if q(t + 1) != lo:
            break
        t += 1
    for _ in range(64):
        if q(t) == lo:
            break
        t -= 1
    if q(t) != lo or q(t + 1) == lo:
        return INT32_MIN
    return t


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
    return render_variants([RenderVariant("", tflite, golden_outputs)], cfg, out_dir, golden_inputs=golden_inputs,
                           golden_labels=golden_labels, class_names=class_names,
                           host_arena_bytes=host_arena_bytes, provenance=provenance)


@dataclass(frozen=True)
class RenderVariant:
    """One model of a firmware: its name (empty for a single-model firmware), flatbuffer and the
    raw outputs host TFLM gave for the golden inputs."""

    name: str
    tflite: bytes
    golden_outputs: np.ndarray


def variant_symbol(model_name: str, variant: str) -> str:
    """The C identifier part of a variant's model array: ``<model_name>_<variant>`` with every
    character that cannot be in an identifier replaced by ``_`` (the variant name itself reaches
    the C only as an escaped string literal)."""
    import re

    if not variant:
        return model_name
    return check_c_identifier(f"{model_name}_{re.sub(r'[^A-Za-z0-9_]', '_', variant)}"[:64], "variant symbol")


def render_variants(variants: Sequence[RenderVariant], cfg: RenderConfig, out_dir: Path, *,
                    golden_inputs: np.ndarray, golden_labels: Sequence[int], class_names: Sequence[str],
                    host_arena_bytes: int, provenance: dict[str, str]) -> list[Path]:
    """Write one firmware's generated sources holding every model of ``variants`` (same input,
    output and classes; the firmware selects one at a time, in one arena sized for the largest).

    ``host_arena_bytes`` is the largest host minimum among the variants. Variant 0 is the one the
    firmware sets up at boot. The file set is the same as for one model (``render``).
    """
    from pipeline.artifacts import atomic_write_text

    if not variants:
        raise PipelineError("no model to render", hint="this is a bug in the caller")
    name = check_c_identifier(cfg.model_name, "render.model_name")
    class_names = [str(c) for c in class_names]
    for c in class_names:  # they reach the C only as escaped string literals (c_string)
        check_class_name(c)
    golden_inputs = np.ascontiguousarray(golden_inputs)
    count = len(golden_inputs)
    if count == 0 or len(golden_labels) != count:
        raise PipelineError("golden inputs and labels must be non-empty and of equal count",
                            hint="this is a bug in the caller")
    names = [v.name for v in variants]
    if len(variants) > 1 and (len(set(names)) != len(names) or not all(names)):
        raise PipelineError(f"variant names must be distinct and non-empty, got {names}", hint="name each variant once")
    if len(variants) > 16:
        raise PipelineError(f"{len(variants)} variants: a firmware holds at most 16", hint="name fewer variants")
    prov = {k: str(provenance.get(k, "unknown")) for k in ("tool_version", "model_file", "source_sha256",
                                                               "tensorflow", "tflite_micro")}
    prov["model_sha256"] = hashlib.sha256(variants[0].tflite).hexdigest()
    for k, v in prov.items():  # the banner is a // comment: one line, printable ASCII
        if not all(0x20 <= ord(c) < 0x7F for c in v):
            raise PipelineError(f"provenance field {k} has characters that cannot go into a C comment: {v!r}",
                                hint="use an ASCII path and name")

    vctx: list[dict[str, Any]] = []
    ops: list[str] = []
    quant_tables: list[dict[str, Any]] = []
    first = None
    for v in variants:
        info: ModelInfo = inspect_tflite(v.tflite)
        check_tflm_compatible(info)
        label = f"variant {v.name}: " if v.name else ""
        if info.output.elements != len(class_names):
            raise PipelineError(
                f"{label}the model has {info.output.elements} outputs but {len(class_names)} class names were given",
                hint="the data's classes must match the model's output units",
            )
        in_ctx, out_ctx = _tensor_ctx(info.input), _tensor_ctx(info.output)
        if first is None:
            first = (info, in_ctx, out_ctx)
        else:
            i0, a_in, a_out = first
            for what, x, y in (("input", (a_in["c_type"], a_in["shape"]), (in_ctx["c_type"], in_ctx["shape"])),
                               ("output", (a_out["c_type"], a_out["shape"]), (out_ctx["c_type"], out_ctx["shape"])),
                               ("input quantization", (a_in["scale"], a_in["zero_point"]),
                                (in_ctx["scale"], in_ctx["zero_point"])),
                               ("schema version", i0.schema_version, info.schema_version)):
                if x != y:
                    raise PipelineError(f"variants {variants[0].name} and {v.name} are not the same model: "
                                        f"{what} {x} vs {y}",
                                        hint="one firmware switches only between variants of one model "
                                             "(same input, output and classes)")
        outs = np.ascontiguousarray(v.golden_outputs)
        if len(outs) != count:
            raise PipelineError("golden inputs, outputs and labels must be non-empty and of equal count",
                                hint="this is a bug in the caller")
        if golden_inputs[0].nbytes != in_ctx["nbytes"] or outs[0].nbytes != out_ctx["nbytes"]:
            raise PipelineError("golden data does not match the model's tensor sizes", hint="re-run the verify stage")
        for op in info.ops:
            if op not in ops:
                ops.append(op)
        tables = conv_quant_tables(v.tflite)
        for t in tables:
            quant_tables.append({**t, "index": len(quant_tables), "variant": v.name})
        sha = hashlib.sha256(v.tflite).hexdigest()
        plan = inplace_plan(v.tflite) if cfg.inplace else None
        vctx.append({
            "plan": plan.as_json() if plan else None,
            "name": v.name,
            "display": v.name or name,
            "sym": variant_symbol(name, v.name),
            "size": len(v.tflite),
            "model_bytes": c_bytes(v.tflite),
            "hash16": sha[:16],
            "macs": info.macs,
            "op_count": len(info.op_sequence),
            "output": out_ctx,
            "outputs": [", ".join(f"0x{b:02x}" for b in outs[i].tobytes()) for i in range(count)],
        })
    info, in_ctx, out_ctx = first
    arena = choose_arena(cfg, host_arena_bytes)
    out_bytes = sum(np.ascontiguousarray(v.golden_outputs).nbytes for v in variants)
    check_fits_rp2040(sum(len(v.tflite) for v in variants), arena.bytes, int(golden_inputs.nbytes + out_bytes))

    ctx: dict[str, Any] = {
        "prov": prov,
        "name": name,
        "variants": vctx,
        "v0": vctx[0],
        "arena": arena,
        "schema_version": info.schema_version,
        "input": in_ctx,
        "output": out_ctx,
        "class_names": class_names,
        "op_count": max(v["op_count"] for v in vctx),
        "ops": ops,
        "methods": [TFLM_RESOLVER_METHODS[op] for op in ops],
        "fast_ops": [op for op in ops if op in FAST_KERNEL_OPS],
        "quant_tables": quant_tables,
        "count": count,
        "inputs": [{"index": i, "label": f"{int(golden_labels[i])} ({c_string(class_names[int(golden_labels[i])])})",
                    "bytes": c_bytes(golden_inputs[i].tobytes(), indent="    ")} for i in range(count)],
    }
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
