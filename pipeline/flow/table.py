"""THE stage table: every stage's name, config class, function, inputs and outputs, in pipeline order.

The runner, the CLI and the recipe loader read this table and nothing else to know the stages. A
stage function is named as ``"module:function"`` and imported only when it runs (so TensorFlow and
friends load only for the stages that need them); :mod:`pipeline.flow.steps` holds them. To add a
stage: write its config in :mod:`pipeline.config`, its function in ``steps``, and a row here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline import PACKAGE_DIR as PACKAGE
from pipeline import SOURCE_ROOT
from pipeline.config import (BuildConfig, ClusterConfig, ConvertConfig, DataConfig, MeasureConfig, ModelConfig,
                             PruneConfig, QuantizeConfig, RenderConfig, TfliteConfig, TrainConfig, VerifyConfig)
from pipeline.errors import PipelineError

# A recipe (pipeline.flow.recipe.Recipe, which reads this table) is only passed through here: typed Any.
Recipe = Any


@dataclass(frozen=True)
class Stage:
    """One row of the table.

    ``config``: the stage's config dataclass. ``fn``: ``"module:function"``, called as
    ``fn(ctx: StageContext, cfg) -> dict`` (its metrics for the manifest).
    ``inputs``: artifact names it reads, or ``f(recipe) -> names`` when that depends on the recipe.
    ``outputs``: artifact names (files or folders) it writes.
    ``external``: ``f(cfg) -> paths`` outside the run directory whose contents count as inputs.
    ``headline``: ``f(metrics) -> str``, a short phrase for the log and the report.
    """

    name: str
    config: type
    fn: str | Callable[..., dict]
    inputs: tuple[str, ...] | Callable[[Recipe], Sequence[str]] = ()
    outputs: tuple[str, ...] = ()
    external: Callable[[Any], Sequence[Path]] | None = None
    headline: Callable[[dict], str] | None = None

    def input_names(self, recipe: Recipe) -> tuple[str, ...]:
        return tuple(self.inputs(recipe) if callable(self.inputs) else self.inputs)

    def function(self) -> Callable[..., dict]:
        if callable(self.fn):
            return self.fn
        module, _, attr = self.fn.partition(":")
        return getattr(importlib.import_module(module), attr)


def previous_output(recipe: Recipe, stage: str, suffix: str) -> str:
    """The last output ending in ``suffix`` of a stage before ``stage`` in ``recipe``."""
    found = None
    for s in recipe.stages:
        if s == stage:
            break
        st = STAGE_BY_NAME.get(s)
        for out in st.outputs if st else ():
            if out.endswith(suffix):
                found = out
    if found is None:
        raise PipelineError(f"stage {stage!r} needs a {suffix} artifact, but no stage before it writes one",
                            hint="check the recipe's 'stages'")
    return found


def convert_inputs(recipe: Recipe) -> list[str]:
    """What the convert stage reads: the dataset, the quantize stage's flatbuffer when there is one,
    and the last Keras model before it (its source, for the float comparison and the provenance)."""
    ins = ["data.npz"]
    if "quantize" in recipe.stages:
        ins.append("model_quantized.tflite")
    ins.append(previous_output(recipe, "quantize" if "quantize" in recipe.stages else "convert", ".keras"))
    return ins


def samples(recipe: Recipe) -> str:
    """The artifact verify, render and measure take their inputs from: ready input tensors
    (``inputs.npz``) when a stage of the recipe writes them (a run that starts from a ``.tflite``),
    else the image dataset (``data.npz``)."""
    writes = {out for s in recipe.stages if s in STAGE_BY_NAME for out in STAGE_BY_NAME[s].outputs}
    return "inputs.npz" if "inputs.npz" in writes else "data.npz"


def _tflite_external(cfg) -> list[Path]:
    return [Path(p).expanduser() for p in (cfg.path, cfg.inputs) if p]


def _tflite_headline(m: dict) -> str:
    ins = m.get("inputs") or {}
    return (f"{m.get('tflite_bytes'):,} B .tflite, {m.get('macs'):,} MACs, {m.get('input')} -> {m.get('output')}; "
            f"{ins.get('count')} inputs ({ins.get('source')}); {(m.get('support') or {}).get('verdict')}")


def _verify_headline(m: dict) -> str:
    acc = m.get("tflm_test_accuracy")
    text = (f"host TFLM test accuracy {acc:.3f}" if acc is not None
            else f"host TFLM on {m.get('test_samples')} unlabelled inputs (no accuracy)")
    agree = m.get("tflm_vs_tflite") or {}
    if m.get("tflm_vs_tflite_warning"):
        text += (f"; TFLM and TFLite DIFFER on {agree.get('inputs_differing')} of {agree.get('inputs')} inputs "
                 f"(max abs diff {agree.get('max_abs_diff'):g})")
    return text + f", host arena {m.get('host_arena_min_bytes'):,} B"


def _data_external(cfg) -> list[Path]:
    return [] if cfg.source == "synthetic" else [Path(cfg.source).expanduser()]


def _model_external(cfg) -> list[Path]:
    return [Path(cfg.name)] if cfg.name.endswith((".keras", ".h5")) else []


def _sources(*names: str) -> Callable[[Any], list[Path]]:
    """Files of picotflm itself whose change makes the stage run again (converter, templates, firmware)."""
    def paths(_cfg) -> list[Path]:
        return [p for p in (PACKAGE / n if not n.startswith("/") else SOURCE_ROOT / n[1:] for n in names)
                if p.exists() and p.name != "generated"]
    return paths


def _quantize_headline(m: dict) -> str:
    text = f"{m.get('method')}, {m.get('weight_bits')}-bit weights"
    bits = m.get("layer_bits")
    if bits:
        text += (f" (8-bit: {', '.join(n for n, b in bits.items() if b == 8) or 'none'}; "
                 f"4-bit: {', '.join(n for n, b in bits.items() if b == 4) or 'none'})")
    return text


def measure_headline(m: dict) -> str:
    b = m.get("bench") or {}
    mem = m.get("mem") or {}
    g = m.get("golden") or {}
    cores = (f" on two cores, {(m.get('bench_one_core') or {}).get('median_us', '?')} us on one "
             f"({m['two_core_speedup']:.2f}x)" if m.get("two_core_speedup") else "")
    return (f"{m.get('source', '?')}: median {b.get('median_us', '?')} us{cores} ({m.get('cycles_per_mac', 0):.1f} cycles/MAC), "
            f"arena used {mem.get('arena_used', '?')} B, RAM {m.get('ram_total_bytes', '?')} B, golden "
            f"{g.get('exact', '?')}/{g.get('count', '?')} exact")


STEPS = "pipeline.flow.steps"
STAGES: tuple[Stage, ...] = (
    Stage("data", DataConfig, f"{STEPS}:data_stage", outputs=("data.npz",), external=_data_external,
          headline=lambda m: (f"{sum(m.get('images', {}).values())} images ({m['images'].get('train')} train / "
                              f"{m['images'].get('val')} val / {m['images'].get('test')} test)")),
    Stage("model", ModelConfig, f"{STEPS}:model_stage", inputs=("data.npz",), outputs=("model_untrained.keras",),
          external=_model_external,
          headline=lambda m: f"{m.get('model')}: {m.get('params'):,} parameters, {m.get('macs'):,} MACs"),
    Stage("train", TrainConfig, f"{STEPS}:train_stage", inputs=("data.npz", "model_untrained.keras"),
          outputs=("model.keras", "train_history.json"),
          headline=lambda m: (f"test accuracy {m.get('test_accuracy', float('nan')):.3f} (Keras float), "
                              f"{m.get('epochs_run')} epochs, best {m.get('best_epoch')}")),
    Stage("prune", PruneConfig, f"{STEPS}:prune_stage",
          inputs=lambda r: ("data.npz", previous_output(r, "prune", ".keras")), outputs=("model_pruned.keras",),
          headline=lambda m: f"{m.get('method')}: {m.get('sparsity_pruned_layers', 0):.0%} zeros in pruned layers"),
    Stage("cluster", ClusterConfig, f"{STEPS}:cluster_stage",
          inputs=lambda r: ("data.npz", previous_output(r, "cluster", ".keras")), outputs=("model_clustered.keras",),
          headline=lambda m: f"{m.get('clusters')} clusters per kernel"),
    Stage("quantize", QuantizeConfig, f"{STEPS}:quantize_stage",
          inputs=lambda r: ("data.npz", previous_output(r, "quantize", ".keras")), outputs=("model_quantized.tflite",),
          headline=_quantize_headline),
    Stage("convert", ConvertConfig, f"{STEPS}:convert_stage", inputs=convert_inputs,
          outputs=("model.tflite", "model_float.tflite"), external=_sources("stages/convert.py", "tflite"),
          headline=lambda m: (f"{m.get('tflite_bytes'):,} B .tflite ({m.get('weight_bytes'):,} B weights, "
                              f"{'/'.join(m.get('weight_dtypes') or [])})")),
    # A user's .tflite enters the flow here, instead of data ... convert: it reads nothing of the run.
    Stage("tflite", TfliteConfig, f"{STEPS}:tflite_stage", outputs=("model.tflite", "inputs.npz"),
          external=_tflite_external, headline=_tflite_headline),
    Stage("verify", VerifyConfig, f"{STEPS}:verify_stage", inputs=lambda r: (samples(r), "model.tflite"),
          outputs=("verify.json",), headline=_verify_headline),
    Stage("render", RenderConfig, f"{STEPS}:render_stage", inputs=lambda r: (samples(r), "model.tflite", "verify.json"),
          outputs=("firmware", "golden.json"), external=_sources("codegen"),
          headline=lambda m: f"arena {m.get('arena_bytes'):,} B, {m.get('golden_count')} golden inputs"),
    Stage("build", BuildConfig, f"{STEPS}:build_stage", inputs=("firmware",),
          outputs=("firmware.elf", "firmware.bin", "firmware.uf2"),
          external=_sources("/CMakeLists.txt", "/pico_sdk_import.cmake", "/firmware"),
          headline=lambda m: (f"{m.get('image')} image: flash {m.get('flash_bytes'):,} B, static RAM "
                              f"{m.get('static_ram_bytes'):,} B")),
    Stage("measure", MeasureConfig, f"{STEPS}:measure_stage",
          inputs=lambda r: ("firmware.elf", "model.tflite", samples(r), "verify.json"), outputs=("measured.json",),
          headline=measure_headline),
)
STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
STAGE_ORDER: tuple[str, ...] = tuple(s.name for s in STAGES)
