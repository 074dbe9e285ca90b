"""The Python side of the emulated Pico, with no Node.js and no SDK: image detection, the raw pty,
the checks before start, and the pty bridge driven by a stand-in emulator written in Python."""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest
import serial

from pipeline.board.emulator import (
    RP2040JS_VERSION,
    EmulatedPico,
    check_emulator_dir,
    check_image,
    detect_format,
    find_node,
    open_raw_pty,
    serve,
)
from pipeline.board.emulator.pico import READY_MARK
from pipeline.errors import PipelineError
from tests.emulator._images import BKPT, assert_process_gone, tiny_elf, tiny_flash, uf2_image

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ image detection
def test_formats_are_told_by_content():
    flash = tiny_flash(BKPT)
    assert detect_format(tiny_elf(BKPT, b"K"), "fw") == "elf"
    assert detect_format(uf2_image(flash), "fw") == "uf2"
    assert detect_format(flash, "firmware") == "bin"  # a vector table at 0x100 is enough
    assert detect_format(b"\0" * 64, "x.bin") == "bin"  # a .bin has no magic: the name decides


@pytest.mark.parametrize("data, match", [
    (b":020000041000EA\n", "not an ELF, UF2 or .bin"),
    (b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 60, "32-bit little-endian"),
    (b"\x7fELF" + bytes([1, 1, 1]) + b"\0" * 9 + bytes([2, 0, 62, 0]) + b"\0" * 40, "machine 62, not Arm"),
], ids=["intel-hex", "elf64", "elf-x86-64"])
def test_other_files_are_refused(data, match):
    with pytest.raises(PipelineError, match=match):
        detect_format(data, "firmware.hex")


def test_missing_image_is_a_pipeline_error(tmp_path):
    with pytest.raises(PipelineError, match="firmware image not found") as e:
        check_image(tmp_path / "nope.elf")
    assert "picotflm build" in e.value.hint


def test_missing_image_is_refused_before_node_starts(tmp_path):
    with pytest.raises(PipelineError, match="firmware image not found"):
        EmulatedPico(tmp_path / "nope.elf", node="no-such-node-binary")


# ------------------------------------------------------------------ checks before start
def test_missing_node_says_install_node(tmp_path):
    with pytest.raises(PipelineError, match="Node.js not found") as e:
        find_node("no-such-node-binary")
    assert "install Node.js" in e.value.hint


def test_missing_node_modules_says_npm_ci(tmp_path):
    (tmp_path / "run.mjs").write_text("")
    with pytest.raises(PipelineError, match="rp2040js is not installed") as e:
        check_emulator_dir(tmp_path)
    assert "npm ci" in e.value.hint


def test_wrong_rp2040js_version_says_npm_ci(tmp_path):
    fake_emulator(tmp_path, "", version="1.0.0")
    with pytest.raises(PipelineError, match=f"rp2040js 1.0.0 is installed.*{RP2040JS_VERSION} is required"):
        check_emulator_dir(tmp_path)


# ------------------------------------------------------------------ raw pty
def test_pty_slave_is_raw():
    master, slave, path = open_raw_pty()
    try:
        assert path.startswith("/dev/")
        iflag, oflag, _, lflag, *_ = termios.tcgetattr(slave)
        assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        assert not oflag & termios.OPOST
        assert not iflag & (termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON)
        # bytes to the master reach the slave unchanged and are not echoed back
        os.write(master, b"abc\r\n\x03\x11")
        assert read_exactly(slave, 7) == b"abc\r\n\x03\x11"
        assert select.select([master], [], [], 0.2)[0] == []
        # and the other way, no \n -> \r\n
        os.write(slave, b"x\ny\r")
        assert read_exactly(master, 4) == b"x\ny\r"
    finally:
        os.close(master)
        os.close(slave)


def read_exactly(fd: int, n: int, timeout: float = 2.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            out += os.read(fd, n - len(out))
    return out


# ------------------------------------------------------------------ the bridge, with a stand-in emulator
# A Python script in place of run.mjs: same command line, same stderr ready line, echoes stdin
# upper-cased on stdout, exits on EOF and SIGTERM.
FAKE_RUN = textwrap.dedent(f"""
    import os, sys
    image = sys.argv[-1]
    sys.stderr.write("emulator: ELF %s: 1 bytes of flash; {READY_MARK} 0x10000100\\n" % image)
    sys.stderr.flush()
    MODE
    while True:
        data = os.read(0, 4096)
        if not data:
            break
        os.write(1, data.upper())
""")


def fake_emulator(directory, mode="", version=RP2040JS_VERSION):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.mjs").write_text(FAKE_RUN.replace("MODE", mode))
    pkg = directory / "node_modules" / "rp2040js"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "package.json").write_text(f'{{"name": "rp2040js", "version": "{version}"}}')
    return directory


@pytest.fixture
def image(tmp_path):
    p = tmp_path / "fw.bin"
    p.write_bytes(tiny_flash(BKPT))
    return p


def test_bridge_carries_bytes_both_ways(tmp_path, image):
    emu = fake_emulator(tmp_path / "emu")
    with EmulatedPico(image, node=sys.executable, emulator=emu) as pico:
        with serial.Serial(pico.port, 115200, timeout=3) as s:
            s.write(b"info @1\n")
            assert s.readline() == b"INFO @1\n"
            line = bytes(range(32, 127)) * 4 + b"\n"  # 381 bytes
            s.write(line)
            assert s.read(len(line)) == line.upper()
        assert pico.poll() is None


def test_close_ends_the_emulator_process(tmp_path, image):
    emu = fake_emulator(tmp_path / "emu", mode="import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)")
    pico = EmulatedPico(image, node=sys.executable, emulator=emu)
    pid = pico.pid
    pico.close(timeout=1.0)  # stdin EOF ends this one; SIGKILL would follow SIGTERM otherwise
    assert pico.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_early_exit_reports_the_emulators_stderr(tmp_path, image):
    emu = tmp_path / "emu"
    fake_emulator(emu)
    (emu / "run.mjs").write_text("import sys\nsys.stderr.write('emulator: cannot load x: broken\\n')\n"
                                 "sys.exit(1)\n")
    with pytest.raises(PipelineError, match="exited at start .*cannot load x: broken") as e:
        EmulatedPico(image, node=sys.executable, emulator=emu)
    assert "cannot load x: broken" in e.value.hint


def test_link_points_at_the_port_and_goes_away(tmp_path, image):
    emu = fake_emulator(tmp_path / "emu")
    link = tmp_path / "ttyPICO"
    with EmulatedPico(image, node=sys.executable, emulator=emu, link=link) as pico:
        assert os.readlink(link) == pico.port
    assert not link.exists() and not link.is_symlink()


def test_output_nobody_reads_does_not_stall_the_emulator(tmp_path, image):
    # 3 MB from the "firmware" with the port not open: the bridge keeps 256 KB and drops the rest;
    # opening the port (pyserial flushes its input) drops the 256 KB too, as with a real board.
    emu = fake_emulator(tmp_path / "emu", mode="os.write(1, b'x' * 3_000_000); "
                                                "sys.stderr.write('emulator: wrote\\n'); sys.stderr.flush()")
    with EmulatedPico(image, node=sys.executable, emulator=emu) as pico:
        deadline = time.monotonic() + 20
        while "wrote" not in pico.stderr_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        last = -1
        while pico.dropped != last and time.monotonic() < deadline:  # the pipe drained
            last = pico.dropped
            time.sleep(0.2)
        assert 0 < pico.dropped < 3_000_000
        with serial.Serial(pico.port, 115200, timeout=3) as s:
            s.write(b"still here\n")
            assert s.readline() == b"STILL HERE\n"


def test_emulator_goes_when_the_python_parent_dies(tmp_path, image):
    emu = fake_emulator(tmp_path / "emu")
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from pipeline.board.emulator import EmulatedPico
        pico = EmulatedPico({str(image)!r}, node=sys.executable, emulator={str(emu)!r})
        print(pico.pid, flush=True)
        os.kill(os.getpid(), 9)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    pid = int(r.stdout.split()[0])
    assert_process_gone(pid)


def test_serve_announces_the_port_and_returns_on_ctrl_c(tmp_path, image):
    emu = fake_emulator(tmp_path / "emu")
    seen = {}

    def announce(port):
        seen["pids"] = processes_running(emu / "run.mjs")
        with serial.Serial(port, 115200, timeout=3) as s:
            s.write(b"ping\n")
            seen["reply"] = s.readline()
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C

    assert serve(image, announce, node=sys.executable, emulator=emu) == 0
    assert seen["reply"] == b"PING\n"
    assert len(seen["pids"]) == 1
    assert_process_gone(seen["pids"][0])


def processes_running(script) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if str(script).encode() in f.read():
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def test_serve_raises_when_the_firmware_stops(tmp_path, image):
    emu = tmp_path / "emu"
    fake_emulator(emu, mode="sys.stderr.write('emulator: firmware stopped: breakpoint\\n'); sys.exit(3)")
    with pytest.raises(PipelineError, match="exit code 3.*firmware stopped: breakpoint"):
        serve(image, lambda port: time.sleep(0.5), node=sys.executable, emulator=emu)


def test_sigterm_to_the_emulator_is_seen_by_check(tmp_path, image):
    emu = fake_emulator(tmp_path / "emu")
    with EmulatedPico(image, node=sys.executable, emulator=emu) as pico:
        os.kill(pico.pid, signal.SIGTERM)
        assert pico.wait(5) is not None
        with pytest.raises(PipelineError, match="stopped"):
            pico.check()
