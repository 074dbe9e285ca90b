"""The stage functions the table names: each reads its inputs from the run directory, calls the plain
stage function of its module, writes its artifacts atomically and returns its metrics.

These adapters are the only place that knows artifact names; the modules they call know nothing
about run directories (a notebook or a test calls them directly).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import PipelineError
from pipeline.flow.runner import StageContext, StageSkipped
from pipeline.flow.table import convert_inputs, samples


def _splits(ctx: StageContext):
    from pipeline.stages.data import to_model_input

    ds = ctx.load_dataset()
    train = (to_model_input(ds.x_train), ds.y_train)
    val = (to_model_input(ds.x_val), ds.y_val)
    return ds, train, val


def _batch(ctx: StageContext) -> int:
    return ctx.config("train").batch_size if "train" in ctx.recipe.stages else 32


# ----------------------------------------------------------------------- data, model, train
def data_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.data import make_dataset

    t0 = time.perf_counter()
    ds = make_dataset(cfg, warn=ctx.warn, progress=ctx.progress)
    ds.save(ctx.path("data.npz"))
    return {**ds.summary(), "seconds": round(time.perf_counter() - t0, 2)}


def model_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.models import build_model, count_macs, is_model_path

    ds = ctx.load_dataset()
    model = build_model(cfg, ds.num_classes, ds.image_shape)
    ctx.save_keras(model, "model_untrained.keras")
    from_file = is_model_path(cfg.name)
    return {
        "model": model.name,
        "from": f"file {cfg.name}" if from_file else f"registry ({cfg.name})",
        "params": int(model.count_params()),
        "macs": count_macs(model),
        "layers": len(model.layers),
        "input_shape": list(model.input_shape[1:]),
        "classes": ds.num_classes,
    }


def train_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.train import train

    ds = ctx.load_dataset()
    model = ctx.load_keras("model_untrained.keras")
    model, result = train(model, ds, cfg, progress=ctx.progress)
    ctx.save_keras(model, "model.keras")
    ctx.write_json("train_history.json", {"history": result.history, "best_epoch": result.best_epoch})
    return result.metrics(ds.class_names)


# ------------------------------------------------------------------------- compression
def prune_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.optimize.prune import prune

    ds, train, val = _splits(ctx)
    model = ctx.load_keras(ctx.input_model())
    pruned, metrics = prune(model, train, val, cfg, batch_size=_batch(ctx))
    ctx.save_keras(pruned, "model_pruned.keras")
    return metrics


def cluster_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.optimize.cluster import cluster

    ds, train, val = _splits(ctx)
    model = ctx.load_keras(ctx.input_model())
    clustered, metrics = cluster(model, train, val, cfg, batch_size=_batch(ctx))
    ctx.save_keras(clustered, "model_clustered.keras")
    return metrics


def quantize_stage(ctx: StageContext, cfg) -> dict:
    """Quantize and convert in one process: a QAT model does not survive a save/load round trip
    (tfmot's quantize layers fail to reload), so this stage's artifact is the quantized flatbuffer."""
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert
    from pipeline.stages.optimize.quantize import quantize

    ds, train, val = _splits(ctx)
    model = ctx.load_keras(ctx.input_model())
    qmodel, metrics, qat = quantize(model, train, val, cfg, batch_size=_batch(ctx))
    ccfg = ctx.config("convert") if "convert" in ctx.recipe.stages else ConvertConfig()
    data = convert(qmodel, train[0], ConvertConfig(representative_samples=ccfg.representative_samples, slim=False),
                   qat=qat)
    ctx.write_bytes("model_quantized.tflite", data)
    metrics["qat"] = qat
    metrics["quantized_tflite_bytes"] = len(data)
    return metrics


def convert_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.config import ConvertConfig
    from pipeline.stages.convert import convert, convert_float
    from pipeline.tflite.reader import check_tflm_compatible, inspect_tflite
    from pipeline.tflite.slim import slim
    from pipeline.stages.verify import images_to_input, minimal_arena, outputs_identical

    ds = ctx.load_dataset()
    keras_name = convert_inputs(ctx.recipe)[-1]
    model = ctx.load_keras(keras_name)
    if "quantize" in ctx.recipe.stages:
        full = ctx.path("model_quantized.tflite").read_bytes()
        how = f"quantized by the quantize stage ({ctx.metrics_of('quantize').get('method', '?')})"
    else:
        from pipeline.stages.data import to_model_input

        full = convert(model, to_model_input(ds.x_train), ConvertConfig(cfg.representative_samples, slim=False))
        how = f"post-training full-integer int8, {cfg.representative_samples} calibration images"
    info_full = inspect_tflite(full)
    check_tflm_compatible(info_full)
    data = full
    slim_proof: dict[str, Any] = {"applied": False}
    if cfg.slim:
        data = slim(full)
        probe = images_to_input(ds.x_test, info_full)  # the whole test split: 0.1-0.3 s on the host
        arena = minimal_arena(full, info_full) * 2
        same = outputs_identical(full, data, probe, arena)
        if not same:
            raise PipelineError("slimming changed the model's outputs under host TFLM",
                                hint="set convert.slim = false and report this as a bug")
        slim_proof = {"applied": True, "bytes_before": len(full), "bytes_after": len(data),
                      "identical_outputs_on": f"{len(probe)} test images (host TFLM)"}
    float_bytes = convert_float(model)
    ctx.write_bytes("model_float.tflite", float_bytes)
    ctx.write_bytes("model.tflite", data)
    info = inspect_tflite(data)
    return {
        "how": how,
        "from_keras": keras_name,
        "tflite_bytes": len(data),
        "float_tflite_bytes": len(float_bytes),
        "size_vs_float_percent": round(100.0 * (len(data) - len(float_bytes)) / len(float_bytes), 1),
        "weight_bytes": info.weight_bytes,
        "constant_bytes": info.constant_bytes,
        "weight_dtypes": sorted({l.weight_dtype for l in info.layers if l.weight_dtype}),
        "ops": info.ops,
        "macs": info.macs,
        "input": f"{info.input.dtype} {info.input.shape} scale {info.input.scale[0]:.6g} zp {info.input.zero_point[0]}",
        "output": f"{info.output.dtype} {info.output.shape} scale {info.output.scale[0]:.6g} zp {info.output.zero_point[0]}",
        "slim": slim_proof,
        "sha256": info.sha256,
    }


# ------------------------------------------------------------------ a user's .tflite
def tflite_check(recipe, cfg=None):
    """The preflight of a recipe's ``tflite`` stage with the settings of its later stages (the kernels
    it is built with, the render margin, the arena bound): a :class:`pipeline.stages.support.Preflight`."""
    from pipeline.stages.support import preflight

    has = recipe.stages
    return preflight(cfg or recipe.config("tflite"),
                     kernels=recipe.config("build").kernels if "build" in has else "picotflm",
                     render_cfg=recipe.config("render") if "render" in has else None,
                     max_arena_bytes=recipe.config("verify").max_arena_bytes if "verify" in has else 1 << 20)


def tflite_stage(ctx: StageContext, cfg) -> dict:
    """A user's ``.tflite``: refused here, before anything is written, when TFLM cannot run it on the
    RP2040 (operators, types, flash, SRAM); else copied in as ``model.tflite`` with its inputs."""
    pre = tflite_check(ctx.recipe, cfg)
    data, info, inputs = pre.data, pre.info, pre.inputs
    ctx.write_bytes("model.tflite", data)
    inputs.save(ctx.path("inputs.npz"))
    return {
        "model_file": Path(cfg.path).name,
        "tflite_bytes": len(data),
        "weight_bytes": info.weight_bytes,
        "weight_dtypes": sorted({l.weight_dtype for l in info.layers if l.weight_dtype}),
        "ops": info.ops,
        "macs": info.macs,
        "input": f"{info.input.dtype} {'x'.join(map(str, info.input.shape))}",
        "output": f"{info.output.dtype} {'x'.join(map(str, info.output.shape))}",
        "sha256": info.sha256,
        "inputs": inputs.summary(),
        "support": pre.table,
    }


def _load_inputs(ctx: StageContext):
    """The ready input tensors (and labels, if any) of ``inputs.npz``."""
    from pipeline.stages.inputs import ModelInputs

    return ModelInputs.load(ctx.path("inputs.npz"))


def _class_names(inputs, info) -> list[str]:
    """Names of the model's outputs: the inputs' classes when there is one per output, else indices."""
    n = info.output.elements
    return list(inputs.class_names) if len(inputs.class_names) == n else [str(i) for i in range(n)]


def verify_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.verify import verify, verify_inputs

    data = ctx.path("model.tflite").read_bytes()
    if samples(ctx.recipe) == "inputs.npz":
        inputs = _load_inputs(ctx)
        result = verify_inputs(data, inputs.x, inputs.y, cfg, class_names=list(inputs.class_names) or None)
        result.metrics["inputs_source"] = inputs.source
    else:
        ds = ctx.load_dataset()
        result = verify(data, ds.x_test, ds.y_test, cfg, class_names=list(ds.class_names))
    m = result.metrics
    if m.get("tflm_vs_tflite_warning"):
        ctx.warn(m["tflm_vs_tflite_warning"])
    train_m = ctx.metrics_of("train")
    if "test_accuracy" in train_m:
        m["keras_float_test_accuracy"] = train_m["test_accuracy"]
        m["accuracy_change_points"] = round(100 * (m["tflm_test_accuracy"] - train_m["test_accuracy"]), 2)
    ctx.write_json("verify.json", m)
    return m


# ---------------------------------------------------------------------------- firmware
def codebook_bits(recipe) -> int:
    """The index width of the recipe's codebook weights (cluster.index_bits), 8 without a cluster stage."""
    return recipe.config("cluster").index_bits if "cluster" in recipe.stages else 8


def render_stage(ctx: StageContext, cfg) -> dict:
    from pipeline import __version__
    from pipeline.flow.rundir import library_versions, sha256_file
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.codegen.render import render
    from pipeline.stages.verify import images_to_input, run_tflm

    data = ctx.path("model.tflite").read_bytes()
    info = inspect_tflite(data)
    host_arena = int(ctx.metrics_of("verify").get("host_arena_min_bytes") or 0)
    if not host_arena:
        from pipeline.stages.verify import minimal_arena

        host_arena = minimal_arena(data, info)
    from pipeline.stages.data import golden_indices

    if samples(ctx.recipe) == "inputs.npz":
        inputs = _load_inputs(ctx)
        idx = golden_indices(inputs.y, cfg.golden_count) if inputs.y is not None else \
            list(range(min(cfg.golden_count, len(inputs.x))))
        x = inputs.x[idx]
        labels = [int(inputs.y[i]) for i in idx] if inputs.y is not None else [None] * len(idx)
        class_names = _class_names(inputs, info)
    else:
        ds = ctx.load_dataset()
        idx = golden_indices(ds.y_test, cfg.golden_count)
        x = images_to_input(ds.x_test[idx], info)
        labels = [int(ds.y_test[i]) for i in idx]
        class_names = list(ds.class_names)
    y, _ = run_tflm(data, x, host_arena)
    versions = library_versions()
    try:
        source = "model.tflite" if samples(ctx.recipe) == "inputs.npz" else convert_inputs(ctx.recipe)[-1]
        source_sha = sha256_file(ctx.path(source))
    except (PipelineError, OSError):
        source_sha = "unknown"
    out_dir = ctx.path("firmware")
    files = render(data, cfg, out_dir, golden_inputs=x, golden_outputs=y,
                   golden_labels=labels, class_names=class_names,
                   host_arena_bytes=host_arena,
                   provenance={"tool_version": __version__, "model_file": f"runs/{ctx.run.name}/model.tflite",
                               "source_sha256": source_sha, "tensorflow": versions.get("tensorflow") or "unknown",
                               "tflite_micro": versions.get("tflite-micro") or "unknown"},
                   codebook_bits=codebook_bits(ctx.recipe))
    from pipeline.codegen.render import choose_arena

    arena = choose_arena(cfg, host_arena)
    ctx.write_json("golden.json", {"test_indices": idx, "outputs": [bytes(r.tobytes()).hex() for r in y]})
    return {
        "files": [f.name for f in files],
        "arena_bytes": arena.bytes,
        "arena_rule": arena.explanation,
        "golden_count": len(idx),
        "model_hash": info.sha256[:16],
        **device_stored(data, codebook_bits(ctx.recipe)),
    }


def device_stored(data: bytes, bits: int) -> dict:
    """The model's bytes as stored in the device's flash: the device .tflite (codebook weights in it) and
    the expanded conv weights the kernels read from flash (pipeline/codegen/kernels.py)."""
    from pipeline.codegen.kernels import conv_quant_tables
    from pipeline.tflite.codebook import device_figures

    dev, figures = device_figures(data, bits)
    wide = sum(4 * len(t["wx"]) for t in conv_quant_tables(dev) if t["wx"])
    return {**figures, "expanded_weight_bytes": wide, "device_model_bytes": len(dev) + wide}


def build_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.flow.rundir import atomic_write_bytes
    from pipeline.board.connect import firmware_required
    from pipeline.stages.build import (GENERATED_COPY, ToolchainMissing, build_dir_for, build_firmware,
                                       find_toolchain, locked, sync_tree)

    try:
        tc = find_toolchain()
    except ToolchainMissing as e:
        if firmware_required():
            raise
        raise StageSkipped(f"not built: {e}") from None
    # One build folder per runs directory and image, shared by its runs: a fresh folder costs a CMake
    # configure and hundreds of ccache look-ups (12-24 s on 2 busy cores), another model in a
    # configured folder 0.5-0.7 s. The run's sources are copied in (changed files only) under a lock.
    build_dir = build_dir_for(ctx.run.root.parent, cfg.image)
    with locked(build_dir.with_name(build_dir.name + ".lock")):
        generated = build_dir / GENERATED_COPY
        sync_tree(ctx.path("firmware"), generated)
        res = build_firmware(generated, build_dir, cfg, toolchain=tc, log=ctx.log)
        for src, name in ((res.elf, "firmware.elf"), (res.bin, "firmware.bin"), (res.uf2, "firmware.uf2")):
            atomic_write_bytes(ctx.path(name), Path(src).read_bytes())
    mem = res.memory
    return {
        "image": cfg.image,
        "sdk": f"{'.'.join(map(str, tc.sdk_version))}",
        "seconds": round(res.seconds, 1),
        "flash_bytes": mem.get("flash_bytes"),
        "flash_percent_of_2MB": round(100.0 * mem.get("flash_bytes", 0) / mem["flash_size"], 2),
        "static_ram_bytes": mem.get("static_ram_bytes"),
        "static_ram_percent_of_264KB": round(100.0 * mem.get("static_ram_bytes", 0) / mem["sram_size"], 2),
        "arena_static_bytes": mem.get("arena_static_bytes"),
        "stack_bytes": mem.get("stack_bytes"),
        "sections": mem.get("sections"),
        "where": "read from the ELF (pyelftools)",
    }


def measure_stage(ctx: StageContext, cfg) -> dict:
    """Read back what the board says: a real board with --port, else the emulated Pico."""
    from pipeline.board.connect import BoardUnavailable, board_port
    from pipeline.board.measure import measure
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.verify import images_to_input

    data = ctx.path("model.tflite").read_bytes()
    info = inspect_tflite(data)
    expect = info.sha256[:16]
    if samples(ctx.recipe) == "inputs.npz":
        x = _load_inputs(ctx).x[: cfg.infer_frames]
    else:
        x = images_to_input(ctx.load_dataset().x_test[: cfg.infer_frames], info)
    frames = [bytes(r.tobytes()) for r in x]
    kwargs = dict(expect_hash=expect, bench_runs=cfg.bench_runs, frames=frames, macs=info.macs)
    image = ctx.config("build").image if "build" in ctx.recipe.stages else "emulator"
    t0 = time.perf_counter()
    try:
        with board_port(ctx.path("firmware.elf"), ctx.options.port, image, ctx.options.port_label) as (port, where):
            result = measure(port, **kwargs)
    except BoardUnavailable as e:
        raise StageSkipped(e.message) from None
    result["measure_wall_seconds"] = round(time.perf_counter() - t0, 2)
    result["where"] = where
    # The board's answers to the test frames, next to host TFLM's for the same frames.
    if frames:
        from pipeline.stages.verify import run_tflm

        host, _ = run_tflm(data, x, int(ctx.metrics_of("verify").get("host_arena_min_bytes") or 64 * 1024))
        board = [bytes.fromhex(o) for o in result.get("infer_outputs", [])]
        if board:
            same = [b == bytes(h.tobytes()) for b, h in zip(board, host)]
            result["infer_vs_host_tflm"] = {
                "frames": len(board),
                "bit_exact": int(sum(same)),
                "top1_agree": int(sum(int(np.frombuffer(b, host.dtype).argmax()) == int(h.argmax())
                                      for b, h in zip(board, host))),
            }
    ctx.write_json("measured.json", result)
    return result
