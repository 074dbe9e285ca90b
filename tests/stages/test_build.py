import struct
import sys
import textwrap

import pytest

from pipeline.stages import build
from pipeline.board.targets import RP2040
from pipeline.board.uf2 import uf2_blocks
from pipeline.stages.build import Toolchain, ToolchainMissing, build_firmware, find_sdk, find_tflm
from pipeline.config import BuildConfig

# Stand-ins for cmake and ninja: cmake records its -D settings and writes them to CMakeCache.txt as
# CMake does for untyped -D values; ninja writes the image files a build leaves.
FAKE_CMAKE = """
    import pathlib, sys
    args = sys.argv[1:]
    build = pathlib.Path(args[args.index("-B") + 1])
    defs = [a[2:].partition("=") for a in args if a.startswith("-D")]
    with open(build / "configures.txt", "a") as f:
        f.write(" ".join(k + "=" + v for k, _, v in defs) + "\\n")
    (build / "CMakeCache.txt").write_text("".join(k + ":UNINITIALIZED=" + v + "\\n" for k, _, v in defs))
    (build / "build.ninja").write_text("")
"""
FAKE_NINJA = """
    import pathlib, sys
    out = pathlib.Path(sys.argv[sys.argv.index("-C") + 1]) / "firmware"
    out.mkdir(exist_ok=True)
    (out / "picotflm.elf").write_bytes(b"elf")
    (out / "picotflm.bin").write_bytes(bytes(300))
"""


def test_uf2_blocks_follow_the_format():
    data = bytes(range(256)) * 2 + b"\x01\x02\x03"
    uf2 = uf2_blocks(data)
    assert len(uf2) == 3 * 512
    back = b""
    for n in range(3):
        blk = uf2[512 * n: 512 * (n + 1)]
        m0, m1, flags, addr, size, no, total, fam = struct.unpack("<IIIIIIII", blk[:32])
        assert (m0, m1, struct.unpack("<I", blk[-4:])[0]) == (0x0A324655, 0x9E5D5157, 0x0AB16F30)
        assert flags == 0x2000 and fam == RP2040.uf2_family
        assert addr == RP2040.flash_base + 256 * n and size == 256 and no == n and total == 3
        back += blk[32: 32 + 256]
    assert back[: len(data)] == data and set(back[len(data):]) == {0}


def test_missing_sdk_names_where_it_looked(tmp_path):
    with pytest.raises(ToolchainMissing, match="Pico SDK not found") as e:
        find_sdk({"PICO_SDK_PATH": str(tmp_path / "nowhere")})
    assert "PICO_SDK_PATH" in str(e.value) and str(tmp_path / "nowhere") in str(e.value)


def test_too_old_sdk_is_refused(tmp_path):
    (tmp_path / "pico_sdk_version.cmake").write_text(
        "set(PICO_SDK_VERSION_MAJOR 1)\nset(PICO_SDK_VERSION_MINOR 5)\nset(PICO_SDK_VERSION_REVISION 1)\n")
    with pytest.raises(ToolchainMissing, match="version 1.5.1"):
        find_sdk({"PICO_SDK_PATH": str(tmp_path)})


def test_sdk_version_is_read(tmp_path):
    (tmp_path / "pico_sdk_version.cmake").write_text(
        "set(PICO_SDK_VERSION_MAJOR 2)\nset(PICO_SDK_VERSION_MINOR 2)\nset(PICO_SDK_VERSION_REVISION 0)\n")
    assert find_sdk({"PICO_SDK_PATH": str(tmp_path)}) == (tmp_path, (2, 2, 0))


def test_missing_tflm_names_the_variable(tmp_path):
    with pytest.raises(ToolchainMissing, match="PICO_TFLMICRO_PATH"):
        find_tflm({"PICO_TFLMICRO_PATH": str(tmp_path)})


def _script(path, body):
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("key, cfgs", [
    ("PICOTFLM_USB_WINDOWS_RESET", [{"image": "board"}, {"image": "board"}, {"image": "board", "usb_windows_reset": True}]),
    ("PICOTFLM_EMULATE_CORE1", [{"image": "emulator"}, {"image": "emulator", "emulate_core1": True},
                                {"image": "emulator", "emulate_core1": True}]),
], ids=["usb_windows_reset", "emulate_core1"])
def test_an_image_option_reaches_cmake_and_a_change_reconfigures(tmp_path, monkeypatch, key, cfgs):
    tc = Toolchain(sdk=tmp_path, sdk_version=(2, 2, 0), tflm=tmp_path, gcc="arm-none-eabi-gcc",
                   cmake=_script(tmp_path / "cmake", FAKE_CMAKE), ninja=_script(tmp_path / "ninja", FAKE_NINJA),
                   ccache=None)
    monkeypatch.setattr(build, "elf_memory_map", lambda elf: {})
    gen, build_dir = tmp_path / "generated", tmp_path / "build"
    gen.mkdir()
    for cfg in cfgs:
        assert build_firmware(gen, build_dir, BuildConfig(**cfg), toolchain=tc).uf2.is_file()
    configures = [line.split() for line in (build_dir / "configures.txt").read_text().splitlines()]
    # configured once for the default, not again for the same settings, again when the option changes
    assert len(configures) == 2
    assert f"{key}=OFF" in configures[0] and f"{key}=ON" in configures[1]
