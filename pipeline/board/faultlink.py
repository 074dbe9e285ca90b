"""A hostile serial link: a proxy that drops, duplicates, flips and delays bytes, and resets the board.

:class:`FaultLink` sits between the host and a board's port (here the emulated Pico's pty): it opens
its own pty pair, whose slave (``.port``) the host opens like ``/dev/ttyACM0``, and forwards bytes
both ways. At seeded random byte positions (a mean gap per direction) it injects one fault:

- ``drop``: the byte is lost;
- ``dup``: the byte arrives twice;
- ``flip``: one bit of the byte is inverted;
- ``delay``: the byte and everything after it in that direction is held back (``delay_s``);
- ``reset``: the board is reset mid-exchange (``reset()`` restarts it; the proxy cuts the link,
  drops what is in flight, discards what the host sends meanwhile and reconnects to the new port).

:func:`soak` runs a firmware in the emulated Pico behind a fault link and checks every figure the host
accepts (``info``, ``mem``, ``golden`` and ``infer`` outputs) against what the host knows: host
TFLM's outputs, the run's golden outputs, the board's fault-free answers. Each fault is counted as
injected, and as recovered (the operation it hit still gave the right figures) or reported (it
raised a :class:`PipelineError`). ``python -m pipeline.board.faultlink --exchanges 10000`` (or
``make faultsoak``) prints the table.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import re
import selectors
import sys
import termios
import threading
import time
import tty
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.board.pty import close_quietly, wake
from pipeline.errors import PipelineError

KINDS = ("drop", "dup", "flip", "delay", "reset")
UP, DOWN = "to_board", "to_host"


@dataclass(frozen=True)
class FaultPlan:
    """Where faults go: a mean gap in bytes per direction (0: none), the share of each byte fault
    kind, the delay range, and a mean gap in bytes between resets (per direction, 0: none)."""

    seed: int = 0
    up_every: int = 40_000  # host -> board bytes per fault, on average
    down_every: int = 3_000  # board -> host bytes per fault, on average
    reset_every: int = 400_000  # bytes (each direction) per board reset, on average
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # drop, dup, flip, delay
    delay_s: tuple[float, float] = (0.01, 0.8)

    def __post_init__(self):
        for name in ("up_every", "down_every", "reset_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"FaultPlan.{name} must be an integer >= 0 (0: no faults), got {v!r}")
        if len(self.weights) != 4 or any(w < 0 for w in self.weights) or not sum(self.weights) > 0:
            raise ValueError(f"FaultPlan.weights must be 4 shares >= 0 (drop, dup, flip, delay) with a positive "
                             f"sum, got {self.weights!r}")
        lo, hi = self.delay_s
        if not 0 <= lo <= hi:
            raise ValueError(f"FaultPlan.delay_s must be (low, high) with 0 <= low <= high, got {self.delay_s!r}")


def _open_upstream(port: str) -> int:
    fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd, termios.TCSANOW)
        termios.tcflush(fd, termios.TCIOFLUSH)  # start clean, as pyserial does on open
    except termios.error:
        pass
    return fd


class _Direction:
    """One direction's fault positions (seeded geometric gaps) and its queue of (release time, bytes)."""

    def __init__(self, rng: random.Random, every: int, reset_every: int):
        self.rng = rng
        self.every = every
        self.reset_every = reset_every
        self.to_fault = self._gap(every)
        self.to_reset = self._gap(reset_every)
        self.queue: collections.deque[list] = collections.deque()  # [release, bytearray]
        self.hold_until = 0.0

    def _gap(self, every: int) -> float:
        return int(self.rng.expovariate(1.0 / every)) + 1 if every else float("inf")

    def push(self, data: bytes | bytearray, now: float) -> None:
        if not data:
            return
        release = max(now, self.hold_until)
        if self.queue and self.queue[-1][0] == release:
            self.queue[-1][1] += data
        else:
            self.queue.append([release, bytearray(data)])


class FaultLink:
    """A fault-injecting proxy in front of ``upstream`` (a serial port path); the host opens ``.port``.

    ``reset`` restarts the board and returns its (maybe new) port path; without it, resets are not
    injected. ``injected`` counts faults per kind, ``by_direction`` per (kind, direction). Faults are
    off while ``.paused`` is true (the proxy then only forwards). Use as a context manager."""

    def __init__(self, upstream: str, plan: FaultPlan = FaultPlan(), *, reset: Callable[[], str] | None = None):
        from pipeline.board.pty import open_raw_pty

        self.plan = plan
        self.paused = False
        self.injected: collections.Counter[str] = collections.Counter({k: 0 for k in KINDS})
        self.by_direction: collections.Counter[tuple[str, str]] = collections.Counter()
        self.resets_done = 0
        self.reset_error: BaseException | None = None
        self.error: BaseException | None = None
        self._reset_fn = reset
        self._rng = random.Random(plan.seed)
        reset_every = plan.reset_every if reset is not None else 0
        self._dirs = {UP: _Direction(random.Random(plan.seed * 2 + 1), plan.up_every, reset_every),
                      DOWN: _Direction(random.Random(plan.seed * 2 + 2), plan.down_every, reset_every)}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._resetting = threading.Event()
        self._new_upstream: str | None = None
        self._master, self._slave, self.port = open_raw_pty()
        self._wake_r, self._wake_w = os.pipe()
        self._up = _open_upstream(upstream)
        self._thread = threading.Thread(target=self._run, name="faultlink", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> "FaultLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._wake()
        self._thread.join(5.0)
        close_quietly(self._master, self._slave, self._wake_r, self._wake_w, self._up)

    def _wake(self) -> None:
        wake(self._wake_w)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self.injected)

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """True once no reset is under way (the board is up again), False after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self._resetting.is_set():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # ------------------------------------------------------------------ faults
    def _count(self, kind: str, direction: str) -> None:
        with self._lock:
            self.injected[kind] += 1
            self.by_direction[(kind, direction)] += 1

    def _inject(self, direction: str, data: bytes, now: float) -> bool:
        """Queue ``data`` with its faults; True when a reset was injected (the rest is then lost)."""
        d = self._dirs[direction]
        if self.paused or self._resetting.is_set():
            d.push(data, now)
            return False
        start = 0
        n = len(data)
        while start < n:
            step = min(d.to_fault, d.to_reset)
            if step > n - start:
                d.push(data[start:], now)
                d.to_fault -= n - start
                d.to_reset -= n - start
                return False
            i = start + step - 1  # the byte the fault hits (gaps are whole numbers >= 1)
            d.push(data[start:i], now)
            d.to_fault -= step
            d.to_reset -= step
            start = i + 1
            if d.to_reset == 0:
                self._count("reset", direction)
                self._begin_reset()
                return True
            d.to_fault = d._gap(d.every)
            kind = self._rng.choices(KINDS[:4], weights=self.plan.weights)[0]
            self._count(kind, direction)
            b = data[i]
            if kind == "dup":
                d.push(bytes((b, b)), now)
            elif kind == "flip":
                d.push(bytes((b ^ (1 << self._rng.randrange(8)),)), now)
            elif kind == "delay":
                d.hold_until = max(now, d.hold_until) + self._rng.uniform(*self.plan.delay_s)
                d.push(bytes((b,)), now)
            # drop: nothing
        return False

    def _begin_reset(self) -> None:
        """Cut the link (what is in flight is lost) and restart the board in the background."""
        self._resetting.set()
        for d in self._dirs.values():
            d.queue.clear()
            d.hold_until = 0.0
            d.to_reset = d._gap(d.reset_every)
        if self._up is not None:
            try:
                os.close(self._up)
            except OSError:
                pass
            self._up = None

        def restart() -> None:
            try:
                self._new_upstream = self._reset_fn()
            except BaseException as e:  # noqa: BLE001 - kept and reported by the soak
                self.reset_error = e
            self._wake()

        threading.Thread(target=restart, name="faultlink-reset", daemon=True).start()

    # ------------------------------------------------------------------ proxy thread
    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for fd in (self._master, self._wake_r):
            os.set_blocking(fd, False)
        sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        sel.register(self._master, selectors.EVENT_READ, "host")
        host_events = selectors.EVENT_READ
        up_registered: int | None = None
        up_events = 0
        try:
            while not self._stop.is_set():
                if self._new_upstream is not None or self.reset_error is not None:
                    path, self._new_upstream = self._new_upstream, None
                    if path is not None:
                        self._up = _open_upstream(path)
                        self.resets_done += 1
                    self._resetting.clear()
                now = time.monotonic()
                # Wait for a writable side only when bytes for it are due (never spin on a full pty).
                due = {name: bool(d.queue) and d.queue[0][0] <= now for name, d in self._dirs.items()}
                want_up = selectors.EVENT_READ | (selectors.EVENT_WRITE if due[UP] else 0)
                if self._up != up_registered or (self._up is not None and want_up != up_events):
                    if up_registered is not None:
                        try:
                            sel.unregister(up_registered)
                        except (KeyError, ValueError):
                            pass
                    if self._up is not None:
                        sel.register(self._up, want_up, "board")
                    up_registered, up_events = self._up, want_up
                want_host = selectors.EVENT_READ | (selectors.EVENT_WRITE if due[DOWN] else 0)
                if want_host != host_events:
                    sel.modify(self._master, want_host, "host")
                    host_events = want_host
                later = [d.queue[0][0] - now for name, d in self._dirs.items() if d.queue and not due[name]]
                timeout = min([0.2] + later)
                for key, events in sel.select(timeout=max(timeout, 0.0)):
                    if not events & selectors.EVENT_READ:
                        continue
                    now = time.monotonic()
                    if key.data == "wake":
                        os.read(self._wake_r, 512)
                    elif key.data == "host":
                        data = self._read(self._master)
                        if data and self._up is not None:
                            self._inject(UP, data, now)
                        # while the board resets, what the host sends is lost
                    elif key.data == "board" and self._up is not None:
                        data = self._read(self._up)
                        if data:
                            self._inject(DOWN, data, now)
                self._flush(UP, self._up)
                self._flush(DOWN, self._master)
        except BaseException as e:  # noqa: BLE001 - the link then goes quiet; the soak reports it
            self.error = e
        finally:
            sel.close()

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:  # EIO: the other side has gone (a board being reset)
            return b""

    def _flush(self, direction: str, fd: int | None) -> None:
        d = self._dirs[direction]
        if fd is None:
            if direction == UP:
                d.queue.clear()
            return
        now = time.monotonic()
        while d.queue and d.queue[0][0] <= now:
            buf = d.queue[0][1]
            try:
                del buf[:os.write(fd, buf)]
            except BlockingIOError:
                return
            except OSError:
                d.queue.clear()
                return
            if buf:
                return
            d.queue.popleft()


# ---------------------------------------------------------------------------------------- the soak
OPS = ("info", "mem", "golden", "frame")
# `info` fields that count events since boot (invokes run in place, cached setups, work on core 1):
# they change with every invoke and restart at a reset, so they are checked as counts, not values.
INFO_COUNTERS = ("inplace_ops", "quant_cache_hits", "split_ops", "core1_jobs", "cores_used")
# Deterministic figures of `mem` (stack_peak is a high-water mark: it grows, and a reset lowers it).
MEM_FIXED = ("arena_size", "arena_limit", "arena_used", "data_bytes", "bss_bytes", "heap_used", "stack_size",
             "ram_size")


@dataclass(frozen=True)
class SoakConfig:
    """One soak: ``exchanges`` checked operations (``info``, ``mem``, ``golden``, or one input frame:
    its ``load``s and ``infer``) drawn with ``mix`` shares, over a link with ``plan``'s faults."""

    exchanges: int = 10_000
    mix: tuple[float, float, float, float] = (0.47, 0.47, 0.01, 0.05)  # info, mem, golden, frame
    frames: int = 16
    timeout: float = 0.5  # wait for one reply (info, mem, load)
    invoke_timeout: float = 3.0  # wait for the reply to `infer`
    golden_timeout: float = 10.0
    retries: int = 3
    hang_s: float = 120.0  # an operation taking longer is a hang: the soak stops
    plan: FaultPlan = field(default_factory=FaultPlan)

    def __post_init__(self):
        if isinstance(self.exchanges, bool) or not isinstance(self.exchanges, int) or self.exchanges < 1:
            raise ValueError(f"SoakConfig.exchanges must be an integer >= 1, got {self.exchanges!r}")
        if len(self.mix) != 4 or any(m < 0 for m in self.mix) or not sum(self.mix) > 0:
            raise ValueError(f"SoakConfig.mix must be 4 shares >= 0 (info, mem, golden, frame), got {self.mix!r}")
        if not 1 <= self.frames <= 256:
            raise ValueError(f"SoakConfig.frames must be 1..256, got {self.frames!r}")
        for name in ("timeout", "invoke_timeout", "golden_timeout", "hang_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SoakConfig.{name} must be > 0 s, got {getattr(self, name)!r}")
        if self.retries < 0:
            raise ValueError(f"SoakConfig.retries must be >= 0, got {self.retries!r}")


def _reason(e: PipelineError) -> str:
    """An error message with its numbers and ids blanked, so that alike reasons group."""
    text = re.sub(r"\b\d+(\.\d+)?\b", "N", e.message)
    text = re.sub(r"'[^']{12,}'|b'[^']*'", "'...'", text)
    return f"{type(e).__name__}: {text[:150]}"


class _Truth:
    """What the host knows: host TFLM outputs of the test frames, the run's golden outputs, and the
    board's fault-free info, mem and per-frame timing."""

    def __init__(self, run_dir: Path, n_frames: int):
        import json

        import numpy as np

        from pipeline.tflite.reader import inspect_tflite
        from pipeline.stages.data import Dataset
        from pipeline.stages.verify import images_to_input, run_tflm

        data = (run_dir / "model.tflite").read_bytes()
        self.model = inspect_tflite(data)
        ds = Dataset.load(run_dir / "data.npz")
        x = images_to_input(ds.x_test[:n_frames], self.model)
        outs, _ = run_tflm(data, x, 1 << 20)
        self.frames = [f.tobytes() for f in x]
        self.outputs = [o.tobytes() for o in outs]
        self.top1 = [int(np.argmax(o)) for o in outs]
        golden = run_dir / "golden.json"
        self.golden = [bytes.fromhex(h) for h in json.loads(golden.read_text())["outputs"]] \
            if golden.is_file() else None
        self.info: dict[str, Any] = {}
        self.mem: dict[str, Any] = {}
        self.timing: list[tuple[int, int] | None] = [None] * len(self.frames)

    def wrong(self, op: str, got: Any, k: int | None = None) -> str | None:
        """What is wrong with the figures ``got`` of ``op``, or None when they are right."""
        if op == "info":
            fixed = {k: v for k, v in got.items() if k not in INFO_COUNTERS}
            want = {k: v for k, v in self.info.items() if k not in INFO_COUNTERS}
            counters_ok = all(isinstance(got.get(k, 0), int) and got.get(k, 0) >= 0 for k in INFO_COUNTERS)
            return None if fixed == want and counters_ok else f"info {got} != {self.info}"
        if op == "mem":
            bad = [f for f in MEM_FIXED if got.get(f) != self.mem.get(f)]
            peak = got.get("stack_peak")
            if not isinstance(peak, int) or not 0 < peak <= got.get("stack_size", 0):
                bad.append("stack_peak")
            elif got.get("ram_total") != sum(got.get(f, 0) for f in ("data_bytes", "bss_bytes", "heap_used",
                                                                       "core1_stack_peak")) + peak:
                bad.append("ram_total")  # the board's one total: its parts, both cores' stacks included
            return f"mem fields {bad}: {got}" if bad else None
        if op == "golden":
            n = self.info.get("golden_count")
            outs = got.get("outputs")
            if got.get("count") != n or got.get("exact") != n or got.get("max_diff") != 0 \
                    or got.get("top1_agree") != n:
                return f"golden {got}"
            if self.golden is not None and [bytes.fromhex(h) for h in outs] != self.golden:
                return f"golden outputs {outs} != host TFLM {[g.hex() for g in self.golden]}"
            return None
        # a frame
        if got["output"] != self.outputs[k] or got["top1"] != self.top1[k]:
            return f"frame {k}: output {got['output'].hex()} top1 {got['top1']} != host TFLM " \
                   f"{self.outputs[k].hex()} top1 {self.top1[k]}"
        # Timing is not bit-identical from invoke to invoke (UART interrupts land elsewhere: a few
        # cycles), so it must be within 1 % of the fault-free figure for this frame.
        if self.timing[k] is not None and any(abs(g - t) > 0.01 * t for g, t in
                                              zip((got["cycles"], got["us"]), self.timing[k])):
            return f"frame {k}: cycles/us {(got['cycles'], got['us'])} != fault-free {self.timing[k]}"
        return None


def soak(run_dir: Path, cfg: SoakConfig = SoakConfig(), *, log: Callable[[str], None] | None = None,
         progress: bool = False) -> dict[str, Any]:
    """Run ``run_dir/firmware.elf`` in the emulated Pico behind a :class:`FaultLink` and do
    ``cfg.exchanges`` checked operations. Returns the counts (see :func:`format_table`)."""
    from pipeline.board.client import BoardClient
    from pipeline.board.emulator import EmulatedPico
    from pipeline.progress import bar

    say = log or (lambda _m: None)
    run_dir = Path(run_dir)
    elf = run_dir / "firmware.elf"
    if not elf.is_file():
        raise PipelineError(f"{elf} does not exist", hint="build the run's firmware first: picotflm run int8")
    truth = _Truth(run_dir, cfg.frames)
    rng = random.Random(cfg.plan.seed + 7919)
    state: dict[str, Any] = {"pico": EmulatedPico(elf)}

    def restart() -> str:
        state["pico"].close()
        state["pico"] = EmulatedPico(elf)
        return state["pico"].port

    ops = collections.Counter()
    ok_ops = collections.Counter()
    reported_ops = collections.Counter()
    recovered = collections.Counter()
    reported = collections.Counter()
    clean = collections.Counter()  # faults that hit an operation that needed no retry
    reasons = collections.Counter()
    wrong: list[str] = []
    hangs = 0
    max_op_s = 0.0
    t0 = time.monotonic()
    link = FaultLink(state["pico"].port, cfg.plan, reset=restart if cfg.plan.reset_every else None)
    try:
        with BoardClient(link.port, timeout=cfg.timeout, retries=cfg.retries) as board:
            link.paused = True
            info = board.handshake(truth.model.sha256[:16], attempts=60)
            truth.info = info.figures()
            truth.mem = board.request("mem").figures()
            for k, frame in enumerate(truth.frames):
                got = board.send_frame(frame, timeout=cfg.invoke_timeout)
                why = truth.wrong("frame", got, k)
                if why:
                    raise PipelineError(f"the board disagrees with host TFLM without any fault: {why}",
                                        hint="check the run's firmware (picotflm measure)")
                truth.timing[k] = (got["cycles"], got["us"])
            bad = truth.wrong("golden", board.request("golden", timeout=cfg.golden_timeout).figures())
            if bad:
                raise PipelineError(f"the board's golden check fails without any fault: {bad}")
            say(f"fault-free baseline: info, mem, golden, {len(truth.frames)} frames agree with the host")
            link.paused = False

            stats0 = board.stats.as_dict()
            before = link.counts()
            pbar = bar(total=cfg.exchanges, desc="faultsoak", unit="op", enabled=progress)
            for _ in range(cfg.exchanges):
                op = rng.choices(OPS, weights=cfg.mix)[0]
                k = rng.randrange(len(truth.frames)) if op == "frame" else None
                ops[op] += 1
                retries0 = board.stats.retries
                t_op = time.monotonic()
                error: PipelineError | None = None
                why = None
                try:
                    if op == "frame":
                        got = board.send_frame(truth.frames[k], timeout=cfg.invoke_timeout)
                    else:
                        got = board.request(op, timeout=cfg.golden_timeout if op == "golden" else None).figures()
                    why = truth.wrong(op, got, k)
                except PipelineError as e:
                    error = e
                op_s = time.monotonic() - t_op
                max_op_s = max(max_op_s, op_s)
                if op_s > cfg.hang_s:
                    hangs += 1
                after = link.counts()
                hit = {kind: after[kind] - before[kind] for kind in KINDS if after[kind] > before[kind]}
                if why is not None:
                    wrong.append(why)
                elif error is not None:
                    reported_ops[op] += 1
                    reasons[_reason(error)] += 1
                    for kind, n in hit.items():
                        reported[kind] += n
                else:
                    ok_ops[op] += 1
                    for kind, n in hit.items():
                        recovered[kind] += n
                        if board.stats.retries == retries0:
                            clean[kind] += n
                if error is not None:
                    # The board may be resetting: wait for it, then handshake again (new ids; the
                    # handshake sends `info` until the board answers).
                    if not link.wait_ready(60.0):
                        raise PipelineError("the emulated Pico did not come back from a reset within 60 s",
                                            hint=str(link.reset_error or ""))
                    board.handshake(truth.model.sha256[:16], attempts=100)
                    mid, after = after, link.counts()  # faults during the handshake: the reported operation's
                    for kind in KINDS:
                        reported[kind] += after[kind] - mid[kind]
                before = after
                if link.error is not None:
                    raise PipelineError(f"the fault link stopped: {link.error!r}")
                if link.reset_error is not None:
                    raise PipelineError(f"restarting the emulated Pico failed: {link.reset_error}")
                pbar.update(1)
            pbar.close()
            link.paused = True
            link.wait_ready(60.0)
            board.handshake(truth.model.sha256[:16], attempts=100)
            final_golden = truth.wrong("golden", board.request("golden", timeout=cfg.golden_timeout).figures())
            stats = {k: v - stats0[k] if isinstance(v, (int, float)) else v for k, v in board.stats.as_dict().items()}
    finally:
        link.close()
        state["pico"].close()
    return {
        "exchanges": cfg.exchanges, "seed": cfg.plan.seed, "seconds": round(time.monotonic() - t0, 1),
        "plan": asdict(cfg.plan), "ops": dict(ops), "ops_ok": dict(ok_ops), "ops_reported": dict(reported_ops),
        "injected": {k: link.injected[k] for k in KINDS},
        "injected_to_board": {k: link.by_direction[(k, UP)] for k in KINDS},
        "injected_to_host": {k: link.by_direction[(k, DOWN)] for k in KINDS},
        "recovered": {k: recovered[k] for k in KINDS}, "recovered_without_retry": {k: clean[k] for k in KINDS},
        "reported": {k: reported[k] for k in KINDS}, "reasons": dict(reasons.most_common()),
        "wrong_accepted": len(wrong), "wrong": wrong[:20], "hangs": hangs, "max_op_s": round(max_op_s, 2),
        "resets_done": link.resets_done, "link": stats, "final_golden_ok": final_golden is None,
    }


def format_table(r: dict[str, Any]) -> str:
    """The soak as Markdown: operations, faults per kind (injected, recovered, reported), reasons."""
    lines = [f"fault-injected link: {r['exchanges']:,} operations in {r['seconds']} s, seed {r['seed']}, "
             f"{r['link']['exchanges']:,} request/reply exchanges on the wire ({r['link']['retries']:,} retries)",
             "", "| operation | done | right figures | reported |", "|---|---|---|---|"]
    for op in OPS:
        lines.append(f"| {op} | {r['ops'].get(op, 0):,} | {r['ops_ok'].get(op, 0):,} | {r['ops_reported'].get(op, 0):,} |")
    lines += ["", "| fault | injected (to board / to host) | recovered (of them without a retry) | reported |",
              "|---|---|---|---|"]
    for k in KINDS:
        lines.append(f"| {k} | {r['injected'][k]:,} ({r['injected_to_board'][k]:,} / {r['injected_to_host'][k]:,}) | "
                     f"{r['recovered'][k]:,} ({r['recovered_without_retry'][k]:,}) | {r['reported'][k]:,} |")
    total = sum(r["injected"].values())
    lines.append(f"| all | {total:,} | {sum(r['recovered'].values()):,} | {sum(r['reported'].values()):,} |")
    lines += ["", f"**wrong figures accepted: {r['wrong_accepted']}**; hangs: {r['hangs']} (longest operation "
                  f"{r['max_op_s']} s); board resets done: {r['resets_done']}; golden check after the soak: "
                  f"{'bit-exact' if r['final_golden_ok'] else 'FAILED'}",
              f"link: {r['link']['bad_checksum']:,} frames with a bad checksum, {r['link']['not_frames']:,} lines "
              f"not a frame, {r['link']['bad_frames']:,} bad frames, {r['link']['stale']:,} stale replies, "
              f"{r['link']['overlong']:,} overlong lines"]
    if r["reasons"]:
        lines += ["", "reported as:"] + [f"- {n:,} x {why}" for why, n in r["reasons"].items()]
    for w in r["wrong"]:
        lines.append(f"- WRONG: {w}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.board.faultlink",
                                description="Soak the emulated Pico through a fault-injecting link and print "
                                            "the faults injected, recovered and reported.")
    p.add_argument("--run", default="runs/int8", help="run directory with firmware.elf, model.tflite, data.npz")
    p.add_argument("--exchanges", type=int, default=10_000, help="checked operations (a frame counts once)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--up-every", type=int, default=FaultPlan.up_every, help="host->board bytes per fault (mean)")
    p.add_argument("--down-every", type=int, default=FaultPlan.down_every, help="board->host bytes per fault (mean)")
    p.add_argument("--reset-every", type=int, default=FaultPlan.reset_every,
                   help="bytes per board reset (mean, each direction; 0: no resets)")
    p.add_argument("--json", default=None, help="also write the counts to this JSON file")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where every thread is
    try:
        cfg = SoakConfig(exchanges=args.exchanges, plan=FaultPlan(seed=args.seed, up_every=args.up_every,
                                                                  down_every=args.down_every,
                                                                  reset_every=args.reset_every))
    except ValueError as e:
        print(f"picotflm: error: {e}", file=sys.stderr)
        return 2
    try:
        r = soak(Path(args.run), cfg, log=lambda m: print(m, file=sys.stderr), progress=not args.no_progress)
    except PipelineError as e:
        print(f"picotflm: error: {e}", file=sys.stderr)
        return e.exit_code
    print(format_table(r))
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")
    return 0 if r["wrong_accepted"] == 0 and r["hangs"] == 0 and r["final_golden_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
