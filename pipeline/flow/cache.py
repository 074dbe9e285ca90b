"""The stage cache shared by the runs of one runs directory.

Runs of different recipes start from the same data, model and training: a stage whose config and
input hashes equal those of a stage already run (in any run under the same runs directory) takes
that stage's outputs instead of recomputing them. Keyed by the fingerprint, so nothing stale is reused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.flow.rundir import RunDir, atomic_write_bytes, atomic_write_json, sha256_file, sha256_json
from pipeline.flow.table import Stage

CACHED_STAGES = ("data", "model", "train", "prune", "cluster")
CACHE_DIR = ".stage-cache"


def _cache_entry(stage: Stage, fp: dict[str, Any], run: RunDir) -> Path:
    return run.root.parent / CACHE_DIR / stage.name / sha256_json(fp)[:32]


def from_cache(stage: Stage, fp: dict[str, Any], run: RunDir, *, force: bool = False) -> dict[str, Any] | None:
    """The outputs of an identical earlier stage (same fingerprint), copied into ``run``; None when there is none."""
    if force:
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


def to_cache(stage: Stage, fp: dict[str, Any], run: RunDir, done: dict[str, Any]) -> None:
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
