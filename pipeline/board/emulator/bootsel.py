"""An emulated Pico held in BOOTSEL: the desk's flashing path without a board.

A folder stands for the RPI-RP2 drive (it has the bootloader's ``INFO_UF2.TXT``). Once a complete UF2
image has been written there, the "board reboots": the image leaves the drive (a real drive vanishes
too), the emulated Pico boots it in board mode, and its pty is listed as a serial port with the Pico
SDK's USB VID:PID, so that :func:`pipeline.board.flash.flash` finds it exactly as it finds a Pico.
"""
from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

from pipeline.board.flash import PICO_STDIO_USB_PID, PICO_VID
from pipeline.board.uf2 import BLOCK_BYTES, MAGIC_END, MAGIC_START0, MAGIC_START1

INFO_UF2 = "UF2 Bootloader v3.0 (emulated by picotflm)\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n"


def uf2_complete(data: bytes) -> bool:
    """Every block of the image is there (the bootloader reboots only then)."""
    if not data or len(data) % BLOCK_BYTES:
        return False
    seen, total = set(), None
    for off in range(0, len(data), BLOCK_BYTES):
        m0, m1, _flags, _addr, _size, blockno, nblocks = struct.unpack_from("<7I", data, off)
        if (m0, m1) != (MAGIC_START0, MAGIC_START1) or struct.unpack_from("<I", data, off + BLOCK_BYTES - 4)[0] != MAGIC_END:
            return False
        total = nblocks if total is None else total
        seen.add(blockno)
    return total is not None and seen == set(range(total))


class EmulatedBootsel:
    """``with EmulatedBootsel() as b: flash(uf2, drive=b.drive, list_ports=b.list_ports)``.

    ``.pico`` is the emulated Pico once it has booted the flashed image (``None`` before)."""

    def __init__(self, *, on_stderr: Callable[[str], None] | None = None, start_timeout: float = 60.0):
        self._root = Path(tempfile.mkdtemp(prefix="picotflm-bootsel-"))
        self.drive = self._root / "RPI-RP2"
        self.drive.mkdir()
        (self.drive / "INFO_UF2.TXT").write_text(INFO_UF2, encoding="ascii")
        self._on_stderr = on_stderr
        self._start_timeout = start_timeout
        self.pico = None
        self.flashed: Path | None = None

    def __enter__(self) -> "EmulatedBootsel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.pico is not None:
            self.pico.close()
            self.pico = None
        shutil.rmtree(self._root, ignore_errors=True)

    def list_ports(self) -> list[SimpleNamespace]:
        """The serial ports this board shows, as pyserial lists them (boots a completely written image first)."""
        if self.pico is None:
            self._boot_if_flashed()
        if self.pico is None:
            return []
        return [SimpleNamespace(device=self.pico.port, vid=PICO_VID, pid=PICO_STDIO_USB_PID,
                                description="Pico (emulated)")]

    def _boot_if_flashed(self) -> None:
        from pipeline.board.emulator.pico import EmulatedPico

        for f in sorted(self.drive.glob("*.uf2"), key=lambda p: p.name.lower()):
            try:
                data = f.read_bytes()
            except OSError:
                continue
            if not uf2_complete(data):
                continue
            self.flashed = self._root / "flash.uf2"
            f.replace(self.flashed)
            self.pico = EmulatedPico(self.flashed, kind="board", on_stderr=self._on_stderr,
                                     start_timeout=self._start_timeout)
            return
