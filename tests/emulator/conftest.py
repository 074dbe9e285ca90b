"""Fixtures for the emulated Pico: gates for Node/rp2040js and the Pico SDK, the echo firmware built
once per session, and tiny hand-assembled images that need no SDK."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from pipeline.emulator import RP2040JS_VERSION, emulator_dir

REQUIRE_ENV = "PICOTFLM_REQUIRE_FIRMWARE"
ECHO_FW_SRC = Path(__file__).parent / "echo_fw"
DEFAULT_SDK = Path.home() / ".pico-sdk" / "sdk" / "2.2.0"


def pytest_configure(config):
    config.addinivalue_line("markers", "firmware: needs the Pico SDK, arm-none-eabi-gcc and/or Node.js "
                                       f"with rp2040js (skipped when absent; {REQUIRE_ENV}=1 fails instead)")


def missing(reason: str):
    """Skip, or fail when the environment says the firmware tools must be there."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def _node_ready() -> str | None:
    """Why the emulator cannot run here, or None."""
    if shutil.which("node") is None:
        return "Node.js not installed"
    pkg = emulator_dir() / "node_modules" / "rp2040js" / "package.json"
    if not pkg.is_file():
        return "rp2040js not installed: run `npm ci` in tools/emulator"
    if f'"version": "{RP2040JS_VERSION}"' not in pkg.read_text():
        return f"rp2040js in tools/emulator is not {RP2040JS_VERSION}: run `npm ci` there"
    return None


@pytest.fixture(scope="session")
def node_emulator() -> Path:
    """``tools/emulator`` with its rp2040js installed (else skip)."""
    why = _node_ready()
    if why:
        missing(why)
    return emulator_dir()


def find_sdk() -> Path | None:
    sdk = Path(os.environ.get("PICO_SDK_PATH") or DEFAULT_SDK)
    return sdk if (sdk / "pico_sdk_init.cmake").is_file() else None


@pytest.fixture(scope="session")
def echo_fw(tmp_path_factory, node_emulator) -> dict[str, Path]:
    """The echo firmware (tests/emulator/echo_fw) built with the no-ROM settings:
    ``{"elf": ..., "bin": ..., "uf2": ...}``."""
    sdk = find_sdk()
    if sdk is None:
        missing("Pico SDK not found (set PICO_SDK_PATH or install it at ~/.pico-sdk/sdk/2.2.0)")
    for tool in ("cmake", "ninja", "arm-none-eabi-gcc"):
        if shutil.which(tool) is None:
            missing(f"{tool} not installed")
    build = tmp_path_factory.mktemp("echo_fw_build")
    env = dict(os.environ, PICO_SDK_PATH=str(sdk), CCACHE_NOHASHDIR="1")
    configure = ["cmake", "-G", "Ninja", "-S", str(ECHO_FW_SRC), "-B", str(build),
                 "-DCMAKE_BUILD_TYPE=Release", "-Dpicotool_FOUND=0", f"-DPICO_SDK_PATH={sdk}"]
    if shutil.which("ccache"):
        configure += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    for cmd in (configure, ["cmake", "--build", str(build)]):
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"echo_fw build failed: {' '.join(cmd)}\n{(r.stdout + r.stderr)[-4000:]}")
    elf, binf = build / "echo_fw.elf", build / "echo_fw.bin"
    uf2 = build / "echo_fw.uf2"
    uf2.write_bytes(uf2_image(binf.read_bytes()))
    return {"elf": elf, "bin": binf, "uf2": uf2}


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
