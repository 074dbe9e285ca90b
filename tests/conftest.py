"""Options and fixtures shared by the whole test suite.

``--port`` / ``--emulator`` (picotflm's pytest plugin, :mod:`pipeline.hil.plugin`) select the board for
``hardware`` tests (skipped without one).
Small helpers keep the suite fast: tiny recipes (a few images per class, 1-3 epochs) and the CLI
run as a subprocess the way a user runs it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The plugin loads by its entry point once picotflm is installed; from a source tree without it, from here.
if not any(ep.name == "picotflm" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["pipeline.hil.plugin"]


@pytest.fixture(scope="module")
def toolchain():
    """The ARM toolchain and Pico SDK a firmware build needs; the test is skipped without them
    (failed when PICOTFLM_REQUIRE_FIRMWARE=1)."""
    from pipeline.stages.build import ToolchainMissing, find_toolchain

    try:
        return find_toolchain()
    except ToolchainMissing as e:
        if os.environ.get("PICOTFLM_REQUIRE_FIRMWARE", "") not in ("", "0"):
            pytest.fail(f"PICOTFLM_REQUIRE_FIRMWARE=1 but: {e}")
        pytest.skip(f"firmware toolchain absent: {e}")


TINY_RECIPE = """
description = "tiny recipe for tests"
stages = ["data", "model", "train"]

[data]
samples_per_class = {samples}
seed = {seed}

[train]
epochs = {epochs}
batch_size = 16
patience = 2
"""


@pytest.fixture
def tiny_recipe_file(tmp_path):
    """Write a small recipe TOML and return its path: ``tiny_recipe_file(samples=10, epochs=1)``."""

    def make(samples: int = 10, epochs: int = 1, seed: int = 0, name: str = "tiny", extra: str = "") -> Path:
        p = tmp_path / f"{name}.toml"
        p.write_text(textwrap.dedent(TINY_RECIPE.format(samples=samples, epochs=epochs, seed=seed)) + extra)
        return p

    return make


SMALL_RUN_STAGES = ["data", "model", "train", "convert", "verify", "render", "build"]


def small_recipe(what: str, *, golden_count: int = 4, stages: list[str] | None = None, extra: str = "") -> str:
    """The default pipeline on a small, quickly trained model (a few images, two epochs): enough for
    the firmware tests, which check bit-exactness, not accuracy."""
    names = ", ".join(f'"{s}"' for s in (stages or SMALL_RUN_STAGES))
    return (f'description = "{what}: the default pipeline on a small, quickly trained model"\n'
            f"stages = [{names}]\n\n[data]\nsamples_per_class = 40\n\n[train]\nepochs = 2\npatience = 2\n\n"
            f"[render]\ngolden_count = {golden_count}\n{extra}")


def require_emulated_pico() -> None:
    """Skip (with the reason) unless the firmware toolchain, Node.js and rp2040js are here;
    PICOTFLM_REQUIRE_FIRMWARE=1 makes their absence a failure instead."""
    from pipeline.stages.build import ToolchainMissing, find_toolchain
    from pipeline.board.emulator import check_emulator_dir, emulator_dir, find_node
    from pipeline.errors import PipelineError

    try:
        find_toolchain()
        find_node()
        check_emulator_dir(emulator_dir())
    except (ToolchainMissing, PipelineError) as e:
        if os.environ.get("PICOTFLM_REQUIRE_FIRMWARE", "") not in ("", "0"):
            pytest.fail(f"PICOTFLM_REQUIRE_FIRMWARE=1 but: {e}")
        pytest.skip(f"no emulated Pico here: {e}")


def run_small_recipe(runs: Path, recipe_text: str, name: str = "small") -> Path:
    """`picotflm run` of a small recipe into runs/<name>; fails the test if the run fails."""
    (runs / f"{name}.toml").write_text(recipe_text)
    r = cli("run", str(runs / f"{name}.toml"), "--name", name, "--runs-dir", str(runs), "--no-progress",
            timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    return runs / name


def assert_cli_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    """A handled error: exit 2, no traceback, the last stderr line `picotflm: error: ...` naming needles."""
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("picotflm: error: ")
    for n in needles:
        assert n in last, last


def cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` as a user runs it (repository on PYTHONPATH)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def run_cli():
    return cli
