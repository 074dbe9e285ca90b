"""The one way to a board: a serial port of a real Pico, or the emulated Pico running a firmware image.

Only this package opens a port or starts the emulator; the stages, the analysis and the benchmarks
ask for a board here and get a port name back (and a label saying where figures were measured).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from pipeline.errors import PipelineError

# Where a figure was measured, as reports print it: each says what the emulation leaves out.
EMULATED_LABELS = {
    "board": "emulated Pico, board image (rp2040js: two cores in lockstep, no bus contention, 125 MHz, "
             "no flash wait states or XIP cache misses, USB CDC)",
    "emulator": "emulated Pico, emulator image (rp2040js: core 0 only, 125 MHz, no flash wait states or XIP "
                "cache misses, UART)",
}


class BoardUnavailable(PipelineError):
    """No board to measure on here (the board image without --port, no Node.js or emulator)."""


def firmware_required() -> bool:
    """PICOTFLM_REQUIRE_FIRMWARE=1: a missing toolchain or emulator is an error, never a skip."""
    return os.environ.get("PICOTFLM_REQUIRE_FIRMWARE", "") not in ("", "0")


@contextlib.contextmanager
def board_port(elf: Path, port: str | None, image: str, label: str | None = None):
    """``(port, where)``: the real board on ``port``, else the emulated Pico running ``elf`` (an image of
    kind ``image``: ``board``, the image a user flashes, or ``emulator``).
    ``label`` says what the board on ``port`` is (default: a real board).
    :class:`BoardUnavailable` when there is neither (the caller may skip, or report it)."""
    if port:
        yield port, label or "real board on " + port
        return
    with emulated_board(elf, image, why="not measured: ") as pico:
        yield pico.port, EMULATED_LABELS[image]


@contextlib.contextmanager
def flashed_board(uf2: Path, *, emulated: bool = False, drive: Path | None = None, log=None,
                  port_wait_timeout: float = 10.0):
    """Flash ``uf2`` the way a desk does and yield ``(port, where)`` of the board that comes back.

    A real Pico: picotool, or a copy onto its RPI-RP2 drive (``drive``), then its USB serial port.
    ``emulated``: the same path to an emulated Pico held in BOOTSEL: the UF2 copied onto its drive
    folder, the board image booting from it, its port found by the Pico's USB VID:PID."""
    from pipeline.board.flash import flash

    if not emulated:
        port = flash(uf2, drive=drive, log=log, port_wait_timeout=port_wait_timeout)
        yield port, "real board on " + port
        return
    from pipeline.board.emulator import check_emulator_dir, emulator_dir, find_node
    from pipeline.board.emulator.bootsel import EmulatedBootsel

    find_node()
    check_emulator_dir(emulator_dir(), "board")
    with EmulatedBootsel() as bootsel:
        port = flash(uf2, drive=bootsel.drive, picotool=None, list_ports=bootsel.list_ports, log=log,
                     port_wait_timeout=max(port_wait_timeout, 60.0))
        yield port, EMULATED_LABELS["board"]


# ------------------------------------------------------------------ boards for a test session
def find_picos(list_ports=None) -> list[str]:
    """Every Pico on this machine's USB serial ports (by the Pico SDK's USB stdio VID:PID), sorted."""
    from pipeline.board.flash import pico_ports

    return pico_ports(list_ports)


def check_board(port: str, expect_hash: str | None = None, *, attempts: int = 10, interval: float = 0.3) -> dict:
    """The ``info`` of the picotflm board on ``port`` (its model hash checked against ``expect_hash``).
    A port that is missing, busy, not ours or runs another model: :class:`BoardUnavailable`, one line."""
    from pipeline.board.client import BoardClient

    try:
        with BoardClient(port, timeout=2.0) as b:
            return b.handshake(expect_hash, attempts=attempts, interval=interval).figures()
    except PipelineError as e:
        raise BoardUnavailable(f"{port}: {e.message}", hint=e.hint) from None


@contextlib.contextmanager
def emulated_board(elf: Path, image: str = "board", *, why: str = "no emulated Pico here: ",
                   profile: Path | None = None):
    """The emulated Pico running ``elf`` (an image of kind ``image``), its process alive while the block
    runs: yields the :class:`~pipeline.board.emulator.EmulatedPico` (``.port``, ``.pid``, ``.check()``;
    with ``profile``, a file for its cycle profile: ``.profile_snapshot()``).
    No Node.js or emulator here: :class:`BoardUnavailable`, its message after ``why`` (the error itself
    with PICOTFLM_REQUIRE_FIRMWARE=1)."""
    if image not in EMULATED_LABELS:
        raise BoardUnavailable(f"{why}unknown image kind {image!r}", hint="rebuild the run's firmware")
    from pipeline.board.emulator import EmulatedPico, check_emulator_dir, emulator_dir, find_node

    try:
        find_node()
        check_emulator_dir(emulator_dir(), image)
    except PipelineError as e:
        if firmware_required():
            raise
        raise BoardUnavailable(f"{why}{e.message}", hint=e.hint) from None
    with EmulatedPico(elf, kind=image, profile=profile) as pico:
        yield pico
