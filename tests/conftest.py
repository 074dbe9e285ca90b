"""Options and fixtures shared by the whole test suite.

``--port`` / ``--emulator`` select the board for ``hardware`` tests (skipped without one).
Small helpers keep the suite fast: tiny recipes (a few images per class, 1-3 epochs) and the CLI
run as a subprocess the way a user runs it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser):
    group = parser.getgroup("picotflm")
    group.addoption("--port", default=None, help="serial port of a Pico running picotflm firmware (hardware tests)")
    group.addoption("--emulator", action="store_true", default=False,
                    help="run hardware tests against the emulated Pico (rp2040js)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--port") or config.getoption("--emulator"):
        return
    skip = pytest.mark.skip(reason="needs a board: pass --port PORT or --emulator")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


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


def cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` as a user runs it (repository on PYTHONPATH)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def run_cli():
    return cli
