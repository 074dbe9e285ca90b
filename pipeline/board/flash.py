"""Put a UF2 image on a Pico and find its serial port afterwards.

``flash(uf2) -> port``: ``picotool load -x`` when picotool is on PATH, else a copy onto the mounted
RPI-RP2 drive (the bootrom's mass-storage disk, found by its ``INFO_UF2.TXT``); then wait until
the board shows up as a USB serial port with the Pico SDK's VID:PID and return its device path.
Nothing is printed: status lines go to ``log``, failures are :class:`PipelineError`.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from pipeline.board.uf2 import check_uf2
from pipeline.errors import PipelineError

PICO_VID = 0x2E8A
PICO_STDIO_USB_PID = 0x000A  # the Pico SDK's stdio-over-USB CDC device
DRIVE_GLOBS = ("/media/*/*", "/run/media/*/*", "/mnt", "/mnt/*", "/Volumes/*")
PICOTOOL_TIMEOUT = 120.0
NO_BOOTSEL = "No accessible RP-series devices in BOOTSEL mode were found"
BOOTSEL_HINT = "hold BOOTSEL while plugging the Pico in"

Log = Callable[[str], None]


# ------------------------------------------------------------------------ the RPI-RP2 drive
def _is_uf2_drive(d: Path) -> bool:
    try:
        return (d / "INFO_UF2.TXT").is_file()
    except OSError:
        return False


def find_drives(globs: Sequence[str] = DRIVE_GLOBS) -> list[Path]:
    """Mounted UF2 bootloader drives (directories holding INFO_UF2.TXT); RP2 boards first."""
    found: list[Path] = []
    for pattern in globs:
        for hit in sorted(glob.glob(pattern)):
            d = Path(hit)
            if d.is_dir() and _is_uf2_drive(d) and d not in found:
                found.append(d)

    def is_rp2(d: Path) -> bool:
        try:
            return "RP2" in (d / "INFO_UF2.TXT").read_text(errors="replace")
        except OSError:
            return False

    return sorted(found, key=lambda d: (not is_rp2(d), str(d)))


def copy_to_drive(data: bytes, drive: str | Path, name: str = "firmware.uf2", log: Log | None = None) -> Path:
    """Write the image onto the bootloader drive; the Pico reboots into it once the last block lands."""
    say = log or (lambda _m: None)
    d = Path(drive)
    if not d.is_dir():
        raise PipelineError(f"drive {d} does not exist or is not a directory",
                            hint="hold BOOTSEL while plugging the Pico in, then pass the mounted RPI-RP2 folder")
    if not _is_uf2_drive(d):
        raise PipelineError(f"{d} is not a UF2 bootloader drive (no INFO_UF2.TXT)",
                            hint="pass the mounted RPI-RP2 drive of a Pico in BOOTSEL mode")
    if not os.access(d, os.W_OK):
        raise PipelineError(f"the drive {d} is not writable",
                            hint="it may be mounted read-only or owned by another user: remount it, or install picotool")
    dest = d / name
    say(f"copying {len(data):,} B to {dest}")
    try:
        f = open(dest, "wb")
    except OSError as e:
        raise PipelineError(f"cannot write to the drive {d}: {e.strerror or e}",
                            hint="it may be mounted read-only or owned by another user: remount it, or install picotool") from e
    try:
        f.write(data)
        f.flush()
    except OSError as e:
        f.close()
        raise PipelineError(f"writing {dest} failed: {e.strerror or e}",
                            hint=f"{BOOTSEL_HINT} and try again") from e
    try:  # the board reboots as soon as it has every block: the drive may vanish under us here
        os.fsync(f.fileno())
        f.close()
    except OSError as e:
        say(f"the drive went away while closing ({e.strerror or e}); the board probably rebooted into the image")
    return dest


# ---------------------------------------------------------------------------------- picotool
def picotool_load(picotool: str, uf2: Path, log: Log | None = None) -> None:
    """``picotool load -x UF2`` (again with ``-f`` when picotool says the board runs a USB serial
    device that it can reboot into BOOTSEL itself)."""
    say = log or (lambda _m: None)
    for extra in ([], ["-f"]):
        cmd = [picotool, "load", *extra, "-x", str(uf2)]
        say("running " + " ".join(cmd))
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=PICOTOOL_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise PipelineError(f"picotool did not finish within {PICOTOOL_TIMEOUT:g} s",
                                hint="unplug the Pico, hold BOOTSEL while plugging it in, and try again") from e
        except OSError as e:
            raise PipelineError(f"cannot run picotool ({picotool}): {e}") from e
        out = (p.stdout or "") + "\n" + (p.stderr or "")
        if p.returncode == 0:
            return
        if not extra and "-f" in out and "USB serial connection" in out:
            say("the board runs a USB serial device: asking picotool to reboot it into BOOTSEL (-f)")
            continue
        break
    first = next((ln.strip() for ln in out.splitlines() if ln.strip()), f"exit code {p.returncode}")
    if NO_BOOTSEL in out:
        if "unable to connect" in out or "permission" in out.lower():
            raise PipelineError("picotool sees a Pico in BOOTSEL mode but may not open it",
                                hint="install the udev rules for picotool (or run it with sudo once to check)")
        raise PipelineError("no board in BOOTSEL mode: picotool found no RP-series device", hint=BOOTSEL_HINT)
    raise PipelineError(f"picotool load failed (exit code {p.returncode}): {first}", hint=BOOTSEL_HINT)


# ------------------------------------------------------------------------------- the port
def _comports() -> list[Any]:
    from serial.tools import list_ports

    return list(list_ports.comports())


def pico_ports(list_ports: Callable[[], Iterable[Any]] | None = None) -> list[str]:
    """Device paths of serial ports with the Pico SDK's USB stdio VID:PID."""
    return sorted(p.device for p in (list_ports or _comports)()
                  if getattr(p, "vid", None) == PICO_VID and getattr(p, "pid", None) == PICO_STDIO_USB_PID)


def wait_for_port(before: Iterable[str] = (), *, timeout: float = 10.0, settle: float = 2.0, poll: float = 0.25,
                  list_ports: Callable[[], Iterable[Any]] | None = None, log: Log | None = None) -> str:
    """The Pico's serial port once it appears. A port not in ``before`` counts at once, and so does
    one of ``before`` once it has gone away and come back (the board rebooting under its old name);
    one that stays listed throughout counts only after ``settle`` s (its disappearance was missed)."""
    say = log or (lambda _m: None)
    before = set(before)
    t0 = time.monotonic()
    while True:
        ports = pico_ports(list_ports)
        before &= set(ports)  # a port that went away is new when it comes back
        new = [p for p in ports if p not in before]
        waited = time.monotonic() - t0
        if new or (ports and waited >= settle):
            port = (new or ports)[0]
            if len(new or ports) > 1:
                say(f"several Pico serial ports ({', '.join(new or ports)}); using {port}")
            return port
        if waited >= timeout:
            raise PipelineError(
                f"the board did not appear as a serial port (USB {PICO_VID:04x}:{PICO_STDIO_USB_PID:04x}) "
                f"within {timeout:g} s after flashing",
                hint="was the board image built (build.image=board, USB stdio)? unplug and replug the Pico "
                     "without BOOTSEL, then run `picotflm measure --port PORT` "
                     "(ports: `python -m serial.tools.list_ports`)")
        time.sleep(poll)


# ------------------------------------------------------------------------------------ flash
def flash(uf2_path: str | Path, *, drive: str | Path | None = None, port_wait_timeout: float = 10.0,
          log: Log | None = None, picotool: str | None = "picotool", drive_globs: Sequence[str] = DRIVE_GLOBS,
          list_ports: Callable[[], Iterable[Any]] | None = None, poll: float = 0.25) -> str:
    """Flash ``uf2_path`` and return the serial port the board comes back on.

    With ``drive`` the image is copied there. Otherwise picotool when it is on PATH (``picotool=None``
    never uses it), falling back to a mounted RPI-RP2 drive if picotool fails and one is there."""
    say = log or (lambda _m: None)
    uf2 = Path(uf2_path)
    data = check_uf2(uf2)
    before = pico_ports(list_ports)
    if drive is not None:
        copy_to_drive(data, drive, uf2.name, say)
    else:
        tool = shutil.which(picotool) if picotool else None
        if tool:
            try:
                picotool_load(tool, uf2, say)
            except PipelineError as e:
                drives = find_drives(drive_globs)
                if not drives:
                    raise
                say(f"picotool failed ({e.message}); copying to the drive {drives[0]} instead")
                copy_to_drive(data, drives[0], uf2.name, say)
        else:
            drives = find_drives(drive_globs)
            if not drives:
                raise PipelineError("no board in BOOTSEL mode: no picotool on PATH and no mounted RPI-RP2 drive",
                                    hint="hold BOOTSEL while plugging in, or install picotool; "
                                         "or pass the drive's folder with --drive")
            if len(drives) > 1:
                say(f"several UF2 drives ({', '.join(map(str, drives))}); using {drives[0]}")
            copy_to_drive(data, drives[0], uf2.name, say)
    say("waiting for the board's serial port")
    return wait_for_port(before, timeout=port_wait_timeout, poll=poll, list_ports=list_ports, log=say)
