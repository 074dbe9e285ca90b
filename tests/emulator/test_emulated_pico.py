"""The emulated Pico end to end: tools/emulator/run.mjs on rp2040js, hand-assembled images (Node only)
and the echo firmware built with the Pico SDK, reached through EmulatedPico and pyserial."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import serial

from pipeline.board.emulator import EmulatedPico
from pipeline.errors import PipelineError
from tests.emulator._images import (
    BKPT,
    SIO_FIFO_READS,
    UART_BYTE_FROM_0x200,
    UNALIGNED_LOAD,
    assert_process_gone,
    tiny_elf,
    tiny_flash,
    uf2_image,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.firmware


def run_js(node_emulator, image, stdin=b"", *args, timeout=30):
    return subprocess.run(["node", str(node_emulator / "run.mjs"), *args, str(image)], input=stdin,
                          capture_output=True, timeout=timeout)


# ------------------------------------------------------------------ run.mjs with tiny images (no SDK)
@pytest.mark.parametrize("fmt", ["elf", "bin", "uf2"])
def test_loader_puts_each_format_in_flash(tmp_path, node_emulator, fmt):
    # The code prints the byte stored at 0x10000200. In the ELF that byte is a segment that runs at
    # 0x20000000 but is loaded at 0x10000200 (like .data): only physical addresses put it there.
    flash = tiny_flash(UART_BYTE_FROM_0x200, b"K")
    data = {"elf": tiny_elf(UART_BYTE_FROM_0x200, b"K"), "bin": flash, "uf2": uf2_image(flash)}[fmt]
    image = tmp_path / f"tiny.{fmt}"
    image.write_bytes(data)
    r = run_js(node_emulator, image)  # stdin closed at once: runs until the core sleeps, then stops
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout == b"K"
    assert f"{fmt.upper()} {image}" in r.stderr.decode()


def test_breakpoint_stops_with_exit_code_3(tmp_path, node_emulator):
    image = tmp_path / "bkpt.bin"
    image.write_bytes(tiny_flash(BKPT))
    r = run_js(node_emulator, image, b"")
    err = r.stderr.decode()
    assert r.returncode == 3, err
    assert "firmware stopped: breakpoint" in err and "PC 0x10000108" in err


def test_unaligned_access_stops_with_the_emulators_error(tmp_path, node_emulator):
    image = tmp_path / "unaligned.bin"
    image.write_bytes(tiny_flash(UNALIGNED_LOAD))
    r = run_js(node_emulator, image)
    assert r.returncode == 3
    assert "emulator error [RP2040] read from address 1, which is not 32 bit aligned" in r.stderr.decode()


def test_multicore_fifo_use_is_explained_once_not_flooded(tmp_path, node_emulator):
    image = tmp_path / "sio.bin"
    image.write_bytes(tiny_flash(SIO_FIFO_READS))
    r = run_js(node_emulator, image)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert err.count("emulator runs core 0 only") == 1
    assert "invalid SIO address" not in err  # rp2040js's own console messages are kept back
    assert "invalid SIO address" in run_js(node_emulator, image, b"", "--verbose").stderr.decode()


@pytest.mark.parametrize("data, why", [
    (b"hello world\n" * 40, "not an ELF, UF2 or flash .bin image"),
    (b"\0" * 0x400, "no vector table at 0x10000100"),
], ids=["text", "no-vectors"])
def test_bad_images_exit_1_with_a_reason(tmp_path, node_emulator, data, why):
    image = tmp_path / "bad.bin" if why.startswith("no vector") else tmp_path / "bad.img"
    image.write_bytes(data)
    r = run_js(node_emulator, image)
    assert r.returncode == 1
    assert why in r.stderr.decode()


def test_uf2_for_another_chip_is_refused(tmp_path, node_emulator):
    image = tmp_path / "rp2350.uf2"
    image.write_bytes(uf2_image(tiny_flash(BKPT), family=0xE48BFF59))
    r = run_js(node_emulator, image)
    assert r.returncode == 1 and "no RP2040 blocks (families: RP2350 ARM-S)" in r.stderr.decode()


# ------------------------------------------------------------------ the echo firmware
def echo(s: serial.Serial, line: bytes) -> bytes:
    s.write(line + b"\n")
    return s.readline()


def handshake(s: serial.Serial) -> int:
    """Like the host: ask until answered (input before the port opened is gone). The line count."""
    for _ in range(20):
        reply = echo(s, b"hello")
        m = re.fullmatch(rb"(\d+) hello\n", reply)
        if m:
            return int(m.group(1))
    pytest.fail("no answer from the echo firmware")


@pytest.mark.parametrize("fmt", ["elf", "bin", "uf2"])
def test_echo_firmware_boots_from_every_format(echo_fw, fmt):
    with EmulatedPico(echo_fw[fmt]) as pico, serial.Serial(pico.port, 115200, timeout=5) as s:
        n = handshake(s)
        assert echo(s, b"abc def") == b"%d abc def\n" % (n + 1)
        assert echo(s, b"crlf\r") == b"%d crlf\n" % (n + 2)  # \r before \n is dropped by the firmware


def test_long_lines_and_bursts_arrive_whole(echo_fw):
    with EmulatedPico(echo_fw["elf"]) as pico, serial.Serial(pico.port, 115200, timeout=10) as s:
        n = handshake(s)
        line = bytes(48 + i % 75 for i in range(300))  # 300 bytes: nine RX FIFOs' worth
        assert echo(s, line) == b"%d %s\n" % (n + 1, line)
        longest = b"L" * 319  # the protocol's longest request, 320 bytes with its newline
        assert echo(s, longest) == b"%d %s\n" % (n + 2, longest)
        burst = b"".join(b"line %03d %s\n" % (i, b"z" * 40) for i in range(100))  # 5 KB in one write
        s.write(burst)
        for i in range(100):
            assert s.readline() == b"%d line %03d %s\n" % (n + 3 + i, i, b"z" * 40)


def test_emulated_clock_advances(echo_fw):
    with EmulatedPico(echo_fw["elf"]) as pico, serial.Serial(pico.port, 115200, timeout=10) as s:
        handshake(s)
        t = [int(echo(s, b"time").split()[2]) for _ in range(2)]
        spin = echo(s, b"spin 100000").split()
        assert spin[1:3] == [b"spin", b"100000"] and int(spin[3]) > 0  # 100k loops take emulated time
        assert 0 < t[0] < t[1]


def test_close_ends_node(echo_fw):
    pico = EmulatedPico(echo_fw["elf"])
    pid = pico.pid
    with serial.Serial(pico.port, 115200, timeout=5) as s:
        handshake(s)
    assert pico.close() == 0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_node_goes_when_the_python_parent_dies(echo_fw, tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pipeline.board.emulator import EmulatedPico
        pico = EmulatedPico({str(echo_fw["elf"])!r})
        print(pico.pid, flush=True)
        os.kill(os.getpid(), 9)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert_process_gone(int(r.stdout.split()[0]))


def test_firmware_crash_is_reported(echo_fw):
    with EmulatedPico(echo_fw["elf"]) as pico, serial.Serial(pico.port, 115200, timeout=5) as s:
        handshake(s)
        s.write(b"panic\n")
        assert b"*** PANIC ***" in s.read_until(b"echo_fw asked to panic")
        assert pico.wait(10) == 3
        with pytest.raises(PipelineError, match="exit code 3.*firmware stopped: breakpoint .*thread mode"):
            pico.check()


def test_rom_call_is_explained(echo_fw):
    with EmulatedPico(echo_fw["elf"]) as pico, serial.Serial(pico.port, 115200, timeout=5) as s:
        handshake(s)
        s.write(b"rom\n")
        assert pico.wait(10) == 3
        assert "no-ROM settings" in pico.stderr_tail()


def test_missing_image_gives_pipeline_error(tmp_path, node_emulator):
    with pytest.raises(PipelineError, match="firmware image not found"):
        EmulatedPico(tmp_path / "missing.elf")


def test_emulated_speed(echo_fw, record_property):
    """Busy emulation speed (cycles per wall second), reported; the floor only catches a collapse."""
    lines = []
    with EmulatedPico(echo_fw["elf"], cycles=True, on_stderr=lines.append) as pico, \
            serial.Serial(pico.port, 115200, timeout=60) as s:
        handshake(s)
        t0 = time.monotonic()
        us = int(echo(s, b"spin 2000000").split()[3])
        wall = time.monotonic() - t0
    cycles = us * 125  # 125 MHz
    speed = cycles / wall
    record_property("emulated_cycles_per_s", int(speed))
    print(f"\nemulated {cycles / 1e6:.0f} M cycles in {wall:.2f} s: {speed / 1e6:.1f} M cycles/s")
    assert any("cycles/s" in ln for ln in lines)  # --cycles reported at exit
    assert speed > 2e6
