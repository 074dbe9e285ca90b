"""The board for the hardware-in-the-loop suite, through picotflm's pytest plugin as a user has it.

``--port PORT``: a real Pico; the plugin flashes the run (``--run``, default ``runs/int8``: what
``make flash`` builds; its model.tflite and data.npz are the host reference) unless ``--no-flash``.
``--emulator``: the suite builds a small run of the default recipe itself (a few images, two epochs:
bit-exactness does not need accuracy) and runs its board image on the emulated Pico (both cores, USB CDC).
The fixtures below name the plugin's for the suite's tests: ``board`` is ``pico.client``.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.hil.plugin import session_run
from tests.conftest import require_emulated_pico, run_small_recipe, small_recipe

HIL_RECIPE = small_recipe("HIL suite", golden_count=6)


@pytest.fixture(scope="session")
def picotflm_run_dir(pytestconfig, tmp_path_factory) -> Path:
    """The plugin's run: with --port the session's (--run); with --emulator a small run built here."""
    if pytestconfig.getoption("--port") or pytestconfig.getoption("--run"):
        run = session_run(pytestconfig)
        if run is None or not (run / "model.tflite").is_file():
            pytest.fail(f"--run {run} has no model.tflite: flash a run first (make flash)")
        return run
    require_emulated_pico()
    run = run_small_recipe(tmp_path_factory.mktemp("hil"), HIL_RECIPE, name="hil")
    assert (run / "firmware.elf").is_file()
    return run


@pytest.fixture(scope="session")
def hil_run(picotflm_run_dir) -> Path:
    """A run directory with model.tflite, data.npz and (for the emulator) firmware.elf."""
    return picotflm_run_dir


@pytest.fixture(scope="session")
def emulated_pico(pico_board):
    """The emulated Pico running the run's firmware (the board image: its binary info says so)."""
    if pico_board.process is None:
        pytest.skip("a real board is on --port")
    assert pico_board.process.kind == "board"
    return pico_board.process


@pytest.fixture(scope="session")
def board_port(pico_board) -> str:
    return pico_board.port


@pytest.fixture
def board(pico):
    return pico.client


@pytest.fixture(scope="session")
def host_model(pico_run):
    from pipeline.stages.data import Dataset

    return pico_run.model, pico_run.model_info, Dataset.load(pico_run.path / "data.npz")
