"""The board for the hardware-in-the-loop suite.

``--port PORT``: a real Pico already flashed with a run's firmware (``--hil-run``, default
``runs/int8``, what ``make flash`` flashes: its model.tflite and data.npz are the host reference).
``--emulator``: the suite builds a small run of the default recipe itself (a few images, two epochs:
bit-exactness does not need accuracy) and runs its board image on the emulated Pico (both cores, USB CDC).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_emulated_pico, run_small_recipe, small_recipe

HIL_RECIPE = small_recipe("HIL suite", golden_count=6)


def pytest_addoption(parser):
    parser.getgroup("picotflm").addoption("--hil-run", default="runs/int8",
                                          help="with --port: the run whose firmware the board runs")


@pytest.fixture(scope="session")
def hil_run(request, tmp_path_factory) -> Path:
    """A run directory with model.tflite, data.npz and (for the emulator) firmware.elf."""
    if request.config.getoption("--port"):
        run = Path(request.config.getoption("--hil-run"))
        if not (run / "model.tflite").is_file():
            pytest.fail(f"--hil-run {run} has no model.tflite: flash a run first (make flash)")
        return run
    require_emulated_pico()
    run = run_small_recipe(tmp_path_factory.mktemp("hil"), HIL_RECIPE, name="hil")
    assert (run / "firmware.elf").is_file()
    return run


@pytest.fixture(scope="session")
def emulated_pico(request, hil_run):
    """The emulated Pico running the run's firmware (the board image: its binary info says so)."""
    if request.config.getoption("--port"):
        pytest.skip("a real board is on --port")
    from pipeline.board.emulator import EmulatedPico

    with EmulatedPico(hil_run / "firmware.elf") as pico:
        assert pico.kind == "board"
        yield pico


@pytest.fixture(scope="session")
def board_port(request, hil_run):
    port = request.config.getoption("--port")
    if port:
        yield port
        return
    yield request.getfixturevalue("emulated_pico").port


@pytest.fixture
def board(board_port):
    from pipeline.board.client import BoardClient

    with BoardClient(board_port, timeout=10.0) as b:
        yield b


@pytest.fixture(scope="session")
def host_model(hil_run):
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.data import Dataset

    data = (hil_run / "model.tflite").read_bytes()
    return data, inspect_tflite(data), Dataset.load(hil_run / "data.npz")
