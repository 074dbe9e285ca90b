"""Helpers for the emulator tests: tiny hand-assembled RP2040 images (no SDK needed) as .bin, ELF
and UF2, and a check that a process has gone."""
from __future__ import annotations

import os
import struct
import time

import pytest

# ------------------------------------------------------------------ images without the SDK
FLASH = 0x10000000


def uf2_image(data: bytes, base: int = FLASH, family: int = 0xE48BFF56) -> bytes:
    """UF2 of ``data`` at ``base`` in 256-byte payloads, as picotool writes them."""
    chunks = [data[i:i + 256] for i in range(0, len(data), 256)]
    out = bytearray()
    for n, chunk in enumerate(chunks):
        out += struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, base + 256 * n, 256, n,
                           len(chunks), family)
        out += chunk.ljust(476, b"\0")
        out += struct.pack("<I", 0x0AB16F30)
    return bytes(out)


def tiny_flash(code: bytes, data_at_0x200: bytes = b"") -> bytes:
    """A flash image: 256 bytes where boot2 goes (unused: the emulator skips boot2), the vector table
    at 0x100 (SP at the top of SRAM, reset at 0x108), ``code`` at 0x108, ``data_at_0x200`` at 0x200."""
    img = bytearray(b"\0" * 0x100)
    img += struct.pack("<II", 0x20042000, FLASH + 0x108 + 1)
    img += code
    if data_at_0x200:
        img = img.ljust(0x200, b"\0") + data_at_0x200
    return bytes(img)


# ldr r0,=UART0_DR; ldr r1,=0x10000200; ldrb r1,[r1]; str r1,[r0]; 1: wfi; b 1b; literals
UART_BYTE_FROM_0x200 = struct.pack("<6H", 0x4802, 0x4903, 0x7809, 0x6001, 0xBF30, 0xE7FD) + struct.pack(
    "<II", 0x40034000, 0x10000200)
BKPT = struct.pack("<2H", 0xBE00, 0xE7FE)  # bkpt #0; b .
# ldr r0,=SIO_FIFO_RD; ldr r1,[r0]; ldr r1,[r0]; 1: wfi; b 1b  (core 1 does not exist here)
SIO_FIFO_READS = struct.pack("<6H", 0x4802, 0x6801, 0x6801, 0xBF30, 0xE7FD, 0) + struct.pack("<I", 0xD0000058)
# movs r0,#1; ldr r1,[r0]  (an unaligned word load: a hard fault on the chip)
UNALIGNED_LOAD = struct.pack("<3H", 0x2001, 0x6801, 0xE7FE)


def tiny_elf(code: bytes, byte: bytes) -> bytes:
    """An Arm ELF whose second PT_LOAD runs at 0x20000000 but is loaded at 0x10000200 (like .data):
    the code prints the byte at 0x10000200, so it only comes out if the loader uses physical addresses."""
    text = tiny_flash(code)
    segs = [(FLASH, FLASH, text), (0x20000000, FLASH + 0x200, byte)]
    ehsize, phsize = 52, 32
    offset = ehsize + phsize * len(segs)
    phdrs, blobs = b"", b""
    for vaddr, paddr, blob in segs:
        phdrs += struct.pack("<8I", 1, offset + len(blobs), vaddr, paddr, len(blob), len(blob), 5, 4)
        blobs += blob
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + b"\0" * 8
    header = ident + struct.pack("<HHIIIIIHHHHHH", 2, 40, 1, FLASH + 0x109, ehsize, 0, 0x05000200,
                                 ehsize, phsize, len(segs), 40, 0, 0)
    return header + phdrs + blobs


def assert_process_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _is_zombie_or_gone(pid):
            return
        time.sleep(0.05)
    pytest.fail(f"emulator process {pid} still running")


def _is_zombie_or_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
