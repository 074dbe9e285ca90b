"""A run's artifacts as a HIL session uses them: the model (its hash is what the board must run), the
firmware images, the input frames and host TFLM's answers to them; and the one step that brings a
user's ``.tflite`` or recipe up to a built firmware before the session (the stage runner, which
skips what is up to date).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.errors import PipelineError

HOST_ARENA_BYTES = 1024 * 1024  # host TFLM's arena for the reference outputs: ample for anything that fits a Pico


@dataclass(frozen=True)
class RunArtifacts:
    """``runs/<run>/`` of a run whose firmware the board runs."""

    path: Path

    @classmethod
    def of(cls, path: str | Path) -> "RunArtifacts":
        p = Path(path)
        if not (p / "model.tflite").is_file():
            raise PipelineError(f"the run {p} has no model.tflite",
                                hint="build it first (`picotflm deploy MODEL.tflite` or `picotflm build RECIPE`), "
                                     "or give the run directory with --run")
        return cls(p)

    @functools.cached_property
    def model(self) -> bytes:
        return (self.path / "model.tflite").read_bytes()

    @functools.cached_property
    def model_info(self):
        from pipeline.tflite.reader import inspect_tflite

        return inspect_tflite(self.model)

    @property
    def model_hash(self) -> str:
        """What the board's ``info`` says as ``hash``: the model's sha256, first 16 hex digits."""
        return self.model_info.sha256[:16]

    @property
    def elf(self) -> Path:
        return self.path / "firmware.elf"

    @property
    def uf2(self) -> Path:
        return self.path / "firmware.uf2"

    @functools.cached_property
    def frames(self) -> np.ndarray:
        """Input frames in the model's input type: the run's inputs (``inputs.npz`` of a deployed
        ``.tflite``), else its dataset's test images quantized the way the board is sent them."""
        if (self.path / "inputs.npz").is_file():
            with np.load(self.path / "inputs.npz") as z:
                return np.asarray(z["x"])
        if (self.path / "data.npz").is_file():
            from pipeline.stages.data import Dataset
            from pipeline.stages.verify import images_to_input

            return images_to_input(Dataset.load(self.path / "data.npz").x_test, self.model_info)
        raise PipelineError(f"the run {self.path} has no inputs.npz or data.npz", hint="run its stages again")

    def host_outputs(self, frames: np.ndarray) -> np.ndarray:
        """Host TFLM's output for each frame: what the board must answer bit for bit."""
        from pipeline.stages.verify import run_tflm

        outs, _ = run_tflm(self.model, np.asarray(frames), HOST_ARENA_BYTES)
        return np.asarray(outs)


def bring_up_to_date(source: Path, run_dir: Path, log: Callable[[str], None]) -> str:
    """Run ``source`` (a ``.tflite``, a TFLM C array or a recipe ``.toml``) into ``run_dir`` up to its build
    (stages already up to date are skipped); a summary line. Its firmware is measured by the tests."""
    from pipeline.flow.recipe import deploy_recipe, load_recipe
    from pipeline.flow.rundir import RunDir
    from pipeline.flow.runner import RunOptions, run_recipe

    if not source.is_file():
        raise PipelineError(f"picotflm_model {source} does not exist", hint="set picotflm_model to your .tflite or recipe")
    name = run_dir.name
    if source.suffix == ".toml":
        recipe = load_recipe(str(source))
    else:
        recipe = deploy_recipe(str(source), name=name)
    until = "build" if "build" in recipe.stages else None
    summary = run_recipe(recipe, RunDir.of(name, run_dir.parent), RunOptions(progress=False), log=log, until=until)
    for o in summary.outcomes:
        if o.status == "skipped":
            log(f"{o.name}: not run: {o.reason}")
    return summary.line()
