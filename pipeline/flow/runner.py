"""The loop that takes a recipe through the stage table (:mod:`pipeline.flow.table`).

A stage function has the signature ``fn(ctx: StageContext, cfg) -> dict`` (its metrics for the
manifest); it reads and writes artifacts through ``ctx``.

A stage is not run again ("up to date") when its config hash, the sha256 of its input artifacts
(and of outside files it reads, such as a user's image folder) match what the manifest recorded
and its outputs are still there, unchanged. A stage that cannot run on this machine raises
:class:`StageSkipped` with the reason; the manifest and the report say so, and later stages that
need its outputs are skipped too.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.flow.rundir import (RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text, determinism_record,
                                library_versions, now_iso, save_keras_model, sha256_file, sha256_json, sha256_path)
from pipeline.config import config_to_dict
from pipeline.flow.cache import CACHED_STAGES, from_cache, to_cache
from pipeline.flow.recipe import Recipe
from pipeline.flow.table import STAGE_BY_NAME, STAGE_ORDER, Stage, previous_output
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
    port_label: str | None = None  # what the board on `port` is, for reports (default: a real board)
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

        reused = from_cache(stage, fp, run, force=options.force) if name in CACHED_STAGES else None
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
            to_cache(stage, fp, run, stages_doc[name])
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



def measure_run(run: RunDir, port: str | None, options: RunOptions | None = None, log: Log = _quiet,
                port_label: str | None = None, until: str = "measure") -> RunSummary:
    """Bring ``run`` up to date with its recorded recipe, up to ``until``: ``build`` before flashing
    (so that the image flashed is the current one), ``measure`` to measure it again (the board on
    ``port``, or the emulated Pico). Stages that are up to date are not run again."""
    import dataclasses

    from pipeline.flow.recipe import recipe_of_run

    recipe = recipe_of_run(run.read_manifest())
    if until not in recipe.stages:
        raise PipelineError(f"run {run.name}'s recipe has no {until!r} stage", hint=f"add {until!r} to the recipe's 'stages'")
    rerun = ("measure",) if until == "measure" else ()
    options = dataclasses.replace(options or RunOptions(), port=port, port_label=port_label, rerun=rerun)
    return run_recipe(recipe, run, options, log=log, until=until)


REPORT_FILES = ("report.md", "report.json")


def _report_key(run: RunDir, manifest: dict[str, Any], hash_path: Callable[[Path], str] = sha256_file) -> str:
    """Hash of what ``report.write_report`` reads: the manifest (without its timestamp, with "up to date"
    read as "done") and the run's ``model.tflite`` and ``arena.json``."""
    doc = {k: v for k, v in manifest.items() if k not in ("updated", "report_key")}
    doc["stages"] = {n: {**e, "status": "done" if e.get("status") == "up to date" else e.get("status")}
                     for n, e in (manifest.get("stages") or {}).items()}
    files = {n: hash_path(run.path(n)) for n in ("model.tflite", "arena.json") if run.path(n).is_file()}
    return sha256_json({"manifest": doc, "files": files})


def _headline(stage: Stage, metrics: dict) -> str:
    if stage.headline is None or not metrics:
        return ""
    try:
        return stage.headline(metrics)
    except (KeyError, TypeError, ValueError):
        return ""
