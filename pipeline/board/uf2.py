"""The UF2 format as the RP2040's bootloader takes it: writing a flash image as UF2 blocks, and
checking that a file is a UF2 image for the RP2040."""
from __future__ import annotations

import struct
from pathlib import Path

from pipeline.board.targets import RP2040
from pipeline.errors import PipelineError

MAGIC_START0 = 0x0A324655  # "UF2\n"
MAGIC_START1 = 0x9E5D5157
MAGIC_END = 0x0AB16F30
FLAG_FAMILY = 0x00002000
BLOCK_BYTES = 512
PAYLOAD_BYTES = 256


def uf2_blocks(data: bytes, base: int = RP2040.flash_base, family: int = RP2040.uf2_family) -> bytes:
    """A flash image as UF2 (256-byte payloads, family ID present), as the RP2040 bootrom takes it."""
    chunks = [data[i: i + PAYLOAD_BYTES] for i in range(0, len(data), PAYLOAD_BYTES)] or [b""]
    out = bytearray()
    for n, chunk in enumerate(chunks):
        payload = chunk.ljust(476, b"\x00")
        out += struct.pack("<IIIIIIII", MAGIC_START0, MAGIC_START1, FLAG_FAMILY, base + PAYLOAD_BYTES * n,
                           PAYLOAD_BYTES, n, len(chunks), family)
        out += payload
        out += struct.pack("<I", MAGIC_END)
    return bytes(out)


def write_uf2(bin_data: bytes, path: Path) -> Path:
    """Write ``bin_data`` (a flash image from the flash base) as a UF2 file, atomically."""
    from pipeline.flow.rundir import atomic_write_bytes

    atomic_write_bytes(path, uf2_blocks(bin_data))
    return path


def is_uf2(data: bytes) -> bool:
    """``data`` starts with a UF2 block."""
    return len(data) >= BLOCK_BYTES and struct.unpack_from("<II", data, 0) == (MAGIC_START0, MAGIC_START1)


def check_uf2(path: str | Path) -> bytes:
    """The bytes of a UF2 image for the RP2040; :class:`PipelineError` for a missing file or another format."""
    p = Path(path)
    if not p.is_file():
        raise PipelineError(f"no UF2 file at {p}",
                            hint="build the board image first: picotflm build RECIPE --set build.image=board (or make flash)")
    data = p.read_bytes()
    if len(data) < BLOCK_BYTES or len(data) % BLOCK_BYTES:
        raise PipelineError(f"{p} is not a UF2 image ({len(data)} bytes; UF2 is made of 512-byte blocks)",
                            hint="flash the .uf2 the build wrote, not the .elf or .bin")
    m0, m1, flags, _addr, _size, _blockno, _nblocks, family = struct.unpack_from("<8I", data, 0)
    (mend,) = struct.unpack_from("<I", data, BLOCK_BYTES - 4)
    if (m0, m1, mend) != (MAGIC_START0, MAGIC_START1, MAGIC_END):
        raise PipelineError(f"{p} is not a UF2 image (its first block lacks the UF2 magic numbers)",
                            hint="flash the .uf2 the build wrote, not the .elf or .bin")
    if flags & FLAG_FAMILY and family != RP2040.uf2_family:
        raise PipelineError(f"{p} is a UF2 image for chip family 0x{family:08x}, not the RP2040 (0x{RP2040.uf2_family:08x})",
                            hint="build for PICO_BOARD=pico")
    return data
