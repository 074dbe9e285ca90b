"""The one ordered list of stages, and the loop that takes a recipe through it.

Each :class:`Stage` names its function and the artifacts it reads and writes in the run
directory. A stage function has the signature ``fn(ctx: StageContext, cfg) -> dict`` (its metrics
for the manifest); it reads and writes artifacts through ``ctx``. To add a stage, write its
function (here or in its own module, named as ``"pipeline.module:function"`` so TensorFlow and
friends are imported only when it runs) and append a ``Stage`` to :data:`STAGES`, in the order of
:data:`pipeline.config.STAGE_ORDER`.

A stage is not run again ("up to date") when its config hash, the sha256 of its input artifacts
(and of outside files it reads, such as a user's image folder) match what the manifest recorded
and its outputs are still there, unchanged. A stage that cannot run on this machine raises
:class:`StageSkipped` with the reason; the manifest and the report say so, and later stages that
need its outputs are skipped too.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from pipeline.flow.rundir import (RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text, determinism_record,
                                library_versions, now_iso, save_keras_model, sha256_file, sha256_json, sha256_path)
from pipeline.config import STAGE_ORDER, Recipe, config_to_dict
from pipeline.errors import PipelineError

Log = Callable[[str], None]


class StageSkipped(Exception):
    """Raised by a stage that cannot run here (e.g. no Pico SDK): recorded as ``skipped: <reason>``."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class RunOptions:
    """Settings of this machine and this invocation (never part of a recipe)."""

    progress: bool = True  # progress bars on stderr (only drawn on a terminal)
    force: bool = False  # run every stage even when up to date
    rerun: tuple[str, ...] = ()  # stages to run again even when up to date (e.g. measure on a board)
    port: str | None = None  # serial port of a board (measure)
    emulator: bool = False  # measure on the emulated Pico
    extra: dict[str, Any] = field(default_factory=dict)  # anything else a stage needs (SDK paths, ...)


def _quiet(_: str) -> None:
    pass


@dataclass
class StageContext:
    """What a stage function gets besides its config: the run directory, the recipe, options, a log."""

    run: RunDir
    recipe: Recipe
    options: RunOptions
    stage: str
    manifest: dict[str, Any]
    log: Log = _quiet

    # ---- paths and earlier results
    def path(self, name: str) -> Path:
        """Path of an artifact of this run (``ctx.path("model.tflite")``)."""
        return self.run.path(name)

    @property
    def progress(self) -> bool:
        return self.options.progress

    def config(self, stage: str) -> Any:
        """The config of another stage of the recipe (read-only)."""
        return self.recipe.config(stage)

    def metrics_of(self, stage: str) -> dict[str, Any]:
        """Metrics an earlier stage recorded in this run ({} when it did not run)."""
        return dict(self.manifest.get("stages", {}).get(stage, {}).get("metrics") or {})

    def warn(self, message: str) -> None:
        self.log(f"warning: {message}")

    def input_model(self) -> str:
        """File name of the Keras model this stage should start from: the last ``.keras`` output
        of a stage before this one in the recipe."""
        return previous_output(self.recipe, self.stage, ".keras")

    # ---- reading and writing artifacts
    def load_dataset(self):
        from pipeline.stages.data import Dataset

        return Dataset.load(self.path("data.npz"))

    def load_keras(self, name: str):
        from pipeline.keras_setup import keras

        p = self.path(name)
        try:
            return keras().models.load_model(str(p), compile=False)
        except Exception as e:
            raise PipelineError(f"cannot load {p}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                                hint="run the stage that writes it again (e.g. with --force)") from None

    def save_keras(self, model: Any, name: str) -> Path:
        return save_keras_model(model, self.path(name))

    def write_bytes(self, name: str, data: bytes) -> Path:
        return atomic_write_bytes(self.path(name), data)

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write_text(self.path(name), text)

    def write_json(self, name: str, value: Any) -> Path:
        return atomic_write_json(self.path(name), value)


StageFn = Callable[[StageContext, Any], dict]


@dataclass(frozen=True)
class Stage:
    """One row of the pipeline table.

    ``fn``: the stage function, or ``"module:function"`` imported when the stage runs.
    ``inputs``: artifact names it reads, or ``f(recipe) -> names`` when that depends on the recipe
    (see :func:`previous_output`). ``outputs``: artifact names (files or folders) it writes.
    ``external``: ``f(cfg) -> paths`` outside the run directory whose contents count as inputs.
    ``headline``: ``f(metrics) -> str``, a short phrase for the log and the report.
    """

    name: str
    fn: StageFn | str
    inputs: tuple[str, ...] | Callable[[Recipe], Sequence[str]] = ()
    outputs: tuple[str, ...] = ()
    external: Callable[[Any], Sequence[Path]] | None = None
    headline: Callable[[dict], str] | None = None

    def input_names(self, recipe: Recipe) -> tuple[str, ...]:
        return tuple(self.inputs(recipe) if callable(self.inputs) else self.inputs)

    def function(self) -> StageFn:
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


# ------------------------------------------------------------------------ the stages so far
def _data_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.data import make_dataset

    t0 = time.perf_counter()
    ds = make_dataset(cfg, warn=ctx.warn, progress=ctx.progress)
    ds.save(ctx.path("data.npz"))
    return {**ds.summary(), "seconds": round(time.perf_counter() - t0, 2)}


def _data_external(cfg) -> list[Path]:
    return [] if cfg.source == "synthetic" else [Path(cfg.source).expanduser()]


def _data_headline(m: dict) -> str:
    n = m.get("images", {})
    return f"{sum(n.values())} images ({n.get('train')} train / {n.get('val')} val / {n.get('test')} test)"


def _model_stage(ctx: StageContext, cfg) -> dict:
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


def _model_external(cfg) -> list[Path]:
    from pipeline.stages.models import is_model_path

    return [Path(cfg.name)] if is_model_path(cfg.name) else []


def _model_headline(m: dict) -> str:
    return f"{m.get('model')}: {m.get('params'):,} parameters, {m.get('macs'):,} MACs"


def _train_stage(ctx: StageContext, cfg) -> dict:
    from pipeline.stages.train import train

    ds = ctx.load_dataset()
    model = ctx.load_keras("model_untrained.keras")
    model, result = train(model, ds, cfg, progress=ctx.progress)
    ctx.save_keras(model, "model.keras")
    ctx.write_json("train_history.json", {"history": result.history, "best_epoch": result.best_epoch})
    return result.metrics(ds.class_names)


def _train_headline(m: dict) -> str:
    return (f"test accuracy {m.get('test_accuracy', float('nan')):.3f} (Keras float), "
            f"{m.get('epochs_run')} epochs, best {m.get('best_epoch')}")


STAGES: list[Stage] = [
    Stage("data", _data_stage, outputs=("data.npz",), external=_data_external, headline=_data_headline),
    Stage("model", _model_stage, inputs=("data.npz",), outputs=("model_untrained.keras",),
          external=_model_external, headline=_model_headline),
    Stage("train", _train_stage, inputs=("data.npz", "model_untrained.keras"),
          outputs=("model.keras", "train_history.json"), headline=_train_headline),
    # Compression, conversion and the board: adapters in pipeline/flow/steps.py.
    Stage("prune", "pipeline.flow.steps:prune_stage", inputs=lambda r: ("data.npz", previous_output(r, "prune", ".keras")),
          outputs=("model_pruned.keras",),
          headline=lambda m: f"{m.get('method')}: {m.get('sparsity_pruned_layers', 0):.0%} zeros in pruned layers"),
    Stage("cluster", "pipeline.flow.steps:cluster_stage",
          inputs=lambda r: ("data.npz", previous_output(r, "cluster", ".keras")), outputs=("model_clustered.keras",),
          headline=lambda m: f"{m.get('clusters')} clusters per kernel"),
    Stage("quantize", "pipeline.flow.steps:quantize_stage",
          inputs=lambda r: ("data.npz", previous_output(r, "quantize", ".keras")), outputs=("model_quantized.tflite",),
          headline=lambda m: f"{m.get('method')}, {m.get('weight_bits')}-bit weights"
          + (f" (8-bit: {', '.join(n for n, b in m['layer_bits'].items() if b == 8) or 'none'}; "
             f"4-bit: {', '.join(n for n, b in m['layer_bits'].items() if b == 4) or 'none'})" if m.get("layer_bits") else "")),
    Stage("convert", "pipeline.flow.steps:convert_stage", inputs=lambda r: _stages()._convert_inputs(r),
          outputs=("model.tflite", "model_float.tflite"), external=lambda cfg: _convert_sources(),
          headline=lambda m: f"{m.get('tflite_bytes'):,} B .tflite ({m.get('weight_bytes'):,} B weights, "
                             f"{'/'.join(m.get('weight_dtypes') or [])})"),
    Stage("verify", "pipeline.flow.steps:verify_stage", inputs=("data.npz", "model.tflite"), outputs=("verify.json",),
          headline=lambda m: f"host TFLM test accuracy {m.get('tflm_test_accuracy', 0):.3f}, host arena "
                             f"{m.get('host_arena_min_bytes'):,} B"),
    Stage("render", "pipeline.flow.steps:render_stage", inputs=("data.npz", "model.tflite", "verify.json"),
          outputs=("firmware", "golden.json"), external=lambda cfg: _render_sources(),
          headline=lambda m: f"arena {m.get('arena_bytes'):,} B, {m.get('golden_count')} golden inputs"),
    Stage("build", "pipeline.flow.steps:build_stage", inputs=("firmware",),
          outputs=("firmware.elf", "firmware.bin", "firmware.uf2"), external=lambda cfg: _firmware_sources(),
          headline=lambda m: f"{m.get('image')} image: flash {m.get('flash_bytes'):,} B, static RAM "
                             f"{m.get('static_ram_bytes'):,} B"),
    Stage("measure", "pipeline.flow.steps:measure_stage",
          inputs=("firmware.elf", "model.tflite", "data.npz", "verify.json"), outputs=("measured.json",),
          headline=lambda m: _measure_headline(m)),
]
STAGE_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}


def _stages():
    import pipeline.flow.steps as stages

    return stages


def _convert_sources() -> list[Path]:
    """The converter and the slim step: a change to them converts again (the .tflite bytes change)."""
    return [Path(__file__).resolve().parent / "convert.py"]


def _render_sources() -> list[Path]:
    """The templates and the renderer: a change to them renders again."""
    root = Path(__file__).resolve().parent
    return [root / "templates", root / "render.py", root / "memplan.py"]


def _firmware_sources() -> list[Path]:
    """The firmware project's own sources: a change to them rebuilds the image."""
    root = Path(__file__).resolve().parent.parent
    return [p for p in (root / "CMakeLists.txt", root / "pico_sdk_import.cmake", root / "firmware")
            if p.exists() and p.name != "generated"]


def _measure_headline(m: dict) -> str:
    b = m.get("bench") or {}
    mem = m.get("mem") or {}
    g = m.get("golden") or {}
    return (f"{m.get('source', '?')}: median {b.get('median_us', '?')} us ({m.get('cycles_per_mac', 0):.1f} cycles/MAC), "
            f"arena used {mem.get('arena_used', '?')} B, RAM {m.get('ram_total_bytes', '?')} B, golden "
            f"{g.get('exact', '?')}/{g.get('count', '?')} exact")


def register(stage: Stage) -> None:
    """Add a stage to the table (kept in :data:`STAGE_ORDER`), replacing one of the same name."""
    if stage.name not in STAGE_ORDER:
        raise ValueError(f"{stage.name!r} is not in config.STAGE_ORDER")
    STAGES[:] = sorted([s for s in STAGES if s.name != stage.name] + [stage], key=lambda s: STAGE_ORDER.index(s.name))
    STAGE_BY_NAME.clear()
    STAGE_BY_NAME.update({s.name: s for s in STAGES})


def check_implemented(stages: Sequence[str]) -> None:
    for name in stages:
        if name not in STAGE_BY_NAME:
            raise PipelineError(
                f"stage {name!r} is not implemented yet",
                hint="stages available now: " + ", ".join(s.name for s in STAGES)
                + f"; remove {name!r} from the recipe's 'stages'",
            )


# ------------------------------------------------------------------------------ the loop
@dataclass
class StageOutcome:
    name: str
    status: str  # done | up to date | skipped | failed
    seconds: float = 0.0
    reason: str = ""
    headline: str = ""


@dataclass
class RunSummary:
    run: RunDir
    outcomes: list[StageOutcome]
    seconds: float
    report_md: Path | None = None
    report_json: Path | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def line(self) -> str:
        """The one summary line printed at the end."""
        parts = [f"{self.count('done')} ran", f"{self.count('up to date')} up to date"]
        if self.count("skipped"):
            parts.append(f"{self.count('skipped')} skipped")
        text = f"run {self.run.name}: {len(self.outcomes)} stages in {self.seconds:.1f} s ({', '.join(parts)})"
        train = self.manifest.get("stages", {}).get("train", {}).get("metrics") or {}
        if "test_accuracy" in train:
            text += f"; Keras test accuracy {train['test_accuracy']:.3f}"
        if self.report_md is not None:
            text += f"; report: {self.report_md}"
        return text


class FileHashes:
    """``sha256_path`` with each file hashed once: keyed by path, size, mtime and inode, so a file
    written again (artifacts are replaced by a rename: a new inode) is hashed again. One run of a
    recipe reads ``data.npz`` in most stages; this hashes it once."""

    def __init__(self) -> None:
        self._known: dict[tuple, str] = {}

    def __call__(self, path: str | Path) -> str:
        p = Path(path)
        if p.is_dir():
            return sha256_path(p)
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in self._known:
            self._known[key] = sha256_file(p)
        return self._known[key]


def stage_fingerprint(stage: Stage, cfg: Any, run: RunDir, recipe: Recipe,
                      hash_path: Callable[[Path], str] = sha256_path) -> dict[str, Any]:
    """What decides whether a stage must run again: its config and the hashes of what it reads."""
    inputs = {}
    for name in stage.input_names(recipe):
        p = run.path(name)
        inputs[name] = hash_path(p) if p.exists() else None
    external = {}
    for p in (stage.external(cfg) if stage.external else ()):
        external[str(p)] = hash_path(p) if Path(p).exists() else None
    return {"config_sha256": sha256_json(config_to_dict(cfg)), "inputs": inputs, "external": external}


def _outputs_unchanged(stage: Stage, run: RunDir, recorded: dict[str, Any],
                       hash_path: Callable[[Path], str] = sha256_path) -> bool:
    for name in stage.outputs:
        p = run.path(name)
        if not p.exists() or recorded.get(name) != hash_path(p):
            return False
    return True


def run_recipe(recipe: Recipe, run: RunDir, options: RunOptions | None = None, log: Log = _quiet,
               until: str | None = None, write_report: bool = True) -> RunSummary:
    """Take ``recipe`` through the stage table into ``run``; return what happened.

    ``until``: stop after this stage (``picotflm train`` runs data, model, train).
    """
    options = options or RunOptions()
    names = list(recipe.stages)
    if until is not None:
        if until not in names:
            raise PipelineError(f"recipe {recipe.name} has no {until!r} stage", hint="add it to the recipe's 'stages'")
        names = names[:names.index(until) + 1]
    check_implemented(names)
    run.create()

    t_start = time.perf_counter()
    manifest = run.load_manifest()
    manifest["run"] = run.name
    manifest["recipe"] = {**recipe.to_dict(), "source": recipe.source}
    manifest["versions"] = library_versions()
    manifest["determinism"] = determinism_record()
    manifest["inputs"] = {"recipe": {"path": recipe.source, "sha256": sha256_file(recipe.source)}
                          if recipe.source and Path(recipe.source).is_file() else None,
                          "files": {}}  # outside files the stages read (image folder, model file): sha256
    stages_doc: dict[str, Any] = manifest.setdefault("stages", {})
    for old in [s for s in stages_doc if s not in recipe.stages]:
        del stages_doc[old]
    manifest["stages"] = stages_doc = {s: stages_doc[s] for s in STAGE_ORDER if s in stages_doc}

    outcomes: list[StageOutcome] = []
    total = len(names)
    hashes = FileHashes()
    for i, name in enumerate(names, 1):
        stage = STAGE_BY_NAME[name]
        cfg = recipe.config(name)
        tag = f"[{i}/{total}] {name}"
        prev = stages_doc.get(name) or {}
        entry: dict[str, Any] = {"config": config_to_dict(cfg)}

        missing = [n for n in stage.input_names(recipe) if not run.path(n).exists()]
        if missing:
            reason = f"needs {', '.join(missing)}, which no earlier stage wrote in this run"
            stages_doc[name] = {**entry, "status": "skipped", "reason": reason, "finished": now_iso()}
            outcomes.append(StageOutcome(name, "skipped", reason=reason))
            log(f"{tag}: skipped: {reason}")
            run.write_manifest(manifest)
            continue

        fp = stage_fingerprint(stage, cfg, run, recipe, hashes)
        if fp["external"]:
            manifest["inputs"].setdefault("files", {}).update(fp["external"])
        if (not options.force and name not in options.rerun and prev.get("status") in ("done", "up to date") and prev.get("fingerprint") == fp
                and _outputs_unchanged(stage, run, prev.get("outputs") or {}, hashes)):
            prev["status"] = "up to date"
            stages_doc[name] = prev
            headline = _headline(stage, prev.get("metrics") or {})
            outcomes.append(StageOutcome(name, "up to date", headline=headline))
            log(f"{tag}: up to date, skipped" + (f" ({headline})" if headline else ""))
            continue

        reused = _from_cache(stage, fp, run, options) if name in CACHED_STAGES else None
        if reused is not None:
            stages_doc[name] = {**entry, **reused, "status": "done", "finished": now_iso(), "fingerprint": fp}
            run.write_manifest(manifest)
            headline = _headline(stage, reused.get("metrics") or {})
            outcomes.append(StageOutcome(name, "done", headline=headline))
            log(f"{tag}: reused the identical result of run {reused.get('reused_from')}" + (f" ({headline})" if headline else ""))
            continue

        log(f"{tag}: running")
        ctx = StageContext(run=run, recipe=recipe, options=options, stage=name, manifest=manifest, log=log)
        t0 = time.perf_counter()
        try:
            metrics = stage.function()(ctx, cfg) or {}
        except StageSkipped as e:
            stages_doc[name] = {**entry, "status": "skipped", "reason": e.reason, "finished": now_iso()}
            outcomes.append(StageOutcome(name, "skipped", reason=e.reason))
            log(f"{tag}: skipped: {e.reason}")
            run.write_manifest(manifest)
            continue
        except BaseException as e:
            seconds = time.perf_counter() - t0
            reason = e.message if isinstance(e, PipelineError) else f"{type(e).__name__}: {e}"
            stages_doc[name] = {**entry, "status": "failed", "reason": reason, "seconds": round(seconds, 2),
                                "finished": now_iso()}
            try:  # best effort: the manifest and report say which stage failed and why
                run.write_manifest(manifest)
                if write_report:
                    from pipeline.analysis.report import write_report as _write_report

                    _write_report(run.root)
            except Exception:
                pass
            raise
        seconds = time.perf_counter() - t0
        absent = [n for n in stage.outputs if not run.path(n).exists()]
        if absent:
            raise RuntimeError(f"stage {name} finished without writing {', '.join(absent)}")
        headline = _headline(stage, metrics)
        stages_doc[name] = {
            **entry,
            "status": "done",
            "seconds": round(seconds, 2),
            "finished": now_iso(),
            "fingerprint": fp,
            "outputs": {n: hashes(run.path(n)) for n in stage.outputs},
            "headline": headline,
            "metrics": metrics,
        }
        run.write_manifest(manifest)
        if name in CACHED_STAGES:
            _to_cache(stage, fp, run, stages_doc[name])
        outcomes.append(StageOutcome(name, "done", seconds=seconds, headline=headline))
        log(f"{tag}: done in {seconds:.1f} s" + (f": {headline}" if headline else ""))

    report_key = _report_key(run, manifest, hashes) if write_report else None
    unchanged = (report_key is not None and manifest.get("report_key") == report_key
                 and all(o.status == "up to date" for o in outcomes)
                 and all(run.path(n).is_file() for n in REPORT_FILES))
    if write_report and not unchanged:
        manifest.pop("report_key", None)
    run.write_manifest(manifest)
    summary = RunSummary(run=run, outcomes=outcomes, seconds=time.perf_counter() - t_start, manifest=manifest)
    if write_report and unchanged:
        # Nothing ran and the report was written from this same content: drawing it again (matplotlib,
        # seconds per run) would give the same report.
        summary.report_md, summary.report_json = run.path("report.md"), run.path("report.json")
    elif write_report:
        from pipeline.analysis.report import write_report

        summary.report_md, summary.report_json = write_report(run.root)
        manifest["report_key"] = report_key
        run.write_manifest(manifest)
    return summary


REPORT_FILES = ("report.md", "report.json")


def _report_key(run: RunDir, manifest: dict[str, Any], hash_path: Callable[[Path], str] = sha256_file) -> str:
    """Hash of what ``report.write_report`` reads: the manifest (without its timestamp, with "up to date"
    read as "done") and the run's ``model.tflite`` and ``arena.json``."""
    doc = {k: v for k, v in manifest.items() if k not in ("updated", "report_key")}
    doc["stages"] = {n: {**e, "status": "done" if e.get("status") == "up to date" else e.get("status")}
                     for n, e in (manifest.get("stages") or {}).items()}
    files = {n: hash_path(run.path(n)) for n in ("model.tflite", "arena.json") if run.path(n).is_file()}
    return sha256_json({"manifest": doc, "files": files})


# ---------------------------------------------------------------------- shared stage cache
# Runs of different recipes start from the same data, model and training: a stage whose config and
# input hashes equal those of a stage already run (in any run under the same runs directory) takes
# that stage's outputs instead of recomputing them. Keyed by the fingerprint, so nothing stale is reused.
CACHED_STAGES = ("data", "model", "train", "prune", "cluster")
CACHE_DIR = ".stage-cache"


def _cache_entry(stage: Stage, fp: dict[str, Any], run: RunDir) -> Path:
    return run.root.parent / CACHE_DIR / stage.name / sha256_json(fp)[:32]


def _from_cache(stage: Stage, fp: dict[str, Any], run: RunDir, options: RunOptions) -> dict[str, Any] | None:
    import json

    if options.force:
        return None
    entry = _cache_entry(stage, fp, run)
    meta = entry / "entry.json"
    if not meta.is_file():
        return None
    try:
        doc = json.loads(meta.read_text(encoding="utf-8"))
        for name, digest in doc["outputs"].items():
            src = entry / name
            if not src.is_file() or sha256_file(src) != digest:
                return None
        for name in doc["outputs"]:
            atomic_write_bytes(run.path(name), (entry / name).read_bytes())
    except (OSError, ValueError, KeyError):
        return None
    return {"outputs": doc["outputs"], "metrics": doc.get("metrics") or {}, "seconds": 0.0,
            "headline": doc.get("headline", ""), "reused_from": doc.get("run")}


def _to_cache(stage: Stage, fp: dict[str, Any], run: RunDir, done: dict[str, Any]) -> None:
    """Store a finished stage's file outputs (folders are not cached)."""
    if not all(run.path(n).is_file() for n in stage.outputs):
        return
    entry = _cache_entry(stage, fp, run)
    try:
        for name in stage.outputs:
            atomic_write_bytes(entry / name, run.path(name).read_bytes())
        atomic_write_json(entry / "entry.json", {"run": run.name, "outputs": done["outputs"],
                                                "metrics": done.get("metrics"), "headline": done.get("headline")})
    except (OSError, PipelineError):
        pass  # the cache is an optimisation: a failure to fill it changes nothing


def _headline(stage: Stage, metrics: dict) -> str:
    if stage.headline is None or not metrics:
        return ""
    try:
        return stage.headline(metrics)
    except (KeyError, TypeError, ValueError):
        return ""
