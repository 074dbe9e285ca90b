import struct

import pytest

from pipeline.build import FLASH_BASE, UF2_FAMILY_RP2040, ToolchainMissing, find_sdk, find_tflm, uf2_blocks


def test_uf2_blocks_follow_the_format():
    data = bytes(range(256)) * 2 + b"\x01\x02\x03"
    uf2 = uf2_blocks(data)
    assert len(uf2) == 3 * 512
    back = b""
    for n in range(3):
        blk = uf2[512 * n: 512 * (n + 1)]
        m0, m1, flags, addr, size, no, total, fam = struct.unpack("<IIIIIIII", blk[:32])
        assert (m0, m1, struct.unpack("<I", blk[-4:])[0]) == (0x0A324655, 0x9E5D5157, 0x0AB16F30)
        assert flags == 0x2000 and fam == UF2_FAMILY_RP2040
        assert addr == FLASH_BASE + 256 * n and size == 256 and no == n and total == 3
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
