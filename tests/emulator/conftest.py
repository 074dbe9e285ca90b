"""Fixtures for the emulated Pico: gates for Node/rp2040js and the Pico SDK, and the echo firmware
built once per session."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.board.emulator import RP2040JS_VERSION, emulator_dir
from tests.emulator._images import uf2_image

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
