"""flash(): UF2 checks, the RPI-RP2 drive (a folder with INFO_UF2.TXT), picotool (a stand-in script),
and waiting for the Pico's serial port (a stand-in port list). No board needed."""
from __future__ import annotations

import os
import stat
import struct
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.board import flash as fl
from pipeline.board import uf2 as uf2_format
from pipeline.board.targets import RP2040
from pipeline.errors import PipelineError


def uf2_bytes(nblocks: int = 2, family: int = RP2040.uf2_family) -> bytes:
    out = b""
    for i in range(nblocks):
        head = struct.pack("<8I", uf2_format.MAGIC_START0, uf2_format.MAGIC_START1, uf2_format.FLAG_FAMILY,
                           0x10000000 + 256 * i, 256, i, nblocks, family)
        out += head + bytes([i]) * 256 + bytes(476 - 256) + struct.pack("<I", uf2_format.MAGIC_END)
    return out


@pytest.fixture
def uf2(tmp_path) -> Path:
    p = tmp_path / "firmware.uf2"
    p.write_bytes(uf2_bytes())
    return p


@pytest.fixture
def drive(tmp_path) -> Path:
    d = tmp_path / "media" / "me" / "RPI-RP2"
    d.mkdir(parents=True)
    (d / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n")
    return d


def ports(*devices: str, vid: int = fl.PICO_VID, pid: int = fl.PICO_STDIO_USB_PID):
    return lambda: [SimpleNamespace(device=d, vid=vid, pid=pid) for d in devices]


class AppearingPort:
    """No Pico port for the first ``after`` looks, then one."""

    def __init__(self, device: str = "/dev/ttyACM0", after: int = 2):
        self.device, self.after, self.calls = device, after, 0

    def __call__(self):
        self.calls += 1
        return [SimpleNamespace(device=self.device, vid=fl.PICO_VID, pid=fl.PICO_STDIO_USB_PID)] \
            if self.calls > self.after else []


def fake_picotool(tmp_path: Path, out: str, code: int) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / "picotool"
    # shell builtins only: the tests that use it leave nothing else on PATH
    tool.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/picotool.args"\necho "{out}" >&2\nexit {code}\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


# ------------------------------------------------------------------------------- UF2 checks
def test_missing_uf2(tmp_path):
    with pytest.raises(PipelineError, match="no UF2 file at") as e:
        fl.flash(tmp_path / "nope.uf2", picotool=None, list_ports=ports())
    assert e.value.hint


@pytest.mark.parametrize("data", [b"", b"\x7fELF" + bytes(1020), bytes(512), uf2_bytes()[:-1]])
def test_not_a_uf2_is_refused(tmp_path, drive, data):
    p = tmp_path / "firmware.uf2"
    p.write_bytes(data)
    with pytest.raises(PipelineError, match="is not a UF2 image") as e:
        fl.flash(p, drive=drive, list_ports=ports())
    assert ".elf" in e.value.hint and not (drive / "firmware.uf2").exists()


def test_uf2_for_another_chip_is_refused(tmp_path, drive):
    p = tmp_path / "firmware.uf2"
    p.write_bytes(uf2_bytes(family=0xE48BFF59))  # RP2350
    with pytest.raises(PipelineError, match="chip family 0xe48bff59, not the RP2040"):
        fl.flash(p, drive=drive, list_ports=ports())


# ------------------------------------------------------------------------------- the drive
def test_copy_to_an_explicit_drive_then_the_port(uf2, drive):
    log: list[str] = []
    port = fl.flash(uf2, drive=drive, list_ports=AppearingPort(after=2), poll=0.01, log=log.append)
    assert port == "/dev/ttyACM0"
    assert (drive / "firmware.uf2").read_bytes() == uf2.read_bytes()
    assert any("copying" in m for m in log)


def test_drive_found_by_its_info_file_when_picotool_is_absent(uf2, drive, tmp_path):
    other = tmp_path / "media" / "me" / "USBSTICK"
    other.mkdir()
    port = fl.flash(uf2, picotool=None, drive_globs=(str(tmp_path / "media" / "*" / "*"),),
                    list_ports=AppearingPort(after=1), poll=0.01)
    assert port == "/dev/ttyACM0" and (drive / "firmware.uf2").is_file() and not list(other.iterdir())


def test_no_picotool_and_no_drive(uf2, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no picotool anywhere
    with pytest.raises(PipelineError, match="no board in BOOTSEL mode") as e:
        fl.flash(uf2, drive_globs=(str(tmp_path / "media" / "*" / "*"),), list_ports=ports())
    assert "hold BOOTSEL while plugging in, or install picotool" in e.value.hint


def test_a_folder_without_info_file_is_not_a_drive(uf2, tmp_path):
    d = tmp_path / "stick"
    d.mkdir()
    with pytest.raises(PipelineError, match="not a UF2 bootloader drive"):
        fl.flash(uf2, drive=d, list_ports=ports())


def test_drive_not_writable(uf2, drive, monkeypatch):
    real = os.access
    monkeypatch.setattr(fl.os, "access", lambda p, mode: False if Path(p) == drive else real(p, mode))
    with pytest.raises(PipelineError, match="is not writable") as e:
        fl.flash(uf2, drive=drive, list_ports=ports())
    assert "read-only" in e.value.hint


# --------------------------------------------------------------------------------- picotool
def test_picotool_load_then_the_port(uf2, tmp_path, monkeypatch):
    tool = fake_picotool(tmp_path, "Loading into Flash: [====] 100%", 0)
    monkeypatch.setenv("PATH", str(tool.parent))
    port = fl.flash(uf2, list_ports=AppearingPort("/dev/ttyACM3", after=1), poll=0.01)
    assert port == "/dev/ttyACM3"
    assert (tmp_path / "picotool.args").read_text().split() == ["load", "-x", str(uf2)]


def test_picotool_without_a_board_in_bootsel(uf2, tmp_path, monkeypatch):
    tool = fake_picotool(tmp_path, "No accessible RP-series devices in BOOTSEL mode were found.", 1)
    monkeypatch.setenv("PATH", str(tool.parent))
    with pytest.raises(PipelineError, match="no board in BOOTSEL mode") as e:
        fl.flash(uf2, drive_globs=(), list_ports=ports())
    assert e.value.hint == "hold BOOTSEL while plugging the Pico in"


def test_picotool_failing_falls_back_to_a_mounted_drive(uf2, drive, tmp_path, monkeypatch):
    tool = fake_picotool(tmp_path, "ERROR: something else", 3)
    monkeypatch.setenv("PATH", str(tool.parent))
    port = fl.flash(uf2, drive_globs=(str(drive),), list_ports=AppearingPort(after=1), poll=0.01)
    assert port == "/dev/ttyACM0" and (drive / "firmware.uf2").is_file()


def test_picotool_other_failure_says_what_picotool_said(uf2, tmp_path, monkeypatch):
    tool = fake_picotool(tmp_path, "ERROR: The device was not found", 3)
    monkeypatch.setenv("PATH", str(tool.parent))
    with pytest.raises(PipelineError, match=r"picotool load failed \(exit code 3\): ERROR: The device"):
        fl.flash(uf2, drive_globs=(), list_ports=ports())


# ------------------------------------------------------------------------------ the port
def test_port_never_appears(uf2, drive):
    with pytest.raises(PipelineError, match="did not appear as a serial port .*2e8a:000a.* within 0.2 s") as e:
        fl.flash(uf2, drive=drive, port_wait_timeout=0.2, poll=0.01, list_ports=ports())
    assert "list_ports" in e.value.hint


def test_other_usb_serial_devices_are_not_the_pico(uf2, drive):
    with pytest.raises(PipelineError, match="did not appear"):
        fl.flash(uf2, drive=drive, port_wait_timeout=0.1, poll=0.01,
                 list_ports=ports("/dev/ttyUSB0", vid=0x0403, pid=0x6001))


def test_an_existing_port_counts_after_settling():
    """The same board re-enumerates under its old name: taken once it has had time to come back."""
    assert fl.wait_for_port(["/dev/ttyACM0"], timeout=2, settle=0.05, poll=0.01,
                            list_ports=ports("/dev/ttyACM0")) == "/dev/ttyACM0"
    assert fl.wait_for_port(["/dev/ttyACM0"], timeout=2, settle=5, poll=0.01,
                            list_ports=ports("/dev/ttyACM0", "/dev/ttyACM1")) == "/dev/ttyACM1"


def test_an_old_port_that_goes_away_and_comes_back_counts_at_once():
    seq = iter([["/dev/ttyACM0"], [], [], ["/dev/ttyACM0"]])
    t0 = time.monotonic()
    assert fl.wait_for_port(["/dev/ttyACM0"], timeout=2, settle=5, poll=0.01,
                            list_ports=lambda: [SimpleNamespace(device=d, vid=fl.PICO_VID, pid=fl.PICO_STDIO_USB_PID)
                                                for d in next(seq)]) == "/dev/ttyACM0"
    assert time.monotonic() - t0 < 1
