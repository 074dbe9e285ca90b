"""Which kind of firmware image a file is, by its content (the same rules as tools/emulator/image.mjs)."""
from __future__ import annotations

import struct
from pathlib import Path

from pipeline.board.targets import RP2040
from pipeline.board.uf2 import is_uf2
from pipeline.errors import PipelineError

EM_ARM = 40

FORMATS = ("elf", "uf2", "bin")


def looks_like_flash_bin(data: bytes, size: int | None = None) -> bool:
    """A raw RP2040 flash image: 256 bytes of boot2, then a vector table whose stack pointer is in
    SRAM and whose reset handler is a Thumb address inside the image (of ``size`` bytes, when
    ``data`` is only its beginning)."""
    if len(data) < 0x108:
        return False
    sp, pc = struct.unpack_from("<II", data, 0x100)
    return (RP2040.sram_base < sp <= RP2040.sram_base + RP2040.ram_bytes and pc & 1 == 1
            and RP2040.flash_base < pc < RP2040.flash_base + (size or len(data)))


def detect_format(data: bytes, name: str = "", size: int | None = None) -> str:
    """``"elf"`` (32-bit little-endian Arm), ``"uf2"`` or ``"bin"``; raises :class:`PipelineError`
    for anything else. A ``.bin`` has no magic: the name's suffix or a plausible vector table decide."""
    if data[:4] == b"\x7fELF":
        if len(data) < 52:
            raise PipelineError(f"{name or 'image'} is a truncated ELF file")
        if data[4] != 1 or data[5] != 1:
            raise PipelineError(f"{name or 'image'} is not a 32-bit little-endian ELF",
                                hint="build the firmware for the RP2040 (PICO_BOARD=pico)")
        machine = struct.unpack_from("<H", data, 18)[0]
        if machine != EM_ARM:
            raise PipelineError(f"{name or 'image'} is an ELF for machine {machine}, not Arm",
                                hint="build the firmware for the RP2040 (PICO_BOARD=pico)")
        return "elf"
    if is_uf2(data):
        return "uf2"
    if name.lower().endswith(".bin") or looks_like_flash_bin(data, size):
        return "bin"
    raise PipelineError(f"{name or 'image'} is not an ELF, UF2 or .bin firmware image",
                        hint="pass the firmware.elf (or .uf2/.bin) that `picotflm build` wrote")


def check_image(path: str | Path) -> str:
    """The format of the image at ``path``, or :class:`PipelineError` when it is missing or unknown."""
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"firmware image not found: {p}",
                            hint="build it first (`picotflm build`) or check the path")
    with p.open("rb") as f:
        head = f.read(4096)
    return detect_format(head, p.name, p.stat().st_size)
