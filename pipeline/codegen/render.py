"""Render a ``.tflite`` into the firmware's generated sources, through Jinja templates only.

Python computes the values (arena size, op list, quantization, golden data); the small helpers
below format C literals; the templates in ``pipeline/codegen/templates`` hold the layout. The output is a
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
from pipeline.tflite.reader import ModelInfo, TFLITE_TYPES, TFLM_RESOLVER_METHODS, check_tflm_compatible, inspect_tflite
from pipeline.codegen.cgen import c_bytes, c_float, c_string
from pipeline.codegen.kernels import FAST_KERNEL_OPS, conv_quant_tables
from pipeline.board.targets import RP2040
from pipeline.errors import PipelineError
from pipeline.codegen.builtin_params import builtin_params
from pipeline.codegen.fc_tables import fc_quant_tables
from pipeline.codegen.op_data import op_data_records
from pipeline.codegen.memplan import inplace_plan

TEMPLATES_DIR = Path(__file__).parent / "templates"

GENERATED_FILES = ("model_data.h", "model_data.cc", "model_config.h", "op_resolver.h", "golden_data.h",
                   "golden_data.cc", "codebook_data.cc")

# What the firmware needs besides the arena and the model, measured on our own images and rounded
# up: code ~130 KB of flash; static RAM ~30 KB, stack 2 KB. Used only to refuse hopeless sizes early.
FIRMWARE_FLASH_RESERVE = 256 * 1024
FIRMWARE_RAM_RESERVE = 48 * 1024


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
    if flash > RP2040.flash_bytes:
        raise PipelineError(
            f"model {model_bytes:,} B + golden data {golden_bytes:,} B + firmware (~{FIRMWARE_FLASH_RESERVE // 1024} KB) "
            f"= {flash:,} B exceeds the RP2040's 2 MB flash",
            hint="compress the model further (prune, cluster, int4) or lower render.golden_count",
        )
    ram = arena_bytes + FIRMWARE_RAM_RESERVE
    if ram > RP2040.ram_bytes:
        raise PipelineError(
            f"arena {arena_bytes:,} B + firmware RAM (~{FIRMWARE_RAM_RESERVE // 1024} KB) = {ram:,} B exceeds the "
            f"RP2040's 264 KB SRAM",
            hint="use a smaller model or input, or lower render.arena_margin_percent",
        )


# ---------------------------------------------------------------------------------- render
# The output element types the firmware reads (top-1, golden differences: its Element<> template).
FIRMWARE_OUTPUT_TYPES = ("INT8", "UINT8", "INT16", "FLOAT32")


def _tensor_ctx(t, output: bool = False) -> dict[str, Any]:
    if t.dtype not in TFLITE_TYPES or (output and t.dtype not in FIRMWARE_OUTPUT_TYPES):
        raise PipelineError(f"{'output' if output else 'input'} tensor type {t.dtype} is not supported by the firmware",
                            hint="use int8 (or float32) input and output")
    return {
        "c_type": TFLITE_TYPES[t.dtype][0],
        "nbytes": t.nbytes,
        "scale": t.scale[0] if t.scale else 0.0,
        "zero_point": t.zero_point[0] if t.zero_point else 0,
        "shape": t.shape,
    }


def render(tflite: bytes, cfg: RenderConfig, out_dir: Path, *, golden_inputs: np.ndarray,
           golden_outputs: np.ndarray, golden_labels: Sequence[int], class_names: Sequence[str],
           host_arena_bytes: int, provenance: dict[str, str], codebook_bits: int = 8) -> list[Path]:
    """Write the generated firmware sources for ``tflite`` into ``out_dir``; return their paths.

    With ``codebook_bits`` 2 or 4, the device model stores its eligible CONV_2D filters as codebooks
    (``pipeline/tflite/codebook.py``); the golden outputs stay those of ``tflite`` under host TFLM.

    ``golden_inputs``/``golden_outputs`` are raw input/output tensor values (host TFLM's outputs
    for those inputs). ``provenance`` holds tool_version, model_file, source_sha256, tensorflow,
    tflite_micro for the banner.
    """
    return render_variants([RenderVariant("", tflite, golden_outputs)], cfg, out_dir, golden_inputs=golden_inputs,
                           golden_labels=golden_labels, class_names=class_names,
                           host_arena_bytes=host_arena_bytes, provenance=provenance, codebook_bits=codebook_bits)


def _golden_label(label: int | None, class_names: Sequence[str]) -> str:
    """``3 ("mixed")`` for a labelled golden input; ``none`` for an unlabelled one (seeded or a user's)."""
    if label is None or not 0 <= int(label) < len(class_names):
        return "none"
    return f"{int(label)} ({c_string(class_names[int(label)])})"


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
                    host_arena_bytes: int, provenance: dict[str, str],
                    codebook_bits: int | Sequence[int] = 8) -> list[Path]:
    """Write one firmware's generated sources holding every model of ``variants`` (same input,
    output and classes; the firmware selects one at a time, in one arena sized for the largest).

    ``codebook_bits``: one index width for every variant, or one per variant (8: stored as it is).

    ``host_arena_bytes`` is the largest host minimum among the variants. Variant 0 is the one the
    firmware sets up at boot. The file set is the same as for one model (``render``).
    """
    from pipeline.flow.rundir import atomic_write_text

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
    source_sha = {v.name: hashlib.sha256(v.tflite).hexdigest() for v in variants}
    codebooks: list[dict[str, Any]] = []
    bits_of = [codebook_bits] * len(variants) if isinstance(codebook_bits, int) else [int(b) for b in codebook_bits]
    if len(bits_of) != len(variants):
        raise PipelineError(f"{len(bits_of)} codebook widths for {len(variants)} variants",
                            hint="give one width per variant (8 for plain int8 storage)")
    if min(bits_of) < 8:
        from pipeline.tflite.codebook import encode

        encoded = []  # the device models; the hashes stay those of the host models they encode
        for v, bits in zip(variants, bits_of):
            if bits >= 8:
                encoded.append(v)
                continue
            dev, books = encode(v.tflite, bits)
            sym = variant_symbol(name, v.name)
            codebooks += [{**vars(b), "stored_bytes": b.stored_bytes, "sym": sym,
                           "variant": f"{v.name} " if v.name else ""} for b in books]
            encoded.append(RenderVariant(v.name, dev, v.golden_outputs))
        variants = encoded

    vctx: list[dict[str, Any]] = []
    ops: list[str] = []
    quant_tables: list[dict[str, Any]] = []
    fc_tables: list[dict[str, Any]] = []
    first = None
    for v in variants:
        info: ModelInfo = inspect_tflite(v.tflite)
        check_tflm_compatible(info, require_int8_io=False)
        label = f"variant {v.name}: " if v.name else ""
        if info.output.elements != len(class_names):
            raise PipelineError(
                f"{label}the model has {info.output.elements} outputs but {len(class_names)} class names were given",
                hint="the data's classes must match the model's output units",
            )
        in_ctx, out_ctx = _tensor_ctx(info.input), _tensor_ctx(info.output, output=True)
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
        for t in fc_quant_tables(v.tflite):
            fc_tables.append({**t, "index": len(fc_tables), "variant": v.name})
        tables = conv_quant_tables(v.tflite)
        for t in tables:
            quant_tables.append({**t, "index": len(quant_tables), "variant": v.name})
        sha = source_sha[v.name]
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
        "fc_tables": fc_tables,
        "builtin_params": builtin_params([v.tflite for v in variants]),
        "op_data": op_data_records([(v.name, v.tflite) for v in variants], quant_tables, fc_tables),
        "codebooks": codebooks,
        "scratch_bytes": max([2 * 20 * c["k"] for c in codebooks] + [4]),  # firmware/src/kernels/codebook.h
        "count": count,
        "inputs": [{"index": i, "label": _golden_label(golden_labels[i], class_names),
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
