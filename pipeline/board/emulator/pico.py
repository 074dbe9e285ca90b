"""The emulated Pico behind a pseudo-terminal.

Two runners in ``tools/emulator``, both with the firmware's serial bytes on their stdin/stdout:
``board.mjs`` runs the image a user flashes (boot2, USB CDC, both cores, the project's ROM
stand-in) and ``run.mjs`` the single-core emulator image (UART0, no ROM calls). :class:`EmulatedPico`
starts one and bridges those pipes to the master side of a pty, so that the slave side (``.port``,
e.g. ``/dev/pts/7``) is opened by pyserial exactly like ``/dev/ttyACM0``.
"""
from __future__ import annotations

import collections
import ctypes
import errno
import fcntl
import json
import os
import selectors
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time
from pathlib import Path
from typing import Callable

from pipeline.board.emulator.image import check_image
from pipeline.board.uf2 import is_uf2
from pipeline.board.pty import close_quietly, open_raw_pty, wake
from pipeline import INSTALLED, SOURCE_ROOT, cache_dir
from pipeline.errors import PipelineError

EMULATOR_DIR_ENV = "PICOTFLM_EMULATOR_DIR"
RP2040JS_VERSION = "1.4.1"
READY_MARK = "boot from vector table"  # both runners write this to stderr once the image is loaded
RUNNERS = {"board": "board.mjs", "emulator": "run.mjs"}  # image kind -> runner script
PROFILE_ENV = "PICOTFLM_EMU_PROFILE"  # board.mjs sums each instruction's cycles by address into this file
STDERR_TAIL = 40
OUT_BUFFER_CAP = 256 * 1024  # bytes from the firmware held for a reader that does not read; more is dropped


def emulator_dir() -> Path:
    """The emulated Pico's scripts and their rp2040js: ``$PICOTFLM_EMULATOR_DIR``, else ``tools/emulator``
    of the checkout (``make install`` runs ``npm ci`` there), else, for an installed wheel, the copy
    :func:`setup_emulator` makes in picotflm's cache folder."""
    env = os.environ.get(EMULATOR_DIR_ENV)
    if env:
        return Path(env)
    return cache_dir() / "emulator" if INSTALLED else SOURCE_ROOT / "tools" / "emulator"


SETUP_HINT = ("run `picotflm setup-emulator` (an installed picotflm) or `make install` (a checkout: npm ci in "
              "tools/emulator)")


def _script_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".mjs", ".json") and p.is_file())


def setup_emulator(log: Callable[[str], None] = lambda _m: None, npm: str = "npm") -> Path:
    """Install the emulated Pico where :func:`emulator_dir` looks: the wheel's scripts copied there and
    rp2040js installed beside them by ``npm ci`` (pinned by the lockfile; skipped when that version is
    already there). Returns the folder. In a checkout it is ``tools/emulator`` itself."""
    target = emulator_dir()
    source = SOURCE_ROOT / "tools" / "emulator"
    if target.resolve() != source.resolve():
        target.mkdir(parents=True, exist_ok=True)
        for f in _script_files(source):
            shutil.copy2(f, target / f.name)
    try:
        check_emulator_dir(target, "board")
        log(f"emulated Pico: rp2040js {RP2040JS_VERSION} already installed in {target}")
        return target
    except PipelineError:
        pass
    exe = shutil.which(npm)
    if exe is None:
        raise PipelineError("npm not found: the emulated Pico's rp2040js is installed with it",
                            hint="install Node.js 18 or newer with npm (e.g. `apt-get install nodejs npm`)")
    log(f"emulated Pico: npm ci in {target}")
    done = subprocess.run([exe, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target,
                          capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise PipelineError(f"npm ci failed in {target}: {last}", hint="check that npm can reach its registry")
    check_emulator_dir(target, "board")
    return target


def find_node(node: str = "node") -> str:
    path = shutil.which(node)
    if path is None:
        raise PipelineError(f"Node.js not found (looked for {node!r})",
                            hint="install Node.js 18 or newer (e.g. `apt-get install nodejs npm`) "
                                 "or pass the path of the node executable")
    return path


def check_emulator_dir(directory: Path, image: str = "emulator") -> Path:
    """The runner script for an ``image`` kind (``board`` or ``emulator``) to start;
    :class:`PipelineError` when it or its rp2040js is missing."""
    run = directory / RUNNERS[image]
    if not run.is_file():
        raise PipelineError(f"emulator script not found: {run}",
                            hint=f"{SETUP_HINT}, or set {EMULATOR_DIR_ENV}")
    pkg = directory / "node_modules" / "rp2040js" / "package.json"
    if not pkg.is_file():
        raise PipelineError(f"rp2040js is not installed in {directory}",
                            hint=SETUP_HINT)
    try:
        version = json.loads(pkg.read_text()).get("version")
    except (OSError, ValueError):
        version = None
    if version != RP2040JS_VERSION:
        raise PipelineError(f"rp2040js {version} is installed in {directory}, {RP2040JS_VERSION} is required",
                            hint=SETUP_HINT)
    return run


BOARD_MARK = b"image board"  # the board image's binary info (`picotool info`): "image board, ..."


def image_kind(path: str | Path) -> str:
    """``board`` for the image a user flashes (its binary info says so), else ``emulator``."""
    data = Path(path).read_bytes()
    if is_uf2(data):  # the payloads, without the block headers a string may straddle
        data = b"".join(data[i + 32: i + 32 + struct.unpack_from("<I", data, i + 16)[0]]
                        for i in range(0, len(data) - 511, 512))
    return "board" if BOARD_MARK in data else "emulator"


_PR_SET_PDEATHSIG = 1
_libc = None


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that has the child get SIGTERM when this thread dies (Linux), or None.

    PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only used from the main
    thread; from other threads the child still exits on stdin EOF when this process dies."""
    global _libc
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork, never in the child
        prctl = _libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)

    return preexec


def _profile_seq(path: Path) -> int:
    """The sequence number of the profile last written to ``path`` (0: none yet)."""
    try:
        return int(json.loads(path.read_text()).get("seq", 0))
    except (OSError, ValueError):
        return 0


def _send(fd: int, buf: bytearray) -> bool:
    """Write what ``fd`` takes now from the front of ``buf``; False when the reader has gone (the
    buffer is then dropped)."""
    try:
        del buf[:os.write(fd, buf)]
    except BlockingIOError:
        pass
    except BrokenPipeError:
        buf.clear()
        return False
    return True


class EmulatedPico:
    """The firmware ``image`` (ELF, UF2 or .bin) running in rp2040js, its UART0 at ``.port``.

    ::

        with EmulatedPico("runs/int8/firmware.elf") as pico:
            with serial.Serial(pico.port, 115200, timeout=2) as s:
                s.write(b"info\\n")
                print(s.readline())

    ``on_stderr`` receives each line the emulator writes to stderr (load summary, crashes);
    the last lines are kept either way (:meth:`stderr_tail`). ``link`` makes a symlink to the pty
    (like socat's ``link=``), removed on close. ``cycles`` has the emulator report its emulated
    cycle count and speed on stderr when it stops.
    """

    def __init__(self, image_path: str | Path, *, node: str = "node", emulator: str | Path | None = None,
                 on_stderr: Callable[[str], None] | None = None, link: str | Path | None = None,
                 cycles: bool = False, start_timeout: float = 30.0, kind: str | None = None,
                 profile: str | Path | None = None):
        self.image = Path(image_path)
        self.format = check_image(self.image)
        self.kind = kind or image_kind(self.image)
        if self.kind not in RUNNERS:
            raise ValueError(f"kind must be one of {', '.join(RUNNERS)}, not {self.kind!r}")
        node_path = find_node(node)
        run = check_emulator_dir(Path(emulator) if emulator is not None else emulator_dir(), self.kind)
        self._on_stderr = on_stderr
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self.dropped = 0  # firmware bytes dropped because nobody read the port
        self.bridge_error: OSError | None = None  # why the bridge stopped, if it failed
        self.link = Path(link) if link is not None else None

        self._master, self._slave, self.port = open_raw_pty()
        self._wake_r, self._wake_w = os.pipe()
        cmd = [node_path, str(run)] + (["--cycles"] if cycles else []) + [str(self.image.resolve())]
        self.profile = Path(profile) if profile is not None else None
        if self.profile is not None and self.kind != "board":
            raise ValueError("a cycle profile needs the board image's emulator (board.mjs)")
        env = None if self.profile is None else {**os.environ, PROFILE_ENV: str(self.profile)}
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, bufsize=0, close_fds=True,
                                         preexec_fn=_pdeathsig_preexec(), env=env)
        except OSError as e:
            self._close_fds()
            raise PipelineError(f"cannot start the emulator ({node_path}): {e}",
                                hint="install Node.js 18 or newer") from e
        self.pid = self.proc.pid
        self._stderr_thread = threading.Thread(target=self._read_stderr, name="emulator-stderr", daemon=True)
        self._stderr_thread.start()
        self._bridge_thread = threading.Thread(target=self._bridge, name="emulator-bridge", daemon=True)
        self._bridge_thread.start()
        try:
            self._wait_ready(start_timeout)
            if self.link is not None:
                try:
                    if self.link.is_symlink():
                        self.link.unlink()
                    self.link.symlink_to(self.port)
                except OSError as e:
                    raise PipelineError(f"cannot make the link {self.link} to {self.port}: {e}",
                                        hint="choose another path, or remove what is there") from e
        except BaseException:
            self.close()
            raise

    def profile_snapshot(self, timeout: float = 30.0) -> dict:
        """The cycles each core spent at every instruction address since boot (an emulator started
        with ``profile``): ``{"seq", "cores": [{"other", "pcs": [[address, cycles], ...]}, ...]}``."""
        if self.profile is None:
            raise ValueError("this emulator was started without a profile")
        last = _profile_seq(self.profile)
        os.kill(self.proc.pid, signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if _profile_seq(self.profile) > last:
                return json.loads(self.profile.read_text())
            time.sleep(0.05)
        raise PipelineError(f"the emulator wrote no cycle profile within {timeout:.0f} s", hint=self.stderr_tail())

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> "EmulatedPico":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten close must not leave node running
        try:
            self.close()
        except Exception:
            pass

    def poll(self) -> int | None:
        """The emulator's exit code, or None while it runs."""
        return self.proc.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        """Waits up to ``timeout`` s for the emulator to stop; its exit code, or None if still running."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def check(self) -> None:
        """:class:`PipelineError` (with the emulator's last words) if the emulator has stopped."""
        rc = self.proc.poll()
        if rc is not None:
            raise self._died(rc, "stopped")

    def stderr_tail(self) -> str:
        """The emulator's last lines on stderr."""
        if self.proc.poll() is not None:
            self._stderr_thread.join(0.5)  # let the reader take in its last words
        return "\n".join(self._tail)

    def close(self, timeout: float = 3.0) -> int | None:
        """Stops the emulator (EOF on its stdin, then SIGTERM, then SIGKILL) and frees the pty."""
        if self._closed:
            return self.proc.poll() if hasattr(self, "proc") else None
        self._closed = True
        self._stop.set()
        self._wake()
        if threading.current_thread() is not self._bridge_thread:
            self._bridge_thread.join(timeout)
        proc = self.proc
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._stderr_thread.join(timeout)
        for f in (proc.stdout, proc.stderr):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._close_fds()
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == self.port:
            self.link.unlink()
        return proc.returncode

    def _close_fds(self) -> None:
        close_quietly(self._master, self._slave, self._wake_r, self._wake_w)

    def _wake(self) -> None:
        wake(self._wake_w)

    def _died(self, rc: int, what: str) -> PipelineError:
        tail = self.stderr_tail()
        lines = [ln.removeprefix("emulator: ").strip() for ln in tail.splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith(("cannot", "firmware stopped"))),
                      lines[-1] if lines else "no message")
        if tail:
            hint = "the emulator's last words:\n" + tail
        else:
            hint = f"run `node tools/emulator/run.mjs {self.image}` to see its output"
        return PipelineError(f"the emulator {what} (exit code {rc}) running {self.image}: {reason}", hint=hint)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            rc = self.proc.poll()
            if rc is not None:
                self._stderr_thread.join(1.0)
                if not self._ready.is_set():
                    raise self._died(rc, "exited at start")
                return
            if time.monotonic() > deadline:
                raise PipelineError(f"the emulator did not load {self.image} within {timeout:.0f} s",
                                    hint="the machine may be overloaded; its output so far:\n"
                                         + self.stderr_tail())

    # ------------------------------------------------------------------ threads
    def _read_stderr(self) -> None:
        stream = self.proc.stderr
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            if READY_MARK in line:
                self._ready.set()
            if self._on_stderr is not None:
                try:
                    self._on_stderr(line)
                except Exception:
                    pass

    def _bridge(self) -> None:
        """pty master <-> node stdin/stdout, never blocking on either side: bytes for node wait in
        ``to_node``; bytes for the port wait in ``to_port`` (capped: a UART with nobody listening
        loses data too).

        The master is in packet mode (TIOCPKT): each read starts with a status byte, and when the
        reader flushes its input (pyserial does on open) the status says so and ``to_port`` is
        dropped too, so a port opened late starts clean, as a real board's would."""
        master = self._master
        try:
            fcntl.ioctl(master, termios.TIOCPKT, struct.pack("i", 1))
            packet_mode = True
        except OSError:
            packet_mode = False
        node_in = self.proc.stdin.fileno()
        node_out = self.proc.stdout.fileno()
        for fd in (master, node_in, node_out):
            os.set_blocking(fd, False)
        to_node = bytearray()
        to_port = bytearray()
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        sel.register(node_out, selectors.EVENT_READ, "node_out")
        master_events = selectors.EVENT_READ
        sel.register(master, master_events, "master")
        node_in_registered = False
        node_open = True
        try:
            while not self._stop.is_set():
                for key, events in sel.select(timeout=1.0):
                    what = key.data
                    if what == "wake":
                        os.read(self._wake_r, 512)
                    elif what == "node_out":
                        try:
                            data = os.read(node_out, 65536)
                        except BlockingIOError:
                            continue
                        if not data:  # node exited: keep the port open, nothing more will come
                            sel.unregister(node_out)
                            node_open = False
                            continue
                        room = OUT_BUFFER_CAP - len(to_port)
                        if len(data) > room:
                            self.dropped += len(data) - max(room, 0)
                            data = data[:max(room, 0)]
                        to_port += data
                    elif what == "master":
                        if events & selectors.EVENT_READ:
                            try:
                                data = os.read(master, 65536)
                            except BlockingIOError:
                                data = None
                            except OSError as e:  # EIO: no slave open (cannot happen: we hold one)
                                if e.errno != errno.EIO:
                                    raise
                                data = None
                            if data and packet_mode:
                                status, data = data[0], data[1:]
                                if status & termios.TIOCPKT_FLUSHREAD:
                                    to_port.clear()
                            if data and node_open:
                                to_node += data
                        if events & selectors.EVENT_WRITE and to_port:
                            _send(master, to_port)
                    elif what == "node_in" and to_node:
                        node_open = _send(node_in, to_node)
                # Try the writes at once; ask the selector only for what would block.
                if to_port:
                    _send(master, to_port)
                if to_node and node_open:
                    node_open = _send(node_in, to_node)
                want = selectors.EVENT_READ | (selectors.EVENT_WRITE if to_port else 0)
                if want != master_events:
                    sel.modify(master, want, "master")
                    master_events = want
                if bool(to_node and node_open) != node_in_registered:
                    if node_in_registered:
                        sel.unregister(node_in)
                    else:
                        sel.register(node_in, selectors.EVENT_WRITE, "node_in")
                    node_in_registered = not node_in_registered
        except OSError as e:  # unexpected: the port then goes quiet, and the error is kept
            self.bridge_error = e
        finally:
            sel.close()


def serve(image: str | Path, announce: Callable[[str], None], *, node: str = "node",
          on_stderr: Callable[[str], None] | None = None, link: str | Path | None = None,
          cycles: bool = False, emulator: str | Path | None = None) -> int:
    """Runs ``image`` in the emulator until Ctrl-C (for ``picotflm emulate FIRMWARE``).

    ``announce(port)`` is called once with the pty path when the firmware is running; ``on_stderr``
    gets the emulator's diagnostics line by line. Returns 0 after Ctrl-C; raises
    :class:`PipelineError` if the emulator stops by itself (the firmware crashed)."""
    with EmulatedPico(image, node=node, on_stderr=on_stderr, link=link, cycles=cycles,
                      emulator=emulator) as pico:
        try:
            announce(pico.port)
            while True:
                rc = pico.wait(0.5)
                if rc == 0:  # stopped by a signal (Ctrl-C reaches node too) or stdin EOF
                    return 0
                if rc is not None:
                    raise pico._died(rc, "stopped")
        except KeyboardInterrupt:
            return 0
